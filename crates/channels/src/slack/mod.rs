//! Slack: Socket Mode (a WebSocket clawline opens, no public URL) or the Events API over HTTP
//! (signed requests to the gateway); replies through the Web API.
//!
//! Socket Mode: `apps.connections.open` with the app token gives a single-use URL; each
//! envelope's messages are journaled first and the envelope acknowledged after, so Slack
//! redelivers anything clawline did not keep (and the journal drops the redelivery of what it
//! did). A `disconnect` envelope (`refresh_requested`, `warning`, …) or a closed socket ends the
//! connection and the supervisor opens a new one. A socket quiet for 30 s is pinged; frames and
//! pongs are the progress signal, so a silent-but-open socket is replaced. HTTP: the signature
//! and a five-minute clock window are checked in constant time before anything is read, the
//! `url_verification` challenge is answered, and events are journaled before 200. A reply whose
//! `chat.postMessage` answer was lost is looked for by the key in its metadata before it is
//! posted again.

pub mod api;
pub mod config;
pub mod inbound;
pub mod outbound;

use std::sync::Mutex;
use std::time::Duration;

use clawline_core::config::channels::{DeliverySettings, SlackMode, SlackSettings};
use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as Ws;

use self::api::{Api, ApiError};
use crate::channel::{Capabilities, Channel, ConnectionError, SendError, Sent, WebhookReply};
use crate::link::Link;
use crate::message::{OutboundBody, Target};

/// How many pages of history a lost answer is looked for in before the reply is sent again.
const LOOKUP_PAGES: usize = 4;

/// One Slack app installation.
pub struct SlackChannel {
    account_id: String,
    settings: SlackSettings,
    api: Api,
    /// The bot's user id and the team, from `auth.test`.
    identity: Mutex<Option<(String, Option<String>)>>,
    keepalive: Duration,
}

fn connection_error(e: ApiError) -> ConnectionError {
    match e {
        ApiError::RateLimited { retry_after, method } => {
            ConnectionError::RateLimited { message: format!("{method}: rate limited"), retry_after }
        }
        ApiError::Refused { method, error }
            if matches!(
                error.as_str(),
                "invalid_auth" | "not_authed" | "account_inactive" | "token_revoked" | "not_allowed_token_type"
            ) =>
        {
            ConnectionError::Fatal(format!(
                "{method}: Slack refused the token ({error}); check channels.slack botToken/appToken"
            ))
        }
        other => ConnectionError::Transient(other.to_string()),
    }
}

impl SlackChannel {
    pub fn new(account_id: &str, settings: &SlackSettings, http: reqwest::Client) -> SlackChannel {
        SlackChannel {
            account_id: account_id.to_string(),
            settings: settings.clone(),
            api: Api::new(http, &settings.api_base),
            identity: Mutex::new(None),
            keepalive: config::KEEPALIVE,
        }
    }

    /// Changes how long the socket may be quiet before a ping (tests shorten it).
    pub fn with_keepalive(mut self, keepalive: Duration) -> SlackChannel {
        self.keepalive = keepalive;
        self
    }

    fn identity(&self) -> Option<(String, Option<String>)> {
        self.identity.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn who_am_i(&self, link: &Link) -> Result<(String, Option<String>), ConnectionError> {
        let me = self
            .api
            .call(&self.settings.bot_token, "auth.test", &serde_json::json!({}))
            .await
            .map_err(connection_error)?;
        let user = me["user_id"].as_str().unwrap_or_default().to_string();
        let team = me["team_id"].as_str().map(str::to_string);
        *self.identity.lock().unwrap_or_else(|p| p.into_inner()) = Some((user.clone(), team.clone()));
        link.health().set_identity(format!("{} ({})", me["user"].as_str().unwrap_or(&user), user));
        link.health().progress();
        Ok((user, team))
    }

    async fn socket(&self, link: &Link, bot: &str, team: Option<&str>) -> Result<(), ConnectionError> {
        let app = self
            .settings
            .app_token
            .as_ref()
            .ok_or_else(|| ConnectionError::Fatal("Socket Mode needs appToken".into()))?;
        let open =
            self.api.call(app, "apps.connections.open", &serde_json::json!({})).await.map_err(connection_error)?;
        let url = open["url"]
            .as_str()
            .ok_or_else(|| ConnectionError::Transient("apps.connections.open gave no url".into()))?;
        let ws = crate::tls::connect_ws(url).await?;
        let (mut tx, mut rx) = ws.split();
        let mut pinged = false;
        loop {
            let frame = tokio::select! {
                f = rx.next() => f,
                _ = tokio::time::sleep(self.keepalive), if !pinged => {
                    tx.send(Ws::Ping(Vec::new().into())).await.map_err(|e| ConnectionError::Transient(format!("the socket broke: {e}")))?;
                    pinged = true;
                    continue;
                }
            };
            let frame = match frame {
                Some(Ok(f)) => f,
                Some(Err(e)) => return Err(ConnectionError::Transient(format!("the socket broke: {e}"))),
                None => return Err(ConnectionError::Transient("Slack closed the socket".into())),
            };
            pinged = false;
            link.health().progress();
            let text = match frame {
                Ws::Text(t) => t.to_string(),
                Ws::Close(c) => return Err(ConnectionError::Transient(format!("Slack closed the socket: {c:?}"))),
                _ => continue,
            };
            let Ok(envelope) = serde_json::from_str::<serde_json::Value>(&text) else {
                tracing::warn!("Slack sent a frame that is not JSON; ignored (it will be redelivered if it mattered)");
                continue;
            };
            match envelope["type"].as_str() {
                Some("hello") => {}
                Some("disconnect") => {
                    return Err(ConnectionError::Transient(format!(
                        "Slack asked to reconnect ({})",
                        envelope["reason"].as_str().unwrap_or("no reason")
                    )));
                }
                _ => {
                    if envelope["type"] == "events_api" {
                        let event = &envelope["payload"]["event"];
                        let team = envelope["payload"]["team_id"].as_str().or(team);
                        let batch: Vec<_> =
                            inbound::to_inbound(event, team, &self.account_id, bot).into_iter().collect();
                        link.accept(batch, None)
                            .await
                            .map_err(|e| ConnectionError::Transient(format!("could not journal an event: {e}")))?;
                    }
                    // Acknowledge only what is kept (or what clawline has no use for).
                    if let Some(id) = envelope["envelope_id"].as_str() {
                        let ack = serde_json::json!({"envelope_id": id}).to_string();
                        tx.send(Ws::Text(ack.into()))
                            .await
                            .map_err(|e| ConnectionError::Transient(format!("the socket broke: {e}")))?;
                    }
                }
            }
        }
    }

    async fn handle_http(&self, link: &Link, headers: &http::HeaderMap, body: &[u8]) -> WebhookReply {
        let Some(secret) = &self.settings.signing_secret else { return 404.into() };
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let now = clawline_store::now_ms() / 1000;
        if !api::signature_ok(secret, header("x-slack-request-timestamp"), body, header("x-slack-signature"), now) {
            tracing::warn!(account = %self.account_id, "Slack event with a bad signature or an old timestamp refused");
            return 401.into();
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else { return 400.into() };
        if v["type"] == "url_verification" {
            return WebhookReply { status: 200, body: v["challenge"].as_str().map(str::to_string) };
        }
        let Some((bot, team)) = self.identity() else { return 503.into() };
        if v["type"] != "event_callback" {
            return 200.into();
        }
        let team = v["team_id"].as_str().map(str::to_string).or(team);
        let batch: Vec<_> =
            inbound::to_inbound(&v["event"], team.as_deref(), &self.account_id, &bot).into_iter().collect();
        match link.accept(batch, None).await {
            Ok(_) => 200.into(),
            Err(e) => {
                tracing::error!(error = %e, "could not journal a Slack event; Slack will retry");
                500.into()
            }
        }
    }
}

fn send_error(e: ApiError) -> SendError {
    match e {
        ApiError::RateLimited { retry_after, .. } => SendError::RateLimited { retry_after },
        ApiError::Refused { method, error }
            if matches!(
                error.as_str(),
                "channel_not_found"
                    | "not_in_channel"
                    | "is_archived"
                    | "msg_too_long"
                    | "no_text"
                    | "restricted_action"
                    | "cant_update_message"
                    | "message_not_found"
            ) =>
        {
            SendError::Permanent(format!("{method}: {error}"))
        }
        other => SendError::Transient(other.to_string()),
    }
}

impl Channel for SlackChannel {
    fn channel(&self) -> &'static str {
        "slack"
    }

    fn account_id(&self) -> &str {
        &self.account_id
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { edit: true, react: true, typing: false, threads: true, buttons: false, media: false }
    }

    fn stall_after(&self) -> Duration {
        match self.settings.mode {
            SlackMode::Socket => self.keepalive * 3,
            // Nothing to watch in HTTP mode but auth.test; the supervisor checks it hourly.
            SlackMode::Http => Duration::from_secs(7200),
        }
    }

    fn mode(&self) -> &'static str {
        match self.settings.mode {
            SlackMode::Socket => "socket",
            SlackMode::Http => "events-api",
        }
    }

    fn connect<'a>(&'a self, link: &'a Link) -> BoxFuture<'a, Result<(), ConnectionError>> {
        Box::pin(async move {
            let (bot, team) = self.who_am_i(link).await?;
            match self.settings.mode {
                SlackMode::Socket => self.socket(link, &bot, team.as_deref()).await,
                SlackMode::Http => loop {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    self.who_am_i(link).await?;
                },
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
        key: &'a str,
    ) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(async move {
            let v = self
                .api
                .call(&self.settings.bot_token, "chat.postMessage", &outbound::post(target, body, key))
                .await
                .map_err(send_error)?;
            Ok(Sent { message_id: v["ts"].as_str().unwrap_or_default().to_string() })
        })
    }

    fn find_sent<'a>(
        &'a self,
        target: &'a Target,
        key: &'a str,
        since_ms: i64,
    ) -> BoxFuture<'a, Result<Option<Sent>, SendError>> {
        Box::pin(async move {
            // Slack stamps a message when it takes it, a moment after the attempt started.
            let since = since_ms - 5_000;
            let mut cursor = None;
            for _ in 0..LOOKUP_PAGES {
                let (method, req) = outbound::recent(target, since, cursor.as_deref());
                let answer = match self.api.call(&self.settings.bot_token, method, &req).await {
                    Ok(v) => v,
                    Err(ApiError::Refused { error, .. })
                        if matches!(
                            error.as_str(),
                            "fatal_error" | "internal_error" | "service_unavailable" | "request_timeout"
                        ) =>
                    {
                        return Err(SendError::Transient(format!("{method}: {error}")));
                    }
                    Err(ApiError::Refused { method, error }) => {
                        tracing::warn!(
                            account = %self.account_id,
                            error,
                            "{method} refused, so clawline cannot check whether Slack already has a reply whose answer was lost; sending it again (give the app the *:history scopes to avoid doubles)"
                        );
                        return Ok(None);
                    }
                    Err(e) => return Err(send_error(e)),
                };
                let (found, next) = outbound::find_in_page(&answer, key);
                if let Some(ts) = found {
                    return Ok(Some(Sent { message_id: ts }));
                }
                match next {
                    Some(c) => cursor = Some(c),
                    None => return Ok(None),
                }
            }
            Ok(None)
        })
    }

    fn typing<'a>(&'a self, _target: &'a Target) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async { Ok(()) })
    }

    fn edit<'a>(
        &'a self,
        target: &'a Target,
        message_id: &'a str,
        body: &'a OutboundBody,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let req = serde_json::json!({"channel": target.peer_id, "ts": message_id, "text": body.text});
            self.api.call(&self.settings.bot_token, "chat.update", &req).await.map(|_| ()).map_err(send_error)
        })
    }

    fn react<'a>(
        &'a self,
        target: &'a Target,
        message_id: &'a str,
        emoji: &'a str,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let name = emoji.trim_matches(':');
            let req = serde_json::json!({"channel": target.peer_id, "timestamp": message_id, "name": name});
            match self.api.call(&self.settings.bot_token, "reactions.add", &req).await {
                Ok(_) => Ok(()),
                Err(ApiError::Refused { error, .. }) if error == "already_reacted" => Ok(()),
                Err(e) => Err(send_error(e)),
            }
        })
    }

    fn probe(&self) -> BoxFuture<'_, Result<serde_json::Value, SendError>> {
        Box::pin(async move {
            let me = self
                .api
                .call(&self.settings.bot_token, "auth.test", &serde_json::json!({}))
                .await
                .map_err(send_error)?;
            Ok(
                serde_json::json!({"team": me["team"], "user": me["user"], "userId": me["user_id"], "mode": self.mode()}),
            )
        })
    }

    fn pace(&self, _target: &Target) -> (Duration, u32) {
        config::PACE
    }

    fn webhook<'a>(
        &'a self,
        link: &'a Link,
        headers: &'a http::HeaderMap,
        body: &'a [u8],
    ) -> Option<BoxFuture<'a, WebhookReply>> {
        (self.settings.mode == SlackMode::Http)
            .then(|| Box::pin(self.handle_http(link, headers, body)) as BoxFuture<'a, WebhookReply>)
    }

    fn webhook_path(&self) -> Option<&str> {
        (self.settings.mode == SlackMode::Http).then_some(self.settings.webhook_path.as_str())
    }
}
