//! The pieces of OAuth 2.0 on the wire shared by every flow: percent-encoding, token request
//! bodies (JSON or form), token responses and RFC 6749 §5.2 error bodies.
//!
//! Token endpoints answer `{"access_token", "token_type", "expires_in", "refresh_token"?}` or
//! `{"error", "error_description"?}`. `invalid_grant` means the code or refresh token is no
//! longer good (revoked, expired, reused): the user has to sign in again, and the error says so.
//! This file must not log tokens; errors carry the server's `error` code and description only.

use std::time::Duration;

use clawline_core::secret::SecretString;
use serde::Deserialize;
use serde_json::Value;

/// How a token endpoint wants its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// `application/x-www-form-urlencoded` (RFC 6749).
    Form,
    /// `application/json` (Anthropic's endpoint).
    Json,
}

/// Tokens a sign-in or refresh produced.
#[derive(Debug, Clone)]
pub struct Grant {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    /// When the access token stops working (ms since the epoch), if the server said.
    pub expires_at_ms: Option<i64>,
    pub scope: Option<String>,
}

/// Why a flow failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    #[error("{provider}: the sign-in was refused ({reason})")]
    Denied { provider: String, reason: String },
    #[error("{provider}: the callback's state does not match this sign-in; start `clawline auth login` again")]
    StateMismatch { provider: String },
    #[error(
        "{provider}: the {what} is no longer valid ({detail}); sign in again with `clawline auth login {provider}`"
    )]
    InvalidGrant { provider: String, what: &'static str, detail: String },
    #[error("{provider}: the token endpoint answered HTTP {status}: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Server { provider: String, status: u16, error: String, description: Option<String> },
    #[error("{provider}: {message}")]
    Network { provider: String, message: String },
    #[error("{provider}: {message}")]
    Protocol { provider: String, message: String },
    #[error("{provider}: the sign-in timed out; {hint}")]
    Timeout { provider: String, hint: &'static str },
}

/// RFC 3986 percent-encoding of one query or form component (everything but unreserved).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Decodes one percent-encoded component (`+` as space, as forms write it). Malformed escapes
/// are kept as they are.
pub fn decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=b&c=d` with each part encoded.
pub fn form(params: &[(&str, &str)]) -> String {
    params.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

/// The parameters of a query string or form body.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<Value>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    /// MiniMax: `pending`, `success` or `error`.
    #[serde(default)]
    status: Option<String>,
    /// MiniMax's expiry (see [`expiry_from_expired_in`]).
    #[serde(default)]
    expired_in: Option<Value>,
    #[serde(default)]
    base_resp: Option<Value>,
}

/// MiniMax's `expired_in`: below 10^9 it is seconds from now, below 10^12 epoch seconds, above
/// that epoch milliseconds. Returns epoch milliseconds.
pub(crate) fn expiry_from_expired_in(v: i64, now_ms: i64) -> Option<i64> {
    match v {
        ..=0 => None,
        1..1_000_000_000 => Some(now_ms + v * 1000),
        1_000_000_000..1_000_000_000_000 => Some(v * 1000),
        _ => Some(v),
    }
}

pub(crate) fn now_ms() -> i64 {
    crate::client::now_ms()
}

/// Sends a token request and reads the grant. `what` names the credential being used, for
/// `invalid_grant` messages ("authorization code", "refresh token", "device code").
pub(crate) async fn token_request(
    http: &reqwest::Client,
    provider: &str,
    url: &str,
    format: BodyFormat,
    params: &[(&str, &str)],
    what: &'static str,
) -> Result<Result<Grant, (String, Option<String>)>, OAuthError> {
    let builder = http.post(url).header(reqwest::header::ACCEPT, "application/json");
    let builder = match format {
        BodyFormat::Form => {
            builder.header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(form(params))
        }
        BodyFormat::Json => {
            let obj: serde_json::Map<String, Value> =
                params.iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect();
            builder.json(&obj)
        }
    };
    let resp = tokio::time::timeout(Duration::from_secs(30), builder.send())
        .await
        .map_err(|_| OAuthError::Timeout {
            provider: provider.into(),
            hint: "the token endpoint did not answer in 30 s",
        })?
        .map_err(|e| OAuthError::Network { provider: provider.into(), message: format!("cannot reach {url}: {e}") })?;
    let status = resp.status().as_u16();
    let text = crate::http_util::read_body_limited(resp, 256 * 1024)
        .await
        .map_err(|_| OAuthError::Protocol { provider: provider.into(), message: "unreadable token response".into() })?;
    let parsed: TokenResponse = serde_json::from_str(&text).map_err(|_| OAuthError::Protocol {
        provider: provider.into(),
        message: format!("the token endpoint answered HTTP {status} with something that is not a token response"),
    })?;
    match parsed.status.as_deref() {
        Some("pending") => return Ok(Err(("authorization_pending".into(), None))),
        Some("error") => {
            let detail = parsed
                .base_resp
                .as_ref()
                .and_then(|b| b["status_msg"].as_str())
                .filter(|m| !m.is_empty())
                .unwrap_or("the server refused it")
                .to_string();
            return Err(if what == "refresh token" {
                OAuthError::InvalidGrant { provider: provider.into(), what, detail }
            } else {
                OAuthError::Denied { provider: provider.into(), reason: detail }
            });
        }
        _ => {}
    }
    if let Some(error) = parsed.error {
        // Device-flow polling states are returned to the caller, not raised.
        if matches!(error.as_str(), "authorization_pending" | "slow_down") {
            return Ok(Err((error, parsed.error_description)));
        }
        return Err(match error.as_str() {
            "invalid_grant" => OAuthError::InvalidGrant {
                provider: provider.into(),
                what,
                detail: parsed.error_description.unwrap_or_else(|| "invalid_grant".into()),
            },
            "access_denied" | "expired_token" => {
                OAuthError::Denied { provider: provider.into(), reason: parsed.error_description.unwrap_or(error) }
            }
            _ => OAuthError::Server { provider: provider.into(), status, error, description: parsed.error_description },
        });
    }
    let Some(access) = parsed.access_token.filter(|a| !a.is_empty()) else {
        return Err(OAuthError::Protocol {
            provider: provider.into(),
            message: format!("the token endpoint answered HTTP {status} without an access_token"),
        });
    };
    let expires_in = parsed.expires_in.and_then(|v| v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())));
    let now = now_ms();
    let expires_at_ms = match expires_in {
        Some(s) => Some(now + (s * 1000.0) as i64),
        None => parsed.expired_in.and_then(|v| v.as_i64()).and_then(|v| expiry_from_expired_in(v, now)),
    };
    Ok(Ok(Grant {
        access_token: SecretString::new(access),
        refresh_token: parsed.refresh_token.filter(|r| !r.is_empty()).map(SecretString::new),
        expires_at_ms,
        scope: parsed.scope,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_decodes_components() {
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(decode("a%20b%26c%3Dd%2F%C3%A9"), "a b&c=d/é");
        assert_eq!(decode("x+y%2"), "x y%2");
        assert_eq!(decode("%zz%"), "%zz%");
        let q = parse_query("code=abc%2Fdef&state=s1&flag");
        assert_eq!(
            q,
            [("code".into(), "abc/def".into()), ("state".into(), "s1".into()), ("flag".into(), String::new())]
        );
        assert_eq!(form(&[("redirect_uri", "http://127.0.0.1:1/cb")]), "redirect_uri=http%3A%2F%2F127.0.0.1%3A1%2Fcb");
    }

    #[test]
    fn minimax_expiry_units() {
        let now = 1_764_000_000_000;
        assert_eq!(expiry_from_expired_in(3600, now), Some(now + 3_600_000));
        assert_eq!(expiry_from_expired_in(1_764_003_600, now), Some(1_764_003_600_000));
        assert_eq!(expiry_from_expired_in(1_764_003_600_000, now), Some(1_764_003_600_000));
        assert_eq!(expiry_from_expired_in(0, now), None);
        assert_eq!(expiry_from_expired_in(-5, now), None);
    }
}
