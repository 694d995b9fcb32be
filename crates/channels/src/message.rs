//! The normalized messages every platform adapter produces and consumes.
//!
//! An adapter turns a platform event into an [`InboundMessage`] and a queued [`Target`] +
//! [`OutboundBody`] back into platform calls. These types are journaled as JSON, so they change
//! only in backward-compatible ways (new fields optional). They carry facts, not decisions: who
//! may talk and who answers are the gate's and the router's.

use clawline_core::routing::{PeerKind, ThreadKind};
use serde::{Deserialize, Serialize};

/// Who sent a message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sender {
    /// The platform's stable id for the person (Telegram user id, Discord user id, …).
    pub id: String,
    /// A display name.
    pub name: String,
    /// The handle, without `@`, where the platform has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default)]
    pub is_bot: bool,
}

/// A file that came with a message (not downloaded: the adapter can fetch it by `file_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// `photo`, `document`, `voice`, `audio`, `video`, `sticker`, …
    pub kind: String,
    pub file_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// The message this one replies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplyRef {
    pub message_id: String,
    /// Whether that message was the assistant's own (counts as addressing it in groups).
    #[serde(default)]
    pub to_assistant: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// A button under one of the assistant's messages was pressed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ButtonPress {
    /// The button's callback data (what the assistant put there).
    pub data: String,
    /// The button's label, when the platform says which it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// One message from a platform, normalized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundMessage {
    pub channel: String,
    pub account_id: String,
    /// Unique within the account: the journal's dedupe key.
    pub platform_id: String,
    /// The platform's id of the message inside its chat (what a reply points at).
    pub message_id: String,
    pub sender: Sender,
    pub peer_kind: PeerKind,
    /// The chat's id (for a direct chat, the chat with the sender).
    pub peer_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<(ThreadKind, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<(PeerKind, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guild_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    pub text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// The platform says the assistant was mentioned (an @-mention entity, a command to it).
    #[serde(default)]
    pub mentioned: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<ReplyRef>,
    /// Set when this "message" is a button press (`text` is then the button's data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub button: Option<ButtonPress>,
    /// When the platform says it was sent (Unix ms).
    pub timestamp_ms: i64,
}

impl InboundMessage {
    /// Where a reply to this message goes.
    pub fn reply_target(&self) -> Target {
        Target {
            peer_kind: self.peer_kind,
            peer_id: self.peer_id.clone(),
            thread: self.thread.clone(),
            reply_to: Some(self.message_id.clone()),
            replaces: None,
        }
    }

    /// The conversation, for routing.
    pub fn conversation(&self) -> clawline_core::routing::Conversation<'_> {
        clawline_core::routing::Conversation {
            channel: &self.channel,
            account_id: &self.account_id,
            kind: self.peer_kind,
            peer_id: &self.peer_id,
            parent: self.parent.as_ref().map(|(k, id)| (*k, id.as_str())),
            thread: self.thread.as_ref().map(|(k, id)| (*k, id.as_str())),
            guild_id: self.guild_id.as_deref(),
            team_id: self.team_id.as_deref(),
            roles: &self.roles,
        }
    }
}

/// Where an outbound message goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub peer_kind: PeerKind,
    pub peer_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<(ThreadKind, String)>,
    /// The message to quote, when the reply mode asks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// A preview (draft) message this one replaces: it is edited into this text instead of a
    /// new message being sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

/// What an outbound message says, already formatted for its platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundBody {
    /// The text in the platform's markup.
    pub text: String,
    /// The markup's name for the platform (`HTML` for Telegram), `None` for plain text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub markup: Option<String>,
    /// The same text without markup, sent if the platform refuses the markup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain: Option<String>,
    /// Buttons under the message: rows of (label, callback data).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<Vec<(String, String)>>,
    /// A preview of an answer still being written (never queued; platforms that can show
    /// the difference, like the web chat, do).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draft: bool,
    /// A file sent as this message (`text`, when not empty, is its caption).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<crate::media::Media>,
}

impl OutboundBody {
    pub fn plain(text: impl Into<String>) -> OutboundBody {
        OutboundBody { text: text.into(), markup: None, plain: None, buttons: Vec::new(), draft: false, media: None }
    }
}
