//! Sessions and their transcripts.
//!
//! A session row maps a session key to its current session id and keeps running totals; the
//! transcript is the ordered list of records under that session id. Appends assign each record
//! an id and chain it to the previous one (`parentId`), all inside one transaction.

use clawline_core::message::Message;
use clawline_core::time::iso8601_from_ms;
use clawline_core::transcript::{NewRecord, Record, SessionHeader, TRANSCRIPT_VERSION};
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};

use crate::changes::{Appended, Change, SessionChange, StoredRecord};
use crate::crypto::random_hex;
use crate::db::Store;
use crate::error::StoreError;
use crate::now_ms;

/// A session as listed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRow {
    pub session_key: String,
    pub agent_id: String,
    pub session_id: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub message_count: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
    pub cost_usd: f64,
    pub last_model: Option<String>,
    /// A name people gave the session (`sessions.patch`).
    pub label: Option<String>,
    /// Client-set flags (`pinned`, `archived`, `unread`, levels …) as a JSON object.
    pub flags: serde_json::Value,
}

/// Usage to add to a session's totals along with an append.
#[derive(Debug, Clone, Default)]
pub struct UsageDelta {
    pub input: u64,
    pub output: u64,
    pub total: u64,
    pub cost_usd: f64,
    pub model: Option<String>,
}

const SESSION_COLUMNS: &str = "session_key, agent_id, session_id, created_at, updated_at, message_count, \
     input_tokens, output_tokens, total_tokens, cost_usd, last_model, label, flags_json";

fn session_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        session_key: r.get(0)?,
        agent_id: r.get(1)?,
        session_id: r.get(2)?,
        created_at: r.get(3)?,
        updated_at: r.get(4)?,
        message_count: r.get(5)?,
        input_tokens: r.get(6)?,
        output_tokens: r.get(7)?,
        total_tokens: r.get(8)?,
        cost_usd: r.get(9)?,
        last_model: r.get(10)?,
        label: r.get(11)?,
        flags: r
            .get::<_, Option<String>>(12)?
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_else(|| serde_json::json!({})),
    })
}

pub(crate) fn get_session_tx(tx: &rusqlite::Connection, key: &str) -> Result<Option<SessionRow>, StoreError> {
    Ok(tx
        .query_row(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE session_key = ?1"), [key], session_from_row)
        .optional()?)
}

/// Returns the session for `key`, creating it (with its header record) when it does not exist.
pub(crate) fn ensure_session_tx(
    tx: &Transaction<'_>,
    key: &str,
    agent_id: &str,
    cwd: &str,
    now: i64,
) -> Result<SessionRow, StoreError> {
    if let Some(row) = get_session_tx(tx, key)? {
        return Ok(row);
    }
    let session_id = write_header_tx(tx, cwd, now)?;
    tx.execute(
        "INSERT INTO sessions (session_key, agent_id, session_id, created_at, updated_at, next_seq) \
         VALUES (?1, ?2, ?3, ?4, ?4, 2)",
        params![key, agent_id, session_id, now],
    )?;
    get_session_tx(tx, key)?.ok_or_else(|| StoreError::NoSession(key.to_string()))
}

/// Starts a new transcript (its `session` header at seq 1); returns the new session id.
fn write_header_tx(tx: &Transaction<'_>, cwd: &str, now: i64) -> Result<String, StoreError> {
    let session_id = uuid::Uuid::new_v4().to_string();
    let header = Record::Session(SessionHeader {
        version: TRANSCRIPT_VERSION,
        id: session_id.clone(),
        timestamp: iso8601_from_ms(now),
        cwd: cwd.to_string(),
    });
    let json = serde_json::to_string(&header).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    tx.execute(
        "INSERT INTO transcript_events (session_id, seq, record_id, kind, event_json, created_at) \
         VALUES (?1, 1, ?1, 'session', ?2, ?3)",
        params![session_id, json, now],
    )?;
    Ok(session_id)
}

fn kind(record: &Record) -> &'static str {
    match record {
        Record::Session(_) => "session",
        Record::Message(m) => match m.message {
            Message::User(_) => "user",
            Message::Assistant(_) => "assistant",
            Message::ToolResult(_) => "toolResult",
        },
        Record::CustomMessage(_) => "custom_message",
        Record::Custom(_) => "custom",
    }
}

/// Appends `records` to the current transcript of `key`. Returns what was stored, for the
/// change feed (publish it after the commit).
pub(crate) fn append_tx(
    tx: &Transaction<'_>,
    key: &str,
    records: Vec<NewRecord>,
    usage: Option<&UsageDelta>,
    now: i64,
) -> Result<Appended, StoreError> {
    let (session_id, agent_id, mut leaf, mut seq): (String, String, Option<String>, i64) = tx
        .query_row("SELECT session_id, agent_id, leaf_id, next_seq FROM sessions WHERE session_key = ?1", [key], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?
        .ok_or_else(|| StoreError::NoSession(key.to_string()))?;
    let mut stored = Vec::with_capacity(records.len());
    let mut messages = 0i64;
    let mut insert = tx.prepare_cached(
        "INSERT INTO transcript_events (session_id, seq, record_id, kind, event_json, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for new in records {
        let id = random_hex(6);
        let record = new.into_record(id.clone(), leaf.clone(), iso8601_from_ms(now));
        if record.message().is_some() {
            messages += 1;
        }
        let json = serde_json::to_string(&record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        insert.execute(params![session_id, seq, id, kind(&record), json, now])?;
        stored.push(StoredRecord { seq, record });
        seq += 1;
        leaf = Some(id);
    }
    let u = usage.cloned().unwrap_or_default();
    tx.execute(
        "UPDATE sessions SET leaf_id = ?2, next_seq = ?3, updated_at = ?4, message_count = message_count + ?5, \
         input_tokens = input_tokens + ?6, output_tokens = output_tokens + ?7, total_tokens = total_tokens + ?8, \
         cost_usd = cost_usd + ?9, last_model = COALESCE(?10, last_model) WHERE session_key = ?1",
        params![key, leaf, seq, now, messages, u.input as i64, u.output as i64, u.total as i64, u.cost_usd, u.model],
    )?;
    Ok(Appended { session_key: key.to_string(), session_id, agent_id, records: stored })
}

pub(crate) fn transcript_tx(conn: &rusqlite::Connection, session_id: &str) -> Result<Vec<Record>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT event_json FROM transcript_events WHERE session_id = ?1 ORDER BY seq")?;
    let rows = stmt.query_map([session_id], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for json in rows {
        let json = json?;
        out.push(serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(format!("{e} in {json:.200}")))?);
    }
    Ok(out)
}

impl Store {
    /// Sessions, most recently updated first.
    pub async fn list_sessions(&self, agent_id: Option<String>, limit: usize) -> Result<Vec<SessionRow>, StoreError> {
        self.call(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE (?1 IS NULL OR agent_id = ?1) \
                 ORDER BY updated_at DESC, session_key LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![agent_id, limit as i64], session_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    pub async fn get_session(&self, key: &str) -> Result<Option<SessionRow>, StoreError> {
        let key = key.to_string();
        self.call(move |c| get_session_tx(c, &key)).await
    }

    /// Creates the session if needed and returns it.
    pub async fn ensure_session(&self, key: &str, agent_id: &str, cwd: &str) -> Result<SessionRow, StoreError> {
        let (key, agent_id, cwd) = (key.to_string(), agent_id.to_string(), cwd.to_string());
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let row = ensure_session_tx(&tx, &key, &agent_id, &cwd, now_ms())?;
            tx.commit()?;
            Ok(row)
        })
        .await
    }

    /// Appends records atomically to the session's current transcript.
    pub async fn append(
        &self,
        key: &str,
        records: Vec<NewRecord>,
        usage: Option<UsageDelta>,
    ) -> Result<Vec<String>, StoreError> {
        let key = key.to_string();
        let appended = self
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let appended = append_tx(&tx, &key, records, usage.as_ref(), now_ms())?;
                tx.commit()?;
                Ok(appended)
            })
            .await?;
        let ids = appended.records.iter().map(|r| r.record.id().to_string()).collect();
        self.publish(Change::Appended(appended));
        Ok(ids)
    }

    /// Every record of one session id, in order (header first).
    pub async fn transcript(&self, session_id: &str) -> Result<Vec<Record>, StoreError> {
        let session_id = session_id.to_string();
        self.call(move |c| transcript_tx(c, &session_id)).await
    }

    /// The session for `key` and its current transcript, if the session exists.
    pub async fn session_with_transcript(&self, key: &str) -> Result<Option<(SessionRow, Vec<Record>)>, StoreError> {
        let key = key.to_string();
        self.call(move |c| {
            let Some(row) = get_session_tx(c, &key)? else { return Ok(None) };
            let records = transcript_tx(c, &row.session_id)?;
            Ok(Some((row, records)))
        })
        .await
    }
}

/// Which sessions [`Store::list_sessions_page`] returns.
#[derive(Debug, Clone, Default)]
pub struct SessionQuery {
    pub agent_id: Option<String>,
    /// Text the key or label contains.
    pub search: Option<String>,
    /// `Some(false)`: only sessions not archived; `Some(true)`: only archived; `None`: all.
    pub archived: Option<bool>,
    pub limit: usize,
    pub offset: usize,
}

impl SessionQuery {
    /// The first `limit` sessions of every agent, archived or not.
    pub fn first(limit: usize) -> Self {
        SessionQuery { limit, ..Default::default() }
    }
}

/// One page of sessions.
#[derive(Debug, Clone)]
pub struct SessionPage {
    pub sessions: Vec<SessionRow>,
    /// How many sessions match, over all pages.
    pub total: usize,
}

/// A change to a session's label and flags.
#[derive(Debug, Clone, Default)]
pub struct SessionPatch {
    /// `Some(None)` clears the label.
    pub label: Option<Option<String>>,
    /// Keys to set; a `null` value removes the key.
    pub flags: serde_json::Map<String, serde_json::Value>,
}

fn records_from(rows: Vec<(i64, String)>) -> Result<Vec<StoredRecord>, StoreError> {
    rows.into_iter()
        .map(|(seq, json)| {
            serde_json::from_str(&json)
                .map(|record| StoredRecord { seq, record })
                .map_err(|e| StoreError::Corrupt(format!("{e} in {json:.200}")))
        })
        .collect()
}

impl Store {
    /// Sessions, most recently updated first, filtered and paged in SQL, so the total and the
    /// pages agree with the filter.
    pub async fn list_sessions_page(&self, q: SessionQuery) -> Result<SessionPage, StoreError> {
        self.call(move |c| {
            let pattern = q.search.map(|s| format!("%{}%", s.replace(['%', '_'], "")));
            let filter = "(?1 IS NULL OR agent_id = ?1) AND (?2 IS NULL OR session_key LIKE ?2 OR label LIKE ?2) \
                          AND (?3 IS NULL OR (COALESCE(json_extract(flags_json, '$.archived'), 0) = 1) = ?3)";
            let total: i64 = c.query_row(
                &format!("SELECT COUNT(*) FROM sessions WHERE {filter}"),
                params![q.agent_id, pattern, q.archived],
                |r| r.get(0),
            )?;
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE {filter} \
                 ORDER BY updated_at DESC, session_key LIMIT ?4 OFFSET ?5"
            ))?;
            let (limit, offset) =
                (i64::try_from(q.limit).unwrap_or(i64::MAX), i64::try_from(q.offset).unwrap_or(i64::MAX));
            let rows = stmt.query_map(params![q.agent_id, pattern, q.archived, limit, offset], session_from_row)?;
            Ok(SessionPage { sessions: rows.collect::<Result<Vec<_>, _>>()?, total: total as usize })
        })
        .await
    }

    /// The session and the last `limit` records of its current transcript (all kinds but the
    /// header), oldest first, with their positions.
    pub async fn transcript_tail(
        &self,
        key: &str,
        limit: usize,
    ) -> Result<Option<(SessionRow, Vec<StoredRecord>)>, StoreError> {
        let key = key.to_string();
        self.call(move |c| {
            let Some(row) = get_session_tx(c, &key)? else { return Ok(None) };
            let mut stmt = c.prepare_cached(
                "SELECT seq, event_json FROM transcript_events WHERE session_id = ?1 AND kind != 'session' \
                 ORDER BY seq DESC LIMIT ?2",
            )?;
            let mut rows: Vec<(i64, String)> = stmt
                .query_map(params![row.session_id, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            rows.reverse();
            Ok(Some((row, records_from(rows)?)))
        })
        .await
    }

    /// The last user or assistant message of each given session id (for previews).
    pub async fn last_messages(&self, session_ids: Vec<String>) -> Result<Vec<Option<Message>>, StoreError> {
        self.call(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT event_json FROM transcript_events WHERE session_id = ?1 AND kind IN ('user', 'assistant') \
                 ORDER BY seq DESC LIMIT 1",
            )?;
            let mut out = Vec::with_capacity(session_ids.len());
            for id in session_ids {
                let json: Option<String> = stmt.query_row([id], |r| r.get(0)).optional()?;
                let record = json.and_then(|j| serde_json::from_str::<Record>(&j).ok());
                out.push(record.and_then(|r| r.message().cloned()));
            }
            Ok(out)
        })
        .await
    }

    /// Starts a fresh transcript for `key` (new session id, totals back to zero). The old
    /// transcript stays in the database. Creates the session when it does not exist.
    pub async fn reset_session(&self, key: &str, agent_id: &str, cwd: &str) -> Result<SessionRow, StoreError> {
        let (key, agent_id, cwd) = (key.to_string(), agent_id.to_string(), cwd.to_string());
        let (row, agent) = self
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let now = now_ms();
                if get_session_tx(&tx, &key)?.is_none() {
                    let row = ensure_session_tx(&tx, &key, &agent_id, &cwd, now)?;
                    tx.commit()?;
                    return Ok((row, agent_id));
                }
                let session_id = write_header_tx(&tx, &cwd, now)?;
                tx.execute(
                    "UPDATE sessions SET session_id = ?2, leaf_id = NULL, next_seq = 2, updated_at = ?3, \
                     message_count = 0, input_tokens = 0, output_tokens = 0, total_tokens = 0, cost_usd = 0 \
                     WHERE session_key = ?1",
                    params![key, session_id, now],
                )?;
                let row = get_session_tx(&tx, &key)?.ok_or_else(|| StoreError::NoSession(key.clone()))?;
                tx.commit()?;
                Ok((row, agent_id))
            })
            .await?;
        self.publish(Change::Session {
            session_key: row.session_key.clone(),
            agent_id: agent,
            change: SessionChange::Reset,
        });
        Ok(row)
    }

    /// Removes a session; with `transcripts`, its records too. Returns the removed row.
    pub async fn delete_session(&self, key: &str, transcripts: bool) -> Result<Option<SessionRow>, StoreError> {
        let key = key.to_string();
        let removed = self
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let Some(row) = get_session_tx(&tx, &key)? else { return Ok(None) };
                if transcripts {
                    tx.execute(
                        "DELETE FROM transcript_events WHERE session_id IN \
                         (SELECT DISTINCT session_id FROM runs WHERE session_key = ?1) OR session_id = ?2",
                        params![key, row.session_id],
                    )?;
                }
                tx.execute("DELETE FROM sessions WHERE session_key = ?1", [&key])?;
                tx.commit()?;
                Ok(Some(row))
            })
            .await?;
        if let Some(row) = &removed {
            self.publish(Change::Session {
                session_key: row.session_key.clone(),
                agent_id: row.agent_id.clone(),
                change: SessionChange::Deleted,
            });
        }
        Ok(removed)
    }

    /// Changes a session's label and flags. Returns the updated row, `None` if there is no session.
    pub async fn patch_session(&self, key: &str, patch: SessionPatch) -> Result<Option<SessionRow>, StoreError> {
        let key = key.to_string();
        let updated = self
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let Some(row) = get_session_tx(&tx, &key)? else { return Ok(None) };
                let mut flags = row.flags.as_object().cloned().unwrap_or_default();
                for (k, v) in patch.flags {
                    if v.is_null() {
                        flags.remove(&k);
                    } else {
                        flags.insert(k, v);
                    }
                }
                let label = patch.label.unwrap_or(row.label);
                tx.execute(
                    "UPDATE sessions SET label = ?2, flags_json = ?3 WHERE session_key = ?1",
                    params![key, label, serde_json::Value::Object(flags).to_string()],
                )?;
                let row = get_session_tx(&tx, &key)?;
                tx.commit()?;
                Ok(row)
            })
            .await?;
        if let Some(row) = &updated {
            self.publish(Change::Session {
                session_key: row.session_key.clone(),
                agent_id: row.agent_id.clone(),
                change: SessionChange::Patched,
            });
        }
        Ok(updated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawline_core::message::{UserContent, UserMessage};

    /// A user message record (shared with the lifecycle tests).
    pub(super) fn user(text: &str) -> NewRecord {
        NewRecord::Message(Message::User(UserMessage {
            content: UserContent::Text(text.into()),
            timestamp: 1,
            idempotency_key: None,
        }))
    }

    #[tokio::test]
    async fn appends_chain_records_and_count_usage() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        let row = store.ensure_session("agent:main:main", "main", "/w").await.unwrap();
        let again = store.ensure_session("agent:main:main", "main", "/w").await.unwrap();
        assert_eq!(row.session_id, again.session_id);

        let a = store.append("agent:main:main", vec![user("one")], None).await.unwrap();
        let usage = UsageDelta { input: 10, output: 5, total: 15, cost_usd: 0.5, model: Some("p/m".into()) };
        let b = store.append("agent:main:main", vec![user("two"), user("three")], Some(usage)).await.unwrap();
        assert_eq!(b.len(), 2);

        let (row, records) = store.session_with_transcript("agent:main:main").await.unwrap().unwrap();
        assert_eq!(row.message_count, 3);
        assert_eq!(row.total_tokens, 15);
        assert_eq!(row.last_model.as_deref(), Some("p/m"));
        assert!(matches!(&records[0], Record::Session(h) if h.id == row.session_id && h.cwd == "/w"));
        let Record::Message(first) = &records[1] else { panic!() };
        assert_eq!(first.id, a[0]);
        assert_eq!(first.parent_id, None);
        let Record::Message(third) = &records[3] else { panic!() };
        assert_eq!(third.parent_id.as_deref(), Some(b[0].as_str()));

        let list = store.list_sessions(Some("main".into()), 10).await.unwrap();
        assert_eq!(list.len(), 1);
        assert!(store.list_sessions(Some("ops".into()), 10).await.unwrap().is_empty());
        assert!(matches!(store.append("agent:main:none", vec![user("x")], None).await, Err(StoreError::NoSession(_))));
    }
}

#[cfg(test)]
mod lifecycle_tests {
    use super::tests::user;
    use super::*;

    #[tokio::test]
    async fn feed_reset_patch_delete_and_tail() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        let mut feed = store.subscribe();
        let first = store.ensure_session("agent:main:a", "main", "/w").await.unwrap();
        store.append("agent:main:a", vec![user("one"), user("two")], None).await.unwrap();
        match &*feed.recv().await.unwrap() {
            Change::Appended(a) => {
                assert_eq!((a.session_key.as_str(), a.agent_id.as_str()), ("agent:main:a", "main"));
                assert_eq!(a.records.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 3]);
            }
            other => panic!("{other:?}"),
        }
        let (_, tail) = store.transcript_tail("agent:main:a", 1).await.unwrap().unwrap();
        assert_eq!(tail.len(), 1);
        assert_eq!(tail[0].seq, 3);

        let mut flags = serde_json::Map::new();
        flags.insert("pinned".into(), serde_json::json!(true));
        let patched = store
            .patch_session("agent:main:a", SessionPatch { label: Some(Some("Work".into())), flags })
            .await
            .unwrap()
            .unwrap();
        assert_eq!((patched.label.as_deref(), &patched.flags["pinned"]), (Some("Work"), &serde_json::json!(true)));
        assert!(matches!(&*feed.recv().await.unwrap(), Change::Session { change: SessionChange::Patched, .. }));

        let reset = store.reset_session("agent:main:a", "main", "/w").await.unwrap();
        assert_ne!(reset.session_id, first.session_id);
        assert_eq!((reset.message_count, reset.label.as_deref()), (0, Some("Work")));
        assert!(store.transcript_tail("agent:main:a", 10).await.unwrap().unwrap().1.is_empty());
        assert!(matches!(&*feed.recv().await.unwrap(), Change::Session { change: SessionChange::Reset, .. }));

        store.ensure_session("agent:main:b", "main", "/w").await.unwrap();
        let q = |search: Option<&str>, archived: Option<bool>, limit, offset| SessionQuery {
            agent_id: Some("main".into()),
            search: search.map(String::from),
            archived,
            limit,
            offset,
        };
        let page = store.list_sessions_page(q(Some("b"), None, 10, 0)).await.unwrap();
        assert_eq!((page.total, page.sessions[0].session_key.as_str()), (1, "agent:main:b"));
        let page = store.list_sessions_page(q(None, None, 1, 1)).await.unwrap();
        assert_eq!((page.total, page.sessions.len()), (2, 1));
        let archive = SessionPatch {
            flags: [("archived".to_string(), serde_json::json!(true))].into_iter().collect(),
            ..Default::default()
        };
        store.patch_session("agent:main:b", archive).await.unwrap();
        let page = store.list_sessions_page(q(None, Some(false), 10, 0)).await.unwrap();
        assert_eq!((page.total, page.sessions[0].session_key.as_str()), (1, "agent:main:a"), "archived ones left out");
        let page = store.list_sessions_page(q(None, Some(true), 10, 0)).await.unwrap();
        assert_eq!((page.total, page.sessions[0].session_key.as_str()), (1, "agent:main:b"));
        assert_eq!(store.list_sessions_page(SessionQuery::first(10)).await.unwrap().total, 2);

        assert!(store.delete_session("agent:main:a", true).await.unwrap().is_some());
        assert!(store.get_session("agent:main:a").await.unwrap().is_none());
        assert!(store.delete_session("agent:main:a", true).await.unwrap().is_none());
    }
}
