//! End-to-end: OpenClaw's gateway protocol v4 over WebSocket, against the real binary.
//!
//! The client is testkit's protocol client (written from the protocol description, depending
//! on no clawline crate). Covered: the handshake and `hello-ok`, the read methods, a streamed
//! chat turn with `chat`/`agent`/`session.message` events, `agent` answering twice, device
//! identity with device tokens and pairing, config reads and writes with `baseHash`, and the
//! refusals — each with the exact error and close code — after which the gateway keeps serving.

mod common;

use std::time::Duration;

use clawline_testkit::model_server::{Api, ModelServer, Reply};
use clawline_testkit::ws_client::{Client, Device, cli_params, now_ms, tui_params};
use common::*;
use serde_json::{Value, json};

const ADMIN: &[&str] = &["operator.admin"];
const T: Duration = Duration::from_secs(20);

fn ws_url(base: &str) -> String {
    base.replacen("http://", "ws://", 1)
}

async fn gateway(
    server: &ModelServer,
    gateway_extra: &str,
) -> (tempfile::TempDir, clawline_testkit::gateway::GatewayProcess) {
    let dir = tempfile::tempdir().unwrap();
    write_config_with(dir.path(), server, Api::OpenAi, gateway_extra, "");
    let gw = spawn(dir.path()).await;
    (dir, gw)
}

/// A state dir whose config has `auth` in place of the default token-only auth block.
fn dir_with_auth(server: &ModelServer, auth: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_config_with(dir.path(), server, Api::OpenAi, "", "");
    let path = dir.path().join("clawline.json");
    let text = std::fs::read_to_string(&path).unwrap().replacen("auth: { token: \"${E2E_TOKEN}\" }", auth, 1);
    std::fs::write(&path, text).unwrap();
    dir
}

async fn admin(url: &str) -> Client {
    let (c, res) = Client::connect(url, &[], cli_params(TOKEN, ADMIN), None).await.unwrap();
    assert_eq!(res["ok"], true, "{res}");
    c
}

fn ok(res: &Value) -> &Value {
    assert_eq!(res["ok"], true, "{res}");
    &res["payload"]
}

fn err(res: &Value) -> &Value {
    assert_eq!(res["ok"], false, "{res}");
    &res["error"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_and_read_methods() {
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    let (_dir, gw) = gateway(&server, "").await;
    let url = ws_url(&gw.base_url);

    let (challenge_client, challenge) = Client::open(&url, &[]).await.unwrap();
    assert!(challenge["nonce"].as_str().is_some_and(|n| n.len() >= 32));
    assert!(challenge["ts"].as_i64().is_some_and(|t| (t - now_ms()).abs() < 60_000));
    challenge_client.close().await;

    let (mut c, res) = Client::connect(&url, &[], cli_params(TOKEN, ADMIN), None).await.unwrap();
    let hello = ok(&res);
    assert_eq!(hello["type"], "hello-ok");
    assert_eq!(hello["protocol"], 4);
    assert_eq!(hello["auth"], json!({"method": "token", "role": "operator", "scopes": ["operator.admin"]}));
    assert_eq!(hello["snapshot"]["sessionDefaults"]["mainSessionKey"], "agent:main:main");
    assert_eq!(hello["policy"]["tickIntervalMs"], 30_000);
    let methods: Vec<&str> =
        hello["features"]["methods"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for m in ["health", "status", "sessions.list", "chat.send", "chat.history", "agent", "agent.wait", "config.get"] {
        assert!(methods.contains(&m), "{m} advertised");
    }
    assert!(!methods.contains(&"connect"));

    let health = c.request("health", Value::Null).await.unwrap();
    assert_eq!(ok(&health)["ok"], true);
    assert_eq!(ok(&health)["defaultAgentId"], "main");
    assert!(ok(&c.request("status", json!({})).await.unwrap())["runtimeVersion"].is_string());
    assert!(ok(&c.request("system-presence", json!({})).await.unwrap()).is_array());
    assert!(ok(&c.request("sessions.list", json!({})).await.unwrap())["sessions"].is_array());
    let history = c.request("chat.history", json!({"sessionKey": "agent:main:main"})).await.unwrap();
    assert_eq!(ok(&history)["messages"], json!([]));
    let models = c.request("models.list", json!({})).await.unwrap();
    assert_eq!(ok(&models)["models"][0]["id"], "twin-model");
    assert!(ok(&c.request("cron.list", json!({})).await.unwrap())["jobs"].is_array());
    assert!(ok(&c.request("logs.tail", json!({"limit": 10})).await.unwrap())["lines"].is_array());
    assert_eq!(ok(&c.request("last-heartbeat", json!({})).await.unwrap()), &Value::Null);
    let agents = c.request("agents.list", json!({})).await.unwrap();
    assert_eq!(ok(&agents)["defaultId"], "main");

    let config = c.request("config.get", json!({})).await.unwrap();
    let config = ok(&config);
    assert!(config["hash"].as_str().unwrap().starts_with("hmac-sha256:v1:"));
    let raw = config["raw"].as_str().unwrap();
    assert!(raw.contains("written by the e2e tests"), "raw text with comments");
    assert!(!raw.contains(KEY) && !raw.contains(TOKEN));

    let unknown = c.request("no.such.method", json!({})).await.unwrap();
    assert_eq!(err(&unknown)["message"], "unknown method: no.such.method");
    let bad = c.request("chat.history", json!({"bogus": 1})).await.unwrap();
    assert_eq!(
        err(&bad)["message"],
        "invalid chat.history params: must have required property 'sessionKey'; at root: unexpected property 'bogus'"
    );
    let again = c.request("connect", cli_params(TOKEN, ADMIN)).await.unwrap();
    assert_eq!(err(&again)["message"], "connect is only valid as the first request");
    // Malformed frames after the handshake: text that is not JSON is ignored; a frame without a
    // method is answered; the connection stays open.
    c.send_text("this is not json").await.unwrap();
    c.send_text(r#"{"type":"req","id":"x1"}"#).await.unwrap();
    let invalid = c.response("x1", T).await.unwrap();
    assert_eq!(err(&invalid)["message"], "invalid request frame: must have required property 'method'");
    assert_eq!(ok(&c.request("health", json!({})).await.unwrap())["ok"], true);

    // A read-only client: read methods work, writes are refused by scope; unknown methods need admin.
    let (mut r, res) = Client::connect(&url, &[], cli_params(TOKEN, &["operator.read"]), None).await.unwrap();
    assert_eq!(ok(&res)["auth"]["scopes"], json!(["operator.read"]));
    let forbidden =
        r.request("chat.send", json!({"sessionKey": "main", "message": "x", "idempotencyKey": "k"})).await.unwrap();
    assert_eq!(
        err(&forbidden),
        &json!({"code": "FORBIDDEN", "message": "missing scope: operator.write",
                "details": {"code": "MISSING_SCOPE", "missingScope": "operator.write", "requiredScopes": ["operator.write"]}})
    );
    assert_eq!(err(&r.request("no.such", json!({})).await.unwrap())["message"], "missing scope: operator.admin");
    assert!(ok(&r.request("sessions.list", json!({})).await.unwrap())["sessions"].is_array());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_send_streams_events_and_agent_answers_twice() {
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    server.push(Reply::slow("Hello ", 3, Duration::from_millis(30)));
    server.push(Reply::text("Second answer."));
    let (_dir, gw) = gateway(&server, "").await;
    let url = ws_url(&gw.base_url);

    // A watcher subscribed to the session list and to the main session's messages.
    let (mut watcher, res) = Client::connect(&url, &[], cli_params(TOKEN, &["operator.read"]), None).await.unwrap();
    ok(&res);
    assert_eq!(ok(&watcher.request("sessions.subscribe", json!({})).await.unwrap())["subscribed"], true);
    let sub = watcher.request("sessions.messages.subscribe", json!({"key": "main"})).await.unwrap();
    assert_eq!(ok(&sub)["key"], "agent:main:main");

    let mut c = admin(&url).await;
    let send = c
        .request(
            "chat.send",
            json!({"sessionKey": "agent:main:main", "message": "hi there", "idempotencyKey": "run-1"}),
        )
        .await
        .unwrap();
    assert_eq!(ok(&send), &json!({"runId": "run-1", "status": "started"}));
    let again = c
        .request(
            "chat.send",
            json!({"sessionKey": "agent:main:main", "message": "hi there", "idempotencyKey": "run-1"}),
        )
        .await
        .unwrap();
    assert!(matches!(ok(&again)["status"].as_str(), Some("in_flight" | "ok")), "{again}");

    let wait = c.request("agent.wait", json!({"runId": "run-1", "timeoutMs": 15000})).await.unwrap();
    assert_eq!(ok(&wait)["status"], "ok", "{wait}");
    assert_eq!(ok(&wait)["runId"], "run-1");

    // The sender saw the run stream: agent lifecycle, chat deltas with the cumulative message, one final.
    let final_ = c.event(T, |e| e["event"] == "chat" && e["payload"]["state"] == "final").await.expect("chat final");
    assert_eq!(final_["payload"]["message"]["content"][0]["text"], "Hello Hello Hello ");
    assert_eq!(final_["payload"]["runId"], "run-1");
    let deltas: Vec<&Value> =
        c.frames.iter().filter(|f| f["event"] == "chat" && f["payload"]["state"] == "delta").collect();
    assert!(!deltas.is_empty());
    let starts = c.frames.iter().filter(|f| f["event"] == "agent" && f["payload"]["data"]["phase"] == "start").count();
    assert_eq!(starts, 1);
    let seqs: Vec<u64> = c.frames.iter().filter(|f| f["type"] == "event").filter_map(|f| f["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "per-connection seq is gapless: {seqs:?}");

    // The watcher got the stored messages and session changes.
    let user = watcher.event(T, |e| e["event"] == "session.message" && e["payload"]["message"]["role"] == "user").await;
    assert_eq!(user.expect("user message event")["payload"]["message"]["content"], "hi there");
    let assistant =
        watcher.event(T, |e| e["event"] == "session.message" && e["payload"]["message"]["role"] == "assistant").await;
    assert!(assistant.expect("assistant message event")["payload"]["messageSeq"].as_i64().is_some());
    assert!(watcher.event(T, |e| e["event"] == "sessions.changed").await.is_some());

    let history = c.request("chat.history", json!({"sessionKey": "main", "limit": 10})).await.unwrap();
    let messages = ok(&history)["messages"].as_array().unwrap().clone();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["role"], "user");
    assert!(messages[0]["__openclaw"]["seq"].as_i64().is_some());
    assert_eq!(messages[1]["role"], "assistant");

    // `agent`: the same request id answered twice, accepted then final.
    let id = c
        .send_request("agent", json!({"message": "once more", "agentId": "main", "idempotencyKey": "agent-1"}))
        .await
        .unwrap();
    let accepted = c.response(&id, T).await.unwrap();
    assert_eq!(ok(&accepted)["status"], "accepted");
    assert_eq!(ok(&accepted)["runId"], "agent-1");
    let done = c.response(&id, T).await.unwrap();
    let done = ok(&done);
    assert_eq!(done["status"], "ok", "{done}");
    assert_eq!(done["result"]["payloads"][0]["text"], "Second answer.");
    assert_eq!(done["result"]["meta"]["agentMeta"]["model"], "twin-model");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_handshakes_are_precise_and_the_gateway_keeps_serving() {
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    let dir = dir_with_auth(&server, "auth: { token: \"${E2E_TOKEN}\", rateLimit: { exemptLoopback: false } }");
    let gw = clawline_testkit::gateway::GatewayProcess::spawn(
        &bin(),
        dir.path(),
        &[("E2E_TOKEN", TOKEN), ("TWIN_KEY", KEY), ("CLAWLINE_HANDSHAKE_TIMEOUT_MS", "600")],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let url = ws_url(&gw.base_url);

    // First request is not connect.
    let (mut c, _) = Client::open(&url, &[]).await.unwrap();
    let res = c.request("health", json!({})).await.unwrap();
    assert_eq!(err(&res)["message"], "invalid handshake: first request must be connect");
    assert_eq!(c.closed(T).await.unwrap().code, Some(1008));

    // Text that is not JSON: closed, no answer.
    let (mut c, _) = Client::open(&url, &[]).await.unwrap();
    c.send_text("hello?").await.unwrap();
    assert_eq!(c.closed(T).await.unwrap().code, Some(1000));

    // No connect at all: closed after the handshake timeout.
    let (mut c, _) = Client::open(&url, &[]).await.unwrap();
    assert_eq!(c.closed(T).await.unwrap().code, Some(1000));

    // Protocol 2..3.
    let mut params = cli_params(TOKEN, ADMIN);
    params["minProtocol"] = json!(2);
    params["maxProtocol"] = json!(3);
    let (mut c, res) = Client::connect(&url, &[], params, None).await.unwrap();
    let e = err(&res);
    assert_eq!(
        (e["message"].as_str(), e["details"]["code"].as_str()),
        (Some("protocol mismatch"), Some("PROTOCOL_MISMATCH"))
    );
    assert_eq!(e["details"]["expectedProtocol"], 4);
    assert_eq!(c.closed(T).await.unwrap().code, Some(1002));

    // Bad params.
    let mut params = cli_params(TOKEN, ADMIN);
    params["client"]["id"] = json!("not-a-client");
    let (mut c, res) = Client::connect(&url, &[], params, None).await.unwrap();
    assert_eq!(
        err(&res)["message"],
        "invalid connect params: at /client/id: must be equal to one of the allowed values"
    );
    assert_eq!(c.closed(T).await.unwrap().code, Some(1008));

    // No credential and no device.
    let mut params = cli_params(TOKEN, ADMIN);
    params["auth"] = json!({});
    let (_, res) = Client::connect(&url, &[], params, None).await.unwrap();
    assert_eq!(err(&res)["code"], "NOT_PAIRED");
    assert_eq!(err(&res)["details"]["code"], "DEVICE_IDENTITY_REQUIRED");

    // A browser page from another origin.
    let (mut c, res) =
        Client::connect(&url, &[("Origin", "http://evil.example")], cli_params(TOKEN, ADMIN), None).await.unwrap();
    assert_eq!(err(&res)["details"]["code"], "CONTROL_UI_ORIGIN_NOT_ALLOWED");
    assert_eq!(c.closed(T).await.unwrap().code, Some(1008));

    // The TUI without a device identity.
    let (_, res) = Client::connect(&url, &[], tui_params(TOKEN, ADMIN), None).await.unwrap();
    assert_eq!(err(&res)["details"]["code"], "CONTROL_UI_DEVICE_IDENTITY_REQUIRED");

    // An oversized frame before the handshake.
    let (mut c, _) = Client::open(&url, &[]).await.unwrap();
    let big = format!(r#"{{"type":"req","id":"1","method":"connect","params":{{"pad":"{}"}}}}"#, "x".repeat(70 * 1024));
    let _ = c.send_text(big).await;
    assert_eq!(c.closed(T).await.and_then(|c| c.code), Some(1009));

    // Wrong tokens: precise errors, then a lockout (loopback is not exempt in this config).
    for i in 0..10 {
        let (mut c, res) = Client::connect(&url, &[], cli_params("wrong-token-xxxxxxxx", ADMIN), None).await.unwrap();
        let e = err(&res);
        assert_eq!(e["code"], "INVALID_REQUEST");
        assert_eq!(e["details"]["code"], "AUTH_TOKEN_MISMATCH", "attempt {i}: {e}");
        assert!(e["message"].as_str().unwrap().starts_with("unauthorized: gateway token mismatch"));
        assert_eq!(e["details"]["recommendedNextStep"], "update_auth_credentials");
        assert_eq!(c.closed(T).await.unwrap().code, Some(1008));
    }
    let (_, res) = Client::connect(&url, &[], cli_params("wrong-token-xxxxxxxx", ADMIN), None).await.unwrap();
    let e = err(&res);
    assert_eq!(e["details"]["code"], "AUTH_RATE_LIMITED");
    assert_eq!(e["retryable"], true);
    assert!(e["retryAfterMs"].as_u64().unwrap() > 200_000);
    let (_, res) = Client::connect(&url, &[], cli_params(TOKEN, ADMIN), None).await.unwrap();
    assert_eq!(err(&res)["details"]["code"], "AUTH_RATE_LIMITED", "while locked out even the right token waits");

    // The HTTP surface still answers; proxy headers from a peer that is not a trusted proxy are refused.
    let health = http().get(format!("{}/healthz", gw.base_url)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let forged =
        http().get(format!("{}/v1/models", gw.base_url)).header("x-forwarded-for", "1.2.3.4").send().await.unwrap();
    assert_eq!(forged.status(), 403);
    let body: Value = forged.json().await.unwrap();
    assert_eq!(body["error"]["type"], "proxy_attribution_required");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_identity_tokens_and_pairing() {
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    // 127.0.0.1 is a trusted proxy here, so X-Forwarded-For makes a client remote.
    let (_dir, gw) = gateway(&server, "trustedProxies: [\"127.0.0.1\"]").await;
    let url = ws_url(&gw.base_url);
    let tui = Device::generate();

    // A local TUI with the shared token is paired silently and gets a device token.
    let (c, res) = Client::connect(&url, &[], tui_params(TOKEN, ADMIN), Some(&tui)).await.unwrap();
    let hello = ok(&res);
    assert_eq!(hello["auth"]["scopes"], json!(["operator.admin"]));
    let device_token = hello["auth"]["deviceToken"].as_str().expect("a device token").to_string();
    c.close().await;

    // Later it connects with the device token alone.
    let mut params = tui_params(&device_token, ADMIN);
    let (mut c, res) = Client::connect(&url, &[], params.clone(), Some(&tui)).await.unwrap();
    assert_eq!(ok(&res)["auth"]["method"], "device-token");
    assert_eq!(ok(&res)["auth"]["deviceToken"], device_token.as_str());
    assert_eq!(ok(&c.request("health", json!({})).await.unwrap())["ok"], true);

    // Another device cannot use that token.
    let other = Device::generate();
    let (_, res) = Client::connect(&url, &[], params.clone(), Some(&other)).await.unwrap();
    let e = err(&res);
    assert!(matches!(e["details"]["code"].as_str(), Some("AUTH_TOKEN_MISMATCH" | "AUTH_DEVICE_TOKEN_MISMATCH")), "{e}");

    // Bad proofs: wrong signature, stale signature, a nonce from another connection.
    let (mut raw, challenge) = Client::open(&url, &[]).await.unwrap();
    let mut proof = tui.proof(&params, challenge["nonce"].as_str().unwrap(), now_ms());
    proof["signature"] = json!(tui.sign("something else"));
    params["device"] = proof;
    let res = raw.request("connect", params.clone()).await.unwrap();
    assert_eq!(err(&res)["details"]["code"], "DEVICE_AUTH_SIGNATURE_INVALID");
    assert_eq!(raw.closed(T).await.unwrap().code, Some(1008));

    let (mut raw, challenge) = Client::open(&url, &[]).await.unwrap();
    params["device"] = tui.proof(&params, challenge["nonce"].as_str().unwrap(), now_ms() - 10 * 60_000);
    let res = raw.request("connect", params.clone()).await.unwrap();
    assert_eq!(err(&res)["details"]["code"], "DEVICE_AUTH_SIGNATURE_EXPIRED");

    let (_first, old) = Client::open(&url, &[]).await.unwrap();
    let replay = tui.proof(&params, old["nonce"].as_str().unwrap(), now_ms());
    let (mut raw, _) = Client::open(&url, &[]).await.unwrap();
    params["device"] = replay;
    let res = raw.request("connect", params.clone()).await.unwrap();
    assert_eq!(err(&res)["details"]["code"], "DEVICE_AUTH_NONCE_MISMATCH");

    // A remote device (through the trusted proxy) is not paired silently: it waits for approval.
    let phone = Device::generate();
    let remote = [("X-Forwarded-For", "203.0.113.7")];
    let (mut pending, res) =
        Client::connect(&url, &remote, tui_params(TOKEN, &["operator.read"]), Some(&phone)).await.unwrap();
    let e = err(&res);
    assert_eq!(e["code"], "NOT_PAIRED");
    assert_eq!(e["details"]["code"], "PAIRING_REQUIRED");
    assert_eq!(e["details"]["reason"], "not-paired");
    let request_id = e["details"]["requestId"].as_str().unwrap().to_string();
    assert_eq!(pending.closed(T).await.unwrap().code, Some(1008));

    let list = c.request("device.pair.list", json!({})).await.unwrap();
    let pending_ids: Vec<&str> =
        ok(&list)["pending"].as_array().unwrap().iter().filter_map(|p| p["requestId"].as_str()).collect();
    assert_eq!(pending_ids, [request_id.as_str()]);
    let approved = c.request("device.pair.approve", json!({"requestId": request_id})).await.unwrap();
    assert_eq!(ok(&approved)["device"]["deviceId"], phone.id());

    let (_, res) = Client::connect(&url, &remote, tui_params(TOKEN, &["operator.read"]), Some(&phone)).await.unwrap();
    assert_eq!(ok(&res)["auth"]["scopes"], json!(["operator.read"]));
    // Asking for more than approved is a new request, not a silent upgrade.
    let (_, res) = Client::connect(&url, &remote, tui_params(TOKEN, ADMIN), Some(&phone)).await.unwrap();
    assert_eq!(err(&res)["details"]["reason"], "scope-upgrade");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_writes_need_the_base_hash_and_keep_secrets() {
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    let dir = tempfile::tempdir().unwrap();
    write_config_with(dir.path(), &server, Api::OpenAi, "", "");
    // A literal key in the file (the e2e config uses ${TWIN_KEY}): it must never be shown.
    let path = dir.path().join("clawline.json");
    let text =
        std::fs::read_to_string(&path).unwrap().replace("apiKey: \"${TWIN_KEY}\"", &format!("apiKey: \"{KEY}\""));
    std::fs::write(&path, &text).unwrap();
    let gw = spawn(dir.path()).await;
    let mut c = admin(&ws_url(&gw.base_url)).await;

    let got = c.request("config.get", json!({})).await.unwrap();
    let (raw, hash) = (ok(&got)["raw"].as_str().unwrap().to_string(), ok(&got)["hash"].as_str().unwrap().to_string());
    assert!(!raw.contains(KEY) && raw.contains("__OPENCLAW_REDACTED__"));

    let edited = raw.replacen("agents: {", "logging: { level: \"debug\" },\n  agents: {", 1);
    let no_hash = c.request("config.set", json!({"raw": edited})).await.unwrap();
    assert!(err(&no_hash)["message"].as_str().unwrap().contains("base hash required"));
    let wrong = c.request("config.set", json!({"raw": edited, "baseHash": "hmac-sha256:v1:nope"})).await.unwrap();
    assert!(err(&wrong)["message"].as_str().unwrap().contains("config changed since it was read"));
    let invalid =
        c.request("config.set", json!({"raw": "{ gateway: { port: \"x\" } }", "baseHash": hash})).await.unwrap();
    assert!(err(&invalid)["message"].as_str().unwrap().starts_with("invalid config:"), "{invalid}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "an invalid config is never written");

    let set = c.request("config.set", json!({"raw": edited, "baseHash": hash})).await.unwrap();
    assert_eq!(ok(&set)["restartRequired"], true);
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(written.contains(KEY), "the redaction marker was replaced by the stored secret");
    assert!(written.contains("level: \"debug\"") && written.contains("written by the e2e tests"));

    let got = c.request("config.get", json!({})).await.unwrap();
    let hash = ok(&got)["hash"].as_str().unwrap().to_string();
    let patched = c
        .request(
            "config.patch",
            json!({"raw": "{ logging: null, tools: { exec: { timeoutSeconds: 5 } } }", "baseHash": hash}),
        )
        .await
        .unwrap();
    ok(&patched);
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(!written.contains("level: \"debug\"") && written.contains("timeoutSeconds"), "{written}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_mode_node_role_pairing_decisions_and_write_limits() {
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    let dir = dir_with_auth(
        &server,
        "auth: { mode: \"password\", token: \"${E2E_TOKEN}\", password: \"e2e-password-long-enough\" }, trustedProxies: [\"127.0.0.1\"]",
    );
    let gw = spawn(dir.path()).await;
    let url = ws_url(&gw.base_url);

    // Password mode: the password in `auth.password` (or in `auth.token`, as OpenClaw accepts).
    let mut params = cli_params("", ADMIN);
    params["auth"] = json!({"password": "e2e-password-long-enough"});
    let (mut c, res) = Client::connect(&url, &[], params, None).await.unwrap();
    assert_eq!(ok(&res)["auth"]["method"], "password");
    let mut wrong = cli_params("", ADMIN);
    wrong["auth"] = json!({"password": "not-the-password"});
    let (_, res) = Client::connect(&url, &[], wrong, None).await.unwrap();
    assert_eq!(err(&res)["details"]["code"], "AUTH_PASSWORD_MISMATCH");

    // A node: it needs a device; once in, only `health` answers, everything else is refused by role.
    let node_device = Device::generate();
    let node = json!({
        "minProtocol": 3, "maxProtocol": 4, "role": "node",
        "client": {"id": "node-host", "version": "test", "platform": "linux", "mode": "node"},
        "auth": {"password": "e2e-password-long-enough"},
    });
    let (_, res) = Client::connect(&url, &[], node.clone(), None).await.unwrap();
    assert_eq!(err(&res)["details"]["code"], "DEVICE_IDENTITY_REQUIRED");
    let (mut n, res) = Client::connect(&url, &[], node, Some(&node_device)).await.unwrap();
    assert_eq!(
        ok(&res)["auth"],
        json!({"method": "password", "role": "node", "scopes": [],
        "deviceToken": ok(&res)["auth"]["deviceToken"], "issuedAtMs": ok(&res)["auth"]["issuedAtMs"]})
    );
    assert_eq!(ok(&n.request("health", json!({})).await.unwrap())["ok"], true);
    let refused = n.request("sessions.list", json!({})).await.unwrap();
    assert_eq!(err(&refused)["message"], "unauthorized role: node");
    // Eleven in a row close the connection.
    for _ in 0..11 {
        let _ = n.request("sessions.list", json!({})).await;
    }
    assert_eq!(n.closed(T).await.and_then(|c| c.code), Some(1008));

    // Pairing decisions: a remote device is rejected, another approved and then removed.
    let remote = [("X-Forwarded-For", "198.51.100.4")];
    let mut tui_pw = tui_params("", &["operator.read"]);
    tui_pw["auth"] = json!({"password": "e2e-password-long-enough"});
    let rejected = Device::generate();
    let (_, res) = Client::connect(&url, &remote, tui_pw.clone(), Some(&rejected)).await.unwrap();
    let first = err(&res)["details"]["requestId"].as_str().unwrap().to_string();
    assert_eq!(
        ok(&c.request("device.pair.reject", json!({"requestId": first})).await.unwrap())["deviceId"],
        rejected.id()
    );
    let (_, res) = Client::connect(&url, &remote, tui_pw.clone(), Some(&rejected)).await.unwrap();
    assert_eq!(err(&res)["details"]["code"], "PAIRING_REQUIRED", "a rejected device asks again, it does not get in");

    let removed = Device::generate();
    let (_, res) = Client::connect(&url, &remote, tui_pw.clone(), Some(&removed)).await.unwrap();
    let id = err(&res)["details"]["requestId"].as_str().unwrap().to_string();
    ok(&c.request("device.pair.approve", json!({"requestId": id})).await.unwrap());
    let (mut r, res) = Client::connect(&url, &remote, tui_pw.clone(), Some(&removed)).await.unwrap();
    let token = ok(&res)["auth"]["deviceToken"].as_str().unwrap().to_string();
    ok(&c.request("device.pair.remove", json!({"deviceId": removed.id()})).await.unwrap());
    assert!(r.closed(T).await.is_some(), "its open connection is closed");
    let mut with_token = tui_params(&token, &["operator.read"]);
    with_token["auth"] = json!({"deviceToken": token});
    let (_, res) = Client::connect(&url, &remote, with_token, Some(&removed)).await.unwrap();
    assert!(err(&res)["details"]["code"].as_str().unwrap().starts_with("AUTH_"), "its token is gone: {res}");

    // Control-plane writes: 30 a minute per method and client, then UNAVAILABLE with a retry time.
    let mut last = Value::Null;
    for _ in 0..31 {
        last = c.request("config.patch", json!({"raw": "{}", "baseHash": "hmac-sha256:v1:x"})).await.unwrap();
    }
    let e = err(&last);
    assert_eq!(e["code"], "UNAVAILABLE");
    assert_eq!(e["details"], json!({"method": "config.patch", "limit": "30 per 60s"}));
    assert!(e["retryAfterMs"].as_u64().unwrap() > 1000);
    // Other methods are unaffected.
    assert!(ok(&c.request("sessions.list", json!({})).await.unwrap())["sessions"].is_array());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_cannot_escalate_tokens_revoke_and_non_readers_see_little() {
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    let (_dir, gw) = gateway(&server, "trustedProxies: [\"127.0.0.1\"]").await;
    let url = ws_url(&gw.base_url);
    let mut admin_c = admin(&url).await;
    let (_tui, res) = Client::connect(&url, &[], tui_params(TOKEN, ADMIN), Some(&Device::generate())).await.unwrap();
    ok(&res);
    let everyone = admin_c.request("system-presence", json!({})).await.unwrap();
    assert_eq!(ok(&everyone).as_array().map(Vec::len), Some(2), "a reader sees the gateway and the TUI");

    // An operator that may only pair: it sees the gateway but not who else is connected.
    let (mut pairer, res) = Client::connect(&url, &[], cli_params(TOKEN, &["operator.pairing"]), None).await.unwrap();
    let hello = ok(&res);
    assert_eq!(hello["snapshot"]["presence"].as_array().map(Vec::len), Some(1), "only the gateway: {hello}");
    assert_eq!(hello["snapshot"]["health"]["ok"], true);
    assert!(hello["snapshot"]["health"].get("sessions").is_none(), "no state for a non-reader");
    let health = pairer.request("health", json!({})).await.unwrap();
    let keys: Vec<&String> = ok(&health).as_object().unwrap().keys().collect();
    assert_eq!(keys, ["durationMs", "ok", "ts"], "{health}");

    // A remote device asks for admin. Retrying asks again under the same id.
    let phone = Device::generate();
    let remote = [("X-Forwarded-For", "203.0.113.8")];
    let (_, res) = Client::connect(&url, &remote, tui_params(TOKEN, ADMIN), Some(&phone)).await.unwrap();
    let id = err(&res)["details"]["requestId"].as_str().unwrap().to_string();
    let requested = pairer.event(T, |e| e["event"] == "device.pair.requested").await.expect("the pairer is told");
    assert_eq!(requested["payload"]["requestId"], id.as_str());
    let (_, res) = Client::connect(&url, &remote, tui_params(TOKEN, ADMIN), Some(&phone)).await.unwrap();
    assert_eq!(err(&res)["details"]["requestId"], id.as_str(), "a retry is the same request");
    let announced = pairer.frames.iter().filter(|f| f["event"] == "device.pair.requested").count();
    assert_eq!(announced, 1, "announced once");

    // The pairer cannot hand out admin; an admin can.
    let refused = pairer.request("device.pair.approve", json!({"requestId": id})).await.unwrap();
    assert_eq!(err(&refused)["details"]["code"], "SCOPE_ESCALATION", "{refused}");
    assert!(err(&refused)["message"].as_str().unwrap().contains("operator.admin"));
    ok(&admin_c.request("device.pair.approve", json!({"requestId": id})).await.unwrap());

    // Revoking the device's token closes its connection and the token stops working.
    let (mut p, res) = Client::connect(&url, &remote, tui_params(TOKEN, ADMIN), Some(&phone)).await.unwrap();
    let token = ok(&res)["auth"]["deviceToken"].as_str().unwrap().to_string();
    let revoked = admin_c.request("device.token.revoke", json!({"deviceId": phone.id(), "role": "operator"})).await;
    assert_eq!(ok(&revoked.unwrap())["revoked"], true);
    assert!(p.closed(T).await.is_some(), "its connection is closed");
    let mut with_token = tui_params(&token, ADMIN);
    with_token["auth"] = json!({"deviceToken": token});
    let (_, res) = Client::connect(&url, &remote, with_token, Some(&phone)).await.unwrap();
    assert!(err(&res)["details"]["code"].as_str().unwrap().starts_with("AUTH_"), "{res}");
    let unknown = admin_c.request("device.token.revoke", json!({"deviceId": "nope", "role": "operator"})).await;
    assert_eq!(err(&unknown.unwrap())["code"], "INVALID_REQUEST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_session_refuses_retryably_and_stores_nothing() {
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    server.push(Reply::slow("slow ", 2, Duration::from_secs(4)));
    let (_dir, gw) = gateway(&server, "").await;
    let url = ws_url(&gw.base_url);
    let mut c = admin(&url).await;
    let first =
        c.request("chat.send", json!({"sessionKey": "main", "message": "long one", "idempotencyKey": "busy-1"}));
    assert_eq!(ok(&first.await.unwrap())["status"], "started");

    // The second send waits five seconds for the session, then is refused with nothing stored.
    let second =
        c.request("chat.send", json!({"sessionKey": "main", "message": "too soon", "idempotencyKey": "busy-2"}));
    let second = second.await.unwrap();
    let e = err(&second);
    assert_eq!((e["code"].as_str(), e["details"]["code"].as_str()), (Some("UNAVAILABLE"), Some("session_busy")), "{e}");
    assert_eq!(e["retryable"], true);

    // Resetting stops the run and waits for it, then the transcript is empty.
    ok(&c.request("sessions.reset", json!({"key": "main"})).await.unwrap());
    let history = c.request("chat.history", json!({"sessionKey": "main"})).await.unwrap();
    assert_eq!(ok(&history)["messages"], json!([]), "{history}");
    let wait = c.request("agent.wait", json!({"runId": "busy-1", "timeoutMs": 5000})).await.unwrap();
    assert_eq!(ok(&wait)["status"], "aborted", "{wait}");
    let wait = c.request("agent.wait", json!({"runId": "busy-2", "timeoutMs": 100})).await.unwrap();
    assert_eq!(err(&wait)["message"], "unknown run: busy-2", "the refused send left no run");
}
