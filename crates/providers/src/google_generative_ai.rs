//! The Google Gemini wire API (`api: "google-generative-ai"`).
//!
//! Follows the Gemini API reference and guides at ai.google.dev (`models.streamGenerateContent`,
//! "Function calling", "Thinking", "Thought signatures", "Troubleshooting / API errors"):
//!
//! - `POST {baseUrl}/models/{model}:streamGenerateContent?alt=sse` (`baseUrl` defaults to
//!   `https://generativelanguage.googleapis.com/v1beta`; a model given as `models/x` or
//!   `tunedModels/x` is used as is), the key in the `x-goog-api-key` header, never in the URL.
//! - Body: `contents` (`user` / `model` turns of `parts`: `text`, `inlineData {mimeType, data}`,
//!   `functionCall {name, args}` with its `thoughtSignature` sibling, `functionResponse {name,
//!   response}` in the following `user` turn, `thought: true` parts), `systemInstruction`,
//!   `tools[].functionDeclarations[]` and `generationConfig {maxOutputTokens, thinkingConfig}`.
//! - Tool schemas go in `parametersJsonSchema` (v1beta; mutually exclusive with `parameters`),
//!   which takes JSON Schema as is, so clawline's schemas need no translation to the OpenAPI
//!   subset `parameters` accepts; only the top-level `$schema` marker is dropped.
//! - Every SSE event is a whole `GenerateContentResponse`: `candidates[0].content.parts`,
//!   `candidates[0].finishReason` on the last one, cumulative `usageMetadata`, `responseId`,
//!   `promptFeedback.blockReason` when the prompt itself was refused. There is no end marker
//!   besides `finishReason`: a stream that ends without one is a protocol error. A failure after
//!   the stream started arrives as a bare `{"error": …}` JSON object (not an SSE `data:` line),
//!   or as a `data:` event with the same object; both are classified like HTTP errors.
//! - Errors are `{"error": {"code", "message", "status", "details"}}`, `RetryInfo.retryDelay`
//!   in `details` says how long to wait after a 429.
//!
//! Thought signatures are returned exactly where they came from: on the `functionCall` part
//! (`ContentBlock::ToolCall::thought_signature`), on a thought part (`ContentBlock::Thinking`
//! signature), and for a signature on a text part or on an empty signature-only part, as an
//! empty `Thinking` block right after the text it belongs to. Turns produced by another API
//! carry no Gemini signatures; their first function call of a turn is sent with Google's
//! documented placeholder so that Gemini 3 accepts the history.
//!
//! It must not put the API key in a URL or a message, and must not send signatures or call ids
//! to Gemini that Gemini did not issue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clawline_core::message::{AssistantMessage, ContentBlock, Message, StopReason, Usage, UserContent};
use futures_util::StreamExt;
use serde_json::{Map, Value, json};

use crate::error::{ErrorKind, ProviderError};
use crate::http_util::{parse_json, scrub, transport_error};
use crate::sse::SseDecoder;
use crate::types::{ModelRequest, StreamEvent};

pub const API: &str = "google-generative-ai";
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com/v1beta";
/// The signature Google documents for function calls the model did not produce itself (history
/// from another provider), so that Gemini 3 does not refuse them for lacking one.
pub const FOREIGN_SIGNATURE: &str = "skip_thought_signature_validator";
/// Ids clawline makes up for calls Gemini sent without an `id`; they are never sent back.
const GENERATED_ID_PREFIX: &str = "gemini-call-";
/// Non-SSE text kept from a stream (a bare error object) is capped at this size.
const MAX_STRAY: usize = 64 * 1024;

/// The request URL for a base URL such as `https://generativelanguage.googleapis.com/v1beta`.
pub fn endpoint(base_url: &str, model: &str) -> String {
    let base = base_url.trim().trim_end_matches('/');
    let base = if base.is_empty() { DEFAULT_BASE_URL } else { base };
    let model = model.trim().trim_start_matches('/');
    let path = if model.starts_with("models/") || model.starts_with("tunedModels/") {
        model.to_string()
    } else {
        format!("models/{model}")
    };
    format!("{base}/{}:streamGenerateContent?alt=sse", encode_path(&path))
}

/// Percent-encodes what may not appear in a URL path (the `/` between segments stays).
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/' | b'@' | b'+') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn user_parts(content: &UserContent) -> Vec<Value> {
    match content {
        UserContent::Text(t) if t.is_empty() => vec![],
        UserContent::Text(t) => vec![json!({"text": t})],
        UserContent::Blocks(blocks) => blocks.iter().filter_map(block_part).collect(),
    }
}

/// A text or image block as a part (other blocks have no place in user content).
fn block_part(b: &ContentBlock) -> Option<Value> {
    match b {
        ContentBlock::Text { text } if !text.is_empty() => Some(json!({"text": text})),
        ContentBlock::Image { data, mime_type } => Some(json!({"inlineData": {"mimeType": mime_type, "data": data}})),
        _ => None,
    }
}

/// Whether a call id came from Gemini (and so may be sent back).
fn sendable_id(own: bool, id: &str) -> bool {
    own && !id.is_empty() && !id.starts_with(GENERATED_ID_PREFIX)
}

/// The parts of an assistant turn.
fn model_parts(a: &AssistantMessage, calls: &mut Vec<(String, String, bool)>) -> Vec<Value> {
    // Signatures only mean something to the API that issued them.
    let own = a.api == API;
    let mut parts: Vec<Value> = Vec::new();
    let mut signed_call = false;
    for b in &a.content {
        match b {
            ContentBlock::Text { text } if !text.is_empty() => parts.push(json!({"text": text})),
            ContentBlock::Thinking { thinking, signature: Some(sig) } if own && !sig.is_empty() => {
                if thinking.is_empty() {
                    // A signature that came on the text before it (or on an empty part).
                    match parts.last_mut().and_then(Value::as_object_mut) {
                        Some(last) if !last.contains_key("thoughtSignature") => {
                            last.insert("thoughtSignature".into(), json!(sig));
                        }
                        _ => {}
                    }
                } else {
                    parts.push(json!({"text": thinking, "thought": true, "thoughtSignature": sig}));
                }
            }
            ContentBlock::ToolCall { id, name, arguments, thought_signature } => {
                let args = if arguments.is_object() { arguments.clone() } else { json!({}) };
                let send_id = sendable_id(own, id);
                let mut call = json!({"name": name, "args": args});
                if send_id {
                    call["id"] = json!(id);
                }
                let mut part = json!({"functionCall": call});
                let sig = if own { thought_signature.clone().filter(|s| !s.is_empty()) } else { None };
                match sig {
                    Some(sig) => {
                        part["thoughtSignature"] = json!(sig);
                        signed_call = true;
                    }
                    // Gemini signs the first call of a step; history it did not write gets the
                    // documented placeholder there.
                    None if !own && !signed_call => {
                        part["thoughtSignature"] = json!(FOREIGN_SIGNATURE);
                        signed_call = true;
                    }
                    None => {}
                }
                calls.push((id.clone(), name.clone(), send_id));
                parts.push(part);
            }
            _ => {}
        }
    }
    parts
}

/// Converts a conversation to `contents`, merging consecutive turns of one role.
pub fn wire_contents(messages: &[Message]) -> Vec<Value> {
    // Calls seen so far: (id, name, whether the id may be sent back).
    let mut calls: Vec<(String, String, bool)> = Vec::new();
    let mut out: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in messages {
        let (role, mut parts) = match m {
            Message::User(u) => ("user", user_parts(&u.content)),
            Message::Assistant(a) => ("model", model_parts(a, &mut calls)),
            Message::ToolResult(r) => {
                let text = clawline_core::message::join_text(&r.content);
                let known = calls.iter().rev().find(|(id, _, _)| *id == r.tool_call_id);
                // The response must carry the name of the call it answers.
                let name = known.map(|(_, n, _)| n.clone()).unwrap_or_else(|| r.tool_name.clone());
                let response = if r.is_error { json!({"error": text}) } else { json!({"output": text}) };
                let mut fr = json!({"name": name, "response": response});
                if known.is_some_and(|(_, _, send)| *send) {
                    fr["id"] = json!(r.tool_call_id);
                }
                let mut parts = vec![json!({"functionResponse": fr})];
                parts.extend(
                    r.content.iter().filter(|b| matches!(b, ContentBlock::Image { .. })).filter_map(block_part),
                );
                ("user", parts)
            }
        };
        if parts.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some((last_role, last)) if *last_role == role => {
                // Function responses open the user turn that follows the calls.
                if role == "user" && parts.iter().any(|p| p.get("functionResponse").is_some()) {
                    let at = last.iter().take_while(|p| p.get("functionResponse").is_some()).count();
                    last.splice(at..at, parts);
                } else {
                    last.append(&mut parts);
                }
            }
            _ => out.push((role, parts)),
        }
    }
    out.into_iter().map(|(role, parts)| json!({"role": role, "parts": parts})).collect()
}

/// A tool's JSON Schema for `parametersJsonSchema`: it must describe an object.
fn tool_schema(parameters: &Value) -> Value {
    match parameters {
        Value::Object(m) if !m.is_empty() => {
            let mut m = m.clone();
            m.remove("$schema");
            Value::Object(m)
        }
        _ => json!({"type": "object", "properties": {}}),
    }
}

/// The JSON request body.
pub fn request_body(req: &ModelRequest) -> Value {
    let mut body = json!({"contents": wire_contents(&req.messages)});
    if !req.system.is_empty() {
        body["systemInstruction"] = json!({"parts": [{"text": req.system}]});
    }
    if !req.tools.is_empty() {
        let decls: Vec<Value> = req
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "parametersJsonSchema": tool_schema(&t.parameters)}))
            .collect();
        body["tools"] = json!([{"functionDeclarations": decls}]);
    }
    let mut config = Map::new();
    if req.max_tokens > 0 {
        config.insert("maxOutputTokens".into(), json!(req.max_tokens));
    }
    // A budget of 0 means "not set", as for the other APIs: some Gemini models cannot turn
    // thinking off and refuse `thinkingBudget: 0`.
    if let Some(budget) = req.thinking_budget.filter(|b| *b > 0) {
        config.insert("thinkingConfig".into(), json!({"thinkingBudget": budget, "includeThoughts": true}));
    }
    if !config.is_empty() {
        body["generationConfig"] = Value::Object(config);
    }
    body
}

/// The error object of an error body, which may also come wrapped in an array.
fn error_object(v: &Value) -> Option<&Value> {
    match v {
        Value::Array(items) => items.first().and_then(error_object),
        Value::Object(m) => m.get("error").filter(|e| e.is_object()),
        _ => None,
    }
}

/// `RetryInfo.retryDelay` (a protobuf duration such as `"22s"` or `"1.5s"`) from `details`.
pub(crate) fn retry_delay(error: &Value) -> Option<Duration> {
    let details = error.get("details")?.as_array()?;
    details.iter().find_map(|d| {
        let s = d.get("retryDelay")?.as_str()?.trim().strip_suffix('s')?;
        let secs = s.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0)?;
        Some(Duration::from_millis((secs * 1000.0) as u64))
    })
}

/// Maps an error object to a kind. Gemini answers a wrong key with 400 `INVALID_ARGUMENT`
/// (`API_KEY_INVALID`), a missing one with 403. A 429 `RESOURCE_EXHAUSTED` is a rate limit (its
/// "check your plan and billing details" wording is the same for per-minute and per-day quotas);
/// only a drained prepaid balance (402, or "credits are depleted"), `BILLING_DISABLED` and the
/// "enable billing" `FAILED_PRECONDITION` are billing, since waiting will not fix them.
fn classify(code: Option<u16>, error: &Value) -> ErrorKind {
    let status = error.get("status").and_then(Value::as_str).unwrap_or_default();
    let message = error.get("message").and_then(Value::as_str).unwrap_or_default().to_lowercase();
    let reasons: Vec<&str> = error
        .get("details")
        .and_then(Value::as_array)
        .map(|d| d.iter().filter_map(|x| x.get("reason").and_then(Value::as_str)).collect())
        .unwrap_or_default();
    let reason = |r: &str| reasons.contains(&r);
    let code = code.or_else(|| error.get("code").and_then(Value::as_u64).and_then(|c| u16::try_from(c).ok()));
    let billing = code == Some(402)
        || reason("BILLING_DISABLED")
        || (message.contains("credit") && message.contains("depleted"))
        || (status == "FAILED_PRECONDITION" && message.contains("billing"));
    let context = message.contains("exceeds the maximum number of tokens")
        || message.contains("input token count")
        || message.contains("too many tokens");
    match (code, status) {
        _ if reason("API_KEY_INVALID")
            || reason("API_KEY_EXPIRED")
            || message.contains("api key not valid")
            || message.contains("api key expired") =>
        {
            ErrorKind::Auth
        }
        _ if billing => ErrorKind::Billing,
        (Some(401 | 403), _) | (_, "UNAUTHENTICATED" | "PERMISSION_DENIED") => ErrorKind::Auth,
        (Some(429), _) | (_, "RESOURCE_EXHAUSTED") => ErrorKind::RateLimited,
        (Some(503), _) | (_, "UNAVAILABLE") => ErrorKind::Overloaded,
        (Some(504 | 408), _) | (_, "DEADLINE_EXCEEDED") => ErrorKind::Timeout,
        _ if context => ErrorKind::ContextLength,
        (Some(s), _) if s >= 500 => ErrorKind::Server,
        (_, "INTERNAL" | "UNKNOWN" | "CANCELLED") => ErrorKind::Server,
        (Some(_), _) => ErrorKind::BadRequest,
        (None, "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "NOT_FOUND" | "OUT_OF_RANGE") => ErrorKind::BadRequest,
        (None, _) => ErrorKind::Server,
    }
}

/// An error from an HTTP error body or an error object in the stream (`status: None`).
pub(crate) fn error_from(provider: &str, status: Option<u16>, body: &str, key: Option<&str>) -> ProviderError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let fallback;
    let error = match parsed.as_ref().and_then(error_object) {
        Some(e) => e,
        None => {
            fallback = json!({"message": clawline_core::text::truncate_chars(body.trim(), 300).0});
            &fallback
        }
    };
    let kind = classify(status, error);
    let mut text = status.map(|s| format!("HTTP {s}")).unwrap_or_default();
    let mut add = |sep: &str, piece: &str| {
        if !piece.is_empty() {
            if !text.is_empty() {
                text.push_str(sep);
            }
            text.push_str(piece);
        }
    };
    add(" ", error.get("status").and_then(Value::as_str).unwrap_or_default());
    add(": ", error.get("message").and_then(Value::as_str).unwrap_or_default());
    ProviderError {
        kind,
        provider: provider.to_string(),
        status,
        message: scrub(&text, key),
        retry_after: retry_delay(error),
    }
}

fn malformed(provider: &str, why: &str, data: &str) -> ProviderError {
    let (shown, cut) = clawline_core::text::truncate_chars(data, 200);
    ProviderError::new(
        ErrorKind::Protocol,
        provider,
        format!("malformed event from the model server ({why}): {shown}{}", if cut { "…" } else { "" }),
    )
}

enum Block {
    Text { text: String, signature: Option<String> },
    Thinking { text: String, signature: Option<String> },
    Tool { id: String, name: String, arguments: Value, signature: Option<String> },
}

/// Accumulates a streamed answer.
pub(crate) struct Accumulator {
    blocks: Vec<Block>,
    id_seed: String,
    calls: usize,
    prompt: u64,
    cached: u64,
    candidates: u64,
    thoughts: u64,
    tool_prompt: u64,
    finish: Option<String>,
    finish_message: Option<String>,
    blocked: Option<String>,
    response_id: Option<String>,
}

fn count(v: &Value, field: &str) -> Option<u64> {
    v.get(field).and_then(Value::as_u64)
}

impl Accumulator {
    /// `id_seed` makes the ids generated for calls Gemini sent without one unique.
    pub(crate) fn new(id_seed: &str) -> Self {
        Accumulator {
            blocks: Vec::new(),
            id_seed: id_seed.to_string(),
            calls: 0,
            prompt: 0,
            cached: 0,
            candidates: 0,
            thoughts: 0,
            tool_prompt: 0,
            finish: None,
            finish_message: None,
            blocked: None,
            response_id: None,
        }
    }

    pub(crate) fn finished(&self) -> bool {
        self.finish.is_some() || self.blocked.is_some()
    }

    fn take_usage(&mut self, u: &Value) {
        // Counts are cumulative: the latest value of each wins.
        if let Some(v) = count(u, "promptTokenCount") {
            self.prompt = v;
        }
        if let Some(v) = count(u, "cachedContentTokenCount") {
            self.cached = v;
        }
        if let Some(v) = count(u, "candidatesTokenCount") {
            self.candidates = v;
        }
        if let Some(v) = count(u, "thoughtsTokenCount") {
            self.thoughts = v;
        }
        if let Some(v) = count(u, "toolUsePromptTokenCount") {
            self.tool_prompt = v;
        }
    }

    /// Puts a signature that came on a part with no content of its own on the block before it.
    fn attach_signature(&mut self, sig: String) {
        match self.blocks.last_mut() {
            Some(Block::Text { signature, .. } | Block::Thinking { signature, .. } | Block::Tool { signature, .. })
                if signature.is_none() =>
            {
                *signature = Some(sig)
            }
            _ => self.blocks.push(Block::Thinking { text: String::new(), signature: Some(sig) }),
        }
    }

    fn apply_part(&mut self, part: &Value, on_event: &mut (dyn FnMut(StreamEvent) + Send)) {
        let sig = part.get("thoughtSignature").and_then(Value::as_str).filter(|s| !s.is_empty()).map(String::from);
        if let Some(call) = part.get("functionCall") {
            let name = call.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            let id = match call.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()) {
                Some(id) => id.to_string(),
                None => format!("{GENERATED_ID_PREFIX}{}-{}", self.id_seed, self.calls),
            };
            self.calls += 1;
            let arguments = match call.get("args") {
                None | Some(Value::Null) => json!({}),
                Some(v) => v.clone(),
            };
            on_event(StreamEvent::ToolCallStarted { id: id.clone(), name: name.clone() });
            self.blocks.push(Block::Tool { id, name, arguments, signature: sig });
            return;
        }
        let Some(piece) = part.get("text").and_then(Value::as_str) else {
            // Parts clawline does not use (model-made images, code execution) keep only their
            // signature.
            if let Some(sig) = sig {
                self.attach_signature(sig);
            }
            return;
        };
        let thought = part.get("thought").and_then(Value::as_bool).unwrap_or(false);
        if piece.is_empty() {
            if let Some(sig) = sig {
                self.attach_signature(sig);
            }
            return;
        }
        if thought {
            on_event(StreamEvent::ThinkingDelta(piece.to_string()));
        } else {
            on_event(StreamEvent::TextDelta(piece.to_string()));
        }
        // A signature closes its block: the next piece starts a new one.
        let mut sig = sig;
        let extended = match self.blocks.last_mut() {
            Some(Block::Thinking { text, signature }) if thought && signature.is_none() => {
                text.push_str(piece);
                *signature = sig.take();
                true
            }
            Some(Block::Text { text, signature }) if !thought && signature.is_none() => {
                text.push_str(piece);
                *signature = sig.take();
                true
            }
            _ => false,
        };
        if !extended {
            let text = piece.to_string();
            self.blocks.push(if thought {
                Block::Thinking { text, signature: sig }
            } else {
                Block::Text { text, signature: sig }
            });
        }
    }

    /// Applies one SSE event. Returns true once the answer is complete.
    pub(crate) fn apply(
        &mut self,
        provider: &str,
        data: &str,
        key: Option<&str>,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<bool, ProviderError> {
        let v: Value = parse_json(provider, data)?;
        if !v.is_object() {
            return Err(malformed(provider, "expected a GenerateContentResponse object", data));
        }
        if error_object(&v).is_some() {
            return Err(error_from(provider, None, data, key));
        }
        if let Some(id) = v.get("responseId").and_then(Value::as_str) {
            self.response_id = Some(id.to_string());
        }
        let usage = v.get("usageMetadata").filter(|u| u.is_object());
        if let Some(u) = usage {
            self.take_usage(u);
        }
        if let Some(reason) = v.pointer("/promptFeedback/blockReason").and_then(Value::as_str) {
            self.blocked = Some(reason.to_string());
        }
        let candidate = v.get("candidates").and_then(Value::as_array).and_then(|c| {
            c.iter().find(|x| x.get("index").and_then(Value::as_u64).unwrap_or(0) == 0).or_else(|| c.first())
        });
        if let Some(c) = candidate {
            if let Some(parts) = c.pointer("/content/parts").and_then(Value::as_array) {
                for part in parts {
                    self.apply_part(part, on_event);
                }
            }
            if let Some(r) = c.get("finishReason").and_then(Value::as_str) {
                self.finish = Some(r.to_string());
            }
            if let Some(m) = c.get("finishMessage").and_then(Value::as_str) {
                self.finish_message = Some(m.to_string());
            }
        }
        // The last event carries the finish reason with the final usage.
        Ok(self.finished() && usage.is_some())
    }

    pub(crate) fn finish(self, provider: &str, model: &str, now_ms: i64) -> Result<AssistantMessage, ProviderError> {
        let Some(finish) = self.finish else {
            if let Some(reason) = self.blocked {
                return Err(ProviderError::new(
                    ErrorKind::BadRequest,
                    provider,
                    format!("Gemini refused the prompt (promptFeedback.blockReason {reason})"),
                ));
            }
            return Err(ProviderError::new(
                ErrorKind::Protocol,
                provider,
                "the stream ended before the model finished (no finishReason)",
            ));
        };
        let mut content = Vec::new();
        let mut has_calls = false;
        for block in self.blocks {
            match block {
                Block::Text { text, signature } => {
                    content.push(ContentBlock::Text { text });
                    if signature.is_some() {
                        content.push(ContentBlock::Thinking { thinking: String::new(), signature });
                    }
                }
                Block::Thinking { text, signature } => {
                    content.push(ContentBlock::Thinking { thinking: text, signature })
                }
                Block::Tool { id, name, arguments, signature } => {
                    has_calls = true;
                    content.push(ContentBlock::ToolCall { id, name, arguments, thought_signature: signature });
                }
            }
        }
        let (stop_reason, error_message) = match finish.as_str() {
            "STOP" | "FINISH_REASON_UNSPECIFIED" if has_calls => (StopReason::ToolUse, None),
            "STOP" | "FINISH_REASON_UNSPECIFIED" => (StopReason::Stop, None),
            "MAX_TOKENS" => (StopReason::Length, None),
            other => {
                let why = match other {
                    "SAFETY"
                    | "IMAGE_SAFETY"
                    | "PROHIBITED_CONTENT"
                    | "IMAGE_PROHIBITED_CONTENT"
                    | "BLOCKLIST"
                    | "SPII" => "Gemini blocked the answer",
                    "RECITATION" | "IMAGE_RECITATION" => "Gemini stopped the answer for reciting a source",
                    "MALFORMED_FUNCTION_CALL" | "UNEXPECTED_TOOL_CALL" | "TOO_MANY_TOOL_CALLS" => {
                        "Gemini could not produce a valid tool call"
                    }
                    _ => "Gemini stopped the answer",
                };
                let mut m = format!("{why} (finishReason {other})");
                if let Some(detail) = self.finish_message.as_deref().filter(|d| !d.is_empty()) {
                    m.push_str(": ");
                    m.push_str(detail);
                }
                (StopReason::Error, Some(m))
            }
        };
        let usage = Usage {
            input: self.prompt.saturating_sub(self.cached) + self.tool_prompt,
            output: self.candidates + self.thoughts,
            cache_read: self.cached,
            cache_write: 0,
            total_tokens: self.prompt.saturating_sub(self.cached)
                + self.tool_prompt
                + self.candidates
                + self.thoughts
                + self.cached,
            cost: Default::default(),
        };
        Ok(AssistantMessage {
            content,
            api: API.to_string(),
            provider: provider.to_string(),
            model: model.to_string(),
            usage,
            stop_reason,
            timestamp: now_ms,
            response_id: self.response_id,
            error_message,
        })
    }
}

/// Lines of the body that are not SSE (a bare JSON error object after the stream started).
#[derive(Default)]
pub(crate) struct StrayLines {
    line: Vec<u8>,
    text: String,
}

impl StrayLines {
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        for &b in chunk {
            if b == b'\n' {
                self.end_line();
            } else if self.line.len() < MAX_STRAY {
                self.line.push(b);
            }
        }
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches('\r');
        let field = line.split(':').next().unwrap_or_default();
        let sse = line.is_empty() || line.starts_with(':') || matches!(field, "data" | "event" | "id" | "retry");
        if !sse && self.text.len() + line.len() < MAX_STRAY {
            self.text.push_str(line);
            self.text.push('\n');
        }
    }

    /// What was collected, once the stream ended.
    pub(crate) fn finish(mut self) -> String {
        if !self.line.is_empty() {
            self.end_line();
        }
        self.text
    }
}

/// Reads the event stream into `acc`, failing with `Timeout` when nothing arrives for `idle`.
async fn read_stream(
    provider: &str,
    resp: reqwest::Response,
    idle: Duration,
    key: Option<&str>,
    acc: &mut Accumulator,
    on_event: &mut (dyn FnMut(StreamEvent) + Send),
) -> Result<(), ProviderError> {
    let mut stream = resp.bytes_stream();
    let mut decoder = SseDecoder::default();
    let mut stray = StrayLines::default();
    let mut events = Vec::new();
    let protocol = |e: crate::sse::SseError| {
        ProviderError::new(ErrorKind::Protocol, provider, format!("malformed event stream: {e}"))
    };
    loop {
        let next = tokio::time::timeout(idle, stream.next()).await.map_err(|_| {
            ProviderError::new(ErrorKind::Timeout, provider, format!("no data from the model for {} s", idle.as_secs()))
        })?;
        let done = match next {
            Some(Ok(chunk)) => {
                decoder.push(&chunk, &mut events).map_err(protocol)?;
                stray.push(&chunk);
                false
            }
            Some(Err(e)) => return Err(transport_error(provider, &e, key)),
            None => {
                decoder.finish(&mut events).map_err(protocol)?;
                true
            }
        };
        for event in events.drain(..) {
            if acc.apply(provider, &event.data, key, on_event)? {
                return Ok(());
            }
        }
        if done {
            break;
        }
    }
    let stray = stray.finish();
    let stray = stray.trim();
    if !acc.finished() && !stray.is_empty() {
        if serde_json::from_str::<Value>(stray).ok().as_ref().and_then(error_object).is_some() {
            return Err(error_from(provider, None, stray, key));
        }
        return Err(malformed(provider, "not an SSE event", &scrub(stray, key)));
    }
    Ok(())
}

static CALLS: AtomicU64 = AtomicU64::new(0);

/// Makes one streaming call.
pub(crate) async fn call(
    http: &reqwest::Client,
    settings: &clawline_core::config::ProviderSettings,
    req: &ModelRequest,
    on_event: &mut (dyn FnMut(StreamEvent) + Send),
) -> Result<AssistantMessage, ProviderError> {
    let provider = settings.id.as_str();
    let key = settings.api_key.as_ref().map(|k| k.expose()).filter(|k| !k.is_empty());
    let mut builder = http
        .post(endpoint(&settings.base_url, &req.model))
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .json(&request_body(req))
        .headers(crate::http_util::trace_headers(req));
    match (key, settings.bearer) {
        // An OAuth access token (a Google sign-in) instead of an API key.
        (Some(k), true) => builder = builder.bearer_auth(k),
        (Some(k), false) => builder = builder.header("x-goog-api-key", k),
        (None, _) => {}
    }
    let (resp, idle) = crate::http_util::send_model_request(builder, settings, key, |status, body| {
        error_from(provider, Some(status), body, key)
    })
    .await?;
    let seed = format!("{:x}-{}", crate::client::now_ms(), CALLS.fetch_add(1, Ordering::Relaxed));
    let mut acc = Accumulator::new(&seed);
    read_stream(provider, resp, idle, key, &mut acc, on_event).await?;
    let mut msg = acc.finish(provider, &req.model, crate::client::now_ms())?;
    crate::client::price(&mut msg.usage, &req.cost);
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ToolSpec;
    use clawline_core::message::{ToolResultMessage, UserMessage};

    fn user(t: &str) -> Message {
        Message::User(UserMessage { content: UserContent::Text(t.into()), timestamp: 0, idempotency_key: None })
    }

    fn assistant(api: &str, content: Vec<ContentBlock>) -> Message {
        Message::Assistant(AssistantMessage {
            content,
            api: api.into(),
            provider: "p".into(),
            model: "m".into(),
            usage: Usage::default(),
            stop_reason: StopReason::ToolUse,
            timestamp: 0,
            response_id: None,
            error_message: None,
        })
    }

    fn call(id: &str, name: &str, sig: Option<&str>) -> ContentBlock {
        ContentBlock::ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: json!({"path": "."}),
            thought_signature: sig.map(String::from),
        }
    }

    fn result(id: &str, name: &str, text: &str, is_error: bool) -> Message {
        Message::ToolResult(ToolResultMessage {
            tool_call_id: id.into(),
            tool_name: name.into(),
            content: vec![ContentBlock::Text { text: text.into() }],
            is_error,
            timestamp: 0,
        })
    }

    fn run(events: &[&str]) -> Result<(AssistantMessage, Vec<StreamEvent>), ProviderError> {
        let mut acc = Accumulator::new("t");
        let mut seen = Vec::new();
        let mut sink = |e: StreamEvent| seen.push(e);
        for e in events {
            if acc.apply("gemini", e, Some("AIzaSECRETKEY"), &mut sink)? {
                break;
            }
        }
        let msg = acc.finish("gemini", "gemini-2.5-flash", 0)?;
        Ok((msg, seen))
    }

    #[test]
    fn builds_the_endpoint_without_doubling_models() {
        assert_eq!(
            endpoint("https://generativelanguage.googleapis.com/v1beta/", "gemini-2.5-flash"),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        assert_eq!(
            endpoint("http://h/v1beta", "models/gemini-3-pro"),
            "http://h/v1beta/models/gemini-3-pro:streamGenerateContent?alt=sse"
        );
        assert_eq!(
            endpoint("http://h/v1beta", "tunedModels/abc"),
            "http://h/v1beta/tunedModels/abc:streamGenerateContent?alt=sse"
        );
        assert_eq!(endpoint("", "a b?"), format!("{DEFAULT_BASE_URL}/models/a%20b%3F:streamGenerateContent?alt=sse"));
    }

    #[test]
    fn builds_contents_with_calls_responses_and_signatures() {
        let own = assistant(
            API,
            vec![
                ContentBlock::Thinking { thinking: "plan".into(), signature: Some("c2lnLXQ=".into()) },
                ContentBlock::Thinking { thinking: "unsigned summary".into(), signature: None },
                ContentBlock::Text { text: "Looking.".into() },
                call("gemini-call-x-0", "ls", Some("c2lnLWE=")),
                call("fc_7", "read", None),
            ],
        );
        let msgs = vec![
            user("what is here?"),
            user(""),
            own,
            result("fc_7", "read", "boom", true),
            result("gemini-call-x-0", "wrong-name", "a.txt", false),
            user("thanks"),
        ];
        let c = wire_contents(&msgs);
        assert_eq!(c.len(), 3);
        assert_eq!(c[0], json!({"role": "user", "parts": [{"text": "what is here?"}]}));
        assert_eq!(
            c[1]["parts"],
            json!([
                {"text": "plan", "thought": true, "thoughtSignature": "c2lnLXQ="},
                {"text": "Looking."},
                {"functionCall": {"name": "ls", "args": {"path": "."}}, "thoughtSignature": "c2lnLWE="},
                {"functionCall": {"name": "read", "args": {"path": "."}, "id": "fc_7"}},
            ])
        );
        assert_eq!(c[1]["role"], "model");
        // Responses open the user turn, named after the call; only Gemini's own ids go back.
        assert_eq!(
            c[2]["parts"],
            json!([
                {"functionResponse": {"name": "read", "response": {"error": "boom"}, "id": "fc_7"}},
                {"functionResponse": {"name": "ls", "response": {"output": "a.txt"}}},
                {"text": "thanks"},
            ])
        );
    }

    #[test]
    fn foreign_history_gets_the_placeholder_signature_and_no_ids() {
        let foreign = assistant(
            "anthropic-messages",
            vec![
                ContentBlock::Thinking { thinking: "t".into(), signature: Some("anthropic-sig".into()) },
                call("toolu_1", "ls", Some("not-ours")),
                call("toolu_2", "ls", None),
            ],
        );
        let c = wire_contents(&[
            user("hi"),
            foreign,
            result("toolu_1", "ls", "x", false),
            result("toolu_2", "ls", "y", false),
        ]);
        assert_eq!(
            c[1]["parts"],
            json!([
                {"functionCall": {"name": "ls", "args": {"path": "."}}, "thoughtSignature": FOREIGN_SIGNATURE},
                {"functionCall": {"name": "ls", "args": {"path": "."}}},
            ])
        );
        assert!(c[2]["parts"][0]["functionResponse"].get("id").is_none());
    }

    #[test]
    fn text_signatures_go_back_on_the_text_part() {
        let own = assistant(
            API,
            vec![
                ContentBlock::Text { text: "Answer.".into() },
                ContentBlock::Thinking { thinking: String::new(), signature: Some("dGV4dA==".into()) },
            ],
        );
        let c = wire_contents(&[user("q"), own]);
        assert_eq!(c[1]["parts"], json!([{"text": "Answer.", "thoughtSignature": "dGV4dA=="}]));
    }

    #[test]
    fn builds_the_request_body() {
        let req = ModelRequest {
            model: "gemini-2.5-flash".into(),
            system: "Be terse.".into(),
            messages: vec![Message::User(UserMessage {
                content: UserContent::Blocks(vec![
                    ContentBlock::Text { text: "see".into() },
                    ContentBlock::Image { data: "iVBORw0KGgo=".into(), mime_type: "image/png".into() },
                ]),
                timestamp: 0,
                idempotency_key: None,
            })],
            tools: vec![
                ToolSpec {
                    name: "ls".into(),
                    description: "List.".into(),
                    parameters: json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
                        "properties": {"path": {"type": "string"}}, "additionalProperties": false}),
                },
                ToolSpec { name: "now".into(), description: "Time.".into(), parameters: json!({}) },
            ],
            max_tokens: 1024,
            thinking_budget: Some(2048),
            ..Default::default()
        };
        let b = request_body(&req);
        assert_eq!(b["systemInstruction"], json!({"parts": [{"text": "Be terse."}]}));
        assert_eq!(
            b["contents"][0]["parts"][1],
            json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}})
        );
        let decls = &b["tools"][0]["functionDeclarations"];
        assert_eq!(
            decls[0]["parametersJsonSchema"],
            json!({"type": "object", "properties": {"path": {"type": "string"}}, "additionalProperties": false})
        );
        assert_eq!(decls[1]["parametersJsonSchema"], json!({"type": "object", "properties": {}}));
        assert!(decls[0].get("parameters").is_none());
        assert_eq!(
            b["generationConfig"],
            json!({"maxOutputTokens": 1024, "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": true}})
        );
        let plain = request_body(&ModelRequest { thinking_budget: Some(0), max_tokens: 0, ..req.clone() });
        assert!(plain.get("generationConfig").is_none());
    }

    #[test]
    fn assembles_thoughts_text_calls_and_usage() {
        let (msg, seen) = run(&[
            r#"{"candidates":[{"content":{"parts":[{"text":"Think","thought":true}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":100,"totalTokenCount":104,"thoughtsTokenCount":4},"responseId":"r1"}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"ing.","thought":true,"thoughtSignature":"c2ln"}],"role":"model"},"index":0}]}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"Let me "},{"text":"look."}],"role":"model"},"index":0}]}"#,
            r#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"ls","args":{"path":"."}},"thoughtSignature":"ZmM="},{"functionCall":{"id":"fc_2","name":"read"}}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":100,"cachedContentTokenCount":60,"candidatesTokenCount":20,"thoughtsTokenCount":12,"totalTokenCount":132}}"#,
        ])
        .unwrap();
        assert_eq!(
            msg.content,
            vec![
                ContentBlock::Thinking { thinking: "Thinking.".into(), signature: Some("c2ln".into()) },
                ContentBlock::Text { text: "Let me look.".into() },
                ContentBlock::ToolCall {
                    id: "gemini-call-t-0".into(),
                    name: "ls".into(),
                    arguments: json!({"path": "."}),
                    thought_signature: Some("ZmM=".into())
                },
                ContentBlock::ToolCall {
                    id: "fc_2".into(),
                    name: "read".into(),
                    arguments: json!({}),
                    thought_signature: None
                },
            ]
        );
        assert_eq!(msg.stop_reason, StopReason::ToolUse);
        assert_eq!(msg.response_id.as_deref(), Some("r1"));
        let u = msg.usage;
        assert_eq!((u.input, u.cache_read, u.cache_write, u.output, u.total_tokens), (40, 60, 0, 32, 132));
        assert_eq!(seen[0], StreamEvent::ThinkingDelta("Think".into()));
        assert_eq!(seen[2], StreamEvent::TextDelta("Let me ".into()));
        assert_eq!(seen[4], StreamEvent::ToolCallStarted { id: "gemini-call-t-0".into(), name: "ls".into() });
        assert_eq!(seen[5], StreamEvent::ToolCallStarted { id: "fc_2".into(), name: "read".into() });
    }

    #[test]
    fn a_signature_on_an_empty_part_belongs_to_the_text_before_it() {
        let (msg, _) = run(&[
            r#"{"candidates":[{"content":{"parts":[{"text":"Four."}],"role":"model"},"index":0}]}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"","thoughtSignature":"dA=="}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":2,"totalTokenCount":5}}"#,
        ])
        .unwrap();
        assert_eq!(
            msg.content,
            vec![
                ContentBlock::Text { text: "Four.".into() },
                ContentBlock::Thinking { thinking: String::new(), signature: Some("dA==".into()) }
            ]
        );
        assert_eq!(msg.stop_reason, StopReason::Stop);
    }

    #[test]
    fn finish_reasons_and_blocked_prompts() {
        let usage = r#""usageMetadata":{"promptTokenCount":3,"totalTokenCount":3}"#;
        let (msg, _) = run(&[&format!(
            r#"{{"candidates":[{{"content":{{"parts":[{{"text":"cut"}}],"role":"model"}},"finishReason":"MAX_TOKENS","index":0}}],{usage}}}"#
        )])
        .unwrap();
        assert_eq!((msg.stop_reason, msg.error_message), (StopReason::Length, None));
        let (msg, _) = run(&[&format!(r#"{{"candidates":[{{"finishReason":"SAFETY","index":0}}],{usage}}}"#)]).unwrap();
        assert_eq!(msg.stop_reason, StopReason::Error);
        assert_eq!(msg.error_message.as_deref(), Some("Gemini blocked the answer (finishReason SAFETY)"));
        let e = run(&[&format!(r#"{{"promptFeedback":{{"blockReason":"PROHIBITED_CONTENT"}},{usage}}}"#)]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadRequest);
        assert!(e.message.contains("PROHIBITED_CONTENT"), "{e}");
        let e =
            run(&[r#"{"candidates":[{"content":{"parts":[{"text":"half"}],"role":"model"},"index":0}]}"#]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Protocol);
        let e = run(&["[1,2]"]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Protocol);
        assert!(e.message.contains("[1,2]"), "{e}");
    }

    #[test]
    fn error_events_in_the_stream_are_classified() {
        let e = run(&[r#"{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}"#])
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Overloaded);
        assert_eq!(e.message, "UNAVAILABLE: The model is overloaded. Please try again later.");
        assert_eq!(e.status, None);
    }

    #[test]
    fn classifies_http_errors() {
        let body = |code: u16, status: &str, message: &str| {
            json!({"error": {"code": code, "message": message, "status": status}}).to_string()
        };
        let k = |code: u16, status: &str, message: &str| {
            error_from("g", Some(code), &body(code, status, message), None).kind
        };
        let invalid_key = r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}"#;
        assert_eq!(error_from("g", Some(400), invalid_key, None).kind, ErrorKind::Auth);
        assert_eq!(k(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."), ErrorKind::Auth);
        assert_eq!(k(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers"), ErrorKind::Auth);
        assert_eq!(
            k(
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota, please check your plan and billing details."
            ),
            ErrorKind::RateLimited
        );
        assert_eq!(
            k(429, "RESOURCE_EXHAUSTED", "Your prepayment credits are depleted. Please go to AI Studio."),
            ErrorKind::Billing
        );
        assert_eq!(k(402, "RESOURCE_EXHAUSTED", "Your prepaid credit balance is depleted."), ErrorKind::Billing);
        assert_eq!(
            k(
                400,
                "FAILED_PRECONDITION",
                "Gemini API free tier is not available in your country. Please enable billing on your project in Google AI Studio."
            ),
            ErrorKind::Billing
        );
        assert_eq!(
            k(
                400,
                "INVALID_ARGUMENT",
                "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."
            ),
            ErrorKind::ContextLength
        );
        assert_eq!(k(400, "INVALID_ARGUMENT", "Invalid JSON payload received."), ErrorKind::BadRequest);
        assert_eq!(k(404, "NOT_FOUND", "models/x is not found"), ErrorKind::BadRequest);
        assert_eq!(k(500, "INTERNAL", "An internal error has occurred."), ErrorKind::Server);
        assert_eq!(k(503, "UNAVAILABLE", "The model is overloaded."), ErrorKind::Overloaded);
        assert_eq!(k(504, "DEADLINE_EXCEEDED", "Deadline exceeded."), ErrorKind::Timeout);
        let e = error_from("g", Some(502), "<html>Bad Gateway AIzaSECRETKEY</html>", Some("AIzaSECRETKEY"));
        assert_eq!((e.kind, e.message.as_str()), (ErrorKind::Server, "HTTP 502: <html>Bad Gateway [redacted]</html>"));
        let wrapped = format!("[{}]", body(429, "RESOURCE_EXHAUSTED", "slow"));
        assert_eq!(error_from("g", Some(429), &wrapped, None).message, "HTTP 429 RESOURCE_EXHAUSTED: slow");
    }

    #[test]
    fn reads_retry_info() {
        let e = json!({"details": [{"@type": "type.googleapis.com/google.rpc.Help"},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "22.5s"}]});
        assert_eq!(retry_delay(&e), Some(Duration::from_millis(22_500)));
        assert_eq!(retry_delay(&json!({"details": [{"retryDelay": "soon"}]})), None);
        let body = json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "quota", "details": [
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]}});
        assert_eq!(error_from("g", Some(429), &body.to_string(), None).retry_after, Some(Duration::from_secs(7)));
    }

    #[test]
    fn stray_lines_keep_only_what_is_not_sse() {
        let mut s = StrayLines::default();
        s.push(b"data: {\"a\":1}\r\n\r\n: keepalive\r\n{\n  \"error\": {\n    \"code\": 5");
        s.push(b"03\n  }\n}");
        assert_eq!(s.finish(), "{\n  \"error\": {\n    \"code\": 503\n  }\n}\n");
    }

    mod properties {
        use super::super::{Accumulator, StrayLines};
        use proptest::prelude::*;

        /// JSON shaped like Gemini stream events, nested arbitrarily.
        fn gemini_json() -> impl Strategy<Value = serde_json::Value> {
            let leaf = prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::Bool),
                any::<i64>().prop_map(serde_json::Value::from),
                prop_oneof![
                    Just("STOP".to_string()),
                    Just("MAX_TOKENS".to_string()),
                    Just("SAFETY".to_string()),
                    "\\PC{0,8}"
                ]
                .prop_map(serde_json::Value::String),
            ];
            let key = prop_oneof![
                Just("candidates".to_string()),
                Just("content".to_string()),
                Just("parts".to_string()),
                Just("text".to_string()),
                Just("thought".to_string()),
                Just("thoughtSignature".to_string()),
                Just("functionCall".to_string()),
                Just("name".to_string()),
                Just("args".to_string()),
                Just("id".to_string()),
                Just("finishReason".to_string()),
                Just("usageMetadata".to_string()),
                Just("promptTokenCount".to_string()),
                Just("cachedContentTokenCount".to_string()),
                Just("promptFeedback".to_string()),
                Just("blockReason".to_string()),
                Just("error".to_string()),
                Just("details".to_string()),
                Just("retryDelay".to_string()),
                Just("index".to_string()),
                "[a-z]{1,6}",
            ];
            leaf.prop_recursive(5, 48, 6, move |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                    prop::collection::btree_map(key.clone(), inner, 0..6)
                        .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #[test]
            fn arbitrary_events_never_panic(events in prop::collection::vec(gemini_json(), 0..10), raw in "\\PC{0,60}", bytes in prop::collection::vec(any::<u8>(), 0..200)) {
                let mut acc = Accumulator::new("p");
                let mut sink = |_e: crate::StreamEvent| {};
                let _ = acc.apply("p", &raw, None, &mut sink);
                for e in &events {
                    if acc.apply("p", &e.to_string(), None, &mut sink).is_err() {
                        break;
                    }
                }
                let _ = acc.finish("p", "m", 0);
                let _ = super::super::error_from("p", Some(429), &raw, Some("key1"));
                let mut stray = StrayLines::default();
                stray.push(&bytes);
                let _ = stray.finish();
            }
        }
    }
}
