//! The conversation model every crate shares: user, assistant and tool-result messages.
//!
//! The serialized form is OpenClaw's transcript message shape (camelCase keys, `role` tag,
//! content blocks `text` / `toolCall` / `thinking` / `image`, usage with cost), so a transcript
//! written by clawline can be read by OpenClaw tooling and the other way round. Providers convert
//! these to and from their own wire formats; nothing here knows any provider's format.

use serde::{Deserialize, Serialize};

/// One message in a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "camelCase")]
pub enum Message {
    User(UserMessage),
    Assistant(AssistantMessage),
    ToolResult(ToolResultMessage),
}

/// What the person (or a calling client) said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserMessage {
    pub content: UserContent,
    /// Unix milliseconds.
    pub timestamp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// User content: plain text, or blocks (text and images).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UserContent {
    Text(String),
    Blocks(Vec<ContentBlock>),
}

impl UserContent {
    /// The text of the content, blocks joined by newlines; images are skipped.
    pub fn text(&self) -> String {
        match self {
            UserContent::Text(t) => t.clone(),
            UserContent::Blocks(blocks) => join_text(blocks),
        }
    }
}

/// A typed piece of message content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ContentBlock {
    Text {
        text: String,
    },
    /// A model's request to run a tool. `arguments` is the parsed JSON object the model sent;
    /// when the model sent text that is not valid JSON, it is kept verbatim as a JSON string so the
    /// transcript shows exactly what the model produced.
    ToolCall {
        id: String,
        name: String,
        arguments: serde_json::Value,
        /// Gemini's opaque `thoughtSignature` for this call, sent back with it on the next turn.
        #[serde(default, skip_serializing_if = "Option::is_none", rename = "thoughtSignature")]
        thought_signature: Option<String>,
    },
    Thinking {
        thinking: String,
        #[serde(default, skip_serializing_if = "Option::is_none", rename = "thinkingSignature")]
        signature: Option<String>,
    },
    Image {
        data: String,
        #[serde(rename = "mimeType")]
        mime_type: String,
    },
}

/// Joins the text blocks of `blocks` with newlines.
pub fn join_text(blocks: &[ContentBlock]) -> String {
    let mut out = String::new();
    for block in blocks {
        if let ContentBlock::Text { text } = block {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(text);
        }
    }
    out
}

/// Why a model stopped producing output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StopReason {
    /// The model finished its answer.
    Stop,
    /// The output hit the token limit.
    Length,
    /// The model asked for tools to be run.
    ToolUse,
    /// The call failed; `errorMessage` says why.
    Error,
    /// The run was cancelled.
    Aborted,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Stop => "stop",
            StopReason::Length => "length",
            StopReason::ToolUse => "toolUse",
            StopReason::Error => "error",
            StopReason::Aborted => "aborted",
        }
    }
}

/// Token counts and their cost in USD for one model call.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    #[serde(default)]
    pub cache_read: u64,
    #[serde(default)]
    pub cache_write: u64,
    pub total_tokens: u64,
    #[serde(default)]
    pub cost: Cost,
}

impl Usage {
    /// Adds another call's usage to this one.
    pub fn add(&mut self, other: &Usage) {
        self.input += other.input;
        self.output += other.output;
        self.cache_read += other.cache_read;
        self.cache_write += other.cache_write;
        self.total_tokens += other.total_tokens;
        self.cost.input += other.cost.input;
        self.cost.output += other.cost.output;
        self.cost.cache_read += other.cost.cache_read;
        self.cost.cache_write += other.cost.cache_write;
        self.cost.total += other.cost.total;
    }
}

/// Cost in USD, split like [`Usage`].
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cost {
    pub input: f64,
    pub output: f64,
    #[serde(default)]
    pub cache_read: f64,
    #[serde(default)]
    pub cache_write: f64,
    pub total: f64,
}

/// What the model answered, with where it came from and what it cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssistantMessage {
    pub content: Vec<ContentBlock>,
    /// The wire API used, e.g. `openai-completions`.
    pub api: String,
    pub provider: String,
    pub model: String,
    pub usage: Usage,
    pub stop_reason: StopReason,
    pub timestamp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

impl AssistantMessage {
    /// The text blocks joined by newlines.
    pub fn text(&self) -> String {
        join_text(&self.content)
    }

    /// The tool calls in this message, in order.
    pub fn tool_calls(&self) -> impl Iterator<Item = (&str, &str, &serde_json::Value)> {
        self.content.iter().filter_map(|b| match b {
            ContentBlock::ToolCall { id, name, arguments, .. } => Some((id.as_str(), name.as_str(), arguments)),
            _ => None,
        })
    }
}

/// The outcome of one tool call, fed back to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolResultMessage {
    pub tool_call_id: String,
    pub tool_name: String,
    pub content: Vec<ContentBlock>,
    pub is_error: bool,
    pub timestamp: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serializes_in_openclaw_shape() {
        let m = Message::Assistant(AssistantMessage {
            content: vec![
                ContentBlock::Text { text: "hi".into() },
                ContentBlock::ToolCall {
                    id: "c1".into(),
                    name: "read".into(),
                    arguments: json!({"path": "a"}),
                    thought_signature: None,
                },
            ],
            api: "openai-completions".into(),
            provider: "mock".into(),
            model: "m".into(),
            usage: Usage { input: 3, output: 2, total_tokens: 5, ..Default::default() },
            stop_reason: StopReason::ToolUse,
            timestamp: 1,
            response_id: None,
            error_message: None,
        });
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["role"], "assistant");
        assert_eq!(v["content"][1]["type"], "toolCall");
        assert_eq!(v["content"][1]["arguments"]["path"], "a");
        assert_eq!(v["stopReason"], "toolUse");
        assert_eq!(v["usage"]["totalTokens"], 5);
        assert_eq!(v["usage"]["cost"]["total"], 0.0);
        let back: Message = serde_json::from_value(v).unwrap();
        assert_eq!(back, m);

        let r: Message = serde_json::from_value(json!({
            "role": "toolResult", "toolCallId": "c1", "toolName": "read",
            "content": [{"type": "text", "text": "ok"}], "isError": false, "timestamp": 2
        }))
        .unwrap();
        assert!(matches!(r, Message::ToolResult(ref t) if t.tool_call_id == "c1"));

        let u: Message = serde_json::from_value(json!({"role": "user", "content": "hello", "timestamp": 3})).unwrap();
        assert!(matches!(u, Message::User(ref u) if u.content.text() == "hello"));
    }
}
