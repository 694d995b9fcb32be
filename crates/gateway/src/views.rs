//! Stored things as protocol clients see them: session rows and transcript messages.
//!
//! One place decides these shapes, so `sessions.list`, `sessions.describe`, `chat.history`,
//! `sessions.changed` and `session.message` always agree. Pure conversions.

use clawline_core::message::{ContentBlock, Message, UserContent};
use clawline_core::transcript::Record;
use clawline_store::{SessionRow, StoredRecord};
use serde_json::{Value, json};

/// Longest preview of a session's last message.
pub const PREVIEW_CHARS: usize = 160;

/// The visible text of a message (text blocks only).
pub fn message_text(m: &Message) -> String {
    match m {
        Message::User(u) => match &u.content {
            UserContent::Text(t) => t.clone(),
            UserContent::Blocks(blocks) => blocks_text(blocks),
        },
        Message::Assistant(a) => blocks_text(&a.content),
        Message::ToolResult(r) => blocks_text(&r.content),
    }
}

fn blocks_text(blocks: &[ContentBlock]) -> String {
    let parts: Vec<&str> = blocks
        .iter()
        .filter_map(|b| match b {
            ContentBlock::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    parts.join("\n")
}

/// A short single-line preview.
pub fn preview(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let (cut, truncated) = clawline_core::text::truncate_chars(&one_line, max);
    if truncated { format!("{cut}…") } else { cut.to_string() }
}

/// Is this the main session of its agent (`agent:<id>:main`)?
pub fn is_main(row: &SessionRow) -> bool {
    row.session_key == format!("agent:{}:main", row.agent_id)
}

/// A session row. `active_runs` are the ids of its runs in progress.
pub fn session_row(row: &SessionRow, preview_text: Option<String>, active_runs: &[String]) -> Value {
    let (provider, model) = match row.last_model.as_deref().and_then(|m| m.split_once('/')) {
        Some((p, m)) => (Some(p), Some(m)),
        None => (None, row.last_model.as_deref()),
    };
    let flag = |k: &str| row.flags.get(k).and_then(Value::as_bool).unwrap_or(false);
    let display = row.label.clone().unwrap_or_else(|| row.session_key.clone());
    let mut v = json!({
        "key": row.session_key,
        "sessionId": row.session_id,
        "agentId": row.agent_id,
        "kind": "direct",
        "chatType": "direct",
        "isMain": is_main(row),
        "status": if active_runs.is_empty() { "idle" } else { "running" },
        "createdAt": row.created_at,
        "updatedAt": row.updated_at,
        "label": row.label,
        "displayName": display,
        "messageCount": row.message_count,
        "inputTokens": row.input_tokens,
        "outputTokens": row.output_tokens,
        "totalTokens": row.total_tokens,
        "estimatedCostUsd": row.cost_usd,
        "model": model,
        "modelProvider": provider,
        "hasActiveRun": !active_runs.is_empty(),
        "activeRunIds": active_runs,
        "archived": flag("archived"),
        "pinned": flag("pinned"),
        "unread": flag("unread"),
    });
    if let Some(p) = preview_text {
        v["lastMessagePreview"] = json!(p);
    }
    if let Value::Object(flags) = &row.flags {
        for (k, val) in flags {
            if v.get(k).is_none() {
                v[k] = val.clone();
            }
        }
    }
    v
}

/// The run a user message started (`<runId>:user`).
pub fn run_of_user_message(stored: &StoredRecord) -> Option<String> {
    match stored.record.message()? {
        Message::User(u) => u.idempotency_key.as_deref()?.strip_suffix(":user").map(String::from),
        _ => None,
    }
}

/// Display messages for consecutive records, each tagged with the run it belongs to: a user
/// message starts a run, and what follows belongs to it. `run` is the run in progress before
/// the first record, if known.
pub fn display_messages(records: &[StoredRecord], mut run: Option<String>) -> Vec<Value> {
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        if let Some(id) = run_of_user_message(r) {
            run = Some(id);
        }
        if let Some(m) = display_message(r, run.as_deref()) {
            out.push(m);
        }
    }
    out
}

/// A transcript record as a display message, with its place in the transcript (and its run,
/// when known) under `__openclaw`. Header and bookkeeping records are not shown (`None`).
pub fn display_message(stored: &StoredRecord, run: Option<&str>) -> Option<Value> {
    let mut meta = json!({"id": stored.record.id(), "seq": stored.seq});
    if let Some(run) = run {
        meta["runId"] = json!(run);
    }
    match &stored.record {
        Record::Message(m) => {
            let mut v = serde_json::to_value(&m.message).ok()?;
            v["__openclaw"] = meta;
            Some(v)
        }
        Record::CustomMessage(c) if c.display => Some(json!({
            "role": "custom",
            "customType": c.custom_type,
            "content": c.content,
            "display": true,
            "details": c.details,
            "timestamp": c.timestamp,
            "__openclaw": meta,
        })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawline_core::message::UserMessage;
    use clawline_core::transcript::MessageRecord;

    fn row() -> SessionRow {
        SessionRow {
            session_key: "agent:main:main".into(),
            agent_id: "main".into(),
            session_id: "s1".into(),
            created_at: 1,
            updated_at: 2,
            message_count: 3,
            input_tokens: 10,
            output_tokens: 5,
            total_tokens: 15,
            cost_usd: 0.0,
            last_model: Some("mock/m1".into()),
            label: None,
            flags: json!({"pinned": true, "thinkingLevel": "low"}),
        }
    }

    #[test]
    fn rows_and_messages() {
        let v = session_row(&row(), Some("hi".into()), &["r1".to_string()]);
        assert_eq!(
            (v["isMain"].as_bool(), v["model"].as_str(), v["modelProvider"].as_str()),
            (Some(true), Some("m1"), Some("mock"))
        );
        assert_eq!((v["pinned"].as_bool(), v["thinkingLevel"].as_str()), (Some(true), Some("low")));
        assert_eq!(v["status"], "running");
        let stored = StoredRecord {
            seq: 4,
            record: Record::Message(MessageRecord {
                id: "ab".into(),
                parent_id: None,
                timestamp: "t".into(),
                message: Message::User(UserMessage {
                    content: UserContent::Text("hello".into()),
                    timestamp: 9,
                    idempotency_key: None,
                }),
            }),
        };
        let m = display_message(&stored, None).unwrap();
        assert_eq!((m["role"].as_str(), m["content"].as_str()), (Some("user"), Some("hello")));
        assert_eq!(m["__openclaw"], json!({"id": "ab", "seq": 4}));
        assert_eq!(preview("a\n  b   c", 3), "a b…");
    }
}
