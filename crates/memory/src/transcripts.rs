//! Past conversations as a memory source (`memory.search.sources: ["sessions"]`): what the
//! index needs from whoever keeps the transcripts, and when a transcript is indexed again.
//!
//! The index does not read the sessions database; the agent gives it a [`Transcripts`] that
//! lists the agent's transcripts with their size ([`TranscriptDigest`]) and renders one as
//! text, one message after another, so lines already written keep their numbers as the
//! conversation grows. A transcript is indexed when it is first seen and again once it has
//! grown by [`DeltaThresholds`] (100,000 bytes or 50 messages by default, as OpenClaw does),
//! so a long chat is not re-chunked after every message; a transcript that is no longer the
//! session's current one (after `/new`) is indexed once more if it changed, so its end is
//! never left out. A transcript that is gone (its session deleted) loses its chunks.
//!
//! This file decides and names; it must not touch SQLite or the network.

use std::future::Future;
use std::pin::Pin;

/// The source name of transcripts in the index.
pub const SESSIONS: &str = "sessions";

/// One transcript as its keeper sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptDigest {
    /// The session id (a UUID); the index calls it [`path_of`] this.
    pub id: String,
    /// Messages from the person and the assistant (tool traffic does not count).
    pub messages: u64,
    /// Bytes of those messages as stored.
    pub bytes: u64,
    /// Whether the transcript is its session's current one (it may still grow).
    pub current: bool,
}

/// What was indexed of a transcript last time: its bytes and messages then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Indexed {
    pub bytes: u64,
    pub messages: u64,
}

/// How much a transcript must grow before it is indexed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaThresholds {
    pub bytes: u64,
    pub messages: u64,
}

impl Default for DeltaThresholds {
    fn default() -> Self {
        DeltaThresholds { bytes: 100_000, messages: 50 }
    }
}

pub type DigestsFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<TranscriptDigest>, String>> + Send + 'a>>;
pub type RenderFuture<'a> = Pin<Box<dyn Future<Output = Result<Option<String>, String>> + Send + 'a>>;

/// Whoever keeps an agent's transcripts.
pub trait Transcripts: Send + Sync {
    /// Every transcript of the agent with at least one message.
    fn digests(&self) -> DigestsFuture<'_>;
    /// The transcript `id` as text (`None` when it is gone). Appending messages must only add
    /// lines at the end.
    fn render<'a>(&'a self, id: &'a str) -> RenderFuture<'a>;
}

/// The name a transcript has in the index and in `memory_get`.
pub fn path_of(id: &str) -> String {
    format!("{SESSIONS}/{id}")
}

/// The session id in a transcript's index name, if it is one.
pub fn id_of(path: &str) -> Option<&str> {
    path.strip_prefix(SESSIONS).and_then(|p| p.strip_prefix('/')).filter(|id| !id.is_empty() && !id.contains('/'))
}

/// Whether `now` should be (re)indexed, given what was indexed of it before.
pub fn due(before: Option<Indexed>, now: &TranscriptDigest, t: DeltaThresholds, force: bool) -> bool {
    let Some(before) = before else { return now.messages > 0 };
    if force {
        return true;
    }
    if before.bytes == now.bytes && before.messages == now.messages {
        return false;
    }
    if !now.current {
        // Finished: index its end once, however small.
        return true;
    }
    // Shrunk (rewritten) or grown past a threshold.
    now.bytes < before.bytes
        || now.messages < before.messages
        || now.bytes - before.bytes >= t.bytes
        || now.messages - before.messages >= t.messages
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(messages: u64, bytes: u64, current: bool) -> TranscriptDigest {
        TranscriptDigest { id: "s".into(), messages, bytes, current }
    }

    #[test]
    fn new_transcripts_are_indexed_once_they_have_messages() {
        let t = DeltaThresholds::default();
        assert!(due(None, &digest(1, 10, true), t, false));
        assert!(!due(None, &digest(0, 0, true), t, false));
    }

    #[test]
    fn a_current_transcript_waits_for_a_delta() {
        let t = DeltaThresholds { bytes: 1000, messages: 5 };
        let before = Some(Indexed { bytes: 500, messages: 4 });
        assert!(!due(before, &digest(4, 500, true), t, false), "unchanged");
        assert!(!due(before, &digest(8, 1400, true), t, false), "below both thresholds");
        assert!(due(before, &digest(9, 600, true), t, false), "five more messages");
        assert!(due(before, &digest(5, 1500, true), t, false), "a thousand more bytes");
        assert!(due(before, &digest(2, 100, true), t, false), "shrunk");
        assert!(due(before, &digest(4, 500, true), t, true), "forced");
    }

    #[test]
    fn a_finished_transcript_is_indexed_to_its_end() {
        let t = DeltaThresholds::default();
        let before = Some(Indexed { bytes: 500, messages: 4 });
        assert!(due(before, &digest(5, 600, false), t, false));
        assert!(!due(before, &digest(4, 500, false), t, false));
    }

    #[test]
    fn paths_name_sessions() {
        assert_eq!(path_of("abc"), "sessions/abc");
        assert_eq!(id_of("sessions/abc"), Some("abc"));
        assert_eq!(id_of("sessions/"), None);
        assert_eq!(id_of("sessions/a/b"), None);
        assert_eq!(id_of("memory/x.md"), None);
    }
}
