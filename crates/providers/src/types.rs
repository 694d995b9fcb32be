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
    /// Ask the model to think first, with at most this many tokens of reasoning (`None`: the
    /// provider's default, which for most models is no visible reasoning).
    pub thinking_budget: Option<u32>,
    /// The W3C `traceparent` of this call's span, sent as a header (not part of the body).
    pub traceparent: Option<String>,
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

/// A model a provider reports it can serve (Ollama's `/api/tags`, Bedrock's
/// `ListFoundationModels`, an OpenAI-compatible `GET /models`).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct DiscoveredModel {
    /// The id to put after `provider/`.
    pub id: String,
    /// A display name, when the provider gives one.
    pub name: Option<String>,
    /// Context window in tokens, when known.
    pub context_window: Option<u64>,
    /// Input kinds: `text`, `image`.
    pub input: Vec<String>,
    /// Whether the model streams its answers (Bedrock lists some that cannot).
    pub streaming: bool,
}
