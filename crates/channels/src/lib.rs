//! clawline's channel layer.
//!
//! A channel connects one chat platform to the gateway. Every platform adapter produces
//! normalized [`inbound`] messages and consumes [`outbound`] deliveries; it knows nothing about
//! agents, models or sessions. Around the adapters sit the parts every platform shares: the
//! inbound journal (persist before the platform's cursor moves), the access gate (DM and group
//! policies, pairing), the outbound queue (idempotent, retried, dead-lettered), the liveness
//! watchdog, and text formatting per platform.

pub mod format;
