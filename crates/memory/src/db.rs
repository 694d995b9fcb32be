//! The memory index's SQLite file: one per agent (`<state>/memory/<agent>.sqlite`), apart from
//! the sessions database so indexing never holds up chat.
//!
//! ```text
//! meta(key, value)              schema version, FTS tokenizer, vector model + dims, vector_gen
//! sources(path, source, hash, mtime, size, indexed_at)   one row per indexed file or transcript
//!                               (a transcript's `mtime` is its message count, `size` its bytes)
//! chunks(id, path, source, start_line, end_line, hash, text, updated_at)   ids never reused
//! chunks_fts  FTS5(text), rowid = chunks.id       (unicode61, or trigram)
//! chunk_vectors(id = chunks.id, stamp, embedding)   f32 little-endian, normalized
//! embedding_cache(provider, model, hash, dims, embedding)      vectors by text hash
//! skipped(path, reason, at)                                    files left out on the last sync
//! ```
//!
//! Vectors are plain rows; the search structure over them lives in memory (`vectors.rs`), so
//! nothing has to be loaded into SQLite at run time and vector search cannot silently be
//! missing. Every transaction that adds or removes vectors raises `meta.vector_gen` and stamps
//! the rows it adds with it, so any process holding the in-memory structure can tell what
//! changed since it last looked ([`vector_gen`]).
//!
//! Schema 1 (development builds before 0.1) kept vectors in a sqlite-vec table, which this
//! build cannot read; such a file is rebuilt around its embedding cache at open
//! ([`upgrade_schema_1`]), so no text is embedded twice.
//!
//! This file owns the schema; it must not decide what gets indexed.

use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::bm25::{self, LengthCache};
use crate::error::MemoryError;

/// The schema version in `meta`.
pub const SCHEMA: i64 = 2;

/// Opens (creating) the index at `path` with tables for `tokenizer` (`unicode61` or `trigram`).
pub fn open(path: &Path, tokenizer: &str) -> Result<Connection, MemoryError> {
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
    if path.exists() && stored_schema(path)? == Some(1) {
        upgrade_schema_1(path, tokenizer)?;
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
    let conn = Connection::open_in_memory()?;
    init(&conn, tokenizer)?;
    Ok(conn)
}

/// A read-only connection to the index at `path` (made by [`open`] first), for searches that
/// run beside a sync, with `clawline_bm25` and the length cache it fills. `cache_kib` is its
/// page cache.
pub fn open_reader(path: &Path, cache_kib: u32) -> Result<(Connection, Arc<LengthCache>), MemoryError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "cache_size", -i64::from(cache_kib))?;
    let lengths = bm25::register(&conn)?;
    Ok((conn, lengths))
}

/// The schema version recorded in the file at `path`, if it has one.
fn stored_schema(path: &Path) -> Result<Option<i64>, MemoryError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    let has_meta: bool =
        conn.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'meta'", [], |r| r.get::<_, i64>(0))? > 0;
    if !has_meta {
        return Ok(None);
    }
    Ok(meta(&conn, "schema")?.and_then(|v| v.parse().ok()))
}

/// Replaces a schema-1 file with a new index holding its embedding cache. Files are indexed
/// again on the next sync; their vectors come from the cache.
pub fn upgrade_schema_1(path: &Path, tokenizer: &str) -> Result<(), MemoryError> {
    {
        // Fold the WAL into the file first, so what is copied is everything committed.
        let old = Connection::open(path)?;
        old.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        old.pragma_update(None, "journal_mode", "DELETE")?;
    }
    let fresh = path.with_extension("sqlite.upgrading");
    let _ = std::fs::remove_file(&fresh);
    {
        let conn = Connection::open(&fresh)?;
        init(&conn, tokenizer)?;
        conn.execute("ATTACH DATABASE ?1 AS old", [path.to_string_lossy()])?;
        let copied = conn.execute(
            "INSERT OR IGNORE INTO embedding_cache(provider, model, hash, dims, embedding, updated_at)
             SELECT provider, model, hash, dims, embedding, updated_at FROM old.embedding_cache",
            [],
        )?;
        conn.execute("DETACH DATABASE old", [])?;
        tracing::info!(path = %path.display(), cached_vectors = copied, "memory index upgraded from schema 1; files are indexed again");
    }
    std::fs::rename(&fresh, path).map_err(|e| MemoryError::io(path, e))?;
    Ok(())
}

fn init(conn: &Connection, tokenizer: &str) -> Result<(), MemoryError> {
    bm25::register(conn)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS sources(
             path TEXT NOT NULL, source TEXT NOT NULL, hash TEXT NOT NULL,
             mtime INTEGER NOT NULL, size INTEGER NOT NULL, indexed_at INTEGER NOT NULL,
             PRIMARY KEY(path, source));
         CREATE TABLE IF NOT EXISTS chunks(
             id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL, source TEXT NOT NULL,
             start_line INTEGER NOT NULL, end_line INTEGER NOT NULL, hash TEXT NOT NULL,
             text TEXT NOT NULL, updated_at INTEGER NOT NULL);
         CREATE INDEX IF NOT EXISTS chunks_by_path ON chunks(path, source);
         CREATE TABLE IF NOT EXISTS embedding_cache(
             provider TEXT NOT NULL, model TEXT NOT NULL, hash TEXT NOT NULL,
             dims INTEGER NOT NULL, embedding BLOB NOT NULL, updated_at INTEGER NOT NULL,
             PRIMARY KEY(provider, model, hash));
         CREATE TABLE IF NOT EXISTS chunk_vectors(
             id INTEGER PRIMARY KEY, stamp INTEGER NOT NULL, embedding BLOB NOT NULL);
         CREATE INDEX IF NOT EXISTS chunk_vectors_by_stamp ON chunk_vectors(stamp);
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

/// Records that vectors are of `model` with `dims`; vectors of another model or length are
/// dropped. Whether they were.
pub fn ensure_vector_model(conn: &Connection, model: &str, dims: usize) -> Result<bool, MemoryError> {
    if vector_model(conn)?.is_some_and(|(m, d)| m == model && d == dims) {
        return Ok(false);
    }
    clear_vectors(conn)?;
    set_meta(conn, "vector_model", model)?;
    set_meta(conn, "vector_dims", &dims.to_string())?;
    Ok(true)
}

/// Drops every vector and the model they were of.
pub fn clear_vectors(conn: &Connection) -> Result<(), MemoryError> {
    conn.execute("DELETE FROM chunk_vectors", [])?;
    conn.execute("DELETE FROM meta WHERE key IN ('vector_model', 'vector_dims')", [])?;
    bump_vector_gen(conn)?;
    Ok(())
}

/// The generation of the vector rows: raised by every change to them.
pub fn vector_gen(conn: &Connection) -> Result<i64, MemoryError> {
    Ok(meta(conn, "vector_gen")?.and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// Raises the generation (inside the caller's transaction) and returns the new one, the stamp
/// for rows added in that transaction.
pub fn bump_vector_gen(conn: &Connection) -> Result<i64, MemoryError> {
    let next = vector_gen(conn)? + 1;
    set_meta(conn, "vector_gen", &next.to_string())?;
    Ok(next)
}

/// Little-endian f32 bytes, the form vectors are stored in.
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
    fn fts_is_built_in_and_vector_models_replace_each_other() {
        let conn = open_in_memory("unicode61").unwrap();
        conn.execute("INSERT INTO chunks_fts(rowid, text) VALUES (7, 'the blue car')", []).unwrap();
        let hit: i64 =
            conn.query_row("SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH '\"blue\"'", [], |r| r.get(0)).unwrap();
        assert_eq!(hit, 7);
        assert!(ensure_vector_model(&conn, "t/m", 2).unwrap());
        let stamp = bump_vector_gen(&conn).unwrap();
        conn.execute(
            "INSERT INTO chunk_vectors(id, stamp, embedding) VALUES (7, ?1, ?2)",
            params![stamp, vector_blob(&[0.6, 0.8])],
        )
        .unwrap();
        assert!(!ensure_vector_model(&conn, "t/m", 2).unwrap(), "same model keeps its vectors");
        let before = vector_gen(&conn).unwrap();
        assert!(ensure_vector_model(&conn, "t/m", 3).unwrap(), "other dims replace them");
        assert!(vector_gen(&conn).unwrap() > before);
        let n: i64 = conn.query_row("SELECT count(*) FROM chunk_vectors", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn a_schema_1_index_is_rebuilt_around_its_embedding_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sqlite");
        {
            // What a schema-1 file holds, including a table of a module this build lacks.
            let c = Connection::open(&path).unwrap();
            c.pragma_update(None, "journal_mode", "WAL").unwrap();
            c.execute_batch(
                "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO meta VALUES ('schema', '1'), ('vector_model', 'p/m'), ('vector_dims', '2');
                 CREATE TABLE embedding_cache(provider TEXT NOT NULL, model TEXT NOT NULL, hash TEXT NOT NULL,
                     dims INTEGER NOT NULL, embedding BLOB NOT NULL, updated_at INTEGER NOT NULL,
                     PRIMARY KEY(provider, model, hash));
                 CREATE TABLE chunks(id INTEGER PRIMARY KEY, text TEXT);
                 INSERT INTO chunks VALUES (1, 'old');
                 PRAGMA writable_schema = ON;
                 INSERT INTO sqlite_master(type, name, tbl_name, rootpage, sql)
                     VALUES ('table', 'chunks_vec', 'chunks_vec', 0, 'CREATE VIRTUAL TABLE chunks_vec USING vec0(embedding float[2])');
                 PRAGMA writable_schema = OFF;",
            )
            .unwrap();
            c.execute("INSERT INTO embedding_cache VALUES ('p', 'm', 'h1', 2, ?1, 5)", [vector_blob(&[0.6, 0.8])])
                .unwrap();
        }
        let conn = open(&path, "unicode61").unwrap();
        assert_eq!(meta(&conn, "schema").unwrap().as_deref(), Some("2"));
        let cached: Vec<u8> =
            conn.query_row("SELECT embedding FROM embedding_cache WHERE hash = 'h1'", [], |r| r.get(0)).unwrap();
        assert_eq!(blob_vector(&cached), vec![0.6, 0.8]);
        let chunks: i64 = conn.query_row("SELECT count(*) FROM chunks", [], |r| r.get(0)).unwrap();
        assert_eq!(chunks, 0, "derived rows are rebuilt from the files");
        assert_eq!(vector_model(&conn).unwrap(), None);
        assert!(!dir.path().join("m.sqlite.upgrading").exists());
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
