//! The `clawline` binary: argument parsing and dispatch. Each command lives in `commands/`.
//!
//! Errors reach the user as one clear message with what to do next; `anyhow` is used only here,
//! at the edge.

mod audit_log;
mod cli;
mod client;
mod commands;
mod crash;
mod log_export;
mod logging;
mod setup;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8)))
        .enable_all()
        .thread_name("clawline-rt")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
