//! Memory benchmarks: hybrid search latency over 10,000 and 100,000 chunks (p50/p95/p99 over
//! 300 queries, then divan's statistics), and indexing throughput of the local model.
//!
//!     cargo bench -p clawline-memory --features local --bench memory_search
//!
//! The corpus is synthetic: chunks of 60 words drawn from a 20,000-word vocabulary with a
//! Zipf skew (so BM25 has common and rare terms to work with). A text's vector (384 dimensions,
//! all-MiniLM-L6-v2's size) is the normalized sum of a fixed random vector per word, so texts
//! that share words are near each other, and the common words make every vector lean the same
//! way, as real embeddings do. Queries are three words from outside the 200 most common ones,
//! as a real query is once its function words are dropped; they are embedded the same way in
//! microseconds (a real model adds its own time, measured separately below), so the figures are
//! the index's. The text-only line is the same index searched without vectors, so the
//! difference is the vector leg.
//!
//! Each line is 300 queries after a warm-up of 30; an index's first search, which loads its
//! vectors into memory, is timed on its own.
//!
//! The vector leg is approximate beyond a few hundred chunks (sign bits shortlist, exact
//! rescoring: see `src/vectors.rs`), so its recall@24 against an exact scan of the same vectors
//! is printed too. This corpus is a hard case for it: a three-word query shares about one word
//! with its best chunks, so their similarities are low and close together.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use clawline_memory::db;
use clawline_memory::embed::{EmbedFuture, Embedder, Purpose, normalized};
use clawline_memory::index::{MemoryIndex, Settings};
use rusqlite::params;

const DIMS: usize = 384;

/// A small deterministic generator (xorshift64*), so every run builds the same corpus.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// A word index skewed toward small numbers (common words).
    fn zipf(&mut self, n: usize) -> usize {
        ((n as f64).powf(self.unit()) as usize).saturating_sub(1).min(n - 1)
    }
    fn vector(&mut self) -> Vec<f32> {
        normalized(&(0..DIMS).map(|_| (self.unit() - 0.5) as f32).collect::<Vec<_>>())
    }
}

fn word(i: usize) -> String {
    const SYL: [&str; 16] =
        ["ka", "lo", "mi", "ru", "te", "sa", "no", "vi", "de", "po", "zu", "ha", "ri", "go", "be", "fa"];
    let mut s = String::new();
    let mut n = i + 1;
    while n > 0 {
        s.push_str(SYL[n % 16]);
        n /= 16;
    }
    s
}

/// The fixed random vector of word `w`.
fn word_vector(w: &str) -> &'static [f32] {
    static WORDS: OnceLock<std::sync::Mutex<std::collections::HashMap<String, &'static [f32]>>> = OnceLock::new();
    let mut words = WORDS.get_or_init(Default::default).lock().expect("words");
    if let Some(v) = words.get(w) {
        return v;
    }
    let seed = w.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let v: &'static [f32] = Box::leak(Rng(seed | 1).vector().into_boxed_slice());
    words.insert(w.to_string(), v);
    v
}

/// A text's vector: the normalized sum of its words' vectors.
fn text_vector(text: &str) -> Vec<f32> {
    let mut sum = vec![0f32; DIMS];
    for w in text.split_whitespace() {
        for (s, x) in sum.iter_mut().zip(word_vector(w)) {
            *s += x;
        }
    }
    normalized(&sum)
}

/// The query embedder: [`text_vector`].
struct HashEmbedder;

impl Embedder for HashEmbedder {
    fn provider(&self) -> &str {
        "bench"
    }
    fn model(&self) -> &str {
        "hash"
    }
    fn embed<'a>(&'a self, texts: &'a [String], _: Purpose) -> EmbedFuture<'a> {
        Box::pin(async move { Ok(texts.iter().map(|t| text_vector(t)).collect()) })
    }
}

const VOCAB: usize = 20_000;

/// Builds the corpus into `path` (once per size) and opens it as a hybrid or a text-only index.
fn build(n: usize, hybrid: bool) -> MemoryIndex {
    let path = corpus_path(n);
    if !path.exists() {
        fill(&path, n);
    }
    let embedder: Option<Arc<dyn Embedder>> = if hybrid { Some(Arc::new(HashEmbedder)) } else { None };
    MemoryIndex::open(&path, &std::env::temp_dir(), Settings::default(), embedder, "text-only run").expect("open")
}

fn fill(path: &std::path::Path, n: usize) {
    let conn = db::open(path, "unicode61").expect("index");
    db::ensure_vector_model(&conn, "bench/hash", DIMS).expect("vector model");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    conn.execute_batch("BEGIN").unwrap();
    {
        let mut chunk = conn
            .prepare("INSERT INTO chunks(id, path, source, start_line, end_line, hash, text, updated_at) VALUES (?1, ?2, 'memory', 1, 10, ?3, ?4, 0)")
            .unwrap();
        let mut fts = conn.prepare("INSERT INTO chunks_fts(rowid, text) VALUES (?1, ?2)").unwrap();
        let mut vec = conn.prepare("INSERT INTO chunk_vectors(id, stamp, embedding) VALUES (?1, 1, ?2)").unwrap();
        for id in 1..=n as i64 {
            let text: Vec<String> = (0..60).map(|_| word(rng.zipf(VOCAB))).collect();
            let text = text.join(" ");
            let path = format!("memory/note-{}.md", id / 8);
            chunk.execute(params![id, path, format!("h{id}"), text]).unwrap();
            fts.execute(params![id, text]).unwrap();
            vec.execute(params![id, db::vector_blob(&text_vector(&text))]).unwrap();
        }
    }
    db::set_meta(&conn, "vector_gen", "1").unwrap();
    conn.execute_batch("COMMIT").unwrap();
}

/// Recall@24 of the vector leg against an exact scan of the same vectors.
fn recall(n: usize, index: &MemoryIndex) {
    let path = corpus_path(n);
    let conn = db::open(&path, "unicode61").expect("index");
    let mut all: Vec<(i64, Vec<f32>)> = Vec::with_capacity(n);
    {
        let mut st = conn.prepare("SELECT id, embedding FROM chunk_vectors").unwrap();
        let rows = st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))).unwrap();
        for row in rows {
            let (id, blob) = row.unwrap();
            all.push((id, db::blob_vector(&blob)));
        }
    }
    let qs = queries(50);
    let mut found = 0usize;
    let mut times: Vec<f64> = Vec::new();
    for q in &qs {
        let qv = text_vector(q);
        let mut exact: Vec<(f32, i64)> =
            all.iter().map(|(id, v)| (v.iter().zip(&qv).map(|(a, b)| a * b).sum::<f32>(), *id)).collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        let truth: std::collections::HashSet<i64> = exact.iter().take(24).map(|(_, id)| *id).collect();
        let started = Instant::now();
        let got = runtime().block_on(index.nearest(q, 24)).expect("nearest");
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        found += got.iter().filter(|(id, _)| truth.contains(id)).count();
    }
    times.sort_by(f64::total_cmp);
    println!(
        "vector leg alone, {n:>6} chunks: recall@24 vs exact {:.3}, p50 {:.2} ms ({} queries)",
        found as f64 / (24 * qs.len()) as f64,
        times[times.len() / 2],
        qs.len()
    );
}

fn queries(count: usize) -> Vec<String> {
    let mut rng = Rng(42);
    (0..count).map(|_| (0..3).map(|_| word(200 + rng.zipf(VOCAB - 200))).collect::<Vec<_>>().join(" ")).collect()
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime")
    })
}

fn index(n: usize) -> &'static MemoryIndex {
    static SMALL: OnceLock<MemoryIndex> = OnceLock::new();
    static LARGE: OnceLock<MemoryIndex> = OnceLock::new();
    let cell = if n <= 10_000 { &SMALL } else { &LARGE };
    cell.get_or_init(|| {
        let started = Instant::now();
        let i = build(n, true);
        eprintln!("built a {n}-chunk index in {:.1} s", started.elapsed().as_secs_f64());
        i
    })
}

fn percentiles(n: usize) {
    report(n, index(n), "hybrid search   ");
    recall(n, index(n));
    report(n, &build(n, false), "text-only search");
}

fn report(n: usize, index: &MemoryIndex, what: &str) {
    // The first search of an index loads its vectors and starts its chunk-length caches; it is
    // reported on its own, and 30 other queries warm up before the measured ones.
    let started = Instant::now();
    runtime().block_on(index.search("first search of the day")).expect("search");
    let first = started.elapsed().as_secs_f64() * 1000.0;
    let mut rng = Rng(4242);
    for _ in 0..30 {
        let q = (0..3).map(|_| word(200 + rng.zipf(VOCAB - 200))).collect::<Vec<_>>().join(" ");
        runtime().block_on(index.search(&q)).expect("search");
    }
    let qs = queries(300);
    let mut times: Vec<f64> = Vec::with_capacity(qs.len());
    for q in &qs {
        let started = Instant::now();
        let out = runtime().block_on(index.search(q)).expect("search");
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(out);
    }
    times.sort_by(f64::total_cmp);
    let at = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    println!(
        "{what}, {n:>6} chunks: p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  ({} queries; first search {first:.0} ms)",
        at(0.50),
        at(0.95),
        at(0.99),
        times.len()
    );
}

#[divan::bench(args = [10_000, 100_000], sample_count = 50)]
fn search(bencher: divan::Bencher, n: usize) {
    let index = index(n);
    let qs = queries(64);
    let mut i = 0;
    bencher.bench_local(|| {
        i = (i + 1) % qs.len();
        runtime().block_on(index.search(&qs[i])).expect("search")
    });
}

/// Chunk-sized texts (about 400 tokens) embedded by the local model, when its files are here.
#[cfg(feature = "local")]
fn local_throughput() {
    let env = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/local-embeddings/env");
    let Some(dir) = std::fs::read_to_string(env)
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("MINILM_DIR=").map(String::from)))
    else {
        println!("local model throughput: skipped (run scripts/local-embeddings)");
        return;
    };
    let model = clawline_memory::local::LocalEmbedder::load(std::path::Path::new(&dir)).expect("model");
    let mut rng = Rng(7);
    let texts: Vec<String> =
        (0..64).map(|_| (0..300).map(|_| word(rng.zipf(VOCAB))).collect::<Vec<_>>().join(" ")).collect();
    let _ = model.embed_blocking(&texts[..4]);
    let started = Instant::now();
    model.embed_documents_blocking(&texts).expect("embed");
    let indexing = started.elapsed().as_secs_f64();
    let started = Instant::now();
    model.embed_blocking(&texts).expect("embed");
    let all = started.elapsed().as_secs_f64();
    println!(
        "local model (all-MiniLM-L6-v2, CPU): {:.1} chunks/s indexing on {} thread(s), {:.1} chunks/s on every core ({} chunk-sized texts)",
        texts.len() as f64 / indexing,
        clawline_memory::local::indexing_threads(),
        texts.len() as f64 / all,
        texts.len()
    );
}

#[cfg(not(feature = "local"))]
fn local_throughput() {
    println!("local model throughput: skipped (build with --features local)");
}

/// Where the `n`-chunk corpus is built: one fixed name per size, so a run that divan ends
/// before the clean-up at the bottom of `main` leaves one copy behind, not one per run.
fn corpus_path(n: usize) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("clawline-bench-memory-{n}.sqlite"))
}

/// Removes the `n`-chunk corpus and its WAL files.
fn remove_corpus(n: usize) {
    let base = corpus_path(n);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", base.display()));
    }
}

fn main() {
    // A corpus left by an earlier run may be of an older generator: build it afresh.
    for n in [10_000, 100_000] {
        remove_corpus(n);
    }
    percentiles(10_000);
    percentiles(100_000);
    local_throughput();
    divan::main();
    for n in [10_000, 100_000] {
        remove_corpus(n);
    }
}
