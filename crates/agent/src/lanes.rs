//! Session lanes: at most one run per session key, and no lock shared between keys.
//!
//! Each key gets its own async mutex, created on first use and removed when the last holder or
//! waiter lets go, so a thousand idle sessions cost nothing and a stuck session never blocks
//! another. There are no lock files: a crash releases everything.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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

impl Drop for LaneGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(&self.key).is_some_and(|lane| Arc::strong_count(lane) == 1) {
            map.remove(&self.key);
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
        let guard = lane.lock_owned().await;
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
        let b = tokio::time::timeout(Duration::from_millis(100), lanes.acquire("b")).await;
        assert!(b.is_ok());
        // The same key waits.
        let waiting = tokio::spawn({
            let lanes = lanes.clone();
            async move { lanes.acquire("a").await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        drop(a);
        let a2 = tokio::time::timeout(Duration::from_secs(1), waiting).await.unwrap().unwrap();
        assert!(lanes.is_busy("a"));
        drop(a2);
        drop(b);
        assert_eq!(lanes.active(), 0, "idle lanes are removed");
    }
}
