//! From the journal to a reply in the outbound queue: gate, route, ask, queue.
//!
//! Every journaled message is processed once per attempt, in order within its conversation
//! (one worker per chat/thread; different chats run side by side). A message's fate is always
//! written back to the journal: dropped with the reason, answered with its reply queued in the
//! same transaction, or failed with a notice. A restart picks up what was `pending` or
//! `running`: a running message asks the responder again with the same attempt's key, which
//! finds the run already started (and its answer, if it finished); a run the restart cut off
//! gets a new attempt, at most three. This file does not send anything; the delivery worker does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clawline_core::config::channels::{Binding, ReplyToMode, SessionRouting, StreamMode};
use clawline_core::routing;
use clawline_store::{InboundRow, InboundState, NewOutbound, PairingAsk, Store, StoreError};
use tokio::sync::mpsc;

use crate::gate::Verdict;
use crate::manager::Account;
use crate::message::{InboundMessage, OutboundBody, Target};
use crate::responder::{Ask, InboundFile, Progress, Reply, Responder, is_silent};

/// Attempts per message before it is answered with an apology instead.
pub const MAX_ATTEMPTS: i64 = 3;
/// How long a queued reply may wait for the platform before it is dead.
pub const OUTBOUND_TTL_MS: i64 = 24 * 3_600_000;
/// How long a pairing code lives.
pub const PAIRING_TTL_MS: i64 = 3_600_000;
/// Pending pairing requests per account.
pub const PAIRING_MAX_PENDING: usize = 3;
/// How often "typing…" is renewed while an answer is being written.
const TYPING_EVERY: Duration = Duration::from_secs(4);
/// Messages of a group kept as context and shown with the next one answered, at most.
const GROUP_CONTEXT: usize = 20;
/// A conversation worker with nothing to do for this long exits.
const IDLE: Duration = Duration::from_secs(30);

type AccountKey = (String, String);

pub(crate) struct Dispatcher {
    pub store: Store,
    pub accounts: HashMap<AccountKey, Arc<Account>>,
    pub responder: Arc<dyn Responder>,
    pub default_agent: String,
    pub bindings: Vec<Binding>,
    pub routing: SessionRouting,
    spans: crate::spans::Spans,
    lanes: Mutex<HashMap<String, mpsc::UnboundedSender<InboundRow>>>,
}

impl Dispatcher {
    pub fn new(
        store: Store,
        accounts: HashMap<AccountKey, Arc<Account>>,
        responder: Arc<dyn Responder>,
        default_agent: String,
        bindings: Vec<Binding>,
        routing: SessionRouting,
        spans: crate::spans::Spans,
    ) -> Dispatcher {
        Dispatcher {
            store,
            accounts,
            responder,
            default_agent,
            bindings,
            routing,
            spans,
            lanes: Mutex::new(HashMap::new()),
        }
    }

    /// Resumes what the journal holds open, then follows new messages until `wake` closes.
    pub async fn run(self: Arc<Self>, mut wake: mpsc::UnboundedReceiver<i64>) {
        let mut resumed = std::collections::HashSet::new();
        match self.store.open_inbound().await {
            Ok(rows) => {
                if !rows.is_empty() {
                    tracing::info!(count = rows.len(), "resuming channel messages left open by the last run");
                }
                for row in rows {
                    resumed.insert(row.id);
                    self.enqueue(row);
                }
            }
            Err(e) => tracing::error!(error = %e, "could not read the channel journal"),
        }
        while let Some(id) = wake.recv().await {
            if resumed.remove(&id) {
                continue;
            }
            match self.store.inbound(id).await {
                Ok(Some(row)) if matches!(row.state, InboundState::Pending) => self.enqueue(row),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, id, "could not read a journaled channel message"),
            }
        }
    }

    /// Hands a row to its conversation's worker, starting one if needed.
    fn enqueue(self: &Arc<Self>, row: InboundRow) {
        let lane = lane_key(&row);
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        let row = match lanes.get(&lane) {
            Some(tx) => match tx.send(row) {
                Ok(()) => return,
                Err(e) => e.0,
            },
            None => row,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(row);
        lanes.insert(lane.clone(), tx);
        tokio::spawn(self.clone().lane(lane, rx));
    }

    async fn lane(self: Arc<Self>, lane: String, mut rx: mpsc::UnboundedReceiver<InboundRow>) {
        loop {
            match tokio::time::timeout(IDLE, rx.recv()).await {
                Ok(Some(row)) => {
                    let id = row.id;
                    if let Err(e) = self.process(row).await {
                        tracing::error!(error = %e, id, "a channel message could not be processed; it stays open for the next start");
                    }
                }
                Ok(None) => return,
                Err(_) => {
                    let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
                    if rx.is_empty() {
                        lanes.remove(&lane);
                        return;
                    }
                }
            }
        }
    }

    async fn process(&self, row: InboundRow) -> Result<(), StoreError> {
        let msg: InboundMessage = match serde_json::from_value(row.message.clone()) {
            Ok(m) => m,
            Err(e) => {
                return self
                    .store
                    .close_inbound(row.id, InboundState::Failed, &format!("unreadable journal row: {e}"))
                    .await;
            }
        };
        let Some(account) = self.accounts.get(&(row.channel.clone(), row.account_id.clone())) else {
            return self
                .store
                .close_inbound(row.id, InboundState::Dropped, "the account is no longer configured")
                .await;
        };
        let approved = if account.gate.needs_approvals(&msg) {
            self.store.channel_sender_allowed(&msg.channel, &msg.account_id, &msg.sender.id).await?
        } else {
            false
        };
        match account.gate.decide(&msg, approved) {
            Verdict::Drop(reason) => {
                tracing::debug!(channel = %msg.channel, peer = %msg.peer_id, reason = %reason, "channel message not answered");
                self.store.close_inbound(row.id, InboundState::Dropped, &reason).await
            }
            Verdict::ContextOnly(reason) => {
                tracing::debug!(channel = %msg.channel, peer = %msg.peer_id, reason = %reason, "channel message kept as context");
                self.store.close_inbound(row.id, InboundState::Context, &reason).await
            }
            Verdict::Pair => self.pair(&row, &msg, account).await,
            Verdict::Answer => self.answer(row, &msg, account).await,
        }
    }

    async fn pair(&self, row: &InboundRow, msg: &InboundMessage, account: &Account) -> Result<(), StoreError> {
        let meta = serde_json::json!({"name": msg.sender.name, "username": msg.sender.username, "peerId": msg.peer_id});
        let ask = self
            .store
            .request_channel_pairing(
                &msg.channel,
                &msg.account_id,
                &msg.sender.id,
                meta,
                PAIRING_TTL_MS,
                PAIRING_MAX_PENDING,
            )
            .await?;
        match ask {
            PairingAsk::Created(req) => {
                tracing::info!(channel = %msg.channel, account = %msg.account_id, sender = %msg.sender.id, "pairing requested");
                let text = format!(
                    "I don't know you yet, so I can't answer. Your pairing code is {code}.\n\n\
                     The owner of this assistant can let you in with:\nclawline pairing approve {channel} {code}\n\n\
                     The code expires in one hour.",
                    code = req.code,
                    channel = msg.channel
                );
                let rows = self.outbound(
                    account,
                    msg,
                    &format!("{}#pair", msg.platform_id),
                    vec![OutboundBody::plain(text)],
                    None,
                    None,
                );
                self.store
                    .answer_inbound(row.id, &msg.channel, &msg.account_id, rows, Some("pairing code sent".into()))
                    .await?;
                account.wake_delivery();
                Ok(())
            }
            PairingAsk::Existing(_) => {
                self.store
                    .close_inbound(row.id, InboundState::Dropped, "waiting for pairing approval (code already sent)")
                    .await
            }
            PairingAsk::Full => {
                self.store
                    .close_inbound(row.id, InboundState::Dropped, "too many pairing requests pending for this account")
                    .await
            }
        }
    }

    async fn answer(&self, row: InboundRow, msg: &InboundMessage, account: &Arc<Account>) -> Result<(), StoreError> {
        let processing = self.spans.begin_process();
        let traceparent = processing.as_ref().map(|p| p.context.header());
        let conv = msg.conversation();
        let agent_id = routing::agent_for(&self.bindings, &self.default_agent, &conv).to_string();
        let session_key = routing::session_key(&agent_id, &self.routing, &conv).to_string();
        // A row left running by the last process asks again with that attempt's key first.
        let mut attempt = if row.state == InboundState::Running && row.attempts > 0 {
            row.attempts
        } else {
            self.store.start_inbound_attempt(row.id, &session_key).await?
        };
        let (files, notes) = self.fetch_files(account, msg).await;
        let text = self.with_context(&row, msg, agent_text_with(msg, &notes)).await?;
        let streaming =
            account.settings.delivery.streaming == StreamMode::Partial && account.channel.capabilities().edit;
        // The preview's message, kept across attempts so a retried run edits the same draft.
        let mut draft: Option<String> = None;
        loop {
            if attempt > MAX_ATTEMPTS {
                let notice = "Sorry — I was restarted several times while answering this message, so I gave up on it. \
                              Please send it again.";
                let rows = self.outbound(
                    account,
                    msg,
                    &format!("{}#gaveup", msg.platform_id),
                    vec![OutboundBody::plain(notice)],
                    None,
                    traceparent.clone(),
                );
                self.store
                    .answer_inbound(row.id, &msg.channel, &msg.account_id, rows, Some("gave up after restarts".into()))
                    .await?;
                account.wake_delivery();
                if let Some(p) = processing {
                    self.spans.end_process(p, &msg.channel, &msg.account_id, &agent_id, "gave_up");
                }
                return Ok(());
            }
            let ask = Ask {
                channel: msg.channel.clone(),
                agent_id: agent_id.clone(),
                session_key: session_key.clone(),
                text: text.clone(),
                idempotency_key: format!("channel:{}:{}:{}#{attempt}", msg.channel, msg.account_id, msg.platform_id),
                files: files.clone(),
                traceparent: traceparent.clone(),
            };
            let prefix = format!("{}#{attempt}", msg.platform_id);
            let (progress, preview) = if streaming {
                let (progress, rx) = Progress::channel();
                let done = tokio_util::sync::CancellationToken::new();
                let task = tokio::spawn(crate::preview::run(
                    account.clone(),
                    self.first_target(account, msg),
                    rx,
                    done.clone(),
                    draft.clone(),
                    format!("{prefix}:draft"),
                ));
                (progress, Some((task, done)))
            } else {
                (Progress::none(), None)
            };
            let reply = self.with_typing(account, &msg.reply_target(), self.responder.respond(ask, progress)).await;
            if let Some((task, done)) = preview {
                done.cancel();
                draft = task.await.ok().flatten().or(draft);
            }
            let mut replaces = None;
            let outcome = match &reply {
                Reply::Failed(_) => "failed",
                Reply::Silent => "silent",
                Reply::Text(t) if is_silent(t) => "silent",
                Reply::WithMedia(t, m) if m.is_empty() && is_silent(t) => "silent",
                _ => "replied",
            };
            let (bodies, note) = match reply {
                Reply::Interrupted => {
                    attempt = self.store.start_inbound_attempt(row.id, &session_key).await?;
                    continue;
                }
                Reply::Text(t) if !is_silent(&t) => {
                    replaces = draft.take();
                    (self.text_bodies(account, t), None)
                }
                Reply::WithMedia(t, media) if !media.is_empty() || !is_silent(&t) => {
                    let mut bodies = if is_silent(&t) { Vec::new() } else { self.text_bodies(account, t) };
                    if !bodies.is_empty() {
                        replaces = draft.take();
                    }
                    bodies.extend(media.into_iter().map(|m| media_body(account, m)));
                    (bodies, None)
                }
                Reply::Text(_) | Reply::WithMedia(..) | Reply::Silent => {
                    (Vec::new(), Some("the agent chose not to reply".to_string()))
                }
                Reply::Failed(m) => (vec![OutboundBody::plain(format!("⚠️ {m}"))], Some(format!("failed: {m}"))),
            };
            let rows = self.outbound(account, msg, &prefix, bodies, replaces, traceparent);
            let any = !rows.is_empty();
            self.store.answer_inbound(row.id, &msg.channel, &msg.account_id, rows, note).await?;
            if any {
                account.wake_delivery();
            }
            if let Some(p) = processing {
                self.spans.end_process(p, &msg.channel, &msg.account_id, &agent_id, outcome);
            }
            return Ok(());
        }
    }

    /// In a group, what was said there since the assistant last answered (messages that did
    /// not address it, kept as context) goes before the message, so the agent follows along.
    async fn with_context(&self, row: &InboundRow, msg: &InboundMessage, text: String) -> Result<String, StoreError> {
        if msg.peer_kind == routing::PeerKind::Direct {
            return Ok(text);
        }
        let thread = msg.thread.as_ref().map(|(_, t)| t.as_str());
        let earlier = self
            .store
            .conversation_context(&msg.channel, &msg.account_id, &msg.peer_id, thread, row.id, GROUP_CONTEXT)
            .await?;
        let lines: Vec<String> = earlier
            .into_iter()
            .filter_map(|v| serde_json::from_value::<InboundMessage>(v).ok())
            .map(|m| agent_text(&m))
            .collect();
        if lines.is_empty() {
            return Ok(text);
        }
        Ok(format!("[Earlier in this chat, not addressed to you:]\n{}\n[Now, to you:]\n{text}", lines.join("\n")))
    }

    /// A text answer cut and formatted for the platform, with the account's prefix.
    fn text_bodies(&self, account: &Account, text: String) -> Vec<OutboundBody> {
        let text = match &account.settings.delivery.response_prefix {
            Some(p) => format!("{p} {text}"),
            None => text,
        };
        account.channel.prepare(&text, &account.settings.delivery)
    }

    /// Downloads the message's files (each within `mediaMaxMb`). Returns the files and, per
    /// attachment, the line the agent sees instead of the file when it could not be had
    /// (`None` for a file that was downloaded: the responder describes it).
    async fn fetch_files(&self, account: &Account, msg: &InboundMessage) -> (Vec<InboundFile>, Vec<Option<String>>) {
        let max = account.settings.delivery.media_max_bytes;
        let mut files = Vec::new();
        let mut notes = Vec::new();
        for (i, a) in msg.attachments.iter().enumerate() {
            let what = match &a.name {
                Some(n) => format!("{} \"{n}\"", a.kind),
                None => a.kind.clone(),
            };
            let fetched = if a.size.is_some_and(|s| s > max) {
                Err(format!("it is larger than the {} MB limit (mediaMaxMb)", max / (1024 * 1024)))
            } else {
                account.channel.fetch(a, max).await.map_err(|e| e.to_string())
            };
            match fetched {
                Ok(bytes) => {
                    files.push(InboundFile {
                        kind: a.kind.clone(),
                        name: a.name.clone(),
                        mime: a.mime.clone(),
                        bytes,
                        stem: file_stem(&msg.platform_id, i),
                    });
                    notes.push(None);
                }
                Err(e) => {
                    tracing::info!(channel = %msg.channel, kind = %a.kind, error = %e, "an attachment could not be downloaded");
                    notes.push(Some(format!("[{what} attached, but it could not be downloaded: {e}]")));
                }
            }
        }
        (files, notes)
    }

    /// Where a reply's first piece goes (the preview's draft too).
    fn first_target(&self, account: &Account, msg: &InboundMessage) -> Target {
        let base = msg.reply_target();
        let quote = account.settings.delivery.reply_to_mode != ReplyToMode::Off;
        Target { reply_to: if quote { base.reply_to.clone() } else { None }, ..base }
    }

    /// Queue rows for `bodies`, addressed as the reply mode says; the first replaces the
    /// preview's draft `replaces`, when there is one. `traceparent` names the span that
    /// answered, so the deliveries join its trace.
    fn outbound(
        &self,
        account: &Account,
        msg: &InboundMessage,
        prefix: &str,
        bodies: Vec<OutboundBody>,
        replaces: Option<String>,
        traceparent: Option<String>,
    ) -> Vec<NewOutbound> {
        let base = msg.reply_target();
        let mode = account.settings.delivery.reply_to_mode;
        let expires_at = clawline_store::now_ms() + OUTBOUND_TTL_MS;
        bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| {
                let quote = match mode {
                    ReplyToMode::Off => false,
                    ReplyToMode::First => i == 0,
                    ReplyToMode::All => true,
                };
                let target = Target {
                    reply_to: if quote { base.reply_to.clone() } else { None },
                    replaces: if i == 0 { replaces.clone() } else { None },
                    ..base.clone()
                };
                NewOutbound {
                    idempotency_key: format!("{prefix}:{i}"),
                    target: serde_json::to_value(&target).unwrap_or_default(),
                    body: serde_json::to_value(&body).unwrap_or_default(),
                    expires_at,
                    traceparent: traceparent.clone(),
                }
            })
            .collect()
    }

    /// Awaits `work` while keeping "typing…" up in the chat.
    async fn with_typing<T>(
        &self,
        account: &Account,
        target: &Target,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        if !account.channel.capabilities().typing {
            return work.await;
        }
        tokio::pin!(work);
        loop {
            let _ = account.channel.typing(target).await;
            tokio::select! {
                out = &mut work => return out,
                _ = tokio::time::sleep(TYPING_EVERY) => {}
            }
        }
    }
}

/// One worker per conversation (chat and thread), so its messages are answered in order.
fn lane_key(row: &InboundRow) -> String {
    let m = &row.message;
    let peer = m.get("peerId").and_then(|v| v.as_str()).unwrap_or_default();
    let thread = m.get("thread").and_then(|t| t.get(1)).and_then(|v| v.as_str()).unwrap_or_default();
    format!("{}:{}:{peer}:{thread}", row.channel, row.account_id)
}

/// A queued message carrying a file, or a line saying the platform cannot take files.
fn media_body(account: &Account, media: crate::media::Media) -> OutboundBody {
    if account.channel.capabilities().media {
        return OutboundBody { media: Some(media), ..OutboundBody::plain("") };
    }
    OutboundBody::plain(format!(
        "📎 {} (not attached: clawline cannot send files to {} yet)",
        media.url.as_deref().unwrap_or(&media.name),
        account.channel.channel()
    ))
}

/// A name for the `index`th file of a message, safe on any file system and the same on retries.
fn file_stem(platform_id: &str, index: usize) -> String {
    let clean: String =
        platform_id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).take(64).collect();
    format!("{clean}-{index}")
}

/// What the agent sees: the text (with who said it, in groups) and a line per attachment; a
/// button press says which button.
pub fn agent_text(msg: &InboundMessage) -> String {
    agent_text_with(msg, &[])
}

/// [`agent_text`] with attachment `i`'s line replaced by `notes[i]` (`Some`), or left out when
/// its file was downloaded (`None`: the responder describes the file).
fn agent_text_with(msg: &InboundMessage, notes: &[Option<String>]) -> String {
    let mut text = match &msg.button {
        Some(b) => match &b.label {
            Some(label) => format!("[pressed the button \"{label}\" (data: {})]", b.data),
            None => format!("[pressed a button (data: {})]", b.data),
        },
        None => msg.text.trim().to_string(),
    };
    for (i, a) in msg.attachments.iter().enumerate() {
        let line = match notes.get(i) {
            Some(Some(note)) => note.clone(),
            Some(None) => continue,
            None => {
                let name = a.name.as_deref().map(|n| format!(" \"{n}\"")).unwrap_or_default();
                format!("[{}{name} attached]", a.kind)
            }
        };
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&line);
    }
    if text.is_empty() && notes.iter().all(|n| n.is_some()) {
        text = "[an empty message]".to_string();
    }
    match msg.peer_kind {
        routing::PeerKind::Direct => text,
        _ => {
            let who = match &msg.sender.username {
                Some(u) => format!("{} (@{u})", msg.sender.name),
                None => msg.sender.name.clone(),
            };
            format!("{who}: {text}")
        }
    }
}
