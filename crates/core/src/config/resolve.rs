//! From the file as written to the settings the system runs with.
//!
//! Applies defaults, resolves secrets through the injected environment and file reader, adds
//! providers found in the environment (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`), picks each agent's
//! model, and checks every rule that a type alone cannot express. Problems are returned as
//! [`Issue`]s with a key path; `load.rs` turns the path into a line and column.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::preset::{self, Login, Preset};
use super::schema::*;
use crate::secret::SecretString;
use crate::session_key::validate_agent_id;

pub const DEFAULT_PORT: u16 = 18789;
pub const DEFAULT_AGENT_ID: &str = "main";
const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
const MIN_TOKEN_CHARS: usize = 16;
const MIN_PASSWORD_CHARS: usize = 12;

/// A problem found while resolving, before it has a position.
#[derive(Debug, Clone)]
pub(crate) struct Issue {
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

pub(crate) fn issue(path: impl Into<String>, message: impl Into<String>, hint: Option<String>) -> Issue {
    Issue { path: path.into(), message: message.into(), hint }
}

/// The wire APIs clawline speaks to model providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ApiKind {
    /// OpenAI Chat Completions (`POST {baseUrl}/chat/completions`), also spoken by most local servers.
    #[default]
    OpenAiCompletions,
    /// OpenAI Responses (`POST {baseUrl}/responses`), what Codex uses.
    OpenAiResponses,
    /// Anthropic Messages (`POST {baseUrl}/v1/messages`).
    AnthropicMessages,
    /// Google Gemini (`POST {baseUrl}/models/{model}:streamGenerateContent?alt=sse`).
    GoogleGenerativeAi,
    /// Amazon Bedrock Converse (`POST {baseUrl}/model/{modelId}/converse-stream`), SigV4-signed.
    BedrockConverseStream,
    /// Ollama's native API (`POST {baseUrl}/api/chat`, NDJSON).
    Ollama,
}

impl ApiKind {
    pub const ALL: [ApiKind; 6] = [
        ApiKind::OpenAiCompletions,
        ApiKind::OpenAiResponses,
        ApiKind::AnthropicMessages,
        ApiKind::GoogleGenerativeAi,
        ApiKind::BedrockConverseStream,
        ApiKind::Ollama,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApiKind::OpenAiCompletions => "openai-completions",
            ApiKind::OpenAiResponses => "openai-responses",
            ApiKind::AnthropicMessages => "anthropic-messages",
            ApiKind::GoogleGenerativeAi => "google-generative-ai",
            ApiKind::BedrockConverseStream => "bedrock-converse-stream",
            ApiKind::Ollama => "ollama",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// OpenClaw API names that exist but that clawline does not speak yet.
const LATER_APIS: &[&str] =
    &["openai-chatgpt-responses", "google-vertex", "github-copilot", "pi-messages", "azure-openai-responses"];

/// A `provider/model` reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelRef {
    pub provider: String,
    pub model: String,
}

impl ModelRef {
    /// Splits at the first `/` (model ids may contain more slashes).
    pub fn parse(s: &str) -> Option<Self> {
        let (provider, model) = s.split_once('/')?;
        (!provider.is_empty() && !model.is_empty())
            .then(|| ModelRef { provider: provider.to_string(), model: model.to_string() })
    }
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.provider, self.model)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Token,
    Password,
}

#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    pub max_attempts: u32,
    pub window_ms: u64,
    pub lockout_ms: u64,
    pub exempt_loopback: bool,
}

/// How the gateway listens and who it lets in.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub port: u16,
    pub bind_host: IpAddr,
    pub auth_mode: AuthMode,
    /// The configured token; `None` means "use the generated one from the state store".
    pub token: Option<SecretString>,
    pub password: Option<SecretString>,
    pub rate_limit: RateLimitSettings,
    pub control_ui_enabled: bool,
    pub allowed_origins: Vec<String>,
    /// A Control UI build to serve at `/` (`gateway.controlUi.root`).
    pub control_ui_root: Option<PathBuf>,
    pub chat_completions_enabled: bool,
    pub max_body_bytes: usize,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// Approve devices that connect from this machine with the shared secret.
    pub auto_approve_local: bool,
    /// Tools `POST /tools/invoke` refuses.
    pub http_tools_deny: Vec<String>,
}

/// Tools `POST /tools/invoke` refuses unless `gateway.tools.allow` lists them.
pub const DEFAULT_HTTP_TOOLS_DENY: &[&str] = &["exec", "write", "edit"];

/// Webhooks (`hooks.*`).
#[derive(Debug, Clone)]
pub struct HookSettings {
    pub token: SecretString,
    /// Without a trailing slash, e.g. `/hooks`.
    pub path: String,
    pub allowed_agent_ids: Vec<String>,
    pub allow_request_session_key: bool,
    pub allowed_session_key_prefixes: Vec<String>,
    pub default_session_key: Option<String>,
}

/// AWS credentials for SigV4 signing (Bedrock), from `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` and `AWS_REGION` or an `aws-sdk` auth profile.
#[derive(Debug, Clone)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub session_token: Option<SecretString>,
    pub region: String,
}

/// A model provider the agent can call.
#[derive(Debug, Clone, Default)]
pub struct ProviderSettings {
    pub id: String,
    pub api: ApiKind,
    pub base_url: String,
    pub api_key: Option<SecretString>,
    /// Where the key came from, for messages (`config`, `env OPENAI_API_KEY`, …). Never the key.
    pub api_key_source: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub timeout_secs: u64,
    pub max_tokens: Option<u32>,
    pub models: Vec<ModelEntryFile>,
    /// True when the provider came from the environment rather than the file.
    pub implicit: bool,
    /// SigV4 credentials, for `bedrock-converse-stream`.
    pub aws: Option<AwsCredentials>,
    /// Trade `api_key` (a GitHub token) at this URL for a short-lived Copilot token before each
    /// call (GitHub Copilot).
    pub token_exchange: Option<String>,
    /// The credential is a bearer token (OAuth access token, setup token) rather than the API's
    /// own key header; wire modules whose API distinguishes the two (Anthropic) send
    /// `Authorization: Bearer` then.
    pub bearer: bool,
    /// More keys to rotate through on rate limits, with where each came from
    /// (`env OPENAI_API_KEYS[2]`, `env OPENAI_API_KEY_3`). Never includes `api_key`.
    pub extra_keys: Vec<(String, SecretString)>,
}

impl ProviderSettings {
    /// The catalog entry for `model`, if the provider lists it.
    pub fn model(&self, model: &str) -> Option<&ModelEntryFile> {
        self.models.iter().find(|m| m.id == model)
    }
}

/// One agent, with every default applied.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub id: String,
    pub name: String,
    pub workspace: PathBuf,
    /// The primary model; `None` when nothing is configured or found in the environment.
    pub model: Option<ModelRef>,
    pub fallbacks: Vec<ModelRef>,
    pub max_turns: u32,
    pub timeout_secs: u64,
    pub max_tokens: Option<u32>,
    pub bootstrap_max_chars: usize,
    pub bootstrap_total_max_chars: usize,
    pub user_timezone: Option<String>,
    pub budget: BudgetSettings,
}

/// Where traces, metrics and logs are exported (`diagnostics.otel`, when on).
#[derive(Debug, Clone, PartialEq)]
pub struct OtelSettings {
    /// `None` with `traces: false`.
    pub traces_url: Option<String>,
    /// `None` with `metrics: false`.
    pub metrics_url: Option<String>,
    /// `Some` with `logs: true` and `logsExporter` `otlp` (the default) or `both`.
    pub logs_url: Option<String>,
    /// `logs: true` with `logsExporter` `stdout` or `both`: one OTLP JSON request per stdout line.
    pub logs_stdout: bool,
    pub headers: Vec<(String, String)>,
    pub service_name: String,
    pub sample_rate: f64,
    pub flush_interval_ms: u64,
}

/// An agent's daily limits; `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BudgetSettings {
    pub daily_tokens: Option<u64>,
    pub daily_cost_usd: Option<f64>,
}

/// Default daily token limit per agent.
pub const DEFAULT_DAILY_TOKENS: u64 = 5_000_000;
/// Default daily cost limit per agent, in US dollars.
pub const DEFAULT_DAILY_COST_USD: f64 = 25.0;

/// When a run counts as looping; `None` when detection is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopDetection {
    pub max_identical_calls: u32,
    pub max_consecutive_errors: u32,
}

#[derive(Debug, Clone)]
pub struct ExecSettings {
    pub security: ExecSecurity,
    pub safe_bins: Vec<String>,
    pub timeout_secs: u64,
    pub max_output_chars: usize,
    pub sandbox: SandboxMode,
    pub ask: super::schema::ExecAsk,
    pub approval_timeout_secs: u64,
}

/// `web_fetch`'s limits and address policy.
#[derive(Debug, Clone, PartialEq)]
pub struct WebFetchSettings {
    pub enabled: bool,
    pub max_chars: usize,
    pub max_bytes: u64,
    pub timeout_secs: u64,
    pub max_redirects: u32,
    /// Lowercase host names or IP literals allowed on private addresses.
    pub allowed_hosts: Vec<String>,
    pub allow_private_network: bool,
    /// Names answered without DNS (like `/etc/hosts`), still subject to the address check.
    /// Not in the config file: tests give a local server a name with it.
    pub static_hosts: Vec<(String, std::net::IpAddr)>,
}

impl Default for WebFetchSettings {
    fn default() -> Self {
        WebFetchSettings {
            enabled: true,
            max_chars: 20_000,
            max_bytes: 2_000_000,
            timeout_secs: 20,
            max_redirects: 5,
            allowed_hosts: Vec::new(),
            allow_private_network: false,
            static_hosts: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ToolSettings {
    pub deny: Vec<String>,
    pub allow: Option<Vec<String>>,
    pub exec: ExecSettings,
    pub loop_detection: Option<LoopDetection>,
    pub web_fetch: WebFetchSettings,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub level: LogLevel,
    pub console_level: LogLevel,
    pub dir: PathBuf,
}

/// Programs allowed by default in `allowlist` mode: read-only text utilities.
pub const DEFAULT_SAFE_BINS: &[&str] =
    &["cat", "date", "echo", "grep", "head", "ls", "pwd", "sort", "tail", "uniq", "wc"];

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file as written (after `${ENV}` substitution).
    pub file: ConfigFile,
    pub gateway: GatewaySettings,
    /// Agents by id; always contains the default agent.
    pub agents: BTreeMap<String, AgentSettings>,
    pub default_agent: String,
    pub providers: BTreeMap<String, ProviderSettings>,
    pub tools: ToolSettings,
    pub logging: LogSettings,
    /// `None` when hooks are off.
    pub hooks: Option<HookSettings>,
    pub memory: super::memory::MemorySettings,
    /// Chat accounts to connect, bindings and session mapping.
    pub channels: super::channels::ChannelSettings,
    /// The state directory the config was loaded for.
    pub state_dir: PathBuf,
    /// `None` unless OpenTelemetry export is on.
    pub otel: Option<OtelSettings>,
}

impl Config {
    pub fn agent(&self, id: &str) -> Option<&AgentSettings> {
        self.agents.get(id)
    }

    pub fn default_agent(&self) -> &AgentSettings {
        // `resolve` always inserts the default agent.
        &self.agents[&self.default_agent]
    }
}

/// The environment variable a provider's key is read from when the file gives none.
pub fn provider_key_var(provider_id: &str) -> String {
    let mut var: String =
        provider_id.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    var.push_str("_API_KEY");
    var
}

/// Keys for rotation from `<ID>_API_KEYS` (separated by commas, semicolons or spaces) and
/// `<ID>_API_KEY_1` … `<ID>_API_KEY_9`, without duplicates and without `primary`.
fn extra_env_keys(
    env: &dyn Fn(&str) -> Option<String>,
    provider_id: &str,
    primary: Option<&SecretString>,
) -> Vec<(String, SecretString)> {
    let var = provider_key_var(provider_id);
    let mut out: Vec<(String, SecretString)> = Vec::new();
    let mut add = |label: String, value: &str| {
        let value = value.trim();
        if value.is_empty()
            || primary.is_some_and(|p| p.expose() == value)
            || out.iter().any(|(_, k)| k.expose() == value)
        {
            return;
        }
        out.push((label, SecretString::new(value.to_string())));
    };
    if let Some(list) = env(&format!("{var}S")) {
        for (i, k) in list.split([',', ';', ' ', '\n']).filter(|k| !k.trim().is_empty()).enumerate() {
            add(format!("env {var}S[{}]", i + 1), k);
        }
    }
    for n in 1..=9 {
        if let Some(k) = env(&format!("{var}_{n}")) {
            add(format!("env {var}_{n}"), &k);
        }
    }
    out
}

pub(crate) struct Resolver<'a> {
    pub config_dir: &'a Path,
    pub state_dir: &'a Path,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub read_file: &'a dyn Fn(&Path) -> Result<String, String>,
    pub stored: Option<&'a super::load::StoredSecret<'a>>,
    pub presets: &'a [Preset],
}

impl Resolver<'_> {
    fn preset(&self, id: &str) -> Option<&Preset> {
        self.presets.iter().find(|p| p.id == id)
    }

    pub(crate) fn path(&self, raw: &str) -> PathBuf {
        if let Some(rest) = raw.strip_prefix("~/")
            && let Some(home) = (self.env)("HOME")
        {
            return Path::new(&home).join(rest);
        }
        let p = Path::new(raw);
        if p.is_absolute() { p.to_path_buf() } else { self.config_dir.join(p) }
    }

    pub(crate) fn secret(&self, input: &SecretInput, path: &str, issues: &mut Vec<Issue>) -> Option<SecretString> {
        match input {
            SecretInput::Literal(s) => Some(s.clone()),
            SecretInput::Ref(r) => match r.source {
                SecretSource::Env => match (self.env)(&r.id) {
                    Some(v) if !v.is_empty() => Some(SecretString::new(v)),
                    _ => {
                        issues.push(issue(
                            path,
                            format!("environment variable {} is not set", r.id),
                            Some(format!("export {}=… before starting clawline", r.id)),
                        ));
                        None
                    }
                },
                SecretSource::Store => match self.stored.map(|f| f(&r.id)) {
                    Some(Ok(Some(v))) if !v.is_empty() => Some(SecretString::new(v)),
                    Some(Ok(_)) => {
                        issues.push(issue(
                            path,
                            format!("no secret `{}` is stored", r.id),
                            Some(format!("store it with: clawline secrets set {} --from-env VAR", r.id)),
                        ));
                        None
                    }
                    Some(Err(e)) => {
                        issues.push(issue(path, format!("cannot read the stored secret `{}`: {e}", r.id), None));
                        None
                    }
                    None => {
                        issues.push(issue(path, "stored secrets cannot be read here", None));
                        None
                    }
                },
                SecretSource::File => {
                    let (file, v) = self.read_text(&r.id, "secret file", path, issues)?;
                    if v.trim().is_empty() {
                        issues.push(issue(path, format!("secret file {} is empty", file.display()), None));
                        return None;
                    }
                    Some(SecretString::new(v.trim().to_string()))
                }
            },
        }
    }

    pub fn resolve(&self, file: ConfigFile) -> Result<Config, Vec<Issue>> {
        let mut issues = Vec::new();
        let gateway = self.gateway(&file.gateway, &mut issues);
        let providers = self.providers(&file, &mut issues);
        let (agents, default_agent) = self.agents(&file.agents, &providers, &mut issues);
        let tools = tools(&file.tools, &mut issues);
        let logging = LogSettings {
            level: file.logging.level.unwrap_or(LogLevel::Info),
            console_level: file.logging.console_level.or(file.logging.level).unwrap_or(LogLevel::Info),
            dir: file.logging.dir.as_deref().map_or_else(|| self.state_dir.join("logs"), |d| self.path(d)),
        };
        let hooks = self.hooks(&file.hooks, &gateway, &mut issues);
        let memory = self.memory(&file.memory.search, &providers, &mut issues);
        let otel = self.otel(&file.diagnostics, &mut issues);
        let agent_ids: Vec<String> = agents.keys().cloned().collect();
        let mut channels = self.channels(&file.channels, &file.bindings, &file.session, &agent_ids, &mut issues);
        if !gateway.control_ui_enabled {
            channels.accounts.retain(|a| a.channel != "webchat");
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        let state_dir = self.state_dir.to_path_buf();
        Ok(Config {
            otel,
            file,
            gateway,
            agents,
            default_agent,
            providers,
            tools,
            logging,
            hooks,
            memory,
            channels,
            state_dir,
        })
    }

    fn hooks(&self, h: &HooksFile, gateway: &GatewaySettings, issues: &mut Vec<Issue>) -> Option<HookSettings> {
        if !h.enabled.unwrap_or(false) {
            return None;
        }
        let Some(token) = h.token.as_ref().and_then(|t| self.secret(t, "hooks.token", issues)) else {
            if h.token.is_none() {
                issues.push(issue(
                    "hooks.enabled",
                    "hooks are enabled but hooks.token is not set",
                    Some("add token: \"${CLAWLINE_HOOKS_TOKEN}\" under hooks (a secret of its own, not the gateway token)".into()),
                ));
            }
            return None;
        };
        if token.expose().chars().count() < MIN_TOKEN_CHARS {
            issues.push(issue("hooks.token", format!("the token is shorter than {MIN_TOKEN_CHARS} characters"), None));
        }
        if gateway.token.as_ref().is_some_and(|g| g.matches(token.expose())) {
            issues.push(issue(
                "hooks.token",
                "the hooks token is the gateway token",
                Some("give hooks a secret of their own: a leaked webhook URL must not open the whole gateway".into()),
            ));
        }
        let path = h.path.clone().unwrap_or_else(|| "/hooks".into());
        let path = path.trim_end_matches('/').to_string();
        if !path.starts_with('/') || path.is_empty() || path.contains(['?', '#', ' ']) {
            issues.push(issue(
                "hooks.path",
                format!("`{}` is not a usable path", h.path.as_deref().unwrap_or_default()),
                Some("write something like \"/hooks\" (not \"/\")".into()),
            ));
        }
        for reserved in ["/v1", "/api", "/tools", "/webchat", "/healthz", "/readyz", "/health", "/ready"] {
            if path == reserved || path.starts_with(&format!("{reserved}/")) {
                issues.push(issue("hooks.path", format!("`{path}` is taken by the gateway itself"), None));
            }
        }
        Some(HookSettings {
            token,
            path,
            allowed_agent_ids: h.allowed_agent_ids.clone(),
            allow_request_session_key: h.allow_request_session_key.unwrap_or(false),
            allowed_session_key_prefixes: h.allowed_session_key_prefixes.clone(),
            default_session_key: h.default_session_key.clone(),
        })
    }

    fn gateway(&self, g: &GatewayFile, issues: &mut Vec<Issue>) -> GatewaySettings {
        if g.mode == Some(GatewayMode::Remote) {
            issues.push(issue(
                "gateway.mode",
                "remote mode is not supported: clawline runs the gateway in this process",
                Some("use \"local\" or remove the key".into()),
            ));
        }
        let bind_host = match g.bind.unwrap_or(BindMode::Loopback) {
            BindMode::Loopback | BindMode::Auto => IpAddr::from([127, 0, 0, 1]),
            BindMode::Lan => IpAddr::from([0, 0, 0, 0]),
            BindMode::Tailnet => {
                issues.push(issue(
                    "gateway.bind",
                    "\"tailnet\" binding is not supported yet",
                    Some("use \"custom\" with gateway.customBindHost set to your tailnet address".into()),
                ));
                IpAddr::from([127, 0, 0, 1])
            }
            BindMode::Custom => match g.custom_bind_host.as_deref().map(str::parse::<IpAddr>) {
                Some(Ok(ip)) => ip,
                Some(Err(_)) => {
                    issues.push(issue(
                        "gateway.customBindHost",
                        "not an IP address",
                        Some("write an address such as \"192.168.1.20\" or \"::1\"".into()),
                    ));
                    IpAddr::from([127, 0, 0, 1])
                }
                None => {
                    issues.push(issue(
                        "gateway.bind",
                        "\"custom\" needs gateway.customBindHost",
                        Some("add customBindHost: \"<ip address>\" under gateway".into()),
                    ));
                    IpAddr::from([127, 0, 0, 1])
                }
            },
        };
        let auth_mode = match g.auth.mode {
            None | Some(AuthModeFile::Token) => AuthMode::Token,
            Some(AuthModeFile::Password) => AuthMode::Password,
            Some(AuthModeFile::None) | Some(AuthModeFile::TrustedProxy) => {
                issues.push(issue(
                    "gateway.auth.mode",
                    "clawline always requires authentication",
                    Some("use \"token\" (default) or \"password\"".into()),
                ));
                AuthMode::Token
            }
        };
        let token = g.auth.token.as_ref().and_then(|t| self.secret(t, "gateway.auth.token", issues));
        if let Some(t) = &token
            && t.expose().chars().count() < MIN_TOKEN_CHARS
        {
            issues.push(issue(
                "gateway.auth.token",
                format!("the token is shorter than {MIN_TOKEN_CHARS} characters"),
                Some("use a long random value, or remove the key and clawline generates one".into()),
            ));
        }
        let password = g.auth.password.as_ref().and_then(|p| self.secret(p, "gateway.auth.password", issues));
        if let Some(p) = &password
            && p.expose().chars().count() < MIN_PASSWORD_CHARS
        {
            issues.push(issue(
                "gateway.auth.password",
                format!("the password is shorter than {MIN_PASSWORD_CHARS} characters"),
                Some("use a longer passphrase: failed attempts are rate limited, but short passwords are still guessable".into()),
            ));
        }
        if auth_mode == AuthMode::Password && password.is_none() && g.auth.password.is_none() {
            issues.push(issue(
                "gateway.auth.mode",
                "mode is \"password\" but gateway.auth.password is not set",
                Some("add password: \"${CLAWLINE_GATEWAY_PASSWORD}\" under gateway.auth".into()),
            ));
        }
        let rl = &g.auth.rate_limit;
        let max_body_bytes = g.http.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes < 1024 {
            issues.push(issue("gateway.http.maxBodyBytes", "must be at least 1024", None));
        }
        for (i, origin) in g.control_ui.allowed_origins.iter().enumerate() {
            if !(origin.starts_with("http://") || origin.starts_with("https://")) || origin.ends_with('/') {
                issues.push(issue(
                    format!("gateway.controlUi.allowedOrigins[{i}]"),
                    format!("`{origin}` is not an origin"),
                    Some("write scheme://host[:port] with no path, e.g. \"https://chat.example.com\"".into()),
                ));
            }
        }
        let mut trusted_proxies = Vec::new();
        for (i, raw) in g.trusted_proxies.iter().enumerate() {
            match raw.trim().parse::<IpAddr>() {
                Ok(ip) => trusted_proxies.push(ip),
                Err(_) => issues.push(issue(
                    format!("gateway.trustedProxies[{i}]"),
                    format!("`{raw}` is not an IP address"),
                    Some("list the proxies' addresses, e.g. \"127.0.0.1\"".into()),
                )),
            }
        }
        let port = g.port.unwrap_or(DEFAULT_PORT);
        let mut allowed_origins = g.control_ui.allowed_origins.clone();
        if allowed_origins.is_empty() && !bind_host.is_loopback() {
            // Beyond loopback the page is opened from this machine's own names by default.
            allowed_origins = vec![format!("http://localhost:{port}"), format!("http://127.0.0.1:{port}")];
        }
        let control_ui_root = g.control_ui.root.as_deref().filter(|r| !r.trim().is_empty()).map(|r| self.path(r));
        GatewaySettings {
            port,
            bind_host,
            auth_mode,
            token,
            password,
            rate_limit: RateLimitSettings {
                max_attempts: rl.max_attempts.unwrap_or(10).max(1),
                window_ms: rl.window_ms.unwrap_or(60_000),
                lockout_ms: rl.lockout_ms.unwrap_or(300_000),
                exempt_loopback: rl.exempt_loopback.unwrap_or(true),
            },
            control_ui_enabled: g.control_ui.enabled.unwrap_or(true),
            allowed_origins,
            control_ui_root,
            chat_completions_enabled: g.http.endpoints.chat_completions.enabled.unwrap_or(true),
            max_body_bytes,
            trusted_proxies,
            auto_approve_local: g.nodes.pairing.auto_approve_local.unwrap_or(true),
            http_tools_deny: DEFAULT_HTTP_TOOLS_DENY
                .iter()
                .map(|t| t.to_string())
                .filter(|t| !g.tools.allow.contains(t))
                .chain(g.tools.deny.iter().cloned())
                .collect(),
        }
    }

    fn providers(&self, file: &ConfigFile, issues: &mut Vec<Issue>) -> BTreeMap<String, ProviderSettings> {
        let m = &file.models;
        let mut out = BTreeMap::new();
        for (id, p) in &m.providers {
            let base = format!("models.providers.{id}");
            if validate_agent_id(id).is_err() {
                issues.push(issue(
                    base.clone(),
                    format!("provider id `{id}` must be lowercase letters, digits, `-` and `_`"),
                    None,
                ));
                continue;
            }
            let known = self.preset(id);
            let api = match p.api.as_deref() {
                Some(a) => match ApiKind::parse(a) {
                    Some(k) => k,
                    None => {
                        issues.push(api_issue(&format!("{base}.api"), a));
                        continue;
                    }
                },
                None => match (known, p.base_url.as_deref()) {
                    (Some(k), _) => k.api,
                    (None, Some(u)) if u.contains("anthropic.com") => ApiKind::AnthropicMessages,
                    _ => ApiKind::OpenAiCompletions,
                },
            };
            let base_url = match (p.base_url.as_deref(), known) {
                (Some(u), _) => u.trim_end_matches('/').to_string(),
                (None, Some(k)) => match self.preset_base_url(k, p) {
                    Ok(u) => u,
                    Err(missing) => {
                        issues.push(issue(
                            format!("{base}.{missing}"),
                            format!("{} needs `{missing}` to build its URL", k.name),
                            Some(format!("set {base}.{missing}, or give {base}.baseUrl")),
                        ));
                        continue;
                    }
                },
                (None, None) => {
                    issues.push(issue(
                        base.clone(),
                        "baseUrl is required for this provider",
                        Some(format!(
                            "add baseUrl: \"http://127.0.0.1:8080/v1\" (the server's API root); built-in providers: {}",
                            self.presets.iter().map(|p| p.id).collect::<Vec<_>>().join(", ")
                        )),
                    ));
                    continue;
                }
            };
            if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                issues.push(issue(
                    format!("{base}.baseUrl"),
                    format!("`{base_url}` is not an http(s) URL"),
                    Some("write the full URL, e.g. \"https://api.openai.com/v1\"".into()),
                ));
            }
            for (i, model) in p.models.iter().enumerate() {
                if model.id.trim().is_empty() {
                    issues.push(issue(format!("{base}.models[{i}].id"), "model id is empty", None));
                }
                if let Some(a) = model.api.as_deref()
                    && ApiKind::parse(a).is_none()
                {
                    issues.push(api_issue(&format!("{base}.models[{i}].api"), a));
                }
            }
            let (api_key, api_key_source) = match &p.api_key {
                Some(input) => (self.secret(input, &format!("{base}.apiKey"), issues), Some("config".to_string())),
                None => match self.env_key(id, known) {
                    Some((source, v)) => (Some(v), Some(source)),
                    None => match extra_env_keys(self.env, id, None).into_iter().next() {
                        Some((source, v)) => (Some(v), Some(source)),
                        None => (None, None),
                    },
                },
            };
            let mut models = p.models.clone();
            let mut headers: BTreeMap<String, String> = BTreeMap::new();
            if let Some(k) = known {
                merge_preset_models(&mut models, k);
                headers.extend(k.headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
            }
            headers.extend(p.headers.clone());
            out.insert(
                id.clone(),
                ProviderSettings {
                    id: id.clone(),
                    api,
                    base_url,
                    headers,
                    timeout_secs: p.timeout_seconds.unwrap_or(120).max(1),
                    max_tokens: p.max_tokens,
                    models,
                    implicit: false,
                    extra_keys: extra_env_keys(self.env, id, api_key.as_ref()),
                    aws: (api == ApiKind::BedrockConverseStream).then(|| self.aws_env(p)).flatten(),
                    bearer: uses_bearer(known, api_key_source.as_deref()),
                    token_exchange: known
                        .and_then(|k| k.token_exchange_url)
                        .map(|u| p.token_exchange_url.clone().unwrap_or_else(|| u.to_string())),
                    api_key,
                    api_key_source,
                },
            );
        }
        if m.mode != Some(ModelsMode::Replace) {
            for k in self.presets {
                if out.contains_key(k.id) {
                    continue;
                }
                let key =
                    self.env_key(k.id, Some(k)).or_else(|| extra_env_keys(self.env, k.id, None).into_iter().next());
                let aws =
                    (k.api == ApiKind::BedrockConverseStream).then(|| self.aws_env(&ProviderFile::default())).flatten();
                if (key.is_some() || aws.is_some())
                    && let Some(p) = self.implicit_preset(k, key, aws)
                {
                    out.insert(k.id.to_string(), p);
                }
            }
            // Built-in providers that agents name without any credential in sight: known, so the
            // model reference is valid; a stored auth profile may supply the credential.
            for raw in model_refs(&file.agents) {
                if let Some(r) = ModelRef::parse(raw)
                    && !out.contains_key(&r.provider)
                    && let Some(k) = self.preset(&r.provider)
                    && let Some(p) = self.implicit_preset(k, None, None)
                {
                    out.insert(k.id.to_string(), p);
                }
            }
        }
        out
    }

    /// The first key found in the environment for `id`: the preset's variables, then `<ID>_API_KEY`
    /// (for Copilot, then the GitHub sign-in VS Code and the Copilot editor plugins store).
    fn env_key(&self, id: &str, preset: Option<&Preset>) -> Option<(String, SecretString)> {
        let generic = provider_key_var(id);
        let found = preset
            .map(|k| k.key_vars)
            .unwrap_or_default()
            .iter()
            .map(|v| v.to_string())
            .chain(std::iter::once(generic))
            .find_map(|var| {
                (self.env)(&var).filter(|v| !v.trim().is_empty()).map(|v| (format!("env {var}"), SecretString::new(v)))
            });
        match found {
            None => preset.and_then(|k| self.editor_token(k)),
            other => other,
        }
    }

    /// A sign-in an editor keeps for this provider (`Preset::token_files`, e.g. the Copilot
    /// plugins' `github-copilot/apps.json`).
    fn editor_token(&self, k: &Preset) -> Option<(String, SecretString)> {
        if k.token_files.is_empty() {
            return None;
        }
        let base = (self.env)("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| (self.env)("HOME").map(|h| Path::new(&h).join(".config")))?;
        for name in k.token_files {
            let path = base.join(name);
            let Ok(text) = (self.read_file)(&path) else { continue };
            let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
            let token = map
                .iter()
                .filter(|(host, _)| host.starts_with(k.token_file_host))
                .find_map(|(_, v)| v.get("oauth_token").and_then(|t| t.as_str()).filter(|t| !t.is_empty()));
            if let Some(t) = token {
                return Some((
                    format!("{} (the editors' Copilot sign-in)", path.display()),
                    SecretString::new(t.to_string()),
                ));
            }
        }
        None
    }

    /// AWS credentials from the environment, for Bedrock.
    fn aws_env(&self, p: &ProviderFile) -> Option<AwsCredentials> {
        let get = |v: &str| (self.env)(v).filter(|s| !s.trim().is_empty());
        let access_key_id = get("AWS_ACCESS_KEY_ID")?;
        let secret_access_key = SecretString::new(get("AWS_SECRET_ACCESS_KEY")?);
        Some(AwsCredentials {
            access_key_id,
            secret_access_key,
            session_token: get("AWS_SESSION_TOKEN").map(SecretString::new),
            region: self.aws_region(p),
        })
    }

    fn aws_region(&self, p: &ProviderFile) -> String {
        let get = |v: &str| (self.env)(v).filter(|s| !s.trim().is_empty());
        p.region
            .clone()
            .or_else(|| get("AWS_REGION"))
            .or_else(|| get("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into())
    }

    /// A preset's base URL: the override variable, else its template filled from the file.
    fn preset_base_url(&self, k: &Preset, p: &ProviderFile) -> Result<String, String> {
        if let Some(url) = k.base_url_var.and_then(|v| (self.env)(v)).filter(|u| !u.trim().is_empty()) {
            let url = url.trim().trim_end_matches('/').to_string();
            // OLLAMA_HOST may be a bare host:port.
            return Ok(if url.contains("://") { url } else { format!("http://{url}") });
        }
        let region = self.aws_region(p);
        preset::fill_base_url(k.base_url, &|name| match name {
            "region" => Some(region.clone()),
            "accountId" => p.account_id.clone(),
            "gatewayId" => p.gateway_id.clone(),
            _ => None,
        })
    }

    /// A preset switched on without a `models.providers` entry.
    fn implicit_preset(
        &self,
        k: &Preset,
        key: Option<(String, SecretString)>,
        aws: Option<AwsCredentials>,
    ) -> Option<ProviderSettings> {
        let base_url = self.preset_base_url(k, &ProviderFile::default()).ok()?;
        let mut models = Vec::new();
        merge_preset_models(&mut models, k);
        let (api_key, api_key_source) = match key {
            Some((source, v)) => (Some(v), Some(source)),
            None => (None, None),
        };
        Some(ProviderSettings {
            id: k.id.to_string(),
            api: k.api,
            base_url,
            headers: k.headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            timeout_secs: 120,
            max_tokens: None,
            models,
            implicit: true,
            extra_keys: extra_env_keys(self.env, k.id, api_key.as_ref()),
            aws,
            bearer: uses_bearer(Some(k), api_key_source.as_deref()),
            token_exchange: k.token_exchange_url.map(String::from),
            api_key,
            api_key_source,
        })
    }

    fn model_ref(
        &self,
        raw: &str,
        path: &str,
        providers: &BTreeMap<String, ProviderSettings>,
        issues: &mut Vec<Issue>,
    ) -> Option<ModelRef> {
        let Some(r) = ModelRef::parse(raw) else {
            issues.push(issue(
                path,
                format!("`{raw}` is not a model reference"),
                Some("write \"provider/model\", e.g. \"openai/gpt-5-mini\"".into()),
            ));
            return None;
        };
        if !providers.contains_key(&r.provider) {
            let known: Vec<&str> = providers.keys().map(String::as_str).collect();
            let hint = if known.is_empty() {
                format!(
                    "add models.providers.{} with baseUrl and api, or export {}",
                    r.provider,
                    provider_key_var(&r.provider)
                )
            } else {
                format!("configured providers: {}", known.join(", "))
            };
            issues.push(issue(path, format!("unknown provider `{}`", r.provider), Some(hint)));
            return None;
        }
        Some(r)
    }

    fn otel(&self, d: &DiagnosticsFile, issues: &mut Vec<Issue>) -> Option<OtelSettings> {
        let o = &d.otel;
        if o.capture_content == Some(true) {
            issues.push(issue(
                "diagnostics.otel.captureContent",
                "clawline never exports message or tool content".to_string(),
                Some("remove the key (spans carry names, counts, timings and outcomes)".into()),
            ));
        }
        if let Some(p) = o.protocol.as_deref()
            && p != "http/json"
            && p != "http/protobuf"
        {
            issues.push(issue(
                "diagnostics.otel.protocol",
                format!("unknown protocol `{p}`"),
                Some("use \"http/json\" (or OpenClaw's \"http/protobuf\"; clawline sends JSON either way)".into()),
            ));
        }
        let rate = o.sample_rate.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&rate) {
            issues.push(issue(
                "diagnostics.otel.sampleRate",
                format!("{rate} is not a fraction"),
                Some("use 0 to 1".into()),
            ));
        }
        let flush = o.flush_interval_ms.unwrap_or(5000);
        check_range("diagnostics.otel.flushIntervalMs", flush, 10, 600_000, issues);
        if d.enabled == Some(false) || o.enabled != Some(true) {
            return None;
        }
        let endpoint = o.endpoint.clone().or_else(|| (self.env)("OTEL_EXPORTER_OTLP_ENDPOINT"));
        let (logs_otlp, logs_stdout) = match o.logs_exporter.as_deref() {
            None | Some("otlp") => (true, false),
            Some("stdout") => (false, true),
            Some("both") => (true, true),
            Some(other) => {
                issues.push(issue(
                    "diagnostics.otel.logsExporter",
                    format!("unknown log exporter `{other}`"),
                    Some("use \"otlp\", \"stdout\" or \"both\"".into()),
                ));
                (false, false)
            }
        };
        // Logs are off unless asked for (they are the largest signal); traces and metrics on.
        let logs = o.logs == Some(true);
        let mut unnamed = false;
        // A signal's own URL (file, then environment), else `<endpoint>/v1/<signal>`.
        let mut url_for = |on: bool, own: &Option<String>, var: &str, signal: &str, key: &str| -> Option<String> {
            if !on {
                return None;
            }
            let (url, path) = match (own, (self.env)(var), &endpoint) {
                (Some(u), _, _) => (u.clone(), key.to_string()),
                (None, Some(u), _) => (u, key.to_string()),
                (None, None, Some(e)) => {
                    (format!("{}/v1/{signal}", e.trim_end_matches('/')), "diagnostics.otel.endpoint".into())
                }
                (None, None, None) => {
                    unnamed = true;
                    return None;
                }
            };
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                issues.push(issue(
                    path,
                    format!("`{url}` is not an http(s) URL"),
                    Some("e.g. \"http://127.0.0.1:4318\"".into()),
                ));
                return None;
            }
            Some(url)
        };
        let traces_url = url_for(
            o.traces != Some(false),
            &o.traces_endpoint,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "traces",
            "diagnostics.otel.tracesEndpoint",
        );
        let metrics_url = url_for(
            o.metrics != Some(false),
            &o.metrics_endpoint,
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "metrics",
            "diagnostics.otel.metricsEndpoint",
        );
        let logs_url = url_for(
            logs && logs_otlp,
            &o.logs_endpoint,
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
            "logs",
            "diagnostics.otel.logsEndpoint",
        );
        if unnamed {
            issues.push(issue(
                "diagnostics.otel.endpoint",
                "OpenTelemetry export is on but no collector is named".to_string(),
                Some(
                    "set diagnostics.otel.endpoint, e.g. \"http://127.0.0.1:4318\", or OTEL_EXPORTER_OTLP_ENDPOINT"
                        .into(),
                ),
            ));
        }
        let logs_stdout = logs && logs_stdout;
        if traces_url.is_none() && metrics_url.is_none() && logs_url.is_none() && !logs_stdout {
            return None;
        }
        Some(OtelSettings {
            traces_url,
            metrics_url,
            logs_url,
            logs_stdout,
            headers: o.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            service_name: o.service_name.clone().unwrap_or_else(|| "clawline".into()),
            sample_rate: rate,
            flush_interval_ms: flush,
        })
    }

    fn agents(
        &self,
        a: &AgentsFile,
        providers: &BTreeMap<String, ProviderSettings>,
        issues: &mut Vec<Issue>,
    ) -> (BTreeMap<String, AgentSettings>, String) {
        let d = &a.defaults;
        let default_model = match &d.model {
            Some(sel) => {
                let primary = self.model_ref(&sel.primary, "agents.defaults.model", providers, issues);
                let fallbacks = sel
                    .fallbacks
                    .iter()
                    .enumerate()
                    .filter_map(|(i, f)| {
                        self.model_ref(f, &format!("agents.defaults.model.fallbacks[{i}]"), providers, issues)
                    })
                    .collect();
                (primary, fallbacks)
            }
            None => (auto_model(providers, self.presets), Vec::new()),
        };
        let max_turns = d.max_turns.unwrap_or(24);
        check_range("agents.defaults.maxTurns", max_turns.into(), 1, 1000, issues);
        let timeout = d.timeout_seconds.unwrap_or(600);
        check_range("agents.defaults.timeoutSeconds", timeout, 1, 7 * 24 * 3600, issues);

        let mut ids: Vec<String> = a.entries.keys().cloned().collect();
        if !ids.iter().any(|i| i == DEFAULT_AGENT_ID) {
            ids.push(DEFAULT_AGENT_ID.to_string());
        }
        let defaults: Vec<&String> =
            a.entries.iter().filter(|(_, e)| e.default == Some(true)).map(|(k, _)| k).collect();
        if defaults.len() > 1 {
            issues.push(issue(
                format!("agents.entries.{}.default", defaults[1]),
                format!(
                    "more than one agent is marked default ({})",
                    defaults.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ),
                Some("keep `default: true` on one agent".into()),
            ));
        }
        let default_agent = defaults.first().map_or(DEFAULT_AGENT_ID.to_string(), |s| s.to_string());

        let mut out = BTreeMap::new();
        for id in ids {
            let base = format!("agents.entries.{id}");
            if validate_agent_id(&id).is_err() {
                issues.push(issue(
                    base,
                    format!("agent id `{id}` must start with a lowercase letter and use only a-z, 0-9, `-`, `_`"),
                    None,
                ));
                continue;
            }
            let entry = a.entries.get(&id).cloned().unwrap_or_default();
            let (model, fallbacks) = match &entry.model {
                Some(sel) => {
                    let primary = self.model_ref(&sel.primary, &format!("{base}.model"), providers, issues);
                    let fallbacks = sel
                        .fallbacks
                        .iter()
                        .enumerate()
                        .filter_map(|(i, f)| {
                            self.model_ref(f, &format!("{base}.model.fallbacks[{i}]"), providers, issues)
                        })
                        .collect();
                    (primary, fallbacks)
                }
                None => default_model.clone(),
            };
            let workspace = match (&entry.workspace, &d.workspace) {
                (Some(w), _) => self.path(w),
                (None, Some(w)) if id == default_agent => self.path(w),
                (None, Some(w)) => self.path(w).with_file_name(format!(
                    "{}-{id}",
                    Path::new(w).file_name().and_then(|n| n.to_str()).unwrap_or("workspace")
                )),
                (None, None) if id == default_agent => self.state_dir.join("workspace"),
                (None, None) => self.state_dir.join(format!("workspace-{id}")),
            };
            let agent_turns = entry.max_turns.unwrap_or(max_turns);
            check_range(&format!("{base}.maxTurns"), agent_turns.into(), 1, 1000, issues);
            out.insert(
                id.clone(),
                AgentSettings {
                    name: entry.name.clone().unwrap_or_else(|| id.clone()),
                    id,
                    workspace,
                    model,
                    fallbacks,
                    max_turns: agent_turns,
                    timeout_secs: entry.timeout_seconds.unwrap_or(timeout),
                    max_tokens: d.max_tokens,
                    bootstrap_max_chars: d.bootstrap_max_chars.unwrap_or(20_000),
                    bootstrap_total_max_chars: d.bootstrap_total_max_chars.unwrap_or(60_000),
                    user_timezone: d.user_timezone.clone(),
                    budget: budget(&d.budget, &entry.budget, &base, issues),
                },
            );
        }
        (out, default_agent)
    }
}

fn api_issue(path: &str, value: &str) -> Issue {
    let supported: Vec<&str> = ApiKind::ALL.iter().map(|k| k.as_str()).collect();
    let message = if LATER_APIS.contains(&value) {
        format!("the `{value}` API is not supported by clawline yet")
    } else {
        format!("unknown API `{value}`")
    };
    issue(path, message, Some(format!("supported: {}", supported.join(", "))))
}

/// An agent's limits: its own where it sets them, else the defaults, else clawline's. `0`
/// turns a limit off.
fn budget(defaults: &BudgetFile, own: &BudgetFile, base: &str, issues: &mut Vec<Issue>) -> BudgetSettings {
    let tokens = own.daily_tokens.or(defaults.daily_tokens).unwrap_or(DEFAULT_DAILY_TOKENS);
    let cost = own.daily_cost_usd.or(defaults.daily_cost_usd).unwrap_or(DEFAULT_DAILY_COST_USD);
    if !cost.is_finite() || cost < 0.0 {
        let path = if own.daily_cost_usd.is_some() {
            format!("{base}.budget.dailyCostUsd")
        } else {
            "agents.defaults.budget.dailyCostUsd".to_string()
        };
        issues.push(issue(
            path,
            format!("{cost} is not a cost"),
            Some("use dollars, e.g. 25, or 0 for no limit".into()),
        ));
    }
    BudgetSettings {
        daily_tokens: (tokens > 0).then_some(tokens),
        daily_cost_usd: (cost.is_finite() && cost > 0.0).then_some(cost),
    }
}

fn check_range(path: &str, v: u64, min: u64, max: u64, issues: &mut Vec<Issue>) {
    if v < min || v > max {
        issues.push(issue(path, format!("{v} is out of range"), Some(format!("use a value from {min} to {max}"))));
    }
}

/// With no model configured: the default model of the first built-in provider whose
/// credentials were found in the environment (catalog order: Anthropic, OpenAI, …), else the
/// only configured provider's first model.
fn auto_model(providers: &BTreeMap<String, ProviderSettings>, presets: &[Preset]) -> Option<ModelRef> {
    for k in presets {
        if let Some(p) = providers.get(k.id)
            && p.implicit
            && (p.api_key.is_some() || p.aws.is_some())
            && !k.default_model.is_empty()
            && k.login != Login::TokenExchange
        {
            return Some(ModelRef { provider: p.id.clone(), model: k.default_model.to_string() });
        }
    }
    let with_models: Vec<&ProviderSettings> =
        providers.values().filter(|p| !p.implicit && !p.models.is_empty()).collect();
    match with_models.as_slice() {
        [only] => Some(ModelRef { provider: only.id.clone(), model: only.models[0].id.clone() }),
        _ => None,
    }
}

/// Every model reference the agents section makes.
fn model_refs(a: &AgentsFile) -> impl Iterator<Item = &str> {
    a.defaults
        .model
        .iter()
        .chain(a.entries.values().filter_map(|e| e.model.as_ref()))
        .flat_map(|sel| std::iter::once(sel.primary.as_str()).chain(sel.fallbacks.iter().map(String::as_str)))
}

/// Adds a preset's models that the list does not already have.
fn merge_preset_models(models: &mut Vec<ModelEntryFile>, k: &Preset) {
    for pm in k.models {
        if models.iter().any(|m| m.id == pm.id) {
            continue;
        }
        let mut input = vec!["text".to_string()];
        if pm.image {
            input.push("image".to_string());
        }
        models.push(ModelEntryFile {
            id: pm.id.to_string(),
            name: Some(pm.name.to_string()),
            reasoning: pm.reasoning,
            input,
            cost: ModelCost { input: pm.cost[0], output: pm.cost[1], cache_read: pm.cost[2], cache_write: pm.cost[3] },
            context_window: Some(pm.context_window),
            max_tokens: Some(pm.max_tokens),
            ..Default::default()
        });
    }
}

fn tools(t: &ToolsFile, issues: &mut Vec<Issue>) -> ToolSettings {
    let safe_bins =
        t.exec.safe_bins.clone().unwrap_or_else(|| DEFAULT_SAFE_BINS.iter().map(|s| s.to_string()).collect());
    for (i, bin) in safe_bins.iter().enumerate() {
        let ok = !bin.is_empty()
            && (Path::new(bin).is_absolute() || !bin.contains('/'))
            && !bin.contains(char::is_whitespace);
        if !ok {
            issues.push(issue(
                format!("tools.exec.safeBins[{i}]"),
                format!("`{bin}` is not a program name"),
                Some("write a bare name such as \"git\" or an absolute path such as \"/usr/bin/git\"".into()),
            ));
        }
    }
    let timeout = t.exec.timeout_seconds.unwrap_or(30);
    let approval_timeout = t.exec.approval_timeout_seconds.unwrap_or(120);
    check_range("tools.exec.approvalTimeoutSeconds", approval_timeout, 5, 86_400, issues);
    check_range("tools.exec.timeoutSeconds", timeout, 1, 3600, issues);
    let loops = &t.loop_detection;
    let max_identical = loops.max_identical_calls.unwrap_or(3);
    check_range("tools.loopDetection.maxIdenticalCalls", max_identical.into(), 1, 1000, issues);
    let max_errors = loops.max_consecutive_errors.unwrap_or(8);
    check_range("tools.loopDetection.maxConsecutiveErrors", max_errors.into(), 1, 1000, issues);
    let f = &t.web.fetch;
    let d = WebFetchSettings::default();
    let web_fetch = WebFetchSettings {
        enabled: f.enabled != Some(false),
        max_chars: f.max_chars.unwrap_or(d.max_chars),
        max_bytes: f.max_bytes.unwrap_or(d.max_bytes),
        timeout_secs: f.timeout_seconds.unwrap_or(d.timeout_secs),
        max_redirects: f.max_redirects.unwrap_or(d.max_redirects),
        allowed_hosts: f.allowed_hosts.iter().map(|h| h.trim().trim_matches(['[', ']']).to_ascii_lowercase()).collect(),
        allow_private_network: f.allow_private_network == Some(true),
        static_hosts: Vec::new(),
    };
    check_range("tools.web.fetch.maxChars", web_fetch.max_chars as u64, 200, 1_000_000, issues);
    check_range("tools.web.fetch.maxBytes", web_fetch.max_bytes, 1024, 100_000_000, issues);
    check_range("tools.web.fetch.timeoutSeconds", web_fetch.timeout_secs, 1, 600, issues);
    check_range("tools.web.fetch.maxRedirects", web_fetch.max_redirects.into(), 0, 20, issues);
    for (i, h) in f.allowed_hosts.iter().enumerate() {
        if h.trim().is_empty() || h.contains(['/', ' ', ':']) && h.parse::<std::net::IpAddr>().is_err() {
            issues.push(issue(
                format!("tools.web.fetch.allowedHosts[{i}]"),
                format!("`{h}` is not a host name or IP address"),
                Some("write a bare host such as \"wiki.lan\" or \"192.168.1.10\" (no scheme, port or path)".into()),
            ));
        }
    }
    if t.allow.is_some() && !t.also_allow.is_empty() {
        issues.push(issue(
            "tools.alsoAllow",
            "tools.allow and tools.alsoAllow are both set",
            Some("use tools.allow to replace the profile's tools, or tools.alsoAllow to add to them, not both".into()),
        ));
    }
    let lists = [
        ("tools.allow", t.allow.as_deref().unwrap_or_default()),
        ("tools.alsoAllow", &t.also_allow[..]),
        ("tools.deny", &t.deny[..]),
    ];
    for (key, list) in lists {
        for (i, entry) in list.iter().enumerate() {
            if entry.starts_with("group:") && super::tool_policy::group(entry).is_none() {
                issues.push(unknown_group(&format!("{key}[{i}]"), entry));
            }
        }
    }
    let allow = super::tool_policy::allow_list(t.profile, t.allow.as_deref(), &t.also_allow).unwrap_or_default();
    let deny = super::tool_policy::expand(t.deny.iter().map(String::as_str)).unwrap_or_else(|_| t.deny.clone());
    ToolSettings {
        web_fetch,
        loop_detection: (loops.enabled != Some(false))
            .then_some(LoopDetection { max_identical_calls: max_identical, max_consecutive_errors: max_errors }),
        deny,
        allow,
        exec: ExecSettings {
            security: t.exec.security.unwrap_or(ExecSecurity::Allowlist),
            safe_bins,
            timeout_secs: timeout,
            max_output_chars: t.exec.max_output_chars.unwrap_or(16_000).max(256),
            sandbox: t.exec.sandbox.unwrap_or(SandboxMode::Auto),
            ask: t.exec.ask.unwrap_or(super::schema::ExecAsk::Off),
            approval_timeout_secs: approval_timeout,
        },
    }
}

fn unknown_group(key: &str, group: &str) -> Issue {
    let known: Vec<&str> = super::tool_policy::GROUPS.iter().map(|(g, _)| *g).collect();
    issue(key, format!("`{group}` is not a tool group"), Some(format!("known groups: {}", known.join(", "))))
}

/// Whether the key goes as `Authorization: Bearer` although the API has its own key header:
/// presets that say so, and OAuth tokens found in `*_OAUTH_TOKEN` variables.
fn uses_bearer(preset: Option<&Preset>, key_source: Option<&str>) -> bool {
    preset.is_some_and(|k| k.bearer) || key_source.is_some_and(|s| s.ends_with("_OAUTH_TOKEN"))
}
