//! `read`: a text file, or a range of its lines.

use serde_json::{Map, Value, json};

use super::{ToolContext, ToolOutput, blocking, path, str_arg, uint_arg};

/// At most this many lines are returned per call.
const MAX_LINES: usize = 2000;
/// At most this many bytes are returned per call.
const MAX_BYTES: usize = 50 * 1024;

pub(super) fn schema() -> (&'static str, Value) {
    (
        "Read a text file in the workspace. Returns up to 2000 lines or 50 KB; continue with offset.",
        json!({
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "File path, relative to the workspace."},
                "offset": {"type": "integer", "minimum": 1, "description": "First line to read (1-based)."},
                "limit": {"type": "integer", "minimum": 1, "description": "Maximum number of lines."}
            },
            "required": ["path"]
        }),
    )
}

pub(super) async fn run(args: &Map<String, Value>, ctx: &ToolContext) -> ToolOutput {
    let requested = match str_arg(args, "path") {
        Ok(p) => p.to_string(),
        Err(e) => return e,
    };
    let (offset, limit) = match (uint_arg(args, "offset"), uint_arg(args, "limit")) {
        (Ok(o), Ok(l)) => {
            (o.unwrap_or(1).max(1) as usize, l.map(|l| l as usize).unwrap_or(MAX_LINES).clamp(1, MAX_LINES))
        }
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let ws = ctx.workspace.clone();
    blocking(move || {
        let file = match path::resolve(&ws, &requested) {
            Ok(p) => p,
            Err(e) => return ToolOutput::err(e),
        };
        let bytes = match std::fs::read(&file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return ToolOutput::err(format!("`{requested}` does not exist. Use ls to see what is there."));
            }
            Err(e) if e.kind() == std::io::ErrorKind::IsADirectory || file.is_dir() => {
                return ToolOutput::err(format!("`{requested}` is a directory. Use ls to list it."));
            }
            Err(e) => return ToolOutput::err(format!("cannot read `{requested}`: {e}")),
        };
        let Ok(text) = String::from_utf8(bytes) else {
            return ToolOutput::err(format!("`{requested}` is not a UTF-8 text file."));
        };
        let lines: Vec<&str> = text.lines().collect();
        let total = lines.len();
        if total == 0 {
            return ToolOutput::ok(String::new());
        }
        if offset > total {
            return ToolOutput::err(format!("offset {offset} is past the end: `{requested}` has {total} lines."));
        }
        let mut out = String::new();
        let mut last = offset - 1;
        for (i, line) in lines.iter().enumerate().skip(offset - 1).take(limit) {
            if out.len() + line.len() + 1 > MAX_BYTES {
                if i == offset - 1 {
                    let (head, _) = clawline_core::text::truncate_bytes(line, MAX_BYTES);
                    out.push_str(head);
                    last = i + 1;
                }
                break;
            }
            out.push_str(line);
            out.push('\n');
            last = i + 1;
        }
        if last < total {
            out.push_str(&format!("\n[showing lines {offset}-{last} of {total}; continue with offset={}]", last + 1));
        }
        ToolOutput::ok(out)
    })
    .await
}
