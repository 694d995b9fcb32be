//! What clawline measures about itself, and where it keeps it.
//!
//! - [`metrics`]: counters, gauges and histograms kept in memory, read by `/metrics`.
//! - [`exposition`]: the Prometheus text format (version 0.0.4) those are written in.
//! - [`journal`]: `<state>/observability.sqlite`, one row per run, model call and tool call,
//!   written by a thread of its own so no run waits on it.
//! - [`usage`]: the report `clawline usage` prints, read from that file; [`audit`]: the audit
//!   log `clawline audit` prints.
//! - [`process`]: this process's resident memory and CPU time, from `/proc`.
//! - [`trace`]: W3C trace context and finished spans; [`otlp`]: their OTLP/HTTP JSON encoding
//!   and (feature `otel`) the exporter; [`otlp_metrics`]: the registry the same way;
//!   [`otlp_logs`]: log records the same way, or as JSON lines on stdout.
//!
//! Nothing here decides anything: budgets, limits and alerts live with the code they protect,
//! and read these numbers. Nothing here holds message text, tool arguments or secrets: only
//! names, counts, timings and outcomes.

pub mod audit;
pub mod exposition;
pub mod journal;
pub mod metrics;
pub mod otlp;
#[cfg(feature = "otel")]
pub mod otlp_batch;
pub mod otlp_logs;
pub mod otlp_metrics;
pub mod process;
pub mod trace;
pub mod usage;

mod error;

pub use error::ObserveError;
pub use journal::{AuditRow, Journal, ModelCallRow, Record, RunRow, ToolCallRow};
pub use metrics::Metrics;
