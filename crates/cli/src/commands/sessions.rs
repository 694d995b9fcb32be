//! `clawline sessions list`: read straight from the state database (safe while the gateway
//! runs: SQLite WAL lets readers and the writer work side by side).

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::SessionsCommand;
use crate::setup::{self, Paths};

fn ago(ms: i64) -> String {
    let secs = ((clawline_store::now_ms() - ms) / 1000).max(0);
    match secs {
        s if s < 60 => format!("{s}s ago"),
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86_400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

pub async fn run(paths: &Paths, cmd: SessionsCommand) -> Result<ExitCode> {
    let SessionsCommand::List { agent, limit, json } = cmd;
    if !paths.state.database().exists() {
        if json {
            println!("[]");
        } else {
            println!("No sessions yet (no state database at {}).", paths.state.database().display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let store = setup::open_store(paths)?;
    let rows = store.list_sessions(agent, limit.max(1)).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("No sessions yet.");
        return Ok(ExitCode::SUCCESS);
    }
    let width = rows.iter().map(|r| r.session_key.len()).max().unwrap_or(3).max(3);
    println!("{:<width$}  {:>8}  {:>9}  {:>9}  MODEL", "KEY", "MESSAGES", "TOKENS", "UPDATED");
    for r in &rows {
        println!(
            "{:<width$}  {:>8}  {:>9}  {:>9}  {}",
            r.session_key,
            r.message_count,
            r.total_tokens,
            ago(r.updated_at),
            r.last_model.as_deref().unwrap_or("-")
        );
    }
    Ok(ExitCode::SUCCESS)
}
