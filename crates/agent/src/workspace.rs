//! The agent workspace: its folder, the bootstrap files that shape the agent, and their caps.
//!
//! A brand-new workspace gets four short starter files. They are the user's to edit; once the
//! folder exists clawline never recreates a file the user deleted. At each turn the files are
//! read fresh and injected into the system prompt, each cut at `bootstrapMaxChars` and all of
//! them together at `bootstrapTotalMaxChars`, with a visible marker where text was cut.

use std::path::{Path, PathBuf};

/// Files injected into the system prompt, in order.
pub const BOOTSTRAP_FILES: &[&str] = &["AGENTS.md", "SOUL.md", "IDENTITY.md", "USER.md"];

const AGENTS_MD: &str = "# How to work

- Answer the question that was asked. Be brief unless asked for detail.
- Use tools when they help: read files before editing them, check results after changing them.
- Keep notes worth remembering in files in this workspace.
- Ask before doing anything that is hard to undo.
- Never reveal secrets, keys or tokens, even if asked.
";

const SOUL_MD: &str = "# Character

Warm, direct and honest. Say plainly when you do not know something or cannot do it.
Prefer clear sentences to lists, and lists to walls of text.
";

const IDENTITY_MD: &str = "# Identity

- Name: (not chosen yet: ask your person what they would like to call you)
- Style: calm, practical
";

const USER_MD: &str = "# About the person you help

(Nothing yet. Add what you learn that helps: name, time zone, preferences.)
";

fn template(name: &str) -> &'static str {
    match name {
        "AGENTS.md" => AGENTS_MD,
        "SOUL.md" => SOUL_MD,
        "IDENTITY.md" => IDENTITY_MD,
        _ => USER_MD,
    }
}

/// Creates the workspace with starter files if it does not exist yet. Returns its canonical
/// path and whether it was created now.
pub fn ensure(dir: &Path) -> std::io::Result<(PathBuf, bool)> {
    let created = !dir.exists();
    if created {
        std::fs::create_dir_all(dir)?;
        for name in BOOTSTRAP_FILES {
            std::fs::write(dir.join(name), template(name))?;
        }
    }
    Ok((dir.canonicalize()?, created))
}

/// One bootstrap file as injected.
#[derive(Debug, Clone, PartialEq)]
pub struct BootstrapFile {
    pub name: &'static str,
    /// The (possibly cut) content; empty when the file is missing.
    pub content: String,
    pub missing: bool,
    /// Characters in the file on disk.
    pub chars: usize,
    pub truncated: bool,
}

/// Reads the bootstrap files with the per-file and total character caps.
pub fn load_bootstrap(dir: &Path, per_file: usize, total: usize) -> Vec<BootstrapFile> {
    let mut budget = total;
    BOOTSTRAP_FILES
        .iter()
        .map(|name| match std::fs::read_to_string(dir.join(name)) {
            Ok(text) => {
                let chars = text.chars().count();
                let cap = per_file.min(budget);
                let (kept, truncated) = clawline_core::text::truncate_chars(&text, cap);
                budget -= kept.chars().count();
                BootstrapFile { name, content: kept.to_string(), missing: false, chars, truncated }
            }
            Err(_) => BootstrapFile { name, content: String::new(), missing: true, chars: 0, truncated: false },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_and_caps() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        let (path, created) = ensure(&ws).unwrap();
        assert!(created);
        assert!(path.join("SOUL.md").is_file());
        std::fs::remove_file(ws.join("SOUL.md")).unwrap();
        let (_, created) = ensure(&ws).unwrap();
        assert!(!created);
        assert!(!ws.join("SOUL.md").exists(), "a deleted file is not recreated");

        std::fs::write(ws.join("AGENTS.md"), "x".repeat(100)).unwrap();
        let files = load_bootstrap(&ws, 40, 60);
        assert_eq!(files[0].content.len(), 40);
        assert!(files[0].truncated);
        assert!(files[1].missing);
        // The total cap leaves 20 characters for the rest.
        assert_eq!(files[2].content.chars().count(), 20);
        assert!(files[3].content.is_empty());
    }
}
