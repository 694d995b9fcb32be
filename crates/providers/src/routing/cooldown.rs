//! Which credentials are resting, and until when.
//!
//! A failure benches exactly what failed, never more (OpenClaw users lost whole providers to
//! one model's outage):
//!
//! - a rate limit benches one *profile for one model* — the same key may still reach its
//!   other models, and other keys may still reach this model;
//! - an auth or billing failure benches one *profile for every model* (the key itself is bad);
//! - overload, 5xx, timeouts and connection failures bench one profile for one model, but only
//!   once they repeat ([`TRANSIENT_STRIKES`] in a row), so a single blip costs a retry, not
//!   minutes on a worse model;
//! - a request the provider refuses as invalid (context length, bad request, malformed
//!   stream) benches nothing: it is this conversation's problem, not the provider's.
//!
//! Rest periods climb 30 s → 1 min → 5 min with repeated failures (auth: 5 min → 30 min →
//! 1 h; billing: 1 h → 5 h → 24 h), and follow the provider's `Retry-After` when it sent one.
//! A success clears the profile/model's record. The book is in memory: after a restart every
//! credential gets one fresh attempt.
//!
//! This file must not do I/O or sleep; callers pass the current time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{ErrorKind, ProviderError};

/// Rate-limit and transient ladder.
const LADDER: [Duration; 3] = [Duration::from_secs(30), Duration::from_secs(60), Duration::from_secs(300)];
const AUTH_LADDER: [Duration; 3] = [Duration::from_secs(300), Duration::from_secs(1800), Duration::from_secs(3600)];
const BILLING_LADDER: [Duration; 3] =
    [Duration::from_secs(3600), Duration::from_secs(5 * 3600), Duration::from_secs(24 * 3600)];
/// Failures further apart than this start the ladder again.
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// A `Retry-After` longer than this is treated as this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Consecutive transient failures before a profile/model is benched.
pub const TRANSIENT_STRIKES: u32 = 3;

/// What a failure says about the route that produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// This key is rate limited for this model: try the next key, then the next model.
    RotateKey,
    /// This key is unusable (auth, billing): try the next key.
    KeyDown,
    /// This model is struggling (overload, 5xx, timeout, network): try the next model.
    ModelDown,
    /// This route cannot be used as configured: try the next one, bench nothing.
    Skip,
    /// The request itself is the problem (or it was cancelled): stop, bench nothing.
    Stop,
}

impl Verdict {
    pub fn of(kind: ErrorKind) -> Verdict {
        match kind {
            ErrorKind::RateLimited => Verdict::RotateKey,
            ErrorKind::Auth | ErrorKind::Billing => Verdict::KeyDown,
            ErrorKind::Overloaded | ErrorKind::Server | ErrorKind::Timeout | ErrorKind::Network => Verdict::ModelDown,
            ErrorKind::Config => Verdict::Skip,
            ErrorKind::ContextLength | ErrorKind::BadRequest | ErrorKind::Protocol | ErrorKind::Cancelled => {
                Verdict::Stop
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    profile: String,
    /// `None`: the whole profile.
    model: Option<String>,
}

#[derive(Debug, Clone)]
struct Entry {
    until: Option<Instant>,
    strikes: u32,
    last_failure: Instant,
    reason: ErrorKind,
    message: String,
}

/// A benched profile or profile/model, for status displays.
#[derive(Debug, Clone, PartialEq)]
pub struct Resting {
    pub profile: String,
    /// `None` when the whole profile is benched.
    pub model: Option<String>,
    pub reason: ErrorKind,
    pub remaining: Duration,
    pub message: String,
}

/// Shared record of failures per profile and per profile/model. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct CooldownBook {
    inner: Arc<Mutex<HashMap<Key, Entry>>>,
}

fn step(ladder: &[Duration; 3], strikes: u32) -> Duration {
    ladder[(strikes.max(1) as usize - 1).min(ladder.len() - 1)]
}

impl CooldownBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When `profile` may be used for `model` again; `None` when it may be used now.
    pub fn resting_until(&self, profile: &str, model: &str, now: Instant) -> Option<Instant> {
        let map = self.lock();
        let whole = map.get(&Key { profile: profile.to_string(), model: None });
        let one = map.get(&Key { profile: profile.to_string(), model: Some(model.to_string()) });
        [whole, one].into_iter().flatten().filter_map(|e| e.until).filter(|u| *u > now).max()
    }

    /// Records a failure of `profile` calling `model` and returns what it means.
    pub fn record_failure(&self, profile: &str, model: &str, err: &ProviderError, now: Instant) -> Verdict {
        let verdict = Verdict::of(err.kind);
        let (scope_model, ladder) = match (verdict, err.kind) {
            (Verdict::KeyDown, ErrorKind::Billing) => (None, &BILLING_LADDER),
            (Verdict::KeyDown, _) => (None, &AUTH_LADDER),
            (Verdict::RotateKey | Verdict::ModelDown, _) => (Some(model.to_string()), &LADDER),
            (Verdict::Skip | Verdict::Stop, _) => return verdict,
        };
        let key = Key { profile: profile.to_string(), model: scope_model };
        let mut map = self.lock();
        let entry = map.entry(key).or_insert(Entry {
            until: None,
            strikes: 0,
            last_failure: now,
            reason: err.kind,
            message: String::new(),
        });
        if now.saturating_duration_since(entry.last_failure) > FAILURE_WINDOW {
            entry.strikes = 0;
        }
        entry.strikes += 1;
        entry.last_failure = now;
        entry.reason = err.kind;
        entry.message = err.message.clone();
        let rest = match verdict {
            Verdict::ModelDown if entry.strikes < TRANSIENT_STRIKES => err.retry_after.map(|a| a.min(MAX_RETRY_AFTER)),
            Verdict::ModelDown => Some(
                err.retry_after.map_or(step(ladder, entry.strikes - TRANSIENT_STRIKES + 1), |a| a.min(MAX_RETRY_AFTER)),
            ),
            _ => Some(err.retry_after.map_or(step(ladder, entry.strikes), |a| a.min(MAX_RETRY_AFTER))),
        };
        entry.until = rest.map(|r| now + r);
        verdict
    }

    /// Clears the record of `profile` with `model` after a success.
    pub fn record_success(&self, profile: &str, model: &str) {
        self.lock().remove(&Key { profile: profile.to_string(), model: Some(model.to_string()) });
    }

    /// Everything resting now, soonest back first.
    pub fn resting(&self, now: Instant) -> Vec<Resting> {
        let mut out: Vec<Resting> = self
            .lock()
            .iter()
            .filter_map(|(k, e)| {
                let until = e.until.filter(|u| *u > now)?;
                Some(Resting {
                    profile: k.profile.clone(),
                    model: k.model.clone(),
                    reason: e.reason,
                    remaining: until - now,
                    message: e.message.clone(),
                })
            })
            .collect();
        out.sort_by_key(|r| r.remaining);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(kind: ErrorKind, after: Option<u64>) -> ProviderError {
        let mut e = ProviderError::new(kind, "p", "failed");
        e.retry_after = after.map(Duration::from_secs);
        e
    }

    #[test]
    fn rate_limits_bench_one_model_of_one_key_and_climb_the_ladder() {
        let book = CooldownBook::default();
        let t0 = Instant::now();
        assert_eq!(book.record_failure("openai:a", "gpt", &err(ErrorKind::RateLimited, None), t0), Verdict::RotateKey);
        assert_eq!(book.resting_until("openai:a", "gpt", t0), Some(t0 + Duration::from_secs(30)));
        assert_eq!(book.resting_until("openai:a", "other", t0), None, "other models of the key stay usable");
        assert_eq!(book.resting_until("openai:b", "gpt", t0), None, "other keys stay usable");
        let t1 = t0 + Duration::from_secs(31);
        assert_eq!(book.resting_until("openai:a", "gpt", t1), None, "back after its window");
        book.record_failure("openai:a", "gpt", &err(ErrorKind::RateLimited, None), t1);
        assert_eq!(book.resting_until("openai:a", "gpt", t1), Some(t1 + Duration::from_secs(60)));
        let t2 = t1 + Duration::from_secs(61);
        book.record_failure("openai:a", "gpt", &err(ErrorKind::RateLimited, None), t2);
        book.record_failure("openai:a", "gpt", &err(ErrorKind::RateLimited, None), t2);
        assert_eq!(book.resting_until("openai:a", "gpt", t2), Some(t2 + Duration::from_secs(300)), "capped at 5 min");
        book.record_success("openai:a", "gpt");
        assert_eq!(book.resting_until("openai:a", "gpt", t2), None);
    }

    #[test]
    fn retry_after_sets_the_rest_and_old_failures_are_forgotten() {
        let book = CooldownBook::default();
        let t0 = Instant::now();
        book.record_failure("k", "m", &err(ErrorKind::RateLimited, Some(7)), t0);
        assert_eq!(book.resting_until("k", "m", t0), Some(t0 + Duration::from_secs(7)));
        let later = t0 + FAILURE_WINDOW + Duration::from_secs(1);
        book.record_failure("k", "m", &err(ErrorKind::RateLimited, None), later);
        assert_eq!(book.resting_until("k", "m", later), Some(later + Duration::from_secs(30)), "ladder restarted");
    }

    #[test]
    fn auth_and_billing_bench_the_whole_key() {
        let book = CooldownBook::default();
        let t0 = Instant::now();
        assert_eq!(book.record_failure("k", "m1", &err(ErrorKind::Auth, None), t0), Verdict::KeyDown);
        assert_eq!(book.resting_until("k", "m2", t0), Some(t0 + Duration::from_secs(300)));
        book.record_failure("b", "m1", &err(ErrorKind::Billing, None), t0);
        assert_eq!(book.resting_until("b", "m9", t0), Some(t0 + Duration::from_secs(3600)));
        book.record_success("k", "m1");
        assert!(book.resting_until("k", "m1", t0).is_some(), "a model success does not clear a key-wide bench");
    }

    #[test]
    fn transient_failures_bench_only_when_they_repeat() {
        let book = CooldownBook::default();
        let t0 = Instant::now();
        for _ in 0..TRANSIENT_STRIKES - 1 {
            assert_eq!(book.record_failure("k", "m", &err(ErrorKind::Overloaded, None), t0), Verdict::ModelDown);
            assert_eq!(book.resting_until("k", "m", t0), None);
        }
        book.record_failure("k", "m", &err(ErrorKind::Server, None), t0);
        assert_eq!(book.resting_until("k", "m", t0), Some(t0 + Duration::from_secs(30)));
        assert_eq!(book.resting(t0).len(), 1);
    }

    #[test]
    fn request_errors_bench_nothing() {
        let book = CooldownBook::default();
        let t0 = Instant::now();
        for kind in [ErrorKind::ContextLength, ErrorKind::BadRequest, ErrorKind::Protocol, ErrorKind::Config] {
            book.record_failure("k", "m", &err(kind, Some(60)), t0);
        }
        assert_eq!(book.resting_until("k", "m", t0), None);
        assert!(book.resting(t0).is_empty());
    }
}
