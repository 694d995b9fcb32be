//! Outbound messages → page events. The page shows text as it is written (never as HTML), so
//! a reply stays Markdown, cut only so one bubble stays readable.
//!
//! A preview's "still writing" marker is dropped here: the page marks a draft itself.

use clawline_core::config::channels::{ChunkMode, DeliverySettings};

use super::api::PageEvent;
use crate::format;
use crate::message::{OutboundBody, Target};
use crate::preview::UNFINISHED;

/// Cuts a reply into bubbles.
pub fn prepare(markdown: &str, delivery: &DeliverySettings) -> Vec<OutboundBody> {
    let mode = match delivery.chunk_mode {
        ChunkMode::Length => format::ChunkMode::Length,
        ChunkMode::Newline => format::ChunkMode::Newline,
    };
    format::chunk_text(markdown, delivery.text_chunk_limit, mode).into_iter().map(OutboundBody::plain).collect()
}

fn shown(body: &OutboundBody) -> String {
    let text = if body.draft { body.text.strip_suffix(UNFINISHED).unwrap_or(&body.text) } else { &body.text };
    text.to_string()
}

/// The event for a new message.
pub fn message(id: &str, target: &Target, body: &OutboundBody) -> PageEvent {
    PageEvent::Message { id: id.into(), text: shown(body), draft: body.draft, reply_to: target.reply_to.clone() }
}

/// The event for an edit.
pub fn edit(id: &str, body: &OutboundBody) -> PageEvent {
    PageEvent::Edit { id: id.into(), text: shown(body), draft: body.draft }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drafts_lose_the_marker_and_answers_keep_their_markdown() {
        let d = DeliverySettings::with_limit(16_000);
        let body = prepare("**bold** and `code`", &d).remove(0);
        assert_eq!(body.text, "**bold** and `code`");
        let mut draft = OutboundBody::plain(format!("Hello{UNFINISHED}"));
        draft.draft = true;
        assert_eq!(edit("7", &draft), PageEvent::Edit { id: "7".into(), text: "Hello".into(), draft: true });
    }
}
