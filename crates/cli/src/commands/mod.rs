//! One file per command.

mod agent;
mod audit;
mod auth;
mod channels;
mod config;
mod doctor;
mod gateway;
mod memory;
mod models;
mod pairing;
mod secrets;
mod sessions;
mod token;
mod usage;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::setup;

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let paths = setup::resolve_paths(&cli)?;
    let audited = crate::audit_log::of(&cli.command);
    let result = dispatch(&paths, cli.command).await;
    if let Some((action, target)) = audited {
        let outcome = match &result {
            Ok(code) if *code == ExitCode::SUCCESS => "ok".to_string(),
            Ok(_) => "failed".to_string(),
            Err(e) => format!("error: {e}"),
        };
        crate::audit_log::record(&paths, action, &target, &outcome).await;
    }
    result
}

async fn dispatch(paths: &setup::Paths, command: Command) -> Result<ExitCode> {
    let paths = paths.clone();
    match command {
        Command::Gateway(args) => gateway::run(&paths, args).await,
        Command::Agent(args) => agent::run(&paths, args).await,
        Command::Config(cmd) => config::run(&paths, cmd).await,
        Command::Sessions(cmd) => sessions::run(&paths, cmd).await,
        Command::Doctor(args) => doctor::run(&paths, args).await,
        Command::Token(args) => token::run(&paths, args).await,
        Command::Auth(cmd) => auth::run(&paths, cmd).await,
        Command::Models(cmd) => models::run(&paths, cmd).await,
        Command::Memory(cmd) => memory::run(&paths, cmd).await,
        Command::Channels(cmd) => channels::run(&paths, cmd).await,
        Command::Pairing(cmd) => pairing::run(&paths, cmd).await,
        Command::Secrets(cmd) => secrets::run(&paths, cmd).await,
        Command::Usage(args) => usage::run(&paths, args).await,
        Command::Audit(args) => audit::run(&paths, args).await,
    }
}
