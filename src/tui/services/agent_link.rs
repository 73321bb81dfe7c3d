//! The dashboard's line to the agent: a subscription on the control socket that publishes every
//! snapshot the agent sends, and reconnects when the agent stops, dies or answers garbage.
//! The app only ever reads the published [`AgentLink`]; it never waits on the socket.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};

use crate::agent::control::{self, ControlError, Snapshot};

/// What the dashboard knows about the agent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AgentLink {
    /// No answer yet (the first attempt is under way).
    Connecting,
    Up(Box<Snapshot>),
    Down {
        why: Down,
        since: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Down {
    /// Nothing listens on the socket.
    NotRunning,
    /// The agent closed the stream (it is stopping) or the connection broke.
    Closed,
    /// The agent answered something we cannot use; the text says what.
    Failing(String),
}

impl AgentLink {
    pub(crate) fn snapshot(&self) -> Option<&Snapshot> {
        match self {
            Self::Up(snapshot) => Some(snapshot),
            _ => None,
        }
    }
}

/// How long to wait before the next attempt after `why`.
fn retry_after(why: &Down, failures: u32) -> Duration {
    match why {
        // A missing socket costs one syscall to look for: look often, so a start is seen at once.
        Down::NotRunning | Down::Closed => Duration::from_millis(500),
        // A confused agent is not helped by being asked faster.
        Down::Failing(_) => Duration::from_secs(2u64.saturating_pow(failures.min(3)).min(10)),
    }
}

/// Keeps `link` current until every receiver is gone. `poke` makes it try again at once (the
/// app pokes it after starting the agent).
pub(crate) async fn run(socket: PathBuf, link: watch::Sender<AgentLink>, poke: Arc<Notify>) {
    let mut failures = 0u32;
    loop {
        let why = match control::watch(&socket).await {
            Ok(mut subscription) => {
                failures = 0;
                loop {
                    match subscription.next().await {
                        Ok(Some(snapshot)) => {
                            link.send_if_modified(|current| {
                                let changed = current.snapshot() != Some(&snapshot);
                                if changed {
                                    *current = AgentLink::Up(Box::new(snapshot));
                                }
                                changed
                            });
                        }
                        Ok(None) => break Down::Closed,
                        Err(ControlError::NotRunning { .. }) => break Down::Closed,
                        Err(err) => break Down::Failing(err.to_string()),
                    }
                    if link.is_closed() {
                        return;
                    }
                }
            }
            Err(ControlError::NotRunning { .. }) => Down::NotRunning,
            Err(err) => Down::Failing(err.to_string()),
        };
        if matches!(why, Down::Failing(_)) {
            failures += 1;
        }
        let wait = retry_after(&why, failures);
        link.send_if_modified(|current| match current {
            AgentLink::Down { why: old, .. } if *old == why => false,
            _ => {
                *current = AgentLink::Down {
                    why,
                    since: Utc::now(),
                };
                true
            }
        });
        if link.is_closed() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = poke.notified() => {}
            () = link.closed() => return,
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_agent_is_reported_once_and_retried() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (tx, mut rx) = watch::channel(AgentLink::Connecting);
        let poke = Arc::new(Notify::new());
        let task = tokio::spawn(run(dir.path().join("polaris.sock"), tx, poke.clone()));
        let link = rx
            .wait_for(|l| matches!(l, AgentLink::Down { .. }))
            .await
            .expect("published")
            .clone();
        assert!(
            matches!(
                link,
                AgentLink::Down {
                    why: Down::NotRunning,
                    ..
                }
            ),
            "{link:?}"
        );
        // Further failed attempts do not republish the same state (no redraws for nothing).
        rx.mark_unchanged();
        poke.notify_one();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!rx.has_changed().unwrap_or(true));
        drop(rx);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the link stops when nobody reads it")
            .expect("no panic");
    }

    #[tokio::test]
    async fn garbage_on_the_socket_is_a_failing_link_not_a_crash() {
        use tokio::io::AsyncWriteExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("polaris.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let _ = stream.write_all(b"\x00\xffnot json at all\n").await;
            }
        });
        let (tx, mut rx) = watch::channel(AgentLink::Connecting);
        let task = tokio::spawn(run(path, tx, Arc::new(Notify::new())));
        let link = rx
            .wait_for(|l| matches!(l, AgentLink::Down { .. }))
            .await
            .expect("published")
            .clone();
        assert!(
            matches!(
                link,
                AgentLink::Down {
                    why: Down::Failing(_),
                    ..
                }
            ),
            "{link:?}"
        );
        drop(rx);
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
}
