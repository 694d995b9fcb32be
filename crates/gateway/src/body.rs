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

/// A JSON body, limited to `gateway.http.maxBodyBytes`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let limit = state.runtime.config().gateway.max_body_bytes;
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                format!("the request body is larger than {limit} bytes (gateway.http.maxBodyBytes)"),
            )
            .code("body_too_large")
        };
        if let Some(len) =
            req.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
            && len > limit
        {
            return Err(too_large());
        }
        let bytes = match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(req.into_body(), limit)).await {
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "invalid_request_error",
                    "the request body took too long to arrive",
                ));
            }
            Ok(Err(e)) => {
                let length_limit =
                    std::error::Error::source(&e).is_some_and(|s| s.to_string().contains("length limit"));
                return Err(if length_limit || e.to_string().contains("length limit") {
                    too_large()
                } else {
                    ApiError::bad_request(format!("could not read the request body: {e}"))
                });
            }
            Ok(Ok(b)) => b,
        };
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
