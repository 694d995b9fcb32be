//! A small client for a running gateway's own API (`/healthz`, `/api/chat`).

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use clawline_providers::sse::SseDecoder;
use futures_util::StreamExt;
use serde_json::Value;

fn http() -> reqwest::Client {
    reqwest::Client::builder().connect_timeout(Duration::from_secs(2)).build().unwrap_or_default()
}

/// Whether a clawline gateway answers at `base`.
pub async fn probe(base: &str) -> bool {
    let req = http().get(format!("{base}/healthz")).timeout(Duration::from_millis(800)).send().await;
    match req {
        Ok(r) if r.status().is_success() => r.json::<Value>().await.is_ok_and(|v| v["ok"] == true),
        _ => false,
    }
}

/// Runs one turn through `/api/chat`, calling `on_event(name, data)` for each run event.
pub async fn chat(base: &str, token: &str, body: &Value, mut on_event: impl FnMut(&str, Value)) -> Result<()> {
    let resp = http()
        .post(format!("{base}/api/chat"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .map_err(|e| anyhow!("cannot reach the gateway at {base}: {e}"))?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(String::from))
            .unwrap_or(text);
        if status == reqwest::StatusCode::UNAUTHORIZED {
            bail!("the gateway refused the token (HTTP 401): {message}");
        }
        bail!("the gateway answered HTTP {}: {message}", status.as_u16());
    }
    let mut stream = resp.bytes_stream();
    let mut decoder = SseDecoder::default();
    let mut events = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| anyhow!("the connection to the gateway broke: {e}"))?;
        decoder.push(&chunk, &mut events).map_err(|e| anyhow!("bad event stream from the gateway: {e}"))?;
        for ev in events.drain(..) {
            let data: Value = serde_json::from_str(&ev.data).map_err(|e| anyhow!("bad event from the gateway: {e}"))?;
            on_event(ev.event.as_deref().unwrap_or("message"), data);
        }
    }
    decoder.finish(&mut events).map_err(|e| anyhow!("bad event stream from the gateway: {e}"))?;
    for ev in events {
        if let Ok(data) = serde_json::from_str::<Value>(&ev.data) {
            on_event(ev.event.as_deref().unwrap_or("message"), data);
        }
    }
    Ok(())
}
