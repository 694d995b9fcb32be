//! Slack's fixed facts and clawline's choices: Socket Mode liveness and send pacing.
//!
//! The account's settings are parsed and checked with the rest of the config
//! (`clawline_core::config::channels::SlackSettings`).

use std::time::Duration;

/// A WebSocket ping is sent when the socket has been quiet this long; its pong is progress.
pub const KEEPALIVE: Duration = Duration::from_secs(30);
/// Posts to one channel: a burst of three, then one a second (Slack's `chat.postMessage` tier).
pub const PACE: (Duration, u32) = (Duration::from_secs(1), 3);
