//! The outbound worker of one account: sends queued rows in order, paced per chat, and
//! records each outcome before the next send.
//!
//! A row is marked as being sent before each attempt and marked sent only after the platform
//! accepted it. A row still marked from an attempt without a recorded answer (a crash, a cut
//! connection, a timeout) may be on the platform already: the adapter is asked to find it by
//! its idempotency key first (Slack, through message metadata), and platforms with client-side
//! dedupe keys get the key so they drop the repeat (Discord nonces, Matrix transaction ids).
//! Where neither is possible the row is sent again: at least once, never lost. A 429 holds
//! the whole account for the time the platform asked; other transient failures back off per row (2 s doubling to 5 min); a
//! refusal that cannot change, or a row past its TTL, goes to the dead-letter list, is logged
//! and counted in status. The worker also polls the queue every second, so rows queued by
//! another process (a CLI approving a pairing) go out without a restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clawline_store::{OutboundRow, OutboundState, Store};
use tokio_util::sync::CancellationToken;

use crate::channel::SendError;
use crate::manager::Account;
use crate::message::{OutboundBody, Target};
use crate::pacing::Pacer;
use crate::spans::Spans;
use clawline_observe::trace::now_unix_nanos;

const POLL: Duration = Duration::from_secs(1);
const BATCH: usize = 64;

/// The wait before retrying a row that failed `attempts` times.
fn retry_delay(attempts: i64) -> Duration {
    Duration::from_secs(2u64.saturating_pow(attempts.clamp(1, 16) as u32)).min(Duration::from_secs(300))
}

pub(crate) async fn deliver(account: Arc<Account>, store: Store, spans: Spans, stop: CancellationToken) {
    let ch = account.channel.clone();
    let (channel, account_id) = (ch.channel().to_string(), ch.account_id().to_string());
    let mut pacer = Pacer::default();
    let mut held_until: Option<Instant> = None;
    loop {
        if let Some(until) = held_until.take() {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(until.into()) => {}
            }
        }
        let now_ms = clawline_store::now_ms();
        let rows = match store.due_outbound(&channel, &account_id, now_ms, BATCH).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, channel, account = account_id, "could not read the outbound queue");
                Vec::new()
            }
        };
        let mut soonest: Option<Duration> = None;
        let mut waiting_chats = std::collections::HashSet::new();
        for row in rows {
            if stop.is_cancelled() {
                return;
            }
            let (target, body) = match decode(&row) {
                Ok(pair) => pair,
                Err(e) => {
                    let _ = store.outbound_failed(row.id, &e, now_ms, true).await;
                    account.health.send_failed(&e, true);
                    continue;
                }
            };
            // Keep a chat's order: once one of its rows waits, the rest of it waits too.
            if waiting_chats.contains(&target.peer_id) {
                continue;
            }
            let (interval, burst) = ch.pace(&target);
            let wait = pacer.wait(&target.peer_id, interval, burst, Instant::now());
            if !wait.is_zero() {
                waiting_chats.insert(target.peer_id.clone());
                soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
                continue;
            }
            pacer.take(&target.peer_id, interval, burst, Instant::now());
            let started = now_unix_nanos();
            let result = attempt(ch.as_ref(), &store, &row, &target, &body).await;
            let took = (started, now_unix_nanos());
            match result {
                Ok(sent) => {
                    spans.send(&row, took, Ok(&sent.message_id));
                    if let Err(e) = store.outbound_sent(row.id, Some(sent.message_id)).await {
                        tracing::error!(error = %e, "could not record a sent message");
                    }
                    account.health.sent();
                }
                Err(SendError::RateLimited { retry_after }) => {
                    spans.send(&row, took, Err(("rate_limited", false)));
                    let next = clawline_store::now_ms() + retry_after.as_millis() as i64;
                    let _ = store.outbound_failed(row.id, "rate limited by the platform", next, false).await;
                    account.health.send_failed(&format!("rate limited for {} s", retry_after.as_secs()), false);
                    held_until = Some(Instant::now() + retry_after);
                    break;
                }
                Err(SendError::Moved(peer)) => {
                    spans.send(&row, took, Err(("moved", false)));
                    let moved = Target { peer_id: peer, ..target };
                    let _ = store.retarget_outbound(row.id, serde_json::to_value(&moved).unwrap_or_default()).await;
                    soonest = Some(Duration::ZERO);
                }
                Err(SendError::Transient(e)) => {
                    let next = clawline_store::now_ms() + retry_delay(row.attempts + 1).as_millis() as i64;
                    let dead = matches!(store.outbound_failed(row.id, &e, next, false).await, Ok(OutboundState::Dead));
                    spans.send(&row, took, Err(("transient", dead)));
                    report(&account, &row, &e, dead);
                    waiting_chats.insert(target.peer_id.clone());
                }
                Err(SendError::Permanent(e)) => {
                    spans.send(&row, took, Err(("refused", true)));
                    let _ = store.outbound_failed(row.id, &e, clawline_store::now_ms(), true).await;
                    report(&account, &row, &e, true);
                }
            }
        }
        pacer.prune(Duration::from_secs(60), 1, Instant::now());
        if held_until.is_some() {
            continue;
        }
        let mut wait = POLL;
        if let Some(s) = soonest {
            wait = wait.min(s);
        }
        if let Ok(Some(next)) = store.next_outbound_at(&channel, &account_id).await {
            let until = Duration::from_millis(next.saturating_sub(clawline_store::now_ms()).max(0) as u64);
            wait = wait.min(until);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = account.delivery_wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One attempt at a row: when an earlier attempt's answer was lost, first asks the platform
/// whether the message is there; otherwise marks the row as being sent and sends it.
async fn attempt(
    ch: &dyn crate::channel::Channel,
    store: &Store,
    row: &OutboundRow,
    target: &Target,
    body: &OutboundBody,
) -> Result<crate::channel::Sent, SendError> {
    // Replacing a draft is an edit, which is the same however often it is repeated.
    if let (Some(since), None) = (row.sending_since, &target.replaces)
        && let Some(sent) = ch.find_sent(target, &row.idempotency_key, since).await?
    {
        tracing::info!(
            channel = ch.channel(),
            key = %row.idempotency_key,
            "the platform already has this message from an attempt whose answer was lost; not sending it again"
        );
        return Ok(sent);
    }
    if let Err(e) = store.outbound_sending(row.id).await {
        tracing::error!(error = %e, "could not mark a message as being sent; sending it anyway");
    }
    let result = send_or_replace(ch, target, body, &row.idempotency_key).await;
    if matches!(result, Err(SendError::RateLimited { .. })) {
        // A 429 is an answer: the platform did not take the message (and an earlier attempt
        // was looked for above and is not there).
        let _ = store.outbound_not_sent(row.id).await;
    }
    result
}

/// Sends a row, or edits the preview draft it replaces into it. A draft that cannot be
/// edited any more (deleted, too old) is left alone and the row is sent as a new message.
async fn send_or_replace(
    ch: &dyn crate::channel::Channel,
    target: &Target,
    body: &OutboundBody,
    idempotency_key: &str,
) -> Result<crate::channel::Sent, SendError> {
    if let Some(draft) = &target.replaces {
        match ch.edit(target, draft, body).await {
            Ok(()) => return Ok(crate::channel::Sent { message_id: draft.clone() }),
            Err(SendError::Permanent(e)) => {
                tracing::info!(channel = ch.channel(), error = %e, "the preview could not be replaced; sending the reply as a new message");
            }
            Err(e) => return Err(e),
        }
    }
    let fresh = Target { replaces: None, ..target.clone() };
    ch.send(&fresh, body, idempotency_key).await
}

fn decode(row: &OutboundRow) -> Result<(Target, OutboundBody), String> {
    let target = serde_json::from_value(row.target.clone()).map_err(|e| format!("unreadable target: {e}"))?;
    let body = serde_json::from_value(row.body.clone()).map_err(|e| format!("unreadable body: {e}"))?;
    Ok((target, body))
}

fn report(account: &Account, row: &OutboundRow, error: &str, dead: bool) {
    account.health.send_failed(error, dead);
    if dead {
        tracing::warn!(
            channel = %row.channel,
            account = %row.account_id,
            key = %row.idempotency_key,
            error,
            "a reply could not be delivered and was moved to the dead-letter list (see `clawline channels status`)"
        );
    } else {
        tracing::info!(channel = %row.channel, key = %row.idempotency_key, error, "send failed; will retry");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_and_cap() {
        assert_eq!(retry_delay(1), Duration::from_secs(2));
        assert_eq!(retry_delay(3), Duration::from_secs(8));
        assert_eq!(retry_delay(40), Duration::from_secs(300));
    }
}
