//! Why a turn could not start.

/// A turn refused before anything was stored.
#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    #[error("unknown agent `{0}`; configured agents: {1}")]
    UnknownAgent(String, String),
    #[error("{0}")]
    BadSessionKey(#[from] clawline_core::session_key::SessionKeyError),
    #[error("the message is empty")]
    EmptyMessage,
    #[error(
        "no model is configured for agent `{0}`: set agents.defaults.model, or export a provider key such as ANTHROPIC_API_KEY, OPENAI_API_KEY or GEMINI_API_KEY"
    )]
    NoModel(String),
    #[error("provider `{provider}` has no API key: set {var} or models.providers.{provider}.apiKey")]
    MissingKey { provider: String, var: String },
    #[error("the session is busy with another run; retry when it finishes")]
    Busy,
    #[error("state store error: {0}")]
    Store(#[from] clawline_store::StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl TurnError {
    /// A short machine-readable code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            TurnError::UnknownAgent(..) => "unknown_agent",
            TurnError::BadSessionKey(_) => "invalid_session_key",
            TurnError::EmptyMessage => "empty_message",
            TurnError::NoModel(_) => "no_model",
            TurnError::MissingKey { .. } => "missing_api_key",
            TurnError::Busy => "session_busy",
            TurnError::Store(_) => "store_error",
            TurnError::Internal(_) => "internal_error",
        }
    }

    /// Whether the caller's input is at fault (as opposed to the server's configuration or state).
    pub fn is_client_error(&self) -> bool {
        matches!(self, TurnError::UnknownAgent(..) | TurnError::BadSessionKey(_) | TurnError::EmptyMessage)
    }
}
