//! What is true about one account's connection, as the adapter, the supervisor and the
//! delivery worker observe it, and the snapshot `channels.status` shows.
//!
//! "Connected" means end-to-end progress was seen recently (a poll answered, a heartbeat
//! acknowledged, a sync token advanced), not that a socket is open. This file records facts;
//! it does not reconnect anything (the supervisor does).

use std::sync::Mutex;

use serde::Serialize;

/// The connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ConnState {
    /// Connecting for the first time.
    Starting,
    /// Progress seen since the last (re)connect.
    Connected,
    /// The last connection ended or stalled; waiting to try again.
    Reconnecting,
    /// The platform refuses us (bad token): retried rarely.
    Failed,
    Stopped,
}

/// A snapshot for status output.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountStatus {
    pub channel: String,
    pub account_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub mode: String,
    pub state: ConnState,
    /// When the state last changed (Unix ms).
    pub since_ms: i64,
    pub last_progress_ms: Option<i64>,
    /// When the connection last became connected (progress after a start or reconnect).
    pub last_connected_ms: Option<i64>,
    /// When the channel started.
    pub started_ms: i64,
    pub last_inbound_ms: Option<i64>,
    pub last_outbound_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    pub reconnects: u64,
    pub inbound: u64,
    pub duplicates: u64,
    pub outbound: u64,
    pub send_failures: u64,
    pub dead_letters: u64,
    /// Who the platform says the account is (the bot's username).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}

/// Shared, cheap-to-update health of one account.
#[derive(Debug)]
pub struct Health {
    inner: Mutex<AccountStatus>,
}

fn now() -> i64 {
    clawline_store::now_ms()
}

impl Health {
    pub fn new(channel: &str, account_id: &str, name: Option<String>, mode: &str) -> Health {
        Health {
            inner: Mutex::new(AccountStatus {
                channel: channel.to_string(),
                account_id: account_id.to_string(),
                name,
                mode: mode.to_string(),
                state: ConnState::Starting,
                since_ms: now(),
                last_progress_ms: None,
                last_connected_ms: None,
                started_ms: now(),
                last_inbound_ms: None,
                last_outbound_ms: None,
                last_error: None,
                last_error_ms: None,
                reconnects: 0,
                inbound: 0,
                duplicates: 0,
                outbound: 0,
                send_failures: 0,
                dead_letters: 0,
                identity: None,
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut AccountStatus) -> R) -> R {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    fn set_state(s: &mut AccountStatus, state: ConnState) {
        if s.state != state {
            s.state = state;
            s.since_ms = now();
        }
    }

    /// End-to-end progress: the connection is alive.
    pub fn progress(&self) {
        self.with(|s| {
            let t = now();
            s.last_progress_ms = Some(t);
            if s.state != ConnState::Connected {
                s.last_connected_ms = Some(t);
            }
            Self::set_state(s, ConnState::Connected);
        });
    }

    /// `n` new messages journaled, `dupes` redeliveries ignored.
    pub fn inbound(&self, n: u64, dupes: u64) {
        self.with(|s| {
            if n > 0 {
                s.last_inbound_ms = Some(now());
            }
            s.inbound += n;
            s.duplicates += dupes;
        });
    }

    pub fn sent(&self) {
        self.with(|s| {
            s.outbound += 1;
            s.last_outbound_ms = Some(now());
        });
    }

    pub fn send_failed(&self, error: &str, dead: bool) {
        self.with(|s| {
            s.send_failures += 1;
            if dead {
                s.dead_letters += 1;
            }
            s.last_error = Some(format!("send: {error}"));
            s.last_error_ms = Some(now());
        });
    }

    /// The connection ended; the supervisor will try again.
    pub fn disconnected(&self, error: &str, fatal: bool) {
        self.with(|s| {
            s.reconnects += 1;
            s.last_error = Some(error.to_string());
            s.last_error_ms = Some(now());
            Self::set_state(s, if fatal { ConnState::Failed } else { ConnState::Reconnecting });
        });
    }

    pub fn stopped(&self) {
        self.with(|s| Self::set_state(s, ConnState::Stopped));
    }

    pub fn set_identity(&self, identity: String) {
        self.with(|s| s.identity = Some(identity));
    }

    pub fn set_mode(&self, mode: &str) {
        self.with(|s| s.mode = mode.to_string());
    }

    /// When progress was last seen (Unix ms), if ever.
    pub fn last_progress(&self) -> Option<i64> {
        self.with(|s| s.last_progress_ms)
    }

    pub fn snapshot(&self) -> AccountStatus {
        self.with(|s| s.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_follows_what_was_observed() {
        let h = Health::new("telegram", "default", None, "polling");
        assert_eq!(h.snapshot().state, ConnState::Starting);
        h.progress();
        h.inbound(2, 1);
        let s = h.snapshot();
        assert_eq!((s.state, s.inbound, s.duplicates), (ConnState::Connected, 2, 1));
        assert!(s.last_inbound_ms.is_some());
        h.disconnected("stalled: no answer for 45 s", false);
        let s = h.snapshot();
        assert_eq!(
            (s.state, s.reconnects, s.last_error.as_deref()),
            (ConnState::Reconnecting, 1, Some("stalled: no answer for 45 s"))
        );
        h.disconnected("401 Unauthorized", true);
        assert_eq!(h.snapshot().state, ConnState::Failed);
        h.send_failed("403 blocked", true);
        assert_eq!(h.snapshot().dead_letters, 1);
    }
}
