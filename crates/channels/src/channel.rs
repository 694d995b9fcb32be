//! The interface every platform adapter implements.
//!
//! An adapter owns one account's connection to its platform: [`Channel::connect`] runs one
//! connection until it fails (the supervisor reconnects), handing each batch of messages to the
//! [`Link`](crate::link::Link) before telling the platform it has them, and reporting progress
//! so the watchdog can tell a live connection from a silent one. Sending is separate and
//! stateless per call, so the outbound queue can retry any row. An adapter never decides who
//! may talk, which agent answers, or what the answer is.

use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::link::Link;
use crate::message::{Attachment, OutboundBody, Target};

/// What a platform can do; the dispatcher and status output read it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    pub edit: bool,
    pub react: bool,
    pub typing: bool,
    pub threads: bool,
    pub buttons: bool,
    pub media: bool,
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    /// Worth retrying soon (network, 5xx, a malformed answer, a conflict).
    #[error("{0}")]
    Transient(String),
    /// The platform asked us to wait this long first.
    #[error("{message}")]
    RateLimited { message: String, retry_after: Duration },
    /// Will not fix itself (a refused token): retried rarely, reported as failed.
    #[error("{0}")]
    Fatal(String),
}

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Try again after this long.
    #[error("rate limited: retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    /// Try again later (network, 5xx, timeouts).
    #[error("{0}")]
    Transient(String),
    /// Retrying the same request cannot work (blocked by the user, chat gone, refused content).
    #[error("{0}")]
    Permanent(String),
    /// The chat moved (a Telegram group upgraded to a supergroup): send to this peer instead.
    #[error("the chat moved to {0}")]
    Moved(String),
}

/// The answer to a webhook request: a status, and a body when the platform wants one (Slack's
/// `url_verification` challenge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookReply {
    pub status: u16,
    pub body: Option<String>,
}

impl From<u16> for WebhookReply {
    fn from(status: u16) -> WebhookReply {
        WebhookReply { status, body: None }
    }
}

/// A message the platform accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The platform's id for it (used to edit or react later).
    pub message_id: String,
}

/// One account of one platform.
pub trait Channel: Send + Sync + 'static {
    /// The platform's id (`telegram`).
    fn channel(&self) -> &'static str;
    fn account_id(&self) -> &str;
    fn capabilities(&self) -> Capabilities;
    /// How long a healthy connection may go without reporting progress before the watchdog
    /// replaces it (a long poll's timeout plus a margin, a heartbeat interval plus a margin).
    fn stall_after(&self) -> Duration;
    /// `polling`, `webhook`, `gateway` (a platform WebSocket), …, for status output.
    fn mode(&self) -> &'static str;
    /// Runs one connection until it ends. Cancel-safe: the supervisor drops the future to
    /// replace a stalled connection.
    fn connect<'a>(&'a self, link: &'a Link) -> BoxFuture<'a, Result<(), ConnectionError>>;
    /// Cuts and formats a reply for the platform.
    fn prepare(
        &self,
        markdown: &str,
        delivery: &clawline_core::config::channels::DeliverySettings,
    ) -> Vec<OutboundBody>;
    /// Sends one queued message. `idempotency_key` is the queue row's (platforms that dedupe
    /// on a client key get it).
    fn send<'a>(
        &'a self,
        target: &'a Target,
        body: &'a OutboundBody,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, Result<Sent, SendError>>;
    /// Looks for a message this account sent with `idempotency_key` since `since_ms` (Unix ms),
    /// for a row whose earlier attempt never got an answer (a crash, a cut connection).
    /// `Ok(None)` when it is not there, or when the platform cannot tell (then the row is sent
    /// again: at least once). Platforms that drop a repeated key themselves need not look.
    fn find_sent<'a>(
        &'a self,
        _target: &'a Target,
        _idempotency_key: &'a str,
        _since_ms: i64,
    ) -> BoxFuture<'a, Result<Option<Sent>, SendError>> {
        Box::pin(async { Ok(None) })
    }
    /// Shows "typing…" in the chat for a few seconds.
    fn typing<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<(), SendError>>;
    /// Replaces the text of a message sent before.
    fn edit<'a>(
        &'a self,
        target: &'a Target,
        message_id: &'a str,
        body: &'a OutboundBody,
    ) -> BoxFuture<'a, Result<(), SendError>>;
    /// Reacts to a message with an emoji.
    fn react<'a>(
        &'a self,
        target: &'a Target,
        message_id: &'a str,
        emoji: &'a str,
    ) -> BoxFuture<'a, Result<(), SendError>>;
    /// Checks the credentials and the API, answering what the platform says about the account.
    fn probe(&self) -> BoxFuture<'_, Result<serde_json::Value, SendError>>;
    /// The minimum gap between two sends to one chat, and how many may go at once before it applies.
    fn pace(&self, target: &Target) -> (Duration, u32);
    /// Downloads a file that came with a message, refusing more than `max_bytes`.
    fn fetch<'a>(&'a self, _attachment: &'a Attachment, _max_bytes: u64) -> BoxFuture<'a, Result<Vec<u8>, SendError>> {
        Box::pin(async { Err(SendError::Permanent("files from this platform are not downloaded yet".into())) })
    }
    /// The minimum gap between two edits of a preview (draft) message.
    fn preview_every(&self) -> Duration {
        Duration::from_millis(1500)
    }
    /// A webhook request for this account: checks it, hands its messages to `link`, and answers
    /// what to send back. `None` when the account takes no webhooks.
    fn webhook<'a>(
        &'a self,
        _link: &'a Link,
        _headers: &'a http::HeaderMap,
        _body: &'a [u8],
    ) -> Option<BoxFuture<'a, WebhookReply>> {
        None
    }
    /// Forgets what the adapter holds in memory about its platform session (a resumable
    /// session, a login), after `channels.logout` cleared the stored one.
    fn forget_session(&self) {}
    /// The local path its webhook is served on, if it has one.
    fn webhook_path(&self) -> Option<&str> {
        None
    }
}
