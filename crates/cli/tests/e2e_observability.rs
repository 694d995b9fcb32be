//! End-to-end: what the gateway reports about itself — `/metrics` (behind the token, valid
//! Prometheus text), `clawline usage` read while the gateway runs, and a daily budget that
//! stops a turn over the OpenAI-compatible API with OpenAI's quota error.

mod common;

use std::time::Duration;

use clawline_testkit::model_server::{Api, ModelServer, Reply};
use clawline_testkit::prometheus_text;
use common::*;
use serde_json::{Value, json};

async fn scrape(base: &str) -> prometheus_text::Exposition {
    let resp = http().get(format!("{base}/metrics")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    let text = resp.text().await.unwrap();
    prometheus_text::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

async fn complete(base: &str, message: &str) -> reqwest::Response {
    http()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(TOKEN)
        .json(&json!({"model": "clawline", "messages": [{"role": "user", "content": message}]}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_token_parse_and_count_a_turn_and_usage_reads_the_journal() {
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    server.push(Reply::text("Hello there."));
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &server, Api::OpenAi, "");
    let gw = spawn(dir.path()).await;
    let base = gw.base_url.clone();

    let anon = http().get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(anon.status(), 401);
    let wrong = http().get(format!("{base}/metrics")).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status(), 401);

    let before = scrape(&base).await;
    assert_eq!(before.families["clawline_turns_total"].kind, "counter");
    assert!(before.families["clawline_turns_total"].samples.is_empty());
    assert!(before.value("clawline_process_resident_memory_bytes", &[]).unwrap_or(0.0) > 1e6);
    assert_eq!(before.value("clawline_runs_active", &[]), Some(0.0));
    assert_eq!(before.value("clawline_queue_depth", &[("queue", "channel_outbound")]), Some(0.0));
    assert_eq!(before.value("clawline_channel_up", &[("channel", "webchat")]), Some(1.0));

    let resp = complete(&base, "hi").await;
    assert_eq!(resp.status(), 200);
    let after = scrape(&base).await;
    let turn = [("agent", "main"), ("channel", "openai"), ("outcome", "ok")];
    assert_eq!(after.value("clawline_turns_total", &turn), Some(1.0));
    assert_eq!(
        after.value("clawline_model_calls_total", &[("provider", "twin"), ("model", "twin-model"), ("outcome", "ok")]),
        Some(1.0)
    );
    assert!(after.value("clawline_model_tokens_total", &[("kind", "input")]).unwrap_or(0.0) > 0.0);
    assert!(after.value("clawline_model_cost_usd_total", &[("agent", "main")]).unwrap_or(0.0) > 0.0);
    assert_eq!(after.value("clawline_model_latency_seconds_count", &[("model", "twin-model")]), Some(1.0));

    // `clawline usage` reads the journal the running gateway writes.
    let mut report = Value::Null;
    for _ in 0..50 {
        let out = cli(dir.path(), &["usage", "--json", "--by", "channel"]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        report = serde_json::from_str(&stdout(&out)).unwrap();
        if report["total"]["runs"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(report["lines"][0]["key"], "openai", "{report:#}");
    assert_eq!(report["lines"][0]["modelCalls"], 1);
    assert!(report["total"]["costUsd"].as_f64().unwrap_or(0.0) > 0.0);
    let text = cli(dir.path(), &["usage"]).await;
    let shown = stdout(&text);
    assert!(shown.contains("AGENT") && shown.contains("main") && shown.contains("COST"), "{shown}");
    let bad = cli(dir.path(), &["usage", "--by", "planet"]).await;
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("use agent, model, channel or day"), "{}", stderr(&bad));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_answers_openai_clients_with_insufficient_quota() {
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    server.set_fallback(Reply::text("ok"));
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &server, Api::OpenAi, "");
    let config = std::fs::read_to_string(dir.path().join("clawline.json")).unwrap();
    let config = config.replace(
        "agents: { defaults: { model: \"twin/twin-model\" } }",
        "agents: { defaults: { model: \"twin/twin-model\", budget: { dailyTokens: 10 } } }",
    );
    std::fs::write(dir.path().join("clawline.json"), config).unwrap();
    let gw = spawn(dir.path()).await;

    assert_eq!(complete(&gw.base_url, "one").await.status(), 200);
    let refused = complete(&gw.base_url, "two").await;
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["type"], "insufficient_quota", "{body}");
    assert_eq!(body["error"]["code"], "budget");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("its daily limit is 10 (budget.dailyTokens)"), "{message}");
    assert_eq!(server.requests().len(), 1);
    let m = scrape(&gw.base_url).await;
    assert_eq!(m.value("clawline_budget_stops_total", &[("agent", "main"), ("limit", "daily_tokens")]), Some(1.0));
    // Everything else still answers.
    assert_eq!(http().get(format!("{}/readyz", gw.base_url)).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_leaves_a_redacted_report_and_the_next_start_mentions_it() {
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &server, Api::OpenAi, "");
    let state = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        clawline_testkit::gateway::command(&bin(), &state)
            .args(["gateway", "--port", "0"])
            .env("E2E_TOKEN", TOKEN)
            .env("TWIN_KEY", KEY)
            .env("CLAWLINE_TEST_PANIC", "after-ready")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(101), "a panic ends the process as a panic does");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a crash report was written to"), "{err}");

    let reports: Vec<_> = std::fs::read_dir(dir.path().join("crashes"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let report = std::fs::read_to_string(&reports[0]).unwrap();
    assert!(report.starts_with("clawline crash report\nversion: "), "{report:.300}");
    assert!(report.contains("panic: a panic asked for by CLAWLINE_TEST_PANIC"), "{report:.600}");
    assert!(report.contains("config: sha256:"), "{report:.600}");
    assert!(report.contains("\nbacktrace:\n") && report.contains("\nlast log lines:\n"), "{report:.600}");
    assert!(report.contains("gateway ready"), "the last log lines are in it");
    assert!(!report.contains(TOKEN) && !report.contains(KEY), "secrets are redacted");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&reports[0]).unwrap().permissions().mode() & 0o777, 0o600);
    }

    // The next start says so, once.
    let gw = spawn(dir.path()).await;
    let said = gw.lines().join("\n");
    assert!(said.contains("clawline crashed since the last start; the report is"), "{said}");
    drop(gw);
    let gw = spawn(dir.path()).await;
    assert!(!gw.lines().join("\n").contains("crashed since the last start"));
}

/// Traces: a turn over the OpenAI-compatible API that carries a `traceparent` becomes an
/// `invoke_agent` span in the caller's trace, with its model calls and tool call as children,
/// and each model request carries the model call's own `traceparent`.
#[cfg(feature = "otel")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_is_exported_as_a_trace_joined_to_the_callers() {
    use clawline_testkit::model_server::ToolCall;
    use clawline_testkit::otlp_server::OtlpServer;

    let otlp = OtlpServer::start().await;
    otlp.require_header("x-tenant", "t-42");
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    server.push(Reply::Tools { text: None, calls: vec![ToolCall::new("c1", "ls", json!({}))] });
    server.push(Reply::text("Listed."));
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "diagnostics: {{ otel: {{ enabled: true, endpoint: \"{}\", flushIntervalMs: 50, serviceName: \"claw-e2e\",
                               headers: {{ \"x-tenant\": \"t-42\" }} }} }},",
        otlp.endpoint()
    );
    write_config(dir.path(), &server, Api::OpenAi, &extra);
    let gw = spawn(dir.path()).await;

    let caller_trace = "0af7651916cd43dd8448eb211c80319c";
    let caller_span = "b7ad6b7169203331";
    let resp = http()
        .post(format!("{}/v1/chat/completions", gw.base_url))
        .bearer_auth(TOKEN)
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .json(&json!({"model": "clawline", "messages": [{"role": "user", "content": "list the workspace"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let turn = otlp.wait_spans("invoke_agent main", 1, Duration::from_secs(10)).await.remove(0);
    let calls = otlp.wait_spans("chat twin-model", 2, Duration::from_secs(10)).await;
    let tools = otlp.wait_spans("execute_tool ls", 1, Duration::from_secs(10)).await;
    assert!(otlp.rejections().is_empty(), "{:?}", otlp.rejections());

    assert_eq!(turn.trace_id, caller_trace);
    assert_eq!(turn.parent_span_id, caller_span, "the turn continues the caller's span");
    assert_eq!(turn.kind, 2);
    assert_eq!(turn.status_code, 1);
    assert_eq!(turn.attr("gen_ai.operation.name"), Some(&json!("invoke_agent")));
    assert_eq!(turn.attr("clawline.channel"), Some(&json!("openai")));
    assert_eq!(turn.attr("clawline.model_calls"), Some(&json!(2)));
    assert_eq!(turn.attr("clawline.tool_calls"), Some(&json!(1)));
    assert_eq!(turn.resource.get("service.name"), Some(&json!("claw-e2e")));
    for c in calls.iter().chain(&tools) {
        assert_eq!(c.trace_id, caller_trace);
        assert_eq!(c.parent_span_id, turn.span_id, "{} is the turn's child", c.name);
        assert!(c.start_nanos >= turn.start_nanos && c.end_nanos <= turn.end_nanos, "{} inside the turn", c.name);
    }
    assert_eq!(calls[0].kind, 3);
    assert_eq!(calls[0].attr("gen_ai.provider.name"), Some(&json!("twin")));
    assert!(calls[0].attr("gen_ai.usage.input_tokens").and_then(Value::as_i64).unwrap_or(0) > 0);
    assert_eq!(tools[0].attr("gen_ai.tool.name"), Some(&json!("ls")));

    // The model saw each call's own span as its parent.
    let sent: Vec<String> =
        server.requests().iter().filter_map(|r| r.header("traceparent").map(str::to_string)).collect();
    assert_eq!(sent.len(), 2, "{sent:?}");
    let mut ids: Vec<&str> = calls.iter().map(|c| c.span_id.as_str()).collect();
    ids.sort();
    let mut propagated: Vec<&str> = sent.iter().map(|t| &t[36..52]).collect();
    propagated.sort();
    assert!(sent.iter().all(|t| t.starts_with(&format!("00-{caller_trace}-")) && t.ends_with("-01")), "{sent:?}");
    assert_eq!(ids, propagated);

    // The registry is exported too, as cumulative sums and histograms.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let points = otlp.points();
        let turns = points
            .iter()
            .rev()
            .find(|p| p.metric == "clawline_turns" && p.attributes.get("channel") == Some(&json!("openai")));
        let latency = points.iter().rev().find(|p| p.metric == "clawline_model_latency_seconds");
        if let (Some(t), Some(l)) = (turns, latency) {
            assert_eq!((t.kind.as_str(), t.value), ("sum", 1.0));
            assert_eq!(t.attributes.get("outcome"), Some(&json!("ok")));
            assert_eq!((l.kind.as_str(), l.value), ("histogram", 2.0));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no metrics: {points:?} {:?}", otlp.rejections());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Nothing of the conversation is in the spans.
    let all = format!("{:?}", otlp.spans());
    assert!(!all.contains("list the workspace") && !all.contains("Listed."), "content leaked into spans");

    // Over the WebSocket protocol the request frame's `traceparent` does the same.
    server.push(Reply::text("Over the socket."));
    let ws_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let url = gw.base_url.replacen("http://", "ws://", 1);
    let params = clawline_testkit::ws_client::cli_params(TOKEN, &["operator.admin"]);
    let (mut c, res) = clawline_testkit::ws_client::Client::connect(&url, &[], params, None).await.unwrap();
    assert_eq!(res["ok"], true, "{res}");
    let frame = json!({"type": "req", "id": "w1", "method": "agent", "traceparent": format!("00-{ws_trace}-00f067aa0ba902b7-01"),
                       "params": {"message": "hello socket", "agentId": "main", "idempotencyKey": "ws-trace-1"}});
    c.send_text(frame.to_string()).await.unwrap();
    let accepted = c.response("w1", Duration::from_secs(10)).await.unwrap();
    assert_eq!(accepted["ok"], true, "{accepted}");
    let done = c.response("w1", Duration::from_secs(10)).await.unwrap();
    assert_eq!(done["payload"]["status"], "ok", "{done}");
    let turns = otlp.wait_spans("invoke_agent main", 2, Duration::from_secs(10)).await;
    let ws_turn = turns.iter().find(|s| s.trace_id == ws_trace).expect("the socket turn joined the frame's trace");
    assert_eq!(ws_turn.parent_span_id, "00f067aa0ba902b7");
    assert_eq!(ws_turn.attr("clawline.channel"), Some(&json!("ws")));
}

/// With `logs: true`, log records reach the collector and stdout, redacted, and a line logged
/// during a run names the run's span.
#[cfg(feature = "otel")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_records_are_exported_redacted_and_joined_to_the_run() {
    use clawline_testkit::otlp_server::OtlpServer;

    let otlp = OtlpServer::start().await;
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    server.set_fallback(Reply::text("logged"));
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "diagnostics: {{ otel: {{ enabled: true, endpoint: \"{}\", flushIntervalMs: 50, traces: true, metrics: false,
                               logs: true, logsExporter: \"both\" }} }},",
        otlp.endpoint()
    );
    write_config(dir.path(), &server, Api::OpenAi, &extra);
    let gw = spawn(dir.path()).await;
    let trace = "5af7651916cd43dd8448eb211c80319d";
    let resp = http()
        .post(format!("{}/v1/chat/completions", gw.base_url))
        .bearer_auth(TOKEN)
        .header("traceparent", format!("00-{trace}-b7ad6b7169203331-01"))
        .json(&json!({"model": "clawline", "messages": [{"role": "user", "content": "say something"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let turn = otlp.wait_spans("invoke_agent main", 1, Duration::from_secs(10)).await.remove(0);

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let finished = loop {
        let logs = otlp.logs();
        if let Some(r) = logs.iter().find(|r| r.body == "run finished") {
            break r.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no run log: {logs:?} {:?}", otlp.rejections());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(otlp.rejections().is_empty(), "{:?}", otlp.rejections());
    assert_eq!((finished.severity_number, finished.severity_text.as_str()), (9, "INFO"));
    assert_eq!((finished.trace_id.as_str(), finished.span_id.as_str()), (trace, turn.span_id.as_str()));
    assert_eq!(finished.attributes.get("status"), Some(&json!("ok")));
    assert_eq!(finished.attributes.get("code.namespace"), Some(&json!("clawline_agent::run")));
    assert_eq!(finished.resource.get("service.name"), Some(&json!("clawline")));
    let ready = otlp.logs().into_iter().find(|r| r.body == "gateway ready").expect("the start is logged");
    assert!(ready.trace_id.is_empty(), "a line outside any run names no span");

    // stdout carries the same records, one whole OTLP request per line.
    let lines = gw.lines();
    let on_stdout: Vec<Value> = lines.iter().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect();
    let run_line = on_stdout
        .iter()
        .flat_map(|v| v["resourceLogs"][0]["scopeLogs"][0]["logRecords"].as_array().cloned().unwrap_or_default())
        .find(|r| r["body"]["stringValue"] == "run finished")
        .unwrap_or_else(|| panic!("no run record on stdout: {lines:?}"));
    assert_eq!(run_line["traceId"], trace);
    // The exporter never exports its own chatter, and no secret leaves.
    let all = format!("{:?} {on_stdout:?}", otlp.logs());
    assert!(!all.contains(TOKEN) && !all.contains(KEY), "a secret reached the exported logs");
    assert!(!all.contains("say something") && !all.contains("logged\""), "content reached the exported logs");
}

/// A collector that is down costs the gateway nothing: the turn answers, the spans are lost.
#[cfg(feature = "otel")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_refuses_does_not_hold_up_turns() {
    use clawline_testkit::otlp_server::OtlpServer;

    let otlp = OtlpServer::start().await;
    otlp.fail_next(503);
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    server.set_fallback(Reply::text("fine"));
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "diagnostics: {{ otel: {{ enabled: true, endpoint: \"{}\", flushIntervalMs: 50 }} }},",
        otlp.endpoint()
    );
    write_config(dir.path(), &server, Api::OpenAi, &extra);
    let gw = spawn(dir.path()).await;
    let traced = |n: u128, message: &'static str| {
        http()
            .post(format!("{}/v1/chat/completions", gw.base_url))
            .bearer_auth(TOKEN)
            .header("traceparent", format!("00-{:032x}-00f067aa0ba902b7-01", n + 0xabc0))
            .json(&json!({"model": "clawline", "messages": [{"role": "user", "content": message}]}))
            .send()
    };
    let started = std::time::Instant::now();
    assert_eq!(traced(1, "one").await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(traced(2, "two").await.unwrap().status(), 200);
    assert!(started.elapsed() < Duration::from_secs(5), "the refusal did not hold the turns up");
    let second = format!("{:032x}", 2u128 + 0xabc0);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !otlp.spans().iter().any(|s| s.trace_id == second && s.name == "invoke_agent main") {
        assert!(std::time::Instant::now() < deadline, "the second turn's span never arrived: {:?}", otlp.spans());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(otlp.requests() >= 2, "the refused post was not the last");
    assert!(gw.lines().iter().any(|l| l.contains("the collector refused spans")), "{:?}", gw.lines());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_actions_are_in_the_audit_log() {
    use clawline_testkit::model_server::ToolCall;

    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    server.push(Reply::Tools {
        text: None,
        calls: vec![ToolCall::new("c1", "exec", json!({"command": format!("echo audited {KEY}")}))],
    });
    server.push(Reply::text("Ran it."));
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &server, Api::OpenAi, "");
    let gw = spawn(dir.path()).await;

    // The agent's exec run.
    assert_eq!(complete(&gw.base_url, "run echo").await.status(), 200);
    // A refused device approval over the protocol.
    let url = gw.base_url.replacen("http://", "ws://", 1);
    let params = clawline_testkit::ws_client::cli_params(TOKEN, &["operator.admin"]);
    let (mut c, res) = clawline_testkit::ws_client::Client::connect(&url, &[], params, None).await.unwrap();
    assert_eq!(res["ok"], true, "{res}");
    let refused = c.request("device.pair.approve", json!({"requestId": "no-such-request"})).await.unwrap();
    assert_eq!(refused["ok"], false, "{refused}");
    // A CLI command that stores a secret (its value never reaches the log).
    let out = cli_env(
        dir.path(),
        &["secrets", "set", "tg-bot", "--from-env", "SECRET_VALUE"],
        &[("SECRET_VALUE", "s3cr3t-value-xyz")],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));

    let mut rows = Value::Null;
    for _ in 0..50 {
        let out = cli(dir.path(), &["audit", "--json"]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        rows = serde_json::from_str(&stdout(&out)).unwrap();
        if rows.as_array().map_or(0, Vec::len) >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = rows.as_array().unwrap().clone();
    let find = |action: &str| {
        rows.iter().find(|r| r["action"] == action).cloned().unwrap_or_else(|| panic!("{action}: {rows:#?}"))
    };
    let exec = find("tool.exec");
    assert_eq!(exec["actor"], "agent:main");
    assert_eq!(exec["target"], "echo audited [redacted]", "the provider key in the command is scrubbed");
    assert_eq!(exec["outcome"], "ok");
    assert!(rows.iter().any(|r| r["action"] == "tool.exec" && r["outcome"] == "started"), "a row before it ran");
    let approve = find("device.pair.approve");
    assert_eq!(approve["target"], "requestId=no-such-request");
    assert!(approve["actor"].as_str().unwrap_or_default().starts_with("ws:cli"), "{approve}");
    assert_ne!(approve["outcome"], "ok");
    let secret = find("secrets.set");
    assert_eq!(
        (secret["actor"].as_str(), secret["target"].as_str(), secret["outcome"].as_str()),
        (Some("cli"), Some("tg-bot"), Some("ok"))
    );
    let all = serde_json::to_string(&rows).unwrap();
    assert!(!all.contains("s3cr3t-value-xyz") && !all.contains(TOKEN));
    let text = stdout(&cli(dir.path(), &["audit"]).await);
    assert!(text.contains("tool.exec") && text.contains("agent:main echo audited [redacted] (run "), "{text}");
}
