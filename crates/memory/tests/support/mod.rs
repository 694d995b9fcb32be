//! Test doubles shared by the index tests: a deterministic embedder and a workspace folder.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use clawline_memory::embed::{EmbedError, EmbedFuture, Embedder, Purpose};
use clawline_memory::index::{MemoryIndex, Settings};

pub const DIMS: usize = 64;

/// Hashed bag-of-words vectors; counts texts; can be told to fail or to answer wrongly.
pub struct WordHash {
    pub model: String,
    pub texts: AtomicUsize,
    pub failure: Mutex<Option<String>>,
    pub dims: Mutex<usize>,
    /// Time each embedding call takes, as a remote API's would.
    pub delay: Mutex<Option<std::time::Duration>>,
    /// A batch route: used from this many texts, leaving out every `skip`-th text, or failing.
    pub bulk: Mutex<Option<Bulk>>,
    /// Texts the batch route embedded.
    pub bulk_texts: AtomicUsize,
}

/// How [`WordHash`]'s batch route behaves.
#[derive(Debug, Clone, Default)]
pub struct Bulk {
    pub min: usize,
    /// Every text at a position divisible by this is left out (0: none).
    pub skip: usize,
    pub fail: Option<String>,
}

impl WordHash {
    pub fn new(model: &str) -> Arc<WordHash> {
        Arc::new(WordHash {
            model: model.into(),
            texts: AtomicUsize::new(0),
            failure: Mutex::new(None),
            dims: Mutex::new(DIMS),
            delay: Mutex::new(None),
            bulk: Mutex::new(None),
            bulk_texts: AtomicUsize::new(0),
        })
    }
    pub fn embedded(&self) -> usize {
        self.texts.load(Ordering::SeqCst)
    }
    pub fn fail(&self, why: Option<&str>) {
        *self.failure.lock().unwrap() = why.map(String::from);
    }
}

pub fn vector(text: &str, dims: usize) -> Vec<f32> {
    let mut v = vec![0f32; dims];
    for w in text.split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() > 1) {
        let h = w.to_lowercase().bytes().fold(2166136261u32, |h, b| (h ^ u32::from(b)).wrapping_mul(16777619));
        v[h as usize % dims] += 1.0;
    }
    v
}

impl Embedder for WordHash {
    fn provider(&self) -> &str {
        "test"
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn max_batch(&self) -> usize {
        3
    }
    fn embed<'a>(&'a self, texts: &'a [String], purpose: Purpose) -> EmbedFuture<'a> {
        Box::pin(async move {
            let delay = *self.delay.lock().unwrap();
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            if let Some(why) = self.failure.lock().unwrap().clone() {
                return Err(EmbedError { provider: "test".into(), model: self.model.clone(), message: why });
            }
            if purpose == Purpose::Document {
                self.texts.fetch_add(texts.len(), Ordering::SeqCst);
            }
            let dims = *self.dims.lock().unwrap();
            Ok(texts.iter().map(|t| vector(t, dims)).collect())
        })
    }
    fn wants_bulk(&self, count: usize) -> bool {
        self.bulk.lock().unwrap().as_ref().is_some_and(|b| count >= b.min)
    }
    fn bulk<'a>(&'a self, texts: &'a [String]) -> Option<clawline_memory::embed::BulkFuture<'a>> {
        let b = self.bulk.lock().unwrap().clone().filter(|b| texts.len() >= b.min)?;
        Some(Box::pin(async move {
            if let Some(why) = b.fail {
                return Err(EmbedError { provider: "test".into(), model: self.model.clone(), message: why });
            }
            let dims = *self.dims.lock().unwrap();
            let out: Vec<Option<Vec<f32>>> = texts
                .iter()
                .enumerate()
                .map(|(i, t)| (b.skip == 0 || i % b.skip != 0).then(|| vector(t, dims)))
                .collect();
            self.bulk_texts.fetch_add(out.iter().filter(|v| v.is_some()).count(), Ordering::SeqCst);
            Ok(out)
        }))
    }
}

pub fn workspace() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::create_dir_all(root.join("memory")).unwrap();
    (dir, root)
}

pub fn open(root: &Path, embedder: Option<Arc<WordHash>>) -> MemoryIndex {
    let e: Option<Arc<dyn Embedder>> = embedder.map(|e| e as Arc<dyn Embedder>);
    MemoryIndex::open(&root.join(".index/main.sqlite"), root, Settings::default(), e, "memory.search.provider is none")
        .unwrap()
}

pub fn quiet() -> impl Fn(clawline_memory::index::Progress) + Sync {
    |_| {}
}

/// A long note: `n` paragraphs of distinct words, so it makes several chunks.
pub fn long_note(topic: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "## {topic} part {i}\n{}\n",
                (0..60).map(|j| format!("{topic}{i}w{j}")).collect::<Vec<_>>().join(" ")
            )
        })
        .collect()
}
