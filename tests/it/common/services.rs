//! Real services the tests start for themselves: Debian's OpenSSH server on a free loopback port
//! with its own config and host key (never the machine's own sshd or port 22).
//!
//! A service missing on this machine skips the test loudly, unless `POLARIS_REQUIRE_SERVICES=1`
//! (set by `.ci/run`), where it fails the run.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) use polaris::testing::missing_service;

/// A free TCP port on 127.0.0.1 (bound and released).
pub(crate) fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

const SSHD: &str = "/usr/sbin/sshd";

/// `sshd -D` on 127.0.0.1 with a config, host key and pid file in a temp dir; killed by PID when
/// dropped.
pub(crate) struct Sshd {
    child: Child,
    pub(crate) port: u16,
    /// Config, host key and pid file; removed when dropped.
    _dir: tempfile::TempDir,
}

/// How a test's sshd differs from the default one (keys only, from a file in its temp dir, no
/// StrictModes, no passwords).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SshdOptions {
    /// Keys from each user's own `~/.ssh/authorized_keys`, with StrictModes on: as sshd runs
    /// on a real machine.
    pub(crate) user_keys: bool,
    /// `PasswordAuthentication yes` (for the check that warns about it).
    pub(crate) passwords: bool,
}

impl SshdOptions {
    pub(crate) fn user_keys() -> Self {
        Self {
            user_keys: true,
            ..Self::default()
        }
    }
}

impl Sshd {
    /// Starts sshd, keys only, or returns `None` after `missing_service` when it is not
    /// installed.
    pub(crate) fn start() -> Result<Option<Self>, Box<dyn std::error::Error>> {
        Self::start_options(SshdOptions::default())
    }

    /// [`Sshd::start`] as `options` say.
    pub(crate) fn start_options(
        options: SshdOptions,
    ) -> Result<Option<Self>, Box<dyn std::error::Error>> {
        if !Path::new(SSHD).exists() || which("ssh-keygen").is_none() {
            missing_service(
                "OpenSSH server",
                "/usr/sbin/sshd or ssh-keygen is not installed",
            );
            return Ok(None);
        }
        let dir = tempfile::tempdir()?;
        let host_key = dir.path().join("host_ed25519");
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key)
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            return Err("ssh-keygen failed".into());
        }
        // sshd running as root insists on its privilege separation directory.
        if is_root() {
            std::fs::create_dir_all("/run/sshd")?;
        }
        let port = free_port()?;
        let config = dir.path().join("sshd_config");
        let keys = if options.user_keys {
            "AuthorizedKeysFile .ssh/authorized_keys\nStrictModes yes\n".to_owned()
        } else {
            format!(
                "AuthorizedKeysFile {}\nStrictModes no\n",
                dir.path().join("authorized_keys").display()
            )
        };
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\n{keys}\
                 PasswordAuthentication {}\nKbdInteractiveAuthentication no\nUsePAM no\n",
                host_key.display(),
                dir.path().join("sshd.pid").display(),
                if options.passwords { "yes" } else { "no" },
            ),
        )?;
        let mut child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = child.try_wait()? {
                return Err(format!("sshd exited at start: {status}").into());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err("sshd did not listen within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Some(Self {
            child,
            port,
            _dir: dir,
        }))
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_string_lossy()
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.exists())
}

/// A tmux session on its own server socket (never the user's), running one command on a real
/// terminal; killed when dropped.
pub(crate) struct Tmux {
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmux {
    /// Starts `command` (a shell line) in a 160×50 terminal in `dir`, or returns `None` after
    /// `missing_service` when tmux is not installed.
    pub(crate) fn start(
        command: &str,
        dir: &Path,
    ) -> Result<Option<Self>, Box<dyn std::error::Error>> {
        Self::start_sized(command, dir, 160, 50)
    }

    /// [`start`](Self::start) on a `width`×`height` terminal.
    pub(crate) fn start_sized(
        command: &str,
        dir: &Path,
        width: u16,
        height: u16,
    ) -> Result<Option<Self>, Box<dyn std::error::Error>> {
        if which("tmux").is_none() {
            missing_service("tmux", "it is not installed");
            return Ok(None);
        }
        let socket_dir = tempfile::tempdir()?;
        let socket = socket_dir.path().join("tmux.sock");
        let status = Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args([
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
                "-c",
            ])
            .arg(dir)
            .arg(command)
            .status()?;
        if !status.success() {
            return Err("tmux new-session failed".into());
        }
        Ok(Some(Self {
            socket,
            _dir: socket_dir,
        }))
    }

    /// Sends keys as tmux names them (`Enter`, `Down`, or literal text).
    pub(crate) fn send(&self, keys: &[&str]) -> Result<(), Box<dyn std::error::Error>> {
        let status = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["send-keys", "-t", "0"])
            .args(keys)
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err("tmux send-keys failed".into())
        }
    }

    /// Resizes the terminal, as a user dragging the window would.
    pub(crate) fn resize(&self, width: u16, height: u16) -> Result<(), Box<dyn std::error::Error>> {
        let status = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args([
                "resize-window",
                "-t",
                "0",
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
            ])
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err("tmux resize-window failed".into())
        }
    }

    /// tmux's own view of the pane (`#{alternate_on}`, `#{cursor_flag}` …).
    pub(crate) fn display(&self, format: &str) -> Result<String, Box<dyn std::error::Error>> {
        let output = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["display-message", "-p", "-t", "0", format])
            .output()?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// What the terminal shows now, scrollback included.
    pub(crate) fn screen(&self) -> Result<String, Box<dyn std::error::Error>> {
        let output = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["capture-pane", "-p", "-J", "-S", "-", "-t", "0"])
            .output()?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Waits up to `limit` for `text` to appear; returns the screen.
    pub(crate) fn wait_for(
        &self,
        text: &str,
        limit: Duration,
    ) -> Result<String, Box<dyn std::error::Error>> {
        self.wait_for_count(text, 1, limit)
    }

    /// Waits up to `limit` for `text` to appear `count` times; returns the screen.
    pub(crate) fn wait_for_count(
        &self,
        text: &str,
        count: usize,
        limit: Duration,
    ) -> Result<String, Box<dyn std::error::Error>> {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen()?;
            if screen.matches(text).count() >= count {
                return Ok(screen);
            }
            // The command ended (the tests print EXIT=): waiting longer cannot help.
            if !text.starts_with("EXIT=") && screen.contains("EXIT=") {
                return Err(
                    format!("the command ended before {text:?} appeared:\n{screen}").into(),
                );
            }
            if Instant::now() > deadline {
                return Err(format!("{text:?} did not appear within {limit:?}:\n{screen}").into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .status();
    }
}
