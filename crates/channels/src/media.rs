//! Files in replies: the `MEDIA:<path or URL>` lines an agent writes (OpenClaw's convention,
//! one per line, outside code blocks) taken out of the text, and the kind of file each names.
//!
//! Text work, and reading a queued file for an adapter's upload (refusing a path that changed
//! into a link since it was checked). Deciding whether a path may be sent (it must stay inside
//! the agent's workspace) is the responder's job; sending is the adapter's.

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
///
/// The path was checked to be inside the workspace when the reply was written, and stored in
/// canonical form. Between then and now a part of it could have been replaced by a link to a
/// file elsewhere, so the path is resolved again and must still be itself, and on Linux the
/// file actually opened must be the one at that path (`/proc/self/fd`): a swap after the check
/// is refused instead of uploading what the link points at.
pub async fn read_upload(path: &str, max_bytes: u64, platform: &str) -> Result<Vec<u8>, crate::channel::SendError> {
    let (path, platform) = (path.to_string(), platform.to_string());
    tokio::task::spawn_blocking(move || read_confined(&path, max_bytes, &platform))
        .await
        .map_err(|e| crate::channel::SendError::Transient(format!("reading a file failed: {e}")))?
}

fn read_confined(path: &str, max_bytes: u64, platform: &str) -> Result<Vec<u8>, crate::channel::SendError> {
    use std::io::Read as _;

    use crate::channel::SendError;
    let unreadable = |e: std::io::Error| SendError::Permanent(format!("cannot read {path}: {e}"));
    let moved = || {
        SendError::Permanent(format!(
            "{path} changed since the reply was written (a part of it is now a link elsewhere); not sent"
        ))
    };
    let wanted = std::path::Path::new(path);
    if std::fs::canonicalize(wanted).map_err(unreadable)? != wanted {
        return Err(moved());
    }
    let mut file = std::fs::File::open(wanted).map_err(unreadable)?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd as _;
        let opened = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).map_err(unreadable)?;
        if opened != wanted {
            return Err(moved());
        }
    }
    let meta = file.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(SendError::Permanent(format!("{path} is not a regular file")));
    }
    if meta.len() > max_bytes {
        return Err(SendError::Permanent(format!(
            "{path} is {} MB; {platform} takes at most {} MB from bots",
            meta.len() / (1024 * 1024),
            max_bytes / (1024 * 1024)
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // A file that grows after the size check is still cut at the limit.
    (&mut file).take(max_bytes + 1).read_to_end(&mut bytes).map_err(unreadable)?;
    if bytes.len() as u64 > max_bytes {
        return Err(SendError::Permanent(format!("{path} grew past {platform}'s limit while being read")));
    }
    Ok(bytes)
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
    use proptest::prelude::*;

    use super::*;

    #[cfg(unix)]
    #[tokio::test]
    async fn an_upload_is_read_only_from_the_path_that_was_checked() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let file = root.join("a.txt");
        std::fs::write(&file, b"inside").unwrap();
        let f = file.to_str().unwrap();
        assert_eq!(read_upload(f, 100, "Twin").await.unwrap(), b"inside");
        let e = read_upload(f, 3, "Twin").await.unwrap_err().to_string();
        assert!(e.contains("takes at most"), "{e}");

        // The checked file is replaced by a link to one outside: refused, not followed.
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret");
        std::fs::write(&secret, b"private").unwrap();
        std::fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink(&secret, &file).unwrap();
        let e = read_upload(f, 100, "Twin").await.unwrap_err().to_string();
        assert!(e.contains("changed since the reply was written"), "{e}");

        // So is a directory on the way that became a link.
        let sub = root.join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("b.txt"), b"b").unwrap();
        let b = sub.join("b.txt");
        std::fs::rename(&sub, root.join("sub-moved")).unwrap();
        std::os::unix::fs::symlink(outside.path(), &sub).unwrap();
        std::fs::write(outside.path().join("b.txt"), b"elsewhere").unwrap();
        let e = read_upload(b.to_str().unwrap(), 100, "Twin").await.unwrap_err().to_string();
        assert!(e.contains("changed since"), "{e}");
        let e = read_upload(root.join("gone").to_str().unwrap(), 100, "Twin").await.unwrap_err().to_string();
        assert!(e.contains("cannot read"), "{e}");
    }

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
