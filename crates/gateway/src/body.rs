//! Reading JSON request bodies with a size limit, a time limit, and precise errors.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// How long a client may take to send its body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads a whole body of at most `limit` bytes within [`BODY_TIMEOUT`]; a refusal is the status
/// to answer with and a sentence saying why.
pub async fn read_bytes(req: Request, limit: usize) -> Result<axum::body::Bytes, (StatusCode, String)> {
    let too_large = || (StatusCode::PAYLOAD_TOO_LARGE, format!("the request body is larger than {limit} bytes"));
    if let Some(len) =
        req.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        && len > limit
    {
        return Err(too_large());
    }
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(req.into_body(), limit)).await {
        Err(_) => Err((StatusCode::REQUEST_TIMEOUT, "the request body took too long to arrive".into())),
        Ok(Err(e)) => {
            let length_limit = std::error::Error::source(&e).is_some_and(|s| s.to_string().contains("length limit"))
                || e.to_string().contains("length limit");
            Err(if length_limit {
                too_large()
            } else {
                (StatusCode::BAD_REQUEST, format!("could not read the request body: {e}"))
            })
        }
        Ok(Ok(b)) => Ok(b),
    }
}

/// A JSON body, limited to `gateway.http.maxBodyBytes`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let limit = state.runtime.config().gateway.max_body_bytes;
        let bytes = read_bytes(req, limit).await.map_err(|(status, why)| {
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(status, "invalid_request_error", format!("{why} (gateway.http.maxBodyBytes)"))
                    .code("body_too_large")
            } else {
                ApiError::new(status, "invalid_request_error", why)
            }
        })?;
        if bytes.is_empty() {
            return Err(ApiError::bad_request("the request body is empty: send a JSON object"));
        }
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            let what = if e.is_syntax() || e.is_eof() {
                "the body is not valid JSON"
            } else {
                "the body does not match the expected shape"
            };
            ApiError::bad_request(format!("{what}: {e}")).code("invalid_body")
        })
    }
}
