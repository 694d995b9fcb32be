//! IRC's fixed facts and clawline's choices for them: how fast lines may go out, how often the
//! connection is checked, how a taken nick is replaced and later recovered.
//!
//! The account's settings are parsed and checked with the rest of the config
//! (`clawline_core::config::channels::IrcSettings`); this file holds only IRC-specific constants.

use std::time::Duration;

/// Lines sent at once before pacing starts (servers allow a small burst, then penalize).
pub const FLOOD_BURST: u32 = 5;
/// One line per this, after the burst (ngircd and most networks accept about one a second).
pub const FLOOD_INTERVAL: Duration = Duration::from_millis(700);
/// A client PING is sent when the server has been quiet this long.
pub const KEEPALIVE: Duration = Duration::from_secs(60);
/// How long connecting and registering may take.
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a replaced nick tries to get the configured one back.
pub const NICK_RECOVERY_EVERY: Duration = Duration::from_secs(60);
/// Our `:nick!user@host ` as others see it, when the server has not told us (a safe overestimate).
pub const PREFIX_GUESS: usize = 100;
/// The longest line read from a server before it is skipped.
pub const MAX_READ_LINE: usize = 8 * 1024;

/// IRCv3 capabilities asked for when the server offers them (besides `sasl` when configured):
/// stamps and ids that tell a played-back line from a new one.
pub const WANTED_CAPS: [&str; 2] = ["server-time", "message-tags"];

/// The nick to try after `current` was refused as taken.
pub fn next_nick(current: &str) -> String {
    if current.len() < 28 {
        format!("{current}_")
    } else {
        format!("{}{}", &current[..20], uuid::Uuid::new_v4().simple().to_string().get(..6).unwrap_or("x"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_nicks_grow_and_stay_short() {
        assert_eq!(next_nick("claw"), "claw_");
        let long = "a".repeat(29);
        assert_eq!(next_nick(&long).len(), 26);
    }
}
