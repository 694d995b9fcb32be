//! Replies → `POST /channels/{id}/messages`: Discord Markdown cut at 2,000 characters and the
//! account's line limit, quoting the message answered, mentions disabled (a model cannot ping
//! anyone), and a nonce derived from the queue key with `enforce_nonce`, so a resend after a
//! crash returns the message already created instead of posting twice. Pure: no I/O.

use clawline_core::config::channels::DeliverySettings;

use crate::format;
use crate::message::{OutboundBody, Target};

/// Cuts and converts a reply.
pub fn prepare(markdown: &str, delivery: &DeliverySettings, max_lines: usize) -> Vec<OutboundBody> {
    let text = format::to_discord_markdown(markdown);
    format::chunk_lines(&text, delivery.text_chunk_limit.min(2000), max_lines)
        .into_iter()
        .map(|piece| OutboundBody {
            text: piece,
            markup: Some("markdown".into()),
            plain: None,
            buttons: Vec::new(),
            draft: false,
            media: None,
        })
        .collect()
}

/// A 24-character nonce from the queue key (Discord allows 25).
pub fn nonce(key: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    d.as_ref()[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// Discord's upload limit for bots in servers without boosts.
pub const MAX_UPLOAD: u64 = 10 * 1024 * 1024;

/// The Create Message form for a queued file: `payload_json` (the same body as a text
/// message, plus the attachment's slot) and `files[0]`. A URL is sent as a link instead:
/// Discord cannot fetch files for a bot.
pub fn create_with_file(
    target: &Target,
    body: &OutboundBody,
    key: &str,
    file_name: &str,
    bytes: &[u8],
) -> (String, Vec<u8>) {
    let mut payload = create(target, body, key);
    payload["attachments"] = serde_json::json!([{"id": 0, "filename": file_name}]);
    if body.text.is_empty()
        && let Some(o) = payload.as_object_mut()
    {
        o.remove("content");
    }
    let json = payload.to_string();
    crate::multipart::encode(&[
        crate::multipart::Part {
            name: "payload_json",
            file_name: None,
            content_type: Some("application/json"),
            bytes: json.as_bytes(),
        },
        crate::multipart::Part::file("files[0]", file_name, bytes),
    ])
}

/// The kind of file a MIME type names.
pub fn kind_of_mime(mime: Option<&str>) -> &'static str {
    match mime.unwrap_or_default() {
        m if m.starts_with("image/") => "photo",
        "audio/ogg" => "voice",
        m if m.starts_with("audio/") => "audio",
        m if m.starts_with("video/") => "video",
        _ => "document",
    }
}

/// The Create Message body for one queued row.
pub fn create(target: &Target, body: &OutboundBody, key: &str) -> serde_json::Value {
    let mut req = serde_json::json!({
        "content": body.text,
        "nonce": nonce(key),
        "enforce_nonce": true,
        "allowed_mentions": {"parse": [], "replied_user": false},
    });
    if let Some(m) = &target.reply_to {
        req["message_reference"] = serde_json::json!({"message_id": m, "fail_if_not_exists": false});
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawline_core::routing::PeerKind;

    #[test]
    fn nonces_are_stable_short_and_distinct() {
        assert_eq!(nonce("a#1:0"), nonce("a#1:0"));
        assert_ne!(nonce("a#1:0"), nonce("a#1:1"));
        assert_eq!(nonce("anything").len(), 24);
        let t = Target {
            peer_kind: PeerKind::Channel,
            peer_id: "1".into(),
            thread: None,
            reply_to: Some("9".into()),
            replaces: None,
        };
        let body = OutboundBody::plain("hi @everyone");
        let c = create(&t, &body, "k");
        assert_eq!(c["message_reference"]["message_id"], "9");
        assert_eq!(c["allowed_mentions"]["parse"], serde_json::json!([]));
        assert_eq!(c["enforce_nonce"], true);
    }
}
