//! clawline's own chat API, used by `clawline agent` (the web page is a channel: routes/webchat.rs).
//!
//! `POST /api/chat` `{message, sessionKey?, agentId?, idempotencyKey?}` answers with a stream of
//! run events (`event: <type>`, `data: <json>`): `started`, `text`, `thinking`, `tool_start`,
//! `tool_end`, then exactly one `done` or `error`. The user message is stored before the first
//! byte is sent. `GET /api/sessions` lists sessions; `GET /api/sessions/history?key=…` returns a
//! session's transcript records. `GET /api/channels?probe=true` is `channels.status` (what
//! `clawline channels status` shows).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use clawline_agent::{RunEvent, TurnRequest, TurnStart};
use clawline_core::message::Usage;
use clawline_core::session_key::SessionKey;
use clawline_store::RunStatus;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::body::JsonBody;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChatTurn {
    message: String,
    #[serde(default)]
    session_key: Option<String>,
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

fn to_sse(e: RunEvent) -> Result<Event, Infallible> {
    let name = e.name();
    Ok(Event::default().event(name).data(serde_json::to_string(&e).unwrap_or_else(|_| "{}".into())))
}

/// `POST /api/chat`.
pub async fn chat(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    JsonBody(turn): JsonBody<ChatTurn>,
) -> Result<Response, ApiError> {
    let req = TurnRequest {
        agent_id: turn.agent_id,
        session_key: turn.session_key,
        message: turn.message,
        idempotency_key: turn.idempotency_key,
        channel: Some("api".into()),
        traceparent: headers.get("traceparent").and_then(|v| v.to_str().ok()).map(String::from),
        ..Default::default()
    };
    match state.runtime.start_turn(req).await? {
        TurnStart::Started(handle) => {
            let stream = super::receiver_stream(handle.events).map(to_sse);
            Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
        }
        TurnStart::Duplicate(run) => {
            let result = run.result.clone().unwrap_or_default();
            let text = result["text"].as_str().unwrap_or_default().to_string();
            let event = match run.status {
                RunStatus::Running => {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "conflict",
                        "a turn with this idempotencyKey is still running",
                    )
                    .code("in_flight"));
                }
                RunStatus::Ok => RunEvent::Done {
                    run_id: run.run_id,
                    text,
                    stop_reason: result["stopReason"].as_str().unwrap_or("stop").to_string(),
                    usage: serde_json::from_value::<Usage>(result["usage"].clone()).unwrap_or_default(),
                    model_calls: result["modelCalls"].as_u64().unwrap_or(0) as u32,
                },
                _ => RunEvent::Error {
                    run_id: run.run_id,
                    kind: result["kind"].as_str().unwrap_or("interrupted").to_string(),
                    message: result["error"].as_str().unwrap_or("the earlier turn did not finish").to_string(),
                    hint: None,
                    text,
                },
            };
            Ok(Sse::new(futures_util::stream::iter([to_sse(event)])).into_response())
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /api/sessions`.
pub async fn sessions(State(state): State<Arc<AppState>>, Query(q): Query<ListQuery>) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = state.runtime.store().list_sessions(q.agent_id, limit).await.map_err(store_error)?;
    Ok(Json(json!({ "sessions": rows })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryQuery {
    key: Option<String>,
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /api/sessions/history?key=…`: the last `limit` (default 200) records of a session.
pub async fn history(
    State(state): State<Arc<AppState>>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    let config = state.runtime.config();
    let agent = q.agent_id.unwrap_or_else(|| config.default_agent.clone());
    if config.agent(&agent).is_none() {
        return Err(ApiError::not_found(format!("unknown agent `{agent}`")));
    }
    let key = SessionKey::from_client(&agent, q.key.as_deref().unwrap_or("main"))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let limit = q.limit.unwrap_or(200).clamp(1, 5000);
    match state.runtime.store().session_with_transcript(key.as_str()).await.map_err(store_error)? {
        Some((row, records)) => {
            let skip = records.len().saturating_sub(limit);
            Ok(Json(json!({"sessionKey": key.as_str(), "session": row, "records": &records[skip..]})))
        }
        None => Ok(Json(json!({"sessionKey": key.as_str(), "session": null, "records": []}))),
    }
}

fn store_error(e: clawline_store::StoreError) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", format!("state store error: {e}"))
}

#[derive(Deserialize)]
pub struct ChannelsQuery {
    #[serde(default)]
    probe: bool,
    channel: Option<String>,
}

/// `GET /api/channels`: the channel accounts and what is observed about them.
pub async fn channels(State(state): State<Arc<AppState>>, Query(q): Query<ChannelsQuery>) -> Json<Value> {
    Json(crate::methods::channels_status(&state, q.probe, Duration::from_secs(10), q.channel.as_deref()).await)
}
