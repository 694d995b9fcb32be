//! What the model sees: the system prompt and the conversation history.
//!
//! The system prompt is small and stable within a day (it changes only when the date, the
//! workspace files or the configuration change), so providers can cache it. The history comes
//! from the transcript; tool calls that a crash left without results get a synthetic error
//! result, and stray results that answer nothing are dropped, so the history sent is always
//! one the providers accept.

use std::collections::HashSet;
use std::path::Path;

use clawline_core::config::schema::{ExecAsk, ExecSecurity, SandboxMode};
use clawline_core::config::{AgentSettings, ExecSettings};
use clawline_core::message::{ContentBlock, Message, ToolResultMessage};
use clawline_core::transcript::Record;
use clawline_providers::ToolSpec;

use crate::workspace::BootstrapFile;

/// Text of the synthetic result for a tool call that never finished.
pub const INTERRUPTED_TOOL: &str = "This tool call did not finish: the run was interrupted (the gateway stopped or the call was cancelled). Its effects, if any, are unknown; check before retrying.";

/// Builds the system prompt.
pub fn system_prompt(
    agent: &AgentSettings,
    workspace: &Path,
    files: &[BootstrapFile],
    tools: &[ToolSpec],
    exec: &ExecSettings,
    today: &str,
) -> String {
    let mut s = format!(
        "You are {}, a personal assistant running in clawline. You talk with one person through chat apps and a web page.\n",
        agent.name
    );
    if !tools.is_empty() {
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
        s.push_str(&format!(
            "\n## Tools\nAvailable: {}. File paths are relative to your workspace.\n",
            names.join(", ")
        ));
        if names.contains(&"exec") {
            match exec.security {
                ExecSecurity::Allowlist => s.push_str(&format!(
                    "exec runs one program without a shell; allowed programs: {}.\n",
                    exec.safe_bins.join(", ")
                )),
                ExecSecurity::Full => s.push_str("exec runs one program without a shell.\n"),
                ExecSecurity::Deny => {}
            }
            match exec.ask {
                ExecAsk::OnMiss => s.push_str("Other commands wait for the owner's approval.\n"),
                ExecAsk::Always => s.push_str("Every command waits for the owner's approval.\n"),
                ExecAsk::Off => {}
            }
            if exec.sandbox != SandboxMode::Off && crate::tools::sandbox::status().complete() {
                s.push_str("Commands are sandboxed: no network, and writes only inside the workspace.\n");
            }
        }
    }
    s.push_str(&format!("\n## Workspace\n{}\nToday is {today}.\n", workspace.display()));
    let present: Vec<&BootstrapFile> = files.iter().filter(|f| !f.missing && !f.content.trim().is_empty()).collect();
    if !present.is_empty() {
        s.push_str("\n## Workspace files\nThese files in your workspace describe how you work and who you help. Follow them.\n");
        for f in present {
            s.push_str(&format!("\n### {}\n{}", f.name, f.content.trim_end()));
            if f.truncated {
                s.push_str(&format!(
                    "\n[… cut: {} has {} characters; read it with the read tool for the rest]",
                    f.name, f.chars
                ));
            }
            s.push('\n');
        }
    }
    s
}

/// The conversation in a transcript, repaired so every tool call has exactly one result.
pub fn history(records: &[Record]) -> Vec<Message> {
    let messages: Vec<Message> = records.iter().filter_map(|r| r.message().cloned()).collect();
    repair(messages)
}

/// Adds results for unanswered tool calls and drops results that answer nothing.
pub fn repair(messages: Vec<Message>) -> Vec<Message> {
    let mut out = Vec::with_capacity(messages.len());
    let mut open: Vec<(String, String)> = Vec::new();
    let mut answered: HashSet<String> = HashSet::new();
    let close = |out: &mut Vec<Message>, open: &mut Vec<(String, String)>, answered: &HashSet<String>, ts: i64| {
        for (id, name) in open.drain(..) {
            if !answered.contains(&id) {
                out.push(Message::ToolResult(ToolResultMessage {
                    tool_call_id: id,
                    tool_name: name,
                    content: vec![ContentBlock::Text { text: INTERRUPTED_TOOL.to_string() }],
                    is_error: true,
                    timestamp: ts,
                }));
            }
        }
    };
    for m in messages {
        match &m {
            Message::ToolResult(r) => {
                if open.iter().any(|(id, _)| *id == r.tool_call_id) && answered.insert(r.tool_call_id.clone()) {
                    out.push(m);
                }
            }
            Message::Assistant(a) => {
                let ts = a.timestamp;
                close(&mut out, &mut open, &answered, ts);
                answered.clear();
                open = a.tool_calls().map(|(id, name, _)| (id.to_string(), name.to_string())).collect();
                out.push(m);
            }
            Message::User(u) => {
                let ts = u.timestamp;
                close(&mut out, &mut open, &answered, ts);
                answered.clear();
                out.push(m);
            }
        }
    }
    close(&mut out, &mut open, &answered, 0);
    out
}

/// Tool calls at the end of `messages` that have no result (what a crash mid-tool leaves).
pub fn unanswered_tail(messages: &[Message]) -> Vec<(String, String)> {
    let Some(pos) = messages.iter().rposition(|m| matches!(m, Message::Assistant(_))) else { return Vec::new() };
    let Message::Assistant(a) = &messages[pos] else { return Vec::new() };
    if messages[pos + 1..].iter().any(|m| matches!(m, Message::User(_))) {
        return Vec::new();
    }
    let answered: HashSet<&str> = messages[pos + 1..]
        .iter()
        .filter_map(|m| match m {
            Message::ToolResult(r) => Some(r.tool_call_id.as_str()),
            _ => None,
        })
        .collect();
    a.tool_calls()
        .filter(|(id, _, _)| !answered.contains(id))
        .map(|(id, name, _)| (id.to_string(), name.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawline_core::message::{AssistantMessage, StopReason, Usage, UserContent, UserMessage};
    use serde_json::json;

    fn user(t: &str) -> Message {
        Message::User(UserMessage { content: UserContent::Text(t.into()), timestamp: 1, idempotency_key: None })
    }

    fn calls(ids: &[&str]) -> Message {
        Message::Assistant(AssistantMessage {
            content: ids
                .iter()
                .map(|id| ContentBlock::ToolCall {
                    id: id.to_string(),
                    name: "ls".into(),
                    arguments: json!({}),
                    thought_signature: None,
                })
                .collect(),
            api: "a".into(),
            provider: "p".into(),
            model: "m".into(),
            usage: Usage::default(),
            stop_reason: StopReason::ToolUse,
            timestamp: 2,
            response_id: None,
            error_message: None,
        })
    }

    fn result(id: &str) -> Message {
        Message::ToolResult(ToolResultMessage {
            tool_call_id: id.into(),
            tool_name: "ls".into(),
            content: vec![ContentBlock::Text { text: "ok".into() }],
            is_error: false,
            timestamp: 3,
        })
    }

    fn shape(ms: &[Message]) -> Vec<String> {
        ms.iter()
            .map(|m| match m {
                Message::User(_) => "user".to_string(),
                Message::Assistant(_) => "assistant".to_string(),
                Message::ToolResult(r) => format!("result:{}{}", r.tool_call_id, if r.is_error { "!" } else { "" }),
            })
            .collect()
    }

    #[test]
    fn fills_missing_results_and_drops_strays() {
        let repaired = repair(vec![user("a"), calls(&["1", "2"]), result("1"), user("b"), result("9"), calls(&["3"])]);
        assert_eq!(shape(&repaired), ["user", "assistant", "result:1", "result:2!", "user", "assistant", "result:3!"]);
        let clean = vec![user("a"), calls(&["1"]), result("1"), result("1")];
        assert_eq!(shape(&repair(clean)), ["user", "assistant", "result:1"]);
    }

    #[test]
    fn finds_the_unanswered_tail() {
        assert_eq!(
            unanswered_tail(&[user("a"), calls(&["1", "2"]), result("1")]),
            [("2".to_string(), "ls".to_string())]
        );
        assert!(unanswered_tail(&[user("a"), calls(&["1"]), result("1")]).is_empty());
        assert!(unanswered_tail(&[user("a")]).is_empty());
    }
}
