//! The Bedrock ConverseStream client against the testkit twin, over real HTTP on loopback: SigV4
//! is verified by the twin, answers are real event-stream frames.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clawline_core::config::schema::ModelCost;
use clawline_core::config::{ApiKind, AwsCredentials, ProviderSettings};
use clawline_core::message::{
    AssistantMessage, ContentBlock, Message, StopReason, ToolResultMessage, Usage, UserContent, UserMessage,
};
use clawline_core::secret::SecretString;
use clawline_providers::bedrock::sigv4;
use clawline_providers::{ErrorKind, ModelClient, ModelRequest, ProviderError, RetryPolicy, StreamEvent, ToolSpec};
use clawline_testkit::bedrock_server::{AwsKey, BedrockReply, BedrockServer, encode_frame};
use clawline_testkit::model_server::{Reply, ToolCall};
use serde_json::json;

const AKID: &str = "AKIATESTKIT000EXAMPLE";
const SECRET: &str = "testkit/Secret+Key/0123456789abcdefEXAMPLE";
const REGION: &str = "us-west-2";
const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const ENCODED_PATH: &str = "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream";
const TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLE//////////testkit-session-token==";
const API_KEY: &str = "ABSKQmVkcm9ja0FQSUtleS10ZXN0a2l0LWV4YW1wbGU=";
const PNG_1X1: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

fn creds(id: &str, secret: &str, token: Option<&str>) -> AwsCredentials {
    AwsCredentials {
        access_key_id: id.into(),
        secret_access_key: SecretString::new(secret),
        session_token: token.map(SecretString::new),
        region: REGION.into(),
    }
}

fn settings(server: &BedrockServer, aws: Option<AwsCredentials>, api_key: Option<&str>) -> ProviderSettings {
    ProviderSettings {
        id: "bedrock".into(),
        api: ApiKind::BedrockConverseStream,
        base_url: server.base_url(),
        api_key: api_key.map(SecretString::new),
        headers: BTreeMap::from([("x-extra".to_string(), "1".to_string())]),
        timeout_secs: 5,
        aws,
        ..Default::default()
    }
}

fn client_for(settings: ProviderSettings) -> ModelClient {
    ModelClient::new(Arc::new(settings), reqwest::Client::new()).with_retry(RetryPolicy {
        max_retries: 2,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
    })
}

fn client(server: &BedrockServer) -> ModelClient {
    client_for(settings(server, Some(creds(AKID, SECRET, None)), None))
}

async fn twin() -> BedrockServer {
    BedrockServer::start(AwsKey::new(AKID, SECRET, REGION)).await
}

fn user(text: &str) -> Message {
    Message::User(UserMessage { content: UserContent::Text(text.into()), timestamp: 0, idempotency_key: None })
}

fn request(messages: Vec<Message>) -> ModelRequest {
    ModelRequest {
        model: MODEL.into(),
        system: "You are terse.".into(),
        messages,
        tools: vec![ToolSpec {
            name: "ls".into(),
            description: "List a directory.".into(),
            parameters: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
        }],
        max_tokens: 256,
        ..Default::default()
    }
}

fn tool_result(id: &str, text: &str) -> Message {
    Message::ToolResult(ToolResultMessage {
        tool_call_id: id.into(),
        tool_name: "ls".into(),
        content: vec![ContentBlock::Text { text: text.into() }],
        is_error: false,
        timestamp: 0,
    })
}

fn assistant(content: Vec<ContentBlock>) -> Message {
    Message::Assistant(AssistantMessage {
        content,
        api: "bedrock-converse-stream".into(),
        provider: "bedrock".into(),
        model: MODEL.into(),
        usage: Usage::default(),
        stop_reason: StopReason::ToolUse,
        timestamp: 0,
        response_id: None,
        error_message: None,
    })
}

async fn run(c: &ModelClient, req: &ModelRequest) -> (Result<AssistantMessage, ProviderError>, Vec<StreamEvent>) {
    let mut events = Vec::new();
    let r = c.stream(req, &mut |e| events.push(e)).await;
    (r, events)
}

fn error(status: u16, kind: &str, message: &str, retry_after: Option<&str>) -> Reply {
    Reply::Error { status, kind: kind.into(), message: message.into(), retry_after: retry_after.map(String::from) }
}

#[tokio::test]
async fn streams_text_signed_with_sigv4() {
    let server = twin().await;
    server.push(Reply::text("Hello there, streaming world."));
    let (r, events) = run(&client(&server), &request(vec![user("hi")])).await;
    let msg = r.unwrap();
    assert_eq!(msg.text(), "Hello there, streaming world.");
    assert_eq!(msg.stop_reason, StopReason::Stop);
    assert_eq!(
        (msg.api.as_str(), msg.provider.as_str(), msg.model.as_str()),
        ("bedrock-converse-stream", "bedrock", MODEL)
    );
    assert!(msg.usage.input > 0 && msg.usage.output > 0, "{:?}", msg.usage);
    assert_eq!(msg.usage.total_tokens, msg.usage.input + msg.usage.output);
    assert_eq!(msg.response_id.as_deref(), Some("00000000-0000-4000-8000-000000000001"));
    let deltas: Vec<_> = events.iter().filter(|e| matches!(e, StreamEvent::TextDelta(_))).collect();
    assert_eq!(deltas.len(), 3, "{events:?}");

    assert_eq!(server.paths(), vec![format!("POST {ENCODED_PATH}")]);
    let rec = &server.requests()[0];
    let auth = rec.header("authorization").unwrap();
    assert!(auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={AKID}/")), "{auth}");
    assert!(
        auth.contains(&format!(
            "/{REGION}/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-extra, Signature="
        )),
        "{auth}"
    );
    assert_eq!(rec.header("x-amz-date").map(str::len), Some(16));
    assert_eq!(rec.header("x-extra"), Some("1"));
    assert_eq!(rec.header("accept"), Some("application/vnd.amazon.eventstream"));
    assert!(rec.header("x-amz-security-token").is_none());
    assert_eq!(rec.body["system"], json!([{"text": "You are terse."}]));
    assert_eq!(rec.body["inferenceConfig"], json!({"maxTokens": 256}));
    assert_eq!(rec.body["messages"], json!([{"role": "user", "content": [{"text": "hi"}]}]));
    assert_eq!(rec.body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["type"], "object");
}

#[tokio::test]
async fn tool_calls_round_trip_and_unanswered_calls_are_refused() {
    let server = twin().await;
    server.push(Reply::Tools {
        text: Some("Let me look.".into()),
        calls: vec![ToolCall::new("tooluse_1", "ls", json!({"path": "."}))],
    });
    server.push(Reply::text("There is one file."));
    let c = client(&server);
    let mut history = vec![user("what is here?")];
    let (r, events) = run(&c, &request(history.clone())).await;
    let first = r.unwrap();
    assert_eq!(first.stop_reason, StopReason::ToolUse);
    assert_eq!(first.text(), "Let me look.");
    assert_eq!(first.tool_calls().collect::<Vec<_>>(), vec![("tooluse_1", "ls", &json!({"path": "."}))]);
    assert!(events.contains(&StreamEvent::ToolCallStarted { id: "tooluse_1".into(), name: "ls".into() }));
    history.push(Message::Assistant(first));
    history.push(tool_result("tooluse_1", "a.txt"));
    let (r, _) = run(&c, &request(history)).await;
    assert_eq!(r.unwrap().text(), "There is one file.");
    let second = &server.requests()[1].body;
    assert_eq!(
        second["messages"][1]["content"][1],
        json!({"toolUse": {"toolUseId": "tooluse_1", "name": "ls", "input": {"path": "."}}})
    );
    assert_eq!(
        second["messages"][2]["content"][0],
        json!({"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "a.txt"}], "status": "success"}})
    );

    server.push(Reply::text("unused"));
    let orphan = assistant(vec![ContentBlock::ToolCall {
        id: "tooluse_x".into(),
        name: "ls".into(),
        arguments: json!({}),
        thought_signature: None,
    }]);
    let before = server.requests().len();
    let err = run(&c, &request(vec![user("hi"), orphan, user("again")])).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadRequest, "{err}");
    assert_eq!(err.status, Some(400));
    assert!(err.message.contains("ValidationException") && err.message.contains("tooluse_x"), "{err}");
    assert_eq!(server.requests().len(), before + 1, "bad requests are not retried");
}

#[tokio::test]
async fn images_are_sent_as_converse_image_blocks() {
    let server = twin().await;
    server.push(Reply::Echo);
    let c = client(&server);
    let image = |mime: &str, data: &str| {
        Message::User(UserMessage {
            content: UserContent::Blocks(vec![
                ContentBlock::Text { text: "what is this?".into() },
                ContentBlock::Image { data: data.into(), mime_type: mime.into() },
            ]),
            timestamp: 0,
            idempotency_key: None,
        })
    };
    let (r, _) = run(&c, &request(vec![image("image/png", PNG_1X1)])).await;
    assert_eq!(r.unwrap().text(), "echo: what is this?");
    assert_eq!(
        server.requests()[0].body["messages"][0]["content"][1],
        json!({"image": {"format": "png", "source": {"bytes": PNG_1X1}}})
    );
    // PNG bytes declared as JPEG: the twin checks the bytes, as the service does.
    server.push(Reply::text("unused"));
    let err = run(&c, &request(vec![image("image/jpeg", PNG_1X1)])).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadRequest, "{err}");
    assert!(err.message.contains("not a valid jpeg image"), "{err}");
}

#[tokio::test]
async fn usage_with_cache_tokens_is_priced() {
    let server = twin().await;
    server.push(BedrockReply::usage("cached answer", 100, 50, 2000, 300));
    let mut req = request(vec![user("hi")]);
    req.cost = ModelCost { input: 3.0, output: 15.0, cache_read: 0.3, cache_write: 3.75 };
    let msg = run(&client(&server), &req).await.0.unwrap();
    let u = msg.usage;
    assert_eq!((u.input, u.output, u.cache_read, u.cache_write, u.total_tokens), (100, 50, 2000, 300, 2450));
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    assert!(close(u.cost.input, 0.0003), "{:?}", u.cost);
    assert!(close(u.cost.output, 0.00075));
    assert!(close(u.cost.cache_read, 0.0006));
    assert!(close(u.cost.cache_write, 0.001125));
    assert!(close(u.cost.total, 0.0003 + 0.00075 + 0.0006 + 0.001125));
}

#[tokio::test]
async fn thinking_blocks_stream_and_go_back_signed() {
    let server = twin().await;
    server.push(BedrockReply::thinking("Consider the files first.", "EqQBCkYsig==", "Done."));
    let c = client(&server);
    let mut req = request(vec![user("think, then answer")]);
    req.thinking_budget = Some(2048);
    req.max_tokens = 1024;
    let (r, events) = run(&c, &req).await;
    let msg = r.unwrap();
    assert_eq!(
        msg.content[0],
        ContentBlock::Thinking { thinking: "Consider the files first.".into(), signature: Some("EqQBCkYsig==".into()) }
    );
    assert_eq!(msg.text(), "Done.");
    let thinking: String = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ThinkingDelta(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(thinking, "Consider the files first.");
    let body = &server.requests()[0].body;
    assert_eq!(body["additionalModelRequestFields"], json!({"thinking": {"type": "enabled", "budget_tokens": 2048}}));
    assert_eq!(body["inferenceConfig"]["maxTokens"], 3072);

    // With thinking on, the assistant turn that called tools must go back starting with its
    // signed reasoning; the twin refuses it otherwise.
    server.push(Reply::text("Listed."));
    let call = ContentBlock::ToolCall {
        id: "tooluse_t".into(),
        name: "ls".into(),
        arguments: json!({}),
        thought_signature: None,
    };
    let signed = ContentBlock::Thinking { thinking: "I should list.".into(), signature: Some("sig-2".into()) };
    req.messages = vec![user("list"), assistant(vec![signed, call.clone()]), tool_result("tooluse_t", "a.txt")];
    assert_eq!(run(&c, &req).await.0.unwrap().text(), "Listed.");
    assert_eq!(
        server.requests()[1].body["messages"][1]["content"][0],
        json!({"reasoningContent": {"reasoningText": {"text": "I should list.", "signature": "sig-2"}}})
    );
    server.push(Reply::text("unused"));
    req.messages = vec![user("list"), assistant(vec![call]), tool_result("tooluse_t", "a.txt")];
    let err = run(&c, &req).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadRequest);
    assert!(err.message.contains("must start with a thinking block"), "{err}");
}

#[tokio::test]
async fn bad_signatures_and_unknown_keys_are_auth_errors_and_not_retried() {
    let server = twin().await;
    server.push(Reply::text("unused"));
    let wrong = "wrong/Secret+Key/0123456789abcdefEXAMPLE";
    let c = client_for(settings(&server, Some(creds(AKID, wrong, None)), None));
    let err = run(&c, &request(vec![user("hi")])).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Auth, "{err}");
    assert_eq!(err.status, Some(403));
    assert!(
        err.message.contains("HTTP 403 InvalidSignatureException: The request signature we calculated does not match"),
        "{err}"
    );
    assert!(!err.message.contains(wrong) && !err.message.contains(SECRET), "secret leaked: {}", err.message);
    assert_eq!(server.requests().len(), 1, "auth errors must not be retried");

    let c = client_for(settings(&server, Some(creds("AKIAUNKNOWNKEY000000", SECRET, None)), None));
    let err = run(&c, &request(vec![user("hi")])).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Auth);
    assert!(
        err.message.contains("UnrecognizedClientException: The security token included in the request is invalid."),
        "{err}"
    );

    // No credentials at all: refused before any request is made.
    let before = server.requests().len();
    let err = run(&client_for(settings(&server, None, None)), &request(vec![user("hi")])).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Config);
    assert!(err.message.contains("AWS_ACCESS_KEY_ID") && err.message.contains("AWS_REGION"), "{err}");
    assert_eq!(server.requests().len(), before);
    assert_eq!(server.pending(), 1);
}

#[tokio::test]
async fn session_tokens_are_sent_and_signed() {
    let server = BedrockServer::start(AwsKey::new(AKID, SECRET, REGION).with_session_token(TOKEN)).await;
    server.push(Reply::text("temporary credentials work"));
    let c = client_for(settings(&server, Some(creds(AKID, SECRET, Some(TOKEN))), None));
    assert_eq!(run(&c, &request(vec![user("hi")])).await.0.unwrap().text(), "temporary credentials work");
    let rec = &server.requests()[0];
    assert_eq!(rec.header("x-amz-security-token"), Some(TOKEN));
    assert!(
        rec.header("authorization")
            .unwrap()
            .contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-extra,")
    );

    for token in [None, Some("IQoJwrong-token==")] {
        let c = client_for(settings(&server, Some(creds(AKID, SECRET, token)), None));
        let err = run(&c, &request(vec![user("hi")])).await.0.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Auth, "{token:?}: {err}");
        assert!(err.message.contains("UnrecognizedClientException"), "{err}");
        assert!(!err.message.contains("IQoJ"), "token leaked: {}", err.message);
    }
}

#[tokio::test]
async fn bedrock_api_keys_are_sent_as_bearer_tokens() {
    let server = twin().await;
    server.accept_api_key(API_KEY);
    server.push(Reply::text("bearer works"));
    let c = client_for(settings(&server, None, Some(API_KEY)));
    assert_eq!(run(&c, &request(vec![user("hi")])).await.0.unwrap().text(), "bearer works");
    let rec = &server.requests()[0];
    assert_eq!(rec.header("authorization"), Some(format!("Bearer {API_KEY}").as_str()));
    assert!(rec.header("x-amz-date").is_none());

    let wrong = "ABSKd3Jvbmcta2V5LXdyb25nLWtleQ==";
    let err = run(&client_for(settings(&server, None, Some(wrong))), &request(vec![user("hi")])).await.0.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::Auth, Some(403)));
    assert!(!err.message.contains(wrong), "key leaked: {}", err.message);

    let models = client_for(settings(&server, None, Some(API_KEY))).discover().await.unwrap().unwrap();
    assert_eq!(models.len(), 3);
}

#[tokio::test]
async fn rate_limits_are_retried_after_retry_after_then_reported() {
    let server = twin().await;
    let limited = error(429, "ThrottlingException", "Too many requests, please wait before trying again.", Some("1"));
    server.push(limited.clone());
    server.push(Reply::text("made it"));
    let c = client(&server);
    assert_eq!(run(&c, &request(vec![user("hi")])).await.0.unwrap().text(), "made it");
    assert_eq!(server.requests().len(), 2);

    for _ in 0..3 {
        server.push(limited.clone());
    }
    let err = run(&c, &request(vec![user("hi")])).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::RateLimited);
    assert_eq!(err.retry_after, Some(Duration::from_secs(1)));
    assert!(err.message.starts_with("HTTP 429 ThrottlingException: Too many requests"), "{err}");
    assert!(err.message.contains("after 3 attempts"), "{err}");
    assert_eq!(server.requests().len(), 5);
}

#[tokio::test]
async fn server_errors_overload_context_length_and_broken_streams_are_classified() {
    let server = twin().await;
    let c = client(&server);
    let req = request(vec![user("hi")]);
    for _ in 0..3 {
        server.push(error(500, "InternalServerException", "internal failure", None));
    }
    let err = run(&c, &req).await.0.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::Server, Some(500)));

    server.push(error(503, "ServiceUnavailableException", "Bedrock is unable to process your request.", None));
    server.push(Reply::text("recovered"));
    assert_eq!(run(&c, &req).await.0.unwrap().text(), "recovered");

    let before = server.requests().len();
    server.push(error(400, "ValidationException", "Input is too long for requested model.", None));
    let err = run(&c, &req).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::ContextLength, "{err}");
    assert_eq!(server.requests().len(), before + 1);

    server.push(Reply::Truncated("Half an ans".into()));
    let (r, events) = run(&c, &req).await;
    let err = r.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Protocol, "{err}");
    assert!(err.message.contains("no messageStop"), "{err}");
    assert_eq!(events, vec![StreamEvent::TextDelta("Half an ans".into())]);

    server.push(Reply::Raw("this is not an event stream at all".into()));
    let err = run(&c, &req).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Protocol);
    assert!(err.message.contains("malformed event stream from Bedrock: prelude checksum mismatch"), "{err}");

    let bad_json =
        encode_frame(&[(":event-type", "contentBlockDelta"), (":message-type", "event")], b"{\"delta\": {not json");
    server.push(BedrockReply::Bytes(bad_json));
    let err = run(&c, &req).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Protocol);
    assert!(err.message.contains("{\"delta\": {not json"), "{err}");

    for (exception, kind) in
        [("throttlingException", ErrorKind::RateLimited), ("modelStreamErrorException", ErrorKind::Server)]
    {
        let before = server.requests().len();
        server.push(Reply::StreamError {
            text: "partial".into(),
            kind: exception.into(),
            message: "stream broke".into(),
        });
        let (r, events) = run(&c, &req).await;
        let err = r.unwrap_err();
        assert_eq!(err.kind, kind, "{err}");
        assert_eq!(err.message, format!("{exception}: stream broke"));
        assert_eq!(events, vec![StreamEvent::TextDelta("partial".into())]);
        assert_eq!(server.requests().len(), before + 1, "no retry once output was streamed");
    }

    server.push(BedrockReply::Stop { text: "cut".into(), reason: "max_tokens".into() });
    assert_eq!(run(&c, &req).await.0.unwrap().stop_reason, StopReason::Length);

    // An empty queue is the twin's 500, retried and then reported.
    let before = server.requests().len();
    let err = run(&c, &req).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Server);
    assert!(err.message.contains("testkit: no scripted reply left"), "{err}");
    assert_eq!(server.requests().len(), before + 3);
}

#[tokio::test]
async fn recorded_fixtures_replay() {
    let server = twin().await;
    for name in ["text_hello", "tool_call_ls", "thinking_cached", "malformed_chunk"] {
        server.push(BedrockReply::fixture(name));
    }
    let c = client(&server);
    let req = request(vec![user("hi")]);
    let (r, events) = run(&c, &req).await;
    let hello = r.unwrap();
    assert_eq!(hello.text(), "Hello from the fixture.");
    assert_eq!((hello.usage.input, hello.usage.output, hello.usage.total_tokens), (12, 6, 18));
    assert_eq!(events.len(), 3);

    let tool = run(&c, &req).await.0.unwrap();
    assert_eq!(tool.stop_reason, StopReason::ToolUse);
    assert_eq!(
        tool.tool_calls().collect::<Vec<_>>(),
        vec![("tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "ls", &json!({"path": "."}))]
    );

    let thinking = run(&c, &req).await.0.unwrap();
    assert_eq!(
        thinking.content[0],
        ContentBlock::Thinking {
            thinking: "The user greets me. Answer briefly.".into(),
            signature: Some("ErUBCkYIBRgCIkDtestkitsignature==".into())
        }
    );
    assert_eq!(thinking.text(), "Hi!");
    assert_eq!((thinking.usage.input, thinking.usage.cache_read, thinking.usage.total_tokens), (9, 2048, 2098));

    let (r, events) = run(&c, &req).await;
    let err = r.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Protocol);
    assert!(err.message.contains("message checksum mismatch"), "{err}");
    assert_eq!(events, vec![StreamEvent::TextDelta("Hel".into())]);
}

#[tokio::test]
async fn discovery_lists_text_models_signed() {
    let server = twin().await;
    let models = client(&server).discover().await.unwrap().unwrap();
    let summary: Vec<(&str, bool, Vec<&str>)> =
        models.iter().map(|m| (m.id.as_str(), m.streaming, m.input.iter().map(String::as_str).collect())).collect();
    assert_eq!(
        summary,
        vec![
            ("anthropic.claude-3-5-sonnet-20240620-v1:0", true, vec!["text", "image"]),
            ("amazon.nova-micro-v1:0", true, vec!["text"]),
            ("cohere.command-text-v14", false, vec!["text"]),
        ]
    );
    assert_eq!(models[0].name.as_deref(), Some("Claude 3.5 Sonnet"));
    assert_eq!(server.paths(), vec!["GET /foundation-models".to_string()]);
    let auth = server.requests()[0].header("authorization").unwrap().to_string();
    assert!(
        auth.contains(&format!("/{REGION}/bedrock/aws4_request, SignedHeaders=host;x-amz-date;x-extra,")),
        "{auth}"
    );

    server.set_models(json!([]));
    assert_eq!(client(&server).discover().await.unwrap(), Some(vec![]));
    let err = client_for(settings(&server, Some(creds(AKID, "nope", None)), None)).discover().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Auth);
}

#[tokio::test]
async fn the_twin_refuses_stale_signatures() {
    // Signed by hand with the public signer, 10 minutes in the past: AWS allows 5.
    let server = twin().await;
    let http = reqwest::Client::new();
    let host = server.addr().to_string();
    let get = |when: SystemTime| {
        let headers = [("host", host.as_str())];
        let req = sigv4::Request {
            method: "GET",
            path: "/foundation-models",
            query: "byProvider=Anthropic",
            headers: &headers,
            payload: b"",
        };
        let creds = sigv4::Credentials { access_key_id: AKID, secret_access_key: SECRET, session_token: None };
        let signed = sigv4::sign(&req, &creds, REGION, "bedrock", when);
        let mut b = http.get(format!("{}/foundation-models?byProvider=Anthropic", server.base_url()));
        for (k, v) in signed.headers {
            b = b.header(k, v);
        }
        b.send()
    };
    let stale = get(SystemTime::now() - Duration::from_secs(600)).await.unwrap();
    assert_eq!(stale.status(), 403);
    assert_eq!(
        stale.headers()["x-amzn-errortype"],
        "InvalidSignatureException:http://internal.amazon.com/coral/com.amazon.coral.service/"
    );
    assert!(stale.text().await.unwrap().contains("Signature expired"));
    let fresh = get(SystemTime::now()).await.unwrap();
    assert_eq!(fresh.status(), 200);
}

#[tokio::test]
async fn dropping_the_call_cancels_a_slow_stream() {
    let server = twin().await;
    server.push(Reply::slow("tick ", 100, Duration::from_millis(100)));
    let c = client(&server);
    let req = request(vec![user("hi")]);
    let mut n = 0;
    let r = tokio::time::timeout(Duration::from_millis(400), c.stream(&req, &mut |_| n += 1)).await;
    assert!(r.is_err(), "the slow stream should still be running");
    assert!((1..10).contains(&n), "{n} chunks arrived");
}
