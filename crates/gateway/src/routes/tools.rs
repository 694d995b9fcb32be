//! `POST /tools/invoke`: run one built-in tool over HTTP, with the gateway token.
//!
//! Body: `{tool | name, args?, agentId?, sessionKey?, idempotencyKey?, dryRun?, action?}`.
//! Tools that write files or run programs (`exec`, `write`, `edit`) are refused here unless
//! `gateway.tools.allow` lists them; `gateway.tools.deny` refuses more. Answers:
//! `200 {ok:true, result:{content:[…]}}`, `404 {ok:false, error:{type:"not_found"}}` for a tool
//! that is not available here, `400 {ok:false, error:{type:"tool_error"}}` when the tool
//! failed, and the usual 401/413/429 from the guard and body limits.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::body::JsonBody;
use crate::error::ApiError;
use crate::state::AppState;
use crate::tool_invoke::{self, NotRun};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InvokeBody {
    tool: Option<String>,
    name: Option<String>,
    #[serde(default)]
    args: serde_json::Map<String, Value>,
    agent_id: Option<String>,
    /// Accepted for OpenClaw clients; built-in tools do not depend on a session.
    #[serde(default, rename = "sessionKey")]
    _session_key: Option<String>,
    /// A retry with the same key returns the first call's result (see `tool_invoke.rs`).
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    dry_run: bool,
    /// Multi-action tools take their action in the arguments; none of the built-in tools has one.
    action: Option<String>,
}

fn refusal(status: StatusCode, kind: &str, message: String) -> Response {
    (status, Json(json!({"ok": false, "error": {"type": kind, "message": message}}))).into_response()
}

/// `POST /tools/invoke`.
pub async fn invoke(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody<InvokeBody>,
) -> Result<Response, ApiError> {
    let Some(name) = body.tool.or(body.name).filter(|n| !n.trim().is_empty()) else {
        return Err(ApiError::bad_request("name the tool: `tool` (or `name`)"));
    };
    if let Some(action) = body.action {
        return Ok(refusal(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("tool `{name}` has no action `{action}`"),
        ));
    }
    if state.runtime.config().gateway.http_tools_deny.contains(&name) {
        return Ok(refusal(StatusCode::NOT_FOUND, "not_found", format!("Tool not available: {name}")));
    }
    if body.dry_run {
        let available = state
            .runtime
            .tool_context(body.agent_id.as_deref().unwrap_or(&state.runtime.config().default_agent))
            .await
            .is_some_and(|ctx| clawline_agent::tools::is_enabled(&name, &ctx.settings));
        if !available {
            return Ok(refusal(StatusCode::NOT_FOUND, "not_found", format!("Tool not available: {name}")));
        }
        return Ok(Json(json!({"ok": true, "result": {"dryRun": true, "tool": name}})).into_response());
    }
    match tool_invoke::run(&state, body.agent_id.as_deref(), &name, body.args, body.idempotency_key.as_deref(), "http")
        .await
    {
        Ok(out) if out.is_error => Ok(refusal(StatusCode::BAD_REQUEST, "tool_error", out.text)),
        Ok(out) => {
            Ok(Json(json!({"ok": true, "result": {"content": [{"type": "text", "text": out.text}]}})).into_response())
        }
        Err(e @ NotRun::UnknownAgent(_)) => Ok(refusal(StatusCode::NOT_FOUND, "not_found", e.message())),
        Err(e @ NotRun::NotAvailable(_)) => Ok(refusal(StatusCode::NOT_FOUND, "not_found", e.message())),
        Err(e @ NotRun::KeyReused(_)) => Ok(refusal(StatusCode::CONFLICT, "idempotency_key_reused", e.message())),
    }
}
