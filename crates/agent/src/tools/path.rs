//! Confining paths to the workspace.
//!
//! A path from the model is resolved against the workspace, normalized lexically (`.` and `..`),
//! and refused if it leaves the workspace. Then the deepest part of it that exists is resolved
//! through symlinks and checked again, so a symlink inside the workspace cannot point the tools
//! outside it.

use std::path::{Component, Path, PathBuf};

/// Resolves `requested` inside `workspace` (which must be canonical). The result may not exist.
pub fn resolve(workspace: &Path, requested: &str) -> Result<PathBuf, String> {
    let requested = requested.trim();
    if requested.is_empty() {
        return Err("the path is empty".into());
    }
    if requested.starts_with('~') {
        return Err(format!("`{requested}`: `~` is not expanded; paths are relative to the workspace"));
    }
    if requested.contains('\0') {
        return Err("the path contains a NUL byte".into());
    }
    let joined = if Path::new(requested).is_absolute() { PathBuf::from(requested) } else { workspace.join(requested) };
    let mut normal = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                if !normal.pop() {
                    return Err(format!("`{requested}` is outside the workspace"));
                }
            }
            Component::CurDir => {}
            other => normal.push(other.as_os_str()),
        }
    }
    if !normal.starts_with(workspace) {
        return Err(format!("`{requested}` is outside the workspace ({})", workspace.display()));
    }
    // Follow symlinks in the part that exists.
    let mut existing = normal.as_path();
    while !existing.exists() {
        match existing.parent() {
            Some(p) => existing = p,
            None => break,
        }
    }
    let real = existing.canonicalize().map_err(|e| format!("`{requested}`: {e}"))?;
    if !real.starts_with(workspace) {
        return Err(format!("`{requested}` leads outside the workspace through a symbolic link"));
    }
    match normal.strip_prefix(existing) {
        Ok(rest) if !rest.as_os_str().is_empty() => Ok(real.join(rest)),
        _ => Ok(real),
    }
}

/// Shows `path` relative to the workspace when it is inside it.
pub fn display(workspace: &Path, path: &Path) -> String {
    match path.strip_prefix(workspace) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".to_string(),
        Ok(rel) => rel.display().to_string(),
        Err(_) => path.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confines_to_the_workspace() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().canonicalize().unwrap();
        std::fs::create_dir(ws.join("sub")).unwrap();
        std::fs::write(ws.join("sub/file.txt"), "x").unwrap();
        assert_eq!(resolve(&ws, "sub/file.txt").unwrap().as_os_str(), ws.join("sub/file.txt").as_os_str());
        assert_eq!(resolve(&ws, "a.txt").unwrap(), ws.join("a.txt"));
        assert_eq!(resolve(&ws, "./sub/../b.txt").unwrap(), ws.join("b.txt"));
        assert_eq!(resolve(&ws, "new/deep/c.txt").unwrap(), ws.join("new/deep/c.txt"));
        assert_eq!(resolve(&ws, ws.join("sub").to_str().unwrap()).unwrap(), ws.join("sub"));
        assert!(resolve(&ws, "../etc/passwd").unwrap_err().contains("outside the workspace"));
        assert!(resolve(&ws, "/etc/passwd").unwrap_err().contains("outside the workspace"));
        assert!(resolve(&ws, "sub/../../x").is_err());
        assert!(resolve(&ws, "~/.ssh/id_rsa").is_err());
        assert!(resolve(&ws, "").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_cannot_escape() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().canonicalize().unwrap();
        std::os::unix::fs::symlink(outside.path(), ws.join("link")).unwrap();
        assert!(resolve(&ws, "link/secret.txt").unwrap_err().contains("symbolic link"));
        std::os::unix::fs::symlink(ws.join("sub2"), ws.join("inner")).unwrap();
        std::fs::create_dir(ws.join("sub2")).unwrap();
        assert_eq!(resolve(&ws, "inner/x").unwrap(), ws.join("sub2/x"));
    }
}
