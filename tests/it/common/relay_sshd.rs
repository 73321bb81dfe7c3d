//! Debian's OpenSSH server as a tunnel relay: its own config, host key and log in a temp dir, on
//! a free loopback port, with forwarding allowed the way the README tells relay operators
//! (`AllowTcpForwarding yes`, `GatewayPorts clientspecified`, `ClientAliveInterval`). The test
//! can kill the per-connection processes (a dropped session) or the whole daemon (a restart on
//! the same port, same host key), and read the log to see who logged in. It stands alone (the
//! tunnel benchmark includes this file too).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use polaris::testing::missing_service;

const SSHD: &str = "/usr/sbin/sshd";
/// The account the password test logs in as; `.ci/run` makes it
/// (`tests/fixtures/make-relay-user.sh`).
pub(crate) const PASSWORD_USER: &str = "polaris-relay";
pub(crate) const PASSWORD: &str = "polaris-relay-test-only";

/// A free TCP port on 127.0.0.1 (bound and released).
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(crate) struct RelaySshd {
    child: Option<Child>,
    pub(crate) port: u16,
    pub(crate) dir: tempfile::TempDir,
    config: PathBuf,
}

impl RelaySshd {
    /// Starts a relay that lets `authorized_key` (an OpenSSH public key line) in, and passwords
    /// when `passwords` is set; `None` after `missing_service` when sshd is not installed.
    pub(crate) fn start(
        authorized_key: &str,
        passwords: bool,
    ) -> Result<Option<Self>, Box<dyn std::error::Error>> {
        if !Path::new(SSHD).exists() || !Path::new("/usr/bin/ssh-keygen").exists() {
            missing_service(
                "OpenSSH server",
                "/usr/sbin/sshd or ssh-keygen is not installed",
            );
            return Ok(None);
        }
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let mut relay = Self {
            child: None,
            port,
            config: dir.path().join("sshd_config"),
            dir,
        };
        relay.new_host_key()?;
        std::fs::write(
            relay.dir.path().join("authorized_keys"),
            format!("{authorized_key}\n"),
        )?;
        std::fs::write(
            &relay.config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_ed25519\n\
                 PidFile {dir}/sshd.pid\nAuthorizedKeysFile {dir}/authorized_keys\n\
                 PasswordAuthentication {passwords}\nPermitEmptyPasswords no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
                 AllowTcpForwarding yes\nGatewayPorts clientspecified\n\
                 ClientAliveInterval 5\nClientAliveCountMax 3\nMaxStartups 100\n\
                 LogLevel VERBOSE\n",
                dir = relay.dir.path().display(),
                passwords = if passwords { "yes" } else { "no" },
            ),
        )?;
        relay.launch()?;
        Ok(Some(relay))
    }

    /// Replaces the host key (takes effect at the next [`restart`](Self::restart)).
    pub(crate) fn new_host_key(&self) -> Result<(), Box<dyn std::error::Error>> {
        let key = self.dir.path().join("host_ed25519");
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(key.with_extension("pub"));
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            return Err("ssh-keygen failed".into());
        }
        Ok(())
    }

    /// `SHA256:…` of the host key in use.
    pub(crate) fn fingerprint(&self) -> Result<String, Box<dyn std::error::Error>> {
        let output = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.dir.path().join("host_ed25519.pub"))
            .output()?;
        let text = String::from_utf8(output.stdout)?;
        Ok(text
            .split_whitespace()
            .nth(1)
            .ok_or("ssh-keygen -l printed no fingerprint")?
            .to_owned())
    }

    fn launch(&mut self) -> Result<(), Box<dyn std::error::Error>> {
        // sshd running as root insists on its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").ok();
        let mut child = Command::new(SSHD)
            .args(["-D", "-f"])
            .arg(&self.config)
            .arg("-E")
            .arg(self.log_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = child.try_wait()? {
                return Err(format!("sshd exited at start: {status}: {}", self.log()).into());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err("sshd did not listen within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
        Ok(())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("sshd.log")
    }

    /// What sshd logged so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The per-connection processes (children of the listener).
    pub(crate) fn session_pids(&self) -> Vec<u32> {
        let Some(child) = &self.child else {
            return vec![];
        };
        let output = Command::new("pgrep")
            .args(["-P", &child.id().to_string()])
            .output();
        output
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|pid| pid.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// SIGKILLs every session process: the relay's end of each tunnel dies at once.
    pub(crate) fn kill_sessions(&self) -> Result<usize, Box<dyn std::error::Error>> {
        let pids = self.session_pids();
        for pid in &pids {
            Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status()?;
        }
        Ok(pids.len())
    }

    /// SIGSTOPs (`stop = true`) or SIGCONTs every session process: a hung relay.
    pub(crate) fn freeze_sessions(&self, stop: bool) -> Result<(), Box<dyn std::error::Error>> {
        let signal = if stop { "-STOP" } else { "-CONT" };
        for pid in self.session_pids() {
            Command::new("kill")
                .args([signal, &pid.to_string()])
                .status()?;
        }
        Ok(())
    }

    /// Allows remote forwards only (`AllowTcpForwarding remote`, which refuses the keeper's
    /// probe), from the next [`restart`](Self::restart).
    pub(crate) fn remote_forwarding_only(&self) -> Result<(), Box<dyn std::error::Error>> {
        let config = std::fs::read_to_string(&self.config)?;
        std::fs::write(
            &self.config,
            config.replace("AllowTcpForwarding yes", "AllowTcpForwarding remote"),
        )?;
        Ok(())
    }

    /// A tunnel keeper's settings for this relay: logging in as `user` with the key in `home`,
    /// forwarding to `target`, advertising `renter@`; not registered, so it tells no coordinator.
    pub(crate) fn keeper_config(
        &self,
        home: &Path,
        user: &str,
        target: std::net::SocketAddr,
    ) -> polaris::agent::tunnel::Config {
        polaris::agent::tunnel::Config {
            home: home.to_owned(),
            relay: polaris::agent::tunnel::RelayAddress {
                user: user.to_owned(),
                host: "127.0.0.1".to_owned(),
                port: self.port,
            },
            remote_port: 0,
            target: target.to_string(),
            pinned_host_key: None,
            key_path: polaris::register::ssh_key::path(home),
            password: None,
            advertised_user: "renter".to_owned(),
            // Port 9 (discard) on loopback: nothing answers, and nothing is sent anyway.
            server_url: reqwest::Url::parse("http://127.0.0.1:9/api/v1")
                .unwrap_or_else(|e| panic!("a constant URL: {e}")),
            keepalive_interval: Duration::from_secs(5),
            keepalive_max: 3,
            probe_interval: Duration::from_secs(30),
        }
    }

    /// Kills the daemon and its sessions and starts it again on the same port.
    pub(crate) fn restart(&mut self) -> Result<(), Box<dyn std::error::Error>> {
        self.stop();
        self.launch()
    }

    fn stop(&mut self) {
        let _ = self.kill_sessions();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RelaySshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The account this process runs as: the relay lets it log in with its key.
pub(crate) fn whoami() -> String {
    Command::new("id")
        .arg("-un")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| "root".to_owned())
}

/// Whether the password test's account exists (`getent passwd polaris-relay`).
pub(crate) fn password_user_exists() -> bool {
    Command::new("getent")
        .args(["passwd", PASSWORD_USER])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
