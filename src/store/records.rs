//! The rows the store reads and writes.

use chrono::{DateTime, Utc};

use crate::api::{
    Command, CommandState, ComputeResource, HeartbeatStatus, NetworkInfo, StatusChangeEntry,
    VerificationStatus,
};

/// Timestamps are stored as fixed-width UTC text, so text order is time order.
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

pub fn format_time(at: DateTime<Utc>) -> String {
    at.format(TIMESTAMP_FORMAT).to_string()
}

/// What the coordinator keeps in memory about a miner.
#[derive(Debug, Clone)]
pub struct MinerSummary {
    pub id: String,
    pub token_hash: [u8; 32],
    pub last_heartbeat: Option<DateTime<Utc>>,
    pub current_status: Option<HeartbeatStatus>,
    pub heartbeat_count: u64,
    /// It has authenticated with its token at least once (then token-less requests are refused
    /// for it even with `--legacy-clients`).
    pub token_used: bool,
}

/// A miner as stored, registration details included.
#[derive(Debug, Clone)]
pub struct MinerRecord {
    pub id: String,
    pub name: String,
    pub location: Option<String>,
    pub description: Option<String>,
    pub registration_type: Option<String>,
    pub compute_resources: Vec<ComputeResource>,
    pub network: Option<NetworkInfo>,
    pub bittensor_details: Option<serde_json::Value>,
    pub commune_details: Option<serde_json::Value>,
    pub verification: VerificationStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_heartbeat: Option<DateTime<Utc>>,
    pub current_status: Option<HeartbeatStatus>,
}

/// A freshly registered miner.
#[derive(Debug, Clone)]
pub struct NewMiner {
    pub id: String,
    pub name: String,
    pub location: Option<String>,
    pub description: Option<String>,
    pub registration_type: Option<String>,
    pub compute_resources: Vec<ComputeResource>,
    pub token_hash: [u8; 32],
    pub at: DateTime<Utc>,
}

/// One row of status_history. Not a body: `GET /miners/{id}/status_history` answers with
/// [`StatusChangeEntry`], so the row can change without changing the API.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusChange {
    pub miner_id: String,
    pub timestamp: DateTime<Utc>,
    pub old_status: Option<HeartbeatStatus>,
    pub new_status: HeartbeatStatus,
    pub reason: String,
}

impl From<StatusChange> for StatusChangeEntry {
    fn from(row: StatusChange) -> Self {
        Self {
            miner_id: row.miner_id,
            timestamp: row.timestamp,
            old_status: row.old_status,
            new_status: row.new_status,
            reason: row.reason,
        }
    }
}

/// A command queued for a miner, with where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCommand {
    pub id: String,
    pub miner_id: String,
    pub command: Command,
    pub state: CommandState,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A row of miner_states.
#[derive(Debug, Clone)]
pub struct MinerState {
    pub miner_id: String,
    pub last_heartbeat: DateTime<Utc>,
    pub status: HeartbeatStatus,
    pub heartbeat_count: u64,
    /// The heartbeat's metrics as JSON text (shared with the metrics_history sample); `None`
    /// keeps the stored ones.
    pub metrics: Option<std::sync::Arc<str>>,
    pub at: DateTime<Utc>,
}

/// A status_history row with the miner_states row it leaves.
#[derive(Debug, Clone)]
pub struct TransitionWrite {
    pub change: StatusChange,
    pub state: MinerState,
}

/// What a coordinator took for a miner lately: its newest heartbeat (or the status a sweep
/// gave it) and how many heartbeats this coordinator took for it since it started.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub miner_id: String,
    pub last_heartbeat: DateTime<Utc>,
    pub status: HeartbeatStatus,
    pub heartbeats: u64,
}

/// One coordinator's news: the miners it took heartbeats for (or swept) lately, in documents
/// `{part}-{replica}` of at most 10 000 miners each, parts numbered from 0.
#[derive(Debug, Clone, PartialEq)]
pub struct SeenDoc {
    pub replica: String,
    pub part: u32,
    pub written_at: DateTime<Utc>,
    pub miners: Vec<Seen>,
}

/// A coordinator sharing the store, and until when its membership holds unless renewed.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub replica: String,
    pub expires_at: DateTime<Utc>,
}

/// What [`super::Store::apply`] did besides committing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Indexes (into the batch) of the [`Write::Transition`]s not written because the stored
    /// status was no longer their old status: another coordinator recorded the change first.
    pub superseded: Vec<usize>,
}

/// One change to apply to the store.
#[derive(Debug, Clone)]
pub enum Write {
    Register(Box<NewMiner>),
    Verification {
        miner_id: String,
        status: VerificationStatus,
        at: DateTime<Utc>,
    },
    Network {
        miner_id: String,
        network: NetworkInfo,
        at: DateTime<Utc>,
    },
    Bittensor {
        miner_id: String,
        details: serde_json::Value,
        at: DateTime<Utc>,
    },
    Commune {
        miner_id: String,
        details: serde_json::Value,
        at: DateTime<Utc>,
    },
    /// The key a miner's tunnel logs in to the built-in relay with (replaces the old one).
    RelayKey {
        miner_id: String,
        /// One OpenSSH public key line.
        public_key: String,
        at: DateTime<Utc>,
    },
    /// The miner authenticated with its token for the first time.
    TokenUsed {
        miner_id: String,
    },
    /// Upsert of miner_states for an unchanged status (a refresh), or the first status of a
    /// miner. A store several coordinators share sets `current_status` only when none is stored:
    /// every change of it is a [`Write::Transition`], so another coordinator's recorded change
    /// is never overwritten by a refresh made from an older view.
    State(MinerState),
    /// A status change: the status_history row and the miner_states it leaves, together. A
    /// store several coordinators share writes both only when the stored status is still
    /// `change.old_status` (in one transaction); otherwise another coordinator recorded this
    /// change first and the write is [`Applied::superseded`].
    Transition(Box<TransitionWrite>),
    /// A row of metrics_history.
    Metrics {
        miner_id: String,
        at: DateTime<Utc>,
        status: HeartbeatStatus,
        /// JSON text.
        metrics: std::sync::Arc<str>,
        time_since_last: Option<f64>,
    },
    /// A new command for a miner.
    QueueCommand(Box<StoredCommand>),
    /// The heartbeats one coordinator took for one shard's miners lately, for the others
    /// (replaces its previous document for that shard). Only a store several coordinators
    /// share keeps it.
    Seen(Box<SeenDoc>),
    /// A queued command went out in a heartbeat answer.
    CommandDelivered {
        id: String,
        at: DateTime<Utc>,
    },
    /// A command ended: reported done or failed by its miner (also after it expired, when it
    /// had been delivered: the agent did act on it), or expired unreported.
    CommandFinished {
        id: String,
        miner_id: String,
        state: CommandState,
        reason: Option<String>,
        at: DateTime<Utc>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_change_becomes_the_same_entry_of_the_api() {
        let row = StatusChange {
            miner_id: "m0".into(),
            timestamp: Utc::now(),
            old_status: None,
            new_status: HeartbeatStatus::Online,
            reason: "reported by the miner's heartbeat".into(),
        };
        let entry = StatusChangeEntry::from(row.clone());
        assert_eq!(
            (entry.miner_id, entry.timestamp, entry.old_status),
            (row.miner_id, row.timestamp, row.old_status)
        );
        assert_eq!(
            (entry.new_status, entry.reason),
            (row.new_status, row.reason)
        );
    }
}
