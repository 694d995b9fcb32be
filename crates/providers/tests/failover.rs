//! Key rotation, cooldowns and model fallback ([`Router`]) against the testkit twins over real HTTP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clawline_core::config::{ApiKind, ModelRef, ProviderSettings};
use clawline_core::message::{Message, UserContent, UserMessage};
use clawline_core::secret::SecretString;
use clawline_providers::{CooldownBook, ErrorKind, ModelClient, ModelRequest, RetryPolicy, Route, Router};
use clawline_testkit::model_server::{Api, ModelServer, Reply};

fn route(server: &ModelServer, provider: &str, model: &str, key: &str) -> Route {
    let settings = ProviderSettings {
        id: provider.into(),
        api: ApiKind::OpenAiCompletions,
        base_url: server.base_url(),
        api_key: Some(SecretString::new(key)),
        timeout_secs: 5,
        ..Default::default()
    };
    Route::new(
        ModelRef { provider: provider.into(), model: model.into() },
        format!("{provider}:{}", key.trim_start_matches("sk-")),
        ModelClient::new(Arc::new(settings), reqwest::Client::new()),
    )
}

fn policy() -> RetryPolicy {
    RetryPolicy { max_retries: 2, base_delay: Duration::from_millis(5), max_delay: Duration::from_millis(50) }
}

fn request() -> ModelRequest {
    ModelRequest {
        model: "ignored".into(),
        messages: vec![Message::User(UserMessage {
            content: UserContent::Text("hi".into()),
            timestamp: 0,
            idempotency_key: None,
        })],
        max_tokens: 64,
        ..Default::default()
    }
}

fn rate_limited(after: Option<&str>) -> Reply {
    Reply::Error {
        status: 429,
        kind: "rate_limit_exceeded".into(),
        message: "Rate limit reached for requests".into(),
        retry_after: after.map(String::from),
    }
}

fn bearer(server: &ModelServer, i: usize) -> String {
    server.requests()[i].header("authorization").unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_rate_limited_key_rotates_to_the_next_and_rests() {
    let server = ModelServer::start(Api::OpenAi, None).await;
    let book = CooldownBook::default();
    let router = Router::new(
        vec![route(&server, "openai", "gpt-x", "sk-key-one"), route(&server, "openai", "gpt-x", "sk-key-two")],
        book.clone(),
        policy(),
    );
    server.push(rate_limited(None));
    server.push(Reply::text("from the second key"));
    let answer = router.stream(&request(), &mut |_| {}).await.unwrap();
    assert_eq!(answer.message.text(), "from the second key");
    assert_eq!(answer.route, 1);
    assert!(answer.fallback.is_none(), "same model, other key: not a fallback");
    assert_eq!(bearer(&server, 0), "Bearer sk-key-one");
    assert_eq!(bearer(&server, 1), "Bearer sk-key-two");
    assert_eq!(server.requests()[1].body["model"], "gpt-x");

    // The first key now rests for 30 s: the next call goes straight to the second.
    server.push(Reply::text("again"));
    router.stream(&request(), &mut |_| {}).await.unwrap();
    assert_eq!(server.requests().len(), 3);
    assert_eq!(bearer(&server, 2), "Bearer sk-key-two");
    let resting = book.resting(Instant::now());
    assert_eq!(resting.len(), 1);
    assert_eq!((resting[0].profile.as_str(), resting[0].model.as_deref()), ("openai:key-one", Some("gpt-x")));
    assert!(resting[0].remaining > Duration::from_secs(25) && resting[0].remaining <= Duration::from_secs(30));
    assert_eq!(resting[0].reason, ErrorKind::RateLimited);
}

#[tokio::test]
async fn an_exhausted_primary_falls_back_and_says_so() {
    let primary = ModelServer::start(Api::OpenAi, None).await;
    let fallback = ModelServer::start(Api::OpenAi, None).await;
    let router = Router::new(
        vec![
            route(&primary, "alpha", "big", "sk-a1"),
            route(&primary, "alpha", "big", "sk-a2"),
            route(&fallback, "beta", "small", "sk-b1"),
        ],
        CooldownBook::default(),
        policy(),
    );
    primary.push(rate_limited(None));
    primary.push(rate_limited(None));
    fallback.push(Reply::text("the fallback speaks"));
    let answer = router.stream(&request(), &mut |_| {}).await.unwrap();
    assert_eq!(answer.message.text(), "the fallback speaks");
    let note = answer.fallback.expect("a fallback note");
    assert_eq!(
        (note.selected.as_str(), note.used.as_str(), note.reason.as_str()),
        ("alpha/big", "beta/small", "rate limited")
    );
    assert!(note.notice().contains("beta/small"), "{}", note.notice());
    assert_eq!(primary.requests().len(), 2, "both primary keys were tried once");
    assert_eq!(fallback.requests()[0].body["model"], "small");

    // While both primary keys rest, the fallback answers without the primary being asked.
    fallback.push(Reply::text("still me"));
    let again = router.stream(&request(), &mut |_| {}).await.unwrap();
    assert_eq!(again.message.text(), "still me");
    assert!(again.fallback.is_some());
    assert_eq!(primary.requests().len(), 2);
}

#[tokio::test]
async fn a_cooled_down_profile_returns_after_its_window() {
    let primary = ModelServer::start(Api::OpenAi, None).await;
    let fallback = ModelServer::start(Api::OpenAi, None).await;
    let router = Router::new(
        vec![route(&primary, "alpha", "big", "sk-a1"), route(&fallback, "beta", "small", "sk-b1")],
        CooldownBook::default(),
        policy(),
    );
    primary.push(rate_limited(Some("1")));
    fallback.push(Reply::text("covering"));
    assert!(router.stream(&request(), &mut |_| {}).await.unwrap().fallback.is_some());

    fallback.push(Reply::text("covering again"));
    assert_eq!(router.stream(&request(), &mut |_| {}).await.unwrap().message.text(), "covering again");
    assert_eq!(primary.requests().len(), 1, "resting for the Retry-After second");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    primary.push(Reply::text("back"));
    let answer = router.stream(&request(), &mut |_| {}).await.unwrap();
    assert_eq!(answer.message.text(), "back");
    assert!(answer.fallback.is_none());
    assert_eq!(primary.requests().len(), 2);
}

#[tokio::test]
async fn one_models_failure_does_not_bench_another_model() {
    let server = ModelServer::start(Api::OpenAi, None).await;
    let book = CooldownBook::default();
    let opus = route(&server, "anthropic", "opus", "sk-one");
    let sonnet = route(&server, "anthropic", "sonnet", "sk-one");
    let router = Router::new(vec![opus.clone(), sonnet.clone()], book.clone(), policy());
    server.push(rate_limited(None));
    server.push(Reply::text("sonnet here"));
    let answer = router.stream(&request(), &mut |_| {}).await.unwrap();
    assert_eq!(answer.fallback.unwrap().used, "anthropic/sonnet");

    // Another agent whose primary is sonnet, on the same key, is not held back by opus's limit.
    let sonnet_first = Router::new(vec![sonnet], book.clone(), policy());
    server.push(Reply::text("fine"));
    let answer = sonnet_first.stream(&request(), &mut |_| {}).await.unwrap();
    assert!(answer.fallback.is_none());
    assert_eq!(server.requests().last().unwrap().body["model"], "sonnet");
    let resting = book.resting(Instant::now());
    assert_eq!(resting.len(), 1);
    assert_eq!(resting[0].model.as_deref(), Some("opus"));

    // An overload on one model skips that model's other keys but not the next model.
    let overload = Router::new(
        vec![route(&server, "p", "m1", "k1"), route(&server, "p", "m1", "k2"), route(&server, "p", "m2", "k1")],
        CooldownBook::default(),
        policy(),
    );
    let before = server.requests().len();
    server.push(Reply::error(529, "overloaded_error", "Overloaded"));
    server.push(Reply::text("m2 answers"));
    let answer = overload.stream(&request(), &mut |_| {}).await.unwrap();
    assert_eq!(answer.route, 2);
    assert_eq!(server.requests().len(), before + 2, "m1's second key was not tried during an overload");
}

#[tokio::test]
async fn request_errors_stop_without_falling_back_or_benching() {
    let primary = ModelServer::start(Api::OpenAi, None).await;
    let fallback = ModelServer::start(Api::OpenAi, None).await;
    let book = CooldownBook::default();
    let router = Router::new(
        vec![route(&primary, "alpha", "big", "sk-a1"), route(&fallback, "beta", "small", "sk-b1")],
        book.clone(),
        policy(),
    );
    primary.push(Reply::error(400, "context_length_exceeded", "This model's maximum context length is 8192 tokens."));
    let err = router.stream(&request(), &mut |_| {}).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::ContextLength);
    assert!(fallback.requests().is_empty());
    assert!(book.resting(Instant::now()).is_empty(), "a local data error must not bench the provider");
}

#[tokio::test]
async fn an_unreachable_local_server_falls_back() {
    let gone = ModelServer::start(Api::OpenAi, None).await;
    let dead = route(&gone, "ollama", "llama", "none");
    drop(gone);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fallback = ModelServer::start(Api::OpenAi, None).await;
    let router = Router::new(vec![dead, route(&fallback, "beta", "small", "sk-b1")], CooldownBook::default(), policy());
    fallback.push(Reply::text("cloud answer"));
    let answer = router.stream(&request(), &mut |_| {}).await.unwrap();
    assert_eq!(answer.fallback.unwrap().reason, "network");
}

#[tokio::test]
async fn when_everything_fails_the_error_lists_each_attempt() {
    let server = ModelServer::start(Api::OpenAi, None).await;
    let router = Router::new(
        vec![route(&server, "alpha", "big", "sk-a1"), route(&server, "beta", "small", "sk-b1")],
        CooldownBook::default(),
        policy(),
    );
    for _ in 0..6 {
        server.push(Reply::error(500, "server_error", "internal failure"));
    }
    let err = router.stream(&request(), &mut |_| {}).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Server);
    assert_eq!(server.requests().len(), 6, "two routes × three passes");
    assert!(err.message.contains("6 attempts over 3 passes failed"), "{}", err.message);
    assert!(err.message.contains("alpha/big via alpha:a1: HTTP 500"), "{}", err.message);
    assert_eq!(err.message.matches("beta/small via beta:b1").count(), 1, "repeats are listed once: {}", err.message);
}

#[tokio::test]
async fn a_bad_key_is_benched_for_every_model() {
    let server = ModelServer::start(Api::OpenAi, Some("sk-good")).await;
    let book = CooldownBook::default();
    let router = Router::new(
        vec![route(&server, "openai", "a", "sk-bad-0000"), route(&server, "openai", "a", "sk-good")],
        book.clone(),
        policy(),
    );
    server.push(Reply::text("good key"));
    let answer = router.stream(&request(), &mut |_| {}).await.unwrap();
    assert_eq!(answer.route, 1);
    let other_model = Router::new(
        vec![route(&server, "openai", "b", "sk-bad-0000"), route(&server, "openai", "b", "sk-good")],
        book.clone(),
        policy(),
    );
    server.push(Reply::text("b via good"));
    let before = server.requests().len();
    other_model.stream(&request(), &mut |_| {}).await.unwrap();
    assert_eq!(server.requests().len(), before + 1, "the bad key is not tried for model b either");
    let resting = book.resting(Instant::now());
    assert_eq!((resting[0].model.as_deref(), resting[0].reason), (None, ErrorKind::Auth));
}
