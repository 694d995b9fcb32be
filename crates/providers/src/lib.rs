//! Model providers: a request in, a stream of typed events out.
//!
//! Each wire API has one module that converts clawline's [`Message`](clawline_core::message::Message)s
//! to the provider's request body, reads its server-sent-event stream, and reports typed
//! [`StreamEvent`]s followed by the finished [`AssistantMessage`](clawline_core::message::AssistantMessage):
//!
//! - [`openai_completions`]: `POST {baseUrl}/chat/completions` (OpenAI and every compatible server)
//! - [`openai_responses`]: `POST {baseUrl}/responses` (OpenAI Responses, what Codex uses)
//! - [`anthropic_messages`]: `POST {baseUrl}/v1/messages`
//! - [`google_generative_ai`]: `POST {baseUrl}/models/{model}:streamGenerateContent?alt=sse` (Gemini)
//! - [`bedrock`]: `POST {baseUrl}/model/{modelId}/converse-stream`, SigV4-signed, binary event stream
//! - [`ollama`]: `POST {baseUrl}/api/chat`, newline-delimited JSON
//! - [`embeddings`]: text embeddings for memory (OpenAI and its copies, Gemini, Ollama)
//! - [`usage`]: how much of a subscription is left (Claude, Codex, Gemini CLI, Copilot, MiniMax, Z.AI)
//!
//! [`catalog`] lists the providers clawline knows by name (handed to the config loader).
//!
//! [`ModelClient`] picks the module from the provider's `api`, adds bounded retries for transient
//! failures that happen before any output, and classifies every failure into an [`ErrorKind`].
//!
//! Providers know nothing about channels, sessions or agents. They must never log or echo an API
//! key: errors carry the provider's message with the key scrubbed out.

pub mod anthropic_messages;
pub mod bedrock;
pub mod catalog;
mod client;
pub mod copilot;
pub mod embeddings;
mod error;
pub mod google_generative_ai;
pub mod hf_download;
mod http_util;
pub mod oauth;
pub mod ollama;
pub mod openai_completions;
pub mod openai_responses;
pub mod routing;
pub mod sse;
mod types;
pub mod usage;

#[cfg(test)]
mod test_support;

pub use client::{ModelClient, RetryPolicy};
pub use error::{ErrorKind, ProviderError};
pub use http_util::build_http_client;
pub use routing::{Answer, CooldownBook, FallbackNote, Route, Router};
pub use types::{DiscoveredModel, ModelRequest, StreamEvent, ToolSpec};
