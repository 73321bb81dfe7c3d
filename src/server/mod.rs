//! `polaris server`: the coordinator miners register with and send heartbeats to.
//!
//! [`Coordinator::build`] opens the store, loads every miner into memory and binds the listener
//! (port 0 works; [`Coordinator::local_addr`] tells the port). [`Coordinator::run`] serves until
//! the cancellation token fires, then commits every queued write before returning.

mod alerts;
pub mod auth;
pub mod commands;
mod error;
mod guards;
mod health;
mod learn;
mod limit;
mod metrics;
mod refusals;
pub mod registry;
pub mod relay;
mod replicas;
mod routes;
mod serve;
mod state;
mod transitions;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use alerts::Alert;
pub use routes::{ApiDoc, MAX_BODY, router};

use crate::config::{Settings, StoreKind};
use crate::store::firestore::{FirestoreSettings, FirestoreStore};
use crate::store::sqlite::SqliteStore;
use crate::store::writer::StoreWriter;
use crate::store::{Peers, Store};
use metrics::Metrics;
use registry::Registry;
use state::AppState;

/// Where the built-in relay listens and who it is.
#[derive(Debug, Clone)]
pub struct RelayInfo {
    pub addr: SocketAddr,
    /// `SHA256:…` of its host key.
    pub fingerprint: String,
}

/// A coordinator ready to serve.
#[derive(Debug)]
pub struct Coordinator {
    listener: TcpListener,
    relay: Option<relay::Relay>,
    state: AppState,
    writer_task: JoinHandle<()>,
    /// Set when this start created the admin token file: its path, to tell the operator once.
    pub created_admin_token: Option<std::path::PathBuf>,
    store_name: String,
}

impl Coordinator {
    /// Opens the store, loads the registry and binds `settings.server.listen`.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let server = &settings.server;
        // Settings are checked before anything is bound: a store that cannot be used is the
        // problem to report, not a port that happens to be busy.
        check_store_settings(server)?;
        // Bind next: a busy port must fail before anything is created on disk.
        let listener = TcpListener::bind(server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", server.listen))?;
        crate::files::create_private_dir_all(&settings.home).with_context(|| {
            format!("cannot create POLARIS_HOME at {}", settings.home.display())
        })?;
        // The relay binds its port before it makes its host key; its keys are loaded below.
        let relay_keys = Arc::new(relay::RelayKeys::default());
        let relay = match server.relay_listen {
            Some(listen) => Some(
                relay::Relay::bind(
                    listen,
                    server.relay_ports.clone(),
                    &settings.home,
                    Arc::clone(&relay_keys),
                )
                .await?,
            ),
            None => None,
        };
        let (store, peers, store_name) = open_store(settings).await?;
        let replica = peers.map(|peers| {
            Arc::new(replicas::Replica::new(
                replica_name(server.replica.as_deref()),
                peers,
                server.offline_after,
            ))
        });
        let summaries = store
            .load_summaries()
            .await
            .context("cannot load miners from the store")?;
        let registry = Registry::new(
            server.offline_after,
            registry::Sampling {
                state_every: server.state_every,
                metrics_every: server.metrics_every,
            },
            summaries,
            tokio::time::Instant::now(),
        );
        if let Some(replica) = &replica {
            // Join before serving, so this coordinator sweeps only its own shards from the start.
            let (_, owned) = replica
                .renew()
                .await
                .context("cannot join the coordinators sharing the store")?;
            registry.set_owned(owned);
        }
        relay_keys.load(
            store
                .relay_keys()
                .await
                .context("cannot load the relay keys from the store")?,
        );
        let open_commands = store
            .open_commands()
            .await
            .context("cannot load the open commands from the store")?;
        let (admin_token, created_admin_token) = auth::load_or_create_admin_token(
            server.admin_token.as_ref().map(|s| s.expose()),
            &settings.home,
        )?;
        let metrics = Arc::new(Metrics::default());
        let alerter = alerts::Alerter::spawn(server.alert_webhook.clone(), Arc::clone(&metrics))?;
        let (writer, writer_task) = StoreWriter::spawn(Arc::clone(&store));
        let state = AppState::new(state::Parts {
            registry,
            writer,
            store,
            alerter,
            metrics,
            access: state::Access {
                admin_hash: auth::hash_token(&admin_token),
                legacy_clients: server.legacy_clients,
            },
            relay: state::RelayParts {
                keys: relay_keys,
                view: relay.as_ref().map(relay::Relay::view),
            },
            commands: state::Commands {
                book: commands::CommandBook::load(open_commands),
                expiry: server.command_expiry,
            },
            replica,
        });
        Ok(Self {
            listener,
            relay,
            state,
            writer_task,
            created_admin_token,
            store_name,
        })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Every alert's text from now on, as it is raised.
    pub fn alerts(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.state.alerter.subscribe()
    }

    /// The built-in relay, when `relay_listen` is set.
    pub fn relay(&self) -> Option<RelayInfo> {
        let relay = self.relay.as_ref()?;
        Some(RelayInfo {
            addr: relay.local_addr().ok()?,
            fingerprint: relay.fingerprint().to_owned(),
        })
    }

    /// Where the state is kept, in words: the database file, or the Firestore project.
    pub fn store_name(&self) -> &str {
        &self.store_name
    }

    /// This coordinator's name among those sharing the store, if it is shared.
    pub fn replica_name(&self) -> Option<&str> {
        self.state.replica.as_deref().map(|r| r.name.as_str())
    }

    /// How many shards this coordinator sweeps now.
    pub fn shards_owned(&self) -> u32 {
        self.state.registry.owned().count_ones()
    }

    /// Number of miners loaded.
    pub fn miner_count(&self) -> usize {
        self.state.registry.len()
    }

    /// Serves until `cancel` fires, then flushes the store.
    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let health = tokio::spawn(health::run(self.state.clone(), cancel.child_token()));
        let prune = tokio::spawn(health::prune(self.state.clone(), cancel.child_token()));
        let expire = tokio::spawn(commands::expire(self.state.clone(), cancel.child_token()));
        let sharing = self.state.replica.clone().map(|replica| {
            tokio::spawn(replicas::run(
                self.state.clone(),
                replica,
                cancel.child_token(),
            ))
        });
        let relay = self
            .relay
            .map(|relay| tokio::spawn(relay.run(cancel.child_token())));
        // Serves until cancelled, then gives open connections a bounded time to finish, so a
        // client that never completes its request cannot hold the shutdown (and the flush) back.
        serve::serve(
            self.listener,
            router(self.state.clone()),
            Arc::clone(&self.state.metrics),
            serve::Limits::standard(),
            cancel.clone(),
        )
        .await;
        cancel.cancel();
        let _ = tokio::join!(health, prune, expire);
        if let Some(sharing) = sharing {
            let _ = sharing.await;
        }
        if let Some(relay) = relay {
            let _ = relay.await;
        }
        self.state.writer.close().await;
        let _ = self.writer_task.await;
        self.state.alerter.close().await;
        tracing::info!("coordinator stopped; store flushed");
        Ok(())
    }
}

/// Refuses store settings that cannot work, or would do nothing, before anything is bound.
pub fn check_store_settings(server: &crate::config::ServerSettings) -> anyhow::Result<()> {
    match server.store {
        StoreKind::Sqlite => {
            let firestore_only = [
                (
                    "POLARIS_FIRESTORE_PROJECT (--firestore-project)",
                    server.firestore_project.is_some(),
                ),
                (
                    "POLARIS_FIRESTORE_DATABASE (--firestore-database)",
                    server.firestore_database.is_some(),
                ),
                ("POLARIS_REPLICA (--replica)", server.replica.is_some()),
            ];
            if let Some((name, _)) = firestore_only.iter().find(|(_, set)| *set) {
                anyhow::bail!(
                    "{name} is for the firestore store: add --store firestore, or unset it"
                );
            }
        }
        StoreKind::Firestore => {
            if server.firestore_project.is_none() {
                anyhow::bail!(
                    "the firestore store needs a project: pass --firestore-project ID or set POLARIS_FIRESTORE_PROJECT"
                );
            }
        }
    }
    Ok(())
}

/// Opens the store the settings name; a shared one (Firestore) also gives its [`Peers`].
async fn open_store(
    settings: &Settings,
) -> anyhow::Result<(Arc<dyn Store>, Option<Arc<dyn Peers>>, String)> {
    match settings.server.store {
        StoreKind::Sqlite => {
            let path = settings.database_path();
            let store = SqliteStore::open(&path)
                .with_context(|| format!("cannot open the database {}", path.display()))?;
            Ok((Arc::new(store), None, path.display().to_string()))
        }
        StoreKind::Firestore => {
            let server = &settings.server;
            let project = server.firestore_project.clone().context(
                "the firestore store needs a project: pass --firestore-project ID or set POLARIS_FIRESTORE_PROJECT",
            )?;
            let firestore = FirestoreSettings {
                project,
                database: server.firestore_database.clone(),
                // Google's own variable, as its tools and client libraries read it.
                emulator: std::env::var("FIRESTORE_EMULATOR_HOST")
                    .ok()
                    .filter(|host| !host.trim().is_empty()),
            };
            let name = match (&firestore.emulator, &firestore.database) {
                (Some(host), _) => format!(
                    "Firestore project {} on the emulator at {host}",
                    firestore.project
                ),
                (None, Some(database)) => format!(
                    "Firestore project {} (database {database})",
                    firestore.project
                ),
                (None, None) => format!("Firestore project {}", firestore.project),
            };
            let store = Arc::new(FirestoreStore::connect(&firestore).await?);
            Ok((
                Arc::clone(&store) as Arc<dyn Store>,
                Some(store as Arc<dyn Peers>),
                name,
            ))
        }
    }
}

/// This coordinator's name among those sharing the store: the setting, or the host's name with
/// a random suffix (new at each start, so a restarted coordinator is a new member).
fn replica_name(configured: Option<&str>) -> String {
    if let Some(name) = configured {
        return name.to_owned();
    }
    let host: String = sysinfo::System::host_name()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    let suffix: u32 = rand::random();
    let host = if host.is_empty() { "polaris" } else { &host };
    format!("{host}-{suffix:08x}")
}
