//! Settings, layered as flag > environment > `.env` > `POLARIS_HOME/polaris.toml` > default.
//!
//! Every value is parsed into its type here, before any command does I/O, and a bad value names
//! the setting, the value, where it came from and what is expected.

pub mod keys;
mod secret;
mod sources;

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub use secret::Secret;
pub use sources::{Layers, Origin, Raw};

use keys::Key;

/// Default coordinator address of the standalone set-up.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8420";

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid {name}={value} (from {origin}): expected {expected}")]
    Invalid {
        name: String,
        /// As shown: quoted, or hidden for a secret ([`keys::Key::shown`]).
        value: String,
        origin: Origin,
        expected: String,
    },
    #[error("unknown setting `{key}` in {}: see .env.example for the names", path.display())]
    UnknownKey { key: String, path: PathBuf },
    /// `detail` names the line but never quotes it: it may hold a secret.
    #[error("cannot parse {}: {detail}", path.display())]
    Toml { path: PathBuf, detail: String },
    /// `detail` names the line but never quotes it: it may hold a secret.
    #[error("cannot parse {}: {detail}", path.display())]
    DotEnv { path: PathBuf, detail: String },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot find your home directory: set POLARIS_HOME")]
    NoHome,
}

/// Which store the coordinator keeps its state in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// Embedded SQLite database in `POLARIS_HOME/polaris.db`.
    Sqlite,
    /// Google Firestore, for several coordinators sharing the work.
    Firestore,
}

/// What `POLARIS_STATE_EVERY` and `POLARIS_METRICS_EVERY` accept.
const SAMPLING_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(86_400);

/// How often an unchanged miner's state is refreshed and its metrics sampled, by default. SQLite
/// writes are cheap: every minute. Firestore bills each document written: every 10 minutes
/// keeps a miner on a 10-s heartbeat at about 33 document writes per 1 000 heartbeats (one
/// miner_states and one metrics_history document per 60 heartbeats), under the goal of 100.
fn sampling_default(store: StoreKind) -> Duration {
    match store {
        StoreKind::Sqlite => Duration::from_secs(60),
        StoreKind::Firestore => Duration::from_secs(600),
    }
}

/// The local SSH account facts (the original's keys).
#[derive(Debug, Clone)]
pub struct SshSettings {
    pub password: Option<Secret>,
    pub user: Option<String>,
    pub host: Option<String>,
    pub port: u16,
    /// Whether the coordinator's key commands may change SSH_USER's `authorized_keys`.
    pub access: SshAccess,
    /// POLARIS_SSH_ACCESS is set somewhere (else registration asks).
    pub access_given: bool,
}

/// `POLARIS_SSH_ACCESS`: how validators and renters log in to this machine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SshAccess {
    /// The agent never changes `authorized_keys`; key commands are refused (the default).
    #[default]
    Off,
    /// The coordinator's `authorize_key` / `revoke_key` commands edit a managed block of
    /// SSH_USER's `~/.ssh/authorized_keys`.
    Keys,
}

impl SshAccess {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Keys => "keys",
        }
    }
}

/// The compute_subnet process the agent supervises.
#[derive(Debug, Clone, Default)]
pub struct ComputeSettings {
    pub cmd: Option<String>,
    pub dir: Option<PathBuf>,
    pub repo: Option<String>,
}

/// The SSH reverse tunnel kept by the agent.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub url: Option<String>,
    pub remote_port: u16,
    pub tunnel_target: Option<String>,
    pub host_key: Option<String>,
}

/// `polaris server` settings.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub store: StoreKind,
    pub offline_after: Duration,
    pub alert_webhook: Option<reqwest::Url>,
    pub admin_token: Option<Secret>,
    pub firestore_project: Option<String>,
    /// The Firestore database in the project; `None` is `(default)`.
    pub firestore_database: Option<String>,
    /// How often miner_states is refreshed for a miner whose status is unchanged (a change is
    /// written at once). The default follows the store: Firestore bills per document.
    pub state_every: Duration,
    /// How often a miner's metrics are sampled into metrics_history.
    pub metrics_every: Duration,
    /// This coordinator's name among those sharing a Firestore database; unset, one is made
    /// at each start (host name and a random suffix).
    pub replica: Option<String>,
    pub relay_listen: Option<SocketAddr>,
    pub relay_ports: RangeInclusive<u16>,
    /// Accept the original Python miners' token-less requests for miners that never used their
    /// token (`--legacy-clients`); off by default.
    pub legacy_clients: bool,
    /// How long a queued command waits for its miner to report it before it expires.
    pub command_expiry: Duration,
}

/// Every setting, parsed.
#[derive(Debug, Clone)]
pub struct Settings {
    pub home: PathBuf,
    pub server_url: reqwest::Url,
    /// SERVER_URL was given; unset, the agent hosts the coordinator itself (standalone).
    pub server_url_set: bool,
    pub heartbeat_interval: Duration,
    pub location: Option<String>,
    /// Where NVML is, when not in the loader's path (e.g. WSL's /usr/lib/wsl/lib).
    pub nvml_library: Option<PathBuf>,
    /// Lines the dashboard's Logs tab keeps; older ones drop off the top.
    pub dashboard_log_lines: usize,
    pub ssh: SshSettings,
    pub compute: ComputeSettings,
    pub relay: RelaySettings,
    pub server: ServerSettings,
}

impl Settings {
    /// Loads settings for this process: `home` and `flags` come from the command line.
    pub fn load(
        home: Option<PathBuf>,
        flags: &[(&'static str, String)],
    ) -> Result<Self, ConfigError> {
        let mut layers = Layers::from_env(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        );
        for (name, value) in flags {
            layers.set_flag(name, value.clone());
        }
        layers.add_dotenv(Path::new(".env"))?;
        let home = match home {
            Some(home) if home.as_os_str().is_empty() => {
                return Err(ConfigError::Invalid {
                    name: "--home".to_owned(),
                    value: "\"\"".to_owned(),
                    origin: Origin::Flag,
                    expected: "a directory (leave the flag out for POLARIS_HOME or ~/.polaris)"
                        .to_owned(),
                });
            }
            Some(home) => home,
            None => resolve_home(&layers)?,
        };
        layers.add_dotenv(&home.join(".env"))?;
        layers.set_toml(&home.join("polaris.toml"))?;
        Self::from_layers(home, &layers)
    }

    /// For the commands that must reach a running agent whatever the configuration says
    /// (`stop`, `status`): the settings, or, when they do not load, the defaults in the same
    /// POLARIS_HOME together with the reason, for the caller to warn about.
    pub fn load_or_defaults(
        home: Option<PathBuf>,
    ) -> Result<(Self, Option<ConfigError>), ConfigError> {
        match Self::load(home.clone(), &[]) {
            Ok(settings) => Ok((settings, None)),
            Err(err) => {
                let home = match home {
                    Some(home) => home,
                    None => resolve_home(&Layers::from_env(
                        std::env::var("POLARIS_HOME")
                            .ok()
                            .map(|v| ("POLARIS_HOME".to_owned(), v)),
                    ))?,
                };
                Ok((Self::from_layers(home, &Layers::default())?, Some(err)))
            }
        }
    }

    /// Parses every setting from already-read layers.
    pub fn from_layers(home: PathBuf, layers: &Layers) -> Result<Self, ConfigError> {
        if let Some(name) = layers.empty_flag() {
            return Err(ConfigError::Invalid {
                name: name.to_owned(),
                value: "\"\"".to_owned(),
                origin: Origin::Flag,
                expected: "a value (leave the flag out for the default)".to_owned(),
            });
        }
        let p = Parser { layers };
        let server_url = p.parse(
            &keys::SERVER_URL,
            "an http:// or https:// URL",
            parse_server_url,
        )?;
        let listen = p
            .parse(&keys::LISTEN, "an address like 127.0.0.1:8420", |v| {
                SocketAddr::from_str(v).ok()
            })?
            .unwrap_or_else(default_listen);
        let store = p
            .parse(&keys::STORE, "sqlite or firestore", |v| {
                <StoreKind as clap::ValueEnum>::from_str(v, true).ok()
            })?
            .unwrap_or(StoreKind::Sqlite);
        let ssh_access = p.parse(&keys::SSH_ACCESS, "keys or off", |v| {
            <SshAccess as clap::ValueEnum>::from_str(v, true).ok()
        })?;
        Ok(Self {
            server_url_set: server_url.is_some(),
            // Unset, the clients talk to the coordinator the standalone agent hosts, wherever
            // POLARIS_LISTEN put it.
            server_url: server_url.unwrap_or_else(|| local_server_url(listen)),
            heartbeat_interval: p
                .duration(
                    &keys::HEARTBEAT_INTERVAL,
                    Duration::from_millis(100)..=Duration::from_secs(3600),
                )?
                .unwrap_or(Duration::from_secs(10)),
            location: p.string(&keys::LOCATION),
            nvml_library: p.string(&keys::NVML_LIBRARY).map(|l| expand_tilde(&l)),
            dashboard_log_lines: p
                .parse(
                    &keys::DASHBOARD_LOG_LINES,
                    "a number of lines from 100 to 1000000",
                    |v| v.parse().ok().filter(|n| (100..=1_000_000).contains(n)),
                )?
                .unwrap_or(10_000),
            ssh: SshSettings {
                password: p.string(&keys::SSH_PASSWORD).map(Secret::new),
                user: p.string(&keys::SSH_USER),
                host: p.string(&keys::SSH_HOST),
                port: p.port(&keys::SSH_PORT)?.unwrap_or(22),
                access: ssh_access.unwrap_or_default(),
                access_given: ssh_access.is_some(),
            },
            compute: ComputeSettings {
                cmd: p.string(&keys::COMPUTE_CMD),
                dir: p.string(&keys::COMPUTE_DIR).map(|d| expand_tilde(&d)),
                repo: p.string(&keys::COMPUTE_REPO),
            },
            relay: RelaySettings {
                url: p.parse(&keys::RELAY, "ssh://user@host:port", parse_relay_url)?,
                remote_port: p.port(&keys::RELAY_REMOTE_PORT)?.unwrap_or(0),
                tunnel_target: p.string(&keys::TUNNEL_TARGET),
                host_key: p.parse(
                    &keys::RELAY_HOST_KEY,
                    "a host key fingerprint like SHA256:… (as `ssh-keygen -lf` prints it)",
                    parse_fingerprint,
                )?,
            },
            server: ServerSettings {
                listen,
                store,
                offline_after: p
                    .duration(
                        &keys::OFFLINE_AFTER,
                        Duration::from_secs(1)..=Duration::from_secs(86_400),
                    )?
                    .unwrap_or(Duration::from_secs(45)),
                alert_webhook: p.parse(
                    &keys::ALERT_WEBHOOK,
                    "an http:// or https:// URL",
                    parse_url,
                )?,
                admin_token: p
                    .parse(
                        &keys::ADMIN_TOKEN,
                        "at least 16 characters without spaces",
                        |v| {
                            (v.len() >= 16 && !v.contains(char::is_whitespace))
                                .then(|| v.to_owned())
                        },
                    )?
                    .map(Secret::new),
                firestore_project: p.string(&keys::FIRESTORE_PROJECT),
                firestore_database: p.string(&keys::FIRESTORE_DATABASE),
                state_every: p
                    .duration(&keys::STATE_EVERY, SAMPLING_RANGE)?
                    .unwrap_or(sampling_default(store)),
                metrics_every: p
                    .duration(&keys::METRICS_EVERY, SAMPLING_RANGE)?
                    .unwrap_or(sampling_default(store)),
                replica: p.parse(
                    &keys::REPLICA,
                    "1 to 64 letters, digits, '-', '_' or '.'",
                    |v| {
                        (!v.is_empty()
                            && v.len() <= 64
                            && v.chars()
                                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
                        .then(|| v.to_owned())
                    },
                )?,
                relay_listen: p.parse(
                    &keys::RELAY_LISTEN,
                    "an address like 0.0.0.0:2222",
                    |v| SocketAddr::from_str(v).ok(),
                )?,
                relay_ports: p
                    .parse(&keys::RELAY_PORTS, "a port range like 20000-20999", |v| {
                        let (lo, hi) = v.split_once('-')?;
                        let (lo, hi) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
                        (0 < lo && lo <= hi).then_some(lo..=hi)
                    })?
                    .unwrap_or(20000..=20999),
                legacy_clients: p
                    .parse(&keys::LEGACY_CLIENTS, "1 or 0 (true or false)", |v| match v
                        .to_ascii_lowercase()
                        .as_str()
                    {
                        "1" | "true" | "yes" | "on" => Some(true),
                        "0" | "false" | "no" | "off" => Some(false),
                        _ => None,
                    })?
                    .unwrap_or(false),
                command_expiry: p
                    .duration(
                        &keys::COMMAND_EXPIRY,
                        Duration::from_secs(1)..=Duration::from_secs(7 * 86_400),
                    )?
                    .unwrap_or(Duration::from_secs(3600)),
            },
            home,
        })
    }

    /// The SQLite database of the coordinator.
    pub fn database_path(&self) -> PathBuf {
        self.home.join("polaris.db")
    }

    /// Where log files go.
    pub fn logs_dir(&self) -> PathBuf {
        self.home.join("logs")
    }
}

/// Reads raw values from the layers and parses them, naming the setting on failure.
struct Parser<'a> {
    layers: &'a Layers,
}

impl Parser<'_> {
    fn string(&self, key: &Key) -> Option<String> {
        self.layers.get(key).map(|raw| raw.value.trim().to_owned())
    }

    fn parse<T>(
        &self,
        key: &Key,
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>, ConfigError> {
        let Some(raw) = self.layers.get(key) else {
            return Ok(None);
        };
        match parse(raw.value.trim()) {
            Some(value) => Ok(Some(value)),
            None => Err(ConfigError::Invalid {
                name: key.env.to_owned(),
                value: key.shown(&raw.value),
                origin: raw.origin,
                expected: expected.to_owned(),
            }),
        }
    }

    fn duration(
        &self,
        key: &Key,
        range: RangeInclusive<Duration>,
    ) -> Result<Option<Duration>, ConfigError> {
        // Examples the range accepts (it used to offer 500ms where 1 s is the least).
        let examples: Vec<String> = ["500ms", "2s", "10s", "45s", "5m", "1h"]
            .into_iter()
            .filter(|e| parse_duration(e).is_some_and(|d| range.contains(&d)))
            .take(3)
            .map(str::to_owned)
            .collect();
        let expected = format!(
            "a duration from {} to {}{}",
            humantime::format_duration(*range.start()),
            humantime::format_duration(*range.end()),
            match examples.as_slice() {
                [] => String::new(),
                [one] => format!(", like {one}"),
                [init @ .., last] => format!(", like {} or {last}", init.join(", ")),
            }
        );
        self.parse(key, &expected, |v| {
            parse_duration(v).filter(|d| range.contains(d))
        })
    }

    fn port(&self, key: &Key) -> Result<Option<u16>, ConfigError> {
        self.parse(key, "a port number from 0 to 65535", |v| v.parse().ok())
    }
}

/// Parses `500ms`, `2s`, `1m30s`; a bare number means seconds. Zero is refused.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let duration = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(text).ok()?,
    };
    (!duration.is_zero()).then_some(duration)
}

fn parse_url(text: &str) -> Option<reqwest::Url> {
    let url = reqwest::Url::parse(text).ok()?;
    (matches!(url.scheme(), "http" | "https") && url.host().is_some()).then_some(url)
}

/// The coordinator's API URL. The bare address the server prints first
/// (`http://host:8420`) means its API, `http://host:8420/api/v1`: nothing else lives at `/`, and
/// taking it as the API would only give 404s that never say why.
fn parse_server_url(text: &str) -> Option<reqwest::Url> {
    let mut url = parse_url(text)?;
    if url.path() == "/" {
        url.set_path("/api/v1");
    }
    Some(url)
}

fn parse_relay_url(text: &str) -> Option<String> {
    let url = reqwest::Url::parse(text).ok()?;
    (url.scheme() == "ssh" && url.host().is_some() && !url.username().is_empty())
        .then(|| text.to_owned())
}

/// `SHA256:` and 43 base64 characters (a SHA-256 digest without padding), as OpenSSH prints.
fn parse_fingerprint(text: &str) -> Option<String> {
    let digest = text.strip_prefix("SHA256:")?;
    let base64 = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
    (digest.len() == 43 && digest.chars().all(base64)).then(|| text.to_owned())
}

fn default_server_url() -> reqwest::Url {
    // A constant that parses; covered by the `defaults_are_valid` test.
    reqwest::Url::parse(&format!("http://{DEFAULT_LISTEN}/api/v1")).unwrap_or_else(|_| {
        unreachable!("the default server URL is a valid URL");
    })
}

/// The URL a client on this machine reaches a coordinator listening on `listen` at: an
/// unspecified address (0.0.0.0, [::]) is reached on loopback.
fn local_server_url(listen: SocketAddr) -> reqwest::Url {
    let ip = match listen.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    let address = SocketAddr::new(ip, listen.port());
    // A socket address always makes a valid URL; the default is there only to avoid a panic.
    reqwest::Url::parse(&format!("http://{address}/api/v1"))
        .unwrap_or_else(|_| default_server_url())
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8420))
}

/// `POLARIS_HOME` from the layers (flag and toml do not apply), else `~/.polaris`.
fn resolve_home(layers: &Layers) -> Result<PathBuf, ConfigError> {
    const HOME: Key = Key {
        env: "POLARIS_HOME",
        toml: "",
    };
    if let Some(raw) = layers.get(&HOME) {
        return Ok(expand_tilde(raw.value.trim()));
    }
    // Set, but to nothing: most likely a script's variable that came out empty. Refused, so
    // the files do not silently go to ~/.polaris.
    if layers.empty_in_env(HOME.env) {
        return Err(ConfigError::Invalid {
            name: HOME.env.to_owned(),
            value: "\"\"".to_owned(),
            origin: Origin::Env,
            expected: "a directory (unset it for ~/.polaris)".to_owned(),
        });
    }
    user_home()
        .map(|home| home.join(".polaris"))
        .ok_or(ConfigError::NoHome)
}

/// The user's home directory (HOME, or USERPROFILE on Windows).
pub fn user_home() -> Option<PathBuf> {
    let var = if cfg!(windows) { "USERPROFILE" } else { "HOME" };
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Sets `key` to `value` in `POLARIS_HOME/.env` (what registration answers for later runs):
/// its line is replaced, or appended; every other line stays as it was. The file stays private
/// (it may hold SSH_PASSWORD).
pub fn save_in_home_dotenv(home: &Path, key: &Key, value: &str) -> std::io::Result<PathBuf> {
    let path = home.join(".env");
    let old = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(err) => return Err(err),
    };
    let prefix = format!("{}=", key.env);
    let line = format!("{prefix}{value}");
    // The first line that sets it (also as `export KEY=`) is replaced; later ones are dropped,
    // so the file says it once.
    let mut replaced = false;
    let mut lines: Vec<String> = Vec::new();
    for l in old.lines() {
        let set = l.trim_start();
        let set = set.strip_prefix("export ").unwrap_or(set).trim_start();
        if !set.starts_with(&prefix) {
            lines.push(l.to_owned());
        } else if !replaced {
            replaced = true;
            lines.push(line.clone());
        }
    }
    if !replaced {
        lines.push(line);
    }
    let mut text = lines.join("\n");
    text.push('\n');
    crate::files::write_private_atomically(&path, text.as_bytes())?;
    Ok(path)
}

pub(crate) fn expand_tilde(path: &str) -> PathBuf {
    match path.strip_prefix("~/").zip(user_home()) {
        Some((rest, home)) => home.join(rest),
        None => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_setting_replaces_its_line_and_keeps_every_other() -> std::io::Result<()> {
        let home = tempfile::tempdir()?;
        let key = keys::SSH_ACCESS;
        // Nothing there: the file is made, owner-only.
        save_in_home_dotenv(home.path(), &key, "keys")?;
        let path = home.path().join(".env");
        assert_eq!(std::fs::read_to_string(&path)?, "POLARIS_SSH_ACCESS=keys\n");
        std::fs::write(
            &path,
            "# mine\nSSH_USER=miner\nexport POLARIS_SSH_ACCESS=keys\nPOLARIS_SSH_ACCESS=keys\n",
        )?;
        save_in_home_dotenv(home.path(), &key, "off")?;
        assert_eq!(
            std::fs::read_to_string(&path)?,
            "# mine\nSSH_USER=miner\nPOLARIS_SSH_ACCESS=off\n"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path)?.permissions().mode() & 0o777,
                0o600
            );
        }
        Ok(())
    }

    fn settings(env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let layers = Layers::from_env(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Settings::from_layers(PathBuf::from("/tmp/polaris-test"), &layers)
    }

    /// A malformed secret is refused by name, never shown: not from the environment, not from
    /// a `.env` line that does not parse, not from a `polaris.toml` that does not parse.
    #[test]
    fn errors_never_show_a_secret() -> Result<(), Box<dyn std::error::Error>> {
        const SECRET: &str = "hunter2-very-secret";
        let err = settings(&[("POLARIS_ADMIN_TOKEN", &format!("{SECRET} x"))])
            .err()
            .ok_or("a token with a space was accepted")?
            .to_string();
        assert!(
            err.contains("POLARIS_ADMIN_TOKEN") && !err.contains(SECRET),
            "{err}"
        );
        let err = settings(&[("SSH_PORT", "twenty-two")])
            .err()
            .ok_or("a bad port was accepted")?
            .to_string();
        assert!(
            err.contains("\"twenty-two\""),
            "other values are still quoted: {err}"
        );

        let dir = tempfile::tempdir()?;
        let dotenv = dir.path().join(".env");
        std::fs::write(
            &dotenv,
            format!("SSH_USER=miner\nSSH_PASSWORD=\"{SECRET}\n"),
        )?;
        let err = Layers::default()
            .add_dotenv(&dotenv)
            .err()
            .ok_or("a broken .env was accepted")?
            .to_string();
        assert!(err.contains("line 2") && !err.contains(SECRET), "{err}");

        let toml = dir.path().join("polaris.toml");
        std::fs::write(&toml, format!("[server]\nadmin_token = \"{SECRET}\n"))?;
        let err = Layers::default()
            .set_toml(&toml)
            .err()
            .ok_or("a broken polaris.toml was accepted")?
            .to_string();
        assert!(err.contains("line 2") && !err.contains(SECRET), "{err}");
        std::fs::write(&toml, "[server]\nadmin_token = [\"hunter2\"]\n")?;
        let err = Layers::default()
            .set_toml(&toml)
            .err()
            .ok_or("a list as a token was accepted")?
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        Ok(())
    }

    #[test]
    fn a_bare_server_url_means_its_api() -> Result<(), ConfigError> {
        for bare in ["http://10.0.0.5:8420", "http://10.0.0.5:8420/"] {
            let s = settings(&[("SERVER_URL", bare)])?;
            assert_eq!(
                s.server_url.as_str(),
                "http://10.0.0.5:8420/api/v1",
                "{bare}"
            );
        }
        // A path of its own (a coordinator behind a reverse proxy) is kept as written.
        let s = settings(&[("SERVER_URL", "https://example.net/polaris/api/v1")])?;
        assert_eq!(s.server_url.as_str(), "https://example.net/polaris/api/v1");
        Ok(())
    }

    #[test]
    fn defaults_are_valid() -> Result<(), ConfigError> {
        let s = settings(&[])?;
        assert_eq!(s.server_url.as_str(), "http://127.0.0.1:8420/api/v1");
        assert_eq!(s.server.offline_after, Duration::from_secs(45));
        assert_eq!(s.heartbeat_interval, Duration::from_secs(10));
        assert_eq!(s.server.store, StoreKind::Sqlite);
        assert_eq!(s.ssh.port, 22);
        assert_eq!(s.server.relay_ports, 20000..=20999);
        Ok(())
    }

    #[test]
    fn without_server_url_the_clients_follow_polaris_listen() -> Result<(), ConfigError> {
        for (listen, url) in [
            ("127.0.0.1:9000", "http://127.0.0.1:9000/api/v1"),
            ("0.0.0.0:8421", "http://127.0.0.1:8421/api/v1"),
            ("[::]:8422", "http://[::1]:8422/api/v1"),
            ("[::1]:8423", "http://[::1]:8423/api/v1"),
            ("10.0.0.5:0", "http://10.0.0.5:0/api/v1"),
        ] {
            let s = settings(&[("POLARIS_LISTEN", listen)])?;
            assert_eq!(s.server_url.as_str(), url, "{listen}");
            assert!(!s.server_url_set);
        }
        let s = settings(&[
            ("POLARIS_LISTEN", "0.0.0.0:8421"),
            ("SERVER_URL", "https://coordinator.example/api/v1"),
        ])?;
        assert_eq!(s.server_url.as_str(), "https://coordinator.example/api/v1");
        Ok(())
    }

    #[test]
    fn durations_accept_units_and_bare_seconds() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("45"), Some(Duration::from_secs(45)));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn invalid_value_names_setting_value_origin_and_expectation() {
        let err =
            settings(&[("POLARIS_OFFLINE_AFTER", "soon")]).expect_err("`soon` is not a duration");
        let text = err.to_string();
        for part in [
            "POLARIS_OFFLINE_AFTER",
            "\"soon\"",
            "environment",
            "duration",
        ] {
            assert!(text.contains(part), "{text:?} lacks {part:?}");
        }
    }

    #[test]
    fn each_typed_setting_rejects_garbage() {
        for name in [
            "SERVER_URL",
            "SSH_PORT",
            "POLARIS_LISTEN",
            "POLARIS_STORE",
            "POLARIS_ALERT_WEBHOOK",
            "POLARIS_ADMIN_TOKEN",
            "POLARIS_RELAY",
            "POLARIS_RELAY_PORTS",
            "POLARIS_RELAY_HOST_KEY",
            "POLARIS_HEARTBEAT_INTERVAL",
        ] {
            let err = settings(&[(name, "not valid")]).expect_err(name);
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn the_examples_name_every_setting() -> Result<(), Box<dyn std::error::Error>> {
        let env_example = include_str!("../../.env.example");
        let toml_example = include_str!("../../assets/polaris.toml.example");
        for key in keys::KEYS {
            assert!(
                env_example.contains(&format!("{}=", key.env)),
                ".env.example lacks {}",
                key.env
            );
        }
        // Uncomment every `# key = value` line: the result must be a valid polaris.toml.
        let uncommented: Vec<&str> = toml_example
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.contains(" = ") => rest,
                _ => l,
            })
            .collect();
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("polaris.toml");
        std::fs::write(&path, uncommented.join("\n"))?;
        let mut layers = Layers::default();
        layers.set_toml(&path)?;
        Settings::from_layers(dir.path().to_owned(), &layers)?;
        for key in keys::KEYS {
            // Secrets belong in .env (or the environment), not in a file of settings.
            let secret = key.is_secret();
            let (table, name) = key.toml.split_once('.').ok_or("toml key without a table")?;
            let present = toml_example.contains(&format!("[{table}]"))
                && toml_example.contains(&format!("# {name} = "));
            assert!(secret || present, "polaris.toml.example lacks {}", key.toml);
        }
        Ok(())
    }

    #[test]
    fn durations_out_of_range_are_refused() {
        for (name, value) in [
            ("POLARIS_OFFLINE_AFTER", "500ms"),
            ("POLARIS_OFFLINE_AFTER", "1000y"),
            ("POLARIS_OFFLINE_AFTER", "18446744073709551615"),
            ("POLARIS_HEARTBEAT_INTERVAL", "2h"),
        ] {
            let err = settings(&[(name, value)]).expect_err(value);
            assert!(err.to_string().contains("a duration from"), "{err}");
        }
        assert!(settings(&[("POLARIS_OFFLINE_AFTER", "1s")]).is_ok());
    }

    #[test]
    fn webhook_must_be_http() {
        assert!(settings(&[("POLARIS_ALERT_WEBHOOK", "ftp://x/")]).is_err());
        assert!(settings(&[("POLARIS_ALERT_WEBHOOK", "https://hooks.example/x")]).is_ok());
    }
}
