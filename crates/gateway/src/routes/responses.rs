//! `POST /v1/responses`: the OpenAI Responses API shape (OpenResponses), running an agent.
//!
//! `model` names an agent as in `/v1/chat/completions`. `input` is a string or a list of
//! message items (`{role, content}` with `input_text`/`output_text` parts); `instructions`
//! become extra system instructions. Which conversation it continues:
//!
//! - `previous_response_id`: the session of that response (response ids name their run, so
//!   this works across restarts);
//! - else `x-clawline-session-key` / `x-openclaw-session-key`, else `user`: a stable session;
//! - else a fresh session per request, seeded with the earlier input items.
//!
//! Streaming follows the Responses event sequence (`response.created`, `response.in_progress`,
//! `response.output_item.added`, `response.content_part.added`, `response.output_text.delta`…,
//! `response.output_text.done`, `response.content_part.done`, `response.output_item.done`,
//! `response.completed` or `response.failed`), each with a `sequence_number`, then
//! `data: [DONE]` as OpenClaw sends it. Client-side `tools` are refused: the agent runs its own.

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

use super::openai::{agent_for_model, header, now_secs, run_error, sanitize};
use crate::body::JsonBody;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct ResponsesRequest {
    model: String,
    input: Value,
    #[serde(default)]
    instructions: Option<String>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    previous_response_id: Option<String>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
}

/// A response id names its run.
fn response_id(run_id: &str) -> String {
    format!("resp_{run_id}")
}

fn run_of(response_id: &str) -> &str {
    response_id.strip_prefix("resp_").unwrap_or(response_id)
}

/// The text of one input item's `content` (a string or text parts).
fn content_text(i: usize, content: &Value) -> Result<String, ApiError> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut out = Vec::new();
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("input_text" | "output_text" | "text") => {
                        out.push(p.get("text").and_then(Value::as_str).unwrap_or_default().to_string())
                    }
                    Some(other) => {
                        return Err(ApiError::bad_request(format!(
                            "input[{i}].content: `{other}` parts are not supported yet; send text"
                        )));
                    }
                    None => return Err(ApiError::bad_request(format!("input[{i}].content: a part has no `type`"))),
                }
            }
            Ok(out.join("\n"))
        }
        _ => Err(ApiError::bad_request(format!("input[{i}].content: expected a string or an array of parts"))),
    }
}

/// The input as (role, text) items.
fn items(input: &Value) -> Result<Vec<(String, String)>, ApiError> {
    match input {
        Value::String(s) => Ok(vec![("user".into(), s.clone())]),
        Value::Array(list) => list
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let kind = item.get("type").and_then(Value::as_str).unwrap_or("message");
                if kind != "message" {
                    return Err(ApiError::bad_request(format!(
                        "input[{i}]: `{kind}` items are not supported: the agent runs its own tools; send message items"
                    )));
                }
                let role = item.get("role").and_then(Value::as_str).unwrap_or("user").to_string();
                Ok((role, content_text(i, item.get("content").unwrap_or(&Value::Null))?))
            })
            .collect(),
        _ => Err(ApiError::bad_request("input: expected a string or an array of items")),
    }
}

async fn turn_request(state: &AppState, headers: &HeaderMap, req: &ResponsesRequest) -> Result<TurnRequest, ApiError> {
    if req.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::bad_request(
            "client-side `tools` are not supported: the agent runs its own tools. Remove `tools` from the request.",
        ));
    }
    let mut items = items(&req.input)?;
    let Some((role, message)) = items.pop() else {
        return Err(ApiError::bad_request("input: at least one item is required"));
    };
    if role != "user" {
        return Err(ApiError::bad_request(format!("the last input item must have role `user`, not `{role}`")));
    }
    let agent_id = agent_for_model(state, &req.model)?;
    let mut system: Vec<String> = req.instructions.iter().filter(|s| !s.trim().is_empty()).cloned().collect();
    let mut preamble = Vec::new();
    let now = clawline_store::now_ms();
    for (role, text) in items {
        match role.as_str() {
            "system" | "developer" => system.push(text),
            "user" => preamble.push(Message::User(UserMessage {
                content: UserContent::Text(text),
                timestamp: now,
                idempotency_key: None,
            })),
            "assistant" => preamble.push(Message::Assistant(AssistantMessage {
                content: vec![ContentBlock::Text { text }],
                api: "client".into(),
                provider: "client".into(),
                model: req.model.clone(),
                usage: Usage::default(),
                stop_reason: StopReason::Stop,
                timestamp: now,
                response_id: None,
                error_message: None,
            })),
            other => return Err(ApiError::bad_request(format!("input: unknown role `{other}`"))),
        }
    }
    let explicit = header(headers, &["x-clawline-session-key", "x-openclaw-session-key"]).map(String::from);
    let session_key = if let Some(prev) = &req.previous_response_id {
        let run = state
            .runtime
            .store()
            .get_run(run_of(prev))
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", e.to_string()))?
            .ok_or_else(|| {
                ApiError::not_found(format!("previous_response_id `{prev}` is not a response of this gateway"))
            })?;
        preamble.clear();
        run.session_key
    } else if let Some(key) = explicit {
        preamble.clear();
        key
    } else if let Some(user) = &req.user {
        preamble.clear();
        format!("openresponses-user:{}", sanitize(user))
    } else {
        format!("openresponses:{}", uuid::Uuid::new_v4())
    };
    Ok(TurnRequest {
        agent_id,
        session_key: Some(session_key),
        message,
        idempotency_key: header(headers, &["idempotency-key"]).map(String::from),
        preamble,
        extra_system: (!system.is_empty()).then(|| system.join("\n\n")),
        run_id: Some(uuid::Uuid::new_v4().to_string()),
        // An HTTP caller waits for a busy session as long as it stays connected.
        lane_wait: None,
        channel: Some("responses".into()),
        traceparent: header(headers, &["traceparent"]).map(String::from),
    })
}

fn usage_json(u: &Usage) -> Value {
    let input = u.input + u.cache_read + u.cache_write;
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": u.cache_read, "cache_write_tokens": u.cache_write},
        "output_tokens": u.output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input + u.output,
    })
}

/// The response object in a given state.
struct Shape {
    id: String,
    message_id: String,
    model: String,
    created: u64,
    instructions: Option<String>,
}

impl Shape {
    fn message(&self, text: &str, status: &str) -> Value {
        json!({
            "type": "message", "id": self.message_id, "status": status, "role": "assistant", "phase": "final_answer",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        })
    }

    fn response(&self, status: &str, output: Vec<Value>, usage: Option<&Usage>, error: Option<Value>) -> Value {
        json!({
            "id": self.id, "object": "response", "created_at": self.created, "status": status, "model": self.model,
            "output": output, "usage": usage.map(usage_json), "error": error, "incomplete_details": null,
            "instructions": self.instructions, "parallel_tool_calls": false, "tool_choice": "auto", "tools": [],
        })
    }
}

/// Streams the run as Responses events.
fn stream(shape: Shape, events: impl futures_util::Stream<Item = RunEvent> + Send + 'static) -> Response {
    let mut seq = 0u64;
    let mut next = move |kind: &str, mut body: Value| {
        body["type"] = json!(kind);
        body["sequence_number"] = json!(seq);
        seq += 1;
        Ok::<_, Infallible>(Event::default().event(kind).data(body.to_string()))
    };
    let head = vec![
        next("response.created", json!({"response": shape.response("in_progress", vec![], None, None)})),
        next("response.in_progress", json!({"response": shape.response("in_progress", vec![], None, None)})),
        next("response.output_item.added", json!({"output_index": 0, "item": shape.message("", "in_progress")})),
        next(
            "response.content_part.added",
            json!({"item_id": shape.message_id, "output_index": 0, "content_index": 0,
                   "part": {"type": "output_text", "text": "", "annotations": []}}),
        ),
    ];
    let state = (Box::pin(events), next, shape, false);
    let body = futures_util::stream::iter(head).chain(futures_util::stream::unfold(state, |(mut events, mut next, shape, done)| async move {
        if done {
            return None;
        }
        loop {
            match events.next().await {
                Some(RunEvent::Text { delta }) => {
                    let e = next(
                        "response.output_text.delta",
                        json!({"item_id": shape.message_id, "output_index": 0, "content_index": 0, "delta": delta}),
                    );
                    return Some((futures_util::stream::iter(vec![e]), (events, next, shape, false)));
                }
                Some(RunEvent::Done { text, usage, .. }) => {
                    let part = json!({"type": "output_text", "text": text, "annotations": []});
                    let out = vec![
                        next(
                            "response.output_text.done",
                            json!({"item_id": shape.message_id, "output_index": 0, "content_index": 0, "text": text}),
                        ),
                        next(
                            "response.content_part.done",
                            json!({"item_id": shape.message_id, "output_index": 0, "content_index": 0, "part": part}),
                        ),
                        next("response.output_item.done", json!({"output_index": 0, "item": shape.message(&text, "completed")})),
                        next(
                            "response.completed",
                            json!({"response": shape.response("completed", vec![shape.message(&text, "completed")], Some(&usage), None)}),
                        ),
                        Ok(Event::default().data("[DONE]")),
                    ];
                    return Some((futures_util::stream::iter(out), (events, next, shape, true)));
                }
                Some(RunEvent::Error { kind, message, .. }) => {
                    let error = json!({"code": kind, "message": message});
                    let out = vec![
                        next("response.failed", json!({"response": shape.response("failed", vec![], None, Some(error))})),
                        Ok(Event::default().data("[DONE]")),
                    ];
                    return Some((futures_util::stream::iter(out), (events, next, shape, true)));
                }
                Some(_) => continue,
                None => {
                    let out = vec![Ok(Event::default().data("[DONE]"))];
                    return Some((futures_util::stream::iter(out), (events, next, shape, true)));
                }
            }
        }
    }).flatten());
    Sse::new(body).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}

/// `POST /v1/responses`.
pub async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ResponsesRequest>,
) -> Result<Response, ApiError> {
    if !state.runtime.config().gateway.chat_completions_enabled {
        return Err(ApiError::not_found(
            "the OpenAI-compatible API is disabled (gateway.http.endpoints.chatCompletions.enabled)",
        ));
    }
    let turn = turn_request(&state, &headers, &req).await?;
    let shape_for = |run_id: &str| Shape {
        id: response_id(run_id),
        message_id: format!("msg_{}", run_id.replace('-', "")),
        model: req.model.clone(),
        created: now_secs(),
        instructions: req.instructions.clone(),
    };
    match state.runtime.start_turn(turn).await? {
        TurnStart::Started(handle) => {
            let shape = shape_for(&handle.run_id);
            let events = super::receiver_stream(handle.events);
            if req.stream {
                return Ok(stream(shape, events));
            }
            let mut events = Box::pin(events);
            while let Some(ev) = events.next().await {
                match ev {
                    RunEvent::Done { text, usage, .. } => {
                        let output = vec![shape.message(&text, "completed")];
                        return Ok(Json(shape.response("completed", output, Some(&usage), None)).into_response());
                    }
                    RunEvent::Error { kind, message, .. } => return Err(run_error(&kind, &message)),
                    _ => {}
                }
            }
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "the run ended without a result"))
        }
        TurnStart::Duplicate(run) => {
            let shape = shape_for(&run.run_id);
            let result = run.result.clone().unwrap_or_default();
            match run.status {
                RunStatus::Running => Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    "a request with this Idempotency-Key is still running; retry later",
                )
                .code("in_flight")),
                RunStatus::Ok => {
                    let text = result["text"].as_str().unwrap_or_default().to_string();
                    let usage: Usage = serde_json::from_value(result["usage"].clone()).unwrap_or_default();
                    let output = vec![shape.message(&text, "completed")];
                    Ok(Json(shape.response("completed", output, Some(&usage), None)).into_response())
                }
                _ => Err(run_error(
                    result["kind"].as_str().unwrap_or("error"),
                    result["error"].as_str().unwrap_or("the earlier request with this Idempotency-Key failed"),
                )),
            }
        }
    }
}
