//! A reply's preview while it is written: a draft message sent once the answer has
//! `preview_min_chars` characters, then edited (at most once per the adapter's
//! `preview_every`) as the text grows, ending in `…` until the answer is complete.
//!
//! Previews are best effort and not journaled. A refused send or edit ends the preview, a
//! 429 pauses it for the time the platform asked; the answer itself always goes through the
//! outbound queue, whose first piece replaces the draft (an edit), so the chat ends with the
//! answer once, not a draft and a copy. This file never sends the final answer and never
//! retries: a crash leaves at most a stale draft, and the answer still arrives.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::channel::SendError;
use crate::manager::Account;
use crate::message::Target;

/// What marks a preview as unfinished.
pub(crate) const UNFINISHED: &str = " …";
/// The longest pause a 429 may impose on a preview before it gives up.
const MAX_HOLD: Duration = Duration::from_secs(30);

/// Follows `text` until `done`, keeping a draft up to date. Returns the draft's message id
/// (the one given, when the draft was made by an earlier attempt), or `None` when none was sent.
pub(crate) async fn run(
    account: Arc<Account>,
    target: Target,
    mut text: watch::Receiver<String>,
    done: CancellationToken,
    mut draft: Option<String>,
    idempotency_key: String,
) -> Option<String> {
    let ch = account.channel.clone();
    let delivery = &account.settings.delivery;
    let mut shown = String::new();
    loop {
        tokio::select! {
            biased;
            _ = done.cancelled() => return draft,
            changed = text.changed() => if changed.is_err() { return draft },
        }
        // `MEDIA:` lines become files with the answer; the preview shows only the text.
        let so_far = crate::media::split_media(&text.borrow_and_update()).0;
        if so_far.is_empty() || (draft.is_none() && so_far.chars().count() < delivery.preview_min_chars) {
            continue;
        }
        let mut pieces = ch.prepare(&format!("{so_far}{UNFINISHED}"), delivery);
        if pieces.is_empty() {
            continue;
        }
        // Once the answer outgrows one message the draft holds its first piece; the rest
        // arrives with the answer.
        let outgrown = pieces.len() > 1;
        let mut body = pieces.swap_remove(0);
        body.draft = true;
        if body.text == shown {
            continue;
        }
        let outcome = match &draft {
            None => ch.send(&target, &body, &idempotency_key).await.map(|s| Some(s.message_id)),
            Some(id) => ch.edit(&target, id, &body).await.map(|()| None),
        };
        match outcome {
            Ok(sent) => {
                if sent.is_some() {
                    draft = sent;
                }
                shown = body.text;
            }
            Err(SendError::RateLimited { retry_after }) if retry_after <= MAX_HOLD => {
                tokio::select! {
                    _ = done.cancelled() => return draft,
                    _ = tokio::time::sleep(retry_after) => {}
                }
                continue;
            }
            Err(e) => {
                tracing::debug!(channel = ch.channel(), error = %e, "preview stopped");
                done.cancelled().await;
                return draft;
            }
        }
        if outgrown {
            done.cancelled().await;
            return draft;
        }
        tokio::select! {
            _ = done.cancelled() => return draft,
            _ = tokio::time::sleep(ch.preview_every()) => {}
        }
    }
}
