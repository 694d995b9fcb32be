//! One WebSocket connection from challenge to close.
//!
//! Before `connect` succeeds the client may send exactly one request, `connect`, within the
//! handshake timeout and inside the pre-auth byte budget; anything else gets a precise error
//! and the socket is closed. After `hello-ok` the connection is registered with the hub, gets a
//! `tick` every `policy.tickIntervalMs`, and each request runs in its own task (a few at a time
//! per connection), so a long `agent` call never blocks a `health` call. Text that is not JSON
//! is ignored after the handshake, as OpenClaw does. When the gateway stops, clients get a
//! `shutdown` event and close code 1001.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::capped_io::ReadCap;
use super::conn::{Conn, Subscriptions};
use super::handshake::{self, Challenge, Grant, Peer};
use super::hello;
use super::hub::PendingGuard;
use super::outbound::{self, Outbound};
use crate::methods;
use crate::protocol::error::RpcError;
use crate::protocol::frame::{self, Event, FrameError};
use crate::state::AppState;

/// Close codes after the handshake.
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_RESTART: u16 = 1012;
const CLOSE_TRY_LATER: u16 = 1013;

/// Liveness: a ping this often; no pong by the next one ends the connection.
const PING_EVERY: Duration = Duration::from_secs(25);

fn refuse(out: &Outbound, id: Option<&str>, error: RpcError, close: u16) {
    if let Some(id) = id {
        out.text(frame::response_err(id, &error));
    }
    out.close(close, &error.message);
}

/// Runs the handshake; `None` when the connection ended or was refused.
async fn handshake<S>(
    state: &AppState,
    stream: &mut futures_util::stream::SplitStream<WebSocketStream<S>>,
    out: &Outbound,
    cap: &ReadCap,
    peer: &Peer,
) -> Option<(String, Grant)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let challenge = Challenge { nonce: uuid::Uuid::new_v4().to_string(), ts: clawline_store::now_ms() };
    out.unsequenced(Event::new(
        "connect.challenge",
        &json!({"nonce": challenge.nonce, "ts": challenge.ts, "capabilities": []}),
    ));
    let deadline = tokio::time::sleep(Duration::from_millis(state.ws.handshake_timeout_ms));
    tokio::pin!(deadline);
    loop {
        let msg = tokio::select! {
            () = &mut deadline => {
                out.close(CLOSE_NORMAL, "handshake timeout");
                return None;
            }
            () = state.shutdown.cancelled() => {
                out.close(CLOSE_GOING_AWAY, "gateway shutting down");
                return None;
            }
            m = stream.next() => m,
        };
        let text = match msg {
            None => return None,
            Some(Err(_)) => {
                if cap.exceeded() {
                    out.close(CLOSE_TOO_BIG, "pre-auth frame too large (the connect frame may be at most 64 KiB)");
                }
                return None;
            }
            Some(Ok(Message::Text(t))) => t,
            // Binary frames are read as UTF-8 JSON, as OpenClaw does.
            Some(Ok(Message::Binary(b))) => match String::from_utf8(b.to_vec()) {
                Ok(t) => t.into(),
                Err(_) => {
                    out.close(CLOSE_NORMAL, "");
                    return None;
                }
            },
            Some(Ok(Message::Close(_))) => return None,
            Some(Ok(_)) => continue,
        };
        match frame::parse_request(&text) {
            // As OpenClaw: text that is not JSON just ends the connection; JSON that is not a
            // request frame ends it with a reason, and neither gets a response.
            Err(FrameError::NotJson) => {
                out.close(CLOSE_NORMAL, "");
                return None;
            }
            Err(FrameError::Invalid { .. }) => {
                out.close(handshake::CLOSE_POLICY, "invalid request frame");
                return None;
            }
            Ok(req) if req.method != "connect" => {
                refuse(
                    out,
                    Some(&req.id),
                    RpcError::invalid("invalid handshake: first request must be connect"),
                    handshake::CLOSE_POLICY,
                );
                return None;
            }
            Ok(req) => {
                // Boxed: the check is large, and idle sockets should not carry its state.
                return match Box::pin(handshake::authorize(state, peer, &challenge, req.params)).await {
                    Ok(grant) => Some((req.id, grant)),
                    Err(refusal) => {
                        tracing::info!(client = %peer.ip, error = %refusal.error.message, "refused a WebSocket connect");
                        out.text(frame::response_err(&req.id, &refusal.error));
                        out.close(refusal.close, refusal.reason.as_deref().unwrap_or(&refusal.error.message));
                        None
                    }
                };
            }
        }
    }
}

/// Serves one upgraded socket until it closes.
pub async fn run<S>(state: Arc<AppState>, ws: WebSocketStream<S>, cap: Arc<ReadCap>, peer: Peer, pending: PendingGuard)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, mut stream) = ws.split();
    let (out, writer) = outbound::queue(state.ws.max_buffered_bytes);
    let mut writer_task = tokio::spawn(writer.run(sink));

    let Some((connect_id, grant)) = handshake(&state, &mut stream, &out, &cap, &peer).await else {
        drop(pending);
        finish_writer(&mut writer_task).await;
        return;
    };
    cap.lift();
    drop(pending);

    let conn = Arc::new(Conn {
        id: uuid::Uuid::new_v4().to_string(),
        role: grant.role,
        scopes: grant.scopes.clone(),
        client: grant.client.clone(),
        caps: grant.caps.clone(),
        device_id: grant.device.as_ref().map(|d| d.id.clone()),
        remote: peer.ip,
        connected_at: clawline_store::now_ms(),
        subs: std::sync::Mutex::new(Subscriptions::default()),
        out: out.clone(),
        unauthorized_streak: Default::default(),
    });
    let hello = hello::payload(&state, &grant, &conn.id).await;
    let self_entry = methods::self_presence(&state);
    // Short-lived clients (one CLI command) do not appear in presence.
    let ephemeral = matches!(conn.client.mode.as_str(), "cli" | "backend" | "probe");
    // Counted and registered in one step, so a burst of connects cannot overshoot the limit;
    // `hello-ok` is queued before any broadcast can reach the connection.
    let registered = state.hub.try_register(conn.clone(), state.ws.max_connections, !ephemeral, &self_entry, || {
        conn.respond_ok(&connect_id, &hello)
    });
    if !registered {
        let e = RpcError::unavailable("too many connections to this gateway; try again later").retry_after(5000);
        refuse(&out, Some(&connect_id), e, CLOSE_TRY_LATER);
        finish_writer(&mut writer_task).await;
        return;
    }
    tracing::info!(
        conn = %conn.id, client_id = %conn.client.id, mode = %conn.client.mode, auth = grant.method,
        scopes = ?conn.scopes, device = conn.device_id.as_deref().unwrap_or("-"), "WebSocket client connected"
    );
    if conn.allows(crate::protocol::scopes::READ)
        && let Ok(h) = methods::health_snapshot(&state).await
    {
        conn.send(Event::new("health", &h).with_state_version(state.hub.state_version()));
    }

    let in_flight = Arc::new(Semaphore::new(state.ws.max_in_flight));
    // The connection's requests: reaped as they finish, stopped when the connection ends (a
    // run they started goes on; only the waiting for it stops).
    let mut tasks = JoinSet::new();
    let tick_every = Duration::from_millis(state.ws.tick_interval_ms);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + tick_every, tick_every);
    let mut writer_done = false;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    let mut awaiting_pong = false;
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => {
                conn.send(Event::new("shutdown", &json!({"reason": "gateway stopping"})));
                out.close(CLOSE_RESTART, "service restart");
                break;
            }
            _ = ping.tick() => {
                if awaiting_pong {
                    tracing::info!(conn = %conn.id, "no answer to a ping; closing the connection");
                    break;
                }
                awaiting_pong = out.ping();
            }
            _ = &mut writer_task, if !writer_done => {
                // The client stopped reading (buffer full) or the socket failed.
                writer_done = true;
                break;
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = tick.tick() => {
                conn.send(Event::new("tick", &json!({"ts": clawline_store::now_ms()})));
            }
            msg = stream.next() => {
                let text = match msg {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(b))) => match String::from_utf8(b.to_vec()) {
                        Ok(t) => t.into(),
                        Err(_) => continue,
                    },
                    Some(Ok(Message::Pong(_))) => {
                        awaiting_pong = false;
                        continue;
                    }
                    Some(Ok(_)) => continue,
                };
                match frame::parse_request(&text) {
                    Err(FrameError::NotJson) | Err(FrameError::Invalid { id: None, .. }) => {
                        tracing::debug!(conn = %conn.id, "ignored a frame that is not a request");
                    }
                    Err(FrameError::Invalid { id: Some(id), message }) => conn.respond_err(&id, &RpcError::invalid(message)),
                    Ok(req) => match in_flight.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let (state, conn) = (state.clone(), conn.clone());
                            tasks.spawn(async move {
                                methods::dispatch(state, conn, req).await;
                                drop(permit);
                            });
                        }
                        Err(_) => conn.respond_err(
                            &req.id,
                            &RpcError::unavailable("too many requests in flight on this connection").retry_after(250),
                        ),
                    },
                }
            }
        }
    }
    tasks.abort_all();
    state.hub.unregister(&conn.id, &self_entry, !ephemeral);
    out.close(CLOSE_NORMAL, "");
    if !writer_done {
        finish_writer(&mut writer_task).await;
    }
    tracing::info!(conn = %conn.id, "WebSocket client disconnected");
}

/// Gives the writer two seconds to flush what is queued and close; then stops it, so a client
/// that never reads cannot keep the task (and its socket) alive.
async fn finish_writer<T>(writer: &mut tokio::task::JoinHandle<T>) {
    if tokio::time::timeout(Duration::from_secs(2), &mut *writer).await.is_err() {
        writer.abort();
    }
}
