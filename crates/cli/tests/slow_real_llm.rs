//! Slow lane, end to end against a real model: SmolLM2-135M-Instruct served by llama.cpp's
//! `llama-server`, reached through clawline's OpenAI-compatible `vllm` provider preset. Covers a
//! plain and a streamed `/v1/chat/completions` turn, usage in the response and the transcript,
//! and `clawline models list --discover`.
//!
//! `scripts/real-llm` builds the server and fetches the model into `target/real-llm/` and writes
//! their paths to `target/real-llm/env`. Without that file the test fails, unless
//! `CLAWLINE_SKIP_REAL_LLM=1`. The answers are not checked word for word: only that there are some.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clawline_testkit::sse_client;
use common::*;
use serde_json::{Value, json};

/// Paths written by `scripts/real-llm`: the llama-server binary and the GGUF model.
fn prepared() -> Option<(PathBuf, PathBuf)> {
    let env_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/real-llm/env");
    let text = std::fs::read_to_string(&env_file).ok()?;
    let value =
        |key: &str| text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).map(|v| PathBuf::from(v.trim()));
    let (server, model) = (value("LLAMA_SERVER")?, value("REAL_LLM_MODEL")?);
    (server.is_file() && model.is_file()).then_some((server, model))
}

/// A running llama-server, killed when dropped.
struct LlamaServer {
    child: Child,
    base_url: String,
    output: Arc<Mutex<Vec<String>>>,
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pump(reader: impl std::io::Read + Send + 'static, sink: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            let mut lines = sink.lock().unwrap_or_else(|p| p.into_inner());
            if lines.len() > 2000 {
                lines.remove(0);
            }
            lines.push(line);
        }
    });
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl LlamaServer {
    /// Starts the server on a free loopback port and waits (at most 60 s) until `/health` says
    /// the model is loaded. Retries with another port if the first one was taken meanwhile.
    async fn start(bin: &Path, model: &Path) -> LlamaServer {
        let mut last_error = String::new();
        for _ in 0..3 {
            match Self::try_start(bin, model, free_port()).await {
                Ok(server) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("llama-server did not start:\n{last_error}");
    }

    async fn try_start(bin: &Path, model: &Path, port: u16) -> Result<LlamaServer, String> {
        let mut cmd = Command::new(bin);
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string(), "-m"])
            .arg(model)
            .args(["--ctx-size", "2048", "--threads", "2", "--alias", "smollm2", "--parallel", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl(2) is async-signal-safe and touches no memory of this process. The
            // server gets SIGKILL if the test thread that spawned it dies without dropping it.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let output = Arc::new(Mutex::new(Vec::new()));
        pump(child.stdout.take().unwrap(), output.clone());
        pump(child.stderr.take().unwrap(), output.clone());
        let mut server = LlamaServer { child, base_url: format!("http://127.0.0.1:{port}"), output };
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("llama-server exited with {status}:\n{}", server.log()));
            }
            if let Ok(r) = client.get(format!("{}/health", server.base_url)).send().await
                && r.status().is_success()
            {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("llama-server was not ready in 60 s:\n{}", server.log()))
    }

    fn log(&self) -> String {
        let lines = self.output.lock().unwrap_or_else(|p| p.into_inner());
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// `VmRSS` and `VmHWM` (peak) from /proc, for the log.
    fn memory(&self) -> String {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .filter(|l| l.starts_with("VmRSS") || l.starts_with("VmHWM"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn write_real_config(dir: &Path, llm: &LlamaServer) {
    let text = format!(
        r#"// written by the slow real-LLM test
{{
  gateway: {{ auth: {{ token: "${{E2E_TOKEN}}" }} }},
  models: {{ providers: {{ vllm: {{ baseUrl: "{}/v1",
             models: [{{ id: "smollm2", contextWindow: 2048, maxTokens: 64 }}] }} }} }},
  agents: {{ defaults: {{ model: "vllm/smollm2", maxTurns: 2, timeoutSeconds: 120 }} }},
  // A 135M model is confused by tool schemas; offer none.
  tools: {{ allow: [] }},
}}
"#,
        llm.base_url
    );
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("clawline.json"), text).unwrap();
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(180)).build().unwrap()
}

#[tokio::test]
async fn a_real_small_model_answers_through_the_vllm_preset() {
    let Some((server_bin, model)) = prepared() else {
        if std::env::var("CLAWLINE_SKIP_REAL_LLM").as_deref() == Ok("1") {
            eprintln!("slow_real_llm: skipped (CLAWLINE_SKIP_REAL_LLM=1)");
            return;
        }
        panic!(
            "target/real-llm/env is missing or points at missing files: run scripts/real-llm first \
             (it builds llama-server and fetches the model), or set CLAWLINE_SKIP_REAL_LLM=1 to skip this test"
        );
    };
    let started = Instant::now();
    let llm = LlamaServer::start(&server_bin, &model).await;
    eprintln!("llama-server ready at {} in {:?} ({})", llm.base_url, started.elapsed(), llm.memory());

    let dir = tempfile::tempdir().unwrap();
    write_real_config(dir.path(), &llm);

    // Discovery asks the server's /v1/models, which lists the alias.
    let out = cli(dir.path(), &["models", "list", "--discover", "--json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    let row = rows["models"]
        .as_array()
        .unwrap_or_else(|| panic!("no models array: {rows:#}"))
        .iter()
        .find(|r| r["model"] == "vllm/smollm2")
        .unwrap_or_else(|| panic!("vllm/smollm2 not listed: {rows:#}\n{}", stderr(&out)));
    assert_eq!(row["available"], true, "{row:#}");
    assert!(row["status"].as_str().unwrap().contains("listed by the provider"), "{row:#}\n{}", stderr(&out));
    let out = cli(dir.path(), &["models", "list", "--discover"]).await;
    assert!(out.status.success() && stdout(&out).contains("vllm/smollm2"), "{}{}", stdout(&out), stderr(&out));

    let gw = spawn(dir.path()).await;

    // A plain turn.
    let t = Instant::now();
    let resp = client()
        .post(format!("{}/v1/chat/completions", gw.base_url))
        .bearer_auth(TOKEN)
        .header("x-clawline-session-key", "real")
        .json(&json!({
            "model": "clawline",
            "messages": [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
        }))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{body:#}\n{}\n{}", gw.lines().join("\n"), llm.log());
    let answer = body["choices"][0]["message"]["content"].as_str().unwrap_or_default();
    eprintln!("plain answer in {:?}: {answer:?}, usage {}", t.elapsed(), body["usage"]);
    assert!(!answer.trim().is_empty(), "empty answer: {body:#}\n{}", llm.log());
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 0, "{body:#}");
    assert!(body["usage"]["completion_tokens"].as_u64().unwrap() > 0, "{body:#}");

    let recs = records(&gw.base_url, "real").await;
    assert_eq!(shape(&recs), ["session", "user", "assistant"], "{recs:#?}");
    let reply = &recs[2]["message"];
    assert!(reply["usage"]["totalTokens"].as_u64().unwrap() > 0, "{reply:#}");
    assert!(reply["usage"]["output"].as_u64().unwrap() > 0, "{reply:#}");
    assert_eq!(reply["provider"], "vllm", "{reply:#}");

    // A streamed turn: the text comes in several deltas, over several network reads.
    let t = Instant::now();
    let mut resp = client()
        .post(format!("{}/v1/chat/completions", gw.base_url))
        .bearer_auth(TOKEN)
        .header("x-clawline-session-key", "real-stream")
        .json(&json!({
            "model": "clawline",
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "Name three colours of the rainbow."}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let (mut raw, mut reads_with_text) = (String::new(), 0);
    while let Some(bytes) = resp.chunk().await.unwrap() {
        let piece = String::from_utf8_lossy(&bytes);
        if sse_client::parse(&piece).iter().any(|e| {
            serde_json::from_str::<Value>(&e.data)
                .ok()
                .and_then(|c| c["choices"][0]["delta"]["content"].as_str().map(|s| !s.is_empty()))
                .unwrap_or(false)
        }) {
            reads_with_text += 1;
        }
        raw.push_str(&piece);
    }
    let events = sse_client::parse(&raw);
    assert_eq!(events.last().map(|e| e.data.as_str()), Some("[DONE]"), "{raw}");
    let chunks: Vec<Value> =
        events.iter().filter(|e| e.data != "[DONE]").map(|e| serde_json::from_str(&e.data).unwrap()).collect();
    assert!(chunks.iter().all(|c| c.get("error").is_none()), "{raw}\n{}", llm.log());
    let deltas: Vec<&str> =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).filter(|s| !s.is_empty()).collect();
    let text = deltas.concat();
    eprintln!("streamed answer in {:?}: {text:?} ({} deltas in {reads_with_text} reads)", t.elapsed(), deltas.len());
    assert!(!text.trim().is_empty(), "{raw}");
    assert!(deltas.len() > 1, "the answer came in one piece: {raw}");
    assert!(reads_with_text > 1, "the deltas were not streamed: {raw}");
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"].is_string()), "{raw}");
    let usage = chunks.iter().find(|c| c["usage"].is_object()).expect("a usage chunk");
    assert!(usage["usage"]["total_tokens"].as_u64().unwrap() > 0, "{usage}");
    let recs = records(&gw.base_url, "real-stream").await;
    assert_eq!(shape(&recs), ["session", "user", "assistant"]);
    assert!(recs[2]["message"]["usage"]["totalTokens"].as_u64().unwrap() > 0);

    eprintln!("llama-server memory after the turns: {}; test took {:?}", llm.memory(), started.elapsed());
}
