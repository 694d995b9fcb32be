//! Request-rate limits for control-plane writes: at most N calls per window, per method and
//! client (device id, else address).
//!
//! Config writes, restarts and other state-changing administration are cheap to ask for and
//! expensive (or disruptive) to perform, so each client gets a budget per method. A refused call
//! learns when to retry. Memory stays bounded under a flood of distinct clients: expired windows
//! are swept, and past a hard cap the oldest entries go.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Methods that change the gateway's own state and are limited.
pub const LIMITED_METHODS: &[&str] =
    &["config.set", "config.patch", "config.apply", "sessions.reset", "sessions.delete"];

const MAX_TRACKED: usize = 10_000;

/// A fixed-window counter per key.
pub struct MethodLimiter {
    max: u32,
    window: Duration,
    entries: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Default for MethodLimiter {
    fn default() -> Self {
        MethodLimiter::new(30, Duration::from_secs(60))
    }
}

impl MethodLimiter {
    pub fn new(max: u32, window: Duration) -> Self {
        MethodLimiter { max, window, entries: Mutex::new(HashMap::new()) }
    }

    /// The limit as people read it, e.g. `30 per 60s`.
    pub fn describe(&self) -> String {
        format!("{} per {}s", self.max, self.window.as_secs())
    }

    /// Counts one call of `method` by `client`; `Err(retry_after)` when over the limit.
    pub fn check(&self, method: &str, client: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let key = format!("{method}\u{0}{client}");
        if entries.len() >= MAX_TRACKED && !entries.contains_key(&key) {
            entries.retain(|_, (start, _)| now.duration_since(*start) < self.window);
            // Still full: the oldest window goes (never everyone's, which would reset the
            // budget of a client that is being held back).
            if entries.len() >= MAX_TRACKED
                && let Some(oldest) = entries.iter().min_by_key(|(_, (start, _))| *start).map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        let e = entries.entry(key).or_insert((now, 0));
        if now.duration_since(e.0) >= self.window {
            *e = (now, 0);
        }
        if e.1 >= self.max {
            return Err(self.window.saturating_sub(now.duration_since(e.0)));
        }
        e.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_method_and_client() {
        let l = MethodLimiter::new(2, Duration::from_secs(60));
        assert!(l.check("config.apply", "a").is_ok());
        assert!(l.check("config.apply", "a").is_ok());
        let wait = l.check("config.apply", "a").unwrap_err();
        assert!(wait > Duration::from_secs(50));
        assert!(l.check("config.patch", "a").is_ok(), "other methods have their own budget");
        assert!(l.check("config.apply", "b").is_ok(), "other clients too");
        assert_eq!(l.describe(), "2 per 60s");
    }
}
