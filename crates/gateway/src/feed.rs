//! From the store's change feed to `session.message` and `sessions.changed` events.
//!
//! Every committed transcript append (from any surface: protocol, OpenAI API, web chat, crash
//! recovery) reaches the connections that subscribed: `session.message` per displayable record
//! to those watching that session, and one `sessions.changed` per change to those watching the
//! session list. Events are built only when someone listens; the session row is read once per
//! change. A lagging feed is logged and skipped: clients resync with `chat.history`.

use std::sync::Arc;

use clawline_store::Change;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::protocol::frame::Event;
use crate::state::AppState;
use crate::views;

/// Runs until the gateway shuts down.
pub async fn run(state: Arc<AppState>) {
    let mut rx = state.runtime.store().subscribe();
    loop {
        let change = tokio::select! {
            () = state.shutdown.cancelled() => return,
            c = rx.recv() => c,
        };
        match change {
            Ok(change) => forward(&state, &change).await,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "session change feed lagged; clients resync on their next history read")
            }
            Err(RecvError::Closed) => return,
        }
    }
}

fn watchers(state: &AppState, key: &str) -> (bool, bool) {
    let mut messages = false;
    let mut sessions = false;
    for c in state.hub.all() {
        let subs = c.subs();
        messages |= subs.messages.contains(key);
        sessions |= subs.sessions;
    }
    (messages, sessions)
}

async fn row_json(state: &AppState, key: &str) -> Value {
    match state.runtime.store().get_session(key).await {
        Ok(Some(row)) => views::session_row(&row, None, &state.runtime.active_runs(key)),
        _ => Value::Null,
    }
}

async fn forward(state: &AppState, change: &Change) {
    let (key, agent_id, reason) = match change {
        Change::Appended(a) => (&a.session_key, &a.agent_id, "message"),
        Change::Session { session_key, agent_id, change } => (session_key, agent_id, change.as_str()),
    };
    let (messages, sessions) = watchers(state, key);
    if !messages && !sessions {
        return;
    }
    let session = row_json(state, key).await;
    if let (Change::Appended(a), true) = (change, messages) {
        // Records appended during a run belong to it; a user message starts a new one.
        let mut run = state.runtime.active_runs(key).into_iter().next();
        for stored in &a.records {
            if let Some(id) = views::run_of_user_message(stored) {
                run = Some(id);
            }
            let Some(message) = views::display_message(stored, run.as_deref()) else { continue };
            let payload = json!({
                "sessionKey": key,
                "agentId": agent_id,
                "message": message,
                "messageId": stored.record.id(),
                "messageSeq": stored.seq,
                "session": session,
            });
            let event = Event::new("session.message", &payload);
            state.hub.broadcast(&event, |c| c.subs().messages.contains(key.as_str()));
        }
    }
    if sessions {
        let payload = json!({
            "sessionKey": key,
            "agentId": agent_id,
            "reason": reason,
            "ts": clawline_store::now_ms(),
            "session": session,
        });
        state.hub.broadcast(&Event::new("sessions.changed", &payload), |c| c.subs().sessions);
    }
}
