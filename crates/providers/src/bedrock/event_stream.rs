//! The `application/vnd.amazon.eventstream` binary framing that Bedrock's streaming
//! operations answer with: an incremental decoder, an encoder, and the CRC-32 they use.
//!
//! Wire format, per the AWS "Event stream encoding" documentation (Amazon Lex V2 and Transcribe
//! developer guides describe the same format) and checked against the messages in
//! `aws-c-event-stream`'s test suite. Every message is
//!
//! ```text
//! total length   u32 BE   whole message, these 4 bytes and both CRCs included
//! headers length u32 BE
//! prelude CRC    u32 BE   CRC-32 of the 8 bytes above
//! headers        name length u8, name (UTF-8), value type u8, value
//! payload        total - headers - 16 bytes
//! message CRC    u32 BE   CRC-32 of everything before it
//! ```
//!
//! Header value types: 0 true, 1 false, 2 byte, 3 i16, 4 i32, 5 i64 (all big-endian), 6 bytes and
//! 7 UTF-8 string (u16 BE length, then the bytes), 8 timestamp (i64 milliseconds since the epoch),
//! 9 UUID (16 bytes). The CRC is the IEEE CRC-32 of gzip and zlib (reflected polynomial
//! `0xEDB88320`), computed here from a table built at compile time.
//!
//! The decoder takes bytes in chunks of any size and never panics on any input: a message
//! larger than its limit (16 MiB unless told otherwise), a CRC mismatch, or a header that does
//! not parse is an error, after which the decoder refuses further input. It knows nothing of
//! Bedrock's event names; `converse.rs` interprets the messages.

/// Messages larger than this are refused (16 MiB).
pub const DEFAULT_LIMIT: usize = 16 * 1024 * 1024;

/// Prelude (two lengths and the prelude CRC).
const PRELUDE_LEN: usize = 12;
/// Prelude plus the message CRC: the size of a message with no headers and no payload.
const MIN_MESSAGE_LEN: usize = 16;

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// IEEE CRC-32 (`crc32(b"123456789") == 0xCBF43926`).
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// A typed header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    Bool(bool),
    Byte(i8),
    Short(i16),
    Int(i32),
    Long(i64),
    Bytes(Vec<u8>),
    String(String),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
    Uuid([u8; 16]),
}

/// One header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: HeaderValue,
}

/// One decoded message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub headers: Vec<Header>,
    pub payload: Vec<u8>,
}

impl Message {
    /// A message with string headers and a payload.
    pub fn new(headers: &[(&str, &str)], payload: impl Into<Vec<u8>>) -> Self {
        Message {
            headers: headers
                .iter()
                .map(|(n, v)| Header { name: n.to_string(), value: HeaderValue::String(v.to_string()) })
                .collect(),
            payload: payload.into(),
        }
    }

    /// The value of a string header.
    pub fn string_header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|h| h.name == name).and_then(|h| match &h.value {
            HeaderValue::String(s) => Some(s.as_str()),
            _ => None,
        })
    }
}

/// Why bytes could not be decoded (or a message encoded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a message of {size} bytes is larger than the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("prelude checksum mismatch (computed {computed:#010x}, received {received:#010x})")]
    PreludeCrc { computed: u32, received: u32 },
    #[error("message checksum mismatch (computed {computed:#010x}, received {received:#010x})")]
    MessageCrc { computed: u32, received: u32 },
    #[error("malformed message: {0}")]
    Malformed(String),
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Reads fixed-size pieces of a header block, failing instead of panicking at its end.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], FrameError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| FrameError::Malformed(format!("the headers end in the middle of {what}")))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], FrameError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }
}

fn parse_headers(bytes: &[u8]) -> Result<Vec<Header>, FrameError> {
    let mut c = Cursor { bytes, pos: 0 };
    let mut out = Vec::new();
    while c.pos < bytes.len() {
        let [name_len] = c.array::<1>("a header name length")?;
        if name_len == 0 {
            return Err(FrameError::Malformed("a header has an empty name".into()));
        }
        let name = std::str::from_utf8(c.take(usize::from(name_len), "a header name")?)
            .map_err(|_| FrameError::Malformed("a header name is not UTF-8".into()))?
            .to_string();
        let [kind] = c.array::<1>("a header value type")?;
        let value = match kind {
            0 => HeaderValue::Bool(true),
            1 => HeaderValue::Bool(false),
            2 => HeaderValue::Byte(i8::from_be_bytes(c.array::<1>("a byte header")?)),
            3 => HeaderValue::Short(i16::from_be_bytes(c.array::<2>("a short header")?)),
            4 => HeaderValue::Int(i32::from_be_bytes(c.array::<4>("an integer header")?)),
            5 => HeaderValue::Long(i64::from_be_bytes(c.array::<8>("a long header")?)),
            6 | 7 => {
                let len = u16::from_be_bytes(c.array::<2>("a header value length")?);
                let raw = c.take(usize::from(len), "a header value")?;
                if kind == 6 {
                    HeaderValue::Bytes(raw.to_vec())
                } else {
                    HeaderValue::String(
                        std::str::from_utf8(raw)
                            .map_err(|_| FrameError::Malformed(format!("header {name} is not UTF-8")))?
                            .to_string(),
                    )
                }
            }
            8 => HeaderValue::Timestamp(i64::from_be_bytes(c.array::<8>("a timestamp header")?)),
            9 => HeaderValue::Uuid(c.array::<16>("a UUID header")?),
            other => return Err(FrameError::Malformed(format!("header {name} has unknown value type {other}"))),
        };
        out.push(Header { name, value });
    }
    Ok(out)
}

/// Incremental decoder: feed it bytes as they arrive, take complete messages out.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    limit: usize,
    failed: Option<FrameError>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::with_limit(DEFAULT_LIMIT)
    }
}

impl Decoder {
    pub fn with_limit(limit: usize) -> Self {
        Decoder { buf: Vec::new(), limit: limit.max(MIN_MESSAGE_LEN), failed: None }
    }

    /// Bytes held of a message not yet complete.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feeds bytes; appends every message they complete to `out`. Messages completed before an
    /// error are still appended.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<Message>) -> Result<(), FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.buf.extend_from_slice(chunk);
        let mut start = 0;
        let result = loop {
            match self.next_message(start) {
                Ok(Some((message, len))) => {
                    out.push(message);
                    start += len;
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.buf.drain(..start);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
            self.buf.clear();
        }
        result
    }

    /// Decodes the message at `start`, if all of it is buffered.
    fn next_message(&self, start: usize) -> Result<Option<(Message, usize)>, FrameError> {
        let avail = &self.buf[start..];
        if avail.len() < PRELUDE_LEN {
            return Ok(None);
        }
        let total = be_u32(&avail[0..4]) as usize;
        let headers_len = be_u32(&avail[4..8]) as usize;
        let received = be_u32(&avail[8..12]);
        let computed = crc32(&avail[..8]);
        if computed != received {
            return Err(FrameError::PreludeCrc { computed, received });
        }
        if total < MIN_MESSAGE_LEN {
            return Err(FrameError::Malformed(format!("total length {total} is below the 16-byte minimum")));
        }
        if total > self.limit {
            return Err(FrameError::TooLarge { size: total, limit: self.limit });
        }
        if headers_len > total - MIN_MESSAGE_LEN {
            return Err(FrameError::Malformed(format!(
                "headers length {headers_len} does not fit a {total}-byte message"
            )));
        }
        if avail.len() < total {
            return Ok(None);
        }
        let bytes = &avail[..total];
        let received = be_u32(&bytes[total - 4..]);
        let computed = crc32(&bytes[..total - 4]);
        if computed != received {
            return Err(FrameError::MessageCrc { computed, received });
        }
        let headers = parse_headers(&bytes[PRELUDE_LEN..PRELUDE_LEN + headers_len])?;
        let payload = bytes[PRELUDE_LEN + headers_len..total - 4].to_vec();
        Ok(Some((Message { headers, payload }, total)))
    }
}

fn push_sized(out: &mut Vec<u8>, kind: u8, raw: &[u8], name: &str) -> Result<(), FrameError> {
    let len = u16::try_from(raw.len())
        .map_err(|_| FrameError::Malformed(format!("header {name} value of {} bytes", raw.len())))?;
    out.push(kind);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(raw);
    Ok(())
}

/// Encodes one message.
pub fn encode(message: &Message) -> Result<Vec<u8>, FrameError> {
    let mut headers = Vec::new();
    for h in &message.headers {
        let name = h.name.as_bytes();
        let name_len = u8::try_from(name.len())
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| FrameError::Malformed(format!("header name of {} bytes", name.len())))?;
        headers.push(name_len);
        headers.extend_from_slice(name);
        match &h.value {
            HeaderValue::Bool(true) => headers.push(0),
            HeaderValue::Bool(false) => headers.push(1),
            HeaderValue::Byte(v) => {
                headers.push(2);
                headers.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Short(v) => {
                headers.push(3);
                headers.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Int(v) => {
                headers.push(4);
                headers.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Long(v) => {
                headers.push(5);
                headers.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Bytes(b) => push_sized(&mut headers, 6, b, &h.name)?,
            HeaderValue::String(s) => push_sized(&mut headers, 7, s.as_bytes(), &h.name)?,
            HeaderValue::Timestamp(v) => {
                headers.push(8);
                headers.extend_from_slice(&v.to_be_bytes());
            }
            HeaderValue::Uuid(u) => {
                headers.push(9);
                headers.extend_from_slice(u);
            }
        }
    }
    let total = MIN_MESSAGE_LEN + headers.len() + message.payload.len();
    let total32 = u32::try_from(total).map_err(|_| FrameError::TooLarge { size: total, limit: u32::MAX as usize })?;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&total32.to_be_bytes());
    out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    let prelude_crc = crc32(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&headers);
    out.extend_from_slice(&message.payload);
    let message_crc = crc32(&out);
    out.extend_from_slice(&message_crc.to_be_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(bytes: &[u8]) -> Result<Vec<Message>, FrameError> {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        d.push(bytes, &mut out)?;
        assert_eq!(d.buffered(), 0, "left over bytes");
        Ok(out)
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    // The three messages of aws-c-event-stream's `message_deserializer_test.c`.
    const EMPTY_MESSAGE: [u8; 16] =
        [0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98, 0xc8, 0xff];

    fn no_headers_message() -> Vec<u8> {
        let mut v = vec![0x00, 0x00, 0x00, 0x1D, 0x00, 0x00, 0x00, 0x00, 0xfd, 0x52, 0x8c, 0x5a];
        v.extend_from_slice(b"{'foo':'bar'}");
        v.extend_from_slice(&[0xc3, 0x65, 0x39, 0x36]);
        v
    }

    fn one_header_message() -> Vec<u8> {
        let mut v = vec![0x00, 0x00, 0x00, 0x3D, 0x00, 0x00, 0x00, 0x20, 0x07, 0xFD, 0x83, 0x96, 0x0C];
        v.extend_from_slice(b"content-type");
        v.extend_from_slice(&[0x07, 0x00, 0x10]);
        v.extend_from_slice(b"application/json");
        v.extend_from_slice(b"{'foo':'bar'}");
        v.extend_from_slice(&[0x8D, 0x9C, 0x08, 0xB1]);
        v
    }

    #[test]
    fn decodes_and_encodes_the_aws_test_messages() {
        assert_eq!(decode_all(&EMPTY_MESSAGE).unwrap(), vec![Message::default()]);
        let m = decode_all(&no_headers_message()).unwrap();
        assert_eq!(m, vec![Message::new(&[], b"{'foo':'bar'}".to_vec())]);
        let m = decode_all(&one_header_message()).unwrap();
        assert_eq!(m[0].string_header("content-type"), Some("application/json"));
        assert_eq!(m[0].payload, b"{'foo':'bar'}");

        assert_eq!(encode(&Message::default()).unwrap(), EMPTY_MESSAGE);
        assert_eq!(encode(&Message::new(&[], b"{'foo':'bar'}".to_vec())).unwrap(), no_headers_message());
        let with_header = Message::new(&[("content-type", "application/json")], b"{'foo':'bar'}".to_vec());
        assert_eq!(encode(&with_header).unwrap(), one_header_message());
    }

    #[test]
    fn all_header_types_round_trip() {
        let m = Message {
            headers: vec![
                Header { name: "t".into(), value: HeaderValue::Bool(true) },
                Header { name: "f".into(), value: HeaderValue::Bool(false) },
                Header { name: "b".into(), value: HeaderValue::Byte(-7) },
                Header { name: "s".into(), value: HeaderValue::Short(-300) },
                Header { name: "i".into(), value: HeaderValue::Int(70_000) },
                Header { name: "l".into(), value: HeaderValue::Long(-5_000_000_000) },
                Header { name: "bytes".into(), value: HeaderValue::Bytes(vec![0, 255, 1]) },
                Header { name: ":event-type".into(), value: HeaderValue::String("messageStart".into()) },
                Header { name: "ts".into(), value: HeaderValue::Timestamp(1_440_938_160_000) },
                Header { name: "id".into(), value: HeaderValue::Uuid([7; 16]) },
            ],
            payload: b"{}".to_vec(),
        };
        let bytes = encode(&m).unwrap();
        assert_eq!(decode_all(&bytes).unwrap(), vec![m]);
    }

    #[test]
    fn refuses_bad_checksums_oversized_and_malformed_messages() {
        let mut bad = no_headers_message();
        bad[14] ^= 1;
        assert!(matches!(decode_all(&bad), Err(FrameError::MessageCrc { .. })));
        let mut bad = no_headers_message();
        bad[3] = 0x1E;
        assert!(matches!(decode_all(&bad), Err(FrameError::PreludeCrc { .. })));

        let big = encode(&Message::new(&[], vec![b'x'; 100])).unwrap();
        let mut d = Decoder::with_limit(64);
        let mut out = Vec::new();
        // The size is known from the prelude alone: refused before the body arrives.
        assert_eq!(d.push(&big[..12], &mut out), Err(FrameError::TooLarge { size: 116, limit: 64 }));
        assert!(d.push(b"more", &mut out).is_err(), "a failed decoder stays failed");

        // A header of unknown type, with correct CRCs around it.
        let mut prelude = vec![0, 0, 0, 20, 0, 0, 0, 4];
        prelude.extend_from_slice(&crc32(&prelude).to_be_bytes());
        prelude.extend_from_slice(&[1, b'x', 42, 0]);
        let crc = crc32(&prelude);
        prelude.extend_from_slice(&crc.to_be_bytes());
        assert!(matches!(decode_all(&prelude), Err(FrameError::Malformed(m)) if m.contains("unknown value type 42")));
    }

    #[test]
    fn keeps_partial_messages_across_pushes() {
        let one = one_header_message();
        let mut stream = one.clone();
        stream.extend_from_slice(&EMPTY_MESSAGE);
        let mut d = Decoder::default();
        let mut out = Vec::new();
        d.push(&stream[..5], &mut out).unwrap();
        d.push(&stream[5..one.len() + 3], &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(d.buffered(), 3);
        d.push(&stream[one.len() + 3..], &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(d.buffered(), 0);
    }

    fn header_value() -> impl Strategy<Value = HeaderValue> {
        prop_oneof![
            any::<bool>().prop_map(HeaderValue::Bool),
            any::<i8>().prop_map(HeaderValue::Byte),
            any::<i16>().prop_map(HeaderValue::Short),
            any::<i32>().prop_map(HeaderValue::Int),
            any::<i64>().prop_map(HeaderValue::Long),
            prop::collection::vec(any::<u8>(), 0..40).prop_map(HeaderValue::Bytes),
            "\\PC{0,20}".prop_map(HeaderValue::String),
            any::<i64>().prop_map(HeaderValue::Timestamp),
            any::<[u8; 16]>().prop_map(HeaderValue::Uuid),
        ]
    }

    fn message() -> impl Strategy<Value = Message> {
        (prop::collection::vec(("[:a-z-]{1,20}", header_value()), 0..5), prop::collection::vec(any::<u8>(), 0..200))
            .prop_map(|(headers, payload)| Message {
                headers: headers.into_iter().map(|(name, value)| Header { name, value }).collect(),
                payload,
            })
    }

    proptest! {
        #[test]
        fn round_trips_under_any_chunking(
            messages in prop::collection::vec(message(), 0..6),
            cuts in prop::collection::vec(0usize..2000, 0..12),
        ) {
            let mut bytes = Vec::new();
            for m in &messages {
                bytes.extend(encode(m).unwrap());
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort();
            let mut d = Decoder::default();
            let mut out = Vec::new();
            let mut last = 0;
            for c in cuts {
                d.push(&bytes[last..c], &mut out).unwrap();
                last = c;
            }
            d.push(&bytes[last..], &mut out).unwrap();
            prop_assert_eq!(out, messages);
            prop_assert_eq!(d.buffered(), 0);
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..400),
            split in 0usize..400,
        ) {
            let mut d = Decoder::with_limit(256);
            let mut out = Vec::new();
            let split = split.min(bytes.len());
            let _ = d.push(&bytes[..split], &mut out);
            let _ = d.push(&bytes[split..], &mut out);
        }

        #[test]
        fn corrupted_messages_are_errors_not_panics(m in message(), flip in any::<usize>(), bit in 0u8..8) {
            let mut bytes = encode(&m).unwrap();
            let at = flip % bytes.len();
            bytes[at] ^= 1 << bit;
            let mut d = Decoder::default();
            let mut out = Vec::new();
            // A single flipped bit is always caught by one of the two CRCs (or leaves the
            // message incomplete when it enlarges the length).
            let r = d.push(&bytes, &mut out);
            prop_assert!(r.is_err() || out.is_empty(), "corruption went unnoticed: {:?}", out);
        }
    }
}
