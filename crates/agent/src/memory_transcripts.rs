//! An agent's past conversations as the memory index reads them (`memory.search.sources:
//! ["sessions"]`): listed with their sizes from the state database, and rendered as plain text,
//! one message after another with who said it and when.
//!
//! Only what the person and the assistant said is memory; tool calls, tool results, thinking
//! and notes are left out. Rendering only ever adds lines at the end as a conversation grows,
//! so chunks already indexed keep their line numbers and vectors.
//!
//! This file reads the store; it must not write to it or to the index.

use clawline_core::message::Message;
use clawline_core::time::iso8601_from_ms;
use clawline_core::transcript::Record;
use clawline_memory::transcripts::{DigestsFuture, RenderFuture, TranscriptDigest, Transcripts};
use clawline_store::Store;

/// One agent's transcripts in the state database.
pub struct StoreTranscripts {
    store: Store,
    agent_id: String,
}

impl StoreTranscripts {
    pub fn new(store: Store, agent_id: &str) -> StoreTranscripts {
        StoreTranscripts { store, agent_id: agent_id.to_string() }
    }
}

impl Transcripts for StoreTranscripts {
    fn digests(&self) -> DigestsFuture<'_> {
        Box::pin(async move {
            let found = self.store.transcript_digests(&self.agent_id).await.map_err(|e| e.to_string())?;
            Ok(found
                .into_iter()
                .map(|d| TranscriptDigest {
                    id: d.session_id,
                    messages: d.messages,
                    bytes: d.bytes,
                    current: d.current,
                })
                .collect())
        })
    }

    fn render<'a>(&'a self, id: &'a str) -> RenderFuture<'a> {
        Box::pin(async move {
            let records = self.store.transcript(id).await.map_err(|e| e.to_string())?;
            Ok((!records.is_empty()).then(|| render(&records)))
        })
    }
}

/// `2026-12-01 10:00` for a Unix-millisecond time.
fn minute(ms: i64) -> String {
    let iso = iso8601_from_ms(ms);
    iso.get(..16).unwrap_or(&iso).replace('T', " ")
}

/// A transcript as text: a title line, then each message as `Who (time): text`, a blank line
/// after each.
pub fn render(records: &[Record]) -> String {
    let mut out = String::new();
    for record in records {
        match record {
            Record::Session(h) => {
                out.push_str(&format!("# Conversation started {}\n\n", h.timestamp));
            }
            Record::Message(m) => {
                let (who, text, at) = match &m.message {
                    Message::User(u) => ("User", u.content.text(), u.timestamp),
                    Message::Assistant(a) => ("Assistant", a.text(), a.timestamp),
                    Message::ToolResult(_) => continue,
                };
                let text = text.trim_end();
                if text.trim().is_empty() {
                    continue;
                }
                out.push_str(&format!("{who} ({}): {text}\n\n", minute(at)));
            }
            Record::CustomMessage(_) | Record::Custom(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use clawline_core::message::{UserContent, UserMessage};
    use clawline_core::transcript::{MessageRecord, SessionHeader};

    use super::*;

    fn user(text: &str, at: i64) -> Record {
        Record::Message(MessageRecord {
            id: format!("m{at}"),
            parent_id: None,
            timestamp: iso8601_from_ms(at),
            message: Message::User(UserMessage {
                content: UserContent::Text(text.into()),
                timestamp: at,
                idempotency_key: None,
            }),
        })
    }

    #[test]
    fn rendering_grows_only_at_the_end() {
        let header = Record::Session(SessionHeader {
            version: 3,
            id: "s".into(),
            timestamp: "2026-12-01T10:00:00.000Z".into(),
            cwd: "/w".into(),
        });
        let mut records = vec![header, user("first line\nsecond line", 1_764_583_200_000)];
        let before = render(&records);
        assert!(before.starts_with("# Conversation started 2026-12-01T10:00:00.000Z\n\n"), "{before}");
        assert!(before.contains("User (2025-12-01 10:00): first line\nsecond line\n\n"), "{before}");
        records.push(user("   ", 1_764_583_260_000));
        records.push(user("later", 1_764_583_320_000));
        let after = render(&records);
        assert!(after.starts_with(&before), "earlier lines keep their numbers");
        assert!(after.ends_with("User (2025-12-01 10:02): later\n\n"), "{after}");
    }
}
