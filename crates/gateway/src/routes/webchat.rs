//! The web chat page's side of its channel.
//!
//! `POST /api/webchat/messages` `{text, id}` journals the message (the page's `id` makes a
//! repeated post harmless) and answers `202 {messageId, duplicate, sessionKey, agentId}` once it
//! is stored; the answer arrives on the event stream. `GET /api/webchat/events` is that stream
//! (server-sent events): first `ready {sessionKey, agentId}`, then `typing`, `message` and `edit`
//! as the channel delivers, and `resync` when the page fell behind and should reload the
//! conversation. Both need the gateway token like every `/api` route. This file holds no state
//! and decides nothing about answering: the channel layer does.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use clawline_channels::webchat::WebChatChannel;
use clawline_channels::webchat::config::OPERATOR;
use clawline_channels::webchat::inbound::PostError;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::body::JsonBody;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Post {
    text: String,
    /// The page's id for the message (a UUID).
    id: String,
}

fn webchat(state: &AppState) -> Result<(Arc<WebChatChannel>, (String, String)), ApiError> {
    let channels = state.channels.as_ref();
    let wc = channels.and_then(|c| c.webchat()).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "the web chat channel is off (gateway.controlUi.enabled)")
    })?;
    let probe = wc.preview_message("route", "route").map_err(|e| ApiError::bad_request(e.to_string()))?;
    let route = channels.map(|c| c.route(&probe)).unwrap_or_default();
    Ok((wc, route))
}

/// `POST /api/webchat/messages`.
pub async fn post(State(state): State<Arc<AppState>>, JsonBody(p): JsonBody<Post>) -> Result<Response, ApiError> {
    let (wc, (agent_id, session_key)) = webchat(&state)?;
    match wc.post(&p.id, &p.text).await {
        Ok(posted) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"messageId": p.id, "duplicate": posted.duplicate, "sessionKey": session_key, "agentId": agent_id})),
        )
            .into_response()),
        Err(e @ (PostError::Empty | PostError::TooLong | PostError::BadId)) => Err(ApiError::bad_request(e.to_string())),
        Err(e @ PostError::NotReady) => {
            let mut err = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string());
            err.retry_after = Some(1);
            Err(err)
        }
        Err(e @ PostError::Store(_)) => {
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", e.to_string()))
        }
    }
}

/// `GET /api/webchat/events`.
pub async fn events(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let (wc, (agent_id, session_key)) = webchat(&state)?;
    let rx = wc.hub().subscribe(OPERATOR);
    let ready =
        Event::default().event("ready").data(json!({"sessionKey": session_key, "agentId": agent_id}).to_string());
    let rest = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(ev) => Event::default().event(ev.name()).data(serde_json::to_string(&ev).unwrap_or_default()),
            Err(RecvError::Lagged(n)) => Event::default().event("resync").data(json!({"missed": n}).to_string()),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(event), rx))
    });
    let stream = futures_util::stream::once(async move { Ok::<_, Infallible>(ready) }).chain(rest);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}
