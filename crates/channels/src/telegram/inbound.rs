//! Telegram updates → normalized inbound messages.
//!
//! Private chats are direct conversations with the sender; groups and supergroups are groups,
//! and a forum topic is a thread of kind `topic`. The assistant counts as mentioned when the
//! text has an `@username` mention of the bot, a `text_mention` of it, a `/command@bot`, or the
//! message replies to one of the bot's own. Captions count as text. A pressed inline button
//! (`callback_query`) is a message from the presser whose text is the button's data, replying
//! to the message the button was under. An update clawline has no use for (edits, member
//! changes, channel posts) maps to nothing, which still moves the offset on. Pure: no I/O.

use clawline_core::routing::{PeerKind, ThreadKind};

use super::api::{CallbackQuery, Entity, Message, Update, User};
use crate::message::{Attachment, ButtonPress, InboundMessage, ReplyRef, Sender};

/// Who the bot is, for mention detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotIdentity {
    pub id: i64,
    pub username: String,
}

fn sender(u: &User) -> Sender {
    let name = match &u.last_name {
        Some(last) if !last.is_empty() => format!("{} {last}", u.first_name),
        _ => u.first_name.clone(),
    };
    Sender { id: u.id.to_string(), name, username: u.username.clone(), is_bot: u.is_bot }
}

/// The entity's text, cut by UTF-16 offsets as Telegram counts them.
fn entity_text(text: &str, e: &Entity) -> Option<String> {
    let units: Vec<u16> = text.encode_utf16().collect();
    let end = e.offset.checked_add(e.length)?;
    let slice = units.get(e.offset..end)?;
    String::from_utf16(slice).ok()
}

fn mentions_bot(text: &str, entities: &[Entity], bot: &BotIdentity) -> bool {
    let handle = format!("@{}", bot.username.to_ascii_lowercase());
    entities.iter().any(|e| match e.kind.as_str() {
        "mention" => entity_text(text, e).is_some_and(|t| t.to_ascii_lowercase() == handle),
        "text_mention" => e.user.as_ref().is_some_and(|u| u.id == bot.id),
        "bot_command" => entity_text(text, e).is_some_and(|t| t.to_ascii_lowercase().ends_with(&handle)),
        _ => false,
    })
}

fn attachments(m: &Message) -> Vec<Attachment> {
    let mut out = Vec::new();
    // Telegram sends every size of a photo; the last is the largest.
    if let Some(p) = m.photo.last() {
        out.push(Attachment {
            kind: "photo".into(),
            file_id: p.file_id.clone(),
            name: None,
            mime: None,
            size: p.file_size,
        });
    }
    for (kind, f) in [
        ("document", &m.document),
        ("voice", &m.voice),
        ("audio", &m.audio),
        ("video", &m.video),
        ("sticker", &m.sticker),
    ] {
        if let Some(f) = f {
            out.push(Attachment {
                kind: kind.into(),
                file_id: f.file_id.clone(),
                name: f.file_name.clone(),
                mime: f.mime_type.clone(),
                size: f.file_size,
            });
        }
    }
    out
}

/// The label of the button carrying `data` in a message's inline keyboard.
fn button_label(markup: Option<&serde_json::Value>, data: &str) -> Option<String> {
    let rows = markup?.get("inline_keyboard")?.as_array()?;
    rows.iter()
        .filter_map(|r| r.as_array())
        .flatten()
        .find(|b| b.get("callback_data").and_then(|d| d.as_str()) == Some(data))
        .and_then(|b| b.get("text")?.as_str().map(String::from))
}

fn pressed(cb: &CallbackQuery, account_id: &str, bot: &BotIdentity) -> Option<InboundMessage> {
    let m = cb.message.as_ref()?;
    let data = cb.data.clone().filter(|d| !d.is_empty())?;
    let peer_kind = match m.chat.kind.as_str() {
        "private" => PeerKind::Direct,
        "group" | "supergroup" => PeerKind::Group,
        _ => return None,
    };
    let thread = match m.message_thread_id {
        Some(t) if m.is_topic_message && m.chat.is_forum => Some((ThreadKind::Topic, t.to_string())),
        _ => None,
    };
    Some(InboundMessage {
        channel: "telegram".into(),
        account_id: account_id.to_string(),
        platform_id: format!("cb:{}", cb.id),
        message_id: m.message_id.to_string(),
        sender: sender(&cb.from),
        peer_kind,
        peer_id: m.chat.id.to_string(),
        thread,
        parent: None,
        guild_id: None,
        team_id: None,
        roles: Vec::new(),
        // Pressing a button under the assistant's message addresses it.
        mentioned: m.from.as_ref().is_some_and(|u| u.id == bot.id),
        button: Some(ButtonPress { label: button_label(m.reply_markup.as_ref(), &data), data: data.clone() }),
        text: data,
        attachments: Vec::new(),
        reply_to: Some(ReplyRef {
            message_id: m.message_id.to_string(),
            to_assistant: m.from.as_ref().is_some_and(|u| u.id == bot.id),
            text: m.text.clone().or_else(|| m.caption.clone()),
        }),
        timestamp_ms: m.date.saturating_mul(1000),
    })
}

/// The normalized message in `update`, if it carries one clawline answers.
pub fn to_inbound(update: &Update, account_id: &str, bot: &BotIdentity) -> Option<InboundMessage> {
    if let Some(cb) = &update.callback_query {
        return pressed(cb, account_id, bot);
    }
    let m = update.message.as_ref()?;
    let from = m.from.as_ref()?;
    let peer_kind = match m.chat.kind.as_str() {
        "private" => PeerKind::Direct,
        "group" | "supergroup" => PeerKind::Group,
        _ => return None,
    };
    let (text, entities) = match (&m.text, &m.caption) {
        (Some(t), _) => (t.clone(), &m.entities),
        (None, Some(c)) => (c.clone(), &m.caption_entities),
        (None, None) => (String::new(), &m.entities),
    };
    let attachments = attachments(m);
    if text.trim().is_empty() && attachments.is_empty() {
        return None;
    }
    let thread = match m.message_thread_id {
        Some(t) if m.is_topic_message && m.chat.is_forum => Some((ThreadKind::Topic, t.to_string())),
        _ => None,
    };
    let reply_to = m.reply_to_message.as_ref().and_then(|r| {
        // In a forum, every message "replies" to its topic's opening message; that is not a reply.
        if thread.as_ref().is_some_and(|(_, t)| *t == r.message_id.to_string()) {
            return None;
        }
        Some(ReplyRef {
            message_id: r.message_id.to_string(),
            to_assistant: r.from.as_ref().is_some_and(|u| u.id == bot.id),
            text: r.text.clone().or_else(|| r.caption.clone()),
        })
    });
    Some(InboundMessage {
        channel: "telegram".into(),
        account_id: account_id.to_string(),
        platform_id: format!("{}:{}", m.chat.id, m.message_id),
        message_id: m.message_id.to_string(),
        sender: sender(from),
        peer_kind,
        peer_id: m.chat.id.to_string(),
        thread,
        parent: None,
        guild_id: None,
        team_id: None,
        roles: Vec::new(),
        mentioned: mentions_bot(&text, entities, bot),
        text,
        attachments,
        reply_to,
        button: None,
        timestamp_ms: m.date.saturating_mul(1000),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bot() -> BotIdentity {
        BotIdentity { id: 42, username: "claw_bot".into() }
    }

    fn update(v: serde_json::Value) -> Update {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_private_text_is_a_direct_message_from_its_sender() {
        let u = update(serde_json::json!({"update_id": 1, "message": {
            "message_id": 10, "date": 1700000000, "text": "hello",
            "chat": {"id": 7, "type": "private"},
            "from": {"id": 7, "is_bot": false, "first_name": "Ada", "last_name": "L", "username": "ada"}}}));
        let m = to_inbound(&u, "default", &bot()).unwrap();
        assert_eq!((m.peer_kind, m.peer_id.as_str(), m.platform_id.as_str()), (PeerKind::Direct, "7", "7:10"));
        assert_eq!((m.sender.name.as_str(), m.sender.username.as_deref()), ("Ada L", Some("ada")));
        assert_eq!(m.timestamp_ms, 1_700_000_000_000);
        assert!(!m.mentioned);
    }

    #[test]
    fn mentions_are_found_by_utf16_offsets() {
        // "🦀 " is three UTF-16 units: the mention starts at 3.
        let u = update(serde_json::json!({"update_id": 1, "message": {
            "message_id": 11, "date": 1, "text": "🦀 @Claw_Bot hi",
            "entities": [{"type": "mention", "offset": 3, "length": 9}],
            "chat": {"id": -100, "type": "supergroup"},
            "from": {"id": 7, "first_name": "Ada"}}}));
        let m = to_inbound(&u, "default", &bot()).unwrap();
        assert!(m.mentioned);
        assert_eq!(m.peer_kind, PeerKind::Group);
        let other = update(serde_json::json!({"update_id": 1, "message": {
            "message_id": 12, "date": 1, "text": "@someone hi",
            "entities": [{"type": "mention", "offset": 0, "length": 8}, {"type": "mention", "offset": 50, "length": 9}],
            "chat": {"id": -100, "type": "supergroup"}, "from": {"id": 7, "first_name": "Ada"}}}));
        assert!(!to_inbound(&other, "default", &bot()).unwrap().mentioned);
    }

    #[test]
    fn topics_replies_and_media() {
        let u = update(serde_json::json!({"update_id": 1, "message": {
            "message_id": 20, "date": 1, "caption": "look", "message_thread_id": 5, "is_topic_message": true,
            "photo": [{"file_id": "small", "file_unique_id": "a", "width": 1, "height": 1},
                      {"file_id": "big", "file_unique_id": "b", "width": 9, "height": 9, "file_size": 900}],
            "reply_to_message": {"message_id": 19, "date": 1, "chat": {"id": -100, "type": "supergroup"},
                                 "from": {"id": 42, "is_bot": true, "first_name": "Claw"}, "text": "earlier"},
            "chat": {"id": -100, "type": "supergroup", "is_forum": true},
            "from": {"id": 7, "first_name": "Ada"}}}));
        let m = to_inbound(&u, "default", &bot()).unwrap();
        assert_eq!(m.thread, Some((ThreadKind::Topic, "5".into())));
        assert_eq!(m.text, "look");
        assert_eq!(m.attachments[0].file_id, "big");
        assert!(m.reply_to.as_ref().unwrap().to_assistant);
        // The topic's opening message is not a reply.
        let u = update(serde_json::json!({"update_id": 2, "message": {
            "message_id": 21, "date": 1, "text": "x", "message_thread_id": 5, "is_topic_message": true,
            "reply_to_message": {"message_id": 5, "date": 1, "chat": {"id": -100, "type": "supergroup"}},
            "chat": {"id": -100, "type": "supergroup", "is_forum": true}, "from": {"id": 7, "first_name": "Ada"}}}));
        assert!(to_inbound(&u, "default", &bot()).unwrap().reply_to.is_none());
    }

    #[test]
    fn a_pressed_button_is_a_reply_to_the_bots_message_carrying_its_data() {
        let u = update(serde_json::json!({"update_id": 3, "callback_query": {
            "id": "77", "chat_instance": "-1", "data": "approve:42",
            "from": {"id": 7, "is_bot": false, "first_name": "Ada"},
            "message": {"message_id": 30, "date": 5, "text": "Run ls?",
                        "chat": {"id": 7, "type": "private"},
                        "from": {"id": 42, "is_bot": true, "first_name": "Claw"},
                        "reply_markup": {"inline_keyboard": [[{"text": "Yes", "callback_data": "approve:42"},
                                                             {"text": "No", "callback_data": "deny:42"}]]}}}}));
        let m = to_inbound(&u, "default", &bot()).unwrap();
        assert_eq!((m.platform_id.as_str(), m.text.as_str(), m.peer_id.as_str()), ("cb:77", "approve:42", "7"));
        assert_eq!(m.button, Some(ButtonPress { data: "approve:42".into(), label: Some("Yes".into()) }));
        assert!(m.mentioned && m.reply_to.as_ref().unwrap().to_assistant);
        // A press without data, or on a message Telegram no longer includes, is nothing to answer.
        let u = update(serde_json::json!({"update_id": 4, "callback_query": {
            "id": "78", "chat_instance": "-1", "from": {"id": 7, "first_name": "Ada"}, "data": "x"}}));
        assert!(to_inbound(&u, "default", &bot()).is_none());
    }

    #[test]
    fn what_clawline_does_not_answer_maps_to_nothing() {
        let none = |v| to_inbound(&update(v), "default", &bot());
        assert!(none(serde_json::json!({"update_id": 1, "edited_message": {}})).is_none());
        assert!(
            none(serde_json::json!({"update_id": 1, "message": {"message_id": 1, "date": 1,
            "chat": {"id": -5, "type": "channel"}, "text": "post", "from": {"id": 1, "first_name": "x"}}}))
            .is_none()
        );
        assert!(
            none(serde_json::json!({"update_id": 1, "message": {"message_id": 1, "date": 1,
            "chat": {"id": 5, "type": "private"}, "from": {"id": 5, "first_name": "x"}, "new_chat_title": "t"}}))
            .is_none()
        );
    }
}
