//! The Ollama native wire API (`api: "ollama"`).
//!
//! Follows Ollama's API reference (`docs/api.md`, `docs/openapi.yaml`, and the capability pages
//! `docs/capabilities/{streaming,tool-calling,thinking,vision}.mdx`, `docs/api/{errors,usage,
//! authentication}.mdx` of github.com/ollama/ollama):
//!
//! - `POST {baseUrl}/api/chat` with `{model, messages, tools, stream: true, think, options:
//!   {num_predict}}`. `baseUrl` is the server root (default `http://127.0.0.1:11434`); a base URL
//!   that ends in `/v1` (the OpenAI-compatible surface) or `/api` is cut back to the root, so
//!   pasting either works.
//! - Messages are `{role: system|user|assistant|tool, content}`. User images go in `images` as
//!   bare base64 (no `data:` prefix); assistant turns carry `thinking` and `tool_calls:
//!   [{type: "function", function: {index, name, arguments: {…object…}}}]`; a tool result is
//!   `{role: "tool", tool_name, content}` (the documented field; Ollama matches results to calls
//!   by name and order, not by id).
//! - The answer is newline-delimited JSON (`application/x-ndjson`): objects `{model, created_at,
//!   message: {role, content, thinking, tool_calls}, done: false}`, then a final `{done: true,
//!   done_reason, prompt_eval_count, eval_count, …durations}`. Usage input is
//!   `prompt_eval_count`, output is `eval_count`; Ollama reports no cache tokens. Tool calls
//!   arrive whole in one object; ids are taken when the server sends one (newer servers may) and
//!   generated as `call_<n>` otherwise.
//! - Errors are an HTTP status with `{"error": "text"}` (400 bad request, 401/403 auth, 404 model
//!   not pulled, 429 from ollama.com or a proxy, 500, 502, 503 when the queue is full), or, once
//!   streaming has started, a line `{"error": "text"}` in the stream.
//! - The local server needs no auth; when an API key is configured (Ollama's hosted API at
//!   `https://ollama.com`) it is sent as `Authorization: Bearer`.
//! - Discovery: `GET /api/tags` lists the pulled models; `POST /api/show {model}` gives each
//!   one's `capabilities` (`completion`, `tools`, `vision`, `thinking`, `embedding`) and
//!   `model_info["<arch>.context_length"]`.
//!
//! It must not: read unbounded lines or bodies (a line over [`MAX_LINE`] is a protocol error),
//! wait forever (`timeoutSeconds` bounds the wait for the response and every silence in the
//! stream), accept a stream that ends without its `done: true` line, or put the API key in any
//! message. The context length reported by discovery is the model's trained maximum; Ollama
//! serves with its own `num_ctx` (often smaller), which clawline does not override.

use std::time::Duration;

use clawline_core::message::{AssistantMessage, ContentBlock, Message, StopReason, Usage, UserContent};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ErrorKind, ProviderError};
use crate::http_util::{parse_json, scrub, transport_error};
use crate::types::{DiscoveredModel, ModelRequest, StreamEvent};

pub const API: &str = "ollama";

/// Where a local Ollama listens when no `baseUrl` is configured.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:11434";

/// The longest NDJSON line accepted (1 MiB). Ollama's chunks are a few hundred bytes; a whole
/// tool call with large arguments still fits.
pub const MAX_LINE: usize = 1024 * 1024;

/// Discovery asks `/api/show` about at most this many models.
pub const MAX_DISCOVERED: usize = 50;

/// `/api/tags` and `/api/show` bodies are read up to this size.
const MAX_JSON_BODY: usize = 8 * 1024 * 1024;

/// `/api/show` calls made at once during discovery.
const SHOW_CONCURRENCY: usize = 4;

/// The server root for a configured base URL: empty → [`DEFAULT_BASE_URL`]; a trailing `/`,
/// `/v1` or `/api` is removed.
pub fn server_root(base_url: &str) -> String {
    let mut base = base_url.trim();
    if base.is_empty() {
        return DEFAULT_BASE_URL.to_string();
    }
    loop {
        let trimmed = base.trim_end_matches('/');
        let trimmed = trimmed.strip_suffix("/v1").or_else(|| trimmed.strip_suffix("/api")).unwrap_or(trimmed);
        if trimmed == base {
            break;
        }
        base = trimmed;
    }
    base.to_string()
}

/// The chat URL for a base URL.
pub fn endpoint(base_url: &str) -> String {
    format!("{}/api/chat", server_root(base_url))
}

fn images_of(blocks: &[ContentBlock]) -> Vec<Value> {
    blocks
        .iter()
        .filter_map(|b| match b {
            ContentBlock::Image { data, .. } => Some(Value::String(data.clone())),
            _ => None,
        })
        .collect()
}

/// Converts a conversation to the `messages` array.
pub fn wire_messages(system: &str, messages: &[Message]) -> Vec<Value> {
    let mut out = Vec::with_capacity(messages.len() + 1);
    if !system.is_empty() {
        out.push(json!({"role": "system", "content": system}));
    }
    for m in messages {
        match m {
            Message::User(u) => {
                let mut msg = json!({"role": "user", "content": u.content.text()});
                if let UserContent::Blocks(blocks) = &u.content {
                    let images = images_of(blocks);
                    if !images.is_empty() {
                        msg["images"] = Value::Array(images);
                    }
                }
                out.push(msg);
            }
            Message::Assistant(a) => {
                let text = a.text();
                let thinking: String = a
                    .content
                    .iter()
                    .filter_map(|b| match b {
                        ContentBlock::Thinking { thinking, .. } => Some(thinking.as_str()),
                        _ => None,
                    })
                    .collect();
                // Ollama wants the arguments as an object; text that was not JSON goes back empty.
                let calls: Vec<Value> = a
                    .tool_calls()
                    .enumerate()
                    .map(|(i, (_, name, args))| {
                        let arguments = if args.is_object() { args.clone() } else { json!({}) };
                        json!({"type": "function", "function": {"index": i, "name": name, "arguments": arguments}})
                    })
                    .collect();
                if text.is_empty() && calls.is_empty() && thinking.is_empty() {
                    continue;
                }
                let mut msg = json!({"role": "assistant", "content": text});
                if !thinking.is_empty() {
                    msg["thinking"] = Value::String(thinking);
                }
                if !calls.is_empty() {
                    msg["tool_calls"] = Value::Array(calls);
                }
                out.push(msg);
            }
            Message::ToolResult(r) => {
                let mut msg = json!({
                    "role": "tool",
                    "tool_name": r.tool_name,
                    "content": clawline_core::message::join_text(&r.content),
                });
                let images = images_of(&r.content);
                if !images.is_empty() {
                    msg["images"] = Value::Array(images);
                }
                out.push(msg);
            }
        }
    }
    out
}

/// The JSON request body.
pub fn request_body(req: &ModelRequest) -> Value {
    let mut body = json!({
        "model": req.model,
        "messages": wire_messages(&req.system, &req.messages),
        "stream": true,
    });
    // `num_predict` 0 would be read as "unset" by Ollama anyway; leave it out.
    if req.max_tokens > 0 {
        body["options"] = json!({"num_predict": req.max_tokens});
    }
    if !req.tools.is_empty() && req.compat.supports_tools != Some(false) {
        body["tools"] = Value::Array(
            req.tools
                .iter()
                .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
                .collect(),
        );
    }
    // Ollama's `think` is on/off (or a named level for some models); it takes no token budget.
    match req.thinking_budget {
        Some(0) => body["think"] = json!(false),
        Some(_) => body["think"] = json!(true),
        None => {}
    }
    body
}

fn is_context_error(message: &str) -> bool {
    let m = message.to_lowercase();
    m.contains("context length")
        || m.contains("context window")
        || m.contains("exceeds the context")
        || m.contains("context size")
        || m.contains("prompt is too long")
        || m.contains("too many tokens")
}

/// Classifies an error from its HTTP status (when there is one) and Ollama's message.
fn classify(status: Option<u16>, message: &str) -> ErrorKind {
    let m = message.to_lowercase();
    match status {
        Some(401 | 403) => ErrorKind::Auth,
        Some(429) => ErrorKind::RateLimited,
        Some(408) => ErrorKind::Timeout,
        _ if is_context_error(message) => ErrorKind::ContextLength,
        Some(503 | 529) => ErrorKind::Overloaded,
        Some(s) if s >= 500 => ErrorKind::Server,
        Some(_) => ErrorKind::BadRequest,
        None if m.contains("unauthorized") => ErrorKind::Auth,
        None if m.contains("rate limit") || m.contains("too many requests") => ErrorKind::RateLimited,
        None if m.contains("busy") || m.contains("overloaded") || m.contains("maximum pending") => {
            ErrorKind::Overloaded
        }
        None if m.contains("not found") || m.contains("invalid") || m.contains("does not support") => {
            ErrorKind::BadRequest
        }
        None => ErrorKind::Server,
    }
}

/// The text of an `{"error": …}` body: Ollama sends a string; proxies sometimes an object.
fn error_text(body: &str) -> String {
    let from_json = serde_json::from_str::<Value>(body).ok().and_then(|v| match v.get("error")? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => Some(
            o.get("message")
                .and_then(Value::as_str)
                .map(String::from)
                .unwrap_or_else(|| Value::Object(o.clone()).to_string()),
        ),
        other => Some(other.to_string()),
    });
    from_json.unwrap_or_else(|| clawline_core::text::truncate_chars(body.trim(), 300).0.to_string())
}

fn error_from(provider: &str, status: Option<u16>, body: &str, key: Option<&str>, model: &str) -> ProviderError {
    let message = error_text(body);
    let kind = classify(status, &message);
    let mut text = status.map(|s| format!("HTTP {s}")).unwrap_or_default();
    if !message.is_empty() {
        text.push_str(if text.is_empty() { "" } else { ": " });
        text.push_str(&message);
    }
    if status == Some(404) {
        if message.contains("model") && !model.is_empty() {
            text.push_str(&format!(" (run `ollama pull {model}` on the Ollama host)"));
        } else {
            text.push_str(" (is baseUrl the root of an Ollama server? clawline calls {baseUrl}/api/chat)");
        }
    }
    ProviderError { kind, provider: provider.to_string(), status, message: scrub(&text, key), retry_after: None }
}

fn protocol(provider: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::new(ErrorKind::Protocol, provider, message)
}

/// Why a byte stream could not be split into lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LineError {
    TooLong(usize),
    NotUtf8,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineError::TooLong(limit) => write!(f, "a line is longer than {limit} bytes"),
            LineError::NotUtf8 => write!(f, "a line is not valid UTF-8"),
        }
    }
}

/// Splits bytes as they arrive into NDJSON lines (`\n`, optionally preceded by `\r`), skipping
/// blank lines, never holding more than `limit` bytes of one line.
pub(crate) struct LineDecoder {
    line: Vec<u8>,
    limit: usize,
}

impl LineDecoder {
    pub(crate) fn new(limit: usize) -> Self {
        LineDecoder { line: Vec::new(), limit }
    }

    fn emit(&mut self, out: &mut Vec<String>) -> Result<(), LineError> {
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        out.push(String::from_utf8(line).map_err(|_| LineError::NotUtf8)?);
        Ok(())
    }

    /// Feeds bytes; appends every line they complete to `out`.
    pub(crate) fn push(&mut self, chunk: &[u8], out: &mut Vec<String>) -> Result<(), LineError> {
        let mut rest = chunk;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            if self.line.len() + pos > self.limit {
                return Err(LineError::TooLong(self.limit));
            }
            self.line.extend_from_slice(&rest[..pos]);
            self.emit(out)?;
            rest = &rest[pos + 1..];
        }
        if self.line.len() + rest.len() > self.limit {
            return Err(LineError::TooLong(self.limit));
        }
        self.line.extend_from_slice(rest);
        Ok(())
    }

    /// At end of stream: the last line when it lacked its newline.
    pub(crate) fn finish(&mut self) -> Result<Option<String>, LineError> {
        let mut out = Vec::new();
        self.emit(&mut out)?;
        Ok(out.pop())
    }
}

/// Reads NDJSON lines from a streaming response, failing with `Timeout` when no bytes arrive
/// for `idle`. `on_line` returns `Ok(true)` to stop (the `done` line was seen).
async fn read_ndjson(
    provider: &str,
    resp: reqwest::Response,
    idle: Duration,
    key: Option<&str>,
    mut on_line: impl FnMut(&str) -> Result<bool, ProviderError>,
) -> Result<(), ProviderError> {
    let mut stream = resp.bytes_stream();
    let mut decoder = LineDecoder::new(MAX_LINE);
    let mut lines = Vec::new();
    loop {
        let next = tokio::time::timeout(idle, stream.next()).await.map_err(|_| {
            ProviderError::new(ErrorKind::Timeout, provider, format!("no data from the model for {} s", idle.as_secs()))
        })?;
        let ended = match next {
            Some(Ok(chunk)) => {
                decoder
                    .push(&chunk, &mut lines)
                    .map_err(|e| protocol(provider, format!("malformed NDJSON stream: {e}")))?;
                false
            }
            Some(Err(e)) => return Err(transport_error(provider, &e, key)),
            None => {
                if let Some(last) =
                    decoder.finish().map_err(|e| protocol(provider, format!("malformed NDJSON stream: {e}")))?
                {
                    lines.push(last);
                }
                true
            }
        };
        for line in lines.drain(..) {
            if on_line(&line)? {
                return Ok(());
            }
        }
        if ended {
            return Ok(());
        }
    }
}

#[derive(Deserialize, Default)]
struct Chunk {
    #[serde(default)]
    message: Option<ChunkMessage>,
    #[serde(default)]
    done: Option<bool>,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
}

#[derive(Deserialize, Default)]
struct ChunkMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Deserialize)]
struct WireToolCall {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<WireFunction>,
}

#[derive(Deserialize)]
struct WireFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<Value>,
}

/// Accumulates a streamed answer.
#[derive(Default)]
pub(crate) struct Accumulator {
    text: String,
    thinking: String,
    calls: Vec<(String, String, Value)>,
    usage: Usage,
    done_reason: Option<String>,
    done: bool,
}

fn quoted(line: &str) -> String {
    let (shown, cut) = clawline_core::text::truncate_chars(line, 200);
    format!("{shown}{}", if cut { "…" } else { "" })
}

impl Accumulator {
    /// Applies one NDJSON line. Returns true at the `done: true` line.
    pub(crate) fn apply(
        &mut self,
        provider: &str,
        line: &str,
        key: Option<&str>,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<bool, ProviderError> {
        let v: Value = parse_json(provider, line)?;
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            let body = json!({ "error": err }).to_string();
            return Err(error_from(provider, None, &body, key, ""));
        }
        if !v.is_object() {
            return Err(protocol(provider, format!("malformed line from the model server: {}", quoted(line))));
        }
        let chunk: Chunk = serde_json::from_value(v)
            .map_err(|e| protocol(provider, format!("malformed line from the model server ({e}): {}", quoted(line))))?;
        let message = chunk.message.unwrap_or_default();
        if let Some(t) = message.thinking.filter(|t| !t.is_empty()) {
            self.thinking.push_str(&t);
            on_event(StreamEvent::ThinkingDelta(t));
        }
        if let Some(t) = message.content.filter(|t| !t.is_empty()) {
            self.text.push_str(&t);
            on_event(StreamEvent::TextDelta(t));
        }
        for call in message.tool_calls.unwrap_or_default() {
            let Some(function) = call.function else {
                return Err(protocol(provider, format!("a tool call without a function: {}", quoted(line))));
            };
            let name = function.name.unwrap_or_default();
            let id = call.id.filter(|s| !s.is_empty()).unwrap_or_else(|| format!("call_{}", self.calls.len()));
            let arguments = match function.arguments {
                None | Some(Value::Null) => json!({}),
                // Some proxies send the arguments as JSON text, as OpenAI does.
                Some(Value::String(s)) if s.trim().is_empty() => json!({}),
                Some(Value::String(s)) => serde_json::from_str::<Value>(&s).unwrap_or(Value::String(s)),
                Some(other) => other,
            };
            on_event(StreamEvent::ToolCallStarted { id: id.clone(), name: name.clone() });
            self.calls.push((id, name, arguments));
        }
        if chunk.done == Some(true) {
            self.usage.input = chunk.prompt_eval_count.unwrap_or(0);
            self.usage.output = chunk.eval_count.unwrap_or(0);
            self.usage.total_tokens = self.usage.input + self.usage.output;
            self.done_reason = chunk.done_reason;
            self.done = true;
            return Ok(true);
        }
        Ok(false)
    }

    /// The finished message, or a protocol error when the stream ended too early.
    pub(crate) fn finish(self, provider: &str, model: &str, now_ms: i64) -> Result<AssistantMessage, ProviderError> {
        if !self.done {
            return Err(protocol(provider, "the stream ended before the model finished (no line with \"done\": true)"));
        }
        let mut content = Vec::new();
        if !self.thinking.is_empty() {
            content.push(ContentBlock::Thinking { thinking: self.thinking, signature: None });
        }
        if !self.text.is_empty() {
            content.push(ContentBlock::Text { text: self.text });
        }
        let has_calls = !self.calls.is_empty();
        for (id, name, arguments) in self.calls {
            content.push(ContentBlock::ToolCall { id, name, arguments, thought_signature: None });
        }
        // Ollama says "stop" even when the answer is tool calls.
        let stop_reason = match self.done_reason.as_deref() {
            Some("length") => StopReason::Length,
            _ if has_calls => StopReason::ToolUse,
            _ => StopReason::Stop,
        };
        Ok(AssistantMessage {
            content,
            api: API.to_string(),
            provider: provider.to_string(),
            model: model.to_string(),
            usage: self.usage,
            stop_reason,
            timestamp: now_ms,
            response_id: None,
            error_message: None,
        })
    }
}

/// Ollama itself has no auth; its hosted service and proxies take a bearer key.
fn with_auth(
    mut builder: reqwest::RequestBuilder,
    settings: &clawline_core::config::ProviderSettings,
) -> reqwest::RequestBuilder {
    if let Some(k) = settings.api_key.as_ref().map(|k| k.expose()) {
        builder = builder.bearer_auth(k);
    }
    builder
}

/// Makes one streaming call.
pub(crate) async fn call(
    http: &reqwest::Client,
    settings: &clawline_core::config::ProviderSettings,
    req: &ModelRequest,
    on_event: &mut (dyn FnMut(StreamEvent) + Send),
) -> Result<AssistantMessage, ProviderError> {
    let provider = settings.id.as_str();
    let key = settings.api_key.as_ref().map(|k| k.expose());
    let builder = http
        .post(endpoint(&settings.base_url))
        .header(reqwest::header::ACCEPT, "application/x-ndjson")
        .json(&request_body(req))
        .headers(crate::http_util::trace_headers(req));
    let (resp, idle) =
        crate::http_util::send_model_request(with_auth(builder, settings), settings, key, |status, body| {
            error_from(provider, Some(status), body, key, &req.model)
        })
        .await?;
    let mut acc = Accumulator::default();
    read_ndjson(provider, resp, idle, key, |line| acc.apply(provider, line, key, on_event)).await?;
    let mut msg = acc.finish(provider, &req.model, crate::client::now_ms())?;
    crate::client::price(&mut msg.usage, &req.cost);
    Ok(msg)
}

/// Reads a whole JSON body of at most [`MAX_JSON_BODY`] bytes.
async fn read_json_body(provider: &str, resp: reqwest::Response, key: Option<&str>) -> Result<Value, ProviderError> {
    let text = crate::http_util::read_body_limited(resp, MAX_JSON_BODY).await.map_err(|e| match e {
        Some(err) => transport_error(provider, &err, key),
        None => protocol(provider, format!("the response is larger than {MAX_JSON_BODY} bytes")),
    })?;
    serde_json::from_str(&text)
        .map_err(|e| protocol(provider, format!("malformed JSON from the model server ({e}): {}", quoted(&text))))
}

/// One discovery request: `GET` when `body` is `None`, else `POST` with that JSON body.
async fn fetch_json(
    http: &reqwest::Client,
    settings: &clawline_core::config::ProviderSettings,
    url: &str,
    body: Option<&Value>,
    model: &str,
) -> Result<Value, ProviderError> {
    let provider = settings.id.as_str();
    let key = settings.api_key.as_ref().map(|k| k.expose());
    let builder = match body {
        Some(b) => http.post(url).json(b),
        None => http.get(url),
    };
    let (resp, idle) =
        crate::http_util::send_model_request(with_auth(builder, settings), settings, key, |status, body| {
            error_from(provider, Some(status), body, key, model)
        })
        .await?;
    tokio::time::timeout(idle, read_json_body(provider, resp, key)).await.map_err(|_| {
        ProviderError::new(ErrorKind::Timeout, provider, format!("the response did not finish in {} s", idle.as_secs()))
    })?
}

/// What `/api/show` says about one model.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ShowInfo {
    /// `None` for servers older than the `capabilities` field.
    capabilities: Option<Vec<String>>,
    context_length: Option<u64>,
    has_projector: bool,
}

pub(crate) fn parse_show(v: &Value) -> ShowInfo {
    let capabilities = v
        .get("capabilities")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect::<Vec<_>>());
    let info = v.get("model_info").and_then(Value::as_object);
    let context_length = info.and_then(|info| {
        let arch = info.get("general.architecture").and_then(Value::as_str);
        arch.and_then(|a| info.get(&format!("{a}.context_length")))
            .or_else(|| info.iter().find(|(k, _)| k.ends_with(".context_length")).map(|(_, v)| v))
            .and_then(|n| n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 1.0).map(|f| f as u64)))
    });
    let has_projector = v.get("projector_info").and_then(Value::as_object).is_some_and(|p| !p.is_empty());
    ShowInfo { capabilities, context_length, has_projector }
}

/// Builds the discovered model, or `None` for a model that cannot chat (embedding only).
pub(crate) fn discovered(id: &str, show: Option<&ShowInfo>) -> Option<DiscoveredModel> {
    let mut input = vec!["text".to_string()];
    let mut context_window = None;
    if let Some(show) = show {
        let vision = match &show.capabilities {
            Some(caps) => {
                if !caps.is_empty() && !caps.iter().any(|c| c == "completion") {
                    return None;
                }
                caps.iter().any(|c| c == "vision")
            }
            None => show.has_projector,
        };
        if vision {
            input.push("image".to_string());
        }
        context_window = show.context_length;
    }
    Some(DiscoveredModel { id: id.to_string(), name: None, context_window, input, streaming: true })
}

/// Lists the models the server has pulled, with what `/api/show` says about each (at most
/// [`MAX_DISCOVERED`]). A model whose `/api/show` fails is listed with unknown details.
pub(crate) async fn discover(
    http: &reqwest::Client,
    settings: &clawline_core::config::ProviderSettings,
) -> Result<Vec<DiscoveredModel>, ProviderError> {
    let provider = settings.id.as_str();
    let root = server_root(&settings.base_url);
    let tags = fetch_json(http, settings, &format!("{root}/api/tags"), None, "").await?;
    let Some(models) = tags.get("models").and_then(Value::as_array) else {
        return Err(protocol(
            provider,
            format!("GET /api/tags answered without a models list: {}", quoted(&tags.to_string())),
        ));
    };
    let mut ids: Vec<String> = Vec::new();
    for m in models {
        let id = m.get("model").or_else(|| m.get("name")).and_then(Value::as_str).unwrap_or_default();
        if !id.is_empty() && !ids.iter().any(|i| i == id) {
            ids.push(id.to_string());
        }
    }
    if ids.len() > MAX_DISCOVERED {
        tracing::warn!(
            provider,
            total = ids.len(),
            kept = MAX_DISCOVERED,
            "ollama lists more models than discovery reads"
        );
        ids.truncate(MAX_DISCOVERED);
    }
    let show_url = format!("{root}/api/show");
    let shows: Vec<Option<ShowInfo>> = futures_util::stream::iter(ids.iter())
        .map(|id| {
            let show_url = show_url.as_str();
            async move {
                match fetch_json(http, settings, show_url, Some(&json!({"model": id})), id).await {
                    Ok(v) => Some(parse_show(&v)),
                    Err(e) => {
                        tracing::warn!(provider, model = %id, error = %e, "ollama /api/show failed; details unknown");
                        None
                    }
                }
            }
        })
        .buffered(SHOW_CONCURRENCY)
        .collect()
        .await;
    Ok(ids.iter().zip(shows.iter()).filter_map(|(id, show)| discovered(id, show.as_ref())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawline_core::message::{ToolResultMessage, UserMessage};

    fn run(lines: &[&str]) -> Result<(AssistantMessage, Vec<StreamEvent>), ProviderError> {
        let mut acc = Accumulator::default();
        let mut seen = Vec::new();
        let mut sink = |e: StreamEvent| seen.push(e);
        for l in lines {
            if acc.apply("ollama", l, None, &mut sink)? {
                break;
            }
        }
        let msg = acc.finish("ollama", "llama3.2", 0)?;
        Ok((msg, seen))
    }

    #[test]
    fn assembles_thinking_text_and_tool_calls() {
        let (msg, seen) = run(&[
            r#"{"model":"qwen3","created_at":"2025-10-26T17:15:24.09Z","message":{"role":"assistant","content":"","thinking":"Count "},"done":false}"#,
            r#"{"model":"qwen3","created_at":"2025-10-26T17:15:24.10Z","message":{"role":"assistant","content":"","thinking":"the r's."},"done":false}"#,
            r#"{"model":"qwen3","created_at":"2025-10-26T17:15:24.11Z","message":{"role":"assistant","content":"Let me "},"done":false}"#,
            r#"{"model":"qwen3","created_at":"2025-10-26T17:15:24.12Z","message":{"role":"assistant","content":"check."},"done":false}"#,
            r#"{"model":"qwen3","created_at":"2025-10-26T17:15:24.13Z","message":{"role":"assistant","content":"","tool_calls":[{"function":{"index":0,"name":"read","arguments":{"path":"a.txt"}}},{"id":"call_srv","function":{"index":1,"name":"ls","arguments":"{not json"}}]},"done":false}"#,
            r#"{"model":"qwen3","created_at":"2025-10-26T17:15:24.14Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":1,"prompt_eval_count":26,"prompt_eval_duration":1,"eval_count":12,"eval_duration":1}"#,
        ])
        .unwrap();
        assert_eq!(msg.text(), "Let me check.");
        assert_eq!(msg.content[0], ContentBlock::Thinking { thinking: "Count the r's.".into(), signature: None });
        assert_eq!(msg.stop_reason, StopReason::ToolUse);
        let calls: Vec<_> = msg.tool_calls().collect();
        assert_eq!(calls[0], ("call_0", "read", &json!({"path": "a.txt"})));
        assert_eq!(calls[1], ("call_srv", "ls", &Value::String("{not json".into())));
        assert_eq!((msg.usage.input, msg.usage.output, msg.usage.total_tokens), (26, 12, 38));
        assert_eq!(msg.api, API);
        assert_eq!(seen[0], StreamEvent::ThinkingDelta("Count ".into()));
        assert_eq!(seen[2], StreamEvent::TextDelta("Let me ".into()));
        assert_eq!(seen[4], StreamEvent::ToolCallStarted { id: "call_0".into(), name: "read".into() });
        assert_eq!(seen[5], StreamEvent::ToolCallStarted { id: "call_srv".into(), name: "ls".into() });
    }

    #[test]
    fn length_truncation_errors_and_malformed_lines() {
        let (msg, _) = run(&[
            r#"{"message":{"role":"assistant","content":"Long"},"done":false}"#,
            r#"{"message":{"role":"assistant","content":""},"done":true,"done_reason":"length","eval_count":1}"#,
        ])
        .unwrap();
        assert_eq!(msg.stop_reason, StopReason::Length);
        assert_eq!(msg.usage.input, 0);

        let e = run(&[r#"{"message":{"role":"assistant","content":"Hel"},"done":false}"#]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Protocol);
        assert!(e.message.contains("done"), "{}", e.message);

        let e = run(&[r#"{"message":{"content":"x"},"done":fal"#]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Protocol);
        assert!(e.message.contains("malformed event") && e.message.contains(r#""done":fal"#), "{}", e.message);

        let e = run(&[r#"{"message":{"content":5},"done":false}"#]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Protocol);
        assert!(e.message.contains("malformed line"), "{}", e.message);

        let e = run(&[
            r#"{"message":{"role":"assistant","content":"I"},"done":false}"#,
            r#"{"error":"an error was encountered while running the model"}"#,
        ])
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Server);
        assert_eq!(e.message, "an error was encountered while running the model");
        let e = run(&[r#"{"error":"server busy, please try again.  maximum pending requests exceeded"}"#]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Overloaded);
    }

    #[test]
    fn classifies_http_errors() {
        let e = error_from(
            "o",
            Some(404),
            r#"{"error":"model \"llama9\" not found, try pulling it first"}"#,
            None,
            "llama9",
        );
        assert_eq!(e.kind, ErrorKind::BadRequest);
        assert_eq!(
            e.message,
            "HTTP 404: model \"llama9\" not found, try pulling it first (run `ollama pull llama9` on the Ollama host)"
        );
        let e = error_from("o", Some(404), "404 page not found", None, "m");
        assert!(e.message.contains("baseUrl"), "{}", e.message);
        let e = error_from("o", Some(401), r#"{"error":"unauthorized key sk-secret-1"}"#, Some("sk-secret-1"), "m");
        assert_eq!((e.kind, e.message.as_str()), (ErrorKind::Auth, "HTTP 401: unauthorized key [redacted]"));
        assert_eq!(
            error_from("o", Some(429), r#"{"error":"too many requests"}"#, None, "m").kind,
            ErrorKind::RateLimited
        );
        assert_eq!(
            error_from("o", Some(500), r#"{"error":"llama runner process has terminated"}"#, None, "m").kind,
            ErrorKind::Server
        );
        assert_eq!(error_from("o", Some(503), r#"{"error":"server busy"}"#, None, "m").kind, ErrorKind::Overloaded);
        assert_eq!(error_from("o", Some(502), "<html>bad gateway</html>", None, "m").kind, ErrorKind::Server);
        let ctx = r#"{"error":"the input length exceeds the context length"}"#;
        assert_eq!(error_from("o", Some(400), ctx, None, "m").kind, ErrorKind::ContextLength);
        assert_eq!(error_from("o", Some(400), r#"{"error":"invalid role"}"#, None, "m").kind, ErrorKind::BadRequest);
        assert_eq!(
            error_from("o", Some(400), r#"{"error":{"message":"proxy says no"}}"#, None, "m").message,
            "HTTP 400: proxy says no"
        );
    }

    #[test]
    fn request_body_follows_the_reference() {
        let req = ModelRequest {
            model: "llama3.2".into(),
            system: "be brief".into(),
            messages: vec![
                Message::User(UserMessage {
                    content: UserContent::Blocks(vec![
                        ContentBlock::Text { text: "what is this?".into() },
                        ContentBlock::Image { data: "iVBORw0KGgo=".into(), mime_type: "image/png".into() },
                    ]),
                    timestamp: 0,
                    idempotency_key: None,
                }),
                Message::Assistant(AssistantMessage {
                    content: vec![
                        ContentBlock::Thinking { thinking: "hmm".into(), signature: None },
                        ContentBlock::ToolCall {
                            id: "c1".into(),
                            name: "ls".into(),
                            arguments: json!({"path": "."}),
                            thought_signature: None,
                        },
                        ContentBlock::ToolCall {
                            id: "c2".into(),
                            name: "cat".into(),
                            arguments: json!("{bad"),
                            thought_signature: None,
                        },
                    ],
                    api: API.into(),
                    provider: "p".into(),
                    model: "llama3.2".into(),
                    usage: Usage::default(),
                    stop_reason: StopReason::ToolUse,
                    timestamp: 0,
                    response_id: None,
                    error_message: None,
                }),
                Message::ToolResult(ToolResultMessage {
                    tool_call_id: "c1".into(),
                    tool_name: "ls".into(),
                    content: vec![ContentBlock::Text { text: "a.txt".into() }],
                    is_error: false,
                    timestamp: 0,
                }),
            ],
            tools: vec![crate::ToolSpec {
                name: "ls".into(),
                description: "list".into(),
                parameters: json!({"type": "object"}),
            }],
            max_tokens: 100,
            thinking_budget: Some(2048),
            ..Default::default()
        };
        let body = request_body(&req);
        assert_eq!(body["messages"][0], json!({"role": "system", "content": "be brief"}));
        assert_eq!(
            body["messages"][1],
            json!({"role": "user", "content": "what is this?", "images": ["iVBORw0KGgo="]})
        );
        assert_eq!(
            body["messages"][2],
            json!({"role": "assistant", "content": "", "thinking": "hmm", "tool_calls": [
                {"type": "function", "function": {"index": 0, "name": "ls", "arguments": {"path": "."}}},
                {"type": "function", "function": {"index": 1, "name": "cat", "arguments": {}}},
            ]})
        );
        assert_eq!(body["messages"][3], json!({"role": "tool", "tool_name": "ls", "content": "a.txt"}));
        assert_eq!(body["stream"], true);
        assert_eq!(body["think"], true);
        assert_eq!(body["options"], json!({"num_predict": 100}));
        assert_eq!(
            body["tools"][0],
            json!({"type": "function", "function": {"name": "ls", "description": "list", "parameters": {"type": "object"}}})
        );
        let plain = request_body(&ModelRequest { model: "m".into(), ..Default::default() });
        assert!(plain.get("think").is_none() && plain.get("options").is_none() && plain.get("tools").is_none());
    }

    #[test]
    fn base_urls_are_cut_back_to_the_root() {
        assert_eq!(endpoint(""), "http://127.0.0.1:11434/api/chat");
        assert_eq!(endpoint("http://gpu:11434/"), "http://gpu:11434/api/chat");
        assert_eq!(endpoint("http://gpu:11434/v1"), "http://gpu:11434/api/chat");
        assert_eq!(endpoint("https://ollama.com/api/"), "https://ollama.com/api/chat");
        assert_eq!(server_root("http://h/proxy/v1/"), "http://h/proxy");
    }

    #[test]
    fn line_decoder_splits_bounds_and_flushes() {
        let mut d = LineDecoder::new(16);
        let mut out = Vec::new();
        d.push(b"{\"a\":1}\r\n\n{\"b\"", &mut out).unwrap();
        d.push(b":2}\n{\"c\":3}", &mut out).unwrap();
        assert_eq!(out, vec!["{\"a\":1}", "{\"b\":2}"]);
        assert_eq!(d.finish().unwrap().as_deref(), Some("{\"c\":3}"));
        assert_eq!(d.finish().unwrap(), None);
        let mut d = LineDecoder::new(16);
        assert_eq!(d.push(&[b'x'; 10], &mut out), Ok(()));
        assert_eq!(d.push(&[b'x'; 10], &mut out), Err(LineError::TooLong(16)));
        let mut d = LineDecoder::new(16);
        assert_eq!(d.push(b"\xff\xfe\n", &mut out), Err(LineError::NotUtf8));
    }

    #[test]
    fn show_answers_become_discovered_models() {
        let show = parse_show(&json!({
            "capabilities": ["completion", "vision", "tools"],
            "model_info": {"general.architecture": "gemma3", "gemma3.context_length": 131072, "other.context_length": 5},
        }));
        assert_eq!(show.context_length, Some(131072));
        let m = discovered("gemma3:4b", Some(&show)).unwrap();
        assert_eq!(m.input, vec!["text", "image"]);
        assert_eq!(m.context_window, Some(131072));
        let embed = parse_show(&json!({"capabilities": ["embedding"], "model_info": {"bert.context_length": 512}}));
        assert_eq!(discovered("all-minilm", Some(&embed)), None);
        let old = parse_show(
            &json!({"projector_info": {"clip.has_vision_encoder": true}, "model_info": {"llama.context_length": 4096}}),
        );
        assert_eq!(discovered("llava", Some(&old)).unwrap().input, vec!["text", "image"]);
        assert_eq!(old.context_length, Some(4096));
        let unknown = discovered("x", None).unwrap();
        assert_eq!((unknown.input, unknown.context_window, unknown.streaming), (vec!["text".to_string()], None, true));
    }

    mod properties {
        use super::super::{Accumulator, LineDecoder};
        use proptest::prelude::*;

        fn ollama_json() -> impl Strategy<Value = serde_json::Value> {
            let key = prop_oneof![
                Just("message".to_string()),
                Just("content".to_string()),
                Just("thinking".to_string()),
                Just("tool_calls".to_string()),
                Just("function".to_string()),
                Just("arguments".to_string()),
                Just("name".to_string()),
                Just("id".to_string()),
                Just("done".to_string()),
                Just("done_reason".to_string()),
                Just("prompt_eval_count".to_string()),
                Just("eval_count".to_string()),
                Just("error".to_string()),
                "[a-z_]{1,8}",
            ];
            let leaf = prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::Bool),
                any::<i64>().prop_map(serde_json::Value::from),
                any::<u64>().prop_map(serde_json::Value::from),
                "\\PC{0,12}".prop_map(serde_json::Value::String),
            ];
            leaf.prop_recursive(4, 40, 6, move |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                    prop::collection::btree_map(key.clone(), inner, 0..6)
                        .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #[test]
            fn arbitrary_lines_never_panic(
                lines in prop::collection::vec(prop_oneof![ollama_json(), crate::test_support::event_json()], 0..12),
                raw in "\\PC{0,60}",
            ) {
                let mut acc = Accumulator::default();
                let mut sink = |_e: crate::StreamEvent| {};
                let _ = acc.apply("p", &raw, None, &mut sink);
                for l in &lines {
                    match acc.apply("p", &l.to_string(), None, &mut sink) {
                        Ok(true) | Err(_) => break,
                        Ok(false) => {}
                    }
                }
                let _ = acc.finish("p", "m", 0);
            }

            #[test]
            fn arbitrary_bytes_never_panic_the_line_decoder(
                chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 0..8),
            ) {
                let mut d = LineDecoder::new(64);
                let mut out = Vec::new();
                for c in &chunks {
                    if d.push(c, &mut out).is_err() {
                        break;
                    }
                }
                let _ = d.finish();
                prop_assert!(out.iter().all(|l| l.len() <= 64));
            }
        }
    }
}
