//! The web chat page: plain HTML, CSS and JavaScript compiled into the binary.

use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

const INDEX: &str = include_str!("../../assets/index.html");
const APP_JS: &str = include_str!("../../assets/app.js");
const APP_CSS: &str = include_str!("../../assets/app.css");
const FAVICON: &str = include_str!("../../assets/favicon.svg");

fn asset(state: &AppState, content_type: &'static str, body: &'static str) -> Response {
    if !state.runtime.config().gateway.control_ui_enabled {
        return ApiError::not_found("the web chat is disabled (gateway.controlUi.enabled)").into_response();
    }
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

pub async fn index(State(s): State<Arc<AppState>>) -> Response {
    asset(&s, "text/html; charset=utf-8", INDEX)
}

pub async fn app_js(State(s): State<Arc<AppState>>) -> Response {
    asset(&s, "text/javascript; charset=utf-8", APP_JS)
}

pub async fn app_css(State(s): State<Arc<AppState>>) -> Response {
    asset(&s, "text/css; charset=utf-8", APP_CSS)
}

pub async fn favicon(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match &s.control_ui {
        Some(control) => control.serve("/favicon.svg", &headers).await,
        None => asset(&s, "image/svg+xml", FAVICON),
    }
}

/// `GET /control-ui-config.json`: the Control UI's runtime settings, for a valid Bearer (the
/// gateway token or a device token). Wrong tokens count towards the same lockout as every other
/// authentication, so this is no side door for guessing tokens.
pub async fn control_ui_config(
    State(s): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    client: Option<axum::Extension<crate::client_addr::ClientAddr>>,
    headers: HeaderMap,
) -> Response {
    let ip = client.map_or(peer.ip(), |c| c.ip);
    let key = crate::auth::LimitKey { ip, scope: "control-ui-config".into(), browser: false };
    if let Err(wait) = s.limiter.check(&key) {
        return ApiError::auth_locked_out(wait).into_response();
    }
    // No token is no guess: the page asks before it has one.
    let Some(token) = crate::guard::bearer(&headers) else { return ApiError::unauthorized().into_response() };
    let valid =
        s.credentials.accepts(token) || matches!(s.runtime.store().check_device_token(token).await, Ok(Some(_)));
    if !valid {
        s.limiter.failure(&key);
        return ApiError::unauthorized().into_response();
    }
    s.limiter.success(&key);
    let agent = s.runtime.config().default_agent();
    Json(super::control_ui::config_json(&agent.name, &agent.id)).into_response()
}
