//! `<state>/observability.sqlite`: one row per run, model call and tool call, and the audit
//! log of privileged actions.
//!
//! Rows are handed to a writer thread through a bounded queue and written in batches, one
//! transaction per batch, so a run never waits on this file. The file is diagnostics, not the
//! record of the conversation (that is the state store): when the writer falls behind by more
//! than [`QUEUE`] rows, new rows are dropped and counted rather than slowing the runs down.
//! [`Journal::flush`] waits until everything handed over so far is on disk (shutdown, tests).
//!
//! It must never hold message text or secrets: names, counts, timings and outcome classes,
//! plus, in the audit log, what a privileged action acted on (a device id, a pairing code, the
//! command line of an `exec` run, cut at 300 characters). The file is created readable by its
//! owner alone.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, params};

use crate::ObserveError;

/// Rows that may wait for the writer before new ones are dropped.
pub const QUEUE: usize = 8192;
/// Rows written per transaction at most.
const BATCH: usize = 512;
/// Rows older than this are deleted when the file is opened.
const RETENTION_MS: i64 = 400 * 24 * 3600 * 1000;
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    session_key TEXT NOT NULL,
    channel TEXT NOT NULL,
    model TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    ended_ms INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    model_calls INTEGER NOT NULL,
    tool_calls INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started_ms);
CREATE TABLE IF NOT EXISTS model_calls (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    channel TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS model_calls_started ON model_calls(started_ms);
CREATE INDEX IF NOT EXISTS model_calls_agent ON model_calls(agent, started_ms);
CREATE TABLE IF NOT EXISTS tool_calls (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    tool TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tool_calls_started ON tool_calls(started_ms);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit(at_ms);
";

/// How one run ended, written when it ends.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunRow {
    pub run_id: String,
    pub agent: String,
    pub session_key: String,
    /// Where the turn came from: a chat platform (`telegram`), `webchat`, `openai`, `ws`, `cli`, ….
    pub channel: String,
    /// `provider/model` of the agent's primary model.
    pub model: String,
    pub started_ms: i64,
    pub ended_ms: i64,
    /// `ok`, or the error class that ended it (`timeout`, `budget`, `rate_limit`, …).
    pub outcome: String,
    pub model_calls: u32,
    pub tool_calls: u32,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
}

/// One model call (one HTTP request and its streamed answer).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelCallRow {
    pub run_id: String,
    pub agent: String,
    pub channel: String,
    pub provider: String,
    pub model: String,
    pub started_ms: i64,
    pub duration_ms: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub cost_usd: f64,
    /// `ok`, or the provider error class.
    pub outcome: String,
}

/// One tool call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolCallRow {
    pub run_id: String,
    pub agent: String,
    pub tool: String,
    pub started_ms: i64,
    pub duration_ms: u64,
    /// `ok`, `error`, or `not_run` (refused before it ran).
    pub outcome: String,
}

/// One privileged action: a config change, a pairing or device decision, a credential or
/// token change, an `exec` run.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRow {
    pub at_ms: i64,
    /// Who: `cli`, `ws:<client>` (with its device id when it has one), `http`, `agent:<id>`.
    pub actor: String,
    /// What: the RPC method or CLI command (`config.set`, `pairing.approve`, `tool.exec`, …).
    pub action: String,
    /// What it acted on (a device or request id, `channel code`, the command line), if anything.
    pub target: String,
    /// `ok`, or why it was refused or failed.
    pub outcome: String,
    pub detail: String,
}

impl AuditRow {
    /// A row stamped now; `target` is cut at 300 characters.
    pub fn now(actor: impl Into<String>, action: impl Into<String>, target: &str, outcome: impl Into<String>) -> Self {
        let mut cut: String = target.chars().take(300).collect();
        if cut.len() < target.len() {
            cut.push('…');
        }
        let target = cut;
        AuditRow {
            at_ms: now_ms(),
            actor: actor.into(),
            action: action.into(),
            target,
            outcome: outcome.into(),
            detail: String::new(),
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}

/// A row for the journal.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Run(RunRow),
    ModelCall(ModelCallRow),
    ToolCall(ToolCallRow),
    Audit(AuditRow),
}

type QueryJob = Box<dyn FnOnce(&Connection) + Send>;

enum Job {
    Write(Record),
    Flush(mpsc::Sender<()>),
    Query(QueryJob),
}

/// The handle to the writer thread. Cheap to clone; the thread ends when the last clone goes.
#[derive(Clone)]
pub struct Journal {
    tx: SyncSender<Job>,
    dropped: Arc<AtomicU64>,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish_non_exhaustive()
    }
}

fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> ObserveError + '_ {
    move |source| ObserveError::Sqlite { path: path.display().to_string(), source }
}

/// Opens (creating if needed) the file and its schema, for writing.
fn open_for_writing(path: &Path) -> Result<Connection, ObserveError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| ObserveError::Io { path: dir.display().to_string(), message: e.to_string() })?;
    }
    let fresh = !path.exists();
    let conn = Connection::open(path).map_err(sqlite(path))?;
    #[cfg(unix)]
    if fresh {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    #[cfg(not(unix))]
    let _ = fresh;
    conn.busy_timeout(Duration::from_secs(5)).map_err(sqlite(path))?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(sqlite(path))?;
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(sqlite(path))?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(sqlite(path))?;
    if version > SCHEMA_VERSION {
        return Err(ObserveError::Io {
            path: path.display().to_string(),
            message: format!("written by a newer clawline (schema {version}, this one knows {SCHEMA_VERSION})"),
        });
    }
    conn.execute_batch(SCHEMA).map_err(sqlite(path))?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(sqlite(path))?;
    let cutoff = now_ms() - RETENTION_MS;
    for table in ["runs", "model_calls", "tool_calls"] {
        conn.execute(&format!("DELETE FROM {table} WHERE started_ms < ?1"), [cutoff]).map_err(sqlite(path))?;
    }
    conn.execute("DELETE FROM audit WHERE at_ms < ?1", [cutoff]).map_err(sqlite(path))?;
    Ok(conn)
}

/// Opens an existing file read-only (what `clawline usage` does while a gateway may write).
pub fn open_read_only(path: &Path) -> Result<Connection, ObserveError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(sqlite(path))?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(sqlite(path))?;
    Ok(conn)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn write(conn: &Connection, r: &Record) -> rusqlite::Result<()> {
    match r {
        Record::Run(r) => conn
            .prepare_cached(
                "INSERT OR REPLACE INTO runs (run_id, agent, session_key, channel, model, started_ms, ended_ms,
                 outcome, model_calls, tool_calls, input_tokens, output_tokens, cost_usd)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?
            .execute(params![
                r.run_id,
                r.agent,
                r.session_key,
                r.channel,
                r.model,
                r.started_ms,
                r.ended_ms,
                r.outcome,
                r.model_calls,
                r.tool_calls,
                r.input_tokens as i64,
                r.output_tokens as i64,
                r.cost_usd
            ])
            .map(|_| ()),
        Record::ModelCall(m) => conn
            .prepare_cached(
                "INSERT INTO model_calls (run_id, agent, channel, provider, model, started_ms, duration_ms,
                 input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, outcome)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?
            .execute(params![
                m.run_id,
                m.agent,
                m.channel,
                m.provider,
                m.model,
                m.started_ms,
                m.duration_ms as i64,
                m.input_tokens as i64,
                m.output_tokens as i64,
                m.cache_read_tokens as i64,
                m.cache_write_tokens as i64,
                m.cost_usd,
                m.outcome
            ])
            .map(|_| ()),
        Record::ToolCall(t) => conn
            .prepare_cached(
                "INSERT INTO tool_calls (run_id, agent, tool, started_ms, duration_ms, outcome)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![t.run_id, t.agent, t.tool, t.started_ms, t.duration_ms as i64, t.outcome])
            .map(|_| ()),
        Record::Audit(a) => conn
            .prepare_cached(
                "INSERT INTO audit (at_ms, actor, action, target, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![a.at_ms, a.actor, a.action, a.target, a.outcome, a.detail])
            .map(|_| ()),
    }
}

fn write_batch(conn: &mut Connection, batch: &[Record], path: &Path) {
    let result = (|| {
        let tx = conn.transaction()?;
        for r in batch {
            write(&tx, r)?;
        }
        tx.commit()
    })();
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), rows = batch.len(), error = %e, "could not write observability rows");
    }
}

fn writer(mut conn: Connection, rx: Receiver<Job>, path: PathBuf) {
    let mut batch: Vec<Record> = Vec::with_capacity(BATCH);
    let mut waiting: Vec<mpsc::Sender<()>> = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Write(r) => batch.push(r),
                Job::Flush(done) => waiting.push(done),
                Job::Query(q) => {
                    // A query sees everything handed over before it.
                    write_batch(&mut conn, &batch, &path);
                    batch.clear();
                    q(&conn);
                }
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            write_batch(&mut conn, &batch, &path);
            batch.clear();
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

impl Journal {
    /// Opens the file (creating it and its schema) and starts the writer thread.
    pub fn open(path: &Path) -> Result<Journal, ObserveError> {
        let conn = open_for_writing(path)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let owned = path.to_path_buf();
        std::thread::Builder::new()
            .name("clawline-observe".into())
            .spawn(move || writer(conn, rx, owned))
            .map_err(|e| ObserveError::Io { path: path.display().to_string(), message: e.to_string() })?;
        Ok(Journal { tx, dropped: Arc::default(), path: Arc::new(path.to_path_buf()) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands a row to the writer; `false` when it was dropped (the queue is full).
    pub fn record(&self, r: Record) -> bool {
        match self.tx.try_send(Job::Write(r)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(path = %self.path.display(), "the observability writer fell behind; rows are being dropped");
                }
                false
            }
        }
    }

    /// Rows dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits (blocking, up to `timeout`) until every row handed over before is written.
    pub fn flush(&self, timeout: Duration) -> Result<(), ObserveError> {
        let (done, wait) = mpsc::channel();
        self.tx.send(Job::Flush(done)).map_err(|_| ObserveError::Stopped)?;
        wait.recv_timeout(timeout).map_err(|_| ObserveError::Stopped)
    }

    /// Runs `f` on the writer's connection after every row handed over before it is written,
    /// and returns what it returns (blocking: call it from a blocking thread).
    pub fn query<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> R + Send + 'static,
    ) -> Result<R, ObserveError> {
        let (reply, answer) = mpsc::channel();
        let job: QueryJob = Box::new(move |conn| {
            let _ = reply.send(f(conn));
        });
        self.tx.send(Job::Query(job)).map_err(|_| ObserveError::Stopped)?;
        answer.recv().map_err(|_| ObserveError::Stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(agent: &str, started_ms: i64, tokens: u64) -> Record {
        Record::ModelCall(ModelCallRow {
            run_id: "r1".into(),
            agent: agent.into(),
            channel: "cli".into(),
            provider: "p".into(),
            model: "m".into(),
            started_ms,
            duration_ms: 12,
            input_tokens: tokens,
            output_tokens: 1,
            cost_usd: 0.5,
            outcome: "ok".into(),
            ..Default::default()
        })
    }

    #[test]
    fn writes_rows_in_order_and_flushes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("observability.sqlite");
        let j = Journal::open(&path).expect("open");
        for i in 0..1000 {
            assert!(j.record(call("main", now_ms() + i, 10)));
        }
        j.flush(Duration::from_secs(10)).expect("flush");
        let n: i64 =
            j.query(|c| c.query_row("SELECT count(*) FROM model_calls", [], |r| r.get(0))).expect("q").expect("row");
        assert_eq!(n, 1000);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        drop(j);
        // Reopening keeps the rows, and a reader can open it alongside.
        let j = Journal::open(&path).expect("reopen");
        let ro = open_read_only(&path).expect("ro");
        let n: i64 = ro.query_row("SELECT count(*) FROM model_calls", [], |r| r.get(0)).expect("row");
        assert_eq!(n, 1000);
        drop(j);
    }

    #[test]
    fn old_rows_are_pruned_and_newer_schemas_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("o.sqlite");
        let j = Journal::open(&path).expect("open");
        j.record(call("main", 1_000, 1));
        j.record(call("main", now_ms(), 1));
        j.flush(Duration::from_secs(5)).expect("flush");
        drop(j);
        let j = Journal::open(&path).expect("reopen");
        let n: i64 =
            j.query(|c| c.query_row("SELECT count(*) FROM model_calls", [], |r| r.get(0))).expect("q").expect("row");
        assert_eq!(n, 1);
        drop(j);
        std::thread::sleep(Duration::from_millis(50));
        let conn = Connection::open(&path).expect("raw");
        conn.pragma_update(None, "user_version", 99).expect("bump");
        drop(conn);
        let err = Journal::open(&path).expect_err("newer schema");
        assert!(err.to_string().contains("newer clawline"), "{err}");
    }
}
