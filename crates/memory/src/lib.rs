//! Long-term memory for agents: the workspace's markdown memory (and, later, past transcripts)
//! chunked into a per-agent SQLite index with full-text search (FTS5) and vector search
//! (sqlite-vec, compiled in), searched with hybrid scoring.
//!
//! - [`sources`]: which files are memory, and reading them safely.
//! - [`chunk`]: overlapping chunks with line ranges.
//! - [`embed`]: the [`embed::Embedder`] interface and checks of what embedders answer.
//! - [`db`]: the index's schema and sqlite-vec.
//! - [`scoring`]: merging vector and text hits, decay, MMR, thresholds.
//! - [`index`]: [`index::MemoryIndex`] — sync, search, get, status.
//! - `local` (feature `local`): embeddings computed in this process by a BERT-family model.
//!
//! Nothing here talks to the network; embedders are given to the index.

pub mod chunk;
pub mod db;
pub mod embed;
mod error;
pub mod index;
#[cfg(feature = "local")]
pub mod local;
pub mod scoring;
pub mod sources;

pub use error::MemoryError;
