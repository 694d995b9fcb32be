//! Bedrock ConverseStream (`api: "bedrock-converse-stream"`) and model discovery.
//!
//! Follows the Amazon Bedrock API Reference (Bedrock Runtime `ConverseStream`, the `Message`,
//! `ContentBlock`, `ToolConfiguration`, `TokenUsage` and `ConverseStreamOutput` shapes, and the
//! control-plane `ListFoundationModels`), the Bedrock user guide pages on tool use, extended
//! thinking and API keys, and the service model the AWS SDKs are generated from.
//!
//! **Request.** `POST {baseUrl}/model/{modelId}/converse-stream` with a JSON body. The default
//! base URL is `https://bedrock-runtime.{region}.amazonaws.com`. The model id is one path
//! segment, so every character outside the unreserved set (the `:` of `…-v1:0`, the `/` and `:`
//! of an ARN) is percent-encoded. The request is signed with SigV4 (service `bedrock`) using
//! the provider's AWS credentials, or — when it has none — carries an Amazon Bedrock API key as
//! `Authorization: Bearer <key>`. Body: `messages` (`user` / `assistant`, strictly alternating,
//! so consecutive turns of one role are merged; content blocks `text`, `image` with
//! `format` + base64 `source.bytes`, `toolUse`, `toolResult` with `status`, and
//! `reasoningContent.reasoningText` with its signature), `system: [{text}]`,
//! `inferenceConfig.maxTokens`, `toolConfig.tools[].toolSpec` (`inputSchema.json`), and for
//! Anthropic Claude models with a thinking budget
//! `additionalModelRequestFields.thinking = {type: "enabled", budget_tokens}`.
//!
//! **Answer.** A binary `application/vnd.amazon.eventstream` (see `event_stream.rs`). Event
//! messages carry `:message-type: event`, `:event-type` and a JSON payload: `messageStart`,
//! `contentBlockStart` (`start.toolUse` with `toolUseId` and `name`), `contentBlockDelta`
//! (`delta.text`, `delta.toolUse.input` — a fragment of the arguments' JSON text — or
//! `delta.reasoningContent.text` / `.signature` / `.redactedContent`), `contentBlockStop`,
//! `messageStop` (`stopReason`) and finally `metadata` (`usage` with `inputTokens`,
//! `outputTokens`, `totalTokens`, `cacheReadInputTokens`, `cacheWriteInputTokens`). Text and
//! reasoning blocks have no start event; they begin with their first delta. Failures mid-stream
//! are `:message-type: exception` messages named by `:exception-type` (`throttlingException`,
//! `validationException`, `serviceUnavailableException`, `modelStreamErrorException`,
//! `internalServerException`, …) with `{"message": …}`; generic `:message-type: error`
//! messages carry `:error-code` / `:error-message` headers. The answer is complete only after
//! both `messageStop` and `metadata`; a stream that ends earlier is a protocol error.
//!
//! **Errors.** HTTP errors are `{"message": …}` with the error name in `x-amzn-ErrorType`
//! (`ThrottlingException:http://internal.amazon.com/coral/…`): 403 `UnrecognizedClientException`,
//! `AccessDeniedException`, `ExpiredTokenException`, `InvalidSignatureException` → auth;
//! 429 `ThrottlingException` → rate limited; 400 `ValidationException` about the input being
//! too long → context length, other 400s → bad request; 503 `ServiceUnavailableException` and
//! 429 `ModelNotReadyException` → overloaded; 408 `ModelTimeoutException` → timeout;
//! 500 `InternalServerException`, 424 `ModelErrorException` → server.
//!
//! **Usage.** Bedrock reports `inputTokens` without the cached part (cache reads and writes
//! come separately, as in Anthropic's API), so they map one to one.
//!
//! **Discovery.** `GET https://bedrock.{region}.amazonaws.com/foundation-models` (the control
//! plane; `{baseUrl}/foundation-models` when the base URL is not the default runtime endpoint),
//! signed the same way. Only models with `TEXT` output that can be invoked on demand or
//! through an inference profile are reported.
//!
//! Never logs or echoes the secret key, session token or API key: every error text is scrubbed
//! of them. Reads no environment and no AWS config files.

use std::time::{Duration, SystemTime};

use clawline_core::config::{AwsCredentials, ProviderSettings};
use clawline_core::message::{AssistantMessage, ContentBlock, Message, StopReason, Usage, UserContent};
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::event_stream::{Decoder, Message as Frame};
use super::sigv4;
use crate::error::{ErrorKind, ProviderError};
use crate::http_util::{parse_json, read_error_body, retry_after, scrub, transport_error};
use crate::types::{DiscoveredModel, ModelRequest, StreamEvent};

pub const API: &str = "bedrock-converse-stream";
/// The SigV4 signing name of both the runtime and the control plane.
pub const SIGNING_SERVICE: &str = "bedrock";
const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";
/// `ListFoundationModels` answers are read up to this size.
const MAX_DISCOVERY_BODY: usize = 8 * 1024 * 1024;
/// Anthropic's minimum thinking budget.
const MIN_THINKING_BUDGET: u32 = 1024;

// ---------------------------------------------------------------------------------------------
// Endpoints and credentials

/// The default runtime endpoint of a region.
pub fn runtime_url(region: &str) -> String {
    format!("https://bedrock-runtime.{region}.amazonaws.com")
}

fn region(settings: &ProviderSettings) -> Option<&str> {
    settings.aws.as_ref().map(|a| a.region.trim()).filter(|r| !r.is_empty())
}

fn config(provider: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::new(ErrorKind::Config, provider, message)
}

fn missing_credentials(provider: &str) -> ProviderError {
    config(
        provider,
        "no AWS credentials for Bedrock: set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION \
         (plus AWS_SESSION_TOKEN for temporary credentials), or give the provider an Amazon Bedrock API key",
    )
}

/// The runtime base URL: the configured one, or the region's default endpoint.
pub(crate) fn base_url(settings: &ProviderSettings) -> Result<String, ProviderError> {
    let base = settings.base_url.trim().trim_end_matches('/');
    if !base.is_empty() {
        return Ok(base.to_string());
    }
    region(settings)
        .map(runtime_url)
        .ok_or_else(|| config(&settings.id, "Bedrock needs a region: set AWS_REGION (or the provider's baseUrl)"))
}

/// The ConverseStream URL for a model id (encoded as one path segment).
pub fn endpoint(base_url: &str, model: &str) -> String {
    format!("{}/model/{}/converse-stream", base_url.trim_end_matches('/'), sigv4::uri_encode(model.as_bytes(), false))
}

/// `https://bedrock-runtime[-fips].{region}.amazonaws.com[.cn]` → the control plane of the same region.
fn control_plane_for(base: &str) -> Option<String> {
    let host = base.strip_prefix("https://")?.trim_end_matches('/');
    if host.contains('/') {
        return None;
    }
    let (prefix, rest) = match host.strip_prefix("bedrock-runtime-fips.") {
        Some(rest) => ("bedrock-fips.", rest),
        None => ("bedrock.", host.strip_prefix("bedrock-runtime.")?),
    };
    (rest.ends_with(".amazonaws.com") || rest.ends_with(".amazonaws.com.cn")).then(|| format!("https://{prefix}{rest}"))
}

/// The `ListFoundationModels` URL.
pub(crate) fn discovery_url(settings: &ProviderSettings) -> Result<String, ProviderError> {
    let base = base_url(settings)?;
    Ok(match control_plane_for(&base) {
        Some(control) => format!("{control}/foundation-models"),
        None => format!("{base}/foundation-models"),
    })
}

enum Auth<'a> {
    SigV4(&'a AwsCredentials),
    Bearer(&'a str),
}

fn auth(settings: &ProviderSettings) -> Result<Auth<'_>, ProviderError> {
    if let Some(aws) = &settings.aws {
        if aws.access_key_id.trim().is_empty() || aws.secret_access_key.is_empty() {
            return Err(missing_credentials(&settings.id));
        }
        if aws.region.trim().is_empty() {
            return Err(config(&settings.id, "AWS credentials are set but AWS_REGION is not; Bedrock needs a region"));
        }
        return Ok(Auth::SigV4(aws));
    }
    match settings.api_key.as_ref().map(|k| k.expose()).filter(|k| !k.is_empty()) {
        Some(key) => Ok(Auth::Bearer(key)),
        None => Err(missing_credentials(&settings.id)),
    }
}

/// Every secret that must never appear in an error text.
fn secrets(settings: &ProviderSettings) -> Vec<&str> {
    let mut out = Vec::new();
    if let Some(k) = &settings.api_key {
        out.push(k.expose());
    }
    if let Some(aws) = &settings.aws {
        out.push(aws.secret_access_key.expose());
        if let Some(t) = &aws.session_token {
            out.push(t.expose());
        }
    }
    out
}

fn scrub_all(text: &str, secrets: &[&str]) -> String {
    secrets.iter().fold(text.to_string(), |t, s| scrub(&t, Some(s)))
}

fn transport(provider: &str, e: &reqwest::Error, secrets: &[&str]) -> ProviderError {
    let mut err = transport_error(provider, e, secrets.first().copied());
    err.message = scrub_all(&err.message, secrets);
    err
}

fn protocol(provider: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::new(ErrorKind::Protocol, provider, message)
}

fn quoted(text: &str) -> String {
    let (shown, cut) = clawline_core::text::truncate_chars(text, 200);
    format!("{shown}{}", if cut { "…" } else { "" })
}

/// Builds the HTTP request and authenticates it (SigV4 or Bearer). `now` is the signing time.
// Every argument is a distinct part of the request; bundling them would only rename them.
#[allow(clippy::too_many_arguments)]
fn prepare(
    http: &reqwest::Client,
    settings: &ProviderSettings,
    auth: &Auth<'_>,
    method: reqwest::Method,
    url: &str,
    body: Vec<u8>,
    accept: &str,
    now: SystemTime,
) -> Result<reqwest::RequestBuilder, ProviderError> {
    let provider = settings.id.as_str();
    let parsed = reqwest::Url::parse(url).map_err(|e| config(provider, format!("`{url}` is not a valid URL ({e})")))?;
    let host = match (parsed.host_str(), parsed.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        (None, _) => return Err(config(provider, format!("`{url}` has no host"))),
    };
    // Everything we set is signed, so a proxy or AWS sees exactly what was signed.
    let mut signed: Vec<(String, String)> = vec![("host".into(), host)];
    if !body.is_empty() {
        signed.push(("content-type".into(), "application/json".into()));
    }
    for (name, value) in &settings.headers {
        let lower = name.trim().to_ascii_lowercase();
        if matches!(lower.as_str(), "host" | "authorization" | "content-type" | "x-amz-date" | "x-amz-security-token") {
            continue;
        }
        signed.push((lower, value.clone()));
    }
    let mut builder = http.request(method.clone(), parsed.clone()).header(reqwest::header::ACCEPT, accept);
    for (name, value) in signed.iter().skip(1) {
        builder = builder.header(name.as_str(), value.as_str());
    }
    match auth {
        Auth::Bearer(key) => builder = builder.header(reqwest::header::AUTHORIZATION, format!("Bearer {key}")),
        Auth::SigV4(aws) => {
            let pairs: Vec<(&str, &str)> = signed.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            let request = sigv4::Request {
                method: method.as_str(),
                path: parsed.path(),
                query: parsed.query().unwrap_or(""),
                headers: &pairs,
                payload: &body,
            };
            let creds = sigv4::Credentials {
                access_key_id: aws.access_key_id.trim(),
                secret_access_key: aws.secret_access_key.expose(),
                session_token: aws.session_token.as_ref().map(|t| t.expose()).filter(|t| !t.is_empty()),
            };
            for (name, value) in sigv4::sign(&request, &creds, aws.region.trim(), SIGNING_SERVICE, now).headers {
                builder = builder.header(name, value);
            }
        }
    }
    if !body.is_empty() {
        builder = builder.body(body);
    }
    Ok(builder)
}

async fn send(
    provider: &str,
    builder: reqwest::RequestBuilder,
    idle: Duration,
    secrets: &[&str],
) -> Result<reqwest::Response, ProviderError> {
    tokio::time::timeout(idle, builder.send())
        .await
        .map_err(|_| {
            ProviderError::new(
                ErrorKind::Timeout,
                provider,
                format!("no response from Bedrock in {} s", idle.as_secs()),
            )
        })?
        .map_err(|e| transport(provider, &e, secrets))
}

async fn http_error(provider: &str, resp: reqwest::Response, idle: Duration, secrets: &[&str]) -> ProviderError {
    let status = resp.status().as_u16();
    let after = retry_after(resp.headers());
    let error_type = resp.headers().get("x-amzn-errortype").and_then(|v| v.to_str().ok()).map(String::from);
    let body = tokio::time::timeout(idle, read_error_body(resp)).await.unwrap_or_default();
    let mut err = error_from(provider, Some(status), error_type.as_deref(), &body, secrets);
    err.retry_after = after;
    err
}

// ---------------------------------------------------------------------------------------------
// Errors

/// `ThrottlingException:http://internal…` or `com.amazon.coral.service#ExpiredTokenException` → the bare name.
fn short_type(t: &str) -> String {
    let t = t.split(':').next().unwrap_or(t);
    t.rsplit('#').next().unwrap_or(t).trim().to_string()
}

fn is_context_overflow(message: &str) -> bool {
    let m = message.to_lowercase();
    m.contains("too long")
        || m.contains("too many tokens")
        || m.contains("context window")
        || m.contains("context length")
        || m.contains("context limit")
        || (m.contains("context") && m.contains("exceed"))
}

/// Classifies an error by its AWS error name (HTTP `x-amzn-ErrorType` or stream
/// `:exception-type`, any case), falling back to the HTTP status.
pub(crate) fn classify(status: Option<u16>, error_type: &str, message: &str) -> ErrorKind {
    let lower = error_type.to_ascii_lowercase();
    let name = lower.strip_suffix("exception").unwrap_or(&lower);
    match name {
        "accessdenied" if message.to_lowercase().contains("payment") => ErrorKind::Billing,
        "unrecognizedclient"
        | "accessdenied"
        | "expiredtoken"
        | "invalidsignature"
        | "incompletesignature"
        | "missingauthenticationtoken"
        | "invalidclienttokenid"
        | "unauthorized"
        | "signaturedoesnotmatch" => ErrorKind::Auth,
        "throttling" | "servicequotaexceeded" | "toomanyrequests" => ErrorKind::RateLimited,
        "serviceunavailable" | "modelnotready" => ErrorKind::Overloaded,
        "modeltimeout" => ErrorKind::Timeout,
        "validation" | "modelerror" if is_context_overflow(message) => ErrorKind::ContextLength,
        "internalserver" | "internalfailure" | "modelerror" | "modelstreamerror" => ErrorKind::Server,
        "validation" | "resourcenotfound" | "serialization" | "conflict" => ErrorKind::BadRequest,
        _ => match status {
            Some(401 | 403) => ErrorKind::Auth,
            Some(429) => ErrorKind::RateLimited,
            Some(503 | 529) => ErrorKind::Overloaded,
            Some(408) => ErrorKind::Timeout,
            Some(400 | 413) if is_context_overflow(message) => ErrorKind::ContextLength,
            Some(s) if s >= 500 => ErrorKind::Server,
            Some(_) => ErrorKind::BadRequest,
            None => ErrorKind::Server,
        },
    }
}

/// An error from an HTTP error response or an exception message of the stream.
pub(crate) fn error_from(
    provider: &str,
    status: Option<u16>,
    error_type: Option<&str>,
    body: &str,
    secrets: &[&str],
) -> ProviderError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("message").or_else(|| v.get("Message")))
        .and_then(Value::as_str)
        .map(String::from)
        .unwrap_or_else(|| clawline_core::text::truncate_chars(body.trim(), 300).0.to_string());
    let name = error_type
        .map(short_type)
        .filter(|t| !t.is_empty())
        .or_else(|| parsed.as_ref().and_then(|v| v.get("__type")).and_then(Value::as_str).map(short_type))
        .unwrap_or_default();
    let kind = classify(status, &name, &message);
    let mut text = status.map(|s| format!("HTTP {s}")).unwrap_or_default();
    if !name.is_empty() {
        text.push_str(if text.is_empty() { "" } else { " " });
        text.push_str(&name);
    }
    if !message.is_empty() {
        text.push_str(if text.is_empty() { "" } else { ": " });
        text.push_str(&message);
    }
    ProviderError {
        kind,
        provider: provider.to_string(),
        status,
        message: scrub_all(&text, secrets),
        retry_after: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Request body

/// The Converse image format for a MIME type.
pub fn image_format(mime: &str) -> Option<&'static str> {
    match mime.trim().to_ascii_lowercase().as_str() {
        "image/png" => Some("png"),
        "image/jpeg" | "image/jpg" => Some("jpeg"),
        "image/gif" => Some("gif"),
        "image/webp" => Some("webp"),
        _ => None,
    }
}

fn image_block(data: &str, mime: &str) -> Value {
    match image_format(mime) {
        Some(format) => json!({"image": {"format": format, "source": {"bytes": data}}}),
        // The API accepts only these four formats; say what was left out instead of failing.
        None => {
            json!({"text": format!("[an image of type {mime} was left out: Bedrock accepts PNG, JPEG, GIF and WebP]")})
        }
    }
}

fn user_blocks(content: &UserContent) -> Vec<Value> {
    match content {
        // Blank text blocks are refused by the API, so they are left out.
        UserContent::Text(t) if t.trim().is_empty() => vec![],
        UserContent::Text(t) => vec![json!({"text": t})],
        UserContent::Blocks(blocks) => blocks
            .iter()
            .filter_map(|b| match b {
                ContentBlock::Text { text } if !text.trim().is_empty() => Some(json!({"text": text})),
                ContentBlock::Image { data, mime_type } => Some(image_block(data, mime_type)),
                _ => None,
            })
            .collect(),
    }
}

fn is_tool_result(block: &Value) -> bool {
    block.get("toolResult").is_some()
}

/// Converts a conversation to Converse `messages`, merging consecutive turns of one role and
/// putting tool results first in the user turn that answers the tool calls.
pub fn wire_messages(messages: &[Message]) -> Vec<Value> {
    let mut out: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in messages {
        let (role, mut blocks) = match m {
            Message::User(u) => ("user", user_blocks(&u.content)),
            Message::ToolResult(r) => {
                let mut content = Vec::new();
                let text = clawline_core::message::join_text(&r.content);
                if !text.trim().is_empty() {
                    content.push(json!({"text": text}));
                }
                for b in &r.content {
                    if let ContentBlock::Image { data, mime_type } = b {
                        content.push(image_block(data, mime_type));
                    }
                }
                if content.is_empty() {
                    content.push(json!({"text": "(no output)"}));
                }
                let status = if r.is_error { "error" } else { "success" };
                (
                    "user",
                    vec![json!({"toolResult": {"toolUseId": r.tool_call_id, "content": content, "status": status}})],
                )
            }
            Message::Assistant(a) => {
                let blocks = a
                    .content
                    .iter()
                    .filter_map(|b| match b {
                        ContentBlock::Text { text } if !text.trim().is_empty() => Some(json!({"text": text})),
                        ContentBlock::ToolCall { id, name, arguments, .. } => {
                            let input = if arguments.is_object() { arguments.clone() } else { json!({}) };
                            Some(json!({"toolUse": {"toolUseId": id, "name": name, "input": input}}))
                        }
                        // Reasoning goes back only with its signature; the API refuses it otherwise.
                        ContentBlock::Thinking { thinking, signature: Some(sig) } => {
                            Some(json!({"reasoningContent": {"reasoningText": {"text": thinking, "signature": sig}}}))
                        }
                        _ => None,
                    })
                    .collect();
                ("assistant", blocks)
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some((last_role, last)) if *last_role == role => {
                if role == "user" && blocks.iter().any(is_tool_result) {
                    let at = last.iter().take_while(|b| is_tool_result(b)).count();
                    last.splice(at..at, blocks);
                } else {
                    last.append(&mut blocks);
                }
            }
            _ => out.push((role, blocks)),
        }
    }
    out.into_iter().map(|(role, content)| json!({"role": role, "content": content})).collect()
}

/// Whether the model takes Anthropic's `thinking` request field.
fn is_claude(model: &str) -> bool {
    model.to_ascii_lowercase().contains("anthropic.claude")
}

/// The JSON request body (the model id travels in the URL).
pub fn request_body(req: &ModelRequest) -> Value {
    let mut body = json!({"messages": wire_messages(&req.messages)});
    if !req.system.trim().is_empty() {
        body["system"] = json!([{"text": req.system}]);
    }
    let mut max_tokens = req.max_tokens;
    if let Some(budget) = req.thinking_budget.filter(|b| *b > 0)
        && is_claude(&req.model)
    {
        let budget = budget.max(MIN_THINKING_BUDGET);
        // Anthropic requires max_tokens > budget_tokens; keep the asked-for answer room on top.
        if max_tokens <= budget {
            max_tokens = budget.saturating_add(max_tokens.max(MIN_THINKING_BUDGET));
        }
        body["additionalModelRequestFields"] = json!({"thinking": {"type": "enabled", "budget_tokens": budget}});
    }
    if max_tokens > 0 {
        body["inferenceConfig"] = json!({"maxTokens": max_tokens});
    }
    if !req.tools.is_empty() && req.compat.supports_tools != Some(false) {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut spec = json!({"name": t.name, "inputSchema": {"json": t.parameters}});
                if !t.description.trim().is_empty() {
                    spec["description"] = json!(t.description);
                }
                json!({"toolSpec": spec})
            })
            .collect();
        body["toolConfig"] = json!({"tools": tools});
    }
    body
}

// ---------------------------------------------------------------------------------------------
// Stream

enum Block {
    Text(String),
    Tool { id: String, name: String, json: String },
    Reasoning { text: String, signature: Option<String> },
}

/// Accumulates a streamed answer from event-stream messages.
#[derive(Default)]
pub(crate) struct Accumulator {
    blocks: Vec<(u64, Block)>,
    usage: Usage,
    stop: Option<String>,
    stopped: bool,
    metadata: bool,
}

impl Accumulator {
    fn block(&mut self, index: u64) -> Option<&mut Block> {
        self.blocks.iter_mut().find(|(i, _)| *i == index).map(|(_, b)| b)
    }

    fn text_block(&mut self, provider: &str, index: u64) -> Result<&mut String, ProviderError> {
        if self.block(index).is_none() {
            self.blocks.push((index, Block::Text(String::new())));
        }
        match self.block(index) {
            Some(Block::Text(t)) => Ok(t),
            _ => Err(protocol(provider, format!("a text delta for content block {index}, which is not text"))),
        }
    }

    fn reasoning_block(
        &mut self,
        provider: &str,
        index: u64,
    ) -> Result<(&mut String, &mut Option<String>), ProviderError> {
        if self.block(index).is_none() {
            self.blocks.push((index, Block::Reasoning { text: String::new(), signature: None }));
        }
        match self.block(index) {
            Some(Block::Reasoning { text, signature }) => Ok((text, signature)),
            _ => {
                Err(protocol(provider, format!("a reasoning delta for content block {index}, which is not reasoning")))
            }
        }
    }

    fn take_usage(&mut self, usage: Option<&Value>) {
        let Some(u) = usage else { return };
        let n = |k: &str| u.get(k).and_then(Value::as_u64);
        if let Some(v) = n("inputTokens") {
            self.usage.input = v;
        }
        if let Some(v) = n("outputTokens") {
            self.usage.output = v;
        }
        if let Some(v) = n("cacheReadInputTokens") {
            self.usage.cache_read = v;
        }
        if let Some(v) = n("cacheWriteInputTokens") {
            self.usage.cache_write = v;
        }
    }

    /// Applies one message of the stream. Returns true once the answer is complete.
    pub(crate) fn apply(
        &mut self,
        provider: &str,
        frame: &Frame,
        secrets: &[&str],
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<bool, ProviderError> {
        match frame.string_header(":message-type").unwrap_or("event") {
            "event" => {}
            "exception" => {
                let name = frame.string_header(":exception-type").unwrap_or("exception");
                let body = String::from_utf8_lossy(&frame.payload);
                return Err(error_from(provider, None, Some(name), &body, secrets));
            }
            "error" => {
                let code = frame.string_header(":error-code").unwrap_or("error");
                let message = frame.string_header(":error-message").unwrap_or_default();
                return Err(error_from(provider, None, Some(code), &json!({"message": message}).to_string(), secrets));
            }
            other => {
                return Err(protocol(provider, format!("an event-stream message of unknown type `{}`", quoted(other))));
            }
        }
        let Some(event) = frame.string_header(":event-type") else {
            return Err(protocol(provider, "an event-stream event without an :event-type header"));
        };
        let Ok(payload) = std::str::from_utf8(&frame.payload) else {
            return Err(protocol(provider, format!("the payload of the {event} event is not UTF-8 text")));
        };
        let v: Value = parse_json(provider, payload)?;
        let index = v.get("contentBlockIndex").and_then(Value::as_u64).unwrap_or(0);
        let s = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(String::from);
        match event {
            "contentBlockStart" => {
                if let Some(tool) = v.pointer("/start/toolUse") {
                    let id = s(tool, "toolUseId").unwrap_or_default();
                    let name = s(tool, "name").unwrap_or_default();
                    if self.block(index).is_some() {
                        return Err(protocol(provider, format!("content block {index} was started twice")));
                    }
                    on_event(StreamEvent::ToolCallStarted { id: id.clone(), name: name.clone() });
                    self.blocks.push((index, Block::Tool { id, name, json: String::new() }));
                }
            }
            "contentBlockDelta" => {
                let delta = v.get("delta").cloned().unwrap_or_default();
                if let Some(piece) = s(&delta, "text") {
                    self.text_block(provider, index)?.push_str(&piece);
                    if !piece.is_empty() {
                        on_event(StreamEvent::TextDelta(piece));
                    }
                } else if let Some(tool) = delta.get("toolUse") {
                    let piece = s(tool, "input").unwrap_or_default();
                    match self.block(index) {
                        Some(Block::Tool { json, .. }) => json.push_str(&piece),
                        _ => {
                            return Err(protocol(
                                provider,
                                format!("a toolUse delta for content block {index}, which is not a started tool call"),
                            ));
                        }
                    }
                } else if let Some(reasoning) = delta.get("reasoningContent") {
                    let text_piece = s(reasoning, "text");
                    let sig_piece = s(reasoning, "signature");
                    // `redactedContent` (encrypted reasoning) has no place in the transcript's
                    // thinking block and is not echoed back; it is dropped.
                    if text_piece.is_some() || sig_piece.is_some() {
                        let (text, signature) = self.reasoning_block(provider, index)?;
                        if let Some(piece) = text_piece {
                            text.push_str(&piece);
                            if !piece.is_empty() {
                                on_event(StreamEvent::ThinkingDelta(piece));
                            }
                        }
                        if let Some(piece) = sig_piece {
                            signature.get_or_insert_with(String::new).push_str(&piece);
                        }
                    }
                }
            }
            "messageStop" => {
                self.stop = s(&v, "stopReason");
                self.stopped = true;
            }
            "metadata" => {
                self.take_usage(v.get("usage"));
                self.metadata = true;
            }
            // `messageStart`, `contentBlockStop` and events added later need nothing here.
            _ => {}
        }
        Ok(self.stopped && self.metadata)
    }

    pub(crate) fn finish(
        mut self,
        provider: &str,
        model: &str,
        now_ms: i64,
        response_id: Option<String>,
    ) -> Result<AssistantMessage, ProviderError> {
        if !self.stopped {
            return Err(protocol(provider, "the stream ended before the model finished (no messageStop event)"));
        }
        if !self.metadata {
            return Err(protocol(provider, "the stream ended before its metadata event (no usage was reported)"));
        }
        self.blocks.sort_by_key(|(i, _)| *i);
        let mut content = Vec::new();
        let mut has_calls = false;
        for (_, block) in self.blocks {
            match block {
                Block::Text(text) if !text.is_empty() => content.push(ContentBlock::Text { text }),
                Block::Text(_) => {}
                Block::Tool { id, name, json } => {
                    has_calls = true;
                    let arguments = if json.trim().is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str::<Value>(&json).unwrap_or(Value::String(json))
                    };
                    content.push(ContentBlock::ToolCall { id, name, arguments, thought_signature: None });
                }
                Block::Reasoning { text, signature } => {
                    if !text.is_empty() || signature.is_some() {
                        content.push(ContentBlock::Thinking { thinking: text, signature });
                    }
                }
            }
        }
        let (stop_reason, error_message) = match self.stop.as_deref() {
            Some("tool_use") => (StopReason::ToolUse, None),
            Some("max_tokens" | "model_context_window_exceeded") => (StopReason::Length, None),
            Some("guardrail_intervened") => (StopReason::Error, Some("a Bedrock guardrail intervened".to_string())),
            Some("content_filtered") => {
                (StopReason::Error, Some("the answer was blocked by content filtering".to_string()))
            }
            Some("end_turn" | "stop_sequence") => (StopReason::Stop, None),
            _ if has_calls => (StopReason::ToolUse, None),
            _ => (StopReason::Stop, None),
        };
        let mut usage = self.usage;
        usage.total_tokens = usage.input + usage.output + usage.cache_read + usage.cache_write;
        Ok(AssistantMessage {
            content,
            api: API.to_string(),
            provider: provider.to_string(),
            model: model.to_string(),
            usage,
            stop_reason,
            timestamp: now_ms,
            response_id,
            error_message,
        })
    }
}

/// Reads event-stream messages from a response, failing with `Timeout` when no bytes arrive for
/// `idle`. `on_frame` returns `Ok(true)` to stop (the answer is complete).
async fn read_frames(
    provider: &str,
    resp: reqwest::Response,
    idle: Duration,
    secrets: &[&str],
    mut on_frame: impl FnMut(&Frame) -> Result<bool, ProviderError>,
) -> Result<(), ProviderError> {
    let mut stream = resp.bytes_stream();
    let mut decoder = Decoder::default();
    let mut frames = Vec::new();
    loop {
        let next = tokio::time::timeout(idle, stream.next()).await.map_err(|_| {
            ProviderError::new(ErrorKind::Timeout, provider, format!("no data from Bedrock for {} s", idle.as_secs()))
        })?;
        match next {
            Some(Ok(chunk)) => {
                let decoded = decoder.push(&chunk, &mut frames);
                // Messages that arrived whole before a broken one still count (an exception
                // message says more than the garbage after it).
                for frame in frames.drain(..) {
                    if on_frame(&frame)? {
                        return Ok(());
                    }
                }
                decoded.map_err(|e| protocol(provider, format!("malformed event stream from Bedrock: {e}")))?;
            }
            Some(Err(e)) => return Err(transport(provider, &e, secrets)),
            None if decoder.buffered() > 0 => {
                return Err(protocol(
                    provider,
                    format!("the stream ended in the middle of an event-stream message ({} bytes)", decoder.buffered()),
                ));
            }
            None => return Ok(()),
        }
    }
}

/// Makes one streaming ConverseStream call.
pub(crate) async fn call(
    http: &reqwest::Client,
    settings: &ProviderSettings,
    req: &ModelRequest,
    on_event: &mut (dyn FnMut(StreamEvent) + Send),
) -> Result<AssistantMessage, ProviderError> {
    let provider = settings.id.as_str();
    let auth = auth(settings)?;
    let secrets = secrets(settings);
    let url = endpoint(&base_url(settings)?, &req.model);
    let body = serde_json::to_vec(&request_body(req))
        .map_err(|e| config(provider, format!("the request could not be encoded: {e}")))?;
    let builder = prepare(http, settings, &auth, reqwest::Method::POST, &url, body, EVENT_STREAM, SystemTime::now())?;
    // `timeoutSeconds` bounds the wait for the response to start and each silence in the
    // stream, not the whole answer.
    let idle = Duration::from_secs(settings.timeout_secs.max(1));
    let resp = send(provider, builder, idle, &secrets).await?;
    if !resp.status().is_success() {
        return Err(http_error(provider, resp, idle, &secrets).await);
    }
    let content_type =
        resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    if content_type.starts_with("application/json") || content_type.starts_with("text/") {
        let body = tokio::time::timeout(idle, read_error_body(resp)).await.unwrap_or_default();
        return Err(protocol(
            provider,
            format!(
                "Bedrock answered with {content_type} instead of an event stream: {}",
                quoted(&scrub_all(&body, &secrets))
            ),
        ));
    }
    let response_id = resp
        .headers()
        .get("x-amzn-requestid")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(String::from);
    let mut acc = Accumulator::default();
    read_frames(provider, resp, idle, &secrets, |frame| acc.apply(provider, frame, &secrets, on_event)).await?;
    let mut msg = acc.finish(provider, &req.model, crate::client::now_ms(), response_id)?;
    crate::client::price(&mut msg.usage, &req.cost);
    Ok(msg)
}

// ---------------------------------------------------------------------------------------------
// Discovery

/// Reads a whole body, at most `limit` bytes, with an idle timeout.
async fn read_body(
    provider: &str,
    resp: reqwest::Response,
    idle: Duration,
    limit: usize,
    secrets: &[&str],
) -> Result<String, ProviderError> {
    let mut stream = resp.bytes_stream();
    let mut body = Vec::new();
    loop {
        let next = tokio::time::timeout(idle, stream.next()).await.map_err(|_| {
            ProviderError::new(ErrorKind::Timeout, provider, format!("no data from Bedrock for {} s", idle.as_secs()))
        })?;
        match next {
            Some(Ok(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(protocol(provider, format!("the model list is larger than {limit} bytes")));
                }
                body.extend_from_slice(&chunk);
            }
            Some(Err(e)) => return Err(transport(provider, &e, secrets)),
            None => return Ok(String::from_utf8_lossy(&body).into_owned()),
        }
    }
}

/// `modelSummaries` of a `ListFoundationModels` answer → the models clawline can chat with.
pub(crate) fn parse_models(provider: &str, v: &Value) -> Result<Vec<DiscoveredModel>, ProviderError> {
    let Some(list) = v.get("modelSummaries").and_then(Value::as_array) else {
        return Err(protocol(
            provider,
            format!("ListFoundationModels answered without modelSummaries: {}", quoted(&v.to_string())),
        ));
    };
    let strings = |m: &Value, key: &str| -> Vec<String> {
        m.get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(|s| s.to_ascii_uppercase()).collect())
            .unwrap_or_default()
    };
    let mut out: Vec<DiscoveredModel> = Vec::new();
    for m in list {
        let Some(id) = m.get("modelId").and_then(Value::as_str).filter(|s| !s.is_empty()) else { continue };
        if !strings(m, "outputModalities").iter().any(|o| o == "TEXT") {
            continue;
        }
        // Models offered only as provisioned throughput cannot be called by their id.
        let inference = strings(m, "inferenceTypesSupported");
        if !inference.is_empty() && !inference.iter().any(|t| t == "ON_DEMAND" || t == "INFERENCE_PROFILE") {
            continue;
        }
        if out.iter().any(|d| d.id == id) {
            continue;
        }
        let input = strings(m, "inputModalities")
            .iter()
            .filter_map(|i| match i.as_str() {
                "TEXT" => Some("text".to_string()),
                "IMAGE" => Some("image".to_string()),
                _ => None,
            })
            .collect();
        out.push(DiscoveredModel {
            id: id.to_string(),
            name: m.get("modelName").and_then(Value::as_str).filter(|s| !s.is_empty()).map(String::from),
            context_window: None,
            input,
            streaming: m.get("responseStreamingSupported").and_then(Value::as_bool).unwrap_or(false),
        });
    }
    Ok(out)
}

/// Lists the foundation models of the region (`ListFoundationModels`).
pub(crate) async fn discover(
    http: &reqwest::Client,
    settings: &ProviderSettings,
) -> Result<Vec<DiscoveredModel>, ProviderError> {
    let provider = settings.id.as_str();
    let auth = auth(settings)?;
    let secrets = secrets(settings);
    let url = discovery_url(settings)?;
    let builder =
        prepare(http, settings, &auth, reqwest::Method::GET, &url, Vec::new(), "application/json", SystemTime::now())?;
    let idle = Duration::from_secs(settings.timeout_secs.max(1));
    let resp = send(provider, builder, idle, &secrets).await?;
    if !resp.status().is_success() {
        return Err(http_error(provider, resp, idle, &secrets).await);
    }
    let body = read_body(provider, resp, idle, MAX_DISCOVERY_BODY, &secrets).await?;
    let v: Value = parse_json(provider, &body)?;
    parse_models(provider, &v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ToolSpec;
    use clawline_core::message::{ToolResultMessage, UserMessage};
    use clawline_core::secret::SecretString;

    fn user(t: &str) -> Message {
        Message::User(UserMessage { content: UserContent::Text(t.into()), timestamp: 0, idempotency_key: None })
    }

    fn assistant(content: Vec<ContentBlock>) -> Message {
        Message::Assistant(AssistantMessage {
            content,
            api: API.into(),
            provider: "b".into(),
            model: "m".into(),
            usage: Usage::default(),
            stop_reason: StopReason::ToolUse,
            timestamp: 0,
            response_id: None,
            error_message: None,
        })
    }

    fn result(id: &str, text: &str, is_error: bool) -> Message {
        Message::ToolResult(ToolResultMessage {
            tool_call_id: id.into(),
            tool_name: "ls".into(),
            content: vec![ContentBlock::Text { text: text.into() }],
            is_error,
            timestamp: 0,
        })
    }

    fn settings(aws: Option<AwsCredentials>, key: Option<&str>, base: &str) -> ProviderSettings {
        ProviderSettings {
            id: "bedrock".into(),
            base_url: base.into(),
            api_key: key.map(SecretString::new),
            aws,
            timeout_secs: 5,
            ..Default::default()
        }
    }

    fn creds(region: &str) -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: SecretString::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            session_token: None,
            region: region.into(),
        }
    }

    #[test]
    fn builds_the_documented_body() {
        let call = ContentBlock::ToolCall {
            id: "tooluse_1".into(),
            name: "ls".into(),
            arguments: json!({"path": "."}),
            thought_signature: None,
        };
        let thinking = ContentBlock::Thinking { thinking: "let me see".into(), signature: Some("sig==".into()) };
        let unsigned = ContentBlock::Thinking { thinking: "dropped".into(), signature: None };
        let image = Message::User(UserMessage {
            content: UserContent::Blocks(vec![
                ContentBlock::Text { text: "what is this?".into() },
                ContentBlock::Image { data: "iVBORw0KGgo=".into(), mime_type: "image/png".into() },
                ContentBlock::Image { data: "AAAA".into(), mime_type: "image/tiff".into() },
            ]),
            timestamp: 0,
            idempotency_key: None,
        });
        let req = ModelRequest {
            model: "us.anthropic.claude-sonnet-4-20250514-v1:0".into(),
            system: "Be terse.".into(),
            messages: vec![
                user("hi"),
                user(""),
                image,
                assistant(vec![thinking, unsigned, ContentBlock::Text { text: "Looking.".into() }, call]),
                result("tooluse_1", "a.txt", false),
                user("thanks"),
            ],
            tools: vec![ToolSpec {
                name: "ls".into(),
                description: "List.".into(),
                parameters: json!({"type": "object"}),
            }],
            max_tokens: 512,
            thinking_budget: Some(2000),
            ..Default::default()
        };
        let body = request_body(&req);
        assert_eq!(body["system"], json!([{"text": "Be terse."}]));
        // 512 <= 2000: the answer room is kept on top of the budget.
        assert_eq!(body["inferenceConfig"], json!({"maxTokens": 3024}));
        assert_eq!(
            body["additionalModelRequestFields"],
            json!({"thinking": {"type": "enabled", "budget_tokens": 2000}})
        );
        assert_eq!(
            body["toolConfig"],
            json!({"tools": [{"toolSpec": {"name": "ls", "description": "List.", "inputSchema": {"json": {"type": "object"}}}}]})
        );
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3, "{messages:#?}");
        assert_eq!(
            messages[0],
            json!({"role": "user", "content": [
                {"text": "hi"},
                {"text": "what is this?"},
                {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}},
                {"text": "[an image of type image/tiff was left out: Bedrock accepts PNG, JPEG, GIF and WebP]"},
            ]})
        );
        assert_eq!(
            messages[1],
            json!({"role": "assistant", "content": [
                {"reasoningContent": {"reasoningText": {"text": "let me see", "signature": "sig=="}}},
                {"text": "Looking."},
                {"toolUse": {"toolUseId": "tooluse_1", "name": "ls", "input": {"path": "."}}},
            ]})
        );
        assert_eq!(
            messages[2],
            json!({"role": "user", "content": [
                {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "a.txt"}], "status": "success"}},
                {"text": "thanks"},
            ]})
        );
        assert!(body.get("modelId").is_none());
    }

    #[test]
    fn thinking_only_for_claude_and_tools_can_be_disabled() {
        let mut req = ModelRequest {
            model: "amazon.nova-pro-v1:0".into(),
            messages: vec![user("hi")],
            tools: vec![ToolSpec {
                name: "ls".into(),
                description: String::new(),
                parameters: json!({"type": "object"}),
            }],
            max_tokens: 100,
            thinking_budget: Some(5000),
            ..Default::default()
        };
        let body = request_body(&req);
        assert!(body.get("additionalModelRequestFields").is_none());
        assert_eq!(body["inferenceConfig"]["maxTokens"], 100);
        assert!(body["toolConfig"]["tools"][0]["toolSpec"].get("description").is_none());
        req.compat.supports_tools = Some(false);
        assert!(request_body(&req).get("toolConfig").is_none());
        let errors = wire_messages(&[user("x"), result("t", "", true)]);
        assert_eq!(
            errors[0]["content"][0],
            json!({"toolResult": {"toolUseId": "t", "content": [{"text": "(no output)"}], "status": "error"}})
        );
    }

    #[test]
    fn endpoints_and_discovery_urls() {
        assert_eq!(
            endpoint("https://bedrock-runtime.us-east-1.amazonaws.com/", "anthropic.claude-3-5-sonnet-20240620-v1:0"),
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream"
        );
        assert_eq!(
            endpoint("http://proxy/bedrock", "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.x-v1:0"),
            "http://proxy/bedrock/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.x-v1%3A0/converse-stream"
        );
        let s = settings(Some(creds("eu-west-3")), None, "");
        assert_eq!(base_url(&s).unwrap(), "https://bedrock-runtime.eu-west-3.amazonaws.com");
        assert_eq!(discovery_url(&s).unwrap(), "https://bedrock.eu-west-3.amazonaws.com/foundation-models");
        let s = settings(Some(creds("us-east-1")), None, "https://bedrock-runtime-fips.us-east-1.amazonaws.com");
        assert_eq!(discovery_url(&s).unwrap(), "https://bedrock-fips.us-east-1.amazonaws.com/foundation-models");
        let s = settings(Some(creds("us-east-1")), None, "http://127.0.0.1:9000/");
        assert_eq!(discovery_url(&s).unwrap(), "http://127.0.0.1:9000/foundation-models");
        let s = settings(None, Some("key"), "");
        assert_eq!(base_url(&s).unwrap_err().kind, ErrorKind::Config);
    }

    #[test]
    fn missing_credentials_are_a_config_error_naming_the_variables() {
        let e = auth(&settings(None, None, "http://x")).err().unwrap();
        assert_eq!(e.kind, ErrorKind::Config);
        for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"] {
            assert!(e.message.contains(var), "{}", e.message);
        }
        let mut c = creds("");
        assert!(auth(&settings(Some(c.clone()), None, "http://x")).err().unwrap().message.contains("AWS_REGION"));
        c.region = "us-east-1".into();
        c.access_key_id = " ".into();
        assert_eq!(auth(&settings(Some(c), None, "http://x")).err().unwrap().kind, ErrorKind::Config);
        assert!(matches!(auth(&settings(None, Some("br-key"), "http://x")), Ok(Auth::Bearer("br-key"))));
    }

    #[test]
    fn signs_requests_and_sends_bearer_keys() {
        let http = reqwest::Client::new();
        let s = settings(Some(creds("us-east-1")), None, "");
        let a = auth(&s).unwrap();
        let when = std::time::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let url = endpoint(&base_url(&s).unwrap(), "anthropic.claude-v2:1");
        let req = prepare(&http, &s, &a, reqwest::Method::POST, &url, b"{}".to_vec(), EVENT_STREAM, when)
            .unwrap()
            .build()
            .unwrap();
        let h = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        assert_eq!(h("x-amz-date"), "20150830T123600Z");
        assert!(
            h("authorization").starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature="
            ),
            "{}",
            h("authorization")
        );
        assert_eq!(req.url().path(), "/model/anthropic.claude-v2%3A1/converse-stream");
        assert!(!h("authorization").contains("wJalr"));

        let s = settings(None, Some("bedrock-api-key-abc"), "http://127.0.0.1:1");
        let a = auth(&s).unwrap();
        let req =
            prepare(&http, &s, &a, reqwest::Method::GET, "http://127.0.0.1:1/foundation-models", vec![], "a", when)
                .unwrap()
                .build()
                .unwrap();
        assert_eq!(req.headers()["authorization"], "Bearer bedrock-api-key-abc");
        assert!(req.headers().get("x-amz-date").is_none());
    }

    fn event(kind: &str, payload: Value) -> Frame {
        Frame::new(
            &[(":message-type", "event"), (":event-type", kind), (":content-type", "application/json")],
            payload.to_string().into_bytes(),
        )
    }

    fn run(frames: &[Frame]) -> Result<(AssistantMessage, Vec<StreamEvent>), ProviderError> {
        let mut acc = Accumulator::default();
        let mut seen = Vec::new();
        let mut sink = |e: StreamEvent| seen.push(e);
        for f in frames {
            if acc.apply("bedrock", f, &["sekrit-key"], &mut sink)? {
                break;
            }
        }
        let msg = acc.finish("bedrock", "m", 7, Some("req-1".into()))?;
        Ok((msg, seen))
    }

    fn tail(stop: &str) -> Vec<Frame> {
        vec![
            event("messageStop", json!({"stopReason": stop})),
            event(
                "metadata",
                json!({"usage": {"inputTokens": 10, "outputTokens": 20, "totalTokens": 75, "cacheReadInputTokens": 40, "cacheWriteInputTokens": 5}, "metrics": {"latencyMs": 9}}),
            ),
        ]
    }

    #[test]
    fn assembles_reasoning_text_and_tool_calls() {
        let mut frames = vec![
            event("messageStart", json!({"role": "assistant", "p": "abcd"})),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Think"}}}),
            ),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "ing."}}}),
            ),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "EqQB"}}}),
            ),
            event("contentBlockStop", json!({"contentBlockIndex": 0})),
            event("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"text": "Let me "}})),
            event("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"text": "look."}})),
            event("contentBlockStop", json!({"contentBlockIndex": 1})),
            event(
                "contentBlockStart",
                json!({"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tooluse_A", "name": "ls"}}}),
            ),
            event("contentBlockDelta", json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{\"path\":"}}})),
            event("contentBlockDelta", json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": " \"src\"}"}}})),
            event("contentBlockStop", json!({"contentBlockIndex": 2})),
            event(
                "contentBlockStart",
                json!({"contentBlockIndex": 3, "start": {"toolUse": {"toolUseId": "tooluse_B", "name": "bad"}}}),
            ),
            event("contentBlockDelta", json!({"contentBlockIndex": 3, "delta": {"toolUse": {"input": "{not json"}}})),
        ];
        frames.extend(tail("tool_use"));
        let (msg, seen) = run(&frames).unwrap();
        assert_eq!(msg.stop_reason, StopReason::ToolUse);
        assert_eq!(
            msg.content[0],
            ContentBlock::Thinking { thinking: "Thinking.".into(), signature: Some("EqQB".into()) }
        );
        assert_eq!(msg.text(), "Let me look.");
        let calls: Vec<_> = msg.tool_calls().collect();
        assert_eq!(calls[0], ("tooluse_A", "ls", &json!({"path": "src"})));
        assert_eq!(calls[1], ("tooluse_B", "bad", &json!("{not json")));
        assert_eq!(
            (msg.usage.input, msg.usage.output, msg.usage.cache_read, msg.usage.cache_write, msg.usage.total_tokens),
            (10, 20, 40, 5, 75)
        );
        assert_eq!((msg.api.as_str(), msg.response_id.as_deref(), msg.timestamp), (API, Some("req-1"), 7));
        assert_eq!(
            seen,
            vec![
                StreamEvent::ThinkingDelta("Think".into()),
                StreamEvent::ThinkingDelta("ing.".into()),
                StreamEvent::TextDelta("Let me ".into()),
                StreamEvent::TextDelta("look.".into()),
                StreamEvent::ToolCallStarted { id: "tooluse_A".into(), name: "ls".into() },
                StreamEvent::ToolCallStarted { id: "tooluse_B".into(), name: "bad".into() },
            ]
        );
    }

    #[test]
    fn maps_stop_reasons() {
        for (wire, want) in [
            ("end_turn", StopReason::Stop),
            ("stop_sequence", StopReason::Stop),
            ("max_tokens", StopReason::Length),
            ("guardrail_intervened", StopReason::Error),
            ("content_filtered", StopReason::Error),
        ] {
            let mut frames = vec![event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": "x"}}))];
            frames.extend(tail(wire));
            let (msg, _) = run(&frames).unwrap();
            assert_eq!(msg.stop_reason, want, "{wire}");
            assert_eq!(msg.error_message.is_some(), want == StopReason::Error);
        }
    }

    #[test]
    fn exceptions_truncation_and_garbage() {
        let exception = |kind: &str, message: &str| {
            Frame::new(
                &[(":message-type", "exception"), (":exception-type", kind), (":content-type", "application/json")],
                json!({"message": message}).to_string().into_bytes(),
            )
        };
        for (kind, want) in [
            ("throttlingException", ErrorKind::RateLimited),
            ("serviceUnavailableException", ErrorKind::Overloaded),
            ("modelStreamErrorException", ErrorKind::Server),
            ("internalServerException", ErrorKind::Server),
            ("validationException", ErrorKind::BadRequest),
            ("modelTimeoutException", ErrorKind::Timeout),
        ] {
            let e = run(&[event("messageStart", json!({"role": "assistant"})), exception(kind, "boom sekrit-key")])
                .unwrap_err();
            assert_eq!(e.kind, want, "{kind}");
            assert_eq!(e.message, format!("{kind}: boom [redacted]"));
            assert_eq!(e.status, None);
        }
        let e = run(&[exception("validationException", "Input is too long for requested model.")]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ContextLength);
        let generic = Frame::new(
            &[(":message-type", "error"), (":error-code", "InternalFailure"), (":error-message", "oops")],
            Vec::new(),
        );
        assert_eq!(run(&[generic]).unwrap_err().message, "InternalFailure: oops");

        let e =
            run(&[event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": "x"}}))]).unwrap_err();
        assert!(e.message.contains("no messageStop"), "{e}");
        let e = run(&[event("messageStop", json!({"stopReason": "end_turn"}))]).unwrap_err();
        assert!(e.message.contains("metadata"), "{e}");
        let e =
            run(&[event("contentBlockDelta", json!({"contentBlockIndex": 4, "delta": {"toolUse": {"input": "{}"}}}))])
                .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Protocol);
        let bad = Frame::new(
            &[(":message-type", "event"), (":event-type", "contentBlockDelta")],
            b"{\"delta\": nope".to_vec(),
        );
        let e = run(&[bad]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Protocol);
        assert!(e.message.contains("{\"delta\": nope"), "{e}");
        let e = run(&[Frame::new(&[(":message-type", "event")], b"{}".to_vec())]).unwrap_err();
        assert!(e.message.contains(":event-type"), "{e}");
    }

    #[test]
    fn classifies_http_errors() {
        let e = |status: u16, etype: &str, message: &str| {
            error_from("b", Some(status), Some(etype), &json!({"message": message}).to_string(), &["topsecret"])
        };
        let coral = |n: &str| format!("{n}:http://internal.amazon.com/coral/com.amazon.bedrock/");
        assert_eq!(
            e(403, &coral("UnrecognizedClientException"), "The security token included in the request is invalid.")
                .kind,
            ErrorKind::Auth
        );
        assert_eq!(e(403, "AccessDeniedException", "You don't have access to the model").kind, ErrorKind::Auth);
        assert_eq!(
            e(403, "ExpiredTokenException", "The security token included in the request is expired").kind,
            ErrorKind::Auth
        );
        assert_eq!(
            e(
                403,
                "AccessDeniedException",
                "Model access is denied due to INVALID_PAYMENT_INSTRUMENT:A valid payment instrument must be provided."
            )
            .kind,
            ErrorKind::Billing
        );
        assert_eq!(e(429, &coral("ThrottlingException"), "Too many requests").kind, ErrorKind::RateLimited);
        assert_eq!(
            e(400, "ValidationException", "Input is too long for requested model.").kind,
            ErrorKind::ContextLength
        );
        assert_eq!(
            e(400, "ValidationException", "prompt is too long: 210000 tokens > 200000 maximum").kind,
            ErrorKind::ContextLength
        );
        assert_eq!(e(400, "ValidationException", "messages.0.content.0 is blank").kind, ErrorKind::BadRequest);
        assert_eq!(e(503, "ServiceUnavailableException", "Service unavailable").kind, ErrorKind::Overloaded);
        assert_eq!(e(429, "ModelNotReadyException", "not ready").kind, ErrorKind::Overloaded);
        assert_eq!(e(500, "InternalServerException", "x").kind, ErrorKind::Server);
        assert_eq!(e(424, "ModelErrorException", "x").kind, ErrorKind::Server);
        assert_eq!(e(408, "ModelTimeoutException", "x").kind, ErrorKind::Timeout);
        assert_eq!(e(404, "ResourceNotFoundException", "x").kind, ErrorKind::BadRequest);
        let t = e(429, &coral("ThrottlingException"), "slow down topsecret");
        assert_eq!(t.message, "HTTP 429 ThrottlingException: slow down [redacted]");
        let body_type = error_from(
            "b",
            Some(403),
            None,
            r#"{"__type":"com.amazon.coral.service#ExpiredTokenException","Message":"expired"}"#,
            &[],
        );
        assert_eq!(
            (body_type.kind, body_type.message.as_str()),
            (ErrorKind::Auth, "HTTP 403 ExpiredTokenException: expired")
        );
        let plain = error_from("b", Some(502), None, "<html>bad gateway</html>", &[]);
        assert_eq!((plain.kind, plain.message.as_str()), (ErrorKind::Server, "HTTP 502: <html>bad gateway</html>"));
    }

    #[test]
    fn parses_the_model_list() {
        let v = json!({"modelSummaries": [
            {"modelArn": "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
             "modelId": "anthropic.claude-3-haiku-20240307-v1:0", "modelName": "Claude 3 Haiku", "providerName": "Anthropic",
             "inputModalities": ["TEXT", "IMAGE"], "outputModalities": ["TEXT"], "responseStreamingSupported": true,
             "customizationsSupported": [], "inferenceTypesSupported": ["ON_DEMAND"], "modelLifecycle": {"status": "ACTIVE"}},
            {"modelId": "anthropic.claude-3-haiku-20240307-v1:0:200k", "modelName": "Claude 3 Haiku", "inputModalities": ["TEXT"],
             "outputModalities": ["TEXT"], "responseStreamingSupported": true, "inferenceTypesSupported": ["PROVISIONED"]},
            {"modelId": "amazon.titan-image-generator-v1", "modelName": "Titan Image Generator G1", "inputModalities": ["TEXT", "IMAGE"],
             "outputModalities": ["IMAGE"], "inferenceTypesSupported": ["ON_DEMAND"]},
            {"modelId": "amazon.titan-embed-text-v1", "inputModalities": ["TEXT"], "outputModalities": ["EMBEDDING"]},
            {"modelId": "cohere.command-text-v14", "modelName": "Command", "inputModalities": ["TEXT"], "outputModalities": ["TEXT"],
             "responseStreamingSupported": false, "inferenceTypesSupported": ["ON_DEMAND"]},
        ]});
        let models = parse_models("b", &v).unwrap();
        assert_eq!(
            models,
            vec![
                DiscoveredModel {
                    id: "anthropic.claude-3-haiku-20240307-v1:0".into(),
                    name: Some("Claude 3 Haiku".into()),
                    context_window: None,
                    input: vec!["text".into(), "image".into()],
                    streaming: true,
                },
                DiscoveredModel {
                    id: "cohere.command-text-v14".into(),
                    name: Some("Command".into()),
                    context_window: None,
                    input: vec!["text".into()],
                    streaming: false,
                },
            ]
        );
        assert_eq!(parse_models("b", &json!({"models": []})).unwrap_err().kind, ErrorKind::Protocol);
    }

    mod properties {
        use super::super::{Accumulator, Frame};
        use proptest::prelude::*;
        use serde_json::Value;

        fn payload() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                (0u64..4).prop_map(Value::from),
                "\\PC{0,12}".prop_map(Value::String),
            ];
            let key = prop_oneof![
                Just("contentBlockIndex".to_string()),
                Just("delta".to_string()),
                Just("text".to_string()),
                Just("toolUse".to_string()),
                Just("input".to_string()),
                Just("reasoningContent".to_string()),
                Just("signature".to_string()),
                Just("start".to_string()),
                Just("toolUseId".to_string()),
                Just("name".to_string()),
                Just("stopReason".to_string()),
                Just("usage".to_string()),
                Just("inputTokens".to_string()),
                Just("message".to_string()),
                "[a-zA-Z]{1,8}",
            ];
            leaf.prop_recursive(4, 40, 6, move |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map(key.clone(), inner, 0..6)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        fn frame() -> impl Strategy<Value = Frame> {
            let kind = prop_oneof![
                Just("messageStart"),
                Just("contentBlockStart"),
                Just("contentBlockDelta"),
                Just("contentBlockStop"),
                Just("messageStop"),
                Just("metadata"),
                Just("other"),
            ];
            let message_type =
                prop_oneof![Just("event"), Just("event"), Just("exception"), Just("error"), Just("weird")];
            (message_type, kind, payload(), prop::collection::vec(any::<u8>(), 0..20), any::<bool>()).prop_map(
                |(mt, kind, payload, raw, use_raw)| {
                    let body = if use_raw { raw } else { payload.to_string().into_bytes() };
                    Frame::new(&[(":message-type", mt), (":event-type", kind), (":exception-type", kind)], body)
                },
            )
        }

        proptest! {
            #[test]
            fn arbitrary_frames_never_panic(frames in prop::collection::vec(frame(), 0..16)) {
                let mut acc = Accumulator::default();
                let mut sink = |_e: crate::StreamEvent| {};
                for f in &frames {
                    match acc.apply("b", f, &[], &mut sink) {
                        Ok(true) | Err(_) => break,
                        Ok(false) => {}
                    }
                }
                let _ = acc.finish("b", "m", 0, None);
            }
        }
    }
}
