//! What an adapter's connection hands its messages to: the journal (persist before the
//! platform's cursor moves), the dispatcher's wake-up, and the account's health.
//!
//! `accept` returns only after the batch and the new cursor are committed, so an adapter that
//! confirms to the platform after `accept` returns can never lose a message, and a redelivered
//! message is recognized by its platform id and ignored. This file never interprets messages.

use std::sync::Arc;

use clawline_store::{Accepted, NewInbound, Store, StoreError};
use tokio::sync::mpsc;

use crate::health::Health;
use crate::message::InboundMessage;

/// One account's way into the journal.
#[derive(Clone)]
pub struct Link {
    store: Store,
    channel: String,
    account_id: String,
    health: Arc<Health>,
    /// Journal ids of new messages, for the dispatcher.
    wake: mpsc::UnboundedSender<i64>,
}

impl Link {
    pub(crate) fn new(
        store: Store,
        channel: &str,
        account_id: &str,
        health: Arc<Health>,
        wake: mpsc::UnboundedSender<i64>,
    ) -> Link {
        Link { store, channel: channel.to_string(), account_id: account_id.to_string(), health, wake }
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The cursor stored with the last accepted batch.
    pub async fn cursor(&self) -> Result<Option<String>, StoreError> {
        self.store.channel_cursor(&self.channel, &self.account_id).await
    }

    /// The account's most recent journal rows, newest first (adapters that read back missed
    /// messages start after the newest they kept).
    pub async fn recent(&self, limit: usize) -> Result<Vec<clawline_store::InboundRow>, StoreError> {
        self.store.recent_inbound(&self.channel, &self.account_id, limit).await
    }

    /// Journals `batch` and moves the cursor in one transaction, then wakes the dispatcher.
    /// Returns how many were new.
    pub async fn accept(&self, batch: Vec<InboundMessage>, cursor: Option<String>) -> Result<usize, StoreError> {
        if batch.is_empty() && cursor.is_none() {
            return Ok(0);
        }
        let rows = batch
            .into_iter()
            .map(|m| NewInbound {
                platform_id: m.platform_id.clone(),
                message: serde_json::to_value(&m).unwrap_or(serde_json::Value::Null),
            })
            .collect();
        let accepted = self.store.accept_inbound(&self.channel, &self.account_id, rows, cursor).await?;
        let mut new = 0;
        for a in &accepted {
            if let Accepted::New(id) = a {
                new += 1;
                let _ = self.wake.send(*id);
            }
        }
        self.health.inbound(new as u64, (accepted.len() - new) as u64);
        Ok(new)
    }
}
