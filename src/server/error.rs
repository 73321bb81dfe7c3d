//! Every error answer: a status and `{"error": code, "detail": text}`. A 4xx tells the client what
//! to fix; a 5xx says only that something failed (the cause goes to the log).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, Request};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::api::{ErrorBody, FieldError, Validate};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not what the route takes (syntax, types, missing fields, size, media type).
    #[error("{detail}")]
    Body { status: StatusCode, detail: String },
    /// A field has a value the route refuses.
    #[error("{0}")]
    Field(#[from] FieldError),
    #[error("{0}")]
    BadQuery(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(String),
    /// The request contradicts what another miner holds.
    #[error("{0}")]
    Conflict(String),
    /// Too many requests; try again after the wait (sent as `Retry-After`).
    #[error("{detail}")]
    RateLimited {
        detail: String,
        retry_after: std::time::Duration,
    },
    #[error("the request took too long")]
    Timeout,
    /// Anything on our side; the cause was logged where it was known (see
    /// [`ApiError::internal`]), never sent.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// For `map_err`: logs what failed while doing `what`, once, with its cause, and answers
    /// a bare 500 (the cause is ours, not the client's).
    pub fn internal<E: Into<anyhow::Error>>(what: &'static str) -> impl FnOnce(E) -> Self {
        move |err| {
            let err: anyhow::Error = err.into();
            tracing::error!(error = format!("{err:#}"), "{what} failed");
            ApiError::Internal
        }
    }

    pub fn no_such_miner(id: &str) -> Self {
        ApiError::NotFound(format!("miner {id} not found"))
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Body { status, .. } => (
                *status,
                match *status {
                    StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
                    StatusCode::BAD_REQUEST => "malformed_json",
                    _ => "invalid_body",
                },
            ),
            ApiError::Field(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"),
            ApiError::BadQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Timeout => (StatusCode::REQUEST_TIMEOUT, "timeout"),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let body = ErrorBody::new(code, self.to_string());
        let mut response = (status, Json(body)).into_response();
        if let ApiError::RateLimited { retry_after, .. } = &self {
            // Whole seconds, rounded up (RFC 9110 §10.2.3): never earlier than useful.
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds.max(1)),
            );
        }
        response
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadQuery(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadQuery(rejection.body_text())
    }
}

/// A JSON body that is parsed and then checked with [`Validate`]; every failure becomes an
/// [`ApiError`] in the API's own error shape.
///
/// Valid bodies take the fast path (plain `serde_json`); only a body that fails is parsed a second
/// time with path tracking, so the error can name the field (`metrics.metrics.cpu_usage: …`).
#[derive(Debug)]
pub(super) struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned + Validate,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::Body {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                detail: "expected a JSON body with `Content-Type: application/json`".into(),
            });
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| ApiError::Body {
                status: rejection.status(),
                detail: rejection.body_text(),
            })?;
        let value =
            serde_json::from_slice::<T>(&bytes).map_err(|err| describe::<T>(&bytes, &err))?;
        value.validate()?;
        Ok(ApiJson(value))
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(kind) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = kind.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence.to_ascii_lowercase().ends_with("+json")
}

/// Turns a parse failure into a 400 (not JSON) or 422 (JSON of the wrong shape) naming the field.
fn describe<T: DeserializeOwned>(bytes: &[u8], err: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match err.classify() {
        Category::Data => {
            let mut de = serde_json::Deserializer::from_slice(bytes);
            let detail = match serde_path_to_error::deserialize::<_, T>(&mut de) {
                Err(tracked) if tracked.path().iter().next().is_some() => {
                    format!("{}: {}", tracked.path(), tracked.inner())
                }
                _ => err.to_string(),
            };
            ApiError::Body {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                detail,
            }
        }
        Category::Syntax | Category::Eof | Category::Io => {
            // serde_json reports a number, null or list where a named value (an enum's string)
            // belongs as a syntax error ("expected value"), though the body is valid JSON: that
            // is a field of the wrong type, 422 naming the field.
            if let Ok(body) = serde_json::from_slice::<serde_json::Value>(bytes) {
                let mut de = serde_json::Deserializer::from_slice(bytes);
                if let Err(tracked) = serde_path_to_error::deserialize::<_, T>(&mut de)
                    && tracked.path().iter().next().is_some()
                {
                    let found = found_at(&body, tracked.path());
                    return ApiError::Body {
                        status: StatusCode::UNPROCESSABLE_ENTITY,
                        detail: format!(
                            "{}: expected one of its names (a string), got {found}",
                            tracked.path()
                        ),
                    };
                }
            }
            ApiError::Body {
                status: StatusCode::BAD_REQUEST,
                detail: format!("the body is not valid JSON: {err}"),
            }
        }
    }
}

/// What kind of JSON value sits at `path` in `body`, in a few words.
fn found_at(body: &serde_json::Value, path: &serde_path_to_error::Path) -> &'static str {
    use serde_path_to_error::Segment;
    let mut value = Some(body);
    for segment in path.iter() {
        value = match segment {
            Segment::Map { key } => value.and_then(|v| v.get(key.as_str())),
            Segment::Seq { index } => value.and_then(|v| v.get(*index)),
            Segment::Enum { .. } | Segment::Unknown => value,
        };
    }
    match value {
        Some(serde_json::Value::Null) => "null",
        Some(serde_json::Value::Bool(_)) => "a boolean",
        Some(serde_json::Value::Number(_)) => "a number",
        Some(serde_json::Value::String(_)) => "a string",
        Some(serde_json::Value::Array(_)) => "a list",
        Some(serde_json::Value::Object(_)) => "an object",
        None => "something else",
    }
}
