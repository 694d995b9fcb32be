//! DM pairing for channels: codes for unknown senders, and the senders approved since.
//!
//! With `dmPolicy: "pairing"` an unknown sender gets a short code instead of an answer; the
//! owner approves the code (`clawline pairing approve telegram ABCD2345`) and the sender joins
//! the account's allow list. Codes are 8 characters from an alphabet without `0 O 1 I`, live for
//! an hour, and an account holds at most a few pending requests (extra senders are ignored, so
//! strangers cannot flood the owner). The first sender ever approved becomes the owner. This
//! file stores requests and entries; it does not decide who needs pairing.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::db::Store;
use crate::error::StoreError;
use crate::now_ms;

/// Characters of a pairing code: uppercase letters and digits without `0`, `O`, `1`, `I`.
pub const PAIRING_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// Length of a pairing code.
pub const PAIRING_CODE_LEN: usize = 8;

/// A sender waiting for approval.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelPairingRequest {
    pub channel: String,
    pub account_id: String,
    pub sender_id: String,
    pub code: String,
    /// What the platform said about the sender (name, username).
    pub meta: serde_json::Value,
    pub created_at: i64,
    pub expires_at: i64,
}

/// What [`Store::request_channel_pairing`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum PairingAsk {
    /// A new request: send this code to the sender.
    Created(ChannelPairingRequest),
    /// The sender already has a live request: say nothing new.
    Existing(ChannelPairingRequest),
    /// The account has the maximum of pending requests: ignore the sender.
    Full,
}

/// An approved sender.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowEntry {
    pub channel: String,
    pub account_id: String,
    pub entry: String,
    pub owner: bool,
    pub added_at: i64,
}

/// A fresh random code.
pub fn new_pairing_code() -> String {
    let mut bytes = [0u8; PAIRING_CODE_LEN];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        bytes.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..PAIRING_CODE_LEN]);
    }
    // 256 is a multiple of the alphabet's 32 characters, so every character is equally likely.
    bytes.iter().map(|b| PAIRING_ALPHABET[*b as usize % PAIRING_ALPHABET.len()] as char).collect()
}

fn request_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ChannelPairingRequest> {
    Ok(ChannelPairingRequest {
        channel: r.get(0)?,
        account_id: r.get(1)?,
        sender_id: r.get(2)?,
        code: r.get(3)?,
        meta: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default(),
        created_at: r.get(5)?,
        expires_at: r.get(6)?,
    })
}

const REQUEST_COLUMNS: &str = "channel, account_id, sender_id, code, meta_json, created_at, expires_at";

impl Store {
    /// Asks for pairing on behalf of `sender_id` (expired requests are dropped first).
    pub async fn request_channel_pairing(
        &self,
        channel: &str,
        account_id: &str,
        sender_id: &str,
        meta: serde_json::Value,
        ttl_ms: i64,
        max_pending: usize,
    ) -> Result<PairingAsk, StoreError> {
        let (channel, account_id, sender_id) = (channel.to_string(), account_id.to_string(), sender_id.to_string());
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let now = now_ms();
            tx.execute("DELETE FROM channel_pairing_requests WHERE expires_at <= ?1", [now])?;
            let existing = tx
                .query_row(
                    &format!(
                        "SELECT {REQUEST_COLUMNS} FROM channel_pairing_requests
                         WHERE channel = ?1 AND account_id = ?2 AND sender_id = ?3"
                    ),
                    params![channel, account_id, sender_id],
                    request_from_row,
                )
                .optional()?;
            if let Some(req) = existing {
                tx.commit()?;
                return Ok(PairingAsk::Existing(req));
            }
            let pending: i64 = tx.query_row(
                "SELECT count(*) FROM channel_pairing_requests WHERE channel = ?1 AND account_id = ?2",
                params![channel, account_id],
                |r| r.get(0),
            )?;
            if pending as usize >= max_pending {
                tx.commit()?;
                return Ok(PairingAsk::Full);
            }
            // Codes are unique per channel, so `approve <channel> <code>` needs no account.
            let code = loop {
                let code = new_pairing_code();
                let taken: i64 = tx.query_row(
                    "SELECT count(*) FROM channel_pairing_requests WHERE channel = ?1 AND code = ?2",
                    params![channel, code],
                    |r| r.get(0),
                )?;
                if taken == 0 {
                    break code;
                }
            };
            let req = ChannelPairingRequest {
                channel,
                account_id,
                sender_id,
                code,
                meta,
                created_at: now,
                expires_at: now + ttl_ms,
            };
            tx.execute(
                &format!(
                    "INSERT INTO channel_pairing_requests ({REQUEST_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                ),
                params![
                    req.channel,
                    req.account_id,
                    req.sender_id,
                    req.code,
                    req.meta.to_string(),
                    req.created_at,
                    req.expires_at
                ],
            )?;
            tx.commit()?;
            Ok(PairingAsk::Created(req))
        })
        .await
    }

    /// Live requests, oldest first (`channel` narrows the list when given).
    pub async fn channel_pairing_requests(
        &self,
        channel: Option<&str>,
    ) -> Result<Vec<ChannelPairingRequest>, StoreError> {
        let channel = channel.map(str::to_string);
        self.call(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {REQUEST_COLUMNS} FROM channel_pairing_requests
                 WHERE expires_at > ?1 AND (?2 IS NULL OR channel = ?2) ORDER BY created_at"
            ))?;
            let rows = stmt.query_map(params![now_ms(), channel], request_from_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Approves a live code: the sender joins the allow list and the request goes. With
    /// `bootstrap_owner`, the sender also becomes the owner when nobody is owner yet. `None`
    /// when no live request has that code.
    pub async fn approve_channel_pairing(
        &self,
        channel: &str,
        code: &str,
        account_id: Option<&str>,
        bootstrap_owner: bool,
    ) -> Result<Option<(ChannelPairingRequest, AllowEntry)>, StoreError> {
        let (channel, code, account_id) =
            (channel.to_string(), code.trim().to_ascii_uppercase(), account_id.map(str::to_string));
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let now = now_ms();
            let req = tx
                .query_row(
                    &format!(
                        "SELECT {REQUEST_COLUMNS} FROM channel_pairing_requests
                         WHERE channel = ?1 AND code = ?2 AND expires_at > ?3 AND (?4 IS NULL OR account_id = ?4)"
                    ),
                    params![channel, code, now, account_id],
                    request_from_row,
                )
                .optional()?;
            let Some(req) = req else { return Ok(None) };
            let has_owner: i64 = tx.query_row("SELECT count(*) FROM channel_allow_entries WHERE owner = 1", [], |r| r.get(0))?;
            let owner = bootstrap_owner && has_owner == 0;
            tx.execute(
                "INSERT INTO channel_allow_entries (channel, account_id, entry, owner, added_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT DO NOTHING",
                params![req.channel, req.account_id, req.sender_id, owner, now],
            )?;
            tx.execute(
                "DELETE FROM channel_pairing_requests WHERE channel = ?1 AND account_id = ?2 AND sender_id = ?3",
                params![req.channel, req.account_id, req.sender_id],
            )?;
            tx.commit()?;
            let entry = AllowEntry {
                channel: req.channel.clone(),
                account_id: req.account_id.clone(),
                entry: req.sender_id.clone(),
                owner,
                added_at: now,
            };
            Ok(Some((req, entry)))
        })
        .await
    }

    /// Whether some approved sender is the owner.
    pub async fn channel_owner_exists(&self) -> Result<bool, StoreError> {
        self.call(|conn| Ok(conn.prepare_cached("SELECT 1 FROM channel_allow_entries WHERE owner = 1")?.exists([])?))
            .await
    }

    /// Drops a pending request without approving it. Returns the sender it was for, if one was there.
    pub async fn dismiss_channel_pairing(&self, channel: &str, code: &str) -> Result<Option<String>, StoreError> {
        let (channel, code) = (channel.to_string(), code.trim().to_ascii_uppercase());
        self.call(move |conn| {
            Ok(conn
                .query_row(
                    "DELETE FROM channel_pairing_requests WHERE channel = ?1 AND code = ?2 RETURNING sender_id",
                    params![channel, code],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }

    /// Whether a sender was approved for the account.
    pub async fn channel_sender_allowed(
        &self,
        channel: &str,
        account_id: &str,
        sender_id: &str,
    ) -> Result<bool, StoreError> {
        let (channel, account_id, sender_id) = (channel.to_string(), account_id.to_string(), sender_id.to_string());
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT 1 FROM channel_allow_entries WHERE channel = ?1 AND account_id = ?2 AND entry = ?3",
            )?;
            Ok(stmt.exists(params![channel, account_id, sender_id])?)
        })
        .await
    }

    /// Approved senders (`channel` narrows the list when given).
    pub async fn channel_allow_entries(&self, channel: Option<&str>) -> Result<Vec<AllowEntry>, StoreError> {
        let channel = channel.map(str::to_string);
        self.call(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT channel, account_id, entry, owner, added_at FROM channel_allow_entries
                 WHERE (?1 IS NULL OR channel = ?1) ORDER BY added_at",
            )?;
            let rows = stmt
                .query_map(params![channel], |r| {
                    Ok(AllowEntry {
                        channel: r.get(0)?,
                        account_id: r.get(1)?,
                        entry: r.get(2)?,
                        owner: r.get(3)?,
                        added_at: r.get(4)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_use_the_unambiguous_alphabet() {
        for _ in 0..200 {
            let code = new_pairing_code();
            assert_eq!(code.len(), PAIRING_CODE_LEN);
            assert!(code.bytes().all(|b| PAIRING_ALPHABET.contains(&b)), "{code}");
            assert!(!code.contains(['0', 'O', '1', 'I']));
        }
    }

    #[tokio::test]
    async fn a_sender_asks_once_the_account_caps_pending_and_approval_allows_and_bootstraps_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let hour = 3_600_000;
        let ask = |s: &'static str| {
            store.request_channel_pairing("telegram", "default", s, serde_json::json!({"name": s}), hour, 3)
        };
        let PairingAsk::Created(a) = ask("1").await.unwrap() else { panic!() };
        assert!(matches!(ask("1").await.unwrap(), PairingAsk::Existing(ref r) if r.code == a.code));
        assert!(matches!(ask("2").await.unwrap(), PairingAsk::Created(_)));
        assert!(matches!(ask("3").await.unwrap(), PairingAsk::Created(_)));
        assert_eq!(ask("4").await.unwrap(), PairingAsk::Full);
        assert_eq!(store.channel_pairing_requests(Some("telegram")).await.unwrap().len(), 3);

        assert!(!store.channel_sender_allowed("telegram", "default", "1").await.unwrap());
        assert!(store.approve_channel_pairing("telegram", "WRONG234", None, true).await.unwrap().is_none());
        let (req, entry) =
            store.approve_channel_pairing("telegram", &a.code.to_lowercase(), None, true).await.unwrap().unwrap();
        assert_eq!((req.sender_id.as_str(), entry.owner), ("1", true));
        assert!(store.channel_sender_allowed("telegram", "default", "1").await.unwrap());
        assert!(!store.channel_sender_allowed("telegram", "work", "1").await.unwrap());
        // The code is spent; a second approval finds nothing.
        assert!(store.approve_channel_pairing("telegram", &a.code, None, true).await.unwrap().is_none());
        let PairingAsk::Created(b) = ask("5").await.unwrap() else { panic!("a slot freed up") };
        let (_, second) =
            store.approve_channel_pairing("telegram", &b.code, Some("default"), true).await.unwrap().unwrap();
        assert!(!second.owner);
    }

    #[tokio::test]
    async fn expired_requests_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let PairingAsk::Created(a) =
            store.request_channel_pairing("telegram", "default", "1", serde_json::json!({}), -1, 3).await.unwrap()
        else {
            panic!()
        };
        assert!(store.channel_pairing_requests(None).await.unwrap().is_empty());
        assert!(store.approve_channel_pairing("telegram", &a.code, None, true).await.unwrap().is_none());
        assert!(matches!(
            store.request_channel_pairing("telegram", "default", "1", serde_json::json!({}), 1000, 3).await.unwrap(),
            PairingAsk::Created(_)
        ));
    }
}
