//! `POST /heart_beat` (the hot path: memory only, never waits on the store) and
//! `GET /miners/heartbeat_status`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use chrono::Utc;
use tokio::time::Instant;

use crate::api::{
    ErrorBody, HeartbeatRequest, HeartbeatResponse, HeartbeatStatus, HeartbeatStatusEntry,
};
use crate::server::auth::Bearer;
use crate::server::commands::{Exchange, Reporter};
use crate::server::error::{ApiError, ApiJson};
use crate::server::refusals::Refused;
use crate::server::registry::{Credential, HeartbeatOutcome, Refusal};
use crate::server::state::{AppState, TOKEN_REQUIRED};
use crate::server::transitions;

/// Records a heartbeat. The server's clock stamps it; the body's `timestamp` is ignored.
#[utoipa::path(post, path = "/api/v1/heart_beat", request_body = HeartbeatRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, body = HeartbeatResponse),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 400, body = ErrorBody, description = "the body is not JSON"),
        (status = 413, body = ErrorBody, description = "the body is over 64 KiB"),
        (status = 415, body = ErrorBody, description = "the Content-Type is not JSON"),
        (status = 422, body = ErrorBody, description = "a field is missing, of the wrong type or refused"),
    ))]
pub(super) async fn receive(
    State(state): State<AppState>,
    bearer: Result<Option<Bearer>, ApiError>,
    body: Result<ApiJson<HeartbeatRequest>, ApiError>,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    // No token at all is the original's client: taken with --legacy-clients (for a miner that
    // never used its token), refused otherwise. A malformed header is refused either way.
    let bearer = match bearer {
        Ok(Some(bearer)) => Some(bearer),
        Ok(None) if state.legacy_clients => None,
        Ok(None) | Err(_) => {
            // The miner id, when the body names one, says who cannot get through.
            let miner_id = body.as_ref().ok().map(|b| b.0.metrics.miner_id.as_str());
            state
                .metrics
                .refusals
                .record(Refused::MissingToken, miner_id);
            return Err(bearer.err().unwrap_or(ApiError::Unauthorized(
                "missing Authorization: Bearer <token> header",
            )));
        }
    };
    // Who is calling is answered before what the body is (a stranger learns nothing of the
    // routes' rules); checked here only when the body fails, since the registry checks a good
    // one's token anyway. Without a token, only the body can say who it is.
    let ApiJson(body) = match body {
        Ok(body) => body,
        Err(err) => {
            let (reason, answer) = match bearer.as_ref().map(|b| state.require_a_miner(b)) {
                Some(Err(auth)) => (refusal_of(&auth), auth),
                Some(Ok(())) | None => (Refused::BadBody, err),
            };
            state.metrics.refusals.record(reason, None);
            return Err(answer);
        }
    };
    let miner_id = body.metrics.miner_id.as_str();
    let refused = |reason| state.metrics.refusals.record(reason, Some(miner_id));
    let now = Utc::now();
    // The registry's clock (deadlines, the sampling gate); `now` stamps what is stored.
    let clock = Instant::now();
    // Serialized before the registry's lock is taken (every other heartbeat waits on it), and
    // only when a write is due: at the agent's cadence, one heartbeat in six.
    let metrics = state
        .registry
        .write_due(miner_id, body.status, clock)
        .then(|| metrics_json(&body))
        .flatten();
    let persist = |outcome: &HeartbeatOutcome| persist(&state, &body, metrics, outcome, now);
    let credential = bearer
        .as_ref()
        .map_or(Credential::Legacy, |b| Credential::Token(&b.0));
    let recorded = state
        .registry
        .heartbeat(miner_id, credential, body.status, clock, now, persist);
    match (recorded, &bearer) {
        (Ok(outcome), _) => {
            state.metrics.heartbeat();
            state.credential_news(miner_id, outcome.credential);
        }
        (Err(Refusal::NoSuchMiner), Some(bearer)) => {
            // Authenticate first, so an anonymous caller cannot probe which miners exist.
            if let Err(auth) = state.caller(bearer) {
                refused(Refused::UnknownToken);
                return Err(auth);
            }
            refused(Refused::UnknownMiner);
            return Err(ApiError::no_such_miner(miner_id));
        }
        (Err(Refusal::NoSuchMiner), None) => {
            refused(Refused::UnknownMiner);
            return Err(ApiError::no_such_miner(miner_id));
        }
        (Err(Refusal::WrongToken), Some(bearer)) => {
            let why = state
                .require_miner(bearer, miner_id)
                .err()
                .unwrap_or(ApiError::Forbidden("this token belongs to another miner"));
            refused(refusal_of(&why));
            return Err(why);
        }
        (Err(Refusal::WrongToken | Refusal::TokenRequired), _) => {
            refused(Refused::MissingToken);
            return Err(ApiError::Unauthorized(TOKEN_REQUIRED));
        }
    }
    // Commands go only to a miner that proved who it is (a token-less heartbeat could be
    // anyone's), and not to one signing off (it is stopping and would not read them).
    let exchange = if bearer.is_some() && body.status != HeartbeatStatus::Offline {
        let reporter = match &body.command_results {
            Some(results) => Reporter::Reports(results),
            None => Reporter::Silent,
        };
        state.commands.exchange(miner_id, reporter, now)
    } else {
        Exchange::default()
    };
    for write in exchange.writes {
        state.writer.send(write);
    }
    if bearer.is_some() {
        state
            .commands
            .report_keys(miner_id, body.ssh_keys.as_deref());
    }
    Ok(Json(HeartbeatResponse {
        status: Cow::Borrowed("success"),
        message: Cow::Borrowed("Heartbeat processed successfully"),
        last_seen: now,
        commands: exchange.deliver,
    }))
}

/// The refusal an authentication error stands for.
fn refusal_of(err: &ApiError) -> Refused {
    match err {
        ApiError::Unauthorized(_) => Refused::UnknownToken,
        _ => Refused::WrongToken,
    }
}

/// Queues what a heartbeat changed (the rules: [`transitions::after_heartbeat`]). Runs with the
/// registry lock held: it only queues, never waits.
fn persist(
    state: &AppState,
    body: &HeartbeatRequest,
    metrics: Option<Arc<str>>,
    outcome: &HeartbeatOutcome,
    now: chrono::DateTime<Utc>,
) {
    if !outcome.write_due() {
        return;
    }
    // Not prepared only when another request for this miner changed its state between the hint
    // and the lock: rare enough to serialize here.
    let Some(metrics) = metrics.or_else(|| metrics_json(body)) else {
        return;
    };
    transitions::after_heartbeat(outcome, metrics, now).queue(state);
}

/// The heartbeat's metrics as the JSON text miner_states and metrics_history keep.
fn metrics_json(body: &HeartbeatRequest) -> Option<Arc<str>> {
    match serde_json::to_string(&body.metrics) {
        Ok(text) => Some(text.into()),
        Err(err) => {
            let miner_id = body.metrics.miner_id.as_str();
            tracing::error!(error = %err, miner_id, "cannot serialize heartbeat metrics");
            None
        }
    }
}

/// Every miner's liveness (admin).
#[utoipa::path(get, path = "/api/v1/miners/heartbeat_status", security(("bearer" = [])),
    responses((status = 200, body = BTreeMap<String, HeartbeatStatusEntry>),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn status(
    State(state): State<AppState>,
    bearer: Bearer,
) -> Result<Json<BTreeMap<String, HeartbeatStatusEntry>>, ApiError> {
    state.require_admin(&bearer)?;
    let now = Utc::now();
    let entries = state
        .registry
        .liveness(Instant::now())
        .into_iter()
        .map(|l| {
            let since = l.last_seen.and_then(|at| (now - at).to_std().ok());
            let entry = HeartbeatStatusEntry {
                last_seen: l.last_seen,
                time_since: since.map(python_timedelta),
                status: l.status,
            };
            (l.miner_id.to_string(), entry)
        })
        .collect();
    Ok(Json(entries))
}

/// Formats like Python's `str(timedelta)`: `0:00:12.500000`, `1 day, 2:03:04`.
fn python_timedelta(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let clock = format!("{}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60);
    let micros = d.subsec_micros();
    let clock = if micros > 0 {
        format!("{clock}.{micros:06}")
    } else {
        clock
    };
    match days {
        0 => clock,
        1 => format!("1 day, {clock}"),
        n => format!("{n} days, {clock}"),
    }
}

#[cfg(test)]
mod tests {
    use super::python_timedelta;
    use std::time::Duration;

    #[test]
    fn time_since_reads_like_python() {
        assert_eq!(python_timedelta(Duration::from_secs(12)), "0:00:12");
        assert_eq!(
            python_timedelta(Duration::from_millis(12_500)),
            "0:00:12.500000"
        );
        assert_eq!(
            python_timedelta(Duration::from_secs(86_400 + 3_723)),
            "1 day, 1:02:03"
        );
        assert_eq!(
            python_timedelta(Duration::from_secs(2 * 86_400)),
            "2 days, 0:00:00"
        );
    }
}
