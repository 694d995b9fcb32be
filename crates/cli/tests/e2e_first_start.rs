//! First start on a clean machine: state dir, commented config, generated token stored
//! encrypted, and the config/token/doctor commands around it.

mod common;

use clawline_testkit::gateway::GatewayProcess;
use common::*;

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[cfg(unix)]
fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn first_start_creates_state_config_and_an_encrypted_token() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("home").join(".clawline");
    let mut gw = GatewayProcess::spawn(&bin(), &state, &[]).await.unwrap_or_else(|e| panic!("{e}"));
    let out = gw.lines().join("\n");
    assert!(out.contains("Created") && out.contains("clawline.json"), "{out}");
    // The token is the next line of standard output (log lines on stderr may come in between).
    let lines = gw.lines();
    let token = lines
        .iter()
        .position(|l| l.starts_with("Generated the gateway token"))
        .and_then(|i| lines[i + 1..].iter().find(|l| !l.starts_with("[stderr] ")).cloned())
        .map(|l| l.trim().to_string())
        .expect("the token is printed once");
    assert_eq!(token.len(), 48);
    assert!(out.contains(&format!("/#token={token}")), "the web chat link carries the token");

    // The token works, a wrong one does not.
    let models = format!("{}/v1/models", gw.base_url);
    assert_eq!(http().get(&models).bearer_auth(&token).send().await.unwrap().status(), 200);
    assert_eq!(http().get(&models).bearer_auth(TOKEN).send().await.unwrap().status(), 401);
    // The web page is served with a strict content security policy.
    let page = http().get(format!("{}/", gw.base_url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert_eq!(gw.terminate(), Some(0));

    // Files: private, and the token is nowhere in plain text.
    #[cfg(unix)]
    {
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join("clawline.json")), 0o600);
        assert_eq!(mode(&state.join("credentials/master.key")), 0o600);
        assert_eq!(mode(&state.join("state/clawline.sqlite")), 0o600);
        assert_eq!(mode(&state.join("logs")), 0o700);
    }
    let config = std::fs::read_to_string(state.join("clawline.json")).unwrap();
    assert!(config.starts_with("// clawline configuration"));
    for entry in walk(&state) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(!contains(&bytes, &token), "{} holds the token in plain text", entry.display());
    }
    // Logs are JSON lines.
    let logs: Vec<_> = std::fs::read_dir(state.join("logs")).unwrap().filter_map(Result::ok).collect();
    assert_eq!(logs.len(), 1);
    let text = std::fs::read_to_string(logs[0].path()).unwrap();
    assert!(text.lines().count() >= 2);
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string());
    }

    // `clawline token` prints the same token; the OPENCLAW_STATE_DIR alias finds the same state.
    let shown = cli(&state, &["token"]).await;
    assert_eq!(stdout(&shown).trim(), token);
    let mut cmd = clawline_testkit::gateway::command(&bin(), &state);
    cmd.env_remove("CLAWLINE_STATE_DIR").env("OPENCLAW_STATE_DIR", &state).arg("token");
    let aliased = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    assert_eq!(stdout(&aliased).trim(), token);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[tokio::test]
async fn config_set_get_validate_keep_comments_and_hide_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path();

    let out = cli(state, &["config", "validate"]).await;
    assert!(out.status.success());
    assert!(stdout(&out).contains("No config file"), "{}", stdout(&out));

    let out = cli(state, &["config", "set", "gateway.port", "19001"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(state.join("clawline.json")).unwrap();
    assert!(text.contains("// clawline configuration") && text.contains("port: 19001"), "{text}");
    assert_eq!(stdout(&cli(state, &["config", "get", "gateway.port"]).await).trim(), "19001");
    assert!(cli(state, &["config", "validate"]).await.status.success());

    // An invalid value is refused and the file is left alone.
    let out = cli(state, &["config", "set", "gateway.port", "high"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("gateway.port: wrong type"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(state.join("clawline.json")).unwrap(), text);

    // A literal secret is accepted with a warning and never printed back.
    let out = cli(state, &["config", "set", "gateway.auth.token", "literal-secret-token-0123"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("plain text"), "{}", stderr(&out));
    assert!(!stdout(&out).contains("literal-secret-token-0123"));
    assert_eq!(stdout(&cli(state, &["config", "get", "gateway.auth.token"]).await).trim(), "[redacted]");
    let whole = stdout(&cli(state, &["config", "get", "gateway"]).await);
    assert!(whole.contains("[redacted]") && !whole.contains("literal-secret"), "{whole}");
    let out = cli(state, &["config", "set", "gateway.auth.token", "${MY_TOKEN_VAR}"]).await;
    assert!(!out.status.success(), "an unset variable is refused");
    let out = cli(state, &["config", "get", "nothing.here"]).await;
    assert!(!out.status.success());

    // doctor: no model is a failure with a fix; everything is checked.
    let out = cli(state, &["doctor"]).await;
    assert!(!out.status.success());
    let report = stdout(&out);
    assert!(report.contains("FAIL  model") && report.contains("fix: set agents.defaults.model"), "{report}");
    let json: serde_json::Value = serde_json::from_slice(&cli(state, &["doctor", "--json"]).await.stdout).unwrap();
    assert_eq!(json["ok"], false);
    assert!(json["checks"].as_array().unwrap().len() >= 8);
    // The exec sandbox is reported for what this kernel really gives, never just "on".
    let sandbox = json["checks"].as_array().unwrap().iter().find(|c| c["name"] == "exec sandbox");
    let sandbox = sandbox.unwrap_or_else(|| panic!("no exec sandbox check: {json}"));
    let detail = sandbox["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("Landlock") || detail.contains("disabled"), "{sandbox}");

    // --help explains itself.
    let help = stdout(&cli(state, &["--help"]).await);
    for cmd in ["gateway", "agent", "config", "sessions", "doctor", "token"] {
        assert!(help.contains(cmd), "{help}");
    }
}
