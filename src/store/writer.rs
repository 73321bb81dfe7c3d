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
/// Queue depth above which periodic samples are dropped (see [`StoreWriter::send_sample`]).
pub const MAX_QUEUED_FOR_SAMPLES: i64 = 10_000;
/// How long writes nobody waits for (state samples, metrics) gather before a commit, so a steady
/// stream of heartbeats costs a few commits a second rather than one per heartbeat. A write that
/// someone waits for (registration, a status transition) is committed at once, with whatever has
/// gathered.
const GATHER: Duration = Duration::from_millis(250);

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
    /// Samples dropped because the queue was full.
    pub dropped: AtomicU64,
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

    /// Queues a periodic sample (miner_states refresh, metrics_history row) unless the queue
    /// already holds [`MAX_QUEUED_FOR_SAMPLES`] writes: when the disk falls behind, samples are
    /// shed (the next one comes a minute later) so memory stays bounded, while registrations and
    /// status transitions are always kept.
    pub fn send_sample(&self, write: Write) {
        if self.stats.depth.load(Ordering::Relaxed) >= MAX_QUEUED_FOR_SAMPLES {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
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
        let deadline = tokio::time::Instant::now() + GATHER;
        let mut batch: Vec<Pending> = Vec::new();
        let mut urgent = false;
        let mut next = Some(first);
        loop {
            // Take the message in hand and everything already queued.
            while let Some(message) = next.take() {
                match message {
                    Message::Write(write, ack) => {
                        urgent |= ack.is_some();
                        batch.push((write, ack));
                    }
                    Message::Close(done) => closing = Some(done),
                }
                if closing.is_none() && batch.len() < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            // Somebody waits, the batch is full, or we are closing: commit now. Otherwise let
            // more writes gather until the deadline.
            if urgent || closing.is_some() || batch.len() >= MAX_BATCH {
                break;
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(message)) => next = Some(message),
                Ok(None) | Err(_) => break,
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
    let writes: Arc<[Write]> = writes.into();
    match store.apply(Arc::clone(&writes)).await {
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
    for (write, ack) in writes.iter().zip(acks) {
        let single: Arc<[Write]> = Arc::new([write.clone()]);
        let mut delay = Duration::from_millis(100);
        let outcome = loop {
            match store.apply(Arc::clone(&single)).await {
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
            StoreError::Json(_)
            | StoreError::Corrupt(_)
            | StoreError::Unusable(_)
            | StoreError::NoSuchMiner(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::HeartbeatStatus;
    use crate::store::sqlite::SqliteStore;

    fn sample(i: u32) -> Write {
        Write::Metrics {
            miner_id: format!("m{i}"),
            at: chrono::Utc::now(),
            status: HeartbeatStatus::Online,
            metrics: format!("{{\"cpu_usage\": {i}}}").into(),
            time_since_last: None,
        }
    }

    #[tokio::test]
    async fn queued_writes_share_one_commit_and_a_waited_write_flushes_them()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Arc::new(SqliteStore::open(&dir.path().join("p.db"))?);
        let (writer, task) = StoreWriter::spawn(store);
        for i in 0..50 {
            writer.send(sample(i));
        }
        writer.commit(sample(50)).await?;
        assert_eq!(writer.stats().rows.load(Ordering::Relaxed), 51);
        assert_eq!(writer.stats().commits.load(Ordering::Relaxed), 1);
        assert_eq!(writer.stats().depth.load(Ordering::Relaxed), 0);
        writer.close().await;
        task.await?;
        Ok(())
    }

    #[tokio::test]
    async fn samples_are_shed_when_the_queue_is_full_but_other_writes_are_kept()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Arc::new(SqliteStore::open(&dir.path().join("p.db"))?);
        let (writer, task) = StoreWriter::spawn(store);
        // A current-thread runtime: the writer cannot run until this test awaits.
        for i in 0..MAX_QUEUED_FOR_SAMPLES {
            writer.send(sample(i as u32));
        }
        writer.send_sample(sample(0));
        assert_eq!(writer.stats().dropped.load(Ordering::Relaxed), 1);
        writer.send(sample(1));
        writer.close().await;
        task.await?;
        let kept = writer.stats().rows.load(Ordering::Relaxed);
        assert_eq!(kept, MAX_QUEUED_FOR_SAMPLES as u64 + 1);
        Ok(())
    }

    #[tokio::test]
    async fn closing_commits_everything_queued() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Arc::new(SqliteStore::open(&dir.path().join("p.db"))?);
        let (writer, task) = StoreWriter::spawn(store);
        for i in 0..10 {
            writer.send(sample(i));
        }
        writer.close().await;
        task.await?;
        assert_eq!(writer.stats().rows.load(Ordering::Relaxed), 10);
        Ok(())
    }
}
