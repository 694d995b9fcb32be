//! `sessions.list|describe|preview|patch|reset|delete|subscribe` and
//! `sessions.messages.subscribe|unsubscribe`.
//!
//! Keys a client sends are canonicalized the way every other surface does it
//! (`main` → `agent:<default>:main`, bare keys are scoped to the agent). Subscriptions only mark
//! the connection; the change feed (`feed.rs`) does the sending.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Access, Ctx, Method, Reply, method, parse};
use crate::protocol::error::RpcError;
use crate::protocol::schema::{EMPTY, Object, Schema, opt, req};
use crate::protocol::scopes::{ADMIN, READ, WRITE};
use crate::state::AppState;
use crate::turn_start::LANE_WAIT;
use crate::views;

const NULLABLE_LABEL: Schema = Schema::AnyOf(&[Schema::str_range(1, 512), Schema::Null]);

static LIST: Object = Object {
    props: &[
        opt("limit", Schema::int_min(1)),
        opt("offset", Schema::UINT),
        opt("activeMinutes", Schema::int_min(1)),
        opt("requireLastInteraction", Schema::Bool),
        opt("sortBy", Schema::Enum(&["updatedAt", "lastInteractionAt"])),
        opt("includeGlobal", Schema::Bool),
        opt("includeUnknown", Schema::Bool),
        opt("configuredAgentsOnly", Schema::Bool),
        opt("includeDerivedTitles", Schema::Bool),
        opt("includeLastMessage", Schema::Bool),
        opt("label", Schema::str_range(1, 512)),
        opt("boardFace", Schema::Enum(&["chat", "dashboard"])),
        opt("creatorId", Schema::NON_EMPTY),
        opt("ownerId", Schema::NON_EMPTY),
        opt("ownerFirst", Schema::Bool),
        opt("involvingMe", Schema::Bool),
        opt("involvingProfileId", Schema::NON_EMPTY),
        opt("includePeople", Schema::Bool),
        opt("spawnedBy", Schema::NON_EMPTY),
        opt("agentId", Schema::NON_EMPTY),
        opt("search", Schema::STRING),
        opt("archived", Schema::AnyOf(&[Schema::Bool, Schema::Const("all")])),
    ],
    closed: true,
};
static DESCRIBE: Object = Object {
    props: &[
        req("key", Schema::NON_EMPTY),
        opt("includeDerivedTitles", Schema::Bool),
        opt("includeLastMessage", Schema::Bool),
    ],
    closed: true,
};
static PREVIEW: Object = Object {
    props: &[
        req("keys", Schema::Array { items: &Schema::NON_EMPTY, min_items: 1, max_items: Some(100) }),
        opt("limit", Schema::int_min(1)),
        opt("maxChars", Schema::int_min(20)),
    ],
    closed: true,
};
static PATCH: Object = Object {
    props: &[
        req("key", Schema::NON_EMPTY),
        opt("agentId", Schema::NON_EMPTY),
        opt("label", NULLABLE_LABEL),
        opt("expectedSessionId", Schema::NON_EMPTY),
        // How the session looks in lists; stored and shown back, nothing else.
        opt("archived", Schema::Bool),
        opt("pinned", Schema::Bool),
        opt("unread", Schema::Bool),
        opt("icon", Schema::AnyOf(&[Schema::STRING, Schema::Null])),
        opt("color", Schema::AnyOf(&[Schema::STRING, Schema::Null])),
        opt("category", Schema::AnyOf(&[Schema::str_range(1, 512), Schema::Null])),
        opt(
            "attention",
            Schema::AnyOf(&[Schema::Enum(&["hand", "key", "alert", "flag", "lock", "hourglass"]), Schema::Null]),
        ),
        opt("statusNote", Schema::AnyOf(&[Schema::str_max(120), Schema::Null])),
        opt("boardFace", Schema::Enum(&["chat", "dashboard"])),
    ],
    closed: true,
};
static RESET: Object = Object {
    props: &[
        req("key", Schema::NON_EMPTY),
        opt("agentId", Schema::NON_EMPTY),
        opt("reason", Schema::Enum(&["new", "reset"])),
    ],
    closed: true,
};
static DELETE: Object = Object {
    props: &[
        req("key", Schema::NON_EMPTY),
        opt("agentId", Schema::NON_EMPTY),
        opt("deleteTranscript", Schema::Bool),
        opt("expectedSessionId", Schema::NON_EMPTY),
    ],
    closed: true,
};
static MESSAGES_SUB: Object = Object {
    props: &[req("key", Schema::NON_EMPTY), opt("agentId", Schema::NON_EMPTY), opt("includeApprovals", Schema::Bool)],
    closed: true,
};
static MESSAGES_UNSUB: Object =
    Object { props: &[req("key", Schema::NON_EMPTY), opt("agentId", Schema::NON_EMPTY)], closed: true };

pub fn methods() -> Vec<Method> {
    vec![
        method!("sessions.list", Access::Scope(READ), Schema::Object(&LIST), list),
        method!("sessions.describe", Access::Scope(READ), Schema::Object(&DESCRIBE), describe),
        method!("sessions.preview", Access::Scope(READ), Schema::Object(&PREVIEW), preview),
        method!("sessions.patch", Access::Scope(WRITE), Schema::Object(&PATCH), patch),
        method!("sessions.reset", Access::Scope(ADMIN), Schema::Object(&RESET), reset),
        method!("sessions.delete", Access::Scope(ADMIN), Schema::Object(&DELETE), delete),
        method!("sessions.subscribe", Access::Scope(READ), Schema::Object(&EMPTY), subscribe),
        method!("sessions.messages.subscribe", Access::Scope(READ), Schema::Object(&MESSAGES_SUB), messages_subscribe),
        method!(
            "sessions.messages.unsubscribe",
            Access::Scope(READ),
            Schema::Object(&MESSAGES_UNSUB),
            messages_unsubscribe
        ),
    ]
}

/// The canonical key and agent for a key a client sent (with an optional agent id).
pub fn resolve_key(state: &AppState, key: &str, agent_id: Option<&str>) -> Result<(String, String), RpcError> {
    let config = state.runtime.config();
    let agent = match agent_id {
        Some(a) => a.to_string(),
        None => key
            .strip_prefix("agent:")
            .and_then(|rest| rest.split(':').next())
            .filter(|a| config.agent(a).is_some())
            .unwrap_or(&config.default_agent)
            .to_string(),
    };
    if config.agent(&agent).is_none() {
        return Err(RpcError::bad(format!("unknown agent id: {agent}"))
            .details(json!({"code": "UNKNOWN_AGENT_ID", "agentId": agent})));
    }
    let key =
        clawline_core::session_key::SessionKey::from_client(&agent, key).map_err(|e| RpcError::bad(e.to_string()))?;
    Ok((key.to_string(), agent))
}

fn store_err(e: clawline_store::StoreError) -> RpcError {
    RpcError::unavailable(format!("state store error: {e}"))
}

/// Rows with previews, as `sessions.list` returns them.
pub async fn rows_json(state: &AppState, rows: &[clawline_store::SessionRow]) -> Result<Vec<Value>, RpcError> {
    let last = state
        .runtime
        .store()
        .last_messages(rows.iter().map(|r| r.session_id.clone()).collect())
        .await
        .map_err(store_err)?;
    Ok(rows
        .iter()
        .zip(last)
        .map(|(row, m)| {
            let p = m.map(|m| views::preview(&views::message_text(&m), views::PREVIEW_CHARS));
            views::session_row(row, p, &state.runtime.active_runs(&row.session_key))
        })
        .collect())
}

/// The defaults block: the default agent's model.
pub fn defaults(state: &AppState) -> Value {
    let config = state.runtime.config();
    let agent = config.default_agent();
    let model = agent.model.as_ref();
    let context = model
        .and_then(|m| config.providers.get(&m.provider).and_then(|p| p.model(&m.model)).and_then(|e| e.context_window));
    json!({
        "modelProvider": model.map(|m| m.provider.clone()),
        "model": model.map(|m| m.model.clone()),
        "contextTokens": context,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListParams {
    limit: Option<usize>,
    offset: Option<usize>,
    agent_id: Option<String>,
    search: Option<String>,
    label: Option<String>,
    archived: Option<Value>,
    spawned_by: Option<String>,
}

async fn list(ctx: Ctx, p: Value) -> Reply {
    let p: ListParams = parse("sessions.list", p)?;
    let state = &ctx.state;
    let limit = p.limit.unwrap_or(100).min(1000);
    let offset = p.offset.unwrap_or(0);
    let search = p.search.or(p.label).filter(|s| !s.trim().is_empty());
    let archived = match p.archived {
        Some(Value::Bool(want)) => Some(want),
        Some(_) => None, // "all"
        None => Some(false),
    };
    // No session is spawned by another in clawline (there are no sub-agents yet).
    let page = if p.spawned_by.is_some() {
        clawline_store::SessionPage { sessions: Vec::new(), total: 0 }
    } else {
        let q = clawline_store::SessionQuery { agent_id: p.agent_id, search, archived, limit, offset };
        state.runtime.store().list_sessions_page(q).await.map_err(store_err)?
    };
    let rows = rows_json(state, &page.sessions).await?;
    let next = offset.saturating_add(page.sessions.len());
    Ok(json!({
        "ts": clawline_store::now_ms(),
        "path": state.runtime.store().path().display().to_string(),
        "count": rows.len(),
        "totalCount": page.total,
        "limitApplied": limit,
        "nextOffset": next,
        "hasMore": next < page.total,
        "owners": [],
        "defaults": defaults(state),
        "sessions": rows,
    }))
}

#[derive(Deserialize)]
struct KeyParams {
    key: String,
    #[serde(rename = "agentId")]
    agent_id: Option<String>,
}

async fn describe(ctx: Ctx, p: Value) -> Reply {
    let p: KeyParams = parse("sessions.describe", p)?;
    let (key, _) = resolve_key(&ctx.state, &p.key, p.agent_id.as_deref())?;
    match ctx.state.runtime.store().get_session(&key).await.map_err(store_err)? {
        Some(row) => Ok(json!({"session": rows_json(&ctx.state, &[row]).await?.pop()})),
        None => Err(RpcError::bad(format!("session not found: {key}"))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PreviewParams {
    keys: Vec<String>,
    limit: Option<usize>,
    max_chars: Option<usize>,
}

async fn preview(ctx: Ctx, p: Value) -> Reply {
    let p: PreviewParams = parse("sessions.preview", p)?;
    let limit = p.limit.unwrap_or(12).min(100);
    let max_chars = p.max_chars.unwrap_or(240);
    let mut previews = Vec::new();
    for raw in p.keys {
        let Ok((key, _)) = resolve_key(&ctx.state, &raw, None) else {
            previews.push(json!({"key": raw, "status": "missing", "items": []}));
            continue;
        };
        match ctx.state.runtime.store().transcript_tail(&key, limit * 3).await.map_err(store_err)? {
            None => previews.push(json!({"key": key, "status": "missing", "items": []})),
            Some((_, records)) => {
                let items: Vec<Value> = records
                    .iter()
                    .filter_map(|r| r.record.message().map(|m| (r, m)))
                    .filter(|(_, m)| !matches!(m, clawline_core::message::Message::ToolResult(_)))
                    .map(|(_, m)| {
                        let role = match m {
                            clawline_core::message::Message::User(_) => "user",
                            _ => "assistant",
                        };
                        json!({"role": role, "text": views::preview(&views::message_text(m), max_chars)})
                    })
                    .collect();
                let skip = items.len().saturating_sub(limit);
                let status = if items.is_empty() { "empty" } else { "ok" };
                previews.push(json!({"key": key, "status": status, "items": items[skip..]}));
            }
        }
    }
    Ok(json!({"ts": clawline_store::now_ms(), "previews": previews}))
}

async fn patch(ctx: Ctx, p: Value) -> Reply {
    let key_raw = p["key"].as_str().unwrap_or_default().to_string();
    let (key, _) = resolve_key(&ctx.state, &key_raw, p["agentId"].as_str())?;
    if let Some(expected) = p["expectedSessionId"].as_str() {
        let current = ctx.state.runtime.store().get_session(&key).await.map_err(store_err)?.map(|r| r.session_id);
        if current.as_deref() != Some(expected) {
            return Err(RpcError::bad(format!(
                "session {key} changed since it was read (expected session id {expected})"
            )));
        }
    }
    let mut patch = clawline_store::SessionPatch::default();
    if let Some(label) = p.get("label") {
        patch.label = Some(label.as_str().map(String::from));
    }
    if let Value::Object(map) = &p {
        for (k, v) in map {
            if !matches!(k.as_str(), "key" | "agentId" | "label" | "expectedSessionId") {
                patch.flags.insert(k.clone(), v.clone());
            }
        }
    }
    let store = ctx.state.runtime.store();
    match store.patch_session(&key, patch).await.map_err(store_err)? {
        Some(row) => Ok(json!({
            "ok": true,
            "path": store.path().display().to_string(),
            "key": key,
            "entry": rows_json(&ctx.state, &[row]).await?.pop(),
        })),
        None => Err(RpcError::bad(format!("session not found: {key}"))),
    }
}

/// Stops the session's runs and waits (briefly) until the last of them has written its final
/// records, then holds the session so no new run starts while the caller changes it. Without
/// the wait an aborted run could append to a transcript that was just reset or deleted.
pub async fn stop_and_hold(state: &AppState, key: &str, why: &str) -> Result<clawline_agent::LaneGuard, RpcError> {
    for run in state.runtime.abort_session(key) {
        tracing::info!(run_id = %run, session = %key, "aborted by a session {why}");
    }
    hold(state, key, &format!("the session's run did not stop in time; retry the {why}")).await
}

/// Holds the session's lane (no run starts or writes meanwhile), waiting at most
/// [`LANE_WAIT`] for a run to end; `busy` is the refusal's message past that.
pub async fn hold(state: &AppState, key: &str, busy: &str) -> Result<clawline_agent::LaneGuard, RpcError> {
    tokio::time::timeout(LANE_WAIT, state.runtime.lanes().acquire(key))
        .await
        .map_err(|_| RpcError::unavailable(busy).retry_after(2000))
}

async fn reset(ctx: Ctx, p: Value) -> Reply {
    let p: KeyParams = parse("sessions.reset", p)?;
    let (key, agent) = resolve_key(&ctx.state, &p.key, p.agent_id.as_deref())?;
    let _held = stop_and_hold(&ctx.state, &key, "reset").await?;
    let cwd = ctx.state.runtime.config().agent(&agent).map(|a| a.workspace.display().to_string()).unwrap_or_default();
    let row = ctx.state.runtime.store().reset_session(&key, &agent, &cwd).await.map_err(store_err)?;
    Ok(json!({"ok": true, "key": key, "entry": rows_json(&ctx.state, &[row]).await?.pop()}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteParams {
    key: String,
    agent_id: Option<String>,
    delete_transcript: Option<bool>,
    expected_session_id: Option<String>,
}

async fn delete(ctx: Ctx, p: Value) -> Reply {
    let p: DeleteParams = parse("sessions.delete", p)?;
    let (key, agent) = resolve_key(&ctx.state, &p.key, p.agent_id.as_deref())?;
    if key == format!("agent:{agent}:main") {
        return Err(RpcError::bad(format!("{key} is the agent's main session; reset it instead of deleting it")));
    }
    let store = ctx.state.runtime.store();
    if let Some(expected) = &p.expected_session_id {
        let current = store.get_session(&key).await.map_err(store_err)?.map(|r| r.session_id);
        if current.as_deref() != Some(expected.as_str()) {
            return Err(RpcError::bad(format!(
                "session {key} changed since it was read (expected session id {expected})"
            )));
        }
    }
    let _held = stop_and_hold(&ctx.state, &key, "delete").await?;
    let deleted = store.delete_session(&key, p.delete_transcript.unwrap_or(true)).await.map_err(store_err)?.is_some();
    Ok(json!({"ok": true, "key": key, "deleted": deleted, "archived": []}))
}

async fn subscribe(ctx: Ctx, _p: Value) -> Reply {
    ctx.conn.subs().sessions = true;
    Ok(json!({"subscribed": true}))
}

/// At most this many sessions' messages per connection.
const MAX_MESSAGE_SUBSCRIPTIONS: usize = 256;

async fn messages_subscribe(ctx: Ctx, p: Value) -> Reply {
    let p: KeyParams = parse("sessions.messages.subscribe", p)?;
    let (key, _) = resolve_key(&ctx.state, &p.key, p.agent_id.as_deref())?;
    let mut subs = ctx.conn.subs();
    if subs.messages.len() >= MAX_MESSAGE_SUBSCRIPTIONS && !subs.messages.contains(&key) {
        return Err(RpcError::bad(format!(
            "at most {MAX_MESSAGE_SUBSCRIPTIONS} sessions can be watched per connection"
        )));
    }
    subs.messages.insert(key.clone());
    Ok(json!({"subscribed": true, "key": key}))
}

async fn messages_unsubscribe(ctx: Ctx, p: Value) -> Reply {
    let p: KeyParams = parse("sessions.messages.unsubscribe", p)?;
    let (key, _) = resolve_key(&ctx.state, &p.key, p.agent_id.as_deref())?;
    ctx.conn.subs().messages.remove(&key);
    Ok(json!({"subscribed": false, "key": key}))
}
