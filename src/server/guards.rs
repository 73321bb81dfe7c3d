//! Request guards that answer in the API's own error shape: oversized bodies and slow requests.
//!
//! Oversized bodies.
//! A server that answers 413 and closes while the client is still sending makes most HTTP clients
//! report a broken pipe instead of the answer. So a body that announces a length over the limit
//! (but under [`DRAIN_LIMIT`]) is read and thrown away first, and the client gets a proper
//! `413 {"error": "payload_too_large"}`. Larger or unannounced bodies are cut off at the limit by
//! the JSON extractor.

use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::error::ApiError;
use super::routes::MAX_BODY;

/// Most bytes read and discarded to answer an oversized request cleanly.
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;

pub(super) async fn refuse_oversized(request: Request, next: Next) -> Response {
    let announced = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let Some(length) = announced.filter(|&n| n > MAX_BODY) else {
        return next.run(request).await;
    };
    if length <= DRAIN_LIMIT {
        let limited = http_body_util::Limited::new(request.into_body(), DRAIN_LIMIT);
        let _ = Body::new(limited).collect().await;
    }
    ApiError::Body {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        detail: format!("the body has {length} bytes; at most {MAX_BODY} are accepted"),
    }
    .into_response()
}

/// Longest a request may take, body and handler together.
pub(super) const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Answers 408 `{"error": "timeout"}` for a request that takes longer than [`REQUEST_TIMEOUT`].
pub(super) async fn time_limit(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    }
}
