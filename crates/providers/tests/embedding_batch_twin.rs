//! Embedding through the batch APIs against testkit's batch twin: OpenAI's and Voyage's files +
//! batches and Gemini's batch operations, jobs split and polled, answers matched back to their
//! texts though the twin reverses them, uploaded files deleted at OpenAI, partial outcomes
//! (failed requests, expiry) leaving only those texts unembedded, and failures and timeouts
//! (with a cancel) reported as errors.

use std::sync::Mutex;
use std::time::Duration;

use clawline_core::secret::SecretString;
use clawline_providers::ErrorKind;
use clawline_providers::embeddings::batch::{BatchProgress, BatchSettings, TEXTS_PER_REQUEST};
use clawline_providers::embeddings::{EmbeddingApi, EmbeddingClient, EmbeddingSettings};
use clawline_testkit::embedding_batch_server::{BatchDialect, BatchServer};
use clawline_testkit::embeddings_server::vector_for;

const KEY: &str = "sk-batch-0123456789";
const DIMS: usize = 12;

fn client(server: &BatchServer, api: EmbeddingApi, key: &str) -> EmbeddingClient {
    let base = if api == EmbeddingApi::Gemini { "v1beta" } else { "v1" };
    EmbeddingClient::new(
        EmbeddingSettings {
            provider: "twin".into(),
            api,
            base_url: format!("{}/{base}", server.base_url()),
            api_key: Some(SecretString::new(key)),
            model: "embed-model".into(),
            dimensions: None,
            headers: vec![],
            timeout: Duration::from_secs(10),
            retries: 0,
        },
        reqwest::Client::new(),
    )
}

fn fast(per_job: usize) -> BatchSettings {
    BatchSettings {
        poll_interval: Duration::from_millis(5),
        timeout: Duration::from_secs(20),
        max_texts_per_job: per_job,
    }
}

fn texts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("memory chunk {i} about subject{i}")).collect()
}

fn quiet() -> impl Fn(BatchProgress) + Sync {
    |_| {}
}

#[tokio::test]
async fn openai_jobs_are_split_matched_back_and_their_files_deleted() {
    let server = BatchServer::start(KEY, BatchDialect::OpenAi, DIMS).await;
    let c = client(&server, EmbeddingApi::OpenAi, KEY);
    let t = texts(300);
    let seen = Mutex::new(Vec::new());
    let got = c.embed_batched(&t, &fast(200), &|p| seen.lock().unwrap().push(p)).await.unwrap();
    assert_eq!(got.len(), 300);
    for (i, text) in t.iter().enumerate() {
        assert_eq!(got[i].as_deref(), Some(vector_for(text, DIMS).as_slice()), "text {i}");
    }
    assert_eq!(server.texts_embedded(), 300);
    let creates = server.requests().iter().filter(|(m, p)| m == "POST" && p == "/v1/batches").count();
    assert_eq!(creates, 2, "300 texts at 200 per job");
    assert_eq!(server.deleted().len(), 4, "each job's input and output files are deleted");
    assert_eq!(server.files(), 0);
    let last = *seen.lock().unwrap().last().unwrap();
    assert_eq!(last, BatchProgress { jobs_done: 2, jobs: 2, texts_done: 300, texts: 300 });
}

#[tokio::test]
async fn voyage_takes_the_model_once_and_keeps_its_files() {
    let server = BatchServer::start(KEY, BatchDialect::Voyage, DIMS).await;
    let c = client(&server, EmbeddingApi::Voyage, KEY);
    let t = texts(TEXTS_PER_REQUEST + 5);
    let got = c.embed_batched(&t, &fast(4096), &quiet()).await.unwrap();
    assert!(got.iter().zip(&t).all(|(v, text)| v.as_deref() == Some(vector_for(text, DIMS).as_slice())));
    assert!(server.deleted().is_empty(), "Voyage documents no file deletion");
}

#[tokio::test]
async fn gemini_operations_answer_inline_in_order() {
    let server = BatchServer::start(KEY, BatchDialect::OpenAi, DIMS).await;
    let c = client(&server, EmbeddingApi::Gemini, KEY);
    let t = texts(150);
    let got = c.embed_batched(&t, &fast(100), &quiet()).await.unwrap();
    assert!(got.iter().zip(&t).all(|(v, text)| v.as_deref() == Some(vector_for(text, DIMS).as_slice())));
    let paths: Vec<String> = server.requests().into_iter().map(|(_, p)| p).collect();
    assert_eq!(paths.iter().filter(|p| p.ends_with("embed-model:asyncBatchEmbedContent")).count(), 2);

    // A failed request leaves its text to be embedded directly.
    server.fail_requests(1);
    let got = c.embed_batched(&t[..3], &fast(100), &quiet()).await.unwrap();
    assert_eq!((got[0].is_none(), got[1].is_some(), got[2].is_some()), (true, true, true));
}

#[tokio::test]
async fn failed_requests_and_expiry_leave_only_their_texts_out() {
    let server = BatchServer::start(KEY, BatchDialect::OpenAi, DIMS).await;
    let c = client(&server, EmbeddingApi::OpenAi, KEY);
    let t = texts(3 * TEXTS_PER_REQUEST);
    server.fail_requests(1);
    let got = c.embed_batched(&t, &fast(4096), &quiet()).await.unwrap();
    assert!(got[..TEXTS_PER_REQUEST].iter().all(Option::is_none), "the failed request's texts");
    assert!(got[TEXTS_PER_REQUEST..].iter().all(Option::is_some));

    server.fail_requests(0);
    server.expire(true);
    let got = c.embed_batched(&t, &fast(4096), &quiet()).await.unwrap();
    assert_eq!(
        got.iter().filter(|v| v.is_some()).count(),
        TEXTS_PER_REQUEST,
        "one of three requests ran before expiry"
    );
}

#[tokio::test]
async fn a_failed_batch_a_timeout_and_a_bad_key_are_errors() {
    let server = BatchServer::start(KEY, BatchDialect::OpenAi, DIMS).await;
    let c = client(&server, EmbeddingApi::OpenAi, KEY);
    let t = texts(10);
    server.fail_batch(Some("the model is not available for batch"));
    let e = c.embed_batched(&t, &fast(4096), &quiet()).await.unwrap_err();
    assert!(e.message.contains("the model is not available for batch"), "{e}");

    server.fail_batch(None);
    server.stall(true);
    let mut s = fast(4096);
    s.timeout = Duration::from_millis(100);
    let e = c.embed_batched(&t, &s, &quiet()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    assert_eq!(server.cancelled().len(), 1, "the stalled batch was cancelled");

    let g = client(&server, EmbeddingApi::Gemini, KEY);
    let e = g.embed_batched(&t, &s, &quiet()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    assert_eq!(server.cancelled().len(), 2);

    let wrong = client(&server, EmbeddingApi::OpenAi, "sk-wrong-key-000");
    let e = wrong.embed_batched(&t, &fast(4096), &quiet()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth, "{e}");
    assert!(!e.message.contains("sk-wrong-key-000"));
}
