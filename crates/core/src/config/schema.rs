//! The config file's shape, key for key, as serde structs.
//!
//! Every struct rejects unknown keys. Defaults live here (`#[serde(default)]`) so that an empty
//! file `{}` is a complete, secure configuration. Values that need the environment (secrets,
//! providers found through `OPENAI_API_KEY`, paths under the state dir) are resolved later, in
//! `resolve.rs`; this file only describes what may be written.

use std::collections::BTreeMap;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::secret::SecretString;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigFile {
    /// An editor hint (`"$schema": "…"`); ignored.
    #[serde(rename = "$schema", default)]
    pub schema: Option<String>,
    /// Free-form notes written by tools (OpenClaw writes `meta`); ignored.
    #[serde(default)]
    pub meta: Option<serde_json::Value>,
    #[serde(default)]
    pub gateway: GatewayFile,
    #[serde(default)]
    pub agents: AgentsFile,
    #[serde(default)]
    pub models: ModelsFile,
    #[serde(default)]
    pub tools: ToolsFile,
    #[serde(default)]
    pub logging: LoggingFile,
    #[serde(default)]
    pub hooks: HooksFile,
    #[serde(default)]
    pub memory: MemoryFile,
    /// Chat platforms to connect (`channels.telegram`, …).
    #[serde(default)]
    pub channels: super::channels::ChannelsFile,
    /// Which agent answers which conversations (first the most specific match).
    #[serde(default)]
    pub bindings: Vec<super::channels::BindingFile>,
    /// How conversations map to sessions.
    #[serde(default)]
    pub session: super::channels::SessionFile,
    #[serde(default)]
    pub diagnostics: DiagnosticsFile,
}

/// `memory.*`: long-term memory.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiagnosticsFile {
    /// OpenClaw's master switch; `false` turns the OpenTelemetry export off too.
    pub enabled: Option<bool>,
    #[serde(default)]
    pub otel: OtelFile,
}

/// `diagnostics.otel.*`: OpenTelemetry export over OTLP/HTTP (OpenClaw's keys). clawline
/// exports traces, metrics and (when asked) logs, in OTLP's JSON encoding.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OtelFile {
    /// Default false.
    pub enabled: Option<bool>,
    /// The collector, e.g. `http://127.0.0.1:4318` (traces go to `<endpoint>/v1/traces`);
    /// default `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: Option<String>,
    /// The full traces URL; overrides `endpoint` (default `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`).
    pub traces_endpoint: Option<String>,
    /// The full metrics URL; overrides `endpoint` (default `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`).
    pub metrics_endpoint: Option<String>,
    /// The full logs URL; overrides `endpoint` (default `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`).
    pub logs_endpoint: Option<String>,
    /// `http/json` (what clawline sends) or `http/protobuf` (OpenClaw's value: the same
    /// collector endpoint accepts both encodings, and clawline sends JSON).
    pub protocol: Option<String>,
    /// Extra request headers, e.g. a tenant's auth token (use `${ENV}`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `service.name` (default `clawline`).
    pub service_name: Option<String>,
    /// Accepted for OpenClaw's files; not used.
    pub metric_name_prefix: Option<String>,
    /// Default true when export is on.
    pub traces: Option<bool>,
    /// Default true when export is on: the `/metrics` registry, every `flushIntervalMs`.
    pub metrics: Option<bool>,
    /// Default false: log records (what the log file holds, redacted) as OTLP logs.
    pub logs: Option<bool>,
    /// Where log records go with `logs: true`: `otlp` (default, to `/v1/logs`), `stdout` (one
    /// OTLP JSON request per line, for a collector reading container logs) or `both`.
    pub logs_exporter: Option<String>,
    /// Fraction of traces kept, 0 to 1 (default 1).
    pub sample_rate: Option<f64>,
    /// How often spans are sent, in milliseconds (default 5000).
    pub flush_interval_ms: Option<u64>,
    /// Must stay false: clawline never exports message content.
    pub capture_content: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MemoryFile {
    #[serde(default)]
    pub search: MemorySearchFile,
    /// OpenClaw's citation setting; accepted and not used yet.
    pub citations: Option<serde_json::Value>,
}

/// `memory.search.*`: the index of `MEMORY.md`, `USER.md` and `memory/**/*.md`, and how it is searched.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MemorySearchFile {
    /// Off: no index and no memory tools (default on).
    pub enabled: Option<bool>,
    /// `auto` (default), `openai`, `gemini`, `voyage`, `mistral`, `ollama`, `openai-compatible`,
    /// `local`, or `none` (text search only).
    pub provider: Option<String>,
    /// The embedding model (each provider has a default).
    pub model: Option<String>,
    /// Another provider to use when this one cannot be set up, or `none`.
    pub fallback: Option<String>,
    pub remote: Option<MemoryRemoteFile>,
    /// Vector length to ask for, where the API can shorten vectors.
    pub dimensions: Option<usize>,
    /// OpenClaw's name for `dimensions` (used when `dimensions` is not set).
    pub output_dimensionality: Option<usize>,
    /// OpenClaw's local-model settings: `modelPath` is used when `model` is not set.
    pub local: Option<MemoryLocalFile>,
    /// `sessionMemory: true` indexes past transcripts, as `sources: ["memory", "sessions"]` does.
    pub experimental: Option<MemoryExperimentalFile>,
    /// OpenClaw's provider-specific `input_type` labels; accepted, not used (Voyage and
    /// Gemini get the query/document distinction from clawline itself).
    pub input_type: Option<String>,
    pub query_input_type: Option<String>,
    pub document_input_type: Option<String>,
    /// `memory` (workspace files) and `sessions` (past transcripts).
    pub sources: Option<Vec<String>>,
    /// More files or folders to index (relative to the workspace, or absolute).
    #[serde(default)]
    pub extra_paths: Vec<String>,
    #[serde(default)]
    pub query: MemoryQueryFile,
    #[serde(default)]
    pub store: MemoryStoreFile,
    #[serde(default)]
    pub cache: MemoryCacheFile,
    #[serde(default)]
    pub sync: MemorySyncFile,
    /// OpenClaw settings accepted for compatibility and not used yet.
    pub multimodal: Option<serde_json::Value>,
    pub remember_across_conversations: Option<serde_json::Value>,
}

/// `memory.search.remote`: where a remote embedding API is, overriding the provider's defaults.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MemoryRemoteFile {
    pub base_url: Option<String>,
    pub api_key: Option<SecretInput>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The provider's asynchronous batch API for large indexing runs (OpenAI, Gemini, Voyage).
    pub batch: Option<MemoryBatchFile>,
}

/// `memory.search.remote.batch`: embedding many chunks through the provider's batch API (half
/// the price at OpenAI and Voyage), which answers in minutes to hours instead of seconds.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MemoryBatchFile {
    /// Use the batch API when a sync has at least `minChunks` texts to embed (default off).
    pub enabled: Option<bool>,
    /// Smaller syncs embed directly (default 200).
    pub min_chunks: Option<usize>,
    /// How often a running batch is polled (default 5000 ms).
    pub poll_interval_ms: Option<u64>,
    /// A batch not done after this long is cancelled and its texts embedded directly (default 60).
    pub timeout_minutes: Option<u64>,
    /// OpenClaw settings accepted for compatibility: clawline always waits, one batch at a time.
    pub wait: Option<bool>,
    pub concurrency: Option<u64>,
}

/// `memory.search.local`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MemoryLocalFile {
    /// A model folder (or its `model.safetensors`), or `hf:<owner>/<repo>` to download one.
    pub model_path: Option<String>,
}

/// `memory.search.experimental`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MemoryExperimentalFile {
    pub session_memory: Option<bool>,
}

/// `memory.search.query`: ranking.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MemoryQueryFile {
    /// Results returned (default 6).
    pub max_results: Option<usize>,
    /// Results scoring below this are dropped, unless they contain every query word (default 0.35).
    pub min_score: Option<f64>,
    #[serde(default)]
    pub hybrid: MemoryHybridFile,
}

/// `memory.search.query.hybrid`: how vector and text scores combine.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MemoryHybridFile {
    pub enabled: Option<bool>,
    /// Default 0.7.
    pub vector_weight: Option<f64>,
    /// Default 0.3.
    pub text_weight: Option<f64>,
    /// Candidates per leg = maxResults × this (default 4).
    pub candidate_multiplier: Option<usize>,
    #[serde(default)]
    pub mmr: MemoryMmrFile,
    #[serde(default)]
    pub temporal_decay: MemoryDecayFile,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MemoryMmrFile {
    pub enabled: Option<bool>,
    /// Relevance versus variety, 0–1 (default 0.7).
    pub lambda: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MemoryDecayFile {
    pub enabled: Option<bool>,
    /// Daily notes (`memory/YYYY-MM-DD.md`) lose half their score in this many days (default 30).
    pub half_life_days: Option<f64>,
}

/// `memory.search.store`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MemoryStoreFile {
    #[serde(default)]
    pub fts: MemoryFtsFile,
    /// OpenClaw's vector-extension settings; clawline's vector index is built in, so these are accepted and ignored.
    pub vector: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MemoryFtsFile {
    /// `unicode61` (default) or `trigram` (matches inside words; good for CJK).
    pub tokenizer: Option<String>,
}

/// `memory.search.sync`: when the index catches up with the files.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MemorySyncFile {
    /// Watch the memory files and index changes in the background (default on).
    pub watch: Option<bool>,
    /// How long files must be unchanged before a watched change is indexed (default 1500).
    pub watch_debounce_ms: Option<u64>,
    /// Catch up before a search when the last sync is more than 5 s old (default on).
    pub on_search: Option<bool>,
    /// When a past conversation is indexed again (`sources: ["sessions"]`).
    pub sessions: Option<MemorySyncSessionsFile>,
    /// OpenClaw settings accepted for compatibility and not used yet.
    pub on_session_start: Option<bool>,
    pub interval_minutes: Option<u64>,
}

/// `memory.search.sync.sessions`: a transcript is indexed again once it has grown this much.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MemorySyncSessionsFile {
    /// Default 100000.
    pub delta_bytes: Option<u64>,
    /// Default 50.
    pub delta_messages: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MemoryCacheFile {
    pub enabled: Option<bool>,
    /// Embeddings kept (default 50000).
    pub max_entries: Option<usize>,
}

/// `hooks.*`: webhooks other programs call to start agent turns (`POST <path>/agent`,
/// `POST <path>/wake`), with their own token. Off by default.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HooksFile {
    pub enabled: Option<bool>,
    /// The hooks' own secret (not the gateway token).
    pub token: Option<SecretInput>,
    /// Where hooks live (default `/hooks`).
    pub path: Option<String>,
    /// Agents hooks may run (default: all).
    #[serde(default)]
    pub allowed_agent_ids: Vec<String>,
    /// Let a hook name its session (`sessionKey`); off by default, every call gets its own.
    pub allow_request_session_key: Option<bool>,
    /// When `allowRequestSessionKey` is on, the prefixes a requested key must start with.
    #[serde(default)]
    pub allowed_session_key_prefixes: Vec<String>,
    /// The session hook calls use when they name none (default: a new one per call).
    pub default_session_key: Option<String>,
}

/// `gateway.*`: the HTTP/WebSocket server.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayFile {
    /// Only `local` is supported: the gateway runs in this process.
    #[serde(default)]
    pub mode: Option<GatewayMode>,
    /// TCP port; default 18789. `0` picks a free port (printed at start).
    #[serde(default)]
    pub port: Option<u16>,
    /// `loopback` (default, 127.0.0.1), `lan` (0.0.0.0), `custom` (`customBindHost`), `auto` (= loopback).
    #[serde(default)]
    pub bind: Option<BindMode>,
    #[serde(default)]
    pub custom_bind_host: Option<String>,
    #[serde(default)]
    pub auth: AuthFile,
    #[serde(default)]
    pub control_ui: ControlUiFile,
    #[serde(default)]
    pub http: HttpFile,
    /// Reverse proxies (IP addresses) whose `X-Forwarded-For` is believed. Requests carrying
    /// proxy headers from anyone else are refused, so a proxy on this machine cannot make every
    /// client look local.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    #[serde(default)]
    pub nodes: NodesFile,
    #[serde(default)]
    pub tools: GatewayToolsFile,
}

/// `gateway.tools.*`: which tools `POST /tools/invoke` may run. Tools that write files or run
/// programs are denied there unless allowed here.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayToolsFile {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

/// `gateway.nodes.*`: devices and nodes that connect over the WebSocket protocol.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodesFile {
    #[serde(default)]
    pub pairing: PairingFile,
}

/// `gateway.nodes.pairing.*`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PairingFile {
    /// Approve new devices that connect from this machine with the shared secret (default true).
    pub auto_approve_local: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GatewayMode {
    Local,
    Remote,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BindMode {
    Loopback,
    Lan,
    Custom,
    Auto,
    Tailnet,
}

/// `gateway.auth.*`. Auth is always on; `mode` picks which shared secret clients present.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthFile {
    #[serde(default)]
    pub mode: Option<AuthModeFile>,
    /// The shared token. When absent, the gateway generates one on first start and keeps it
    /// encrypted in the state store.
    #[serde(default)]
    pub token: Option<SecretInput>,
    #[serde(default)]
    pub password: Option<SecretInput>,
    #[serde(default)]
    pub rate_limit: RateLimitFile,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AuthModeFile {
    Token,
    Password,
    None,
    TrustedProxy,
}

/// `gateway.auth.rateLimit.*`: failed-auth lockout per client address.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RateLimitFile {
    pub max_attempts: Option<u32>,
    pub window_ms: Option<u64>,
    pub lockout_ms: Option<u64>,
    pub exempt_loopback: Option<bool>,
}

/// `gateway.controlUi.*`: the web chat page served at `/`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ControlUiFile {
    pub enabled: Option<bool>,
    /// Extra browser origins allowed to call the API (full origins, e.g. `https://chat.example`).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// A directory with a built Control UI (e.g. OpenClaw's `dist/control-ui`) to serve at `/`
    /// instead of the built-in web chat.
    pub root: Option<String>,
}

/// `gateway.http.*`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpFile {
    #[serde(default)]
    pub endpoints: EndpointsFile,
    /// Largest request body accepted, in bytes (default 4 MiB).
    pub max_body_bytes: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EndpointsFile {
    #[serde(default)]
    pub chat_completions: EndpointToggle,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EndpointToggle {
    /// Default true: the OpenAI-compatible API is on, behind the gateway token.
    pub enabled: Option<bool>,
}

/// `agents.*`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentsFile {
    #[serde(default)]
    pub defaults: AgentDefaultsFile,
    /// Agents by id. `main` exists even when not listed.
    #[serde(default)]
    pub entries: BTreeMap<String, AgentEntryFile>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentDefaultsFile {
    /// `provider/model`, or `{ primary, fallbacks }`.
    pub model: Option<ModelSelection>,
    /// Workspace directory (default `<state>/workspace`).
    pub workspace: Option<String>,
    /// Per bootstrap file character cap (default 20000).
    pub bootstrap_max_chars: Option<usize>,
    /// Cap for all bootstrap files together (default 60000).
    pub bootstrap_total_max_chars: Option<usize>,
    /// A turn is cancelled after this many seconds (default 600).
    pub timeout_seconds: Option<u64>,
    /// Most model calls in one turn before the run stops (default 24).
    pub max_turns: Option<u32>,
    /// Output token cap per model call (default: the model's `maxTokens`, else 4096).
    pub max_tokens: Option<u32>,
    /// IANA zone for the time shown to the model (default UTC).
    pub user_timezone: Option<String>,
    /// Daily spending limits per agent (on by default).
    #[serde(default)]
    pub budget: BudgetFile,
}

/// `agents.defaults.budget` / `agents.entries.<id>.budget`: what one agent may spend in a
/// UTC day before its runs are stopped. `0` means no limit.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BudgetFile {
    /// Tokens of every kind (input, output, cache reads and writes) per day (default 5000000).
    pub daily_tokens: Option<u64>,
    /// US dollars per day, from the models' configured prices (default 25).
    pub daily_cost_usd: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentEntryFile {
    pub name: Option<String>,
    pub description: Option<String>,
    pub workspace: Option<String>,
    pub model: Option<ModelSelection>,
    /// Makes this the agent used when a request names none.
    pub default: Option<bool>,
    pub max_turns: Option<u32>,
    pub timeout_seconds: Option<u64>,
    /// Overrides `agents.defaults.budget`, limit by limit.
    #[serde(default)]
    pub budget: BudgetFile,
}

/// A model choice: `"provider/model"` or `{ primary: "provider/model", fallbacks: [...] }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSelection {
    pub primary: String,
    pub fallbacks: Vec<String>,
}

impl<'de> Deserialize<'de> for ModelSelection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ModelSelection;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"provider/model\" or { primary: \"provider/model\", fallbacks: [...] }")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ModelSelection, E> {
                Ok(ModelSelection { primary: s.to_string(), fallbacks: Vec::new() })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ModelSelection, A::Error> {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Full {
                    primary: String,
                    #[serde(default)]
                    fallbacks: Vec<String>,
                }
                let full = Full::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(ModelSelection { primary: full.primary, fallbacks: full.fallbacks })
            }
        }
        d.deserialize_any(V)
    }
}

/// `models.*`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelsFile {
    /// `merge` (default): providers found in the environment are added to the configured ones.
    /// `replace`: only configured providers exist.
    pub mode: Option<ModelsMode>,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderFile>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelsMode {
    Merge,
    Replace,
}

/// `models.providers.<id>`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProviderFile {
    /// e.g. `https://api.openai.com/v1`, `https://api.anthropic.com`, `http://127.0.0.1:8080/v1`.
    pub base_url: Option<String>,
    /// The wire API: `openai-completions`, `openai-responses`, `anthropic-messages`,
    /// `google-generative-ai`, `bedrock-converse-stream` or `ollama` (default: the built-in
    /// provider's, else `openai-completions`).
    pub api: Option<String>,
    /// Key sent to the provider. Falls back to `<ID>_API_KEY` in the environment.
    pub api_key: Option<SecretInput>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Per-request timeout for one model call (default 120 s).
    pub timeout_seconds: Option<u64>,
    /// Default output token cap for this provider's models.
    pub max_tokens: Option<u32>,
    /// AWS region for Bedrock (default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1).
    pub region: Option<String>,
    /// Cloudflare account id, for `cloudflare-ai-gateway`'s URL.
    pub account_id: Option<String>,
    /// Cloudflare AI Gateway id, for `cloudflare-ai-gateway`'s URL.
    pub gateway_id: Option<String>,
    /// Where `clawline auth usage` asks for this provider's quota (default: the provider's own endpoint).
    pub usage_url: Option<String>,
    /// Where GitHub Copilot's GitHub token is exchanged for a Copilot token (default GitHub's).
    pub token_exchange_url: Option<String>,
    /// Replaces the built-in sign-in endpoints of `clawline auth login <id>`.
    #[serde(default)]
    pub oauth: OAuthFile,
    #[serde(default)]
    pub models: Vec<ModelEntryFile>,
}

/// `models.providers.<id>.oauth`: where `clawline auth login` signs in (every field optional).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OAuthFile {
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    /// For device-code sign-ins (RFC 8628).
    pub device_url: Option<String>,
    pub client_id: Option<String>,
    pub scopes: Option<Vec<String>>,
    /// `form` (default) or `json`.
    pub body: Option<String>,
    /// Port of the loopback redirect (0 picks a free one).
    pub redirect_port: Option<u16>,
}

/// `models.providers.<id>.models[]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelEntryFile {
    pub id: String,
    pub name: Option<String>,
    pub api: Option<String>,
    #[serde(default)]
    pub reasoning: bool,
    #[serde(default)]
    pub input: Vec<String>,
    #[serde(default)]
    pub cost: ModelCost,
    pub context_window: Option<u64>,
    pub context_tokens: Option<u64>,
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub compat: ModelCompat,
}

/// USD per million tokens.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelCost {
    #[serde(default)]
    pub input: f64,
    #[serde(default)]
    pub output: f64,
    #[serde(default)]
    pub cache_read: f64,
    #[serde(default)]
    pub cache_write: f64,
}

/// Quirks of OpenAI-compatible servers.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelCompat {
    /// `max_completion_tokens` (default) or `max_tokens`.
    pub max_tokens_field: Option<MaxTokensField>,
    /// Set false for servers that reject `tools`.
    pub supports_tools: Option<bool>,
    /// Set false for servers that reject `stream_options`.
    pub supports_usage_in_streaming: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
pub enum MaxTokensField {
    #[serde(rename = "max_completion_tokens")]
    MaxCompletionTokens,
    #[serde(rename = "max_tokens")]
    MaxTokens,
}

/// `tools.*`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ToolsFile {
    /// A base set of tools: `minimal`, `coding`, `messaging` or `full` (the default: no restriction).
    pub profile: Option<super::tool_policy::ToolProfile>,
    /// Tool names (or `group:<name>`) never offered to the model; wins over every allow.
    #[serde(default)]
    pub deny: Vec<String>,
    /// When set, only these tools (or groups) are offered, instead of the profile's.
    pub allow: Option<Vec<String>>,
    /// Tools (or groups) offered in addition to the profile's.
    #[serde(default)]
    pub also_allow: Vec<String>,
    #[serde(default)]
    pub exec: ExecFile,
    #[serde(default)]
    pub loop_detection: LoopDetectionFile,
    #[serde(default)]
    pub web: WebToolsFile,
}

/// `tools.web.*`: the tools that reach the web.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebToolsFile {
    #[serde(default)]
    pub fetch: WebFetchFile,
}

/// `tools.web.fetch.*`: `web_fetch`, which reads one URL as text.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebFetchFile {
    /// Default true.
    pub enabled: Option<bool>,
    /// Characters of text returned per call at most (default 20000; the model may ask for less).
    pub max_chars: Option<usize>,
    /// Bytes of a response body read at most (default 2000000); the rest is not downloaded.
    pub max_bytes: Option<u64>,
    /// Seconds for the whole fetch, redirects included (default 20).
    pub timeout_seconds: Option<u64>,
    /// Redirects followed, each one checked again (default 5).
    pub max_redirects: Option<u32>,
    /// Host names or IP addresses that may be private (a NAS, an intranet wiki). Everything
    /// else on loopback, private, link-local or metadata addresses is refused.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Turns the private-address guard off entirely (default false; `doctor` warns).
    pub allow_private_network: Option<bool>,
}

/// `tools.loopDetection.*`: stopping a run whose model keeps doing the same thing (on by
/// default, unlike OpenClaw's).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoopDetectionFile {
    /// Default true.
    pub enabled: Option<bool>,
    /// The same tool with the same arguments runs at most this often in one run (default 3).
    pub max_identical_calls: Option<u32>,
    /// Tool calls failing in a row before the run stops (default 8).
    pub max_consecutive_errors: Option<u32>,
}

/// `tools.exec.*`: the command runner.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExecFile {
    /// `allowlist` (default): only programs in `safeBins` run. `deny`: nothing runs.
    /// `full`: any program, and arguments may point outside the workspace.
    pub security: Option<ExecSecurity>,
    /// Program names allowed in `allowlist` mode.
    pub safe_bins: Option<Vec<String>>,
    /// Seconds before a command is killed (default 30).
    pub timeout_seconds: Option<u64>,
    /// Output kept per stream, in characters (default 16000).
    pub max_output_chars: Option<usize>,
    /// The kernel sandbox around every command (Linux): `auto` (default) uses what the kernel
    /// grants, `require` refuses to run commands unless files and network are both contained,
    /// `off` runs them with the policy alone.
    pub sandbox: Option<SandboxMode>,
    /// When a command waits for the owner's approval: `off` (default: refused commands are
    /// refused), `on-miss` (a command the policy would refuse asks instead), `always` (every
    /// command asks). An approval covers one exact argv in one directory.
    pub ask: Option<ExecAsk>,
    /// Seconds a command waits for a decision before it is refused (default 120).
    pub approval_timeout_seconds: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ExecAsk {
    Off,
    OnMiss,
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    Auto,
    Require,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExecSecurity {
    Deny,
    Allowlist,
    Full,
}

/// `logging.*`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoggingFile {
    /// Level for the JSON log files (`error`, `warn`, `info`, `debug`, `trace`; default `info`).
    pub level: Option<LogLevel>,
    /// Level for the console (default: `level`).
    pub console_level: Option<LogLevel>,
    /// Directory for JSON log files (default `<state>/logs`).
    pub dir: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// A secret as written: a literal string (possibly a `${ENV}` reference, already substituted by
/// the time this is read) or a reference `{ source: "env" | "file", id, provider? }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretInput {
    Literal(SecretString),
    Ref(SecretRef),
}

/// Where a secret lives: the environment variable `id`, the file at path `id` (relative paths
/// are relative to the config file's directory; surrounding whitespace is trimmed), or the
/// encrypted store under `id` (`clawline secrets set <id>`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    pub source: SecretSource,
    /// Accepted for OpenClaw compatibility; clawline has one provider per source.
    #[serde(default)]
    pub provider: Option<String>,
    pub id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SecretSource {
    Env,
    File,
    /// Kept encrypted in the state database (OpenClaw's `store` source).
    Store,
}

impl<'de> Deserialize<'de> for SecretInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SecretInput;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a string (\"${ENV_VAR}\" recommended) or { source: \"env\" | \"file\" | \"store\", id: \"…\" }",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<SecretInput, E> {
                Ok(SecretInput::Literal(SecretString::new(s)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SecretInput, A::Error> {
                SecretRef::deserialize(de::value::MapAccessDeserializer::new(map)).map(SecretInput::Ref)
            }
        }
        d.deserialize_any(V)
    }
}

impl schemars::JsonSchema for ModelSelection {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ModelSelection".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "\"provider/model\", or { primary: \"provider/model\", fallbacks: [\"provider/model\", …] }",
            "anyOf": [
                {"type": "string", "pattern": "^[^/]+/.+$"},
                {"type": "object", "additionalProperties": false, "required": ["primary"],
                 "properties": {"primary": {"type": "string"}, "fallbacks": {"type": "array", "items": {"type": "string"}}}}
            ]
        })
    }
}

impl schemars::JsonSchema for SecretInput {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SecretInput".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A secret: \"${ENV_VAR}\" (recommended), a literal string, or { source: \"env\" | \"file\" | \"store\", id }",
            "anyOf": [
                {"type": "string"},
                {"type": "object", "additionalProperties": false, "required": ["source", "id"],
                 "properties": {"source": {"enum": ["env", "file"]}, "provider": {"type": "string"}, "id": {"type": "string"}}}
            ]
        })
    }
}

/// The JSON Schema (draft 2020-12) of the config file, generated from these structs, so it can
/// never disagree with what the loader accepts.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(ConfigFile)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_schema_describes_every_key_and_refuses_others() {
        let schema = json_schema();
        assert_eq!(schema["additionalProperties"], false);
        let top: Vec<&str> = schema["properties"].as_object().unwrap().keys().map(String::as_str).collect();
        for key in ["gateway", "agents", "models", "tools", "logging", "hooks"] {
            assert!(top.contains(&key), "{key} in {top:?}");
        }
        let defs = &schema["$defs"];
        assert!(defs["GatewayFile"]["properties"]["controlUi"].is_object());
        assert_eq!(defs["GatewayFile"]["additionalProperties"], false);
        let port = &defs["GatewayFile"]["properties"]["port"];
        assert!(
            port["description"].as_str().is_some_and(|d| d.contains("18789")),
            "doc comments become descriptions: {port}"
        );
        assert!(defs["SecretInput"]["anyOf"].is_array());
    }
}
