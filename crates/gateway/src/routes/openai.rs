//! The OpenAI-compatible surface: `GET /v1/models` and `POST /v1/chat/completions`.
//!
//! `model` names an agent, not a backend model: `clawline` or `clawline/default` is the default
//! agent, `clawline/<agentId>` a specific one (the `openclaw…` spellings are accepted too).
//! Which conversation a request continues:
//!
//! - `x-clawline-session-key` (or `x-openclaw-session-key`): that session. Its stored history is
//!   used and only the last user message of `messages` is new.
//! - else `user`: a stable session per user value (`openai-user:<user>`), same rule.
//! - else: a fresh session per request (`openai:<uuid>`) seeded with the earlier `messages`.
//!
//! `system` messages become extra instructions. An `Idempotency-Key` header makes retries safe.
//! Streaming follows the Chat Completions chunk format: a role chunk, content chunks, a chunk
//! with `finish_reason`, a usage chunk when `stream_options.include_usage`, then `data: [DONE]`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use clawline_agent::{RunEvent, TurnRequest, TurnStart};
use clawline_core::message::{AssistantMessage, ContentBlock, Message, StopReason, Usage, UserContent, UserMessage};
use clawline_store::RunStatus;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::body::JsonBody;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct ChatRequest {
    model: String,
    messages: Vec<ChatMessage>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Option<Value>,
}

pub(super) fn now_secs() -> u64 {
    (clawline_store::now_ms() / 1000).max(0) as u64
}

/// The agent a `model` value names; `None` is the default agent.
pub(super) fn agent_for_model(state: &AppState, model: &str) -> Result<Option<String>, ApiError> {
    let m = model.trim();
    if matches!(m, "clawline" | "clawline/default" | "openclaw" | "openclaw/default") {
        return Ok(None);
    }
    let id = ["clawline/", "clawline:", "openclaw/", "openclaw:", "agent:"].iter().find_map(|p| m.strip_prefix(p));
    match id {
        Some(id) if state.runtime.config().agent(id).is_some() => Ok(Some(id.to_string())),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("The model `{m}` does not exist. Use `clawline/default` or `clawline/<agentId>` (GET /v1/models lists them)."),
        )
        .code("model_not_found")),
    }
}

fn text_of(index: usize, content: &Option<Value>) -> Result<String, ApiError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::new();
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        texts.push(part.get("text").and_then(Value::as_str).unwrap_or_default().to_string())
                    }
                    Some(other) => {
                        return Err(ApiError::bad_request(format!(
                            "messages[{index}].content: `{other}` parts are not supported yet; send text"
                        )));
                    }
                    None => {
                        return Err(ApiError::bad_request(format!("messages[{index}].content: a part has no `type`")));
                    }
                }
            }
            Ok(texts.join("\n"))
        }
        Some(_) => {
            Err(ApiError::bad_request(format!("messages[{index}].content: expected a string or an array of parts")))
        }
    }
}

pub(super) fn header<'a>(headers: &'a HeaderMap, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|n| headers.get(*n).and_then(|v| v.to_str().ok())).map(str::trim).filter(|s| !s.is_empty())
}

pub(super) fn sanitize(user: &str) -> String {
    let s: String =
        user.chars().take(64).map(|c| if c.is_ascii_alphanumeric() || "_.-@+".contains(c) { c } else { '-' }).collect();
    if s.is_empty() { "anonymous".into() } else { s }
}

/// Builds the turn from an OpenAI-style request.
fn turn_request(state: &AppState, headers: &HeaderMap, req: &ChatRequest) -> Result<TurnRequest, ApiError> {
    if req.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::bad_request(
            "client-side `tools` are not supported: the agent runs its own tools. Remove `tools` from the request.",
        ));
    }
    let Some(last) = req.messages.last() else {
        return Err(ApiError::bad_request("messages: at least one message is required"));
    };
    if last.role != "user" {
        return Err(ApiError::bad_request(format!("the last message must have role `user`, not `{}`", last.role)));
    }
    let message = text_of(req.messages.len() - 1, &last.content)?;
    let agent_id = agent_for_model(state, &req.model)?;
    let mut system = Vec::new();
    let mut preamble = Vec::new();
    for (i, m) in req.messages[..req.messages.len() - 1].iter().enumerate() {
        let text = text_of(i, &m.content)?;
        match m.role.as_str() {
            "system" | "developer" => system.push(text),
            "user" if text.trim().is_empty() => {}
            "user" => preamble.push(Message::User(UserMessage {
                content: UserContent::Text(text),
                timestamp: clawline_store::now_ms(),
                idempotency_key: None,
            })),
            "assistant" if !text.is_empty() => preamble.push(Message::Assistant(AssistantMessage {
                content: vec![ContentBlock::Text { text }],
                api: "client".into(),
                provider: "client".into(),
                model: req.model.clone(),
                usage: Usage::default(),
                stop_reason: StopReason::Stop,
                timestamp: clawline_store::now_ms(),
                response_id: None,
                error_message: None,
            })),
            "assistant" | "tool" | "function" => {}
            other => return Err(ApiError::bad_request(format!("messages[{i}].role: unknown role `{other}`"))),
        }
    }
    let explicit = header(headers, &["x-clawline-session-key", "x-openclaw-session-key"]).map(String::from);
    let idempotency_key = header(headers, &["idempotency-key"]).map(String::from);
    let (session_key, preamble) = match (explicit, &req.user, &idempotency_key) {
        (Some(key), _, _) => (key, Vec::new()),
        (None, Some(user), _) => (format!("openai-user:{}", sanitize(user)), Vec::new()),
        // A stateless request with an Idempotency-Key gets a session named after the key, so a
        // retry finds the first attempt instead of running again.
        (None, None, Some(idem)) => (format!("openai:idem-{}", sanitize(idem)), preamble),
        (None, None, None) => (format!("openai:{}", uuid::Uuid::new_v4()), preamble),
    };
    Ok(TurnRequest {
        agent_id,
        session_key: Some(session_key),
        message,
        idempotency_key,
        preamble,
        extra_system: (!system.is_empty()).then(|| system.join("\n\n")),
        run_id: None,
        // An HTTP caller waits for a busy session as long as it stays connected.
        lane_wait: None,
        channel: Some("openai".into()),
        traceparent: header(headers, &["traceparent"]).map(String::from),
    })
}

pub(super) fn run_error(kind: &str, message: &str) -> ApiError {
    if kind == "budget" {
        // The agent's daily budget is spent: OpenAI's own answer for a spent quota.
        return ApiError::new(StatusCode::TOO_MANY_REQUESTS, "insufficient_quota", message).code(kind);
    }
    let status = match kind {
        "timeout" => StatusCode::GATEWAY_TIMEOUT,
        "rate_limited" => StatusCode::TOO_MANY_REQUESTS,
        "overloaded" => StatusCode::SERVICE_UNAVAILABLE,
        "context_length" => StatusCode::BAD_REQUEST,
        _ => StatusCode::BAD_GATEWAY,
    };
    ApiError::new(status, "upstream_error", message).code(kind)
}

fn usage_json(u: &Usage) -> Value {
    let prompt = u.input + u.cache_read + u.cache_write;
    json!({"prompt_tokens": prompt, "completion_tokens": u.output, "total_tokens": prompt + u.output})
}

fn finish_reason(stop: &str) -> &'static str {
    match stop {
        "length" => "length",
        _ => "stop",
    }
}

fn completion(id: &str, model: &str, text: &str, stop: &str, usage: &Usage) -> Value {
    json!({
        "id": id, "object": "chat.completion", "created": now_secs(), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason(stop)}],
        "usage": usage_json(usage),
    })
}

struct Chunker {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
}

impl Chunker {
    fn chunk(&self, delta: Value, finish: Value) -> String {
        json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        .to_string()
    }

    /// The data lines for one run event.
    fn lines(&self, event: RunEvent) -> (Vec<String>, bool) {
        match event {
            RunEvent::Started { .. } => {
                (vec![self.chunk(json!({"role": "assistant", "content": ""}), Value::Null)], false)
            }
            RunEvent::Text { delta } => (vec![self.chunk(json!({"content": delta}), Value::Null)], false),
            RunEvent::Done { stop_reason, usage, .. } => {
                let mut out = vec![self.chunk(json!({}), json!(finish_reason(&stop_reason)))];
                if self.include_usage {
                    out.push(
                        json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                               "choices": [], "usage": usage_json(&usage)})
                        .to_string(),
                    );
                }
                out.push("[DONE]".into());
                (out, true)
            }
            RunEvent::Error { kind, message, .. } => {
                (vec![json!({"error": run_error(&kind, &message).body()["error"]}).to_string(), "[DONE]".into()], true)
            }
            _ => (vec![], false),
        }
    }
}

fn sse_from_events(
    chunker: Chunker,
    events: impl futures_util::Stream<Item = RunEvent> + Send + 'static,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>> + Send> {
    let stream = futures_util::stream::unfold(
        (Box::pin(events), VecDeque::<String>::new(), false, chunker),
        |(mut events, mut pending, mut finished, chunker)| async move {
            loop {
                if let Some(line) = pending.pop_front() {
                    return Some((Ok(Event::default().data(line)), (events, pending, finished, chunker)));
                }
                if finished {
                    return None;
                }
                match events.next().await {
                    Some(ev) => {
                        let (lines, done) = chunker.lines(ev);
                        pending.extend(lines);
                        finished = done;
                    }
                    None => {
                        // The run ended without a final event (it cannot, but never hang a client).
                        pending.push_back("[DONE]".into());
                        finished = true;
                    }
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// `GET /v1/models`.
pub async fn models(State(state): State<Arc<AppState>>) -> Json<Value> {
    let model = |id: String| json!({"id": id, "object": "model", "created": 0, "owned_by": "clawline"});
    let mut data = vec![model("clawline".into()), model("clawline/default".into())];
    data.extend(state.runtime.config().agents.keys().map(|id| model(format!("clawline/{id}"))));
    Json(json!({"object": "list", "data": data}))
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ChatRequest>,
) -> Result<Response, ApiError> {
    if !state.runtime.config().gateway.chat_completions_enabled {
        return Err(ApiError::not_found(
            "the OpenAI-compatible API is disabled (gateway.http.endpoints.chatCompletions.enabled)",
        ));
    }
    let turn = turn_request(&state, &headers, &req)?;
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let chunker = Chunker {
        id: id.clone(),
        model: req.model.clone(),
        created: now_secs(),
        include_usage: req.stream_options.as_ref().is_some_and(|o| o.include_usage),
    };
    match state.runtime.start_turn(turn).await? {
        TurnStart::Duplicate(run) => {
            let result = run.result.clone().unwrap_or_default();
            let text = result["text"].as_str().unwrap_or_default().to_string();
            match run.status {
                RunStatus::Running => Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    "a request with this Idempotency-Key is still running; retry later",
                )
                .code("in_flight")),
                RunStatus::Ok => {
                    let usage: Usage = serde_json::from_value(result["usage"].clone()).unwrap_or_default();
                    let stop = result["stopReason"].as_str().unwrap_or("stop").to_string();
                    if req.stream {
                        let replay = vec![
                            RunEvent::Started {
                                run_id: run.run_id.clone(),
                                session_key: run.session_key.clone(),
                                agent_id: run.agent_id.clone(),
                                model: String::new(),
                            },
                            RunEvent::Text { delta: text.clone() },
                            RunEvent::Done { run_id: run.run_id, text, stop_reason: stop, usage, model_calls: 0 },
                        ];
                        Ok(sse_from_events(chunker, futures_util::stream::iter(replay)).into_response())
                    } else {
                        Ok(Json(completion(&id, &req.model, &text, &stop, &usage)).into_response())
                    }
                }
                _ => Err(run_error(
                    result["kind"].as_str().unwrap_or("error"),
                    result["error"].as_str().unwrap_or("the earlier request with this Idempotency-Key failed"),
                )),
            }
        }
        TurnStart::Started(handle) => {
            let events = super::receiver_stream(handle.events);
            if req.stream {
                return Ok(sse_from_events(chunker, events).into_response());
            }
            let mut events = Box::pin(events);
            while let Some(ev) = events.next().await {
                match ev {
                    RunEvent::Done { text, stop_reason, usage, .. } => {
                        return Ok(Json(completion(&id, &req.model, &text, &stop_reason, &usage)).into_response());
                    }
                    RunEvent::Error { kind, message, .. } => return Err(run_error(&kind, &message)),
                    _ => {}
                }
            }
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "the run ended without a result"))
        }
    }
}
