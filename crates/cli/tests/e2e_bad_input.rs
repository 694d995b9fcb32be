//! Bad input from every side gets a precise answer, and the gateway keeps serving.

mod common;

use clawline_testkit::model_server::{Api, ModelServer, Reply, ToolCall};
use clawline_testkit::sse_client;
use common::*;
use serde_json::{Value, json};

async fn chat(base: &str, body: Value) -> (u16, Value) {
    let resp = http().post(format!("{base}/v1/chat/completions")).bearer_auth(TOKEN).json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn hi() -> Value {
    json!({"model": "clawline", "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn broken_config_files_are_reported_with_position_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("clawline.json");
    let cases: &[(&str, &[&str])] = &[
        (
            "{\n  gateway: {\n    port: 18789\n    bind: 'lan',\n  },\n}\n",
            &["clawline.json:4:5:", "expected `,` or `}`"],
        ),
        (
            "{\n  gateway: { prot: 1 },\n}\n",
            &["clawline.json:2:14: gateway.prot: unknown key `prot`", "did you mean `port`?"],
        ),
        ("{ gateway: { port: 'high' } }", &["clawline.json:1:20: gateway.port: wrong type: found string \"high\""]),
        (
            "{ gateway: { auth: { token: '${NOT_SET_ANYWHERE}' } } }",
            &["gateway.auth.token: environment variable NOT_SET_ANYWHERE is not set"],
        ),
        (
            "{ agents: { defaults: { model: 'nowhere/x' } } }",
            &["agents.defaults.model: unknown provider `nowhere`", "NOWHERE_API_KEY"],
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(&file, text).unwrap();
        let out = cli(dir.path(), &["config", "validate"]).await;
        assert!(!out.status.success(), "{text}");
        let err = stderr(&out);
        for e in *expected {
            assert!(err.contains(e), "for {text:?}, expected {e:?} in:\n{err}");
        }
        // The gateway refuses to start with the same message, and says how to check.
        let out = cli(dir.path(), &["gateway", "--port", "0"]).await;
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains(expected[0]) && err.contains("clawline config validate"), "{err}");
    }
}

#[tokio::test]
async fn http_and_model_failures_are_precise_and_the_gateway_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    write_config_with(
        dir.path(),
        &server,
        Api::OpenAi,
        "http: { maxBodyBytes: 4096 }",
        r#"tools: { exec: { safeBins: ["echo"] } },"#,
    );
    let gw = spawn(dir.path()).await;
    let base = gw.base_url.clone();
    let url = format!("{base}/v1/chat/completions");

    // Auth.
    let r = http().post(&url).json(&hi()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http().post(&url).bearer_auth("wrong-token-wrong-token").json(&hi()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["type"], "unauthorized");

    // Bodies.
    let big = json!({"model": "clawline", "messages": [{"role": "user", "content": "x".repeat(10_000)}]});
    let r = http().post(&url).bearer_auth(TOKEN).json(&big).send().await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "body_too_large");
    let r = http().post(&url).bearer_auth(TOKEN).body("{\"model\": ").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["error"]["message"].as_str().unwrap().contains("not valid JSON"));
    let (s, v) = chat(&base, json!({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("model_not_found")));
    let (s, v) = chat(&base, json!({"model": "clawline", "messages": [{"role": "assistant", "content": "hi"}]})).await;
    assert_eq!(s, 400, "{v}");
    let (s, _) = chat(&base, json!({"model": "clawline", "messages": "hi"})).await;
    assert_eq!(s, 400);
    let (s, v) = chat(
        &base,
        json!({"model": "clawline", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}),
    )
    .await;
    assert!(s == 400 && v["error"]["message"].as_str().unwrap().contains("tools"), "{v}");
    let r = http().get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let r = http().get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // Host and origin checks.
    let r =
        http().get(format!("{base}/v1/models")).bearer_auth(TOKEN).header("host", "evil.example").send().await.unwrap();
    assert_eq!(r.status(), 421);
    let r = http()
        .get(format!("{base}/v1/models"))
        .bearer_auth(TOKEN)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let own_origin = base.clone();
    let r =
        http().get(format!("{base}/v1/models")).bearer_auth(TOKEN).header("origin", own_origin).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Model server failures.
    for _ in 0..3 {
        server.push(Reply::error(500, "server_error", "upstream exploded"));
    }
    let (s, v) = chat(&base, hi()).await;
    assert_eq!((s, v["error"]["code"].as_str()), (502, Some("server")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("upstream exploded"));
    for _ in 0..3 {
        server.push(Reply::Error {
            status: 429,
            kind: "rate_limit_exceeded".into(),
            message: "Rate limit reached".into(),
            retry_after: Some("0".into()),
        });
    }
    let (s, v) = chat(&base, hi()).await;
    assert_eq!((s, v["error"]["code"].as_str()), (429, Some("rate_limited")), "{v}");
    server.push(Reply::Raw("data: {\"choices\": [garbage\n\n".into()));
    let (s, v) = chat(&base, hi()).await;
    assert_eq!((s, v["error"]["code"].as_str()), (502, Some("protocol")), "{v}");
    // Streaming: the error arrives as an error chunk, then [DONE].
    server.push(Reply::error(400, "invalid_request_error", "something about the request"));
    let resp = http()
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&json!({"model": "clawline", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let events = sse_client::read_all(resp).await;
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let err: Value = serde_json::from_str(&events[events.len() - 2].data).unwrap();
    assert_eq!(err["error"]["code"], "bad_request", "{err}");

    // Bad tool calls become error results; the run finishes.
    server.push(Reply::Tools { text: None, calls: vec![ToolCall::raw("c1", "read", "{\"path\": ")] });
    server.push(Reply::tool("c2", "exec", json!({"command": "ls -la /"})));
    server.push(Reply::text("Both failed."));
    let r = http()
        .post(&url)
        .bearer_auth(TOKEN)
        .header("x-clawline-session-key", "tools")
        .json(&hi())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let recs = records(&base, "tools").await;
    assert_eq!(
        shape(&recs),
        ["session", "user", "assistant(toolCall)", "toolResult!", "assistant(toolCall)", "toolResult!", "assistant"]
    );
    assert!(recs[3]["message"]["content"][0]["text"].as_str().unwrap().contains("not valid JSON"));
    assert!(recs[5]["message"]["content"][0]["text"].as_str().unwrap().contains("not in the exec allow-list"));

    // Still serving.
    assert_eq!(http().get(format!("{base}/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(http().get(format!("{base}/readyz")).send().await.unwrap().status(), 200);
    server.push(Reply::text("fine"));
    assert_eq!(chat(&base, hi()).await.0, 200);
}

#[tokio::test]
async fn missing_provider_key_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("clawline.json"),
        r#"{
          gateway: { auth: { token: "${E2E_TOKEN}" } },
          models: { providers: { remote: { baseUrl: "https://models.example.invalid/v1", models: [{ id: "m" }] } } },
          agents: { defaults: { model: "remote/m" } },
        }"#,
    )
    .unwrap();
    let gw = spawn(dir.path()).await;
    let (s, v) = chat(&gw.base_url, hi()).await;
    assert_eq!(s, 503);
    assert_eq!(v["error"]["code"], "missing_api_key");
    assert!(v["error"]["message"].as_str().unwrap().contains("REMOTE_API_KEY"), "{v}");
    let doctor = cli(dir.path(), &["doctor"]).await;
    assert!(!doctor.status.success());
    assert!(stdout(&doctor).contains("provider `remote` has no credentials"), "{}", stdout(&doctor));
    assert_eq!(http().get(format!("{}/healthz", gw.base_url)).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn repeated_wrong_tokens_lock_the_client_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    write_config(dir.path(), &server, Api::OpenAi, "");
    let path = dir.path().join("clawline.json");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        r#"auth: { token: "${E2E_TOKEN}" }"#,
        r#"auth: { token: "${E2E_TOKEN}", rateLimit: { maxAttempts: 3, exemptLoopback: false } }"#,
    );
    std::fs::write(&path, text).unwrap();
    let gw = spawn(dir.path()).await;
    let models = format!("{}/v1/models", gw.base_url);
    for _ in 0..3 {
        assert_eq!(http().get(&models).bearer_auth("guess-guess-guess-guess").send().await.unwrap().status(), 401);
    }
    let r = http().get(&models).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 429, "locked out even with the right token");
    assert!(r.headers().get("retry-after").is_some());
    assert_eq!(http().get(format!("{}/healthz", gw.base_url)).send().await.unwrap().status(), 200);
}
