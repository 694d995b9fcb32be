//! The OpenAI Responses wire API (`api: "openai-responses"`, what Codex and OpenAI's reasoning
//! models use).
//!
//! Follows OpenAI's API reference for `POST /v1/responses` and its streaming guide
//! (developers.openai.com/docs/guides/streaming-responses, "Streaming events" in the API
//! reference), the function-calling guide and the reasoning guide.
//!
//! Request: `POST {baseUrl}/responses` with `Authorization: Bearer <key>` and
//! `{model, instructions, input, tools, stream: true, store: false, max_output_tokens}`. `input`
//! is a list of items: user messages `{role: "user", content: [input_text | input_image]}` (images
//! as `data:<mime>;base64,…` URLs), assistant text `{type: "message", role: "assistant", content:
//! [output_text]}`, past tool calls `{type: "function_call", call_id, name, arguments}` (arguments
//! as a JSON string) and their results `{type: "function_call_output", call_id, output}`. Tools are
//! flat: `{type: "function", name, description, parameters}`. With a thinking budget the request
//! asks for `reasoning: {effort, summary: "auto"}` and `include: ["reasoning.encrypted_content"]`;
//! the budget maps to an effort (≤ 2048 `low`, ≤ 8192 `medium`, else `high`).
//!
//! Reasoning round trip: the API returns a `reasoning` output item with summary parts and an
//! opaque `encrypted_content`. It becomes a [`ContentBlock::Thinking`] whose text is the summary
//! parts joined by a blank line and whose `signature` is the JSON text
//! `{"id":"rs_…","encrypted_content":"…"}` (see [`encode_signature`]). On later turns such a block
//! goes back as `{type: "reasoning", summary: [{type: "summary_text", text}], encrypted_content}`.
//! The `id` is kept in the transcript but not sent: with `store: false` the service has not kept
//! the item, and an `rs_…` id it does not know is refused ("Items are not persisted when `store` is
//! set to false"); Codex sends these items without their id for the same reason. Thinking blocks
//! whose signature is not in this form (another API's) are left out.
//!
//! Response: an SSE stream of typed events (`type` in every event's JSON, also in `event:`):
//! `response.created` → per output item `response.output_item.added` (a `function_call` item
//! carries `call_id` and `name`), its deltas (`response.output_text.delta`,
//! `response.function_call_arguments.delta` / `.done`, `response.reasoning_summary_text.delta`)
//! and `response.output_item.done` (the finished item, authoritative) → one of
//! `response.completed` (with `response.usage`: `input_tokens` including
//! `input_tokens_details.cached_tokens`, `output_tokens` including
//! `output_tokens_details.reasoning_tokens`, `total_tokens`), `response.incomplete`
//! (`incomplete_details.reason`: `max_output_tokens` or `content_filter`) or `response.failed`
//! (`response.error: {code, message}`). An `error` event (`{code, message, param}`) may come at any
//! point. There is no `[DONE]`: a stream that ends without one of the three final events is a
//! protocol error. HTTP errors have the Chat Completions body `{"error": {"message", "type",
//! "param", "code"}}` and are classified by [`crate::openai_completions::classify_parts`].
//!
//! This module must not log request bodies or the key, and must not retry: retries belong to
//! [`crate::ModelClient`].

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use clawline_core::message::{AssistantMessage, ContentBlock, Message, StopReason, Usage, UserContent, join_text};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{ErrorKind, ProviderError};
use crate::http_util::{parse_json, read_sse, scrub};
use crate::openai_completions::classify_parts;
use crate::types::{ModelRequest, StreamEvent};

pub const API: &str = "openai-responses";

/// The API refuses a smaller `max_output_tokens`.
const MIN_OUTPUT_TOKENS: u32 = 16;

/// The request URL for a base URL such as `https://api.openai.com/v1`.
pub fn endpoint(base_url: &str) -> String {
    format!("{}/responses", base_url.trim_end_matches('/'))
}

/// The `reasoning.effort` for a thinking budget in tokens.
pub fn reasoning_effort(budget: u32) -> &'static str {
    match budget {
        0..=2048 => "low",
        2049..=8192 => "medium",
        _ => "high",
    }
}

/// What a `Thinking` block's signature holds for this API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ReasoningSignature {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    encrypted_content: String,
}

/// The signature stored in a `Thinking` block for a reasoning item: `{"id","encrypted_content"}`.
pub fn encode_signature(id: Option<&str>, encrypted_content: &str) -> String {
    let sig = ReasoningSignature { id: id.map(String::from), encrypted_content: encrypted_content.to_string() };
    serde_json::to_string(&sig).unwrap_or_default()
}

fn decode_signature(signature: &str) -> Option<ReasoningSignature> {
    if !signature.trim_start().starts_with('{') {
        return None;
    }
    serde_json::from_str::<ReasoningSignature>(signature).ok().filter(|s| !s.encrypted_content.is_empty())
}

/// Arguments as the wire wants them: a JSON string (the model's own text when it was not JSON).
fn arguments_text(arguments: &Value) -> String {
    match arguments {
        Value::String(raw) => raw.clone(),
        other => other.to_string(),
    }
}

fn user_parts(content: &UserContent) -> Vec<Value> {
    match content {
        UserContent::Text(t) if t.is_empty() => vec![],
        UserContent::Text(t) => vec![json!({"type": "input_text", "text": t})],
        UserContent::Blocks(blocks) => blocks
            .iter()
            .filter_map(|b| match b {
                ContentBlock::Text { text } if !text.is_empty() => Some(json!({"type": "input_text", "text": text})),
                ContentBlock::Image { data, mime_type } => Some(json!({
                    "type": "input_image",
                    "image_url": format!("data:{mime_type};base64,{data}"),
                    "detail": "auto",
                })),
                _ => None,
            })
            .collect(),
    }
}

fn flush_text(out: &mut Vec<Value>, run: &mut Vec<Value>) {
    if !run.is_empty() {
        out.push(json!({"type": "message", "role": "assistant", "content": std::mem::take(run)}));
    }
}

/// Converts a conversation to the `input` items, keeping the order of each assistant message's
/// blocks (reasoning, text, tool calls).
pub fn input_items(messages: &[Message]) -> Vec<Value> {
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        match m {
            Message::User(u) => {
                let parts = user_parts(&u.content);
                if !parts.is_empty() {
                    out.push(json!({"role": "user", "content": parts}));
                }
            }
            Message::Assistant(a) => {
                let mut run = Vec::new();
                for block in &a.content {
                    match block {
                        ContentBlock::Text { text } if !text.is_empty() => {
                            run.push(json!({"type": "output_text", "text": text}));
                        }
                        ContentBlock::Thinking { thinking, signature: Some(sig) } => {
                            if let Some(s) = decode_signature(sig) {
                                flush_text(&mut out, &mut run);
                                let summary: Vec<Value> = if thinking.is_empty() {
                                    vec![]
                                } else {
                                    vec![json!({"type": "summary_text", "text": thinking})]
                                };
                                out.push(json!({
                                    "type": "reasoning",
                                    "summary": summary,
                                    "encrypted_content": s.encrypted_content,
                                }));
                            }
                        }
                        ContentBlock::ToolCall { id, name, arguments, .. } => {
                            flush_text(&mut out, &mut run);
                            out.push(json!({
                                "type": "function_call",
                                "call_id": id,
                                "name": name,
                                "arguments": arguments_text(arguments),
                            }));
                        }
                        _ => {}
                    }
                }
                flush_text(&mut out, &mut run);
            }
            Message::ToolResult(r) => out.push(json!({
                "type": "function_call_output",
                "call_id": r.tool_call_id,
                "output": join_text(&r.content),
            })),
        }
    }
    out
}

/// The JSON request body.
pub fn request_body(req: &ModelRequest) -> Value {
    let mut body = json!({
        "model": req.model,
        "input": input_items(&req.messages),
        "stream": true,
        "store": false,
    });
    if !req.system.is_empty() {
        body["instructions"] = json!(req.system);
    }
    if req.max_tokens > 0 {
        body["max_output_tokens"] = json!(req.max_tokens.max(MIN_OUTPUT_TOKENS));
    }
    if !req.tools.is_empty() && req.compat.supports_tools != Some(false) {
        body["tools"] = Value::Array(
            req.tools
                .iter()
                .map(|t| json!({"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters}))
                .collect(),
        );
    }
    if let Some(budget) = req.thinking_budget {
        body["reasoning"] = json!({"effort": reasoning_effort(budget), "summary": "auto"});
        body["include"] = json!(["reasoning.encrypted_content"]);
    }
    body
}

/// A string field, or the JSON text of a non-string value (`code` may be a number).
fn text_of(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The wait a rate-limit message asks for ("Please try again in 1.5s" / "in 20ms").
pub(crate) fn retry_hint(message: &str) -> Option<Duration> {
    const NEEDLE: &str = "try again in ";
    let lower = message.to_ascii_lowercase();
    let at = lower.find(NEEDLE)? + NEEDLE.len();
    let rest = &lower[at..];
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    let n: f64 = rest[..end].parse().ok()?;
    let unit = rest[end..].trim_start();
    let secs = if unit.starts_with("ms") {
        n / 1000.0
    } else if unit.starts_with('s') {
        n
    } else if unit.starts_with('m') {
        n * 60.0
    } else {
        return None;
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

/// The `type` hint for a `code` of `response.failed` / `error` events, which carry no `type`.
fn kind_for_code(code: &str) -> &'static str {
    match code {
        "server_is_overloaded" | "slow_down" => "overloaded",
        "invalid_prompt" | "unsupported_image_media_type" | "empty_image_file" | "failed_to_download_image" => {
            "invalid_request_error"
        }
        c if c.starts_with("invalid_") || c.starts_with("image_") => "invalid_request_error",
        _ => "",
    }
}

/// Builds a classified error from the parts of an error object.
fn error_from_parts(
    provider: &str,
    status: Option<u16>,
    kind_str: &str,
    code: &str,
    message: &str,
    key: Option<&str>,
) -> ProviderError {
    let kind = classify_parts(status, kind_str, code, message);
    let label = if !code.is_empty() { code } else { kind_str };
    let mut text = String::new();
    if let Some(s) = status {
        text.push_str(&format!("HTTP {s}"));
    }
    if !label.is_empty() {
        text.push_str(&format!("{}{label}", if text.is_empty() { "" } else { " " }));
    }
    if !message.is_empty() {
        text.push_str(&format!("{}{message}", if text.is_empty() { "" } else { ": " }));
    }
    if text.is_empty() {
        text = "the model server reported an error with no message".into();
    }
    let retry_after = if kind == ErrorKind::RateLimited { retry_hint(message) } else { None };
    ProviderError { kind, provider: provider.to_string(), status, message: scrub(&text, key), retry_after }
}

/// Classifies an HTTP error response from its status and body.
fn http_error(provider: &str, status: u16, body: &str, key: Option<&str>) -> ProviderError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().map(|v| &v["error"]);
    match error {
        Some(Value::Object(o)) => {
            let field = |name: &str| o.get(name).map(text_of).unwrap_or_default();
            error_from_parts(provider, Some(status), &field("type"), &field("code"), &field("message"), key)
        }
        Some(Value::String(s)) => error_from_parts(provider, Some(status), "", "", s, key),
        _ => {
            let shown = clawline_core::text::truncate_chars(body.trim(), 300).0.to_string();
            error_from_parts(provider, Some(status), "", "", &shown, key)
        }
    }
}

/// An error object from the stream (`error` events, `response.error` of `response.failed`).
fn stream_error(provider: &str, obj: &Value, fallback: &str, key: Option<&str>) -> ProviderError {
    let code = text_of(&obj["code"]);
    let mut kind = text_of(&obj["type"]);
    if kind.is_empty() || kind == "error" {
        kind = kind_for_code(&code).to_string();
    }
    let mut message = text_of(&obj["message"]);
    if message.is_empty() {
        message = fallback.to_string();
    }
    error_from_parts(provider, None, &kind, &code, &message, key)
}

fn protocol(provider: &str, what: &str, data: &str) -> ProviderError {
    let (shown, cut) = clawline_core::text::truncate_chars(data, 200);
    ProviderError::new(
        ErrorKind::Protocol,
        provider,
        format!("malformed event from the model server ({what}): {shown}{}", if cut { "…" } else { "" }),
    )
}

/// One output item as it is being streamed.
#[derive(Debug)]
enum Item {
    Message {
        text: String,
    },
    Call {
        item_id: String,
        call_id: String,
        name: String,
        arguments: String,
        announced: bool,
    },
    Reasoning {
        id: Option<String>,
        summary: BTreeMap<u64, String>,
        /// Raw reasoning text (`response.reasoning_text.delta`), used when there is no summary.
        raw: String,
        encrypted: Option<String>,
    },
    /// Built-in tool calls and other items clawline does not use.
    Other,
}

impl Item {
    fn from_json(item: &Value) -> Item {
        let s = |name: &str| item[name].as_str().unwrap_or_default().to_string();
        match item["type"].as_str().unwrap_or_default() {
            "message" => Item::Message { text: String::new() },
            "function_call" => Item::Call {
                item_id: s("id"),
                call_id: s("call_id"),
                name: s("name"),
                arguments: s("arguments"),
                announced: false,
            },
            "reasoning" => Item::Reasoning {
                id: item["id"].as_str().map(String::from),
                summary: BTreeMap::new(),
                raw: String::new(),
                encrypted: item["encrypted_content"].as_str().filter(|e| !e.is_empty()).map(String::from),
            },
            _ => Item::Other,
        }
    }

    fn thinking(&self) -> String {
        match self {
            Item::Reasoning { summary, raw, .. } => {
                let parts: Vec<&str> = summary.values().map(String::as_str).filter(|p| !p.is_empty()).collect();
                if parts.is_empty() { raw.clone() } else { parts.join("\n\n") }
            }
            _ => String::new(),
        }
    }
}

/// How the response ended.
#[derive(Debug, Clone, PartialEq)]
enum Terminal {
    Completed,
    Incomplete(Option<String>),
}

/// Accumulates a streamed answer.
#[derive(Default)]
pub(crate) struct Accumulator {
    items: BTreeMap<u64, Item>,
    ids: HashMap<String, u64>,
    /// Whether any thinking text was streamed (for the separator before the next part).
    thinking_streamed: bool,
    usage: Usage,
    response_id: Option<String>,
    terminal: Option<Terminal>,
}

impl Accumulator {
    /// The output index an event is about: `output_index`, else its `item_id`, else the last item.
    fn index_of(&self, ev: &Value) -> u64 {
        if let Some(i) = ev["output_index"].as_u64() {
            return i;
        }
        if let Some(i) = ev["item_id"].as_str().and_then(|id| self.ids.get(id)) {
            return *i;
        }
        self.items.keys().next_back().copied().unwrap_or(0)
    }

    fn remember_id(&mut self, index: u64, ev: &Value, item: &Value) {
        let id = item["id"].as_str().or_else(|| ev["item_id"].as_str());
        if let Some(id) = id.filter(|s| !s.is_empty()) {
            self.ids.insert(id.to_string(), index);
        }
    }

    fn announce(item: &mut Item, on_event: &mut (dyn FnMut(StreamEvent) + Send)) {
        if let Item::Call { item_id, call_id, name, announced, .. } = item
            && !*announced
            && !name.is_empty()
        {
            *announced = true;
            let id = if call_id.is_empty() { item_id.clone() } else { call_id.clone() };
            on_event(StreamEvent::ToolCallStarted { id, name: name.clone() });
        }
    }

    fn push_thinking(&mut self, text: &str, new_part: bool, on_event: &mut (dyn FnMut(StreamEvent) + Send)) {
        if text.is_empty() {
            return;
        }
        if new_part && self.thinking_streamed {
            on_event(StreamEvent::ThinkingDelta("\n\n".into()));
        }
        self.thinking_streamed = true;
        on_event(StreamEvent::ThinkingDelta(text.to_string()));
    }

    /// Applies a finished item (`response.output_item.done`, or `response.output` of the final
    /// event when no item events came): its fields replace what the deltas built.
    fn finish_item(&mut self, index: u64, item: &Value, on_event: &mut (dyn FnMut(StreamEvent) + Send)) {
        let mut fresh = Item::from_json(item);
        let mut thinking_text: Option<(String, bool)> = None;
        let slot = self.items.entry(index).or_insert(Item::Other);
        if std::mem::discriminant(slot) != std::mem::discriminant(&fresh) {
            std::mem::swap(slot, &mut fresh);
        }
        match slot {
            Item::Message { text } => {
                let mut full = String::new();
                for part in item["content"].as_array().map(Vec::as_slice).unwrap_or_default() {
                    match part["type"].as_str() {
                        Some("output_text") => full.push_str(part["text"].as_str().unwrap_or_default()),
                        Some("refusal") => full.push_str(part["refusal"].as_str().unwrap_or_default()),
                        _ => {}
                    }
                }
                if text.is_empty() && !full.is_empty() {
                    on_event(StreamEvent::TextDelta(full.clone()));
                }
                if !full.is_empty() {
                    *text = full;
                }
            }
            Item::Call { item_id, call_id, name, arguments, .. } => {
                let s = |n: &str| item[n].as_str().filter(|v| !v.is_empty()).map(String::from);
                if let Some(v) = s("id") {
                    *item_id = v;
                }
                if let Some(v) = s("call_id") {
                    *call_id = v;
                }
                if let Some(v) = s("name") {
                    *name = v;
                }
                if let Some(v) = item["arguments"].as_str() {
                    *arguments = v.to_string();
                }
                Self::announce(slot, on_event);
            }
            Item::Reasoning { id, summary, encrypted, .. } => {
                if let Some(v) = item["id"].as_str() {
                    *id = Some(v.to_string());
                }
                if let Some(e) = item["encrypted_content"].as_str().filter(|e| !e.is_empty()) {
                    *encrypted = Some(e.to_string());
                }
                if summary.values().all(String::is_empty) {
                    let parts: Vec<String> = item["summary"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|p| p["text"].as_str().map(String::from))
                        .collect();
                    if !parts.is_empty() {
                        thinking_text = Some((parts.join("\n\n"), true));
                        *summary = parts.into_iter().enumerate().map(|(i, p)| (i as u64, p)).collect();
                    }
                }
            }
            Item::Other => {}
        }
        if let Some((text, new_part)) = thinking_text {
            self.push_thinking(&text, new_part, on_event);
        }
    }

    fn read_usage(&mut self, usage: &Value) {
        if !usage.is_object() {
            return;
        }
        let input = usage["input_tokens"].as_u64().unwrap_or(0);
        let cached = usage["input_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0).min(input);
        let output = usage["output_tokens"].as_u64().unwrap_or(0);
        self.usage.input = input - cached;
        self.usage.cache_read = cached;
        self.usage.cache_write = 0;
        self.usage.output = output;
        self.usage.total_tokens = usage["total_tokens"].as_u64().unwrap_or(input.saturating_add(output));
    }

    /// Applies one SSE event (`name` is its `event:` field). Returns true at the final event.
    pub(crate) fn apply(
        &mut self,
        provider: &str,
        name: Option<&str>,
        data: &str,
        key: Option<&str>,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<bool, ProviderError> {
        if data.trim() == "[DONE]" {
            return Ok(true);
        }
        let ev: Value = parse_json(provider, data)?;
        if !ev.is_object() {
            return Err(protocol(provider, "not an object", data));
        }
        let Some(kind) = ev["type"].as_str().or(name).map(String::from) else {
            return Err(protocol(provider, "no event type", data));
        };
        let delta = || ev["delta"].as_str().unwrap_or_default().to_string();
        match kind.as_str() {
            "response.created" | "response.in_progress" | "response.queued" => {
                if let Some(id) = ev["response"]["id"].as_str() {
                    self.response_id = Some(id.to_string());
                }
            }
            "response.output_item.added" => {
                let index = self.index_of(&ev);
                let item = &ev["item"];
                if !item.is_object() {
                    return Err(protocol(provider, "output_item.added without an item", data));
                }
                self.remember_id(index, &ev, item);
                let mut parsed = Item::from_json(item);
                Self::announce(&mut parsed, on_event);
                self.items.insert(index, parsed);
            }
            "response.output_item.done" => {
                let index = self.index_of(&ev);
                let item = &ev["item"];
                if !item.is_object() {
                    return Err(protocol(provider, "output_item.done without an item", data));
                }
                self.remember_id(index, &ev, item);
                self.finish_item(index, item, on_event);
            }
            "response.output_text.delta" | "response.refusal.delta" => {
                let index = self.index_of(&ev);
                let piece = delta();
                match self.items.entry(index).or_insert(Item::Message { text: String::new() }) {
                    Item::Message { text } => text.push_str(&piece),
                    _ => return Err(protocol(provider, "text for an item that is not a message", data)),
                }
                if !piece.is_empty() {
                    on_event(StreamEvent::TextDelta(piece));
                }
            }
            "response.function_call_arguments.delta" | "response.function_call_arguments.done" => {
                let index = self.index_of(&ev);
                let done = kind.ends_with(".done");
                let slot = self.items.entry(index).or_insert_with(|| Item::Call {
                    item_id: ev["item_id"].as_str().unwrap_or_default().to_string(),
                    call_id: String::new(),
                    name: String::new(),
                    arguments: String::new(),
                    announced: false,
                });
                let Item::Call { arguments, name, .. } = slot else {
                    return Err(protocol(provider, "arguments for an item that is not a function call", data));
                };
                if done {
                    if let Some(full) = ev["arguments"].as_str() {
                        *arguments = full.to_string();
                    }
                    if let Some(n) = ev["name"].as_str().filter(|n| !n.is_empty()) {
                        *name = n.to_string();
                    }
                    Self::announce(slot, on_event);
                } else {
                    arguments.push_str(&delta());
                }
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                let index = self.index_of(&ev);
                let piece = delta();
                let part = ev["summary_index"].as_u64().unwrap_or(0);
                let summary_text = kind == "response.reasoning_summary_text.delta";
                let slot = self.items.entry(index).or_insert_with(|| Item::Reasoning {
                    id: ev["item_id"].as_str().map(String::from),
                    summary: BTreeMap::new(),
                    raw: String::new(),
                    encrypted: None,
                });
                let Item::Reasoning { summary, raw, .. } = slot else {
                    return Err(protocol(provider, "reasoning for an item that is not reasoning", data));
                };
                let new_part = if summary_text {
                    let entry = summary.entry(part).or_default();
                    let new = entry.is_empty();
                    entry.push_str(&piece);
                    new
                } else {
                    let new = raw.is_empty();
                    raw.push_str(&piece);
                    new
                };
                self.push_thinking(&piece, new_part, on_event);
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                let response = &ev["response"];
                if let Some(id) = response["id"].as_str() {
                    self.response_id = Some(id.to_string());
                }
                self.read_usage(&response["usage"]);
                let status = response["status"].as_str().unwrap_or_default();
                if kind == "response.failed" || status == "failed" {
                    let err = &response["error"];
                    return Err(stream_error(provider, err, "the model failed to answer (response.failed)", key));
                }
                if self.items.is_empty()
                    && let Some(output) = response["output"].as_array()
                {
                    for (i, item) in output.iter().enumerate() {
                        self.remember_id(i as u64, &Value::Null, item);
                        self.finish_item(i as u64, item, on_event);
                    }
                }
                self.terminal = Some(if kind == "response.incomplete" || status == "incomplete" {
                    Terminal::Incomplete(response["incomplete_details"]["reason"].as_str().map(String::from))
                } else {
                    Terminal::Completed
                });
                return Ok(true);
            }
            "error" => {
                let obj = if ev["error"].is_object() { &ev["error"] } else { &ev };
                return Err(stream_error(provider, obj, "the model server reported an error", key));
            }
            // content_part.*, output_text.done, reasoning_summary_part.*, annotations, built-in
            // tool progress: nothing to keep (the finished item carries the same text).
            _ => {}
        }
        Ok(false)
    }

    /// The finished message, or a protocol error when the stream ended too early.
    pub(crate) fn finish(self, provider: &str, model: &str, now_ms: i64) -> Result<AssistantMessage, ProviderError> {
        let Some(terminal) = self.terminal else {
            return Err(ProviderError::new(
                ErrorKind::Protocol,
                provider,
                "the stream ended before the model finished (no response.completed)",
            ));
        };
        let mut content = Vec::new();
        let mut has_calls = false;
        for (i, item) in self.items.into_iter() {
            let thinking = item.thinking();
            match item {
                Item::Message { text } if !text.is_empty() => content.push(ContentBlock::Text { text }),
                Item::Call { item_id, call_id, name, arguments, .. } => {
                    has_calls = true;
                    let arguments = if arguments.trim().is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str::<Value>(&arguments).unwrap_or(Value::String(arguments))
                    };
                    let id =
                        [call_id, item_id].into_iter().find(|s| !s.is_empty()).unwrap_or_else(|| format!("call_{i}"));
                    content.push(ContentBlock::ToolCall { id, name, arguments, thought_signature: None });
                }
                Item::Reasoning { id, encrypted, .. } => {
                    let signature = encrypted.map(|e| encode_signature(id.as_deref(), &e));
                    if !thinking.is_empty() || signature.is_some() {
                        content.push(ContentBlock::Thinking { thinking, signature });
                    }
                }
                _ => {}
            }
        }
        let (stop_reason, error_message) = match &terminal {
            Terminal::Incomplete(Some(reason)) if reason == "content_filter" => {
                (StopReason::Error, Some("the answer was stopped by the provider's content filter".to_string()))
            }
            Terminal::Incomplete(_) => (StopReason::Length, None),
            Terminal::Completed if has_calls => (StopReason::ToolUse, None),
            Terminal::Completed => (StopReason::Stop, None),
        };
        Ok(AssistantMessage {
            content,
            api: API.to_string(),
            provider: provider.to_string(),
            model: model.to_string(),
            usage: self.usage,
            stop_reason,
            timestamp: now_ms,
            response_id: self.response_id,
            error_message,
        })
    }
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
    let mut builder = http
        .post(endpoint(&settings.base_url))
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .json(&request_body(req))
        .headers(crate::http_util::trace_headers(req));
    if let Some(k) = key {
        builder = builder.bearer_auth(k);
        // A ChatGPT sign-in (Codex): the backend wants the account the token belongs to.
        if let Some(account) = crate::usage::codex_account_id(k) {
            builder = builder.header("chatgpt-account-id", account);
        }
    }
    let (resp, idle) = crate::http_util::send_model_request(builder, settings, key, |status, body| {
        http_error(provider, status, body, key)
    })
    .await?;
    let mut acc = Accumulator::default();
    read_sse(provider, resp, idle, key, |ev| acc.apply(provider, ev.event.as_deref(), &ev.data, key, on_event)).await?;
    let mut msg = acc.finish(provider, &req.model, crate::client::now_ms())?;
    crate::client::price(&mut msg.usage, &req.cost);
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawline_core::message::{ToolResultMessage, UserMessage};

    fn apply_all(events: &[Value]) -> (Result<AssistantMessage, ProviderError>, Vec<StreamEvent>) {
        let mut acc = Accumulator::default();
        let mut seen = Vec::new();
        let mut sink = |e: StreamEvent| seen.push(e);
        for e in events {
            match acc.apply("p", None, &e.to_string(), Some("sk-secret-key"), &mut sink) {
                Ok(true) => break,
                Ok(false) => {}
                Err(err) => return (Err(err), seen),
            }
        }
        (acc.finish("p", "m", 7), seen)
    }

    fn completed(usage: Value) -> Value {
        json!({"type": "response.completed", "sequence_number": 99,
            "response": {"id": "resp_1", "object": "response", "status": "completed", "output": [], "usage": usage}})
    }

    fn assistant(content: Vec<ContentBlock>) -> Message {
        Message::Assistant(AssistantMessage {
            content,
            api: API.into(),
            provider: "p".into(),
            model: "m".into(),
            usage: Usage::default(),
            stop_reason: StopReason::ToolUse,
            timestamp: 0,
            response_id: None,
            error_message: None,
        })
    }

    #[test]
    fn assembles_text_tool_calls_and_usage() {
        let (msg, events) = apply_all(&[
            json!({"type": "response.created", "response": {"id": "resp_1", "status": "in_progress", "output": []}}),
            json!({"type": "response.output_item.added", "output_index": 0,
                "item": {"id": "msg_1", "type": "message", "status": "in_progress", "role": "assistant", "content": []}}),
            json!({"type": "response.content_part.added", "output_index": 0, "item_id": "msg_1", "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []}}),
            json!({"type": "response.output_text.delta", "output_index": 0, "item_id": "msg_1", "content_index": 0, "delta": "Let me "}),
            json!({"type": "response.output_text.delta", "item_id": "msg_1", "content_index": 0, "delta": "look."}),
            json!({"type": "response.output_text.done", "output_index": 0, "item_id": "msg_1", "text": "Let me look."}),
            json!({"type": "response.output_item.added", "output_index": 1,
                "item": {"id": "fc_1", "type": "function_call", "status": "in_progress", "call_id": "call_a", "name": "read", "arguments": ""}}),
            json!({"type": "response.function_call_arguments.delta", "output_index": 1, "item_id": "fc_1", "delta": "{\"pa"}),
            json!({"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": "th\":"}),
            json!({"type": "response.function_call_arguments.done", "output_index": 1, "item_id": "fc_1", "arguments": "{\"path\":\"a.txt\"}"}),
            json!({"type": "response.output_item.done", "output_index": 1,
                "item": {"id": "fc_1", "type": "function_call", "status": "completed", "call_id": "call_a", "name": "read", "arguments": "{\"path\":\"a.txt\"}"}}),
            json!({"type": "response.output_item.added", "output_index": 2,
                "item": {"id": "fc_2", "type": "function_call", "call_id": "call_b", "name": "ls", "arguments": ""}}),
            json!({"type": "response.function_call_arguments.delta", "output_index": 2, "item_id": "fc_2", "delta": "{not json"}),
            completed(json!({"input_tokens": 20, "input_tokens_details": {"cached_tokens": 5}, "output_tokens": 7,
                "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 27})),
        ]);
        let msg = msg.unwrap();
        assert_eq!(msg.text(), "Let me look.");
        assert_eq!(msg.stop_reason, StopReason::ToolUse);
        let calls: Vec<_> = msg.tool_calls().collect();
        assert_eq!(calls[0], ("call_a", "read", &json!({"path": "a.txt"})));
        assert_eq!(calls[1], ("call_b", "ls", &Value::String("{not json".into())));
        assert_eq!((msg.usage.input, msg.usage.cache_read, msg.usage.output, msg.usage.total_tokens), (15, 5, 7, 27));
        assert_eq!(msg.response_id.as_deref(), Some("resp_1"));
        assert_eq!((msg.api.as_str(), msg.provider.as_str(), msg.model.as_str(), msg.timestamp), (API, "p", "m", 7));
        assert_eq!(
            events,
            vec![
                StreamEvent::TextDelta("Let me ".into()),
                StreamEvent::TextDelta("look.".into()),
                StreamEvent::ToolCallStarted { id: "call_a".into(), name: "read".into() },
                StreamEvent::ToolCallStarted { id: "call_b".into(), name: "ls".into() },
            ]
        );
    }

    #[test]
    fn reasoning_summary_parts_become_one_signed_thinking_block() {
        let (msg, events) = apply_all(&[
            json!({"type": "response.output_item.added", "output_index": 0, "item": {"id": "rs_1", "type": "reasoning", "summary": []}}),
            json!({"type": "response.reasoning_summary_part.added", "output_index": 0, "item_id": "rs_1", "summary_index": 0,
                "part": {"type": "summary_text", "text": ""}}),
            json!({"type": "response.reasoning_summary_text.delta", "output_index": 0, "item_id": "rs_1", "summary_index": 0, "delta": "First"}),
            json!({"type": "response.reasoning_summary_text.delta", "output_index": 0, "item_id": "rs_1", "summary_index": 0, "delta": " idea."}),
            json!({"type": "response.reasoning_summary_text.delta", "output_index": 0, "item_id": "rs_1", "summary_index": 1, "delta": "Second."}),
            json!({"type": "response.output_item.done", "output_index": 0, "item": {"id": "rs_1", "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "First idea."}, {"type": "summary_text", "text": "Second."}],
                "encrypted_content": "gAAAA-opaque"}}),
            json!({"type": "response.output_item.added", "output_index": 1, "item": {"id": "msg_1", "type": "message", "content": []}}),
            json!({"type": "response.output_item.done", "output_index": 1, "item": {"id": "msg_1", "type": "message",
                "content": [{"type": "output_text", "text": "Answer.", "annotations": []}]}}),
            completed(Value::Null),
        ]);
        let msg = msg.unwrap();
        let sig = encode_signature(Some("rs_1"), "gAAAA-opaque");
        assert_eq!(
            msg.content,
            vec![
                ContentBlock::Thinking { thinking: "First idea.\n\nSecond.".into(), signature: Some(sig.clone()) },
                ContentBlock::Text { text: "Answer.".into() },
            ]
        );
        assert_eq!(sig, r#"{"id":"rs_1","encrypted_content":"gAAAA-opaque"}"#);
        let thinking: String = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ThinkingDelta(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(thinking, "First idea.\n\nSecond.");
        // The text only came in the finished item; it is still reported as output.
        assert!(events.contains(&StreamEvent::TextDelta("Answer.".into())));
        assert_eq!(msg.stop_reason, StopReason::Stop);
    }

    #[test]
    fn final_event_alone_carries_the_output() {
        let (msg, events) = apply_all(&[
            json!({"type": "response.completed", "response": {"id": "resp_9", "status": "completed",
            "output": [
                {"id": "msg_1", "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi."}]},
                {"id": "fc_1", "type": "function_call", "call_id": "call_z", "name": "ls", "arguments": ""}
            ],
            "usage": {"input_tokens": 3, "output_tokens": 2}}}),
        ]);
        let msg = msg.unwrap();
        assert_eq!(msg.text(), "Hi.");
        assert_eq!(msg.tool_calls().next(), Some(("call_z", "ls", &json!({}))));
        assert_eq!(msg.usage.total_tokens, 5);
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn incomplete_and_failed_and_error_events() {
        let delta = json!({"type": "response.output_text.delta", "output_index": 0, "item_id": "m", "delta": "Hel"});
        let (msg, _) = apply_all(&[
            delta.clone(),
            json!({"type": "response.incomplete", "response": {"id": "r", "status": "incomplete",
                "incomplete_details": {"reason": "max_output_tokens"}, "output": []}}),
        ]);
        let msg = msg.unwrap();
        assert_eq!((msg.stop_reason, msg.text().as_str()), (StopReason::Length, "Hel"));

        let (msg, _) = apply_all(&[json!({"type": "response.incomplete", "response": {"status": "incomplete",
            "incomplete_details": {"reason": "content_filter"}}})]);
        let msg = msg.unwrap();
        assert_eq!(msg.stop_reason, StopReason::Error);
        assert!(msg.error_message.unwrap().contains("content filter"));

        let (r, events) = apply_all(&[
            delta.clone(),
            json!({"type": "response.failed", "response": {"id": "r", "status": "failed",
                "error": {"code": "server_error", "message": "The model had an error"}}}),
        ]);
        let e = r.unwrap_err();
        assert_eq!((e.kind, e.status), (ErrorKind::Server, None));
        assert_eq!(e.message, "server_error: The model had an error");
        assert_eq!(events.len(), 1);

        let (r, _) = apply_all(&[json!({"type": "response.failed", "response": {"status": "failed",
            "error": {"code": "rate_limit_exceeded", "message": "Rate limit reached. Please try again in 1.5s."}}})]);
        let e = r.unwrap_err();
        assert_eq!((e.kind, e.retry_after), (ErrorKind::RateLimited, Some(Duration::from_millis(1500))));

        let (r, _) = apply_all(&[json!({"type": "response.failed", "response": {"status": "failed",
            "error": {"code": "invalid_prompt", "message": "Invalid prompt"}}})]);
        assert_eq!(r.unwrap_err().kind, ErrorKind::BadRequest);

        let (r, _) = apply_all(&[json!({"type": "error", "code": "server_is_overloaded",
            "message": "Overloaded, key sk-secret-key", "param": null, "sequence_number": 3})]);
        let e = r.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Overloaded);
        assert_eq!(e.message, "server_is_overloaded: Overloaded, key [redacted]");

        let (r, _) = apply_all(&[json!({"type": "error", "code": "context_length_exceeded",
            "message": "Your input exceeds the context window of this model."})]);
        assert_eq!(r.unwrap_err().kind, ErrorKind::ContextLength);
    }

    #[test]
    fn truncated_and_malformed_streams_are_protocol_errors() {
        let (r, events) = apply_all(&[
            json!({"type": "response.output_text.delta", "output_index": 0, "item_id": "m", "delta": "Hel"}),
        ]);
        let e = r.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Protocol);
        assert!(e.message.contains("response.completed"), "{}", e.message);
        assert_eq!(events, vec![StreamEvent::TextDelta("Hel".into())]);

        let mut acc = Accumulator::default();
        let mut sink = |_e: StreamEvent| {};
        let e = acc.apply("p", None, r#"{"type":"response.output_text.delta","delta":"#, None, &mut sink).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Protocol);
        assert!(e.message.contains(r#"{"type":"response.output_text.delta""#), "{}", e.message);
        let e = acc.apply("p", None, r#"{"delta":"x"}"#, None, &mut sink).unwrap_err();
        assert!(e.message.contains("no event type"), "{}", e.message);
        // The SSE event name is used when the JSON has no type.
        assert!(!acc.apply("p", Some("response.output_text.delta"), r#"{"delta":"x"}"#, None, &mut sink).unwrap());
        let e = acc
            .apply(
                "p",
                None,
                r#"{"type":"response.function_call_arguments.delta","output_index":0,"delta":"{"}"#,
                None,
                &mut sink,
            )
            .unwrap_err();
        assert!(e.message.contains("not a function call"), "{}", e.message);
        // `[DONE]` (sent by some compatible servers) ends reading but does not finish the answer.
        assert!(acc.apply("p", None, "[DONE]", None, &mut sink).unwrap());
        assert_eq!(acc.finish("p", "m", 0).unwrap_err().kind, ErrorKind::Protocol);
    }

    #[test]
    fn classifies_http_errors() {
        let e = http_error(
            "openai",
            401,
            r#"{"error":{"message":"Incorrect API key provided: sk-abc1234. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
            Some("sk-abc1234"),
        );
        assert_eq!((e.kind, e.status), (ErrorKind::Auth, Some(401)));
        assert!(
            e.message.starts_with("HTTP 401 invalid_api_key: Incorrect API key provided: [redacted]."),
            "{}",
            e.message
        );
        let q = r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
        assert_eq!(http_error("o", 429, q, None).kind, ErrorKind::Billing);
        let rl = r#"{"error":{"message":"Rate limit reached for gpt-5 on tokens per min. Please try again in 20ms.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#;
        let e = http_error("o", 429, rl, None);
        assert_eq!((e.kind, e.retry_after), (ErrorKind::RateLimited, Some(Duration::from_millis(20))));
        let ctx = r#"{"error":{"message":"Your input exceeds the context window of this model. Please adjust your input and try again.","type":"invalid_request_error","param":"input","code":"context_length_exceeded"}}"#;
        assert_eq!(http_error("o", 400, ctx, None).kind, ErrorKind::ContextLength);
        assert_eq!(
            http_error("o", 400, r#"{"error":{"message":"bad","type":"invalid_request_error"}}"#, None).kind,
            ErrorKind::BadRequest
        );
        assert_eq!(http_error("o", 500, "<html>oops</html>", None).message, "HTTP 500: <html>oops</html>");
        assert_eq!(http_error("o", 503, "", None).kind, ErrorKind::Overloaded);
        assert_eq!(http_error("o", 404, r#"{"error":"no such model"}"#, None).message, "HTTP 404: no such model");
    }

    #[test]
    fn retry_hints_are_read_from_messages() {
        assert_eq!(retry_hint("Please try again in 1.898s. Visit"), Some(Duration::from_millis(1898)));
        assert_eq!(retry_hint("Please try again in 250ms."), Some(Duration::from_millis(250)));
        assert_eq!(retry_hint("Please try again in 2m"), Some(Duration::from_secs(120)));
        assert_eq!(retry_hint("Please try again in 1e999s"), None);
        assert_eq!(retry_hint("Please try again in 99999999999s"), Some(Duration::from_secs(86_400)));
        assert_eq!(retry_hint("Please try again later."), None);
    }

    #[test]
    fn effort_follows_the_budget() {
        assert_eq!(
            [1024, 2048, 2049, 8192, 8193, 32000].map(reasoning_effort),
            ["low", "low", "medium", "medium", "high", "high"]
        );
    }

    #[test]
    fn request_body_follows_the_reference() {
        let sig = encode_signature(Some("rs_1"), "gAAAA-opaque");
        let req = ModelRequest {
            model: "gpt-5".into(),
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
                assistant(vec![
                    ContentBlock::Thinking { thinking: "Looking.".into(), signature: Some(sig) },
                    ContentBlock::Thinking { thinking: "other API".into(), signature: Some("EqQBCgIYAhIM".into()) },
                    ContentBlock::Text { text: "Let me ".into() },
                    ContentBlock::Text { text: "check.".into() },
                    ContentBlock::ToolCall {
                        id: "c1".into(),
                        name: "ls".into(),
                        arguments: json!({}),
                        thought_signature: None,
                    },
                    ContentBlock::ToolCall {
                        id: "c2".into(),
                        name: "ls".into(),
                        arguments: Value::String("{bad".into()),
                        thought_signature: None,
                    },
                ]),
                Message::ToolResult(ToolResultMessage {
                    tool_call_id: "c1".into(),
                    tool_name: "ls".into(),
                    content: vec![ContentBlock::Text { text: "a.txt".into() }],
                    is_error: false,
                    timestamp: 0,
                }),
                Message::User(UserMessage {
                    content: UserContent::Text(String::new()),
                    timestamp: 0,
                    idempotency_key: None,
                }),
            ],
            tools: vec![crate::ToolSpec {
                name: "ls".into(),
                description: "list".into(),
                parameters: json!({"type": "object"}),
            }],
            max_tokens: 8,
            thinking_budget: Some(4096),
            ..Default::default()
        };
        let body = request_body(&req);
        assert_eq!(body["instructions"], "be brief");
        assert_eq!((body["stream"].clone(), body["store"].clone()), (json!(true), json!(false)));
        assert_eq!(body["max_output_tokens"], 16);
        assert_eq!(
            body["tools"][0],
            json!({"type": "function", "name": "ls", "description": "list", "parameters": {"type": "object"}})
        );
        assert_eq!(body["reasoning"], json!({"effort": "medium", "summary": "auto"}));
        assert_eq!(body["include"], json!(["reasoning.encrypted_content"]));
        let input = body["input"].as_array().unwrap();
        assert_eq!(
            input[0],
            json!({"role": "user", "content": [
                {"type": "input_text", "text": "what is this?"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto"}
            ]})
        );
        assert_eq!(
            input[1],
            json!({"type": "reasoning", "summary": [{"type": "summary_text", "text": "Looking."}], "encrypted_content": "gAAAA-opaque"})
        );
        assert_eq!(
            input[2],
            json!({"type": "message", "role": "assistant", "content": [
                {"type": "output_text", "text": "Let me "}, {"type": "output_text", "text": "check."}
            ]})
        );
        assert_eq!(input[3], json!({"type": "function_call", "call_id": "c1", "name": "ls", "arguments": "{}"}));
        assert_eq!(input[4]["arguments"], "{bad");
        assert_eq!(input[5], json!({"type": "function_call_output", "call_id": "c1", "output": "a.txt"}));
        assert_eq!(input.len(), 6, "the empty user message is left out: {input:?}");

        let plain = request_body(&ModelRequest { model: "m".into(), ..Default::default() });
        for absent in ["instructions", "reasoning", "include", "tools", "max_output_tokens"] {
            assert!(plain.get(absent).is_none(), "{absent} in {plain}");
        }
        assert_eq!(endpoint("https://api.openai.com/v1/"), "https://api.openai.com/v1/responses");
    }

    mod properties {
        use super::super::Accumulator;
        use proptest::prelude::*;
        use serde_json::Value;

        fn event() -> impl Strategy<Value = Value> {
            let kind = prop_oneof![
                Just("response.created"),
                Just("response.output_item.added"),
                Just("response.output_item.done"),
                Just("response.output_text.delta"),
                Just("response.function_call_arguments.delta"),
                Just("response.function_call_arguments.done"),
                Just("response.reasoning_summary_text.delta"),
                Just("response.reasoning_text.delta"),
                Just("response.completed"),
                Just("response.incomplete"),
                Just("response.failed"),
                Just("error"),
                Just("response.refusal.delta"),
            ];
            let item_type =
                prop_oneof![Just("message"), Just("function_call"), Just("reasoning"), Just("web_search_call")];
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                "\\PC{0,12}".prop_map(Value::String),
            ];
            let value = leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                    prop::collection::btree_map(
                        prop_oneof![
                            Just("type".to_string()),
                            Just("text".to_string()),
                            Just("summary".to_string()),
                            Just("content".to_string()),
                            "[a-z_]{1,8}"
                        ],
                        inner,
                        0..4
                    )
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            });
            (kind, item_type, prop::option::of(0u64..4), prop::option::of(0u64..3), value.clone(), value).prop_map(
                |(kind, item_type, index, summary, a, b)| {
                    let mut ev = serde_json::json!({"type": kind, "delta": a, "arguments": b.clone(),
                        "item": {"type": item_type, "id": "x", "call_id": a, "name": b, "summary": a, "content": b,
                            "encrypted_content": a},
                        "response": {"status": b, "usage": a, "output": [{"type": item_type, "content": b}],
                            "error": a, "incomplete_details": {"reason": b}},
                        "code": a, "message": b});
                    if let Some(i) = index {
                        ev["output_index"] = i.into();
                    }
                    if let Some(s) = summary {
                        ev["summary_index"] = s.into();
                    }
                    ev
                },
            )
        }

        proptest! {
            #[test]
            fn arbitrary_events_never_panic(
                events in prop::collection::vec(event(), 0..14),
                generic in prop::collection::vec(crate::test_support::event_json(), 0..4),
                raw in "\\PC{0,60}",
            ) {
                let mut acc = Accumulator::default();
                let mut sink = |_e: crate::StreamEvent| {};
                let _ = acc.apply("p", None, &raw, None, &mut sink);
                for e in generic.iter().chain(events.iter()) {
                    match acc.apply("p", Some("response.output_text.delta"), &e.to_string(), Some("key1"), &mut sink) {
                        Ok(true) | Err(_) => break,
                        Ok(false) => {}
                    }
                }
                let _ = acc.finish("p", "m", 0);
            }

            #[test]
            fn retry_hint_never_panics(text in "\\PC{0,40}", n in "[0-9.e]{0,30}", unit in "(ms|s|m|h|)") {
                let _ = super::super::retry_hint(&format!("{text} try again in {n}{unit}"));
            }
        }
    }
}
