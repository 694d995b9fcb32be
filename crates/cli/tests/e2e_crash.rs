//! Kill -9 mid-turn, restart: nothing acknowledged is lost, nothing half-written remains, and
//! the session carries on.

mod common;

use std::time::Duration;

use clawline_testkit::model_server::{Api, ModelServer, Reply};
use clawline_testkit::sse_client;
use common::*;
use futures_util::StreamExt;
use serde_json::json;

/// Starts a turn on `/api/chat` and reads its event stream until `until` appears.
async fn start_and_wait(base: &str, session: &str, message: &str, until: &str) -> Vec<sse_client::Event> {
    let resp = http()
        .post(format!("{base}/api/chat"))
        .bearer_auth(TOKEN)
        .json(&json!({"message": message, "sessionKey": session}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = String::new();
    let mut stream = resp.bytes_stream();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, stream.next()).await {
        body.push_str(&String::from_utf8_lossy(&chunk));
        let events = sse_client::parse(&body);
        if events.iter().any(|e| e.event.as_deref() == Some(until)) {
            return events;
        }
    }
    panic!("never saw `{until}`; got: {body}");
}

fn run_statuses(dir: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(dir.join("state").join("clawline.sqlite")).unwrap();
    let mut stmt = conn.prepare("SELECT status FROM runs ORDER BY started_at").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

#[tokio::test]
async fn kill_during_a_streamed_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    write_config(dir.path(), &server, Api::OpenAi, "");
    server.push(Reply::slow("word ", 100, Duration::from_millis(100)));
    let mut gw = spawn(dir.path()).await;

    let seen = start_and_wait(&gw.base_url, "crash", "tell me a long story", "text").await;
    assert!(seen.iter().any(|e| e.event.as_deref() == Some("started")));
    gw.kill9();

    let gw2 = spawn(dir.path()).await;
    let recs = records(&gw2.base_url, "crash").await;
    // The user message survived; the half-streamed answer left no record; the interruption is noted.
    assert_eq!(shape(&recs), ["session", "user", "custom:run-interrupted"]);
    assert_eq!(recs[1]["message"]["content"], "tell me a long story");
    assert_eq!(run_statuses(dir.path()), ["interrupted"]);

    // The session continues, and the model sees a valid history.
    server.set_fallback(Reply::Echo);
    let resp = http()
        .post(format!("{}/v1/chat/completions", gw2.base_url))
        .bearer_auth(TOKEN)
        .header("x-clawline-session-key", "crash")
        .json(&json!({"model": "clawline", "messages": [{"role": "user", "content": "are you there?"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "echo: are you there?");
    assert_eq!(
        shape(&records(&gw2.base_url, "crash").await),
        ["session", "user", "custom:run-interrupted", "user", "assistant"]
    );
}

fn process_running(needle: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().filter_map(Result::ok).any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim() == needle)
            .unwrap_or(false)
    })
}

#[tokio::test]
async fn kill_during_a_tool_call() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::Anthropic, Some(KEY)).await;
    write_config(
        dir.path(),
        &server,
        Api::Anthropic,
        r#"tools: { exec: { safeBins: ["sleep", "echo"], timeoutSeconds: 120 } },"#,
    );
    server.push(Reply::tool("toolu_1", "exec", json!({"command": "sleep 73"})));
    let mut gw = spawn(dir.path()).await;

    start_and_wait(&gw.base_url, "main", "wait a bit", "tool_start").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !process_running("/usr/bin/sleep 73") && !process_running("/bin/sleep 73") {
        assert!(std::time::Instant::now() < deadline, "the tool never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.kill9();
    // The kernel delivers the tool's death signal at once; reaping it can lag on a busy machine.
    #[cfg(target_os = "linux")]
    {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while process_running("/usr/bin/sleep 73") || process_running("/bin/sleep 73") {
            assert!(std::time::Instant::now() < deadline, "the tool's process outlived the gateway");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let gw2 = spawn(dir.path()).await;
    let recs = records(&gw2.base_url, "main").await;
    assert_eq!(shape(&recs), ["session", "user", "assistant(toolCall)", "custom:run-interrupted", "toolResult!"]);
    assert!(recs[4]["message"]["content"][0]["text"].as_str().unwrap().contains("did not finish"));
    assert_eq!(run_statuses(dir.path()), ["interrupted"]);

    // The strict Anthropic twin accepts the repaired history.
    server.push(Reply::text("The earlier command was interrupted."));
    let out = cli(dir.path(), &["agent", "-m", "what happened?", "--url", &gw2.base_url, "--json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["text"], "The earlier command was interrupted.");
}
