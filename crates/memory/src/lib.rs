//! Long-term memory for agents: the workspace's markdown memory (and, when asked, past transcripts)
//! chunked into a per-agent SQLite index with full-text search (FTS5) and vector search (sign
//! bits in memory, exact rescoring from SQLite), searched with hybrid scoring.
//!
//! - [`sources`]: which files are memory, and reading them safely.
//! - [`chunk`]: overlapping chunks with line ranges.
//! - [`embed`]: the [`embed::Embedder`] interface and checks of what embedders answer.
//! - [`db`]: the index's schema.
//! - [`bm25`]: the text leg's BM25 as an FTS5 function that remembers chunk lengths.
//! - [`vectors`]: the in-memory sign-bit index that shortlists chunks for a query vector.
//! - [`scoring`]: merging vector and text hits, decay, MMR, thresholds.
//! - [`transcripts`]: past conversations as a source, and when one is indexed again.
//! - [`index`]: [`index::MemoryIndex`] — sync, search, get, status.
//! - [`watch`]: a debounced watcher that syncs an index when its files change.
//! - `local` (feature `local`): embeddings computed in this process by a BERT-family model.
//!
//! Nothing here talks to the network; embedders are given to the index.

pub mod bm25;
pub mod chunk;
pub mod db;
pub mod embed;
mod error;
pub mod index;
#[cfg(feature = "local")]
pub mod local;
pub mod scoring;
pub mod sources;
pub mod transcripts;
pub mod vectors;
pub mod watch;

pub use error::MemoryError;
