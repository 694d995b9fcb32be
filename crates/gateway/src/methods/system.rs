//! `health`, `status`, `system-presence`, `last-heartbeat`, `logs.tail`, `wake`.
//!
//! Health reports what is true: the store answers (a failing store makes `health` fail with
//! `UNAVAILABLE`, never report ok), how many sessions exist, which agents are configured. There
//! are no channels and no heartbeat yet, and the answers say so (empty maps, `null`) instead of
//! inventing them. `logs.tail` serves the gateway's own JSON log files, which are written already
//! redacted.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Access, Ctx, Method, Reply, method, parse};
use crate::protocol::error::RpcError;
use crate::protocol::schema::{EMPTY, Object, Schema, opt, req};
use crate::protocol::scopes::{READ, WRITE};
use crate::state::AppState;

static HEALTH: Object = Object { props: &[opt("probe", Schema::Bool)], closed: true };
static STATUS: Object = Object {
    props: &[opt("includeChannelSummary", Schema::Bool), opt("includeCliProjection", Schema::Bool)],
    closed: true,
};
static LOGS_TAIL: Object = Object {
    props: &[
        opt("cursor", Schema::UINT),
        opt("limit", Schema::int_range(1, 5000)),
        opt("maxBytes", Schema::int_range(1, 1_000_000)),
    ],
    closed: true,
};

pub fn methods() -> Vec<Method> {
    vec![
        method!("health", Access::Scope(READ), Schema::Object(&HEALTH), health),
        method!("status", Access::Scope(READ), Schema::Object(&STATUS), status),
        method!("system-presence", Access::Scope(READ), Schema::Object(&EMPTY), presence),
        method!("last-heartbeat", Access::Scope(READ), Schema::Object(&EMPTY), last_heartbeat),
        method!("logs.tail", Access::Scope(READ), Schema::Object(&LOGS_TAIL), logs_tail),
        method!("wake", Access::Scope(WRITE), Schema::Object(&WAKE), wake),
    ]
}

static WAKE: Object = Object {
    props: &[
        req("mode", Schema::Enum(&["now", "next-heartbeat"])),
        req("text", Schema::NON_EMPTY),
        opt("sessionKey", Schema::NON_EMPTY),
        opt("agentId", Schema::NON_EMPTY),
    ],
    // The published schema leaves this object open.
    closed: false,
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WakeParams {
    mode: String,
    text: String,
    session_key: Option<String>,
    agent_id: Option<String>,
}

async fn wake(ctx: Ctx, p: Value) -> Reply {
    let p: WakeParams = parse("wake", p)?;
    let started = crate::wake::wake(
        &ctx.state,
        &p.text,
        &p.mode,
        p.agent_id.as_deref(),
        p.session_key.as_deref(),
        crate::turn_start::LANE_WAIT,
    )
    .await?;
    let run_id = match started {
        crate::turn_start::Started::New(tracked) => {
            let id = tracked.info.run_id.clone();
            ctx.after_response(move |written| tracked.start(Some(written)));
            id
        }
        crate::turn_start::Started::Duplicate(run) => run.run_id,
    };
    Ok(json!({"ok": true, "runId": run_id}))
}

/// The gateway's own presence entry.
pub fn self_presence(state: &AppState) -> Value {
    let host = state.hostname();
    json!({
        "host": host,
        "version": env!("CARGO_PKG_VERSION"),
        "platform": std::env::consts::OS,
        "mode": "gateway",
        "reason": "self",
        "text": format!("Gateway: {host} · clawline {} · mode gateway", env!("CARGO_PKG_VERSION")),
        "ts": state.started_ms,
        "onlineSince": state.started_ms,
        "instanceId": state.boot_id,
    })
}

/// The health snapshot (also part of `hello-ok` and the `health` event).
pub async fn health_snapshot(state: &AppState) -> Result<Value, RpcError> {
    let started = std::time::Instant::now();
    let store = state.runtime.store();
    let page = store
        .list_sessions_page(clawline_store::SessionQuery::first(5))
        .await
        .map_err(|e| RpcError::unavailable(format!("the state store does not answer: {e}")))?;
    let now = clawline_store::now_ms();
    let recent: Vec<Value> = page
        .sessions
        .iter()
        .map(|s| json!({"key": s.session_key, "updatedAt": s.updated_at, "age": (now - s.updated_at).max(0)}))
        .collect();
    let path = store.path().display().to_string();
    let config = state.runtime.config();
    let mut agents = Vec::new();
    for a in config.agents.values() {
        let mine = store
            .list_sessions_page(clawline_store::SessionQuery {
                agent_id: Some(a.id.clone()),
                ..clawline_store::SessionQuery::first(5)
            })
            .await
            .map_err(|e| RpcError::unavailable(e.to_string()))?;
        agents.push(json!({
            "agentId": a.id,
            "name": a.name,
            "isDefault": a.id == config.default_agent,
            // No heartbeat runs in clawline yet.
            "heartbeat": {"enabled": false, "every": "off", "everyMs": null, "prompt": "", "target": "none", "ackMaxChars": 0},
            "sessions": {
                "path": path,
                "count": mine.total,
                "recent": mine.sessions.iter().map(|s| json!({"key": s.session_key, "updatedAt": s.updated_at, "age": (now - s.updated_at).max(0)})).collect::<Vec<_>>(),
            },
        }));
    }
    Ok(json!({
        "ok": true,
        "ts": now,
        "durationMs": started.elapsed().as_millis() as u64,
        "channels": {},
        "channelOrder": [],
        "channelLabels": {},
        "heartbeatSeconds": 0,
        "defaultAgentId": config.default_agent,
        "agents": agents,
        "sessions": {"path": path, "count": page.total, "recent": recent},
    }))
}

/// How long a health snapshot is reused.
const HEALTH_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// What a connection that may not read the gateway's state (a node, a pairing-only operator)
/// learns from `health`: that it answers, and nothing about sessions or agents.
pub fn minimal_health() -> Value {
    json!({"ok": true, "ts": clawline_store::now_ms(), "durationMs": 0})
}

async fn health(ctx: Ctx, _p: Value) -> Reply {
    if !ctx.conn.allows(READ) {
        return Ok(minimal_health());
    }
    let cached = ctx.state.health_cache.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some((_, snapshot)) = cached.filter(|(at, _)| at.elapsed() < HEALTH_TTL) {
        return Ok(snapshot);
    }
    let snapshot = health_snapshot(&ctx.state).await?;
    *ctx.state.health_cache.lock().unwrap_or_else(|p| p.into_inner()) =
        Some((std::time::Instant::now(), snapshot.clone()));
    // A fresh snapshot is news for everyone watching.
    let version = ctx.state.hub.next_health_version();
    let event = crate::protocol::frame::Event::new("health", &snapshot).with_state_version(version);
    ctx.state.hub.broadcast(&event, |_| true);
    Ok(snapshot)
}

async fn rss_bytes() -> Option<u64> {
    let status = tokio::fs::read_to_string("/proc/self/status").await.ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

async fn status(ctx: Ctx, _p: Value) -> Reply {
    let state = &ctx.state;
    let store = state.runtime.store();
    let page = store
        .list_sessions_page(clawline_store::SessionQuery::first(10))
        .await
        .map_err(|e| RpcError::unavailable(e.to_string()))?;
    let config = state.runtime.config();
    let default = config.default_agent();
    let now = clawline_store::now_ms();
    let by_agent: Vec<Value> = config
        .agents
        .values()
        .map(|a| json!({"agentId": a.id, "count": page.sessions.iter().filter(|s| s.agent_id == a.id).count()}))
        .collect();
    Ok(json!({
        "runtimeVersion": env!("CARGO_PKG_VERSION"),
        "heartbeat": {"defaultAgentId": config.default_agent, "agents": []},
        "channelSummary": [],
        "queuedSystemEvents": [],
        "sessions": {
            "paths": [store.path().display().to_string()],
            "count": page.total,
            "defaults": {
                "model": default.model.as_ref().map(|m| m.model.clone()),
                "modelProvider": default.model.as_ref().map(|m| m.provider.clone()),
            },
            "recent": page.sessions.iter().map(|s| json!({
                "key": s.session_key, "agentId": s.agent_id, "updatedAt": s.updated_at, "age": now - s.updated_at,
                "totalTokens": s.total_tokens, "model": s.last_model,
            })).collect::<Vec<_>>(),
            "byAgent": by_agent,
        },
        "connections": state.hub.len(),
        "uptimeMs": state.uptime_ms(),
        "processMemory": {"rssBytes": rss_bytes().await},
    }))
}

async fn presence(ctx: Ctx, _p: Value) -> Reply {
    Ok(Value::Array(ctx.state.hub.presence(&self_presence(&ctx.state))))
}

async fn last_heartbeat(_ctx: Ctx, _p: Value) -> Reply {
    // No heartbeat runs in this gateway yet, so there is none to report.
    Ok(Value::Null)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TailParams {
    cursor: Option<u64>,
    limit: Option<usize>,
    max_bytes: Option<u64>,
}

/// The newest `clawline-*.jsonl` file in `dir`.
fn newest_log(dir: &Path) -> Option<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("clawline-") && n.ends_with(".jsonl"))
        })
        .collect();
    files.sort();
    files.pop()
}

/// Reads the tail of the newest log file from `cursor` (or the last `max_bytes`).
fn tail(dir: &Path, cursor: Option<u64>, limit: usize, max_bytes: u64) -> std::io::Result<Value> {
    let Some(path) = newest_log(dir) else {
        return Ok(
            json!({"file": dir.join("clawline.jsonl").display().to_string(), "cursor": 0, "size": 0, "lines": []}),
        );
    };
    let mut f = std::fs::File::open(&path)?;
    let size = f.metadata()?.len();
    let mut reset = false;
    let start = match cursor {
        Some(c) if c <= size => c,
        Some(_) => {
            // The file was rotated or truncated: start over.
            reset = true;
            size.saturating_sub(max_bytes)
        }
        None => size.saturating_sub(max_bytes),
    };
    let end = start.saturating_add(max_bytes).min(size);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = vec![0u8; (end - start) as usize];
    f.read_exact(&mut buf)?;
    // Split on newline bytes first, so every offset is a byte offset even when a line is not
    // valid UTF-8 (each line is decoded on its own, lossily).
    let mut pieces: Vec<&[u8]> = buf.split(|b| *b == b'\n').collect();
    // A last piece without a newline is not finished yet: leave it for the next call, unless it
    // fills the whole read (a line longer than max_bytes would otherwise stall the cursor).
    let unfinished = pieces.pop().unwrap_or_default();
    let mut consumed = (buf.len() - unfinished.len()) as u64;
    let mut skipped = 0u64;
    if pieces.is_empty() && !unfinished.is_empty() && buf.len() as u64 >= max_bytes {
        consumed = buf.len() as u64;
        skipped = consumed;
    }
    // Without a cursor the first line may be cut; drop it.
    if cursor.is_none() && start > 0 && !pieces.is_empty() {
        skipped = pieces.remove(0).len() as u64 + 1;
    }
    let decoded: Vec<String> = pieces.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect();
    let lines: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let truncated = lines.len() > limit;
    let keep: Vec<&str> = lines.iter().rev().take(limit).rev().copied().collect();
    let mut out = json!({
        "file": path.display().to_string(),
        "cursor": start.saturating_add(consumed),
        "size": size,
        "lines": keep,
    });
    if truncated || end < size {
        out["truncated"] = json!(true);
    }
    if reset {
        out["reset"] = json!(true);
    }
    if skipped > 0 {
        out["skippedBytes"] = json!(skipped);
    }
    Ok(out)
}

async fn logs_tail(ctx: Ctx, p: Value) -> Reply {
    let p: TailParams = parse("logs.tail", p)?;
    let dir = ctx.state.runtime.config().logging.dir.clone();
    let limit = p.limit.unwrap_or(500);
    let max_bytes = p.max_bytes.unwrap_or(250_000);
    tokio::task::spawn_blocking(move || tail(&dir, p.cursor, limit, max_bytes))
        .await
        .map_err(|e| RpcError::unavailable(e.to_string()))?
        .map_err(|e| RpcError::unavailable(format!("cannot read the log file: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_with_cursors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = tail(dir.path(), None, 10, 1000).unwrap();
        assert_eq!(empty["lines"], json!([]));
        let file = dir.path().join("clawline-2026-12-01.jsonl");
        std::fs::write(&file, "one\ntwo\nthree\npart").unwrap();
        let t = tail(dir.path(), None, 2, 1000).unwrap();
        assert_eq!(t["lines"], json!(["two", "three"]));
        assert_eq!(t["truncated"], true);
        let cursor = t["cursor"].as_u64().unwrap();
        assert_eq!(cursor, 14, "the unfinished line is left for later");
        std::fs::write(&file, "one\ntwo\nthree\npartial done\nfour\n").unwrap();
        let t = tail(dir.path(), Some(cursor), 10, 1000).unwrap();
        assert_eq!(t["lines"], json!(["partial done", "four"]));
        let t = tail(dir.path(), Some(10_000), 10, 1000).unwrap();
        assert_eq!(t["reset"], true);
        let t = tail(dir.path(), None, 10, 10).unwrap();
        assert_eq!(t["lines"], json!(["four"]), "a cut first line is skipped");
        assert!(t["skippedBytes"].as_u64().unwrap() > 0);
    }

    #[test]
    fn cursors_are_byte_offsets_even_for_invalid_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("clawline-2026-12-01.jsonl");
        std::fs::write(&file, b"a\xff\xfeb\nsecond\n").unwrap();
        let t = tail(dir.path(), Some(0), 10, 1000).unwrap();
        assert_eq!(t["cursor"], 12, "exactly the bytes read");
        assert_eq!(t["lines"][1], "second");
        // A line longer than one read is skipped, not read forever.
        std::fs::write(&file, "x".repeat(50)).unwrap();
        let t = tail(dir.path(), Some(0), 10, 20).unwrap();
        assert_eq!((t["cursor"].as_u64(), t["skippedBytes"].as_u64()), (Some(20), Some(20)));
    }
}
