//! Keeping an index in step with its files while the gateway runs: a watcher that looks at the
//! memory files' sizes and modification times every `poll` and syncs once they have been still
//! for `debounce` (OpenClaw's default is 1.5 s), so an edit is indexed, and its new chunks
//! embedded, before the next search needs them and never while it is half written.
//!
//! It polls rather than subscribing to OS file events: memory is a handful of markdown files,
//! a look at them costs a directory walk and a `stat` each (well under a millisecond), and
//! polling behaves the same on every platform and file system, network and container mounts
//! included. The watcher holds the index weakly and stops when the index is dropped.
//!
//! It must not sync more often than the files change, and a failing sync must not stop it.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::index::{MemoryIndex, SyncReport};
use crate::sources::discover;

/// How often to look and how long files must be still.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchSettings {
    pub poll: Duration,
    pub debounce: Duration,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings { poll: Duration::from_secs(1), debounce: Duration::from_millis(1500) }
    }
}

/// A digest of what the memory files look like now: their paths, sizes and modification times.
pub fn fingerprint(workspace: &std::path::Path, extra_paths: &[String]) -> u64 {
    let found = discover(workspace, extra_paths);
    let mut h = DefaultHasher::new();
    for f in &found.files {
        (&f.path, f.size, f.mtime_ms).hash(&mut h);
    }
    for s in &found.skipped {
        s.path.hash(&mut h);
    }
    h.finish()
}

/// Starts watching `index` (on the current Tokio runtime). `synced` hears every sync's report.
pub fn spawn(
    index: &Arc<MemoryIndex>,
    settings: WatchSettings,
    synced: impl Fn(Result<SyncReport, crate::MemoryError>) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let weak: Weak<MemoryIndex> = Arc::downgrade(index);
    let workspace: PathBuf = index.workspace().to_path_buf();
    let extra = index.settings().extra_paths.clone();
    tokio::spawn(async move {
        let look = move || {
            let (w, e) = (workspace.clone(), extra.clone());
            async move { tokio::task::spawn_blocking(move || fingerprint(&w, &e)).await.ok() }
        };
        // What the files looked like at the last sync (the first look syncs).
        let mut synced_as: Option<u64> = None;
        let mut seen: Option<(u64, Instant)> = None;
        loop {
            let Some(now) = look().await else { return };
            match seen {
                Some((fp, _)) if fp == now => {}
                _ => seen = Some((now, Instant::now())),
            }
            let still_for = seen.map_or(Duration::ZERO, |(_, since)| since.elapsed());
            if synced_as != Some(now) && (synced_as.is_none() || still_for >= settings.debounce) {
                let Some(index) = weak.upgrade() else { return };
                let report = index.sync(false, &|_| {}).await;
                drop(index);
                // Also after a failure: the next try waits for the files to change again (a
                // search still syncs first when the index is stale), instead of failing every poll.
                synced_as = Some(now);
                synced(report);
            }
            tokio::time::sleep(settings.poll).await;
            if weak.strong_count() == 0 {
                return;
            }
        }
    })
}
