//! `clawline usage`: runs, model calls, tokens and cost, read straight from
//! `<state>/observability.sqlite` (read-only; safe while the gateway writes).

use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clawline_observe::usage::{self, GroupBy, UsageLine};

use crate::cli::UsageArgs;
use crate::setup::Paths;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// `today`, a duration back from now, or a UTC date, as Unix ms.
fn since_ms(when: &str, now_ms: i64) -> Result<i64> {
    let when = when.trim();
    if when == "today" {
        return Ok(now_ms.div_euclid(DAY_MS) * DAY_MS);
    }
    if let Ok(d) = humantime::parse_duration(when) {
        return Ok(now_ms - d.as_millis() as i64);
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(&format!("{when} 00:00:00")) {
        let ms = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        return Ok(ms);
    }
    Err(anyhow!("--since {when:?}: use `today`, a duration such as `24h` or `7d`, or a date such as `2026-12-01`"))
}

fn tokens(n: u64) -> String {
    match n {
        n if n >= 10_000_000 => format!("{:.0}M", n as f64 / 1e6),
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 10_000 => format!("{:.0}k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

fn print_line(l: &UsageLine, width: usize) {
    println!(
        "{:<width$}  {:>5}  {:>6}  {:>6}  {:>8}  {:>8}  {:>8}  {:>9}",
        l.key,
        l.runs,
        l.model_calls,
        l.failed_calls,
        tokens(l.input_tokens),
        tokens(l.output_tokens),
        tokens(l.cache_read_tokens + l.cache_write_tokens),
        format!("${:.4}", l.cost_usd),
    );
}

pub async fn run(paths: &Paths, args: UsageArgs) -> Result<ExitCode> {
    let by = GroupBy::parse(&args.by).ok_or_else(|| anyhow!("--by {:?}: use agent, model, channel or day", args.by))?;
    let since = since_ms(&args.since, clawline_store::now_ms())?;
    let path = paths.state.observability();
    if !path.exists() {
        if args.json {
            println!("{}", serde_json::json!({"since": since, "lines": [], "total": UsageLine::default()}));
        } else {
            println!("Nothing recorded yet ({} does not exist: it is made by the first model call).", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (lines, total) = tokio::task::spawn_blocking(move || {
        let conn = clawline_observe::journal::open_read_only(&path)?;
        usage::report(&conn, since, by).with_context(|| format!("reading {}", path.display()))
    })
    .await??;
    if args.json {
        let out = serde_json::json!({"since": since, "by": args.by, "lines": lines, "total": total});
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let from = clawline_core::time::iso8601_from_ms(since);
    if lines.is_empty() {
        println!("No model calls since {from}.");
        return Ok(ExitCode::SUCCESS);
    }
    println!("Since {from} (UTC), by {}:", args.by);
    let width = lines.iter().map(|l| l.key.len()).max().unwrap_or(5).max(5);
    println!(
        "{:<width$}  {:>5}  {:>6}  {:>6}  {:>8}  {:>8}  {:>8}  {:>9}",
        args.by.to_uppercase(),
        "RUNS",
        "CALLS",
        "FAILED",
        "INPUT",
        "OUTPUT",
        "CACHE",
        "COST"
    );
    for l in &lines {
        print_line(l, width);
    }
    if lines.len() > 1 {
        print_line(&total, width);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_forms() {
        let now = 1_780_000_000_000;
        assert_eq!(since_ms("today", now).unwrap() % DAY_MS, 0);
        assert_eq!(since_ms("24h", now).unwrap(), now - DAY_MS);
        assert_eq!(since_ms("7d", now).unwrap(), now - 7 * DAY_MS);
        assert_eq!(since_ms("2026-12-01", now).unwrap(), 1_796_083_200_000);
        let e = since_ms("last week", now).unwrap_err().to_string();
        assert!(e.contains("`24h`"), "{e}");
        assert_eq!(tokens(1_234_567), "1.2M");
        assert_eq!(tokens(999), "999");
    }
}
