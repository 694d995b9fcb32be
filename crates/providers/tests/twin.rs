//! Both provider clients against the testkit twins, over real HTTP on loopback.

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
use clawline_testkit::model_server::{Api, ModelServer, Reply, ReplyExtras, TokenUsage, ToolCall};
use serde_json::json;

const KEY: &str = "sk-test-0123456789";
/// A 1×1 PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

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
        ..Default::default()
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
            content: vec![ContentBlock::ToolCall {
                id: "call_x".into(),
                name: "ls".into(),
                arguments: json!({}),
                thought_signature: None,
            }],
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
        let mut n = 0;
        let r = tokio::time::timeout(Duration::from_millis(400), c.stream(&req, &mut |_| n += 1)).await;
        assert!(r.is_err(), "the slow stream should still be running");
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
        ..Default::default()
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

fn image_message(data: &str, mime_type: &str) -> Message {
    Message::User(UserMessage {
        content: UserContent::Blocks(vec![
            ContentBlock::Text { text: "What is in this picture?".into() },
            ContentBlock::Image { data: data.into(), mime_type: mime_type.into() },
        ]),
        timestamp: 0,
        idempotency_key: None,
    })
}

#[tokio::test]
async fn image_input_reaches_the_twin_in_each_apis_shape() {
    for api in both() {
        let server = ModelServer::start(api, Some(KEY)).await;
        server.push(Reply::text("A single pixel."));
        let c = client(&server, api, Some(KEY));
        let msg =
            run(&c, &request(vec![image_message(PNG, "image/png")])).await.0.unwrap_or_else(|e| panic!("{api:?}: {e}"));
        assert_eq!(msg.text(), "A single pixel.");
        let body = &server.requests()[0].body;
        match api {
            Api::OpenAi => assert_eq!(
                body["messages"][1]["content"],
                json!([
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}},
                ])
            ),
            Api::Anthropic => assert_eq!(
                body["messages"][0]["content"],
                json!([
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                ])
            ),
        }

        // The twin refuses images the real APIs refuse, without using a reply.
        for (data, mime, expect) in [
            ("aGVsbG8gd29ybGQ=", "image/png", if api == Api::OpenAi { "unsupported image" } else { "does not match" }),
            ("not base64!!", "image/png", "base64"),
            (PNG, "image/bmp", if api == Api::OpenAi { "unsupported MIME type 'image/bmp'" } else { "media_type" }),
        ] {
            let err = run(&c, &request(vec![image_message(data, mime)])).await.0.unwrap_err();
            assert_eq!((err.kind, err.status), (ErrorKind::BadRequest, Some(400)), "{api:?}: {err}");
            assert!(err.message.contains(expect), "{api:?}: {err}");
        }
        if api == Api::Anthropic {
            let err = run(&c, &request(vec![image_message(PNG, "image/jpeg")])).await.0.unwrap_err();
            assert!(err.message.contains("Image does not match the provided media type image/jpeg"), "{err}");
        }
        assert_eq!(server.pending(), 0);
    }
}

#[tokio::test]
async fn context_length_errors_are_classified_and_not_retried() {
    for api in both() {
        let server = ModelServer::start(api, Some(KEY)).await;
        let c = client(&server, api, Some(KEY));
        let (kind, message) = match api {
            Api::OpenAi => (
                "context_length_exceeded",
                "This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens. Please reduce the length of the messages.",
            ),
            Api::Anthropic => ("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"),
        };
        server.push(Reply::error(400, kind, message));
        server.push(Reply::text("must not be used"));
        let err = run(&c, &request(vec![user("a very long prompt")])).await.0.unwrap_err();
        assert_eq!((err.kind, err.status), (ErrorKind::ContextLength, Some(400)), "{api:?}: {err}");
        assert!(err.message.contains(message), "{api:?}: {err}");
        if api == Api::OpenAi {
            assert!(err.message.contains("context_length_exceeded"), "{err}");
        }
        assert!(err.hint().is_some_and(|h| h.contains("too long")));
        assert_eq!((server.requests().len(), server.pending()), (1, 1), "{api:?}: context errors are not retried");
    }
}

#[tokio::test]
async fn usage_carries_cache_tokens_and_cost() {
    for api in both() {
        let server = ModelServer::start(api, Some(KEY)).await;
        let usage = TokenUsage { input: 1_200, output: 300, cache_read: 800, cache_write: 400 };
        server.push_with(Reply::text("Cached answer."), ReplyExtras::usage(usage));
        let c = client(&server, api, Some(KEY));
        let mut req = request(vec![user("hi")]);
        req.cost = ModelCost { input: 3.0, output: 15.0, cache_read: 0.3, cache_write: 3.75 };
        let msg = run(&c, &req).await.0.unwrap_or_else(|e| panic!("{api:?}: {e}"));
        let u = &msg.usage;
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        match api {
            // OpenAI counts cached tokens inside prompt_tokens and has no cache writes.
            Api::OpenAi => {
                assert_eq!(
                    (u.input, u.cache_read, u.cache_write, u.output, u.total_tokens),
                    (1_200, 800, 0, 300, 2_300)
                );
                assert!(close(u.cost.cache_write, 0.0), "{:?}", u.cost);
                assert!(close(u.cost.total, 0.0036 + 0.00024 + 0.0045), "{:?}", u.cost);
            }
            Api::Anthropic => {
                assert_eq!(
                    (u.input, u.cache_read, u.cache_write, u.output, u.total_tokens),
                    (1_200, 800, 400, 300, 2_700)
                );
                assert!(close(u.cost.cache_write, 0.0015), "{:?}", u.cost);
                assert!(close(u.cost.total, 0.0036 + 0.00024 + 0.0015 + 0.0045), "{:?}", u.cost);
            }
        }
        assert!(
            close(u.cost.input, 0.0036) && close(u.cost.cache_read, 0.00024) && close(u.cost.output, 0.0045),
            "{:?}",
            u.cost
        );
    }
}

#[tokio::test]
async fn thinking_blocks_stream_with_their_signature_and_go_back_in_the_history() {
    for api in both() {
        let server = ModelServer::start(api, Some(KEY)).await;
        let signature = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds";
        server.push_with(Reply::text("The answer is 4."), ReplyExtras::thinking("Two plus two is four.", signature));
        server.push(Reply::text("You're welcome."));
        let c = client(&server, api, Some(KEY));
        let mut req = request(vec![user("What is 2+2?")]);
        req.max_tokens = 4096;
        let (r, events) = run(&c, &req).await;
        let msg = r.unwrap_or_else(|e| panic!("{api:?}: {e}"));
        let expected_signature = (api == Api::Anthropic).then(|| signature.to_string());
        assert_eq!(
            msg.content[0],
            ContentBlock::Thinking { thinking: "Two plus two is four.".into(), signature: expected_signature },
            "{api:?}"
        );
        assert_eq!(msg.text(), "The answer is 4.");
        let thinking: String = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ThinkingDelta(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(thinking, "Two plus two is four.", "{api:?}");
        assert!(matches!(events[0], StreamEvent::ThinkingDelta(_)), "{api:?}: {events:?}");

        // The signed block goes back with the assistant turn; the twin checks its signature.
        let mut history = req.messages.clone();
        history.push(Message::Assistant(msg));
        history.push(user("thanks"));
        let follow = ModelRequest { messages: history, ..req.clone() };
        assert_eq!(run(&c, &follow).await.0.unwrap_or_else(|e| panic!("{api:?}: {e}")).text(), "You're welcome.");
        if api == Api::Anthropic {
            let sent = &server.requests()[1].body["messages"][1]["content"][0];
            assert_eq!(*sent, json!({"type": "thinking", "thinking": "Two plus two is four.", "signature": signature}));
        }
    }
}

#[tokio::test]
async fn anthropic_requests_thinking_when_a_budget_is_set() {
    let server = ModelServer::start(Api::Anthropic, Some(KEY)).await;
    server.push_with(Reply::text("4"), ReplyExtras::thinking("2+2=4", "sig-1"));
    let c = client(&server, Api::Anthropic, Some(KEY));
    let mut req = request(vec![user("What is 2+2?")]);
    req.max_tokens = 4096;
    req.thinking_budget = Some(2048);
    run(&c, &req).await.0.unwrap();
    assert_eq!(server.requests()[0].body["thinking"], json!({"type": "enabled", "budget_tokens": 2048}));
}

#[tokio::test]
async fn the_anthropic_twin_checks_thinking_parameters_and_signatures() {
    let server = ModelServer::start(Api::Anthropic, Some(KEY)).await;
    server.push(Reply::text("accepted"));
    let http = reqwest::Client::new();
    let post = |body: serde_json::Value| {
        http.post(format!("{}/v1/messages", server.base_url()))
            .header("x-api-key", KEY)
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
    };
    let hi = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        (json!({"type": "enabled", "budget_tokens": 512}), 4096, "greater than or equal to 1024"),
        (
            json!({"type": "enabled", "budget_tokens": 4096}),
            4096,
            "`max_tokens` must be greater than `thinking.budget_tokens`",
        ),
        (json!({"type": "sometimes"}), 4096, "does not match any of the expected tags"),
    ];
    for (thinking, max_tokens, expect) in cases {
        let resp =
            post(json!({"model": "m", "max_tokens": max_tokens, "stream": true, "messages": hi, "thinking": thinking}))
                .await
                .unwrap();
        assert_eq!(resp.status(), 400);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert!(body["error"]["message"].as_str().unwrap().contains(expect), "{body}");
    }
    let unsigned = json!([
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "4"}]},
        {"role": "user", "content": "again"},
    ]);
    let resp = post(json!({"model": "m", "max_tokens": 64, "stream": true, "messages": unsigned})).await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["message"], "messages.1.content.0.thinking.signature: Field required");
    let ok = post(json!({"model": "m", "max_tokens": 4096, "stream": true, "messages": hi,
        "thinking": {"type": "enabled", "budget_tokens": 2048}}))
    .await
    .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(server.pending(), 0);
}

#[tokio::test]
async fn anthropic_bearer_tokens_go_as_authorization_with_the_oauth_flag() {
    let server = ModelServer::start(Api::Anthropic, Some(KEY)).await;
    server.push(Reply::text("signed in"));
    let settings = ProviderSettings {
        id: "anthropic".into(),
        api: ApiKind::AnthropicMessages,
        base_url: server.base_url(),
        api_key: Some(SecretString::new(KEY)),
        bearer: true,
        timeout_secs: 5,
        ..Default::default()
    };
    let c = ModelClient::new(Arc::new(settings), reqwest::Client::new());
    let msg = run(&c, &request(vec![user("hi")])).await.0.unwrap();
    assert_eq!(msg.text(), "signed in");
    let r = &server.requests()[0];
    assert_eq!(r.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    assert!(r.header("x-api-key").is_none());
    assert_eq!(r.header("anthropic-beta"), Some("oauth-2025-04-20"));
}
