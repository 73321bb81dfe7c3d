//! One heartbeat sent, and why it was not acknowledged: "unreachable" passes by itself, a
//! refused token never does, and the user is told which (status, the dashboard).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::api::{HeartbeatRequest, HeartbeatResponse};
use crate::register::record::RegistrationRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// No answer at all (connection refused, no route, DNS, timeout).
    Unreachable,
    /// The coordinator does not know this miner or refuses its token (401, 404): only a new
    /// `polaris register` helps.
    Refused,
    /// Another error status (a 5xx, a 4xx): the coordinator's trouble, usually passing.
    Rejected,
    /// A success status with a body that is not a heartbeat answer (a proxy's page).
    BadAnswer,
}

/// A heartbeat that was not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub kind: FailureKind,
    /// The HTTP status, when the coordinator answered.
    pub status: Option<u16>,
    /// What happened, for a person.
    pub message: String,
}

impl Failure {
    /// A few words for a list of problems.
    pub fn summary(&self) -> String {
        match (self.kind, self.status) {
            (FailureKind::Unreachable, _) => "the coordinator is unreachable".to_owned(),
            (FailureKind::Refused, _) => {
                "the coordinator refuses this miner: run `polaris register` again".to_owned()
            }
            (FailureKind::Rejected, Some(status)) => format!("the coordinator answered {status}"),
            (FailureKind::Rejected, None) => "the coordinator refused the heartbeat".to_owned(),
            (FailureKind::BadAnswer, _) => {
                "the coordinator's answer is not a heartbeat answer".to_owned()
            }
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

pub(super) async fn send(
    client: &reqwest::Client,
    record: &RegistrationRecord,
    body: &HeartbeatRequest,
) -> Result<HeartbeatResponse, Failure> {
    let url = format!("{}/heart_beat", record.server_url.trim_end_matches('/'));
    let answer = client
        .post(&url)
        .bearer_auth(record.token.expose())
        .json(body)
        .send()
        .await
        .map_err(|e| Failure {
            kind: FailureKind::Unreachable,
            status: None,
            message: format!(
                "{url} unreachable: {}",
                crate::inventory::network::root_cause(&e)
            ),
        })?;
    let status = answer.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::NOT_FOUND {
        return Err(Failure {
            kind: FailureKind::Refused,
            status: Some(status.as_u16()),
            message: format!(
                "the coordinator does not know this miner ({status}): run `polaris register` again"
            ),
        });
    }
    if !status.is_success() {
        return Err(Failure {
            kind: FailureKind::Rejected,
            status: Some(status.as_u16()),
            message: format!("{url} answered {status}"),
        });
    }
    answer.json().await.map_err(|e| Failure {
        kind: FailureKind::BadAnswer,
        status: Some(status.as_u16()),
        message: format!("{url} sent an unexpected answer: {e}"),
    })
}
