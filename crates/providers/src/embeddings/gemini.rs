//! Gemini's `POST {base}/models/{model}:batchEmbedContents`.
//!
//! Request `{"requests": [{"model": "models/<m>", "content": {"parts": [{"text"}]}, "taskType",
//! "outputDimensionality"?}]}` (at most 100), key in `x-goog-api-key`. Answer `{"embeddings":
//! [{"values": [..]}]}` in request order; a count that does not match is an error. Gemini only
//! normalizes full-length vectors; the index normalizes every vector anyway.

use serde_json::json;

use super::{EmbeddingSettings, in_order, post_json};
use crate::error::ProviderError;

pub(super) async fn embed(
    http: &reqwest::Client,
    s: &EmbeddingSettings,
    texts: &[String],
    query: bool,
) -> Result<Vec<Vec<f32>>, ProviderError> {
    let model = s.model.strip_prefix("models/").unwrap_or(&s.model);
    let url = format!("{}/models/{model}:batchEmbedContents", s.base_url.trim_end_matches('/'));
    let task = if query { "RETRIEVAL_QUERY" } else { "RETRIEVAL_DOCUMENT" };
    let requests: Vec<serde_json::Value> = texts
        .iter()
        .map(|t| {
            let mut r =
                json!({"model": format!("models/{model}"), "content": {"parts": [{"text": t}]}, "taskType": task});
            if let Some(d) = s.dimensions {
                r["outputDimensionality"] = json!(d);
            }
            r
        })
        .collect();
    let mut builder = http.post(&url);
    if let Some(k) = &s.api_key {
        builder = builder.header("x-goog-api-key", k.expose());
    }
    let answer = post_json(s, &url, builder, &json!({"requests": requests})).await?;
    in_order(&s.provider, &answer, texts.len(), |e| &e["values"])
}
