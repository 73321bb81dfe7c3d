//! Persistence of the coordinator's state behind one trait, so SQLite (embedded, the default) and
//! Firestore (several coordinators) are interchangeable.
//!
//! The coordinator never waits on the store while answering a heartbeat: writes go through the
//! batching [`writer`], and only registration waits for its commit (so the token it hands out is
//! durable).

#[cfg(test)]
pub(crate) mod contract;
pub mod firestore;
mod records;
pub mod sqlite;
pub mod writer;

use std::sync::Arc;

use async_trait::async_trait;

pub use records::{
    Applied, Member, MinerRecord, MinerState, MinerSummary, NewMiner, Seen, SeenDoc, StatusChange,
    StoredCommand, TIMESTAMP_FORMAT, TransitionWrite, Write, format_time,
};

/// How many shards the miners are split into, by [`shard_of`]. Coordinators sharing a store
/// divide the shards among themselves (each sweeps and alerts for its own), and each publishes
/// its heartbeats one document per shard. Fixed: changing it would move miners between shards
/// while coordinators of two versions run side by side.
pub const SHARDS: u32 = 64;

/// The shard of a miner: a stable hash of its id (the same in every build and on every
/// machine), so every coordinator agrees without asking.
pub fn shard_of(miner_id: &str) -> u32 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(miner_id.as_bytes());
    let head = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    head % SHARDS
}

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
    /// A transition another coordinator recorded first (see [`Write::Transition`]).
    #[error("another coordinator recorded this status change first")]
    Superseded,
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
            | StoreError::NoSuchMiner(_)
            | StoreError::Superseded => false,
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
    /// not moved, so a failed batch can be retried without copying it. A store that only one
    /// coordinator uses (SQLite) never supersedes a transition.
    async fn apply(&self, batch: Arc<[Write]>) -> Result<Applied, StoreError>;

    /// Documents (or rows) written so far by this process, for `/metrics` and the benchmark:
    /// what a Firestore bill counts.
    fn documents_written(&self) -> u64;

    /// One miner's summary: how a coordinator learns of a miner another coordinator registered.
    async fn summary(&self, id: &str) -> Result<Option<MinerSummary>, StoreError>;

    /// The summary of the miner whose token hashes to `token_hash`.
    async fn summary_by_token(
        &self,
        token_hash: &[u8; 32],
    ) -> Result<Option<MinerSummary>, StoreError>;

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

/// What coordinators sharing one store (Firestore) need of it to share the work: who is there,
/// and what each heard. A store only one coordinator uses (SQLite) does not have it.
#[async_trait]
pub trait Peers: Send + Sync + 'static {
    /// Renews the membership of `replica` until `until` (creating it), then returns every member
    /// whose membership has not expired at `now`, this one included, ordered by name.
    async fn renew_membership(
        &self,
        replica: &str,
        now: chrono::DateTime<chrono::Utc>,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Member>, StoreError>;

    /// Ends the membership of `replica` at once (a clean stop), so the others take its shards
    /// without waiting for it to expire.
    async fn leave(&self, replica: &str) -> Result<(), StoreError>;

    /// Every other replica's [`SeenDoc`] written at or after `since`.
    async fn seen_since(
        &self,
        replica: &str,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<SeenDoc>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_miners_shard_is_stable_and_in_range() {
        // Pinned: every coordinator, of every version, must agree on these.
        assert_eq!(shard_of(""), 0xe3b0c442 % SHARDS);
        assert_eq!(shard_of("m0"), shard_of("m0"));
        let used: std::collections::HashSet<u32> =
            (0..2000).map(|i| shard_of(&format!("m{i}"))).collect();
        assert!(used.iter().all(|&s| s < SHARDS));
        assert_eq!(used.len(), SHARDS as usize, "2000 ids reach every shard");
    }
}
