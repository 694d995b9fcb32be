//! The Ollama native client against the testkit's Ollama twin, over real HTTP on loopback.

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
use clawline_testkit::ollama_server::{OllamaModel, OllamaReply, OllamaServer, default_models};
use serde_json::json;

const KEY: &str = "ollama-key-0123456789";
/// A 1×1 PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

fn settings(base_url: String, key: Option<&str>, timeout_secs: u64) -> ProviderSettings {
    ProviderSettings {
        id: "local-ollama".into(),
        api: ApiKind::Ollama,
        base_url,
        api_key: key.map(SecretString::new),
        api_key_source: key.map(|_| "test".to_string()),
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

fn client(server: &OllamaServer, key: Option<&str>) -> ModelClient {
    client_with(settings(server.base_url(), key, 5), 2)
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

fn tool_result(id: &str, name: &str, text: &str) -> Message {
    Message::ToolResult(ToolResultMessage {
        tool_call_id: id.into(),
        tool_name: name.into(),
        content: vec![ContentBlock::Text { text: text.into() }],
        is_error: false,
        timestamp: 0,
    })
}

#[tokio::test]
async fn streams_text_and_sends_the_documented_body() {
    let server = OllamaServer::start(None).await;
    server.push(Reply::text("Hello there, streaming world."));
    // A base URL copied from the OpenAI-compatible surface is cut back to the root.
    let c = client_with(settings(format!("{}/v1", server.base_url()), None, 5), 2);
    let (r, events) = run(&c, &request(vec![user("hi")])).await;
    let msg = r.unwrap();
    assert_eq!(msg.text(), "Hello there, streaming world.");
    assert_eq!(msg.stop_reason, StopReason::Stop);
    assert_eq!((msg.api.as_str(), msg.provider.as_str(), msg.model.as_str()), ("ollama", "local-ollama", "twin-model"));
    assert!(msg.usage.input > 0 && msg.usage.output > 0, "{:?}", msg.usage);
    assert_eq!(msg.usage.total_tokens, msg.usage.input + msg.usage.output);
    let deltas: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::TextDelta(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deltas.len(), 3, "{events:?}");
    assert_eq!(deltas.concat(), "Hello there, streaming world.");

    let rec = &server.requests()[0];
    assert_eq!(rec.header("authorization"), None, "a local Ollama gets no auth header");
    assert_eq!(rec.body["model"], "twin-model");
    assert_eq!(rec.body["stream"], true);
    assert_eq!(rec.body["options"]["num_predict"], 256);
    assert_eq!(rec.body["messages"][0], json!({"role": "system", "content": "You are terse."}));
    assert_eq!(rec.body["messages"][1], json!({"role": "user", "content": "hi"}));
    assert_eq!(rec.body["tools"][0]["type"], "function");
    assert_eq!(rec.body["tools"][0]["function"]["name"], "ls");
    assert!(rec.body.get("think").is_none());
}

#[tokio::test]
async fn tool_calls_round_trip_with_generated_and_server_ids() {
    let server = OllamaServer::start(None).await;
    server.push(Reply::Tools {
        text: Some("Let me look.".into()),
        calls: vec![
            ToolCall::new("", "ls", json!({"path": "."})),
            ToolCall::new("call_srv7", "ls", json!({"path": "src"})),
        ],
    });
    server.push(Reply::text("There are two folders."));
    let c = client(&server, None);
    let mut history = vec![user("what is here?")];
    let (r, events) = run(&c, &request(history.clone())).await;
    let first = r.unwrap();
    assert_eq!(first.stop_reason, StopReason::ToolUse);
    assert_eq!(first.text(), "Let me look.");
    let calls: Vec<_> = first.tool_calls().map(|(id, n, a)| (id.to_string(), n.to_string(), a.clone())).collect();
    assert_eq!(
        calls,
        vec![
            ("call_0".to_string(), "ls".to_string(), json!({"path": "."})),
            ("call_srv7".to_string(), "ls".to_string(), json!({"path": "src"})),
        ]
    );
    assert!(events.contains(&StreamEvent::ToolCallStarted { id: "call_0".into(), name: "ls".into() }));
    assert!(events.contains(&StreamEvent::ToolCallStarted { id: "call_srv7".into(), name: "ls".into() }));

    history.push(Message::Assistant(first));
    history.push(tool_result("call_0", "ls", "a/"));
    history.push(tool_result("call_srv7", "ls", "main.rs"));
    let (r, _) = run(&c, &request(history)).await;
    assert_eq!(r.unwrap_or_else(|e| panic!("the twin refused the follow-up: {e}")).text(), "There are two folders.");
    let second = &server.requests()[1].body;
    assert_eq!(second["messages"][2]["role"], "assistant");
    assert_eq!(
        second["messages"][2]["tool_calls"][1]["function"],
        json!({"index": 1, "name": "ls", "arguments": {"path": "src"}})
    );
    assert_eq!(second["messages"][3], json!({"role": "tool", "tool_name": "ls", "content": "a/"}));
    assert_eq!(second["messages"][4], json!({"role": "tool", "tool_name": "ls", "content": "main.rs"}));
}

#[tokio::test]
async fn the_twin_refuses_unanswered_tool_calls_and_invalid_arguments_are_kept() {
    let server = OllamaServer::start(None).await;
    let c = client(&server, None);
    let orphan = Message::Assistant(AssistantMessage {
        content: vec![ContentBlock::ToolCall {
            id: "call_x".into(),
            name: "grep".into(),
            arguments: json!({}),
            thought_signature: None,
        }],
        api: "ollama".into(),
        provider: "local-ollama".into(),
        model: "twin-model".into(),
        usage: Usage::default(),
        stop_reason: StopReason::ToolUse,
        timestamp: 0,
        response_id: None,
        error_message: None,
    });
    let err = run(&c, &request(vec![user("hi"), orphan, user("again")])).await.0.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::BadRequest, Some(400)), "{err}");
    assert!(err.message.contains("grep"), "{err}");
    assert_eq!(server.requests().len(), 1, "bad requests are not retried");

    let err = run(&c, &request(vec![user("hi"), tool_result("call_y", "ls", "stray")])).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadRequest);
    assert!(err.message.contains("does not answer a tool call"), "{err}");

    // A model that wrote arguments that are not an object: they are kept verbatim.
    server.push(Reply::Tools { text: None, calls: vec![ToolCall::raw("", "ls", "{\"path\": ")] });
    let msg = run(&c, &request(vec![user("go")])).await.0.unwrap();
    assert_eq!(msg.tool_calls().next(), Some(("call_0", "ls", &json!("{\"path\": "))));
}

#[tokio::test]
async fn image_input_is_sent_as_bare_base64() {
    let server = OllamaServer::start(None).await;
    server.push(Reply::text("A single red pixel."));
    let c = client(&server, None);
    let image_message = Message::User(UserMessage {
        content: UserContent::Blocks(vec![
            ContentBlock::Text { text: "What is in this picture?".into() },
            ContentBlock::Image { data: PNG.into(), mime_type: "image/png".into() },
        ]),
        timestamp: 0,
        idempotency_key: None,
    });
    let msg = run(&c, &request(vec![image_message])).await.0.unwrap();
    assert_eq!(msg.text(), "A single red pixel.");
    let body = &server.requests()[0].body;
    assert_eq!(body["messages"][1], json!({"role": "user", "content": "What is in this picture?", "images": [PNG]}));

    // The twin checks the images are base64, as Ollama does when it decodes them.
    server.push(Reply::text("unused"));
    let broken = Message::User(UserMessage {
        content: UserContent::Blocks(vec![ContentBlock::Image {
            data: format!("data:image/png;base64,{PNG}"),
            mime_type: "image/png".into(),
        }]),
        timestamp: 0,
        idempotency_key: None,
    });
    let err = run(&c, &request(vec![broken])).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadRequest);
    assert!(err.message.contains("base64"), "{err}");
}

#[tokio::test]
async fn usage_is_counted_and_priced() {
    let server = OllamaServer::start(None).await;
    server.push(OllamaReply::counted("Counted.", 1_000, 500));
    let c = client(&server, None);
    let mut req = request(vec![user("hi")]);
    req.cost = ModelCost { input: 2.0, output: 8.0, cache_read: 0.5, cache_write: 2.5 };
    let msg = run(&c, &req).await.0.unwrap();
    let u = &msg.usage;
    // Ollama reports no cache tokens: everything is input.
    assert_eq!((u.input, u.output, u.cache_read, u.cache_write, u.total_tokens), (1_000, 500, 0, 0, 1_500));
    assert!((u.cost.input - 0.002).abs() < 1e-12, "{:?}", u.cost);
    assert!((u.cost.output - 0.004).abs() < 1e-12, "{:?}", u.cost);
    assert_eq!((u.cost.cache_read, u.cost.cache_write), (0.0, 0.0));
    assert!((u.cost.total - 0.006).abs() < 1e-12, "{:?}", u.cost);

    // A fully cached prompt: Ollama leaves `prompt_eval_count` out.
    server.push(OllamaReply::Answer {
        thinking: vec![],
        text: vec!["again".into()],
        calls: vec![],
        done_reason: "stop".into(),
        prompt_eval_count: None,
        eval_count: 3,
    });
    let msg = run(&c, &req).await.0.unwrap();
    assert_eq!((msg.usage.input, msg.usage.output, msg.usage.total_tokens), (0, 3, 3));
}

#[tokio::test]
async fn thinking_is_requested_and_streamed() {
    let server = OllamaServer::start(None).await;
    server.push(OllamaReply::thinking("First, count the letters.", "There are three."));
    let c = client(&server, None);
    let mut req = request(vec![user("How many r in strawberry?")]);
    req.thinking_budget = Some(4096);
    let (r, events) = run(&c, &req).await;
    let msg = r.unwrap();
    assert_eq!(server.requests()[0].body["think"], true);
    assert_eq!(
        msg.content[0],
        ContentBlock::Thinking { thinking: "First, count the letters.".into(), signature: None }
    );
    assert_eq!(msg.text(), "There are three.");
    let thinking: String = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ThinkingDelta(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(thinking, "First, count the letters.");
    assert!(matches!(events[0], StreamEvent::ThinkingDelta(_)), "thinking streams before the answer: {events:?}");

    // The thinking goes back with the assistant turn.
    server.push(Reply::text("ok"));
    let mut history = req.messages.clone();
    history.push(Message::Assistant(msg));
    history.push(user("thanks"));
    let req2 = ModelRequest { messages: history, ..req.clone() };
    run(&c, &req2).await.0.unwrap();
    assert_eq!(server.requests()[1].body["messages"][2]["thinking"], "First, count the letters.");

    // A model without the capability refuses `think`, as Ollama does.
    server.push(Reply::text("unused"));
    let req3 = ModelRequest { model: "plain-model".into(), tools: vec![], ..req.clone() };
    let err = run(&c, &req3).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadRequest);
    assert!(err.message.contains("does not support thinking"), "{err}");
}

#[tokio::test]
async fn recorded_fixtures_replay() {
    let server = OllamaServer::start(None).await;
    for name in ["text_hello", "tool_call_ls", "thinking", "malformed_chunk", "stream_error"] {
        server.push(OllamaReply::fixture(name));
    }
    let c = client(&server, None);
    let req = request(vec![user("hi")]);
    let hello = run(&c, &req).await.0.unwrap();
    assert_eq!(hello.text(), "Hello from the fixture.");
    assert_eq!((hello.usage.input, hello.usage.output), (42, 5));

    let tool = run(&c, &req).await.0.unwrap();
    assert_eq!(tool.tool_calls().next(), Some(("call_0", "ls", &json!({"path": "."}))));
    assert_eq!(tool.stop_reason, StopReason::ToolUse);
    assert!(
        matches!(&tool.content[0], ContentBlock::Thinking { thinking, .. } if thinking == "The user wants the folder listed.")
    );

    let think = run(&c, &req).await.0.unwrap();
    assert_eq!(think.text(), "391");
    assert!(
        matches!(&think.content[0], ContentBlock::Thinking { thinking, .. } if thinking == "17 × 23 = 17 × 20 + 17 × 3 = 391.")
    );

    let err = run(&c, &req).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Protocol, "{err}");
    assert!(err.message.contains("\"content\":\"tial"), "the malformed line is quoted: {err}");

    let before = server.requests().len();
    let (r, events) = run(&c, &req).await;
    let err = r.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Server);
    assert_eq!(err.message, "an error was encountered while running the model");
    assert!(!events.is_empty());
    assert_eq!(server.requests().len(), before + 1, "no retry once output was streamed");
}

#[tokio::test]
async fn wrong_or_missing_key_is_an_auth_error_and_is_not_retried() {
    let server = OllamaServer::start(Some(KEY)).await;
    server.push(Reply::text("hosted hello"));
    let ok = client(&server, Some(KEY));
    assert_eq!(run(&ok, &request(vec![user("hi")])).await.0.unwrap().text(), "hosted hello");
    assert_eq!(server.requests()[0].header("authorization"), Some(format!("Bearer {KEY}").as_str()));

    let c = client(&server, Some("ollama-wrong-key-000"));
    let err = run(&c, &request(vec![user("hi")])).await.0.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::Auth, Some(401)), "{err}");
    assert_eq!(err.message, "HTTP 401: unauthorized");
    assert!(!err.message.contains("ollama-wrong-key-000"));
    assert_eq!(server.requests().len(), 2, "auth errors must not be retried");

    let c = client(&server, None);
    let err = run(&c, &request(vec![user("hi")])).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Auth);
    assert!(err.message.contains("no API key is configured"), "{err}");
}

#[tokio::test]
async fn rate_limits_are_retried_after_retry_after_then_reported() {
    let server = OllamaServer::start(None).await;
    let limited = Reply::Error {
        status: 429,
        kind: String::new(),
        message: "you (user) have reached your hourly usage limit, please upgrade to continue".into(),
        retry_after: Some("0".into()),
    };
    server.push(limited.clone());
    server.push(Reply::text("made it"));
    let c = client(&server, None);
    assert_eq!(run(&c, &request(vec![user("hi")])).await.0.unwrap().text(), "made it");
    assert_eq!(server.requests().len(), 2);

    for _ in 0..3 {
        server.push(limited.clone());
    }
    let err = run(&c, &request(vec![user("hi")])).await.0.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::RateLimited, Some(429)));
    assert_eq!(err.retry_after, Some(Duration::ZERO));
    assert!(err.message.contains("hourly usage limit") && err.message.contains("after 3 attempts"), "{err}");
    assert_eq!(server.requests().len(), 5);
}

#[tokio::test]
async fn server_errors_overload_context_and_missing_models_are_classified() {
    let server = OllamaServer::start(None).await;
    let c = client(&server, None);
    let req = request(vec![user("hi")]);
    for _ in 0..3 {
        server.push(Reply::error(500, "", "llama runner process has terminated: signal: killed"));
    }
    let err = run(&c, &req).await.0.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::Server, Some(500)));
    assert!(err.message.contains("llama runner process has terminated"), "{err}");
    assert_eq!(server.requests().len(), 3);

    server.push(Reply::error(503, "", "server busy, please try again.  maximum pending requests exceeded"));
    server.push(Reply::text("recovered"));
    assert_eq!(run(&c, &req).await.0.unwrap().text(), "recovered");

    let before = server.requests().len();
    server.push(Reply::error(400, "", "the input length exceeds the context length"));
    let err = run(&c, &req).await.0.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::ContextLength, Some(400)), "{err}");
    assert!(err.hint().is_some());
    assert_eq!(server.requests().len(), before + 1, "context errors are not retried");

    let missing = ModelRequest { model: "llama9".into(), ..req.clone() };
    let err = run(&c, &missing).await.0.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::BadRequest, Some(404)));
    assert_eq!(
        err.message,
        "HTTP 404: model \"llama9\" not found, try pulling it first (run `ollama pull llama9` on the Ollama host)"
    );

    let no_tools = ModelRequest { model: "plain-model".into(), ..req.clone() };
    let err = run(&c, &no_tools).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadRequest);
    assert!(err.message.contains("does not support tools"), "{err}");

    // An empty queue fails loudly.
    let err = run(&client_with(settings(server.base_url(), None, 5), 0), &req).await.0.unwrap_err();
    assert!(err.message.contains("testkit: no scripted reply left"), "{err}");
}

#[tokio::test]
async fn broken_streams_are_protocol_errors() {
    let server = OllamaServer::start(None).await;
    let c = client(&server, None);
    let req = request(vec![user("hi")]);

    server.push(Reply::Truncated("Half an ans".into()));
    let (r, events) = run(&c, &req).await;
    let err = r.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Protocol, "{err}");
    assert!(err.message.contains("done"), "{err}");
    assert_eq!(events, vec![StreamEvent::TextDelta("Half an ans".into())]);

    server.push(Reply::Raw("this is not json\n".into()));
    let err = run(&c, &req).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Protocol);
    assert!(err.message.contains("this is not json"), "{err}");

    // A last line cut off at the end of the body.
    server.push(Reply::Raw(
        "{\"message\":{\"role\":\"assistant\",\"content\":\"a\"},\"done\":false}\n{\"message\":{\"ro".into(),
    ));
    let err = run(&c, &req).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Protocol, "{err}");

    // A complete final line without its newline is fine.
    server.push(Reply::Raw(
        "{\"message\":{\"role\":\"assistant\",\"content\":\"ok\"},\"done\":false}\r\n{\"done\":true,\"done_reason\":\"stop\",\"eval_count\":1}".into(),
    ));
    assert_eq!(run(&c, &req).await.0.unwrap().text(), "ok");

    // One line larger than the bound.
    let huge = format!(
        "{{\"message\":{{\"role\":\"assistant\",\"content\":\"{}\"}},\"done\":false}}\n",
        "x".repeat(1_100_000)
    );
    server.push(Reply::Raw(huge));
    let err = run(&c, &req).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Protocol);
    assert!(err.message.contains("longer than"), "{err}");

    server.push(OllamaReply::length("Cut off here"));
    let msg = run(&c, &req).await.0.unwrap();
    assert_eq!((msg.stop_reason, msg.text().as_str()), (StopReason::Length, "Cut off here"));
}

#[tokio::test]
async fn dropping_the_call_cancels_a_slow_stream_and_silence_times_out() {
    let server = OllamaServer::start(None).await;
    server.push(Reply::slow("tick ", 100, Duration::from_millis(100)));
    let c = client(&server, None);
    let req = request(vec![user("hi")]);
    let mut n = 0;
    let r = tokio::time::timeout(Duration::from_millis(400), c.stream(&req, &mut |_| n += 1)).await;
    assert!(r.is_err(), "the slow stream should still be running");
    assert!(n < 100);

    server.push(Reply::slow("tock ", 2, Duration::from_millis(1_500)));
    let impatient = client_with(settings(server.base_url(), None, 1), 0);
    let err = run(&impatient, &req).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
}

#[tokio::test]
async fn discovery_reads_tags_and_show() {
    let mut models = default_models();
    models.push(OllamaModel::new("all-minilm:latest", &["embedding"]).family("bert").context(512));
    models.push(OllamaModel::new("flaky:7b", &["completion", "vision"]).failing_show());
    let server = OllamaServer::start_with_models(Some(KEY), models).await;
    let c = client(&server, Some(KEY));
    let found = c.discover().await.unwrap().expect("ollama has discovery");
    let ids: Vec<&str> = found.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, vec!["twin-model:latest", "plain-model:latest", "flaky:7b"], "embedding models are left out");
    assert_eq!(
        (found[0].context_window, found[0].input.clone()),
        (Some(32768), vec!["text".to_string(), "image".to_string()])
    );
    assert_eq!((found[1].context_window, found[1].input.clone()), (Some(8192), vec!["text".to_string()]));
    assert_eq!((found[2].context_window, found[2].input.clone()), (None, vec!["text".to_string()]), "unknown details");
    assert!(found.iter().all(|m| m.streaming));
    let calls = server.discovery_requests();
    assert_eq!(calls[0].0, "/api/tags");
    assert_eq!(calls.iter().filter(|(p, _)| p == "/api/show").count(), 4);
    assert!(calls.iter().all(|(_, r)| r.header("authorization") == Some(format!("Bearer {KEY}").as_str())));
    let shown: Vec<&str> = calls.iter().filter_map(|(_, r)| r.body["model"].as_str()).collect();
    assert!(shown.contains(&"flaky:7b"));

    let err = client(&server, Some("nope-nope-nope")).discover().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Auth);

    // Bounded: at most 50 models are asked about.
    let many: Vec<OllamaModel> = (0..60).map(|i| OllamaModel::new(&format!("m{i}:latest"), &["completion"])).collect();
    server.set_models(many);
    let before = server.discovery_requests().len();
    let found = c.discover().await.unwrap().unwrap();
    assert_eq!(found.len(), 50);
    assert_eq!(server.discovery_requests().len() - before, 51);
}
