//! One SSH session with the relay: connect, check the host key, log in, ask for the reverse
//! forward, and answer each forwarded connection by joining it to the local target. The keeper
//! (`super::run`) calls [`open`] and watches the session it returns; nothing here retries.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, AuthResult, Handle, Msg};
use russh::keys::PrivateKeyWithHashAlg;
use russh::{Channel, ChannelOpenFailure, cipher};

use super::Config;
use super::host_key::{self, HostKeyError, Trust};

/// Longest wait for the TCP connection, the handshake and the login, each.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the local target to accept a forwarded connection.
const TARGET_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a session could not be opened or ended.
#[derive(Debug, thiserror::Error)]
pub(super) enum SessionError {
    #[error(transparent)]
    HostKey(#[from] HostKeyError),
    #[error("{0}")]
    Ssh(#[from] russh::Error),
    #[error("{0}")]
    Refused(String),
    #[error("{what} took longer than {} s", STEP_TIMEOUT.as_secs())]
    Timeout { what: &'static str },
}

impl SessionError {
    /// A refused host key is the one failure the keeper does not retry.
    pub(super) fn is_final(&self) -> bool {
        matches!(self, Self::HostKey(_))
    }
}

/// The russh client handler: host-key check and forwarded connections.
pub(super) struct Client {
    host: String,
    port: u16,
    pinned: Option<String>,
    known_hosts: std::path::PathBuf,
    target: Arc<str>,
    /// The fingerprint the relay showed and how it was trusted, for the keeper's state.
    seen: Arc<Mutex<Option<(String, Trust)>>>,
}

impl client::Handler for Client {
    type Error = SessionError;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Err(HostKeyError::Certificate.into());
        };
        let trust = host_key::check(
            &self.host,
            self.port,
            key,
            self.pinned.as_deref(),
            &self.known_hosts,
        )?;
        let fingerprint = host_key::fingerprint(key);
        if trust == Trust::Learned {
            tracing::warn!(
                relay = %self.host, port = self.port, %fingerprint,
                "first connection to this relay: trusting its host key (pin it with POLARIS_RELAY_HOST_KEY)"
            );
        }
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some((fingerprint, trust));
        }
        Ok(true)
    }

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: Channel<Msg>,
        _connected_address: &str,
        _connected_port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        tracing::debug!(from = %originator_address, port = originator_port, "forwarded connection");
        // Never wait inside the session loop: connecting to the target happens beside it.
        let target = self.target.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(TARGET_TIMEOUT, tokio::net::TcpStream::connect(&*target))
                .await
            {
                Ok(Ok(socket)) => {
                    reply.accept().await;
                    crate::splice::splice(channel, socket).await;
                }
                Ok(Err(err)) => {
                    tracing::warn!(%target, error = %err, "the tunnel's target refused a connection");
                    reply.reject(ChannelOpenFailure::ConnectFailed).await;
                }
                Err(_) => {
                    tracing::warn!(%target, "the tunnel's target did not accept within 5 s");
                    reply.reject(ChannelOpenFailure::ConnectFailed).await;
                }
            }
        });
        Ok(())
    }
}

/// A logged-in session holding its forward.
pub(super) struct Session {
    pub(super) handle: Handle<Client>,
    /// The port the relay bound for us.
    pub(super) port: u16,
    pub(super) fingerprint: String,
    pub(super) trust: Trust,
}

/// The client's settings: keepalives so a dead or hung relay is noticed within ~20 s, and
/// AES-GCM first (about 1.5× chacha20-poly1305's throughput where the CPU has AES
/// instructions, as nearly every miner's has).
fn ssh_config(config: &Config) -> Arc<client::Config> {
    let mut preferred = russh::Preferred::default();
    let mut ciphers = vec![cipher::AES_256_GCM, cipher::AES_128_GCM];
    ciphers.extend(
        preferred
            .cipher
            .iter()
            .filter(|c| !ciphers.contains(c))
            .copied()
            .collect::<Vec<_>>(),
    );
    preferred.cipher = ciphers.into();
    Arc::new(client::Config {
        keepalive_interval: Some(config.keepalive_interval),
        keepalive_max: config.keepalive_max,
        inactivity_timeout: None,
        nodelay: true,
        preferred,
        window_size: crate::splice::CHANNEL_WINDOW,
        ..Default::default()
    })
}

/// Opens a session and its forward.
pub(super) async fn open(config: &Config) -> Result<Session, SessionError> {
    let seen = Arc::new(Mutex::new(None));
    let handler = Client {
        host: config.relay.host.clone(),
        port: config.relay.port,
        pinned: config.pinned_host_key.clone(),
        known_hosts: config.known_hosts(),
        target: config.target.as_str().into(),
        seen: seen.clone(),
    };
    let socket = timed(
        "connecting to the relay",
        tokio::net::TcpStream::connect((config.relay.host.as_str(), config.relay.port)),
    )
    .await?
    .map_err(|e| SessionError::Refused(format!("cannot connect to the relay: {e}")))?;
    let mut handle = timed(
        "the SSH handshake",
        client::connect_stream(ssh_config(config), socket, handler),
    )
    .await?
    .map_err(|e| match e {
        SessionError::Ssh(e) => SessionError::Refused(format!("the SSH handshake failed: {e}")),
        other => other,
    })?;
    let (fingerprint, trust) = seen
        .lock()
        .ok()
        .and_then(|s| s.clone())
        .ok_or_else(|| SessionError::Refused("the relay showed no host key".to_owned()))?;
    timed("logging in", login(&mut handle, config))
        .await?
        .map_err(|e| match e {
            SessionError::Ssh(e) => SessionError::Refused(format!("logging in failed: {e}")),
            other => other,
        })?;
    let port = timed(
        "asking for the reverse forward",
        handle.tcpip_forward(config.bind_address(), u32::from(config.remote_port)),
    )
    .await?
    .map_err(|e| match e {
        russh::Error::RequestDenied => SessionError::Refused(format!(
            "the relay refused to forward port {} (busy, outside its range, or forwarding not allowed)",
            config.remote_port
        )),
        other => other.into(),
    })?;
    // Port 0 asks the relay to choose and it answers with the port; a fixed port is answered 0.
    let port = match u16::try_from(port) {
        Ok(0) => config.remote_port,
        Ok(port) => port,
        Err(_) => {
            return Err(SessionError::Refused(format!(
                "the relay answered an impossible port {port}"
            )));
        }
    };
    Ok(Session {
        handle,
        port,
        fingerprint,
        trust,
    })
}

/// The agent's key first; the password only if the relay will not take the key.
async fn login(handle: &mut Handle<Client>, config: &Config) -> Result<(), SessionError> {
    let user = config.relay.user.as_str();
    let mut refused_key = None;
    match russh::keys::load_secret_key(&config.key_path, None) {
        Ok(key) => {
            let hash = handle.best_supported_rsa_hash().await?.flatten();
            let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
            match handle.authenticate_publickey(user, key).await? {
                AuthResult::Success => return Ok(()),
                AuthResult::Failure { .. } => {
                    refused_key = Some("the relay refused the agent's key")
                }
            }
        }
        Err(err) => {
            tracing::warn!(key = %config.key_path.display(), error = %err, "cannot read the agent's SSH key");
        }
    }
    if let Some(password) = &config.password {
        match handle
            .authenticate_password(user, password.expose())
            .await?
        {
            AuthResult::Success => return Ok(()),
            AuthResult::Failure { .. } => {
                return Err(SessionError::Refused(format!(
                    "the relay refused {user}'s key and password (SSH_PASSWORD)"
                )));
            }
        }
    }
    Err(SessionError::Refused(format!(
        "{} for {user}; add {}.pub to the relay's authorized_keys, or set SSH_PASSWORD",
        refused_key.unwrap_or("the agent has no usable key"),
        config.key_path.display()
    )))
}

async fn timed<T>(
    what: &'static str,
    work: impl std::future::Future<Output = T>,
) -> Result<T, SessionError> {
    tokio::time::timeout(STEP_TIMEOUT, work)
        .await
        .map_err(|_| SessionError::Timeout { what })
}

/// What a probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Probe {
    /// The connection went to our own port on the relay and came back through the forward.
    Through,
    /// The relay refused the probe's channel (`AllowTcpForwarding remote` forbids it): the
    /// session loop answered, which is all this relay lets us check.
    Refused,
}

/// Opens a connection to our own port on the relay through the session, which the relay must
/// send back to us as a forwarded connection: proof that the listener exists and that the
/// session carries channels both ways (keepalives alone miss a session loop that is wedged
/// while its socket is fine).
pub(super) async fn probe(session: &Session) -> Result<Probe, String> {
    let opened = tokio::time::timeout(
        STEP_TIMEOUT,
        session.handle.channel_open_direct_tcpip(
            "127.0.0.1",
            u32::from(session.port),
            "127.0.0.1",
            0,
        ),
    )
    .await
    .map_err(|_| "the probe through the tunnel got no answer within 10 s".to_owned())?;
    match opened {
        Ok(channel) => {
            let _ = channel.close().await;
            Ok(Probe::Through)
        }
        Err(russh::Error::ChannelOpenFailure(_)) => Ok(Probe::Refused),
        Err(err) => Err(format!("the probe through the tunnel failed: {err}")),
    }
}
