//! One agent's memory index: keeping it in step with the files ([`MemoryIndex::sync`]),
//! searching it ([`MemoryIndex::search`]), reading a found file ([`MemoryIndex::get`]) and
//! saying honestly what state it is in ([`MemoryIndex::status`]).
//!
//! Sync is incremental. A file whose size and mtime are unchanged is not read; a file whose text
//! is unchanged is not chunked again; of a changed file only the chunks whose text is new are
//! embedded (the others keep their rows and vectors, moved to their new line ranges), and
//! vectors already computed for a text by the same model come from the embedding cache. Files
//! that disappeared, or became unreadable, lose their chunks.
//!
//! The index never pretends: when there is no embedder, its vectors belong to another model, or
//! the embedder fails, search runs on text alone and [`Mode::TextOnly`] says why.
//!
//! Searches read through their own read-only connections (opened with the index, which is
//! opened off the async runtime), so a long sync never holds one up;
//! on a large index the text leg is split in two halves by chunk id, searched side by side
//! (BM25's statistics are the whole table's either way, so the merged top is the same), while
//! the vector leg scores the in-memory shortlist ([`crate::vectors`]) exactly.
//!
//! Database work runs on blocking threads; this file must not block an async task.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};

use crate::bm25::LengthCache;
use crate::chunk::{ChunkSize, chunk};
use crate::db;
use crate::embed::{Embedder, Purpose, check, normalized};
use crate::error::MemoryError;
use crate::scoring::{Candidate, Ranking, Scored, query_words, rank};
use crate::sources::{Skipped, discover, read_text};
use crate::transcripts::{DeltaThresholds, Indexed, SESSIONS, Transcripts, due, id_of, path_of};
use crate::vectors::{Shortlist, VectorIndex};

/// Chunk-id spans at least this wide are searched by text in two halves at once.
const SPLIT_TEXT_AT: i64 = 20_000;
/// Page cache of the two text read connections and of the vector one, KiB: the text leg walks
/// posting lists; the vector leg makes about a hundred point lookups.
const READER_CACHE_KIB: [u32; 3] = [8 * 1024, 8 * 1024, 2 * 1024];

/// The source name of workspace memory files.
pub const MEMORY: &str = "memory";

/// How the index is set up (`memory.search.*`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub extra_paths: Vec<String>,
    pub ranking: Ranking,
    pub chunk: ChunkSize,
    /// Larger files are skipped.
    pub max_file_bytes: u64,
    /// Entries kept in the embedding cache.
    pub cache_max_entries: usize,
    /// `unicode61` or `trigram`.
    pub tokenizer: String,
    /// Shortlist sizes of the vector leg; `None`: [`Shortlist::for_query`]. For measuring
    /// recall, not configuration.
    pub vector_shortlist: Option<Shortlist>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            extra_paths: Vec::new(),
            ranking: Ranking::default(),
            chunk: ChunkSize::default(),
            max_file_bytes: 4 * 1024 * 1024,
            cache_max_entries: 50_000,
            tokenizer: "unicode61".into(),
            vector_shortlist: None,
        }
    }
}

/// Whether search uses vectors.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum Mode {
    Hybrid,
    TextOnly { reason: String },
}

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport {
    pub files: usize,
    pub files_indexed: usize,
    pub files_unchanged: usize,
    pub files_removed: usize,
    pub chunks_added: usize,
    pub chunks_removed: usize,
    pub chunks_kept: usize,
    /// Texts sent to the embedder.
    pub embedded: usize,
    pub cache_hits: usize,
    pub skipped: Vec<SkippedFile>,
    /// Why some chunks are still without vectors.
    pub embed_error: Option<String>,
    /// Texts embedded through the provider's batch API (counted apart from `embedded`).
    pub batch_embedded: usize,
    /// Why the batch API was not used after all (the texts were embedded directly).
    pub batch_error: Option<String>,
    /// Transcripts the agent has (`sources: ["sessions"]`), indexed again, and removed.
    pub sessions: usize,
    pub sessions_indexed: usize,
    pub sessions_removed: usize,
    /// Why transcripts could not be listed or read.
    pub sessions_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SkippedFile {
    pub path: String,
    pub reason: String,
}

/// Progress of a sync, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub phase: Phase,
    pub done: usize,
    pub total: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Files,
    /// Texts handed to the embedder's batch API (`done` is 0 until the batches end).
    Batch,
    Embeddings,
}

/// What one search may change.
#[derive(Debug, Clone, Default)]
pub struct SearchOptions {
    /// Sources (paths) left out.
    pub skip: Vec<String>,
    /// Instead of `memory.search.query.maxResults`.
    pub max_results: Option<usize>,
}

/// A search answer.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchOutcome {
    pub mode: Mode,
    pub results: Vec<Scored>,
}

/// The index's state.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    #[serde(flatten)]
    pub mode: Mode,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub dims: Option<usize>,
    pub files: usize,
    /// Transcripts indexed (`sources: ["sessions"]`).
    pub sessions: usize,
    pub chunks: usize,
    /// Chunks with a vector from the current model.
    pub vectors: usize,
    pub cache_entries: usize,
    pub tokenizer: String,
    pub skipped: Vec<SkippedFile>,
    pub last_sync_ms: Option<i64>,
}

/// Lines of a memory file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excerpt {
    pub path: String,
    pub from: usize,
    pub to: usize,
    pub total_lines: usize,
    pub text: String,
}

/// One agent's memory index.
pub struct MemoryIndex {
    conn: Arc<Mutex<Connection>>,
    workspace: PathBuf,
    settings: Settings,
    embedder: Option<Arc<dyn Embedder>>,
    /// Why there is no embedder (shown by status and search).
    no_embedder: String,
    last_embed_error: Mutex<Option<String>>,
    /// Read-only connections: two for the text leg, one for the vector leg, opened with the
    /// index; `None` for an in-memory index or when they could not be opened (then `conn` serves).
    readers: Option<[Arc<Mutex<Connection>>; 3]>,
    /// The readers' chunk-length caches, and the tokenizer their lengths were counted with.
    lengths: Mutex<(Vec<Arc<LengthCache>>, Option<String>)>,
    /// The in-memory sign bits of the current model's vectors.
    vectors: Arc<Mutex<Option<LoadedVectors>>>,
    /// One sync at a time: a second one waits and then finds nothing left to embed, instead of
    /// embedding the same chunks again (the watcher and a search can start one together).
    syncing: tokio::sync::Mutex<()>,
    /// The agent's transcripts, when they are a source too.
    transcripts: Option<(Arc<dyn Transcripts>, DeltaThresholds)>,
}

/// A query's vector, with the model and length the stored vectors have.
struct QueryVector {
    q: Vec<f32>,
    model: String,
    dims: usize,
}

/// The vector rows of one model as loaded into memory, at `generation`.
struct LoadedVectors {
    model: String,
    generation: i64,
    index: VectorIndex,
}

fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn sha256_hex(text: &str) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An FTS5 query matching any of the query's words (each quoted, so nothing is syntax).
pub fn fts_query(query: &str) -> Option<String> {
    let mut w: Vec<String> = query_words(query).into_iter().collect();
    w.sort();
    (!w.is_empty())
        .then(|| w.iter().map(|t| format!("\"{}\"", t.replace('"', "\"\""))).collect::<Vec<_>>().join(" OR "))
}

/// A candidate's (vector similarity, BM25 rank), as far as each leg found it.
type LegScores = (Option<f64>, Option<f64>);

struct ChunkRow {
    id: i64,
    hash: String,
    start_line: usize,
    end_line: usize,
}

impl MemoryIndex {
    /// Opens the index at `db_path` for `workspace` (canonicalized here). `embedder` is `None`
    /// when search is text-only; `no_embedder` then says why.
    pub fn open(
        db_path: &Path,
        workspace: &Path,
        settings: Settings,
        embedder: Option<Arc<dyn Embedder>>,
        no_embedder: impl Into<String>,
    ) -> Result<MemoryIndex, MemoryError> {
        let conn = db::open(db_path, &settings.tokenizer)?;
        let mut index = Self::with_connection(conn, workspace, settings, embedder, no_embedder);
        let open = |i: usize| {
            db::open_reader(db_path, READER_CACHE_KIB[i]).map(|(c, lengths)| (Arc::new(Mutex::new(c)), lengths))
        };
        match (open(0), open(1), open(2)) {
            (Ok((a, la)), Ok((b, lb)), Ok((c, lc))) => {
                index.readers = Some([a, b, c]);
                index.lengths = Mutex::new((vec![la, lb, lc], None));
            }
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                tracing::warn!(error = %e, "memory: read connections unavailable; searching through the main one");
            }
        }
        Ok(index)
    }

    /// The same over an already open connection (an in-memory one in tests and benchmarks).
    pub fn with_connection(
        conn: Connection,
        workspace: &Path,
        settings: Settings,
        embedder: Option<Arc<dyn Embedder>>,
        no_embedder: impl Into<String>,
    ) -> MemoryIndex {
        MemoryIndex {
            conn: Arc::new(Mutex::new(conn)),
            workspace: std::fs::canonicalize(workspace).unwrap_or_else(|_| workspace.to_path_buf()),
            settings,
            embedder,
            no_embedder: no_embedder.into(),
            last_embed_error: Mutex::new(None),
            readers: None,
            lengths: Mutex::new((Vec::new(), None)),
            vectors: Arc::new(Mutex::new(None)),
            syncing: tokio::sync::Mutex::new(()),
            transcripts: None,
        }
    }

    /// Indexes the agent's transcripts too (`sources: ["sessions"]`), again once one has grown
    /// by `thresholds`.
    pub fn with_transcripts(mut self, transcripts: Arc<dyn Transcripts>, thresholds: DeltaThresholds) -> MemoryIndex {
        self.transcripts = Some((transcripts, thresholds));
        self
    }

    /// Read connection `i` (0 and 1: text, 2: vectors), or the main one.
    fn reader(&self, i: usize) -> Arc<Mutex<Connection>> {
        match &self.readers {
            Some(r) => r[i.min(2)].clone(),
            None => self.conn.clone(),
        }
    }

    /// Runs `f` on a blocking thread with read connection `i`.
    async fn reading<T: Send + 'static>(
        &self,
        i: usize,
        f: impl FnOnce(&Connection) -> Result<T, MemoryError> + Send + 'static,
    ) -> Result<T, MemoryError> {
        let conn = self.reader(i);
        tokio::task::spawn_blocking(move || f(&lock(&conn))).await.map_err(|_| MemoryError::Stopped)?
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The embedder's provider id (`openai`, `local`, …), if there is an embedder.
    pub fn provider(&self) -> Option<&str> {
        self.embedder.as_ref().map(|e| e.provider())
    }

    /// The workspace whose memory this indexes (canonicalized).
    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    fn model_key(&self) -> Option<String> {
        self.embedder.as_ref().map(|e| format!("{}/{}", e.provider(), e.model()))
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, MemoryError> + Send + 'static,
    ) -> Result<T, MemoryError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || f(&mut lock(&conn))).await.map_err(|_| MemoryError::Stopped)?
    }

    /// Brings the index in step with the files; `force` re-reads every file. Embedding failures
    /// are reported in the result, not raised.
    pub async fn sync(&self, force: bool, progress: &(dyn Fn(Progress) + Sync)) -> Result<SyncReport, MemoryError> {
        let _one_at_a_time = self.syncing.lock().await;
        let workspace = self.workspace.clone();
        let settings = self.settings.clone();
        let model_key = self.model_key();
        let mut report =
            self.blocking(move |conn| sync_files(conn, &workspace, &settings, force, model_key.as_deref())).await?;
        progress(Progress { phase: Phase::Files, done: report.files, total: report.files });
        if let Some((transcripts, thresholds)) = self.transcripts.clone() {
            self.sync_transcripts(transcripts.as_ref(), thresholds, force, &mut report).await?;
        }
        if let Some(embedder) = self.embedder.clone() {
            let error = self.embed_missing(embedder, &mut report, progress).await?;
            report.embed_error = error.clone();
            *self.last_embed_error.lock().unwrap_or_else(|p| p.into_inner()) = error;
        }
        let max = self.settings.cache_max_entries;
        self.blocking(move |conn| {
            // Keep the cache bounded: the oldest entries go first.
            conn.execute(
                "DELETE FROM embedding_cache WHERE rowid IN (SELECT rowid FROM embedding_cache ORDER BY updated_at DESC LIMIT -1 OFFSET ?1)",
                [max as i64],
            )?;
            db::set_meta(conn, "last_sync_ms", &now_ms().to_string())
        })
        .await?;
        Ok(report)
    }

    /// The transcript half of a sync: each transcript that is new, grew past the thresholds or
    /// finished is chunked again (one transaction each, so chat is let in between); gone ones
    /// lose their chunks. A keeper that fails is reported, and the files are indexed anyway.
    async fn sync_transcripts(
        &self,
        transcripts: &dyn Transcripts,
        thresholds: DeltaThresholds,
        force: bool,
        report: &mut SyncReport,
    ) -> Result<(), MemoryError> {
        let digests = match transcripts.digests().await {
            Ok(d) => d,
            Err(e) => {
                report.sessions_error = Some(format!("the transcripts could not be listed: {e}"));
                return Ok(());
            }
        };
        report.sessions = digests.len();
        let known: HashMap<String, Indexed> = self
            .blocking(|conn| {
                let mut st = conn.prepare("SELECT path, size, mtime FROM sources WHERE source = ?1")?;
                let rows = st.query_map([SESSIONS], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        Indexed {
                            bytes: r.get::<_, i64>(1)?.max(0) as u64,
                            messages: r.get::<_, i64>(2)?.max(0) as u64,
                        },
                    ))
                })?;
                Ok(rows.collect::<Result<HashMap<_, _>, _>>()?)
            })
            .await?;
        let mut present: HashSet<String> = HashSet::new();
        for d in digests {
            let path = path_of(&d.id);
            if !due(known.get(&path).copied(), &d, thresholds, force) {
                present.insert(path);
                continue;
            }
            let text = match transcripts.render(&d.id).await {
                Ok(Some(text)) => text,
                Ok(None) => continue, // Gone since it was listed: removed below.
                Err(e) => {
                    report.sessions_error = Some(format!("{path}: {e}"));
                    present.insert(path);
                    continue;
                }
            };
            present.insert(path.clone());
            let chunk_size = self.settings.chunk;
            let counts = self
                .blocking(move |conn| {
                    let tx = conn.transaction()?;
                    let now = now_ms();
                    let counts = replace_chunks(&tx, &path, SESSIONS, &text, chunk_size, now)?;
                    // For a transcript, `mtime` holds its message count and `size` its bytes.
                    tx.execute(
                        "INSERT INTO sources(path, source, hash, mtime, size, indexed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                         ON CONFLICT(path, source) DO UPDATE SET hash = excluded.hash, mtime = excluded.mtime, size = excluded.size, indexed_at = excluded.indexed_at",
                        params![path, SESSIONS, sha256_hex(&text), d.messages as i64, d.bytes as i64, now],
                    )?;
                    if counts.removed > 0 {
                        db::bump_vector_gen(&tx)?;
                    }
                    tx.commit()?;
                    Ok(counts)
                })
                .await?;
            report.add(counts);
            report.sessions_indexed += 1;
            tokio::task::yield_now().await;
        }
        let gone: Vec<String> = known.into_keys().filter(|p| !present.contains(p)).collect();
        if !gone.is_empty() {
            let (removed, chunks) = self
                .blocking(move |conn| {
                    let tx = conn.transaction()?;
                    let mut chunks = 0;
                    for path in &gone {
                        chunks += remove_source(&tx, path, SESSIONS)?;
                    }
                    db::bump_vector_gen(&tx)?;
                    tx.commit()?;
                    Ok((gone.len(), chunks))
                })
                .await?;
            report.sessions_removed += removed;
            report.chunks_removed += chunks;
        }
        Ok(())
    }

    /// Embeds every chunk without a vector from the current model; the error that stopped it.
    async fn embed_missing(
        &self,
        embedder: Arc<dyn Embedder>,
        report: &mut SyncReport,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<Option<String>, MemoryError> {
        let (provider, model) = (embedder.provider().to_string(), embedder.model().to_string());
        let key = format!("{provider}/{model}");
        let key2 = key.clone();
        let missing: Vec<(i64, String, String)> = self
            .blocking(move |conn| {
                let vec_ok = db::vector_model(conn)?.is_some_and(|(m, _)| m == key2);
                let sql = if vec_ok {
                    "SELECT id, hash, text FROM chunks WHERE id NOT IN (SELECT id FROM chunk_vectors) ORDER BY id"
                } else {
                    "SELECT id, hash, text FROM chunks ORDER BY id"
                };
                let mut st = conn.prepare(sql)?;
                let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?;
        let total = missing.len();
        let from_batch = self.embed_in_bulk(embedder.as_ref(), &missing, report, progress).await?;
        let mut done = 0;
        for batch in missing.chunks(embedder.max_batch().max(1)) {
            // Cache first.
            let hashes: Vec<String> = batch.iter().map(|(_, h, _)| h.clone()).collect();
            let (p, m) = (provider.clone(), model.clone());
            let cached: HashMap<String, Vec<f32>> = self
                .blocking(move |conn| {
                    let mut st = conn.prepare_cached(
                        "SELECT embedding FROM embedding_cache WHERE provider = ?1 AND model = ?2 AND hash = ?3",
                    )?;
                    let mut out = HashMap::new();
                    for h in hashes {
                        if let Some(b) = st.query_row(params![p, m, h], |r| r.get::<_, Vec<u8>>(0)).optional()? {
                            out.insert(h, db::blob_vector(&b));
                        }
                    }
                    Ok(out)
                })
                .await?;
            let todo: Vec<&(i64, String, String)> = batch.iter().filter(|(_, h, _)| !cached.contains_key(h)).collect();
            let texts: Vec<String> = todo.iter().map(|(_, _, t)| t.clone()).collect();
            let mut fresh: HashMap<String, Vec<f32>> = HashMap::new();
            if !texts.is_empty() {
                let answer = match embedder.embed(&texts, Purpose::Document).await {
                    Ok(a) => a,
                    Err(e) => return Ok(Some(e.to_string())),
                };
                let dims = self.blocking(|conn| db::vector_model(conn)).await?;
                let want = dims.filter(|(m, _)| *m == key).map(|(_, d)| d);
                if let Err(why) = check(&answer, texts.len(), want) {
                    return Ok(Some(format!("{key}: {why}")));
                }
                report.embedded += texts.len();
                for ((_, h, _), v) in todo.iter().zip(answer) {
                    fresh.insert(h.clone(), normalized(&v));
                }
            }
            report.cache_hits +=
                batch.iter().filter(|(_, h, _)| cached.contains_key(h) && !from_batch.contains(h)).count();
            let rows: Vec<(i64, String, Vec<f32>, bool)> = batch
                .iter()
                .filter_map(|(id, h, _)| {
                    fresh
                        .get(h)
                        .map(|v| (*id, h.clone(), v.clone(), true))
                        .or_else(|| cached.get(h).map(|v| (*id, h.clone(), v.clone(), false)))
                })
                .collect();
            let (p, m, k) = (provider.clone(), model.clone(), key.clone());
            let stored = self
                .blocking(move |conn| {
                    let Some(dims) = rows.first().map(|r| r.2.len()) else { return Ok(None) };
                    if rows.iter().any(|r| r.2.len() != dims) {
                        return Ok(Some(format!("{k}: cached vectors of another length; run `clawline memory index --force`")));
                    }
                    let tx = conn.transaction()?;
                    db::ensure_vector_model(&tx, &k, dims)?;
                    let stamp = db::bump_vector_gen(&tx)?;
                    {
                        let mut ins = tx.prepare_cached(
                            "INSERT OR REPLACE INTO chunk_vectors(id, stamp, embedding) VALUES (?1, ?2, ?3)",
                        )?;
                        let mut cache = tx.prepare_cached(
                            "INSERT OR REPLACE INTO embedding_cache(provider, model, hash, dims, embedding, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        )?;
                        let now = now_ms();
                        for (id, hash, v, is_new) in &rows {
                            let blob = db::vector_blob(v);
                            ins.execute(params![id, stamp, blob])?;
                            if *is_new {
                                cache.execute(params![p, m, hash, dims as i64, blob, now])?;
                            }
                        }
                    }
                    tx.commit()?;
                    Ok(None)
                })
                .await?;
            if let Some(e) = stored {
                return Ok(Some(e));
            }
            done += batch.len();
            progress(Progress { phase: Phase::Embeddings, done, total });
            // Let chat traffic in between batches.
            tokio::task::yield_now().await;
        }
        Ok(None)
    }

    /// Sends the texts of `missing` not in the cache through the embedder's bulk route (a batch
    /// API), when it wants them, and caches what comes back; the hashes it embedded. A bulk
    /// failure is reported, and everything is then embedded directly.
    async fn embed_in_bulk(
        &self,
        embedder: &dyn Embedder,
        missing: &[(i64, String, String)],
        report: &mut SyncReport,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<HashSet<String>, MemoryError> {
        if !embedder.wants_bulk(missing.len()) {
            return Ok(HashSet::new());
        }
        let (provider, model) = (embedder.provider().to_string(), embedder.model().to_string());
        let mut unique: HashMap<String, String> = HashMap::new();
        for (_, h, t) in missing {
            unique.entry(h.clone()).or_insert_with(|| t.clone());
        }
        let (p, m) = (provider.clone(), model.clone());
        let todo: Vec<(String, String)> = self
            .blocking(move |conn| {
                let mut st = conn
                    .prepare_cached("SELECT 1 FROM embedding_cache WHERE provider = ?1 AND model = ?2 AND hash = ?3")?;
                let mut out = Vec::new();
                for (h, t) in unique {
                    if st.query_row(params![p, m, h], |_| Ok(())).optional()?.is_none() {
                        out.push((h, t));
                    }
                }
                Ok(out)
            })
            .await?;
        let texts: Vec<String> = todo.iter().map(|(_, t)| t.clone()).collect();
        let Some(bulk) = embedder.bulk(&texts) else { return Ok(HashSet::new()) };
        progress(Progress { phase: Phase::Batch, done: 0, total: texts.len() });
        let answer = match bulk.await {
            Ok(a) => a,
            Err(e) => {
                report.batch_error = Some(e.to_string());
                return Ok(HashSet::new());
            }
        };
        let key = format!("{provider}/{model}");
        let want = self.blocking(|conn| db::vector_model(conn)).await?.filter(|(m, _)| *m == key).map(|(_, d)| d);
        let got: Vec<(String, Vec<f32>)> = todo
            .into_iter()
            .zip(answer.into_iter().chain(std::iter::repeat(None)))
            .filter_map(|((h, _), v)| v.map(|v| (h, v)))
            .collect();
        let vectors: Vec<Vec<f32>> = got.iter().map(|(_, v)| v.clone()).collect();
        if let (false, Err(why)) = (vectors.is_empty(), check(&vectors, vectors.len(), want)) {
            report.batch_error = Some(format!("{key}: the batch API {why}"));
            return Ok(HashSet::new());
        }
        let hashes: HashSet<String> = got.iter().map(|(h, _)| h.clone()).collect();
        let count = got.len();
        self.blocking(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut cache = tx.prepare_cached(
                    "INSERT OR REPLACE INTO embedding_cache(provider, model, hash, dims, embedding, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                let now = now_ms();
                for (h, v) in got {
                    let v = normalized(&v);
                    cache.execute(params![provider, model, h, v.len() as i64, db::vector_blob(&v), now])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await?;
        report.batch_embedded += count;
        progress(Progress { phase: Phase::Batch, done: texts.len(), total: texts.len() });
        Ok(hashes)
    }

    /// Why the vector leg cannot run now, if it cannot (reads the database on a blocking thread).
    async fn text_only_reason(&self) -> Result<Option<String>, MemoryError> {
        let key = self.model_key();
        let no_embedder = self.no_embedder.clone();
        let last = self.last_embed_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
        self.reading(2, move |conn| text_only_reason(conn, key.as_deref(), &no_embedder, last)).await
    }

    /// The text leg: the top `k` BM25 hits, in two halves at once on a large index.
    async fn text_leg(&self, query: &str, k: usize) -> Result<Vec<(i64, f64)>, MemoryError> {
        let Some(q) = fts_query(query) else { return Ok(Vec::new()) };
        let (first, last, tokenizer): (i64, i64, Option<String>) = self
            .reading(0, |conn| {
                // Two subqueries: each is answered from the end of the rowid tree, not by a scan.
                let (first, last) = conn.query_row(
                    "SELECT coalesce((SELECT min(id) FROM chunks), 0), coalesce((SELECT max(id) FROM chunks), 0)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                Ok((first, last, db::meta(conn, "fts_tokenizer")?))
            })
            .await?;
        {
            // Lengths counted with another tokenizer are wrong now.
            let mut lengths = self.lengths.lock().unwrap_or_else(|p| p.into_inner());
            if lengths.1 != tokenizer {
                lengths.0.iter().for_each(|c| c.clear());
                lengths.1 = tokenizer;
            }
        }
        if last - first < SPLIT_TEXT_AT {
            return self.reading(0, move |conn| text_search(conn, &q, k, first, last)).await;
        }
        let mid = first + (last - first) / 2;
        let q2 = q.clone();
        let (mut a, b) = tokio::try_join!(
            self.reading(0, move |conn| text_search(conn, &q, k, first, mid)),
            self.reading(1, move |conn| text_search(conn, &q2, k, mid + 1, last)),
        )?;
        a.extend(b);
        a.sort_by(|x, y| x.1.total_cmp(&y.1).then(x.0.cmp(&y.0)));
        a.truncate(k);
        Ok(a)
    }

    /// The first half of the vector leg: the query's vector (normalized) and the vectors'
    /// model and length, or why the leg cannot run. Mostly waiting on the embedder.
    async fn query_vector(&self, query: &str) -> Result<Result<QueryVector, String>, MemoryError> {
        if let Some(reason) = self.text_only_reason().await? {
            return Ok(Err(reason));
        }
        let Some(embedder) = &self.embedder else {
            return Ok(Err(self.no_embedder.clone()));
        };
        let answer = match embedder.embed(&[query.to_string()], Purpose::Query).await {
            Ok(answer) => answer,
            Err(e) => return Ok(Err(format!("embedding the query failed: {e}"))),
        };
        let Some((model, dims)) = self.reading(2, db::vector_model).await? else {
            return Ok(Err("nothing is embedded yet; run `clawline memory index`".into()));
        };
        if let Err(why) = check(&answer, 1, Some(dims)) {
            return Ok(Err(format!("the query embedding was unusable: {why}")));
        }
        Ok(Ok(QueryVector { q: normalized(&answer[0]), model, dims }))
    }

    /// The second half: the top `k` chunks by cosine similarity (CPU and a hundred lookups).
    async fn vector_hits(&self, query: QueryVector, k: usize) -> Result<Vec<(i64, f64)>, MemoryError> {
        let loaded = self.vectors.clone();
        let sizes = self.settings.vector_shortlist;
        self.reading(2, move |conn| {
            let mut loaded = loaded.lock().unwrap_or_else(|p| p.into_inner());
            refresh_vectors(conn, &mut loaded, &query.model, query.dims)?;
            match loaded.as_ref() {
                Some(l) => vector_search(conn, l, &query.q, k, sizes),
                None => Ok(Vec::new()),
            }
        })
        .await
    }

    /// The vector leg alone: the `k` chunks (id, cosine similarity) nearest to `query`'s
    /// embedding, empty when search is text-only. For measuring recall.
    pub async fn nearest(&self, query: &str, k: usize) -> Result<Vec<(i64, f64)>, MemoryError> {
        match self.query_vector(query).await? {
            Ok(q) => self.vector_hits(q, k).await,
            Err(_) => Ok(Vec::new()),
        }
    }

    /// Searches for `query`. The text leg runs while the query is embedded; the vector leg's
    /// own work follows, so the two halves of the text leg have both cores to themselves.
    pub async fn search(&self, query: &str) -> Result<SearchOutcome, MemoryError> {
        self.search_with(query, &SearchOptions::default()).await
    }

    /// [`MemoryIndex::search`] without the chunks of the sources at `skip` (the conversation
    /// asking, which is in its context already).
    pub async fn search_except(&self, query: &str, skip: &[String]) -> Result<SearchOutcome, MemoryError> {
        self.search_with(query, &SearchOptions { skip: skip.to_vec(), ..SearchOptions::default() }).await
    }

    /// [`MemoryIndex::search`] with per-search options.
    pub async fn search_with(&self, query: &str, options: &SearchOptions) -> Result<SearchOutcome, MemoryError> {
        let mut ranking = self.settings.ranking.clone();
        if let Some(m) = options.max_results {
            ranking.max_results = m.max(1);
        }
        let skip = &options.skip;
        let k = ranking.candidates();
        let (text_hits, query_vector) = tokio::try_join!(self.text_leg(query, k), self.query_vector(query))?;
        let (vector_hits, reason) = match query_vector {
            Ok(q) => (self.vector_hits(q, k).await?, None),
            Err(reason) => (Vec::new(), Some(reason)),
        };
        let mut by_id: HashMap<i64, LegScores> = HashMap::new();
        for (id, s) in &vector_hits {
            by_id.entry(*id).or_default().0 = Some(*s);
        }
        for (id, r) in &text_hits {
            by_id.entry(*id).or_default().1 = Some(*r);
        }
        let ids: Vec<(i64, LegScores)> = by_id.into_iter().collect();
        let candidates: Vec<Candidate> = self
            .reading(0, move |conn| {
                let mut st =
                    conn.prepare_cached("SELECT path, start_line, end_line, text FROM chunks WHERE id = ?1")?;
                let mut out = Vec::with_capacity(ids.len());
                for (id, (vector, bm25)) in ids {
                    if let Some((path, start, end, text)) = st
                        .query_row([id], |r| {
                            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get(3)?))
                        })
                        .optional()?
                    {
                        out.push(Candidate {
                            id,
                            path,
                            start_line: start as usize,
                            end_line: end as usize,
                            text,
                            vector,
                            bm25,
                        });
                    }
                }
                Ok(out)
            })
            .await?;
        let candidates: Vec<Candidate> = candidates.into_iter().filter(|c| !skip.contains(&c.path)).collect();
        let hybrid = reason.is_none();
        let results = rank(query, candidates, &ranking, now_ms(), hybrid);
        let mode = match reason {
            None => Mode::Hybrid,
            Some(reason) => Mode::TextOnly { reason },
        };
        Ok(SearchOutcome { mode, results })
    }

    /// Lines `from..from+lines` (1-based) of an indexed memory file. Only files the index holds
    /// can be read.
    pub async fn get(&self, path: &str, from: usize, lines: usize) -> Result<Excerpt, MemoryError> {
        let p = path.to_string();
        let source: Option<String> = self
            .blocking(move |conn| {
                Ok(conn
                    .query_row("SELECT source FROM sources WHERE path = ?1 ORDER BY source = 'memory' DESC", [p], |r| {
                        r.get(0)
                    })
                    .optional()?)
            })
            .await?;
        let text = match source.as_deref() {
            None => {
                return Err(MemoryError::NotFound(format!(
                    "`{path}` is not a memory file; memory_get reads only files memory_search returns"
                )));
            }
            Some(SESSIONS) => {
                let (Some((transcripts, _)), Some(id)) = (&self.transcripts, id_of(path)) else {
                    return Err(MemoryError::NotFound(format!("`{path}`: transcripts are not a memory source now")));
                };
                match transcripts.render(id).await {
                    Ok(Some(text)) => text,
                    Ok(None) => return Err(MemoryError::NotFound(format!("`{path}`: the conversation was deleted"))),
                    Err(e) => return Err(MemoryError::NotFound(format!("`{path}`: {e}"))),
                }
            }
            Some(_) => {
                let abs = if Path::new(path).is_absolute() { PathBuf::from(path) } else { self.workspace.join(path) };
                let limit = self.settings.max_file_bytes;
                tokio::task::spawn_blocking(move || read_text(&abs, limit))
                    .await
                    .map_err(|_| MemoryError::Stopped)?
                    .map_err(|e| MemoryError::NotFound(format!("`{path}` {e}")))?
            }
        };
        let all: Vec<&str> = text.lines().collect();
        let from = from.max(1);
        let to = (from + lines.max(1) - 1).min(all.len());
        let body = if from > all.len() { String::new() } else { all[from - 1..to].join("\n") };
        Ok(Excerpt { path: path.to_string(), from, to: to.max(from - 1), total_lines: all.len(), text: body })
    }

    /// Embeds a short text to see whether the embedder answers now; `Err` says why not (or that
    /// there is no embedder).
    pub async fn probe(&self) -> Result<(), String> {
        let Some(embedder) = &self.embedder else { return Err(self.no_embedder.clone()) };
        let answer =
            embedder.embed(&["clawline memory probe".to_string()], Purpose::Query).await.map_err(|e| e.to_string())?;
        check(&answer, 1, None)
            .map(|_| ())
            .map_err(|why| format!("{}/{}: {why}", embedder.provider(), embedder.model()))
    }

    /// The index's state.
    pub async fn status(&self) -> Result<Status, MemoryError> {
        let reason = self.text_only_reason().await?;
        let tokenizer = self.settings.tokenizer.clone();
        let (provider, model) = match &self.embedder {
            Some(e) => (Some(e.provider().to_string()), Some(e.model().to_string())),
            None => (None, None),
        };
        let key = self.model_key();
        let mut status = self
            .blocking(move |conn| {
                let count = |sql: &str| -> Result<usize, MemoryError> {
                    Ok(conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as usize)
                };
                let vector_model = db::vector_model(conn)?;
                let vectors = if vector_model.as_ref().map(|(m, _)| m) == key.as_ref() {
                    count("SELECT count(*) FROM chunk_vectors")?
                } else {
                    0
                };
                let mut st = conn.prepare("SELECT path, reason FROM skipped ORDER BY path")?;
                let skipped = st
                    .query_map([], |r| Ok(SkippedFile { path: r.get(0)?, reason: r.get(1)? }))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Status {
                    mode: Mode::Hybrid,
                    provider: None,
                    model: None,
                    dims: vector_model.map(|(_, d)| d),
                    files: count("SELECT count(*) FROM sources WHERE source = 'memory'")?,
                    sessions: count("SELECT count(*) FROM sources WHERE source = 'sessions'")?,
                    chunks: count("SELECT count(*) FROM chunks")?,
                    vectors,
                    cache_entries: count("SELECT count(*) FROM embedding_cache")?,
                    tokenizer,
                    skipped,
                    last_sync_ms: db::meta(conn, "last_sync_ms")?.and_then(|v| v.parse().ok()),
                })
            })
            .await?;
        status.provider = provider;
        status.model = model;
        status.mode = match reason {
            None => Mode::Hybrid,
            Some(reason) => Mode::TextOnly { reason },
        };
        if status.mode == Mode::Hybrid && status.vectors < status.chunks {
            let last = self.last_embed_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(e) = last {
                status.mode = Mode::TextOnly {
                    reason: format!(
                        "{} of {} chunks have no vector yet (embedding failed: {e}); they are found by text only",
                        status.chunks - status.vectors,
                        status.chunks
                    ),
                };
            }
        }
        Ok(status)
    }
}

/// Why the vector leg cannot run: no embedder, vectors of another model, or none yet.
fn text_only_reason(
    conn: &Connection,
    key: Option<&str>,
    no_embedder: &str,
    last_error: Option<String>,
) -> Result<Option<String>, MemoryError> {
    let Some(key) = key else {
        return Ok(Some(no_embedder.to_string()));
    };
    match db::vector_model(conn)? {
        Some((m, _)) if m == key => Ok(None),
        Some((m, _)) => Ok(Some(format!(
            "the index holds vectors of {m}, not {key}; run `clawline memory index` to embed with {key}"
        ))),
        None => Ok(Some(match last_error {
            Some(e) => format!("embedding failed: {e}"),
            None => "nothing is embedded yet; run `clawline memory index`".into(),
        })),
    }
}

/// The file half of a sync (blocking): discovery, reading, chunking, row changes.
fn sync_files(
    conn: &mut Connection,
    workspace: &Path,
    settings: &Settings,
    force: bool,
    model_key: Option<&str>,
) -> Result<SyncReport, MemoryError> {
    let found = discover(workspace, &settings.extra_paths);
    let mut report = SyncReport { files: found.files.len(), ..SyncReport::default() };
    let mut skipped: Vec<Skipped> = found.skipped.clone();
    let tx = conn.transaction()?;
    // Vectors of another model are useless for this one.
    if let (Some((m, _)), Some(key)) = (db::vector_model(&tx)?, model_key)
        && m != key
    {
        db::clear_vectors(&tx)?;
    }
    let mut seen: Vec<String> = Vec::new();
    let now = now_ms();
    for file in &found.files {
        let known: Option<(String, i64, i64)> = tx
            .query_row(
                "SELECT hash, mtime, size FROM sources WHERE path = ?1 AND source = ?2",
                params![file.path, MEMORY],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        if !force && known.as_ref().is_some_and(|(_, m, s)| *m == file.mtime_ms && *s as u64 == file.size) {
            report.files_unchanged += 1;
            seen.push(file.path.clone());
            continue;
        }
        let text = match read_text(&file.abs, settings.max_file_bytes) {
            Ok(t) => t,
            Err(why) => {
                skipped.push(Skipped { path: file.path.clone(), reason: why.to_string() });
                continue; // Not seen: its old chunks go below.
            }
        };
        seen.push(file.path.clone());
        let hash = sha256_hex(&text);
        if !force && known.as_ref().is_some_and(|(h, _, _)| *h == hash) {
            tx.execute(
                "UPDATE sources SET mtime = ?1, size = ?2 WHERE path = ?3 AND source = ?4",
                params![file.mtime_ms, file.size as i64, file.path, MEMORY],
            )?;
            report.files_unchanged += 1;
            continue;
        }
        report.files_indexed += 1;
        let counts = replace_chunks(&tx, &file.path, MEMORY, &text, settings.chunk, now)?;
        report.add(counts);
        tx.execute(
            "INSERT INTO sources(path, source, hash, mtime, size, indexed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(path, source) DO UPDATE SET hash = excluded.hash, mtime = excluded.mtime, size = excluded.size, indexed_at = excluded.indexed_at",
            params![file.path, MEMORY, hash, file.mtime_ms, file.size as i64, now],
        )?;
    }
    // Files gone (or now unreadable) lose their chunks.
    let gone: Vec<String> = {
        let mut st = tx.prepare("SELECT path FROM sources WHERE source = ?1")?;
        st.query_map([MEMORY], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|p| !seen.contains(p))
            .collect()
    };
    for path in gone {
        report.chunks_removed += remove_source(&tx, &path, MEMORY)?;
        report.files_removed += 1;
    }
    if report.chunks_removed > 0 {
        // Readers of the vectors learn that some went.
        db::bump_vector_gen(&tx)?;
    }
    tx.execute("DELETE FROM skipped", [])?;
    for s in &skipped {
        tx.execute(
            "INSERT OR REPLACE INTO skipped(path, reason, at) VALUES (?1, ?2, ?3)",
            params![s.path, s.reason, now],
        )?;
    }
    tx.commit()?;
    report.skipped = skipped.into_iter().map(|s| SkippedFile { path: s.path, reason: s.reason }).collect();
    Ok(report)
}

/// Chunks added, removed and kept by [`replace_chunks`].
#[derive(Debug, Clone, Copy, Default)]
struct ChunkCounts {
    added: usize,
    removed: usize,
    kept: usize,
}

impl SyncReport {
    fn add(&mut self, c: ChunkCounts) {
        self.chunks_added += c.added;
        self.chunks_removed += c.removed;
        self.chunks_kept += c.kept;
    }
}

/// Makes the chunks of `path` (in `source`) those of `text`: a chunk whose text is unchanged
/// keeps its row and vector (moved to its new lines), new texts get new rows, the rest go.
fn replace_chunks(
    tx: &rusqlite::Transaction<'_>,
    path: &str,
    source: &str,
    text: &str,
    size: ChunkSize,
    now: i64,
) -> Result<ChunkCounts, MemoryError> {
    let mut counts = ChunkCounts::default();
    let mut old: Vec<ChunkRow> = {
        let mut st = tx.prepare_cached(
            "SELECT id, hash, start_line, end_line FROM chunks WHERE path = ?1 AND source = ?2 ORDER BY start_line",
        )?;
        st.query_map(params![path, source], |r| {
            Ok(ChunkRow {
                id: r.get(0)?,
                hash: r.get(1)?,
                start_line: r.get::<_, i64>(2)? as usize,
                end_line: r.get::<_, i64>(3)? as usize,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?
    };
    for c in chunk(text, size) {
        let h = sha256_hex(&c.text);
        if let Some(pos) = old.iter().position(|o| o.hash == h) {
            let o = old.swap_remove(pos);
            if o.start_line != c.start_line || o.end_line != c.end_line {
                tx.execute(
                    "UPDATE chunks SET start_line = ?1, end_line = ?2 WHERE id = ?3",
                    params![c.start_line as i64, c.end_line as i64, o.id],
                )?;
            }
            counts.kept += 1;
            continue;
        }
        tx.execute(
            "INSERT INTO chunks(path, source, start_line, end_line, hash, text, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![path, source, c.start_line as i64, c.end_line as i64, h, c.text, now],
        )?;
        let id = tx.last_insert_rowid();
        tx.execute("INSERT INTO chunks_fts(rowid, text) VALUES (?1, ?2)", params![id, c.text])?;
        counts.added += 1;
    }
    for o in old {
        delete_chunk(tx, o.id)?;
        counts.removed += 1;
    }
    Ok(counts)
}

/// Removes every chunk of `path` in `source`, and the source row; the chunks removed.
fn remove_source(tx: &rusqlite::Transaction<'_>, path: &str, source: &str) -> Result<usize, MemoryError> {
    let ids: Vec<i64> = {
        let mut st = tx.prepare_cached("SELECT id FROM chunks WHERE path = ?1 AND source = ?2")?;
        st.query_map(params![path, source], |r| r.get(0))?.collect::<Result<Vec<_>, _>>()?
    };
    for id in &ids {
        delete_chunk(tx, *id)?;
    }
    tx.execute("DELETE FROM sources WHERE path = ?1 AND source = ?2", params![path, source])?;
    Ok(ids.len())
}

fn delete_chunk(tx: &rusqlite::Transaction<'_>, id: i64) -> Result<(), MemoryError> {
    tx.execute("DELETE FROM chunks WHERE id = ?1", [id])?;
    tx.execute("DELETE FROM chunks_fts WHERE rowid = ?1", [id])?;
    tx.execute("DELETE FROM chunk_vectors WHERE id = ?1", [id])?;
    Ok(())
}

/// Brings the loaded vectors of `model` (`dims` long) up to the database's generation: a full
/// load the first time or after a model change, else only the rows stamped since, and the ids
/// that went. Reads one snapshot.
fn refresh_vectors(
    conn: &Connection,
    loaded: &mut Option<LoadedVectors>,
    model: &str,
    dims: usize,
) -> Result<(), MemoryError> {
    let tx = conn.unchecked_transaction()?;
    let generation = db::vector_gen(&tx)?;
    let same_model = loaded.as_ref().is_some_and(|l| l.model == model && l.index.dims() == dims);
    if let Some(l) = loaded.as_mut().filter(|_| same_model) {
        if l.generation == generation {
            return Ok(());
        }
        let present: HashSet<i64> = {
            let mut st = tx.prepare("SELECT id FROM chunk_vectors")?;
            st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        let added: Vec<(i64, Vec<u8>)> = {
            let mut st = tx.prepare("SELECT id, embedding FROM chunk_vectors WHERE stamp > ?1")?;
            st.query_map([l.generation], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?
        };
        let replaced: HashSet<i64> = added.iter().map(|(id, _)| *id).collect();
        l.index.retain(|id| present.contains(&id) && !replaced.contains(&id));
        for (id, blob) in added {
            l.index.push(id, &db::blob_vector(&blob));
        }
        l.generation = generation;
        return Ok(());
    }
    let mut index = VectorIndex::new(dims);
    {
        let mut st = tx.prepare("SELECT id, embedding FROM chunk_vectors")?;
        let mut rows = st.query([])?;
        while let Some(row) = rows.next()? {
            let blob: Vec<u8> = row.get(1)?;
            index.push(row.get(0)?, &db::blob_vector(&blob));
        }
    }
    *loaded = Some(LoadedVectors { model: model.to_string(), generation, index });
    Ok(())
}

/// The `k` chunks most similar to `q` (normalized): the shortlist of the loaded vectors scored
/// exactly against their stored rows.
fn vector_search(
    conn: &Connection,
    loaded: &LoadedVectors,
    q: &[f32],
    k: usize,
    sizes: Option<Shortlist>,
) -> Result<Vec<(i64, f64)>, MemoryError> {
    let sizes = sizes.unwrap_or_else(|| Shortlist::for_query(k, loaded.index.len()));
    let mut ids = loaded.index.shortlist(q, sizes);
    // In id order the lookups walk the table's tree forwards.
    ids.sort_unstable();
    let mut st = conn.prepare_cached("SELECT embedding FROM chunk_vectors WHERE id = ?1")?;
    let mut scored: Vec<(i64, f64)> = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(blob) = st.query_row([id], |r| r.get::<_, Vec<u8>>(0)).optional()? {
            let v = db::blob_vector(&blob);
            if v.len() == q.len() {
                let cos: f32 = v.iter().zip(q).map(|(a, b)| a * b).sum();
                scored.push((id, f64::from(cos)));
            }
        }
    }
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.truncate(k);
    Ok(scored)
}

/// The top `k` text hits for FTS query `q` among chunk ids `from..=to`, best (lowest BM25) first.
fn text_search(conn: &Connection, q: &str, k: usize, from: i64, to: i64) -> Result<Vec<(i64, f64)>, MemoryError> {
    let mut st = conn.prepare_cached(
        "SELECT rowid, clawline_bm25(chunks_fts) AS r FROM chunks_fts WHERE chunks_fts MATCH ?1 AND rowid BETWEEN ?2 AND ?3
         ORDER BY r LIMIT ?4",
    )?;
    let rows = st.query_map(params![q, from, to, k as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
