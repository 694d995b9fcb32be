//! Matrix's fixed facts and clawline's choices for them: the sync long-poll timeout and the
//! margin after which a silent sync counts as stalled, the initial sync's filter, send pacing.
//!
//! The account's settings are parsed and checked with the rest of the config
//! (`clawline_core::config::channels::MatrixSettings`).

use std::time::Duration;

/// How long one `/sync` waits for news (milliseconds, the API's unit).
pub const SYNC_TIMEOUT_MS: u64 = 30_000;
/// Extra time over the sync timeout before a sync counts as stalled.
pub const STALL_MARGIN: Duration = Duration::from_secs(20);
/// Sends to one room: a burst, then one per interval (homeservers rate-limit messages).
pub const PACE: (Duration, u32) = (Duration::from_millis(500), 5);

/// The filter for every sync: at most `limit` timeline events per room, no presence.
pub fn filter(limit: u32) -> String {
    serde_json::json!({
        "presence": {"not_types": ["*"]},
        "room": {"timeline": {"limit": limit}, "ephemeral": {"not_types": ["*"]}},
    })
    .to_string()
}
