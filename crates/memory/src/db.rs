//! The memory index's SQLite file: one per agent (`<state>/memory/<agent>.sqlite`), apart from
//! the sessions database so indexing never holds up chat.
//!
//! ```text
//! meta(key, value)                       schema version, FTS tokenizer, vector model + dims
//! sources(path, source, hash, mtime, size, indexed_at)          one row per indexed file
//! chunks(id, path, source, start_line, end_line, hash, text, updated_at)
//! chunks_fts  FTS5(text), rowid = chunks.id       (unicode61, or trigram)
//! chunks_vec  vec0(embedding float[dims]), rowid = chunks.id   (sqlite-vec, made when a model answers)
//! embedding_cache(provider, model, hash, dims, embedding)      vectors by text hash
//! skipped(path, reason, at)                                    files left out on the last sync
//! ```
//!
//! sqlite-vec is compiled into the binary and registered with every connection at open
//! ([`open`]), so vector search cannot silently be missing at run time. Vectors are stored
//! normalized, so the L2 distance sqlite-vec returns gives the cosine similarity `1 − d²/2`.
//!
//! This file owns the schema; it must not decide what gets indexed.

use std::path::Path;
use std::sync::Once;

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::MemoryError;

/// The schema version in `meta`.
pub const SCHEMA: i64 = 1;

/// Registers sqlite-vec for every connection this process opens (once).
fn register_vec() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: `sqlite3_vec_init` has the signature of an SQLite extension entry point
        // (`int(sqlite3*, char**, const sqlite3_api_routines*)`); the crate declares it without
        // arguments (asg017/sqlite-vec#206), so it is cast to the type `sqlite3_auto_extension`
        // expects. It is linked statically with the same SQLite (`SQLITE_CORE`).
        unsafe {
            type Entry = unsafe extern "C" fn(
                *mut rusqlite::ffi::sqlite3,
                *mut *mut std::os::raw::c_char,
                *const rusqlite::ffi::sqlite3_api_routines,
            ) -> std::os::raw::c_int;
            let entry: Entry = std::mem::transmute(sqlite_vec::sqlite3_vec_init as *const ());
            rusqlite::ffi::sqlite3_auto_extension(Some(entry));
        }
    });
}

/// Opens (creating) the index at `path` with tables for `tokenizer` (`unicode61` or `trigram`).
pub fn open(path: &Path, tokenizer: &str) -> Result<Connection, MemoryError> {
    register_vec();
    if let Some(dir) = path.parent() {
        // Memory is private: the folder is made 0700 (the file inherits its protection).
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(dir).map_err(|e| MemoryError::io(dir, e))?;
    }
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    init(&conn, tokenizer)?;
    Ok(conn)
}

/// An index in memory (tests, benchmarks).
pub fn open_in_memory(tokenizer: &str) -> Result<Connection, MemoryError> {
    register_vec();
    let conn = Connection::open_in_memory()?;
    init(&conn, tokenizer)?;
    Ok(conn)
}

fn init(conn: &Connection, tokenizer: &str) -> Result<(), MemoryError> {
    let version: String = conn.query_row("SELECT vec_version()", [], |r| r.get(0))?;
    tracing::trace!(%version, "sqlite-vec");
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS sources(
             path TEXT NOT NULL, source TEXT NOT NULL, hash TEXT NOT NULL,
             mtime INTEGER NOT NULL, size INTEGER NOT NULL, indexed_at INTEGER NOT NULL,
             PRIMARY KEY(path, source));
         CREATE TABLE IF NOT EXISTS chunks(
             id INTEGER PRIMARY KEY, path TEXT NOT NULL, source TEXT NOT NULL,
             start_line INTEGER NOT NULL, end_line INTEGER NOT NULL, hash TEXT NOT NULL,
             text TEXT NOT NULL, updated_at INTEGER NOT NULL);
         CREATE INDEX IF NOT EXISTS chunks_by_path ON chunks(path, source);
         CREATE TABLE IF NOT EXISTS embedding_cache(
             provider TEXT NOT NULL, model TEXT NOT NULL, hash TEXT NOT NULL,
             dims INTEGER NOT NULL, embedding BLOB NOT NULL, updated_at INTEGER NOT NULL,
             PRIMARY KEY(provider, model, hash));
         CREATE TABLE IF NOT EXISTS skipped(path TEXT PRIMARY KEY, reason TEXT NOT NULL, at INTEGER NOT NULL);",
    )?;
    let found: Option<i64> = meta(conn, "schema")?.and_then(|v| v.parse().ok());
    match found {
        Some(v) if v > SCHEMA => return Err(MemoryError::TooNew { found: v, supported: SCHEMA }),
        Some(_) => {}
        None => set_meta(conn, "schema", &SCHEMA.to_string())?,
    }
    let tokenizer = if tokenizer == "trigram" { "trigram" } else { "unicode61" };
    if meta(conn, "fts_tokenizer")?.as_deref() != Some(tokenizer) {
        // A changed tokenizer rebuilds the text index from the stored chunks.
        conn.execute_batch("DROP TABLE IF EXISTS chunks_fts;")?;
        conn.execute_batch(&format!("CREATE VIRTUAL TABLE chunks_fts USING fts5(text, tokenize='{tokenizer}');"))?;
        conn.execute("INSERT INTO chunks_fts(rowid, text) SELECT id, text FROM chunks", [])?;
        set_meta(conn, "fts_tokenizer", tokenizer)?;
    }
    Ok(())
}

pub fn meta(conn: &Connection, key: &str) -> Result<Option<String>, MemoryError> {
    Ok(conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()?)
}

pub fn set_meta(conn: &Connection, key: &str, value: &str) -> Result<(), MemoryError> {
    conn.execute(
        "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// The vector table's model (`provider/model`) and dimensions, if one exists.
pub fn vector_model(conn: &Connection) -> Result<Option<(String, usize)>, MemoryError> {
    let model = meta(conn, "vector_model")?;
    let dims = meta(conn, "vector_dims")?.and_then(|d| d.parse().ok());
    Ok(model.zip(dims))
}

/// Makes the vector table for `model` with `dims`, replacing one for another model.
pub fn ensure_vector_table(conn: &Connection, model: &str, dims: usize) -> Result<bool, MemoryError> {
    if vector_model(conn)?.is_some_and(|(m, d)| m == model && d == dims) {
        return Ok(false);
    }
    conn.execute_batch("DROP TABLE IF EXISTS chunks_vec;")?;
    conn.execute_batch(&format!("CREATE VIRTUAL TABLE chunks_vec USING vec0(embedding float[{dims}]);"))?;
    set_meta(conn, "vector_model", model)?;
    set_meta(conn, "vector_dims", &dims.to_string())?;
    Ok(true)
}

/// Whether the vector table exists.
pub fn has_vector_table(conn: &Connection) -> Result<bool, MemoryError> {
    let n: i64 = conn.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'chunks_vec'", [], |r| r.get(0))?;
    Ok(n > 0)
}

/// Little-endian f32 bytes, the form sqlite-vec takes.
pub fn vector_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The inverse of [`vector_blob`].
pub fn blob_vector(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_and_fts_are_built_in() {
        let conn = open_in_memory("unicode61").unwrap();
        ensure_vector_table(&conn, "t/m", 2).unwrap();
        for (id, v) in [(1i64, [1.0f32, 0.0]), (2, [0.0, 1.0])] {
            conn.execute("INSERT INTO chunks_vec(rowid, embedding) VALUES (?1, ?2)", params![id, vector_blob(&v)])
                .unwrap();
        }
        let (id, d): (i64, f64) = conn
            .query_row(
                "SELECT rowid, distance FROM chunks_vec WHERE embedding MATCH ?1 AND k = 1",
                [vector_blob(&[0.9, 0.1])],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(id, 1);
        assert!(d > 0.0 && d < 0.2);
        conn.execute("INSERT INTO chunks_fts(rowid, text) VALUES (7, 'the blue car')", []).unwrap();
        let hit: i64 =
            conn.query_row("SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH '\"blue\"'", [], |r| r.get(0)).unwrap();
        assert_eq!(hit, 7);
        assert!(!ensure_vector_table(&conn, "t/m", 2).unwrap(), "same model keeps its table");
        assert!(ensure_vector_table(&conn, "t/m", 3).unwrap(), "other dims replace it");
    }

    #[test]
    fn a_newer_index_is_refused_and_tokenizer_changes_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sqlite");
        let conn = open(&path, "unicode61").unwrap();
        conn.execute("INSERT INTO chunks(id, path, source, start_line, end_line, hash, text, updated_at) VALUES (1, 'a', 'memory', 1, 1, 'h', 'lighthouse keeper', 0)", []).unwrap();
        conn.execute("INSERT INTO chunks_fts(rowid, text) VALUES (1, 'lighthouse keeper')", []).unwrap();
        drop(conn);
        let conn = open(&path, "trigram").unwrap();
        let hit: i64 = conn
            .query_row("SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH '\"hthou\"'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(hit, 1, "trigram matches inside words");
        set_meta(&conn, "schema", "99").unwrap();
        drop(conn);
        assert!(matches!(open(&path, "trigram"), Err(MemoryError::TooNew { found: 99, .. })));
    }
}
