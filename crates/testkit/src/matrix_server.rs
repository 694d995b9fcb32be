//! A twin of a Matrix homeserver's client-server API
//! (<https://spec.matrix.org/latest/client-server-api/>, endpoints under `/_matrix/client/v3`) for
//! tests of a Matrix client or bot: password login, `/sync` long polling, rooms with invites,
//! joins and leaves, sends with transaction IDs, typing, redactions, account data (`m.direct`) and
//! authenticated media, answering with the spec's standard error responses. It must not talk to
//! the internet, must not accept anything the spec refuses, and must not be lenient where a real
//! homeserver is strict; where the spec is silent it answers what Synapse answers. It does not
//! federate, encrypt or decrypt: encrypted rooms carry opaque `m.room.encrypted` blobs, exactly
//! as a homeserver sees them.
//!
//! Start one with [`MatrixServer::start`] and a server name, point the client at
//! [`MatrixServer::base_url`], create users ([`MatrixServer::register_user`], whose pre-issued
//! token is [`MatrixServer::token_for`]) and rooms ([`MatrixServer::create_room`],
//! [`MatrixServer::invite`], [`MatrixServer::join`], [`MatrixServer::set_encrypted`],
//! [`MatrixServer::set_direct`]), push what other users say ([`MatrixServer::send_text`],
//! [`MatrixServer::send_notice`], [`MatrixServer::send_in_thread`], [`MatrixServer::send_reply`],
//! [`MatrixServer::send_mention`], [`MatrixServer::send_encrypted`], [`MatrixServer::send_raw`],
//! …) and inspect what the client did ([`MatrixServer::sent_by`], [`MatrixServer::wait_sent_by`],
//! [`MatrixServer::typing`], [`MatrixServer::joins`], [`MatrixServer::requests`],
//! [`MatrixServer::sync_count`], [`MatrixServer::last_since`]).
//!
//! # Wire
//!
//! - Authentication is `Authorization: Bearer <token>`. The deprecated (since v1.11)
//!   `access_token` query parameter is still accepted, because the spec says homeservers MUST
//!   support both; [`Call::token_via`] tells which one the client used. Both at once is 401
//!   `M_MISSING_TOKEN` (`Mixing Authorization headers and access_token query parameters.`, as
//!   Synapse answers). No token is 401 `M_MISSING_TOKEN`; an unknown, logged out or revoked token
//!   401 `M_UNKNOWN_TOKEN` with `soft_logout: false`; an expired one
//!   ([`MatrixServer::expire_token`]) 401 `M_UNKNOWN_TOKEN` with `soft_logout: true`.
//! - Errors are `{"errcode":"M_…","error":"…"}` with `application/json`. Unknown endpoints are
//!   404 `M_UNRECOGNIZED`, a known path with the wrong method 405 `M_UNRECOGNIZED`. Only `v3`
//!   (and the `v1` media paths) exist: `r0` paths are unknown. `OPTIONS` is answered with the CORS
//!   headers and no logic, which every answer carries.
//! - Every `POST`/`PUT` but the upload and `/logout` needs a JSON object body: empty or invalid is
//!   400 `M_NOT_JSON` (`Content not JSON.`), another JSON value 400 `M_BAD_JSON`. (Synapse lets a
//!   few endpoints such as `/join` go without a body; the spec does not, and neither does the twin.)
//! - Event IDs look like room version 11's (`$` and 43 URL-safe base64 characters), room IDs like
//!   `!abcdefghijklmnopqr:<server>`, `next_batch` tokens like `s42_1234` (opaque to clients).
//!
//! # Endpoints
//!
//! - `GET /_matrix/client/versions` (no auth): `v1.1`–`v1.13`.
//! - `GET /login` (`m.login.password`); `POST /login {type:"m.login.password",
//!   identifier:{type:"m.id.user", user}, password, device_id?, initial_device_display_name?}`
//!   (`user` may be a localpart or a full user ID; the deprecated top-level `user` is also taken)
//!   → `{user_id, access_token, device_id}`. A wrong user or password is 403 `M_FORBIDDEN`
//!   `Invalid username or password`; another `type` 400 `M_UNKNOWN`; another identifier type 400
//!   `M_UNKNOWN`. Without `device_id` a new one is generated; with a known one the device's old
//!   tokens are invalidated, as the spec says. `POST /logout` kills the token.
//! - `GET /account/whoami` → `{user_id, device_id, is_guest:false}`.
//! - `GET /sync?since&timeout&filter&full_state&set_presence`, see below. `POST
//!   /user/{userId}/filter` (→ `{filter_id}`) and `GET /user/{userId}/filter/{filterId}`; of a
//!   filter only `room.timeline.limit` is applied (default 10, as Synapse).
//! - `PUT /rooms/{roomId}/send/{eventType}/{txnId}` → `{event_id}`. Transaction IDs are scoped
//!   to the device (since v1.7) and the request path: a retransmission answers the first answer
//!   again and adds no event. The sender must be joined (403 `M_FORBIDDEN` `User … not in room
//!   …`); content over 65536 bytes is 413 `M_TOO_LARGE`; a thread (`rel_type: m.thread`) rooted
//!   on an event that itself has a `rel_type` is 400 `M_UNKNOWN`; a second identical annotation
//!   (`m.reaction` with the same key on the same event) is 400 `M_DUPLICATE_ANNOTATION`. Content
//!   is otherwise accepted as a homeserver does (servers do not validate `m.room.message`, and
//!   plaintext is accepted in encrypted rooms), but each [`SentEvent`] lists `problems`: what the
//!   spec says the content should have and does not (missing `body`/`msgtype`, `format` without
//!   `formatted_body`, relations to unknown events, a malformed `m.mentions`, plaintext in an
//!   encrypted room, …).
//! - `PUT /rooms/{roomId}/state/{eventType}/{stateKey}` (power level `state_default`, 50; an
//!   unchanged state is not sent again, as Synapse), `PUT /rooms/{roomId}/redact/{eventId}/{txnId}`
//!   (own events, or power level `redact`), `GET /rooms/{roomId}/event/{eventId}`, `GET
//!   /rooms/{roomId}/joined_members`, `GET /joined_rooms`, `POST /rooms/{roomId}/receipt/{type}/
//!   {eventId}`, `POST /rooms/{roomId}/read_markers`.
//! - `POST /createRoom {preset, visibility, is_direct, invite, name, topic, initial_state,
//!   room_alias_name}` (room version 11; invitees get `is_direct` in their invite as the spec
//!   requires). `POST /rooms/{roomId}/join` (room IDs only), `POST /join/{roomIdOrAlias}`: an
//!   invite-only room needs an invite (403 `You are not invited to this room.`); joining again is
//!   a no-op. `POST /rooms/{roomId}/leave` (also rejects an invite), `POST /rooms/{roomId}/invite
//!   {user_id}` (the inviter must be joined; an invitee already joined is 403).
//! - `PUT /rooms/{roomId}/typing/{userId} {typing, timeout}`: only for oneself (403 otherwise);
//!   `timeout` defaults to 30 s and is capped at 120 s, as Synapse. Typing shows in `/sync` as an
//!   `m.typing` ephemeral event and expires by itself.
//! - `GET|PUT /user/{userId}/account_data/{type}`: only one's own; `m.fully_read` and
//!   `m.push_rules` are 405 `M_BAD_JSON` as the spec says. Changes show in `/sync`.
//! - Media: `POST /_matrix/media/v3/upload?filename=` (the upload is still `v3` in the spec; the
//!   body is the file, `Content-Type` kept) → `{content_uri:"mxc://…"}`, over
//!   [`MatrixServer::set_max_upload`] (50 MB) 413 `M_TOO_LARGE`. Download with authentication
//!   from `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]` (v1.11),
//!   with `Content-Type`, `Content-Disposition` (`inline` only for the spec's safe types) and the
//!   recommended `Content-Security-Policy`. The deprecated unauthenticated
//!   `/_matrix/media/v3/download/…` answers 404 `M_NOT_FOUND` for everything, as a server that
//!   froze unauthenticated media (recommended since v1.12) does for media uploaded after the
//!   freeze. `GET /_matrix/client/v1/media/config` → `{"m.upload.size"}`.
//!
//! # Sync
//!
//! Every change (an event, an account data change, a typing change) advances one stream
//! position; `next_batch` names it. Without `since` the answer is immediate and holds, for every
//! joined room, the state at the start of the timeline and the last `limit` events (`limited`
//! when there were more); invites appear under `rooms.invite` with the stripped state
//! (`m.room.create`, `m.room.join_rules`, `m.room.name`, `m.room.topic`, `m.room.avatar`,
//! `m.room.canonical_alias`, `m.room.encryption` and the invite itself). With `since` only what
//! happened after it is sent: rooms without news are left out, a room joined since gets its full
//! state, a room left since appears under `rooms.leave` with the leave event. When nothing is new
//! the request is held up to `timeout` ms (default 0) and answered as soon as something happens
//! (`full_state=true` never waits). Events carry `event_id`, `sender`, `origin_server_ts`, `type`,
//! `content`, `state_key` for state, and `unsigned.age`; `unsigned.transaction_id` only for the
//! device that sent it. A redacted event is served redacted with `unsigned.redacted_because`.
//! The spec does not say what an unknown `since` is: like Synapse, a token the twin cannot parse
//! is 400 `M_UNKNOWN` `Invalid stream token`, and a well-formed token from the future is taken as
//! "now" (Synapse bounds future tokens the same way).
//!
//! # Faults
//!
//! Endpoints are named for faults and rate limits by [`Call::endpoint`] (`sync`, `send`, `login`,
//! `join`, `typing`, `upload`, …) or, with a leading `/`, by a path prefix.
//!
//! - [`MatrixServer::fail_next`]: the next call of an endpoint answers a scripted status and
//!   `errcode` (with `retry_after_ms` and `Retry-After` when given); queued, in order, taken
//!   before authentication.
//! - [`MatrixServer::set_rate_limit`]: more than N calls of an endpoint per user within a window
//!   are 429 `M_LIMIT_EXCEEDED` with `retry_after_ms` (deprecated since v1.10 but still sent by
//!   servers) and the `Retry-After` header in seconds the spec now prefers.
//! - [`MatrixServer::stall_sync`]: `/sync` calls are taken but never answered; the connection
//!   stays open until the client gives up or the twin is dropped.
//! - [`MatrixServer::drop_next_syncs`]: the next N `/sync` calls have their TCP connection closed
//!   without an HTTP answer.
//! - [`MatrixServer::duplicate_next_sync`]: the next `/sync` answer repeats the timeline events
//!   of the previous answer to the same token, under a new `next_batch`.
//! - [`MatrixServer::malformed_next_sync`]: the next `/sync` answer is a 200 whose body is not
//!   JSON.
//! - [`MatrixServer::expire_token`] and [`MatrixServer::revoke_token`]: the token becomes
//!   `M_UNKNOWN_TOKEN` (`soft_logout` true and false).
//!
//! In [`MatrixServer::requests`] a status of 0 means no HTTP answer was given.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

// ---------------------------------------------------------------------------------------------
// Public data types
// ---------------------------------------------------------------------------------------------

/// How a request presented its access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenVia {
    /// `Authorization: Bearer …`.
    Header,
    /// The deprecated `access_token` query parameter.
    Query,
}

/// An event a client sent successfully (refused calls are only in [`MatrixServer::requests`]):
/// through `send`, `state` or `redact`.
#[derive(Debug, Clone)]
pub struct SentEvent {
    pub room_id: String,
    pub event_id: String,
    pub sender: String,
    pub device_id: String,
    /// The `{txnId}` of `send` and `redact`; `None` for state events.
    pub txn_id: Option<String>,
    pub event_type: String,
    pub state_key: Option<String>,
    /// The content as sent (for a redaction: `{redacts, reason?}`).
    pub content: Value,
    /// Whether the room had `m.room.encryption` when the event was sent.
    pub encrypted_room: bool,
    /// What the spec says this content should have and it does not; empty when it looks right.
    pub problems: Vec<String>,
}

impl SentEvent {
    /// `content.body`.
    pub fn body(&self) -> Option<&str> {
        self.content.get("body").and_then(Value::as_str)
    }

    /// `content.msgtype`.
    pub fn msgtype(&self) -> Option<&str> {
        self.content.get("msgtype").and_then(Value::as_str)
    }

    /// `content["m.relates_to"]`.
    pub fn relates_to(&self) -> Option<&Value> {
        self.content.get("m.relates_to")
    }
}

/// A successful `PUT /rooms/{roomId}/typing/{userId}`.
#[derive(Debug, Clone, PartialEq)]
pub struct TypingCall {
    pub room_id: String,
    pub user_id: String,
    pub typing: bool,
    /// The `timeout` sent, if any.
    pub timeout_ms: Option<u64>,
}

/// A membership change a client asked for: `join`, `leave` or `invite`.
#[derive(Debug, Clone, PartialEq)]
pub struct MembershipCall {
    /// The room ID (resolved from an alias for `/join/{roomIdOrAlias}`).
    pub room_id: String,
    /// The user calling.
    pub user_id: String,
    pub membership: String,
    /// The room ID or alias as written in the path.
    pub requested: String,
    /// For invites, the invitee.
    pub invitee: Option<String>,
}

/// A successful `POST /rooms/{roomId}/receipt/{receiptType}/{eventId}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    pub room_id: String,
    pub user_id: String,
    pub receipt_type: String,
    pub event_id: String,
    pub thread_id: Option<String>,
}

/// One call received, whatever its outcome.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// The path as received (percent-encoded as the client sent it), without the query.
    pub path: String,
    /// The endpoint's short name (`sync`, `send`, `login`, …; `unrecognized` for unknown paths).
    pub endpoint: String,
    /// The authenticated user, when the token was accepted.
    pub user_id: Option<String>,
    /// How the token came, when one came.
    pub token_via: Option<TokenVia>,
    /// The HTTP status answered; 0 when no answer was given (dropped or stalled).
    pub status: u16,
    /// The JSON body received (`{"len": n}` for uploads, `null` without a JSON body).
    pub body: Value,
}

/// A file in the content repository.
#[derive(Debug, Clone)]
pub struct Media {
    pub content_uri: String,
    pub content_type: String,
    pub filename: Option<String>,
    pub bytes: Vec<u8>,
    /// The uploading user (`None` for [`MatrixServer::add_media`]).
    pub uploader: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Internal state
// ---------------------------------------------------------------------------------------------

const MEMBER: &str = "m.room.member";
/// Synapse's default `room.timeline.limit`.
const DEFAULT_TIMELINE_LIMIT: usize = 10;
/// The spec's limit on the size of an event.
const MAX_EVENT_BYTES: usize = 65536;
const DEFAULT_MAX_UPLOAD: usize = 50 * 1024 * 1024;
/// A day bounds absurd timeouts so deadlines can't overflow.
const DAY_MS: u64 = 86_400_000;
/// The spec's "safe" content types that may be served `inline`.
const INLINE_TYPES: &[&str] = &[
    "text/css",
    "text/plain",
    "text/csv",
    "application/json",
    "application/ld+json",
    "image/jpeg",
    "image/gif",
    "image/png",
    "image/apng",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "video/quicktime",
    "audio/mp4",
    "audio/webm",
    "audio/aac",
    "audio/mpeg",
    "audio/ogg",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-pn-wav",
    "audio/flac",
    "audio/x-flac",
];
const KNOWN_MSGTYPES: &[&str] = &[
    "m.text",
    "m.emote",
    "m.notice",
    "m.image",
    "m.file",
    "m.audio",
    "m.video",
    "m.location",
    "m.key.verification.request",
    "m.server_notice",
];

struct Stored {
    pos: u64,
    room_id: String,
    /// Client format without `room_id` and `unsigned`.
    event: Value,
    /// `(user, device, txn_id)` of the client send.
    txn: Option<(String, String, String)>,
    /// Index of the redaction that redacted this event.
    redacted_by: Option<usize>,
}

impl Stored {
    fn ty(&self) -> &str {
        self.event["type"].as_str().unwrap_or("")
    }

    fn sender(&self) -> &str {
        self.event["sender"].as_str().unwrap_or("")
    }

    fn state_key(&self) -> Option<&str> {
        self.event.get("state_key").and_then(Value::as_str)
    }

    fn event_id(&self) -> &str {
        self.event["event_id"].as_str().unwrap_or("")
    }

    fn rel_type(&self) -> Option<&str> {
        self.event["content"]["m.relates_to"]["rel_type"].as_str()
    }
}

struct RoomState {
    creator: String,
    is_direct: bool,
    /// Indices into `Inner::events`, in stream order.
    timeline: Vec<usize>,
    /// `(type, state_key)` → index of the current state event.
    state: BTreeMap<(String, String), usize>,
    /// Typing users → the serial of their typing notice (to expire the right one).
    typing: BTreeMap<String, u64>,
    typing_pos: u64,
}

struct Account {
    password: Option<String>,
    /// The pre-issued token of [`MatrixServer::token_for`].
    token: String,
    /// type → (stream position, content).
    account_data: BTreeMap<String, (u64, Value)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TokenState {
    Valid,
    Expired,
    Revoked,
}

struct Session {
    user_id: String,
    device_id: String,
    state: TokenState,
}

struct Scripted {
    endpoint: String,
    status: u16,
    errcode: String,
    retry_after_ms: Option<u64>,
}

struct RateLimit {
    endpoint: String,
    n: u32,
    per: Duration,
    hits: HashMap<String, VecDeque<Instant>>,
}

struct Inner {
    server_name: String,
    seed: u64,
    counter: u64,
    pos: u64,
    accounts: BTreeMap<String, Account>,
    sessions: HashMap<String, Session>,
    rooms: BTreeMap<String, RoomState>,
    aliases: HashMap<String, String>,
    events: Vec<Stored>,
    event_index: HashMap<String, usize>,
    /// `(user, device, canonical path)` → the first answer.
    txns: HashMap<(String, String, String), Value>,
    filters: HashMap<(String, String), Value>,
    next_filter: u64,
    media: HashMap<String, Media>,
    max_upload: usize,
    typing_serial: u64,

    sent: Vec<SentEvent>,
    typing_calls: Vec<TypingCall>,
    memberships: Vec<MembershipCall>,
    receipts: Vec<Receipt>,
    uploads: Vec<String>,
    calls: Vec<Call>,
    syncs: usize,
    last_since: Option<String>,
    /// Access token → the last `/sync` answer given to it.
    last_sync: HashMap<String, Value>,

    scripted: VecDeque<Scripted>,
    stall_sync: bool,
    drop_syncs: usize,
    duplicate_next: bool,
    malformed_next: bool,
    rate_limits: Vec<RateLimit>,
}

struct Twin {
    inner: Mutex<Inner>,
    /// Bumped on every change a held `/sync` may wait for.
    changed: watch::Sender<u64>,
    closed: AtomicBool,
}

type Shared = Arc<Twin>;

impl Twin {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// The authenticated caller.
#[derive(Clone)]
struct Who {
    user_id: String,
    device_id: String,
    token: String,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn localpart(user_id: &str) -> &str {
    user_id.trim_start_matches('@').split(':').next().unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// The server and its test-facing API
// ---------------------------------------------------------------------------------------------

/// A running twin. Dropping it stops the server and closes held `/sync` calls.
pub struct MatrixServer {
    addr: SocketAddr,
    server_name: String,
    twin: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MatrixServer {
    fn drop(&mut self) {
        self.twin.closed.store(true, Ordering::SeqCst);
        self.twin.bump();
        self.task.abort();
    }
}

impl MatrixServer {
    /// Starts a twin on 127.0.0.1 with a random port for homeserver `server_name` (the part after
    /// `:` in its user and room IDs, e.g. `example.org`).
    pub async fn start(server_name: &str) -> MatrixServer {
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7);
        let inner = Inner {
            server_name: server_name.into(),
            seed,
            counter: 0,
            pos: 1,
            accounts: BTreeMap::new(),
            sessions: HashMap::new(),
            rooms: BTreeMap::new(),
            aliases: HashMap::new(),
            events: Vec::new(),
            event_index: HashMap::new(),
            txns: HashMap::new(),
            filters: HashMap::new(),
            next_filter: 0,
            media: HashMap::new(),
            max_upload: DEFAULT_MAX_UPLOAD,
            typing_serial: 0,
            sent: Vec::new(),
            typing_calls: Vec::new(),
            memberships: Vec::new(),
            receipts: Vec::new(),
            uploads: Vec::new(),
            calls: Vec::new(),
            syncs: 0,
            last_since: None,
            last_sync: HashMap::new(),
            scripted: VecDeque::new(),
            stall_sync: false,
            drop_syncs: 0,
            duplicate_next: false,
            malformed_next: false,
            rate_limits: Vec::new(),
        };
        let (changed, _) = watch::channel(0u64);
        let twin = Arc::new(Twin { inner: Mutex::new(inner), changed, closed: AtomicBool::new(false) });
        let app = Router::new().fallback(handle).layer(DefaultBodyLimit::disable()).with_state(twin.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind matrix twin");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MatrixServer { addr, server_name: server_name.into(), twin, task }
    }

    /// The homeserver base URL, `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    fn bump(&self) {
        self.twin.bump();
    }

    // --- Users and tokens --------------------------------------------------------------------

    /// Registers `@localpart:<server>` with a password and a pre-issued token
    /// ([`MatrixServer::token_for`]); returns the user ID. Registering again changes the password.
    pub fn register_user(&self, localpart: &str, password: &str) -> String {
        let user_id = format!("@{localpart}:{}", self.server_name);
        let mut g = self.twin.lock();
        g.ensure_account(&user_id);
        if let Some(a) = g.accounts.get_mut(&user_id) {
            a.password = Some(password.into());
        }
        user_id
    }

    /// The token pre-issued to a registered user (its own device, as if it had logged in).
    pub fn token_for(&self, user_id: &str) -> String {
        let g = self.twin.lock();
        g.accounts.get(user_id).map(|a| a.token.clone()).unwrap_or_else(|| panic!("token_for: unknown user {user_id}"))
    }

    /// Issues another token for `user_id` on `device_id` (a new device when `None`), as a login
    /// would; returns `(access_token, device_id)`.
    pub fn issue_token(&self, user_id: &str, device_id: Option<&str>) -> (String, String) {
        let mut g = self.twin.lock();
        assert!(g.accounts.contains_key(user_id), "issue_token: unknown user {user_id}");
        g.issue_session(user_id, device_id.map(String::from))
    }

    /// The device a token belongs to.
    pub fn device_of(&self, token: &str) -> Option<String> {
        self.twin.lock().sessions.get(token).map(|s| s.device_id.clone())
    }

    /// The token now answers 401 `M_UNKNOWN_TOKEN` with `soft_logout: true`, as the spec says an
    /// expired token should.
    pub fn expire_token(&self, token: &str) {
        self.set_token_state(token, TokenState::Expired);
    }

    /// The token now answers 401 `M_UNKNOWN_TOKEN` with `soft_logout: false` (logged out).
    pub fn revoke_token(&self, token: &str) {
        self.set_token_state(token, TokenState::Revoked);
    }

    fn set_token_state(&self, token: &str, state: TokenState) {
        let mut g = self.twin.lock();
        let s = g.sessions.get_mut(token).unwrap_or_else(|| panic!("unknown token {token}"));
        s.state = state;
    }

    /// Sets global account data of `user_id` (shows in its `/sync`).
    pub fn set_account_data(&self, user_id: &str, event_type: &str, content: Value) {
        self.twin.lock().put_account_data(user_id, event_type, content);
        self.bump();
    }

    /// Global account data of `user_id` (what the client stored too).
    pub fn account_data(&self, user_id: &str, event_type: &str) -> Option<Value> {
        self.twin.lock().accounts.get(user_id)?.account_data.get(event_type).map(|(_, c)| c.clone())
    }

    // --- Rooms -------------------------------------------------------------------------------

    /// A room of version 11 created by `creator` (joined, power level 100), invite-only, with
    /// history visible to members. When `is_direct`, invites [`MatrixServer::invite`] makes carry
    /// `is_direct: true`, as those of a `/createRoom` with `is_direct` do.
    pub fn create_room(&self, creator: &str, is_direct: bool) -> String {
        let room_id = {
            let mut g = self.twin.lock();
            let room_id = g.new_room_id();
            g.create_room(&room_id, creator, is_direct, "invite");
            room_id
        };
        self.bump();
        room_id
    }

    /// Adds a local alias (`#name:server`) for `/join/{roomIdOrAlias}`.
    pub fn add_alias(&self, room_id: &str, alias: &str) {
        let mut g = self.twin.lock();
        assert!(g.rooms.contains_key(room_id), "add_alias: no room {room_id}");
        g.aliases.insert(alias.into(), room_id.into());
    }

    /// Sets `m.room.join_rules` (`public`, `invite`, …), sent by the creator.
    pub fn set_join_rule(&self, room_id: &str, join_rule: &str) {
        let creator = self.creator(room_id);
        self.send_state(room_id, &creator, "m.room.join_rules", "", json!({"join_rule": join_rule}));
    }

    /// `inviter` (who must be joined) invites `invitee`.
    pub fn invite(&self, room_id: &str, inviter: &str, invitee: &str) {
        {
            let mut g = self.twin.lock();
            assert_eq!(
                g.membership(room_id, inviter).as_deref(),
                Some("join"),
                "invite: {inviter} is not in {room_id}"
            );
            let is_direct = g.rooms[room_id].is_direct;
            let mut content = g.member_content(invitee, "invite");
            if is_direct {
                content["is_direct"] = true.into();
            }
            g.append(room_id, MEMBER, inviter, Some(invitee), content, None);
        }
        self.bump();
    }

    /// `user_id` joins (whatever the join rules: a test shortcut).
    pub fn join(&self, room_id: &str, user_id: &str) {
        self.set_membership(room_id, user_id, "join");
    }

    /// `user_id` leaves (or rejects an invite).
    pub fn leave(&self, room_id: &str, user_id: &str) {
        self.set_membership(room_id, user_id, "leave");
    }

    fn set_membership(&self, room_id: &str, user_id: &str, membership: &str) {
        {
            let mut g = self.twin.lock();
            assert!(g.rooms.contains_key(room_id), "no room {room_id}");
            let content = g.member_content(user_id, membership);
            g.append(room_id, MEMBER, user_id, Some(user_id), content, None);
        }
        self.bump();
    }

    /// Makes the room encrypted: the creator sends `m.room.encryption` with
    /// `m.megolm.v1.aes-sha2`. The server goes on accepting plaintext, as homeservers do.
    pub fn set_encrypted(&self, room_id: &str) {
        let creator = self.creator(room_id);
        self.send_state(
            room_id,
            &creator,
            "m.room.encryption",
            "",
            json!({"algorithm": "m.megolm.v1.aes-sha2", "rotation_period_ms": 604_800_000u64, "rotation_period_msgs": 100}),
        );
    }

    /// Records in `owner`'s `m.direct` account data that `room_id` is a direct chat with
    /// `other_user` (`m.direct` maps user IDs to room IDs).
    pub fn set_direct(&self, owner: &str, other_user: &str, room_id: &str) {
        let mut content = self.account_data(owner, "m.direct").unwrap_or_else(|| json!({}));
        let list =
            content.as_object_mut().expect("m.direct is an object").entry(other_user).or_insert_with(|| json!([]));
        if let Some(rooms) = list.as_array_mut()
            && !rooms.iter().any(|r| r == room_id)
        {
            rooms.push(room_id.into());
        }
        self.set_account_data(owner, "m.direct", content);
    }

    fn creator(&self, room_id: &str) -> String {
        let g = self.twin.lock();
        g.rooms.get(room_id).map(|r| r.creator.clone()).unwrap_or_else(|| panic!("no room {room_id}"))
    }

    /// The membership of `user_id` in the room (`join`, `invite`, `leave`, `ban`).
    pub fn membership(&self, room_id: &str, user_id: &str) -> Option<String> {
        self.twin.lock().membership(room_id, user_id)
    }

    /// Whether the room has `m.room.encryption` state.
    pub fn is_encrypted(&self, room_id: &str) -> bool {
        self.twin.lock().is_encrypted(room_id)
    }

    /// Every event of the room in order, in client format with `room_id`.
    pub fn room_events(&self, room_id: &str) -> Vec<Value> {
        let g = self.twin.lock();
        let Some(room) = g.rooms.get(room_id) else { return Vec::new() };
        room.timeline.iter().map(|&i| g.full_event(i)).collect()
    }

    /// An event by ID, in client format with `room_id`.
    pub fn event(&self, event_id: &str) -> Option<Value> {
        let g = self.twin.lock();
        g.event_index.get(event_id).map(|&i| g.full_event(i))
    }

    // --- Pushing what other users do -----------------------------------------------------------

    /// An `m.room.message` with any content from `sender`, who must be joined.
    pub fn send_message(&self, room_id: &str, sender: &str, content: Value) -> String {
        self.send_event(room_id, sender, "m.room.message", content)
    }

    /// An event of any type from `sender`, who must be joined.
    pub fn send_event(&self, room_id: &str, sender: &str, event_type: &str, content: Value) -> String {
        let id = {
            let mut g = self.twin.lock();
            assert!(g.rooms.contains_key(room_id), "send: no room {room_id}");
            assert_eq!(g.membership(room_id, sender).as_deref(), Some("join"), "send: {sender} is not in {room_id}");
            g.append(room_id, event_type, sender, None, content, None).1
        };
        self.bump();
        id
    }

    /// A state event from `sender` (no power level check).
    pub fn send_state(&self, room_id: &str, sender: &str, event_type: &str, state_key: &str, content: Value) -> String {
        let id = {
            let mut g = self.twin.lock();
            assert!(g.rooms.contains_key(room_id), "send_state: no room {room_id}");
            g.append(room_id, event_type, sender, Some(state_key), content, None).1
        };
        self.bump();
        id
    }

    /// An `m.text` message.
    pub fn send_text(&self, room_id: &str, sender: &str, body: &str) -> String {
        self.send_message(room_id, sender, json!({"msgtype": "m.text", "body": body}))
    }

    /// An `m.notice` message (what bots send; clients must not answer notices automatically).
    pub fn send_notice(&self, room_id: &str, sender: &str, body: &str) -> String {
        self.send_message(room_id, sender, json!({"msgtype": "m.notice", "body": body}))
    }

    /// An `m.text` message with an `org.matrix.custom.html` `formatted_body`.
    pub fn send_html(&self, room_id: &str, sender: &str, body: &str, html: &str) -> String {
        self.send_message(
            room_id,
            sender,
            json!({"msgtype": "m.text", "body": body, "format": "org.matrix.custom.html", "formatted_body": html}),
        )
    }

    /// An `m.text` message in the thread of `root_event_id`, as a thread-aware client sends it:
    /// `rel_type: m.thread` with the reply fallback (`is_falling_back: true`, `m.in_reply_to` the
    /// latest event of the thread).
    pub fn send_in_thread(&self, room_id: &str, sender: &str, root_event_id: &str, body: &str) -> String {
        let latest = self.latest_in_thread(room_id, root_event_id);
        self.send_message(
            room_id,
            sender,
            json!({"msgtype": "m.text", "body": body, "m.relates_to": {
                "rel_type": "m.thread", "event_id": root_event_id, "is_falling_back": true,
                "m.in_reply_to": {"event_id": latest},
            }}),
        )
    }

    fn latest_in_thread(&self, room_id: &str, root: &str) -> String {
        let g = self.twin.lock();
        let Some(room) = g.rooms.get(room_id) else { return root.into() };
        room.timeline
            .iter()
            .rev()
            .map(|&i| &g.events[i])
            .find(|e| {
                let rel = &e.event["content"]["m.relates_to"];
                rel["rel_type"] == "m.thread" && rel["event_id"] == root
            })
            .map(|e| e.event_id().to_string())
            .unwrap_or_else(|| root.into())
    }

    /// A rich reply to `to_event_id` (`m.in_reply_to`, without the reply fallback the spec
    /// removed in v1.13).
    pub fn send_reply(&self, room_id: &str, sender: &str, to_event_id: &str, body: &str) -> String {
        self.send_message(
            room_id,
            sender,
            json!({"msgtype": "m.text", "body": body, "m.relates_to": {"m.in_reply_to": {"event_id": to_event_id}}}),
        )
    }

    /// An `m.text` message mentioning `mentioned_user` in `m.mentions.user_ids` (intentional
    /// mentions, v1.7), with an HTML pill.
    pub fn send_mention(&self, room_id: &str, sender: &str, body: &str, mentioned_user: &str) -> String {
        let pill = format!("<a href=\"https://matrix.to/#/{mentioned_user}\">{}</a>", localpart(mentioned_user));
        self.send_message(
            room_id,
            sender,
            json!({"msgtype": "m.text", "body": body, "format": "org.matrix.custom.html",
                "formatted_body": format!("{pill} {}", html_escape(body)),
                "m.mentions": {"user_ids": [mentioned_user]}}),
        )
    }

    /// An `m.reaction` (annotation) with `key` on `to_event_id`.
    pub fn send_reaction(&self, room_id: &str, sender: &str, to_event_id: &str, key: &str) -> String {
        self.send_event(
            room_id,
            sender,
            "m.reaction",
            json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": to_event_id, "key": key}}),
        )
    }

    /// A file message (`m.image`, `m.file`, `m.audio`, `m.video`) pointing at `mxc_uri`.
    pub fn send_file(&self, room_id: &str, sender: &str, msgtype: &str, body: &str, mxc_uri: &str) -> String {
        let info = self.media(mxc_uri).map(|m| json!({"mimetype": m.content_type, "size": m.bytes.len()}));
        let mut content = json!({"msgtype": msgtype, "body": body, "url": mxc_uri});
        if let Some(info) = info {
            content["info"] = info;
        }
        self.send_message(room_id, sender, content)
    }

    /// An `m.room.encrypted` Megolm event with an opaque ciphertext (what the server sees of an
    /// encrypted message).
    pub fn send_encrypted(&self, room_id: &str, sender: &str) -> String {
        let (ciphertext, session) = {
            let mut g = self.twin.lock();
            let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
            let mut bytes = g.mint().to_vec();
            bytes.extend_from_slice(&g.mint());
            (b64.encode(&bytes), b64.encode(g.mint()))
        };
        self.send_event(
            room_id,
            sender,
            "m.room.encrypted",
            json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": ciphertext, "session_id": session,
                "sender_key": "SenderCurve25519KeyOfTheTwinXXXXXXXXXXXXXXX", "device_id": "TWINDEVICE"}),
        )
    }

    /// Appends any event JSON as is (hostile input allowed): `event_id` and `origin_server_ts`
    /// are filled in when missing, `sender` defaults to the creator, `content` to `{}`; a
    /// `state_key` makes it state. No membership or shape checks.
    pub fn send_raw(&self, room_id: &str, event: Value) -> String {
        let id = {
            let mut g = self.twin.lock();
            assert!(g.rooms.contains_key(room_id), "send_raw: no room {room_id}");
            g.append_raw(room_id, event)
        };
        self.bump();
        id
    }

    /// `sender` redacts `event_id`.
    pub fn redact(&self, room_id: &str, sender: &str, event_id: &str, reason: Option<&str>) -> String {
        let id = {
            let mut g = self.twin.lock();
            assert!(g.rooms.contains_key(room_id), "redact: no room {room_id}");
            g.redact(room_id, sender, event_id, reason, None).1
        };
        self.bump();
        id
    }

    /// `user_id` starts or stops typing (30 s).
    pub fn push_typing(&self, room_id: &str, user_id: &str, typing: bool) {
        {
            let mut g = self.twin.lock();
            assert!(g.rooms.contains_key(room_id), "push_typing: no room {room_id}");
            g.set_typing(room_id, user_id, typing);
        }
        self.bump();
    }

    // --- Media -------------------------------------------------------------------------------

    /// Puts a file in the content repository; returns its `mxc://` URI.
    pub fn add_media(&self, bytes: &[u8], content_type: &str, filename: Option<&str>) -> String {
        self.twin.lock().store_media(bytes.to_vec(), content_type, filename.map(String::from), None)
    }

    /// A file by its `mxc://` URI.
    pub fn media(&self, mxc_uri: &str) -> Option<Media> {
        let id = mxc_uri.strip_prefix("mxc://")?.split_once('/')?.1;
        self.twin.lock().media.get(id).cloned()
    }

    /// Files clients uploaded, in order.
    pub fn uploads(&self) -> Vec<Media> {
        let g = self.twin.lock();
        g.uploads.iter().filter_map(|id| g.media.get(id).cloned()).collect()
    }

    /// The largest upload accepted (50 MB by default); more is 413 `M_TOO_LARGE`.
    pub fn set_max_upload(&self, bytes: usize) {
        self.twin.lock().max_upload = bytes;
    }

    // --- Inspection --------------------------------------------------------------------------

    /// Events clients sent, in order.
    pub fn sent(&self) -> Vec<SentEvent> {
        self.twin.lock().sent.clone()
    }

    /// Events `user_id` sent, in order.
    pub fn sent_by(&self, user_id: &str) -> Vec<SentEvent> {
        self.twin.lock().sent.iter().filter(|s| s.sender == user_id).cloned().collect()
    }

    /// Waits until `user_id` sent at least `n` events; panics with what was received on timeout.
    pub async fn wait_sent_by(&self, user_id: &str, n: usize, timeout: Duration) -> Vec<SentEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            let sent = self.sent_by(user_id);
            if sent.len() >= n {
                return sent;
            }
            if Instant::now() >= deadline {
                let calls: Vec<String> =
                    self.requests().iter().map(|c| format!("{} {} -> {}", c.method, c.path, c.status)).collect();
                panic!(
                    "matrix twin: expected {n} events sent by {user_id} within {timeout:?}, got {}: {:#?}\ncalls received: {calls:#?}",
                    sent.len(),
                    sent.iter().map(|s| (&s.event_type, &s.content)).collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Successful typing calls, in order.
    pub fn typing(&self) -> Vec<TypingCall> {
        self.twin.lock().typing_calls.clone()
    }

    /// Users typing in the room now.
    pub fn typing_users(&self, room_id: &str) -> Vec<String> {
        self.twin.lock().rooms.get(room_id).map(|r| r.typing.keys().cloned().collect()).unwrap_or_default()
    }

    /// Successful joins clients asked for, in order.
    pub fn joins(&self) -> Vec<MembershipCall> {
        self.memberships().into_iter().filter(|m| m.membership == "join").collect()
    }

    /// Successful joins, leaves and invites clients asked for, in order.
    pub fn memberships(&self) -> Vec<MembershipCall> {
        self.twin.lock().memberships.clone()
    }

    /// Successful read receipts, in order.
    pub fn receipts(&self) -> Vec<Receipt> {
        self.twin.lock().receipts.clone()
    }

    /// Every call received, in order of answer (stalled and dropped syncs when taken).
    pub fn requests(&self) -> Vec<Call> {
        self.twin.lock().calls.clone()
    }

    /// `/sync` calls received (including failed, stalled and dropped ones).
    pub fn sync_count(&self) -> usize {
        self.twin.lock().syncs
    }

    /// Waits until at least `n` `/sync` calls were received; panics on timeout.
    pub async fn wait_syncs(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.sync_count() < n {
            assert!(
                Instant::now() < deadline,
                "matrix twin: expected {n} /sync calls within {timeout:?}, got {}",
                self.sync_count()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The `since` of the last `/sync` call (`None` before any, or when it had none).
    pub fn last_since(&self) -> Option<String> {
        self.twin.lock().last_since.clone()
    }

    /// The `next_batch` a `/sync` answered now would carry.
    pub fn current_batch(&self) -> String {
        let g = self.twin.lock();
        g.batch_token(g.pos)
    }

    // --- Faults ------------------------------------------------------------------------------

    /// The next call of `endpoint` (an endpoint name such as `sync` or `send`, `*` for any, or a
    /// path prefix starting with `/`) answers `status` with `errcode` and a stock `error`, plus
    /// `retry_after_ms` and `Retry-After` (seconds, rounded up) when given; `M_UNKNOWN_TOKEN` comes
    /// with `soft_logout: false`. Queued: several calls script several failures.
    pub fn fail_next(&self, endpoint: &str, status: u16, errcode: &str, retry_after_ms: Option<u64>) {
        self.twin.lock().scripted.push_back(Scripted {
            endpoint: endpoint.into(),
            status,
            errcode: errcode.into(),
            retry_after_ms,
        });
    }

    /// At most `n` calls of `endpoint` (name or path prefix, as for [`MatrixServer::fail_next`])
    /// per user (or per unauthenticated caller) within any `per`; the excess is 429
    /// `M_LIMIT_EXCEEDED`. `n == 0` removes the limit.
    pub fn set_rate_limit(&self, endpoint: &str, n: u32, per: Duration) {
        let mut g = self.twin.lock();
        g.rate_limits.retain(|r| r.endpoint != endpoint);
        if n > 0 {
            g.rate_limits.push(RateLimit { endpoint: endpoint.into(), n, per, hits: HashMap::new() });
        }
    }

    /// While on, `/sync` calls are taken but never answered.
    pub fn stall_sync(&self, on: bool) {
        self.twin.lock().stall_sync = on;
    }

    /// The next `n` `/sync` calls get their connection closed without an HTTP answer.
    pub fn drop_next_syncs(&self, n: usize) {
        self.twin.lock().drop_syncs = n;
    }

    /// The next `/sync` answer starts each joined room's timeline with the events of the previous
    /// answer to the same token again, under a new `next_batch`.
    pub fn duplicate_next_sync(&self) {
        self.twin.lock().duplicate_next = true;
    }

    /// The next `/sync` answer is a 200 whose body is not valid JSON.
    pub fn malformed_next_sync(&self) {
        self.twin.lock().malformed_next = true;
        self.bump();
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

// ---------------------------------------------------------------------------------------------
// The homeserver's state
// ---------------------------------------------------------------------------------------------

impl Inner {
    /// 32 bytes nobody can guess in a test (unique per twin and call).
    fn mint(&mut self) -> [u8; 32] {
        self.counter += 1;
        let d =
            digest::digest(&digest::SHA256, format!("{}:{}:{}", self.server_name, self.seed, self.counter).as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        out
    }

    fn letters(&mut self, n: usize, alphabet: &[u8]) -> String {
        self.mint().iter().take(n).map(|b| alphabet[*b as usize % alphabet.len()] as char).collect()
    }

    fn new_event_id(&mut self) -> String {
        format!("${}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.mint()))
    }

    fn new_room_id(&mut self) -> String {
        let l = self.letters(18, b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ");
        format!("!{l}:{}", self.server_name)
    }

    fn batch_token(&self, pos: u64) -> String {
        format!("s{pos}_{}", self.seed % 10_000)
    }

    fn ensure_account(&mut self, user_id: &str) {
        if !self.accounts.contains_key(user_id) {
            let (token, _) = self.issue_session(user_id, None);
            self.accounts.insert(user_id.into(), Account { password: None, token, account_data: BTreeMap::new() });
        }
    }

    /// A new access token on `device_id` (a new device when `None`; the device's old tokens are
    /// invalidated when given).
    fn issue_session(&mut self, user_id: &str, device_id: Option<String>) -> (String, String) {
        let device_id = match device_id {
            Some(d) => {
                for s in self.sessions.values_mut() {
                    if s.user_id == user_id && s.device_id == d && s.state == TokenState::Valid {
                        s.state = TokenState::Revoked;
                    }
                }
                d
            }
            None => self.letters(10, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
        };
        let lp = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(localpart(user_id));
        let secret = self.letters(20, b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
        let token = format!("syt_{lp}_{secret}");
        self.sessions.insert(
            token.clone(),
            Session { user_id: user_id.into(), device_id: device_id.clone(), state: TokenState::Valid },
        );
        (token, device_id)
    }

    fn put_account_data(&mut self, user_id: &str, ty: &str, content: Value) {
        self.ensure_account(user_id);
        self.pos += 1;
        let pos = self.pos;
        if let Some(a) = self.accounts.get_mut(user_id) {
            a.account_data.insert(ty.into(), (pos, content));
        }
    }

    fn member_content(&self, user_id: &str, membership: &str) -> Value {
        json!({"membership": membership, "displayname": localpart(user_id)})
    }

    fn create_room(&mut self, room_id: &str, creator: &str, is_direct: bool, join_rule: &str) {
        self.rooms.insert(
            room_id.into(),
            RoomState {
                creator: creator.into(),
                is_direct,
                timeline: Vec::new(),
                state: BTreeMap::new(),
                typing: BTreeMap::new(),
                typing_pos: 0,
            },
        );
        self.append(room_id, "m.room.create", creator, Some(""), json!({"room_version": "11"}), None);
        let member = self.member_content(creator, "join");
        self.append(room_id, MEMBER, creator, Some(creator), member, None);
        let mut users = Map::new();
        users.insert(creator.into(), 100.into());
        let power = json!({
            "users": users, "users_default": 0, "events_default": 0, "state_default": 50,
            "ban": 50, "kick": 50, "redact": 50, "invite": 0,
            "events": {"m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
                "m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100,
                "m.room.server_acl": 100, "m.room.encryption": 100},
        });
        self.append(room_id, "m.room.power_levels", creator, Some(""), power, None);
        self.append(room_id, "m.room.join_rules", creator, Some(""), json!({"join_rule": join_rule}), None);
        self.append(
            room_id,
            "m.room.history_visibility",
            creator,
            Some(""),
            json!({"history_visibility": "shared"}),
            None,
        );
    }

    /// Appends an event at the next stream position; returns its index and ID.
    fn append(
        &mut self,
        room_id: &str,
        ty: &str,
        sender: &str,
        state_key: Option<&str>,
        content: Value,
        txn: Option<(String, String, String)>,
    ) -> (usize, String) {
        let event_id = self.new_event_id();
        let mut event = json!({
            "event_id": event_id, "type": ty, "sender": sender, "origin_server_ts": now_ms(), "content": content,
        });
        if let Some(k) = state_key {
            event["state_key"] = k.into();
        }
        if ty == "m.room.redaction"
            && let Some(r) = event["content"].get("redacts").cloned()
        {
            // Room version 11 keeps `redacts` in `content`; servers also serve it at the top level.
            event["redacts"] = r;
        }
        (self.push_event(room_id, event, txn), event_id)
    }

    fn push_event(&mut self, room_id: &str, event: Value, txn: Option<(String, String, String)>) -> usize {
        self.pos += 1;
        let idx = self.events.len();
        let stored = Stored { pos: self.pos, room_id: room_id.into(), event, txn, redacted_by: None };
        let key = stored.state_key().map(|k| (stored.ty().to_string(), k.to_string()));
        self.event_index.insert(stored.event_id().to_string(), idx);
        self.events.push(stored);
        if let Some(room) = self.rooms.get_mut(room_id) {
            room.timeline.push(idx);
            if let Some(key) = key {
                if key.0 == MEMBER
                    && self.events[idx].event["content"]["membership"] != "join"
                    && room.typing.remove(&key.1).is_some()
                {
                    room.typing_pos = self.pos;
                }
                room.state.insert(key, idx);
            }
        }
        idx
    }

    fn append_raw(&mut self, room_id: &str, mut event: Value) -> String {
        if !event.is_object() {
            event = json!({"type": "m.room.message", "content": event});
        }
        if event.get("event_id").is_none() {
            event["event_id"] = self.new_event_id().into();
        }
        if event.get("origin_server_ts").is_none() {
            event["origin_server_ts"] = now_ms().into();
        }
        if event.get("sender").is_none() {
            event["sender"] = self.rooms[room_id].creator.clone().into();
        }
        if event.get("content").is_none() {
            event["content"] = json!({});
        }
        let id = event["event_id"].as_str().map(String::from).unwrap_or_default();
        self.push_event(room_id, event, None);
        id
    }

    /// Appends a redaction and marks its target; returns `(index, event_id)`.
    fn redact(
        &mut self,
        room_id: &str,
        sender: &str,
        target: &str,
        reason: Option<&str>,
        txn: Option<(String, String, String)>,
    ) -> (usize, String) {
        let mut content = json!({"redacts": target});
        if let Some(r) = reason {
            content["reason"] = r.into();
        }
        let (idx, id) = self.append(room_id, "m.room.redaction", sender, None, content, txn);
        if let Some(&t) = self.event_index.get(target)
            && self.events[t].room_id == room_id
            && self.events[t].redacted_by.is_none()
        {
            self.events[t].redacted_by = Some(idx);
        }
        (idx, id)
    }

    fn set_typing(&mut self, room_id: &str, user_id: &str, typing: bool) -> u64 {
        self.typing_serial += 1;
        let serial = self.typing_serial;
        self.pos += 1;
        let pos = self.pos;
        if let Some(room) = self.rooms.get_mut(room_id) {
            if typing {
                room.typing.insert(user_id.into(), serial);
            } else {
                room.typing.remove(user_id);
            }
            room.typing_pos = pos;
        }
        serial
    }

    fn store_media(
        &mut self,
        bytes: Vec<u8>,
        content_type: &str,
        filename: Option<String>,
        who: Option<&str>,
    ) -> String {
        let id = self.letters(24, b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
        let content_uri = format!("mxc://{}/{id}", self.server_name);
        self.media.insert(
            id.clone(),
            Media {
                content_uri: content_uri.clone(),
                content_type: content_type.into(),
                filename,
                bytes,
                uploader: who.map(String::from),
            },
        );
        if who.is_some() {
            self.uploads.push(id);
        }
        content_uri
    }

    fn membership(&self, room_id: &str, user_id: &str) -> Option<String> {
        let room = self.rooms.get(room_id)?;
        let &i = room.state.get(&(MEMBER.to_string(), user_id.to_string()))?;
        self.events[i].event["content"]["membership"].as_str().map(String::from)
    }

    fn is_encrypted(&self, room_id: &str) -> bool {
        self.rooms.get(room_id).is_some_and(|r| r.state.contains_key(&("m.room.encryption".to_string(), String::new())))
    }

    fn state_content(&self, room_id: &str, ty: &str, key: &str) -> Option<&Value> {
        let room = self.rooms.get(room_id)?;
        let &i = room.state.get(&(ty.to_string(), key.to_string()))?;
        Some(&self.events[i].event["content"])
    }

    fn power_level(&self, room_id: &str, user_id: &str) -> i64 {
        let Some(pl) = self.state_content(room_id, "m.room.power_levels", "") else { return 0 };
        pl["users"][user_id].as_i64().or_else(|| pl["users_default"].as_i64()).unwrap_or(0)
    }

    /// The power level needed for `key` (`state_default`, `redact`, …), or for an event type.
    fn required_level(&self, room_id: &str, key: &str, event_type: Option<&str>) -> i64 {
        let Some(pl) = self.state_content(room_id, "m.room.power_levels", "") else { return 0 };
        if let Some(t) = event_type
            && let Some(l) = pl["events"][t].as_i64()
        {
            return l;
        }
        pl[key].as_i64().unwrap_or(if key == "invite" || key == "events_default" { 0 } else { 50 })
    }

    /// An event in client format with `room_id` (and without `unsigned`).
    fn full_event(&self, idx: usize) -> Value {
        let mut e = self.events[idx].event.clone();
        e["room_id"] = self.events[idx].room_id.clone().into();
        e
    }

    /// An event as served to `who`: redacted when redacted, with `unsigned`.
    fn client_event(&self, idx: usize, who: &Who, now: u64) -> Value {
        let s = &self.events[idx];
        let mut e = s.event.clone();
        let ts = e["origin_server_ts"].as_u64().unwrap_or(now);
        let mut unsigned = Map::new();
        unsigned.insert("age".into(), now.saturating_sub(ts).into());
        if let Some((user, device, txn)) = &s.txn
            && *user == who.user_id
            && *device == who.device_id
        {
            unsigned.insert("transaction_id".into(), txn.clone().into());
        }
        if let Some(r) = s.redacted_by {
            e["content"] = redacted_content(s.ty(), &s.event["content"]);
            let mut because = self.events[r].event.clone();
            because["unsigned"] =
                json!({"age": now.saturating_sub(because["origin_server_ts"].as_u64().unwrap_or(now))});
            unsigned.insert("redacted_because".into(), because);
        }
        e["unsigned"] = Value::Object(unsigned);
        e
    }
}

/// The content the redaction algorithm of room version 11 keeps.
fn redacted_content(ty: &str, content: &Value) -> Value {
    let keep: &[&str] = match ty {
        "m.room.member" => &["membership", "join_authorised_via_users_server"],
        "m.room.create" => return content.clone(),
        "m.room.join_rules" => &["join_rule", "allow"],
        "m.room.power_levels" => {
            &["ban", "events", "events_default", "invite", "kick", "redact", "state_default", "users", "users_default"]
        }
        "m.room.history_visibility" => &["history_visibility"],
        "m.room.redaction" => &["redacts"],
        _ => &[],
    };
    let mut out = Map::new();
    for k in keep {
        if let Some(v) = content.get(*k) {
            out.insert((*k).into(), v.clone());
        }
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------------------------
// /sync
// ---------------------------------------------------------------------------------------------

/// Parses a `next_batch` token of this twin: `s<position>_<anything>`.
fn parse_batch(token: &str) -> Option<u64> {
    let (pos, _) = token.strip_prefix('s')?.split_once('_')?;
    if pos.is_empty() || !pos.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pos.parse().ok()
}

/// The state at the start of `timeline[start..]`: the latest state event of each key before it.
fn state_before(g: &Inner, timeline: &[usize], start: usize) -> Vec<usize> {
    let mut state: BTreeMap<(String, String), usize> = BTreeMap::new();
    for &i in &timeline[..start] {
        if let Some(k) = g.events[i].state_key() {
            state.insert((g.events[i].ty().to_string(), k.to_string()), i);
        }
    }
    let mut out: Vec<usize> = state.into_values().collect();
    out.sort_unstable();
    out
}

/// The state changes within `timeline[from..to]` (the gap a `limited` timeline skipped).
fn state_between(g: &Inner, timeline: &[usize], from: usize, to: usize) -> Vec<usize> {
    let mut state: BTreeMap<(String, String), usize> = BTreeMap::new();
    for &i in &timeline[from..to] {
        if let Some(k) = g.events[i].state_key() {
            state.insert((g.events[i].ty().to_string(), k.to_string()), i);
        }
    }
    let mut out: Vec<usize> = state.into_values().collect();
    out.sort_unstable();
    out
}

struct SyncParams {
    since: Option<u64>,
    full_state: bool,
    limit: usize,
}

/// The `/sync` answer for `who`, and whether it holds anything new.
fn build_sync(g: &Inner, who: &Who, p: &SyncParams) -> (Value, bool) {
    let now = now_ms();
    let mut join = Map::new();
    let mut invite = Map::new();
    let mut leave = Map::new();
    for (room_id, room) in &g.rooms {
        let Some(&midx) = room.state.get(&(MEMBER.to_string(), who.user_id.clone())) else { continue };
        let member = &g.events[midx];
        let changed = p.since.is_none_or(|s| member.pos > s);
        match member.event["content"]["membership"].as_str().unwrap_or("") {
            "join" => {
                if let Some(r) = joined_room(g, room, who, p, changed, now) {
                    join.insert(room_id.clone(), r);
                }
            }
            "invite" if changed => {
                invite.insert(room_id.clone(), json!({"invite_state": {"events": stripped_state(g, room, midx)}}));
            }
            "leave" | "ban" if changed && p.since.is_some() => {
                leave.insert(room_id.clone(), left_room(g, room, who, p.since.unwrap_or(0), midx, now));
            }
            _ => {}
        }
    }
    let mut account_data = Vec::new();
    if let Some(a) = g.accounts.get(&who.user_id) {
        for (ty, (pos, content)) in &a.account_data {
            if p.since.is_none_or(|s| *pos > s) {
                account_data.push(json!({"type": ty, "content": content}));
            }
        }
    }
    let has = !join.is_empty() || !invite.is_empty() || !leave.is_empty() || !account_data.is_empty();
    let body = json!({
        "next_batch": g.batch_token(g.pos),
        "rooms": {"join": join, "invite": invite, "leave": leave, "knock": {}},
        "account_data": {"events": account_data},
        "presence": {"events": []},
        "to_device": {"events": []},
        "device_lists": {"changed": [], "left": []},
        "device_one_time_keys_count": {},
    });
    (body, has)
}

fn joined_room(g: &Inner, room: &RoomState, who: &Who, p: &SyncParams, newly: bool, now: u64) -> Option<Value> {
    let tl = &room.timeline;
    let (start, state, limited) = match p.since {
        Some(s) if !newly => {
            let first_new = tl.partition_point(|&i| g.events[i].pos <= s);
            let n_new = tl.len() - first_new;
            let start = first_new + n_new.saturating_sub(p.limit);
            let state = if p.full_state { state_before(g, tl, start) } else { state_between(g, tl, first_new, start) };
            (start, state, n_new > p.limit)
        }
        // The first sync, or a room joined since: its state and latest events.
        _ => {
            let start = tl.len().saturating_sub(p.limit);
            (start, state_before(g, tl, start), start > 0)
        }
    };
    let timeline = &tl[start..];
    let typing_changed = p.since.is_none_or(|s| room.typing_pos > s);
    if p.since.is_some() && !newly && !p.full_state && timeline.is_empty() && !typing_changed {
        return None;
    }
    let mut ephemeral = Vec::new();
    if typing_changed && (p.since.is_some() || !room.typing.is_empty()) {
        ephemeral.push(json!({"type": "m.typing", "content": {"user_ids": room.typing.keys().collect::<Vec<_>>()}}));
    }
    let prev_pos = timeline.first().map(|&i| g.events[i].pos.saturating_sub(1)).unwrap_or(g.pos);
    let (mut joined, mut invited, mut heroes) = (0, 0, Vec::new());
    for ((ty, key), &i) in &room.state {
        if ty != MEMBER {
            continue;
        }
        match g.events[i].event["content"]["membership"].as_str() {
            Some("join") => joined += 1,
            Some("invite") => invited += 1,
            _ => continue,
        }
        if *key != who.user_id && heroes.len() < 5 {
            heroes.push(key.clone());
        }
    }
    Some(json!({
        "summary": {"m.heroes": heroes, "m.joined_member_count": joined, "m.invited_member_count": invited},
        "state": {"events": state.iter().map(|&i| g.client_event(i, who, now)).collect::<Vec<_>>()},
        "timeline": {
            "events": timeline.iter().map(|&i| g.client_event(i, who, now)).collect::<Vec<_>>(),
            "limited": limited,
            "prev_batch": format!("t{prev_pos}_{}", g.seed % 10_000),
        },
        "ephemeral": {"events": ephemeral},
        "account_data": {"events": []},
        "unread_notifications": {"highlight_count": 0, "notification_count": 0},
    }))
}

/// The stripped state of an invite: the spec's recommended keys and the invite itself.
fn stripped_state(g: &Inner, room: &RoomState, invite_idx: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for ty in [
        "m.room.create",
        "m.room.join_rules",
        "m.room.name",
        "m.room.avatar",
        "m.room.topic",
        "m.room.canonical_alias",
        "m.room.encryption",
    ] {
        if let Some(&i) = room.state.get(&(ty.to_string(), String::new())) {
            out.push(stripped(&g.events[i]));
        }
    }
    out.push(stripped(&g.events[invite_idx]));
    out
}

fn stripped(e: &Stored) -> Value {
    json!({"type": e.ty(), "state_key": e.state_key().unwrap_or(""), "sender": e.sender(), "content": e.event["content"]})
}

/// A room left since `since`: the events up to the leave when joined before, else the leave.
fn left_room(g: &Inner, room: &RoomState, who: &Who, since: u64, leave_idx: usize, now: u64) -> Value {
    let was_joined = room
        .timeline
        .iter()
        .rev()
        .map(|&i| &g.events[i])
        .find(|e| e.pos <= since && e.ty() == MEMBER && e.state_key() == Some(who.user_id.as_str()))
        .is_some_and(|e| e.event["content"]["membership"] == "join");
    let leave_pos = g.events[leave_idx].pos;
    let events: Vec<Value> = if was_joined {
        room.timeline
            .iter()
            .filter(|&&i| g.events[i].pos > since && g.events[i].pos <= leave_pos)
            .map(|&i| g.client_event(i, who, now))
            .collect()
    } else {
        vec![g.client_event(leave_idx, who, now)]
    };
    json!({
        "state": {"events": []},
        "timeline": {"events": events, "limited": false, "prev_batch": format!("t{since}_{}", g.seed % 10_000)},
        "account_data": {"events": []},
    })
}

/// Puts the timeline events of `prev` in front of those of `body` (a buggy duplicate batch).
fn merge_duplicate(body: &mut Value, prev: &Value) {
    let Some(prev_rooms) = prev["rooms"]["join"].as_object() else { return };
    for (room_id, prev_room) in prev_rooms {
        let old: Vec<Value> = prev_room["timeline"]["events"].as_array().cloned().unwrap_or_default();
        if old.is_empty() {
            continue;
        }
        let join = &mut body["rooms"]["join"];
        if join.get(room_id).is_none() {
            join[room_id] = json!({"timeline": {"events": [], "limited": false, "prev_batch": prev_room["timeline"]["prev_batch"]},
                "state": {"events": []}, "ephemeral": {"events": []}, "account_data": {"events": []}});
        }
        let events = &mut join[room_id]["timeline"]["events"];
        let new: Vec<Value> = events.as_array().cloned().unwrap_or_default();
        let mut merged = old;
        merged.extend(
            new.into_iter().filter(|e| !prev_room["timeline"]["events"].as_array().is_some_and(|o| o.contains(e))),
        );
        *events = Value::Array(merged);
    }
}

/// The timeline limit of a `filter` parameter (inline JSON or a filter ID).
fn resolve_filter(g: &Inner, user_id: &str, filter: Option<&str>) -> Result<usize, Outcome> {
    let Some(f) = filter else { return Ok(DEFAULT_TIMELINE_LIMIT) };
    let value = if f.trim_start().starts_with('{') {
        serde_json::from_str::<Value>(f).map_err(|_| mx(400, "M_NOT_JSON", "Invalid filter JSON"))?
    } else {
        if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
            return Err(mx(400, "M_INVALID_PARAM", "Invalid filter ID"));
        }
        g.filters
            .get(&(user_id.to_string(), f.to_string()))
            .cloned()
            .ok_or_else(|| mx(404, "M_NOT_FOUND", "No such filter"))?
    };
    filter_limit(&value)
}

fn filter_limit(filter: &Value) -> Result<usize, Outcome> {
    if !filter.is_object() {
        return Err(mx(400, "M_BAD_JSON", "Filter must be a JSON object"));
    }
    match filter.pointer("/room/timeline/limit") {
        None | Some(Value::Null) => Ok(DEFAULT_TIMELINE_LIMIT),
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => Ok(n.min(1000) as usize),
            _ => Err(mx(400, "M_BAD_JSON", "room.timeline.limit must be an integer greater than 0")),
        },
    }
}

async fn sync(twin: &Shared, who: Who, query: &[(String, String)]) -> Outcome {
    let param = |k: &str| query.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let timeout = match param("timeout") {
        None => 0,
        Some(t) => match t.parse::<u64>() {
            Ok(v) => v.min(DAY_MS),
            Err(_) => return mx(400, "M_INVALID_PARAM", "Query parameter \"timeout\" must be an integer"),
        },
    };
    let full_state = match param("full_state") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return mx(
                400,
                "M_INVALID_PARAM",
                "Boolean query parameter \"full_state\" must be one of [\"true\", \"false\"]",
            );
        }
    };
    if let Some(p) = param("set_presence")
        && !matches!(p, "online" | "offline" | "unavailable")
    {
        return mx(
            400,
            "M_INVALID_PARAM",
            "Query parameter \"set_presence\" must be one of [online, offline, unavailable]",
        );
    }
    let since_raw = param("since").map(String::from);
    let params = {
        let mut g = twin.lock();
        g.syncs += 1;
        g.last_since = since_raw.clone();
        if g.drop_syncs > 0 {
            g.drop_syncs -= 1;
            return Outcome::Drop;
        }
        if g.stall_sync {
            return Outcome::Stall;
        }
        let since = match &since_raw {
            None => None,
            Some(s) => match parse_batch(s) {
                // Synapse bounds a token from the future to its current position.
                Some(pos) => Some(pos.min(g.pos)),
                None => return mx(400, "M_UNKNOWN", "Invalid stream token"),
            },
        };
        let limit = match resolve_filter(&g, &who.user_id, param("filter")) {
            Ok(l) => l,
            Err(o) => return o,
        };
        SyncParams { since, full_state, limit }
    };
    // Like Synapse, a first sync (no `since`) and `full_state` answer at once.
    let wait = params.since.is_some() && !full_state && timeout > 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(if wait { timeout } else { 0 });
    let mut rx = twin.changed.subscribe();
    loop {
        {
            let mut g = twin.lock();
            if twin.closed.load(Ordering::SeqCst) {
                return Outcome::Drop;
            }
            if g.malformed_next {
                g.malformed_next = false;
                return Outcome::Garbage;
            }
            if g.duplicate_next {
                g.duplicate_next = false;
                // A new position, so the next_batch differs from the previous answer's.
                g.pos += 1;
                let (mut body, _) = build_sync(&g, &who, &params);
                if let Some(prev) = g.last_sync.get(&who.token) {
                    merge_duplicate(&mut body, prev);
                }
                g.last_sync.insert(who.token.clone(), body.clone());
                return Outcome::Json(200, body);
            }
            let (body, has) = build_sync(&g, &who, &params);
            if has || !wait || tokio::time::Instant::now() >= deadline {
                g.last_sync.insert(who.token.clone(), body.clone());
                return Outcome::Json(200, body);
            }
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return Outcome::Drop },
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP entry point: routing, faults, authentication
// ---------------------------------------------------------------------------------------------

enum Outcome {
    Json(u16, Value),
    /// A JSON answer with `Retry-After: <seconds>`.
    JsonRetry(u16, Value, u64),
    Media {
        content_type: String,
        disposition: String,
        bytes: Vec<u8>,
    },
    Garbage,
    Drop,
    Stall,
}

/// A standard error response.
fn mx(status: u16, errcode: &str, error: impl Into<String>) -> Outcome {
    Outcome::Json(status, json!({"errcode": errcode, "error": error.into()}))
}

fn forbidden(error: impl Into<String>) -> Outcome {
    mx(403, "M_FORBIDDEN", error)
}

fn not_in_room(user: &str, room: &str) -> Outcome {
    forbidden(format!("User {user} not in room {room}"))
}

enum Route {
    Versions,
    LoginFlows,
    Login,
    Logout,
    Whoami,
    Sync,
    FilterPost { user: String },
    FilterGet { user: String, id: String },
    AccountDataGet { user: String, ty: String },
    AccountDataPut { user: String, ty: String },
    CreateRoom,
    JoinedRooms,
    JoinAny { target: String },
    JoinRoom { room: String },
    Leave { room: String },
    Invite { room: String },
    Send { room: String, ty: String, txn: String },
    State { room: String, ty: String, key: String },
    Redact { room: String, event: String, txn: String },
    Typing { room: String, user: String },
    Receipt { room: String, rtype: String, event: String },
    ReadMarkers { room: String },
    GetEvent { room: String, event: String },
    JoinedMembers { room: String },
    Upload,
    Download { server: String, media: String, file: Option<String> },
    LegacyDownload,
    MediaConfig,
}

impl Route {
    /// The short name used by faults, rate limits and [`Call::endpoint`].
    fn endpoint(&self) -> &'static str {
        match self {
            Route::Versions => "versions",
            Route::LoginFlows | Route::Login => "login",
            Route::Logout => "logout",
            Route::Whoami => "whoami",
            Route::Sync => "sync",
            Route::FilterPost { .. } | Route::FilterGet { .. } => "filter",
            Route::AccountDataGet { .. } | Route::AccountDataPut { .. } => "account_data",
            Route::CreateRoom => "createRoom",
            Route::JoinedRooms => "joined_rooms",
            Route::JoinAny { .. } | Route::JoinRoom { .. } => "join",
            Route::Leave { .. } => "leave",
            Route::Invite { .. } => "invite",
            Route::Send { .. } => "send",
            Route::State { .. } => "state",
            Route::Redact { .. } => "redact",
            Route::Typing { .. } => "typing",
            Route::Receipt { .. } => "receipt",
            Route::ReadMarkers { .. } => "read_markers",
            Route::GetEvent { .. } => "event",
            Route::JoinedMembers { .. } => "joined_members",
            Route::Upload => "upload",
            Route::Download { .. } | Route::LegacyDownload => "download",
            Route::MediaConfig => "media_config",
        }
    }

    fn needs_auth(&self) -> bool {
        !matches!(self, Route::Versions | Route::LoginFlows | Route::Login | Route::LegacyDownload)
    }

    /// Whether the body must be a JSON object.
    fn json_body(&self) -> bool {
        matches!(
            self,
            Route::Login
                | Route::FilterPost { .. }
                | Route::AccountDataPut { .. }
                | Route::CreateRoom
                | Route::JoinAny { .. }
                | Route::JoinRoom { .. }
                | Route::Leave { .. }
                | Route::Invite { .. }
                | Route::Send { .. }
                | Route::State { .. }
                | Route::Redact { .. }
                | Route::Typing { .. }
                | Route::Receipt { .. }
                | Route::ReadMarkers { .. }
        )
    }
}

/// Decodes `%XX` escapes of one path segment (`+` stays `+`).
fn pct_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' if plus_is_space => out.push(b' '),
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

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (pct_decode(k, true), pct_decode(v, true))
        })
        .collect()
}

/// Finds the route of a request: `Err(404)` for an unknown path, `Err(405)` for a wrong method.
fn route(method: &Method, path: &str) -> Result<Route, u16> {
    let segs: Vec<String> = path.trim_start_matches('/').split('/').map(|s| pct_decode(s, false)).collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = method.as_str();
    let want = |ok: &str, r: Route| if m == ok { Ok(r) } else { Err(405) };
    let o = |x: &&str| x.to_string();
    match s.as_slice() {
        ["_matrix", "client", "versions"] => want("GET", Route::Versions),
        ["_matrix", "client", "v3", rest @ ..] => match rest {
            ["login"] => match m {
                "GET" => Ok(Route::LoginFlows),
                "POST" => Ok(Route::Login),
                _ => Err(405),
            },
            ["logout"] => want("POST", Route::Logout),
            ["account", "whoami"] => want("GET", Route::Whoami),
            ["sync"] => want("GET", Route::Sync),
            ["user", user, "filter"] => want("POST", Route::FilterPost { user: o(user) }),
            ["user", user, "filter", id] => want("GET", Route::FilterGet { user: o(user), id: o(id) }),
            ["user", user, "account_data", ty] => match m {
                "GET" => Ok(Route::AccountDataGet { user: o(user), ty: o(ty) }),
                "PUT" => Ok(Route::AccountDataPut { user: o(user), ty: o(ty) }),
                _ => Err(405),
            },
            ["createRoom"] => want("POST", Route::CreateRoom),
            ["joined_rooms"] => want("GET", Route::JoinedRooms),
            ["join", target] => want("POST", Route::JoinAny { target: o(target) }),
            ["rooms", room, "join"] => want("POST", Route::JoinRoom { room: o(room) }),
            ["rooms", room, "leave"] => want("POST", Route::Leave { room: o(room) }),
            ["rooms", room, "invite"] => want("POST", Route::Invite { room: o(room) }),
            ["rooms", room, "send", ty, txn] => want("PUT", Route::Send { room: o(room), ty: o(ty), txn: o(txn) }),
            ["rooms", room, "state", ty] => want("PUT", Route::State { room: o(room), ty: o(ty), key: String::new() }),
            ["rooms", room, "state", ty, key] => want("PUT", Route::State { room: o(room), ty: o(ty), key: o(key) }),
            ["rooms", room, "redact", event, txn] => {
                want("PUT", Route::Redact { room: o(room), event: o(event), txn: o(txn) })
            }
            ["rooms", room, "typing", user] => want("PUT", Route::Typing { room: o(room), user: o(user) }),
            ["rooms", room, "receipt", rtype, event] => {
                want("POST", Route::Receipt { room: o(room), rtype: o(rtype), event: o(event) })
            }
            ["rooms", room, "read_markers"] => want("POST", Route::ReadMarkers { room: o(room) }),
            ["rooms", room, "event", event] => want("GET", Route::GetEvent { room: o(room), event: o(event) }),
            ["rooms", room, "joined_members"] => want("GET", Route::JoinedMembers { room: o(room) }),
            _ => Err(404),
        },
        ["_matrix", "client", "v1", "media", "download", server, media] => {
            want("GET", Route::Download { server: o(server), media: o(media), file: None })
        }
        ["_matrix", "client", "v1", "media", "download", server, media, file] => {
            want("GET", Route::Download { server: o(server), media: o(media), file: Some(o(file)) })
        }
        ["_matrix", "client", "v1", "media", "config"] => want("GET", Route::MediaConfig),
        ["_matrix", "media", "v3", "upload"] => want("POST", Route::Upload),
        ["_matrix", "media", "v3", "download", ..] => want("GET", Route::LegacyDownload),
        _ => Err(404),
    }
}

/// Whether a fault or limit naming `spec` applies to a call of `endpoint` on `path`.
fn spec_matches(spec: &str, endpoint: &str, path: &str) -> bool {
    if spec.starts_with('/') { path.starts_with(spec) } else { spec == "*" || spec == endpoint }
}

fn scripted_outcome(s: &Scripted) -> Outcome {
    let error = match s.errcode.as_str() {
        "M_LIMIT_EXCEEDED" => "Too Many Requests",
        "M_UNKNOWN_TOKEN" => "Unrecognised access token.",
        "M_MISSING_TOKEN" => "Missing access token.",
        "M_FORBIDDEN" => "Forbidden",
        "M_NOT_FOUND" => "Not found",
        _ => match s.status {
            500 => "Internal server error",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Gateway Timeout",
            _ => "Scripted failure",
        },
    };
    let mut body = json!({"errcode": s.errcode, "error": error});
    if s.errcode == "M_UNKNOWN_TOKEN" {
        body["soft_logout"] = false.into();
    }
    match s.retry_after_ms {
        Some(ms) => {
            body["retry_after_ms"] = ms.into();
            Outcome::JsonRetry(s.status, body, ms.div_ceil(1000))
        }
        None => Outcome::Json(s.status, body),
    }
}

/// Reads the access token: `Ok((who, via))`, or the 401 to answer.
fn authenticate(
    g: &Inner,
    headers: &HeaderMap,
    query: &[(String, String)],
) -> Result<(Who, TokenVia), (Outcome, Option<TokenVia>)> {
    let header = headers.get("authorization").map(|v| v.to_str().unwrap_or("").to_string());
    let in_query = query.iter().find(|(k, _)| k == "access_token").map(|(_, v)| v.clone());
    let (token, via) = match (header, in_query) {
        (Some(_), Some(_)) => {
            return Err((
                mx(401, "M_MISSING_TOKEN", "Mixing Authorization headers and access_token query parameters."),
                None,
            ));
        }
        (Some(h), None) => match h.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") && !t.trim().is_empty() => {
                (t.trim().to_string(), TokenVia::Header)
            }
            _ => return Err((mx(401, "M_MISSING_TOKEN", "Invalid Authorization header."), Some(TokenVia::Header))),
        },
        (None, Some(t)) => (t, TokenVia::Query),
        (None, None) => return Err((mx(401, "M_MISSING_TOKEN", "Missing access token."), None)),
    };
    match g.sessions.get(&token) {
        Some(s) if s.state == TokenState::Valid => {
            Ok((Who { user_id: s.user_id.clone(), device_id: s.device_id.clone(), token }, via))
        }
        Some(s) if s.state == TokenState::Expired => Err((
            Outcome::Json(
                401,
                json!({"errcode": "M_UNKNOWN_TOKEN", "error": "Access token has expired", "soft_logout": true}),
            ),
            Some(via),
        )),
        _ => Err((
            Outcome::Json(
                401,
                json!({"errcode": "M_UNKNOWN_TOKEN", "error": "Unrecognised access token.", "soft_logout": false}),
            ),
            Some(via),
        )),
    }
}

/// Counts a call against the rate limits; the 429 to answer when over one.
fn rate_limited(g: &mut Inner, endpoint: &str, path: &str, key: &str) -> Option<Outcome> {
    let now = Instant::now();
    for r in g.rate_limits.iter_mut().filter(|r| spec_matches(&r.endpoint, endpoint, path)) {
        let hits = r.hits.entry(key.to_string()).or_default();
        while hits.front().is_some_and(|t| now.duration_since(*t) >= r.per) {
            hits.pop_front();
        }
        if hits.len() >= r.n as usize {
            let oldest = hits.front().copied().unwrap_or(now);
            let wait = r.per.saturating_sub(now.duration_since(oldest));
            let ms = (wait.as_millis() as u64).max(1);
            return Some(Outcome::JsonRetry(
                429,
                json!({"errcode": "M_LIMIT_EXCEEDED", "error": "Too Many Requests", "retry_after_ms": ms}),
                ms.div_ceil(1000),
            ));
        }
        hits.push_back(now);
    }
    None
}

/// The body of a JSON endpoint: a JSON object.
fn json_object(body: &[u8]) -> Result<Map<String, Value>, Outcome> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(mx(400, "M_BAD_JSON", "Content must be a JSON object.")),
        Err(_) => Err(mx(400, "M_NOT_JSON", "Content not JSON.")),
    }
}

struct Req<'a> {
    path: &'a str,
    query: Vec<(String, String)>,
    headers: &'a HeaderMap,
    body: &'a Bytes,
}

async fn handle(State(twin): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let req = Req { path: &path, query: parse_query(uri.query().unwrap_or("")), headers: &headers, body: &body };
    let routed = route(&method, &path);
    let logged = match &routed {
        Ok(Route::Upload) => json!({"len": body.len()}),
        _ => serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
    };
    let mut user_id = None;
    let mut token_via = None;
    let (endpoint, outcome) = if method == Method::OPTIONS {
        // CORS preflight: no endpoint logic.
        ("options", Outcome::Json(200, json!({})))
    } else {
        match routed {
            Err(status) => ("unrecognized", mx(status, "M_UNRECOGNIZED", "Unrecognized request")),
            Ok(r) => {
                let o = serve(&twin, &r, &req, &mut user_id, &mut token_via).await;
                (r.endpoint(), o)
            }
        }
    };
    let status = match &outcome {
        Outcome::Json(s, _) | Outcome::JsonRetry(s, _, _) => *s,
        Outcome::Media { .. } | Outcome::Garbage => 200,
        Outcome::Drop | Outcome::Stall => 0,
    };
    twin.lock().calls.push(Call {
        method: method.to_string(),
        path: path.clone(),
        endpoint: endpoint.into(),
        user_id,
        token_via,
        status,
        body: logged,
    });
    twin.bump();
    match outcome {
        Outcome::Json(status, body) => json_response(status, &body, None),
        Outcome::JsonRetry(status, body, secs) => json_response(status, &body, Some(secs)),
        Outcome::Media { content_type, disposition, bytes } => with_cors(Response::builder().status(200))
            .header("content-type", content_type)
            .header("content-disposition", disposition)
            .header(
                "content-security-policy",
                "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; object-src 'self';",
            )
            .header("cross-origin-resource-policy", "cross-origin")
            .body(Body::from(bytes))
            .unwrap_or_default(),
        Outcome::Garbage => with_cors(Response::builder().status(200))
            .header("content-type", "application/json")
            .body(Body::from("{\"next_batch\":\"s"))
            .unwrap_or_default(),
        Outcome::Drop => drop_connection(),
        Outcome::Stall => {
            let mut rx = twin.changed.subscribe();
            while !twin.closed.load(Ordering::SeqCst) {
                if rx.changed().await.is_err() {
                    break;
                }
            }
            drop_connection()
        }
    }
}

fn with_cors(b: axum::http::response::Builder) -> axum::http::response::Builder {
    b.header("access-control-allow-origin", "*")
        .header("access-control-allow-methods", "GET, POST, PUT, DELETE, OPTIONS")
        .header("access-control-allow-headers", "X-Requested-With, Content-Type, Authorization")
}

fn json_response(status: u16, body: &Value, retry_after_secs: Option<u64>) -> Response {
    let mut b = with_cors(Response::builder().status(status)).header("content-type", "application/json");
    if let Some(secs) = retry_after_secs {
        b = b.header("retry-after", secs.to_string());
    }
    b.body(Body::from(body.to_string())).unwrap_or_default()
}

/// Ends the connection's task without an HTTP answer: the connection is closed. Unwinding
/// without the panic hook keeps test output clean; tokio contains it to this connection.
fn drop_connection() -> ! {
    std::panic::resume_unwind(Box::new("matrix twin: connection dropped on purpose"))
}

/// Faults, authentication and rate limits, then the endpoint.
async fn serve(
    twin: &Shared,
    r: &Route,
    req: &Req<'_>,
    user_id: &mut Option<String>,
    token_via: &mut Option<TokenVia>,
) -> Outcome {
    let endpoint = r.endpoint();
    {
        let mut g = twin.lock();
        if let Some(i) = g.scripted.iter().position(|s| spec_matches(&s.endpoint, endpoint, req.path))
            && let Some(s) = g.scripted.remove(i)
        {
            if endpoint == "sync" {
                g.syncs += 1;
            }
            return scripted_outcome(&s);
        }
    }
    let who = if r.needs_auth() {
        let g = twin.lock();
        match authenticate(&g, req.headers, &req.query) {
            Ok((who, via)) => {
                *user_id = Some(who.user_id.clone());
                *token_via = Some(via);
                Some(who)
            }
            Err((o, via)) => {
                *token_via = via;
                return o;
            }
        }
    } else {
        None
    };
    {
        let mut g = twin.lock();
        let key = who.as_ref().map(|w| w.user_id.clone()).unwrap_or_else(|| "<anonymous>".into());
        if let Some(o) = rate_limited(&mut g, endpoint, req.path, &key) {
            return o;
        }
    }
    let body = if r.json_body() {
        match json_object(req.body) {
            Ok(b) => Some(b),
            Err(o) => return o,
        }
    } else {
        None
    };
    let body = body.unwrap_or_default();
    let result = match (r, who) {
        (Route::Sync, Some(who)) => return sync(twin, who, &req.query).await,
        (Route::Typing { room, user }, Some(who)) => typing(twin, &who, room, user, &body),
        (r, who) => {
            let mut g = twin.lock();
            dispatch(&mut g, r, who.as_ref(), req, &body)
        }
    };
    match result {
        Ok(v) => Outcome::Json(200, v),
        Err(o) => o,
    }
}

type Answer = Result<Value, Outcome>;

fn dispatch(g: &mut Inner, r: &Route, who: Option<&Who>, req: &Req<'_>, body: &Map<String, Value>) -> Answer {
    let me = || who.ok_or_else(|| mx(401, "M_MISSING_TOKEN", "Missing access token."));
    match r {
        Route::Versions => Ok(json!({
            "versions": ["v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11", "v1.12", "v1.13"],
            "unstable_features": {},
        })),
        Route::LoginFlows => Ok(json!({"flows": [{"type": "m.login.password"}]})),
        Route::Login => login(g, body),
        Route::Logout => {
            let w = me()?;
            if let Some(s) = g.sessions.get_mut(&w.token) {
                s.state = TokenState::Revoked;
            }
            Ok(json!({}))
        }
        Route::Whoami => {
            let w = me()?;
            Ok(json!({"user_id": w.user_id, "device_id": w.device_id, "is_guest": false}))
        }
        Route::Sync | Route::Typing { .. } => Err(mx(401, "M_MISSING_TOKEN", "Missing access token.")),
        Route::FilterPost { user } => {
            let w = me()?;
            if *user != w.user_id {
                return Err(forbidden("Cannot create filters for other users"));
            }
            let filter = Value::Object(body.clone());
            filter_limit(&filter)?;
            let id = g.next_filter.to_string();
            g.next_filter += 1;
            g.filters.insert((w.user_id.clone(), id.clone()), filter);
            Ok(json!({"filter_id": id}))
        }
        Route::FilterGet { user, id } => {
            let w = me()?;
            if *user != w.user_id {
                return Err(forbidden("Cannot get filters for other users"));
            }
            g.filters
                .get(&(w.user_id.clone(), id.clone()))
                .cloned()
                .ok_or_else(|| mx(404, "M_NOT_FOUND", "No such filter"))
        }
        Route::AccountDataGet { user, ty } => {
            let w = me()?;
            if *user != w.user_id {
                return Err(forbidden("Cannot get account data for other users."));
            }
            g.accounts
                .get(user)
                .and_then(|a| a.account_data.get(ty))
                .map(|(_, c)| c.clone())
                .ok_or_else(|| mx(404, "M_NOT_FOUND", "Account data not found"))
        }
        Route::AccountDataPut { user, ty } => {
            let w = me()?;
            if *user != w.user_id {
                return Err(forbidden("Cannot add account data for other users."));
            }
            if ty == "m.fully_read" || ty == "m.push_rules" {
                return Err(mx(405, "M_BAD_JSON", format!("Cannot set {ty} through this API.")));
            }
            g.put_account_data(user, ty, Value::Object(body.clone()));
            Ok(json!({}))
        }
        Route::CreateRoom => create_room_api(g, me()?, body),
        Route::JoinedRooms => {
            let w = me()?;
            let rooms: Vec<String> =
                g.rooms.keys().filter(|r| g.membership(r, &w.user_id).as_deref() == Some("join")).cloned().collect();
            Ok(json!({"joined_rooms": rooms}))
        }
        Route::JoinAny { target } => {
            let room = if target.starts_with('#') {
                g.aliases
                    .get(target)
                    .cloned()
                    .ok_or_else(|| mx(404, "M_NOT_FOUND", format!("Room alias {target} not found")))?
            } else if target.starts_with('!') {
                target.clone()
            } else {
                return Err(mx(400, "M_INVALID_PARAM", format!("{target:?} was not legal room ID or room alias")));
            };
            join_api(g, me()?, &room, target)
        }
        Route::JoinRoom { room } => {
            if !room.starts_with('!') {
                return Err(mx(400, "M_INVALID_PARAM", format!("{room:?} was not legal room ID")));
            }
            join_api(g, me()?, room, room)
        }
        Route::Leave { room } => leave_api(g, me()?, room),
        Route::Invite { room } => invite_api(g, me()?, room, body),
        Route::Send { room, ty, txn } => send_api(g, me()?, room, ty, txn, body),
        Route::State { room, ty, key } => state_api(g, me()?, room, ty, key, body),
        Route::Redact { room, event, txn } => redact_api(g, me()?, room, event, txn, body),
        Route::Receipt { room, rtype, event } => {
            let w = me()?;
            if !matches!(rtype.as_str(), "m.read" | "m.read.private" | "m.fully_read") {
                return Err(mx(
                    400,
                    "M_INVALID_PARAM",
                    format!("Receipt type must be 'm.read', 'm.read.private' or 'm.fully_read', not {rtype:?}"),
                ));
            }
            joined(g, w, room)?;
            let thread_id = body.get("thread_id").and_then(Value::as_str).map(String::from);
            g.receipts.push(Receipt {
                room_id: room.clone(),
                user_id: w.user_id.clone(),
                receipt_type: rtype.clone(),
                event_id: event.clone(),
                thread_id,
            });
            Ok(json!({}))
        }
        Route::ReadMarkers { room } => {
            joined(g, me()?, room)?;
            Ok(json!({}))
        }
        Route::GetEvent { room, event } => {
            let w = me()?;
            joined(g, w, room).map_err(|_| mx(404, "M_NOT_FOUND", "Event not found."))?;
            match g.event_index.get(event) {
                Some(&i) if g.events[i].room_id == *room => {
                    let mut e = g.client_event(i, w, now_ms());
                    e["room_id"] = room.clone().into();
                    Ok(e)
                }
                _ => Err(mx(404, "M_NOT_FOUND", "Event not found.")),
            }
        }
        Route::JoinedMembers { room } => {
            let w = me()?;
            joined(g, w, room)?;
            let mut joined_map = Map::new();
            for ((ty, key), &i) in &g.rooms[room].state {
                if ty == MEMBER && g.events[i].event["content"]["membership"] == "join" {
                    let c = &g.events[i].event["content"];
                    joined_map.insert(
                        key.clone(),
                        json!({"display_name": c["displayname"], "avatar_url": c.get("avatar_url")}),
                    );
                }
            }
            Ok(json!({"joined": joined_map}))
        }
        Route::Upload => upload(g, me()?, req),
        Route::Download { server, media, file } => {
            me()?;
            download(g, server, media, file.as_deref())
        }
        Route::LegacyDownload => Err(mx(404, "M_NOT_FOUND", "Not found")),
        Route::MediaConfig => {
            me()?;
            Ok(json!({"m.upload.size": g.max_upload}))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------------------------

fn login(g: &mut Inner, body: &Map<String, Value>) -> Answer {
    let ty = body.get("type").and_then(Value::as_str).ok_or_else(|| mx(400, "M_BAD_JSON", "Missing login type"))?;
    if ty != "m.login.password" {
        return Err(mx(400, "M_UNKNOWN", format!("Unknown login type {ty}")));
    }
    let user = match body.get("identifier") {
        Some(id) => {
            if id.get("type").and_then(Value::as_str) != Some("m.id.user") {
                return Err(mx(400, "M_UNKNOWN", "Unknown login identifier type"));
            }
            id.get("user")
                .and_then(Value::as_str)
                .ok_or_else(|| mx(400, "M_MISSING_PARAM", "User identifier is missing 'user' key"))?
        }
        // Deprecated in favour of `identifier`, still part of the spec.
        None => {
            body.get("user").and_then(Value::as_str).ok_or_else(|| mx(400, "M_MISSING_PARAM", "Missing identifier"))?
        }
    };
    let password = match body.get("password") {
        Some(Value::String(p)) => p,
        Some(_) => return Err(mx(400, "M_BAD_JSON", "password must be a string")),
        None => return Err(mx(400, "M_MISSING_PARAM", "Missing password")),
    };
    let device_id = match body.get("device_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) if !d.is_empty() => Some(d.clone()),
        Some(_) => return Err(mx(400, "M_BAD_JSON", "device_id must be a non-empty string")),
    };
    let user_id = if user.starts_with('@') { user.to_string() } else { format!("@{user}:{}", g.server_name) };
    let ok = g.accounts.get(&user_id).and_then(|a| a.password.as_deref()) == Some(password.as_str());
    if !ok {
        return Err(forbidden("Invalid username or password"));
    }
    let (token, device_id) = g.issue_session(&user_id, device_id);
    Ok(json!({"user_id": user_id, "access_token": token, "device_id": device_id}))
}

fn joined(g: &Inner, w: &Who, room: &str) -> Result<(), Outcome> {
    if g.membership(room, &w.user_id).as_deref() == Some("join") { Ok(()) } else { Err(not_in_room(&w.user_id, room)) }
}

fn create_room_api(g: &mut Inner, w: &Who, body: &Map<String, Value>) -> Answer {
    let str_field = |k: &str| -> Result<Option<String>, Outcome> {
        match body.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(mx(400, "M_BAD_JSON", format!("{k} must be a string"))),
        }
    };
    let preset = str_field("preset")?;
    let visibility = str_field("visibility")?;
    let join_rule = match preset.as_deref() {
        Some("public_chat") => "public",
        Some("private_chat") | Some("trusted_private_chat") => "invite",
        Some(p) => return Err(mx(400, "M_BAD_JSON", format!("Unknown preset {p}"))),
        None if visibility.as_deref() == Some("public") => "public",
        None => "invite",
    };
    let is_direct = body.get("is_direct").and_then(Value::as_bool).unwrap_or(false);
    let invites: Vec<String> = match body.get("invite") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str().map(String::from).ok_or_else(|| mx(400, "M_BAD_JSON", "invite must be a list of user IDs"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(mx(400, "M_BAD_JSON", "invite must be a list of user IDs")),
    };
    let alias = str_field("room_alias_name")?.map(|n| format!("#{n}:{}", g.server_name));
    if let Some(a) = &alias
        && g.aliases.contains_key(a)
    {
        return Err(mx(400, "M_ROOM_IN_USE", "Room alias already taken"));
    }
    let room_id = g.new_room_id();
    g.create_room(&room_id, &w.user_id, is_direct, join_rule);
    if let Some(a) = alias {
        g.append(&room_id, "m.room.canonical_alias", &w.user_id, Some(""), json!({"alias": a}), None);
        g.aliases.insert(a, room_id.clone());
    }
    if let Some(Value::Array(state)) = body.get("initial_state") {
        for s in state {
            let (Some(ty), Some(content)) = (s["type"].as_str(), s.get("content")) else {
                return Err(mx(400, "M_BAD_JSON", "initial_state events need a type and content"));
            };
            let key = s["state_key"].as_str().unwrap_or("");
            g.append(&room_id, ty, &w.user_id, Some(key), content.clone(), None);
        }
    }
    if let Some(name) = str_field("name")? {
        g.append(&room_id, "m.room.name", &w.user_id, Some(""), json!({"name": name}), None);
    }
    if let Some(topic) = str_field("topic")? {
        g.append(&room_id, "m.room.topic", &w.user_id, Some(""), json!({"topic": topic}), None);
    }
    for invitee in invites {
        let mut content = g.member_content(&invitee, "invite");
        if is_direct {
            content["is_direct"] = true.into();
        }
        g.append(&room_id, MEMBER, &w.user_id, Some(&invitee), content, None);
    }
    Ok(json!({"room_id": room_id}))
}

fn join_api(g: &mut Inner, w: &Who, room: &str, requested: &str) -> Answer {
    if !g.rooms.contains_key(room) {
        return Err(mx(404, "M_NOT_FOUND", "No known servers"));
    }
    let membership = g.membership(room, &w.user_id);
    let join_rule =
        g.state_content(room, "m.room.join_rules", "").and_then(|c| c["join_rule"].as_str()).unwrap_or("invite");
    match membership.as_deref() {
        Some("join") => {}
        Some("ban") => return Err(forbidden("You are banned from this room")),
        Some("invite") => {
            let content = g.member_content(&w.user_id, "join");
            g.append(room, MEMBER, &w.user_id, Some(&w.user_id), content, None);
        }
        _ if join_rule == "public" => {
            let content = g.member_content(&w.user_id, "join");
            g.append(room, MEMBER, &w.user_id, Some(&w.user_id), content, None);
        }
        _ => return Err(forbidden("You are not invited to this room.")),
    }
    g.memberships.push(MembershipCall {
        room_id: room.into(),
        user_id: w.user_id.clone(),
        membership: "join".into(),
        requested: requested.into(),
        invitee: None,
    });
    Ok(json!({"room_id": room}))
}

fn leave_api(g: &mut Inner, w: &Who, room: &str) -> Answer {
    if !g.rooms.contains_key(room) {
        return Err(mx(404, "M_NOT_FOUND", format!("Unknown room {room}")));
    }
    match g.membership(room, &w.user_id).as_deref() {
        Some("join") | Some("invite") | Some("knock") => {
            let content = g.member_content(&w.user_id, "leave");
            g.append(room, MEMBER, &w.user_id, Some(&w.user_id), content, None);
        }
        _ => return Err(not_in_room(&w.user_id, room)),
    }
    g.memberships.push(MembershipCall {
        room_id: room.into(),
        user_id: w.user_id.clone(),
        membership: "leave".into(),
        requested: room.into(),
        invitee: None,
    });
    Ok(json!({}))
}

fn invite_api(g: &mut Inner, w: &Who, room: &str, body: &Map<String, Value>) -> Answer {
    let invitee =
        body.get("user_id").and_then(Value::as_str).ok_or_else(|| mx(400, "M_BAD_JSON", "Missing user_id"))?;
    if !invitee.starts_with('@') || !invitee.contains(':') {
        return Err(mx(400, "M_INVALID_PARAM", format!("{invitee:?} is not a valid user ID")));
    }
    if !g.rooms.contains_key(room) {
        return Err(mx(404, "M_NOT_FOUND", format!("Unknown room {room}")));
    }
    joined(g, w, room)?;
    let needed = g.required_level(room, "invite", None);
    let have = g.power_level(room, &w.user_id);
    if have < needed {
        return Err(forbidden(format!(
            "You don't have permission to invite users to this room. user_level ({have}) < invite_level ({needed})"
        )));
    }
    match g.membership(room, invitee).as_deref() {
        Some("join") => return Err(forbidden(format!("{invitee} is already in the room."))),
        Some("ban") => return Err(forbidden(format!("{invitee} is banned from the room"))),
        Some("invite") => {}
        _ => {
            let mut content = g.member_content(invitee, "invite");
            if let Some(reason) = body.get("reason").and_then(Value::as_str) {
                content["reason"] = reason.into();
            }
            g.append(room, MEMBER, &w.user_id, Some(invitee), content, None);
        }
    }
    g.memberships.push(MembershipCall {
        room_id: room.into(),
        user_id: w.user_id.clone(),
        membership: "invite".into(),
        requested: room.into(),
        invitee: Some(invitee.into()),
    });
    Ok(json!({}))
}

/// Checks the server rules on relations: threads and annotations.
fn check_relations(g: &Inner, w: &Who, room: &str, ty: &str, content: &Value) -> Result<(), Outcome> {
    let rel = &content["m.relates_to"];
    match rel["rel_type"].as_str() {
        Some("m.thread") => {
            if let Some(root) = rel["event_id"].as_str()
                && let Some(&i) = g.event_index.get(root)
                && g.events[i].rel_type().is_some()
            {
                return Err(mx(400, "M_UNKNOWN", "Cannot start threads from an event with a relation"));
            }
        }
        Some("m.annotation") => {
            let (target, key) = (&rel["event_id"], &rel["key"]);
            let duplicate = g.rooms[room].timeline.iter().map(|&i| &g.events[i]).any(|e| {
                e.redacted_by.is_none()
                    && e.ty() == ty
                    && e.sender() == w.user_id
                    && e.rel_type() == Some("m.annotation")
                    && e.event["content"]["m.relates_to"]["event_id"] == *target
                    && e.event["content"]["m.relates_to"]["key"] == *key
            });
            if duplicate {
                return Err(mx(400, "M_DUPLICATE_ANNOTATION", "Can't send same reaction twice"));
            }
        }
        _ => {}
    }
    Ok(())
}

/// What the spec says the content of an event should have and this one does not.
fn lint(g: &Inner, room: &str, sender: &str, ty: &str, content: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let known =
        |id: &Value| id.as_str().and_then(|id| g.event_index.get(id)).is_some_and(|&i| g.events[i].room_id == room);
    if ty == "m.room.message" {
        if g.is_encrypted(room) {
            p.push("plaintext m.room.message sent to an encrypted room (it has m.room.encryption)".to_string());
        }
        if !content["body"].is_string() {
            p.push("m.room.message without a string body".into());
        }
        match content["msgtype"].as_str() {
            None => p.push("m.room.message without a string msgtype".into()),
            Some(t) if !KNOWN_MSGTYPES.contains(&t) && !t.contains('.') => p.push(format!("unknown msgtype {t:?}")),
            Some(t @ ("m.image" | "m.file" | "m.audio" | "m.video")) => {
                let url_ok = content["url"].as_str().is_some_and(|u| u.starts_with("mxc://"));
                if !url_ok && !content["file"].is_object() {
                    p.push(format!("{t} without an mxc:// url (or an encrypted file)"));
                }
            }
            Some(_) => {}
        }
        match (content.get("format"), content.get("formatted_body")) {
            (Some(f), Some(fb)) => {
                if f != "org.matrix.custom.html" {
                    p.push(format!("format {f} is not org.matrix.custom.html"));
                }
                if !fb.is_string() {
                    p.push("formatted_body is not a string".into());
                }
            }
            (Some(_), None) => p.push("format without formatted_body".into()),
            (None, Some(_)) => p.push("formatted_body without format".into()),
            (None, None) => {}
        }
    }
    if let Some(m) = content.get("m.mentions") {
        let ok = m.is_object()
            && m.get("user_ids").is_none_or(|u| {
                u.as_array().is_some_and(|a| a.iter().all(|x| x.as_str().is_some_and(|s| s.starts_with('@'))))
            })
            && m.get("room").is_none_or(Value::is_boolean);
        if !ok {
            p.push("m.mentions must be {user_ids: [user IDs], room: bool}".into());
        }
    }
    if let Some(rel) = content.get("m.relates_to") {
        if !rel.is_object() {
            p.push("m.relates_to is not an object".into());
            return p;
        }
        if let Some(r) = rel.get("m.in_reply_to")
            && !known(&r["event_id"])
        {
            p.push(format!("m.in_reply_to names an event not in the room: {}", r["event_id"]));
        }
        match rel["rel_type"].as_str() {
            Some("m.thread") => {
                if !known(&rel["event_id"]) {
                    p.push(format!("thread root not in the room: {}", rel["event_id"]));
                }
                if rel.get("is_falling_back").is_some_and(|b| !b.is_boolean()) {
                    p.push("is_falling_back is not a boolean".into());
                }
            }
            Some("m.annotation") => {
                if !known(&rel["event_id"]) {
                    p.push(format!("annotated event not in the room: {}", rel["event_id"]));
                }
                if !rel["key"].is_string() {
                    p.push("annotation without a string key".into());
                }
            }
            Some("m.replace") => {
                if !content["m.new_content"].is_object() {
                    p.push("replacement without m.new_content".into());
                }
                match rel["event_id"].as_str().and_then(|id| g.event_index.get(id)) {
                    Some(&i) if g.events[i].sender() != sender => {
                        p.push("replacement of an event sent by someone else".into());
                    }
                    Some(_) => {}
                    None => p.push(format!("replaced event not in the room: {}", rel["event_id"])),
                }
            }
            Some(_) | None => {
                if rel.get("rel_type").is_some() && !rel["event_id"].is_string() {
                    p.push("relation without an event_id".into());
                }
            }
        }
    }
    if ty == "m.reaction" && content["m.relates_to"]["rel_type"] != "m.annotation" {
        p.push("m.reaction without an m.annotation relation".into());
    }
    p
}

fn send_api(g: &mut Inner, w: &Who, room: &str, ty: &str, txn: &str, body: &Map<String, Value>) -> Answer {
    let key = (w.user_id.clone(), w.device_id.clone(), format!("send/{room}/{ty}/{txn}"));
    if let Some(first) = g.txns.get(&key) {
        return Ok(first.clone());
    }
    if !g.rooms.contains_key(room) {
        return Err(not_in_room(&w.user_id, room));
    }
    joined(g, w, room)?;
    let content = Value::Object(body.clone());
    if content.to_string().len() > MAX_EVENT_BYTES {
        return Err(mx(413, "M_TOO_LARGE", "Event is too large"));
    }
    let needed = g.required_level(room, "events_default", Some(ty));
    let have = g.power_level(room, &w.user_id);
    if have < needed {
        return Err(forbidden(format!(
            "You don't have permission to post that to the room. user_level ({have}) < send_level ({needed})"
        )));
    }
    if ty == "m.room.redaction" {
        let target =
            body.get("redacts").and_then(Value::as_str).ok_or_else(|| mx(400, "M_BAD_JSON", "Missing redacts"))?;
        let reason = body.get("reason").and_then(Value::as_str).map(String::from);
        return redact_common(g, w, room, target, reason.as_deref(), txn, key);
    }
    check_relations(g, w, room, ty, &content)?;
    let problems = lint(g, room, &w.user_id, ty, &content);
    let encrypted_room = g.is_encrypted(room);
    let (_, event_id) = g.append(
        room,
        ty,
        &w.user_id,
        None,
        content.clone(),
        Some((w.user_id.clone(), w.device_id.clone(), txn.into())),
    );
    g.sent.push(SentEvent {
        room_id: room.into(),
        event_id: event_id.clone(),
        sender: w.user_id.clone(),
        device_id: w.device_id.clone(),
        txn_id: Some(txn.into()),
        event_type: ty.into(),
        state_key: None,
        content,
        encrypted_room,
        problems,
    });
    let answer = json!({"event_id": event_id});
    g.txns.insert(key, answer.clone());
    Ok(answer)
}

fn state_api(g: &mut Inner, w: &Who, room: &str, ty: &str, key: &str, body: &Map<String, Value>) -> Answer {
    if !g.rooms.contains_key(room) {
        return Err(not_in_room(&w.user_id, room));
    }
    joined(g, w, room)?;
    let content = Value::Object(body.clone());
    if ty == MEMBER {
        let current = g.membership(room, key);
        if key != w.user_id || content["membership"].as_str() != current.as_deref() {
            return Err(forbidden("Membership changes go through /join, /leave and /invite"));
        }
    } else {
        let needed = g.required_level(room, "state_default", Some(ty));
        let have = g.power_level(room, &w.user_id);
        if have < needed {
            return Err(forbidden(format!(
                "You don't have permission to post that to the room. user_level ({have}) < send_level ({needed})"
            )));
        }
    }
    // Synapse does not send a state event that changes nothing: it answers the current one.
    if let Some(&i) = g.rooms[room].state.get(&(ty.to_string(), key.to_string()))
        && g.events[i].event["content"] == content
        && g.events[i].sender() == w.user_id
    {
        return Ok(json!({"event_id": g.events[i].event_id()}));
    }
    let problems = lint(g, room, &w.user_id, ty, &content);
    let encrypted_room = g.is_encrypted(room);
    let (_, event_id) = g.append(room, ty, &w.user_id, Some(key), content.clone(), None);
    g.sent.push(SentEvent {
        room_id: room.into(),
        event_id: event_id.clone(),
        sender: w.user_id.clone(),
        device_id: w.device_id.clone(),
        txn_id: None,
        event_type: ty.into(),
        state_key: Some(key.into()),
        content,
        encrypted_room,
        problems,
    });
    Ok(json!({"event_id": event_id}))
}

fn redact_api(g: &mut Inner, w: &Who, room: &str, event: &str, txn: &str, body: &Map<String, Value>) -> Answer {
    let key = (w.user_id.clone(), w.device_id.clone(), format!("redact/{room}/{event}/{txn}"));
    if let Some(first) = g.txns.get(&key) {
        return Ok(first.clone());
    }
    if !g.rooms.contains_key(room) {
        return Err(not_in_room(&w.user_id, room));
    }
    joined(g, w, room)?;
    let reason = body.get("reason").and_then(Value::as_str).map(String::from);
    redact_common(g, w, room, event, reason.as_deref(), txn, key)
}

fn redact_common(
    g: &mut Inner,
    w: &Who,
    room: &str,
    target: &str,
    reason: Option<&str>,
    txn: &str,
    key: (String, String, String),
) -> Answer {
    let own = g.event_index.get(target).is_some_and(|&i| g.events[i].sender() == w.user_id);
    let needed = g.required_level(room, "redact", None);
    let have = g.power_level(room, &w.user_id);
    if !own && have < needed {
        return Err(forbidden("You don't have permission to redact events"));
    }
    let encrypted_room = g.is_encrypted(room);
    let (idx, event_id) =
        g.redact(room, &w.user_id, target, reason, Some((w.user_id.clone(), w.device_id.clone(), txn.into())));
    g.sent.push(SentEvent {
        room_id: room.into(),
        event_id: event_id.clone(),
        sender: w.user_id.clone(),
        device_id: w.device_id.clone(),
        txn_id: Some(txn.into()),
        event_type: "m.room.redaction".into(),
        state_key: None,
        content: g.events[idx].event["content"].clone(),
        encrypted_room,
        problems: Vec::new(),
    });
    let answer = json!({"event_id": event_id});
    g.txns.insert(key, answer.clone());
    Ok(answer)
}

/// Synapse's bounds on typing timeouts.
const TYPING_DEFAULT_MS: u64 = 30_000;
const TYPING_MAX_MS: u64 = 120_000;

fn typing(twin: &Shared, w: &Who, room: &str, user: &str, body: &Map<String, Value>) -> Answer {
    let typing = body.get("typing").and_then(Value::as_bool).ok_or_else(|| mx(400, "M_BAD_JSON", "Missing typing"))?;
    let timeout_ms = match body.get("timeout") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| mx(400, "M_BAD_JSON", "timeout must be an integer"))?),
    };
    let serial = {
        let mut g = twin.lock();
        if user != w.user_id {
            return Err(forbidden("Cannot set another user's typing state"));
        }
        if !g.rooms.contains_key(room) {
            return Err(not_in_room(&w.user_id, room));
        }
        joined(&g, w, room)?;
        g.typing_calls.push(TypingCall { room_id: room.into(), user_id: user.into(), typing, timeout_ms });
        g.set_typing(room, user, typing)
    };
    twin.bump();
    if typing {
        let wait = Duration::from_millis(timeout_ms.unwrap_or(TYPING_DEFAULT_MS).min(TYPING_MAX_MS));
        let weak: Weak<Twin> = Arc::downgrade(twin);
        let (room, user) = (room.to_string(), user.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let Some(twin) = weak.upgrade() else { return };
            let expired = {
                let mut g = twin.lock();
                let still = g.rooms.get(&room).is_some_and(|r| r.typing.get(&user) == Some(&serial));
                if still {
                    g.set_typing(&room, &user, false);
                }
                still
            };
            if expired {
                twin.bump();
            }
        });
    }
    Ok(json!({}))
}

fn upload(g: &mut Inner, w: &Who, req: &Req<'_>) -> Answer {
    if req.body.len() > g.max_upload {
        return Err(mx(413, "M_TOO_LARGE", "Upload request body is too large"));
    }
    let content_type =
        req.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/octet-stream").to_string();
    let filename = req.query.iter().find(|(k, _)| k == "filename").map(|(_, v)| v.clone());
    let uri = g.store_media(req.body.to_vec(), &content_type, filename, Some(&w.user_id));
    Ok(json!({"content_uri": uri}))
}

fn download(g: &Inner, server: &str, media: &str, file: Option<&str>) -> Answer {
    let valid = !media.is_empty() && media.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let found = (server == g.server_name && valid).then(|| g.media.get(media)).flatten();
    let Some(m) = found else { return Err(mx(404, "M_NOT_FOUND", "Media not found")) };
    let essence = m.content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let kind = if INLINE_TYPES.contains(&essence.as_str()) { "inline" } else { "attachment" };
    let disposition = match file.or(m.filename.as_deref()) {
        Some(name) => format!("{kind}; filename=\"{}\"", name.replace('"', "")),
        None => kind.to_string(),
    };
    Err(Outcome::Media { content_type: m.content_type.clone(), disposition, bytes: m.bytes.clone() })
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const SECS: Duration = Duration::from_secs(5);

    fn client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().expect("client")
    }

    struct Hs {
        mx: MatrixServer,
        bot: String,
        alice: String,
        room: String,
    }

    /// A twin with a bot (`@bot`, password `pw`) and Alice in a room Alice created.
    async fn hs() -> Hs {
        let mx = MatrixServer::start("example.org").await;
        let bot = mx.register_user("bot", "pw");
        let alice = mx.register_user("alice", "wonderland");
        let room = mx.create_room(&alice, false);
        mx.join(&room, &bot);
        Hs { mx, bot, alice, room }
    }

    fn url(mx: &MatrixServer, path: &str) -> String {
        format!("{}/_matrix/client/v3{path}", mx.base_url())
    }

    async fn get(mx: &MatrixServer, token: &str, path: &str) -> (u16, Value) {
        let r = client().get(url(mx, path)).bearer_auth(token).send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.expect("a JSON body"))
    }

    async fn put(mx: &MatrixServer, token: &str, path: &str, body: Value) -> (u16, Value) {
        let r = client().put(url(mx, path)).bearer_auth(token).json(&body).send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.expect("a JSON body"))
    }

    async fn post(mx: &MatrixServer, token: &str, path: &str, body: Value) -> (u16, Value) {
        let r = client().post(url(mx, path)).bearer_auth(token).json(&body).send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.expect("a JSON body"))
    }

    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    fn timeline(sync: &Value, room: &str) -> Vec<Value> {
        sync["rooms"]["join"][room]["timeline"]["events"].as_array().cloned().unwrap_or_default()
    }

    #[tokio::test]
    async fn matrix_login_sync_sees_events_and_next_batch_advances() {
        let Hs { mx, bot, alice, room } = hs().await;
        let r = client().get(format!("{}/_matrix/client/versions", mx.base_url())).send().await.expect("versions");
        let versions: Value = r.json().await.expect("json");
        assert!(versions["versions"].as_array().expect("list").contains(&json!("v1.11")));

        let login = |password: &str| {
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bot"},
                "password": password, "device_id": "GATEWAY", "initial_device_display_name": "clawline"})
        };
        let r = client().post(url(&mx, "/login")).json(&login("nope")).send().await.expect("login");
        assert_eq!(r.status().as_u16(), 403);
        let body: Value = r.json().await.expect("json");
        assert_eq!(body, json!({"errcode": "M_FORBIDDEN", "error": "Invalid username or password"}));
        let r = client().post(url(&mx, "/login")).json(&login("pw")).send().await.expect("login");
        assert_eq!(r.status().as_u16(), 200);
        let session: Value = r.json().await.expect("json");
        assert_eq!((session["user_id"].as_str(), session["device_id"].as_str()), (Some(bot.as_str()), Some("GATEWAY")));
        let token = session["access_token"].as_str().expect("token").to_string();
        assert_eq!(
            get(&mx, &token, "/account/whoami").await,
            (200, json!({"user_id": bot, "device_id": "GATEWAY", "is_guest": false}))
        );

        // More history than the default timeline limit (10): the first sync is limited and the
        // room's state comes in `state`.
        for i in 0..10 {
            mx.send_text(&room, &alice, &format!("old {i}"));
        }
        let (status, first) = get(&mx, &token, "/sync").await;
        assert_eq!(status, 200);
        let joined = &first["rooms"]["join"][&room];
        assert_eq!(joined["timeline"]["limited"], true);
        assert_eq!(joined["timeline"]["events"].as_array().expect("timeline").len(), 10);
        assert_eq!(joined["summary"]["m.joined_member_count"], 2);
        let state_types: Vec<&str> =
            joined["state"]["events"].as_array().expect("state").iter().filter_map(|e| e["type"].as_str()).collect();
        assert!(
            state_types.contains(&"m.room.create") && state_types.contains(&"m.room.power_levels"),
            "{state_types:?}"
        );
        let batch1 = first["next_batch"].as_str().expect("next_batch").to_string();

        let event_id = mx.send_text(&room, &alice, "hello bot");
        let (_, second) = get(&mx, &token, &format!("/sync?since={}&timeout=0", enc(&batch1))).await;
        assert_eq!(mx.last_since().as_deref(), Some(batch1.as_str()));
        let events = timeline(&second, &room);
        assert_eq!(events.len(), 1, "{second}");
        let e = &events[0];
        assert_eq!(e["event_id"], event_id);
        assert_eq!((e["type"].as_str(), e["sender"].as_str()), (Some("m.room.message"), Some(alice.as_str())));
        assert_eq!(e["content"], json!({"msgtype": "m.text", "body": "hello bot"}));
        assert!(e["origin_server_ts"].as_u64().is_some_and(|t| t > 1_600_000_000_000));
        assert!(e["unsigned"].get("transaction_id").is_none());
        let batch2 = second["next_batch"].as_str().expect("next_batch").to_string();
        assert_ne!(batch1, batch2);

        let (_, third) = get(&mx, &token, &format!("/sync?since={}&timeout=0", enc(&batch2))).await;
        assert!(third["rooms"]["join"].as_object().expect("join").is_empty(), "{third}");
        assert_eq!(third["next_batch"], batch2.as_str());

        // A limited timeline: more events than the filter's limit.
        for i in 0..4 {
            mx.send_text(&room, &alice, &format!("m{i}"));
        }
        let filter = enc(r#"{"room":{"timeline":{"limit":2}}}"#);
        let (_, limited) = get(&mx, &token, &format!("/sync?since={}&filter={filter}", enc(&batch2))).await;
        let tl = &limited["rooms"]["join"][&room]["timeline"];
        assert_eq!(tl["limited"], true);
        assert_eq!(tl["events"].as_array().expect("events").len(), 2);
        assert_eq!(tl["events"][1]["content"]["body"], "m3");
        assert!(tl["prev_batch"].is_string());

        let (status, bad) = get(&mx, &token, "/sync?since=garbage").await;
        assert_eq!((status, bad["errcode"].as_str()), (400, Some("M_UNKNOWN")));
    }

    #[tokio::test]
    async fn matrix_long_poll_answers_when_an_event_arrives() {
        let Hs { mx, bot, alice, room } = hs().await;
        let token = mx.token_for(&bot);
        let since = mx.current_batch();

        let started = Instant::now();
        let (status, empty) = get(&mx, &token, &format!("/sync?since={}&timeout=300", enc(&since))).await;
        assert_eq!(status, 200);
        assert!(started.elapsed() >= Duration::from_millis(290), "{:?}", started.elapsed());
        assert!(empty["rooms"]["join"].as_object().expect("join").is_empty());

        let u = format!("{}?since={}&timeout=10000", url(&mx, "/sync"), enc(&since));
        let started = Instant::now();
        let poll = tokio::spawn(async move {
            client().get(u).bearer_auth(token).send().await.expect("sync").json::<Value>().await.expect("json")
        });
        mx.wait_syncs(2, SECS).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let event_id = mx.send_text(&room, &alice, "wake up");
        let body = tokio::time::timeout(SECS, poll).await.expect("answered before its timeout").expect("task");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(200) && waited < Duration::from_secs(5), "{waited:?}");
        assert_eq!(timeline(&body, &room)[0]["event_id"], event_id);
    }

    #[tokio::test]
    async fn matrix_txn_ids_are_idempotent_per_device() {
        let Hs { mx, bot, alice, room } = hs().await;
        let token = mx.token_for(&bot);
        let since = mx.current_batch();
        let path = format!("/rooms/{}/send/m.room.message/txn-1", enc(&room));
        let content = json!({"msgtype": "m.notice", "body": "**hi**", "format": "org.matrix.custom.html",
            "formatted_body": "<b>hi</b>"});
        let (s1, a) = put(&mx, &token, &path, content.clone()).await;
        let (s2, b) = put(&mx, &token, &path, content.clone()).await;
        assert_eq!((s1, s2), (200, 200));
        assert_eq!(a, b);
        let sent = mx.sent_by(&bot);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].event_id, a["event_id"].as_str().expect("id"));
        assert_eq!((sent[0].txn_id.as_deref(), sent[0].msgtype()), (Some("txn-1"), Some("m.notice")));
        assert!(sent[0].problems.is_empty(), "{:?}", sent[0].problems);

        // Another device reusing the txn ID sends a new event.
        let (other, other_device) = mx.issue_token(&bot, None);
        let (_, c) = put(&mx, &other, &path, content).await;
        assert_ne!(a["event_id"], c["event_id"]);
        assert_eq!(mx.sent_by(&bot).len(), 2);

        // Only the sending device sees its transaction ID.
        let (_, mine) = get(&mx, &token, &format!("/sync?since={}", enc(&since))).await;
        let tl = timeline(&mine, &room);
        assert_eq!(tl.len(), 2);
        assert_eq!(tl[0]["unsigned"]["transaction_id"], "txn-1");
        assert!(tl[1]["unsigned"].get("transaction_id").is_none());
        assert_eq!(mx.device_of(&other).as_deref(), Some(other_device.as_str()));

        // Not a member.
        let lonely = mx.create_room(&alice, false);
        let (status, body) = put(
            &mx,
            &token,
            &format!("/rooms/{}/send/m.room.message/t2", enc(&lonely)),
            json!({"msgtype": "m.text", "body": "x"}),
        )
        .await;
        assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")));
    }

    #[tokio::test]
    async fn matrix_rate_limits_answer_429_with_retry_after() {
        let Hs { mx, bot, room, .. } = hs().await;
        let token = mx.token_for(&bot);
        mx.set_rate_limit("send", 1, Duration::from_secs(2));
        let send = |txn: &str| format!("/rooms/{}/send/m.room.message/{txn}", enc(&room));
        assert_eq!(put(&mx, &token, &send("a"), json!({"msgtype": "m.text", "body": "1"})).await.0, 200);
        let r = client()
            .put(url(&mx, &send("b")))
            .bearer_auth(&token)
            .json(&json!({"msgtype": "m.text", "body": "2"}))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 429);
        assert_eq!(r.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("2"));
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["errcode"], "M_LIMIT_EXCEEDED");
        assert!(body["retry_after_ms"].as_u64().is_some_and(|ms| ms > 1000 && ms <= 2000), "{body}");
        mx.set_rate_limit("send", 0, Duration::from_secs(1));

        mx.fail_next("sync", 429, "M_LIMIT_EXCEEDED", Some(1500));
        let r = client().get(url(&mx, "/sync")).bearer_auth(&token).send().await.expect("sync");
        assert_eq!(r.status().as_u16(), 429);
        assert_eq!(r.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("2"));
        assert_eq!(r.json::<Value>().await.expect("json")["retry_after_ms"], 1500);
        mx.fail_next("/_matrix/client/v3/rooms/", 502, "M_UNKNOWN", None);
        assert_eq!(put(&mx, &token, &send("c"), json!({"msgtype": "m.text", "body": "3"})).await.0, 502);
        assert_eq!(put(&mx, &token, &send("c"), json!({"msgtype": "m.text", "body": "3"})).await.0, 200);
    }

    #[tokio::test]
    async fn matrix_invites_show_in_sync_and_joins_follow_the_rules() {
        let mx = MatrixServer::start("example.org").await;
        let bot = mx.register_user("bot", "pw");
        let alice = mx.register_user("alice", "pw");
        let token = mx.token_for(&bot);
        let (_, first) = get(&mx, &token, "/sync").await;
        let since = first["next_batch"].as_str().expect("batch").to_string();

        let dm = mx.create_room(&alice, true);
        mx.set_encrypted(&dm);
        mx.invite(&dm, &alice, &bot);
        let (_, s) = get(&mx, &token, &format!("/sync?since={}&timeout=1000", enc(&since))).await;
        let invite = &s["rooms"]["invite"][&dm]["invite_state"]["events"];
        let member = invite.as_array().expect("events").iter().find(|e| e["type"] == MEMBER).expect("invite event");
        assert_eq!(member["state_key"], bot.as_str());
        assert_eq!(
            (member["content"]["membership"].as_str(), member["content"]["is_direct"].as_bool()),
            (Some("invite"), Some(true))
        );
        assert!(invite.as_array().expect("events").iter().any(|e| e["type"] == "m.room.encryption"));
        let since = s["next_batch"].as_str().expect("batch").to_string();

        let secret = mx.create_room(&alice, false);
        let (status, body) = post(&mx, &token, &format!("/join/{}", enc(&secret)), json!({})).await;
        assert_eq!((status, body["error"].as_str()), (403, Some("You are not invited to this room.")));
        let (status, body) = post(&mx, &token, &format!("/rooms/{}/join", enc(&dm)), json!({})).await;
        assert_eq!((status, body), (200, json!({"room_id": dm})));
        let r = client()
            .post(url(&mx, &format!("/rooms/{}/join", enc(&dm))))
            .bearer_auth(&token)
            .send()
            .await
            .expect("join");
        assert_eq!(r.status().as_u16(), 400, "an empty body is not a JSON object");
        assert_eq!(mx.joins().len(), 1);
        assert_eq!(mx.membership(&dm, &bot).as_deref(), Some("join"));

        let (_, s) = get(&mx, &token, &format!("/sync?since={}", enc(&since))).await;
        let room = &s["rooms"]["join"][&dm];
        // A room joined since: its whole state, here all within the (unlimited) timeline.
        let seen: Vec<&Value> = room["state"]["events"]
            .as_array()
            .expect("state")
            .iter()
            .chain(room["timeline"]["events"].as_array().expect("timeline"))
            .collect();
        assert!(
            seen.iter().any(|e| e["type"] == "m.room.create") && seen.iter().any(|e| e["type"] == "m.room.encryption")
        );
        assert_eq!(room["timeline"]["limited"], false);
        assert!(timeline(&s, &dm).iter().any(|e| e["type"] == MEMBER && e["state_key"] == bot.as_str()));

        mx.set_direct(&bot, &alice, &dm);
        let since = s["next_batch"].as_str().expect("batch").to_string();
        let (_, s) = get(&mx, &token, &format!("/sync?since={}", enc(&since))).await;
        assert_eq!(
            s["account_data"]["events"][0],
            json!({"type": "m.direct", "content": {alice.as_str(): [dm.as_str()]}})
        );

        // Plaintext into an encrypted room is accepted, and flagged.
        let (status, _) = put(
            &mx,
            &token,
            &format!("/rooms/{}/send/m.room.message/p", enc(&dm)),
            json!({"msgtype": "m.text", "body": "hi"}),
        )
        .await;
        assert_eq!(status, 200);
        let sent = mx.sent_by(&bot).pop().expect("sent");
        assert!(sent.encrypted_room && sent.problems.iter().any(|p| p.contains("encrypted")), "{:?}", sent.problems);
        let blob = mx.send_encrypted(&dm, &alice);
        assert_eq!(mx.event(&blob).expect("stored")["content"]["algorithm"], "m.megolm.v1.aes-sha2");

        let (status, _) = post(&mx, &token, &format!("/rooms/{}/leave", enc(&dm)), json!({})).await;
        assert_eq!(status, 200);
        let since = mx.current_batch();
        mx.invite(&secret, &alice, &bot);
        let (_, _) = post(&mx, &token, &format!("/rooms/{}/leave", enc(&secret)), json!({})).await;
        let (_, s) = get(&mx, &token, &format!("/sync?since={}", enc(&since))).await;
        assert!(s["rooms"]["leave"][&secret]["timeline"]["events"][0]["content"]["membership"] == "leave", "{s}");
    }

    #[tokio::test]
    async fn matrix_tokens_missing_unknown_expired_and_in_query() {
        let Hs { mx, bot, .. } = hs().await;
        let token = mx.token_for(&bot);
        let r = client().get(url(&mx, "/account/whoami")).send().await.expect("whoami");
        assert_eq!(r.status().as_u16(), 401);
        assert_eq!(r.json::<Value>().await.expect("json")["errcode"], "M_MISSING_TOKEN");
        let (status, body) = get(&mx, "syt_bogus", "/sync").await;
        assert_eq!(status, 401);
        assert_eq!((body["errcode"].as_str(), body["soft_logout"].as_bool()), (Some("M_UNKNOWN_TOKEN"), Some(false)));

        let r = client()
            .get(format!("{}?access_token={}", url(&mx, "/account/whoami"), enc(&token)))
            .send()
            .await
            .expect("whoami");
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(mx.requests().last().and_then(|c| c.token_via), Some(TokenVia::Query));
        let r = client()
            .get(format!("{}?access_token={}", url(&mx, "/account/whoami"), enc(&token)))
            .bearer_auth(&token)
            .send()
            .await
            .expect("whoami");
        assert_eq!(r.status().as_u16(), 401);
        assert_eq!(r.json::<Value>().await.expect("json")["errcode"], "M_MISSING_TOKEN");

        mx.expire_token(&token);
        let (status, body) = get(&mx, &token, "/account/whoami").await;
        assert_eq!((status, body["soft_logout"].as_bool()), (401, Some(true)));
        let (fresh, _) = mx.issue_token(&bot, None);
        assert_eq!(post(&mx, &fresh, "/logout", json!({})).await.0, 200);
        let (status, body) = get(&mx, &fresh, "/account/whoami").await;
        assert_eq!((status, body["errcode"].as_str()), (401, Some("M_UNKNOWN_TOKEN")));

        let r = client().get(url(&mx, "/nope")).bearer_auth(&token).send().await.expect("unknown");
        assert_eq!(r.status().as_u16(), 404);
        assert_eq!(r.json::<Value>().await.expect("json")["errcode"], "M_UNRECOGNIZED");
        let r = client().get(url(&mx, "/createRoom")).bearer_auth(&token).send().await.expect("wrong method");
        assert_eq!(r.status().as_u16(), 405);
    }

    #[tokio::test]
    async fn matrix_sync_faults_misbehave_as_described() {
        let Hs { mx, bot, alice, room } = hs().await;
        let token = mx.token_for(&bot);
        mx.drop_next_syncs(1);
        assert!(client().get(url(&mx, "/sync")).bearer_auth(&token).send().await.is_err(), "no HTTP answer");
        assert_eq!(mx.requests().last().map(|c| c.status), Some(0));
        assert_eq!(get(&mx, &token, "/sync").await.0, 200);

        mx.malformed_next_sync();
        let r = client().get(url(&mx, "/sync")).bearer_auth(&token).send().await.expect("answered");
        assert_eq!(r.status().as_u16(), 200);
        assert!(serde_json::from_slice::<Value>(&r.bytes().await.expect("body")).is_err());

        let since = mx.current_batch();
        let a = mx.send_text(&room, &alice, "a");
        let (_, first) = get(&mx, &token, &format!("/sync?since={}", enc(&since))).await;
        let next = first["next_batch"].as_str().expect("batch").to_string();
        mx.duplicate_next_sync();
        let b = mx.send_text(&room, &alice, "b");
        let (_, dup) = get(&mx, &token, &format!("/sync?since={}", enc(&next))).await;
        let events = timeline(&dup, &room);
        let ids: Vec<&str> = events.iter().filter_map(|e| e["event_id"].as_str()).collect();
        assert_eq!(ids, vec![a.as_str(), b.as_str()]);
        assert_ne!(dup["next_batch"], first["next_batch"]);

        mx.stall_sync(true);
        let stalled = client()
            .get(format!("{}?timeout=0", url(&mx, "/sync")))
            .bearer_auth(&token)
            .timeout(Duration::from_millis(300))
            .send()
            .await;
        assert!(stalled.is_err_and(|e| e.is_timeout()));
        mx.stall_sync(false);
        assert_eq!(get(&mx, &token, "/sync").await.0, 200);
        assert!(mx.sync_count() >= 7);
    }

    #[tokio::test]
    async fn matrix_threads_replies_mentions_typing_and_reactions() {
        let Hs { mx, bot, alice, room } = hs().await;
        let token = mx.token_for(&bot);
        let root = mx.send_text(&room, &alice, "root");
        let in_thread = mx.send_in_thread(&room, &alice, &root, "first");
        let e = mx.event(&in_thread).expect("stored");
        assert_eq!(e["content"]["m.relates_to"]["rel_type"], "m.thread");
        assert_eq!(e["content"]["m.relates_to"]["m.in_reply_to"]["event_id"], root.as_str());
        let second = mx.send_in_thread(&room, &alice, &root, "second");
        assert_eq!(
            mx.event(&second).expect("stored")["content"]["m.relates_to"]["m.in_reply_to"]["event_id"],
            in_thread.as_str()
        );
        let reply = mx.send_reply(&room, &alice, &root, "re");
        assert_eq!(
            mx.event(&reply).expect("stored")["content"]["m.relates_to"],
            json!({"m.in_reply_to": {"event_id": root}})
        );
        let mention = mx.send_mention(&room, &alice, "ping", &bot);
        assert_eq!(mx.event(&mention).expect("stored")["content"]["m.mentions"], json!({"user_ids": [bot]}));

        let send = |txn: &str| format!("/rooms/{}/send/m.room.message/{txn}", enc(&room));
        let threaded = json!({"msgtype": "m.text", "body": "answer", "m.relates_to": {"rel_type": "m.thread",
            "event_id": root, "is_falling_back": true, "m.in_reply_to": {"event_id": second}}});
        assert_eq!(put(&mx, &token, &send("t1"), threaded).await.0, 200);
        assert!(mx.sent_by(&bot)[0].problems.is_empty(), "{:?}", mx.sent_by(&bot)[0].problems);
        let off_thread =
            json!({"msgtype": "m.text", "body": "x", "m.relates_to": {"rel_type": "m.thread", "event_id": in_thread}});
        let (status, body) = put(&mx, &token, &send("t2"), off_thread).await;
        assert_eq!((status, body["errcode"].as_str()), (400, Some("M_UNKNOWN")));
        let sloppy = json!({"msgtype": "m.text", "format": "org.matrix.custom.html"});
        assert_eq!(put(&mx, &token, &send("t3"), sloppy).await.0, 200);
        let problems = mx.sent_by(&bot).pop().expect("sent").problems;
        assert!(
            problems.iter().any(|p| p.contains("body")) && problems.iter().any(|p| p.contains("formatted_body")),
            "{problems:?}"
        );

        let react = json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "👍"}});
        let reaction = |txn: &str| format!("/rooms/{}/send/m.reaction/{txn}", enc(&room));
        assert_eq!(put(&mx, &token, &reaction("r1"), react.clone()).await.0, 200);
        let (status, body) = put(&mx, &token, &reaction("r2"), react).await;
        assert_eq!((status, body["errcode"].as_str()), (400, Some("M_DUPLICATE_ANNOTATION")));

        let typing = format!("/rooms/{}/typing/{}", enc(&room), enc(&bot));
        assert_eq!(put(&mx, &token, &typing, json!({"typing": true, "timeout": 200})).await.0, 200);
        assert_eq!(mx.typing_users(&room), vec![bot.clone()]);
        assert_eq!(
            mx.typing(),
            vec![TypingCall { room_id: room.clone(), user_id: bot.clone(), typing: true, timeout_ms: Some(200) }]
        );
        let (_, s) = get(&mx, &token, "/sync").await;
        assert_eq!(s["rooms"]["join"][&room]["ephemeral"]["events"][0]["content"]["user_ids"], json!([bot]));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(mx.typing_users(&room).is_empty(), "typing expires");
        let others = format!("/rooms/{}/typing/{}", enc(&room), enc(&alice));
        assert_eq!(put(&mx, &token, &others, json!({"typing": true})).await.0, 403);

        let redact = format!("/rooms/{}/redact/{}/x1", enc(&room), enc(&root));
        assert_eq!(put(&mx, &token, &redact, json!({})).await.0, 403, "not the bot's event, power level 0");
        let mine = mx.sent_by(&bot)[0].event_id.clone();
        let redact = format!("/rooms/{}/redact/{}/x2", enc(&room), enc(&mine));
        assert_eq!(put(&mx, &token, &redact, json!({"reason": "oops"})).await.0, 200);
        let (_, e) = get(&mx, &token, &format!("/rooms/{}/event/{}", enc(&room), enc(&mine))).await;
        assert_eq!(e["content"], json!({}));
        assert_eq!(e["unsigned"]["redacted_because"]["content"]["reason"], "oops");
    }

    #[tokio::test]
    async fn matrix_media_upload_and_authenticated_download() {
        let Hs { mx, bot, .. } = hs().await;
        let token = mx.token_for(&bot);
        let r = client()
            .post(format!("{}/_matrix/media/v3/upload?filename=cat.png", mx.base_url()))
            .bearer_auth(&token)
            .header("content-type", "image/png")
            .body(vec![1u8, 2, 3, 4])
            .send()
            .await
            .expect("upload");
        assert_eq!(r.status().as_u16(), 200);
        let uri = r.json::<Value>().await.expect("json")["content_uri"].as_str().expect("uri").to_string();
        assert!(uri.starts_with("mxc://example.org/"));
        let path = uri.trim_start_matches("mxc://");
        let download = format!("{}/_matrix/client/v1/media/download/{path}", mx.base_url());
        let r = client().get(&download).bearer_auth(&token).send().await.expect("download");
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(
            r.headers().get("content-disposition").and_then(|v| v.to_str().ok()),
            Some("inline; filename=\"cat.png\"")
        );
        assert_eq!(r.bytes().await.expect("bytes").as_ref(), &[1, 2, 3, 4]);
        assert_eq!(client().get(&download).send().await.expect("download").status().as_u16(), 401);
        let legacy = format!("{}/_matrix/media/v3/download/{path}", mx.base_url());
        assert_eq!(client().get(&legacy).send().await.expect("legacy").status().as_u16(), 404);
        assert_eq!(mx.uploads()[0].uploader.as_deref(), Some(bot.as_str()));

        mx.set_max_upload(2);
        let r = client()
            .post(format!("{}/_matrix/media/v3/upload", mx.base_url()))
            .bearer_auth(&token)
            .body(vec![0u8; 3])
            .send()
            .await
            .expect("upload");
        assert_eq!(r.status().as_u16(), 413);
        assert_eq!(r.json::<Value>().await.expect("json")["errcode"], "M_TOO_LARGE");
    }
}
