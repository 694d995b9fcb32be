//! `device.pair.list|approve|reject|remove|rename`, `device.token.revoke`: deciding which
//! devices may connect.
//!
//! A device that connects with a valid identity but is not yet approved (and is not on this
//! machine, where approval is automatic) leaves a pending request. An operator with
//! `operator.pairing` lists and approves it here; the device then connects and receives its
//! device token. Removing a device revokes its tokens and closes its open connections.
//! Revoking a device's token for a role closes its connections in that role; the device stays
//! paired, so it can still connect with the shared secret and get a fresh token.
//! Approving needs the scopes being approved: a pairing operator cannot mint an admin.

use clawline_store::{DeviceRow, PairingRequest};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Access, Ctx, Method, Reply, method, parse};
use crate::protocol::error::RpcError;
use crate::protocol::frame::Event;
use crate::protocol::schema::{EMPTY, Object, Schema, req};
use crate::protocol::scopes::{self, PAIRING};
use crate::state::AppState;

static REQUEST: Object = Object { props: &[req("requestId", Schema::NON_EMPTY)], closed: true };
static DEVICE: Object = Object { props: &[req("deviceId", Schema::NON_EMPTY)], closed: true };
static TOKEN: Object =
    Object { props: &[req("deviceId", Schema::NON_EMPTY), req("role", Schema::NON_EMPTY)], closed: true };
static RENAME: Object =
    Object { props: &[req("deviceId", Schema::NON_EMPTY), req("label", Schema::str_range(1, 64))], closed: true };

pub fn methods() -> Vec<Method> {
    vec![
        method!("device.pair.list", Access::Scope(PAIRING), Schema::Object(&EMPTY), list),
        method!("device.pair.approve", Access::Scope(PAIRING), Schema::Object(&REQUEST), approve),
        method!("device.pair.reject", Access::Scope(PAIRING), Schema::Object(&REQUEST), reject),
        method!("device.pair.remove", Access::Scope(PAIRING), Schema::Object(&DEVICE), remove),
        method!("device.pair.rename", Access::Scope(PAIRING), Schema::Object(&RENAME), rename),
        method!("device.token.revoke", Access::Scope(PAIRING), Schema::Object(&TOKEN), revoke_token),
    ]
}

fn store_err(e: clawline_store::StoreError) -> RpcError {
    RpcError::unavailable(format!("state store error: {e}"))
}

/// A pending request as clients list it (also the `device.pair.requested` payload).
pub fn pending_json(r: &PairingRequest) -> Value {
    let text = |k: &str| r.client.get(k).and_then(Value::as_str).map(String::from);
    let mut v = json!({
        "requestId": r.request_id,
        "deviceId": r.device_id,
        "publicKey": r.public_key,
        "role": r.role,
        "roles": [r.role],
        "scopes": r.scopes,
        "ts": r.created_at,
        "isRepair": r.reason != "not-paired",
    });
    for (from, to) in [
        ("displayName", "displayName"),
        ("platform", "platform"),
        ("deviceFamily", "deviceFamily"),
        ("id", "clientId"),
        ("mode", "clientMode"),
    ] {
        if let Some(t) = text(from) {
            v[to] = json!(t);
        }
    }
    if let Some(ip) = &r.remote_ip {
        v["remoteIp"] = json!(ip);
    }
    v
}

fn paired_json(d: &DeviceRow) -> Value {
    json!({
        "deviceId": d.device_id,
        "publicKey": d.public_key,
        "displayName": d.label,
        "platform": d.platform,
        "clientId": d.client_id,
        "clientMode": d.client_mode,
        "role": d.role,
        "roles": [d.role],
        "scopes": d.scopes,
        "remoteIp": d.remote_ip,
        "createdAtMs": d.paired_at,
        "approvedAtMs": d.paired_at,
        "lastSeenAtMs": d.last_seen_at,
    })
}

/// Tells pairing operators a request was decided.
pub fn announce_resolved(state: &AppState, request_id: &str, device_id: &str, decision: &str) {
    let payload =
        json!({"requestId": request_id, "deviceId": device_id, "decision": decision, "ts": clawline_store::now_ms()});
    state.hub.broadcast(&Event::new("device.pair.resolved", &payload), |_| true);
}

async fn list(ctx: Ctx, _p: Value) -> Reply {
    let store = ctx.state.runtime.store();
    let pending = store.list_pairing_requests().await.map_err(store_err)?;
    let paired = store.list_devices().await.map_err(store_err)?;
    Ok(json!({
        "pending": pending.iter().map(pending_json).collect::<Vec<_>>(),
        "paired": paired.iter().map(paired_json).collect::<Vec<_>>(),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestParams {
    request_id: String,
}

async fn approve(ctx: Ctx, p: Value) -> Reply {
    let p: RequestParams = parse("device.pair.approve", p)?;
    let store = ctx.state.runtime.store();
    let unknown = || RpcError::bad(format!("unknown or expired pairing request: {}", p.request_id));
    let request = store.get_pairing_request(&p.request_id).await.map_err(store_err)?.ok_or_else(unknown)?;
    // Nobody hands out more than they hold: approving a device for operator.admin takes admin.
    // (An id's scopes never change — other scopes make a new request — so this check holds
    // for the row approved below.)
    if !scopes::covered(&request.scopes, &ctx.conn.scopes) {
        let beyond: Vec<&str> = request
            .scopes
            .iter()
            .filter(|s| !scopes::covered(std::slice::from_ref(s), &ctx.conn.scopes))
            .map(String::as_str)
            .collect();
        return Err(RpcError::invalid(format!(
            "this connection cannot approve scopes it does not hold: {}; approve from a connection that has them",
            beyond.join(", ")
        ))
        .details(json!({"code": "SCOPE_ESCALATION", "scopes": beyond})));
    }
    let device = store.approve_pairing(&p.request_id).await.map_err(store_err)?.ok_or_else(unknown)?;
    tracing::info!(device = %device.device_id, by = %ctx.conn.id, "device pairing approved");
    announce_resolved(&ctx.state, &p.request_id, &device.device_id, "approved");
    Ok(json!({"requestId": p.request_id, "device": paired_json(&device)}))
}

async fn reject(ctx: Ctx, p: Value) -> Reply {
    let p: RequestParams = parse("device.pair.reject", p)?;
    let request = ctx
        .state
        .runtime
        .store()
        .reject_pairing(&p.request_id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| RpcError::bad(format!("unknown or expired pairing request: {}", p.request_id)))?;
    announce_resolved(&ctx.state, &p.request_id, &request.device_id, "rejected");
    Ok(json!({"requestId": p.request_id, "deviceId": request.device_id}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceParams {
    device_id: String,
    label: Option<String>,
}

async fn remove(ctx: Ctx, p: Value) -> Reply {
    let p: DeviceParams = parse("device.pair.remove", p)?;
    let removed = ctx.state.runtime.store().remove_device(&p.device_id).await.map_err(store_err)?;
    if !removed {
        return Err(RpcError::bad(format!("unknown device: {}", p.device_id)));
    }
    // Its tokens are gone; so are its connections.
    for conn in ctx.state.hub.all() {
        if conn.device_id.as_deref() == Some(p.device_id.as_str()) {
            conn.out.close(1008, "device removed");
        }
    }
    tracing::info!(device = %p.device_id, by = %ctx.conn.id, "device removed");
    Ok(json!({"deviceId": p.device_id, "removed": true}))
}

async fn rename(ctx: Ctx, p: Value) -> Reply {
    let p: DeviceParams = parse("device.pair.rename", p)?;
    let label = p.label.unwrap_or_default();
    if !ctx.state.runtime.store().rename_device(&p.device_id, &label).await.map_err(store_err)? {
        return Err(RpcError::bad(format!("unknown device: {}", p.device_id)));
    }
    Ok(json!({"deviceId": p.device_id, "label": label}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenParams {
    device_id: String,
    role: String,
}

async fn revoke_token(ctx: Ctx, p: Value) -> Reply {
    let p: TokenParams = parse("device.token.revoke", p)?;
    let store = ctx.state.runtime.store();
    if store.get_device(&p.device_id).await.map_err(store_err)?.is_none() {
        return Err(RpcError::bad(format!("unknown device: {}", p.device_id)));
    }
    let revoked = store.revoke_device_tokens(&p.device_id, &p.role).await.map_err(store_err)?;
    for conn in ctx.state.hub.all() {
        if conn.device_id.as_deref() == Some(p.device_id.as_str()) && conn.role.as_str() == p.role {
            conn.out.close(1008, "device token revoked");
        }
    }
    tracing::info!(device = %p.device_id, role = %p.role, revoked, by = %ctx.conn.id, "device token revoked");
    Ok(
        json!({"deviceId": p.device_id, "role": p.role, "revoked": revoked > 0, "revokedAtMs": clawline_store::now_ms()}),
    )
}
