//! Retrieval quality on a labelled fixture (`tests/fixtures/retrieval`): 62 one-fact notes and
//! 56 questions, each with the note that answers it. Twelve questions are paraphrases that share
//! no content word with their note; the others name an identifier (a storage-box code, a licence
//! key, an unusual name) among up to twenty notes that are otherwise alike.
//!
//! recall@6 (the answer among the first six results) is computed for hybrid, text-only and
//! vector-only ranking with the real all-MiniLM-L6-v2 model, printed, and hybrid must beat both.
//! Ranking is compared without a score threshold; the default-threshold figure is printed too,
//! and so are the figures with the vector leg forced through its approximate shortlist (the
//! fixture is small enough to be scored exactly otherwise): 48 chunks by sign bits, 24 of them
//! scored exactly. Hybrid must beat text-only that way too.
//!
//!     cargo test -p clawline-memory --features local --test retrieval_quality -- --nocapture
#![cfg(feature = "local")]

use std::path::Path;
use std::sync::Arc;

use clawline_memory::embed::Embedder;
use clawline_memory::index::{MemoryIndex, Settings};
use clawline_memory::local::LocalEmbedder;
use clawline_memory::scoring::Ranking;
use clawline_memory::vectors::Shortlist;
use serde_json::Value;

mod common;

struct Question {
    text: String,
    answer: String,
    kind: String,
}

fn questions(root: &Path) -> Vec<Question> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(root.join("questions.json")).unwrap()).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|q| Question {
            text: q["question"].as_str().unwrap().into(),
            answer: q["answer"].as_str().unwrap().into(),
            kind: q["kind"].as_str().unwrap().into(),
        })
        .collect()
}

fn settings(vector_weight: f64, text_weight: f64, min_score: f64) -> Settings {
    Settings { ranking: Ranking { vector_weight, text_weight, min_score, ..Ranking::default() }, ..Settings::default() }
}

/// An index over `root` in `db` (shared, so the notes are embedded once for every ranking).
async fn index(db: &Path, root: &Path, settings: Settings, embedder: Option<Arc<dyn Embedder>>) -> MemoryIndex {
    let index = MemoryIndex::open(db, root, settings, embedder, "text-only by design").unwrap();
    let r = index.sync(false, &|_| {}).await.unwrap();
    assert!(r.embed_error.is_none(), "{r:?}");
    index
}

/// `(paraphrase hits, keyword hits)` at 6.
async fn recall(index: &MemoryIndex, qs: &[Question]) -> (usize, usize) {
    let mut hits = (0, 0);
    for q in qs {
        let out = index.search(&q.text).await.unwrap();
        let found = out.results.iter().take(6).any(|s| s.candidate.path == q.answer);
        if found {
            if q.kind == "paraphrase" { hits.0 += 1 } else { hits.1 += 1 }
        }
    }
    hits
}

#[tokio::test]
async fn hybrid_beats_text_only_and_vector_only() {
    let Some((model, _)) = common::lane() else { return };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/retrieval");
    let qs = questions(&root);
    let (para, key) =
        (qs.iter().filter(|q| q.kind == "paraphrase").count(), qs.iter().filter(|q| q.kind == "keyword").count());
    let local: Arc<dyn Embedder> = Arc::new(LocalEmbedder::load(&model).unwrap());

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("retrieval.sqlite");
    let hybrid = recall(&index(&db, &root, settings(0.7, 0.3, 0.0), Some(local.clone())).await, &qs).await;
    let vector = recall(&index(&db, &root, settings(1.0, 0.0, 0.0), Some(local.clone())).await, &qs).await;
    let defaults = recall(&index(&db, &root, Settings::default(), Some(local.clone())).await, &qs).await;
    let short = |s: Settings| Settings { vector_shortlist: Some(Shortlist { wide: 48, exact: 24 }), ..s };
    let hybrid_short = recall(&index(&db, &root, short(settings(0.7, 0.3, 0.0)), Some(local.clone())).await, &qs).await;
    let vector_short = recall(&index(&db, &root, short(settings(1.0, 0.0, 0.0)), Some(local)).await, &qs).await;
    let text_db = dir.path().join("text.sqlite");
    let text = recall(&index(&text_db, &root, settings(0.7, 0.3, 0.0), None).await, &qs).await;
    let notes = std::fs::read_dir(root.join("memory")).unwrap().count();

    let total = qs.len() as f64;
    let row = |name: &str, (p, k): (usize, usize)| {
        println!("{name:<28} recall@6 {:.2}  (paraphrase {p}/{para}, identifier {k}/{key})", (p + k) as f64 / total)
    };
    println!("retrieval quality, {} questions over {notes} notes, all-MiniLM-L6-v2:", qs.len());
    row("hybrid (0.7 / 0.3)", hybrid);
    row("text only (FTS5 BM25)", text);
    row("vector only", vector);
    row("hybrid, default minScore", defaults);
    row("hybrid, approximate leg", hybrid_short);
    row("vector only, approximate leg", vector_short);
    let sum = |(p, k): (usize, usize)| p + k;
    assert!(sum(hybrid) > sum(text), "hybrid {hybrid:?} must beat text-only {text:?}");
    assert!(sum(hybrid) > sum(vector), "hybrid {hybrid:?} must beat vector-only {vector:?}");
    assert!(sum(hybrid_short) > sum(text), "approximate hybrid {hybrid_short:?} must beat text-only {text:?}");
}
