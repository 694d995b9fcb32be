//! A twin of Amazon Bedrock: the runtime's `ConverseStream` operation and the control plane's
//! `ListFoundationModels`, on one loopback server.
//!
//! Start one per test with [`BedrockServer::start`] and the AWS credentials it accepts, queue
//! replies (the shared [`Reply`] vocabulary of `model_server`, or a [`BedrockReply`] for what only
//! Bedrock has), point the provider's `baseUrl` at [`BedrockServer::base_url`], then inspect
//! [`BedrockServer::requests`].
//!
//! It checks requests the way AWS does, and refuses them with AWS's status codes, error names
//! (`x-amzn-ErrorType`) and `{"message": …}` bodies:
//! - Signature Version 4 is verified for real: the canonical request is rebuilt from the
//!   request as received (method, path with every segment encoded again, sorted query, the
//!   signed headers' values, the SHA-256 of the body) and the signature recomputed with the known
//!   secret. An unknown access key id or a missing/wrong session token is a 403
//!   `UnrecognizedClientException`; a wrong signature, scope (date, region, service `bedrock`),
//!   a `host` or `x-amz-date` that is not signed, or a clock skew over five minutes is a 403
//!   `InvalidSignatureException`; no `Authorization` at all is a 403
//!   `MissingAuthenticationTokenException`. An Amazon Bedrock API key
//!   (`Authorization: Bearer …`) is accepted when [`BedrockServer::accept_api_key`] set one.
//! - The Converse body is validated: the conversation starts with a user message and alternates
//!   roles; content blocks are one of `text` (not blank), `image` (`png`/`jpeg`/`gif`/`webp`,
//!   base64 bytes that really are such an image, user messages only), `toolUse`, `toolResult`,
//!   `reasoningContent`; every `toolUse` is answered by a `toolResult` with the same
//!   `toolUseId` in the next user message and every `toolResult` answers one; `toolConfig` is
//!   present when the history holds tool blocks; tool specs have valid names and an object
//!   `inputSchema.json`; a Claude `thinking` budget is at least 1024 and below `maxTokens`, and
//!   with thinking on, the last assistant turn with tool calls starts with its reasoning.
//! - Accepted calls are answered with real `application/vnd.amazon.eventstream` frames
//!   (prelude, CRC-32s, `:event-type` / `:message-type` / `:content-type` headers, JSON payloads
//!   with the `p` padding field), ending in `messageStop` and `metadata`. An empty queue is a 500
//!   `InternalServerException` "testkit: no scripted reply left".
//!
//! This file has its own SigV4 and event-stream code on purpose: the twin must not trust the
//! implementation it is testing (and testkit depends on no clawline crate).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::{digest, hmac};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{Value, json};

use crate::model_server::{Recorded, Reply, ToolCall};

/// AWS credentials the twin accepts.
#[derive(Debug, Clone)]
pub struct AwsKey {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// When set, requests must carry exactly this `x-amz-security-token`.
    pub session_token: Option<String>,
    pub region: String,
}

impl AwsKey {
    pub fn new(access_key_id: &str, secret_access_key: &str, region: &str) -> Self {
        AwsKey {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
            region: region.into(),
        }
    }

    pub fn with_session_token(mut self, token: &str) -> Self {
        self.session_token = Some(token.into());
        self
    }
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum BedrockReply {
    /// The vocabulary shared by every twin.
    Reply(Reply),
    /// Reasoning (with its signature) in block 0, then text in block 1.
    Thinking { thinking: String, signature: String, text: String },
    /// Text with exactly these token counts in `metadata`.
    Usage { text: String, input: u64, output: u64, cache_read: u64, cache_write: u64 },
    /// Text, then `messageStop` with this `stopReason`.
    Stop { text: String, reason: String },
    /// These bytes verbatim as the event-stream body (recorded fixtures, broken frames).
    Bytes(Vec<u8>),
}

impl From<Reply> for BedrockReply {
    fn from(r: Reply) -> Self {
        BedrockReply::Reply(r)
    }
}

impl BedrockReply {
    pub fn thinking(thinking: &str, signature: &str, text: &str) -> Self {
        BedrockReply::Thinking { thinking: thinking.into(), signature: signature.into(), text: text.into() }
    }

    pub fn usage(text: &str, input: u64, output: u64, cache_read: u64, cache_write: u64) -> Self {
        BedrockReply::Usage { text: text.into(), input, output, cache_read, cache_write }
    }

    /// A recorded stream from `fixtures/bedrock/<name>.bin`.
    pub fn fixture(name: &str) -> Self {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/bedrock").join(format!("{name}.bin"));
        BedrockReply::Bytes(std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display())))
    }
}

/// The model list served at `/foundation-models` unless [`BedrockServer::set_models`] says otherwise.
pub fn default_models() -> Value {
    let summary =
        |id: &str, name: &str, provider: &str, input: &[&str], output: &[&str], streaming: bool, inference: &[&str]| {
            json!({
                "modelArn": format!("arn:aws:bedrock:us-east-1::foundation-model/{id}"),
                "modelId": id, "modelName": name, "providerName": provider,
                "inputModalities": input, "outputModalities": output,
                "responseStreamingSupported": streaming, "customizationsSupported": [],
                "inferenceTypesSupported": inference, "modelLifecycle": {"status": "ACTIVE"}
            })
        };
    json!([
        summary(
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
            "Claude 3.5 Sonnet",
            "Anthropic",
            &["TEXT", "IMAGE"],
            &["TEXT"],
            true,
            &["ON_DEMAND"]
        ),
        summary("amazon.nova-micro-v1:0", "Nova Micro", "Amazon", &["TEXT"], &["TEXT"], true, &["INFERENCE_PROFILE"]),
        summary(
            "amazon.titan-image-generator-v2:0",
            "Titan Image Generator G1 v2",
            "Amazon",
            &["TEXT", "IMAGE"],
            &["IMAGE"],
            false,
            &["ON_DEMAND"]
        ),
        summary(
            "amazon.titan-embed-text-v2:0",
            "Titan Text Embeddings V2",
            "Amazon",
            &["TEXT"],
            &["EMBEDDING"],
            false,
            &["ON_DEMAND"]
        ),
        summary("cohere.command-text-v14", "Command", "Cohere", &["TEXT"], &["TEXT"], false, &["ON_DEMAND"]),
        summary(
            "anthropic.claude-3-haiku-20240307-v1:0:200k",
            "Claude 3 Haiku",
            "Anthropic",
            &["TEXT", "IMAGE"],
            &["TEXT"],
            true,
            &["PROVISIONED"]
        ),
    ])
}

struct Inner {
    key: AwsKey,
    api_key: Option<String>,
    replies: VecDeque<BedrockReply>,
    fallback: Option<BedrockReply>,
    requests: Vec<Recorded>,
    paths: Vec<String>,
    models: Value,
    counter: u64,
}

/// A running twin. Dropping it stops the server.
pub struct BedrockServer {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BedrockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(inner: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

impl BedrockServer {
    /// Starts a twin on 127.0.0.1 with a random port that accepts requests signed with `key`.
    pub async fn start(key: AwsKey) -> BedrockServer {
        let inner = Arc::new(Mutex::new(Inner {
            key,
            api_key: None,
            replies: VecDeque::new(),
            fallback: None,
            requests: Vec::new(),
            paths: Vec::new(),
            models: default_models(),
            counter: 0,
        }));
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind bedrock twin");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        BedrockServer { addr, inner, task }
    }

    /// The `baseUrl` to configure (it serves both the runtime and `/foundation-models`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Also accept this Amazon Bedrock API key as `Authorization: Bearer`.
    pub fn accept_api_key(&self, key: &str) {
        lock(&self.inner).api_key = Some(key.into());
    }

    /// Queues a reply for the next accepted ConverseStream call.
    pub fn push(&self, reply: impl Into<BedrockReply>) -> &Self {
        lock(&self.inner).replies.push_back(reply.into());
        self
    }

    /// The reply used when the queue is empty.
    pub fn set_fallback(&self, reply: impl Into<BedrockReply>) {
        lock(&self.inner).fallback = Some(reply.into());
    }

    /// The `modelSummaries` served by `ListFoundationModels`.
    pub fn set_models(&self, models: Value) {
        lock(&self.inner).models = models;
    }

    /// Every request received (including refused ones and discovery), in order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.inner).requests.clone()
    }

    /// `METHOD /path` of every request, in the order of [`requests`](Self::requests).
    pub fn paths(&self) -> Vec<String> {
        lock(&self.inner).paths.clone()
    }

    /// Replies not yet used.
    pub fn pending(&self) -> usize {
        lock(&self.inner).replies.len()
    }
}

// ---------------------------------------------------------------------------------------------
// Wire helpers: CRC-32, event-stream frames, SigV4 (independent of the provider's code)

fn crc32(data: &[u8]) -> u32 {
    // Bit-at-a-time on purpose: a different algorithm from the client's table-driven one.
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// One event-stream message with string headers.
pub fn encode_frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        h.push(name.len() as u8);
        h.extend_from_slice(name.as_bytes());
        h.push(7);
        h.extend_from_slice(&(value.len() as u16).to_be_bytes());
        h.extend_from_slice(value.as_bytes());
    }
    let total = (16 + h.len() + payload.len()) as u32;
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let prelude = crc32(&out);
    out.extend_from_slice(&prelude.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

const PADDING: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123";

/// An `event` message; Bedrock pads payloads with a `p` field.
pub fn event_frame(event: &str, mut payload: Value) -> Vec<u8> {
    if let Some(obj) = payload.as_object_mut() {
        let n = (event.len() * 3) % PADDING.len();
        obj.insert("p".into(), json!(&PADDING[..n.max(1)]));
    }
    encode_frame(
        &[(":event-type", event), (":content-type", "application/json"), (":message-type", "event")],
        payload.to_string().as_bytes(),
    )
}

/// An `exception` message as Bedrock sends them mid-stream.
pub fn exception_frame(exception: &str, message: &str) -> Vec<u8> {
    encode_frame(
        &[(":exception-type", exception), (":content-type", "application/json"), (":message-type", "exception")],
        json!({"message": message}).to_string().as_bytes(),
    )
}

fn sha256_hex(data: &[u8]) -> String {
    digest::digest(&digest::SHA256, data).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes()).as_ref().to_vec()
}

fn aws_encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(hex) = b
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .and_then(|h| std::str::from_utf8(h).ok())
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Seconds since the epoch of `YYYYMMDDTHHMMSSZ`.
fn parse_amz_date(s: &str) -> Option<i64> {
    if s.len() != 16 || &s[8..9] != "T" || !s.ends_with('Z') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r).and_then(|v| v.parse::<i64>().ok());
    let (y, m, d, hh, mm, ss) = (n(0..4)?, n(4..6)?, n(6..8)?, n(9..11)?, n(11..13)?, n(13..15)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

fn amz_date_of(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

// ---------------------------------------------------------------------------------------------
// Errors

fn aws_error(status: u16, name: &str, message: &str, retry_after: Option<&str>) -> Response {
    let namespace = match name {
        "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "MissingAuthenticationTokenException"
        | "IncompleteSignatureException" => "http://internal.amazon.com/coral/com.amazon.coral.service/",
        _ => "http://internal.amazon.com/coral/com.amazon.bedrock/",
    };
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-amzn-errortype", format!("{name}:{namespace}"))
        .header("x-amzn-requestid", "00000000-0000-4000-8000-00000000e770");
    if let Some(after) = retry_after {
        b = b.header("retry-after", after);
    }
    b.body(Body::from(json!({"message": message}).to_string())).unwrap_or_default()
}

fn invalid_signature(message: impl Into<String>) -> Response {
    aws_error(403, "InvalidSignatureException", &message.into(), None)
}

fn bad_token() -> Response {
    aws_error(403, "UnrecognizedClientException", "The security token included in the request is invalid.", None)
}

// ---------------------------------------------------------------------------------------------
// Authentication

struct Received<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

// The refusal is the HTTP response itself, built once per refused request.
#[allow(clippy::result_large_err)]
fn authenticate(key: &AwsKey, api_key: Option<&str>, req: &Received<'_>) -> Result<(), Response> {
    let Some(auth) = req.headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(aws_error(403, "MissingAuthenticationTokenException", "Missing Authentication Token", None));
    };
    if let Some(token) = auth.strip_prefix("Bearer ") {
        return match api_key {
            Some(k) if k == token.trim() => Ok(()),
            _ => Err(bad_token()),
        };
    }
    let Some(params) = auth.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return Err(aws_error(
            403,
            "IncompleteSignatureException",
            &format!(
                "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization={auth}"
            ),
            None,
        ));
    };
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in params.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) = (credential, signed_headers, signature) else {
        return Err(aws_error(
            403,
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters.",
            None,
        ));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, terminator] = scope.as_slice() else {
        return Err(aws_error(
            403,
            "IncompleteSignatureException",
            &format!("Credential is malformed: {credential}"),
            None,
        ));
    };
    if *access_key != key.access_key_id {
        return Err(bad_token());
    }
    let token = req.headers.get("x-amz-security-token").and_then(|v| v.to_str().ok());
    if token != key.session_token.as_deref() {
        return Err(bad_token());
    }
    let Some(amz_date) = req.headers.get("x-amz-date").and_then(|v| v.to_str().ok()) else {
        return Err(aws_error(
            403,
            "IncompleteSignatureException",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
            None,
        ));
    };
    let Some(when) = parse_amz_date(amz_date) else {
        return Err(invalid_signature(format!("Invalid X-Amz-Date: {amz_date}")));
    };
    if !amz_date.starts_with(date) || date.len() != 8 {
        return Err(invalid_signature(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{date}' != '{}', from '{amz_date}'.",
            &amz_date[..8]
        )));
    }
    if *region != key.region {
        return Err(invalid_signature(format!("Credential should be scoped to a valid region, not '{region}'. ")));
    }
    if *service != "bedrock" {
        return Err(invalid_signature("Credential should be scoped to correct service: 'bedrock'. "));
    }
    if *terminator != "aws4_request" {
        return Err(invalid_signature(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '".to_string()
                + terminator
                + "'.",
        ));
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    if (now - when).abs() > 300 {
        return Err(invalid_signature(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 5 min.)",
            amz_date_of(now - 300),
            amz_date_of(now)
        )));
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    if !names.contains(&"host") {
        return Err(invalid_signature("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."));
    }
    if !names.contains(&"x-amz-date") {
        return Err(invalid_signature("'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization."));
    }
    if token.is_some() && !names.contains(&"x-amz-security-token") {
        return Err(invalid_signature("'X-Amz-Security-Token' must be a 'SignedHeader' in the AWS Authorization."));
    }

    // Rebuild the canonical request from what arrived.
    let path = req.uri.path();
    let canonical_uri = if path.is_empty() || path == "/" {
        "/".to_string()
    } else {
        path.split('/').map(|s| aws_encode(s.as_bytes())).collect::<Vec<_>>().join("/")
    };
    let mut query: Vec<(String, String)> = req
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (aws_encode(&percent_decode(k)), aws_encode(&percent_decode(v)))
        })
        .collect();
    query.sort();
    let canonical_query = query.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    let mut canonical_headers = String::new();
    for name in &names {
        let values: Vec<String> = req
            .headers
            .get_all(*name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        if values.is_empty() {
            return Err(invalid_signature(format!("The signed header '{name}' is not in the request.")));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let canonical = format!(
        "{}\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{}",
        req.method.as_str(),
        sha256_hex(req.body)
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", sha256_hex(canonical.as_bytes()));
    let mut k = hmac(format!("AWS4{}", key.secret_access_key).as_bytes(), date);
    for part in [*region, *service, "aws4_request"] {
        k = hmac(&k, part);
    }
    let expected: String = hmac(&k, &string_to_sign).iter().map(|b| format!("{b:02x}")).collect();
    if expected != signature {
        return Err(invalid_signature(format!(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.\n\nThe Canonical String for this request should have been\n'{canonical}'\n\nThe String-to-Sign should have been\n'{string_to_sign}'\n"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Converse body validation

fn image_matches(format: &str, bytes: &[u8]) -> bool {
    match format {
        "png" => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "jpeg" => bytes.starts_with(&[0xFF, 0xD8, 0xFF]),
        "gif" => bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a"),
        "webp" => bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP",
        _ => false,
    }
}

fn validate_image(at: &str, image: &Value) -> Result<(), String> {
    let format = image["format"].as_str().unwrap_or_default();
    if !matches!(format, "png" | "jpeg" | "gif" | "webp") {
        return Err(format!(
            "1 validation error detected: Value '{format}' at '{at}.image.format' failed to satisfy constraint: Member must satisfy enum value set: [gif, jpeg, png, webp]"
        ));
    }
    let Some(data) = image["source"]["bytes"].as_str() else {
        return Err(format!("{at}.image.source: exactly one of bytes or s3Location is required"));
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| format!("{at}.image.source.bytes is not valid base64 ({e})"))?;
    if bytes.is_empty() {
        return Err(format!("{at}.image.source.bytes: Member must have length greater than or equal to 1"));
    }
    if !image_matches(format, &bytes) {
        return Err(format!("{at}.image: the image bytes are not a valid {format} image"));
    }
    Ok(())
}

fn validate_converse(v: &Value) -> Result<(), String> {
    let Some(messages) = v["messages"].as_array().filter(|m| !m.is_empty()) else {
        return Err("A conversation must start with a user message. Try again with a conversation that starts with a user message.".into());
    };
    if let Some(max) = v.pointer("/inferenceConfig/maxTokens")
        && max.as_u64().is_none_or(|n| n < 1)
    {
        return Err("1 validation error detected: Value at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1".into());
    }
    if let Some(system) = v.get("system") {
        let ok = system.as_array().is_some_and(|a| a.iter().all(|b| b["text"].as_str().is_some_and(|t| !t.is_empty())));
        if !ok {
            return Err("system: every system content block needs a non-empty text".into());
        }
    }
    let has_tool_config = v.get("toolConfig").is_some();
    if let Some(tools) = v.get("toolConfig") {
        let Some(list) = tools["tools"].as_array().filter(|t| !t.is_empty()) else {
            return Err("1 validation error detected: Value at 'toolConfig.tools' failed to satisfy constraint: Member must have length greater than or equal to 1".into());
        };
        for (i, t) in list.iter().enumerate() {
            let name = t["toolSpec"]["name"].as_str().unwrap_or_default();
            let valid = !name.is_empty()
                && name.len() <= 64
                && name.starts_with(|c: char| c.is_ascii_alphabetic())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                return Err(format!(
                    "1 validation error detected: Value '{name}' at 'toolConfig.tools.{}.member.toolSpec.name' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+",
                    i + 1
                ));
            }
            if !t["toolSpec"]["inputSchema"]["json"].is_object() {
                return Err(format!("toolConfig.tools.{i}.toolSpec.inputSchema.json must be a JSON object"));
            }
            if t["toolSpec"].get("description").is_some_and(|d| d.as_str().is_none_or(str::is_empty)) {
                return Err(format!(
                    "toolConfig.tools.{i}.toolSpec.description: Member must have length greater than or equal to 1"
                ));
            }
        }
    }
    let thinking = v.pointer("/additionalModelRequestFields/thinking");
    if let Some(t) = thinking {
        let budget = t["budget_tokens"].as_u64().unwrap_or(0);
        if t["type"] != "enabled" || budget < 1024 {
            return Err("The model returned the following errors: thinking.enabled.budget_tokens: Input should be greater than or equal to 1024".into());
        }
        let max = v.pointer("/inferenceConfig/maxTokens").and_then(Value::as_u64).unwrap_or(4096);
        if max <= budget {
            return Err(
                "The model returned the following errors: `max_tokens` must be greater than `thinking.budget_tokens`."
                    .into(),
            );
        }
    }
    let mut pending: Vec<String> = Vec::new();
    let mut uses_tools = false;
    let mut last_tool_turn: Option<usize> = None;
    for (i, m) in messages.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or_default();
        if !matches!(role, "user" | "assistant") {
            return Err(format!(
                "1 validation error detected: Value '{role}' at 'messages.{}.member.role' failed to satisfy constraint: Member must satisfy enum value set: [user, assistant]",
                i + 1
            ));
        }
        if i == 0 && role != "user" {
            return Err("A conversation must start with a user message. Try again with a conversation that starts with a user message.".into());
        }
        if i > 0 && messages[i - 1]["role"] == role {
            return Err("A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.".into());
        }
        let Some(blocks) = m["content"].as_array().filter(|c| !c.is_empty()) else {
            return Err(format!(
                "The content field in the Message object at messages.{i} is empty. Add a ContentBlock object to the content field and try again."
            ));
        };
        let mut answered: Vec<String> = Vec::new();
        for (j, b) in blocks.iter().enumerate() {
            let at = format!("messages.{i}.content.{j}");
            let keys: Vec<&String> = b.as_object().map(|o| o.keys().collect()).unwrap_or_default();
            if keys.len() != 1 {
                return Err(format!("{at}: a ContentBlock must have exactly one member, found {keys:?}"));
            }
            match keys[0].as_str() {
                "text" => {
                    if b["text"].as_str().is_none_or(|t| t.trim().is_empty()) {
                        return Err(format!(
                            "The text field in the ContentBlock object at {at} is blank. Add text to the text field, and try again."
                        ));
                    }
                }
                "image" => {
                    if role != "user" {
                        return Err(format!("{at}: You can only include images and documents if the role is user."));
                    }
                    validate_image(&at, &b["image"])?;
                }
                "toolUse" => {
                    if role != "assistant" {
                        return Err(format!("{at}: toolUse blocks are only allowed in assistant messages"));
                    }
                    let t = &b["toolUse"];
                    let id = t["toolUseId"].as_str().unwrap_or_default();
                    if id.is_empty() || t["name"].as_str().is_none_or(str::is_empty) || !t["input"].is_object() {
                        return Err(format!("{at}.toolUse needs a toolUseId, a name and an object input"));
                    }
                    uses_tools = true;
                    last_tool_turn = Some(i);
                    pending.push(id.to_string());
                }
                "toolResult" => {
                    if role != "user" {
                        return Err(format!("{at}: toolResult blocks are only allowed in user messages"));
                    }
                    let r = &b["toolResult"];
                    let id = r["toolUseId"].as_str().unwrap_or_default();
                    if !pending.iter().any(|p| p == id) {
                        return Err(format!(
                            "{at}: The toolResult block's toolUseId {id} does not match a toolUse block in the previous turn."
                        ));
                    }
                    if let Some(status) = r.get("status")
                        && !matches!(status.as_str(), Some("success" | "error"))
                    {
                        return Err(format!("{at}.toolResult.status must be success or error"));
                    }
                    let Some(content) = r["content"].as_array() else {
                        return Err(format!("{at}.toolResult.content must be a list"));
                    };
                    for (k, c) in content.iter().enumerate() {
                        let inner = format!("{at}.toolResult.content.{k}");
                        if let Some(img) = c.get("image") {
                            validate_image(&inner, img)?;
                        } else if c.get("json").is_none() && c["text"].as_str().is_none() {
                            return Err(format!("{inner}: expected text, json or image"));
                        }
                    }
                    uses_tools = true;
                    answered.push(id.to_string());
                }
                "reasoningContent" => {
                    if role != "assistant" {
                        return Err(format!("{at}: reasoningContent is only allowed in assistant messages"));
                    }
                    let r = &b["reasoningContent"]["reasoningText"];
                    if r["text"].as_str().is_none() || r["signature"].as_str().is_none_or(str::is_empty) {
                        return Err(format!("{at}.reasoningContent.reasoningText needs text and a signature"));
                    }
                }
                other => return Err(format!("{at}: unknown ContentBlock member {other}")),
            }
        }
        if role == "user" {
            let missing: Vec<&String> = pending.iter().filter(|p| !answered.contains(p)).collect();
            if !missing.is_empty() {
                return Err(format!(
                    "Expected toolResult blocks at messages.{i}.content for the following Ids: {}",
                    missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
            pending.clear();
        } else if !pending.is_empty() && i + 1 == messages.len() {
            // The final assistant message may not end with unanswered calls either.
            return Err(format!(
                "Expected toolResult blocks after messages.{i} for the following Ids: {}",
                pending.join(", ")
            ));
        }
    }
    if uses_tools && !has_tool_config {
        return Err("The toolConfig field must be defined when using toolUse and toolResult content blocks.".into());
    }
    if thinking.is_some()
        && let Some(i) = last_tool_turn
        && messages[i]["content"][0].get("reasoningContent").is_none()
    {
        return Err(format!(
            "The model returned the following errors: messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `tool_use`. When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks)."
        ));
    }
    Ok(())
}

fn last_user_text(body: &Value) -> String {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    for m in messages.iter().rev().filter(|m| m["role"] == "user") {
        let texts: Vec<&str> =
            m["content"].as_array().into_iter().flatten().filter_map(|b| b["text"].as_str()).collect();
        if !texts.is_empty() {
            return texts.join("\n");
        }
    }
    String::new()
}

// ---------------------------------------------------------------------------------------------
// Answers

fn split_text(t: &str) -> Vec<String> {
    let chars: Vec<char> = t.chars().collect();
    if chars.len() < 3 {
        return vec![t.to_string()];
    }
    let n = chars.len();
    vec![chars[..n / 3].iter().collect(), chars[n / 3..2 * n / 3].iter().collect(), chars[2 * n / 3..].iter().collect()]
}

struct Answer {
    input_tokens: u64,
}

impl Answer {
    fn start(&self) -> Vec<u8> {
        event_frame("messageStart", json!({"role": "assistant"}))
    }

    fn text(&self, index: usize, pieces: &[String]) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = pieces
            .iter()
            .map(|p| event_frame("contentBlockDelta", json!({"contentBlockIndex": index, "delta": {"text": p}})))
            .collect();
        out.push(event_frame("contentBlockStop", json!({"contentBlockIndex": index})));
        out
    }

    fn tool(&self, index: usize, call: &ToolCall) -> Vec<Vec<u8>> {
        let mut out = vec![event_frame(
            "contentBlockStart",
            json!({"contentBlockIndex": index, "start": {"toolUse": {"toolUseId": call.id, "name": call.name}}}),
        )];
        for p in split_text(&call.arguments) {
            out.push(event_frame(
                "contentBlockDelta",
                json!({"contentBlockIndex": index, "delta": {"toolUse": {"input": p}}}),
            ));
        }
        out.push(event_frame("contentBlockStop", json!({"contentBlockIndex": index})));
        out
    }

    fn end(&self, reason: &str, output: u64) -> Vec<Vec<u8>> {
        self.end_with(reason, self.input_tokens, output, 0, 0)
    }

    fn end_with(&self, reason: &str, input: u64, output: u64, cache_read: u64, cache_write: u64) -> Vec<Vec<u8>> {
        let mut usage = json!({"inputTokens": input, "outputTokens": output, "totalTokens": input + output + cache_read + cache_write});
        if cache_read > 0 || cache_write > 0 {
            usage["cacheReadInputTokens"] = json!(cache_read);
            usage["cacheWriteInputTokens"] = json!(cache_write);
        }
        vec![
            event_frame("messageStop", json!({"stopReason": reason})),
            event_frame("metadata", json!({"usage": usage, "metrics": {"latencyMs": 42}})),
        ]
    }

    fn full_text(&self, text: &str, reason: &str) -> Vec<Vec<u8>> {
        let pieces = split_text(text);
        let mut out = vec![self.start()];
        out.extend(self.text(0, &pieces));
        out.extend(self.end(reason, text.len() as u64 / 4 + 1));
        out
    }
}

fn stream_response(frames: Vec<Vec<u8>>, delay: Duration, hold: usize, request_id: &str) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        for (i, f) in frames.into_iter().enumerate() {
            // The first `hold` frames go out at once; the rest wait `delay` each.
            if i >= hold && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if tx.send(Bytes::from(f)).await.is_err() {
                return;
            }
        }
    });
    let body =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx)) });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/vnd.amazon.eventstream")
        .header("x-amzn-requestid", request_id)
        .body(Body::from_stream(body))
        .unwrap_or_default()
}

fn answer(reply: BedrockReply, request: &Value, input_tokens: u64, request_id: &str) -> Response {
    let a = Answer { input_tokens };
    let now = |frames| stream_response(frames, Duration::ZERO, 0, request_id);
    match reply {
        BedrockReply::Reply(Reply::Text(t)) => now(a.full_text(&t, "end_turn")),
        BedrockReply::Reply(Reply::Echo) => now(a.full_text(&format!("echo: {}", last_user_text(request)), "end_turn")),
        BedrockReply::Reply(Reply::SlowEcho(delay)) => {
            let echo = Reply::Chunks { chunks: Reply::echo_chunks(&last_user_text(request)), delay };
            answer(BedrockReply::Reply(echo), request, input_tokens, request_id)
        }
        BedrockReply::Reply(Reply::Chunks { chunks, delay }) => {
            let mut frames = vec![a.start()];
            frames.extend(a.text(0, &chunks));
            frames.extend(a.end("end_turn", chunks.len() as u64));
            stream_response(frames, delay, 1, request_id)
        }
        BedrockReply::Reply(Reply::Tools { text, calls }) => {
            let mut frames = vec![a.start()];
            let mut index = 0;
            if let Some(t) = &text {
                frames.extend(a.text(0, &split_text(t)));
                index = 1;
            }
            for (i, call) in calls.iter().enumerate() {
                frames.extend(a.tool(index + i, call));
            }
            frames.extend(a.end("tool_use", 20));
            now(frames)
        }
        BedrockReply::Reply(Reply::Error { status, kind, message, retry_after }) => {
            aws_error(status, &kind, &message, retry_after.as_deref())
        }
        BedrockReply::Reply(Reply::StreamError { text, kind, message }) => {
            let mut frames = vec![a.start()];
            frames.push(event_frame("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": text}})));
            frames.push(exception_frame(&kind, &message));
            now(frames)
        }
        BedrockReply::Reply(Reply::Raw(body)) => now(vec![body.into_bytes()]),
        BedrockReply::Reply(Reply::Truncated(t)) => now(vec![
            a.start(),
            event_frame("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": t}})),
        ]),
        BedrockReply::Thinking { thinking, signature, text } => {
            let mut frames = vec![a.start()];
            for p in split_text(&thinking) {
                frames.push(event_frame(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": p}}}),
                ));
            }
            frames.push(event_frame(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": signature}}}),
            ));
            frames.push(event_frame("contentBlockStop", json!({"contentBlockIndex": 0})));
            frames.extend(a.text(1, &split_text(&text)));
            frames.extend(a.end("end_turn", 30));
            now(frames)
        }
        BedrockReply::Usage { text, input, output, cache_read, cache_write } => {
            let mut frames = vec![a.start()];
            frames.extend(a.text(0, &split_text(&text)));
            frames.extend(a.end_with("end_turn", input, output, cache_read, cache_write));
            now(frames)
        }
        BedrockReply::Stop { text, reason } => now(a.full_text(&text, &reason)),
        BedrockReply::Bytes(bytes) => now(vec![bytes]),
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (key, api_key, request_id) = {
        let mut g = lock(&inner);
        g.requests.push(Recorded {
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string())).collect(),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            size: body.len(),
        });
        g.paths.push(format!("{method} {}", uri.path()));
        g.counter += 1;
        (g.key.clone(), g.api_key.clone(), format!("00000000-0000-4000-8000-{:012x}", g.counter))
    };
    let received = Received { method: &method, uri: &uri, headers: &headers, body: &body };
    if let Err(refusal) = authenticate(&key, api_key.as_deref(), &received) {
        return refusal;
    }
    let segments: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["foundation-models"]) => {
            let models = lock(&inner).models.clone();
            Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .header("x-amzn-requestid", request_id)
                .body(Body::from(json!({"modelSummaries": models}).to_string()))
                .unwrap_or_default()
        }
        ("POST", ["model", model, "converse-stream"]) => {
            let model = String::from_utf8_lossy(&percent_decode(model)).into_owned();
            if model.is_empty() {
                return aws_error(400, "ValidationException", "The provided model identifier is invalid.", None);
            }
            let request: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    return aws_error(
                        400,
                        "SerializationException",
                        &format!("Unable to parse the request body: {e}"),
                        None,
                    );
                }
            };
            if let Err(message) = validate_converse(&request) {
                return aws_error(400, "ValidationException", &message, None);
            }
            let reply = {
                let mut g = lock(&inner);
                g.replies.pop_front().or_else(|| g.fallback.clone())
            };
            match reply {
                Some(reply) => answer(reply, &request, body.len() as u64 / 4 + 1, &request_id),
                None => aws_error(500, "InternalServerException", "testkit: no scripted reply left", None),
            }
        }
        _ => aws_error(404, "UnknownOperationException", &format!("No operation at {method} {}", uri.path()), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_and_frames_match_the_aws_test_messages() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        // aws-c-event-stream's message_deserializer_test.c
        assert_eq!(encode_frame(&[], b""), [0, 0, 0, 0x10, 0, 0, 0, 0, 0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98, 0xc8, 0xff]);
        let one = encode_frame(&[("content-type", "application/json")], b"{'foo':'bar'}");
        assert_eq!(&one[..12], &[0, 0, 0, 0x3D, 0, 0, 0, 0x20, 0x07, 0xFD, 0x83, 0x96]);
        assert_eq!(&one[one.len() - 4..], &[0x8D, 0x9C, 0x08, 0xB1]);
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(amz_date_of(1_440_938_160), "20150830T123600Z");
        assert_eq!(parse_amz_date("2015-08-30"), None);
    }
}
