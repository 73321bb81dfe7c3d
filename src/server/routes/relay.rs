//! The built-in relay's routes: a miner's key (rotation) and who holds which port (admin).

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use chrono::Utc;

use crate::api::{ErrorBody, RelayKey, RelaySession, SimpleResponse};
use crate::server::auth::Bearer;
use crate::server::error::{ApiError, ApiJson};
use crate::server::state::AppState;
use crate::store::Write;

/// Sets the key the miner's tunnel logs in to the built-in relay with, replacing the previous
/// one (the miner's own token only). Stored whether or not this coordinator runs the relay.
#[utoipa::path(post, path = "/api/v1/miners/{id}/relay_key", security(("bearer" = [])),
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9_:-][A-Za-z0-9_.:-]{0,127}$", description = "miner id")),
    request_body = RelayKey,
    responses((status = 200, body = SimpleResponse), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "another miner holds this key"),
        (status = 400, body = ErrorBody, description = "the body is not JSON"),
        (status = 413, body = ErrorBody, description = "the body is over 64 KiB"),
        (status = 415, body = ErrorBody, description = "the Content-Type is not JSON"),
        (status = 422, body = ErrorBody, description = "a field is missing, of the wrong type or refused")))]
pub(super) async fn set_key(
    State(state): State<AppState>,
    bearer: Bearer,
    id: Result<Path<String>, PathRejection>,
    body: Result<ApiJson<RelayKey>, ApiError>,
) -> Result<Json<SimpleResponse>, ApiError> {
    let Path(id) = id?;
    // The token before the body.
    state.require_miner(&bearer, &id)?;
    let ApiJson(body) = body?;
    let key = body.parsed()?;
    store_key(&state, &id, &key).await?;
    Ok(Json(SimpleResponse::success("Relay key recorded")))
}

/// Checks, stores (waiting for the commit) and then publishes a miner's relay key.
pub(super) async fn store_key(
    state: &AppState,
    miner_id: &str,
    key: &russh::keys::PublicKey,
) -> Result<(), ApiError> {
    state
        .relay
        .keys
        .check(miner_id, key)
        .map_err(|refusal| ApiError::Conflict(refusal.to_string()))?;
    let line = key
        .to_openssh()
        .map_err(ApiError::internal("encoding a relay key"))?;
    state
        .writer
        .commit(Write::RelayKey {
            miner_id: miner_id.to_owned(),
            public_key: line,
            at: Utc::now(),
        })
        .await
        .map_err(ApiError::internal("storing a relay key"))?;
    state.relay.keys.set(miner_id, key);
    Ok(())
}

/// The built-in relay's sessions that hold a port, by port (admin).
#[utoipa::path(get, path = "/api/v1/relay/sessions", security(("bearer" = [])),
    responses((status = 200, body = Vec<RelaySession>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "this coordinator runs no relay")))]
pub(super) async fn sessions(
    State(state): State<AppState>,
    bearer: Bearer,
) -> Result<Json<Vec<RelaySession>>, ApiError> {
    state.require_admin(&bearer)?;
    let relay = state.relay.view.as_ref().ok_or_else(|| {
        ApiError::NotFound(
            "this coordinator runs no relay: start polaris server with --relay-listen".to_owned(),
        )
    })?;
    Ok(Json(relay.sessions()))
}
