//! End to end: `clawline auth login` against the testkit authorization server — PKCE with the
//! loopback redirect, the paste fallback, a state that does not match — MiniMax's user-code
//! sign-in against its portal twin, and the stored OAuth profile then used by the gateway as a
//! bearer token.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use clawline_testkit::gateway::command;
use clawline_testkit::model_server::{Api, ModelServer, Reply};
use clawline_testkit::oauth_server::{OAuthConfig, OAuthServer};
use common::*;
use serde_json::json;

fn write(dir: &std::path::Path, oauth: &OAuthServer, model: &ModelServer) {
    let config = format!(
        r#"{{
  gateway: {{ auth: {{ token: "${{E2E_TOKEN}}" }} }},
  models: {{ providers: {{ anthropic: {{
    baseUrl: "{}",
    oauth: {{ authorizeUrl: "{}", tokenUrl: "{}", clientId: "clawline-e2e", scopes: ["user:inference"], redirectPort: 0 }},
  }} }} }},
  agents: {{ defaults: {{ model: "anthropic/claude-sonnet-4-5" }} }},
}}"#,
        model.base_url(),
        oauth.authorize_url(),
        oauth.token_url()
    );
    std::fs::write(dir.join("clawline.json"), config).unwrap();
}

/// Starts `clawline auth login …` with piped stdio; stdout lines arrive on the channel.
fn login(dir: &std::path::Path, args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut cmd = command(&bin(), dir);
    cmd.envs(env())
        .args(["auth", "login"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

fn sign_in_url(rx: &mpsc::Receiver<String>) -> String {
    loop {
        let line = rx.recv_timeout(Duration::from_secs(20)).expect("the login prints an address");
        if let Some(url) = line.trim().strip_prefix("http") {
            return format!("http{url}");
        }
    }
}

/// What a browser does: open the address, and be sent back (`Location`).
async fn browser(url: &str) -> String {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = http.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 302, "{:?}", resp.text().await);
    resp.headers()["location"].to_str().unwrap().to_string()
}

fn finish(mut child: Child, rx: &mpsc::Receiver<String>) -> (bool, String, String) {
    let status = child.wait().unwrap();
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
    let out: Vec<String> = rx.try_iter().collect();
    (status.success(), out.join("\n"), err)
}

/// One chat turn through the gateway; the bearer token the model server received.
async fn one_turn(base_url: &str, model: &ModelServer) -> String {
    let resp = http()
        .post(format!("{base_url}/v1/chat/completions"))
        .bearer_auth(TOKEN)
        .json(&json!({"model": "clawline", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    let r = &model.requests()[0];
    r.header("authorization").and_then(|v| v.strip_prefix("Bearer ")).unwrap().to_string()
}

#[tokio::test]
async fn browser_sign_in_then_the_gateway_uses_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let oauth = OAuthServer::start(OAuthConfig::new("clawline-e2e").scopes(&["user:inference"])).await;
    let model = ModelServer::start(Api::Anthropic, None).await;
    write(dir.path(), &oauth, &model);

    let (child, rx) = login(dir.path(), &["anthropic", "--no-open"]);
    let url = sign_in_url(&rx);
    assert!(url.contains("code_challenge_method=S256") && url.contains("state="), "{url}");
    let back = browser(&url).await;
    assert!(back.starts_with("http://localhost:") && back.contains("/callback?code="), "{back}");
    let page = reqwest::get(back.replace("localhost", "127.0.0.1")).await.unwrap();
    assert_eq!(page.status(), 200);
    let (ok, out, err) = tokio::task::spawn_blocking(move || finish(child, &rx)).await.unwrap();
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("Signed in: stored anthropic:default (oauth), encrypted"), "{out}");

    // The token request carried the verifier for the challenge, and the state was checked.
    let token_req = oauth.requests().into_iter().find(|r| r.path == "/token").unwrap();
    assert_eq!(token_req.param("grant_type"), Some("authorization_code"));
    assert!(token_req.param("code_verifier").is_some_and(|v| v.len() == 43));
    assert_eq!(token_req.content_type.as_deref(), Some("application/json"), "Anthropic's endpoint takes JSON");

    let listed = stdout(&cli(dir.path(), &["auth", "list"]).await);
    assert!(listed.contains("anthropic:default") && listed.contains("oauth"), "{listed}");

    // The gateway sends the access token as a bearer token with the OAuth flag.
    let gw = spawn(dir.path()).await;
    model.push(Reply::text("hello via oauth"));
    let bearer = one_turn(&gw.base_url, &model).await;
    let r = &model.requests()[0];
    assert!(oauth.is_valid_access_token(&bearer), "the stored access token was sent");
    assert_eq!(r.header("anthropic-beta"), Some("oauth-2025-04-20"));
    assert!(r.header("x-api-key").is_none());
}

#[tokio::test]
async fn headless_paste_and_a_forged_state() {
    let dir = tempfile::tempdir().unwrap();
    let oauth = OAuthServer::start(OAuthConfig::new("clawline-e2e").scopes(&["user:inference"])).await;
    let model = ModelServer::start(Api::Anthropic, None).await;
    write(dir.path(), &oauth, &model);

    // --paste: no listener; the user pastes the address the browser ended on.
    let (mut child, rx) = login(dir.path(), &["anthropic", "--paste", "--name", "headless"]);
    let back = browser(&sign_in_url(&rx)).await;
    writeln!(child.stdin.as_mut().unwrap(), "{back}").unwrap();
    let (ok, out, err) = tokio::task::spawn_blocking(move || finish(child, &rx)).await.unwrap();
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("stored anthropic:headless (oauth)"), "{out}");

    // A pasted address whose state is not this sign-in's is refused before the code is spent.
    let (mut child, rx) = login(dir.path(), &["anthropic", "--paste", "--name", "forged"]);
    let back = browser(&sign_in_url(&rx)).await;
    let forged = back.split("&state=").next().unwrap().to_string() + "&state=0123456789abcdef";
    writeln!(child.stdin.as_mut().unwrap(), "{forged}").unwrap();
    let (ok, _, err) = tokio::task::spawn_blocking(move || finish(child, &rx)).await.unwrap();
    assert!(!ok);
    assert!(err.contains("state does not match"), "{err}");
    let tokens = oauth.requests().iter().filter(|r| r.path == "/token").count();
    assert_eq!(tokens, 1, "the forged callback never reached the token endpoint");
}

#[tokio::test]
async fn minimax_user_code_sign_in_then_the_gateway_uses_the_token() {
    use clawline_testkit::minimax_oauth_server::MiniMaxPortal;
    let dir = tempfile::tempdir().unwrap();
    let portal = MiniMaxPortal::start("clawline-e2e", Duration::from_millis(50)).await;
    let model = ModelServer::start(Api::Anthropic, None).await;
    let config = format!(
        r#"{{
  gateway: {{ auth: {{ token: "${{E2E_TOKEN}}" }} }},
  models: {{ providers: {{ minimax: {{
    baseUrl: "{}",
    oauth: {{ deviceUrl: "{}", tokenUrl: "{}", clientId: "clawline-e2e" }},
  }} }} }},
  agents: {{ defaults: {{ model: "minimax/MiniMax-M2.7" }} }},
}}"#,
        model.base_url(),
        portal.code_url(),
        portal.token_url()
    );
    std::fs::write(dir.path().join("clawline.json"), config).unwrap();

    let (child, rx) = login(dir.path(), &["minimax"]);
    // The user reads the code off the terminal (read off the runtime, which serves the portal).
    let (code, child, rx) = tokio::task::spawn_blocking(move || {
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
            if let Some(code) = line.trim().strip_prefix("and enter the code: ") {
                return (code.to_string(), child, rx);
            }
        }
        let (_, out, err) = finish(child, &rx);
        panic!("the login printed no code:\n{out}\n{err}");
    })
    .await
    .unwrap();
    assert!(portal.approve(&code), "the printed code is the portal's: {code}");
    let (ok, out, err) = tokio::task::spawn_blocking(move || finish(child, &rx)).await.unwrap();
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("Signed in: stored minimax:default (oauth), encrypted"), "{out}");
    assert_eq!(portal.early_polls(), 0);

    let gw = spawn(dir.path()).await;
    model.push(Reply::text("hello via minimax"));
    let bearer = one_turn(&gw.base_url, &model).await;
    assert!(portal.is_valid_access_token(&bearer), "the portal's access token was sent");
}

#[tokio::test]
async fn auth_usage_shows_what_is_left_of_a_plan() {
    use clawline_testkit::usage_server::{UsageApi, UsageServer};
    let dir = tempfile::tempdir().unwrap();
    let usage = UsageServer::start("zai-key-0123456789").await;
    let config = format!(
        r#"{{ gateway: {{ auth: {{ token: "${{E2E_TOKEN}}" }} }},
              models: {{ providers: {{ zai: {{ usageUrl: "{}" }} }} }} }}"#,
        usage.url(UsageApi::Zai)
    );
    std::fs::write(dir.path().join("clawline.json"), config).unwrap();
    let added = cli_env(dir.path(), &["auth", "add", "zai", "--from-env", "K"], &[("K", "zai-key-0123456789")]).await;
    assert!(added.status.success(), "{}", stderr(&added));
    let out = cli(dir.path(), &["auth", "usage"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("zai:default (pro)"), "{text}");
    assert!(text.contains("5h") && text.contains("12% used"), "{text}");
    assert!(!text.contains("zai-key-0123456789"));
    let req = &usage.requests()[0];
    assert_eq!(req.header("authorization"), Some("Bearer zai-key-0123456789"));
}
