//! Telegram, through the Bot API: long polling by default, or a webhook when `webhookUrl` is
//! set; DMs, groups, forum topics; replies as HTML; typing, edits (previews) and reactions;
//! inline-button presses (answered with `answerCallbackQuery`, then handled as a message);
//! files in (`getFile` + download, within `mediaMaxMb`) and out (`sendPhoto`, `sendDocument`,
//! `sendVoice`, `sendAudio`, `sendVideo`, uploaded as multipart or passed by URL).
//!
//! Polling: `getUpdates` with the stored offset; each batch is journaled together with the
//! next offset before the next call confirms it to Telegram, so a crash can neither lose nor
//! repeat a message. An answered poll, even an empty one, is the connection's progress; a poll
//! that hangs past its timeout plus a margin is replaced by the watchdog. Webhook: the gateway
//! hands each POST here; the secret header is checked in constant time, the update journaled,
//! and only then 200 is answered (Telegram retries anything else); `getWebhookInfo` once a
//! minute is the progress signal.

pub mod api;
pub mod config;
pub mod inbound;
pub mod outbound;

use std::sync::Mutex;
use std::time::Duration;

use clawline_core::config::channels::{DeliverySettings, TelegramSettings, WebhookSettings};
use futures_util::future::BoxFuture;

use self::api::{Api, ApiError, Update, User, WebhookInfo};
use self::inbound::BotIdentity;
use crate::channel::{Capabilities, Channel, ConnectionError, SendError, Sent};
use crate::link::Link;
use crate::message::{OutboundBody, Target};

/// One Telegram bot account.
pub struct TelegramChannel {
    account_id: String,
    api: Api,
    poll_timeout: u64,
    webhook: Option<WebhookSettings>,
    identity: Mutex<Option<BotIdentity>>,
    stall_margin: Duration,
}

fn connection_error(e: ApiError) -> ConnectionError {
    match &e {
        ApiError::Refused { code: 401 | 404, .. } => ConnectionError::Fatal(format!(
            "Telegram refused the bot token ({}); check channels.telegram.botToken",
            e.description()
        )),
        ApiError::Refused { code: 409, .. } => ConnectionError::Transient(format!(
            "{e}: another process is using this bot token (a second gateway, or a webhook set elsewhere)"
        )),
        ApiError::Refused { code: 429, retry_after, .. } => ConnectionError::RateLimited {
            message: e.to_string(),
            retry_after: Duration::from_secs(retry_after.unwrap_or(5).max(1)),
        },
        _ => ConnectionError::Transient(e.to_string()),
    }
}

impl TelegramChannel {
    pub fn new(account_id: &str, settings: &TelegramSettings, http: reqwest::Client) -> TelegramChannel {
        TelegramChannel {
            account_id: account_id.to_string(),
            api: Api::new(http, &settings.api_root, settings.token.clone()),
            poll_timeout: settings.poll_timeout_secs,
            webhook: settings.webhook.clone(),
            identity: Mutex::new(None),
            stall_margin: config::STALL_MARGIN,
        }
    }

    /// How long past the poll timeout a silent poll is tolerated (tests shorten it).
    pub fn with_stall_margin(mut self, margin: Duration) -> TelegramChannel {
        self.stall_margin = margin;
        self
    }

    fn identity(&self) -> Option<BotIdentity> {
        self.identity.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn who_am_i(&self, link: &Link) -> Result<BotIdentity, ConnectionError> {
        let me: User =
            self.api.call("getMe", &serde_json::json!({}), Duration::from_secs(15)).await.map_err(connection_error)?;
        let id = BotIdentity { id: me.id, username: me.username.unwrap_or_default() };
        *self.identity.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.clone());
        link.health().set_identity(format!("@{}", id.username));
        link.health().progress();
        Ok(id)
    }

    async fn poll(&self, link: &Link, bot: &BotIdentity) -> Result<(), ConnectionError> {
        // A webhook left set (by another tool, or webhook mode before) makes getUpdates fail.
        let _: bool = self
            .api
            .call("deleteWebhook", &serde_json::json!({"drop_pending_updates": false}), Duration::from_secs(15))
            .await
            .map_err(connection_error)?;
        let stored =
            link.cursor().await.map_err(|e| ConnectionError::Transient(format!("could not read the offset: {e}")))?;
        let mut offset: i64 = stored.and_then(|c| c.parse().ok()).unwrap_or(0);
        let wait = Duration::from_secs(self.poll_timeout) + self.stall_margin;
        loop {
            let req = serde_json::json!({
                "offset": offset, "timeout": self.poll_timeout, "allowed_updates": config::ALLOWED_UPDATES,
            });
            let raw: Vec<serde_json::Value> = match self.api.call("getUpdates", &req, wait).await {
                Ok(raw) => raw,
                Err(ApiError::Transport { detail, .. }) if detail == "timed out" => {
                    return Err(ConnectionError::Transient(format!(
                        "stalled: getUpdates did not answer within {:.1} s (long-poll timeout {} s)",
                        wait.as_secs_f64(),
                        self.poll_timeout
                    )));
                }
                Err(e) => return Err(connection_error(e)),
            };
            link.health().progress();
            if raw.is_empty() {
                continue;
            }
            let (batch, next, callbacks) = self.read_batch(&raw, offset, bot);
            if next > offset {
                link.accept(batch, Some(next.to_string()))
                    .await
                    .map_err(|e| ConnectionError::Transient(format!("could not journal messages: {e}")))?;
                offset = next;
            }
            for id in callbacks {
                let _ = self
                    .api
                    .call::<bool>(
                        "answerCallbackQuery",
                        &serde_json::json!({"callback_query_id": id}),
                        Duration::from_secs(10),
                    )
                    .await;
            }
        }
    }

    /// Messages in a getUpdates answer (those below `offset` were confirmed before and are
    /// skipped), the offset that confirms the whole answer, and callback queries to answer.
    fn read_batch(
        &self,
        raw: &[serde_json::Value],
        offset: i64,
        bot: &BotIdentity,
    ) -> (Vec<crate::message::InboundMessage>, i64, Vec<String>) {
        let mut next = offset;
        let mut batch = Vec::new();
        let mut callbacks = Vec::new();
        for value in raw {
            let Some(update_id) = value.get("update_id").and_then(|v| v.as_i64()) else {
                tracing::warn!("Telegram sent an update without update_id; skipped");
                continue;
            };
            if update_id < offset {
                continue;
            }
            next = next.max(update_id.saturating_add(1));
            match serde_json::from_value::<Update>(value.clone()) {
                Ok(u) => {
                    if let Some(cb) = &u.callback_query {
                        callbacks.push(cb.id.clone());
                    }
                    if let Some(m) = inbound::to_inbound(&u, &self.account_id, bot) {
                        batch.push(m);
                    }
                }
                Err(e) => tracing::warn!(update_id, error = %e, "Telegram update not understood; skipped"),
            }
        }
        (batch, next, callbacks)
    }

    async fn keep_webhook(&self, link: &Link, hook: &WebhookSettings) -> Result<(), ConnectionError> {
        let mut req = serde_json::json!({"url": hook.url, "allowed_updates": config::ALLOWED_UPDATES, "drop_pending_updates": false});
        if let Some(s) = &hook.secret {
            req["secret_token"] = serde_json::json!(s.expose());
        }
        let _: bool = self.api.call("setWebhook", &req, Duration::from_secs(15)).await.map_err(connection_error)?;
        link.health().progress();
        loop {
            tokio::time::sleep(config::WEBHOOK_CHECK_EVERY).await;
            let info: WebhookInfo = self
                .api
                .call("getWebhookInfo", &serde_json::json!({}), Duration::from_secs(15))
                .await
                .map_err(connection_error)?;
            if info.url != hook.url {
                return Err(ConnectionError::Transient(format!(
                    "the webhook was changed to `{}` by someone else; setting it again",
                    info.url
                )));
            }
            link.health().progress();
            if let Some(err) = info.last_error_message {
                tracing::warn!(pending = info.pending_update_count, error = %err, "Telegram reports webhook delivery errors");
            }
        }
    }

    async fn handle_webhook(&self, link: &Link, headers: &http::HeaderMap, body: &[u8]) -> u16 {
        let Some(hook) = &self.webhook else { return 404 };
        let given = headers.get(config::SECRET_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if !hook.secret.as_ref().is_some_and(|s| s.matches(given)) {
            tracing::warn!(account = %self.account_id, "Telegram webhook request with a wrong or missing secret token refused");
            return 401;
        }
        let Some(bot) = self.identity() else { return 503 };
        let value: serde_json::Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => return 400,
        };
        let update: Update = match serde_json::from_value(value) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "Telegram webhook update not understood; acknowledged and skipped");
                return 200;
            }
        };
        let batch: Vec<_> = inbound::to_inbound(&update, &self.account_id, &bot).into_iter().collect();
        match link.accept(batch, None).await {
            Ok(_) => 200,
            Err(e) => {
                tracing::error!(error = %e, "could not journal a Telegram webhook update; Telegram will retry");
                500
            }
        }
    }
}

impl Channel for TelegramChannel {
    fn channel(&self) -> &'static str {
        "telegram"
    }

    fn account_id(&self) -> &str {
        &self.account_id
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { edit: true, react: true, typing: true, threads: true, buttons: true, media: true }
    }

    fn stall_after(&self) -> Duration {
        match self.webhook {
            Some(_) => config::WEBHOOK_CHECK_EVERY * 3,
            None => Duration::from_secs(self.poll_timeout) + self.stall_margin,
        }
    }

    fn mode(&self) -> &'static str {
        if self.webhook.is_some() { "webhook" } else { "polling" }
    }

    fn connect<'a>(&'a self, link: &'a Link) -> BoxFuture<'a, Result<(), ConnectionError>> {
        Box::pin(async move {
            let bot = self.who_am_i(link).await?;
            match &self.webhook {
                Some(hook) => self.keep_webhook(link, hook).await,
                None => self.poll(link, &bot).await,
            }
        })
    }

    fn prepare(&self, markdown: &str, delivery: &DeliverySettings) -> Vec<OutboundBody> {
        outbound::prepare(markdown, delivery)
    }

    fn send<'a>(
        &'a self,
        target: &'a Target,
        body: &'a OutboundBody,
        _key: &'a str,
    ) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(async move {
            match &body.media {
                Some(m) => outbound::send_media(&self.api, target, body, m).await,
                None => outbound::send(&self.api, target, body).await,
            }
        })
    }

    fn fetch<'a>(
        &'a self,
        attachment: &'a crate::message::Attachment,
        max_bytes: u64,
    ) -> BoxFuture<'a, Result<Vec<u8>, SendError>> {
        Box::pin(outbound::fetch(&self.api, &attachment.file_id, max_bytes))
    }

    fn typing<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(outbound::typing(&self.api, target))
    }

    fn edit<'a>(
        &'a self,
        target: &'a Target,
        message_id: &'a str,
        body: &'a OutboundBody,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(outbound::edit(&self.api, target, message_id, body))
    }

    fn react<'a>(
        &'a self,
        target: &'a Target,
        message_id: &'a str,
        emoji: &'a str,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(outbound::react(&self.api, target, message_id, emoji))
    }

    fn probe(&self) -> BoxFuture<'_, Result<serde_json::Value, SendError>> {
        Box::pin(async move {
            let me: serde_json::Value = self
                .api
                .call("getMe", &serde_json::json!({}), Duration::from_secs(15))
                .await
                .map_err(outbound::classify)?;
            let hook: serde_json::Value = self
                .api
                .call("getWebhookInfo", &serde_json::json!({}), Duration::from_secs(15))
                .await
                .map_err(outbound::classify)?;
            Ok(serde_json::json!({"bot": me, "webhook": hook, "mode": self.mode()}))
        })
    }

    /// Telegram asks bots to stay near one message per second per chat; edits count.
    fn preview_every(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn pace(&self, target: &Target) -> (Duration, u32) {
        config::pace(target.peer_kind)
    }

    fn webhook<'a>(
        &'a self,
        link: &'a Link,
        headers: &'a http::HeaderMap,
        body: &'a [u8],
    ) -> Option<BoxFuture<'a, crate::channel::WebhookReply>> {
        self.webhook.as_ref()?;
        Some(Box::pin(async move { self.handle_webhook(link, headers, body).await.into() }))
    }

    fn webhook_path(&self) -> Option<&str> {
        self.webhook.as_ref().map(|w| w.path.as_str())
    }
}
