//! Registration, the pod view, the admin list and verification.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use chrono::Utc;
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::Deserialize;
use tokio::time::Instant;

use crate::api::{
    ErrorBody, MinerList, Pod, RegistrationRequest, RegistrationResponse, RelayKey, SimpleResponse,
    StatusChangeEntry, VerificationUpdate,
};
use crate::server::auth::{Bearer, generate_token, hash_token};
use crate::server::error::{ApiError, ApiJson};
use crate::server::state::{AppState, Caller};
use crate::store::{MinerRecord, NewMiner, Write};

/// Most miners on one page of `GET /miners`.
const MAX_PAGE: usize = 1000;

/// Registers a miner. Anonymous callers are rate-limited per address; the admin token lifts the
/// limit. The answer's `token` is shown only this once.
#[utoipa::path(post, path = "/api/v1/miners/", request_body = RegistrationRequest,
    security((), ("bearer" = [])),
    responses(
        (status = 201, body = RegistrationResponse),
        (status = 401, body = ErrorBody, description = "a token was sent and is unknown"),
        (status = 400, body = ErrorBody, description = "the body is not JSON"),
        (status = 413, body = ErrorBody, description = "the body is over 64 KiB"),
        (status = 415, body = ErrorBody, description = "the Content-Type is not JSON"),
        (status = 422, body = ErrorBody, description = "a field is missing, of the wrong type or refused"),
        (status = 429, body = ErrorBody, headers(
            ("Retry-After" = u64, description = "seconds until a registration is allowed again"))),
    ))]
pub(super) async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    bearer: Option<Bearer>,
    body: Result<ApiJson<RegistrationRequest>, ApiError>,
) -> Result<(StatusCode, Json<RegistrationResponse>), ApiError> {
    // Anonymous callers may register; a token, when given, must be known (before the body).
    let caller = bearer.map(|b| state.caller(&b)).transpose()?;
    let is_admin = caller == Some(Caller::Admin);
    let ApiJson(body) = body?;
    if !is_admin && let Err(wait) = state.limiter.allow(peer.ip(), Instant::now()) {
        return Err(ApiError::RateLimited {
            detail: format!(
                "too many registrations from this address: try again in {:.0} s",
                wait.as_secs_f64().ceil().max(1.0)
            ),
            retry_after: wait,
        });
    }
    let relay_key = body
        .relay_key
        .as_deref()
        .map(|line| RelayKey {
            public_key: line.to_owned(),
        })
        .map(|key| key.parsed())
        .transpose()?;
    let miner_id = new_miner_id();
    let token = generate_token();
    let token_hash = hash_token(&token);
    let added_resources = body
        .compute_resources
        .iter()
        .map(|r| r.id.clone())
        .collect();
    let miner = NewMiner {
        id: miner_id.clone(),
        name: body.name,
        location: body.location,
        description: body.description,
        registration_type: body.registration_type,
        compute_resources: body.compute_resources,
        token_hash,
        at: Utc::now(),
    };
    // Registration waits for its commit: the token it hands out must survive a crash.
    state
        .writer
        .commit(Write::Register(Box::new(miner)))
        .await
        .map_err(ApiError::internal("storing a registration"))?;
    state.registry.add(&miner_id, token_hash);
    if let Some(key) = &relay_key {
        // The miner exists now and keeps existing: a key that another miner already holds (a
        // machine registered twice) or that cannot be stored only leaves this miner without
        // relay access until it sends a key of its own.
        if let Err(err) = super::relay::store_key(&state, &miner_id, key).await {
            tracing::warn!(%miner_id, error = %err, "the relay key sent at registration was not stored");
        }
    }
    state.metrics.registration();
    tracing::info!(%miner_id, "miner registered");
    Ok((
        StatusCode::CREATED,
        Json(RegistrationResponse {
            miner_id,
            message: "Miner registered successfully".into(),
            added_resources,
            token,
        }),
    ))
}

/// A 20-character id, like the Firestore ids the original coordinator handed out.
fn new_miner_id() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(20)
        .map(char::from)
        .collect()
}

/// One miner with its compute resources (that miner's token, or the admin's).
#[utoipa::path(get, path = "/api/v1/miners/{id}", security(("bearer" = [])),
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9_:-][A-Za-z0-9_.:-]{0,127}$", description = "miner id")),
    responses((status = 200, body = Pod), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn show(
    State(state): State<AppState>,
    bearer: Option<Bearer>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Pod>, ApiError> {
    let Path(id) = id?;
    match &bearer {
        Some(bearer) => state.require_miner_or_admin(bearer, &id)?,
        // The original's client shows its pod without a token (`--legacy-clients`).
        None => state.speak_for(None, &id)?,
    }
    let record = state
        .store
        .miner(&id)
        .await
        .map_err(ApiError::internal("reading a miner"))?
        .ok_or_else(|| ApiError::no_such_miner(&id))?;
    Ok(Json(pod(&state, record)))
}

#[derive(Debug, Deserialize)]
pub(super) struct ListParams {
    after: Option<String>,
    limit: Option<usize>,
}

/// Every miner, a page at a time (admin).
#[utoipa::path(get, path = "/api/v1/miners", security(("bearer" = [])),
    params(("after" = Option<String>, Query, description = "the `next` of the previous page"),
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000,
            description = "page size, 1 to 1000 (default 100)")),
    responses((status = 200, body = MinerList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<AppState>,
    bearer: Bearer,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<MinerList>, ApiError> {
    state.require_admin(&bearer)?;
    let Query(params) = params?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadQuery(format!(
            "limit must be from 1 to {MAX_PAGE}, got {limit}"
        )));
    }
    let records = state
        .store
        .miners(params.after, limit)
        .await
        .map_err(ApiError::internal("listing miners"))?;
    let next = (records.len() == limit)
        .then(|| records.last().map(|r| r.id.clone()))
        .flatten();
    let miners = records.into_iter().map(|r| pod(&state, r)).collect();
    Ok(Json(MinerList { miners, next }))
}

/// Sets a miner's verification status (admin; validators use it).
#[utoipa::path(patch, path = "/api/v1/miners/{id}/status", security(("bearer" = [])),
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9_:-][A-Za-z0-9_.:-]{0,127}$", description = "miner id")),
    request_body = VerificationUpdate,
    responses((status = 200, body = SimpleResponse), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 400, body = ErrorBody, description = "the body is not JSON"),
        (status = 413, body = ErrorBody, description = "the body is over 64 KiB"),
        (status = 415, body = ErrorBody, description = "the Content-Type is not JSON"),
        (status = 422, body = ErrorBody, description = "a field is missing, of the wrong type or refused")))]
pub(super) async fn set_verification(
    State(state): State<AppState>,
    bearer: Bearer,
    id: Result<Path<String>, PathRejection>,
    body: Result<ApiJson<VerificationUpdate>, ApiError>,
) -> Result<Json<SimpleResponse>, ApiError> {
    let Path(id) = id?;
    // The token before the body.
    state.require_admin(&bearer)?;
    let ApiJson(body) = body?;
    if !state.registry.contains(&id) {
        return Err(ApiError::no_such_miner(&id));
    }
    state
        .writer
        .commit(Write::Verification {
            miner_id: id.clone(),
            status: body.status,
            at: Utc::now(),
        })
        .await
        .map_err(ApiError::internal("storing a verification"))?;
    Ok(Json(SimpleResponse::success(format!(
        "miner {id} is now {}",
        body.status.as_str()
    ))))
}

/// A miner's status transitions, oldest first (that miner's token, or the admin's).
#[utoipa::path(get, path = "/api/v1/miners/{id}/status_history", security(("bearer" = [])),
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9_:-][A-Za-z0-9_.:-]{0,127}$", description = "miner id")),
    responses((status = 200, body = Vec<StatusChangeEntry>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn history(
    State(state): State<AppState>,
    bearer: Bearer,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<StatusChangeEntry>>, ApiError> {
    let Path(id) = id?;
    state.require_miner_or_admin(&bearer, &id)?;
    let rows = state
        .store
        .status_history(&id)
        .await
        .map_err(ApiError::internal("reading a status history"))?;
    Ok(Json(
        rows.into_iter().map(StatusChangeEntry::from).collect(),
    ))
}

/// The pod view of a stored miner, with its live status from memory.
fn pod(state: &AppState, record: MinerRecord) -> Pod {
    let live = state.registry.liveness_of(&record.id, Instant::now());
    let (status, last_seen) = match live {
        Some(l) => (l.status, l.last_seen),
        None => (record.current_status, record.last_heartbeat),
    };
    let legacy = state.registry.is_legacy(&record.id);
    Pod {
        legacy,
        heartbeat_status: status.map(|s| s.as_str().to_owned()),
        last_seen,
        id: record.id,
        name: record.name,
        location: record.location,
        description: record.description,
        created_at: record.created_at,
        updated_at: record.updated_at,
        status: record.verification,
        compute_resources: record.compute_resources,
        network: record.network,
        bittensor_details: record.bittensor_details,
        commune_details: record.commune_details,
    }
}
