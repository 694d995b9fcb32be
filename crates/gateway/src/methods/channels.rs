//! `channels.status`, `channels.start|stop|logout` (admin) and
//! `channels.pairing.list|approve|dismiss`: the chat platforms as
//! operators see them.
//!
//! `channels.status {probe?, timeoutMs?, channel?}` answers OpenClaw's shape — `channelOrder`,
//! `channelLabels`, `channels.<id>` (a summary), `channelAccounts.<id>[]` (one snapshot per
//! account), `channelDefaultAccountId` — filled with what is observed, not configured: an
//! account is `connected` only when its connection made progress recently. With `probe`, each
//! account's platform is asked who the bot is (bounded by `timeoutMs`, default 10 s).
//!
//! The pairing methods take OpenClaw's published parameters. A request's `requestId` is its
//! pairing code (unique per channel while it lives). `channels.pairing.list {channel?,
//! accountId?}` answers `{accounts, requests, commandOwnerConfigured, limits}`;
//! `channels.pairing.approve {channel, accountId, requestId, notify?, bootstrapCommandOwner?}`
//! lets the sender in (with `notify` tells them; with `bootstrapCommandOwner` makes them the
//! owner when there is none) and answers `{requestId, senderId, notification,
//! commandOwnerBootstrap}`; `channels.pairing.dismiss {channel, accountId, requestId}` drops a
//! request and answers `{requestId, senderId}`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Access, Ctx, Method, Reply, method, parse};
use crate::protocol::error::RpcError;
use crate::protocol::schema::{Object, Schema, opt, req};
use crate::protocol::scopes::{ADMIN, PAIRING, READ};

static STATUS: Object = Object {
    props: &[opt("probe", Schema::Bool), opt("timeoutMs", Schema::UINT), opt("channel", Schema::NON_EMPTY)],
    closed: true,
};
static LIST: Object =
    Object { props: &[opt("channel", Schema::NON_EMPTY), opt("accountId", Schema::NON_EMPTY)], closed: true };
static APPROVE: Object = Object {
    props: &[
        req("channel", Schema::NON_EMPTY),
        req("accountId", Schema::NON_EMPTY),
        req("requestId", Schema::NON_EMPTY),
        opt("notify", Schema::Bool),
        opt("bootstrapCommandOwner", Schema::Bool),
    ],
    closed: true,
};
static DISMISS: Object = Object {
    props: &[
        req("channel", Schema::NON_EMPTY),
        req("accountId", Schema::NON_EMPTY),
        req("requestId", Schema::NON_EMPTY),
    ],
    closed: true,
};

/// `channels.start|stop|logout {channel, accountId?}` (OpenClaw's closed params).
static CONTROL: Object =
    Object { props: &[req("channel", Schema::NON_EMPTY), opt("accountId", Schema::NON_EMPTY)], closed: true };

pub fn methods() -> Vec<Method> {
    vec![
        method!("channels.start", Access::Scope(ADMIN), Schema::Object(&CONTROL), start),
        method!("channels.stop", Access::Scope(ADMIN), Schema::Object(&CONTROL), stop),
        method!("channels.logout", Access::Scope(ADMIN), Schema::Object(&CONTROL), logout),
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
            "healthState": s.state,
            "lastConnectedAt": s.last_connected_ms,
            "lastStartAt": s.started_ms,
            "lastTransportActivityAt": s.last_progress_ms,
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
        let settings = state
            .runtime
            .config()
            .channels
            .accounts
            .iter()
            .find(|a| a.channel == s.channel && a.account_id == s.account_id);
        if let Some(a) = settings {
            snap["baseUrl"] = json!(a.endpoint());
            snap["dmPolicy"] = json!(dm_policy(a.access.dm_policy));
            snap["allowFrom"] = json!(a.access.allow_from);
            if let clawline_core::config::channels::Platform::Telegram(t) = &a.platform {
                snap["webhookUrl"] = json!(t.webhook.as_ref().map(|w| w.url.clone()));
                snap["webhookPath"] = json!(t.webhook.as_ref().map(|w| w.path.clone()));
            }
        }
        if let Some(p) = probes.iter().find(|p| p.channel == s.channel && p.account_id == s.account_id) {
            snap["probe"] = json!({"ok": p.ok, "info": p.info, "error": p.error});
        }
        // The published schema types these fields without allowing null: a value
        // that is not known yet (a web chat has no display name) is left out.
        if let Some(fields) = snap.as_object_mut() {
            fields.retain(|_, v| !v.is_null());
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

fn dm_policy(p: clawline_core::config::channels::DmPolicy) -> &'static str {
    use clawline_core::config::channels::DmPolicy;
    match p {
        DmPolicy::Pairing => "pairing",
        DmPolicy::Allowlist => "allowlist",
        DmPolicy::Open => "open",
        DmPolicy::Disabled => "disabled",
    }
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
#[serde(rename_all = "camelCase")]
struct ListParams {
    channel: Option<String>,
    account_id: Option<String>,
}

fn iso(ms: i64) -> String {
    clawline_core::time::iso8601_from_ms(ms)
}

async fn pairing_list(ctx: Ctx, p: Value) -> Reply {
    let p: ListParams = parse("channels.pairing.list", p)?;
    let store = ctx.state.runtime.store();
    let unavailable = |e: clawline_store::StoreError| RpcError::unavailable(format!("the store failed: {e}"));
    let requests = store.channel_pairing_requests(p.channel.as_deref()).await.map_err(unavailable)?;
    let owner = store.channel_owner_exists().await.map_err(unavailable)?;
    let config = ctx.state.runtime.config();
    let wanted = |channel: &str, account: &str| {
        p.channel.as_deref().is_none_or(|c| c == channel) && p.account_id.as_deref().is_none_or(|a| a == account)
    };
    let accounts: Vec<Value> = config
        .channels
        .accounts
        .iter()
        .filter(|a| a.access.dm_policy == clawline_core::config::channels::DmPolicy::Pairing)
        .filter(|a| wanted(&a.channel, &a.account_id))
        .map(|a| {
            let mut v = json!({"channel": a.channel, "channelLabel": label(&a.channel), "accountId": a.account_id,
                               "notifySupported": true});
            if let Some(n) = &a.name {
                v["accountLabel"] = json!(n);
            }
            v
        })
        .collect();
    let requests: Vec<Value> = requests
        .iter()
        .filter(|r| wanted(&r.channel, &r.account_id))
        .map(|r| {
            let name = r.meta.get("name").and_then(|v| v.as_str()).unwrap_or(&r.sender_id);
            let mut metadata = serde_json::Map::new();
            if let Some(u) = r.meta.get("username").and_then(|v| v.as_str()) {
                metadata.insert("username".into(), json!(u));
            }
            json!({
                "requestId": r.code,
                "channel": r.channel,
                "channelLabel": label(&r.channel),
                "accountId": r.account_id,
                "senderId": r.sender_id,
                "senderLabel": name,
                "metadata": metadata,
                "createdAt": iso(r.created_at),
                "lastSeenAt": iso(r.created_at),
                "expiresAt": iso(r.expires_at),
                "notifySupported": true,
            })
        })
        .collect();
    Ok(json!({
        "accounts": accounts,
        "requests": requests,
        "commandOwnerConfigured": owner,
        "limits": {"pendingPerAccount": clawline_channels::PAIRING_MAX_PENDING, "ttlMs": clawline_channels::PAIRING_TTL_MS},
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApproveParams {
    channel: String,
    account_id: String,
    request_id: String,
    #[serde(default)]
    notify: bool,
    #[serde(default)]
    bootstrap_command_owner: bool,
}

async fn pairing_approve(ctx: Ctx, p: Value) -> Reply {
    let p: ApproveParams = parse("channels.pairing.approve", p)?;
    let store = ctx.state.runtime.store();
    let approved = clawline_channels::pairing::approve(
        store,
        &p.channel,
        &p.request_id,
        Some(&p.account_id),
        p.notify,
        p.bootstrap_command_owner,
    )
    .await
    .map_err(|e| RpcError::unavailable(format!("the store failed: {e}")))?;
    let Some(a) = approved else {
        return Err(RpcError::bad(format!(
            "no pending pairing request {} on {}:{}",
            p.request_id.trim(),
            p.channel,
            p.account_id
        )));
    };
    tracing::info!(channel = %a.request.channel, account = %a.request.account_id, sender = %a.request.sender_id,
                   owner = a.made_owner(), "channel pairing approved");
    let bootstrap = match (p.bootstrap_command_owner, a.made_owner()) {
        (false, _) => "not-requested",
        (true, true) => "configured",
        (true, false) => "already-configured",
    };
    Ok(json!({
        "requestId": a.request.code,
        "senderId": a.request.sender_id,
        "notification": if a.notified { "sent" } else { "not-requested" },
        "commandOwnerBootstrap": bootstrap,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ControlParams {
    channel: String,
    account_id: Option<String>,
}

fn control_error(e: clawline_channels::ControlError) -> RpcError {
    match e {
        clawline_channels::ControlError::Store(m) => RpcError::unavailable(m),
        other => RpcError::bad(other.to_string()),
    }
}

fn channels_of(ctx: &Ctx) -> Result<clawline_channels::Channels, RpcError> {
    ctx.state.channels.clone().ok_or_else(|| RpcError::bad("no channel is configured"))
}

/// `channels.start`: connects an account stopped with `channels.stop` or `channels.logout`.
async fn start(ctx: Ctx, p: Value) -> Reply {
    let p: ControlParams = parse("channels.start", p)?;
    let started = channels_of(&ctx)?.start_account(&p.channel, p.account_id.as_deref()).map_err(control_error)?;
    Ok(json!({"channel": p.channel, "accountId": p.account_id, "started": started, "running": true}))
}

/// `channels.stop`: disconnects an account until it is started again (or the gateway restarts).
async fn stop(ctx: Ctx, p: Value) -> Reply {
    let p: ControlParams = parse("channels.stop", p)?;
    let stopped = channels_of(&ctx)?.stop_account(&p.channel, p.account_id.as_deref()).await.map_err(control_error)?;
    Ok(json!({"channel": p.channel, "accountId": p.account_id, "stopped": stopped, "running": false}))
}

/// `channels.logout`: stops the account and forgets its platform session.
async fn logout(ctx: Ctx, p: Value) -> Reply {
    let p: ControlParams = parse("channels.logout", p)?;
    channels_of(&ctx)?.logout_account(&p.channel, p.account_id.as_deref()).await.map_err(control_error)?;
    Ok(json!({"channel": p.channel, "accountId": p.account_id, "loggedOut": true, "running": false}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DismissParams {
    channel: String,
    #[allow(dead_code)]
    account_id: String,
    request_id: String,
}

async fn pairing_dismiss(ctx: Ctx, p: Value) -> Reply {
    let p: DismissParams = parse("channels.pairing.dismiss", p)?;
    let gone = ctx
        .state
        .runtime
        .store()
        .dismiss_channel_pairing(&p.channel, &p.request_id)
        .await
        .map_err(|e| RpcError::unavailable(format!("the store failed: {e}")))?;
    match gone {
        Some(sender) => Ok(json!({"requestId": p.request_id.trim().to_ascii_uppercase(), "senderId": sender})),
        None => Err(RpcError::bad(format!("no pending pairing request {} on {}", p.request_id.trim(), p.channel))),
    }
}
