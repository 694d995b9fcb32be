//! What every request handler shares.

use std::time::Instant;

use clawline_agent::Runtime;

use crate::auth::{Credentials, FailureLimiter};

/// Shared state of the HTTP server.
pub struct AppState {
    pub runtime: Runtime,
    pub credentials: Credentials,
    pub limiter: FailureLimiter,
    pub started: Instant,
    /// The port actually bound (differs from the config when it asked for 0).
    pub port: u16,
}

impl AppState {
    pub fn new(runtime: Runtime, credentials: Credentials, port: u16) -> Self {
        let rl = runtime.config().gateway.rate_limit.clone();
        AppState { runtime, credentials, limiter: FailureLimiter::new(rl), started: Instant::now(), port }
    }
}
