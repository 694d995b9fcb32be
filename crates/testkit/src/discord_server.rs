//! A twin of Discord (<https://discord.com/developers/docs>) for tests of a bot: the HTTP API
//! (v10) a bot uses to talk and the Gateway WebSocket it listens on, with the errors, rate
//! limits and close codes the documentation defines. It must not talk to the internet, must not
//! accept what the documentation refuses (a wrong token, an empty or over-long message, a
//! privileged intent that is not enabled, a Resume with a sequence the session never reached)
//! and must not be lenient where Discord is strict; where the documentation is silent this doc
//! says so and the twin follows what Discord is known to answer.
//!
//! Start one with [`DiscordServer::start`] and the bot token it accepts (when the token's first
//! dot-separated part is the base64 of a number, as in real tokens, that number is the bot's user
//! id; otherwise the id is [`DEFAULT_BOT_ID`]), point the client's API base at
//! [`DiscordServer::api_url`] (`{base_url}/api/v10`) and let it find the gateway through `GET
//! /gateway/bot` (or use [`DiscordServer::gateway_url`]). Add guilds, channels, threads, users and
//! DM channels ([`DiscordServer::add_guild`], [`DiscordServer::add_channel`],
//! [`DiscordServer::add_thread`], [`DiscordServer::add_user`], [`DiscordServer::add_dm_channel`]),
//! push what people do ([`DiscordServer::push_guild_message`], [`DiscordServer::push_dm`],
//! [`DiscordServer::push_thread_message`], [`DiscordServer::push_message`],
//! [`DiscordServer::push_reaction`], [`DiscordServer::push_raw_dispatch`]) and inspect what the
//! bot did ([`DiscordServer::sent`], [`DiscordServer::wait_sent`], [`DiscordServer::edits`],
//! [`DiscordServer::reactions`], [`DiscordServer::typing`], [`DiscordServer::requests`],
//! [`DiscordServer::identifies`], [`DiscordServer::resumes`], [`DiscordServer::heartbeats`],
//! [`DiscordServer::connections`]). Ids are `u64` snowflakes in this API and strings on the wire.
//!
//! # HTTP API
//!
//! - Routes are under `{base_url}/api/v10` (any other prefix or version is 404 `{"message":
//!   "404: Not Found", "code": 0}`; a known path with another method is 405). Every route but
//!   `GET /gateway` needs `Authorization: Bot <token>`; anything else is 401 `{"message": "401:
//!   Unauthorized", "code": 0}`. Bodies must be `application/json` (or `multipart/form-data` with a
//!   `payload_json` part and `files[n]` parts); another `Content-Type` with a body is 50035
//!   `CONTENT_TYPE_INVALID` (form-urlencoded bodies are not implemented by the twin), malformed
//!   JSON is 50109. Errors are `{"code", "message"}` with the documented JSON codes, and 50035
//!   `Invalid Form Body` carries `errors` shaped as the reference's error messages section shows
//!   (`{"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or
//!   fewer in length."}]}}`). A path id that is not a number is 50035 `NUMBER_TYPE_COERCE`.
//! - `GET /gateway` → `{url}`; `GET /gateway/bot` → `{url: "ws://127.0.0.1:PORT", shards: 1,
//!   session_start_limit: {total: 1000, remaining, reset_after, max_concurrency: 1}}`
//!   (`remaining` drops with every accepted Identify).
//! - `GET /users/@me` → the bot user (`id`, `username`, `discriminator: "0"`, `global_name`,
//!   `avatar`, `bot: true`, `verified`, `mfa_enabled`, `flags`, …); `GET /users/{id}` → a known
//!   user or 10013 `Unknown User`.
//! - `POST /users/@me/channels {recipient_id}` → the DM channel (`type: 1`, `recipients`),
//!   the same one on every call; a missing or non-snowflake id is 50035, an unknown user 50033
//!   `Invalid Recipient(s)`.
//! - `GET /channels/{id}` → the channel (`type` 0 text, 1 DM, 11 public thread) or 10003 `Unknown
//!   Channel`. `GET /channels/{id}/messages {limit (1–100, default 50), before, after}` newest
//!   first; `GET /channels/{id}/messages/{mid}` or 10008 `Unknown Message`.
//! - `POST /channels/{id}/messages {content (≤ 2000 characters), nonce (integer or string ≤ 25
//!   characters), enforce_nonce, tts, embeds (≤ 10), components, sticker_ids, attachments/files,
//!   allowed_mentions, message_reference, flags}` → the Message: `id` (increasing snowflakes whose
//!   time part is now), `channel_id`, `author` (the bot), `content`, `timestamp`,
//!   `edited_timestamp: null`, `tts`, `mention_everyone`, `mentions`, `mention_roles`,
//!   `attachments`, `embeds`, `components`, `pinned`, `type` (0, or 19 for a reply with
//!   `message_reference` and `referenced_message`), `flags`, `nonce`. A message with none of
//!   content (after trimming), embeds, sticker_ids, components, files or poll is 50006 `Cannot
//!   send an empty message`. `message_reference.message_id` must name a message of the channel
//!   (or of `message_reference.channel_id`) unless `fail_if_not_exists: false` (then it is sent as
//!   a plain message): 50035 `MESSAGE_REFERENCE_UNKNOWN_MESSAGE`. `allowed_mentions` decides
//!   which `<@id>`, `<@&id>` and `@everyone`/`@here` of the content become mentions (all of them
//!   without it; `replied_user` defaults to true without it and false with it); `parse`
//!   containing `users` (or `roles`) together with a `users` (or `roles`) list is 50035, as
//!   documented. With `enforce_nonce: true` a nonce the bot already used within the nonce window
//!   (5 minutes by default, "the past few minutes" in the documentation,
//!   [`DiscordServer::set_nonce_window`]) answers the earlier message and creates nothing; such
//!   calls are in [`DiscordServer::sent`] with `deduped: true`. The documentation scopes the
//!   nonce to the author, not the channel, and so does the twin. Every new message fires
//!   `MESSAGE_CREATE` on the gateway, the bot's own included, as Discord does.
//! - `PATCH /channels/{id}/messages/{mid} {content, embeds, components, flags, allowed_mentions}`
//!   (all optional and nullable) → the Message with `edited_timestamp`; only the bot's messages
//!   (50005 `Cannot edit a message authored by another user`); an edit leaving nothing is 50006;
//!   fires `MESSAGE_UPDATE`. `DELETE /channels/{id}/messages/{mid}` → 204, fires `MESSAGE_DELETE`
//!   (another author's message in a DM is 50003).
//! - `PUT /channels/{id}/messages/{mid}/reactions/{emoji}/@me` → 204 (URL-encoded unicode emoji
//!   or `name:id`; anything else, such as a plain word, is 10014 `Unknown Emoji`), fires
//!   `MESSAGE_REACTION_ADD`; `DELETE` of the same path removes it (204).
//! - `POST /channels/{id}/typing` → 204, fires `TYPING_START`.
//! - [`DiscordServer::set_missing_permissions`] makes sends, edits, reactions and typing in a
//!   channel 403 50013 `Missing Permissions`; otherwise the bot may do everything.
//! - Files uploaded with a message are served from `{base_url}/attachments/{channel}/{id}/{name}`
//!   (the attachment's `url`), as are files of pushed messages.
//!
//! # Rate limits
//!
//! Every answer of an authorized call to a known route (but global 429s and scripted statuses)
//! carries `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`
//! (epoch seconds with milliseconds), `X-RateLimit-Reset-After` (seconds with milliseconds) and
//! `X-RateLimit-Bucket` (a hash of the route, per top-level resource: a channel's message routes
//! do not share a bucket with another channel's). A request on an exhausted bucket is 429 with
//! `{"message": "You are being rate limited.", "retry_after": <float seconds>, "global": false}`,
//! `Retry-After` (whole seconds, rounded up) and `X-RateLimit-Scope: user`; it does not count.
//! The windows are fixed: they start with the first request and reset after `per`. Defaults follow
//! what Discord is known to answer (the documentation lists no numbers): create and edit message
//! 5 per 5 s per channel, reactions 1 per 250 ms per channel, typing 5 per 5 s, every other route
//! 50 per second; [`DiscordServer::set_bucket_limit`] sets one limit for every route and
//! [`DiscordServer::set_route_limit`] one route's. More than 50 requests within a second (the
//! documented global limit) are 429 with `global: true`, `X-RateLimit-Global: true` and
//! `X-RateLimit-Scope: global`, without bucket headers.
//!
//! # Gateway
//!
//! The gateway is `ws://127.0.0.1:PORT/?v=10&encoding=json` (the same port as the HTTP API); the
//! `resume_gateway_url` given in READY is a second port, so tests can see which one a client
//! resumed on ([`Connection::via_resume_url`]). Both accept Identify and Resume. `v` other than
//! 10 is closed with 4012 (the twin speaks v10 only); `encoding` other than `json` and any
//! `compress` are refused with HTTP 400 before the upgrade (not implemented by the twin).
//!
//! - Every connection first gets Hello `{"op": 10, "d": {"heartbeat_interval": N}}` (41250 ms by
//!   default, [`DiscordServer::set_heartbeat_interval`]); payloads have `op`, `d`, `s` and `t`,
//!   `s` and `t` being null but for dispatches (op 0).
//! - Heartbeat `{"op": 1, "d": <last seq or null>}` is answered with `{"op": 11}` (Heartbeat ACK)
//!   before or after identifying. A connection that sends no heartbeat within the interval plus
//!   a grace (half the interval by default, [`DiscordServer::set_heartbeat_grace`]) since Hello or
//!   the last heartbeat is closed with 4009 `Session timed out`; the documentation does not say
//!   which close code Discord uses here, and the twin follows its close-code table, so the session
//!   cannot be resumed. [`DiscordServer::request_heartbeat`] sends op 1 to the client, which must
//!   heartbeat at once ([`Heartbeat::requested`]).
//! - Identify `{token, intents, properties, shard?, presence?, compress?, large_threshold?}`:
//!   a wrong token (the bare token, without `Bot `) is closed with 4004; unknown intent bits with
//!   4013; a privileged intent (`GUILD_MEMBERS`, `GUILD_PRESENCES`, `MESSAGE_CONTENT`) that is not
//!   enabled ([`DiscordServer::set_enabled_privileged_intents`]; all are by default) with 4014;
//!   a shard that is not `[id, count]` with `id < count` with 4010; a second Identify or Resume on
//!   an authenticated connection with 4005; missing fields with 4001. With
//!   [`DiscordServer::require_message_content_intent`] an Identify without `MESSAGE_CONTENT` is
//!   also closed with 4014: a twin-only switch for tests that need the client to ask for content
//!   (Discord itself accepts such an Identify and sends empty content instead, which the twin also
//!   does when the switch is off). Other opcodes before identifying are 4003; unknown opcodes
//!   4001; a frame that is not a JSON object, a binary frame or one over 4096 bytes 4002; more
//!   than 120 payloads within 60 s on one connection 4008 (heartbeats are not counted, so short
//!   test intervals do not trip it). Discord allows `max_concurrency` (1) Identifies per 5 s and
//!   answers more with op 9; the twin does so only with
//!   [`DiscordServer::enforce_identify_concurrency`], so tests may reconnect quickly.
//! - A good Identify starts a session: READY `{v: 10, user, guilds (unavailable), session_id,
//!   resume_gateway_url, application: {id, flags}, shard?}` with `s: 1`, then `GUILD_CREATE` for
//!   every guild (with `channels` and `threads`) when the `GUILDS` intent is set. Every dispatch of
//!   a session has the next `s`. Dispatches follow the intents: `MESSAGE_CREATE`, `MESSAGE_UPDATE`
//!   and `MESSAGE_DELETE` need `GUILD_MESSAGES` (guild channels and threads) or
//!   `DIRECT_MESSAGES` (DMs), reactions `GUILD_MESSAGE_REACTIONS`/`DIRECT_MESSAGE_REACTIONS`,
//!   typing `GUILD_MESSAGE_TYPING`/`DIRECT_MESSAGE_TYPING`, guild, channel and thread events
//!   `GUILDS`. Without `MESSAGE_CONTENT`, `content`, `embeds`, `attachments` and `components` of
//!   guild messages are empty unless the bot wrote the message or is mentioned in it (DMs always
//!   carry content), as documented.
//! - Guild `MESSAGE_CREATE` carries `guild_id`, `member` (`roles`, `joined_at`, …) and `mentions`
//!   with a partial `member`; DMs carry neither `guild_id` nor `member`. Replies carry
//!   `message_reference` and `referenced_message`; thread messages a `position`.
//! - A session outlives its connection: dispatches while it is disconnected are kept, and a
//!   Resume `{token, session_id, seq}` on a new connection within the resume window (3 minutes
//!   by default, "a few minutes" in the documentation, [`DiscordServer::set_resume_window`])
//!   replays every dispatch after `seq` in order, then `RESUMED` (a dispatch with the next `s`).
//!   An unknown, invalidated or expired session is answered with Invalid Session `{"op": 9, "d":
//!   false}` (the connection stays open, and may Identify); a `seq` beyond the session's last is
//!   closed with 4007 and ends the session. Resuming a session whose old connection is still
//!   open closes the old one. A client closing with 1000 or 1001 ends its session; other close
//!   codes and dropped TCP connections keep it resumable.
//! - Dispatches pushed while no session exists are not delivered (as on Discord);
//!   [`DiscordServer::undelivered`] lists them. Use [`DiscordServer::wait_ready`] before pushing;
//!   [`DiscordServer::wait_closed`] waits for a connection to end.
//! - Setup calls made while sessions exist fire `GUILD_CREATE`, `CHANNEL_CREATE` or
//!   `THREAD_CREATE` as Discord does when the bot joins a guild or a channel is made.
//!
//! # Faults
//!
//! - [`DiscordServer::drop_connection`]: every gateway connection is cut at the TCP level without
//!   a close frame; sessions stay resumable.
//! - [`DiscordServer::stop_acking_heartbeats`]: while on, heartbeats are recorded but not
//!   acknowledged (dispatches still flow).
//! - [`DiscordServer::zombify_connections`]: the open connections become zombies: they stay open
//!   but get nothing more (no ACK, no dispatch); their sessions keep the dispatches for a Resume.
//!   New connections are healthy.
//! - [`DiscordServer::send_reconnect`]: op 7 `{"op": 7, "d": null}` to every connection, which
//!   the twin cuts (TCP, no close frame) if the client has not closed it within the reconnect
//!   grace (3 s by default, "a few seconds" in the documentation,
//!   [`DiscordServer::set_reconnect_grace`]); sessions stay resumable.
//! - [`DiscordServer::invalidate_session`]: op 9 with `d: resumable` to every connection; when
//!   not resumable the sessions end (a later Resume gets op 9 `false`). The connections stay open
//!   and may Identify again.
//! - [`DiscordServer::close_with`]: a close frame with that code (and the documented reason) on
//!   every connection; codes the close-code table marks as not resumable end the sessions.
//! - [`DiscordServer::fail_next`]: the next call of a route (by the names in [`ApiRequest::route`],
//!   or `*`) answers a scripted [`Fault`]: an HTTP status with Discord's body for it, a per-route
//!   or global 429 with the given `retry_after`, or a connection closed without an answer. Queued.
//! - [`DiscordServer::duplicate_next_dispatch`]: the next dispatch sent is sent twice, same `s`
//!   (the reference warns events may be sent more than once).
//! - [`DiscordServer::malformed_next_frame`]: the next dispatch sent is cut in half (not valid
//!   JSON); its `s` is spent, so a client that resumes from its last good `s` gets it replayed.
//!
//! In [`DiscordServer::requests`] every HTTP call is kept with its route name, whether its token
//! was valid, the status answered (0 when none was) and the error code.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

// ---------------------------------------------------------------------------------------------
// Public constants and data types
// ---------------------------------------------------------------------------------------------

/// `GUILDS (1 << 0)`.
pub const INTENT_GUILDS: u64 = 1 << 0;
/// `GUILD_MEMBERS (1 << 1)`, privileged.
pub const INTENT_GUILD_MEMBERS: u64 = 1 << 1;
/// `GUILD_PRESENCES (1 << 8)`, privileged.
pub const INTENT_GUILD_PRESENCES: u64 = 1 << 8;
/// `GUILD_MESSAGES (1 << 9)`.
pub const INTENT_GUILD_MESSAGES: u64 = 1 << 9;
/// `GUILD_MESSAGE_REACTIONS (1 << 10)`.
pub const INTENT_GUILD_MESSAGE_REACTIONS: u64 = 1 << 10;
/// `GUILD_MESSAGE_TYPING (1 << 11)`.
pub const INTENT_GUILD_MESSAGE_TYPING: u64 = 1 << 11;
/// `DIRECT_MESSAGES (1 << 12)`.
pub const INTENT_DIRECT_MESSAGES: u64 = 1 << 12;
/// `DIRECT_MESSAGE_REACTIONS (1 << 13)`.
pub const INTENT_DIRECT_MESSAGE_REACTIONS: u64 = 1 << 13;
/// `DIRECT_MESSAGE_TYPING (1 << 14)`.
pub const INTENT_DIRECT_MESSAGE_TYPING: u64 = 1 << 14;
/// `MESSAGE_CONTENT (1 << 15)`, privileged.
pub const INTENT_MESSAGE_CONTENT: u64 = 1 << 15;
/// The privileged intents.
pub const PRIVILEGED_INTENTS: u64 = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT;
/// Every intent bit the documentation lists (bits 0–16, 20, 21, 24, 25).
pub const KNOWN_INTENTS: u64 = ((1 << 17) - 1) | (1 << 20) | (1 << 21) | (1 << 24) | (1 << 25);

/// The bot's user id when the token does not carry one.
pub const DEFAULT_BOT_ID: u64 = 1_180_000_000_000_000_001;
/// Milliseconds of the Discord epoch (the first second of 2015).
pub const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// The `type` of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// `GUILD_TEXT` (0).
    GuildText,
    /// `DM` (1).
    Dm,
    /// `PUBLIC_THREAD` (11).
    PublicThread,
}

impl ChannelKind {
    pub fn code(self) -> u64 {
        match self {
            ChannelKind::GuildText => 0,
            ChannelKind::Dm => 1,
            ChannelKind::PublicThread => 11,
        }
    }
}

/// A successful Create Message call (refused calls are only in [`DiscordServer::requests`]).
#[derive(Debug, Clone)]
pub struct Sent {
    pub channel_id: u64,
    /// The message created, or for a deduplicated call the earlier one answered.
    pub message_id: u64,
    pub content: String,
    pub nonce: Option<Value>,
    pub enforce_nonce: bool,
    /// The nonce matched an earlier message: nothing was created.
    pub deduped: bool,
    /// `message_reference.message_id` when the message is a reply.
    pub reply_to: Option<u64>,
    pub allowed_mentions: Option<Value>,
    pub embeds: Vec<Value>,
    pub components: Vec<Value>,
    /// Uploaded files: `(filename, bytes)`.
    pub files: Vec<(String, usize)>,
    pub flags: u64,
    pub tts: bool,
    /// The JSON body (or `payload_json`) as received.
    pub body: Value,
    /// The Message answered.
    pub message: Value,
}

/// A successful Edit Message call.
#[derive(Debug, Clone)]
pub struct Edit {
    pub channel_id: u64,
    pub message_id: u64,
    /// The new content when the call set one.
    pub content: Option<String>,
    pub body: Value,
    /// The Message answered.
    pub message: Value,
}

/// A successful Create Reaction (or Delete Own Reaction when `removed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaction {
    pub channel_id: u64,
    pub message_id: u64,
    /// The decoded emoji: a unicode emoji or `name:id`.
    pub emoji: String,
    pub removed: bool,
}

/// A successful Trigger Typing Indicator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Typing {
    pub channel_id: u64,
}

/// One HTTP call received, whatever its outcome.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    /// The route's name: `get_gateway`, `get_gateway_bot`, `get_current_user`, `get_user`,
    /// `create_dm`, `get_channel`, `get_channel_messages`, `create_message`, `get_message`,
    /// `edit_message`, `delete_message`, `create_reaction`, `delete_own_reaction`,
    /// `trigger_typing`, `get_attachment`; `None` for unknown paths.
    pub route: Option<String>,
    /// A valid `Authorization: Bot <token>` was sent.
    pub authorized: bool,
    /// The HTTP status answered; 0 when the connection was closed without an answer.
    pub status: u16,
    /// The JSON error `code` answered, if any.
    pub code: Option<u64>,
    /// The JSON body received (`Null` when there was none or it was not JSON).
    pub body: Value,
}

/// One Identify received.
#[derive(Debug, Clone)]
pub struct Identify {
    pub connection: usize,
    pub token_valid: bool,
    pub intents: Option<u64>,
    pub properties: Value,
    pub shard: Option<Value>,
    /// The whole `d`.
    pub data: Value,
    /// The session started, when it was accepted.
    pub session_id: Option<String>,
    /// The close code it was refused with.
    pub refused_with: Option<u16>,
    /// Answered with op 9 `false` for exceeding `max_concurrency` (see
    /// [`DiscordServer::enforce_identify_concurrency`]).
    pub invalid_session: bool,
}

/// What a Resume got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeOutcome {
    /// Replayed this many dispatches, then RESUMED.
    Resumed { replayed: usize },
    /// Answered with op 9 `false`.
    InvalidSession,
    /// Closed with 4007.
    InvalidSeq,
    /// Closed with 4004.
    AuthenticationFailed,
}

/// One Resume received.
#[derive(Debug, Clone)]
pub struct Resume {
    pub connection: usize,
    pub session_id: String,
    pub seq: Option<u64>,
    pub outcome: ResumeOutcome,
}

/// One heartbeat received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub connection: usize,
    /// `d`: the last sequence the client saw, `None` for null.
    pub seq: Option<u64>,
    pub acked: bool,
    /// Sent after the twin asked for one ([`DiscordServer::request_heartbeat`]).
    pub requested: bool,
}

/// Who ended a gateway connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedBy {
    /// The twin sent a close frame.
    Server,
    /// The twin cut the TCP connection without a close frame.
    ServerDropped,
    /// The client sent a close frame.
    Client,
    /// The TCP connection ended without a close frame from the client.
    ClientDropped,
}

/// One gateway connection.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Its index in [`DiscordServer::connections`].
    pub id: usize,
    /// Opened on the `resume_gateway_url` rather than the gateway URL.
    pub via_resume_url: bool,
    /// The query string it was opened with.
    pub query: String,
    /// The session it identified or resumed.
    pub session_id: Option<String>,
    /// `None` while open.
    pub closed_by: Option<ClosedBy>,
    /// The close code sent or received.
    pub close_code: Option<u16>,
}

/// A scripted answer for [`DiscordServer::fail_next`].
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// This HTTP status with Discord's body for it (e.g. 500 `{"message": "500: Internal Server
    /// Error", "code": 0}`, 502 `{"message": "502: Bad Gateway", "code": 0}`, 403 50013).
    Status(u16),
    /// A per-route 429 with this `retry_after` (seconds) and the bucket headers.
    RateLimited(f64),
    /// A global 429 with this `retry_after` (seconds).
    GlobalRateLimited(f64),
    /// The connection is closed without an HTTP answer.
    Drop,
}

/// An inbound message for [`DiscordServer::push_message`].
#[derive(Debug, Clone, Default)]
pub struct Inbound {
    pub channel_id: u64,
    /// Unknown authors are added as `user<id>`.
    pub author_id: u64,
    pub content: String,
    /// Adds `<@BOT_ID> ` in front of the content unless it already mentions the bot.
    pub mentions_bot: bool,
    /// The author's roles in the guild (ignored in DMs).
    pub roles: Vec<u64>,
    /// A message of the same channel this one replies to.
    pub reply_to: Option<u64>,
    /// Files: `(filename, bytes)`, served from the twin.
    pub attachments: Vec<(String, Vec<u8>)>,
    /// The author is a bot (`author.bot: true`).
    pub author_is_bot: bool,
}

// ---------------------------------------------------------------------------------------------
// Internal state
// ---------------------------------------------------------------------------------------------

struct UserInfo {
    username: String,
    global_name: Option<String>,
    bot: bool,
}

struct Guild {
    name: String,
    joined_at: String,
    /// Roles of members seen.
    members: BTreeMap<u64, Vec<u64>>,
}

struct ChannelInfo {
    kind: ChannelKind,
    guild_id: Option<u64>,
    name: String,
    parent_id: Option<u64>,
    recipient: Option<u64>,
    last_message_id: Option<u64>,
    /// Messages sent in a thread (for `position`).
    thread_count: u64,
}

struct StoredMessage {
    channel_id: u64,
    author_id: u64,
    /// The Message as the HTTP API answers it.
    json: Value,
    deleted: bool,
}

struct StoredFile {
    name: String,
    content_type: String,
    bytes: Bytes,
}

enum Out {
    Text(String),
    Close(u16, String),
    Abort,
}

struct Conn {
    tx: mpsc::UnboundedSender<Out>,
    session: Option<String>,
    identified: bool,
    interval: Duration,
    grace: Duration,
    last_beat: Instant,
    heartbeat_requested: bool,
    zombie: bool,
    closing: bool,
    payloads: VecDeque<Instant>,
}

struct Session {
    intents: u64,
    seq: u64,
    /// Every dispatch sent in this session: `(s, frame)`.
    events: Vec<(u64, String)>,
    conn: Option<usize>,
    disconnected_at: Option<Instant>,
    valid: bool,
}

#[derive(Clone, Copy)]
struct Bucket {
    start: Instant,
    count: u32,
}

struct Inner {
    token: String,
    bot_id: u64,
    bot_username: String,
    base_url: String,
    gateway_url: String,
    resume_url: String,

    users: BTreeMap<u64, UserInfo>,
    guilds: BTreeMap<u64, Guild>,
    channels: BTreeMap<u64, ChannelInfo>,
    dms: HashMap<u64, u64>,
    messages: BTreeMap<u64, StoredMessage>,
    files: HashMap<(u64, u64), StoredFile>,
    last_id: u64,
    missing_permissions: HashSet<u64>,

    heartbeat_interval: Duration,
    heartbeat_grace: Option<Duration>,
    resume_window: Duration,
    nonce_window: Duration,
    reconnect_grace: Duration,
    require_content: bool,
    privileged_enabled: u64,
    session_starts: u64,
    identify_concurrency: bool,
    last_identify: Option<Instant>,

    conns: BTreeMap<usize, Conn>,
    sessions: BTreeMap<String, Session>,
    next_session: u64,
    stop_acks: bool,
    duplicate_next: bool,
    malformed_next: bool,

    buckets: HashMap<(&'static str, u64), Bucket>,
    bucket_override: Option<(u32, Duration)>,
    route_limits: HashMap<String, (u32, Duration)>,
    global_times: VecDeque<Instant>,
    scripted: VecDeque<(String, Fault)>,
    nonces: HashMap<String, (u64, Instant)>,

    sent: Vec<Sent>,
    edits: Vec<Edit>,
    reactions: Vec<Reaction>,
    typing: Vec<Typing>,
    requests: Vec<ApiRequest>,
    identifies: Vec<Identify>,
    resumes: Vec<Resume>,
    heartbeats: Vec<Heartbeat>,
    connections: Vec<Connection>,
    undelivered: Vec<String>,
}

struct Twin {
    inner: Mutex<Inner>,
    closed: AtomicBool,
}

type Shared = Arc<Twin>;

impl Twin {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn now_secs_f64() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Howard Hinnant's days-to-civil: `(year, month, day)` of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `2024-05-01T12:00:00.123000+00:00`, the way Discord writes timestamps.
fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}000+00:00", rem / 3600, rem % 3600 / 60, rem % 60, ms % 1000)
}

fn snowflake_ms(id: u64) -> u64 {
    (id >> 22) + DISCORD_EPOCH_MS
}

fn sf(id: u64) -> Value {
    Value::String(id.to_string())
}

/// A snowflake given as a string or a number.
fn as_snowflake(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|c| (*c as char).to_digit(16)),
                bytes.get(i + 2).and_then(|c| (*c as char).to_digit(16)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (url_decode(k), url_decode(v)),
            None => (url_decode(p), String::new()),
        })
        .collect()
}

/// The bot's user id from a token whose first part is the base64 of it.
fn bot_id_from_token(token: &str) -> u64 {
    let first = token.split('.').next().unwrap_or_default();
    let engines = [base64::engine::general_purpose::STANDARD_NO_PAD, base64::engine::general_purpose::URL_SAFE_NO_PAD];
    for engine in engines {
        if let Ok(bytes) = engine.decode(first.trim_end_matches('='))
            && let Some(id) = std::str::from_utf8(&bytes).ok().and_then(|s| s.parse::<u64>().ok())
        {
            return id;
        }
    }
    DEFAULT_BOT_ID
}

/// The reason the close-code table gives a gateway close code, and whether a session survives it.
fn close_reason(code: u16) -> (&'static str, bool) {
    match code {
        4000 => ("Unknown error", true),
        4001 => ("Unknown opcode", false),
        4002 => ("Decode error", true),
        4003 => ("Not authenticated", false),
        4004 => ("Authentication failed", false),
        4005 => ("Already authenticated", false),
        4007 => ("Invalid seq", false),
        4008 => ("Rate limited", true),
        4009 => ("Session timed out", false),
        4010 => ("Invalid shard", false),
        4011 => ("Sharding required", false),
        4012 => ("Invalid API version", false),
        4013 => ("Invalid intent(s)", false),
        4014 => ("Disallowed intent(s)", false),
        _ => ("", true),
    }
}

fn frame(op: u64, d: Value) -> String {
    json!({"op": op, "d": d, "s": null, "t": null}).to_string()
}

// ---------------------------------------------------------------------------------------------
// HTTP answers
// ---------------------------------------------------------------------------------------------

/// An HTTP answer before rate-limit headers are added.
struct Reply {
    status: u16,
    body: Option<Value>,
    headers: Vec<(String, String)>,
    drop: bool,
    raw: Option<(String, Bytes)>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply { status, body: Some(body), headers: Vec::new(), drop: false, raw: None }
    }

    fn no_content() -> Reply {
        Reply { status: 204, body: None, headers: Vec::new(), drop: false, raw: None }
    }

    fn error(status: u16, code: u64, message: &str) -> Reply {
        Reply::json(status, json!({"message": message, "code": code}))
    }

    fn code(&self) -> Option<u64> {
        self.body.as_ref().and_then(|b| b.get("code")).and_then(Value::as_u64)
    }
}

fn not_found() -> Reply {
    Reply::error(404, 0, "404: Not Found")
}

fn unknown_channel() -> Reply {
    Reply::error(404, 10003, "Unknown Channel")
}

fn unknown_message() -> Reply {
    Reply::error(404, 10008, "Unknown Message")
}

fn field_error(code: &str, message: &str) -> Value {
    json!({"_errors": [{"code": code, "message": message}]})
}

/// 50035 `Invalid Form Body` with `errors`.
fn invalid_form(errors: Map<String, Value>) -> Reply {
    Reply::json(400, json!({"message": "Invalid Form Body", "code": 50035, "errors": Value::Object(errors)}))
}

fn invalid_field(field: &str, code: &str, message: &str) -> Reply {
    let mut m = Map::new();
    m.insert(field.into(), field_error(code, message));
    invalid_form(m)
}

fn scripted_status(status: u16) -> Reply {
    match status {
        400 => Reply::error(400, 0, "400: Bad Request"),
        401 => Reply::error(401, 0, "401: Unauthorized"),
        403 => Reply::error(403, 50013, "Missing Permissions"),
        404 => not_found(),
        405 => Reply::error(405, 0, "405: Method Not Allowed"),
        500 => Reply::error(500, 0, "500: Internal Server Error"),
        502 => Reply::error(502, 0, "502: Bad Gateway"),
        503 => Reply::error(503, 0, "503: Service Unavailable"),
        504 => Reply::error(504, 0, "504: Gateway Timeout"),
        s => Reply::error(s, 0, &format!("{s}: Error")),
    }
}

fn secs3(d: f64) -> String {
    format!("{d:.3}")
}

fn rate_limited(retry_after: f64, global: bool) -> Reply {
    let retry = (retry_after * 1000.0).ceil() / 1000.0;
    let mut r =
        Reply::json(429, json!({"message": "You are being rate limited.", "retry_after": retry, "global": global}));
    r.headers.push(("retry-after".into(), (retry_after.ceil() as u64).max(1).to_string()));
    if global {
        r.headers.push(("x-ratelimit-global".into(), "true".into()));
        r.headers.push(("x-ratelimit-scope".into(), "global".into()));
    } else {
        r.headers.push(("x-ratelimit-scope".into(), "user".into()));
    }
    r
}

fn into_response(reply: Reply) -> Response {
    if reply.drop {
        drop_connection();
    }
    let mut b = Response::builder().status(reply.status);
    for (k, v) in &reply.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    if let Some((content_type, bytes)) = reply.raw {
        return b.header("content-type", content_type).body(Body::from(bytes)).unwrap_or_default();
    }
    match reply.body {
        Some(body) => b.header("content-type", "application/json").body(Body::from(body.to_string())),
        None => b.body(Body::empty()),
    }
    .unwrap_or_default()
}

/// Ends the connection's task without an HTTP answer: the connection is closed. Unwinding
/// without the panic hook keeps test output clean; tokio contains it to this connection.
fn drop_connection() -> ! {
    std::panic::resume_unwind(Box::new("discord twin: connection dropped on purpose"))
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

struct Route {
    name: &'static str,
    /// The bucket's template (the top-level resource is added to it).
    bucket: &'static str,
    channel_id: Option<u64>,
    message_id: Option<u64>,
    user_id: Option<u64>,
    emoji: Option<String>,
}

impl Route {
    fn new(name: &'static str, bucket: &'static str) -> Route {
        Route { name, bucket, channel_id: None, message_id: None, user_id: None, emoji: None }
    }

    fn needs_auth(&self) -> bool {
        self.name != "get_gateway"
    }

    /// The top-level resource the bucket is kept per.
    fn major(&self) -> u64 {
        self.channel_id.unwrap_or(0)
    }
}

/// Parses a path id; a value that is not a snowflake is 50035 as Discord answers it.
fn path_id(field: &str, s: &str) -> Result<u64, Reply> {
    s.parse::<u64>()
        .map_err(|_| invalid_field(field, "NUMBER_TYPE_COERCE", &format!("Value \"{s}\" is not snowflake.")))
}

fn match_route(method: &Method, segs: &[String]) -> Result<Route, Reply> {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = method.as_str();
    let wrong_method = || Reply::error(405, 0, "405: Method Not Allowed");
    let route = match s.as_slice() {
        ["gateway"] => match m {
            "GET" => Route::new("get_gateway", "GET /gateway"),
            _ => return Err(wrong_method()),
        },
        ["gateway", "bot"] => match m {
            "GET" => Route::new("get_gateway_bot", "GET /gateway/bot"),
            _ => return Err(wrong_method()),
        },
        ["users", "@me"] => match m {
            "GET" => Route::new("get_current_user", "GET /users/@me"),
            _ => return Err(wrong_method()),
        },
        ["users", "@me", "channels"] => match m {
            "POST" => Route::new("create_dm", "POST /users/@me/channels"),
            _ => return Err(wrong_method()),
        },
        ["users", id] => match m {
            "GET" => Route { user_id: Some(path_id("user_id", id)?), ..Route::new("get_user", "GET /users/{id}") },
            _ => return Err(wrong_method()),
        },
        ["channels", cid] => match m {
            "GET" => Route {
                channel_id: Some(path_id("channel_id", cid)?),
                ..Route::new("get_channel", "GET /channels/{id}")
            },
            _ => return Err(wrong_method()),
        },
        ["channels", cid, "messages"] => {
            let channel_id = Some(path_id("channel_id", cid)?);
            match m {
                "GET" => Route { channel_id, ..Route::new("get_channel_messages", "GET /channels/{id}/messages") },
                "POST" => Route { channel_id, ..Route::new("create_message", "POST /channels/{id}/messages") },
                _ => return Err(wrong_method()),
            }
        }
        ["channels", cid, "messages", mid] => {
            let channel_id = Some(path_id("channel_id", cid)?);
            let message_id = Some(path_id("message_id", mid)?);
            let r = match m {
                "GET" => Route::new("get_message", "GET /channels/{id}/messages/{id}"),
                "PATCH" => Route::new("edit_message", "PATCH /channels/{id}/messages/{id}"),
                "DELETE" => Route::new("delete_message", "DELETE /channels/{id}/messages/{id}"),
                _ => return Err(wrong_method()),
            };
            Route { channel_id, message_id, ..r }
        }
        ["channels", cid, "messages", mid, "reactions", emoji, "@me"] => {
            let channel_id = Some(path_id("channel_id", cid)?);
            let message_id = Some(path_id("message_id", mid)?);
            let bucket = "/channels/{id}/messages/{id}/reactions";
            let r = match m {
                "PUT" => Route::new("create_reaction", bucket),
                "DELETE" => Route::new("delete_own_reaction", bucket),
                _ => return Err(wrong_method()),
            };
            Route { channel_id, message_id, emoji: Some((*emoji).to_string()), ..r }
        }
        ["channels", cid, "typing"] => match m {
            "POST" => Route {
                channel_id: Some(path_id("channel_id", cid)?),
                ..Route::new("trigger_typing", "POST /channels/{id}/typing")
            },
            _ => return Err(wrong_method()),
        },
        _ => return Err(not_found()),
    };
    Ok(route)
}

/// The default `(limit, per)` of a route's bucket.
fn default_limit(route: &str) -> (u32, Duration) {
    match route {
        "create_message" | "edit_message" | "trigger_typing" => (5, Duration::from_secs(5)),
        "create_reaction" | "delete_own_reaction" => (1, Duration::from_millis(250)),
        _ => (50, Duration::from_secs(1)),
    }
}

/// A stable bucket id, as Discord's opaque hashes look.
fn bucket_hash(template: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in template.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let h2 = h.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15;
    format!("{h:016x}{h2:016x}")
}

/// A request body: JSON, or multipart's `payload_json` and files.
struct ParsedBody {
    json: Value,
    files: Vec<(String, String, Bytes)>,
}

fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<ParsedBody, Reply> {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    if body.is_empty() && !content_type.starts_with("multipart/") {
        return Ok(ParsedBody { json: Value::Null, files: Vec::new() });
    }
    if content_type.starts_with("application/json") {
        return serde_json::from_slice(body)
            .map(|json| ParsedBody { json, files: Vec::new() })
            .map_err(|_| Reply::error(400, 50109, "The request body contains invalid JSON."));
    }
    if content_type.starts_with("multipart/form-data")
        && let Some(boundary) = content_type_param(headers, "boundary")
    {
        let Some(parts) = parse_multipart(body, &boundary) else {
            return Err(invalid_form(request_error("BASE_TYPE_BAD_REQUEST", "Malformed multipart body.")));
        };
        let mut json = Value::Object(Map::new());
        let mut files = Vec::new();
        for p in parts {
            if p.name == "payload_json" {
                json = serde_json::from_slice(&p.data)
                    .map_err(|_| Reply::error(400, 50109, "The request body contains invalid JSON."))?;
            } else if p.filename.is_some() || p.name.starts_with("files[") {
                let name = p.filename.clone().unwrap_or_else(|| p.name.clone());
                let ct = p.content_type.unwrap_or_else(|| "application/octet-stream".into());
                files.push((name, ct, Bytes::from(p.data)));
            } else if let Value::Object(m) = &mut json {
                m.insert(p.name, Value::String(String::from_utf8_lossy(&p.data).into_owned()));
            }
        }
        return Ok(ParsedBody { json, files });
    }
    Err(invalid_form(request_error(
        "CONTENT_TYPE_INVALID",
        "Expected \"Content-Type\" header to be one of {'application/json', 'application/x-www-form-urlencoded', 'multipart/form-data'}.",
    )))
}

fn request_error(code: &str, message: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("_errors".into(), json!([{"code": code, "message": message}]));
    m
}

fn content_type_param(headers: &HeaderMap, param: &str) -> Option<String> {
    let ct = headers.get("content-type")?.to_str().ok()?;
    ct.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.eq_ignore_ascii_case(param).then(|| v.trim_matches('"').to_string())
    })
}

struct Part {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    data: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > hay.len() || needle.is_empty() {
        return None;
    }
    hay[from..].windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

fn parse_multipart(body: &[u8], boundary: &str) -> Option<Vec<Part>> {
    let delim = format!("--{boundary}").into_bytes();
    let sep = [b"\r\n".as_slice(), &delim].concat();
    let mut pos = find(body, &delim, 0)? + delim.len();
    let mut parts = Vec::new();
    loop {
        if body.get(pos..pos + 2) == Some(b"--") {
            return Some(parts);
        }
        pos = find(body, b"\r\n", pos)? + 2;
        let head_end = find(body, b"\r\n\r\n", pos)?;
        let head = String::from_utf8_lossy(&body[pos..head_end]).into_owned();
        let data_start = head_end + 4;
        let data_end = find(body, &sep, data_start)?;
        let mut name = String::new();
        let mut filename = None;
        let mut content_type = None;
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else { continue };
            if k.trim().eq_ignore_ascii_case("content-disposition") {
                for attr in v.split(';').skip(1) {
                    if let Some((ak, av)) = attr.trim().split_once('=') {
                        let av = av.trim().trim_matches('"').to_string();
                        match ak.trim() {
                            "name" => name = av,
                            "filename" => filename = Some(av),
                            _ => {}
                        }
                    }
                }
            } else if k.trim().eq_ignore_ascii_case("content-type") {
                content_type = Some(v.trim().to_string());
            }
        }
        parts.push(Part { name, filename, content_type, data: body[data_start..data_end].to_vec() });
        pos = data_end + sep.len();
    }
}

// ---------------------------------------------------------------------------------------------
// The server and its test-facing API
// ---------------------------------------------------------------------------------------------

/// A running twin. Dropping it stops both listeners and cuts every connection.
pub struct DiscordServer {
    addr: SocketAddr,
    resume_addr: SocketAddr,
    twin: Shared,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for DiscordServer {
    fn drop(&mut self) {
        self.twin.closed.store(true, Ordering::SeqCst);
        {
            let g = self.twin.lock();
            for c in g.conns.values() {
                let _ = c.tx.send(Out::Abort);
            }
        }
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn wait_until<T: Debug + Clone>(what: &str, n: usize, timeout: Duration, get: impl Fn() -> Vec<T>) -> Vec<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let items = get();
        if items.len() >= n {
            return items;
        }
        if Instant::now() >= deadline {
            panic!("discord twin: expected {n} {what} within {timeout:?}, got {}: {items:#?}", items.len());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

impl DiscordServer {
    /// Starts a twin on 127.0.0.1 (two random ports: the API and gateway, and the resume gateway)
    /// that accepts `token`.
    pub async fn start(token: &str) -> DiscordServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind discord twin");
        let addr = listener.local_addr().expect("local addr");
        let resume_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind discord resume gateway");
        let resume_addr = resume_listener.local_addr().expect("local addr");
        let bot_id = bot_id_from_token(token);
        let inner = Inner {
            token: token.into(),
            bot_id,
            bot_username: "clawline-test-bot".into(),
            base_url: format!("http://{addr}"),
            gateway_url: format!("ws://{addr}"),
            resume_url: format!("ws://{resume_addr}"),
            users: BTreeMap::new(),
            guilds: BTreeMap::new(),
            channels: BTreeMap::new(),
            dms: HashMap::new(),
            messages: BTreeMap::new(),
            files: HashMap::new(),
            last_id: 0,
            missing_permissions: HashSet::new(),
            heartbeat_interval: Duration::from_millis(41_250),
            heartbeat_grace: None,
            resume_window: Duration::from_secs(180),
            nonce_window: Duration::from_secs(300),
            reconnect_grace: Duration::from_secs(3),
            require_content: false,
            privileged_enabled: PRIVILEGED_INTENTS,
            session_starts: 1000,
            identify_concurrency: false,
            last_identify: None,
            conns: BTreeMap::new(),
            sessions: BTreeMap::new(),
            next_session: 0,
            stop_acks: false,
            duplicate_next: false,
            malformed_next: false,
            buckets: HashMap::new(),
            bucket_override: None,
            route_limits: HashMap::new(),
            global_times: VecDeque::new(),
            scripted: VecDeque::new(),
            nonces: HashMap::new(),
            sent: Vec::new(),
            edits: Vec::new(),
            reactions: Vec::new(),
            typing: Vec::new(),
            requests: Vec::new(),
            identifies: Vec::new(),
            resumes: Vec::new(),
            heartbeats: Vec::new(),
            connections: Vec::new(),
            undelivered: Vec::new(),
        };
        let twin = Arc::new(Twin { inner: Mutex::new(inner), closed: AtomicBool::new(false) });
        let app = Router::new().route("/", get(gateway_main)).fallback(rest).with_state(twin.clone());
        let resume_app = Router::new().route("/", get(gateway_resume)).with_state(twin.clone());
        let serve = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let serve_resume = tokio::spawn(async move {
            let _ = axum::serve(resume_listener, resume_app).await;
        });
        DiscordServer { addr, resume_addr, twin, tasks: vec![serve, serve_resume] }
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `{base_url}/api/v10`.
    pub fn api_url(&self) -> String {
        format!("{}/api/v10", self.base_url())
    }

    /// `ws://127.0.0.1:<port>`, as `GET /gateway/bot` answers it (append `/?v=10&encoding=json`).
    pub fn gateway_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The `resume_gateway_url` READY gives: `ws://127.0.0.1:<other port>`.
    pub fn resume_gateway_url(&self) -> String {
        format!("ws://{}", self.resume_addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn token(&self) -> String {
        self.twin.lock().token.clone()
    }

    pub fn bot_user_id(&self) -> u64 {
        self.twin.lock().bot_id
    }

    /// The bot's `username`.
    pub fn set_bot_username(&self, username: &str) {
        self.twin.lock().bot_username = username.into();
    }

    /// The `heartbeat_interval` of later Hellos.
    pub fn set_heartbeat_interval(&self, interval: Duration) {
        self.twin.lock().heartbeat_interval = interval;
    }

    /// How long past the interval the twin waits for a heartbeat before closing with 4009
    /// (half the interval by default).
    pub fn set_heartbeat_grace(&self, grace: Duration) {
        self.twin.lock().heartbeat_grace = Some(grace);
    }

    /// How long a disconnected session stays resumable.
    pub fn set_resume_window(&self, window: Duration) {
        self.twin.lock().resume_window = window;
    }

    /// How long `enforce_nonce` remembers a nonce.
    pub fn set_nonce_window(&self, window: Duration) {
        self.twin.lock().nonce_window = window;
    }

    /// How long after op 7 the twin cuts a connection the client did not close.
    pub fn set_reconnect_grace(&self, grace: Duration) {
        self.twin.lock().reconnect_grace = grace;
    }

    /// When on, an Identify without `MESSAGE_CONTENT` is closed with 4014 (a twin-only check).
    pub fn require_message_content_intent(&self, on: bool) {
        self.twin.lock().require_content = on;
    }

    /// The privileged intents enabled for the app (a mask of [`PRIVILEGED_INTENTS`]); asking for
    /// another one in Identify is closed with 4014.
    pub fn set_enabled_privileged_intents(&self, mask: u64) {
        self.twin.lock().privileged_enabled = mask & PRIVILEGED_INTENTS;
    }

    /// When on, an accepted Identify less than 5 s after the previous one is answered with op 9
    /// `false` (the documented `max_concurrency: 1` per 5 seconds). Off by default so tests may
    /// reconnect quickly.
    pub fn enforce_identify_concurrency(&self, on: bool) {
        self.twin.lock().identify_concurrency = on;
    }

    /// Sends, edits, reactions and typing in `channel_id` are 403 50013 while on.
    pub fn set_missing_permissions(&self, channel_id: u64, on: bool) {
        let mut g = self.twin.lock();
        if on {
            g.missing_permissions.insert(channel_id);
        } else {
            g.missing_permissions.remove(&channel_id);
        }
    }

    // --- Guilds, channels and users ----------------------------------------------------------

    /// A guild the bot is in. Fires `GUILD_CREATE` to open sessions.
    pub fn add_guild(&self, guild_id: u64, name: &str) {
        let mut g = self.twin.lock();
        let joined_at = iso8601(now_ms());
        g.guilds.insert(guild_id, Guild { name: name.into(), joined_at, members: BTreeMap::new() });
        let guild = g.guild_create(guild_id);
        g.dispatch("GUILD_CREATE", move |intents| (intents & INTENT_GUILDS != 0).then(|| guild.clone()));
    }

    /// A text channel of a guild added before. Fires `CHANNEL_CREATE`.
    pub fn add_channel(&self, guild_id: u64, channel_id: u64, name: &str) {
        let mut g = self.twin.lock();
        assert!(g.guilds.contains_key(&guild_id), "add_channel: no guild {guild_id} (add_guild first)");
        g.channels.insert(
            channel_id,
            ChannelInfo {
                kind: ChannelKind::GuildText,
                guild_id: Some(guild_id),
                name: name.into(),
                parent_id: None,
                recipient: None,
                last_message_id: None,
                thread_count: 0,
            },
        );
        let channel = g.channel_json(channel_id);
        g.dispatch("CHANNEL_CREATE", move |intents| (intents & INTENT_GUILDS != 0).then(|| channel.clone()));
    }

    /// A public thread of a text channel. Fires `THREAD_CREATE`.
    pub fn add_thread(&self, guild_id: u64, parent_id: u64, thread_id: u64) {
        let mut g = self.twin.lock();
        let parent = g.channels.get(&parent_id).unwrap_or_else(|| panic!("add_thread: no channel {parent_id}"));
        assert_eq!(parent.guild_id, Some(guild_id), "add_thread: channel {parent_id} is not in guild {guild_id}");
        g.channels.insert(
            thread_id,
            ChannelInfo {
                kind: ChannelKind::PublicThread,
                guild_id: Some(guild_id),
                name: format!("thread-{thread_id}"),
                parent_id: Some(parent_id),
                recipient: None,
                last_message_id: None,
                thread_count: 0,
            },
        );
        let mut thread = g.channel_json(thread_id);
        thread["newly_created"] = true.into();
        g.dispatch("THREAD_CREATE", move |intents| (intents & INTENT_GUILDS != 0).then(|| thread.clone()));
    }

    /// A user (the author of pushed messages).
    pub fn add_user(&self, user_id: u64, username: &str) {
        self.twin.lock().users.insert(user_id, UserInfo { username: username.into(), global_name: None, bot: false });
    }

    /// The DM channel with a user (created, with the user, when missing); returns its id.
    pub fn add_dm_channel(&self, user_id: u64) -> u64 {
        self.twin.lock().dm_channel(user_id)
    }

    /// A stored message (inbound or sent, with edits applied) as the HTTP API answers it.
    pub fn message(&self, channel_id: u64, message_id: u64) -> Option<Value> {
        let g = self.twin.lock();
        g.messages.get(&message_id).filter(|m| m.channel_id == channel_id && !m.deleted).map(|m| m.json.clone())
    }

    // --- Pushing what people do --------------------------------------------------------------

    /// Pushes a `MESSAGE_CREATE`; returns the message id. Panics on a setup mistake.
    pub fn push_message(&self, m: Inbound) -> u64 {
        self.twin.lock().inbound(m)
    }

    /// A message in a guild text channel; `mentions_bot` puts `<@BOT_ID>` in front of it.
    pub fn push_guild_message(
        &self,
        channel_id: u64,
        author_id: u64,
        content: &str,
        mentions_bot: bool,
        roles: &[u64],
    ) -> u64 {
        self.push_message(Inbound {
            channel_id,
            author_id,
            content: content.into(),
            mentions_bot,
            roles: roles.to_vec(),
            ..Inbound::default()
        })
    }

    /// A message in a thread.
    pub fn push_thread_message(
        &self,
        thread_id: u64,
        author_id: u64,
        content: &str,
        mentions_bot: bool,
        roles: &[u64],
    ) -> u64 {
        let kind = self.twin.lock().channels.get(&thread_id).map(|c| c.kind);
        assert_eq!(kind, Some(ChannelKind::PublicThread), "push_thread_message: {thread_id} is not a thread");
        self.push_guild_message(thread_id, author_id, content, mentions_bot, roles)
    }

    /// A DM from a user (its channel is created when missing); returns `(channel_id, message_id)`.
    pub fn push_dm(&self, user_id: u64, content: &str) -> (u64, u64) {
        let channel_id = self.add_dm_channel(user_id);
        let id = self.push_message(Inbound {
            channel_id,
            author_id: user_id,
            content: content.into(),
            ..Inbound::default()
        });
        (channel_id, id)
    }

    /// A user reacts to a message: `MESSAGE_REACTION_ADD`.
    pub fn push_reaction(&self, channel_id: u64, message_id: u64, user_id: u64, emoji: &str) {
        let mut g = self.twin.lock();
        g.ensure_user(user_id);
        assert!(g.messages.contains_key(&message_id), "push_reaction: no message {message_id}");
        if !g.reaction_event("MESSAGE_REACTION_ADD", channel_id, message_id, user_id, emoji) {
            g.undelivered.push("MESSAGE_REACTION_ADD".into());
        }
    }

    /// A dispatch of any kind with this `d`, to every session whatever its intents.
    pub fn push_raw_dispatch(&self, event: &str, data: Value) {
        let mut g = self.twin.lock();
        if !g.dispatch(event, move |_| Some(data.clone())) {
            g.undelivered.push(event.into());
        }
    }

    // --- Inspection --------------------------------------------------------------------------

    /// Successful Create Message calls, in order (deduplicated ones flagged).
    pub fn sent(&self) -> Vec<Sent> {
        self.twin.lock().sent.clone()
    }

    /// Waits until at least `n` Create Message calls succeeded; panics with them on timeout.
    pub async fn wait_sent(&self, n: usize, timeout: Duration) -> Vec<Sent> {
        wait_until("sent messages", n, timeout, || self.sent()).await
    }

    pub fn edits(&self) -> Vec<Edit> {
        self.twin.lock().edits.clone()
    }

    pub async fn wait_edits(&self, n: usize, timeout: Duration) -> Vec<Edit> {
        wait_until("edits", n, timeout, || self.edits()).await
    }

    pub fn reactions(&self) -> Vec<Reaction> {
        self.twin.lock().reactions.clone()
    }

    pub async fn wait_reactions(&self, n: usize, timeout: Duration) -> Vec<Reaction> {
        wait_until("reactions", n, timeout, || self.reactions()).await
    }

    pub fn typing(&self) -> Vec<Typing> {
        self.twin.lock().typing.clone()
    }

    /// Every HTTP call received, in order of answer.
    pub fn requests(&self) -> Vec<ApiRequest> {
        self.twin.lock().requests.clone()
    }

    pub fn identifies(&self) -> Vec<Identify> {
        self.twin.lock().identifies.clone()
    }

    pub async fn wait_identifies(&self, n: usize, timeout: Duration) -> Vec<Identify> {
        wait_until("identifies", n, timeout, || self.identifies()).await
    }

    pub fn resumes(&self) -> Vec<Resume> {
        self.twin.lock().resumes.clone()
    }

    pub async fn wait_resumes(&self, n: usize, timeout: Duration) -> Vec<Resume> {
        wait_until("resumes", n, timeout, || self.resumes()).await
    }

    pub fn heartbeats(&self) -> Vec<Heartbeat> {
        self.twin.lock().heartbeats.clone()
    }

    pub async fn wait_heartbeats(&self, n: usize, timeout: Duration) -> Vec<Heartbeat> {
        wait_until("heartbeats", n, timeout, || self.heartbeats()).await
    }

    /// Every gateway connection, open or closed, in order.
    pub fn connections(&self) -> Vec<Connection> {
        self.twin.lock().connections.clone()
    }

    pub async fn wait_connections(&self, n: usize, timeout: Duration) -> Vec<Connection> {
        wait_until("gateway connections", n, timeout, || self.connections()).await
    }

    /// Waits until connection `id` (an index of [`DiscordServer::connections`]) has ended.
    pub async fn wait_closed(&self, id: usize, timeout: Duration) -> Connection {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self.connections().into_iter().nth(id).filter(|c| c.closed_by.is_some()) {
                return c;
            }
            assert!(Instant::now() < deadline, "discord twin: connection {id} still open after {timeout:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until some open connection has an identified or resumed session (READY or RESUMED
    /// sent); panics on timeout.
    pub async fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.twin.lock().conns.values().any(|c| c.identified && c.session.is_some() && !c.closing) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "discord twin: no ready gateway session within {timeout:?}; connections: {:#?}; identifies: {:#?}",
                self.connections(),
                self.identifies()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The last `s` of the newest session (0 before any).
    pub fn last_seq(&self) -> u64 {
        let g = self.twin.lock();
        g.newest_session().and_then(|id| g.sessions.get(&id)).map(|s| s.seq).unwrap_or(0)
    }

    /// Events pushed while no session existed, which nobody received.
    pub fn undelivered(&self) -> Vec<String> {
        self.twin.lock().undelivered.clone()
    }

    // --- Faults ------------------------------------------------------------------------------

    /// Cuts every gateway connection without a close frame; sessions stay resumable.
    pub fn drop_connection(&self) {
        let mut g = self.twin.lock();
        for c in g.conns.values_mut() {
            c.closing = true;
            let _ = c.tx.send(Out::Abort);
        }
    }

    /// While on, heartbeats get no ACK.
    pub fn stop_acking_heartbeats(&self, on: bool) {
        self.twin.lock().stop_acks = on;
    }

    /// The open connections stop getting anything (ACKs and dispatches) until they are closed.
    pub fn zombify_connections(&self) {
        for c in self.twin.lock().conns.values_mut() {
            c.zombie = true;
        }
    }

    /// Sends op 7 Reconnect to every connection and cuts those still open after the grace.
    pub fn send_reconnect(&self) {
        let (ids, grace) = {
            let g = self.twin.lock();
            for c in g.conns.values() {
                let _ = c.tx.send(Out::Text(frame(7, Value::Null)));
            }
            (g.conns.keys().copied().collect::<Vec<_>>(), g.reconnect_grace)
        };
        let twin = self.twin.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let mut g = twin.lock();
            for id in ids {
                if let Some(c) = g.conns.get_mut(&id) {
                    c.closing = true;
                    let _ = c.tx.send(Out::Abort);
                }
            }
        });
    }

    /// Sends op 9 Invalid Session with `d: resumable` to every connection; when not resumable
    /// the sessions end.
    pub fn invalidate_session(&self, resumable: bool) {
        let mut g = self.twin.lock();
        let ids: Vec<usize> = g.conns.keys().copied().collect();
        for id in ids {
            g.send(id, frame(9, Value::Bool(resumable)));
            if let Some(c) = g.conns.get_mut(&id) {
                c.identified = false;
                let session = if resumable { None } else { c.session.take() };
                if let Some(s) = session.and_then(|s| g.sessions.get_mut(&s)) {
                    s.valid = false;
                }
            }
        }
    }

    /// Closes every connection with `code` (and the documented reason).
    pub fn close_with(&self, code: u16) {
        let mut g = self.twin.lock();
        let ids: Vec<usize> = g.conns.keys().copied().collect();
        for id in ids {
            g.close(id, code);
        }
    }

    /// Sends op 1 to every connection: the client must heartbeat at once.
    pub fn request_heartbeat(&self) {
        let mut g = self.twin.lock();
        for c in g.conns.values_mut() {
            c.heartbeat_requested = true;
            let _ = c.tx.send(Out::Text(frame(1, Value::Null)));
        }
    }

    /// Every route's bucket allows `limit` requests per `per` (buckets restart).
    pub fn set_bucket_limit(&self, limit: u32, per: Duration) {
        let mut g = self.twin.lock();
        g.bucket_override = Some((limit, per));
        g.route_limits.clear();
        g.buckets.clear();
    }

    /// One route's bucket (by [`ApiRequest::route`] name) allows `limit` requests per `per`.
    pub fn set_route_limit(&self, route: &str, limit: u32, per: Duration) {
        let mut g = self.twin.lock();
        g.route_limits.insert(route.into(), (limit, per));
        g.buckets.clear();
    }

    /// The next call of `route` (a name of [`ApiRequest::route`], or `*` for any) gets `fault`.
    pub fn fail_next(&self, route: &str, fault: Fault) {
        self.twin.lock().scripted.push_back((route.into(), fault));
    }

    /// The next dispatch sent goes out twice with the same `s`.
    pub fn duplicate_next_dispatch(&self) {
        self.twin.lock().duplicate_next = true;
    }

    /// The next dispatch sent is cut in half: not valid JSON.
    pub fn malformed_next_frame(&self) {
        self.twin.lock().malformed_next = true;
    }
}

// ---------------------------------------------------------------------------------------------
// Objects and dispatches
// ---------------------------------------------------------------------------------------------

impl Inner {
    fn next_id(&mut self) -> u64 {
        let id = (now_ms().saturating_sub(DISCORD_EPOCH_MS) << 22).max(self.last_id + 1);
        self.last_id = id;
        id
    }

    fn ensure_user(&mut self, id: u64) {
        if id != self.bot_id {
            self.users.entry(id).or_insert_with(|| UserInfo {
                username: format!("user{id}"),
                global_name: None,
                bot: false,
            });
        }
    }

    fn bot_user(&self) -> Value {
        json!({
            "id": sf(self.bot_id), "username": self.bot_username, "discriminator": "0",
            "global_name": null, "avatar": null, "bot": true, "public_flags": 0,
        })
    }

    /// The user object (`GET /users/@me` shape for the bot).
    fn user_json(&self, id: u64) -> Value {
        if id == self.bot_id {
            return self.bot_user();
        }
        match self.users.get(&id) {
            Some(u) => {
                let mut v = json!({
                    "id": sf(id), "username": u.username, "discriminator": "0",
                    "global_name": u.global_name, "avatar": null, "public_flags": 0,
                });
                if u.bot {
                    v["bot"] = true.into();
                }
                v
            }
            None => {
                json!({"id": sf(id), "username": format!("user{id}"), "discriminator": "0", "global_name": null, "avatar": null})
            }
        }
    }

    fn member_json(&self, guild_id: u64, user_id: u64) -> Value {
        let guild = self.guilds.get(&guild_id);
        let roles: Vec<Value> = guild
            .and_then(|g| g.members.get(&user_id))
            .map(|r| r.iter().map(|id| sf(*id)).collect())
            .unwrap_or_default();
        let joined = guild.map(|g| g.joined_at.clone()).unwrap_or_else(|| iso8601(now_ms()));
        json!({
            "roles": roles, "joined_at": joined, "nick": null, "avatar": null, "premium_since": null,
            "deaf": false, "mute": false, "flags": 0, "pending": false, "communication_disabled_until": null,
        })
    }

    fn channel_json(&self, id: u64) -> Value {
        let Some(c) = self.channels.get(&id) else { return Value::Null };
        let last = c.last_message_id.map(sf).unwrap_or(Value::Null);
        match c.kind {
            ChannelKind::GuildText => json!({
                "id": sf(id), "type": 0, "guild_id": c.guild_id.map(sf), "name": c.name, "position": 0,
                "permission_overwrites": [], "nsfw": false, "parent_id": null, "topic": null,
                "last_message_id": last, "rate_limit_per_user": 0, "flags": 0,
            }),
            ChannelKind::Dm => json!({
                "id": sf(id), "type": 1, "last_message_id": last, "flags": 0,
                "recipients": [c.recipient.map(|u| self.user_json(u)).unwrap_or(Value::Null)],
            }),
            ChannelKind::PublicThread => {
                let created = iso8601(snowflake_ms(id));
                json!({
                    "id": sf(id), "type": 11, "guild_id": c.guild_id.map(sf), "parent_id": c.parent_id.map(sf),
                    "name": c.name, "owner_id": sf(self.bot_id), "last_message_id": last,
                    "message_count": c.thread_count, "member_count": 1, "total_message_sent": c.thread_count,
                    "rate_limit_per_user": 0, "flags": 0,
                    "thread_metadata": {"archived": false, "auto_archive_duration": 1440, "archive_timestamp": created,
                        "locked": false, "create_timestamp": created},
                })
            }
        }
    }

    fn guild_create(&self, guild_id: u64) -> Value {
        let g = &self.guilds[&guild_id];
        let in_guild = |kind: ChannelKind| -> Vec<Value> {
            self.channels
                .iter()
                .filter(|(_, c)| c.guild_id == Some(guild_id) && c.kind == kind)
                .map(|(id, _)| self.channel_json(*id))
                .collect()
        };
        let mut bot_member = self.member_json(guild_id, self.bot_id);
        bot_member["user"] = self.bot_user();
        json!({
            "id": sf(guild_id), "name": g.name, "icon": null, "owner_id": sf(self.bot_id.wrapping_add(1)),
            "unavailable": false, "large": false, "member_count": g.members.len() + 1, "joined_at": g.joined_at,
            "channels": in_guild(ChannelKind::GuildText), "threads": in_guild(ChannelKind::PublicThread),
            "members": [bot_member],
            "roles": [{"id": sf(guild_id), "name": "@everyone", "permissions": "1071698660929", "position": 0,
                "color": 0, "hoist": false, "managed": false, "mentionable": false, "flags": 0}],
            "emojis": [], "stickers": [], "presences": [], "voice_states": [], "stage_instances": [],
            "guild_scheduled_events": [], "soundboard_sounds": [], "features": [], "preferred_locale": "en-US",
        })
    }

    fn dm_channel(&mut self, user_id: u64) -> u64 {
        self.ensure_user(user_id);
        if let Some(id) = self.dms.get(&user_id) {
            return *id;
        }
        let id = self.next_id();
        self.channels.insert(
            id,
            ChannelInfo {
                kind: ChannelKind::Dm,
                guild_id: None,
                name: String::new(),
                parent_id: None,
                recipient: Some(user_id),
                last_message_id: None,
                thread_count: 0,
            },
        );
        self.dms.insert(user_id, id);
        id
    }

    /// Sends a dispatch to every live session: `build` gets the session's intents and gives `d`,
    /// or `None` when the session does not receive it. False when no session existed.
    fn dispatch(&mut self, event: &str, build: impl Fn(u64) -> Option<Value>) -> bool {
        let now = Instant::now();
        let window = self.resume_window;
        let mut any = false;
        let mut sends = Vec::new();
        for s in self.sessions.values_mut() {
            if s.valid && s.conn.is_none() && s.disconnected_at.is_some_and(|t| now.duration_since(t) > window) {
                s.valid = false;
            }
            if !s.valid {
                continue;
            }
            any = true;
            let Some(d) = build(s.intents) else { continue };
            s.seq += 1;
            let text = json!({"op": 0, "t": event, "s": s.seq, "d": d}).to_string();
            s.events.push((s.seq, text.clone()));
            if let Some(c) = s.conn {
                sends.push((c, text));
            }
        }
        for (c, text) in sends {
            self.send_dispatch(c, text);
        }
        any
    }

    /// Sends a dispatch frame to a connection, applying the one-shot frame faults.
    fn send_dispatch(&mut self, conn: usize, text: String) {
        let Some(c) = self.conns.get(&conn) else { return };
        if c.zombie || c.closing {
            return;
        }
        if self.malformed_next {
            self.malformed_next = false;
            let cut = text.len() / 2;
            let cut = (0..=cut).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
            let _ = c.tx.send(Out::Text(text[..cut].to_string()));
            return;
        }
        let twice = std::mem::take(&mut self.duplicate_next);
        let _ = c.tx.send(Out::Text(text.clone()));
        if twice {
            let _ = c.tx.send(Out::Text(text));
        }
    }

    fn send(&self, conn: usize, text: String) {
        if let Some(c) = self.conns.get(&conn)
            && !c.closing
        {
            let _ = c.tx.send(Out::Text(text));
        }
    }

    /// Queues a close frame; codes that end sessions end this connection's session.
    fn close(&mut self, conn: usize, code: u16) {
        let (reason, resumable) = close_reason(code);
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if c.closing {
            return;
        }
        c.closing = true;
        let _ = c.tx.send(Out::Close(code, reason.into()));
        let session = c.session.clone();
        if !resumable && let Some(s) = session.and_then(|s| self.sessions.get_mut(&s)) {
            s.valid = false;
        }
    }

    fn newest_session(&self) -> Option<String> {
        self.identifies.iter().rev().find_map(|i| i.session_id.clone())
    }

    /// `(id, message)`: parses `<@id>`, `<@!id>` and `<@&id>` out of a content.
    fn parse_mentions(content: &str) -> (Vec<u64>, Vec<u64>) {
        let mut users = Vec::new();
        let mut roles = Vec::new();
        let mut rest = content;
        while let Some(at) = rest.find("<@") {
            rest = &rest[at + 2..];
            let (is_role, body) = match rest.strip_prefix('&') {
                Some(r) => (true, r),
                None => (false, rest.strip_prefix('!').unwrap_or(rest)),
            };
            let digits: String = body.chars().take_while(char::is_ascii_digit).collect();
            if !digits.is_empty()
                && body[digits.len()..].starts_with('>')
                && let Ok(id) = digits.parse::<u64>()
            {
                let list = if is_role { &mut roles } else { &mut users };
                if !list.contains(&id) {
                    list.push(id);
                }
            }
        }
        (users, roles)
    }

    /// The `mentions` array of a message (users with a partial member in guilds for gateway
    /// events).
    fn mentions_json(&self, ids: &[u64], guild_id: Option<u64>, with_member: bool) -> Value {
        let list: Vec<Value> = ids
            .iter()
            .filter(|id| **id == self.bot_id || self.users.contains_key(id))
            .map(|id| {
                let mut u = self.user_json(*id);
                if with_member && let Some(g) = guild_id {
                    u["member"] = self.member_json(g, *id);
                }
                u
            })
            .collect();
        Value::Array(list)
    }

    /// The gateway form of a stored message: adds `guild_id` and `member`, members to mentions.
    fn gateway_message(&self, id: u64) -> (Value, bool, bool) {
        let m = &self.messages[&id];
        let mut json = m.json.clone();
        let guild_id = self.channels.get(&m.channel_id).and_then(|c| c.guild_id);
        let mentions: Vec<u64> = json["mentions"]
            .as_array()
            .map(|a| a.iter().filter_map(|u| as_snowflake(&u["id"])).collect())
            .unwrap_or_default();
        if let Some(g) = guild_id {
            json["guild_id"] = sf(g);
            json["member"] = self.member_json(g, m.author_id);
            json["mentions"] = self.mentions_json(&mentions, Some(g), true);
        }
        let exempt = m.author_id == self.bot_id || mentions.contains(&self.bot_id) || guild_id.is_none();
        (json, guild_id.is_some(), exempt)
    }

    /// Whether an app without `MESSAGE_CONTENT` still gets a message's content: its own
    /// messages, DMs and messages that mention it.
    fn content_exempt(&self, m: &Value) -> bool {
        let bot = Some(self.bot_id);
        let in_dm =
            as_snowflake(&m["channel_id"]).and_then(|c| self.channels.get(&c)).is_some_and(|c| c.guild_id.is_none());
        in_dm
            || as_snowflake(&m["author"]["id"]) == bot
            || m["mentions"].as_array().is_some_and(|l| l.iter().any(|u| as_snowflake(&u["id"]) == bot))
    }

    /// `MESSAGE_CREATE` or `MESSAGE_UPDATE` of a stored message, with intents applied.
    /// `MESSAGE_CREATE` or `MESSAGE_UPDATE` of a stored message, with intents applied; false
    /// when no session existed to receive it.
    fn message_event(&mut self, event: &str, id: u64) -> bool {
        let (json, in_guild, exempt) = self.gateway_message(id);
        let needed = if in_guild { INTENT_GUILD_MESSAGES } else { INTENT_DIRECT_MESSAGES };
        let referenced_exempt =
            json.get("referenced_message").is_some_and(|r| !r.is_object() || self.content_exempt(r));
        self.dispatch(event, move |intents| {
            if intents & needed == 0 {
                return None;
            }
            if intents & INTENT_MESSAGE_CONTENT != 0 {
                return Some(json.clone());
            }
            let mut m = if exempt { json.clone() } else { strip_content(&json) };
            if !referenced_exempt && let Some(r) = m.get_mut("referenced_message") {
                *r = strip_content(r);
            }
            Some(m)
        })
    }

    fn reaction_event(&mut self, event: &str, channel_id: u64, message_id: u64, user_id: u64, emoji: &str) -> bool {
        let guild_id = self.channels.get(&channel_id).and_then(|c| c.guild_id);
        let author = self.messages.get(&message_id).map(|m| m.author_id);
        let emoji_json = match emoji.split_once(':') {
            Some((name, id)) => json!({"id": id, "name": name}),
            None => json!({"id": null, "name": emoji}),
        };
        let mut d = json!({
            "user_id": sf(user_id), "channel_id": sf(channel_id), "message_id": sf(message_id),
            "emoji": emoji_json, "burst": false, "type": 0,
        });
        if event == "MESSAGE_REACTION_ADD" {
            d["burst_colors"] = json!([]);
            if let Some(a) = author {
                d["message_author_id"] = sf(a);
            }
        }
        if let Some(g) = guild_id {
            d["guild_id"] = sf(g);
            if event == "MESSAGE_REACTION_ADD" {
                let mut member = self.member_json(g, user_id);
                member["user"] = self.user_json(user_id);
                d["member"] = member;
            }
        }
        let needed = if guild_id.is_some() { INTENT_GUILD_MESSAGE_REACTIONS } else { INTENT_DIRECT_MESSAGE_REACTIONS };
        self.dispatch(event, move |intents| (intents & needed != 0).then(|| d.clone()))
    }

    /// Stores a new message and returns its id.
    #[allow(clippy::too_many_arguments)]
    fn store_message(
        &mut self,
        channel_id: u64,
        author_id: u64,
        content: &str,
        mentions: &[u64],
        mention_roles: &[u64],
        mention_everyone: bool,
        reply_to: Option<(u64, u64)>,
        extra: Map<String, Value>,
    ) -> u64 {
        let id = self.next_id();
        let guild_id = self.channels.get(&channel_id).and_then(|c| c.guild_id);
        let mut j = Map::new();
        j.insert("id".into(), sf(id));
        j.insert("channel_id".into(), sf(channel_id));
        j.insert("author".into(), self.user_json(author_id));
        j.insert("content".into(), content.into());
        j.insert("timestamp".into(), iso8601(snowflake_ms(id)).into());
        j.insert("edited_timestamp".into(), Value::Null);
        j.insert("tts".into(), false.into());
        j.insert("mention_everyone".into(), mention_everyone.into());
        j.insert("mentions".into(), self.mentions_json(mentions, guild_id, false));
        j.insert("mention_roles".into(), mention_roles.iter().map(|r| sf(*r)).collect::<Vec<_>>().into());
        j.insert("attachments".into(), json!([]));
        j.insert("embeds".into(), json!([]));
        j.insert("components".into(), json!([]));
        j.insert("pinned".into(), false.into());
        j.insert("type".into(), 0.into());
        j.insert("flags".into(), 0.into());
        if let Some((ref_channel, ref_id)) = reply_to {
            j.insert("type".into(), 19.into());
            let mut reference = json!({"type": 0, "message_id": sf(ref_id), "channel_id": sf(ref_channel)});
            if let Some(g) = guild_id {
                reference["guild_id"] = sf(g);
            }
            j.insert("message_reference".into(), reference);
            let referenced = self.messages.get(&ref_id).filter(|m| !m.deleted).map(|m| {
                let mut r = m.json.clone();
                if let Some(o) = r.as_object_mut() {
                    o.remove("referenced_message");
                }
                r
            });
            j.insert("referenced_message".into(), referenced.unwrap_or(Value::Null));
        }
        if let Some(c) = self.channels.get_mut(&channel_id) {
            c.last_message_id = Some(id);
            if c.kind == ChannelKind::PublicThread {
                j.insert("position".into(), c.thread_count.into());
                c.thread_count += 1;
            }
        }
        j.extend(extra);
        self.messages.insert(id, StoredMessage { channel_id, author_id, json: Value::Object(j), deleted: false });
        id
    }

    fn attachment_json(&mut self, channel_id: u64, name: &str, content_type: &str, bytes: Bytes) -> Value {
        let id = self.next_id();
        let url = format!("{}/attachments/{channel_id}/{id}/{}", self.base_url, name);
        let v = json!({
            "id": sf(id), "filename": name, "size": bytes.len(), "url": url, "proxy_url": url,
            "content_type": content_type,
        });
        self.files.insert((channel_id, id), StoredFile { name: name.into(), content_type: content_type.into(), bytes });
        v
    }

    fn inbound(&mut self, m: Inbound) -> u64 {
        let channel = self.channels.get(&m.channel_id).unwrap_or_else(|| panic!("push: no channel {}", m.channel_id));
        let guild_id = channel.guild_id;
        if let Some(r) = m.reply_to {
            assert!(
                self.messages.get(&r).is_some_and(|x| x.channel_id == m.channel_id),
                "push: channel {} has no message {r} to reply to",
                m.channel_id
            );
        }
        if m.author_is_bot {
            self.users.entry(m.author_id).or_insert_with(|| UserInfo {
                username: format!("bot{}", m.author_id),
                global_name: None,
                bot: true,
            });
        }
        self.ensure_user(m.author_id);
        if let Some(g) = guild_id.and_then(|g| self.guilds.get_mut(&g)) {
            let roles = g.members.entry(m.author_id).or_default();
            if !m.roles.is_empty() {
                *roles = m.roles.clone();
            }
        }
        let bot_tag = format!("<@{}>", self.bot_id);
        let mut content = m.content.clone();
        if m.mentions_bot && !content.contains(&bot_tag) && !content.contains(&format!("<@!{}>", self.bot_id)) {
            content = format!("{bot_tag} {content}");
        }
        let (mut users, roles) = Inner::parse_mentions(&content);
        if let Some(r) = m.reply_to
            && let Some(a) = self.messages.get(&r).map(|x| x.author_id)
            && !users.contains(&a)
        {
            users.push(a);
        }
        let everyone = guild_id.is_some() && (content.contains("@everyone") || content.contains("@here"));
        let mut extra = Map::new();
        if !m.attachments.is_empty() {
            let list: Vec<Value> = m
                .attachments
                .iter()
                .map(|(name, bytes)| {
                    let ct = guess_content_type(name);
                    self.attachment_json(m.channel_id, name, ct, Bytes::from(bytes.clone()))
                })
                .collect();
            extra.insert("attachments".into(), list.into());
        }
        let id = self.store_message(
            m.channel_id,
            m.author_id,
            &content,
            &users,
            &roles,
            everyone,
            m.reply_to.map(|r| (m.channel_id, r)),
            extra,
        );
        if !self.message_event("MESSAGE_CREATE", id) {
            self.undelivered.push("MESSAGE_CREATE".into());
        }
        id
    }
}

/// A message as an app without `MESSAGE_CONTENT` receives it.
fn strip_content(m: &Value) -> Value {
    let mut m = m.clone();
    if let Some(o) = m.as_object_mut() {
        o.insert("content".into(), "".into());
        o.insert("embeds".into(), json!([]));
        o.insert("attachments".into(), json!([]));
        o.insert("components".into(), json!([]));
        o.remove("poll");
    }
    m
}

fn guess_content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("txt") => "text/plain; charset=utf-8",
        Some("pdf") => "application/pdf",
        Some("ogg") => "audio/ogg",
        Some("mp3") => "audio/mpeg",
        _ => "application/octet-stream",
    }
}

// ---------------------------------------------------------------------------------------------
// The gateway
// ---------------------------------------------------------------------------------------------

async fn gateway_main(
    State(twin): State<Shared>,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    upgrade(twin, query, ws, false)
}

async fn gateway_resume(
    State(twin): State<Shared>,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    upgrade(twin, query, ws, true)
}

fn upgrade(
    twin: Shared,
    query: Option<String>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    via_resume: bool,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let query = query.unwrap_or_default();
    let pairs = query_pairs(&query);
    let unsupported = pairs.iter().any(|(k, v)| (k == "encoding" && v != "json") || k == "compress");
    if unsupported {
        return Response::builder()
            .status(400)
            .header("content-type", "text/plain")
            .body(Body::from("discord twin: only encoding=json without compression is implemented"))
            .unwrap_or_default();
    }
    let bad_version = pairs.iter().any(|(k, v)| k == "v" && v != "10");
    ws.on_upgrade(move |socket| serve_gateway(twin, socket, via_resume, query, bad_version))
}

async fn serve_gateway(twin: Shared, socket: WebSocket, via_resume: bool, query: String, bad_version: bool) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = twin.lock().open_connection(tx, via_resume, query, bad_version);
    let (mut sink, mut stream) = socket.split();
    let mut closed_by = ClosedBy::ClientDropped;
    let mut code = None;
    loop {
        if twin.closed.load(Ordering::SeqCst) {
            closed_by = ClosedBy::ServerDropped;
            break;
        }
        let deadline = twin.lock().heartbeat_deadline(id);
        tokio::select! {
            out = rx.recv() => match out {
                Some(Out::Text(text)) => {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Some(Out::Close(c, reason)) => {
                    let _ = sink.send(Message::Close(Some(CloseFrame { code: c, reason: reason.into() }))).await;
                    closed_by = ClosedBy::Server;
                    code = Some(c);
                    break;
                }
                Some(Out::Abort) | None => {
                    closed_by = ClosedBy::ServerDropped;
                    break;
                }
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => twin.lock().on_client_text(id, text.as_str(), Instant::now()),
                Some(Ok(Message::Binary(_))) => twin.lock().close(id, 4002),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(f))) => {
                    closed_by = ClosedBy::Client;
                    code = f.map(|f| f.code);
                    break;
                }
                Some(Err(_)) | None => break,
            },
            _ = tokio::time::sleep_until(deadline.into()) => twin.lock().heartbeat_timeout(id),
        }
    }
    twin.lock().close_connection(id, closed_by, code);
}

impl Inner {
    fn open_connection(
        &mut self,
        tx: mpsc::UnboundedSender<Out>,
        via_resume: bool,
        query: String,
        bad_version: bool,
    ) -> usize {
        let id = self.connections.len();
        self.connections.push(Connection {
            id,
            via_resume_url: via_resume,
            query,
            session_id: None,
            closed_by: None,
            close_code: None,
        });
        let interval = self.heartbeat_interval;
        let grace = self.heartbeat_grace.unwrap_or(interval / 2);
        self.conns.insert(
            id,
            Conn {
                tx,
                session: None,
                identified: false,
                interval,
                grace,
                last_beat: Instant::now(),
                heartbeat_requested: false,
                zombie: false,
                closing: false,
                payloads: VecDeque::new(),
            },
        );
        if bad_version {
            self.close(id, 4012);
            return id;
        }
        let hello = json!({
            "heartbeat_interval": interval.as_millis() as u64,
            "_trace": ["[\"gateway-prd-twin-1\",{\"micros\":0.0}]"],
        });
        self.send(id, frame(10, hello));
        id
    }

    fn heartbeat_deadline(&self, conn: usize) -> Instant {
        match self.conns.get(&conn) {
            Some(c) if !c.closing => c.last_beat + c.interval + c.grace,
            _ => Instant::now() + Duration::from_secs(3600),
        }
    }

    fn heartbeat_timeout(&mut self, conn: usize) {
        if self.conns.get(&conn).is_some_and(|c| !c.closing && Instant::now() >= c.last_beat + c.interval + c.grace) {
            self.close(conn, 4009);
        }
    }

    fn close_connection(&mut self, conn: usize, closed_by: ClosedBy, code: Option<u16>) {
        let Some(c) = self.conns.remove(&conn) else { return };
        if let Some(record) = self.connections.get_mut(conn) {
            record.closed_by = Some(closed_by);
            record.close_code = code;
        }
        let Some(session) = c.session.and_then(|s| self.sessions.get_mut(&s)) else { return };
        if session.conn == Some(conn) {
            session.conn = None;
            session.disconnected_at = Some(Instant::now());
        }
        if closed_by == ClosedBy::Client && matches!(code, Some(1000 | 1001)) {
            session.valid = false;
        }
    }

    fn on_client_text(&mut self, conn: usize, text: &str, now: Instant) {
        let Some(c) = self.conns.get(&conn) else { return };
        if c.closing {
            return;
        }
        if text.len() > 4096 {
            return self.close(conn, 4002);
        }
        let v: Value = match serde_json::from_str(text) {
            Ok(v @ Value::Object(_)) => v,
            _ => return self.close(conn, 4002),
        };
        let op = v.get("op").and_then(Value::as_u64);
        if op != Some(1) {
            let c = self.conns.get_mut(&conn).expect("connection checked above");
            while c.payloads.front().is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60)) {
                c.payloads.pop_front();
            }
            c.payloads.push_back(now);
            if c.payloads.len() > 120 {
                return self.close(conn, 4008);
            }
        }
        let identified = self.conns[&conn].identified;
        let d = v.get("d").cloned().unwrap_or(Value::Null);
        match op {
            Some(1) => self.on_heartbeat(conn, &d, now),
            Some(2) => self.on_identify(conn, d),
            Some(6) => self.on_resume(conn, &d),
            Some(3 | 4 | 8 | 31) if !identified => self.close(conn, 4003),
            Some(3 | 4 | 8 | 31) => {}
            _ => self.close(conn, 4001),
        }
    }

    fn on_heartbeat(&mut self, conn: usize, d: &Value, now: Instant) {
        let seq = match d {
            Value::Null => None,
            v => match v.as_u64() {
                Some(n) => Some(n),
                None => return self.close(conn, 4001),
            },
        };
        let stop = self.stop_acks;
        let c = self.conns.get_mut(&conn).expect("connection checked by the caller");
        c.last_beat = now;
        let requested = std::mem::take(&mut c.heartbeat_requested);
        let acked = !stop && !c.zombie;
        if acked {
            let _ = c.tx.send(Out::Text(frame(11, Value::Null)));
        }
        self.heartbeats.push(Heartbeat { connection: conn, seq, acked, requested });
    }

    fn on_identify(&mut self, conn: usize, d: Value) {
        let token = d.get("token").and_then(Value::as_str).map(String::from);
        let intents = d.get("intents").and_then(Value::as_u64);
        let properties = d.get("properties").cloned().unwrap_or(Value::Null);
        let shard = d.get("shard").cloned();
        let token_valid = token.as_deref() == Some(self.token.as_str());
        let mut record = Identify {
            connection: conn,
            token_valid,
            intents,
            properties: properties.clone(),
            shard: shard.clone(),
            data: d.clone(),
            session_id: None,
            refused_with: None,
            invalid_session: false,
        };
        let refusal = if self.conns[&conn].identified {
            Some(4005)
        } else if token.is_none() || !properties.is_object() || d.get("intents").is_none() {
            Some(4001)
        } else if !token_valid {
            Some(4004)
        } else if intents.is_none_or(|i| i & !KNOWN_INTENTS != 0) {
            Some(4013)
        } else if intents.is_some_and(|i| i & PRIVILEGED_INTENTS & !self.privileged_enabled != 0)
            || (self.require_content && intents.is_some_and(|i| i & INTENT_MESSAGE_CONTENT == 0))
        {
            Some(4014)
        } else if shard.as_ref().is_some_and(|s| !valid_shard(s)) {
            Some(4010)
        } else {
            None
        };
        if let Some(code) = refusal {
            record.refused_with = Some(code);
            self.identifies.push(record);
            return self.close(conn, code);
        }
        let now = Instant::now();
        if self.identify_concurrency
            && self.last_identify.is_some_and(|t| now.duration_since(t) < Duration::from_secs(5))
        {
            record.invalid_session = true;
            self.identifies.push(record);
            return self.send(conn, frame(9, Value::Bool(false)));
        }
        self.last_identify = Some(now);
        let intents = intents.unwrap_or(0);
        self.next_session += 1;
        let session_id = format!("{:016x}{:016x}", now_ms().rotate_left(17) ^ self.bot_id, self.next_session);
        self.sessions.insert(
            session_id.clone(),
            Session { intents, seq: 0, events: Vec::new(), conn: Some(conn), disconnected_at: None, valid: true },
        );
        self.session_starts = self.session_starts.saturating_sub(1);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.identified = true;
            c.session = Some(session_id.clone());
        }
        if let Some(r) = self.connections.get_mut(conn) {
            r.session_id = Some(session_id.clone());
        }
        record.session_id = Some(session_id.clone());
        self.identifies.push(record);
        let mut ready = json!({
            "v": 10, "user": self.current_user(), "session_type": "normal", "session_id": session_id,
            "resume_gateway_url": self.resume_url,
            "guilds": self.guilds.keys().map(|g| json!({"id": sf(*g), "unavailable": true})).collect::<Vec<_>>(),
            "application": {"id": sf(self.bot_id), "flags": 0}, "private_channels": [], "relationships": [],
            "presences": [], "guild_join_requests": [], "geo_ordered_rtc_regions": [], "user_settings": {},
            "_trace": ["[\"gateway-prd-twin-1\",{\"micros\":0.0}]"],
        });
        if let Some(s) = shard {
            ready["shard"] = s;
        }
        self.session_dispatch(&session_id, "READY", ready);
        if intents & INTENT_GUILDS != 0 {
            let guilds: Vec<Value> = self.guilds.keys().map(|g| self.guild_create(*g)).collect();
            for g in guilds {
                self.session_dispatch(&session_id, "GUILD_CREATE", g);
            }
        }
    }

    /// A dispatch to one session.
    fn session_dispatch(&mut self, session_id: &str, event: &str, d: Value) {
        let Some(s) = self.sessions.get_mut(session_id) else { return };
        s.seq += 1;
        let text = json!({"op": 0, "t": event, "s": s.seq, "d": d}).to_string();
        s.events.push((s.seq, text.clone()));
        if let Some(c) = s.conn {
            self.send_dispatch(c, text);
        }
    }

    fn on_resume(&mut self, conn: usize, d: &Value) {
        let token = d.get("token").and_then(Value::as_str);
        let session_id = d.get("session_id").and_then(Value::as_str).map(String::from);
        let seq = d.get("seq").and_then(Value::as_u64);
        if self.conns[&conn].identified {
            return self.close(conn, 4005);
        }
        let Some(session_id) = session_id.filter(|_| token.is_some()) else { return self.close(conn, 4001) };
        let mut record =
            Resume { connection: conn, session_id: session_id.clone(), seq, outcome: ResumeOutcome::InvalidSession };
        if token != Some(self.token.as_str()) {
            record.outcome = ResumeOutcome::AuthenticationFailed;
            self.resumes.push(record);
            return self.close(conn, 4004);
        }
        let now = Instant::now();
        let window = self.resume_window;
        let usable = self.sessions.get_mut(&session_id).is_some_and(|s| {
            if s.conn.is_none() && s.disconnected_at.is_some_and(|t| now.duration_since(t) > window) {
                s.valid = false;
            }
            s.valid
        });
        if !usable {
            self.resumes.push(record);
            return self.send(conn, frame(9, Value::Bool(false)));
        }
        let session = self.sessions.get_mut(&session_id).expect("session checked above");
        let from = seq.unwrap_or(0);
        if from > session.seq {
            session.valid = false;
            record.outcome = ResumeOutcome::InvalidSeq;
            self.resumes.push(record);
            return self.close(conn, 4007);
        }
        let old = session.conn.replace(conn);
        session.disconnected_at = None;
        let replay: Vec<String> = session.events.iter().filter(|(s, _)| *s > from).map(|(_, t)| t.clone()).collect();
        if let Some(old) = old.filter(|o| *o != conn)
            && let Some(c) = self.conns.get_mut(&old)
        {
            c.closing = true;
            c.session = None;
            let _ = c.tx.send(Out::Abort);
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.identified = true;
            c.session = Some(session_id.clone());
        }
        if let Some(r) = self.connections.get_mut(conn) {
            r.session_id = Some(session_id.clone());
        }
        record.outcome = ResumeOutcome::Resumed { replayed: replay.len() };
        self.resumes.push(record);
        for text in replay {
            self.send_dispatch(conn, text);
        }
        self.session_dispatch(&session_id, "RESUMED", json!({"_trace": ["[\"gateway-prd-twin-1\",{\"micros\":0.0}]"]}));
    }

    fn current_user(&self) -> Value {
        let mut u = self.bot_user();
        u["verified"] = true.into();
        u["mfa_enabled"] = false.into();
        u["email"] = Value::Null;
        u["flags"] = 0.into();
        u["banner"] = Value::Null;
        u["accent_color"] = Value::Null;
        u["locale"] = "en-US".into();
        u
    }
}

fn valid_shard(s: &Value) -> bool {
    match s.as_array().map(Vec::as_slice) {
        Some([id, count]) => match (id.as_u64(), count.as_u64()) {
            (Some(id), Some(count)) => count >= 1 && id < count,
            _ => false,
        },
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// The HTTP API
// ---------------------------------------------------------------------------------------------

async fn rest(State(twin): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let reply = twin.lock().rest(&method, &uri, &headers, &body, Instant::now());
    into_response(reply)
}

impl Inner {
    fn rest(&mut self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes, now: Instant) -> Reply {
        let path = uri.path().to_string();
        let logged_body = serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(String::from);
        let authorized = auth.as_deref() == Some(format!("Bot {}", self.token).as_str());
        let (route_name, reply) = self.route_and_answer(method, uri, headers, body, authorized, now);
        self.requests.push(ApiRequest {
            method: method.to_string(),
            path,
            route: route_name.map(String::from),
            authorized,
            status: if reply.drop { 0 } else { reply.status },
            code: reply.code(),
            body: logged_body,
        });
        reply
    }

    fn route_and_answer(
        &mut self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &Bytes,
        authorized: bool,
        now: Instant,
    ) -> (Option<&'static str>, Reply) {
        let path = uri.path();
        if let Some(rest) = path.strip_prefix("/attachments/") {
            return (Some("get_attachment"), self.get_attachment(method, rest));
        }
        let Some(api_path) = path.strip_prefix("/api/v10/") else { return (None, not_found()) };
        let segs: Vec<String> = api_path.trim_end_matches('/').split('/').map(url_decode).collect();
        let route = match match_route(method, &segs) {
            Ok(r) => r,
            Err(reply) => return (None, reply),
        };
        let name = route.name;
        if route.needs_auth() && !authorized {
            return (Some(name), Reply::error(401, 0, "401: Unauthorized"));
        }
        // The documented global limit: 50 requests per second.
        while self.global_times.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
            self.global_times.pop_front();
        }
        if self.global_times.len() >= 50 {
            let oldest = self.global_times[0];
            let wait = Duration::from_secs(1).saturating_sub(now.duration_since(oldest));
            return (Some(name), rate_limited(wait.as_secs_f64().max(0.001), true));
        }
        self.global_times.push_back(now);
        if let Some(pos) = self.scripted.iter().position(|(r, _)| r == name || r == "*") {
            let (_, fault) = self.scripted.remove(pos).expect("position found");
            let reply = match fault {
                Fault::Status(s) => scripted_status(s),
                Fault::GlobalRateLimited(secs) => rate_limited(secs, true),
                Fault::RateLimited(secs) => {
                    let (limit, _) = self.limit_of(name);
                    let mut r = rate_limited(secs, false);
                    r.headers.extend(bucket_headers(route.bucket, limit, 0, secs));
                    r
                }
                Fault::Drop => Reply { drop: true, ..Reply::no_content() },
            };
            return (Some(name), reply);
        }
        let (limit, per) = self.limit_of(name);
        let key = (route.bucket, route.major());
        let bucket = self.buckets.entry(key).or_insert(Bucket { start: now, count: 0 });
        if now.duration_since(bucket.start) >= per {
            *bucket = Bucket { start: now, count: 0 };
        }
        let reset_after = per.saturating_sub(now.duration_since(bucket.start)).as_secs_f64();
        if bucket.count >= limit {
            let mut r = rate_limited(reset_after, false);
            r.headers.extend(bucket_headers(route.bucket, limit, 0, reset_after));
            return (Some(name), r);
        }
        bucket.count += 1;
        let remaining = limit - bucket.count;
        let mut reply = self.answer(&route, uri, headers, body);
        reply.headers.extend(bucket_headers(route.bucket, limit, remaining, reset_after));
        (Some(name), reply)
    }

    fn limit_of(&self, route: &str) -> (u32, Duration) {
        self.route_limits.get(route).copied().or(self.bucket_override).unwrap_or_else(|| default_limit(route))
    }

    fn answer(&mut self, route: &Route, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Reply {
        match route.name {
            "get_gateway" => Reply::json(200, json!({"url": self.gateway_url})),
            "get_gateway_bot" => Reply::json(
                200,
                json!({"url": self.gateway_url, "shards": 1, "session_start_limit": {
                    "total": 1000, "remaining": self.session_starts, "reset_after": 86_400_000u64, "max_concurrency": 1}}),
            ),
            "get_current_user" => Reply::json(200, self.current_user()),
            "get_user" => {
                let id = route.user_id.unwrap_or(0);
                if id == self.bot_id || self.users.contains_key(&id) {
                    Reply::json(200, self.user_json(id))
                } else {
                    Reply::error(404, 10013, "Unknown User")
                }
            }
            "create_dm" => self.create_dm(headers, body),
            "get_channel" => match route.channel_id.filter(|c| self.channels.contains_key(c)) {
                Some(c) => Reply::json(200, self.channel_json(c)),
                None => unknown_channel(),
            },
            "get_channel_messages" => self.list_messages(route, uri),
            "create_message" => self.create_message(route, headers, body),
            "get_message" => match self.find_message(route) {
                Ok(id) => Reply::json(200, self.messages[&id].json.clone()),
                Err(r) => r,
            },
            "edit_message" => self.edit_message(route, headers, body),
            "delete_message" => self.delete_message(route),
            "create_reaction" | "delete_own_reaction" => self.reaction(route),
            "trigger_typing" => self.trigger_typing(route),
            _ => not_found(),
        }
    }

    fn get_attachment(&self, method: &Method, rest: &str) -> Reply {
        let mut parts = rest.splitn(3, '/');
        let (Some(c), Some(id)) =
            (parts.next().and_then(|c| c.parse().ok()), parts.next().and_then(|i| i.parse().ok()))
        else {
            return not_found();
        };
        match self.files.get(&(c, id)) {
            Some(f) if method == Method::GET && parts.next().map(url_decode).as_deref() == Some(f.name.as_str()) => {
                Reply { raw: Some((f.content_type.clone(), f.bytes.clone())), ..Reply::json(200, Value::Null) }
            }
            _ => not_found(),
        }
    }

    fn find_channel(&self, route: &Route) -> Result<u64, Reply> {
        route.channel_id.filter(|c| self.channels.contains_key(c)).ok_or_else(unknown_channel)
    }

    fn find_message(&self, route: &Route) -> Result<u64, Reply> {
        let channel = self.find_channel(route)?;
        route
            .message_id
            .filter(|m| self.messages.get(m).is_some_and(|x| x.channel_id == channel && !x.deleted))
            .ok_or_else(unknown_message)
    }

    fn check_permissions(&self, channel: u64) -> Result<(), Reply> {
        if self.missing_permissions.contains(&channel) {
            return Err(Reply::error(403, 50013, "Missing Permissions"));
        }
        Ok(())
    }

    fn create_dm(&mut self, headers: &HeaderMap, body: &Bytes) -> Reply {
        let parsed = match parse_body(headers, body) {
            Ok(p) => p.json,
            Err(r) => return r,
        };
        let Some(raw) = parsed.get("recipient_id").filter(|v| !v.is_null()) else {
            return invalid_field("recipient_id", "BASE_TYPE_REQUIRED", "This field is required");
        };
        let Some(user) = as_snowflake(raw) else {
            let shown = raw.as_str().map(String::from).unwrap_or_else(|| raw.to_string());
            return invalid_field(
                "recipient_id",
                "NUMBER_TYPE_COERCE",
                &format!("Value \"{shown}\" is not snowflake."),
            );
        };
        if !self.users.contains_key(&user) {
            return Reply::error(400, 50033, "Invalid Recipient(s)");
        }
        let id = self.dm_channel(user);
        Reply::json(200, self.channel_json(id))
    }

    fn list_messages(&self, route: &Route, uri: &Uri) -> Reply {
        let channel = match self.find_channel(route) {
            Ok(c) => c,
            Err(r) => return r,
        };
        let q = query_pairs(uri.query().unwrap_or(""));
        let get = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        let limit = match get("limit").map(|l| l.parse::<u64>()) {
            None => 50,
            Some(Ok(l)) if (1..=100).contains(&l) => l as usize,
            Some(_) => {
                return invalid_field("limit", "NUMBER_TYPE_MAX", "int value should be less than or equal to 100.");
            }
        };
        let before = get("before").and_then(|b| b.parse::<u64>().ok());
        let after = get("after").and_then(|a| a.parse::<u64>().ok());
        let mut list: Vec<Value> = self
            .messages
            .iter()
            .rev()
            .filter(|(id, m)| {
                m.channel_id == channel
                    && !m.deleted
                    && before.is_none_or(|b| **id < b)
                    && after.is_none_or(|a| **id > a)
            })
            .map(|(_, m)| m.json.clone())
            .collect();
        if after.is_some() {
            // `after` pages from the oldest end, still answered newest first.
            let start = list.len().saturating_sub(limit);
            list = list.split_off(start);
        }
        list.truncate(limit);
        Reply::json(200, Value::Array(list))
    }

    /// Validates `content`, `embeds`, `components`; returns the errors of a form.
    fn check_content_fields(body: &Value, errors: &mut Map<String, Value>) {
        match body.get("content") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.chars().count() > 2000 => {
                errors
                    .insert("content".into(), field_error("BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length."));
            }
            Some(Value::String(_)) => {}
            Some(_) => {
                errors.insert("content".into(), field_error("BASE_TYPE_STRING", "Must be a string."));
            }
        }
        match body.get("embeds") {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) if a.len() > 10 => {
                errors.insert("embeds".into(), field_error("BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length."));
            }
            Some(Value::Array(_)) => {}
            Some(_) => {
                errors.insert("embeds".into(), field_error("BASE_TYPE_LIST", "Must be a list."));
            }
        }
        if let Some(c) = body.get("components")
            && !c.is_null()
            && !c.is_array()
        {
            errors.insert("components".into(), field_error("BASE_TYPE_LIST", "Must be a list."));
        }
    }

    /// `(users, roles, everyone)` mentioned by a bot message under `allowed_mentions`, or the
    /// validation error.
    fn allowed(content: &str, allowed: Option<&Value>) -> Result<(Vec<u64>, Vec<u64>, bool), Reply> {
        let (users, roles) = Inner::parse_mentions(content);
        let everyone = content.contains("@everyone") || content.contains("@here");
        let Some(a) = allowed.filter(|a| !a.is_null()) else { return Ok((users, roles, everyone)) };
        let parse: Vec<String> = a
            .get("parse")
            .and_then(Value::as_array)
            .map(|p| p.iter().filter_map(Value::as_str).map(String::from).collect())
            .unwrap_or_default();
        let list = |k: &str| -> Vec<u64> {
            a.get(k).and_then(Value::as_array).map(|l| l.iter().filter_map(as_snowflake).collect()).unwrap_or_default()
        };
        let (user_list, role_list) = (list("users"), list("roles"));
        for (kind, ids) in [("users", &user_list), ("roles", &role_list)] {
            if parse.iter().any(|p| p == kind) && !ids.is_empty() {
                let shown: Vec<String> = ids.iter().map(u64::to_string).collect();
                return Err(invalid_field(
                    "allowed_mentions",
                    "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                    &format!("parse:[\"{kind}\"] and {kind}: [{}] are mutually exclusive.", shown.join(", ")),
                ));
            }
        }
        let pick = |found: Vec<u64>, kind: &str, ids: &[u64]| -> Vec<u64> {
            if parse.iter().any(|p| p == kind) {
                found
            } else {
                found.into_iter().filter(|u| ids.contains(u)).collect()
            }
        };
        Ok((
            pick(users, "users", &user_list),
            pick(roles, "roles", &role_list),
            everyone && parse.iter().any(|p| p == "everyone"),
        ))
    }

    fn create_message(&mut self, route: &Route, headers: &HeaderMap, body: &Bytes) -> Reply {
        let channel = match self.find_channel(route) {
            Ok(c) => c,
            Err(r) => return r,
        };
        if let Err(r) = self.check_permissions(channel) {
            return r;
        }
        let ParsedBody { json: body, files } = match parse_body(headers, body) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let body = if body.is_null() { json!({}) } else { body };
        if !body.is_object() {
            return invalid_form(request_error("DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType"));
        }
        let mut errors = Map::new();
        Inner::check_content_fields(&body, &mut errors);
        let nonce = body.get("nonce").filter(|n| !n.is_null()).cloned();
        match &nonce {
            Some(Value::String(s)) if s.chars().count() > 25 => {
                errors.insert("nonce".into(), field_error("BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."));
            }
            Some(Value::String(_) | Value::Number(_)) | None => {}
            Some(_) => {
                errors.insert("nonce".into(), field_error("BASE_TYPE_STRING", "Must be a string or an integer."));
            }
        }
        let content = body.get("content").and_then(Value::as_str).unwrap_or("").to_string();
        let embeds: Vec<Value> = body.get("embeds").and_then(Value::as_array).cloned().unwrap_or_default();
        let components: Vec<Value> = body.get("components").and_then(Value::as_array).cloned().unwrap_or_default();
        let has_stickers = body.get("sticker_ids").and_then(Value::as_array).is_some_and(|s| !s.is_empty());
        let has_poll = body.get("poll").is_some_and(|p| p.is_object());
        // The reply target.
        let mut reply_to = None;
        if let Some(r) = body.get("message_reference").filter(|r| !r.is_null()) {
            let fail = r.get("fail_if_not_exists").and_then(Value::as_bool).unwrap_or(true);
            let ref_channel = r.get("channel_id").and_then(as_snowflake).unwrap_or(channel);
            let target = r.get("message_id").and_then(as_snowflake);
            let found =
                target.filter(|t| self.messages.get(t).is_some_and(|m| m.channel_id == ref_channel && !m.deleted));
            match found {
                Some(t) => reply_to = Some((ref_channel, t)),
                None if fail => {
                    let mut e = Map::new();
                    e.insert("message_id".into(), field_error("MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"));
                    errors.insert("message_reference".into(), Value::Object(e));
                }
                None => {}
            }
        }
        let allowed_mentions = body.get("allowed_mentions").filter(|a| !a.is_null()).cloned();
        let mentioned = match Inner::allowed(&content, allowed_mentions.as_ref()) {
            Ok(m) => Some(m),
            Err(Reply { body: Some(Value::Object(b)), .. }) => {
                if let Some(Value::Object(e)) = b.get("errors") {
                    errors.extend(e.clone());
                }
                None
            }
            Err(_) => None,
        };
        if !errors.is_empty() {
            return invalid_form(errors);
        }
        if content.trim().is_empty()
            && embeds.is_empty()
            && components.is_empty()
            && files.is_empty()
            && !has_stickers
            && !has_poll
        {
            return Reply::error(400, 50006, "Cannot send an empty message");
        }
        let enforce_nonce = body.get("enforce_nonce").and_then(Value::as_bool).unwrap_or(false);
        let flags =
            body.get("flags").and_then(Value::as_u64).unwrap_or(0) & ((1 << 2) | (1 << 12) | (1 << 13) | (1 << 15));
        let tts = body.get("tts").and_then(Value::as_bool).unwrap_or(false);
        let files_logged: Vec<(String, usize)> = files.iter().map(|(n, _, b)| (n.clone(), b.len())).collect();
        let mut record = Sent {
            channel_id: channel,
            message_id: 0,
            content: content.clone(),
            nonce: nonce.clone(),
            enforce_nonce,
            deduped: false,
            reply_to: reply_to.map(|(_, m)| m),
            allowed_mentions: allowed_mentions.clone(),
            embeds: embeds.clone(),
            components: components.clone(),
            files: files_logged,
            flags,
            tts,
            body: body.clone(),
            message: Value::Null,
        };
        let nonce_key = nonce.as_ref().map(|n| n.as_str().map(String::from).unwrap_or_else(|| n.to_string()));
        if enforce_nonce && let Some(key) = &nonce_key {
            let now = Instant::now();
            let window = self.nonce_window;
            self.nonces.retain(|_, (_, at)| now.duration_since(*at) <= window);
            if let Some((earlier, _)) = self.nonces.get(key).copied()
                && let Some(m) = self.messages.get(&earlier).filter(|m| !m.deleted)
            {
                record.message_id = earlier;
                record.deduped = true;
                record.message = m.json.clone();
                let answer = m.json.clone();
                self.sent.push(record);
                return Reply::json(200, answer);
            }
        }
        let (mut users, roles, everyone) = mentioned.unwrap_or_default();
        let replied_user = match &allowed_mentions {
            None => true,
            Some(a) => a.get("replied_user").and_then(Value::as_bool).unwrap_or(false),
        };
        if let Some((_, target)) = reply_to
            && replied_user
            && let Some(a) = self.messages.get(&target).map(|m| m.author_id)
            && !users.contains(&a)
        {
            users.push(a);
        }
        let mut extra = Map::new();
        extra.insert("embeds".into(), embeds.into());
        extra.insert("components".into(), components.into());
        extra.insert("flags".into(), flags.into());
        extra.insert("tts".into(), tts.into());
        if let Some(n) = &nonce {
            extra.insert("nonce".into(), n.clone());
        }
        if !files.is_empty() {
            let described = body.get("attachments").and_then(Value::as_array).cloned().unwrap_or_default();
            let list: Vec<Value> = files
                .into_iter()
                .enumerate()
                .map(|(i, (name, ct, bytes))| {
                    let mut a = self.attachment_json(channel, &name, &ct, bytes);
                    if let Some(d) = described.get(i).and_then(|d| d.get("description")) {
                        a["description"] = d.clone();
                    }
                    a
                })
                .collect();
            extra.insert("attachments".into(), list.into());
        }
        let bot = self.bot_id;
        let id = self.store_message(channel, bot, &content, &users, &roles, everyone, reply_to, extra);
        if let Some(key) = nonce_key {
            self.nonces.insert(key, (id, Instant::now()));
        }
        let message = self.messages[&id].json.clone();
        record.message_id = id;
        record.message = message.clone();
        self.sent.push(record);
        self.message_event("MESSAGE_CREATE", id);
        Reply::json(200, message)
    }

    fn edit_message(&mut self, route: &Route, headers: &HeaderMap, body: &Bytes) -> Reply {
        let id = match self.find_message(route) {
            Ok(id) => id,
            Err(r) => return r,
        };
        let channel = self.messages[&id].channel_id;
        if let Err(r) = self.check_permissions(channel) {
            return r;
        }
        let body = match parse_body(headers, body) {
            Ok(p) if p.json.is_null() => json!({}),
            Ok(p) => p.json,
            Err(r) => return r,
        };
        if !body.is_object() {
            return invalid_form(request_error("DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType"));
        }
        if self.messages[&id].author_id != self.bot_id {
            return Reply::error(403, 50005, "Cannot edit a message authored by another user");
        }
        let mut errors = Map::new();
        Inner::check_content_fields(&body, &mut errors);
        let new_content = body.get("content").map(|c| c.as_str().unwrap_or("").to_string());
        let allowed_mentions = body.get("allowed_mentions").filter(|a| !a.is_null());
        let mut mentioned = None;
        if let Some(c) = &new_content {
            match Inner::allowed(c, allowed_mentions) {
                Ok(m) => mentioned = Some(m),
                Err(Reply { body: Some(Value::Object(b)), .. }) => {
                    if let Some(Value::Object(e)) = b.get("errors") {
                        errors.extend(e.clone());
                    }
                }
                Err(_) => {}
            }
        }
        if !errors.is_empty() {
            return invalid_form(errors);
        }
        let mut json = self.messages[&id].json.clone();
        if let Some(c) = &new_content {
            json["content"] = c.clone().into();
        }
        for key in ["embeds", "components"] {
            if let Some(v) = body.get(key) {
                json[key] = if v.is_null() { json!([]) } else { v.clone() };
            }
        }
        if let Some(f) = body.get("flags").and_then(Value::as_u64) {
            json["flags"] = (f & ((1 << 2) | (1 << 15))).into();
        }
        let empty = |k: &str| json[k].as_array().is_none_or(Vec::is_empty);
        if json["content"].as_str().unwrap_or("").trim().is_empty()
            && empty("embeds")
            && empty("components")
            && empty("attachments")
        {
            return Reply::error(400, 50006, "Cannot send an empty message");
        }
        if let Some((users, roles, everyone)) = mentioned {
            let guild = self.channels.get(&channel).and_then(|c| c.guild_id);
            json["mentions"] = self.mentions_json(&users, guild, false);
            json["mention_roles"] = roles.iter().map(|r| sf(*r)).collect::<Vec<_>>().into();
            json["mention_everyone"] = everyone.into();
        }
        json["edited_timestamp"] = iso8601(now_ms()).into();
        self.messages.get_mut(&id).expect("message found above").json = json.clone();
        self.edits.push(Edit {
            channel_id: channel,
            message_id: id,
            content: new_content,
            body,
            message: json.clone(),
        });
        self.message_event("MESSAGE_UPDATE", id);
        Reply::json(200, json)
    }

    fn delete_message(&mut self, route: &Route) -> Reply {
        let id = match self.find_message(route) {
            Ok(id) => id,
            Err(r) => return r,
        };
        let channel = self.messages[&id].channel_id;
        let info = &self.channels[&channel];
        if info.kind == ChannelKind::Dm && self.messages[&id].author_id != self.bot_id {
            return Reply::error(403, 50003, "Cannot execute action on a DM channel");
        }
        let guild_id = info.guild_id;
        self.messages.get_mut(&id).expect("message found above").deleted = true;
        let mut d = json!({"id": sf(id), "channel_id": sf(channel)});
        if let Some(g) = guild_id {
            d["guild_id"] = sf(g);
        }
        let needed = if guild_id.is_some() { INTENT_GUILD_MESSAGES } else { INTENT_DIRECT_MESSAGES };
        self.dispatch("MESSAGE_DELETE", move |intents| (intents & needed != 0).then(|| d.clone()));
        Reply::no_content()
    }

    fn reaction(&mut self, route: &Route) -> Reply {
        let id = match self.find_message(route) {
            Ok(id) => id,
            Err(r) => return r,
        };
        let channel = self.messages[&id].channel_id;
        if let Err(r) = self.check_permissions(channel) {
            return r;
        }
        let emoji = route.emoji.clone().unwrap_or_default();
        let valid = match emoji.split_once(':') {
            Some((name, eid)) => !name.is_empty() && !eid.is_empty() && eid.chars().all(|c| c.is_ascii_digit()),
            None => !emoji.is_empty() && !emoji.is_ascii(),
        };
        if !valid {
            return Reply::error(400, 10014, "Unknown Emoji");
        }
        let removed = route.name == "delete_own_reaction";
        let bot = self.bot_id;
        let name = emoji.split_once(':').map(|(n, _)| n.to_string()).unwrap_or_else(|| emoji.clone());
        let eid = emoji.split_once(':').map(|(_, i)| i.to_string());
        let stored = self.messages.get_mut(&id).expect("message found above");
        let list = stored.json.as_object_mut().expect("messages are objects").entry("reactions").or_insert(json!([]));
        let reactions = list.as_array_mut().expect("reactions is an array");
        let pos = reactions.iter().position(|r| r["emoji"]["name"] == name.as_str());
        let changed = match (pos, removed) {
            (Some(p), false) if reactions[p]["me"] == true => false,
            (Some(p), false) => {
                let count = reactions[p]["count"].as_u64().unwrap_or(0) + 1;
                reactions[p]["count"] = count.into();
                reactions[p]["count_details"]["normal"] = count.into();
                reactions[p]["me"] = true.into();
                true
            }
            (None, false) => {
                reactions.push(json!({"count": 1, "count_details": {"burst": 0, "normal": 1}, "me": true,
                    "me_burst": false, "emoji": {"id": eid, "name": name}, "burst_colors": []}));
                true
            }
            (Some(p), true) if reactions[p]["me"] == true => {
                let count = reactions[p]["count"].as_u64().unwrap_or(1).saturating_sub(1);
                if count == 0 {
                    reactions.remove(p);
                } else {
                    reactions[p]["count"] = count.into();
                    reactions[p]["count_details"]["normal"] = count.into();
                    reactions[p]["me"] = false.into();
                }
                true
            }
            (_, true) => false,
        };
        if reactions.is_empty()
            && let Some(o) = stored.json.as_object_mut()
        {
            o.remove("reactions");
        }
        self.reactions.push(Reaction { channel_id: channel, message_id: id, emoji: emoji.clone(), removed });
        if changed {
            let event = if removed { "MESSAGE_REACTION_REMOVE" } else { "MESSAGE_REACTION_ADD" };
            self.reaction_event(event, channel, id, bot, &emoji);
        }
        Reply::no_content()
    }

    fn trigger_typing(&mut self, route: &Route) -> Reply {
        let channel = match self.find_channel(route) {
            Ok(c) => c,
            Err(r) => return r,
        };
        if let Err(r) = self.check_permissions(channel) {
            return r;
        }
        self.typing.push(Typing { channel_id: channel });
        let guild_id = self.channels[&channel].guild_id;
        let mut d = json!({"channel_id": sf(channel), "user_id": sf(self.bot_id), "timestamp": now_ms() / 1000});
        if let Some(g) = guild_id {
            d["guild_id"] = sf(g);
            let mut member = self.member_json(g, self.bot_id);
            member["user"] = self.bot_user();
            d["member"] = member;
        }
        let needed = if guild_id.is_some() { INTENT_GUILD_MESSAGE_TYPING } else { INTENT_DIRECT_MESSAGE_TYPING };
        self.dispatch("TYPING_START", move |intents| (intents & needed != 0).then(|| d.clone()));
        Reply::no_content()
    }
}

fn bucket_headers(template: &str, limit: u32, remaining: u32, reset_after: f64) -> Vec<(String, String)> {
    vec![
        ("x-ratelimit-limit".into(), limit.to_string()),
        ("x-ratelimit-remaining".into(), remaining.to_string()),
        ("x-ratelimit-reset".into(), secs3(now_secs_f64() + reset_after)),
        ("x-ratelimit-reset-after".into(), secs3(reset_after)),
        ("x-ratelimit-bucket".into(), bucket_hash(template)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    /// `base64("1180000000000000042")` + two more parts, shaped like a real bot token.
    const TOKEN: &str = "MTE4MDAwMDAwMDAwMDAwMDA0Mg.GtWin0.twin-secret-part-of-the-token";
    const BOT: u64 = 1_180_000_000_000_000_042;
    const GUILD: u64 = 1_200_000_000_000_000_001;
    const GENERAL: u64 = 1_200_000_000_000_000_010;
    const ADA: u64 = 1_200_000_000_000_000_100;
    const ROLE: u64 = 1_200_000_000_000_000_500;
    const SECS: Duration = Duration::from_secs(5);
    const ALL_MESSAGES: u64 = INTENT_GUILDS | INTENT_GUILD_MESSAGES | INTENT_DIRECT_MESSAGES | INTENT_MESSAGE_CONTENT;

    type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

    fn client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().expect("client")
    }

    async fn twin() -> DiscordServer {
        let d = DiscordServer::start(TOKEN).await;
        d.add_guild(GUILD, "Clawline HQ");
        d.add_channel(GUILD, GENERAL, "general");
        d.add_user(ADA, "ada");
        d
    }

    async fn call(d: &DiscordServer, method: Method, path: &str, body: Option<Value>) -> (u16, HeaderMap, Value) {
        let mut req =
            client().request(method, format!("{}{path}", d.api_url())).header("authorization", format!("Bot {TOKEN}"));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn post(d: &DiscordServer, channel: u64, body: Value) -> (u16, HeaderMap, Value) {
        call(d, Method::POST, &format!("/channels/{channel}/messages"), Some(body)).await
    }

    async fn connect(url: &str) -> Ws {
        tokio_tungstenite::connect_async(format!("{url}/?v=10&encoding=json")).await.expect("connect").0
    }

    /// The next data or close frame.
    async fn next_frame(ws: &mut Ws) -> Option<Result<WsMessage, tokio_tungstenite::tungstenite::Error>> {
        loop {
            let f = tokio::time::timeout(SECS, ws.next()).await.expect("a frame in time");
            if !matches!(f, Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_)))) {
                return f;
            }
        }
    }

    async fn next_json(ws: &mut Ws) -> Value {
        match next_frame(ws).await {
            Some(Ok(WsMessage::Text(t))) => {
                serde_json::from_str(t.as_str()).unwrap_or_else(|_| panic!("not JSON: {t}"))
            }
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Reads until a close frame and returns its code.
    async fn close_code(ws: &mut Ws) -> u16 {
        loop {
            match next_frame(ws).await {
                Some(Ok(WsMessage::Close(Some(f)))) => return u16::from(f.code),
                Some(Ok(WsMessage::Text(_))) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    async fn send(ws: &mut Ws, v: Value) {
        ws.send(WsMessage::text(v.to_string())).await.expect("send");
    }

    fn identify(token: &str, intents: u64) -> Value {
        json!({"op": 2, "d": {"token": token, "intents": intents,
            "properties": {"os": "linux", "browser": "clawline", "device": "clawline"}}})
    }

    /// Connects, reads Hello, identifies and reads READY (and the GUILD_CREATEs): `(ws, ready)`.
    async fn ready(d: &DiscordServer, intents: u64) -> (Ws, Value) {
        let mut ws = connect(&d.gateway_url()).await;
        assert_eq!(next_json(&mut ws).await["op"], 10);
        send(&mut ws, identify(TOKEN, intents)).await;
        let ready = next_json(&mut ws).await;
        assert_eq!(ready["t"], "READY", "{ready}");
        if intents & INTENT_GUILDS != 0 {
            let guilds = d.twin.lock().guilds.len();
            for _ in 0..guilds {
                assert_eq!(next_json(&mut ws).await["t"], "GUILD_CREATE");
            }
        }
        (ws, ready)
    }

    #[tokio::test]
    async fn discord_hello_identify_ready_and_sequenced_dispatches() {
        let d = twin().await;
        d.set_heartbeat_interval(Duration::from_millis(45_000));
        let (_, _, gw) = call(&d, Method::GET, "/gateway/bot", None).await;
        assert_eq!(gw["url"], d.gateway_url());
        assert_eq!(gw["shards"], 1);
        assert_eq!(gw["session_start_limit"]["max_concurrency"], 1);
        let url = gw["url"].as_str().expect("url").to_string();
        let mut ws = connect(&url).await;
        let hello = next_json(&mut ws).await;
        assert_eq!((hello["op"].as_u64(), hello["d"]["heartbeat_interval"].as_u64()), (Some(10), Some(45_000)));
        assert!(hello["s"].is_null() && hello["t"].is_null());
        send(&mut ws, identify(TOKEN, ALL_MESSAGES)).await;
        let ready = next_json(&mut ws).await;
        assert_eq!((ready["op"].as_u64(), ready["t"].as_str(), ready["s"].as_u64()), (Some(0), Some("READY"), Some(1)));
        assert_eq!(ready["d"]["v"], 10);
        assert_eq!(ready["d"]["user"]["id"], BOT.to_string());
        assert_eq!(ready["d"]["resume_gateway_url"], d.resume_gateway_url());
        assert_eq!(ready["d"]["guilds"], json!([{"id": GUILD.to_string(), "unavailable": true}]));
        assert!(ready["d"]["session_id"].as_str().is_some_and(|s| !s.is_empty()));
        let guild = next_json(&mut ws).await;
        assert_eq!((guild["t"].as_str(), guild["s"].as_u64()), (Some("GUILD_CREATE"), Some(2)));
        assert_eq!(guild["d"]["channels"][0]["id"], GENERAL.to_string());

        let id = d.push_guild_message(GENERAL, ADA, "hello bot", true, &[ROLE]);
        let m = next_json(&mut ws).await;
        assert_eq!((m["t"].as_str(), m["s"].as_u64()), (Some("MESSAGE_CREATE"), Some(3)));
        assert_eq!(m["d"]["id"], id.to_string());
        assert_eq!(m["d"]["guild_id"], GUILD.to_string());
        assert_eq!(m["d"]["content"], format!("<@{BOT}> hello bot"));
        assert_eq!(m["d"]["author"]["id"], ADA.to_string());
        assert_eq!(m["d"]["member"]["roles"], json!([ROLE.to_string()]));
        assert_eq!(m["d"]["mentions"][0]["id"], BOT.to_string());
        assert!(m["d"]["mentions"][0]["member"].is_object());

        let (dm, _) = d.push_dm(ADA, "psst");
        let m = next_json(&mut ws).await;
        assert_eq!((m["s"].as_u64(), m["d"]["channel_id"].as_str()), (Some(4), Some(dm.to_string().as_str())));
        assert!(m["d"].get("guild_id").is_none() && m["d"].get("member").is_none());
        assert_eq!(d.identifies().len(), 1);
        assert_eq!(d.identifies()[0].intents, Some(ALL_MESSAGES));
        assert_eq!(d.last_seq(), 4);
    }

    #[tokio::test]
    async fn discord_heartbeats_are_acked_and_requested() {
        let d = twin().await;
        let (mut ws, _) = ready(&d, ALL_MESSAGES).await;
        send(&mut ws, json!({"op": 1, "d": 2})).await;
        assert_eq!(next_json(&mut ws).await["op"], 11);
        d.request_heartbeat();
        assert_eq!(next_json(&mut ws).await, json!({"op": 1, "d": null, "s": null, "t": null}));
        send(&mut ws, json!({"op": 1, "d": 2})).await;
        assert_eq!(next_json(&mut ws).await["op"], 11);
        d.stop_acking_heartbeats(true);
        send(&mut ws, json!({"op": 1, "d": 2})).await;
        assert!(tokio::time::timeout(Duration::from_millis(200), ws.next()).await.is_err(), "no ACK expected");
        let beats = d.heartbeats();
        assert_eq!(
            beats.iter().map(|b| (b.seq, b.acked, b.requested)).collect::<Vec<_>>(),
            vec![(Some(2), true, false), (Some(2), true, true), (Some(2), false, false)]
        );
    }

    #[tokio::test]
    async fn discord_missed_heartbeats_close_the_connection() {
        let d = twin().await;
        d.set_heartbeat_interval(Duration::from_millis(100));
        d.set_heartbeat_grace(Duration::from_millis(50));
        let mut ws = connect(&d.gateway_url()).await;
        assert_eq!(next_json(&mut ws).await["d"]["heartbeat_interval"], 100);
        assert_eq!(close_code(&mut ws).await, 4009);
    }

    #[tokio::test]
    async fn discord_resume_replays_missed_dispatches() {
        let d = twin().await;
        let (mut ws, ready_frame) = ready(&d, ALL_MESSAGES).await;
        let session = ready_frame["d"]["session_id"].as_str().expect("session").to_string();
        d.push_guild_message(GENERAL, ADA, "one", false, &[]);
        assert_eq!(next_json(&mut ws).await["s"], 3);
        d.drop_connection();
        assert!(matches!(tokio::time::timeout(SECS, ws.next()).await.expect("closed"), None | Some(Err(_))));
        d.wait_connections(1, SECS).await;
        let two = d.push_guild_message(GENERAL, ADA, "two", false, &[]);
        let three = d.push_guild_message(GENERAL, ADA, "three", false, &[]);

        let mut ws = connect(&d.resume_gateway_url()).await;
        assert_eq!(next_json(&mut ws).await["op"], 10);
        send(&mut ws, json!({"op": 6, "d": {"token": TOKEN, "session_id": session, "seq": 3}})).await;
        let a = next_json(&mut ws).await;
        let b = next_json(&mut ws).await;
        let resumed = next_json(&mut ws).await;
        assert_eq!((a["s"].as_u64(), a["d"]["id"].as_str()), (Some(4), Some(two.to_string().as_str())));
        assert_eq!((b["s"].as_u64(), b["d"]["id"].as_str()), (Some(5), Some(three.to_string().as_str())));
        assert_eq!((resumed["t"].as_str(), resumed["s"].as_u64()), (Some("RESUMED"), Some(6)));
        assert_eq!(d.resumes()[0].outcome, ResumeOutcome::Resumed { replayed: 2 });
        assert!(d.connections()[1].via_resume_url);
        d.push_guild_message(GENERAL, ADA, "four", false, &[]);
        assert_eq!(next_json(&mut ws).await["s"], 7);

        // A seq the session never reached is 4007; an unknown session op 9 false.
        let mut bad = connect(&d.resume_gateway_url()).await;
        next_json(&mut bad).await;
        send(&mut bad, json!({"op": 6, "d": {"token": TOKEN, "session_id": "nope", "seq": 1}})).await;
        assert_eq!(next_json(&mut bad).await, json!({"op": 9, "d": false, "s": null, "t": null}));
        send(&mut bad, json!({"op": 6, "d": {"token": TOKEN, "session_id": session, "seq": 99}})).await;
        assert_eq!(close_code(&mut bad).await, 4007);
    }

    #[tokio::test]
    async fn discord_identify_refusals_use_the_documented_close_codes() {
        let d = twin().await;
        let mut ws = connect(&d.gateway_url()).await;
        next_json(&mut ws).await;
        send(&mut ws, identify("wrong-token", ALL_MESSAGES)).await;
        assert_eq!(close_code(&mut ws).await, 4004);

        d.require_message_content_intent(true);
        let mut ws = connect(&d.gateway_url()).await;
        next_json(&mut ws).await;
        send(&mut ws, identify(TOKEN, INTENT_GUILD_MESSAGES)).await;
        assert_eq!(close_code(&mut ws).await, 4014);

        d.require_message_content_intent(false);
        d.set_enabled_privileged_intents(0);
        let mut ws = connect(&d.gateway_url()).await;
        next_json(&mut ws).await;
        send(&mut ws, identify(TOKEN, INTENT_MESSAGE_CONTENT)).await;
        assert_eq!(close_code(&mut ws).await, 4014);

        let mut ws = connect(&d.gateway_url()).await;
        next_json(&mut ws).await;
        send(&mut ws, identify(TOKEN, 1 << 30)).await;
        assert_eq!(close_code(&mut ws).await, 4013);

        let mut ws = connect(&d.gateway_url()).await;
        next_json(&mut ws).await;
        send(&mut ws, json!({"op": 3, "d": {}})).await;
        assert_eq!(close_code(&mut ws).await, 4003);
        let refused: Vec<Option<u16>> = d.identifies().iter().map(|i| i.refused_with).collect();
        assert_eq!(refused, vec![Some(4004), Some(4014), Some(4014), Some(4013)]);
    }

    #[tokio::test]
    async fn discord_rate_limits_answer_429_with_bucket_headers() {
        let d = twin().await;
        d.add_channel(GUILD, GENERAL + 1, "random");
        d.set_bucket_limit(2, Duration::from_secs(30));
        let (status, h, _) = post(&d, GENERAL, json!({"content": "1"})).await;
        assert_eq!(status, 200);
        assert_eq!(h["x-ratelimit-limit"], "2");
        assert_eq!(h["x-ratelimit-remaining"], "1");
        let bucket = h["x-ratelimit-bucket"].to_str().expect("bucket").to_string();
        let reset_after: f64 = h["x-ratelimit-reset-after"].to_str().expect("reset-after").parse().expect("float");
        assert!(reset_after > 29.0 && reset_after <= 30.0, "{reset_after}");
        assert!(h["x-ratelimit-reset"].to_str().expect("reset").contains('.'));
        assert_eq!(post(&d, GENERAL, json!({"content": "2"})).await.1["x-ratelimit-remaining"], "0");
        let (status, h, body) = post(&d, GENERAL, json!({"content": "3"})).await;
        assert_eq!(status, 429);
        assert_eq!(body["message"], "You are being rate limited.");
        assert_eq!(body["global"], false);
        assert!(body["retry_after"].as_f64().is_some_and(|r| r > 29.0 && r <= 30.0), "{body}");
        assert_eq!(h["retry-after"], "30");
        assert_eq!(h["x-ratelimit-scope"], "user");
        assert_eq!(h["x-ratelimit-bucket"].to_str().expect("bucket"), bucket);
        assert_eq!(h["x-ratelimit-remaining"], "0");
        // Another channel is another bucket.
        assert_eq!(post(&d, GENERAL + 1, json!({"content": "elsewhere"})).await.0, 200);
        assert_eq!(d.sent().len(), 3);

        d.fail_next("trigger_typing", Fault::GlobalRateLimited(1.5));
        let (status, h, body) = call(&d, Method::POST, &format!("/channels/{GENERAL}/typing"), None).await;
        assert_eq!((status, body["global"].as_bool(), body["retry_after"].as_f64()), (429, Some(true), Some(1.5)));
        assert_eq!(
            (h["x-ratelimit-global"].to_str().ok(), h["x-ratelimit-scope"].to_str().ok()),
            (Some("true"), Some("global"))
        );
        assert_eq!(h["retry-after"], "2");
        assert!(h.get("x-ratelimit-bucket").is_none());
    }

    #[tokio::test]
    async fn discord_enforce_nonce_returns_the_earlier_message() {
        let d = twin().await;
        let body = json!({"content": "once", "nonce": "clawline-1", "enforce_nonce": true});
        let (_, _, first) = post(&d, GENERAL, body.clone()).await;
        let (status, _, again) = post(&d, GENERAL, body).await;
        assert_eq!(status, 200);
        assert_eq!(first["id"], again["id"]);
        assert_eq!(first["nonce"], "clawline-1");
        let sent = d.sent();
        assert_eq!(sent.iter().map(|s| s.deduped).collect::<Vec<_>>(), vec![false, true]);
        assert_eq!(d.twin.lock().messages.values().filter(|m| m.author_id == BOT).count(), 1);
        // Without enforce_nonce the same nonce makes a new message.
        let (_, _, third) = post(&d, GENERAL, json!({"content": "once", "nonce": "clawline-1"})).await;
        assert_ne!(third["id"], first["id"]);
        let long = json!({"content": "x", "nonce": "n".repeat(26)});
        let (status, _, e) = post(&d, GENERAL, long).await;
        assert_eq!((status, e["code"].as_u64()), (400, Some(50035)));
        assert_eq!(e["errors"]["nonce"]["_errors"][0]["code"], "BASE_TYPE_MAX_LENGTH");
    }

    #[tokio::test]
    async fn discord_rest_refuses_a_bad_token() {
        let d = twin().await;
        for auth in [None, Some("Bot nope".to_string()), Some(format!("Bearer {TOKEN}")), Some(TOKEN.to_string())] {
            let mut req = client().get(format!("{}/users/@me", d.api_url()));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let r = req.send().await.expect("request");
            assert_eq!(r.status().as_u16(), 401);
            assert_eq!(r.json::<Value>().await.expect("json"), json!({"message": "401: Unauthorized", "code": 0}));
        }
        let (status, _, me) = call(&d, Method::GET, "/users/@me", None).await;
        assert_eq!((status, me["id"].as_str(), me["bot"].as_bool()), (200, Some(BOT.to_string().as_str()), Some(true)));
        assert!(d.requests().iter().take(4).all(|r| !r.authorized && r.status == 401));
        let r = client().get(format!("{}/api/v9/users/@me", d.base_url())).send().await.expect("request");
        assert_eq!(r.status().as_u16(), 404);
        // GET /gateway needs no token.
        let r = client().get(format!("{}/gateway", d.api_url())).send().await.expect("request");
        assert_eq!(r.json::<Value>().await.expect("json")["url"], d.gateway_url());
    }

    #[tokio::test]
    async fn discord_create_message_validates_like_the_api() {
        let d = twin().await;
        d.set_bucket_limit(1000, Duration::from_secs(1));
        let (status, _, e) = post(&d, GENERAL, json!({"content": "   "})).await;
        assert_eq!((status, e), (400, json!({"message": "Cannot send an empty message", "code": 50006})));
        let (status, _, e) = post(&d, GENERAL, json!({"content": "x".repeat(2001)})).await;
        assert_eq!((status, e["code"].as_u64(), e["message"].as_str()), (400, Some(50035), Some("Invalid Form Body")));
        assert_eq!(
            e["errors"]["content"]["_errors"][0],
            json!({"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."})
        );
        assert_eq!(post(&d, GENERAL, json!({"content": "é".repeat(2000)})).await.0, 200);
        let (status, _, e) = post(&d, 42, json!({"content": "x"})).await;
        assert_eq!((status, e), (404, json!({"message": "Unknown Channel", "code": 10003})));
        let (status, _, e) = call(&d, Method::POST, "/channels/general/messages", Some(json!({"content": "x"}))).await;
        assert_eq!(
            (status, e["errors"]["channel_id"]["_errors"][0]["code"].as_str()),
            (400, Some("NUMBER_TYPE_COERCE"))
        );
        let r = client()
            .post(format!("{}/channels/{GENERAL}/messages", d.api_url()))
            .header("authorization", format!("Bot {TOKEN}"))
            .header("content-type", "text/plain")
            .body("hello")
            .send()
            .await
            .expect("request");
        let e: Value = r.json().await.expect("json");
        assert_eq!(e["errors"]["_errors"][0]["code"], "CONTENT_TYPE_INVALID");

        // A reply to a missing message fails unless fail_if_not_exists is false.
        let missing = json!({"content": "re", "message_reference": {"message_id": "1"}});
        let (status, _, e) = post(&d, GENERAL, missing).await;
        assert_eq!(status, 400);
        assert_eq!(
            e["errors"]["message_reference"]["message_id"]["_errors"][0]["code"],
            "MESSAGE_REFERENCE_UNKNOWN_MESSAGE"
        );
        let lenient = json!({"content": "re", "message_reference": {"message_id": "1", "fail_if_not_exists": false}});
        assert_eq!(post(&d, GENERAL, lenient).await.2["type"], 0);
        let theirs = d.push_guild_message(GENERAL, ADA, "question <@&500>", false, &[]);
        let reply = json!({"content": "answer", "message_reference": {"message_id": theirs.to_string()},
            "allowed_mentions": {"parse": [], "replied_user": true}});
        let (status, _, m) = post(&d, GENERAL, reply).await;
        assert_eq!((status, m["type"].as_u64()), (200, Some(19)));
        assert_eq!(m["referenced_message"]["id"], theirs.to_string());
        assert_eq!(m["message_reference"]["guild_id"], GUILD.to_string());
        assert_eq!(m["mentions"][0]["id"], ADA.to_string());
        assert_eq!(d.sent().last().expect("sent").reply_to, Some(theirs));
        let exclusive = json!({"content": "<@1>", "allowed_mentions": {"parse": ["users"], "users": ["1"]}});
        let (_, _, e) = post(&d, GENERAL, exclusive).await;
        assert_eq!(e["errors"]["allowed_mentions"]["_errors"][0]["code"], "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE");
    }

    #[tokio::test]
    async fn discord_edits_reactions_typing_and_dms() {
        let d = twin().await;
        let (_, _, m) = post(&d, GENERAL, json!({"content": "thinking"})).await;
        let id = m["id"].as_str().expect("id").to_string();
        let (status, _, edited) =
            call(&d, Method::PATCH, &format!("/channels/{GENERAL}/messages/{id}"), Some(json!({"content": "done"})))
                .await;
        assert_eq!((status, edited["content"].as_str()), (200, Some("done")));
        assert!(edited["edited_timestamp"].is_string());
        assert_eq!(d.edits()[0].content.as_deref(), Some("done"));
        let theirs = d.push_guild_message(GENERAL, ADA, "hi", false, &[]);
        let (status, _, e) =
            call(&d, Method::PATCH, &format!("/channels/{GENERAL}/messages/{theirs}"), Some(json!({"content": "x"})))
                .await;
        assert_eq!((status, e["code"].as_u64()), (403, Some(50005)));
        let (status, _, e) = call(&d, Method::PATCH, &format!("/channels/{GENERAL}/messages/1"), Some(json!({}))).await;
        assert_eq!((status, e["code"].as_u64()), (404, Some(10008)));

        let path = format!("/channels/{GENERAL}/messages/{theirs}/reactions/%F0%9F%91%80/@me");
        let (status, _, _) = call(&d, Method::PUT, &path, None).await;
        assert_eq!(status, 204);
        tokio::time::sleep(Duration::from_millis(260)).await;
        let word = format!("/channels/{GENERAL}/messages/{theirs}/reactions/eyes/@me");
        assert_eq!(call(&d, Method::PUT, &word, None).await.2["code"], 10014);
        assert_eq!(
            d.reactions(),
            vec![Reaction { channel_id: GENERAL, message_id: theirs, emoji: "👀".into(), removed: false }]
        );
        assert_eq!(d.message(GENERAL, theirs).expect("stored")["reactions"][0]["me"], true);

        assert_eq!(call(&d, Method::POST, &format!("/channels/{GENERAL}/typing"), None).await.0, 204);
        assert_eq!(d.typing(), vec![Typing { channel_id: GENERAL }]);

        let (status, _, dm) =
            call(&d, Method::POST, "/users/@me/channels", Some(json!({"recipient_id": ADA.to_string()}))).await;
        assert_eq!((status, dm["type"].as_u64()), (200, Some(1)));
        assert_eq!(dm["recipients"][0]["id"], ADA.to_string());
        let (_, _, again) = call(&d, Method::POST, "/users/@me/channels", Some(json!({"recipient_id": ADA}))).await;
        assert_eq!(again["id"], dm["id"]);
        assert_eq!(d.add_dm_channel(ADA).to_string(), dm["id"].as_str().expect("id"));
        let (status, _, e) = call(&d, Method::POST, "/users/@me/channels", Some(json!({"recipient_id": "77"}))).await;
        assert_eq!((status, e["code"].as_u64()), (400, Some(50033)));
    }

    #[tokio::test]
    async fn discord_intents_filter_dispatches_and_content() {
        let d = twin().await;
        let (mut ws, _) = ready(&d, INTENT_GUILD_MESSAGES).await;
        d.push_dm(ADA, "not for you");
        d.push_guild_message(GENERAL, ADA, "secret", false, &[]);
        let m = next_json(&mut ws).await;
        assert_eq!((m["s"].as_u64(), m["d"]["content"].as_str()), (Some(2), Some("")));
        d.push_guild_message(GENERAL, ADA, "for the bot", true, &[]);
        assert_eq!(next_json(&mut ws).await["d"]["content"], format!("<@{BOT}> for the bot"));
    }

    #[tokio::test]
    async fn discord_gateway_faults_misbehave_as_described() {
        let d = twin().await;
        let (mut ws, _) = ready(&d, ALL_MESSAGES).await;
        d.duplicate_next_dispatch();
        d.push_guild_message(GENERAL, ADA, "twice", false, &[]);
        let (a, b) = (next_json(&mut ws).await, next_json(&mut ws).await);
        assert_eq!((a["s"].as_u64(), a), (Some(3), b));
        d.malformed_next_frame();
        d.push_guild_message(GENERAL, ADA, "garbled", false, &[]);
        match next_frame(&mut ws).await {
            Some(Ok(WsMessage::Text(t))) => assert!(serde_json::from_str::<Value>(t.as_str()).is_err()),
            other => panic!("expected text, got {other:?}"),
        }
        d.send_reconnect();
        assert_eq!(next_json(&mut ws).await["op"], 7);
        d.invalidate_session(false);
        assert_eq!(next_json(&mut ws).await, json!({"op": 9, "d": false, "s": null, "t": null}));
        // After op 9 the connection may identify again.
        send(&mut ws, identify(TOKEN, ALL_MESSAGES)).await;
        assert_eq!(next_json(&mut ws).await["t"], "READY");
        assert_eq!(next_json(&mut ws).await["t"], "GUILD_CREATE");
        d.close_with(4000);
        assert_eq!(close_code(&mut ws).await, 4000);

        d.fail_next("create_message", Fault::Status(502));
        let (status, _, e) = post(&d, GENERAL, json!({"content": "x"})).await;
        assert_eq!((status, e), (502, json!({"message": "502: Bad Gateway", "code": 0})));
        d.fail_next("*", Fault::Drop);
        let dropped = client()
            .get(format!("{}/users/@me", d.api_url()))
            .header("authorization", format!("Bot {TOKEN}"))
            .send()
            .await;
        assert!(dropped.is_err());
        assert_eq!(d.requests().last().map(|r| r.status), Some(0));
    }

    #[tokio::test]
    async fn discord_zombie_connections_get_nothing_until_resumed() {
        let d = twin().await;
        let (mut ws, ready_frame) = ready(&d, ALL_MESSAGES).await;
        let session = ready_frame["d"]["session_id"].as_str().expect("session").to_string();
        d.zombify_connections();
        let missed = d.push_guild_message(GENERAL, ADA, "into the void", false, &[]);
        send(&mut ws, json!({"op": 1, "d": 2})).await;
        assert!(tokio::time::timeout(Duration::from_millis(200), ws.next()).await.is_err(), "a zombie gets nothing");
        assert!(!d.heartbeats()[0].acked);

        // The client gives up on the zombie and resumes elsewhere; the zombie is cut.
        let mut fresh = connect(&d.resume_gateway_url()).await;
        next_json(&mut fresh).await;
        send(&mut fresh, json!({"op": 6, "d": {"token": TOKEN, "session_id": session, "seq": 2}})).await;
        assert_eq!(next_json(&mut fresh).await["d"]["id"], missed.to_string());
        assert_eq!(next_json(&mut fresh).await["t"], "RESUMED");
        send(&mut fresh, json!({"op": 1, "d": 4})).await;
        assert_eq!(next_json(&mut fresh).await["op"], 11);
        assert!(matches!(tokio::time::timeout(SECS, ws.next()).await.expect("cut"), None | Some(Err(_))));
        assert_eq!(d.wait_closed(0, SECS).await.closed_by, Some(ClosedBy::ServerDropped));
    }

    #[tokio::test]
    async fn discord_reconnect_cuts_connections_left_open() {
        let d = twin().await;
        d.set_reconnect_grace(Duration::from_millis(100));
        let (mut ws, _) = ready(&d, ALL_MESSAGES).await;
        d.send_reconnect();
        assert_eq!(next_json(&mut ws).await, json!({"op": 7, "d": null, "s": null, "t": null}));
        assert!(matches!(tokio::time::timeout(SECS, ws.next()).await.expect("cut"), None | Some(Err(_))));
        assert_eq!(d.wait_closed(0, SECS).await.closed_by, Some(ClosedBy::ServerDropped));
    }

    #[tokio::test]
    async fn discord_client_close_1000_ends_the_session() {
        let d = twin().await;
        let (mut ws, ready_frame) = ready(&d, ALL_MESSAGES).await;
        let session = ready_frame["d"]["session_id"].as_str().expect("session").to_string();
        ws.close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: 1000u16.into(),
            reason: "bye".into(),
        }))
        .await
        .expect("close");
        d.wait_closed(0, SECS).await;
        assert_eq!(d.connections()[0].close_code, Some(1000));
        let mut again = connect(&d.gateway_url()).await;
        next_json(&mut again).await;
        send(&mut again, json!({"op": 6, "d": {"token": TOKEN, "session_id": session, "seq": 2}})).await;
        assert_eq!(next_json(&mut again).await["d"], false);
        assert_eq!(d.resumes()[0].outcome, ResumeOutcome::InvalidSession);
        // Nobody is listening any more: pushes are not delivered.
        d.invalidate_session(false);
        d.push_dm(ADA, "anyone?");
        assert_eq!(d.undelivered(), vec!["MESSAGE_CREATE".to_string()]);
    }

    #[tokio::test]
    async fn discord_gateway_protocol_errors_close_with_their_codes() {
        let d = twin().await;
        let mut ws = tokio_tungstenite::connect_async(format!("{}/?v=9&encoding=json", d.gateway_url()))
            .await
            .expect("connect")
            .0;
        assert_eq!(close_code(&mut ws).await, 4012);
        let etf = tokio_tungstenite::connect_async(format!("{}/?v=10&encoding=etf", d.gateway_url())).await;
        assert!(etf.is_err(), "etf is refused before the upgrade");

        let mut ws = connect(&d.gateway_url()).await;
        next_json(&mut ws).await;
        ws.send(WsMessage::text("{not json")).await.expect("send");
        assert_eq!(close_code(&mut ws).await, 4002);

        let (mut ws, _) = ready(&d, ALL_MESSAGES).await;
        send(&mut ws, identify(TOKEN, ALL_MESSAGES)).await;
        assert_eq!(close_code(&mut ws).await, 4005);

        let (mut ws, _) = ready(&d, ALL_MESSAGES).await;
        send(&mut ws, json!({"op": 99, "d": null})).await;
        assert_eq!(close_code(&mut ws).await, 4001);

        let (mut ws, _) = ready(&d, ALL_MESSAGES).await;
        send(&mut ws, json!({"op": 3, "d": {"since": null, "activities": [], "status": "online", "afk": false}})).await;
        send(&mut ws, json!({"op": 1, "d": null})).await;
        assert_eq!(next_json(&mut ws).await["op"], 11, "presence updates are accepted silently");

        let mut ws = connect(&d.gateway_url()).await;
        next_json(&mut ws).await;
        let mut shard = identify(TOKEN, ALL_MESSAGES);
        shard["d"]["shard"] = json!([1, 1]);
        send(&mut ws, shard).await;
        assert_eq!(close_code(&mut ws).await, 4010);

        d.enforce_identify_concurrency(true);
        let mut ws = connect(&d.gateway_url()).await;
        next_json(&mut ws).await;
        send(&mut ws, identify(TOKEN, ALL_MESSAGES)).await;
        assert_eq!(next_json(&mut ws).await, json!({"op": 9, "d": false, "s": null, "t": null}));
        assert!(d.identifies().last().expect("identify").invalid_session);
    }

    #[tokio::test]
    async fn discord_threads_replies_and_stripped_content() {
        let d = twin().await;
        let thread = GENERAL + 7;
        d.add_thread(GUILD, GENERAL, thread);
        let (mut ws, _) = ready(&d, INTENT_GUILDS | INTENT_GUILD_MESSAGES).await;
        let first = d.push_thread_message(thread, ADA, "in the thread", false, &[ROLE]);
        let m = next_json(&mut ws).await;
        assert_eq!(
            (m["d"]["channel_id"].as_str(), m["d"]["position"].as_u64()),
            (Some(thread.to_string().as_str()), Some(0))
        );
        assert_eq!(m["d"]["guild_id"], GUILD.to_string());
        assert_eq!(m["d"]["content"], "", "no MESSAGE_CONTENT intent");
        let reply = d.push_message(Inbound {
            channel_id: thread,
            author_id: ADA,
            content: "follow-up".into(),
            mentions_bot: true,
            reply_to: Some(first),
            ..Inbound::default()
        });
        let m = next_json(&mut ws).await;
        assert_eq!(m["d"]["id"], reply.to_string());
        assert_eq!((m["d"]["type"].as_u64(), m["d"]["position"].as_u64()), (Some(19), Some(1)));
        assert_eq!(m["d"]["content"], format!("<@{BOT}> follow-up"), "mentioned: content kept");
        assert_eq!(m["d"]["referenced_message"]["id"], first.to_string());
        assert_eq!(m["d"]["referenced_message"]["content"], "", "the referenced message stays stripped");
        assert_eq!(m["d"]["message_reference"]["message_id"], first.to_string());
        let (_, _, channel) = call(&d, Method::GET, &format!("/channels/{thread}"), None).await;
        assert_eq!(
            (channel["type"].as_u64(), channel["parent_id"].as_str()),
            (Some(11), Some(GENERAL.to_string().as_str()))
        );

        d.push_reaction(thread, first, ADA, "🔥");
        assert!(tokio::time::timeout(Duration::from_millis(150), ws.next()).await.is_err(), "no reaction intent");
        d.add_channel(GUILD, GENERAL + 8, "late");
        let created = next_json(&mut ws).await;
        assert_eq!((created["t"].as_str(), created["d"]["name"].as_str()), (Some("CHANNEL_CREATE"), Some("late")));
    }

    #[tokio::test]
    async fn discord_uploads_become_attachments_served_by_the_twin() {
        let d = twin().await;
        let boundary = "TwInBoUnDaRy";
        let payload =
            json!({"content": "a file", "attachments": [{"id": 0, "filename": "cat.png", "description": "a cat"}]});
        let mut body = Vec::new();
        body.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"payload_json\"\r\nContent-Type: application/json\r\n\r\n{payload}\r\n")
                .bytes(),
        );
        body.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"files[0]\"; filename=\"cat.png\"\r\nContent-Type: image/png\r\n\r\n")
                .bytes(),
        );
        body.extend(b"\x89PNG-not-really");
        body.extend(format!("\r\n--{boundary}--\r\n").bytes());
        let r = client()
            .post(format!("{}/channels/{GENERAL}/messages", d.api_url()))
            .header("authorization", format!("Bot {TOKEN}"))
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .body(body)
            .send()
            .await
            .expect("upload");
        assert_eq!(r.status().as_u16(), 200);
        let m: Value = r.json().await.expect("json");
        let a = &m["attachments"][0];
        assert_eq!(
            (a["filename"].as_str(), a["size"].as_u64(), a["description"].as_str()),
            (Some("cat.png"), Some(15), Some("a cat"))
        );
        let got = client().get(a["url"].as_str().expect("url")).send().await.expect("download");
        assert_eq!(got.bytes().await.expect("bytes").as_ref(), b"\x89PNG-not-really");
        assert_eq!(d.sent()[0].files, vec![("cat.png".to_string(), 15)]);

        let id = d.push_message(Inbound {
            channel_id: GENERAL,
            author_id: ADA,
            content: String::new(),
            attachments: vec![("notes.txt".into(), b"hello".to_vec())],
            ..Inbound::default()
        });
        let stored = d.message(GENERAL, id).expect("stored");
        let url = stored["attachments"][0]["url"].as_str().expect("url");
        assert_eq!(client().get(url).send().await.expect("download").text().await.expect("text"), "hello");
        let (_, _, listed) = call(&d, Method::GET, &format!("/channels/{GENERAL}/messages?limit=1"), None).await;
        assert_eq!(listed.as_array().map(|l| l.len()), Some(1));
        assert_eq!(listed[0]["id"], id.to_string());
    }
}
