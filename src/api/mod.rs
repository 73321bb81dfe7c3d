//! The wire contract: JSON bodies of the coordinator API (base `/api/v1`), field-compatible with
//! the original Python tool's bodies (see `shared/reference/original-polaris.md` §4, §6, §12).

pub mod client;
mod commands;
mod heartbeat;
mod history;
mod miner;
mod network;
mod relay;
mod validate;

pub use commands::{
    AuthorizedKey, Command, CommandEntry, CommandList, CommandOutcome, CommandQueued,
    CommandResult, CommandState, MAX_REPORTED_KEYS, MAX_RESULTS, RestartTarget, is_command_id,
};
pub use heartbeat::{
    HeartbeatMetrics, HeartbeatRequest, HeartbeatResponse, HeartbeatStatus, HeartbeatStatusEntry,
    SystemInfo, SystemMetrics,
};
pub use history::StatusChangeEntry;
pub use miner::{
    ComputeResource, CpuSpecs, GpuSpecs, MinerList, Pod, RegistrationRequest, RegistrationResponse,
    Storage, SystemInventory, VerificationStatus, VerificationUpdate,
};
pub use network::{
    BittensorRegistration, CommuneRegistration, NetworkInfo, NetworkUpdate, SimpleResponse,
};
pub use relay::{RelayKey, RelaySession};
pub(crate) use validate::identifier;
pub use validate::{FieldError, Validate};

/// The answer of `GET /whoami`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Whoami {
    /// The caller's IP address as the coordinator sees it.
    pub ip: String,
}

/// The body of every 4xx/5xx answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A short, stable code such as `invalid_body`, `unauthorized` or `not_found`.
    pub error: String,
    /// What exactly was wrong, for a person.
    pub detail: String,
    /// The same text as `detail`: the original's clients read `message` (its Commune code).
    /// Absent from older coordinators' answers.
    #[serde(default)]
    pub message: String,
}

impl ErrorBody {
    pub fn new(error: impl Into<String>, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Self {
            error: error.into(),
            message: detail.clone(),
            detail,
        }
    }
}
