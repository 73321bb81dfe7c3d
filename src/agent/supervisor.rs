//! Runs compute_subnet and keeps it running, as pm2 and supervisord do (peers.md §C):
//! - output: stdout and stderr into rotating files, each line stamped and tagged;
//! - restarts: on every exit, after a backoff of 1 s doubling to 60 s, reset once a run lasted
//!   30 s; after repeated fast failures the state says "crash-looping" but retries go on at the
//!   cap (never a terminal FATAL);
//! - stop: SIGTERM to the whole process group, SIGKILL after a grace period, so no child of
//!   compute_subnet outlives it;
//! - on request: `Stop` stops it and keeps it stopped (no restarts) until `Start` or `Restart`.
//!
//! The state is published on a `watch` channel for the status command and the dashboard.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::log_files::{self, Process, Stream};
use super::rotating_log::{self, RotatingLog};

#[derive(Debug, Clone)]
pub struct Config {
    /// A shell command line (`sh -c` on Unix, `cmd /C` on Windows).
    pub command: String,
    pub dir: Option<PathBuf>,
    pub logs_dir: PathBuf,
    pub backoff_start: Duration,
    pub backoff_max: Duration,
    /// A run this long counts as healthy: the backoff starts over.
    pub healthy_after: Duration,
    /// This many fast failures in a row mark the process crash-looping.
    pub crash_loop_after: u32,
    /// How long SIGTERM gets before SIGKILL.
    pub stop_grace: Duration,
}

impl Config {
    /// The figures.
    pub fn new(command: String, dir: Option<PathBuf>, logs_dir: PathBuf) -> Self {
        Self {
            command,
            dir,
            logs_dir,
            backoff_start: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            healthy_after: Duration::from_secs(30),
            crash_loop_after: 5,
            stop_grace: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Starting,
    Running,
    /// Waiting out the backoff before the next start.
    Backoff,
    Stopping,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub at: DateTime<Utc>,
}

/// As a person reads it: `exit code 1`, `signal 9`.
impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exit code {code}"),
            (_, Some(signal)) => write!(f, "signal {signal}"),
            _ => f.write_str("an unknown status"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub phase: Phase,
    pub pid: Option<u32>,
    pub started_at: Option<DateTime<Utc>>,
    pub restarts: u32,
    pub last_exit: Option<Exit>,
    pub crash_looping: bool,
    /// Why the process could not be started, when it could not.
    pub spawn_error: Option<String>,
    /// When the next start is due, while in [`Phase::Backoff`].
    #[serde(default)]
    pub next_start_at: Option<DateTime<Utc>>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            phase: Phase::Starting,
            pid: None,
            started_at: None,
            restarts: 0,
            last_exit: None,
            crash_looping: false,
            spawn_error: None,
            next_start_at: None,
        }
    }
}

/// What the supervisor can be asked to do while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Stop it and start it again at once, with a fresh backoff (starts it when stopped).
    Restart,
    /// Stop it and keep it stopped until `Start` or `Restart`.
    Stop,
    /// Start it at once when stopped or waiting out a backoff; a no-op while it runs.
    Start,
}

/// The backoff before restart number `attempt` (0-based): start × 2^attempt, capped.
pub fn backoff(config: &Config, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.min(16));
    config
        .backoff_start
        .saturating_mul(factor)
        .min(config.backoff_max)
}

/// Starts the process; the error says what to fix, naming the directory when that is what is
/// missing (the OS error alone, "No such file or directory", names nothing).
fn spawn(config: &Config) -> Result<Child, String> {
    if let Some(dir) = &config.dir
        && !dir.is_dir()
    {
        return Err(format!(
            "POLARIS_COMPUTE_DIR {} is not a directory",
            dir.display()
        ));
    }
    spawn_command(config).map_err(|err| format!("cannot run POLARIS_COMPUTE_CMD: {err}"))
}

fn spawn_command(config: &Config) -> std::io::Result<Child> {
    #[cfg(unix)]
    let mut command = {
        let mut c = Command::new("sh");
        c.arg("-c").arg(&config.command);
        // Its own process group: stopping it reaches every child it started.
        c.process_group(0);
        c
    };
    #[cfg(not(unix))]
    let mut command = {
        let mut c = Command::new("cmd");
        c.arg("/C").arg(&config.command);
        c
    };
    if let Some(dir) = &config.dir {
        command.current_dir(dir);
    }
    // The agent's own allocator setting is not compute_subnet's business.
    command.env_remove("MIMALLOC_ARENA_EAGER_COMMIT");
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false)
        .spawn()
}

/// Longest line kept whole; longer ones (a progress bar redrawn with `\r` and never ended) are
/// split, so memory stays bounded.
const MAX_LINE: usize = 64 * 1024;

/// Copies one output stream into its rotating file, line by line. It keeps reading whatever
/// happens to the file (full disk, bad bytes): a pipe nobody reads would stop compute_subnet
/// with SIGPIPE or block it.
fn pump(reader: impl AsyncRead + Unpin + Send + 'static, path: PathBuf, stream: Stream) {
    tokio::spawn(async move {
        let mut log = RotatingLog::open(&path, rotating_log::MAX_BYTES, rotating_log::KEEP);
        if let Err(err) = &log {
            tracing::warn!(path = %path.display(), error = %err, "cannot open the log file");
        }
        let mut reader = BufReader::new(reader);
        let mut line = Vec::new();
        loop {
            line.clear();
            let read = (&mut reader)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut line)
                .await;
            match read {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if let Ok(log) = log.as_mut() {
                let text = String::from_utf8_lossy(&line);
                // Flush only once no whole line is waiting in the pipe's buffer: a flood is
                // written in large batches, a quiet line still lands at once.
                if log.write_line(stream.tag(), &text).is_ok() && !reader.buffer().contains(&b'\n')
                {
                    let _ = log.flush();
                }
            }
        }
    });
}

#[cfg(unix)]
fn signal_group(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// SIGTERM to the group, SIGKILL after the grace period; waits for the exit.
async fn stop(child: &mut Child, grace: Duration) -> std::io::Result<std::process::ExitStatus> {
    #[cfg(unix)]
    if let Some(pid) = child.id() {
        signal_group(pid, rustix::process::Signal::TERM);
        if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
            // The leader is gone; make sure nothing it started stays behind.
            signal_group(pid, rustix::process::Signal::KILL);
            return status;
        }
        signal_group(pid, rustix::process::Signal::KILL);
    }
    #[cfg(not(unix))]
    let _ = grace;
    child.start_kill()?;
    child.wait().await
}

fn exit_of(status: std::process::ExitStatus) -> Exit {
    #[cfg(unix)]
    let signal = std::os::unix::process::ExitStatusExt::signal(&status);
    #[cfg(not(unix))]
    let signal = None;
    Exit {
        code: status.code(),
        signal,
        at: Utc::now(),
    }
}

/// How a run of the process ended.
enum Outcome {
    Exited(std::io::Result<std::process::ExitStatus>),
    /// The supervisor is cancelled (the agent stops).
    Cancelled,
    Restart,
    /// Stopped on request: stay stopped.
    Stop,
}

/// How a wait (a backoff, or stopped on request) ended.
enum Wake {
    /// Start now.
    Start,
    /// Stay stopped until asked to start.
    Stop,
    Cancelled,
}

/// Waits out `delay`, unless a request or `cancel` comes first.
async fn wait_backoff(
    delay: Duration,
    requests: &mut mpsc::Receiver<Request>,
    cancel: &CancellationToken,
) -> Option<Wake> {
    tokio::select! {
        () = tokio::time::sleep(delay) => None,
        () = cancel.cancelled() => Some(Wake::Cancelled),
        Some(request) = requests.recv() => Some(match request {
            Request::Restart | Request::Start => Wake::Start,
            Request::Stop => Wake::Stop,
        }),
    }
}

/// Stopped on request: waits for `Start` or `Restart` (Wake::Start) or `cancel`.
async fn wait_stopped(requests: &mut mpsc::Receiver<Request>, cancel: &CancellationToken) -> Wake {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return Wake::Cancelled,
            request = requests.recv() => match request {
                Some(Request::Start | Request::Restart) => return Wake::Start,
                Some(Request::Stop) => {}
                // Nobody can ask any more: stay stopped until the agent stops.
                None => {
                    cancel.cancelled().await;
                    return Wake::Cancelled;
                }
            },
        }
    }
}

/// Marks the process stopped on request and waits to be started again; false: cancelled.
async fn stay_stopped(
    state: &watch::Sender<State>,
    requests: &mut mpsc::Receiver<Request>,
    cancel: &CancellationToken,
) -> bool {
    state.send_modify(|s| {
        s.phase = Phase::Stopped;
        s.pid = None;
        s.next_start_at = None;
        s.crash_looping = false;
    });
    tracing::info!("compute_subnet stopped on request");
    matches!(wait_stopped(requests, cancel).await, Wake::Start)
}

/// Supervises until `cancel`, then stops the process (and its group) and returns.
pub async fn run(
    config: Config,
    state: watch::Sender<State>,
    mut requests: mpsc::Receiver<Request>,
    cancel: CancellationToken,
) {
    let logs = |stream| log_files::path(&config.logs_dir, Process::ComputeSubnet, stream);
    let mut attempt = 0u32;
    let mut fast_failures = 0u32;
    'supervise: while !cancel.is_cancelled() {
        state.send_modify(|s| {
            s.phase = Phase::Starting;
            s.pid = None;
            s.next_start_at = None;
        });
        let started = Instant::now();
        match spawn(&config) {
            Err(err) => {
                tracing::warn!("cannot start compute_subnet: {err}");
                state.send_modify(|s| s.spawn_error = Some(err));
            }
            Ok(mut child) => {
                if let Some(out) = child.stdout.take() {
                    pump(out, logs(Stream::Stdout), Stream::Stdout);
                }
                if let Some(err) = child.stderr.take() {
                    pump(err, logs(Stream::Stderr), Stream::Stderr);
                }
                let pid = child.id();
                match pid {
                    Some(pid) => tracing::info!(pid, "compute_subnet started"),
                    None => tracing::info!("compute_subnet started and exited at once"),
                }
                state.send_modify(|s| {
                    s.phase = Phase::Running;
                    s.pid = pid;
                    s.started_at = Some(Utc::now());
                    s.spawn_error = None;
                });
                let outcome = loop {
                    tokio::select! {
                        status = child.wait() => break Outcome::Exited(status),
                        () = cancel.cancelled() => break Outcome::Cancelled,
                        Some(request) = requests.recv() => match request {
                            Request::Restart => break Outcome::Restart,
                            Request::Stop => break Outcome::Stop,
                            // Already running.
                            Request::Start => {}
                        },
                    }
                };
                let status = match outcome {
                    Outcome::Exited(status) => {
                        // What the leader started must not outlive it (and pile up on restarts).
                        #[cfg(unix)]
                        if let Some(pid) = pid {
                            signal_group(pid, rustix::process::Signal::KILL);
                        }
                        status
                    }
                    Outcome::Cancelled | Outcome::Restart | Outcome::Stop => {
                        state.send_modify(|s| s.phase = Phase::Stopping);
                        let status = stop(&mut child, config.stop_grace).await;
                        state.send_modify(|s| s.last_exit = status.ok().map(exit_of));
                        match outcome {
                            Outcome::Cancelled => break 'supervise,
                            Outcome::Restart => state.send_modify(|s| {
                                s.restarts += 1;
                                s.crash_looping = false;
                            }),
                            _ => {
                                if !stay_stopped(&state, &mut requests, &cancel).await {
                                    break 'supervise;
                                }
                            }
                        }
                        // Asked for: start again at once, with a fresh backoff.
                        attempt = 0;
                        fast_failures = 0;
                        continue;
                    }
                };
                let exit = status.ok().map(exit_of);
                match &exit {
                    Some(exit) => tracing::warn!("compute_subnet exited: {exit}"),
                    None => tracing::warn!("compute_subnet exited (status unknown)"),
                }
                state.send_modify(|s| s.last_exit = exit);
            }
        }
        if started.elapsed() >= config.healthy_after {
            attempt = 0;
            fast_failures = 0;
        } else {
            fast_failures += 1;
        }
        let delay = backoff(&config, attempt);
        attempt = attempt.saturating_add(1);
        let due = chrono::Duration::from_std(delay)
            .ok()
            .and_then(|d| Utc::now().checked_add_signed(d));
        state.send_modify(|s| {
            s.phase = Phase::Backoff;
            s.pid = None;
            s.crash_looping = fast_failures >= config.crash_loop_after;
            s.next_start_at = due;
        });
        match wait_backoff(delay, &mut requests, &cancel).await {
            None => state.send_modify(|s| s.restarts += 1),
            Some(Wake::Start) => {
                attempt = 0;
                state.send_modify(|s| s.restarts += 1);
            }
            Some(Wake::Stop) => {
                if !stay_stopped(&state, &mut requests, &cancel).await {
                    break;
                }
                attempt = 0;
                fast_failures = 0;
            }
            Some(Wake::Cancelled) => break,
        }
    }
    state.send_modify(|s| {
        s.phase = Phase::Stopped;
        s.pid = None;
        s.next_start_at = None;
    });
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path, command: &str) -> Config {
        Config {
            command: command.to_owned(),
            dir: Some(dir.to_path_buf()),
            logs_dir: dir.join("logs"),
            backoff_start: Duration::from_millis(50),
            backoff_max: Duration::from_millis(200),
            healthy_after: Duration::from_secs(10),
            crash_loop_after: 3,
            stop_grace: Duration::from_millis(300),
        }
    }

    struct Running {
        state: watch::Receiver<State>,
        requests: mpsc::Sender<Request>,
        cancel: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    fn start(config: Config) -> Running {
        let (tx, state) = watch::channel(State::default());
        let (requests, rx) = mpsc::channel(4);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(config, tx, rx, cancel.clone()));
        Running {
            state,
            requests,
            cancel,
            task,
        }
    }

    async fn until(state: &mut watch::Receiver<State>, what: impl Fn(&State) -> bool) -> State {
        let found = {
            let waited = state.wait_for(|s| what(s));
            match tokio::time::timeout(Duration::from_secs(10), waited).await {
                Ok(Ok(s)) => Some(s.clone()),
                _ => None,
            }
        };
        match found {
            Some(s) => s,
            None => panic!("state never came: {:?}", *state.borrow()),
        }
    }

    fn alive(pid: u32) -> bool {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
    }

    #[test]
    fn backoff_doubles_to_the_cap() {
        let config = Config::new("true".into(), None, PathBuf::from("/tmp"));
        let secs: Vec<u64> = (0..9).map(|a| backoff(&config, a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(&config, u32::MAX), Duration::from_secs(60));
    }

    #[tokio::test]
    async fn output_is_logged_and_failures_restart_until_crash_looping() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut run = start(config(dir.path(), "echo out; echo err >&2; exit 3"));
        let state = until(&mut run.state, |s| s.restarts >= 4).await;
        assert!(state.crash_looping, "{state:?}");
        assert_eq!(state.last_exit.as_ref().and_then(|e| e.code), Some(3));
        run.cancel.cancel();
        run.task.await.expect("supervisor ended");
        let logs = dir.path().join("logs");
        let out =
            std::fs::read_to_string(logs.join("compute_subnet_stdout.log")).unwrap_or_default();
        let err =
            std::fs::read_to_string(logs.join("compute_subnet_stderr.log")).unwrap_or_default();
        assert!(out.contains("stdout | out"), "{out}");
        assert!(err.contains("stderr | err"), "{err}");
        assert_eq!(run.state.borrow().phase, Phase::Stopped);
    }

    #[tokio::test]
    async fn bytes_that_are_not_utf8_are_logged_not_fatal() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut run = start(config(
            dir.path(),
            "printf 'a\\377b\\n'; echo after; sleep 1000",
        ));
        until(&mut run.state, |s| s.phase == Phase::Running).await;
        let log = dir.path().join("logs/compute_subnet_stdout.log");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("after") {
                assert!(text.contains("a\u{fffd}b"), "{text}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "nothing after the bad byte: {text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(run.state.borrow().restarts, 0, "the pipe kept being read");
        run.cancel.cancel();
        run.task.await.expect("supervisor ended");
    }

    #[tokio::test]
    async fn stop_kills_the_whole_group_even_when_term_is_ignored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let command = "trap '' TERM; sleep 1000 & echo $! > child.pid; wait";
        let mut run = start(config(dir.path(), command));
        until(&mut run.state, |s| s.phase == Phase::Running).await;
        let pid_file = dir.path().join("child.pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        let child: u32 = loop {
            if let Some(pid) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                break pid;
            }
            assert!(Instant::now() < deadline, "no child pid");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(alive(child));
        let stopping = Instant::now();
        run.cancel.cancel();
        run.task.await.expect("supervisor ended");
        assert!(
            stopping.elapsed() >= Duration::from_millis(300),
            "waited the grace"
        );
        // SIGKILL is sent; the kernel's reaping is not instant on a busy machine.
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(child) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!alive(child), "the group's child was killed");
        let state = run.state.borrow().clone();
        assert_eq!(state.phase, Phase::Stopped);
        assert_eq!(state.last_exit.and_then(|e| e.signal), Some(9));
    }

    #[tokio::test]
    async fn a_killed_process_is_restarted_and_a_restart_request_is_immediate() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut run = start(config(dir.path(), "sleep 1000"));
        let first = until(&mut run.state, |s| s.phase == Phase::Running).await;
        let pid = first.pid.expect("a pid");
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
        let state = until(&mut run.state, |s| {
            s.restarts == 1 && s.phase == Phase::Running
        })
        .await;
        assert_eq!(state.last_exit.as_ref().and_then(|e| e.signal), Some(9));
        assert_ne!(state.pid, Some(pid));
        let second = state.pid.expect("a pid");
        run.requests
            .send(Request::Restart)
            .await
            .expect("request sent");
        let state = until(&mut run.state, |s| {
            s.restarts == 2 && s.phase == Phase::Running
        })
        .await;
        assert_ne!(state.pid, Some(second));
        assert!(!alive(second), "the old run is gone");
        run.cancel.cancel();
        run.task.await.expect("supervisor ended");
    }

    #[tokio::test]
    async fn stop_keeps_it_stopped_until_start_or_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut run = start(config(dir.path(), "sleep 1000"));
        let first = until(&mut run.state, |s| s.phase == Phase::Running).await;
        let pid = first.pid.expect("a pid");
        run.requests
            .send(Request::Stop)
            .await
            .expect("request sent");
        let stopped = until(&mut run.state, |s| s.phase == Phase::Stopped).await;
        assert_eq!(stopped.pid, None);
        assert!(!alive(pid), "the run was stopped");
        // Stopped on request means no restarts: well past the backoff, still stopped.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let still = run.state.borrow().clone();
        assert_eq!(
            (still.phase, still.restarts),
            (Phase::Stopped, 0),
            "{still:?}"
        );
        run.requests
            .send(Request::Start)
            .await
            .expect("request sent");
        let second = until(&mut run.state, |s| s.phase == Phase::Running).await;
        let second_pid = second.pid.expect("a pid");
        assert_ne!(second_pid, pid);
        // Start while running changes nothing.
        run.requests
            .send(Request::Start)
            .await
            .expect("request sent");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(run.state.borrow().pid, Some(second_pid));
        // Restart while stopped starts it too.
        run.requests
            .send(Request::Stop)
            .await
            .expect("request sent");
        until(&mut run.state, |s| s.phase == Phase::Stopped).await;
        run.requests
            .send(Request::Restart)
            .await
            .expect("request sent");
        let third = until(&mut run.state, |s| s.phase == Phase::Running).await;
        assert!(third.pid.is_some() && third.pid != Some(second_pid));
        run.cancel.cancel();
        run.task.await.expect("supervisor ended");
        assert_eq!(run.state.borrow().phase, Phase::Stopped);
    }

    #[tokio::test]
    async fn a_backoff_says_when_the_next_start_is_due_and_stop_ends_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = config(dir.path(), "exit 1");
        settings.backoff_start = Duration::from_secs(30);
        settings.backoff_max = Duration::from_secs(30);
        let mut run = start(settings);
        let before = Utc::now();
        let waiting = until(&mut run.state, |s| s.phase == Phase::Backoff).await;
        let due = waiting.next_start_at.expect("a due time");
        let ahead = (due - before).num_seconds();
        assert!((29..=31).contains(&ahead), "due {ahead} s ahead");
        // A stop during the backoff: stopped, nothing due.
        run.requests
            .send(Request::Stop)
            .await
            .expect("request sent");
        let stopped = until(&mut run.state, |s| s.phase == Phase::Stopped).await;
        assert_eq!(stopped.next_start_at, None);
        // Start: at once, not after the 30 s backoff.
        run.requests
            .send(Request::Start)
            .await
            .expect("request sent");
        let again = until(&mut run.state, |s| {
            s.phase == Phase::Backoff && s.next_start_at.is_some_and(|d| d > due)
        })
        .await;
        assert!(again.last_exit.is_some());
        run.cancel.cancel();
        run.task.await.expect("supervisor ended");
        let last = run.state.borrow().clone();
        assert_eq!((last.phase, last.next_start_at), (Phase::Stopped, None));
    }
}
