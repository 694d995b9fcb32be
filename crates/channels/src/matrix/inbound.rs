//! Matrix timeline events → normalized inbound messages.
//!
//! A room is a direct conversation when the account's `m.direct` data lists it or the invite
//! the account accepted was marked `is_direct`; otherwise it is a group. Only `m.room.message` events of kind text or emote are
//! answered: notices are what bots send (answering them lets two bots loop), our own events
//! are ours, and encrypted events cannot be read (the adapter reports those rooms). A thread
//! (`rel_type: m.thread`) is the conversation's thread, so its replies stay in it. The
//! assistant is mentioned when `m.mentions` names it or the body contains its user id or
//! localpart. Pure: no I/O.

use clawline_core::routing::{PeerKind, ThreadKind};

use super::api::Event;
use crate::message::{Attachment, InboundMessage, ReplyRef, Sender};

/// Who the account is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Me {
    pub user_id: String,
}

impl Me {
    fn localpart(&self) -> &str {
        self.user_id.trim_start_matches('@').split(':').next().unwrap_or_default()
    }
}

fn mentions(event: &Event, body: &str, me: &Me) -> bool {
    let listed = event.content["m.mentions"]["user_ids"]
        .as_array()
        .is_some_and(|ids| ids.iter().any(|i| i.as_str() == Some(me.user_id.as_str())));
    let lower = body.to_lowercase();
    listed
        || lower.contains(&me.user_id.to_lowercase())
        || lower
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '.'))
            .any(|w| !w.is_empty() && w == me.localpart().to_lowercase())
}

/// The message in `event` (in `room`), if clawline answers it.
pub fn to_inbound(event: &Event, room: &str, direct: bool, account_id: &str, me: &Me) -> Option<InboundMessage> {
    if event.kind != "m.room.message" || event.sender == me.user_id || event.sender.is_empty() {
        return None;
    }
    let event_id = event.event_id.clone()?;
    let c = &event.content;
    let msgtype = c["msgtype"].as_str()?;
    let body = c["body"].as_str().unwrap_or_default();
    let mut attachments = Vec::new();
    let text = match msgtype {
        "m.text" => body.to_string(),
        "m.emote" => format!("* {body}"),
        "m.image" | "m.file" | "m.audio" | "m.video" => {
            attachments.push(Attachment {
                kind: msgtype.trim_start_matches("m.").to_string(),
                file_id: c["url"].as_str().unwrap_or_default().to_string(),
                name: Some(body.to_string()),
                mime: c["info"]["mimetype"].as_str().map(str::to_string),
                size: c["info"]["size"].as_u64(),
            });
            String::new()
        }
        _ => return None,
    };
    // An edit (`m.replace`) is not a new message.
    let rel = &c["m.relates_to"];
    if rel["rel_type"] == "m.replace" {
        return None;
    }
    let thread = (rel["rel_type"] == "m.thread")
        .then(|| rel["event_id"].as_str().map(|r| (ThreadKind::Thread, r.to_string())))
        .flatten();
    let reply_to = rel["m.in_reply_to"]["event_id"]
        .as_str()
        .filter(|_| rel["is_falling_back"] != true)
        .map(|r| ReplyRef { message_id: r.to_string(), to_assistant: false, text: None });
    let localpart = event.sender.trim_start_matches('@').split(':').next().unwrap_or(&event.sender).to_string();
    Some(InboundMessage {
        channel: "matrix".into(),
        account_id: account_id.to_string(),
        platform_id: event_id.clone(),
        message_id: event_id,
        sender: Sender {
            id: event.sender.clone(),
            name: localpart,
            username: Some(event.sender.clone()),
            is_bot: false,
        },
        peer_kind: if direct { PeerKind::Direct } else { PeerKind::Group },
        peer_id: room.to_string(),
        thread,
        parent: None,
        guild_id: None,
        team_id: None,
        roles: Vec::new(),
        mentioned: !direct && mentions(event, body, me),
        text,
        attachments,
        reply_to,
        button: None,
        timestamp_ms: event.origin_server_ts.unwrap_or_else(clawline_store::now_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(v: serde_json::Value) -> Event {
        serde_json::from_value(v).unwrap()
    }

    fn me() -> Me {
        Me { user_id: "@claw:example.org".into() }
    }

    #[test]
    fn texts_threads_and_mentions() {
        let e = ev(serde_json::json!({"type": "m.room.message", "event_id": "$1", "sender": "@ada:example.org",
            "origin_server_ts": 5, "content": {"msgtype": "m.text", "body": "claw: status?",
            "m.relates_to": {"rel_type": "m.thread", "event_id": "$root", "is_falling_back": true, "m.in_reply_to": {"event_id": "$0"}}}}));
        let m = to_inbound(&e, "!room:example.org", false, "default", &me()).unwrap();
        assert_eq!(
            (m.peer_kind, m.peer_id.as_str(), m.platform_id.as_str()),
            (PeerKind::Group, "!room:example.org", "$1")
        );
        assert_eq!(m.thread, Some((ThreadKind::Thread, "$root".into())));
        assert!(m.reply_to.is_none(), "a thread's fallback reply is not a reply");
        assert!(m.mentioned);
        let listed = ev(serde_json::json!({"type": "m.room.message", "event_id": "$2", "sender": "@ada:example.org",
            "content": {"msgtype": "m.text", "body": "hey you", "m.mentions": {"user_ids": ["@claw:example.org"]}}}));
        assert!(to_inbound(&listed, "!r:x", false, "default", &me()).unwrap().mentioned);
        let dm = to_inbound(&listed, "!r:x", true, "default", &me()).unwrap();
        assert_eq!(dm.peer_kind, PeerKind::Direct);
    }

    #[test]
    fn notices_own_events_edits_and_encrypted_events_are_not_answered() {
        let none = |v: serde_json::Value| to_inbound(&ev(v), "!r:x", true, "default", &me());
        assert!(
            none(serde_json::json!({"type": "m.room.message", "event_id": "$1", "sender": "@bot:x",
            "content": {"msgtype": "m.notice", "body": "beep"}}))
            .is_none()
        );
        assert!(
            none(serde_json::json!({"type": "m.room.message", "event_id": "$1", "sender": "@claw:example.org",
            "content": {"msgtype": "m.text", "body": "mine"}}))
            .is_none()
        );
        assert!(none(serde_json::json!({"type": "m.room.message", "event_id": "$1", "sender": "@a:x",
            "content": {"msgtype": "m.text", "body": "* fixed", "m.relates_to": {"rel_type": "m.replace", "event_id": "$0"}}})).is_none());
        assert!(
            none(serde_json::json!({"type": "m.room.encrypted", "event_id": "$1", "sender": "@a:x", "content": {}}))
                .is_none()
        );
        assert!(
            none(serde_json::json!({"type": "m.room.message", "sender": "@a:x", "content": {"msgtype": "m.text"}}))
                .is_none()
        );
    }
}
