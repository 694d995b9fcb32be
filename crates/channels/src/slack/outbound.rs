//! Replies → `chat.postMessage`: Markdown converted to Slack's mrkdwn and cut at the account's
//! limit; in a channel a reply goes into the thread of the message it answers (Slack's
//! convention), in an IM only when the message was in a thread. Pure: no I/O.

use clawline_core::config::channels::{ChunkMode, DeliverySettings};
use clawline_core::routing::{PeerKind, ThreadKind};

use crate::format;
use crate::message::{OutboundBody, Target};

/// Cuts and converts a reply.
pub fn prepare(markdown: &str, delivery: &DeliverySettings) -> Vec<OutboundBody> {
    let mode = match delivery.chunk_mode {
        ChunkMode::Length => format::ChunkMode::Length,
        ChunkMode::Newline => format::ChunkMode::Newline,
    };
    format::chunk_text(markdown, delivery.text_chunk_limit, mode)
        .into_iter()
        .map(|piece| OutboundBody {
            text: format::to_slack_mrkdwn(&piece),
            markup: Some("mrkdwn".into()),
            plain: Some(format::strip_to_plain(&piece)),
            buttons: Vec::new(),
            draft: false,
            media: None,
        })
        .collect()
}

/// The `chat.postMessage` body for one queued row.
pub fn post(target: &Target, body: &OutboundBody) -> serde_json::Value {
    let mut req = serde_json::json!({"channel": target.peer_id, "text": body.text, "mrkdwn": body.markup.is_some()});
    let thread = match (&target.thread, target.peer_kind) {
        (Some((ThreadKind::Thread, ts)), _) => Some(ts.clone()),
        (_, PeerKind::Channel | PeerKind::Group) => target.reply_to.clone(),
        _ => None,
    };
    if let Some(ts) = thread {
        req["thread_ts"] = serde_json::json!(ts);
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_replies_go_into_the_thread_and_dms_stay_flat() {
        let body = OutboundBody {
            text: "*hi*".into(),
            markup: Some("mrkdwn".into()),
            plain: None,
            buttons: vec![],
            draft: false,
            media: None,
        };
        let ch = Target {
            peer_kind: PeerKind::Channel,
            peer_id: "C1".into(),
            thread: None,
            reply_to: Some("1700.2".into()),
            replaces: None,
        };
        assert_eq!(post(&ch, &body)["thread_ts"], "1700.2");
        let dm = Target { peer_kind: PeerKind::Direct, peer_id: "D1".into(), ..ch.clone() };
        assert!(post(&dm, &body).get("thread_ts").is_none());
        let in_thread = Target { thread: Some((ThreadKind::Thread, "1700.0".into())), ..dm };
        assert_eq!(post(&in_thread, &body)["thread_ts"], "1700.0");
    }
}
