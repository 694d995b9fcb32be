//! Shared helpers for the end-to-end tests: a state dir with a config pointing at a model
//! twin, and the real binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use clawline_testkit::gateway::{GatewayProcess, command};
use clawline_testkit::model_server::{Api, ModelServer};

pub const TOKEN: &str = "e2e-gateway-token-0123456789abcdef";
pub const KEY: &str = "sk-e2e-model-key-987654321";

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_clawline"))
}

pub fn env() -> Vec<(&'static str, &'static str)> {
    vec![("E2E_TOKEN", TOKEN), ("TWIN_KEY", KEY)]
}

/// Writes `<dir>/clawline.json` for a twin of `api`. `extra` is spliced in at the top level;
/// `gateway_extra` inside `gateway`.
pub fn write_config(dir: &Path, server: &ModelServer, api: Api, extra: &str) {
    write_config_with(dir, server, api, "", extra)
}

pub fn write_config_with(dir: &Path, server: &ModelServer, api: Api, gateway_extra: &str, extra: &str) {
    let api_name = match api {
        Api::OpenAi => "openai-completions",
        Api::Anthropic => "anthropic-messages",
    };
    let text = format!(
        r#"// written by the e2e tests
{{
  gateway: {{ auth: {{ token: "${{E2E_TOKEN}}" }}, {gateway_extra} }},
  models: {{ providers: {{ twin: {{ baseUrl: "{}", api: "{api_name}", apiKey: "${{TWIN_KEY}}",
             models: [{{ id: "twin-model", cost: {{ input: 1, output: 2 }} }}] }} }} }},
  agents: {{ defaults: {{ model: "twin/twin-model" }} }},
  {extra}
}}
"#,
        server.base_url()
    );
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("clawline.json"), text).unwrap();
}

pub async fn spawn(dir: &Path) -> GatewayProcess {
    GatewayProcess::spawn(&bin(), dir, &env()).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `clawline <args>` against `dir` and returns its output. It runs on a blocking thread so
/// the test's runtime keeps serving the model twin meanwhile.
pub async fn cli(dir: &Path, args: &[&str]) -> Output {
    cli_env(dir, args, &[]).await
}

pub async fn cli_env(dir: &Path, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
    let mut cmd = command(&bin(), dir);
    for (k, v) in env().into_iter().chain(extra_env.iter().copied()) {
        cmd.env(k, v);
    }
    cmd.args(args);
    tokio::task::spawn_blocking(move || cmd.output().expect("run clawline")).await.expect("join")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// The transcript records of a session, read through the API.
pub async fn records(base: &str, key: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value = http()
        .get(format!("{base}/api/sessions/history?key={key}&limit=1000"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["records"].as_array().cloned().unwrap_or_default()
}

/// A compact picture of a transcript: `user`, `assistant(toolCall)`, `toolResult`, …
pub fn shape(records: &[serde_json::Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| match r["type"].as_str().unwrap_or_default() {
            "message" => {
                let m = &r["message"];
                match m["role"].as_str().unwrap_or_default() {
                    "assistant" => {
                        let calls = m["content"].as_array().is_some_and(|c| c.iter().any(|b| b["type"] == "toolCall"));
                        if calls { "assistant(toolCall)".into() } else { "assistant".into() }
                    }
                    "toolResult" if m["isError"] == true => "toolResult!".into(),
                    other => other.to_string(),
                }
            }
            "custom_message" => format!("custom:{}", r["customType"].as_str().unwrap_or_default()),
            other => other.to_string(),
        })
        .collect()
}
