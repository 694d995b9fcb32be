//! Errors of the memory index. A failing embedding provider is not one of them: the index keeps
//! working on text and reports why (see `index::Mode`).

/// What went wrong opening, writing or reading the index.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("memory index database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("file error at {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(
        "the memory index has schema version {found}, newer than this clawline understands ({supported}); upgrade clawline or delete the index to rebuild it"
    )]
    TooNew { found: i64, supported: i64 },
    #[error("{0}")]
    NotFound(String),
    #[error("full-text search: {0}")]
    Fts(String),
    #[error("the memory index worker stopped")]
    Stopped,
}

impl MemoryError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        MemoryError::Io { path: path.display().to_string(), source }
    }
}
