//! The one thing the channel layer asks of the rest of the gateway: answer this text in this
//! session. The gateway implements it with the agent runtime; tests implement it with a script.
//!
//! The idempotency key names the attempt, so asking again after a restart finds the run that
//! was started before instead of starting a second one. While it writes, the responder may
//! report the answer's text so far through [`Progress`]; the dispatcher turns that into a
//! preview on platforms that can edit messages. Reporting never blocks and may be skipped.

use futures_util::future::BoxFuture;

/// A message to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// The platform the message came from (`telegram`, `webchat`, …).
    pub channel: String,
    pub agent_id: String,
    pub session_key: String,
    /// What the agent sees as the user's message (files that came with it are in `files`).
    pub text: String,
    /// Unique per journaled message and attempt.
    pub idempotency_key: String,
    /// Files that came with the message, downloaded.
    pub files: Vec<InboundFile>,
    /// The W3C `traceparent` of the span answering the message, when spans are exported: the
    /// run continues that trace.
    pub traceparent: Option<String>,
}

/// A file that came with a message.
#[derive(Clone, PartialEq, Eq)]
pub struct InboundFile {
    /// `photo`, `document`, `voice`, …
    pub kind: String,
    pub name: Option<String>,
    pub mime: Option<String>,
    pub bytes: Vec<u8>,
    /// Unique per message and file, safe in a file name: the same file gets the same name
    /// when a restart asks again.
    pub stem: String,
}

impl std::fmt::Debug for InboundFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundFile")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("mime", &self.mime)
            .field("bytes", &self.bytes.len())
            .field("stem", &self.stem)
            .finish()
    }
}

/// How the agent answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Markdown to send back.
    Text(String),
    /// Markdown and files to send back (the files after the text).
    WithMedia(String, Vec<crate::media::Media>),
    /// The agent chose not to answer (`NO_REPLY`, an empty turn).
    Silent,
    /// The run failed; a line for the person.
    Failed(String),
    /// The run was cut off by a restart: ask again with the next attempt's key.
    Interrupted,
}

/// Where a responder reports the answer's text so far. Cheap to clone; only the latest text
/// is kept, so a fast writer never waits for a slow platform.
#[derive(Clone, Default)]
pub struct Progress(Option<std::sync::Arc<tokio::sync::watch::Sender<String>>>);

impl Progress {
    /// A sink nobody reads (no previews for this answer).
    pub fn none() -> Progress {
        Progress(None)
    }

    /// A sink and the receiver that sees its latest text.
    pub fn channel() -> (Progress, tokio::sync::watch::Receiver<String>) {
        let (tx, rx) = tokio::sync::watch::channel(String::new());
        (Progress(Some(std::sync::Arc::new(tx))), rx)
    }

    /// Appends streamed answer text.
    pub fn push(&self, delta: &str) {
        if let Some(tx) = &self.0
            && !delta.is_empty()
        {
            tx.send_modify(|t| t.push_str(delta));
        }
    }
}

/// Answers messages.
pub trait Responder: Send + Sync + 'static {
    fn respond(&self, ask: Ask, progress: Progress) -> BoxFuture<'static, Reply>;
}

/// Whether an answer's text means "say nothing" (OpenClaw's silent tokens, or nothing at all).
pub fn is_silent(text: &str) -> bool {
    let t = text.trim();
    t.is_empty() || t == "NO_REPLY" || t == "HEARTBEAT_OK"
}
