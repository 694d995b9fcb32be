//! Discord's fixed facts and clawline's choices: the Gateway intents asked for, the client's
//! name in Identify, and send pacing.
//!
//! The account's settings are parsed and checked with the rest of the config
//! (`clawline_core::config::channels::DiscordSettings`).

use std::time::Duration;

/// GUILDS | GUILD_MESSAGES | DIRECT_MESSAGES | MESSAGE_CONTENT (privileged: enable it in the
/// Developer Portal, or message text arrives empty).
pub const INTENTS: u64 = (1 << 0) | (1 << 9) | (1 << 12) | (1 << 15);
/// Posts to one channel: a burst of five, then one a second (Discord's message bucket is about
/// five per five seconds per channel; its 429s are honoured as well).
pub const PACE: (Duration, u32) = (Duration::from_secs(1), 5);
/// Gateway close codes after which retrying cannot help.
pub const FATAL_CLOSE: &[u16] = &[4004, 4010, 4011, 4012, 4013, 4014];
/// Gateway close codes after which the session cannot be resumed.
pub const FRESH_CLOSE: &[u16] = &[4007, 4009];
