//! Persistence of the coordinator's state behind one trait, so SQLite (embedded, the default) and
//! Firestore (several coordinators) are interchangeable.
//!
//! The coordinator never waits on the store while answering a heartbeat: writes go through the
//! batching [`writer`], and only registration waits for its commit (so the token it hands out is
//! durable).

mod records;
pub mod sqlite;
pub mod writer;

use std::sync::Arc;

use async_trait::async_trait;

pub use records::{
    MinerRecord, MinerSummary, NewMiner, StatusChange, StoredCommand, TIMESTAMP_FORMAT, Write,
    format_time,
};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite's own words, once (rusqlite's error and its source say the same thing twice).
    #[error("database error: {}", sqlite_words(.0))]
    Sqlite(rusqlite::Error),
    #[error("stored JSON is unreadable")]
    Json(#[from] serde_json::Error),
    #[error("stored value is unreadable: {0}")]
    Corrupt(String),
    /// The database file cannot be used as it is (another program's, a newer polaris's); the
    /// text says what to do.
    #[error("{0}")]
    Unusable(String),
    #[error("the store's worker thread stopped")]
    WorkerGone,
    #[error("miner {0} does not exist")]
    NoSuchMiner(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        StoreError::Sqlite(err)
    }
}

/// rusqlite's message without the error code its source repeats it with.
fn sqlite_words(err: &rusqlite::Error) -> String {
    match err {
        rusqlite::Error::SqliteFailure(code, Some(message)) => {
            format!("{message} (code {})", code.extended_code)
        }
        rusqlite::Error::SqliteFailure(code, None) => code.to_string(),
        other => other.to_string(),
    }
}

/// Where miners, their states and their history live.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// What the coordinator keeps in memory about every miner, read once at start-up.
    async fn load_summaries(&self) -> Result<Vec<MinerSummary>, StoreError>;

    /// Applies a batch of writes in one transaction where the store allows it. The batch is
    /// shared, not moved, so a failed batch can be retried without copying it.
    async fn apply(&self, batch: Arc<[Write]>) -> Result<(), StoreError>;

    /// One miner with its registration details.
    async fn miner(&self, id: &str) -> Result<Option<MinerRecord>, StoreError>;

    /// Miners ordered by id, starting after `after`.
    async fn miners(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<MinerRecord>, StoreError>;

    /// A miner's status transitions, oldest first.
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
