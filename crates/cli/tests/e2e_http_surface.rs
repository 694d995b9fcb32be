//! End-to-end: the HTTP surface beside the WebSocket protocol — `/v1/responses`
//! (OpenResponses), `/tools/invoke`, and webhooks under `hooks.path` with their own token.

mod common;

use std::time::Duration;

use clawline_testkit::model_server::{Api, ModelServer, Reply};
use clawline_testkit::sse_client;
use common::*;
use serde_json::{Value, json};

const HOOKS_TOKEN: &str = "e2e-hooks-token-abcdef0123456789";

async fn gateway(server: &ModelServer, extra: &str) -> (tempfile::TempDir, clawline_testkit::gateway::GatewayProcess) {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), server, Api::OpenAi, extra);
    let gw = clawline_testkit::gateway::GatewayProcess::spawn(
        &bin(),
        dir.path(),
        &[("E2E_TOKEN", TOKEN), ("TWIN_KEY", KEY), ("HOOKS_TOKEN", HOOKS_TOKEN)],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    (dir, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_api_streams_and_continues_a_conversation() {
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    server.push(Reply::text("First."));
    server.push(Reply::slow("Two ", 2, Duration::from_millis(20)));
    let (_dir, gw) = gateway(&server, "").await;
    let url = format!("{}/v1/responses", gw.base_url);

    let first: Value = http()
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&json!({"model": "clawline/default", "input": "hello", "instructions": "Be brief."}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["object"], "response");
    assert_eq!(first["status"], "completed");
    assert_eq!(first["output"][0]["content"][0], json!({"type": "output_text", "text": "First.", "annotations": []}));
    assert!(first["usage"]["total_tokens"].as_u64().is_some());
    let id = first["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("resp_"));
    let sent = server.requests();
    assert!(sent[0].body.to_string().contains("Be brief."), "instructions reach the model");

    // Continue with previous_response_id, streaming.
    let resp = http()
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&json!({"model": "clawline", "input": [{"role": "user", "content": [{"type": "input_text", "text": "again"}]}],
                      "previous_response_id": id, "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let events = sse_client::read_all(resp).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_deref().unwrap_or("")).collect();
    assert_eq!(
        kinds.iter().filter(|k| !k.is_empty()).copied().collect::<Vec<_>>(),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let seqs: Vec<u64> = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok()?["sequence_number"].as_u64())
        .collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    let done: Value = serde_json::from_str(&events[events.len() - 2].data).unwrap();
    assert_eq!(done["response"]["output"][0]["content"][0]["text"], "Two Two ");
    // The model saw the first exchange: the second call continued the session.
    let second = &server.requests()[1].body;
    let history = second["messages"].as_array().unwrap();
    assert!(
        history.iter().any(|m| m["content"] == "hello") && history.iter().any(|m| m["content"] == "First."),
        "{second}"
    );

    let unknown = http()
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&json!({"model": "clawline", "input": "x", "previous_response_id": "resp_nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let tools = http()
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&json!({"model": "clawline", "input": "x", "tools": [{"type": "function"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(tools.status(), 400);
    let anonymous = http().post(&url).json(&json!({"model": "clawline", "input": "x"})).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_invoke_runs_read_only_tools_and_refuses_the_rest() {
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    let (_dir, gw) = gateway(&server, "").await;
    let url = format!("{}/tools/invoke", gw.base_url);
    let post = |body: Value| http().post(&url).bearer_auth(TOKEN).json(&body).send();

    let ls = post(json!({"tool": "ls", "args": {"path": "."}})).await.unwrap();
    assert_eq!(ls.status(), 200);
    let ls: Value = ls.json().await.unwrap();
    assert_eq!(ls["ok"], true);
    assert!(ls["result"]["content"][0]["text"].as_str().unwrap().contains("AGENTS.md"), "{ls}");

    for denied in ["exec", "write", "edit"] {
        let r = post(json!({"tool": denied, "args": {}})).await.unwrap();
        assert_eq!(r.status(), 404, "{denied}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], json!({"type": "not_found", "message": format!("Tool not available: {denied}")}));
    }
    let escape = post(json!({"tool": "read", "args": {"path": "../../etc/passwd"}})).await.unwrap();
    assert_eq!(escape.status(), 400);
    assert_eq!(escape.json::<Value>().await.unwrap()["error"]["type"], "tool_error");
    let dry = post(json!({"name": "read", "dryRun": true})).await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(dry["result"]["dryRun"], true);
    let unknown_field = post(json!({"tool": "ls", "bogus": 1})).await.unwrap();
    assert_eq!(unknown_field.status(), 400);
    let anonymous = http().post(&url).json(&json!({"tool": "ls"})).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_have_their_own_token_and_limits() {
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    server.set_fallback(Reply::text("Hooked."));
    let (_dir, gw) = gateway(&server, "hooks: { enabled: true, token: \"${HOOKS_TOKEN}\" },").await;
    let agent_url = format!("{}/hooks/agent", gw.base_url);

    let ok = http()
        .post(&agent_url)
        .bearer_auth(HOOKS_TOKEN)
        .json(&json!({"message": "build failed on main"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["ok"], true);
    let key = body["sessionKey"].as_str().unwrap().to_string();
    assert!(key.starts_with("agent:main:hook:"), "{key}");
    // The run goes on after the answer and lands in the hook's session.
    let mut recs = Vec::new();
    for _ in 0..50 {
        recs = records(&gw.base_url, &key).await;
        if shape(&recs).contains(&"assistant".to_string()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(shape(&recs), ["session", "user", "assistant"]);

    let header = http()
        .post(&agent_url)
        .header("x-openclaw-token", HOOKS_TOKEN)
        .json(&json!({"message": "via header"}))
        .send()
        .await
        .unwrap();
    assert_eq!(header.status(), 200);
    let gateway_token = http().post(&agent_url).bearer_auth(TOKEN).json(&json!({"message": "x"})).send().await.unwrap();
    assert_eq!(gateway_token.status(), 401, "the gateway token is not a hooks token");
    let in_url =
        http().post(format!("{agent_url}?token={HOOKS_TOKEN}")).json(&json!({"message": "x"})).send().await.unwrap();
    assert_eq!(in_url.status(), 400, "tokens in URLs are refused");
    let chosen = http()
        .post(&agent_url)
        .bearer_auth(HOOKS_TOKEN)
        .json(&json!({"message": "x", "sessionKey": "main"}))
        .send()
        .await
        .unwrap();
    assert_eq!(chosen.status(), 400, "hooks may not pick a session unless allowed");
    let deliver = http()
        .post(&agent_url)
        .bearer_auth(HOOKS_TOKEN)
        .json(&json!({"message": "x", "deliver": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(deliver.status(), 400);
    let unknown = http()
        .post(format!("{}/hooks/gmail", gw.base_url))
        .bearer_auth(HOOKS_TOKEN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    // A retried call with the same idempotency key finds the first call's run.
    let call = || {
        http()
            .post(&agent_url)
            .bearer_auth(HOOKS_TOKEN)
            .json(&json!({"message": "deploy done", "idempotencyKey": "ci/run#42"}))
            .send()
    };
    let first: Value = call().await.unwrap().json().await.unwrap();
    let retry: Value = call().await.unwrap().json().await.unwrap();
    assert_eq!(first["sessionKey"], "agent:main:hook:idem-ci_run_42", "{first}");
    assert_eq!((retry["runId"].clone(), retry["duplicate"].clone()), (first["runId"].clone(), json!(true)), "{retry}");

    let wake = http()
        .post(format!("{}/hooks/wake", gw.base_url))
        .bearer_auth(HOOKS_TOKEN)
        .json(&json!({"text": "the door opened"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wake.status(), 200);
    let later = http()
        .post(format!("{}/hooks/wake", gw.base_url))
        .bearer_auth(HOOKS_TOKEN)
        .json(&json!({"text": "t", "mode": "next-heartbeat"}))
        .send()
        .await
        .unwrap();
    assert_eq!(later.status(), 400, "no heartbeat to queue for");

    // Failed attempts lock the address out, loopback included: 20 a minute.
    let mut last = 0;
    for _ in 0..21 {
        last = http()
            .post(&agent_url)
            .bearer_auth("wrong-hooks-token")
            .json(&json!({"message": "x"}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
    }
    assert_eq!(last, 429);
    let locked = http().post(&agent_url).bearer_auth(HOOKS_TOKEN).json(&json!({"message": "x"})).send().await.unwrap();
    assert_eq!(locked.status(), 429);
    assert!(locked.headers().contains_key("retry-after"));
    // The rest of the gateway is unaffected.
    let models = http().get(format!("{}/v1/models", gw.base_url)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(models.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_agent_allow_list_covers_the_default_agent() {
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    server.set_fallback(Reply::text("ok"));
    let hooks = "hooks: { enabled: true, token: \"${HOOKS_TOKEN}\", allowedAgentIds: [\"helper\"] },";
    let (_dir, gw) = gateway(&server, hooks).await;
    let res = http()
        .post(format!("{}/hooks/agent", gw.base_url))
        .bearer_auth(HOOKS_TOKEN)
        .json(&json!({"message": "no agent named"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "the default agent is not on the list");
    let body: Value = res.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("default agent `main`"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_are_off_by_default_and_need_their_own_token() {
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    let (_dir, gw) = gateway(&server, "").await;
    let r = http()
        .post(format!("{}/hooks/agent", gw.base_url))
        .bearer_auth(TOKEN)
        .json(&json!({"message": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &server, Api::OpenAi, "hooks: { enabled: true },");
    let out = cli(dir.path(), &["config", "validate"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("hooks.token"), "{}", stderr(&out));
    write_config(dir.path(), &server, Api::OpenAi, "hooks: { enabled: true, token: \"${E2E_TOKEN}\" },");
    let out = cli(dir.path(), &["config", "validate"]).await;
    assert!(stderr(&out).contains("the hooks token is the gateway token"), "{}", stderr(&out));
}
