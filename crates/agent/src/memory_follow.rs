//! Following an agent's conversations for its memory index (`memory.search.sources:
//! ["sessions"]`): the store's change feed is watched, the person's and the assistant's new
//! messages are counted per transcript, and the index is synced as soon as one transcript has
//! grown by the delta thresholds, or a session of the agent was reset or deleted (its
//! transcript is finished, or gone). The sync itself decides what to index again
//! ([`clawline_memory::transcripts::due`]); this only says when to look.
//!
//! The follower syncs once when it starts, to catch up with what was written before it
//! followed (while the gateway was down, or before memory was first used): that sync compares
//! every transcript with what was indexed. A feed that lagged (changes missed) also syncs. The follower holds the index weakly and ends with it. It must
//! not index anything itself.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use clawline_core::message::Message;
use clawline_core::transcript::Record;
use clawline_memory::index::MemoryIndex;
use clawline_memory::transcripts::DeltaThresholds;
use clawline_store::{Change, SessionChange, Store};
use tokio::sync::broadcast::error::RecvError;

/// Bytes and messages a transcript grew by since it last triggered a sync.
#[derive(Debug, Default, Clone, Copy)]
struct Grown {
    bytes: u64,
    messages: u64,
}

/// Whether `change` calls for a sync of `agent`'s index, counting what it adds to `grown`.
fn calls_for_sync(change: &Change, agent: &str, t: DeltaThresholds, grown: &mut HashMap<String, Grown>) -> bool {
    match change {
        Change::Appended(a) if a.agent_id == agent => {
            let g = grown.entry(a.session_id.clone()).or_default();
            for r in &a.records {
                if let Record::Message(m) = &r.record
                    && matches!(m.message, Message::User(_) | Message::Assistant(_))
                {
                    g.messages += 1;
                    g.bytes += serde_json::to_string(&r.record).map_or(0, |j| j.len() as u64);
                }
            }
            if g.bytes >= t.bytes || g.messages >= t.messages {
                grown.remove(&a.session_id);
                return true;
            }
            false
        }
        Change::Session { agent_id, change: SessionChange::Reset | SessionChange::Deleted, .. } => agent_id == agent,
        _ => false,
    }
}

/// Follows `store` for `agent`'s transcripts and syncs `index` when they call for it.
pub fn spawn(
    store: &Store,
    index: &Arc<MemoryIndex>,
    agent: &str,
    thresholds: DeltaThresholds,
) -> tokio::task::JoinHandle<()> {
    let mut feed = store.subscribe();
    let weak: Weak<MemoryIndex> = Arc::downgrade(index);
    let agent = agent.to_string();
    tokio::spawn(async move {
        let mut grown: HashMap<String, Grown> = HashMap::new();
        let mut first = true;
        loop {
            let sync = if std::mem::take(&mut first) {
                true
            } else {
                match feed.recv().await {
                    Ok(change) => calls_for_sync(&change, &agent, thresholds, &mut grown),
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(agent = %agent, missed, "memory: the change feed lagged; syncing to be sure");
                        grown.clear();
                        true
                    }
                    Err(RecvError::Closed) => return,
                }
            };
            if !sync {
                continue;
            }
            let Some(index) = weak.upgrade() else { return };
            match index.sync(false, &|_| {}).await {
                Ok(r) if r.sessions_indexed + r.sessions_removed > 0 => {
                    tracing::debug!(agent = %agent, indexed = r.sessions_indexed, removed = r.sessions_removed, "memory: conversations indexed")
                }
                Ok(r) if r.sessions_error.is_some() => {
                    tracing::warn!(agent = %agent, error = ?r.sessions_error, "memory: conversations could not be indexed")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(agent = %agent, error = %e, "memory sync failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use clawline_core::message::{UserContent, UserMessage};
    use clawline_core::transcript::MessageRecord;
    use clawline_store::{Appended, StoredRecord};

    use super::*;

    fn appended(agent: &str, session: &str, n: usize) -> Change {
        let records = (0..n)
            .map(|i| StoredRecord {
                seq: i as i64,
                record: Record::Message(MessageRecord {
                    id: format!("r{i}"),
                    parent_id: None,
                    timestamp: "2026-12-01T10:00:00.000Z".into(),
                    message: Message::User(UserMessage {
                        content: UserContent::Text("hello there".into()),
                        timestamp: 0,
                        idempotency_key: None,
                    }),
                }),
            })
            .collect();
        Change::Appended(Appended {
            session_key: "k".into(),
            session_id: session.into(),
            agent_id: agent.into(),
            records,
        })
    }

    #[test]
    fn syncs_on_thresholds_resets_and_deletions_of_this_agent_only() {
        let t = DeltaThresholds { bytes: 100_000, messages: 3 };
        let mut g = HashMap::new();
        assert!(!calls_for_sync(&appended("main", "s1", 2), "main", t, &mut g));
        assert!(!calls_for_sync(&appended("main", "s2", 2), "main", t, &mut g), "counted per transcript");
        assert!(calls_for_sync(&appended("main", "s1", 1), "main", t, &mut g));
        assert!(!calls_for_sync(&appended("main", "s1", 1), "main", t, &mut g), "counting starts again");
        assert!(!calls_for_sync(&appended("other", "s9", 10), "main", t, &mut g));
        let bytes = DeltaThresholds { bytes: 200, messages: 1000 };
        assert!(calls_for_sync(&appended("main", "s3", 2), "main", bytes, &mut g), "two records are over 200 bytes");
        let reset = Change::Session { session_key: "k".into(), agent_id: "main".into(), change: SessionChange::Reset };
        assert!(calls_for_sync(&reset, "main", t, &mut g));
        assert!(!calls_for_sync(&reset, "other", t, &mut g));
        let patched =
            Change::Session { session_key: "k".into(), agent_id: "main".into(), change: SessionChange::Patched };
        assert!(!calls_for_sync(&patched, "main", t, &mut g));
    }
}
