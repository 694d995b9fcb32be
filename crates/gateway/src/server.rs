//! The router and the server loop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::error::ApiError;
use crate::guard::guard;
use crate::routes::{api, hooks, metrics, openai, probes, responses, tools, ui, webchat};
use crate::state::AppState;

/// All routes behind the guard.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(probes::healthz))
        .route("/health", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/ready", get(probes::readyz))
        .route("/", get(root))
        .route("/webchat", get(ui::index))
        .route("/control-ui-config.json", get(ui::control_ui_config))
        .route("/__openclaw/control-ui-config.json", get(ui::control_ui_config))
        .route("/__openclaw__/control-ui-config.json", get(ui::control_ui_config))
        .route("/app.js", get(ui::app_js))
        .route("/app.css", get(ui::app_css))
        .route("/favicon.svg", get(ui::favicon))
        .route("/v1/models", get(openai::models))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/responses", post(responses::create))
        .route("/tools/invoke", post(tools::invoke))
        .route("/api/chat", post(api::chat))
        .route("/api/sessions", get(api::sessions))
        .route("/api/sessions/history", get(api::history))
        .route("/api/channels", get(api::channels))
        .route("/api/webchat/messages", post(webchat::post))
        .route("/api/webchat/events", get(webchat::events))
        .fallback(fallback)
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                "method not allowed for this endpoint",
            )
            .into_response()
        })
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// `GET /`: the WebSocket control plane when the request is an upgrade, else the web chat.
async fn root(state: State<Arc<AppState>>, peer: ConnectInfo<SocketAddr>, req: Request) -> Response {
    if crate::ws::is_upgrade(req.headers()) {
        return crate::ws::upgrade(state, peer, req).await;
    }
    match &state.control_ui {
        Some(control) if state.runtime.config().gateway.control_ui_enabled => control.index(),
        _ => ui::index(state).await,
    }
}

/// Upgrades on any path are the control plane too (OpenClaw clients may add a path); anything
/// else is unknown.
async fn fallback(state: State<Arc<AppState>>, peer: ConnectInfo<SocketAddr>, req: Request) -> Response {
    if crate::ws::is_upgrade(req.headers()) {
        return crate::ws::upgrade(state, peer, req).await;
    }
    if hooks::is_hook_path(&state, req.uri().path()) {
        return hooks::handle(state, peer, req).await;
    }
    if let Some(channels) = &state.channels
        && req.method() == axum::http::Method::POST
        && channels.webhook_paths().iter().any(|p| p == req.uri().path())
    {
        return channel_webhook(channels.clone(), req).await;
    }
    let is_read = matches!(*req.method(), axum::http::Method::GET | axum::http::Method::HEAD);
    match &state.control_ui {
        Some(control) if is_read && state.runtime.config().gateway.control_ui_enabled => {
            control.serve(req.uri().path(), req.headers()).await
        }
        _ => ApiError::not_found("no such endpoint").into_response(),
    }
}

/// A platform's webhook POST: the adapter checks its signature or secret, journals what it
/// carries, and picks the status (so the platform retries anything not journaled).
async fn channel_webhook(channels: clawline_channels::Channels, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, 4 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    };
    let reply =
        channels.webhook(&path, &parts.headers, &bytes).await.unwrap_or(clawline_channels::WebhookReply::from(404));
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match reply.body {
        Some(body) => (status, [(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response(),
        None => status.into_response(),
    }
}

/// Serves until `shutdown` resolves: WebSocket clients are told and closed, open requests get
/// a few seconds to finish (see `listener.rs`).
pub async fn serve(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tokio::spawn(crate::feed::run(state.clone()));
    tokio::spawn(crate::methods::approvals::run_events(state.clone()));
    crate::listener::cancel_on(shutdown, state.shutdown.clone());
    crate::listener::run(listener, router(state.clone()), state.shutdown.clone()).await
}
