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
//! run goes on after the answer. Every call gets a session of its own (`hook:<uuid>`, or
//! `hook:idem-<key>` when it carries an idempotency key, so a retry finds the first call's
//! run) unless `hooks.defaultSessionKey` names one, or `hooks.allowRequestSessionKey` lets the caller pick
//! one under `hooks.allowedSessionKeyPrefixes`. `…/wake {text, mode?, agentId?, sessionKey?}`
//! wakes the agent (see `wake.rs`). Delivering to a chat platform needs channels, which do
//! not exist yet, so `deliver: true` is refused rather than ignored.

use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use clawline_agent::{TurnError, TurnRequest};
use clawline_core::config::HookSettings;
use serde::Deserialize;
use serde_json::json;

use crate::auth::LimitKey;
use crate::client_addr::ClientAddr;
use crate::error::ApiError;
use crate::state::AppState;
use crate::turn_start::{self, HOOK_LANE_WAIT, Started};

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
    let bytes = match crate::body::read_bytes(req, MAX_BODY).await {
        Ok(b) => b,
        Err((status, why)) => return fail(status, why),
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

/// The agent a hook runs — the one named, else the default — if `hooks.allowedAgentIds` lets
/// hooks run it. The default agent is checked too: an allow-list that leaves it out means
/// hooks must name one of the listed agents.
fn hook_agent(state: &AppState, hooks: &HookSettings, requested: Option<&str>) -> Result<String, Refusal> {
    let agent = requested.map(String::from).unwrap_or_else(|| state.runtime.config().default_agent.clone());
    if !hooks.allowed_agent_ids.is_empty() && !hooks.allowed_agent_ids.contains(&agent) {
        let why = match requested {
            Some(_) => format!("hooks may not run agent `{agent}` (hooks.allowedAgentIds)"),
            None => format!(
                "hooks may not run the default agent `{agent}` (hooks.allowedAgentIds); name one of the allowed agents in agentId"
            ),
        };
        return Err((StatusCode::FORBIDDEN, why));
    }
    Ok(agent)
}

/// The part of an idempotency key that may appear in a session key.
fn key_safe(key: &str) -> String {
    key.chars().take(64).map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

fn session_for(
    hooks: &HookSettings,
    agent: &str,
    requested: Option<&str>,
    idempotency_key: Option<&str>,
) -> Result<String, Refusal> {
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
    // A retried call with the same idempotency key must land in the same session, or the key
    // could not find the first call's run.
    Ok(match (&hooks.default_session_key, idempotency_key) {
        (Some(k), _) => k.clone(),
        (None, Some(idem)) => format!("agent:{agent}:hook:idem-{}", key_safe(idem)),
        (None, None) => format!("agent:{agent}:hook:{}", uuid::Uuid::new_v4()),
    })
}

async fn agent(state: &Arc<AppState>, hooks: &HookSettings, body: AgentHook) -> Response {
    let agent = match hook_agent(state, hooks, body.agent_id.as_deref()) {
        Ok(a) => a,
        Err((status, why)) => return fail(status, why),
    };
    if body.deliver || body.channel.is_some() || body.to.is_some() {
        return fail(StatusCode::BAD_REQUEST, "delivering the answer needs a chat channel, and none is configured yet");
    }
    if body.model.is_some() {
        return fail(
            StatusCode::BAD_REQUEST,
            "per-run model overrides are not supported; set the agent's model instead",
        );
    }
    let session_key = match session_for(hooks, &agent, body.session_key.as_deref(), body.idempotency_key.as_deref()) {
        Ok(k) => k,
        Err((status, why)) => return fail(status, why),
    };
    let req = TurnRequest {
        agent_id: Some(agent),
        session_key: Some(session_key.clone()),
        message: body.message,
        idempotency_key: body.idempotency_key.clone(),
        run_id: Some(uuid::Uuid::new_v4().to_string()),
        channel: Some("hooks".into()),
        ..Default::default()
    };
    match turn_start::start(state, req, HOOK_LANE_WAIT).await {
        Err(TurnError::Busy) => fail(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the session is busy; the run was not admitted within {} s", HOOK_LANE_WAIT.as_secs()),
        ),
        Err(e) if e.is_client_error() => fail(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => fail(StatusCode::BAD_GATEWAY, e.to_string()),
        Ok(Started::New(tracked)) => {
            let (run_id, key) = (tracked.info.run_id.clone(), tracked.info.session_key.clone());
            tracked.start(None);
            Json(json!({"ok": true, "runId": run_id, "sessionKey": key})).into_response()
        }
        Ok(Started::Duplicate(run)) => {
            Json(json!({"ok": true, "runId": run.run_id, "sessionKey": run.session_key, "duplicate": true}))
                .into_response()
        }
    }
}

async fn wake(state: &Arc<AppState>, hooks: &HookSettings, body: WakeHook) -> Response {
    let agent = match hook_agent(state, hooks, body.agent_id.as_deref()) {
        Ok(a) => a,
        Err((status, why)) => return fail(status, why),
    };
    let mode = body.mode.as_deref().unwrap_or("now");
    let session = match &body.session_key {
        Some(k) => match session_for(hooks, &agent, Some(k), None) {
            Ok(k) => Some(k),
            Err((status, why)) => return fail(status, why),
        },
        None => None,
    };
    match crate::wake::wake(state, &body.text, mode, Some(&agent), session.as_deref(), HOOK_LANE_WAIT).await {
        Ok(Started::New(tracked)) => {
            let run_id = tracked.info.run_id.clone();
            tracked.start(None);
            Json(json!({"ok": true, "runId": run_id})).into_response()
        }
        Ok(Started::Duplicate(run)) => Json(json!({"ok": true, "runId": run.run_id})).into_response(),
        Err(e) => fail(StatusCode::BAD_REQUEST, e.message),
    }
}
