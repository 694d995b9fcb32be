//! A twin of Slack (<https://docs.slack.dev>) for tests of a Slack app: the Web API methods a bot
//! uses, Socket Mode (hello, event envelopes, acknowledgements, redelivery of unacknowledged
//! envelopes, disconnect messages) and Events API delivery over HTTP (signed requests, retries with
//! their headers, URL verification). It must not talk to the internet, must not accept what the
//! documentation refuses (a token of the wrong type, an unknown token, a message without text), and
//! must not be lenient where Slack is strict; where the documentation is silent this doc says so
//! and the twin follows what Slack is known to send.
//!
//! Start one with [`SlackServer::start`] and the bot token (`xoxb-…`), app-level token (`xapp-…`)
//! and signing secret it accepts, point the client's Web API base at `{base_url}/api/`, add
//! conversations ([`SlackServer::add_channel`], [`SlackServer::add_im`]), push what users do
//! ([`SlackServer::push_message`], [`SlackServer::push_mention`], …) and inspect what the app did
//! ([`SlackServer::posted`], [`SlackServer::acks`], [`SlackServer::requests`], …).
//!
//! # Web API
//!
//! - Methods are `{base}/api/<method>`, with the token in `Authorization: Bearer …` or, for form
//!   bodies and query strings, as a `token` parameter (a `token` inside a JSON body is not read,
//!   and `apps.connections.open` takes the header only, as documented). Parameters come from the
//!   query string and from an `application/json` or `application/x-www-form-urlencoded` body; in
//!   form bodies `blocks` is JSON text. A JSON body without `charset=utf-8` is answered with
//!   `"warning":"missing_charset"` and `response_metadata.warnings`.
//! - Every answer is HTTP 200 with `{"ok":true,…}` or `{"ok":false,"error":"…"}`, except rate
//!   limits (HTTP 429, `Retry-After: <seconds>`, `{"ok":false,"error":"ratelimited"}`) and scripted
//!   HTTP failures. Errors, checked in this order: `unknown_method` (with `req_method`),
//!   `not_authed` (no token), `invalid_auth` (a token the twin was not started with),
//!   `not_allowed_token_type` (the app-level token anywhere but `apps.connections.open`, the bot
//!   token there), `invalid_json`, scripted failures, rate limits, then the method's own errors.
//! - `auth.test` → `{ok, url, team, user, team_id, user_id, bot_id, is_enterprise_install}`.
//! - `chat.postMessage {channel, text, thread_ts, mrkdwn, blocks, attachments, reply_broadcast}`
//!   → `{ok, channel, ts, message}`. `channel` is an id, a channel name (`general` or `#general`)
//!   or a user id, which opens (or reuses) the DM and answers with the `D…` id; anything else is
//!   `channel_not_found`. No `text`, `blocks` or `attachments` is `no_text`; `blocks` that is not
//!   an array is `invalid_blocks_format`, more than 50 blocks `invalid_blocks`. Text over 40,000
//!   characters is truncated to 40,000 (as documented: Slack truncates, it does not refuse).
//!   `ts` values look like `1700000000.000100` and strictly increase. The returned `message`
//!   carries `type`, `subtype: "bot_message"`, `text`, `user` (the bot user), `bot_id`, `app_id`,
//!   `team`, `ts` and `thread_ts`/`blocks`/`metadata` when given. `metadata` (an object, or JSON
//!   text in a form body) that is not an object is `invalid_metadata_format`; one without a
//!   non-empty `event_type` or with an `event_payload` that is not an object is
//!   `invalid_metadata_schema`.
//! - `conversations.history {channel, oldest, latest, inclusive, limit, cursor,
//!   include_all_metadata}` → `{ok, messages, has_more, response_metadata: {next_cursor}}`: the
//!   conversation's messages outside threads and thread parents, newest first, strictly between
//!   `oldest` and `latest` (`inclusive` includes the bounds); `limit` defaults to 100 and is
//!   capped at 999; `metadata` is in a message only with `include_all_metadata`. Unknown
//!   conversation: `channel_not_found`; a bound that is not a timestamp: `invalid_ts_oldest`; a
//!   cursor the twin did not give: `invalid_cursor`. `next_cursor` is empty on the last page.
//! - `conversations.replies {channel, ts, …}` → the same shape for one thread, oldest first: its
//!   parent (when inside the bounds) and its replies; `limit` defaults to 1,000. No `ts`, or a
//!   `ts` that is no message of the conversation, is `thread_not_found`. (The documentation does
//!   not say whether a parent outside `oldest` is returned; the twin leaves it out.)
//! - `chat.update {channel, ts, text, blocks}` → `{ok, channel, ts, text, message}`: `channel`
//!   must be a conversation id (`channel_not_found`), `ts` a stored message (`message_not_found`)
//!   posted by the bot (`cant_update_message`); text over 4,000 characters is `msg_too_long` (the
//!   documented limit for this method); no text and no blocks is `no_text`.
//! - `reactions.add {channel, timestamp, name}` → `{ok}`: `no_item_specified` without channel
//!   and timestamp, `bad_timestamp`, `channel_not_found`, `message_not_found`, `invalid_name`
//!   (empty, colons or characters outside `a-z0-9_+-'`), `already_reacted`.
//! - `apps.connections.open` (POST only, else `insecure_request`) →
//!   `{ok, url: "ws://127.0.0.1:PORT/link/?ticket=…&app_id=…"}`. A ticket opens one connection;
//!   a used or unknown ticket is refused with HTTP 401 before the upgrade (what Slack answers is
//!   not documented).
//!
//! # Socket Mode
//!
//! A connection first gets `{"type":"hello","num_connections":N,"debug_info":{…},
//! "connection_info":{"app_id":…}}`. Pushed events then arrive as `{"envelope_id","payload",
//! "type":"events_api","accepts_response_payload":false,"retry_attempt","retry_reason"}` whose
//! payload is the Events API callback (`token`, `team_id`, `api_app_id`, `event`,
//! `type:"event_callback"`, `event_id`, `event_time`, `authorizations`, …). Each envelope goes to
//! one connection (the newest one not told to disconnect). Events pushed while nothing is
//! connected wait for a connection. The app acknowledges with `{"envelope_id":…}` (any other field,
//! such as `payload`, is ignored). An envelope not acknowledged within the ack timeout (3 s by
//! default, [`SlackServer::set_ack_timeout`]) is delivered again as a new envelope (new
//! `envelope_id`, same payload and `event_id`, `retry_attempt` + 1, `retry_reason: "timeout"`)
//! after the retry delays (immediately, 1 min and 5 min by default, as for the Events API over
//! HTTP, [`SlackServer::set_socket_retry_delays`]); after the last retry the event is given up
//! ([`SlackServer::dropped_events`]). An acknowledgement of any envelope of an event, even a late
//! one for an earlier attempt, ends its redelivery. Frames from the app that are not
//! acknowledgements are kept in [`SlackServer::client_frames`].
//!
//! # Events API over HTTP
//!
//! [`SlackServer::deliver_http`] (and every push while [`SlackServer::set_request_url`] is set,
//! which turns Socket Mode off as the app setting does: open connections get a `link_disabled`
//! disconnect) POSTs the callback as JSON with `X-Slack-Request-Timestamp` and `X-Slack-Signature:
//! v0=<hex HMAC-SHA256(signing secret, "v0:" + timestamp + ":" + body)>` ([`slack_signature`]). A
//! delivery fails on a non-2xx answer (`http_error`), no answer within 3 s (`http_timeout`,
//! [`SlackServer::set_http_timeout`]), a refused connection (`connection_failed`), more than two
//! redirects (`too_many_redirects`) or anything else (`unknown_error`); failed deliveries are
//! retried, newly signed, with `X-Slack-Retry-Num: n` and `X-Slack-Retry-Reason: <reason>` after
//! the retry delays (immediately, 1 min, 5 min; [`SlackServer::set_http_retry_delays`]), unless the
//! answer carried `X-Slack-No-Retry: 1`. [`SlackServer::url_verification`] sends a signed
//! `{token, challenge, type:"url_verification"}` and accepts the challenge echoed as plain text, as
//! `challenge=…` or as `{"challenge":…}`. [`SlackServer::deliver_http_bad_signature`] and
//! [`SlackServer::deliver_http_stale`] (a timestamp 10 minutes old, correctly signed) make one
//! attempt each, for receivers that must refuse them.
//!
//! Pushed message events look like Slack's: `{type:"message", channel, channel_type:
//! "channel"|"group"|"im"|"mpim", user, text, ts, event_ts, team, client_msg_id, thread_ts?,
//! parent_user_id?}`; `app_mention` events carry `<@BOT_USER_ID>` in `text` (a real workspace
//! subscribed to `message.channels` also sends the plain message event, which
//! [`SlackServer::push_message`] can add). The bot's own messages carry `bot_id`, `app_id` and
//! `subtype: "bot_message"` ([`SlackServer::push_bot_message`], or every successful post with
//! [`SlackServer::set_echo_own_messages`]).
//!
//! # Faults
//!
//! - [`SlackServer::drop_socket`]: every connection is closed at the TCP level, without a close
//!   frame; unacknowledged envelopes are redelivered once the app reconnects.
//! - [`SlackServer::stall_socket`]: connections stay open but get nothing (not even `hello`), and
//!   acknowledgements received meanwhile are ignored ([`SlackServer::ignored_acks`]).
//! - [`SlackServer::send_disconnect`] sends `{"type":"disconnect","reason":…,"debug_info":{…}}`
//!   to every connection, then a close frame: at once, or for `warning` after the warning grace
//!   (10 s by default, "about 10 seconds before the disconnect" in the documentation).
//! - [`SlackServer::fail_next`]: the next call of a method (or `*`) answers a scripted
//!   [`Fail`]: an error name with HTTP 200, a 429 with `Retry-After`, or another HTTP status.
//! - [`SlackServer::cut_next_answer`]: the next successful call of a method takes effect, but
//!   the connection breaks halfway through its answer (the client cannot know it worked).
//! - [`SlackServer::set_rate_limit`]: more than N calls of a method within a minute are 429 with
//!   `Retry-After` (the seconds until the oldest call leaves the window);
//!   [`SlackServer::set_channel_post_limit`]: more than N `chat.postMessage` per channel within a
//!   second are 429 with `Retry-After: 1` (the documented special tier). No limit by default.
//! - [`SlackServer::duplicate_next_envelope`]: the next envelope is sent twice: same payload and
//!   `event_id`, a new `envelope_id`, each to be acknowledged.
//! - [`SlackServer::malformed_next_frame`]: the next envelope is replaced by a text frame that is
//!   not JSON; unacknowledged, it is then redelivered like any other.
//!
//! In [`SlackServer::requests`] every Web API call is kept with the kind of token it carried
//! ([`TokenKind`]), whether that token was valid, the HTTP status and the error answered.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

const TEAM_ID: &str = "T07TWIN0001";
const TEAM_NAME: &str = "Clawline Twin";
const TEAM_DOMAIN: &str = "clawline-twin";
const APP_ID: &str = "A07TWINAPP1";
const BOT_USER_ID: &str = "U07TWINBOT1";
const BOT_ID: &str = "B07TWINBOT1";
const BOT_NAME: &str = "clawline";
const HOST: &str = "applink-twin-1";
const VERIFICATION_TOKEN: &str = "twinVerificationToken0001";
/// `chat.postMessage` truncates longer text.
const POST_TEXT_LIMIT: usize = 40_000;
/// `chat.update` refuses longer text with `msg_too_long`.
const UPDATE_TEXT_LIMIT: usize = 4_000;
const MAX_BLOCKS: usize = 50;
/// How old the timestamp of [`SlackServer::deliver_http_stale`] is (receivers refuse > 5 min).
const STALE_AGE_SECS: i64 = 600;
const USER_AGENT: &str = "Slackbot 1.0 (+https://api.slack.com/robots)";
const METHODS: [&str; 7] = [
    "auth.test",
    "chat.postMessage",
    "chat.update",
    "reactions.add",
    "apps.connections.open",
    "conversations.history",
    "conversations.replies",
];
/// `conversations.history` and `conversations.replies` answer at most this many per page.
const MAX_PAGE: usize = 999;

// ---------------------------------------------------------------------------------------------
// Public data types
// ---------------------------------------------------------------------------------------------

/// The kind of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// A public channel (`C…`).
    Public,
    /// A private channel.
    Private,
    /// A direct message with one user (`D…`).
    Im,
    /// A multi-person direct message.
    Mpim,
}

impl ChannelKind {
    /// The `channel_type` of message events: `channel`, `group`, `im` or `mpim`.
    pub fn channel_type(self) -> &'static str {
        match self {
            ChannelKind::Public => "channel",
            ChannelKind::Private => "group",
            ChannelKind::Im => "im",
            ChannelKind::Mpim => "mpim",
        }
    }
}

/// The kind of token a Web API call carried, by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// No token at all.
    Missing,
    /// `xoxb-…`.
    Bot,
    /// `xapp-…`, an app-level token.
    App,
    /// `xoxp-…`.
    User,
    /// Anything else.
    Other,
}

impl TokenKind {
    fn of(token: Option<&str>) -> TokenKind {
        match token {
            None => TokenKind::Missing,
            Some(t) if t.starts_with("xoxb-") => TokenKind::Bot,
            Some(t) if t.starts_with("xapp-") => TokenKind::App,
            Some(t) if t.starts_with("xoxp-") => TokenKind::User,
            Some(_) => TokenKind::Other,
        }
    }
}

/// A successful `chat.postMessage`.
#[derive(Debug, Clone, PartialEq)]
pub struct Posted {
    /// The conversation id posted to (a `D…` id when the call named a user).
    pub channel: String,
    pub ts: String,
    /// The text as stored (truncated to 40,000 characters).
    pub text: String,
    pub thread_ts: Option<String>,
    /// `mrkdwn` (true unless the call set it false).
    pub mrkdwn: bool,
    pub blocks: Option<Value>,
    /// Whether the text was longer than 40,000 characters and was cut.
    pub truncated: bool,
    pub reply_broadcast: bool,
    /// The message metadata (`{event_type, event_payload}`), when the call gave one.
    pub metadata: Option<Value>,
}

/// A successful `chat.update`.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub channel: String,
    pub ts: String,
    pub text: Option<String>,
    pub blocks: Option<Value>,
}

/// A successful `reactions.add`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactionAdded {
    pub channel: String,
    pub timestamp: String,
    pub name: String,
}

/// One Web API call, whatever its outcome.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: String,
    /// `GET` or `POST`.
    pub http_method: String,
    pub token: TokenKind,
    /// Whether the token is the bot or app-level token the twin was started with.
    pub token_valid: bool,
    pub status: u16,
    /// The `error` answered, if any.
    pub error: Option<String>,
    /// The parameters received (without `token`).
    pub params: Value,
}

/// What a push queued: the callback's `event_id`, the first envelope's id and the message `ts`
/// (empty for raw events without one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub event_id: String,
    pub envelope_id: String,
    pub ts: String,
}

/// An envelope sent again because the previous one was not acknowledged in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redelivery {
    pub event_id: String,
    pub previous_envelope_id: String,
    pub envelope_id: String,
    pub retry_attempt: u32,
}

/// One Events API request over HTTP.
#[derive(Debug, Clone)]
pub struct HttpDelivery {
    pub url: String,
    /// The `event_id` of the body (none for `url_verification`).
    pub event_id: Option<String>,
    /// `X-Slack-Retry-Num` (0: first attempt, header absent).
    pub retry_num: u32,
    /// `X-Slack-Retry-Reason`.
    pub retry_reason: Option<String>,
    /// `X-Slack-Request-Timestamp`.
    pub timestamp: String,
    /// `X-Slack-Signature`.
    pub signature: String,
    pub body: String,
    /// The receiver's status; `None` when it gave none in time.
    pub status: Option<u16>,
    /// Why the attempt counts as failed (`http_error`, `http_timeout`, …).
    pub failure: Option<String>,
}

/// A scripted failure for [`SlackServer::fail_next`]. `&str` converts to [`Fail::Error`], `u16`
/// to [`Fail::Status`] (429 to [`Fail::RateLimited`] with one second).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fail {
    /// HTTP 200 `{"ok":false,"error":<name>}`.
    Error(String),
    /// This HTTP status with `{"ok":false,"error":…}` (`fatal_error` for 500,
    /// `service_unavailable` for 503, `request_timeout` for 504, else `internal_error`).
    Status(u16),
    /// HTTP 429 with `Retry-After: <seconds>` and `{"ok":false,"error":"ratelimited"}`.
    RateLimited(u64),
}

impl From<&str> for Fail {
    fn from(error: &str) -> Fail {
        Fail::Error(error.into())
    }
}

impl From<u16> for Fail {
    fn from(status: u16) -> Fail {
        if status == 429 { Fail::RateLimited(1) } else { Fail::Status(status) }
    }
}

// ---------------------------------------------------------------------------------------------
// Internal state
// ---------------------------------------------------------------------------------------------

struct StoredMessage {
    user: String,
    from_bot: bool,
    text: String,
    reactions: Vec<String>,
    thread_ts: Option<String>,
    metadata: Option<Value>,
}

struct Channel {
    name: String,
    kind: ChannelKind,
    /// The other member of a DM.
    peer: Option<String>,
    messages: BTreeMap<String, StoredMessage>,
}

enum Out {
    Text(String),
    Close(u16, String),
    Abort,
}

struct Socket {
    id: u64,
    tx: mpsc::UnboundedSender<Out>,
    /// Told to disconnect: used only when nothing else is connected.
    closing: bool,
    /// False once a close frame is queued.
    usable: bool,
}

/// An envelope waiting to be sent. A chain is one event's sequence of attempts.
struct Delivery {
    chain: u64,
    event_id: String,
    envelope_id: String,
    previous: Option<String>,
    payload: Value,
    attempt: u32,
    not_before: Instant,
}

struct InFlight {
    chain: u64,
    event_id: String,
    envelope_id: String,
    payload: Value,
    attempt: u32,
    deadline: Instant,
}

enum Refusal {
    Error(String),
    Status(u16, String),
    RateLimited(u64),
}

fn refuse(error: &str) -> Refusal {
    Refusal::Error(error.into())
}

struct Inner {
    addr: SocketAddr,
    bot_token: String,
    app_token: String,
    signing_secret: String,
    users: HashMap<String, String>,
    channels: BTreeMap<String, Channel>,
    last_ts_micros: u64,
    rng: u64,

    tickets: HashSet<String>,
    sockets: Vec<Socket>,
    next_socket_id: u64,
    connections_opened: usize,
    refused_connections: usize,

    queue: VecDeque<Delivery>,
    in_flight: Vec<InFlight>,
    raw_frames: VecDeque<String>,
    envelope_chain: HashMap<String, u64>,
    acked_chains: HashSet<u64>,
    next_chain: u64,
    ack_timeout: Duration,
    socket_retry_delays: Vec<Duration>,
    http_timeout: Duration,
    http_retry_delays: Vec<Duration>,
    request_url: Option<String>,
    warning_grace: Duration,
    echo_own: bool,

    stalled: bool,
    duplicate_next: bool,
    malformed_next: bool,
    scripted: VecDeque<(String, Fail)>,
    cut_answers: Vec<String>,
    limits: HashMap<String, u32>,
    calls: HashMap<String, VecDeque<Instant>>,
    channel_post_limit: u32,
    channel_posts: HashMap<String, VecDeque<Instant>>,

    posted: Vec<Posted>,
    updates: Vec<Update>,
    reactions: Vec<ReactionAdded>,
    acks: Vec<String>,
    ignored_acks: Vec<String>,
    requests: Vec<ApiRequest>,
    redeliveries: Vec<Redelivery>,
    envelopes: Vec<Value>,
    dropped: Vec<String>,
    http_deliveries: Vec<HttpDelivery>,
    client_frames: Vec<String>,
}

struct Twin {
    inner: Mutex<Inner>,
    /// Wakes the delivery engine.
    notify: Notify,
    http: reqwest::Client,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    closed: AtomicBool,
}

type Shared = Arc<Twin>;

impl Twin {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn track(&self, handle: JoinHandle<()>) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }
}

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// `v0=<hex HMAC-SHA256(signing_secret, "v0:" + timestamp + ":" + body)>`, the
/// `X-Slack-Signature` of a request with this `X-Slack-Request-Timestamp` and raw body.
pub fn slack_signature(signing_secret: &str, timestamp: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, signing_secret.as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(b"v0:");
    ctx.update(timestamp.as_bytes());
    ctx.update(b":");
    ctx.update(body);
    let tag = ctx.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("v0={hex}")
}

impl Inner {
    fn new(addr: SocketAddr, bot_token: &str, app_token: &str, signing_secret: &str) -> Inner {
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
            ^ (u64::from(addr.port()) << 32);
        let minute = Duration::from_secs(60);
        Inner {
            addr,
            bot_token: bot_token.into(),
            app_token: app_token.into(),
            signing_secret: signing_secret.into(),
            users: HashMap::new(),
            channels: BTreeMap::new(),
            last_ts_micros: 0,
            rng: seed | 1,
            tickets: HashSet::new(),
            sockets: Vec::new(),
            next_socket_id: 0,
            connections_opened: 0,
            refused_connections: 0,
            queue: VecDeque::new(),
            in_flight: Vec::new(),
            raw_frames: VecDeque::new(),
            envelope_chain: HashMap::new(),
            acked_chains: HashSet::new(),
            next_chain: 0,
            ack_timeout: Duration::from_secs(3),
            socket_retry_delays: vec![Duration::ZERO, minute, 5 * minute],
            http_timeout: Duration::from_secs(3),
            http_retry_delays: vec![Duration::ZERO, minute, 5 * minute],
            request_url: None,
            warning_grace: Duration::from_secs(10),
            echo_own: false,
            stalled: false,
            duplicate_next: false,
            malformed_next: false,
            scripted: VecDeque::new(),
            cut_answers: Vec::new(),
            limits: HashMap::new(),
            calls: HashMap::new(),
            channel_post_limit: 0,
            channel_posts: HashMap::new(),
            posted: Vec::new(),
            updates: Vec::new(),
            reactions: Vec::new(),
            acks: Vec::new(),
            ignored_acks: Vec::new(),
            requests: Vec::new(),
            redeliveries: Vec::new(),
            envelopes: Vec::new(),
            dropped: Vec::new(),
            http_deliveries: Vec::new(),
            client_frames: Vec::new(),
        }
    }

    // --- Identifiers ---------------------------------------------------------------------------

    fn next_rand(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn base36(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        (0..len).map(|_| ALPHABET[(self.next_rand() % 36) as usize] as char).collect()
    }

    fn uuid(&mut self) -> String {
        let (a, b) = (self.next_rand(), self.next_rand());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }

    /// A message `ts`: the current time in microseconds, strictly increasing.
    fn next_ts(&mut self) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
        let v = now.max(self.last_ts_micros + 1);
        self.last_ts_micros = v;
        format!("{}.{:06}", v / 1_000_000, v % 1_000_000)
    }

    fn new_chain(&mut self) -> u64 {
        self.next_chain += 1;
        self.next_chain
    }

    // --- Conversations -------------------------------------------------------------------------

    fn add_channel(&mut self, id: &str, name: &str, kind: ChannelKind, peer: Option<String>) {
        self.channels.insert(
            id.into(),
            Channel { name: name.trim_start_matches('#').into(), kind, peer, messages: BTreeMap::new() },
        );
    }

    fn im_for(&mut self, user: &str) -> String {
        if let Some((id, _)) =
            self.channels.iter().find(|(_, c)| c.kind == ChannelKind::Im && c.peer.as_deref() == Some(user))
        {
            return id.clone();
        }
        let id = format!("D{}", self.base36(10));
        self.add_channel(&id, user, ChannelKind::Im, Some(user.into()));
        id
    }

    /// The conversation a `chat.postMessage` `channel` names: an id, a channel name or a user.
    fn resolve_channel(&mut self, arg: &str) -> Option<String> {
        if self.channels.contains_key(arg) {
            return Some(arg.into());
        }
        let name = arg.trim_start_matches('#');
        if let Some((id, _)) = self
            .channels
            .iter()
            .find(|(_, c)| matches!(c.kind, ChannelKind::Public | ChannelKind::Private) && c.name == name)
        {
            return Some(id.clone());
        }
        if self.users.contains_key(arg) {
            return Some(self.im_for(arg));
        }
        None
    }

    // --- Events --------------------------------------------------------------------------------

    /// The Events API callback around `event`: `(event_id, payload)`. An `event_callback` or
    /// `url_verification` body is taken as it is.
    fn callback(&mut self, event: Value) -> (String, Value) {
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        if matches!(kind, "event_callback" | "url_verification") {
            let id = event.get("event_id").and_then(Value::as_str).unwrap_or("").to_string();
            return (id, event);
        }
        let event_id = format!("Ev{}", self.base36(9));
        let channel = event.get("channel").and_then(Value::as_str).unwrap_or("").to_string();
        let context = format!("4-{kind}-{TEAM_ID}-{channel}");
        let payload = json!({
            "token": VERIFICATION_TOKEN,
            "team_id": TEAM_ID,
            "context_team_id": TEAM_ID,
            "context_enterprise_id": null,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": event_id,
            "event_time": now_unix(),
            "authorizations": [{
                "enterprise_id": null, "team_id": TEAM_ID, "user_id": BOT_USER_ID,
                "is_bot": true, "is_enterprise_install": false,
            }],
            "is_ext_shared_channel": false,
            "event_context": context,
        });
        (event_id, payload)
    }

    fn enqueue(&mut self, event: Value) -> Pushed {
        let ts = event.get("ts").and_then(Value::as_str).unwrap_or("").to_string();
        let (event_id, payload) = self.callback(event);
        let chain = self.new_chain();
        let envelope_id = self.uuid();
        self.queue.push_back(Delivery {
            chain,
            event_id: event_id.clone(),
            envelope_id: envelope_id.clone(),
            previous: None,
            payload,
            attempt: 0,
            not_before: Instant::now(),
        });
        Pushed { event_id, envelope_id, ts }
    }

    fn channel_kind(&self, channel: &str, caller: &str) -> ChannelKind {
        self.channels
            .get(channel)
            .map(|c| c.kind)
            .unwrap_or_else(|| panic!("{caller}: no channel {channel} (add it first)"))
    }

    /// A user's message event, stored; `kind` is `message` or `app_mention`.
    fn user_event(&mut self, kind: &str, channel: &str, user: &str, text: &str, thread_ts: Option<&str>) -> Value {
        let channel_kind = self.channel_kind(channel, "push");
        self.users.entry(user.into()).or_insert_with(|| format!("user-{}", user.to_ascii_lowercase()));
        let ts = self.next_ts();
        let mut event = json!({
            "type": kind,
            "channel": channel,
            "user": user,
            "text": text,
            "ts": ts,
            "event_ts": ts,
            "team": TEAM_ID,
            "client_msg_id": self.uuid(),
        });
        if kind == "message" {
            event["channel_type"] = channel_kind.channel_type().into();
        }
        if let Some(parent) = thread_ts {
            event["thread_ts"] = parent.into();
            if let Some(p) = self.channels.get(channel).and_then(|c| c.messages.get(parent)) {
                event["parent_user_id"] = p.user.clone().into();
            }
        }
        self.store(channel, &ts, user, false, text, thread_ts);
        event
    }

    fn bot_event(&mut self, channel: &str, text: &str, ts: &str, thread_ts: Option<&str>) -> Value {
        let channel_kind = self.channel_kind(channel, "push_bot_message");
        let mut event = json!({
            "type": "message",
            "subtype": "bot_message",
            "channel": channel,
            "channel_type": channel_kind.channel_type(),
            "text": text,
            "ts": ts,
            "event_ts": ts,
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
        });
        if let Some(parent) = thread_ts {
            event["thread_ts"] = parent.into();
        }
        event
    }

    fn store(&mut self, channel: &str, ts: &str, user: &str, from_bot: bool, text: &str, thread_ts: Option<&str>) {
        if let Some(c) = self.channels.get_mut(channel) {
            c.messages.insert(
                ts.into(),
                StoredMessage {
                    user: user.into(),
                    from_bot,
                    text: text.into(),
                    reactions: Vec::new(),
                    thread_ts: thread_ts.map(str::to_string),
                    metadata: None,
                },
            );
        }
    }

    // --- Socket Mode ---------------------------------------------------------------------------

    fn register_socket(&mut self, tx: mpsc::UnboundedSender<Out>) -> u64 {
        self.next_socket_id += 1;
        let id = self.next_socket_id;
        self.connections_opened += 1;
        let hello = json!({
            "type": "hello",
            "num_connections": self.sockets.len() + 1,
            "debug_info": {"host": HOST, "build_number": 1, "approximate_connection_time": 18060},
            "connection_info": {"app_id": APP_ID},
        });
        let _ = tx.send(Out::Text(hello.to_string()));
        self.sockets.push(Socket { id, tx, closing: false, usable: true });
        id
    }

    fn remove_socket(&mut self, id: u64) {
        self.sockets.retain(|s| s.id != id);
    }

    fn pick_socket(&self) -> Option<usize> {
        self.sockets
            .iter()
            .rposition(|s| s.usable && !s.closing)
            .or_else(|| self.sockets.iter().rposition(|s| s.usable))
    }

    fn drop_sockets(&mut self) {
        for s in self.sockets.drain(..) {
            let _ = s.tx.send(Out::Abort);
        }
    }

    /// One round of the delivery engine: expired envelopes are scheduled again, ready ones are
    /// sent. Returns the HTTP deliveries to start when Socket Mode is off.
    fn step(&mut self, now: Instant) -> Vec<(String, Value)> {
        let (expired, kept): (Vec<InFlight>, Vec<InFlight>) =
            std::mem::take(&mut self.in_flight).into_iter().partition(|f| f.deadline <= now);
        self.in_flight = kept;
        for f in expired {
            self.schedule_retry(f, now);
        }
        if let Some(url) = self.request_url.clone() {
            return self.queue.drain(..).map(|d| (url.clone(), d.payload)).collect();
        }
        if self.stalled {
            return Vec::new();
        }
        let Some(index) = self.pick_socket() else { return Vec::new() };
        let tx = self.sockets[index].tx.clone();
        while let Some(raw) = self.raw_frames.pop_front() {
            let _ = tx.send(Out::Text(raw));
        }
        let mut waiting = VecDeque::new();
        while let Some(d) = self.queue.pop_front() {
            if d.not_before > now {
                waiting.push_back(d);
            } else {
                self.send_envelope(&tx, d, now);
            }
        }
        self.queue = waiting;
        Vec::new()
    }

    fn send_envelope(&mut self, tx: &mpsc::UnboundedSender<Out>, d: Delivery, now: Instant) {
        let envelope = json!({
            "envelope_id": d.envelope_id,
            "payload": d.payload,
            "type": "events_api",
            "accepts_response_payload": false,
            "retry_attempt": d.attempt,
            "retry_reason": if d.attempt == 0 { "" } else { "timeout" },
        });
        if self.malformed_next {
            self.malformed_next = false;
            let _ = tx.send(Out::Text(format!("{{\"envelope_id\":\"{}\",\"payload\":{{\"token\":", d.envelope_id)));
        } else {
            let _ = tx.send(Out::Text(envelope.to_string()));
            self.envelopes.push(envelope);
        }
        if let Some(previous) = d.previous {
            self.redeliveries.push(Redelivery {
                event_id: d.event_id.clone(),
                previous_envelope_id: previous,
                envelope_id: d.envelope_id.clone(),
                retry_attempt: d.attempt,
            });
        }
        self.envelope_chain.insert(d.envelope_id.clone(), d.chain);
        self.in_flight.push(InFlight {
            chain: d.chain,
            event_id: d.event_id.clone(),
            envelope_id: d.envelope_id,
            payload: d.payload.clone(),
            attempt: d.attempt,
            deadline: now + self.ack_timeout,
        });
        if self.duplicate_next {
            self.duplicate_next = false;
            let duplicate = Delivery {
                chain: self.new_chain(),
                event_id: d.event_id,
                envelope_id: self.uuid(),
                previous: None,
                payload: d.payload,
                attempt: 0,
                not_before: now,
            };
            self.send_envelope(tx, duplicate, now);
        }
    }

    fn schedule_retry(&mut self, f: InFlight, now: Instant) {
        if self.acked_chains.contains(&f.chain) {
            return;
        }
        match self.socket_retry_delays.get(f.attempt as usize).copied() {
            Some(delay) => {
                let envelope_id = self.uuid();
                self.queue.push_back(Delivery {
                    chain: f.chain,
                    event_id: f.event_id,
                    envelope_id,
                    previous: Some(f.envelope_id),
                    payload: f.payload,
                    attempt: f.attempt + 1,
                    not_before: now + delay,
                });
            }
            None => self.dropped.push(f.event_id),
        }
    }

    fn on_client_frame(&mut self, text: &str) {
        let id = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v.get("envelope_id").and_then(Value::as_str).map(String::from));
        let Some(id) = id else {
            self.client_frames.push(text.into());
            return;
        };
        if self.stalled {
            self.ignored_acks.push(id);
            return;
        }
        self.acks.push(id.clone());
        if let Some(&chain) = self.envelope_chain.get(&id) {
            self.acked_chains.insert(chain);
            self.in_flight.retain(|f| f.chain != chain);
            self.queue.retain(|d| d.chain != chain);
        }
    }

    fn disconnect_frame(reason: &str) -> String {
        json!({"type": "disconnect", "reason": reason, "debug_info": {"host": HOST}}).to_string()
    }

    // --- Web API -------------------------------------------------------------------------------

    fn answer(
        &mut self,
        method: &str,
        http_method: &Method,
        token: Option<&str>,
        p: &Params,
        now: Instant,
    ) -> Result<Value, Refusal> {
        if !METHODS.contains(&method) {
            return Err(refuse("unknown_method"));
        }
        if method == "apps.connections.open" && http_method != Method::POST {
            return Err(refuse("insecure_request"));
        }
        let Some(token) = token else { return Err(refuse("not_authed")) };
        let is_app = if token == self.bot_token {
            false
        } else if token == self.app_token {
            true
        } else {
            return Err(refuse("invalid_auth"));
        };
        if is_app != (method == "apps.connections.open") {
            return Err(refuse("not_allowed_token_type"));
        }
        if let Some(e) = p.error {
            return Err(refuse(e));
        }
        if let Some(i) = self.scripted.iter().position(|(m, _)| m == method || m == "*") {
            let (_, fail) = self.scripted.remove(i).expect("position found");
            return Err(match fail {
                Fail::Error(e) => Refusal::Error(e),
                Fail::RateLimited(secs) => Refusal::RateLimited(secs),
                Fail::Status(status) => {
                    let error = match status {
                        500 => "fatal_error",
                        503 => "service_unavailable",
                        504 => "request_timeout",
                        _ => "internal_error",
                    };
                    Refusal::Status(status, error.into())
                }
            });
        }
        if let Some(secs) =
            Self::limited(&mut self.calls, method, self.limits.get(method).copied(), Duration::from_secs(60), now)
        {
            return Err(Refusal::RateLimited(secs));
        }
        match method {
            "auth.test" => Ok(json!({
                "ok": true,
                "url": format!("https://{TEAM_DOMAIN}.slack.com/"),
                "team": TEAM_NAME,
                "user": BOT_NAME,
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "bot_id": BOT_ID,
                "is_enterprise_install": false,
            })),
            "chat.postMessage" => self.post_message(p, now),
            "chat.update" => self.update_message(p),
            "conversations.history" => self.history(p, None),
            "conversations.replies" => {
                let ts = p.text("ts").filter(|t| !t.is_empty()).ok_or_else(|| refuse("thread_not_found"))?;
                self.history(p, Some(&ts))
            }
            "reactions.add" => self.add_reaction(p),
            _ => {
                let ticket = self.uuid();
                self.tickets.insert(ticket.clone());
                Ok(json!({"ok": true, "url": format!("ws://{}/link/?ticket={ticket}&app_id={APP_ID}", self.addr)}))
            }
        }
    }

    /// A sliding-window limit: `Some(retry_after_secs)` when `key` already had `limit` calls
    /// within `window`; otherwise the call is counted.
    fn limited(
        calls: &mut HashMap<String, VecDeque<Instant>>,
        key: &str,
        limit: Option<u32>,
        window: Duration,
        now: Instant,
    ) -> Option<u64> {
        let limit = limit.filter(|l| *l > 0)?;
        let times = calls.entry(key.into()).or_default();
        while times.front().is_some_and(|t| now.duration_since(*t) >= window) {
            times.pop_front();
        }
        if times.len() >= limit as usize {
            let oldest = *times.front()?;
            let left = window.saturating_sub(now.duration_since(oldest));
            return Some(left.as_secs_f64().ceil().max(1.0) as u64);
        }
        times.push_back(now);
        None
    }

    fn bot_message_json(text: &str, ts: &str, thread_ts: Option<&str>) -> Value {
        let mut message = json!({
            "type": "message",
            "subtype": "bot_message",
            "text": text,
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "ts": ts,
        });
        if let Some(t) = thread_ts {
            message["thread_ts"] = t.into();
        }
        message
    }

    fn blocks(p: &Params) -> Result<Option<Value>, Refusal> {
        match p.json("blocks") {
            None => Ok(None),
            Some(Ok(Value::Array(a))) if a.len() > MAX_BLOCKS => Err(refuse("invalid_blocks")),
            Some(Ok(v @ Value::Array(_))) => Ok(Some(v)),
            Some(_) => Err(refuse("invalid_blocks_format")),
        }
    }

    fn post_message(&mut self, p: &Params, now: Instant) -> Result<Value, Refusal> {
        let arg = p.text("channel").filter(|c| !c.is_empty()).ok_or_else(|| refuse("channel_not_found"))?;
        let channel = self.resolve_channel(&arg).ok_or_else(|| refuse("channel_not_found"))?;
        let blocks = Self::blocks(p)?;
        let text = p.text("text").unwrap_or_default();
        if text.is_empty() && blocks.is_none() && p.get("attachments").is_none() {
            return Err(refuse("no_text"));
        }
        let limit = Some(self.channel_post_limit);
        if let Some(secs) = Self::limited(&mut self.channel_posts, &channel, limit, Duration::from_secs(1), now) {
            return Err(Refusal::RateLimited(secs));
        }
        let truncated = text.chars().count() > POST_TEXT_LIMIT;
        let text: String = if truncated { text.chars().take(POST_TEXT_LIMIT).collect() } else { text };
        let thread_ts = p.text("thread_ts").filter(|t| !t.is_empty());
        let metadata = Self::metadata(p)?;
        let ts = self.next_ts();
        self.store(&channel, &ts, BOT_USER_ID, true, &text, thread_ts.as_deref());
        if let Some(m) = self.channels.get_mut(&channel).and_then(|c| c.messages.get_mut(&ts)) {
            m.metadata = metadata.clone();
        }
        self.posted.push(Posted {
            channel: channel.clone(),
            ts: ts.clone(),
            text: text.clone(),
            thread_ts: thread_ts.clone(),
            mrkdwn: p.flag("mrkdwn").unwrap_or(true),
            blocks: blocks.clone(),
            truncated,
            reply_broadcast: p.flag("reply_broadcast").unwrap_or(false),
            metadata: metadata.clone(),
        });
        let mut message = Self::bot_message_json(&text, &ts, thread_ts.as_deref());
        if let Some(b) = blocks {
            message["blocks"] = b;
        }
        if let Some(m) = metadata {
            message["metadata"] = m;
        }
        if self.echo_own {
            let event = self.bot_event(&channel, &text, &ts, thread_ts.as_deref());
            self.enqueue(event);
        }
        Ok(json!({"ok": true, "channel": channel, "ts": ts, "message": message}))
    }

    /// `metadata` of `chat.postMessage`: an object (or JSON text in a form body) with a
    /// non-empty `event_type` and an object `event_payload`.
    fn metadata(p: &Params) -> Result<Option<Value>, Refusal> {
        let Some(m) = p.json("metadata") else { return Ok(None) };
        let m = m.map_err(|_| refuse("invalid_metadata_format"))?;
        if !m.is_object() {
            return Err(refuse("invalid_metadata_format"));
        }
        let typed = m["event_type"].as_str().is_some_and(|t| !t.is_empty());
        if !typed || !m["event_payload"].is_object() {
            return Err(refuse("invalid_metadata_schema"));
        }
        Ok(Some(json!({"event_type": m["event_type"], "event_payload": m["event_payload"]})))
    }

    /// `conversations.history` (`thread` is `None`: the conversation's top-level messages,
    /// newest first) or `conversations.replies` (a thread's parent and replies, oldest first),
    /// paged by an opaque cursor.
    fn history(&self, p: &Params, thread: Option<&str>) -> Result<Value, Refusal> {
        let channel = p.text("channel").unwrap_or_default();
        let conversation = self.channels.get(&channel).ok_or_else(|| refuse("channel_not_found"))?;
        if let Some(t) = thread
            && !conversation.messages.contains_key(t)
        {
            return Err(refuse("thread_not_found"));
        }
        let bound = |name: &str| p.text(name).filter(|v| !v.is_empty());
        let (oldest, latest) = (bound("oldest"), bound("latest"));
        for b in [&oldest, &latest].into_iter().flatten() {
            if b.parse::<f64>().is_err() {
                return Err(refuse("invalid_ts_oldest"));
            }
        }
        let inclusive = p.flag("inclusive").unwrap_or(false);
        let with_meta = p.flag("include_all_metadata").unwrap_or(false);
        let default_limit = if thread.is_some() { 1000 } else { 100 };
        let limit = p.text("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(default_limit).clamp(1, MAX_PAGE);
        let offset = match p.text("cursor").filter(|c| !c.is_empty()) {
            None => 0,
            Some(c) => decode_cursor(&c).ok_or_else(|| refuse("invalid_cursor"))?,
        };
        let after = |ts: &str, b: &str| {
            let (ts, b) = (ts.parse::<f64>().unwrap_or(0.0), b.parse::<f64>().unwrap_or(0.0));
            ts > b || (inclusive && ts == b)
        };
        let mut picked: Vec<(&String, &StoredMessage)> = conversation
            .messages
            .iter()
            .filter(|(ts, m)| match thread {
                // Top level: messages outside threads and thread parents.
                None => m.thread_ts.as_deref().is_none_or(|t| t == ts.as_str()),
                Some(parent) => ts.as_str() == parent || m.thread_ts.as_deref() == Some(parent),
            })
            .filter(|(ts, _)| oldest.as_deref().is_none_or(|o| after(ts, o)))
            .filter(|(ts, _)| latest.as_deref().is_none_or(|l| after(l, ts)))
            .collect();
        if thread.is_none() {
            picked.reverse();
        }
        let page: Vec<Value> = picked
            .iter()
            .skip(offset)
            .take(limit)
            .map(|(ts, m)| {
                let mut v = if m.from_bot {
                    Self::bot_message_json(&m.text, ts, m.thread_ts.as_deref())
                } else {
                    let mut v = json!({"type": "message", "user": m.user, "text": m.text, "ts": ts, "team": TEAM_ID});
                    if let Some(t) = &m.thread_ts {
                        v["thread_ts"] = t.clone().into();
                    }
                    v
                };
                if with_meta && let Some(meta) = &m.metadata {
                    v["metadata"] = meta.clone();
                }
                v
            })
            .collect();
        let has_more = picked.len() > offset + limit;
        let next = if has_more { encode_cursor(offset + limit) } else { String::new() };
        Ok(json!({"ok": true, "messages": page, "has_more": has_more, "response_metadata": {"next_cursor": next}}))
    }

    fn update_message(&mut self, p: &Params) -> Result<Value, Refusal> {
        let channel = p.text("channel").unwrap_or_default();
        let ts = p.text("ts").unwrap_or_default();
        let blocks = Self::blocks(p)?;
        let text = p.text("text");
        let conversation = self.channels.get_mut(&channel).ok_or_else(|| refuse("channel_not_found"))?;
        let message = conversation.messages.get_mut(&ts).ok_or_else(|| refuse("message_not_found"))?;
        if !message.from_bot {
            return Err(refuse("cant_update_message"));
        }
        if text.as_deref().is_none_or(str::is_empty) && blocks.is_none() {
            return Err(refuse("no_text"));
        }
        if text.as_deref().is_some_and(|t| t.chars().count() > UPDATE_TEXT_LIMIT) {
            return Err(refuse("msg_too_long"));
        }
        if let Some(t) = &text {
            message.text = t.clone();
        }
        let stored = message.text.clone();
        self.updates.push(Update { channel: channel.clone(), ts: ts.clone(), text, blocks: blocks.clone() });
        let mut message = json!({"type": "message", "text": stored, "user": BOT_USER_ID, "bot_id": BOT_ID, "app_id": APP_ID, "team": TEAM_ID});
        if let Some(b) = blocks {
            message["blocks"] = b;
        }
        Ok(json!({"ok": true, "channel": channel, "ts": ts, "text": stored, "message": message}))
    }

    fn add_reaction(&mut self, p: &Params) -> Result<Value, Refusal> {
        let (Some(channel), Some(timestamp)) =
            (p.text("channel").filter(|c| !c.is_empty()), p.text("timestamp").filter(|t| !t.is_empty()))
        else {
            return Err(refuse("no_item_specified"));
        };
        if !is_ts(&timestamp) {
            return Err(refuse("bad_timestamp"));
        }
        let name = p.text("name").unwrap_or_default();
        let conversation = self.channels.get_mut(&channel).ok_or_else(|| refuse("channel_not_found"))?;
        let message = conversation.messages.get_mut(&timestamp).ok_or_else(|| refuse("message_not_found"))?;
        if !valid_emoji_name(&name) {
            return Err(refuse("invalid_name"));
        }
        if message.reactions.contains(&name) {
            return Err(refuse("already_reacted"));
        }
        message.reactions.push(name.clone());
        self.reactions.push(ReactionAdded { channel, timestamp, name });
        Ok(json!({"ok": true}))
    }
}

/// The opaque page cursor of the history methods: base64 of `offset:<n>`.
fn encode_cursor(offset: usize) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("offset:{offset}"))
}

fn decode_cursor(cursor: &str) -> Option<usize> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD.decode(cursor).ok()?;
    String::from_utf8(raw).ok()?.strip_prefix("offset:")?.parse().ok()
}

/// `1700000000.000100`: digits, a dot, digits.
fn is_ts(s: &str) -> bool {
    s.split_once('.').is_some_and(|(a, b)| {
        !a.is_empty() && !b.is_empty() && a.bytes().all(|c| c.is_ascii_digit()) && b.bytes().all(|c| c.is_ascii_digit())
    })
}

/// An emoji name as `reactions.add` takes it: no colons around it, an optional `::skin-tone-N`.
fn valid_emoji_name(name: &str) -> bool {
    let (base, tone) = match name.split_once("::") {
        Some((b, t)) => (b, Some(t)),
        None => (name, None),
    };
    let ok = |s: &str| {
        !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_+-'".contains(c))
    };
    ok(base)
        && tone.is_none_or(|t| t.strip_prefix("skin-tone-").is_some_and(|n| matches!(n, "2" | "3" | "4" | "5" | "6")))
}

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Params {
    values: Map<String, Value>,
    json_body: bool,
    charset: bool,
    /// Why the body could not be read.
    error: Option<&'static str>,
}

impl Params {
    fn parse(headers: &HeaderMap, query: Option<&str>, body: &[u8]) -> Params {
        let mut p = Params::default();
        for (k, v) in query.map(url_decode_pairs).unwrap_or_default() {
            p.values.insert(k, v.into());
        }
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
        let mime = content_type.split(';').next().unwrap_or("").trim();
        p.charset = content_type.split(';').skip(1).any(|kv| kv.trim().replace(' ', "") == "charset=utf-8");
        if body.is_empty() {
            return p;
        }
        if mime == "application/json" {
            p.json_body = true;
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(o)) => p.values.extend(o),
                _ => p.error = Some("invalid_json"),
            }
        } else {
            for (k, v) in url_decode_pairs(&String::from_utf8_lossy(body)) {
                p.values.insert(k, v.into());
            }
        }
        p
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name).filter(|v| !v.is_null())
    }

    fn text(&self, name: &str) -> Option<String> {
        match self.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    fn flag(&self, name: &str) -> Option<bool> {
        match self.get(name)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) => Some(s == "1" || s.eq_ignore_ascii_case("true")),
            Value::Number(n) => Some(n.as_i64().is_some_and(|n| n != 0)),
            _ => None,
        }
    }

    /// An array or object given as JSON or as JSON text (form bodies).
    fn json(&self, name: &str) -> Option<Result<Value, ()>> {
        Some(match self.get(name)? {
            Value::String(s) => serde_json::from_str(s).map_err(|_| ()),
            v => Ok(v.clone()),
        })
    }

    fn logged(&self) -> Value {
        let mut m = self.values.clone();
        m.remove("token");
        Value::Object(m)
    }
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                match b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn url_decode_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (url_decode(k), url_decode(v))
        })
        .collect()
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("authorization")?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string()).filter(|t| !t.is_empty())
}

// ---------------------------------------------------------------------------------------------
// HTTP entry points
// ---------------------------------------------------------------------------------------------

fn json_response(status: u16, body: &Value, retry_after: Option<u64>) -> Response {
    let mut b = Response::builder().status(status).header("content-type", "application/json; charset=utf-8");
    if let Some(secs) = retry_after {
        b = b.header("retry-after", secs.to_string());
    }
    b.body(Body::from(body.to_string())).unwrap_or_default()
}

fn plain(status: u16, text: &'static str) -> Response {
    Response::builder().status(status).header("content-type", "text/plain").body(Body::from(text)).unwrap_or_default()
}

async fn api(
    State(twin): State<Shared>,
    Path(method): Path<String>,
    http_method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let params = Params::parse(&headers, query.as_deref(), &body);
    let token = bearer(&headers)
        .or_else(|| (method != "apps.connections.open" && !params.json_body).then(|| params.text("token")).flatten());
    let mut g = twin.lock();
    let kind = TokenKind::of(token.as_deref());
    let token_valid = token.as_deref().is_some_and(|t| t == g.bot_token || t == g.app_token);
    let result = g.answer(&method, &http_method, token.as_deref(), &params, Instant::now());
    let cut = result.is_ok() && {
        let at = g.cut_answers.iter().position(|m| *m == method);
        at.map(|i| g.cut_answers.remove(i)).is_some()
    };
    let (status, mut body, retry_after) = match result {
        Ok(body) => (200, body, None),
        Err(Refusal::Error(e)) => (200, json!({"ok": false, "error": e}), None),
        Err(Refusal::Status(s, e)) => (s, json!({"ok": false, "error": e}), None),
        Err(Refusal::RateLimited(secs)) => (429, json!({"ok": false, "error": "ratelimited"}), Some(secs)),
    };
    let error = body.get("error").and_then(Value::as_str).map(String::from);
    if error.as_deref() == Some("unknown_method") {
        body["req_method"] = method.clone().into();
    }
    if error.is_none() && params.json_body && !params.charset {
        body["warning"] = "missing_charset".into();
        body["response_metadata"] = json!({"warnings": ["missing_charset"]});
    }
    g.requests.push(ApiRequest {
        method,
        http_method: http_method.to_string(),
        token: kind,
        token_valid,
        status,
        error,
        params: params.logged(),
    });
    drop(g);
    twin.notify.notify_one();
    if cut {
        // The headers and the start of the body go out, then the connection breaks.
        let text = body.to_string();
        let head = Bytes::copy_from_slice(&text.as_bytes()[..text.len() / 2]);
        let broken = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "the twin cut the answer");
        let chunks = futures_util::stream::iter([Ok(head), Err(broken)]);
        return Response::builder()
            .status(200)
            .header("content-type", "application/json; charset=utf-8")
            .body(Body::from_stream(chunks))
            .unwrap_or_default();
    }
    json_response(status, &body, retry_after)
}

async fn link(
    State(twin): State<Shared>,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let ticket = query.as_deref().map(url_decode_pairs).unwrap_or_default().into_iter().find(|(k, _)| k == "ticket");
    let accepted = {
        let mut g = twin.lock();
        let ok = ticket.is_some_and(|(_, t)| g.tickets.remove(&t));
        if !ok {
            g.refused_connections += 1;
        }
        ok
    };
    if !accepted {
        return plain(401, "invalid or already used ticket");
    }
    ws.on_upgrade(move |socket| serve_socket(twin, socket))
}

async fn serve_socket(twin: Shared, socket: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = twin.lock().register_socket(tx);
    twin.notify.notify_one();
    let (mut sink, mut stream) = socket.split();
    let mut held: VecDeque<String> = VecDeque::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    'connection: loop {
        if twin.closed.load(Ordering::SeqCst) {
            break;
        }
        if !held.is_empty() && !twin.lock().stalled {
            while let Some(text) = held.pop_front() {
                if sink.send(Message::Text(text.into())).await.is_err() {
                    break 'connection;
                }
            }
        }
        tokio::select! {
            out = rx.recv() => match out {
                Some(Out::Text(text)) => held.push_back(text),
                Some(Out::Close(code, reason)) => {
                    if !twin.lock().stalled {
                        for text in held.drain(..) {
                            let _ = sink.send(Message::Text(text.into())).await;
                        }
                    }
                    let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
                    break;
                }
                Some(Out::Abort) | None => break,
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    twin.lock().on_client_frame(text.as_str());
                    twin.notify.notify_one();
                }
                Some(Ok(Message::Binary(bytes))) => twin.lock().client_frames.push(String::from_utf8_lossy(&bytes).into_owned()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            },
            _ = tick.tick() => {}
        }
    }
    twin.lock().remove_socket(id);
    twin.notify.notify_one();
}

/// Sends what is due, redelivers what timed out, and starts HTTP deliveries.
async fn engine(twin: Shared) {
    loop {
        if twin.closed.load(Ordering::SeqCst) {
            return;
        }
        let jobs = twin.lock().step(Instant::now());
        for (url, payload) in jobs {
            let handle = tokio::spawn(http_chain(twin.clone(), url, payload.to_string(), None));
            twin.track(handle);
        }
        tokio::select! {
            _ = twin.notify.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Events API over HTTP
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Signing {
    Good,
    Bad,
    Stale,
}

struct Attempt {
    status: Option<u16>,
    failure: Option<String>,
    no_retry: bool,
    body: String,
}

async fn http_attempt(
    twin: &Twin,
    url: &str,
    body: &str,
    retry: u32,
    reason: Option<&str>,
    signing: Signing,
) -> Attempt {
    let (secret, timeout) = {
        let g = twin.lock();
        (g.signing_secret.clone(), g.http_timeout)
    };
    let now = now_unix();
    let timestamp = if signing == Signing::Stale { now - STALE_AGE_SECS } else { now }.to_string();
    let key = if signing == Signing::Bad { format!("{secret}-but-not-quite") } else { secret };
    let signature = slack_signature(&key, &timestamp, body.as_bytes());
    let mut request = twin
        .http
        .post(url)
        .timeout(timeout)
        .header("content-type", "application/json")
        .header("user-agent", USER_AGENT)
        .header("x-slack-request-timestamp", &timestamp)
        .header("x-slack-signature", &signature)
        .body(body.to_string());
    if retry > 0 {
        request = request
            .header("x-slack-retry-num", retry.to_string())
            .header("x-slack-retry-reason", reason.unwrap_or("unknown_error"));
    }
    let failure_of = |e: &reqwest::Error| {
        if e.is_timeout() {
            "http_timeout"
        } else if e.is_redirect() {
            "too_many_redirects"
        } else if e.is_connect() {
            "connection_failed"
        } else {
            "unknown_error"
        }
    };
    let attempt = match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let no_retry = response
                .headers()
                .get("x-slack-no-retry")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim() == "1");
            match response.text().await {
                Ok(text) => Attempt {
                    status: Some(status),
                    failure: (!(200..300).contains(&status)).then(|| "http_error".to_string()),
                    no_retry,
                    body: text,
                },
                Err(e) => Attempt { status: None, failure: Some(failure_of(&e).into()), no_retry, body: String::new() },
            }
        }
        Err(e) => Attempt { status: None, failure: Some(failure_of(&e).into()), no_retry: false, body: String::new() },
    };
    let event_id = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("event_id").and_then(Value::as_str).map(String::from));
    twin.lock().http_deliveries.push(HttpDelivery {
        url: url.into(),
        event_id,
        retry_num: retry,
        retry_reason: (retry > 0).then(|| reason.unwrap_or("unknown_error").to_string()),
        timestamp,
        signature,
        body: body.into(),
        status: attempt.status,
        failure: attempt.failure.clone(),
    });
    attempt
}

/// Delivers `body` until a 2xx, `X-Slack-No-Retry: 1` or the last retry; the first attempt's
/// status goes to `first`.
async fn http_chain(twin: Shared, url: String, body: String, mut first: Option<oneshot::Sender<Option<u16>>>) {
    let mut retry = 0u32;
    let mut reason: Option<String> = None;
    loop {
        let attempt = http_attempt(&twin, &url, &body, retry, reason.as_deref(), Signing::Good).await;
        if let Some(tx) = first.take() {
            let _ = tx.send(attempt.status);
        }
        let Some(failure) = attempt.failure else { return };
        if attempt.no_retry {
            return;
        }
        let Some(delay) = twin.lock().http_retry_delays.get(retry as usize).copied() else { return };
        tokio::time::sleep(delay).await;
        if twin.closed.load(Ordering::SeqCst) {
            return;
        }
        retry += 1;
        reason = Some(failure);
    }
}

/// Whether a `url_verification` answer carries the challenge (plain text, form or JSON).
fn challenge_answered(body: &str, challenge: &str) -> bool {
    let b = body.trim();
    b == challenge
        || serde_json::from_str::<Value>(b)
            .ok()
            .and_then(|v| v.get("challenge").and_then(Value::as_str).map(String::from))
            == Some(challenge.to_string())
        || url_decode_pairs(b).iter().any(|(k, v)| k == "challenge" && v == challenge)
}

// ---------------------------------------------------------------------------------------------
// The server and its test-facing API
// ---------------------------------------------------------------------------------------------

/// A running twin. Dropping it stops the server, closes connections and stops deliveries.
pub struct SlackServer {
    addr: SocketAddr,
    twin: Shared,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for SlackServer {
    fn drop(&mut self) {
        self.twin.closed.store(true, Ordering::SeqCst);
        self.twin.lock().drop_sockets();
        for t in &self.tasks {
            t.abort();
        }
        for t in self.twin.tasks.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
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
        assert!(
            Instant::now() < deadline,
            "slack twin: expected {n} {what} within {timeout:?}, got {}: {items:#?}",
            items.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl SlackServer {
    /// Starts a twin on 127.0.0.1 with a random port that accepts `bot_token` (`xoxb-…`) on the
    /// Web API, `app_token` (`xapp-…`) on `apps.connections.open`, and signs Events API
    /// requests with `signing_secret`.
    pub async fn start(bot_token: &str, app_token: &str, signing_secret: &str) -> SlackServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind slack twin");
        let addr = listener.local_addr().expect("local addr");
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::limited(2))
            .build()
            .expect("slack twin http client");
        let twin = Arc::new(Twin {
            inner: Mutex::new(Inner::new(addr, bot_token, app_token, signing_secret)),
            notify: Notify::new(),
            http,
            tasks: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        });
        let app = Router::new()
            .route("/api/{method}", any(api))
            .route("/link", get(link))
            .route("/link/", get(link))
            .fallback(|| async { plain(404, "Not Found") })
            .with_state(twin.clone());
        let serve = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let engine = tokio::spawn(engine(twin.clone()));
        SlackServer { addr, twin, tasks: vec![serve, engine] }
    }

    /// `http://127.0.0.1:<port>`; the Web API is under `{base_url}/api/`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `{base_url}/api/{method}`.
    pub fn api_url(&self, method: &str) -> String {
        format!("{}/api/{method}", self.base_url())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bot's user id (`U…`), as in `auth.test` `user_id` and in mentions `<@U…>`.
    pub fn bot_user_id(&self) -> &'static str {
        BOT_USER_ID
    }

    /// The bot's `bot_id` (`B…`).
    pub fn bot_id(&self) -> &'static str {
        BOT_ID
    }

    pub fn team_id(&self) -> &'static str {
        TEAM_ID
    }

    pub fn app_id(&self) -> &'static str {
        APP_ID
    }

    /// The (deprecated) verification `token` carried by callbacks.
    pub fn verification_token(&self) -> &'static str {
        VERIFICATION_TOKEN
    }

    // --- Setup -----------------------------------------------------------------------------------

    /// Adds a conversation (`name` with or without `#`).
    pub fn add_channel(&self, id: &str, name: &str, kind: ChannelKind) {
        self.twin.lock().add_channel(id, name, kind, None);
    }

    /// Registers a user.
    pub fn add_user(&self, id: &str, name: &str) {
        self.twin.lock().users.insert(id.into(), name.into());
    }

    /// The DM with `user_id` (registered if unknown), created on first use; returns its `D…` id.
    pub fn add_im(&self, user_id: &str) -> String {
        let mut g = self.twin.lock();
        g.users.entry(user_id.into()).or_insert_with(|| format!("user-{}", user_id.to_ascii_lowercase()));
        g.im_for(user_id)
    }

    /// A stored message (`user`, `text`, `bot`, `reactions`), inbound or posted.
    pub fn message(&self, channel: &str, ts: &str) -> Option<Value> {
        let g = self.twin.lock();
        let m = g.channels.get(channel)?.messages.get(ts)?;
        Some(json!({"user": m.user, "text": m.text, "bot": m.from_bot, "reactions": m.reactions}))
    }

    /// How long an envelope waits for its acknowledgement before it is redelivered (3 s).
    pub fn set_ack_timeout(&self, timeout: Duration) {
        self.twin.lock().ack_timeout = timeout;
    }

    /// The delay before each redelivery of an unacknowledged envelope; its length is the number
    /// of retries (default: 0 s, 60 s, 300 s).
    pub fn set_socket_retry_delays(&self, delays: Vec<Duration>) {
        self.twin.lock().socket_retry_delays = delays;
    }

    /// How long an HTTP delivery waits for the receiver's answer (3 s).
    pub fn set_http_timeout(&self, timeout: Duration) {
        self.twin.lock().http_timeout = timeout;
    }

    /// The delay before each HTTP retry; its length is the number of retries (0 s, 60 s, 300 s).
    pub fn set_http_retry_delays(&self, delays: Vec<Duration>) {
        self.twin.lock().http_retry_delays = delays;
    }

    /// With a URL, pushed events are POSTed there instead of over Socket Mode, and open
    /// connections get a `link_disabled` disconnect; `None` turns Socket Mode back on.
    pub fn set_request_url(&self, url: Option<&str>) {
        let mut g = self.twin.lock();
        g.request_url = url.map(String::from);
        if url.is_some() {
            let frame = Inner::disconnect_frame("link_disabled");
            for s in &mut g.sockets {
                let _ = s.tx.send(Out::Text(frame.clone()));
                let _ = s.tx.send(Out::Close(1000, String::new()));
                s.usable = false;
            }
        }
        drop(g);
        self.twin.notify.notify_one();
    }

    /// How long a connection told `warning` stays open (10 s).
    pub fn set_warning_grace(&self, grace: Duration) {
        self.twin.lock().warning_grace = grace;
    }

    /// When on, each successful `chat.postMessage` is also pushed back as a message event from
    /// the bot (`bot_id`, `subtype: "bot_message"`), as Slack does for subscribed conversations.
    pub fn set_echo_own_messages(&self, on: bool) {
        self.twin.lock().echo_own = on;
    }

    // --- Pushing what users do -------------------------------------------------------------------

    fn push(&self, build: impl FnOnce(&mut Inner) -> Value) -> Pushed {
        let pushed = {
            let mut g = self.twin.lock();
            let event = build(&mut g);
            g.enqueue(event)
        };
        self.twin.notify.notify_one();
        pushed
    }

    /// A `message` event from `user` in `channel` (a reply when `thread_ts` is given). Panics if
    /// the channel was not added; unknown users are registered.
    pub fn push_message(&self, channel: &str, user: &str, text: &str, thread_ts: Option<&str>) -> Pushed {
        self.push(|g| g.user_event("message", channel, user, text, thread_ts))
    }

    /// An `app_mention` event; `<@BOT_USER_ID> ` is put in front of `text` unless it mentions the
    /// bot already.
    pub fn push_mention(&self, channel: &str, user: &str, text: &str, thread_ts: Option<&str>) -> Pushed {
        let mention = format!("<@{BOT_USER_ID}>");
        let text = if text.contains(&mention) { text.to_string() } else { format!("{mention} {text}") };
        self.push(|g| g.user_event("app_mention", channel, user, &text, thread_ts))
    }

    /// A message event from the bot itself (`bot_id`, `subtype: "bot_message"`).
    pub fn push_bot_message(&self, channel: &str, text: &str, thread_ts: Option<&str>) -> Pushed {
        self.push(|g| {
            let ts = g.next_ts();
            g.store(channel, &ts, BOT_USER_ID, true, text, thread_ts);
            g.bot_event(channel, text, &ts, thread_ts)
        })
    }

    /// `event` (the inner event) exactly as given, wrapped in a callback with a new `event_id`; a
    /// whole `event_callback` body is sent as it is.
    pub fn push_raw_event(&self, event: Value) -> Pushed {
        self.push(|_| event)
    }

    /// A text frame sent as it is to the next connection (not an envelope: nothing to ack).
    pub fn push_raw_frame(&self, text: &str) {
        self.twin.lock().raw_frames.push_back(text.into());
        self.twin.notify.notify_one();
    }

    // --- Events API over HTTP --------------------------------------------------------------------

    /// POSTs the callback around `event` (see [`SlackServer::push_raw_event`]) to `url`, signed;
    /// returns the first attempt's status (`None` without an answer in time). Failed deliveries
    /// are retried in the background.
    pub async fn deliver_http(&self, url: &str, event: Value) -> Option<u16> {
        let (_, payload) = self.twin.lock().callback(event);
        let (tx, rx) = oneshot::channel();
        let handle = tokio::spawn(http_chain(self.twin.clone(), url.into(), payload.to_string(), Some(tx)));
        self.twin.track(handle);
        rx.await.ok().flatten()
    }

    async fn deliver_once(&self, url: &str, event: Value, signing: Signing) -> Option<u16> {
        let (_, payload) = self.twin.lock().callback(event);
        http_attempt(&self.twin, url, &payload.to_string(), 0, None, signing).await.status
    }

    /// One delivery whose signature was made with the wrong secret; no retries.
    pub async fn deliver_http_bad_signature(&self, url: &str, event: Value) -> Option<u16> {
        self.deliver_once(url, event, Signing::Bad).await
    }

    /// One delivery correctly signed for a timestamp 10 minutes old; no retries.
    pub async fn deliver_http_stale(&self, url: &str, event: Value) -> Option<u16> {
        self.deliver_once(url, event, Signing::Stale).await
    }

    /// Sends a signed `url_verification`; true when the answer is a 200 carrying the challenge.
    pub async fn url_verification(&self, url: &str) -> bool {
        let challenge = {
            let mut g = self.twin.lock();
            format!("{}{}", g.base36(24), g.base36(24)).to_ascii_lowercase()
        };
        let body = json!({"token": VERIFICATION_TOKEN, "challenge": challenge, "type": "url_verification"}).to_string();
        let attempt = http_attempt(&self.twin, url, &body, 0, None, Signing::Good).await;
        attempt.status == Some(200) && challenge_answered(&attempt.body, &challenge)
    }

    // --- Inspection ------------------------------------------------------------------------------

    /// Successful `chat.postMessage` calls, in order.
    pub fn posted(&self) -> Vec<Posted> {
        self.twin.lock().posted.clone()
    }

    /// Waits until at least `n` messages were posted; panics with what was received on timeout.
    pub async fn wait_posted(&self, n: usize, timeout: Duration) -> Vec<Posted> {
        let deadline = Instant::now() + timeout;
        loop {
            let posted = self.posted();
            if posted.len() >= n {
                return posted;
            }
            if Instant::now() >= deadline {
                let calls: Vec<String> = self
                    .requests()
                    .iter()
                    .map(|r| format!("{} {} -> {} {:?}", r.http_method, r.method, r.status, r.error))
                    .collect();
                panic!(
                    "slack twin: expected {n} posted messages within {timeout:?}, got {}: {posted:#?}\ncalls received: {calls:#?}",
                    posted.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn updates(&self) -> Vec<Update> {
        self.twin.lock().updates.clone()
    }

    pub fn reactions(&self) -> Vec<ReactionAdded> {
        self.twin.lock().reactions.clone()
    }

    /// Envelope ids acknowledged, in order (unknown ids included).
    pub fn acks(&self) -> Vec<String> {
        self.twin.lock().acks.clone()
    }

    /// Waits until at least `n` acknowledgements were received; panics on timeout.
    pub async fn wait_acks(&self, n: usize, timeout: Duration) -> Vec<String> {
        wait_until("acknowledgements", n, timeout, || self.acks()).await
    }

    /// Acknowledgements received while the socket was stalled (ignored).
    pub fn ignored_acks(&self) -> Vec<String> {
        self.twin.lock().ignored_acks.clone()
    }

    /// Every Web API call, in order of answer.
    pub fn requests(&self) -> Vec<ApiRequest> {
        self.twin.lock().requests.clone()
    }

    /// WebSocket connections accepted so far.
    pub fn connections_opened(&self) -> usize {
        self.twin.lock().connections_opened
    }

    /// Upgrades refused for a missing, unknown or used ticket.
    pub fn refused_connections(&self) -> usize {
        self.twin.lock().refused_connections
    }

    /// Connections open now.
    pub fn open_sockets(&self) -> usize {
        self.twin.lock().sockets.len()
    }

    /// Waits until at least `n` connections were accepted in all; panics on timeout.
    pub async fn wait_connections(&self, n: usize, timeout: Duration) {
        wait_until("connections", n, timeout, || vec![(); self.connections_opened()]).await;
    }

    /// Envelopes sent again after an acknowledgement timeout, in order.
    pub fn redeliveries(&self) -> Vec<Redelivery> {
        self.twin.lock().redeliveries.clone()
    }

    /// Every `events_api` envelope sent (first deliveries, redeliveries, duplicates).
    pub fn envelopes_sent(&self) -> Vec<Value> {
        self.twin.lock().envelopes.clone()
    }

    /// Events waiting for a connection or for their acknowledgement.
    pub fn pending_events(&self) -> usize {
        let g = self.twin.lock();
        g.queue.len() + g.in_flight.len()
    }

    /// `event_id`s given up after their last redelivery went unacknowledged.
    pub fn dropped_events(&self) -> Vec<String> {
        self.twin.lock().dropped.clone()
    }

    /// Every Events API request over HTTP, in order.
    pub fn http_deliveries(&self) -> Vec<HttpDelivery> {
        self.twin.lock().http_deliveries.clone()
    }

    /// Waits until at least `n` HTTP deliveries were attempted; panics on timeout.
    pub async fn wait_http_deliveries(&self, n: usize, timeout: Duration) -> Vec<HttpDelivery> {
        wait_until("HTTP deliveries", n, timeout, || self.http_deliveries()).await
    }

    /// Frames from the app that were not acknowledgements.
    pub fn client_frames(&self) -> Vec<String> {
        self.twin.lock().client_frames.clone()
    }

    // --- Faults ----------------------------------------------------------------------------------

    /// Closes every connection at the TCP level, without a close frame.
    pub fn drop_socket(&self) {
        self.twin.lock().drop_sockets();
    }

    /// While on, connections get no frames and acknowledgements are ignored.
    pub fn stall_socket(&self, on: bool) {
        self.twin.lock().stalled = on;
        self.twin.notify.notify_one();
    }

    /// Sends `{"type":"disconnect","reason":reason,…}` to every connection, then closes it: at
    /// once, or after the warning grace for `warning`.
    pub fn send_disconnect(&self, reason: &str) {
        let mut g = self.twin.lock();
        let frame = Inner::disconnect_frame(reason);
        let grace = g.warning_grace;
        for s in &mut g.sockets {
            let _ = s.tx.send(Out::Text(frame.clone()));
            s.closing = true;
            if reason == "warning" {
                let tx = s.tx.clone();
                let handle = tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    let _ = tx.send(Out::Close(1000, String::new()));
                });
                self.twin.track(handle);
            } else {
                s.usable = false;
                let _ = s.tx.send(Out::Close(1000, String::new()));
            }
        }
    }

    /// The next call of `method` (`*` for any) answers `fail`; queued, in order.
    pub fn fail_next(&self, method: &str, fail: impl Into<Fail>) {
        self.twin.lock().scripted.push_back((method.into(), fail.into()));
    }

    /// The next successful call of `method` takes effect (a post is stored and counted), but its
    /// answer is cut off: the connection breaks halfway through the body (the client may see the
    /// break before or after the status line, as hyper flushes).
    pub fn cut_next_answer(&self, method: &str) {
        self.twin.lock().cut_answers.push(method.into());
    }

    /// At most `per_minute` calls of `method` within any minute (0: no limit); the excess is 429.
    pub fn set_rate_limit(&self, method: &str, per_minute: u32) {
        let mut g = self.twin.lock();
        g.limits.insert(method.into(), per_minute);
        g.calls.remove(method);
    }

    /// At most `per_second` `chat.postMessage` calls per channel within any second (0: none).
    pub fn set_channel_post_limit(&self, per_second: u32) {
        let mut g = self.twin.lock();
        g.channel_post_limit = per_second;
        g.channel_posts.clear();
    }

    /// The next envelope is sent twice, the second time with a new `envelope_id`.
    pub fn duplicate_next_envelope(&self) {
        self.twin.lock().duplicate_next = true;
    }

    /// The next envelope is replaced by a frame that is not JSON (and redelivered when unacked).
    pub fn malformed_next_frame(&self) {
        self.twin.lock().malformed_next = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    const BOT: &str = "xoxb-1111-2222-twinbottoken";
    const APP: &str = "xapp-1-A07TWINAPP1-3333-twinapptoken";
    const SECRET: &str = "twin-signing-secret-0001";
    const SECS: Duration = Duration::from_secs(5);

    type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

    fn client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().expect("client")
    }

    async fn twin() -> SlackServer {
        let slack = SlackServer::start(BOT, APP, SECRET).await;
        slack.add_channel("C0GENERAL1", "general", ChannelKind::Public);
        slack.add_user("U0ADA00001", "ada");
        slack
    }

    /// POSTs `body` as JSON (`charset=utf-8`) with `token` as bearer: `(status, headers, body)`.
    async fn call(slack: &SlackServer, token: Option<&str>, method: &str, body: Value) -> (u16, HeaderMap, Value) {
        let mut req = client()
            .post(slack.api_url(method))
            .header("content-type", "application/json; charset=utf-8")
            .body(body.to_string());
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, headers, r.json().await.expect("a JSON body"))
    }

    async fn error(slack: &SlackServer, token: Option<&str>, method: &str, body: Value) -> String {
        let (status, _, b) = call(slack, token, method, body).await;
        assert_eq!((status, &b["ok"]), (200, &json!(false)), "{method} should fail: {b}");
        b["error"].as_str().expect("an error").to_string()
    }

    async fn connect_url(slack: &SlackServer) -> String {
        let (_, _, b) = call(slack, Some(APP), "apps.connections.open", json!({})).await;
        b["url"].as_str().expect("a url").to_string()
    }

    async fn connect(slack: &SlackServer) -> Ws {
        let url = connect_url(slack).await;
        tokio_tungstenite::connect_async(url.as_str()).await.expect("connect").0
    }

    /// The next data or close frame.
    async fn next_frame(ws: &mut Ws) -> Option<Result<WsMessage, tokio_tungstenite::tungstenite::Error>> {
        loop {
            let frame = tokio::time::timeout(SECS, ws.next()).await.expect("a frame in time");
            if !matches!(frame, Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_)))) {
                return frame;
            }
        }
    }

    async fn next_text(ws: &mut Ws) -> String {
        match next_frame(ws).await {
            Some(Ok(WsMessage::Text(t))) => t.as_str().to_string(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    async fn next_json(ws: &mut Ws) -> Value {
        let text = next_text(ws).await;
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    }

    /// Connects and reads the hello.
    async fn connected(slack: &SlackServer) -> Ws {
        let mut ws = connect(slack).await;
        assert_eq!(next_json(&mut ws).await["type"], "hello");
        ws
    }

    async fn ack(ws: &mut Ws, envelope_id: &Value) {
        ws.send(WsMessage::text(json!({"envelope_id": envelope_id}).to_string())).await.expect("ack");
    }

    async fn assert_silent(ws: &mut Ws, for_: Duration) {
        if let Ok(frame) = tokio::time::timeout(for_, ws.next()).await {
            panic!("expected no frame, got {frame:?}");
        }
    }

    #[tokio::test]
    async fn slack_socket_mode_hello_envelope_and_ack() {
        let slack = twin().await;
        let url = connect_url(&slack).await;
        assert!(url.starts_with(&format!("ws://{}/link/?ticket=", slack.addr())), "{url}");
        let mut ws = tokio_tungstenite::connect_async(url.as_str()).await.expect("connect").0;
        let hello = next_json(&mut ws).await;
        assert_eq!(hello["type"], "hello");
        assert_eq!(hello["num_connections"], 1);
        assert_eq!(hello["connection_info"]["app_id"], slack.app_id());
        assert!(hello["debug_info"]["approximate_connection_time"].is_u64());
        // A ticket opens one connection.
        assert!(tokio_tungstenite::connect_async(url.as_str()).await.is_err());
        assert_eq!(slack.refused_connections(), 1);

        let dm = slack.add_im("U0ADA00001");
        slack.set_ack_timeout(Duration::from_millis(300));
        let pushed = slack.push_message(&dm, "U0ADA00001", "hello bot", None);
        let envelope = next_json(&mut ws).await;
        assert_eq!(envelope["envelope_id"], pushed.envelope_id.as_str());
        assert_eq!(envelope["type"], "events_api");
        assert_eq!(envelope["accepts_response_payload"], false);
        assert_eq!((envelope["retry_attempt"].as_u64(), envelope["retry_reason"].as_str()), (Some(0), Some("")));
        let payload = &envelope["payload"];
        assert_eq!(payload["type"], "event_callback");
        assert_eq!(payload["team_id"], slack.team_id());
        assert_eq!(payload["api_app_id"], slack.app_id());
        assert_eq!(payload["event_id"], pushed.event_id.as_str());
        assert!(payload["event_time"].is_i64() && payload["token"].is_string());
        let event = &payload["event"];
        assert_eq!(event["type"], "message");
        assert_eq!((event["channel"].as_str(), event["channel_type"].as_str()), (Some(dm.as_str()), Some("im")));
        assert_eq!((event["user"].as_str(), event["text"].as_str()), (Some("U0ADA00001"), Some("hello bot")));
        assert_eq!(event["ts"], pushed.ts.as_str());
        assert_eq!(event["event_ts"], pushed.ts.as_str());
        assert!(is_ts(&pushed.ts));

        ack(&mut ws, &envelope["envelope_id"]).await;
        assert_eq!(slack.wait_acks(1, SECS).await, vec![pushed.envelope_id.clone()]);
        assert_silent(&mut ws, Duration::from_millis(600)).await;
        assert!(slack.redeliveries().is_empty());
        assert_eq!(slack.pending_events(), 0);

        // A mention in a thread, pushed while nothing is connected, waits for the next connection.
        drop(ws);
        let parent = slack.push_message("C0GENERAL1", "U0ADA00001", "parent", None);
        let mention = slack.push_mention("C0GENERAL1", "U0ADA00001", "what's up?", Some(&parent.ts));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut ws = connected(&slack).await;
        let first = next_json(&mut ws).await;
        ack(&mut ws, &first["envelope_id"]).await;
        let second = next_json(&mut ws).await;
        ack(&mut ws, &second["envelope_id"]).await;
        let event = &second["payload"]["event"];
        assert_eq!(event["type"], "app_mention");
        assert_eq!(event["text"], format!("<@{}> what's up?", slack.bot_user_id()));
        assert_eq!(event["thread_ts"], parent.ts.as_str());
        assert_eq!(event["ts"], mention.ts.as_str());
        assert_eq!(slack.connections_opened(), 2);
        slack.wait_acks(3, SECS).await;
    }

    #[tokio::test]
    async fn slack_unacked_envelopes_are_redelivered() {
        let slack = twin().await;
        slack.set_ack_timeout(Duration::from_millis(200));
        slack.set_socket_retry_delays(vec![Duration::ZERO, Duration::from_millis(50)]);
        let mut ws = connected(&slack).await;
        let pushed = slack.push_message("C0GENERAL1", "U0ADA00001", "anyone?", None);
        let first = next_json(&mut ws).await;
        let started = Instant::now();
        let second = next_json(&mut ws).await;
        assert!(started.elapsed() >= Duration::from_millis(100), "redelivered after {:?}", started.elapsed());
        assert_eq!(second["payload"]["event_id"], pushed.event_id.as_str());
        assert_eq!(second["payload"], first["payload"]);
        assert_ne!(second["envelope_id"], first["envelope_id"]);
        assert_eq!((second["retry_attempt"].as_u64(), second["retry_reason"].as_str()), (Some(1), Some("timeout")));
        let third = next_json(&mut ws).await;
        assert_eq!(third["retry_attempt"], 2);
        ack(&mut ws, &third["envelope_id"]).await;
        slack.wait_acks(1, SECS).await;
        assert_silent(&mut ws, Duration::from_millis(500)).await;
        let redeliveries = slack.redeliveries();
        assert_eq!(redeliveries.len(), 2);
        assert_eq!(redeliveries[0].previous_envelope_id, pushed.envelope_id);
        assert_eq!(redeliveries[1].envelope_id, third["envelope_id"].as_str().expect("id"));
        assert!(slack.dropped_events().is_empty());

        // An event whose retries all go unacknowledged is given up.
        let lost = slack.push_message("C0GENERAL1", "U0ADA00001", "lost", None);
        for attempt in 0..3 {
            assert_eq!(next_json(&mut ws).await["retry_attempt"], attempt);
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(slack.dropped_events(), vec![lost.event_id]);
        assert_silent(&mut ws, Duration::from_millis(300)).await;

        // After an abrupt drop the unacknowledged envelope comes back on the next connection.
        slack.set_ack_timeout(Duration::from_millis(300));
        slack.push_message("C0GENERAL1", "U0ADA00001", "again", None);
        let sent = next_json(&mut ws).await;
        slack.drop_socket();
        let end = next_frame(&mut ws).await;
        assert!(!matches!(end, Some(Ok(WsMessage::Close(_)))), "no close frame on a drop: {end:?}");
        let mut ws = connected(&slack).await;
        let again = next_json(&mut ws).await;
        assert_eq!(again["payload"]["event_id"], sent["payload"]["event_id"]);
        assert_eq!(again["retry_attempt"], 1);
    }

    #[tokio::test]
    async fn slack_tokens_of_the_wrong_type_are_refused() {
        let slack = twin().await;
        assert_eq!(error(&slack, Some(BOT), "apps.connections.open", json!({})).await, "not_allowed_token_type");
        let post = json!({"channel": "C0GENERAL1", "text": "hi"});
        assert_eq!(error(&slack, Some(APP), "chat.postMessage", post.clone()).await, "not_allowed_token_type");
        assert_eq!(error(&slack, Some(APP), "auth.test", json!({})).await, "not_allowed_token_type");
        assert_eq!(error(&slack, None, "chat.postMessage", post.clone()).await, "not_authed");
        assert_eq!(error(&slack, Some("xoxb-someone-else"), "chat.postMessage", post.clone()).await, "invalid_auth");
        // A token in a JSON body is not read; as a form parameter it is.
        let mut in_json = post.clone();
        in_json["token"] = BOT.into();
        assert_eq!(error(&slack, None, "chat.postMessage", in_json).await, "not_authed");
        let form = format!("token={BOT}&channel=C0GENERAL1&text=hi+there");
        let r = client()
            .post(slack.api_url("chat.postMessage"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .expect("form");
        let b: Value = r.json().await.expect("json");
        assert_eq!(b["ok"], true, "{b}");
        assert_eq!(b["message"]["text"], "hi there");
        // apps.connections.open reads the header only.
        let r = client()
            .post(slack.api_url("apps.connections.open"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={APP}"))
            .send()
            .await
            .expect("form");
        assert_eq!(r.json::<Value>().await.expect("json")["error"], "not_authed");
        let (_, _, unknown) = call(&slack, Some(BOT), "chat.flyAway", json!({})).await;
        assert_eq!(
            (unknown["error"].as_str(), unknown["req_method"].as_str()),
            (Some("unknown_method"), Some("chat.flyAway"))
        );

        let (status, _, me) = call(&slack, Some(BOT), "auth.test", json!({})).await;
        assert_eq!(status, 200);
        assert_eq!(me["ok"], true);
        assert_eq!((me["user_id"].as_str(), me["bot_id"].as_str()), (Some(slack.bot_user_id()), Some(slack.bot_id())));
        assert_eq!(me["team_id"], slack.team_id());
        assert!(
            me["url"].as_str().is_some_and(|u| u.starts_with("https://"))
                && me["team"].is_string()
                && me["user"].is_string()
        );

        let kinds: Vec<(String, TokenKind, bool, Option<String>)> =
            slack.requests().into_iter().map(|r| (r.method, r.token, r.token_valid, r.error)).collect();
        assert_eq!(
            kinds[0],
            ("apps.connections.open".into(), TokenKind::Bot, true, Some("not_allowed_token_type".into()))
        );
        assert_eq!(kinds[1].1, TokenKind::App);
        assert_eq!(kinds[3], ("chat.postMessage".into(), TokenKind::Missing, false, Some("not_authed".into())));
        assert_eq!(kinds[4].1, TokenKind::Bot);
        assert!(!kinds[4].2);
        assert!(slack.requests().iter().all(|r| r.params.get("token").is_none()));
    }

    /// A receiver that checks Slack's signature with its own HMAC and the five-minute window, and
    /// answers what its script says: `(status, delay, X-Slack-No-Retry)`, then 200.
    #[derive(Clone, Default)]
    struct Receiver {
        got: Arc<Mutex<Vec<(HeaderMap, String, bool)>>>,
        script: Arc<Mutex<VecDeque<(u16, Duration, bool)>>>,
        echo_challenge: bool,
    }

    fn independent_signature(secret: &str, ts: &str, body: &str) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        let tag = hmac::sign(&key, format!("v0:{ts}:{body}").as_bytes());
        format!("v0={}", tag.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>())
    }

    fn verifies(headers: &HeaderMap, body: &str) -> bool {
        let get = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let ts = get("x-slack-request-timestamp");
        let fresh = ts.parse::<i64>().is_ok_and(|t| (now_unix() - t).abs() <= 300);
        fresh && get("x-slack-signature") == independent_signature(SECRET, &ts, body)
    }

    async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: String) -> Response {
        let ok = verifies(&headers, &body);
        r.got.lock().expect("lock").push((headers, body.clone(), ok));
        let (status, delay, no_retry) =
            r.script.lock().expect("lock").pop_front().unwrap_or((200, Duration::ZERO, false));
        tokio::time::sleep(delay).await;
        if !ok {
            return plain(401, "bad signature");
        }
        let mut b = Response::builder().status(status);
        if no_retry {
            b = b.header("x-slack-no-retry", "1");
        }
        let challenge =
            serde_json::from_str::<Value>(&body).ok().and_then(|v| v["challenge"].as_str().map(String::from));
        match challenge {
            Some(c) if r.echo_challenge => b.header("content-type", "text/plain").body(Body::from(c)),
            _ => b.body(Body::empty()),
        }
        .unwrap_or_default()
    }

    async fn receiver(echo_challenge: bool) -> (String, Receiver) {
        let r = Receiver { echo_challenge, ..Receiver::default() };
        let app = Router::new().route("/slack/events", axum::routing::post(receive)).with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/slack/events", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (url, r)
    }

    #[tokio::test]
    async fn slack_signatures_verify_and_tampered_bodies_do_not() {
        // The worked example of "Verifying requests from Slack".
        let doc_body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let doc_sig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(slack_signature("8f742231b10e8888abcd99yyyzzz85a5", "1531420618", doc_body.as_bytes()), doc_sig);
        assert_eq!(independent_signature("8f742231b10e8888abcd99yyyzzz85a5", "1531420618", doc_body), doc_sig);

        let slack = twin().await;
        let (url, r) = receiver(true).await;
        let event = json!({"type": "message", "channel": "C0GENERAL1", "user": "U0ADA00001", "text": "hi", "ts": "1700000000.000100"});
        assert_eq!(slack.deliver_http(&url, event.clone()).await, Some(200));
        assert_eq!(slack.deliver_http_bad_signature(&url, event.clone()).await, Some(401));
        assert_eq!(slack.deliver_http_stale(&url, event.clone()).await, Some(401));
        let got = r.got.lock().expect("lock").clone();
        assert_eq!(got.iter().map(|g| g.2).collect::<Vec<_>>(), vec![true, false, false]);
        let (headers, body, _) = &got[0];
        assert_eq!(headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
        assert!(headers.get("x-slack-retry-num").is_none());
        let callback: Value = serde_json::from_str(body).expect("json");
        assert_eq!(
            (callback["type"].as_str(), callback["event"]["text"].as_str()),
            (Some("event_callback"), Some("hi"))
        );
        // The stale one is correctly signed, only old.
        let (stale_headers, stale_body, _) = &got[2];
        let stale_ts = stale_headers["x-slack-request-timestamp"].to_str().expect("ts");
        assert!(now_unix() - stale_ts.parse::<i64>().expect("number") > 300);
        assert_eq!(
            stale_headers["x-slack-signature"].to_str().expect("sig"),
            independent_signature(SECRET, stale_ts, stale_body)
        );
        // The same signature over a changed body does not verify.
        let tampered = body.replace("\"hi\"", "\"hj\"");
        assert_ne!(&tampered, body);
        assert!(verifies(headers, body) && !verifies(headers, &tampered));
        let d = &slack.http_deliveries()[0];
        assert_eq!(d.signature, slack_signature(SECRET, &d.timestamp, d.body.as_bytes()));

        assert!(slack.url_verification(&url).await);
        let (silent_url, _) = receiver(false).await;
        assert!(!slack.url_verification(&silent_url).await);
        let verification = r.got.lock().expect("lock").last().expect("one").1.clone();
        let v: Value = serde_json::from_str(&verification).expect("json");
        assert_eq!(v["type"], "url_verification");
        assert!(v["challenge"].as_str().is_some_and(|c| c.len() >= 32) && v["token"].is_string());
    }

    #[tokio::test]
    async fn slack_http_deliveries_are_retried_with_retry_headers() {
        let slack = twin().await;
        slack.set_http_retry_delays(vec![Duration::from_millis(20); 3]);
        slack.set_http_timeout(Duration::from_millis(300));
        let (url, r) = receiver(false).await;
        r.script.lock().expect("lock").extend([
            (500, Duration::ZERO, false),
            (200, Duration::from_millis(600), false),
            (200, Duration::ZERO, false),
        ]);
        let event = json!({"type": "message", "channel": "C0GENERAL1", "user": "U0ADA00001", "text": "retry me", "ts": "1700000000.000200"});
        assert_eq!(slack.deliver_http(&url, event).await, Some(500));
        let d = slack.wait_http_deliveries(3, SECS).await;
        let reasons: Vec<(u32, Option<&str>)> = d.iter().map(|d| (d.retry_num, d.retry_reason.as_deref())).collect();
        assert_eq!(reasons, vec![(0, None), (1, Some("http_error")), (2, Some("http_timeout"))]);
        assert!(d.iter().all(|x| x.event_id == d[0].event_id && x.body == d[0].body));
        assert_eq!(d[1].failure.as_deref(), Some("http_timeout"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let got = r.got.lock().expect("lock").clone();
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|g| g.2), "every attempt is signed anew");
        assert_eq!(got[2].0["x-slack-retry-num"], "2");
        assert_eq!(got[2].0["x-slack-retry-reason"], "http_timeout");

        // X-Slack-No-Retry: 1 stops the retries.
        r.script.lock().expect("lock").push_back((503, Duration::ZERO, true));
        let no_retry = json!({"type": "message", "text": "once", "ts": "1700000000.000300"});
        assert_eq!(slack.deliver_http(&url, no_retry).await, Some(503));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(slack.http_deliveries().len(), 4);

        // With a request URL, pushes are POSTed instead of sent over Socket Mode.
        let mut ws = connected(&slack).await;
        slack.set_request_url(Some(&url));
        assert_eq!(
            next_json(&mut ws).await,
            json!({"type": "disconnect", "reason": "link_disabled", "debug_info": {"host": HOST}})
        );
        let pushed = slack.push_message("C0GENERAL1", "U0ADA00001", "over http", None);
        let d = slack.wait_http_deliveries(5, SECS).await;
        assert_eq!(d[4].event_id.as_deref(), Some(pushed.event_id.as_str()));
        assert_eq!(d[4].status, Some(200));
        assert!(slack.envelopes_sent().is_empty());
        // Nothing listens here: connection_failed, then retried.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let dead = format!("http://{}/x", closed.local_addr().expect("addr"));
        drop(closed);
        assert_eq!(slack.deliver_http(&dead, json!({"type": "message", "text": "x"})).await, None);
        let d = slack.wait_http_deliveries(7, SECS).await;
        assert_eq!(
            (d[5].failure.as_deref(), d[6].retry_reason.as_deref()),
            (Some("connection_failed"), Some("connection_failed"))
        );
    }

    #[tokio::test]
    async fn slack_history_pages_threads_and_metadata_like_the_server() {
        let slack = twin().await;
        let meta = |k: &str| json!({"event_type": "clawline_reply", "event_payload": {"key": k}});
        let post = |text: &str, thread: Option<&str>, m: Option<Value>| {
            let mut b = json!({"channel": "C0GENERAL1", "text": text});
            if let Some(t) = thread {
                b["thread_ts"] = t.into();
            }
            if let Some(m) = m {
                b["metadata"] = m;
            }
            b
        };
        let parent = slack.push_message("C0GENERAL1", "U0ADA00001", "question", None).ts;
        let (_, _, first) = call(&slack, Some(BOT), "chat.postMessage", post("one", None, Some(meta("a")))).await;
        assert_eq!(first["message"]["metadata"], meta("a"), "the answer echoes the metadata");
        call(&slack, Some(BOT), "chat.postMessage", post("two", None, None)).await;
        call(&slack, Some(BOT), "chat.postMessage", post("in thread", Some(&parent), Some(meta("b")))).await;
        assert_eq!(slack.posted()[0].metadata, Some(meta("a")));

        // Metadata is checked.
        let bad = |m: Value| post("x", None, Some(m));
        assert_eq!(error(&slack, Some(BOT), "chat.postMessage", bad(json!("text"))).await, "invalid_metadata_format");
        assert_eq!(
            error(&slack, Some(BOT), "chat.postMessage", bad(json!({"event_payload": {}}))).await,
            "invalid_metadata_schema"
        );
        assert_eq!(
            error(&slack, Some(BOT), "chat.postMessage", bad(json!({"event_type": "t", "event_payload": 1}))).await,
            "invalid_metadata_schema"
        );

        // History: top level, newest first, metadata only when asked for, paged.
        let hist = |extra: Value| {
            let mut b = json!({"channel": "C0GENERAL1"});
            b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            b
        };
        let (_, _, all) = call(&slack, Some(BOT), "conversations.history", hist(json!({}))).await;
        let texts: Vec<&str> =
            all["messages"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
        assert_eq!(texts, ["two", "one", "question"], "thread replies stay in their thread");
        assert!(all["messages"][1].get("metadata").is_none());
        let (_, _, page) =
            call(&slack, Some(BOT), "conversations.history", hist(json!({"limit": 2, "include_all_metadata": true})))
                .await;
        assert_eq!((page["messages"][1]["metadata"].clone(), page["has_more"].clone()), (meta("a"), json!(true)));
        let cursor = page["response_metadata"]["next_cursor"].as_str().unwrap().to_string();
        let (_, _, rest) =
            call(&slack, Some(BOT), "conversations.history", hist(json!({"limit": 2, "cursor": cursor}))).await;
        assert_eq!((rest["messages"][0]["text"].as_str(), rest["has_more"].as_bool()), (Some("question"), Some(false)));
        assert_eq!(rest["response_metadata"]["next_cursor"], "");
        let ts1 = first["ts"].as_str().unwrap();
        let (_, _, since) = call(&slack, Some(BOT), "conversations.history", hist(json!({"oldest": ts1}))).await;
        assert_eq!(since["messages"].as_array().unwrap().len(), 1, "oldest is exclusive");
        let (_, _, since) =
            call(&slack, Some(BOT), "conversations.history", hist(json!({"oldest": ts1, "inclusive": true}))).await;
        assert_eq!(since["messages"].as_array().unwrap().len(), 2);
        assert_eq!(
            error(&slack, Some(BOT), "conversations.history", hist(json!({"cursor": "made-up"}))).await,
            "invalid_cursor"
        );
        assert_eq!(
            error(&slack, Some(BOT), "conversations.history", json!({"channel": "C0NOWHERE1"})).await,
            "channel_not_found"
        );

        // Replies: the thread, oldest first.
        let (_, _, thread) = call(
            &slack,
            Some(BOT),
            "conversations.replies",
            json!({"channel": "C0GENERAL1", "ts": parent, "include_all_metadata": true}),
        )
        .await;
        let texts: Vec<&str> =
            thread["messages"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
        assert_eq!(texts, ["question", "in thread"]);
        assert_eq!(thread["messages"][1]["metadata"], meta("b"));
        assert_eq!(
            error(&slack, Some(BOT), "conversations.replies", json!({"channel": "C0GENERAL1", "ts": "1.000001"})).await,
            "thread_not_found"
        );
    }

    #[tokio::test]
    async fn slack_a_cut_answer_still_posts() {
        let slack = twin().await;
        slack.cut_next_answer("chat.postMessage");
        let r = client()
            .post(slack.api_url("chat.postMessage"))
            .header("content-type", "application/json; charset=utf-8")
            .header("authorization", format!("Bearer {BOT}"))
            .body(json!({"channel": "C0GENERAL1", "text": "hi"}).to_string())
            .send()
            .await;
        // Depending on how much hyper had flushed, the break shows before or after the headers.
        match r {
            Ok(r) => assert!(r.bytes().await.is_err(), "the body breaks off"),
            Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
        }
        assert_eq!(slack.posted().len(), 1, "but the message was posted");
        let (status, _, body) =
            call(&slack, Some(BOT), "chat.postMessage", json!({"channel": "C0GENERAL1", "text": "again"})).await;
        assert_eq!((status, body["ok"].as_bool()), (200, Some(true)), "only one answer is cut");
    }

    #[tokio::test]
    async fn slack_rate_limits_answer_429_with_retry_after() {
        let slack = twin().await;
        slack.add_channel("C0RANDOM01", "random", ChannelKind::Public);
        slack.set_rate_limit("chat.postMessage", 2);
        let post = |c: &str| json!({"channel": c, "text": "x"});
        for _ in 0..2 {
            assert_eq!(call(&slack, Some(BOT), "chat.postMessage", post("C0GENERAL1")).await.0, 200);
        }
        let (status, headers, body) = call(&slack, Some(BOT), "chat.postMessage", post("C0RANDOM01")).await;
        assert_eq!(status, 429);
        assert_eq!(body, json!({"ok": false, "error": "ratelimited"}));
        let retry_after: u64 = headers["retry-after"].to_str().expect("header").parse().expect("seconds");
        assert!((55..=60).contains(&retry_after), "{retry_after}");
        assert_eq!(call(&slack, Some(BOT), "auth.test", json!({})).await.0, 200, "limits are per method");
        assert_eq!(slack.posted().len(), 2);

        slack.set_rate_limit("chat.postMessage", 0);
        slack.set_channel_post_limit(1);
        assert_eq!(call(&slack, Some(BOT), "chat.postMessage", post("C0GENERAL1")).await.0, 200);
        let (status, headers, _) = call(&slack, Some(BOT), "chat.postMessage", post("#general")).await;
        assert_eq!((status, headers["retry-after"].to_str().expect("header")), (429, "1"));
        assert_eq!(call(&slack, Some(BOT), "chat.postMessage", post("C0RANDOM01")).await.0, 200, "per channel");
        tokio::time::sleep(Duration::from_millis(1050)).await;
        assert_eq!(call(&slack, Some(BOT), "chat.postMessage", post("C0GENERAL1")).await.0, 200);

        slack.set_channel_post_limit(0);
        slack.fail_next("chat.postMessage", "internal_error");
        slack.fail_next("chat.postMessage", 503);
        slack.fail_next("*", Fail::RateLimited(7));
        assert_eq!(error(&slack, Some(BOT), "chat.postMessage", post("C0GENERAL1")).await, "internal_error");
        let (status, _, body) = call(&slack, Some(BOT), "chat.postMessage", post("C0GENERAL1")).await;
        assert_eq!((status, body["error"].as_str()), (503, Some("service_unavailable")));
        let (status, headers, _) = call(&slack, Some(BOT), "auth.test", json!({})).await;
        assert_eq!((status, headers["retry-after"].to_str().expect("header")), (429, "7"));
        assert_eq!(call(&slack, Some(BOT), "chat.postMessage", post("C0GENERAL1")).await.0, 200);
    }

    #[tokio::test]
    async fn slack_posts_updates_and_reactions_follow_the_method_docs() {
        let slack = twin().await;
        let (_, _, first) =
            call(&slack, Some(BOT), "chat.postMessage", json!({"channel": "C0GENERAL1", "text": "*hi*"})).await;
        assert_eq!(first["ok"], true, "{first}");
        assert!(first.get("warning").is_none());
        let ts = first["ts"].as_str().expect("ts").to_string();
        assert!(is_ts(&ts));
        let m = &first["message"];
        assert_eq!(
            (m["subtype"].as_str(), m["bot_id"].as_str(), m["ts"].as_str()),
            (Some("bot_message"), Some(BOT_ID), Some(ts.as_str()))
        );
        let reply = json!({"channel": "#general", "text": "in thread", "thread_ts": ts, "mrkdwn": false});
        let (_, _, second) = call(&slack, Some(BOT), "chat.postMessage", reply).await;
        assert_eq!(second["channel"], "C0GENERAL1");
        assert!(second["ts"].as_str().expect("ts") > ts.as_str(), "ts increase");
        assert_eq!(second["message"]["thread_ts"], ts.as_str());
        // A user id opens the DM.
        let (_, _, dm) =
            call(&slack, Some(BOT), "chat.postMessage", json!({"channel": "U0ADA00001", "text": "psst"})).await;
        assert_eq!(dm["channel"].as_str(), Some(slack.add_im("U0ADA00001").as_str()));
        let posted = slack.posted();
        assert_eq!(posted.len(), 3);
        assert_eq!((posted[1].thread_ts.as_deref(), posted[1].mrkdwn), (Some(ts.as_str()), false));
        assert!(posted[0].mrkdwn);

        let long = "é".repeat(POST_TEXT_LIMIT + 10);
        let (_, _, cut) =
            call(&slack, Some(BOT), "chat.postMessage", json!({"channel": "C0GENERAL1", "text": long})).await;
        assert_eq!(cut["message"]["text"].as_str().expect("text").chars().count(), POST_TEXT_LIMIT);
        assert!(slack.posted()[3].truncated);
        let blocks = json!([{"type": "section", "text": {"type": "mrkdwn", "text": "*b*"}}]);
        let (_, _, with_blocks) =
            call(&slack, Some(BOT), "chat.postMessage", json!({"channel": "C0GENERAL1", "blocks": blocks})).await;
        assert_eq!(with_blocks["message"]["blocks"], blocks);
        let refusals = [
            (json!({"channel": "C0GENERAL1"}), "no_text"),
            (json!({"channel": "C0NOWHERE1", "text": "x"}), "channel_not_found"),
            (json!({"text": "x"}), "channel_not_found"),
            (json!({"channel": "C0GENERAL1", "blocks": "not json"}), "invalid_blocks_format"),
            (json!({"channel": "C0GENERAL1", "blocks": vec![blocks[0].clone(); 51]}), "invalid_blocks"),
        ];
        for (body, want) in refusals {
            assert_eq!(error(&slack, Some(BOT), "chat.postMessage", body).await, want);
        }
        // JSON without a charset is answered with the documented warning.
        let r = client()
            .post(slack.api_url("auth.test"))
            .bearer_auth(BOT)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .expect("request");
        let b: Value = r.json().await.expect("json");
        assert_eq!((b["ok"].as_bool(), b["warning"].as_str()), (Some(true), Some("missing_charset")));

        let update = json!({"channel": "C0GENERAL1", "ts": ts, "text": "edited"});
        let (_, _, edited) = call(&slack, Some(BOT), "chat.update", update).await;
        assert_eq!(
            (edited["ok"].as_bool(), edited["text"].as_str(), edited["ts"].as_str()),
            (Some(true), Some("edited"), Some(ts.as_str()))
        );
        assert_eq!(slack.message("C0GENERAL1", &ts).expect("stored")["text"], "edited");
        let theirs = slack.push_message("C0GENERAL1", "U0ADA00001", "mine", None);
        let update_errors = [
            (json!({"channel": "C0GENERAL1", "ts": ts, "text": "x".repeat(UPDATE_TEXT_LIMIT + 1)}), "msg_too_long"),
            (json!({"channel": "C0GENERAL1", "ts": theirs.ts, "text": "x"}), "cant_update_message"),
            (json!({"channel": "C0GENERAL1", "ts": "1.000001", "text": "x"}), "message_not_found"),
            (json!({"channel": "U0ADA00001", "ts": ts, "text": "x"}), "channel_not_found"),
            (json!({"channel": "C0GENERAL1", "ts": ts}), "no_text"),
        ];
        for (body, want) in update_errors {
            assert_eq!(error(&slack, Some(BOT), "chat.update", body).await, want);
        }
        assert_eq!(slack.updates().len(), 1);

        let react = json!({"channel": "C0GENERAL1", "timestamp": theirs.ts, "name": "eyes"});
        assert_eq!(call(&slack, Some(BOT), "reactions.add", react.clone()).await.2, json!({"ok": true}));
        let reaction_errors = [
            (react, "already_reacted"),
            (json!({"channel": "C0GENERAL1", "timestamp": theirs.ts, "name": ":eyes:"}), "invalid_name"),
            (json!({"channel": "C0GENERAL1", "name": "eyes"}), "no_item_specified"),
            (json!({"channel": "C0GENERAL1", "timestamp": "yesterday", "name": "eyes"}), "bad_timestamp"),
            (json!({"channel": "C0GENERAL1", "timestamp": "1.000001", "name": "eyes"}), "message_not_found"),
            (json!({"channel": "C0NOWHERE1", "timestamp": theirs.ts, "name": "eyes"}), "channel_not_found"),
        ];
        for (body, want) in reaction_errors {
            assert_eq!(error(&slack, Some(BOT), "reactions.add", body).await, want);
        }
        let thumbs = json!({"channel": "C0GENERAL1", "timestamp": theirs.ts, "name": "+1::skin-tone-3"});
        assert_eq!(call(&slack, Some(BOT), "reactions.add", thumbs).await.2["ok"], true);
        assert_eq!(
            slack.reactions(),
            vec![
                ReactionAdded { channel: "C0GENERAL1".into(), timestamp: theirs.ts.clone(), name: "eyes".into() },
                ReactionAdded {
                    channel: "C0GENERAL1".into(),
                    timestamp: theirs.ts.clone(),
                    name: "+1::skin-tone-3".into()
                },
            ]
        );
    }

    #[tokio::test]
    async fn slack_socket_faults_misbehave_as_described() {
        let slack = twin().await;
        slack.set_ack_timeout(Duration::from_millis(250));
        slack.set_socket_retry_delays(vec![Duration::ZERO]);
        let mut ws = connected(&slack).await;

        slack.duplicate_next_envelope();
        let pushed = slack.push_message("C0GENERAL1", "U0ADA00001", "twice", None);
        let (a, b) = (next_json(&mut ws).await, next_json(&mut ws).await);
        assert_eq!(a["payload"]["event_id"], pushed.event_id.as_str());
        assert_eq!(a["payload"], b["payload"]);
        assert_ne!(a["envelope_id"], b["envelope_id"]);
        assert_eq!(b["retry_attempt"], 0);
        ack(&mut ws, &a["envelope_id"]).await;
        ack(&mut ws, &b["envelope_id"]).await;
        slack.wait_acks(2, SECS).await;

        slack.malformed_next_frame();
        let pushed = slack.push_message("C0GENERAL1", "U0ADA00001", "garbled", None);
        let garbage = next_text(&mut ws).await;
        assert!(serde_json::from_str::<Value>(&garbage).is_err(), "{garbage}");
        let again = next_json(&mut ws).await;
        assert_eq!(
            (again["payload"]["event_id"].as_str(), again["retry_attempt"].as_u64()),
            (Some(pushed.event_id.as_str()), Some(1))
        );
        ack(&mut ws, &again["envelope_id"]).await;
        slack.wait_acks(3, SECS).await;

        slack.stall_socket(true);
        let pushed = slack.push_message("C0GENERAL1", "U0ADA00001", "stuck", None);
        assert_silent(&mut ws, Duration::from_millis(300)).await;
        ack(&mut ws, &json!(pushed.envelope_id)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(slack.ignored_acks(), vec![pushed.envelope_id.clone()]);
        assert_eq!(slack.acks().len(), 3);
        slack.stall_socket(false);
        let late = next_json(&mut ws).await;
        assert_eq!(late["payload"]["event_id"], pushed.event_id.as_str());
        ack(&mut ws, &late["envelope_id"]).await;
        slack.wait_acks(4, SECS).await;

        ws.send(WsMessage::text("not an ack")).await.expect("send");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(slack.client_frames(), vec!["not an ack".to_string()]);

        slack.send_disconnect("refresh_requested");
        let frame = next_json(&mut ws).await;
        assert_eq!(frame, json!({"type": "disconnect", "reason": "refresh_requested", "debug_info": {"host": HOST}}));
        assert!(matches!(next_frame(&mut ws).await, Some(Ok(WsMessage::Close(_)))));

        slack.set_warning_grace(Duration::from_millis(300));
        let mut ws = connected(&slack).await;
        slack.send_disconnect("warning");
        assert_eq!(next_json(&mut ws).await["reason"], "warning");
        // Still usable during the grace when nothing else is connected.
        let pushed = slack.push_message("C0GENERAL1", "U0ADA00001", "during grace", None);
        let during = next_json(&mut ws).await;
        assert_eq!(during["payload"]["event_id"], pushed.event_id.as_str());
        ack(&mut ws, &during["envelope_id"]).await;
        assert!(matches!(next_frame(&mut ws).await, Some(Ok(WsMessage::Close(_)))));
        slack.push_raw_frame("{\"type\":\"mystery\"}");
        let mut ws = connected(&slack).await;
        assert_eq!(next_json(&mut ws).await, json!({"type": "mystery"}));
        assert_eq!(slack.connections_opened(), 3);
    }

    #[tokio::test]
    async fn slack_bot_messages_carry_bot_id_and_subtype() {
        let slack = twin().await;
        slack.add_channel("G0SECRET01", "secret", ChannelKind::Private);
        slack.set_echo_own_messages(true);
        let mut ws = connected(&slack).await;
        let (_, _, posted) =
            call(&slack, Some(BOT), "chat.postMessage", json!({"channel": "G0SECRET01", "text": "from me"})).await;
        let echo = next_json(&mut ws).await;
        let event = &echo["payload"]["event"];
        assert_eq!((event["subtype"].as_str(), event["bot_id"].as_str()), (Some("bot_message"), Some(BOT_ID)));
        assert_eq!((event["channel_type"].as_str(), event["ts"].as_str()), (Some("group"), posted["ts"].as_str()));
        ack(&mut ws, &echo["envelope_id"]).await;
        let pushed = slack.push_bot_message("C0GENERAL1", "manual", None);
        let manual = next_json(&mut ws).await;
        assert_eq!(manual["payload"]["event"]["bot_id"], BOT_ID);
        assert_eq!(manual["payload"]["event"]["ts"], pushed.ts.as_str());
        let raw = slack.push_raw_event(json!({"type": "reaction_added", "user": "U0ADA00001", "reaction": "tada"}));
        let raw_env = next_json(&mut ws).await;
        assert_eq!(
            raw_env["payload"]["event"],
            json!({"type": "reaction_added", "user": "U0ADA00001", "reaction": "tada"})
        );
        assert_eq!(raw_env["payload"]["event_id"], raw.event_id.as_str());
        assert_eq!(raw.ts, "");
    }
}
