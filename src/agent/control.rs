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
    Done { message: String },
    Refused { message: String },
}

pub fn socket_path(home: &Path) -> PathBuf {
    home.join("polaris.sock")
}

#[cfg(unix)]
pub use unix::{ask, serve};

#[cfg(unix)]
mod unix {
    use std::path::Path;

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::{UnixListener, UnixStream};
    use tokio_util::sync::CancellationToken;

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

    /// Answers requests with `handle` until `cancel`; removes the socket file at the end.
    pub async fn serve(
        path: &Path,
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
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                let read =
                    tokio::time::timeout(TIMEOUT, BufReader::new(read).read_line(&mut line)).await;
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
}
