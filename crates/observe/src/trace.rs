//! Trace context and finished spans: the W3C `traceparent` header, and the span record the
//! run loop hands to an exporter ([`SpanSink`]).
//!
//! A turn is one trace (or joins the caller's when its request carried a valid
//! `traceparent`); its model calls and tool calls are child spans, and each model call's
//! request carries a `traceparent` naming that call's span, so a provider-side trace can be
//! joined to ours. Attributes follow OpenTelemetry's GenAI conventions where they exist
//! (`gen_ai.*`), and never hold message text or tool arguments.

/// A position in a trace: which trace, which span, whether it is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

fn random16() -> [u8; 16] {
    *uuid::Uuid::new_v4().as_bytes()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

/// A new span id (never all zeros).
pub fn new_span_id() -> [u8; 8] {
    loop {
        let r = random16();
        let id: [u8; 8] = [r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]];
        if id != [0; 8] {
            return id;
        }
    }
}

impl TraceContext {
    /// A new trace.
    pub fn root(sampled: bool) -> TraceContext {
        let mut trace_id = random16();
        if trace_id == [0; 16] {
            trace_id[15] = 1;
        }
        TraceContext { trace_id, span_id: new_span_id(), sampled }
    }

    /// Reads a `traceparent` header (version 00, and later versions by their first four
    /// fields, as the W3C spec asks). All-zero ids and malformed values are `None`.
    pub fn parse(header: &str) -> Option<TraceContext> {
        let h = header.trim();
        let mut parts = h.split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2 || version == "ff" || unhex::<1>(version).is_none() {
            return None;
        }
        if version == "00" && (parts.next().is_some() || h.len() != 55) {
            return None;
        }
        let trace_id = unhex::<16>(trace)?;
        let span_id = unhex::<8>(span)?;
        let flags = unhex::<1>(flags)?[0];
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceContext { trace_id, span_id, sampled: flags & 1 == 1 })
    }

    /// The `traceparent` header naming this span.
    pub fn header(&self) -> String {
        format!("00-{}-{}-{}", hex(&self.trace_id), hex(&self.span_id), if self.sampled { "01" } else { "00" })
    }

    /// A child: the same trace, a new span.
    pub fn child(&self) -> TraceContext {
        TraceContext { span_id: new_span_id(), ..*self }
    }

    pub fn trace_hex(&self) -> String {
        hex(&self.trace_id)
    }

    pub fn span_hex(&self) -> String {
        hex(&self.span_id)
    }
}

/// What a span is, in OTLP's numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
}

/// A finished span.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub context: TraceContext,
    pub parent_span_id: Option<[u8; 8]>,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: Vec<(&'static str, Attr)>,
    /// `Some(message)` when the operation failed.
    pub error: Option<String>,
}

/// Where finished spans go (an OTLP exporter). Must not block.
pub trait SpanSink: Send + Sync {
    fn export(&self, span: Span);
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// Runs `fut` with `ctx` as the current span, so what is logged inside it can name the span
/// ([`current`]). Tasks `fut` spawns do not inherit it.
pub async fn in_span<F: std::future::Future>(ctx: TraceContext, fut: F) -> F::Output {
    CURRENT.scope(ctx, fut).await
}

/// The span the running task is in, if it was started with [`in_span`].
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(|c| *c).ok()
}

/// Unix time in nanoseconds.
pub fn now_unix_nanos() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_bad_ones_are_refused() {
        let h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = TraceContext::parse(h).expect("valid");
        assert_eq!(c.header(), h);
        assert!(c.sampled);
        assert_eq!(c.trace_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let child = c.child();
        assert_eq!(child.trace_id, c.trace_id);
        assert_ne!(child.span_id, c.span_id);
        // A later version with more fields is read by its first four.
        assert!(TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra").is_some());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(TraceContext::parse(bad).is_none(), "{bad:?}");
        }
        let root = TraceContext::root(true);
        assert_eq!(TraceContext::parse(&root.header()), Some(root));
    }
}
