//! Who may call the API: the shared secret, and a lockout for clients that keep guessing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clawline_core::config::{AuthMode, RateLimitSettings};
use clawline_core::secret::SecretString;

/// The secrets a client may present as `Authorization: Bearer …`.
#[derive(Clone)]
pub struct Credentials {
    pub mode: AuthMode,
    pub token: SecretString,
    pub password: Option<SecretString>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("mode", &self.mode).finish_non_exhaustive()
    }
}

impl Credentials {
    /// Constant-time check of a presented secret. In password mode the password is accepted as
    /// well as the token.
    pub fn accepts(&self, presented: &str) -> bool {
        let token_ok = self.token.matches(presented);
        let password_ok =
            self.password.as_ref().is_some_and(|p| self.mode == AuthMode::Password && p.matches(presented));
        token_ok | password_ok
    }
}

struct Entry {
    window_start: Instant,
    failures: u32,
    locked_until: Option<Instant>,
}

/// Who is counted: an address, and what it tried to authenticate as (so failures with one kind
/// of credential do not lock out another) or, for browsers, the page's origin.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LimitKey {
    pub ip: IpAddr,
    pub scope: String,
    /// Browser-origin attempts are never exempt, even from loopback: a web page on this
    /// machine can be anyone's.
    pub browser: bool,
}

impl LimitKey {
    pub fn http(ip: IpAddr) -> Self {
        LimitKey { ip, scope: "shared-secret".into(), browser: false }
    }
}

/// Counts failed authentications per client; too many in a window locks the client out for a
/// while. Loopback may be exempt (the default), so a local typo never locks you out of your
/// own machine.
pub struct FailureLimiter {
    settings: RateLimitSettings,
    entries: Mutex<HashMap<LimitKey, Entry>>,
}

const MAX_TRACKED: usize = 10_000;

impl FailureLimiter {
    pub fn new(settings: RateLimitSettings) -> Self {
        FailureLimiter { settings, entries: Mutex::new(HashMap::new()) }
    }

    fn exempt(&self, key: &LimitKey) -> bool {
        self.settings.exempt_loopback && key.ip.is_loopback() && !key.browser
    }

    /// `Err(wait)` while `key` is locked out.
    pub fn check(&self, key: &LimitKey) -> Result<(), Duration> {
        if self.exempt(key) {
            return Ok(());
        }
        let now = Instant::now();
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(key).and_then(|e| e.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    pub fn failure(&self, key: &LimitKey) {
        if self.exempt(key) {
            return;
        }
        let now = Instant::now();
        let window = Duration::from_millis(self.settings.window_ms);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_TRACKED {
            entries.retain(|_, e| e.locked_until.is_some_and(|u| u > now) || now - e.window_start < window);
            if entries.len() >= MAX_TRACKED {
                // Under a flood of distinct addresses keep only the lockouts, so memory stays bounded.
                entries.retain(|_, e| e.locked_until.is_some_and(|u| u > now));
            }
        }
        let e = entries.entry(key.clone()).or_insert(Entry { window_start: now, failures: 0, locked_until: None });
        if now - e.window_start > window {
            e.window_start = now;
            e.failures = 0;
        }
        e.failures += 1;
        if e.failures >= self.settings.max_attempts {
            e.locked_until = Some(now + Duration::from_millis(self.settings.lockout_ms));
            e.failures = 0;
            e.window_start = now;
            tracing::warn!(client = %key.ip, scope = %key.scope, lockout_ms = self.settings.lockout_ms, "too many failed authentications; client locked out");
        }
    }

    pub fn success(&self, key: &LimitKey) {
        if !self.exempt(key) {
            self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(exempt: bool) -> FailureLimiter {
        FailureLimiter::new(RateLimitSettings {
            max_attempts: 3,
            window_ms: 60_000,
            lockout_ms: 60_000,
            exempt_loopback: exempt,
        })
    }

    #[test]
    fn locks_out_after_repeated_failures() {
        let l = limiter(true);
        let remote = LimitKey::http("192.0.2.7".parse().unwrap());
        for _ in 0..2 {
            l.failure(&remote);
            assert!(l.check(&remote).is_ok());
        }
        l.failure(&remote);
        assert!(l.check(&remote).is_err());
        let other_scope = LimitKey { scope: "device-token".into(), ..remote.clone() };
        assert!(l.check(&other_scope).is_ok(), "another credential kind has its own count");
        let local = LimitKey::http("127.0.0.1".parse().unwrap());
        for _ in 0..10 {
            l.failure(&local);
        }
        assert!(l.check(&local).is_ok(), "loopback is exempt by default");
        let page = LimitKey { browser: true, scope: "origin:http://127.0.0.1:1".into(), ..local.clone() };
        for _ in 0..3 {
            l.failure(&page);
        }
        assert!(l.check(&page).is_err(), "browser pages are never exempt");
        let strict = limiter(false);
        for _ in 0..3 {
            strict.failure(&local);
        }
        assert!(strict.check(&local).is_err());
    }

    #[test]
    fn accepts_token_and_password_only_in_password_mode() {
        let c = Credentials {
            mode: AuthMode::Token,
            token: SecretString::new("tok"),
            password: Some(SecretString::new("pw")),
        };
        assert!(c.accepts("tok"));
        assert!(!c.accepts("pw"));
        let c = Credentials { mode: AuthMode::Password, ..c };
        assert!(c.accepts("pw"));
        assert!(!c.accepts("nope"));
    }
}
