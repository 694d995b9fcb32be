//! A scripted twin of the OpenAI Responses API: `POST /v1/responses` with `stream: true`.
//!
//! Follows OpenAI's API reference for creating a response and its streaming events
//! (developers.openai.com/docs/guides/streaming-responses and the "Streaming events" reference),
//! the function-calling guide (`function_call` / `function_call_output` items paired by
//! `call_id`), the images guide (`input_image` with a data URL or an https URL) and the reasoning
//! guide (`reasoning` items, `include: ["reasoning.encrypted_content"]`). Start one per test with
//! [`ResponsesServer::start`], queue replies with [`ResponsesServer::push`] (the shared [`Reply`]
//! vocabulary, or a [`ResponsesReply`] for reasoning, exact usage, `response.incomplete` and
//! `response.failed`), point the provider's `baseUrl` at [`ResponsesServer::base_url`], then
//! inspect [`ResponsesServer::requests`].
//!
//! Requests are checked the way the real service checks them and refused with its error body
//! `{"error": {"message", "type", "param", "code"}}`: a missing key is a 401 with `code: null`, a
//! wrong one a 401 `invalid_api_key` whose message shows the key masked (as OpenAI does); `model`
//! and `input` are required; `max_output_tokens` must be at least 16; tools must be flat
//! `{type: "function", name, parameters}` (the Chat Completions `function` wrapper is an unknown
//! parameter); `reasoning.effort` / `reasoning.summary` / `include` take their documented values;
//! message parts must fit their role (`input_text` / `input_image` / `input_file` for user, system
//! and developer, `output_text` / `refusal` for assistant); an `input_image` URL must be https or a
//! `data:image/{png,jpeg,gif,webp};base64,…` URL whose bytes are that image. Every `function_call`
//! item must be answered later by a `function_call_output` with its `call_id` ("No tool output
//! found for function call …") and every output must answer an earlier call ("No tool call found
//! for function call output with call_id …"). A replayed `reasoning` item must carry
//! `encrypted_content` the twin itself issued; one that only names an `rs_…` id is a 404 "Items are
//! not persisted when `store` is set to false", as is an `item_reference`. The twin only serves
//! `stream: true`.
//!
//! Answers are the documented SSE events, each `event: <type>` plus JSON with `type` and a
//! `sequence_number`: `response.created`, `response.in_progress`, per output item
//! `response.output_item.added`, its part and delta events, `response.output_item.done`, and
//! finally `response.completed` (with `usage`) or `response.incomplete`. An empty queue answers 500
//! "testkit: no scripted reply left". It must not talk to anything but its own loopback socket.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use base64::Engine;
use serde_json::{Value, json};

use crate::model_server::{Recorded, Reply, ToolCall};

/// `created_at` of every response (a fixed time keeps streams comparable).
const CREATED_AT: u64 = 1_760_000_000;

/// Token counts a reply reports, in the API's terms: `input_tokens` includes `cached_tokens`,
/// `output_tokens` includes `reasoning_tokens`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponsesUsage {
    pub input_tokens: u64,
    pub cached_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
}

/// A reasoning item to stream before the answer.
#[derive(Debug, Clone)]
pub struct Reasoning {
    /// Summary parts, each streamed as `response.reasoning_summary_text.delta` pieces.
    pub summary: Vec<String>,
    /// The opaque `encrypted_content`; the twin accepts it back in later requests.
    pub encrypted_content: String,
}

/// A scripted answer: one of the shared replies, or an answer only the Responses API has.
#[derive(Debug, Clone)]
pub enum ResponsesReply {
    Shared(Reply),
    /// Optional reasoning, optional text, then tool calls; `response.completed` with `usage` (the
    /// twin's estimate when `None`), or `response.incomplete` with this reason.
    Answer {
        reasoning: Option<Reasoning>,
        text: Option<String>,
        calls: Vec<ToolCall>,
        usage: Option<ResponsesUsage>,
        incomplete: Option<String>,
    },
    /// Stream `text`, then `response.failed` with `response.error: {code, message}`.
    Failed {
        text: String,
        code: String,
        message: String,
    },
}

impl From<Reply> for ResponsesReply {
    fn from(r: Reply) -> Self {
        ResponsesReply::Shared(r)
    }
}

impl ResponsesReply {
    /// Reasoning (summary parts and encrypted content), then an answer.
    pub fn thinking(summary: &[&str], encrypted_content: &str, text: &str) -> Self {
        ResponsesReply::Answer {
            reasoning: Some(Reasoning {
                summary: summary.iter().map(|s| s.to_string()).collect(),
                encrypted_content: encrypted_content.into(),
            }),
            text: Some(text.into()),
            calls: vec![],
            usage: None,
            incomplete: None,
        }
    }

    /// Text with exact usage.
    pub fn counted(text: &str, usage: ResponsesUsage) -> Self {
        ResponsesReply::Answer {
            reasoning: None,
            text: Some(text.into()),
            calls: vec![],
            usage: Some(usage),
            incomplete: None,
        }
    }

    /// Text cut short: `response.incomplete` with `incomplete_details.reason`.
    pub fn incomplete(text: &str, reason: &str) -> Self {
        ResponsesReply::Answer {
            reasoning: None,
            text: Some(text.into()),
            calls: vec![],
            usage: None,
            incomplete: Some(reason.into()),
        }
    }

    pub fn failed(text: &str, code: &str, message: &str) -> Self {
        ResponsesReply::Failed { text: text.into(), code: code.into(), message: message.into() }
    }

    /// A recorded stream from `fixtures/openai-responses/<name>.sse`, sent verbatim.
    pub fn fixture(name: &str) -> Self {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join("openai-responses")
            .join(format!("{name}.sse"));
        let body = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
        ResponsesReply::Shared(Reply::Raw(body))
    }
}

struct Inner {
    key: Option<String>,
    replies: VecDeque<ResponsesReply>,
    requests: Vec<Recorded>,
    /// `encrypted_content` values the twin has streamed, which it accepts back.
    issued: HashSet<String>,
    served: u64,
}

/// A running twin. Dropping it stops the server.
pub struct ResponsesServer {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ResponsesServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ResponsesServer {
    /// Starts a server on 127.0.0.1 with a random port. `key` is the API key it accepts (`None`:
    /// it accepts requests without one, like a local compatible server).
    pub async fn start(key: Option<&str>) -> ResponsesServer {
        let inner = Arc::new(Mutex::new(Inner {
            key: key.map(String::from),
            replies: VecDeque::new(),
            requests: Vec::new(),
            issued: HashSet::new(),
            served: 0,
        }));
        let app = Router::new().route("/v1/responses", post(handle)).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind responses server");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ResponsesServer { addr, inner, task }
    }

    /// The `baseUrl` to configure: `http://127.0.0.1:<port>/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a reply for the next accepted request.
    pub fn push(&self, reply: impl Into<ResponsesReply>) -> &Self {
        self.lock().replies.push_back(reply.into());
        self
    }

    /// Every request received so far (including refused ones).
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Replies not yet used.
    pub fn pending(&self) -> usize {
        self.lock().replies.len()
    }
}

/// OpenAI's error body.
fn error_response(
    status: u16,
    message: &str,
    etype: &str,
    param: Option<&str>,
    code: Option<&str>,
    retry_after: Option<&str>,
) -> Response {
    let body = json!({"error": {"message": message, "type": etype, "param": param, "code": code}});
    let mut b = Response::builder().status(status).header("content-type", "application/json");
    if let Some(after) = retry_after {
        b = b.header("retry-after", after);
    }
    b.body(Body::from(body.to_string())).unwrap_or_default()
}

/// A 400 `invalid_request_error`.
struct Refusal {
    status: u16,
    message: String,
    param: Option<String>,
    code: Option<&'static str>,
}

impl Refusal {
    fn new(message: impl Into<String>, param: impl Into<String>, code: Option<&'static str>) -> Self {
        Refusal { status: 400, message: message.into(), param: Some(param.into()), code }
    }

    fn missing(param: &str) -> Self {
        Refusal::new(format!("Missing required parameter: '{param}'."), param, Some("missing_required_parameter"))
    }

    fn invalid_value(got: &str, supported: &[&str], param: &str) -> Self {
        let list = match supported {
            [] => String::new(),
            [one] => format!("'{one}'"),
            [init @ .., last] => {
                let init: Vec<String> = init.iter().map(|s| format!("'{s}'")).collect();
                format!("{}, and '{last}'", init.join(", "))
            }
        };
        Refusal::new(format!("Invalid value: '{got}'. Supported values are: {list}."), param, Some("invalid_value"))
    }

    fn invalid_type(param: &str, expected: &str, got: &Value) -> Self {
        let got = match got {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        };
        Refusal::new(
            format!("Invalid type for '{param}': expected {expected}, but got {got} instead."),
            param,
            Some("invalid_type"),
        )
    }

    fn into_response(self) -> Response {
        error_response(self.status, &self.message, "invalid_request_error", self.param.as_deref(), self.code, None)
    }
}

fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

/// Checks the `Authorization` header.
#[allow(clippy::result_large_err)]
fn check_auth(key: Option<&str>, headers: &HeaderMap) -> Result<(), Response> {
    let Some(expected) = key else { return Ok(()) };
    let got = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match got.map(str::trim) {
        None | Some("") => Err(error_response(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). You can obtain an API key from https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            None,
            None,
        )),
        Some(k) if k != expected => Err(error_response(
            401,
            &format!(
                "Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.",
                mask_key(k)
            ),
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
            None,
        )),
        Some(_) => Ok(()),
    }
}

const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

fn sniff_image(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

fn check_image(part: &Value, path: &str) -> Result<(), Refusal> {
    if let Some(detail) = part.get("detail").filter(|d| !d.is_null()) {
        let d = detail.as_str().unwrap_or_default();
        if !["low", "high", "auto"].contains(&d) {
            return Err(Refusal::invalid_value(d, &["low", "high", "auto"], &format!("{path}.detail")));
        }
    }
    let url = match (part.get("image_url"), part.get("file_id")) {
        (Some(Value::String(u)), _) => u.as_str(),
        (None | Some(Value::Null), Some(Value::String(_))) => return Ok(()),
        (Some(other), _) => return Err(Refusal::invalid_type(&format!("{path}.image_url"), "a string", other)),
        _ => return Err(Refusal::missing(&format!("{path}.image_url"))),
    };
    let param = format!("{path}.image_url");
    if url.starts_with("https://") {
        return Ok(());
    }
    let expected = "Expected a base64-encoded data URL with an image MIME type (e.g. 'data:image/png;base64,aW1nIGJ5dGVzIGhlcmU=')";
    let Some((mime, data)) = url.strip_prefix("data:").and_then(|r| r.split_once(";base64,")) else {
        return Err(Refusal::new(
            format!(
                "Invalid '{param}'. Expected a valid URL or {}, but got a value with an invalid format.",
                &expected[9..]
            ),
            param,
            Some("invalid_value"),
        ));
    };
    if !IMAGE_TYPES.contains(&mime) {
        return Err(Refusal::new(
            format!("Invalid '{param}'. {expected}, but got unsupported MIME type '{mime}'."),
            param,
            Some("invalid_value"),
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(data).map_err(|_| {
        Refusal::new(
            format!("Invalid '{param}'. {expected}, but got an invalid base64 payload."),
            &param,
            Some("invalid_value"),
        )
    })?;
    if sniff_image(&bytes) != Some(mime) {
        return Err(Refusal::new(
            "The image data you provided does not represent a valid image. Please check your input and try again with one of the supported image formats: ['image/jpeg', 'image/png', 'image/gif', 'image/webp'].",
            param,
            Some("invalid_image_format"),
        ));
    }
    Ok(())
}

/// A role-based message item.
fn check_message(item: &Value, i: usize) -> Result<(), Refusal> {
    let role = item["role"].as_str().unwrap_or_default();
    let allowed: &[&str] = match role {
        "user" | "system" | "developer" => &["input_text", "input_image", "input_file"],
        "assistant" => &["output_text", "refusal"],
        other => {
            return Err(Refusal::invalid_value(
                other,
                &["assistant", "system", "developer", "user"],
                &format!("input[{i}].role"),
            ));
        }
    };
    let parts = match &item["content"] {
        Value::String(_) => return Ok(()),
        Value::Array(parts) => parts,
        Value::Null => return Err(Refusal::missing(&format!("input[{i}].content"))),
        other => {
            return Err(Refusal::invalid_type(&format!("input[{i}].content"), "one of a string or array", other));
        }
    };
    for (j, p) in parts.iter().enumerate() {
        let path = format!("input[{i}].content[{j}]");
        let t = p["type"].as_str().unwrap_or_default();
        if !allowed.contains(&t) {
            return Err(Refusal::invalid_value(t, allowed, &format!("{path}.type")));
        }
        match t {
            "input_text" | "output_text" if !p["text"].is_string() => {
                return Err(Refusal::missing(&format!("{path}.text")));
            }
            "refusal" if !p["refusal"].is_string() => {
                return Err(Refusal::missing(&format!("{path}.refusal")));
            }
            "input_image" => check_image(p, &path)?,
            _ => {}
        }
    }
    Ok(())
}

fn not_persisted(id: &str) -> Refusal {
    Refusal {
        status: 404,
        message: format!(
            "Item with id '{id}' not found. Items are not persisted when `store` is set to false. Try again with `store` set to true, or remove this item from your input."
        ),
        param: Some("input".into()),
        code: None,
    }
}

/// The `input` items: message parts, call/output pairing, reasoning replay.
fn check_input(items: &[Value], issued: &HashSet<String>) -> Result<(), Refusal> {
    let mut open: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let t = item["type"].as_str();
        match t {
            None | Some("message") if item.get("role").is_some() => check_message(item, i)?,
            None => return Err(Refusal::missing(&format!("input[{i}].type"))),
            Some("function_call") => {
                let call_id =
                    item["call_id"].as_str().ok_or_else(|| Refusal::missing(&format!("input[{i}].call_id")))?;
                if !item["name"].is_string() {
                    return Err(Refusal::missing(&format!("input[{i}].name")));
                }
                match &item["arguments"] {
                    Value::String(_) => {}
                    Value::Null => return Err(Refusal::missing(&format!("input[{i}].arguments"))),
                    other => return Err(Refusal::invalid_type(&format!("input[{i}].arguments"), "a string", other)),
                }
                open.push(call_id.to_string());
            }
            Some("function_call_output") => {
                let call_id =
                    item["call_id"].as_str().ok_or_else(|| Refusal::missing(&format!("input[{i}].call_id")))?;
                if !(item["output"].is_string() || item["output"].is_array()) {
                    return Err(Refusal::missing(&format!("input[{i}].output")));
                }
                match open.iter().position(|o| o == call_id) {
                    Some(p) => {
                        open.remove(p);
                    }
                    None => {
                        return Err(Refusal::new(
                            format!("No tool call found for function call output with call_id {call_id}."),
                            "input",
                            None,
                        ));
                    }
                }
            }
            Some("reasoning") => {
                let Some(summary) = item["summary"].as_array() else {
                    return Err(Refusal::missing(&format!("input[{i}].summary")));
                };
                for (j, s) in summary.iter().enumerate() {
                    if s["type"] != "summary_text" || !s["text"].is_string() {
                        return Err(Refusal::invalid_value(
                            s["type"].as_str().unwrap_or_default(),
                            &["summary_text"],
                            &format!("input[{i}].summary[{j}].type"),
                        ));
                    }
                }
                match (item["encrypted_content"].as_str(), item["id"].as_str()) {
                    (Some(e), _) if issued.contains(e) => {}
                    (Some(_), _) => {
                        return Err(Refusal::new(
                            format!("The encrypted content for item input[{i}] could not be verified."),
                            format!("input[{i}].encrypted_content"),
                            Some("invalid_encrypted_content"),
                        ));
                    }
                    (None, Some(id)) => return Err(not_persisted(id)),
                    (None, None) => return Err(Refusal::missing(&format!("input[{i}].id"))),
                }
            }
            Some("item_reference") => return Err(not_persisted(item["id"].as_str().unwrap_or_default())),
            Some(
                "web_search_call"
                | "file_search_call"
                | "computer_call"
                | "computer_call_output"
                | "image_generation_call"
                | "code_interpreter_call"
                | "local_shell_call"
                | "local_shell_call_output"
                | "custom_tool_call"
                | "custom_tool_call_output",
            ) => {}
            Some(other) => {
                return Err(Refusal::invalid_value(
                    other,
                    &["message", "function_call", "function_call_output", "reasoning", "item_reference"],
                    &format!("input[{i}].type"),
                ));
            }
        }
    }
    if let Some(call_id) = open.first() {
        return Err(Refusal::new(format!("No tool output found for function call {call_id}."), "input", None));
    }
    Ok(())
}

fn check_body(v: &Value, issued: &HashSet<String>) -> Result<(), Refusal> {
    if !v["model"].is_string() {
        return Err(Refusal::missing("model"));
    }
    match &v["input"] {
        Value::Null => return Err(Refusal::missing("input")),
        Value::String(_) => {}
        Value::Array(items) => check_input(items, issued)?,
        other => return Err(Refusal::invalid_type("input", "one of a string or array of input items", other)),
    }
    if let Some(instr) = v.get("instructions")
        && !(instr.is_string() || instr.is_null())
    {
        return Err(Refusal::invalid_type("instructions", "a string", instr));
    }
    if let Some(max) = v.get("max_output_tokens").filter(|m| !m.is_null()) {
        let n = max.as_i64().ok_or_else(|| Refusal::invalid_type("max_output_tokens", "an integer", max))?;
        if n < 16 {
            return Err(Refusal::new(
                format!(
                    "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got {n} instead."
                ),
                "max_output_tokens",
                Some("integer_below_min_value"),
            ));
        }
    }
    if let Some(tools) = v.get("tools") {
        let tools = tools.as_array().ok_or_else(|| Refusal::invalid_type("tools", "an array", tools))?;
        for (i, t) in tools.iter().enumerate() {
            if t["type"] != "function" {
                continue;
            }
            if t.get("function").is_some() {
                return Err(Refusal::new(
                    format!("Unknown parameter: 'tools[{i}].function'."),
                    format!("tools[{i}].function"),
                    Some("unknown_parameter"),
                ));
            }
            let name = t["name"].as_str().ok_or_else(|| Refusal::missing(&format!("tools[{i}].name")))?;
            let ok = !name.is_empty()
                && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !ok {
                return Err(Refusal::new(
                    format!(
                        "Invalid 'tools[{i}].name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'."
                    ),
                    format!("tools[{i}].name"),
                    Some("invalid_value"),
                ));
            }
            if !(t["parameters"].is_object() || t["parameters"].is_null()) {
                return Err(Refusal::invalid_type(&format!("tools[{i}].parameters"), "an object", &t["parameters"]));
            }
        }
    }
    if let Some(r) = v.get("reasoning").filter(|r| !r.is_null()) {
        if let Some(e) = r.get("effort").filter(|e| !e.is_null()) {
            let efforts = ["none", "minimal", "low", "medium", "high", "xhigh"];
            let e = e.as_str().unwrap_or_default();
            if !efforts.contains(&e) {
                return Err(Refusal::invalid_value(e, &efforts, "reasoning.effort"));
            }
        }
        if let Some(s) = r.get("summary").filter(|s| !s.is_null()) {
            let kinds = ["auto", "concise", "detailed"];
            let s = s.as_str().unwrap_or_default();
            if !kinds.contains(&s) {
                return Err(Refusal::invalid_value(s, &kinds, "reasoning.summary"));
            }
        }
    }
    if let Some(include) = v.get("include").filter(|i| !i.is_null()) {
        let known = [
            "reasoning.encrypted_content",
            "message.output_text.logprobs",
            "message.input_image.image_url",
            "file_search_call.results",
            "web_search_call.results",
            "web_search_call.action.sources",
            "code_interpreter_call.outputs",
            "computer_call_output.output.image_url",
        ];
        for (i, x) in
            include.as_array().ok_or_else(|| Refusal::invalid_type("include", "an array", include))?.iter().enumerate()
        {
            let x = x.as_str().unwrap_or_default();
            if !known.contains(&x) {
                return Err(Refusal::invalid_value(x, &known, &format!("include[{i}]")));
            }
        }
    }
    if v["stream"] != json!(true) {
        return Err(Refusal::new("testkit only serves streaming requests (stream: true)", "stream", None));
    }
    Ok(())
}

fn split_text(t: &str) -> Vec<String> {
    // Three roughly equal pieces on character boundaries, so clients must join deltas.
    let chars: Vec<char> = t.chars().collect();
    if chars.len() < 3 {
        return vec![t.to_string()];
    }
    let n = chars.len();
    vec![chars[..n / 3].iter().collect(), chars[n / 3..2 * n / 3].iter().collect(), chars[2 * n / 3..].iter().collect()]
}

/// Writes the events of one response.
struct Writer {
    seq: u64,
    response: Value,
    output: Vec<Value>,
    events: Vec<(Duration, String)>,
    /// Encrypted contents streamed, to accept back later.
    issued: Vec<String>,
}

impl Writer {
    fn new(request: &Value, id: String) -> Writer {
        let response = json!({
            "id": id, "object": "response", "created_at": CREATED_AT, "status": "in_progress",
            "background": false, "error": null, "incomplete_details": null,
            "instructions": request["instructions"], "max_output_tokens": request["max_output_tokens"],
            "model": request["model"], "output": [], "parallel_tool_calls": true, "previous_response_id": null,
            "reasoning": {"effort": request["reasoning"]["effort"], "summary": request["reasoning"]["summary"]},
            "store": request["store"].as_bool().unwrap_or(true), "temperature": 1.0,
            "text": {"format": {"type": "text"}, "verbosity": "medium"}, "tool_choice": "auto",
            "tools": request["tools"].as_array().cloned().unwrap_or_default(), "top_p": 1.0,
            "truncation": "disabled", "usage": null, "user": null, "metadata": {},
        });
        Writer { seq: 0, response, output: Vec::new(), events: Vec::new(), issued: Vec::new() }
    }

    fn emit_after(&mut self, delay: Duration, kind: &str, mut data: Value) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.seq);
        self.seq += 1;
        // `type` first, as the service writes it.
        let mut ordered = serde_json::Map::new();
        ordered.insert("type".into(), json!(kind));
        if let Value::Object(m) = data {
            for (k, v) in m {
                if k != "type" {
                    ordered.insert(k, v);
                }
            }
        }
        self.events.push((delay, format!("event: {kind}\ndata: {}\n\n", Value::Object(ordered))));
    }

    fn emit(&mut self, kind: &str, data: Value) {
        self.emit_after(Duration::ZERO, kind, data);
    }

    fn open(&mut self) {
        let r = self.response.clone();
        self.emit("response.created", json!({"response": r}));
        self.emit("response.in_progress", json!({"response": r}));
    }

    fn reasoning(&mut self, r: &Reasoning) {
        let index = self.output.len();
        let id = format!("rs_testkit_{index}");
        self.emit(
            "response.output_item.added",
            json!({"output_index": index, "item": {"id": id, "type": "reasoning", "summary": []}}),
        );
        let mut parts = Vec::new();
        for (s, text) in r.summary.iter().enumerate() {
            self.emit(
                "response.reasoning_summary_part.added",
                json!({"item_id": id, "output_index": index, "summary_index": s, "part": {"type": "summary_text", "text": ""}}),
            );
            for piece in split_text(text) {
                self.emit(
                    "response.reasoning_summary_text.delta",
                    json!({"item_id": id, "output_index": index, "summary_index": s, "delta": piece}),
                );
            }
            self.emit(
                "response.reasoning_summary_text.done",
                json!({"item_id": id, "output_index": index, "summary_index": s, "text": text}),
            );
            let part = json!({"type": "summary_text", "text": text});
            self.emit(
                "response.reasoning_summary_part.done",
                json!({"item_id": id, "output_index": index, "summary_index": s, "part": part}),
            );
            parts.push(part);
        }
        let item = json!({"id": id, "type": "reasoning", "summary": parts, "encrypted_content": r.encrypted_content});
        self.emit("response.output_item.done", json!({"output_index": index, "item": item}));
        self.issued.push(r.encrypted_content.clone());
        self.output.push(item);
    }

    /// Opens a message item; returns its id and index.
    fn message_open(&mut self) -> (String, usize) {
        let index = self.output.len();
        let id = format!("msg_testkit_{index}");
        self.emit(
            "response.output_item.added",
            json!({"output_index": index,
                "item": {"id": id, "type": "message", "status": "in_progress", "content": [], "role": "assistant"}}),
        );
        self.emit(
            "response.content_part.added",
            json!({"item_id": id, "output_index": index, "content_index": 0,
                "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}}),
        );
        (id, index)
    }

    fn text_delta(&mut self, id: &str, index: usize, piece: &str, delay: Duration) {
        self.emit_after(
            delay,
            "response.output_text.delta",
            json!({"item_id": id, "output_index": index, "content_index": 0, "delta": piece, "logprobs": []}),
        );
    }

    fn message_close(&mut self, id: &str, index: usize, text: &str, status: &str) {
        self.emit(
            "response.output_text.done",
            json!({"item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
        );
        let part = json!({"type": "output_text", "annotations": [], "logprobs": [], "text": text});
        self.emit(
            "response.content_part.done",
            json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
        );
        let item = json!({"id": id, "type": "message", "status": status, "content": [part], "role": "assistant"});
        self.emit("response.output_item.done", json!({"output_index": index, "item": item}));
        self.output.push(item);
    }

    fn message(&mut self, chunks: &[String], delay: Duration, status: &str) {
        let (id, index) = self.message_open();
        for c in chunks {
            self.text_delta(&id, index, c, delay);
        }
        self.message_close(&id, index, &chunks.concat(), status);
    }

    fn call(&mut self, call: &ToolCall) {
        let index = self.output.len();
        let id = format!("fc_testkit_{index}");
        self.emit(
            "response.output_item.added",
            json!({"output_index": index, "item": {"id": id, "type": "function_call", "status": "in_progress",
                "arguments": "", "call_id": call.id, "name": call.name}}),
        );
        for piece in split_text(&call.arguments) {
            self.emit(
                "response.function_call_arguments.delta",
                json!({"item_id": id, "output_index": index, "delta": piece}),
            );
        }
        self.emit(
            "response.function_call_arguments.done",
            json!({"item_id": id, "output_index": index, "arguments": call.arguments}),
        );
        let item = json!({"id": id, "type": "function_call", "status": "completed", "arguments": call.arguments,
            "call_id": call.id, "name": call.name});
        self.emit("response.output_item.done", json!({"output_index": index, "item": item}));
        self.output.push(item);
    }

    fn close(&mut self, usage: ResponsesUsage, incomplete: Option<&str>) {
        let mut r = self.response.clone();
        r["output"] = Value::Array(self.output.clone());
        r["usage"] = json!({
            "input_tokens": usage.input_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens},
            "output_tokens": usage.output_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": usage.input_tokens + usage.output_tokens,
        });
        match incomplete {
            Some(reason) => {
                r["status"] = json!("incomplete");
                r["incomplete_details"] = json!({"reason": reason});
                self.emit("response.incomplete", json!({"response": r}));
            }
            None => {
                r["status"] = json!("completed");
                self.emit("response.completed", json!({"response": r}));
            }
        }
    }

    fn failed(&mut self, code: &str, message: &str) {
        let mut r = self.response.clone();
        r["output"] = Value::Array(self.output.clone());
        r["status"] = json!("failed");
        r["error"] = json!({"code": code, "message": message});
        self.emit("response.failed", json!({"response": r}));
    }

    fn error_event(&mut self, code: &str, message: &str) {
        self.emit("error", json!({"code": code, "message": message, "param": null}));
    }
}

fn estimate(prompt_bytes: usize, text: &str, extra: u64) -> ResponsesUsage {
    ResponsesUsage {
        input_tokens: prompt_bytes as u64 / 4 + 1,
        cached_tokens: 0,
        output_tokens: text.len() as u64 / 4 + 1 + extra,
        reasoning_tokens: 0,
    }
}

fn last_user_text(body: &Value) -> String {
    if let Some(s) = body["input"].as_str() {
        return s.to_string();
    }
    let items = body["input"].as_array().cloned().unwrap_or_default();
    for item in items.iter().rev() {
        if item["role"] != "user" {
            continue;
        }
        return match &item["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter(|p| p["type"] == "input_text")
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        };
    }
    String::new()
}

fn stream_response(events: Vec<(Duration, String)>) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        for (delay, e) in events {
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
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_default()
}

/// The error body for a scripted [`Reply::Error`]: `kind` names the `code` (or the `type`).
fn scripted_error(status: u16, kind: &str, message: &str, retry_after: Option<&str>) -> Response {
    let (etype, param, code) = match kind {
        "invalid_api_key" => ("invalid_request_error", None, Some("invalid_api_key")),
        "rate_limit_exceeded" => ("requests", None, Some("rate_limit_exceeded")),
        "insufficient_quota" => ("insufficient_quota", None, Some("insufficient_quota")),
        "context_length_exceeded" => ("invalid_request_error", Some("input"), Some("context_length_exceeded")),
        "server_error" | "api_error" => ("server_error", None, None),
        other => (other, None, None),
    };
    error_response(status, message, etype, param, code, retry_after)
}

async fn handle(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap, body: Bytes) -> Response {
    let (key, issued) = {
        let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
        g.requests.push(Recorded {
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string())).collect(),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            size: body.len(),
        });
        (g.key.clone(), g.issued.clone())
    };
    if let Err(resp) = check_auth(key.as_deref(), &headers) {
        return resp;
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            return error_response(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
                "invalid_request_error",
                None,
                None,
                None,
            );
        }
    };
    if let Err(refusal) = check_body(&request, &issued) {
        return refusal.into_response();
    }
    let (reply, served) = {
        let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
        g.served += 1;
        (g.replies.pop_front(), g.served)
    };
    let Some(reply) = reply else {
        return error_response(500, "testkit: no scripted reply left", "server_error", None, None, None);
    };
    let mut w = Writer::new(&request, format!("resp_testkit_{served}"));
    let prompt = body.len();
    match reply {
        ResponsesReply::Shared(Reply::Raw(raw)) => {
            return Response::builder()
                .status(200)
                .header("content-type", "text/event-stream; charset=utf-8")
                .body(Body::from(raw))
                .unwrap_or_default();
        }
        ResponsesReply::Shared(Reply::Error { status, kind, message, retry_after }) => {
            return scripted_error(status, &kind, &message, retry_after.as_deref());
        }
        ResponsesReply::Shared(Reply::Text(t)) => {
            w.open();
            w.message(&split_text(&t), Duration::ZERO, "completed");
            w.close(estimate(prompt, &t, 0), None);
        }
        ResponsesReply::Shared(Reply::Echo) => {
            let t = format!("echo: {}", last_user_text(&request));
            w.open();
            w.message(&split_text(&t), Duration::ZERO, "completed");
            w.close(estimate(prompt, &t, 0), None);
        }
        ResponsesReply::Shared(Reply::SlowEcho(delay)) => {
            let chunks = Reply::echo_chunks(&last_user_text(&request));
            w.open();
            w.message(&chunks, delay, "completed");
            w.close(estimate(prompt, &chunks.concat(), 0), None);
        }
        ResponsesReply::Shared(Reply::Chunks { chunks, delay }) => {
            w.open();
            w.message(&chunks, delay, "completed");
            w.close(estimate(prompt, &chunks.concat(), 0), None);
        }
        ResponsesReply::Shared(Reply::Tools { text, calls }) => {
            w.open();
            if let Some(t) = &text {
                w.message(&split_text(t), Duration::ZERO, "completed");
            }
            for c in &calls {
                w.call(c);
            }
            w.close(estimate(prompt, text.as_deref().unwrap_or_default(), 20), None);
        }
        ResponsesReply::Shared(Reply::StreamError { text, kind, message }) => {
            w.open();
            let (id, index) = w.message_open();
            w.text_delta(&id, index, &text, Duration::ZERO);
            w.error_event(&kind, &message);
        }
        ResponsesReply::Shared(Reply::Truncated(t)) => {
            w.open();
            let (id, index) = w.message_open();
            w.text_delta(&id, index, &t, Duration::ZERO);
        }
        ResponsesReply::Answer { reasoning, text, calls, usage, incomplete } => {
            w.open();
            if let Some(r) = &reasoning {
                w.reasoning(r);
            }
            if let Some(t) = &text {
                let status = if incomplete.is_some() { "incomplete" } else { "completed" };
                w.message(&split_text(t), Duration::ZERO, status);
            }
            for c in &calls {
                w.call(c);
            }
            let usage = usage.unwrap_or_else(|| {
                let thought = reasoning.as_ref().map_or(0, |r| r.summary.concat().len() as u64 / 4 + 1);
                let mut u = estimate(prompt, text.as_deref().unwrap_or_default(), thought);
                u.reasoning_tokens = thought;
                u
            });
            w.close(usage, incomplete.as_deref());
        }
        ResponsesReply::Failed { text, code, message } => {
            w.open();
            let (id, index) = w.message_open();
            w.text_delta(&id, index, &text, Duration::ZERO);
            w.failed(&code, &message);
        }
    }
    if !w.issued.is_empty() {
        let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
        g.issued.extend(w.issued.iter().cloned());
    }
    stream_response(w.events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairing_and_replay_rules() {
        let issued: HashSet<String> = ["enc-1".to_string()].into();
        let call = json!({"type": "function_call", "call_id": "c1", "name": "ls", "arguments": "{}"});
        let out = json!({"type": "function_call_output", "call_id": "c1", "output": "a"});
        assert!(check_input(&[call.clone(), out.clone()], &issued).is_ok());
        let e = check_input(std::slice::from_ref(&call), &issued).unwrap_err();
        assert_eq!(e.message, "No tool output found for function call c1.");
        let e = check_input(std::slice::from_ref(&out), &issued).unwrap_err();
        assert_eq!(e.message, "No tool call found for function call output with call_id c1.");
        let r = json!({"type": "reasoning", "summary": [], "encrypted_content": "enc-1"});
        assert!(check_input(&[r], &issued).is_ok());
        let r = json!({"type": "reasoning", "id": "rs_1", "summary": []});
        assert_eq!(check_input(&[r], &issued).unwrap_err().status, 404);
        let r = json!({"type": "reasoning", "summary": [], "encrypted_content": "forged"});
        assert_eq!(check_input(&[r], &issued).unwrap_err().code, Some("invalid_encrypted_content"));
        let m = json!({"role": "assistant", "content": [{"type": "input_text", "text": "x"}]});
        let e = check_input(&[m], &issued).unwrap_err();
        assert_eq!(e.message, "Invalid value: 'input_text'. Supported values are: 'output_text', and 'refusal'.");
        assert_eq!(mask_key("sk-wrong-key-000"), "sk-*********-000");
    }

    #[test]
    fn images_must_be_https_or_real_data_urls() {
        let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
        let ok = json!({"type": "input_image", "image_url": format!("data:image/png;base64,{png}")});
        assert!(check_image(&ok, "p").is_ok());
        assert!(check_image(&json!({"type": "input_image", "image_url": "https://x/y.png"}), "p").is_ok());
        for bad in
            ["http://x/y.png", "data:image/png;base64,@@@", "data:text/plain;base64,aGk=", "data:image/png;base64,aGk="]
        {
            assert!(check_image(&json!({"type": "input_image", "image_url": bad}), "p").is_err(), "{bad}");
        }
    }
}
