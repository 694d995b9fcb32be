//! Webhooks: `POST <hooks.path>/agent` and `POST <hooks.path>/wake`, for other programs
//! (CI, mail filters, home automation) to start agent turns. Off unless `hooks.enabled`.
//!
//! Authentication is the hooks' own token — `Authorization: Bearer <hooks.token>` or the
//! `x-clawline-token` / `x-openclaw-token` header — never the gateway token, and never in the
//! query string (URLs end up in logs). Failed attempts are limited per address, loopback
//! included: 20 a minute, then a minute's lockout (HTTP 429 with `Retry-After`).
//!
//! `…/agent {message, agentId?, sessionKey?, idempotencyKey?, name?}` answers once the turn is
//! admitted — the message is stored and the run started — with `{ok, runId, sessionKey}`; the
//! run goes on after the answer. Every call gets a session of its own (`hook:<uuid>`) unless
//! `hooks.defaultSessionKey` names one, or `hooks.allowRequestSessionKey` lets the caller pick
//! one under `hooks.allowedSessionKeyPrefixes`. `…/wake {text, mode?, agentId?, sessionKey?}`
//! wakes the agent (see `wake.rs`). Delivering to a chat platform needs channels, which do
//! not exist yet, so `deliver: true` is refused rather than ignored.

use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use clawline_agent::{TurnRequest, TurnStart};
use clawline_core::config::HookSettings;
use serde::Deserialize;
use serde_json::json;

use crate::auth::LimitKey;
use crate::client_addr::ClientAddr;
use crate::error::ApiError;
use crate::runs;
use crate::state::AppState;

/// Largest hook body accepted.
const MAX_BODY: usize = 256 * 1024;

fn presented(headers: &HeaderMap) -> Option<&str> {
    crate::guard::bearer(headers).or_else(|| {
        ["x-clawline-token", "x-openclaw-token"]
            .iter()
            .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
            .map(str::trim)
    })
}

fn fail(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"ok": false, "error": message.into()}))).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AgentHook {
    message: String,
    agent_id: Option<String>,
    session_key: Option<String>,
    idempotency_key: Option<String>,
    #[serde(default)]
    deliver: bool,
    channel: Option<String>,
    to: Option<String>,
    model: Option<String>,
    // Accepted from OpenClaw callers and not needed here: the hook's display name, the
    // session mode (every call is isolated unless a session is configured), the heartbeat
    // wake mode, and a run timeout (the agent's own applies).
    #[serde(default, rename = "name")]
    _name: Option<String>,
    #[serde(default, rename = "sessionMode")]
    _session_mode: Option<String>,
    #[serde(default, rename = "wakeMode")]
    _wake_mode: Option<String>,
    #[serde(default, rename = "timeoutSeconds")]
    _timeout_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WakeHook {
    text: String,
    mode: Option<String>,
    agent_id: Option<String>,
    session_key: Option<String>,
}

/// Whether `path` is a hook path of this gateway.
pub fn is_hook_path(state: &AppState, path: &str) -> bool {
    state
        .runtime
        .config()
        .hooks
        .as_ref()
        .is_some_and(|h| path.strip_prefix(&h.path).is_some_and(|rest| rest.starts_with('/')))
}

/// Handles a request under the hooks path.
pub async fn handle(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    req: Request,
) -> Response {
    let Some(hooks) = state.runtime.config().hooks.clone() else {
        return ApiError::not_found("no such endpoint").into_response();
    };
    if req.method() != axum::http::Method::POST {
        return fail(StatusCode::METHOD_NOT_ALLOWED, "hooks take POST");
    }
    let client = req.extensions().get::<ClientAddr>().copied().unwrap_or(ClientAddr { ip: peer.ip(), local: false });
    let key = LimitKey { ip: client.ip, scope: "hooks".into(), browser: false };
    if let Err(wait) = state.hook_limiter.check(&key) {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many failed hook authentications; try again later",
        );
        e.retry_after = Some(wait.as_secs().max(1));
        return e.into_response();
    }
    if req.uri().query().is_some_and(|q| q.split('&').any(|kv| kv.starts_with("token="))) {
        state.hook_limiter.failure(&key);
        return fail(
            StatusCode::BAD_REQUEST,
            "tokens in the URL are refused (they end up in logs); send Authorization: Bearer <hooks.token>",
        );
    }
    match presented(req.headers()) {
        Some(t) if hooks.token.matches(t) => state.hook_limiter.success(&key),
        _ => {
            state.hook_limiter.failure(&key);
            tracing::info!(client = %client.ip, "refused a hook call with a missing or wrong token");
            return fail(
                StatusCode::UNAUTHORIZED,
                "unauthorized: send the hooks token (hooks.token) as Authorization: Bearer <token>",
            );
        }
    }
    let name = req.uri().path().strip_prefix(&hooks.path).unwrap_or_default().trim_start_matches('/').to_string();
    let bytes = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return fail(StatusCode::PAYLOAD_TOO_LARGE, format!("hook bodies are limited to {} KiB", MAX_BODY / 1024));
        }
    };
    match name.as_str() {
        "agent" => match serde_json::from_slice::<AgentHook>(&bytes) {
            Ok(body) => agent(&state, &hooks, body).await,
            Err(e) => fail(StatusCode::BAD_REQUEST, format!("invalid body: {e}")),
        },
        "wake" => match serde_json::from_slice::<WakeHook>(&bytes) {
            Ok(body) => wake(&state, &hooks, body).await,
            Err(e) => fail(StatusCode::BAD_REQUEST, format!("invalid body: {e}")),
        },
        other => fail(StatusCode::NOT_FOUND, format!("no hook named `{other}`: use {0}/agent or {0}/wake", hooks.path)),
    }
}

/// A refusal: status and message (made into a response by [`fail`]).
type Refusal = (StatusCode, String);

fn check_agent(hooks: &HookSettings, agent: Option<&str>) -> Result<(), Refusal> {
    match agent {
        Some(a) if !hooks.allowed_agent_ids.is_empty() && !hooks.allowed_agent_ids.iter().any(|x| x == a) => {
            Err((StatusCode::FORBIDDEN, format!("hooks may not run agent `{a}` (hooks.allowedAgentIds)")))
        }
        _ => Ok(()),
    }
}

fn session_for(hooks: &HookSettings, agent: &str, requested: Option<&str>) -> Result<String, Refusal> {
    if let Some(key) = requested {
        if !hooks.allow_request_session_key {
            let why = "hooks may not choose their session (hooks.allowRequestSessionKey is off)";
            return Err((StatusCode::BAD_REQUEST, why.into()));
        }
        let allowed = hooks.allowed_session_key_prefixes.is_empty()
            || hooks.allowed_session_key_prefixes.iter().any(|p| key.starts_with(p.as_str()));
        if !allowed {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("session key `{key}` is outside hooks.allowedSessionKeyPrefixes"),
            ));
        }
        return Ok(key.to_string());
    }
    Ok(match &hooks.default_session_key {
        Some(k) => k.clone(),
        None => format!("agent:{agent}:hook:{}", uuid::Uuid::new_v4()),
    })
}

async fn agent(state: &Arc<AppState>, hooks: &HookSettings, body: AgentHook) -> Response {
    if let Err((status, why)) = check_agent(hooks, body.agent_id.as_deref()) {
        return fail(status, why);
    }
    if body.deliver || body.channel.is_some() || body.to.is_some() {
        return fail(StatusCode::BAD_REQUEST, "delivering the answer needs a chat channel, and none is configured yet");
    }
    if body.model.is_some() {
        return fail(
            StatusCode::BAD_REQUEST,
            "per-run model overrides are not supported; set the agent's model instead",
        );
    }
    let agent = body.agent_id.clone().unwrap_or_else(|| state.runtime.config().default_agent.clone());
    let session_key = match session_for(hooks, &agent, body.session_key.as_deref()) {
        Ok(k) => k,
        Err((status, why)) => return fail(status, why),
    };
    let req = TurnRequest {
        agent_id: Some(agent),
        session_key: Some(session_key.clone()),
        message: body.message,
        idempotency_key: body.idempotency_key.clone(),
        run_id: Some(uuid::Uuid::new_v4().to_string()),
        ..Default::default()
    };
    let admission = tokio::time::timeout(std::time::Duration::from_secs(15), state.runtime.start_turn(req)).await;
    match admission {
        Err(_) => fail(StatusCode::SERVICE_UNAVAILABLE, "the session is busy; the run was not admitted within 15 s"),
        Ok(Err(e)) if e.is_client_error() => fail(StatusCode::BAD_REQUEST, e.to_string()),
        Ok(Err(e)) => fail(StatusCode::BAD_GATEWAY, e.to_string()),
        Ok(Ok(TurnStart::Started(handle))) => {
            let tracked = runs::track(state, handle);
            let (run_id, key) = (tracked.info.run_id.clone(), tracked.info.session_key.clone());
            tracked.start(None);
            Json(json!({"ok": true, "runId": run_id, "sessionKey": key})).into_response()
        }
        Ok(Ok(TurnStart::Duplicate(run))) => {
            Json(json!({"ok": true, "runId": run.run_id, "sessionKey": run.session_key, "duplicate": true}))
                .into_response()
        }
    }
}

async fn wake(state: &Arc<AppState>, hooks: &HookSettings, body: WakeHook) -> Response {
    if let Err((status, why)) = check_agent(hooks, body.agent_id.as_deref()) {
        return fail(status, why);
    }
    let mode = body.mode.as_deref().unwrap_or("now");
    let agent = body.agent_id.clone().unwrap_or_else(|| state.runtime.config().default_agent.clone());
    let session = match &body.session_key {
        Some(k) => match session_for(hooks, &agent, Some(k)) {
            Ok(k) => Some(k),
            Err((status, why)) => return fail(status, why),
        },
        None => None,
    };
    match crate::wake::wake(state, &body.text, mode, Some(&agent), session.as_deref()).await {
        Ok(run_id) => Json(json!({"ok": true, "runId": run_id})).into_response(),
        Err(e) => fail(StatusCode::BAD_REQUEST, e.message),
    }
}
