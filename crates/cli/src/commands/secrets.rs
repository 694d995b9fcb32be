//! `clawline secrets set|list|rm`: secrets kept encrypted in the state database, for config
//! keys that would otherwise hold them in clear text.
//!
//! A config value `{ source: "store", id: "<ID>" }` (OpenClaw's SecretRef) reads the secret
//! stored here under `<ID>`, sealed with the master key like auth profiles and the gateway
//! token. Values never appear in arguments (they would land in shell history) or in output.

use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::cli::SecretsCommand;
use crate::setup::{self, Paths, STORED_SECRET_PREFIX};

/// Whether `id` can name a stored secret.
fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':'));
    if !ok {
        bail!("`{id}` is not a secret id: use 1 to 128 letters, digits, `.`, `_`, `-`, `/` or `:`");
    }
    Ok(())
}

pub async fn run(paths: &Paths, cmd: SecretsCommand) -> Result<ExitCode> {
    setup::init_state(paths)?;
    let store = setup::open_store(paths)?;
    match cmd {
        SecretsCommand::Set { id, from_env } => {
            check_id(&id)?;
            let value = super::auth::read_secret(from_env.as_deref())?;
            let key = setup::master_key(paths)?;
            store.put_secret(&format!("{STORED_SECRET_PREFIX}{id}"), &value, &key).await?;
            println!("Stored `{id}` (encrypted). Use it in the config as:");
            println!("  {{ source: \"store\", id: \"{id}\" }}");
            println!("e.g. channels.telegram.botToken. A running gateway reads it at its next start.");
            Ok(ExitCode::SUCCESS)
        }
        SecretsCommand::List { json } => {
            let names = store.secret_names(STORED_SECRET_PREFIX).await?;
            let rows: Vec<(String, i64)> =
                names.into_iter().map(|(n, at)| (n[STORED_SECRET_PREFIX.len()..].to_string(), at)).collect();
            if json {
                let list: Vec<_> = rows
                    .iter()
                    .map(|(id, at)| serde_json::json!({"id": id, "updatedAt": clawline_core::time::iso8601_from_ms(*at)}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&serde_json::json!({"secrets": list}))?);
            } else if rows.is_empty() {
                println!("No stored secrets. Add one with: clawline secrets set <ID> --from-env VAR");
            } else {
                for (id, at) in rows {
                    println!("{id}  (set {})", clawline_core::time::iso8601_from_ms(at));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SecretsCommand::Rm { id } => {
            check_id(&id)?;
            if store.delete_secret(&format!("{STORED_SECRET_PREFIX}{id}")).await? {
                println!("Removed `{id}`. Config keys that name it will fail to load until it is set again.");
                Ok(ExitCode::SUCCESS)
            } else {
                bail!("no stored secret `{id}` (see `clawline secrets list`)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_plain_names() {
        assert!(check_id("telegram-bot").is_ok());
        assert!(check_id("channels/slack:app").is_ok());
        assert!(check_id("").is_err());
        assert!(check_id("has space").is_err());
        assert!(check_id(&"x".repeat(129)).is_err());
    }
}
