//! The change feed: what the store wrote, announced after the transaction committed.
//!
//! Subscribers (the gateway's event hub) turn these into `session.message` and
//! `sessions.changed` events. A change is published only after its commit, so a subscriber never
//! hears of something a crash could still undo. The feed is a bounded broadcast: a subscriber
//! that falls far behind misses changes (it is told how many) rather than slowing writers down;
//! the database stays the source of truth.

use clawline_core::transcript::Record;

/// A record as stored: its position in the transcript and the record itself.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    pub seq: i64,
    pub record: Record,
}

/// Records appended to one session in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    pub session_key: String,
    pub session_id: String,
    pub agent_id: String,
    pub records: Vec<StoredRecord>,
}

/// Why a session's row changed other than by an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionChange {
    Reset,
    Deleted,
    Patched,
}

impl SessionChange {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionChange::Reset => "reset",
            SessionChange::Deleted => "delete",
            SessionChange::Patched => "patch",
        }
    }
}

/// One committed change.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Appended(Appended),
    Session { session_key: String, agent_id: String, change: SessionChange },
}

/// How many changes a slow subscriber may lag behind before it misses some.
pub(crate) const FEED_CAPACITY: usize = 1024;
