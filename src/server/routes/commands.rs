//! `POST /miners/{id}/commands` (queue one, admin) and `GET /miners/{id}/commands` (their
//! states). Delivery and reports ride on the heartbeat (see `heartbeat.rs`).

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;

use crate::api::{Command, CommandEntry, CommandList, CommandQueued, CommandState, ErrorBody};
use crate::server::auth::Bearer;
use crate::server::commands::new_id;
use crate::server::error::{ApiError, ApiJson};
use crate::server::state::AppState;
use crate::store::{StoredCommand, Write};

/// Most commands `GET /miners/{id}/commands` lists.
const LISTED: usize = 100;

/// Queues a command for a miner (admin). It goes out in the miner's next heartbeat answers until
/// the agent reports it done or failed, or until it expires (`POLARIS_COMMAND_EXPIRY`, 1 h by
/// default). Stored before the answer: a restart of the coordinator keeps it.
#[utoipa::path(post, path = "/api/v1/miners/{id}/commands", security(("bearer" = [])),
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9_:-][A-Za-z0-9_.:-]{0,127}$", description = "miner id")),
    request_body = Command,
    responses(
        (status = 202, body = CommandQueued),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the miner has too many commands waiting"),
        (status = 400, body = ErrorBody, description = "the body is not JSON"),
        (status = 413, body = ErrorBody, description = "the body is over 64 KiB"),
        (status = 415, body = ErrorBody, description = "the Content-Type is not JSON"),
        (status = 422, body = ErrorBody, description = "a field is missing, of the wrong type or refused"),
    ))]
pub(super) async fn queue(
    State(state): State<AppState>,
    bearer: Bearer,
    id: Result<Path<String>, PathRejection>,
    body: Result<ApiJson<Command>, ApiError>,
) -> Result<(StatusCode, Json<CommandQueued>), ApiError> {
    let Path(miner_id) = id?;
    // The token before the body.
    state.require_admin(&bearer)?;
    let ApiJson(command) = body?;
    if !state.registry.contains(&miner_id) {
        return Err(ApiError::no_such_miner(&miner_id));
    }
    // A miner heard from only without its token runs the original client: commands go only to
    // heartbeats with a token, so it would never get one.
    if state.registry.is_legacy(&miner_id) {
        return Err(ApiError::Conflict(format!(
            "miner {miner_id} runs the original client (it sends no token): it takes commands once it runs polaris"
        )));
    }
    state
        .commands
        .check_room(&miner_id)
        .map_err(|refusal| ApiError::Conflict(refusal.to_string()))?;
    let now = Utc::now();
    let expires_at = now
        + chrono::TimeDelta::from_std(state.command_expiry).unwrap_or(chrono::TimeDelta::hours(1));
    let stored = StoredCommand {
        id: new_id(),
        miner_id,
        command,
        state: CommandState::Queued,
        reason: None,
        created_at: now,
        expires_at,
        delivered_at: None,
        finished_at: None,
    };
    state
        .writer
        .commit(Write::QueueCommand(Box::new(stored.clone())))
        .await
        .map_err(ApiError::internal("storing a command"))?;
    state.commands.open(&stored);
    tracing::info!(
        miner_id = %stored.miner_id,
        command = stored.command.action(),
        id = %stored.id,
        "command queued"
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(CommandQueued {
            id: stored.id,
            state: stored.state,
            expires_at,
        }),
    ))
}

/// A miner's most recent commands, newest first, with their states, and the SSH keys its agent
/// last reported (admin).
#[utoipa::path(get, path = "/api/v1/miners/{id}/commands", security(("bearer" = [])),
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9_:-][A-Za-z0-9_.:-]{0,127}$", description = "miner id")),
    responses((status = 200, body = CommandList), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<AppState>,
    bearer: Bearer,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<CommandList>, ApiError> {
    let Path(miner_id) = id?;
    state.require_admin(&bearer)?;
    if !state.registry.contains(&miner_id) {
        return Err(ApiError::no_such_miner(&miner_id));
    }
    let stored = state
        .store
        .commands(&miner_id, LISTED)
        .await
        .map_err(ApiError::internal("reading a miner's commands"))?;
    let commands = stored
        .into_iter()
        .map(|c| CommandEntry {
            id: c.id,
            command: c.command,
            state: c.state,
            reason: c.reason,
            created_at: c.created_at,
            expires_at: c.expires_at,
            delivered_at: c.delivered_at,
            finished_at: c.finished_at,
        })
        .collect();
    Ok(Json(CommandList {
        commands,
        authorized_keys: state.commands.keys_of(&miner_id),
    }))
}
