//! Files between chat channels and an agent's workspace.
//!
//! A file that came with a message is saved under `inbox/<YYYY-MM-DD>/` in the answering
//! agent's workspace (named by the message, so a retried turn rewrites the same file) and the
//! agent is told where, as a `MEDIA:<path>` line, so its file tools can open it. A `MEDIA:` line
//! in an answer becomes a file to send: a workspace path (resolved and confined like the file
//! tools' paths, so an answer cannot send `/etc/passwd`) or an `http(s)` URL; a line naming
//! something else is replaced by a note saying why it was not attached. Nothing here talks to a
//! platform.

use std::path::{Path, PathBuf};

use clawline_agent::tools::path;
use clawline_channels::media::{Media, display_name, kind_of, split_media};
use clawline_channels::{InboundFile, Reply};

/// Where files from channels go inside a workspace.
const INBOX: &str = "inbox";

/// Saves `files` in `workspace` and returns the lines that tell the agent about them.
pub async fn save_inbound(workspace: &Path, files: Vec<InboundFile>, now_ms: i64) -> Vec<String> {
    let day = clawline_core::time::iso8601_from_ms(now_ms)[..10].to_string();
    let workspace = workspace.to_path_buf();
    let saved = tokio::task::spawn_blocking(move || {
        let dir = workspace.join(INBOX).join(&day);
        // The inbox must really be inside the workspace: a symbolic link planted there (by a
        // tool run, say) must not send files elsewhere.
        let linked = [workspace.join(INBOX), dir.clone()]
            .iter()
            .any(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink()));
        let inside = if linked {
            Ok(false)
        } else {
            std::fs::create_dir_all(&dir).and_then(|()| {
                let (real, root) = (dir.canonicalize()?, workspace.canonicalize()?);
                Ok(real.starts_with(&root))
            })
        };
        if !matches!(inside, Ok(true)) {
            let why = match inside {
                Err(e) => e.to_string(),
                Ok(_) => format!("{INBOX}/ leads outside the workspace"),
            };
            return files.iter().map(|f| format!("[{} received, but it could not be saved: {why}]", f.kind)).collect();
        }
        files
            .into_iter()
            .map(|f| {
                let name = format!("{}-{}", f.stem, file_name(&f));
                let path = dir.join(&name);
                let rel = format!("{INBOX}/{day}/{name}");
                let outcome = std::fs::write(&path, &f.bytes);
                match outcome {
                    Ok(()) => format!(
                        "[{} received ({}, {}), saved in the workspace:]\nMEDIA:{rel}",
                        f.kind,
                        f.mime.as_deref().unwrap_or("unknown type"),
                        size(f.bytes.len())
                    ),
                    Err(e) => format!("[{} received, but it could not be saved: {e}]", f.kind),
                }
            })
            .collect::<Vec<_>>()
    })
    .await;
    saved.unwrap_or_default()
}

/// A safe file name: the platform's name when there is one, else the kind with an extension
/// from the MIME type.
fn file_name(f: &InboundFile) -> String {
    let raw = match &f.name {
        Some(n) => display_name(n),
        None => format!("{}{}", f.kind, extension(f.mime.as_deref())),
    };
    let clean: String = raw
        .chars()
        .map(|c| if c.is_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
        .take(80)
        .collect();
    let clean = clean.trim_start_matches('.').to_string();
    if clean.is_empty() { f.kind.clone() } else { clean }
}

fn extension(mime: Option<&str>) -> &'static str {
    match mime.unwrap_or_default() {
        "image/jpeg" => ".jpg",
        "image/png" => ".png",
        "image/webp" => ".webp",
        "image/gif" => ".gif",
        "audio/ogg" => ".ogg",
        "audio/mpeg" => ".mp3",
        "video/mp4" => ".mp4",
        "application/pdf" => ".pdf",
        "text/plain" => ".txt",
        // Telegram sends photos without a MIME type; they are always JPEG.
        "" => ".jpg",
        _ => "",
    }
}

fn size(bytes: usize) -> String {
    if bytes < 1024 { format!("{bytes} bytes") } else { format!("{:.1} KB", bytes as f64 / 1024.0) }
}

/// The answer with its `MEDIA:` lines turned into files to send.
pub fn answer(workspace: &Path, text: String) -> Reply {
    let (mut kept, refs) = split_media(&text);
    if refs.is_empty() {
        return Reply::Text(text);
    }
    let workspace = workspace.canonicalize().unwrap_or_else(|_| workspace.to_path_buf());
    let mut media = Vec::new();
    for r in refs {
        match resolve(&workspace, &r) {
            Ok(m) => media.push(m),
            Err(why) => {
                tracing::info!(reference = %r, reason = %why, "a file named in an answer was not attached");
                if !kept.is_empty() {
                    kept.push('\n');
                }
                kept.push_str(&format!("(not attached: {why})"));
            }
        }
    }
    Reply::WithMedia(kept, media)
}

fn resolve(workspace: &Path, reference: &str) -> Result<Media, String> {
    let name = display_name(reference);
    let kind = kind_of(&name).to_string();
    if reference.starts_with("https://") || reference.starts_with("http://") {
        return Ok(Media { kind, path: None, url: Some(reference.to_string()), name });
    }
    let p: PathBuf = path::resolve(workspace, reference)?;
    if !p.is_file() {
        return Err(format!("`{reference}` is not a file in the workspace"));
    }
    Ok(Media { kind, path: Some(p.display().to_string()), url: None, name })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn inbound_files_land_in_the_inbox_under_stable_names() {
        let ws = tempfile::tempdir().unwrap();
        let file =
            InboundFile { kind: "photo".into(), name: None, mime: None, bytes: vec![1, 2, 3], stem: "7_10-0".into() };
        let lines = save_inbound(ws.path(), vec![file.clone()], 1_764_633_600_000).await;
        assert_eq!(
            lines,
            [
                "[photo received (unknown type, 3 bytes), saved in the workspace:]\nMEDIA:inbox/2025-12-02/7_10-0-photo.jpg"
            ]
        );
        assert_eq!(std::fs::read(ws.path().join("inbox/2025-12-02/7_10-0-photo.jpg")).unwrap(), [1, 2, 3]);
        // A hostile name stays a plain file name inside the inbox.
        let evil = InboundFile { name: Some("../../.bashrc".into()), kind: "document".into(), ..file };
        let lines = save_inbound(ws.path(), vec![evil.clone()], 1_764_633_600_000).await;
        assert!(lines[0].ends_with("MEDIA:inbox/2025-12-02/7_10-0-bashrc"), "{lines:?}");
        // An inbox that is a link out of the workspace is not written through.
        let other = tempfile::tempdir().unwrap();
        let ws2 = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(other.path(), ws2.path().join("inbox")).unwrap();
        let lines = save_inbound(ws2.path(), vec![evil], 1_764_633_600_000).await;
        assert!(lines[0].contains("could not be saved") && lines[0].contains("outside the workspace"), "{lines:?}");
        assert_eq!(std::fs::read_dir(other.path()).unwrap().count(), 0, "nothing written through the link");
    }

    #[test]
    fn answers_attach_workspace_files_and_urls_and_refuse_the_rest() {
        let ws = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(ws.path().join("charts")).unwrap();
        std::fs::write(ws.path().join("charts/q3.png"), b"png").unwrap();
        let reply = answer(
            ws.path(),
            "Here:\nMEDIA:charts/q3.png\nMEDIA:https://x.test/r.pdf\nMEDIA:/etc/passwd\nMEDIA:missing.txt".into(),
        );
        let Reply::WithMedia(text, media) = reply else { panic!("{reply:?}") };
        assert_eq!(media.len(), 2);
        assert_eq!((media[0].kind.as_str(), media[0].name.as_str()), ("photo", "q3.png"));
        assert!(media[0].path.as_deref().unwrap().ends_with("charts/q3.png"));
        assert_eq!(media[1].url.as_deref(), Some("https://x.test/r.pdf"));
        assert!(text.starts_with("Here:\n(not attached: `/etc/passwd` is outside the workspace"), "{text}");
        assert!(text.ends_with("(not attached: `missing.txt` is not a file in the workspace)"), "{text}");
        assert_eq!(answer(ws.path(), "plain".into()), Reply::Text("plain".into()));
    }
}
