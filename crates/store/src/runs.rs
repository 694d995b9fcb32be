//! Runs: one agent turn each, started atomically with the user message that caused it.
//!
//! `begin_turn` writes the user message and the run row in one transaction, and refuses a
//! second turn with the same idempotency key in the same session (returning the first run
//! instead), so a client that retries a request it is unsure about never causes a second
//! model call. At start-up, runs still marked `running` were cut off by a crash; they are marked
//! `interrupted` and a note is added to their session.

use clawline_core::message::Message;
use clawline_core::transcript::NewRecord;
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use crate::changes::Change;
use crate::db::Store;
use crate::error::StoreError;
use crate::now_ms;
use crate::sessions::{SessionRow, append_tx, ensure_session_tx};

/// The state of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Ok,
    Error,
    Aborted,
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Ok => "ok",
            RunStatus::Error => "error",
            RunStatus::Aborted => "aborted",
            RunStatus::Interrupted => "interrupted",
        }
    }

    fn parse(s: &str) -> RunStatus {
        match s {
            "running" => RunStatus::Running,
            "ok" => RunStatus::Ok,
            "aborted" => RunStatus::Aborted,
            "interrupted" => RunStatus::Interrupted,
            _ => RunStatus::Error,
        }
    }
}

/// A stored run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRow {
    pub run_id: String,
    pub session_key: String,
    pub session_id: String,
    pub agent_id: String,
    pub idempotency_key: Option<String>,
    pub status: RunStatus,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    /// What the run produced (final text, usage, stop reason, error), once it ended.
    pub result: Option<serde_json::Value>,
}

/// What starting a turn needs.
#[derive(Debug, Clone)]
pub struct TurnStart {
    pub run_id: String,
    pub session_key: String,
    pub agent_id: String,
    /// The agent's workspace, written into the header of a new session.
    pub cwd: String,
    pub idempotency_key: Option<String>,
    /// Records to write before the user message (e.g. earlier turns a stateless client sent).
    pub preamble: Vec<NewRecord>,
    pub user: Message,
}

/// The outcome of [`Store::begin_turn`].
#[derive(Debug, Clone)]
pub enum BeginTurn {
    /// The user message is stored and the run is `running`.
    Started { session: SessionRow, user_record_id: String },
    /// A run with this idempotency key already exists in this session; nothing was written.
    Duplicate(RunRow),
}

const RUN_COLUMNS: &str =
    "run_id, session_key, session_id, agent_id, idempotency_key, status, started_at, ended_at, result_json";

fn run_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    let status: String = r.get(5)?;
    let result: Option<String> = r.get(8)?;
    Ok(RunRow {
        run_id: r.get(0)?,
        session_key: r.get(1)?,
        session_id: r.get(2)?,
        agent_id: r.get(3)?,
        idempotency_key: r.get(4)?,
        status: RunStatus::parse(&status),
        started_at: r.get(6)?,
        ended_at: r.get(7)?,
        result: result.and_then(|s| serde_json::from_str(&s).ok()),
    })
}

impl Store {
    /// Stores the user message and the new run together (see the module docs).
    pub async fn begin_turn(&self, start: TurnStart) -> Result<BeginTurn, StoreError> {
        let outcome = self
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                if let Some(key) = &start.idempotency_key {
                    let existing = tx
                        .query_row(
                            &format!("SELECT {RUN_COLUMNS} FROM runs WHERE session_key = ?1 AND idempotency_key = ?2"),
                            params![start.session_key, key],
                            run_from_row,
                        )
                        .optional()?;
                    if let Some(run) = existing {
                        return Ok((BeginTurn::Duplicate(run), None));
                    }
                }
                let taken: bool =
                    tx.query_row("SELECT EXISTS (SELECT 1 FROM runs WHERE run_id = ?1)", [&start.run_id], |r| {
                        r.get(0)
                    })?;
                if taken {
                    return Err(StoreError::RunIdTaken(start.run_id));
                }
                let now = now_ms();
                let session = ensure_session_tx(&tx, &start.session_key, &start.agent_id, &start.cwd, now)?;
                let mut records = start.preamble;
                records.push(NewRecord::Message(start.user));
                let appended = append_tx(&tx, &start.session_key, records, None, now)?;
                tx.execute(
                    "INSERT INTO runs (run_id, session_key, session_id, agent_id, idempotency_key, status, started_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6)",
                    params![
                        start.run_id,
                        start.session_key,
                        session.session_id,
                        start.agent_id,
                        start.idempotency_key,
                        now
                    ],
                )?;
                tx.commit()?;
                Ok((BeginTurn::Started { session, user_record_id: String::new() }, Some(appended)))
            })
            .await?;
        let (mut begun, appended) = outcome;
        if let (BeginTurn::Started { user_record_id, .. }, Some(appended)) = (&mut begun, appended) {
            *user_record_id = appended.records.last().map(|r| r.record.id().to_string()).unwrap_or_default();
            self.publish(Change::Appended(appended));
        }
        Ok(begun)
    }

    /// Records how a run ended.
    pub async fn finish_run(
        &self,
        run_id: &str,
        status: RunStatus,
        result: serde_json::Value,
    ) -> Result<(), StoreError> {
        let run_id = run_id.to_string();
        self.call(move |c| {
            c.execute(
                "UPDATE runs SET status = ?2, ended_at = ?3, result_json = ?4 WHERE run_id = ?1",
                params![run_id, status.as_str(), now_ms(), result.to_string()],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn get_run(&self, run_id: &str) -> Result<Option<RunRow>, StoreError> {
        let run_id = run_id.to_string();
        self.call(move |c| {
            Ok(c.query_row(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?1"), [run_id], run_from_row)
                .optional()?)
        })
        .await
    }

    /// Marks runs left `running` by a crash as `interrupted` and notes it in their sessions.
    pub async fn recover_interrupted_runs(&self) -> Result<Vec<RunRow>, StoreError> {
        let (runs, notes) = self
            .call(|c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let runs: Vec<RunRow> = {
                    let mut stmt = tx.prepare(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE status = 'running'"))?;
                    stmt.query_map([], run_from_row)?.collect::<Result<_, _>>()?
                };
                let now = now_ms();
                let mut notes = Vec::new();
                for run in &runs {
                    tx.execute(
                        "UPDATE runs SET status = 'interrupted', ended_at = ?2, \
                     result_json = '{\"error\":\"the gateway stopped before the run finished\"}' WHERE run_id = ?1",
                        params![run.run_id, now],
                    )?;
                    let still_current: Option<String> = tx
                        .query_row("SELECT session_id FROM sessions WHERE session_key = ?1", [&run.session_key], |r| {
                            r.get(0)
                        })
                        .optional()?;
                    if still_current.as_deref() == Some(run.session_id.as_str()) {
                        let appended = append_tx(
                            &tx,
                            &run.session_key,
                            vec![NewRecord::CustomMessage {
                                custom_type: "run-interrupted".into(),
                                content: "The previous run was interrupted: the gateway stopped before it finished."
                                    .into(),
                                details: Some(serde_json::json!({ "runId": run.run_id })),
                            }],
                            None,
                            now,
                        )?;
                        notes.push(appended);
                    }
                }
                tx.commit()?;
                Ok((runs, notes))
            })
            .await?;
        for appended in notes {
            self.publish(Change::Appended(appended));
        }
        Ok(runs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawline_core::message::{UserContent, UserMessage};
    use clawline_core::transcript::Record;

    fn start(run: &str, idem: Option<&str>) -> TurnStart {
        TurnStart {
            run_id: run.into(),
            session_key: "agent:main:main".into(),
            agent_id: "main".into(),
            cwd: "/w".into(),
            idempotency_key: idem.map(String::from),
            preamble: vec![],
            user: Message::User(UserMessage {
                content: UserContent::Text("hi".into()),
                timestamp: 1,
                idempotency_key: idem.map(String::from),
            }),
        }
    }

    #[tokio::test]
    async fn idempotent_turns_and_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        assert!(matches!(store.begin_turn(start("r1", Some("k1"))).await.unwrap(), BeginTurn::Started { .. }));
        match store.begin_turn(start("r2", Some("k1"))).await.unwrap() {
            BeginTurn::Duplicate(run) => assert_eq!(run.run_id, "r1"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(store.begin_turn(start("r3", None)).await.unwrap(), BeginTurn::Started { .. }));
        store.finish_run("r3", RunStatus::Ok, serde_json::json!({"text": "done"})).await.unwrap();

        let recovered = store.recover_interrupted_runs().await.unwrap();
        assert_eq!(recovered.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(), ["r1"]);
        assert_eq!(store.get_run("r1").await.unwrap().unwrap().status, RunStatus::Interrupted);
        assert_eq!(store.get_run("r3").await.unwrap().unwrap().result.unwrap()["text"], "done");
        let (_, records) = store.session_with_transcript("agent:main:main").await.unwrap().unwrap();
        assert!(matches!(records.last(), Some(Record::CustomMessage(m)) if m.custom_type == "run-interrupted"));
        // Only two user messages were written: the duplicate wrote nothing.
        assert_eq!(records.iter().filter(|r| r.message().is_some()).count(), 2);
        assert!(store.recover_interrupted_runs().await.unwrap().is_empty());
    }
}
