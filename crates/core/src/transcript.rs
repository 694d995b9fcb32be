//! Transcript records: the append-only log of a session, in OpenClaw's record shapes.
//!
//! A transcript starts with a `session` header, then `message` records (user, assistant,
//! toolResult) chained by `id`/`parentId`, and the occasional `custom_message` (shown to people,
//! e.g. "the run was interrupted") or `custom` (bookkeeping, never shown to the model). The store
//! assigns `id` and `parentId` when it appends; this module only defines the shapes.

use serde::{Deserialize, Serialize};

use crate::message::Message;

/// The transcript format version written in headers.
pub const TRANSCRIPT_VERSION: u32 = 4;

/// One line of a transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// The first record: which session this is and where it ran.
    Session(SessionHeader),
    Message(MessageRecord),
    CustomMessage(CustomMessageRecord),
    Custom(CustomRecord),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionHeader {
    pub version: u32,
    /// The session id (a UUID).
    pub id: String,
    /// RFC 3339 time the session started.
    pub timestamp: String,
    /// The agent's workspace directory.
    pub cwd: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageRecord {
    pub id: String,
    pub parent_id: Option<String>,
    pub timestamp: String,
    pub message: Message,
}

/// A note for people reading the session (not sent to the model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomMessageRecord {
    pub id: String,
    pub parent_id: Option<String>,
    pub timestamp: String,
    pub custom_type: String,
    pub content: String,
    pub display: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// Bookkeeping data (model snapshots and the like).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomRecord {
    pub id: String,
    pub parent_id: Option<String>,
    pub timestamp: String,
    pub custom_type: String,
    pub data: serde_json::Value,
}

/// A record before the store has given it an id and a parent: what callers append.
#[derive(Debug, Clone, PartialEq)]
pub enum NewRecord {
    Message(Message),
    CustomMessage { custom_type: String, content: String, details: Option<serde_json::Value> },
    Custom { custom_type: String, data: serde_json::Value },
}

impl NewRecord {
    /// Gives the record its identity and place in the chain.
    pub fn into_record(self, id: String, parent_id: Option<String>, timestamp: String) -> Record {
        match self {
            NewRecord::Message(message) => Record::Message(MessageRecord { id, parent_id, timestamp, message }),
            NewRecord::CustomMessage { custom_type, content, details } => Record::CustomMessage(CustomMessageRecord {
                id,
                parent_id,
                timestamp,
                custom_type,
                content,
                display: true,
                details,
            }),
            NewRecord::Custom { custom_type, data } => {
                Record::Custom(CustomRecord { id, parent_id, timestamp, custom_type, data })
            }
        }
    }
}

impl Record {
    /// The record's id (the header's id is the session id).
    pub fn id(&self) -> &str {
        match self {
            Record::Session(h) => &h.id,
            Record::Message(m) => &m.id,
            Record::CustomMessage(m) => &m.id,
            Record::Custom(c) => &c.id,
        }
    }

    /// The message, for message records.
    pub fn message(&self) -> Option<&Message> {
        match self {
            Record::Message(m) => Some(&m.message),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_openclaw_records() {
        let header: Record = serde_json::from_value(json!({
            "type": "session", "version": 4, "id": "6f1c", "timestamp": "2026-11-25T08:14:03.120Z", "cwd": "/w"
        }))
        .unwrap();
        assert!(matches!(header, Record::Session(ref h) if h.version == 4));

        let msg: Record = serde_json::from_value(json!({
            "type": "message", "id": "a1", "parentId": null, "timestamp": "2026-11-25T08:14:03.120Z",
            "message": {"role": "user", "content": "hi", "timestamp": 1}
        }))
        .unwrap();
        assert_eq!(msg.id(), "a1");
        assert!(msg.message().is_some());

        let custom: Record = serde_json::from_value(json!({
            "type": "custom_message", "id": "b", "parentId": "a1", "timestamp": "t",
            "customType": "run-interrupted", "content": "x", "display": true
        }))
        .unwrap();
        assert!(matches!(custom, Record::CustomMessage(_)));
        let v = serde_json::to_value(&custom).unwrap();
        assert_eq!(v["type"], "custom_message");
        assert_eq!(v["customType"], "run-interrupted");
    }
}
