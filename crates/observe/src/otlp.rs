//! Spans in OTLP/HTTP's JSON encoding (the protobuf JSON mapping: ids as lowercase hex,
//! 64-bit integers and nanosecond times as decimal strings, enums as numbers), and, with the
//! `otel` feature, the exporter that posts them to a collector's `/v1/traces`.
//!
//! The exporter samples, then hands spans to the shared posting loop (`otlp_batch`), so it
//! never holds up a run.

use serde_json::{Value, json};

use crate::trace::{Attr, Span};

/// An attribute's `AnyValue`. JSON has no NaN or infinity, so those travel as text.
pub(crate) fn attr_value(v: &Attr) -> Value {
    match v {
        Attr::Str(s) => json!({"stringValue": s}),
        Attr::Int(i) => json!({"intValue": i.to_string()}),
        Attr::Double(d) if d.is_finite() => json!({"doubleValue": d}),
        Attr::Double(d) => json!({"stringValue": d.to_string()}),
        Attr::Bool(b) => json!({"boolValue": b}),
    }
}

fn attr_json(key: &str, v: &Attr) -> Value {
    json!({"key": key, "value": attr_value(v)})
}

fn span_json(s: &Span) -> Value {
    let mut v = json!({
        "traceId": s.context.trace_hex(),
        "spanId": s.context.span_hex(),
        "name": s.name,
        "kind": s.kind as i32,
        "startTimeUnixNano": s.start_unix_nanos.to_string(),
        "endTimeUnixNano": s.end_unix_nanos.max(s.start_unix_nanos).to_string(),
        "attributes": s.attributes.iter().map(|(k, a)| attr_json(k, a)).collect::<Vec<_>>(),
        "status": match &s.error {
            None => json!({"code": 1}),
            Some(m) => json!({"code": 2, "message": m}),
        },
    });
    if let Some(p) = s.parent_span_id {
        v["parentSpanId"] = json!(p.iter().map(|b| format!("{b:02x}")).collect::<String>());
    }
    v
}

/// The sampling threshold for `rate` (0 to 1) over the 56 trace-id bits [`sampled`] reads.
pub fn sample_threshold(rate: f64) -> u64 {
    let rate = rate.clamp(0.0, 1.0);
    if rate >= 1.0 { 1 << 56 } else { (rate * (1u64 << 56) as f64) as u64 }
}

/// Whether `span` is exported: its trace is sampled (the caller's `traceparent` flag is
/// honoured) and its trace id falls under `threshold`. The last 7 bytes of the id are read
/// (W3C's "random" part; a UUID v4's fixed bits are all in the first 9), so a trace is kept or
/// dropped whole, here and in any other service sampling the same way.
pub fn sampled(span: &Span, threshold: u64) -> bool {
    if !span.context.sampled {
        return false;
    }
    let mut low = [0u8; 8];
    low[1..].copy_from_slice(&span.context.trace_id[9..]);
    u64::from_be_bytes(low) < threshold
}

/// One `ExportTraceServiceRequest` for `spans`, from `service_name`.
pub fn traces_request(service_name: &str, spans: &[Span]) -> Value {
    json!({
        "resourceSpans": [{
            "resource": {"attributes": [
                attr_json("service.name", &Attr::Str(service_name.to_string())),
                attr_json("service.version", &Attr::Str(env!("CARGO_PKG_VERSION").to_string())),
            ]},
            "scopeSpans": [{
                "scope": {"name": "clawline", "version": env!("CARGO_PKG_VERSION")},
                "spans": spans.iter().map(span_json).collect::<Vec<_>>(),
            }],
        }],
    })
}

#[cfg(feature = "otel")]
pub use exporter::Exporter;

#[cfg(feature = "otel")]
mod exporter {
    use super::traces_request;
    use crate::otlp_batch::{Batcher, Destination};
    use crate::trace::{Span, SpanSink};

    /// The span exporter's handle: cheap, non-blocking.
    pub struct Exporter {
        batch: Batcher<Span>,
        sample_below: u64,
    }

    impl Exporter {
        /// Starts exporting to `to` on the current Tokio runtime, keeping `sample_rate` (0 to 1)
        /// of the traces (by trace id, so a trace is kept or dropped whole).
        pub fn start(
            to: Destination,
            service_name: String,
            sample_rate: f64,
            http: reqwest::Client,
        ) -> std::sync::Arc<Exporter> {
            let batch = Batcher::start(to, http, "spans", move |spans: &[Span]| traces_request(&service_name, spans));
            std::sync::Arc::new(Exporter { batch, sample_below: super::sample_threshold(sample_rate) })
        }

        /// Spans dropped because the queue was full.
        pub fn dropped(&self) -> u64 {
            self.batch.dropped()
        }
    }

    impl SpanSink for Exporter {
        fn export(&self, span: Span) {
            if super::sampled(&span, self.sample_below) {
                self.batch.push(span);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{SpanKind, TraceContext};

    #[test]
    fn sampling_keeps_the_asked_share_and_honours_the_callers_flag() {
        let span = |ctx: TraceContext| Span {
            context: ctx,
            parent_span_id: None,
            name: "x".into(),
            kind: SpanKind::Internal,
            start_unix_nanos: 0,
            end_unix_nanos: 0,
            attributes: vec![],
            error: None,
        };
        for rate in [0.0, 0.1, 0.25, 0.6, 1.0] {
            let t = sample_threshold(rate);
            let kept = (0..10_000).filter(|_| sampled(&span(TraceContext::root(true)), t)).count();
            let share = kept as f64 / 10_000.0;
            assert!((share - rate).abs() < 0.03, "rate {rate}: kept {share}");
        }
        let unsampled = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!sampled(&span(unsampled), sample_threshold(1.0)));
    }

    #[test]
    fn encodes_the_json_mapping() {
        let root = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let child = root.child();
        let span = Span {
            context: child,
            parent_span_id: Some(root.span_id),
            name: "chat m".into(),
            kind: SpanKind::Client,
            start_unix_nanos: 1_700_000_000_000_000_000,
            end_unix_nanos: 1_700_000_000_500_000_000,
            attributes: vec![("gen_ai.usage.input_tokens", Attr::Int(12)), ("ok", Attr::Bool(true))],
            error: Some("rate_limited".into()),
        };
        let v = traces_request("clawline", &[span]);
        let s = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(s["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(s["parentSpanId"], "00f067aa0ba902b7");
        assert_eq!(s["spanId"].as_str().map(str::len), Some(16));
        assert_eq!(s["kind"], 3);
        assert_eq!(s["startTimeUnixNano"], "1700000000000000000");
        assert_eq!(s["attributes"][0], json!({"key": "gen_ai.usage.input_tokens", "value": {"intValue": "12"}}));
        assert_eq!(s["status"], json!({"code": 2, "message": "rate_limited"}));
        assert_eq!(v["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"], "clawline");
    }
}
