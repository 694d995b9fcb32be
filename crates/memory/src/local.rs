//! Sentence embeddings computed in this process: a BERT-family encoder (all-MiniLM-L6-v2 and its
//! relatives) run by candle on the CPU, with the model's own WordPiece tokenizer.
//!
//! A model is a folder holding `config.json`, `tokenizer.json` and `model.safetensors` (as
//! sentence-transformers publishes them; a path to the `.safetensors` file names its folder).
//! Texts are tokenized without padding and truncated at the model's `max_seq_length`
//! (`sentence_bert_config.json`, default 256), encoded in batches padded to their longest text
//! with the padding masked out, mean-pooled over the real tokens (or the first token, if the
//! model's `1_Pooling/config.json` says CLS) and scaled to unit length.
//!
//! Encoding is CPU work: it runs on a blocking thread, never on an async task. Documents (a
//! sync) are encoded on [`indexing_threads`] threads — one fewer than the machine has, at
//! least one — so indexing never takes every core from chat; a query uses them all. This file
//! must not download anything.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

use crate::embed::{EmbedError, EmbedFuture, Embedder, Purpose, normalized};

/// Texts encoded together.
const BATCH: usize = 16;

/// Threads a sync's documents are encoded on.
pub fn indexing_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

/// The pool documents are encoded in (`None` if it could not be made: then the global one).
fn indexing_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(indexing_threads())
            .thread_name(|i| format!("clawline-embed-{i}"))
            .build()
            .map_err(|e| tracing::warn!(error = %e, "memory: no indexing thread pool; documents use every core"))
            .ok()
    })
    .as_ref()
}

/// Why a model folder cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("the local embedding model at {path}: {message}")]
pub struct LocalModelError {
    pub path: String,
    pub message: String,
}

struct Loaded {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    pad_id: u32,
    cls_pooling: bool,
    name: String,
}

/// A local embedding model. Cheap to clone.
#[derive(Clone)]
pub struct LocalEmbedder {
    inner: Arc<Loaded>,
}

/// The folder a model path names (the folder itself, or the folder of a `.safetensors` file).
pub fn model_dir(path: &Path) -> PathBuf {
    if path.extension().is_some_and(|e| e == "safetensors") {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        path.to_path_buf()
    }
}

/// Whether `path` looks like a local model (the three files are there).
pub fn is_model(path: &Path) -> bool {
    let dir = model_dir(path);
    ["config.json", "tokenizer.json", "model.safetensors"].iter().all(|f| dir.join(f).is_file())
}

impl LocalEmbedder {
    /// Loads the model in `path` (a folder, or its `model.safetensors`).
    pub fn load(path: &Path) -> Result<LocalEmbedder, LocalModelError> {
        let dir = model_dir(path);
        let fail = |message: String| LocalModelError { path: dir.display().to_string(), message };
        for f in ["config.json", "tokenizer.json", "model.safetensors"] {
            if !dir.join(f).is_file() {
                return Err(fail(format!(
                    "{f} is missing (a model folder holds config.json, tokenizer.json and model.safetensors)"
                )));
            }
        }
        let config_text =
            std::fs::read_to_string(dir.join("config.json")).map_err(|e| fail(format!("config.json: {e}")))?;
        let config: Config =
            serde_json::from_str(&config_text).map_err(|e| fail(format!("config.json is not a BERT config: {e}")))?;
        let read_json = |name: &str| -> Option<serde_json::Value> {
            std::fs::read_to_string(dir.join(name)).ok().and_then(|t| serde_json::from_str(&t).ok())
        };
        let max_seq = read_json("sentence_bert_config.json")
            .and_then(|v| v["max_seq_length"].as_u64())
            .map_or(256, |n| n as usize)
            .min(config.max_position_embeddings);
        let cls_pooling = read_json("1_Pooling/config.json")
            .is_some_and(|v| v["pooling_mode_cls_token"] == true && v["pooling_mode_mean_tokens"] != true);
        let mut tokenizer =
            Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| fail(format!("tokenizer.json: {e}")))?;
        tokenizer.with_padding(None::<PaddingParams>);
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: max_seq, ..Default::default() }))
            .map_err(|e| fail(format!("tokenizer.json: {e}")))?;
        let device = Device::Cpu;
        let bytes =
            std::fs::read(dir.join("model.safetensors")).map_err(|e| fail(format!("model.safetensors: {e}")))?;
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &device)
            .map_err(|e| fail(format!("model.safetensors: {e}")))?;
        let model =
            BertModel::load(vb, &config).map_err(|e| fail(format!("the weights do not fit config.json: {e}")))?;
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "local".into());
        Ok(LocalEmbedder {
            inner: Arc::new(Loaded { model, tokenizer, device, pad_id: config.pad_token_id as u32, cls_pooling, name }),
        })
    }

    /// Embeds documents (blocking) on the indexing threads only.
    pub fn embed_documents_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
        match indexing_pool() {
            Some(pool) => pool.install(|| self.embed_blocking(texts)),
            None => self.embed_blocking(texts),
        }
    }

    /// Embeds `texts` on this thread, its matrix work spread over every core (blocking).
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
        let l = &self.inner;
        let mut encodings = Vec::with_capacity(texts.len());
        for t in texts {
            let e = l.tokenizer.encode(t.as_str(), true).map_err(|e| format!("tokenizing failed: {e}"))?;
            encodings.push(e.get_ids().to_vec());
        }
        // Batches of similar length waste little on padding.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| encodings[i].len());
        let mut out: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        for group in order.chunks(BATCH) {
            let vectors = self
                .encode_batch(group.iter().map(|&i| encodings[i].as_slice()).collect())
                .map_err(|e| format!("the model failed: {e}"))?;
            for (&i, v) in group.iter().zip(vectors) {
                out[i] = Some(v);
            }
        }
        Ok(out.into_iter().map(Option::unwrap_or_default).collect())
    }

    fn encode_batch(&self, ids: Vec<&[u32]>) -> candle_core::Result<Vec<Vec<f32>>> {
        let l = &self.inner;
        let width = ids.iter().map(|i| i.len()).max().unwrap_or(0).max(1);
        let mut flat = Vec::with_capacity(ids.len() * width);
        let mut mask = Vec::with_capacity(ids.len() * width);
        for row in &ids {
            flat.extend_from_slice(row);
            flat.extend(std::iter::repeat_n(l.pad_id, width - row.len()));
            mask.extend(std::iter::repeat_n(1u32, row.len()));
            mask.extend(std::iter::repeat_n(0u32, width - row.len()));
        }
        let n = ids.len();
        let input = Tensor::from_vec(flat, (n, width), &l.device)?;
        let mask = Tensor::from_vec(mask, (n, width), &l.device)?;
        let types = input.zeros_like()?;
        let hidden = l.model.forward(&input, &types, Some(&mask))?; // (n, width, dims)
        let pooled = if l.cls_pooling {
            hidden.narrow(1, 0, 1)?.squeeze(1)?
        } else {
            let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (n, width, 1)
            let summed = hidden.broadcast_mul(&m)?.sum(1)?; // (n, dims)
            let counts = m.sum(1)?.clamp(1.0, f64::MAX)?; // (n, 1)
            summed.broadcast_div(&counts)?
        };
        let rows: Vec<Vec<f32>> = pooled.to_vec2()?;
        Ok(rows.iter().map(|r| normalized(r)).collect())
    }
}

impl Embedder for LocalEmbedder {
    fn provider(&self) -> &str {
        "local"
    }

    fn model(&self) -> &str {
        &self.inner.name
    }

    fn max_batch(&self) -> usize {
        BATCH * 4
    }

    fn embed<'a>(&'a self, texts: &'a [String], purpose: Purpose) -> EmbedFuture<'a> {
        let me = self.clone();
        let owned = texts.to_vec();
        Box::pin(async move {
            let name = me.inner.name.clone();
            tokio::task::spawn_blocking(move || match purpose {
                Purpose::Document => me.embed_documents_blocking(&owned),
                Purpose::Query => me.embed_blocking(&owned),
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
            .map_err(|message| EmbedError { provider: "local".into(), model: name, message })
        })
    }
}
