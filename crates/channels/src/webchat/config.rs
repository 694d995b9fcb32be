//! The web chat's fixed facts: who its sender is, how often a preview may change, and the
//! limits on what a page may post.
//!
//! The account's settings (policies, chunking, streaming) are parsed with the rest of the
//! config (`channels.webchat`); the page itself needs no credentials of its own because the
//! gateway's token already guards every route it uses.

use std::time::Duration;

/// The sender id of whoever holds the gateway token (the page's only sender).
pub const OPERATOR: &str = "operator";
/// The display name of that sender.
pub const OPERATOR_NAME: &str = "Operator";
/// Edits are free on the page: a preview may change this often.
pub const PREVIEW_EVERY: Duration = Duration::from_millis(100);
/// The longest message a page may post, in characters.
pub const MAX_TEXT_CHARS: usize = 100_000;
/// The longest client message id, in bytes.
pub const MAX_ID_BYTES: usize = 128;
/// Events kept for a page that reads slowly before it is told to reload.
pub const PAGE_BUFFER: usize = 256;
/// How often the (always open) connection reports itself alive.
pub const ALIVE_EVERY: Duration = Duration::from_secs(30);
