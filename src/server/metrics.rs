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
    http_open: AtomicU64,
    http_slow_header: AtomicU64,
    http_slow_idle: AtomicU64,
    http_slow_write: AtomicU64,
    http_shed: AtomicU64,
    http_cap_reached: AtomicU64,
    /// Refused heartbeats, by reason.
    pub refusals: super::refusals::Refusals,
}

/// Why an HTTP connection was closed for being slow (`serve.rs` has the limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slow {
    /// Its request head was not complete in time.
    Header,
    /// Kept alive, it sent no new request in time.
    Idle,
    /// It took none of a response in time.
    Write,
}

/// Counts an HTTP connection open while it lives.
#[derive(Debug)]
pub struct OpenConnection<'a>(&'a Metrics);

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.http_open.fetch_sub(1, Ordering::Relaxed);
    }
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

    pub fn connection_opened(&self) -> OpenConnection<'_> {
        self.http_open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(self)
    }

    pub fn connection_timed_out(&self, reason: Slow) {
        let counter = match reason {
            Slow::Header => &self.http_slow_header,
            Slow::Idle => &self.http_slow_idle,
            Slow::Write => &self.http_slow_write,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_shed(&self) {
        self.http_shed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_cap_reached(&self) {
        self.http_cap_reached.fetch_add(1, Ordering::Relaxed);
    }

    /// The HTTP connection figures, for tests: open, timed out for (header, idle, write), shed,
    /// cap reached.
    #[cfg(test)]
    pub(super) fn http_connections(&self) -> (u64, [u64; 3], u64, u64) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        (
            get(&self.http_open),
            [
                get(&self.http_slow_header),
                get(&self.http_slow_idle),
                get(&self.http_slow_write),
            ],
            get(&self.http_shed),
            get(&self.http_cap_reached),
        )
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
        counter(
            "polaris_http_connections_shed_total",
            "Idle kept-alive HTTP connections closed early to make room at the connection cap.",
            get(&self.http_shed),
        );
        counter(
            "polaris_http_connection_cap_reached_total",
            "Times every HTTP connection slot was taken (new connections then wait).",
            get(&self.http_cap_reached),
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
            "# HELP polaris_http_connections_timed_out_total HTTP connections closed for being \
             slow: no complete request head in 10 s (header), no new request in 60 s on a \
             kept-alive connection (idle), none of a response taken in 30 s (write).\n\
             # TYPE polaris_http_connections_timed_out_total counter"
        );
        for (reason, c) in [
            ("header", &self.http_slow_header),
            ("idle", &self.http_slow_idle),
            ("write", &self.http_slow_write),
        ] {
            let _ = writeln!(
                out,
                "polaris_http_connections_timed_out_total{{reason=\"{reason}\"}} {}",
                get(c)
            );
        }
        let _ = writeln!(
            out,
            "# HELP polaris_heartbeats_refused_total Heartbeats refused, by reason.\n\
             # TYPE polaris_heartbeats_refused_total counter"
        );
        for (reason, n) in self.refusals.counts() {
            let _ = writeln!(
                out,
                "polaris_heartbeats_refused_total{{reason=\"{reason}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP polaris_http_connections HTTP connections open.\n\
             # TYPE polaris_http_connections gauge\npolaris_http_connections {}",
            get(&self.http_open)
        );
        let _ = writeln!(
            out,
            "# HELP polaris_store_queue_depth Writes queued for the store.\n\
             # TYPE polaris_store_queue_depth gauge\npolaris_store_queue_depth {}",
            store.depth.load(Ordering::Relaxed).max(0)
        );
        let _ = writeln!(
            out,
            "# HELP polaris_legacy_miners Miners heard from without their token since start \
             (the original's client, --legacy-clients).\n\
             # TYPE polaris_legacy_miners gauge\npolaris_legacy_miners {}",
            registry.legacy_count()
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

/// The store's document count, and with a shared store who holds which shard.
pub(super) fn render_store(
    documents_written: u64,
    store: &WriterStats,
    replica: Option<&(&str, crate::server::replicas::View)>,
) -> String {
    let mut out = format!(
        "# HELP polaris_store_documents_written_total Documents (Firestore) or rows (SQLite) \
         written, as the store bills them.\n\
         # TYPE polaris_store_documents_written_total counter\n\
         polaris_store_documents_written_total {documents_written}\n\
         # HELP polaris_store_superseded_total Status changes another coordinator recorded \
         first (not written again, not alerted again).\n\
         # TYPE polaris_store_superseded_total counter\n\
         polaris_store_superseded_total {}\n",
        store.superseded.load(Ordering::Relaxed)
    );
    let Some((me, view)) = replica else {
        return out;
    };
    let owned = view
        .owners
        .iter()
        .filter(|&&i| view.members.get(i).is_some_and(|m| m == me))
        .count();
    let _ = write!(
        out,
        "# HELP polaris_replica_info This coordinator's name among those sharing the store.\n\
         # TYPE polaris_replica_info gauge\npolaris_replica_info{{replica=\"{}\"}} 1\n\
         # HELP polaris_replica_members Coordinators sharing the store (memberships not expired).\n\
         # TYPE polaris_replica_members gauge\npolaris_replica_members {}\n\
         # HELP polaris_replica_membership_failing 1 while this coordinator cannot renew its membership.\n\
         # TYPE polaris_replica_membership_failing gauge\npolaris_replica_membership_failing {}\n\
         # HELP polaris_replica_shards_owned Shards this coordinator sweeps and alerts for.\n\
         # TYPE polaris_replica_shards_owned gauge\npolaris_replica_shards_owned {owned}\n\
         # HELP polaris_shard_holder Which coordinator holds each shard (always 1).\n\
         # TYPE polaris_shard_holder gauge\n",
        label(me),
        view.members.len(),
        u8::from(view.renewal_failing),
    );
    for (shard, &i) in view.owners.iter().enumerate() {
        if let Some(holder) = view.members.get(i) {
            let _ = writeln!(
                out,
                "polaris_shard_holder{{shard=\"{shard}\",replica=\"{}\"}} 1",
                label(holder)
            );
        }
    }
    out
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
