//! Matrix, through the client-server API v3: an access token or a password login, `/sync` long
//! polling with the `since` token journaled, invites accepted as `autoJoin` says, DMs and
//! rooms, threads, `m.notice` replies, typing, reactions and edits.
//!
//! The first sync of an account only learns where "now" is (its timeline is history, never
//! answered); every later batch is journaled together with its `next_batch` before the next
//! sync asks for more, so a crash neither loses nor repeats a message. An answered sync, even
//! an empty one, is progress; one that hangs past its timeout plus a margin is replaced.
//! Sends use the queue row's key as the transaction id, so a resend is the same event.
//! End-to-end encryption is not supported: encrypted rooms are logged, counted in status as
//! the last error, and not answered.

pub mod api;
pub mod config;
pub mod inbound;
pub mod outbound;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use clawline_core::config::channels::{AutoJoin, DeliverySettings, MatrixSettings};
use clawline_core::secret::SecretString;
use futures_util::future::BoxFuture;
use reqwest::Method;

use self::api::{Api, ApiError, Sync, segment};
use self::inbound::Me;
use crate::channel::{Capabilities, Channel, ConnectionError, SendError, Sent};
use crate::link::Link;
use crate::message::{InboundMessage, OutboundBody, Target};

/// The largest file sent to a homeserver (Synapse's default `max_upload_size`).
const MAX_UPLOAD: u64 = 50 * 1024 * 1024;

/// One Matrix account.
pub struct MatrixChannel {
    account_id: String,
    settings: MatrixSettings,
    http: reqwest::Client,
    /// The client with the account's token (after login when a password is used).
    api: Mutex<Option<Api>>,
    me: Mutex<Option<Me>>,
    rooms: Mutex<RoomFacts>,
    stall_margin: Duration,
    sync_timeout_ms: u64,
}

/// What syncs taught us about rooms.
#[derive(Default)]
struct RoomFacts {
    /// Rooms `m.direct` lists.
    direct: HashSet<String>,
    joined_members: HashMap<String, u32>,
    encrypted: HashSet<String>,
}

impl RoomFacts {
    /// Direct when `m.direct` lists the room or the invite we accepted said so. Member counts
    /// are not used: a group of two is still a group.
    fn is_direct(&self, room: &str) -> bool {
        self.direct.contains(room)
    }
}

fn connection_error(e: ApiError) -> ConnectionError {
    match &e {
        ApiError::Refused { status: 429, retry_after, .. } => ConnectionError::RateLimited {
            message: e.to_string(),
            retry_after: retry_after.unwrap_or(Duration::from_secs(5)),
        },
        ApiError::Refused { errcode, .. } if errcode == "M_FORBIDDEN" => {
            ConnectionError::Fatal(format!("{e}; check channels.matrix.userId and password"))
        }
        ApiError::Transport { detail, .. } if detail == "timed out" => {
            ConnectionError::Transient(format!("stalled: {e} (the sync did not answer in time)"))
        }
        _ => ConnectionError::Transient(e.to_string()),
    }
}

impl MatrixChannel {
    pub fn new(account_id: &str, settings: &MatrixSettings, http: reqwest::Client) -> MatrixChannel {
        MatrixChannel {
            account_id: account_id.to_string(),
            settings: settings.clone(),
            http,
            api: Mutex::new(None),
            me: Mutex::new(None),
            rooms: Mutex::new(RoomFacts::default()),
            stall_margin: config::STALL_MARGIN,
            sync_timeout_ms: config::SYNC_TIMEOUT_MS,
        }
    }

    /// Shortens the sync long poll and its stall margin (tests).
    pub fn with_sync_timing(mut self, sync_timeout: Duration, stall_margin: Duration) -> MatrixChannel {
        self.sync_timeout_ms = sync_timeout.as_millis() as u64;
        self.stall_margin = stall_margin;
        self
    }

    fn api(&self) -> Option<Api> {
        self.api.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn me(&self) -> Option<Me> {
        self.me.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn facts(&self) -> std::sync::MutexGuard<'_, RoomFacts> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The account's client: the configured token, or a password login.
    async fn login(&self) -> Result<Api, ConnectionError> {
        if let Some(api) = self.api() {
            return Ok(api);
        }
        let s = &self.settings;
        let bare = Api::new(self.http.clone(), &s.homeserver, SecretString::new(String::new()));
        let api = match (&s.access_token, &s.password, &s.user_id) {
            (Some(token), _, _) => bare.with_token(token.clone()),
            (None, Some(password), Some(user)) => {
                let body = serde_json::json!({
                    "type": "m.login.password",
                    "identifier": {"type": "m.id.user", "user": user},
                    "password": password.expose(),
                    "device_id": s.device_id,
                    "initial_device_display_name": s.device_name,
                });
                let answer: serde_json::Value = bare
                    .call(Method::POST, "/login", Some(&body), Duration::from_secs(30))
                    .await
                    .map_err(connection_error)?;
                let token = answer["access_token"]
                    .as_str()
                    .ok_or_else(|| ConnectionError::Transient("the login answer has no access_token".into()))?;
                bare.with_token(SecretString::new(token.to_string()))
            }
            _ => return Err(ConnectionError::Fatal("no accessToken, and no userId + password to log in".into())),
        };
        *self.api.lock().unwrap_or_else(|p| p.into_inner()) = Some(api.clone());
        Ok(api)
    }

    async fn run(&self, link: &Link) -> Result<(), ConnectionError> {
        let api = self.login().await?;
        let who: serde_json::Value = match api.call(Method::GET, "/account/whoami", None, Duration::from_secs(15)).await
        {
            Ok(w) => w,
            Err(e) if e.errcode() == Some("M_UNKNOWN_TOKEN") => {
                // A login's token can be replaced by logging in again; a configured one cannot.
                *self.api.lock().unwrap_or_else(|p| p.into_inner()) = None;
                return Err(if self.settings.access_token.is_some() {
                    ConnectionError::Fatal(format!("{e}; the access token is no longer valid"))
                } else {
                    ConnectionError::Transient(format!("{e}; logging in again"))
                });
            }
            Err(e) => return Err(connection_error(e)),
        };
        let user_id = who["user_id"].as_str().unwrap_or_default().to_string();
        *self.me.lock().unwrap_or_else(|p| p.into_inner()) = Some(Me { user_id: user_id.clone() });
        link.health().set_identity(user_id.clone());
        link.health().progress();
        let me = Me { user_id };
        // Which rooms are DMs is account data (`m.direct`), kept on the server across restarts.
        let path = format!("/user/{}/account_data/m.direct", segment(&me.user_id));
        match api.call::<serde_json::Value>(Method::GET, &path, None, Duration::from_secs(15)).await {
            Ok(map) => self.remember_direct(&map),
            Err(e) if e.errcode() == Some("M_NOT_FOUND") => {}
            Err(e) => return Err(connection_error(e)),
        }

        let stored = link
            .cursor()
            .await
            .map_err(|e| ConnectionError::Transient(format!("could not read the sync token: {e}")))?;
        let mut since = match stored {
            Some(s) => s,
            None => {
                // First start: learn where now is; what came before is history, not to answer.
                let path =
                    format!("/sync?timeout=0&filter={}", segment(&config::filter(self.settings.initial_sync_limit)));
                let first: Sync =
                    api.call(Method::GET, &path, None, Duration::from_secs(60)).await.map_err(connection_error)?;
                self.learn(&api, &first).await;
                link.accept(Vec::new(), Some(first.next_batch.clone()))
                    .await
                    .map_err(|e| ConnectionError::Transient(format!("could not store the sync token: {e}")))?;
                first.next_batch
            }
        };
        let filter = segment(&config::filter(50));
        let wait = Duration::from_millis(self.sync_timeout_ms) + self.stall_margin;
        loop {
            let path = format!("/sync?since={}&timeout={}&filter={filter}", segment(&since), self.sync_timeout_ms);
            let batch: Sync = match api.call(Method::GET, &path, None, wait).await {
                Ok(b) => b,
                Err(e) if e.errcode() == Some("M_UNKNOWN_TOKEN") => {
                    *self.api.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    return Err(ConnectionError::Transient(format!("{e}; logging in again")));
                }
                Err(e) => return Err(connection_error(e)),
            };
            link.health().progress();
            self.learn(&api, &batch).await;
            let messages = self.messages(&batch, &me);
            if batch.next_batch != since || !messages.is_empty() {
                link.accept(messages, Some(batch.next_batch.clone()))
                    .await
                    .map_err(|e| ConnectionError::Transient(format!("could not journal messages: {e}")))?;
                since = batch.next_batch;
            }
        }
    }

    /// Room facts from a sync, and invites accepted per `autoJoin`.
    async fn learn(&self, api: &Api, sync: &Sync) {
        let mut newly_encrypted = Vec::new();
        {
            let mut facts = self.facts();
            for e in sync.account_data.events.iter().filter(|e| e.kind == "m.direct") {
                Self::direct_from(&mut facts, &e.content);
            }
            for (room, joined) in &sync.rooms.join {
                if let Some(n) = joined.summary.joined {
                    facts.joined_members.insert(room.clone(), n);
                }
                let encrypted =
                    joined.state.events.iter().chain(&joined.timeline.events).any(|e| e.kind == "m.room.encryption");
                if encrypted && facts.encrypted.insert(room.clone()) {
                    newly_encrypted.push(room.clone());
                }
            }
        }
        for room in newly_encrypted {
            tracing::warn!(room = %room, "Matrix room uses end-to-end encryption, which clawline does not support yet; its messages are not answered");
        }
        for (room, invite) in &sync.rooms.invite {
            let inviter = invite
                .invite_state
                .events
                .iter()
                .find(|e| e.kind == "m.room.member" && e.content["membership"] == "invite")
                .map(|e| e.sender.clone())
                .unwrap_or_default();
            let accept = match self.settings.auto_join {
                AutoJoin::Always => true,
                AutoJoin::Off => false,
                AutoJoin::Allowlist => self.settings.auto_join_allowlist.iter().any(|a| a == &inviter || a == room),
            };
            if !accept {
                continue;
            }
            let direct = invite.invite_state.events.iter().any(|e| e.content["is_direct"] == true);
            let path = format!("/rooms/{}/join", segment(room));
            match api
                .call::<serde_json::Value>(Method::POST, &path, Some(&serde_json::json!({})), Duration::from_secs(30))
                .await
            {
                Ok(_) => {
                    tracing::info!(room = %room, inviter = %inviter, "joined a Matrix room on invitation");
                    if direct {
                        self.facts().direct.insert(room.clone());
                        self.mark_direct(api, &inviter, room).await;
                    }
                }
                Err(e) => tracing::warn!(room = %room, error = %e, "could not join a Matrix room"),
            }
        }
    }

    fn direct_from(facts: &mut RoomFacts, map: &serde_json::Value) {
        for rooms in map.as_object().into_iter().flat_map(|m| m.values()) {
            facts.direct.extend(rooms.as_array().into_iter().flatten().filter_map(|r| r.as_str().map(str::to_string)));
        }
    }

    fn remember_direct(&self, map: &serde_json::Value) {
        Self::direct_from(&mut self.facts(), map);
    }

    /// Adds a DM to the account's `m.direct` (as Matrix clients do on accepting one), so the
    /// next start knows it is one.
    async fn mark_direct(&self, api: &Api, with: &str, room: &str) {
        let Some(me) = self.me() else { return };
        let path = format!("/user/{}/account_data/m.direct", segment(&me.user_id));
        let mut map = match api.call::<serde_json::Value>(Method::GET, &path, None, Duration::from_secs(15)).await {
            Ok(m) if m.is_object() => m,
            _ => serde_json::json!({}),
        };
        let list = map.as_object_mut().map(|m| m.entry(with.to_string()).or_insert_with(|| serde_json::json!([])));
        if let Some(serde_json::Value::Array(rooms)) = list
            && !rooms.iter().any(|r| r == room)
        {
            rooms.push(serde_json::json!(room));
        }
        if let Err(e) = api.call::<serde_json::Value>(Method::PUT, &path, Some(&map), Duration::from_secs(15)).await {
            tracing::warn!(room, error = %e, "could not record a Matrix DM in m.direct");
        }
    }

    fn messages(&self, sync: &Sync, me: &Me) -> Vec<InboundMessage> {
        let facts = self.facts();
        let mut out = Vec::new();
        for (room, joined) in &sync.rooms.join {
            let direct = facts.is_direct(room);
            // A room we just joined comes with its recent history: only what follows our own
            // join is new to us.
            let events = &joined.timeline.events;
            let start = events
                .iter()
                .rposition(|e| {
                    e.kind == "m.room.member"
                        && e.state_key.as_deref() == Some(me.user_id.as_str())
                        && e.content["membership"] == "join"
                })
                .map_or(0, |i| i + 1);
            for e in &events[start..] {
                if e.kind == "m.room.encrypted" {
                    tracing::warn!(room = %room, "an encrypted Matrix message cannot be read (no end-to-end encryption support); not answered");
                    continue;
                }
                if let Some(m) = inbound::to_inbound(e, room, direct, &self.account_id, me) {
                    out.push(m);
                }
            }
        }
        out
    }
}

fn send_error(e: ApiError) -> SendError {
    match e {
        ApiError::Refused { status: 429, retry_after, .. } => {
            SendError::RateLimited { retry_after: retry_after.unwrap_or(Duration::from_secs(5)) }
        }
        ApiError::Refused { status, errcode, message, .. } if status >= 500 || errcode == "M_UNKNOWN_TOKEN" => {
            SendError::Transient(format!("{status} {errcode}: {message}"))
        }
        ApiError::Refused { status, errcode, message, .. } => {
            SendError::Permanent(format!("{status} {errcode}: {message}"))
        }
        ApiError::Transport { detail, .. } => SendError::Transient(detail),
    }
}

impl Channel for MatrixChannel {
    fn channel(&self) -> &'static str {
        "matrix"
    }

    fn account_id(&self) -> &str {
        &self.account_id
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { edit: true, react: true, typing: true, threads: true, buttons: false, media: true }
    }

    fn stall_after(&self) -> Duration {
        Duration::from_millis(self.sync_timeout_ms) + self.stall_margin
    }

    fn mode(&self) -> &'static str {
        "sync"
    }

    fn connect<'a>(&'a self, link: &'a Link) -> BoxFuture<'a, Result<(), ConnectionError>> {
        Box::pin(self.run(link))
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
            let api = self.api().ok_or_else(|| SendError::Transient("not logged in yet".into()))?;
            let content = match &body.media {
                None => outbound::content(target, body, self.settings.thread_replies),
                Some(m) => match (&m.path, &m.url) {
                    (Some(file), _) => {
                        let bytes = crate::media::read_upload(file, MAX_UPLOAD, "this homeserver").await?;
                        let size = bytes.len();
                        let mxc =
                            api.upload(&m.name, crate::media::mime_of(&m.name), bytes).await.map_err(send_error)?;
                        outbound::file_content(target, m, &mxc, size, self.settings.thread_replies)
                    }
                    (None, Some(url)) => {
                        let link = OutboundBody::plain(url.clone());
                        outbound::content(target, &link, self.settings.thread_replies)
                    }
                    (None, None) => return Err(SendError::Permanent("the file names neither a path nor a URL".into())),
                },
            };
            let path = format!("/rooms/{}/send/m.room.message/{}", segment(&target.peer_id), segment(key));
            let answer: serde_json::Value =
                api.call(Method::PUT, &path, Some(&content), Duration::from_secs(30)).await.map_err(send_error)?;
            Ok(Sent { message_id: answer["event_id"].as_str().unwrap_or_default().to_string() })
        })
    }

    fn fetch<'a>(
        &'a self,
        attachment: &'a crate::message::Attachment,
        max_bytes: u64,
    ) -> BoxFuture<'a, Result<Vec<u8>, SendError>> {
        Box::pin(async move {
            let api = self.api().ok_or_else(|| SendError::Transient("not logged in yet".into()))?;
            api.download(&attachment.file_id, max_bytes).await.map_err(send_error)
        })
    }

    fn forget_session(&self) {
        *self.api.lock().unwrap_or_else(|p| p.into_inner()) = None;
        *self.me.lock().unwrap_or_else(|p| p.into_inner()) = None;
        *self.rooms.lock().unwrap_or_else(|p| p.into_inner()) = RoomFacts::default();
    }

    fn typing<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let (Some(api), Some(me)) = (self.api(), self.me()) else { return Ok(()) };
            let path = format!("/rooms/{}/typing/{}", segment(&target.peer_id), segment(&me.user_id));
            api.call::<serde_json::Value>(
                Method::PUT,
                &path,
                Some(&serde_json::json!({"typing": true, "timeout": 5000})),
                Duration::from_secs(10),
            )
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
            let api = self.api().ok_or_else(|| SendError::Transient("not logged in yet".into()))?;
            let new = outbound::content(
                &Target { thread: None, reply_to: None, ..target.clone() },
                body,
                self.settings.thread_replies,
            );
            let mut content = new.clone();
            content["body"] = serde_json::json!(format!("* {}", new["body"].as_str().unwrap_or_default()));
            content["m.new_content"] = new;
            content["m.relates_to"] = serde_json::json!({"rel_type": "m.replace", "event_id": message_id});
            let path =
                format!("/rooms/{}/send/m.room.message/{}", segment(&target.peer_id), uuid::Uuid::new_v4().simple());
            api.call::<serde_json::Value>(Method::PUT, &path, Some(&content), Duration::from_secs(30))
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
            let api = self.api().ok_or_else(|| SendError::Transient("not logged in yet".into()))?;
            let content =
                serde_json::json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": message_id, "key": emoji}});
            let path = format!("/rooms/{}/send/m.reaction/{}", segment(&target.peer_id), uuid::Uuid::new_v4().simple());
            api.call::<serde_json::Value>(Method::PUT, &path, Some(&content), Duration::from_secs(30))
                .await
                .map(|_| ())
                .map_err(send_error)
        })
    }

    fn probe(&self) -> BoxFuture<'_, Result<serde_json::Value, SendError>> {
        Box::pin(async move {
            let api = self.api().ok_or_else(|| SendError::Transient("not logged in yet".into()))?;
            let who: serde_json::Value =
                api.call(Method::GET, "/account/whoami", None, Duration::from_secs(15)).await.map_err(send_error)?;
            let encrypted: Vec<String> = self.facts().encrypted.iter().cloned().collect();
            Ok(
                serde_json::json!({"whoami": who, "homeserver": self.settings.homeserver, "encryptedRoomsNotSupported": encrypted}),
            )
        })
    }

    fn pace(&self, _target: &Target) -> (Duration, u32) {
        config::PACE
    }
}
