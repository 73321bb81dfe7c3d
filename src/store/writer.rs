//! The batching writer: the only path from the coordinator to the store.
//!
//! Callers enqueue writes and go on; one task takes everything queued, applies it as one batch,
//! and acknowledges the writes that asked for it. While a batch commits, the next one gathers, so
//! the number of commits grows far slower than the number of writes (group commit).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{Store, StoreError, Write};

/// Most writes applied in one batch.
const MAX_BATCH: usize = 5_000;

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Batches committed.
    pub commits: AtomicU64,
    /// Writes committed.
    pub rows: AtomicU64,
    /// Failed attempts (each retried or reported).
    pub failures: AtomicU64,
    /// Writes queued and not yet committed.
    pub depth: AtomicI64,
}

enum Message {
    Write(Write, Option<oneshot::Sender<Result<(), String>>>),
    Close(oneshot::Sender<()>),
}

/// A cheap, cloneable handle to the writer task.
#[derive(Debug, Clone)]
pub struct StoreWriter {
    tx: mpsc::UnboundedSender<Message>,
    stats: Arc<WriterStats>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Message")
    }
}

impl StoreWriter {
    /// Starts the writer task over `store`.
    pub fn spawn(store: Arc<dyn Store>) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(WriterStats::default());
        let task = tokio::spawn(run(store, rx, Arc::clone(&stats)));
        (Self { tx, stats }, task)
    }

    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Queues a write without waiting for it.
    pub fn send(&self, write: Write) {
        self.enqueue(write, None);
    }

    /// Queues a write; the receiver resolves once it is committed (or failed for good).
    pub fn send_acked(&self, write: Write) -> oneshot::Receiver<Result<(), String>> {
        let (ack, done) = oneshot::channel();
        self.enqueue(write, Some(ack));
        done
    }

    /// Queues a write and waits until it is committed.
    pub async fn commit(&self, write: Write) -> Result<(), StoreError> {
        match self.send_acked(write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(StoreError::Corrupt(reason)),
            Err(_) => Err(StoreError::WorkerGone),
        }
    }

    /// Commits everything queued so far, then stops the task.
    pub async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Close(done)).is_ok() {
            let _ = wait.await;
        }
    }

    fn enqueue(&self, write: Write, ack: Option<oneshot::Sender<Result<(), String>>>) {
        self.stats.depth.fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::error::SendError(Message::Write(_, ack))) =
            self.tx.send(Message::Write(write, ack))
        {
            self.stats.depth.fetch_sub(1, Ordering::Relaxed);
            tracing::error!("store writer is gone; a write was dropped");
            if let Some(ack) = ack {
                let _ = ack.send(Err("the store writer stopped".into()));
            }
        }
    }
}

type Pending = (Write, Option<oneshot::Sender<Result<(), String>>>);

async fn run(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<Message>,
    stats: Arc<WriterStats>,
) {
    let mut closing = None;
    while closing.is_none() {
        let Some(first) = rx.recv().await else { break };
        let mut batch: Vec<Pending> = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Write(write, ack) => batch.push((write, ack)),
                Message::Close(done) => {
                    closing = Some(done);
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            commit_batch(store.as_ref(), batch, &stats).await;
        }
    }
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

/// Commits a batch. If the batch fails, each write is retried on its own: a write that fails for
/// a reason that will not pass (a logic error) is reported and dropped, so it cannot block the
/// others; one that fails for a passing reason (disk full, database busy) is retried until it
/// succeeds, because status transitions must never be lost.
async fn commit_batch(store: &dyn Store, batch: Vec<Pending>, stats: &WriterStats) {
    let size = batch.len();
    let (writes, acks): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
    match store.apply(writes.clone()).await {
        Ok(()) => {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats.rows.fetch_add(size as u64, Ordering::Relaxed);
            stats.depth.fetch_sub(size as i64, Ordering::Relaxed);
            for ack in acks.into_iter().flatten() {
                let _ = ack.send(Ok(()));
            }
            return;
        }
        Err(err) => {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %error_chain(&err), size, "store batch failed; retrying one by one");
        }
    }
    for (write, ack) in writes.into_iter().zip(acks) {
        let mut delay = Duration::from_millis(100);
        let outcome = loop {
            match store.apply(vec![write.clone()]).await {
                Ok(()) => break Ok(()),
                Err(err) if err.is_transient() => {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %error_chain(&err), "store write failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(err) => {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %error_chain(&err), ?write, "store write dropped");
                    break Err(error_chain(&err));
                }
            }
        };
        if outcome.is_ok() {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats.rows.fetch_add(1, Ordering::Relaxed);
        }
        stats.depth.fetch_sub(1, Ordering::Relaxed);
        if let Some(ack) = ack {
            let _ = ack.send(outcome);
        }
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl StoreError {
    /// Whether trying the same write again later may succeed.
    pub fn is_transient(&self) -> bool {
        use rusqlite::ErrorCode::*;
        match self {
            StoreError::Sqlite(err) => matches!(
                err.sqlite_error_code(),
                Some(
                    DatabaseBusy
                        | DatabaseLocked
                        | DiskFull
                        | SystemIoFailure
                        | CannotOpen
                        | ReadOnly
                )
            ),
            StoreError::WorkerGone => true,
            StoreError::Json(_) | StoreError::Corrupt(_) | StoreError::NoSuchMiner(_) => false,
        }
    }
}
