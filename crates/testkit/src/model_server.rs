//! A scripted model server: a twin of the OpenAI Chat Completions and Anthropic Messages APIs.
//!
//! Start one per test with [`ModelServer::start`], queue [`Reply`]s, point clawline's provider
//! `baseUrl` at [`ModelServer::base_url`], then inspect [`ModelServer::requests`].
//!
//! Requests are validated as the real services validate them, and refused with the real error
//! bodies: a missing or wrong key is a 401 (`invalid_api_key` / `authentication_error`),
//! Anthropic requires `anthropic-version`, `max_tokens` and a user first message, both refuse
//! a tool call that is not answered by a tool result right after it (and a tool result that
//! answers nothing). Image parts must be what the references define: OpenAI `{"type":
//! "image_url", "image_url": {"url": "data:<mime>;base64,…" | "https://…"}}`, Anthropic
//! `{"type": "image", "source": {"type": "base64", "media_type", "data"}}` with `image/jpeg`,
//! `image/png`, `image/gif` or `image/webp`, decodable base64 whose bytes are that format.
//! Anthropic's `thinking: {type: "enabled", budget_tokens}` is checked (at least 1024, less than
//! `max_tokens`), as is the `signature` of a `thinking` block sent back in the history. A
//! request that passes gets the next queued reply; when the queue is empty the server answers
//! 500 with "testkit: no scripted reply left", so an unexpected extra model call fails the test
//! loudly.
//!
//! [`ModelServer::push_with`] adds [`ReplyExtras`] to a reply: exact usage with cache tokens
//! (OpenAI `prompt_tokens_details.cached_tokens`, Anthropic `cache_read_input_tokens` /
//! `cache_creation_input_tokens`) and a thinking block (Anthropic `thinking` block streamed as
//! `thinking_delta`s and a `signature_delta`; OpenAI-compatible `reasoning_content` deltas).

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};

/// Which wire API a server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    OpenAi,
    Anthropic,
}

/// A tool call to stream.
#[derive(Debug, Clone)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments text exactly as the model "writes" it (may be invalid JSON on purpose).
    pub arguments: String,
}

impl ToolCall {
    pub fn new(id: &str, name: &str, arguments: Value) -> Self {
        ToolCall { id: id.into(), name: name.into(), arguments: arguments.to_string() }
    }

    pub fn raw(id: &str, name: &str, arguments: &str) -> Self {
        ToolCall { id: id.into(), name: name.into(), arguments: arguments.into() }
    }
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Stream this text (split into a few chunks) and stop.
    Text(String),
    /// Stream these exact text chunks, waiting `delay` before each one.
    Chunks { chunks: Vec<String>, delay: Duration },
    /// Stream optional text, then these tool calls.
    Tools { text: Option<String>, calls: Vec<ToolCall> },
    /// Refuse with this HTTP status and the API's error body.
    Error { status: u16, kind: String, message: String, retry_after: Option<String> },
    /// Start a normal stream, then send an error event in the middle of it.
    StreamError { text: String, kind: String, message: String },
    /// Send this body verbatim as `text/event-stream` (malformed streams, recorded fixtures).
    Raw(String),
    /// Stream the first text chunk, then close the connection without finishing.
    Truncated(String),
    /// Answer "echo: <last user text>" (for load and browser tests).
    Echo,
    /// Like `Echo`, streamed in three pieces with this wait before each (for tests that need
    /// a run still going when they act, and a reply that names its question).
    SlowEcho(Duration),
}

impl Reply {
    pub fn text(t: &str) -> Reply {
        Reply::Text(t.into())
    }

    pub fn tool(id: &str, name: &str, arguments: Value) -> Reply {
        Reply::Tools { text: None, calls: vec![ToolCall::new(id, name, arguments)] }
    }

    pub fn error(status: u16, kind: &str, message: &str) -> Reply {
        Reply::Error { status, kind: kind.into(), message: message.into(), retry_after: None }
    }

    /// Slow text: `n` chunks of `piece`, `delay` apart.
    pub fn slow(piece: &str, n: usize, delay: Duration) -> Reply {
        Reply::Chunks { chunks: vec![piece.to_string(); n], delay }
    }

    /// What `SlowEcho` streams for a question: `echo: <text>` in three pieces.
    pub fn echo_chunks(last_user_text: &str) -> Vec<String> {
        split_text(&format!("echo: {last_user_text}"))
    }

    /// A recorded stream from `fixtures/<api>/<name>.sse`.
    pub fn fixture(api: Api, name: &str) -> Reply {
        let dir = match api {
            Api::OpenAi => "openai",
            Api::Anthropic => "anthropic",
        };
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(dir).join(format!("{name}.sse"));
        Reply::Raw(std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display())))
    }
}

/// Token counts a reply reports instead of the twin's estimate. `input` excludes cached tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub input: u64,
    pub output: u64,
    /// Prompt tokens read from the provider's cache.
    pub cache_read: u64,
    /// Prompt tokens written to the cache (Anthropic only; OpenAI has no such count).
    pub cache_write: u64,
}

/// What a reply can carry beyond its [`Reply`].
#[derive(Debug, Clone, Default)]
pub struct ReplyExtras {
    /// Usage to report: in `message_start` / `message_delta` (Anthropic) or the final usage
    /// chunk (OpenAI: `prompt_tokens` = input + cache reads, `prompt_tokens_details.cached_tokens`).
    pub usage: Option<TokenUsage>,
    /// A thinking block streamed before the answer: `(text, signature)`. Anthropic streams a
    /// `thinking` content block (`thinking_delta` pieces, then a `signature_delta`); OpenAI as
    /// `delta.reasoning_content` pieces, as compatible reasoning servers do (no signature).
    pub thinking: Option<(String, String)>,
}

impl ReplyExtras {
    pub fn usage(usage: TokenUsage) -> Self {
        ReplyExtras { usage: Some(usage), thinking: None }
    }

    pub fn thinking(text: &str, signature: &str) -> Self {
        ReplyExtras { usage: None, thinking: Some((text.into(), signature.into())) }
    }

    pub fn with_usage(mut self, usage: TokenUsage) -> Self {
        self.usage = Some(usage);
        self
    }
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub headers: Vec<(String, String)>,
    pub body: Value,
    /// Size of the raw body in bytes.
    pub size: usize,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

struct Inner {
    api: Api,
    key: Option<String>,
    replies: VecDeque<(Reply, ReplyExtras)>,
    fallback: Option<Reply>,
    requests: Vec<Recorded>,
    /// What `GET /v1/models` lists (OpenAI's `{"object":"list","data":[...]}` entries).
    models: Vec<Value>,
}

/// A running twin. Dropping it stops the server.
pub struct ModelServer {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ModelServer {
    /// Starts a server on 127.0.0.1 with a random port. `key` is the API key it accepts
    /// (`None`: it accepts requests without one, like a local llama.cpp server).
    pub async fn start(api: Api, key: Option<&str>) -> ModelServer {
        let inner = Arc::new(Mutex::new(Inner {
            api,
            key: key.map(String::from),
            replies: VecDeque::new(),
            fallback: None,
            requests: Vec::new(),
            models: Vec::new(),
        }));
        let app = Router::new()
            .route("/v1/chat/completions", post(handle))
            .route("/v1/messages", post(handle))
            .route("/v1/models", axum::routing::get(list_models))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind model server");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            // Without TCP_NODELAY a streamed answer's later chunks wait for the client's
            // delayed ACK (40 ms on Linux): a real API's edge does not do that to its callers.
            use axum::serve::ListenerExt;
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let _ = axum::serve(listener, app).await;
        });
        ModelServer { addr, inner, task }
    }

    /// The `baseUrl` to configure: `http://127.0.0.1:<port>/v1` for OpenAI,
    /// `http://127.0.0.1:<port>` for Anthropic.
    pub fn base_url(&self) -> String {
        match self.lock().api {
            Api::OpenAi => format!("http://{}/v1", self.addr),
            Api::Anthropic => format!("http://{}", self.addr),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a reply for the next accepted request.
    pub fn push(&self, reply: Reply) -> &Self {
        self.lock().replies.push_back((reply, ReplyExtras::default()));
        self
    }

    /// Queues a reply that also reports `extras` (cache tokens, a thinking block).
    pub fn push_with(&self, reply: Reply, extras: ReplyExtras) -> &Self {
        self.lock().replies.push_back((reply, extras));
        self
    }

    /// The reply used when the queue is empty.
    pub fn set_fallback(&self, reply: Reply) {
        self.lock().fallback = Some(reply);
    }

    /// Every request received so far (including refused ones).
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Sets what `GET /v1/models` answers: model entries such as `{"id": "m", "context_length": 8192}`.
    pub fn set_models(&self, models: Vec<Value>) {
        self.lock().models = models;
    }

    /// Replies not yet used.
    pub fn pending(&self) -> usize {
        self.lock().replies.len()
    }
}

/// `GET /v1/models`, OpenAI's list shape, behind the same key check as completions.
async fn list_models(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap) -> Response {
    let (key, models) = {
        let g = inner.lock().unwrap_or_else(|p| p.into_inner());
        (g.key.clone(), g.models.clone())
    };
    let got = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if let Some(expected) = key
        && got != Some(expected.as_str())
    {
        return error_response(Api::OpenAi, 401, "invalid_api_key", "Incorrect API key provided.", None);
    }
    let data: Vec<Value> = models
        .into_iter()
        .map(|mut m| {
            m["object"] = json!("model");
            m["owned_by"] = json!("testkit");
            m
        })
        .collect();
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(json!({"object": "list", "data": data}).to_string()))
        .unwrap_or_default()
}

fn error_response(api: Api, status: u16, kind: &str, message: &str, retry_after: Option<&str>) -> Response {
    let body = match api {
        Api::OpenAi => {
            let code = match kind {
                "invalid_api_key" => json!("invalid_api_key"),
                "rate_limit_exceeded" | "insufficient_quota" | "context_length_exceeded" => json!(kind),
                _ => Value::Null,
            };
            let etype = match kind {
                "invalid_api_key" | "context_length_exceeded" => "invalid_request_error",
                "rate_limit_exceeded" => "requests",
                other => other,
            };
            json!({"error": {"message": message, "type": etype, "param": null, "code": code}})
        }
        Api::Anthropic => {
            json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_testkit"})
        }
    };
    let mut b = Response::builder().status(status).header("content-type", "application/json");
    if let Some(after) = retry_after {
        b = b.header("retry-after", after);
    }
    b.body(Body::from(body.to_string())).unwrap_or_default()
}

/// Checks a request the way the real API does. `Err` is the refusal to send.
// The refusal is the HTTP response itself; it is built once per refused request.
#[allow(clippy::result_large_err)]
fn validate(api: Api, key: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Result<Value, Response> {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    match api {
        Api::OpenAi => {
            let got = h("authorization").and_then(|v| v.strip_prefix("Bearer "));
            if let Some(expected) = key {
                match got {
                    None => {
                        return Err(error_response(
                            api,
                            401,
                            "invalid_request_error",
                            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                            None,
                        ));
                    }
                    Some(k) if k != expected => {
                        return Err(error_response(api, 401, "invalid_api_key", "Incorrect API key provided.", None));
                    }
                    _ => {}
                }
            }
        }
        Api::Anthropic => {
            // OAuth access tokens come as a bearer token, accepted only with the OAuth beta flag.
            let bearer = h("authorization").and_then(|v| v.strip_prefix("Bearer "));
            if let Some(expected) = key {
                match (h("x-api-key"), bearer) {
                    (Some(k), _) if k == expected => {}
                    (None, Some(t)) if t == expected => {
                        if !h("anthropic-beta").is_some_and(|b| b.split(',').any(|f| f.trim() == "oauth-2025-04-20")) {
                            return Err(error_response(
                                api,
                                401,
                                "authentication_error",
                                "OAuth authentication is currently not supported.",
                                None,
                            ));
                        }
                    }
                    _ => return Err(error_response(api, 401, "authentication_error", "invalid x-api-key", None)),
                }
            }
            if h("anthropic-version").is_none() {
                return Err(error_response(
                    api,
                    400,
                    "invalid_request_error",
                    "anthropic-version: header is required",
                    None,
                ));
            }
        }
    }
    let bad = |m: String| error_response(api, 400, "invalid_request_error", &m, None);
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| bad(format!("We could not parse the JSON body of your request. ({e})")))?;
    if !v["model"].is_string() {
        return Err(bad("model: Field required".into()));
    }
    let Some(messages) = v["messages"].as_array().filter(|m| !m.is_empty()) else {
        return Err(bad("messages: at least one message is required".into()));
    };
    match api {
        Api::OpenAi => validate_openai(&v, messages).map_err(bad)?,
        Api::Anthropic => validate_anthropic(&v, messages).map_err(bad)?,
    }
    Ok(v)
}

fn validate_openai(v: &Value, messages: &[Value]) -> Result<(), String> {
    if v.get("stream_options").is_some() && v["stream"] != json!(true) {
        return Err("The 'stream_options' parameter is only allowed when 'stream' is enabled.".into());
    }
    if let Some(tools) = v.get("tools") {
        for (i, t) in tools.as_array().ok_or("tools: expected an array")?.iter().enumerate() {
            let name = t["function"]["name"].as_str().unwrap_or_default();
            let ok_name = !name.is_empty()
                && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if t["type"] != "function" || !ok_name || !t["function"]["parameters"].is_object() {
                return Err(format!(
                    "Invalid 'tools[{i}]': expected a function with a valid name and object parameters"
                ));
            }
        }
    }
    let mut open: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or_default();
        if role != "tool" && !open.is_empty() {
            return Err(format!(
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
                open.join(", ")
            ));
        }
        match role {
            "system" | "developer" | "user" => {
                if !(m["content"].is_string() || m["content"].is_array()) {
                    return Err(format!("Invalid 'messages[{i}].content': expected a string or an array"));
                }
                check_openai_parts(i, role, &m["content"])?;
            }
            "assistant" => {
                if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
                    for c in calls {
                        let args = c["function"]["arguments"]
                            .as_str()
                            .ok_or(format!("messages[{i}]: tool call arguments must be a string"))?;
                        let _ = args;
                        open.push(c["id"].as_str().unwrap_or_default().to_string());
                    }
                } else if m["content"].is_null() {
                    return Err(format!(
                        "Invalid 'messages[{i}]': assistant content is required unless tool_calls are given"
                    ));
                }
            }
            "tool" => {
                let id = m["tool_call_id"].as_str().unwrap_or_default();
                match open.iter().position(|o| o == id) {
                    Some(p) => {
                        open.remove(p);
                    }
                    None => {
                        return Err(format!(
                            "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls' (messages[{i}], tool_call_id {id})"
                        ));
                    }
                }
            }
            other => {
                return Err(format!(
                    "Invalid value: '{other}'. Supported values are: 'system', 'assistant', 'user', 'tool', and 'developer'."
                ));
            }
        }
    }
    if !open.is_empty() {
        return Err(format!(
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
            open.join(", ")
        ));
    }
    Ok(())
}

fn validate_anthropic(v: &Value, messages: &[Value]) -> Result<(), String> {
    if v["max_tokens"].as_u64().is_none_or(|n| n < 1) {
        return Err("max_tokens: Field required".into());
    }
    if let Some(s) = v.get("system")
        && !(s.is_string() || s.is_array())
    {
        return Err("system: Input should be a valid string or list".into());
    }
    if let Some(tools) = v.get("tools") {
        for (i, t) in tools.as_array().ok_or("tools: Input should be a valid list")?.iter().enumerate() {
            if !t["name"].is_string() || !t["input_schema"].is_object() {
                return Err(format!("tools.{i}: name and input_schema are required"));
            }
        }
    }
    if let Some(t) = v.get("thinking") {
        match t["type"].as_str() {
            Some("enabled") => {
                let budget = t["budget_tokens"].as_u64().ok_or("thinking.enabled.budget_tokens: Field required")?;
                if budget < 1024 {
                    return Err("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024".into());
                }
                if v["max_tokens"].as_u64().is_some_and(|max| budget >= max) {
                    return Err("`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size".into());
                }
            }
            Some("disabled" | "adaptive") => {}
            other => {
                return Err(format!(
                    "thinking: Input tag '{}' found using 'type' does not match any of the expected tags: 'disabled', 'enabled'",
                    other.unwrap_or_default()
                ));
            }
        }
    }
    if messages[0]["role"] != "user" {
        return Err("messages: first message must use the \"user\" role".into());
    }
    let mut pending: HashSet<String> = HashSet::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or_default();
        if role != "user" && role != "assistant" {
            return Err(format!("messages.{i}.role: Input should be 'user' or 'assistant'"));
        }
        let blocks: Vec<Value> = match &m["content"] {
            Value::String(s) => vec![json!({"type": "text", "text": s})],
            Value::Array(a) => a.clone(),
            _ => return Err(format!("messages.{i}.content: Input should be a valid string or list")),
        };
        check_anthropic_blocks(i, role, &blocks)?;
        if role == "user" {
            let answered: HashSet<String> = blocks
                .iter()
                .filter(|b| b["type"] == "tool_result")
                .map(|b| b["tool_use_id"].as_str().unwrap_or_default().to_string())
                .collect();
            if let Some(stray) = answered.iter().find(|id| !pending.contains(*id)) {
                return Err(format!(
                    "messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: {stray}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                ));
            }
            if let Some(missing) = pending.iter().find(|id| !answered.contains(*id)) {
                return Err(format!(
                    "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {missing}. Each `tool_use` block must have a corresponding `tool_result` block in the next message."
                ));
            }
            pending.clear();
        } else {
            if !pending.is_empty() {
                return Err(format!(
                    "messages.{i}: `tool_use` blocks must be followed by a user message with `tool_result` blocks"
                ));
            }
            for b in &blocks {
                if b["type"] == "tool_use" {
                    if !b["input"].is_object() {
                        return Err(format!("messages.{i}: tool_use.input: Input should be a valid dictionary"));
                    }
                    pending.insert(b["id"].as_str().unwrap_or_default().to_string());
                }
            }
        }
    }
    if !pending.is_empty() {
        return Err("messages: the final assistant message has `tool_use` blocks without results".into());
    }
    Ok(())
}

/// The image formats both APIs accept.
const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

/// The image format of `bytes`, from their signature.
fn sniff_image(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

fn decode_base64(data: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(data).ok()
}

/// Content parts of an OpenAI message (`text`; `image_url` in user messages).
fn check_openai_parts(i: usize, role: &str, content: &Value) -> Result<(), String> {
    let Some(parts) = content.as_array() else { return Ok(()) };
    for (j, p) in parts.iter().enumerate() {
        let path = format!("messages[{i}].content[{j}]");
        match p["type"].as_str().unwrap_or_default() {
            "text" => {
                if !p["text"].is_string() {
                    return Err(format!("Missing required parameter: '{path}.text'."));
                }
            }
            "image_url" if role == "user" => {
                let url = p["image_url"]["url"]
                    .as_str()
                    .ok_or_else(|| format!("Missing required parameter: '{path}.image_url.url'."))?;
                if let Some(detail) = p["image_url"].get("detail")
                    && !matches!(detail.as_str(), Some("auto" | "low" | "high"))
                {
                    return Err(format!(
                        "Invalid value: '{detail}'. Supported values are: 'auto', 'low', and 'high'. ('{path}.image_url.detail')"
                    ));
                }
                if url.starts_with("https://") || url.starts_with("http://") {
                    continue;
                }
                let expected = "Expected a base64-encoded data URL with an image MIME type (e.g. 'data:image/png;base64,aW1nIGJ5dGVzIGhlcmU=')";
                let Some((mime, data)) = url.strip_prefix("data:").and_then(|r| r.split_once(";base64,")) else {
                    return Err(format!(
                        "Invalid '{path}.image_url.url'. {expected}, but got a value with an invalid format."
                    ));
                };
                if !IMAGE_TYPES.contains(&mime) {
                    return Err(format!(
                        "Invalid '{path}.image_url.url'. {expected}, but got unsupported MIME type '{mime}'."
                    ));
                }
                let bytes = decode_base64(data).ok_or_else(|| {
                    format!("Invalid '{path}.image_url.url'. {expected}, but got an invalid base64 payload.")
                })?;
                if sniff_image(&bytes).is_none() {
                    return Err("You uploaded an unsupported image. Please make sure your image is valid.".into());
                }
            }
            "image_url" => {
                return Err(format!(
                    "Invalid '{path}.type': image_url content parts are only supported in user messages."
                ));
            }
            "input_audio" | "file" | "refusal" | "audio" => {}
            other => {
                return Err(format!(
                    "Invalid value: '{other}'. Supported values are: 'text', 'image_url', 'input_audio', 'refusal', 'audio', and 'file'. ('{path}.type')"
                ));
            }
        }
    }
    Ok(())
}

/// Content blocks of an Anthropic message: user `image` blocks and assistant `thinking` blocks.
fn check_anthropic_blocks(i: usize, role: &str, blocks: &[Value]) -> Result<(), String> {
    for (j, b) in blocks.iter().enumerate() {
        let path = format!("messages.{i}.content.{j}");
        match (role, b["type"].as_str().unwrap_or_default()) {
            ("user", "image") => {
                let src = &b["source"];
                match src["type"].as_str() {
                    Some("base64") => {
                        let media_type = src["media_type"].as_str().unwrap_or_default();
                        if !IMAGE_TYPES.contains(&media_type) {
                            return Err(format!(
                                "{path}.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
                            ));
                        }
                        let data = src["data"]
                            .as_str()
                            .ok_or_else(|| format!("{path}.image.source.base64.data: Field required"))?;
                        let bytes = decode_base64(data).ok_or_else(|| {
                            format!("{path}.image.source.base64.data: The image data is not valid base64")
                        })?;
                        if sniff_image(&bytes) != Some(media_type) {
                            return Err(format!(
                                "{path}.image.source.base64.data: Image does not match the provided media type {media_type}"
                            ));
                        }
                    }
                    Some("url") => {
                        if !src["url"].as_str().is_some_and(|u| u.starts_with("https://") || u.starts_with("http://")) {
                            return Err(format!("{path}.image.source.url.url: Field required"));
                        }
                    }
                    other => {
                        return Err(format!(
                            "{path}.image.source: Input tag '{}' found using 'type' does not match any of the expected tags: 'base64', 'url'",
                            other.unwrap_or_default()
                        ));
                    }
                }
            }
            ("assistant", "thinking") => {
                if !b["thinking"].is_string() {
                    return Err(format!("{path}.thinking.thinking: Field required"));
                }
                if b["signature"].as_str().is_none_or(str::is_empty) {
                    return Err(format!("{path}.thinking.signature: Field required"));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn last_user_text(api: Api, body: &Value) -> String {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    for m in messages.iter().rev() {
        if m["role"] != "user" {
            continue;
        }
        match &m["content"] {
            Value::String(s) => return s.clone(),
            Value::Array(blocks) => {
                let texts: Vec<&str> =
                    blocks.iter().filter(|b| b["type"] == "text").filter_map(|b| b["text"].as_str()).collect();
                if !texts.is_empty() || api == Api::OpenAi {
                    return texts.join("\n");
                }
            }
            _ => {}
        }
    }
    String::new()
}

fn split_text(t: &str) -> Vec<String> {
    // Three roughly equal pieces on character boundaries, so clients must join deltas.
    let chars: Vec<char> = t.chars().collect();
    if chars.len() < 3 {
        return vec![t.to_string()];
    }
    let n = chars.len();
    vec![chars[..n / 3].iter().collect(), chars[n / 3..2 * n / 3].iter().collect(), chars[2 * n / 3..].iter().collect()]
}

/// The events of one streamed answer in the API's format.
struct Stream {
    api: Api,
    model: String,
    prompt_tokens: u64,
    include_usage: bool,
    /// The index of the first text block (1 when a thinking block comes first).
    first: usize,
    usage: Option<TokenUsage>,
    thinking: Option<(String, String)>,
}

fn sse(data: &Value) -> String {
    format!("data: {data}\n\n")
}

fn sse_named(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

impl Stream {
    fn openai_chunk(&self, delta: Value, finish: Value) -> String {
        sse(&json!({
            "id": "chatcmpl-testkit", "object": "chat.completion.chunk", "created": 1_795_000_000u64,
            "model": self.model, "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
        }))
    }

    /// Header events (before any content), then the thinking block when there is one.
    fn open(&self) -> Vec<String> {
        let mut out = match self.api {
            Api::OpenAi => vec![self.openai_chunk(json!({"role": "assistant", "content": ""}), Value::Null)],
            Api::Anthropic => {
                let usage = match self.usage {
                    Some(u) => json!({"input_tokens": u.input, "cache_creation_input_tokens": u.cache_write,
                        "cache_read_input_tokens": u.cache_read, "output_tokens": 1}),
                    None => json!({"input_tokens": self.prompt_tokens, "output_tokens": 1}),
                };
                vec![
                    sse_named(
                        "message_start",
                        &json!({"type": "message_start", "message": {
                        "id": "msg_testkit", "type": "message", "role": "assistant", "content": [], "model": self.model,
                        "stop_reason": null, "stop_sequence": null, "usage": usage}}),
                    ),
                    sse_named("ping", &json!({"type": "ping"})),
                ]
            }
        };
        if let Some((text, signature)) = &self.thinking {
            out.extend(self.thinking_block(text, signature));
        }
        out
    }

    /// A thinking block at index 0.
    fn thinking_block(&self, text: &str, signature: &str) -> Vec<String> {
        let pieces = split_text(text);
        match self.api {
            Api::OpenAi => {
                pieces.iter().map(|p| self.openai_chunk(json!({"reasoning_content": p}), Value::Null)).collect()
            }
            Api::Anthropic => {
                let mut out = vec![sse_named(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
                )];
                for p in pieces {
                    out.push(sse_named(
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": p}}),
                    ));
                }
                out.push(sse_named(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": signature}}),
                ));
                out.push(sse_named("content_block_stop", &json!({"type": "content_block_stop", "index": 0})));
                out
            }
        }
    }

    fn text_start(&self, index: usize) -> Option<String> {
        (self.api == Api::Anthropic).then(|| {
            sse_named(
                "content_block_start",
                &json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
            )
        })
    }

    fn text_delta(&self, index: usize, piece: &str) -> String {
        match self.api {
            Api::OpenAi => self.openai_chunk(json!({"content": piece}), Value::Null),
            Api::Anthropic => sse_named(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}),
            ),
        }
    }

    fn block_stop(&self, index: usize) -> Option<String> {
        (self.api == Api::Anthropic)
            .then(|| sse_named("content_block_stop", &json!({"type": "content_block_stop", "index": index})))
    }

    fn tool_call(&self, index: usize, openai_index: usize, call: &ToolCall) -> Vec<String> {
        let pieces = split_text(&call.arguments);
        match self.api {
            Api::OpenAi => {
                let mut out = vec![self.openai_chunk(
                    json!({"tool_calls": [{"index": openai_index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}]}),
                    Value::Null,
                )];
                for p in pieces {
                    out.push(self.openai_chunk(
                        json!({"tool_calls": [{"index": openai_index, "function": {"arguments": p}}]}),
                        Value::Null,
                    ));
                }
                out
            }
            Api::Anthropic => {
                let mut out = vec![sse_named(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": index,
                    "content_block": {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}}),
                )];
                out.push(sse_named("content_block_delta", &json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": ""}})));
                for p in pieces {
                    out.push(sse_named("content_block_delta", &json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": p}})));
                }
                out.push(sse_named("content_block_stop", &json!({"type": "content_block_stop", "index": index})));
                out
            }
        }
    }

    fn close(&self, tool_use: bool, output_tokens: u64) -> Vec<String> {
        let output_tokens = self.usage.map_or(output_tokens, |u| u.output);
        match self.api {
            Api::OpenAi => {
                let mut out = vec![self.openai_chunk(json!({}), json!(if tool_use { "tool_calls" } else { "stop" }))];
                if self.include_usage {
                    let mut usage = json!({"prompt_tokens": self.prompt_tokens, "completion_tokens": output_tokens,
                        "total_tokens": self.prompt_tokens + output_tokens});
                    if let Some(u) = self.usage {
                        let prompt = u.input + u.cache_read;
                        usage = json!({"prompt_tokens": prompt, "completion_tokens": output_tokens,
                            "total_tokens": prompt + output_tokens,
                            "prompt_tokens_details": {"cached_tokens": u.cache_read, "audio_tokens": 0},
                            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}});
                    }
                    out.push(sse(&json!({
                        "id": "chatcmpl-testkit", "object": "chat.completion.chunk", "created": 1_795_000_000u64, "model": self.model,
                        "choices": [], "usage": usage
                    })));
                }
                out.push("data: [DONE]\n\n".to_string());
                out
            }
            Api::Anthropic => vec![
                sse_named(
                    "message_delta",
                    &json!({"type": "message_delta",
                    "delta": {"stop_reason": if tool_use { "tool_use" } else { "end_turn" }, "stop_sequence": null},
                    "usage": {"output_tokens": output_tokens}}),
                ),
                sse_named("message_stop", &json!({"type": "message_stop"})),
            ],
        }
    }

    fn error_event(&self, kind: &str, message: &str) -> String {
        match self.api {
            Api::OpenAi => sse(&json!({"error": {"message": message, "type": kind, "param": null, "code": null}})),
            Api::Anthropic => {
                sse_named("error", &json!({"type": "error", "error": {"type": kind, "message": message}}))
            }
        }
    }

    /// A complete text answer.
    fn text(&self, chunks: &[String]) -> Vec<String> {
        let mut out = self.open();
        out.extend(self.text_start(self.first));
        for c in chunks {
            out.push(self.text_delta(self.first, c));
        }
        out.extend(self.block_stop(self.first));
        let tokens = chunks.iter().map(|c| c.len() as u64 / 4 + 1).sum();
        out.extend(self.close(false, tokens));
        out
    }
}

fn stream_response(events: Vec<String>, delay: Duration) -> Response {
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
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_default()
}

/// A stream whose headers go out at once and whose text chunks each wait `delay`.
fn chunked_response(stream: &Stream, chunks: &[String], delay: Duration) -> Response {
    let mut events = stream.open();
    events.extend(stream.text_start(stream.first));
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let tail: Vec<String> = {
        let mut t = Vec::new();
        t.extend(stream.block_stop(stream.first));
        t.extend(stream.close(false, chunks.len() as u64));
        t
    };
    let deltas: Vec<String> = chunks.iter().map(|c| stream.text_delta(stream.first, c)).collect();
    tokio::spawn(async move {
        for e in events {
            if tx.send(Bytes::from(e)).await.is_err() {
                return;
            }
        }
        for d in deltas {
            tokio::time::sleep(delay).await;
            if tx.send(Bytes::from(d)).await.is_err() {
                return;
            }
        }
        for e in tail {
            if tx.send(Bytes::from(e)).await.is_err() {
                return;
            }
        }
    });
    let body =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx)) });
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(body))
        .unwrap_or_default()
}

async fn handle(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap, body: Bytes) -> Response {
    // Recording, checking and taking the reply happen under one lock, so requests get replies in
    // the order they were recorded.
    let (api, request, reply) = {
        let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
        g.requests.push(Recorded {
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string())).collect(),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            size: body.len(),
        });
        let request = match validate(g.api, g.key.as_deref(), &headers, &body) {
            Ok(v) => v,
            Err(resp) => return resp,
        };
        let reply = g.replies.pop_front().or_else(|| g.fallback.clone().map(|r| (r, ReplyExtras::default())));
        (g.api, request, reply)
    };
    let Some((reply, extras)) = reply else {
        return error_response(api, 500, "api_error", "testkit: no scripted reply left", None);
    };
    if request["stream"] != json!(true) {
        return error_response(
            api,
            400,
            "invalid_request_error",
            "testkit only serves streaming requests (stream: true)",
            None,
        );
    }
    let stream = Stream {
        api,
        model: request["model"].as_str().unwrap_or_default().to_string(),
        prompt_tokens: body.len() as u64 / 4,
        include_usage: request["stream_options"]["include_usage"] == json!(true),
        first: usize::from(extras.thinking.is_some()),
        usage: extras.usage,
        thinking: extras.thinking,
    };
    match reply {
        Reply::Text(t) => stream_response(stream.text(&split_text(&t)), Duration::ZERO),
        Reply::Echo => {
            let t = format!("echo: {}", last_user_text(api, &request));
            stream_response(stream.text(&split_text(&t)), Duration::ZERO)
        }
        Reply::Chunks { chunks, delay } => chunked_response(&stream, &chunks, delay),
        Reply::SlowEcho(delay) => chunked_response(&stream, &Reply::echo_chunks(&last_user_text(api, &request)), delay),
        Reply::Tools { text, calls } => {
            let mut events = stream.open();
            let mut index = stream.first;
            if let Some(t) = &text {
                events.extend(stream.text_start(stream.first));
                for p in split_text(t) {
                    events.push(stream.text_delta(stream.first, &p));
                }
                events.extend(stream.block_stop(stream.first));
                index = stream.first + 1;
            }
            for (i, call) in calls.iter().enumerate() {
                events.extend(stream.tool_call(index + i, i, call));
            }
            events.extend(stream.close(true, 20));
            stream_response(events, Duration::ZERO)
        }
        Reply::Error { status, kind, message, retry_after } => {
            error_response(api, status, &kind, &message, retry_after.as_deref())
        }
        Reply::StreamError { text, kind, message } => {
            let mut events = stream.open();
            events.extend(stream.text_start(stream.first));
            events.push(stream.text_delta(stream.first, &text));
            events.push(stream.error_event(&kind, &message));
            stream_response(events, Duration::ZERO)
        }
        Reply::Raw(body) => Response::builder()
            .status(200)
            .header("content-type", "text/event-stream")
            .body(Body::from(body))
            .unwrap_or_default(),
        Reply::Truncated(t) => {
            let mut events = stream.open();
            events.extend(stream.text_start(stream.first));
            events.push(stream.text_delta(stream.first, &t));
            stream_response(events, Duration::ZERO)
        }
    }
}
