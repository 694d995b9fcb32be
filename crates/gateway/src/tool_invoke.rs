//! Running one built-in tool on request (not from a model), for `tools.invoke` over the
//! WebSocket protocol and `POST /tools/invoke` over HTTP.
//!
//! The tool runs in the agent's workspace with exactly the confinement a model's call gets
//! (paths inside the workspace, `exec` allow-list and sandbox). Callers decide who may run
//! which tool; this only runs it and says how it went. Every invocation is logged (tool and
//! agent, never the arguments, which may hold file contents).
//!
//! A call with an idempotency key that was seen in the last ten minutes (same tool) returns
//! the first call's outcome instead of running the tool again, so a client that retries a
//! write or a command it is unsure about does not do it twice. The memory of keys is per
//! process and bounded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clawline_agent::tools;
use serde_json::Value;

use crate::state::AppState;

/// How long an idempotency key is remembered.
pub const KEY_TTL: Duration = Duration::from_secs(600);
const MAX_KEYS: usize = 1000;

/// Outcomes of recent calls, by idempotency key.
#[derive(Default)]
pub struct Recent {
    seen: Mutex<HashMap<String, (Instant, String, Outcome)>>,
}

impl Recent {
    fn get(&self, key: &str, tool: &str) -> Option<Outcome> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(key).filter(|(at, t, _)| t == tool && at.elapsed() < KEY_TTL).map(|(_, _, o)| o.clone())
    }

    fn put(&self, key: String, tool: &str, outcome: &Outcome) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_KEYS {
            seen.retain(|_, (at, _, _)| at.elapsed() < KEY_TTL);
            if seen.len() >= MAX_KEYS
                && let Some(oldest) = seen.iter().min_by_key(|(_, (at, _, _))| *at).map(|(k, _)| k.clone())
            {
                seen.remove(&oldest);
            }
        }
        seen.insert(key, (Instant::now(), tool.to_string(), outcome.clone()));
    }
}

/// Why a tool did not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotRun {
    UnknownAgent(String),
    /// Not a tool, or switched off (`tools.allow`/`tools.deny`, exec security).
    NotAvailable(String),
}

impl NotRun {
    pub fn message(&self) -> String {
        match self {
            NotRun::UnknownAgent(id) => format!("unknown agent id: {id}"),
            NotRun::NotAvailable(name) => format!("Tool not available: {name}"),
        }
    }
}

/// What the tool said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub text: String,
    pub is_error: bool,
}

/// Runs `name` with `args` for `agent_id` (the default agent when `None`); a repeated
/// `idempotency_key` returns the earlier outcome.
pub async fn run(
    state: &AppState,
    agent_id: Option<&str>,
    name: &str,
    args: serde_json::Map<String, Value>,
    idempotency_key: Option<&str>,
    caller: &str,
) -> Result<Outcome, NotRun> {
    if let Some(done) = idempotency_key.and_then(|k| state.recent_tools.get(k, name)) {
        return Ok(done);
    }
    let config = state.runtime.config();
    let id = agent_id.unwrap_or(&config.default_agent);
    let Some(ctx) = state.runtime.tool_context(id) else { return Err(NotRun::UnknownAgent(id.to_string())) };
    if !tools::is_enabled(name, &ctx.settings) {
        return Err(NotRun::NotAvailable(name.to_string()));
    }
    tracing::info!(tool = name, agent = id, caller, "tool invoked directly");
    let out = tools::call(name, &Value::Object(args), &ctx).await;
    let outcome = Outcome { text: out.text, is_error: out.is_error };
    if let Some(k) = idempotency_key {
        state.recent_tools.put(k.to_string(), name, &outcome);
    }
    Ok(outcome)
}
