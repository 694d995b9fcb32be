//! Session lanes: at most one run per session key, and no lock shared between keys.
//!
//! Each key gets its own async mutex, created on first use and removed when the last holder or
//! waiter lets go, so a thousand idle sessions cost nothing and a stuck session never blocks
//! another. There are no lock files: a crash releases everything.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::OwnedMutexGuard;

type LaneMap = HashMap<String, Arc<tokio::sync::Mutex<()>>>;

/// The lanes of one process.
#[derive(Clone, Default)]
pub struct Lanes {
    map: Arc<Mutex<LaneMap>>,
}

/// Holds a lane; the next waiter for the same key proceeds when this drops.
pub struct LaneGuard {
    key: String,
    map: Arc<Mutex<LaneMap>>,
    guard: Option<OwnedMutexGuard<()>>,
}

/// Removes the lane of `key` when nobody holds or waits for it any more.
fn release(map: &Mutex<LaneMap>, key: &str) {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    if map.get(key).is_some_and(|lane| Arc::strong_count(lane) == 1) {
        map.remove(key);
    }
}

impl Drop for LaneGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        release(&self.map, &self.key);
    }
}

type LockFuture = Pin<Box<dyn Future<Output = OwnedMutexGuard<()>> + Send>>;

/// A wait for a lane. If it is dropped before the lane is granted (the caller gave up), it
/// drops its claim first and then removes the lane if nobody else wants it.
struct Wait {
    lock: Option<LockFuture>,
    map: Arc<Mutex<LaneMap>>,
    key: String,
}

impl Future for Wait {
    type Output = OwnedMutexGuard<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(lock) = self.lock.as_mut() else { return Poll::Pending };
        let ready = lock.as_mut().poll(cx);
        if ready.is_ready() {
            self.lock = None;
        }
        ready
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        if self.lock.take().is_some() {
            release(&self.map, &self.key);
        }
    }
}

impl Lanes {
    /// Waits for the lane of `key` and holds it.
    pub async fn acquire(&self, key: &str) -> LaneGuard {
        let lane = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.to_string()).or_default().clone()
        };
        let guard = Wait { lock: Some(Box::pin(lane.lock_owned())), map: self.map.clone(), key: key.to_string() }.await;
        LaneGuard { key: key.to_string(), map: self.map.clone(), guard: Some(guard) }
    }

    /// Whether a run holds or waits for `key`.
    pub fn is_busy(&self, key: &str) -> bool {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).contains_key(key)
    }

    /// Number of keys with a holder or waiter.
    pub fn active(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn serializes_one_key_and_not_others() {
        let lanes = Lanes::default();
        let a = lanes.acquire("a").await;
        // Another key is free.
        let b = tokio::time::timeout(Duration::from_secs(10), lanes.acquire("b")).await;
        assert!(b.is_ok());
        // The same key waits.
        let waiting = tokio::spawn({
            let lanes = lanes.clone();
            async move { lanes.acquire("a").await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        drop(a);
        let a2 = tokio::time::timeout(Duration::from_secs(10), waiting).await.unwrap().unwrap();
        assert!(lanes.is_busy("a"));
        drop(a2);
        drop(b);
        assert_eq!(lanes.active(), 0, "idle lanes are removed");
    }

    #[tokio::test]
    async fn a_cancelled_waiter_leaves_nothing_behind() {
        let lanes = Lanes::default();
        let held = lanes.acquire("k").await;
        let waiting = tokio::spawn({
            let lanes = lanes.clone();
            async move { lanes.acquire("k").await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        waiting.abort();
        let _ = waiting.await;
        // Whether the waiter was cancelled before or after it got the lane, nothing is left.
        assert_eq!(lanes.active(), 0);

        let held = lanes.acquire("k").await;
        let waiting = tokio::spawn({
            let lanes = lanes.clone();
            async move { lanes.acquire("k").await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        waiting.abort();
        let _ = waiting.await;
        drop(held);
        assert_eq!(lanes.active(), 0);
    }
}
