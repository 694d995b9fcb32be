//! End to end: auth profiles stored with `clawline auth`, a rate-limited key rotating to a
//! stored one, an exhausted primary falling back to another provider, and the fallback said.

mod common;

use clawline_testkit::model_server::{Api, ModelServer, Reply};
use clawline_testkit::sse_client;
use common::*;
use serde_json::{Value, json};

fn limited() -> Reply {
    Reply::Error {
        status: 429,
        kind: "rate_limit_exceeded".into(),
        message: "Rate limit reached for requests".into(),
        retry_after: None,
    }
}

#[tokio::test]
async fn rate_limited_keys_rotate_then_fall_back_and_the_answer_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let primary = ModelServer::start(Api::OpenAi, None).await;
    let backup = ModelServer::start(Api::OpenAi, Some("sk-backup-key-555555")).await;
    let config = format!(
        r#"{{
  gateway: {{ auth: {{ token: "${{E2E_TOKEN}}" }} }},
  models: {{ providers: {{
    primary: {{ baseUrl: "{}", api: "openai-completions", apiKey: "sk-config-key-111111", models: [{{ id: "big" }}] }},
    backup: {{ baseUrl: "{}", api: "openai-completions", apiKey: "sk-backup-key-555555", models: [{{ id: "small" }}] }},
  }} }},
  agents: {{ defaults: {{ model: {{ primary: "primary/big", fallbacks: ["backup/small"] }} }} }},
}}"#,
        primary.base_url(),
        backup.base_url()
    );
    std::fs::write(dir.path().join("clawline.json"), config).unwrap();

    let added = cli_env(
        dir.path(),
        &["auth", "add", "primary", "--name", "second", "--from-env", "SECOND_KEY", "--label", "spare key"],
        &[("SECOND_KEY", "sk-stored-key-222222")],
    )
    .await;
    assert!(added.status.success(), "{}", stderr(&added));
    assert!(
        stdout(&added).contains("Stored primary:second (api_key) for every agent, encrypted."),
        "{}",
        stdout(&added)
    );
    let listed = cli(dir.path(), &["auth", "list"]).await;
    let out = stdout(&listed);
    assert!(out.contains("primary:second") && out.contains("spare key"), "{out}");
    assert!(!out.contains("sk-stored-key-222222"), "secrets are never listed: {out}");
    let db = std::fs::read(dir.path().join("state/clawline.sqlite")).unwrap_or_default();
    assert!(!db.windows(20).any(|w| w == b"sk-stored-key-222222"), "stored encrypted");

    let gw = spawn(dir.path()).await;
    // First turn: the config key is rate limited, the stored key answers.
    primary.push(limited());
    primary.push(Reply::text("from the stored key"));
    let events = chat(&gw.base_url, "one").await;
    assert_eq!(done_text(&events), "from the stored key");
    assert!(events.iter().all(|(name, _)| name != "fallback"));
    let auth: Vec<String> =
        primary.requests().iter().map(|r| r.header("authorization").unwrap_or_default().to_string()).collect();
    assert_eq!(auth, ["Bearer sk-config-key-111111", "Bearer sk-stored-key-222222"]);

    // Second turn: the config key is resting, the stored key is limited too: the backup answers.
    primary.push(limited());
    backup.push(Reply::text("backup speaking"));
    let events = chat(&gw.base_url, "two").await;
    assert_eq!(done_text(&events), "backup speaking");
    let (_, fallback) = events.iter().find(|(name, _)| name == "fallback").expect("a fallback event");
    assert_eq!(fallback["selected"], "primary/big");
    assert_eq!(fallback["used"], "backup/small");
    assert_eq!(fallback["reason"], "rate limited");
    assert_eq!(primary.requests().len(), 3, "the resting config key was not asked again");
    assert_eq!(backup.requests()[0].body["model"], "small");

    // The transcript records which model answered.
    let recs = records(&gw.base_url, "two").await;
    let last = &recs.last().unwrap()["message"];
    assert_eq!((last["provider"].as_str(), last["model"].as_str()), (Some("backup"), Some("small")));

    // Removing the stored profile: it is gone from the list.
    let removed = cli(dir.path(), &["auth", "remove", "primary:second"]).await;
    assert!(removed.status.success(), "{}", stderr(&removed));
    assert!(!stdout(&cli(dir.path(), &["auth", "list"]).await).contains("primary:second"));
}

async fn chat(base: &str, session: &str) -> Vec<(String, Value)> {
    let resp = http()
        .post(format!("{base}/api/chat"))
        .bearer_auth(TOKEN)
        .json(&json!({"message": "hello", "sessionKey": session}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    sse_client::read_all(resp)
        .await
        .into_iter()
        .map(|e| (e.event.clone().unwrap_or_default(), serde_json::from_str(&e.data).unwrap_or(Value::Null)))
        .collect()
}

fn done_text(events: &[(String, Value)]) -> String {
    let (_, done) = events.iter().find(|(n, _)| n == "done").unwrap_or_else(|| panic!("no done event: {events:?}"));
    done["text"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn model_calls_go_through_http_proxy_unless_no_proxy_says_otherwise() {
    use clawline_testkit::gateway::GatewayProcess;
    use clawline_testkit::http_proxy::HttpProxy;

    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    write_config(dir.path(), &server, Api::OpenAi, "");
    let proxy = HttpProxy::start().await;
    let proxy_url = proxy.url();
    let mut env = common::env();
    env.push(("HTTP_PROXY", proxy_url.as_str()));
    let gw = GatewayProcess::spawn(&bin(), dir.path(), &env).await.unwrap();
    server.push(Reply::text("through the proxy"));
    let events = chat(&gw.base_url, "proxied").await;
    assert_eq!(done_text(&events), "through the proxy");
    let seen = proxy.seen();
    assert_eq!(seen, [format!("POST {}/chat/completions", server.base_url())], "the model call went via HTTP_PROXY");
    drop(gw);

    env.push(("NO_PROXY", "127.0.0.1"));
    let gw = GatewayProcess::spawn(&bin(), dir.path(), &env).await.unwrap();
    server.push(Reply::text("direct"));
    assert_eq!(done_text(&chat(&gw.base_url, "direct").await), "direct");
    assert_eq!(proxy.seen().len(), 1, "NO_PROXY hosts are reached directly");
}

#[tokio::test]
async fn models_list_discovers_what_a_server_offers_and_says_why_others_are_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, None).await;
    server.set_models(vec![json!({"id": "served-a", "max_model_len": 8192}), json!({"id": "served-b"})]);
    let config = format!(
        r#"{{ gateway: {{ auth: {{ token: "${{E2E_TOKEN}}" }} }},
              models: {{ providers: {{ vllm: {{ baseUrl: "{}" }} }} }},
              agents: {{ defaults: {{ model: {{ primary: "vllm/served-a", fallbacks: ["anthropic/claude-sonnet-4-5"] }} }} }} }}"#,
        server.base_url()
    );
    std::fs::write(dir.path().join("clawline.json"), config).unwrap();
    let out = cli(dir.path(), &["models", "list", "--discover", "--json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v["models"].as_array().unwrap();
    let row = |m: &str| rows.iter().find(|r| r["model"] == m).unwrap_or_else(|| panic!("{m} missing: {v}"));
    assert_eq!(row("vllm/served-a")["available"], true);
    assert_eq!(row("vllm/served-a")["contextWindow"], 8192);
    assert_eq!(row("vllm/served-a")["default"], true);
    assert_eq!(row("vllm/served-b")["source"], "discovered");
    // The fallback's provider is known but has no credentials: unavailable, with what to do.
    let claude = row("anthropic/claude-sonnet-4-5");
    assert_eq!(claude["available"], false);
    assert!(claude["status"].as_str().unwrap().contains("ANTHROPIC_API_KEY"), "{claude}");
    assert_eq!(claude["price"]["input"], 3.0);

    let all = stdout(&cli(dir.path(), &["models", "list", "--all"]).await);
    assert!(all.contains("openrouter/openrouter/auto") && all.contains("not set up"), "{all}");
    let doctor = stdout(&cli(dir.path(), &["doctor"]).await);
    assert!(doctor.contains("fallback 1 anthropic/claude-sonnet-4-5") && doctor.contains("no credentials"), "{doctor}");
}
