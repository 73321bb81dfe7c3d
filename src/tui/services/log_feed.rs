//! Streams the chosen log (the agent's, or compute_subnet's) from the agent's control socket:
//! the last lines of stdout and of stderr, then each new one, as two streams whose lines the
//! Logs tab merges by their stamps. When the agent goes away the feed says so and tries again.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::agent::control;
use crate::agent::log_files::Process;
use crate::tui::log_buffer::{LogLine, Tag};

/// Lines asked for from the end of each stream when the feed starts. Two streams merge by
/// insertion from the back, so this bounds that work too.
pub(crate) const TAIL_LINES: usize = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Agent,
    Compute,
}

impl Source {
    pub(crate) fn process(self) -> Process {
        match self {
            Self::Agent => Process::Polaris,
            Self::Compute => Process::ComputeSubnet,
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Agent => "agent (polaris)",
            Self::Compute => "compute_subnet",
        }
    }

    pub(crate) fn other(self) -> Self {
        match self {
            Self::Agent => Self::Compute,
            Self::Compute => Self::Agent,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FeedEvent {
    /// A stream (re)connected: forget its old lines (they are sent again from its tail).
    /// Sent only once connected, so a dead agent's last lines stay on screen.
    Reset(Tag),
    Line(LogLine),
    /// The stdout stream stopped; the text says why, and the feed retries.
    Interrupted(String),
}

/// One event of feed number `generation` (the app ignores events of a feed it replaced).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Feed {
    pub(crate) generation: u64,
    pub(crate) event: FeedEvent,
}

/// Follows one stream until `cancel`, reconnecting every second; each stream on its own, so
/// a log that appears later (stderr of a first start) is picked up too.
async fn one_stream(
    socket: PathBuf,
    source: Source,
    tag: Tag,
    generation: u64,
    tx: mpsc::Sender<Feed>,
) {
    let send = |event| {
        let tx = tx.clone();
        async move { tx.send(Feed { generation, event }).await.is_ok() }
    };
    loop {
        let why = match control::stream_logs(
            &socket,
            source.process(),
            tag == Tag::Stderr,
            TAIL_LINES,
            true,
        )
        .await
        {
            Ok(mut stream) => {
                if !send(FeedEvent::Reset(tag)).await {
                    return;
                }
                loop {
                    match stream.next().await {
                        Ok(Some(raw)) => {
                            if !send(FeedEvent::Line(LogLine::parse(&raw, tag))).await {
                                return;
                            }
                        }
                        Ok(None) => break "the agent ended the stream".to_owned(),
                        Err(err) => break err.to_string(),
                    }
                }
            }
            Err(err) => err.to_string(),
        };
        // stderr is often missing or quiet; only stdout's trouble is worth a banner.
        if tag == Tag::Stdout && !send(FeedEvent::Interrupted(why)).await {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Follows `source` (stdout and stderr) until `cancel`.
pub(crate) async fn run(
    socket: PathBuf,
    source: Source,
    generation: u64,
    tx: mpsc::Sender<Feed>,
    cancel: CancellationToken,
) {
    tokio::select! {
        _ = async {
            tokio::join!(
                one_stream(socket.clone(), source, Tag::Stdout, generation, tx.clone()),
                one_stream(socket.clone(), source, Tag::Stderr, generation, tx.clone()),
            )
        } => {}
        () = cancel.cancelled() => {}
    }
}
