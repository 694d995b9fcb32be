//! The database handle: one SQLite connection owned by one dedicated thread.
//!
//! Callers send closures over a channel and await the answer, so SQLite never runs on an async
//! worker thread, there is a single writer (no `SQLITE_BUSY` between our own writes), and a slow
//! query delays other queries but never the network. A closure that panics is caught and
//! reported as an error; the thread keeps serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;

use rusqlite::{Connection, OpenFlags};

use crate::changes::{Change, FEED_CAPACITY};
use crate::error::StoreError;
use crate::migrations;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A cheap-to-clone handle to the state database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: mpsc::Sender<Job>,
    path: PathBuf,
    changes: tokio::sync::broadcast::Sender<Arc<Change>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.inner.path).finish()
    }
}

/// Opens a connection with the pragmas every connection here uses.
pub(crate) fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_millis(5000))?;
    // WAL: readers in other processes (e.g. `clawline sessions list`) never block the writer.
    // synchronous=NORMAL in WAL mode: a committed transaction survives a process crash (kill -9);
    // after a power cut the last commits may be lost, but the file is never corrupted.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

impl Store {
    /// Opens (creating if needed) the database at `path`, migrates it, and starts its thread.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent() {
            crate::paths::ensure_private_dir(dir)?;
        }
        let mut conn = open_connection(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| StoreError::io(path, e))?;
        }
        migrations::migrate(&mut conn, &path.display().to_string())?;
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("clawline-db".into())
            .spawn(move || {
                let mut conn = conn;
                while let Ok(job) = rx.recv() {
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut conn))).is_err() {
                        tracing::error!("a database job panicked; the store keeps running");
                    }
                }
            })
            .map_err(|e| StoreError::io(path, e))?;
        let (changes, _) = tokio::sync::broadcast::channel(FEED_CAPACITY);
        Ok(Store { inner: Arc::new(Inner { jobs, path: path.to_path_buf(), changes }) })
    }

    /// Committed changes from now on (see [`crate::changes`]).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<Change>> {
        self.inner.changes.subscribe()
    }

    /// Announces a committed change. Call only after the commit.
    pub(crate) fn publish(&self, change: Change) {
        // No subscribers is fine: nobody is listening.
        let _ = self.inner.changes.send(Arc::new(change));
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on the database thread and returns its result.
    pub async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        self.inner.jobs.send(job).map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// `PRAGMA quick_check`: "ok" or the problems found.
    pub async fn quick_check(&self) -> Result<String, StoreError> {
        self.call(|c| Ok(c.query_row("PRAGMA quick_check", [], |r| r.get::<_, String>(0))?)).await
    }

    /// The schema version on disk.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        self.call(|c| Ok(c.pragma_query_value(None, "user_version", |r| r.get(0))?)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_survives_a_panicking_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state").join("db.sqlite")).unwrap();
        assert_eq!(store.quick_check().await.unwrap(), "ok");
        assert_eq!(store.schema_version().await.unwrap(), crate::SCHEMA_VERSION);
        let r: Result<(), StoreError> = store.call(|_| panic!("boom")).await;
        assert!(matches!(r, Err(StoreError::Stopped)));
        assert_eq!(store.quick_check().await.unwrap(), "ok");
        let mode: String = store.call(|c| Ok(c.pragma_query_value(None, "journal_mode", |r| r.get(0))?)).await.unwrap();
        assert_eq!(mode, "wal");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(store.path()).unwrap().permissions().mode() & 0o777;
            assert_eq!(m, 0o600);
        }
    }
}
