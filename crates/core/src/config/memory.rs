//! `memory.search` resolved: ranking knobs checked, and which embedding API (if any) the index
//! will use, with the reason when there is none.
//!
//! `provider: auto` (the default) picks a local model when `memory.search.model` is a model
//! folder, else the first remote provider whose key is known — OpenAI, Gemini, Voyage, Mistral,
//! from `models.providers.<id>` or `<ID>_API_KEY` — and otherwise leaves search text-only,
//! saying so. A named provider without a key is also text-only with the
//! reason, not an error: the gateway must start, and `clawline memory status` tells the truth.
//! Unknown names, out-of-range numbers and unknown sources are config errors at their key.
//!
//! This file is pure: the environment comes through the resolver.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::resolve::{Issue, ProviderSettings, Resolver, issue};
use super::schema::MemorySearchFile;
use crate::secret::SecretString;

/// The embedding wire formats the memory index can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingApiKind {
    OpenAi,
    Voyage,
    Mistral,
    Gemini,
    Ollama,
}

/// A remote embedding endpoint, ready to call.
#[derive(Debug, Clone)]
pub struct EmbeddingTarget {
    /// `openai`, `gemini`, `voyage`, `mistral`, `ollama`, `openai-compatible`.
    pub provider: String,
    pub api: EmbeddingApiKind,
    pub base_url: String,
    pub api_key: Option<SecretString>,
    pub model: String,
    pub dimensions: Option<usize>,
    pub headers: BTreeMap<String, String>,
    /// The provider's batch API for large syncs (`memory.search.remote.batch.enabled`).
    pub batch: Option<EmbeddingBatch>,
}

/// When and how a sync embeds through the provider's batch API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddingBatch {
    /// Syncs with fewer texts to embed call the API directly.
    pub min_chunks: usize,
    pub poll_interval: std::time::Duration,
    /// A batch still running after this long is cancelled (its texts are embedded directly).
    pub timeout: std::time::Duration,
}

/// OpenClaw's ranking defaults, the one source for the config loader and the memory index.
pub mod defaults {
    pub const MAX_RESULTS: usize = 6;
    pub const MIN_SCORE: f64 = 0.35;
    pub const VECTOR_WEIGHT: f64 = 0.7;
    pub const TEXT_WEIGHT: f64 = 0.3;
    pub const CANDIDATE_MULTIPLIER: usize = 4;
    pub const MMR_LAMBDA: f64 = 0.7;
    pub const HALF_LIFE_DAYS: f64 = 30.0;
}

/// What computes the embeddings.
#[derive(Debug, Clone)]
pub enum Embedding {
    Remote(EmbeddingTarget),
    /// A model folder (or its `model.safetensors`) run in this process; for an `hf:` model, the
    /// folder in the state directory it is downloaded into on first use.
    Local {
        model: PathBuf,
        download: Option<HfModel>,
    },
}

/// A model on the Hugging Face Hub (`hf:<owner>/<repo>[@<revision>]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HfModel {
    /// `owner/repo`.
    pub repo: String,
    /// A branch, tag or commit (default `main`).
    pub revision: String,
    /// `HF_ENDPOINT`, else `https://huggingface.co`.
    pub endpoint: String,
    /// `HF_TOKEN`, for gated or private models.
    pub token: Option<SecretString>,
}

/// Parses `hf:<owner>/<repo>[@<revision>]`; the error says what is wrong.
pub fn parse_hf(raw: &str) -> Result<(String, String), String> {
    let rest = raw.strip_prefix("hf:").unwrap_or(raw);
    let (repo, revision) = match rest.split_once('@') {
        Some((r, v)) => (r, v),
        None => (rest, "main"),
    };
    let parts: Vec<&str> = repo.split('/').collect();
    let name_ok = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    if parts.len() != 2 || !parts.iter().all(|p| name_ok(p)) {
        return Err(format!(
            "`{raw}` is not a Hugging Face model: use hf:<owner>/<repo> (a folder of config.json, tokenizer.json and model.safetensors), e.g. hf:sentence-transformers/all-MiniLM-L6-v2"
        ));
    }
    if !name_ok(revision) {
        return Err(format!("`{raw}`: `{revision}` is not a revision (a branch, tag or commit)"));
    }
    Ok((repo.to_string(), revision.to_string()))
}

/// How memory is indexed and searched.
#[derive(Debug, Clone)]
pub struct MemorySettings {
    pub enabled: bool,
    /// The embedder, or `Err(reason)` when search is text-only.
    pub embedding: Result<Embedding, String>,
    pub index_sessions: bool,
    /// A transcript is indexed again once it grew by this many bytes or messages.
    pub session_delta_bytes: u64,
    pub session_delta_messages: u64,
    pub extra_paths: Vec<String>,
    pub max_results: usize,
    pub min_score: f64,
    pub vector_weight: f64,
    pub text_weight: f64,
    pub candidate_multiplier: usize,
    pub mmr_lambda: Option<f64>,
    pub half_life_days: Option<f64>,
    pub tokenizer: String,
    pub cache_max_entries: usize,
    /// Watch the files, syncing once they are unchanged for this long; `None`: no watcher.
    pub watch_debounce: Option<std::time::Duration>,
    /// Sync before a search when the index is stale.
    pub sync_on_search: bool,
}

const PROVIDERS: &[&str] =
    &["auto", "none", "local", "openai", "gemini", "voyage", "mistral", "ollama", "openai-compatible"];

/// `(api, default base URL, default model, key variable, chat provider whose key is shared)`.
fn defaults(name: &str) -> Option<(EmbeddingApiKind, &'static str, &'static str, &'static str, &'static str)> {
    Some(match name {
        "openai" => (
            EmbeddingApiKind::OpenAi,
            "https://api.openai.com/v1",
            "text-embedding-3-small",
            "OPENAI_API_KEY",
            "openai",
        ),
        "gemini" => (
            EmbeddingApiKind::Gemini,
            "https://generativelanguage.googleapis.com/v1beta",
            "gemini-embedding-001",
            "GEMINI_API_KEY",
            "google",
        ),
        "voyage" => (EmbeddingApiKind::Voyage, "https://api.voyageai.com/v1", "voyage-3.5", "VOYAGE_API_KEY", "voyage"),
        "mistral" => {
            (EmbeddingApiKind::Mistral, "https://api.mistral.ai/v1", "mistral-embed", "MISTRAL_API_KEY", "mistral")
        }
        "ollama" => (EmbeddingApiKind::Ollama, "http://127.0.0.1:11434", "nomic-embed-text", "", "ollama"),
        "openai-compatible" => (EmbeddingApiKind::OpenAi, "", "", "", ""),
        _ => return None,
    })
}

impl Resolver<'_> {
    pub(crate) fn memory(
        &self,
        m: &MemorySearchFile,
        providers: &BTreeMap<String, ProviderSettings>,
        issues: &mut Vec<Issue>,
    ) -> MemorySettings {
        let q = &m.query;
        let h = &q.hybrid;
        let unit = |path: &str, v: Option<f64>, default: f64, issues: &mut Vec<Issue>| -> f64 {
            let v = v.unwrap_or(default);
            if !(0.0..=1.0).contains(&v) {
                issues.push(issue(path, format!("{v} is out of range"), Some("use a number from 0 to 1".into())));
                return default;
            }
            v
        };
        let vector_weight =
            unit("memory.search.query.hybrid.vectorWeight", h.vector_weight, defaults::VECTOR_WEIGHT, issues);
        let text_weight = unit("memory.search.query.hybrid.textWeight", h.text_weight, defaults::TEXT_WEIGHT, issues);
        if vector_weight + text_weight == 0.0 {
            issues.push(issue(
                "memory.search.query.hybrid",
                "vectorWeight and textWeight are both 0, so every result would score 0",
                Some("give at least one of them a weight above 0".into()),
            ));
        }
        let min_score = unit("memory.search.query.minScore", q.min_score, defaults::MIN_SCORE, issues);
        let max_results = q.max_results.unwrap_or(defaults::MAX_RESULTS);
        if !(1..=100).contains(&max_results) {
            issues.push(issue(
                "memory.search.query.maxResults",
                format!("{max_results} is out of range"),
                Some("use 1 to 100".into()),
            ));
        }
        let candidate_multiplier = h.candidate_multiplier.unwrap_or(defaults::CANDIDATE_MULTIPLIER);
        if !(1..=50).contains(&candidate_multiplier) {
            issues.push(issue(
                "memory.search.query.hybrid.candidateMultiplier",
                format!("{candidate_multiplier} is out of range"),
                Some("use 1 to 50".into()),
            ));
        }
        let lambda = unit("memory.search.query.hybrid.mmr.lambda", h.mmr.lambda, defaults::MMR_LAMBDA, issues);
        let half_life = h.temporal_decay.half_life_days.unwrap_or(defaults::HALF_LIFE_DAYS);
        if !(half_life > 0.0 && half_life.is_finite()) {
            issues.push(issue(
                "memory.search.query.hybrid.temporalDecay.halfLifeDays",
                format!("{half_life} is not a positive number of days"),
                None,
            ));
        }
        let tokenizer = m.store.fts.tokenizer.clone().unwrap_or_else(|| "unicode61".into());
        if tokenizer != "unicode61" && tokenizer != "trigram" {
            issues.push(issue(
                "memory.search.store.fts.tokenizer",
                format!("`{tokenizer}` is not a tokenizer clawline has"),
                Some("use \"unicode61\" or \"trigram\"".into()),
            ));
        }
        let sources = m.sources.clone().unwrap_or_else(|| vec!["memory".into()]);
        for (i, s) in sources.iter().enumerate() {
            if s != "memory" && s != "sessions" {
                issues.push(issue(
                    format!("memory.search.sources[{i}]"),
                    format!("`{s}` is not a memory source"),
                    Some("use \"memory\" and/or \"sessions\"".into()),
                ));
            }
        }
        let hybrid_on = h.enabled.unwrap_or(true);
        let embedding = if hybrid_on {
            self.embedding(m, providers, issues)
        } else {
            Err("hybrid search is off (memory.search.query.hybrid.enabled: false)".into())
        };
        MemorySettings {
            enabled: m.enabled.unwrap_or(true),
            embedding,
            index_sessions: sources.iter().any(|s| s == "sessions")
                || m.experimental.as_ref().and_then(|e| e.session_memory).unwrap_or(false),
            session_delta_bytes: m.sync.sessions.as_ref().and_then(|s| s.delta_bytes).unwrap_or(100_000),
            session_delta_messages: m.sync.sessions.as_ref().and_then(|s| s.delta_messages).unwrap_or(50),
            extra_paths: m.extra_paths.clone(),
            max_results,
            min_score,
            vector_weight,
            text_weight,
            candidate_multiplier,
            mmr_lambda: h.mmr.enabled.unwrap_or(true).then_some(lambda),
            half_life_days: h.temporal_decay.enabled.unwrap_or(true).then_some(half_life),
            tokenizer,
            cache_max_entries: if m.cache.enabled.unwrap_or(true) { m.cache.max_entries.unwrap_or(50_000) } else { 0 },
            watch_debounce: m
                .sync
                .watch
                .unwrap_or(true)
                .then(|| std::time::Duration::from_millis(m.sync.watch_debounce_ms.unwrap_or(1500))),
            sync_on_search: m.sync.on_search.unwrap_or(true),
        }
    }

    fn embedding(
        &self,
        m: &MemorySearchFile,
        providers: &BTreeMap<String, ProviderSettings>,
        issues: &mut Vec<Issue>,
    ) -> Result<Embedding, String> {
        let name = m.provider.clone().unwrap_or_else(|| "auto".into());
        if !PROVIDERS.contains(&name.as_str()) {
            issues.push(issue(
                "memory.search.provider",
                format!("`{name}` is not an embedding provider"),
                Some(format!("use one of: {}", PROVIDERS.join(", "))),
            ));
            return Err(format!("`{name}` is not an embedding provider"));
        }
        if let Some(f) = &m.fallback
            && f != "none"
            && defaults(f).is_none()
        {
            issues.push(issue(
                "memory.search.fallback",
                format!("`{f}` is not a remote embedding provider"),
                Some("use openai, gemini, voyage, mistral, ollama, openai-compatible or none".into()),
            ));
        }
        let remote_key = m
            .remote
            .as_ref()
            .and_then(|r| r.api_key.as_ref())
            .and_then(|k| self.secret(k, "memory.search.remote.apiKey", issues));
        let first = match name.as_str() {
            "none" => return Err("memory.search.provider is \"none\": search uses text only".into()),
            "local" => self.local(m),
            "auto" => self.local(m).or_else(|_| {
                let found = ["openai", "gemini", "voyage", "mistral"]
                    .into_iter()
                    .find_map(|p| self.target(p, m, providers, remote_key.clone()).ok());
                found.map(Embedding::Remote).ok_or_else(|| {
                    "no embedding provider is set up: export OPENAI_API_KEY, GEMINI_API_KEY, VOYAGE_API_KEY or MISTRAL_API_KEY, set memory.search.model to a local model folder, or set memory.search.provider; search uses text only".to_string()
                })
            }),
            p => self.target(p, m, providers, remote_key.clone()).map(Embedding::Remote),
        };
        match (first, m.fallback.as_deref()) {
            (Ok(t), _) => Ok(t),
            (Err(why), Some(f)) if f != "none" => self
                .target(f, m, providers, remote_key)
                .map(Embedding::Remote)
                .map_err(|fallback| format!("{why}; the fallback failed too: {fallback}")),
            (Err(why), _) => Err(why),
        }
    }

    /// A local model folder named by `memory.search.model` (relative to the config's folder).
    fn local(&self, m: &MemorySearchFile) -> Result<Embedding, String> {
        let from_local = m.local.as_ref().and_then(|l| l.model_path.as_deref());
        let Some(raw) = m.model.as_deref().or(from_local).filter(|s| !s.is_empty()) else {
            return Err("memory.search.provider \"local\" needs memory.search.model: a folder with config.json, tokenizer.json and model.safetensors (see the README for all-MiniLM-L6-v2)".into());
        };
        if raw.starts_with("hf:") {
            let (repo, revision) = parse_hf(raw)?;
            let dir = self.state_dir.join("models").join("hf").join(repo.replace('/', "--")).join(&revision);
            let env = |k: &str| (self.env)(k).filter(|v| !v.is_empty());
            return Ok(Embedding::Local {
                model: dir,
                download: Some(HfModel {
                    repo,
                    revision,
                    endpoint: env("HF_ENDPOINT").unwrap_or_else(|| "https://huggingface.co".into()),
                    token: env("HF_TOKEN").map(SecretString::new),
                }),
            });
        }
        let path = self.path(raw);
        let dir = if path.extension().is_some_and(|e| e == "safetensors") {
            path.parent().map(PathBuf::from).unwrap_or_default()
        } else {
            path.clone()
        };
        match (self.read_file)(&dir.join("config.json")) {
            Ok(_) => Ok(Embedding::Local { model: path, download: None }),
            Err(e) => Err(format!(
                "memory.search.model {} is not a model folder ({}/config.json: {e})",
                path.display(),
                dir.display()
            )),
        }
    }

    /// The endpoint for a named remote provider, or why it cannot be used.
    fn target(
        &self,
        name: &str,
        m: &MemorySearchFile,
        providers: &BTreeMap<String, ProviderSettings>,
        remote_key: Option<SecretString>,
    ) -> Result<EmbeddingTarget, String> {
        let (api, base, model, var, chat) =
            defaults(name).ok_or_else(|| format!("`{name}` is not a remote embedding provider"))?;
        let remote = m.remote.as_ref();
        let shared = providers.get(chat);
        let base_url = remote
            .and_then(|r| r.base_url.clone())
            .or_else(|| shared.filter(|_| name != "openai-compatible").map(|p| p.base_url.clone()))
            .unwrap_or_else(|| base.to_string());
        if base_url.is_empty() {
            return Err("memory.search.provider \"openai-compatible\" needs memory.search.remote.baseUrl".into());
        }
        let api_key = remote_key.or_else(|| shared.and_then(|p| p.api_key.clone())).or_else(|| {
            (!var.is_empty()).then(|| (self.env)(var)).flatten().filter(|v| !v.is_empty()).map(SecretString::new)
        });
        if api_key.is_none() && !matches!(name, "ollama" | "openai-compatible") {
            return Err(format!(
                "{name} embeddings need a key: export {var} or set memory.search.remote.apiKey; search uses text only"
            ));
        }
        let model = m.model.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| model.to_string());
        if model.is_empty() {
            return Err("memory.search.provider \"openai-compatible\" needs memory.search.model".into());
        }
        Ok(EmbeddingTarget {
            provider: name.to_string(),
            api,
            base_url,
            api_key,
            model,
            dimensions: m.dimensions.or(m.output_dimensionality),
            headers: remote.map(|r| r.headers.clone()).unwrap_or_default(),
            batch: remote.and_then(|r| r.batch.as_ref()).filter(|b| b.enabled == Some(true)).map(|b| EmbeddingBatch {
                min_chunks: b.min_chunks.unwrap_or(200).max(1),
                poll_interval: std::time::Duration::from_millis(b.poll_interval_ms.unwrap_or(5000).max(100)),
                timeout: std::time::Duration::from_secs(60 * b.timeout_minutes.unwrap_or(60).max(1)),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_hf;

    #[test]
    fn hf_references_parse() {
        assert_eq!(parse_hf("hf:a/b"), Ok(("a/b".into(), "main".into())));
        assert_eq!(
            parse_hf("hf:sentence-transformers/all-MiniLM-L6-v2@v1.0"),
            Ok(("sentence-transformers/all-MiniLM-L6-v2".into(), "v1.0".into()))
        );
        for bad in ["hf:", "hf:a", "hf:a/b/c", "hf:a/../b", "hf:./b", "hf:a/b@", "hf:a b/c", "hf:a/b@x/y"] {
            assert!(parse_hf(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        /// Whatever the text, an accepted reference names a folder that stays where it is put:
        /// two plain components and a plain revision, never `..` or a separator.
        #[test]
        fn accepted_references_are_safe_path_components(raw in "\\PC{0,40}") {
            if let Ok((repo, revision)) = parse_hf(&format!("hf:{raw}")) {
                let parts: Vec<&str> = repo.split('/').collect();
                proptest::prop_assert_eq!(parts.len(), 2);
                for p in parts.iter().chain([&revision.as_str()]) {
                    proptest::prop_assert!(!p.is_empty() && *p != "." && *p != "..");
                    proptest::prop_assert!(!p.contains('/') && !p.contains('\\'));
                }
            }
        }
    }
}
