//! Text embeddings over HTTP, for the memory index: OpenAI's `/v1/embeddings` and the APIs that
//! copy it (Mistral, Voyage, any OpenAI-compatible server), Gemini's `batchEmbedContents`, and
//! Ollama's `/api/embed`.
//!
//! [`EmbeddingClient::embed`] splits the texts into requests the API accepts (OpenAI 2048 inputs,
//! Voyage 1000, Gemini 100, Mistral and Ollama 64), puts the answers back in input order (by
//! `index` where the API gives one), retries rate limits after `Retry-After` and server errors
//! with backoff (twice), and classifies failures like the chat clients do. It does not check the
//! vectors' lengths; the index does that for every embedder alike.
//!
//! Dialects differ in small ways the wire modules keep: Voyage takes `input_type` and
//! `output_dimension`, Mistral refuses fields it does not know (so only `model` and `input` are
//! sent), Gemini takes `taskType` per item and authenticates with `x-goog-api-key`.
//! Large indexing runs can go through the providers' batch APIs instead ([`batch`]).
//! This file must not log keys or texts.

pub mod batch;
mod batch_files;
mod batch_gemini;
mod gemini;
mod ollama;
mod openai;

use std::time::Duration;

use clawline_core::secret::SecretString;

use crate::error::{ErrorKind, ProviderError};

/// Which wire format the embedding endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingApi {
    /// OpenAI and OpenAI-compatible servers.
    OpenAi,
    /// OpenAI's shape, with `input_type` and `output_dimension`.
    Voyage,
    /// OpenAI's shape, strict about fields.
    Mistral,
    Gemini,
    Ollama,
}

impl EmbeddingApi {
    /// The most texts one request may carry.
    pub fn max_batch(self) -> usize {
        match self {
            EmbeddingApi::OpenAi => 2048,
            EmbeddingApi::Voyage => 1000,
            EmbeddingApi::Gemini => 100,
            EmbeddingApi::Mistral | EmbeddingApi::Ollama => 64,
        }
    }
}

/// Where and how to embed.
#[derive(Debug, Clone)]
pub struct EmbeddingSettings {
    /// Provider id (`openai`, `gemini`, …), for messages and the cache key.
    pub provider: String,
    pub api: EmbeddingApi,
    /// E.g. `https://api.openai.com/v1`, `https://generativelanguage.googleapis.com/v1beta`,
    /// `http://127.0.0.1:11434`.
    pub base_url: String,
    pub api_key: Option<SecretString>,
    pub model: String,
    /// Ask for vectors of this length, where the API can shorten them.
    pub dimensions: Option<usize>,
    pub headers: Vec<(String, String)>,
    /// Bound on each request.
    pub timeout: Duration,
    /// Retries of rate limits and server errors.
    pub retries: u32,
}

/// An embedding endpoint.
#[derive(Debug, Clone)]
pub struct EmbeddingClient {
    pub settings: EmbeddingSettings,
    http: reqwest::Client,
}

impl EmbeddingClient {
    pub fn new(settings: EmbeddingSettings, http: reqwest::Client) -> Self {
        EmbeddingClient { settings, http }
    }

    /// One vector per text, in order. `query` marks a search query (some APIs embed queries
    /// differently from documents).
    pub async fn embed(&self, texts: &[String], query: bool) -> Result<Vec<Vec<f32>>, ProviderError> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.settings.api.max_batch()) {
            out.extend(self.with_retries(batch, query).await?);
        }
        Ok(out)
    }

    async fn with_retries(&self, batch: &[String], query: bool) -> Result<Vec<Vec<f32>>, ProviderError> {
        let mut attempt = 0;
        loop {
            let result = match self.settings.api {
                EmbeddingApi::Gemini => gemini::embed(&self.http, &self.settings, batch, query).await,
                EmbeddingApi::Ollama => ollama::embed(&self.http, &self.settings, batch).await,
                _ => openai::embed(&self.http, &self.settings, batch, query).await,
            };
            match result {
                Err(e) if attempt < self.settings.retries && retryable(&e) => {
                    let wait = e.retry_after.unwrap_or(Duration::from_millis(500 * 2u64.pow(attempt)));
                    tokio::time::sleep(wait.min(Duration::from_secs(30))).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

pub(crate) fn retryable(e: &ProviderError) -> bool {
    matches!(
        e.kind,
        ErrorKind::RateLimited | ErrorKind::Overloaded | ErrorKind::Server | ErrorKind::Timeout | ErrorKind::Network
    )
}

/// Sends a JSON request and reads a JSON answer of at most 64 MiB, classifying failures.
pub(crate) async fn post_json(
    s: &EmbeddingSettings,
    url: &str,
    mut builder: reqwest::RequestBuilder,
    body: &serde_json::Value,
) -> Result<serde_json::Value, ProviderError> {
    let key = s.api_key.as_ref().map(|k| k.expose());
    for (name, value) in &s.headers {
        builder = builder.header(name, value);
    }
    let resp = tokio::time::timeout(s.timeout, builder.json(body).send())
        .await
        .map_err(|_| {
            ProviderError::new(
                ErrorKind::Timeout,
                &s.provider,
                format!("no answer from {url} in {} s", s.timeout.as_secs()),
            )
        })?
        .map_err(|e| crate::http_util::transport_error(&s.provider, &e, key))?;
    let status = resp.status().as_u16();
    let after = crate::http_util::retry_after(resp.headers());
    if !(200..300).contains(&status) {
        let text = crate::http_util::read_error_body(resp).await;
        let mut err = classify(&s.provider, status, &text, key);
        err.retry_after = after;
        return Err(err);
    }
    let text = tokio::time::timeout(s.timeout, crate::http_util::read_body_limited(resp, 64 << 20))
        .await
        .map_err(|_| ProviderError::new(ErrorKind::Timeout, &s.provider, "the embedding answer stalled"))?
        .map_err(|e| match e {
            Some(e) => crate::http_util::transport_error(&s.provider, &e, key),
            None => ProviderError::new(ErrorKind::Protocol, &s.provider, "the embedding answer is over 64 MiB"),
        })?;
    serde_json::from_str(&text).map_err(|e| {
        ProviderError::new(ErrorKind::Protocol, &s.provider, format!("the embedding answer is not JSON: {e}"))
    })
}

/// The message inside any of the error bodies these APIs send.
fn error_message(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let pick = |v: &serde_json::Value| v.as_str().map(String::from);
    pick(&v["error"]["message"])
        .or_else(|| pick(&v["error"]))
        .or_else(|| pick(&v["detail"]))
        .or_else(|| pick(&v["message"]))
        .or_else(|| v["detail"].as_array().and_then(|a| a.first()).and_then(|d| pick(&d["msg"])))
}

/// An HTTP error status with its body → a classified error.
pub(crate) fn classify(provider: &str, status: u16, body: &str, key: Option<&str>) -> ProviderError {
    let message = error_message(body).unwrap_or_else(|| body.chars().take(300).collect());
    let quota = body.contains("insufficient_quota");
    let kind = match status {
        401 | 403 => ErrorKind::Auth,
        402 => ErrorKind::Billing,
        429 if quota => ErrorKind::Billing,
        429 => ErrorKind::RateLimited,
        503 | 529 => ErrorKind::Overloaded,
        500..=599 => ErrorKind::Server,
        _ => ErrorKind::BadRequest,
    };
    let mut e = ProviderError::new(kind, provider, crate::http_util::scrub(&format!("HTTP {status}: {message}"), key));
    e.status = Some(status);
    e
}

/// The vectors of an answer whose `embeddings` list is in input order (Gemini, Ollama): exactly
/// one per text, each found in its item by `vector`.
pub(crate) fn in_order(
    provider: &str,
    answer: &serde_json::Value,
    expected: usize,
    vector: impl Fn(&serde_json::Value) -> &serde_json::Value,
) -> Result<Vec<Vec<f32>>, ProviderError> {
    let list = answer["embeddings"]
        .as_array()
        .ok_or_else(|| ProviderError::new(ErrorKind::Protocol, provider, "the answer has no `embeddings` list"))?;
    if list.len() != expected {
        return Err(ProviderError::new(
            ErrorKind::Protocol,
            provider,
            format!("the answer has {} embeddings for {expected} texts", list.len()),
        ));
    }
    list.iter().map(|item| floats(provider, vector(item))).collect()
}

/// The float array at `v`, or why not.
pub(crate) fn floats(provider: &str, v: &serde_json::Value) -> Result<Vec<f32>, ProviderError> {
    let arr = v
        .as_array()
        .ok_or_else(|| ProviderError::new(ErrorKind::Protocol, provider, "an embedding is not an array of numbers"))?;
    arr.iter()
        .map(|x| {
            x.as_f64().map(|f| f as f32).ok_or_else(|| {
                ProviderError::new(ErrorKind::Protocol, provider, "an embedding holds something other than numbers")
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_shape_yields_its_message() {
        assert_eq!(error_message(r#"{"error":{"message":"bad key","type":"x"}}"#).as_deref(), Some("bad key"));
        assert_eq!(error_message(r#"{"error":"model not found"}"#).as_deref(), Some("model not found"));
        assert_eq!(error_message(r#"{"detail":"Unauthorized"}"#).as_deref(), Some("Unauthorized"));
        assert_eq!(
            error_message(r#"{"detail":[{"msg":"Extra inputs are not permitted"}]}"#).as_deref(),
            Some("Extra inputs are not permitted")
        );
        assert_eq!(
            error_message(r#"{"object":"error","message":"Too many tokens"}"#).as_deref(),
            Some("Too many tokens")
        );
        let e = classify("openai", 429, r#"{"error":{"message":"quota","code":"insufficient_quota"}}"#, None);
        assert_eq!(e.kind, ErrorKind::Billing);
        let e = classify("openai", 401, r#"{"error":{"message":"Incorrect API key sk-abcdef"}}"#, Some("sk-abcdef"));
        assert_eq!(e.kind, ErrorKind::Auth);
        assert!(!e.message.contains("sk-abcdef"));
    }
}
