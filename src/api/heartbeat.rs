//! `POST /heart_beat` and `GET /miners/heartbeat_status` (original §6).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::commands::{AuthorizedKey, CommandResult, MAX_REPORTED_KEYS, MAX_RESULTS};
use super::validate::{self, FieldError, Validate, fail};

/// A miner's liveness as the coordinator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HeartbeatStatus {
    Online,
    Offline,
    Degraded,
}

impl HeartbeatStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Offline => "offline",
            Self::Degraded => "degraded",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "online" => Some(Self::Online),
            "offline" => Some(Self::Offline),
            "degraded" => Some(Self::Degraded),
            _ => None,
        }
    }

    /// Online or degraded: the miner is alive.
    pub fn is_up(self) -> bool {
        self != Self::Offline
    }
}

/// The original's `HeartbeatRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatRequest {
    /// The client's clock; informational only (the server stamps heartbeats itself). The original
    /// sends a naive UTC ISO-8601 string without a zone, so this is kept as text.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// What the miner says of itself: `online`, `degraded`, or `offline` when signing off.
    pub status: HeartbeatStatus,
    #[serde(default)]
    pub version: Option<String>,
    pub metrics: HeartbeatMetrics,
    /// How the commands of earlier answers ended. Polaris agents always send it (empty when
    /// there is nothing to report), which tells the coordinator that they report commands: an
    /// open command is sent to them again until reported, and to other clients (the original)
    /// once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 64)]
    pub command_results: Option<Vec<CommandResult>>,
    /// The keys in the managed block of SSH_USER's `authorized_keys`, when the miner lets the
    /// coordinator manage them (`POLARIS_SSH_ACCESS=keys`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 256)]
    pub ssh_keys: Option<Vec<AuthorizedKey>>,
}

/// The original's `HeartbeatMetrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatMetrics {
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[A-Za-z0-9_.:-]{1,128}$"
    )]
    pub miner_id: String,
    pub system_info: SystemInfo,
    pub metrics: SystemMetrics,
    /// Per-device figures (GPU utilisation, memory, temperature …).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub resource_usage: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub active_jobs: Vec<String>,
}

/// Host facts sent with each heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SystemInfo {
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub ip_address: Option<String>,
    #[serde(default)]
    pub os_version: Option<String>,
    /// Seconds since boot.
    #[serde(default)]
    pub uptime: Option<f64>,
    #[serde(default)]
    pub last_boot: Option<String>,
}

/// The original's `SystemMetrics`: four required numbers, the rest optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SystemMetrics {
    /// Percent.
    #[schema(minimum = 0, maximum = 100)]
    pub cpu_usage: f64,
    /// Percent.
    #[schema(minimum = 0, maximum = 100)]
    pub memory_usage: f64,
    /// Percent.
    #[schema(minimum = 0, maximum = 100)]
    pub disk_usage: f64,
    /// Milliseconds (round trip of the previous heartbeat).
    #[schema(minimum = 0, maximum = 3600000)]
    pub network_latency: f64,
    #[schema(minimum = 0, maximum = 100)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_usage: Option<f64>,
    /// Degrees Celsius.
    #[schema(minimum = -100, maximum = 200)]
    #[serde(default)]
    pub temperature: Option<f64>,
    #[schema(maximum = 4294967295_u64, format = Int64)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_processes: Option<u32>,
}

impl Validate for HeartbeatRequest {
    fn validate(&self) -> Result<(), FieldError> {
        let m = &self.metrics;
        validate::identifier("metrics.miner_id", &m.miner_id)?;
        let s = &m.metrics;
        for (name, value) in [
            ("cpu_usage", s.cpu_usage),
            ("memory_usage", s.memory_usage),
            ("disk_usage", s.disk_usage),
        ] {
            validate::number_in(format_args!("metrics.metrics.{name}"), value, 0.0..=100.0)?;
        }
        if let Some(gpu) = s.gpu_usage {
            validate::number_in("metrics.metrics.gpu_usage", gpu, 0.0..=100.0)?;
        }
        validate::number_in(
            "metrics.metrics.network_latency",
            s.network_latency,
            0.0..=3.6e6,
        )?;
        if let Some(t) = s.temperature {
            validate::number_in("metrics.metrics.temperature", t, -100.0..=200.0)?;
        }
        let results = self.command_results.as_deref().unwrap_or_default();
        if results.len() > MAX_RESULTS {
            return Err(fail(
                "command_results",
                format!("at most {MAX_RESULTS} per heartbeat"),
            ));
        }
        for result in results {
            result.validate()?;
        }
        if let Some(keys) = &self.ssh_keys {
            if keys.len() > MAX_REPORTED_KEYS {
                return Err(fail(
                    "ssh_keys",
                    format!("at most {MAX_REPORTED_KEYS} keys"),
                ));
            }
            for key in keys {
                key.validate()?;
            }
        }
        Ok(())
    }
}

/// The original's `HeartbeatResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatResponse {
    #[schema(value_type = String)]
    pub status: Cow<'static, str>,
    #[schema(value_type = String)]
    pub message: Cow<'static, str>,
    /// The server's time of this heartbeat.
    #[serde(serialize_with = "rfc3339_micros")]
    pub last_seen: DateTime<Utc>,
    /// Instructions for the agent, e.g. `{"id": "…", "action": "restart", "target":
    /// "compute_subnet"}`: the open commands queued for this miner (`POST /miners/{id}/commands`),
    /// sent again in each answer until a heartbeat reports them in `command_results`.
    #[schema(value_type = Vec<Object>)]
    pub commands: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// One entry of `GET /miners/heartbeat_status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatStatusEntry {
    pub last_seen: Option<DateTime<Utc>>,
    /// Time since the last heartbeat, as Python's `str(timedelta)` writes it (`0:00:12.5`).
    pub time_since: Option<String>,
    /// `online`, `offline`, `degraded` (see the README for the rule); null before the first heartbeat.
    pub status: Option<HeartbeatStatus>,
}

/// `2026-11-24T12:00:00.123456Z`: the same text chrono's serde writes, without its general
/// formatting machinery (this is on the heartbeat's hot path).
fn rfc3339_micros<S: serde::Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}
