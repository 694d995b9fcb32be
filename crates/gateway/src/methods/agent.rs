//! `agent` (one turn, answered twice), `agent.wait`, `agent.identity.get`, `agents.list`.
//!
//! `agent` answers the same request id twice, as OpenClaw's CLI expects: first
//! `{status:"accepted"}` as soon as the user message is stored, then the final result when the
//! run ends. Its `runId` is the idempotency key, so a retried request attaches to the first run.
//! `agent.wait` waits for any run the gateway knows (in memory, else the store's run table).

use std::time::Duration;

use clawline_agent::TurnRequest;
use serde::Deserialize;
use serde_json::{Value, json};

use super::chat::run_status;
use super::sessions::resolve_key;
use super::{Access, Ctx, Method, Reply, method, parse};
use crate::protocol::error::RpcError;
use crate::protocol::schema::{EMPTY, Object, Schema, opt, req};
use crate::protocol::scopes::{ADMIN, READ, WRITE};
use crate::run_events::{Ending, usage_json};
use crate::runs::{self, wait_for};
use crate::state::AppState;
use crate::turn_start::{Started, start_for_protocol};

/// How often `agent.wait` reads the store for a run this process does not track.
const STORE_POLL: Duration = Duration::from_millis(500);

static AGENT: Object = Object {
    props: &[
        req("message", Schema::NON_EMPTY),
        opt("agentId", Schema::NON_EMPTY),
        opt("provider", Schema::STRING),
        opt("model", Schema::STRING),
        opt("to", Schema::STRING),
        opt("replyTo", Schema::STRING),
        opt("sessionId", Schema::STRING),
        opt("sessionKey", Schema::STRING),
        opt("thinking", Schema::STRING),
        opt("deliver", Schema::Bool),
        opt("attachments", Schema::Array { items: &Schema::Any, min_items: 0, max_items: None }),
        opt("channel", Schema::STRING),
        opt("replyChannel", Schema::STRING),
        opt("accountId", Schema::STRING),
        opt("replyAccountId", Schema::STRING),
        opt("threadId", Schema::STRING),
        opt("groupId", Schema::STRING),
        opt("timeout", Schema::UINT),
        opt("bestEffortDeliver", Schema::Bool),
        opt("lane", Schema::STRING),
        opt("extraSystemPrompt", Schema::STRING),
        opt("label", Schema::str_range(1, 512)),
        req("idempotencyKey", Schema::NON_EMPTY),
    ],
    closed: true,
};
static WAIT: Object =
    Object { props: &[req("runId", Schema::NON_EMPTY), opt("timeoutMs", Schema::UINT)], closed: true };
static IDENTITY: Object =
    Object { props: &[opt("agentId", Schema::NON_EMPTY), opt("sessionKey", Schema::STRING)], closed: true };

/// Overriding the model or adding system instructions changes what the agent is: admin only.
fn agent_scope(params: &Value) -> &'static str {
    let set = |k: &str| params.get(k).and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    if set("provider") || set("model") || set("extraSystemPrompt") { ADMIN } else { WRITE }
}

pub fn methods() -> Vec<Method> {
    vec![
        method!("agent", Access::Dynamic(agent_scope), Schema::Object(&AGENT), agent),
        method!("agent.wait", Access::Scope(WRITE), Schema::Object(&WAIT), wait),
        method!("agent.identity.get", Access::Scope(READ), Schema::Object(&IDENTITY), identity),
        method!("agents.list", Access::Scope(READ), Schema::Object(&EMPTY), list),
    ]
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AgentParams {
    message: String,
    agent_id: Option<String>,
    session_key: Option<String>,
    model: Option<String>,
    provider: Option<String>,
    #[serde(default)]
    attachments: Vec<Value>,
    timeout: Option<u64>,
    extra_system_prompt: Option<String>,
    idempotency_key: String,
}

fn final_result(run_id: &str, info: Option<&runs::RunInfo>, end: &Ending, session_id: Option<String>) -> Value {
    let (provider, model) =
        info.and_then(|i| i.model.split_once('/')).map(|(p, m)| (p.to_string(), m.to_string())).unzip();
    let started = info.map(|i| i.started_at).unwrap_or(end.ended_at);
    let summary = match end.status {
        "ok" => "completed".to_string(),
        _ => end.error.clone().unwrap_or_else(|| end.status.to_string()),
    };
    json!({
        "runId": run_id,
        "status": end.status,
        "summary": summary,
        "result": {
            "payloads": if end.text.is_empty() { json!([]) } else { json!([{"text": end.text, "mediaUrl": null}]) },
            "meta": {
                "durationMs": (end.ended_at - started).max(0),
                "aborted": end.status == "aborted",
                "stopReason": end.stop_reason,
                "error": end.error,
                "errorKind": end.error_kind,
                "agentMeta": {
                    "sessionId": session_id,
                    "provider": provider,
                    "model": model,
                    "usage": usage_json(&end.usage),
                },
            },
        },
    })
}

/// The ending of a run that is no longer in memory, from the store.
async fn stored_ending(state: &AppState, run_id: &str) -> Result<Option<(Ending, clawline_store::RunRow)>, RpcError> {
    let Some(run) = state.runtime.store().get_run(run_id).await.map_err(|e| RpcError::unavailable(e.to_string()))?
    else {
        return Ok(None);
    };
    let result = run.result.clone().unwrap_or_default();
    let end = Ending {
        status: run_status(run.status),
        text: result["text"].as_str().unwrap_or_default().to_string(),
        stop_reason: result["stopReason"].as_str().unwrap_or(run_status(run.status)).to_string(),
        error: result["error"].as_str().map(String::from),
        error_kind: result["kind"].as_str().map(String::from),
        usage: serde_json::from_value(result["usage"].clone()).unwrap_or_default(),
        ended_at: run.ended_at.unwrap_or(run.started_at),
    };
    Ok(Some((end, run)))
}

async fn agent(ctx: Ctx, p: Value) -> Reply {
    let p: AgentParams = parse("agent", p)?;
    if !p.attachments.is_empty() {
        return Err(RpcError::bad("attachments are not supported by this gateway yet; send text"));
    }
    if p.model.as_deref().is_some_and(|m| !m.is_empty()) || p.provider.as_deref().is_some_and(|m| !m.is_empty()) {
        return Err(RpcError::bad(
            "per-run model overrides are not supported yet; set the agent's model in agents.entries.<id>.model",
        ));
    }
    let state = &ctx.state;
    let raw_key = p.session_key.clone().unwrap_or_else(|| "main".into());
    let (key, agent) = resolve_key(state, &raw_key, p.agent_id.as_deref())?;
    let req = TurnRequest {
        agent_id: Some(agent.clone()),
        session_key: Some(key.clone()),
        message: p.message,
        idempotency_key: Some(p.idempotency_key.clone()),
        run_id: Some(p.idempotency_key.clone()),
        extra_system: p.extra_system_prompt,
        channel: Some("ws".into()),
        traceparent: ctx.traceparent.clone(),
        ..Default::default()
    };
    let (run_id, tracked) = match start_for_protocol(state, req).await? {
        Started::New(tracked) => (tracked.info.run_id.clone(), Some(tracked)),
        Started::Duplicate(run) => (run.run_id, None),
    };
    let written = ctx.conn.respond_ok_notify(
        &ctx.id,
        &json!({"runId": run_id, "sessionKey": key, "agentId": agent, "status": "accepted", "acceptedAt": clawline_store::now_ms()}),
    );
    // Events only after the client has the run id.
    if let Some(t) = tracked {
        t.start(Some(written));
    }
    let agent_timeout = state.runtime.config().agent(&agent).map(|a| a.timeout_secs).unwrap_or(600);
    let wait =
        Duration::from_secs(p.timeout.filter(|t| *t > 0).unwrap_or(agent_timeout).min(86_400).saturating_add(30));
    let session_id = state.runtime.store().get_session(&key).await.ok().flatten().map(|r| r.session_id);
    if let Some(rx) = state.runs.watch(&run_id) {
        return match wait_for(rx, wait).await {
            Some(end) => Ok(final_result(&run_id, state.runs.info(&run_id).as_ref(), &end, session_id)),
            None => Ok(json!({"runId": run_id, "status": "timeout", "summary": "the run did not finish in time"})),
        };
    }
    // A duplicate of a run this process does not track (e.g. from before a restart).
    match stored_ending(state, &run_id).await? {
        Some((end, _)) => Ok(final_result(&run_id, None, &end, session_id)),
        None => Err(RpcError::bad(format!("unknown run: {run_id}"))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WaitParams {
    run_id: String,
    timeout_ms: Option<u64>,
}

async fn wait(ctx: Ctx, p: Value) -> Reply {
    let p: WaitParams = parse("agent.wait", p)?;
    let state = &ctx.state;
    // At most a day: the wait is bounded whatever the client asks.
    let timeout = Duration::from_millis(p.timeout_ms.unwrap_or(30_000).min(86_400_000));
    let answer = |end: &Ending, started: Option<i64>| {
        json!({
            "runId": p.run_id,
            "status": end.status,
            "startedAt": started,
            "endedAt": end.ended_at,
            "stopReason": end.stop_reason,
            "error": end.error,
        })
    };
    if let Some(rx) = state.runs.watch(&p.run_id) {
        let started = state.runs.info(&p.run_id).map(|i| i.started_at);
        return Ok(match wait_for(rx, timeout).await {
            Some(end) => answer(&end, started),
            None => json!({"runId": p.run_id, "status": "timeout", "startedAt": started}),
        });
    }
    // Not tracked here (started before a restart, or by another path): the store is the record.
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match stored_ending(state, &p.run_id).await? {
            Some((_, run)) if run.status == clawline_store::RunStatus::Running => {
                if tokio::time::Instant::now() >= deadline {
                    return Ok(json!({"runId": p.run_id, "status": "timeout", "startedAt": run.started_at}));
                }
                let next = (tokio::time::Instant::now() + STORE_POLL).min(deadline);
                tokio::time::sleep_until(next).await;
            }
            Some((end, run)) => return Ok(answer(&end, Some(run.started_at))),
            None => return Err(RpcError::bad(format!("unknown run: {}", p.run_id))),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdentityParams {
    agent_id: Option<String>,
    session_key: Option<String>,
}

async fn identity(ctx: Ctx, p: Value) -> Reply {
    let p: IdentityParams = parse("agent.identity.get", p)?;
    let config = ctx.state.runtime.config();
    let id = match (&p.agent_id, &p.session_key) {
        (Some(a), _) => a.clone(),
        (None, Some(k)) => resolve_key(&ctx.state, k, None)?.1,
        (None, None) => config.default_agent.clone(),
    };
    let agent = config.agent(&id).ok_or_else(|| RpcError::bad(format!("unknown agent id: {id}")))?;
    let configured = ctx.state.runtime.config().file.agents.entries.get(&id).and_then(|e| e.name.clone()).is_some();
    let initial = agent.name.chars().next().map(|c| c.to_uppercase().to_string()).unwrap_or_else(|| "A".into());
    Ok(json!({
        "agentId": agent.id,
        "name": agent.name,
        "nameSource": if configured { "config" } else { "default" },
        "avatar": initial,
    }))
}

async fn list(ctx: Ctx, _p: Value) -> Reply {
    let config = ctx.state.runtime.config();
    let agents: Vec<Value> = config
        .agents
        .values()
        .map(|a| {
            json!({
                "id": a.id,
                "name": a.name,
                "kind": "agent",
                "workspace": a.workspace.display().to_string(),
                "model": a.model.as_ref().map(|m| json!({"primary": m.to_string(), "fallbacks": a.fallbacks.iter().map(|f| f.to_string()).collect::<Vec<_>>()})).unwrap_or_else(|| json!({})),
            })
        })
        .collect();
    Ok(json!({
        "defaultId": config.default_agent,
        "mainKey": "main",
        "scope": "per-sender",
        "ownership": "sole",
        "selectionRequired": false,
        "agents": agents,
    }))
}
