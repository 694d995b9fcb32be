//! `clawline audit`: privileged actions, newest first, from `<state>/observability.sqlite`
//! (read-only; safe while the gateway writes).

use std::process::ExitCode;

use anyhow::{Result, anyhow};

use crate::cli::AuditArgs;
use crate::setup::Paths;

pub async fn run(paths: &Paths, args: AuditArgs) -> Result<ExitCode> {
    let since = match args.since.as_deref() {
        None => 0,
        Some(s) => {
            let d = humantime::parse_duration(s)
                .map_err(|_| anyhow!("--since {s:?}: use a duration such as `24h` or `7d`"))?;
            clawline_store::now_ms() - d.as_millis() as i64
        }
    };
    let path = paths.state.observability();
    let rows = if path.exists() {
        let limit = args.limit.max(1);
        tokio::task::spawn_blocking(move || {
            let conn = clawline_observe::journal::open_read_only(&path)?;
            Ok::<_, anyhow::Error>(clawline_observe::audit::recent(&conn, since, limit)?)
        })
        .await??
    } else {
        Vec::new()
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("Nothing in the audit log yet.");
        return Ok(ExitCode::SUCCESS);
    }
    for r in &rows {
        let when = clawline_core::time::iso8601_from_ms(r.at_ms);
        let target = if r.target.is_empty() { String::new() } else { format!(" {}", r.target) };
        let detail = if r.detail.is_empty() { String::new() } else { format!(" ({})", r.detail) };
        println!("{when}  {:<24} {}{target}{detail} → {}", r.action, r.actor, r.outcome);
    }
    Ok(ExitCode::SUCCESS)
}
