//! Paired devices, the tokens issued to them, and pairing requests waiting for approval.
//!
//! A device is identified by its Ed25519 public key (the id is derived from it by the gateway).
//! Pairing approves a device for a role and a set of scopes. After that the gateway issues a
//! device token the client may present instead of the shared secret; only the token's SHA-256
//! is stored, so a copy of the database does not let anyone in. Issuing a new token for a
//! device and role replaces the old one.

use aws_lc_rs::digest;
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use crate::crypto::random_hex;
use crate::db::Store;
use crate::error::StoreError;
use crate::now_ms;

/// A paired device.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRow {
    pub device_id: String,
    /// base64url of the raw 32-byte Ed25519 key.
    pub public_key: String,
    pub role: String,
    pub scopes: Vec<String>,
    pub label: Option<String>,
    pub client_id: Option<String>,
    pub client_mode: Option<String>,
    pub platform: Option<String>,
    pub remote_ip: Option<String>,
    pub paired_at: i64,
    pub last_seen_at: Option<i64>,
}

/// What a valid device token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceTokenRow {
    pub device_id: String,
    pub role: String,
    pub scopes: Vec<String>,
    pub issued_at: i64,
}

/// A device waiting for someone to approve it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PairingRequest {
    pub request_id: String,
    pub device_id: String,
    pub public_key: String,
    pub role: String,
    pub scopes: Vec<String>,
    /// What the client said about itself (id, mode, platform, displayName, …).
    pub client: serde_json::Value,
    pub remote_ip: Option<String>,
    /// `not-paired`, `role-upgrade` or `scope-upgrade`.
    pub reason: String,
    pub created_at: i64,
}

/// Pending requests older than this are dropped.
pub const PAIRING_REQUEST_TTL_MS: i64 = 5 * 60 * 1000;

/// What [`Store::request_pairing`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct PairingOutcome {
    /// The live request for the device and role.
    pub request: PairingRequest,
    /// `false` when a live request with the same scopes already existed (a client retrying).
    pub created: bool,
    /// A request for the same device and role with other scopes, dropped for this one.
    pub replaced: Option<String>,
}

fn token_hash(token: &str) -> String {
    digest::digest(&digest::SHA256, token.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn scopes_from(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

fn scopes_json(scopes: &[String]) -> String {
    serde_json::to_string(scopes).unwrap_or_else(|_| "[]".into())
}

const DEVICE_COLUMNS: &str = "device_id, public_key, role, scopes_json, label, client_id, client_mode, platform, \
     remote_ip, paired_at, last_seen_at";

fn device_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRow> {
    Ok(DeviceRow {
        device_id: r.get(0)?,
        public_key: r.get(1)?,
        role: r.get(2)?,
        scopes: scopes_from(&r.get::<_, String>(3)?),
        label: r.get(4)?,
        client_id: r.get(5)?,
        client_mode: r.get(6)?,
        platform: r.get(7)?,
        remote_ip: r.get(8)?,
        paired_at: r.get(9)?,
        last_seen_at: r.get(10)?,
    })
}

const REQUEST_COLUMNS: &str =
    "request_id, device_id, public_key, role, scopes_json, client_json, remote_ip, reason, created_at";

fn request_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PairingRequest> {
    Ok(PairingRequest {
        request_id: r.get(0)?,
        device_id: r.get(1)?,
        public_key: r.get(2)?,
        role: r.get(3)?,
        scopes: scopes_from(&r.get::<_, String>(4)?),
        client: serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or_default(),
        remote_ip: r.get(6)?,
        reason: r.get(7)?,
        created_at: r.get(8)?,
    })
}

fn pair_tx(tx: &rusqlite::Transaction<'_>, d: &DeviceRow) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO devices (device_id, public_key, role, scopes_json, label, client_id, client_mode, platform, \
         remote_ip, paired_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
         ON CONFLICT(device_id) DO UPDATE SET public_key = excluded.public_key, role = excluded.role, \
         scopes_json = excluded.scopes_json, label = COALESCE(excluded.label, devices.label), \
         client_id = excluded.client_id, client_mode = excluded.client_mode, platform = excluded.platform, \
         remote_ip = excluded.remote_ip",
        params![
            d.device_id,
            d.public_key,
            d.role,
            scopes_json(&d.scopes),
            d.label,
            d.client_id,
            d.client_mode,
            d.platform,
            d.remote_ip,
            d.paired_at
        ],
    )?;
    tx.execute("DELETE FROM pairing_requests WHERE device_id = ?1", [&d.device_id])?;
    Ok(())
}

impl Store {
    pub async fn get_device(&self, device_id: &str) -> Result<Option<DeviceRow>, StoreError> {
        let id = device_id.to_string();
        self.call(move |c| {
            Ok(c.query_row(
                &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = ?1"),
                [id],
                device_from_row,
            )
            .optional()?)
        })
        .await
    }

    pub async fn list_devices(&self) -> Result<Vec<DeviceRow>, StoreError> {
        self.call(|c| {
            let mut stmt = c.prepare(&format!("SELECT {DEVICE_COLUMNS} FROM devices ORDER BY paired_at"))?;
            Ok(stmt.query_map([], device_from_row)?.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Approves (or re-approves with new role/scopes) a device; clears its pending requests.
    pub async fn pair_device(&self, device: DeviceRow) -> Result<(), StoreError> {
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            pair_tx(&tx, &device)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Forgets a device and every token issued to it. Returns whether it existed.
    pub async fn remove_device(&self, device_id: &str) -> Result<bool, StoreError> {
        let id = device_id.to_string();
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM device_tokens WHERE device_id = ?1", [&id])?;
            tx.execute("DELETE FROM pairing_requests WHERE device_id = ?1", [&id])?;
            let n = tx.execute("DELETE FROM devices WHERE device_id = ?1", [&id])?;
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }

    pub async fn rename_device(&self, device_id: &str, label: &str) -> Result<bool, StoreError> {
        let (id, label) = (device_id.to_string(), label.to_string());
        self.call(move |c| Ok(c.execute("UPDATE devices SET label = ?2 WHERE device_id = ?1", [id, label])? > 0)).await
    }

    pub async fn touch_device(&self, device_id: &str) -> Result<(), StoreError> {
        let id = device_id.to_string();
        self.call(move |c| {
            c.execute("UPDATE devices SET last_seen_at = ?2 WHERE device_id = ?1", params![id, now_ms()])?;
            Ok(())
        })
        .await
    }

    /// Issues a new token for `device_id` and `role`, replacing earlier ones. Returns the token;
    /// only its hash is kept.
    pub async fn issue_device_token(
        &self,
        device_id: &str,
        role: &str,
        scopes: &[String],
    ) -> Result<(String, i64), StoreError> {
        let (id, role, scopes) = (device_id.to_string(), role.to_string(), scopes_json(scopes));
        let token = format!("cldt_{}", random_hex(32));
        let hash = token_hash(&token);
        let issued = now_ms();
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM device_tokens WHERE device_id = ?1 AND role = ?2", [&id, &role])?;
            tx.execute(
                "INSERT INTO device_tokens (token_hash, device_id, role, scopes_json, issued_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![hash, id, role, scopes, issued],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await?;
        Ok((token, issued))
    }

    /// What a presented device token grants, if it is valid.
    pub async fn check_device_token(&self, token: &str) -> Result<Option<DeviceTokenRow>, StoreError> {
        let hash = token_hash(token);
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT device_id, role, scopes_json, issued_at FROM device_tokens WHERE token_hash = ?1",
                [hash],
                |r| {
                    Ok(DeviceTokenRow {
                        device_id: r.get(0)?,
                        role: r.get(1)?,
                        scopes: scopes_from(&r.get::<_, String>(2)?),
                        issued_at: r.get(3)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    /// Revokes every token of a device for a role. Returns how many were revoked.
    pub async fn revoke_device_tokens(&self, device_id: &str, role: &str) -> Result<usize, StoreError> {
        let (id, role) = (device_id.to_string(), role.to_string());
        self.call(move |c| Ok(c.execute("DELETE FROM device_tokens WHERE device_id = ?1 AND role = ?2", [id, role])?))
            .await
    }

    /// Records a pending request for a device and role.
    ///
    /// A live request asking for the same scopes is kept as it is — same id, same age — with
    /// the client's latest description, so a client that keeps retrying neither resets the
    /// expiry nor announces itself again. A request asking for other scopes gets a new id and
    /// the old one is dropped: an id, once shown to an approver, always means the same scopes.
    pub async fn request_pairing(&self, mut request: PairingRequest) -> Result<PairingOutcome, StoreError> {
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM pairing_requests WHERE created_at < ?1", [now_ms() - PAIRING_REQUEST_TTL_MS])?;
            let existing = tx
                .query_row(
                    &format!("SELECT {REQUEST_COLUMNS} FROM pairing_requests WHERE device_id = ?1 AND role = ?2"),
                    [&request.device_id, &request.role],
                    request_from_row,
                )
                .optional()?;
            let mut replaced = None;
            if let Some(old) = existing {
                if old.scopes == request.scopes && old.public_key == request.public_key {
                    tx.execute(
                        "UPDATE pairing_requests SET client_json = ?2, remote_ip = ?3, reason = ?4 WHERE request_id = ?1",
                        params![old.request_id, request.client.to_string(), request.remote_ip, request.reason],
                    )?;
                    tx.commit()?;
                    request.request_id = old.request_id;
                    request.created_at = old.created_at;
                    return Ok(PairingOutcome { request, created: false, replaced: None });
                }
                tx.execute("DELETE FROM pairing_requests WHERE request_id = ?1", [&old.request_id])?;
                replaced = Some(old.request_id);
            }
            tx.execute(
                "INSERT INTO pairing_requests (request_id, device_id, public_key, role, scopes_json, client_json, \
                 remote_ip, reason, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    request.request_id,
                    request.device_id,
                    request.public_key,
                    request.role,
                    scopes_json(&request.scopes),
                    request.client.to_string(),
                    request.remote_ip,
                    request.reason,
                    request.created_at
                ],
            )?;
            tx.commit()?;
            Ok(PairingOutcome { request, created: true, replaced })
        })
        .await
    }

    /// A live pending request by id.
    pub async fn get_pairing_request(&self, request_id: &str) -> Result<Option<PairingRequest>, StoreError> {
        let id = request_id.to_string();
        self.call(move |c| {
            Ok(c.query_row(
                &format!("SELECT {REQUEST_COLUMNS} FROM pairing_requests WHERE request_id = ?1 AND created_at >= ?2"),
                params![id, now_ms() - PAIRING_REQUEST_TTL_MS],
                request_from_row,
            )
            .optional()?)
        })
        .await
    }

    pub async fn list_pairing_requests(&self) -> Result<Vec<PairingRequest>, StoreError> {
        self.call(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {REQUEST_COLUMNS} FROM pairing_requests WHERE created_at >= ?1 ORDER BY created_at"
            ))?;
            Ok(stmt.query_map([now_ms() - PAIRING_REQUEST_TTL_MS], request_from_row)?.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Approves a pending request: the device is paired with the requested role and scopes.
    /// Returns the new device row, or `None` when there is no such (live) request.
    pub async fn approve_pairing(&self, request_id: &str) -> Result<Option<DeviceRow>, StoreError> {
        let id = request_id.to_string();
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(req) = tx
                .query_row(
                    &format!(
                        "SELECT {REQUEST_COLUMNS} FROM pairing_requests WHERE request_id = ?1 AND created_at >= ?2"
                    ),
                    params![id, now_ms() - PAIRING_REQUEST_TTL_MS],
                    request_from_row,
                )
                .optional()?
            else {
                return Ok(None);
            };
            let text = |k: &str| req.client.get(k).and_then(|v| v.as_str()).map(String::from);
            let device = DeviceRow {
                device_id: req.device_id.clone(),
                public_key: req.public_key.clone(),
                role: req.role.clone(),
                scopes: req.scopes.clone(),
                label: text("displayName"),
                client_id: text("id"),
                client_mode: text("mode"),
                platform: text("platform"),
                remote_ip: req.remote_ip.clone(),
                paired_at: now_ms(),
                last_seen_at: None,
            };
            pair_tx(&tx, &device)?;
            tx.commit()?;
            Ok(Some(device))
        })
        .await
    }

    /// Drops a pending request. Returns it when it existed.
    pub async fn reject_pairing(&self, request_id: &str) -> Result<Option<PairingRequest>, StoreError> {
        let id = request_id.to_string();
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let found = tx
                .query_row(
                    &format!("SELECT {REQUEST_COLUMNS} FROM pairing_requests WHERE request_id = ?1"),
                    [&id],
                    request_from_row,
                )
                .optional()?;
            tx.execute("DELETE FROM pairing_requests WHERE request_id = ?1", [&id])?;
            tx.commit()?;
            Ok(found)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(device: &str) -> PairingRequest {
        PairingRequest {
            request_id: format!("req-{device}"),
            device_id: device.into(),
            public_key: "pk".into(),
            role: "operator".into(),
            scopes: vec!["operator.read".into()],
            client: serde_json::json!({"id": "openclaw-tui", "mode": "ui", "displayName": "tui"}),
            remote_ip: Some("192.0.2.1".into()),
            reason: "not-paired".into(),
            created_at: now_ms(),
        }
    }

    #[tokio::test]
    async fn pairing_tokens_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        let first = store.request_pairing(request("d1")).await.unwrap();
        assert!(first.created && first.replaced.is_none());
        let first = first.request;
        let mut again = request("d1");
        again.request_id = "other".into();
        again.created_at = first.created_at + 60_000;
        let retry = store.request_pairing(again).await.unwrap();
        assert!(!retry.created, "a retry is the same request");
        assert_eq!(retry.request.request_id, first.request_id, "one request per device");
        assert_eq!(retry.request.created_at, first.created_at, "a retry does not extend the expiry");
        assert_eq!(store.get_pairing_request(&first.request_id).await.unwrap().unwrap().scopes, first.scopes);

        // Other scopes: a new id, the old one gone, so an approved id always means what it showed.
        let mut wider = request("d1");
        wider.request_id = "req-wider".into();
        wider.scopes = vec!["operator.admin".into()];
        let wider = store.request_pairing(wider).await.unwrap();
        assert_eq!((wider.created, wider.replaced.as_deref()), (true, Some(first.request_id.as_str())));
        assert!(store.get_pairing_request(&first.request_id).await.unwrap().is_none());
        assert!(store.approve_pairing(&first.request_id).await.unwrap().is_none());
        assert!(store.reject_pairing("req-wider").await.unwrap().is_some());
        let first = store.request_pairing(request("d1")).await.unwrap().request;
        assert_eq!(store.list_pairing_requests().await.unwrap().len(), 1);

        let device = store.approve_pairing(&first.request_id).await.unwrap().unwrap();
        assert_eq!(
            (device.label.as_deref(), device.scopes.as_slice()),
            (Some("tui"), &["operator.read".to_string()][..])
        );
        assert!(store.list_pairing_requests().await.unwrap().is_empty());
        assert!(store.approve_pairing(&first.request_id).await.unwrap().is_none());

        let (t1, _) = store.issue_device_token("d1", "operator", &device.scopes).await.unwrap();
        assert_eq!(store.check_device_token(&t1).await.unwrap().unwrap().device_id, "d1");
        let (t2, _) = store.issue_device_token("d1", "operator", &device.scopes).await.unwrap();
        assert!(store.check_device_token(&t1).await.unwrap().is_none(), "a new token replaces the old one");
        assert!(store.check_device_token(&t2).await.unwrap().is_some());
        assert!(store.check_device_token("cldt_guess").await.unwrap().is_none());

        let raw: String =
            store.call(|c| Ok(c.query_row("SELECT token_hash FROM device_tokens", [], |r| r.get(0))?)).await.unwrap();
        assert_ne!(raw, t2, "only the hash is stored");

        assert!(store.reject_pairing("nope").await.unwrap().is_none());
        assert!(store.remove_device("d1").await.unwrap());
        assert!(store.check_device_token(&t2).await.unwrap().is_none());
        assert!(store.get_device("d1").await.unwrap().is_none());
    }
}
