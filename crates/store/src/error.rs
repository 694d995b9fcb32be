//! Store errors.

/// What can go wrong with the state store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("file error at {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(
        "the database at {path} has schema version {found}, newer than this clawline understands ({supported}); upgrade clawline"
    )]
    TooNew { path: String, found: i64, supported: i64 },
    #[error("a stored record is not valid JSON: {0}")]
    Corrupt(String),
    #[error("the store thread has stopped")]
    Stopped,
    #[error("session `{0}` does not exist")]
    NoSession(String),
    #[error("secret `{0}` could not be decrypted: the master key does not match the one it was stored with")]
    Decrypt(String),
    #[error(
        "another clawline process is running agents on {0} (a gateway, or `clawline agent --local`); stop it, or use another --state-dir"
    )]
    Busy(String),
    #[error("run id `{0}` is already used by another session; pick a new idempotency key")]
    RunIdTaken(String),
    #[error("master key problem: {0}")]
    Key(String),
}

impl StoreError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        StoreError::Io { path: path.display().to_string(), source }
    }
}
