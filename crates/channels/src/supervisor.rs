//! Keeps one account connected: runs the adapter's connection, replaces it when it ends or
//! goes silent, and waits a bounded, jittered time between attempts.
//!
//! The watchdog looks at end-to-end progress (what the adapter reports through its
//! [`Health`](crate::health::Health)), never at socket state: a connection that stays open but
//! stops delivering is dropped after the adapter's `stall_after` and replaced. Backoff doubles
//! from one second to a minute (ten minutes after a fatal error) with full jitter, and starts
//! over once a connection has made progress. This file never touches messages.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::channel::{Channel, ConnectionError};
use crate::link::Link;

/// Backoff bounds.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub max_after_fatal: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            max_after_fatal: Duration::from_secs(600),
        }
    }
}

/// A random fraction in [0.5, 1.0): "equal jitter", so waits never collapse to zero and
/// reconnecting accounts spread out.
fn jitter() -> f64 {
    // UUIDv4 bits come from the system's random source; sixteen of them are plenty here.
    let bits = (uuid::Uuid::new_v4().as_u128() & 0xffff) as u16;
    0.5 + f64::from(bits) / f64::from(u16::MAX) / 2.0
}

/// The wait before attempt `n` (0 for the first reconnect). After a fatal error (a refused
/// token or login) it is always the long wait: retrying sooner cannot help and only hammers
/// the platform.
pub fn delay(backoff: &Backoff, n: u32, fatal: bool) -> Duration {
    if fatal {
        return backoff.max_after_fatal.mul_f64(jitter());
    }
    let base = backoff.initial.saturating_mul(2u32.saturating_pow(n.min(16))).min(backoff.max);
    base.mul_f64(jitter())
}

/// Runs `channel`'s connections until `stop` is cancelled.
pub async fn supervise(channel: Arc<dyn Channel>, link: Link, backoff: Backoff, stop: CancellationToken) {
    let health = link.health();
    let mut failures: u32 = 0;
    loop {
        let started_progress = health.last_progress();
        let outcome = tokio::select! {
            _ = stop.cancelled() => break,
            r = channel.connect(&link) => r.err().unwrap_or_else(|| ConnectionError::Transient("the connection ended".into())),
            stalled = watchdog(&channel, &link) => stalled,
        };
        // A connection that made progress resets the backoff.
        if health.last_progress() != started_progress {
            failures = 0;
        }
        let (message, fatal, floor) = match &outcome {
            ConnectionError::Transient(m) => (m.clone(), false, Duration::ZERO),
            ConnectionError::RateLimited { message, retry_after } => (message.clone(), false, *retry_after),
            ConnectionError::Fatal(m) => (m.clone(), true, Duration::ZERO),
        };
        health.disconnected(&message, fatal);
        let wait = delay(&backoff, failures, fatal).max(floor);
        failures = failures.saturating_add(1);
        tracing::warn!(
            channel = channel.channel(),
            account = channel.account_id(),
            error = %message,
            retry_in_ms = wait.as_millis() as u64,
            "channel connection ended; reconnecting"
        );
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    health.stopped();
}

/// Resolves when the connection has shown no progress for the adapter's `stall_after`.
async fn watchdog(channel: &Arc<dyn Channel>, link: &Link) -> ConnectionError {
    let limit = channel.stall_after();
    let began = clawline_store::now_ms();
    let tick = (limit / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    loop {
        tokio::time::sleep(tick).await;
        let last = link.health().last_progress().unwrap_or(began).max(began);
        let silent = clawline_store::now_ms().saturating_sub(last);
        if silent > limit.as_millis() as i64 {
            return ConnectionError::Transient(format!(
                "stalled: no progress for {:.1} s on an open connection",
                silent as f64 / 1000.0
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_stay_bounded_and_never_collapse() {
        let b = Backoff::default();
        for n in 0..40 {
            let d = delay(&b, n, false);
            let base = b.initial.saturating_mul(2u32.saturating_pow(n.min(16))).min(b.max);
            assert!(d >= base / 2 && d <= base, "{n}: {d:?}");
        }
        for n in [0, 1, 30] {
            assert!(delay(&b, n, true) <= b.max_after_fatal);
            assert!(delay(&b, n, true) >= b.max_after_fatal / 2, "a fatal error always waits long");
        }
    }
}
