//! Persistence of the coordinator's state behind one trait, so SQLite (embedded, the default) and
//! Firestore (several coordinators) are interchangeable.
//!
//! The coordinator never waits on the store while answering a heartbeat: writes go through the
//! batching [`writer`], and only registration waits for its commit (so the token it hands out is
//! durable).

#[cfg(test)]
pub(crate) mod contract;
mod records;
pub mod sqlite;
pub mod writer;

use std::sync::Arc;

use async_trait::async_trait;

pub use records::{
    MinerRecord, MinerSummary, NewMiner, StatusChange, StoredCommand, TIMESTAMP_FORMAT, Write,
    format_time,
};

/// Why the store failed. Each backend sorts its own errors into these, so the writer's retry
/// rules never look at a particular database's codes.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend failed; whether the same writes may succeed later (busy, disk full, the
    /// service unavailable) is the backend's call.
    #[error("{backend} error: {message}")]
    Backend {
        backend: &'static str,
        message: String,
        transient: bool,
    },
    #[error("stored JSON is unreadable: {0}")]
    Json(String),
    #[error("stored value is unreadable: {0}")]
    Corrupt(String),
    /// The database cannot be used as it is (another program's, a newer polaris's); the text
    /// says what to do.
    #[error("{0}")]
    Unusable(String),
    #[error("the store's worker stopped")]
    WorkerGone,
    #[error("miner {0} does not exist")]
    NoSuchMiner(String),
}

impl From<serde_json::Error> for StoreError {
    fn from(err: serde_json::Error) -> Self {
        StoreError::Json(err.to_string())
    }
}

impl StoreError {
    /// Whether trying the same writes again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Backend { transient, .. } => *transient,
            StoreError::WorkerGone => true,
            StoreError::Json(_)
            | StoreError::Corrupt(_)
            | StoreError::Unusable(_)
            | StoreError::NoSuchMiner(_) => false,
        }
    }
}

/// Where miners, their states and their history live.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// What the coordinator keeps in memory about every miner, read once at start-up.
    async fn load_summaries(&self) -> Result<Vec<MinerSummary>, StoreError>;

    /// Most writes [`Store::apply`] takes at once (SQLite: thousands; Firestore: 500 a commit).
    fn max_batch(&self) -> usize;

    /// Applies a batch of at most [`Store::max_batch`] writes, all or none. The batch is shared,
    /// not moved, so a failed batch can be retried without copying it.
    async fn apply(&self, batch: Arc<[Write]>) -> Result<(), StoreError>;

    /// Deletes metrics_history rows older than `before`; returns how many.
    async fn prune_metrics(&self, before: chrono::DateTime<chrono::Utc>)
    -> Result<u64, StoreError>;

    /// One miner with its registration details.
    async fn miner(&self, id: &str) -> Result<Option<MinerRecord>, StoreError>;

    /// Miners ordered by id, starting after `after`.
    async fn miners(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<MinerRecord>, StoreError>;

    /// A miner's status transitions, oldest first (in the order they were applied, also when
    /// two share a timestamp).
    async fn status_history(&self, miner_id: &str) -> Result<Vec<StatusChange>, StoreError>;

    /// Every miner's relay key as `(miner id, OpenSSH public key line)`, read once at start-up.
    async fn relay_keys(&self) -> Result<Vec<(String, String)>, StoreError>;

    /// Commands still to be delivered or reported (queued or delivered), read once at start-up.
    async fn open_commands(&self) -> Result<Vec<StoredCommand>, StoreError>;

    /// A miner's most recent `limit` commands, newest first.
    async fn commands(
        &self,
        miner_id: &str,
        limit: usize,
    ) -> Result<Vec<StoredCommand>, StoreError>;
}
