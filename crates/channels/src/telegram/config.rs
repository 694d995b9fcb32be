//! Telegram's fixed facts and what clawline derives from an account's settings: the updates it
//! asks for, how long a silent long poll may last, and how fast it may send to one chat.
//!
//! The account's settings themselves are parsed and checked with the rest of the config
//! (`clawline_core::config::channels`); this file only holds what is specific to Telegram.

use std::time::Duration;

use clawline_core::routing::PeerKind;

/// The update kinds requested (`allowed_updates`).
pub const ALLOWED_UPDATES: &[&str] = &["message", "callback_query"];

/// Extra time over the long-poll timeout before a poll counts as stalled.
pub const STALL_MARGIN: Duration = Duration::from_secs(20);

/// How often webhook mode checks `getWebhookInfo` (its liveness signal).
pub const WEBHOOK_CHECK_EVERY: Duration = Duration::from_secs(60);

/// The header Telegram sends the webhook secret in.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// Sends to one chat: a burst of three, then one per second in private chats and one per three
/// seconds in groups (Telegram asks bots to stay under about one a second per chat and twenty
/// a minute per group).
pub fn pace(kind: PeerKind) -> (Duration, u32) {
    match kind {
        PeerKind::Direct => (Duration::from_secs(1), 3),
        PeerKind::Group | PeerKind::Channel => (Duration::from_secs(3), 3),
    }
}
