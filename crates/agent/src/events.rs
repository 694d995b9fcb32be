//! What a run reports while it works. Serialized as JSON objects tagged by `type`.

use clawline_core::message::Usage;
use serde::Serialize;

/// One step of a run, in order. A run ends with exactly one `Done` or `Error`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunEvent {
    #[serde(rename_all = "camelCase")]
    Started { run_id: String, session_key: String, agent_id: String, model: String },
    /// Answer text as it streams.
    Text { delta: String },
    /// Reasoning text, when the model shares it.
    Thinking { delta: String },
    /// A tool is about to run.
    #[serde(rename_all = "camelCase")]
    ToolStart { id: String, name: String, arguments: serde_json::Value },
    /// A tool finished; `output` is a preview (at most 2000 characters).
    #[serde(rename_all = "camelCase")]
    ToolEnd { id: String, name: String, is_error: bool, output: String },
    /// Another model than the selected one answered (the selected one was rate limited, down
    /// or resting). Sent once per run, before that model's output. `notice` is a line for people.
    Fallback { selected: String, used: String, reason: String, notice: String },
    /// The run finished. `text` is everything the model said in this turn.
    #[serde(rename_all = "camelCase")]
    Done { run_id: String, text: String, stop_reason: String, usage: Usage, model_calls: u32 },
    /// The run failed. `text` is what was said before the failure.
    #[serde(rename_all = "camelCase")]
    Error { run_id: String, kind: String, message: String, hint: Option<String>, text: String },
}

impl RunEvent {
    /// The event's name on the wire (`started`, `text`, …, `done`, `error`), same as its `type`.
    pub fn name(&self) -> &'static str {
        match self {
            RunEvent::Started { .. } => "started",
            RunEvent::Text { .. } => "text",
            RunEvent::Thinking { .. } => "thinking",
            RunEvent::ToolStart { .. } => "tool_start",
            RunEvent::ToolEnd { .. } => "tool_end",
            RunEvent::Fallback { .. } => "fallback",
            RunEvent::Done { .. } => "done",
            RunEvent::Error { .. } => "error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_matches_the_serialized_type() {
        let events = [
            RunEvent::Text { delta: "x".into() },
            RunEvent::ToolEnd { id: "1".into(), name: "ls".into(), is_error: false, output: String::new() },
            RunEvent::Error {
                run_id: "r".into(),
                kind: "k".into(),
                message: "m".into(),
                hint: None,
                text: String::new(),
            },
        ];
        for e in events {
            assert_eq!(serde_json::to_value(&e).unwrap()["type"], e.name());
        }
    }
}
