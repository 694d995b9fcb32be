//! `POST {base}/embeddings` as OpenAI defines it, and as Voyage and Mistral copy it.
//!
//! Request `{"model", "input": [..]}` plus `dimensions` (OpenAI), or `input_type` and
//! `output_dimension` (Voyage); Mistral gets nothing else, since it refuses unknown fields.
//! Answer `{"data": [{"index", "embedding": [..]}], …}`; vectors are put back in order by
//! `index`, and an answer that leaves an input out is an error.

use serde_json::json;

use super::{EmbeddingApi, EmbeddingSettings, floats, post_json};
use crate::error::{ErrorKind, ProviderError};

pub(super) async fn embed(
    http: &reqwest::Client,
    s: &EmbeddingSettings,
    texts: &[String],
    query: bool,
) -> Result<Vec<Vec<f32>>, ProviderError> {
    let url = format!("{}/embeddings", s.base_url.trim_end_matches('/'));
    let mut body = json!({"model": s.model, "input": texts});
    match s.api {
        EmbeddingApi::Voyage => {
            body["input_type"] = json!(if query { "query" } else { "document" });
            if let Some(d) = s.dimensions {
                body["output_dimension"] = json!(d);
            }
        }
        EmbeddingApi::Mistral => {}
        _ => {
            if let Some(d) = s.dimensions {
                body["dimensions"] = json!(d);
            }
        }
    }
    let mut builder = http.post(&url);
    if let Some(k) = &s.api_key {
        builder = builder.bearer_auth(k.expose());
    }
    let answer = post_json(s, &url, builder, &body).await?;
    let data = answer["data"].as_array().ok_or_else(|| {
        ProviderError::new(ErrorKind::Protocol, &s.provider, "the embedding answer has no `data` list")
    })?;
    let mut out: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
    for (pos, item) in data.iter().enumerate() {
        let index = item["index"].as_u64().map_or(pos, |i| i as usize);
        let slot = out.get_mut(index).ok_or_else(|| {
            ProviderError::new(
                ErrorKind::Protocol,
                &s.provider,
                format!("the answer has index {index} for {} inputs", texts.len()),
            )
        })?;
        *slot = Some(floats(&s.provider, &item["embedding"])?);
    }
    out.into_iter()
        .enumerate()
        .map(|(i, v)| {
            v.ok_or_else(|| {
                ProviderError::new(ErrorKind::Protocol, &s.provider, format!("the answer has no vector for input {i}"))
            })
        })
        .collect()
}
