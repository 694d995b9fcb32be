//! Replies → IRC lines: Markdown flattened to plain text (IRC has no markup clawline can rely
//! on), cut to the account's chunk size, and each piece split again into lines that fit the
//! 512-byte limit as the server relays them. In a channel, a reply addresses its asker
//! (`alice: …`) on its first line. Pure: no I/O.

use clawline_core::config::channels::{ChunkMode, DeliverySettings};
use clawline_core::routing::PeerKind;

use super::api::split_privmsg;
use super::config::PREFIX_GUESS;
use crate::format;
use crate::message::{OutboundBody, Target};

/// Cuts a reply into queue rows.
pub fn prepare(markdown: &str, delivery: &DeliverySettings) -> Vec<OutboundBody> {
    let mode = match delivery.chunk_mode {
        ChunkMode::Length => format::ChunkMode::Length,
        ChunkMode::Newline => format::ChunkMode::Newline,
    };
    let plain = format::strip_to_plain(markdown);
    format::chunk_text(&plain, delivery.text_chunk_limit, mode).into_iter().map(OutboundBody::plain).collect()
}

/// The PRIVMSG texts for one queued row.
pub fn lines_for(target: &Target, body: &OutboundBody) -> Vec<String> {
    let mut text = body.plain.clone().unwrap_or_else(|| body.text.clone());
    if target.peer_kind != PeerKind::Direct
        && let Some(nick) = &target.reply_to
    {
        text = format!("{nick}: {text}");
    }
    split_privmsg(&target.peer_id, &text, PREFIX_GUESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_replies_address_the_asker_and_markdown_goes_plain() {
        let d = DeliverySettings::with_limit(350);
        let rows = prepare("**Done**: see `x`\n\n- one\n- two", &d);
        assert_eq!(rows.len(), 1);
        let t = Target {
            peer_kind: PeerKind::Group,
            peer_id: "#ops".into(),
            thread: None,
            reply_to: Some("Alice".into()),
            replaces: None,
        };
        let lines = lines_for(&t, &rows[0]);
        assert!(lines[0].starts_with("Alice: Done"), "{lines:?}");
        assert!(!lines.iter().any(|l| l.contains("**")));
        let dm = Target { peer_kind: PeerKind::Direct, ..t };
        assert!(!lines_for(&dm, &rows[0])[0].starts_with("Alice:"));
    }
}
