//! `clawline pairing list|approve|dismiss`: DM pairing, straight on the state database (safe
//! while the gateway runs; a running gateway sees an approval at the sender's next message).

use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::cli::PairingCommand;
use crate::setup::{self, Paths};

fn age(ms: i64) -> String {
    let secs = ((clawline_store::now_ms() - ms) / 1000).max(0);
    if secs < 60 { format!("{secs}s ago") } else { format!("{}m ago", secs / 60) }
}

pub async fn run(paths: &Paths, cmd: PairingCommand) -> Result<ExitCode> {
    let store = setup::open_store(paths)?;
    match cmd {
        PairingCommand::List { channel, json } => {
            let requests = store.channel_pairing_requests(channel.as_deref()).await?;
            let allowed = store.channel_allow_entries(channel.as_deref()).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"requests": requests, "allowed": allowed}))?
                );
                return Ok(ExitCode::SUCCESS);
            }
            if requests.is_empty() {
                println!("No pending pairing requests.");
            } else {
                println!("Pending (approve with `clawline pairing approve <channel> <code>`):");
                for r in &requests {
                    let who = r.meta.get("name").and_then(|v| v.as_str()).unwrap_or("?");
                    let handle =
                        r.meta.get("username").and_then(|v| v.as_str()).map(|u| format!(" @{u}")).unwrap_or_default();
                    let left = ((r.expires_at - clawline_store::now_ms()) / 60_000).max(0);
                    println!(
                        "  {}  {}:{}  {who}{handle} (id {})  asked {}, expires in {left} min",
                        r.code,
                        r.channel,
                        r.account_id,
                        r.sender_id,
                        age(r.created_at)
                    );
                }
            }
            if !allowed.is_empty() {
                println!("Approved:");
                for a in &allowed {
                    let owner = if a.owner { "  (owner)" } else { "" };
                    println!("  {}:{}  {}{owner}", a.channel, a.account_id, a.entry);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        PairingCommand::Approve { channel, code, account, notify } => {
            match clawline_channels::pairing::approve(&store, &channel, &code, account.as_deref(), notify, true).await?
            {
                Some(a) => {
                    let who = a.request.meta.get("name").and_then(|v| v.as_str()).unwrap_or("the sender");
                    println!(
                        "Approved {who} (id {}) on {}:{}.",
                        a.request.sender_id, a.request.channel, a.request.account_id
                    );
                    if a.entry.owner {
                        println!("They are the owner of this assistant (the first sender approved).");
                    }
                    if a.notified {
                        println!("They will be told (by the running gateway, or when it next starts).");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                None => bail!(
                    "no pending request with code {} on {channel}; `clawline pairing list` shows the live ones (codes expire after an hour)",
                    code.trim().to_ascii_uppercase()
                ),
            }
        }
        PairingCommand::Dismiss { channel, code } => {
            if let Some(sender) = store.dismiss_channel_pairing(&channel, &code).await? {
                println!("Dismissed the request from {sender}.");
                Ok(ExitCode::SUCCESS)
            } else {
                bail!("no pending request with code {} on {channel}", code.trim().to_ascii_uppercase())
            }
        }
    }
}
