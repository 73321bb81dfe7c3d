//! The built-in relay (`polaris server --relay-listen ADDR`): an SSH server beside the API that
//! only registered miners' tunnels may log in to, each to hold one reverse forward on a port of
//! POLARIS_RELAY_PORTS, so renters reach miners behind NAT at `ssh://user@relay:port`.
//!
//! Its host key is made once (`POLARIS_HOME/keys/relay_host_ed25519`) and its fingerprint
//! printed at start, so miners can pin it (POLARIS_RELAY_HOST_KEY). Sessions are watched with
//! keepalives: a miner that vanished without a word loses its session, and its port, within
//! [`KEEPALIVE_INTERVAL`] × ([`KEEPALIVE_MAX`] + 1) = 40 s.

mod book;
mod forward;
mod handler;
pub mod keys;

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::RelaySession;
use book::Book;
use handler::Connection;
pub use keys::RelayKeys;

/// A session with no traffic is asked for a keepalive after this long…
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// …and dropped after this many unanswered ones.
const KEEPALIVE_MAX: usize = 3;
/// A connection must have logged in by then, or it is closed: nobody holds a slot unannounced.
const LOGIN_WITHIN: Duration = Duration::from_secs(30);
/// Connections at once, logged in or not.
const MAX_CONNECTIONS: usize = 4096;

/// What the relay's connections share.
#[derive(Debug)]
struct Shared {
    keys: Arc<RelayKeys>,
    book: Book,
    bind_ip: IpAddr,
}

/// Who holds which port, for the admin API and `/metrics`.
#[derive(Debug, Clone)]
pub struct RelayView(Arc<Shared>);

impl RelayView {
    /// The sessions holding a port, by port.
    pub fn sessions(&self) -> Vec<RelaySession> {
        self.0.book.sessions()
    }
}

/// A relay bound and ready to serve.
pub struct Relay {
    listener: TcpListener,
    config: Arc<russh::server::Config>,
    shared: Arc<Shared>,
    fingerprint: String,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("listener", &self.listener)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// Binds `listen`, and makes the host key under `home` if this is the first start.
    pub async fn bind(
        listen: SocketAddr,
        ports: RangeInclusive<u16>,
        home: &Path,
        keys: Arc<RelayKeys>,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("the relay cannot listen on {listen}"))?;
        let key_path = home.join("keys").join("relay_host_ed25519");
        crate::register::ssh_key::ensure_at(&key_path, "polaris-relay")
            .context("cannot make the relay's host key")?;
        let host_key = russh::keys::load_secret_key(&key_path, None)
            .with_context(|| format!("cannot read the relay's host key {}", key_path.display()))?;
        let fingerprint = host_key
            .public_key()
            .fingerprint(russh::keys::HashAlg::Sha256)
            .to_string();
        let config = russh::server::Config {
            server_id: russh::SshId::Standard(
                concat!("SSH-2.0-polaris_relay_", env!("CARGO_PKG_VERSION")).into(),
            ),
            methods: handler::methods(),
            keys: vec![host_key],
            // OpenSSH clients first ask with "none" to learn the methods: answer that at once.
            auth_rejection_time_initial: Some(Duration::ZERO),
            keepalive_interval: Some(KEEPALIVE_INTERVAL),
            keepalive_max: KEEPALIVE_MAX,
            // A quiet tunnel is a healthy one: keepalives decide, not silence.
            inactivity_timeout: None,
            nodelay: true,
            window_size: crate::splice::CHANNEL_WINDOW,
            ..Default::default()
        };
        Ok(Self {
            listener,
            config: Arc::new(config),
            shared: Arc::new(Shared {
                keys,
                book: Book::new(ports),
                bind_ip: listen.ip(),
            }),
            fingerprint,
        })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// `SHA256:…` of the host key, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn view(&self) -> RelayView {
        RelayView(Arc::clone(&self.shared))
    }

    /// Serves until `cancel`, then disconnects every session.
    pub async fn run(self, cancel: CancellationToken) {
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                () = cancel.cancelled() => break,
            };
            let (socket, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "the relay cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                tracing::warn!(%peer, "the relay is full ({MAX_CONNECTIONS} connections): refused");
                continue;
            };
            let _ = socket.set_nodelay(true);
            let ended = cancel.child_token();
            let connection = Connection::new(Arc::clone(&self.shared), peer, ended.clone());
            let config = Arc::clone(&self.config);
            tokio::spawn(async move {
                let _slot = slot;
                serve_one(config, socket, connection, ended).await;
            });
        }
        for handle in self.shared.book.handles() {
            let _ = handle
                .disconnect(
                    russh::Disconnect::ByApplication,
                    "the relay is stopping".to_owned(),
                    String::new(),
                )
                .await;
        }
    }
}

/// Runs one SSH connection to its end (or the relay's stop, or a login that never came).
async fn serve_one(
    config: Arc<russh::server::Config>,
    socket: tokio::net::TcpStream,
    connection: Connection,
    ended: CancellationToken,
) {
    let logged_in = connection.logged_in_token();
    let running = match russh::server::run_stream(config, socket, connection).await {
        Ok(running) => running,
        Err(err) => {
            tracing::debug!(error = %err, "relay connection failed before the handshake");
            return;
        }
    };
    let handle = running.handle();
    tokio::pin!(running);
    let why = tokio::select! {
        result = &mut running => {
            if let Err(err) = result {
                tracing::debug!(error = %err, "relay session ended with an error");
            }
            return;
        }
        () = async {
            tokio::time::sleep(LOGIN_WITHIN).await;
            if logged_in.is_cancelled() {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::info!("relay connection closed: no login within {LOGIN_WITHIN:?}");
            "no login in time"
        }
        () = ended.cancelled() => "the relay is stopping",
    };
    // Dropping `running` would leave the session's task alive: ask it to end, and wait a little.
    let _ = handle
        .disconnect(
            russh::Disconnect::ByApplication,
            why.to_owned(),
            String::new(),
        )
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(2), &mut running).await;
}
