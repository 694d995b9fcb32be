//! Finding the state directory and config, first-start initialization, and the pieces every
//! command assembles from them (config, store, master key, gateway token).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use clawline_core::config::{Config, ConfigErrors, LoadContext, Loaded, load, template};
use clawline_core::secret::SecretString;
use clawline_store::keyring::SecretService;
use clawline_store::{
    KeySource, KeyringChoice, MasterKey, StatePaths, Store, ensure_private_dir, random_hex, write_private_file,
};

use crate::cli::Cli;

/// Name of the generated gateway token in the secret store.
pub const TOKEN_SECRET: &str = "gateway.token";
/// Where `clawline secrets set <ID>` keeps `<ID>` (apart from clawline's own secrets).
pub const STORED_SECRET_PREFIX: &str = "store/";

/// Where this invocation keeps its state.
#[derive(Debug, Clone)]
pub struct Paths {
    pub state: StatePaths,
    pub config_file: PathBuf,
}

fn env_path(names: &[&str]) -> Option<PathBuf> {
    names.iter().filter_map(std::env::var_os).find(|v| !v.is_empty()).map(PathBuf::from)
}

/// Flag, then `CLAWLINE_*`, then the `OPENCLAW_*` alias, then the default.
pub fn resolve_paths(cli: &Cli) -> Result<Paths> {
    let root = match cli.state_dir.clone().or_else(|| env_path(&["CLAWLINE_STATE_DIR", "OPENCLAW_STATE_DIR"])) {
        Some(p) => p,
        None => {
            let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).ok_or_else(|| {
                anyhow!("HOME is not set, so the default state directory ~/.clawline is unknown; pass --state-dir or set CLAWLINE_STATE_DIR")
            })?;
            PathBuf::from(home).join(".clawline")
        }
    };
    let root = if root.is_absolute() { root } else { std::env::current_dir()?.join(root) };
    let state = StatePaths::new(root);
    let config_file = cli
        .config
        .clone()
        .or_else(|| env_path(&["CLAWLINE_CONFIG_PATH", "OPENCLAW_CONFIG_PATH"]))
        .unwrap_or_else(|| state.default_config_file());
    Ok(Paths { state, config_file })
}

/// Creates the state directory (0700) and a commented config file (0600) when missing.
/// Returns true when the config file was created now.
pub fn init_state(paths: &Paths) -> Result<bool> {
    ensure_private_dir(&paths.state.root).with_context(|| format!("cannot create {}", paths.state.root.display()))?;
    if paths.config_file.exists() {
        return Ok(false);
    }
    if let Some(dir) = paths.config_file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    write_private(&paths.config_file, template::DEFAULT_CONFIG)?;
    Ok(true)
}

/// Writes a file readable only by its owner, atomically (temp file + rename).
pub fn write_private(path: &Path, text: &str) -> Result<()> {
    write_private_file(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn read_secret_file(path: &Path) -> std::result::Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

/// Loads `text` as the config at `paths.config_file`.
pub fn load_text(paths: &Paths, text: &str) -> std::result::Result<Loaded, ConfigErrors> {
    let label = paths.config_file.display().to_string();
    let dir = paths.config_file.parent().map(Path::to_path_buf).unwrap_or_else(|| paths.state.root.clone());
    // Read only when the config names a stored secret: the master key and the database are
    // not touched otherwise.
    let stored = |id: &str| -> std::result::Result<Option<String>, String> {
        let key = master_key(paths).map_err(|e| format!("{e:#}"))?;
        clawline_store::read_secret_at(&paths.state.database(), &format!("{STORED_SECRET_PREFIX}{id}"), &key)
            .map(|v| v.map(|s| s.expose().to_string()))
            .map_err(|e| e.to_string())
    };
    let ctx = LoadContext {
        file_label: &label,
        config_dir: &dir,
        state_dir: &paths.state.root,
        env: &env,
        read_file: &read_secret_file,
        stored: Some(&stored),
        presets: clawline_providers::catalog::PRESETS,
    };
    load(text, &ctx)
}

/// The config file's text; the built-in template when the file does not exist yet.
pub fn config_text(paths: &Paths) -> Result<(String, bool)> {
    match std::fs::read_to_string(&paths.config_file) {
        Ok(t) => Ok((t, true)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((template::DEFAULT_CONFIG.to_string(), false)),
        Err(e) => Err(anyhow!("cannot read {}: {e}", paths.config_file.display())),
    }
}

/// Loads the config, printing every problem and failing with a short summary.
pub fn load_config(paths: &Paths) -> Result<Loaded> {
    let (text, _) = config_text(paths)?;
    load_text(paths, &text).map_err(|errors| {
        anyhow!(
            "{errors}\n\n{} problem(s) in the config; fix them and try again (`clawline config validate` checks without starting)",
            errors.0.len()
        )
    })
}

pub fn open_store(paths: &Paths) -> Result<Store> {
    let path = paths.state.database();
    Store::open(&path).with_context(|| format!("cannot open the state database at {}", path.display()))
}

/// The master key: `CLAWLINE_MASTER_KEY` (hex), else the key file, else the OS keyring; a new
/// state directory's key goes to the keyring when one is reachable (`CLAWLINE_KEYRING`).
pub fn master_key(paths: &Paths) -> Result<MasterKey> {
    let (key, source) = master_key_with_source(paths)?;
    match source {
        KeySource::File { path, created: true } => {
            tracing::info!(path = %path.display(), "created the master key for secrets at rest")
        }
        KeySource::Keyring { created: true } => {
            tracing::info!("created the master key for secrets at rest in the OS keyring (Secret Service)")
        }
        _ => {}
    }
    Ok(key)
}

/// The master key and where it came from.
pub fn master_key_with_source(paths: &Paths) -> Result<(MasterKey, KeySource)> {
    let choice = KeyringChoice::parse(env("CLAWLINE_KEYRING").as_deref())?;
    let keyring = if choice == KeyringChoice::Off { None } else { SecretService::detect() };
    let env_key = env("CLAWLINE_MASTER_KEY");
    Ok(clawline_store::resolve_master_key(&paths.state, env_key.as_deref(), choice, keyring.as_ref())?)
}

/// The token clients must present: the configured one, else the stored one. With `create`,
/// a missing stored token is generated and saved; the bool says whether that happened.
pub async fn gateway_token(
    config: &Config,
    store: &Store,
    key: &MasterKey,
    create: bool,
) -> Result<Option<(SecretString, bool)>> {
    if let Some(t) = &config.gateway.token {
        return Ok(Some((t.clone(), false)));
    }
    if let Some(t) = store.get_secret(TOKEN_SECRET, key).await? {
        return Ok(Some((t, false)));
    }
    if !create {
        return Ok(None);
    }
    let token = SecretString::new(random_hex(24));
    store.put_secret(TOKEN_SECRET, &token, key).await?;
    Ok(Some((token, true)))
}

/// Every secret value the logs must never show.
pub fn secrets_of(config: &Config) -> Vec<String> {
    let mut out: Vec<String> =
        config.providers.values().filter_map(|p| p.api_key.as_ref()).map(|k| k.expose().to_string()).collect();
    out.extend(config.providers.values().flat_map(|p| p.extra_keys.iter().map(|(_, k)| k.expose().to_string())));
    out.extend(
        config.providers.values().filter_map(|p| p.aws.as_ref()).map(|a| a.secret_access_key.expose().to_string()),
    );
    // Header values often carry credentials too (`Authorization: Bearer …`).
    out.extend(config.providers.values().flat_map(|p| p.headers.values().cloned()));
    out.extend(config.gateway.token.iter().map(|t| t.expose().to_string()));
    out.extend(config.gateway.password.iter().map(|t| t.expose().to_string()));
    out.extend(config.hooks.iter().map(|h| h.token.expose().to_string()));
    out.extend(config.otel.iter().flat_map(|o| o.headers.iter().map(|(_, v)| v.clone())));
    for a in &config.channels.accounts {
        out.extend(a.secrets().iter().map(|s| s.expose().to_string()));
    }
    out
}

/// Shared pieces for commands that run the agent.
pub struct Assembled {
    pub config: Arc<Config>,
    pub store: Store,
    pub key: MasterKey,
}

pub fn assemble(paths: &Paths) -> Result<(Assembled, Vec<clawline_core::config::ConfigError>)> {
    let loaded = load_config(paths)?;
    let store = open_store(paths)?;
    let key = master_key(paths)?;
    Ok((Assembled { config: Arc::new(loaded.config), store, key }, loaded.warnings))
}

/// Loads the stored auth profiles into `runtime`, teaching `redactor` their secrets first.
pub async fn apply_auth_profiles(
    store: &Store,
    key: &MasterKey,
    runtime: &clawline_agent::Runtime,
    redactor: &crate::logging::Redactor,
) -> Result<usize> {
    let profiles = clawline_agent::auth_profiles::load(store, key).await?;
    redactor.add(profiles.iter().filter_map(|p| p.secret.as_ref()).map(|s| s.expose().to_string()));
    redactor.add(profiles.iter().filter_map(|p| p.aws.as_ref()).map(|a| a.secret_access_key.expose().to_string()));
    runtime.set_auth_profiles(&profiles);
    Ok(profiles.len())
}

/// Refreshes OAuth profiles, with each provider's token endpoint (the config's overrides applied).
pub fn oauth_refresher(
    config: &Arc<Config>,
    store: &Store,
    key: MasterKey,
) -> clawline_agent::oauth_refresh::Refresher {
    let config = config.clone();
    clawline_agent::oauth_refresh::Refresher::new(
        store.clone(),
        Arc::new(key),
        Arc::new(|| clawline_providers::build_http_client().unwrap_or_else(|_| reqwest::Client::new())),
        Arc::new(move |provider: &str| {
            let configured = config.file.models.providers.get(provider);
            let overrides = configured.map(|p| p.oauth.clone()).unwrap_or_default();
            let base_url = configured.and_then(|p| p.base_url.as_deref());
            clawline_providers::oauth::providers::sign_in(provider, &overrides, base_url, &env).ok().map(|(_, r)| r)
        }),
    )
}
