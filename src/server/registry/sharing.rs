//! What a coordinator's registry needs when several coordinators share one store (Firestore):
//! which shards this one sweeps, the miners it heard from lately (published to the others), and
//! the others' news merged in.
//!
//! Rules (also in the README's "Scaling"):
//! - Every coordinator answers every miner's heartbeats and keeps every miner's liveness.
//! - Only the owner of a miner's shard marks it offline for silence and alerts for it. A miner
//!   overdue in a shard this coordinator does not own waits as an *orphan*: its clock leaves the
//!   silence set until the owner's verdict arrives (it is published like a heartbeat) or this
//!   coordinator takes the shard over, when it goes back to the silence set and is swept at once.
//! - A change a heartbeat reports is recorded by whoever took the heartbeat; the store's
//!   transaction keeps it to once (see [`crate::store::Write::Transition`]). A change learned
//!   from another coordinator's news is recorded by the shard's owner, for the same reason.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::{Entry, Registry};
use crate::api::HeartbeatStatus;
use crate::store::{SHARDS, Seen, SeenDoc};

// Ownership is a bit mask: one bit per shard.
const _: () = assert!(SHARDS == u64::BITS);

/// Every shard.
pub const ALL_SHARDS: u64 = u64::MAX;

/// An orphan whose owner has said nothing for this many times `offline_after` since its clock
/// started (its news lost, or the owner cut off) is held offline here too, without a record:
/// the owner's word decides what is stored, but this coordinator stops showing it as up.
pub(super) const ORPHAN_GIVE_UP_FACTOR: u32 = 3;

#[derive(Debug)]
pub(super) struct Sharing {
    /// The shards this coordinator sweeps, one bit each.
    owned: u64,
    /// Overdue miners of shards another coordinator sweeps: `(clock, miner index)`.
    pub(super) orphans: BTreeSet<(Instant, usize)>,
    /// Whether to keep [`Sharing::recent`]: only while other coordinators are there to read it.
    publishing: bool,
    /// Coordinators sharing the store (1 alone). A balancer spreads each miner's heartbeats over
    /// all of them, so each samples a miner this many times less often: together they write
    /// about one sample per interval, as one coordinator would.
    members: u32,
    /// Per shard, the miners this coordinator took a heartbeat for (or swept) lately, and when.
    recent: Vec<HashMap<usize, Instant>>,
    /// Shards with news since the last [`Registry::news`], one bit each.
    dirty: u64,
    /// The last heartbeat count each other coordinator published for each miner, so only the
    /// heartbeats it took since are added.
    peer_counts: HashMap<(Arc<str>, usize), u64>,
}

impl Default for Sharing {
    /// Alone, a coordinator owns every shard and publishes nothing.
    fn default() -> Self {
        Self {
            owned: ALL_SHARDS,
            orphans: BTreeSet::new(),
            publishing: false,
            members: 1,
            recent: Vec::new(),
            dirty: 0,
            peer_counts: HashMap::new(),
        }
    }
}

impl super::Inner {
    /// Holds offline, unrecorded, the orphans silent for [`ORPHAN_GIVE_UP_FACTOR`] times
    /// `offline_after`.
    pub(super) fn give_up_orphans(&mut self, now: Instant, offline_after: Duration) {
        let Some(before) = now.checked_sub(offline_after.saturating_mul(ORPHAN_GIVE_UP_FACTOR))
        else {
            return;
        };
        while let Some(&(clock, i)) = self.sharing.orphans.first() {
            if clock > before {
                break;
            }
            self.sharing.orphans.remove(&(clock, i));
            let entry = &mut self.miners[i];
            entry.orphaned = false;
            entry.clock = None;
            entry.status = Some(HeartbeatStatus::Offline);
        }
    }
}

impl Sharing {
    /// A sampling interval, spread over the coordinators (see [`Sharing::members`]).
    pub(super) fn spread(&self, every: Duration) -> Duration {
        every.saturating_mul(self.members)
    }

    pub(super) fn owns(&self, shard: u32) -> bool {
        self.owned & (1 << shard) != 0
    }

    /// This coordinator took a heartbeat for (or swept) `entry`, miner `i`, at `now`.
    pub(super) fn touched(&mut self, entry: &Entry, i: usize, now: Instant) {
        if self.publishing
            && let Some(recent) = self.recent.get_mut(entry.shard as usize)
        {
            recent.insert(i, now);
            self.dirty |= 1 << entry.shard;
        }
    }
}

/// A change of status learned from another coordinator's news, for the owner to record.
#[derive(Debug, Clone)]
pub struct Merged {
    pub miner_id: Arc<str>,
    pub old_status: HeartbeatStatus,
    pub new_status: HeartbeatStatus,
    /// The heartbeat that brought the change.
    pub last_seen: DateTime<Utc>,
    pub heartbeat_count: u64,
    /// Time between the heartbeat before it and this one.
    pub since_last: Option<Duration>,
}

impl Registry {
    /// Sets the shards this coordinator sweeps. Orphans of shards it now owns go back to the
    /// silence set (the next sweep marks the overdue ones offline). Returns how many came back.
    pub fn set_owned(&self, owned: u64) -> usize {
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.sharing.owned = owned;
        let back: Vec<(Instant, usize)> = inner
            .sharing
            .orphans
            .iter()
            .copied()
            .filter(|&(_, i)| inner.sharing.owns(inner.miners[i].shard))
            .collect();
        for key in &back {
            inner.sharing.orphans.remove(key);
            inner.miners[key.1].orphaned = false;
            inner.silence.insert(*key);
        }
        drop(guard);
        if !back.is_empty() {
            self.deadline_moved.notify_one();
        }
        back.len()
    }

    /// The shards this coordinator sweeps, one bit each.
    pub fn owned(&self) -> u64 {
        self.lock().sharing.owned
    }

    /// Says how many coordinators share the store: with others there, this one keeps news for
    /// them and samples each miner that many times less often.
    pub fn set_members(&self, members: usize) {
        let mut inner = self.lock();
        let sharing = &mut inner.sharing;
        sharing.members = u32::try_from(members.max(1)).unwrap_or(u32::MAX);
        let on = members > 1;
        if sharing.publishing == on {
            return;
        }
        sharing.publishing = on;
        sharing.dirty = 0;
        sharing.recent = if on {
            vec![HashMap::new(); SHARDS as usize]
        } else {
            Vec::new()
        };
    }

    /// When anything is new since the last call, every miner this coordinator took a heartbeat
    /// for (or swept) within `window`, newest first; `None` when nothing is new (the news
    /// already written says it all). The whole window goes out each time, so a reader that
    /// missed a version of the news loses nothing.
    pub fn news(&self, now: Instant, window: Duration) -> Option<Vec<Seen>> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        if std::mem::take(&mut inner.sharing.dirty) == 0 {
            return None;
        }
        let mut heard: Vec<(Instant, usize)> = Vec::new();
        for recent in &mut inner.sharing.recent {
            recent.retain(|_, at| now.duration_since(*at) <= window);
            heard.extend(recent.iter().map(|(&i, &at)| (at, i)));
        }
        heard.sort_unstable_by(|a, b| b.cmp(a));
        let seen = heard
            .into_iter()
            .filter_map(|(_, i)| {
                let entry = &inner.miners[i];
                Some(Seen {
                    miner_id: entry.id.to_string(),
                    last_heartbeat: entry.last_seen?,
                    status: entry.status?,
                    heartbeats: entry.heard,
                })
            })
            .collect();
        Some(seen)
    }

    /// Merges another coordinator's news, received at `now`. A newer heartbeat moves the
    /// miner's clock and status: its age is taken on the writer's clock (`written_at` less the
    /// heartbeat's time), so clocks of coordinators that disagree do not move deadlines. The same
    /// heartbeat with `offline`, or any `offline` for an orphan, is the owner's verdict on a
    /// silence. `record` gets each change of status of a shard this coordinator owns. Returns
    /// the ids of miners this coordinator does not know (to look up and merge again).
    pub fn merge(
        &self,
        doc: &SeenDoc,
        now: Instant,
        mut record: impl FnMut(&Merged),
    ) -> Vec<String> {
        let offline_after = self.offline_after;
        let mut unknown = Vec::new();
        let peer: Arc<str> = doc.replica.as_str().into();
        let mut moved = false;
        let mut guard = self.lock();
        let inner = &mut *guard;
        for seen in &doc.miners {
            let Some(&i) = inner.by_id.get(seen.miner_id.as_str()) else {
                unknown.push(seen.miner_id.clone());
                continue;
            };
            let before = inner
                .sharing
                .peer_counts
                .insert((Arc::clone(&peer), i), seen.heartbeats)
                .unwrap_or(0);
            let entry = &mut inner.miners[i];
            entry.heartbeat_count += seen.heartbeats.saturating_sub(before);
            // Compared in microseconds: the store keeps no finer time than that.
            let theirs = seen.last_heartbeat.timestamp_micros();
            if let Some(mine) = entry.last_seen.map(|t| t.timestamp_micros())
                && theirs <= mine
            {
                if seen.status == HeartbeatStatus::Offline
                    && entry.status.is_some_and(HeartbeatStatus::is_up)
                    && (theirs == mine || entry.orphaned)
                {
                    entry.status = Some(HeartbeatStatus::Offline);
                    inner.unclock(i);
                }
                continue;
            }
            let age = (doc.written_at - seen.last_heartbeat)
                .to_std()
                .unwrap_or_default();
            // News that comes late must not bring a miner this coordinator holds offline back
            // up for a moment (a recovery, then a second offline): past half of offline_after,
            // only its time is taken.
            if !entry.status.is_some_and(HeartbeatStatus::is_up) && age >= offline_after / 2 {
                entry.last_seen = Some(seen.last_heartbeat);
                continue;
            }
            let old_status = entry.status;
            let since_last = entry
                .last_seen
                .and_then(|last| (seen.last_heartbeat - last).to_std().ok());
            entry.status = Some(seen.status);
            entry.last_seen = Some(seen.last_heartbeat);
            let (shard, count, id) = (entry.shard, entry.heartbeat_count, Arc::clone(&entry.id));
            if seen.status.is_up() {
                inner.clock(i, now.checked_sub(age).unwrap_or(now));
                moved = true;
            } else {
                inner.unclock(i);
            }
            if let Some(old) = old_status
                && old != seen.status
                && inner.sharing.owns(shard)
            {
                record(&Merged {
                    miner_id: id,
                    old_status: old,
                    new_status: seen.status,
                    last_seen: seen.last_heartbeat,
                    heartbeat_count: count,
                    since_last,
                });
            }
        }
        drop(guard);
        if moved {
            self.deadline_moved.notify_one();
        }
        unknown
    }

    /// Forgets the heartbeat counts of coordinators that left (only `live` remain).
    pub fn forget_peers(&self, live: &[&str]) {
        self.lock()
            .sharing
            .peer_counts
            .retain(|(peer, _), _| live.contains(&&**peer));
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Credential, Sampling};
    use super::*;

    const AFTER: Duration = Duration::from_secs(45);

    fn registry(ids: &[&str]) -> Registry {
        let r = Registry::new(AFTER, Sampling::EVERY_MINUTE, Vec::new(), Instant::now());
        for (n, id) in ids.iter().enumerate() {
            r.add(id, [n as u8; 32]);
        }
        r
    }

    fn beat(r: &Registry, id: &str, n: u8, at: Instant, wall: DateTime<Utc>) {
        r.heartbeat(
            id,
            Credential::Token(&[n; 32]),
            HeartbeatStatus::Online,
            at,
            wall,
            |_| {},
        )
        .expect("known miner with its own token");
    }

    /// A news document written at the time of its newest heartbeat.
    fn doc(replica: &str, miners: Vec<Seen>) -> SeenDoc {
        let written_at = miners
            .iter()
            .map(|s| s.last_heartbeat)
            .max()
            .unwrap_or_else(Utc::now);
        SeenDoc {
            replica: replica.into(),
            part: 0,
            written_at,
            miners,
        }
    }

    fn seen(id: &str, at: DateTime<Utc>, status: HeartbeatStatus, heartbeats: u64) -> Seen {
        Seen {
            miner_id: id.into(),
            last_heartbeat: at,
            status,
            heartbeats,
        }
    }

    fn mask_of(id: &str) -> u64 {
        1 << crate::store::shard_of(id)
    }

    #[test]
    fn an_overdue_miner_of_another_coordinators_shard_waits_for_its_word() {
        let r = registry(&["a"]);
        let (t0, w0) = (Instant::now(), Utc::now());
        beat(&r, "a", 0, t0, w0);
        r.set_owned(ALL_SHARDS & !mask_of("a"));
        let sweep = r.sweep(t0 + AFTER, |_| panic!("not ours to record"));
        assert!(sweep.offline.is_empty());
        assert_eq!(
            sweep.next,
            Some(t0 + AFTER * ORPHAN_GIVE_UP_FACTOR),
            "an orphan does not keep the sweep busy"
        );
        // The owner's verdict: the same heartbeat, offline.
        r.merge(
            &doc("b", vec![seen("a", w0, HeartbeatStatus::Offline, 0)]),
            t0 + AFTER,
            |_| panic!("the owner recorded it"),
        );
        let now = t0 + AFTER;
        assert_eq!(
            r.liveness_of("a", now).and_then(|l| l.status),
            Some(HeartbeatStatus::Offline)
        );
    }

    #[test]
    fn taking_a_shard_over_sweeps_its_orphans_at_once() {
        let r = registry(&["a"]);
        let (t0, w0) = (Instant::now(), Utc::now());
        beat(&r, "a", 0, t0, w0);
        r.set_owned(0);
        assert!(r.sweep(t0 + AFTER, |_| {}).offline.is_empty());
        assert_eq!(r.set_owned(ALL_SHARDS), 1, "one orphan came back");
        let sweep = r.sweep(t0 + AFTER + Duration::from_secs(1), |_| {});
        assert_eq!(sweep.offline.len(), 1);
    }

    #[test]
    fn another_coordinators_heartbeat_keeps_a_miner_up_and_counts() {
        let r = registry(&["a"]);
        let (t0, w0) = (Instant::now(), Utc::now());
        beat(&r, "a", 0, t0, w0);
        // Coordinator b took two heartbeats, the last 40 s after ours.
        let later = w0 + chrono::TimeDelta::seconds(40);
        let merged_at = t0 + Duration::from_secs(41);
        let unknown = r.merge(
            &doc(
                "b",
                vec![
                    seen("a", later, HeartbeatStatus::Online, 2),
                    seen("zz", later, HeartbeatStatus::Online, 1),
                ],
            ),
            merged_at,
            |_| panic!("no change of status"),
        );
        assert_eq!(unknown, ["zz"]);
        // 45 s after our heartbeat, but 5 s after b's: not overdue.
        assert!(r.sweep(t0 + AFTER, |_| {}).offline.is_empty());
        // The same news again adds no heartbeats; one more does.
        r.merge(
            &doc("b", vec![seen("a", later, HeartbeatStatus::Online, 2)]),
            merged_at,
            |_| {},
        );
        r.merge(
            &doc("b", vec![seen("a", later, HeartbeatStatus::Online, 3)]),
            merged_at,
            |_| {},
        );
        let liveness = r.liveness_of("a", merged_at).ok_or("a");
        assert_eq!(liveness.map(|l| l.last_seen), Ok(Some(later)));
        assert_eq!(r.lock().miners[0].heartbeat_count, 1 + 3);
        // b wrote its news as it took the heartbeat (age 0), merged at 41 s: overdue 45 s later.
        let sweep = r.sweep(merged_at + AFTER, |_| {});
        assert_eq!(sweep.offline.len(), 1);
    }

    #[test]
    fn a_recovery_another_coordinator_saw_is_recorded_by_the_owner_only() {
        let (t0, w0) = (Instant::now(), Utc::now());
        let recovery = doc(
            "b",
            vec![seen(
                "a",
                w0 + chrono::TimeDelta::seconds(60),
                HeartbeatStatus::Online,
                1,
            )],
        );
        for (owned, records) in [(ALL_SHARDS, 1), (0, 0)] {
            let r = registry(&["a"]);
            beat(&r, "a", 0, t0, w0);
            assert_eq!(r.sweep(t0 + AFTER, |_| {}).offline.len(), 1);
            r.set_owned(owned);
            let mut recorded = Vec::new();
            r.merge(&recovery, t0 + Duration::from_secs(60), |m| {
                recorded.push((m.old_status, m.new_status))
            });
            assert_eq!(recorded.len(), records, "owned {owned:x}");
            if records == 1 {
                assert_eq!(
                    recorded[0],
                    (HeartbeatStatus::Offline, HeartbeatStatus::Online)
                );
            }
            assert_eq!(
                r.liveness_of("a", t0 + Duration::from_secs(60))
                    .and_then(|l| l.status),
                Some(HeartbeatStatus::Online)
            );
        }
    }

    #[test]
    fn news_lists_what_this_coordinator_heard_in_the_window_while_publishing() {
        let r = registry(&["a", "b"]);
        let (t0, w0) = (Instant::now(), Utc::now());
        beat(&r, "a", 0, t0, w0);
        assert_eq!(r.news(t0, AFTER), None, "nothing kept while alone");
        r.set_members(2);
        beat(&r, "a", 0, t0 + Duration::from_secs(1), w0);
        beat(&r, "b", 1, t0 + Duration::from_secs(2), w0);
        let news = r
            .news(t0 + Duration::from_secs(2), AFTER)
            .unwrap_or_default();
        let heard: Vec<(&str, u64)> = news
            .iter()
            .map(|s| (s.miner_id.as_str(), s.heartbeats))
            .collect();
        assert_eq!(heard, [("b", 1), ("a", 2)], "newest first, with counts");
        assert_eq!(
            r.news(t0 + Duration::from_secs(3), AFTER),
            None,
            "no news since"
        );
        // Past the window, the next news no longer lists a miner heard long ago.
        beat(&r, "b", 1, t0 + AFTER * 2, w0);
        let news = r.news(t0 + AFTER * 2, AFTER).unwrap_or_default();
        assert!(news.iter().all(|s| s.miner_id == "b") && news.len() == 1);
    }

    #[test]
    fn two_coordinators_each_sample_a_miner_half_as_often() {
        let r = registry(&["a"]);
        let (t0, w0) = (Instant::now(), Utc::now());
        r.set_members(2);
        let outcome = |at| {
            r.heartbeat(
                "a",
                Credential::Token(&[0; 32]),
                HeartbeatStatus::Online,
                at,
                w0,
                |_| {},
            )
            .map(|o| (o.refresh_due, o.metrics_due))
        };
        assert_eq!(outcome(t0), Ok((true, true)));
        assert_eq!(outcome(t0 + Duration::from_secs(60)), Ok((false, false)));
        assert_eq!(outcome(t0 + Duration::from_secs(120)), Ok((true, true)));
    }

    #[test]
    fn the_owners_verdict_on_a_heartbeat_the_store_kept_in_microseconds_is_taken()
    -> Result<(), &'static str> {
        let r = registry(&["a"]);
        let t0 = Instant::now();
        let precise = DateTime::from_timestamp(1_800_000_000, 123_456_789).ok_or("time")?;
        beat(&r, "a", 0, t0, precise);
        r.set_owned(0);
        assert!(r.sweep(t0 + AFTER, |_| {}).offline.is_empty());
        let kept = DateTime::from_timestamp(1_800_000_000, 123_456_000).ok_or("time")?;
        r.merge(
            &doc("b", vec![seen("a", kept, HeartbeatStatus::Offline, 0)]),
            t0 + AFTER,
            |_| {},
        );
        assert_eq!(
            r.liveness_of("a", t0 + AFTER).and_then(|l| l.status),
            Some(HeartbeatStatus::Offline)
        );
        Ok(())
    }

    #[test]
    fn late_news_never_brings_a_miner_swept_offline_back_for_a_moment() -> Result<(), &'static str>
    {
        let r = registry(&["a"]);
        let (t0, w0) = (Instant::now(), Utc::now());
        beat(&r, "a", 0, t0, w0);
        assert_eq!(r.sweep(t0 + AFTER, |_| {}).offline.len(), 1);
        // b's heartbeat of 3 s after ours, in news written 47 s after it.
        let heard = w0 + chrono::TimeDelta::seconds(3);
        let mut late = doc("b", vec![seen("a", heard, HeartbeatStatus::Online, 1)]);
        late.written_at = heard + chrono::TimeDelta::seconds(47);
        r.merge(&late, t0 + Duration::from_secs(50), |_| {
            panic!("no recovery from stale news")
        });
        let now = t0 + Duration::from_secs(50);
        let liveness = r.liveness_of("a", now).ok_or("a")?;
        assert_eq!(liveness.status, Some(HeartbeatStatus::Offline));
        assert_eq!(liveness.last_seen, Some(heard), "its time is kept");
        Ok(())
    }

    #[test]
    fn an_orphan_takes_the_owners_verdict_even_on_an_older_heartbeat() {
        let r = registry(&["a"]);
        let (t0, w0) = (Instant::now(), Utc::now());
        beat(&r, "a", 0, t0, w0);
        r.set_owned(0);
        assert!(r.sweep(t0 + AFTER, |_| {}).offline.is_empty());
        // The owner never heard our heartbeat: its verdict is on an older one.
        let older = w0 - chrono::TimeDelta::seconds(10);
        r.merge(
            &doc("b", vec![seen("a", older, HeartbeatStatus::Offline, 0)]),
            t0 + AFTER,
            |_| {},
        );
        assert_eq!(
            r.liveness_of("a", t0 + AFTER).and_then(|l| l.status),
            Some(HeartbeatStatus::Offline)
        );
    }

    #[test]
    fn an_orphan_whose_owner_never_answers_is_held_offline_after_three_windows() {
        let r = registry(&["a"]);
        let (t0, w0) = (Instant::now(), Utc::now());
        beat(&r, "a", 0, t0, w0);
        r.set_owned(0);
        let sweep = r.sweep(t0 + AFTER, |_| panic!("not ours"));
        assert_eq!(sweep.next, Some(t0 + AFTER * 3), "woken to give it up");
        r.sweep(t0 + AFTER * 3, |_| panic!("not recorded"));
        assert_eq!(
            r.liveness_of("a", t0 + AFTER * 3).and_then(|l| l.status),
            Some(HeartbeatStatus::Offline)
        );
        assert!(r.lock().sharing.orphans.is_empty());
    }
}
