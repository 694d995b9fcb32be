//! Signing in to model providers with OAuth 2.0: PKCE authorization-code flow with a loopback
//! redirect or a pasted code, device flow, and token refresh.
//!
//! - [`pkce`]: verifiers, S256 challenges, `state`.
//! - [`code_flow`]: the authorize URL, the code exchange, refresh, parsing pasted callbacks.
//! - [`loopback`]: the 127.0.0.1 listener the browser is sent back to.
//! - [`device_flow`]: RFC 8628, for providers whose sign-in is a code typed elsewhere.
//! - [`wire`]: encodings, token responses and errors shared by the flows.
//! - [`providers`]: which provider signs in how (endpoints, client ids, scopes).
//!
//! Nothing here stores tokens: callers keep them encrypted (auth profiles).

pub mod code_flow;
pub mod device_flow;
pub mod loopback;
pub mod pkce;
pub mod providers;
pub mod wire;

pub use code_flow::{CodeFlow, Pending, parse_pasted};
pub use device_flow::{DeviceFlow, DeviceStart};
pub use wire::{BodyFormat, Grant, OAuthError};
