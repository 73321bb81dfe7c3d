//! The embedded store: one SQLite file in WAL mode, `POLARIS_HOME/polaris.db`.
//!
//! rusqlite blocks, so every call runs on tokio's blocking pool. Writes and reads use separate
//! connections: in WAL mode a reader never waits for the writer.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use super::records::format_time;
use super::{
    Applied, MinerRecord, MinerState, MinerSummary, StatusChange, Store, StoreError, StoredCommand,
    Write,
};
use crate::api::{CommandState, HeartbeatStatus, VerificationStatus};

/// The schema, applied when `user_version` is 0.
const SCHEMA_V1: &str = "
CREATE TABLE miners (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    location TEXT,
    description TEXT,
    registration_type TEXT,
    compute_resources TEXT NOT NULL,
    network TEXT,
    bittensor_details TEXT,
    commune_details TEXT,
    verification_status TEXT NOT NULL,
    token_hash BLOB NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE miner_states (
    miner_id TEXT PRIMARY KEY REFERENCES miners(id),
    last_heartbeat TEXT NOT NULL,
    current_status TEXT NOT NULL,
    heartbeat_count INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    current_metrics TEXT
);
CREATE TABLE status_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    miner_id TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    old_status TEXT,
    new_status TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX status_history_by_miner ON status_history(miner_id, id);
CREATE TABLE metrics_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    miner_id TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    status TEXT NOT NULL,
    metrics TEXT NOT NULL,
    time_since_last REAL
);
CREATE INDEX metrics_history_by_time ON metrics_history(timestamp);
CREATE INDEX metrics_history_by_miner ON metrics_history(miner_id, timestamp);
PRAGMA user_version = 1;
";

/// Version 2: the keys miners log in to the built-in relay with.
const SCHEMA_V2: &str = "
CREATE TABLE relay_keys (
    miner_id TEXT PRIMARY KEY REFERENCES miners(id),
    public_key TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
PRAGMA user_version = 2;
";

/// Whether a miner has ever authenticated with its token: only then are the original's
/// token-less requests refused for it, across restarts (`--legacy-clients`).
const SCHEMA_V3: &str = "
ALTER TABLE miners ADD COLUMN token_used INTEGER NOT NULL DEFAULT 0;
PRAGMA user_version = 3;
";

/// Version 4: commands queued for miners (`POST /miners/{id}/commands`), kept after they end
/// so their outcome can be read.
const SCHEMA_V4: &str = "
CREATE TABLE commands (
    id TEXT PRIMARY KEY,
    miner_id TEXT NOT NULL REFERENCES miners(id),
    command TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    delivered_at TEXT,
    finished_at TEXT
);
CREATE INDEX commands_by_miner ON commands(miner_id, created_at);
CREATE INDEX commands_open ON commands(state) WHERE state IN ('queued', 'delivered');
PRAGMA user_version = 4;
";

/// Each version's step, in order: `UPGRADES[n]` brings version n+1 to n+2.
const UPGRADES: &[&str] = &[SCHEMA_V2, SCHEMA_V3, SCHEMA_V4];

/// The schema version this build writes.
const VERSION: i64 = 4;

/// The SQLite implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
    /// Rows written by committed batches.
    written: Arc<std::sync::atomic::AtomicU64>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        create_private(path);
        let writer = Connection::open(path)?;
        // FULL: a committed status transition survives a power cut, not only a crash. Commits are
        // batched, so the extra fsync is paid once per batch.
        writer.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;",
        )?;
        let version: i64 = writer.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        // Each step runs in its own transaction, so a crash mid-upgrade leaves a database at
        // one version or the next, never between.
        match version {
            0 => {
                // Version 0 is a new, empty file; tables there belong to another program, and
                // creating ours beside them would fail with the whole schema quoted.
                let tables: Vec<String> = writer
                    .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?
                    .query_map([], |row| row.get(0))?
                    .collect::<Result<_, _>>()?;
                if !tables.is_empty() {
                    return Err(StoreError::Unusable(format!(
                        "{} is not a polaris database (it holds the tables {}): move it away, or set POLARIS_HOME to another folder",
                        path.display(),
                        tables.join(", ")
                    )));
                }
                writer
                    .execute_batch(&format!("BEGIN; {SCHEMA_V1} {} COMMIT;", UPGRADES.concat()))?
            }
            older @ 1..VERSION => {
                for step in UPGRADES
                    .iter()
                    .skip(usize::try_from(older - 1).unwrap_or(0))
                {
                    writer.execute_batch(&format!("BEGIN; {step} COMMIT;"))?;
                }
            }
            VERSION => {}
            newer => {
                return Err(StoreError::Unusable(format!(
                    "{} has schema version {newer}, newer than this polaris knows ({VERSION}): upgrade polaris",
                    path.display()
                )));
            }
        }
        let reader = Connection::open(path)?;
        reader.execute_batch("PRAGMA busy_timeout = 5000;")?;
        Ok(Self {
            writer: Arc::new(Mutex::new(writer)),
            reader: Arc::new(Mutex::new(reader)),
            written: Arc::default(),
        })
    }

    async fn with<T: Send + 'static>(
        conn: &Arc<Mutex<Connection>>,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = Arc::clone(conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave SQLite half-written (the transaction
            // rolls back), so a poisoned lock is safe to keep using.
            let mut guard = conn.lock().unwrap_or_else(|poison| poison.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|_| StoreError::WorkerGone)?
    }
}

/// Most writes in one transaction: enough for a burst of heartbeats, bounded so one commit
/// stays short.
const MAX_BATCH: usize = 5_000;

impl From<rusqlite::Error> for StoreError {
    /// SQLite's own words once (rusqlite's error and its source say the same thing twice), and
    /// whether waiting may help: busy or locked (another connection), disk full, I/O, a file
    /// that cannot be opened or written now.
    fn from(err: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::*;
        let transient = matches!(
            err.sqlite_error_code(),
            Some(
                DatabaseBusy | DatabaseLocked | DiskFull | SystemIoFailure | CannotOpen | ReadOnly
            )
        );
        let message = match &err {
            rusqlite::Error::SqliteFailure(code, Some(message)) => {
                format!("{message} (code {})", code.extended_code)
            }
            rusqlite::Error::SqliteFailure(code, None) => code.to_string(),
            other => other.to_string(),
        };
        StoreError::Backend {
            backend: "database",
            message,
            transient,
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    async fn prune_metrics(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        Self::with(&self.writer, move |conn| {
            let deleted = conn.execute(
                "DELETE FROM metrics_history WHERE timestamp < ?1",
                [format_time(before)],
            )?;
            Ok(deleted as u64)
        })
        .await
    }

    async fn load_summaries(&self) -> Result<Vec<MinerSummary>, StoreError> {
        Self::with(&self.reader, |conn| {
            let mut stmt = conn.prepare(SUMMARY_SELECT)?;
            let rows = stmt.query_map([], read_summary)?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn summary(&self, id: &str) -> Result<Option<MinerSummary>, StoreError> {
        let id = id.to_owned();
        Self::with(&self.reader, move |conn| {
            conn.query_row(
                &format!("{SUMMARY_SELECT} WHERE m.id = ?1"),
                [&id],
                read_summary,
            )
            .optional()?
            .transpose()
        })
        .await
    }

    async fn summary_by_token(
        &self,
        token_hash: &[u8; 32],
    ) -> Result<Option<MinerSummary>, StoreError> {
        let hash = token_hash.to_vec();
        Self::with(&self.reader, move |conn| {
            conn.query_row(
                &format!("{SUMMARY_SELECT} WHERE m.token_hash = ?1"),
                [&hash],
                read_summary,
            )
            .optional()?
            .transpose()
        })
        .await
    }

    async fn apply(&self, batch: Arc<[Write]>) -> Result<Applied, StoreError> {
        let written = Arc::clone(&self.written);
        Self::with(&self.writer, move |conn| {
            let tx = conn.transaction()?;
            let mut rows = 0;
            for write in batch.iter() {
                rows += apply_one(&tx, write)?;
            }
            tx.commit()?;
            written.fetch_add(rows, std::sync::atomic::Ordering::Relaxed);
            // One coordinator per database: nothing else records transitions.
            Ok(Applied::default())
        })
        .await
    }

    fn documents_written(&self) -> u64 {
        self.written.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn miner(&self, id: &str) -> Result<Option<MinerRecord>, StoreError> {
        let id = id.to_owned();
        Self::with(&self.reader, move |conn| {
            conn.query_row(
                &format!("{MINER_SELECT} WHERE m.id = ?1"),
                [&id],
                read_miner,
            )
            .optional()?
            .transpose()
        })
        .await
    }

    async fn miners(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<MinerRecord>, StoreError> {
        Self::with(&self.reader, move |conn| {
            let mut stmt = conn.prepare(&format!(
                "{MINER_SELECT} WHERE m.id > ?1 ORDER BY m.id LIMIT ?2"
            ))?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = stmt.query_map(params![after.unwrap_or_default(), limit], read_miner)?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn status_history(&self, miner_id: &str) -> Result<Vec<StatusChange>, StoreError> {
        let miner_id = miner_id.to_owned();
        Self::with(&self.reader, move |conn| {
            let mut stmt = conn.prepare(
                "SELECT timestamp, old_status, new_status, reason FROM status_history
                 WHERE miner_id = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([&miner_id], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (at, old, new, reason) = row?;
                out.push(StatusChange {
                    miner_id: miner_id.clone(),
                    timestamp: parse_time(&at)?,
                    old_status: old.as_deref().map(parse_status).transpose()?,
                    new_status: parse_status(&new)?,
                    reason,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn relay_keys(&self) -> Result<Vec<(String, String)>, StoreError> {
        Self::with(&self.reader, |conn| {
            let mut stmt =
                conn.prepare("SELECT miner_id, public_key FROM relay_keys ORDER BY miner_id")?;
            let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn open_commands(&self) -> Result<Vec<StoredCommand>, StoreError> {
        Self::with(&self.reader, |conn| {
            let mut stmt = conn.prepare(&format!(
                "{COMMAND_SELECT} WHERE state IN ('queued', 'delivered') ORDER BY created_at, id"
            ))?;
            let rows = stmt.query_map([], read_command)?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn commands(
        &self,
        miner_id: &str,
        limit: usize,
    ) -> Result<Vec<StoredCommand>, StoreError> {
        let miner_id = miner_id.to_owned();
        Self::with(&self.reader, move |conn| {
            let mut stmt = conn.prepare(&format!(
                "{COMMAND_SELECT} WHERE miner_id = ?1 ORDER BY created_at DESC, id DESC LIMIT ?2"
            ))?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = stmt.query_map(params![miner_id, limit], read_command)?;
            rows.map(|row| row?).collect()
        })
        .await
    }
}

const COMMAND_SELECT: &str = "SELECT id, miner_id, command, state, reason, created_at,
    expires_at, delivered_at, finished_at FROM commands";

/// Reads one row of [`COMMAND_SELECT`]. The outer `Result` is SQLite's, the inner one ours.
fn read_command(row: &Row<'_>) -> rusqlite::Result<Result<StoredCommand, StoreError>> {
    let text = |i: usize| row.get::<_, Option<String>>(i);
    let (id, miner_id, command, state): (String, String, String, String) =
        (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
    let (reason, created, expires, delivered, finished) = (
        text(4)?,
        row.get::<_, String>(5)?,
        row.get::<_, String>(6)?,
        text(7)?,
        text(8)?,
    );
    Ok((|| {
        Ok(StoredCommand {
            command: serde_json::from_str(&command)?,
            state: CommandState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("state of command {id}")))?,
            reason,
            created_at: parse_time(&created)?,
            expires_at: parse_time(&expires)?,
            delivered_at: delivered.as_deref().map(parse_time).transpose()?,
            finished_at: finished.as_deref().map(parse_time).transpose()?,
            id,
            miner_id,
        })
    })())
}

const MINER_SELECT: &str = "SELECT m.id, m.name, m.location, m.description, m.registration_type,
    m.compute_resources, m.network, m.bittensor_details, m.commune_details,
    m.verification_status, m.created_at, m.updated_at, s.last_heartbeat, s.current_status
    FROM miners m LEFT JOIN miner_states s ON s.miner_id = m.id";

/// Reads one row of [`MINER_SELECT`]. The outer `Result` is SQLite's, the inner one ours.
/// Creates the database file readable by its owner only, before SQLite opens it: its WAL and
/// shared-memory files take the database's mode, and all three hold token hashes, inventories
/// and addresses.
/// Where that fails, SQLite's own open says why.
fn create_private(path: &Path) {
    let _ = crate::files::open_private_append(path);
}

fn read_miner(row: &Row<'_>) -> rusqlite::Result<Result<MinerRecord, StoreError>> {
    let text = |i: usize| row.get::<_, Option<String>>(i);
    let (resources, network, bittensor, commune) = (text(5)?, text(6)?, text(7)?, text(8)?);
    let (verification, created, updated, last, status) =
        (text(9)?, text(10)?, text(11)?, text(12)?, text(13)?);
    let (id, name, location, description, registration_type) =
        (row.get(0)?, row.get(1)?, text(2)?, text(3)?, text(4)?);
    Ok((|| {
        Ok(MinerRecord {
            compute_resources: serde_json::from_str(resources.as_deref().unwrap_or("[]"))?,
            network: from_json(network)?,
            bittensor_details: from_json(bittensor)?,
            commune_details: from_json(commune)?,
            verification: verification
                .as_deref()
                .and_then(VerificationStatus::parse)
                .ok_or_else(|| StoreError::Corrupt(format!("verification status of {id}")))?,
            created_at: parse_time(created.as_deref().unwrap_or_default())?,
            updated_at: parse_time(updated.as_deref().unwrap_or_default())?,
            last_heartbeat: last.as_deref().map(parse_time).transpose()?,
            current_status: status.as_deref().map(parse_status).transpose()?,
            id,
            name,
            location,
            description,
            registration_type,
        })
    })())
}

fn from_json<T: serde::de::DeserializeOwned>(
    text: Option<String>,
) -> Result<Option<T>, serde_json::Error> {
    text.map(|t| serde_json::from_str(&t)).transpose()
}

/// What the coordinator keeps in memory about each miner (see [`read_summary`]).
const SUMMARY_SELECT: &str = "SELECT m.id, m.token_hash, s.last_heartbeat, s.current_status,
        s.heartbeat_count, m.token_used
    FROM miners m LEFT JOIN miner_states s ON s.miner_id = m.id";

fn read_summary(row: &Row<'_>) -> rusqlite::Result<Result<MinerSummary, StoreError>> {
    let id: String = row.get(0)?;
    let hash: Vec<u8> = row.get(1)?;
    let last: Option<String> = row.get(2)?;
    let status: Option<String> = row.get(3)?;
    let count: Option<i64> = row.get(4)?;
    let token_used = row.get::<_, i64>(5)? != 0;
    Ok((|| {
        let token_hash = hash
            .try_into()
            .map_err(|_| StoreError::Corrupt(format!("token hash of miner {id}")))?;
        Ok(MinerSummary {
            last_heartbeat: last.as_deref().map(parse_time).transpose()?,
            current_status: status.as_deref().map(parse_status).transpose()?,
            heartbeat_count: count.unwrap_or(0).max(0).unsigned_abs(),
            token_used,
            token_hash,
            id,
        })
    })())
}

fn upsert_state(tx: &Transaction<'_>, state: &MinerState) -> rusqlite::Result<usize> {
    tx.execute(
        "INSERT INTO miner_states (miner_id, last_heartbeat, current_status, heartbeat_count,
            updated_at, current_metrics)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(miner_id) DO UPDATE SET last_heartbeat = ?2, current_status = ?3,
            heartbeat_count = ?4, updated_at = ?5,
            current_metrics = COALESCE(?6, current_metrics)",
        params![
            state.miner_id,
            format_time(state.last_heartbeat),
            state.status.as_str(),
            i64::try_from(state.heartbeat_count).unwrap_or(i64::MAX),
            format_time(state.at),
            state.metrics.as_deref(),
        ],
    )
}

/// Applies one write; returns how many rows it wrote.
fn apply_one(tx: &Transaction<'_>, write: &Write) -> Result<u64, StoreError> {
    let json = |v: &serde_json::Value| v.to_string();
    let changed = match write {
        Write::Register(m) => tx.execute(
            "INSERT INTO miners (id, name, location, description, registration_type,
                compute_resources, verification_status, token_hash, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
            params![
                m.id,
                m.name,
                m.location,
                m.description,
                m.registration_type,
                serde_json::to_string(&m.compute_resources)?,
                VerificationStatus::PendingVerification.as_str(),
                m.token_hash.as_slice(),
                format_time(m.at),
            ],
        )?,
        Write::Verification {
            miner_id,
            status,
            at,
        } => tx.execute(
            "UPDATE miners SET verification_status = ?2, updated_at = ?3 WHERE id = ?1",
            params![miner_id, status.as_str(), format_time(*at)],
        )?,
        Write::Network {
            miner_id,
            network,
            at,
        } => tx.execute(
            "UPDATE miners SET network = ?2, updated_at = ?3 WHERE id = ?1",
            params![miner_id, serde_json::to_string(network)?, format_time(*at)],
        )?,
        Write::Bittensor {
            miner_id,
            details,
            at,
        } => tx.execute(
            "UPDATE miners SET bittensor_details = ?2, updated_at = ?3 WHERE id = ?1",
            params![miner_id, json(details), format_time(*at)],
        )?,
        Write::Commune {
            miner_id,
            details,
            at,
        } => tx.execute(
            "UPDATE miners SET commune_details = ?2, updated_at = ?3 WHERE id = ?1",
            params![miner_id, json(details), format_time(*at)],
        )?,
        Write::RelayKey {
            miner_id,
            public_key,
            at,
        } => tx.execute(
            "INSERT INTO relay_keys (miner_id, public_key, updated_at)
             SELECT id, ?2, ?3 FROM miners WHERE id = ?1
             ON CONFLICT(miner_id) DO UPDATE SET public_key = ?2, updated_at = ?3",
            params![miner_id, public_key, format_time(*at)],
        )?,
        Write::TokenUsed { miner_id } => tx.execute(
            "UPDATE miners SET token_used = 1 WHERE id = ?1",
            params![miner_id],
        )?,
        Write::State(state) => upsert_state(tx, state)?,
        Write::Transition(transition) => {
            let change = &transition.change;
            upsert_state(tx, &transition.state)?
                + tx.execute(
                    "INSERT INTO status_history (miner_id, timestamp, old_status, new_status, reason)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        change.miner_id,
                        format_time(change.timestamp),
                        change.old_status.map(HeartbeatStatus::as_str),
                        change.new_status.as_str(),
                        change.reason,
                    ],
                )?
        }
        // Only coordinators sharing a store read what the others heard.
        Write::Seen(_) => return Ok(0),
        Write::Metrics {
            miner_id,
            at,
            status,
            metrics,
            time_since_last,
        } => tx.execute(
            "INSERT INTO metrics_history (miner_id, timestamp, status, metrics, time_since_last)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                miner_id,
                format_time(*at),
                status.as_str(),
                &**metrics,
                time_since_last
            ],
        )?,
        Write::QueueCommand(c) => tx.execute(
            "INSERT INTO commands (id, miner_id, command, state, reason, created_at, expires_at,
                delivered_at, finished_at)
             SELECT ?1, id, ?3, ?4, ?5, ?6, ?7, ?8, ?9 FROM miners WHERE id = ?2",
            params![
                c.id,
                c.miner_id,
                serde_json::to_string(&c.command)?,
                c.state.as_str(),
                c.reason,
                format_time(c.created_at),
                format_time(c.expires_at),
                c.delivered_at.map(format_time),
                c.finished_at.map(format_time),
            ],
        )?,
        // The two below may change nothing (a command that ended meanwhile; a late report of
        // one that was never delivered): that is their rule, not a bug upstream.
        Write::CommandDelivered { id, at } => {
            tx.execute(
                "UPDATE commands SET state = 'delivered', delivered_at = ?2
                 WHERE id = ?1 AND state = 'queued'",
                params![id, format_time(*at)],
            )?;
            return Ok(1);
        }
        Write::CommandFinished {
            id,
            miner_id,
            state,
            reason,
            at,
        } => {
            // Open commands end in any way; an expired one only by its miner's report, and only
            // when it had been delivered (the agent did act on it).
            tx.execute(
                "UPDATE commands SET state = ?3, reason = ?4, finished_at = ?5
                 WHERE id = ?1 AND miner_id = ?2
                   AND (state IN ('queued', 'delivered')
                        OR (state = 'expired' AND ?3 != 'expired' AND delivered_at IS NOT NULL))",
                params![id, miner_id, state.as_str(), reason, format_time(*at)],
            )?;
            return Ok(1);
        }
    };
    // Updates of a miner that does not exist are a bug upstream (routes check first); say so
    // rather than silently writing nothing.
    if changed == 0 {
        return Err(StoreError::NoSuchMiner(miner_of(write).to_owned()));
    }
    Ok(changed as u64)
}

fn miner_of(write: &Write) -> &str {
    match write {
        Write::Register(m) => &m.id,
        Write::Verification { miner_id, .. }
        | Write::Network { miner_id, .. }
        | Write::Bittensor { miner_id, .. }
        | Write::Commune { miner_id, .. }
        | Write::RelayKey { miner_id, .. }
        | Write::TokenUsed { miner_id }
        | Write::Metrics { miner_id, .. }
        | Write::CommandFinished { miner_id, .. } => miner_id,
        Write::QueueCommand(command) => &command.miner_id,
        Write::State(state) => &state.miner_id,
        Write::Transition(transition) => &transition.change.miner_id,
        Write::CommandDelivered { .. } | Write::Seen(_) => "",
    }
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| StoreError::Corrupt(format!("timestamp {text:?}")))
}

fn parse_status(text: &str) -> Result<HeartbeatStatus, StoreError> {
    HeartbeatStatus::parse(text).ok_or_else(|| StoreError::Corrupt(format!("status {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewMiner, TransitionWrite};

    fn new_miner(id: &str) -> Write {
        Write::Register(Box::new(NewMiner {
            id: id.into(),
            name: "alice".into(),
            location: Some("Kampala".into()),
            description: None,
            registration_type: Some("independent".into()),
            compute_resources: Vec::new(),
            token_hash: [7; 32],
            at: Utc::now(),
        }))
    }

    #[tokio::test]
    async fn the_store_contract_holds() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Arc::new(SqliteStore::open(&dir.path().join("p.db"))?);
        crate::store::contract::holds_for(store).await
    }

    #[tokio::test]
    async fn a_version_3_database_gets_the_commands_table() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("p.db");
        {
            let conn = Connection::open(&path)?;
            conn.execute_batch(&format!(
                "BEGIN; {SCHEMA_V1} {SCHEMA_V2} {SCHEMA_V3} COMMIT;"
            ))?;
        }
        let store = SqliteStore::open(&path)?;
        let at = Utc::now();
        store.apply(vec![new_miner("a")].into()).await?;
        let command = crate::store::StoredCommand {
            id: "c".into(),
            miner_id: "a".into(),
            command: crate::api::Command::Restart {
                target: crate::api::RestartTarget::ComputeSubnet,
            },
            state: CommandState::Queued,
            reason: None,
            created_at: at,
            expires_at: at,
            delivered_at: None,
            finished_at: None,
        };
        store
            .apply(vec![Write::QueueCommand(Box::new(command))].into())
            .await?;
        assert_eq!(store.open_commands().await?.len(), 1);
        let version: i64 = SqliteStore::with(&store.reader, |c| {
            Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?)
        })
        .await?;
        assert_eq!(version, VERSION);
        Ok(())
    }

    #[tokio::test]
    async fn reopening_keeps_state_and_history() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("p.db");
        let at = Utc::now();
        let state = |status| MinerState {
            miner_id: "a".into(),
            last_heartbeat: at,
            status,
            heartbeat_count: 3,
            metrics: None,
            at,
        };
        {
            let store = SqliteStore::open(&path)?;
            store
                .apply(
                    vec![
                        new_miner("a"),
                        Write::State(state(HeartbeatStatus::Online)),
                        Write::Transition(Box::new(TransitionWrite {
                            change: StatusChange {
                                miner_id: "a".into(),
                                timestamp: at,
                                old_status: Some(HeartbeatStatus::Online),
                                new_status: HeartbeatStatus::Offline,
                                reason: "silent".into(),
                            },
                            state: state(HeartbeatStatus::Offline),
                        })),
                    ]
                    .into(),
                )
                .await?;
        }
        let store = SqliteStore::open(&path)?;
        let summary = &store.load_summaries().await?[0];
        assert_eq!(summary.heartbeat_count, 3);
        assert_eq!(summary.current_status, Some(HeartbeatStatus::Offline));
        assert_eq!(summary.token_hash, [7; 32]);
        let history = store.status_history("a").await?;
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].new_status, HeartbeatStatus::Offline);
        Ok(())
    }

    fn key_write(miner_id: &str, key: &str) -> Write {
        Write::RelayKey {
            miner_id: miner_id.into(),
            public_key: key.into(),
            at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn a_version_1_database_is_upgraded_and_keys_replace_each_other()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("p.db");
        {
            let conn = Connection::open(&path)?;
            conn.execute_batch(&format!("BEGIN; {SCHEMA_V1} COMMIT;"))?;
            conn.execute(
                "INSERT INTO miners (id, name, compute_resources, verification_status,
                    token_hash, created_at, updated_at)
                 VALUES ('a', 'alice', '[]', 'pending_verification', ?1, 'x', 'x')",
                [vec![7u8; 32]],
            )?;
        }
        let store = SqliteStore::open(&path)?;
        assert_eq!(store.load_summaries().await?.len(), 1, "v1 rows kept");
        store
            .apply(vec![key_write("a", "ssh-ed25519 AAAA1")].into())
            .await?;
        store
            .apply(vec![key_write("a", "ssh-ed25519 AAAA2")].into())
            .await?;
        assert!(
            store
                .apply(vec![key_write("nobody", "ssh-ed25519 AAAA3")].into())
                .await
                .is_err(),
            "no key for a miner that does not exist"
        );
        drop(store);
        let store = SqliteStore::open(&path)?;
        assert_eq!(
            store.relay_keys().await?,
            [("a".to_owned(), "ssh-ed25519 AAAA2".to_owned())]
        );
        Ok(())
    }
}
