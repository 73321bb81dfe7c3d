//! Coordinators sharing one store (Firestore): who is there, who sweeps which shard, and the
//! heartbeats each took, passed to the others.
//!
//! Every tick (a ninth of `offline_after`, from 200 ms to 5 s) each coordinator:
//! 1. renews its membership (`replicas/{name}`, valid for a third of `offline_after`) and reads
//!    the live members;
//! 2. gives each shard to one member by rendezvous hashing (the member with the highest hash of
//!    its name and the shard): every member computes the same owners from the same list, and a
//!    member leaving moves only its own shards;
//! 3. publishes, while others are there, one document per shard with news: the miners it took
//!    heartbeats for (or swept) within the last `offline_after`;
//! 4. merges the documents the others wrote since its last read.
//!
//! A coordinator that dies stops renewing; within a third of `offline_after` its membership
//! expires, and at their next tick the others own its shards. Owners may overlap for a tick
//! while members come and go; the store's transaction on each transition keeps every change
//! recorded (and alerted) once regardless.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::Digest;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::state::AppState;
use super::transitions;
use crate::store::{Member, Peers, SHARDS, SeenDoc, StoreError, Write};

/// Most miners looked up in the store per tick for another coordinator's news (the rest wait for
/// the next tick), looked up together.
const MAX_LOOKUPS_PER_TICK: usize = 20;
/// How far back each read of the others' news reaches before the previous read began: room for
/// clocks that disagree and for news committed late (a backlog, retries). Reading a document
/// twice changes nothing.
const READ_OVERLAP: Duration = Duration::from_secs(15);
/// Most miners in one news document: each takes under 100 bytes, and a Firestore document holds
/// at most 1 MiB.
const MAX_SEEN_PER_DOC: usize = 10_000;
/// How long a clean stop waits to say it leaves.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(2);

/// This coordinator among those sharing the store.
#[derive(Debug)]
pub struct Replica {
    pub name: String,
    pub peers: Arc<dyn Peers>,
    tick: Duration,
    lease: Duration,
    view: Mutex<View>,
}

/// Who holds what, for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Live members, by name.
    pub members: Vec<String>,
    /// Each shard's owner, as an index into `members`.
    pub owners: Vec<usize>,
    /// Whether the last renewal of the membership failed (the store is unreachable).
    pub renewal_failing: bool,
    /// Whether the last read of the others' news failed.
    pub reading_failing: bool,
}

impl Replica {
    pub fn new(name: String, peers: Arc<dyn Peers>, offline_after: Duration) -> Self {
        let tick = (offline_after / 9).clamp(Duration::from_millis(200), Duration::from_secs(5));
        Self {
            name,
            peers,
            tick,
            lease: (offline_after / 3).max(tick * 3),
            view: Mutex::new(View::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, View> {
        self.view
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    pub fn view(&self) -> View {
        self.lock().clone()
    }

    /// Renews the membership and says which shards this coordinator owns now.
    pub async fn renew(&self) -> Result<(Vec<Member>, u64), StoreError> {
        let now = Utc::now();
        let lease = chrono::TimeDelta::from_std(self.lease).unwrap_or(chrono::TimeDelta::MAX);
        let mut members = self
            .peers
            .renew_membership(&self.name, now, now + lease)
            .await?;
        // Just renewed, whatever the read saw.
        if !members.iter().any(|m| m.replica == self.name) {
            members.push(Member {
                replica: self.name.clone(),
                expires_at: now + lease,
            });
            members.sort_by(|a, b| a.replica.cmp(&b.replica));
        }
        let names: Vec<&str> = members.iter().map(|m| m.replica.as_str()).collect();
        let owners = owners(&names);
        let me = names.iter().position(|&n| n == self.name).unwrap_or(0);
        let owned = owners
            .iter()
            .enumerate()
            .filter(|&(_, &owner)| owner == me)
            .fold(0u64, |mask, (shard, _)| mask | (1 << shard));
        let mut view = self.lock();
        view.members = names.iter().map(|&n| n.to_owned()).collect();
        view.owners = owners;
        drop(view);
        Ok((members, owned))
    }
}

/// Each shard's owner among `members` (an index), by rendezvous hashing.
pub(super) fn owners(members: &[&str]) -> Vec<usize> {
    (0..SHARDS)
        .map(|shard| {
            members
                .iter()
                .enumerate()
                .max_by_key(|&(_, name)| score(name, shard))
                .map_or(0, |(i, _)| i)
        })
        .collect()
}

fn score(member: &str, shard: u32) -> u64 {
    let digest = sha2::Sha256::new()
        .chain_update(member.as_bytes())
        .chain_update([0])
        .chain_update(shard.to_be_bytes())
        .finalize();
    let mut head = [0; 8];
    head.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(head)
}

/// Runs the ticks until `cancel` fires, then leaves the membership.
pub(super) async fn run(state: AppState, replica: Arc<Replica>, cancel: CancellationToken) {
    let window = state.registry.offline_after();
    // The first read covers the others' news of the last window.
    let mut read_since = Utc::now() - chrono::TimeDelta::from_std(window).unwrap_or_default();
    loop {
        tick(&state, &replica, window, &mut read_since).await;
        tokio::select! {
            () = tokio::time::sleep(replica.tick) => {}
            () = cancel.cancelled() => break,
        }
    }
    // The heartbeats taken since the last tick, for whoever takes this coordinator's shards.
    publish(&state, &replica, window);
    match tokio::time::timeout(LEAVE_TIMEOUT, replica.peers.leave(&replica.name)).await {
        Ok(Ok(())) => {
            tracing::info!(replica = %replica.name, "left the coordinators sharing the store")
        }
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "cannot say this coordinator leaves; the others take its shards once its membership expires")
        }
        Err(_) => tracing::warn!(
            "saying this coordinator leaves took too long; the others take its shards once its membership expires"
        ),
    }
}

async fn tick(
    state: &AppState,
    replica: &Replica,
    window: Duration,
    read_since: &mut DateTime<Utc>,
) {
    match replica.renew().await {
        Ok((members, owned)) => {
            let was_failing = std::mem::replace(&mut replica.lock().renewal_failing, false);
            if was_failing {
                tracing::info!("membership renewed again");
            }
            if owned != state.registry.owned() {
                tracing::info!(
                    shards = owned.count_ones(),
                    members = members.len(),
                    "shards this coordinator sweeps changed"
                );
            }
            state.registry.set_owned(owned);
            state.registry.set_members(members.len());
            let live: Vec<&str> = members.iter().map(|m| m.replica.as_str()).collect();
            state.registry.forget_peers(&live);
        }
        Err(err) => {
            // Keep sweeping what this coordinator owned: if the others took it meanwhile, the
            // store's transactions still record each change once.
            let mut view = replica.lock();
            if !view.renewal_failing {
                tracing::warn!(error = %err, "cannot renew this coordinator's membership; going on with the shards it had");
            }
            view.renewal_failing = true;
        }
    }
    publish(state, replica, window);
    let started = Utc::now();
    let overlap = READ_OVERLAP.max(replica.tick * 3);
    let since = *read_since - chrono::TimeDelta::from_std(overlap).unwrap_or_default();
    match replica.peers.seen_since(&replica.name, since).await {
        Ok(docs) => {
            if std::mem::replace(&mut replica.lock().reading_failing, false) {
                tracing::info!("reading the other coordinators' heartbeats again");
            }
            let mut lookups = 0;
            for doc in &docs {
                merge(state, doc, &mut lookups).await;
            }
            *read_since = started;
        }
        Err(err) => {
            if !std::mem::replace(&mut replica.lock().reading_failing, true) {
                tracing::warn!(error = %err, "cannot read the other coordinators' heartbeats; trying again every tick");
            }
        }
    }
}

/// Queues this coordinator's news, when it has any: the whole window, in documents of at most
/// [`MAX_SEEN_PER_DOC`] miners (one a tick for a fleet of up to 10 000 miners). Parts left over
/// from a larger fleet before are not rewritten; their older news changes nothing.
fn publish(state: &AppState, replica: &Replica, window: Duration) {
    let Some(seen) = state.registry.news(Instant::now(), window) else {
        return;
    };
    let now = Utc::now();
    let parts: Vec<&[crate::store::Seen]> = if seen.is_empty() {
        vec![&[]]
    } else {
        seen.chunks(MAX_SEEN_PER_DOC).collect()
    };
    for (part, miners) in parts.into_iter().enumerate() {
        // Sheddable: the next tick's news says the same and more.
        state.writer.send_sample(Write::Seen(Box::new(SeenDoc {
            replica: replica.name.clone(),
            part: u32::try_from(part).unwrap_or(u32::MAX),
            written_at: now,
            miners: miners.to_vec(),
        })));
    }
}

/// Merges one document; miners it names that this coordinator does not know are looked up
/// (a bounded number per tick) and the document merged again.
async fn merge(state: &AppState, doc: &SeenDoc, lookups: &mut usize) {
    let record = |merged: &super::registry::Merged| {
        transitions::after_merge(merged, Utc::now()).queue(state);
    };
    let unknown = state.registry.merge(doc, Instant::now(), record);
    if unknown.is_empty() {
        return;
    }
    let Some(learner) = state.learner.as_ref() else {
        return;
    };
    let take = unknown
        .len()
        .min(MAX_LOOKUPS_PER_TICK.saturating_sub(*lookups));
    *lookups += take;
    // Together, so a slow store holds the tick (and the renewal after it) back by one lookup's
    // time, not by one per miner.
    futures_util::future::join_all(
        unknown[..take]
            .iter()
            .map(|id| learner.learn_id(&state.registry, id)),
    )
    .await;
    state.registry.merge(doc, Instant::now(), record);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_computes_the_same_owners_and_a_leaver_moves_only_its_own() {
        let three = owners(&["a", "b", "c"]);
        assert_eq!(three.len(), SHARDS as usize);
        for i in 0..3 {
            let n = three.iter().filter(|&&o| o == i).count();
            assert!(
                (8..=40).contains(&n),
                "member {i} owns {n} of 64: unbalanced"
            );
        }
        // "c" leaves: the shards of "a" and "b" stay theirs.
        let two = owners(&["a", "b"]);
        for (shard, (&before, &after)) in three.iter().zip(&two).enumerate() {
            if before < 2 {
                assert_eq!(before, after, "shard {shard} moved though its owner stayed");
            }
        }
        assert!(owners(&["only"]).iter().all(|&o| o == 0));
    }

    #[test]
    fn the_tick_and_the_lease_follow_offline_after() {
        struct Nobody;
        #[async_trait::async_trait]
        impl Peers for Nobody {
            async fn renew_membership(
                &self,
                _: &str,
                _: DateTime<Utc>,
                _: DateTime<Utc>,
            ) -> Result<Vec<Member>, StoreError> {
                Ok(Vec::new())
            }
            async fn leave(&self, _: &str) -> Result<(), StoreError> {
                Ok(())
            }
            async fn seen_since(
                &self,
                _: &str,
                _: DateTime<Utc>,
            ) -> Result<Vec<SeenDoc>, StoreError> {
                Ok(Vec::new())
            }
        }
        let r = Replica::new("a".into(), Arc::new(Nobody), Duration::from_secs(45));
        assert_eq!(
            (r.tick, r.lease),
            (Duration::from_secs(5), Duration::from_secs(15))
        );
        let r = Replica::new("a".into(), Arc::new(Nobody), Duration::from_secs(3));
        assert_eq!(
            (r.tick, r.lease),
            (Duration::from_secs(3) / 9, Duration::from_secs(1))
        );
    }
}
