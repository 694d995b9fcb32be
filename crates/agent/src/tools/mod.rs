//! The built-in tools and the schemas the model sees.
//!
//! | tool | does | confined by |
//! |---|---|---|
//! | `read`  | reads a text file, by line range | the workspace |
//! | `write` | creates or replaces a file (parents created) | the workspace |
//! | `edit`  | exact, unique text replacements in one file | the workspace |
//! | `ls`    | lists a directory | the workspace |
//! | `exec`  | runs one program, without a shell | `tools.exec`: allow-list, cwd in the workspace, clean environment, timeout, output cap |
//!
//! The schemas are part of clawline's interface: models and prompts depend on them, so they
//! change only deliberately (a golden test in `tests/tool_schemas.rs` pins them). Every tool
//! returns text; failures are results with `is_error: true` and a message the model can act on,
//! never a crash of the run.

mod edit;
mod exec;
mod ls;
pub mod path;
mod read;
mod write;

use std::path::PathBuf;

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
}

/// The built-in tools, in the order they are offered.
pub const BUILTIN: &[&str] = &["read", "write", "edit", "ls", "exec"];

fn spec(name: &str) -> Option<ToolSpec> {
    let (description, parameters) = match name {
        "read" => read::schema(),
        "write" => write::schema(),
        "edit" => edit::schema(),
        "ls" => ls::schema(),
        "exec" => exec::schema(),
        _ => return None,
    };
    Some(ToolSpec { name: name.to_string(), description: description.to_string(), parameters })
}

/// Whether `name` is offered under these settings (`tools.allow`, `tools.deny`, exec security).
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
    BUILTIN.contains(&name)
}

/// The tool schemas offered to the model.
pub fn specs(settings: &ToolSettings) -> Vec<ToolSpec> {
    BUILTIN.iter().filter(|n| is_enabled(n, settings)).filter_map(|n| spec(n)).collect()
}

/// Runs one tool call. `arguments` is what the model sent (a JSON string when it was not JSON).
pub async fn call(name: &str, arguments: &Value, ctx: &ToolContext) -> ToolOutput {
    if !is_enabled(name, &ctx.settings) {
        let available: Vec<&str> = BUILTIN.iter().copied().filter(|n| is_enabled(n, &ctx.settings)).collect();
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
