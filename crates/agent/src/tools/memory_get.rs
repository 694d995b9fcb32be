//! `memory_get`: lines of a memory file that `memory_search` pointed at. Only files the memory
//! index holds can be read, so it cannot be used to read the rest of the disk.

use serde_json::{Map, Value, json};

use super::{ToolContext, ToolOutput, str_arg, uint_arg};

/// At most this many lines per call.
const MAX_LINES: usize = 400;

pub(super) fn schema() -> (&'static str, Value) {
    (
        "Read lines of a memory file found by memory_search.",
        json!({
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "The path memory_search returned."},
                "from": {"type": "integer", "minimum": 1, "description": "First line (default 1)."},
                "lines": {"type": "integer", "minimum": 1, "description": "How many lines (default 60, at most 400)."}
            },
            "required": ["path"]
        }),
    )
}

pub(super) async fn run(args: &Map<String, Value>, ctx: &ToolContext) -> ToolOutput {
    let Some(memory) = &ctx.memory else { return ToolOutput::err("Memory is not enabled for this agent.") };
    let path = match str_arg(args, "path") {
        Ok(p) => p.to_string(),
        Err(e) => return e,
    };
    let (from, lines) = match (uint_arg(args, "from"), uint_arg(args, "lines")) {
        (Ok(f), Ok(l)) => (f.unwrap_or(1).max(1) as usize, l.map_or(60, |l| l as usize).clamp(1, MAX_LINES)),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    match memory.index.get(&path, from, lines).await {
        Ok(ex) => ToolOutput::ok(
            json!({"path": ex.path, "from": ex.from, "to": ex.to, "totalLines": ex.total_lines, "text": ex.text})
                .to_string(),
        ),
        Err(e) => ToolOutput::err(e.to_string()),
    }
}
