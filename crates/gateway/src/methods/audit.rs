//! Which protocol calls are privileged enough for the audit log, and the row each leaves.
//!
//! A row names the caller (`ws:<client id>`, with its device id when it has one), the method,
//! what it acted on (only the identifying parameters: request, device and account ids, the
//! channel and pairing code, the session key, the role; never a config body or a secret) and
//! the outcome (`ok`, or the error code). Refusals are audited too: a denied approval attempt
//! is as interesting as a granted one.

use serde_json::Value;

use super::Reply;
use crate::state::AppState;
use crate::ws::conn::Conn;

/// Methods whose calls are recorded.
const AUDITED: &[&str] = &[
    "config.set",
    "config.patch",
    "config.apply",
    "device.pair.approve",
    "device.pair.reject",
    "device.pair.remove",
    "device.pair.rename",
    "device.token.revoke",
    "channels.pairing.approve",
    "channels.pairing.dismiss",
    "channels.start",
    "channels.stop",
    "channels.logout",
    "sessions.delete",
    "sessions.reset",
    "tools.invoke",
    "exec.approval.resolve",
];

/// Parameters that identify what a call acted on.
const TARGET_KEYS: &[&str] = &[
    "requestId",
    "deviceId",
    "role",
    "channel",
    "accountId",
    "code",
    "key",
    "sessionKey",
    "name",
    "tool",
    "id",
    "decision",
];

pub(super) fn is_audited(method: &str) -> bool {
    AUDITED.contains(&method)
}

/// `key=value` for the identifying parameters present (strings and numbers, cut at 100 characters each).
pub(super) fn target(params: &Value) -> String {
    let mut parts = Vec::new();
    for k in TARGET_KEYS {
        let v = match params.get(*k) {
            Some(Value::String(s)) => s.chars().take(100).collect::<String>(),
            Some(Value::Number(n)) => n.to_string(),
            _ => continue,
        };
        parts.push(format!("{k}={v}"));
    }
    parts.join(" ")
}

pub(super) async fn record(state: &AppState, conn: &Conn, method: &str, target: &str, reply: &Reply) {
    let actor = match &conn.device_id {
        Some(d) => format!("ws:{} device {d}", conn.client.id),
        None => format!("ws:{} from {}", conn.client.id, conn.remote),
    };
    let outcome = match reply {
        Ok(_) => "ok".to_string(),
        Err(e) => {
            let code = serde_json::to_value(e.code).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
            format!("{code}: {}", e.message.chars().take(200).collect::<String>())
        }
    };
    let row = clawline_observe::AuditRow::now(actor, method, target, outcome);
    state.runtime.observer().record(clawline_observe::Record::Audit(row)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn targets_name_ids_not_bodies() {
        let t =
            target(&json!({"requestId": "r-1", "raw": "{ gateway: { auth: { token: 'x' } } }", "code": "ABCD2345"}));
        assert_eq!(t, "requestId=r-1 code=ABCD2345");
        assert_eq!(target(&json!({"raw": "secret"})), "");
        assert!(is_audited("config.apply") && !is_audited("chat.send"));
    }
}
