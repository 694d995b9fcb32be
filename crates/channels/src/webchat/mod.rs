//! The web chat: the gateway's own page as a channel like the others.
//!
//! A page posts each message to the gateway, which hands it to [`WebChatChannel::post`]: it is
//! journaled (deduplicated by the page's message id) before the post is answered, then gated,
//! routed and answered by the same dispatcher as Telegram or Slack, and the reply goes through
//! the same outbound queue. "Sending" publishes an event to the pages listening to the
//! conversation ([`api::Hub`]); previews are a draft edited every 100 ms. There is nothing to
//! connect to, so the connection only holds the journal's link and reports itself alive; a
//! page that was away reads the session transcript when it returns.

pub mod api;
pub mod config;
pub mod inbound;
pub mod outbound;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clawline_core::config::channels::DeliverySettings;
use futures_util::future::BoxFuture;

use self::api::{Hub, PageEvent};
use self::inbound::PostError;
use crate::channel::{Capabilities, Channel, ConnectionError, SendError, Sent};
use crate::link::Link;
use crate::message::{InboundMessage, OutboundBody, Target};

/// What became of a posted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    /// The journal already had it (the page sent it twice).
    pub duplicate: bool,
}

/// The web chat's one account.
pub struct WebChatChannel {
    account_id: String,
    hub: Hub,
    link: Mutex<Option<Link>>,
    /// Message ids: unique per process start, and across starts by the start time.
    boot: String,
    seq: AtomicU64,
}

impl WebChatChannel {
    pub fn new(account_id: &str) -> WebChatChannel {
        WebChatChannel {
            account_id: account_id.to_string(),
            hub: Hub::default(),
            link: Mutex::new(None),
            boot: format!("{:x}", clawline_store::now_ms()),
            seq: AtomicU64::new(0),
        }
    }

    /// Where pages listen.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The message a post would journal (for routing it before it is posted).
    pub fn preview_message(&self, client_id: &str, text: &str) -> Result<InboundMessage, PostError> {
        inbound::message(&self.account_id, client_id, text, clawline_store::now_ms())
    }

    /// Journals a message from the page; returns once it is stored.
    pub async fn post(&self, client_id: &str, text: &str) -> Result<Posted, PostError> {
        let msg = self.preview_message(client_id, text)?;
        let link = self.link.lock().unwrap_or_else(|p| p.into_inner()).clone().ok_or(PostError::NotReady)?;
        let new = link.accept(vec![msg], None).await.map_err(|e| PostError::Store(e.to_string()))?;
        Ok(Posted { duplicate: new == 0 })
    }

    fn next_id(&self) -> String {
        format!("wc-{}-{}", self.boot, self.seq.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

impl Channel for WebChatChannel {
    fn channel(&self) -> &'static str {
        "webchat"
    }

    fn account_id(&self) -> &str {
        &self.account_id
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { edit: true, typing: true, ..Capabilities::default() }
    }

    fn stall_after(&self) -> Duration {
        config::ALIVE_EVERY * 4
    }

    fn mode(&self) -> &'static str {
        "in-process"
    }

    fn connect<'a>(&'a self, link: &'a Link) -> BoxFuture<'a, Result<(), ConnectionError>> {
        Box::pin(async move {
            link.health().set_identity("the gateway's web chat page".into());
            *self.link.lock().unwrap_or_else(|p| p.into_inner()) = Some(link.clone());
            loop {
                link.health().progress();
                tokio::time::sleep(config::ALIVE_EVERY).await;
            }
        })
    }

    fn prepare(&self, markdown: &str, delivery: &DeliverySettings) -> Vec<OutboundBody> {
        outbound::prepare(markdown, delivery)
    }

    fn send<'a>(
        &'a self,
        target: &'a Target,
        body: &'a OutboundBody,
        _idempotency_key: &'a str,
    ) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(async move {
            let id = self.next_id();
            self.hub.publish(&target.peer_id, outbound::message(&id, target, body));
            Ok(Sent { message_id: id })
        })
    }

    fn typing<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            self.hub.publish(&target.peer_id, PageEvent::Typing);
            Ok(())
        })
    }

    fn edit<'a>(
        &'a self,
        target: &'a Target,
        message_id: &'a str,
        body: &'a OutboundBody,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            self.hub.publish(&target.peer_id, outbound::edit(message_id, body));
            Ok(())
        })
    }

    fn react<'a>(
        &'a self,
        _target: &'a Target,
        _message_id: &'a str,
        _emoji: &'a str,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async { Err(SendError::Permanent("the web chat shows no reactions".into())) })
    }

    fn probe(&self) -> BoxFuture<'_, Result<serde_json::Value, SendError>> {
        Box::pin(async move { Ok(serde_json::json!({"listeningPages": self.hub.listeners()})) })
    }

    fn pace(&self, _target: &Target) -> (Duration, u32) {
        (Duration::ZERO, u32::MAX)
    }

    fn preview_every(&self) -> Duration {
        config::PREVIEW_EVERY
    }
}
