//! A twin of the embedding APIs clawline's memory uses, on one server: OpenAI's
//! `POST /v1/embeddings` (and, by [`Dialect`], Voyage's and Mistral's copies of it), Gemini's
//! `POST /v1beta/models/{model}:batchEmbedContents`, and Ollama's `POST /api/embed`.
//!
//! What it enforces, with each API's own error bodies:
//!
//! - OpenAI: `Authorization: Bearer <key>` (else 401 `{"error": {"message", "type":
//!   "invalid_request_error", "code": "invalid_api_key"}}`); `model`; `input` a string or 1–2048
//!   non-empty strings (else 400); `dimensions` ≥ 1 shortens vectors. The `data` list comes back
//!   **in reverse order**, each item with its `index`, so a client that trusts positions fails.
//! - Voyage: the same path and auth, at most 1000 inputs, `input_type` `query`/`document`,
//!   `output_dimension`; `dimensions` is refused; errors are `{"detail": "…"}`.
//! - Mistral: the same path and auth; any field but `model`, `input`, `encoding_format`,
//!   `output_dtype`, `output_dimension` is a 422 `{"detail": [{"msg": "Extra inputs are not
//!   permitted", …}]}`.
//! - Gemini: `x-goog-api-key` (else 403 `PERMISSION_DENIED`); 1–100 `requests`, each naming the
//!   path's model as `models/<m>` and giving `content.parts[].text` (else 400
//!   `INVALID_ARGUMENT`); `outputDimensionality` shortens. Answers `{"embeddings": [{"values"}]}`
//!   in request order.
//! - Ollama: no auth; `model` must be one of [`EmbeddingsServer::ollama_models`] (else 404
//!   `{"error": "model \"…\" not found, try pulling it first"}`); answers `{"model",
//!   "embeddings"}` in order.
//!
//! Vectors are [`vector_for`]: deterministic, unit length, and closer for texts sharing words.
//! Failures can be scripted ([`EmbeddingsServer::fail_next`]) and answers made wrong on purpose
//! ([`EmbeddingsServer::set_wrong_dims`]). Every request is recorded.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};

/// Which OpenAI-shaped API `/v1/embeddings` imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Voyage,
    Mistral,
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A scripted refusal.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: u16,
    pub retry_after: Option<String>,
}

struct Inner {
    key: Option<String>,
    dialect: Dialect,
    dims: usize,
    ollama_models: Vec<String>,
    failures: Vec<Failure>,
    wrong_dims: Option<usize>,
    requests: Vec<Recorded>,
    texts: usize,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(i: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    i.lock().unwrap_or_else(|p| p.into_inner())
}

/// Unit-length vectors of `dims` from hashed word counts (FNV-1a), signed so unrelated texts
/// are near orthogonal.
pub fn vector_for(text: &str, dims: usize) -> Vec<f32> {
    let mut v = vec![0f32; dims.max(1)];
    for w in text.split(|c: char| !c.is_alphanumeric()).filter(|w| w.chars().count() > 1) {
        let h = w
            .to_lowercase()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
        v[(h % dims.max(1) as u64) as usize] += sign;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// A running twin. Dropping it stops the server.
pub struct EmbeddingsServer {
    addr: SocketAddr,
    inner: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EmbeddingsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EmbeddingsServer {
    /// Starts a server requiring `key` (where the API has keys) with vectors of `dims`.
    pub async fn start(key: Option<&str>, dialect: Dialect, dims: usize) -> EmbeddingsServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind embeddings server");
        let addr = listener.local_addr().expect("local addr");
        let inner = Arc::new(Mutex::new(Inner {
            key: key.map(String::from),
            dialect,
            dims,
            ollama_models: vec!["all-minilm".into(), "nomic-embed-text".into()],
            failures: Vec::new(),
            wrong_dims: None,
            requests: Vec::new(),
            texts: 0,
        }));
        let app = Router::new()
            .route("/v1/embeddings", post(openai))
            .route("/v1beta/{*rest}", post(gemini))
            .route("/api/embed", post(ollama))
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        EmbeddingsServer { addr, inner, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.inner).requests.clone()
    }

    /// Texts embedded so far (refused requests not counted).
    pub fn texts_embedded(&self) -> usize {
        lock(&self.inner).texts
    }

    /// The next request is refused with `status` (and `Retry-After`).
    pub fn fail_next(&self, status: u16, retry_after: Option<&str>) {
        lock(&self.inner).failures.push(Failure { status, retry_after: retry_after.map(String::from) });
    }

    /// Answer vectors of `dims` whatever is asked (`None`: answer correctly).
    pub fn set_wrong_dims(&self, dims: Option<usize>) {
        lock(&self.inner).wrong_dims = dims;
    }

    /// The models Ollama "has pulled".
    pub fn ollama_models(&self, models: &[&str]) {
        lock(&self.inner).ollama_models = models.iter().map(|m| m.to_string()).collect();
    }
}

fn respond(status: u16, body: &Value, retry_after: Option<&str>) -> Response {
    let mut b = Response::builder().status(status).header("content-type", "application/json");
    if let Some(r) = retry_after {
        b = b.header("retry-after", r);
    }
    b.body(Body::from(body.to_string())).unwrap_or_default()
}

fn record(g: &mut Inner, uri: &Uri, headers: &HeaderMap, body: &Value) {
    g.requests.push(Recorded {
        path: uri.path().to_string(),
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string())).collect(),
        body: body.clone(),
    });
}

/// The scripted failure for this request, in the API's error shape.
fn scripted(g: &mut Inner, api: &str) -> Option<Response> {
    if g.failures.is_empty() {
        return None;
    }
    let f = g.failures.remove(0);
    let body = match api {
        "gemini" => {
            json!({"error": {"code": f.status, "message": "scripted failure", "status": if f.status == 429 { "RESOURCE_EXHAUSTED" } else { "UNAVAILABLE" }}})
        }
        "ollama" => json!({"error": "scripted failure"}),
        "voyage" => json!({"detail": "scripted failure"}),
        _ => {
            json!({"error": {"message": "scripted failure", "type": if f.status == 429 { "rate_limit_exceeded" } else { "server_error" }, "param": null, "code": null}})
        }
    };
    Some(respond(f.status, &body, f.retry_after.as_deref()))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
}

/// `input` as a list of texts, or why not.
fn inputs(v: &Value, max: usize) -> Result<Vec<String>, String> {
    let list: Vec<String> = match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map(String::from).ok_or("input items must be strings"))
            .collect::<Result<_, _>>()?,
        Value::Null => return Err("'input' is a required property".into()),
        _ => return Err("'input' must be a string or an array of strings".into()),
    };
    if list.is_empty() || list.len() > max {
        return Err(format!("'input' must hold 1 to {max} items, not {}", list.len()));
    }
    if list.iter().any(|t| t.is_empty()) {
        return Err("'input' cannot contain empty strings".into());
    }
    Ok(list)
}

async fn openai(State(inner): State<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut g = lock(&inner);
    record(&mut g, &uri, &headers, &v);
    let dialect = g.dialect;
    let bad = |m: &str| match dialect {
        Dialect::Voyage => json!({"detail": m}),
        Dialect::Mistral => {
            json!({"object": "error", "message": m, "type": "invalid_request_error", "param": null, "code": null})
        }
        Dialect::OpenAi => {
            json!({"error": {"message": m, "type": "invalid_request_error", "param": null, "code": null}})
        }
    };
    let max = if dialect == Dialect::Voyage { 1000 } else { 2048 };
    if g.key.is_some() && bearer(&headers) != g.key.as_deref() {
        let body = match dialect {
            Dialect::OpenAi => {
                json!({"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}})
            }
            _ => json!({"detail": "Unauthorized"}),
        };
        return respond(401, &body, None);
    }
    if let Some(r) = scripted(&mut g, if dialect == Dialect::Voyage { "voyage" } else { "openai" }) {
        return r;
    }
    let Some(obj) = v.as_object() else { return respond(400, &bad("the body must be a JSON object"), None) };
    if dialect == Dialect::Mistral {
        let allowed = ["model", "input", "encoding_format", "output_dtype", "output_dimension"];
        if let Some(extra) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
            return respond(
                422,
                &json!({"detail": [{"type": "extra_forbidden", "loc": ["body", extra], "msg": "Extra inputs are not permitted", "input": obj[extra]}]}),
                None,
            );
        }
    }
    if dialect == Dialect::Voyage && obj.contains_key("dimensions") {
        return respond(400, &bad("Unknown argument 'dimensions'; use 'output_dimension'"), None);
    }
    if dialect == Dialect::Voyage
        && let Some(t) = obj.get("input_type").filter(|t| !t.is_null())
        && t != "query"
        && t != "document"
    {
        return respond(400, &bad("input_type must be query, document or null"), None);
    }
    if !obj.get("model").is_some_and(Value::is_string) {
        return respond(400, &bad("'model' is a required property"), None);
    }
    let texts = match inputs(obj.get("input").unwrap_or(&Value::Null), max) {
        Ok(t) => t,
        Err(m) => return respond(400, &bad(&m), None),
    };
    let field = if dialect == Dialect::OpenAi { "dimensions" } else { "output_dimension" };
    let dims = match obj.get(field) {
        None | Some(Value::Null) => g.dims,
        Some(d) => match d.as_u64().filter(|d| *d >= 1) {
            Some(d) => d as usize,
            None => return respond(400, &bad(&format!("'{field}' must be a positive integer")), None),
        },
    };
    let dims = g.wrong_dims.unwrap_or(dims);
    g.texts += texts.len();
    let mut data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": vector_for(t, dims)}))
        .collect();
    data.reverse();
    let tokens: usize = texts.iter().map(|t| t.split_whitespace().count()).sum();
    respond(
        200,
        &json!({"object": "list", "data": data, "model": obj["model"], "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
        None,
    )
}

async fn gemini(State(inner): State<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut g = lock(&inner);
    record(&mut g, &uri, &headers, &v);
    let invalid =
        |m: &str| respond(400, &json!({"error": {"code": 400, "message": m, "status": "INVALID_ARGUMENT"}}), None);
    let key = headers.get("x-goog-api-key").and_then(|k| k.to_str().ok());
    if g.key.is_some() && key != g.key.as_deref() {
        return respond(
            403,
            &json!({"error": {"code": 403, "message": "Method doesn't allow unregistered callers. Please use an API key.", "status": "PERMISSION_DENIED"}}),
            None,
        );
    }
    if let Some(r) = scripted(&mut g, "gemini") {
        return r;
    }
    let Some(model) = uri.path().strip_prefix("/v1beta/models/").and_then(|r| r.strip_suffix(":batchEmbedContents"))
    else {
        return respond(404, &json!({"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}), None);
    };
    let Some(requests) = v["requests"].as_array() else { return invalid("requests is required") };
    if requests.is_empty() || requests.len() > 100 {
        return invalid(&format!(
            "BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch, got {}",
            requests.len()
        ));
    }
    let mut out = Vec::with_capacity(requests.len());
    for (i, r) in requests.iter().enumerate() {
        if r["model"].as_str() != Some(&format!("models/{model}")) {
            return invalid(&format!("requests[{i}].model must be models/{model}"));
        }
        let text: String = r["content"]["parts"]
            .as_array()
            .map(|p| p.iter().filter_map(|x| x["text"].as_str()).collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        if text.is_empty() {
            return invalid(&format!("requests[{i}].content must have a text part"));
        }
        let dims = r["outputDimensionality"].as_u64().map_or(g.dims, |d| d as usize);
        out.push(json!({"values": vector_for(&text, g.wrong_dims.unwrap_or(dims))}));
    }
    g.texts += out.len();
    respond(200, &json!({"embeddings": out}), None)
}

async fn ollama(State(inner): State<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut g = lock(&inner);
    record(&mut g, &uri, &headers, &v);
    if let Some(r) = scripted(&mut g, "ollama") {
        return r;
    }
    let Some(model) = v["model"].as_str() else { return respond(400, &json!({"error": "model is required"}), None) };
    let base = model.split(':').next().unwrap_or(model);
    if !g.ollama_models.iter().any(|m| m == base || m == model) {
        return respond(404, &json!({"error": format!("model \"{model}\" not found, try pulling it first")}), None);
    }
    let texts = match inputs(&v["input"], usize::MAX) {
        Ok(t) => t,
        Err(m) => return respond(400, &json!({"error": m}), None),
    };
    let dims = g.wrong_dims.unwrap_or_else(|| v["dimensions"].as_u64().map_or(g.dims, |d| d as usize));
    g.texts += texts.len();
    let embeddings: Vec<Vec<f32>> = texts.iter().map(|t| vector_for(t, dims)).collect();
    respond(
        200,
        &json!({"model": model, "embeddings": embeddings, "total_duration": 1000, "prompt_eval_count": texts.len()}),
        None,
    )
}
