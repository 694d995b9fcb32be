//! Waking an agent with a system event, for the `wake` method and `POST <hooks>/wake`.
//!
//! `mode: "now"` starts a turn at once in the agent's main session (or the session given),
//! with the event text as the message and a note telling the model it came from a system
//! event rather than from the person. `mode: "next-heartbeat"` needs a heartbeat, which this
//! gateway does not run yet, so it is refused with a message that says what to use instead —
//! an event queued for a heartbeat that never comes would be lost silently.

use std::sync::Arc;

use clawline_agent::TurnRequest;

use crate::protocol::error::RpcError;
use crate::state::AppState;
use crate::turn_start::{self, Started};

/// The note added to the prompt of a turn started by a wake.
pub const WAKE_NOTE: &str = "This turn was started by a system event (a wake from another program), not by a message from the user. Act on the event if it calls for it; reply briefly otherwise.";

/// Starts the wake's turn, waiting at most `lane_wait` for a busy session. The new run comes
/// back tracked, for the caller to start its events once it has answered.
pub async fn wake(
    state: &Arc<AppState>,
    text: &str,
    mode: &str,
    agent_id: Option<&str>,
    session_key: Option<&str>,
    lane_wait: std::time::Duration,
) -> Result<Started, RpcError> {
    if mode != "now" {
        return Err(RpcError::bad(
            "mode \"next-heartbeat\" needs a heartbeat, and this gateway runs none yet; use mode \"now\"",
        ));
    }
    let req = TurnRequest {
        agent_id: agent_id.map(String::from),
        session_key: session_key.map(String::from),
        message: text.to_string(),
        extra_system: Some(WAKE_NOTE.into()),
        run_id: Some(uuid::Uuid::new_v4().to_string()),
        channel: Some("wake".into()),
        ..Default::default()
    };
    turn_start::start(state, req, lane_wait).await.map_err(turn_start::turn_error)
}
