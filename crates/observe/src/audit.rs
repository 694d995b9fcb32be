//! Reading the audit log (`audit` in `observability.sqlite`): what `clawline audit` prints.
//! Rows are written through the [`crate::Journal`] like every other row; this only reads.

use rusqlite::Connection;

use crate::journal::AuditRow;

/// Rows since `since_ms`, newest first, at most `limit`.
pub fn recent(conn: &Connection, since_ms: i64, limit: usize) -> rusqlite::Result<Vec<AuditRow>> {
    let mut stmt = conn.prepare(
        "SELECT at_ms, actor, action, target, outcome, detail FROM audit WHERE at_ms >= ?1
         ORDER BY at_ms DESC, id DESC LIMIT ?2",
    )?;
    stmt.query_map(rusqlite::params![since_ms, limit as i64], |r| {
        Ok(AuditRow {
            at_ms: r.get(0)?,
            actor: r.get(1)?,
            action: r.get(2)?,
            target: r.get(3)?,
            outcome: r.get(4)?,
            detail: r.get(5)?,
        })
    })?
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Journal, Record};
    use std::time::Duration;

    #[test]
    fn newest_first_and_long_targets_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(&dir.path().join("o.sqlite")).expect("open");
        j.record(Record::Audit(AuditRow::now("cli", "token.rotate", "", "ok")));
        let long = "x".repeat(400);
        j.record(Record::Audit(AuditRow::now("agent:main", "tool.exec", &long, "error").detail("run r1")));
        j.flush(Duration::from_secs(5)).expect("flush");
        let rows = j.query(|c| recent(c, 0, 10)).expect("q").expect("rows");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].action, "tool.exec");
        assert_eq!(rows[0].target.chars().count(), 301);
        assert!(rows[0].target.ends_with('…'));
        assert_eq!(rows[0].detail, "run r1");
        assert_eq!(rows[1].action, "token.rotate");
        let one = j.query(|c| recent(c, 0, 1)).expect("q").expect("rows");
        assert_eq!(one.len(), 1);
    }
}
