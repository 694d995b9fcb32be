//! Where things live under the state directory, and creating it privately.
//!
//! ```text
//! <state>/clawline.json          config (JSON5)
//! <state>/state/clawline.sqlite  sessions, transcripts, runs, secrets (+ -wal, -shm)
//! <state>/credentials/master.key key that encrypts the secrets (0600)
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

    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
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
