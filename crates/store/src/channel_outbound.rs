//! The channel outbound queue: every message clawline sends to a platform, before it is sent.
//!
//! A reply is queued in the same transaction that marks its inbound message answered, so a
//! crash can neither lose a finished reply nor queue it twice. Each row carries an idempotency
//! key unique per account (the inbound message, the attempt and the chunk), so queueing the same
//! reply again is a no-op. Rows are retried with the delay the sender chooses until they are
//! sent or expire into the dead-letter list. A row is marked as being sent before each attempt
//! and the mark is cleared only with a recorded answer, so after a crash or a cut connection the
//! sender knows which rows the platform may already have. This file stores and selects rows; the sending,
//! the backoff and the platform's answers are the channel layer's.

use rusqlite::params;

use crate::db::Store;
use crate::error::StoreError;
use crate::now_ms;

/// Where one outbound row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundState {
    Pending,
    Sent,
    /// Given up on (expired, or refused for good); kept for `channels status` and the owner.
    Dead,
}

impl OutboundState {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboundState::Pending => "pending",
            OutboundState::Sent => "sent",
            OutboundState::Dead => "dead",
        }
    }

    fn parse(s: &str) -> OutboundState {
        match s {
            "pending" => OutboundState::Pending,
            "sent" => OutboundState::Sent,
            _ => OutboundState::Dead,
        }
    }
}

/// A message to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutbound {
    pub idempotency_key: String,
    /// Where it goes (chat, thread, message replied to), as the channel layer serialized it.
    pub target: serde_json::Value,
    /// What it says, already formatted for the platform.
    pub body: serde_json::Value,
    /// After this (Unix ms) an unsent row is dead.
    pub expires_at: i64,
    /// The `traceparent` of the span that queued it, when that span is exported.
    pub traceparent: Option<String>,
}

/// One queued message.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundRow {
    pub id: i64,
    pub channel: String,
    pub account_id: String,
    pub idempotency_key: String,
    pub target: serde_json::Value,
    pub body: serde_json::Value,
    pub state: OutboundState,
    pub attempts: i64,
    pub next_at: i64,
    pub expires_at: i64,
    pub last_error: Option<String>,
    pub platform_message_id: Option<String>,
    pub created_at: i64,
    /// When an attempt first started without its answer being recorded (Unix ms): the platform
    /// may have the message although the row is still pending.
    pub sending_since: Option<i64>,
    pub traceparent: Option<String>,
}

const COLUMNS: &str = "id, channel, account_id, idempotency_key, target_json, body_json, state, attempts, next_at, \
     expires_at, last_error, platform_message_id, created_at, sending_since, traceparent";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboundRow> {
    let json = |i: usize| -> rusqlite::Result<serde_json::Value> {
        Ok(serde_json::from_str(&r.get::<_, String>(i)?).unwrap_or(serde_json::Value::Null))
    };
    Ok(OutboundRow {
        id: r.get(0)?,
        channel: r.get(1)?,
        account_id: r.get(2)?,
        idempotency_key: r.get(3)?,
        target: json(4)?,
        body: json(5)?,
        state: OutboundState::parse(&r.get::<_, String>(6)?),
        attempts: r.get(7)?,
        next_at: r.get(8)?,
        expires_at: r.get(9)?,
        last_error: r.get(10)?,
        platform_message_id: r.get(11)?,
        created_at: r.get(12)?,
        sending_since: r.get(13)?,
        traceparent: r.get(14)?,
    })
}

fn insert(
    tx: &rusqlite::Transaction<'_>,
    channel: &str,
    account_id: &str,
    rows: &[NewOutbound],
) -> Result<(), StoreError> {
    let now = now_ms();
    for m in rows {
        tx.execute(
            "INSERT OR IGNORE INTO channel_outbound
                 (channel, account_id, idempotency_key, target_json, body_json, state, next_at, expires_at, created_at, updated_at, traceparent)
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7, ?6, ?6, ?8)",
            params![channel, account_id, m.idempotency_key, m.target.to_string(), m.body.to_string(), now, m.expires_at, m.traceparent],
        )?;
    }
    Ok(())
}

impl Store {
    /// Queues messages (rows whose idempotency key is already queued are skipped).
    pub async fn queue_outbound(
        &self,
        channel: &str,
        account_id: &str,
        rows: Vec<NewOutbound>,
    ) -> Result<(), StoreError> {
        let (channel, account_id) = (channel.to_string(), account_id.to_string());
        self.call(move |conn| {
            let tx = conn.transaction()?;
            insert(&tx, &channel, &account_id, &rows)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Marks journaled message `inbound_id` answered and queues its reply, in one transaction.
    pub async fn answer_inbound(
        &self,
        inbound_id: i64,
        channel: &str,
        account_id: &str,
        rows: Vec<NewOutbound>,
        note: Option<String>,
    ) -> Result<(), StoreError> {
        let (channel, account_id) = (channel.to_string(), account_id.to_string());
        self.call(move |conn| {
            let tx = conn.transaction()?;
            insert(&tx, &channel, &account_id, &rows)?;
            tx.execute(
                "UPDATE channel_inbound SET state = 'answered', note = ?2, updated_at = ?3 WHERE id = ?1",
                params![inbound_id, note, now_ms()],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Pending rows of one account that are due at `now`, oldest first.
    pub async fn due_outbound(
        &self,
        channel: &str,
        account_id: &str,
        now: i64,
        limit: usize,
    ) -> Result<Vec<OutboundRow>, StoreError> {
        let (channel, account_id) = (channel.to_string(), account_id.to_string());
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM channel_outbound
                 WHERE channel = ?1 AND account_id = ?2 AND state = 'pending' AND next_at <= ?3
                 ORDER BY id LIMIT ?4"
            ))?;
            let rows = stmt
                .query_map(params![channel, account_id, now, limit as i64], from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// When the account's next pending row is due (Unix ms), if it has any.
    pub async fn next_outbound_at(&self, channel: &str, account_id: &str) -> Result<Option<i64>, StoreError> {
        let (channel, account_id) = (channel.to_string(), account_id.to_string());
        self.call(move |conn| {
            Ok(conn.query_row(
                "SELECT min(next_at) FROM channel_outbound WHERE channel = ?1 AND account_id = ?2 AND state = 'pending'",
                params![channel, account_id],
                |r| r.get(0),
            )?)
        })
        .await
    }

    /// Rows waiting, for `/metrics`: `(inbound messages not yet answered, replies not yet
    /// delivered)`, over every channel.
    pub async fn channel_queue_depths(&self) -> Result<(u64, u64), StoreError> {
        self.call(|conn| {
            let inbound: i64 = conn.query_row(
                "SELECT count(*) FROM channel_inbound WHERE state IN ('pending', 'running')",
                [],
                |r| r.get(0),
            )?;
            let outbound: i64 =
                conn.query_row("SELECT count(*) FROM channel_outbound WHERE state = 'pending'", [], |r| r.get(0))?;
            Ok((inbound as u64, outbound as u64))
        })
        .await
    }

    /// Marks a row as being handed to the platform now, keeping the time of an earlier attempt
    /// whose outcome is still unknown. Called before every attempt.
    pub async fn outbound_sending(&self, id: i64) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.execute(
                "UPDATE channel_outbound SET sending_since = coalesce(sending_since, ?2) WHERE id = ?1",
                params![id, now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    /// Records that the platform refused an attempt outright, so it certainly does not have the
    /// message: the next attempt need not look for it.
    pub async fn outbound_not_sent(&self, id: i64) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.execute("UPDATE channel_outbound SET sending_since = NULL WHERE id = ?1", params![id])?;
            Ok(())
        })
        .await
    }

    /// Records a row as sent, with the platform's id for it.
    pub async fn outbound_sent(&self, id: i64, platform_message_id: Option<String>) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.execute(
                "UPDATE channel_outbound SET state = 'sent', attempts = attempts + 1, platform_message_id = ?2,
                     last_error = NULL, sending_since = NULL, updated_at = ?3 WHERE id = ?1",
                params![id, platform_message_id, now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    /// Records a failed attempt: the row is tried again at `next_at`, or is dead when `next_at`
    /// is past its expiry or `dead` is set. The being-sent mark stays: a failure the sender
    /// cannot be sure of (a timeout, a cut answer) may still have reached the platform.
    pub async fn outbound_failed(
        &self,
        id: i64,
        error: &str,
        next_at: i64,
        dead: bool,
    ) -> Result<OutboundState, StoreError> {
        let error = error.to_string();
        self.call(move |conn| {
            let state: String = conn.query_row(
                "UPDATE channel_outbound
                 SET attempts = attempts + 1, last_error = ?2, next_at = ?3, updated_at = ?5,
                     state = CASE WHEN ?4 OR ?3 > expires_at THEN 'dead' ELSE 'pending' END
                 WHERE id = ?1 RETURNING state",
                params![id, error, next_at, dead, now_ms()],
                |r| r.get(0),
            )?;
            Ok(OutboundState::parse(&state))
        })
        .await
    }

    /// Rewrites one row's target (a Telegram group that became a supergroup has a new id).
    pub async fn retarget_outbound(&self, id: i64, target: serde_json::Value) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.execute(
                "UPDATE channel_outbound SET target_json = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, target.to_string(), now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    /// Dead rows, newest first (`channel` and `account_id` narrow the list when given).
    pub async fn dead_outbound(
        &self,
        channel: Option<&str>,
        account_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<OutboundRow>, StoreError> {
        let (channel, account_id) = (channel.map(str::to_string), account_id.map(str::to_string));
        self.call(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM channel_outbound
                 WHERE state = 'dead' AND (?1 IS NULL OR channel = ?1) AND (?2 IS NULL OR account_id = ?2)
                 ORDER BY id DESC LIMIT ?3"
            ))?;
            let rows =
                stmt.query_map(params![channel, account_id, limit as i64], from_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Every row queued under one idempotency-key prefix, oldest first (tests and diagnostics).
    pub async fn outbound_with_prefix(&self, channel: &str, prefix: &str) -> Result<Vec<OutboundRow>, StoreError> {
        let (channel, pattern) = (channel.to_string(), format!("{}%", prefix.replace('%', "")));
        self.call(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM channel_outbound WHERE channel = ?1 AND idempotency_key LIKE ?2 ORDER BY id"
            ))?;
            let rows = stmt.query_map(params![channel, pattern], from_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel_inbound::{Accepted, InboundState, NewInbound};

    fn out(key: &str, expires_at: i64) -> NewOutbound {
        NewOutbound {
            idempotency_key: key.into(),
            target: serde_json::json!({"chat": "1"}),
            body: serde_json::json!({"text": key}),
            expires_at,
            traceparent: Some(format!("00-{key}")),
        }
    }

    #[tokio::test]
    async fn an_answer_and_its_reply_are_one_write_and_requeueing_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let got = store
            .accept_inbound(
                "telegram",
                "default",
                vec![NewInbound { platform_id: "1".into(), message: serde_json::json!({}) }],
                None,
            )
            .await
            .unwrap();
        let Accepted::New(id) = got[0] else { panic!() };
        let far = now_ms() + 60_000;
        store
            .answer_inbound(id, "telegram", "default", vec![out("1:1:0", far), out("1:1:1", far)], None)
            .await
            .unwrap();
        store.answer_inbound(id, "telegram", "default", vec![out("1:1:0", far)], None).await.unwrap();
        assert_eq!(store.inbound(id).await.unwrap().unwrap().state, InboundState::Answered);
        let due = store.due_outbound("telegram", "default", now_ms(), 10).await.unwrap();
        assert_eq!(due.iter().map(|r| r.idempotency_key.as_str()).collect::<Vec<_>>(), ["1:1:0", "1:1:1"]);
        assert_eq!(due[0].traceparent.as_deref(), Some("00-1:1:0"), "the trace context is kept with the row");
        store.outbound_sent(due[0].id, Some("77".into())).await.unwrap();
        let due = store.due_outbound("telegram", "default", now_ms(), 10).await.unwrap();
        assert_eq!(due.len(), 1);
    }

    #[tokio::test]
    async fn an_attempt_without_an_answer_stays_marked_until_one_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        store.queue_outbound("slack", "default", vec![out("a", now_ms() + 60_000)]).await.unwrap();
        let due = |store: Store| async move { store.due_outbound("slack", "default", now_ms(), 10).await.unwrap() };
        let row = due(store.clone()).await.remove(0);
        assert_eq!(row.sending_since, None, "never tried");
        store.outbound_sending(row.id).await.unwrap();
        let first = due(store.clone()).await[0].sending_since.expect("marked");
        // A failure keeps the mark and a second attempt keeps the first attempt's time.
        store.outbound_failed(row.id, "timed out", 0, false).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        store.outbound_sending(row.id).await.unwrap();
        assert_eq!(due(store.clone()).await[0].sending_since, Some(first));
        // A refusal clears it; so does a recorded send.
        store.outbound_not_sent(row.id).await.unwrap();
        assert_eq!(due(store.clone()).await[0].sending_since, None);
        store.outbound_sending(row.id).await.unwrap();
        store.outbound_sent(row.id, Some("1.2".into())).await.unwrap();
        let sent = store.outbound_with_prefix("slack", "a").await.unwrap().remove(0);
        assert_eq!((sent.state, sent.sending_since), (OutboundState::Sent, None));
    }

    #[tokio::test]
    async fn failures_wait_and_expire_into_the_dead_list() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let now = now_ms();
        store.queue_outbound("telegram", "default", vec![out("a", now + 10_000)]).await.unwrap();
        // The row is due from when it was written, a moment after `now`.
        let row = store.due_outbound("telegram", "default", now_ms(), 10).await.unwrap().remove(0);
        assert_eq!(store.outbound_failed(row.id, "429", now + 5_000, false).await.unwrap(), OutboundState::Pending);
        assert!(store.due_outbound("telegram", "default", now + 1, 10).await.unwrap().is_empty());
        assert_eq!(store.next_outbound_at("telegram", "default").await.unwrap(), Some(now + 5_000));
        assert_eq!(store.outbound_failed(row.id, "502", now + 20_000, false).await.unwrap(), OutboundState::Dead);
        let dead = store.dead_outbound(Some("telegram"), None, 10).await.unwrap();
        assert_eq!((dead.len(), dead[0].attempts, dead[0].last_error.as_deref()), (1, 2, Some("502")));
        assert_eq!(store.next_outbound_at("telegram", "default").await.unwrap(), None);
    }
}
