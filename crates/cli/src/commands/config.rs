//! `clawline config validate | get | set`.

use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clawline_core::json5::{self, Value};
use clawline_core::secret::REDACTED;

use crate::cli::ConfigCommand;
use crate::setup::{self, Paths};

pub async fn run(paths: &Paths, cmd: ConfigCommand) -> Result<ExitCode> {
    match cmd {
        ConfigCommand::Validate => validate(paths),
        ConfigCommand::Get { path } => get(paths, &path),
        ConfigCommand::Set { path, value } => set(paths, &path, &value),
    }
}

fn validate(paths: &Paths) -> Result<ExitCode> {
    let (text, exists) = setup::config_text(paths)?;
    match setup::load_text(paths, &text) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            if exists {
                println!("Config valid: {}", paths.config_file.display());
            } else {
                println!(
                    "No config file at {} yet; the defaults are valid (it is created on first `clawline gateway`).",
                    paths.config_file.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            eprintln!("{} problem(s) found.", errors.0.len());
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Key paths that may hold secrets, read from the tree itself (so it works on any file):
/// the gateway token and password, and every provider's `apiKey` and header values.
fn secret_paths_in(tree: &json5::Node) -> Vec<String> {
    let mut out = vec!["gateway.auth.token".to_string(), "gateway.auth.password".to_string()];
    if let Some(Value::Object(providers)) = tree.at_path("models.providers").map(|n| &n.value) {
        for (id, provider) in providers {
            out.push(format!("models.providers.{}.apiKey", id.name));
            if let Some(Value::Object(headers)) = provider.get("headers").map(|n| &n.value) {
                out.extend(headers.iter().map(|(h, _)| format!("models.providers.{}.headers.{}", id.name, h.name)));
            }
        }
    }
    out
}

/// Hides secrets written literally at or below `path` (references such as `${VAR}` are shown).
fn redact(tree: &json5::Node, path: &str, value: &mut serde_json::Value) {
    let prefix = json5::split_path(path).join(".");
    for secret in secret_paths_in(tree) {
        let Some(node) = tree.at_path(&secret) else { continue };
        let literal = matches!(&node.value, Value::String(s) if !(s.starts_with("${") && s.ends_with('}')));
        if !literal {
            continue;
        }
        let below = if prefix.is_empty() { Some(secret.as_str()) } else { secret.strip_prefix(&format!("{prefix}.")) };
        if secret == prefix {
            *value = serde_json::Value::String(REDACTED.into());
        } else if let Some(rest) = below {
            let pointer = format!("/{}", rest.replace('.', "/"));
            if let Some(v) = value.pointer_mut(&pointer) {
                *v = serde_json::Value::String(REDACTED.into());
            }
        }
    }
}

fn get(paths: &Paths, path: &str) -> Result<ExitCode> {
    let (text, _) = setup::config_text(paths)?;
    let tree = json5::parse(&text).map_err(|e| {
        let at = json5::line_col(&text, e.offset);
        anyhow!("{}:{at}: {}", paths.config_file.display(), e.message)
    })?;
    let Some(node) = tree.at_path(path) else {
        eprintln!("`{path}` is not set in {} (the default applies)", paths.config_file.display());
        return Ok(ExitCode::FAILURE);
    };
    let mut value = node.to_json();
    redact(&tree, path, &mut value);
    match value {
        serde_json::Value::String(s) => println!("{s}"),
        other => println!("{}", serde_json::to_string_pretty(&other)?),
    }
    Ok(ExitCode::SUCCESS)
}

fn set(paths: &Paths, path: &str, raw: &str) -> Result<ExitCode> {
    setup::init_state(paths)?;
    let (text, _) = setup::config_text(paths)?;
    let value = match json5::parse(raw) {
        Ok(node) => node.to_json(),
        Err(_) => serde_json::Value::String(raw.to_string()),
    };
    let updated = json5::edit::set(&text, path, &value).map_err(|e| anyhow!("cannot set `{path}`: {e}"))?;
    match setup::load_text(paths, &updated) {
        Ok(loaded) => {
            setup::write_private(&paths.config_file, &updated)?;
            for w in loaded.warnings.iter().filter(|w| w.path == path) {
                eprintln!("warning: {w}");
            }
            let tree = json5::parse(&updated).map_err(|e| anyhow!("{}", e.message))?;
            let shown = if secret_paths_in(&tree).iter().any(|s| *s == json5::split_path(path).join("."))
                && !raw.starts_with("${")
            {
                REDACTED.to_string()
            } else {
                value.to_string()
            };
            println!("Set {path} = {shown} in {}", paths.config_file.display());
            println!("Restart the gateway for the change to take effect.");
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            eprintln!("Nothing was changed: the new value would make the config invalid.");
            Ok(ExitCode::FAILURE)
        }
    }
}
