//! The load pipeline: text → tree → `${ENV}` → typed file → resolved [`Config`], with every
//! problem placed at a line and column.

use std::path::Path;

use super::error::{ConfigError, ConfigErrors, closest};
use super::preset::Preset;
use super::resolve::{Config, Issue, Resolver};
use super::schema::ConfigFile;
use super::substitute::{is_single_reference, substitute};
use crate::json5::{self, DeError, Node, Value, line_col};

/// Looks a secret up by id in the encrypted store: `Ok(None)` when no such secret is kept.
pub type StoredSecret<'a> = dyn Fn(&str) -> Result<Option<String>, String> + 'a;

/// What loading needs from the outside world.
pub struct LoadContext<'a> {
    /// How errors name the file (usually its path).
    pub file_label: &'a str,
    /// Relative paths in the file are resolved against this directory.
    pub config_dir: &'a Path,
    /// Where defaults such as the workspace live.
    pub state_dir: &'a Path,
    /// Environment lookup.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Reads a secret file (and editors' credential files named by a preset).
    pub read_file: &'a dyn Fn(&Path) -> Result<String, String>,
    /// Reads a secret kept encrypted in the state database (`{ source: "store", id }`);
    /// `None` where there is no store (the secret is then reported missing).
    pub stored: Option<&'a StoredSecret<'a>>,
    /// The providers known by name (`clawline_providers::catalog::PRESETS`).
    pub presets: &'a [Preset],
}

/// A loaded config and the problems that do not stop it from running.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<ConfigError>,
}

/// OpenClaw top-level sections clawline does not implement yet, for friendlier unknown-key hints.
const OPENCLAW_SECTIONS: &[&str] = &[
    "accessGroups",
    "acp",
    "approvals",
    "attachments",
    "auth",
    "broadcast",
    "browser",
    "cloudWorkers",
    "commands",
    "cron",
    "desktop",
    "discovery",
    "env",
    "hooks",
    "mcp",
    "memory",
    "messages",
    "nodeHost",
    "plugins",
    "proxy",
    "secrets",
    "security",
    "skills",
    "surfaces",
    "talk",
    "telemetry",
    "transcripts",
    "tts",
    "ui",
    "update",
    "wizard",
    "worktreeAcceleration",
    "worktreeRoot",
];

/// Loads `text` as a clawline config.
pub fn load(text: &str, ctx: &LoadContext<'_>) -> Result<Loaded, ConfigErrors> {
    let at = |offset: usize, path: &str, message: String, hint: Option<String>| {
        let lc = line_col(text, offset);
        ConfigError {
            file: ctx.file_label.to_string(),
            line: lc.line,
            column: lc.column,
            path: path.to_string(),
            message,
            hint,
        }
    };

    let raw = json5::parse(text).map_err(|e| {
        at(
            e.offset,
            "",
            e.message,
            Some("the file is JSON5: comments, trailing commas and unquoted keys are fine; strings need quotes".into()),
        )
    })?;
    if !matches!(raw.value, Value::Object(_)) {
        return Err(at(
            raw.span.start,
            "",
            format!("the top level must be an object, found {}", raw.type_name()),
            None,
        )
        .into());
    }

    let mut tree = raw.clone();
    let mut missing = Vec::new();
    substitute(&mut tree, "", ctx.env, &mut missing);
    if !missing.is_empty() {
        return Err(ConfigErrors(
            missing
                .into_iter()
                .map(|m| {
                    at(
                        m.offset,
                        &m.path,
                        format!("environment variable {} is not set", m.var),
                        Some(format!("export {}=… or replace the reference; write $${{ for a literal ${{", m.var)),
                    )
                })
                .collect(),
        ));
    }

    let file: ConfigFile = json5::from_node(&tree).map_err(|e| de_error(text, ctx, &e))?;

    let resolver = Resolver {
        config_dir: ctx.config_dir,
        state_dir: ctx.state_dir,
        env: ctx.env,
        read_file: ctx.read_file,
        stored: ctx.stored,
        presets: ctx.presets,
    };
    let warnings = literal_secret_warnings(&raw, &file, text, ctx);
    match resolver.resolve(file) {
        Ok(config) => Ok(Loaded { config, warnings }),
        Err(issues) => Err(ConfigErrors(issues.into_iter().map(|i| place(&tree, text, ctx, i)).collect())),
    }
}

/// Paths (as segments: provider ids may contain dots) of the secret-bearing keys in `file`.
pub fn secret_paths(file: &ConfigFile) -> Vec<Vec<String>> {
    let s = |p: &[&str]| p.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut out = vec![s(&["gateway", "auth", "token"]), s(&["gateway", "auth", "password"]), s(&["hooks", "token"])];
    out.extend(file.models.providers.keys().map(|id| s(&["models", "providers", id, "apiKey"])));
    // Channel credentials, at the channel level and in every account.
    let mut channel = |name: &str, keys: &[&str], accounts: Vec<&String>| {
        for k in keys {
            let key: Vec<&str> = k.split('.').collect();
            out.push(s(&[&["channels", name][..], &key].concat()));
            for id in &accounts {
                out.push(s(&[&["channels", name, "accounts", id.as_str()][..], &key].concat()));
            }
        }
    };
    let c = &file.channels;
    if let Some(f) = &c.telegram {
        channel("telegram", &["botToken", "webhookSecret"], f.accounts.iter().flat_map(|m| m.keys()).collect());
    }
    if let Some(f) = &c.discord {
        channel("discord", &["token"], f.accounts.iter().flat_map(|m| m.keys()).collect());
    }
    if let Some(f) = &c.slack {
        channel(
            "slack",
            &["botToken", "appToken", "signingSecret"],
            f.accounts.iter().flat_map(|m| m.keys()).collect(),
        );
    }
    if let Some(f) = &c.matrix {
        channel("matrix", &["accessToken", "password"], f.accounts.iter().flat_map(|m| m.keys()).collect());
    }
    if let Some(f) = &c.irc {
        channel(
            "irc",
            &["password", "sasl.password", "nickserv.password"],
            f.accounts.iter().flat_map(|m| m.keys()).collect(),
        );
    }
    out
}

fn place(tree: &Node, text: &str, ctx: &LoadContext<'_>, i: Issue) -> ConfigError {
    // Point at the value when the path exists, else at the nearest existing parent.
    let mut path = i.path.as_str();
    let offset = loop {
        if let Some(node) = tree.at_path(path) {
            break Some(node.span.start);
        }
        match path.rfind(['.', '[']) {
            Some(cut) => path = &path[..cut],
            None => break None,
        }
    };
    let (line, column) = offset.map_or((0, 0), |o| {
        let lc = line_col(text, o);
        (lc.line, lc.column)
    });
    ConfigError { file: ctx.file_label.to_string(), line, column, path: i.path, message: i.message, hint: i.hint }
}

fn de_error(text: &str, ctx: &LoadContext<'_>, e: &DeError) -> ConfigError {
    let (line, column) = e.span.map_or((0, 0), |s| {
        let lc = line_col(text, s.start);
        (lc.line, lc.column)
    });
    let mut message = e.message.clone();
    let mut hint = None;
    if let Some(rest) = e.message.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or_default().to_string();
        message = format!("unknown key `{field}`");
        let expected: Vec<&str> = e.message.split('`').skip(3).step_by(2).collect();
        hint = if e.path == field && OPENCLAW_SECTIONS.contains(&field.as_str()) {
            Some(format!("OpenClaw's `{field}` section is not supported by clawline yet; remove it"))
        } else if let Some(near) = closest(&field, expected.iter().copied()) {
            Some(format!("did you mean `{near}`?"))
        } else if expected.is_empty() {
            Some("remove it".into())
        } else {
            Some(format!("valid keys here: {}", expected.join(", ")))
        };
    } else if e.message.starts_with("invalid type") {
        message = e.message.replacen("invalid type: ", "wrong type: found ", 1);
    }
    ConfigError { file: ctx.file_label.to_string(), line, column, path: e.path.clone(), message, hint }
}

fn literal_secret_warnings(raw: &Node, file: &ConfigFile, text: &str, ctx: &LoadContext<'_>) -> Vec<ConfigError> {
    secret_paths(file)
        .into_iter()
        .filter_map(|segments| {
            let node = raw.at_segments(&segments)?;
            let path = segments.join(".");
            let Value::String(s) = &node.value else { return None };
            if is_single_reference(s) {
                return None;
            }
            let lc = line_col(text, node.span.start);
            Some(ConfigError {
                file: ctx.file_label.to_string(),
                line: lc.line,
                column: lc.column,
                path,
                message: "a secret is written in the file in plain text".into(),
                hint: Some(
                    "reference it instead: \"${ENV_VAR}\", { source: \"file\", id: \"path\" }, or { source: \"store\", id: \"name\" } after `clawline secrets set name` (the gateway token can be left out: clawline generates one and keeps it encrypted)"
                        .into(),
                ),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::preset::{Discovery, Login, PresetModel};
    use crate::config::{ApiKind, AuthMode};
    use std::collections::HashMap;
    use std::path::PathBuf;

    /// Two presets shaped like the real ones (the real catalog lives in clawline-providers and is
    /// tested there).
    const TEST_PRESETS: &[Preset] = &[
        Preset {
            id: "anthropic",
            name: "Anthropic",
            api: ApiKind::AnthropicMessages,
            base_url: "https://api.anthropic.com",
            alt_base_urls: &[],
            key_vars: &["ANTHROPIC_API_KEY"],
            base_url_var: Some("ANTHROPIC_BASE_URL"),
            login: Login::Key,
            discovery: Discovery::None,
            default_model: "claude-sonnet-4-5",
            models: &[PresetModel {
                id: "claude-sonnet-4-5",
                name: "Claude Sonnet 4.5",
                context_window: 200_000,
                max_tokens: 64_000,
                image: true,
                reasoning: true,
                cost: [3.0, 15.0, 0.3, 3.75],
            }],
            headers: &[],
            bearer: false,
            token_exchange_url: None,
            token_files: &[],
            token_file_host: "",
        },
        Preset {
            id: "openai",
            name: "OpenAI",
            api: ApiKind::OpenAiResponses,
            base_url: "https://api.openai.com/v1",
            alt_base_urls: &[],
            key_vars: &["OPENAI_API_KEY"],
            base_url_var: Some("OPENAI_BASE_URL"),
            login: Login::Key,
            discovery: Discovery::OpenAiModels,
            default_model: "gpt-5-mini",
            models: &[PresetModel {
                id: "gpt-5-mini",
                name: "GPT-5 mini",
                context_window: 400_000,
                max_tokens: 128_000,
                image: true,
                reasoning: true,
                cost: [0.25, 2.0, 0.025, 0.0],
            }],
            headers: &[],
            bearer: false,
            token_exchange_url: None,
            token_files: &[],
            token_file_host: "",
        },
    ];

    fn load_with(text: &str, env: &[(&str, &str)]) -> Result<Loaded, ConfigErrors> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let env_fn = move |k: &str| env.get(k).cloned();
        let read = |p: &Path| {
            if p == Path::new("/cfg/token.txt") {
                Ok("file-token-0123456789\n".to_string())
            } else if p == Path::new("/home/u/.config/github-copilot/apps.json") {
                Ok(r#"{"github.com:Iv1.b507a08c87ecfe98":{"user":"u","oauth_token":"gho_from_the_editor"}}"#
                    .to_string())
            } else {
                Err("no such file".to_string())
            }
        };
        let ctx = LoadContext {
            file_label: "/cfg/clawline.json",
            config_dir: Path::new("/cfg"),
            state_dir: Path::new("/state"),
            env: &env_fn,
            presets: TEST_PRESETS,
            read_file: &read,
            stored: None,
        };
        load(text, &ctx)
    }

    fn first_error(text: &str, env: &[(&str, &str)]) -> ConfigError {
        load_with(text, env).expect_err("should fail").0.remove(0)
    }

    #[test]
    fn empty_object_is_a_complete_secure_config() {
        let c = load_with("{}", &[]).unwrap().config;
        assert_eq!(c.gateway.port, 18789);
        assert_eq!(c.gateway.bind_host.to_string(), "127.0.0.1");
        assert_eq!(c.gateway.auth_mode, AuthMode::Token);
        assert!(c.gateway.token.is_none());
        assert_eq!(c.default_agent, "main");
        assert_eq!(c.default_agent().workspace, PathBuf::from("/state/workspace"));
        assert!(c.default_agent().model.is_none());
        assert!(c.providers.is_empty());
        assert_eq!(c.tools.exec.security, crate::config::schema::ExecSecurity::Allowlist);
        assert_eq!(c.tools.allow, None, "no profile: every tool");
        let c =
            load_with("{ tools: { profile: 'messaging', alsoAllow: ['group:memory'], deny: ['group:memory'] } }", &[])
                .unwrap()
                .config;
        assert!(c.tools.allow.as_ref().unwrap().contains(&"message".to_string()));
        assert_eq!(c.tools.deny, vec!["memory_search".to_string(), "memory_get".to_string()]);
    }

    #[test]
    fn environment_keys_add_providers() {
        let c = load_with("{}", &[("OPENAI_API_KEY", "sk-o"), ("ANTHROPIC_API_KEY", "sk-a")]).unwrap().config;
        assert_eq!(c.providers["openai"].api, ApiKind::OpenAiResponses);
        assert_eq!(c.providers["openai"].base_url, "https://api.openai.com/v1");
        assert_eq!(c.providers["anthropic"].api_key.as_ref().unwrap().expose(), "sk-a");
        assert_eq!(c.default_agent().model.as_ref().unwrap().to_string(), "anthropic/claude-sonnet-4-5");
        // Catalog prices come with the preset's models.
        let sonnet = c.providers["anthropic"].model("claude-sonnet-4-5").unwrap();
        assert_eq!((sonnet.cost.input, sonnet.cost.output, sonnet.context_window), (3.0, 15.0, Some(200_000)));

        let c = load_with("{ models: { mode: 'replace' } }", &[("OPENAI_API_KEY", "sk-o")]).unwrap().config;
        assert!(c.providers.is_empty());
    }

    #[test]
    fn configured_provider_with_env_substitution_and_fallback_key() {
        let text = r#"{
          models: { providers: {
            local: { baseUrl: "http://127.0.0.1:${PORT}/v1/", models: [{ id: "tiny" }] },
            claude: { baseUrl: "https://api.anthropic.com", apiKey: { source: "env", id: "MY_KEY" } },
          } },
          agents: { defaults: { model: "local/tiny" } },
        }"#;
        let c = load_with(text, &[("PORT", "9000"), ("MY_KEY", "k"), ("LOCAL_API_KEY", "lk")]).unwrap().config;
        let local = &c.providers["local"];
        assert_eq!(local.base_url, "http://127.0.0.1:9000/v1");
        assert_eq!(local.api, ApiKind::OpenAiCompletions);
        assert_eq!(local.api_key.as_ref().unwrap().expose(), "lk");
        assert_eq!(local.api_key_source.as_deref(), Some("env LOCAL_API_KEY"));
        assert_eq!(c.providers["claude"].api, ApiKind::AnthropicMessages);
        assert_eq!(c.default_agent().model.as_ref().unwrap().to_string(), "local/tiny");
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let e = first_error("{\n  gateway: {\n    port: 18789\n    bind: 'lan',\n  },\n}", &[]);
        assert_eq!((e.line, e.column), (4, 5));
        assert!(e.message.contains("expected `,`"), "{e}");
        assert!(e.to_string().starts_with("/cfg/clawline.json:4:5: "), "{e}");
    }

    #[test]
    fn unknown_key_has_path_position_and_suggestion() {
        let e = first_error("{\n  gateway: {\n    prot: 1,\n  },\n}", &[]);
        assert_eq!(e.path, "gateway.prot");
        assert_eq!((e.line, e.column), (3, 5));
        assert_eq!(e.message, "unknown key `prot`");
        assert_eq!(e.hint.as_deref(), Some("did you mean `port`?"));

        let e = first_error("{ cron: {} }", &[]);
        assert!(e.hint.unwrap().contains("not supported by clawline yet"));
    }

    #[test]
    fn wrong_type_is_reported_at_the_value() {
        let e = first_error("{ gateway: { port: 'high' } }", &[]);
        assert_eq!(e.path, "gateway.port");
        assert_eq!((e.line, e.column), (1, 20));
        assert!(e.message.starts_with("wrong type: found string \"high\""), "{e}");
    }

    #[test]
    fn missing_env_var_is_reported() {
        let e = first_error("{ gateway: { auth: { token: '${NOPE}' } } }", &[]);
        assert_eq!(e.path, "gateway.auth.token");
        assert_eq!(e.message, "environment variable NOPE is not set");
        assert_eq!((e.line, e.column), (1, 29));
    }

    #[test]
    fn memory_search_defaults_providers_and_errors() {
        use crate::config::memory::Embedding;
        // Nothing set up: text-only, and the reason says what to do.
        let m = load_with("{}", &[]).unwrap().config.memory;
        assert!(m.enabled);
        assert_eq!((m.max_results, m.min_score, m.vector_weight, m.text_weight), (6, 0.35, 0.7, 0.3));
        assert_eq!((m.candidate_multiplier, m.mmr_lambda, m.half_life_days), (4, Some(0.7), Some(30.0)));
        assert!(m.embedding.unwrap_err().contains("OPENAI_API_KEY"));
        assert_eq!((m.watch_debounce, m.sync_on_search), (Some(std::time::Duration::from_millis(1500)), true));
        let m = load_with("{ memory: { search: { sync: { watchDebounceMs: 300, onSearch: false } } } }", &[])
            .unwrap()
            .config
            .memory;
        assert_eq!((m.watch_debounce, m.sync_on_search), (Some(std::time::Duration::from_millis(300)), false));
        let m = load_with("{ memory: { search: { sync: { watch: false, intervalMinutes: 5 } } } }", &[])
            .unwrap()
            .config
            .memory;
        assert_eq!(m.watch_debounce, None);

        // Transcripts: off by default; `sources` or OpenClaw's `experimental.sessionMemory`.
        assert!(!m.index_sessions);
        assert_eq!((m.session_delta_bytes, m.session_delta_messages), (100_000, 50));
        let m = load_with(
            "{ memory: { search: { experimental: { sessionMemory: true }, sync: { sessions: { deltaBytes: 5000, deltaMessages: 3 } } } } }",
            &[],
        )
        .unwrap()
        .config
        .memory;
        assert!(m.index_sessions);
        assert_eq!((m.session_delta_bytes, m.session_delta_messages), (5000, 3));
        assert!(
            load_with(r#"{ memory: { search: { sources: ["memory", "sessions"] } } }"#, &[])
                .unwrap()
                .config
                .memory
                .index_sessions
        );

        // OpenClaw's names: outputDimensionality, local.modelPath.
        let m = load_with(
            "{ memory: { search: { provider: \"openai\", outputDimensionality: 256, inputType: \"x\" } } }",
            &[("OPENAI_API_KEY", "sk-test-key")],
        )
        .unwrap()
        .config
        .memory;
        let Ok(Embedding::Remote(t)) = m.embedding else { panic!() };
        assert_eq!(t.dimensions, Some(256));
        assert_eq!(t.batch, None, "the batch API is off unless enabled");
        let m = load_with(
            "{ memory: { search: { provider: \"openai\", remote: { batch: { enabled: true, timeoutMinutes: 5, wait: true } } } } }",
            &[("OPENAI_API_KEY", "sk-test-key")],
        )
        .unwrap()
        .config
        .memory;
        let Ok(Embedding::Remote(t)) = m.embedding else { panic!() };
        let b = t.batch.unwrap();
        assert_eq!((b.min_chunks, b.poll_interval.as_millis(), b.timeout.as_secs()), (200, 5000, 300));
        let m = load_with(
            "{ memory: { search: { provider: \"local\", local: { modelPath: \"/nowhere/minilm\" } } } }",
            &[],
        )
        .unwrap()
        .config
        .memory;
        assert!(m.embedding.unwrap_err().contains("/nowhere/minilm"));

        // hf: models go to the state directory; the hub and token come from the environment.
        let m = load_with(
            "{ memory: { search: { provider: \"local\", model: \"hf:sentence-transformers/all-MiniLM-L6-v2@v1.0\" } } }",
            &[("HF_ENDPOINT", "http://127.0.0.1:9"), ("HF_TOKEN", "hf_abc")],
        )
        .unwrap()
        .config
        .memory;
        let Ok(Embedding::Local { model, download: Some(hf) }) = m.embedding else { panic!() };
        assert!(model.ends_with("models/hf/sentence-transformers--all-MiniLM-L6-v2/v1.0"), "{}", model.display());
        assert_eq!(
            (hf.repo.as_str(), hf.revision.as_str(), hf.endpoint.as_str()),
            ("sentence-transformers/all-MiniLM-L6-v2", "v1.0", "http://127.0.0.1:9")
        );
        assert_eq!(hf.token.map(|t| t.expose().to_string()).as_deref(), Some("hf_abc"));
        for bad in ["hf:just-a-name", "hf:a/b/c.gguf", "hf:../x", "hf:a/b@../../etc"] {
            let m = load_with(&format!("{{ memory: {{ search: {{ provider: \"local\", model: \"{bad}\" }} }} }}"), &[])
                .unwrap()
                .config
                .memory;
            assert!(m.embedding.unwrap_err().contains("hf:"), "{bad}");
        }

        // auto: the first provider with a key.
        let m = load_with("{}", &[("VOYAGE_API_KEY", "pa-voyage-key")]).unwrap().config.memory;
        let Ok(Embedding::Remote(t)) = m.embedding else { panic!() };
        assert_eq!((t.provider.as_str(), t.model.as_str()), ("voyage", "voyage-3.5"));
        assert_eq!(t.base_url, "https://api.voyageai.com/v1");

        // A named provider without its key is text-only with the reason, not an error.
        let m = load_with("{ memory: { search: { provider: 'gemini' } } }", &[]).unwrap().config.memory;
        assert!(m.embedding.unwrap_err().contains("GEMINI_API_KEY"));
        let m = load_with(
            "{ memory: { search: { provider: 'openai-compatible', model: 'bge', remote: { baseUrl: 'http://127.0.0.1:8080/v1' } } } }",
            &[],
        )
        .unwrap()
        .config
        .memory;
        let Ok(Embedding::Remote(t)) = m.embedding else { panic!() };
        assert_eq!(t.base_url, "http://127.0.0.1:8080/v1");
        let m =
            load_with("{ memory: { search: { provider: 'local', fallback: 'ollama' } } }", &[]).unwrap().config.memory;
        let Ok(Embedding::Remote(t)) = m.embedding else { panic!() };
        assert_eq!(t.provider, "ollama", "the fallback is used when the first cannot be");
        let m = load_with("{ memory: { search: { provider: 'local', model: '/nowhere/minilm' } } }", &[])
            .unwrap()
            .config
            .memory;
        assert!(m.embedding.unwrap_err().contains("is not a model folder"));
        let m = load_with("{ memory: { search: { model: 'minilm' } } }", &[]).unwrap().config.memory;
        assert!(m.embedding.unwrap_err().contains("no embedding provider"), "auto without a model folder or key");

        let e = first_error("{ memory: { search: { provider: 'cohere' } } }", &[]);
        assert_eq!(e.path, "memory.search.provider");
        assert!(e.hint.unwrap().contains("openai-compatible"));
        let e = first_error("{ memory: { search: { query: { minScore: 2 } } } }", &[]);
        assert_eq!((e.path.as_str(), e.line), ("memory.search.query.minScore", 1));
        let e = first_error("{ memory: { search: { sources: ['memory', 'mail'] } } }", &[]);
        assert_eq!(e.path, "memory.search.sources[1]");
        let e = first_error("{ memory: { search: { store: { fts: { tokenizer: 'porter' } } } } }", &[]);
        assert!(e.hint.unwrap().contains("trigram"));
    }

    #[test]
    fn semantic_errors_are_placed_and_hinted() {
        let e = first_error("{ agents: { defaults: { model: 'nowhere/model' } } }", &[]);
        assert_eq!(e.path, "agents.defaults.model");
        assert_eq!(e.message, "unknown provider `nowhere`");
        assert!(e.hint.unwrap().contains("NOWHERE_API_KEY"));
        assert_eq!((e.line, e.column), (1, 32));

        let e = first_error("{ models: { providers: { x: { baseUrl: 'http://h', api: 'github-copilot' } } } }", &[]);
        assert_eq!(e.path, "models.providers.x.api");
        assert!(e.message.contains("not supported by clawline yet"), "{e}");

        let e = first_error("{ gateway: { auth: { mode: 'none' } } }", &[]);
        assert!(e.message.contains("always requires authentication"));

        let e = first_error("{ gateway: { auth: { token: 'short' } } }", &[]);
        assert!(e.message.contains("shorter than 16"));

        let e = first_error("{ models: { providers: { x: { api: 'openai-completions' } } } }", &[]);
        assert_eq!(e.path, "models.providers.x");
        assert!(e.message.contains("baseUrl is required"));

        let e = first_error("{ tools: { exec: { safeBins: ['bin/sh'] } } }", &[]);
        assert_eq!(e.path, "tools.exec.safeBins[0]");

        let e = first_error("{ tools: { deny: ['exec', 'group:nope'] } }", &[]);
        assert_eq!(e.path, "tools.deny[1]");
        assert!(
            e.message.contains("`group:nope` is not a tool group")
                && e.hint.as_deref().unwrap_or("").contains("group:fs"),
            "{e}"
        );
        let e = first_error("{ tools: { allow: ['read'], alsoAllow: ['exec'] } }", &[]);
        assert_eq!(e.path, "tools.alsoAllow");
    }

    #[test]
    fn secret_refs_resolve_and_literals_warn() {
        let l = load_with("{ gateway: { auth: { token: { source: 'file', id: 'token.txt' } } } }", &[]).unwrap();
        assert_eq!(l.config.gateway.token.unwrap().expose(), "file-token-0123456789");
        assert!(l.warnings.is_empty());

        let l = load_with("{ gateway: { auth: { token: '${T}' } } }", &[("T", "env-token-0123456789")]).unwrap();
        assert!(l.warnings.is_empty());

        let l = load_with("{ gateway: { auth: { token: 'literal-token-0123456789' } } }", &[]).unwrap();
        assert_eq!(l.warnings.len(), 1);
        assert_eq!(l.warnings[0].path, "gateway.auth.token");
        assert!(!format!("{:?}", l.config).contains("literal-token"), "Debug output must not show secrets");

        let e = first_error("{ gateway: { auth: { token: { source: 'file', id: 'missing.txt' } } } }", &[]);
        assert!(e.message.contains("cannot read secret file /cfg/missing.txt"), "{e}");

        // Channel credentials written literally are warned about too, in accounts as well.
        let l = load_with(
            "{ channels: { slack: { botToken: 'xoxb-literal', appToken: '${A}', accounts: { work: { botToken: 'xoxb-2' } } },
                           irc: { host: 'h', sasl: { password: 'literal-pass' } } } }",
            &[("A", "xapp-from-env")],
        )
        .unwrap();
        let paths: Vec<&str> = l.warnings.iter().map(|w| w.path.as_str()).collect();
        assert!(paths.contains(&"channels.slack.botToken"), "{paths:?}");
        assert!(paths.contains(&"channels.slack.accounts.work.botToken"), "{paths:?}");
        assert!(paths.contains(&"channels.irc.sasl.password"), "{paths:?}");
        assert!(!paths.contains(&"channels.slack.appToken"), "{paths:?}");
    }

    #[test]
    fn agents_get_their_own_workspaces_and_models() {
        let text = r#"{
          models: { providers: { p: { baseUrl: 'http://h/v1', models: [{ id: 'a' }, { id: 'b' }] } } },
          agents: {
            defaults: { model: 'p/a', maxTurns: 5 },
            entries: { ops: { model: 'p/b', default: true }, main: {} },
          },
        }"#;
        let c = load_with(text, &[]).unwrap().config;
        assert_eq!(c.default_agent, "ops");
        assert_eq!(c.agents["ops"].model.as_ref().unwrap().model, "b");
        assert_eq!(c.agents["main"].model.as_ref().unwrap().model, "a");
        assert_eq!(c.agents["ops"].workspace, PathBuf::from("/state/workspace"));
        assert_eq!(c.agents["main"].workspace, PathBuf::from("/state/workspace-main"));
        assert_eq!(c.agents["main"].max_turns, 5);
    }

    #[test]
    fn otel_export_resolves_urls_per_signal_and_refuses_content_capture() {
        let c = load_with("{ diagnostics: { otel: { enabled: true, endpoint: 'http://127.0.0.1:4318/' } } }", &[])
            .unwrap()
            .config;
        let o = c.otel.expect("on");
        assert_eq!(o.traces_url.as_deref(), Some("http://127.0.0.1:4318/v1/traces"));
        assert_eq!(o.metrics_url.as_deref(), Some("http://127.0.0.1:4318/v1/metrics"));
        assert_eq!((o.service_name.as_str(), o.sample_rate, o.flush_interval_ms), ("clawline", 1.0, 5000));
        let c = load_with(
            "{ diagnostics: { otel: { enabled: true, metrics: false, tracesEndpoint: 'https://c.example/t' } } }",
            &[],
        )
        .unwrap()
        .config;
        let o = c.otel.expect("on");
        assert_eq!((o.traces_url.as_deref(), o.metrics_url), (Some("https://c.example/t"), None));
        assert!(load_with("{ diagnostics: { otel: { endpoint: 'http://x' } } }", &[]).unwrap().config.otel.is_none());
        let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318")];
        let o = load_with("{ diagnostics: { otel: { enabled: true } } }", &env).unwrap().config.otel.expect("on");
        assert_eq!(o.traces_url.as_deref(), Some("http://env:4318/v1/traces"));
        assert_eq!(first_error("{ diagnostics: { otel: { enabled: true } } }", &[]).path, "diagnostics.otel.endpoint");
        let e = first_error("{ diagnostics: { otel: { enabled: true, endpoint: 'x', captureContent: true } } }", &[]);
        assert_eq!(e.path, "diagnostics.otel.captureContent");
        let e = first_error("{ diagnostics: { otel: { sampleRate: 2 } } }", &[]);
        assert_eq!(e.path, "diagnostics.otel.sampleRate");
    }

    #[test]
    fn otel_logs_are_opt_in_and_go_to_otlp_stdout_or_both() {
        let on = |extra: &str, env: &[(&str, &str)]| {
            load_with(&format!("{{ diagnostics: {{ otel: {{ enabled: true, {extra} }} }} }}"), env)
                .unwrap()
                .config
                .otel
                .expect("on")
        };
        let o = on("endpoint: 'http://c:4318'", &[]);
        assert_eq!((o.logs_url, o.logs_stdout), (None, false));
        let o = on("endpoint: 'http://c:4318', logs: true", &[]);
        assert_eq!((o.logs_url.as_deref(), o.logs_stdout), (Some("http://c:4318/v1/logs"), false));
        let o = on("endpoint: 'http://c:4318', logs: true, logsExporter: 'both', logsEndpoint: 'http://l/x'", &[]);
        assert_eq!((o.logs_url.as_deref(), o.logs_stdout), (Some("http://l/x"), true));
        // stdout alone needs no collector.
        let o = on("traces: false, metrics: false, logs: true, logsExporter: 'stdout'", &[]);
        assert_eq!((o.traces_url, o.logs_url, o.logs_stdout), (None, None, true));
        let o = on("traces: false, metrics: false, logs: true", &[("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://e/l")]);
        assert_eq!(o.logs_url.as_deref(), Some("http://e/l"));
        let e = first_error(
            "{ diagnostics: { otel: { enabled: true, endpoint: 'http://c', logsExporter: 'file' } } }",
            &[],
        );
        assert_eq!(e.path, "diagnostics.otel.logsExporter");
        let e =
            first_error("{ diagnostics: { otel: { enabled: true, traces: false, metrics: false, logs: true } } }", &[]);
        assert_eq!(e.path, "diagnostics.otel.endpoint");
    }

    #[test]
    fn budgets_and_loop_detection_are_on_by_default_and_overridable_per_agent() {
        let text = r#"{
          models: { providers: { p: { baseUrl: 'http://h/v1', models: [{ id: 'a' }] } } },
          agents: {
            defaults: { model: 'p/a', budget: { dailyCostUsd: 3 } },
            entries: { ops: { budget: { dailyTokens: 0 } }, main: {} },
          },
        }"#;
        let c = load_with(text, &[]).unwrap().config;
        assert_eq!(c.agents["main"].budget.daily_tokens, Some(crate::config::DEFAULT_DAILY_TOKENS));
        assert_eq!(c.agents["main"].budget.daily_cost_usd, Some(3.0));
        assert_eq!(c.agents["ops"].budget.daily_tokens, None, "0 is no limit");
        assert_eq!(c.agents["ops"].budget.daily_cost_usd, Some(3.0));
        let loops = c.tools.loop_detection.expect("on by default");
        assert_eq!((loops.max_identical_calls, loops.max_consecutive_errors), (3, 8));

        let e = first_error("{ agents: { entries: { main: { budget: { dailyCostUsd: -1 } } } } }", &[]);
        assert_eq!(e.path, "agents.entries.main.budget.dailyCostUsd");
        let e = first_error("{ tools: { loopDetection: { maxIdenticalCalls: 0 } } }", &[]);
        assert_eq!(e.path, "tools.loopDetection.maxIdenticalCalls");
        let e = first_error("{ tools: { loopDetection: { maxRepeats: 2 } } }", &[]);
        assert!(e.to_string().contains("maxRepeats"), "{e}");
        assert!(e.line > 0, "{e}");
    }
}
