//! `polaris --daemon`: the agent in the foreground. It runs the heartbeat sender, the
//! supervisor of compute_subnet (when POLARIS_COMPUTE_CMD is set), the SSH tunnel keeper (when
//! POLARIS_RELAY is set), the control socket, and, with no SERVER_URL set, the coordinator
//! itself on 127.0.0.1:8420 (the standalone set-up). SIGTERM or SIGINT stop it cleanly:
//! compute_subnet first, then the rest.

use anyhow::Context;
use chrono::Utc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::control::{self, Request, Response, Snapshot};
use super::{commands, heartbeat, orders, pidfile, ssh_keys, supervisor, tunnel};
use crate::config::{Settings, SshAccess};

pub const AGENT: &str = "polaris";
pub const COMPUTE: &str = "compute_subnet";

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    // Before anything is written: a SIGTERM from here on is a clean stop, never a death by
    // signal that leaves the PID file behind.
    let cancel = CancellationToken::new();
    tokio::spawn(Signals::install()?.stop(cancel.clone()));
    let home = settings.home.clone();
    crate::files::create_private_dir_all(&home)
        .with_context(|| format!("cannot create {}", home.display()))?;
    let me = std::process::id();
    // One agent per POLARIS_HOME: an exclusive lock held for the agent's lifetime (the kernel
    // drops it however the process ends), so two racing starts cannot both run.
    let _lock = lock(&home)?;
    pidfile::write(&home, AGENT, me)?;
    // compute_subnet of an agent that died (kill -9, OOM) is still running: stop it rather
    // than start a second one beside it.
    if let Some(orphan) = pidfile::read_live(&home, COMPUTE) {
        tracing::warn!(
            pid = orphan.pid,
            "stopping compute_subnet left by a previous agent"
        );
        let stopped = tokio::task::spawn_blocking(move || {
            super::process::stop_group(orphan, std::time::Duration::from_secs(10))
        })
        .await
        .unwrap_or(false);
        if !stopped {
            anyhow::bail!(
                "compute_subnet (PID {}) left by a previous agent does not stop",
                orphan.pid
            );
        }
        pidfile::remove(&home, COMPUTE);
    }
    if cancel.is_cancelled() {
        // Asked to stop while the orphan was being stopped: nothing else was started.
        pidfile::remove(&home, AGENT);
        tracing::info!("agent stopped before it started");
        return Ok(());
    }
    let started_at = Utc::now();

    // The hosted coordinator has its own token: it stops last, after the heartbeats have
    // signed off to it (with the agent's token it would be gone before the sign-off).
    let coordinator_cancel = CancellationToken::new();
    let mut coordinator_task = None;
    let coordinator = if settings.server_url_set {
        None
    } else {
        let coordinator = crate::server::Coordinator::build(&settings)
            .await
            .context("cannot start the standalone coordinator")?;
        let url = format!("http://{}/api/v1", coordinator.local_addr()?);
        tracing::info!(%url, "hosting the coordinator (no SERVER_URL set)");
        let token = coordinator_cancel.clone();
        coordinator_task = Some(tokio::spawn(async move {
            if let Err(err) = coordinator.run(token).await {
                tracing::error!(error = %err, "the coordinator stopped");
            }
        }));
        Some(url)
    };

    let (compute_state, compute_rx) = watch::channel(supervisor::State::default());
    let (compute_tx, compute_requests) = mpsc::channel(4);
    let compute_configured = settings.compute.cmd.is_some();
    let compute_cancel = CancellationToken::new();
    let compute = settings.compute.cmd.clone().map(|cmd| {
        let config =
            supervisor::Config::new(cmd, settings.compute.dir.clone(), settings.logs_dir());
        tokio::spawn(supervisor::run(
            config,
            compute_state,
            compute_requests,
            compute_cancel.clone(),
        ))
    });
    tokio::spawn(keep_compute_pid_file(home.clone(), compute_rx.clone()));

    // SSH access by key: the managed block is read before the first heartbeat reports it.
    let ssh_keys = match settings.ssh.access {
        SshAccess::Off => None,
        SshAccess::Keys => Some(open_ssh_keys(&settings).await?),
    };
    let ssh_cancel = CancellationToken::new();
    if let Some(keeper) = &ssh_keys {
        tokio::spawn(keeper.clone().expire(ssh_cancel.clone()));
    }

    let (heartbeat_state, heartbeat_rx) = watch::channel(heartbeat::State::default());
    let (orders_tx, orders) = mpsc::channel(8);
    let reports = commands::Reports::default();
    let heartbeat_cancel = CancellationToken::new();
    let mut heartbeat_config = heartbeat::Config::new(home.clone(), settings.heartbeat_interval);
    heartbeat_config.nvml_library = settings.nvml_library.clone();
    let heartbeats = tokio::spawn(heartbeat::run(
        heartbeat_config,
        heartbeat_state,
        heartbeat::Links {
            orders: Some(orders_tx),
            reports: reports.clone(),
            ssh_keys: ssh_keys.as_ref().map(ssh_keys::KeyKeeper::subscribe),
        },
        heartbeat_cancel.clone(),
    ));
    tokio::spawn(orders::run(
        orders,
        orders::Targets {
            compute: compute_configured.then(|| (compute_tx.clone(), compute_rx.clone())),
            ssh: ssh_keys.clone(),
        },
        reports,
    ));

    let tunnel_cancel = CancellationToken::new();
    let tunnel = tunnel::Config::from_settings(&settings).map(|config| {
        let (state, rx) = watch::channel(tunnel::State::new(&config));
        let task = tokio::spawn(tunnel::run(config, state, tunnel_cancel.clone()));
        (task, rx)
    });
    let tunnel_rx = tunnel.as_ref().map(|(_, rx)| rx.clone());

    let base = Snapshot {
        agent_pid: me,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at,
        compute_configured,
        compute: compute_configured.then(|| compute_rx.borrow().clone()),
        heartbeat: heartbeat_rx.borrow().clone(),
        coordinator,
        tunnel: tunnel_rx.as_ref().map(|t| t.borrow().clone()),
        ssh_access: ssh_keys.as_ref().map(|keeper| control::SshAccess {
            user: keeper.user().to_owned(),
            keys: keeper.subscribe().borrow().clone(),
        }),
    };
    let (snapshot_tx, snapshot_rx) = watch::channel(base.clone());
    tokio::spawn(publish_snapshots(
        base,
        Sources {
            compute: compute_configured.then(|| compute_rx.clone()),
            heartbeat: Some(heartbeat_rx),
            tunnel: tunnel_rx,
            ssh_keys: ssh_keys.as_ref().map(ssh_keys::KeyKeeper::subscribe),
        },
        snapshot_tx,
    ));

    let handler = {
        let cancel = cancel.clone();
        move |request: Request| match request {
            Request::Stop => {
                cancel.cancel();
                Response::Done {
                    message: "stopping".to_owned(),
                }
            }
            Request::RestartCompute | Request::StartCompute | Request::StopCompute
                if !compute_configured =>
            {
                Response::Refused {
                    message: "compute_subnet is not configured (POLARIS_COMPUTE_CMD)".to_owned(),
                }
            }
            Request::RestartCompute => ask_supervisor(
                &compute_tx,
                supervisor::Request::Restart,
                "restarting compute_subnet",
            ),
            Request::StartCompute => ask_supervisor(
                &compute_tx,
                supervisor::Request::Start,
                "starting compute_subnet",
            ),
            Request::StopCompute => ask_supervisor(
                &compute_tx,
                supervisor::Request::Stop,
                "stopping compute_subnet",
            ),
            // Answered by the control socket itself (from the snapshots, or streamed), never
            // handed here.
            Request::Status | Request::Watch { .. } | Request::Logs { .. } => Response::Refused {
                message: "answered by the control socket, not the agent".to_owned(),
            },
        }
    };
    let socket = control::socket_path(&home);
    let logs_dir = settings.logs_dir();
    let control = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            let served =
                control::serve(&socket, logs_dir, snapshot_rx, handler, cancel.clone()).await;
            // Without its socket nobody can reach or stop the agent: stop rather than run headless.
            if let Err(err) = &served {
                tracing::error!(error = %err, socket = %socket.display(), "control socket failed");
                cancel.cancel();
            }
            served
        }
    });
    tracing::info!(pid = me, "agent started");

    cancel.cancelled().await;
    tracing::info!("stopping");
    // compute_subnet first, then the heartbeats (which sign off), then the rest.
    compute_cancel.cancel();
    if let Some(compute) = compute {
        let _ = compute.await;
    }
    pidfile::remove(&home, COMPUTE);
    heartbeat_cancel.cancel();
    let _ = heartbeats.await;
    ssh_cancel.cancel();
    // The session is closed, not left to time out: the relay frees our port at once.
    tunnel_cancel.cancel();
    if let Some((task, _)) = tunnel {
        let _ = task.await;
    }
    coordinator_cancel.cancel();
    if let Some(task) = coordinator_task {
        let _ = task.await;
    }
    let _ = control.await;
    pidfile::remove(&home, AGENT);
    tracing::info!("agent stopped");
    Ok(())
}

/// The managed block of SSH_USER's `authorized_keys`; without SSH_USER, that of the account
/// the agent runs as (by its uid, not `$USER`), except root: validators are never let in as
/// root unless SSH_USER says so.
async fn open_ssh_keys(settings: &Settings) -> anyhow::Result<ssh_keys::KeyKeeper> {
    let user = match settings.ssh.user.clone() {
        Some(user) => user,
        None => agent_account()?,
    };
    ssh_keys::KeyKeeper::open(&user).await.map_err(|why| {
        anyhow::anyhow!(
            "POLARIS_SSH_ACCESS=keys, but the SSH keys of {user} cannot be managed: {why}"
        )
    })
}

/// The account the agent runs as, for SSH access without SSH_USER.
fn agent_account() -> anyhow::Result<String> {
    #[cfg(unix)]
    {
        let uid = nix::unistd::Uid::effective();
        anyhow::ensure!(
            !uid.is_root(),
            "POLARIS_SSH_ACCESS=keys and the agent runs as root: set SSH_USER to the account validators log in as (it is never root unless you name it)"
        );
        match nix::unistd::User::from_uid(uid) {
            Ok(Some(user)) => Ok(user.name),
            _ => anyhow::bail!(
                "POLARIS_SSH_ACCESS=keys, but uid {uid} has no name in the passwd database: set SSH_USER"
            ),
        }
    }
    #[cfg(not(unix))]
    {
        crate::inventory::current_user()
            .context("POLARIS_SSH_ACCESS=keys needs SSH_USER: the account validators log in as")
    }
}

/// Hands `request` to the supervisor without waiting (the control socket's handler is sync).
fn ask_supervisor(
    requests: &mpsc::Sender<supervisor::Request>,
    request: supervisor::Request,
    doing: &str,
) -> Response {
    match requests.try_send(request) {
        Ok(()) => Response::Done {
            message: doing.to_owned(),
        },
        Err(_) => Response::Refused {
            message: "compute_subnet is busy with earlier requests: try again in a moment"
                .to_owned(),
        },
    }
}

/// The services whose states make up the snapshot; `None` for one that is not configured, or
/// gone (its last state stays in the snapshot).
struct Sources {
    compute: Option<watch::Receiver<supervisor::State>>,
    heartbeat: Option<watch::Receiver<heartbeat::State>>,
    tunnel: Option<watch::Receiver<tunnel::State>>,
    ssh_keys: Option<watch::Receiver<Vec<crate::api::AuthorizedKey>>>,
}

/// Waits for a change of a service; forever when it is absent. A service that is gone is
/// dropped from `receiver`, so it is not waited on again.
async fn changed<T>(receiver: &mut Option<watch::Receiver<T>>) {
    match receiver.as_mut() {
        Some(r) => {
            if r.changed().await.is_err() {
                *receiver = None;
            }
        }
        None => std::future::pending().await,
    }
}

/// Keeps `snapshots` equal to the agent's state: recomputed whenever a service's state changes,
/// published only when it differs (so watchers wake for real changes). Ends when every service
/// is gone.
async fn publish_snapshots(
    mut current: Snapshot,
    mut sources: Sources,
    snapshots: watch::Sender<Snapshot>,
) {
    loop {
        if let Some(c) = sources.compute.as_mut() {
            current.compute = Some(c.borrow_and_update().clone());
        }
        if let Some(h) = sources.heartbeat.as_mut() {
            current.heartbeat = h.borrow_and_update().clone();
        }
        if let Some(t) = sources.tunnel.as_mut() {
            current.tunnel = Some(t.borrow_and_update().clone());
        }
        if let (Some(k), Some(access)) = (sources.ssh_keys.as_mut(), current.ssh_access.as_mut()) {
            access.keys = k.borrow_and_update().clone();
        }
        snapshots.send_if_modified(|s| {
            let changed = *s != current;
            if changed {
                *s = current.clone();
            }
            changed
        });
        if sources.compute.is_none()
            && sources.heartbeat.is_none()
            && sources.tunnel.is_none()
            && sources.ssh_keys.is_none()
        {
            return;
        }
        tokio::select! {
            () = changed(&mut sources.compute) => {}
            () = changed(&mut sources.heartbeat) => {}
            () = changed(&mut sources.tunnel) => {}
            () = changed(&mut sources.ssh_keys) => {}
        }
    }
}

/// Takes `pids/polaris.lock` exclusively, or says which agent holds it.
fn lock(home: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = home.join("pids").join("polaris.lock");
    crate::files::create_private_dir_all(&home.join("pids"))?;
    let file = crate::files::open_private_append(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    #[cfg(unix)]
    if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        match pidfile::read_live(home, AGENT) {
            Some(other) => anyhow::bail!("polaris is already running with PID {}.", other.pid),
            None => anyhow::bail!("another polaris agent holds {}", path.display()),
        }
    }
    Ok(file)
}

/// Keeps `pids/compute_subnet.pid` naming the running process, and only while it runs.
async fn keep_compute_pid_file(
    home: std::path::PathBuf,
    mut state: watch::Receiver<supervisor::State>,
) {
    loop {
        let pid = state.borrow_and_update().pid;
        match pid {
            Some(pid) => {
                let _ = pidfile::write(&home, COMPUTE, pid);
            }
            None => pidfile::remove(&home, COMPUTE),
        }
        if state.changed().await.is_err() {
            return;
        }
    }
}

/// The signals that stop the agent, taken over from their default actions at once (a SIGTERM
/// that arrived before would kill the agent mid-start).
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
    #[cfg(windows)]
    ctrl_c: tokio::signal::windows::CtrlC,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
                int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
                hup: signal(SignalKind::hangup()).context("cannot handle SIGHUP")?,
            })
        }
        #[cfg(windows)]
        {
            Ok(Self {
                ctrl_c: tokio::signal::windows::ctrl_c().context("cannot handle Ctrl-C")?,
            })
        }
    }

    /// Cancels on SIGTERM or SIGINT (Ctrl-C on Windows); SIGHUP reopens the log files (after
    /// logrotate moved them) and the agent goes on.
    async fn stop(mut self, cancel: CancellationToken) {
        #[cfg(unix)]
        loop {
            tokio::select! {
                _ = self.term.recv() => break,
                _ = self.int.recv() => break,
                _ = self.hup.recv() => {
                    super::rotating_log::reopen_all();
                    tracing::info!("log files reopened (SIGHUP)");
                }
            }
        }
        #[cfg(windows)]
        let _ = self.ctrl_c.recv().await;
        cancel.cancel();
    }
}
