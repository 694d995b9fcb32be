//! clawline's channel layer.
//!
//! A channel connects one chat platform to the gateway. Every platform adapter produces
//! normalized [`inbound`] messages and consumes [`outbound`] deliveries; it knows nothing about
//! agents, models or sessions. Around the adapters sit the parts every platform shares: the
//! inbound journal (persist before the platform's cursor moves), the access gate (DM and group
//! policies, pairing), the outbound queue (idempotent, retried, dead-lettered), the liveness
//! watchdog, and text formatting per platform.

pub mod format;

pub mod channel;
mod delivery;
#[cfg(feature = "discord")]
pub mod discord;
mod dispatch;
pub mod gate;
pub mod health;
#[cfg(feature = "irc")]
pub mod irc;
pub mod link;
mod manager;
#[cfg(feature = "matrix")]
pub mod matrix;
pub mod media;
pub mod message;
pub mod multipart;
pub mod pacing;
pub mod pairing;
mod preview;
pub mod responder;
#[cfg(feature = "slack")]
pub mod slack;
mod spans;
pub mod supervisor;
#[cfg(feature = "telegram")]
pub mod telegram;
#[cfg(feature = "tls")]
mod tls;
pub mod webchat;

pub use channel::{Capabilities, Channel, ConnectionError, SendError, Sent, WebhookReply};
pub use dispatch::{MAX_ATTEMPTS, OUTBOUND_TTL_MS, PAIRING_MAX_PENDING, PAIRING_TTL_MS, agent_text};
pub use health::{AccountStatus, ConnState};
pub use manager::{BuildError, ChannelReport, Channels, ControlError, ProbeReport};
pub use media::Media;
pub use message::{Attachment, ButtonPress, InboundMessage, OutboundBody, ReplyRef, Sender, Target};
pub use responder::{Ask, InboundFile, Progress, Reply, Responder};
pub use supervisor::Backoff;
