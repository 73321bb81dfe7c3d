//! What a batch writes, decided from the documents it reads: the pure half of
//! [`super::FirestoreStore`]'s `apply`, run inside its transaction (and again on each retry, from
//! fresh reads).
//!
//! Every document a batch touches is written once, with the fields the batch changed (an update
//! mask), however many of its writes touch it: later writes of the batch see what earlier ones
//! did, a document written twice in one commit is refused by Firestore, and fields this version
//! does not know of are kept.

use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::docs::{
    self, COMMANDS, CommandDoc, HISTORY, HistoryDoc, METRICS, MINERS, MetricsDoc, MinerDoc, SEEN,
    STATES, SeenDocDoc, StateDoc,
};
use crate::api::{CommandState, VerificationStatus};
use crate::store::{MinerState, StoreError, Write, shard_of};

/// The documents a batch must read before it can decide what to write.
#[derive(Debug, Default)]
pub(super) struct Needs {
    pub(super) miners: BTreeSet<String>,
    pub(super) states: BTreeSet<String>,
    pub(super) commands: BTreeSet<String>,
}

/// The documents read for a batch, by id (a missing one is absent).
#[derive(Debug, Default)]
pub(super) struct Loaded {
    pub(super) miners: HashMap<String, MinerDoc>,
    pub(super) states: HashMap<String, StateDoc>,
    pub(super) commands: HashMap<String, CommandDoc>,
}

/// One document write of a commit.
#[derive(Debug)]
pub(super) struct DocWrite {
    pub(super) collection: &'static str,
    pub(super) id: String,
    pub(super) body: Body,
    /// The fields to write; `None` replaces the whole document.
    pub(super) mask: Option<Vec<String>>,
}

#[derive(Debug)]
pub(super) enum Body {
    Miner(MinerDoc),
    State(StateDoc),
    Command(CommandDoc),
    History(HistoryDoc),
    Metrics(MetricsDoc),
    Seen(SeenDocDoc),
}

/// What a batch writes, and which of its transitions another coordinator recorded first.
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) writes: Vec<DocWrite>,
    pub(super) superseded: Vec<usize>,
}

pub(super) fn needs(batch: &[Write]) -> Needs {
    let mut needs = Needs::default();
    for write in batch {
        match write {
            Write::Register(m) => {
                needs.miners.insert(m.id.clone());
            }
            Write::Verification { miner_id, .. }
            | Write::Network { miner_id, .. }
            | Write::Bittensor { miner_id, .. }
            | Write::Commune { miner_id, .. }
            | Write::RelayKey { miner_id, .. }
            | Write::TokenUsed { miner_id } => {
                needs.miners.insert(miner_id.clone());
            }
            Write::State(state) => {
                needs.states.insert(state.miner_id.clone());
            }
            Write::Transition(t) => {
                needs.states.insert(t.change.miner_id.clone());
            }
            Write::QueueCommand(c) => {
                needs.miners.insert(c.miner_id.clone());
                needs.commands.insert(c.id.clone());
            }
            Write::CommandDelivered { id, .. } | Write::CommandFinished { id, .. } => {
                needs.commands.insert(id.clone());
            }
            Write::Metrics { .. } | Write::Seen(_) => {}
        }
    }
    // An id Firestore refuses names nothing: reading it would fail the whole batch, while the
    // write it comes from fails alone below (no such miner or command).
    for ids in [&mut needs.miners, &mut needs.states, &mut needs.commands] {
        ids.retain(|id| docs::valid_id(id));
    }
    needs
}

/// A document as the batch has left it so far.
#[derive(Debug)]
struct Slot<T> {
    doc: Option<T>,
    /// Fields changed by the batch.
    changed: BTreeSet<String>,
    /// Created by the batch: written whole.
    created: bool,
}

impl<T> Slot<T> {
    fn loaded(doc: Option<T>) -> Self {
        Self {
            doc,
            changed: BTreeSet::new(),
            created: false,
        }
    }

    fn create(&mut self, doc: T) {
        self.doc = Some(doc);
        self.created = true;
    }

    /// The document, marked changed in `fields`, or `None` when it does not exist.
    fn change(&mut self, fields: &[&str]) -> Option<&mut T> {
        let doc = self.doc.as_mut()?;
        self.changed.extend(fields.iter().map(|f| (*f).to_owned()));
        Some(doc)
    }

    fn write(self, collection: &'static str, id: String, body: fn(T) -> Body) -> Option<DocWrite> {
        let doc = self.doc?;
        let mask = if self.created {
            None
        } else if self.changed.is_empty() {
            return None;
        } else {
            Some(self.changed.into_iter().collect())
        };
        Some(DocWrite {
            collection,
            id,
            body: body(doc),
            mask,
        })
    }
}

fn slots<T>(
    needed: &BTreeSet<String>,
    mut loaded: HashMap<String, T>,
) -> BTreeMap<String, Slot<T>> {
    needed
        .iter()
        .map(|id| (id.clone(), Slot::loaded(loaded.remove(id))))
        .collect()
}

struct Planner {
    miners: BTreeMap<String, Slot<MinerDoc>>,
    states: BTreeMap<String, Slot<StateDoc>>,
    commands: BTreeMap<String, Slot<CommandDoc>>,
    /// Documents only created (history rows, samples, seen documents), by collection and id:
    /// a later one with the same id replaces the earlier.
    created: BTreeMap<(&'static str, String), Body>,
    superseded: Vec<usize>,
    /// Who plans: this process's random name (see `StateDoc::last_transition`).
    writer: String,
}

/// Decides what `batch` writes given the documents `loaded` for [`needs`]`(batch)`. A write that
/// can never succeed (a miner or command that does not exist, a miner registered twice) fails
/// the whole batch, as in SQLite.
pub(super) fn plan(batch: &[Write], loaded: Loaded, writer: &str) -> Result<Plan, StoreError> {
    let needs = needs(batch);
    let mut planner = Planner {
        writer: writer.to_owned(),
        miners: slots(&needs.miners, loaded.miners),
        states: slots(&needs.states, loaded.states),
        commands: slots(&needs.commands, loaded.commands),
        created: BTreeMap::new(),
        superseded: Vec::new(),
    };
    for (index, write) in batch.iter().enumerate() {
        planner.apply(index, write)?;
    }
    let Planner {
        miners,
        states,
        commands,
        created,
        superseded,
        ..
    } = planner;
    let mut writes: Vec<DocWrite> = Vec::new();
    writes.extend(
        miners
            .into_iter()
            .filter_map(|(id, slot)| slot.write(MINERS, id, Body::Miner)),
    );
    writes.extend(
        states
            .into_iter()
            .filter_map(|(id, slot)| slot.write(STATES, id, Body::State)),
    );
    writes.extend(
        commands
            .into_iter()
            .filter_map(|(id, slot)| slot.write(COMMANDS, id, Body::Command)),
    );
    writes.extend(
        created
            .into_iter()
            .map(|((collection, id), body)| DocWrite {
                collection,
                id,
                body,
                mask: None,
            }),
    );
    Ok(Plan { writes, superseded })
}

impl Planner {
    fn miner(&mut self, id: &str, fields: &[&str]) -> Result<&mut MinerDoc, StoreError> {
        self.miners
            .get_mut(id)
            .and_then(|slot| slot.change(fields))
            .ok_or_else(|| StoreError::NoSuchMiner(id.to_owned()))
    }

    fn apply(&mut self, index: usize, write: &Write) -> Result<(), StoreError> {
        match write {
            Write::Register(m) => {
                let doc = MinerDoc {
                    name: m.name.clone(),
                    location: m.location.clone(),
                    description: m.description.clone(),
                    registration_type: m.registration_type.clone(),
                    compute_resources: serde_json::to_string(&m.compute_resources)?,
                    network: None,
                    bittensor_details: None,
                    commune_details: None,
                    verification_status: VerificationStatus::PendingVerification
                        .as_str()
                        .to_owned(),
                    token_hash: docs::hex_hash(&m.token_hash),
                    token_used: false,
                    relay_key: None,
                    relay_key_updated_at: None,
                    created_at: docs::timestamp(m.at)?,
                    updated_at: docs::timestamp(m.at)?,
                    shard: shard_of(&m.id),
                };
                let slot = self.miners.get_mut(&m.id).ok_or_else(|| refused(&m.id))?;
                match &slot.doc {
                    None => slot.create(doc),
                    // The same registration, committed by an earlier try whose answer was lost
                    // (a timeout): done already.
                    Some(stored)
                        if stored.token_hash == doc.token_hash
                            && stored.created_at == doc.created_at => {}
                    Some(_) => {
                        return Err(StoreError::Backend {
                            backend: "firestore",
                            message: format!("miner {} is already registered", m.id),
                            transient: false,
                        });
                    }
                }
            }
            Write::Verification {
                miner_id,
                status,
                at,
            } => {
                let at = docs::timestamp(*at)?;
                let doc = self.miner(miner_id, &["verification_status", "updated_at"])?;
                doc.verification_status = status.as_str().to_owned();
                doc.updated_at = at;
            }
            Write::Network {
                miner_id,
                network,
                at,
            } => {
                let (text, at) = (serde_json::to_string(network)?, docs::timestamp(*at)?);
                let doc = self.miner(miner_id, &["network", "updated_at"])?;
                doc.network = Some(text);
                doc.updated_at = at;
            }
            Write::Bittensor {
                miner_id,
                details,
                at,
            } => {
                let at = docs::timestamp(*at)?;
                let doc = self.miner(miner_id, &["bittensor_details", "updated_at"])?;
                doc.bittensor_details = Some(details.to_string());
                doc.updated_at = at;
            }
            Write::Commune {
                miner_id,
                details,
                at,
            } => {
                let at = docs::timestamp(*at)?;
                let doc = self.miner(miner_id, &["commune_details", "updated_at"])?;
                doc.commune_details = Some(details.to_string());
                doc.updated_at = at;
            }
            Write::RelayKey {
                miner_id,
                public_key,
                at,
            } => {
                let at = docs::timestamp(*at)?;
                let doc = self.miner(miner_id, &["relay_key", "relay_key_updated_at"])?;
                doc.relay_key = Some(public_key.clone());
                doc.relay_key_updated_at = Some(at);
            }
            Write::TokenUsed { miner_id } => {
                self.miner(miner_id, &["token_used"])?.token_used = true;
            }
            Write::State(state) => {
                self.state(state, None)?;
            }
            Write::Transition(transition) => {
                let change = &transition.change;
                let doc = self
                    .states
                    .get(&change.miner_id)
                    .and_then(|slot| slot.doc.as_ref());
                let stored = doc.and_then(|doc| doc.current_status.as_deref());
                // No status stored: this is the first, whatever the coordinator thought before.
                // A change older than the last one stored is stale even when the status went
                // back to its old one meanwhile (online → offline → online): a coordinator that
                // overlapped another as owner, committing late.
                let last_at = doc
                    .and_then(|doc| doc.last_transition.as_deref())
                    .and_then(|key| key.split_once('/'))
                    .and_then(|(micros, _)| micros.parse::<i64>().ok());
                let current = stored
                    .is_none_or(|stored| change.old_status.map(|s| s.as_str()) == Some(stored))
                    && last_at.is_none_or(|last| change.timestamp.timestamp_micros() >= last);
                if !current {
                    // This very change, written by an earlier try whose answer was lost (a
                    // timeout after the commit landed): done, not superseded, so its alert goes.
                    let mine = self.transition_key(change.timestamp);
                    let replayed = stored == Some(change.new_status.as_str())
                        && doc.and_then(|doc| doc.last_transition.as_deref()) == Some(&mine);
                    if !replayed {
                        self.superseded.push(index);
                    }
                    return Ok(());
                }
                let seq = self.state(&transition.state, Some(change.timestamp))?;
                let id = format!("{}-{seq:010}", change.miner_id);
                let row = HistoryDoc {
                    miner_id: change.miner_id.clone(),
                    timestamp: docs::timestamp(change.timestamp)?,
                    old_status: change.old_status.map(|s| s.as_str().to_owned()),
                    new_status: change.new_status.as_str().to_owned(),
                    reason: change.reason.clone(),
                    seq,
                };
                self.created.insert((HISTORY, id), Body::History(row));
            }
            Write::Metrics {
                miner_id,
                at,
                status,
                metrics,
                time_since_last,
            } => {
                let id = format!("{miner_id}-{}", at.timestamp_micros());
                if !docs::valid_id(&id) {
                    return Err(refused(&id));
                }
                let row = MetricsDoc {
                    miner_id: miner_id.clone(),
                    timestamp: docs::timestamp(*at)?,
                    status: status.as_str().to_owned(),
                    metrics: metrics.to_string(),
                    time_since_last: *time_since_last,
                };
                self.created.insert((METRICS, id), Body::Metrics(row));
            }
            Write::QueueCommand(command) => {
                if self
                    .miners
                    .get(&command.miner_id)
                    .is_none_or(|slot| slot.doc.is_none())
                {
                    return Err(StoreError::NoSuchMiner(command.miner_id.clone()));
                }
                let doc = docs::command_doc(command)?;
                let slot = self
                    .commands
                    .get_mut(&command.id)
                    .ok_or_else(|| refused(&command.id))?;
                match &slot.doc {
                    None => slot.create(doc),
                    // Committed by an earlier try whose answer was lost.
                    Some(stored)
                        if stored.miner_id == doc.miner_id
                            && stored.created_at == doc.created_at => {}
                    Some(_) => {
                        return Err(StoreError::Backend {
                            backend: "firestore",
                            message: format!("command {} already exists", command.id),
                            transient: false,
                        });
                    }
                }
            }
            // The two below may change nothing (a command that ended meanwhile; a late report of
            // one never delivered): that is their rule, as in SQLite.
            Write::CommandDelivered { id, at } => {
                let at = docs::timestamp(*at)?;
                if let Some(slot) = self.commands.get_mut(id)
                    && slot
                        .doc
                        .as_ref()
                        .is_some_and(|doc| doc.state == CommandState::Queued.as_str())
                    && let Some(doc) = slot.change(&["state", "delivered_at"])
                {
                    doc.state = CommandState::Delivered.as_str().to_owned();
                    doc.delivered_at = Some(at);
                }
            }
            Write::CommandFinished {
                id,
                miner_id,
                state,
                reason,
                at,
            } => {
                let at = docs::timestamp(*at)?;
                // Open commands end in any way; an expired one only by its miner's report, and
                // only when it had been delivered (the agent did act on it).
                let applies = |doc: &CommandDoc| {
                    let open = doc.state == CommandState::Queued.as_str()
                        || doc.state == CommandState::Delivered.as_str();
                    let late_report = doc.state == CommandState::Expired.as_str()
                        && *state != CommandState::Expired
                        && doc.delivered_at.is_some();
                    doc.miner_id == *miner_id && (open || late_report)
                };
                if let Some(slot) = self.commands.get_mut(id)
                    && slot.doc.as_ref().is_some_and(applies)
                    && let Some(doc) = slot.change(&["state", "reason", "finished_at"])
                {
                    doc.state = state.as_str().to_owned();
                    doc.reason = reason.clone();
                    doc.finished_at = Some(at);
                }
            }
            Write::Seen(seen) => {
                let id = docs::seen_id(seen.part, &seen.replica);
                if !docs::valid_id(&id) {
                    return Err(refused(&id));
                }
                self.created
                    .insert((SEEN, id), Body::Seen(docs::seen_doc(seen)?));
            }
        }
        Ok(())
    }

    /// What `StateDoc::last_transition` says of a change this process makes at `at`.
    fn transition_key(&self, at: DateTime<Utc>) -> String {
        format!("{}/{}", at.timestamp_micros(), self.writer)
    }

    /// Writes a miner's state: its status too for a transition (made at `transition`), else only
    /// when none is stored. A transition also counts itself in `transitions` and keeps its time;
    /// returns the count.
    fn state(
        &mut self,
        state: &MinerState,
        transition: Option<DateTime<Utc>>,
    ) -> Result<i64, StoreError> {
        let transition_key = transition.map(|at| self.transition_key(at));
        let transition = transition.is_some();
        let id = &state.miner_id;
        let slot = self.states.get_mut(id).ok_or_else(|| refused(id))?;
        let last_heartbeat = docs::timestamp(state.last_heartbeat)?;
        let updated_at = docs::timestamp(state.at)?;
        let count = i64::try_from(state.heartbeat_count).unwrap_or(i64::MAX);
        let Some(doc) = slot.change(&[
            "miner_id",
            "last_heartbeat",
            "heartbeat_count",
            "updated_at",
            "shard",
        ]) else {
            slot.create(StateDoc {
                miner_id: id.clone(),
                last_heartbeat,
                current_status: Some(state.status.as_str().to_owned()),
                current_metrics: state.metrics.as_deref().map(str::to_owned),
                heartbeat_count: count,
                updated_at,
                shard: shard_of(id),
                transitions: i64::from(transition),
                last_transition: transition_key,
            });
            return Ok(i64::from(transition));
        };
        doc.miner_id = id.clone();
        doc.last_heartbeat = last_heartbeat;
        doc.heartbeat_count = count;
        doc.updated_at = updated_at;
        doc.shard = shard_of(id);
        let mut fields = Vec::new();
        if let Some(metrics) = &state.metrics {
            doc.current_metrics = Some(metrics.to_string());
            fields.push("current_metrics");
        }
        if transition || doc.current_status.is_none() {
            doc.current_status = Some(state.status.as_str().to_owned());
            fields.push("current_status");
        }
        if transition {
            doc.transitions += 1;
            doc.last_transition = transition_key;
            fields.extend(["transitions", "last_transition"]);
        }
        let seq = doc.transitions;
        slot.changed.extend(fields.into_iter().map(str::to_owned));
        Ok(seq)
    }
}

/// A write naming an id Firestore cannot store (see [`docs::valid_id`]).
fn refused(id: &str) -> StoreError {
    StoreError::Backend {
        backend: "firestore",
        message: format!("{id:?} cannot be a Firestore document id"),
        transient: false,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::api::HeartbeatStatus::{Offline, Online};
    use crate::api::{HeartbeatStatus, NetworkInfo};
    use crate::store::{NewMiner, StatusChange, TransitionWrite};

    fn register(id: &str, at: DateTime<Utc>) -> Write {
        Write::Register(Box::new(NewMiner {
            id: id.into(),
            name: "n".into(),
            location: None,
            description: None,
            registration_type: None,
            compute_resources: Vec::new(),
            token_hash: [9; 32],
            at,
        }))
    }

    /// The plan of `batch` once `before` (created from nothing) is stored.
    fn planned(before: &[Write], batch: &[Write]) -> Result<Plan, StoreError> {
        let mut loaded = Loaded::default();
        for write in plan(before, Loaded::default(), "me")?.writes {
            match write.body {
                Body::Miner(doc) => drop(loaded.miners.insert(write.id, doc)),
                Body::State(doc) => drop(loaded.states.insert(write.id, doc)),
                Body::Command(doc) => drop(loaded.commands.insert(write.id, doc)),
                Body::History(_) | Body::Metrics(_) | Body::Seen(_) => {}
            }
        }
        plan(batch, loaded, "me")
    }

    fn state(status: HeartbeatStatus, count: u64, metrics: Option<&str>) -> MinerState {
        MinerState {
            miner_id: "m".into(),
            last_heartbeat: Utc::now(),
            status,
            heartbeat_count: count,
            metrics: metrics.map(Into::into),
            at: Utc::now(),
        }
    }

    /// Each a microsecond after the one made before: two made in the same microsecond would be
    /// one change to the store (see `last_transition`).
    fn transition(old: Option<HeartbeatStatus>, new: HeartbeatStatus) -> Write {
        static NEXT: std::sync::atomic::AtomicI64 =
            std::sync::atomic::AtomicI64::new(1_700_000_000_000_000);
        let micros = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Write::Transition(Box::new(TransitionWrite {
            change: StatusChange {
                miner_id: "m".into(),
                timestamp: DateTime::from_timestamp_micros(micros).unwrap_or_default(),
                old_status: old,
                new_status: new,
                reason: "r".into(),
            },
            state: state(new, 1, None),
        }))
    }

    #[test]
    fn a_document_is_written_once_with_only_the_fields_the_batch_changed() -> Result<(), StoreError>
    {
        let at = Utc::now();
        let batch = [
            Write::Verification {
                miner_id: "m".into(),
                status: VerificationStatus::Verified,
                at,
            },
            Write::Network {
                miner_id: "m".into(),
                network: NetworkInfo::default(),
                at,
            },
            Write::TokenUsed {
                miner_id: "m".into(),
            },
        ];
        let plan = planned(&[register("m", at)], &batch)?;
        assert_eq!(plan.writes.len(), 1);
        assert_eq!(
            plan.writes[0].mask.as_deref(),
            Some(
                &[
                    "network".to_owned(),
                    "token_used".into(),
                    "updated_at".into(),
                    "verification_status".into()
                ][..]
            )
        );
        Ok(())
    }

    #[test]
    fn writes_for_a_miner_that_does_not_exist_fail_the_batch() {
        let at = Utc::now();
        for write in [
            Write::TokenUsed {
                miner_id: "nobody".into(),
            },
            Write::RelayKey {
                miner_id: "nobody".into(),
                public_key: "ssh-ed25519 AAAA".into(),
                at,
            },
            Write::Verification {
                miner_id: "a/b".into(),
                status: VerificationStatus::Verified,
                at,
            },
        ] {
            let outcome = plan(&[write], Loaded::default(), "me");
            assert!(
                matches!(outcome, Err(StoreError::NoSuchMiner(_))),
                "{outcome:?}"
            );
        }
    }

    #[test]
    fn a_registration_committed_before_is_done_and_another_under_its_id_refused()
    -> Result<(), StoreError> {
        let at = Utc::now();
        let again = planned(&[register("m", at)], &[register("m", at)])?;
        assert!(again.writes.is_empty(), "{:?}", again.writes);
        let other = planned(
            &[register("m", at)],
            &[register("m", at + chrono::TimeDelta::seconds(1))],
        );
        assert!(
            matches!(&other, Err(e @ StoreError::Backend { .. }) if !e.is_transient()),
            "{other:?}"
        );
        Ok(())
    }

    #[test]
    fn a_refresh_sets_the_first_status_and_keeps_metrics_it_does_not_carry()
    -> Result<(), StoreError> {
        let first = Write::State(state(Online, 1, Some("{}")));
        let plan = planned(&[], std::slice::from_ref(&first))?;
        let Body::State(doc) = &plan.writes[0].body else {
            return Err(StoreError::Corrupt("not a state".into()));
        };
        assert_eq!(doc.current_status.as_deref(), Some("online"));
        assert!(plan.writes[0].mask.is_none(), "created whole");

        // Stored: the refresh's mask leaves out the status and the metrics it has none of.
        let plan = planned(&[first], &[Write::State(state(Offline, 2, None))])?;
        let mask = plan.writes[0].mask.clone().unwrap_or_default();
        assert!(mask.iter().any(|f| f == "heartbeat_count"), "{mask:?}");
        assert!(
            !mask
                .iter()
                .any(|f| f == "current_status" || f == "current_metrics"),
            "{mask:?}"
        );
        Ok(())
    }

    #[test]
    fn transitions_number_their_rows_and_a_stale_one_is_left_out() -> Result<(), StoreError> {
        let before = [transition(None, Online)];
        let batch = [
            transition(Some(Offline), Online),
            transition(Some(Online), Offline),
        ];
        let plan = planned(&before, &batch)?;
        assert_eq!(plan.superseded, [0]);
        let rows: Vec<_> = plan
            .writes
            .iter()
            .filter_map(|w| match &w.body {
                Body::History(row) => Some((w.id.as_str(), row.seq)),
                _ => None,
            })
            .collect();
        assert_eq!(rows, [("m-0000000002", 2)], "the second row of m");
        Ok(())
    }

    #[test]
    fn a_transition_retried_after_its_commit_landed_is_done_not_superseded()
    -> Result<(), StoreError> {
        let first = transition(None, Online);
        let change = transition(Some(Online), Offline);
        let again = planned(
            &[first.clone(), change.clone()],
            std::slice::from_ref(&change),
        )?;
        assert!(again.superseded.is_empty(), "{:?}", again.superseded);
        assert!(again.writes.is_empty(), "nothing written twice");
        // The same change (same time) from another coordinator is superseded.
        let before = [first, change.clone()];
        let mut loaded = Loaded::default();
        for write in plan(&before, Loaded::default(), "other")?.writes {
            if let Body::State(doc) = write.body {
                loaded.states.insert(write.id, doc);
            }
        }
        assert_eq!(plan(&[change], loaded, "me")?.superseded, [0]);
        Ok(())
    }

    #[test]
    fn a_late_change_older_than_the_last_stored_is_superseded_though_the_status_matches()
    -> Result<(), StoreError> {
        let at = |secs: i64| {
            let mut write = transition(Some(Online), Offline);
            if let Write::Transition(t) = &mut write {
                t.change.timestamp =
                    DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap_or_default();
                if secs == 20 {
                    t.change.old_status = Some(Offline);
                    t.change.new_status = Online;
                    t.state.status = Online;
                }
            }
            write
        };
        // Stored: online → offline at 10 s, offline → online at 20 s; then online → offline made
        // at 5 s by an overlapping owner arrives.
        let plan = planned(&[transition(None, Online), at(10), at(20)], &[at(5)])?;
        assert_eq!(plan.superseded, [0]);
        Ok(())
    }
}
