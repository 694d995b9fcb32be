//! Where things live under the state directory, and creating it privately.
//!
//! ```text
//! <state>/clawline.json          config (JSON5)
//! <state>/state/clawline.sqlite  sessions, transcripts, runs, secrets (+ -wal, -shm)
//! <state>/credentials/master.key key that encrypts the secrets (0600), or
//! <state>/credentials/master.key.keyring  where in the OS keyring it is (no secret)
//! <state>/observability.sqlite    one row per run, model call and tool call (`clawline usage`)
//! <state>/logs/                  JSON-lines logs
//! <state>/workspace/             the default agent's workspace
//! ```

use std::path::{Path, PathBuf};

use crate::error::StoreError;

/// Paths under one state directory.
#[derive(Debug, Clone)]
pub struct StatePaths {
    pub root: PathBuf,
}

impl StatePaths {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn default_config_file(&self) -> PathBuf {
        self.root.join("clawline.json")
    }

    pub fn database(&self) -> PathBuf {
        self.root.join("state").join("clawline.sqlite")
    }

    pub fn master_key(&self) -> PathBuf {
        self.root.join("credentials").join("master.key")
    }

    /// Written by `clawline-observe` (see the agent's `observer`), read by `clawline usage`.
    pub fn observability(&self) -> PathBuf {
        self.root.join("observability.sqlite")
    }

    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Held (with an OS file lock) by the process that runs agents on this state directory.
    pub fn run_lock(&self) -> PathBuf {
        self.root.join("state").join("run.lock")
    }
}

/// The right to run agents on a state directory: one gateway, or one `agent --local`, at a time.
///
/// It is an OS advisory lock (`flock`) on `state/run.lock`, released by the kernel when the
/// process ends however it ends, so it can never be left behind by a crash.
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    /// Takes the lock, or fails at once with [`StoreError::Busy`] if another process holds it.
    pub fn acquire(paths: &StatePaths) -> Result<RunLock, StoreError> {
        let path = paths.run_lock();
        if let Some(dir) = path.parent() {
            ensure_private_dir(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(RunLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Busy(paths.root.display().to_string())),
            Err(std::fs::TryLockError::Error(e)) => Err(StoreError::io(&path, e)),
        }
    }
}

/// Creates `dir` (and parents) and restricts it to the owner (0700 on Unix).
pub fn ensure_private_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| StoreError::io(dir, e))?;
    }
    Ok(())
}

/// Writes a file readable only by its owner, atomically: a temp file beside it, synced, then
/// renamed over the target, so readers see the old or the new text, never half of it.
pub fn write_private_file(path: &Path, text: &str) -> Result<(), StoreError> {
    use std::io::Write;
    let mut tmp_name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
        f.write_all(text.as_bytes()).map_err(|e| StoreError::io(&tmp, e))?;
        f.sync_all().map_err(|e| StoreError::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| StoreError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_run_lock_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StatePaths::new(dir.path());
        let first = RunLock::acquire(&paths).unwrap();
        assert!(matches!(RunLock::acquire(&paths), Err(StoreError::Busy(_))));
        drop(first);
        assert!(RunLock::acquire(&paths).is_ok(), "released when the holder goes away");
    }
}
