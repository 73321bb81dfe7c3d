//! The wire contract: JSON bodies of the coordinator API (base `/api/v1`), field-compatible with
//! the original Python tool's bodies (see `shared/reference/original-polaris.md` §4, §6, §12).

mod heartbeat;
mod miner;
mod network;
mod validate;

pub use heartbeat::{
    HeartbeatMetrics, HeartbeatRequest, HeartbeatResponse, HeartbeatStatus, HeartbeatStatusEntry,
    SystemInfo, SystemMetrics,
};
pub use miner::{
    ComputeResource, CpuSpecs, GpuSpecs, MinerList, Pod, RegistrationRequest, RegistrationResponse,
    Storage, VerificationStatus, VerificationUpdate,
};
pub use network::{
    BittensorRegistration, CommuneRegistration, NetworkInfo, NetworkUpdate, SimpleResponse,
};
pub use validate::{FieldError, Validate};

/// The body of every 4xx/5xx answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A short, stable code such as `invalid_body`, `unauthorized` or `not_found`.
    pub error: String,
    /// What exactly was wrong, for a person.
    pub detail: String,
}
