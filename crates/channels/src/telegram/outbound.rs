//! Outbound messages → Bot API calls: Markdown cut to the account's chunk limit and converted
//! to Telegram's HTML, `sendMessage` with the reply and topic set, files with the `send<Kind>`
//! method that fits (a local file uploaded, a URL handed over), downloads of files that came
//! in, and the fallbacks Telegram's answers call for.
//!
//! A 400 "can't parse entities" is answered by sending the same piece as plain text once; a
//! group that became a supergroup reports its new id ([`SendError::Moved`]); 429 carries
//! `retry_after`; 5xx and transport errors are transient; other refusals (blocked by the user,
//! chat not found) cannot change and are permanent. Nothing here retries later: the queue does.

use std::time::Duration;

use clawline_core::config::channels::{ChunkMode, DeliverySettings};
use clawline_core::routing::ThreadKind;

use super::api::{Api, ApiError, File, Message, Upload};
use crate::channel::{SendError, Sent};
use crate::format;
use crate::media::Media;
use crate::message::{OutboundBody, Target};

/// Telegram's hard limit on a message's text.
pub const MAX_TEXT: usize = 4096;
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Cuts and converts a reply.
pub fn prepare(markdown: &str, delivery: &DeliverySettings) -> Vec<OutboundBody> {
    let mode = match delivery.chunk_mode {
        ChunkMode::Length => format::ChunkMode::Length,
        ChunkMode::Newline => format::ChunkMode::Newline,
    };
    let limit = delivery.text_chunk_limit.min(MAX_TEXT);
    format::chunk_text(markdown, limit, mode)
        .into_iter()
        .map(|piece| {
            let html = format::to_telegram_html(&piece);
            let plain = format::strip_to_plain(&piece);
            if format::telegram_visible_len(&html) > MAX_TEXT {
                // Conversion can only shorten text, but never send what Telegram refuses.
                let (cut, _) = clawline_core::text::truncate_chars(&plain, MAX_TEXT);
                return OutboundBody::plain(cut);
            }
            OutboundBody {
                text: html,
                markup: Some("HTML".into()),
                plain: Some(plain),
                buttons: Vec::new(),
                draft: false,
                media: None,
            }
        })
        .collect()
}

fn chat_id(target: &Target) -> serde_json::Value {
    match target.peer_id.parse::<i64>() {
        Ok(n) => serde_json::json!(n),
        Err(_) => serde_json::json!(target.peer_id),
    }
}

fn topic(target: &Target) -> Option<i64> {
    match &target.thread {
        Some((ThreadKind::Topic, id)) => id.parse().ok(),
        _ => None,
    }
}

fn keyboard(body: &OutboundBody) -> Option<serde_json::Value> {
    if body.buttons.is_empty() {
        return None;
    }
    let rows: Vec<Vec<serde_json::Value>> = body
        .buttons
        .iter()
        .map(|row| row.iter().map(|(text, data)| serde_json::json!({"text": text, "callback_data": data})).collect())
        .collect();
    Some(serde_json::json!({"inline_keyboard": rows}))
}

/// Maps a refused call to what the queue should do.
pub fn classify(e: ApiError) -> SendError {
    match e {
        ApiError::Refused { code: 429, retry_after, .. } => {
            SendError::RateLimited { retry_after: Duration::from_secs(retry_after.unwrap_or(5).max(1)) }
        }
        ApiError::Refused { migrate_to: Some(new), .. } => SendError::Moved(new.to_string()),
        ApiError::Refused { code, description, .. } if code >= 500 => {
            SendError::Transient(format!("{code} {description}"))
        }
        // 401: the token stopped working; it may be fixed in the config without losing the queue.
        ApiError::Refused { code: 401, description, .. } => SendError::Transient(format!("401 {description}")),
        ApiError::Refused { code, description, .. } => SendError::Permanent(format!("{code} {description}")),
        ApiError::Transport { detail, .. } => SendError::Transient(detail),
    }
}

fn parse_refused(e: &ApiError) -> bool {
    matches!(e, ApiError::Refused { code: 400, description, .. } if description.contains("can't parse entities"))
}

/// `sendMessage` for one piece.
pub async fn send(api: &Api, target: &Target, body: &OutboundBody) -> Result<Sent, SendError> {
    let mut req = serde_json::json!({"chat_id": chat_id(target), "text": body.text});
    if let Some(m) = &body.markup {
        req["parse_mode"] = serde_json::json!(m);
    }
    if let Some(t) = topic(target) {
        req["message_thread_id"] = serde_json::json!(t);
    }
    if let Some(r) = target.reply_to.as_deref().and_then(|r| r.parse::<i64>().ok()) {
        req["reply_parameters"] = serde_json::json!({"message_id": r, "allow_sending_without_reply": true});
    }
    if let Some(k) = keyboard(body) {
        req["reply_markup"] = k;
    }
    let first: Result<Message, ApiError> = api.call("sendMessage", &req, CALL_TIMEOUT).await;
    let sent = match first {
        Err(e) if parse_refused(&e) && body.markup.is_some() => {
            tracing::warn!(error = %e, "Telegram refused the formatting; sending the piece as plain text");
            let plain = body.plain.clone().unwrap_or_else(|| body.text.clone());
            req["text"] = serde_json::json!(plain);
            if let Some(o) = req.as_object_mut() {
                o.remove("parse_mode");
            }
            api.call::<Message>("sendMessage", &req, CALL_TIMEOUT).await
        }
        other => other,
    };
    sent.map(|m| Sent { message_id: m.message_id.to_string() }).map_err(classify)
}

/// Telegram's limit on uploads by bots.
pub const MAX_UPLOAD: u64 = 50 * 1024 * 1024;

/// `sendPhoto`, `sendDocument`, `sendVoice`, … for a queued file: uploaded from its path, or
/// the URL given to Telegram to fetch. The text, if any, is the caption.
pub async fn send_media(api: &Api, target: &Target, body: &OutboundBody, media: &Media) -> Result<Sent, SendError> {
    let (method, field) = match media.kind.as_str() {
        "photo" => ("sendPhoto", "photo"),
        "voice" => ("sendVoice", "voice"),
        "audio" => ("sendAudio", "audio"),
        "video" => ("sendVideo", "video"),
        _ => ("sendDocument", "document"),
    };
    let mut fields: Vec<(String, String)> = vec![("chat_id".into(), target.peer_id.clone())];
    if let Some(t) = topic(target) {
        fields.push(("message_thread_id".into(), t.to_string()));
    }
    if let Some(r) = target.reply_to.as_deref().and_then(|r| r.parse::<i64>().ok()) {
        let reply = serde_json::json!({"message_id": r, "allow_sending_without_reply": true});
        fields.push(("reply_parameters".into(), reply.to_string()));
    }
    if !body.text.is_empty() {
        fields.push(("caption".into(), body.text.clone()));
        if let Some(m) = &body.markup {
            fields.push(("parse_mode".into(), m.clone()));
        }
    }
    let sent: Message = match (&media.url, &media.path) {
        (Some(url), _) => {
            let mut req: serde_json::Map<String, serde_json::Value> =
                fields.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
            req.insert(field.into(), serde_json::json!(url));
            api.call(method, &serde_json::Value::Object(req), CALL_TIMEOUT).await.map_err(classify)?
        }
        (None, Some(path)) => {
            let bytes = crate::media::read_upload(path, MAX_UPLOAD, "Telegram").await?;
            let upload = Upload { field, file_name: &media.name, bytes: &bytes };
            api.call_with_file(method, &fields, upload, Duration::from_secs(120)).await.map_err(classify)?
        }
        (None, None) => return Err(SendError::Permanent("the file to send names neither a path nor a URL".into())),
    };
    Ok(Sent { message_id: sent.message_id.to_string() })
}

/// `getFile`, then the download: at most `max_bytes` (and Telegram serves bots at most 20 MB).
pub async fn fetch(api: &Api, file_id: &str, max_bytes: u64) -> Result<Vec<u8>, SendError> {
    let file: File =
        api.call("getFile", &serde_json::json!({"file_id": file_id}), CALL_TIMEOUT).await.map_err(classify)?;
    if file.file_size.is_some_and(|s| s > max_bytes) {
        return Err(SendError::Permanent(format!(
            "it is larger than the {} MB limit (mediaMaxMb)",
            max_bytes / (1024 * 1024)
        )));
    }
    let path = file.file_path.ok_or_else(|| SendError::Permanent("Telegram gave no path to download it".into()))?;
    api.download(&path, max_bytes, Duration::from_secs(120)).await.map_err(classify)
}

/// `editMessageText`; "message is not modified" counts as done, refused formatting is
/// retried once as plain text.
pub async fn edit(api: &Api, target: &Target, message_id: &str, body: &OutboundBody) -> Result<(), SendError> {
    let id: i64 =
        message_id.parse().map_err(|_| SendError::Permanent(format!("`{message_id}` is not a Telegram message id")))?;
    let mut req = serde_json::json!({"chat_id": chat_id(target), "message_id": id, "text": body.text});
    if let Some(m) = &body.markup {
        req["parse_mode"] = serde_json::json!(m);
    }
    if let Some(k) = keyboard(body) {
        req["reply_markup"] = k;
    }
    let mut outcome = api.call::<serde_json::Value>("editMessageText", &req, CALL_TIMEOUT).await;
    if let Err(e) = &outcome
        && parse_refused(e)
        && body.markup.is_some()
    {
        req["text"] = serde_json::json!(body.plain.clone().unwrap_or_else(|| body.text.clone()));
        if let Some(o) = req.as_object_mut() {
            o.remove("parse_mode");
        }
        outcome = api.call::<serde_json::Value>("editMessageText", &req, CALL_TIMEOUT).await;
    }
    match outcome {
        Ok(_) => Ok(()),
        Err(ApiError::Refused { code: 400, description, .. }) if description.contains("message is not modified") => {
            Ok(())
        }
        Err(e) => Err(classify(e)),
    }
}

/// `sendChatAction typing`.
pub async fn typing(api: &Api, target: &Target) -> Result<(), SendError> {
    let mut req = serde_json::json!({"chat_id": chat_id(target), "action": "typing"});
    if let Some(t) = topic(target) {
        req["message_thread_id"] = serde_json::json!(t);
    }
    api.call::<bool>("sendChatAction", &req, Duration::from_secs(10)).await.map(|_| ()).map_err(classify)
}

/// `setMessageReaction` with one emoji.
pub async fn react(api: &Api, target: &Target, message_id: &str, emoji: &str) -> Result<(), SendError> {
    let id: i64 =
        message_id.parse().map_err(|_| SendError::Permanent(format!("`{message_id}` is not a Telegram message id")))?;
    let req = serde_json::json!({"chat_id": chat_id(target), "message_id": id,
                                 "reaction": [{"type": "emoji", "emoji": emoji}]});
    api.call::<bool>("setMessageReaction", &req, CALL_TIMEOUT).await.map(|_| ()).map_err(classify)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(limit: usize) -> DeliverySettings {
        DeliverySettings::with_limit(limit)
    }

    #[test]
    fn replies_become_html_pieces_within_the_limit() {
        let pieces = prepare("**Hi** <there> & you", &delivery(4000));
        assert_eq!(pieces.len(), 1);
        assert_eq!(pieces[0].markup.as_deref(), Some("HTML"));
        assert!(pieces[0].text.contains("<b>Hi</b>"), "{}", pieces[0].text);
        assert!(pieces[0].text.contains("&lt;there&gt; &amp;"), "{}", pieces[0].text);
        let long = "word ".repeat(2000);
        let pieces = prepare(&long, &delivery(1000));
        assert!(pieces.len() >= 10);
        assert!(pieces.iter().all(|p| format::telegram_visible_len(&p.text) <= 1000));
    }

    #[test]
    fn refusals_map_to_what_the_queue_does() {
        let refused = |code, d: &str, retry_after, migrate_to| ApiError::Refused {
            method: "sendMessage".into(),
            code,
            description: d.into(),
            retry_after,
            migrate_to,
        };
        assert_eq!(
            classify(refused(429, "Too Many Requests: retry after 7", Some(7), None)),
            SendError::RateLimited { retry_after: Duration::from_secs(7) }
        );
        assert_eq!(classify(refused(400, "upgraded", None, Some(-1009))), SendError::Moved("-1009".into()));
        assert!(matches!(classify(refused(502, "Bad Gateway", None, None)), SendError::Transient(_)));
        assert!(matches!(
            classify(refused(403, "Forbidden: bot was blocked by the user", None, None)),
            SendError::Permanent(_)
        ));
        assert!(matches!(
            classify(ApiError::Transport { method: "sendMessage".into(), detail: "timed out".into() }),
            SendError::Transient(_)
        ));
    }
}
