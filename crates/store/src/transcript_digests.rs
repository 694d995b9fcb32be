//! How big each of an agent's transcripts is, for the memory index's delta thresholds
//! (`memory.search.sources: ["sessions"]`).
//!
//! An agent's transcripts are the current one of each of its sessions and the earlier ones its
//! runs used (a reset keeps the old transcript). Only person and assistant messages count; tool
//! traffic is not memory. One query, run on the store's thread; this file must not render or
//! index anything.

use rusqlite::params;

use crate::db::Store;
use crate::error::StoreError;

/// One transcript's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptDigest {
    pub session_id: String,
    pub session_key: String,
    /// Person and assistant messages.
    pub messages: u64,
    /// Bytes of those messages as stored (JSON).
    pub bytes: u64,
    /// Whether it is its session's current transcript.
    pub current: bool,
}

impl Store {
    /// Every transcript of `agent_id` holding at least one message, by session id.
    pub async fn transcript_digests(&self, agent_id: &str) -> Result<Vec<TranscriptDigest>, StoreError> {
        let agent_id = agent_id.to_string();
        self.call(move |c| {
            let mut st = c.prepare_cached(
                "WITH ids(session_id, session_key, current) AS (
                     SELECT session_id, session_key, 1 FROM sessions WHERE agent_id = ?1
                     UNION
                     SELECT DISTINCT session_id, session_key, 0 FROM runs
                      WHERE agent_id = ?1 AND session_id NOT IN (SELECT session_id FROM sessions))
                 SELECT ids.session_id, min(ids.session_key), max(ids.current), count(*), sum(length(CAST(e.event_json AS BLOB)))
                   FROM ids JOIN transcript_events e ON e.session_id = ids.session_id
                  WHERE e.kind IN ('user', 'assistant')
                  GROUP BY ids.session_id ORDER BY ids.session_id",
            )?;
            let rows = st.query_map(params![agent_id], |r| {
                Ok(TranscriptDigest {
                    session_id: r.get(0)?,
                    session_key: r.get(1)?,
                    current: r.get::<_, i64>(2)? != 0,
                    messages: r.get::<_, i64>(3)?.max(0) as u64,
                    bytes: r.get::<_, i64>(4)?.max(0) as u64,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use clawline_core::message::{Message, UserContent, UserMessage};
    use clawline_core::transcript::NewRecord;

    use crate::db::Store;

    fn said(text: &str) -> NewRecord {
        NewRecord::Message(Message::User(UserMessage {
            content: UserContent::Text(text.into()),
            timestamp: 0,
            idempotency_key: None,
        }))
    }

    #[tokio::test]
    async fn digests_count_messages_of_the_agents_transcripts_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        store.ensure_session("agent:main:main", "main", "/w").await.unwrap();
        store.ensure_session("agent:other:main", "other", "/w").await.unwrap();
        store.ensure_session("agent:main:empty", "main", "/w").await.unwrap();
        store.append("agent:main:main", vec![said("hello"), said("again")], None).await.unwrap();
        store.append("agent:other:main", vec![said("not mine")], None).await.unwrap();

        let d = store.transcript_digests("main").await.unwrap();
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].session_key.as_str(), d[0].messages, d[0].current), ("agent:main:main", 2, true));
        let first_bytes = d[0].bytes;
        assert!(first_bytes > "helloagain".len() as u64);

        store.append("agent:main:main", vec![said("more")], None).await.unwrap();
        let d = store.transcript_digests("main").await.unwrap();
        assert_eq!(d[0].messages, 3);
        assert!(d[0].bytes > first_bytes);

        // A turn, then a reset: the old transcript stays the agent's, no longer current.
        let turn = crate::TurnStart {
            run_id: "r1".into(),
            session_key: "agent:main:main".into(),
            agent_id: "main".into(),
            cwd: "/w".into(),
            idempotency_key: None,
            preamble: Vec::new(),
            user: Message::User(UserMessage {
                content: UserContent::Text("a turn".into()),
                timestamp: 0,
                idempotency_key: None,
            }),
        };
        store.begin_turn(turn).await.unwrap();
        store.reset_session("agent:main:main", "main", "/w").await.unwrap();
        store.append("agent:main:main", vec![said("fresh start")], None).await.unwrap();
        let d = store.transcript_digests("main").await.unwrap();
        assert_eq!(d.len(), 2, "{d:?}");
        let old = d.iter().find(|t| !t.current).expect("the earlier transcript");
        let new = d.iter().find(|t| t.current).expect("the current one");
        assert_eq!((old.messages, new.messages), (4, 1));
        assert_eq!(old.session_key, "agent:main:main");
    }
}
