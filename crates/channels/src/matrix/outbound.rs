//! Replies → Matrix events: `m.notice` (what bots send, so other bots do not answer it) with a
//! plain `body` and an HTML `formatted_body`, in the thread the message came from, replying to
//! it. The transaction id is the queue row's idempotency key, so a resend after a crash is the
//! same event, not a second one. Pure: no I/O.

use clawline_core::config::channels::{ChunkMode, DeliverySettings, ThreadReplies};
use clawline_core::routing::ThreadKind;

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
            text: html(&format::to_telegram_html(&piece)),
            markup: Some("org.matrix.custom.html".into()),
            plain: Some(format::strip_to_plain(&piece)),
            buttons: Vec::new(),
            draft: false,
            media: None,
        })
        .collect()
}

/// Line breaks as `<br>` outside `<pre>` (HTML collapses newlines; Matrix clients render HTML).
fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    let mut in_pre = false;
    let mut rest = s;
    while let Some(i) = rest.find(['\n', '<']) {
        out.push_str(&rest[..i]);
        if rest[i..].starts_with('\n') {
            out.push_str(if in_pre { "\n" } else { "<br>" });
            rest = &rest[i + 1..];
        } else {
            if rest[i..].starts_with("<pre") {
                in_pre = true;
            } else if rest[i..].starts_with("</pre>") {
                in_pre = false;
            }
            out.push('<');
            rest = &rest[i + 1..];
        }
    }
    out.push_str(rest);
    out
}

/// The event content for one queued row.
pub fn content(target: &Target, body: &OutboundBody, threads: ThreadReplies) -> serde_json::Value {
    let mut c = serde_json::json!({
        "msgtype": "m.notice",
        "body": body.plain.clone().unwrap_or_else(|| body.text.clone()),
    });
    if let Some(m) = &body.markup {
        c["format"] = serde_json::json!(m);
        c["formatted_body"] = serde_json::json!(body.text);
    }
    relate(&mut c, target, threads);
    c
}

/// The event for a file already uploaded to `mxc`: `m.image`, `m.audio`, `m.video` or `m.file`
/// by its kind, named, sized and typed, in the same thread and reply as a text reply.
pub fn file_content(
    target: &Target,
    media: &crate::media::Media,
    mxc: &str,
    size: usize,
    threads: ThreadReplies,
) -> serde_json::Value {
    let msgtype = match media.kind.as_str() {
        "photo" => "m.image",
        "voice" | "audio" => "m.audio",
        "video" => "m.video",
        _ => "m.file",
    };
    let mut c = serde_json::json!({
        "msgtype": msgtype,
        "body": media.name,
        "filename": media.name,
        "url": mxc,
        "info": {"size": size, "mimetype": crate::media::mime_of(&media.name)},
    });
    relate(&mut c, target, threads);
    c
}

/// Puts the event in the thread and reply `target` names.
fn relate(c: &mut serde_json::Value, target: &Target, threads: ThreadReplies) {
    let thread_root = match (&target.thread, threads) {
        (Some((ThreadKind::Thread, root)), ThreadReplies::Inbound | ThreadReplies::Always) => Some(root.clone()),
        (None, ThreadReplies::Always) => target.reply_to.clone(),
        _ => None,
    };
    match (thread_root, &target.reply_to) {
        (Some(root), reply) => {
            let latest = reply.clone().unwrap_or_else(|| root.clone());
            c["m.relates_to"] = serde_json::json!({"rel_type": "m.thread", "event_id": root, "is_falling_back": true,
                                                   "m.in_reply_to": {"event_id": latest}});
        }
        (None, Some(reply)) => c["m.relates_to"] = serde_json::json!({"m.in_reply_to": {"event_id": reply}}),
        (None, None) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawline_core::routing::PeerKind;

    #[test]
    fn notices_with_html_in_the_right_thread() {
        let d = DeliverySettings::with_limit(4000);
        let body = prepare("**Done**\nline two\n```\na\nb\n```", &d).remove(0);
        assert!(body.text.contains("<b>Done</b><br>line two"), "{}", body.text);
        assert!(body.text.contains("a\nb"), "newlines stay inside pre: {}", body.text);
        let t = Target {
            peer_kind: PeerKind::Group,
            peer_id: "!r:x".into(),
            thread: Some((ThreadKind::Thread, "$root".into())),
            reply_to: Some("$msg".into()),
            replaces: None,
        };
        let c = content(&t, &body, ThreadReplies::Inbound);
        assert_eq!(c["msgtype"], "m.notice");
        assert_eq!(c["format"], "org.matrix.custom.html");
        assert_eq!(c["m.relates_to"]["rel_type"], "m.thread");
        assert_eq!(c["m.relates_to"]["event_id"], "$root");
        assert_eq!(c["m.relates_to"]["m.in_reply_to"]["event_id"], "$msg");
        let plain = Target { thread: None, ..t.clone() };
        assert_eq!(
            content(&plain, &body, ThreadReplies::Inbound)["m.relates_to"],
            serde_json::json!({"m.in_reply_to": {"event_id": "$msg"}})
        );
        assert_eq!(content(&plain, &body, ThreadReplies::Always)["m.relates_to"]["event_id"], "$msg");
        assert!(content(&t, &body, ThreadReplies::Off)["m.relates_to"].get("rel_type").is_none());
    }
}
