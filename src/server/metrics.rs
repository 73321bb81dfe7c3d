//! Counters for `/metrics` (Prometheus text format).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::api::{HeartbeatStatus, RelaySession};
use crate::store::writer::WriterStats;

use super::registry::Registry;

/// Process-wide counters. Relaxed atomics: each is independent and only read for reporting.
#[derive(Debug, Default)]
pub struct Metrics {
    heartbeats: AtomicU64,
    registrations: AtomicU64,
    to_online: AtomicU64,
    to_offline: AtomicU64,
    to_degraded: AtomicU64,
    alerts: AtomicU64,
    alert_failures: AtomicU64,
}

impl Metrics {
    pub fn heartbeat(&self) {
        self.heartbeats.fetch_add(1, Ordering::Relaxed);
    }

    pub fn registration(&self) {
        self.registrations.fetch_add(1, Ordering::Relaxed);
    }

    pub fn transition(&self, to: HeartbeatStatus) {
        let counter = match to {
            HeartbeatStatus::Online => &self.to_online,
            HeartbeatStatus::Offline => &self.to_offline,
            HeartbeatStatus::Degraded => &self.to_degraded,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn alert_sent(&self) {
        self.alerts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn alert_failed(&self) {
        self.alert_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders every metric.
    pub fn render(
        &self,
        registry: &Registry,
        store: &WriterStats,
        now: tokio::time::Instant,
    ) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::with_capacity(2048);
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            "polaris_heartbeats_received_total",
            "Heartbeats accepted.",
            get(&self.heartbeats),
        );
        counter(
            "polaris_registrations_total",
            "Miners registered.",
            get(&self.registrations),
        );
        counter("polaris_alerts_total", "Alerts raised.", get(&self.alerts));
        counter(
            "polaris_alert_failures_total",
            "Failed webhook deliveries (each try counts).",
            get(&self.alert_failures),
        );
        counter(
            "polaris_store_commits_total",
            "Store batches committed.",
            get(&store.commits),
        );
        counter(
            "polaris_store_rows_total",
            "Store writes committed.",
            get(&store.rows),
        );
        counter(
            "polaris_store_samples_dropped_total",
            "Periodic samples shed because the store queue was full.",
            get(&store.dropped),
        );
        counter(
            "polaris_store_failures_total",
            "Failed store attempts.",
            get(&store.failures),
        );
        let _ = writeln!(
            out,
            "# HELP polaris_status_transitions_total Status transitions, by new status.\n\
             # TYPE polaris_status_transitions_total counter"
        );
        for (to, c) in [
            ("online", &self.to_online),
            ("offline", &self.to_offline),
            ("degraded", &self.to_degraded),
        ] {
            let _ = writeln!(
                out,
                "polaris_status_transitions_total{{to=\"{to}\"}} {}",
                get(c)
            );
        }
        let _ = writeln!(
            out,
            "# HELP polaris_store_queue_depth Writes queued for the store.\n\
             # TYPE polaris_store_queue_depth gauge\npolaris_store_queue_depth {}",
            store.depth.load(Ordering::Relaxed).max(0)
        );
        let counts = registry.counts(now);
        let _ = writeln!(
            out,
            "# HELP polaris_miners Miners by status (unknown: no heartbeat yet).\n\
             # TYPE polaris_miners gauge"
        );
        for status in [
            Some(HeartbeatStatus::Online),
            Some(HeartbeatStatus::Degraded),
            Some(HeartbeatStatus::Offline),
            None,
        ] {
            let label = status.map_or("unknown", HeartbeatStatus::as_str);
            let n = counts.get(&status).copied().unwrap_or(0);
            let _ = writeln!(out, "polaris_miners{{status=\"{label}\"}} {n}");
        }
        out
    }
}

/// The built-in relay's gauges: how many sessions hold a port, and which miner holds which.
pub(super) fn render_relay(sessions: &[RelaySession]) -> String {
    let mut out = format!(
        "# HELP polaris_relay_sessions Relay sessions holding a port.\n\
         # TYPE polaris_relay_sessions gauge\npolaris_relay_sessions {}\n\
         # HELP polaris_relay_port The relay port each miner holds (always 1).\n\
         # TYPE polaris_relay_port gauge\n",
        sessions.len()
    );
    for session in sessions {
        let _ = writeln!(
            out,
            "polaris_relay_port{{miner_id=\"{}\",port=\"{}\"}} 1",
            label(&session.miner_id),
            session.port
        );
    }
    out
}

/// A Prometheus label value, escaped.
fn label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
