//! Session keys: the stable name of a conversation, `agent:<agentId>:<rest>`.
//!
//! The forms follow OpenClaw so keys mean the same thing in both: `agent:main:main` is an
//! agent's main session; a bare key a client gives (`incident-42`) is scoped to the agent
//! (`agent:main:incident-42`); `main` alone is the agent's main session; `global` stays unscoped.
//! A key names a conversation; the session id behind it rotates on reset.

use std::fmt;

/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 256;

/// A validated, canonical session key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey(String);

/// Why a session key or agent id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionKeyError {
    #[error("session key is empty")]
    Empty,
    #[error("session key is longer than {MAX_KEY_LEN} bytes")]
    TooLong,
    #[error(
        "session key `{0}` has a character outside letters, digits and `:_.-@+`; use something like `agent:main:work`"
    )]
    BadCharacter(String),
    #[error("session key `{0}` names agent `{1}`, but the request is for agent `{2}`")]
    AgentMismatch(String, String, String),
    #[error("agent id `{0}` must be 1-64 characters of lowercase letters, digits, `-` and `_`, starting with a letter")]
    BadAgentId(String),
    #[error("session key prefix `{0}:` is reserved for the gateway's own sessions")]
    Reserved(String),
}

/// Checks an agent id: `^[a-z][a-z0-9_-]{0,63}$`.
pub fn validate_agent_id(id: &str) -> Result<(), SessionKeyError> {
    let mut chars = id.chars();
    let ok = id.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok { Ok(()) } else { Err(SessionKeyError::BadAgentId(id.to_string())) }
}

fn check_chars(key: &str) -> Result<(), SessionKeyError> {
    if key.is_empty() {
        return Err(SessionKeyError::Empty);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(SessionKeyError::TooLong);
    }
    if key.split(':').any(str::is_empty) || !key.chars().all(|c| c.is_ascii_alphanumeric() || ":_.-@+".contains(c)) {
        return Err(SessionKeyError::BadCharacter(key.to_string()));
    }
    Ok(())
}

impl SessionKey {
    /// The main session of an agent: `agent:<agentId>:main`.
    pub fn main(agent_id: &str) -> Self {
        SessionKey(format!("agent:{agent_id}:main"))
    }

    /// A gateway-made key under an agent, e.g. `agent:main:openai:<uuid>`.
    pub fn scoped(agent_id: &str, rest: &str) -> Self {
        SessionKey(format!("agent:{agent_id}:{rest}"))
    }

    /// Canonicalizes a key a client sent, for `agent_id`.
    ///
    /// `main` → `agent:<id>:main`; `agent:<id>:…` is kept (and must name `agent_id`); `global`
    /// stays as is; any other bare key becomes `agent:<id>:<key>`. Keys starting with a reserved
    /// prefix (`subagent:`, `cron:`, `acp:`, `hook:`) are refused: only the gateway makes those.
    pub fn from_client(agent_id: &str, raw: &str) -> Result<Self, SessionKeyError> {
        let raw = raw.trim();
        check_chars(raw)?;
        if raw == "main" {
            return Ok(Self::main(agent_id));
        }
        if raw == "global" {
            return Ok(SessionKey(raw.to_string()));
        }
        if let Some(rest) = raw.strip_prefix("agent:") {
            let (owner, tail) = rest.split_once(':').ok_or_else(|| SessionKeyError::BadCharacter(raw.to_string()))?;
            validate_agent_id(owner)?;
            if owner != agent_id {
                return Err(SessionKeyError::AgentMismatch(raw.to_string(), owner.to_string(), agent_id.to_string()));
            }
            if tail.is_empty() {
                return Err(SessionKeyError::BadCharacter(raw.to_string()));
            }
            return Ok(SessionKey(raw.to_string()));
        }
        for reserved in ["subagent", "cron", "acp", "hook"] {
            if raw.split(':').next() == Some(reserved) {
                return Err(SessionKeyError::Reserved(reserved.to_string()));
            }
        }
        let key = format!("agent:{agent_id}:{raw}");
        check_chars(&key)?;
        Ok(SessionKey(key))
    }

    /// Reads a key that was already canonical (e.g. from the store). Only checks characters.
    pub fn parse_canonical(raw: &str) -> Result<Self, SessionKeyError> {
        check_chars(raw)?;
        Ok(SessionKey(raw.to_string()))
    }

    /// The agent this key belongs to, when it is an `agent:` key.
    pub fn agent_id(&self) -> Option<&str> {
        self.0.strip_prefix("agent:")?.split(':').next()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        let k = |raw| SessionKey::from_client("main", raw).map(|k| k.0);
        assert_eq!(k("main").unwrap(), "agent:main:main");
        assert_eq!(k("incident-42").unwrap(), "agent:main:incident-42");
        assert_eq!(k("agent:main:work").unwrap(), "agent:main:work");
        assert_eq!(k("global").unwrap(), "global");
        assert_eq!(k(" main ").unwrap(), "agent:main:main");
        assert!(matches!(k("agent:ops:main"), Err(SessionKeyError::AgentMismatch(..))));
        assert!(matches!(k("cron:job1"), Err(SessionKeyError::Reserved(_))));
        assert!(matches!(k(""), Err(SessionKeyError::Empty)));
        assert!(matches!(k("a b"), Err(SessionKeyError::BadCharacter(_))));
        assert!(matches!(k("a::b"), Err(SessionKeyError::BadCharacter(_))));
        assert!(matches!(k("agent:main:"), Err(SessionKeyError::BadCharacter(_))));
        assert!(matches!(k(&"x".repeat(300)), Err(SessionKeyError::TooLong)));
        assert_eq!(SessionKey::main("ops").agent_id(), Some("ops"));
    }

    #[test]
    fn agent_ids() {
        assert!(validate_agent_id("main").is_ok());
        assert!(validate_agent_id("ops-2_x").is_ok());
        assert!(validate_agent_id("Main").is_err());
        assert!(validate_agent_id("2x").is_err());
        assert!(validate_agent_id("").is_err());
    }
}
