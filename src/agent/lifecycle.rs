//! The rules `polaris start` and `polaris stop` follow, as library code with typed results: the
//! CLI prints them, the dashboard shows them. Starting spawns `polaris --daemon` detached and
//! waits for its control socket to answer; stopping asks it over the socket (SIGTERM, then
//! SIGKILL, if it does not answer) and then stops any compute_subnet group it left behind.
//! Every wait is async: nothing here blocks a runtime worker.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use super::control::{self, ControlError, Request, Response, Snapshot};
use super::daemon::AGENT;
use super::pidfile;
#[cfg(unix)]
use super::process;
use crate::config::Settings;

/// How long a starting agent has to answer on its socket.
const START_LIMIT: Duration = Duration::from_secs(15);
/// How often a start looks for the answer.
const POLL: Duration = Duration::from_millis(50);

/// The running agent's state, as its control socket tells it.
pub async fn snapshot(home: &Path) -> Result<Snapshot, ControlError> {
    match control::ask(&control::socket_path(home), Request::Status).await? {
        Response::Status(snapshot) => Ok(*snapshot),
        Response::Refused { message } => Err(ControlError::Refused { message }),
        _ => Err(ControlError::Protocol {
            detail: "expected a status".to_owned(),
        }),
    }
}

/// An agent that answers.
#[derive(Debug, Clone)]
pub struct Started {
    pub pid: u32,
    /// It was running before this start (or another start won the race).
    pub already_running: bool,
    pub snapshot: Snapshot,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start the agent: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("cannot prepare {}: {source}", path.display())]
    Files {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the agent stopped at start ({status}): {stderr_tail}")]
    Exited { status: String, stderr_tail: String },
    #[error("the agent did not answer within 15 s and was stopped; see {}", log.display())]
    NoAnswer { log: PathBuf },
    #[error(
        "polaris is running with PID {pid} but does not answer on its control socket: stop it with `polaris stop`"
    )]
    Unresponsive { pid: u32 },
    #[error(transparent)]
    Control(ControlError),
    #[error(
        "the agent's control channel is not built for Windows yet: run `polaris --daemon` instead"
    )]
    Unsupported,
}

/// Waits up to `limit` for the agent of `home` to answer. A protocol error is final (another
/// version answers: waiting will not change it); anything else may be a start still under way.
async fn wait_for_answer(home: &Path, limit: Duration) -> Result<Option<Snapshot>, ControlError> {
    let deadline = Instant::now() + limit;
    loop {
        match snapshot(home).await {
            Ok(snapshot) => return Ok(Some(snapshot)),
            Err(err @ ControlError::Protocol { .. }) => return Err(err),
            Err(_) if Instant::now() >= deadline => return Ok(None),
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Starts the agent in the background, unless it runs: what `polaris start` does.
pub async fn start(settings: &Settings) -> Result<Started, StartError> {
    let home = &settings.home;
    if let Some(live) = pidfile::read_live(home, AGENT) {
        return already_running(home, live.pid).await;
    }
    #[cfg(unix)]
    {
        spawn_and_wait(settings).await
    }
    #[cfg(not(unix))]
    {
        Err(StartError::Unsupported)
    }
}

/// An agent `pid` runs (or is starting): its answer, once it comes.
async fn already_running(home: &Path, pid: u32) -> Result<Started, StartError> {
    match wait_for_answer(home, START_LIMIT).await {
        Ok(Some(snapshot)) => Ok(Started {
            pid: snapshot.agent_pid,
            already_running: true,
            snapshot,
        }),
        Ok(None) => Err(StartError::Unresponsive { pid }),
        Err(err) => Err(StartError::Control(err)),
    }
}

/// This program's path. After an upgrade replaced the binary while we run (a dashboard left
/// open), Linux names ours `PATH (deleted)`: the agent is then started from the new one.
#[cfg(unix)]
fn polaris_executable() -> std::io::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    if exe.exists() {
        return Ok(exe);
    }
    let text = exe.to_string_lossy();
    match text.strip_suffix(" (deleted)") {
        Some(path) if Path::new(path).exists() => Ok(path.into()),
        _ => Ok(exe),
    }
}

#[cfg(unix)]
async fn spawn_and_wait(settings: &Settings) -> Result<Started, StartError> {
    use super::log_files::{self, Process, Stream};
    use std::process::Stdio;
    let home = &settings.home;
    let logs_dir = settings.logs_dir();
    let stdout_log = log_files::path(&logs_dir, Process::Polaris, Stream::Stdout);
    let stderr_log = log_files::path(&logs_dir, Process::Polaris, Stream::Stderr);
    let files = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StartError::Files { path, source }
    };
    crate::files::create_private_dir_all(&logs_dir).map_err(files(&logs_dir))?;
    let stderr = crate::files::open_private_append(&stderr_log).map_err(files(&stderr_log))?;
    let exe = polaris_executable().map_err(StartError::Spawn)?;
    let home_dir = home.canonicalize().unwrap_or_else(|_| home.clone());
    let mut command = tokio::process::Command::new(exe);
    // POLARIS_HOME as an absolute path and as the working directory: the agent (and a
    // compute_subnet without POLARIS_COMPUTE_DIR) must not depend on where `start` was typed.
    command
        .arg("--daemon")
        .arg("--home")
        .arg(&home_dir)
        .current_dir(&home_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr))
        // Its own process group: the terminal's Ctrl-C and hang-up do not reach it.
        .process_group(0)
        .kill_on_drop(false);
    let mut child = command.spawn().map_err(StartError::Spawn)?;
    let child_pid = child.id();
    let deadline = Instant::now() + START_LIMIT;
    loop {
        match snapshot(home).await {
            Ok(snapshot) => {
                return Ok(Started {
                    pid: snapshot.agent_pid,
                    // Another start's agent answering: that one won the race.
                    already_running: Some(snapshot.agent_pid) != child_pid,
                    snapshot,
                });
            }
            Err(err @ ControlError::Protocol { .. }) => return Err(StartError::Control(err)),
            Err(_) => {}
        }
        // try_wait reaps the child if it ended: no zombie is left while we wait.
        if let Ok(Some(status)) = child.try_wait() {
            // Another `start` won the race (the lock is its): success for this one too.
            if let Some(live) = pidfile::read_live(home, AGENT) {
                let remaining = deadline.saturating_duration_since(Instant::now());
                return match wait_for_answer(home, remaining.max(POLL)).await {
                    Ok(Some(snapshot)) => Ok(Started {
                        pid: snapshot.agent_pid,
                        already_running: true,
                        snapshot,
                    }),
                    Ok(None) => Err(StartError::Unresponsive { pid: live.pid }),
                    Err(err) => Err(StartError::Control(err)),
                };
            }
            let tail = crate::agent::tail::last_lines(&stderr_log, 3).unwrap_or_default();
            return Err(StartError::Exited {
                status: status.to_string(),
                stderr_tail: tail.join(" / "),
            });
        }
        if Instant::now() >= deadline {
            // Do not leave a silent agent behind: on SIGTERM it stops its compute_subnet too.
            if let Some(pid) = child_pid {
                process::signal_process(pid, rustix::process::Signal::TERM);
            }
            if tokio::time::timeout(START_LIMIT, child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
            return Err(StartError::NoAnswer { log: stdout_log });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// How compute_subnet's first start went, as far as `polaris start` waits for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComputeStart {
    Running {
        pid: u32,
    },
    /// It could not be spawned, exits at once, or was stopped on request.
    Failed {
        reason: String,
    },
    NotConfigured,
    /// The agent stopped answering (or never did).
    AgentGone,
}

/// Judges one snapshot; None: not decided yet.
fn compute_start(snapshot: &Snapshot) -> Option<ComputeStart> {
    if !snapshot.compute_configured {
        return Some(ComputeStart::NotConfigured);
    }
    let state = snapshot.compute.as_ref()?;
    if let Some(pid) = state.pid {
        return Some(ComputeStart::Running { pid });
    }
    // Stopped (on request) is not final here: a `StartCompute` just sent may not have
    // reached the supervisor yet. The deadline decides.
    state
        .spawn_error
        .as_ref()
        .map(|error| ComputeStart::Failed {
            reason: error.clone(),
        })
}

/// Why compute_subnet is not running when the wait ran out.
fn reason_at_deadline(last: Option<&Snapshot>) -> String {
    use super::supervisor::Phase;
    match last.and_then(|s| s.compute.as_ref()).map(|c| c.phase) {
        Some(Phase::Stopped) => "it was stopped on request".to_owned(),
        _ => "it exits at once".to_owned(),
    }
}

/// Follows the agent's snapshots for up to `limit` until compute_subnet runs or fails.
pub async fn wait_for_compute(home: &Path, limit: Duration) -> ComputeStart {
    let Ok(mut subscription) = control::watch(&control::socket_path(home)).await else {
        return ComputeStart::AgentGone;
    };
    let deadline = Instant::now() + limit;
    let mut last = None;
    loop {
        match tokio::time::timeout_at(deadline, subscription.next()).await {
            Ok(Ok(Some(snapshot))) => {
                if let Some(outcome) = compute_start(&snapshot) {
                    return outcome;
                }
                last = Some(snapshot);
            }
            Ok(Ok(None) | Err(_)) => return ComputeStart::AgentGone,
            Err(_) => {
                return ComputeStart::Failed {
                    reason: reason_at_deadline(last.as_ref()),
                };
            }
        }
    }
}

/// What `stop` stopped: PIDs, None where nothing was running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopReport {
    pub agent: Option<u32>,
    pub compute: Option<u32>,
}

/// Waits up to `limit` for the recorded process to end, without blocking a worker.
#[cfg(unix)]
async fn wait_gone(record: pidfile::PidRecord, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while !process::gone(record) {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
    true
}

/// Stops the agent and compute_subnet: what `polaris stop` does.
pub async fn stop(settings: &Settings) -> anyhow::Result<StopReport> {
    #[cfg(unix)]
    {
        stop_unix(settings).await
    }
    #[cfg(not(unix))]
    {
        let _ = settings;
        anyhow::bail!(
            "the agent's control channel is not built for Windows yet: run `polaris --daemon` instead"
        )
    }
}

#[cfg(unix)]
async fn stop_unix(settings: &Settings) -> anyhow::Result<StopReport> {
    use super::daemon::COMPUTE;
    use rustix::process::Signal;
    let home = &settings.home;
    let agent = pidfile::read_live(home, AGENT);
    let compute = pidfile::read_live(home, COMPUTE);
    if let Some(agent) = agent {
        let asked = control::ask(&control::socket_path(home), Request::Stop).await;
        // An agent that does not answer its socket still gets SIGTERM, then SIGKILL.
        if asked.is_err() {
            process::signal_process(agent.pid, Signal::TERM);
        }
        if !wait_gone(agent, Duration::from_secs(20)).await {
            process::signal_process(agent.pid, Signal::KILL);
            if !wait_gone(agent, Duration::from_secs(5)).await {
                anyhow::bail!(
                    "polaris (PID {}) did not stop, not even on SIGKILL: see `ps -p {0}`",
                    agent.pid
                );
            }
        }
        pidfile::remove(home, AGENT);
    }
    if let Some(compute) = compute {
        // The agent stops it first; a group it left behind (the agent was killed) is stopped
        // here, every member included.
        let stopped = tokio::task::spawn_blocking(move || {
            process::stop_group(compute, Duration::from_secs(10))
        })
        .await
        .unwrap_or(false);
        if !stopped {
            anyhow::bail!(
                "compute_subnet (PID {}) did not stop: stop its process group with `kill -KILL -{0}`",
                compute.pid
            );
        }
        pidfile::remove(home, COMPUTE);
    }
    Ok(StopReport {
        agent: agent.map(|a| a.pid),
        compute: compute.map(|c| c.pid),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::supervisor::{Phase, State};

    fn snapshot(compute: Option<State>) -> Snapshot {
        Snapshot {
            agent_pid: 1,
            version: String::new(),
            started_at: chrono::Utc::now(),
            compute_configured: compute.is_some(),
            compute,
            heartbeat: Default::default(),
            coordinator: None,
            tunnel: None,
            ssh_access: None,
        }
    }

    #[test]
    fn compute_start_is_judged_from_the_snapshot() {
        assert_eq!(
            compute_start(&snapshot(None)),
            Some(ComputeStart::NotConfigured)
        );
        let starting = State::default();
        assert_eq!(compute_start(&snapshot(Some(starting.clone()))), None);
        let running = State {
            phase: Phase::Running,
            pid: Some(7),
            ..starting.clone()
        };
        assert_eq!(
            compute_start(&snapshot(Some(running))),
            Some(ComputeStart::Running { pid: 7 })
        );
        let broken = State {
            phase: Phase::Backoff,
            spawn_error: Some("no such file".into()),
            ..starting.clone()
        };
        assert_eq!(
            compute_start(&snapshot(Some(broken))),
            Some(ComputeStart::Failed {
                reason: "no such file".into()
            })
        );
        let stopped = snapshot(Some(State {
            phase: Phase::Stopped,
            ..starting
        }));
        assert_eq!(compute_start(&stopped), None, "a start may be on its way");
        assert_eq!(
            reason_at_deadline(Some(&stopped)),
            "it was stopped on request"
        );
        assert_eq!(reason_at_deadline(None), "it exits at once");
    }

    #[tokio::test]
    async fn nothing_to_stop_and_no_agent_to_ask() -> anyhow::Result<()> {
        let home = tempfile::tempdir()?;
        // Stopping goes through PID files and signals, which only Unix has here.
        #[cfg(unix)]
        {
            let layers = crate::config::Layers::default();
            let settings = Settings::from_layers(home.path().to_path_buf(), &layers)?;
            assert_eq!(
                stop(&settings).await?,
                StopReport {
                    agent: None,
                    compute: None
                }
            );
        }
        assert!(matches!(
            snapshot_of(home.path()).await,
            Err(ControlError::NotRunning { .. })
        ));
        assert_eq!(
            wait_for_compute(home.path(), Duration::from_millis(100)).await,
            ComputeStart::AgentGone
        );
        Ok(())
    }

    async fn snapshot_of(home: &Path) -> Result<Snapshot, ControlError> {
        super::snapshot(home).await
    }
}
