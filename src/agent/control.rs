//! The control socket (`POLARIS_HOME/polaris.sock`): the CLI and the dashboard ask the running
//! agent for its state, subscribe to its changes, stream its logs and tell it to stop, or to
//! start, stop and restart compute_subnet. JSON lines each way: one request line, then one
//! answer line, or (for `Watch` and `Logs`) a stream of them until either side hangs up.
//!
//! Every reader here bounds the length of a line, so neither side can make the other hold an
//! unbounded amount of memory; a client that gets something it cannot parse says so with a
//! typed [`ControlError::Protocol`] instead of guessing.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, BufReader};

use super::log_files::Process;
use super::{heartbeat, supervisor, tunnel};

/// The version of this conversation; `Watch` carries the client's, `Hello` the agent's. Bump it
/// when a change would make an older peer misread the lines (the snapshot tests of
/// `agent::contracts` fail on any change of their shape, the state structs' included). 2: the
/// heartbeat's `last_error` is an object (`{kind, status, message}`), no longer a string.
pub const PROTOCOL: u32 = 2;

/// How long a one-shot exchange, or a subscription's handshake, may take.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Longest JSON line either side reads: far above any answer (a streamed log line is cut at
/// 64 KiB), far below what would hurt.
const MAX_JSON_LINE: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    Stop,
    RestartCompute,
    /// Start compute_subnet after a `StopCompute` (a no-op while it runs).
    StartCompute,
    /// Stop compute_subnet and keep it stopped (no restarts) until `StartCompute`.
    StopCompute,
    /// `Hello`, the current snapshot, then one snapshot per change until the client hangs up.
    Watch {
        protocol: u32,
    },
    /// The last `lines` lines of a log, then (with `follow`) each new one as it is written.
    Logs {
        process: Process,
        stderr: bool,
        lines: usize,
        follow: bool,
    },
}

/// The agent's state as `polaris status` and the dashboard show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub agent_pid: u32,
    /// The agent's own version (CARGO_PKG_VERSION); empty from an agent older than the field.
    #[serde(default)]
    pub version: String,
    pub started_at: DateTime<Utc>,
    /// POLARIS_COMPUTE_CMD is set.
    pub compute_configured: bool,
    pub compute: Option<supervisor::State>,
    pub heartbeat: heartbeat::State,
    /// The coordinator this agent hosts (standalone set-up), if it does.
    pub coordinator: Option<String>,
    /// The SSH tunnel, when POLARIS_RELAY is set (absent from an agent older than the field).
    #[serde(default)]
    pub tunnel: Option<tunnel::State>,
    /// SSH access by key, when POLARIS_SSH_ACCESS=keys (absent from an agent older than the
    /// field, and when it is off).
    #[serde(default)]
    pub ssh_access: Option<SshAccess>,
}

/// The keys the coordinator's commands let in, in the managed block of `user`'s
/// `authorized_keys`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SshAccess {
    pub user: String,
    pub keys: Vec<crate::api::AuthorizedKey>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Response {
    Status(Box<Snapshot>),
    Done {
        message: String,
    },
    Refused {
        message: String,
    },
    /// One line of a log being streamed.
    Line {
        line: String,
    },
    /// The first answer to `Watch`: the agent's protocol and version, always sent (even when the
    /// protocols differ: the client decides what to do about it).
    Hello {
        protocol: u32,
        version: String,
    },
}

impl Response {
    /// A few words naming the answer, for errors (never its content).
    fn kind(&self) -> &'static str {
        match self {
            Self::Status(_) => "a status",
            Self::Done { .. } => "done",
            Self::Refused { .. } => "a refusal",
            Self::Line { .. } => "a log line",
            Self::Hello { .. } => "a hello",
        }
    }
}

/// What went wrong talking to the agent, typed so a face can say what to do.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the agent is not running (nothing answers on {})", socket.display())]
    NotRunning { socket: PathBuf },
    #[error("the agent did not answer within 3 s")]
    Timeout,
    #[error(
        "the agent answered something this polaris does not understand ({detail}); it may be another version: restart it with `polaris stop` and `polaris start`"
    )]
    Protocol { detail: String },
    /// The agent understood and said no (a log it cannot read, say).
    #[error("the agent refused: {message}")]
    Refused { message: String },
    #[error("cannot talk to the agent: {0}")]
    Io(#[from] std::io::Error),
}

pub fn socket_path(home: &Path) -> PathBuf {
    home.join("polaris.sock")
}

/// The client's end of a connection.
#[cfg(unix)]
type Conn = tokio::net::UnixStream;
/// Windows: no control channel yet; the type only keeps the client code compiling.
#[cfg(not(unix))]
type Conn = tokio::io::Empty;

/// Connects to the agent and sends `request`; no answer read yet.
#[cfg(unix)]
async fn connect(path: &Path, request: &Request) -> Result<BufReader<Conn>, ControlError> {
    use std::io::ErrorKind;
    use tokio::io::AsyncWriteExt;
    let not_running = || ControlError::NotRunning {
        socket: path.to_path_buf(),
    };
    let mut stream = match Conn::connect(path).await {
        Ok(stream) => stream,
        // No socket file, or one an agent that died left behind (nobody listens).
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::NotFound | ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(not_running());
        }
        Err(err) => return Err(err.into()),
    };
    stream.write_all(&json_line(request)?).await?;
    Ok(BufReader::new(stream))
}

#[cfg(not(unix))]
async fn connect(_path: &Path, _request: &Request) -> Result<BufReader<Conn>, ControlError> {
    Err(ControlError::Io(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "the agent's control channel is not built for Windows yet: run `polaris --daemon` instead",
    )))
}

// Used by the server, built for Unix only so far.
#[cfg_attr(not(unix), allow(dead_code))]
fn json_line(value: &impl Serialize) -> std::io::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(value)?;
    line.push(b'\n');
    Ok(line)
}

/// Reads one line of at most `max` bytes (newline excluded); None at the end of the stream.
/// A longer line is an error, not a bigger buffer.
async fn read_bounded_line(
    reader: &mut (impl AsyncBufRead + Unpin),
    max: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    // One byte more than allowed: a line of exactly `max` bytes still fits with its newline.
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(limit).read_until(b'\n', &mut line).await?;
    if line.is_empty() {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a line longer than {max} bytes"),
        ));
    }
    Ok(Some(line))
}

/// Reads one answer; None when the agent closed the connection.
async fn read_response(
    reader: &mut (impl AsyncBufRead + Unpin),
) -> Result<Option<Response>, ControlError> {
    let line = match read_bounded_line(reader, MAX_JSON_LINE).await {
        Ok(line) => line,
        Err(err) if err.kind() == std::io::ErrorKind::InvalidData => {
            return Err(ControlError::Protocol {
                detail: err.to_string(),
            });
        }
        Err(err) => return Err(err.into()),
    };
    let Some(line) = line else { return Ok(None) };
    serde_json::from_slice(&line)
        .map(Some)
        .map_err(|err| ControlError::Protocol {
            detail: format!("not one of our JSON answers: {err}"),
        })
}

async fn within_timeout<T>(
    work: impl std::future::Future<Output = Result<T, ControlError>>,
) -> Result<T, ControlError> {
    tokio::time::timeout(TIMEOUT, work)
        .await
        .map_err(|_| ControlError::Timeout)?
}

/// Asks the agent listening on `path` one question and reads its one answer (3 s at most).
pub async fn ask(path: &Path, request: Request) -> Result<Response, ControlError> {
    within_timeout(async {
        let mut reader = connect(path, &request).await?;
        read_response(&mut reader)
            .await?
            .ok_or_else(|| ControlError::Protocol {
                detail: "the connection closed without an answer".to_owned(),
            })
    })
    .await
}

/// The agent's snapshots as they change; dropping it hangs up, which the agent notices.
pub struct Subscription {
    reader: BufReader<Conn>,
}

impl Subscription {
    /// The next snapshot (the first comes at once); waits as long as nothing changes. None:
    /// the agent closed the stream (it is stopping).
    pub async fn next(&mut self) -> Result<Option<Snapshot>, ControlError> {
        match read_response(&mut self.reader).await? {
            None => Ok(None),
            Some(Response::Status(snapshot)) => Ok(Some(*snapshot)),
            Some(other) => Err(ControlError::Protocol {
                detail: format!("expected a status, got {}", other.kind()),
            }),
        }
    }
}

/// Subscribes to the agent's snapshots: sends `Watch`, checks the agent's `Hello` (within 3 s);
/// later reads wait as long as it takes.
pub async fn watch(path: &Path) -> Result<Subscription, ControlError> {
    within_timeout(async {
        let request = Request::Watch { protocol: PROTOCOL };
        let mut reader = connect(path, &request).await?;
        match read_response(&mut reader).await? {
            Some(Response::Hello { protocol, .. }) if protocol == PROTOCOL => {
                Ok(Subscription { reader })
            }
            Some(Response::Hello { protocol, version }) => Err(ControlError::Protocol {
                detail: format!(
                    "agent protocol {protocol} (polaris {version}), this polaris speaks {PROTOCOL}"
                ),
            }),
            // An agent from before `Watch` refuses the request it cannot parse.
            Some(Response::Refused { message }) => Err(ControlError::Protocol {
                detail: format!("it refused to be watched: {message}"),
            }),
            Some(other) => Err(ControlError::Protocol {
                detail: format!("expected a hello, got {}", other.kind()),
            }),
            None => Err(ControlError::Protocol {
                detail: "the connection closed without a hello".to_owned(),
            }),
        }
    })
    .await
}

/// A log's lines as the agent streams them; dropping it hangs up, which ends the stream.
pub struct LogStream {
    reader: BufReader<Conn>,
    done: bool,
}

impl LogStream {
    /// The next line, without its newline; None at the end (the whole tail was sent and not
    /// following, or the agent is stopping).
    pub async fn next(&mut self) -> Result<Option<String>, ControlError> {
        if self.done {
            return Ok(None);
        }
        let answer = read_response(&mut self.reader).await;
        match answer? {
            Some(Response::Line { line }) => Ok(Some(line)),
            Some(Response::Done { .. }) | None => {
                self.done = true;
                Ok(None)
            }
            Some(Response::Refused { message }) => {
                self.done = true;
                Err(ControlError::Refused { message })
            }
            Some(other) => Err(ControlError::Protocol {
                detail: format!("expected a log line, got {}", other.kind()),
            }),
        }
    }
}

/// Streams the last `lines` lines of a log, then (with `follow`) each new one. Connecting has
/// 3 s; the lines come when they come.
pub async fn stream_logs(
    path: &Path,
    process: Process,
    stderr: bool,
    lines: usize,
    follow: bool,
) -> Result<LogStream, ControlError> {
    let request = Request::Logs {
        process,
        stderr,
        lines,
        follow,
    };
    let reader = within_timeout(connect(path, &request)).await?;
    Ok(LogStream {
        reader,
        done: false,
    })
}

/// Longest log line streamed whole; the rest is cut and counted (a line the supervisor wrote is
/// at most 64 KiB already, but the files may hold anything).
#[cfg_attr(not(unix), allow(dead_code))]
const MAX_STREAMED_LINE: usize = 64 * 1024;

/// Cuts `line` to [`MAX_STREAMED_LINE`] bytes at a char boundary, saying how much went.
#[cfg_attr(not(unix), allow(dead_code))]
fn cap_line(mut line: String) -> String {
    if line.len() <= MAX_STREAMED_LINE {
        return line;
    }
    let mut cut = MAX_STREAMED_LINE;
    while !line.is_char_boundary(cut) {
        cut -= 1;
    }
    let dropped = line.len() - cut;
    line.truncate(cut);
    line.push_str(&format!(" … [{dropped} bytes cut]"));
    line
}

#[cfg(unix)]
pub use unix::serve;

#[cfg(unix)]
mod unix {
    use std::path::Path;

    use std::path::PathBuf;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::UnixListener;
    use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
    use tokio::sync::{mpsc, watch};
    use tokio_util::sync::CancellationToken;

    use crate::agent::log_files::{self, Stream};
    use crate::agent::tail;

    use super::{
        MAX_JSON_LINE, MAX_STREAMED_LINE, PROTOCOL, Request, Response, Snapshot, TIMEOUT, ask,
        cap_line, json_line, read_bounded_line,
    };

    /// Most log lines written with one `write_all`: a flood goes out in few large writes, while
    /// a quiet log's line still goes at once.
    const BATCH: usize = 512;

    /// Answers requests until `cancel`: `Status` and `Watch` from `snapshots`, `Logs` streamed
    /// from the files in `logs_dir`, everything else by `handle`. Removes the socket file at
    /// the end.
    pub async fn serve(
        path: &Path,
        logs_dir: PathBuf,
        snapshots: watch::Receiver<Snapshot>,
        handle: impl Fn(Request) -> Response + Send + Sync + 'static,
        cancel: CancellationToken,
    ) -> std::io::Result<()> {
        // A socket file nobody answers on is left from an agent that died: replace it. (One
        // agent per home is guaranteed by the daemon's lock, taken before this.)
        if path.exists() && ask(path, Request::Status).await.is_err() {
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        // Whoever can connect can stop the agent: its owner only.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
        let handle = Arc::new(handle);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = cancel.cancelled() => break,
            };
            let Ok((stream, _)) = accepted else { continue };
            let handle = handle.clone();
            let logs_dir = logs_dir.clone();
            let cancel = cancel.clone();
            let snapshots = snapshots.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut reader = BufReader::new(read);
                let read =
                    tokio::time::timeout(TIMEOUT, read_bounded_line(&mut reader, MAX_JSON_LINE))
                        .await;
                let request = match read {
                    Ok(Ok(Some(line))) => serde_json::from_slice::<Request>(&line).ok(),
                    _ => None,
                };
                let answer = match request {
                    Some(Request::Logs {
                        process,
                        stderr,
                        lines,
                        follow,
                    }) => {
                        let stream = if stderr {
                            Stream::Stderr
                        } else {
                            Stream::Stdout
                        };
                        let file = log_files::path(&logs_dir, process, stream);
                        stream_log(file, lines, follow, reader, write, cancel).await;
                        return;
                    }
                    Some(Request::Watch { .. }) => {
                        watch_snapshots(snapshots, reader, write, cancel).await;
                        return;
                    }
                    Some(Request::Status) => Response::Status(Box::new(snapshots.borrow().clone())),
                    Some(request) => handle(request),
                    None => Response::Refused {
                        message: "expected one JSON request line".to_owned(),
                    },
                };
                if let Ok(bytes) = json_line(&answer) {
                    let _ = write.write_all(&bytes).await;
                }
            });
        }
        let _ = std::fs::remove_file(path);
        Ok(())
    }

    /// Resolves when the client sends anything or hangs up: either ends its stream. Reads into
    /// a small buffer, so a chatty client costs no memory.
    async fn hung_up(reader: &mut BufReader<OwnedReadHalf>) {
        let mut ignored = [0u8; 64];
        let _ = reader.read(&mut ignored).await;
    }

    /// `Hello`, the current snapshot, then one per change (coalesced: a client that reads
    /// slowly gets the latest, not a backlog) until the client hangs up or the agent stops.
    async fn watch_snapshots(
        mut snapshots: watch::Receiver<Snapshot>,
        mut reader: BufReader<OwnedReadHalf>,
        mut write: OwnedWriteHalf,
        cancel: CancellationToken,
    ) {
        let hello = Response::Hello {
            protocol: PROTOCOL,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let Ok(hello) = json_line(&hello) else { return };
        if write.write_all(&hello).await.is_err() {
            return;
        }
        loop {
            let snapshot = snapshots.borrow_and_update().clone();
            let Ok(bytes) = json_line(&Response::Status(Box::new(snapshot))) else {
                return;
            };
            // A client that stops reading while the socket buffer is full must not keep this
            // task forever: its hanging up or the agent stopping still end the write.
            let written = tokio::select! {
                written = write.write_all(&bytes) => written.is_ok(),
                () = hung_up(&mut reader) => false,
                () = cancel.cancelled() => false,
            };
            if !written {
                return;
            }
            tokio::select! {
                changed = snapshots.changed() => if changed.is_err() { return },
                () = hung_up(&mut reader) => return,
                () = cancel.cancelled() => return,
            }
        }
    }

    /// Writes the whole lines of a `Write` into a channel, one message per line.
    struct LineSink {
        lines: mpsc::Sender<String>,
        partial: Vec<u8>,
    }

    /// Bytes without a newline kept before they are sent as a line anyway: a file with one
    /// endless line must not fill the agent's memory (the cut marker then says what went).
    const MAX_PARTIAL: usize = 4 * MAX_STREAMED_LINE;

    impl LineSink {
        fn send(&self, bytes: &[u8]) -> std::io::Result<()> {
            let text = String::from_utf8_lossy(bytes).into_owned();
            self.lines
                .blocking_send(text)
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
        }
    }

    impl std::io::Write for LineSink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.partial.extend_from_slice(buf);
            let mut start = 0;
            while let Some(end) = self.partial[start..].iter().position(|&b| b == b'\n') {
                let end = start + end;
                self.send(&self.partial[start..end])?;
                start = end + 1;
            }
            self.partial.drain(..start);
            if self.partial.len() > MAX_PARTIAL {
                let whole = std::mem::take(&mut self.partial);
                self.send(&whole)?;
            }
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Appends `response` as one JSON line to `batch`.
    fn push_line(batch: &mut Vec<u8>, response: &Response) {
        if serde_json::to_writer(&mut *batch, response).is_ok() {
            batch.push(b'\n');
        }
    }

    /// Sends the log's last lines, then (following) each new one, until the reader hangs up or
    /// the agent stops. Lines are cut at 64 KiB and written in batches of what is ready.
    async fn stream_log(
        path: PathBuf,
        lines: usize,
        follow: bool,
        mut reader: BufReader<OwnedReadHalf>,
        mut write: OwnedWriteHalf,
        cancel: CancellationToken,
    ) {
        let (tx, mut rx) = mpsc::channel::<String>(2 * BATCH);
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let stop = stop.clone();
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                let mut file = std::fs::File::open(&path)?;
                let len = file.metadata()?.len();
                for line in tail::last_lines_of(&mut file, len, lines)? {
                    if tx.blocking_send(line).is_err() {
                        return Ok(());
                    }
                }
                if follow {
                    // Ends when asked, or when the sending task is gone (agent shutting down).
                    let probe = tx.clone();
                    let mut sink = LineSink {
                        lines: tx,
                        partial: Vec::new(),
                    };
                    let poll = std::time::Duration::from_millis(250);
                    tail::follow_from(file, len, &path, &mut sink, poll, || {
                        stop.load(Ordering::SeqCst) || probe.is_closed()
                    })?;
                }
                Ok(())
            })
        };
        let mut batch = Vec::new();
        loop {
            let line = tokio::select! {
                line = rx.recv() => line,
                // The reader closing its side (or sending anything) ends the stream.
                () = hung_up(&mut reader) => None,
                () = cancel.cancelled() => None,
            };
            let Some(line) = line else { break };
            batch.clear();
            push_line(
                &mut batch,
                &Response::Line {
                    line: cap_line(line),
                },
            );
            for _ in 1..BATCH {
                let Ok(line) = rx.try_recv() else { break };
                push_line(
                    &mut batch,
                    &Response::Line {
                        line: cap_line(line),
                    },
                );
            }
            let written = tokio::select! {
                written = write.write_all(&batch) => written.is_ok(),
                () = hung_up(&mut reader) => false,
                () = cancel.cancelled() => false,
            };
            if !written {
                break;
            }
        }
        stop.store(true, Ordering::SeqCst);
        drop(rx);
        let last = match worker.await {
            Ok(Ok(())) => Response::Done {
                message: "end of log".to_owned(),
            },
            Ok(Err(err)) => Response::Refused {
                message: format!("cannot read the log: {err}"),
            },
            Err(_) => return,
        };
        if let Ok(bytes) = json_line(&last) {
            let _ = write.write_all(&bytes).await;
        }
    }
}

/// Windows: the named-pipe control channel is not built yet; the agent runs without it.
#[cfg(not(unix))]
pub async fn serve(
    _path: &Path,
    _logs_dir: PathBuf,
    _snapshots: tokio::sync::watch::Receiver<Snapshot>,
    _handle: impl Fn(Request) -> Response + Send + Sync + 'static,
    cancel: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    cancel.cancelled().await;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::time::Duration;

    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::sync::watch;
    use tokio_util::sync::CancellationToken;

    fn snapshot(pid: u32) -> Snapshot {
        Snapshot {
            agent_pid: pid,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: Utc::now(),
            compute_configured: false,
            compute: None,
            heartbeat: heartbeat::State::default(),
            coordinator: None,
            tunnel: None,
            ssh_access: None,
        }
    }

    async fn wait_for(path: &Path) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !path.exists() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A real server on a temporary socket, answering other requests with their names.
    struct Served {
        _dir: tempfile::TempDir,
        path: PathBuf,
        snapshots: watch::Sender<Snapshot>,
        cancel: CancellationToken,
        task: tokio::task::JoinHandle<std::io::Result<()>>,
    }

    async fn served(logs: Option<PathBuf>) -> std::io::Result<Served> {
        let dir = tempfile::tempdir()?;
        let path = socket_path(dir.path());
        let logs = logs.unwrap_or_else(|| PathBuf::from("/nonexistent"));
        let (snapshots, rx) = watch::channel(snapshot(1));
        let cancel = CancellationToken::new();
        let task = tokio::spawn({
            let (path, cancel) = (path.clone(), cancel.clone());
            async move {
                serve(
                    &path,
                    logs,
                    rx,
                    |request| Response::Done {
                        message: format!("{request:?}"),
                    },
                    cancel,
                )
                .await
            }
        });
        wait_for(&path).await;
        Ok(Served {
            _dir: dir,
            path,
            snapshots,
            cancel,
            task,
        })
    }

    /// A fake agent that answers any connection with `answer` (raw bytes).
    async fn fake_agent(answer: Vec<u8>) -> std::io::Result<(tempfile::TempDir, PathBuf)> {
        let dir = tempfile::tempdir()?;
        let path = socket_path(dir.path());
        let listener = tokio::net::UnixListener::bind(&path)?;
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let _ = stream.write_all(&answer).await;
                // Keep the connection open a moment: the client must judge the bytes, not EOF.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Ok((dir, path))
    }

    #[tokio::test]
    async fn requests_are_answered_and_the_socket_removed_at_the_end() -> anyhow::Result<()> {
        let served = served(None).await?;
        let answer = ask(&served.path, Request::Stop).await?;
        assert_eq!(
            answer,
            Response::Done {
                message: "Stop".to_owned()
            }
        );
        // Status comes from the snapshot watch, not the handler.
        assert_eq!(
            ask(&served.path, Request::Status).await?,
            Response::Status(Box::new(served.snapshots.borrow().clone()))
        );
        served.cancel.cancel();
        served.task.await??;
        assert!(!served.path.exists());
        assert!(
            matches!(
                ask(&served.path, Request::Status).await,
                Err(ControlError::NotRunning { .. })
            ),
            "nobody answers now"
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_missing_or_stale_socket_means_not_running() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = socket_path(dir.path());
        let missing = ask(&path, Request::Status).await;
        assert!(
            matches!(missing, Err(ControlError::NotRunning { .. })),
            "{missing:?}"
        );
        // A socket file left by an agent that died: connection refused.
        drop(std::os::unix::net::UnixListener::bind(&path)?);
        assert!(path.exists());
        let stale = watch(&path).await.err();
        assert!(
            matches!(stale, Some(ControlError::NotRunning { .. })),
            "{stale:?}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn watch_sends_hello_then_a_snapshot_and_another_on_change() -> anyhow::Result<()> {
        let served = served(None).await?;
        let mut subscription = watch(&served.path).await?;
        assert_eq!(subscription.next().await?.map(|s| s.agent_pid), Some(1));
        served.snapshots.send_replace(snapshot(2));
        let next = tokio::time::timeout(Duration::from_secs(5), subscription.next()).await??;
        assert_eq!(next.map(|s| s.agent_pid), Some(2));
        // The agent stopping ends the stream with None.
        served.cancel.cancel();
        let last = tokio::time::timeout(Duration::from_secs(5), subscription.next()).await??;
        assert_eq!(last, None);
        Ok(())
    }

    #[tokio::test]
    async fn a_hung_up_watcher_is_noticed() -> anyhow::Result<()> {
        let served = served(None).await?;
        let subscription = watch(&served.path).await?;
        drop(subscription);
        // The server's watcher task ends: the receivers it held go away.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while served.snapshots.receiver_count() > 1 {
            assert!(std::time::Instant::now() < deadline, "the watcher stayed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        served.cancel.cancel();
        Ok(())
    }

    #[tokio::test]
    async fn another_protocol_or_garbage_is_a_protocol_error() -> anyhow::Result<()> {
        let hello = Response::Hello {
            protocol: PROTOCOL + 1,
            version: "0.2.0".to_owned(),
        };
        let (_dir, path) = fake_agent(json_line(&hello)?).await?;
        match watch(&path).await.err() {
            Some(ControlError::Protocol { detail }) => assert!(
                detail.contains(&format!(
                    "agent protocol {} (polaris 0.2.0), this polaris speaks {PROTOCOL}",
                    PROTOCOL + 1
                )),
                "{detail}"
            ),
            other => panic!("expected a protocol error, got {other:?}"),
        }
        let (_dir, path) = fake_agent(b"{\"answer\": \"what\"}\n".to_vec()).await?;
        let garbage = ask(&path, Request::Status).await;
        assert!(
            matches!(garbage, Err(ControlError::Protocol { .. })),
            "{garbage:?}"
        );
        // An endless line is refused after 1 MiB, not read into memory.
        let (_dir, path) = fake_agent(vec![b'x'; 2 * MAX_JSON_LINE]).await?;
        let long = ask(&path, Request::Status).await;
        assert!(
            matches!(&long, Err(ControlError::Protocol { detail }) if detail.contains("longer")),
            "{long:?}"
        );
        Ok(())
    }

    #[test]
    fn a_long_line_is_cut_at_a_char_boundary() {
        let short = "fine".to_owned();
        assert_eq!(cap_line(short.clone()), short);
        // 'é' is two bytes: an odd limit falls inside one.
        let long = format!("a{}", "é".repeat(MAX_STREAMED_LINE));
        let total = long.len();
        let cut = cap_line(long);
        let (kept, marker) = cut.split_once(" … [").unwrap_or_default();
        assert!(kept.len() <= MAX_STREAMED_LINE && kept.len() >= MAX_STREAMED_LINE - 1);
        assert_eq!(marker, format!("{} bytes cut]", total - kept.len()));
    }

    #[tokio::test]
    async fn a_log_is_streamed_followed_and_long_lines_cut() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs)?;
        let file = logs.join("compute_subnet_stdout.log");
        std::fs::write(&file, "one\ntwo\nthree\n")?;
        let served = served(Some(logs)).await?;
        let mut stream = stream_logs(&served.path, Process::ComputeSubnet, false, 2, true).await?;
        let mut next = async || -> anyhow::Result<Option<String>> {
            Ok(tokio::time::timeout(Duration::from_secs(5), stream.next()).await??)
        };
        assert_eq!(next().await?.as_deref(), Some("two"));
        assert_eq!(next().await?.as_deref(), Some("three"));
        let long = "y".repeat(MAX_STREAMED_LINE + 10);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .and_then(|mut f| {
                std::io::Write::write_all(&mut f, format!("four\n{long}\n").as_bytes())
            })?;
        assert_eq!(next().await?.as_deref(), Some("four"));
        let cut = next().await?.unwrap_or_default();
        assert!(
            cut.ends_with(" … [10 bytes cut]"),
            "{}",
            &cut[cut.len() - 40..]
        );
        served.cancel.cancel();
        assert_eq!(next().await?, None, "the agent stopping ends the stream");
        Ok(())
    }

    #[tokio::test]
    async fn a_missing_log_is_refused() -> anyhow::Result<()> {
        let served = served(None).await?;
        let mut stream = stream_logs(&served.path, Process::Polaris, true, 10, false).await?;
        let refused = stream.next().await;
        assert!(
            matches!(refused, Err(ControlError::Refused { .. })),
            "{refused:?}"
        );
        served.cancel.cancel();
        Ok(())
    }
}
