//! `clawline models list [--all] [--discover] [--json]`: every model clawline can route to,
//! whether it can be called now, and if not, why and what to do.
//!
//! Availability is decided the way the runtime decides it: a provider is ready when it has at
//! least one credential (config key, `<ID>_API_KEY`, a stored auth profile, AWS credentials, or
//! none needed for a local server). `--discover` asks providers that can list their models;
//! that is the only part that makes network calls, each bounded by the provider's timeout.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clawline_agent::routes::CredentialTable;
use clawline_core::config::preset::{Discovery, Login};
use clawline_core::config::{ApiKind, Config, ProviderSettings, provider_key_var};
use clawline_providers::ModelClient;
use clawline_providers::catalog;
use serde_json::{Value, json};

use crate::cli::ModelsCommand;
use crate::setup::{self, Paths};

/// One line of the listing.
struct Row {
    model: String,
    name: String,
    context: Option<u64>,
    input: Vec<String>,
    price: Option<(f64, f64)>,
    available: bool,
    status: String,
    source: &'static str,
}

fn setup_hint(id: &str) -> String {
    match catalog::preset(id) {
        Some(k) if k.login == Login::Aws => {
            "export AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION (or AWS_BEARER_TOKEN_BEDROCK)".to_string()
        }
        Some(k) if k.login == Login::TokenExchange => {
            format!("run `clawline auth login {id}` (or export COPILOT_GITHUB_TOKEN, or sign in to Copilot in VS Code)")
        }
        Some(k) if k.login == Login::OAuth && k.key_vars.is_empty() => format!("run `clawline auth login {id}`"),
        Some(k) if k.login == Login::OAuth => {
            format!("export {}, or run `clawline auth add {id}` or `clawline auth login {id}`", k.key_vars[0])
        }
        Some(k) if !k.key_vars.is_empty() => {
            format!("export {} or run `clawline auth add {id}`", k.key_vars[0])
        }
        _ => format!("export {} or run `clawline auth add {id}`", provider_key_var(id)),
    }
}

fn rows_for(config: &Config, table: &CredentialTable) -> Vec<Row> {
    let mut rows = Vec::new();
    for p in config.providers.values() {
        let creds: Vec<_> = table.usable(&p.id, None).collect();
        let (available, status) = match creds.as_slice() {
            [] => (false, format!("no credentials: {}", setup_hint(&p.id))),
            [one] if one.profile.ends_with(":local") => (true, format!("local server at {}", p.base_url)),
            [one] => (true, format!("ready ({})", one.settings.api_key_source.as_deref().unwrap_or(&one.profile))),
            many => (true, format!("ready ({} credentials, rotated on rate limits)", many.len())),
        };
        if p.models.is_empty() {
            rows.push(Row {
                model: format!("{}/*", p.id),
                name: "(any model the server has; --discover lists them)".into(),
                context: None,
                input: vec![],
                price: None,
                available,
                status: status.clone(),
                source: "config",
            });
        }
        for m in &p.models {
            let priced = m.cost.input > 0.0 || m.cost.output > 0.0;
            rows.push(Row {
                model: format!("{}/{}", p.id, m.id),
                name: m.name.clone().unwrap_or_else(|| m.id.clone()),
                context: m.context_window,
                input: if m.input.is_empty() { vec!["text".into()] } else { m.input.clone() },
                price: priced.then_some((m.cost.input, m.cost.output)),
                available,
                status: status.clone(),
                source: if p.implicit { "built-in" } else { "config" },
            });
        }
    }
    rows
}

fn unconfigured(config: &Config) -> Vec<Row> {
    catalog::PRESETS
        .iter()
        .filter(|k| !config.providers.contains_key(k.id))
        .flat_map(|k| {
            let status = match k.login {
                Login::Local => format!("not set up: add models.providers.{} (server at {})", k.id, k.base_url),
                _ => format!("not set up: {}", setup_hint(k.id)),
            };
            let mut rows: Vec<Row> = k
                .models
                .iter()
                .map(|m| Row {
                    model: format!("{}/{}", k.id, m.id),
                    name: m.name.to_string(),
                    context: Some(m.context_window),
                    input: if m.image { vec!["text".into(), "image".into()] } else { vec!["text".into()] },
                    price: (m.cost[0] > 0.0 || m.cost[1] > 0.0).then_some((m.cost[0], m.cost[1])),
                    available: false,
                    status: status.clone(),
                    source: "built-in",
                })
                .collect();
            if rows.is_empty() {
                rows.push(Row {
                    model: format!("{}/*", k.id),
                    name: k.name.to_string(),
                    context: None,
                    input: vec![],
                    price: None,
                    available: false,
                    status,
                    source: "built-in",
                });
            }
            rows
        })
        .collect()
}

async fn discover(config: &Config, table: &CredentialTable, rows: &mut Vec<Row>) {
    let http = clawline_providers::build_http_client().unwrap_or_else(|_| reqwest::Client::new());
    for p in config.providers.values() {
        let discoverable = match catalog::preset(&p.id) {
            Some(k) => k.discovery != Discovery::None,
            None => matches!(p.api, ApiKind::OpenAiCompletions | ApiKind::Ollama),
        };
        let Some(cred) = table.usable(&p.id, None).next() else { continue };
        if !discoverable {
            continue;
        }
        eprintln!("asking {} for its models…", p.id);
        let client = ModelClient::new(cred.settings.clone(), http.clone());
        match client.discover().await {
            Ok(Some(found)) => {
                eprintln!("  {}: {} models", p.id, found.len());
                for d in found {
                    let model = format!("{}/{}", p.id, d.id);
                    if let Some(r) = rows.iter_mut().find(|r| r.model == model) {
                        r.status = format!("{} (listed by the provider)", r.status);
                        continue;
                    }
                    rows.push(Row {
                        model,
                        name: d.name.unwrap_or_else(|| d.id.clone()),
                        context: d.context_window,
                        input: d.input,
                        price: None,
                        available: d.streaming,
                        status: if d.streaming { "ready (discovered)".into() } else { "cannot stream".into() },
                        source: "discovered",
                    });
                }
                rows.retain(|r| r.model != format!("{}/*", p.id));
            }
            Ok(None) => {}
            Err(e) => {
                eprintln!("  {}: {e}", p.id);
                for r in rows.iter_mut().filter(|r| r.model.starts_with(&format!("{}/", p.id))) {
                    r.available = false;
                    r.status = format!("unreachable: {}", e.message);
                }
            }
        }
    }
}

pub async fn run(paths: &Paths, cmd: ModelsCommand) -> Result<ExitCode> {
    let ModelsCommand::List { all, discover: ask, json } = cmd;
    let (assembled, _) = setup::assemble(paths)?;
    let config = &assembled.config;
    let profiles = clawline_agent::auth_profiles::load(&assembled.store, &assembled.key).await?;
    let providers: HashMap<String, Arc<ProviderSettings>> =
        config.providers.iter().map(|(k, v)| (k.clone(), Arc::new(v.clone()))).collect();
    let table = CredentialTable::build(&providers, &profiles);
    let mut rows = rows_for(config, &table);
    if ask {
        discover(config, &table, &mut rows).await;
    }
    if all {
        rows.extend(unconfigured(config));
    }
    let defaults: Vec<String> =
        config.agents.values().filter_map(|a| a.model.as_ref().map(|m| m.to_string())).collect();
    if json {
        let list: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "model": r.model, "name": r.name, "contextWindow": r.context, "input": r.input,
                    "price": r.price.map(|(i, o)| json!({"input": i, "output": o})),
                    "available": r.available, "status": r.status, "source": r.source,
                    "default": defaults.contains(&r.model),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&json!({"models": list}))?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("No models yet. Export a provider key (ANTHROPIC_API_KEY, OPENAI_API_KEY, GEMINI_API_KEY, …) or add");
        println!(
            "models.providers.<id> to {}; `clawline models list --all` shows every built-in provider.",
            paths.config_file.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<52} {:>9} {:<11} {:<15} STATUS", "MODEL", "CONTEXT", "INPUT", "USD/1M IN/OUT");
    for r in &rows {
        let mark = if defaults.contains(&r.model) { "*" } else { " " };
        let context =
            r.context.map_or("-".to_string(), |c| if c >= 1000 { format!("{}k", c / 1000) } else { c.to_string() });
        let price = r.price.map_or("-".to_string(), |(i, o)| format!("{i}/{o}"));
        println!("{mark}{:<51} {:>9} {:<11} {:<15} {}", r.model, context, r.input.join("+"), price, r.status);
    }
    if !defaults.is_empty() {
        println!("\n* the model an agent uses");
    }
    Ok(ExitCode::SUCCESS)
}
