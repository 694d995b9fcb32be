//! Starting a turn for a gateway caller (a WebSocket method, a webhook, a wake) without ever
//! losing track of it.
//!
//! The runtime stores the user message before it answers, so once it has answered the run
//! exists and goes on whatever the caller does. Two things could orphan such a run — a caller
//! that gives up waiting, or a connection that closes mid-request — and both would leave a
//! run nobody tracks: no `chat`/`agent` events, nothing for `agent.wait`. So the turn is
//! started in its own task, which registers the run with the tracker itself and hands it to
//! the caller; if the caller is gone by then, the task starts the run's events on its own.
//! Waiting for a busy session is bounded by the runtime (`TurnRequest::lane_wait`), which
//! refuses the turn with nothing stored — never by a timeout around an answer that may
//! already be on its way.
//!
//! This module must not answer the caller: it returns what happened and the caller words it.

use std::sync::Arc;
use std::time::Duration;

use clawline_agent::{TurnError, TurnRequest, TurnStart};
use clawline_store::RunRow;
use serde_json::json;
use tokio::sync::oneshot;

use crate::protocol::error::{ErrorCode, RpcError};
use crate::runs::{self, Tracked};
use crate::state::AppState;

/// How long a WebSocket send waits for a busy session before it is refused.
pub const LANE_WAIT: Duration = Duration::from_secs(5);
/// How long a webhook waits: webhook senders rarely retry well, so it waits longer.
pub const HOOK_LANE_WAIT: Duration = Duration::from_secs(15);

/// What starting a turn did.
pub enum Started {
    /// A new run, tracked; its events flow once [`Tracked::start`] is called.
    New(Tracked),
    /// The idempotency key was used before: the earlier run.
    Duplicate(RunRow),
}

/// Starts `req`, waiting at most `lane_wait` for a busy session.
pub async fn start(state: &Arc<AppState>, mut req: TurnRequest, lane_wait: Duration) -> Result<Started, TurnError> {
    req.lane_wait = Some(lane_wait);
    let (tx, rx) = oneshot::channel();
    let owner = state.clone();
    tokio::spawn(async move {
        let result = owner.runtime.start_turn(req).await.map(|s| match s {
            TurnStart::Started(handle) => Started::New(runs::track(&owner, handle)),
            TurnStart::Duplicate(row) => Started::Duplicate(row),
        });
        // The caller went away: the run still gets its events and its ending recorded.
        if let Err(Ok(Started::New(tracked))) = tx.send(result) {
            tracked.start(None);
        }
    });
    rx.await.unwrap_or_else(|_| Err(TurnError::Internal("the turn's task stopped before it answered".into())))
}

/// A refused turn as a protocol error.
pub fn turn_error(e: TurnError) -> RpcError {
    let code = e.code();
    match e {
        TurnError::Store(clawline_store::StoreError::RunIdTaken(id)) => {
            RpcError::bad(format!("idempotencyKey {id} was already used for another session; use a new one"))
        }
        TurnError::Busy => RpcError::unavailable(
            "the session is busy with another run; retry when it finishes, or stop it with chat.abort",
        )
        .details(json!({"code": code}))
        .retry_after(2000),
        e if e.is_client_error() => RpcError::bad(e.to_string()).details(json!({"code": code})),
        e @ (TurnError::NoModel(_) | TurnError::MissingKey { .. }) => {
            RpcError::new(ErrorCode::Unavailable, e.to_string()).details(json!({"code": code}))
        }
        e => RpcError::unavailable(e.to_string()).details(json!({"code": code})),
    }
}

/// [`start`] with the WebSocket wait, errors worded for the protocol.
pub async fn start_for_protocol(state: &Arc<AppState>, req: TurnRequest) -> Result<Started, RpcError> {
    start(state, req, LANE_WAIT).await.map_err(turn_error)
}
