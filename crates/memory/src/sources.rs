//! Which files are memory: `MEMORY.md` and `USER.md` at the workspace root, every `*.md` under
//! `memory/`, and the configured extra paths (files, or folders searched for `*.md`).
//!
//! The workspace's content is not trusted: a symlink under `memory/` that leads outside the
//! workspace is skipped, folders are visited once however many links lead to them (no loops),
//! and depth is bounded. Extra paths come from the config, which is trusted, so they may be
//! anywhere. Reading and checking content (size, binary, UTF-8) happens in [`read_text`].
//!
//! This file reads the file system and must not write to it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The deepest folder level searched.
const MAX_DEPTH: usize = 16;

/// A file to index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// What the index and the tools call it: relative to the workspace with `/` separators, or
    /// absolute for extra paths outside it.
    pub path: String,
    pub abs: PathBuf,
    pub size: u64,
    pub mtime_ms: i64,
}

/// A file left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

/// The files found, and the ones left out.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    pub files: Vec<SourceFile>,
    pub skipped: Vec<Skipped>,
}

struct Walk<'a> {
    workspace: &'a Path,
    seen_dirs: HashSet<PathBuf>,
    seen_files: HashSet<PathBuf>,
    out: Discovery,
}

/// The name a file has in the index.
pub fn display_path(workspace: &Path, abs: &Path) -> String {
    match abs.strip_prefix(workspace) {
        Ok(rel) => rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/"),
        Err(_) => abs.display().to_string(),
    }
}

fn mtime_ms(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Walk<'_> {
    fn skip(&mut self, path: &Path, reason: impl Into<String>) {
        let path = display_path(self.workspace, path);
        self.out.skipped.push(Skipped { path, reason: reason.into() });
    }

    /// Adds one file (following a symlink), if `confined` only when it resolves inside the workspace.
    fn file(&mut self, path: &Path, confined: bool) {
        let real = match std::fs::canonicalize(path) {
            Ok(r) => r,
            Err(e) => return self.skip(path, format!("cannot be resolved: {e}")),
        };
        if confined && !real.starts_with(self.workspace) {
            return self.skip(path, "links outside the workspace");
        }
        let meta = match std::fs::metadata(&real) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return self.skip(path, "is not a regular file"),
            Err(e) => return self.skip(path, format!("cannot be read: {e}")),
        };
        if !self.seen_files.insert(real.clone()) {
            return;
        }
        // Files are named by where they are found, so a link keeps its own name.
        let shown = if path.starts_with(self.workspace) { path.to_path_buf() } else { real.clone() };
        self.out.files.push(SourceFile {
            path: display_path(self.workspace, &shown),
            abs: real,
            size: meta.len(),
            mtime_ms: mtime_ms(&meta),
        });
    }

    /// Adds every `*.md` below `dir`.
    fn dir(&mut self, dir: &Path, depth: usize, confined: bool) {
        let real = match std::fs::canonicalize(dir) {
            Ok(r) => r,
            Err(e) => return self.skip(dir, format!("cannot be resolved: {e}")),
        };
        if confined && !real.starts_with(self.workspace) {
            return self.skip(dir, "links outside the workspace");
        }
        if !self.seen_dirs.insert(real) {
            return; // A loop, or a second link to a folder already searched.
        }
        if depth > MAX_DEPTH {
            return self.skip(dir, format!("is nested deeper than {MAX_DEPTH} folders"));
        }
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(rd) => rd.filter_map(Result::ok).map(|e| e.path()).collect(),
            Err(e) => return self.skip(dir, format!("cannot be listed: {e}")),
        };
        entries.sort();
        for entry in entries {
            let name = entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if name.starts_with('.') {
                continue;
            }
            match std::fs::metadata(&entry) {
                Ok(m) if m.is_dir() => self.dir(&entry, depth + 1, confined),
                Ok(_) if name.to_ascii_lowercase().ends_with(".md") => self.file(&entry, confined),
                Ok(_) => {}
                Err(e) => self.skip(&entry, format!("cannot be read: {e}")),
            }
        }
    }
}

/// Finds the memory files of `workspace` (which must be canonical) and `extra_paths` (relative
/// to the workspace, or absolute).
pub fn discover(workspace: &Path, extra_paths: &[String]) -> Discovery {
    let mut walk = Walk { workspace, seen_dirs: HashSet::new(), seen_files: HashSet::new(), out: Discovery::default() };
    for name in ["MEMORY.md", "USER.md"] {
        let p = workspace.join(name);
        if std::fs::symlink_metadata(&p).is_ok() {
            walk.file(&p, true);
        }
    }
    let memory = workspace.join("memory");
    if memory.is_dir() {
        walk.dir(&memory, 0, true);
    }
    for extra in extra_paths {
        let p = if Path::new(extra).is_absolute() { PathBuf::from(extra) } else { workspace.join(extra) };
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => walk.dir(&p, 0, false),
            Ok(_) => walk.file(&p, false),
            Err(e) => walk.skip(&p, format!("(memory.search.extraPaths) cannot be read: {e}")),
        }
    }
    walk.out
}

/// Why a file's content is not indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    TooLarge { size: u64, limit: u64 },
    Binary,
    NotUtf8 { at: usize },
    Io(String),
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreadable::TooLarge { size, limit } => {
                write!(f, "is {} KiB, over the {} KiB limit", size / 1024, limit / 1024)
            }
            Unreadable::Binary => f.write_str("is binary (it contains NUL bytes)"),
            Unreadable::NotUtf8 { at } => write!(f, "is not UTF-8 text (invalid byte at offset {at})"),
            Unreadable::Io(e) => write!(f, "cannot be read: {e}"),
        }
    }
}

/// Reads a memory file as text: at most `limit` bytes, no NUL bytes, valid UTF-8.
pub fn read_text(path: &Path, limit: u64) -> Result<String, Unreadable> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| Unreadable::Io(e.to_string()))?;
    let size = file.metadata().map_err(|e| Unreadable::Io(e.to_string()))?.len();
    if size > limit {
        return Err(Unreadable::TooLarge { size, limit });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // A file that grows while being read is still cut at the limit.
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|e| Unreadable::Io(e.to_string()))?;
    if bytes.len() as u64 > limit {
        return Err(Unreadable::TooLarge { size: bytes.len() as u64, limit });
    }
    if bytes.contains(&0) {
        return Err(Unreadable::Binary);
    }
    String::from_utf8(bytes).map_err(|e| Unreadable::NotUtf8 { at: e.utf8_error().valid_up_to() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        (dir, root)
    }

    #[test]
    fn finds_the_memory_files_and_nothing_else() {
        let (_d, root) = ws();
        std::fs::write(root.join("MEMORY.md"), "m").unwrap();
        std::fs::write(root.join("AGENTS.md"), "not memory").unwrap();
        std::fs::create_dir_all(root.join("memory/2026")).unwrap();
        std::fs::write(root.join("memory/2026/2026-11-30.md"), "day").unwrap();
        std::fs::write(root.join("memory/notes.txt"), "not markdown").unwrap();
        std::fs::write(root.join("memory/.hidden.md"), "hidden").unwrap();
        let d = discover(&root, &[]);
        let names: Vec<&str> = d.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names, ["MEMORY.md", "memory/2026/2026-11-30.md"]);
        assert!(d.skipped.is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn links_out_and_loops_are_skipped_or_visited_once() {
        let (_d, root) = ws();
        let (_o, outside) = ws();
        std::fs::write(outside.join("secret.md"), "s").unwrap();
        std::fs::create_dir_all(root.join("memory/a")).unwrap();
        std::fs::write(root.join("memory/a/x.md"), "x").unwrap();
        std::os::unix::fs::symlink(outside.join("secret.md"), root.join("memory/leak.md")).unwrap();
        std::os::unix::fs::symlink(root.join("memory"), root.join("memory/a/loop")).unwrap();
        let d = discover(&root, &[]);
        let names: Vec<&str> = d.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names, ["memory/a/x.md"]);
        assert_eq!(d.skipped.len(), 1, "{:?}", d.skipped);
        assert!(d.skipped[0].reason.contains("outside the workspace"));
        // The config may name a folder anywhere.
        let d = discover(&root, &[outside.display().to_string(), "missing.md".into()]);
        assert!(d.files.iter().any(|f| f.path.ends_with("secret.md") && f.path.starts_with('/')));
        assert!(d.skipped.iter().any(|s| s.path == "missing.md" && s.reason.contains("extraPaths")));
    }

    #[test]
    fn content_checks_name_the_problem() {
        let (_d, root) = ws();
        std::fs::write(root.join("big.md"), vec![b'a'; 2048]).unwrap();
        std::fs::write(root.join("bin.md"), b"ab\0cd").unwrap();
        std::fs::write(root.join("latin1.md"), b"caf\xe9").unwrap();
        std::fs::write(root.join("ok.md"), "fine").unwrap();
        assert!(matches!(read_text(&root.join("big.md"), 1024), Err(Unreadable::TooLarge { size: 2048, .. })));
        assert_eq!(read_text(&root.join("bin.md"), 1024), Err(Unreadable::Binary));
        assert_eq!(read_text(&root.join("latin1.md"), 1024), Err(Unreadable::NotUtf8 { at: 3 }));
        assert_eq!(read_text(&root.join("ok.md"), 1024).unwrap(), "fine");
    }
}
