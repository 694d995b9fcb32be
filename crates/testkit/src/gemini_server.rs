//! A scripted twin of the Google Gemini API: `POST /v1beta/models/{model}:streamGenerateContent?alt=sse`.
//!
//! Follows the Gemini API reference and guides at ai.google.dev (`models.streamGenerateContent`,
//! `Content` / `Part`, "Function calling", "Thinking", "Thought signatures", "API errors"). Start
//! one per test with [`GeminiServer::start`], queue replies with [`GeminiServer::push`] (the shared
//! [`Reply`] vocabulary, or a [`GeminiReply`] for thinking, exact usage, finish reasons, call ids
//! and a refused prompt), point the provider's `baseUrl` at [`GeminiServer::base_url`], then
//! inspect [`GeminiServer::requests`] and [`GeminiServer::urls`].
//!
//! Requests are checked as the real service checks them and refused with its error bodies
//! (`{"error": {"code", "message", "status", "details"}}`): the key must come in
//! `x-goog-api-key` (missing: 403 `PERMISSION_DENIED`; wrong: 400 `INVALID_ARGUMENT` with an
//! `ErrorInfo` reason `API_KEY_INVALID`), unknown fields are refused, `contents` must not be
//! empty, roles are `user` or `model`, every part holds exactly one kind of data, `inlineData`
//! needs a `mimeType` and base64 `data` (images must be PNG, JPEG, WebP, HEIC or HEIF and decode
//! as such), a `functionCall` turn must be answered by the next `user` turn with one
//! `functionResponse` per call with the same names (and ids, when ids were sent), a call that
//! was sent with a `thoughtSignature` must come back with it (Gemini 3), and a signature the
//! twin never issued is "corrupted" (Google's placeholder `skip_thought_signature_validator`
//! is accepted). Tool declarations must not mix `parameters` and `parametersJsonSchema`, and
//! `parameters` (the OpenAPI subset) refuses JSON Schema keywords it lacks. Stricter than
//! Google on one point, to keep clients honest: the key in the URL (`?key=`) is refused, and
//! only `alt=sse` streams are served.
//!
//! Answers are SSE events (`data: <GenerateContentResponse>` + CRLF CRLF) with cumulative
//! `usageMetadata`, `modelVersion` and `responseId`; the last one carries `finishReason`.
//! Shared tool calls are sent without ids, like the Gemini API does, the first call of a turn
//! signed as Gemini 3 signs it. A failure after the stream started is a bare pretty-printed
//! `{"error": …}` object, as Google sends it. An empty queue answers 500 `INTERNAL` "testkit: no
//! scripted reply left". It must not talk to anything but its own loopback socket.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::post;
use base64::Engine;
use serde_json::{Value, json};

use crate::model_server::{Recorded, Reply, ToolCall};

/// Google's documented placeholder signature for history the model did not produce.
pub const FOREIGN_SIGNATURE: &str = "skip_thought_signature_validator";

/// A function call a [`GeminiAnswer`] streams.
#[derive(Debug, Clone)]
pub struct GeminiCall {
    pub name: String,
    pub args: Value,
    /// `functionCall.id` (the Gemini API usually leaves it out).
    pub id: Option<String>,
    /// The `thoughtSignature` sent beside the call.
    pub signature: Option<String>,
}

impl GeminiCall {
    pub fn new(name: &str, args: Value) -> Self {
        GeminiCall { name: name.into(), args, id: None, signature: None }
    }

    pub fn id(mut self, id: &str) -> Self {
        self.id = Some(id.into());
        self
    }

    pub fn signed(mut self, signature: &str) -> Self {
        self.signature = Some(signature.into());
        self
    }
}

/// Token counts to report. `prompt` includes `cached`, as `promptTokenCount` does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GeminiUsage {
    pub prompt: u64,
    pub cached: u64,
    pub candidates: u64,
    pub thoughts: u64,
}

/// An answer only Gemini's format has: thought parts, signatures, exact usage, any finish reason.
#[derive(Debug, Clone)]
pub struct GeminiAnswer {
    /// Thought pieces (`thought: true`), sent only when the request asked for `includeThoughts`.
    pub thinking: Vec<String>,
    /// On the last thought part (or the first text part when thoughts are not included).
    pub thinking_signature: Option<String>,
    pub text: Vec<String>,
    /// On the last text part.
    pub text_signature: Option<String>,
    pub calls: Vec<GeminiCall>,
    pub finish_reason: String,
    pub finish_message: Option<String>,
    pub usage: Option<GeminiUsage>,
}

impl GeminiAnswer {
    pub fn text(text: &str) -> Self {
        GeminiAnswer {
            thinking: vec![],
            thinking_signature: None,
            text: split_text(text),
            text_signature: None,
            calls: vec![],
            finish_reason: "STOP".into(),
            finish_message: None,
            usage: None,
        }
    }

    /// Signed thoughts, then the answer.
    pub fn thinking(thought: &str, signature: &str, text: &str) -> Self {
        GeminiAnswer {
            thinking: split_text(thought),
            thinking_signature: Some(signature.into()),
            ..GeminiAnswer::text(text)
        }
    }

    pub fn calls(calls: Vec<GeminiCall>) -> Self {
        GeminiAnswer { calls, text: vec![], ..GeminiAnswer::text("") }
    }

    pub fn with_usage(mut self, usage: GeminiUsage) -> Self {
        self.usage = Some(usage);
        self
    }

    pub fn finish(mut self, reason: &str) -> Self {
        self.finish_reason = reason.into();
        self
    }

    pub fn text_signature(mut self, signature: &str) -> Self {
        self.text_signature = Some(signature.into());
        self
    }
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub enum GeminiReply {
    Shared(Reply),
    Answer(GeminiAnswer),
    /// The prompt is refused: one event with `promptFeedback.blockReason` and no candidates.
    PromptBlocked(String),
}

impl From<Reply> for GeminiReply {
    fn from(r: Reply) -> Self {
        GeminiReply::Shared(r)
    }
}

impl From<GeminiAnswer> for GeminiReply {
    fn from(a: GeminiAnswer) -> Self {
        GeminiReply::Answer(a)
    }
}

impl GeminiReply {
    /// A recorded stream from `fixtures/gemini/<name>.sse`.
    pub fn fixture(name: &str) -> Reply {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join("gemini")
            .join(format!("{name}.sse"));
        Reply::Raw(std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display())))
    }
}

/// A signed function call the twin sent: it must come back with its signature.
#[derive(Debug, Clone)]
struct Issued {
    name: String,
    args: Value,
    signature: String,
}

struct Inner {
    key: Option<String>,
    replies: VecDeque<GeminiReply>,
    requests: Vec<Recorded>,
    urls: Vec<String>,
    signed_calls: Vec<Issued>,
    signatures: Vec<String>,
    counter: u64,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(inner: &Shared) -> std::sync::MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running twin. Dropping it stops the server.
pub struct GeminiServer {
    addr: SocketAddr,
    inner: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GeminiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GeminiServer {
    /// Starts a server on 127.0.0.1 with a random port. `key`: the key it requires in
    /// `x-goog-api-key` (`None`: any request is accepted).
    pub async fn start(key: Option<&str>) -> GeminiServer {
        let inner = Arc::new(Mutex::new(Inner {
            key: key.map(String::from),
            replies: VecDeque::new(),
            requests: Vec::new(),
            urls: Vec::new(),
            signed_calls: Vec::new(),
            signatures: Vec::new(),
            counter: 0,
        }));
        let app = Router::new()
            .route("/v1beta/{*rest}", post(generate))
            .fallback(|| async {
                error_response(404, "NOT_FOUND", "The requested URL was not found on this server.", vec![])
            })
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind gemini twin");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        GeminiServer { addr, inner, task }
    }

    /// The `baseUrl` to configure: `http://127.0.0.1:<port>/v1beta`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1beta", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues a reply for the next accepted request.
    pub fn push(&self, reply: impl Into<GeminiReply>) -> &Self {
        lock(&self.inner).replies.push_back(reply.into());
        self
    }

    /// Every request received so far (including refused ones).
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.inner).requests.clone()
    }

    /// The path and query of every request, in order.
    pub fn urls(&self) -> Vec<String> {
        lock(&self.inner).urls.clone()
    }

    /// Replies not yet used.
    pub fn pending(&self) -> usize {
        lock(&self.inner).replies.len()
    }
}

/// The HTTP code of a `google.rpc.Code` name.
fn code_of(status: &str) -> u16 {
    match status {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => 400,
        "UNAUTHENTICATED" => 401,
        "PERMISSION_DENIED" => 403,
        "NOT_FOUND" => 404,
        "RESOURCE_EXHAUSTED" => 429,
        "CANCELLED" => 499,
        "UNAVAILABLE" => 503,
        "DEADLINE_EXCEEDED" => 504,
        _ => 500,
    }
}

fn error_body(code: u16, status: &str, message: &str, details: Vec<Value>) -> Value {
    let mut e = json!({"code": code, "message": message, "status": status});
    if !details.is_empty() {
        e["details"] = Value::Array(details);
    }
    json!({ "error": e })
}

fn error_response(code: u16, status: &str, message: &str, details: Vec<Value>) -> Response {
    let body = serde_json::to_string_pretty(&error_body(code, status, message, details)).unwrap_or_default();
    Response::builder()
        .status(code)
        .header("content-type", "application/json; charset=UTF-8")
        .body(Body::from(body))
        .unwrap_or_default()
}

fn invalid(message: String) -> Response {
    error_response(400, "INVALID_ARGUMENT", &message, vec![])
}

fn key_invalid() -> Response {
    let message = "API key not valid. Please pass a valid API key.";
    error_response(
        400,
        "INVALID_ARGUMENT",
        message,
        vec![
            json!({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}),
            json!({"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": message}),
        ],
    )
}

/// A scripted error reply: `kind` is the `google.rpc.Code` name (or `API_KEY_INVALID`).
fn scripted_error(code: u16, kind: &str, message: &str, retry_after: Option<&str>) -> Response {
    if kind == "API_KEY_INVALID" {
        return key_invalid();
    }
    let mut details = vec![];
    if let Some(after) = retry_after {
        details.push(json!({"@type": "type.googleapis.com/google.rpc.Help", "links": [{
            "description": "Learn more about Gemini API quotas", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]}));
        details.push(json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{after}s")}));
    }
    error_response(code, kind, message, details)
}

fn decode_base64(data: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(data))
        .ok()
}

/// The image format of `bytes`, from their signature.
fn sniff_image(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        Some("image/heic")
    } else {
        None
    }
}

const IMAGE_TYPES: [&str; 5] = ["image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"];

fn unknown_field(name: &str, at: &str) -> String {
    if at.is_empty() {
        format!("Invalid JSON payload received. Unknown name \"{name}\": Cannot find field.")
    } else {
        format!("Invalid JSON payload received. Unknown name \"{name}\" at '{at}': Cannot find field.")
    }
}

fn check_fields(v: &Value, allowed: &[&str], at: &str) -> Result<(), String> {
    if let Some(m) = v.as_object()
        && let Some(k) = m.keys().find(|k| !allowed.contains(&k.as_str()))
    {
        return Err(unknown_field(k, at));
    }
    Ok(())
}

/// Keywords of the OpenAPI subset `FunctionDeclaration.parameters` (`Schema`) accepts.
const SCHEMA_FIELDS: [&str; 21] = [
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
];

fn check_openapi_schema(v: &Value, at: &str) -> Result<(), String> {
    let Some(m) = v.as_object() else { return Err(format!("Invalid value at '{at}': expected a Schema object")) };
    for (k, sub) in m {
        if !SCHEMA_FIELDS.contains(&k.as_str()) && k != "maximum" {
            return Err(unknown_field(k, at));
        }
        match k.as_str() {
            "properties" => {
                for (name, p) in sub.as_object().into_iter().flatten() {
                    check_openapi_schema(p, &format!("{at}.properties[{name}].value"))?;
                }
            }
            "items" => check_openapi_schema(sub, &format!("{at}.items"))?,
            _ => {}
        }
    }
    Ok(())
}

fn check_tools(tools: &Value) -> Result<(), String> {
    let tools = tools.as_array().ok_or("Invalid value at 'tools': expected a list")?;
    for (i, t) in tools.iter().enumerate() {
        check_fields(
            t,
            &["functionDeclarations", "function_declarations", "googleSearch", "codeExecution", "urlContext"],
            &format!("tools[{i}]"),
        )?;
        let decls = t.get("functionDeclarations").or_else(|| t.get("function_declarations"));
        for (j, d) in decls.and_then(Value::as_array).into_iter().flatten().enumerate() {
            let at = format!("tools[{i}].function_declarations[{j}]");
            check_fields(
                d,
                &[
                    "name",
                    "description",
                    "parameters",
                    "parametersJsonSchema",
                    "response",
                    "responseJsonSchema",
                    "behavior",
                ],
                &at,
            )?;
            let name = d["name"].as_str().unwrap_or_default();
            let first_ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
            let rest_ok = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
            if !first_ok || !rest_ok || name.len() > 64 {
                return Err(format!(
                    "* GenerateContentRequest.{at}.name: Invalid function name. Must start with a letter or an underscore. Must be a-z, A-Z, 0-9, or contain underscores, dots, colons and dashes, with a maximum length of 64."
                ));
            }
            if d.get("parameters").is_some() && d.get("parametersJsonSchema").is_some() {
                return Err(format!(
                    "* GenerateContentRequest.{at}: parameters and parameters_json_schema are mutually exclusive."
                ));
            }
            if let Some(p) = d.get("parameters") {
                check_openapi_schema(p, &format!("{at}.parameters"))?;
            }
            if let Some(s) = d.get("parametersJsonSchema")
                && s.get("type").and_then(Value::as_str) != Some("object")
            {
                return Err(format!(
                    "* GenerateContentRequest.{at}.parameters_json_schema: the schema must describe an object (type: object)."
                ));
            }
        }
    }
    Ok(())
}

fn check_generation_config(c: &Value) -> Result<(), String> {
    check_fields(
        c,
        &[
            "maxOutputTokens",
            "temperature",
            "topP",
            "topK",
            "candidateCount",
            "stopSequences",
            "responseMimeType",
            "responseSchema",
            "responseJsonSchema",
            "thinkingConfig",
            "seed",
            "presencePenalty",
            "frequencyPenalty",
            "responseModalities",
        ],
        "generation_config",
    )?;
    if let Some(n) = c.get("maxOutputTokens")
        && n.as_u64().is_none_or(|n| n < 1)
    {
        return Err(format!("Invalid value at 'generation_config.max_output_tokens' (TYPE_INT32), {n}"));
    }
    if let Some(t) = c.get("thinkingConfig") {
        check_fields(t, &["thinkingBudget", "includeThoughts", "thinkingLevel"], "generation_config.thinking_config")?;
        if let Some(b) = t.get("thinkingBudget")
            && b.as_i64().is_none()
        {
            return Err(format!(
                "Invalid value at 'generation_config.thinking_config.thinking_budget' (TYPE_INT32), {b}"
            ));
        }
        if let Some(b) = t.get("includeThoughts")
            && !b.is_boolean()
        {
            return Err(format!(
                "Invalid value at 'generation_config.thinking_config.include_thoughts' (TYPE_BOOL), {b}"
            ));
        }
    }
    Ok(())
}

/// Data fields of a `Part` (exactly one must be set).
const PART_DATA: [&str; 7] =
    ["text", "inlineData", "functionCall", "functionResponse", "fileData", "executableCode", "codeExecutionResult"];

fn check_part(i: usize, j: usize, role: &str, p: &Value, inner: &Inner) -> Result<(), String> {
    let at = format!("contents[{i}].parts[{j}]");
    let mut allowed: Vec<&str> = PART_DATA.to_vec();
    allowed.extend(["thought", "thoughtSignature", "videoMetadata"]);
    check_fields(p, &allowed, &at)?;
    let set: Vec<&str> = PART_DATA.iter().copied().filter(|k| p.get(*k).is_some()).collect();
    if set.len() != 1 {
        return Err(format!(
            "* GenerateContentRequest.{at}.data: required oneof field 'data' must have one initialized field"
        ));
    }
    if let Some(sig) = p.get("thoughtSignature") {
        let sig = sig.as_str().unwrap_or_default();
        if decode_base64(sig).is_none() {
            return Err(format!("Invalid value at '{at}.thought_signature' (TYPE_BYTES), Base64 decoding failed"));
        }
        if sig != FOREIGN_SIGNATURE && !inner.signatures.iter().any(|s| s == sig) {
            return Err("Corrupted thought signature.".into());
        }
    }
    match set[0] {
        "text" if !p["text"].is_string() => {
            return Err(format!("Invalid value at '{at}.text' (TYPE_STRING), {}", p["text"]));
        }
        "inlineData" => {
            let d = &p["inlineData"];
            check_fields(d, &["mimeType", "data"], &format!("{at}.inline_data"))?;
            let mime = d["mimeType"].as_str().unwrap_or_default();
            if mime.is_empty() {
                return Err(format!("* GenerateContentRequest.{at}.inline_data.mime_type: mime_type is not specified"));
            }
            let data = d["data"].as_str().unwrap_or_default();
            let bytes = decode_base64(data).filter(|b| !b.is_empty()).ok_or_else(|| {
                let (shown, _) = data.split_at(data.len().min(20));
                format!("Invalid value at '{at}.inline_data.data' (TYPE_BYTES), Base64 decoding failed for \"{shown}\"")
            })?;
            if mime.starts_with("image/") {
                if !IMAGE_TYPES.contains(&mime) {
                    return Err(format!("Unsupported MIME type: {mime}"));
                }
                let sniffed = sniff_image(&bytes);
                let heif = mime == "image/heif" && sniffed == Some("image/heic");
                if sniffed != Some(mime) && !heif {
                    return Err("Unable to process input image. Please retry or report in https://developers.generativeai.google/guide/troubleshooting".into());
                }
            }
        }
        "functionCall" => {
            if role != "model" {
                return Err(format!(
                    "* GenerateContentRequest.{at}.function_call: only model turns may hold function calls"
                ));
            }
            let c = &p["functionCall"];
            check_fields(c, &["name", "args", "id"], &format!("{at}.function_call"))?;
            if c["name"].as_str().is_none_or(str::is_empty) {
                return Err(format!("* GenerateContentRequest.{at}.function_call.name: name is not specified"));
            }
            if let Some(a) = c.get("args")
                && !a.is_object()
            {
                return Err(format!(
                    "Invalid value at '{at}.function_call.args' (type.googleapis.com/google.protobuf.Struct), {a}"
                ));
            }
        }
        "functionResponse" => {
            if role != "user" {
                return Err(format!(
                    "* GenerateContentRequest.{at}.function_response: function responses belong in user turns"
                ));
            }
            let r = &p["functionResponse"];
            check_fields(
                r,
                &["name", "response", "id", "parts", "willContinue", "scheduling"],
                &format!("{at}.function_response"),
            )?;
            if r["name"].as_str().is_none_or(str::is_empty) {
                return Err(format!("* GenerateContentRequest.{at}.function_response.name: name is not specified"));
            }
            if !r["response"].is_object() {
                return Err(format!(
                    "Invalid value at '{at}.function_response.response' (type.googleapis.com/google.protobuf.Struct), {}",
                    r["response"]
                ));
            }
        }
        _ => {}
    }
    if p.get("thought").is_some_and(|t| !t.is_boolean()) {
        return Err(format!("Invalid value at '{at}.thought' (TYPE_BOOL), {}", p["thought"]));
    }
    Ok(())
}

/// Function calls of a model turn and the responses of the user turn after it.
fn check_pairing(contents: &[Value], inner: &Inner) -> Result<(), String> {
    // (name, id) of the calls the previous model turn made.
    let mut pending: Vec<(String, Option<String>)> = Vec::new();
    let mut previous_role = "";
    for (i, c) in contents.iter().enumerate() {
        let role = c["role"].as_str().unwrap_or_default();
        let parts = c["parts"].as_array().cloned().unwrap_or_default();
        let calls: Vec<&Value> = parts.iter().filter_map(|p| p.get("functionCall").map(|_| p)).collect();
        let responses: Vec<&Value> = parts.iter().filter_map(|p| p.get("functionResponse")).collect();
        if !pending.is_empty() {
            if role != "user" || responses.is_empty() {
                return Err(format!(
                    "Please ensure that function call turn comes immediately before a function response turn: contents[{}] calls {} but contents[{i}] does not answer.",
                    i - 1,
                    pending.iter().map(|(n, _)| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                ));
            }
            if responses.len() != pending.len() {
                return Err("Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn.".into());
            }
            let mut open = pending.clone();
            for r in &responses {
                let name = r["name"].as_str().unwrap_or_default();
                let id = r["id"].as_str();
                let at = open.iter().position(|(n, call_id)| {
                    n == name && (id.is_none() || call_id.is_none() || call_id.as_deref() == id)
                });
                match at {
                    Some(k) => {
                        open.remove(k);
                    }
                    None => {
                        return Err(format!(
                            "Function response `{name}`{} in contents[{i}] does not answer any function call of contents[{}] ({}).",
                            id.map(|x| format!(" (id {x})")).unwrap_or_default(),
                            i - 1,
                            pending.iter().map(|(n, _)| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                        ));
                    }
                }
            }
            pending.clear();
        } else if !responses.is_empty() {
            return Err(format!(
                "Please ensure that function response turn comes immediately after a function call turn (contents[{i}])."
            ));
        }
        if !calls.is_empty() {
            if previous_role == "model" {
                return Err("Please ensure that function call turn comes immediately after a user turn or after a function response turn.".into());
            }
            for p in &calls {
                let call = &p["functionCall"];
                let name = call["name"].as_str().unwrap_or_default();
                let args = call.get("args").cloned().unwrap_or_else(|| json!({}));
                let sent = p.get("thoughtSignature").and_then(Value::as_str);
                let issued: Vec<&Issued> =
                    inner.signed_calls.iter().filter(|s| s.name == name && s.args == args).collect();
                if !issued.is_empty() && sent.is_none() {
                    return Err(format!(
                        "Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call `{name}` , position {}. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details.",
                        i + 1
                    ));
                }
                if let Some(sig) = sent
                    && !issued.is_empty()
                    && sig != FOREIGN_SIGNATURE
                    && !issued.iter().any(|s| s.signature == sig)
                {
                    return Err("Corrupted thought signature.".into());
                }
                pending.push((name.to_string(), call["id"].as_str().map(String::from)));
            }
        }
        previous_role = if role == "model" { "model" } else { "user" };
    }
    if !pending.is_empty() {
        return Err(format!(
            "Please ensure that function call turn comes immediately before a function response turn: the last turn calls {} without responses.",
            pending.iter().map(|(n, _)| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(())
}

/// Checks a request body the way the real API does.
fn validate(v: &Value, inner: &Inner) -> Result<(), String> {
    check_fields(
        v,
        &[
            "contents",
            "systemInstruction",
            "system_instruction",
            "tools",
            "toolConfig",
            "tool_config",
            "safetySettings",
            "safety_settings",
            "generationConfig",
            "generation_config",
            "cachedContent",
            "cached_content",
        ],
        "",
    )?;
    let Some(contents) = v["contents"].as_array().filter(|c| !c.is_empty()) else {
        return Err("* GenerateContentRequest.contents: contents is not specified\n".into());
    };
    if let Some(s) = v.get("systemInstruction").or_else(|| v.get("system_instruction")) {
        check_fields(s, &["parts", "role"], "system_instruction")?;
        let parts = s["parts"].as_array().filter(|p| !p.is_empty());
        if parts.is_none_or(|p| p.iter().any(|x| !x["text"].is_string())) {
            return Err(
                "* GenerateContentRequest.system_instruction.parts: system instructions must be text parts".into()
            );
        }
    }
    if let Some(t) = v.get("tools") {
        check_tools(t)?;
    }
    if let Some(c) = v.get("generationConfig").or_else(|| v.get("generation_config")) {
        check_generation_config(c)?;
    }
    for (i, c) in contents.iter().enumerate() {
        check_fields(c, &["role", "parts"], &format!("contents[{i}]"))?;
        let role = c["role"].as_str().unwrap_or_default();
        if role != "user" && role != "model" {
            return Err("Please use a valid role: user, model.".into());
        }
        let Some(parts) = c["parts"].as_array().filter(|p| !p.is_empty()) else {
            return Err(format!("* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n"));
        };
        for (j, p) in parts.iter().enumerate() {
            check_part(i, j, role, p, inner)?;
        }
    }
    check_pairing(contents, inner)
}

fn split_text(t: &str) -> Vec<String> {
    // Three roughly equal pieces on character boundaries, so clients must join deltas.
    let chars: Vec<char> = t.chars().collect();
    if chars.len() < 3 {
        return if t.is_empty() { vec![] } else { vec![t.to_string()] };
    }
    let n = chars.len();
    vec![chars[..n / 3].iter().collect(), chars[n / 3..2 * n / 3].iter().collect(), chars[2 * n / 3..].iter().collect()]
}

fn tokens(pieces: &[String]) -> u64 {
    pieces.iter().map(|p| p.len() as u64 / 4 + 1).sum()
}

/// The events of one streamed answer.
struct Stream {
    model: String,
    response_id: String,
    prompt: u64,
    include_thoughts: bool,
}

impl Stream {
    fn event(&self, parts: Option<Vec<Value>>, finish: Option<&str>, usage: Value) -> String {
        let mut candidate = json!({"index": 0});
        if let Some(parts) = parts {
            candidate["content"] = json!({"parts": parts, "role": "model"});
        }
        if let Some(f) = finish {
            candidate["finishReason"] = json!(f);
        }
        let v = json!({"candidates": [candidate], "usageMetadata": usage, "modelVersion": self.model,
            "responseId": self.response_id});
        format!("data: {v}\r\n\r\n")
    }

    fn running_usage(&self, so_far: u64) -> Value {
        json!({"promptTokenCount": self.prompt, "totalTokenCount": self.prompt + so_far,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": self.prompt}]})
    }

    fn final_usage(&self, u: GeminiUsage) -> Value {
        let mut usage = json!({"promptTokenCount": u.prompt, "candidatesTokenCount": u.candidates,
            "totalTokenCount": u.prompt + u.candidates + u.thoughts,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": u.prompt}]});
        if u.thoughts > 0 {
            usage["thoughtsTokenCount"] = json!(u.thoughts);
        }
        if u.cached > 0 {
            usage["cachedContentTokenCount"] = json!(u.cached);
            usage["cacheTokensDetails"] = json!([{"modality": "TEXT", "tokenCount": u.cached}]);
        }
        usage
    }

    /// Events for groups of parts; the last group carries the finish reason and final usage.
    fn events(&self, groups: Vec<Vec<Value>>, finish: &str, usage: GeminiUsage) -> Vec<String> {
        let mut out = Vec::new();
        let n = groups.len();
        let mut so_far = 0;
        for (k, parts) in groups.into_iter().enumerate() {
            so_far += parts.iter().map(|p| p["text"].as_str().map_or(3, |t| t.len() as u64 / 4 + 1)).sum::<u64>();
            if k + 1 == n {
                out.push(self.event(Some(parts), Some(finish), self.final_usage(usage)));
            } else {
                out.push(self.event(Some(parts), None, self.running_usage(so_far)));
            }
        }
        if n == 0 {
            let parts = (finish == "STOP").then(|| vec![json!({"text": ""})]);
            out.push(self.event(parts, Some(finish), self.final_usage(usage)));
        }
        out
    }

    fn text(&self, pieces: &[String]) -> Vec<String> {
        let groups = pieces.iter().map(|p| vec![json!({"text": p})]).collect();
        let usage = GeminiUsage { prompt: self.prompt, candidates: tokens(pieces), ..Default::default() };
        self.events(groups, "STOP", usage)
    }

    fn answer(&self, a: &GeminiAnswer, inner: &mut Inner) -> Vec<String> {
        let mut groups: Vec<Vec<Value>> = Vec::new();
        if self.include_thoughts {
            for p in &a.thinking {
                groups.push(vec![json!({"text": p, "thought": true})]);
            }
            if let (Some(sig), Some(last)) = (&a.thinking_signature, groups.last_mut()) {
                last[0]["thoughtSignature"] = json!(sig);
            }
        }
        let text_start = groups.len();
        for p in &a.text {
            groups.push(vec![json!({"text": p})]);
        }
        if let Some(sig) = &a.text_signature {
            match groups.last_mut() {
                Some(last) if !a.text.is_empty() => last[0]["thoughtSignature"] = json!(sig),
                _ => groups.push(vec![json!({"text": "", "thoughtSignature": sig})]),
            }
        }
        if !self.include_thoughts
            && let Some(sig) = &a.thinking_signature
        {
            match groups.get_mut(text_start) {
                Some(first) if first[0].get("thoughtSignature").is_none() => first[0]["thoughtSignature"] = json!(sig),
                _ => {}
            }
        }
        for sig in [&a.thinking_signature, &a.text_signature].into_iter().flatten() {
            inner.signatures.push(sig.clone());
        }
        if !a.calls.is_empty() {
            let parts = a
                .calls
                .iter()
                .map(|c| {
                    let mut call = json!({"name": c.name, "args": c.args});
                    if let Some(id) = &c.id {
                        call["id"] = json!(id);
                    }
                    let mut part = json!({"functionCall": call});
                    if let Some(sig) = &c.signature {
                        part["thoughtSignature"] = json!(sig);
                        inner.signatures.push(sig.clone());
                        inner.signed_calls.push(Issued {
                            name: c.name.clone(),
                            args: c.args.clone(),
                            signature: sig.clone(),
                        });
                    }
                    part
                })
                .collect();
            groups.push(parts);
        }
        let usage = a.usage.unwrap_or(GeminiUsage {
            prompt: self.prompt,
            cached: 0,
            candidates: tokens(&a.text) + 10 * a.calls.len() as u64,
            thoughts: tokens(&a.thinking),
        });
        self.events(groups, &a.finish_reason, usage)
    }
}

fn sse_response(events: Vec<String>, delay: Duration) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        for e in events {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if tx.send(Bytes::from(e)).await.is_err() {
                return;
            }
        }
        // Dropping the sender ends the body, finished or not.
    });
    let body =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx)) });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("x-content-type-options", "nosniff")
        .body(Body::from_stream(body))
        .unwrap_or_default()
}

fn last_user_text(body: &Value) -> String {
    let contents = body["contents"].as_array().cloned().unwrap_or_default();
    for c in contents.iter().rev() {
        if c["role"] != "user" {
            continue;
        }
        let texts: Vec<&str> = c["parts"].as_array().into_iter().flatten().filter_map(|p| p["text"].as_str()).collect();
        if !texts.is_empty() {
            return texts.join("\n");
        }
    }
    String::new()
}

/// Records the signatures a raw (recorded) stream hands out, so they are accepted back.
fn learn_signatures(body: &str, inner: &mut Inner) {
    for line in body.lines() {
        let Some(data) = line.strip_prefix("data:") else { continue };
        let Ok(v) = serde_json::from_str::<Value>(data.trim()) else { continue };
        let parts = v.pointer("/candidates/0/content/parts").and_then(Value::as_array).cloned().unwrap_or_default();
        for p in parts {
            let Some(sig) = p["thoughtSignature"].as_str() else { continue };
            inner.signatures.push(sig.to_string());
            if let Some(call) = p.get("functionCall") {
                inner.signed_calls.push(Issued {
                    name: call["name"].as_str().unwrap_or_default().to_string(),
                    args: call.get("args").cloned().unwrap_or_else(|| json!({})),
                    signature: sig.to_string(),
                });
            }
        }
    }
}

fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.to_string(), String::new()),
        })
        .collect()
}

/// The model of `models/{id}:streamGenerateContent` (or `tunedModels/{id}`).
// The refusal is the HTTP response itself; it is built once per refused request.
#[allow(clippy::result_large_err)]
fn route(path: &str) -> Result<String, Response> {
    let rest = path.strip_prefix("/v1beta/").unwrap_or_default();
    let Some((resource, method)) = rest.rsplit_once(':') else {
        return Err(error_response(404, "NOT_FOUND", "The requested URL was not found on this server.", vec![]));
    };
    let model = resource.strip_prefix("models/").or_else(|| resource.strip_prefix("tunedModels/"));
    let Some(model) = model.filter(|m| !m.is_empty() && !m.contains('/')) else {
        return Err(error_response(
            404,
            "NOT_FOUND",
            &format!(
                "{resource} is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods."
            ),
            vec![],
        ));
    };
    match method {
        "streamGenerateContent" => Ok(model.to_string()),
        "generateContent" => Err(invalid("testkit serves only streamGenerateContent".into())),
        other => Err(error_response(404, "NOT_FOUND", &format!("Method not found: {other}"), vec![])),
    }
}

async fn generate(State(inner): State<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let key = {
        let mut g = lock(&inner);
        g.requests.push(Recorded {
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string())).collect(),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            size: body.len(),
        });
        g.urls.push(uri.path_and_query().map(|p| p.to_string()).unwrap_or_default());
        g.key.clone()
    };
    let model = match route(uri.path()) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let query = query_pairs(&uri);
    if query.iter().any(|(k, _)| k == "key") {
        return invalid("testkit: the API key must be sent in the x-goog-api-key header, never in the URL".into());
    }
    if !query.iter().any(|(k, v)| k == "alt" && v == "sse") {
        return invalid("testkit serves only server-sent events: add ?alt=sse".into());
    }
    if let Some(expected) = key {
        match headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()) {
            None => {
                return error_response(
                    403,
                    "PERMISSION_DENIED",
                    "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
                    vec![],
                );
            }
            Some(k) if k != expected => return key_invalid(),
            _ => {}
        }
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return invalid(format!("Invalid JSON payload received. {e}")),
    };
    let checked = {
        let g = lock(&inner);
        validate(&request, &g)
    };
    if let Err(m) = checked {
        return invalid(m);
    }
    let mut g = lock(&inner);
    let Some(reply) = g.replies.pop_front() else {
        return error_response(500, "INTERNAL", "testkit: no scripted reply left", vec![]);
    };
    g.counter += 1;
    let thinking = request.pointer("/generationConfig/thinkingConfig/includeThoughts") == Some(&json!(true));
    let stream = Stream {
        model: model.clone(),
        response_id: format!("testkit-{}", g.counter),
        prompt: body.len() as u64 / 4,
        include_thoughts: thinking,
    };
    match reply {
        GeminiReply::Answer(a) => {
            let events = stream.answer(&a, &mut g);
            sse_response(events, Duration::ZERO)
        }
        GeminiReply::PromptBlocked(reason) => {
            let v = json!({"promptFeedback": {"blockReason": reason}, "usageMetadata": stream.running_usage(0),
                "modelVersion": model, "responseId": stream.response_id});
            sse_response(vec![format!("data: {v}\r\n\r\n")], Duration::ZERO)
        }
        GeminiReply::Shared(reply) => match reply {
            Reply::SlowEcho(delay) => sse_response(stream.text(&Reply::echo_chunks(&last_user_text(&request))), delay),
            Reply::Text(t) => sse_response(stream.text(&split_text(&t)), Duration::ZERO),
            Reply::Echo => {
                let t = format!("echo: {}", last_user_text(&request));
                sse_response(stream.text(&split_text(&t)), Duration::ZERO)
            }
            Reply::Chunks { chunks, delay } => {
                let mut events: Vec<String> = chunks
                    .iter()
                    .enumerate()
                    .map(|(k, c)| {
                        stream.event(Some(vec![json!({"text": c})]), None, stream.running_usage(k as u64 + 1))
                    })
                    .collect();
                let usage = GeminiUsage { prompt: stream.prompt, candidates: tokens(&chunks), ..Default::default() };
                let last = stream.event(Some(vec![json!({"text": ""})]), Some("STOP"), stream.final_usage(usage));
                events.push(last);
                sse_response(events, delay)
            }
            Reply::Tools { text, calls } => {
                let mut answer = GeminiAnswer::calls(vec![]);
                answer.text = text.as_deref().map(split_text).unwrap_or_default();
                let serial = g.counter;
                answer.calls = calls
                    .iter()
                    .enumerate()
                    .map(|(k, c): (usize, &ToolCall)| {
                        let args = serde_json::from_str::<Value>(&c.arguments)
                            .ok()
                            .filter(Value::is_object)
                            .unwrap_or_else(|| json!({}));
                        let mut call = GeminiCall::new(&c.name, args);
                        // Gemini 3 signs the first call of a step only.
                        if k == 0 {
                            let sig = base64::engine::general_purpose::STANDARD
                                .encode(format!("testkit-thought-signature-{serial}-{}", c.name));
                            call = call.signed(&sig);
                        }
                        call
                    })
                    .collect();
                let events = stream.answer(&answer, &mut g);
                sse_response(events, Duration::ZERO)
            }
            Reply::Error { status, kind, message, retry_after } => {
                scripted_error(status, &kind, &message, retry_after.as_deref())
            }
            Reply::StreamError { text, kind, message } => {
                let first = stream.event(Some(vec![json!({"text": text})]), None, stream.running_usage(2));
                let err = serde_json::to_string_pretty(&error_body(code_of(&kind), &kind, &message, vec![]))
                    .unwrap_or_default();
                sse_response(vec![first, format!("{err}\n")], Duration::ZERO)
            }
            Reply::Raw(body) => {
                learn_signatures(&body, &mut g);
                Response::builder()
                    .status(200)
                    .header("content-type", "text/event-stream")
                    .body(Body::from(body))
                    .unwrap_or_default()
            }
            Reply::Truncated(t) => {
                let first = stream.event(Some(vec![json!({"text": t})]), None, stream.running_usage(2));
                sse_response(vec![first], Duration::ZERO)
            }
        },
    }
}
