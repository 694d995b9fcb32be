//! `clawline_bm25(chunks_fts)`: Okapi BM25 (k1 = 1.2, b = 0.75, the same formula, IDF floor and
//! sign as FTS5's built-in `bm25()`), as an FTS5 auxiliary function that remembers each chunk's
//! length in tokens.
//!
//! Why it exists: FTS5's `bm25()` looks a row's length up in the `_docsize` table for every
//! matching row, and on a large index that lookup is most of a text search (85 % of it at
//! 100,000 chunks, measured with `perf`). A chunk's text never changes under its id (ids are
//! never reused: `chunks.id` is AUTOINCREMENT), so its length is asked of FTS5 once and kept.
//! The cache is per connection and is cleared when the tokenizer changes ([`LengthCache::clear`]).
//!
//! Everything here is FFI glue around one formula; it must not hold a lock across a call into
//! SQLite, and it must not panic across the C boundary (nothing in it can).

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use rusqlite::ffi;

use crate::error::MemoryError;

const K1: f64 = 1.2;
const B: f64 = 0.75;
/// Lengths kept per connection before the cache starts over.
const MAX_CACHED: usize = 2_000_000;

/// A multiplicative hash for row ids (which are not chosen by an attacker, and SipHash would
/// be a tenth of the search time).
#[derive(Default)]
struct RowidHasher(u64);

impl Hasher for RowidHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_i64(&mut self, v: i64) {
        self.0 = (v as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    }
}

/// Chunk lengths (tokens) by row id, shared by one connection's function and the index.
#[derive(Debug, Default)]
pub struct LengthCache {
    lengths: Mutex<HashMap<i64, u32, BuildHasherDefault<RowidHasher>>>,
}

impl LengthCache {
    /// Forgets every length (the text index was rebuilt with another tokenizer).
    pub fn clear(&self) {
        self.lengths.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub fn len(&self) -> usize {
        self.lengths.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, rowid: i64) -> Option<u32> {
        self.lengths.lock().unwrap_or_else(|p| p.into_inner()).get(&rowid).copied()
    }

    fn put(&self, rowid: i64, len: u32) {
        let mut lengths = self.lengths.lock().unwrap_or_else(|p| p.into_inner());
        if lengths.len() >= MAX_CACHED {
            lengths.clear();
        }
        lengths.insert(rowid, len);
    }
}

/// The statistics of one query, computed at its first row.
struct QueryStats {
    avgdl: f64,
    idf: Vec<f64>,
}

/// The BM25 of one row given its phrase frequencies, length and the query's statistics.
fn score(freq: &[f64], len: f64, stats: &QueryStats) -> f64 {
    let norm = K1 * (1.0 - B + B * len / stats.avgdl);
    freq.iter().zip(&stats.idf).map(|(f, idf)| idf * (f * (K1 + 1.0)) / (f + norm)).sum()
}

/// The inverse document frequency of a phrase found in `hits` of `rows` rows.
fn idf(rows: i64, hits: i64) -> f64 {
    let v = ((rows - hits) as f64 + 0.5) / (hits as f64 + 0.5);
    let v = v.ln();
    if v <= 0.0 { 1e-6 } else { v }
}

unsafe extern "C" fn count_row(_: *const ffi::Fts5ExtensionApi, _: *mut ffi::Fts5Context, user: *mut c_void) -> c_int {
    // SAFETY: `user` is the `&mut i64` passed to `xQueryPhrase` below, alive for the call.
    unsafe { *(user as *mut i64) += 1 };
    ffi::SQLITE_OK
}

unsafe extern "C" fn drop_stats(p: *mut c_void) {
    // SAFETY: `p` came from `Box::into_raw` of a `QueryStats` in `stats` and is dropped once.
    drop(unsafe { Box::from_raw(p as *mut QueryStats) });
}

unsafe extern "C" fn drop_cache(p: *mut c_void) {
    // SAFETY: `p` came from `Arc::into_raw` in `register`; SQLite calls this once.
    drop(unsafe { Arc::from_raw(p as *const LengthCache) });
}

/// The query's statistics, made and attached at its first row.
///
/// # Safety
/// `api` and `fts` must be the pointers FTS5 passed to the auxiliary function.
unsafe fn stats<'a>(api: &ffi::Fts5ExtensionApi, fts: *mut ffi::Fts5Context) -> Result<&'a QueryStats, c_int> {
    let (Some(get), Some(set), Some(phrases), Some(rows), Some(total), Some(query)) =
        (api.xGetAuxdata, api.xSetAuxdata, api.xPhraseCount, api.xRowCount, api.xColumnTotalSize, api.xQueryPhrase)
    else {
        return Err(ffi::SQLITE_MISUSE);
    };
    // SAFETY (whole block): FTS5 API calls with the context it gave us; out-pointers are locals.
    unsafe {
        let existing = get(fts, 0) as *const QueryStats;
        if !existing.is_null() {
            return Ok(&*existing);
        }
        let (mut n_rows, mut n_tokens) = (0i64, 0i64);
        check(rows(fts, &mut n_rows))?;
        check(total(fts, -1, &mut n_tokens))?;
        let n = phrases(fts).max(0);
        let mut idfs = Vec::with_capacity(n as usize);
        for i in 0..n {
            let mut hits = 0i64;
            check(query(fts, i, (&mut hits as *mut i64).cast(), Some(count_row)))?;
            idfs.push(idf(n_rows, hits));
        }
        let avgdl = if n_rows > 0 { n_tokens as f64 / n_rows as f64 } else { 1.0 };
        let raw = Box::into_raw(Box::new(QueryStats { avgdl: avgdl.max(f64::MIN_POSITIVE), idf: idfs }));
        let rc = set(fts, raw.cast(), Some(drop_stats));
        if rc != ffi::SQLITE_OK {
            // On failure FTS5 has already called the destructor.
            return Err(rc);
        }
        Ok(&*raw)
    }
}

fn check(rc: c_int) -> Result<(), c_int> {
    if rc == ffi::SQLITE_OK { Ok(()) } else { Err(rc) }
}

/// The auxiliary function itself: `-score`, so lower is better, as with `bm25()`.
unsafe extern "C" fn bm25_function(
    api: *const ffi::Fts5ExtensionApi,
    fts: *mut ffi::Fts5Context,
    ctx: *mut ffi::sqlite3_context,
    _n: c_int,
    _args: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY (whole body): FTS5 calls this with valid `api`, `fts` and `ctx`; the user data is
    // the `LengthCache` registered with this function and outlives it.
    unsafe {
        let api = &*api;
        let result = (|| -> Result<f64, c_int> {
            let stats = stats(api, fts)?;
            let (Some(user), Some(inst_count), Some(inst), Some(rowid), Some(size)) =
                (api.xUserData, api.xInstCount, api.xInst, api.xRowid, api.xColumnSize)
            else {
                return Err(ffi::SQLITE_MISUSE);
            };
            let cache = &*(user(fts) as *const LengthCache);
            // Phrase frequencies; on the stack for any query of up to 32 words.
            let mut small = [0f64; 32];
            let mut large = Vec::new();
            let freq: &mut [f64] = if stats.idf.len() <= small.len() {
                &mut small[..stats.idf.len()]
            } else {
                large.resize(stats.idf.len(), 0.0);
                &mut large
            };
            let mut n = 0;
            check(inst_count(fts, &mut n))?;
            for i in 0..n {
                let (mut phrase, mut col, mut off) = (0, 0, 0);
                check(inst(fts, i, &mut phrase, &mut col, &mut off))?;
                if let Some(f) = usize::try_from(phrase).ok().and_then(|p| freq.get_mut(p)) {
                    *f += 1.0;
                }
            }
            let id = rowid(fts);
            let len = match cache.get(id) {
                Some(len) => len,
                None => {
                    let mut tokens = 0;
                    check(size(fts, -1, &mut tokens))?;
                    let len = u32::try_from(tokens).unwrap_or(0);
                    cache.put(id, len);
                    len
                }
            };
            Ok(-score(freq, f64::from(len), stats))
        })();
        match result {
            Ok(v) => ffi::sqlite3_result_double(ctx, v),
            Err(rc) => ffi::sqlite3_result_error_code(ctx, rc),
        }
    }
}

/// Registers `clawline_bm25` with `conn`; the returned cache is the one it fills.
pub fn register(conn: &Connection) -> Result<Arc<LengthCache>, MemoryError> {
    let cache = Arc::new(LengthCache::default());
    // SAFETY: the documented way to reach FTS5's API (`SELECT fts5(?1)` with a pointer bound
    // as "fts5_api_ptr"); `handle` stays valid while `conn` lives, which covers this call. The
    // cache pointer handed to SQLite owns one strong count, released by `drop_cache`.
    unsafe {
        let db = conn.handle();
        let mut stmt: *mut ffi::sqlite3_stmt = std::ptr::null_mut();
        let sql = c"SELECT fts5(?1)";
        let rc = ffi::sqlite3_prepare_v2(db, sql.as_ptr(), -1, &mut stmt, std::ptr::null_mut());
        if rc != ffi::SQLITE_OK {
            return Err(MemoryError::Fts(format!("FTS5 is not available (code {rc})")));
        }
        let mut api: *mut ffi::fts5_api = std::ptr::null_mut();
        ffi::sqlite3_bind_pointer(
            stmt,
            1,
            (&mut api as *mut *mut ffi::fts5_api).cast(),
            c"fts5_api_ptr".as_ptr(),
            None,
        );
        ffi::sqlite3_step(stmt);
        ffi::sqlite3_finalize(stmt);
        let Some(create) = api.as_ref().and_then(|a| a.xCreateFunction) else {
            return Err(MemoryError::Fts("FTS5 gave no API to register functions with".into()));
        };
        let user = Arc::into_raw(cache.clone()) as *mut c_void;
        let name: *const c_char = c"clawline_bm25".as_ptr();
        let rc = create(api, name, user, Some(bm25_function), Some(drop_cache));
        if rc != ffi::SQLITE_OK {
            drop_cache(user);
            return Err(MemoryError::Fts(format!("registering clawline_bm25 failed (code {rc})")));
        }
    }
    Ok(cache)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_scores_as_fts5_bm25() {
        let conn = Connection::open_in_memory().unwrap();
        let cache = register(&conn).unwrap();
        conn.execute_batch("CREATE VIRTUAL TABLE t USING fts5(text);").unwrap();
        let docs = [
            "the lighthouse keeper rows to the harbour",
            "lighthouse lighthouse lighthouse",
            "a harbour with boats and a long pier and gulls and a lighthouse far away on the hill",
            "nothing to see here",
            "keeper of keys",
        ];
        for (i, d) in docs.iter().enumerate() {
            conn.execute("INSERT INTO t(rowid, text) VALUES (?1, ?2)", rusqlite::params![i as i64 + 1, d]).unwrap();
        }
        for q in ["lighthouse", "\"lighthouse\" OR \"keeper\"", "harbour OR keeper OR gulls", "\"long pier\""] {
            for _ in 0..2 {
                // Twice: the second pass takes lengths from the cache.
                let mut st = conn
                    .prepare("SELECT rowid, bm25(t), clawline_bm25(t) FROM t WHERE t MATCH ?1 ORDER BY rowid")
                    .unwrap();
                let rows: Vec<(i64, f64, f64)> =
                    st.query_map([q], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(|r| r.unwrap()).collect();
                assert!(!rows.is_empty(), "{q}");
                for (id, builtin, ours) in rows {
                    assert!((builtin - ours).abs() < 1e-9, "{q} row {id}: {builtin} vs {ours}");
                }
            }
        }
        assert!(!cache.is_empty());
        cache.clear();
        assert!(cache.is_empty());
    }

    #[test]
    fn the_idf_floor_keeps_scores_positive() {
        assert_eq!(idf(4, 4), 1e-6);
        assert!(idf(100, 1) > idf(100, 10));
    }
}
