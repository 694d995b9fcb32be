//! Logs: human-readable lines on stderr (colored only on a terminal) and JSON lines in
//! `<state>/logs/clawline-YYYY-MM-DD.jsonl`, written by a background thread so the async
//! runtime never waits on the disk. Every line passes through redaction first: the gateway
//! token, provider keys and passwords are replaced by `[redacted]` wherever they appear.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, RwLock};

use clawline_core::config::schema::LogLevel;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Secret values to scrub, shared by all writers (filled once the config is loaded).
#[derive(Clone, Default)]
pub struct Redactor(Arc<RwLock<Vec<String>>>);

impl Redactor {
    pub fn add(&self, secrets: impl IntoIterator<Item = String>) {
        let mut list = self.0.write().unwrap_or_else(|p| p.into_inner());
        for s in secrets {
            if s.len() >= 4 && !list.contains(&s) {
                list.push(s);
            }
        }
        // Longest first, so a secret that contains another is replaced whole.
        list.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    pub fn scrub(&self, line: &str) -> String {
        let list = self.0.read().unwrap_or_else(|p| p.into_inner());
        let mut out = line.to_string();
        for s in list.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "[redacted]");
            }
        }
        out
    }
}

/// Where a finished line goes.
#[derive(Clone)]
enum Sink {
    Stderr,
    File(SyncSender<String>),
}

/// A writer that collects one event, scrubs it, and hands it to its sink on drop.
pub struct LineWriter {
    buf: Vec<u8>,
    sink: Sink,
    redactor: Redactor,
}

impl Write for LineWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let line = self.redactor.scrub(&String::from_utf8_lossy(&self.buf));
        crate::crash::remember(&line);
        match &self.sink {
            Sink::Stderr => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
            Sink::File(tx) => {
                if let Err(TrySendError::Full(_)) = tx.try_send(line) {
                    // The disk is far behind; dropping a log line beats stalling a request.
                }
            }
        }
    }
}

#[derive(Clone)]
struct Maker {
    sink: Sink,
    redactor: Redactor,
}

impl<'a> MakeWriter<'a> for Maker {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        LineWriter { buf: Vec::with_capacity(256), sink: self.sink.clone(), redactor: self.redactor.clone() }
    }
}

/// Starts the file-writing thread for `dir`. Files rotate daily (UTC).
fn file_sink(dir: PathBuf) -> SyncSender<String> {
    let (tx, rx) = sync_channel::<String>(10_000);
    let _ = std::thread::Builder::new().name("clawline-log".into()).spawn(move || {
        let _ = clawline_store::ensure_private_dir(&dir);
        let mut current: Option<(String, std::fs::File)> = None;
        while let Ok(line) = rx.recv() {
            let day = clawline_core::time::iso8601_from_ms(clawline_store::now_ms())[..10].to_string();
            if current.as_ref().is_none_or(|(d, _)| *d != day) {
                let path = dir.join(format!("clawline-{day}.jsonl"));
                let mut opts = std::fs::OpenOptions::new();
                opts.create(true).append(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                current = opts.open(&path).ok().map(|f| (day, f));
            }
            if let Some((_, f)) = current.as_mut() {
                let _ = f.write_all(line.as_bytes());
            }
        }
    });
    tx
}

/// Installs the global subscriber. `CLAWLINE_LOG` (or `RUST_LOG`) overrides the levels, e.g.
/// `CLAWLINE_LOG=debug`.
pub fn init(console: LogLevel, file: Option<(LogLevel, PathBuf)>, redactor: Redactor) {
    let override_filter = std::env::var("CLAWLINE_LOG").or_else(|_| std::env::var("RUST_LOG")).ok();
    let filter = |level: LogLevel| {
        override_filter.as_deref().and_then(|f| EnvFilter::try_new(f).ok()).unwrap_or_else(|| {
            EnvFilter::new(format!("{},hyper=warn,reqwest=warn,h2=warn,rustls=warn", level.as_str()))
        })
    };
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let console_layer = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_target(false)
        .with_writer(Maker { sink: Sink::Stderr, redactor: redactor.clone() })
        .with_filter(filter(console));
    // Log export (`diagnostics.otel.logs`) sees what the log file sees, once it is switched on.
    let export_level = file.as_ref().map_or(console, |(level, _)| *level);
    let export_layer = crate::log_export::ExportLayer::new(redactor.clone()).with_filter(filter(export_level));
    let file_layer = file.map(|(level, dir)| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(Maker { sink: Sink::File(file_sink(dir)), redactor })
            .with_filter(filter(level))
    });
    let _ = tracing_subscriber::registry().with(console_layer).with(file_layer).with(export_layer).try_init();
}

use tracing_subscriber::Layer;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_every_registered_secret() {
        let r = Redactor::default();
        r.add(["sk-live-abcdef".to_string(), "tok123456".to_string(), "ab".to_string()]);
        assert_eq!(r.scrub("key=sk-live-abcdef token tok123456 ab"), "key=[redacted] token [redacted] ab");
    }
}
