//! Log records in OTLP/HTTP's JSON encoding (`ExportLogsServiceRequest`), the sinks they go
//! to, and, with the `otel` feature, the exporter that posts them to a collector's `/v1/logs`.
//!
//! A record is what one log line says: its time, severity, message and fields, already
//! redacted by whoever made it; this file never sees anything the log file would not hold.
//! [`StdoutLogs`] writes each record as one whole request per line, the form a collector's
//! OTLP JSON file receiver reads, for container log pipelines. Sinks must not block.

use std::io::Write;

use serde_json::{Value, json};

use crate::otlp::attr_value;
use crate::trace::{Attr, TraceContext};

/// OTLP's severity numbers for the levels `tracing` has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Trace = 1,
    Debug = 5,
    Info = 9,
    Warn = 13,
    Error = 17,
}

impl Severity {
    pub fn text(self) -> &'static str {
        match self {
            Severity::Trace => "TRACE",
            Severity::Debug => "DEBUG",
            Severity::Info => "INFO",
            Severity::Warn => "WARN",
            Severity::Error => "ERROR",
        }
    }
}

/// One log record.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub time_unix_nanos: u64,
    pub severity: Severity,
    /// Where in clawline it was logged (the module path).
    pub target: &'static str,
    pub body: String,
    /// The line's fields.
    pub attributes: Vec<(&'static str, Attr)>,
    /// The span the line belongs to, when it was logged inside a traced operation.
    pub trace: Option<TraceContext>,
}

/// Where log records go. Must not block.
pub trait LogSink: Send + Sync {
    fn emit(&self, record: &LogRecord);
}

fn record_json(r: &LogRecord) -> Value {
    let mut attributes = vec![json!({"key": "code.namespace", "value": {"stringValue": r.target}})];
    attributes.extend(r.attributes.iter().map(|(k, v)| json!({"key": k, "value": attr_value(v)})));
    let time = r.time_unix_nanos.to_string();
    let mut v = json!({
        "timeUnixNano": time,
        "observedTimeUnixNano": time,
        "severityNumber": r.severity as i32,
        "severityText": r.severity.text(),
        "body": {"stringValue": r.body},
        "attributes": attributes,
    });
    if let Some(t) = &r.trace {
        v["traceId"] = json!(t.trace_hex());
        v["spanId"] = json!(t.span_hex());
        v["flags"] = json!(u32::from(t.sampled));
    }
    v
}

/// One `ExportLogsServiceRequest` for `records`, from `service_name`.
pub fn logs_request(service_name: &str, records: &[LogRecord]) -> Value {
    json!({
        "resourceLogs": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": service_name}},
                {"key": "service.version", "value": {"stringValue": env!("CARGO_PKG_VERSION")}},
            ]},
            "scopeLogs": [{
                "scope": {"name": "clawline", "version": env!("CARGO_PKG_VERSION")},
                "logRecords": records.iter().map(record_json).collect::<Vec<_>>(),
            }],
        }],
    })
}

/// Writes each record to stdout as one request per line, from a thread of its own: a
/// reader that stops draining stdout holds up that thread, never the code that logged (lines
/// beyond its queue are dropped, as the log file's are).
pub struct StdoutLogs {
    tx: std::sync::mpsc::SyncSender<LogRecord>,
}

impl StdoutLogs {
    pub fn start(service_name: String) -> StdoutLogs {
        let (tx, rx) = std::sync::mpsc::sync_channel::<LogRecord>(10_000);
        let _ = std::thread::Builder::new().name("clawline-otlp-stdout".into()).spawn(move || {
            while let Ok(record) = rx.recv() {
                let mut line = logs_request(&service_name, std::slice::from_ref(&record)).to_string();
                line.push('\n');
                // One write per line, so lines never interleave with other output.
                let _ = std::io::stdout().lock().write_all(line.as_bytes());
            }
        });
        StdoutLogs { tx }
    }
}

impl LogSink for StdoutLogs {
    fn emit(&self, record: &LogRecord) {
        let _ = self.tx.try_send(record.clone());
    }
}

#[cfg(feature = "otel")]
pub use exporter::LogExporter;

#[cfg(feature = "otel")]
mod exporter {
    use super::{LogRecord, LogSink, logs_request};
    use crate::otlp_batch::{Batcher, Destination};

    /// Posts log records to a collector; cheap, non-blocking.
    pub struct LogExporter {
        batch: Batcher<LogRecord>,
    }

    impl LogExporter {
        /// Starts exporting to `to` on the current Tokio runtime.
        pub fn start(to: Destination, service_name: String, http: reqwest::Client) -> LogExporter {
            let batch = Batcher::start(to, http, "log records", move |r: &[LogRecord]| logs_request(&service_name, r));
            LogExporter { batch }
        }

        /// Records dropped because the queue was full.
        pub fn dropped(&self) -> u64 {
            self.batch.dropped()
        }
    }

    impl LogSink for LogExporter {
        fn emit(&self, record: &LogRecord) {
            self.batch.push(record.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_json_mapping() {
        let ctx = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let r = LogRecord {
            time_unix_nanos: 1_700_000_000_000_000_001,
            severity: Severity::Warn,
            target: "clawline_channels::delivery",
            body: "could not send".into(),
            attributes: vec![("attempts", Attr::Int(3)), ("ratio", Attr::Double(f64::NAN))],
            trace: Some(ctx),
        };
        let v = logs_request("svc", &[r]);
        let rec = &v["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
        assert_eq!(rec["timeUnixNano"], "1700000000000000001");
        assert_eq!((rec["severityNumber"].as_i64(), rec["severityText"].as_str()), (Some(13), Some("WARN")));
        assert_eq!(rec["body"], json!({"stringValue": "could not send"}));
        assert_eq!(rec["attributes"][0]["value"]["stringValue"], "clawline_channels::delivery");
        assert_eq!(rec["attributes"][1], json!({"key": "attempts", "value": {"intValue": "3"}}));
        // JSON has no NaN: a non-finite number travels as text.
        assert_eq!(rec["attributes"][2]["value"], json!({"stringValue": "NaN"}));
        assert_eq!(
            (rec["traceId"].as_str(), rec["spanId"].as_str()),
            (Some("4bf92f3577b34da6a3ce929d0e0e4736"), Some("00f067aa0ba902b7"))
        );
        assert_eq!(v["resourceLogs"][0]["resource"]["attributes"][0]["value"]["stringValue"], "svc");
    }
}
