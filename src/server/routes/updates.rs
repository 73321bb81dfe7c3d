//! A miner's own updates: network facts and its Bittensor or Commune registration. Each waits for
//! its commit, so a 200 means stored.

use axum::Json;
use axum::extract::State;
use chrono::Utc;

use crate::api::{
    BittensorRegistration, CommuneRegistration, ErrorBody, NetworkUpdate, SimpleResponse,
};
use crate::server::auth::Bearer;
use crate::server::error::{ApiError, ApiJson};
use crate::server::state::AppState;
use crate::store::Write;

/// Updates how validators reach the miner. A `password` in the body is accepted for old clients
/// and discarded unread.
#[utoipa::path(post, path = "/api/v1/network_update", request_body = NetworkUpdate,
    security(("bearer" = [])),
    responses((status = 200, body = SimpleResponse), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 400, body = ErrorBody, description = "the body is not JSON"),
        (status = 413, body = ErrorBody, description = "the body is over 64 KiB"),
        (status = 415, body = ErrorBody, description = "the Content-Type is not JSON"),
        (status = 422, body = ErrorBody, description = "a field is missing, of the wrong type or refused")))]
pub(super) async fn network(
    State(state): State<AppState>,
    bearer: Option<Bearer>,
    body: Result<ApiJson<NetworkUpdate>, ApiError>,
) -> Result<Json<SimpleResponse>, ApiError> {
    let body = token_then_body(&state, bearer.as_ref(), body)?;
    state.speak_for(bearer.as_ref(), &body.miner_id)?;
    let write = Write::Network {
        miner_id: body.miner_id,
        network: body.network,
        at: Utc::now(),
    };
    store(&state, write, "Network information updated").await
}

/// Records the miner's Bittensor wallet and hotkey.
#[utoipa::path(post, path = "/api/v1/bittensor/register", request_body = BittensorRegistration,
    security(("bearer" = [])),
    responses((status = 200, body = SimpleResponse), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 400, body = ErrorBody, description = "the body is not JSON"),
        (status = 413, body = ErrorBody, description = "the body is over 64 KiB"),
        (status = 415, body = ErrorBody, description = "the Content-Type is not JSON"),
        (status = 422, body = ErrorBody, description = "a field is missing, of the wrong type or refused")))]
pub(super) async fn bittensor(
    State(state): State<AppState>,
    bearer: Option<Bearer>,
    body: Result<ApiJson<BittensorRegistration>, ApiError>,
) -> Result<Json<SimpleResponse>, ApiError> {
    let body = token_then_body(&state, bearer.as_ref(), body)?;
    state.speak_for(bearer.as_ref(), &body.miner_id)?;
    let details =
        serde_json::to_value(&body).map_err(ApiError::internal("encoding registration details"))?;
    let write = Write::Bittensor {
        miner_id: body.miner_id,
        details,
        at: Utc::now(),
    };
    store(
        &state,
        write,
        "Bittensor registration recorded; pending verification",
    )
    .await
}

/// Records the miner's Commune key and uid.
#[utoipa::path(post, path = "/api/v1/commune/register", request_body = CommuneRegistration,
    security(("bearer" = [])),
    responses((status = 200, body = SimpleResponse), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 400, body = ErrorBody, description = "the body is not JSON"),
        (status = 413, body = ErrorBody, description = "the body is over 64 KiB"),
        (status = 415, body = ErrorBody, description = "the Content-Type is not JSON"),
        (status = 422, body = ErrorBody, description = "a field is missing, of the wrong type or refused")))]
pub(super) async fn commune(
    State(state): State<AppState>,
    bearer: Option<Bearer>,
    body: Result<ApiJson<CommuneRegistration>, ApiError>,
) -> Result<Json<SimpleResponse>, ApiError> {
    let body = token_then_body(&state, bearer.as_ref(), body)?;
    state.speak_for(bearer.as_ref(), &body.miner_id)?;
    let details =
        serde_json::to_value(&body).map_err(ApiError::internal("encoding registration details"))?;
    let write = Write::Commune {
        miner_id: body.miner_id,
        details,
        at: Utc::now(),
    };
    store(
        &state,
        write,
        "Commune registration recorded; pending verification",
    )
    .await
}

/// The token is judged before the body; then the body's miner must be the token's (see
/// [`AppState::speak_for`]). Without a token (the original's client, `--legacy-clients`) only
/// the body can say who it is.
fn token_then_body<T>(
    state: &AppState,
    bearer: Option<&Bearer>,
    body: Result<ApiJson<T>, ApiError>,
) -> Result<T, ApiError> {
    match bearer {
        Some(bearer) => state.require_a_miner(bearer)?,
        None if state.legacy_clients => {}
        None => {
            return Err(ApiError::Unauthorized(
                "missing Authorization: Bearer <token> header",
            ));
        }
    }
    body.map(|ApiJson(body)| body)
}

/// Commits an update and answers `{"status": "success", "message": message}`.
async fn store(
    state: &AppState,
    write: Write,
    message: &'static str,
) -> Result<Json<SimpleResponse>, ApiError> {
    state
        .writer
        .commit(write)
        .await
        .map_err(ApiError::internal("storing a miner's update"))?;
    Ok(Json(SimpleResponse::success(message)))
}
