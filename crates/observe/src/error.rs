//! The one error type of this crate: the observability store could not be opened or read.

/// What went wrong with `observability.sqlite`.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("observability store {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("observability store {path}: {message}")]
    Io { path: String, message: String },
    #[error("the observability store's writer has stopped")]
    Stopped,
}
