//! API errors as HTTP responses, in the OpenAI error shape.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answer: status, type, optional code, message.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: Option<String>,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// HTTP 429 for a client locked out after failed authentications, with `Retry-After`.
    pub fn auth_locked_out(wait: std::time::Duration) -> Self {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many failed authentications; try again later",
        )
        .code("auth_rate_limited");
        e.retry_after = Some(wait.as_secs().max(1));
        e
    }

    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, kind, code: None, message: message.into(), retry_after: None }
    }

    pub fn code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized: send the gateway token as `Authorization: Bearer <token>` (`clawline token` prints it)",
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind, "code": self.code}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(self.body())).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// Maps a refused turn to a response.
impl From<clawline_agent::TurnError> for ApiError {
    fn from(e: clawline_agent::TurnError) -> Self {
        let status = if e.is_client_error() {
            match e {
                clawline_agent::TurnError::UnknownAgent(..) => StatusCode::NOT_FOUND,
                _ => StatusCode::BAD_REQUEST,
            }
        } else if matches!(e, clawline_agent::TurnError::Store(_)) {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let kind = if status.is_client_error() { "invalid_request_error" } else { "server_error" };
        ApiError::new(status, kind, e.to_string()).code(e.code())
    }
}
