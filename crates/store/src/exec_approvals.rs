//! Exec approvals: the commands the agent asked the owner to allow, what was decided, and the
//! standing grants ("allow always") that let the same command run again without asking.
//!
//! An approval names one exact argument vector and one working directory, stored as written;
//! a grant matches only that argv and cwd, byte for byte, so an approved `git status` never
//! lets `git push` through. A request is decided once: the first decision wins and later ones
//! are refused. Requests still pending when the gateway starts were waited on by a run that
//! no longer exists, so [`Store::abandon_pending_exec_approvals`] closes them.
//!
//! This file stores and decides nothing about policy; the agent's exec tool does.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::db::Store;
use crate::error::StoreError;
use crate::now_ms;

/// One approval request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecApprovalRow {
    pub id: String,
    pub agent_id: String,
    pub session_key: String,
    pub run_id: String,
    pub argv: Vec<String>,
    pub cwd: String,
    /// `pending`, `allowed`, `denied`, `expired` or `cancelled`.
    pub status: String,
    /// `allow-once`, `allow-always` or `deny`, once decided.
    pub decision: Option<String>,
    /// Who decided (a connection, a channel sender) or why it closed.
    pub resolved_by: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub resolved_at: Option<i64>,
}

/// A standing grant for one exact command.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecGrantRow {
    pub agent_id: String,
    pub argv: Vec<String>,
    pub cwd: String,
    pub approval_id: String,
    pub created_at: i64,
}

/// What [`Store::decide_exec_approval`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Decided {
    /// The decision was recorded.
    Recorded(ExecApprovalRow),
    /// It had been decided or closed already: the row as it stands.
    AlreadyClosed(ExecApprovalRow),
    Unknown,
}

const COLUMNS: &str = "id, agent_id, session_key, run_id, argv_json, cwd, status, decision, resolved_by, created_at, expires_at, resolved_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExecApprovalRow> {
    Ok(ExecApprovalRow {
        id: r.get(0)?,
        agent_id: r.get(1)?,
        session_key: r.get(2)?,
        run_id: r.get(3)?,
        argv: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default(),
        cwd: r.get(5)?,
        status: r.get(6)?,
        decision: r.get(7)?,
        resolved_by: r.get(8)?,
        created_at: r.get(9)?,
        expires_at: r.get(10)?,
        resolved_at: r.get(11)?,
    })
}

fn argv_json(argv: &[String]) -> String {
    serde_json::to_string(argv).unwrap_or_else(|_| "[]".into())
}

impl Store {
    /// Records a new pending request.
    pub async fn insert_exec_approval(&self, a: ExecApprovalRow) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.execute(
                &format!("INSERT INTO exec_approvals ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', NULL, NULL, ?7, ?8, NULL)"),
                params![a.id, a.agent_id, a.session_key, a.run_id, argv_json(&a.argv), a.cwd, a.created_at, a.expires_at],
            )?;
            Ok(())
        })
        .await
    }

    /// Decides a pending request (`allow-once`, `allow-always` or `deny`); an `allow-always`
    /// also stores the grant, in the same transaction.
    pub async fn decide_exec_approval(&self, id: &str, decision: &str, by: &str) -> Result<Decided, StoreError> {
        let (id, decision, by) = (id.to_string(), decision.to_string(), by.to_string());
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let found = tx
                .query_row(&format!("SELECT {COLUMNS} FROM exec_approvals WHERE id = ?1"), [&id], row)
                .optional()?;
            let Some(mut a) = found else { return Ok(Decided::Unknown) };
            let now = now_ms();
            if a.status != "pending" || a.expires_at <= now {
                return Ok(Decided::AlreadyClosed(a));
            }
            let status = if decision == "deny" { "denied" } else { "allowed" };
            tx.execute(
                "UPDATE exec_approvals SET status = ?2, decision = ?3, resolved_by = ?4, resolved_at = ?5 WHERE id = ?1",
                params![id, status, decision, by, now],
            )?;
            if decision == "allow-always" {
                tx.execute(
                    "INSERT OR REPLACE INTO exec_grants (agent_id, argv_json, cwd, approval_id, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![a.agent_id, argv_json(&a.argv), a.cwd, a.id, now],
                )?;
            }
            tx.commit()?;
            a.status = status.into();
            a.decision = Some(decision);
            a.resolved_by = Some(by);
            a.resolved_at = Some(now);
            Ok(Decided::Recorded(a))
        })
        .await
    }

    /// Closes a pending request without a decision (`expired` or `cancelled`, with the reason).
    pub async fn close_exec_approval(&self, id: &str, status: &str, reason: &str) -> Result<bool, StoreError> {
        let (id, status, reason) = (id.to_string(), status.to_string(), reason.to_string());
        self.call(move |conn| {
            let n = conn.execute(
                "UPDATE exec_approvals SET status = ?2, resolved_by = ?3, resolved_at = ?4
                 WHERE id = ?1 AND status = 'pending'",
                params![id, status, reason, now_ms()],
            )?;
            Ok(n == 1)
        })
        .await
    }

    /// Closes every request left pending by a previous process; returns how many.
    pub async fn abandon_pending_exec_approvals(&self) -> Result<usize, StoreError> {
        self.call(move |conn| {
            Ok(conn.execute(
                "UPDATE exec_approvals SET status = 'cancelled', resolved_by = 'gateway restarted', resolved_at = ?1
                 WHERE status = 'pending'",
                [now_ms()],
            )?)
        })
        .await
    }

    /// One request by id.
    pub async fn exec_approval(&self, id: &str) -> Result<Option<ExecApprovalRow>, StoreError> {
        let id = id.to_string();
        self.call(move |conn| {
            Ok(conn.query_row(&format!("SELECT {COLUMNS} FROM exec_approvals WHERE id = ?1"), [&id], row).optional()?)
        })
        .await
    }

    /// Requests still waiting for a decision, oldest first.
    pub async fn pending_exec_approvals(&self) -> Result<Vec<ExecApprovalRow>, StoreError> {
        self.call(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM exec_approvals WHERE status = 'pending' AND expires_at > ?1 ORDER BY created_at"
            ))?;
            let rows = stmt.query_map([now_ms()], row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Whether `agent_id` holds a standing grant for exactly this argv in exactly this cwd.
    pub async fn exec_grant_exists(&self, agent_id: &str, argv: &[String], cwd: &str) -> Result<bool, StoreError> {
        let (agent, argv, cwd) = (agent_id.to_string(), argv_json(argv), cwd.to_string());
        self.call(move |conn| {
            let n: i64 = conn.query_row(
                "SELECT count(*) FROM exec_grants WHERE agent_id = ?1 AND argv_json = ?2 AND cwd = ?3",
                params![agent, argv, cwd],
                |r| r.get(0),
            )?;
            Ok(n > 0)
        })
        .await
    }

    /// Every standing grant, newest first.
    pub async fn exec_grants(&self) -> Result<Vec<ExecGrantRow>, StoreError> {
        self.call(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT agent_id, argv_json, cwd, approval_id, created_at FROM exec_grants ORDER BY created_at DESC",
            )?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(ExecGrantRow {
                        agent_id: r.get(0)?,
                        argv: serde_json::from_str(&r.get::<_, String>(1)?).unwrap_or_default(),
                        cwd: r.get(2)?,
                        approval_id: r.get(3)?,
                        created_at: r.get(4)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Removes the grant an approval created; returns whether there was one.
    pub async fn revoke_exec_grant(&self, approval_id: &str) -> Result<bool, StoreError> {
        let id = approval_id.to_string();
        self.call(move |conn| Ok(conn.execute("DELETE FROM exec_grants WHERE approval_id = ?1", [&id])? > 0)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str, argv: &[&str]) -> ExecApprovalRow {
        let now = now_ms();
        ExecApprovalRow {
            id: id.into(),
            agent_id: "main".into(),
            session_key: "agent:main:main".into(),
            run_id: "r1".into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            cwd: "/ws".into(),
            status: "pending".into(),
            decision: None,
            resolved_by: None,
            created_at: now,
            expires_at: now + 60_000,
            resolved_at: None,
        }
    }

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn a_decision_is_taken_once_and_a_grant_matches_only_its_exact_argv_and_cwd() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        store.insert_exec_approval(request("a1", &["git", "status"])).await.unwrap();
        assert_eq!(store.pending_exec_approvals().await.unwrap().len(), 1);
        let Decided::Recorded(a) = store.decide_exec_approval("a1", "allow-always", "conn-1").await.unwrap() else {
            panic!("not recorded")
        };
        assert_eq!((a.status.as_str(), a.decision.as_deref()), ("allowed", Some("allow-always")));
        assert!(matches!(store.decide_exec_approval("a1", "deny", "conn-2").await.unwrap(), Decided::AlreadyClosed(_)));
        assert_eq!(store.decide_exec_approval("nope", "deny", "x").await.unwrap(), Decided::Unknown);

        assert!(store.exec_grant_exists("main", &v(&["git", "status"]), "/ws").await.unwrap());
        assert!(!store.exec_grant_exists("main", &v(&["git", "status", "--porcelain"]), "/ws").await.unwrap());
        assert!(!store.exec_grant_exists("main", &v(&["git", "status"]), "/ws/sub").await.unwrap());
        assert!(!store.exec_grant_exists("other", &v(&["git", "status"]), "/ws").await.unwrap());
        assert!(!store.exec_grant_exists("main", &v(&["git status"]), "/ws").await.unwrap());
        assert_eq!(store.exec_grants().await.unwrap().len(), 1);
        assert!(store.revoke_exec_grant("a1").await.unwrap());
        assert!(!store.exec_grant_exists("main", &v(&["git", "status"]), "/ws").await.unwrap());
    }

    #[tokio::test]
    async fn requests_left_pending_by_a_previous_process_are_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let store = Store::open(&path).unwrap();
        store.insert_exec_approval(request("a1", &["ls"])).await.unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.abandon_pending_exec_approvals().await.unwrap(), 1);
        let a = store.exec_approval("a1").await.unwrap().unwrap();
        assert_eq!(a.status, "cancelled");
        assert!(matches!(
            store.decide_exec_approval("a1", "allow-once", "late").await.unwrap(),
            Decided::AlreadyClosed(_)
        ));
    }
}
