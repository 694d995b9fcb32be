//! Discord `MESSAGE_CREATE` dispatches → normalized inbound messages.
//!
//! A message without `guild_id` is a DM; in a guild it is a channel conversation carrying the
//! guild and the author's roles (for `bindings[]`). The assistant is mentioned when `mentions`
//! names the bot, the content has `<@id>`/`<@!id>`, or the message replies to one of the bot's.
//! Bots' messages (the bot's own included) and webhook/system messages are not answered.
//! Pure: no I/O.

use clawline_core::routing::PeerKind;

use crate::message::{Attachment, InboundMessage, ReplyRef, Sender};

/// The message in a `MESSAGE_CREATE`'s `d`, if clawline answers it.
pub fn to_inbound(d: &serde_json::Value, account_id: &str, bot_id: &str) -> Option<InboundMessage> {
    let id = d["id"].as_str()?;
    let channel = d["channel_id"].as_str()?;
    let author = &d["author"];
    let author_id = author["id"].as_str()?;
    if author["bot"] == true || author_id == bot_id || d.get("webhook_id").is_some_and(|w| !w.is_null()) {
        return None;
    }
    // 0 is a normal message, 19 a reply; the rest are joins, pins and other system messages.
    if !matches!(d["type"].as_i64().unwrap_or(0), 0 | 19) {
        return None;
    }
    let content = d["content"].as_str().unwrap_or_default().to_string();
    let attachments: Vec<Attachment> = d["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| Attachment {
            kind: super::outbound::kind_of_mime(a["content_type"].as_str()).into(),
            file_id: a["url"].as_str().unwrap_or_default().to_string(),
            name: a["filename"].as_str().map(str::to_string),
            mime: a["content_type"].as_str().map(str::to_string),
            size: a["size"].as_u64(),
        })
        .collect();
    if content.trim().is_empty() && attachments.is_empty() {
        return None;
    }
    let guild = d["guild_id"].as_str().map(str::to_string);
    let mentioned = d["mentions"].as_array().is_some_and(|m| m.iter().any(|u| u["id"].as_str() == Some(bot_id)))
        || content.contains(&format!("<@{bot_id}>"))
        || content.contains(&format!("<@!{bot_id}>"));
    let reply_to = d["referenced_message"].as_object().map(|r| ReplyRef {
        message_id: r.get("id").and_then(|v| v.as_str()).unwrap_or_default().to_string(),
        to_assistant: r.get("author").and_then(|a| a.get("id")).and_then(|v| v.as_str()) == Some(bot_id),
        text: r.get("content").and_then(|v| v.as_str()).map(str::to_string),
    });
    let name = author["global_name"].as_str().or(author["username"].as_str()).unwrap_or(author_id).to_string();
    let roles =
        d["member"]["roles"].as_array().into_iter().flatten().filter_map(|r| r.as_str().map(str::to_string)).collect();
    Some(InboundMessage {
        channel: "discord".into(),
        account_id: account_id.to_string(),
        platform_id: id.to_string(),
        message_id: id.to_string(),
        sender: Sender {
            id: author_id.to_string(),
            name,
            username: author["username"].as_str().map(str::to_string),
            is_bot: false,
        },
        peer_kind: if guild.is_some() { PeerKind::Channel } else { PeerKind::Direct },
        peer_id: channel.to_string(),
        thread: None,
        parent: None,
        guild_id: guild.clone(),
        team_id: None,
        roles,
        mentioned: guild.is_some() && mentioned,
        text: content,
        attachments,
        reply_to,
        button: None,
        timestamp_ms: clawline_store::now_ms(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dms_guild_messages_mentions_and_what_is_ignored() {
        let dm = to_inbound(
            &json!({"id": "10", "channel_id": "20", "type": 0, "content": "hi",
            "author": {"id": "30", "username": "ada"}}),
            "default",
            "99",
        )
        .unwrap();
        assert_eq!((dm.peer_kind, dm.peer_id.as_str(), dm.sender.id.as_str()), (PeerKind::Direct, "20", "30"));
        let g = to_inbound(
            &json!({"id": "11", "channel_id": "21", "guild_id": "40", "type": 0, "content": "<@99> help",
            "author": {"id": "30", "username": "ada", "global_name": "Ada"}, "member": {"roles": ["7"]},
            "mentions": [{"id": "99"}]}),
            "default",
            "99",
        )
        .unwrap();
        assert_eq!((g.peer_kind, g.guild_id.as_deref(), g.mentioned), (PeerKind::Channel, Some("40"), true));
        assert_eq!((g.roles.clone(), g.sender.name.as_str()), (vec!["7".to_string()], "Ada"));
        let none = |v| to_inbound(&v, "default", "99");
        assert!(
            none(json!({"id": "1", "channel_id": "2", "content": "x", "author": {"id": "5", "bot": true}})).is_none()
        );
        assert!(none(json!({"id": "1", "channel_id": "2", "content": "x", "author": {"id": "99"}})).is_none());
        assert!(none(json!({"id": "1", "channel_id": "2", "type": 7, "content": "", "author": {"id": "5"}})).is_none());
        assert!(none(json!({"id": "1", "channel_id": "2", "content": "", "author": {"id": "5"}})).is_none());
    }
}
