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
    /// A new connection: forget what the old one sent (it is sent again from the tail).
    Reset,
    Line(LogLine),
    /// The stream stopped; the text says why, and the feed retries.
    Interrupted(String),
}

/// One event of feed number `generation` (the app ignores events of a feed it replaced).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Feed {
    pub(crate) generation: u64,
    pub(crate) event: FeedEvent,
}

async fn one_stream(
    socket: PathBuf,
    source: Source,
    tag: Tag,
    generation: u64,
    tx: mpsc::Sender<Feed>,
) -> String {
    let stderr = tag == Tag::Stderr;
    let mut stream =
        match control::stream_logs(&socket, source.process(), stderr, TAIL_LINES, true).await {
            Ok(stream) => stream,
            Err(err) => return err.to_string(),
        };
    loop {
        match stream.next().await {
            Ok(Some(raw)) => {
                let event = FeedEvent::Line(LogLine::parse(&raw, tag));
                if tx.send(Feed { generation, event }).await.is_err() {
                    return String::new();
                }
            }
            Ok(None) => return "the agent ended the stream".to_owned(),
            Err(err) => return err.to_string(),
        }
    }
}

/// Follows `source` until `cancel`, reconnecting every second while it cannot.
pub(crate) async fn run(
    socket: PathBuf,
    source: Source,
    generation: u64,
    tx: mpsc::Sender<Feed>,
    cancel: CancellationToken,
) {
    loop {
        if tx
            .send(Feed {
                generation,
                event: FeedEvent::Reset,
            })
            .await
            .is_err()
        {
            return;
        }
        let why = tokio::select! {
            why = async {
                let (out, err) = tokio::join!(
                    one_stream(socket.clone(), source, Tag::Stdout, generation, tx.clone()),
                    one_stream(socket.clone(), source, Tag::Stderr, generation, tx.clone()),
                );
                // A log that does not exist yet is no reason to stop showing the other.
                if out.is_empty() { err } else { out }
            } => why,
            () = cancel.cancelled() => return,
        };
        let event = FeedEvent::Interrupted(why);
        if tx.send(Feed { generation, event }).await.is_err() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = cancel.cancelled() => return,
        }
    }
}
