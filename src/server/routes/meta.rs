//! Liveness, metrics, the OpenAPI document and the JSON answers for unknown routes.

use axum::Json;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{Method, Uri, header};
use axum::response::IntoResponse;
use utoipa::OpenApi;

use super::ApiDoc;
use crate::api::{ErrorBody, Whoami};
use crate::server::error::ApiError;
use crate::server::state::AppState;

/// Liveness: answers as long as the server serves.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "serving")))]
pub(super) async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub(super) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut text = state.metrics.render(
        &state.registry,
        state.writer.stats(),
        tokio::time::Instant::now(),
    );
    text.push_str(&crate::server::metrics::render_store(
        state.store.documents_written(),
        state.writer.stats(),
        state
            .replica
            .as_deref()
            .map(|r| (r.name.as_str(), r.view()))
            .as_ref(),
    ));
    if let Some(relay) = &state.relay.view {
        text.push_str(&crate::server::metrics::render_relay(&relay.sessions()));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// The caller's address as this server sees it (the agent's public address when the coordinator
/// is on the internet).
#[utoipa::path(get, path = "/api/v1/whoami", responses((status = 200, body = Whoami)))]
pub(super) async fn whoami(ConnectInfo(peer): ConnectInfo<SocketAddr>) -> Json<Whoami> {
    Json(Whoami {
        ip: peer.ip().to_string(),
    })
}

pub(super) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

pub(super) async fn no_route(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route {}", uri.path()))
}

pub(super) async fn wrong_method(method: Method, uri: Uri) -> impl IntoResponse {
    let body = ErrorBody::new(
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    );
    (axum::http::StatusCode::METHOD_NOT_ALLOWED, Json(body))
}
