//! Registration (`POST /miners/`), the pod a miner's own `GET /miners/{id}` returns, and the
//! admin's verification status.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::network::NetworkInfo;
use super::validate::{self, FieldError, Validate, fail};

/// Most compute resources one registration may carry.
const MAX_RESOURCES: usize = 64;

/// The original's registration body (`register.py` `submit_registration`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RegistrationRequest {
    /// The miner's display name (the username chosen at registration).
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$"
    )]
    #[serde(alias = "username")]
    pub name: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$"
    )]
    #[serde(default)]
    pub location: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 1000,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$"
    )]
    #[serde(default)]
    pub description: Option<String>,
    #[schema(min_items = 1, max_items = 64)]
    pub compute_resources: Vec<ComputeResource>,
    /// `independent`, `bittensor` or `commune`; free text in the original.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_type: Option<String>,
    /// The OpenSSH public key the miner's tunnel logs in to the built-in relay with (ours;
    /// the original sends none). Rotated later with `POST /miners/{id}/relay_key`.
    #[schema(
        max_length = 8192,
        pattern = r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,2}( [ -~]*)?$"
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_key: Option<String>,
}

/// What `polaris inventory --json` prints and registration sends: the original's
/// `system_info.json` object (`{location, compute_resources}`), with our extra facts under keys
/// of their own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SystemInventory {
    #[serde(default)]
    pub location: Option<String>,
    pub compute_resources: Vec<ComputeResource>,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// One CPU or GPU resource offered by a miner (original §4.3 wire object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ComputeResource {
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[A-Za-z0-9_.:-]{1,128}$"
    )]
    pub id: String,
    /// `CPU` or `GPU`.
    #[schema(pattern = r"^([Cc][Pp][Uu]|[Gg][Pp][Uu])$")]
    pub resource_type: String,
    #[serde(default)]
    pub location: Option<String>,
    #[schema(minimum = 0, maximum = 1000000)]
    #[serde(default)]
    pub hourly_price: f64,
    /// Total memory, e.g. `15.68GB`.
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?GB$")]
    pub ram: String,
    pub storage: Storage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_specs: Option<CpuSpecs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_specs: Option<GpuSpecs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_active: Option<bool>,
    /// Facts beyond the original's fields (kept as sent, under their own keys).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ComputeResource {
    /// The original's table cells: ID, Type, Location, Price/Hr, RAM, Storage, Specs (cells
    /// may span lines). `view-compute` and the dashboard's Compute tab both show these.
    pub fn table_cells(&self) -> Vec<String> {
        let r = self;
        let storage = format!(
            "{} {}\nRead: {}\nWrite: {}",
            r.storage.kind,
            r.storage.capacity,
            or_na(r.storage.read_speed.as_ref()),
            or_na(r.storage.write_speed.as_ref())
        );
        let specs = match (&r.gpu_specs, &r.cpu_specs) {
            (Some(gpu), _) => format!(
                "GPU Name: {}\nMemory: {}\nCUDA Cores: {}\nClock Speed: {}",
                gpu.gpu_name,
                or_na(gpu.memory_size.as_ref()),
                or_na(gpu.cuda_cores),
                or_na(gpu.clock_speed.as_ref())
            ),
            (None, Some(cpu)) => format!(
                "CPU Name: {}\nTotal CPUs: {}\nThreads/Core: {}\nMax MHz: {}",
                or_na(cpu.cpu_name.as_ref()),
                or_na(cpu.total_cpus),
                or_na(cpu.threads_per_core),
                or_na(cpu.cpu_max_mhz)
            ),
            (None, None) => "N/A".to_owned(),
        };
        vec![
            r.id.clone(),
            r.resource_type.to_uppercase(),
            or_na(r.location.as_ref()),
            format!("${:.2}", r.hourly_price),
            r.ram.clone(),
            storage,
            specs,
        ]
    }
}

fn or_na(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "N/A".to_owned(), |v| v.to_string())
}

/// The disk behind a resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Storage {
    /// `NVME`, `SSD` or `HDD`.
    #[schema(
        min_length = 1,
        max_length = 32,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$"
    )]
    #[serde(rename = "type")]
    pub kind: String,
    /// e.g. `467.91GB`.
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?GB$")]
    pub capacity: String,
    /// Measured, e.g. `550MB/s`; null when not measured.
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?MB/s$")]
    #[serde(default)]
    pub read_speed: Option<String>,
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?MB/s$")]
    #[serde(default)]
    pub write_speed: Option<String>,
    /// Facts beyond the original's fields (device, model, when the speed was measured …).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// CPU facts, named as `lscpu` names them (original §4.2).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CpuSpecs {
    #[serde(default)]
    pub op_modes: Option<String>,
    #[serde(default)]
    pub address_sizes: Option<String>,
    #[serde(default)]
    pub byte_order: Option<String>,
    #[schema(maximum = 4294967295_u64, format = Int64)]
    #[serde(default)]
    pub total_cpus: Option<u32>,
    /// The kernel's CPU list, e.g. `0-15` or `0-7,16-23`.
    #[schema(pattern = r"^[0-9]{1,9}(-[0-9]{1,9})?(,[0-9]{1,9}(-[0-9]{1,9})?)*$")]
    #[serde(default)]
    pub online_cpus: Option<String>,
    #[serde(default)]
    pub vendor_id: Option<String>,
    #[serde(default)]
    pub cpu_name: Option<String>,
    #[schema(maximum = 4294967295_u64, format = Int64)]
    #[serde(default)]
    pub cpu_family: Option<u32>,
    #[schema(maximum = 4294967295_u64, format = Int64)]
    #[serde(default)]
    pub model: Option<u32>,
    #[schema(maximum = 4294967295_u64, format = Int64)]
    #[serde(default)]
    pub threads_per_core: Option<u32>,
    #[schema(maximum = 4294967295_u64, format = Int64)]
    #[serde(default)]
    pub cores_per_socket: Option<u32>,
    #[schema(maximum = 4294967295_u64, format = Int64)]
    #[serde(default)]
    pub sockets: Option<u32>,
    #[schema(maximum = 4294967295_u64, format = Int64)]
    #[serde(default)]
    pub stepping: Option<u32>,
    #[serde(default)]
    pub cpu_max_mhz: Option<f64>,
    #[serde(default)]
    pub cpu_min_mhz: Option<f64>,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// GPU facts (original §4.2).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GpuSpecs {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub gpu_name: String,
    /// e.g. `80.00GB`.
    #[serde(default)]
    pub memory_size: Option<String>,
    #[schema(maximum = 4294967295_u64, format = Int64)]
    #[serde(default)]
    pub cuda_cores: Option<u32>,
    /// e.g. `1980MHz`.
    #[serde(default)]
    pub clock_speed: Option<String>,
    /// e.g. `700W`.
    #[serde(default)]
    pub power_consumption: Option<String>,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The answer to a registration. `token` is shown once: the coordinator keeps only its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RegistrationResponse {
    pub miner_id: String,
    pub message: String,
    pub added_resources: Vec<String>,
    /// Bearer token for this miner's heartbeats and updates.
    pub token: String,
}

/// A miner's verification by validators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerificationStatus {
    PendingVerification,
    Verified,
    Rejected,
}

impl VerificationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingVerification => "pending_verification",
            Self::Verified => "verified",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::PendingVerification, Self::Verified, Self::Rejected]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// Body of `PATCH /miners/{id}/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VerificationUpdate {
    pub status: VerificationStatus,
}

/// A miner as `GET /miners/{id}` shows it: never a secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Pod {
    pub id: String,
    pub name: String,
    pub location: Option<String>,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Verification status.
    pub status: VerificationStatus,
    /// `online`, `offline` or `degraded`; null before the first heartbeat.
    pub heartbeat_status: Option<String>,
    pub last_seen: Option<DateTime<Utc>>,
    pub compute_resources: Vec<ComputeResource>,
    /// How renters reach the miner over SSH (`POST /network_update`: the tunnel's address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub bittensor_details: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub commune_details: Option<serde_json::Value>,
    /// It talks without its token (the original's client, accepted with `--legacy-clients`):
    /// it should move to polaris.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub legacy: bool,
}

/// A page of `GET /miners`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MinerList {
    pub miners: Vec<Pod>,
    /// Pass as `after` to get the next page; null on the last page.
    pub next: Option<String>,
}

impl Validate for RegistrationRequest {
    fn validate(&self) -> Result<(), FieldError> {
        validate::text("name", &self.name, 64)?;
        if let Some(location) = &self.location {
            validate::text("location", location, 200)?;
        }
        if let Some(description) = &self.description {
            validate::text("description", description, 1000)?;
        }
        if let Some(key) = &self.relay_key {
            super::RelayKey {
                public_key: key.clone(),
            }
            .parsed()
            .map_err(|_| {
                fail(
                    "relay_key",
                    "expected one OpenSSH public key line, like `ssh-ed25519 AAAA… comment`",
                )
            })?;
        }
        if self.compute_resources.is_empty() {
            return Err(fail("compute_resources", "must list at least one resource"));
        }
        if self.compute_resources.len() > MAX_RESOURCES {
            return Err(fail(
                "compute_resources",
                format!("must list at most {MAX_RESOURCES} resources"),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, resource) in self.compute_resources.iter().enumerate() {
            resource.check(&format!("compute_resources[{i}]"))?;
            if !seen.insert(resource.id.as_str()) {
                return Err(fail(
                    format_args!("compute_resources[{i}].id"),
                    format!("{:?} appears twice", resource.id),
                ));
            }
        }
        Ok(())
    }
}

impl ComputeResource {
    fn check(&self, at: &str) -> Result<(), FieldError> {
        validate::identifier(format_args!("{at}.id"), &self.id)?;
        if let Some(network) = &self.network {
            network.check(&format!("{at}.network"))?;
        }
        let kind = self.resource_type.to_ascii_uppercase();
        if kind != "CPU" && kind != "GPU" {
            return Err(fail(
                format_args!("{at}.resource_type"),
                format!("expected \"CPU\" or \"GPU\", got {:?}", self.resource_type),
            ));
        }
        validate::number_in(
            format_args!("{at}.hourly_price"),
            self.hourly_price,
            0.0..=1.0e6,
        )?;
        validate::quantity(format_args!("{at}.ram"), &self.ram, "GB")?;
        validate::text(format_args!("{at}.storage.type"), &self.storage.kind, 32)?;
        validate::quantity(
            format_args!("{at}.storage.capacity"),
            &self.storage.capacity,
            "GB",
        )?;
        for (name, speed) in [
            ("read_speed", &self.storage.read_speed),
            ("write_speed", &self.storage.write_speed),
        ] {
            if let Some(speed) = speed {
                validate::quantity(format_args!("{at}.storage.{name}"), speed, "MB/s")?;
            }
        }
        if let Some(cpu) = &self.cpu_specs
            && let Some(online) = &cpu.online_cpus
        {
            validate::cpu_list(format_args!("{at}.cpu_specs.online_cpus"), online)?;
        }
        match (&self.gpu_specs, kind.as_str()) {
            (None, "GPU") => Err(fail(
                format_args!("{at}.gpu_specs"),
                "a GPU resource needs gpu_specs",
            )),
            (Some(gpu), _) => {
                validate::text(format_args!("{at}.gpu_specs.gpu_name"), &gpu.gpu_name, 200)
            }
            (None, _) => Ok(()),
        }
    }
}

impl Validate for VerificationUpdate {
    fn validate(&self) -> Result<(), FieldError> {
        // The enum already admits only known statuses.
        Ok(())
    }
}
