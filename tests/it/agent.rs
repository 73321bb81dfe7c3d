//! The agent against a real coordinator: the heartbeat sender on its own, and `polaris
//! start|status|stop` of the real binary with a real compute_subnet (a shell loop).

#![cfg(target_os = "linux")]

use std::time::Duration;

use crate::common::{self, Server, TestResult};
use polaris::agent::heartbeat::{self, Config, FailureKind, State};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

async fn until(
    state: &mut watch::Receiver<State>,
    what: impl Fn(&State) -> bool,
) -> Result<State, Box<dyn std::error::Error>> {
    let waited = state.wait_for(|s| what(s));
    Ok(tokio::time::timeout(Duration::from_secs(15), waited)
        .await??
        .clone())
}

#[tokio::test]
async fn heartbeats_start_once_registered_and_stop_being_acknowledged_without_a_coordinator()
-> TestResult {
    let (_server_home, server) = common::coordinator()?;
    let home = tempfile::tempdir()?;
    let mut config = Config::new(home.path().to_path_buf(), Duration::from_millis(300));
    config.registration_poll = Duration::from_millis(50);
    config.retry_start = Duration::from_millis(20);
    let (tx, mut state) = watch::channel(State::default());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(heartbeat::run(
        config,
        tx,
        Default::default(),
        cancel.clone(),
    ));

    // Not registered: it waits quietly.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(state.borrow().acknowledged, 0);
    assert_eq!(state.borrow().miner_id, None);

    let http = reqwest::Client::new();
    let (miner_id, token) = common::register(&http, &server).await?;
    common::save_registration(home.path(), &server.api, &miner_id, token, "agent-test")?;
    let acknowledged = until(&mut state, |s| s.acknowledged >= 2).await?;
    assert_eq!(acknowledged.miner_id.as_deref(), Some(miner_id.as_str()));
    assert!(acknowledged.last_rtt_ms.is_some_and(|ms| ms > 0.0));
    let statuses: Value = http
        .get(format!("{}/miners/heartbeat_status", server.api))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(statuses[&miner_id]["status"], "online", "{statuses}");

    // The coordinator goes away: failures are counted, the sender keeps going.
    drop(server);
    let failing = until(&mut state, |s| s.failures >= 3).await?;
    let error = failing.last_error.ok_or("no error kept")?;
    assert_eq!(error.kind, FailureKind::Unreachable, "{error}");
    assert!(error.message.contains("unreachable"), "{error}");
    assert!(!task.is_finished(), "never gives up");
    cancel.cancel();
    task.await?;
    Ok(())
}

/// `polaris start|status|stop` of the real binary, with a real coordinator and a real
/// compute_subnet (a shell loop).
pub(crate) struct Agent {
    pub(crate) home: tempfile::TempDir,
    api: String,
}

impl Agent {
    /// A coordinator in a home of its own (returned, to live as long as it) and an agent with
    /// a fresh home pointed at it.
    pub(crate) fn with_coordinator()
    -> Result<(tempfile::TempDir, Server, Self), Box<dyn std::error::Error>> {
        let (server_home, server) = common::coordinator()?;
        let agent = Agent {
            home: tempfile::tempdir()?,
            api: server.api.clone(),
        };
        Ok((server_home, server, agent))
    }

    pub(crate) fn polaris(&self, args: &[&str]) -> std::process::Command {
        let mut command = common::polaris(self.home.path());
        command
            .args(args)
            .env("SERVER_URL", &self.api)
            .env("POLARIS_HEARTBEAT_INTERVAL", "300ms")
            .env(
                "POLARIS_COMPUTE_CMD",
                "echo compute up; while true; do sleep 0.2; done",
            );
        command
    }

    /// Registers a miner with `server` (the original body) and saves its registration.json in
    /// the agent's home; returns the miner's id.
    pub(crate) async fn register(
        &self,
        server: &Server,
    ) -> Result<String, Box<dyn std::error::Error>> {
        let (miner_id, token) = common::register(&reqwest::Client::new(), server).await?;
        common::save_registration(
            self.home.path(),
            &server.api,
            &miner_id,
            token,
            "agent-test",
        )?;
        Ok(miner_id)
    }

    /// `polaris start`, which must exit 0; returns what it printed.
    pub(crate) fn start(&self) -> Result<String, Box<dyn std::error::Error>> {
        let (code, out) = self.run(&["start"])?;
        assert_eq!(code, Some(0), "{out}");
        Ok(out)
    }

    pub(crate) fn run(
        &self,
        args: &[&str],
    ) -> Result<(Option<i32>, String), Box<dyn std::error::Error>> {
        let output = self.polaris(args).output()?;
        Ok((
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        ))
    }

    pub(crate) fn status(&self) -> Result<Value, Box<dyn std::error::Error>> {
        let output = self.polaris(&["status", "--json"]).output()?;
        Ok(serde_json::from_slice(&output.stdout)?)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.polaris(&["stop"]).output();
    }
}

fn pid_in(text: &str, prefix: &str) -> Option<u32> {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|rest| rest.trim_end_matches('.').parse().ok())
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
}

async fn miner_status(
    server: &Server,
    miner_id: &str,
) -> Result<Value, Box<dyn std::error::Error>> {
    let statuses: Value = reqwest::Client::new()
        .get(format!("{}/miners/heartbeat_status", server.api))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .json()
        .await?;
    Ok(statuses[miner_id]["status"].clone())
}

#[tokio::test]
async fn start_status_crash_restart_stop_and_nothing_left() -> TestResult {
    let (_server_home, server, agent) = Agent::with_coordinator()?;
    let miner_id = agent.register(&server).await?;

    let out = agent.start()?;
    assert!(out.contains("Starting Polaris..."), "{out}");
    let agent_pid = pid_in(&out, "polaris started successfully with PID ").ok_or(out.clone())?;
    let compute_pid =
        pid_in(&out, "compute_subnet started successfully with PID ").ok_or(out.clone())?;
    assert!(out.contains("Logs: stdout -> "), "{out}");
    let (code, again) = agent.run(&["start"])?;
    assert_eq!(code, Some(0));
    assert!(
        again.contains(&format!("polaris is already running with PID {agent_pid}.")),
        "{again}"
    );

    let (code, text) = agent.run(&["status"])?;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(&format!(
        "compute_subnet is running with PID {compute_pid}."
    )));

    // Heartbeats reach the coordinator.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while miner_status(&server, &miner_id).await? != "online" {
        assert!(std::time::Instant::now() < deadline, "never online");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // kill -9 compute_subnet: restarted after the backoff, with a new PID.
    std::process::Command::new("kill")
        .args(["-9", &compute_pid.to_string()])
        .status()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let restarted = loop {
        let status = agent.status()?;
        let compute = &status["polaris"]["compute"];
        if compute["restarts"] == 1 && compute["pid"].is_u64() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not restarted: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let new_pid = restarted["polaris"]["compute"]["pid"]
        .as_u64()
        .ok_or("no pid")? as u32;
    assert_ne!(new_pid, compute_pid);
    assert_eq!(restarted["polaris"]["compute"]["last_exit"]["signal"], 9);
    // The agent's log says it as a person reads it, not as Rust's debug output.
    let (_, text) = agent.run(&["status"])?;
    assert!(text.contains("last exit: signal 9"), "{text}");
    let log = std::fs::read_to_string(agent.home.path().join("logs/polaris_stdout.log"))?
        + &std::fs::read_to_string(agent.home.path().join("logs/polaris_stderr.log"))
            .unwrap_or_default();
    assert!(log.contains("compute_subnet exited: signal 9"), "{log}");
    assert!(log.contains(&format!("pid={new_pid}")), "{log}");
    assert!(!log.contains("Some("), "{log}");

    let (code, out) = agent.run(&["stop"])?;
    assert_eq!(code, Some(0), "{out}");
    for line in [
        "Stopping Polaris...",
        "polaris stopped successfully.",
        "Stopping Compute Subnet...",
        "compute_subnet stopped successfully.",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
    assert!(!alive(agent_pid) && !alive(new_pid) && !alive(compute_pid));
    let (code, text) = agent.run(&["status"])?;
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("polaris is not running."), "{text}");
    // The agent signed off: offline at once, not after 45 s of silence.
    assert_eq!(miner_status(&server, &miner_id).await?, "offline");
    Ok(())
}

#[test]
fn a_stale_pid_file_naming_a_stranger_is_neither_ours_nor_killed() -> TestResult {
    let (_server_home, _server, agent) = Agent::with_coordinator()?;
    let mut stranger = std::process::Command::new("sleep").arg("60").spawn()?;
    let pids = agent.home.path().join("pids");
    std::fs::create_dir_all(&pids)?;
    // The stranger's PID with another process's start time: what a reused PID looks like.
    let stale = serde_json::json!({ "pid": stranger.id(), "started": 1 });
    std::fs::write(pids.join("polaris.pid"), stale.to_string())?;
    std::fs::write(pids.join("compute_subnet.pid"), stale.to_string())?;

    let (code, text) = agent.run(&["status"])?;
    assert_eq!(code, Some(3));
    assert!(text.contains("polaris is not running."), "{text}");
    let (code, text) = agent.run(&["stop"])?;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("polaris is not running."), "{text}");
    assert!(alive(stranger.id()), "the stranger was not touched");
    let text = agent.start()?;
    assert!(text.contains("polaris started successfully"), "{text}");
    assert!(alive(stranger.id()));
    agent.run(&["stop"])?;
    assert!(alive(stranger.id()));
    stranger.kill()?;
    stranger.wait()?;
    Ok(())
}

#[tokio::test]
async fn heartbeats_resume_when_the_coordinator_comes_back() -> TestResult {
    let (server_home, server, agent) = Agent::with_coordinator()?;
    let address = server.base.trim_start_matches("http://").to_owned();
    let miner_id = agent.register(&server).await?;
    agent.start()?;
    let acknowledged = |status: &Value| status["polaris"]["heartbeat"]["acknowledged"].as_u64();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while acknowledged(&agent.status()?).unwrap_or(0) < 1 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while agent.status()?["polaris"]["heartbeat"]["failures"]
        .as_u64()
        .unwrap_or(0)
        < 1
    {
        assert!(std::time::Instant::now() < deadline, "failures not seen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Failing heartbeats are not healthy: scripts see exit 3 and the reason.
    let (code, text) = agent.run(&["status"])?;
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("heartbeats failing"), "{text}");
    let failing = agent.status()?;
    assert_eq!(failing["healthy"], false, "{failing}");
    let problems = failing["problems"].to_string();
    assert!(problems.contains("heartbeats failing"), "{problems}");
    let before = acknowledged(&agent.status()?).unwrap_or(0);
    // The same coordinator (same store, same port) comes back.
    let server = Server::start(server_home.path(), &["--listen", &address])?;
    let back = std::time::Instant::now();
    let deadline = back + Duration::from_secs(15);
    while acknowledged(&agent.status()?).unwrap_or(0) <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "heartbeats did not resume"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Within one interval (300 ms ± 10 %), plus the time `status` takes to ask; 2 s leaves room
    // for a loaded 2-core machine.
    let resumed = back.elapsed();
    eprintln!("heartbeats resumed {resumed:?} after the coordinator came back");
    assert!(resumed < Duration::from_secs(2), "{resumed:?}");
    assert_eq!(miner_status(&server, &miner_id).await?, "online");
    let (code, text) = agent.run(&["status"])?;
    assert_eq!(code, Some(0), "healthy again: {text}");
    assert_eq!(agent.status()?["problems"], serde_json::json!([]));
    Ok(())
}

fn git(dir: &std::path::Path, args: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Polaris Test",
            "-c",
            "user.email=test@polaris.invalid",
        ])
        .args(args)
        .output()?;
    if !output.status.success() {
        return Err(format!("git {args:?}: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A bare "origin" and a working clone that publishes commits to it.
fn origin_with_commit(
    root: &std::path::Path,
) -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
    let origin = root.join("origin.git");
    std::fs::create_dir_all(&origin)?;
    git(
        &origin,
        &["init", "--quiet", "--bare", "--initial-branch=main"],
    )?;
    let publisher = root.join("publisher");
    git(
        root,
        &["clone", "--quiet", &origin.to_string_lossy(), "publisher"],
    )?;
    git(&publisher, &["checkout", "--quiet", "-b", "main"])?;
    std::fs::write(publisher.join("version.txt"), "v1\n")?;
    git(&publisher, &["add", "version.txt"])?;
    git(&publisher, &["commit", "--quiet", "-m", "v1"])?;
    git(&publisher, &["push", "--quiet", "origin", "main"])?;
    Ok(publisher)
}

#[test]
fn update_subnet_clones_fast_forwards_refuses_local_changes_and_restarts() -> TestResult {
    let (_server_home, _server, agent) = Agent::with_coordinator()?;
    let root = tempfile::tempdir()?;
    let publisher = origin_with_commit(root.path())?;
    let checkout = agent.home.path().join("compute_subnet");
    let origin = root.path().join("origin.git");
    let update = || -> Result<(Option<i32>, String), Box<dyn std::error::Error>> {
        let output = agent
            .polaris(&["update", "subnet"])
            .env("POLARIS_COMPUTE_REPO", &origin)
            .env("POLARIS_COMPUTE_DIR", &checkout)
            .output()?;
        Ok((
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        ))
    };

    let (code, out) = update()?;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("Updating Polaris Subnet Repository..."),
        "{out}"
    );
    assert!(out.contains("Update completed successfully."), "{out}");
    assert_eq!(
        std::fs::read_to_string(checkout.join("version.txt"))?,
        "v1\n"
    );

    std::fs::write(publisher.join("version.txt"), "v2\n")?;
    git(&publisher, &["commit", "--quiet", "-am", "v2"])?;
    git(&publisher, &["push", "--quiet", "origin", "main"])?;
    let (code, out) = update()?;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Updated "), "{out}");
    assert_eq!(
        std::fs::read_to_string(checkout.join("version.txt"))?,
        "v2\n"
    );

    // A hand fix in the checkout is never thrown away.
    std::fs::write(checkout.join("version.txt"), "my fix\n")?;
    let (code, out) = update()?;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("local changes"), "{out}");
    assert_eq!(
        std::fs::read_to_string(checkout.join("version.txt"))?,
        "my fix\n"
    );
    git(&checkout, &["checkout", "--", "."])?;

    // With compute_subnet running, the update restarts it.
    agent.start()?;
    let (code, out) = update()?;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("compute_subnet restarted."), "{out}");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while agent.status()?["polaris"]["compute"]["restarts"] != 1 {
        assert!(std::time::Instant::now() < deadline, "not restarted");
        std::thread::sleep(Duration::from_millis(50));
    }
    agent.run(&["stop"])?;
    Ok(())
}

#[test]
fn a_garbage_config_never_keeps_status_or_stop_from_the_running_agent() -> TestResult {
    let (_server_home, _server, agent) = Agent::with_coordinator()?;
    let out = agent.start()?;
    let pid = pid_in(&out, "polaris started successfully with PID ").ok_or(out.clone())?;
    std::fs::write(
        agent.home.path().join("polaris.toml"),
        "this is [not toml\n",
    )?;
    let (code, text) = agent.run(&["status"])?;
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!("polaris is running with PID {pid}.")),
        "{text}"
    );
    assert!(text.contains("warning: cannot parse"), "{text}");
    let (code, text) = agent.run(&["stop"])?;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("polaris stopped successfully."), "{text}");
    assert!(!alive(pid), "the agent still runs");
    Ok(())
}

#[test]
fn a_missing_compute_dir_is_named_by_start_and_status() -> TestResult {
    let (_server_home, _server, agent) = Agent::with_coordinator()?;
    let missing = agent.home.path().join("no-such-subnet");
    let output = agent
        .polaris(&["start"])
        .env("POLARIS_COMPUTE_DIR", &missing)
        .output()?;
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(0), "{out}");
    let named = format!(
        "POLARIS_COMPUTE_DIR {} is not a directory",
        missing.display()
    );
    assert!(out.contains(&named), "{out}");
    let (code, text) = agent.run(&["status"])?;
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains(&format!("cannot start: {named}")), "{text}");
    agent.run(&["stop"])?;
    Ok(())
}

/// `--daemon` says on its terminal (or journal) that it runs, where its logs go, and that it
/// stopped; everything else goes to the log.
#[test]
fn the_daemon_says_one_line_at_start_and_one_at_stop() -> TestResult {
    use std::io::Read;
    let (_server_home, _server, agent) = Agent::with_coordinator()?;
    let mut child = agent
        .polaris(&["--daemon"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut first = Vec::new();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte)? == 1 && byte[0] != b'\n' {
        first.push(byte[0]);
    }
    let first = String::from_utf8(first)?;
    assert!(
        first.starts_with(&format!("polaris agent starting with PID {}", child.id())),
        "{first}"
    );
    assert!(
        first.contains(&agent.home.path().join("logs").display().to_string()),
        "{first}"
    );
    // Stopped once it answers, as systemd would stop a running service.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while agent.status()?["polaris"].is_null() {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    let mut rest = String::new();
    stdout.read_to_string(&mut rest)?;
    assert!(child.wait()?.success());
    assert_eq!(rest, "polaris agent stopped\n");
    Ok(())
}

/// A standalone agent (no SERVER_URL) hosts its coordinator and stops it last: the sign-off
/// heartbeat reaches it instead of "connection refused".
#[tokio::test]
async fn a_standalone_agent_signs_off_before_its_coordinator_stops() -> TestResult {
    let home = tempfile::tempdir()?;
    let listen = format!("127.0.0.1:{}", common::services::free_port()?);
    let api = format!("http://{listen}/api/v1");
    let polaris = |args: &[&str]| {
        let mut command = common::polaris(home.path());
        command
            .args(args)
            .env("POLARIS_LISTEN", &listen)
            .env("POLARIS_HEARTBEAT_INTERVAL", "300ms");
        command
    };
    let started = polaris(&["start"]).output()?;
    assert!(started.status.success(), "{started:?}");
    let answer: Value = reqwest::Client::new()
        .post(format!("{api}/miners/"))
        .json(&common::fixture("registration.json", ""))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = answer["miner_id"].as_str().ok_or("no miner_id")?;
    let token = answer["token"].as_str().ok_or("no token")?.to_owned();
    common::save_registration(home.path(), &api, id, token, "agent-test")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let status = polaris(&["status", "--json"]).output()?;
        let status: Value = serde_json::from_slice(&status.stdout)?;
        if status["polaris"]["heartbeat"]["acknowledged"].as_u64() >= Some(1) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no heartbeat: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stopped = polaris(&["stop"]).output()?;
    assert!(stopped.status.success(), "{stopped:?}");
    let log = std::fs::read_to_string(home.path().join("logs/polaris_stdout.log"))?;
    assert!(!log.contains("could not sign off"), "{log}");
    assert!(log.contains("signed off"), "{log}");
    Ok(())
}

/// registration.json damaged under a running agent: heartbeats stop loudly (status, exit 3, the
/// log) instead of the last acknowledgement ageing quietly, and resume once it is fixed.
#[tokio::test]
async fn a_damaged_registration_stops_heartbeats_loudly_and_a_fixed_one_resumes_them() -> TestResult
{
    let (_server_home, server, agent) = Agent::with_coordinator()?;
    agent.register(&server).await?;
    agent.start()?;
    let acknowledged = |status: &Value| status["polaris"]["heartbeat"]["acknowledged"].as_u64();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while acknowledged(&agent.status()?).unwrap_or(0) < 1 {
        assert!(std::time::Instant::now() < deadline, "no heartbeat");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let path = agent.home.path().join("registration.json");
    let good = std::fs::read(&path)?;
    std::fs::write(&path, b"{\"miner_id\": \"trunc")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let damaged = loop {
        let status = agent.status()?;
        if status["polaris"]["heartbeat"]["registration_problem"].is_string() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not noticed: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(damaged["healthy"], false, "{damaged}");
    let (code, text) = agent.run(&["status"])?;
    assert_eq!(code, Some(3), "{text}");
    assert!(
        text.contains("heartbeats stopped") && text.contains("damaged"),
        "{text}"
    );
    let log = std::fs::read_to_string(agent.home.path().join("logs/polaris_stdout.log"))?;
    assert_eq!(
        log.matches("heartbeats stopped").count(),
        1,
        "said once: {log}"
    );

    std::fs::write(&path, good)?;
    let before = acknowledged(&agent.status()?).unwrap_or(0);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let status = agent.status()?;
        if acknowledged(&status).unwrap_or(0) > before
            && status["polaris"]["heartbeat"]["registration_problem"].is_null()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not resumed: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, text) = agent.run(&["status"])?;
    assert_eq!(code, Some(0), "{text}");
    agent.run(&["stop"])?;
    Ok(())
}

#[test]
fn sighup_reopens_the_logs_and_the_agent_goes_on() -> TestResult {
    let (_server_home, _server, agent) = Agent::with_coordinator()?;
    let out = agent.start()?;
    let pid = pid_in(&out, "polaris started successfully with PID ").ok_or(out.clone())?;
    let log = agent.home.path().join("logs/polaris_stdout.log");
    // logrotate moves the file away, then sends SIGHUP.
    std::fs::rename(&log, agent.home.path().join("logs/moved.log"))?;
    std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("log files reopened") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no new log: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(alive(pid), "SIGHUP did not stop the agent");
    let (code, text) = agent.run(&["status"])?;
    assert_eq!(code, Some(0), "{text}");
    Ok(())
}

#[test]
fn a_new_agent_stops_the_compute_subnet_a_killed_one_left() -> TestResult {
    let (_server_home, _server, agent) = Agent::with_coordinator()?;
    let out = agent.start()?;
    let first = pid_in(&out, "polaris started successfully with PID ").ok_or(out.clone())?;
    let orphan =
        pid_in(&out, "compute_subnet started successfully with PID ").ok_or(out.clone())?;
    std::process::Command::new("kill")
        .args(["-9", &first.to_string()])
        .status()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while alive(first) {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(alive(orphan), "compute_subnet outlives a killed agent");
    let out = agent.start()?;
    let fresh = pid_in(&out, "compute_subnet started successfully with PID ").ok_or(out.clone())?;
    assert_ne!(fresh, orphan);
    assert!(!alive(orphan), "the orphan was stopped, not duplicated");
    let (code, out) = agent.run(&["stop"])?;
    assert_eq!(code, Some(0), "{out}");
    assert!(!alive(fresh));
    Ok(())
}

#[tokio::test]
async fn stop_compute_keeps_it_stopped_and_start_brings_it_back() -> TestResult {
    use polaris::agent::control::{self, Request, Response};
    use polaris::agent::supervisor::Phase;
    let (_server_home, _server, agent) = Agent::with_coordinator()?;
    let out = agent.start()?;
    let first = pid_in(&out, "compute_subnet started successfully with PID ").ok_or(out.clone())?;
    let socket = control::socket_path(agent.home.path());
    // The dashboard's way in: a subscription sees the stop, no polling.
    let mut watching = control::watch(&socket).await?;
    let answer = control::ask(&socket, Request::StopCompute).await?;
    assert!(matches!(answer, Response::Done { .. }), "{answer:?}");
    let stopped = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(snapshot) = watching.next().await? {
            if snapshot
                .compute
                .as_ref()
                .is_some_and(|c| c.phase == Phase::Stopped)
            {
                return Ok::<_, control::ControlError>(true);
            }
        }
        Ok(false)
    })
    .await??;
    assert!(stopped);
    assert!(!alive(first), "the stopped run is gone");
    let (code, text) = agent.run(&["status"])?;
    assert_eq!(code, Some(3), "{text}");
    let out = agent.start()?;
    assert!(
        out.contains("polaris is already running with PID "),
        "{out}"
    );
    let second =
        pid_in(&out, "compute_subnet started successfully with PID ").ok_or(out.clone())?;
    assert_ne!(second, first);
    assert!(alive(second));
    drop(watching);
    let (code, out) = agent.run(&["stop"])?;
    assert_eq!(code, Some(0), "{out}");
    assert!(!alive(second));
    Ok(())
}

/// Builds tests/fixtures/hanging-nvml.c: an NVML whose start-up never returns. None (a loud
/// skip) without a C compiler.
fn hanging_nvml(
    dir: &std::path::Path,
) -> Result<Option<std::path::PathBuf>, Box<dyn std::error::Error>> {
    let source =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hanging-nvml.c");
    let library = dir.join("libnvidia-ml.so.1");
    match std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .status()
    {
        Ok(status) if status.success() => Ok(Some(library)),
        Ok(status) => Err(format!("cc failed on {}: {status}", source.display()).into()),
        Err(err) => {
            common::services::missing_service("cc (a C compiler)", &err.to_string());
            Ok(None)
        }
    }
}

/// A GPU driver that hangs at start-up (the NVML stand-in never returns) must not take the
/// agent with it: it starts, answers `status`, its heartbeats are acknowledged with the
/// figures it has, `status` says the figures are late (exit 3), and it stops.
#[tokio::test]
async fn a_wedged_gpu_driver_keeps_neither_heartbeats_nor_status_from_the_agent() -> TestResult {
    let (_server_home, server, agent) = Agent::with_coordinator()?;
    let Some(library) = hanging_nvml(agent.home.path())? else {
        return Ok(());
    };
    let miner_id = agent.register(&server).await?;
    let mut start = agent.polaris(&["start"]);
    start.env("POLARIS_NVML_LIBRARY", &library);
    let output = start.output()?;
    let out = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{out}");

    let late = common::wait_for(Duration::from_secs(15), || async {
        let status = agent.status().ok()?;
        let beat = &status["polaris"]["heartbeat"];
        (beat["acknowledged"].as_u64()? >= 2 && beat["sampling_problem"].is_string())
            .then_some(status)
    })
    .await
    .ok_or("no acknowledged heartbeats with late figures within 15 s")?;
    assert_eq!(late["healthy"], false, "{late}");
    let problems = late["problems"].to_string();
    assert!(
        problems.contains("figures did not come within"),
        "{problems}"
    );
    assert_eq!(miner_status(&server, &miner_id).await?, "online");
    let (code, text) = agent.run(&["status"])?;
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("last heartbeat acknowledged"), "{text}");
    assert!(text.contains("a stuck GPU driver or disk?"), "{text}");
    let (code, out) = agent.run(&["stop"])?;
    assert_eq!(code, Some(0), "{out}");
    Ok(())
}

/// A token the coordinator refuses is told apart from a coordinator that is down: `last_error`
/// says `refused`, and `status` says what to do.
#[tokio::test]
async fn a_refused_token_is_reported_as_refused_not_as_unreachable() -> TestResult {
    let (_server_home, server, agent) = Agent::with_coordinator()?;
    let miner_id = agent.register(&server).await?;
    agent.start()?;
    common::wait_for(Duration::from_secs(15), || async {
        let status = agent.status().ok()?;
        (status["polaris"]["heartbeat"]["acknowledged"].as_u64()? >= 1).then_some(())
    })
    .await
    .ok_or("no heartbeat acknowledged within 15 s")?;
    // The same miner with a token the coordinator never issued.
    common::save_registration(
        agent.home.path(),
        &server.api,
        &miner_id,
        "not-the-token-it-was-given".to_owned(),
        "agent-test",
    )?;
    let refused = common::wait_for(Duration::from_secs(15), || async {
        let status = agent.status().ok()?;
        (status["polaris"]["heartbeat"]["failures"].as_u64()? >= 1).then_some(status)
    })
    .await
    .ok_or("the refused token was never reported")?;
    let error = &refused["polaris"]["heartbeat"]["last_error"];
    assert_eq!(error["kind"], "refused", "{refused}");
    assert_eq!(error["status"], 401, "{refused}");
    assert!(
        refused["problems"]
            .to_string()
            .contains("the coordinator refuses this miner: run `polaris register` again"),
        "{refused}"
    );
    let (code, text) = agent.run(&["status"])?;
    assert_eq!(code, Some(3), "{text}");
    assert!(
        text.contains("does not know this miner (401 Unauthorized)"),
        "{text}"
    );
    assert!(!text.contains("not-the-token"), "never a token: {text}");
    Ok(())
}

/// SIGTERM while the agent is still starting (here: stopping a TERM-ignoring compute_subnet a
/// killed agent left, which takes its 10 s grace) is a clean stop: the orphan is still dealt
/// with, nothing else starts, exit 0, no PID file left. It used to kill the agent by signal.
#[test]
fn sigterm_while_the_agent_starts_is_a_clean_stop() -> TestResult {
    let home = tempfile::tempdir()?;
    // Its own session and group, as the supervisor starts compute_subnet (a group is stopped
    // whole, and this one must not be the test's).
    let mut orphan = std::process::Command::new("setsid")
        .args(["sh", "-c", "trap '' TERM; exec sleep 60"])
        .spawn()?;
    let orphan_pid = orphan.id();
    std::thread::sleep(Duration::from_millis(200));
    polaris::agent::pidfile::write(home.path(), "compute_subnet", orphan_pid)?;
    let mut daemon = common::polaris(home.path())
        .arg("--daemon")
        .env("SERVER_URL", "http://127.0.0.1:9/api/v1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let log = home.path().join("logs").join("polaris_stdout.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("stopping compute_subnet left by a previous agent")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "never began stopping the orphan"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::process::Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = daemon.try_wait()? {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the agent did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = orphan.wait();
    assert_eq!(
        status.code(),
        Some(0),
        "a clean stop, not death by signal: {status}"
    );
    assert!(!alive(orphan_pid), "the orphan was stopped all the same");
    assert!(!polaris::agent::pidfile::path(home.path(), "polaris").exists());
    let logged = std::fs::read_to_string(&log)?;
    assert!(
        logged.contains("agent stopped before it started"),
        "{logged}"
    );
    assert!(
        !logged.contains("agent started"),
        "nothing started: {logged}"
    );
    Ok(())
}

/// What the agent writes in POLARIS_HOME is its owner's alone, whatever the home's own mode:
/// folders 0700, logs, PID files, the lock and the control socket 0600 (issue 11, finding 5).
#[tokio::test]
async fn the_agents_files_are_private() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let (_server_home, server, agent) = Agent::with_coordinator()?;
    std::fs::set_permissions(agent.home.path(), std::fs::Permissions::from_mode(0o755))?;
    agent.register(&server).await?;
    agent.start()?;
    let mode = common::mode;
    let files = common::files_under(agent.home.path());
    for name in [
        "polaris_stdout.log",
        "compute_subnet_stdout.log",
        "polaris.pid",
        "polaris.sock",
    ] {
        assert!(files.iter().any(|f| f.ends_with(name)), "{name}: {files:?}");
    }
    let open_to_others = common::open_to_others(&files);
    assert!(open_to_others.is_empty(), "{open_to_others:?}");
    for dir in ["logs", "pids"] {
        assert_eq!(mode(&agent.home.path().join(dir)), 0o700, "{dir}");
    }
    Ok(())
}
