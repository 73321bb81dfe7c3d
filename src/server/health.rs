//! The health check: sleeps until the earliest heartbeat deadline, marks silent miners offline,
//! and keeps metrics_history pruned.

use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::alerts::Alert;
use super::registry::MAX_HOLD_FACTOR;
use super::state::AppState;
use super::transitions;

/// How long metrics_history is kept.
pub(super) const METRICS_RETENTION: chrono::TimeDelta = chrono::TimeDelta::days(30);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Sleep when no miner is up (a heartbeat wakes the loop earlier).
const IDLE: Duration = Duration::from_secs(3600);

/// Runs sweeps until `cancel` fires.
pub(super) async fn run(state: AppState, cancel: CancellationToken) {
    let reason = transitions::silence_reason(state.registry.offline_after());
    loop {
        let sweep = state.registry.sweep(Instant::now(), |miner| {
            transitions::after_silence(miner, &reason, Utc::now()).queue(&state);
        });
        // Coordinators sharing the store see the same fleet: the owner of shard 0 speaks for
        // all of them, so a mass silence is alerted once (alone, a coordinator owns every shard).
        let speaks_for_all = state.registry.owned() & 1 != 0;
        if let Some((silent, up)) = sweep.hold_started
            && speaks_for_all
        {
            state.alerter.send(Alert::MassSilence { silent, up });
        }
        if sweep.hold_ended && speaks_for_all {
            state.alerter.send(Alert::MassSilenceEnded);
        }
        if sweep.hold_expired && speaks_for_all {
            let held = state.registry.offline_after() * MAX_HOLD_FACTOR;
            state.alerter.send(Alert::MassSilenceExpired {
                held_for_secs: held.as_secs(),
            });
        }
        let wake = sweep.next.unwrap_or_else(|| Instant::now() + IDLE);
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            () = state.registry.deadline_moved.notified() => {}
            () = cancel.cancelled() => return,
        }
    }
}

/// Deletes metrics_history older than [`METRICS_RETENTION`] now and every hour.
pub(super) async fn prune(state: AppState, cancel: CancellationToken) {
    loop {
        // Straight to the store, not through the writer's queue: it is one statement (or a few
        // batched deletes) that nobody waits for, and a failure waits for the next hour.
        match state
            .store
            .prune_metrics(Utc::now() - METRICS_RETENTION)
            .await
        {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "old metrics_history rows deleted"),
            Err(err) => {
                tracing::warn!(error = %err, "cannot delete old metrics_history rows; trying again in an hour")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(PRUNE_EVERY) => {}
            () = cancel.cancelled() => return,
        }
    }
}
