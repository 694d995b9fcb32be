//! The agent: turns a message into a run, and a run into model calls, tool calls and
//! transcript records.
//!
//! - [`Runtime`] owns what runs share: the resolved config, the store, the HTTP client and the
//!   session lanes. [`Runtime::start_turn`] persists the user message, then spawns the run and
//!   hands back a stream of [`RunEvent`]s.
//! - [`lanes`] guarantees one run per session key at a time, with no global lock.
//! - [`context`] builds the system prompt (workspace bootstrap files, capped) and the history
//!   (repairing tool calls a crash left unanswered).
//! - [`run`] is the loop: model call → tools → model call …, bounded by `maxTurns`, the daily
//!   [`budget`], the tool-loop guard ([`loop_guard`]) and a timeout.
//! - [`observer`] is where runs report what they did: metrics, `observability.sqlite`, the
//!   budget ledger.
//! - [`tools`] are the built-in tools: `read`, `write`, `edit`, `ls`, `exec`.
//!
//! The agent knows nothing about HTTP, WebSockets or chat platforms; callers turn
//! [`RunEvent`]s into whatever their clients speak.

pub mod approvals;
pub mod auth_profiles;
pub mod budget;
pub mod context;
mod error;
mod events;
pub mod lanes;
pub mod loop_guard;
pub mod memory;
pub mod memory_follow;
pub mod memory_transcripts;
pub mod oauth_refresh;
pub mod observer;
pub mod routes;
mod run;
mod runtime;
pub mod tools;
pub mod workspace;

pub use error::TurnError;
pub use events::RunEvent;
pub use lanes::LaneGuard;
pub use runtime::{RunHandle, Runtime, TurnRequest, TurnStart};
