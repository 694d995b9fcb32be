//! clawline's configuration: the file's schema, how it is loaded, and the resolved view the rest
//! of the system reads.
//!
//! The file is JSON5 (`<state>/clawline.json`) with OpenClaw's key names where the concept is the
//! same (`gateway.*`, `agents.*`, `models.providers.*`, `tools.*`, `logging.*`). Loading goes
//! text → [`crate::json5`] tree → `${ENV}` substitution → typed [`schema::ConfigFile`] →
//! [`Config`] (defaults applied, secrets resolved, providers found in the environment added).
//! Every failure is a [`ConfigError`] naming the file, line, column and key path, with a hint.
//!
//! Nothing here reads files or the environment directly: [`LoadContext`] supplies both.

pub mod channels;
mod error;
mod load;
pub mod memory;
pub mod preset;
pub mod redact;
mod resolve;
pub mod schema;
mod substitute;
pub mod template;
pub mod tool_policy;

pub use error::{ConfigError, ConfigErrors};
pub use load::{LoadContext, Loaded, StoredSecret, load, secret_paths};
pub use resolve::{
    AgentSettings, ApiKind, AuthMode, AwsCredentials, BudgetSettings, Config, DEFAULT_AGENT_ID, DEFAULT_DAILY_COST_USD,
    DEFAULT_DAILY_TOKENS, DEFAULT_HTTP_TOOLS_DENY, DEFAULT_PORT, DEFAULT_SAFE_BINS, ExecSettings, GatewaySettings,
    HookSettings, LogSettings, LoopDetection, ModelRef, OtelSettings, ProviderSettings, RateLimitSettings,
    ToolSettings, WebFetchSettings, provider_key_var,
};
