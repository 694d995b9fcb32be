//! A server-sent events decoder (the `text/event-stream` format of the HTML standard).
//!
//! Bytes go in as they arrive from the network, complete events come out. Lines may end in
//! `\n`, `\r\n` or `\r`, including a `\r\n` split across two chunks; lines starting with `:` are
//! comments; `data:` lines of one event are joined with `\n`; a blank line ends the event.
//! Fields other than `event` and `data` (`id`, `retry`) are accepted and ignored.
//!
//! A hostile or broken server cannot make it use unbounded memory: a line or an event larger
//! than the limit is an error, as is text that is not UTF-8.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, when the server sent one.
    pub event: Option<String>,
    pub data: String,
}

/// Why a stream could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an event is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the stream is not valid UTF-8")]
    NotUtf8,
}

/// Incremental decoder state.
#[derive(Debug)]
pub struct SseDecoder {
    line: Vec<u8>,
    skip_lf: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    limit: usize,
}

/// The default cap on one event (8 MiB).
pub const DEFAULT_LIMIT: usize = 8 * 1024 * 1024;

impl Default for SseDecoder {
    fn default() -> Self {
        Self::with_limit(DEFAULT_LIMIT)
    }
}

impl SseDecoder {
    pub fn with_limit(limit: usize) -> Self {
        SseDecoder { line: Vec::new(), skip_lf: false, event: None, data: String::new(), has_data: false, limit }
    }

    /// Feeds bytes; appends every event they complete to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        for &b in chunk {
            if self.skip_lf {
                self.skip_lf = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' => self.end_line(out)?,
                b'\r' => {
                    self.skip_lf = true;
                    self.end_line(out)?;
                }
                _ => {
                    if self.line.len() + self.data.len() >= self.limit {
                        return Err(SseError::TooLarge(self.limit));
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(())
    }

    /// Call at end of stream: dispatches a final event that lacked its blank line.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if !self.line.is_empty() {
            self.end_line(out)?;
        }
        self.dispatch(out);
        Ok(())
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        let line = String::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_str(), ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
                if self.data.len() > self.limit {
                    return Err(SseError::TooLarge(self.limit));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        if self.has_data {
            out.push(SseEvent { event: self.event.take(), data: std::mem::take(&mut self.data) });
        }
        self.event = None;
        self.data.clear();
        self.has_data = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut d = SseDecoder::default();
        let mut out = Vec::new();
        for c in chunks {
            d.push(c, &mut out).unwrap();
        }
        d.finish(&mut out).unwrap();
        out
    }

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent { event: event.map(String::from), data: data.into() }
    }

    #[test]
    fn decodes_the_standard_forms() {
        let out = decode(&[b"event: message_start\ndata: {\"a\":1}\n\n: keepalive\n\ndata:x\ndata: y\n\n"]);
        assert_eq!(out, vec![ev(Some("message_start"), "{\"a\":1}"), ev(None, "x\ny")]);
    }

    #[test]
    fn handles_every_line_ending_and_split_crlf() {
        let out = decode(&[b"data: a\r", b"\n\r", b"\ndata: b\r\rdata: c\n\n"]);
        assert_eq!(out, vec![ev(None, "a"), ev(None, "b"), ev(None, "c")]);
    }

    #[test]
    fn events_without_data_are_not_dispatched_and_last_event_is_flushed() {
        let out = decode(&[b"event: ping\n\nid: 3\nretry: 10\n\ndata: [DONE]"]);
        assert_eq!(out, vec![ev(None, "[DONE]")]);
    }

    #[test]
    fn refuses_oversized_events_and_bad_utf8() {
        let mut d = SseDecoder::with_limit(16);
        let mut out = Vec::new();
        assert_eq!(d.push(&[b'x'; 64], &mut out), Err(SseError::TooLarge(16)));
        let mut d = SseDecoder::with_limit(16);
        assert_eq!(d.push(b"data: 0123456789\ndata: 0123456789\n", &mut out), Err(SseError::TooLarge(16)));
        let mut d = SseDecoder::default();
        assert_eq!(d.push(b"data: \xff\xfe\n", &mut out), Err(SseError::NotUtf8));
    }

    proptest! {
        #[test]
        fn chunking_does_not_change_the_result(
            events in prop::collection::vec(("[a-z_]{0,8}", "[^\\r\\n]{0,40}"), 0..8),
            cuts in prop::collection::vec(0usize..400, 0..10),
            crlf in any::<bool>(),
        ) {
            let nl = if crlf { "\r\n" } else { "\n" };
            let mut text = String::new();
            for (name, data) in &events {
                if !name.is_empty() { text.push_str(&format!("event: {name}{nl}")); }
                text.push_str(&format!("data: {data}{nl}{nl}"));
            }
            let bytes = text.as_bytes();
            let whole = decode(&[bytes]);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort();
            let mut pieces = Vec::new();
            let mut last = 0;
            for c in cuts { pieces.push(&bytes[last..c]); last = c; }
            pieces.push(&bytes[last..]);
            prop_assert_eq!(decode(&pieces), whole.clone());
            prop_assert_eq!(whole.len(), events.len());
        }

        #[test]
        fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let mut d = SseDecoder::with_limit(64);
            let mut out = Vec::new();
            let _ = d.push(&bytes, &mut out);
            let _ = d.finish(&mut out);
        }
    }
}
