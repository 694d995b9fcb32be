//! Versioned schema migrations, tracked in `PRAGMA user_version`.
//!
//! Each entry in [`MIGRATIONS`] moves the schema one version up and runs in its own transaction
//! together with the version bump, so a crash mid-migration leaves the previous version intact.
//! Entries are never edited once released; changes are new entries.

use rusqlite::Connection;

use crate::error::StoreError;

/// Version `i + 1` is reached by running `MIGRATIONS[i]`.
const MIGRATIONS: &[&str] = &[
    // v1: sessions, transcripts, runs, secrets.
    r#"
    CREATE TABLE sessions (
        session_key   TEXT PRIMARY KEY,
        agent_id      TEXT NOT NULL,
        session_id    TEXT NOT NULL,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL,
        leaf_id       TEXT,
        next_seq      INTEGER NOT NULL DEFAULT 1,
        message_count INTEGER NOT NULL DEFAULT 0,
        input_tokens  INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        total_tokens  INTEGER NOT NULL DEFAULT 0,
        cost_usd      REAL NOT NULL DEFAULT 0,
        last_model    TEXT
    ) STRICT;
    CREATE INDEX sessions_updated ON sessions(updated_at);

    CREATE TABLE transcript_events (
        session_id TEXT NOT NULL,
        seq        INTEGER NOT NULL,
        record_id  TEXT NOT NULL,
        kind       TEXT NOT NULL,
        event_json TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (session_id, seq)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE runs (
        run_id          TEXT PRIMARY KEY,
        session_key     TEXT NOT NULL,
        session_id      TEXT NOT NULL,
        agent_id        TEXT NOT NULL,
        idempotency_key TEXT,
        status          TEXT NOT NULL,
        started_at      INTEGER NOT NULL,
        ended_at        INTEGER,
        result_json     TEXT,
        UNIQUE (session_key, idempotency_key)
    ) STRICT;
    CREATE INDEX runs_status ON runs(status);

    CREATE TABLE secrets (
        name       TEXT PRIMARY KEY,
        nonce      BLOB NOT NULL,
        ciphertext BLOB NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT;
    "#,
    // v2: paired devices, their tokens (hashes only), pending pairing requests; session labels and flags.
    r#"
    CREATE TABLE devices (
        device_id    TEXT PRIMARY KEY,
        public_key   TEXT NOT NULL,
        role         TEXT NOT NULL,
        scopes_json  TEXT NOT NULL,
        label        TEXT,
        client_id    TEXT,
        client_mode  TEXT,
        platform     TEXT,
        remote_ip    TEXT,
        paired_at    INTEGER NOT NULL,
        last_seen_at INTEGER
    ) STRICT;

    CREATE TABLE device_tokens (
        token_hash  TEXT PRIMARY KEY,
        device_id   TEXT NOT NULL REFERENCES devices(device_id) ON DELETE CASCADE,
        role        TEXT NOT NULL,
        scopes_json TEXT NOT NULL,
        issued_at   INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX device_tokens_device ON device_tokens(device_id, role);

    CREATE TABLE pairing_requests (
        request_id  TEXT PRIMARY KEY,
        device_id   TEXT NOT NULL,
        public_key  TEXT NOT NULL,
        role        TEXT NOT NULL,
        scopes_json TEXT NOT NULL,
        client_json TEXT NOT NULL,
        remote_ip   TEXT,
        reason      TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        UNIQUE (device_id, role)
    ) STRICT;

    ALTER TABLE sessions ADD COLUMN label TEXT;
    ALTER TABLE sessions ADD COLUMN flags_json TEXT;
    "#,
    // v3: model-provider auth profiles (credentials sealed like secrets).
    r#"
    CREATE TABLE auth_profiles (
        agent_id    TEXT NOT NULL,
        profile_id  TEXT NOT NULL,
        provider    TEXT NOT NULL,
        kind        TEXT NOT NULL,
        label       TEXT,
        expires_at  INTEGER,
        nonce       BLOB NOT NULL,
        ciphertext  BLOB NOT NULL,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (agent_id, profile_id)
    ) STRICT;
    "#,
    // v4: channels — the inbound journal and platform cursors, the outbound queue, DM pairing.
    r#"
    CREATE TABLE channel_inbound (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        channel      TEXT NOT NULL,
        account_id   TEXT NOT NULL,
        platform_id  TEXT NOT NULL,
        received_at  INTEGER NOT NULL,
        message_json TEXT NOT NULL,
        state        TEXT NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        session_key  TEXT,
        note         TEXT,
        updated_at   INTEGER NOT NULL,
        UNIQUE (channel, account_id, platform_id)
    ) STRICT;
    CREATE INDEX channel_inbound_open ON channel_inbound(state) WHERE state IN ('pending', 'running');

    CREATE TABLE channel_cursors (
        channel    TEXT NOT NULL,
        account_id TEXT NOT NULL,
        cursor     TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (channel, account_id)
    ) STRICT;

    CREATE TABLE channel_outbound (
        id                  INTEGER PRIMARY KEY AUTOINCREMENT,
        channel             TEXT NOT NULL,
        account_id          TEXT NOT NULL,
        idempotency_key     TEXT NOT NULL,
        target_json         TEXT NOT NULL,
        body_json           TEXT NOT NULL,
        state               TEXT NOT NULL,
        attempts            INTEGER NOT NULL DEFAULT 0,
        next_at             INTEGER NOT NULL,
        expires_at          INTEGER NOT NULL,
        last_error          TEXT,
        platform_message_id TEXT,
        created_at          INTEGER NOT NULL,
        updated_at          INTEGER NOT NULL,
        UNIQUE (channel, account_id, idempotency_key)
    ) STRICT;
    CREATE INDEX channel_outbound_due ON channel_outbound(channel, account_id, next_at) WHERE state = 'pending';

    CREATE TABLE channel_pairing_requests (
        channel    TEXT NOT NULL,
        account_id TEXT NOT NULL,
        sender_id  TEXT NOT NULL,
        code       TEXT NOT NULL,
        meta_json  TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (channel, account_id, sender_id)
    ) STRICT;
    CREATE INDEX channel_pairing_code ON channel_pairing_requests(channel, code);

    CREATE TABLE channel_allow_entries (
        channel    TEXT NOT NULL,
        account_id TEXT NOT NULL,
        entry      TEXT NOT NULL,
        owner      INTEGER NOT NULL DEFAULT 0,
        added_at   INTEGER NOT NULL,
        PRIMARY KEY (channel, account_id, entry)
    ) STRICT;
    "#,
    // v5: a group's messages kept as context are found by conversation, newest first.
    r#"
    CREATE INDEX channel_inbound_by_state ON channel_inbound(channel, account_id, state, id);
    "#,
    // v6: when a queued message was first handed to its platform without an answer recorded
    // (a crash, a cut connection), so the retry can ask the platform whether it arrived.
    r#"
    ALTER TABLE channel_outbound ADD COLUMN sending_since INTEGER;
    "#,
    // v7: the trace a queued message belongs to (the W3C `traceparent` of the span that
    // queued it), so its delivery joins the turn's trace.
    r#"
    ALTER TABLE channel_outbound ADD COLUMN traceparent TEXT;
    "#,
    // v8: exec approvals (one exact argv and cwd each) and the standing grants they created.
    r#"
    CREATE TABLE exec_approvals (
        id          TEXT PRIMARY KEY,
        agent_id    TEXT NOT NULL,
        session_key TEXT NOT NULL,
        run_id      TEXT NOT NULL,
        argv_json   TEXT NOT NULL,
        cwd         TEXT NOT NULL,
        status      TEXT NOT NULL CHECK (status IN ('pending', 'allowed', 'denied', 'expired', 'cancelled')),
        decision    TEXT CHECK (decision IN ('allow-once', 'allow-always', 'deny')),
        resolved_by TEXT,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL,
        resolved_at INTEGER
    ) STRICT;
    CREATE INDEX exec_approvals_pending ON exec_approvals(status, created_at);

    CREATE TABLE exec_grants (
        agent_id    TEXT NOT NULL,
        argv_json   TEXT NOT NULL,
        cwd         TEXT NOT NULL,
        approval_id TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (agent_id, argv_json, cwd)
    ) STRICT;
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`SCHEMA_VERSION`]. Returns the version it started from.
pub(crate) fn migrate(conn: &mut Connection, path: &str) -> Result<i64, StoreError> {
    migrate_to(conn, path, SCHEMA_VERSION)
}

pub(crate) fn migrate_to(conn: &mut Connection, path: &str, target: i64) -> Result<i64, StoreError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew { path: path.to_string(), found, supported: SCHEMA_VERSION });
    }
    for version in found..target {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(MIGRATIONS[version as usize])?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
        tracing::info!(version = version + 1, "applied database migration");
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(conn: &Connection) -> Vec<String> {
        let mut stmt = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn fresh_database_reaches_the_latest_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn, ":memory:").unwrap(), 0);
        let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        assert_eq!(
            tables(&conn),
            [
                "auth_profiles",
                "channel_allow_entries",
                "channel_cursors",
                "channel_inbound",
                "channel_outbound",
                "channel_pairing_requests",
                "device_tokens",
                "devices",
                "exec_approvals",
                "exec_grants",
                "pairing_requests",
                "runs",
                "secrets",
                "sessions",
                "sqlite_sequence",
                "transcript_events"
            ]
        );
        // Running again is a no-op.
        assert_eq!(migrate(&mut conn, ":memory:").unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn each_step_upgrades_from_the_one_before() {
        for start in 0..SCHEMA_VERSION {
            let mut conn = Connection::open_in_memory().unwrap();
            migrate_to(&mut conn, ":memory:", start).unwrap();
            assert_eq!(migrate(&mut conn, ":memory:").unwrap(), start);
            let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
            assert_eq!(v, SCHEMA_VERSION);
        }
    }

    #[test]
    fn newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        let e = migrate(&mut conn, "/x.sqlite").unwrap_err();
        assert!(e.to_string().contains("upgrade clawline"), "{e}");
    }
}
