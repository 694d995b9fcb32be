//! The OpenAI Chat Completions wire API (`api: "openai-completions"`).
//!
//! `POST {baseUrl}/chat/completions` with `Authorization: Bearer <key>`, `stream: true` and
//! `stream_options.include_usage`, per OpenAI's API reference. The response is an SSE stream of
//! `chat.completion.chunk` objects: `choices[0].delta` carries `content` and `tool_calls`
//! fragments (keyed by `index`; `id` and `function.name` arrive first, `function.arguments` in
//! pieces), `finish_reason` ends the choice, a final chunk with empty `choices` carries `usage`,
//! and `data: [DONE]` ends the stream. Errors are `{"error": {"message", "type", "code"}}`, as
//! the HTTP body or as an event mid-stream. The same format is spoken by llama.cpp, vLLM,
//! Ollama's `/v1`, LM Studio and most gateways.

use std::collections::BTreeMap;
use std::time::Duration;

use clawline_core::config::schema::MaxTokensField;
use clawline_core::message::{AssistantMessage, ContentBlock, Message, StopReason, Usage, UserContent};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ErrorKind, ProviderError};
use crate::http_util::{parse_json, read_error_body, read_sse, scrub, transport_error};
use crate::types::{ModelRequest, StreamEvent};

pub const API: &str = "openai-completions";

/// The request URL for a base URL such as `https://api.openai.com/v1`.
pub fn endpoint(base_url: &str) -> String {
    format!("{}/chat/completions", base_url.trim_end_matches('/'))
}

/// Arguments as the wire wants them: a JSON string (the model's own text when it was not JSON).
fn arguments_text(arguments: &Value) -> String {
    match arguments {
        Value::String(raw) => raw.clone(),
        other => other.to_string(),
    }
}

fn user_content(content: &UserContent) -> Value {
    match content {
        UserContent::Text(t) => Value::String(t.clone()),
        UserContent::Blocks(blocks) => Value::Array(
            blocks
                .iter()
                .filter_map(|b| match b {
                    ContentBlock::Text { text } => Some(json!({"type": "text", "text": text})),
                    ContentBlock::Image { data, mime_type } => Some(
                        json!({"type": "image_url", "image_url": {"url": format!("data:{mime_type};base64,{data}")}}),
                    ),
                    _ => None,
                })
                .collect(),
        ),
    }
}

/// Converts a conversation to the `messages` array.
pub fn wire_messages(system: &str, messages: &[Message]) -> Vec<Value> {
    let mut out = Vec::with_capacity(messages.len() + 1);
    if !system.is_empty() {
        out.push(json!({"role": "system", "content": system}));
    }
    for m in messages {
        match m {
            Message::User(u) => out.push(json!({"role": "user", "content": user_content(&u.content)})),
            Message::Assistant(a) => {
                let text = a.text();
                let calls: Vec<Value> = a
                    .tool_calls()
                    .map(|(id, name, args)| {
                        json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments_text(args)}})
                    })
                    .collect();
                if text.is_empty() && calls.is_empty() {
                    continue;
                }
                let mut msg = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { Value::String(text) }});
                if !calls.is_empty() {
                    msg["tool_calls"] = Value::Array(calls);
                }
                out.push(msg);
            }
            Message::ToolResult(r) => out.push(json!({
                "role": "tool",
                "tool_call_id": r.tool_call_id,
                "content": clawline_core::message::join_text(&r.content),
            })),
        }
    }
    out
}

/// OpenAI's `reasoning_effort` for a thinking budget in tokens.
pub fn reasoning_effort(budget: u32) -> &'static str {
    match budget {
        0 => "minimal",
        1..=2048 => "low",
        2049..=8192 => "medium",
        _ => "high",
    }
}

/// The JSON request body.
pub fn request_body(req: &ModelRequest) -> Value {
    let mut body = json!({
        "model": req.model,
        "messages": wire_messages(&req.system, &req.messages),
        "stream": true,
    });
    if req.compat.supports_usage_in_streaming != Some(false) {
        body["stream_options"] = json!({"include_usage": true});
    }
    let field = match req.compat.max_tokens_field {
        Some(MaxTokensField::MaxTokens) => "max_tokens",
        _ => "max_completion_tokens",
    };
    body[field] = json!(req.max_tokens);
    if let Some(budget) = req.thinking_budget {
        body["reasoning_effort"] = json!(reasoning_effort(budget));
    }
    if !req.tools.is_empty() && req.compat.supports_tools != Some(false) {
        body["tools"] = Value::Array(
            req.tools
                .iter()
                .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
                .collect(),
        );
    }
    body
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<Value>,
}

/// Some servers send `{"error": "text"}` instead of an object.
#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorField {
    Object(ErrorBody),
    Text(String),
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorField,
}

fn is_context_error(code: &str, message: &str) -> bool {
    let m = message.to_lowercase();
    code == "context_length_exceeded"
        || m.contains("maximum context length")
        || m.contains("context length")
        || m.contains("context window")
        || m.contains("prompt is too long")
        || m.contains("too many tokens")
}

/// Classifies an error from its HTTP status (if any) and the provider's `type`/`code`/`message`.
pub(crate) fn classify_parts(status: Option<u16>, kind: &str, code: &str, message: &str) -> ErrorKind {
    if code == "insufficient_quota" || kind == "insufficient_quota" || code == "billing_hard_limit_reached" {
        return ErrorKind::Billing;
    }
    match status {
        Some(401 | 403) => ErrorKind::Auth,
        Some(429) => ErrorKind::RateLimited,
        Some(408) => ErrorKind::Timeout,
        Some(503 | 529) => ErrorKind::Overloaded,
        Some(s) if s >= 500 => ErrorKind::Server,
        Some(_) if is_context_error(code, message) => ErrorKind::ContextLength,
        Some(_) => ErrorKind::BadRequest,
        None => {
            if is_context_error(code, message) {
                ErrorKind::ContextLength
            } else if kind.contains("rate_limit") || code.contains("rate_limit") {
                ErrorKind::RateLimited
            } else if kind.contains("overloaded") || code.contains("overloaded") {
                ErrorKind::Overloaded
            } else if kind.contains("auth") || code == "invalid_api_key" {
                ErrorKind::Auth
            } else if kind.contains("invalid_request") {
                ErrorKind::BadRequest
            } else {
                ErrorKind::Server
            }
        }
    }
}

fn error_from(provider: &str, status: Option<u16>, body: &str, key: Option<&str>) -> ProviderError {
    let parsed = serde_json::from_str::<ErrorEnvelope>(body).ok().map(|e| match e.error {
        ErrorField::Object(o) => o,
        ErrorField::Text(t) => ErrorBody { message: Some(t), ..Default::default() },
    });
    let (kind_str, code, message) = match &parsed {
        Some(e) => (
            e.kind.clone().unwrap_or_default(),
            e.code.as_ref().map(|c| c.as_str().map_or_else(|| c.to_string(), String::from)).unwrap_or_default(),
            e.message.clone().unwrap_or_default(),
        ),
        None => (String::new(), String::new(), clawline_core::text::truncate_chars(body.trim(), 300).0.to_string()),
    };
    let kind = classify_parts(status, &kind_str, &code, &message);
    let label = if !code.is_empty() { code.as_str() } else { kind_str.as_str() };
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
    ProviderError { kind, provider: provider.to_string(), status, message: scrub(&text, key), retry_after: None }
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    choices: Option<Vec<Choice>>,
    #[serde(default)]
    usage: Option<UsageJson>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct UsageJson {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

/// Accumulates a streamed answer.
#[derive(Default)]
pub(crate) struct Accumulator {
    text: String,
    thinking: String,
    calls: BTreeMap<u32, (String, String, String)>,
    usage: Usage,
    finish: Option<String>,
    done: bool,
    response_id: Option<String>,
}

impl Accumulator {
    /// Applies one SSE event. Returns true at `[DONE]`.
    pub(crate) fn apply(
        &mut self,
        provider: &str,
        data: &str,
        key: Option<&str>,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<bool, ProviderError> {
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(true);
        }
        let chunk: Chunk = parse_json(provider, data)?;
        if let Some(err) = chunk.error {
            let body = json!({ "error": err }).to_string();
            return Err(error_from(provider, None, &body, key));
        }
        if self.response_id.is_none() {
            self.response_id = chunk.id;
        }
        if let Some(u) = chunk.usage {
            let cached = u.prompt_tokens_details.and_then(|d| d.cached_tokens).unwrap_or(0).min(u.prompt_tokens);
            self.usage.input = u.prompt_tokens - cached;
            self.usage.cache_read = cached;
            self.usage.output = u.completion_tokens;
            self.usage.total_tokens = u.total_tokens.unwrap_or(u.prompt_tokens + u.completion_tokens);
        }
        for choice in chunk.choices.unwrap_or_default().into_iter().take(1) {
            let delta = choice.delta.unwrap_or_default();
            if let Some(t) = delta.reasoning_content.filter(|t| !t.is_empty()) {
                self.thinking.push_str(&t);
                on_event(StreamEvent::ThinkingDelta(t));
            }
            if let Some(t) = delta.content.filter(|t| !t.is_empty()) {
                self.text.push_str(&t);
                on_event(StreamEvent::TextDelta(t));
            }
            for (pos, call) in delta.tool_calls.unwrap_or_default().into_iter().enumerate() {
                let index = call.index.unwrap_or(pos as u32);
                let entry = self.calls.entry(index).or_insert_with(|| (String::new(), String::new(), String::new()));
                if let Some(id) = call.id.filter(|s| !s.is_empty()) {
                    entry.0 = id;
                }
                if let Some(f) = call.function {
                    if let Some(name) = f.name.filter(|s| !s.is_empty()) {
                        let first = entry.1.is_empty();
                        entry.1.push_str(&name);
                        if first {
                            on_event(StreamEvent::ToolCallStarted { id: entry.0.clone(), name: entry.1.clone() });
                        }
                    }
                    if let Some(a) = f.arguments {
                        entry.2.push_str(&a);
                    }
                }
            }
            if let Some(f) = choice.finish_reason {
                self.finish = Some(f);
            }
        }
        Ok(false)
    }

    /// The finished message, or a protocol error when the stream ended too early.
    pub(crate) fn finish(self, provider: &str, model: &str, now_ms: i64) -> Result<AssistantMessage, ProviderError> {
        if self.finish.is_none() && !self.done {
            return Err(ProviderError::new(
                ErrorKind::Protocol,
                provider,
                "the stream ended before the model finished (no finish_reason and no [DONE])",
            ));
        }
        let mut content = Vec::new();
        if !self.thinking.is_empty() {
            content.push(ContentBlock::Thinking { thinking: self.thinking, signature: None });
        }
        if !self.text.is_empty() {
            content.push(ContentBlock::Text { text: self.text });
        }
        let has_calls = !self.calls.is_empty();
        for (i, (_, (id, name, args))) in self.calls.into_iter().enumerate() {
            let arguments = if args.trim().is_empty() {
                json!({})
            } else {
                serde_json::from_str::<Value>(&args).unwrap_or(Value::String(args))
            };
            let id = if id.is_empty() { format!("call_{i}") } else { id };
            content.push(ContentBlock::ToolCall { id, name, arguments, thought_signature: None });
        }
        let stop_reason = match self.finish.as_deref() {
            Some("length") => StopReason::Length,
            Some("tool_calls" | "function_call") => StopReason::ToolUse,
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
            response_id: self.response_id,
            error_message: None,
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
    }
    let (resp, idle) = crate::http_util::send_model_request(builder, settings, key, |status, body| {
        error_from(provider, Some(status), body, key)
    })
    .await?;
    let mut acc = Accumulator::default();
    read_sse(provider, resp, idle, key, |ev| acc.apply(provider, &ev.data, key, on_event)).await?;
    let mut msg = acc.finish(provider, &req.model, crate::client::now_ms())?;
    crate::client::price(&mut msg.usage, &req.cost);
    Ok(msg)
}

/// Model lists are read up to this size (OpenRouter's is about 2 MB).
const MAX_MODEL_LIST: usize = 16 * 1024 * 1024;

/// One entry of `GET /models`, with the extensions routers and local servers add.
#[derive(Deserialize)]
struct ListedModel {
    id: String,
    #[serde(default)]
    name: Option<String>,
    /// OpenRouter, Hugging Face, Kilo.
    #[serde(default)]
    context_length: Option<u64>,
    /// vLLM.
    #[serde(default)]
    max_model_len: Option<u64>,
    #[serde(default)]
    architecture: Option<Architecture>,
}

#[derive(Deserialize)]
struct Architecture {
    #[serde(default)]
    input_modalities: Vec<String>,
}

#[derive(Deserialize)]
struct ModelList {
    data: Vec<ListedModel>,
}

/// Turns a `GET /models` body into discovered models.
pub(crate) fn parse_model_list(
    provider: &str,
    body: &str,
) -> Result<Vec<crate::types::DiscoveredModel>, ProviderError> {
    let list: ModelList = parse_json(provider, body)?;
    Ok(list
        .data
        .into_iter()
        .filter(|m| !m.id.is_empty())
        .map(|m| {
            let mut input = vec!["text".to_string()];
            if m.architecture.is_some_and(|a| a.input_modalities.iter().any(|i| i == "image")) {
                input.push("image".to_string());
            }
            crate::types::DiscoveredModel {
                context_window: m.context_length.or(m.max_model_len),
                id: m.id,
                name: m.name,
                input,
                streaming: true,
            }
        })
        .collect())
}

/// `GET {baseUrl}/models`: the models an OpenAI-compatible server or router offers.
pub(crate) async fn discover(
    http: &reqwest::Client,
    settings: &clawline_core::config::ProviderSettings,
) -> Result<Vec<crate::types::DiscoveredModel>, ProviderError> {
    let provider = settings.id.as_str();
    let key = settings.api_key.as_ref().map(|k| k.expose());
    let mut builder = http.get(format!("{}/models", settings.base_url.trim_end_matches('/')));
    if let Some(k) = key {
        builder = builder.bearer_auth(k);
    }
    for (name, value) in &settings.headers {
        builder = builder.header(name, value);
    }
    let wait = Duration::from_secs(settings.timeout_secs.min(30));
    let resp = tokio::time::timeout(wait, builder.send())
        .await
        .map_err(|_| ProviderError::new(ErrorKind::Timeout, provider, "the model list did not arrive in time"))?
        .map_err(|e| transport_error(provider, &e, key))?;
    let status = resp.status();
    if !status.is_success() {
        let body = tokio::time::timeout(wait, read_error_body(resp)).await.unwrap_or_default();
        return Err(error_from(provider, Some(status.as_u16()), &body, key));
    }
    let body = tokio::time::timeout(wait, crate::http_util::read_body_limited(resp, MAX_MODEL_LIST))
        .await
        .map_err(|_| ProviderError::new(ErrorKind::Timeout, provider, "the model list did not arrive in time"))?
        .map_err(|e| match e {
            Some(err) => transport_error(provider, &err, key),
            None => ProviderError::new(ErrorKind::Protocol, provider, "the model list is larger than 16 MiB"),
        })?;
    parse_model_list(provider, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_model_lists_of_servers_and_routers() {
        let body = r#"{"object":"list","data":[
            {"id":"gpt-5-mini","object":"model","owned_by":"openai"},
            {"id":"anthropic/claude-sonnet-4.5","name":"Claude Sonnet 4.5","context_length":1000000,
             "architecture":{"input_modalities":["text","image"]}},
            {"id":"Qwen/Qwen3-8B","max_model_len":32768},
            {"id":""}]}"#;
        let models = parse_model_list("p", body).unwrap();
        assert_eq!(models.len(), 3);
        assert_eq!(models[0].context_window, None);
        assert_eq!(models[1].name.as_deref(), Some("Claude Sonnet 4.5"));
        assert_eq!((models[1].context_window, models[1].input.len()), (Some(1_000_000), 2));
        assert_eq!(models[2].context_window, Some(32768));
        assert_eq!(parse_model_list("p", r#"{"models":[]}"#).unwrap_err().kind, ErrorKind::Protocol);
    }
    use clawline_core::message::{ToolResultMessage, UserMessage};

    fn apply_all(events: &[&str]) -> Result<AssistantMessage, ProviderError> {
        let mut acc = Accumulator::default();
        let mut seen = Vec::new();
        let mut sink = |e: StreamEvent| seen.push(e);
        for e in events {
            if acc.apply("p", e, None, &mut sink)? {
                break;
            }
        }
        acc.finish("p", "m", 0)
    }

    #[test]
    fn assembles_text_and_tool_calls_from_chunks() {
        let msg = apply_all(&[
            r#"{"id":"chatcmpl-1","choices":[{"index":0,"delta":{"role":"assistant","content":"Let me "}}]}"#,
            r#"{"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":"look."}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"read","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"pa"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"th\":\"a.txt\"}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","function":{"name":"ls","arguments":"{not json"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":20,"completion_tokens":7,"total_tokens":27,"prompt_tokens_details":{"cached_tokens":5}}}"#,
            "[DONE]",
        ])
        .unwrap();
        assert_eq!(msg.text(), "Let me look.");
        assert_eq!(msg.stop_reason, StopReason::ToolUse);
        let calls: Vec<_> = msg.tool_calls().collect();
        assert_eq!(calls[0], ("call_a", "read", &json!({"path": "a.txt"})));
        assert_eq!(calls[1], ("call_b", "ls", &Value::String("{not json".into())));
        assert_eq!((msg.usage.input, msg.usage.cache_read, msg.usage.output, msg.usage.total_tokens), (15, 5, 7, 27));
        assert_eq!(msg.response_id.as_deref(), Some("chatcmpl-1"));
    }

    #[test]
    fn truncated_stream_and_error_events_fail_precisely() {
        let e = apply_all(&[r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Protocol);
        let e = apply_all(&[r#"{"choices":[{"delta":{"content":"x"}}]"#]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Protocol);
        assert!(e.message.contains("malformed event"), "{}", e.message);
        let e = apply_all(&[r#"{"error":{"message":"The server had an error","type":"server_error"}}"#]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Server);
        assert!(e.message.contains("The server had an error"));
    }

    #[test]
    fn classifies_http_errors() {
        let e = error_from(
            "openai",
            Some(401),
            r#"{"error":{"message":"Incorrect API key provided: sk-abc. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
            Some("sk-abc"),
        );
        assert_eq!(e.kind, ErrorKind::Auth);
        assert!(
            e.message.starts_with("HTTP 401 invalid_api_key: Incorrect API key provided: [redacted]."),
            "{}",
            e.message
        );
        let q = r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#;
        assert_eq!(error_from("o", Some(429), q, None).kind, ErrorKind::Billing);
        let rl = r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#;
        assert_eq!(error_from("o", Some(429), rl, None).kind, ErrorKind::RateLimited);
        let ctx = r#"{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error","code":"context_length_exceeded"}}"#;
        assert_eq!(error_from("o", Some(400), ctx, None).kind, ErrorKind::ContextLength);
        assert_eq!(error_from("o", Some(500), "<html>oops</html>", None).kind, ErrorKind::Server);
        assert_eq!(error_from("o", Some(503), "", None).kind, ErrorKind::Overloaded);
        assert_eq!(
            error_from("o", Some(404), r#"{"error":"model not found"}"#, None).message,
            "HTTP 404: model not found"
        );
    }

    #[test]
    fn request_body_follows_the_reference() {
        let req = ModelRequest {
            model: "gpt-x".into(),
            system: "be brief".into(),
            messages: vec![
                Message::User(UserMessage {
                    content: UserContent::Text("hi".into()),
                    timestamp: 0,
                    idempotency_key: None,
                }),
                Message::Assistant(AssistantMessage {
                    content: vec![ContentBlock::ToolCall {
                        id: "c1".into(),
                        name: "ls".into(),
                        arguments: json!({}),
                        thought_signature: None,
                    }],
                    api: API.into(),
                    provider: "p".into(),
                    model: "gpt-x".into(),
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
            ..Default::default()
        };
        let body = request_body(&req);
        assert_eq!(body["messages"][0], json!({"role": "system", "content": "be brief"}));
        assert_eq!(body["messages"][2]["content"], Value::Null);
        assert_eq!(body["messages"][2]["tool_calls"][0]["function"]["arguments"], "{}");
        assert_eq!(body["messages"][3], json!({"role": "tool", "tool_call_id": "c1", "content": "a.txt"}));
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["max_completion_tokens"], 100);
        assert_eq!(body["tools"][0]["function"]["name"], "ls");
    }

    mod properties {
        use super::super::Accumulator;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_events_never_panic(events in prop::collection::vec(crate::test_support::event_json(), 0..12), raw in "\\PC{0,60}") {
                let mut acc = Accumulator::default();
                let mut sink = |_e: crate::StreamEvent| {};
                let _ = acc.apply("p", &raw, None, &mut sink);
                for e in &events {
                    if acc.apply("p", &e.to_string(), None, &mut sink).is_err() {
                        break;
                    }
                }
                let _ = acc.finish("p", "m", 0);
            }
        }
    }
}
