//! Crash reports: a panic anywhere in the process writes a report to `<state>/crashes/`, and
//! the next start says so.
//!
//! A report holds the version, the time, the thread, the panic message and where it happened,
//! a backtrace, a hash of the config file (not the file), and the last log lines. Everything
//! in it passes through the log redactor first, so a key that reached a panic message or a
//! log line is replaced like it is in the logs. Reports are plain text, readable by the owner
//! only; at most [`KEEP`] are kept and at most [`PER_PROCESS`] written by one process (a task
//! that panics in a loop must not fill the disk).
//!
//! It must not try to recover anything: the hook writes, then the default hook runs and the
//! panic goes on as it would have.

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::logging::Redactor;

/// Reports kept in the folder; older ones are deleted when a new one is written.
pub const KEEP: usize = 20;
/// Reports one process writes at most.
pub const PER_PROCESS: usize = 5;
/// Log lines kept in memory for the next report.
const RECENT_LINES: usize = 100;

static RECENT: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());
static WRITTEN: AtomicUsize = AtomicUsize::new(0);
static CONTEXT: OnceLock<Context> = OnceLock::new();

struct Context {
    dir: PathBuf,
    config_hash: String,
    redactor: Redactor,
}

/// Keeps a (redacted) log line for the next report. Called by the log writer for every line.
pub fn remember(line: &str) {
    let mut recent = RECENT.lock().unwrap_or_else(|p| p.into_inner());
    if recent.len() == RECENT_LINES {
        recent.pop_front();
    }
    recent.push_back(line.trim_end().to_string());
}

/// The folder reports go to.
pub fn dir(state: &Path) -> PathBuf {
    state.join("crashes")
}

/// A short hash of the config file's bytes, so two reports can be told to come from the same
/// config without holding it.
pub fn config_hash(config_file: &Path) -> String {
    match std::fs::read(config_file) {
        Ok(bytes) => {
            let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
            let hex: String = d.as_ref().iter().take(12).map(|b| format!("{b:02x}")).collect();
            format!("sha256:{hex}")
        }
        Err(_) => "none (no config file)".into(),
    }
}

/// Installs the panic hook for this process.
pub fn install(state: &Path, config_file: &Path, redactor: Redactor) {
    let ctx = Context { dir: dir(state), config_hash: config_hash(config_file), redactor };
    if CONTEXT.set(ctx).is_err() {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some(ctx) = CONTEXT.get()
            && WRITTEN.fetch_add(1, Ordering::SeqCst) < PER_PROCESS
        {
            match write_report(ctx, info) {
                Ok(path) => eprintln!("clawline: a crash report was written to {}", path.display()),
                Err(e) => eprintln!("clawline: could not write a crash report: {e}"),
            }
        }
        previous(info);
    }));
}

fn panic_message(info: &std::panic::PanicHookInfo<'_>) -> String {
    if let Some(s) = info.payload().downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = info.payload().downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".into()
    }
}

fn write_report(ctx: &Context, info: &std::panic::PanicHookInfo<'_>) -> std::io::Result<PathBuf> {
    clawline_store::ensure_private_dir(&ctx.dir).map_err(|e| std::io::Error::other(e.to_string()))?;
    let now = clawline_store::now_ms();
    let thread = std::thread::current();
    let mut text = String::new();
    text.push_str("clawline crash report\n");
    text.push_str(&format!("version: {}\n", env!("CARGO_PKG_VERSION")));
    text.push_str(&format!("time: {}\n", clawline_core::time::iso8601_from_ms(now)));
    text.push_str(&format!("pid: {}\n", std::process::id()));
    text.push_str(&format!("thread: {}\n", thread.name().unwrap_or("(unnamed)")));
    text.push_str(&format!("os: {} {}\n", std::env::consts::OS, std::env::consts::ARCH));
    text.push_str(&format!("config: {}\n", ctx.config_hash));
    text.push_str(&format!("panic: {}\n", panic_message(info)));
    if let Some(l) = info.location() {
        text.push_str(&format!("at: {}:{}:{}\n", l.file(), l.line(), l.column()));
    }
    text.push_str("\nbacktrace:\n");
    text.push_str(&std::backtrace::Backtrace::force_capture().to_string());
    text.push_str("\nlast log lines:\n");
    for line in RECENT.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        text.push_str(line);
        text.push('\n');
    }
    let text = ctx.redactor.scrub(&text);
    let name =
        format!("crash-{}-{}.txt", clawline_core::time::iso8601_from_ms(now).replace(':', ""), std::process::id());
    let path = ctx.dir.join(name);
    let mut opts = std::fs::OpenOptions::new();
    opts.create_new(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    prune(&ctx.dir);
    Ok(path)
}

/// Report files, oldest first.
pub fn reports(state: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir(state)) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("crash-") && n.ends_with(".txt"))
        })
        .collect();
    files.sort();
    files
}

fn prune(dir: &Path) {
    let Some(state) = dir.parent() else { return };
    let files = reports(state);
    for old in files.iter().take(files.len().saturating_sub(KEEP)) {
        let _ = std::fs::remove_file(old);
    }
}

/// Reports written since the last start looked (and marks them seen).
pub fn unseen(state: &Path) -> Vec<PathBuf> {
    let marker = dir(state).join(".seen");
    let seen = std::fs::read_to_string(&marker).unwrap_or_default();
    let seen = seen.trim();
    let new: Vec<PathBuf> = reports(state)
        .into_iter()
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n > seen))
        .collect();
    if let Some(last) = new.last().and_then(|p| p.file_name()).and_then(|n| n.to_str()) {
        let _ = std::fs::write(&marker, last);
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unseen_reports_are_mentioned_once_and_old_ones_pruned() {
        let state = tempfile::tempdir().unwrap();
        let d = dir(state.path());
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..KEEP + 3 {
            std::fs::write(d.join(format!("crash-2026-12-03T10{i:04}Z-1.txt")), "x").unwrap();
        }
        prune(&d);
        assert_eq!(reports(state.path()).len(), KEEP);
        assert_eq!(unseen(state.path()).len(), KEEP);
        assert!(unseen(state.path()).is_empty());
        std::fs::write(d.join("crash-2026-12-04T000000Z-2.txt"), "x").unwrap();
        assert_eq!(unseen(state.path()).len(), 1);
        remember("a line");
        assert!(RECENT.lock().unwrap().iter().any(|l| l == "a line"));
    }
}
