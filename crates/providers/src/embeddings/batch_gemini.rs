//! Gemini's batch mode for embeddings: `POST {base}/models/{model}:asyncBatchEmbedContent` with
//! the requests inline, answered with a long-running operation named `batches/…`, polled with
//! `GET {base}/{name}` and cancelled with `POST {base}/{name}:cancel`; `x-goog-api-key` on each.
//!
//! The job is `{"batch": {"displayName", "inputConfig": {"requests": {"requests": [{"request":
//! {"model": "models/<m>", "content": {"parts": [{"text"}]}, "taskType": "RETRIEVAL_DOCUMENT",
//! "outputDimensionality"?}, "metadata": {"key"}}]}}}}` (inline requests must stay under 20 MB).
//! The operation's `metadata.state` is `BATCH_STATE_PENDING`, `…_RUNNING`, then `…_SUCCEEDED`,
//! `…_FAILED`, `…_CANCELLED` or `…_EXPIRED`; an `error` on the operation fails it. Answers are
//! `inlinedResponses.inlinedResponses[]` under the operation's `response` (or `metadata.output`),
//! in request order, each `{"response": {"embedding": {"values"}}}` or `{"error"}`, with the
//! request's `metadata` echoed (its `key` is trusted over the position when present).

use serde_json::{Value, json};

use super::batch::{JobState, exchange, json_answer, protocol, reason};
use super::{EmbeddingSettings, floats};
use crate::error::ProviderError;

/// Gemini's limit on inline requests, with room for the envelope.
const MAX_INLINE_BYTES: usize = 19 << 20;

fn base(s: &EmbeddingSettings) -> &str {
    s.base_url.trim_end_matches('/')
}

fn authed(s: &EmbeddingSettings, b: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match &s.api_key {
        Some(k) => b.header("x-goog-api-key", k.expose()),
        None => b,
    }
}

fn model(s: &EmbeddingSettings) -> &str {
    s.model.strip_prefix("models/").unwrap_or(&s.model)
}

/// The job body for `texts`.
fn job_body(s: &EmbeddingSettings, job: usize, texts: &[String]) -> Value {
    let m = model(s);
    let requests: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut r = json!({"model": format!("models/{m}"), "content": {"parts": [{"text": t}]}, "taskType": "RETRIEVAL_DOCUMENT"});
            if let Some(d) = s.dimensions {
                r["outputDimensionality"] = json!(d);
            }
            json!({"request": r, "metadata": {"key": i.to_string()}})
        })
        .collect();
    json!({"batch": {"displayName": format!("clawline-memory-{job}"), "inputConfig": {"requests": {"requests": requests}}}})
}

/// Starts the job; the operation's name.
pub(super) async fn submit(
    http: &reqwest::Client,
    s: &EmbeddingSettings,
    job: usize,
    texts: &[String],
) -> Result<String, ProviderError> {
    let body = job_body(s, job, texts).to_string();
    if body.len() > MAX_INLINE_BYTES {
        return Err(protocol(s, format!("a batch of {} MB is over Gemini's 20 MB inline limit", body.len() >> 20)));
    }
    let url = format!("{}/models/{}:asyncBatchEmbedContent", base(s), model(s));
    let req = authed(s, http.post(&url)).header("content-type", "application/json").body(body);
    let op = json_answer(s, exchange(s, req, "starting the batch").await?, "starting the batch").await?;
    op["name"].as_str().map(String::from).ok_or_else(|| protocol(s, "the batch operation has no `name`"))
}

async fn operation(http: &reqwest::Client, s: &EmbeddingSettings, name: &str) -> Result<Value, ProviderError> {
    let url = format!("{}/{name}", base(s));
    json_answer(s, exchange(s, authed(s, http.get(&url)), "reading the batch").await?, "reading the batch").await
}

/// Where operation `name` stands.
pub(super) async fn poll(http: &reqwest::Client, s: &EmbeddingSettings, name: &str) -> Result<JobState, ProviderError> {
    let op = operation(http, s, name).await?;
    if let Some(why) = op.get("error").and_then(reason) {
        return Ok(JobState::Failed(why));
    }
    let state = op["metadata"]["state"].as_str().unwrap_or_default();
    Ok(match state {
        "BATCH_STATE_SUCCEEDED" | "BATCH_STATE_CANCELLED" | "BATCH_STATE_EXPIRED" => JobState::Ended,
        "BATCH_STATE_FAILED" => JobState::Failed("the batch failed".into()),
        _ if op["done"].as_bool() == Some(true) => JobState::Ended,
        "" => JobState::Running("pending".into()),
        other => JobState::Running(other.trim_start_matches("BATCH_STATE_").to_ascii_lowercase()),
    })
}

/// Asks Gemini to stop operation `name`.
pub(super) async fn cancel(http: &reqwest::Client, s: &EmbeddingSettings, name: &str) -> Result<(), ProviderError> {
    let url = format!("{}/{name}:cancel", base(s));
    exchange(
        s,
        authed(s, http.post(&url)).header("content-type", "application/json").body("{}"),
        "cancelling the batch",
    )
    .await
    .map(|_| ())
}

/// The inlined answers of an ended operation, wherever this version of the API put them.
fn inlined(op: &Value) -> Option<&Vec<Value>> {
    [&op["response"], &op["metadata"]["output"]].into_iter().find_map(|holder| {
        let r = &holder["inlinedResponses"];
        r["inlinedResponses"].as_array().or_else(|| r.as_array())
    })
}

/// The vectors of an ended operation of `count` texts, by position.
pub(super) async fn results(
    http: &reqwest::Client,
    s: &EmbeddingSettings,
    name: &str,
    _job: usize,
    count: usize,
) -> Result<Vec<Option<Vec<f32>>>, ProviderError> {
    let op = operation(http, s, name).await?;
    let mut out: Vec<Option<Vec<f32>>> = vec![None; count];
    let Some(items) = inlined(&op) else {
        if op["response"]["responsesFile"].is_string() {
            return Err(protocol(s, "the batch answered with a file, but clawline sent its requests inline"));
        }
        return Ok(out); // Nothing done (cancelled or expired early).
    };
    for (pos, item) in items.iter().enumerate() {
        let at = item["metadata"]["key"].as_str().and_then(|k| k.parse::<usize>().ok()).unwrap_or(pos);
        if at >= count {
            return Err(protocol(s, format!("the batch answered for request {at} of {count}")));
        }
        if item.get("error").is_some_and(|e| !e.is_null()) {
            continue;
        }
        out[at] = Some(floats(&s.provider, &item["response"]["embedding"]["values"])?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_found_where_either_version_puts_them() {
        let nested = json!({"response": {"inlinedResponses": {"inlinedResponses": [{"response": {"embedding": {"values": [1.0]}}}]}}});
        assert_eq!(inlined(&nested).map(Vec::len), Some(1));
        let flat = json!({"metadata": {"output": {"inlinedResponses": [{}, {}]}}});
        assert_eq!(inlined(&flat).map(Vec::len), Some(2));
        assert!(inlined(&json!({"done": true})).is_none());
    }

    #[test]
    fn the_job_names_model_task_and_keys() {
        let s = EmbeddingSettings {
            provider: "gemini".into(),
            api: super::super::EmbeddingApi::Gemini,
            base_url: "http://x/v1beta".into(),
            api_key: None,
            model: "models/gemini-embedding-001".into(),
            dimensions: None,
            headers: Vec::new(),
            timeout: std::time::Duration::from_secs(1),
            retries: 0,
        };
        let body = job_body(&s, 1, &["a".into(), "b".into()]);
        let reqs = body["batch"]["inputConfig"]["requests"]["requests"].as_array().unwrap();
        assert_eq!(reqs[1]["request"]["model"], "models/gemini-embedding-001");
        assert_eq!(reqs[1]["request"]["taskType"], "RETRIEVAL_DOCUMENT");
        assert_eq!(reqs[1]["metadata"]["key"], "1");
        assert_eq!(body["batch"]["displayName"], "clawline-memory-1");
    }
}
