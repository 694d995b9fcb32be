//! End to end: the real binary, a model twin, a streamed OpenAI-compatible turn with a tool
//! call, the transcript, a restart, `clawline sessions list`, and the next turn.

mod common;

use clawline_testkit::model_server::{Api, ModelServer, Reply, ToolCall};
use clawline_testkit::sse_client;
use common::*;
use serde_json::json;

#[tokio::test]
async fn streamed_tool_turn_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    write_config(dir.path(), &server, Api::OpenAi, "");
    server.push(Reply::Tools {
        text: Some("Let me check.".into()),
        calls: vec![ToolCall::new("call_1", "write", json!({"path": "hello.txt", "content": "hi from the tool\n"}))],
    });
    server.push(Reply::text("I wrote hello.txt for you."));

    let mut gw = spawn(dir.path()).await;
    let resp = http()
        .post(format!("{}/v1/chat/completions", gw.base_url))
        .bearer_auth(TOKEN)
        .header("x-clawline-session-key", "e2e")
        .json(&json!({
            "model": "clawline/default",
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "write a greeting file"}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let events = sse_client::read_all(resp).await;
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let chunks: Vec<serde_json::Value> =
        events.iter().filter(|e| e.data != "[DONE]").map(|e| serde_json::from_str(&e.data).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "Let me check.\n\nI wrote hello.txt for you.");
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "stop"));
    let usage = chunks.iter().find(|c| c["usage"].is_object()).expect("a usage chunk");
    assert!(usage["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));

    let ws = dir.path().join("workspace");
    assert_eq!(std::fs::read_to_string(ws.join("hello.txt")).unwrap(), "hi from the tool\n");

    let recs = records(&gw.base_url, "e2e").await;
    assert_eq!(shape(&recs), ["session", "user", "assistant(toolCall)", "toolResult", "assistant"]);
    let final_msg = &recs[4]["message"];
    assert_eq!(final_msg["stopReason"], "stop");
    assert!(final_msg["usage"]["totalTokens"].as_u64().unwrap() > 0);
    assert!(recs[2]["message"]["usage"]["totalTokens"].as_u64().unwrap() > 0);
    assert_eq!(recs[3]["message"]["toolCallId"], "call_1");
    assert_eq!(recs[3]["parentId"], recs[2]["id"]);

    // Restart: the session is still there and the next turn sees the history.
    assert_eq!(gw.terminate(), Some(0), "clean exit on SIGTERM");
    let listed = cli(dir.path(), &["sessions", "list"]).await;
    assert!(listed.status.success(), "{}", stderr(&listed));
    let out = stdout(&listed);
    assert!(out.contains("agent:main:e2e") && out.contains("twin/twin-model"), "{out}");
    let json_list: serde_json::Value =
        serde_json::from_slice(&cli(dir.path(), &["sessions", "list", "--json"]).await.stdout).unwrap();
    assert_eq!(json_list[0]["sessionKey"], "agent:main:e2e");
    assert_eq!(json_list[0]["messageCount"], 4);

    let gw2 = spawn(dir.path()).await;
    server.push(Reply::text("Yes, hello.txt is there."));
    let resp = http()
        .post(format!("{}/v1/chat/completions", gw2.base_url))
        .bearer_auth(TOKEN)
        .header("x-clawline-session-key", "e2e")
        .json(&json!({"model": "clawline", "messages": [{"role": "user", "content": "did it work?"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], "Yes, hello.txt is there.");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let last_request = server.requests().last().unwrap().body.clone();
    let roles: Vec<&str> =
        last_request["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "tool", "assistant", "user"],
        "history is replayed after restart"
    );
    assert_eq!(shape(&records(&gw2.base_url, "e2e").await).len(), 7);
}

#[tokio::test]
async fn stateless_requests_models_and_the_agent_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::Anthropic, Some(KEY)).await;
    write_config(dir.path(), &server, Api::Anthropic, "");
    let gw = spawn(dir.path()).await;

    let models: serde_json::Value =
        http().get(format!("{}/v1/models", gw.base_url)).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["clawline", "clawline/default", "clawline/main"]);

    // A stateless request carries its own history; system messages become instructions.
    server.push(Reply::text("Paris."));
    let body: serde_json::Value = http()
        .post(format!("{}/v1/chat/completions", gw.base_url))
        .bearer_auth(TOKEN)
        .json(&json!({"model": "openclaw/main", "messages": [
            {"role": "system", "content": "Answer in one word."},
            {"role": "user", "content": "Capital of Italy?"},
            {"role": "assistant", "content": "Rome."},
            {"role": "user", "content": [{"type": "text", "text": "And France?"}]}
        ]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "Paris.");
    let sent = &server.requests()[0].body;
    assert!(sent["system"].as_str().unwrap().contains("Answer in one word."));
    assert_eq!(sent["messages"].as_array().unwrap().len(), 3);

    // A stateless retry with the same Idempotency-Key gets the first answer; the model is called once.
    server.push(Reply::text("Computed once."));
    let calls_before = server.requests().len();
    let mut answers = Vec::new();
    for _ in 0..2 {
        let v: serde_json::Value = http()
            .post(format!("{}/v1/chat/completions", gw.base_url))
            .bearer_auth(TOKEN)
            .header("idempotency-key", "retry-me-42")
            .json(&json!({"model": "clawline", "messages": [{"role": "user", "content": "expensive question"}]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answers.push(v["choices"][0]["message"]["content"].clone());
    }
    assert_eq!(answers, [json!("Computed once."), json!("Computed once.")]);
    assert_eq!(server.requests().len(), calls_before + 1);

    // `clawline agent` through the running gateway, JSON output.
    server.push(Reply::text("Hello from the agent."));
    let port = gw.base_url.rsplit(':').next().unwrap().to_string();
    let out = cli(dir.path(), &["agent", "--message", "hi", "--json", "--url", &gw.base_url]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["text"], "Hello from the agent.");
    assert_eq!(v["sessionKey"], "agent:main:main");
    assert_eq!(v["model"], "twin/twin-model");
    assert!(v["usage"]["totalTokens"].as_u64().unwrap() > 0);

    // While the gateway runs, an in-process run on the same state is refused (one runner at a time).
    let out = cli(dir.path(), &["agent", "--local", "-m", "sneaky"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("a clawline gateway is running with this state directory"), "{}", stderr(&out));

    // Plain output streams the text; the same session continues.
    server.push(Reply::text("Still here."));
    let out = cli(dir.path(), &["agent", "-m", "again", "--url", &gw.base_url, "--session-key", "main"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Still here.\n");
    assert_eq!(shape(&records(&gw.base_url, "main").await), ["session", "user", "assistant", "user", "assistant"]);
    let _ = port;
}

#[tokio::test]
async fn agent_cli_runs_in_process_with_local() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    write_config_with(dir.path(), &server, Api::OpenAi, "port: 1", "");
    server.push(Reply::tool("c1", "ls", json!({})));
    server.push(Reply::text("Your workspace has the starter files."));
    let out =
        cli(dir.path(), &["agent", "--local", "--message", "what is in my workspace?", "--session-key", "work"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Your workspace has the starter files.\n");
    assert!(stderr(&out).contains("⚙ ls"), "tool progress goes to stderr: {}", stderr(&out));

    // Without --local and with no gateway running, the CLI says so and runs in-process.
    server.push(Reply::text("second"));
    let out = cli(dir.path(), &["agent", "--message", "again", "--session-key", "work", "--json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("running the agent in this process"));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["text"], "second");
    let listed: serde_json::Value =
        serde_json::from_slice(&cli(dir.path(), &["sessions", "list", "--json"]).await.stdout).unwrap();
    assert_eq!(listed[0]["sessionKey"], "agent:main:work");
    assert_eq!(listed[0]["messageCount"], 6);
}
