//! `polaris server`: runs the coordinator until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::config::{Settings, StoreKind, keys};
use crate::server::Coordinator;

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on [env: POLARIS_LISTEN] [default: 127.0.0.1:8420]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Where state is kept: sqlite (a file in POLARIS_HOME, for one coordinator) or firestore
    /// (Google Firestore, which several coordinators can share) [env: POLARIS_STORE]
    /// [default: sqlite]
    #[arg(long, value_enum)]
    pub store: Option<StoreKind>,
    /// The Google Cloud project of the Firestore database (with --store firestore). Credentials
    /// come from Application Default Credentials or GOOGLE_APPLICATION_CREDENTIALS; with
    /// FIRESTORE_EMULATOR_HOST=HOST:PORT set, the emulator is used and none are needed
    /// [env: POLARIS_FIRESTORE_PROJECT]
    #[arg(long, value_name = "ID")]
    pub firestore_project: Option<String>,
    /// The Firestore database in that project [env: POLARIS_FIRESTORE_DATABASE]
    /// [default: (default)]
    #[arg(long, value_name = "NAME")]
    pub firestore_database: Option<String>,
    /// How often miner_states is refreshed for a miner whose status did not change (every change
    /// is written at once) [env: POLARIS_STATE_EVERY] [default: 1m with sqlite, 10m with
    /// firestore]
    #[arg(long, value_name = "DURATION")]
    pub state_every: Option<String>,
    /// How often each miner's metrics are sampled into metrics_history
    /// [env: POLARIS_METRICS_EVERY] [default: 1m with sqlite, 10m with firestore]
    #[arg(long, value_name = "DURATION")]
    pub metrics_every: Option<String>,
    /// This coordinator's name among those sharing a Firestore database, as /metrics shows it
    /// [env: POLARIS_REPLICA] [default: the host name and a random suffix, new at each start]
    #[arg(long, value_name = "NAME")]
    pub replica: Option<String>,
    /// Silence after which a miner is offline, e.g. 45s [env: POLARIS_OFFLINE_AFTER] [default: 45s]
    #[arg(long, value_name = "DURATION")]
    pub offline_after: Option<String>,
    /// URL that receives a JSON POST per alert [env: POLARIS_ALERT_WEBHOOK]
    #[arg(long, value_name = "URL")]
    pub alert_webhook: Option<String>,
    /// Also run the built-in SSH relay on this address, e.g. 0.0.0.0:2222: registered miners'
    /// tunnels log in with their keys and get a port renters reach them at
    /// [env: POLARIS_RELAY_LISTEN]
    #[arg(long, value_name = "ADDR")]
    pub relay_listen: Option<String>,
    /// Ports the relay gives miners, e.g. 20000-20999 [env: POLARIS_RELAY_PORTS]
    /// [default: 20000-20999]
    #[arg(long, value_name = "FIRST-LAST")]
    pub relay_ports: Option<String>,
    /// Let the original Python miners in while they move to polaris: their heartbeats and
    /// updates come without the token registration handed them, and are accepted for miners
    /// that have never used it (shown as legacy in /metrics and the miner list)
    /// [env: POLARIS_LEGACY_CLIENTS]
    #[arg(long)]
    pub legacy_clients: bool,
    /// How long a command queued for a miner (`polaris miners restart`) waits for it to report
    /// back before it expires, e.g. 1h [env: POLARIS_COMMAND_EXPIRY] [default: 1h]
    #[arg(long, value_name = "DURATION")]
    pub command_expiry: Option<String>,
}

pub(super) fn run(args: ServerArgs, home: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let mut flags = Vec::new();
    if let Some(listen) = args.listen {
        flags.push((keys::LISTEN.env, listen));
    }
    if let Some(store) = args.store {
        let name = match store {
            StoreKind::Sqlite => "sqlite",
            StoreKind::Firestore => "firestore",
        };
        flags.push((keys::STORE.env, name.to_owned()));
    }
    for (key, value) in [
        (&keys::FIRESTORE_PROJECT, args.firestore_project),
        (&keys::FIRESTORE_DATABASE, args.firestore_database),
        (&keys::STATE_EVERY, args.state_every),
        (&keys::METRICS_EVERY, args.metrics_every),
        (&keys::REPLICA, args.replica),
    ] {
        if let Some(value) = value {
            flags.push((key.env, value));
        }
    }
    if let Some(after) = args.offline_after {
        flags.push((keys::OFFLINE_AFTER.env, after));
    }
    if let Some(url) = args.alert_webhook {
        flags.push((keys::ALERT_WEBHOOK.env, url));
    }
    if let Some(listen) = args.relay_listen {
        flags.push((keys::RELAY_LISTEN.env, listen));
    }
    if let Some(ports) = args.relay_ports {
        flags.push((keys::RELAY_PORTS.env, ports));
    }
    if args.legacy_clients {
        flags.push((keys::LEGACY_CLIENTS.env, "1".to_owned()));
    }
    if let Some(expiry) = args.command_expiry {
        flags.push((keys::COMMAND_EXPIRY.env, expiry));
    }
    let settings = Settings::load(home, &flags)?;
    // A store named without what it needs (firestore without a project), or a setting of the
    // other store: nothing was started. Given by flags it is a usage error (exit 2), as clap's;
    // from the environment or a file, a failure to fix there (exit 1).
    if let Err(err) = crate::server::check_store_settings(&settings.server) {
        let store_keys = [
            keys::STORE.env,
            keys::FIRESTORE_PROJECT.env,
            keys::FIRESTORE_DATABASE.env,
            keys::REPLICA.env,
        ];
        if flags.iter().any(|(key, _)| store_keys.contains(key)) {
            eprintln!("polaris: error: {err:#}");
            return Ok(ExitCode::from(2));
        }
        return Err(err);
    }
    // Everything the coordinator creates (its database with the WAL and shared-memory files,
    // the log files tracing-appender rotates in) holds token hashes, inventories and addresses:
    // owner only. It starts no other program, so the mask reaches nothing else.
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let _log_guard = crate::telemetry::init_file_logging(&settings.logs_dir(), "server")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(settings))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let coordinator = Coordinator::build(&settings).await?;
    let addr = coordinator.local_addr()?;
    println!("polaris server listening on http://{addr} (API: http://{addr}/api/v1)");
    println!(
        "{} miners loaded from {}; a miner is offline after {} of silence",
        coordinator.miner_count(),
        coordinator.store_name(),
        humantime::format_duration(settings.server.offline_after)
    );
    if let Some(replica) = coordinator.replica_name() {
        println!(
            "coordinator {replica} shares the store; it sweeps {} of {} shards now (see polaris_shard_holder in /metrics)",
            coordinator.shards_owned(),
            crate::store::SHARDS
        );
    }
    if let Some(relay) = coordinator.relay() {
        // One stable line: miners copy the fingerprint into POLARIS_RELAY_HOST_KEY.
        println!(
            "relay listening on {} (host key {}), ports {}-{}",
            relay.addr,
            relay.fingerprint,
            settings.server.relay_ports.start(),
            settings.server.relay_ports.end()
        );
    }
    if settings.server.legacy_clients {
        println!(
            "legacy clients: the original's token-less requests are accepted for miners that never used their token (see polaris_legacy_miners in /metrics)"
        );
    }
    if let Some(path) = &coordinator.created_admin_token {
        println!(
            "Admin token written to {} (send it as `Authorization: Bearer <token>` on admin routes)",
            path.display()
        );
    }
    tracing::info!(%addr, home = %settings.home.display(), "coordinator listening");
    println!(
        "logs: {}; stop with Ctrl-C or SIGTERM",
        settings.logs_dir().display()
    );
    // One line per alert on the terminal (or the journal), as the webhook gets them.
    let mut alerts = coordinator.alerts();
    tokio::spawn(async move {
        loop {
            match alerts.recv().await {
                Ok(text) => super::say(&format!("alert: {text}")),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    super::say(&format!("({missed} alerts not shown: see the log)"));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let cancel = CancellationToken::new();
    tokio::spawn(stop_on_signal(cancel.clone()));
    let outcome = coordinator.run(cancel).await;
    if outcome.is_ok() {
        super::say("polaris server stopped");
    }
    outcome
}

/// Cancels on SIGINT or SIGTERM (Ctrl-C or Ctrl-Break on Windows).
async fn stop_on_signal(cancel: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                tracing::error!("cannot listen for signals; stop the server with SIGKILL");
                return;
            }
        }
    }
    #[cfg(not(unix))]
    {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
    }
    tracing::info!("stop signal received; finishing requests and flushing the store");
    cancel.cancel();
}
