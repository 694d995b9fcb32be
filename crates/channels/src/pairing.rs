//! Approving a pairing code, for the CLI and the `channels.pairing.*` methods alike.
//!
//! Approval goes straight to the store, so it works whether or not a gateway is running; with
//! `notify`, a short note to the sender is queued in the outbound queue, which a running
//! gateway's delivery worker picks up within a second (or the next start does).

use clawline_core::routing::PeerKind;
use clawline_store::{AllowEntry, ChannelPairingRequest, NewOutbound, Store, StoreError};

use crate::message::{OutboundBody, Target};

/// What an approval did.
#[derive(Debug, Clone, PartialEq)]
pub struct Approved {
    pub request: ChannelPairingRequest,
    pub entry: AllowEntry,
    /// A note to the sender was queued.
    pub notified: bool,
}

impl Approved {
    /// Whether this approval made the sender the owner.
    pub fn made_owner(&self) -> bool {
        self.entry.owner
    }
}

/// The note an approved sender gets.
pub const APPROVED_NOTE: &str = "You're approved: I'll answer your messages from now on. Send your message again.";

/// Approves `code` on `channel` (optionally only for `account_id`); with `bootstrap_owner` the
/// sender becomes the owner when there is none yet. `None`: no live request has that code.
pub async fn approve(
    store: &Store,
    channel: &str,
    code: &str,
    account_id: Option<&str>,
    notify: bool,
    bootstrap_owner: bool,
) -> Result<Option<Approved>, StoreError> {
    let Some((request, entry)) = store.approve_channel_pairing(channel, code, account_id, bootstrap_owner).await?
    else {
        return Ok(None);
    };
    let mut notified = false;
    if notify {
        let peer = request.meta.get("peerId").and_then(|p| p.as_str()).unwrap_or(&request.sender_id).to_string();
        let target =
            Target { peer_kind: PeerKind::Direct, peer_id: peer, thread: None, reply_to: None, replaces: None };
        let row = NewOutbound {
            idempotency_key: format!("pairing:{}:{}", request.sender_id, request.code),
            target: serde_json::to_value(&target).unwrap_or_default(),
            body: serde_json::to_value(OutboundBody::plain(APPROVED_NOTE)).unwrap_or_default(),
            expires_at: clawline_store::now_ms() + crate::dispatch::OUTBOUND_TTL_MS,
            traceparent: None,
        };
        store.queue_outbound(&request.channel, &request.account_id, vec![row]).await?;
        notified = true;
    }
    Ok(Some(Approved { request, entry, notified }))
}
