//! The `hello-ok` payload: who we are, what we implement, the state right now, the grant, and
//! the limits the client must respect.
//!
//! `features.methods` and `features.events` list exactly what this gateway implements (clients
//! use them to decide what to offer). Health and presence are shown in full only to
//! connections with `operator.read` (others see the gateway itself and `ok`); the auth mode and
//! the paths of the state directory and config file only to admins.

use serde_json::{Value, json};

use super::handshake::Grant;
use crate::methods;
use crate::protocol::scopes;
use crate::state::AppState;

pub async fn payload(state: &AppState, grant: &Grant, conn_id: &str) -> Value {
    let config = state.runtime.config();
    // Only readers see the state; everyone else learns that the gateway is there.
    let reader = scopes::satisfied(scopes::READ, &grant.scopes);
    let self_entry = methods::self_presence(state);
    let (health, presence) = if reader {
        (methods::health_snapshot(state).await.unwrap_or_else(|_| json!({})), state.hub.presence(&self_entry))
    } else {
        (methods::minimal_health(), vec![self_entry])
    };
    let default_agent = &config.default_agent;
    let mut snapshot = json!({
        "presence": presence,
        "health": health,
        "stateVersion": state.hub.state_version(),
        "uptimeMs": state.uptime_ms(),
        "sessionDefaults": {
            "defaultAgentId": default_agent,
            "modelConfigured": config.default_agent().model.is_some(),
            "ownership": "sole",
            "selectionRequired": false,
            "mainKey": "main",
            "mainSessionKey": format!("agent:{default_agent}:main"),
            "scope": "per-sender",
        },
        "suspension": {"phase": "accepting"},
        "appliedConfigHash": null,
    });
    if scopes::satisfied(scopes::ADMIN, &grant.scopes) {
        snapshot["authMode"] = json!(if config.gateway.auth_mode == clawline_core::config::AuthMode::Password {
            "password"
        } else {
            "token"
        });
        if let Some(file) = &state.config_file {
            snapshot["configPath"] = json!(file.path.display().to_string());
        }
        if let Some(dir) = state.runtime.store().path().parent().and_then(|p| p.parent()) {
            snapshot["stateDir"] = json!(dir.display().to_string());
        }
    }
    let mut auth = json!({"method": grant.method, "role": grant.role.as_str(), "scopes": grant.scopes});
    if let Some((token, issued)) = &grant.device_token {
        auth["deviceToken"] = json!(token);
        auth["issuedAtMs"] = json!(issued);
    }
    let mut server = json!({"version": env!("CARGO_PKG_VERSION"), "bootId": state.boot_id, "connId": conn_id});
    if state.control_ui.is_some() {
        // Tells OpenClaw's Control UI the page it runs is the one this gateway serves on purpose,
        // so it does not ask the user to reload for a version mismatch.
        server["controlUiBuildSource"] = json!("configured");
    }
    json!({
        "type": "hello-ok",
        "protocol": grant.protocol,
        "server": server,
        "features": {
            "methods": methods::names(),
            "events": methods::EVENTS,
        },
        "snapshot": snapshot,
        "auth": auth,
        "policy": {
            "maxPayload": state.ws.max_payload_bytes,
            "maxBufferedBytes": state.ws.max_buffered_bytes,
            "tickIntervalMs": state.ws.tick_interval_ms,
        },
    })
}
