//! `channels.status` and `channels.pairing.list|approve|dismiss`: the chat platforms as
//! operators see them.
//!
//! `channels.status {probe?, timeoutMs?, channel?}` answers OpenClaw's shape — `channelOrder`,
//! `channelLabels`, `channels.<id>` (a summary), `channelAccounts.<id>[]` (one snapshot per
//! account), `channelDefaultAccountId` — filled with what is observed, not configured: an
//! account is `connected` only when its connection made progress recently. With `probe`, each
//! account's platform is asked who the bot is (bounded by `timeoutMs`, default 10 s).
//!
//! `channels.pairing.list {channel?}` lists pending DM pairing requests;
//! `channels.pairing.approve {channel, code, accountId?, notify?}` lets the sender in (and with
//! `notify` tells them); `channels.pairing.dismiss {channel, code}` drops a request.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Access, Ctx, Method, Reply, method, parse};
use crate::protocol::error::RpcError;
use crate::protocol::schema::{Object, Schema, opt, req};
use crate::protocol::scopes::{PAIRING, READ};

static STATUS: Object = Object {
    props: &[opt("probe", Schema::Bool), opt("timeoutMs", Schema::UINT), opt("channel", Schema::NON_EMPTY)],
    closed: true,
};
static LIST: Object = Object { props: &[opt("channel", Schema::NON_EMPTY)], closed: true };
static APPROVE: Object = Object {
    props: &[
        req("channel", Schema::NON_EMPTY),
        req("code", Schema::NON_EMPTY),
        opt("accountId", Schema::NON_EMPTY),
        opt("notify", Schema::Bool),
    ],
    closed: true,
};
static DISMISS: Object =
    Object { props: &[req("channel", Schema::NON_EMPTY), req("code", Schema::NON_EMPTY)], closed: true };

pub fn methods() -> Vec<Method> {
    vec![
        method!("channels.status", Access::Scope(READ), Schema::Object(&STATUS), status),
        method!("channels.pairing.list", Access::Scope(PAIRING), Schema::Object(&LIST), pairing_list),
        method!("channels.pairing.approve", Access::Scope(PAIRING), Schema::Object(&APPROVE), pairing_approve),
        method!("channels.pairing.dismiss", Access::Scope(PAIRING), Schema::Object(&DISMISS), pairing_dismiss),
    ]
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusParams {
    #[serde(default)]
    probe: bool,
    timeout_ms: Option<u64>,
    channel: Option<String>,
}

/// The status object (also what `clawline channels status --json` prints).
pub async fn status_json(state: &crate::AppState, probe: bool, timeout: Duration, only: Option<&str>) -> Value {
    let mut order: Vec<String> = Vec::new();
    let mut channels = serde_json::Map::new();
    let mut accounts = serde_json::Map::new();
    let mut defaults = serde_json::Map::new();
    let mut labels = serde_json::Map::new();
    let Some(ch) = &state.channels else {
        return json!({"ts": clawline_store::now_ms(), "channelOrder": [], "channelLabels": {}, "channels": {},
                      "channelAccounts": {}, "channelDefaultAccountId": {}});
    };
    let probes = if probe { tokio::time::timeout(timeout, ch.probe()).await.unwrap_or_default() } else { Vec::new() };
    for report in ch.status() {
        let s = &report.status;
        if only.is_some_and(|o| o != s.channel) {
            continue;
        }
        if !order.contains(&s.channel) {
            order.push(s.channel.clone());
            labels.insert(s.channel.clone(), json!(label(&s.channel)));
            defaults.insert(s.channel.clone(), json!(clawline_core::config::channels::DEFAULT_ACCOUNT));
        }
        let connected = s.state == clawline_channels::ConnState::Connected;
        let mut snap = json!({
            "accountId": s.account_id,
            "name": s.name,
            "enabled": true,
            "configured": true,
            "running": s.state != clawline_channels::ConnState::Stopped,
            "connected": connected,
            "state": s.state,
            "mode": s.mode,
            "since": s.since_ms,
            "lastProgressAt": s.last_progress_ms,
            "lastInboundAt": s.last_inbound_ms,
            "lastOutboundAt": s.last_outbound_ms,
            "lastError": s.last_error,
            "lastErrorAt": s.last_error_ms,
            "reconnectAttempts": s.reconnects,
            "inbound": s.inbound,
            "duplicates": s.duplicates,
            "outbound": s.outbound,
            "sendFailures": s.send_failures,
            "deadLetters": s.dead_letters,
            "bot": s.identity,
            "capabilities": report.capabilities,
        });
        if let Some(p) = probes.iter().find(|p| p.channel == s.channel && p.account_id == s.account_id) {
            snap["probe"] = json!({"ok": p.ok, "info": p.info, "error": p.error});
        }
        let list = accounts.entry(s.channel.clone()).or_insert_with(|| json!([]));
        if let Some(a) = list.as_array_mut() {
            a.push(snap);
        }
        let summary = channels
            .entry(s.channel.clone())
            .or_insert_with(|| json!({"configured": true, "connected": true, "accounts": 0}));
        summary["accounts"] = json!(summary["accounts"].as_u64().unwrap_or(0) + 1);
        if !connected {
            summary["connected"] = json!(false);
        }
    }
    json!({
        "ts": clawline_store::now_ms(),
        "channelOrder": order,
        "channelLabels": labels,
        "channels": channels,
        "channelAccounts": accounts,
        "channelDefaultAccountId": defaults,
    })
}

fn label(channel: &str) -> &'static str {
    match channel {
        "telegram" => "Telegram",
        "discord" => "Discord",
        "slack" => "Slack",
        "matrix" => "Matrix",
        "irc" => "IRC",
        _ => "Channel",
    }
}

async fn status(ctx: Ctx, p: Value) -> Reply {
    let p: StatusParams = parse("channels.status", p)?;
    let timeout = Duration::from_millis(p.timeout_ms.unwrap_or(10_000).clamp(100, 60_000));
    Ok(status_json(&ctx.state, p.probe, timeout, p.channel.as_deref()).await)
}

#[derive(Deserialize)]
struct ListParams {
    channel: Option<String>,
}

async fn pairing_list(ctx: Ctx, p: Value) -> Reply {
    let p: ListParams = parse("channels.pairing.list", p)?;
    let store = ctx.state.runtime.store();
    let unavailable = |e: clawline_store::StoreError| RpcError::unavailable(format!("the store failed: {e}"));
    let requests = store.channel_pairing_requests(p.channel.as_deref()).await.map_err(unavailable)?;
    let allowed = store.channel_allow_entries(p.channel.as_deref()).await.map_err(unavailable)?;
    Ok(json!({"requests": requests, "allowed": allowed}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApproveParams {
    channel: String,
    code: String,
    account_id: Option<String>,
    #[serde(default)]
    notify: bool,
}

async fn pairing_approve(ctx: Ctx, p: Value) -> Reply {
    let p: ApproveParams = parse("channels.pairing.approve", p)?;
    let store = ctx.state.runtime.store();
    let approved = clawline_channels::pairing::approve(store, &p.channel, &p.code, p.account_id.as_deref(), p.notify)
        .await
        .map_err(|e| RpcError::unavailable(format!("the store failed: {e}")))?;
    match approved {
        Some(a) => {
            tracing::info!(channel = %a.request.channel, account = %a.request.account_id, sender = %a.request.sender_id,
                           owner = a.entry.owner, "channel pairing approved");
            Ok(json!({"ok": true, "request": a.request, "entry": a.entry, "notified": a.notified}))
        }
        None => Err(RpcError::bad(format!("no pending pairing request with code {} on {}", p.code.trim(), p.channel))),
    }
}

#[derive(Deserialize)]
struct DismissParams {
    channel: String,
    code: String,
}

async fn pairing_dismiss(ctx: Ctx, p: Value) -> Reply {
    let p: DismissParams = parse("channels.pairing.dismiss", p)?;
    let gone = ctx
        .state
        .runtime
        .store()
        .dismiss_channel_pairing(&p.channel, &p.code)
        .await
        .map_err(|e| RpcError::unavailable(format!("the store failed: {e}")))?;
    Ok(json!({"ok": gone}))
}
