//! Provider failures, classified so the agent can decide what to do next.

use std::time::Duration;

/// What kind of failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The key is missing, wrong or lacks permission (401/403). Not retried.
    Auth,
    /// Too many requests (429). Retried after `Retry-After`.
    RateLimited,
    /// The account is out of credit or over its spend limit. Not retried.
    Billing,
    /// The provider is overloaded (529, 503). Retried with backoff.
    Overloaded,
    /// The prompt does not fit the model's context window. Not retried.
    ContextLength,
    /// The request was refused as invalid (other 4xx). Not retried.
    BadRequest,
    /// No answer in time. Retried.
    Timeout,
    /// The provider failed (5xx). Retried.
    Server,
    /// The connection failed. Retried.
    Network,
    /// The provider answered with something that is not its documented format.
    Protocol,
    /// The call was cancelled by us.
    Cancelled,
    /// The provider is not usable as configured (e.g. no API key).
    Config,
}

impl ErrorKind {
    /// Whether trying the same call again may succeed.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimited
                | ErrorKind::Overloaded
                | ErrorKind::Timeout
                | ErrorKind::Server
                | ErrorKind::Network
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Auth => "auth",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Billing => "billing",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::ContextLength => "context_length",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Server => "server",
            ErrorKind::Network => "network",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Config => "config",
        }
    }
}

/// A failed model call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{provider}: {message}")]
pub struct ProviderError {
    pub kind: ErrorKind,
    pub provider: String,
    /// HTTP status, when the provider answered.
    pub status: Option<u16>,
    /// What happened, in words a person can act on. Never contains the API key.
    pub message: String,
    /// How long the provider asked us to wait.
    pub retry_after: Option<Duration>,
}

impl ProviderError {
    pub fn new(kind: ErrorKind, provider: &str, message: impl Into<String>) -> Self {
        ProviderError { kind, provider: provider.to_string(), status: None, message: message.into(), retry_after: None }
    }

    /// A suggestion for the person who sees this error.
    pub fn hint(&self) -> Option<&'static str> {
        match self.kind {
            ErrorKind::Auth => Some("check the provider's API key (models.providers.<id>.apiKey or <ID>_API_KEY)"),
            ErrorKind::Billing => Some("the provider account is out of credit or over its spend limit"),
            ErrorKind::RateLimited => Some("the provider is rate limiting this key; wait or use another key"),
            ErrorKind::ContextLength => Some("the conversation is too long for this model; start a new session"),
            ErrorKind::Network => Some("check the provider's baseUrl and that the server is reachable"),
            ErrorKind::Config => Some("run `clawline doctor`"),
            _ => None,
        }
    }
}
