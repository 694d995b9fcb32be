//! `ls`: the entries of a directory, sorted by name; directories end in `/`.

use serde_json::{Map, Value, json};

use super::{ToolContext, ToolOutput, blocking, path, uint_arg};

const DEFAULT_LIMIT: usize = 500;

pub(super) fn schema() -> (&'static str, Value) {
    (
        "List a directory in the workspace, sorted by name. Directories end with /.",
        json!({
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "Directory, relative to the workspace (default: the workspace)."},
                "limit": {"type": "integer", "minimum": 1, "description": "Maximum entries (default 500)."}
            }
        }),
    )
}

pub(super) async fn run(args: &Map<String, Value>, ctx: &ToolContext) -> ToolOutput {
    let requested = match args.get("path") {
        None | Some(Value::Null) => ".".to_string(),
        Some(Value::String(s)) if s.trim().is_empty() => ".".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return ToolOutput::err(format!("`path` must be a string, got {other}.")),
    };
    let limit = match uint_arg(args, "limit") {
        Ok(l) => l.map_or(DEFAULT_LIMIT, |l| (l as usize).max(1)),
        Err(e) => return e,
    };
    let ws = ctx.workspace.clone();
    blocking(move || {
        let dir = match path::resolve(&ws, &requested) {
            Ok(p) => p,
            Err(e) => return ToolOutput::err(e),
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return ToolOutput::err(format!("`{requested}` does not exist."));
            }
            Err(e) => return ToolOutput::err(format!("cannot list `{requested}`: {e}")),
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| {
                let mut name = e.file_name().to_string_lossy().into_owned();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    name.push('/');
                }
                name
            })
            .collect();
        names.sort();
        let total = names.len();
        if total == 0 {
            return ToolOutput::ok(format!("{} is empty.", path::display(&ws, &dir)));
        }
        let mut out = names.into_iter().take(limit).collect::<Vec<_>>().join("\n");
        if total > limit {
            out.push_str(&format!("\n[{limit} of {total} entries shown]"));
        }
        ToolOutput::ok(out)
    })
    .await
}
