//! The Anthropic Messages wire API (`api: "anthropic-messages"`).
//!
//! `POST {baseUrl}/v1/messages` with `x-api-key`, `anthropic-version: 2023-06-01` and
//! `stream: true`, per Anthropic's API reference. The SSE stream is `message_start` (id, input
//! usage) → for each content block `content_block_start` / `content_block_delta` (`text_delta`,
//! `input_json_delta` with `partial_json`, `thinking_delta`, `signature_delta`) /
//! `content_block_stop` → `message_delta` (`stop_reason`, cumulative output usage) →
//! `message_stop`, with `ping`s anywhere and `error` events (`{"type":"error","error":{...}}`)
//! mid-stream. HTTP errors use the same error object; 529 `overloaded_error` means the service is
//! busy for everyone, 429 `rate_limit_error` means this key is over its limits.
//!
//! Tool results go back as `tool_result` blocks at the start of the next user turn, so
//! consecutive messages of one role are merged into one turn.

use clawline_core::message::{AssistantMessage, ContentBlock, Message, StopReason, Usage, UserContent};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ErrorKind, ProviderError};
use crate::http_util::{parse_json, read_sse, scrub};
use crate::types::{ModelRequest, StreamEvent};

pub const API: &str = "anthropic-messages";
pub const VERSION: &str = "2023-06-01";

/// The request URL for a base URL such as `https://api.anthropic.com` (a trailing `/v1` is fine).
pub fn endpoint(base_url: &str) -> String {
    let base = base_url.trim_end_matches('/');
    if base.ends_with("/v1") { format!("{base}/messages") } else { format!("{base}/v1/messages") }
}

fn blocks_for_user(content: &UserContent) -> Vec<Value> {
    match content {
        // The API refuses empty text blocks, so they are left out (an empty message vanishes).
        UserContent::Text(t) if t.is_empty() => vec![],
        UserContent::Text(t) => vec![json!({"type": "text", "text": t})],
        UserContent::Blocks(blocks) => blocks
            .iter()
            .filter_map(|b| match b {
                ContentBlock::Text { text } if !text.is_empty() => Some(json!({"type": "text", "text": text})),
                ContentBlock::Image { data, mime_type } => {
                    Some(json!({"type": "image", "source": {"type": "base64", "media_type": mime_type, "data": data}}))
                }
                _ => None,
            })
            .collect(),
    }
}

/// Converts a conversation to the `messages` array, merging consecutive turns of one role.
pub fn wire_messages(messages: &[Message]) -> Vec<Value> {
    let mut out: Vec<(String, Vec<Value>)> = Vec::new();
    for m in messages {
        let (role, mut blocks) = match m {
            Message::User(u) => ("user", blocks_for_user(&u.content)),
            Message::ToolResult(r) => {
                let text = clawline_core::message::join_text(&r.content);
                let mut block = json!({"type": "tool_result", "tool_use_id": r.tool_call_id, "content": text});
                if r.is_error {
                    block["is_error"] = json!(true);
                }
                ("user", vec![block])
            }
            Message::Assistant(a) => {
                let blocks: Vec<Value> = a
                    .content
                    .iter()
                    .filter_map(|b| match b {
                        ContentBlock::Text { text } if !text.is_empty() => Some(json!({"type": "text", "text": text})),
                        ContentBlock::ToolCall { id, name, arguments, .. } => {
                            let input = if arguments.is_object() { arguments.clone() } else { json!({}) };
                            Some(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
                        }
                        ContentBlock::Thinking { thinking, signature: Some(sig) } => {
                            Some(json!({"type": "thinking", "thinking": thinking, "signature": sig}))
                        }
                        _ => None,
                    })
                    .collect();
                ("assistant", blocks)
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some((last_role, last)) if last_role == role => {
                // Tool results must open the user turn that follows the tool calls.
                if role == "user" && blocks.iter().any(|b| b["type"] == "tool_result") {
                    let at = last.iter().take_while(|b| b["type"] == "tool_result").count();
                    last.splice(at..at, blocks);
                } else {
                    last.append(&mut blocks);
                }
            }
            _ => out.push((role.to_string(), blocks)),
        }
    }
    out.into_iter().map(|(role, content)| json!({"role": role, "content": content})).collect()
}

/// The beta flag Anthropic requires with OAuth bearer tokens.
const OAUTH_BETA: &str = "oauth-2025-04-20";

/// Anthropic's smallest accepted `thinking.budget_tokens`.
const MIN_THINKING_BUDGET: u32 = 1024;

/// The JSON request body.
pub fn request_body(req: &ModelRequest) -> Value {
    let mut body = json!({
        "model": req.model,
        "max_tokens": req.max_tokens,
        "messages": wire_messages(&req.messages),
        "stream": true,
    });
    if !req.system.is_empty() {
        body["system"] = json!(req.system);
    }
    // Extended thinking: the budget must be at least 1024 tokens and below `max_tokens`, so the
    // cap is raised to leave room for the answer when it would not.
    if let Some(budget) = req.thinking_budget.filter(|b| *b > 0) {
        let budget = budget.max(MIN_THINKING_BUDGET);
        body["thinking"] = json!({"type": "enabled", "budget_tokens": budget});
        if req.max_tokens <= budget {
            body["max_tokens"] = json!(budget.saturating_add(MIN_THINKING_BUDGET));
        }
    }
    if !req.tools.is_empty() {
        body["tools"] = Value::Array(
            req.tools
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
                .collect(),
        );
    }
    body
}

#[derive(Deserialize, Default)]
struct ErrorObject {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: Option<Value>,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorObject,
}

fn classify(status: Option<u16>, e: &ErrorObject) -> ErrorKind {
    let spend = e.details.as_ref().and_then(|d| d.get("error_code")).and_then(Value::as_str)
        == Some("enforced_spend_limit_reached");
    let m = e.message.to_lowercase();
    match (status, e.kind.as_str()) {
        _ if spend || e.kind == "billing_error" => ErrorKind::Billing,
        (Some(401 | 403), _) | (_, "authentication_error" | "permission_error") => ErrorKind::Auth,
        (Some(429), _) | (_, "rate_limit_error") => ErrorKind::RateLimited,
        (Some(529 | 503), _) | (_, "overloaded_error") => ErrorKind::Overloaded,
        (Some(408), _) | (_, "timeout_error") => ErrorKind::Timeout,
        (_, "invalid_request_error")
            if m.contains("prompt is too long") || m.contains("context window") || m.contains("too many tokens") =>
        {
            ErrorKind::ContextLength
        }
        (Some(s), _) if s >= 500 => ErrorKind::Server,
        (_, "api_error") => ErrorKind::Server,
        (Some(_), _) => ErrorKind::BadRequest,
        (None, "invalid_request_error" | "not_found_error" | "request_too_large") => ErrorKind::BadRequest,
        (None, _) => ErrorKind::Server,
    }
}

fn error_from(provider: &str, status: Option<u16>, body: &str, key: Option<&str>) -> ProviderError {
    let parsed = serde_json::from_str::<ErrorEnvelope>(body).map(|e| e.error).ok();
    let e = parsed.unwrap_or_else(|| ErrorObject {
        message: clawline_core::text::truncate_chars(body.trim(), 300).0.to_string(),
        ..Default::default()
    });
    let kind = classify(status, &e);
    let mut text = status.map(|s| format!("HTTP {s}")).unwrap_or_default();
    if !e.kind.is_empty() {
        text.push_str(&format!("{}{}", if text.is_empty() { "" } else { " " }, e.kind));
    }
    if !e.message.is_empty() {
        text.push_str(&format!("{}{}", if text.is_empty() { "" } else { ": " }, e.message));
    }
    ProviderError { kind, provider: provider.to_string(), status, message: scrub(&text, key), retry_after: None }
}

enum Block {
    Text(String),
    Tool { id: String, name: String, json: String },
    Thinking { text: String, signature: Option<String> },
    Other,
}

/// Accumulates a streamed answer.
#[derive(Default)]
pub(crate) struct Accumulator {
    blocks: Vec<(u64, Block)>,
    usage: Usage,
    stop: Option<String>,
    stopped: bool,
    response_id: Option<String>,
}

#[derive(Deserialize)]
struct UsageJson {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl Accumulator {
    fn take_usage(&mut self, u: Option<Value>) {
        let Some(u) = u.and_then(|u| serde_json::from_value::<UsageJson>(u).ok()) else { return };
        if let Some(v) = u.input_tokens {
            self.usage.input = v;
        }
        if let Some(v) = u.output_tokens {
            self.usage.output = v;
        }
        if let Some(v) = u.cache_creation_input_tokens {
            self.usage.cache_write = v;
        }
        if let Some(v) = u.cache_read_input_tokens {
            self.usage.cache_read = v;
        }
    }

    fn block(&mut self, index: u64) -> Option<&mut Block> {
        self.blocks.iter_mut().find(|(i, _)| *i == index).map(|(_, b)| b)
    }

    /// Applies one SSE event. Returns true at `message_stop`.
    pub(crate) fn apply(
        &mut self,
        provider: &str,
        data: &str,
        key: Option<&str>,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<bool, ProviderError> {
        let v: Value = parse_json(provider, data)?;
        let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        match kind {
            "message_start" => {
                let message = v.get("message").cloned().unwrap_or_default();
                self.response_id = message.get("id").and_then(Value::as_str).map(String::from);
                self.take_usage(message.get("usage").cloned());
            }
            "content_block_start" => {
                let b = v.get("content_block").cloned().unwrap_or_default();
                let block = match b.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let t = b.get("text").and_then(Value::as_str).unwrap_or_default().to_string();
                        if !t.is_empty() {
                            on_event(StreamEvent::TextDelta(t.clone()));
                        }
                        Block::Text(t)
                    }
                    Some("tool_use") => {
                        let id = b.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
                        let name = b.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
                        on_event(StreamEvent::ToolCallStarted { id: id.clone(), name: name.clone() });
                        Block::Tool { id, name, json: String::new() }
                    }
                    Some("thinking") => Block::Thinking {
                        text: b.get("thinking").and_then(Value::as_str).unwrap_or_default().to_string(),
                        signature: b
                            .get("signature")
                            .and_then(Value::as_str)
                            .filter(|s| !s.is_empty())
                            .map(String::from),
                    },
                    _ => Block::Other,
                };
                self.blocks.push((index, block));
            }
            "content_block_delta" => {
                let d = v.get("delta").cloned().unwrap_or_default();
                let dtype = d.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
                let Some(block) = self.block(index) else {
                    return Err(ProviderError::new(
                        ErrorKind::Protocol,
                        provider,
                        format!("content_block_delta for block {index}, which was never started"),
                    ));
                };
                let s = |f: &str| d.get(f).and_then(Value::as_str).unwrap_or_default().to_string();
                match (block, dtype.as_str()) {
                    (Block::Text(t), "text_delta") => {
                        let piece = s("text");
                        t.push_str(&piece);
                        on_event(StreamEvent::TextDelta(piece));
                    }
                    (Block::Tool { json, .. }, "input_json_delta") => json.push_str(&s("partial_json")),
                    (Block::Thinking { text, .. }, "thinking_delta") => {
                        let piece = s("thinking");
                        text.push_str(&piece);
                        on_event(StreamEvent::ThinkingDelta(piece));
                    }
                    (Block::Thinking { signature, .. }, "signature_delta") => {
                        signature.get_or_insert_with(String::new).push_str(&s("signature"))
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(r) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop = Some(r.to_string());
                }
                self.take_usage(v.get("usage").cloned());
            }
            "message_stop" => {
                self.stopped = true;
                return Ok(true);
            }
            "error" => {
                let body = json!({"error": v.get("error").cloned().unwrap_or_default()}).to_string();
                return Err(error_from(provider, None, &body, key));
            }
            // `ping`, `content_block_stop` and event types added later need nothing here.
            _ => {}
        }
        Ok(false)
    }

    pub(crate) fn finish(self, provider: &str, model: &str, now_ms: i64) -> Result<AssistantMessage, ProviderError> {
        if !self.stopped {
            return Err(ProviderError::new(
                ErrorKind::Protocol,
                provider,
                "the stream ended before the model finished (no message_stop)",
            ));
        }
        let mut content = Vec::new();
        let mut has_calls = false;
        for (_, block) in self.blocks {
            match block {
                Block::Text(text) if !text.is_empty() => content.push(ContentBlock::Text { text }),
                Block::Tool { id, name, json } => {
                    has_calls = true;
                    let arguments = if json.trim().is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str::<Value>(&json).unwrap_or(Value::String(json))
                    };
                    content.push(ContentBlock::ToolCall { id, name, arguments, thought_signature: None });
                }
                Block::Thinking { text, signature } => {
                    content.push(ContentBlock::Thinking { thinking: text, signature })
                }
                _ => {}
            }
        }
        let stop_reason = match self.stop.as_deref() {
            Some("tool_use") => StopReason::ToolUse,
            Some("max_tokens") => StopReason::Length,
            Some("refusal") => StopReason::Error,
            _ if has_calls && self.stop.is_none() => StopReason::ToolUse,
            _ => StopReason::Stop,
        };
        let mut usage = self.usage;
        usage.total_tokens = usage.input + usage.output + usage.cache_read + usage.cache_write;
        Ok(AssistantMessage {
            content,
            api: API.to_string(),
            provider: provider.to_string(),
            model: model.to_string(),
            usage,
            error_message: (stop_reason == StopReason::Error).then(|| "the model refused to answer".to_string()),
            stop_reason,
            timestamp: now_ms,
            response_id: self.response_id,
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
        .header("anthropic-version", VERSION)
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .json(&request_body(req))
        .headers(crate::http_util::trace_headers(req));
    match (key, settings.bearer) {
        // OAuth access tokens and setup tokens go as a bearer token, with the OAuth beta flag.
        (Some(k), true) => builder = builder.bearer_auth(k).header("anthropic-beta", OAUTH_BETA),
        (Some(k), false) => builder = builder.header("x-api-key", k),
        (None, _) => {}
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

#[cfg(test)]
mod tests {
    use super::*;
    use clawline_core::message::{ToolResultMessage, UserMessage};

    fn run(events: &[&str]) -> Result<(AssistantMessage, Vec<StreamEvent>), ProviderError> {
        let mut acc = Accumulator::default();
        let mut seen = Vec::new();
        let mut sink = |e: StreamEvent| seen.push(e);
        for e in events {
            if acc.apply("anthropic", e, None, &mut sink)? {
                break;
            }
        }
        let msg = acc.finish("anthropic", "claude", 0)?;
        Ok((msg, seen))
    }

    #[test]
    fn assembles_a_tool_use_stream() {
        let (msg, seen) = run(&[
            r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude","stop_reason":null,"usage":{"input_tokens":25,"output_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Checking"}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"read","input":{}}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"path\": \"a"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":".txt\"}"}}"#,
            r#"{"type":"content_block_stop","index":1}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":40}}"#,
            r#"{"type":"message_stop"}"#,
        ])
        .unwrap();
        assert_eq!(msg.text(), "Checking");
        assert_eq!(msg.stop_reason, StopReason::ToolUse);
        assert_eq!(msg.tool_calls().next(), Some(("toolu_1", "read", &json!({"path": "a.txt"}))));
        assert_eq!((msg.usage.input, msg.usage.output, msg.usage.total_tokens), (25, 40, 65));
        assert_eq!(msg.response_id.as_deref(), Some("msg_1"));
        assert_eq!(seen[0], StreamEvent::TextDelta("Checking".into()));
        assert_eq!(seen[1], StreamEvent::ToolCallStarted { id: "toolu_1".into(), name: "read".into() });
    }

    #[test]
    fn error_events_and_truncation() {
        let e = run(&[
            r#"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":1}}}"#,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        ])
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Overloaded);
        assert_eq!(e.message, "overloaded_error: Overloaded");
        let e = run(&[r#"{"type":"message_start","message":{"id":"m"}}"#]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Protocol);
        let e =
            run(&[r#"{"type":"content_block_delta","index":3,"delta":{"type":"text_delta","text":"x"}}"#]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Protocol);
    }

    #[test]
    fn classifies_http_errors() {
        let body = |t: &str, m: &str| {
            format!(r#"{{"type":"error","error":{{"type":"{t}","message":"{m}"}},"request_id":"req_1"}}"#)
        };
        assert_eq!(
            error_from("a", Some(401), &body("authentication_error", "invalid x-api-key"), None).kind,
            ErrorKind::Auth
        );
        assert_eq!(
            error_from("a", Some(429), &body("rate_limit_error", "slow down"), None).kind,
            ErrorKind::RateLimited
        );
        assert_eq!(
            error_from("a", Some(529), &body("overloaded_error", "Overloaded"), None).kind,
            ErrorKind::Overloaded
        );
        assert_eq!(
            error_from(
                "a",
                Some(400),
                &body("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"),
                None
            )
            .kind,
            ErrorKind::ContextLength
        );
        let spend = r#"{"type":"error","error":{"type":"rate_limit_error","message":"spend","details":{"error_code":"enforced_spend_limit_reached"}}}"#;
        assert_eq!(error_from("a", Some(429), spend, None).kind, ErrorKind::Billing);
        assert_eq!(error_from("a", Some(500), "gateway exploded", None).message, "HTTP 500: gateway exploded");
    }

    #[test]
    fn merges_turns_and_puts_tool_results_first() {
        let tool_result = |id: &str| {
            Message::ToolResult(ToolResultMessage {
                tool_call_id: id.into(),
                tool_name: "ls".into(),
                content: vec![ContentBlock::Text { text: "out".into() }],
                is_error: id == "b",
                timestamp: 0,
            })
        };
        let user = |t: &str| {
            Message::User(UserMessage { content: UserContent::Text(t.into()), timestamp: 0, idempotency_key: None })
        };
        let msgs = wire_messages(&[user("one"), user(""), user("two"), tool_result("a"), tool_result("b")]);
        assert_eq!(msgs.len(), 1);
        let content = msgs[0]["content"].as_array().unwrap();
        assert_eq!(content[0]["type"], "tool_result");
        assert_eq!(content[1]["is_error"], true);
        assert_eq!(content[2]["text"], "one");
        assert_eq!(endpoint("https://api.anthropic.com/"), "https://api.anthropic.com/v1/messages");
        assert_eq!(endpoint("http://h/v1"), "http://h/v1/messages");
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
