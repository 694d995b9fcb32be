//! The Gemini client (`google-generative-ai`) against the testkit Gemini twin, over real HTTP on
//! loopback: streaming, tool-call round trips with thought signatures, images, usage and cost,
//! thinking, every classified failure, recorded fixtures and cancellation.

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
use clawline_testkit::gemini_server::{
    FOREIGN_SIGNATURE, GeminiAnswer, GeminiCall, GeminiReply, GeminiServer, GeminiUsage,
};
use clawline_testkit::model_server::{Reply, ToolCall};
use serde_json::json;

const KEY: &str = "AIzaSyTest-0123456789abcdef";
/// A 1×1 PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
const MODEL: &str = "gemini-2.5-flash";

fn settings(server: &GeminiServer, key: Option<&str>, timeout_secs: u64) -> ProviderSettings {
    ProviderSettings {
        id: "google".into(),
        api: ApiKind::GoogleGenerativeAi,
        base_url: server.base_url(),
        api_key: key.map(SecretString::new),
        api_key_source: Some("test".into()),
        headers: BTreeMap::from([("x-extra".to_string(), "1".to_string())]),
        timeout_secs,
        ..Default::default()
    }
}

fn client(server: &GeminiServer, key: Option<&str>) -> ModelClient {
    ModelClient::new(Arc::new(settings(server, key, 5)), reqwest::Client::new()).with_retry(RetryPolicy {
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
        model: MODEL.into(),
        system: "You are terse.".into(),
        messages,
        tools: vec![ToolSpec {
            name: "ls".into(),
            description: "List a directory.".into(),
            parameters: json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"],
                "additionalProperties": false}),
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

fn result(id: &str, name: &str, text: &str, is_error: bool) -> Message {
    Message::ToolResult(ToolResultMessage {
        tool_call_id: id.into(),
        tool_name: name.into(),
        content: vec![ContentBlock::Text { text: text.into() }],
        is_error,
        timestamp: 0,
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
async fn streams_text_to_the_documented_endpoint_with_the_key_in_a_header() {
    let server = GeminiServer::start(Some(KEY)).await;
    server.push(Reply::text("Hello there, streaming world."));
    let c = client(&server, Some(KEY));
    let (r, events) = run(&c, &request(vec![user("hi")])).await;
    let msg = r.unwrap();
    assert_eq!(msg.text(), "Hello there, streaming world.");
    assert_eq!(msg.stop_reason, StopReason::Stop);
    assert_eq!(
        (msg.api.as_str(), msg.provider.as_str(), msg.model.as_str()),
        ("google-generative-ai", "google", MODEL)
    );
    assert_eq!(msg.response_id.as_deref(), Some("testkit-1"));
    assert!(msg.usage.input > 0 && msg.usage.output > 0, "{:?}", msg.usage);
    assert_eq!(msg.usage.total_tokens, msg.usage.input + msg.usage.output);
    assert_eq!(texts(&events).len(), 3, "text must arrive in pieces: {events:?}");

    assert_eq!(server.urls(), vec![format!("/v1beta/models/{MODEL}:streamGenerateContent?alt=sse")]);
    let rec = &server.requests()[0];
    assert_eq!(rec.header("x-goog-api-key"), Some(KEY));
    assert_eq!(rec.header("x-extra"), Some("1"));
    assert!(!server.urls()[0].contains(KEY));
    assert_eq!(rec.body["systemInstruction"], json!({"parts": [{"text": "You are terse."}]}));
    assert_eq!(rec.body["contents"], json!([{"role": "user", "parts": [{"text": "hi"}]}]));
    assert_eq!(rec.body["generationConfig"], json!({"maxOutputTokens": 256}));
    let decl = &rec.body["tools"][0]["functionDeclarations"][0];
    assert_eq!(decl["name"], "ls");
    assert_eq!(decl["parametersJsonSchema"]["additionalProperties"], false);
}

#[tokio::test]
async fn a_model_given_with_its_models_prefix_is_not_doubled() {
    let server = GeminiServer::start(Some(KEY)).await;
    server.push(Reply::text("ok"));
    let c = client(&server, Some(KEY));
    let req = ModelRequest { model: "models/gemini-3-pro-preview".into(), ..request(vec![user("hi")]) };
    assert_eq!(run(&c, &req).await.0.unwrap().text(), "ok");
    assert_eq!(server.urls(), vec!["/v1beta/models/gemini-3-pro-preview:streamGenerateContent?alt=sse".to_string()]);
}

#[tokio::test]
async fn tool_calls_round_trip_with_their_thought_signature() {
    let server = GeminiServer::start(Some(KEY)).await;
    server.push(Reply::Tools {
        text: Some("Let me look.".into()),
        calls: vec![
            ToolCall::new("ignored", "ls", json!({"path": "."})),
            ToolCall::new("x", "ls", json!({"path": "src"})),
        ],
    });
    server.push(Reply::text("There are two folders."));
    let c = client(&server, Some(KEY));
    let mut history = vec![user("what is here?")];
    let (r, events) = run(&c, &request(history.clone())).await;
    let first = r.unwrap();
    assert_eq!(first.stop_reason, StopReason::ToolUse);
    assert_eq!(first.text(), "Let me look.");
    let calls: Vec<(String, String, serde_json::Value, Option<String>)> = first
        .content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::ToolCall { id, name, arguments, thought_signature } => {
                Some((id.clone(), name.clone(), arguments.clone(), thought_signature.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(calls.len(), 2);
    // Gemini sends no ids: they are made up, unique, and announced as the calls arrive.
    assert!(calls[0].0.starts_with("gemini-call-") && calls[0].0 != calls[1].0, "{calls:?}");
    assert_eq!((calls[0].2.clone(), calls[1].2.clone()), (json!({"path": "."}), json!({"path": "src"})));
    assert!(calls[0].3.is_some(), "the first call of a step is signed");
    assert_eq!(calls[1].3, None);
    let started: Vec<&StreamEvent> =
        events.iter().filter(|e| matches!(e, StreamEvent::ToolCallStarted { .. })).collect();
    assert_eq!(
        started,
        vec![
            &StreamEvent::ToolCallStarted { id: calls[0].0.clone(), name: "ls".into() },
            &StreamEvent::ToolCallStarted { id: calls[1].0.clone(), name: "ls".into() },
        ]
    );

    history.push(Message::Assistant(first));
    history.push(result(&calls[0].0, "ls", "a.txt", false));
    history.push(result(&calls[1].0, "ls", "no such directory", true));
    let (r, _) = run(&c, &request(history.clone())).await;
    assert_eq!(r.unwrap().text(), "There are two folders.");
    let sent = &server.requests()[1].body["contents"];
    assert_eq!(sent[1]["role"], "model");
    assert_eq!(sent[1]["parts"][1]["thoughtSignature"], json!(calls[0].3));
    assert!(sent[1]["parts"][1]["functionCall"].get("id").is_none(), "made-up ids are not sent");
    assert_eq!(
        sent[2],
        json!({"role": "user", "parts": [
            {"functionResponse": {"name": "ls", "response": {"output": "a.txt"}}},
            {"functionResponse": {"name": "ls", "response": {"error": "no such directory"}}},
        ]})
    );

    // The same history without the signature is refused, as Gemini 3 refuses it.
    server.push(Reply::text("unused"));
    let mut stripped = history.clone();
    if let Message::Assistant(a) = &mut stripped[1] {
        for b in &mut a.content {
            if let ContentBlock::ToolCall { thought_signature, .. } = b {
                *thought_signature = None;
            }
        }
    }
    let err = run(&c, &request(stripped)).await.0.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::BadRequest, Some(400)), "{err}");
    assert!(err.message.contains("missing a thought_signature"), "{err}");
    assert_eq!(server.pending(), 1);
}

#[tokio::test]
async fn call_ids_gemini_sends_are_kept_and_echoed() {
    let server = GeminiServer::start(Some(KEY)).await;
    server
        .push(GeminiAnswer::calls(vec![GeminiCall::new("ls", json!({"path": "/tmp"})).id("fc-91").signed("c2lnLTkx")]));
    server.push(Reply::text("Done."));
    let c = client(&server, Some(KEY));
    let (r, events) = run(&c, &request(vec![user("list /tmp")])).await;
    let first = r.unwrap();
    assert_eq!(first.tool_calls().next(), Some(("fc-91", "ls", &json!({"path": "/tmp"}))));
    assert!(events.contains(&StreamEvent::ToolCallStarted { id: "fc-91".into(), name: "ls".into() }));
    let history = vec![user("list /tmp"), Message::Assistant(first), result("fc-91", "ls", "x", false)];
    assert_eq!(run(&c, &request(history)).await.0.unwrap().text(), "Done.");
    let sent = &server.requests()[1].body["contents"];
    assert_eq!(
        sent[1]["parts"][0],
        json!({"functionCall": {"name": "ls", "args": {"path": "/tmp"}, "id": "fc-91"}, "thoughtSignature": "c2lnLTkx"})
    );
    assert_eq!(sent[2]["parts"][0]["functionResponse"]["id"], "fc-91");
}

fn foreign_call(api: &str, id: &str) -> Message {
    Message::Assistant(AssistantMessage {
        content: vec![ContentBlock::ToolCall {
            id: id.into(),
            name: "ls".into(),
            arguments: json!({}),
            thought_signature: None,
        }],
        api: api.into(),
        provider: "other".into(),
        model: "m".into(),
        usage: Usage::default(),
        stop_reason: StopReason::ToolUse,
        timestamp: 0,
        response_id: None,
        error_message: None,
    })
}

#[tokio::test]
async fn history_from_another_api_is_accepted_and_unanswered_calls_are_refused() {
    let server = GeminiServer::start(Some(KEY)).await;
    server.push(Reply::text("Carrying on."));
    let c = client(&server, Some(KEY));
    let history =
        vec![user("hi"), foreign_call("openai-completions", "call_abc"), result("call_abc", "ls", "x", false)];
    assert_eq!(run(&c, &request(history)).await.0.unwrap().text(), "Carrying on.");
    let part = &server.requests()[0].body["contents"][1]["parts"][0];
    assert_eq!(part["thoughtSignature"], FOREIGN_SIGNATURE);
    assert!(part["functionCall"].get("id").is_none());

    let err = run(&c, &request(vec![user("hi"), foreign_call("openai-completions", "call_x"), user("again")]))
        .await
        .0
        .unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::BadRequest, Some(400)), "{err}");
    assert!(err.message.contains("function response turn") && err.message.contains("`ls`"), "{err}");
    assert_eq!(server.requests().len(), 2, "a refused request is not retried");
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
async fn images_go_as_inline_data_and_bad_ones_are_refused() {
    let server = GeminiServer::start(Some(KEY)).await;
    server.push(Reply::text("A single pixel."));
    let c = client(&server, Some(KEY));
    let msg = run(&c, &request(vec![image_message(PNG, "image/png")])).await.0.unwrap();
    assert_eq!(msg.text(), "A single pixel.");
    assert_eq!(
        server.requests()[0].body["contents"][0]["parts"],
        json!([{"text": "What is in this picture?"}, {"inlineData": {"mimeType": "image/png", "data": PNG}}])
    );
    for (data, mime, expect) in [
        ("aGVsbG8gd29ybGQ=", "image/png", "Unable to process input image"),
        ("not base64!!", "image/png", "Base64 decoding failed"),
        (PNG, "image/bmp", "Unsupported MIME type: image/bmp"),
        (PNG, "image/jpeg", "Unable to process input image"),
    ] {
        let err = run(&c, &request(vec![image_message(data, mime)])).await.0.unwrap_err();
        assert_eq!((err.kind, err.status), (ErrorKind::BadRequest, Some(400)), "{err}");
        assert!(err.message.contains(expect) && err.message.contains("INVALID_ARGUMENT"), "{err}");
    }
    assert_eq!(server.pending(), 0);
}

#[tokio::test]
async fn usage_counts_cached_and_thinking_tokens_and_is_priced() {
    let server = GeminiServer::start(Some(KEY)).await;
    let usage = GeminiUsage { prompt: 2_000, cached: 800, candidates: 200, thoughts: 100 };
    server.push(GeminiAnswer::text("Cached answer.").with_usage(usage));
    let c = client(&server, Some(KEY));
    let mut req = request(vec![user("hi")]);
    req.cost = ModelCost { input: 3.0, output: 15.0, cache_read: 0.3, cache_write: 3.75 };
    let u = run(&c, &req).await.0.unwrap().usage;
    assert_eq!((u.input, u.cache_read, u.cache_write, u.output, u.total_tokens), (1_200, 800, 0, 300, 2_300));
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    assert!(
        close(u.cost.input, 0.0036) && close(u.cost.cache_read, 0.00024) && close(u.cost.output, 0.0045),
        "{:?}",
        u.cost
    );
    assert!(close(u.cost.cache_write, 0.0) && close(u.cost.total, 0.0036 + 0.00024 + 0.0045), "{:?}", u.cost);
}

#[tokio::test]
async fn thinking_is_requested_streamed_signed_and_sent_back() {
    let server = GeminiServer::start(Some(KEY)).await;
    let signature = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYd";
    let usage = GeminiUsage { prompt: 40, cached: 0, candidates: 6, thoughts: 25 };
    server.push(GeminiAnswer::thinking("Two plus two is four.", signature, "The answer is 4.").with_usage(usage));
    server.push(Reply::text("You're welcome."));
    let c = client(&server, Some(KEY));
    let mut req = request(vec![user("What is 2+2?")]);
    req.thinking_budget = Some(1024);
    let (r, events) = run(&c, &req).await;
    let msg = r.unwrap();
    assert_eq!(
        server.requests()[0].body["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 1024, "includeThoughts": true})
    );
    assert_eq!(
        msg.content[0],
        ContentBlock::Thinking { thinking: "Two plus two is four.".into(), signature: Some(signature.into()) }
    );
    assert_eq!(msg.text(), "The answer is 4.");
    assert_eq!((msg.usage.input, msg.usage.output), (40, 31), "thought tokens count as output");
    let thinking: String = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ThinkingDelta(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(thinking, "Two plus two is four.");
    assert!(matches!(events[0], StreamEvent::ThinkingDelta(_)), "{events:?}");

    let mut history = req.messages.clone();
    history.push(Message::Assistant(msg));
    history.push(user("thanks"));
    let follow = ModelRequest { messages: history, ..req.clone() };
    assert_eq!(run(&c, &follow).await.0.unwrap().text(), "You're welcome.");
    assert_eq!(
        server.requests()[1].body["contents"][1]["parts"],
        json!([{"text": "Two plus two is four.", "thought": true, "thoughtSignature": signature}, {"text": "The answer is 4."}])
    );
}

#[tokio::test]
async fn without_a_budget_no_thoughts_are_asked_for_or_shown() {
    let server = GeminiServer::start(Some(KEY)).await;
    server.push(GeminiAnswer::thinking("hidden reasoning", "c2ln", "4"));
    let c = client(&server, Some(KEY));
    let (r, events) = run(&c, &request(vec![user("2+2?")])).await;
    let msg = r.unwrap();
    assert!(server.requests()[0].body["generationConfig"].get("thinkingConfig").is_none());
    assert!(!events.iter().any(|e| matches!(e, StreamEvent::ThinkingDelta(_))), "{events:?}");
    // The signature rides on the first text part; it is kept for the next turn.
    assert_eq!(
        msg.content,
        vec![
            ContentBlock::Text { text: "4".into() },
            ContentBlock::Thinking { thinking: String::new(), signature: Some("c2ln".into()) }
        ]
    );
}

#[tokio::test]
async fn wrong_missing_and_rejected_keys_are_auth_errors_that_are_not_retried() {
    let server = GeminiServer::start(Some(KEY)).await;
    let wrong = "AIzaSyWRONG-key-000000";
    let c = client(&server, Some(wrong));
    let err = run(&c, &request(vec![user("hi")])).await.0.unwrap_err();
    // Gemini answers a wrong key with 400 INVALID_ARGUMENT / API_KEY_INVALID.
    assert_eq!((err.kind, err.status), (ErrorKind::Auth, Some(400)), "{err}");
    assert!(err.message.contains("API key not valid"), "{err}");
    assert!(!err.message.contains(wrong), "key leaked: {}", err.message);
    assert_eq!(server.requests().len(), 1, "auth errors are not retried");

    let c = client(&server, None);
    let err = run(&c, &request(vec![user("hi")])).await.0.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::Auth, Some(403)), "{err}");
    assert!(err.message.contains("unregistered callers") && err.message.contains("no API key is configured"), "{err}");

    let c = client(&server, Some(KEY));
    server.push(Reply::error(
        401,
        "UNAUTHENTICATED",
        &format!("Request had invalid authentication credentials: {KEY}"),
    ));
    let err = run(&c, &request(vec![user("hi")])).await.0.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::Auth, Some(401)), "{err}");
    assert!(!err.message.contains(KEY) && err.message.contains("[redacted]"), "{err}");
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn rate_limits_wait_for_retry_info_then_are_reported() {
    let server = GeminiServer::start(Some(KEY)).await;
    let limited = Reply::Error {
        status: 429,
        kind: "RESOURCE_EXHAUSTED".into(),
        message: "You exceeded your current quota, please check your plan and billing details.".into(),
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
    assert_eq!(err.retry_after, Some(Duration::ZERO));
    assert!(err.message.contains("after 3 attempts") && err.message.contains("RESOURCE_EXHAUSTED"), "{err}");
    assert_eq!(server.requests().len(), 5);

    // A drained prepaid balance will not come back by waiting.
    server.push(Reply::error(
        429,
        "RESOURCE_EXHAUSTED",
        "Your prepayment credits are depleted. Please go to AI Studio.",
    ));
    server.push(Reply::text("must not be used"));
    let err = run(&c, &request(vec![user("hi")])).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Billing, "{err}");
    assert_eq!((server.requests().len(), server.pending()), (6, 1));
}

#[tokio::test]
async fn server_errors_overload_and_timeouts_are_classified_and_retried() {
    let server = GeminiServer::start(Some(KEY)).await;
    let c = client(&server, Some(KEY));
    let req = request(vec![user("hi")]);
    for _ in 0..3 {
        server.push(Reply::error(500, "INTERNAL", "An internal error has occurred."));
    }
    let err = run(&c, &req).await.0.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::Server, Some(500)));
    assert_eq!(server.requests().len(), 3);

    server.push(Reply::error(503, "UNAVAILABLE", "The model is overloaded. Please try again later."));
    server.push(Reply::text("recovered"));
    assert_eq!(run(&c, &req).await.0.unwrap().text(), "recovered");

    for _ in 0..3 {
        server.push(Reply::error(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."));
    }
    assert_eq!(run(&c, &req).await.0.unwrap_err().kind, ErrorKind::Timeout);

    // An empty queue: the twin's own 500, retried, then reported.
    let err = run(&c, &req).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Server);
    assert!(err.message.contains("testkit: no scripted reply left"), "{err}");
}

#[tokio::test]
async fn context_length_errors_are_classified_and_not_retried() {
    let server = GeminiServer::start(Some(KEY)).await;
    let c = client(&server, Some(KEY));
    let message = "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).";
    server.push(Reply::error(400, "INVALID_ARGUMENT", message));
    server.push(Reply::text("must not be used"));
    let err = run(&c, &request(vec![user("a very long prompt")])).await.0.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::ContextLength, Some(400)), "{err}");
    assert!(err.message.contains(message), "{err}");
    assert!(err.hint().is_some_and(|h| h.contains("too long")));
    assert_eq!((server.requests().len(), server.pending()), (1, 1));
}

#[tokio::test]
async fn broken_streams_are_protocol_errors_and_late_errors_are_classified() {
    let server = GeminiServer::start(Some(KEY)).await;
    let c = client(&server, Some(KEY));
    let req = request(vec![user("hi")]);

    server.push(Reply::Truncated("Half an ans".into()));
    let (r, events) = run(&c, &req).await;
    let err = r.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Protocol, "{err}");
    assert!(err.message.contains("no finishReason"), "{err}");
    assert_eq!(texts(&events), vec!["Half an ans"]);

    server.push(Reply::Raw("data: this is not json\r\n\r\n".into()));
    let err = run(&c, &req).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Protocol);
    assert!(err.message.contains("this is not json"), "{err}");

    // Google sends a failure after the stream started as a bare JSON object.
    let before = server.requests().len();
    server.push(Reply::StreamError {
        text: "partial".into(),
        kind: "UNAVAILABLE".into(),
        message: "The model is overloaded. Please try again later.".into(),
    });
    let (r, events) = run(&c, &req).await;
    let err = r.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Overloaded, "{err}");
    assert!(err.message.contains("The model is overloaded"), "{err}");
    assert_eq!(texts(&events), vec!["partial"]);
    assert_eq!(server.requests().len(), before + 1, "no retry once output was streamed");

    // The same object as an SSE event.
    server.push(Reply::Raw(
        "data: {\"error\": {\"code\": 500, \"message\": \"Internal error encountered.\", \"status\": \"INTERNAL\"}}\r\n\r\n"
            .into(),
    ));
    server.push(Reply::text("second try"));
    assert_eq!(run(&c, &req).await.0.unwrap().text(), "second try");
}

#[tokio::test]
async fn refusals_and_limits_become_stop_reasons() {
    let server = GeminiServer::start(Some(KEY)).await;
    let c = client(&server, Some(KEY));
    let req = request(vec![user("hi")]);

    server.push(GeminiAnswer::text("This is where it").finish("MAX_TOKENS"));
    let msg = run(&c, &req).await.0.unwrap();
    assert_eq!((msg.stop_reason, msg.text().as_str()), (StopReason::Length, "This is where it"));

    server.push(GeminiAnswer::text("").finish("SAFETY"));
    let msg = run(&c, &req).await.0.unwrap();
    assert_eq!(msg.stop_reason, StopReason::Error);
    assert_eq!(msg.error_message.as_deref(), Some("Gemini blocked the answer (finishReason SAFETY)"));

    server.push(GeminiReply::PromptBlocked("PROHIBITED_CONTENT".into()));
    let err = run(&c, &req).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadRequest, "{err}");
    assert!(err.message.contains("blockReason PROHIBITED_CONTENT"), "{err}");
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn recorded_fixtures_replay() {
    let server = GeminiServer::start(Some(KEY)).await;
    let c = client(&server, Some(KEY));
    let req = request(vec![user("hi")]);

    server.push(GeminiReply::fixture("text_hello"));
    let msg = run(&c, &req).await.0.unwrap();
    assert_eq!(msg.text(), "Hello from the fixture.");
    assert_eq!((msg.usage.input, msg.usage.output, msg.usage.total_tokens), (9, 31, 40));
    assert_eq!(msg.response_id.as_deref(), Some("mTe4aJvXDtqZ1dkPz7KQ8AQ"));

    server.push(GeminiReply::fixture("tool_call_ls"));
    let tool = run(&c, &req).await.0.unwrap();
    assert_eq!(tool.stop_reason, StopReason::ToolUse);
    let (id, name, args) = tool.tool_calls().next().map(|(i, n, a)| (i.to_string(), n.to_string(), a.clone())).unwrap();
    assert_eq!((name.as_str(), args), ("ls", json!({"path": "."})));
    // The recorded signature goes back with the call and the twin accepts it.
    server.push(Reply::text("One file."));
    let history = vec![user("hi"), Message::Assistant(tool), result(&id, "ls", "a.txt", false)];
    assert_eq!(run(&c, &request(history)).await.0.unwrap().text(), "One file.");

    server.push(GeminiReply::fixture("thinking"));
    let msg = run(&c, &req).await.0.unwrap();
    assert!(
        matches!(&msg.content[0], ContentBlock::Thinking { thinking, signature: None } if thinking.contains("2+2"))
    );
    assert_eq!(msg.text(), "2 + 2 = 4.");
    assert!(matches!(&msg.content[2], ContentBlock::Thinking { thinking, signature: Some(_) } if thinking.is_empty()));
    server.push(Reply::text("Sure."));
    let history = vec![user("hi"), Message::Assistant(msg), user("thanks")];
    assert_eq!(run(&c, &request(history)).await.0.unwrap().text(), "Sure.");
    let parts = server.requests().last().unwrap().body["contents"][1]["parts"].clone();
    assert_eq!(parts.as_array().unwrap().len(), 1, "an unsigned thought summary is not sent back: {parts}");
    assert_eq!(parts[0]["text"], "2 + 2 = 4.");
    assert!(parts[0]["thoughtSignature"].is_string());

    server.push(GeminiReply::fixture("malformed_chunk"));
    let err = run(&c, &req).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Protocol, "{err}");
    assert!(err.message.contains("usageMeta"), "{err}");

    let before = server.requests().len();
    server.push(GeminiReply::fixture("stream_error"));
    let (r, events) = run(&c, &req).await;
    assert_eq!(r.unwrap_err().kind, ErrorKind::Overloaded);
    assert!(matches!(events[0], StreamEvent::ThinkingDelta(_)));
    assert_eq!(server.requests().len(), before + 1);
}

#[tokio::test]
async fn a_silent_stream_times_out() {
    let server = GeminiServer::start(Some(KEY)).await;
    server.push(Reply::slow("tick ", 2, Duration::from_millis(1_500)));
    let c = ModelClient::new(Arc::new(settings(&server, Some(KEY), 1)), reqwest::Client::new())
        .with_retry(RetryPolicy { max_retries: 0, ..RetryPolicy::default() });
    let err = run(&c, &request(vec![user("hi")])).await.0.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
    assert!(err.message.contains("no data from the model for 1 s"), "{err}");
}

#[tokio::test]
async fn dropping_the_call_cancels_a_slow_stream() {
    let server = GeminiServer::start(Some(KEY)).await;
    server.push(Reply::slow("tick ", 100, Duration::from_millis(100)));
    let c = client(&server, Some(KEY));
    let req = request(vec![user("hi")]);
    let mut n = 0;
    let r = tokio::time::timeout(Duration::from_millis(450), c.stream(&req, &mut |_| n += 1)).await;
    assert!(r.is_err(), "the slow stream should still be running");
    assert!((1..10).contains(&n), "some output arrived before the drop: {n}");
}

#[tokio::test]
async fn the_twin_checks_the_wire_format_itself() {
    let server = GeminiServer::start(Some(KEY)).await;
    server.push(Reply::text("accepted"));
    let http = reqwest::Client::new();
    let url = format!("{}/models/{MODEL}:streamGenerateContent?alt=sse", server.base_url());
    let post = |url: String, body: serde_json::Value| http.post(url).header("x-goog-api-key", KEY).json(&body).send();
    let hi = json!([{"role": "user", "parts": [{"text": "hi"}]}]);
    let cases = [
        (json!({"contents": []}), "contents is not specified"),
        (
            json!({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}),
            "Please use a valid role: user, model.",
        ),
        (json!({"contents": [{"role": "user", "parts": []}]}), "contents.parts must not be empty"),
        (json!({"contents": hi, "temperature": 1}), "Unknown name \"temperature\""),
        (
            json!({"contents": hi, "tools": [{"functionDeclarations": [{"name": "ls",
                "parameters": {"type": "object", "additionalProperties": false}}]}]}),
            "Unknown name \"additionalProperties\"",
        ),
        (
            json!({"contents": hi, "tools": [{"functionDeclarations": [{"name": "ls",
                "parameters": {"type": "object"}, "parametersJsonSchema": {"type": "object"}}]}]}),
            "mutually exclusive",
        ),
        (
            json!({"contents": [{"role": "user", "parts": [{"inlineData": {"data": PNG}}]}]}),
            "mime_type is not specified",
        ),
        (
            json!({"contents": [{"role": "user", "parts": [{"text": "x"}]},
                {"role": "model", "parts": [{"functionCall": {"name": "ls", "args": {}}, "thoughtSignature": "Zm9yZ2Vk"}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "ls", "response": {"output": "x"}}}]}]}),
            "Corrupted thought signature.",
        ),
        (
            json!({"contents": [{"role": "user", "parts": [{"text": "x"}]},
                {"role": "model", "parts": [{"functionCall": {"name": "ls", "args": {}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "cat", "response": {"output": "x"}}}]}]}),
            "does not answer any function call",
        ),
    ];
    for (body, expect) in cases {
        let resp = post(url.clone(), body.clone()).await.unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
        assert!(v["error"]["message"].as_str().unwrap().contains(expect), "{expect}: {v}");
    }
    let no_sse = post(format!("{}/models/{MODEL}:streamGenerateContent", server.base_url()), json!({"contents": hi}));
    assert_eq!(no_sse.await.unwrap().status(), 400);
    let key_in_url = post(format!("{url}&key={KEY}"), json!({"contents": hi}));
    assert_eq!(key_in_url.await.unwrap().status(), 400);
    let doubled = post(
        format!("{}/models/models/{MODEL}:streamGenerateContent?alt=sse", server.base_url()),
        json!({"contents": hi}),
    );
    assert_eq!(doubled.await.unwrap().status(), 404);
    let ok = post(url, json!({"contents": hi})).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["content-type"], "text/event-stream");
    let text = ok.text().await.unwrap();
    assert!(text.starts_with("data: {\"candidates\"") && text.contains("\"finishReason\":\"STOP\""), "{text}");
    assert_eq!(server.pending(), 0);
}
