//! One authenticated WebSocket connection: who it is, what it may do, what it listens to.
//!
//! Created when `connect` succeeds and registered with the hub; method handlers get it to check
//! scopes and to answer, broadcasters to decide whether an event is for it. Everything a
//! handler may change after the handshake (subscriptions) sits behind a small mutex; identity
//! and grants never change for the life of the connection.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::AtomicU32;

use serde::Serialize;

use super::outbound::Outbound;
use crate::protocol::error::RpcError;
use crate::protocol::frame::{self, Event};
use crate::protocol::scopes::{self, Role};

/// What the client said about itself in `connect.client`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientInfo {
    pub id: String,
    pub mode: String,
    pub version: String,
    pub platform: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_family: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
}

/// What a connection asked to hear about.
#[derive(Debug, Default)]
pub struct Subscriptions {
    /// `sessions.subscribe`: `sessions.changed` for every session.
    pub sessions: bool,
    /// `sessions.messages.subscribe`: `session.message` for these session keys.
    pub messages: HashSet<String>,
}

/// An authenticated connection.
pub struct Conn {
    pub id: String,
    pub role: Role,
    pub scopes: Vec<String>,
    pub client: ClientInfo,
    pub caps: Vec<String>,
    pub device_id: Option<String>,
    pub remote: IpAddr,
    pub connected_at: i64,
    pub subs: Mutex<Subscriptions>,
    pub out: Outbound,
    /// `unauthorized role` answers in a row (too many closes the connection).
    pub unauthorized_streak: AtomicU32,
}

impl Conn {
    pub fn allows(&self, scope: &str) -> bool {
        scopes::satisfied(scope, &self.scopes)
    }

    pub fn has_cap(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c == cap)
    }

    pub fn subs(&self) -> std::sync::MutexGuard<'_, Subscriptions> {
        self.subs.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn respond_ok<T: Serialize>(&self, id: &str, payload: &T) {
        self.out.text(frame::response_ok(id, payload));
    }

    /// Answers, and returns a receiver that resolves once the answer is on the socket.
    pub fn respond_ok_notify<T: Serialize>(&self, id: &str, payload: &T) -> tokio::sync::oneshot::Receiver<()> {
        self.out.text_notify(frame::response_ok(id, payload))
    }

    pub fn respond_err(&self, id: &str, error: &RpcError) {
        self.out.text(frame::response_err(id, error));
    }

    pub fn send(&self, event: Event) {
        self.out.event(event);
    }
}
