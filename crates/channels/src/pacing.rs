//! Per-chat send pacing: a token bucket per chat, so a burst of reply chunks goes out at once
//! and a long conversation stays under the platform's per-chat limit (Telegram: about one
//! message a second in a chat, twenty a minute in a group). The platform's own 429 answers are
//! still honoured by the delivery worker; pacing just avoids provoking them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Buckets by chat id.
#[derive(Debug, Default)]
pub struct Pacer {
    buckets: HashMap<String, Bucket>,
}

impl Pacer {
    /// How long until a message may go to `chat` (zero: now), for a chat allowed `burst`
    /// messages at once and one per `interval` after that.
    pub fn wait(&mut self, chat: &str, interval: Duration, burst: u32, now: Instant) -> Duration {
        if interval.is_zero() {
            return Duration::ZERO;
        }
        let b = self.refill(chat, interval, burst, now);
        if b.tokens >= 1.0 { Duration::ZERO } else { interval.mul_f64(1.0 - b.tokens) }
    }

    /// Records a send to `chat`.
    pub fn take(&mut self, chat: &str, interval: Duration, burst: u32, now: Instant) {
        if interval.is_zero() {
            return;
        }
        let b = self.refill(chat, interval, burst, now);
        b.tokens = (b.tokens - 1.0).max(0.0);
    }

    fn refill(&mut self, chat: &str, interval: Duration, burst: u32, now: Instant) -> &mut Bucket {
        let cap = f64::from(burst.max(1));
        let b = self.buckets.entry(chat.to_string()).or_insert(Bucket { tokens: cap, last: now });
        let gained = now.saturating_duration_since(b.last).as_secs_f64() / interval.as_secs_f64();
        b.tokens = (b.tokens + gained).min(cap);
        b.last = now;
        b
    }

    /// Forgets chats whose buckets are full again (bounded memory with many chats).
    pub fn prune(&mut self, interval: Duration, burst: u32, now: Instant) {
        let full = interval.mul_f64(f64::from(burst.max(1)));
        self.buckets.retain(|_, b| now.saturating_duration_since(b.last) < full);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_goes_then_one_per_interval() {
        let mut p = Pacer::default();
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        for _ in 0..3 {
            assert_eq!(p.wait("a", s, 3, t0), Duration::ZERO);
            p.take("a", s, 3, t0);
        }
        assert_eq!(p.wait("a", s, 3, t0), s);
        assert_eq!(p.wait("b", s, 3, t0), Duration::ZERO, "other chats are not held up");
        let half = t0 + Duration::from_millis(500);
        assert_eq!(p.wait("a", s, 3, half), Duration::from_millis(500));
        assert_eq!(p.wait("a", s, 3, t0 + s), Duration::ZERO);
        p.prune(s, 3, t0 + Duration::from_secs(10));
        assert!(p.buckets.is_empty());
    }
}
