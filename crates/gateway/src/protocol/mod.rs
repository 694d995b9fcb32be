//! OpenClaw's gateway protocol v4, as data: frames, errors, parameter schemas, scopes and the
//! device-identity signature. Nothing here does I/O; `ws/` runs connections and `methods/`
//! answers requests using these pieces.
//!
//! The wire format is OpenClaw's (what the `openclaw` 2026.9.x clients speak); the types here
//! exist so the rest of the gateway never builds or reads frames by hand. Internal types
//! (`RunEvent`, store rows) are converted into these shapes by the methods, never the other way.

pub mod device;
pub mod error;
pub mod frame;
pub mod schema;
pub mod scopes;

/// The protocol version this gateway speaks.
pub const PROTOCOL_VERSION: u64 = 4;
/// Probe and node clients may still connect with v3.
pub const MIN_LEGACY_PROTOCOL_VERSION: u64 = 3;
/// Largest frame accepted before `connect` succeeds.
pub const MAX_PREAUTH_FRAME_BYTES: usize = 64 * 1024;
/// Largest frame accepted after `hello-ok` (advertised as `policy.maxPayload`).
pub const MAX_PAYLOAD_BYTES: usize = 25 * 1024 * 1024;
/// Most bytes queued for one slow client before it is disconnected (`policy.maxBufferedBytes`).
pub const MAX_BUFFERED_BYTES: usize = 50 * 1024 * 1024;
/// How often `tick` events are sent (`policy.tickIntervalMs`).
pub const TICK_INTERVAL_MS: u64 = 30_000;
/// A connection that has not completed `connect` within this time is closed.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 15_000;
