//! A miner's port on the relay: every connection to it becomes a forwarded-tcpip channel to the
//! miner's tunnel, spliced both ways. Stops (and drops its connections) when the forward does.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Connections one port carries at once; more are closed at once. A renter needs a handful; a
/// flood through one miner's port must not take the relay's memory.
pub(super) const MAX_CONNECTIONS_PER_PORT: usize = 256;

/// Binds `addr`. SO_REUSEADDR, so a port left in TIME_WAIT by the miner's previous session can be
/// taken again at once (as OpenSSH does).
pub(super) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Where a local connection to a port bound on `bind_ip` goes: the wildcard means loopback.
pub(super) fn reachable(bind_ip: IpAddr) -> IpAddr {
    match bind_ip {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    }
}

/// Accepts until `stop`, handing each connection to the miner over `session`. `requested` is
/// the address the client asked to listen on: the channels name it back, because OpenSSH's
/// client finds the forward a channel belongs to by that name and port.
pub(super) async fn serve(
    listener: TcpListener,
    requested: String,
    session: russh::server::Handle,
    miner: Arc<str>,
    stop: CancellationToken,
) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS_PER_PORT));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        let (socket, from) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // EMFILE and the like: wait a little instead of spinning.
                tracing::warn!(%port, error = %err, "relay port cannot accept");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(miner_id = %miner, %port, "relay port full ({MAX_CONNECTIONS_PER_PORT} connections): one refused");
            continue;
        };
        let (session, stop, requested) = (session.clone(), stop.clone(), requested.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let opened = session.channel_open_forwarded_tcpip(
                requested,
                u32::from(port),
                from.ip().to_string(),
                u32::from(from.port()),
            );
            let channel = tokio::select! {
                opened = opened => opened,
                () = stop.cancelled() => return,
            };
            match channel {
                Ok(channel) => {
                    tokio::select! {
                        () = crate::splice::splice(channel, socket) => {}
                        () = stop.cancelled() => {}
                    }
                }
                Err(err) => {
                    tracing::debug!(%port, error = %err, "the miner refused a forwarded connection");
                }
            }
        });
    }
}
