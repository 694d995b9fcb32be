//! Each agent's memory index, opened on first use from `memory.search`, with the remote
//! embedding API the config chose (or none, and the reason).
//!
//! The index lives at `<state>/memory/<agent>.sqlite`. Once opened (at the agent's first memory
//! tool call, never at gateway start, so a gateway with memory files spends no embedding calls
//! until memory is used), a watcher (`memory.search.sync.watch`, default on) indexes edits in
//! the background once the files have been still for `watchDebounceMs`; a search also catches
//! up first when the last sync is more than [`STALE_AFTER`] old (`sync.onSearch`, a stat of each
//! memory file when nothing changed); and `clawline memory index` syncs on demand. With
//! `sources: ["sessions"]` the agent's past conversations are indexed too: a follower of the
//! store's change feed (`memory_follow.rs`) syncs once a transcript has grown past the delta
//! thresholds or a session ended, and the syncs above bring them up to date as well.
//!
//! This file wires; it must not rank or chunk (that is `clawline-memory`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clawline_core::config::Config;
use clawline_core::config::memory::{
    Embedding, EmbeddingApiKind, EmbeddingBatch, EmbeddingTarget, HfModel, MemorySettings,
};
use clawline_memory::MemoryError;
use clawline_memory::embed::{BulkFuture, EmbedError, EmbedFuture, Embedder, Purpose};
use clawline_memory::index::{MemoryIndex, Settings};
use clawline_memory::scoring::Ranking;
use clawline_memory::transcripts::DeltaThresholds;
use clawline_store::Store;

use crate::memory_transcripts::StoreTranscripts;
use clawline_providers::embeddings::batch::{BatchProgress, BatchSettings};
use clawline_providers::embeddings::{EmbeddingApi, EmbeddingClient, EmbeddingSettings};

/// How old a sync may be before a search syncs first.
pub const STALE_AFTER: Duration = Duration::from_secs(5);

/// A remote embedding API as an [`Embedder`], with its batch API for large syncs when
/// `memory.search.remote.batch.enabled` is set and the API has one.
pub struct RemoteEmbedder {
    client: EmbeddingClient,
    batch: Option<EmbeddingBatch>,
}

impl RemoteEmbedder {
    pub fn new(target: &EmbeddingTarget, http: reqwest::Client) -> RemoteEmbedder {
        let api = match target.api {
            EmbeddingApiKind::OpenAi => EmbeddingApi::OpenAi,
            EmbeddingApiKind::Voyage => EmbeddingApi::Voyage,
            EmbeddingApiKind::Mistral => EmbeddingApi::Mistral,
            EmbeddingApiKind::Gemini => EmbeddingApi::Gemini,
            EmbeddingApiKind::Ollama => EmbeddingApi::Ollama,
        };
        RemoteEmbedder {
            client: EmbeddingClient::new(
                EmbeddingSettings {
                    provider: target.provider.clone(),
                    api,
                    base_url: target.base_url.clone(),
                    api_key: target.api_key.clone(),
                    model: target.model.clone(),
                    dimensions: target.dimensions,
                    headers: target.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                    timeout: Duration::from_secs(60),
                    retries: 2,
                },
                http,
            ),
            batch: target.batch,
        }
    }
}

impl Embedder for RemoteEmbedder {
    fn provider(&self) -> &str {
        &self.client.settings.provider
    }

    fn model(&self) -> &str {
        &self.client.settings.model
    }

    fn max_batch(&self) -> usize {
        self.client.settings.api.max_batch().min(256)
    }

    fn embed<'a>(&'a self, texts: &'a [String], purpose: Purpose) -> EmbedFuture<'a> {
        Box::pin(async move {
            self.client.embed(texts, purpose == Purpose::Query).await.map_err(|e| EmbedError {
                provider: self.client.settings.provider.clone(),
                model: self.client.settings.model.clone(),
                message: e.to_string(),
            })
        })
    }

    fn wants_bulk(&self, count: usize) -> bool {
        self.batch.is_some_and(|b| count >= b.min_chunks) && self.client.supports_batch()
    }

    fn bulk<'a>(&'a self, texts: &'a [String]) -> Option<BulkFuture<'a>> {
        let b = self.batch.filter(|_| self.wants_bulk(texts.len()))?;
        let settings = BatchSettings { poll_interval: b.poll_interval, timeout: b.timeout, ..BatchSettings::default() };
        Some(Box::pin(async move {
            let provider = self.client.settings.provider.clone();
            tracing::info!(provider = %provider, texts = texts.len(), "memory: embedding through the batch API");
            let log = |p: BatchProgress| {
                tracing::info!(provider = %provider, jobs_done = p.jobs_done, jobs = p.jobs, texts_done = p.texts_done, "memory: batch embedding");
            };
            self.client.embed_batched(texts, &settings, &log).await.map_err(|e| EmbedError {
                provider: self.client.settings.provider.clone(),
                model: self.client.settings.model.clone(),
                message: e.to_string(),
            })
        }))
    }
}

/// The index settings `memory.search` describes.
pub fn index_settings(m: &MemorySettings) -> Settings {
    Settings {
        extra_paths: m.extra_paths.clone(),
        ranking: Ranking {
            max_results: m.max_results,
            min_score: m.min_score,
            vector_weight: m.vector_weight,
            text_weight: m.text_weight,
            candidate_multiplier: m.candidate_multiplier,
            mmr_lambda: m.mmr_lambda,
            half_life_days: m.half_life_days,
        },
        tokenizer: m.tokenizer.clone(),
        cache_max_entries: m.cache_max_entries,
        ..Settings::default()
    }
}

/// Where an agent's index is kept.
pub fn index_path(state_dir: &Path, agent_id: &str) -> PathBuf {
    state_dir.join("memory").join(format!("{agent_id}.sqlite"))
}

/// Opens an agent's index as the config describes it; with `sources: ["sessions"]`, the
/// agent's transcripts in `store` are indexed too.
pub fn open_index(
    config: &Config,
    agent_id: &str,
    workspace: &Path,
    http: reqwest::Client,
    store: Option<&Store>,
) -> Result<MemoryIndex, MemoryError> {
    let m = &config.memory;
    let (embedder, why): (Option<Arc<dyn Embedder>>, String) = match &m.embedding {
        Ok(Embedding::Remote(target)) => (Some(Arc::new(RemoteEmbedder::new(target, http))), String::new()),
        Ok(Embedding::Local { model, download }) => local_embedder(model, download.clone()),
        Err(why) => (None, why.clone()),
    };
    let index =
        MemoryIndex::open(&index_path(&config.state_dir, agent_id), workspace, index_settings(m), embedder, why)?;
    Ok(match store.filter(|_| m.index_sessions) {
        Some(store) => index.with_transcripts(
            Arc::new(StoreTranscripts::new(store.clone(), agent_id)),
            DeltaThresholds { bytes: m.session_delta_bytes, messages: m.session_delta_messages },
        ),
        None => index,
    })
}

#[cfg(feature = "local-embeddings")]
fn local_embedder(model: &Path, download: Option<HfModel>) -> (Option<Arc<dyn Embedder>>, String) {
    (Some(shared_local(model, download)), String::new())
}

#[cfg(not(feature = "local-embeddings"))]
fn local_embedder(model: &Path, _download: Option<HfModel>) -> (Option<Arc<dyn Embedder>>, String) {
    (
        None,
        format!(
            "memory.search.model {} is a local model, but this clawline was built without local embeddings (cargo feature `local-embeddings`); search uses text only",
            model.display()
        ),
    )
}

/// One loaded copy of each local model for the whole process (the weights are large).
#[cfg(feature = "local-embeddings")]
fn shared_local(model: &Path, download: Option<HfModel>) -> Arc<dyn Embedder> {
    use std::sync::OnceLock;
    static MODELS: OnceLock<Mutex<HashMap<PathBuf, Arc<LazyLocal>>>> = OnceLock::new();
    let mut models = MODELS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    models
        .entry(model.to_path_buf())
        .or_insert_with(|| {
            // An hf: model is named by its repository (its folder is named by the revision).
            let name = match &download {
                Some(hf) => hf.repo.rsplit('/').next().unwrap_or("local").to_string(),
                None => clawline_memory::local::model_dir(model)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "local".into()),
            };
            Arc::new(LazyLocal {
                path: model.to_path_buf(),
                name,
                download,
                downloading: tokio::sync::Mutex::new(()),
                loaded: tokio::sync::OnceCell::new(),
            })
        })
        .clone()
}

/// A local model loaded on its first use, so opening an index (at a run's start) stays cheap;
/// an `hf:` model is downloaded first if its folder is not complete (a failed download is tried
/// again at the next use; a model that fails to load is not).
#[cfg(feature = "local-embeddings")]
struct LazyLocal {
    path: PathBuf,
    name: String,
    download: Option<HfModel>,
    downloading: tokio::sync::Mutex<()>,
    loaded: tokio::sync::OnceCell<Result<clawline_memory::local::LocalEmbedder, String>>,
}

#[cfg(feature = "local-embeddings")]
impl LazyLocal {
    async fn ensure_downloaded(&self) -> Result<(), String> {
        let Some(hf) = &self.download else { return Ok(()) };
        let _one = self.downloading.lock().await;
        if clawline_providers::hf_download::is_complete(&self.path) {
            return Ok(());
        }
        tracing::info!(repo = %hf.repo, revision = %hf.revision, dir = %self.path.display(), "downloading the embedding model");
        clawline_providers::hf_download::download_model(hf, &self.path, &log_download)
            .await
            .map_err(|e| format!("downloading hf:{}@{}: {e}", hf.repo, hf.revision))
    }
}

/// Logs a download's progress at each further quarter.
#[cfg(feature = "local-embeddings")]
fn log_download(p: clawline_providers::hf_download::DownloadProgress) {
    if let Some(total) = p.total.filter(|t| *t > 0) {
        let quarter = |n: u64| n * 4 / total;
        if quarter(p.done) != quarter(p.done.saturating_sub(4 << 20)) || p.done == total {
            tracing::info!(file = %p.file, done = p.done, total, "downloading the embedding model");
        }
    }
}

#[cfg(feature = "local-embeddings")]
impl Embedder for LazyLocal {
    fn provider(&self) -> &str {
        "local"
    }

    fn model(&self) -> &str {
        &self.name
    }

    fn max_batch(&self) -> usize {
        64
    }

    fn embed<'a>(&'a self, texts: &'a [String], purpose: Purpose) -> EmbedFuture<'a> {
        Box::pin(async move {
            if let Err(message) = self.ensure_downloaded().await {
                return Err(EmbedError { provider: "local".into(), model: self.name.clone(), message });
            }
            let loaded = self
                .loaded
                .get_or_init(|| async {
                    let path = self.path.clone();
                    tokio::task::spawn_blocking(move || {
                        let started = Instant::now();
                        let m = clawline_memory::local::LocalEmbedder::load(&path).map_err(|e| e.to_string());
                        if m.is_ok() {
                            tracing::info!(model = %path.display(), ms = started.elapsed().as_millis() as u64, "loaded the local embedding model");
                        }
                        m
                    })
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()))
                })
                .await;
            match loaded {
                Ok(m) => m.embed(texts, purpose).await,
                Err(e) => Err(EmbedError { provider: "local".into(), model: self.name.clone(), message: e.clone() }),
            }
        })
    }
}

/// An open index, when a search last synced it, and whether searches sync at all.
type OpenIndex = (Arc<MemoryIndex>, Option<Instant>, bool);

/// The open indexes of a runtime, one per agent, with when each last synced.
#[derive(Default)]
pub struct Memories {
    open: Mutex<HashMap<String, OpenIndex>>,
}

impl Memories {
    /// The agent's index, opened on first use.
    pub fn get(
        &self,
        config: &Config,
        agent_id: &str,
        workspace: &Path,
        http: impl FnOnce() -> reqwest::Client,
        store: &Store,
    ) -> Result<Arc<MemoryIndex>, MemoryError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((index, _, _)) = open.get(agent_id) {
            return Ok(index.clone());
        }
        let index = Arc::new(open_index(config, agent_id, workspace, http(), Some(store))?);
        if let (Some(debounce), Ok(_)) = (config.memory.watch_debounce, tokio::runtime::Handle::try_current()) {
            let agent = agent_id.to_string();
            let settings = clawline_memory::watch::WatchSettings { debounce, ..Default::default() };
            // The watcher holds the index weakly; it ends with the process (the map keeps it).
            drop(clawline_memory::watch::spawn(&index, settings, move |report| match report {
                Ok(r) if r.embed_error.is_some() => {
                    tracing::warn!(agent = %agent, error = ?r.embed_error, "memory embeddings failed; the chunks without vectors are found by text only")
                }
                Ok(r) if r.files_indexed + r.files_removed > 0 => {
                    tracing::debug!(agent = %agent, indexed = r.files_indexed, removed = r.files_removed, embedded = r.embedded, "memory files changed; indexed")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(agent = %agent, error = %e, "memory sync failed"),
            }));
        }
        if config.memory.index_sessions && tokio::runtime::Handle::try_current().is_ok() {
            let m = &config.memory;
            let t = DeltaThresholds { bytes: m.session_delta_bytes, messages: m.session_delta_messages };
            // Like the watcher, it holds the index weakly and ends with the process.
            drop(crate::memory_follow::spawn(store, &index, agent_id, t));
        }
        open.insert(agent_id.to_string(), (index.clone(), None, config.memory.sync_on_search));
        Ok(index)
    }

    /// Syncs the agent's index when its last sync is older than [`STALE_AFTER`].
    pub async fn refresh(&self, agent_id: &str, index: &MemoryIndex) -> Result<(), MemoryError> {
        let stale = {
            let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            open.get(agent_id)
                .is_none_or(|(_, at, on_search)| *on_search && at.is_none_or(|at| at.elapsed() >= STALE_AFTER))
        };
        if stale {
            let report = index.sync(false, &|_| {}).await?;
            if let Some(e) = &report.embed_error {
                tracing::warn!(agent = agent_id, error = %e, "memory embeddings failed; search falls back to text for the chunks without vectors");
            }
            if let Some((_, at, _)) = self.open.lock().unwrap_or_else(|p| p.into_inner()).get_mut(agent_id) {
                *at = Some(Instant::now());
            }
        }
        Ok(())
    }
}
