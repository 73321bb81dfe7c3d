//! The HTTP surface (base `/api/v1`, plus `/healthz` and `/metrics` at the root).

mod commands;
mod heartbeat;
mod meta;
mod miners;
mod relay;
mod updates;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, patch, post};
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

use super::guards;
use super::state::AppState;

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// The whole API as a router; tests and the server use the same one.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/miners", get(miners::list).post(miners::register))
        .route("/miners/", post(miners::register))
        .route("/miners/heartbeat_status", get(heartbeat::status))
        .route("/miners/{id}", get(miners::show))
        .route("/miners/{id}/status", patch(miners::set_verification))
        .route("/miners/{id}/status_history", get(miners::history))
        .route("/miners/{id}/relay_key", post(relay::set_key))
        .route(
            "/miners/{id}/commands",
            get(commands::list).post(commands::queue),
        )
        .route("/relay/sessions", get(relay::sessions))
        .route("/heart_beat", post(heartbeat::receive))
        .route("/network_update", post(updates::network))
        .route("/bittensor/register", post(updates::bittensor))
        .route("/commune/register", post(updates::commune))
        .route("/whoami", get(meta::whoami))
        .route("/openapi.json", get(meta::openapi))
        .route("/healthz", get(meta::healthz))
        // Before any route: a miner another coordinator registered is looked up in the store.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::learn::unknown_miners,
        ));
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(meta::healthz))
        .route("/metrics", get(meta::metrics))
        .fallback(meta::no_route)
        .method_not_allowed_fallback(meta::wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(guards::refuse_oversized))
        .layer(axum::middleware::from_fn(guards::time_limit))
        .with_state(state)
}

/// The OpenAPI document, generated from the handlers and wire types.
#[derive(OpenApi)]
#[openapi(
    info(title = "Polaris coordinator API", description = "Registration, compute listing and heartbeats of Polaris miners."),
    paths(
        miners::register, miners::list, miners::show, miners::set_verification, miners::history,
        heartbeat::receive, heartbeat::status,
        commands::queue, commands::list,
        updates::network, updates::bittensor, updates::commune,
        relay::set_key, relay::sessions,
        meta::healthz, meta::metrics, meta::whoami,
    ),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}
