//! `exec.approval.list|get|resolve` and the `exec.approval.requested|resolved` events: the
//! owner's side of exec approvals, for clients with `operator.approvals`.
//!
//! A request shows the exact argv and cwd that will run if allowed; `resolve` takes
//! `allow-once`, `allow-always` or `deny`, and the first decision wins (a second one, or one
//! after expiry, is refused with the request's status). Deciding is the broker's job; this
//! file only translates.

use std::sync::Arc;

use clawline_agent::approvals::{ApprovalEvent, Decision, ResolveError};
use clawline_store::ExecApprovalRow;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::{Access, Ctx, Method, Reply, method, parse};
use crate::protocol::error::RpcError;
use crate::protocol::frame::Event;
use crate::protocol::schema::{Object, Schema, opt, req};
use crate::protocol::scopes::APPROVALS;
use crate::state::AppState;

static NONE: Object = Object { props: &[], closed: true };
static GET: Object = Object { props: &[req("id", Schema::NON_EMPTY)], closed: true };
static RESOLVE: Object = Object {
    props: &[
        req("id", Schema::NON_EMPTY),
        req("decision", Schema::Enum(&["allow-once", "allow-always", "deny"])),
        opt("reviewer", Schema::OBJECT),
    ],
    closed: true,
};

pub fn methods() -> Vec<Method> {
    vec![
        method!("exec.approval.list", Access::Scope(APPROVALS), Schema::Object(&NONE), list),
        method!("exec.approval.get", Access::Scope(APPROVALS), Schema::Object(&GET), get),
        method!("exec.approval.resolve", Access::Scope(APPROVALS), Schema::Object(&RESOLVE), resolve),
    ]
}

/// A request as clients see it (also the `exec.approval.requested` payload).
pub fn approval_json(a: &ExecApprovalRow) -> Value {
    json!({
        "id": a.id,
        "kind": "exec",
        "status": a.status,
        "request": {
            "command": a.argv.join(" "),
            "argv": a.argv,
            "cwd": a.cwd,
            "agentId": a.agent_id,
            "sessionKey": a.session_key,
            "runId": a.run_id,
        },
        "decision": a.decision,
        "resolvedBy": a.resolved_by,
        "createdAtMs": a.created_at,
        "expiresAtMs": a.expires_at,
        "resolvedAtMs": a.resolved_at,
    })
}

fn store_err(e: impl std::fmt::Display) -> RpcError {
    RpcError::unavailable(format!("state store error: {e}"))
}

async fn list(ctx: Ctx, _p: Value) -> Reply {
    let pending = ctx.state.runtime.approvals().pending().await.map_err(store_err)?;
    Ok(json!({ "approvals": pending.iter().map(approval_json).collect::<Vec<_>>() }))
}

#[derive(Deserialize)]
struct GetParams {
    id: String,
}

async fn get(ctx: Ctx, p: Value) -> Reply {
    let p: GetParams = parse("exec.approval.get", p)?;
    match ctx.state.runtime.store().exec_approval(&p.id).await.map_err(store_err)? {
        Some(a) => Ok(approval_json(&a)),
        None => Err(RpcError::bad(format!("unknown approval id `{}`", p.id))),
    }
}

#[derive(Deserialize)]
struct ResolveParams {
    id: String,
    decision: String,
    /// The chat-app sender who decided, when a channel relays the decision.
    reviewer: Option<Reviewer>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reviewer {
    channel: String,
    account_id: String,
    sender_id: String,
}

async fn resolve(ctx: Ctx, p: Value) -> Reply {
    let p: ResolveParams = parse("exec.approval.resolve", p)?;
    let decision = Decision::parse(&p.decision)
        .ok_or_else(|| RpcError::bad("decision must be allow-once, allow-always or deny"))?;
    let by = match (&p.reviewer, &ctx.conn.device_id) {
        (Some(r), _) => format!("{}:{}:{} via connection {}", r.channel, r.account_id, r.sender_id, ctx.conn.id),
        (None, Some(device)) => format!("device:{device}"),
        (None, None) => format!("connection:{}", ctx.conn.id),
    };
    match ctx.state.runtime.approvals().resolve(&p.id, decision, &by).await {
        Ok(a) => Ok(json!({ "ok": true, "approval": approval_json(&a) })),
        Err(e @ (ResolveError::Unknown(_) | ResolveError::Closed { .. })) => Err(RpcError::bad(e.to_string())),
        Err(e) => Err(store_err(e)),
    }
}

/// Forwards the broker's requests and decisions to operators until shutdown.
pub async fn run_events(state: Arc<AppState>) {
    let mut rx = state.runtime.approvals().subscribe();
    loop {
        let ev = tokio::select! {
            () = state.shutdown.cancelled() => return,
            ev = rx.recv() => ev,
        };
        match ev {
            Ok(ApprovalEvent::Requested(a)) => {
                state.hub.broadcast(&Event::new("exec.approval.requested", &approval_json(&a)), |_| true)
            }
            Ok(ApprovalEvent::Resolved(a)) => {
                state.hub.broadcast(&Event::new("exec.approval.resolved", &approval_json(&a)), |_| true)
            }
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "approval events lagged; clients see them in exec.approval.list")
            }
            Err(RecvError::Closed) => return,
        }
    }
}
