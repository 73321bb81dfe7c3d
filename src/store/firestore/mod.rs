//! The shared store: Google Firestore, for several coordinators working on one set of miners.
//!
//! # Data model
//! Every timestamp is a Firestore timestamp (microseconds), so range queries compare times.
//! JSON payloads are JSON text, as in SQLite: Firestore maps drop nulls and cannot hold
//! integers above `i64::MAX`, so text is what reads back unchanged. `shard` is
//! [`crate::store::shard_of`] of the miner id.
//!
//! | Collection / document id | Fields |
//! |---|---|
//! | `miners/{miner_id}` | `name`, `location`, `description`, `registration_type`, `compute_resources` (JSON text), `network` (JSON text), `bittensor_details` (JSON text), `commune_details` (JSON text), `verification_status`, `token_hash` (lowercase hex of the token's SHA-256, never the token), `token_used` (bool), `relay_key` (OpenSSH line), `relay_key_updated_at`, `created_at`, `updated_at`, `shard` |
//! | `miner_states/{miner_id}` | `miner_id`, `last_heartbeat`, `current_status` (`online`, `degraded`, `offline`), `current_metrics` (JSON text), `heartbeat_count`, `updated_at`, `shard`, `transitions` (status_history rows written for it), `last_transition` (`{µs}/{writer}` of the last one, so a retried commit knows its own) |
//! | `status_history/{miner_id}-{seq:010}` | `miner_id`, `timestamp`, `old_status`, `new_status`, `reason`, `seq` (1, 2, 3… per miner in the order applied: the order of rows with equal timestamps) |
//! | `metrics_history/{miner_id}-{timestamp in µs}` | `miner_id`, `timestamp`, `status`, `metrics` (JSON text), `time_since_last` (seconds) |
//! | `commands/{command_id}` | `miner_id`, `command` (JSON text), `state` (`queued`, `delivered`, `done`, `failed`, `expired`), `reason`, `created_at`, `expires_at`, `delivered_at`, `finished_at` |
//! | `replicas/{replica}` | `replica`, `expires_at`, `updated_at`: a coordinator's membership |
//! | `replica_seen/{part:02}-{replica}` | `replica`, `part` (0, 1, …: at most 10 000 miners a document), `written_at`, `miners`: array of maps `{miner_id, last_heartbeat, status, heartbeats}` |
//!
//! An absent optional field reads as none. Ids Firestore cannot store (`/`, `.`, `..`, `__…__`)
//! are never written and never found.
//!
//! # Writes
//! [`Store::apply`] is one Firestore transaction: it reads the documents the batch depends on,
//! decides (`plan`), and commits each touched document once, with the fields the batch
//! changed. A transition is written only if the stored `current_status` is still its old
//! status (none stored matches anything); otherwise another coordinator recorded it first and
//! it is reported superseded. A state refresh sets `current_status` only when none is stored.
//! Firestore retries a transaction that lost a race (ABORTED) from fresh reads.
//! [`Store::documents_written`] counts the document writes of committed batches and of
//! membership renewals; deletes (pruning, leaving) are not writes.
//!
//! # Time limits
//! Every request has [`REQUEST_TIMEOUT`] (for a streamed read: each wait for the next
//! document), and every call [`CALL_TIMEOUT`] in all (pruning: each chunk), except the full
//! scans read at start-up, whose length grows with the fleet: an outage is a transient error,
//! never a hang. The
//! batching writer retries transient errors with backoff, so an outage loses no write.
//!
//! # Indexes
//! Every query filters on one field (or on the document name) and sorts in memory, so none
//! needs a composite index: the single-field indexes Firestore keeps by default are enough.

mod docs;
mod plan;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use firestore::errors::{BackoffError, FirestoreError};
use firestore::gcloud_sdk::GoogleAuthHeaders;
use firestore::select_filter_builder::FirestoreQueryFilterBuilder;
use firestore::{
    FirestoreDb, FirestoreDbOptions, FirestoreDocument, FirestoreQueryFilter,
    FirestoreTransactionOps, FirestoreTransactionOptions, FirestoreValue,
};
use futures_util::{FutureExt, TryStreamExt};

use self::docs::{
    COMMANDS, CommandDoc, HISTORY, HistoryDoc, METRICS, MINERS, MinerDoc, REPLICAS, RelayKeyDoc,
    ReplicaDoc, SEEN, STATES, SeenDocDoc, StateDoc, StatusDoc,
};
use self::plan::{Body, DocWrite, Loaded};
use super::{
    Applied, Member, MinerRecord, MinerSummary, Peers, SeenDoc, StatusChange, Store, StoreError,
    StoredCommand, Write,
};
use crate::api::CommandState;

/// Where a Firestore store is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FirestoreSettings {
    /// The Google Cloud project.
    pub project: String,
    /// The database; `None` is `(default)`.
    pub database: Option<String>,
    /// `host:port` of a Firestore emulator (from `FIRESTORE_EMULATOR_HOST`). Set, the store
    /// talks to it without credentials; unset, to Google's Firestore with the Application
    /// Default Credentials.
    pub emulator: Option<String>,
}

/// The Firestore implementation of [`Store`] and [`Peers`]. Cheap to clone.
#[derive(Clone)]
pub struct FirestoreStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: FirestoreDb,
    /// Documents written by committed batches and membership renewals.
    written: AtomicU64,
    /// Which database, for messages: `project p, database d` and where.
    place: String,
    /// A random name of this process, for the transitions it writes (see `plan.rs`).
    writer: String,
}

impl std::fmt::Debug for FirestoreStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirestoreStore")
            .field("place", &self.inner.place)
            .finish_non_exhaustive()
    }
}

/// The longest one request waits for Firestore (for a streamed read, each next document).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest one store call waits in all (except the start-up scans, see the module comment).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`FirestoreStore::connect`] tries before it says why it cannot connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Writes per batch: at most two documents each (a transition writes its history row and the
/// state), so a commit stays under Firestore's 500 writes.
const MAX_BATCH: usize = 200;
/// Firestore's limit on the writes of one commit.
const MAX_COMMIT: usize = 500;
/// Metrics samples deleted per commit by [`Store::prune_metrics`].
const PRUNE_CHUNK: u32 = 500;

const EMULATOR_VAR: &str = "FIRESTORE_EMULATOR_HOST";
const CREDENTIALS_VAR: &str = "GOOGLE_APPLICATION_CREDENTIALS";
const PROJECT_VAR: &str = "POLARIS_FIRESTORE_PROJECT";
const DATABASE_VAR: &str = "POLARIS_FIRESTORE_DATABASE";
const GOOGLE_URL: &str = "https://firestore.googleapis.com";

/// How [`FirestoreStore::connect_with`] authenticates.
#[derive(Debug, Clone)]
enum Credentials {
    /// None: the emulator does not check.
    Emulator,
    /// Application Default Credentials; `key_file` is what `GOOGLE_APPLICATION_CREDENTIALS`
    /// names, read here so that a bad file is one clear error.
    Google { key_file: Option<PathBuf> },
}

impl FirestoreStore {
    /// Connects and proves it works with one small read, within [`CONNECT_TIMEOUT`]: a missing
    /// project, unusable credentials or an unreachable Firestore (or emulator) is one
    /// [`StoreError::Unusable`] that says what to fix.
    pub async fn connect(settings: &FirestoreSettings) -> Result<Self, StoreError> {
        let credentials = match settings.emulator {
            Some(_) => Credentials::Emulator,
            None => Credentials::Google {
                key_file: std::env::var_os(CREDENTIALS_VAR)
                    .filter(|path| !path.is_empty())
                    .map(PathBuf::from),
            },
        };
        Self::connect_with(settings, credentials).await
    }

    async fn connect_with(
        settings: &FirestoreSettings,
        credentials: Credentials,
    ) -> Result<Self, StoreError> {
        if settings.project.trim().is_empty() {
            return Err(StoreError::Unusable(format!(
                "no Firestore project is set: pass --firestore-project or set {PROJECT_VAR} (server.firestore_project in polaris.toml)"
            )));
        }
        let attempt = async {
            let store = Self::open(settings, credentials).await?;
            store.probe().await?;
            Ok(store)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(outcome) => outcome.map_err(|cause: String| StoreError::Unusable(cause)),
            Err(_) => Err(StoreError::Unusable(not_answered(settings))),
        }
    }

    /// A client of the database `settings` name; nothing is read yet.
    async fn open(settings: &FirestoreSettings, credentials: Credentials) -> Result<Self, String> {
        let database = settings
            .database
            .clone()
            .unwrap_or_else(|| firestore::FIREBASE_DEFAULT_DATABASE_ID.to_owned());
        let url = match &settings.emulator {
            Some(host) if host.contains("://") => host.clone(),
            Some(host) => format!("http://{host}"),
            None => GOOGLE_URL.to_owned(),
        };
        let options = FirestoreDbOptions::new(settings.project.clone())
            .with_database_id(database.clone())
            .with_firebase_api_url(url)
            .with_request_timeout(REQUEST_TIMEOUT)
            .with_max_retries(1);
        let auth = match credentials {
            Credentials::Emulator => GoogleAuthHeaders::from(
                firestore::gcloud_sdk::google_cloud_auth::credentials::anonymous::Builder::new()
                    .build(),
            ),
            Credentials::Google {
                key_file: Some(path),
            } => key_file_credentials(&path).await?,
            Credentials::Google { key_file: None } => GoogleAuthHeaders::from_adc_with_scopes(
                firestore::gcloud_sdk::GCP_DEFAULT_SCOPES.clone(),
            )
            .await
            .map_err(|err| {
                format!(
                    "no usable Google credentials ({err}): set {CREDENTIALS_VAR} to a service account key file, or run `gcloud auth application-default login`; for the emulator set {EMULATOR_VAR}"
                )
            })?,
        };
        let db = FirestoreDb::with_options_auth(options, auth)
            .await
            .map_err(|err| unreachable(settings, &err))?;
        let place = match &settings.emulator {
            Some(host) => format!(
                "project {}, database {database}, emulator {host}",
                settings.project
            ),
            None => format!("project {}, database {database}", settings.project),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                written: AtomicU64::new(0),
                writer: format!("{:016x}", rand::random::<u64>()),
                place,
            }),
        })
    }

    /// One read of at most one document: proves the address, the credentials and the database.
    /// (A get of a missing document would not: Firestore answers NOT_FOUND for a missing
    /// database too.)
    async fn probe(&self) -> Result<(), String> {
        self.db()
            .fluent()
            .select()
            .from(REPLICAS)
            .limit(1)
            .query()
            .await
            .map(drop)
            .map_err(|err| refused_probe(&self.inner.place, self.is_emulator(), &err))
    }

    fn is_emulator(&self) -> bool {
        self.inner.place.contains(", emulator ")
    }

    fn db(&self) -> &FirestoreDb {
        &self.inner.db
    }

    /// The full name of a document, as `__name__` filters compare it.
    fn reference(&self, collection: &str, id: &str) -> FirestoreValue {
        use firestore::gcloud_sdk::google::firestore::v1::{Value, value::ValueType};
        FirestoreValue::from(Value {
            value_type: Some(ValueType::ReferenceValue(format!(
                "{}/{collection}/{id}",
                self.db().get_documents_path()
            ))),
        })
    }

    async fn get(
        &self,
        collection: &str,
        id: &str,
    ) -> Result<Option<FirestoreDocument>, StoreError> {
        if !docs::valid_id(id) {
            return Ok(None);
        }
        self.db()
            .fluent()
            .select()
            .by_id_in(collection)
            .one(id)
            .await
            .map_err(backend)
    }

    /// The documents of `collection` with these ids, read in one request (in `db`'s
    /// transaction, when it has one).
    async fn get_many<T: for<'de> serde::Deserialize<'de>>(
        db: &FirestoreDb,
        collection: &str,
        ids: impl IntoIterator<Item = &String>,
    ) -> Result<HashMap<String, T>, StoreError> {
        let ids: Vec<&String> = ids.into_iter().collect();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let found: Vec<(String, Option<FirestoreDocument>)> = db
            .fluent()
            .select()
            .by_id_in(collection)
            .batch_with_errors(ids)
            .await
            .map_err(backend)?
            .try_collect()
            .await
            .map_err(backend)?;
        found
            .into_iter()
            .filter_map(|(id, doc)| doc.map(|doc| Ok((id, docs::read(&doc)?))))
            .collect()
    }

    /// The documents of `collection` that `filter` keeps (all when it gives no filter), only
    /// `fields` of each when given, at most `limit`.
    async fn find(
        &self,
        collection: &str,
        fields: Option<&[&str]>,
        filter: impl Fn(FirestoreQueryFilterBuilder) -> Option<FirestoreQueryFilter>,
        limit: Option<u32>,
    ) -> Result<Vec<FirestoreDocument>, StoreError> {
        let select = self.db().fluent().select();
        let select = match fields {
            Some(fields) => select.fields(fields),
            None => select,
        };
        let query = select.from(collection).filter(filter);
        let query = match limit {
            Some(limit) => query.limit(limit),
            None => query,
        };
        query.query().await.map_err(backend)
    }

    async fn apply_once(&self, batch: Arc<[Write]>) -> Result<Applied, StoreError> {
        let options =
            FirestoreTransactionOptions::new().with_retry_max_elapsed_time(CALL_TIMEOUT / 2);
        let outcome = self
            .db()
            .run_transaction_with_options(
                |db, transaction| {
                    let batch = Arc::clone(&batch);
                    let writer = self.inner.writer.clone();
                    async move {
                        let needs = plan::needs(&batch);
                        let (miners, states, commands) = tokio::try_join!(
                            Self::get_many::<MinerDoc>(&db, MINERS, &needs.miners),
                            Self::get_many::<StateDoc>(&db, STATES, &needs.states),
                            Self::get_many::<CommandDoc>(&db, COMMANDS, &needs.commands),
                        )
                        .map_err(retry_if_transient)?;
                        let loaded = Loaded {
                            miners,
                            states,
                            commands,
                        };
                        let plan = plan::plan(&batch, loaded, &writer).map_err(BackoffError::Permanent)?;
                        if plan.writes.len() > MAX_COMMIT {
                            return Err(BackoffError::Permanent(StoreError::Backend {
                                backend: "firestore",
                                message: format!(
                                    "a batch of {} writes makes {} document writes, more than one commit takes ({MAX_COMMIT})",
                                    batch.len(),
                                    plan.writes.len()
                                ),
                                transient: false,
                            }));
                        }
                        let written = plan.writes.len() as u64;
                        for write in plan.writes {
                            queue(transaction, write)
                                .map_err(|err| BackoffError::Permanent(backend(err)))?;
                        }
                        Ok((plan.superseded, written))
                    }
                    .boxed()
                },
                options,
            )
            .await;
        match outcome {
            Ok((superseded, written)) => {
                self.inner.written.fetch_add(written, Ordering::Relaxed);
                Ok(Applied { superseded })
            }
            Err(err) => Err(backend(err)),
        }
    }
}

/// Queues one planned document write on the transaction.
fn queue<O: FirestoreTransactionOps>(
    transaction: &mut O,
    write: DocWrite,
) -> Result<(), FirestoreError> {
    fn put<O: FirestoreTransactionOps, T: serde::Serialize + Sync + Send>(
        transaction: &mut O,
        collection: &str,
        id: &str,
        doc: &T,
        mask: Option<Vec<String>>,
    ) -> Result<(), FirestoreError> {
        transaction
            .update_object(collection, id, doc, mask, None, Vec::new())
            .map(drop)
    }
    let DocWrite {
        collection,
        id,
        body,
        mask,
    } = write;
    match &body {
        Body::Miner(doc) => put(transaction, collection, &id, doc, mask),
        Body::State(doc) => put(transaction, collection, &id, doc, mask),
        Body::Command(doc) => put(transaction, collection, &id, doc, mask),
        Body::History(doc) => put(transaction, collection, &id, doc, mask),
        Body::Metrics(doc) => put(transaction, collection, &id, doc, mask),
        Body::Seen(doc) => put(transaction, collection, &id, doc, mask),
    }
}

/// Runs `call` within [`CALL_TIMEOUT`]; running out is a transient error.
async fn bounded<T>(
    what: &str,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Backend {
                backend: "firestore",
                message: format!("{what} got no answer within {} s", CALL_TIMEOUT.as_secs()),
                transient: true,
            })
        })
}

/// A read that failed inside the transaction: retried there from the start when it may pass.
fn retry_if_transient(err: StoreError) -> BackoffError<StoreError> {
    if err.is_transient() {
        BackoffError::transient(err)
    } else {
        BackoffError::Permanent(err)
    }
}

/// Sorts Firestore's errors into the store's: transient where the same request may pass later
/// (unavailable, deadline, aborted, quota, internal, a connection or a token fetch that
/// failed), permanent otherwise.
fn backend(err: FirestoreError) -> StoreError {
    match err {
        FirestoreError::ErrorInTransaction(inner) => match inner.source.downcast::<StoreError>() {
            Ok(ours) => *ours,
            Err(other) => StoreError::Backend {
                backend: "firestore",
                message: other.to_string(),
                transient: false,
            },
        },
        other => StoreError::Backend {
            backend: "firestore",
            transient: is_transient(&other),
            message: other.to_string(),
        },
    }
}

fn is_transient(err: &FirestoreError) -> bool {
    match err {
        FirestoreError::DatabaseError(db) => {
            db.retry_possible
                || matches!(
                    db.public.code.as_str(),
                    "Unavailable"
                        | "DeadlineExceeded"
                        | "Aborted"
                        | "ResourceExhausted"
                        | "Internal"
                        | "Cancelled"
                        | "CONNECTION_CLOSED"
                        | "CONNECTION_TIMEOUT"
                        | "CONNECTION_ERROR"
                )
                // A token that could not be fetched for now: google-cloud-auth's words for a
                // transient credentials error (the request never reached Firestore).
                || db.details.contains("future attempts may succeed")
        }
        FirestoreError::NetworkError(_) => true,
        FirestoreError::SystemError(_)
        | FirestoreError::DataConflictError(_)
        | FirestoreError::DataNotFoundError(_)
        | FirestoreError::InvalidParametersError(_)
        | FirestoreError::SerializeError(_)
        | FirestoreError::DeserializeError(_)
        | FirestoreError::ErrorInTransaction(_)
        | FirestoreError::CacheError(_) => false,
    }
}

/// Credentials from the key file `GOOGLE_APPLICATION_CREDENTIALS` names. A service account key
/// is used as read; other kinds (user credentials, workload identity) go through the standard
/// lookup, which reads the same variable. The file's contents are never quoted.
async fn key_file_credentials(path: &Path) -> Result<GoogleAuthHeaders, String> {
    let named = format!("{CREDENTIALS_VAR} names {}", path.display());
    let fix = format!(
        "point {CREDENTIALS_VAR} at a service account key file (JSON), or unset it to use `gcloud auth application-default login`"
    );
    let text = tokio::fs::read(path)
        .await
        .map_err(|err| format!("{named}, which cannot be read ({err}): {fix}"))?;
    let json: serde_json::Value = serde_json::from_slice(&text).map_err(|err| {
        format!(
            "{named}, which is not a credentials file (not JSON: line {}, column {}): {fix}",
            err.line(),
            err.column()
        )
    })?;
    match json.get("type").and_then(serde_json::Value::as_str) {
        Some("service_account") => GoogleAuthHeaders::from_service_account_key(
            json,
            firestore::gcloud_sdk::GCP_DEFAULT_SCOPES.clone(),
        )
        .await
        .map_err(|_| {
            format!("{named}, which is not a usable service account key (fields missing or malformed): {fix}")
        }),
        Some(_) => GoogleAuthHeaders::from_adc_with_scopes(
            firestore::gcloud_sdk::GCP_DEFAULT_SCOPES.clone(),
        )
        .await
        .map_err(|err| format!("{named}, whose credentials cannot be used ({err}): {fix}")),
        None => Err(format!(
            "{named}, which is not a credentials file (no \"type\" field): {fix}"
        )),
    }
}

/// The connection itself failed (before any credentials were asked).
fn unreachable(settings: &FirestoreSettings, err: &FirestoreError) -> String {
    let err = root_cause(&err.to_string());
    match &settings.emulator {
        Some(host) => format!(
            "cannot reach the Firestore emulator at {host} ({EMULATOR_VAR}): {err}. Start it, or fix {EMULATOR_VAR} (host:port)"
        ),
        None => format!(
            "cannot reach Firestore at {GOOGLE_URL}: {err}. Check the network (DNS, proxy, firewall); for the emulator set {EMULATOR_VAR}"
        ),
    }
}

/// The words of the innermost error of a transport failure. The firestore crate flattens the
/// chain into one text that quotes the gRPC layers' debug forms (`ConnectError("tcp connect
/// error", …, Os { …, message: "Connection refused" })`); the operator needs only the last
/// quoted reason. Text without one is kept whole.
fn root_cause(text: &str) -> String {
    for marker in ["message: \"", "error: \""] {
        if let Some(start) = text.rfind(marker).map(|i| i + marker.len())
            && let Some(len) = text[start..].find('"')
        {
            return text[start..start + len].to_owned();
        }
    }
    text.to_owned()
}

/// The probe read failed: the address answers, but the database, the project or the
/// credentials do not do.
fn refused_probe(place: &str, emulator: bool, err: &FirestoreError) -> String {
    if emulator {
        format!(
            "the Firestore emulator ({place}; {EMULATOR_VAR}) refused a read: {err}. Fix {EMULATOR_VAR} (host:port of a Firestore emulator)"
        )
    } else {
        format!(
            "cannot use Firestore ({place}): {err}. Check {PROJECT_VAR}, {DATABASE_VAR} and the credentials: {CREDENTIALS_VAR} (a service account key file) or `gcloud auth application-default login`; the account needs the Cloud Datastore User role"
        )
    }
}

fn not_answered(settings: &FirestoreSettings) -> String {
    let secs = CONNECT_TIMEOUT.as_secs();
    match &settings.emulator {
        Some(host) => format!(
            "the Firestore emulator at {host} ({EMULATOR_VAR}) did not answer within {secs} s: start it, or fix {EMULATOR_VAR} (host:port)"
        ),
        None => format!(
            "Firestore (project {}) did not answer within {secs} s: check the network path to firestore.googleapis.com and the credentials ({CREDENTIALS_VAR}, or `gcloud auth application-default login`; on Google Cloud, the metadata server); for the emulator set {EMULATOR_VAR}",
            settings.project
        ),
    }
}

#[async_trait]
impl Store for FirestoreStore {
    /// Two full scans (miners, miner_states), only the fields a summary needs.
    async fn load_summaries(&self) -> Result<Vec<MinerSummary>, StoreError> {
        let (miners, states) = tokio::try_join!(
            self.find(MINERS, Some(&["token_hash", "token_used"]), |_| None, None),
            self.find(
                STATES,
                Some(&["last_heartbeat", "current_status", "heartbeat_count"]),
                |_| None,
                None
            ),
        )?;
        let states: HashMap<String, StatusDoc> = states
            .iter()
            .map(|doc| Ok((docs::doc_id(doc).to_owned(), docs::read(doc)?)))
            .collect::<Result<_, StoreError>>()?;
        miners
            .iter()
            .map(|doc| {
                let id = docs::doc_id(doc).to_owned();
                let state = states.get(&id);
                docs::summary(id, &docs::read(doc)?, state)
            })
            .collect()
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    async fn apply(&self, batch: Arc<[Write]>) -> Result<Applied, StoreError> {
        if batch.is_empty() {
            return Ok(Applied::default());
        }
        bounded("a batch", self.apply_once(batch)).await
    }

    fn documents_written(&self) -> u64 {
        self.inner.written.load(Ordering::Relaxed)
    }

    async fn summary(&self, id: &str) -> Result<Option<MinerSummary>, StoreError> {
        bounded("a miner's summary", async {
            let (miner, state) = tokio::try_join!(self.get(MINERS, id), self.get(STATES, id))?;
            let Some(miner) = miner else { return Ok(None) };
            let state: Option<StatusDoc> = state.as_ref().map(docs::read).transpose()?;
            docs::summary(id.to_owned(), &docs::read(&miner)?, state.as_ref()).map(Some)
        })
        .await
    }

    async fn summary_by_token(
        &self,
        token_hash: &[u8; 32],
    ) -> Result<Option<MinerSummary>, StoreError> {
        bounded("a miner by token", async {
            let hex = docs::hex_hash(token_hash);
            let found = self
                .find(
                    MINERS,
                    Some(&["token_hash", "token_used"]),
                    |q| q.field("token_hash").eq(hex.as_str()),
                    Some(1),
                )
                .await?;
            let Some(miner) = found.first() else {
                return Ok(None);
            };
            let id = docs::doc_id(miner).to_owned();
            let state = self.get(STATES, &id).await?;
            let state: Option<StatusDoc> = state.as_ref().map(docs::read).transpose()?;
            docs::summary(id, &docs::read(miner)?, state.as_ref()).map(Some)
        })
        .await
    }

    /// Deletes in commits of 500 documents, each within [`CALL_TIMEOUT`].
    async fn prune_metrics(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let before = docs::timestamp(before)?;
        let mut deleted = 0;
        loop {
            let chunk = bounded("pruning metrics_history", async {
                let old = self
                    .find(
                        METRICS,
                        Some(&[]),
                        |q| q.field("timestamp").less_than(before),
                        Some(PRUNE_CHUNK),
                    )
                    .await?;
                if old.is_empty() {
                    return Ok(0);
                }
                let mut transaction = self.db().begin_transaction().await.map_err(backend)?;
                for doc in &old {
                    transaction
                        .delete_by_id(METRICS, docs::doc_id(doc), None)
                        .map_err(backend)?;
                }
                transaction.commit().await.map_err(backend)?;
                Ok(old.len())
            })
            .await?;
            deleted += chunk as u64;
            if chunk < PRUNE_CHUNK as usize {
                return Ok(deleted);
            }
        }
    }

    async fn miner(&self, id: &str) -> Result<Option<MinerRecord>, StoreError> {
        bounded("a miner", async {
            let (miner, state) = tokio::try_join!(self.get(MINERS, id), self.get(STATES, id))?;
            let Some(miner) = miner else { return Ok(None) };
            let state: Option<StatusDoc> = state.as_ref().map(docs::read).transpose()?;
            let miner: MinerDoc = docs::read(&miner)?;
            docs::record(id.to_owned(), &miner, state.as_ref()).map(Some)
        })
        .await
    }

    async fn miners(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<MinerRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let after = match after.filter(|id| !id.is_empty()) {
            Some(id) if !docs::valid_id(&id) => {
                return Err(StoreError::Backend {
                    backend: "firestore",
                    message: format!("cannot list miners after {id:?}: not a miner id"),
                    transient: false,
                });
            }
            after => after.map(|id| self.reference(MINERS, &id)),
        };
        bounded("a page of miners", async {
            let page = self
                .db()
                .fluent()
                .select()
                .from(MINERS)
                .filter(|q| {
                    q.for_all(
                        after
                            .clone()
                            .map(|after| q.field("__name__").greater_than(after)),
                    )
                })
                .order(|o| o.fields([o.field("__name__").asc()]))
                .limit(u32::try_from(limit).unwrap_or(u32::MAX))
                .query()
                .await
                .map_err(backend)?;
            let ids: Vec<String> = page
                .iter()
                .map(|doc| docs::doc_id(doc).to_owned())
                .collect();
            let states: HashMap<String, StatusDoc> =
                Self::get_many(self.db(), STATES, &ids).await?;
            page.iter()
                .zip(ids)
                .map(|(doc, id)| {
                    let miner: MinerDoc = docs::read(doc)?;
                    let state = states.get(&id);
                    docs::record(id, &miner, state)
                })
                .collect()
        })
        .await
    }

    /// In `seq` order: the order the transitions were applied in.
    async fn status_history(&self, miner_id: &str) -> Result<Vec<StatusChange>, StoreError> {
        bounded("a miner's status history", async {
            let rows = self
                .find(HISTORY, None, |q| q.field("miner_id").eq(miner_id), None)
                .await?;
            let mut rows: Vec<(HistoryDoc, String)> = rows
                .iter()
                .map(|doc| {
                    let what = format!("{HISTORY}/{}", docs::doc_id(doc));
                    Ok((docs::read(doc)?, what))
                })
                .collect::<Result<_, StoreError>>()?;
            rows.sort_by_key(|(row, _)| row.seq);
            rows.iter()
                .map(|(row, what)| docs::change(row, what))
                .collect()
        })
        .await
    }

    /// A scan of the miners that have a key, the key field only.
    async fn relay_keys(&self) -> Result<Vec<(String, String)>, StoreError> {
        let found = self
            .find(
                MINERS,
                Some(&["relay_key"]),
                |q| q.field("relay_key").is_not_null(),
                None,
            )
            .await?;
        let mut keys: Vec<(String, String)> = found
            .iter()
            .map(|doc| {
                let key: RelayKeyDoc = docs::read(doc)?;
                Ok((docs::doc_id(doc).to_owned(), key.relay_key))
            })
            .collect::<Result<_, StoreError>>()?;
        keys.sort();
        Ok(keys)
    }

    /// A scan of the open commands, oldest first.
    async fn open_commands(&self) -> Result<Vec<StoredCommand>, StoreError> {
        let open = [
            CommandState::Queued.as_str(),
            CommandState::Delivered.as_str(),
        ];
        let found = self
            .find(COMMANDS, None, |q| q.field("state").is_in(open), None)
            .await?;
        let mut commands = read_commands(&found)?;
        commands.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(commands)
    }

    /// All of the miner's commands, sorted here (no composite index needed): a miner has few.
    async fn commands(
        &self,
        miner_id: &str,
        limit: usize,
    ) -> Result<Vec<StoredCommand>, StoreError> {
        bounded("a miner's commands", async {
            let found = self
                .find(COMMANDS, None, |q| q.field("miner_id").eq(miner_id), None)
                .await?;
            let mut commands = read_commands(&found)?;
            commands.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
            commands.truncate(limit);
            Ok(commands)
        })
        .await
    }
}

fn read_commands(found: &[FirestoreDocument]) -> Result<Vec<StoredCommand>, StoreError> {
    found
        .iter()
        .map(|doc| {
            let command: CommandDoc = docs::read(doc)?;
            docs::command(docs::doc_id(doc).to_owned(), &command)
        })
        .collect()
}

#[async_trait]
impl Peers for FirestoreStore {
    async fn renew_membership(
        &self,
        replica: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<Member>, StoreError> {
        if !docs::valid_id(replica) {
            return Err(StoreError::Backend {
                backend: "firestore",
                message: format!("replica name {replica:?} cannot be a Firestore document id"),
                transient: false,
            });
        }
        bounded("renewing a membership", async {
            let doc = ReplicaDoc {
                replica: replica.to_owned(),
                expires_at: docs::timestamp(until)?,
                updated_at: docs::timestamp(now)?,
            };
            let _: ReplicaDoc = self
                .db()
                .fluent()
                .update()
                .in_col(REPLICAS)
                .document_id(replica)
                .object(&doc)
                .execute()
                .await
                .map_err(backend)?;
            self.inner.written.fetch_add(1, Ordering::Relaxed);
            let now = docs::timestamp(now)?;
            let found = self
                .find(
                    REPLICAS,
                    None,
                    |q| q.field("expires_at").greater_than(now),
                    None,
                )
                .await?;
            let mut members: Vec<Member> = found
                .iter()
                .map(|doc| {
                    let what = format!("{REPLICAS}/{}", docs::doc_id(doc));
                    let member: ReplicaDoc = docs::read(doc)?;
                    Ok(Member {
                        expires_at: docs::time(member.expires_at, &what)?,
                        replica: member.replica,
                    })
                })
                .collect::<Result<_, StoreError>>()?;
            members.sort_by(|a, b| a.replica.cmp(&b.replica));
            Ok(members)
        })
        .await
    }

    async fn leave(&self, replica: &str) -> Result<(), StoreError> {
        if !docs::valid_id(replica) {
            return Ok(());
        }
        bounded("leaving", async {
            self.db()
                .fluent()
                .delete()
                .from(REPLICAS)
                .document_id(replica)
                .execute()
                .await
                .map_err(backend)
        })
        .await
    }

    /// One query on `written_at`; the asking replica's own are dropped here.
    async fn seen_since(
        &self,
        replica: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<SeenDoc>, StoreError> {
        bounded("reading what the other coordinators saw", async {
            let since = docs::timestamp(since)?;
            let filter =
                |q: FirestoreQueryFilterBuilder| q.field("written_at").greater_than_or_equal(since);
            let found = self.find(SEEN, None, filter, None).await?;
            let mut seen = Vec::new();
            for doc in &found {
                let what = format!("{SEEN}/{}", docs::doc_id(doc));
                // One document this version cannot read (a newer coordinator's, one a tool
                // edited) must not hide every other one: it is skipped and named.
                let read = docs::read::<SeenDocDoc>(doc).and_then(|stored| {
                    (stored.replica != replica)
                        .then(|| docs::seen(&stored, &what))
                        .transpose()
                });
                match read {
                    Ok(Some(doc)) => seen.push(doc),
                    Ok(None) => {}
                    Err(err) => tracing::warn!(document = %what, error = %err, "another coordinator's news is unreadable; skipped"),
                }
            }
            seen.sort_by(|a, b| (&a.replica, a.part).cmp(&(&b.replica, b.part)));
            Ok(seen)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_transport_failure_is_told_by_its_innermost_reason() {
        let refused = "Firestore system/internal error: Error code: GrpcStatus(tonic::transport::Error(Transport, ConnectError(ConnectError(\"tcp connect error\", 127.0.0.1:1, Os { code: 111, kind: ConnectionRefused, message: \"Connection refused\" })))). GCloud system error: Tonic/gRPC error: transport error";
        assert_eq!(root_cause(refused), "Connection refused");
        let dns = "… ConnectError(\"dns error\", Custom { kind: Uncategorized, error: \"failed to lookup address information: Name or service not known\" }))) …";
        assert_eq!(
            root_cause(dns),
            "failed to lookup address information: Name or service not known"
        );
        assert_eq!(root_cause("deadline has elapsed"), "deadline has elapsed");
    }
    use std::time::Instant;

    use super::*;
    use crate::testing::{firestore_emulator, unique_project};

    type Outcome = Result<(), Box<dyn std::error::Error>>;

    fn settings(project: String, emulator: Option<String>) -> FirestoreSettings {
        FirestoreSettings {
            project,
            database: None,
            emulator,
        }
    }

    /// Settings for a project of its own on the test emulator; `None` (a recorded skip) when
    /// there is none.
    fn emulated(label: &str) -> Option<FirestoreSettings> {
        firestore_emulator().map(|host| settings(unique_project(label), Some(host)))
    }

    #[tokio::test]
    async fn the_store_contract_holds() -> Outcome {
        let Some(settings) = emulated("contract") else {
            return Ok(());
        };
        let store = FirestoreStore::connect(&settings).await?;
        crate::store::contract::holds_for(Arc::new(store)).await
    }

    #[tokio::test]
    async fn the_shared_store_contract_holds_for_two_clients() -> Outcome {
        let Some(settings) = emulated("shared") else {
            return Ok(());
        };
        let first = FirestoreStore::connect(&settings).await?;
        let second = FirestoreStore::connect(&settings).await?;
        crate::store::contract::holds_for_shared(
            Arc::new(first.clone()),
            Arc::new(second),
            Arc::new(first),
        )
        .await
    }

    #[tokio::test]
    async fn a_closed_port_fails_fast_naming_the_emulator_and_its_address() -> Outcome {
        // A port nothing listens on: taken from the system, then let go.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let address = format!("127.0.0.1:{port}");
        let started = Instant::now();
        let outcome = FirestoreStore::connect(&settings("p".into(), Some(address.clone()))).await;
        let err = outcome.err().ok_or("connected to a closed port")?;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        let text = err.to_string();
        assert!(matches!(err, StoreError::Unusable(_)), "{text}");
        assert!(
            text.contains(EMULATOR_VAR) && text.contains(&address),
            "{text}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_bad_credentials_file_fails_fast_naming_the_variable_not_its_contents() -> Outcome {
        let dir = tempfile::tempdir()?;
        let marker = "SECRET-MARKER-7f3a";
        let garbage = dir.path().join("garbage.json");
        std::fs::write(&garbage, format!("not json at all {marker}"))?;
        let not_a_key = dir.path().join("not-a-key.json");
        std::fs::write(
            &not_a_key,
            format!(r#"{{"type": "service_account", "private_key": "{marker}"}}"#),
        )?;
        let missing = dir.path().join("missing.json");
        for path in [garbage, not_a_key, missing] {
            let started = Instant::now();
            let outcome = FirestoreStore::connect_with(
                &settings("p".into(), None),
                Credentials::Google {
                    key_file: Some(path.clone()),
                },
            )
            .await;
            let text = outcome.err().ok_or("connected with garbage")?.to_string();
            assert!(started.elapsed() < Duration::from_secs(5), "{text}");
            assert!(text.contains(CREDENTIALS_VAR), "{text}");
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(!text.contains(marker), "the file's contents leaked: {text}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn no_project_is_one_error_naming_the_setting() -> Outcome {
        let outcome = FirestoreStore::connect(&settings(" ".into(), Some("x:1".into()))).await;
        let text = outcome
            .err()
            .ok_or("connected without a project")?
            .to_string();
        assert!(text.contains(PROJECT_VAR), "{text}");
        Ok(())
    }

    #[test]
    fn firestore_errors_are_transient_only_where_waiting_may_help() {
        use firestore::gcloud_sdk::tonic::{Code, Status};
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::ResourceExhausted,
            Code::Internal,
        ] {
            let err = backend(FirestoreError::from(Status::new(code, "x")));
            assert!(err.is_transient(), "{code:?}: {err}");
        }
        for code in [
            Code::InvalidArgument,
            Code::PermissionDenied,
            Code::FailedPrecondition,
            Code::NotFound,
            Code::AlreadyExists,
        ] {
            let err = backend(FirestoreError::from(Status::new(code, "x")));
            assert!(!err.is_transient(), "{code:?}: {err}");
        }
    }

    fn new_miner(id: &str, at: DateTime<Utc>) -> Write {
        Write::Register(Box::new(crate::store::NewMiner {
            id: id.into(),
            name: format!("name-{id}"),
            location: None,
            description: None,
            registration_type: None,
            compute_resources: Vec::new(),
            token_hash: [1; 32],
            at,
        }))
    }

    /// The largest batch the writer hands over: as many transitions (two documents each, and
    /// a read) as [`Store::max_batch`] allows, in one commit, far within [`CALL_TIMEOUT`].
    #[tokio::test]
    async fn a_full_batch_of_transitions_commits_well_within_the_call_timeout() -> Outcome {
        let Some(settings) = emulated("full-batch") else {
            return Ok(());
        };
        let store = FirestoreStore::connect(&settings).await?;
        let at = Utc::now();
        let ids: Vec<String> = (0..store.max_batch()).map(|i| format!("f{i:03}")).collect();
        store
            .apply(ids.iter().map(|id| new_miner(id, at)).collect())
            .await?;
        let batch: Arc<[Write]> = ids
            .iter()
            .map(|id| {
                Write::Transition(Box::new(crate::store::TransitionWrite {
                    change: StatusChange {
                        miner_id: id.clone(),
                        timestamp: at,
                        old_status: None,
                        new_status: crate::api::HeartbeatStatus::Online,
                        reason: "first heartbeat".into(),
                    },
                    state: crate::store::MinerState {
                        miner_id: id.clone(),
                        last_heartbeat: at,
                        status: crate::api::HeartbeatStatus::Online,
                        heartbeat_count: 1,
                        metrics: Some(r#"{"cpu_usage": 12.5}"#.into()),
                        at,
                    },
                }))
            })
            .collect();
        let before = store.documents_written();
        let started = Instant::now();
        let applied = store.apply(batch).await?;
        let took = started.elapsed();
        eprintln!(
            "{} transitions ({} documents) committed in {took:?}",
            ids.len(),
            store.documents_written() - before
        );
        assert!(applied.superseded.is_empty());
        assert_eq!(store.documents_written() - before, 2 * ids.len() as u64);
        assert!(took < CALL_TIMEOUT / 4, "{took:?}");
        Ok(())
    }

    /// A TCP relay to the emulator that can be frozen: it keeps the connections open and
    /// forwards nothing, as a Firestore that stopped answering would.
    struct Relay {
        address: String,
        frozen: tokio::sync::watch::Sender<bool>,
    }

    async fn relay(upstream: String) -> std::io::Result<Relay> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let (frozen, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pump(client_read, server_write, watch.clone()));
                tokio::spawn(pump(server_read, client_write, watch.clone()));
            }
        });
        Ok(Relay { address, frozen })
    }

    async fn pump(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        mut frozen: tokio::sync::watch::Receiver<bool>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buffer = vec![0; 16 * 1024];
        loop {
            let Ok(read @ 1..) = from.read(&mut buffer).await else {
                return;
            };
            while *frozen.borrow_and_update() {
                if frozen.changed().await.is_err() {
                    return;
                }
            }
            if to.write_all(&buffer[..read]).await.is_err() {
                return;
            }
        }
    }

    #[tokio::test]
    async fn an_outage_while_running_is_a_transient_error_and_then_passes() -> Outcome {
        let Some(host) = firestore_emulator() else {
            return Ok(());
        };
        let relay = relay(host).await?;
        let settings = settings(unique_project("outage"), Some(relay.address.clone()));
        let store = FirestoreStore::connect(&settings).await?;
        let at = Utc::now();
        let register = || -> Arc<[Write]> { vec![new_miner("o1", at)].into() };
        relay.frozen.send_replace(true);
        let started = Instant::now();
        let err = store
            .apply(register())
            .await
            .err()
            .ok_or("applied while Firestore did not answer")?;
        let waited = started.elapsed();
        assert!(err.is_transient(), "{err}");
        assert!(waited < CALL_TIMEOUT + Duration::from_secs(3), "{waited:?}");
        relay.frozen.send_replace(false);
        // What the writer does next: the same batch again (a late commit of the first try, had
        // it got through, would make this one a no-op).
        store.apply(register()).await?;
        assert!(store.miner("o1").await?.is_some());
        Ok(())
    }
}
