//! `clawline auth add|list|remove`: model-provider credentials stored encrypted in the state
//! database. Secrets come from standard input or a named environment variable, never from the
//! command line (where `ps` and shell history would see them), and are never printed.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clawline_agent::auth_profiles::ProfileKind;
use clawline_core::secret::SecretString;
use clawline_store::{ALL_AGENTS, AuthProfileRow};
use serde_json::json;

use crate::cli::AuthCommand;
use crate::setup::{self, Paths};
use clawline_providers::oauth::providers::SignIn;
use clawline_providers::oauth::{CodeFlow, Grant, parse_pasted};

pub async fn run(paths: &Paths, cmd: AuthCommand) -> Result<ExitCode> {
    setup::init_state(paths)?;
    let (assembled, _) = setup::assemble(paths)?;
    let store = &assembled.store;
    match cmd {
        AuthCommand::Add { provider, name, kind, agent, label, from_env } => {
            let kind = ProfileKind::parse(&kind)
                .filter(|k| *k != ProfileKind::OAuth)
                .ok_or_else(|| anyhow!("--kind must be api_key, token or aws-sdk (got `{kind}`)"))?;
            if clawline_core::session_key::validate_agent_id(&provider).is_err() {
                bail!("`{provider}` is not a provider id (lowercase letters, digits, `-`, `_`)");
            }
            if name.is_empty() || name.contains(char::is_whitespace) {
                bail!("--name must be one word");
            }
            if let Some(a) = &agent
                && assembled.config.agent(a).is_none()
            {
                bail!("no agent `{a}` in {}", paths.config_file.display());
            }
            if !assembled.config.providers.contains_key(&provider) {
                eprintln!(
                    "note: `{provider}` is not configured in {}; the profile is stored and used once it is",
                    paths.config_file.display()
                );
            }
            let credential = match kind {
                ProfileKind::AwsSdk => aws_from_env()?,
                _ => {
                    let secret = read_secret(from_env.as_deref())?;
                    let field = if kind == ProfileKind::Token { "token" } else { "key" };
                    SecretString::new(
                        json!({"type": kind.as_str(), "provider": provider, field: secret.expose()}).to_string(),
                    )
                }
            };
            let profile_id = format!("{provider}:{name}");
            let meta = AuthProfileRow {
                agent_id: agent.clone().unwrap_or_else(|| ALL_AGENTS.to_string()),
                profile_id: profile_id.clone(),
                provider,
                kind: kind.as_str().to_string(),
                label,
                expires_at: None,
                created_at: 0,
                updated_at: 0,
            };
            store.put_auth_profile(meta, &credential, &assembled.key).await?;
            let scope = agent.map_or("every agent".to_string(), |a| format!("agent {a}"));
            println!("Stored {profile_id} ({}) for {scope}, encrypted.", kind.as_str());
            Ok(ExitCode::SUCCESS)
        }
        AuthCommand::Login { provider, name, agent, paste, no_open } => {
            if let Some(a) = &agent
                && assembled.config.agent(a).is_none()
            {
                bail!("no agent `{a}` in {}", paths.config_file.display());
            }
            let configured = assembled.config.file.models.providers.get(&provider);
            let overrides = configured.map(|p| p.oauth.clone()).unwrap_or_default();
            let base_url = configured.and_then(|p| p.base_url.as_deref());
            let env = |v: &str| std::env::var(v).ok().filter(|s| !s.is_empty());
            let (sign_in, refresh) =
                clawline_providers::oauth::providers::sign_in(&provider, &overrides, base_url, &env)
                    .map_err(|e| anyhow!("{e}"))?;
            let http = clawline_providers::build_http_client()?;
            let grant = match sign_in {
                SignIn::Code { flow, port, path } => browser_sign_in(&http, flow, port, &path, paste, no_open).await?,
                SignIn::Device(flow) => {
                    let start = flow.start(&http).await?;
                    println!(
                        "To sign in to {provider}, open {}",
                        start.verification_uri_complete.as_deref().unwrap_or(&start.verification_uri)
                    );
                    println!("and enter the code: {}", start.user_code);
                    eprintln!(
                        "waiting for approval (the code expires in {} min)…",
                        start.expires_in.as_secs().div_ceil(60)
                    );
                    flow.poll(&http, &start).await?
                }
            };
            let profile_id = format!("{provider}:{name}");
            let meta = AuthProfileRow {
                agent_id: agent.clone().unwrap_or_else(|| ALL_AGENTS.to_string()),
                profile_id: profile_id.clone(),
                provider: provider.clone(),
                kind: "oauth".into(),
                label: None,
                expires_at: grant.expires_at_ms,
                created_at: 0,
                updated_at: 0,
            };
            let credential = clawline_agent::oauth_refresh::grant_json(&provider, &grant, Some(&refresh.client_id));
            store.put_auth_profile(meta, &credential, &assembled.key).await?;
            let until = grant
                .expires_at_ms
                .map(|e| {
                    format!(
                        "; the access token is refreshed before it expires ({})",
                        clawline_core::time::iso8601_from_ms(e)
                    )
                })
                .unwrap_or_default();
            println!("Signed in: stored {profile_id} (oauth), encrypted{until}.");
            if grant.refresh_token.is_none() && grant.expires_at_ms.is_some() {
                eprintln!("note: {provider} gave no refresh token; sign in again when it expires");
            }
            Ok(ExitCode::SUCCESS)
        }
        AuthCommand::Usage { json } => usage(&assembled, json).await,
        AuthCommand::List { json } => {
            let rows = store.list_auth_profiles().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(ExitCode::SUCCESS);
            }
            if rows.is_empty() {
                println!("No stored profiles. Add one with `printf %s \"$KEY\" | clawline auth add <provider>`.");
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:<32} {:<9} {:<10} {:<20} {:<24} LABEL", "PROFILE", "KIND", "AGENT", "UPDATED", "STATUS");
            let now = clawline_store::now_ms();
            for r in rows {
                let updated = clawline_core::time::iso8601_from_ms(r.updated_at);
                let status = match r.expires_at {
                    None => "ok".to_string(),
                    Some(e) if e <= now && r.kind == "oauth" => "expired (refresh pending)".to_string(),
                    Some(e) if e <= now => "expired".to_string(),
                    Some(e) => format!("expires in {}", human_duration(e - now)),
                };
                println!(
                    "{:<32} {:<9} {:<10} {:<20} {:<24} {}",
                    r.profile_id,
                    r.kind,
                    if r.agent_id == ALL_AGENTS { "(all)" } else { r.agent_id.as_str() },
                    &updated[..updated.len().min(19)],
                    status,
                    r.label.unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AuthCommand::Remove { profile, agent } => {
            let agent_id = agent.unwrap_or_else(|| ALL_AGENTS.to_string());
            if store.delete_auth_profile(&agent_id, &profile).await? {
                println!("Removed {profile}.");
                Ok(ExitCode::SUCCESS)
            } else {
                bail!(
                    "no stored profile `{profile}` for {} (see `clawline auth list`)",
                    if agent_id == ALL_AGENTS { "every agent".to_string() } else { format!("agent {agent_id}") }
                );
            }
        }
    }
}

pub(crate) fn read_secret(from_env: Option<&str>) -> Result<SecretString> {
    let value = match from_env {
        Some(var) => std::env::var(var).map_err(|_| anyhow!("environment variable {var} is not set"))?,
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprint!("Paste the secret and press Enter: ");
            }
            let mut line = String::new();
            stdin.lock().read_line(&mut line).context("cannot read the secret from standard input")?;
            line
        }
    };
    let value = value.trim().to_string();
    if value.is_empty() {
        bail!("the secret is empty (pipe it in: printf %s \"$KEY\" | clawline auth add …, or use --from-env VAR)");
    }
    Ok(SecretString::new(value))
}

fn aws_from_env() -> Result<SecretString> {
    let get = |v: &str| std::env::var(v).ok().filter(|s| !s.is_empty());
    let id = get("AWS_ACCESS_KEY_ID").ok_or_else(|| anyhow!("AWS_ACCESS_KEY_ID is not set"))?;
    let secret = get("AWS_SECRET_ACCESS_KEY").ok_or_else(|| anyhow!("AWS_SECRET_ACCESS_KEY is not set"))?;
    let region = get("AWS_REGION")
        .or_else(|| get("AWS_DEFAULT_REGION"))
        .ok_or_else(|| anyhow!("AWS_REGION is not set (e.g. us-east-1)"))?;
    let mut v = json!({"type": "aws-sdk", "accessKeyId": id, "secretAccessKey": secret, "region": region});
    if let Some(t) = get("AWS_SESSION_TOKEN") {
        v["sessionToken"] = json!(t);
    }
    Ok(SecretString::new(v.to_string()))
}

/// The browser sign-in: listen on 127.0.0.1 for the redirect (unless `paste`), and accept a
/// pasted address or code on standard input at the same time, for machines without a browser.
async fn browser_sign_in(
    http: &reqwest::Client,
    mut flow: CodeFlow,
    port: u16,
    path: &str,
    paste: bool,
    no_open: bool,
) -> Result<Grant> {
    let listener = if paste {
        None
    } else {
        match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("note: cannot listen on 127.0.0.1:{port} ({e}); paste the address instead");
                None
            }
        }
    };
    if let Some(l) = &listener
        && port == 0
    {
        let actual = l.local_addr()?.port();
        flow.redirect_uri = flow.redirect_uri.replacen(":0/", &format!(":{actual}/"), 1);
    }
    let pending = flow.begin();
    println!("Open this address to sign in to {}:", flow.provider);
    println!("  {}", pending.url);
    if listener.is_some() && !no_open {
        let _ = std::process::Command::new(if cfg!(target_os = "macos") { "open" } else { "xdg-open" })
            .arg(&pending.url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
    eprintln!(
        "{}",
        if listener.is_some() {
            "Waiting for the browser… (on another machine? paste the address it ends on here)"
        } else {
            "Paste the address the browser ends on (or the code it shows):"
        }
    );
    let provider = flow.provider.clone();
    let state = pending.state.clone();
    let pasted = async {
        use tokio::io::AsyncBufReadExt;
        let mut line = String::new();
        let mut reader = tokio::io::BufReader::new(tokio::io::stdin());
        match reader.read_line(&mut line).await {
            Ok(n) if n > 0 && !line.trim().is_empty() => parse_pasted(&provider, &line, &state),
            // Nothing to read (stdin closed): leave it to the browser.
            _ => std::future::pending().await,
        }
    };
    let timeout = std::time::Duration::from_secs(300);
    let code = match listener {
        Some(l) => {
            let browser = clawline_providers::oauth::loopback::wait_for_code(&provider, l, path, &state, timeout);
            tokio::select! {
                r = browser => r?,
                r = pasted => r?,
            }
        }
        None => {
            tokio::time::timeout(timeout, pasted).await.map_err(|_| anyhow!("no address was pasted in 5 minutes"))??
        }
    };
    Ok(flow.exchange(http, &pending, &code, None).await?)
}

/// `3 d`, `5 h`, `12 min` for a duration in milliseconds.
fn human_duration(ms: i64) -> String {
    let min = ms / 60_000;
    match min {
        m if m >= 2 * 24 * 60 => format!("{} d", m / (24 * 60)),
        m if m >= 120 => format!("{} h", m / 60),
        m => format!("{} min", m.max(1)),
    }
}

/// `clawline auth usage`: asks each signed-in provider that publishes its quota.
async fn usage(assembled: &setup::Assembled, json: bool) -> Result<ExitCode> {
    use clawline_providers::usage;
    let profiles = clawline_agent::auth_profiles::load(&assembled.store, &assembled.key).await?;
    let http = clawline_providers::build_http_client()?;
    let mut reports = Vec::new();
    let mut asked = 0;
    // Stored profiles first, then keys from the config or the environment.
    let mut candidates: Vec<(String, String, SecretString)> =
        profiles.iter().filter_map(|p| p.secret.clone().map(|s| (p.id.clone(), p.provider.clone(), s))).collect();
    for p in assembled.config.providers.values() {
        if let Some(k) = &p.api_key {
            candidates.push((
                format!("{}:{}", p.id, p.api_key_source.as_deref().unwrap_or("config")),
                p.id.clone(),
                k.clone(),
            ));
        }
    }
    for (label, provider, secret) in candidates {
        let Some(mut endpoint) = usage::default_endpoint(&provider) else { continue };
        if let Some(url) = assembled
            .config
            .file
            .models
            .providers
            .get(&provider)
            .and_then(|p| p.usage_url.clone())
            .filter(|u| !u.is_empty())
        {
            endpoint.url = url;
        }
        asked += 1;
        let account = if provider == "openai-codex" { usage::codex_account_id(secret.expose()) } else { None };
        match usage::fetch(&http, &provider, &endpoint, &secret, account.as_deref()).await {
            Ok(report) => reports.push((label, Ok(report))),
            Err(e) => reports.push((label, Err(e.to_string()))),
        }
    }
    if json {
        let list: Vec<serde_json::Value> = reports
            .iter()
            .map(|(label, r)| match r {
                Ok(u) => json!({"profile": label, "provider": u.provider, "plan": u.plan, "credits": u.credits,
                    "windows": u.windows.iter().map(|w| json!({"label": w.label, "usedPercent": w.used_percent,
                        "used": w.used, "limit": w.limit, "resetsAt": w.resets_at_ms})).collect::<Vec<_>>()}),
                Err(e) => json!({"profile": label, "error": e}),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    if asked == 0 {
        println!(
            "No signed-in provider publishes its usage. Usage is shown for Claude, Codex, Gemini, Copilot, MiniMax and Z.AI sign-ins or keys."
        );
        return Ok(ExitCode::SUCCESS);
    }
    for (label, r) in reports {
        match r {
            Ok(u) => {
                println!("{label}{}", u.plan.map(|p| format!(" ({p})")).unwrap_or_default());
                for w in u.windows {
                    let used = w
                        .used_percent
                        .map(|p| format!("{p:.0}% used"))
                        .or_else(|| w.used.zip(w.limit).map(|(a, b)| format!("{a} of {b} used")));
                    let resets = w
                        .resets_at_ms
                        .map(|r| format!(", resets {}", clawline_core::time::iso8601_from_ms(r)))
                        .unwrap_or_default();
                    println!("  {:<20} {}{resets}", w.label, used.unwrap_or_else(|| "-".into()));
                }
                if let Some(c) = u.credits {
                    println!("  {:<20} {c}", "credits left");
                }
            }
            Err(e) => println!("{label}\n  unavailable: {e}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}
