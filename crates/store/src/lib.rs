//! clawline's persistent state.
//!
//! One SQLite database (bundled SQLite, WAL, `busy_timeout=5000`) owned by one dedicated thread:
//! every query runs there, so nothing blocks the async runtime and there is exactly one writer.
//! It holds sessions, their transcripts (OpenClaw record shapes, appended atomically), runs
//! (with idempotency keys) and secrets encrypted with a master key that lives outside the
//! database.
//!
//! Invariants: a transcript append is one transaction (a crash leaves the whole batch or none of
//! it); a user message and the run it starts are written together; secrets are stored only as
//! AES-256-GCM ciphertext bound to their name.

mod auth_profiles;
mod changes;
mod channel_inbound;
mod channel_outbound;
mod channel_pairing;
mod crypto;
mod db;
mod devices;
mod error;
mod exec_approvals;
mod key_source;
pub mod keyring;
mod migrations;
mod paths;
mod runs;
mod secrets;
mod sessions;
mod transcript_digests;

pub use auth_profiles::{ALL_AGENTS, AuthProfileRow};
pub use changes::{Appended, Change, SessionChange, StoredRecord};
pub use channel_inbound::{Accepted, InboundRow, InboundState, NewInbound};
pub use channel_outbound::{NewOutbound, OutboundRow, OutboundState};
pub use channel_pairing::{
    AllowEntry, ChannelPairingRequest, PAIRING_ALPHABET, PAIRING_CODE_LEN, PairingAsk, new_pairing_code,
};
pub use crypto::{MasterKey, random_hex};
pub use db::Store;
pub use devices::{DeviceRow, DeviceTokenRow, PairingOutcome, PairingRequest};
pub use error::StoreError;
pub use exec_approvals::{Decided, ExecApprovalRow, ExecGrantRow};
pub use key_source::{KeySource, KeyringChoice, keyring_marker, resolve as resolve_master_key};
pub use migrations::SCHEMA_VERSION;
pub use paths::{RunLock, StatePaths, ensure_private_dir, write_private_file};
pub use runs::{BeginTurn, RunRow, RunStatus, TurnStart};
pub use secrets::read_secret_at;
pub use sessions::{SessionPage, SessionPatch, SessionQuery, SessionRow, UsageDelta};
pub use transcript_digests::TranscriptDigest;

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
