//! The web chat's wire, in process: the events a page listening for its conversation
//! receives, and the hub that fans them out.
//!
//! The gateway's routes are the page's side (a POST for each message, a server-sent event
//! stream to listen); the adapter's sends, edits and typing are published here. The hub keeps
//! nothing: a page that was not listening reads the session's transcript when it comes back,
//! and a page that reads too slowly is told to reload instead of stalling the sender.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::broadcast;

use super::config::PAGE_BUFFER;

/// What a listening page is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum PageEvent {
    /// A new message from the assistant; `draft` while it is still being written.
    #[serde(rename_all = "camelCase")]
    Message { id: String, text: String, draft: bool, reply_to: Option<String> },
    /// A message's text changed (a draft grew, or became the answer).
    #[serde(rename_all = "camelCase")]
    Edit { id: String, text: String, draft: bool },
    /// The assistant is writing.
    Typing,
}

impl PageEvent {
    /// The event's name on the stream.
    pub fn name(&self) -> &'static str {
        match self {
            PageEvent::Message { .. } => "message",
            PageEvent::Edit { .. } => "edit",
            PageEvent::Typing => "typing",
        }
    }
}

/// Listening pages, by conversation (peer id).
#[derive(Default)]
pub struct Hub {
    pages: Mutex<HashMap<String, broadcast::Sender<PageEvent>>>,
}

impl Hub {
    /// Starts listening to a conversation.
    pub fn subscribe(&self, peer: &str) -> broadcast::Receiver<PageEvent> {
        let mut pages = self.pages.lock().unwrap_or_else(|p| p.into_inner());
        pages.entry(peer.to_string()).or_insert_with(|| broadcast::channel(PAGE_BUFFER).0).subscribe()
    }

    /// Tells every page listening to `peer`; returns how many were.
    pub fn publish(&self, peer: &str, event: PageEvent) -> usize {
        let mut pages = self.pages.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = pages.get(peer) else { return 0 };
        match tx.send(event) {
            Ok(n) => n,
            Err(_) => {
                pages.remove(peer);
                0
            }
        }
    }

    /// Pages listening now, over all conversations.
    pub fn listeners(&self) -> usize {
        let pages = self.pages.lock().unwrap_or_else(|p| p.into_inner());
        pages.values().map(|tx| tx.receiver_count()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_reach_only_their_conversation_and_serialize_for_the_page() {
        let hub = Hub::default();
        let mut a = hub.subscribe("a");
        let _b = hub.subscribe("b");
        assert_eq!(hub.publish("a", PageEvent::Typing), 1);
        assert_eq!(hub.publish("nobody", PageEvent::Typing), 0);
        assert_eq!(a.try_recv().unwrap(), PageEvent::Typing);
        let ev = PageEvent::Edit { id: "1".into(), text: "hi".into(), draft: true };
        assert_eq!(
            serde_json::to_value(&ev).unwrap(),
            serde_json::json!({"type": "edit", "id": "1", "text": "hi", "draft": true})
        );
        assert_eq!(hub.listeners(), 2);
        drop(a);
        assert_eq!(hub.listeners(), 1);
    }
}
