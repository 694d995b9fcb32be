//! The `tracing` layer behind OTLP log export (`diagnostics.otel.logs`): every event the log
//! file would hold becomes a [`LogRecord`], redacted the same way, and goes to the sinks the
//! gateway installed once the collector is known.
//!
//! The layer sits in the subscriber from the start and does nothing until [`install`] is
//! called, so installing the sinks later needs no second subscriber. It must never export
//! what the exporters log about themselves, nor the HTTP client's chatter underneath them: a
//! collector that is down would otherwise feed its own failures back into the queue.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use clawline_observe::otlp_logs::{LogRecord, LogSink, Severity};
use clawline_observe::trace::{Attr, current, now_unix_nanos};
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;

use crate::logging::Redactor;

static SINKS: OnceLock<Vec<Arc<dyn LogSink>>> = OnceLock::new();

/// Starts sending log records to `sinks` (the first call wins).
pub fn install(sinks: Vec<Arc<dyn LogSink>>) {
    if !sinks.is_empty() {
        let _ = SINKS.set(sinks);
    }
}

/// Targets whose events never leave as log records.
const QUIET: &[&str] = &["clawline_observe::otlp", "reqwest", "hyper", "h2", "rustls", "tower"];

pub struct ExportLayer {
    redactor: Redactor,
}

impl ExportLayer {
    pub fn new(redactor: Redactor) -> ExportLayer {
        ExportLayer { redactor }
    }
}

struct Fields<'a> {
    redactor: &'a Redactor,
    message: String,
    attributes: Vec<(&'static str, Attr)>,
}

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.record_str(field, &text);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let value = self.redactor.scrub(value);
        if field.name() == "message" {
            self.message = value;
        } else {
            self.attributes.push((field.name(), Attr::Str(value)));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.attributes.push((field.name(), Attr::Int(value)));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(v) => self.attributes.push((field.name(), Attr::Int(v))),
            Err(_) => self.attributes.push((field.name(), Attr::Str(value.to_string()))),
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.attributes.push((field.name(), Attr::Double(value)));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.attributes.push((field.name(), Attr::Bool(value)));
    }
}

fn severity(level: &tracing::Level) -> Severity {
    match *level {
        tracing::Level::TRACE => Severity::Trace,
        tracing::Level::DEBUG => Severity::Debug,
        tracing::Level::INFO => Severity::Info,
        tracing::Level::WARN => Severity::Warn,
        _ => Severity::Error,
    }
}

impl<S: tracing::Subscriber> Layer<S> for ExportLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        let Some(sinks) = SINKS.get() else { return };
        let meta = event.metadata();
        let target = meta.target();
        if QUIET.iter().any(|q| target.starts_with(q)) {
            return;
        }
        let mut fields = Fields { redactor: &self.redactor, message: String::new(), attributes: Vec::new() };
        event.record(&mut fields);
        let record = LogRecord {
            time_unix_nanos: now_unix_nanos(),
            severity: severity(meta.level()),
            target,
            body: fields.message,
            attributes: fields.attributes,
            trace: current(),
        };
        for sink in sinks {
            sink.emit(&record);
        }
    }
}
