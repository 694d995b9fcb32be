//! The hub: every live connection, and the one way to send an event to many of them.
//!
//! Broadcasts are filtered per connection by scope (events about conversations need
//! `operator.read`, presence too; pairing events need `operator.pairing`; `tick` and
//! `shutdown` go to everyone) and by subscription where the event is opt-in. The payload is serialized
//! once per broadcast, not once per connection. Presence (who is connected) is derived from the
//! registry, with a version counter clients use to order snapshots.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::conn::Conn;
use crate::protocol::frame::{Event, StateVersion};
use crate::protocol::scopes;

/// Who may receive an event, by its name. Unknown names are delivered to nobody.
pub fn required_scope(event: &str) -> Option<Option<&'static str>> {
    match event {
        "tick" | "shutdown" => Some(None),
        "presence" | "health" | "chat" | "agent" | "sessions.changed" | "session.message" | "heartbeat" | "cron" => {
            Some(Some(scopes::READ))
        }
        e if e.starts_with("device.pair.") || e.starts_with("node.pair.") => Some(Some(scopes::PAIRING)),
        "exec.approval.requested" | "exec.approval.resolved" => Some(Some(scopes::APPROVALS)),
        _ => None,
    }
}

/// Live connections.
#[derive(Default)]
pub struct Hub {
    conns: Mutex<HashMap<String, Arc<Conn>>>,
    presence_version: AtomicU64,
    health_version: AtomicU64,
    /// Upgraded sockets that have not completed `connect` yet, in all and per address.
    pending: Arc<Pending>,
}

#[derive(Default)]
struct Pending {
    total: AtomicUsize,
    by_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Gives back a pending-handshake slot when dropped.
pub struct PendingGuard {
    pending: Arc<Pending>,
    ip: IpAddr,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.pending.total.fetch_sub(1, Ordering::AcqRel);
        let mut by_ip = self.pending.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                by_ip.remove(&self.ip);
            }
        }
    }
}

impl Hub {
    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a socket waiting for its handshake, unless `per_ip` from the same address are
    /// already waiting, or `limit` in all. This machine's own loopback address (`127.0.0.1`,
    /// `::1`, connecting directly) is exempt from the global limit, so a flood from elsewhere
    /// can never lock the local CLI or browser out; it still has its per-address limit.
    pub fn try_pending(&self, ip: IpAddr, local: bool, limit: usize, per_ip: usize) -> Option<PendingGuard> {
        let own = local
            && (ip == IpAddr::from(std::net::Ipv4Addr::LOCALHOST) || ip == IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
        let mut by_ip = self.pending.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        let mine = by_ip.get(&ip).copied().unwrap_or(0);
        if mine >= per_ip || (!own && self.pending.total.load(Ordering::Acquire) >= limit) {
            return None;
        }
        by_ip.insert(ip, mine + 1);
        self.pending.total.fetch_add(1, Ordering::AcqRel);
        Some(PendingGuard { pending: self.pending.clone(), ip })
    }

    #[cfg(test)]
    fn pending(&self) -> usize {
        self.pending.total.load(Ordering::Acquire)
    }

    pub fn len(&self) -> usize {
        self.conns().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn all(&self) -> Vec<Arc<Conn>> {
        self.conns().values().cloned().collect()
    }

    pub fn state_version(&self) -> StateVersion {
        StateVersion {
            presence: self.presence_version.load(Ordering::Acquire),
            health: self.health_version.load(Ordering::Acquire),
        }
    }

    /// Adds a connection unless `max` are already registered; `first` runs before any broadcast
    /// can reach it (to queue `hello-ok`). `announce` tells everyone the presence changed
    /// (false for one-off CLI calls, which do not show in presence).
    pub fn try_register(
        &self,
        conn: Arc<Conn>,
        max: usize,
        announce: bool,
        self_entry: &Value,
        first: impl FnOnce(),
    ) -> bool {
        {
            let mut conns = self.conns();
            if conns.len() >= max {
                return false;
            }
            first();
            conns.insert(conn.id.clone(), conn);
        }
        if announce {
            self.presence_changed(self_entry);
        }
        true
    }

    /// Removes a connection; `announce` tells everyone the presence changed.
    pub fn unregister(&self, id: &str, self_entry: &Value, announce: bool) {
        if self.conns().remove(id).is_some() && announce {
            self.presence_changed(self_entry);
        }
    }

    fn presence_changed(&self, self_entry: &Value) {
        self.presence_version.fetch_add(1, Ordering::AcqRel);
        let event = Event::new("presence", &json!({"presence": self.presence(self_entry)}))
            .with_state_version(self.state_version());
        self.broadcast(&event, |_| true);
    }

    /// Bumps the health version, for a `health` event about to be sent.
    pub fn next_health_version(&self) -> StateVersion {
        self.health_version.fetch_add(1, Ordering::AcqRel);
        self.state_version()
    }

    /// The presence list: the gateway itself first, then each connection.
    pub fn presence(&self, self_entry: &Value) -> Vec<Value> {
        let mut list = vec![self_entry.clone()];
        let mut conns: Vec<Arc<Conn>> =
            self.all().into_iter().filter(|c| !matches!(c.client.mode.as_str(), "cli" | "backend" | "probe")).collect();
        conns.sort_by_key(|c| c.connected_at);
        for c in conns {
            let mut e = json!({
                "ts": c.connected_at,
                "onlineSince": c.connected_at,
                "mode": c.client.mode,
                "reason": "connect",
                "platform": c.client.platform,
                "version": c.client.version,
                "roles": [c.role.as_str()],
                "scopes": c.scopes,
                "text": format!("{} ({})", c.client.display_name.as_deref().unwrap_or(&c.client.id), c.client.mode),
            });
            if let Some(d) = &c.device_id {
                e["deviceId"] = json!(d);
            }
            if let Some(i) = &c.client.instance_id {
                e["instanceId"] = json!(i);
            }
            if let Some(f) = &c.client.device_family {
                e["deviceFamily"] = json!(f);
            }
            list.push(e);
        }
        list
    }

    /// Sends `event` to every connection allowed to see it for which `wants` is true.
    pub fn broadcast(&self, event: &Event, wants: impl Fn(&Conn) -> bool) {
        let Some(scope) = required_scope(&event.name) else {
            tracing::debug!(event = %event.name, "event with no delivery rule dropped");
            return;
        };
        for conn in self.all() {
            if scope.is_none_or(|s| conn.allows(s)) && wants(&conn) {
                conn.send(event.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_events_fail_closed() {
        assert_eq!(required_scope("tick"), Some(None));
        assert_eq!(required_scope("chat"), Some(Some(scopes::READ)));
        assert_eq!(required_scope("device.pair.requested"), Some(Some(scopes::PAIRING)));
        assert_eq!(required_scope("plugin.secret"), None);
    }

    #[test]
    fn pending_handshakes_are_bounded_in_all_and_per_address() {
        let hub = Hub::default();
        let (x, y, z): (IpAddr, IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap(), "192.0.2.3".parse().unwrap());
        let a = hub.try_pending(x, false, 3, 2).unwrap();
        let _b = hub.try_pending(x, false, 3, 2).unwrap();
        assert!(hub.try_pending(x, false, 3, 2).is_none(), "per address");
        let _c = hub.try_pending(y, false, 3, 2).unwrap();
        assert!(hub.try_pending(z, false, 3, 2).is_none(), "in all");
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let d = hub.try_pending(lo, true, 3, 2).expect("this machine's own CLI is not held back by others");
        assert!(hub.try_pending("127.0.0.9".parse().unwrap(), true, 3, 2).is_none(), "other loopback addresses count");
        drop(a);
        assert!(hub.try_pending(x, false, 3, 2).is_none(), "the local one counts towards the total");
        drop(d);
        let _e = hub.try_pending(x, false, 3, 2).expect("a slot came free");
        assert_eq!(hub.pending(), 3, "the guards give their slots back when dropped");
    }
}
