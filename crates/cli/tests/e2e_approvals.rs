//! End to end: exec approvals over OpenClaw's protocol. With `tools.exec.ask: "on-miss"`, the
//! model's `exec` of a program outside the allow-list waits; an operator with
//! `operator.approvals` hears `exec.approval.requested` with the exact argv and cwd, lists it,
//! allows it once, and the turn finishes with the command run. A read-only operator hears
//! nothing and may not decide; a second decision is refused.

mod common;

use std::time::Duration;

use clawline_testkit::model_server::{Api, ModelServer, Reply, ToolCall};
use clawline_testkit::ws_client::{Client, cli_params};
use common::*;
use serde_json::json;

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_allows_a_waiting_command_once_and_the_turn_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    write_config(dir.path(), &server, Api::OpenAi, r#"tools: { exec: { ask: "on-miss" } },"#);
    server.push(Reply::Tools {
        text: None,
        calls: vec![ToolCall::new("call_1", "exec", json!({"command": "touch approved.txt"}))],
    });
    server.push(Reply::text("Created approved.txt."));
    let gw = spawn(dir.path()).await;
    let url = gw.base_url.replacen("http://", "ws://", 1);
    let scopes = ["operator.read", "operator.write", "operator.approvals"];
    let (mut owner, res) = Client::connect(&url, &[], cli_params(TOKEN, &scopes), None).await.unwrap();
    assert_eq!(res["ok"], true, "{res}");
    let (mut reader, res) = Client::connect(&url, &[], cli_params(TOKEN, &["operator.read"]), None).await.unwrap();
    assert_eq!(res["ok"], true, "{res}");

    let base = gw.base_url.clone();
    let turn = tokio::spawn(async move {
        http()
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(TOKEN)
            .header("x-clawline-session-key", "approvals")
            .json(&json!({"model": "clawline", "messages": [{"role": "user", "content": "make approved.txt"}]}))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    });

    let ev = owner.event(T, |e| e["event"] == "exec.approval.requested").await.expect("approval requested");
    let req = &ev["payload"];
    assert_eq!(req["request"]["argv"], json!(["touch", "approved.txt"]));
    assert_eq!(req["request"]["command"], "touch approved.txt");
    let ws = dir.path().join("workspace").canonicalize().unwrap();
    assert_eq!(req["request"]["cwd"], ws.to_string_lossy().as_ref());
    assert_eq!(req["request"]["sessionKey"], "agent:main:approvals");
    assert_eq!(req["status"], "pending");
    let id = req["id"].as_str().unwrap().to_string();
    assert!(!ws.join("approved.txt").exists(), "nothing runs before the decision");

    let listed = owner.request("exec.approval.list", json!({})).await.unwrap();
    assert_eq!(listed["payload"]["approvals"][0]["id"], id, "{listed}");

    // A read-only operator may not decide, and was not told.
    let refused = reader.request("exec.approval.resolve", json!({"id": id, "decision": "allow-once"})).await.unwrap();
    assert_eq!(refused["ok"], false, "{refused}");
    let bad = owner.request("exec.approval.resolve", json!({"id": id, "decision": "sure"})).await.unwrap();
    assert_eq!(bad["ok"], false, "{bad}");

    let res = owner.request("exec.approval.resolve", json!({"id": id, "decision": "allow-once"})).await.unwrap();
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["approval"]["decision"], "allow-once");
    let again = owner.request("exec.approval.resolve", json!({"id": id, "decision": "deny"})).await.unwrap();
    assert_eq!(again["ok"], false, "{again}");
    assert!(again["error"]["message"].as_str().unwrap().contains("already allowed"), "{again}");

    let done = owner.event(T, |e| e["event"] == "exec.approval.resolved").await.expect("resolved event");
    assert_eq!(done["payload"]["id"], id);
    let answer = tokio::time::timeout(T, turn).await.unwrap().unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "Created approved.txt.", "{answer}");
    assert!(ws.join("approved.txt").exists());

    // The tool result the model saw says who allowed it.
    let recs = records(&gw.base_url, "approvals").await;
    let result = recs.iter().find(|r| r["message"]["role"] == "toolResult").expect("a tool result");
    assert!(result.to_string().contains("approved by the owner (once)"), "{result}");

    assert!(
        reader
            .event(Duration::from_millis(300), |e| e["event"].as_str().unwrap_or("").starts_with("exec.approval"))
            .await
            .is_none()
    );
}
