//! `clawline config validate | get | set`.

use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clawline_core::config::redact;
use clawline_core::json5;
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
    redact::redact_value(&tree, path, &mut value, REDACTED);
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
            let shown = if redact::is_secret_path(&tree, path) && !raw.starts_with("${") {
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
