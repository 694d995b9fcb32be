//! What every request handler and every WebSocket connection shares.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clawline_agent::Runtime;
use tokio_util::sync::CancellationToken;

use crate::auth::{Credentials, FailureLimiter};
use crate::limits::MethodLimiter;
use crate::runs::RunTracker;
use crate::ws::hub::Hub;

/// Checks a config text; `Ok(warnings)` when it is valid, `Err(problems)` (each with file, line,
/// column and key) when not. Supplied by the binary, which knows where secrets and the
/// environment come from.
pub type ConfigCheck = Arc<dyn Fn(&str) -> Result<Vec<String>, Vec<String>> + Send + Sync>;

/// The config file, for the `config.*` methods.
#[derive(Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub check: ConfigCheck,
}

/// Limits on WebSocket connections.
#[derive(Debug, Clone)]
pub struct WsLimits {
    /// Sockets from other machines that may wait for their handshake at once; more are
    /// refused with 503 (a few KiB each, so this bounds a remote flood's memory).
    pub max_pending: usize,
    /// The same, per client address.
    pub max_pending_per_ip: usize,
    /// Authenticated connections at once.
    pub max_connections: usize,
    /// Requests one connection may have in flight.
    pub max_in_flight: usize,
    pub handshake_timeout_ms: u64,
    pub tick_interval_ms: u64,
    pub max_buffered_bytes: usize,
    pub max_payload_bytes: usize,
}

impl Default for WsLimits {
    fn default() -> Self {
        use crate::protocol::*;
        WsLimits {
            max_pending: 2048,
            max_pending_per_ip: 32,
            max_connections: 1024,
            max_in_flight: 32,
            handshake_timeout_ms: HANDSHAKE_TIMEOUT_MS,
            tick_interval_ms: TICK_INTERVAL_MS,
            max_buffered_bytes: MAX_BUFFERED_BYTES,
            max_payload_bytes: MAX_PAYLOAD_BYTES,
        }
    }
}

/// Shared state of the server.
pub struct AppState {
    pub runtime: Runtime,
    pub credentials: Credentials,
    /// Failed-auth lockout for HTTP Bearer and WebSocket connects.
    pub limiter: FailureLimiter,
    /// Control-plane write limits per method and client.
    pub method_limiter: MethodLimiter,
    pub started: Instant,
    pub started_ms: i64,
    /// A fresh id per process start (`hello-ok.server.bootId`).
    pub boot_id: String,
    /// The port actually bound (differs from the config when it asked for 0).
    pub port: u16,
    pub hub: Hub,
    pub runs: RunTracker,
    pub ws: WsLimits,
    pub config_file: Option<ConfigFile>,
    /// A Control UI build served at `/` instead of the built-in web chat.
    pub control_ui: Option<crate::routes::control_ui::ControlUi>,
    /// Cancelled when the gateway stops: connections say goodbye and close.
    pub shutdown: CancellationToken,
    /// Key for `config.get` hashes (per process; clients refetch after a restart). Made on
    /// first use: the crypto library's RNG costs tens of milliseconds to start.
    hash_key: std::sync::OnceLock<[u8; 32]>,
    /// The last health snapshot and when it was taken (`health` answers from it for a second,
    /// so a client calling `health` in a loop cannot flood everyone with `health` events).
    pub health_cache: std::sync::Mutex<Option<(Instant, serde_json::Value)>>,
    /// Recent direct tool calls, for idempotency keys.
    pub recent_tools: crate::tool_invoke::Recent,
    /// Failed hook authentications (20 per minute, then a minute's lockout; loopback too).
    pub hook_limiter: FailureLimiter,
    /// This machine's name, read once (presence shows it).
    hostname: std::sync::OnceLock<String>,
    /// The chat platforms this gateway is connected to (none when no channel is configured).
    pub channels: Option<clawline_channels::Channels>,
}

impl AppState {
    pub fn new(runtime: Runtime, credentials: Credentials, port: u16) -> Self {
        let rl = runtime.config().gateway.rate_limit.clone();
        AppState {
            runtime,
            credentials,
            limiter: FailureLimiter::new(rl),
            method_limiter: MethodLimiter::default(),
            started: Instant::now(),
            started_ms: clawline_store::now_ms(),
            boot_id: uuid::Uuid::new_v4().to_string(),
            port,
            hub: Hub::default(),
            runs: RunTracker::default(),
            ws: WsLimits::default(),
            config_file: None,
            control_ui: None,
            shutdown: CancellationToken::new(),
            hash_key: std::sync::OnceLock::new(),
            health_cache: std::sync::Mutex::new(None),
            recent_tools: Default::default(),
            hook_limiter: FailureLimiter::new(clawline_core::config::RateLimitSettings {
                max_attempts: 20,
                window_ms: 60_000,
                lockout_ms: 60_000,
                exempt_loopback: false,
            }),
            hostname: std::sync::OnceLock::new(),
            channels: None,
        }
    }

    pub fn with_channels(mut self, channels: clawline_channels::Channels) -> Self {
        self.channels = Some(channels);
        self
    }

    pub fn with_config_file(mut self, file: ConfigFile) -> Self {
        self.config_file = Some(file);
        self
    }

    pub fn with_control_ui(mut self, ui: crate::routes::control_ui::ControlUi) -> Self {
        self.control_ui = Some(ui);
        self
    }

    pub fn with_ws_limits(mut self, limits: WsLimits) -> Self {
        self.ws = limits;
        self
    }

    /// The key for `config.get` hashes.
    pub fn hash_key(&self) -> &[u8; 32] {
        self.hash_key.get_or_init(|| {
            let mut key = [0u8; 32];
            // A failed RNG leaves a zero key: hashes still detect concurrent edits, they are just guessable.
            let _ = aws_lc_rs::rand::fill(&mut key);
            key
        })
    }

    /// This machine's name (`/etc/hostname`, else `localhost`), read on first use.
    pub fn hostname(&self) -> &str {
        self.hostname.get_or_init(|| {
            std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".into())
        })
    }

    pub fn uptime_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}
