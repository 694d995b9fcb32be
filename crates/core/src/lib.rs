//! clawline's domain core: the configuration schema and its loader, session keys, the message and
//! transcript record types every other crate speaks, and small pure helpers.
//!
//! This crate does no I/O and knows no platform, provider or protocol. Anything that needs the
//! environment or the file system (config loading, secret files) takes it as an injected function,
//! so every rule here is testable with plain values.

pub mod config;
pub mod json5;
pub mod message;
pub mod pattern;
pub mod routing;
pub mod secret;
pub mod session_key;
pub mod text;
pub mod time;
pub mod transcript;
