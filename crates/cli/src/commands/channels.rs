//! `clawline channels status|dead-letters`: what the running gateway observes about each chat
//! account (through `GET /api/channels`), and the replies it could not deliver (from the state
//! database).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use serde_json::Value;

use crate::cli::ChannelsCommand;
use crate::setup::{self, Paths};

fn when(ms: &Value) -> String {
    match ms.as_i64() {
        Some(ms) => {
            let secs = ((clawline_store::now_ms() - ms) / 1000).max(0);
            match secs {
                s if s < 60 => format!("{s}s ago"),
                s if s < 3600 => format!("{}m ago", s / 60),
                s => format!("{}h ago", s / 3600),
            }
        }
        None => "never".into(),
    }
}

pub async fn run(paths: &Paths, cmd: ChannelsCommand) -> Result<ExitCode> {
    match cmd {
        ChannelsCommand::Status { probe, json, url, token } => status(paths, probe, json, url, token).await,
        ChannelsCommand::DeadLetters { channel, json } => {
            let store = setup::open_store(paths)?;
            let rows = store.dead_outbound(channel.as_deref(), None, 100).await?;
            if json {
                let list: Vec<Value> = rows
                    .iter()
                    .map(|r| {
                        serde_json::json!({"channel": r.channel, "accountId": r.account_id, "key": r.idempotency_key,
                            "target": r.target, "text": r.body.get("text"), "attempts": r.attempts,
                            "lastError": r.last_error, "createdAt": r.created_at})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if rows.is_empty() {
                println!("No undelivered replies.");
            } else {
                for r in &rows {
                    let to = r.target.get("peerId").and_then(|v| v.as_str()).unwrap_or("?");
                    println!(
                        "{}:{} to {to}, {} attempts, last error: {}",
                        r.channel,
                        r.account_id,
                        r.attempts,
                        r.last_error.as_deref().unwrap_or("none")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn status(
    paths: &Paths,
    probe: bool,
    json: bool,
    url: Option<String>,
    token: Option<String>,
) -> Result<ExitCode> {
    let (text, _) = setup::config_text(paths)?;
    let port =
        setup::load_text(paths, &text).map(|l| l.config.gateway.port).unwrap_or(clawline_core::config::DEFAULT_PORT);
    let base = url.unwrap_or_else(|| format!("http://127.0.0.1:{port}")).trim_end_matches('/').to_string();
    let token = match token {
        Some(t) => t,
        None => {
            let (assembled, _) = setup::assemble(paths)?;
            setup::gateway_token(&assembled.config, &assembled.store, &assembled.key, false)
                .await?
                .map(|(t, _)| t.expose().to_string())
                .ok_or_else(|| anyhow!("no gateway token is known here: pass --token or set CLAWLINE_GATEWAY_TOKEN"))?
        }
    };
    let resp = reqwest::Client::new()
        .get(format!("{base}/api/channels?probe={probe}"))
        .bearer_auth(&token)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| anyhow!("no gateway answers at {base} ({e}); start it with `clawline gateway`"))?;
    if !resp.status().is_success() {
        bail!("the gateway answered HTTP {} for /api/channels", resp.status().as_u16());
    }
    let v: Value = resp.json().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let order = v["channelOrder"].as_array().cloned().unwrap_or_default();
    if order.is_empty() {
        println!("No channels configured. Add one under `channels` in the config (e.g. channels.telegram.botToken).");
        return Ok(ExitCode::SUCCESS);
    }
    let mut unhealthy = false;
    for ch in order.iter().filter_map(|c| c.as_str()) {
        for a in v["channelAccounts"][ch].as_array().cloned().unwrap_or_default() {
            let state = a["state"].as_str().unwrap_or("?");
            unhealthy |= state != "connected";
            let bot = a["bot"].as_str().map(|b| format!(" {b}")).unwrap_or_default();
            println!(
                "{ch}:{}{bot}  {state} since {} ({})",
                a["accountId"].as_str().unwrap_or("?"),
                when(&a["since"]),
                a["mode"].as_str().unwrap_or("?")
            );
            println!(
                "  last progress {}, last message in {}, last reply out {}",
                when(&a["lastProgressAt"]),
                when(&a["lastInboundAt"]),
                when(&a["lastOutboundAt"])
            );
            println!(
                "  {} in ({} duplicates ignored), {} out, {} reconnects, {} undeliverable",
                a["inbound"], a["duplicates"], a["outbound"], a["reconnectAttempts"], a["deadLetters"]
            );
            if let Some(e) = a["lastError"].as_str() {
                println!("  last error ({}): {e}", when(&a["lastErrorAt"]));
            }
            if let Some(p) = a.get("probe") {
                match p["ok"].as_bool() {
                    Some(true) => println!("  probe: ok"),
                    _ => println!("  probe: FAILED: {}", p["error"].as_str().unwrap_or("?")),
                }
            }
        }
    }
    Ok(if unhealthy { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
