//! The channel layer's part of a trace, when spans are exported (`diagnostics.otel`).
//!
//! Answering one message is a `process <channel>` span (OpenTelemetry's messaging
//! conventions, kind consumer); the agent's run continues it, and each reply queued for the
//! message carries its `traceparent` in the outbound row, so every delivery attempt is a
//! `send <channel>` span (kind producer) in the same trace, however long after the turn it
//! happens and across restarts. Rows queued outside a message (a pairing approval) get a
//! trace of their own. Spans hold names, ids, counts and outcomes, never message text or the
//! person's platform ids. Without a sink nothing is made.

use std::sync::{Arc, OnceLock};

use clawline_observe::trace::{Attr, Span, SpanKind, SpanSink, TraceContext, now_unix_nanos};
use clawline_store::OutboundRow;

/// Where the channel layer's spans go; empty until the gateway sets a sink. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Spans(Arc<OnceLock<Arc<dyn SpanSink>>>);

/// A `process` span under way.
pub(crate) struct Processing {
    pub context: TraceContext,
    start: u64,
}

impl Spans {
    pub fn set(&self, sink: Arc<dyn SpanSink>) {
        let _ = self.0.set(sink);
    }

    /// Starts the span for answering one message (`None` when nothing is exported).
    pub fn begin_process(&self) -> Option<Processing> {
        self.0.get()?;
        Some(Processing { context: TraceContext::root(true), start: now_unix_nanos() })
    }

    /// Ends it: `outcome` is `replied`, `silent`, `failed` or `gave_up`.
    pub fn end_process(&self, p: Processing, channel: &str, account: &str, agent: &str, outcome: &str) {
        let Some(sink) = self.0.get() else { return };
        sink.export(Span {
            context: p.context,
            parent_span_id: None,
            name: format!("process {channel}"),
            kind: SpanKind::Consumer,
            start_unix_nanos: p.start,
            end_unix_nanos: now_unix_nanos(),
            attributes: vec![
                ("messaging.system", Attr::Str(channel.to_string())),
                ("messaging.operation.type", Attr::Str("process".into())),
                ("messaging.operation.name", Attr::Str("process".into())),
                ("clawline.channel.account", Attr::Str(account.to_string())),
                ("gen_ai.agent.id", Attr::Str(agent.to_string())),
                ("clawline.outcome", Attr::Str(outcome.to_string())),
            ],
            error: (outcome == "failed").then(|| "the run failed".to_string()),
        });
    }

    /// One delivery attempt of `row`, from `took.0` to `took.1` (Unix ns): `Ok` with the
    /// platform's message id, or the error kind and whether the row is given up on.
    pub fn send(&self, row: &OutboundRow, took: (u64, u64), outcome: Result<&str, (&str, bool)>) {
        let Some(sink) = self.0.get() else { return };
        let parent = row.traceparent.as_deref().and_then(TraceContext::parse);
        let (context, parent_span_id) = match parent {
            Some(p) => (p.child(), Some(p.span_id)),
            None => (TraceContext::root(true), None),
        };
        let mut attributes = vec![
            ("messaging.system", Attr::Str(row.channel.clone())),
            ("messaging.operation.type", Attr::Str("send".into())),
            ("messaging.operation.name", Attr::Str("send".into())),
            ("clawline.channel.account", Attr::Str(row.account_id.clone())),
            ("clawline.delivery.attempt", Attr::Int(row.attempts + 1)),
        ];
        let error = match outcome {
            Ok(id) => {
                attributes.push(("messaging.message.id", Attr::Str(id.to_string())));
                None
            }
            Err((kind, dead)) => {
                attributes.push(("error.type", Attr::Str(kind.to_string())));
                attributes.push(("clawline.delivery.dead", Attr::Bool(dead)));
                Some(kind.to_string())
            }
        };
        sink.export(Span {
            context,
            parent_span_id,
            name: format!("send {}", row.channel),
            kind: SpanKind::Producer,
            start_unix_nanos: took.0,
            end_unix_nanos: took.1,
            attributes,
            error,
        });
    }
}
