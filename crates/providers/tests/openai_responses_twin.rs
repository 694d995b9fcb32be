//! The OpenAI Responses client against the testkit's Responses twin, over real HTTP on loopback.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use clawline_core::config::schema::ModelCost;
use clawline_core::config::{ApiKind, ProviderSettings};
use clawline_core::message::{
    AssistantMessage, ContentBlock, Message, StopReason, ToolResultMessage, Usage, UserContent, UserMessage,
};
use clawline_core::secret::SecretString;
use clawline_providers::{ErrorKind, ModelClient, ModelRequest, ProviderError, RetryPolicy, StreamEvent, ToolSpec};
use clawline_testkit::model_server::{Reply, ToolCall};
use clawline_testkit::openai_responses_server::{ResponsesReply, ResponsesServer, ResponsesUsage};
use serde_json::{Value, json};

const KEY: &str = "sk-test-responses-0123456789";
/// A 1×1 PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

fn settings(base_url: String, key: Option<&str>, timeout_secs: u64) -> ProviderSettings {
    ProviderSettings {
        id: "codex".into(),
        api: ApiKind::OpenAiResponses,
        base_url,
        api_key: key.map(SecretString::new),
        api_key_source: key.map(|_| "test".to_string()),
        headers: BTreeMap::from([("x-extra".to_string(), "1".to_string())]),
        timeout_secs,
        ..Default::default()
    }
}

fn client_with(s: ProviderSettings, max_retries: u32) -> ModelClient {
    ModelClient::new(Arc::new(s), reqwest::Client::new()).with_retry(RetryPolicy {
        max_retries,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
    })
}

fn client(server: &ResponsesServer, key: Option<&str>) -> ModelClient {
    client_with(settings(server.base_url(), key, 5), 2)
}

fn user(text: &str) -> Message {
    Message::User(UserMessage { content: UserContent::Text(text.into()), timestamp: 0, idempotency_key: None })
}

fn request(messages: Vec<Message>) -> ModelRequest {
    ModelRequest {
        model: "gpt-5".into(),
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

async fn run(c: &ModelClient, req: &ModelRequest) -> (Result<AssistantMessage, ProviderError>, Vec<StreamEvent>) {
    let mut events = Vec::new();
    let r = c.stream(req, &mut |e| events.push(e)).await;
    (r, events)
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
        api: "openai-responses".into(),
        provider: "codex".into(),
        model: "gpt-5".into(),
        usage: Usage::default(),
        stop_reason: StopReason::ToolUse,
        timestamp: 0,
        response_id: None,
        error_message: None,
    })
}

fn texts(events: &[StreamEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::TextDelta(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn streams_text_and_sends_the_documented_request() {
    let server = ResponsesServer::start(Some(KEY)).await;
    server.push(Reply::text("Hello there, streaming world."));
    let c = client(&server, Some(KEY));
    let (r, events) = run(&c, &request(vec![user("hi")])).await;
    let msg = r.unwrap();
    assert_eq!(msg.text(), "Hello there, streaming world.");
    assert_eq!(msg.stop_reason, StopReason::Stop);
    assert_eq!((msg.api.as_str(), msg.provider.as_str(), msg.model.as_str()), ("openai-responses", "codex", "gpt-5"));
    assert_eq!(msg.response_id.as_deref(), Some("resp_testkit_1"));
    assert!(msg.timestamp > 1_700_000_000_000);
    assert!(msg.usage.input > 0 && msg.usage.output > 0, "{:?}", msg.usage);
    assert_eq!(msg.usage.total_tokens, msg.usage.input + msg.usage.output);
    assert_eq!(texts(&events), vec!["Hello the", "re, stream", "ing world."]);

    let rec = &server.requests()[0];
    assert_eq!(rec.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    assert_eq!(rec.header("x-extra"), Some("1"));
    assert_eq!(rec.header("accept"), Some("text/event-stream"));
    let b = &rec.body;
    assert_eq!(b["model"], "gpt-5");
    assert_eq!(b["instructions"], "You are terse.");
    assert_eq!(b["input"], json!([{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]));
    assert_eq!(
        (b["stream"].clone(), b["store"].clone(), b["max_output_tokens"].clone()),
        (json!(true), json!(false), json!(256))
    );
    assert_eq!(
        b["tools"][0],
        json!({"type": "function", "name": "ls", "description": "List a directory.",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}})
    );
    assert!(b.get("reasoning").is_none() && b.get("include").is_none(), "{b}");
}

#[tokio::test]
async fn tool_calls_round_trip_and_the_twin_checks_the_pairing() {
    let server = ResponsesServer::start(Some(KEY)).await;
    server.push(Reply::Tools {
        text: Some("Let me look.".into()),
        calls: vec![
            ToolCall::new("call_1", "ls", json!({"path": "."})),
            ToolCall::raw("call_2", "ls", "{\"path\": oops"),
        ],
    });
    server.push(Reply::text("There is one file."));
    let c = client(&server, Some(KEY));
    let mut history = vec![user("what is here?")];
    let (r, events) = run(&c, &request(history.clone())).await;
    let first = r.unwrap();
    assert_eq!(first.stop_reason, StopReason::ToolUse);
    assert_eq!(first.text(), "Let me look.");
    let calls: Vec<_> = first.tool_calls().collect();
    assert_eq!(calls[0], ("call_1", "ls", &json!({"path": "."})));
    assert_eq!(calls[1], ("call_2", "ls", &Value::String("{\"path\": oops".into())));
    let started: Vec<_> = events.iter().filter(|e| matches!(e, StreamEvent::ToolCallStarted { .. })).collect();
    assert_eq!(
        started,
        vec![
            &StreamEvent::ToolCallStarted { id: "call_1".into(), name: "ls".into() },
            &StreamEvent::ToolCallStarted { id: "call_2".into(), name: "ls".into() },
        ]
    );

    history.push(Message::Assistant(first));
    history.push(tool_result("call_1", "a.txt"));
    history.push(tool_result("call_2", "error: bad arguments"));
    let (r, _) = run(&c, &request(history.clone())).await;
    assert_eq!(r.unwrap_or_else(|e| panic!("the twin refused the follow-up: {e}")).text(), "There is one file.");
    let input = server.requests()[1].body["input"].clone();
    assert_eq!(
        input,
        json!([
            {"role": "user", "content": [{"type": "input_text", "text": "what is here?"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me look."}]},
            {"type": "function_call", "call_id": "call_1", "name": "ls", "arguments": "{\"path\":\".\"}"},
            {"type": "function_call", "call_id": "call_2", "name": "ls", "arguments": "{\"path\": oops"},
            {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"},
            {"type": "function_call_output", "call_id": "call_2", "output": "error: bad arguments"},
        ])
    );

    // Unanswered calls and stray outputs are refused like the service refuses them.
    let orphan = assistant(vec![ContentBlock::ToolCall {
        id: "call_x".into(),
        name: "ls".into(),
        arguments: json!({}),
        thought_signature: None,
    }]);
    server.push(Reply::text("unused"));
    let err = run(&c, &request(vec![user("hi"), orphan, user("again")])).await.0.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::BadRequest, Some(400)));
    assert!(err.message.contains("No tool output found for function call call_x"), "{err}");
    let err = run(&c, &request(vec![user("hi"), tool_result("call_y", "x")])).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadRequest);
    assert!(err.message.contains("No tool call found for function call output with call_id call_y"), "{err}");
    assert_eq!(server.pending(), 1, "refused requests must not use a reply");
}

#[tokio::test]
async fn images_go_as_data_urls_and_broken_images_are_refused() {
    let server = ResponsesServer::start(Some(KEY)).await;
    server.push(Reply::text("A single pixel."));
    let c = client(&server, Some(KEY));
    let image = |data: &str| {
        Message::User(UserMessage {
            content: UserContent::Blocks(vec![
                ContentBlock::Text { text: "What is this?".into() },
                ContentBlock::Image { data: data.into(), mime_type: "image/png".into() },
            ]),
            timestamp: 0,
            idempotency_key: None,
        })
    };
    assert_eq!(run(&c, &request(vec![image(PNG)])).await.0.unwrap().text(), "A single pixel.");
    assert_eq!(
        server.requests()[0].body["input"][0]["content"][1],
        json!({"type": "input_image", "image_url": format!("data:image/png;base64,{PNG}"), "detail": "auto"})
    );

    let err = run(&c, &request(vec![image("bm90IGFuIGltYWdl")])).await.0.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::BadRequest, Some(400)));
    assert!(err.message.contains("invalid_image_format"), "{err}");
    let err = run(&c, &request(vec![image("%%%")])).await.0.unwrap_err();
    assert!(err.message.contains("invalid base64 payload"), "{err}");
}

#[tokio::test]
async fn usage_counts_cache_reads_and_is_priced() {
    let server = ResponsesServer::start(Some(KEY)).await;
    server.push(ResponsesReply::counted(
        "Cached answer.",
        ResponsesUsage { input_tokens: 12_000, cached_tokens: 10_000, output_tokens: 500, reasoning_tokens: 200 },
    ));
    let c = client(&server, Some(KEY));
    let mut req = request(vec![user("hi")]);
    req.cost = ModelCost { input: 1.25, output: 10.0, cache_read: 0.125, cache_write: 0.0 };
    let msg = run(&c, &req).await.0.unwrap();
    let u = msg.usage;
    assert_eq!((u.input, u.cache_read, u.cache_write, u.output, u.total_tokens), (2_000, 10_000, 0, 500, 12_500));
    assert!((u.cost.input - 0.0025).abs() < 1e-12, "{:?}", u.cost);
    assert!((u.cost.cache_read - 0.00125).abs() < 1e-12);
    assert!((u.cost.output - 0.005).abs() < 1e-12);
    assert!((u.cost.total - 0.00875).abs() < 1e-12);
}

#[tokio::test]
async fn reasoning_streams_as_thinking_and_replays_with_its_encrypted_content() {
    let server = ResponsesServer::start(Some(KEY)).await;
    server.push(ResponsesReply::Answer {
        reasoning: Some(clawline_testkit::openai_responses_server::Reasoning {
            summary: vec!["**Planning** I should list files.".into(), "Then answer briefly.".into()],
            encrypted_content: "gAAAAABtwin-encrypted-1".into(),
        }),
        text: None,
        calls: vec![ToolCall::new("call_r", "ls", json!({"path": "."}))],
        usage: None,
        incomplete: None,
    });
    server.push(ResponsesReply::thinking(&["Done."], "gAAAAABtwin-encrypted-2", "One file."));
    let c = client(&server, Some(KEY));
    let mut req = request(vec![user("what is here?")]);
    req.thinking_budget = Some(16_000);
    let (r, events) = run(&c, &req).await;
    let first = r.unwrap();
    let body = &server.requests()[0].body;
    assert_eq!(body["reasoning"], json!({"effort": "high", "summary": "auto"}));
    assert_eq!(body["include"], json!(["reasoning.encrypted_content"]));

    let thinking: String = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ThinkingDelta(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(thinking, "**Planning** I should list files.\n\nThen answer briefly.");
    let Some(ContentBlock::Thinking { thinking, signature: Some(sig) }) = first.content.first() else {
        panic!("no signed thinking block first: {:?}", first.content)
    };
    assert_eq!(thinking, "**Planning** I should list files.\n\nThen answer briefly.");
    let sig: Value = serde_json::from_str(sig).unwrap();
    assert_eq!(sig, json!({"id": "rs_testkit_0", "encrypted_content": "gAAAAABtwin-encrypted-1"}));
    assert_eq!(first.stop_reason, StopReason::ToolUse);

    req.messages.push(Message::Assistant(first.clone()));
    req.messages.push(tool_result("call_r", "a.txt"));
    let second = run(&c, &req).await.0.unwrap_or_else(|e| panic!("replay refused: {e}"));
    assert_eq!(second.text(), "One file.");
    let input = &server.requests()[1].body["input"];
    assert_eq!(
        input[1],
        json!({"type": "reasoning", "encrypted_content": "gAAAAABtwin-encrypted-1",
            "summary": [{"type": "summary_text", "text": "**Planning** I should list files.\n\nThen answer briefly."}]})
    );
    assert_eq!(input[2]["type"], "function_call");

    // Reasoning the service never issued is refused.
    let forged = ContentBlock::Thinking {
        thinking: "x".into(),
        signature: Some(r#"{"id":"rs_1","encrypted_content":"forged"}"#.into()),
    };
    let err =
        run(&c, &request(vec![user("a"), assistant(vec![forged, ContentBlock::Text { text: "b".into() }]), user("c")]))
            .await
            .0
            .unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadRequest);
    assert!(err.message.contains("could not be verified"), "{err}");
}

#[tokio::test]
async fn wrong_or_missing_key_is_an_auth_error_and_is_not_retried() {
    let server = ResponsesServer::start(Some(KEY)).await;
    let c = client(&server, Some("sk-wrong-key-000"));
    let err = run(&c, &request(vec![user("hi")])).await.0.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::Auth, Some(401)));
    assert!(err.message.starts_with("HTTP 401 invalid_api_key: Incorrect API key provided: sk-"), "{err}");
    assert!(!err.message.contains("sk-wrong-key-000"), "key leaked: {}", err.message);
    assert_eq!(server.requests().len(), 1, "auth errors must not be retried");
    assert!(err.hint().is_some());

    let c = client(&server, None);
    let err = run(&c, &request(vec![user("hi")])).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Auth);
    assert!(err.message.contains("You didn't provide an API key"), "{err}");
    assert!(err.message.contains("no API key is configured"), "{err}");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn rate_limits_are_retried_after_retry_after_then_reported() {
    let server = ResponsesServer::start(Some(KEY)).await;
    let limited = Reply::Error {
        status: 429,
        kind: "rate_limit_exceeded".into(),
        message: "Rate limit reached for gpt-5 on tokens per min (TPM). Please try again in 20ms.".into(),
        retry_after: Some("0".into()),
    };
    server.push(limited.clone());
    server.push(Reply::text("made it"));
    let c = client(&server, Some(KEY));
    assert_eq!(run(&c, &request(vec![user("hi")])).await.0.unwrap().text(), "made it");
    assert_eq!(server.requests().len(), 2);

    for _ in 0..3 {
        server.push(limited.clone());
    }
    let err = run(&c, &request(vec![user("hi")])).await.0.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::RateLimited, Some(429)));
    assert_eq!(err.retry_after, Some(Duration::ZERO), "the header wins over the message");
    assert!(err.message.contains("rate_limit_exceeded") && err.message.contains("after 3 attempts"), "{err}");
    assert_eq!(server.requests().len(), 5);

    // Out of credit is a 429 too, but retrying cannot help.
    server.push(Reply::error(429, "insufficient_quota", "You exceeded your current quota"));
    let err = run(&c, &request(vec![user("hi")])).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Billing);
    assert_eq!(server.requests().len(), 6);
}

#[tokio::test]
async fn server_errors_overload_and_context_length_are_classified() {
    let server = ResponsesServer::start(Some(KEY)).await;
    let c = client(&server, Some(KEY));
    let req = request(vec![user("hi")]);
    for _ in 0..3 {
        server.push(Reply::error(500, "server_error", "The server had an error while processing your request."));
    }
    let err = run(&c, &req).await.0.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::Server, Some(500)));
    assert!(err.message.contains("server_error: The server had an error"), "{err}");
    assert_eq!(server.requests().len(), 3);

    server.push(Reply::error(503, "server_error", "The engine is currently overloaded, please try again later."));
    server.push(Reply::text("recovered"));
    assert_eq!(run(&c, &req).await.0.unwrap().text(), "recovered");
    assert_eq!(server.requests().len(), 5);
    for _ in 0..3 {
        server.push(Reply::error(503, "server_error", "The engine is currently overloaded, please try again later."));
    }
    assert_eq!(run(&c, &req).await.0.unwrap_err().kind, ErrorKind::Overloaded);

    let before = server.requests().len();
    server.push(Reply::error(
        400,
        "context_length_exceeded",
        "Your input exceeds the context window of this model. Please adjust your input and try again.",
    ));
    let err = run(&c, &req).await.0.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::ContextLength, Some(400)));
    assert!(err.hint().is_some());
    assert_eq!(server.requests().len(), before + 1, "context errors are not retried");

    // The queue is empty: the twin says so loudly.
    let c = client_with(settings(server.base_url(), Some(KEY), 5), 0);
    let err = run(&c, &req).await.0.unwrap_err();
    assert!(err.message.contains("testkit: no scripted reply left"), "{err}");
}

#[tokio::test]
async fn broken_streams_are_protocol_errors_and_midstream_failures_are_classified() {
    let server = ResponsesServer::start(Some(KEY)).await;
    let c = client(&server, Some(KEY));
    let req = request(vec![user("hi")]);

    server.push(Reply::Truncated("Half an ans".into()));
    let (r, events) = run(&c, &req).await;
    let err = r.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Protocol, "{err}");
    assert!(err.message.contains("response.completed"), "{err}");
    assert_eq!(texts(&events), vec!["Half an ans"]);

    server.push(Reply::Raw("event: response.created\ndata: this is not json\n\n".into()));
    let err = run(&c, &req).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Protocol);
    assert!(err.message.contains("this is not json"), "{err}");

    let before = server.requests().len();
    server.push(Reply::StreamError {
        text: "partial".into(),
        kind: "server_is_overloaded".into(),
        message: "Our servers are currently overloaded. Please try again later.".into(),
    });
    let (r, events) = run(&c, &req).await;
    assert_eq!(r.unwrap_err().kind, ErrorKind::Overloaded);
    assert_eq!(texts(&events), vec!["partial"]);
    assert_eq!(server.requests().len(), before + 1, "no retry once output was streamed");

    server.push(ResponsesReply::failed("Some", "server_error", "An error occurred while processing your request."));
    let (r, events) = run(&c, &req).await;
    let err = r.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::Server, None));
    assert!(err.message.contains("An error occurred while processing"), "{err}");
    assert_eq!(texts(&events), vec!["Some"]);

    server.push(ResponsesReply::incomplete("The answer was cut", "max_output_tokens"));
    let msg = run(&c, &req).await.0.unwrap();
    assert_eq!((msg.stop_reason, msg.text().as_str()), (StopReason::Length, "The answer was cut"));
}

#[tokio::test]
async fn recorded_fixtures_replay() {
    let server = ResponsesServer::start(Some(KEY)).await;
    for name in ["text_hello", "tool_call_ls", "incomplete", "malformed_chunk"] {
        server.push(ResponsesReply::fixture(name));
    }
    let c = client(&server, Some(KEY));
    let mut req = request(vec![user("hi")]);
    req.cost = ModelCost { input: 1.25, output: 10.0, cache_read: 0.125, cache_write: 0.0 };

    let (r, events) = run(&c, &req).await;
    let msg = r.unwrap();
    assert_eq!(msg.text(), "Hello from the fixture.");
    assert_eq!(texts(&events).len(), 5);
    assert_eq!((msg.usage.input, msg.usage.output, msg.usage.total_tokens), (112, 9, 121));

    let msg = run(&c, &req).await.0.unwrap();
    assert_eq!(msg.stop_reason, StopReason::ToolUse);
    assert_eq!(msg.tool_calls().next(), Some(("call_Xq8cN1vY3rT0pLk2sD9fG4hJ", "ls", &json!({"path": "."}))));
    assert!(
        matches!(&msg.content[0], ContentBlock::Thinking { thinking, signature: Some(s) }
            if thinking.starts_with("**Listing the directory**") && s.contains("gAAAAABo8cO5")),
        "{:?}",
        msg.content
    );
    assert_eq!((msg.usage.input, msg.usage.cache_read, msg.usage.output), (256, 1280, 84));
    assert!((msg.usage.cost.total - (256.0 * 1.25 + 1280.0 * 0.125 + 84.0 * 10.0) / 1e6).abs() < 1e-12);
    assert_eq!(msg.response_id.as_deref(), Some("resp_68f1c3b7e21c81909f4d6a2b8c3e5f710b2d4f6a8c0e1357"));

    let msg = run(&c, &req).await.0.unwrap();
    assert_eq!((msg.stop_reason, msg.text().as_str()), (StopReason::Length, "The answer is long and"));

    let (r, events) = run(&c, &req).await;
    let err = r.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Protocol, "{err}");
    assert!(err.message.contains("malformed event"), "{err}");
    assert_eq!(texts(&events), vec!["Hel"]);
}

#[tokio::test]
async fn dropping_the_call_cancels_a_slow_stream() {
    let server = ResponsesServer::start(Some(KEY)).await;
    server.push(Reply::slow("tick ", 100, Duration::from_millis(100)));
    let c = client(&server, Some(KEY));
    let req = request(vec![user("hi")]);
    let mut n = 0;
    let r = tokio::time::timeout(Duration::from_millis(450), c.stream(&req, &mut |_| n += 1)).await;
    assert!(r.is_err(), "the slow stream should still be running");
    assert!(n < 100, "the stream ended instead of being dropped: {n}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_silent_stream_times_out() {
    let server = ResponsesServer::start(Some(KEY)).await;
    server.push(Reply::Chunks { chunks: vec!["late".into()], delay: Duration::from_millis(2500) });
    let c = client_with(settings(server.base_url(), Some(KEY), 1), 0);
    let err = run(&c, &request(vec![user("hi")])).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
}

#[tokio::test]
async fn unreachable_server_is_a_network_error() {
    let server = ResponsesServer::start(None).await;
    let addr = server.addr();
    drop(server);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let c = client_with(settings(format!("http://{addr}/v1"), None, 2), 1);
    let err = c.stream(&request(vec![user("hi")]), &mut |_| {}).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Network, "{err}");
    assert!(err.message.contains("after 2 attempts"), "{err}");
}
