//! `clawline memory status|index|search`: what an agent's memory index holds and in which mode
//! search runs (and why), bringing it up to date with a progress bar, and searching it the way
//! the `memory_search` tool does.
//!
//! The index is the one the gateway uses (`<state>/memory/<agent>.sqlite`); SQLite's WAL lets
//! both work on it at once.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clawline_memory::index::{MemoryIndex, Mode, Phase, Progress, Status};
use serde_json::json;

use crate::cli::MemoryCommand;
use crate::setup::{self, Paths};

fn open(paths: &Paths, agent: Option<&str>) -> Result<(MemoryIndex, String, std::path::PathBuf)> {
    let loaded = setup::load_config(paths)?;
    let config = loaded.config;
    let id = agent.map(String::from).unwrap_or_else(|| config.default_agent.clone());
    let settings = config.agent(&id).ok_or_else(|| {
        anyhow!(
            "no agent `{id}` in {} (agents: {})",
            paths.config_file.display(),
            config.agents.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    if !config.memory.enabled {
        return Err(anyhow!("memory is off (memory.search.enabled: false in {})", paths.config_file.display()));
    }
    clawline_store::ensure_private_dir(&paths.state.root)?;
    let (workspace, _) = clawline_agent::workspace::ensure(&settings.workspace)
        .with_context(|| format!("cannot prepare the workspace {}", settings.workspace.display()))?;
    let http = clawline_providers::build_http_client()?;
    let store = if config.memory.index_sessions { Some(setup::open_store(paths)?) } else { None };
    let index = clawline_agent::memory::open_index(&config, &id, &workspace, http, store.as_ref())?;
    Ok((index, id, workspace))
}

/// Downloads an `hf:` model the config names, once, with a progress bar; the gateway would do
/// the same at its first embedding, but here the person waiting can see it.
async fn ensure_model(paths: &Paths) -> Result<()> {
    use clawline_core::config::memory::Embedding;
    use clawline_providers::hf_download::{download_model, is_complete};
    let config = setup::load_config(paths)?.config;
    let Ok(Embedding::Local { model, download: Some(hf) }) = &config.memory.embedding else { return Ok(()) };
    if is_complete(model) {
        return Ok(());
    }
    eprintln!("Downloading hf:{}@{} from {} into {}", hf.repo, hf.revision, hf.endpoint, model.display());
    let tty = std::io::stderr().is_terminal();
    let bar = move |p: clawline_providers::hf_download::DownloadProgress| {
        if let (true, Some(total)) = (tty, p.total.filter(|t| *t > 0)) {
            let width = 30;
            let filled = (p.done.min(total) * width / total) as usize;
            let mut err = std::io::stderr();
            let _ = write!(
                err,
                "\r{:>18} [{}{}] {:.1}/{:.1} MB",
                p.file,
                "#".repeat(filled),
                " ".repeat(width as usize - filled),
                p.done as f64 / 1e6,
                total as f64 / 1e6
            );
            if p.done >= total {
                let _ = writeln!(err);
            }
            let _ = err.flush();
        }
    };
    download_model(hf, model, &bar)
        .await
        .map_err(|e| anyhow!("{e}\n(memory.search.model in {})", paths.config_file.display()))
}

/// A one-line progress bar on standard error, when it is a terminal.
fn progress_bar() -> impl Fn(Progress) + Sync {
    let tty = std::io::stderr().is_terminal();
    move |p: Progress| {
        if !tty || p.total == 0 {
            return;
        }
        let what = match p.phase {
            Phase::Files => "files",
            Phase::Batch => "batch API",
            Phase::Embeddings => "embeddings",
        };
        let width = 30;
        let filled = p.done * width / p.total.max(1);
        let mut err = std::io::stderr();
        let _ =
            write!(err, "\r{what:>10} [{}{}] {}/{}", "#".repeat(filled), " ".repeat(width - filled), p.done, p.total);
        if p.done >= p.total {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}

fn mode_line(mode: &Mode) -> String {
    match mode {
        Mode::Hybrid => "hybrid (vectors + full text)".into(),
        Mode::TextOnly { reason } => format!("text-only — {reason}"),
    }
}

fn print_status(id: &str, workspace: &std::path::Path, s: &Status, sessions_asked: bool) {
    println!("Memory of agent {id} ({})", workspace.display());
    println!("  mode       {}", mode_line(&s.mode));
    match (&s.provider, &s.model) {
        (Some(p), Some(m)) => {
            println!("  embedder   {p} / {m}{}", s.dims.map(|d| format!(" ({d} dimensions)")).unwrap_or_default())
        }
        _ => println!("  embedder   none"),
    }
    println!("  files      {} indexed, {} skipped", s.files, s.skipped.len());
    println!("  chunks     {} ({} with vectors)", s.chunks, s.vectors);
    println!("  tokenizer  {}", s.tokenizer);
    println!(
        "  last sync  {}",
        s.last_sync_ms.map_or("never (run `clawline memory index`)".to_string(), clawline_core::time::iso8601_from_ms)
    );
    if sessions_asked {
        println!("  sessions   {} conversation(s) indexed", s.sessions);
    }
    for sk in &s.skipped {
        println!("  skipped    {} — {}", sk.path, sk.reason);
    }
}

pub async fn run(paths: &Paths, cmd: MemoryCommand) -> Result<ExitCode> {
    match cmd {
        MemoryCommand::Status { agent, json } => {
            let (index, id, workspace) = open(paths, agent.as_deref())?;
            let status = index.status().await?;
            let sessions = setup::load_config(paths)?.config.memory.index_sessions;
            if json {
                println!("{}", serde_json::to_string_pretty(&json!({"agent": id, "status": status}))?);
            } else {
                print_status(&id, &workspace, &status, sessions);
            }
            Ok(ExitCode::SUCCESS)
        }
        MemoryCommand::Index { agent, force, json } => {
            ensure_model(paths).await?;
            let (index, id, _) = open(paths, agent.as_deref())?;
            let report = index.sync(force, &progress_bar()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&json!({"agent": id, "report": report}))?);
            } else {
                println!(
                    "Indexed {} file(s) for agent {id}: {} changed, {} unchanged, {} removed; chunks {} added, {} removed, {} kept; {} embedded, {} from the cache.",
                    report.files,
                    report.files_indexed,
                    report.files_unchanged,
                    report.files_removed,
                    report.chunks_added,
                    report.chunks_removed,
                    report.chunks_kept,
                    report.embedded,
                    report.cache_hits
                );
                if report.batch_embedded > 0 {
                    println!("{} embedded through the provider's batch API.", report.batch_embedded);
                }
                if report.sessions > 0 || report.sessions_removed > 0 {
                    println!(
                        "Conversations: {} of {} indexed again, {} removed.",
                        report.sessions_indexed, report.sessions, report.sessions_removed
                    );
                }
                for sk in &report.skipped {
                    println!("  skipped {} — {}", sk.path, sk.reason);
                }
            }
            if let Some(e) = &report.batch_error {
                eprintln!("warning: the batch API was not used ({e}); the chunks were embedded directly.");
            }
            if let Some(e) = &report.sessions_error {
                eprintln!("warning: past conversations were not indexed: {e}");
            }
            if let Some(e) = &report.embed_error {
                eprintln!(
                    "warning: embedding failed: {e}\nThe chunks without vectors are found by text only; run `clawline memory index` again once the provider works."
                );
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
        MemoryCommand::Search { query, agent, json, max } => {
            ensure_model(paths).await?;
            let (index, id, _) = open(paths, agent.as_deref())?;
            index.sync(false, &|_| {}).await?;
            let outcome = index.search(&query).await?;
            let results: Vec<_> = outcome.results.iter().take(max.unwrap_or(usize::MAX)).collect();
            if json {
                let list: Vec<_> = results
                    .iter()
                    .map(|s| {
                        json!({"path": s.candidate.path, "startLine": s.candidate.start_line, "endLine": s.candidate.end_line,
                               "score": s.score, "exact": s.exact, "text": s.candidate.text})
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"agent": id, "mode": outcome.mode, "results": list}))?
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!("Search: {}", mode_line(&outcome.mode));
            if results.is_empty() {
                println!("No memory matches \"{query}\".");
            }
            for (i, s) in results.iter().enumerate() {
                let c = &s.candidate;
                println!("{}. {}:{}-{}  score {:.3}", i + 1, c.path, c.start_line, c.end_line, s.score);
                for line in c.text.lines().filter(|l| !l.trim().is_empty()).take(4) {
                    let short: String = line.chars().take(110).collect();
                    println!("   {short}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
