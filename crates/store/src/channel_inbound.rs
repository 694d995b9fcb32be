//! The channel inbound journal and the platform cursors.
//!
//! A platform message is written here before the platform is told it was received (before the
//! next `getUpdates` offset, the envelope ack, the `/sync` token moves on). Accepting a batch and
//! moving the account's cursor happen in one transaction, so a crash leaves either both or
//! neither: restart resumes from the stored cursor and the journal's unique key on
//! (channel, account, platform id) turns a redelivered message into a no-op. This file stores
//! rows and their states; it does not decide what a message means or who answers it.

use rusqlite::{OptionalExtension, params};

use crate::db::Store;
use crate::error::StoreError;
use crate::now_ms;

/// Where one journaled message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundState {
    /// Journaled, not yet looked at by the dispatcher.
    Pending,
    /// Passed the gate; its turn has been started (maybe not finished).
    Running,
    /// Its reply (or notice) is in the outbound queue.
    Answered,
    /// Not answered on purpose (gate, pairing, …); `note` says why.
    Dropped,
    /// Not answered, but shown with the conversation's next answered message (a group
    /// message that did not mention the assistant).
    Context,
    /// Could not be answered; `note` says why.
    Failed,
}

impl InboundState {
    pub fn as_str(self) -> &'static str {
        match self {
            InboundState::Pending => "pending",
            InboundState::Running => "running",
            InboundState::Answered => "answered",
            InboundState::Dropped => "dropped",
            InboundState::Context => "context",
            InboundState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> InboundState {
        match s {
            "pending" => InboundState::Pending,
            "running" => InboundState::Running,
            "answered" => InboundState::Answered,
            "dropped" => InboundState::Dropped,
            "context" => InboundState::Context,
            _ => InboundState::Failed,
        }
    }
}

/// A message to journal.
#[derive(Debug, Clone)]
pub struct NewInbound {
    /// The platform's id for the message, unique within the account (the dedupe key).
    pub platform_id: String,
    /// The normalized message, as the channel layer serialized it.
    pub message: serde_json::Value,
}

/// One journaled message.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundRow {
    pub id: i64,
    pub channel: String,
    pub account_id: String,
    pub platform_id: String,
    pub received_at: i64,
    pub message: serde_json::Value,
    pub state: InboundState,
    /// How many times a turn was started for it (a restart mid-turn starts another).
    pub attempts: i64,
    pub session_key: Option<String>,
    pub note: Option<String>,
}

/// What [`Store::accept_inbound`] did with each message of the batch, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Journaled now, with this row id.
    New(i64),
    /// Already in the journal (a redelivery): nothing written.
    Duplicate,
}

const COLUMNS: &str =
    "id, channel, account_id, platform_id, received_at, message_json, state, attempts, session_key, note";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<InboundRow> {
    Ok(InboundRow {
        id: r.get(0)?,
        channel: r.get(1)?,
        account_id: r.get(2)?,
        platform_id: r.get(3)?,
        received_at: r.get(4)?,
        message: serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or(serde_json::Value::Null),
        state: InboundState::parse(&r.get::<_, String>(6)?),
        attempts: r.get(7)?,
        session_key: r.get(8)?,
        note: r.get(9)?,
    })
}

impl Store {
    /// Journals a batch and, in the same transaction, moves the account's cursor to `cursor`
    /// (when given). Only after this returns may the platform be told the batch arrived.
    pub async fn accept_inbound(
        &self,
        channel: &str,
        account_id: &str,
        batch: Vec<NewInbound>,
        cursor: Option<String>,
    ) -> Result<Vec<Accepted>, StoreError> {
        let (channel, account_id) = (channel.to_string(), account_id.to_string());
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let now = now_ms();
            let mut out = Vec::with_capacity(batch.len());
            for m in batch {
                let n = tx.execute(
                    "INSERT OR IGNORE INTO channel_inbound
                         (channel, account_id, platform_id, received_at, message_json, state, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?4)",
                    params![channel, account_id, m.platform_id, now, m.message.to_string()],
                )?;
                out.push(if n == 1 { Accepted::New(tx.last_insert_rowid()) } else { Accepted::Duplicate });
            }
            if let Some(cursor) = cursor {
                tx.execute(
                    "INSERT INTO channel_cursors (channel, account_id, cursor, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (channel, account_id) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
                    params![channel, account_id, cursor, now],
                )?;
            }
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    /// The account's stored cursor (a Telegram update offset, a Matrix `since` token, …).
    pub async fn channel_cursor(&self, channel: &str, account_id: &str) -> Result<Option<String>, StoreError> {
        let (channel, account_id) = (channel.to_string(), account_id.to_string());
        self.call(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT cursor FROM channel_cursors WHERE channel = ?1 AND account_id = ?2",
                    params![channel, account_id],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }

    /// Messages not finished yet (`pending` and `running`), oldest first: what a restart resumes.
    pub async fn open_inbound(&self) -> Result<Vec<InboundRow>, StoreError> {
        self.call(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM channel_inbound WHERE state IN ('pending', 'running') ORDER BY id"
            ))?;
            let rows = stmt.query_map([], from_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// One journaled message.
    pub async fn inbound(&self, id: i64) -> Result<Option<InboundRow>, StoreError> {
        self.call(move |conn| {
            Ok(conn
                .query_row(&format!("SELECT {COLUMNS} FROM channel_inbound WHERE id = ?1"), [id], from_row)
                .optional()?)
        })
        .await
    }

    /// Marks a message `running` for its next attempt and returns that attempt's number (1, 2, …).
    pub async fn start_inbound_attempt(&self, id: i64, session_key: &str) -> Result<i64, StoreError> {
        let session_key = session_key.to_string();
        self.call(move |conn| {
            let attempts: i64 = conn.query_row(
                "UPDATE channel_inbound SET state = 'running', attempts = attempts + 1, session_key = ?2, updated_at = ?3
                 WHERE id = ?1 RETURNING attempts",
                params![id, session_key, now_ms()],
                |r| r.get(0),
            )?;
            Ok(attempts)
        })
        .await
    }

    /// Ends a message without a reply (`Dropped` or `Failed`), saying why.
    pub async fn close_inbound(&self, id: i64, state: InboundState, note: &str) -> Result<(), StoreError> {
        let note = note.to_string();
        self.call(move |conn| {
            conn.execute(
                "UPDATE channel_inbound SET state = ?2, note = ?3, updated_at = ?4 WHERE id = ?1",
                params![id, state.as_str(), note, now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    /// The messages kept as context in one conversation (`peer_id`, and `thread` when set)
    /// since the last one answered before row `before`: at most `limit`, oldest first.
    pub async fn conversation_context(
        &self,
        channel: &str,
        account_id: &str,
        peer_id: &str,
        thread: Option<&str>,
        before: i64,
        limit: usize,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let (channel, account_id, peer_id) = (channel.to_string(), account_id.to_string(), peer_id.to_string());
        let thread = thread.map(str::to_string);
        self.call(move |conn| {
            let same =
                "json_extract(message_json, '$.peerId') = ?3 AND json_extract(message_json, '$.thread[1]') IS ?4";
            let answered: i64 = conn.query_row(
                &format!(
                    "SELECT COALESCE(MAX(id), 0) FROM channel_inbound INDEXED BY channel_inbound_by_state \
                     WHERE channel = ?1 AND account_id = ?2 AND state IN ('answered', 'running') AND id < ?5 AND {same}"
                ),
                params![channel, account_id, peer_id, thread, before],
                |r| r.get(0),
            )?;
            let mut stmt = conn.prepare(&format!(
                "SELECT message_json FROM channel_inbound INDEXED BY channel_inbound_by_state \
                 WHERE channel = ?1 AND account_id = ?2 AND state = 'context' AND id < ?5 AND id > ?6 AND {same} \
                 ORDER BY id DESC LIMIT ?7"
            ))?;
            let mut rows = stmt
                .query_map(params![channel, account_id, peer_id, thread, before, answered, limit as i64], |r| {
                    r.get::<_, String>(0)
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.reverse();
            Ok(rows.iter().filter_map(|t| serde_json::from_str(t).ok()).collect())
        })
        .await
    }

    /// Forgets an account's cursor (a logout: the next connection starts afresh).
    pub async fn clear_channel_cursor(&self, channel: &str, account_id: &str) -> Result<(), StoreError> {
        let (channel, account_id) = (channel.to_string(), account_id.to_string());
        self.call(move |conn| {
            conn.execute(
                "DELETE FROM channel_cursors WHERE channel = ?1 AND account_id = ?2",
                params![channel, account_id],
            )?;
            Ok(())
        })
        .await
    }

    /// Journal rows of one account, newest first (for status and tests).
    pub async fn recent_inbound(
        &self,
        channel: &str,
        account_id: &str,
        limit: usize,
    ) -> Result<Vec<InboundRow>, StoreError> {
        let (channel, account_id) = (channel.to_string(), account_id.to_string());
        self.call(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM channel_inbound WHERE channel = ?1 AND account_id = ?2 ORDER BY id DESC LIMIT ?3"
            ))?;
            let rows =
                stmt.query_map(params![channel, account_id, limit as i64], from_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str) -> NewInbound {
        NewInbound { platform_id: id.into(), message: serde_json::json!({"text": id}) }
    }

    #[tokio::test]
    async fn a_batch_and_its_cursor_land_together_and_redeliveries_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let got =
            store.accept_inbound("telegram", "default", vec![msg("1"), msg("2")], Some("3".into())).await.unwrap();
        assert!(matches!(got[..], [Accepted::New(_), Accepted::New(_)]));
        assert_eq!(store.channel_cursor("telegram", "default").await.unwrap().as_deref(), Some("3"));
        let again =
            store.accept_inbound("telegram", "default", vec![msg("2"), msg("3")], Some("4".into())).await.unwrap();
        assert_eq!(again[0], Accepted::Duplicate);
        assert!(matches!(again[1], Accepted::New(_)));
        // Another account may reuse platform ids.
        let other = store.accept_inbound("telegram", "work", vec![msg("1")], None).await.unwrap();
        assert!(matches!(other[0], Accepted::New(_)));
        assert_eq!(store.open_inbound().await.unwrap().len(), 4);
    }

    #[tokio::test]
    async fn context_is_what_the_conversation_said_since_its_last_answer() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let m = |id: &str, peer: &str| NewInbound {
            platform_id: id.into(),
            message: serde_json::json!({"text": id, "peerId": peer}),
        };
        let rows = store
            .accept_inbound(
                "telegram",
                "default",
                vec![
                    m("a", "-1"),
                    m("b", "-1"),
                    m("other", "-2"),
                    m("asked", "-1"),
                    m("c", "-1"),
                    m("d", "-1"),
                    m("now", "-1"),
                ],
                None,
            )
            .await
            .unwrap();
        let ids: Vec<i64> = rows.iter().map(|a| if let Accepted::New(id) = a { *id } else { 0 }).collect();
        for (i, state) in [
            (0, InboundState::Context),
            (1, InboundState::Context),
            (2, InboundState::Context),
            (3, InboundState::Answered),
            (4, InboundState::Context),
            (5, InboundState::Context),
        ] {
            store.close_inbound(ids[i], state, "x").await.unwrap();
        }
        let texts =
            |v: Vec<serde_json::Value>| v.iter().map(|m| m["text"].as_str().unwrap().to_string()).collect::<Vec<_>>();
        let got = store.conversation_context("telegram", "default", "-1", None, ids[6], 10).await.unwrap();
        assert_eq!(texts(got), ["c", "d"], "only since the last answer, oldest first");
        let got = store.conversation_context("telegram", "default", "-1", None, ids[3], 1).await.unwrap();
        assert_eq!(texts(got), ["b"], "the newest within the limit");
        assert!(
            store.conversation_context("telegram", "default", "-1", Some("5"), ids[6], 10).await.unwrap().is_empty()
        );
    }

    #[tokio::test]
    async fn attempts_count_and_closed_rows_leave_the_open_list() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let got = store.accept_inbound("telegram", "default", vec![msg("1")], None).await.unwrap();
        let Accepted::New(id) = got[0] else { panic!("{got:?}") };
        assert_eq!(store.start_inbound_attempt(id, "agent:main:main").await.unwrap(), 1);
        assert_eq!(store.start_inbound_attempt(id, "agent:main:main").await.unwrap(), 2);
        let row = store.inbound(id).await.unwrap().unwrap();
        assert_eq!(
            (row.state, row.attempts, row.session_key.as_deref()),
            (InboundState::Running, 2, Some("agent:main:main"))
        );
        store.close_inbound(id, InboundState::Dropped, "not allowed").await.unwrap();
        assert!(store.open_inbound().await.unwrap().is_empty());
        assert_eq!(store.inbound(id).await.unwrap().unwrap().note.as_deref(), Some("not allowed"));
    }
}
