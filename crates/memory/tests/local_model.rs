//! The in-process embedder with the real all-MiniLM-L6-v2 files against reference vectors that
//! `scripts/minilm_reference.py` computed independently (numpy, no clawline code): cosine ≥
//! 0.999 for every sentence, batches equal to single texts, and the index working on it.
//!
//! `scripts/local-embeddings` fetches the model and writes `target/local-embeddings/env`; without
//! it these tests fail, unless `CLAWLINE_SKIP_LOCAL_EMBEDDINGS=1`.
#![cfg(feature = "local")]

use std::sync::Arc;

use clawline_memory::embed::Embedder;
use clawline_memory::index::{MemoryIndex, Mode, Settings};
use clawline_memory::local::LocalEmbedder;
use serde_json::Value;

mod common;
use common::lane;

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| f64::from(*x) * y).sum::<f64>()
}

#[test]
fn vectors_match_the_independent_reference() {
    let Some((model, reference)) = lane() else { return };
    let embedder = LocalEmbedder::load(&model).unwrap();
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(reference).unwrap()).unwrap();
    let cases: Vec<(String, Vec<f64>)> = reference["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["text"].as_str().unwrap().to_string(),
                c["vector"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect(),
            )
        })
        .collect();
    let texts: Vec<String> = cases.iter().map(|(t, _)| t.clone()).collect();
    let batch = embedder.embed_blocking(&texts).unwrap();
    for ((text, want), got) in cases.iter().zip(&batch) {
        assert_eq!(got.len(), 384);
        let c = cosine(got, want);
        assert!(c >= 0.999, "{text:?}: cosine {c}");
        // One at a time gives the same vector as inside a padded batch.
        let single = embedder.embed_blocking(std::slice::from_ref(text)).unwrap();
        let same: f64 = single[0].iter().zip(got).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
        assert!(same > 0.99999, "{text:?}: batch and single differ ({same})");
    }
    // Documents encoded on the indexing threads get the same vectors.
    let documents = embedder.embed_documents_blocking(&texts).unwrap();
    for (d, q) in documents.iter().zip(&batch) {
        let same: f64 = d.iter().zip(q).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
        assert!(same > 0.99999, "indexing threads and every core differ ({same})");
    }
    // The model's geometry: related sentences are close, unrelated ones are not.
    let sim = |a: usize, b: usize| batch[a].iter().zip(&batch[b]).map(|(x, y)| x * y).sum::<f32>();
    assert!(sim(1, 2) > 0.7 && sim(1, 3) < 0.0, "{} {}", sim(1, 2), sim(1, 3));
}

#[test]
fn a_missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), "{}").unwrap();
    let e = LocalEmbedder::load(dir.path()).err().unwrap();
    assert!(e.to_string().contains("tokenizer.json is missing"), "{e}");
}

#[tokio::test]
async fn the_index_runs_hybrid_on_the_local_model() {
    let Some((model, _)) = lane() else { return };
    let embedder: Arc<dyn Embedder> = Arc::new(LocalEmbedder::load(&model).unwrap());
    let ws = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(ws.path().join("memory")).unwrap();
    std::fs::write(
        ws.path().join("memory/home.md"),
        "A spare key is hidden under the blue flowerpot by the back door.\n",
    )
    .unwrap();
    std::fs::write(ws.path().join("memory/work.md"), "The quarterly report is due to finance on the last Friday.\n")
        .unwrap();
    let index = MemoryIndex::with_connection(
        clawline_memory::db::open_in_memory("unicode61").unwrap(),
        ws.path(),
        Settings::default(),
        Some(embedder),
        "",
    );
    let r = index.sync(false, &|_| {}).await.unwrap();
    assert_eq!((r.embedded, r.embed_error.as_deref()), (2, None));
    // No shared content word ("keys" is not "key"): only the vectors can find it.
    let out = index.search("how do I get into the house if I lose my keys").await.unwrap();
    assert_eq!(out.mode, Mode::Hybrid);
    assert_eq!(out.results[0].candidate.path, "memory/home.md", "{out:?}");
    let status = index.status().await.unwrap();
    assert_eq!((status.provider.as_deref(), status.dims), (Some("local"), Some(384)));
}
