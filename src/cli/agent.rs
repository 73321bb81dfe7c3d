//! The agent's commands: `--daemon` (foreground), `start` (background), `stop`, `status` and
//! `check-main`, printing the seed's lines.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
#[cfg(unix)]
use std::process::Stdio;
use std::time::Duration;
#[cfg(unix)]
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use crate::agent::control::{self, Request, Response, Snapshot};
#[cfg(unix)]
use crate::agent::daemon::AGENT;
use crate::agent::daemon::COMPUTE;
use crate::agent::log_files::{self, Process, Stream};
use crate::agent::pidfile;
use crate::config::Settings;

/// `status` exits 3 when something configured is not running (documented in the README).
const NOT_RUNNING: u8 = 3;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckMainArgs {
    /// Follow the process's log
    #[arg(short = 'f', long)]
    pub follow: bool,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The running agent's state, if it answers.
fn snapshot(home: &Path) -> Option<Snapshot> {
    let runtime = runtime().ok()?;
    match runtime.block_on(control::ask(&control::socket_path(home), Request::Status)) {
        Ok(Response::Status(snapshot)) => Some(*snapshot),
        _ => None,
    }
}

fn log_path(settings: &Settings, process: Process, stream: Stream) -> PathBuf {
    log_files::path(&settings.logs_dir(), process, stream)
}

/// mimalloc commits its first arena eagerly: 13 MB resident that an idle agent never uses. It
/// reads its options before `main`, so the daemon re-executes itself once with lazy commit
/// (same PID, same arguments), which brings the idle agent to about 11 MB.
#[cfg(unix)]
fn with_lazy_allocator() -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    const OPTION: &str = "MIMALLOC_ARENA_EAGER_COMMIT";
    if std::env::var_os(OPTION).is_some() {
        return Ok(());
    }
    let exe = std::env::current_exe().context("cannot find the polaris executable")?;
    let error = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(OPTION, "0")
        .exec();
    // Only memory is at stake: go on with the eager allocator.
    eprintln!("polaris: warning: cannot re-execute with a lazy allocator ({error}); going on");
    Ok(())
}

pub(super) fn daemon(home: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    #[cfg(unix)]
    with_lazy_allocator()?;
    let settings = Settings::load(home, &[])?;
    crate::telemetry::init_agent_logging(&log_path(&settings, Process::Polaris, Stream::Stdout))?;
    // One worker is plenty for an agent that wakes every few seconds (and for the standalone
    // coordinator of one machine); each further thread costs memory while idle.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(crate::agent::daemon::run(settings));
    runtime.shutdown_timeout(Duration::from_secs(2));
    outcome.map(|()| ExitCode::SUCCESS)
}

#[cfg(unix)]
fn start_agent(home: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(home.clone(), &[])?;
    println!("Starting Polaris...");
    if let Some(live) = pidfile::read_live(&settings.home, AGENT) {
        println!("polaris is already running with PID {}.", live.pid);
        return Ok(ExitCode::SUCCESS);
    }
    let stdout_log = log_path(&settings, Process::Polaris, Stream::Stdout);
    let stderr_log = log_path(&settings, Process::Polaris, Stream::Stderr);
    std::fs::create_dir_all(settings.logs_dir())
        .with_context(|| format!("cannot create {}", settings.logs_dir().display()))?;
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&stderr_log)
        .with_context(|| format!("cannot open {}", stderr_log.display()))?;
    let exe = std::env::current_exe().context("cannot find the polaris executable")?;
    let home_dir = settings
        .home
        .canonicalize()
        .unwrap_or_else(|_| settings.home.clone());
    let mut command = std::process::Command::new(exe);
    // POLARIS_HOME as an absolute path and as the working directory: the agent (and a
    // compute_subnet without POLARIS_COMPUTE_DIR) must not depend on where `start` was typed.
    command
        .arg("--daemon")
        .arg("--home")
        .arg(&home_dir)
        .current_dir(&home_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr));
    // Its own process group: the terminal's Ctrl-C and hang-up do not reach it.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().context("cannot start the agent")?;
    let deadline = Instant::now() + Duration::from_secs(15);
    let snapshot = loop {
        if let Some(snapshot) = snapshot(&settings.home) {
            break snapshot;
        }
        if let Some(status) = child.try_wait()? {
            // Another `start` won the race: that is success for this one too.
            if let Some(live) = pidfile::read_live(&settings.home, AGENT) {
                println!("polaris is already running with PID {}.", live.pid);
                return Ok(ExitCode::SUCCESS);
            }
            let tail = crate::agent::tail::last_lines(&stderr_log, 3).unwrap_or_default();
            anyhow::bail!(
                "the agent stopped at start ({status}): {}",
                tail.join(" / ")
            );
        }
        if Instant::now() > deadline {
            // Do not leave a silent agent behind: it stops its compute_subnet on SIGTERM.
            if let Some(record) = pidfile::read_live(&settings.home, AGENT) {
                #[cfg(unix)]
                crate::agent::process::signal_process(record.pid, rustix::process::Signal::TERM);
                if !crate::agent::process::wait_gone(record, Duration::from_secs(15)) {
                    let _ = child.kill();
                }
            } else {
                let _ = child.kill();
            }
            let _ = child.wait();
            anyhow::bail!(
                "the agent did not answer within 15 s and was stopped; see {}",
                stdout_log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    println!(
        "polaris started successfully with PID {}.",
        snapshot.agent_pid
    );
    if snapshot.compute_configured {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut latest = snapshot;
        loop {
            match latest.compute.as_ref() {
                Some(state) if state.pid.is_some() => {
                    println!(
                        "compute_subnet started successfully with PID {}.",
                        state.pid.unwrap_or_default()
                    );
                    break;
                }
                Some(state) if state.spawn_error.is_some() || Instant::now() > deadline => {
                    println!(
                        "compute_subnet did not start ({}); Polaris keeps retrying: see `polaris logs --process compute-subnet --stderr`.",
                        state.spawn_error.as_deref().unwrap_or("it exits at once")
                    );
                    break;
                }
                _ => {}
            }
            std::thread::sleep(Duration::from_millis(50));
            match self::snapshot(&settings.home) {
                Some(next) => latest = next,
                None => break,
            }
        }
    } else {
        println!(
            "compute_subnet is not configured: set POLARIS_COMPUTE_CMD (and POLARIS_COMPUTE_DIR) for Polaris to run it."
        );
    }
    println!(
        "Logs: stdout -> {}, stderr -> {}",
        stdout_log.display(),
        stderr_log.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(unix)]
fn stop_agent(home: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    use crate::agent::process;
    let settings = Settings::load(home, &[])?;
    let agent = pidfile::read_live(&settings.home, AGENT);
    let compute = pidfile::read_live(&settings.home, COMPUTE);
    println!("Stopping Polaris...");
    match agent {
        None => println!("polaris is not running."),
        Some(agent) => {
            let asked = runtime()?.block_on(control::ask(
                &control::socket_path(&settings.home),
                Request::Stop,
            ));
            // An agent that does not answer its socket still gets SIGTERM, then SIGKILL.
            #[cfg(unix)]
            if asked.is_err() {
                process::signal_process(agent.pid, rustix::process::Signal::TERM);
            }
            drop(asked);
            if !process::wait_gone(agent, Duration::from_secs(20)) {
                #[cfg(unix)]
                process::signal_process(agent.pid, rustix::process::Signal::KILL);
                if !process::wait_gone(agent, Duration::from_secs(5)) {
                    anyhow::bail!("polaris (PID {}) did not stop", agent.pid);
                }
            }
            pidfile::remove(&settings.home, AGENT);
            println!("polaris stopped successfully.");
        }
    }
    if let Some(compute) = compute {
        println!("Stopping Compute Subnet...");
        // The agent stops it first; a group it left behind (the agent was killed) is stopped
        // here, every member included.
        if !process::stop_group(compute, Duration::from_secs(10)) {
            anyhow::bail!("compute_subnet (PID {}) did not stop", compute.pid);
        }
        pidfile::remove(&settings.home, COMPUTE);
        println!("compute_subnet stopped successfully.");
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn start(home: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    #[cfg(unix)]
    return start_agent(home);
    #[cfg(not(unix))]
    {
        let _ = home;
        Ok(windows_not_yet())
    }
}

pub(super) fn stop(home: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    #[cfg(unix)]
    return stop_agent(home);
    #[cfg(not(unix))]
    {
        let _ = home;
        Ok(windows_not_yet())
    }
}

/// `start` and `stop` reach the agent through its control channel, not built for Windows yet.
#[cfg(not(unix))]
fn windows_not_yet() -> ExitCode {
    eprintln!(
        "polaris: the agent's control channel is not built for Windows yet: run `polaris --daemon` (e.g. as a service) instead"
    );
    ExitCode::FAILURE
}

fn ago(at: chrono::DateTime<chrono::Utc>) -> String {
    let seconds = (chrono::Utc::now() - at).num_seconds().max(0);
    humantime::format_duration(Duration::from_secs(seconds as u64)).to_string()
}

pub(super) fn status(args: StatusArgs, home: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(home, &[])?;
    let snapshot = snapshot(&settings.home);
    // The running agent knows whether it was given a compute_subnet; this shell may not.
    let compute_configured = snapshot
        .as_ref()
        .map_or(settings.compute.cmd.is_some(), |s| s.compute_configured);
    let compute_pid = snapshot
        .as_ref()
        .and_then(|s| s.compute.as_ref())
        .and_then(|c| c.pid);
    let healthy = snapshot.is_some() && (!compute_configured || compute_pid.is_some());
    let usage = compute_pid.and_then(crate::agent::usage::of_tree);
    if args.json {
        let body = serde_json::json!({
            "polaris": snapshot,
            "compute_subnet_configured": compute_configured,
            "compute_subnet_usage": usage,
            "healthy": healthy,
        });
        println!("{body:#}");
    } else {
        match &snapshot {
            Some(s) => {
                println!("polaris is running with PID {}.", s.agent_pid);
                println!("  up {}", ago(s.started_at));
                let beat = &s.heartbeat;
                match (&beat.last_ack, &beat.last_error) {
                    (_, Some(error)) if beat.failures > 0 => {
                        println!("  heartbeats failing ({} in a row): {error}", beat.failures);
                    }
                    (Some(at), _) => println!("  last heartbeat acknowledged {} ago", ago(*at)),
                    (None, _) if beat.miner_id.is_none() => {
                        println!("  not registered: heartbeats start after `polaris register`");
                    }
                    (None, _) => println!("  no heartbeat acknowledged yet"),
                }
                if let Some(url) = &s.coordinator {
                    println!("  hosting the coordinator at {url}");
                }
            }
            None => println!("polaris is not running."),
        }
        match snapshot.as_ref().and_then(|s| s.compute.as_ref()) {
            Some(c) if c.pid.is_some() => {
                println!(
                    "compute_subnet is running with PID {}.",
                    c.pid.unwrap_or_default()
                );
                println!(
                    "  restarts {}{}{}",
                    c.restarts,
                    c.started_at
                        .map(|at| format!(", up {}", ago(at)))
                        .unwrap_or_default(),
                    usage
                        .map(|u| format!(
                            ", CPU {:.1} %, memory {} ({} processes)",
                            u.cpu_percent,
                            crate::inventory::units::human(u.rss_bytes),
                            u.processes
                        ))
                        .unwrap_or_default()
                );
                if let Some(exit) = &c.last_exit {
                    let how = match (exit.code, exit.signal) {
                        (Some(code), _) => format!("exit code {code}"),
                        (_, Some(signal)) => format!("signal {signal}"),
                        _ => "unknown".to_owned(),
                    };
                    println!("  last exit: {how}, {} ago", ago(exit.at));
                }
            }
            Some(c) => {
                println!("compute_subnet is not running.");
                if c.crash_looping {
                    println!(
                        "  crash-looping: restarts {}; see `polaris logs --process compute-subnet --stderr`",
                        c.restarts
                    );
                }
            }
            None if compute_configured => println!("compute_subnet is not running."),
            None => println!("compute_subnet is not configured (POLARIS_COMPUTE_CMD)."),
        }
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(NOT_RUNNING)
    })
}

pub(super) fn check_main(args: CheckMainArgs, home: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(home, &[])?;
    let pid = snapshot(&settings.home)
        .and_then(|s| s.compute)
        .and_then(|c| c.pid)
        .or_else(|| pidfile::read_live(&settings.home, COMPUTE).map(|r| r.pid));
    match pid {
        Some(pid) => println!("Main process is running with PID {pid}."),
        None => println!("Main process is not running."),
    }
    let stdout_log = log_path(&settings, Process::ComputeSubnet, Stream::Stdout);
    let stderr_log = log_path(&settings, Process::ComputeSubnet, Stream::Stderr);
    println!("Logs: {}, {}", stdout_log.display(), stderr_log.display());
    if args.follow {
        if !stdout_log.exists() {
            eprintln!("polaris: no log yet at {}", stdout_log.display());
            return Ok(ExitCode::FAILURE);
        }
        let mut out = std::io::stdout().lock();
        let _ =
            crate::agent::tail::follow(&stdout_log, &mut out, Duration::from_millis(250), || false);
    }
    Ok(if pid.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
