//! The agent's commands: `--daemon` (foreground), `start` (background), `stop`, `status` and
//! `check-main`, printing the seed's lines.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::agent::control::{self, ControlError, Request, Response, Snapshot};
use crate::agent::daemon::COMPUTE;
use crate::agent::lifecycle::{self, ComputeStart};
use crate::agent::log_files::{self, Process, Stream};
use crate::agent::pidfile;
use crate::agent::status_report::StatusReport;
use crate::agent::supervisor::Phase;
use crate::config::Settings;

/// `status` exits 3 when something configured is not running or heartbeats are failing
/// (documented in the README).
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

/// The running agent's state, if it answers. An agent that runs but answers badly (another
/// version, too slow) is said on stderr and shown as not answering.
fn snapshot(home: &Path) -> anyhow::Result<Option<Snapshot>> {
    match runtime()?.block_on(lifecycle::snapshot(home)) {
        Ok(snapshot) => Ok(Some(snapshot)),
        Err(ControlError::NotRunning { .. }) => Ok(None),
        Err(err) => {
            eprintln!("polaris: warning: {err}");
            Ok(None)
        }
    }
}

fn log_path(settings: &Settings, process: Process, stream: Stream) -> PathBuf {
    log_files::path(&settings.logs_dir(), process, stream)
}

/// mimalloc commits its first arena eagerly: 13 MB resident that an idle agent never uses. It
/// reads its options before `main`, so the daemon (and the dashboard) re-execute themselves once
/// with lazy commit (same PID, same arguments), which brings the idle agent to about 11 MB.
#[cfg(unix)]
pub(super) fn with_lazy_allocator() -> anyhow::Result<()> {
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
    // systemd and pm2 users see these two lines in the journal; the rest goes to the log.
    super::say(&format!(
        "polaris agent starting with PID {}; logs in {}; stop with `polaris stop`, Ctrl-C or SIGTERM",
        std::process::id(),
        settings.logs_dir().display()
    ));
    let outcome = runtime.block_on(crate::agent::daemon::run(settings));
    runtime.shutdown_timeout(Duration::from_secs(2));
    if outcome.is_ok() {
        super::say("polaris agent stopped");
    }
    outcome.map(|()| ExitCode::SUCCESS)
}

/// Says how compute_subnet's start went.
fn print_compute_start(outcome: ComputeStart, settings: &Settings) {
    match outcome {
        ComputeStart::Running { pid } => {
            println!("compute_subnet started successfully with PID {pid}.");
        }
        ComputeStart::Failed { reason } => println!(
            "compute_subnet did not start: {reason}. Polaris keeps retrying; `polaris status` shows how it goes."
        ),
        ComputeStart::NotConfigured => println!(
            "compute_subnet is not configured: set POLARIS_COMPUTE_CMD (and POLARIS_COMPUTE_DIR) for Polaris to run it."
        ),
        ComputeStart::AgentGone => println!(
            "polaris stopped before compute_subnet started: see {}",
            log_path(settings, Process::Polaris, Stream::Stdout).display()
        ),
    }
}

pub(super) fn start(home: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(home, &[])?;
    println!("Starting Polaris...");
    let runtime = runtime()?;
    let started = runtime.block_on(lifecycle::start(&settings))?;
    let compute = started.snapshot.compute.as_ref();
    if started.already_running {
        println!("polaris is already running with PID {}.", started.pid);
        // compute_subnet stopped on request (dashboard, StopCompute): `start` starts it again.
        if started.snapshot.compute_configured && compute.is_some_and(|c| c.phase == Phase::Stopped)
        {
            let socket = control::socket_path(&settings.home);
            match runtime.block_on(control::ask(&socket, Request::StartCompute))? {
                Response::Done { .. } => {
                    let outcome = runtime.block_on(lifecycle::wait_for_compute(
                        &settings.home,
                        Duration::from_secs(5),
                    ));
                    print_compute_start(outcome, &settings);
                }
                Response::Refused { message } => {
                    println!("compute_subnet was not started: {message}");
                }
                _ => println!("compute_subnet was not started: the agent answered oddly"),
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!("polaris started successfully with PID {}.", started.pid);
    if started.snapshot.compute_configured {
        let outcome = runtime.block_on(lifecycle::wait_for_compute(
            &settings.home,
            Duration::from_secs(5),
        ));
        print_compute_start(outcome, &settings);
    } else {
        print_compute_start(ComputeStart::NotConfigured, &settings);
    }
    println!(
        "Logs: stdout -> {}, stderr -> {}",
        log_path(&settings, Process::Polaris, Stream::Stdout).display(),
        log_path(&settings, Process::Polaris, Stream::Stderr).display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Settings for `stop` and `status`: a broken configuration is warned about, never a reason to
/// leave a running agent unreachable.
fn lenient_settings(home: Option<PathBuf>) -> anyhow::Result<Settings> {
    let (settings, problem) = Settings::load_or_defaults(home)?;
    if let Some(problem) = problem {
        eprintln!(
            "polaris: warning: {:#}; going on with the defaults in {}",
            anyhow::Error::from(problem),
            settings.home.display()
        );
    }
    Ok(settings)
}

pub(super) fn stop(home: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let settings = lenient_settings(home)?;
    println!("Stopping Polaris...");
    let report = runtime()?.block_on(lifecycle::stop(&settings))?;
    match report.agent {
        None => println!("polaris is not running."),
        Some(_) => println!("polaris stopped successfully."),
    }
    if report.compute.is_some() {
        println!("Stopping Compute Subnet...");
        println!("compute_subnet stopped successfully.");
    }
    Ok(ExitCode::SUCCESS)
}

fn ago(at: chrono::DateTime<chrono::Utc>) -> String {
    let seconds = (chrono::Utc::now() - at).num_seconds().max(0);
    humantime::format_duration(Duration::from_secs(seconds as u64)).to_string()
}

pub(super) fn status(args: StatusArgs, home: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let settings = lenient_settings(home)?;
    let snapshot = snapshot(&settings.home)?;
    // The running agent knows whether it was given a compute_subnet; this shell may not.
    let compute_configured = snapshot
        .as_ref()
        .map_or(settings.compute.cmd.is_some(), |s| s.compute_configured);
    let compute_pid = snapshot
        .as_ref()
        .and_then(|s| s.compute.as_ref())
        .and_then(|c| c.pid);
    let problems = problems(snapshot.as_ref(), compute_configured, compute_pid);
    let healthy = problems.is_empty();
    let usage = compute_pid.and_then(crate::agent::usage::of_tree);
    if args.json {
        let report = StatusReport {
            polaris: snapshot.as_ref(),
            compute_subnet_configured: compute_configured,
            compute_subnet_usage: usage,
            healthy,
            problems: &problems,
        };
        println!(
            "{}",
            report.to_json().context("writing the status as JSON")?
        );
    } else {
        match &snapshot {
            Some(s) => {
                println!("polaris is running with PID {}.", s.agent_pid);
                println!("  up {}", ago(s.started_at));
                let beat = &s.heartbeat;
                match (&beat.last_ack, &beat.last_error, &beat.registration_problem) {
                    (_, _, Some(why)) => println!("  heartbeats stopped: {why}"),
                    (_, Some(error), _) if beat.failures > 0 => {
                        println!(
                            "  heartbeats failing ({} in a row): {}",
                            beat.failures, error.message
                        );
                    }
                    (Some(at), _, _) => {
                        println!("  last heartbeat acknowledged {} ago", ago(*at));
                    }
                    (None, _, _) if beat.miner_id.is_none() => {
                        println!("  not registered: heartbeats start after `polaris register`");
                    }
                    (None, _, _) => println!("  no heartbeat acknowledged yet"),
                }
                if let Some(why) = &beat.sampling_problem {
                    println!("  {why}");
                }
                if let Some(url) = &s.coordinator {
                    println!("  hosting the coordinator at {url}");
                }
                if let Some(tunnel) = &s.tunnel {
                    print_tunnel(tunnel);
                }
                print_ssh_access(s.ssh_access.as_ref());
            }
            None => {
                println!("polaris is not running.");
                println!(
                    "  SSH access by key: {} (POLARIS_SSH_ACCESS; the agent takes it when it starts)",
                    settings.ssh.access.as_str()
                );
                if let Some(home) = crate::agent::systemd::unit_home_other_than(&settings.home) {
                    println!(
                        "  a systemd unit (polaris.service) keeps its agent in {0}: `sudo POLARIS_HOME={0} polaris status`",
                        home.display()
                    );
                }
            }
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
                    println!("  last exit: {exit}, {} ago", ago(exit.at));
                }
            }
            Some(c) => {
                println!("compute_subnet is not running.");
                if let Some(why) = &c.spawn_error {
                    println!("  cannot start: {why}");
                }
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

/// Why `status` is not healthy (and exits 3), one short sentence each; empty when all is well.
fn problems(
    snapshot: Option<&Snapshot>,
    compute_configured: bool,
    compute_pid: Option<u32>,
) -> Vec<String> {
    let Some(s) = snapshot else {
        return vec!["polaris is not running".to_owned()];
    };
    let mut problems = vec![];
    if let Some(why) = &s.heartbeat.registration_problem {
        problems.push(format!("heartbeats stopped: {why}"));
    }
    if s.heartbeat.failures > 0 {
        let why = s
            .heartbeat
            .last_error
            .as_ref()
            .map(|e| format!(": {}", e.summary()))
            .unwrap_or_default();
        problems.push(format!(
            "heartbeats failing ({} in a row){why}",
            s.heartbeat.failures
        ));
    }
    if let Some(why) = &s.heartbeat.sampling_problem {
        problems.push(why.clone());
    }
    if compute_configured && compute_pid.is_none() {
        problems.push("compute_subnet is not running".to_owned());
    }
    // A tunnel the agent keeps must be up too (an agent without POLARIS_RELAY keeps none).
    if s.tunnel.as_ref().is_some_and(|t| !t.is_up()) {
        problems.push("the tunnel is not up".to_owned());
    }
    problems
}

/// Which keys the coordinator's commands let in (POLARIS_SSH_ACCESS=keys), or that it is off.
fn print_ssh_access(access: Option<&crate::agent::control::SshAccess>) {
    let Some(access) = access else {
        println!(
            "  SSH access by key: off (POLARIS_SSH_ACCESS=keys lets the coordinator authorize validators' keys)"
        );
        return;
    };
    match access.keys.len() {
        0 => println!("  SSH access by key for {}: no key authorized", access.user),
        n => println!(
            "  SSH access by key for {}: {n} key{} authorized",
            access.user,
            if n == 1 { "" } else { "s" }
        ),
    }
    for key in &access.keys {
        let expires = key.expires_at.map_or_else(
            || "no expiry".to_owned(),
            |at| format!("expires {}", at.format("%Y-%m-%d %H:%M UTC")),
        );
        println!(
            "    {} {} ({expires})",
            key.fingerprint,
            key.comment.as_deref().unwrap_or("")
        );
    }
}

fn print_tunnel(tunnel: &crate::agent::tunnel::State) {
    println!("{}", tunnel.headline(chrono::Utc::now()));
    let mut facts = vec![format!("to {}", tunnel.target)];
    if let Some(key) = &tunnel.host_key {
        facts.push(format!("relay host key {key}"));
    }
    facts.push(format!("sessions opened: {}", tunnel.sessions));
    if let Some(at) = tunnel.last_probe {
        facts.push(format!("last probe {} ago", ago(at)));
    }
    println!("  {}", facts.join(", "));
}

pub(super) fn check_main(args: CheckMainArgs, home: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(home, &[])?;
    let pid = snapshot(&settings.home)?
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
