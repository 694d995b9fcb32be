//! The Matrix client-server API (v3) on the wire: `Authorization: Bearer <token>`, JSON bodies,
//! errors as `{"errcode": "M_…", "error": "…"}` with `retry_after_ms` (and `Retry-After`) on
//! `M_LIMIT_EXCEEDED`; the `/sync` response and event shapes clawline reads.
//!
//! The access token only ever travels in the header, never in a URL, and no error carries it.
//! This file does not decide what to do about an error; callers map [`ApiError`].

use std::collections::BTreeMap;
use std::time::Duration;

use clawline_core::secret::SecretString;
use serde::Deserialize;
use serde::de::DeserializeOwned;

const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// A failed call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{what}: {status} {errcode}: {message}")]
    Refused { what: String, status: u16, errcode: String, message: String, retry_after: Option<Duration> },
    #[error("{what}: {detail}")]
    Transport { what: String, detail: String },
}

impl ApiError {
    pub fn errcode(&self) -> Option<&str> {
        match self {
            ApiError::Refused { errcode, .. } => Some(errcode),
            ApiError::Transport { .. } => None,
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    errcode: Option<String>,
    error: Option<String>,
    retry_after_ms: Option<u64>,
}

/// An event in a room's timeline or an invite's stripped state.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub event_id: Option<String>,
    #[serde(default)]
    pub sender: String,
    #[serde(default)]
    pub origin_server_ts: Option<i64>,
    #[serde(default)]
    pub content: serde_json::Value,
    #[serde(default)]
    pub state_key: Option<String>,
    #[serde(default)]
    pub unsigned: serde_json::Value,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Timeline {
    #[serde(default)]
    pub events: Vec<Event>,
    #[serde(default)]
    pub limited: bool,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Summary {
    #[serde(rename = "m.joined_member_count")]
    pub joined: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct EventList {
    #[serde(default)]
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct JoinedRoom {
    #[serde(default)]
    pub timeline: Timeline,
    #[serde(default)]
    pub state: EventList,
    #[serde(default)]
    pub summary: Summary,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct InvitedRoom {
    #[serde(default)]
    pub invite_state: EventList,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Rooms {
    #[serde(default)]
    pub join: BTreeMap<String, JoinedRoom>,
    #[serde(default)]
    pub invite: BTreeMap<String, InvitedRoom>,
}

/// The `/sync` answer (what clawline reads of it).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Sync {
    pub next_batch: String,
    #[serde(default)]
    pub rooms: Rooms,
    #[serde(default)]
    pub account_data: EventList,
}

/// A client for one account.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: SecretString,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("base", &self.base).field("token", &"[redacted]").finish()
    }
}

/// Percent-encodes a path segment (room ids have `!` and `:`, transaction ids anything).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What a request carries.
enum Payload<'a> {
    Json(&'a serde_json::Value),
    /// A content type and the bytes (a media upload).
    Raw(String, Vec<u8>),
}

impl Api {
    pub fn new(http: reqwest::Client, base: &str, token: SecretString) -> Api {
        Api { http, base: base.trim_end_matches('/').to_string(), token }
    }

    pub fn with_token(&self, token: SecretString) -> Api {
        Api { token, ..self.clone() }
    }

    /// Calls `method path` (under `/_matrix/client/v3`, or an absolute `/_matrix/…` path) with an
    /// optional JSON body; waits at most `timeout`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
        timeout: Duration,
    ) -> Result<T, ApiError> {
        let (bytes, status, retry) =
            self.raw(method.clone(), path, body.map(Payload::Json), timeout, MAX_ANSWER_BYTES).await?;
        self.answer(&method, path, bytes, status, retry)
    }

    /// Uploads a file to the media repository; its `mxc://` URI.
    pub async fn upload(&self, name: &str, mime: &str, bytes: Vec<u8>) -> Result<String, ApiError> {
        let path = format!("/_matrix/media/v3/upload?filename={}", segment(name));
        let payload = Payload::Raw(mime.to_string(), bytes);
        let (body, status, retry) =
            self.raw(reqwest::Method::POST, &path, Some(payload), Duration::from_secs(120), MAX_ANSWER_BYTES).await?;
        let v: serde_json::Value = self.answer(&reqwest::Method::POST, &path, body, status, retry)?;
        v["content_uri"].as_str().map(str::to_string).ok_or_else(|| ApiError::Transport {
            what: "POST upload".into(),
            detail: "the upload answer has no content_uri".into(),
        })
    }

    /// Downloads `mxc://server/id` (authenticated media, v1.11), at most `max_bytes`.
    pub async fn download(&self, mxc: &str, max_bytes: u64) -> Result<Vec<u8>, ApiError> {
        let Some((server, id)) = mxc.strip_prefix("mxc://").and_then(|r| r.split_once('/')) else {
            return Err(ApiError::Transport {
                what: "download".into(),
                detail: format!("`{mxc}` is not an mxc:// URI"),
            });
        };
        let path = format!("/_matrix/client/v1/media/download/{}/{}", segment(server), segment(id));
        let max = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        let (bytes, status, retry) = self.raw(reqwest::Method::GET, &path, None, Duration::from_secs(120), max).await?;
        if status.is_success() {
            return Ok(bytes);
        }
        self.answer::<serde_json::Value>(&reqwest::Method::GET, &path, bytes, status, retry).map(|_| Vec::new())
    }

    /// Sends one request and reads its answer (at most `max` bytes).
    async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Payload<'_>>,
        timeout: Duration,
        max: usize,
    ) -> Result<(Vec<u8>, reqwest::StatusCode, Option<Duration>), ApiError> {
        let what = format!("{method} {}", path.split('?').next().unwrap_or(path));
        let transport = |detail: String| ApiError::Transport { what: what.clone(), detail };
        let url = if path.starts_with("/_matrix/") {
            format!("{}{path}", self.base)
        } else {
            format!("{}/_matrix/client/v3{path}", self.base)
        };
        let mut req = self.http.request(method.clone(), url).timeout(timeout);
        if !self.token.is_empty() {
            req = req.bearer_auth(self.token.expose());
        }
        match body {
            Some(Payload::Json(b)) => req = req.json(b),
            Some(Payload::Raw(ct, bytes)) => req = req.header(reqwest::header::CONTENT_TYPE, ct).body(bytes),
            None => {}
        }
        let resp = req.send().await.map_err(|e| {
            let e = e.without_url();
            transport(if e.is_timeout() { "timed out".into() } else { e.to_string() })
        })?;
        let status = resp.status();
        let header_retry = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut bytes = Vec::new();
        let mut resp = resp;
        while let Some(chunk) = resp.chunk().await.map_err(|e| transport(e.without_url().to_string()))? {
            if bytes.len() + chunk.len() > max {
                return Err(transport(format!("answer larger than {max} bytes")));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((bytes, status, header_retry))
    }

    /// An answer as the client-server API defines it: the JSON on success, the error body otherwise.
    fn answer<T: DeserializeOwned>(
        &self,
        method: &reqwest::Method,
        path: &str,
        bytes: Vec<u8>,
        status: reqwest::StatusCode,
        header_retry: Option<Duration>,
    ) -> Result<T, ApiError> {
        let what = format!("{method} {}", path.split('?').next().unwrap_or(path));
        let transport = |detail: String| ApiError::Transport { what: what.clone(), detail };
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                transport(format!("HTTP {} with an answer that is not what the API defines: {e}", status.as_u16()))
            });
        }
        let err: ErrorBody =
            serde_json::from_slice(&bytes).unwrap_or(ErrorBody { errcode: None, error: None, retry_after_ms: None });
        Err(ApiError::Refused {
            what: what.clone(),
            status: status.as_u16(),
            errcode: err.errcode.unwrap_or_else(|| "M_UNKNOWN".into()),
            message: err.error.unwrap_or_else(|| format!("HTTP {}", status.as_u16())),
            retry_after: err.retry_after_ms.map(Duration::from_millis).or(header_retry),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded_and_syncs_parse_leniently() {
        assert_eq!(segment("!abc:example.org"), "%21abc%3Aexample.org");
        assert_eq!(segment("channel:telegram:1#2"), "channel%3Atelegram%3A1%232");
        let s: Sync = serde_json::from_value(serde_json::json!({
            "next_batch": "s1", "rooms": {"join": {"!r:x": {"timeline": {"events": [
                {"type": "m.room.message", "event_id": "$e", "sender": "@a:x", "content": {"msgtype": "m.text", "body": "hi"}}
            ]}, "summary": {"m.joined_member_count": 2}}}, "invite": {"!i:x": {}}}, "presence": {}
        }))
        .unwrap();
        assert_eq!(s.rooms.join["!r:x"].timeline.events[0].content["body"], "hi");
        assert_eq!(s.rooms.join["!r:x"].summary.joined, Some(2));
        assert!(s.rooms.invite.contains_key("!i:x"));
    }
}
