//! Slack events → normalized inbound messages.
//!
//! `message` events in an IM are direct conversations; in channels, groups and multi-person
//! IMs they are channel conversations (kind `channel`, so sessions read
//! `…:slack:channel:<id>`), and a `thread_ts` other than the message's own makes it a thread.
//! The same message arrives as `app_mention` and `message`; both map to the platform id
//! `<channel>:<ts>`, so the journal keeps one. Messages with a subtype (edits, joins, bot
//! messages) or from a bot are not answered. Pure: no I/O.

use clawline_core::routing::{PeerKind, ThreadKind};

use crate::message::{InboundMessage, Sender};

/// The message in an Events API `event`, if clawline answers it.
pub fn to_inbound(
    event: &serde_json::Value,
    team: Option<&str>,
    account_id: &str,
    bot_user: &str,
) -> Option<InboundMessage> {
    let kind = event["type"].as_str()?;
    if kind != "message" && kind != "app_mention" {
        return None;
    }
    if event.get("subtype").is_some_and(|s| !s.is_null()) || event.get("bot_id").is_some_and(|b| !b.is_null()) {
        return None;
    }
    let user = event["user"].as_str()?;
    if user == bot_user {
        return None;
    }
    let channel = event["channel"].as_str()?;
    let ts = event["ts"].as_str()?;
    let text = event["text"].as_str().unwrap_or_default().to_string();
    let direct = event["channel_type"].as_str() == Some("im") || (channel.starts_with('D') && kind == "message");
    let thread = event["thread_ts"].as_str().filter(|t| *t != ts).map(|t| (ThreadKind::Thread, t.to_string()));
    let mentioned = kind == "app_mention" || text.contains(&format!("<@{bot_user}>"));
    let seconds = ts.split('.').next().and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
    Some(InboundMessage {
        channel: "slack".into(),
        account_id: account_id.to_string(),
        platform_id: format!("{channel}:{ts}"),
        message_id: ts.to_string(),
        sender: Sender { id: user.to_string(), name: user.to_string(), username: None, is_bot: false },
        peer_kind: if direct { PeerKind::Direct } else { PeerKind::Channel },
        peer_id: channel.to_string(),
        thread,
        parent: None,
        guild_id: None,
        team_id: team.map(str::to_string),
        roles: Vec::new(),
        mentioned: !direct && mentioned,
        text,
        attachments: Vec::new(),
        reply_to: None,
        button: None,
        timestamp_ms: seconds.saturating_mul(1000),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ims_channels_threads_and_mentions() {
        let dm = to_inbound(&json!({"type": "message", "channel": "D1", "channel_type": "im", "user": "U1", "text": "hi", "ts": "1700.1"}), Some("T1"), "default", "UBOT").unwrap();
        assert_eq!((dm.peer_kind, dm.peer_id.as_str(), dm.platform_id.as_str()), (PeerKind::Direct, "D1", "D1:1700.1"));
        let m = to_inbound(&json!({"type": "app_mention", "channel": "C1", "user": "U1", "text": "<@UBOT> help", "ts": "1700.2", "thread_ts": "1700.0"}), Some("T1"), "default", "UBOT").unwrap();
        assert_eq!((m.peer_kind, m.mentioned), (PeerKind::Channel, true));
        assert_eq!(m.thread, Some((ThreadKind::Thread, "1700.0".into())));
        assert_eq!(m.team_id.as_deref(), Some("T1"));
        let same = to_inbound(&json!({"type": "message", "channel": "C1", "channel_type": "channel", "user": "U1", "text": "<@UBOT> help", "ts": "1700.2"}), None, "default", "UBOT").unwrap();
        assert_eq!(same.platform_id, m.platform_id, "the mention and the message are one journal row");
        let root = to_inbound(&json!({"type": "message", "channel": "C1", "user": "U1", "text": "x", "ts": "1700.3", "thread_ts": "1700.3"}), None, "default", "UBOT").unwrap();
        assert!(root.thread.is_none(), "a thread's root is not in the thread");
    }

    #[test]
    fn edits_bots_and_ourselves_are_not_answered() {
        let none = |v| to_inbound(&v, None, "default", "UBOT");
        assert!(none(json!({"type": "message", "subtype": "message_changed", "channel": "C1", "ts": "1"})).is_none());
        assert!(
            none(json!({"type": "message", "bot_id": "B1", "user": "U9", "channel": "C1", "text": "x", "ts": "1"}))
                .is_none()
        );
        assert!(none(json!({"type": "message", "user": "UBOT", "channel": "C1", "text": "x", "ts": "1"})).is_none());
        assert!(none(json!({"type": "reaction_added", "user": "U1"})).is_none());
        assert!(none(json!({"type": "message", "channel": "C1", "text": "no user", "ts": "1"})).is_none());
    }
}
