//! The tunnel keeper: with POLARIS_RELAY set, the agent keeps a reverse forward from a port on
//! the relay (OpenSSH, or the built-in relay of `polaris server`) to the local SSH server, so
//! renters reach a miner behind NAT at `ssh://user@relay:port`.
//!
//! One loop, forever: open a session ([`session::open`]), publish it as up and tell the
//! coordinator the address, watch it (SSH keepalives, a ping that needs the session loop to
//! answer, a probe through our own forward), and when it ends say why and wait a jittered
//! [`backoff`] before the next attempt. The only failure never retried is a relay whose host
//! key is not the one we trust. Nothing here touches the heartbeats or compute_subnet: a tunnel
//! problem is the tunnel's alone.

mod advertise;
mod backoff;
mod host_key;
mod session;

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{Secret, Settings};
use backoff::Backoff;

/// A session that stayed up this long resets the reconnect backoff: the next drop is retried
/// within a second again.
pub const BACKOFF_RESETS_AFTER: Duration = backoff::STABLE;

/// How often the session loop must answer a ping, and how long it may take.
const PING_EVERY: Duration = Duration::from_secs(10);

/// Where the relay is and who we log in as, from `ssh://user@host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayAddress {
    pub user: String,
    /// A host name or an IP address (without brackets).
    pub host: String,
    pub port: u16,
}

impl RelayAddress {
    /// Parses `ssh://user@host[:port]` (port 22 when absent).
    pub fn parse(url: &str) -> Option<Self> {
        let url = reqwest::Url::parse(url).ok()?;
        if url.scheme() != "ssh" || url.username().is_empty() || url.password().is_some() {
            return None;
        }
        // An IPv6 host comes in brackets; connecting and known_hosts want it bare.
        let host = url
            .host_str()?
            .trim_start_matches('[')
            .trim_end_matches(']');
        Some(Self {
            user: url.username().to_owned(),
            host: host.to_owned(),
            port: url.port().unwrap_or(22),
        })
    }

    /// `host:port`, IPv6 in brackets, as people write it.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// What the keeper needs, from the settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub home: PathBuf,
    pub relay: RelayAddress,
    /// Port asked of the relay; 0 lets it choose.
    pub remote_port: u16,
    /// `host:port` the forwarded connections go to.
    pub target: String,
    /// `SHA256:…`; unset, the first key seen is learned.
    pub pinned_host_key: Option<String>,
    pub key_path: PathBuf,
    pub password: Option<Secret>,
    /// The account renters log in as on this machine, in the advertised address.
    pub advertised_user: String,
    pub server_url: reqwest::Url,
    pub keepalive_interval: Duration,
    pub keepalive_max: usize,
    /// How often a connection goes through our own forward and back.
    pub probe_interval: Duration,
}

impl Config {
    /// The keeper's settings, or `None` when POLARIS_RELAY is unset.
    pub fn from_settings(settings: &Settings) -> Option<Self> {
        let relay = RelayAddress::parse(settings.relay.url.as_deref()?)?;
        let advertised_user = settings
            .ssh
            .user
            .clone()
            .or_else(crate::inventory::current_user)
            .unwrap_or_else(|| relay.user.clone());
        Some(Self {
            home: settings.home.clone(),
            remote_port: settings.relay.remote_port,
            target: settings
                .relay
                .tunnel_target
                .clone()
                .unwrap_or_else(|| format!("127.0.0.1:{}", settings.ssh.port)),
            pinned_host_key: settings.relay.host_key.clone(),
            key_path: crate::register::ssh_key::path(&settings.home),
            password: settings.ssh.password.clone(),
            advertised_user,
            server_url: settings.server_url.clone(),
            // 5 s × 3 unanswered: a dead or hung relay is noticed in about 20 s.
            keepalive_interval: Duration::from_secs(5),
            keepalive_max: 3,
            probe_interval: Duration::from_secs(30),
            relay,
        })
    }

    fn known_hosts(&self) -> PathBuf {
        self.home.join("keys").join("known_hosts")
    }

    /// What the relay binds: a relay on loopback is a local or test relay, and its port stays
    /// on loopback too; anywhere else the port is for renters, on every interface (OpenSSH
    /// honours this with `GatewayPorts clientspecified`; the built-in relay decides itself).
    fn bind_address(&self) -> &'static str {
        if self.relay.is_loopback() {
            "127.0.0.1"
        } else {
            ""
        }
    }

    /// `ssh://user@relay:port`: where renters log in (what the keeper tells the coordinator,
    /// and what `inventory --check` names).
    pub fn advertised(&self, port: u16) -> String {
        let host = RelayAddress {
            port,
            ..self.relay.clone()
        };
        format!("ssh://{}@{}", self.advertised_user, host.host_port())
    }
}

/// The tunnel as `polaris status` and the dashboard show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// `host:port` of the relay.
    pub relay: String,
    /// Where the forwarded connections go.
    pub target: String,
    #[serde(flatten)]
    pub phase: Phase,
    /// The relay's host key fingerprint, once seen.
    pub host_key: Option<String>,
    /// Sessions opened since the agent started, the first included.
    pub sessions: u64,
    /// When a probe last went through the tunnel and back.
    pub last_probe: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Phase {
    Connecting {
        since: DateTime<Utc>,
    },
    /// The forward is in place: renters reach us at `address`.
    Up {
        port: u16,
        address: String,
        since: DateTime<Utc>,
    },
    Down {
        reason: String,
        retry_at: DateTime<Utc>,
    },
    /// Given up for good (a host key we do not trust): the agent must be restarted.
    Stopped {
        reason: String,
    },
}

impl State {
    pub fn new(config: &Config) -> Self {
        Self {
            relay: config.relay.host_port(),
            target: config.target.clone(),
            phase: Phase::Connecting { since: Utc::now() },
            host_key: None,
            sessions: 0,
            last_probe: None,
        }
    }

    pub fn is_up(&self) -> bool {
        matches!(self.phase, Phase::Up { .. })
    }

    /// One line for people: where the tunnel stands, as of `now`, as `polaris status` prints it.
    pub fn headline(&self, now: DateTime<Utc>) -> String {
        format!("tunnel {}", self.summary(now))
    }

    /// [`headline`](Self::headline) without the word "tunnel", for a field already named so
    /// (the dashboard's).
    pub fn summary(&self, now: DateTime<Utc>) -> String {
        let relay = &self.relay;
        match &self.phase {
            Phase::Connecting { since } => {
                format!("connecting to {relay} (for {})", span(*since, now))
            }
            Phase::Up { address, since, .. } => {
                format!("up at {address} via {relay}, for {}", span(*since, now))
            }
            Phase::Down { reason, retry_at } => format!(
                "down: {reason}; retrying {relay} in {}",
                span(now, *retry_at)
            ),
            Phase::Stopped { reason } => format!("STOPPED: {reason}"),
        }
    }
}

/// `3m 2s`, to the second; zero when `to` is not after `from`.
fn span(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let seconds = (to - from).num_seconds().max(0).unsigned_abs();
    humantime::format_duration(Duration::from_secs(seconds)).to_string()
}

/// Keeps the tunnel until `cancel`; publishes every change on `state`.
pub async fn run(config: Config, state: watch::Sender<State>, cancel: CancellationToken) {
    if let Err(err) = crate::register::ssh_key::ensure(&config.home) {
        tracing::warn!(error = %format!("{err:#}"), "cannot make the agent's SSH key");
    }
    // The built-in relay lets in only keys the coordinator knows: tell it ours (an OpenSSH
    // relay does not care, and an old coordinator answers 404, both fine).
    let mut key_told = advertise::relay_key(&config).await;
    let mut backoff = Backoff::default();
    loop {
        state.send_modify(|s| s.phase = Phase::Connecting { since: Utc::now() });
        let opened = tokio::select! {
            opened = session::open(&config) => opened,
            () = cancel.cancelled() => return,
        };
        let reason = match opened {
            Ok(session) => {
                let up_since = std::time::Instant::now();
                let reason = keep(&config, session, &state, &cancel).await;
                if cancel.is_cancelled() {
                    return;
                }
                if up_since.elapsed() >= backoff::STABLE {
                    backoff.reset();
                }
                reason
            }
            Err(err) if err.is_final() => {
                let reason = err.to_string();
                tracing::error!(relay = %config.relay.host_port(), "tunnel stopped: {reason}");
                state.send_modify(|s| s.phase = Phase::Stopped { reason });
                return;
            }
            Err(err) => {
                if !key_told {
                    key_told = advertise::relay_key(&config).await;
                }
                err.to_string()
            }
        };
        let delay = backoff.next_delay(rand::random());
        tracing::warn!(relay = %config.relay.host_port(), "tunnel down: {reason}; retrying in {:.1} s", delay.as_secs_f64());
        let retry_at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
        state.send_modify(|s| s.phase = Phase::Down { reason, retry_at });
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = cancel.cancelled() => return,
        }
    }
}

/// Publishes an open session as up, tells the coordinator, and watches it until it ends (the
/// reason is returned) or `cancel` (the session is closed, so the relay frees the port).
async fn keep(
    config: &Config,
    mut session: session::Session,
    state: &watch::Sender<State>,
    cancel: &CancellationToken,
) -> String {
    let address = config.advertised(session.port);
    tracing::info!(%address, host_key = %session.fingerprint, trust = %session.trust, "tunnel up");
    state.send_modify(|s| {
        s.phase = Phase::Up {
            port: session.port,
            address: address.clone(),
            since: Utc::now(),
        };
        s.host_key = Some(session.fingerprint.clone());
        s.sessions += 1;
    });
    let advertising = tokio::spawn(advertise::address(config.clone(), session.port, address));
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut probe = tokio::time::interval(config.probe_interval);
    ping.reset();
    let mut probe_refused = false;
    let reason = loop {
        enum Due {
            Ping,
            Probe,
        }
        let due = tokio::select! {
            ended = &mut session.handle => break match ended {
                Ok(()) => "the relay closed the session".to_owned(),
                Err(err) => format!("the session ended: {err}"),
            },
            () = cancel.cancelled() => {
                let _ = session
                    .handle
                    .disconnect(russh::Disconnect::ByApplication, "agent stopping", "en")
                    .await;
                break "the agent is stopping".to_owned();
            }
            _ = ping.tick() => Due::Ping,
            _ = probe.tick() => Due::Probe,
        };
        match due {
            Due::Ping => {
                let answered = tokio::time::timeout(PING_EVERY, session.handle.send_ping()).await;
                if !matches!(answered, Ok(Ok(()))) {
                    break "the relay's session stopped answering".to_owned();
                }
            }
            Due::Probe => match session::probe(&session).await {
                Ok(session::Probe::Through) => {
                    state.send_modify(|s| s.last_probe = Some(Utc::now()));
                }
                Ok(session::Probe::Refused) => {
                    if !probe_refused {
                        tracing::info!(
                            "the relay refuses probes through the tunnel; watching it with pings only"
                        );
                        probe_refused = true;
                    }
                }
                Err(reason) => break reason,
            },
        }
    };
    advertising.abort();
    reason
}
