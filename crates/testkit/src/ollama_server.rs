//! A scripted twin of Ollama's native API: `POST /api/chat` (NDJSON streaming), `GET /api/tags`
//! and `POST /api/show`.
//!
//! Follows Ollama's API reference (`docs/api.md`, `docs/openapi.yaml`, `docs/api/errors.mdx`,
//! `docs/capabilities/{tool-calling,thinking,streaming}.mdx` of github.com/ollama/ollama). Start
//! one per test with [`OllamaServer::start`], queue replies with [`OllamaServer::push`] (the
//! shared [`Reply`] vocabulary, or an [`OllamaReply`] for thinking, exact token counts and
//! `done_reason`), point the provider's `baseUrl` at [`OllamaServer::base_url`], then inspect
//! [`OllamaServer::requests`].
//!
//! Requests are checked the way the real server checks them and refused with its error bodies
//! (`{"error": "text"}`): a configured key must come as `Authorization: Bearer` (401
//! `unauthorized`, as ollama.com answers), the model must be one of the configured models (404
//! `model "x" not found, try pulling it first`), `content` must be a string, `images` bare
//! base64, tool-call `arguments` an object, tools are refused for a model without the `tools`
//! capability and `think` for one without `thinking`. Stricter than Ollama, so that clients get
//! the pairing right: every `tool` message must follow an assistant message with `tool_calls`
//! and name one of its unanswered calls in `tool_name`, and every call must be answered before
//! the conversation goes on. Answers are NDJSON chunks `{model, created_at, message, done:
//! false}` and a final `{done: true, done_reason, prompt_eval_count, eval_count, …}`; errors
//! after the stream started are an `{"error": …}` line. An empty queue answers 500 `testkit: no
//! scripted reply left`. It must not talk to anything but its own loopback socket.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};

use crate::model_server::{Recorded, Reply, ToolCall};

const CREATED_AT: &str = "2025-10-26T17:15:24.097767Z";

/// A model the twin serves, as `/api/tags` and `/api/show` describe it.
#[derive(Debug, Clone)]
pub struct OllamaModel {
    /// `name:tag`; a request for `name` matches `name:latest`.
    pub name: String,
    /// Also the architecture in `model_info` (`<family>.context_length`).
    pub family: String,
    pub parameter_size: String,
    /// `completion`, `tools`, `vision`, `thinking`, `embedding`.
    pub capabilities: Vec<String>,
    pub context_length: Option<u64>,
    /// `/api/show` answers 500 for this model.
    pub show_fails: bool,
}

impl OllamaModel {
    pub fn new(name: &str, capabilities: &[&str]) -> Self {
        OllamaModel {
            name: name.into(),
            family: "llama".into(),
            parameter_size: "8.0B".into(),
            capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
            context_length: Some(8192),
            show_fails: false,
        }
    }

    pub fn family(mut self, family: &str) -> Self {
        self.family = family.into();
        self
    }

    pub fn context(mut self, n: u64) -> Self {
        self.context_length = Some(n);
        self
    }

    pub fn failing_show(mut self) -> Self {
        self.show_fails = true;
        self
    }

    fn has(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }

    fn matches(&self, requested: &str) -> bool {
        self.name == requested || (!requested.contains(':') && self.name == format!("{requested}:latest"))
    }
}

/// The models [`OllamaServer::start`] serves: `twin-model` (every capability, 32k context) and
/// `plain-model` (completion only).
pub fn default_models() -> Vec<OllamaModel> {
    vec![
        OllamaModel::new("twin-model:latest", &["completion", "tools", "vision", "thinking"]).context(32768),
        OllamaModel::new("plain-model:latest", &["completion"]).family("gemma3").context(8192),
    ]
}

/// A scripted answer: one of the shared replies, or an answer only Ollama's format has.
#[derive(Debug, Clone)]
pub enum OllamaReply {
    Shared(Reply),
    /// Stream `thinking` pieces, then `text` pieces, then `calls`, ending with this `done_reason`
    /// and these counts (`prompt_eval_count` is left out when `None`, as Ollama does when the
    /// whole prompt came from its cache).
    Answer {
        thinking: Vec<String>,
        text: Vec<String>,
        calls: Vec<ToolCall>,
        done_reason: String,
        prompt_eval_count: Option<u64>,
        eval_count: u64,
    },
}

impl From<Reply> for OllamaReply {
    fn from(r: Reply) -> Self {
        OllamaReply::Shared(r)
    }
}

impl OllamaReply {
    /// Thinking, then an answer.
    pub fn thinking(thinking: &str, text: &str) -> Self {
        OllamaReply::Answer {
            thinking: split_text(thinking),
            text: split_text(text),
            calls: vec![],
            done_reason: "stop".into(),
            prompt_eval_count: Some(30),
            eval_count: 40,
        }
    }

    /// Text with exact usage counts.
    pub fn counted(text: &str, prompt_eval_count: u64, eval_count: u64) -> Self {
        OllamaReply::Answer {
            thinking: vec![],
            text: split_text(text),
            calls: vec![],
            done_reason: "stop".into(),
            prompt_eval_count: Some(prompt_eval_count),
            eval_count,
        }
    }

    /// Text cut off by `num_predict` (`done_reason: "length"`).
    pub fn length(text: &str) -> Self {
        OllamaReply::Answer {
            thinking: vec![],
            text: split_text(text),
            calls: vec![],
            done_reason: "length".into(),
            prompt_eval_count: Some(10),
            eval_count: 16,
        }
    }

    /// A recorded stream from `fixtures/ollama/<name>.ndjson`.
    pub fn fixture(name: &str) -> Reply {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join("ollama")
            .join(format!("{name}.ndjson"));
        Reply::Raw(std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display())))
    }
}

struct Inner {
    key: Option<String>,
    models: Vec<OllamaModel>,
    replies: VecDeque<OllamaReply>,
    fallback: Option<OllamaReply>,
    requests: Vec<Recorded>,
    discovery: Vec<(String, Recorded)>,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(inner: &Shared) -> std::sync::MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running twin. Dropping it stops the server.
pub struct OllamaServer {
    addr: SocketAddr,
    inner: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OllamaServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OllamaServer {
    /// Starts a server on 127.0.0.1 with a random port serving [`default_models`]. `key`: the
    /// bearer key it requires (`None`: no auth, like a local Ollama).
    pub async fn start(key: Option<&str>) -> OllamaServer {
        Self::start_with_models(key, default_models()).await
    }

    pub async fn start_with_models(key: Option<&str>, models: Vec<OllamaModel>) -> OllamaServer {
        let inner = Arc::new(Mutex::new(Inner {
            key: key.map(String::from),
            models,
            replies: VecDeque::new(),
            fallback: None,
            requests: Vec::new(),
            discovery: Vec::new(),
        }));
        let app = Router::new()
            .route("/", get(|| async { "Ollama is running" }))
            .route("/api/version", get(|| async { axum::Json(json!({"version": "0.12.6"})) }))
            .route("/api/chat", post(chat))
            .route("/api/tags", get(tags))
            .route("/api/show", post(show))
            .fallback(|| async { (StatusCode::NOT_FOUND, "404 page not found") })
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind ollama twin");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        OllamaServer { addr, inner, task }
    }

    /// The `baseUrl` to configure: the server root, `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues a reply for the next accepted `/api/chat` request.
    pub fn push(&self, reply: impl Into<OllamaReply>) -> &Self {
        lock(&self.inner).replies.push_back(reply.into());
        self
    }

    /// The reply used when the queue is empty.
    pub fn set_fallback(&self, reply: impl Into<OllamaReply>) {
        lock(&self.inner).fallback = Some(reply.into());
    }

    /// Replaces the served models.
    pub fn set_models(&self, models: Vec<OllamaModel>) {
        lock(&self.inner).models = models;
    }

    /// Every `/api/chat` request received so far (including refused ones).
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.inner).requests.clone()
    }

    /// Every `/api/tags` and `/api/show` request, with its path.
    pub fn discovery_requests(&self) -> Vec<(String, Recorded)> {
        lock(&self.inner).discovery.clone()
    }

    /// Replies not yet used.
    pub fn pending(&self) -> usize {
        lock(&self.inner).replies.len()
    }
}

fn record(headers: &HeaderMap, body: &[u8]) -> Recorded {
    Recorded {
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string())).collect(),
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
        size: body.len(),
    }
}

fn error(status: u16, message: &str, retry_after: Option<&str>) -> Response {
    let mut b = Response::builder().status(status).header("content-type", "application/json; charset=utf-8");
    if let Some(after) = retry_after {
        b = b.header("retry-after", after);
    }
    b.body(Body::from(json!({ "error": message }).to_string())).unwrap_or_default()
}

// The refusal is the HTTP response itself; it is built once per refused request.
#[allow(clippy::result_large_err)]
fn check_auth(key: Option<&str>, headers: &HeaderMap) -> Result<(), Response> {
    let Some(expected) = key else { return Ok(()) };
    let got = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if got == Some(expected) { Ok(()) } else { Err(error(401, "unauthorized", None)) }
}

fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check_images(i: usize, m: &Value) -> Result<(), String> {
    let Some(images) = m.get("images").filter(|v| !v.is_null()) else { return Ok(()) };
    let images = images.as_array().ok_or_else(|| {
        format!(
            "json: cannot unmarshal {} into Go struct field Message.messages.images of type []api.ImageData",
            go_type(images)
        )
    })?;
    for img in images {
        let s = img.as_str().ok_or_else(|| {
            format!(
                "json: cannot unmarshal {} into Go struct field Message.messages.images of type api.ImageData",
                go_type(img)
            )
        })?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| format!("illegal base64 data in messages[{i}].images: {e}"))?;
        if bytes.is_empty() {
            return Err(format!("messages[{i}].images: an image is empty"));
        }
    }
    Ok(())
}

/// Checks a chat request. `Err`: the status and message to refuse with.
fn validate(models: &[OllamaModel], v: &Value) -> Result<OllamaModel, (u16, String)> {
    let bad = |m: String| (400, m);
    let name = v.get("model").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        return Err(bad("model is required".into()));
    }
    let Some(model) = models.iter().find(|m| m.matches(name)).cloned() else {
        return Err((404, format!("model \"{name}\" not found, try pulling it first")));
    };
    if let Some(opts) = v.get("options").filter(|o| !o.is_null()) {
        if !opts.is_object() {
            return Err(bad(format!(
                "json: cannot unmarshal {} into Go struct field ChatRequest.options",
                go_type(opts)
            )));
        }
        if let Some(n) = opts.get("num_predict")
            && !n.is_i64()
        {
            return Err(bad("option \"num_predict\" must be of type integer".into()));
        }
    }
    if let Some(tools) = v.get("tools").filter(|t| !t.is_null()) {
        let tools =
            tools.as_array().ok_or("json: cannot unmarshal tools: expected an array".to_string()).map_err(bad)?;
        if !tools.is_empty() && !model.has("tools") {
            return Err(bad(format!("registry.ollama.ai/library/{} does not support tools", model.name)));
        }
        for (i, t) in tools.iter().enumerate() {
            let fname = t["function"]["name"].as_str().unwrap_or_default();
            if t["type"] != "function" || fname.is_empty() || !t["function"]["parameters"].is_object() {
                return Err(bad(format!(
                    "tools[{i}]: expected {{type: \"function\", function: {{name, parameters: {{…}}}}}}"
                )));
            }
        }
    }
    if let Some(think) = v.get("think")
        && (think == &json!(true) || think.is_string())
        && !model.has("thinking")
    {
        return Err(bad(format!("\"{}\" does not support thinking", model.name)));
    }
    let messages = match v.get("messages") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(other) => {
            return Err(bad(format!(
                "json: cannot unmarshal {} into Go struct field ChatRequest.messages of type []api.Message",
                go_type(other)
            )));
        }
    };
    // Tool names called by the last assistant message and not answered yet.
    let mut open: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        if let Some(c) = m.get("content").filter(|c| !c.is_null() && !c.is_string()) {
            return Err(bad(format!(
                "json: cannot unmarshal {} into Go struct field Message.messages.content of type string",
                go_type(c)
            )));
        }
        check_images(i, m).map_err(bad)?;
        if role != "tool" && !open.is_empty() {
            return Err(bad(format!(
                "messages[{i}]: the tool calls of the previous assistant message were not answered by tool messages: {}",
                open.join(", ")
            )));
        }
        match role {
            "system" | "user" => {}
            "assistant" => {
                if let Some(calls) = m.get("tool_calls").filter(|c| !c.is_null()) {
                    let calls =
                        calls.as_array().ok_or(format!("messages[{i}].tool_calls: expected an array")).map_err(bad)?;
                    for c in calls {
                        let fname = c["function"]["name"].as_str().unwrap_or_default();
                        if fname.is_empty() {
                            return Err(bad(format!("messages[{i}].tool_calls: function.name is required")));
                        }
                        let args = &c["function"]["arguments"];
                        if !(args.is_object() || args.is_null()) {
                            return Err(bad(format!(
                                "json: cannot unmarshal {} into Go struct field ToolCallFunction.messages.tool_calls.function.arguments of type api.ToolCallFunctionArguments",
                                go_type(args)
                            )));
                        }
                        open.push(fname.to_string());
                    }
                }
            }
            "tool" => {
                let tool_name = m.get("tool_name").and_then(Value::as_str).unwrap_or_default();
                if tool_name.is_empty() {
                    return Err(bad(format!(
                        "messages[{i}]: a tool message needs tool_name (the function it answers)"
                    )));
                }
                match open.iter().position(|o| o == tool_name) {
                    Some(p) => {
                        open.remove(p);
                    }
                    None => {
                        return Err(bad(format!(
                            "messages[{i}]: tool message for \"{tool_name}\" does not answer a tool call of the preceding assistant message"
                        )));
                    }
                }
            }
            other => return Err(bad(format!("messages[{i}]: invalid role \"{other}\""))),
        }
    }
    if !open.is_empty() {
        return Err(bad(format!("the last assistant message has unanswered tool calls: {}", open.join(", "))));
    }
    Ok(model)
}

fn split_text(t: &str) -> Vec<String> {
    // Three roughly equal pieces on character boundaries, so clients must join deltas.
    let chars: Vec<char> = t.chars().collect();
    if chars.len() < 3 {
        return if t.is_empty() { vec![] } else { vec![t.to_string()] };
    }
    let n = chars.len();
    vec![chars[..n / 3].iter().collect(), chars[n / 3..2 * n / 3].iter().collect(), chars[2 * n / 3..].iter().collect()]
}

fn line(v: &Value) -> String {
    format!("{v}\n")
}

struct Stream {
    model: String,
    prompt_tokens: u64,
}

impl Stream {
    fn chunk(&self, message: Value) -> String {
        line(&json!({"model": self.model, "created_at": CREATED_AT, "message": message, "done": false}))
    }

    fn text(&self, piece: &str) -> String {
        self.chunk(json!({"role": "assistant", "content": piece}))
    }

    fn thinking(&self, piece: &str) -> String {
        self.chunk(json!({"role": "assistant", "content": "", "thinking": piece}))
    }

    fn calls(&self, calls: &[ToolCall]) -> String {
        let calls: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                // Arguments are an object on the wire; text that is not an object is sent as a
                // string, the way a misbehaving proxy might.
                let arguments = serde_json::from_str::<Value>(&c.arguments)
                    .ok()
                    .filter(Value::is_object)
                    .unwrap_or_else(|| Value::String(c.arguments.clone()));
                let mut call = json!({"function": {"index": i, "name": c.name, "arguments": arguments}});
                if !c.id.is_empty() {
                    call["id"] = json!(c.id);
                }
                call
            })
            .collect();
        self.chunk(json!({"role": "assistant", "content": "", "tool_calls": calls}))
    }

    fn done(&self, reason: &str, prompt_eval_count: Option<u64>, eval_count: u64) -> String {
        let mut v = json!({
            "model": self.model, "created_at": CREATED_AT, "message": {"role": "assistant", "content": ""},
            "done": true, "done_reason": reason, "total_duration": 4_883_583_458u64, "load_duration": 1_334_875u64,
            "prompt_eval_duration": 342_546_000u64, "eval_count": eval_count, "eval_duration": 4_535_599_000u64,
        });
        if let Some(n) = prompt_eval_count {
            v["prompt_eval_count"] = json!(n);
        }
        line(&v)
    }

    fn tokens(pieces: &[String]) -> u64 {
        pieces.iter().map(|c| c.len() as u64 / 4 + 1).sum()
    }

    fn answer(&self, pieces: &[String]) -> Vec<String> {
        let mut out: Vec<String> = pieces.iter().map(|p| self.text(p)).collect();
        out.push(self.done("stop", Some(self.prompt_tokens), Self::tokens(pieces)));
        out
    }
}

fn ndjson_response(events: Vec<String>, delay: Duration) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        for e in events {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if tx.send(Bytes::from(e)).await.is_err() {
                return;
            }
        }
        // Dropping the sender ends the body, finished or not.
    });
    let body =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx)) });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/x-ndjson")
        .body(Body::from_stream(body))
        .unwrap_or_default()
}

fn last_user_text(body: &Value) -> String {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string()
}

async fn chat(State(inner): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let (key, models) = {
        let mut g = lock(&inner);
        g.requests.push(record(&headers, &body));
        (g.key.clone(), g.models.clone())
    };
    if let Err(resp) = check_auth(key.as_deref(), &headers) {
        return resp;
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(other) => {
            return error(
                400,
                &format!("json: cannot unmarshal {} into Go value of type api.ChatRequest", go_type(&other)),
                None,
            );
        }
        Err(e) => return error(400, &format!("invalid character in request body: {e}"), None),
    };
    let model = match validate(&models, &request) {
        Ok(m) => m,
        Err((status, message)) => return error(status, &message, None),
    };
    let stream = Stream { model: model.name.clone(), prompt_tokens: body.len() as u64 / 4 };
    // An empty conversation only loads the model.
    if request["messages"].as_array().is_none_or(|m| m.is_empty()) {
        return ndjson_response(vec![stream.done("load", None, 0)], Duration::ZERO);
    }
    if request.get("stream") == Some(&json!(false)) {
        return error(400, "testkit only serves streaming requests (stream: true)", None);
    }
    let reply = {
        let mut g = lock(&inner);
        g.replies.pop_front().or_else(|| g.fallback.clone())
    };
    let Some(reply) = reply else {
        return error(500, "testkit: no scripted reply left", None);
    };
    let reply = match reply {
        OllamaReply::Answer { thinking, text, calls, done_reason, prompt_eval_count, eval_count } => {
            let mut events: Vec<String> = thinking.iter().map(|t| stream.thinking(t)).collect();
            events.extend(text.iter().map(|t| stream.text(t)));
            if !calls.is_empty() {
                events.push(stream.calls(&calls));
            }
            events.push(stream.done(&done_reason, prompt_eval_count, eval_count));
            return ndjson_response(events, Duration::ZERO);
        }
        OllamaReply::Shared(r) => r,
    };
    match reply {
        Reply::Text(t) => ndjson_response(stream.answer(&split_text(&t)), Duration::ZERO),
        Reply::Echo => {
            let t = format!("echo: {}", last_user_text(&request));
            ndjson_response(stream.answer(&split_text(&t)), Duration::ZERO)
        }
        Reply::Chunks { chunks, delay } => ndjson_response(stream.answer(&chunks), delay),
        Reply::SlowEcho(delay) => ndjson_response(stream.answer(&Reply::echo_chunks(&last_user_text(&request))), delay),
        Reply::Tools { text, calls } => {
            let mut events: Vec<String> =
                text.as_deref().map(split_text).unwrap_or_default().iter().map(|p| stream.text(p)).collect();
            events.push(stream.calls(&calls));
            // Ollama reports "stop" for an answer made of tool calls.
            events.push(stream.done("stop", Some(stream.prompt_tokens), 20));
            ndjson_response(events, Duration::ZERO)
        }
        Reply::Error { status, message, retry_after, .. } => error(status, &message, retry_after.as_deref()),
        Reply::StreamError { text, message, .. } => {
            ndjson_response(vec![stream.text(&text), line(&json!({ "error": message }))], Duration::ZERO)
        }
        Reply::Raw(body) => Response::builder()
            .status(200)
            .header("content-type", "application/x-ndjson")
            .body(Body::from(body))
            .unwrap_or_default(),
        Reply::Truncated(t) => ndjson_response(vec![stream.text(&t)], Duration::ZERO),
    }
}

fn details(m: &OllamaModel) -> Value {
    json!({
        "parent_model": "", "format": "gguf", "family": m.family, "families": [m.family],
        "parameter_size": m.parameter_size, "quantization_level": "Q4_K_M"
    })
}

async fn tags(State(inner): State<Shared>, uri: Uri, headers: HeaderMap) -> Response {
    let (key, models) = {
        let mut g = lock(&inner);
        g.discovery.push((uri.path().to_string(), record(&headers, &[])));
        (g.key.clone(), g.models.clone())
    };
    if let Err(resp) = check_auth(key.as_deref(), &headers) {
        return resp;
    }
    let list: Vec<Value> = models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            json!({
                "name": m.name, "model": m.name, "modified_at": "2025-10-01T09:32:18.757212583-07:00",
                "size": 4_920_753_328u64 + i as u64, "digest": format!("{:064x}", i + 1), "details": details(m)
            })
        })
        .collect();
    axum::Json(json!({ "models": list })).into_response()
}

async fn show(State(inner): State<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let (key, models) = {
        let mut g = lock(&inner);
        g.discovery.push((uri.path().to_string(), record(&headers, &body)));
        (g.key.clone(), g.models.clone())
    };
    if let Err(resp) = check_auth(key.as_deref(), &headers) {
        return resp;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "invalid request body", None);
    };
    let name = v.get("model").or_else(|| v.get("name")).and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        return error(400, "model is required", None);
    }
    let Some(m) = models.iter().find(|m| m.matches(name)) else {
        return error(404, &format!("model '{name}' not found"), None);
    };
    if m.show_fails {
        return error(500, "testkit: /api/show failed for this model", None);
    }
    let mut info = json!({
        "general.architecture": m.family, "general.file_type": 15, "general.parameter_count": 8_030_261_248u64,
        "general.quantization_version": 2, format!("{}.embedding_length", m.family): 4096,
        format!("{}.block_count", m.family): 32,
    });
    if let Some(n) = m.context_length {
        info[format!("{}.context_length", m.family)] = json!(n);
    }
    axum::Json(json!({
        "license": "testkit license",
        "modelfile": format!("# Modelfile generated by \"ollama show\"\nFROM {}\n", m.name),
        "parameters": "stop                           \"<|eot_id|>\"",
        "template": "{{ .Prompt }}",
        "details": details(m),
        "model_info": info,
        "capabilities": m.capabilities,
        "modified_at": "2025-10-01T09:32:18.757212583-07:00",
    }))
    .into_response()
}
