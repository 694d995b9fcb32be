//! `chat.send`, `chat.history`, `chat.abort`, `chat.startup`, `chat.inject`: the chat views'
//! path (Control UI, TUI).
//!
//! `chat.send` answers once the user message is stored (persist before acknowledge) with
//! `{runId, status:"started"}`; `runId` is the idempotency key, so a retry of the same send
//! answers `in_flight` (or the finished run's status) and never runs the model twice. The run's
//! progress arrives as `chat` and `agent` events. If the session is busy with another run, the
//! send waits briefly for it and otherwise fails retryably: nothing is stored in that case.

use clawline_agent::TurnRequest;
use clawline_core::message::{AssistantMessage, ContentBlock, Message, StopReason, Usage};
use clawline_core::transcript::NewRecord;
use clawline_store::RunStatus;
use serde::Deserialize;
use serde_json::{Value, json};

use super::sessions::{defaults, hold, resolve_key, rows_json};
use super::{Access, Ctx, Method, Reply, method, parse};
use crate::protocol::error::RpcError;
use crate::protocol::schema::{Object, Schema, opt, req};
use crate::protocol::scopes::{ADMIN, READ, WRITE};
use crate::state::AppState;
use crate::turn_start::{Started, start_for_protocol};
use crate::views;

static ATTACHMENT: Object = Object {
    props: &[
        opt("type", Schema::STRING),
        opt("mimeType", Schema::STRING),
        opt("fileName", Schema::STRING),
        opt("content", Schema::Any),
        opt("sizeBytes", Schema::Num { min: None, max: None }),
        opt("durationMs", Schema::Num { min: None, max: None }),
        opt("width", Schema::Num { min: None, max: None }),
        opt("height", Schema::Num { min: None, max: None }),
    ],
    closed: false,
};

static SEND: Object = Object {
    props: &[
        req("sessionKey", Schema::str_range(1, 512)),
        opt("agentId", Schema::NON_EMPTY),
        opt("sessionId", Schema::NON_EMPTY),
        req("message", Schema::STRING),
        opt("thinking", Schema::STRING),
        opt("fastMode", Schema::AnyOf(&[Schema::Bool, Schema::Const("auto")])),
        opt("queueMode", Schema::Enum(&["steer", "followup", "collect", "interrupt"])),
        opt("deliver", Schema::Bool),
        opt("originatingChannel", Schema::STRING),
        opt("originatingTo", Schema::STRING),
        opt("originatingAccountId", Schema::STRING),
        opt("originatingThreadId", Schema::STRING),
        opt("replyToId", Schema::NON_EMPTY),
        opt("attachments", Schema::Array { items: &Schema::Object(&ATTACHMENT), min_items: 0, max_items: None }),
        opt("timeoutMs", Schema::UINT),
        opt("expectedLeafEntryId", Schema::Any),
        req("idempotencyKey", Schema::NON_EMPTY),
    ],
    closed: true,
};

static HISTORY: Object = Object {
    props: &[
        req("sessionKey", Schema::NON_EMPTY),
        opt("agentId", Schema::NON_EMPTY),
        opt("cursor", Schema::STRING),
        opt("limit", Schema::int_range(1, 1000)),
        opt("offset", Schema::UINT),
        opt("pendingBefore", Schema::int_min(1)),
        opt("inputRunIds", Schema::Array { items: &Schema::str_range(1, 256), min_items: 1, max_items: Some(50) }),
        opt("messageId", Schema::NON_EMPTY),
        opt("sessionId", Schema::NON_EMPTY),
        opt("maxChars", Schema::int_range(1, 500_000)),
        // Sent by 2026.9.6 clients, newer than the published schema.
        opt("maxBytes", Schema::int_min(1)),
    ],
    closed: true,
};

static ABORT: Object = Object {
    props: &[
        req("sessionKey", Schema::NON_EMPTY),
        opt("agentId", Schema::NON_EMPTY),
        opt("runId", Schema::NON_EMPTY),
        opt("preserveSideRuns", Schema::Bool),
    ],
    closed: true,
};

static STARTUP: Object = Object {
    props: &[
        req("sessionKey", Schema::NON_EMPTY),
        opt("agentId", Schema::NON_EMPTY),
        opt("limit", Schema::int_range(1, 1000)),
        opt("maxBytes", Schema::int_min(1)),
    ],
    closed: true,
};

static INJECT: Object = Object {
    props: &[
        req("sessionKey", Schema::NON_EMPTY),
        opt("agentId", Schema::NON_EMPTY),
        req("message", Schema::NON_EMPTY),
        opt("label", Schema::str_max(100)),
    ],
    closed: true,
};

pub fn methods() -> Vec<Method> {
    vec![
        method!("chat.send", Access::Scope(WRITE), Schema::Object(&SEND), send),
        method!("chat.history", Access::Scope(READ), Schema::Object(&HISTORY), history),
        method!("chat.abort", Access::Scope(WRITE), Schema::Object(&ABORT), abort),
        method!("chat.startup", Access::Scope(READ), Schema::Object(&STARTUP), startup),
        method!("chat.inject", Access::Scope(ADMIN), Schema::Object(&INJECT), inject),
    ]
}

/// The status word of a stored run, as the protocol reports it.
pub fn run_status(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Running => "in_flight",
        RunStatus::Ok => "ok",
        RunStatus::Aborted => "aborted",
        RunStatus::Error | RunStatus::Interrupted => "error",
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendParams {
    session_key: String,
    agent_id: Option<String>,
    message: String,
    #[serde(default)]
    attachments: Vec<Value>,
    idempotency_key: String,
}

async fn send(ctx: Ctx, p: Value) -> Reply {
    let p: SendParams = parse("chat.send", p)?;
    if !p.attachments.is_empty() {
        return Err(RpcError::bad("attachments are not supported by this gateway yet; send text"));
    }
    let (key, agent) = resolve_key(&ctx.state, &p.session_key, p.agent_id.as_deref())?;
    let req = TurnRequest {
        agent_id: Some(agent),
        session_key: Some(key),
        message: p.message,
        idempotency_key: Some(p.idempotency_key.clone()),
        run_id: Some(p.idempotency_key),
        channel: Some("ws".into()),
        traceparent: ctx.traceparent.clone(),
        ..Default::default()
    };
    match start_for_protocol(&ctx.state, req).await? {
        Started::New(tracked) => {
            let run_id = tracked.info.run_id.clone();
            ctx.after_response(move |written| tracked.start(Some(written)));
            Ok(json!({"runId": run_id, "status": "started"}))
        }
        Started::Duplicate(run) => Ok(json!({"runId": run.run_id, "status": run_status(run.status)})),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryParams {
    session_key: String,
    agent_id: Option<String>,
    limit: Option<usize>,
    max_chars: Option<usize>,
}

fn cap_text(mut message: Value, max_chars: usize) -> Value {
    if let Some(s) = message.get("content").and_then(Value::as_str)
        && s.chars().count() > max_chars
    {
        let cut = clawline_core::text::truncate_chars(s, max_chars).0.to_string();
        message["content"] = json!(cut);
    } else if let Some(blocks) = message.get_mut("content").and_then(Value::as_array_mut) {
        for b in blocks {
            if let Some(t) = b.get("text").and_then(Value::as_str)
                && t.chars().count() > max_chars
            {
                let cut = clawline_core::text::truncate_chars(t, max_chars).0.to_string();
                b["text"] = json!(cut);
            }
        }
    }
    message
}

/// The history payload shared by `chat.history` and `chat.startup`.
async fn history_payload(state: &AppState, key: &str, limit: usize, max_chars: Option<usize>) -> Reply {
    let store = state.runtime.store();
    let found = store.transcript_tail(key, limit).await.map_err(|e| RpcError::unavailable(e.to_string()))?;
    let (session_id, messages, total, info) = match found {
        None => (Value::Null, Vec::new(), 0, Value::Null),
        Some((row, records)) => {
            let messages: Vec<Value> = views::display_messages(&records, None)
                .into_iter()
                .map(|m| max_chars.map_or(m.clone(), |n| cap_text(m, n)))
                .collect();
            let total = (row.message_count as usize).max(messages.len());
            let info = rows_json(state, std::slice::from_ref(&row)).await?.pop().unwrap_or(Value::Null);
            (json!(row.session_id), messages, total, info)
        }
    };
    Ok(json!({
        "sessionKey": key,
        "sessionId": session_id,
        "hasMore": total > messages.len(),
        "totalMessages": total,
        "messages": messages,
        "pendingInputs": {"items": [], "total": 0},
        "defaults": defaults(state),
        "sessionInfo": info,
    }))
}

async fn history(ctx: Ctx, p: Value) -> Reply {
    let p: HistoryParams = parse("chat.history", p)?;
    let (key, _) = resolve_key(&ctx.state, &p.session_key, p.agent_id.as_deref())?;
    history_payload(&ctx.state, &key, p.limit.unwrap_or(200), p.max_chars).await
}

async fn startup(ctx: Ctx, p: Value) -> Reply {
    let p: HistoryParams = parse("chat.startup", p)?;
    let (key, _) = resolve_key(&ctx.state, &p.session_key, p.agent_id.as_deref())?;
    history_payload(&ctx.state, &key, p.limit.unwrap_or(100), None).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AbortParams {
    session_key: String,
    agent_id: Option<String>,
    run_id: Option<String>,
}

async fn abort(ctx: Ctx, p: Value) -> Reply {
    let p: AbortParams = parse("chat.abort", p)?;
    let (key, _) = resolve_key(&ctx.state, &p.session_key, p.agent_id.as_deref())?;
    let runtime = &ctx.state.runtime;
    let ids = match p.run_id {
        Some(id) => {
            if runtime.active_runs(&key).contains(&id) && runtime.abort(&id) {
                vec![id]
            } else {
                Vec::new()
            }
        }
        None => runtime.abort_session(&key),
    };
    Ok(json!({"ok": true, "aborted": !ids.is_empty(), "runIds": ids}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InjectParams {
    session_key: String,
    agent_id: Option<String>,
    message: String,
    label: Option<String>,
}

async fn inject(ctx: Ctx, p: Value) -> Reply {
    let p: InjectParams = parse("chat.inject", p)?;
    let (key, agent) = resolve_key(&ctx.state, &p.session_key, p.agent_id.as_deref())?;
    // Hold the session's lane so the note never lands in the middle of a run's records.
    let _lane = hold(&ctx.state, &key, "the session is busy with a run; retry when it finishes").await?;
    let store = ctx.state.runtime.store();
    let cwd = ctx.state.runtime.config().agent(&agent).map(|a| a.workspace.display().to_string()).unwrap_or_default();
    store.ensure_session(&key, &agent, &cwd).await.map_err(|e| RpcError::unavailable(e.to_string()))?;
    let message = Message::Assistant(AssistantMessage {
        content: vec![ContentBlock::Text { text: p.message }],
        api: "injected".into(),
        provider: "clawline".into(),
        model: p.label.unwrap_or_else(|| "chat.inject".into()),
        usage: Usage::default(),
        stop_reason: StopReason::Stop,
        timestamp: clawline_store::now_ms(),
        response_id: None,
        error_message: None,
    });
    let ids = store
        .append(&key, vec![NewRecord::Message(message)], None)
        .await
        .map_err(|e| RpcError::unavailable(e.to_string()))?;
    Ok(json!({"ok": true, "messageId": ids.first()}))
}
