//! The run loop end to end against the model twin (both wire APIs where it matters).

mod common;

use std::time::Duration;

use clawline_agent::{RunEvent, TurnRequest, TurnStart};
use clawline_core::message::{Message, StopReason};
use clawline_core::transcript::Record;
use clawline_store::{RunStatus, TurnStart as StoreTurnStart};
use clawline_testkit::model_server::{Api, ModelServer, Reply, ToolCall};
use common::{KEY, final_event, runtime, turn};
use serde_json::json;

fn kinds(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| match r {
            Record::Session(_) => "session".to_string(),
            Record::Message(m) => match &m.message {
                Message::User(_) => "user".into(),
                Message::Assistant(a) if a.tool_calls().next().is_some() => "assistant(toolCall)".into(),
                Message::Assistant(_) => "assistant".into(),
                Message::ToolResult(t) => format!("toolResult{}", if t.is_error { "!" } else { "" }),
            },
            Record::CustomMessage(c) => format!("custom:{}", c.custom_type),
            Record::Custom(c) => format!("custom_data:{}", c.custom_type),
        })
        .collect()
}

#[tokio::test]
async fn tool_loop_writes_reads_and_answers() {
    for api in [Api::OpenAi, Api::Anthropic] {
        let dir = tempfile::tempdir().unwrap();
        let server = ModelServer::start(api, Some(KEY)).await;
        server.push(Reply::tool("c1", "write", json!({"path": "notes/todo.md", "content": "buy milk\n"})));
        server.push(Reply::Tools {
            text: Some("Checking.".into()),
            calls: vec![ToolCall::new("c2", "read", json!({"path": "notes/todo.md"}))],
        });
        server.push(Reply::text("Your list says: buy milk."));
        let rt = runtime(dir.path(), &server, api, "").await;
        let (handle, events) = turn(&rt, None, "remember to buy milk").await;
        assert_eq!(handle.session_key, "agent:main:main");

        let RunEvent::Done { text, stop_reason, usage, model_calls, .. } = final_event(&events) else {
            panic!("{api:?}: {events:?}")
        };
        assert_eq!(text, "Checking.\n\nYour list says: buy milk.");
        assert_eq!(stop_reason, "stop");
        assert_eq!(*model_calls, 3);
        assert!(usage.output > 0 && usage.cost.total > 0.0);
        assert!(matches!(&events[0], RunEvent::Started { model, .. } if model == "twin/twin-model"));
        assert!(
            events.iter().any(|e| matches!(e, RunEvent::ToolEnd { name, is_error: false, output, .. } if name == "read" && output.contains("buy milk"))),
            "{api:?}: {events:#?}"
        );

        let ws = rt.config().default_agent().workspace.canonicalize().unwrap();
        assert_eq!(std::fs::read_to_string(ws.join("notes/todo.md")).unwrap(), "buy milk\n");

        let (row, records) = rt.store().session_with_transcript("agent:main:main").await.unwrap().unwrap();
        assert_eq!(
            kinds(&records),
            ["session", "user", "assistant(toolCall)", "toolResult", "assistant(toolCall)", "toolResult", "assistant"]
        );
        let last = records.last().and_then(Record::message).unwrap();
        let Message::Assistant(a) = last else { panic!() };
        assert_eq!(a.stop_reason, StopReason::Stop);
        assert!(a.usage.total_tokens > 0);
        assert_eq!(row.message_count, 6);
        assert!(row.total_tokens > 0);
        assert_eq!(rt.store().get_run(&handle.run_id).await.unwrap().unwrap().status, RunStatus::Ok);

        // The model was shown the tool results (the twin would have refused otherwise), and the
        // system prompt carries the workspace files.
        let reqs = server.requests();
        assert_eq!(reqs.len(), 3);
        let body = reqs[0].body.to_string();
        assert!(body.contains("AGENTS.md") && body.contains("exec runs one program without a shell"), "{body:.400}");
    }
}

#[tokio::test]
async fn bad_tool_calls_become_error_results_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    server.push(Reply::Tools {
        text: None,
        calls: vec![ToolCall::raw("c1", "write", "{\"path\": \"x.txt\", \"content\": ")],
    });
    server.push(Reply::tool("c2", "exec", json!({"command": "rm -rf notes"})));
    server.push(Reply::tool("c3", "exec", json!({"command": "cat /etc/passwd"})));
    server.push(Reply::tool("c4", "read", json!({"path": "../../etc/passwd"})));
    server.push(Reply::tool("c5", "launch_missiles", json!({})));
    server.push(Reply::tool("c6", "exec", json!({"command": "echo hello world"})));
    server.push(Reply::text("done"));
    let rt = runtime(dir.path(), &server, Api::OpenAi, "").await;
    let (_, events) = turn(&rt, Some("tools"), "try things").await;
    assert!(matches!(final_event(&events), RunEvent::Done { text, .. } if text == "done"), "{events:?}");
    let ends: Vec<(String, bool, String)> = events
        .iter()
        .filter_map(|e| match e {
            RunEvent::ToolEnd { name, is_error, output, .. } => Some((name.clone(), *is_error, output.clone())),
            _ => None,
        })
        .collect();
    assert!(ends[0].1 && ends[0].2.contains("not valid JSON"), "{:?}", ends[0]);
    assert!(ends[1].1 && ends[1].2.contains("not in the exec allow-list"), "{:?}", ends[1]);
    assert!(ends[2].1 && ends[2].2.contains("outside the workspace"), "{:?}", ends[2]);
    assert!(ends[3].1 && ends[3].2.contains("outside the workspace"), "{:?}", ends[3]);
    assert!(ends[4].1 && ends[4].2.contains("not available"), "{:?}", ends[4]);
    assert!(!ends[5].1 && ends[5].2.contains("exit code 0") && ends[5].2.contains("hello world"), "{:?}", ends[5]);
    // The invalid arguments are kept verbatim in the transcript.
    let (_, records) = rt.store().session_with_transcript("agent:main:tools").await.unwrap().unwrap();
    let first_call = records.iter().filter_map(Record::message).find_map(|m| match m {
        Message::Assistant(a) => a.tool_calls().next().map(|(_, _, args)| args.clone()),
        _ => None,
    });
    assert_eq!(first_call, Some(json!("{\"path\": \"x.txt\", \"content\": ")));
}

#[tokio::test]
async fn max_turns_stops_a_tool_loop() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::Anthropic, Some(KEY)).await;
    server.set_fallback(Reply::tool("again", "ls", json!({})));
    let rt = runtime(dir.path(), &server, Api::Anthropic, "maxTurns: 3").await;
    let (handle, events) = turn(&rt, None, "loop forever").await;
    let RunEvent::Error { kind, message, .. } = final_event(&events) else { panic!("{events:?}") };
    assert_eq!(kind, "max_turns");
    assert!(message.contains("3 model calls"));
    assert_eq!(server.requests().len(), 3);
    let (_, records) = rt.store().session_with_transcript(&handle.session_key).await.unwrap().unwrap();
    assert_eq!(kinds(&records).last().unwrap(), "custom:max-turns");
    assert_eq!(rt.store().get_run(&handle.run_id).await.unwrap().unwrap().status, RunStatus::Error);
    // The next turn is accepted by the (strict) twin: nothing was left unanswered.
    server.push(Reply::text("ok"));
    let (_, events) = turn(&rt, None, "stop now").await;
    assert!(matches!(final_event(&events), RunEvent::Done { .. }), "{events:?}");
}

#[tokio::test]
async fn provider_failure_is_reported_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    server.push(Reply::StreamError { text: "Half".into(), kind: "server_error".into(), message: "boom".into() });
    let rt = runtime(dir.path(), &server, Api::OpenAi, "").await;
    let (handle, events) = turn(&rt, None, "hi").await;
    let RunEvent::Error { kind, message, text, .. } = final_event(&events) else { panic!("{events:?}") };
    assert_eq!(kind, "server");
    assert!(message.contains("boom"));
    assert_eq!(text, "Half");
    let (_, records) = rt.store().session_with_transcript(&handle.session_key).await.unwrap().unwrap();
    assert_eq!(kinds(&records), ["session", "user", "assistant", "custom:run-failed"]);
    let Some(Message::Assistant(partial)) = records[2].message() else { panic!() };
    assert_eq!(partial.stop_reason, StopReason::Error);
    assert_eq!(partial.text(), "Half");

    // Wrong key in config: the provider's 401 is reported as an auth error with a hint.
    let dir2 = tempfile::tempdir().unwrap();
    let other = ModelServer::start(Api::OpenAi, Some("sk-some-other-key")).await;
    let rt2 = runtime(dir2.path(), &other, Api::OpenAi, "").await;
    let (_, events) = turn(&rt2, None, "hi").await;
    let RunEvent::Error { kind, hint, .. } = final_event(&events) else { panic!() };
    assert_eq!(kind, "auth");
    assert!(hint.as_deref().unwrap_or_default().contains("API key"));
}

#[tokio::test]
async fn idempotency_key_prevents_a_second_run() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    server.push(Reply::text("once"));
    let rt = runtime(dir.path(), &server, Api::OpenAi, "").await;
    let req = TurnRequest { message: "hi".into(), idempotency_key: Some("k-1".into()), ..Default::default() };
    let TurnStart::Started(mut h) = rt.start_turn(req.clone()).await.unwrap() else { panic!() };
    while h.events.recv().await.is_some() {}
    let TurnStart::Duplicate(run) = rt.start_turn(req).await.unwrap() else {
        panic!("second turn must be a duplicate")
    };
    assert_eq!(run.run_id, h.run_id);
    assert_eq!(run.result.unwrap()["text"], "once");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn one_run_per_session_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    // The first answer streams long enough that everything below happens while it runs.
    server.push(Reply::slow("a", 60, Duration::from_millis(50)));
    server.set_fallback(Reply::Echo);
    let rt = runtime(dir.path(), &server, Api::OpenAi, "").await;
    let (r1, r2) = (rt.clone(), rt.clone());
    let first = tokio::spawn(async move { turn(&r1, None, "first").await });
    // Wait (by state, not by a guessed delay) until the first run holds its lane and its request
    // has taken the slow reply, so the side session's request gets the echo.
    while !rt.lanes().is_busy("agent:main:main") || server.requests().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let second = tokio::spawn(async move { turn(&r2, None, "second").await });
    // A different session is not held up by the busy one: it finishes while the first still runs.
    let (_, other) = turn(&rt, Some("side"), "other").await;
    assert!(matches!(final_event(&other), RunEvent::Done { text, .. } if text == "echo: other"));
    assert!(rt.lanes().is_busy("agent:main:main"), "the side session waited for the busy one");
    assert!(!second.is_finished(), "the second turn on the busy session must queue");
    let (_, e1) = first.await.unwrap();
    let (_, e2) = second.await.unwrap();
    assert!(matches!(final_event(&e1), RunEvent::Done { text, .. } if text == &"a".repeat(60)));
    assert!(matches!(final_event(&e2), RunEvent::Done { text, .. } if text == "echo: second"));
    let (_, records) = rt.store().session_with_transcript("agent:main:main").await.unwrap().unwrap();
    assert_eq!(kinds(&records), ["session", "user", "assistant", "user", "assistant"]);
    assert_eq!(rt.lanes().active(), 0);
}

#[tokio::test]
async fn recovery_answers_tool_calls_a_crash_left_open() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::Anthropic, Some(KEY)).await;
    let rt = runtime(dir.path(), &server, Api::Anthropic, "").await;
    // What a crash mid-tool leaves behind: a running run, a tool call, no result.
    rt.store()
        .begin_turn(StoreTurnStart {
            run_id: "crashed".into(),
            session_key: "agent:main:main".into(),
            agent_id: "main".into(),
            cwd: "/w".into(),
            idempotency_key: None,
            preamble: vec![],
            user: serde_json::from_value(json!({"role": "user", "content": "run it", "timestamp": 1})).unwrap(),
        })
        .await
        .unwrap();
    let call: Message = serde_json::from_value(json!({
        "role": "assistant", "content": [{"type": "toolCall", "id": "toolu_9", "name": "exec", "arguments": {"command": "sleep 100"}}],
        "api": "anthropic-messages", "provider": "twin", "model": "twin-model",
        "usage": {"input": 1, "output": 1, "totalTokens": 2}, "stopReason": "toolUse", "timestamp": 2
    }))
    .unwrap();
    rt.store()
        .append("agent:main:main", vec![clawline_core::transcript::NewRecord::Message(call)], None)
        .await
        .unwrap();

    assert_eq!(rt.recover().await.unwrap(), 1);
    assert_eq!(rt.store().get_run("crashed").await.unwrap().unwrap().status, RunStatus::Interrupted);
    let (_, records) = rt.store().session_with_transcript("agent:main:main").await.unwrap().unwrap();
    assert_eq!(kinds(&records), ["session", "user", "assistant(toolCall)", "custom:run-interrupted", "toolResult!"]);

    server.push(Reply::text("recovered"));
    let (_, events) = turn(&rt, None, "what happened?").await;
    assert!(matches!(final_event(&events), RunEvent::Done { text, .. } if text == "recovered"), "{events:?}");
}

#[tokio::test]
async fn timeout_stops_the_run_and_keeps_what_was_said() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    server.push(Reply::slow("word ", 50, Duration::from_millis(100)));
    let rt = runtime(dir.path(), &server, Api::OpenAi, "timeoutSeconds: 1").await;
    let (handle, events) = turn(&rt, None, "talk slowly").await;
    let RunEvent::Error { kind, text, .. } = final_event(&events) else { panic!("{events:?}") };
    assert_eq!(kind, "timeout");
    assert!(text.starts_with("word"));
    assert_eq!(rt.store().get_run(&handle.run_id).await.unwrap().unwrap().status, RunStatus::Aborted);
    let (_, records) = rt.store().session_with_transcript(&handle.session_key).await.unwrap().unwrap();
    assert_eq!(kinds(&records), ["session", "user", "assistant", "custom:run-failed"]);
}

#[tokio::test]
async fn refuses_up_front_what_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    let rt = runtime(dir.path(), &server, Api::OpenAi, "").await;
    let refuse = |req: TurnRequest| {
        let rt = rt.clone();
        async move { rt.start_turn(req).await.err().map(|e| e.code()) }
    };
    assert_eq!(refuse(TurnRequest { message: "  ".into(), ..Default::default() }).await, Some("empty_message"));
    assert_eq!(
        refuse(TurnRequest { message: "x".into(), agent_id: Some("ghost".into()), ..Default::default() }).await,
        Some("unknown_agent")
    );
    assert_eq!(
        refuse(TurnRequest { message: "x".into(), session_key: Some("cron:x".into()), ..Default::default() }).await,
        Some("invalid_session_key")
    );
    assert!(rt.store().list_sessions(None, 10).await.unwrap().is_empty(), "nothing stored for refused turns");
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn a_one_line_turn_stays_under_the_request_budget() {
    // DESIGN.md budget: the request body for a one-line turn with the default tools ≤ 8 KB.
    for api in [Api::OpenAi, Api::Anthropic] {
        let dir = tempfile::tempdir().unwrap();
        let server = ModelServer::start(api, Some(KEY)).await;
        server.push(Reply::text("hi"));
        let rt = runtime(dir.path(), &server, api, "").await;
        turn(&rt, None, "What's the weather like?").await;
        let size = server.requests()[0].size;
        println!("{api:?}: one-line turn request body = {size} bytes");
        assert!(size <= 8 * 1024, "{api:?}: {size} bytes");
    }
}

#[tokio::test]
async fn a_caller_that_goes_away_never_leaves_a_turn_half_started() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    server.set_fallback(Reply::Echo);
    let rt = runtime(dir.path(), &server, Api::OpenAi, "").await;
    for i in 0..20 {
        let req = TurnRequest { session_key: Some(format!("gone-{i}")), message: "hello".into(), ..Default::default() };
        // Give up at a different moment each time.
        let _ = tokio::time::timeout(Duration::from_micros(i * 150), rt.start_turn(req)).await;
    }
    // Runs that started go on without their callers; wait until every lane is free again.
    tokio::time::sleep(Duration::from_millis(100)).await;
    while rt.lanes().active() > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in 0..20 {
        let key = format!("agent:main:gone-{i}");
        if let Some((_, records)) = rt.store().session_with_transcript(&key).await.unwrap() {
            // Stored means answered: the run went on without its caller.
            assert_eq!(kinds(&records), ["session", "user", "assistant"], "{key}");
        }
    }
    let running: i64 = rt
        .store()
        .call(|c| Ok(c.query_row("SELECT count(*) FROM runs WHERE status = 'running'", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert_eq!(running, 0);
    assert_eq!(rt.lanes().active(), 0);
}

#[tokio::test]
async fn a_timeout_during_a_tool_does_not_save_text_twice() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    server.push(Reply::Tools {
        text: Some("Working on it.".into()),
        calls: vec![ToolCall::new("c1", "exec", json!({"command": "sleep 5"}))],
    });
    let rt = runtime(dir.path(), &server, Api::OpenAi, "timeoutSeconds: 1").await;
    // `sleep` is not allowed by default: allow it for this runtime.
    let mut config = rt.config().clone();
    config.tools.exec.safe_bins.push("sleep".into());
    let store = rt.store().clone();
    let rt = clawline_agent::Runtime::new(std::sync::Arc::new(config), store).unwrap();
    let (handle, events) = turn(&rt, None, "do the slow thing").await;
    assert!(matches!(final_event(&events), RunEvent::Error { kind, .. } if kind == "timeout"), "{events:?}");
    let (_, records) = rt.store().session_with_transcript(&handle.session_key).await.unwrap().unwrap();
    assert_eq!(kinds(&records), ["session", "user", "assistant(toolCall)", "custom:run-failed"]);
}
