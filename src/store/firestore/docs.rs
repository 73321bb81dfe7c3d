//! The documents as Firestore holds them, and their conversion to and from the store's records.
//! Field names here are the data model (listed in `super`'s module comment): renaming one is a
//! schema change.

use chrono::{DateTime, Utc};
use firestore::{FirestoreDb, FirestoreDocument, FirestoreInstant, FirestoreTimestamp};
use serde::{Deserialize, Serialize};

use crate::api::{CommandState, HeartbeatStatus, VerificationStatus};
use crate::store::{
    MinerRecord, MinerSummary, Seen, SeenDoc, StatusChange, StoreError, StoredCommand,
};

pub(super) const MINERS: &str = "miners";
pub(super) const STATES: &str = "miner_states";
pub(super) const HISTORY: &str = "status_history";
pub(super) const METRICS: &str = "metrics_history";
pub(super) const COMMANDS: &str = "commands";
pub(super) const REPLICAS: &str = "replicas";
pub(super) const SEEN: &str = "replica_seen";

/// `miners/{miner_id}`. JSON payloads are kept as JSON text, as in SQLite: Firestore maps drop
/// nulls and cannot hold integers above `i64::MAX`, so text is what reads back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct MinerDoc {
    pub(super) name: String,
    pub(super) location: Option<String>,
    pub(super) description: Option<String>,
    pub(super) registration_type: Option<String>,
    /// JSON text: an array of compute resources.
    pub(super) compute_resources: String,
    /// JSON text.
    pub(super) network: Option<String>,
    /// JSON text.
    pub(super) bittensor_details: Option<String>,
    /// JSON text.
    pub(super) commune_details: Option<String>,
    pub(super) verification_status: String,
    /// Lowercase hex of the token's SHA-256; never the token.
    pub(super) token_hash: String,
    #[serde(default)]
    pub(super) token_used: bool,
    /// One OpenSSH public key line.
    pub(super) relay_key: Option<String>,
    pub(super) relay_key_updated_at: Option<FirestoreTimestamp>,
    pub(super) created_at: FirestoreTimestamp,
    pub(super) updated_at: FirestoreTimestamp,
    pub(super) shard: u32,
}

/// What [`MinerSummary`] needs of a `miners` document (a projection, so start-up reads little).
#[derive(Debug, Deserialize)]
pub(super) struct MinerKeyDoc {
    pub(super) token_hash: String,
    #[serde(default)]
    pub(super) token_used: bool,
}

/// The relay key of a `miners` document (a projection).
#[derive(Debug, Deserialize)]
pub(super) struct RelayKeyDoc {
    pub(super) relay_key: String,
}

/// `miner_states/{miner_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct StateDoc {
    pub(super) miner_id: String,
    pub(super) last_heartbeat: FirestoreTimestamp,
    /// Absent until the first heartbeat or transition sets it.
    pub(super) current_status: Option<String>,
    /// JSON text of the newest heartbeat's metrics.
    pub(super) current_metrics: Option<String>,
    pub(super) heartbeat_count: i64,
    pub(super) updated_at: FirestoreTimestamp,
    pub(super) shard: u32,
    /// How many status_history rows were written for this miner: the `seq` of the last one.
    #[serde(default)]
    pub(super) transitions: i64,
    /// The last status change written, as `{microseconds}/{writer}` (the writer: a random name
    /// of the process): a retried commit that had landed finds its own change here, and does not
    /// take it for another coordinator's.
    #[serde(default)]
    pub(super) last_transition: Option<String>,
}

/// What [`MinerSummary`] and [`MinerRecord`] need of a `miner_states` document (a projection).
#[derive(Debug, Deserialize)]
pub(super) struct StatusDoc {
    pub(super) last_heartbeat: Option<FirestoreTimestamp>,
    pub(super) current_status: Option<String>,
    #[serde(default)]
    pub(super) heartbeat_count: i64,
}

/// `status_history/{miner_id}-{seq:010}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct HistoryDoc {
    pub(super) miner_id: String,
    pub(super) timestamp: FirestoreTimestamp,
    pub(super) old_status: Option<String>,
    pub(super) new_status: String,
    pub(super) reason: String,
    /// 1, 2, 3… per miner, in the order the transitions were applied.
    pub(super) seq: i64,
}

/// `metrics_history/{miner_id}-{timestamp in µs}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct MetricsDoc {
    pub(super) miner_id: String,
    pub(super) timestamp: FirestoreTimestamp,
    pub(super) status: String,
    /// JSON text.
    pub(super) metrics: String,
    pub(super) time_since_last: Option<f64>,
}

/// `commands/{command_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct CommandDoc {
    pub(super) miner_id: String,
    /// JSON text, tagged by `action` as on the wire.
    pub(super) command: String,
    pub(super) state: String,
    pub(super) reason: Option<String>,
    pub(super) created_at: FirestoreTimestamp,
    pub(super) expires_at: FirestoreTimestamp,
    pub(super) delivered_at: Option<FirestoreTimestamp>,
    pub(super) finished_at: Option<FirestoreTimestamp>,
}

/// `replicas/{replica}`: one coordinator's membership.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct ReplicaDoc {
    pub(super) replica: String,
    pub(super) expires_at: FirestoreTimestamp,
    pub(super) updated_at: FirestoreTimestamp,
}

/// `replica_seen/{part:02}-{replica}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct SeenDocDoc {
    pub(super) replica: String,
    pub(super) part: u32,
    pub(super) written_at: FirestoreTimestamp,
    #[serde(default)]
    pub(super) miners: Vec<SeenEntryDoc>,
}

/// One element of `replica_seen.miners`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct SeenEntryDoc {
    pub(super) miner_id: String,
    pub(super) last_heartbeat: FirestoreTimestamp,
    pub(super) status: String,
    pub(super) heartbeats: i64,
}

/// Whether Firestore takes `id` as a document id: not empty, at most 1500 bytes, no `/`, not
/// `.` or `..`, not `__…__` (reserved). Reads of an id that cannot exist find nothing, rather
/// than failing as a bad request.
pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 1500
        && !id.contains('/')
        && id != "."
        && id != ".."
        && !(id.len() >= 4 && id.starts_with("__") && id.ends_with("__"))
}

/// The id of a document: the last segment of its name.
pub(super) fn doc_id(doc: &FirestoreDocument) -> &str {
    doc.name.rsplit('/').next().unwrap_or_default()
}

/// Reads a document as `T`; one that does not fit is corrupt, named by its path.
pub(super) fn read<T: for<'de> Deserialize<'de>>(doc: &FirestoreDocument) -> Result<T, StoreError> {
    FirestoreDb::deserialize_doc_to(doc).map_err(|err| {
        StoreError::Corrupt(format!("firestore document {}: {err}", short_name(doc)))
    })
}

/// `collection/id` of a document, without the project's prefix.
fn short_name(doc: &FirestoreDocument) -> String {
    let mut parts = doc.name.rsplitn(3, '/');
    match (parts.next(), parts.next()) {
        (Some(id), Some(collection)) => format!("{collection}/{id}"),
        _ => doc.name.clone(),
    }
}

pub(super) fn timestamp(at: DateTime<Utc>) -> Result<FirestoreTimestamp, StoreError> {
    FirestoreInstant::from_microsecond(at.timestamp_micros())
        .map(FirestoreTimestamp)
        .map_err(|_| StoreError::Corrupt(format!("time {at} is outside Firestore's range")))
}

pub(super) fn time(at: FirestoreTimestamp, what: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(at.0.as_microsecond())
        .ok_or_else(|| StoreError::Corrupt(format!("{what}: time {at} is out of range")))
}

fn optional_time(
    at: Option<FirestoreTimestamp>,
    what: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    at.map(|at| time(at, what)).transpose()
}

pub(super) fn status(text: &str, what: &str) -> Result<HeartbeatStatus, StoreError> {
    HeartbeatStatus::parse(text)
        .ok_or_else(|| StoreError::Corrupt(format!("{what}: status {text:?}")))
}

fn optional_status(text: Option<&str>, what: &str) -> Result<Option<HeartbeatStatus>, StoreError> {
    text.map(|text| status(text, what)).transpose()
}

pub(super) fn hex_hash(hash: &[u8; 32]) -> String {
    hex::encode(hash)
}

fn token_hash(text: &str, what: &str) -> Result<[u8; 32], StoreError> {
    let mut hash = [0; 32];
    hex::decode_to_slice(text, &mut hash)
        .map_err(|_| StoreError::Corrupt(format!("{what}: token hash is not 64 hex digits")))?;
    Ok(hash)
}

/// JSON text read back, or a [`StoreError::Json`] naming where it was.
fn json<T: for<'de> Deserialize<'de>>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|err| StoreError::Json(format!("{what}: {err}")))
}

fn optional_json<T: for<'de> Deserialize<'de>>(
    text: Option<&str>,
    what: &str,
) -> Result<Option<T>, StoreError> {
    text.map(|text| json(text, what)).transpose()
}

/// A miner's summary from its `miners` key fields and its `miner_states`, if any.
pub(super) fn summary(
    id: String,
    key: &MinerKeyDoc,
    state: Option<&StatusDoc>,
) -> Result<MinerSummary, StoreError> {
    let what = format!("miner_states/{id}");
    Ok(MinerSummary {
        token_hash: token_hash(&key.token_hash, &format!("miners/{id}"))?,
        last_heartbeat: optional_time(state.and_then(|s| s.last_heartbeat), &what)?,
        current_status: optional_status(state.and_then(|s| s.current_status.as_deref()), &what)?,
        heartbeat_count: state.map_or(0, |s| s.heartbeat_count.max(0).unsigned_abs()),
        token_used: key.token_used,
        id,
    })
}

pub(super) fn record(
    id: String,
    miner: &MinerDoc,
    state: Option<&StatusDoc>,
) -> Result<MinerRecord, StoreError> {
    let what = format!("miners/{id}");
    let states = format!("miner_states/{id}");
    Ok(MinerRecord {
        name: miner.name.clone(),
        location: miner.location.clone(),
        description: miner.description.clone(),
        registration_type: miner.registration_type.clone(),
        compute_resources: json(
            &miner.compute_resources,
            &format!("{what}.compute_resources"),
        )?,
        network: optional_json(miner.network.as_deref(), &format!("{what}.network"))?,
        bittensor_details: optional_json(
            miner.bittensor_details.as_deref(),
            &format!("{what}.bittensor_details"),
        )?,
        commune_details: optional_json(
            miner.commune_details.as_deref(),
            &format!("{what}.commune_details"),
        )?,
        verification: VerificationStatus::parse(&miner.verification_status).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "{what}: verification status {:?}",
                miner.verification_status
            ))
        })?,
        created_at: time(miner.created_at, &what)?,
        updated_at: time(miner.updated_at, &what)?,
        last_heartbeat: optional_time(state.and_then(|s| s.last_heartbeat), &states)?,
        current_status: optional_status(state.and_then(|s| s.current_status.as_deref()), &states)?,
        id,
    })
}

pub(super) fn change(doc: &HistoryDoc, what: &str) -> Result<StatusChange, StoreError> {
    Ok(StatusChange {
        miner_id: doc.miner_id.clone(),
        timestamp: time(doc.timestamp, what)?,
        old_status: optional_status(doc.old_status.as_deref(), what)?,
        new_status: status(&doc.new_status, what)?,
        reason: doc.reason.clone(),
    })
}

pub(super) fn command_doc(command: &StoredCommand) -> Result<CommandDoc, StoreError> {
    Ok(CommandDoc {
        miner_id: command.miner_id.clone(),
        command: serde_json::to_string(&command.command)?,
        state: command.state.as_str().to_owned(),
        reason: command.reason.clone(),
        created_at: timestamp(command.created_at)?,
        expires_at: timestamp(command.expires_at)?,
        delivered_at: command.delivered_at.map(timestamp).transpose()?,
        finished_at: command.finished_at.map(timestamp).transpose()?,
    })
}

pub(super) fn command(id: String, doc: &CommandDoc) -> Result<StoredCommand, StoreError> {
    let what = format!("commands/{id}");
    Ok(StoredCommand {
        miner_id: doc.miner_id.clone(),
        command: json(&doc.command, &format!("{what}.command"))?,
        state: CommandState::parse(&doc.state)
            .ok_or_else(|| StoreError::Corrupt(format!("{what}: state {:?}", doc.state)))?,
        reason: doc.reason.clone(),
        created_at: time(doc.created_at, &what)?,
        expires_at: time(doc.expires_at, &what)?,
        delivered_at: optional_time(doc.delivered_at, &what)?,
        finished_at: optional_time(doc.finished_at, &what)?,
        id,
    })
}

/// The id of one part of a replica's news.
pub(super) fn seen_id(part: u32, replica: &str) -> String {
    format!("{part:02}-{replica}")
}

pub(super) fn seen_doc(doc: &SeenDoc) -> Result<SeenDocDoc, StoreError> {
    Ok(SeenDocDoc {
        replica: doc.replica.clone(),
        part: doc.part,
        written_at: timestamp(doc.written_at)?,
        miners: doc
            .miners
            .iter()
            .map(|seen| {
                Ok(SeenEntryDoc {
                    miner_id: seen.miner_id.clone(),
                    last_heartbeat: timestamp(seen.last_heartbeat)?,
                    status: seen.status.as_str().to_owned(),
                    heartbeats: i64::try_from(seen.heartbeats).unwrap_or(i64::MAX),
                })
            })
            .collect::<Result<_, StoreError>>()?,
    })
}

pub(super) fn seen(doc: &SeenDocDoc, what: &str) -> Result<SeenDoc, StoreError> {
    Ok(SeenDoc {
        replica: doc.replica.clone(),
        part: doc.part,
        written_at: time(doc.written_at, what)?,
        miners: doc
            .miners
            .iter()
            .map(|entry| {
                Ok(Seen {
                    miner_id: entry.miner_id.clone(),
                    last_heartbeat: time(entry.last_heartbeat, what)?,
                    status: status(&entry.status, what)?,
                    heartbeats: entry.heartbeats.max(0).unsigned_abs(),
                })
            })
            .collect::<Result<_, StoreError>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_firestore_refuses_are_recognised() {
        for bad in ["", "a/b", ".", "..", "__x__", "____", &"x".repeat(1501)] {
            assert!(!valid_id(bad), "{bad:?}");
        }
        for good in [
            "Pr1L34ioD8GHkwnhJR0q",
            "a.b:c-d_e",
            "__x",
            "x__",
            "__",
            "...",
        ] {
            assert!(valid_id(good), "{good:?}");
        }
    }

    #[test]
    fn times_keep_microseconds_both_ways() -> Result<(), StoreError> {
        let at = DateTime::from_timestamp_micros(1_780_000_000_123_456).ok_or("range");
        let at = at.map_err(|e| StoreError::Corrupt(e.into()))?;
        assert_eq!(time(timestamp(at)?, "t")?, at);
        let before_epoch = DateTime::from_timestamp_micros(-1_500_001).ok_or("range");
        let before_epoch = before_epoch.map_err(|e| StoreError::Corrupt(e.into()))?;
        assert_eq!(time(timestamp(before_epoch)?, "t")?, before_epoch);
        Ok(())
    }

    #[test]
    fn a_token_hash_reads_back_and_a_bad_one_is_corrupt() {
        let hash = [0xab; 32];
        assert_eq!(token_hash(&hex_hash(&hash), "m").ok(), Some(hash));
        assert!(matches!(
            token_hash("abc", "miners/m"),
            Err(StoreError::Corrupt(what)) if what.contains("miners/m")
        ));
    }
}
