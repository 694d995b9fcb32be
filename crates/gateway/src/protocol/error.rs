//! The error shape of a failed response: `{code, message, details?, retryable?, retryAfterMs?}`.
//!
//! `code` is one of OpenClaw's few top-level codes; the precise reason a client may act on goes
//! in `details.code` (e.g. `AUTH_TOKEN_MISMATCH`, `MISSING_SCOPE`). Messages are written for
//! people and reuse OpenClaw's wording where clients match on it (`unknown method: …`,
//! `missing scope: …`, `invalid <method> params: …`). Messages never contain secrets.

use serde::Serialize;
use serde_json::{Value, json};

/// The top-level error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ErrorCode {
    /// Bad frame, unknown method, invalid params, failed auth, protocol mismatch, bad origin.
    #[serde(rename = "INVALID_REQUEST")]
    InvalidRequest,
    /// Authenticated, but without the scope the method needs.
    #[serde(rename = "FORBIDDEN")]
    Forbidden,
    /// A device identity or its pairing approval is required.
    #[serde(rename = "NOT_PAIRED")]
    NotPaired,
    /// Temporarily unavailable (rate limited, starting, shutting down); `retryable`.
    #[serde(rename = "UNAVAILABLE")]
    Unavailable,
}

/// A failed response.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RpcError {
    pub code: ErrorCode,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl RpcError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RpcError { code, message: message.into(), details: None, retryable: None, retry_after_ms: None }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Marks the error retryable after `ms`.
    pub fn retry_after(mut self, ms: u64) -> Self {
        self.retryable = Some(true);
        self.retry_after_ms = Some(ms);
        self
    }

    pub fn unknown_method(method: &str) -> Self {
        Self::invalid(format!("unknown method: {method}"))
    }

    pub fn invalid_params(method: &str, why: &str) -> Self {
        Self::invalid(format!("invalid {method} params: {why}"))
    }

    pub fn missing_scope(scope: &str) -> Self {
        Self::new(ErrorCode::Forbidden, format!("missing scope: {scope}"))
            .details(json!({"code": "MISSING_SCOPE", "missingScope": scope, "requiredScopes": [scope]}))
    }

    /// A method-level failure the client caused (unknown session, bad value, …).
    pub fn bad(message: impl Into<String>) -> Self {
        Self::invalid(message)
    }

    /// Something on our side failed; the message says what, without internals a client could abuse.
    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(ErrorCode::Unavailable, message);
        e.retryable = Some(true);
        e
    }

    /// Rate limited: `UNAVAILABLE`, retryable, with when to retry.
    pub fn rate_limited(method: &str, retry_after_ms: u64, limit: &str) -> Self {
        let secs = retry_after_ms.div_ceil(1000).max(1);
        Self::new(ErrorCode::Unavailable, format!("rate limit exceeded for {method}; retry after {secs}s"))
            .details(json!({"method": method, "limit": limit}))
            .retry_after(retry_after_ms)
    }
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_in_the_wire_shape() {
        let e = RpcError::missing_scope("operator.read");
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"code": "FORBIDDEN", "message": "missing scope: operator.read",
                   "details": {"code": "MISSING_SCOPE", "missingScope": "operator.read", "requiredScopes": ["operator.read"]}})
        );
        let e = RpcError::rate_limited("config.apply", 12_500, "30 per 60s");
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["message"], "rate limit exceeded for config.apply; retry after 13s");
        assert_eq!(v["retryable"], true);
        assert_eq!(v["retryAfterMs"], 12_500);
    }
}
