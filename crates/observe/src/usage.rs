//! What `clawline usage` reports, and what budgets start from: sums over the model calls in
//! `observability.sqlite`.
//!
//! Everything is counted from the `model_calls` table, so a figure always means "what the
//! providers reported for the calls made": tokens of every kind, the cost computed from the
//! configured prices, calls that failed. These are reads only.

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde::Serialize;

/// What a report line groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Agent,
    /// `provider/model` as actually called (a fallback counts under its own name).
    Model,
    /// Where the turns came from (`telegram`, `webchat`, `openai`, `cli`, …).
    Channel,
    /// The UTC day, `YYYY-MM-DD`.
    Day,
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        match s {
            "agent" => Some(GroupBy::Agent),
            "model" => Some(GroupBy::Model),
            "channel" => Some(GroupBy::Channel),
            "day" => Some(GroupBy::Day),
            _ => None,
        }
    }

    fn column(self) -> &'static str {
        match self {
            GroupBy::Agent => "agent",
            GroupBy::Model => "provider || '/' || model",
            GroupBy::Channel => "channel",
            GroupBy::Day => "strftime('%Y-%m-%d', started_ms / 1000, 'unixepoch')",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageLine {
    pub key: String,
    pub runs: u64,
    pub model_calls: u64,
    pub failed_calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub cost_usd: f64,
    /// Total time spent waiting for models, in milliseconds.
    pub model_ms: u64,
}

impl UsageLine {
    /// Every token counted, as budgets count them.
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens
    }
}

/// The report: one line per group, largest cost (then tokens) first, and the total.
pub fn report(conn: &Connection, since_ms: i64, by: GroupBy) -> rusqlite::Result<(Vec<UsageLine>, UsageLine)> {
    let sql = format!(
        "SELECT {col} AS k, count(DISTINCT run_id), count(*), sum(outcome != 'ok'), sum(input_tokens),
                sum(output_tokens), sum(cache_read_tokens), sum(cache_write_tokens), sum(cost_usd), sum(duration_ms)
         FROM model_calls WHERE started_ms >= ?1 GROUP BY k",
        col = by.column()
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut lines: Vec<UsageLine> = stmt
        .query_map([since_ms], |r| {
            Ok(UsageLine {
                key: r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                runs: r.get::<_, i64>(1)? as u64,
                model_calls: r.get::<_, i64>(2)? as u64,
                failed_calls: r.get::<_, i64>(3)? as u64,
                input_tokens: r.get::<_, i64>(4)? as u64,
                output_tokens: r.get::<_, i64>(5)? as u64,
                cache_read_tokens: r.get::<_, i64>(6)? as u64,
                cache_write_tokens: r.get::<_, i64>(7)? as u64,
                cost_usd: r.get(8)?,
                model_ms: r.get::<_, i64>(9)? as u64,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    lines.sort_by(|a, b| {
        b.cost_usd
            .partial_cmp(&a.cost_usd)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(b.total_tokens().cmp(&a.total_tokens()))
            .then(a.key.cmp(&b.key))
    });
    let runs: i64 =
        conn.query_row("SELECT count(DISTINCT run_id) FROM model_calls WHERE started_ms >= ?1", [since_ms], |r| {
            r.get(0)
        })?;
    let mut total = UsageLine { key: "total".into(), runs: runs as u64, ..Default::default() };
    for l in &lines {
        total.model_calls += l.model_calls;
        total.failed_calls += l.failed_calls;
        total.input_tokens += l.input_tokens;
        total.output_tokens += l.output_tokens;
        total.cache_read_tokens += l.cache_read_tokens;
        total.cache_write_tokens += l.cache_write_tokens;
        total.cost_usd += l.cost_usd;
        total.model_ms += l.model_ms;
    }
    Ok((lines, total))
}

/// Tokens (every kind) and cost per agent since `since_ms`: where the daily budgets start
/// after a restart.
pub fn spent_by_agent(conn: &Connection, since_ms: i64) -> rusqlite::Result<BTreeMap<String, (u64, f64)>> {
    let mut stmt = conn.prepare(
        "SELECT agent, sum(input_tokens + output_tokens + cache_read_tokens + cache_write_tokens), sum(cost_usd)
         FROM model_calls WHERE started_ms >= ?1 GROUP BY agent",
    )?;
    stmt.query_map([since_ms], |r| Ok((r.get::<_, String>(0)?, (r.get::<_, i64>(1)? as u64, r.get::<_, f64>(2)?))))?
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Journal, ModelCallRow, Record};
    use std::time::Duration;

    fn row(run: &str, agent: &str, channel: &str, model: &str, at: i64, input: u64, cost: f64) -> ModelCallRow {
        ModelCallRow {
            run_id: run.into(),
            agent: agent.into(),
            channel: channel.into(),
            provider: "p".into(),
            model: model.into(),
            started_ms: at,
            duration_ms: 100,
            input_tokens: input,
            output_tokens: 10,
            cache_read_tokens: 5,
            cost_usd: cost,
            outcome: "ok".into(),
            ..Default::default()
        }
    }

    #[test]
    fn groups_and_totals() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(&dir.path().join("o.sqlite")).expect("open");
        let day = 1_780_000_000_000i64;
        j.record(Record::ModelCall(row("r1", "main", "telegram", "a", day, 100, 0.25)));
        j.record(Record::ModelCall(row("r1", "main", "telegram", "a", day + 1, 200, 0.5)));
        let failed = ModelCallRow { outcome: "rate_limit".into(), ..row("r2", "work", "cli", "b", day + 2, 50, 0.0) };
        j.record(Record::ModelCall(failed));
        j.record(Record::ModelCall(row("r0", "main", "cli", "a", day - 86_400_000, 999, 9.0)));
        j.flush(Duration::from_secs(5)).expect("flush");
        let (lines, total) = j.query(move |c| report(c, day, GroupBy::Agent)).expect("query").expect("report");
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].key, "main");
        assert_eq!((lines[0].runs, lines[0].model_calls, lines[0].input_tokens), (1, 2, 300));
        assert_eq!(lines[0].total_tokens(), 300 + 20 + 10);
        assert_eq!(lines[1].failed_calls, 1);
        assert_eq!((total.runs, total.model_calls, total.cost_usd), (2, 3, 0.75));
        let (by_model, _) = j.query(move |c| report(c, 0, GroupBy::Model)).expect("q").expect("r");
        assert_eq!(by_model[0].key, "p/a");
        let (by_day, _) = j.query(move |c| report(c, 0, GroupBy::Day)).expect("q").expect("r");
        assert_eq!(by_day.len(), 2);
        let spent = j.query(move |c| spent_by_agent(c, day)).expect("q").expect("spent");
        assert_eq!(spent["main"], (330, 0.75));
        assert_eq!(spent["work"], (65, 0.0));
    }
}
