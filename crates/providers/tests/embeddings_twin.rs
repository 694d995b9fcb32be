//! The embedding client against testkit's embeddings twin: each API's request shape and auth,
//! answers put back in input order, batching at each API's limit, retries after `Retry-After`,
//! and errors classified with the key scrubbed out.

use std::time::Duration;

use clawline_core::secret::SecretString;
use clawline_providers::ErrorKind;
use clawline_providers::embeddings::{EmbeddingApi, EmbeddingClient, EmbeddingSettings};
use clawline_testkit::embeddings_server::{Dialect, EmbeddingsServer, vector_for};

const KEY: &str = "sk-embed-0123456789";

fn client(server: &EmbeddingsServer, api: EmbeddingApi, key: Option<&str>, model: &str) -> EmbeddingClient {
    let base = match api {
        EmbeddingApi::Gemini => format!("{}/v1beta", server.base_url()),
        EmbeddingApi::Ollama => server.base_url(),
        _ => format!("{}/v1", server.base_url()),
    };
    EmbeddingClient::new(
        EmbeddingSettings {
            provider: "twin".into(),
            api,
            base_url: base,
            api_key: key.map(SecretString::new),
            model: model.into(),
            dimensions: None,
            headers: vec![],
            timeout: Duration::from_secs(10),
            retries: 2,
        },
        reqwest::Client::new(),
    )
}

fn texts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("note number {i} about topic{i}")).collect()
}

#[tokio::test]
async fn openai_answers_in_input_order_with_bearer_auth_and_dimensions() {
    let server = EmbeddingsServer::start(Some(KEY), Dialect::OpenAi, 16).await;
    let mut c = client(&server, EmbeddingApi::OpenAi, Some(KEY), "text-embedding-3-small");
    let t = texts(3);
    let v = c.embed(&t, false).await.unwrap();
    for (i, text) in t.iter().enumerate() {
        assert_eq!(v[i], vector_for(text, 16), "vector {i} is the one for its text, though the twin reverses `data`");
    }
    let r = &server.requests()[0];
    assert_eq!(r.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    assert_eq!(r.body["input"].as_array().unwrap().len(), 3);
    assert!(r.body.get("dimensions").is_none());

    c.settings.dimensions = Some(8);
    let v = c.embed(&t[..1], true).await.unwrap();
    assert_eq!(v[0].len(), 8);
    assert_eq!(server.requests()[1].body["dimensions"], 8);
}

#[tokio::test]
async fn batches_follow_each_api_limit() {
    let server = EmbeddingsServer::start(Some(KEY), Dialect::OpenAi, 4).await;
    let v = client(&server, EmbeddingApi::OpenAi, Some(KEY), "m").embed(&texts(2049), false).await.unwrap();
    assert_eq!(v.len(), 2049);
    let sizes: Vec<usize> = server.requests().iter().map(|r| r.body["input"].as_array().unwrap().len()).collect();
    assert_eq!(sizes, [2048, 1]);

    let gemini = EmbeddingsServer::start(Some(KEY), Dialect::OpenAi, 4).await;
    let t = texts(150);
    let v = client(&gemini, EmbeddingApi::Gemini, Some(KEY), "gemini-embedding-001").embed(&t, false).await.unwrap();
    assert_eq!(v[149], vector_for(&t[149], 4));
    let reqs = gemini.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].path, "/v1beta/models/gemini-embedding-001:batchEmbedContents");
    assert_eq!(reqs[0].header("x-goog-api-key"), Some(KEY));
    assert_eq!(reqs[0].body["requests"].as_array().unwrap().len(), 100);
    assert_eq!(reqs[0].body["requests"][0]["taskType"], "RETRIEVAL_DOCUMENT");
    assert_eq!(reqs[0].body["requests"][0]["model"], "models/gemini-embedding-001");
}

#[tokio::test]
async fn voyage_and_mistral_get_only_the_fields_they_accept() {
    let voyage = EmbeddingsServer::start(Some(KEY), Dialect::Voyage, 8).await;
    let mut c = client(&voyage, EmbeddingApi::Voyage, Some(KEY), "voyage-3.5");
    c.settings.dimensions = Some(4);
    let v = c.embed(&texts(2), true).await.unwrap();
    assert_eq!(v[0].len(), 4);
    let r = &voyage.requests()[0];
    assert_eq!((r.body["input_type"].as_str(), r.body["output_dimension"].as_u64()), (Some("query"), Some(4)));
    assert!(r.body.get("dimensions").is_none());

    let mistral = EmbeddingsServer::start(Some(KEY), Dialect::Mistral, 8).await;
    let mut c = client(&mistral, EmbeddingApi::Mistral, Some(KEY), "mistral-embed");
    c.settings.dimensions = Some(4);
    let v = c.embed(&texts(2), false).await.unwrap();
    assert_eq!(v[0].len(), 8, "Mistral's vectors are fixed; nothing extra was sent, so no 422");
    let sent = mistral.requests()[0].body.clone();
    let keys: Vec<&String> = sent.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["input", "model"]);
}

#[tokio::test]
async fn ollama_embeds_and_a_missing_model_says_to_pull_it() {
    let server = EmbeddingsServer::start(None, Dialect::OpenAi, 8).await;
    let t = texts(3);
    let v = client(&server, EmbeddingApi::Ollama, None, "all-minilm").embed(&t, false).await.unwrap();
    assert_eq!(v[2], vector_for(&t[2], 8));
    assert_eq!(server.requests()[0].path, "/api/embed");
    let e = client(&server, EmbeddingApi::Ollama, None, "bge-m3").embed(&t, false).await.unwrap_err();
    assert_eq!((e.kind, e.status), (ErrorKind::BadRequest, Some(404)));
    assert!(e.message.contains("try pulling it first"), "{e}");
}

#[tokio::test]
async fn rate_limits_are_retried_and_failures_classified() {
    let server = EmbeddingsServer::start(Some(KEY), Dialect::OpenAi, 4).await;
    let c = client(&server, EmbeddingApi::OpenAi, Some(KEY), "m");
    server.fail_next(429, Some("0"));
    server.fail_next(503, None);
    let v = c.embed(&texts(1), false).await.unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(server.requests().len(), 3, "two refusals, then the answer");

    for _ in 0..3 {
        server.fail_next(500, None);
    }
    let e = c.embed(&texts(1), false).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Server);

    let wrong = client(&server, EmbeddingApi::OpenAi, Some("sk-wrong-key-987654"), "m");
    let e = wrong.embed(&texts(1), false).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth);
    assert!(e.message.contains("Incorrect API key"), "{e}");
    assert!(!e.to_string().contains("sk-wrong-key-987654"));

    let gemini = EmbeddingsServer::start(Some(KEY), Dialect::OpenAi, 4).await;
    let e = client(&gemini, EmbeddingApi::Gemini, Some("nope-0000"), "g").embed(&texts(1), false).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth);
}

#[tokio::test]
async fn an_unreachable_server_is_a_network_error() {
    let server = EmbeddingsServer::start(None, Dialect::OpenAi, 4).await;
    let mut c = client(&server, EmbeddingApi::OpenAi, None, "m");
    drop(server);
    c.settings.retries = 0;
    let e = c.embed(&texts(1), false).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Network, "{e}");
}
