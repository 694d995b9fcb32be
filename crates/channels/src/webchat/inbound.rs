//! A message posted by the page → the normalized message the journal keeps.
//!
//! The page names each message with an id of its own (a UUID), so a post repeated after a
//! network error is recognized by the journal and not answered twice. Nothing here decides
//! whether the message is answered; the gate does.

use clawline_core::routing::PeerKind;

use super::config::{MAX_ID_BYTES, MAX_TEXT_CHARS, OPERATOR, OPERATOR_NAME};
use crate::message::{InboundMessage, Sender};

/// Why a posted message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    #[error("the message is empty")]
    Empty,
    #[error("the message is longer than {MAX_TEXT_CHARS} characters")]
    TooLong,
    #[error("the message id must be 1 to {MAX_ID_BYTES} letters, digits, `-`, `_` or `.`")]
    BadId,
    #[error("the web chat is not running yet; try again in a moment")]
    NotReady,
    #[error("the message could not be stored: {0}")]
    Store(String),
}

/// The journal's form of a posted message.
pub fn message(account_id: &str, client_id: &str, text: &str, now_ms: i64) -> Result<InboundMessage, PostError> {
    if text.trim().is_empty() {
        return Err(PostError::Empty);
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(PostError::TooLong);
    }
    let id_ok = !client_id.is_empty()
        && client_id.len() <= MAX_ID_BYTES
        && client_id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !id_ok {
        return Err(PostError::BadId);
    }
    Ok(InboundMessage {
        channel: "webchat".into(),
        account_id: account_id.into(),
        platform_id: client_id.into(),
        message_id: client_id.into(),
        sender: Sender { id: OPERATOR.into(), name: OPERATOR_NAME.into(), username: None, is_bot: false },
        peer_kind: PeerKind::Direct,
        peer_id: OPERATOR.into(),
        thread: None,
        parent: None,
        guild_id: None,
        team_id: None,
        roles: Vec::new(),
        text: text.to_string(),
        attachments: Vec::new(),
        mentioned: true,
        reply_to: None,
        button: None,
        timestamp_ms: now_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posts_are_checked_before_they_are_kept() {
        let m = message("default", "0b8f-41", "hello", 5).unwrap();
        assert_eq!(
            (m.platform_id.as_str(), m.sender.id.as_str(), m.peer_kind),
            ("0b8f-41", OPERATOR, PeerKind::Direct)
        );
        assert_eq!(message("default", "x", "  \n", 0), Err(PostError::Empty));
        assert_eq!(message("default", "a b", "hi", 0), Err(PostError::BadId));
        assert_eq!(message("default", "", "hi", 0), Err(PostError::BadId));
        assert_eq!(message("default", &"i".repeat(129), "hi", 0), Err(PostError::BadId));
        assert_eq!(message("default", "x", &"y".repeat(MAX_TEXT_CHARS + 1), 0), Err(PostError::TooLong));
    }
}
