//! `write`: create or replace a file, creating parent directories.

use serde_json::{Map, Value, json};

use super::{ToolContext, ToolOutput, blocking, path, str_arg};

/// Largest file `write` creates.
const MAX_WRITE_BYTES: usize = 5 * 1024 * 1024;

pub(super) fn schema() -> (&'static str, Value) {
    (
        "Create or overwrite a file in the workspace. Parent directories are created.",
        json!({
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "File path, relative to the workspace."},
                "content": {"type": "string", "description": "The complete new file content."}
            },
            "required": ["path", "content"]
        }),
    )
}

pub(super) async fn run(args: &Map<String, Value>, ctx: &ToolContext) -> ToolOutput {
    let (requested, content) = match (str_arg(args, "path"), str_arg(args, "content")) {
        (Ok(p), Ok(c)) => (p.to_string(), c.to_string()),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    if content.len() > MAX_WRITE_BYTES {
        return ToolOutput::err(format!("content is {} bytes; the limit is {MAX_WRITE_BYTES}.", content.len()));
    }
    let ws = ctx.workspace.clone();
    blocking(move || {
        let file = match path::resolve(&ws, &requested) {
            Ok(p) => p,
            Err(e) => return ToolOutput::err(e),
        };
        if file.is_dir() {
            return ToolOutput::err(format!("`{requested}` is a directory."));
        }
        if let Some(parent) = file.parent()
            && let Err(e) = std::fs::create_dir_all(parent)
        {
            return ToolOutput::err(format!("cannot create the folder for `{requested}`: {e}"));
        }
        // Write beside the target, then rename: a crash never leaves a half-written file.
        let tmp = file
            .with_file_name(format!(".{}.clawline-tmp", file.file_name().and_then(|n| n.to_str()).unwrap_or("file")));
        let result = std::fs::write(&tmp, content.as_bytes()).and_then(|_| std::fs::rename(&tmp, &file));
        match result {
            Ok(()) => ToolOutput::ok(format!("Wrote {} bytes to {}.", content.len(), path::display(&ws, &file))),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                ToolOutput::err(format!("cannot write `{requested}`: {e}"))
            }
        }
    })
    .await
}
