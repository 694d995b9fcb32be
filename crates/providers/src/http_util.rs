//! HTTP plumbing shared by the wire modules: the client, error bodies, `Retry-After`, and
//! reading a streamed body with an idle timeout.

use std::time::Duration;

use futures_util::StreamExt;

use crate::error::{ErrorKind, ProviderError};
use crate::sse::{SseDecoder, SseEvent};

/// Error bodies are read up to this size; the rest is dropped.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Builds the HTTP client used for model calls: rustls, HTTP/2 when offered, system proxy
/// settings, a 10 s connect timeout. Request and idle timeouts are applied per call.
pub fn build_http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("clawline/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Parses `retry-after-ms` or `retry-after` (seconds or an HTTP date).
/// The W3C `traceparent` header for a model request that carries one.
pub(crate) fn trace_headers(req: &crate::ModelRequest) -> reqwest::header::HeaderMap {
    let mut h = reqwest::header::HeaderMap::new();
    if let Some(v) = req.traceparent.as_deref().and_then(|t| reqwest::header::HeaderValue::from_str(t).ok()) {
        h.insert("traceparent", v);
    }
    h
}

pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    if let Some(ms) =
        headers.get("retry-after-ms").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_millis(ms as u64));
    }
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_millis((secs * 1000.0) as u64));
    }
    let when = humantime::parse_rfc3339_weak(v).ok().or_else(|| httpdate(v))?;
    Some(when.duration_since(std::time::SystemTime::now()).unwrap_or_default())
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn httpdate(v: &str) -> Option<std::time::SystemTime> {
    let parts: Vec<&str> = v.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else { return None };
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let m = months.iter().position(|x| x == month)? + 1;
    let iso = format!("{year}-{m:02}-{day:0>2}T{time}Z");
    humantime::parse_rfc3339(&iso).ok()
}

/// Replaces every occurrence of the key in `text`.
pub(crate) fn scrub(text: &str, key: Option<&str>) -> String {
    match key {
        Some(k) if k.len() >= 4 => text.replace(k, "[redacted]"),
        _ => text.to_string(),
    }
}

/// Reads at most [`MAX_ERROR_BODY`] bytes of an error response.
pub(crate) async fn read_error_body(resp: reqwest::Response) -> String {
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = MAX_ERROR_BODY.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// Reads a whole response body of at most `limit` bytes as text. `Err(None)`: it was larger.
pub(crate) async fn read_body_limited(resp: reqwest::Response, limit: usize) -> Result<String, Option<reqwest::Error>> {
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(Some)?;
        if body.len() + chunk.len() > limit {
            return Err(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Maps a transport failure from reqwest.
pub(crate) fn transport_error(provider: &str, e: &reqwest::Error, key: Option<&str>) -> ProviderError {
    let kind = if e.is_timeout() { ErrorKind::Timeout } else { ErrorKind::Network };
    let mut message = scrub(&e.to_string(), key);
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&scrub(&s.to_string(), key));
        source = s.source();
    }
    ProviderError::new(kind, provider, message)
}

/// Sends one model request the way every wire module does: the provider's extra headers are
/// added, the wait for the response to start is bounded by `timeoutSeconds` (which also bounds
/// each silence in the stream later, never the whole answer), and an error status becomes the
/// error `classify(status, body)` makes of it, with the `Retry-After` header unless the body
/// already said how long to wait. Returns the response and the idle bound.
pub(crate) async fn send_model_request(
    mut builder: reqwest::RequestBuilder,
    settings: &clawline_core::config::ProviderSettings,
    key: Option<&str>,
    classify: impl FnOnce(u16, &str) -> ProviderError,
) -> Result<(reqwest::Response, Duration), ProviderError> {
    let provider = settings.id.as_str();
    for (name, value) in &settings.headers {
        builder = builder.header(name, value);
    }
    let idle = Duration::from_secs(settings.timeout_secs);
    let resp = tokio::time::timeout(idle, builder.send())
        .await
        .map_err(|_| {
            ProviderError::new(
                ErrorKind::Timeout,
                provider,
                format!("no response from the model server in {} s", idle.as_secs()),
            )
        })?
        .map_err(|e| transport_error(provider, &e, key))?;
    let status = resp.status();
    if !status.is_success() {
        let after = retry_after(resp.headers());
        let body = tokio::time::timeout(idle, read_error_body(resp)).await.unwrap_or_default();
        let mut err = classify(status.as_u16(), &body);
        if after.is_some() {
            err.retry_after = after;
        }
        return Err(err);
    }
    Ok((resp, idle))
}

/// Reads SSE events from a streaming response, failing with `Timeout` when no bytes arrive for
/// `idle`. Calls `on_event` for each event; it returns `Ok(true)` to stop early (end of stream).
pub(crate) async fn read_sse(
    provider: &str,
    resp: reqwest::Response,
    idle: Duration,
    key: Option<&str>,
    mut on_event: impl FnMut(SseEvent) -> Result<bool, ProviderError>,
) -> Result<(), ProviderError> {
    let mut stream = resp.bytes_stream();
    let mut decoder = SseDecoder::default();
    let mut events = Vec::new();
    loop {
        let next = tokio::time::timeout(idle, stream.next()).await.map_err(|_| {
            ProviderError::new(ErrorKind::Timeout, provider, format!("no data from the model for {} s", idle.as_secs()))
        })?;
        match next {
            Some(Ok(chunk)) => decoder.push(&chunk, &mut events).map_err(|e| protocol(provider, e))?,
            Some(Err(e)) => return Err(transport_error(provider, &e, key)),
            None => {
                decoder.finish(&mut events).map_err(|e| protocol(provider, e))?;
                for event in events.drain(..) {
                    if on_event(event)? {
                        return Ok(());
                    }
                }
                return Ok(());
            }
        }
        for event in events.drain(..) {
            if on_event(event)? {
                return Ok(());
            }
        }
    }
}

fn protocol(provider: &str, e: impl std::fmt::Display) -> ProviderError {
    ProviderError::new(ErrorKind::Protocol, provider, format!("malformed event stream: {e}"))
}

/// Parses one event's JSON, as a protocol error when it is not valid.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(provider: &str, data: &str) -> Result<T, ProviderError> {
    serde_json::from_str(data).map_err(|e| {
        let (shown, cut) = clawline_core::text::truncate_chars(data, 200);
        ProviderError::new(
            ErrorKind::Protocol,
            provider,
            format!("malformed event from the model server ({e}): {shown}{}", if cut { "…" } else { "" }),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn parses_retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn scrubs_keys() {
        assert_eq!(scrub("bad key sk-abcdef given", Some("sk-abcdef")), "bad key [redacted] given");
        assert_eq!(scrub("text", None), "text");
    }
}
