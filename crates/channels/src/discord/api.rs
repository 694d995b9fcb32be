//! Discord's REST API on the wire (`{baseUrl}/…` with `Authorization: Bot <token>`; errors as
//! `{"code", "message"}`; 429 with `retry_after` seconds in the body and `Retry-After`), with
//! the per-route buckets its `X-RateLimit-*` headers describe: a request waits when its
//! bucket is known to be empty instead of provoking a 429.
//!
//! The token travels only in the header; no error carries it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clawline_core::secret::SecretString;

/// A failed call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{route}: {status} (code {code}) {message}")]
    Refused { route: String, status: u16, code: i64, message: String },
    #[error("{route}: rate limited for {retry_after:?}")]
    RateLimited { route: String, retry_after: Duration },
    #[error("{route}: {detail}")]
    Transport { route: String, detail: String },
}

/// What a request carries.
enum Body<'a> {
    Json(&'a serde_json::Value),
    /// A content type (with its boundary) and the encoded form.
    Form(String, Vec<u8>),
}

/// A REST client for one bot.
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: SecretString,
    /// Route key → when its bucket has room again.
    buckets: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("base", &self.base).finish()
    }
}

/// A route's bucket key: the method and the path with only its major parameter (the channel).
fn route_key(method: &reqwest::Method, path: &str) -> String {
    let parts: Vec<&str> = path.split('/').collect();
    let kept: Vec<String> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let major = i > 0 && parts.get(i - 1) == Some(&"channels");
            if !major && p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty() {
                ":id".to_string()
            } else {
                p.to_string()
            }
        })
        .collect();
    format!("{method} {}", kept.join("/"))
}

impl Api {
    pub fn new(http: reqwest::Client, base: &str, token: SecretString) -> Api {
        Api { http, base: base.trim_end_matches('/').to_string(), token, buckets: Mutex::new(HashMap::new()) }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, ApiError> {
        self.request(method, path, body.map(Body::Json)).await
    }

    /// A request with a `multipart/form-data` body (`payload_json` and `files[n]`).
    pub async fn call_multipart(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: String,
        body: Vec<u8>,
    ) -> Result<serde_json::Value, ApiError> {
        self.request(method, path, Some(Body::Form(content_type, body))).await
    }

    /// Downloads an attachment from its CDN `url` (no token: attachment URLs are signed),
    /// refusing more than `max_bytes`.
    pub async fn download(&self, url: &str, max_bytes: u64) -> Result<Vec<u8>, ApiError> {
        let route = "GET attachment".to_string();
        let transport = |detail: String| ApiError::Transport { route: route.clone(), detail };
        let mut resp = self
            .http
            .get(url)
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .map_err(|e| transport(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(ApiError::Refused {
                route: route.clone(),
                status: resp.status().as_u16(),
                code: 0,
                message: "the attachment could not be downloaded".into(),
            });
        }
        let mut out = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| transport(e.without_url().to_string()))? {
            if (out.len() + chunk.len()) as u64 > max_bytes {
                return Err(transport(format!("the attachment is larger than {max_bytes} bytes")));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Body<'_>>,
    ) -> Result<serde_json::Value, ApiError> {
        let route = route_key(&method, path);
        let wait = self
            .buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&route)
            .map(|t| t.saturating_duration_since(Instant::now()));
        if let Some(w) = wait.filter(|w| !w.is_zero()) {
            tokio::time::sleep(w.min(Duration::from_secs(60))).await;
        }
        let transport = |detail: String| ApiError::Transport { route: route.clone(), detail };
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(reqwest::header::AUTHORIZATION, format!("Bot {}", self.token.expose()))
            .header(reqwest::header::USER_AGENT, "DiscordBot (https://github.com/clawline/clawline, 0.1)")
            .timeout(Duration::from_secs(30));
        match body {
            Some(Body::Json(b)) => req = req.json(b),
            Some(Body::Form(ct, bytes)) => req = req.header(reqwest::header::CONTENT_TYPE, ct).body(bytes),
            None => {}
        }
        let resp = req.send().await.map_err(|e| transport(e.without_url().to_string()))?;
        let status = resp.status();
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let remaining = header("x-ratelimit-remaining").and_then(|v| v.parse::<u64>().ok());
        let reset_after = header("x-ratelimit-reset-after").and_then(|v| v.parse::<f64>().ok());
        if let (Some(0), Some(after)) = (remaining, reset_after) {
            let until = Instant::now() + Duration::from_secs_f64(after.clamp(0.0, 60.0));
            self.buckets.lock().unwrap_or_else(|p| p.into_inner()).insert(route.clone(), until);
        }
        let retry_header = header("retry-after").and_then(|v| v.parse::<f64>().ok());
        let bytes = resp.bytes().await.map_err(|e| transport(e.without_url().to_string()))?;
        if status == reqwest::StatusCode::NO_CONTENT {
            return Ok(serde_json::Value::Null);
        }
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let secs = v["retry_after"].as_f64().or(retry_header).unwrap_or(1.0).clamp(0.05, 600.0);
            return Err(ApiError::RateLimited { route, retry_after: Duration::from_secs_f64(secs) });
        }
        if status.is_success() {
            return Ok(v);
        }
        Err(ApiError::Refused {
            route,
            status: status.as_u16(),
            code: v["code"].as_i64().unwrap_or(0),
            message: v["message"].as_str().unwrap_or("no message").to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_key_on_the_channel_not_the_message() {
        let post = reqwest::Method::POST;
        assert_eq!(route_key(&post, "/channels/111/messages"), "POST /channels/111/messages");
        assert_eq!(
            route_key(&reqwest::Method::PATCH, "/channels/111/messages/999"),
            "PATCH /channels/111/messages/:id"
        );
        assert_ne!(route_key(&post, "/channels/111/messages"), route_key(&post, "/channels/222/messages"));
    }
}
