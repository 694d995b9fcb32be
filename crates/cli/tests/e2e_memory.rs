//! End to end: `clawline memory index|status|search` on a real state directory — text-only with
//! its reason when no embedder is set up, hybrid against the embeddings twin, an embedding
//! failure reported with exit code 1 while search goes on, and a bad `memory.search` key named
//! with its file and line.

mod common;

use clawline_testkit::embeddings_server::{Dialect, EmbeddingsServer};
use clawline_testkit::model_server::{Api, ModelServer};
use common::*;
use serde_json::Value;

fn json(o: &std::process::Output) -> Value {
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(o), stderr(o)))
}

fn memory_files(dir: &std::path::Path) {
    let ws = dir.join("workspace");
    std::fs::create_dir_all(ws.join("memory")).unwrap();
    std::fs::write(ws.join("MEMORY.md"), "# Household\nThe boiler service is due every October.\n").unwrap();
    std::fs::write(ws.join("memory/2026-11-20.md"), "Booked the boiler engineer for 3 November.\n").unwrap();
    std::fs::write(ws.join("memory/scan.md"), b"\x00\x01binary").unwrap();
}

#[tokio::test]
async fn text_only_index_status_and_search() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    write_config(dir.path(), &server, Api::OpenAi, "");
    memory_files(dir.path());

    let out = cli(dir.path(), &["memory", "index"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("2 changed"), "{text}");
    assert!(text.contains("skipped memory/scan.md — is binary"), "{text}");

    let status = json(&cli(dir.path(), &["memory", "status", "--json"]).await);
    let s = &status["status"];
    assert_eq!(s["mode"], "text-only");
    assert!(s["reason"].as_str().unwrap().contains("OPENAI_API_KEY"), "{s}");
    assert_eq!((s["files"].as_u64(), s["vectors"].as_u64()), (Some(2), Some(0)), "MEMORY.md and the note");

    let found = json(&cli(dir.path(), &["memory", "search", "when is the boiler engineer coming?", "--json"]).await);
    assert_eq!(found["results"][0]["path"], "memory/2026-11-20.md", "{found}");
    let human = stdout(&cli(dir.path(), &["memory", "search", "boiler"]).await);
    assert!(human.starts_with("Search: text-only"), "{human}");

    // The gateway's state directory stays private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("memory")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0);
    }
}

#[tokio::test]
async fn hybrid_with_an_embedding_api_and_a_failure_reported() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    let emb = EmbeddingsServer::start(Some("emb-e2e-key-0123"), Dialect::OpenAi, 24).await;
    let extra = format!(
        r#"memory: {{ search: {{ provider: "openai-compatible", model: "e2e-embed",
             remote: {{ baseUrl: "{}/v1", apiKey: "${{EMB_KEY}}" }} }} }},"#,
        emb.base_url()
    );
    write_config(dir.path(), &server, Api::OpenAi, &extra);
    memory_files(dir.path());
    let env = [("EMB_KEY", "emb-e2e-key-0123")];

    let out = cli_env(dir.path(), &["memory", "index", "--json"], &env).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["report"]["embedded"], 2, "{report}");
    let status = json(&cli_env(dir.path(), &["memory", "status", "--json"], &env).await);
    assert_eq!(status["status"]["mode"], "hybrid", "{status}");
    assert_eq!((status["status"]["dims"].as_u64(), status["status"]["vectors"].as_u64()), (Some(24), Some(2)));
    let found = json(&cli_env(dir.path(), &["memory", "search", "boiler service October", "--json"], &env).await);
    assert_eq!(found["mode"]["mode"], "hybrid");
    assert_eq!(found["results"][0]["path"], "MEMORY.md", "{found}");

    // The provider fails: the new note stays text-only, the command says so and exits 1.
    std::fs::write(dir.path().join("workspace/memory/2026-11-29.md"), "Engineer confirmed by email.\n").unwrap();
    for _ in 0..3 {
        emb.fail_next(500, None);
    }
    let out = cli_env(dir.path(), &["memory", "index"], &env).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("embedding failed") && stderr(&out).contains("HTTP 500"), "{}", stderr(&out));
    let found = json(&cli_env(dir.path(), &["memory", "search", "engineer confirmed email", "--json"], &env).await);
    assert!(found["results"].as_array().unwrap().iter().any(|r| r["path"] == "memory/2026-11-29.md"), "{found}");
    assert!(!stdout(&out).contains("emb-e2e-key-0123") && !stderr(&out).contains("emb-e2e-key-0123"));
}

/// `memory.search.remote.batch`: a sync with enough texts goes through the batch API twin
/// (files + batches), and what it returns is used as vectors; a failed batch falls back.
#[tokio::test]
async fn a_large_index_run_uses_the_batch_api() {
    use clawline_testkit::embedding_batch_server::{BatchDialect, BatchServer};
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    let batch = BatchServer::start("emb-batch-key-0123", BatchDialect::OpenAi, 16).await;
    let extra = format!(
        r#"memory: {{ search: {{ provider: "openai-compatible", model: "e2e-embed",
             remote: {{ baseUrl: "{}/v1", apiKey: "${{EMB_KEY}}", batch: {{ enabled: true, minChunks: 2, pollIntervalMs: 100 }} }} }} }},"#,
        batch.base_url()
    );
    write_config(dir.path(), &server, Api::OpenAi, &extra);
    memory_files(dir.path());
    let env = [("EMB_KEY", "emb-batch-key-0123")];
    let out = cli_env(dir.path(), &["memory", "index", "--json"], &env).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(
        (report["report"]["batchEmbedded"].as_u64(), report["report"]["embedded"].as_u64()),
        (Some(2), Some(0)),
        "{report}"
    );
    assert_eq!(batch.texts_embedded(), 2);
    assert_eq!(batch.files(), 0, "the uploaded and result files are deleted");
    let status = json(&cli_env(dir.path(), &["memory", "status", "--json"], &env).await);
    assert_eq!(
        (status["status"]["vectors"].as_u64(), status["status"]["dims"].as_u64()),
        (Some(2), Some(16)),
        "{status}"
    );

    // A batch that fails is reported; the direct call (which this twin does not serve) fails too,
    // so the command exits 1 with both reasons.
    std::fs::write(dir.path().join("workspace/memory/2026-11-30.md"), "Radiator bled.\nThermostat set to 19.\n")
        .unwrap();
    std::fs::write(dir.path().join("workspace/memory/2026-12-01.md"), "Chimney swept.\n").unwrap();
    batch.fail_batch(Some("batch quota exceeded"));
    let out = cli_env(dir.path(), &["memory", "index"], &env).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("batch API was not used") && stderr(&out).contains("batch quota exceeded"),
        "{}",
        stderr(&out)
    );
}

/// `clawline doctor` says what memory will do: text-only and why, a model still to download,
/// a batch setting the provider cannot use.
#[tokio::test]
async fn doctor_reports_memory() {
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    let doctor = |extra: &'static str| {
        let server = &server;
        async move {
            let dir = tempfile::tempdir().unwrap();
            write_config(dir.path(), server, Api::OpenAi, extra);
            let env: &[(&str, &str)] =
                if extra.contains("mistral") { &[("MISTRAL_API_KEY", "mistral-key-0123")] } else { &[] };
            let out = cli_env(dir.path(), &["doctor", "--json"], env).await;
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            v["checks"].as_array().unwrap().iter().filter(|c| c["name"] == "memory").cloned().collect::<Vec<Value>>()
        }
    };
    let text_only = doctor("").await;
    assert_eq!(text_only[0]["status"], "warn", "{text_only:?}");
    assert!(text_only[0]["detail"].as_str().unwrap().contains("text-only"), "{text_only:?}");
    let hf = doctor(r#"memory: { search: { provider: "local", model: "hf:acme/embedder" } },"#).await;
    let detail = hf[0]["detail"].as_str().unwrap();
    if cfg!(feature = "local-embeddings") {
        assert!(detail.contains("hf:acme/embedder@main is not downloaded yet"), "{hf:?}");
        assert!(hf[0]["fix"].as_str().unwrap().contains("clawline memory index"), "{hf:?}");
    } else {
        assert!(detail.contains("built without local embeddings"), "{hf:?}");
    }
    let batch = doctor(r#"memory: { search: { provider: "mistral", remote: { batch: { enabled: true } } } },"#).await;
    assert_eq!(batch[0]["status"], "ok", "{batch:?}");
    assert!(batch[1]["detail"].as_str().unwrap().contains("no batch API"), "{batch:?}");
    let off = doctor("memory: { search: { enabled: false } },").await;
    assert_eq!(
        (off[0]["status"].as_str(), off[0]["detail"].as_str()),
        (Some("ok"), Some("off (memory.search.enabled: false)"))
    );
}

#[tokio::test]
async fn a_bad_memory_setting_is_named_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    write_config(dir.path(), &server, Api::OpenAi, "memory: { search: { query: { minScore: 1.5 } } },");
    let out = cli(dir.path(), &["memory", "status"]).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("memory.search.query.minScore") && err.contains("clawline.json:"), "{err}");
    assert!(err.contains("from 0 to 1"), "{err}");
}

/// The model folder `scripts/local-embeddings` unpacked, or `None` when the lane may be skipped.
#[cfg(feature = "local-embeddings")]
fn local_model() -> Option<String> {
    let env = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/local-embeddings/env");
    let text = std::fs::read_to_string(&env).unwrap_or_default();
    match text.lines().find_map(|l| l.strip_prefix("MINILM_DIR=")) {
        Some(dir) if std::path::Path::new(dir).join("model.safetensors").is_file() => Some(dir.to_string()),
        _ if std::env::var("CLAWLINE_SKIP_LOCAL_EMBEDDINGS").as_deref() == Ok("1") => None,
        _ => panic!(
            "target/local-embeddings/env is missing: run scripts/local-embeddings, or set CLAWLINE_SKIP_LOCAL_EMBEDDINGS=1"
        ),
    }
}

#[cfg(feature = "local-embeddings")]
#[tokio::test]
async fn local_embeddings_in_process() {
    let Some(model) = local_model() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    write_config(
        dir.path(),
        &server,
        Api::OpenAi,
        &format!(r#"memory: {{ search: {{ provider: "local", model: "{model}", query: {{ minScore: 0.2 }} }} }},"#),
    );
    memory_files(dir.path());
    let out = cli(dir.path(), &["memory", "index", "--json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["report"]["embedded"], 2);
    let status = json(&cli(dir.path(), &["memory", "status", "--json"]).await);
    let s = &status["status"];
    assert_eq!(
        (s["mode"].as_str(), s["provider"].as_str(), s["dims"].as_u64()),
        (Some("hybrid"), Some("local"), Some(384)),
        "{s}"
    );
    // "heating" appears nowhere: the vectors find the boiler notes (a small model's cosines for
    // a paraphrase are around 0.3, hence the lower threshold).
    let found = json(&cli(dir.path(), &["memory", "search", "when does the heating get checked", "--json"]).await);
    assert_eq!(found["mode"]["mode"], "hybrid");
    let first = found["results"][0]["path"].as_str().unwrap();
    assert!(first == "MEMORY.md" || first == "memory/2026-11-20.md", "{found}");
}

/// `memory.search.model: "hf:…"`: the model is downloaded from the hub (a twin serving the real
/// MiniLM files) into the state directory once, then runs in process.
#[cfg(feature = "local-embeddings")]
#[tokio::test]
async fn an_hf_model_is_downloaded_once_into_the_state_dir() {
    use clawline_testkit::hf_server::HfServer;
    let Some(model) = local_model() else { return };
    let hub = HfServer::start().await;
    let repo = "sentence-transformers/all-MiniLM-L6-v2";
    for (file, lfs) in [("config.json", false), ("tokenizer.json", false), ("model.safetensors", true)] {
        hub.add(repo, "main", file, std::fs::read(std::path::Path::new(&model).join(file)).unwrap(), lfs);
    }
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    write_config(
        dir.path(),
        &server,
        Api::OpenAi,
        &format!(r#"memory: {{ search: {{ provider: "local", model: "hf:{repo}", query: {{ minScore: 0.2 }} }} }},"#),
    );
    memory_files(dir.path());
    let env = [("HF_ENDPOINT", hub.endpoint()), ("HF_TOKEN", "hf_e2e_token".to_string())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = cli_env(dir.path(), &["memory", "index", "--json"], &env).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("Downloading hf:{repo}@main")), "{}", stderr(&out));
    assert!(!stderr(&out).contains("hf_e2e_token"), "the token is never printed");
    assert_eq!(json(&out)["report"]["embedded"], 2);
    let folder = dir.path().join("models/hf/sentence-transformers--all-MiniLM-L6-v2/main");
    assert!(folder.join("model.safetensors").is_file() && folder.join("tokenizer.json").is_file());
    let fetched = hub.requests().len();

    let found =
        json(&cli_env(dir.path(), &["memory", "search", "when does the heating get checked", "--json"], &env).await);
    assert_eq!(found["mode"]["mode"], "hybrid", "{found}");
    let status = json(&cli_env(dir.path(), &["memory", "status", "--json"], &env).await);
    assert_eq!(status["status"]["model"], "all-MiniLM-L6-v2", "{status}");
    assert_eq!(hub.requests().len(), fetched, "downloaded once");
}

/// The gateway's `doctor.memory.status` and `memory.search` over the WebSocket protocol: the
/// mode and its reason, the embedder probed on request, results like the tool's, and bad
/// parameters refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_reports_and_searches_memory() {
    use clawline_testkit::ws_client::{Client, cli_params};
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    let emb = EmbeddingsServer::start(Some("emb-ws-key-0123"), Dialect::OpenAi, 24).await;
    let extra = format!(
        r#"memory: {{ search: {{ provider: "openai-compatible", model: "e2e-embed",
             remote: {{ baseUrl: "{}/v1", apiKey: "emb-ws-key-0123" }} }} }},"#,
        emb.base_url()
    );
    write_config(dir.path(), &server, Api::OpenAi, &extra);
    memory_files(dir.path());
    let gw = spawn(dir.path()).await;
    let url = gw.base_url.replacen("http://", "ws://", 1);
    let (mut c, res) = Client::connect(&url, &[], cli_params(TOKEN, &["operator.read"]), None).await.unwrap();
    assert_eq!(res["ok"], true, "{res}");
    let ok = |res: serde_json::Value| {
        assert_eq!(res["ok"], true, "{res}");
        res["payload"].clone()
    };

    let found =
        ok(c.request("memory.search", json!({"query": "boiler service October", "maxResults": 3})).await.unwrap());
    assert_eq!((found["agentId"].as_str(), found["searchMode"].as_str()), (Some("main"), Some("hybrid")), "{found}");
    assert_eq!(found["provider"], "openai-compatible");
    assert_eq!(found["results"][0]["path"], "MEMORY.md", "{found}");
    assert!(found["results"][0]["snippet"].as_str().unwrap().contains("boiler"));
    assert!(found["results"].as_array().unwrap().len() <= 3);

    let status = ok(c.request("doctor.memory.status", json!({})).await.unwrap());
    assert_eq!(
        (status["searchMode"].as_str(), status["embedding"]["ok"].as_bool()),
        (Some("hybrid"), Some(true)),
        "{status}"
    );
    assert_eq!(status["status"]["files"], 2, "{status}");
    let requests_before = emb.requests().len();
    let probed = ok(c.request("doctor.memory.status", json!({"probe": true})).await.unwrap());
    assert_eq!(probed["embedding"]["ok"], true);
    assert_eq!(emb.requests().len(), requests_before + 1, "the probe calls the embedder once");

    // The embedder fails: the probe says so, with the provider's error.
    for _ in 0..3 {
        emb.fail_next(500, None);
    }
    let probed = ok(c.request("doctor.memory.status", json!({"probe": true})).await.unwrap());
    assert_eq!(probed["embedding"]["ok"], false);
    assert!(probed["embedding"]["error"].as_str().unwrap().contains("HTTP 500"), "{probed}");

    for (params, why) in [
        (json!({"query": "   "}), "query must be a non-empty string"),
        (json!({"query": "x", "agentId": "nobody"}), "unknown agent id"),
        (json!({"query": "x", "extra": 1}), "extra"),
    ] {
        let res = c.request("memory.search", params.clone()).await.unwrap();
        assert_eq!(res["ok"], false, "{params}: {res}");
        assert!(res["error"]["message"].as_str().unwrap().contains(why), "{params}: {res}");
    }
    c.close().await;
}
