//! Both provider clients against the testkit twins, over real HTTP on loopback.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use clawline_core::config::{ApiKind, ProviderSettings};
use clawline_core::message::{
    AssistantMessage, ContentBlock, Message, StopReason, ToolResultMessage, Usage, UserContent, UserMessage,
};
use clawline_core::secret::SecretString;
use clawline_providers::{ErrorKind, ModelClient, ModelRequest, ProviderError, RetryPolicy, StreamEvent, ToolSpec};
use clawline_testkit::model_server::{Api, ModelServer, Reply, ToolCall};
use serde_json::json;

const KEY: &str = "sk-test-0123456789";

fn client(server: &ModelServer, api: Api, key: Option<&str>) -> ModelClient {
    let settings = ProviderSettings {
        id: "twin".into(),
        api: match api {
            Api::OpenAi => ApiKind::OpenAiCompletions,
            Api::Anthropic => ApiKind::AnthropicMessages,
        },
        base_url: server.base_url(),
        api_key: key.map(SecretString::new),
        api_key_source: Some("test".into()),
        headers: BTreeMap::from([("x-extra".to_string(), "1".to_string())]),
        timeout_secs: 5,
        max_tokens: None,
        models: vec![],
        implicit: false,
    };
    ModelClient::new(Arc::new(settings), reqwest::Client::new()).with_retry(RetryPolicy {
        max_retries: 2,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
    })
}

fn user(text: &str) -> Message {
    Message::User(UserMessage { content: UserContent::Text(text.into()), timestamp: 0, idempotency_key: None })
}

fn request(messages: Vec<Message>) -> ModelRequest {
    ModelRequest {
        model: "twin-model".into(),
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

fn both() -> [Api; 2] {
    [Api::OpenAi, Api::Anthropic]
}

#[tokio::test]
async fn streams_text_with_usage_and_sends_documented_headers() {
    for api in both() {
        let server = ModelServer::start(api, Some(KEY)).await;
        server.push(Reply::text("Hello there, streaming world."));
        let c = client(&server, api, Some(KEY));
        let (r, events) = run(&c, &request(vec![user("hi")])).await;
        let msg = r.unwrap_or_else(|e| panic!("{api:?}: {e}"));
        assert_eq!(msg.text(), "Hello there, streaming world.");
        assert_eq!(msg.stop_reason, StopReason::Stop);
        assert!(msg.usage.input > 0 && msg.usage.output > 0, "{api:?} usage {:?}", msg.usage);
        let deltas: Vec<_> = events.iter().filter(|e| matches!(e, StreamEvent::TextDelta(_))).collect();
        assert!(deltas.len() >= 3, "{api:?}: text must arrive in pieces, got {events:?}");

        let rec = &server.requests()[0];
        assert_eq!(rec.header("x-extra"), Some("1"));
        match api {
            Api::OpenAi => {
                assert_eq!(rec.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
                assert_eq!(rec.body["messages"][0]["role"], "system");
                assert_eq!(rec.body["stream_options"]["include_usage"], true);
            }
            Api::Anthropic => {
                assert_eq!(rec.header("x-api-key"), Some(KEY));
                assert_eq!(rec.header("anthropic-version"), Some("2023-06-01"));
                assert_eq!(rec.body["system"], "You are terse.");
                assert_eq!(rec.body["tools"][0]["input_schema"]["type"], "object");
            }
        }
    }
}

#[tokio::test]
async fn tool_calls_round_trip_through_the_twin() {
    for api in both() {
        let server = ModelServer::start(api, Some(KEY)).await;
        server.push(Reply::Tools {
            text: Some("Let me look.".into()),
            calls: vec![ToolCall::new("call_1", "ls", json!({"path": "."}))],
        });
        server.push(Reply::text("There is one file."));
        let c = client(&server, api, Some(KEY));
        let mut history = vec![user("what is here?")];
        let (r, events) = run(&c, &request(history.clone())).await;
        let first = r.unwrap();
        assert_eq!(first.stop_reason, StopReason::ToolUse, "{api:?}");
        assert_eq!(first.tool_calls().next(), Some(("call_1", "ls", &json!({"path": "."}))));
        assert!(events.contains(&StreamEvent::ToolCallStarted { id: "call_1".into(), name: "ls".into() }));
        history.push(Message::Assistant(first));
        history.push(Message::ToolResult(ToolResultMessage {
            tool_call_id: "call_1".into(),
            tool_name: "ls".into(),
            content: vec![ContentBlock::Text { text: "a.txt".into() }],
            is_error: false,
            timestamp: 0,
        }));
        let (r, _) = run(&c, &request(history)).await;
        assert_eq!(
            r.unwrap_or_else(|e| panic!("{api:?}: the twin refused the follow-up: {e}")).text(),
            "There is one file."
        );
    }
}

#[tokio::test]
async fn recorded_fixtures_replay() {
    for api in both() {
        let server = ModelServer::start(api, Some(KEY)).await;
        server.push(Reply::fixture(api, "text_hello"));
        server.push(Reply::fixture(api, "tool_call_ls"));
        server.push(Reply::fixture(api, "malformed_chunk"));
        let c = client(&server, api, Some(KEY));
        let req = request(vec![user("hi")]);
        assert_eq!(run(&c, &req).await.0.unwrap().text(), "Hello from the fixture.");
        let tool = run(&c, &req).await.0.unwrap();
        assert_eq!(tool.tool_calls().next().map(|(_, n, a)| (n, a.clone())), Some(("ls", json!({"path": "."}))));
        let err = run(&c, &req).await.0.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Protocol, "{api:?}: {err}");
    }
}

#[tokio::test]
async fn wrong_key_is_an_auth_error_and_is_not_retried() {
    for api in both() {
        let server = ModelServer::start(api, Some(KEY)).await;
        let c = client(&server, api, Some("sk-wrong-key-000"));
        let err = run(&c, &request(vec![user("hi")])).await.0.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Auth, "{api:?}: {err}");
        assert_eq!(err.status, Some(401));
        assert!(!err.message.contains("sk-wrong-key-000"), "key leaked: {}", err.message);
        assert_eq!(server.requests().len(), 1, "auth errors must not be retried");

        let c = client(&server, api, None);
        let err = run(&c, &request(vec![user("hi")])).await.0.unwrap_err();
        assert!(err.message.contains("no API key is configured"), "{err}");
    }
}

#[tokio::test]
async fn rate_limits_are_retried_after_retry_after_then_reported() {
    for api in both() {
        let server = ModelServer::start(api, Some(KEY)).await;
        let (kind, status) = match api {
            Api::OpenAi => ("rate_limit_exceeded", 429),
            Api::Anthropic => ("rate_limit_error", 429),
        };
        let limited =
            Reply::Error { status, kind: kind.into(), message: "slow down".into(), retry_after: Some("0".into()) };
        server.push(limited.clone());
        server.push(Reply::text("made it"));
        let c = client(&server, api, Some(KEY));
        assert_eq!(run(&c, &request(vec![user("hi")])).await.0.unwrap().text(), "made it");
        assert_eq!(server.requests().len(), 2);

        for _ in 0..3 {
            server.push(limited.clone());
        }
        let err = run(&c, &request(vec![user("hi")])).await.0.unwrap_err();
        assert_eq!(err.kind, ErrorKind::RateLimited);
        assert!(err.message.contains("after 3 attempts"), "{err}");
        assert_eq!(server.requests().len(), 5);
    }
}

#[tokio::test]
async fn server_errors_overload_and_garbage_are_classified() {
    for api in both() {
        let server = ModelServer::start(api, Some(KEY)).await;
        let c = client(&server, api, Some(KEY));
        let req = request(vec![user("hi")]);
        for _ in 0..3 {
            server.push(Reply::error(500, "api_error", "internal failure"));
        }
        assert_eq!(run(&c, &req).await.0.unwrap_err().kind, ErrorKind::Server);

        server.push(Reply::error(529, "overloaded_error", "Overloaded"));
        server.push(Reply::text("recovered"));
        assert_eq!(run(&c, &req).await.0.unwrap().text(), "recovered");

        server.push(Reply::Raw("data: this is not json\n\n".into()));
        let err = run(&c, &req).await.0.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Protocol);
        assert!(err.message.contains("this is not json"), "{err}");

        server.push(Reply::Truncated("Half an ans".into()));
        let err = run(&c, &req).await.0.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Protocol, "{api:?}: {err}");

        let before = server.requests().len();
        server.push(Reply::StreamError {
            text: "partial".into(),
            kind: "overloaded_error".into(),
            message: "Overloaded".into(),
        });
        let (r, events) = run(&c, &req).await;
        assert_eq!(r.unwrap_err().kind, ErrorKind::Overloaded);
        assert!(!events.is_empty());
        assert_eq!(server.requests().len(), before + 1, "no retry once output was streamed");

        server.push(Reply::error(400, "invalid_request_error", "prompt is too long: 300000 tokens > 200000 maximum"));
        assert_eq!(run(&c, &req).await.0.unwrap_err().kind, ErrorKind::ContextLength);
    }
}

#[tokio::test]
async fn the_twin_refuses_unanswered_tool_calls() {
    for api in both() {
        let server = ModelServer::start(api, Some(KEY)).await;
        server.push(Reply::text("unused"));
        let c = client(&server, api, Some(KEY));
        let orphan = Message::Assistant(AssistantMessage {
            content: vec![ContentBlock::ToolCall { id: "call_x".into(), name: "ls".into(), arguments: json!({}) }],
            api: "x".into(),
            provider: "twin".into(),
            model: "m".into(),
            usage: Usage::default(),
            stop_reason: StopReason::ToolUse,
            timestamp: 0,
            response_id: None,
            error_message: None,
        });
        let err = run(&c, &request(vec![user("hi"), orphan, user("again")])).await.0.unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadRequest, "{api:?}: {err}");
        assert!(err.message.contains("call_x"), "{err}");
    }
}

#[tokio::test]
async fn dropping_the_call_cancels_a_slow_stream() {
    for api in both() {
        let server = ModelServer::start(api, Some(KEY)).await;
        server.push(Reply::slow("tick ", 100, Duration::from_millis(100)));
        let c = client(&server, api, Some(KEY));
        let req = request(vec![user("hi")]);
        let started = std::time::Instant::now();
        let mut n = 0;
        let r = tokio::time::timeout(Duration::from_millis(400), c.stream(&req, &mut |_| n += 1)).await;
        assert!(r.is_err(), "the slow stream should still be running");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

#[tokio::test]
async fn unreachable_server_is_a_network_error() {
    let server = ModelServer::start(Api::OpenAi, None).await;
    let addr = server.addr();
    drop(server);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let settings = ProviderSettings {
        id: "gone".into(),
        api: ApiKind::OpenAiCompletions,
        base_url: format!("http://{addr}/v1"),
        api_key: None,
        api_key_source: None,
        headers: BTreeMap::new(),
        timeout_secs: 2,
        max_tokens: None,
        models: vec![],
        implicit: false,
    };
    let c = ModelClient::new(Arc::new(settings), reqwest::Client::new()).with_retry(RetryPolicy {
        max_retries: 1,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(5),
    });
    let err = c.stream(&request(vec![user("hi")]), &mut |_| {}).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Network, "{err}");
    assert!(err.hint().is_some());
}
