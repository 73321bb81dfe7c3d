//! Turning a status change into what the store and the alerter get: the rules in one place.
//!
//! A heartbeat ([`after_heartbeat`]) or a silence the health check found ([`after_silence`])
//! becomes a [`Plan`]: the miner_states write, the status_history row with the alert that waits
//! for its commit, the metrics_history sample. The functions that decide are pure (they take the
//! time and return a value), so every rule is tested here without a store, a lock or a clock;
//! [`Plan::queue`] is the only part that touches the coordinator, and it decides nothing.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::alerts::Alert;
use super::registry::{HeartbeatOutcome, Merged, Silent};
use super::state::AppState;
use crate::api::HeartbeatStatus;
use crate::store::{MinerState, StatusChange, TransitionWrite, Write};

/// The status_history reason of a change the miner reported.
const REPORTED: &str = "reported by the miner's heartbeat";
/// The alert's reason when an up miner's heartbeat says `offline`.
const SIGNED_OFF: &str = "the miner signed off";

/// What one heartbeat or one silence asks for, in the order [`Plan::queue`] queues it. Empty
/// (the default) when nothing is due.
#[derive(Debug, Clone, Default)]
pub(super) struct Plan {
    /// The miner_states upsert; with a transition, written with it (one write, acknowledged).
    pub(super) state: Option<(MinerState, Queue)>,
    /// The status_history row and its alert.
    pub(super) transition: Option<Transition>,
    /// A metrics_history row, queued last; always [`Queue::Shed`].
    pub(super) sample: Option<Write>,
}

/// How a write enters the store's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Queue {
    /// Always kept: it records a change, which nothing later repeats.
    Keep,
    /// Dropped while the store is behind: a refresh of an unchanged status, which the next
    /// sample (a minute later) repeats.
    Shed,
}

/// A status_history row and the alert that is raised once it is committed (an alert is never
/// sent for a change that was not stored).
#[derive(Debug, Clone)]
pub(super) struct Transition {
    pub(super) change: StatusChange,
    pub(super) alert: Option<Alert>,
}

/// The plan for an accepted heartbeat, received at `now`, whose metrics are `metrics` (JSON).
///
/// - miner_states only when [`HeartbeatOutcome::state_due`]:
/// - the same status as before: a sheddable refresh of miner_states.
/// - A change of a known status: miner_states (kept) and a status_history row; an alert only
///   for offline → up (recovered) and up → offline (signed off). Online ↔ degraded is recorded
///   but not alerted. Only when this coordinator owns the miner's shard: otherwise the owner
///   records it from this coordinator's news, and only miner_states is written (kept).
/// - The first heartbeat (no status before): miner_states only, kept.
/// - In every case, a metrics_history sample when one is due (`--metrics-every`).
pub(super) fn after_heartbeat(
    outcome: &HeartbeatOutcome,
    metrics: Arc<str>,
    now: DateTime<Utc>,
) -> Plan {
    let miner_id = outcome.miner_id.as_ref();
    let sample = outcome.metrics_due.then(|| Write::Metrics {
        miner_id: miner_id.to_owned(),
        at: now,
        status: outcome.new_status,
        metrics: Arc::clone(&metrics),
        time_since_last: outcome.since_last.map(|d| d.as_secs_f64()),
    });
    if !outcome.state_due() {
        return Plan {
            sample,
            ..Plan::default()
        };
    }
    let state = MinerState {
        miner_id: miner_id.to_owned(),
        last_heartbeat: now,
        status: outcome.new_status,
        heartbeat_count: outcome.heartbeat_count,
        metrics: Some(Arc::clone(&metrics)),
        at: now,
    };
    let (queue, transition) = match outcome.old_status {
        Some(old) if old == outcome.new_status => (Queue::Shed, None),
        // Another coordinator owns this miner's shard: it records the change from this
        // coordinator's news, so that one view (the owner's) decides every change of a miner.
        Some(_) if !outcome.owned => (Queue::Keep, None),
        Some(old) => {
            let transition = Transition {
                change: StatusChange {
                    miner_id: miner_id.to_owned(),
                    timestamp: now,
                    old_status: Some(old),
                    new_status: outcome.new_status,
                    reason: REPORTED.into(),
                },
                alert: change_alert(miner_id, (old, outcome.new_status), outcome.since_last, now),
            };
            (Queue::Keep, Some(transition))
        }
        // The first heartbeat: not a transition, but its state is always kept.
        None => (Queue::Keep, None),
    };
    Plan {
        state: Some((state, queue)),
        transition,
        sample,
    }
}

/// The alert of a heartbeat (made at `at`) that changed the status `(from, to)`: only crossing
/// the up/offline line is alerted.
fn change_alert(
    miner_id: &str,
    (from, to): (HeartbeatStatus, HeartbeatStatus),
    since_last: Option<Duration>,
    at: DateTime<Utc>,
) -> Option<Alert> {
    let miner_id = miner_id.to_owned();
    match (from.is_up(), to.is_up()) {
        (false, true) => Some(Alert::MinerRecovered {
            miner_id,
            offline_for_secs: since_last.map(|d| d.as_secs_f64()),
        }),
        (true, false) => Some(Alert::MinerOffline {
            miner_id,
            last_seen: Some(at),
            reason: SIGNED_OFF.into(),
        }),
        _ => None,
    }
}

/// The plan for a change of status another coordinator's heartbeat brought (merged at `now`,
/// for a shard this coordinator owns): recorded and alerted as if the heartbeat had come here,
/// with the heartbeat's own time. No metrics: the coordinator that took it sampled them.
pub(super) fn after_merge(merged: &Merged, now: DateTime<Utc>) -> Plan {
    let miner_id = merged.miner_id.as_ref();
    let change = (merged.old_status, merged.new_status);
    Plan {
        state: Some((
            MinerState {
                miner_id: miner_id.to_owned(),
                last_heartbeat: merged.last_seen,
                status: merged.new_status,
                heartbeat_count: merged.heartbeat_count,
                metrics: None,
                at: now,
            },
            Queue::Keep,
        )),
        transition: Some(Transition {
            change: StatusChange {
                miner_id: miner_id.to_owned(),
                timestamp: merged.last_seen,
                old_status: Some(merged.old_status),
                new_status: merged.new_status,
                reason: REPORTED.into(),
            },
            alert: change_alert(miner_id, change, merged.since_last, merged.last_seen),
        }),
        sample: None,
    }
}

/// Why the health check marks a miner offline, for miners silent for `offline_after`.
/// Formatted once per sweep, not once per miner.
pub(super) fn silence_reason(offline_after: Duration) -> String {
    format!(
        "no heartbeat for {}",
        humantime::format_duration(offline_after)
    )
}

/// The plan for a miner the health check found silent at `now`: offline in miner_states (its
/// last heartbeat's time kept, its metrics left as they were), a status_history row, and an
/// offline alert with `reason` (see [`silence_reason`]).
pub(super) fn after_silence(miner: &Silent, reason: &str, now: DateTime<Utc>) -> Plan {
    let miner_id = miner.miner_id.to_string();
    let state = MinerState {
        miner_id: miner_id.clone(),
        last_heartbeat: miner.last_seen.unwrap_or(now),
        status: HeartbeatStatus::Offline,
        heartbeat_count: miner.heartbeat_count,
        metrics: None,
        at: now,
    };
    let transition = Transition {
        change: StatusChange {
            miner_id: miner_id.clone(),
            timestamp: now,
            old_status: Some(miner.old_status),
            new_status: HeartbeatStatus::Offline,
            reason: reason.to_owned(),
        },
        alert: Some(Alert::MinerOffline {
            miner_id,
            last_seen: miner.last_seen,
            reason: reason.to_owned(),
        }),
    };
    Plan {
        state: Some((state, Queue::Keep)),
        transition: Some(transition),
        sample: None,
    }
}

impl Plan {
    /// Hands the plan to the store's writer and the alerter. Never blocks, so callers run it with
    /// the registry lock held: the writes and the alerts enter their queues in the order of the
    /// changes they describe (a sweep cannot slip its own in between).
    pub(super) fn queue(self, to: &AppState) {
        if let Some(transition) = &self.transition {
            to.metrics.transition(transition.change.new_status);
        }
        match (self.transition, self.state) {
            (Some(Transition { change, alert }), Some((state, _))) => {
                let at = change.timestamp;
                let committed =
                    to.writer
                        .send_acked(Write::Transition(Box::new(TransitionWrite {
                            change,
                            state,
                        })));
                if let Some(alert) = alert {
                    to.alerter.send_after_commit(alert, at, committed);
                }
            }
            (None, Some((state, Queue::Keep))) => to.writer.send(Write::State(state)),
            (None, Some((state, Queue::Shed))) => to.writer.send_sample(Write::State(state)),
            // Every plan with a transition has its state (the functions above make both).
            (Some(_), None) | (None, None) => {}
        }
        if let Some(sample) = self.sample {
            to.writer.send_sample(sample);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HeartbeatStatus::{Degraded, Offline, Online};

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    fn outcome(
        old: Option<HeartbeatStatus>,
        new: HeartbeatStatus,
        sample: bool,
    ) -> HeartbeatOutcome {
        HeartbeatOutcome {
            miner_id: "m0".into(),
            old_status: old,
            new_status: new,
            heartbeat_count: 7,
            since_last: Some(Duration::from_secs(90)),
            refresh_due: sample,
            metrics_due: sample,
            credential: Default::default(),
            owned: true,
        }
    }

    fn plan(old: Option<HeartbeatStatus>, new: HeartbeatStatus, sample: bool) -> Plan {
        after_heartbeat(&outcome(old, new, sample), "{\"cpu\":1}".into(), now())
    }

    /// The status written to miner_states, and how it is queued.
    fn state_of(plan: &Plan) -> Option<(HeartbeatStatus, Queue)> {
        plan.state
            .as_ref()
            .map(|(state, queue)| (state.status, *queue))
    }

    #[test]
    fn the_same_status_without_a_sample_due_asks_for_nothing() {
        let plan = plan(Some(Online), Online, false);
        assert!(plan.state.is_none() && plan.transition.is_none() && plan.sample.is_none());
    }

    #[test]
    fn the_same_status_with_a_sample_due_refreshes_the_state_and_samples_both_sheddable() {
        let plan = plan(Some(Online), Online, true);
        assert_eq!(state_of(&plan), Some((Online, Queue::Shed)));
        assert!(plan.transition.is_none());
        match &plan.sample {
            Some(Write::Metrics {
                status,
                metrics,
                time_since_last,
                ..
            }) => {
                assert_eq!(*status, Online);
                assert_eq!(&**metrics, "{\"cpu\":1}");
                assert_eq!(*time_since_last, Some(90.0));
            }
            other => panic!("expected a metrics sample, got {other:?}"),
        }
    }

    #[test]
    fn the_first_heartbeat_keeps_its_state_and_is_no_transition() {
        let plan = plan(None, Online, false);
        assert_eq!(state_of(&plan), Some((Online, Queue::Keep)));
        assert!(plan.transition.is_none());
        assert!(plan.sample.is_none());
    }

    #[test]
    fn a_sign_off_is_a_kept_transition_with_an_offline_alert() {
        let plan = plan(Some(Online), Offline, false);
        assert_eq!(state_of(&plan), Some((Offline, Queue::Keep)));
        let Some(transition) = plan.transition else {
            panic!("a sign-off is a transition");
        };
        assert_eq!(
            transition.change,
            StatusChange {
                miner_id: "m0".into(),
                timestamp: now(),
                old_status: Some(Online),
                new_status: Offline,
                reason: REPORTED.into(),
            }
        );
        assert_eq!(
            transition.alert,
            Some(Alert::MinerOffline {
                miner_id: "m0".into(),
                last_seen: Some(now()),
                reason: "the miner signed off".into(),
            })
        );
        assert!(plan.sample.is_none(), "a change does not force a sample");
    }

    #[test]
    fn a_degraded_miner_signing_off_is_alerted_too() {
        let alert = plan(Some(Degraded), Offline, false)
            .transition
            .and_then(|t| t.alert);
        assert!(
            matches!(alert, Some(Alert::MinerOffline { .. })),
            "{alert:?}"
        );
    }

    #[test]
    fn a_recovery_from_offline_is_alerted_with_how_long_it_was_away() {
        for back in [Online, Degraded] {
            let plan = plan(Some(Offline), back, true);
            assert_eq!(state_of(&plan), Some((back, Queue::Keep)));
            let alert = plan.transition.and_then(|t| t.alert);
            assert_eq!(
                alert,
                Some(Alert::MinerRecovered {
                    miner_id: "m0".into(),
                    offline_for_secs: Some(90.0),
                }),
                "offline → {back:?}"
            );
            assert!(plan.sample.is_some(), "the due sample still comes");
        }
    }

    #[test]
    fn online_and_degraded_changes_are_recorded_but_not_alerted() {
        for (old, new) in [(Online, Degraded), (Degraded, Online)] {
            let plan = plan(Some(old), new, false);
            assert_eq!(state_of(&plan), Some((new, Queue::Keep)));
            let transition = plan.transition.expect("a change of a known status");
            assert_eq!(transition.change.old_status, Some(old));
            assert_eq!(transition.change.new_status, new);
            assert_eq!(transition.alert, None, "{old:?} → {new:?}");
        }
    }

    #[test]
    fn the_state_and_the_sample_share_one_copy_of_the_metrics() {
        let plan = plan(Some(Online), Online, true);
        match (&plan.state, &plan.sample) {
            (
                Some((
                    MinerState {
                        metrics: Some(a), ..
                    },
                    _,
                )),
                Some(Write::Metrics { metrics: b, .. }),
            ) => assert!(Arc::ptr_eq(a, b)),
            other => panic!("expected a state and a sample: {other:?}"),
        }
    }

    #[test]
    fn a_silent_miner_goes_offline_with_the_silence_as_its_reason() {
        let last_seen = now() - chrono::TimeDelta::seconds(50);
        let silent = Silent {
            miner_id: "m0".into(),
            old_status: Degraded,
            last_seen: Some(last_seen),
            heartbeat_count: 12,
        };
        let reason = silence_reason(Duration::from_secs(45));
        assert_eq!(reason, "no heartbeat for 45s");
        let plan = after_silence(&silent, &reason, now());
        match &plan.state {
            Some((
                MinerState {
                    last_heartbeat,
                    status: Offline,
                    heartbeat_count: 12,
                    metrics: None,
                    ..
                },
                Queue::Keep,
            )) => assert_eq!(
                *last_heartbeat, last_seen,
                "the last heartbeat's time is kept"
            ),
            other => panic!("expected a kept offline state: {other:?}"),
        }
        let transition = plan.transition.expect("a silence is a transition");
        assert_eq!(
            transition.change,
            StatusChange {
                miner_id: "m0".into(),
                timestamp: now(),
                old_status: Some(Degraded),
                new_status: Offline,
                reason: "no heartbeat for 45s".into(),
            }
        );
        assert_eq!(
            transition.alert,
            Some(Alert::MinerOffline {
                miner_id: "m0".into(),
                last_seen: Some(last_seen),
                reason: "no heartbeat for 45s".into(),
            })
        );
        assert!(plan.sample.is_none());
    }

    #[test]
    fn a_silent_miner_never_seen_keeps_the_sweeps_time() {
        let silent = Silent {
            miner_id: "m0".into(),
            old_status: Online,
            last_seen: None,
            heartbeat_count: 0,
        };
        let plan = after_silence(&silent, "no heartbeat for 45s", now());
        assert!(matches!(
            plan.state,
            Some((MinerState { last_heartbeat, .. }, _)) if last_heartbeat == now()
        ));
    }

    #[test]
    fn a_recovery_merged_from_another_coordinator_is_recorded_at_its_heartbeats_time() {
        let heard = now() - chrono::TimeDelta::seconds(3);
        let merged = Merged {
            miner_id: "m0".into(),
            old_status: Offline,
            new_status: Online,
            last_seen: heard,
            heartbeat_count: 40,
            since_last: Some(Duration::from_secs(120)),
        };
        let plan = after_merge(&merged, now());
        assert_eq!(state_of(&plan), Some((Online, Queue::Keep)));
        let transition = plan.transition.expect("a change is a transition");
        assert_eq!(transition.change.timestamp, heard);
        assert_eq!(transition.change.old_status, Some(Offline));
        assert_eq!(
            transition.alert,
            Some(Alert::MinerRecovered {
                miner_id: "m0".into(),
                offline_for_secs: Some(120.0),
            })
        );
        assert!(
            plan.sample.is_none(),
            "the coordinator that took it sampled it"
        );
    }

    #[test]
    fn a_change_in_another_coordinators_shard_is_left_to_its_owner() {
        let mut signed_off = outcome(Some(Online), Offline, false);
        signed_off.owned = false;
        let plan = after_heartbeat(&signed_off, "{}".into(), now());
        assert!(plan.transition.is_none(), "the owner records it");
        assert_eq!(state_of(&plan), Some((Offline, Queue::Keep)));
    }
}
