//! The built-in tools and the schemas the model sees.
//!
//! | tool | does | confined by |
//! |---|---|---|
//! | `read`  | reads a text file, by line range | the workspace |
//! | `write` | creates or replaces a file (parents created) | the workspace |
//! | `edit`  | exact, unique text replacements in one file | the workspace |
//! | `ls`    | lists a directory | the workspace |
//! | `exec`  | runs one program, without a shell | `tools.exec`: allow-list, cwd in the workspace, clean environment, timeout, output cap; the kernel [`sandbox`] (no network, writes only in the workspace) |
//! | `web_fetch` | one public web page as text, marked untrusted | [`net_guard`]: public addresses only (checked at connect time and on every redirect), size and time caps, no proxy, no cookies |
//! | `memory_search` | ranked snippets of the memory files | the memory index (when `memory.search` is on) |
//! | `memory_get` | lines of a memory file | files the memory index holds |
//!
//! The schemas are part of clawline's interface: models and prompts depend on them, so they
//! change only deliberately (a golden test in `tests/tool_schemas.rs` pins them). Every tool
//! returns text; failures are results with `is_error: true` and a message the model can act on,
//! never a crash of the run.

mod edit;
mod exec;
mod html_text;
mod ls;
mod memory_get;
mod memory_search;
pub use memory_search::result_json as memory_result_json;
pub mod net_guard;
pub mod path;
mod read;
pub mod sandbox;
mod web_fetch;
mod write;

use std::path::PathBuf;
use std::sync::Arc;

use clawline_core::config::ToolSettings;
use clawline_providers::ToolSpec;
use serde_json::Value;

/// What a tool call produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    pub text: String,
    pub is_error: bool,
}

impl ToolOutput {
    pub fn ok(text: impl Into<String>) -> Self {
        ToolOutput { text: text.into(), is_error: false }
    }

    pub fn err(text: impl Into<String>) -> Self {
        ToolOutput { text: text.into(), is_error: true }
    }
}

/// What tools may touch.
#[derive(Debug, Clone)]
pub struct ToolContext {
    /// The agent's workspace, canonicalized.
    pub workspace: PathBuf,
    pub settings: ToolSettings,
    /// The agent's memory, when `memory.search` is on.
    pub memory: Option<MemoryAccess>,
    /// Whom `exec` asks when a command needs approval; `None`: nobody (such commands are refused).
    pub approvals: Option<ApprovalScope>,
}

/// The approval broker, with the run a request would come from.
#[derive(Debug, Clone)]
pub struct ApprovalScope {
    pub broker: Arc<crate::approvals::Approvals>,
    pub agent_id: String,
    pub session_key: String,
    pub run_id: String,
}

/// One agent's memory index, as the memory tools use it.
#[derive(Clone)]
pub struct MemoryAccess {
    pub agent_id: String,
    pub index: Arc<clawline_memory::index::MemoryIndex>,
    pub memories: Arc<crate::memory::Memories>,
    /// The session id of the run using the tools: its own transcript is left out of searches.
    pub current_session: Option<String>,
}

impl std::fmt::Debug for MemoryAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryAccess").field("agent_id", &self.agent_id).finish_non_exhaustive()
    }
}

/// The built-in tools, in the order they are offered.
pub const BUILTIN: &[&str] = &["read", "write", "edit", "ls", "exec", "web_fetch"];

/// The memory tools, offered after the built-ins when the agent has memory.
pub const MEMORY: &[&str] = &["memory_search", "memory_get"];

/// Whether `name` is one of clawline's tools (offered or not).
pub fn is_known(name: &str) -> bool {
    BUILTIN.contains(&name) || MEMORY.contains(&name)
}

fn spec(name: &str) -> Option<ToolSpec> {
    let (description, parameters) = match name {
        "read" => read::schema(),
        "write" => write::schema(),
        "edit" => edit::schema(),
        "ls" => ls::schema(),
        "exec" => exec::schema(),
        "web_fetch" => web_fetch::schema(),
        "memory_search" => memory_search::schema(),
        "memory_get" => memory_get::schema(),
        _ => return None,
    };
    Some(ToolSpec { name: name.to_string(), description: description.to_string(), parameters })
}

/// Whether `name` is offered under these settings (`tools.allow`, `tools.deny`, exec security),
/// with or without memory.
pub fn is_offered(name: &str, settings: &ToolSettings, memory: bool) -> bool {
    if MEMORY.contains(&name) {
        return memory && allowed(name, settings);
    }
    is_enabled(name, settings)
}

fn allowed(name: &str, settings: &ToolSettings) -> bool {
    !settings.deny.iter().any(|d| d == name) && settings.allow.as_ref().is_none_or(|a| a.iter().any(|x| x == name))
}

/// Whether the built-in `name` is offered under these settings (`tools.allow`, `tools.deny`, exec security).
pub fn is_enabled(name: &str, settings: &ToolSettings) -> bool {
    if settings.deny.iter().any(|d| d == name) {
        return false;
    }
    if let Some(allow) = &settings.allow
        && !allow.iter().any(|a| a == name)
    {
        return false;
    }
    if name == "exec" && settings.exec.security == clawline_core::config::schema::ExecSecurity::Deny {
        return false;
    }
    if name == "web_fetch" && !settings.web_fetch.enabled {
        return false;
    }
    BUILTIN.contains(&name)
}

/// The tool schemas offered to the model (the memory tools when `memory`).
pub fn specs(settings: &ToolSettings, memory: bool) -> Vec<ToolSpec> {
    BUILTIN.iter().chain(MEMORY).filter(|n| is_offered(n, settings, memory)).filter_map(|n| spec(n)).collect()
}

/// Runs one tool call. `arguments` is what the model sent (a JSON string when it was not JSON).
pub async fn call(name: &str, arguments: &Value, ctx: &ToolContext) -> ToolOutput {
    let memory = ctx.memory.is_some();
    if !is_offered(name, &ctx.settings, memory) {
        let available: Vec<&str> =
            BUILTIN.iter().chain(MEMORY).copied().filter(|n| is_offered(n, &ctx.settings, memory)).collect();
        return ToolOutput::err(format!("Tool `{name}` is not available. Available tools: {}.", available.join(", ")));
    }
    let args = match arguments {
        Value::Object(map) => map,
        Value::String(raw) => {
            let why =
                serde_json::from_str::<Value>(raw).err().map_or_else(|| "not an object".to_string(), |e| e.to_string());
            return ToolOutput::err(format!(
                "The arguments for `{name}` were not valid JSON ({why}). Call the tool again with a JSON object that matches its schema."
            ));
        }
        other => {
            return ToolOutput::err(format!("The arguments for `{name}` must be a JSON object, not {other}."));
        }
    };
    match name {
        "read" => read::run(args, ctx).await,
        "write" => write::run(args, ctx).await,
        "edit" => edit::run(args, ctx).await,
        "ls" => ls::run(args, ctx).await,
        "exec" => exec::run(args, ctx).await,
        "web_fetch" => web_fetch::run(args, ctx).await,
        "memory_search" => memory_search::run(args, ctx).await,
        "memory_get" => memory_get::run(args, ctx).await,
        _ => ToolOutput::err(format!("Tool `{name}` is not available.")),
    }
}

/// Reads a required string argument.
pub(crate) fn str_arg<'a>(args: &'a serde_json::Map<String, Value>, key: &str) -> Result<&'a str, ToolOutput> {
    match args.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(ToolOutput::err(format!("`{key}` must be a string, got {other}."))),
        None => Err(ToolOutput::err(format!("`{key}` is required."))),
    }
}

/// Reads an optional non-negative integer argument (numbers like `5.0` are accepted).
pub(crate) fn uint_arg(args: &serde_json::Map<String, Value>, key: &str) -> Result<Option<u64>, ToolOutput> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            match n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 0.0 && f.fract() == 0.0).map(|f| f as u64)) {
                Some(v) => Ok(Some(v)),
                None => Err(ToolOutput::err(format!("`{key}` must be a non-negative integer."))),
            }
        }
        Some(other) => Err(ToolOutput::err(format!("`{key}` must be a number, got {other}."))),
    }
}

/// Runs blocking file work off the async runtime.
pub(crate) async fn blocking<F>(f: F) -> ToolOutput
where
    F: FnOnce() -> ToolOutput + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| ToolOutput::err(format!("the tool failed internally: {e}")))
}
