//! The Slack Web API on the wire (`POST {baseUrl}/<method>`, `Authorization: Bearer`, JSON with
//! `charset=utf-8`; answers `{"ok": true, …}` or `{"ok": false, "error": "…"}`, and HTTP 429 with
//! `Retry-After` when a rate tier is exhausted), and the request signature of the Events API
//! (`v0=` HMAC-SHA256 of `v0:<timestamp>:<body>` with the signing secret).
//!
//! Tokens travel only in the header; no error carries one. This file does not decide what to
//! do about an error.

use std::time::Duration;

use clawline_core::secret::SecretString;

/// A failed call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{method}: {error}")]
    Refused { method: String, error: String },
    #[error("{method}: rate limited for {retry_after:?}")]
    RateLimited { method: String, retry_after: Duration },
    #[error("{method}: {detail}")]
    Transport { method: String, detail: String },
}

/// A Web API client for one token.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("base", &self.base).finish()
    }
}

impl Api {
    pub fn new(http: reqwest::Client, base: &str) -> Api {
        Api { http, base: base.trim_end_matches('/').to_string() }
    }

    /// Calls `method` with `token` and a JSON body.
    pub async fn call(
        &self,
        token: &SecretString,
        method: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ApiError> {
        let transport = |detail: String| ApiError::Transport { method: method.to_string(), detail };
        let resp = self
            .http
            .post(format!("{}/{method}", self.base))
            .bearer_auth(token.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json; charset=utf-8")
            .body(body.to_string())
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| transport(e.without_url().to_string()))?;
        if resp.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let secs = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(1);
            return Err(ApiError::RateLimited {
                method: method.to_string(),
                retry_after: Duration::from_secs(secs.max(1)),
            });
        }
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| transport(e.without_url().to_string()))?;
        if bytes.len() > 8 * 1024 * 1024 {
            return Err(transport("answer larger than 8 MiB".into()));
        }
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|_| transport(format!("HTTP {} with a body that is not a Web API answer", status.as_u16())))?;
        if v["ok"] == true {
            return Ok(v);
        }
        Err(ApiError::Refused {
            method: method.to_string(),
            error: v["error"].as_str().unwrap_or("unknown_error").to_string(),
        })
    }
}

/// Whether an Events API request is Slack's: the `v0=` signature over `v0:<ts>:<body>` matches
/// in constant time and the timestamp is within five minutes of `now` (seconds).
pub fn signature_ok(secret: &SecretString, timestamp: &str, body: &[u8], signature: &str, now: i64) -> bool {
    let Ok(ts) = timestamp.trim().parse::<i64>() else { return false };
    if (now - ts).abs() > 300 {
        return false;
    }
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.expose().as_bytes());
    let mut ctx = aws_lc_rs::hmac::Context::with_key(&key);
    ctx.update(b"v0:");
    ctx.update(timestamp.trim().as_bytes());
    ctx.update(b":");
    ctx.update(body);
    let expected: String = ctx.sign().as_ref().iter().map(|b| format!("{b:02x}")).collect();
    clawline_core::secret::constant_time_eq(format!("v0={expected}").as_bytes(), signature.trim().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_check_the_body_the_secret_and_the_clock() {
        // Slack's documented example.
        let secret = SecretString::new("8f742231b10e8888abcd99yyyzzz85a5");
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let sig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert!(signature_ok(&secret, "1531420618", body, sig, 1_531_420_618));
        assert!(!signature_ok(&secret, "1531420618", b"tampered", sig, 1_531_420_618));
        assert!(!signature_ok(&secret, "1531420618", body, sig, 1_531_420_618 + 301), "older than five minutes");
        assert!(!signature_ok(&SecretString::new("other"), "1531420618", body, sig, 1_531_420_618));
        assert!(!signature_ok(&secret, "not-a-number", body, sig, 0));
    }
}
