//! The dashboard end to end. First the whole app in-process, on ratatui's `TestBackend` with
//! scripted keys, against a real coordinator and a real agent (both the real binary on
//! loopback): register through the wizard, see the miner online, restart compute_subnet and
//! see its new lines. Then the real binary on a real terminal (tmux, 120×40, a private
//! socket): start the agent from the prompt, every tab, help, a resize, quit, and the terminal
//! is restored while the agent goes on.

#![cfg(unix)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tokio::sync::mpsc;

use crate::common::services::{Tmux, free_port};
use crate::common::{self, TestResult};

/// The test's side of the app: a shared screen and a queue of keys.
struct TestHost {
    screen: Arc<Mutex<Terminal<TestBackend>>>,
    keys: mpsc::UnboundedReceiver<Event>,
}

impl polaris::tui::Host for TestHost {
    fn draw(&mut self, render: &mut dyn FnMut(&mut ratatui::Frame)) -> std::io::Result<()> {
        let mut terminal = self
            .screen
            .lock()
            .map_err(|_| std::io::Error::other("screen lock"))?;
        terminal
            .draw(|frame| render(frame))
            .map(|_| ())
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    async fn next_event(&mut self) -> Option<std::io::Result<Event>> {
        self.keys.recv().await.map(Ok)
    }

    fn set_mouse(&mut self, _on: bool) -> std::io::Result<()> {
        Ok(())
    }

    fn suspend(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    fn hand_over(
        &mut self,
        command: &mut std::process::Command,
    ) -> std::io::Result<std::process::ExitStatus> {
        command.status()
    }
}

struct Screen {
    screen: Arc<Mutex<Terminal<TestBackend>>>,
    keys: mpsc::UnboundedSender<Event>,
}

impl Screen {
    fn text(&self) -> String {
        self.screen
            .lock()
            .map(|t| t.backend().to_string())
            .unwrap_or_default()
    }

    fn press(&self, code: KeyCode) -> TestResult {
        self.keys
            .send(Event::Key(KeyEvent::new(code, KeyModifiers::NONE)))?;
        Ok(())
    }

    fn type_text(&self, text: &str) -> TestResult {
        for c in text.chars() {
            self.press(KeyCode::Char(c))?;
        }
        Ok(())
    }

    /// Waits up to `limit` for the screen to show `what`; returns the screen.
    async fn wait_for(
        &self,
        what: &str,
        limit: Duration,
    ) -> Result<String, Box<dyn std::error::Error>> {
        let deadline = Instant::now() + limit;
        loop {
            let text = self.text();
            if text.contains(what) {
                return Ok(text);
            }
            if Instant::now() > deadline {
                return Err(format!("{what:?} did not appear within {limit:?}:\n{text}").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn polaris(home: &Path, envs: &[(&str, String)]) -> std::process::Command {
    let mut command = common::polaris(home);
    if let Some(lang) = std::env::var_os("LANG") {
        command.env("LANG", lang);
    }
    for (name, value) in envs {
        command.env(name, value);
    }
    command
}

/// The first PID the screen shows after `label` on one line.
fn pid_after(screen: &str, label: &str) -> Option<u32> {
    let line = screen.lines().find(|l| l.contains(label))?;
    let rest = &line[line.find(label)? + label.len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .find(|w| !w.is_empty())?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_watch_online_restart_compute_and_see_its_lines() -> TestResult {
    // The app's loop, run here in-process, takes over SIGTERM and SIGHUP for good.
    if let Some(alone) =
        common::in_own_process("dashboard::register_watch_online_restart_compute_and_see_its_lines")
    {
        return alone;
    }
    let (_coordinator_home, server) = common::coordinator()?;
    let home = tempfile::tempdir()?;
    let envs = vec![
        ("SERVER_URL", server.api.clone()),
        ("POLARIS_HEARTBEAT_INTERVAL", "300ms".to_owned()),
        (
            "POLARIS_COMPUTE_CMD",
            "echo \"compute up $$\"; while true; do sleep 0.3; done".to_owned(),
        ),
        ("POLARIS_LOCATION", "Testville, XX".to_owned()),
        (
            "POLARIS_NVML_LIBRARY",
            "/nonexistent/libnvidia-ml.so.1".to_owned(),
        ),
        ("SSH_PORT", free_port()?.to_string()),
    ];
    let started = polaris(home.path(), &envs).arg("start").output()?;
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let stop_agent = scopeguard(home.path(), &envs);

    let layers =
        polaris::config::Layers::from_env(envs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    let settings = polaris::config::Settings::from_layers(home.path().to_owned(), &layers)?;
    let screen = Arc::new(Mutex::new(Terminal::new(TestBackend::new(120, 40))?));
    let (keys_tx, keys) = mpsc::unbounded_channel();
    let mut host = TestHost {
        screen: screen.clone(),
        keys,
    };
    let app = tokio::spawn(async move {
        polaris::tui::run_app(&mut host, settings, 1000)
            .await
            .map_err(|e| e.to_string())
    });
    let ui = Screen {
        screen,
        keys: keys_tx,
    };
    let wait = Duration::from_secs(20);

    ui.wait_for("running, PID", wait).await?;
    ui.wait_for("Not registered yet", wait).await?;
    ui.press(KeyCode::Char('2'))?;
    ui.press(KeyCode::Enter)?;
    ui.wait_for("System Information", wait).await?;
    ui.press(KeyCode::Enter)?;
    ui.wait_for("Select registration type", wait).await?;
    ui.press(KeyCode::Down)?;
    ui.press(KeyCode::Down)?;
    ui.press(KeyCode::Enter)?;
    ui.wait_for("Enter your desired username", wait).await?;
    ui.type_text("wizard_user")?;
    ui.press(KeyCode::Enter)?;
    ui.wait_for("Let validators log in over SSH with keys", wait)
        .await?;
    ui.press(KeyCode::Enter)?; // No, not now
    ui.wait_for("this is what will be sent", wait).await?;
    ui.press(KeyCode::Enter)?;
    let done = ui.wait_for("Registration Complete", wait).await?;
    assert!(done.contains("Important: Save your Miner ID"), "{done}");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.path().join("registration.json"))?)?;
    assert_eq!(record["username"], "wizard_user");
    let dotenv = std::fs::read_to_string(home.path().join(".env"))?;
    assert!(
        dotenv.lines().any(|l| l == "POLARIS_SSH_ACCESS=off"),
        "{dotenv}"
    );

    ui.press(KeyCode::Char('1'))?;
    let online = ui
        .wait_for("sees this miner online", Duration::from_secs(40))
        .await?;
    assert!(online.contains("acknowledged"), "{online}");
    assert!(
        online.contains(record["miner_id"].as_str().unwrap_or("?")),
        "{online}"
    );

    ui.press(KeyCode::Char('4'))?;
    let before = ui.wait_for("compute_subnet", wait).await?;
    let old_pid =
        pid_after(&before, "compute_subnet").ok_or_else(|| format!("no compute PID:\n{before}"))?;
    ui.press(KeyCode::Down)?;
    ui.press(KeyCode::Char('r'))?;
    ui.wait_for("Restart compute_subnet?", wait).await?;
    ui.press(KeyCode::Char('y'))?;
    let deadline = Instant::now() + wait;
    let new_pid = loop {
        let text = ui.text();
        match pid_after(&text, "compute_subnet") {
            Some(pid) if pid != old_pid => break pid,
            _ if Instant::now() > deadline => {
                return Err(format!("compute_subnet was not restarted:\n{text}").into());
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };

    ui.press(KeyCode::Char('5'))?;
    ui.wait_for(&format!("compute up {new_pid}"), wait).await?;

    ui.press(KeyCode::Char('q'))?;
    let farewell = tokio::time::timeout(wait, app)
        .await??
        .map_err(|e| e.to_string())?;
    assert!(farewell.contains("keeps running"), "{farewell}");
    let status = polaris(home.path(), &envs)
        .args(["status", "--json"])
        .output()?;
    let status: serde_json::Value = serde_json::from_slice(&status.stdout)?;
    assert!(
        status["polaris"]["agent_pid"].is_u64(),
        "quitting left the agent running: {status}"
    );
    drop(stop_agent);
    drop(server);
    Ok(())
}

/// Stops the agent of `home` when dropped, however the test ends.
struct StopAgent(std::process::Command);

impl Drop for StopAgent {
    fn drop(&mut self) {
        let _ = self.0.output();
    }
}

fn scopeguard(home: &Path, envs: &[(&str, String)]) -> StopAgent {
    let mut command = polaris(home, envs);
    command.arg("stop");
    StopAgent(command)
}

#[test]
fn the_real_binary_on_a_real_terminal() -> TestResult {
    let home = tempfile::tempdir()?;
    let listen = format!("127.0.0.1:{}", free_port()?);
    let envs = vec![
        ("POLARIS_LISTEN", listen.clone()),
        ("POLARIS_LOCATION", "Testville, XX".to_owned()),
        (
            "POLARIS_NVML_LIBRARY",
            "/nonexistent/libnvidia-ml.so.1".to_owned(),
        ),
    ];
    let exports: String = envs.iter().map(|(k, v)| format!("{k}='{v}' ")).collect();
    let line = format!(
        "env -i PATH=\"$PATH\" HOME='{home}' TERM=xterm-256color POLARIS_HOME='{home}' {exports} {bin}; echo EXIT=$?; sleep 60",
        home = home.path().display(),
        bin = env!("CARGO_BIN_EXE_polaris"),
    );
    let Some(tmux) = Tmux::start_sized(&line, home.path(), 120, 40)? else {
        return Ok(());
    };
    let stop_agent = scopeguard(home.path(), &envs);
    let wait = Duration::from_secs(20);
    let screen = tmux.wait_for("The agent is not running", wait)?;
    assert!(
        screen.contains(&format!(
            "standalone: local coordinator at http://{listen}/api/v1"
        )),
        "{screen}"
    );
    tmux.send(&["Enter"])?;
    tmux.wait_for("✔ running, PID", wait)?;
    for (key, marker) in [
        ("2", "Register · start"),
        ("3", "Compute Resources"),
        ("4", "polaris (agent)"),
        ("5", "lines kept"),
        ("1", "This machine"),
    ] {
        tmux.send(&[key])?;
        tmux.wait_for(marker, wait)?;
    }
    tmux.send(&["?"])?;
    tmux.wait_for("Everywhere", wait)?;
    tmux.send(&["q"])?;
    tmux.resize(60, 15)?;
    tmux.wait_for("Terminal too small", wait)?;
    tmux.resize(120, 40)?;
    tmux.wait_for("This machine", wait)?;
    tmux.send(&["q"])?;
    let screen = tmux.wait_for("EXIT=", wait)?;
    assert!(screen.contains("EXIT=0"), "{screen}");
    assert!(screen.contains("The agent keeps running"), "{screen}");
    let flags = tmux.display("#{alternate_on} #{cursor_flag}")?;
    assert_eq!(flags.trim(), "0 1", "alternate screen left, cursor visible");
    let status = polaris(home.path(), &envs).arg("status").output()?;
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("polaris is running"),
        "the agent outlives the dashboard: {text}"
    );
    drop(stop_agent);
    Ok(())
}

/// `polaris monitor`, the original's live view, is another name for the dashboard: on a
/// terminal it opens it; without one it says what to use instead (exit 2), as `polaris` does.
#[test]
fn monitor_is_the_dashboard_by_its_old_name() -> TestResult {
    let home = tempfile::tempdir()?;
    let listen = format!("127.0.0.1:{}", free_port()?);
    let envs = vec![("POLARIS_LISTEN", listen)];
    let off_terminal = polaris(home.path(), &envs).arg("monitor").output()?;
    assert_eq!(off_terminal.status.code(), Some(2));
    let said = String::from_utf8_lossy(&off_terminal.stderr);
    assert!(said.contains("the dashboard needs a terminal"), "{said}");

    let line = format!(
        "env -i PATH=\"$PATH\" HOME='{home}' TERM=xterm-256color POLARIS_HOME='{home}' POLARIS_LISTEN='{listen}' {bin} monitor; echo EXIT=$?; sleep 60",
        home = home.path().display(),
        listen = envs[0].1,
        bin = env!("CARGO_BIN_EXE_polaris"),
    );
    let Some(tmux) = Tmux::start_sized(&line, home.path(), 120, 40)? else {
        return Ok(());
    };
    let wait = Duration::from_secs(20);
    // The offer to start the agent pops up once the agent link has reported; q closes it,
    // then q quits.
    tmux.wait_for("The agent is not running", wait)?;
    tmux.send(&["q"])?;
    tmux.wait_for("press s (or Enter) to start it", wait)?;
    let deadline = std::time::Instant::now() + wait;
    while tmux.screen()?.contains("The agent is not running") {
        assert!(std::time::Instant::now() < deadline, "the popup stays");
        std::thread::sleep(Duration::from_millis(50));
    }
    tmux.send(&["q"])?;
    let screen = tmux.wait_for("EXIT=", wait)?;
    assert!(screen.contains("EXIT=0"), "{screen}");
    Ok(())
}
