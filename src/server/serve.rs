//! The HTTP accept loop: hyper's HTTP/1.1 connections, with the limits `axum::serve` does not set,
//! so slow or idle clients cannot hold connections (and file descriptors) forever.
//!
//! - **Header timeout**: a request's head (request line and headers) must be complete within
//!   [`HEADER_TIMEOUT`] of its first byte; a new connection's first request, within
//!   [`HEADER_TIMEOUT`] of the connection opening.
//! - **Idle timeout**: a kept-alive connection may wait [`IDLE_TIMEOUT`] for its next request.
//! - **Write timeout**: a response the client takes nothing of for [`WRITE_TIMEOUT`] ends the
//!   connection.
//! - **Connection cap**: at most [`Limits::connections`] connections are open at once. At the cap
//!   the loop stops accepting (new clients wait in the kernel's listen queue, to be served as soon
//!   as a connection closes, rather than be refused) and closes the kept-alive connections that
//!   are idle, to make room.
//! - Accept errors (out of file descriptors) are logged and retried after a short back-off.
//!
//! The request body and the handler have their own limit, `guards::REQUEST_TIMEOUT` (408).
//!
//! hyper has one timer for a connection's head: [`http1::Builder::header_read_timeout`], which
//! runs from the moment hyper waits for a head (the connection opening, or the previous response
//! done), so on its own it makes the idle timeout as short as the header timeout. Agents beat
//! every 10 s on one kept-alive connection, so that would close it just as it is reused. So
//! hyper's timeout is set to [`IDLE_TIMEOUT`] and the timer given to hyper ([`SlowTimer`])
//! shortens it to [`HEADER_TIMEOUT`] once the head's first byte is read (the IO wrapper,
//! [`Watched`], sees each read).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use super::metrics::{Metrics, Slow};

/// Longest a client may take to send a request's head. Real clients send it in one packet; 10 s
/// covers a slow mobile link and cuts off a client that dribbles headers to hold a connection.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a kept-alive connection waits for its next request: well above the agents' default
/// heartbeat interval (10 s), so each agent keeps its one connection (an agent that beats less
/// often than this connects anew each time).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a response may wait for the client to take any of it (a client that never reads).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Most connections open at once. Each agent keeps one open, so this is about the fleet one
/// coordinator serves before it closes idle connections to make room. Lowered to half the
/// process's open-file limit (see [`connection_cap`]).
const MAX_CONNECTIONS: usize = 10_000;
/// How long open connections may take to finish once a stop is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Back-off after a failed accept (out of file descriptors, memory): doubles up to the maximum.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(5), Duration::from_secs(1));

/// The limits [`serve`] applies; [`Limits::standard`] in production, shorter ones in tests.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub header: Duration,
    pub idle: Duration,
    pub write: Duration,
    pub connections: usize,
    pub shutdown_grace: Duration,
}

impl Limits {
    pub(super) fn standard() -> Self {
        Self {
            header: HEADER_TIMEOUT,
            idle: IDLE_TIMEOUT,
            write: WRITE_TIMEOUT,
            connections: connection_cap(),
            shutdown_grace: SHUTDOWN_GRACE,
        }
    }
}

/// [`MAX_CONNECTIONS`], or half the soft open-file limit when that is lower: a flood of
/// connections must leave descriptors to the store, the logs and the relay (1024, a common
/// default, allows 512 connections; raise it with `ulimit -n` or systemd's `LimitNOFILE=`). The
/// limit is not raised here: the agent that hosts a coordinator passes it on to the miner it
/// starts.
fn connection_cap() -> usize {
    #[cfg(unix)]
    if let Some(soft) = rustix::process::getrlimit(rustix::process::Resource::Nofile).current {
        let half = usize::try_from(soft / 2).unwrap_or(usize::MAX);
        return MAX_CONNECTIONS.min(half).max(1);
    }
    MAX_CONNECTIONS
}

/// Serves `app` on `listener` until `stop` fires; then closes idle connections, lets the others
/// finish their request for at most `limits.shutdown_grace`, and closes what is left.
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    metrics: Arc<Metrics>,
    limits: Limits,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.connections));
    let shared = Arc::new(Shared {
        app,
        metrics,
        limits,
        shed: Notify::new(),
        stop: stop.clone(),
        force: CancellationToken::new(),
    });
    let tracker = TaskTracker::new();
    let mut backoff = ACCEPT_BACKOFF.0;
    let mut warned_full: Option<Instant> = None;
    tracing::debug!(cap = limits.connections, "HTTP connection cap");
    loop {
        let Some(slot) = take_slot(&slots, &shared, &mut warned_full).await else {
            break;
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = ACCEPT_BACKOFF.0;
                tracker.spawn(connection(stream, peer, slot, Arc::clone(&shared)));
            }
            // The client gave up between its connect and the accept: nothing to wait for.
            Err(err) if is_connection_error(&err) => {}
            Err(err) => {
                tracing::warn!(error = %err, "cannot accept HTTP connections; retrying in {backoff:?}");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.cancelled() => break,
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
            }
        }
    }
    // New connections are refused from here on.
    drop(listener);
    tracker.close();
    if tokio::time::timeout(limits.shutdown_grace, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "connections still open after {:?}; closing them",
            limits.shutdown_grace
        );
        shared.force.cancel();
        tracker.wait().await;
    }
}

/// What every connection task shares.
struct Shared {
    app: Router,
    metrics: Arc<Metrics>,
    limits: Limits,
    /// Notified at the cap: idle kept-alive connections close to make room.
    shed: Notify,
    stop: CancellationToken,
    /// Fired when the shutdown grace is over: every connection closes at once.
    force: CancellationToken,
}

/// A connection slot; at the cap, waits for one (asking idle connections to close, at most once
/// a second). None once `stop` fires.
async fn take_slot(
    slots: &Arc<Semaphore>,
    shared: &Shared,
    warned: &mut Option<Instant>,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(slot) = Arc::clone(slots).try_acquire_owned() {
        return Some(slot);
    }
    shared.metrics.connection_cap_reached();
    if warned.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
        *warned = Some(Instant::now());
        tracing::warn!(
            cap = shared.limits.connections,
            "every HTTP connection slot is taken: new connections wait, idle ones are closed"
        );
    }
    loop {
        shared.shed.notify_waiters();
        tokio::select! {
            slot = Arc::clone(slots).acquire_owned() => return slot.ok(),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = shared.stop.cancelled() => return None,
        }
    }
}

/// Errors of one connection, not of the listener (as hyper's and axum's accept loops tell them).
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves one connection until it ends, is shed, or the shutdown closes it.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    _slot: OwnedSemaphorePermit,
    shared: Arc<Shared>,
) {
    let _open = shared.metrics.connection_opened();
    let watch = Arc::new(Watch::new(shared.limits));
    let io = TokioIo::new(Watched {
        inner: stream,
        watch: Arc::clone(&watch),
        write_stall: None,
    });
    let app = shared.app.clone();
    // Handlers read the peer's address (the registration limit, /whoami) as axum::serve gives it.
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(request)
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(SlowTimer(Arc::clone(&watch)))
        .header_read_timeout(shared.limits.idle);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = false;
    let result = loop {
        tokio::select! {
            result = conn.as_mut() => break result,
            () = shared.shed.notified(), if !stopping => {
                if watch.lock().idle() {
                    shared.metrics.connection_shed();
                    break Ok(());
                }
            }
            () = shared.stop.cancelled(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            () = shared.force.cancelled() => break Ok(()),
        }
    };
    if let Some(reason) = watch.lock().timed_out {
        shared.metrics.connection_timed_out(reason);
        tracing::debug!(%peer, ?reason, "closed a slow HTTP connection");
    } else if let Err(err) = result {
        tracing::debug!(%peer, error = %err, "HTTP connection failed");
    }
}

/// What one connection's timer and IO wrapper know of it.
#[derive(Debug)]
struct Watch {
    limits: Limits,
    state: Mutex<WatchState>,
}

#[derive(Debug, Default)]
struct WatchState {
    /// Heads hyper has waited for on this connection, the current one included.
    heads: u64,
    /// hyper is waiting for head number `heads` (its timer is alive).
    waiting: bool,
    /// When the first byte read since hyper started waiting for the current head came.
    first_byte: Option<Instant>,
    /// Why the connection was closed, when it was for being slow.
    timed_out: Option<Slow>,
}

impl WatchState {
    /// A kept-alive connection waiting for its next request, of which nothing has come.
    fn idle(&self) -> bool {
        self.waiting && self.heads > 1 && self.first_byte.is_none()
    }
}

impl Watch {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: Mutex::new(WatchState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, WatchState> {
        // The state stays consistent whatever panicked while holding it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The timer hyper's header timeout runs on (see the module's comment).
struct SlowTimer(Arc<Watch>);

impl hyper::rt::Timer for SlowTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(std::time::Instant::now() + duration)
    }

    /// hyper starts waiting for a head: `deadline` is [`Limits::idle`] away.
    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let now = Instant::now();
        // tokio's clock, which tests can pause, from hyper's std one.
        let mut deadline = now + deadline.saturating_duration_since(std::time::Instant::now());
        let head = {
            let mut state = self.0.lock();
            state.heads += 1;
            state.waiting = true;
            state.first_byte = None;
            state.heads
        };
        if head == 1 {
            deadline = deadline.min(now + self.0.limits.header);
        }
        Box::pin(SlowSleep {
            watch: Arc::clone(&self.0),
            head,
            deadline,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
        })
    }
}

/// hyper's header timeout: `deadline`, or [`Limits::header`] after the head's first byte if
/// that is sooner.
struct SlowSleep {
    watch: Arc<Watch>,
    head: u64,
    deadline: Instant,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Future for SlowSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let first_byte = this.watch.lock().first_byte;
        let deadline = match first_byte {
            Some(at) => this.deadline.min(at + this.watch.limits.header),
            None => this.deadline,
        };
        if this.sleep.deadline() != deadline {
            this.sleep.as_mut().reset(deadline);
        }
        ready!(this.sleep.as_mut().poll(cx));
        let mut state = this.watch.lock();
        state.timed_out = Some(if this.head == 1 || state.first_byte.is_some() {
            Slow::Header
        } else {
            Slow::Idle
        });
        Poll::Ready(())
    }
}

impl hyper::rt::Sleep for SlowSleep {}

impl Drop for SlowSleep {
    /// hyper drops its timer once the head is read (or the connection ends).
    fn drop(&mut self) {
        let mut state = self.watch.lock();
        if state.heads == self.head {
            state.waiting = false;
        }
    }
}

/// The TCP stream, telling [`Watch`] when bytes come in, and failing a write that has made no
/// progress for [`Limits::write`].
struct Watched {
    inner: TcpStream,
    watch: Arc<Watch>,
    write_stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Watched {
    /// A write is pending: Pending until [`Limits::write`] has passed without progress, then an
    /// error (which ends the connection).
    fn stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let limit = self.watch.limits.write;
        let stall = self
            .write_stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(stall.as_mut().poll(cx));
        self.watch.lock().timed_out = Some(Slow::Write);
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client took none of the response",
        )))
    }

    fn wrote<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Pending => self.stalled(cx),
            ready => {
                self.write_stall = None;
                ready
            }
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let mut state = this.watch.lock();
            if state.first_byte.is_none() {
                state.first_byte = Some(Instant::now());
            }
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// Short limits, so each case takes a second or two; `connections` as given. The idle
    /// timeout is far from the header timeout, so that one taken for the other fails a test.
    fn limits(connections: usize) -> Limits {
        Limits {
            header: Duration::from_millis(500),
            idle: Duration::from_secs(10),
            write: Duration::from_secs(1),
            connections,
            shutdown_grace: Duration::from_secs(1),
        }
    }

    struct Running {
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    /// [`serve`] on a loopback port: `/` answers the peer address it was given, `/big` 64 MiB
    /// (more than the socket buffers hold).
    async fn start(limits: Limits) -> Result<Running, Box<dyn std::error::Error>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route(
                "/",
                get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
            )
            .route("/big", get(|| async { vec![b'x'; 64 << 20] }));
        let metrics = Arc::new(Metrics::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(
            listener,
            app,
            Arc::clone(&metrics),
            limits,
            stop.clone(),
        ));
        Ok(Running {
            addr,
            metrics,
            stop,
            task,
        })
    }

    /// One GET on `stream`; the answer's body.
    async fn exchange(
        stream: &mut TcpStream,
        path: &str,
    ) -> Result<String, Box<dyn std::error::Error>> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: polaris\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await??;
            if n == 0 {
                return Err("closed before the answer".into());
            }
            data.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&data);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .to_lowercase()
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or("no content-length")?;
                if body.len() >= length {
                    return Ok(body.to_owned());
                }
            }
        }
    }

    /// Reads until the server closes `stream`; how long that took from `since`.
    async fn closed(
        stream: &mut TcpStream,
        since: Instant,
    ) -> Result<Duration, Box<dyn std::error::Error>> {
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await? {
                Ok(0) | Err(_) => return Ok(since.elapsed()),
                Ok(_) => {}
            }
        }
    }

    /// `took` is `limit`, give or take what a busy machine adds.
    fn about(took: Duration, limit: Duration) -> bool {
        took + Duration::from_millis(50) >= limit && took < limit + Duration::from_secs(3)
    }

    #[tokio::test]
    async fn a_new_connection_that_sends_nothing_is_closed_at_the_header_timeout() -> TestResult {
        let server = start(limits(10)).await?;
        let mut stream = TcpStream::connect(server.addr).await?;
        let took = closed(&mut stream, Instant::now()).await?;
        assert!(about(took, limits(10).header), "closed after {took:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(server.metrics.http_connections(), (0, [1, 0, 0], 0, 0));
        Ok(())
    }

    #[tokio::test]
    async fn a_kept_alive_connection_outlives_the_header_timeout_then_closes_when_idle()
    -> TestResult {
        let limits = Limits {
            idle: Duration::from_millis(1500),
            ..limits(10)
        };
        let server = start(limits).await?;
        let mut stream = TcpStream::connect(server.addr).await?;
        // The handler got the peer's address, as with axum::serve.
        let me = stream.local_addr()?.to_string();
        assert_eq!(exchange(&mut stream, "/").await?, me);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(exchange(&mut stream, "/").await?, me);
        assert_eq!(server.metrics.http_connections().0, 1);
        let took = closed(&mut stream, Instant::now()).await?;
        assert!(about(took, limits.idle), "closed after {took:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(server.metrics.http_connections(), (0, [0, 1, 0], 0, 0));
        Ok(())
    }

    #[tokio::test]
    async fn a_dribbled_head_is_closed_at_the_header_timeout_from_its_first_byte() -> TestResult {
        let server = start(limits(10)).await?;
        let mut stream = TcpStream::connect(server.addr).await?;
        exchange(&mut stream, "/").await?;
        tokio::time::sleep(Duration::from_millis(700)).await;
        let first_byte = Instant::now();
        stream.write_all(b"GET / HTTP/1.1\r\n").await?;
        let dribble = async {
            for n in 0.. {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let line = format!("X-Slow-{n}: still typing\r\n");
                if stream.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), dribble).await;
        let took = closed(&mut stream, first_byte).await?;
        assert!(about(took, limits(10).header), "closed after {took:?}");
        assert_eq!(server.metrics.http_connections(), (0, [1, 0, 0], 0, 0));
        Ok(())
    }

    #[tokio::test]
    async fn a_response_the_client_never_reads_ends_at_the_write_timeout() -> TestResult {
        let server = start(limits(10)).await?;
        let mut stream = TcpStream::connect(server.addr).await?;
        let asked = Instant::now();
        stream
            .write_all(b"GET /big HTTP/1.1\r\nHost: polaris\r\n\r\n")
            .await?;
        let mut took = None;
        while asked.elapsed() < Duration::from_secs(5) {
            if server.metrics.http_connections() == (0, [0, 0, 1], 0, 0) {
                took = Some(asked.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = took.ok_or_else(|| format!("{:?}", server.metrics.http_connections()))?;
        assert!(about(took, limits(10).write), "closed after {took:?}");
        Ok(())
    }

    #[tokio::test]
    async fn at_the_cap_idle_connections_make_room_and_busy_ones_stay() -> TestResult {
        let limits = Limits {
            header: Duration::from_secs(30),
            idle: Duration::from_secs(30),
            ..limits(3)
        };
        let server = start(limits).await?;
        // One connection in the middle of its head, two idle after a request: every slot taken.
        let mut busy = TcpStream::connect(server.addr).await?;
        busy.write_all(b"GET / HTTP/1.1\r\n").await?;
        let mut idle = Vec::new();
        for _ in 0..2 {
            let mut stream = TcpStream::connect(server.addr).await?;
            exchange(&mut stream, "/").await?;
            idle.push(stream);
        }
        // A fourth waits in the listen queue until the idle ones are closed for it.
        let started = Instant::now();
        let mut fourth = TcpStream::connect(server.addr).await?;
        let me = fourth.local_addr()?.to_string();
        assert_eq!(exchange(&mut fourth, "/").await?, me);
        assert!(started.elapsed() < Duration::from_secs(4));
        for stream in &mut idle {
            closed(stream, started).await?;
        }
        // The busy one was left alone and finishes its request.
        busy.write_all(b"Host: polaris\r\n\r\n").await?;
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), busy.read(&mut buf)).await??;
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
        let (open, timed_out, shed, cap_reached) = server.metrics.http_connections();
        assert_eq!((open, timed_out, shed), (2, [0, 0, 0], 2));
        assert!(cap_reached >= 1);
        Ok(())
    }

    #[tokio::test]
    async fn a_stop_closes_idle_connections_at_once_and_the_rest_after_the_grace() -> TestResult {
        let limits = Limits {
            header: Duration::from_secs(30),
            idle: Duration::from_secs(30),
            ..limits(10)
        };
        let server = start(limits).await?;
        let mut idle = TcpStream::connect(server.addr).await?;
        exchange(&mut idle, "/").await?;
        let mut busy = TcpStream::connect(server.addr).await?;
        busy.write_all(b"GET / HTTP/1.1\r\n").await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stopped = Instant::now();
        server.stop.cancel();
        let took = closed(&mut idle, stopped).await?;
        assert!(
            took < Duration::from_millis(500),
            "idle closed after {took:?}"
        );
        let took = closed(&mut busy, stopped).await?;
        assert!(
            about(took, limits.shutdown_grace),
            "busy closed after {took:?}"
        );
        tokio::time::timeout(Duration::from_secs(1), server.task).await??;
        assert!(TcpStream::connect(server.addr).await.is_err());
        assert_eq!(server.metrics.http_connections().0, 0);
        Ok(())
    }
}
