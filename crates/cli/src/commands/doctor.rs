//! `clawline doctor`: checks the state directory, config, secrets, database, models, workspace
//! and gateway, and says how to fix each problem. Exits non-zero when something fails.

use std::process::ExitCode;

use anyhow::Result;
use clawline_core::config::schema::ExecSecurity;
use serde::Serialize;

use crate::cli::DoctorArgs;
use crate::client;
use crate::setup::{self, Paths};

#[derive(Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Serialize)]
struct Check {
    name: &'static str,
    status: Status,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

struct Report(Vec<Check>);

impl Report {
    fn add(&mut self, name: &'static str, status: Status, detail: impl Into<String>, fix: Option<String>) {
        self.0.push(Check { name, status, detail: detail.into(), fix });
    }
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).ok().map(|m| m.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
fn mode(_: &std::path::Path) -> Option<u32> {
    None
}

pub async fn run(paths: &Paths, args: DoctorArgs) -> Result<ExitCode> {
    let mut r = Report(Vec::new());
    let root = &paths.state.root;

    // State directory.
    match mode(root) {
        None if !root.exists() => r.add(
            "state directory",
            Status::Warn,
            format!("{} does not exist yet", root.display()),
            Some("run `clawline gateway` once to create it".into()),
        ),
        Some(m) if m & 0o077 != 0 => r.add(
            "state directory",
            Status::Warn,
            format!("{} is readable by other users (mode {m:o})", root.display()),
            Some(format!("chmod 700 {}", root.display())),
        ),
        _ => r.add("state directory", Status::Ok, root.display().to_string(), None),
    }

    // Config.
    let (text, exists) = setup::config_text(paths)?;
    let loaded = match setup::load_text(paths, &text) {
        Ok(l) => {
            let detail =
                if exists { paths.config_file.display().to_string() } else { "no file yet; defaults apply".into() };
            r.add("config", Status::Ok, detail, None);
            for w in &l.warnings {
                r.add(
                    "config",
                    Status::Warn,
                    format!("{}:{}:{}: {}: {}", w.file, w.line, w.column, w.path, w.message),
                    w.hint.clone(),
                );
            }
            if let Some(m) = mode(&paths.config_file).filter(|m| m & 0o077 != 0) {
                r.add(
                    "config",
                    Status::Warn,
                    format!("{} is readable by other users (mode {m:o})", paths.config_file.display()),
                    Some(format!("chmod 600 {}", paths.config_file.display())),
                );
            }
            Some(l.config)
        }
        Err(errors) => {
            for e in errors.0 {
                let hint = e.hint.clone();
                r.add(
                    "config",
                    Status::Fail,
                    format!(
                        "{}:{}:{}: {}{}",
                        e.file,
                        e.line,
                        e.column,
                        if e.path.is_empty() { String::new() } else { format!("{}: ", e.path) },
                        e.message
                    ),
                    hint,
                );
            }
            None
        }
    };

    // Master key and database.
    let key_path = paths.state.master_key();
    let marker = clawline_store::keyring_marker(&paths.state);
    if std::env::var_os("CLAWLINE_MASTER_KEY").is_some() {
        r.add("master key", Status::Ok, "from CLAWLINE_MASTER_KEY", None);
    } else if !key_path.exists() && marker.exists() {
        match setup::master_key_with_source(paths) {
            Ok(_) => r.add("master key", Status::Ok, "in the OS keyring (Secret Service)", None),
            Err(e) => r.add(
                "master key",
                Status::Fail,
                format!("{e:#}"),
                Some("the gateway cannot read its secrets until the keyring can be reached".into()),
            ),
        }
    } else if !key_path.exists() {
        r.add(
            "master key",
            Status::Warn,
            format!("{} does not exist yet", key_path.display()),
            Some("it is created on first start, in the OS keyring when one is reachable".into()),
        );
    } else if let Some(m) = mode(&key_path).filter(|m| m & 0o077 != 0) {
        r.add(
            "master key",
            Status::Fail,
            format!("{} is readable by other users (mode {m:o})", key_path.display()),
            Some(format!("chmod 600 {}", key_path.display())),
        );
    } else {
        r.add("master key", Status::Ok, key_path.display().to_string(), None);
    }
    let db = paths.state.database();
    let store = if db.exists() {
        match setup::open_store(paths) {
            Ok(store) => {
                match store.quick_check().await {
                    Ok(s) if s == "ok" => r.add(
                        "database",
                        Status::Ok,
                        format!("{} (schema v{})", db.display(), clawline_store::SCHEMA_VERSION),
                        None,
                    ),
                    Ok(problems) => r.add(
                        "database",
                        Status::Fail,
                        format!("integrity check: {problems}"),
                        Some("restore the state directory from a backup".into()),
                    ),
                    Err(e) => r.add("database", Status::Fail, e.to_string(), None),
                }
                Some(store)
            }
            Err(e) => {
                r.add(
                    "database",
                    Status::Fail,
                    format!("{e:#}"),
                    Some("check the file's permissions, or move it aside to start fresh".into()),
                );
                None
            }
        }
    } else {
        r.add(
            "database",
            Status::Warn,
            format!("{} does not exist yet", db.display()),
            Some("it is created on first start, in the OS keyring when one is reachable".into()),
        );
        None
    };

    if let Some(config) = &loaded {
        // Token.
        if config.gateway.token.is_some() {
            r.add("gateway token", Status::Ok, "set in the config", None);
        } else if let (Some(store), true) =
            (&store, key_path.exists() || std::env::var_os("CLAWLINE_MASTER_KEY").is_some())
        {
            match setup::master_key(paths) {
                Ok(key) => match store.get_secret(setup::TOKEN_SECRET, &key).await {
                    Ok(Some(_)) => r.add("gateway token", Status::Ok, "stored encrypted", None),
                    Ok(None) => r.add(
                        "gateway token",
                        Status::Warn,
                        "not generated yet",
                        Some("run `clawline gateway` or `clawline token`".into()),
                    ),
                    Err(e) => r.add(
                        "gateway token",
                        Status::Fail,
                        e.to_string(),
                        Some("the master key changed; run `clawline token --rotate` to make a new token".into()),
                    ),
                },
                Err(e) => r.add("gateway token", Status::Fail, format!("{e:#}"), None),
            }
        } else {
            r.add(
                "gateway token",
                Status::Warn,
                "not generated yet",
                Some("run `clawline gateway` or `clawline token`".into()),
            );
        }

        // Models: the same credential rules the runtime uses, stored auth profiles included.
        let profiles = match (&store, key_path.exists() || std::env::var_os("CLAWLINE_MASTER_KEY").is_some()) {
            (Some(store), true) => match setup::master_key(paths) {
                Ok(key) => {
                    let loaded = clawline_agent::auth_profiles::load(store, &key).await.unwrap_or_default();
                    credential_monitor(&mut r, store).await;
                    loaded
                }
                Err(_) => Vec::new(),
            },
            _ => Vec::new(),
        };
        let providers: std::collections::HashMap<String, std::sync::Arc<clawline_core::config::ProviderSettings>> =
            config.providers.iter().map(|(k, v)| (k.clone(), std::sync::Arc::new(v.clone()))).collect();
        let table = clawline_agent::routes::CredentialTable::build(&providers, &profiles);
        for agent in config.agents.values() {
            match &agent.model {
                None => r.add(
                    "model",
                    Status::Fail,
                    format!("agent `{}` has no model", agent.id),
                    Some("set agents.defaults.model, or export a provider key such as ANTHROPIC_API_KEY, OPENAI_API_KEY or GEMINI_API_KEY (`clawline models list --all` shows them all)".into()),
                ),
                Some(_) => {
                    for (i, m) in agent.model.iter().chain(agent.fallbacks.iter()).enumerate() {
                        let role = if i == 0 { "model".to_string() } else { format!("fallback {i}") };
                        let creds: Vec<_> = table.usable(&m.provider, Some(&agent.id)).collect();
                        let api = config.providers.get(&m.provider).map_or("?", |p| p.api.as_str());
                        match creds.as_slice() {
                            [] => r.add(
                                "model",
                                if i == 0 { Status::Fail } else { Status::Warn },
                                format!("agent `{}` {role} {m}: provider `{}` has no credentials", agent.id, m.provider),
                                Some(format!(
                                    "export {} or set models.providers.{}.apiKey, or run `clawline auth add {}`",
                                    clawline_core::config::provider_key_var(&m.provider),
                                    m.provider,
                                    m.provider
                                )),
                            ),
                            [one] if one.profile.ends_with(":local") => r.add(
                                "model",
                                Status::Ok,
                                format!("agent `{}` {role} → {m} (local server, no key)", agent.id),
                                None,
                            ),
                            list => r.add(
                                "model",
                                Status::Ok,
                                format!(
                                    "agent `{}` {role} → {m} ({api}; {})",
                                    agent.id,
                                    list.iter()
                                        .map(|c| c.settings.api_key_source.clone().unwrap_or_else(|| c.profile.clone()))
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                                None,
                            ),
                        }
                    }
                }
            }
            // Workspace.
            let ws = &agent.workspace;
            if !ws.exists() {
                r.add(
                    "workspace",
                    Status::Warn,
                    format!("{} does not exist yet", ws.display()),
                    Some("it is created on first start, in the OS keyring when one is reachable".into()),
                );
            } else {
                let probe = ws.join(".clawline-doctor");
                match std::fs::write(&probe, b"x").and_then(|_| std::fs::remove_file(&probe)) {
                    Ok(()) => r.add("workspace", Status::Ok, format!("agent `{}`: {}", agent.id, ws.display()), None),
                    Err(e) => r.add("workspace", Status::Fail, format!("{} is not writable: {e}", ws.display()), None),
                }
            }
        }

        memory_check(&mut r, &config.memory);
        channels_check(&mut r, &config.channels, store.as_ref()).await;

        // Exposure and tools.
        if config.gateway.bind_host.is_loopback() {
            r.add(
                "bind",
                Status::Ok,
                format!("{}:{} (this machine only)", config.gateway.bind_host, config.gateway.port),
                None,
            );
        } else {
            r.add(
                "bind",
                Status::Warn,
                format!("{}:{} is reachable from other machines", config.gateway.bind_host, config.gateway.port),
                Some("keep gateway.bind \"loopback\" unless you need remote access; put TLS in front if you do".into()),
            );
        }
        match config.tools.exec.security {
            ExecSecurity::Full => r.add(
                "exec",
                Status::Warn,
                "tools.exec.security is \"full\": the agent can run any program",
                Some("use \"allowlist\" with safeBins".into()),
            ),
            ExecSecurity::Allowlist => {
                r.add("exec", Status::Ok, format!("allow-list: {}", config.tools.exec.safe_bins.join(", ")), None)
            }
            ExecSecurity::Deny => r.add("exec", Status::Ok, "disabled", None),
        }
        sandbox_check(&mut r, &config.tools.exec);
        let web = &config.tools.web_fetch;
        if !web.enabled {
            r.add("web_fetch", Status::Ok, "disabled", None);
        } else if web.allow_private_network {
            r.add(
                "web_fetch",
                Status::Warn,
                "tools.web.fetch.allowPrivateNetwork is true: a page's URL can reach this machine, your network and cloud metadata",
                Some("list the private hosts the agent needs in tools.web.fetch.allowedHosts instead".into()),
            );
        } else if web.allowed_hosts.is_empty() {
            r.add("web_fetch", Status::Ok, "public addresses only", None);
        } else {
            r.add("web_fetch", Status::Ok, format!("public addresses, and {}", web.allowed_hosts.join(", ")), None);
        }

        // Control UI, hooks, proxies.
        if let Some(root) = &config.gateway.control_ui_root {
            match clawline_gateway::ControlUi::load(root) {
                Ok(_) => r.add("control ui", Status::Ok, format!("serving {} at /", root.display()), None),
                Err(e) => r.add(
                    "control ui",
                    Status::Fail,
                    e,
                    Some(
                        "point gateway.controlUi.root at a built Control UI (a folder with index.html), or remove it"
                            .into(),
                    ),
                ),
            }
        }
        if let Some(h) = &config.hooks {
            r.add(
                "hooks",
                Status::Ok,
                format!("enabled at {}/agent and {}/wake, with their own token", h.path, h.path),
                None,
            );
        }
        if !config.gateway.trusted_proxies.is_empty() {
            let list: Vec<String> = config.gateway.trusted_proxies.iter().map(|p| p.to_string()).collect();
            r.add(
                "proxies",
                Status::Ok,
                format!("forwarding headers believed from {}", list.join(", ")),
                Some("list only proxies that overwrite X-Forwarded-For".into()),
            );
        }

        // Devices waiting for approval.
        if let Some(store) = &store
            && let Ok(pending) = store.list_pairing_requests().await
            && !pending.is_empty()
        {
            let who: Vec<String> = pending
                .iter()
                .map(|p| {
                    let name =
                        p.client.get("displayName").or(p.client.get("id")).and_then(|v| v.as_str()).unwrap_or("?");
                    format!("{name} from {}", p.remote_ip.as_deref().unwrap_or("?"))
                })
                .collect();
            r.add(
                "devices",
                Status::Warn,
                format!("{} device(s) wait for pairing approval: {}", pending.len(), who.join("; ")),
                Some("approve with `openclaw devices approve <requestId>` (or device.pair.approve over the protocol) if you recognize them".into()),
            );
        }

        // A running gateway?
        let base = format!("http://127.0.0.1:{}", config.gateway.port);
        if client::probe(&base).await {
            r.add("gateway", Status::Ok, format!("running at {base}"), None);
        } else if std::net::TcpStream::connect(("127.0.0.1", config.gateway.port)).is_ok() {
            r.add(
                "gateway",
                Status::Warn,
                format!("port {} is taken by something that is not a clawline gateway", config.gateway.port),
                Some("set gateway.port to a free port".into()),
            );
        } else {
            r.add("gateway", Status::Ok, format!("not running (port {} is free)", config.gateway.port), None);
        }
    }

    let failed = r.0.iter().any(|c| c.status == Status::Fail);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"ok": !failed, "checks": r.0}))?);
    } else {
        println!("clawline doctor ({})", root.display());
        for c in &r.0 {
            let tag = match c.status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            println!("  {tag}  {:<16} {}", c.name, c.detail);
            if let Some(fix) = &c.fix {
                println!("        {:<16} fix: {fix}", "");
            }
        }
        let (warns, fails) = (
            r.0.iter().filter(|c| c.status == Status::Warn).count(),
            r.0.iter().filter(|c| c.status == Status::Fail).count(),
        );
        println!("{fails} problem(s), {warns} warning(s).");
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Reports what the kernel sandbox around `exec` really gets on this machine.
fn sandbox_check(r: &mut Report, exec: &clawline_core::config::ExecSettings) {
    use clawline_core::config::schema::SandboxMode;
    if exec.security == ExecSecurity::Deny {
        return r.add("exec sandbox", Status::Ok, "not needed: exec is disabled", None);
    }
    if exec.sandbox == SandboxMode::Off {
        return r.add(
            "exec sandbox",
            Status::Warn,
            "tools.exec.sandbox is \"off\": commands can write anywhere you can and use the network",
            Some("remove tools.exec.sandbox (the default is \"auto\")".into()),
        );
    }
    let status = clawline_agent::tools::sandbox::status();
    if status.complete() {
        return r.add("exec sandbox", Status::Ok, status.to_string(), None);
    }
    let fix = "use Linux 6.7 or later with Landlock enabled (the `lsm=` boot parameter) and unprivileged user namespaces allowed (sysctl user.max_user_namespaces > 0)";
    match exec.sandbox {
        SandboxMode::Require => r.add(
            "exec sandbox",
            Status::Fail,
            format!("{status}: tools.exec.sandbox is \"require\", so exec refuses every command"),
            Some(fix.into()),
        ),
        _ => r.add(
            "exec sandbox",
            Status::Warn,
            format!("{status}: commands are not fully contained"),
            Some(format!("{fix}; or set tools.exec.security \"deny\" to turn exec off")),
        ),
    }
}

/// Channels: platforms this build cannot connect, policies that let anyone in, tokens sent
/// without TLS, a pairing account nobody can use yet, replies that could not be delivered.
async fn channels_check(
    r: &mut Report,
    c: &clawline_core::config::channels::ChannelSettings,
    store: Option<&clawline_store::Store>,
) {
    use clawline_core::config::channels::{DmPolicy, GroupPolicy};
    for id in &c.unsupported {
        r.add(
            "channels",
            Status::Warn,
            format!("channels.{id} is configured, but this build cannot connect {id} yet: it is ignored"),
            Some(format!("supported now: {}", clawline_core::config::channels::SUPPORTED_CHANNELS.join(", "))),
        );
    }
    for id in &c.disabled {
        r.add("channels", Status::Ok, format!("{id} is switched off (enabled: false)"), None);
    }
    let platforms = c.accounts.iter().filter(|a| a.channel != "webchat").count();
    if platforms == 0 && c.unsupported.is_empty() {
        let page = if c.accounts.is_empty() { "the API only" } else { "web chat and the API only" };
        r.add("channels", Status::Ok, format!("no chat platform configured ({page})"), None);
        return;
    }
    let approved = match store {
        Some(s) => s.channel_allow_entries(None).await.unwrap_or_default(),
        None => Vec::new(),
    };
    // The web chat's only sender already holds the gateway token: its open policy is not a risk.
    for a in c.accounts.iter().filter(|a| a.channel != "webchat") {
        let name = format!("{}:{}", a.channel, a.account_id);
        r.add("channels", Status::Ok, format!("{name}: {}", a.endpoint()), None);
        if a.cleartext() {
            r.add(
                "channels",
                Status::Warn,
                format!("{name}: {} is not encrypted: the account's credentials travel in clear text", a.endpoint()),
                Some("use TLS (an https:// apiRoot, or tls: true for IRC), or a server on this machine".into()),
            );
        }
        if a.access.dm_policy == DmPolicy::Open {
            r.add(
                "channels",
                Status::Warn,
                format!(
                    "{name}: dmPolicy \"open\": anyone who finds the bot can use your assistant (and your model budget)"
                ),
                Some("use \"pairing\" (the default) or \"allowlist\"".into()),
            );
        }
        if a.access.group_policy == GroupPolicy::Open {
            r.add(
                "channels",
                Status::Warn,
                format!("{name}: groupPolicy \"open\": the bot answers in any group it is added to"),
                Some("list the groups under groups (groupPolicy \"allowlist\", the default)".into()),
            );
        }
        let someone = !a.access.allow_from.is_empty()
            || approved.iter().any(|e| e.channel == a.channel && e.account_id == a.account_id);
        if a.access.dm_policy == DmPolicy::Pairing && !someone {
            r.add(
                "channels",
                Status::Ok,
                format!("{name}: nobody is approved yet"),
                Some(format!("message the bot, then `clawline pairing approve {} <code>`", a.channel)),
            );
        }
        if a.access.dm_policy == DmPolicy::Allowlist && !someone {
            r.add(
                "channels",
                Status::Warn,
                format!("{name}: dmPolicy \"allowlist\" with an empty allowFrom: nobody can DM the bot"),
                Some("add sender ids to allowFrom, or use \"pairing\"".into()),
            );
        }
    }
    if let Some(s) = store
        && let Ok(dead) = s.dead_outbound(None, None, 1000).await
        && !dead.is_empty()
    {
        r.add(
            "channels",
            Status::Warn,
            format!(
                "{} replies could not be delivered (last error: {})",
                dead.len(),
                dead[0].last_error.as_deref().unwrap_or("?")
            ),
            Some("`clawline channels dead-letters` lists them".into()),
        );
    }
}

/// Stored auth profiles that have expired or expire within a day.
/// Memory: which embedder, or why search is text-only; a model still to download; a batch
/// setting the provider cannot use; past conversations.
fn memory_check(r: &mut Report, m: &clawline_core::config::memory::MemorySettings) {
    use clawline_core::config::memory::{Embedding, EmbeddingApiKind};
    if !m.enabled {
        r.add("memory", Status::Ok, "off (memory.search.enabled: false)", None);
        return;
    }
    let sessions = if m.index_sessions { "; past conversations indexed too" } else { "" };
    match &m.embedding {
        Err(reason) => r.add(
            "memory",
            Status::Warn,
            format!("search is text-only: {reason}"),
            Some("set memory.search.provider (and its key), or memory.search.model to a local model".into()),
        ),
        Ok(Embedding::Local { .. }) if !cfg!(feature = "local-embeddings") => r.add(
            "memory",
            Status::Warn,
            "memory.search names a local model, but this clawline was built without local embeddings: search is text-only",
            Some("build with `--features local-embeddings`, or use a remote embedding provider".into()),
        ),
        Ok(Embedding::Local { model, download: Some(hf) })
            if !clawline_providers::hf_download::is_complete(model) =>
        {
            r.add(
                "memory",
                Status::Warn,
                format!("hf:{}@{} is not downloaded yet ({})", hf.repo, hf.revision, model.display()),
                Some(format!(
                    "run `clawline memory index` to download it from {} now (the gateway would at its first embedding)",
                    hf.endpoint
                )),
            )
        }
        Ok(Embedding::Local { model, .. }) => {
            r.add("memory", Status::Ok, format!("hybrid, local model {}{sessions}", model.display()), None)
        }
        Ok(Embedding::Remote(t)) => {
            r.add("memory", Status::Ok, format!("hybrid, {} / {}{sessions}", t.provider, t.model), None);
            if t.batch.is_some() && matches!(t.api, EmbeddingApiKind::Mistral | EmbeddingApiKind::Ollama) {
                r.add(
                    "memory",
                    Status::Warn,
                    format!("memory.search.remote.batch is on, but {} has no batch API clawline speaks: chunks are embedded directly", t.provider),
                    Some("use OpenAI, Voyage or Gemini for batch embedding, or turn remote.batch off".into()),
                );
            }
        }
    }
}

async fn credential_monitor(r: &mut Report, store: &clawline_store::Store) {
    let Ok(rows) = store.list_auth_profiles().await else { return };
    let now = clawline_store::now_ms();
    for row in rows {
        let Some(expires) = row.expires_at else { continue };
        if expires <= now {
            r.add(
                "auth profile",
                Status::Fail,
                format!("{} expired {}", row.profile_id, clawline_core::time::iso8601_from_ms(expires)),
                Some(format!("store a new credential: clawline auth add {} --name …", row.provider)),
            );
        } else if expires - now < 24 * 3600 * 1000 {
            r.add(
                "auth profile",
                Status::Warn,
                format!("{} expires {}", row.profile_id, clawline_core::time::iso8601_from_ms(expires)),
                None,
            );
        }
    }
}
