//! The RPC methods of the WebSocket protocol: one table, one file per family.
//!
//! Each [`Method`] names the scope it needs, declares its parameters (closed objects: unknown
//! keys are refused), and has a handler that receives validated parameters. [`dispatch`] does
//! the checks in a fixed order — role, method exists, scope, rate limit, parameters — so every
//! handler starts from a request that is allowed and well formed, and every refusal is worded
//! the same way. `hello-ok.features.methods` is this table's names: nothing is advertised that
//! is not implemented.
//!
//! | file | methods |
//! |---|---|
//! | `system.rs` | `health`, `status`, `system-presence`, `last-heartbeat`, `wake`, `logs.tail` |
//! | `sessions.rs` | `sessions.list|describe|preview|patch|reset|delete|subscribe`, `sessions.messages.subscribe|unsubscribe` |
//! | `chat.rs` | `chat.send|history|abort|startup|inject` |
//! | `agent.rs` | `agent`, `agent.wait`, `agent.identity.get`, `agents.list` |
//! | `models.rs` | `models.list` |
//! | `memory.rs` | `doctor.memory.status`, `memory.search` |
//! | `config.rs` | `config.get|set|patch|apply|schema` |
//! | `catalog.rs` | `commands.list`, `tools.catalog`, `tools.invoke`, `cron.list` |
//! | `channels.rs` | `channels.status`, `channels.pairing.list|approve|dismiss` |
//! | `devices.rs` | `device.pair.list|approve|reject|remove|rename`, `device.token.revoke` |
//! | `approvals.rs` | `exec.approval.list|get|resolve` (and the `exec.approval.*` events) |

mod agent;
pub mod approvals;
mod audit;
mod catalog;
mod channels;
mod chat;
mod config;
mod devices;
mod memory;
mod models;
mod sessions;
mod system;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::limits::LIMITED_METHODS;
use crate::protocol::error::RpcError;
use crate::protocol::frame::Request;
use crate::protocol::schema::{self, Schema};
use crate::protocol::scopes::{self, Role};
use crate::state::AppState;
use crate::ws::conn::Conn;

pub use channels::status_json as channels_status;
pub use devices::{announce_resolved, pending_json};
pub use system::{health_snapshot, minimal_health, self_presence};

/// Work to do once the response has been queued; it gets a receiver that resolves when the
/// response is on the socket.
type AfterResponse = Box<dyn FnOnce(tokio::sync::oneshot::Receiver<()>) + Send>;

/// What a handler gets besides its parameters.
pub struct Ctx {
    pub state: Arc<AppState>,
    pub conn: Arc<Conn>,
    /// The request id (for methods that answer more than once).
    pub id: String,
    /// The request frame's `traceparent`.
    pub traceparent: Option<String>,
    after: Arc<std::sync::Mutex<Vec<AfterResponse>>>,
}

impl Ctx {
    /// Runs `f` right after this request's successful response is queued (e.g. to start a
    /// run's events only once the client knows the run); `f` gets a receiver that resolves
    /// when the response has been written.
    pub fn after_response(&self, f: impl FnOnce(tokio::sync::oneshot::Receiver<()>) + Send + 'static) {
        self.after.lock().unwrap_or_else(|p| p.into_inner()).push(Box::new(f));
    }
}

pub type Reply = Result<Value, RpcError>;
type Handler = fn(Ctx, Value) -> Pin<Box<dyn Future<Output = Reply> + Send>>;

/// Which scope a method needs.
#[derive(Clone, Copy)]
pub enum Access {
    Scope(&'static str),
    /// Decided by the parameters.
    Dynamic(fn(&Value) -> &'static str),
}

pub struct Method {
    pub name: &'static str,
    pub access: Access,
    pub params: Schema,
    pub run: Handler,
}

/// Wraps an `async fn(Ctx, Value) -> Reply` as a table entry.
macro_rules! method {
    ($name:literal, $access:expr, $params:expr, $f:path) => {
        Method { name: $name, access: $access, params: $params, run: |c, p| Box::pin($f(c, p)) }
    };
}
pub(crate) use method;

/// Every method, by family.
pub fn table() -> &'static [Method] {
    static TABLE: std::sync::OnceLock<Vec<Method>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut all = Vec::new();
        all.extend(system::methods());
        all.extend(sessions::methods());
        all.extend(chat::methods());
        all.extend(agent::methods());
        all.extend(models::methods());
        all.extend(memory::methods());
        all.extend(config::methods());
        all.extend(catalog::methods());
        all.extend(channels::methods());
        all.extend(devices::methods());
        all.extend(approvals::methods());
        all
    })
}

pub fn find(name: &str) -> Option<&'static Method> {
    table().iter().find(|m| m.name == name)
}

/// The advertised method names.
pub fn names() -> Vec<&'static str> {
    table().iter().map(|m| m.name).collect()
}

/// Each method's name, the scope it needs (`dynamic` when the parameters decide) and its
/// parameter schema: the surface conformance tests compare with OpenClaw's published schema.
pub fn surface() -> Vec<(&'static str, &'static str, &'static Schema)> {
    table()
        .iter()
        .map(|m| {
            let scope = match m.access {
                Access::Scope(s) => s,
                Access::Dynamic(_) => "dynamic",
            };
            (m.name, scope, &m.params)
        })
        .collect()
}

/// Events this gateway emits (`hello-ok.features.events`).
pub const EVENTS: &[&str] = &[
    "connect.challenge",
    "tick",
    "presence",
    "health",
    "shutdown",
    "chat",
    "agent",
    "sessions.changed",
    "session.message",
    "device.pair.requested",
    "device.pair.resolved",
];

/// Parses validated parameters into a typed struct. `null` (no params) reads as `{}`.
pub fn parse<T: DeserializeOwned>(method: &str, params: Value) -> Result<T, RpcError> {
    let params = if params.is_null() { Value::Object(Default::default()) } else { params };
    serde_json::from_value(params).map_err(|e| RpcError::invalid_params(method, &e.to_string()))
}

/// After this many `unauthorized role` answers in a row, the connection is closed.
const MAX_UNAUTHORIZED_STREAK: u32 = 10;

/// Answers one request: checks, then the handler.
pub async fn dispatch(state: Arc<AppState>, conn: Arc<Conn>, req: Request) {
    let Request { id, method, params, traceparent } = req;
    // `health` is for everyone who got in; everything else is for operators. A client that
    // keeps calling what its role may not is closed.
    if method != "health" && conn.role != Role::Operator {
        let refusal = RpcError::invalid(format!("unauthorized role: {}", conn.role.as_str()));
        if audit::is_audited(&method) {
            audit::record(&state, &conn, &method, &audit::target(&params), &Err(refusal.clone())).await;
        }
        conn.respond_err(&id, &refusal);
        let streak = conn.unauthorized_streak.fetch_add(1, std::sync::atomic::Ordering::AcqRel) + 1;
        if streak > MAX_UNAUTHORIZED_STREAK {
            conn.out.close(1008, "repeated unauthorized calls");
        }
        return;
    }
    conn.unauthorized_streak.store(0, std::sync::atomic::Ordering::Release);
    let after = Arc::new(std::sync::Mutex::new(Vec::new()));
    let audited = audit::is_audited(&method).then(|| audit::target(&params));
    let reply = check_and_run(state.clone(), conn.clone(), (&id, traceparent), &method, params, after.clone()).await;
    if let Some(target) = audited {
        audit::record(&state, &conn, &method, &target, &reply).await;
    }
    let hooks: Vec<AfterResponse> = std::mem::take(&mut *after.lock().unwrap_or_else(|p| p.into_inner()));
    match reply {
        Ok(v) => {
            if hooks.is_empty() {
                conn.respond_ok(&id, &v);
            } else {
                let mut written = Some(conn.respond_ok_notify(&id, &v));
                for f in hooks {
                    let rx = written.take().unwrap_or_else(|| tokio::sync::oneshot::channel().1);
                    f(rx);
                }
            }
        }
        Err(e) => conn.respond_err(&id, &e),
    }
}

async fn check_and_run(
    state: Arc<AppState>,
    conn: Arc<Conn>,
    (id, traceparent): (&str, Option<String>),
    name: &str,
    params: Value,
    after: Arc<std::sync::Mutex<Vec<AfterResponse>>>,
) -> Reply {
    let admin = conn.allows(scopes::ADMIN);
    if name == "connect" {
        return Err(if admin {
            RpcError::invalid("connect is only valid as the first request")
        } else {
            RpcError::missing_scope(scopes::ADMIN)
        });
    }
    // Methods nobody classified need admin, so probing for method names needs admin too.
    let Some(m) = find(name) else {
        return Err(if admin { RpcError::unknown_method(name) } else { RpcError::missing_scope(scopes::ADMIN) });
    };
    let required = match m.access {
        Access::Scope(s) => s,
        Access::Dynamic(f) => f(&params),
    };
    if let Some(missing) = scopes::missing(&[required], &conn.scopes).filter(|_| name != "health") {
        return Err(RpcError::missing_scope(missing));
    }
    if LIMITED_METHODS.contains(&name) {
        let client = conn.device_id.clone().unwrap_or_else(|| conn.remote.to_string());
        if let Err(wait) = state.method_limiter.check(name, &client) {
            return Err(RpcError::rate_limited(name, wait.as_millis() as u64, &state.method_limiter.describe()));
        }
    }
    let for_check = if params.is_null() { Value::Object(Default::default()) } else { params };
    if let Err(why) = schema::validate(&m.params, &for_check) {
        return Err(RpcError::invalid_params(name, &why));
    }
    (m.run)(Ctx { state, conn, id: id.to_string(), traceparent, after }, for_check).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        let names = names();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "no method is listed twice");
        for m in table() {
            assert!(matches!(m.params, Schema::Object(_)), "{} takes an object", m.name);
            if let Access::Scope(s) = m.access {
                assert!(scopes::OPERATOR_SCOPES.contains(&s), "{}: {s}", m.name);
            }
        }
        for core in ["health", "connect"] {
            assert_eq!(find(core).is_some(), core != "connect", "{core}");
        }
    }
}
