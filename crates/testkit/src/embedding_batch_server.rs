//! A twin of the embedding batch APIs: OpenAI's files + batches (and Voyage's copy, by
//! [`BatchDialect`]) under `/v1`, and Gemini's `asyncBatchEmbedContent` operations under
//! `/v1beta`. Vectors are [`vector_for`], so a batch and a direct call agree.
//!
//! What it enforces, with each API's own error bodies (OpenAI `{"error": {"message", "type"}}`,
//! Voyage `{"detail"}`, Gemini `{"error": {"code", "message", "status"}}`):
//!
//! - OpenAI and Voyage: `Authorization: Bearer <key>` (401 otherwise). `POST /v1/files` must be
//!   `multipart/form-data` with `purpose` = `batch` and a `file` part of JSONL, every line with a
//!   unique `custom_id` and a `body` whose `input` is a list of non-empty strings; OpenAI lines
//!   also need `"method": "POST"`, `"url": "/v1/embeddings"` and `body.model`, and a batch may
//!   carry at most 50,000 inputs. `POST /v1/batches` needs a known `input_file_id`, `endpoint`
//!   `/v1/embeddings` and `completion_window` `24h` (Voyage: `12h` and `request_params.model`).
//! - A batch moves `validating` → `in_progress` → `finalizing` → `completed`, one step per
//!   `GET /v1/batches/{id}` ([`BatchServer::set_polls`] changes the pace; [`BatchServer::stall`]
//!   keeps it running). Results are JSONL at `GET /v1/files/{output_file_id}/content`, **in
//!   reverse order**, so a client that trusts positions fails. Scripted outcomes:
//!   [`BatchServer::fail_requests`] (those requests go to the error file with status 500),
//!   [`BatchServer::expire`] (ends `expired` with only the first half done),
//!   [`BatchServer::fail_batch`] (ends `failed` with `errors`). `POST /v1/batches/{id}/cancel`
//!   moves it to `cancelling`, then `cancelled`. `DELETE /v1/files/{id}` deletes.
//! - Gemini: `x-goog-api-key` (403 `PERMISSION_DENIED` otherwise); `POST
//!   /v1beta/models/{model}:asyncBatchEmbedContent` with `batch.displayName` and
//!   `batch.inputConfig.requests.requests[]`, each `request.content.parts[].text` (and
//!   `request.model`, if given, naming the path's model). The operation goes
//!   `BATCH_STATE_PENDING` → `RUNNING` → `SUCCEEDED` per `GET /v1beta/batches/{id}`, then holds
//!   `response.inlinedResponses.inlinedResponses[]` in request order with each request's
//!   `metadata`; failed requests carry `error`. `POST /v1beta/batches/{id}:cancel` cancels.
//!
//! Every request is recorded (method and path).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{any, get, post};
use serde_json::{Value, json};

use crate::embeddings_server::vector_for;

/// Which files + batches API `/v1` imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchDialect {
    OpenAi,
    Voyage,
}

struct FileRec {
    bytes: Vec<u8>,
}

struct BatchRec {
    input_file_id: String,
    /// `(custom_id, texts)` per request line, in file order.
    requests: Vec<(String, Vec<String>)>,
    polls: usize,
    status: String,
    output_file_id: Option<String>,
    error_file_id: Option<String>,
    errors: Option<Value>,
}

struct GeminiOp {
    model: String,
    display_name: String,
    /// `(text, metadata)` per request.
    requests: Vec<(String, Value)>,
    polls: usize,
    state: String,
}

struct Inner {
    key: String,
    dialect: BatchDialect,
    dims: usize,
    files: HashMap<String, FileRec>,
    batches: HashMap<String, BatchRec>,
    ops: HashMap<String, GeminiOp>,
    next: usize,
    polls_to_finish: usize,
    stall: bool,
    fail_requests: usize,
    expire: bool,
    fail_batch: Option<String>,
    requests: Vec<(String, String)>,
    deleted: Vec<String>,
    cancelled: Vec<String>,
    texts: usize,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(s: &Shared) -> MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running twin.
pub struct BatchServer {
    addr: SocketAddr,
    inner: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BatchServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BatchServer {
    pub async fn start(key: &str, dialect: BatchDialect, dims: usize) -> BatchServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind batch server");
        let addr = listener.local_addr().expect("local addr");
        let inner = Arc::new(Mutex::new(Inner {
            key: key.into(),
            dialect,
            dims,
            files: HashMap::new(),
            batches: HashMap::new(),
            ops: HashMap::new(),
            next: 1,
            polls_to_finish: 3,
            stall: false,
            fail_requests: 0,
            expire: false,
            fail_batch: None,
            requests: Vec::new(),
            deleted: Vec::new(),
            cancelled: Vec::new(),
            texts: 0,
        }));
        let app = Router::new()
            .route("/v1/files", post(upload))
            .route("/v1/files/{id}", any(file))
            .route("/v1/files/{id}/content", get(content))
            .route("/v1/batches", post(create))
            .route("/v1/batches/{id}", get(read))
            .route("/v1/batches/{id}/cancel", post(cancel))
            .route("/v1beta/models/{action}", post(gemini_create))
            .route("/v1beta/batches/{action}", any(gemini_op))
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        BatchServer { addr, inner, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Polls a batch takes to finish (default 3).
    pub fn set_polls(&self, n: usize) {
        lock(&self.inner).polls_to_finish = n.max(1);
    }
    /// Batches never finish (until cancelled).
    pub fn stall(&self, on: bool) {
        lock(&self.inner).stall = on;
    }
    /// The first `n` requests of each batch fail.
    pub fn fail_requests(&self, n: usize) {
        lock(&self.inner).fail_requests = n;
    }
    /// Batches expire with half their requests done.
    pub fn expire(&self, on: bool) {
        lock(&self.inner).expire = on;
    }
    /// Batches fail as a whole with `message`.
    pub fn fail_batch(&self, message: Option<&str>) {
        lock(&self.inner).fail_batch = message.map(String::from);
    }
    /// `(method, path)` of every request.
    pub fn requests(&self) -> Vec<(String, String)> {
        lock(&self.inner).requests.clone()
    }
    /// Files deleted with `DELETE /v1/files/{id}`.
    pub fn deleted(&self) -> Vec<String> {
        lock(&self.inner).deleted.clone()
    }
    /// Batches cancelled.
    pub fn cancelled(&self) -> Vec<String> {
        lock(&self.inner).cancelled.clone()
    }
    /// Texts embedded by finished batches.
    pub fn texts_embedded(&self) -> usize {
        lock(&self.inner).texts
    }
    /// Files currently stored.
    pub fn files(&self) -> usize {
        lock(&self.inner).files.len()
    }
}

fn json_response(status: StatusCode, v: Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(v.to_string()))
        .unwrap_or_default()
}

fn refuse(g: &Inner, status: StatusCode, message: &str) -> Response {
    let body = match g.dialect {
        BatchDialect::OpenAi => {
            json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}})
        }
        BatchDialect::Voyage => json!({"detail": message}),
    };
    json_response(status, body)
}

fn gemini_refuse(status: StatusCode, message: &str) -> Response {
    let name = match status {
        StatusCode::FORBIDDEN => "PERMISSION_DENIED",
        StatusCode::NOT_FOUND => "NOT_FOUND",
        _ => "INVALID_ARGUMENT",
    };
    json_response(status, json!({"error": {"code": status.as_u16(), "message": message, "status": name}}))
}

fn record(inner: &Shared, method: &Method, uri: &Uri) {
    lock(inner).requests.push((method.to_string(), uri.path().to_string()));
}

/// Records a `/v1` request and checks its bearer key: the state, or the 401 to answer.
fn admitted<'a>(
    inner: &'a Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<MutexGuard<'a, Inner>, Box<Response>> {
    record(inner, method, uri);
    let g = lock(inner);
    if !bearer_ok(&g, headers) {
        return Err(Box::new(refuse(&g, StatusCode::UNAUTHORIZED, "Incorrect API key provided")));
    }
    Ok(g)
}

fn bearer_ok(g: &Inner, headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {}", g.key))
}

/// The parts of a multipart body: `(name, content)`.
fn parts(content_type: &str, body: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let boundary = content_type.strip_prefix("multipart/form-data")?.split("boundary=").nth(1)?.trim_matches('"');
    let delim = format!("--{boundary}");
    let text = body;
    let mut out = Vec::new();
    let mut rest = text.strip_prefix(delim.as_bytes())?;
    loop {
        if rest.starts_with(b"--") {
            return Some(out);
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let head_end = rest.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&rest[..head_end]).ok()?;
        let name = head.split("name=\"").nth(1)?.split('"').next()?.to_string();
        let after = &rest[head_end + 4..];
        let end_marker = format!("\r\n{delim}");
        let end = after.windows(end_marker.len()).position(|w| w == end_marker.as_bytes())?;
        out.push((name, after[..end].to_vec()));
        rest = &after[end + end_marker.len()..];
    }
}

async fn upload(State(inner): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let mut g = match admitted(&inner, &method, &uri, &headers) {
        Ok(g) => g,
        Err(refused) => return *refused,
    };
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let Some(parts) = parts(ct, &body) else {
        return refuse(&g, StatusCode::BAD_REQUEST, "the body must be multipart/form-data");
    };
    let field = |n: &str| parts.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    if field("purpose").as_deref() != Some(b"batch".as_slice()) {
        return refuse(&g, StatusCode::BAD_REQUEST, "purpose must be 'batch'");
    }
    let Some(file) = field("file") else { return refuse(&g, StatusCode::BAD_REQUEST, "a file is required") };
    let id = format!("file-{}", g.next);
    g.next += 1;
    let len = file.len();
    g.files.insert(id.clone(), FileRec { bytes: file });
    let created = match g.dialect {
        BatchDialect::OpenAi => json!(1_764_000_000),
        BatchDialect::Voyage => json!("2026-12-01T10:00:00.000000+00:00"),
    };
    json_response(
        StatusCode::OK,
        json!({"id": id, "object": "file", "bytes": len, "created_at": created, "filename": "clawline-memory.jsonl", "purpose": "batch"}),
    )
}

/// Checks the request lines of a file; `(custom_id, texts)` each, or why not.
fn lines(g: &Inner, bytes: &[u8]) -> Result<Vec<(String, Vec<String>)>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the file is not UTF-8".to_string())?;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut inputs = 0;
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("line {}: not JSON: {e}", n + 1))?;
        let id = v["custom_id"].as_str().ok_or_else(|| format!("line {}: custom_id is required", n + 1))?;
        if !seen.insert(id.to_string()) {
            return Err(format!("line {}: duplicate custom_id {id}", n + 1));
        }
        if g.dialect == BatchDialect::OpenAi {
            if v["method"] != "POST" || v["url"] != "/v1/embeddings" {
                return Err(format!("line {}: method must be POST and url /v1/embeddings", n + 1));
            }
            if !v["body"]["model"].is_string() {
                return Err(format!("line {}: body.model is required", n + 1));
            }
        }
        let input =
            v["body"]["input"].as_array().ok_or_else(|| format!("line {}: body.input must be a list", n + 1))?;
        let texts: Vec<String> =
            input.iter().filter_map(|t| t.as_str().filter(|t| !t.is_empty()).map(String::from)).collect();
        if texts.len() != input.len() || texts.is_empty() {
            return Err(format!("line {}: body.input must hold non-empty strings", n + 1));
        }
        inputs += texts.len();
        out.push((id.to_string(), texts));
    }
    let cap = if g.dialect == BatchDialect::OpenAi { 50_000 } else { 100_000 };
    if inputs > cap {
        return Err(format!("a batch may hold at most {cap} inputs, this one has {inputs}"));
    }
    Ok(out)
}

async fn create(State(inner): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let mut g = match admitted(&inner, &method, &uri, &headers) {
        Ok(g) => g,
        Err(refused) => return *refused,
    };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else { return refuse(&g, StatusCode::BAD_REQUEST, "not JSON") };
    let window = if g.dialect == BatchDialect::OpenAi { "24h" } else { "12h" };
    if v["endpoint"] != "/v1/embeddings" || v["completion_window"] != window {
        return refuse(
            &g,
            StatusCode::BAD_REQUEST,
            &format!("endpoint must be /v1/embeddings and completion_window {window}"),
        );
    }
    if g.dialect == BatchDialect::Voyage && !v["request_params"]["model"].is_string() {
        return refuse(&g, StatusCode::UNPROCESSABLE_ENTITY, "request_params.model is required");
    }
    let Some(file_id) = v["input_file_id"].as_str() else {
        return refuse(&g, StatusCode::BAD_REQUEST, "input_file_id is required");
    };
    let Some(file) = g.files.get(file_id) else { return refuse(&g, StatusCode::NOT_FOUND, "No such File object") };
    let requests = match lines(&g, &file.bytes) {
        Ok(r) => r,
        Err(e) => return refuse(&g, StatusCode::BAD_REQUEST, &e),
    };
    let id = format!("batch_{}", g.next);
    g.next += 1;
    g.batches.insert(
        id.clone(),
        BatchRec {
            input_file_id: file_id.into(),
            requests,
            polls: 0,
            status: "validating".into(),
            output_file_id: None,
            error_file_id: None,
            errors: None,
        },
    );
    json_response(StatusCode::OK, batch_json(&g, &id))
}

fn batch_json(g: &Inner, id: &str) -> Value {
    let Some(b) = g.batches.get(id) else { return Value::Null };
    let total = b.requests.len();
    let done = if b.status == "completed" { total.saturating_sub(g.fail_requests.min(total)) } else { 0 };
    json!({
        "id": id, "object": "batch", "endpoint": "/v1/embeddings", "input_file_id": b.input_file_id,
        "completion_window": if g.dialect == BatchDialect::OpenAi { "24h" } else { "12h" },
        "status": b.status, "output_file_id": b.output_file_id, "error_file_id": b.error_file_id,
        "errors": b.errors, "request_counts": {"total": total, "completed": done, "failed": total - done},
        "metadata": {"source": "clawline-memory"},
    })
}

/// Ends batch `id`: writes its output (reversed) and error files as scripted.
fn finish(g: &mut Inner, id: &str, status: &str) {
    let dims = g.dims;
    let (fail, expire) = (g.fail_requests, g.expire);
    let Some(b) = g.batches.get(id) else { return };
    let n = b.requests.len();
    let done_until = if expire || status == "cancelled" { n / 2 } else { n };
    let mut out = Vec::new();
    let mut errs = Vec::new();
    let mut texts = 0;
    for (i, (cid, inputs)) in b.requests.iter().enumerate() {
        if i < fail {
            errs.push(json!({"id": format!("batch_req_{i}"), "custom_id": cid, "response": {"status_code": 500, "request_id": "req_x", "body": {"error": {"message": "The server had an error"}}}, "error": null}));
        } else if i >= done_until {
            errs.push(json!({"id": format!("batch_req_{i}"), "custom_id": cid, "response": null, "error": {"code": "batch_expired", "message": "This request could not be executed before the completion window expired."}}));
        } else {
            let data: Vec<Value> = inputs
                .iter()
                .enumerate()
                .map(|(k, t)| json!({"object": "embedding", "index": k, "embedding": vector_for(t, dims)}))
                .collect();
            texts += inputs.len();
            out.push(json!({"id": format!("batch_req_{i}"), "custom_id": cid, "response": {"status_code": 200, "request_id": format!("req_{i}"), "body": {"object": "list", "data": data, "model": "twin"}}, "error": null}));
        }
    }
    out.reverse();
    let to_file = |lines: &[Value]| lines.iter().map(|l| l.to_string() + "\n").collect::<String>().into_bytes();
    let output = (!out.is_empty()).then(|| to_file(&out));
    let errors = (!errs.is_empty()).then(|| to_file(&errs));
    let mut ids = (None, None);
    if let Some(bytes) = output {
        let fid = format!("file-{}", g.next);
        g.next += 1;
        g.files.insert(fid.clone(), FileRec { bytes });
        ids.0 = Some(fid);
    }
    if let Some(bytes) = errors {
        let fid = format!("file-{}", g.next);
        g.next += 1;
        g.files.insert(fid.clone(), FileRec { bytes });
        ids.1 = Some(fid);
    }
    g.texts += texts;
    if let Some(b) = g.batches.get_mut(id) {
        b.status = status.into();
        b.output_file_id = ids.0;
        b.error_file_id = ids.1;
    }
}

async fn read(
    State(inner): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let mut g = match admitted(&inner, &method, &uri, &headers) {
        Ok(g) => g,
        Err(refused) => return *refused,
    };
    let (polls_to_finish, stall, fail_batch, expire) = (g.polls_to_finish, g.stall, g.fail_batch.clone(), g.expire);
    let Some(b) = g.batches.get_mut(&id) else { return refuse(&g, StatusCode::NOT_FOUND, "No such Batch object") };
    b.polls += 1;
    let polls = b.polls;
    match b.status.as_str() {
        "validating" | "in_progress" | "finalizing" => {
            if let Some(message) = fail_batch {
                b.status = "failed".into();
                b.errors = Some(
                    json!({"object": "list", "data": [{"code": "invalid_request", "message": message, "param": null, "line": 1}]}),
                );
            } else if stall {
                b.status = "in_progress".into();
            } else if polls >= polls_to_finish {
                let end = if expire { "expired" } else { "completed" };
                finish(&mut g, &id, end);
            } else {
                b.status = if polls + 1 >= polls_to_finish { "finalizing" } else { "in_progress" }.into();
            }
        }
        "cancelling" => finish(&mut g, &id, "cancelled"),
        _ => {}
    }
    json_response(StatusCode::OK, batch_json(&g, &id))
}

async fn cancel(
    State(inner): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let mut g = match admitted(&inner, &method, &uri, &headers) {
        Ok(g) => g,
        Err(refused) => return *refused,
    };
    let Some(b) = g.batches.get_mut(&id) else { return refuse(&g, StatusCode::NOT_FOUND, "No such Batch object") };
    if !matches!(b.status.as_str(), "validating" | "in_progress" | "finalizing") {
        let message = format!("Cannot cancel a batch with status {}", b.status);
        return refuse(&g, StatusCode::CONFLICT, &message);
    }
    b.status = "cancelling".into();
    g.cancelled.push(id.clone());
    json_response(StatusCode::OK, batch_json(&g, &id))
}

async fn content(
    State(inner): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let g = match admitted(&inner, &method, &uri, &headers) {
        Ok(g) => g,
        Err(refused) => return *refused,
    };
    match g.files.get(&id) {
        Some(f) => Response::builder().status(StatusCode::OK).body(Body::from(f.bytes.clone())).unwrap_or_default(),
        None => refuse(&g, StatusCode::NOT_FOUND, "No such File object"),
    }
}

async fn file(
    State(inner): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let mut g = match admitted(&inner, &method, &uri, &headers) {
        Ok(g) => g,
        Err(refused) => return *refused,
    };
    if method != Method::DELETE {
        return refuse(&g, StatusCode::METHOD_NOT_ALLOWED, "only DELETE is served here");
    }
    if g.files.remove(&id).is_none() {
        return refuse(&g, StatusCode::NOT_FOUND, "No such File object");
    }
    g.deleted.push(id.clone());
    json_response(StatusCode::OK, json!({"id": id, "object": "file", "deleted": true}))
}

fn gemini_key_ok(g: &Inner, headers: &HeaderMap) -> bool {
    headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()) == Some(g.key.as_str())
}

async fn gemini_create(
    State(inner): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(action): Path<String>,
    body: Bytes,
) -> Response {
    record(&inner, &method, &uri);
    let mut g = lock(&inner);
    if !gemini_key_ok(&g, &headers) {
        return gemini_refuse(StatusCode::FORBIDDEN, "Method doesn't allow unregistered callers");
    }
    let Some(model) = action.strip_suffix(":asyncBatchEmbedContent") else {
        return gemini_refuse(StatusCode::NOT_FOUND, "unknown method");
    };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return gemini_refuse(StatusCode::BAD_REQUEST, "Invalid JSON payload");
    };
    let batch = &v["batch"];
    let Some(display_name) = batch["displayName"].as_str() else {
        return gemini_refuse(StatusCode::BAD_REQUEST, "batch.display_name is required");
    };
    let Some(list) = batch["inputConfig"]["requests"]["requests"].as_array().filter(|l| !l.is_empty()) else {
        return gemini_refuse(StatusCode::BAD_REQUEST, "batch.input_config.requests is required");
    };
    let mut requests = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let req = &r["request"];
        if let Some(m) = req["model"].as_str()
            && m != format!("models/{model}")
        {
            return gemini_refuse(
                StatusCode::BAD_REQUEST,
                &format!("requests[{i}]: model {m} does not match the batch's models/{model}"),
            );
        }
        let text: String = req["content"]["parts"]
            .as_array()
            .map(|p| p.iter().filter_map(|p| p["text"].as_str()).collect())
            .unwrap_or_default();
        if text.is_empty() {
            return gemini_refuse(StatusCode::BAD_REQUEST, &format!("requests[{i}]: content.parts[].text is required"));
        }
        requests.push((text, r["metadata"].clone()));
    }
    let name = format!("batches/{}", g.next);
    g.next += 1;
    g.ops.insert(
        name.clone(),
        GeminiOp {
            model: model.into(),
            display_name: display_name.into(),
            requests,
            polls: 0,
            state: "BATCH_STATE_PENDING".into(),
        },
    );
    json_response(StatusCode::OK, op_json(&g, &name))
}

fn op_json(g: &Inner, name: &str) -> Value {
    let Some(op) = g.ops.get(name) else { return Value::Null };
    let mut meta = json!({
        "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.EmbedContentBatch",
        "model": format!("models/{}", op.model), "displayName": op.display_name, "state": op.state,
        "createTime": "2026-12-01T10:00:00Z", "updateTime": "2026-12-01T10:00:05Z",
    });
    let mut v = json!({"name": name, "metadata": Value::Null});
    let ended = matches!(op.state.as_str(), "BATCH_STATE_SUCCEEDED" | "BATCH_STATE_CANCELLED");
    if ended {
        let n = op.requests.len();
        let done_until = if op.state == "BATCH_STATE_CANCELLED" { n / 2 } else { n };
        let items: Vec<Value> = op
            .requests
            .iter()
            .enumerate()
            .map(|(i, (text, m))| {
                if i < g.fail_requests || i >= done_until {
                    json!({"metadata": m, "error": {"code": 13, "message": "Internal error"}})
                } else {
                    json!({"metadata": m, "response": {"embedding": {"values": vector_for(text, g.dims)}}})
                }
            })
            .collect();
        let failed = items.iter().filter(|i| i.get("error").is_some()).count();
        meta["batchStats"] = json!({"requestCount": n.to_string(), "successfulRequestCount": (n - failed).to_string(), "failedRequestCount": failed.to_string()});
        meta["output"] = json!({"inlinedResponses": {"inlinedResponses": items.clone()}});
        v["done"] = json!(true);
        v["response"] = json!({"@type": "type.googleapis.com/google.ai.generativelanguage.v1main.EmbedContentBatchOutput", "inlinedResponses": {"inlinedResponses": items}});
    }
    v["metadata"] = meta;
    v
}

async fn gemini_op(
    State(inner): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(action): Path<String>,
) -> Response {
    record(&inner, &method, &uri);
    let mut g = lock(&inner);
    if !gemini_key_ok(&g, &headers) {
        return gemini_refuse(StatusCode::FORBIDDEN, "Method doesn't allow unregistered callers");
    }
    let (polls_to_finish, stall, fail_requests) = (g.polls_to_finish, g.stall, g.fail_requests);
    if let Some(id) = action.strip_suffix(":cancel") {
        if method != Method::POST {
            return gemini_refuse(StatusCode::NOT_FOUND, "cancel is a POST");
        }
        let name = format!("batches/{id}");
        let Some(op) = g.ops.get_mut(&name) else { return gemini_refuse(StatusCode::NOT_FOUND, "batch not found") };
        op.state = "BATCH_STATE_CANCELLED".into();
        g.cancelled.push(name);
        return json_response(StatusCode::OK, json!({}));
    }
    if method != Method::GET {
        return gemini_refuse(StatusCode::NOT_FOUND, "unknown method");
    }
    let name = format!("batches/{action}");
    let Some(op) = g.ops.get_mut(&name) else { return gemini_refuse(StatusCode::NOT_FOUND, "batch not found") };
    op.polls += 1;
    if matches!(op.state.as_str(), "BATCH_STATE_PENDING" | "BATCH_STATE_RUNNING") {
        op.state =
            if !stall && op.polls >= polls_to_finish { "BATCH_STATE_SUCCEEDED" } else { "BATCH_STATE_RUNNING" }.into();
        if op.state == "BATCH_STATE_SUCCEEDED" {
            let done = op.requests.len().saturating_sub(fail_requests);
            g.texts += done;
        }
    }
    json_response(StatusCode::OK, op_json(&g, &name))
}
