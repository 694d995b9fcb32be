//! `memory_search`: ranked snippets of the agent's memory files for a query, with where they are.
//!
//! The answer is JSON: `{"mode": "hybrid" | "text-only", "reason"?, "results": [{"path",
//! "startLine", "endLine", "score", "snippet"}]}`; `reason` says why vectors were not used, so
//! the model (and whoever reads the transcript) knows what kind of search ran. With past
//! conversations indexed, the run's own conversation is left out (it is in the context).

use serde_json::{Map, Value, json};

use super::{ToolContext, ToolOutput, str_arg, uint_arg};
use clawline_memory::index::Mode;

/// Snippets are cut to this many characters.
const SNIPPET_CHARS: usize = 700;

pub(super) fn schema() -> (&'static str, Value) {
    (
        "Search long-term memory (MEMORY.md, USER.md, memory/*.md) before answering about past work, decisions, dates, people or preferences. Returns snippets with path and lines; read more with memory_get.",
        json!({
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What to look for, in words."},
                "maxResults": {"type": "integer", "minimum": 1, "maximum": 20, "description": "How many results (default 6)."}
            },
            "required": ["query"]
        }),
    )
}

/// One result as the tool and the gateway's `memory.search` show it: path, lines, score (three
/// decimals), a snippet of at most [`SNIPPET_CHARS`] characters.
pub fn result_json(s: &clawline_memory::scoring::Scored) -> Value {
    let c = &s.candidate;
    let mut snippet: String = c.text.chars().take(SNIPPET_CHARS).collect();
    if c.text.chars().count() > SNIPPET_CHARS {
        snippet.push('…');
    }
    json!({
        "path": c.path,
        "startLine": c.start_line,
        "endLine": c.end_line,
        "score": (s.score * 1000.0).round() / 1000.0,
        "snippet": snippet,
    })
}

pub(super) async fn run(args: &Map<String, Value>, ctx: &ToolContext) -> ToolOutput {
    let Some(memory) = &ctx.memory else { return ToolOutput::err("Memory is not enabled for this agent.") };
    let query = match str_arg(args, "query") {
        Ok(q) if !q.trim().is_empty() => q.to_string(),
        Ok(_) => return ToolOutput::err("`query` must not be empty."),
        Err(e) => return e,
    };
    let max = match uint_arg(args, "maxResults") {
        Ok(m) => m.map(|m| (m as usize).clamp(1, 20)),
        Err(e) => return e,
    };
    if let Err(e) = memory.memories.refresh(&memory.agent_id, &memory.index).await {
        tracing::warn!(agent = %memory.agent_id, error = %e, "memory sync failed; searching what is indexed");
    }
    let skip: Vec<String> = memory.current_session.iter().map(|id| clawline_memory::transcripts::path_of(id)).collect();
    let outcome = match memory.index.search_except(&query, &skip).await {
        Ok(o) => o,
        Err(e) => return ToolOutput::err(format!("Memory search failed: {e}")),
    };
    let results: Vec<Value> = outcome.results.iter().take(max.unwrap_or(usize::MAX)).map(result_json).collect();
    let mut answer = json!({"results": results});
    match outcome.mode {
        Mode::Hybrid => answer["mode"] = json!("hybrid"),
        Mode::TextOnly { reason } => {
            answer["mode"] = json!("text-only");
            answer["reason"] = json!(reason);
        }
    }
    ToolOutput::ok(answer.to_string())
}
