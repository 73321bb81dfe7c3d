//! The control socket (`POLARIS_HOME/polaris.sock`): the CLI and the dashboard ask the running
//! agent for its state and tell it to stop or restart compute_subnet. One JSON line each way.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{heartbeat, supervisor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    Stop,
    RestartCompute,
    /// The last `lines` lines of a log, then (with `follow`) each new one as it is written.
    Logs {
        process: super::log_files::Process,
        stderr: bool,
        lines: usize,
        follow: bool,
    },
}

/// The agent's state as `polaris status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub agent_pid: u32,
    pub started_at: DateTime<Utc>,
    /// POLARIS_COMPUTE_CMD is set.
    pub compute_configured: bool,
    pub compute: Option<supervisor::State>,
    pub heartbeat: heartbeat::State,
    /// The coordinator this agent hosts (standalone set-up), if it does.
    pub coordinator: Option<String>,
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
}

pub fn socket_path(home: &Path) -> PathBuf {
    home.join("polaris.sock")
}

#[cfg(unix)]
pub use unix::{ask, serve};

#[cfg(unix)]
mod unix {
    use std::path::Path;

    use std::path::PathBuf;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
    use tokio::net::{UnixListener, UnixStream};
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use crate::agent::log_files::{self, Stream};
    use crate::agent::tail;

    use super::{Request, Response};

    /// How long one exchange may take.
    const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

    /// Asks the agent listening on `path`.
    pub async fn ask(path: &Path, request: Request) -> std::io::Result<Response> {
        let exchange = async {
            let mut stream = UnixStream::connect(path).await?;
            let mut line = serde_json::to_vec(&request)?;
            line.push(b'\n');
            stream.write_all(&line).await?;
            let mut answer = String::new();
            BufReader::new(stream).read_line(&mut answer).await?;
            serde_json::from_str(&answer).map_err(std::io::Error::other)
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))?
    }

    /// Answers requests with `handle` until `cancel` (log requests are streamed from the files
    /// in `logs_dir`); removes the socket file at the end.
    pub async fn serve(
        path: &Path,
        logs_dir: PathBuf,
        handle: impl Fn(Request) -> Response + Send + Sync + 'static,
        cancel: CancellationToken,
    ) -> std::io::Result<()> {
        // A socket file nobody answers on is left from an agent that died: replace it.
        if path.exists() && ask(path, Request::Status).await.is_err() {
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        let handle = std::sync::Arc::new(handle);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = cancel.cancelled() => break,
            };
            let Ok((stream, _)) = accepted else { continue };
            let handle = handle.clone();
            let logs_dir = logs_dir.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                let mut reader = BufReader::new(read);
                let read = tokio::time::timeout(TIMEOUT, reader.read_line(&mut line)).await;
                if let (
                    Ok(Ok(_)),
                    Ok(Request::Logs {
                        process,
                        stderr,
                        lines,
                        follow,
                    }),
                ) = (&read, serde_json::from_str::<Request>(&line))
                {
                    let stream = if stderr {
                        Stream::Stderr
                    } else {
                        Stream::Stdout
                    };
                    let file = log_files::path(&logs_dir, process, stream);
                    stream_log(file, lines, follow, reader, write, cancel).await;
                    return;
                }
                let answer = match (read, serde_json::from_str::<Request>(&line)) {
                    (Ok(Ok(_)), Ok(request)) => handle(request),
                    _ => Response::Refused {
                        message: "expected one JSON request line".to_owned(),
                    },
                };
                if let Ok(mut bytes) = serde_json::to_vec(&answer) {
                    bytes.push(b'\n');
                    let _ = write.write_all(&bytes).await;
                }
            });
        }
        let _ = std::fs::remove_file(path);
        Ok(())
    }

    /// Writes the whole lines of a `Write` into a channel, one message per line.
    struct LineSink {
        lines: mpsc::Sender<String>,
        partial: Vec<u8>,
    }

    impl std::io::Write for LineSink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.partial.extend_from_slice(buf);
            while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.partial.drain(..=end).collect();
                let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                self.lines
                    .blocking_send(text)
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
            }
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Sends the log's last lines, then (following) each new one, until the reader hangs up or
    /// the agent stops.
    async fn stream_log(
        path: PathBuf,
        lines: usize,
        follow: bool,
        mut reader: BufReader<OwnedReadHalf>,
        mut write: OwnedWriteHalf,
        cancel: CancellationToken,
    ) {
        let (tx, mut rx) = mpsc::channel::<String>(256);
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
        let mut ignored = String::new();
        loop {
            let line = tokio::select! {
                line = rx.recv() => line,
                // The reader closing its side (or sending anything) ends the stream.
                _ = reader.read_line(&mut ignored) => None,
                () = cancel.cancelled() => None,
            };
            let Some(line) = line else { break };
            let Ok(mut bytes) = serde_json::to_vec(&Response::Line { line }) else {
                continue;
            };
            bytes.push(b'\n');
            if write.write_all(&bytes).await.is_err() {
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
        if let Ok(mut bytes) = serde_json::to_vec(&last) {
            bytes.push(b'\n');
            let _ = write.write_all(&bytes).await;
        }
    }
}

/// Windows: the named-pipe control channel is not built yet; the agent runs without it.
#[cfg(not(unix))]
pub async fn ask(_path: &Path, _request: Request) -> std::io::Result<Response> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "the control channel is not available on this system yet",
    ))
}

#[cfg(not(unix))]
pub async fn serve(
    _path: &Path,
    _logs_dir: PathBuf,
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
    use tokio_util::sync::CancellationToken;

    #[tokio::test]
    async fn requests_are_answered_and_the_socket_removed_at_the_end() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = socket_path(dir.path());
        let cancel = CancellationToken::new();
        let server = tokio::spawn({
            let (path, cancel) = (path.clone(), cancel.clone());
            async move {
                serve(
                    &path,
                    PathBuf::from("/nonexistent"),
                    |request| Response::Done {
                        message: format!("{request:?}"),
                    },
                    cancel,
                )
                .await
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !path.exists() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let answer = ask(&path, Request::Stop).await?;
        assert_eq!(
            answer,
            Response::Done {
                message: "Stop".to_owned()
            }
        );
        cancel.cancel();
        server.await.map_err(std::io::Error::other)??;
        assert!(!path.exists());
        assert!(
            ask(&path, Request::Status).await.is_err(),
            "nobody answers now"
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_log_is_streamed_and_followed() -> std::io::Result<()> {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let dir = tempfile::tempdir()?;
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs)?;
        let file = logs.join("compute_subnet_stdout.log");
        std::fs::write(&file, "one\ntwo\nthree\n")?;
        let path = socket_path(dir.path());
        let cancel = CancellationToken::new();
        tokio::spawn({
            let (path, cancel, logs) = (path.clone(), cancel.clone(), logs.clone());
            async move {
                serve(
                    &path,
                    logs,
                    |_| Response::Done {
                        message: String::new(),
                    },
                    cancel,
                )
                .await
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !path.exists() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut stream = tokio::net::UnixStream::connect(&path).await?;
        let request = Request::Logs {
            process: crate::agent::log_files::Process::ComputeSubnet,
            stderr: false,
            lines: 2,
            follow: true,
        };
        let mut line = serde_json::to_vec(&request)?;
        line.push(b'\n');
        stream.write_all(&line).await?;
        let mut answers = BufReader::new(stream).lines();
        async fn next(
            answers: &mut tokio::io::Lines<BufReader<tokio::net::UnixStream>>,
        ) -> std::io::Result<Response> {
            let text = tokio::time::timeout(Duration::from_secs(5), answers.next_line())
                .await
                .map_err(|_| std::io::Error::other("no line"))??
                .unwrap_or_default();
            serde_json::from_str::<Response>(&text).map_err(std::io::Error::other)
        }
        assert_eq!(
            next(&mut answers).await?,
            Response::Line { line: "two".into() }
        );
        assert_eq!(
            next(&mut answers).await?,
            Response::Line {
                line: "three".into()
            }
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"four\n"))?;
        assert_eq!(
            next(&mut answers).await?,
            Response::Line {
                line: "four".into()
            }
        );
        cancel.cancel();
        Ok(())
    }
}
