//! The heartbeat store: every miner's liveness in memory, plus an index ordered by time of last
//! heartbeat, so the health check touches only miners whose deadline has passed.
//!
//! Status rule (also in the README):
//! - `online`: the last heartbeat said `online` and arrived less than `offline_after` ago.
//! - `degraded`: the last heartbeat said `degraded`, or the miner is late: silent for longer
//!   than 1.5 of its own recent intervals between heartbeats, and at least half of
//!   `offline_after`, but less than all of it. A miner on a slower cadence (the original beats
//!   every ~31 s) is not late between its beats; one that has not beaten twice yet is judged by
//!   half of `offline_after`. Lateness is computed when read (it heals with the next heartbeat),
//!   so it is neither recorded nor alerted.
//! - `offline`: silent for `offline_after`, or the last heartbeat said `offline` (a sign-off).
//!
//! Only the first and second kinds of change of a stored status are transitions: they are written
//! to status_history and, for online/degraded ↔ offline, alerted.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::api::HeartbeatStatus;
use crate::store::MinerSummary;

/// Fewest miners up for the mass-silence guard to apply: in a small fleet, every miner counts.
pub const MASS_SILENCE_MIN_MINERS: usize = 10;

/// Weight of the newest interval in a miner's cadence (an exponential moving average, so one
/// slow beat moves it a quarter of the way).
const CADENCE_WEIGHT: f64 = 0.25;
/// A miner is late once silent for this many of its own intervals (see the module docs).
const LATE_AFTER_INTERVALS: f64 = 1.5;

/// How often miner_states is refreshed and metrics_history sampled for a miner whose status is
/// unchanged (`--state-every`, `--metrics-every`).
#[derive(Debug, Clone, Copy)]
pub struct Sampling {
    pub state_every: Duration,
    pub metrics_every: Duration,
}

impl Sampling {
    /// The embedded store's default: every minute.
    pub const EVERY_MINUTE: Sampling = Sampling {
        state_every: Duration::from_secs(60),
        metrics_every: Duration::from_secs(60),
    };
}

/// The guard holds transitions for at most this many times `offline_after`: a silence that long
/// is real (half the fleet really went away), and the miners must be reported offline.
pub const MAX_HOLD_FACTOR: u32 = 3;

/// How often the health check looks again while the mass-silence guard holds transitions.
const HOLD_RECHECK: Duration = Duration::from_secs(1);

/// The in-memory registry of miners. Cheap to share; the lock is never held across `.await`.
#[derive(Debug)]
pub struct Registry {
    inner: Mutex<Inner>,
    offline_after: Duration,
    sampling: Sampling,
    /// Wakes the health check when the earliest deadline may have moved earlier.
    pub(crate) deadline_moved: Notify,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<Arc<str>, usize>,
    by_token: HashMap<[u8; 32], usize>,
    miners: Vec<Entry>,
    /// `(time the silence clock started, miner index)` of every miner that is up. The clock
    /// starts at the last heartbeat, or at start-up for a miner the previous run saw up.
    silence: BTreeSet<(Instant, usize)>,
    /// Since when the mass-silence guard has been holding transitions, if it is.
    holding_since: Option<Instant>,
    /// The guard gave up holding during the present mass silence (see [`MAX_HOLD_FACTOR`]).
    hold_expired: bool,
    /// What coordinators sharing the store need (see `sharing.rs`).
    sharing: sharing::Sharing,
}

#[derive(Debug)]
struct Entry {
    id: Arc<str>,
    token_hash: [u8; 32],
    status: Option<HeartbeatStatus>,
    /// Start of the silence clock (see [`Inner::silence`]); `Some` exactly when the miner is up.
    clock: Option<Instant>,
    last_seen: Option<DateTime<Utc>>,
    heartbeat_count: u64,
    /// When miner_states and metrics_history were last written for it by this coordinator.
    last_state: Option<Instant>,
    last_metrics: Option<Instant>,
    /// When the last heartbeat arrived (this process's clock).
    last_beat: Option<Instant>,
    /// The miner's usual interval between heartbeats, once it has beaten twice; gaps longer than
    /// `offline_after` (outages) do not count.
    cadence: Option<Duration>,
    /// It has authenticated with its token (stored): token-less requests are refused for it.
    token_used: bool,
    /// A token-less request was accepted for it (`--legacy-clients`) since this process started.
    legacy: bool,
    /// Its shard ([`crate::store::shard_of`]).
    shard: u32,
    /// Heartbeats this coordinator took for it since it started (published to the others).
    heard: u64,
    /// It is overdue in a shard another coordinator sweeps, so its clock waits in
    /// `Sharing::orphans` (not in `Inner::silence`) for that coordinator's word.
    orphaned: bool,
}

/// Who presented a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenOwner {
    Miner(Arc<str>),
    Unknown,
}

/// Why a heartbeat was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NoSuchMiner,
    WrongToken,
    /// A token-less request for a miner that has used its token.
    TokenRequired,
}

/// How a request proves it speaks for a miner.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    /// The hash of its bearer token.
    Token(&'a [u8; 32]),
    /// Nothing: the original's miners never send the token they were given. Accepted only with
    /// `--legacy-clients` (the caller checks) and only for a miner that never used its token.
    Legacy,
}

/// What accepting a credential changed, for the caller to store and say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CredentialNews {
    /// The token was used for the first time: store it, so token-less requests stay refused.
    pub first_token_use: bool,
    /// A token-less request was accepted for this miner for the first time since start.
    pub first_legacy_use: bool,
}

/// What a heartbeat changed, for the caller to persist and alert.
#[derive(Debug, Clone)]
pub struct HeartbeatOutcome {
    pub miner_id: Arc<str>,
    pub old_status: Option<HeartbeatStatus>,
    pub new_status: HeartbeatStatus,
    pub heartbeat_count: u64,
    /// Time since the previous heartbeat.
    pub since_last: Option<Duration>,
    /// A refresh of miner_states is due: `state_every` passed since the last (or there was none).
    pub refresh_due: bool,
    /// A metrics_history sample is due: `metrics_every` passed since the last one.
    pub metrics_due: bool,
    pub credential: CredentialNews,
    /// This coordinator owns the miner's shard (always, alone): it records the miner's changes.
    /// Another coordinator's change reaches the owner in its news (see `sharing.rs`).
    pub owned: bool,
}

impl HeartbeatOutcome {
    /// A change of a known status (the first heartbeat is not a transition).
    pub fn is_transition(&self) -> bool {
        self.old_status.is_some_and(|old| old != self.new_status)
    }

    /// miner_states needs writing: the status changed (first heartbeat included) or a refresh
    /// is due.
    pub fn state_due(&self) -> bool {
        self.refresh_due || self.old_status != Some(self.new_status)
    }

    /// Anything needs writing: miner_states or a metrics_history sample.
    pub fn write_due(&self) -> bool {
        self.state_due() || self.metrics_due
    }
}

/// A miner the health check found silent.
#[derive(Debug, Clone)]
pub struct Silent {
    pub miner_id: Arc<str>,
    pub old_status: HeartbeatStatus,
    pub last_seen: Option<DateTime<Utc>>,
    pub heartbeat_count: u64,
}

/// What one health-check sweep decided.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Miners now offline.
    pub offline: Vec<Silent>,
    /// The mass-silence guard started holding: `(silent, up)` counts.
    pub hold_started: Option<(usize, usize)>,
    /// The guard stopped holding because the silence is over.
    pub hold_ended: bool,
    /// The guard stopped holding because the silence lasted too long: the held miners go offline.
    pub hold_expired: bool,
    /// When to sweep next; `None` when no miner is up.
    pub next: Option<Instant>,
}

/// One row of `GET /miners/heartbeat_status`.
#[derive(Debug, Clone)]
pub struct Liveness {
    pub miner_id: Arc<str>,
    pub last_seen: Option<DateTime<Utc>>,
    pub status: Option<HeartbeatStatus>,
}

impl Registry {
    /// Builds the registry from the store. Every miner that was up gets a fresh grace period of
    /// `offline_after` from `now`, so a restart never declares the whole fleet offline.
    pub fn new(
        offline_after: Duration,
        sampling: Sampling,
        summaries: Vec<MinerSummary>,
        now: Instant,
    ) -> Self {
        let mut inner = Inner::default();
        for summary in summaries {
            inner.insert(Entry::loaded(summary, now));
        }
        Self {
            inner: Mutex::new(inner),
            offline_after,
            sampling,
            deadline_moved: Notify::new(),
        }
    }

    /// Adds a miner another coordinator registered, as the store has it (with the grace period
    /// of [`Registry::new`]); a miner already known is left as it is.
    pub fn learn(&self, summary: MinerSummary, now: Instant) {
        let mut inner = self.lock();
        if !inner.by_id.contains_key(summary.id.as_str()) {
            inner.insert(Entry::loaded(summary, now));
        }
        drop(inner);
        self.deadline_moved.notify_one();
    }

    pub fn offline_after(&self) -> Duration {
        self.offline_after
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves `Inner` consistent before it could panic, so a poisoned
        // lock still guards valid data.
        self.inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Adds a newly registered miner (no heartbeat yet).
    pub fn add(&self, id: &str, token_hash: [u8; 32]) {
        self.lock().insert(Entry::new(id, token_hash));
    }

    /// Checks `credential` for miner `id` and records its use (see [`CredentialNews`]).
    pub fn admit(&self, id: &str, credential: Credential<'_>) -> Result<CredentialNews, Refusal> {
        let mut inner = self.lock();
        let &i = inner.by_id.get(id).ok_or(Refusal::NoSuchMiner)?;
        admit(&mut inner.miners[i], credential)
    }

    /// How many miners a token-less request was accepted for since start.
    pub fn legacy_count(&self) -> usize {
        self.lock().miners.iter().filter(|e| e.legacy).count()
    }

    /// A token-less request was accepted for `id` since start.
    pub fn is_legacy(&self, id: &str) -> bool {
        let inner = self.lock();
        inner.by_id.get(id).is_some_and(|&i| inner.miners[i].legacy)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.lock().by_id.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.lock().miners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The miner a token belongs to.
    pub fn token_owner(&self, token_hash: &[u8; 32]) -> TokenOwner {
        let inner = self.lock();
        match inner.by_token.get(token_hash) {
            Some(&i) => TokenOwner::Miner(Arc::clone(&inner.miners[i].id)),
            None => TokenOwner::Unknown,
        }
    }

    /// Whether a heartbeat of `id` reporting `reported` at `now` will want anything written
    /// ([`HeartbeatOutcome::write_due`]), so the caller can prepare that write (serialize the
    /// metrics) before [`Registry::heartbeat`] takes the lock, and skip it for the heartbeats
    /// that write nothing. A hint: another request for the same miner, or a sweep, may change the
    /// answer before then, so `persist` must still cope with either.
    pub fn write_due(&self, id: &str, reported: HeartbeatStatus, now: Instant) -> bool {
        let inner = self.lock();
        inner.by_id.get(id).is_some_and(|&i| {
            let entry = &inner.miners[i];
            entry.status != Some(reported)
                || due(
                    entry.last_state,
                    inner.sharing.spread(self.sampling.state_every),
                    now,
                )
                || due(
                    entry.last_metrics,
                    inner.sharing.spread(self.sampling.metrics_every),
                    now,
                )
        })
    }

    /// Records a heartbeat of `id`, authenticated by `token_hash`. `persist` runs while the lock
    /// is held, so the writes it queues enter the store's queue in the same order as the changes
    /// they describe (a sweep cannot slip its writes in between); it should only queue what it
    /// has prepared (see [`Registry::state_due`]), since every other heartbeat waits for it.
    pub fn heartbeat(
        &self,
        id: &str,
        credential: Credential<'_>,
        reported: HeartbeatStatus,
        now: Instant,
        wall: DateTime<Utc>,
        persist: impl FnOnce(&HeartbeatOutcome),
    ) -> Result<HeartbeatOutcome, Refusal> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let &i = inner.by_id.get(id).ok_or(Refusal::NoSuchMiner)?;
        let entry = &mut inner.miners[i];
        let news = admit(entry, credential)?;
        let was_empty = inner.silence.is_empty();
        inner.unclock(i);
        let entry = &mut inner.miners[i];
        let since_last = entry.last_seen.and_then(|last| (wall - last).to_std().ok());
        let old_status = entry.status;
        entry.status = Some(reported);
        entry.last_seen = Some(wall);
        entry.heartbeat_count += 1;
        if let Some(gap) = entry.last_beat.map(|last| now.duration_since(last))
            && gap <= self.offline_after
        {
            entry.cadence = Some(match entry.cadence {
                Some(usual) => usual.mul_f64(1.0 - CADENCE_WEIGHT) + gap.mul_f64(CADENCE_WEIGHT),
                None => gap,
            });
        }
        entry.last_beat = Some(now);
        entry.heard += 1;
        let (state_every, metrics_every) = (
            inner.sharing.spread(self.sampling.state_every),
            inner.sharing.spread(self.sampling.metrics_every),
        );
        let entry = &mut inner.miners[i];
        let refresh_due = due(entry.last_state, state_every, now);
        if refresh_due || old_status != Some(reported) {
            entry.last_state = Some(now);
        }
        let metrics_due = due(entry.last_metrics, metrics_every, now);
        if metrics_due {
            entry.last_metrics = Some(now);
        }
        let outcome = HeartbeatOutcome {
            miner_id: Arc::clone(&entry.id),
            old_status,
            new_status: reported,
            heartbeat_count: entry.heartbeat_count,
            since_last,
            refresh_due,
            metrics_due,
            credential: news,
            owned: inner.sharing.owns(entry.shard),
        };
        if reported.is_up() {
            inner.clock(i, now);
        }
        inner.sharing.touched(&inner.miners[i], i, now);
        persist(&outcome);
        drop(guard);
        if was_empty && reported.is_up() {
            // Release the lock first so the woken health check does not block on it at once.
            self.deadline_moved.notify_one();
        }
        Ok(outcome)
    }

    /// Marks miners silent for `offline_after` as offline, unless the mass-silence guard holds.
    /// `persist` runs for each, with the lock held (see [`Registry::heartbeat`]).
    pub fn sweep(&self, now: Instant, mut persist: impl FnMut(&Silent)) -> Sweep {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let mut sweep = Sweep::default();
        inner.give_up_orphans(now, self.offline_after);
        let Some(overdue_before) = now.checked_sub(self.offline_after) else {
            sweep.next = inner.next_deadline(self.offline_after);
            return sweep;
        };
        let overdue: Vec<(Instant, usize)> = inner
            .silence
            .range(..=(overdue_before, usize::MAX))
            .copied()
            .collect();
        if overdue.is_empty() {
            sweep.hold_ended = inner.end_silence();
            sweep.next = inner.next_deadline(self.offline_after);
            return sweep;
        }
        let up = inner.silence.len();
        let late = match now.checked_sub(self.offline_after / 2) {
            Some(late_before) => inner.silence.range(..=(late_before, usize::MAX)).count(),
            None => overdue.len(),
        };
        if up >= MASS_SILENCE_MIN_MINERS && late * 2 >= up {
            if !inner.hold_expired {
                let since = *inner.holding_since.get_or_insert_with(|| {
                    sweep.hold_started = Some((late, up));
                    now
                });
                if now.duration_since(since) < self.offline_after * MAX_HOLD_FACTOR {
                    sweep.next = Some(now + HOLD_RECHECK);
                    return sweep;
                }
                inner.holding_since = None;
                inner.hold_expired = true;
                sweep.hold_expired = true;
            }
        } else {
            sweep.hold_ended = inner.end_silence();
        }
        for key in overdue {
            inner.silence.remove(&key);
            // Another coordinator sweeps this shard: its word decides (see `sharing.rs`).
            if !inner.sharing.owns(inner.miners[key.1].shard) {
                inner.orphan(key);
                continue;
            }
            let entry = &mut inner.miners[key.1];
            entry.clock = None;
            let old_status = entry.status.unwrap_or(HeartbeatStatus::Online);
            entry.status = Some(HeartbeatStatus::Offline);
            let silent = Silent {
                miner_id: Arc::clone(&entry.id),
                old_status,
                last_seen: entry.last_seen,
                heartbeat_count: entry.heartbeat_count,
            };
            persist(&silent);
            inner.sharing.touched(&inner.miners[key.1], key.1, now);
            sweep.offline.push(silent);
        }
        sweep.next = inner.next_deadline(self.offline_after);
        sweep
    }

    /// Every miner's liveness, with lateness applied (see the module docs).
    pub fn liveness(&self, now: Instant) -> Vec<Liveness> {
        let inner = self.lock();
        inner
            .miners
            .iter()
            .map(|e| Liveness {
                miner_id: Arc::clone(&e.id),
                last_seen: e.last_seen,
                status: self.effective(e, now),
            })
            .collect()
    }

    /// One miner's liveness.
    pub fn liveness_of(&self, id: &str, now: Instant) -> Option<Liveness> {
        let inner = self.lock();
        let e = &inner.miners[*inner.by_id.get(id)?];
        Some(Liveness {
            miner_id: Arc::clone(&e.id),
            last_seen: e.last_seen,
            status: self.effective(e, now),
        })
    }

    /// How many miners are in each status (`None`: no heartbeat yet).
    pub fn counts(&self, now: Instant) -> HashMap<Option<HeartbeatStatus>, usize> {
        let inner = self.lock();
        let mut counts = HashMap::new();
        for e in &inner.miners {
            *counts.entry(self.effective(e, now)).or_insert(0) += 1;
        }
        counts
    }

    fn effective(&self, e: &Entry, now: Instant) -> Option<HeartbeatStatus> {
        let late_after = e
            .cadence
            .map_or(Duration::ZERO, |usual| usual.mul_f64(LATE_AFTER_INTERVALS))
            .max(self.offline_after / 2);
        match (e.status, e.clock) {
            (Some(HeartbeatStatus::Online), Some(clock))
                if now.duration_since(clock) > late_after =>
            {
                Some(HeartbeatStatus::Degraded)
            }
            (status, _) => status,
        }
    }
}

impl Entry {
    /// A newly registered miner (no heartbeat yet).
    fn new(id: &str, token_hash: [u8; 32]) -> Self {
        Self {
            id: id.into(),
            token_hash,
            status: None,
            clock: None,
            last_seen: None,
            heartbeat_count: 0,
            last_state: None,
            last_metrics: None,
            last_beat: None,
            cadence: None,
            token_used: false,
            legacy: false,
            shard: crate::store::shard_of(id),
            heard: 0,
            orphaned: false,
        }
    }

    /// A miner as the store has it; an up one gets the grace period from `now`.
    fn loaded(summary: MinerSummary, now: Instant) -> Self {
        let up = summary.current_status.is_some_and(HeartbeatStatus::is_up);
        Self {
            status: summary.current_status,
            clock: up.then_some(now),
            last_seen: summary.last_heartbeat,
            heartbeat_count: summary.heartbeat_count,
            token_used: summary.token_used,
            ..Self::new(&summary.id, summary.token_hash)
        }
    }
}

/// `every` passed since `last`, or there was none.
fn due(last: Option<Instant>, every: Duration, now: Instant) -> bool {
    last.is_none_or(|at| now.duration_since(at) >= every)
}

/// The credential check itself: a token must be the miner's; no token passes only for a miner
/// that never used its own.
fn admit(entry: &mut Entry, credential: Credential<'_>) -> Result<CredentialNews, Refusal> {
    let mut news = CredentialNews::default();
    match credential {
        Credential::Token(hash) => {
            if entry.token_hash != *hash {
                return Err(Refusal::WrongToken);
            }
            news.first_token_use = !entry.token_used;
            entry.token_used = true;
        }
        Credential::Legacy => {
            if entry.token_used {
                return Err(Refusal::TokenRequired);
            }
            news.first_legacy_use = !entry.legacy;
            entry.legacy = true;
        }
    }
    Ok(news)
}

impl Inner {
    /// The mass silence is over; returns whether transitions were being held.
    fn end_silence(&mut self) -> bool {
        self.hold_expired = false;
        self.holding_since.take().is_some()
    }

    /// Stops the silence clock of miner `i` (wherever it waits).
    fn unclock(&mut self, i: usize) {
        let entry = &mut self.miners[i];
        if let Some(clock) = entry.clock.take() {
            if std::mem::take(&mut entry.orphaned) {
                self.sharing.orphans.remove(&(clock, i));
            } else {
                self.silence.remove(&(clock, i));
            }
        }
    }

    /// Starts the silence clock of miner `i` at `at` (it is up).
    fn clock(&mut self, i: usize, at: Instant) {
        self.unclock(i);
        self.miners[i].clock = Some(at);
        self.silence.insert((at, i));
    }

    /// Moves an overdue miner's clock from the silence set to the orphans.
    fn orphan(&mut self, key: (Instant, usize)) {
        self.miners[key.1].orphaned = true;
        self.sharing.orphans.insert(key);
    }

    fn insert(&mut self, entry: Entry) {
        let i = self.miners.len();
        if let Some(clock) = entry.clock {
            self.silence.insert((clock, i));
        }
        self.by_id.insert(Arc::clone(&entry.id), i);
        self.by_token.insert(entry.token_hash, i);
        self.miners.push(entry);
    }

    fn next_deadline(&self, offline_after: Duration) -> Option<Instant> {
        // `offline_after` is bounded by the settings; checked all the same, since an overflow
        // here would stop the health check for good.
        let silence = self
            .silence
            .first()
            .and_then(|&(clock, _)| clock.checked_add(offline_after));
        let orphan = self.sharing.orphans.first().and_then(|&(clock, _)| {
            clock.checked_add(offline_after.saturating_mul(sharing::ORPHAN_GIVE_UP_FACTOR))
        });
        match (silence, orphan) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

mod sharing;
pub use sharing::{ALL_SHARDS, Merged};

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_secs(45);
    const SAMPLE_EVERY: Duration = Duration::from_secs(60);

    fn registry(n: usize) -> Registry {
        let r = Registry::new(AFTER, Sampling::EVERY_MINUTE, Vec::new(), Instant::now());
        for i in 0..n {
            r.add(&format!("m{i}"), [i as u8; 32]);
        }
        r
    }

    fn beat(r: &Registry, i: usize, at: Instant) -> HeartbeatOutcome {
        r.heartbeat(
            &format!("m{i}"),
            Credential::Token(&[i as u8; 32]),
            HeartbeatStatus::Online,
            at,
            Utc::now(),
            |_| {},
        )
        .expect("known miner with its own token")
    }

    #[test]
    fn first_heartbeat_is_not_a_transition_but_recovery_is() {
        let r = registry(1);
        let t0 = Instant::now();
        let first = beat(&r, 0, t0);
        assert!(!first.is_transition());
        assert!(first.refresh_due && first.metrics_due);
        let sweep = r.sweep(t0 + AFTER, |_| {});
        assert_eq!(sweep.offline.len(), 1);
        assert_eq!(sweep.offline[0].old_status, HeartbeatStatus::Online);
        let back = beat(&r, 0, t0 + AFTER + Duration::from_secs(1));
        assert!(back.is_transition());
        assert_eq!(back.old_status, Some(HeartbeatStatus::Offline));
    }

    #[test]
    fn a_sweep_before_the_deadline_changes_nothing_and_names_the_deadline() {
        let r = registry(1);
        let t0 = Instant::now();
        beat(&r, 0, t0);
        let sweep = r.sweep(t0 + AFTER - Duration::from_millis(1), |_| {});
        assert!(sweep.offline.is_empty());
        assert_eq!(sweep.next, Some(t0 + AFTER));
    }

    #[test]
    fn only_a_miner_whose_deadline_passed_goes_offline() {
        let r = registry(3);
        let t0 = Instant::now();
        beat(&r, 0, t0);
        beat(&r, 1, t0 + Duration::from_secs(30));
        beat(&r, 2, t0 + Duration::from_secs(40));
        let sweep = r.sweep(t0 + AFTER, |_| {});
        let ids: Vec<_> = sweep
            .offline
            .iter()
            .map(|s| s.miner_id.to_string())
            .collect();
        assert_eq!(ids, ["m0"]);
        assert_eq!(sweep.next, Some(t0 + Duration::from_secs(30) + AFTER));
        assert!(
            r.sweep(t0 + AFTER, |_| {}).offline.is_empty(),
            "alerted once only"
        );
    }

    #[test]
    fn wrong_token_and_unknown_miner_are_refused_without_change() {
        let r = registry(2);
        let now = Instant::now();
        let wrong = r.heartbeat(
            "m0",
            Credential::Token(&[1; 32]),
            HeartbeatStatus::Online,
            now,
            Utc::now(),
            |_| {},
        );
        assert_eq!(wrong.err(), Some(Refusal::WrongToken));
        let unknown = r.heartbeat(
            "zz",
            Credential::Token(&[0; 32]),
            HeartbeatStatus::Online,
            now,
            Utc::now(),
            |_| {},
        );
        assert_eq!(unknown.err(), Some(Refusal::NoSuchMiner));
        assert_eq!(r.liveness_of("m0", now).and_then(|l| l.status), None);
    }

    #[test]
    fn mass_silence_holds_transitions_and_alerts_once() {
        let n = MASS_SILENCE_MIN_MINERS;
        let r = registry(n);
        let t0 = Instant::now();
        for i in 0..n {
            beat(&r, i, t0 + Duration::from_millis(i as u64 * 100));
        }
        let first = r.sweep(t0 + AFTER + Duration::from_secs(1), |_| {});
        assert!(first.offline.is_empty());
        assert_eq!(first.hold_started, Some((n, n)));
        let again = r.sweep(t0 + AFTER + Duration::from_secs(2), |_| {});
        assert!(
            again.hold_started.is_none(),
            "one aggregate alert per episode"
        );
        // Most miners come back: the guard lifts and the one still silent goes offline.
        let t1 = t0 + AFTER + Duration::from_secs(3);
        for i in 1..n {
            beat(&r, i, t1);
        }
        let after = r.sweep(t1, |_| {});
        assert!(after.hold_ended);
        assert_eq!(after.offline.len(), 1);
        assert_eq!(&*after.offline[0].miner_id, "m0");
    }

    #[test]
    fn a_mass_silence_that_lasts_releases_the_held_miners_once() {
        let n = MASS_SILENCE_MIN_MINERS;
        let r = registry(n);
        let t0 = Instant::now();
        for i in 0..n {
            beat(&r, i, t0);
        }
        let start = t0 + AFTER;
        assert!(r.sweep(start, |_| {}).hold_started.is_some());
        let almost = start + AFTER * MAX_HOLD_FACTOR - Duration::from_secs(1);
        assert!(r.sweep(almost, |_| {}).offline.is_empty(), "still held");
        let mut persisted = 0;
        let expired = r.sweep(start + AFTER * MAX_HOLD_FACTOR, |_| persisted += 1);
        assert!(expired.hold_expired);
        assert_eq!(expired.offline.len(), n);
        assert_eq!(
            persisted, n,
            "each transition is handed over for persisting"
        );
        let later = r.sweep(
            start + AFTER * MAX_HOLD_FACTOR + Duration::from_secs(5),
            |_| {},
        );
        assert!(later.hold_started.is_none() && later.offline.is_empty());
    }

    #[test]
    fn a_restart_gives_every_miner_that_was_up_a_fresh_grace_period() {
        let summary = |id: &str, status| MinerSummary {
            id: id.into(),
            token_hash: [0; 32],
            last_heartbeat: Some(Utc::now() - chrono::Duration::hours(1)),
            current_status: Some(status),
            heartbeat_count: 9,
            token_used: true,
        };
        let t0 = Instant::now();
        let r = Registry::new(
            AFTER,
            Sampling::EVERY_MINUTE,
            vec![
                summary("up", HeartbeatStatus::Online),
                summary("down", HeartbeatStatus::Offline),
            ],
            t0,
        );
        assert!(
            r.sweep(t0 + AFTER - Duration::from_millis(1), |_| {})
                .offline
                .is_empty()
        );
        let sweep = r.sweep(t0 + AFTER, |_| {});
        let ids: Vec<_> = sweep
            .offline
            .iter()
            .map(|s| s.miner_id.to_string())
            .collect();
        assert_eq!(ids, ["up"]);
    }

    #[test]
    fn a_late_miner_reads_as_degraded_without_a_transition() {
        let r = registry(1);
        let t0 = Instant::now();
        beat(&r, 0, t0);
        let late = t0 + AFTER / 2 + Duration::from_secs(1);
        assert_eq!(
            r.liveness_of("m0", late).and_then(|l| l.status),
            Some(HeartbeatStatus::Degraded)
        );
        assert!(r.sweep(late, |_| {}).offline.is_empty());
    }

    #[test]
    fn no_token_passes_only_for_a_miner_that_never_used_its_own() {
        let r = registry(2);
        let first = r
            .admit("m0", Credential::Legacy)
            .expect("never used its token");
        assert!(first.first_legacy_use);
        let again = r.admit("m0", Credential::Legacy).expect("still");
        assert!(!again.first_legacy_use, "said once");
        assert_eq!(r.legacy_count(), 1);
        let used = r
            .admit("m1", Credential::Token(&[1; 32]))
            .expect("its token");
        assert!(used.first_token_use);
        assert!(
            !r.admit("m1", Credential::Token(&[1; 32]))
                .expect("its token")
                .first_token_use
        );
        assert_eq!(
            r.admit("m1", Credential::Legacy),
            Err(Refusal::TokenRequired)
        );
        // A miner that switched to its token is no longer reachable without it.
        r.admit("m0", Credential::Token(&[0; 32]))
            .expect("its token");
        assert_eq!(
            r.admit("m0", Credential::Legacy),
            Err(Refusal::TokenRequired)
        );
    }

    /// The original beats every ~31 s: with offline_after 45 s it read degraded for ~8 s of
    /// every cycle. Lateness now follows each miner's own cadence.
    #[test]
    fn a_slow_but_steady_miner_never_reads_late_and_a_fast_one_still_does() {
        let r = registry(2);
        let t0 = Instant::now();
        let status = |id: &str, at: Instant| r.liveness_of(id, at).and_then(|l| l.status);
        for n in 0..5u32 {
            beat(&r, 0, t0 + Duration::from_secs(31) * n);
            beat(&r, 1, t0 + Duration::from_secs(10) * n);
        }
        let slow_last = t0 + Duration::from_secs(31 * 4);
        assert_eq!(
            status("m0", slow_last + Duration::from_secs(30)),
            Some(HeartbeatStatus::Online),
            "30 s into a 31 s cycle is on time"
        );
        assert_eq!(
            status("m0", slow_last + Duration::from_secs(44)),
            Some(HeartbeatStatus::Online),
            "not late before 1.5 intervals (46.5 s), which is past offline_after"
        );
        let fast_last = t0 + Duration::from_secs(40);
        assert_eq!(
            status("m1", fast_last + Duration::from_secs(21)),
            Some(HeartbeatStatus::Online),
            "never late before half of offline_after"
        );
        assert_eq!(
            status("m1", fast_last + Duration::from_secs(23)),
            Some(HeartbeatStatus::Degraded),
            "a 10 s miner silent for 23 s is late"
        );
        // An outage is not a cadence: a 10 s miner back after 60 s keeps its 10 s.
        beat(&r, 1, fast_last + Duration::from_secs(60));
        beat(&r, 1, fast_last + Duration::from_secs(70));
        assert_eq!(
            status("m1", fast_last + Duration::from_secs(70 + 23)),
            Some(HeartbeatStatus::Degraded)
        );
    }

    #[test]
    fn samples_are_due_once_a_minute_and_state_also_on_a_status_change() {
        let r = registry(1);
        let t0 = Instant::now();
        assert!(beat(&r, 0, t0).metrics_due);
        assert!(!beat(&r, 0, t0 + Duration::from_secs(10)).metrics_due);
        assert!(beat(&r, 0, t0 + SAMPLE_EVERY).metrics_due);
        let degraded = r
            .heartbeat(
                "m0",
                Credential::Token(&[0; 32]),
                HeartbeatStatus::Degraded,
                t0 + SAMPLE_EVERY + Duration::from_secs(1),
                Utc::now(),
                |_| {},
            )
            .expect("known");
        assert!(
            !degraded.metrics_due,
            "a status change does not force a metrics sample"
        );
        assert!(degraded.state_due() && degraded.is_transition());
    }

    #[test]
    fn the_write_hint_agrees_with_the_heartbeat_that_follows_it() {
        let r = registry(1);
        let t0 = Instant::now();
        let secs = Duration::from_secs;
        let beats = [
            (HeartbeatStatus::Online, t0, true),
            (HeartbeatStatus::Online, t0 + secs(10), false),
            (HeartbeatStatus::Degraded, t0 + secs(20), true),
            (HeartbeatStatus::Degraded, t0 + secs(30), false),
            (HeartbeatStatus::Degraded, t0 + SAMPLE_EVERY, true),
            (HeartbeatStatus::Offline, t0 + SAMPLE_EVERY + secs(1), true),
        ];
        for (status, at, due) in beats {
            let hint = r.write_due("m0", status, at);
            let outcome = r
                .heartbeat(
                    "m0",
                    Credential::Token(&[0; 32]),
                    status,
                    at,
                    Utc::now(),
                    |_| {},
                )
                .expect("known");
            assert_eq!(
                (hint, outcome.write_due()),
                (due, due),
                "{status:?} at {at:?}"
            );
        }
        assert!(
            !r.write_due("zz", HeartbeatStatus::Online, t0),
            "an unknown miner writes nothing"
        );
    }

    #[test]
    fn state_refreshes_and_metrics_samples_keep_their_own_intervals() {
        let sampling = Sampling {
            state_every: Duration::from_secs(600),
            metrics_every: Duration::from_secs(60),
        };
        let r = Registry::new(AFTER, sampling, Vec::new(), Instant::now());
        r.add("m0", [0; 32]);
        let t0 = Instant::now();
        let first = beat(&r, 0, t0);
        assert!(first.refresh_due && first.metrics_due);
        let minute = beat(&r, 0, t0 + Duration::from_secs(60));
        assert!(!minute.refresh_due && minute.metrics_due && minute.write_due());
        assert!(!minute.state_due());
        let later = beat(&r, 0, t0 + Duration::from_secs(600));
        assert!(later.refresh_due);
    }
}
