//! A twin of GitHub's Copilot token exchange (`GET /copilot_internal/v2/token`).
//!
//! It accepts `Authorization: token <github token>` for the GitHub tokens it was started with
//! (anything else is `401 {"message":"Bad credentials"}`; a token listed as not entitled is
//! `404 {"message":"Not Found"}`, as GitHub answers accounts without Copilot), and answers
//! `{"token", "expires_at", "refresh_in", "endpoints": {"api"}}` with a Copilot token of the
//! `tid=…;exp=…;proxy-ep=…` shape. Point `endpoints.api` at a model twin whose key is
//! [`CopilotServer::COPILOT_TOKEN`] to see the token used.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use serde_json::json;

struct Inner {
    github_tokens: Vec<String>,
    not_entitled: Vec<String>,
    api: String,
    lifetime_secs: i64,
    exchanges: usize,
}

/// A running twin. Dropping it stops the server.
pub struct CopilotServer {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CopilotServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl CopilotServer {
    /// The Copilot token every successful exchange hands out.
    pub const COPILOT_TOKEN: &'static str =
        "tid=testkit;exp=9999999999;proxy-ep=proxy.individual.githubcopilot.com;sku=free";

    /// Starts a twin that accepts `github_tokens` and names `api` as the Copilot API base.
    pub async fn start(github_tokens: &[&str], api: &str) -> CopilotServer {
        let inner = Arc::new(Mutex::new(Inner {
            github_tokens: github_tokens.iter().map(|s| s.to_string()).collect(),
            not_entitled: Vec::new(),
            api: api.to_string(),
            lifetime_secs: 1800,
            exchanges: 0,
        }));
        let app = Router::new().route("/copilot_internal/v2/token", get(exchange)).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind copilot twin");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        CopilotServer { addr, inner, task }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The exchange URL (`models.providers.github-copilot.tokenExchangeUrl`).
    pub fn token_url(&self) -> String {
        format!("http://{}/copilot_internal/v2/token", self.addr)
    }

    /// How many exchanges succeeded.
    pub fn exchanges(&self) -> usize {
        self.lock().exchanges
    }

    /// A GitHub token that is valid but has no Copilot subscription.
    pub fn add_not_entitled(&self, token: &str) {
        self.lock().not_entitled.push(token.to_string());
    }

    /// How long issued tokens live (seconds; negative issues already-expired tokens).
    pub fn set_lifetime(&self, secs: i64) {
        self.lock().lifetime_secs = secs;
    }
}

fn reply(status: u16, body: serde_json::Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

async fn exchange(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap) -> Response {
    let given = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("token "));
    let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
    let Some(token) = given else {
        return reply(
            401,
            json!({"message": "Requires authentication", "documentation_url": "https://docs.github.com/rest"}),
        );
    };
    if g.not_entitled.iter().any(|t| t == token) {
        return reply(404, json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}));
    }
    if !g.github_tokens.iter().any(|t| t == token) {
        return reply(401, json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}));
    }
    g.exchanges += 1;
    let expires = now_secs() + g.lifetime_secs;
    reply(
        200,
        json!({
            "token": CopilotServer::COPILOT_TOKEN,
            "expires_at": expires,
            "refresh_in": (g.lifetime_secs - 300).max(0),
            "endpoints": {"api": g.api},
        }),
    )
}
