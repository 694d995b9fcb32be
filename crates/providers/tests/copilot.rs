//! GitHub Copilot through its token exchange: the GitHub token is traded for a Copilot token,
//! which the chat call carries to the API host the exchange named; tokens are reused until
//! they near expiry; refusals say what is wrong without showing the token.

use std::sync::Arc;

use clawline_core::config::{ApiKind, ProviderSettings};
use clawline_core::message::{Message, UserContent, UserMessage};
use clawline_core::secret::SecretString;
use clawline_providers::{ErrorKind, ModelClient, ModelRequest};
use clawline_testkit::copilot_server::CopilotServer;
use clawline_testkit::model_server::{Api, ModelServer, Reply};

fn client(exchange: &CopilotServer, github_token: &str) -> ModelClient {
    let settings = ProviderSettings {
        id: "github-copilot".into(),
        api: ApiKind::OpenAiCompletions,
        base_url: "https://api.individual.githubcopilot.com".into(),
        api_key: Some(SecretString::new(github_token)),
        token_exchange: Some(exchange.token_url()),
        headers: [("Copilot-Integration-Id".to_string(), "vscode-chat".to_string())].into(),
        timeout_secs: 5,
        ..Default::default()
    };
    ModelClient::new(Arc::new(settings), reqwest::Client::new())
}

fn request() -> ModelRequest {
    ModelRequest {
        model: "gpt-4o".into(),
        messages: vec![Message::User(UserMessage {
            content: UserContent::Text("hi".into()),
            timestamp: 0,
            idempotency_key: None,
        })],
        max_tokens: 64,
        ..Default::default()
    }
}

#[tokio::test]
async fn the_github_token_is_exchanged_once_and_the_copilot_token_used() {
    let model = ModelServer::start(Api::OpenAi, Some(CopilotServer::COPILOT_TOKEN)).await;
    // The API base the exchange names (the twin's is `http://…/v1`).
    let exchange = CopilotServer::start(&["gho_exchange_test_1"], &model.base_url()).await;
    let c = client(&exchange, "gho_exchange_test_1");
    model.push(Reply::text("from copilot"));
    model.push(Reply::text("again"));
    assert_eq!(c.stream(&request(), &mut |_| {}).await.unwrap().text(), "from copilot");
    assert_eq!(c.stream(&request(), &mut |_| {}).await.unwrap().text(), "again");
    assert_eq!(exchange.exchanges(), 1, "the Copilot token is reused until it nears expiry");
    let r = &model.requests()[0];
    assert_eq!(r.header("authorization"), Some(format!("Bearer {}", CopilotServer::COPILOT_TOKEN).as_str()));
    assert_eq!(r.header("copilot-integration-id"), Some("vscode-chat"));

    // A token that expires within the minute is exchanged again.
    let short = CopilotServer::start(&["gho_exchange_test_2"], &model.base_url()).await;
    short.set_lifetime(30);
    let c = client(&short, "gho_exchange_test_2");
    model.push(Reply::text("one"));
    model.push(Reply::text("two"));
    c.stream(&request(), &mut |_| {}).await.unwrap();
    c.stream(&request(), &mut |_| {}).await.unwrap();
    assert_eq!(short.exchanges(), 2);
}

#[tokio::test]
async fn refusals_are_explained_without_the_token() {
    let model = ModelServer::start(Api::OpenAi, Some(CopilotServer::COPILOT_TOKEN)).await;
    let exchange = CopilotServer::start(&["gho_good"], &model.base_url()).await;
    exchange.add_not_entitled("gho_no_copilot_123");

    let err = client(&exchange, "gho_wrong_token_456").stream(&request(), &mut |_| {}).await.unwrap_err();
    assert_eq!((err.kind, err.status), (ErrorKind::Auth, Some(401)));
    assert!(err.message.contains("clawline auth login github-copilot"), "{err}");
    assert!(!err.message.contains("gho_wrong_token_456"), "{err}");

    let err = client(&exchange, "gho_no_copilot_123").stream(&request(), &mut |_| {}).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Auth);
    assert!(err.message.contains("no Copilot access"), "{err}");
    assert!(model.requests().is_empty(), "no chat call without a Copilot token");
}
