//! Ollama's `POST {base}/api/embed`: `{"model", "input": [..], "dimensions"?}` →
//! `{"embeddings": [[..]]}` in input order. Errors are `{"error": "…"}` (a model that is not
//! pulled is a 404).

use serde_json::json;

use super::{EmbeddingSettings, in_order, post_json};
use crate::error::ProviderError;

pub(super) async fn embed(
    http: &reqwest::Client,
    s: &EmbeddingSettings,
    texts: &[String],
) -> Result<Vec<Vec<f32>>, ProviderError> {
    let base = s.base_url.trim_end_matches('/');
    let base = base.strip_suffix("/v1").unwrap_or(base);
    let url = format!("{base}/api/embed");
    let mut body = json!({"model": s.model, "input": texts});
    if let Some(d) = s.dimensions {
        body["dimensions"] = json!(d);
    }
    let mut builder = http.post(&url);
    if let Some(k) = &s.api_key {
        builder = builder.bearer_auth(k.expose());
    }
    let answer = post_json(s, &url, builder, &body).await?;
    in_order(&s.provider, &answer, texts.len(), |v| v)
}
