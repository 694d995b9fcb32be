//! The memory tools inside a real run: the model calls `memory_search` and `memory_get`, the
//! answers reach it in the next request — text-only with its reason when no embedder is set up,
//! hybrid against the embeddings twin — and memory switched off offers no memory tools.

mod common;

use clawline_testkit::embeddings_server::{Dialect, EmbeddingsServer};
use clawline_testkit::model_server::{Api, ModelServer, Reply};
use common::*;
use serde_json::{Value, json};

/// The tool result the model received in request `n`.
fn tool_result(server: &ModelServer, n: usize) -> Value {
    let body = &server.requests()[n].body;
    let last = body["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["role"], "tool", "{last}");
    let text = last["content"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| last["content"][0]["text"].as_str().unwrap().to_string());
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

fn tool_names(server: &ModelServer) -> Vec<String> {
    server.requests()[0].body["tools"]
        .as_array()
        .map(|t| t.iter().map(|t| t["function"]["name"].as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn search_then_get_in_text_only_mode_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    let rt = runtime(dir.path(), &server, Api::OpenAi, "").await;
    let ws = rt.tool_context("main").await.unwrap().workspace;
    std::fs::write(
        ws.join("MEMORY.md"),
        "# Facts\nThe wifi password is in the red notebook.\nThe cat is called Miso.\n",
    )
    .unwrap();
    server.push(Reply::tool("c1", "memory_search", json!({"query": "wifi password"})));
    server.push(Reply::tool("c2", "memory_get", json!({"path": "MEMORY.md", "from": 3, "lines": 1})));
    server.push(Reply::tool("c3", "memory_get", json!({"path": "AGENTS.md"})));
    server.push(Reply::text("It is in the red notebook."));
    let (_, events) = turn(&rt, None, "where is the wifi password?").await;
    assert!(matches!(final_event(&events), clawline_agent::RunEvent::Done { .. }));
    assert!(tool_names(&server).contains(&"memory_search".to_string()));

    let found = tool_result(&server, 1);
    assert_eq!(found["mode"], "text-only");
    assert!(found["reason"].as_str().unwrap().contains("no embedding provider"), "{found}");
    assert_eq!(found["results"][0]["path"], "MEMORY.md");
    assert_eq!(
        (found["results"][0]["startLine"].as_u64(), found["results"][0]["endLine"].as_u64()),
        (Some(1), Some(3))
    );
    assert!(found["results"][0]["snippet"].as_str().unwrap().contains("red notebook"));

    let got = tool_result(&server, 2);
    assert_eq!(got["text"], "The cat is called Miso.");
    let refused = tool_result(&server, 3);
    assert!(refused.as_str().unwrap().contains("not a memory file"), "{refused}");
}

#[tokio::test]
async fn hybrid_search_against_the_embeddings_twin() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    let emb = EmbeddingsServer::start(Some("emb-key-0123456789"), Dialect::OpenAi, 32).await;
    let top = format!(
        r#"memory: {{ search: {{ provider: "openai-compatible", model: "twin-embed",
             remote: {{ baseUrl: "{}/v1", apiKey: "${{EMB_KEY}}" }} }} }},"#,
        emb.base_url()
    );
    let config = config_with(dir.path(), &server, Api::OpenAi, "", &top, &[("EMB_KEY", "emb-key-0123456789")]);
    let rt = runtime_for(dir.path(), config);
    let ws = rt.tool_context("main").await.unwrap().workspace;
    std::fs::create_dir_all(ws.join("memory")).unwrap();
    std::fs::write(ws.join("memory/2026-11-28.md"), "Dentist appointment moved to Thursday at 9.\n").unwrap();
    server.push(Reply::tool("c1", "memory_search", json!({"query": "dentist appointment"})));
    server.push(Reply::text("Thursday at 9."));
    turn(&rt, None, "when is the dentist?").await;
    let found = tool_result(&server, 1);
    assert_eq!(found["mode"], "hybrid", "{found}");
    assert_eq!(found["results"][0]["path"], "memory/2026-11-28.md");
    assert!(emb.texts_embedded() >= 2, "the note and the query were embedded");
    assert_eq!(emb.requests()[0].header("authorization"), Some("Bearer emb-key-0123456789"));
}

#[tokio::test]
async fn memory_off_offers_no_memory_tools() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    let config = config_with(dir.path(), &server, Api::OpenAi, "", "memory: { search: { enabled: false } },", &[]);
    let rt = runtime_for(dir.path(), config);
    server.push(Reply::text("ok"));
    turn(&rt, None, "hi").await;
    let names = tool_names(&server);
    assert!(names.contains(&"read".to_string()) && !names.iter().any(|n| n.starts_with("memory_")), "{names:?}");
}

#[tokio::test]
async fn past_conversations_are_searchable_when_sessions_are_a_source() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    let top = r#"memory: { search: { provider: "none", sources: ["memory", "sessions"] } },"#;
    let config = config_with(dir.path(), &server, Api::OpenAi, "", top, &[]);
    let rt = runtime_for(dir.path(), config);

    // An earlier conversation in another session.
    server.push(Reply::text("Noted: the boiler service is booked with Halvorsen Heating."));
    turn(&rt, Some("agent:main:kitchen"), "remember that Halvorsen Heating services the boiler").await;

    server.push(Reply::tool("c1", "memory_search", json!({"query": "who services the boiler"})));
    server.push(Reply::text("Halvorsen Heating."));
    turn(&rt, None, "who services our boiler?").await;
    let found = tool_result(&server, 2);
    let hit = found["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"].as_str().unwrap().starts_with("sessions/"))
        .unwrap_or_else(|| panic!("the earlier conversation is found: {found}"));
    assert!(hit["snippet"].as_str().unwrap().contains("Halvorsen"), "{hit}");

    // memory_get reads the conversation by the path search gave.
    let path = hit["path"].as_str().unwrap().to_string();
    server.push(Reply::tool("c2", "memory_get", json!({"path": path, "from": 1, "lines": 20})));
    server.push(Reply::text("ok"));
    turn(&rt, None, "show me that conversation").await;
    let got = tool_result(&server, 4);
    let text = got["text"].as_str().unwrap();
    assert!(text.contains("User (") && text.contains("remember that Halvorsen Heating"), "{got}");
    assert!(text.contains("Assistant (") && text.contains("Noted: the boiler service"), "{got}");
}

#[tokio::test]
async fn a_conversation_is_indexed_as_it_grows_without_a_search_syncing() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    // No watcher and no sync before searches: only the follower of the change feed indexes.
    let top = r#"memory: { search: { provider: "none", sources: ["memory", "sessions"],
                   sync: { watch: false, onSearch: false, sessions: { deltaMessages: 2 } } } },"#;
    let config = config_with(dir.path(), &server, Api::OpenAi, "", top, &[]);
    let rt = runtime_for(dir.path(), config);
    let ws = rt.tool_context("main").await.unwrap().workspace;
    let index = rt.memory_access("main", &ws).unwrap().index;
    async fn found(index: &clawline_memory::index::MemoryIndex, query: &str) -> bool {
        for _ in 0..250 {
            let hits = index.search(query).await.unwrap();
            if hits
                .results
                .iter()
                .any(|r| r.candidate.path.starts_with("sessions/") && r.candidate.text.contains(query))
            {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        false
    }

    server.push(Reply::text("Understood."));
    turn(&rt, Some("agent:main:porch"), "the spare key is under the blue flowerpot").await;
    assert!(found(&index, "blue flowerpot").await, "a new conversation is indexed");

    // Two more messages in it pass deltaMessages: 2, and it is indexed again.
    server.push(Reply::text("Noted as well."));
    turn(&rt, Some("agent:main:porch"), "the garage code is 4471").await;
    assert!(found(&index, "garage code is 4471").await, "the grown conversation is indexed again");
    assert_eq!(index.status().await.unwrap().sessions, 1);
}
