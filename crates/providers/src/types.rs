//! What goes into a model call and what comes out while it streams.

use clawline_core::config::schema::{ModelCompat, ModelCost};
use clawline_core::message::Message;
use serde::Serialize;

/// A tool the model may call, described by a JSON Schema for its arguments.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: serde_json::Value,
}

/// One model call.
#[derive(Debug, Clone, Default)]
pub struct ModelRequest {
    /// The provider's model id (without the `provider/` prefix).
    pub model: String,
    pub system: String,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    pub max_tokens: u32,
    /// Prices used to fill `usage.cost`.
    pub cost: ModelCost,
    pub compat: ModelCompat,
}

/// Output as it arrives. The finished message is returned separately when the call ends.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    TextDelta(String),
    ThinkingDelta(String),
    /// The model started a tool call (its arguments follow in the finished message).
    ToolCallStarted {
        id: String,
        name: String,
    },
}
