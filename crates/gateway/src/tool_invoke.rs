//! Running one built-in tool on request (not from a model), for `tools.invoke` over the
//! WebSocket protocol and `POST /tools/invoke` over HTTP.
//!
//! The tool runs in the agent's workspace with exactly the confinement a model's call gets
//! (paths inside the workspace, `exec` allow-list and sandbox). Callers decide who may run
//! which tool; this only runs it and says how it went. Every invocation is logged (tool and
//! agent, never the arguments, which may hold file contents).
//!
//! A call with an idempotency key that was seen in the last ten minutes returns the first
//! call's outcome instead of running the tool again — also while the first call is still
//! running (the retry waits for it) — so a client that retries a write or a command it is
//! unsure about does not do it twice. A key is bound to what it was first used for (agent,
//! tool, arguments): reusing it for another call is refused, not answered with an unrelated
//! outcome. The memory of keys is per process and bounded.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clawline_agent::tools;
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::state::AppState;

/// How long an idempotency key is remembered.
pub const KEY_TTL: Duration = Duration::from_secs(600);
const MAX_KEYS: usize = 1000;

struct Seen {
    at: Instant,
    /// Agent, tool and arguments, hashed.
    fingerprint: u64,
    outcome: Arc<OnceCell<Outcome>>,
}

/// Outcomes of recent calls (and calls in progress), by idempotency key.
#[derive(Default)]
pub struct Recent {
    seen: Mutex<HashMap<String, Seen>>,
}

fn fingerprint(agent: &str, tool: &str, args: &serde_json::Map<String, Value>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (agent, tool, serde_json::to_string(args).unwrap_or_default()).hash(&mut h);
    h.finish()
}

impl Recent {
    /// The cell holding the outcome of the call `key` names: a new, empty one for a new key
    /// (the caller runs the tool), the first call's for a retry. `None` when the key was used
    /// for a different call.
    fn slot(&self, key: &str, fingerprint: u64) -> Option<Arc<OnceCell<Outcome>>> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = seen.get(key).filter(|s| s.at.elapsed() < KEY_TTL) {
            return (s.fingerprint == fingerprint).then(|| s.outcome.clone());
        }
        if seen.len() >= MAX_KEYS {
            seen.retain(|_, s| s.at.elapsed() < KEY_TTL);
            if seen.len() >= MAX_KEYS
                && let Some(oldest) = seen.iter().min_by_key(|(_, s)| s.at).map(|(k, _)| k.clone())
            {
                seen.remove(&oldest);
            }
        }
        let outcome = Arc::new(OnceCell::new());
        seen.insert(key.to_string(), Seen { at: Instant::now(), fingerprint, outcome: outcome.clone() });
        Some(outcome)
    }
}

/// Why a tool did not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotRun {
    UnknownAgent(String),
    /// Not a tool, or switched off (`tools.allow`/`tools.deny`, exec security).
    NotAvailable(String),
    /// The idempotency key was used for another call (other agent, tool or arguments).
    KeyReused(String),
}

impl NotRun {
    pub fn message(&self) -> String {
        match self {
            NotRun::UnknownAgent(id) => format!("unknown agent id: {id}"),
            NotRun::NotAvailable(name) => format!("Tool not available: {name}"),
            NotRun::KeyReused(key) => format!(
                "idempotency key {key} was already used for a different tool call in the last {} minutes; use a new key",
                KEY_TTL.as_secs() / 60
            ),
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
    let config = state.runtime.config();
    let id = agent_id.unwrap_or(&config.default_agent);
    let Some(ctx) = state.runtime.tool_context(id).await else { return Err(NotRun::UnknownAgent(id.to_string())) };
    if !tools::is_enabled(name, &ctx.settings) {
        return Err(NotRun::NotAvailable(name.to_string()));
    }
    let slot = match idempotency_key {
        Some(key) => Some(
            state
                .recent_tools
                .slot(key, fingerprint(id, name, &args))
                .ok_or_else(|| NotRun::KeyReused(key.to_string()))?,
        ),
        None => None,
    };
    let call = async {
        tracing::info!(tool = name, agent = id, caller, "tool invoked directly");
        let command = args.get("command").and_then(Value::as_str).unwrap_or_default().to_string();
        let audit = |outcome: &'static str| {
            let row = clawline_observe::AuditRow::now(caller, "tool.exec", &command, outcome);
            state.runtime.observer().record(clawline_observe::Record::Audit(row.detail(format!("agent {id}"))))
        };
        if name == "exec" {
            // One row before it runs (the caller may go away mid-run), one when it ends.
            audit("started").await;
        }
        let out = tools::call(name, &Value::Object(args), &ctx).await;
        if name == "exec" {
            audit(if out.is_error { "error" } else { "ok" }).await;
        }
        Outcome { text: out.text, is_error: out.is_error }
    };
    let Some(slot) = slot else { return Ok(call.await) };
    // A retry while the first call runs waits for it here; it never runs the tool a second time.
    Ok(slot.get_or_init(|| call).await.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_is_bound_to_its_call() {
        let recent = Recent::default();
        let args = serde_json::Map::new();
        let first = recent.slot("k", fingerprint("main", "read", &args)).unwrap();
        let retry = recent.slot("k", fingerprint("main", "read", &args)).unwrap();
        assert!(Arc::ptr_eq(&first, &retry), "a retry shares the first call's outcome");
        assert!(recent.slot("k", fingerprint("main", "exec", &args)).is_none(), "another tool");
        assert!(recent.slot("k", fingerprint("other", "read", &args)).is_none(), "another agent");
        let mut other = serde_json::Map::new();
        other.insert("path".into(), Value::from("x"));
        assert!(recent.slot("k", fingerprint("main", "read", &other)).is_none(), "other arguments");
        first.set(Outcome { text: "done".into(), is_error: false }).unwrap();
        assert_eq!(retry.get().unwrap().text, "done");
    }
}
