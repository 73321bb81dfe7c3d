//! One SSH connection to the built-in relay: a miner's tunnel logging in with its key, asking for
//! one reverse forward, and (the keeper's probe) opening a connection to its own port. Every
//! other request is refused: no password, no shell, exec or subsystem (no session channel is
//! ever opened), no local forward elsewhere, no agent, X11 or Unix-socket forwarding.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelOpenFailure, MethodKind, MethodSet};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::book::{Claim, PortRefusal, SessionId};
use super::forward;

pub(super) struct Connection {
    shared: Arc<Shared>,
    peer: SocketAddr,
    connected_at: chrono::DateTime<chrono::Utc>,
    /// Set once a miner's key logged in.
    login: Option<Login>,
    /// Cancelled when this connection ends (the relay stops, or the session is dropped).
    ended: CancellationToken,
    /// Cancelled once a miner has logged in (a flag the connection's task can read).
    logged_in: CancellationToken,
}

struct Login {
    miner: Arc<str>,
    id: SessionId,
    /// The port this session forwards, once granted.
    port: Option<u16>,
}

impl Connection {
    pub(super) fn new(shared: Arc<Shared>, peer: SocketAddr, ended: CancellationToken) -> Self {
        Self {
            shared,
            peer,
            connected_at: chrono::Utc::now(),
            login: None,
            ended,
            logged_in: CancellationToken::new(),
        }
    }

    /// Cancelled once a miner has logged in on this connection.
    pub(super) fn logged_in_token(&self) -> CancellationToken {
        self.logged_in.clone()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.ended.cancel();
        if let Some(login) = &self.login {
            self.shared.book.release(&login.miner, login.id);
            tracing::info!(miner_id = %login.miner, peer = %self.peer, "relay session ended");
        }
    }
}

/// Only public keys are offered, so clients do not ask for passwords.
pub(super) fn methods() -> MethodSet {
    MethodSet::from(&[MethodKind::PublicKey][..])
}

fn reject() -> Auth {
    Auth::Reject {
        proceed_with_methods: Some(methods()),
        partial_success: false,
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.shared.keys.miner(offer.public_key).is_some() {
            Auth::Accept
        } else {
            reject()
        })
    }

    /// The user name is not checked: the key alone says which miner this is.
    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let Some(miner) = self.shared.keys.miner(key.public_key) else {
            tracing::info!(peer = %self.peer, "relay login refused: not a registered miner's key");
            return Ok(reject());
        };
        self.login = Some(Login {
            miner,
            id: 0,
            port: None,
        });
        Ok(Auth::Accept)
    }

    async fn auth_succeeded(&mut self, _session: &mut Session) -> Result<(), Self::Error> {
        let Some(login) = &mut self.login else {
            return Ok(());
        };
        login.id = self.shared.book.new_session();
        self.logged_in.cancel();
        tracing::info!(miner_id = %login.miner, peer = %self.peer, "relay session opened");
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let Some(login) = &mut self.login else {
            return Ok(false);
        };
        let Ok(requested) = u16::try_from(*port) else {
            return Ok(false);
        };
        // The requested address is not where the port opens: ports open where the operator
        // said (POLARIS_RELAY_LISTEN's address), whatever the client asks for.
        for candidate in self.shared.book.candidates(&login.miner, requested) {
            let stop = self.ended.child_token();
            let claim = Claim {
                id: login.id,
                peer: self.peer,
                connected_at: self.connected_at,
                handle: session.handle(),
            };
            let reserved = match self.shared.book.reserve(
                &login.miner,
                claim,
                candidate,
                stop.clone(),
            ) {
                Ok(reserved) => reserved,
                Err(PortRefusal::TakenByAnother) if requested == 0 => continue,
                Err(refusal) => {
                    tracing::info!(miner_id = %login.miner, port = candidate, "relay forward refused: {refusal}");
                    return Ok(false);
                }
            };
            if let Some(old) = reserved.replaced {
                tracing::info!(miner_id = %login.miner, "a newer session takes over the miner's relay port");
                tokio::spawn(async move {
                    let _ = old
                        .disconnect(
                            russh::Disconnect::ByApplication,
                            "replaced by a newer session of the same miner".to_owned(),
                            String::new(),
                        )
                        .await;
                });
            }
            // The replaced session's listener closes as soon as its task sees the stop: give it
            // a moment rather than hand the miner another port.
            let tries = if reserved.was_ours { 40 } else { 1 };
            match bind_within(SocketAddr::new(self.shared.bind_ip, candidate), tries).await {
                Ok(listener) => {
                    tokio::spawn(forward::serve(
                        listener,
                        address.to_owned(),
                        session.handle(),
                        login.miner.clone(),
                        stop,
                    ));
                    login.port = Some(candidate);
                    if requested == 0 {
                        *port = u32::from(candidate);
                    }
                    tracing::info!(miner_id = %login.miner, port = candidate, "relay port open");
                    return Ok(true);
                }
                Err(err) => {
                    self.shared.book.release(&login.miner, login.id);
                    tracing::debug!(port = candidate, error = %err, "relay port not bindable");
                    if requested != 0 {
                        return Ok(false);
                    }
                }
            }
        }
        tracing::warn!(miner_id = %login.miner, "every relay port is taken (POLARIS_RELAY_PORTS)");
        Ok(false)
    }

    async fn cancel_tcpip_forward(
        &mut self,
        _address: &str,
        port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let Some(login) = &mut self.login else {
            return Ok(false);
        };
        if login.port.map(u32::from) != Some(port) {
            return Ok(false);
        }
        self.shared.book.release(&login.miner, login.id);
        login.port = None;
        Ok(true)
    }

    /// Only the keeper's probe: a connection to the session's own port on this relay, which
    /// comes back to the miner through its forward.
    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let own = self
            .login
            .as_ref()
            .and_then(|l| l.port)
            .filter(|&port| u32::from(port) == port_to_connect && is_loopback(host_to_connect));
        let Some(port) = own else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        let target = SocketAddr::new(forward::reachable(self.shared.bind_ip), port);
        tokio::spawn(async move {
            match TcpStream::connect(target).await {
                Ok(socket) => {
                    reply.accept().await;
                    crate::splice::splice(channel, socket).await;
                }
                Err(_) => reply.reject(ChannelOpenFailure::ConnectFailed).await,
            }
        });
        Ok(())
    }
}

/// Binds `addr`, trying `tries` times 25 ms apart.
async fn bind_within(addr: SocketAddr, tries: u32) -> std::io::Result<tokio::net::TcpListener> {
    let mut last = None;
    for attempt in 0..tries.max(1) {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        match forward::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no bind attempted")))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}
