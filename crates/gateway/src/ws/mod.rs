//! The WebSocket control plane: OpenClaw's gateway protocol v4 on the gateway port.
//!
//! | file | what |
//! |---|---|
//! | `capped_io.rs` | the pre-auth byte budget on the raw socket |
//! | `outbound.rs` | one ordered, byte-bounded send queue per connection and its writer |
//! | `handshake.rs` | `connect`: protocol, origin, credentials, device identity, pairing, scopes |
//! | `hello.rs` | the `hello-ok` payload |
//! | `conn.rs` | an authenticated connection: identity, grants, subscriptions |
//! | `hub.rs` | all connections; scope-filtered broadcast; presence |
//! | `connection.rs` | one socket's life: challenge, handshake, ticks, requests, close |
//!
//! The upgrade is done here rather than by a framework extractor so the raw socket can be
//! wrapped in the pre-auth byte cap before the WebSocket library sees it. Sockets waiting for
//! their handshake are counted and bounded; each costs a few KiB (small read buffer), so many
//! idle sockets cannot exhaust memory.

pub mod capped_io;
pub mod conn;
pub mod connection;
pub mod handshake;
pub mod hello;
pub mod hub;
pub mod outbound;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::client_addr::ClientAddr;
use crate::error::ApiError;
use crate::protocol::MAX_PREAUTH_FRAME_BYTES;
use crate::state::AppState;
use capped_io::{CappedIo, ReadCap};
use handshake::Peer;

/// Bytes a client may send before `connect` succeeds: one frame at the limit, plus framing.
const PREAUTH_BUDGET: usize = MAX_PREAUTH_FRAME_BYTES + 1024;

fn header_has(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|part| part.trim().eq_ignore_ascii_case(token)))
}

/// Whether a request asks for a WebSocket upgrade.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    header_has(headers, header::CONNECTION, "upgrade") && header_has(headers, header::UPGRADE, "websocket")
}

/// Handles an upgrade request on any path.
pub async fn upgrade(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    mut req: Request,
) -> Response {
    let headers = req.headers();
    if req.method() != axum::http::Method::GET {
        return ApiError::bad_request("WebSocket upgrades use GET").into_response();
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).and_then(|v| v.to_str().ok()) != Some("13") {
        let mut resp =
            ApiError::new(StatusCode::UPGRADE_REQUIRED, "invalid_request_error", "WebSocket version 13 is required")
                .into_response();
        resp.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return resp;
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).map(|k| k.as_bytes().to_vec()) else {
        return ApiError::bad_request("missing Sec-WebSocket-Key").into_response();
    };
    let client = req.extensions().get::<ClientAddr>().copied().unwrap_or(ClientAddr { ip: addr.ip(), local: false });
    let Some(pending) =
        state.hub.try_pending(client.ip, client.local, state.ws.max_pending, state.ws.max_pending_per_ip)
    else {
        tracing::warn!(client = %addr.ip(), "refused a WebSocket upgrade: too many handshakes in progress");
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "too many connections are being set up; retry shortly",
        );
        e.retry_after = Some(1);
        return e.into_response();
    };
    let headers = req.headers();
    let peer = Peer {
        ip: client.ip,
        origin: headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(String::from),
        host: headers.get(header::HOST).and_then(|v| v.to_str().ok()).map(String::from),
        local: client.local,
    };
    let accept = derive_accept_key(&key);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(state.ws.max_payload_bytes))
        .max_frame_size(Some(state.ws.max_payload_bytes));
    let task_state = state.clone();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket upgrade did not complete");
                return;
            }
        };
        let cap = ReadCap::new(PREAUTH_BUDGET);
        let io = CappedIo::new(TokioIo::new(upgraded), cap.clone());
        let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        connection::run(task_state, ws, cap, peer, pending).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
