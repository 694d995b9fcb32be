//! Discord: the Gateway (v10, JSON) for events and REST for replies.
//!
//! A connection gets Hello, heartbeats at the interval it names (the first one after a random
//! fraction of it, as Discord asks), and Identifies — or Resumes with the session id, the last
//! sequence number and the resume URL when it has them, so events missed while reconnecting are
//! replayed instead of lost. The session is kept in the journal's cursor with each batch of
//! messages, so even a restart resumes within Discord's resume window (replayed messages the
//! journal already holds are dropped by their id). A heartbeat that goes unacknowledged until
//! the next one is due means the connection is a zombie: it is closed and resumed. Op 7 asks
//! for a resume, op 9 for a fresh session; close codes that cannot be fixed by retrying
//! (4004 bad token, 4014 intents not enabled) are fatal and say what to fix.

pub mod api;
pub mod config;
pub mod inbound;
pub mod outbound;

use std::sync::Mutex;
use std::time::Duration;

use clawline_core::config::channels::{DeliverySettings, DiscordSettings};
use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Message as Ws;

use self::api::{Api, ApiError};
use crate::channel::{Capabilities, Channel, ConnectionError, SendError, Sent};
use crate::link::Link;
use crate::message::{OutboundBody, Target};

/// What a Resume needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    id: String,
    seq: Option<u64>,
    resume_url: String,
}

/// One Discord bot.
pub struct DiscordChannel {
    account_id: String,
    settings: DiscordSettings,
    api: Api,
    session: Mutex<Option<Session>>,
    bot_id: Mutex<Option<String>>,
    /// The stored session is read once per process; after that memory is the truth (an
    /// invalidated session must not come back from the journal).
    restored: std::sync::atomic::AtomicBool,
    /// Guild channel id → its parent when it is a thread (`None`: a plain channel), from
    /// `GUILD_CREATE`, the `THREAD_*` dispatches, and `GET /channels/{id}` for one not seen yet
    /// (after a resume no `GUILD_CREATE` comes).
    threads: Mutex<std::collections::HashMap<String, Option<String>>>,
}

/// Channels read back after a fresh session, at most (the most recently active first).
const BACKFILL_CHANNELS: usize = 20;
/// Messages read back per channel, at most (one REST page).
const BACKFILL_PER_CHANNEL: usize = 100;

fn ws_error(e: impl std::fmt::Display) -> ConnectionError {
    ConnectionError::Transient(format!("the Gateway connection broke: {e}"))
}

impl DiscordChannel {
    pub fn new(account_id: &str, settings: &DiscordSettings, http: reqwest::Client) -> DiscordChannel {
        DiscordChannel {
            account_id: account_id.to_string(),
            settings: settings.clone(),
            api: Api::new(http, &settings.api_base, settings.token.clone()),
            session: Mutex::new(None),
            bot_id: Mutex::new(None),
            restored: std::sync::atomic::AtomicBool::new(false),
            threads: Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Remembers (or forgets) threads a dispatch describes.
    fn track_threads(&self, kind: &str, d: &serde_json::Value) {
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        let add = |threads: &mut std::collections::HashMap<String, Option<String>>, t: &serde_json::Value| {
            if let (Some(id), Some(parent)) = (t["id"].as_str(), t["parent_id"].as_str()) {
                threads.insert(id.to_string(), Some(parent.to_string()));
            }
        };
        match kind {
            "GUILD_CREATE" => {
                for c in d["channels"].as_array().into_iter().flatten() {
                    if let Some(id) = c["id"].as_str() {
                        threads.insert(id.to_string(), None);
                    }
                }
                d["threads"].as_array().into_iter().flatten().for_each(|t| add(&mut threads, t));
            }
            "THREAD_LIST_SYNC" => d["threads"].as_array().into_iter().flatten().for_each(|t| add(&mut threads, t)),
            "THREAD_CREATE" | "THREAD_UPDATE" => add(&mut threads, d),
            "THREAD_DELETE" => {
                if let Some(id) = d["id"].as_str() {
                    threads.remove(id);
                }
            }
            _ => {}
        }
    }

    /// The channel a thread sits in, if `channel` is a thread; asks Discord about a channel
    /// not seen yet (and remembers; a failed lookup is retried next time).
    async fn parent_of(&self, channel: &str) -> Option<String> {
        if let Some(known) = self.threads.lock().unwrap_or_else(|p| p.into_inner()).get(channel) {
            return known.clone();
        }
        let c = self.api.call(Method::GET, &format!("/channels/{channel}"), None).await.ok()?;
        // 10, 11, 12: announcement, public and private threads.
        let parent =
            matches!(c["type"].as_u64(), Some(10..=12)).then(|| c["parent_id"].as_str().map(str::to_string)).flatten();
        self.threads.lock().unwrap_or_else(|p| p.into_inner()).insert(channel.to_string(), parent.clone());
        parent
    }

    fn session(&self) -> Option<Session> {
        self.session.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_session(&self, s: Option<Session>) {
        *self.session.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }

    fn bot_id(&self) -> String {
        self.bot_id.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_default()
    }

    async fn gateway_url(&self) -> Result<String, ConnectionError> {
        if let Some(u) = &self.settings.gateway_url {
            return Ok(u.clone());
        }
        match self.api.call(Method::GET, "/gateway/bot", None).await {
            Ok(v) => v["url"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| ConnectionError::Transient("GET /gateway/bot gave no url".into())),
            Err(ApiError::Refused { status: 401, .. }) => {
                Err(ConnectionError::Fatal("Discord refused the bot token (401); check channels.discord.token".into()))
            }
            Err(ApiError::RateLimited { retry_after, .. }) => {
                Err(ConnectionError::RateLimited { message: "GET /gateway/bot rate limited".into(), retry_after })
            }
            Err(e) => Err(ConnectionError::Transient(e.to_string())),
        }
    }

    async fn run(&self, link: &Link) -> Result<(), ConnectionError> {
        if !self.restored.swap(true, std::sync::atomic::Ordering::Relaxed)
            && let Ok(Some(stored)) = link.cursor().await
            && let Ok(s) = serde_json::from_str::<Session>(&stored)
        {
            self.set_session(Some(s));
        }
        let session = self.session();
        let base = match &session {
            Some(s) => s.resume_url.clone(),
            None => self.gateway_url().await?,
        };
        let url = format!("{}/?v=10&encoding=json", base.trim_end_matches('/'));
        let ws = crate::tls::connect_ws(&url).await?;
        let (mut tx, mut rx) = ws.split();

        // Hello first.
        let hello = match tokio::time::timeout(Duration::from_secs(20), rx.next()).await {
            Ok(Some(Ok(Ws::Text(t)))) => serde_json::from_str::<serde_json::Value>(&t).unwrap_or_default(),
            Ok(Some(Ok(Ws::Close(c)))) => return Err(self.closed(c.map(|c| (u16::from(c.code), c.reason.to_string())))),
            _ => return Err(ConnectionError::Transient("the Gateway sent no Hello".into())),
        };
        let interval = Duration::from_millis(hello["d"]["heartbeat_interval"].as_u64().unwrap_or(41_250).max(100));
        link.health().progress();
        let identify = match &session {
            Some(s) => {
                serde_json::json!({"op": 6, "d": {"token": self.settings.token.expose(), "session_id": s.id, "seq": s.seq}})
            }
            None => serde_json::json!({"op": 2, "d": {
                "token": self.settings.token.expose(),
                "intents": config::INTENTS,
                "properties": {"os": std::env::consts::OS, "browser": "clawline", "device": "clawline"},
            }}),
        };
        tx.send(Ws::Text(identify.to_string().into())).await.map_err(ws_error)?;

        let mut seq: Option<u64> = session.as_ref().and_then(|s| s.seq);
        let first = interval.mul_f64(jitter());
        let mut next_beat = tokio::time::Instant::now() + first;
        let mut acked = true;
        loop {
            let frame = tokio::select! {
                f = rx.next() => f,
                _ = tokio::time::sleep_until(next_beat) => {
                    if !acked {
                        return Err(ConnectionError::Transient("stalled: the Gateway did not acknowledge a heartbeat (zombied connection); resuming".into()));
                    }
                    let beat = serde_json::json!({"op": 1, "d": seq});
                    tx.send(Ws::Text(beat.to_string().into())).await.map_err(ws_error)?;
                    acked = false;
                    next_beat = tokio::time::Instant::now() + interval;
                    continue;
                }
            };
            let text = match frame {
                Some(Ok(Ws::Text(t))) => t.to_string(),
                Some(Ok(Ws::Close(c))) => return Err(self.closed(c.map(|c| (u16::from(c.code), c.reason.to_string())))),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(ws_error(e)),
                None => return Err(ConnectionError::Transient("the Gateway closed the connection".into())),
            };
            let Ok(p) = serde_json::from_str::<serde_json::Value>(&text) else {
                // It may have been a dispatch: skipping it would lose its message for good (the
                // next one moves the sequence past it). Resuming from the last good sequence
                // makes Discord send it again.
                return Err(ConnectionError::Transient(format!(
                    "the Gateway sent a frame that is not JSON; resuming from sequence {}",
                    seq.map_or_else(|| "0".to_string(), |s| s.to_string())
                )));
            };
            match p["op"].as_u64() {
                Some(0) => {
                    if let Some(s) = p["s"].as_u64() {
                        seq = Some(seq.map_or(s, |old| old.max(s)));
                    }
                    self.dispatch(link, &p, seq).await?;
                }
                Some(1) => {
                    let beat = serde_json::json!({"op": 1, "d": seq});
                    tx.send(Ws::Text(beat.to_string().into())).await.map_err(ws_error)?;
                }
                Some(11) => {
                    acked = true;
                    link.health().progress();
                }
                Some(7) => {
                    return Err(ConnectionError::Transient("Discord asked to reconnect (op 7); resuming".into()));
                }
                Some(9) => {
                    if p["d"] != true {
                        self.set_session(None);
                    }
                    // Discord asks for a short random wait before identifying again.
                    tokio::time::sleep(Duration::from_millis(1000 + (jitter() * 4000.0) as u64)).await;
                    return Err(ConnectionError::Transient("Discord invalidated the session (op 9)".into()));
                }
                _ => {}
            }
        }
    }

    async fn dispatch(&self, link: &Link, p: &serde_json::Value, seq: Option<u64>) -> Result<(), ConnectionError> {
        let kind = p["t"].as_str().unwrap_or_default();
        let d = &p["d"];
        match kind {
            "READY" => {
                let bot = d["user"]["id"].as_str().unwrap_or_default().to_string();
                link.health().set_identity(format!("{} ({bot})", d["user"]["username"].as_str().unwrap_or("bot")));
                *self.bot_id.lock().unwrap_or_else(|p| p.into_inner()) = Some(bot);
                let s = Session {
                    id: d["session_id"].as_str().unwrap_or_default().to_string(),
                    seq,
                    resume_url: d["resume_gateway_url"].as_str().unwrap_or_default().to_string(),
                };
                self.set_session(Some(s.clone()));
                self.store_session(link, Vec::new()).await?;
                link.health().progress();
                // A fresh session replays nothing: what was said while there was none is read back.
                self.backfill(link).await;
            }
            "RESUMED" => link.health().progress(),
            "MESSAGE_CREATE" => {
                if let Some(s) = self.session.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                    s.seq = seq;
                }
                let mut batch: Vec<_> = inbound::to_inbound(d, &self.account_id, &self.bot_id()).into_iter().collect();
                for m in &mut batch {
                    // A thread is its own conversation; bindings and group rules fall back to its channel.
                    if m.guild_id.is_some()
                        && let Some(parent) = self.parent_of(&m.peer_id).await
                    {
                        m.parent = Some((clawline_core::routing::PeerKind::Channel, parent));
                    }
                }
                self.store_session(link, batch).await?;
            }
            _ => {
                self.track_threads(kind, d);
                if let Some(s) = self.session.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                    s.seq = seq;
                }
            }
        }
        Ok(())
    }

    /// Reads back, through REST, the messages posted since the last one journaled in each
    /// recently active channel (at most [`BACKFILL_CHANNELS`] channels and
    /// [`BACKFILL_PER_CHANNEL`] messages each): a new session (the old one could not be resumed,
    /// or the gateway was down longer than Discord keeps one) starts with no replay, and those
    /// messages would otherwise be lost. The journal's key drops any already kept. Best effort:
    /// a failed read is logged and the session goes on.
    async fn backfill(&self, link: &Link) {
        let rows = match link.recent(500).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "Discord backfill: could not read the journal");
                return;
            }
        };
        // The newest message journaled per channel (rows come newest first).
        let mut last: Vec<(String, u64)> = Vec::new();
        for r in &rows {
            let (Some(peer), Ok(id)) = (r.message["peerId"].as_str(), r.platform_id.parse::<u64>()) else { continue };
            if !last.iter().any(|(p, _)| p == peer) && last.len() < BACKFILL_CHANNELS {
                last.push((peer.to_string(), id));
            }
        }
        let bot = self.bot_id();
        for (channel, after) in last {
            let path = format!("/channels/{channel}/messages?after={after}&limit={BACKFILL_PER_CHANNEL}");
            let listed = match self.api.call(Method::GET, &path, None).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::info!(channel, error = %e, "Discord backfill: could not read the channel");
                    continue;
                }
            };
            // Discord lists newest first; the journal keeps them in the order they were said.
            let mut found: Vec<_> = listed
                .as_array()
                .into_iter()
                .flatten()
                .rev()
                .filter_map(|m| inbound::to_inbound(m, &self.account_id, &bot))
                .collect();
            for m in &mut found {
                if m.guild_id.is_some()
                    && let Some(parent) = self.parent_of(&m.peer_id).await
                {
                    m.parent = Some((clawline_core::routing::PeerKind::Channel, parent));
                }
            }
            if !found.is_empty() {
                tracing::info!(
                    channel,
                    count = found.len(),
                    "Discord backfill: messages from while no session was open"
                );
                if let Err(e) = link.accept(found, None).await {
                    tracing::warn!(error = %e, "Discord backfill: could not journal");
                }
            }
        }
    }

    /// Journals `batch` together with the session (so a restart resumes after it).
    async fn store_session(
        &self,
        link: &Link,
        batch: Vec<crate::message::InboundMessage>,
    ) -> Result<(), ConnectionError> {
        let cursor = self.session().and_then(|s| serde_json::to_string(&s).ok());
        link.accept(batch, cursor)
            .await
            .map(|_| ())
            .map_err(|e| ConnectionError::Transient(format!("could not journal a message: {e}")))
    }

    fn closed(&self, close: Option<(u16, String)>) -> ConnectionError {
        let Some((code, reason)) = close else {
            return ConnectionError::Transient("the Gateway closed the connection".into());
        };
        if config::FRESH_CLOSE.contains(&code) {
            self.set_session(None);
        }
        if config::FATAL_CLOSE.contains(&code) {
            let fix = match code {
                4004 => "check channels.discord.token",
                4014 => "enable the Message Content intent for the bot in the Discord Developer Portal",
                _ => "see Discord's close codes",
            };
            return ConnectionError::Fatal(format!("Discord closed the Gateway with {code} {reason}: {fix}"));
        }
        ConnectionError::Transient(format!("Discord closed the Gateway with {code} {reason}"))
    }
}

/// A random fraction in [0, 1).
fn jitter() -> f64 {
    f64::from((uuid::Uuid::new_v4().as_u128() & 0xffff) as u16) / 65_536.0
}

fn send_error(e: ApiError) -> SendError {
    match e {
        ApiError::RateLimited { retry_after, .. } => SendError::RateLimited { retry_after },
        ApiError::Refused { status, code, message, route } if status >= 500 || status == 401 => {
            SendError::Transient(format!("{route}: {status} (code {code}) {message}"))
        }
        ApiError::Refused { status, code, message, route } => {
            SendError::Permanent(format!("{route}: {status} (code {code}) {message}"))
        }
        ApiError::Transport { detail, .. } => SendError::Transient(detail),
    }
}

impl Channel for DiscordChannel {
    fn channel(&self) -> &'static str {
        "discord"
    }

    fn account_id(&self) -> &str {
        &self.account_id
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { edit: true, react: true, typing: true, threads: true, buttons: false, media: true }
    }

    fn stall_after(&self) -> Duration {
        // Heartbeat ACKs are the progress signal; Discord's interval is about 41 s.
        Duration::from_secs(100)
    }

    fn mode(&self) -> &'static str {
        "gateway"
    }

    fn connect<'a>(&'a self, link: &'a Link) -> BoxFuture<'a, Result<(), ConnectionError>> {
        Box::pin(self.run(link))
    }

    fn prepare(&self, markdown: &str, delivery: &DeliverySettings) -> Vec<OutboundBody> {
        outbound::prepare(markdown, delivery, self.settings.max_lines)
    }

    fn send<'a>(
        &'a self,
        target: &'a Target,
        body: &'a OutboundBody,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(async move {
            let path = format!("/channels/{}/messages", target.peer_id);
            let v = match &body.media {
                None => self.api.call(Method::POST, &path, Some(&outbound::create(target, body, key))).await,
                Some(m) => match (&m.path, &m.url) {
                    (Some(file), _) => {
                        let bytes = crate::media::read_upload(file, outbound::MAX_UPLOAD, "Discord").await?;
                        let (ct, form) = outbound::create_with_file(target, body, key, &m.name, &bytes);
                        self.api.call_multipart(Method::POST, &path, ct, form).await
                    }
                    (None, Some(url)) => {
                        let text = if body.text.is_empty() { url.clone() } else { format!("{}\n{url}", body.text) };
                        let link = OutboundBody { text, media: None, ..body.clone() };
                        self.api.call(Method::POST, &path, Some(&outbound::create(target, &link, key))).await
                    }
                    (None, None) => return Err(SendError::Permanent("the file names neither a path nor a URL".into())),
                },
            }
            .map_err(send_error)?;
            Ok(Sent { message_id: v["id"].as_str().unwrap_or_default().to_string() })
        })
    }

    fn fetch<'a>(
        &'a self,
        attachment: &'a crate::message::Attachment,
        max_bytes: u64,
    ) -> BoxFuture<'a, Result<Vec<u8>, SendError>> {
        Box::pin(async move {
            if !attachment.file_id.starts_with("https://") && !attachment.file_id.starts_with("http://") {
                return Err(SendError::Permanent("the attachment has no URL".into()));
            }
            self.api.download(&attachment.file_id, max_bytes).await.map_err(send_error)
        })
    }

    fn forget_session(&self) {
        self.set_session(None);
        self.threads.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn typing<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            self.api
                .call(Method::POST, &format!("/channels/{}/typing", target.peer_id), None)
                .await
                .map(|_| ())
                .map_err(send_error)
        })
    }

    fn edit<'a>(
        &'a self,
        target: &'a Target,
        message_id: &'a str,
        body: &'a OutboundBody,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let path = format!("/channels/{}/messages/{message_id}", target.peer_id);
            self.api
                .call(Method::PATCH, &path, Some(&serde_json::json!({"content": body.text})))
                .await
                .map(|_| ())
                .map_err(send_error)
        })
    }

    fn react<'a>(
        &'a self,
        target: &'a Target,
        message_id: &'a str,
        emoji: &'a str,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let encoded: String = emoji.bytes().map(|b| format!("%{b:02X}")).collect();
            let path = format!("/channels/{}/messages/{message_id}/reactions/{encoded}/@me", target.peer_id);
            self.api.call(Method::PUT, &path, None).await.map(|_| ()).map_err(send_error)
        })
    }

    fn probe(&self) -> BoxFuture<'_, Result<serde_json::Value, SendError>> {
        Box::pin(async move {
            let me = self.api.call(Method::GET, "/users/@me", None).await.map_err(send_error)?;
            Ok(serde_json::json!({"id": me["id"], "username": me["username"], "resumable": self.session().is_some()}))
        })
    }

    fn pace(&self, _target: &Target) -> (Duration, u32) {
        config::PACE
    }
}
