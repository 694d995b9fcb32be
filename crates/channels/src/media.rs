//! Files in replies: the `MEDIA:<path or URL>` lines an agent writes (OpenClaw's convention,
//! one per line, outside code blocks) taken out of the text, and the kind of file each names.
//!
//! Text work, and reading a queued file for an adapter's upload. Deciding whether a path may
//! be sent (it must stay inside the agent's workspace) is the responder's job; sending is the
//! adapter's.

use serde::{Deserialize, Serialize};

/// A file to send with a reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Media {
    /// `photo`, `voice`, `audio`, `video` or `document`.
    pub kind: String,
    /// A local file (absolute, already checked), read when the message is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Or an `http(s)` URL the platform fetches itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The file name shown.
    pub name: String,
}

/// Reads a queued file for an upload of at most `max_bytes` (`platform` names the limit's
/// owner in the error). Missing or too large is permanent: retrying cannot help.
pub async fn read_upload(path: &str, max_bytes: u64, platform: &str) -> Result<Vec<u8>, crate::channel::SendError> {
    use crate::channel::SendError;
    let meta = tokio::fs::metadata(path).await.map_err(|e| SendError::Permanent(format!("cannot read {path}: {e}")))?;
    if meta.len() > max_bytes {
        return Err(SendError::Permanent(format!(
            "{path} is {} MB; {platform} takes at most {} MB from bots",
            meta.len() / (1024 * 1024),
            max_bytes / (1024 * 1024)
        )));
    }
    tokio::fs::read(path).await.map_err(|e| SendError::Permanent(format!("cannot read {path}: {e}")))
}

/// The reply without its `MEDIA:` lines, and what those lines named, in order. Lines inside
/// fenced code blocks are left alone (they are examples, not attachments).
pub fn split_media(text: &str) -> (String, Vec<String>) {
    let mut kept = Vec::new();
    let mut refs = Vec::new();
    let mut fence: Option<&str> = None;
    for line in text.split('\n') {
        let t = line.trim();
        if let Some(f) = fence {
            if t.starts_with(f) {
                fence = None;
            }
            kept.push(line);
            continue;
        }
        if t.starts_with("```") || t.starts_with("~~~") {
            fence = Some(&t[..3]);
            kept.push(line);
            continue;
        }
        match t.strip_prefix("MEDIA:") {
            Some(r) if !r.trim().is_empty() => refs.push(r.trim().trim_matches(['`', '"', '\'']).to_string()),
            _ => kept.push(line),
        }
    }
    (kept.join("\n").trim().to_string(), refs)
}

/// The kind of file a name suggests.
pub fn kind_of(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "png" | "jpg" | "jpeg" | "gif" | "webp" => "photo",
        "ogg" | "oga" | "opus" => "voice",
        "mp3" | "m4a" | "wav" | "flac" | "aac" => "audio",
        "mp4" | "mov" | "webm" | "mkv" => "video",
        _ => "document",
    }
}

/// The MIME type a file name suggests (`application/octet-stream` when unknown).
pub fn mime_of(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "pdf" => "application/pdf",
        "txt" | "md" => "text/plain",
        "csv" => "text/csv",
        "json" => "application/json",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "mp3" => "audio/mpeg",
        "m4a" => "audio/mp4",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

/// The name of a file for people: its last path segment (without a URL's query).
pub fn display_name(reference: &str) -> String {
    let no_query = reference.split(['?', '#']).next().unwrap_or(reference);
    let name = no_query.rsplit(['/', '\\']).next().unwrap_or(no_query);
    if name.is_empty() { "file".to_string() } else { name.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn media_lines_leave_the_text_but_not_inside_code() {
        let (text, refs) = split_media(
            "Here is the chart:\n\nMEDIA:charts/q3.png\n\n```\nMEDIA:not/this.png\n```\n  MEDIA: `https://x.test/a.pdf?x=1`\nDone.",
        );
        assert_eq!(refs, ["charts/q3.png", "https://x.test/a.pdf?x=1"]);
        assert_eq!(text, "Here is the chart:\n\n\n```\nMEDIA:not/this.png\n```\nDone.");
        assert_eq!(split_media("MEDIA:\nplain"), ("MEDIA:\nplain".to_string(), vec![]));
    }

    #[test]
    fn kinds_and_names() {
        assert_eq!(kind_of("a/B.JPG"), "photo");
        assert_eq!(kind_of("note.ogg"), "voice");
        assert_eq!(kind_of("report"), "document");
        assert_eq!((mime_of("a.PNG"), mime_of("x")), ("image/png", "application/octet-stream"));
        assert_eq!(display_name("https://x.test/dir/r.pdf?sig=1"), "r.pdf");
        assert_eq!(display_name("inbox/"), "file");
    }

    proptest! {
        #[test]
        fn splitting_never_invents_text(s in "(MEDIA:[a-z/.]{0,8}|```|[a-z ]{0,8}|\n){0,12}") {
            let (text, refs) = split_media(&s);
            prop_assert!(text.len() <= s.len());
            for r in &refs {
                prop_assert!(s.contains(r.as_str()));
            }
        }
    }
}
