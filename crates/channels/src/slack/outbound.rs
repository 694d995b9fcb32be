//! Replies → `chat.postMessage`: Markdown converted to Slack's mrkdwn and cut at the account's
//! limit; in a channel a reply goes into the thread of the message it answers (Slack's
//! convention), in an IM only when the message was in a thread. Each post carries the queue
//! row's idempotency key in its message metadata, so a retry after a lost answer can find the
//! message in the conversation's history instead of posting it twice. Pure: no I/O.

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

/// The metadata `event_type` of clawline's replies.
pub const METADATA_EVENT: &str = "clawline_reply";

/// How many messages one history page asks for: 15 is what Slack allows apps distributed
/// outside its Marketplace since 2025.
const PAGE: u32 = 15;

/// The thread a reply goes into, if any.
fn thread_of(target: &Target) -> Option<String> {
    match (&target.thread, target.peer_kind) {
        (Some((ThreadKind::Thread, ts)), _) => Some(ts.clone()),
        (_, PeerKind::Channel | PeerKind::Group) => target.reply_to.clone(),
        _ => None,
    }
}

/// The `chat.postMessage` body for one queued row.
pub fn post(target: &Target, body: &OutboundBody, key: &str) -> serde_json::Value {
    let mut req = serde_json::json!({
        "channel": target.peer_id,
        "text": body.text,
        "mrkdwn": body.markup.is_some(),
        "metadata": {"event_type": METADATA_EVENT, "event_payload": {"key": key}},
    });
    if let Some(ts) = thread_of(target) {
        req["thread_ts"] = serde_json::json!(ts);
    }
    req
}

/// The call that lists what was posted where `target` points since `since_ms`, one page at a
/// time: `conversations.replies` in a thread, `conversations.history` elsewhere.
pub fn recent(target: &Target, since_ms: i64, cursor: Option<&str>) -> (&'static str, serde_json::Value) {
    let since = since_ms.max(0);
    let mut req = serde_json::json!({
        "channel": target.peer_id,
        "oldest": format!("{}.{:06}", since / 1000, (since % 1000) * 1000),
        "inclusive": true,
        "include_all_metadata": true,
        "limit": PAGE,
    });
    if let Some(c) = cursor {
        req["cursor"] = serde_json::json!(c);
    }
    match thread_of(target) {
        Some(ts) => {
            req["ts"] = serde_json::json!(ts);
            ("conversations.replies", req)
        }
        None => ("conversations.history", req),
    }
}

/// In one page of `recent`'s answer: the `ts` of the message posted with `key`, and the cursor
/// of the next page.
pub fn find_in_page(answer: &serde_json::Value, key: &str) -> (Option<String>, Option<String>) {
    let found = answer["messages"].as_array().into_iter().flatten().find_map(|m| {
        let meta = &m["metadata"];
        (meta["event_type"] == METADATA_EVENT && meta["event_payload"]["key"] == key)
            .then(|| m["ts"].as_str().map(str::to_string))
            .flatten()
    });
    let next = answer["response_metadata"]["next_cursor"].as_str().filter(|c| !c.is_empty()).map(str::to_string);
    (found, next)
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
        assert_eq!(post(&ch, &body, "k")["thread_ts"], "1700.2");
        assert_eq!(post(&ch, &body, "k")["metadata"]["event_payload"]["key"], "k");
        let dm = Target { peer_kind: PeerKind::Direct, peer_id: "D1".into(), ..ch.clone() };
        assert!(post(&dm, &body, "k").get("thread_ts").is_none());
        let in_thread = Target { thread: Some((ThreadKind::Thread, "1700.0".into())), ..dm.clone() };
        assert_eq!(post(&in_thread, &body, "k")["thread_ts"], "1700.0");

        // A lost answer is looked for where the reply went.
        let (method, req) = recent(&ch, 1_700_000_000_250, None);
        assert_eq!(
            (method, req["ts"].as_str(), req["oldest"].as_str()),
            ("conversations.replies", Some("1700.2"), Some("1700000000.250000"))
        );
        let (method, req) = recent(&dm, 5, Some("abc"));
        assert_eq!((method, req.get("ts"), req["cursor"].as_str()), ("conversations.history", None, Some("abc")));
    }

    #[test]
    fn only_a_message_with_our_key_in_its_metadata_is_found() {
        let meta = |key: &str| serde_json::json!({"event_type": METADATA_EVENT, "event_payload": {"key": key}});
        let page = serde_json::json!({
            "messages": [
                {"ts": "1.1", "text": "same words, no metadata"},
                {"ts": "1.2", "metadata": {"event_type": "other_app", "event_payload": {"key": "k"}}},
                {"ts": "1.3", "metadata": meta("other-key")},
                {"ts": "1.4", "metadata": meta("k")},
            ],
            "response_metadata": {"next_cursor": "next"},
        });
        assert_eq!(find_in_page(&page, "k"), (Some("1.4".into()), Some("next".into())));
        assert_eq!(find_in_page(&page, "missing"), (None, Some("next".into())));
        let last = serde_json::json!({"messages": [], "response_metadata": {"next_cursor": ""}});
        assert_eq!(find_in_page(&last, "k"), (None, None));
        assert_eq!(find_in_page(&serde_json::json!({}), "k"), (None, None));
    }
}
