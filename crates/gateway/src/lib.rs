//! The gateway: everything clawline serves on its one port.
//!
//! | path | auth | what |
//! |---|---|---|
//! | `GET /` with `Upgrade: websocket` | `connect` (token, password, device) | OpenClaw's gateway protocol v4 (`ws/`, `methods/`) |
//! | `GET /healthz`, `/health` | none | liveness: the process answers |
//! | `GET /readyz`, `/ready` | none | readiness: the store answers; 503 otherwise |
//! | `GET /` (+ `/app.js`, `/app.css`, `/favicon.svg`) | none (the page asks for the token) | web chat |
//! | `GET /v1/models` | Bearer | agents as OpenAI "models" |
//! | `POST /v1/chat/completions` | Bearer | OpenAI-compatible chat, streaming or not |
//! | `POST /api/chat` | Bearer | one turn, streamed as run events (SSE) |
//! | `GET /api/sessions`, `/api/sessions/history` | Bearer | session list and transcripts |
//! | `POST /api/webchat/messages`, `GET /api/webchat/events` | Bearer | the web chat page's channel (post, listen) |
//! | `GET /api/channels` | Bearer | `channels.status` |
//!
//! Every request passes the same checks first (`guard.rs`): Host (DNS-rebinding defence on
//! loopback binds), Origin (same origin or `gateway.controlUi.allowedOrigins`), then the Bearer
//! token compared in constant time, with failed attempts rate limited per client address.
//! Bodies are read with a size limit and a time limit. Errors are OpenAI-style JSON:
//! `{"error": {"message", "type", "code"}}`.
//!
//! This crate is the only one that knows HTTP shapes; it converts agent [`RunEvent`]s
//! (clawline_agent::RunEvent) into them and never the other way round.

mod auth;
mod body;
mod channel_files;
mod channel_responder;
mod client_addr;
mod error;
mod feed;
mod guard;
mod limits;
mod listener;
mod methods;
pub mod protocol;
mod routes;
mod run_events;
mod runs;
mod server;
mod state;
mod tool_invoke;
mod turn_start;
mod views;
mod wake;
mod ws;

pub use auth::Credentials;
pub use channel_responder::AgentResponder;
pub use methods::{EVENTS, surface as protocol_surface};
pub use routes::control_ui::ControlUi;
pub use server::{router, serve};
pub use state::{AppState, ConfigCheck, ConfigFile, WsLimits};
