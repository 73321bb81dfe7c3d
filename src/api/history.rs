//! `GET /miners/{id}/status_history`: a miner's status transitions, oldest first.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::heartbeat::HeartbeatStatus;

/// One change of a miner's status.
// Its own type, not the store's row (`store::StatusChange`), so a change to what is stored cannot
// silently change this body. Named `StatusChange` in the OpenAPI document, as it was when the
// stored row was the body, so clients generated from the document keep their names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = StatusChange)]
pub struct StatusChangeEntry {
    pub miner_id: String,
    /// When the coordinator saw the change.
    pub timestamp: DateTime<Utc>,
    /// Null when the earlier status was not known.
    pub old_status: Option<HeartbeatStatus>,
    pub new_status: HeartbeatStatus,
    /// Why, for a person: `reported by the miner's heartbeat`, `no heartbeat for 45s`.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The body as clients read it: changing it is an API change, not a refactor.
    #[test]
    fn an_entry_keeps_its_json() {
        let entry = StatusChangeEntry {
            miner_id: "m0".into(),
            timestamp: DateTime::from_timestamp(1_800_000_000, 123_456_000).unwrap_or_default(),
            old_status: Some(HeartbeatStatus::Online),
            new_status: HeartbeatStatus::Offline,
            reason: "no heartbeat for 45s".into(),
        };
        assert_eq!(
            serde_json::to_value(&entry).ok(),
            Some(json!({
                "miner_id": "m0",
                "timestamp": "2027-01-15T08:00:00.123456Z",
                "old_status": "online",
                "new_status": "offline",
                "reason": "no heartbeat for 45s",
            })),
            "the status_history body changed: that is an API change"
        );
    }
}
