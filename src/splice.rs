//! Joins an SSH channel and a TCP socket, bytes both ways, for the tunnel keeper (a relay's
//! forwarded connection to the local SSH server) and the built-in relay (a renter's connection
//! to a miner's channel).
//!
//! Why it is shaped like this: russh hands a channel's data to a bounded queue inside its session
//! loop. If that queue fills (a slow socket on our side) the loop waits on it, and with it every
//! other channel, the keepalives and the global requests: under a saturating two-way transfer the
//! whole session wedges. So the channel's read half is drained at once into an unbounded queue,
//! and a second future writes that queue to the socket. The queue is unbounded for the loop, not
//! for memory: a connection whose socket falls more than [`MAX_QUEUED`] behind is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use russh::{Channel, ChannelId, ChannelMsg};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The SSH window each channel is granted, on both ends (keeper and built-in relay); russh's
/// default is 2 MiB.
///
/// Why larger: while a key re-exchange that our side started is under way (russh re-keys every
/// 1 GiB each way), russh ends the session ("Pending buffer limit reached") once the peer's
/// channel data still arriving passes 2 × this window. Under two-way saturation that data is
/// what sits in the TCP queues ahead of our KEXINIT, often past 4 MiB: a busy tunnel was dropped
/// at a re-key (the saturating-transfer test saw it 9 and 28 s in). At 16 MiB the bound (32 MiB)
/// is above what loopback and ordinary links hold in flight. The splice's own cap
/// ([`MAX_QUEUED`]) still bounds what one connection may buffer.
pub(crate) const CHANNEL_WINDOW: u32 = 16 << 20;

/// Bytes one connection may have waiting for its socket before it is given up.
const MAX_QUEUED: usize = 64 << 20;
/// Read size from the socket; russh cuts it into packets of the channel's size.
const CHUNK: usize = 64 << 10;

/// Copies until both directions have ended (or either side is gone), then closes the channel.
pub(crate) async fn splice<S>(channel: Channel<S>, socket: TcpStream)
where
    S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
{
    let _ = socket.set_nodelay(true);
    let (mut from_ssh, to_ssh) = channel.split();
    let (mut tcp_read, mut tcp_write) = socket.into_split();
    let (queue, mut queued) = mpsc::unbounded_channel::<Vec<u8>>();
    let backlog = Arc::new(AtomicUsize::new(0));
    // Set when the channel is closed or overflowing: the socket-to-channel side stops too, so a
    // peer that ignores our end-of-file cannot keep the connection (and this task) alive.
    let closed = CancellationToken::new();

    let drain = {
        let (backlog, closed) = (backlog.clone(), closed.clone());
        async move {
            while let Some(msg) = from_ssh.wait().await {
                match msg {
                    ChannelMsg::Data { data } => {
                        let waiting = backlog.fetch_add(data.len(), Ordering::Relaxed);
                        if waiting + data.len() > MAX_QUEUED {
                            tracing::warn!("a tunnelled connection fell 64 MB behind: dropped");
                            closed.cancel();
                            return;
                        }
                        if queue.send(data.to_vec()).is_err() {
                            return;
                        }
                    }
                    ChannelMsg::Eof => return,
                    ChannelMsg::Close => {
                        closed.cancel();
                        return;
                    }
                    _ => {}
                }
            }
            closed.cancel();
        }
    };
    let to_socket = {
        let (backlog, closed) = (backlog, closed.clone());
        async move {
            loop {
                let data = tokio::select! {
                    data = queued.recv() => data,
                    () = closed.cancelled() => None,
                };
                let Some(data) = data else { break };
                backlog.fetch_sub(data.len(), Ordering::Relaxed);
                if tcp_write.write_all(&data).await.is_err() {
                    break;
                }
            }
            let _ = tcp_write.shutdown().await;
        }
    };
    let from_socket = async {
        let mut buffer = vec![0; CHUNK];
        loop {
            let read = tokio::select! {
                read = tcp_read.read(&mut buffer) => read,
                () = closed.cancelled() => break,
            };
            match read {
                Ok(0) | Err(_) => {
                    let _ = to_ssh.eof().await;
                    break;
                }
                Ok(n) => {
                    if to_ssh.data(&buffer[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    tokio::join!(drain, to_socket, from_socket);
    let _ = to_ssh.close().await;
}
