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

use super::{Applied, Store, StoreError, Write};

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
    /// Transitions not written because another coordinator had recorded them.
    pub superseded: AtomicU64,
}

/// Where a write's outcome goes when someone waits for it.
type Ack = oneshot::Sender<Result<(), StoreError>>;

enum Message {
    Write(Write, Option<Ack>),
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
    pub fn send_acked(&self, write: Write) -> oneshot::Receiver<Result<(), StoreError>> {
        let (ack, done) = oneshot::channel();
        self.enqueue(write, Some(ack));
        done
    }

    /// Queues a write and waits until it is committed.
    pub async fn commit(&self, write: Write) -> Result<(), StoreError> {
        match self.send_acked(write).await {
            Ok(outcome) => outcome,
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

    fn enqueue(&self, write: Write, ack: Option<Ack>) {
        self.stats.depth.fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::error::SendError(Message::Write(_, ack))) =
            self.tx.send(Message::Write(write, ack))
        {
            self.stats.depth.fetch_sub(1, Ordering::Relaxed);
            tracing::error!("store writer is gone; a write was dropped");
            if let Some(ack) = ack {
                let _ = ack.send(Err(StoreError::WorkerGone));
            }
        }
    }
}

type Pending = (Write, Option<Ack>);

async fn run(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<Message>,
    stats: Arc<WriterStats>,
) {
    let max_batch = store.max_batch().max(1);
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
                if closing.is_none() && batch.len() < max_batch {
                    next = rx.try_recv().ok();
                }
            }
            // Somebody waits, the batch is full, or we are closing: commit now. Otherwise let
            // more writes gather until the deadline.
            if urgent || closing.is_some() || batch.len() >= max_batch {
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

/// Commits a batch, all or none, as the store's transactions do. A batch that fails for a
/// passing reason (busy, disk full, the service unavailable: the store says which) is retried
/// whole, with backoff, until it succeeds: status transitions must never be lost, and an outage
/// costs one round trip per retry, not one per write. Only a batch that fails for good (a write
/// that can never succeed) is split, in halves, until the writes at fault are found: they are
/// reported and dropped, every other write is committed, and the order is kept.
async fn commit_batch(store: &dyn Store, batch: Vec<Pending>, stats: &WriterStats) {
    let (writes, mut acks): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
    let whole: Arc<[Write]> = writes.into();
    // Ranges still to commit, the next one last (so they go in order).
    let mut parts: Vec<std::ops::Range<usize>> = Vec::new();
    parts.push(0..whole.len());
    while let Some(range) = parts.pop() {
        let part: Arc<[Write]> = if range.len() == whole.len() {
            Arc::clone(&whole)
        } else {
            whole[range.clone()].into()
        };
        let mut delay = Duration::from_millis(100);
        let outcome = loop {
            match store.apply(Arc::clone(&part)).await {
                Ok(applied) => break Ok(applied),
                Err(err) if err.is_transient() => {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %error_chain(&err), size = part.len(), "store batch failed; retrying it");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(err) => break Err(err),
            }
        };
        match outcome {
            Ok(applied) => {
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats.rows.fetch_add(part.len() as u64, Ordering::Relaxed);
                let acks = &mut acks[range];
                // Another coordinator recorded these transitions first: their alerts are its.
                let Applied { superseded } = applied;
                for i in superseded {
                    if let Some(ack) = acks.get_mut(i).and_then(Option::take) {
                        stats.superseded.fetch_add(1, Ordering::Relaxed);
                        let _ = ack.send(Err(StoreError::Superseded));
                    }
                }
                settle(acks, stats, || Ok(()));
            }
            Err(err) if range.len() == 1 => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %error_chain(&err), write = ?part[0], "store write dropped");
                settle(&mut acks[range], stats, || Err(err.clone()));
            }
            Err(err) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %error_chain(&err), size = part.len(), "store batch refused; splitting it to find the write at fault");
                let middle = range.start + range.len() / 2;
                parts.push(middle..range.end);
                parts.push(range.start..middle);
            }
        }
    }
}

/// The writes of a committed or dropped part leave the queue; whoever waits is told.
fn settle(
    acks: &mut [Option<Ack>],
    stats: &WriterStats,
    outcome: impl Fn() -> Result<(), StoreError>,
) {
    stats.depth.fetch_sub(acks.len() as i64, Ordering::Relaxed);
    for ack in acks.iter_mut().filter_map(Option::take) {
        let _ = ack.send(outcome());
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

    /// The real SQLite store with failures the test scripts: the next `transient` applies fail
    /// as a busy database would, any batch holding a write for `poison` is refused for good, and
    /// a metrics sample of miner `stale` stands for a transition another coordinator recorded
    /// first (reported superseded; SQLite itself never supersedes).
    struct Scripted {
        inner: SqliteStore,
        transient: std::sync::atomic::AtomicU32,
        poison: &'static str,
        applies: std::sync::atomic::AtomicU32,
    }

    #[async_trait::async_trait]
    impl Store for Scripted {
        fn max_batch(&self) -> usize {
            self.inner.max_batch()
        }
        async fn apply(&self, batch: Arc<[Write]>) -> Result<crate::store::Applied, StoreError> {
            self.applies.fetch_add(1, Ordering::Relaxed);
            let left = self.transient.load(Ordering::Relaxed);
            if left > 0 {
                self.transient.store(left - 1, Ordering::Relaxed);
                return Err(StoreError::Backend {
                    backend: "test",
                    message: "busy".into(),
                    transient: true,
                });
            }
            let poisoned = batch
                .iter()
                .any(|w| matches!(w, Write::Metrics { miner_id, .. } if miner_id == self.poison));
            if poisoned {
                return Err(StoreError::Corrupt("a write that can never succeed".into()));
            }
            self.inner.apply(Arc::clone(&batch)).await?;
            let superseded = batch
                .iter()
                .enumerate()
                .filter(
                    |(_, w)| matches!(w, Write::Metrics { miner_id, .. } if miner_id == "stale"),
                )
                .map(|(i, _)| i)
                .collect();
            Ok(crate::store::Applied { superseded })
        }
        fn documents_written(&self) -> u64 {
            self.inner.documents_written()
        }
        async fn summary(
            &self,
            id: &str,
        ) -> Result<Option<crate::store::MinerSummary>, StoreError> {
            self.inner.summary(id).await
        }
        async fn summary_by_token(
            &self,
            token_hash: &[u8; 32],
        ) -> Result<Option<crate::store::MinerSummary>, StoreError> {
            self.inner.summary_by_token(token_hash).await
        }
        async fn prune_metrics(
            &self,
            before: chrono::DateTime<chrono::Utc>,
        ) -> Result<u64, StoreError> {
            self.inner.prune_metrics(before).await
        }
        async fn load_summaries(&self) -> Result<Vec<crate::store::MinerSummary>, StoreError> {
            self.inner.load_summaries().await
        }
        async fn miner(&self, id: &str) -> Result<Option<crate::store::MinerRecord>, StoreError> {
            self.inner.miner(id).await
        }
        async fn miners(
            &self,
            after: Option<String>,
            limit: usize,
        ) -> Result<Vec<crate::store::MinerRecord>, StoreError> {
            self.inner.miners(after, limit).await
        }
        async fn status_history(
            &self,
            miner_id: &str,
        ) -> Result<Vec<crate::store::StatusChange>, StoreError> {
            self.inner.status_history(miner_id).await
        }
        async fn relay_keys(&self) -> Result<Vec<(String, String)>, StoreError> {
            self.inner.relay_keys().await
        }
        async fn open_commands(&self) -> Result<Vec<crate::store::StoredCommand>, StoreError> {
            self.inner.open_commands().await
        }
        async fn commands(
            &self,
            miner_id: &str,
            limit: usize,
        ) -> Result<Vec<crate::store::StoredCommand>, StoreError> {
            self.inner.commands(miner_id, limit).await
        }
    }

    fn scripted(
        dir: &std::path::Path,
        transient: u32,
        poison: &'static str,
    ) -> Result<Arc<Scripted>, StoreError> {
        Ok(Arc::new(Scripted {
            inner: SqliteStore::open(&dir.join("p.db"))?,
            transient: transient.into(),
            poison,
            applies: 0.into(),
        }))
    }

    #[tokio::test]
    async fn a_passing_failure_retries_the_whole_batch_not_write_by_write()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = scripted(dir.path(), 2, "none")?;
        let (writer, task) = StoreWriter::spawn(Arc::clone(&store) as Arc<dyn Store>);
        for i in 0..20 {
            writer.send(sample(i));
        }
        writer.commit(sample(20)).await?;
        // Two failed tries and one that commits: three round trips for 21 writes.
        assert_eq!(store.applies.load(Ordering::Relaxed), 3);
        assert_eq!(writer.stats().rows.load(Ordering::Relaxed), 21);
        assert_eq!(writer.stats().commits.load(Ordering::Relaxed), 1);
        assert_eq!(writer.stats().failures.load(Ordering::Relaxed), 2);
        writer.close().await;
        task.await?;
        Ok(())
    }

    #[tokio::test]
    async fn a_write_that_can_never_succeed_is_found_and_dropped_alone()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = scripted(dir.path(), 0, "m5")?;
        let (writer, task) = StoreWriter::spawn(Arc::clone(&store) as Arc<dyn Store>);
        let acks: Vec<_> = (0..8).map(|i| writer.send_acked(sample(i))).collect();
        let mut outcomes = Vec::new();
        for ack in acks {
            outcomes.push(ack.await?.is_ok());
        }
        assert_eq!(
            outcomes,
            [true, true, true, true, true, false, true, true],
            "only m5 is refused, and told so"
        );
        assert_eq!(writer.stats().rows.load(Ordering::Relaxed), 7);
        assert_eq!(writer.stats().depth.load(Ordering::Relaxed), 0);
        // 8 → 4 + 4 → (2 + 2) of the bad half → (1 + 1): a few round trips, not one per write.
        assert!(store.applies.load(Ordering::Relaxed) <= 7);
        writer.close().await;
        task.await?;
        Ok(())
    }

    #[tokio::test]
    async fn a_superseded_write_is_told_so_and_the_rest_of_its_batch_commits()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = scripted(dir.path(), 0, "none")?;
        let (writer, task) = StoreWriter::spawn(Arc::clone(&store) as Arc<dyn Store>);
        let stale = Write::Metrics {
            miner_id: "stale".into(),
            at: chrono::Utc::now(),
            status: HeartbeatStatus::Offline,
            metrics: "{}".into(),
            time_since_last: None,
        };
        writer.send(sample(1));
        let superseded = writer.send_acked(stale);
        let kept = writer.send_acked(sample(2));
        assert!(matches!(superseded.await?, Err(StoreError::Superseded)));
        assert!(kept.await?.is_ok());
        assert_eq!(writer.stats().superseded.load(Ordering::Relaxed), 1);
        assert_eq!(writer.stats().commits.load(Ordering::Relaxed), 1);
        assert_eq!(writer.stats().depth.load(Ordering::Relaxed), 0);
        writer.close().await;
        task.await?;
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
