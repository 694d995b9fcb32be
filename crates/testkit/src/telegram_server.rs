//! A twin of the Telegram Bot API (<https://core.telegram.org/bots/api>) for tests of a bot client:
//! long polling, webhooks, sending, editing, reactions, callback queries, uploads and file
//! downloads, with the errors the real server answers. It must not talk to the internet, must not
//! accept anything the documentation refuses, and must not be lenient where the real server is
//! strict; where the documentation is silent it follows what the real server is known to answer.
//!
//! Start one with [`TelegramServer::start`] and the bot token it accepts, point the client at
//! [`TelegramServer::api_root`], add chats ([`TelegramServer::add_private_chat`],
//! [`TelegramServer::add_supergroup`], …), push what users do ([`TelegramServer::push_text`],
//! [`TelegramServer::push_callback_query`], [`TelegramServer::push_raw`], …) and inspect what the
//! bot did ([`TelegramServer::sent`], [`TelegramServer::wait_sent`], [`TelegramServer::requests`]).
//!
//! # Wire
//!
//! - Methods are `{root}/bot{token}/{method}`, GET or POST, method names case-insensitive.
//!   Parameters come from the query string and from an `application/json`,
//!   `application/x-www-form-urlencoded` or `multipart/form-data` body (non-JSON bodies carry
//!   objects such as `reply_markup` as JSON-serialized strings). Files download from
//!   `{root}/file/bot{token}/{file_path}`.
//! - Every answer is `{"ok":true,"result":…}` (some with a `description`) or
//!   `{"ok":false,"error_code":N,"description":"…","parameters":{…}?}`. A wrong token is 401
//!   `Unauthorized`; an unknown method 404 `Not Found`.
//!
//! # Methods
//!
//! - `getMe`: the bot (`id` = the number before `:` in the token, `is_bot`, `first_name`,
//!   [`TelegramServer::set_username`]).
//! - `getUpdates {offset, limit (clamped to 1–100, default 100), timeout, allowed_updates}`: an
//!   update is confirmed (forgotten) once a call's `offset` is greater than its `update_id`; a
//!   negative offset keeps only the last `-offset` updates. With nothing pending the call is held
//!   up to `timeout` seconds and answered `[]`, or as soon as an update arrives. A second call
//!   while one is held answers the held one 409 `Conflict: terminated by other getUpdates request;
//!   make sure that only one bot instance is running`; with a webhook set every call is 409
//!   `Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the
//!   webhook first`. `allowed_updates` (also on `setWebhook`) filters updates pushed afterwards; by
//!   default every kind but `chat_member`, `message_reaction` and `message_reaction_count` is kept.
//!   A raw update without an `update_id` is confirmed by the first call with an offset after it
//!   was delivered.
//! - `setWebhook {url, secret_token (1–256 of A-Za-z0-9_-), drop_pending_updates,
//!   allowed_updates, max_connections (1–100)}`, `deleteWebhook {drop_pending_updates}`,
//!   `getWebhookInfo`. The URL must be HTTPS on port 443, 80, 88 or 8443, as documented; the twin
//!   also takes `http://` URLs on loopback hosts so tests can receive. While a webhook is set the
//!   twin POSTs each pending update, in order and one at a time, as JSON with
//!   `X-Telegram-Bot-Api-Secret-Token` when a secret was set. An answer other than 2xx keeps the
//!   update pending and is retried after [`TelegramServer::set_webhook_retry_delay`] (200 ms by
//!   default), with `last_error_date`/`last_error_message` in `getWebhookInfo`. Every attempt is
//!   recorded ([`TelegramServer::deliveries`]).
//! - `sendMessage {chat_id (integer, or "@username" of a supergroup or channel), text,
//!   parse_mode, entities, message_thread_id, reply_parameters (or the older
//!   reply_to_message_id), reply_markup, link_preview_options, disable_notification}`. `text`
//!   must be 1–4096 characters after entity parsing (`message text is empty`, `message is too
//!   long`). `parse_mode` is `HTML`, `MarkdownV2` or `Markdown` (case-insensitive; anything else
//!   is `unsupported parse_mode`), parsed as the formatting options section defines, failures
//!   being `can't parse entities: …` (see [`parse_html`], [`parse_markdown_v2`],
//!   [`parse_markdown`]); the returned Message carries the resulting `entities` (UTF-16
//!   offsets). `message_thread_id` must name a topic of a forum supergroup (or of a private
//!   chat with topics, [`TelegramServer::add_topic`]): `message thread not found`. A reply to a
//!   missing message is `message to be replied not found` unless `allow_sending_without_reply`.
//!   An inline keyboard needs arrays of arrays of buttons, each with `text` and exactly one
//!   optional field; `callback_data` is 1–64 bytes (`BUTTON_DATA_INVALID`). Message ids increase
//!   per chat, shared by inbound and bot messages.
//! - `sendPhoto`, `sendDocument`, `sendVoice`: the file as a multipart part named like the
//!   parameter (or `attach://<part>`), a known `file_id` or an HTTP(S) URL (not fetched);
//!   `caption` ≤ 1024 characters after parsing (`message caption is too long`); uploads over
//!   50 MB are 413. Uploads become files the client can `getFile`.
//! - `editMessageText {chat_id, message_id, text, parse_mode, entities, reply_markup}` and
//!   `editMessageReplyMarkup`: only the bot's messages (`message can't be edited`); a missing
//!   message is `message to edit not found`; an unchanged text and markup is `message is not
//!   modified: specified new message content and reply markup are exactly the same as a current
//!   content and reply markup of the message`.
//! - `sendChatAction {chat_id, action, message_thread_id}` (one of the documented actions, else
//!   `wrong parameter action in request`), `setMessageReaction {chat_id, message_id, reaction,
//!   is_big}` (at most one reaction, emoji from the documented list), `deleteMessage`,
//!   `answerCallbackQuery {callback_query_id, text ≤ 200, show_alert}` (an unknown or answered
//!   id is `query is too old and response timeout expired or query ID is invalid`), `getFile`
//!   (`{file_id, file_unique_id, file_size, file_path}`, files over 20 MB are `file is too big`),
//!   `getChat`, `setMyCommands`, `getMyCommands`, `deleteMyCommands`.
//! - Sending to a group migrated with [`TelegramServer::migrate_group`] is `group chat was
//!   upgraded to a supergroup chat` with `parameters.migrate_to_chat_id`; to a user who blocked
//!   the bot ([`TelegramServer::block_bot`]) 403 `Forbidden: bot was blocked by the user`.
//!
//! Inbound messages look like the real server's: `from`, `chat`, `date`, automatically detected
//! `bot_command`, `mention` and `url` entities (unless given), and in a topic
//! `message_thread_id`, `is_topic_message` and a `reply_to_message` that is the topic's
//! `forum_topic_created` service message (as Telegram does for topic messages that reply to
//! nothing else).
//!
//! # Faults
//!
//! - [`TelegramServer::fail_next`]: the next call of a method gets a scripted error (429 with
//!   `parameters.retry_after`, 5xx such as `{"ok":false,"error_code":502,"description":"Bad
//!   Gateway"}`, or any status); queued, in order.
//! - [`TelegramServer::set_chat_rate_limit`]: more than N sends (`sendMessage`, `sendPhoto`,
//!   `sendDocument`, `sendVoice`) to one chat within a second are 429 `Too Many Requests: retry
//!   after X` with `parameters.retry_after`.
//! - [`TelegramServer::stall_polls`]: getUpdates calls are taken but never answered; the
//!   connection stays open until the client gives up or the twin is dropped.
//! - [`TelegramServer::drop_next_polls`]: the next N getUpdates calls have their TCP connection
//!   closed without an HTTP answer.
//! - [`TelegramServer::duplicate_next_poll`]: the next getUpdates answer starts with updates that
//!   were already confirmed, as a buggy proxy would.
//! - [`TelegramServer::malformed_next_poll`]: the next getUpdates answer is a 200 whose body is
//!   not JSON.
//!
//! In [`TelegramServer::requests`] a status of 0 means no HTTP answer was given.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

// ---------------------------------------------------------------------------------------------
// Public data types
// ---------------------------------------------------------------------------------------------

/// The `type` of a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatKind {
    Private,
    Group,
    Supergroup,
    Channel,
}

impl ChatKind {
    fn as_str(self) -> &'static str {
        match self {
            ChatKind::Private => "private",
            ChatKind::Group => "group",
            ChatKind::Supergroup => "supergroup",
            ChatKind::Channel => "channel",
        }
    }
}

/// A chat the twin knows. A private chat's id is its user's id, as on Telegram.
#[derive(Debug, Clone, PartialEq)]
pub struct Chat {
    pub id: i64,
    pub kind: ChatKind,
    /// Groups, supergroups and channels.
    pub title: Option<String>,
    /// Private chats: the user's first name.
    pub first_name: Option<String>,
    pub username: Option<String>,
    /// Supergroups with topics.
    pub is_forum: bool,
}

impl Chat {
    /// The Bot API `Chat` object.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), self.id.into());
        m.insert("type".into(), self.kind.as_str().into());
        if let Some(t) = &self.title {
            m.insert("title".into(), t.clone().into());
        }
        if let Some(f) = &self.first_name {
            m.insert("first_name".into(), f.clone().into());
        }
        if let Some(u) = &self.username {
            m.insert("username".into(), u.clone().into());
        }
        if self.is_forum {
            m.insert("is_forum".into(), true.into());
        }
        Value::Object(m)
    }
}

/// A kind of media message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Photo,
    Document,
    Voice,
}

impl MediaKind {
    /// The parameter (and message field) name: `photo`, `document`, `voice`.
    pub fn param(self) -> &'static str {
        match self {
            MediaKind::Photo => "photo",
            MediaKind::Document => "document",
            MediaKind::Voice => "voice",
        }
    }
}

/// A message the bot sent successfully (refused calls are only in [`TelegramServer::requests`]).
#[derive(Debug, Clone)]
pub struct Sent {
    /// The canonical method name, e.g. `sendMessage`.
    pub method: String,
    pub chat_id: i64,
    /// The id the twin gave the message.
    pub message_id: i64,
    /// `text` as sent (with its markup).
    pub text: Option<String>,
    /// `caption` as sent (with its markup).
    pub caption: Option<String>,
    /// The text or caption after entity parsing.
    pub plain: String,
    /// The entities the parse produced (or the `entities` sent).
    pub entities: Vec<Value>,
    pub parse_mode: Option<String>,
    pub reply_to_message_id: Option<i64>,
    pub message_thread_id: Option<i64>,
    pub reply_markup: Option<Value>,
    /// Length in bytes of an uploaded file.
    pub upload_len: Option<usize>,
    /// File name of an uploaded file.
    pub upload_name: Option<String>,
    /// The `file_id` or URL given instead of an upload.
    pub file_ref: Option<String>,
    pub disable_notification: bool,
    /// Every parameter received (uploads as `{"file_name", "len"}`).
    pub params: Value,
}

/// A successful `editMessageText` or `editMessageReplyMarkup`.
#[derive(Debug, Clone)]
pub struct Edit {
    pub method: String,
    pub chat_id: i64,
    pub message_id: i64,
    /// The new text as sent (`None` for `editMessageReplyMarkup`).
    pub text: Option<String>,
    /// The new text after entity parsing.
    pub plain: Option<String>,
    pub parse_mode: Option<String>,
    pub reply_markup: Option<Value>,
}

/// A successful `sendChatAction`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatAction {
    pub chat_id: i64,
    pub action: String,
    pub message_thread_id: Option<i64>,
}

/// A successful `setMessageReaction`; `emojis` empty means the reactions were removed.
#[derive(Debug, Clone, PartialEq)]
pub struct Reaction {
    pub chat_id: i64,
    pub message_id: i64,
    pub emojis: Vec<String>,
    pub is_big: bool,
}

/// A successful `answerCallbackQuery`.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackAnswer {
    pub callback_query_id: String,
    pub text: Option<String>,
    pub show_alert: bool,
}

/// One call received, whatever its outcome.
#[derive(Debug, Clone)]
pub struct ApiCall {
    /// The method as written in the path.
    pub method: String,
    /// `GET` or `POST`.
    pub http_method: String,
    /// The HTTP status answered; 0 when no answer was given (dropped or stalled).
    pub status: u16,
    /// Every parameter received.
    pub params: Value,
}

/// One webhook delivery attempt.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub update_id: Option<i64>,
    /// The receiver's HTTP status; `None` when the request failed (connection refused, …).
    pub status: Option<u16>,
    /// The `X-Telegram-Bot-Api-Secret-Token` sent.
    pub secret: Option<String>,
    pub body: Value,
}

/// An inbound message for [`TelegramServer::push_message`].
#[derive(Debug, Clone, Default)]
pub struct Inbound {
    pub chat_id: i64,
    /// The sender's user id (unknown users get the first name `User <id>`).
    pub from: i64,
    pub text: Option<String>,
    /// `None`: `bot_command`, `mention` (5–32 characters) and `url` entities are detected as the
    /// real server does. `Some`: exactly these entities (of the text or the caption).
    pub entities: Option<Vec<Value>>,
    /// A topic of a forum (see [`TelegramServer::add_topic`]).
    pub thread_id: Option<i64>,
    /// A message of the same chat this one replies to.
    pub reply_to: Option<i64>,
    /// A media message with a file from [`TelegramServer::register_file`].
    pub media: Option<(MediaKind, String)>,
    pub caption: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Internal state
// ---------------------------------------------------------------------------------------------

struct Queued {
    seq: u64,
    id: Option<i64>,
    delivered: bool,
    body: Value,
}

struct StoredMessage {
    json: Value,
    from_bot: bool,
    /// `Some` for text messages (the plain text).
    text: Option<String>,
    entities: Value,
    reply_markup: Option<Value>,
}

struct ChatState {
    chat: Chat,
    next_message_id: i64,
    messages: BTreeMap<i64, StoredMessage>,
    topics: BTreeMap<i64, String>,
}

struct User {
    first_name: String,
    username: Option<String>,
}

struct FileEntry {
    unique_id: String,
    path: String,
    name: String,
    bytes: Bytes,
}

struct Webhook {
    url: String,
    secret: Option<String>,
    allowed: Option<Vec<String>>,
    max_connections: i64,
    last_error: Option<(i64, String)>,
}

struct Scripted {
    method: String,
    status: u16,
    retry_after: Option<u64>,
}

struct Inner {
    token: String,
    bot_id: i64,
    username: String,
    first_name: String,
    users: HashMap<i64, User>,
    chats: BTreeMap<i64, ChatState>,
    migrated: HashMap<i64, i64>,
    blocked: HashSet<i64>,

    pending: VecDeque<Queued>,
    confirmed: VecDeque<Value>,
    next_update_id: i64,
    next_seq: u64,
    confirmed_offset: i64,
    poll_allowed: Option<Vec<String>>,
    poll_generation: u64,
    polls: usize,
    webhook: Option<Webhook>,
    webhook_retry: Duration,

    scripted: VecDeque<Scripted>,
    stall_polls: bool,
    drop_polls: usize,
    duplicate_next: bool,
    malformed_next: bool,
    rate_limit: u32,
    send_times: HashMap<i64, VecDeque<Instant>>,

    files: HashMap<String, FileEntry>,
    next_file: u64,
    callbacks: HashMap<String, bool>,
    next_callback: u64,
    commands: Value,

    sent: Vec<Sent>,
    edits: Vec<Edit>,
    actions: Vec<ChatAction>,
    reactions: Vec<Reaction>,
    callback_answers: Vec<CallbackAnswer>,
    deleted: Vec<(i64, i64)>,
    calls: Vec<ApiCall>,
    deliveries: Vec<Delivery>,
}

/// How many confirmed updates are kept for [`TelegramServer::duplicate_next_poll`].
const CONFIRMED_KEPT: usize = 1000;

struct Twin {
    inner: Mutex<Inner>,
    /// Bumped on every change a held poll or the webhook deliverer may wait for.
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

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

// ---------------------------------------------------------------------------------------------
// The server and its test-facing API
// ---------------------------------------------------------------------------------------------

/// A running twin. Dropping it stops the server, closes held polls and stops webhook delivery.
pub struct TelegramServer {
    addr: SocketAddr,
    token: String,
    twin: Shared,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for TelegramServer {
    fn drop(&mut self) {
        self.twin.closed.store(true, Ordering::SeqCst);
        self.twin.bump();
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl TelegramServer {
    /// Starts a twin on 127.0.0.1 with a random port that accepts `token` (`<bot id>:<secret>`).
    pub async fn start(token: &str) -> TelegramServer {
        let bot_id = token.split(':').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        let inner = Inner {
            token: token.into(),
            bot_id,
            username: "clawline_test_bot".into(),
            first_name: "Clawline Test".into(),
            users: HashMap::new(),
            chats: BTreeMap::new(),
            migrated: HashMap::new(),
            blocked: HashSet::new(),
            pending: VecDeque::new(),
            confirmed: VecDeque::new(),
            next_update_id: 727_000_001,
            next_seq: 0,
            confirmed_offset: 0,
            poll_allowed: None,
            poll_generation: 0,
            polls: 0,
            webhook: None,
            webhook_retry: Duration::from_millis(200),
            scripted: VecDeque::new(),
            stall_polls: false,
            drop_polls: 0,
            duplicate_next: false,
            malformed_next: false,
            rate_limit: 0,
            send_times: HashMap::new(),
            files: HashMap::new(),
            next_file: 0,
            callbacks: HashMap::new(),
            next_callback: 0,
            commands: json!([]),
            sent: Vec::new(),
            edits: Vec::new(),
            actions: Vec::new(),
            reactions: Vec::new(),
            callback_answers: Vec::new(),
            deleted: Vec::new(),
            calls: Vec::new(),
            deliveries: Vec::new(),
        };
        let (changed, _) = watch::channel(0u64);
        let twin = Arc::new(Twin { inner: Mutex::new(inner), changed, closed: AtomicBool::new(false) });
        let app = Router::new().fallback(handle).layer(DefaultBodyLimit::max(MAX_BODY)).with_state(twin.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind telegram twin");
        let addr = listener.local_addr().expect("local addr");
        let serve = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let deliver = tokio::spawn(deliver_webhooks(twin.clone()));
        TelegramServer { addr, token: token.into(), twin, tasks: vec![serve, deliver] }
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash: methods are under
    /// `{api_root}/bot{token}/`.
    pub fn api_root(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `{api_root}/bot{token}/{method}`.
    pub fn method_url(&self, method: &str) -> String {
        format!("{}/bot{}/{method}", self.api_root(), self.token)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bot's user id (the number before `:` in the token).
    pub fn bot_id(&self) -> i64 {
        self.twin.lock().bot_id
    }

    /// Sets the bot's `username` (without `@`), as `getMe` answers it.
    pub fn set_username(&self, username: &str) {
        self.twin.lock().username = username.trim_start_matches('@').into();
    }

    pub fn username(&self) -> String {
        self.twin.lock().username.clone()
    }

    /// How long the twin waits before retrying a webhook delivery that failed.
    pub fn set_webhook_retry_delay(&self, delay: Duration) {
        self.twin.lock().webhook_retry = delay;
    }

    // --- Users and chats ---------------------------------------------------------------------

    /// Registers a user (the sender of pushed messages).
    pub fn add_user(&self, user_id: i64, first_name: &str, username: Option<&str>) {
        self.twin
            .lock()
            .users
            .insert(user_id, User { first_name: first_name.into(), username: username.map(String::from) });
    }

    /// A private chat with a user; its id is the user's id.
    pub fn add_private_chat(&self, user_id: i64, first_name: &str, username: Option<&str>) -> Chat {
        self.add_user(user_id, first_name, username);
        self.add_chat(Chat {
            id: user_id,
            kind: ChatKind::Private,
            title: None,
            first_name: Some(first_name.into()),
            username: username.map(String::from),
            is_forum: false,
        })
    }

    /// A basic group (ids are negative on Telegram).
    pub fn add_group(&self, id: i64, title: &str) -> Chat {
        self.add_chat(Chat {
            id,
            kind: ChatKind::Group,
            title: Some(title.into()),
            first_name: None,
            username: None,
            is_forum: false,
        })
    }

    /// A supergroup (ids look like `-100…` on Telegram), a forum when `is_forum`.
    pub fn add_supergroup(&self, id: i64, title: &str, is_forum: bool) -> Chat {
        self.add_chat(Chat {
            id,
            kind: ChatKind::Supergroup,
            title: Some(title.into()),
            first_name: None,
            username: None,
            is_forum,
        })
    }

    /// A channel reachable as `@username`.
    pub fn add_channel(&self, id: i64, title: &str, username: &str) -> Chat {
        self.add_chat(Chat {
            id,
            kind: ChatKind::Channel,
            title: Some(title.into()),
            first_name: None,
            username: Some(username.trim_start_matches('@').into()),
            is_forum: false,
        })
    }

    /// Gives a group, supergroup or channel a public `@username` usable as `chat_id`.
    pub fn set_chat_username(&self, chat_id: i64, username: &str) {
        let mut g = self.twin.lock();
        let chat = g.chats.get_mut(&chat_id).unwrap_or_else(|| panic!("set_chat_username: no chat {chat_id}"));
        chat.chat.username = Some(username.trim_start_matches('@').into());
    }

    fn add_chat(&self, chat: Chat) -> Chat {
        let mut g = self.twin.lock();
        g.chats.insert(
            chat.id,
            ChatState { chat: chat.clone(), next_message_id: 1, messages: BTreeMap::new(), topics: BTreeMap::new() },
        );
        chat
    }

    /// Opens topic `thread_id` in a forum supergroup (or in a private chat with topics, which
    /// the Bot API allows for bots with forum topic mode). As on Telegram, the thread id is the
    /// id of the topic's `forum_topic_created` service message.
    pub fn add_topic(&self, chat_id: i64, thread_id: i64, name: &str) {
        let mut g = self.twin.lock();
        let bot = g.bot_user();
        let chat = g.chats.get_mut(&chat_id).unwrap_or_else(|| panic!("add_topic: no chat {chat_id}"));
        assert!(
            chat.chat.is_forum || chat.chat.kind == ChatKind::Private,
            "add_topic: chat {chat_id} is neither a forum supergroup nor a private chat"
        );
        assert!(!chat.messages.contains_key(&thread_id), "add_topic: message {thread_id} already exists");
        let json = json!({
            "message_id": thread_id,
            "from": bot,
            "chat": chat.chat.to_json(),
            "date": now_unix(),
            "message_thread_id": thread_id,
            "is_topic_message": true,
            "forum_topic_created": {"name": name, "icon_color": 7322096},
        });
        chat.messages.insert(
            thread_id,
            StoredMessage { json, from_bot: true, text: None, entities: json!([]), reply_markup: None },
        );
        chat.topics.insert(thread_id, name.into());
        chat.next_message_id = chat.next_message_id.max(thread_id + 1);
    }

    /// The user blocked the bot: sends to their private chat are 403.
    pub fn block_bot(&self, user_id: i64) {
        self.twin.lock().blocked.insert(user_id);
    }

    /// Migrates group `old_id` to supergroup `new_id` (created with the same title when
    /// unknown): calls naming the old id answer `group chat was upgraded to a supergroup chat`
    /// with `parameters.migrate_to_chat_id`.
    pub fn migrate_group(&self, old_id: i64, new_id: i64) {
        let title = {
            let g = self.twin.lock();
            let old = g.chats.get(&old_id).unwrap_or_else(|| panic!("migrate_group: no chat {old_id}"));
            (!g.chats.contains_key(&new_id)).then(|| old.chat.title.clone().unwrap_or_default())
        };
        if let Some(title) = title {
            self.add_supergroup(new_id, &title, false);
        }
        let mut g = self.twin.lock();
        g.chats.remove(&old_id);
        g.migrated.insert(old_id, new_id);
    }

    /// A stored message (inbound or sent, with edits applied) as its Message JSON.
    pub fn message(&self, chat_id: i64, message_id: i64) -> Option<Value> {
        self.twin.lock().chats.get(&chat_id)?.messages.get(&message_id).map(|m| m.json.clone())
    }

    // --- Files -------------------------------------------------------------------------------

    /// Makes `bytes` a file the bot can `getFile` and download; returns its `file_id` for a
    /// pushed photo, document or voice message.
    pub fn register_file(&self, bytes: &[u8], file_name: &str) -> String {
        self.twin.lock().register_file(Bytes::copy_from_slice(bytes), file_name)
    }

    // --- Pushing what users do ---------------------------------------------------------------

    /// Pushes a `message` update; returns `(update_id, message_id)`.
    ///
    /// Panics on a setup mistake (unknown chat, topic, replied message or file).
    pub fn push_message(&self, m: Inbound) -> (i64, i64) {
        let (update_id, message_id) = {
            let mut g = self.twin.lock();
            let (message_id, message) = g.inbound_message(&m);
            (g.push_update("message", message), message_id)
        };
        self.twin.bump();
        (update_id, message_id)
    }

    /// A text message from `from_user_id` in `chat_id`.
    pub fn push_text(&self, chat_id: i64, from_user_id: i64, text: &str) -> (i64, i64) {
        self.push_message(Inbound { chat_id, from: from_user_id, text: Some(text.into()), ..Inbound::default() })
    }

    /// A text message in topic `thread_id` of a forum.
    pub fn push_text_in_topic(&self, chat_id: i64, thread_id: i64, from_user_id: i64, text: &str) -> (i64, i64) {
        self.push_message(Inbound {
            chat_id,
            from: from_user_id,
            text: Some(text.into()),
            thread_id: Some(thread_id),
            ..Inbound::default()
        })
    }

    /// A text message replying to message `reply_to` of the same chat.
    pub fn push_reply(&self, chat_id: i64, from_user_id: i64, reply_to: i64, text: &str) -> (i64, i64) {
        self.push_message(Inbound {
            chat_id,
            from: from_user_id,
            text: Some(text.into()),
            reply_to: Some(reply_to),
            ..Inbound::default()
        })
    }

    /// A text message with exactly these `entities` (see [`TelegramServer::entity`] and
    /// [`TelegramServer::text_mention`]).
    pub fn push_with_entities(&self, chat_id: i64, from_user_id: i64, text: &str, entities: Vec<Value>) -> (i64, i64) {
        self.push_message(Inbound {
            chat_id,
            from: from_user_id,
            text: Some(text.into()),
            entities: Some(entities),
            ..Inbound::default()
        })
    }

    /// A photo message with a registered file.
    pub fn push_photo(&self, chat_id: i64, from_user_id: i64, file_id: &str, caption: Option<&str>) -> (i64, i64) {
        self.push_media(chat_id, from_user_id, MediaKind::Photo, file_id, caption)
    }

    /// A document message with a registered file.
    pub fn push_document(&self, chat_id: i64, from_user_id: i64, file_id: &str, caption: Option<&str>) -> (i64, i64) {
        self.push_media(chat_id, from_user_id, MediaKind::Document, file_id, caption)
    }

    /// A voice message with a registered file.
    pub fn push_voice(&self, chat_id: i64, from_user_id: i64, file_id: &str) -> (i64, i64) {
        self.push_media(chat_id, from_user_id, MediaKind::Voice, file_id, None)
    }

    fn push_media(&self, chat_id: i64, from: i64, kind: MediaKind, file_id: &str, caption: Option<&str>) -> (i64, i64) {
        self.push_message(Inbound {
            chat_id,
            from,
            media: Some((kind, file_id.into())),
            caption: caption.map(String::from),
            ..Inbound::default()
        })
    }

    /// A user pressed an inline button with `data` under message `message_id`; returns the
    /// callback query id to answer.
    pub fn push_callback_query(&self, chat_id: i64, from_user_id: i64, message_id: i64, data: &str) -> String {
        let id = {
            let mut g = self.twin.lock();
            let from = g.user_json(from_user_id);
            let message = g
                .chats
                .get(&chat_id)
                .and_then(|c| c.messages.get(&message_id))
                .map(|m| m.json.clone())
                .unwrap_or_else(|| panic!("push_callback_query: no message {message_id} in chat {chat_id}"));
            g.next_callback += 1;
            let id = format!("{}{:010}", g.bot_id.unsigned_abs(), g.next_callback);
            g.callbacks.insert(id.clone(), false);
            let query = json!({
                "id": id,
                "from": from,
                "message": message,
                "chat_instance": format!("-{}", chat_id.unsigned_abs() * 7 + 13),
                "data": data,
            });
            g.push_update("callback_query", query);
            id
        };
        self.twin.bump();
        id
    }

    /// Queues `update` exactly as given (malformed or hostile on purpose): no `update_id` is
    /// added. Returns its `update_id` when it has an integer one.
    pub fn push_raw(&self, update: Value) -> Option<i64> {
        let id = {
            let mut g = self.twin.lock();
            let id = update.get("update_id").and_then(Value::as_i64);
            if let Some(id) = id {
                g.next_update_id = g.next_update_id.max(id + 1);
            }
            g.enqueue(id, update);
            id
        };
        self.twin.bump();
        id
    }

    /// Queues `update` with the next `update_id` set (replacing any it had).
    pub fn push_raw_with_id(&self, mut update: Value) -> i64 {
        let id = {
            let mut g = self.twin.lock();
            let id = g.next_update_id;
            g.next_update_id += 1;
            if let Some(o) = update.as_object_mut() {
                o.insert("update_id".into(), id.into());
            }
            g.enqueue(Some(id), update);
            id
        };
        self.twin.bump();
        id
    }

    /// A MessageEntity of `kind` over the first occurrence of `needle` in `text` (UTF-16
    /// offsets, as the Bot API counts).
    pub fn entity(text: &str, needle: &str, kind: &str) -> Value {
        let at = text.find(needle).unwrap_or_else(|| panic!("entity: {needle:?} is not in {text:?}"));
        json!({"type": kind, "offset": utf16_len(&text[..at]), "length": utf16_len(needle)})
    }

    /// A `text_mention` entity over `needle` for user `user_id` (a user without a username).
    pub fn text_mention(&self, text: &str, needle: &str, user_id: i64) -> Value {
        let mut e = Self::entity(text, needle, "text_mention");
        e["user"] = self.twin.lock().user_json(user_id);
        e
    }

    // --- Inspection --------------------------------------------------------------------------

    /// Messages the bot sent, in order.
    pub fn sent(&self) -> Vec<Sent> {
        self.twin.lock().sent.clone()
    }

    /// How many messages the bot sent to `chat_id` (cheap: nothing is copied).
    pub fn sent_count_to(&self, chat_id: i64) -> usize {
        self.twin.lock().sent.iter().filter(|s| s.chat_id == chat_id).count()
    }

    /// Waits until at least `n` messages were sent; panics with what was received on timeout.
    pub async fn wait_sent(&self, n: usize, timeout: Duration) -> Vec<Sent> {
        let deadline = Instant::now() + timeout;
        loop {
            let sent = self.sent();
            if sent.len() >= n {
                return sent;
            }
            if Instant::now() >= deadline {
                let calls: Vec<String> =
                    self.requests().iter().map(|c| format!("{} {} -> {}", c.http_method, c.method, c.status)).collect();
                panic!(
                    "telegram twin: expected {n} sent messages within {timeout:?}, got {}: {:#?}\ncalls received: {calls:#?}",
                    sent.len(),
                    sent.iter().map(|s| (&s.method, s.chat_id, &s.plain)).collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn edits(&self) -> Vec<Edit> {
        self.twin.lock().edits.clone()
    }

    pub fn chat_actions(&self) -> Vec<ChatAction> {
        self.twin.lock().actions.clone()
    }

    pub fn reactions(&self) -> Vec<Reaction> {
        self.twin.lock().reactions.clone()
    }

    pub fn callback_answers(&self) -> Vec<CallbackAnswer> {
        self.twin.lock().callback_answers.clone()
    }

    /// `(chat_id, message_id)` of each successful `deleteMessage`.
    pub fn deleted(&self) -> Vec<(i64, i64)> {
        self.twin.lock().deleted.clone()
    }

    /// The commands of the last successful `setMyCommands`.
    pub fn commands(&self) -> Value {
        self.twin.lock().commands.clone()
    }

    /// Every call received, in order of answer (stalled and dropped polls when taken).
    pub fn requests(&self) -> Vec<ApiCall> {
        self.twin.lock().calls.clone()
    }

    /// getUpdates calls received (including refused, stalled and dropped ones).
    pub fn poll_count(&self) -> usize {
        self.twin.lock().polls
    }

    /// Waits until at least `n` getUpdates calls were received; panics on timeout.
    pub async fn wait_polls(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.poll_count() < n {
            assert!(
                Instant::now() < deadline,
                "telegram twin: expected {n} getUpdates calls within {timeout:?}, got {}",
                self.poll_count()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The highest `offset` a getUpdates call confirmed with (0 before any).
    pub fn confirmed_offset(&self) -> i64 {
        self.twin.lock().confirmed_offset
    }

    /// Updates not confirmed yet (or not yet delivered to the webhook), in order.
    pub fn pending_updates(&self) -> Vec<Value> {
        self.twin.lock().pending.iter().map(|q| q.body.clone()).collect()
    }

    /// Webhook delivery attempts, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.twin.lock().deliveries.clone()
    }

    /// Waits until at least `n` webhook delivery attempts were made; panics on timeout.
    pub async fn wait_deliveries(&self, n: usize, timeout: Duration) -> Vec<Delivery> {
        let deadline = Instant::now() + timeout;
        loop {
            let d = self.deliveries();
            if d.len() >= n {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "telegram twin: expected {n} webhook deliveries within {timeout:?}, got {d:#?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    // --- Faults ------------------------------------------------------------------------------

    /// The next call of `method` (case-insensitive; `*` for any) answers `status`: 429 as
    /// `Too Many Requests: retry after X` with `parameters.retry_after` (without them when
    /// `retry_after` is `None`), 5xx as `Internal Server Error`, `Bad Gateway`, `Service
    /// Unavailable` or `Gateway Timeout`. Queued: several calls script several failures.
    pub fn fail_next(&self, method: &str, status: u16, retry_after: Option<u64>) {
        self.twin.lock().scripted.push_back(Scripted { method: method.to_ascii_lowercase(), status, retry_after });
    }

    /// At most `per_second` sends per chat within any second (0: no limit); the excess is 429.
    pub fn set_chat_rate_limit(&self, per_second: u32) {
        let mut g = self.twin.lock();
        g.rate_limit = per_second;
        g.send_times.clear();
    }

    /// While on, getUpdates calls are taken but never answered.
    pub fn stall_polls(&self, on: bool) {
        self.twin.lock().stall_polls = on;
    }

    /// The next `n` getUpdates calls get their connection closed without an HTTP answer.
    pub fn drop_next_polls(&self, n: usize) {
        self.twin.lock().drop_polls = n;
    }

    /// The next getUpdates answer starts with the most recently confirmed updates.
    pub fn duplicate_next_poll(&self) {
        self.twin.lock().duplicate_next = true;
    }

    /// The next getUpdates answer is a 200 whose body is not valid JSON.
    pub fn malformed_next_poll(&self) {
        self.twin.lock().malformed_next = true;
    }
}

// ---------------------------------------------------------------------------------------------
// Building messages and queueing updates
// ---------------------------------------------------------------------------------------------

/// A message to store, see [`Inner::store_message`].
struct NewMessage {
    chat_id: i64,
    from: Value,
    from_bot: bool,
    thread: Option<i64>,
    reply_to: Option<i64>,
    content: Map<String, Value>,
}

impl Inner {
    fn bot_user(&self) -> Value {
        json!({"id": self.bot_id, "is_bot": true, "first_name": self.first_name, "username": self.username})
    }

    fn user_json(&mut self, id: i64) -> Value {
        let u = self.users.entry(id).or_insert_with(|| User { first_name: format!("User {id}"), username: None });
        let mut m = json!({"id": id, "is_bot": false, "first_name": u.first_name, "language_code": "en"});
        if let Some(name) = &u.username {
            m["username"] = name.clone().into();
        }
        m
    }

    fn register_file(&mut self, bytes: Bytes, name: &str) -> String {
        self.next_file += 1;
        let n = self.next_file;
        let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
        let dir = match ext.as_str() {
            "jpg" | "jpeg" | "png" | "webp" => "photos",
            "oga" | "ogg" | "opus" => "voice",
            _ => "documents",
        };
        let path = if ext.is_empty() { format!("{dir}/file_{n}") } else { format!("{dir}/file_{n}.{ext}") };
        let file_id = format!("BQACAgIAAxkBAAI{n:06}twin{}", name.len());
        let unique_id = format!("AgAD{n:06}");
        self.files.insert(file_id.clone(), FileEntry { unique_id, path, name: name.into(), bytes });
        file_id
    }

    /// The media object of a message (`photo` is an array of PhotoSize).
    fn media_json(&self, kind: MediaKind, file_id: &str) -> Option<Value> {
        let f = self.files.get(file_id)?;
        let base = json!({"file_id": file_id, "file_unique_id": f.unique_id, "file_size": f.bytes.len()});
        Some(match kind {
            MediaKind::Photo => {
                let mut size = base;
                size["width"] = 320.into();
                size["height"] = 240.into();
                json!([size])
            }
            MediaKind::Document => {
                let mut d = base;
                d["file_name"] = f.name.clone().into();
                d["mime_type"] = guess_mime(&f.name).into();
                d
            }
            MediaKind::Voice => {
                let mut v = base;
                v["duration"] = 1.into();
                v["mime_type"] = "audio/ogg".into();
                v
            }
        })
    }

    /// Stores a new message and returns its id and Message JSON.
    fn store_message(&mut self, m: NewMessage) -> (i64, Value) {
        let chat = self.chats.get_mut(&m.chat_id).expect("chat checked before storing");
        let id = chat.next_message_id;
        chat.next_message_id += 1;
        let mut j = Map::new();
        j.insert("message_id".into(), id.into());
        j.insert("from".into(), m.from);
        j.insert("chat".into(), chat.chat.to_json());
        j.insert("date".into(), now_unix().into());
        if let Some(t) = m.thread {
            j.insert("message_thread_id".into(), t.into());
            j.insert("is_topic_message".into(), true.into());
        }
        // Topic messages that reply to nothing else reply to the topic's service message.
        if let Some(target) = m.reply_to.or(m.thread).and_then(|r| chat.messages.get(&r)) {
            let mut t = target.json.clone();
            if let Some(o) = t.as_object_mut() {
                o.remove("reply_to_message");
            }
            j.insert("reply_to_message".into(), t);
        }
        let text = m.content.get("text").and_then(Value::as_str).map(String::from);
        let entities = m.content.get("entities").cloned().unwrap_or_else(|| json!([]));
        let reply_markup = m.content.get("reply_markup").cloned();
        j.extend(m.content);
        let json = Value::Object(j);
        chat.messages
            .insert(id, StoredMessage { json: json.clone(), from_bot: m.from_bot, text, entities, reply_markup });
        (id, json)
    }

    fn inbound_message(&mut self, m: &Inbound) -> (i64, Value) {
        let chat = self.chats.get(&m.chat_id).unwrap_or_else(|| panic!("push: no chat {} (add it first)", m.chat_id));
        if let Some(t) = m.thread_id {
            assert!(chat.topics.contains_key(&t), "push: chat {} has no topic {t} (add_topic first)", m.chat_id);
        }
        if let Some(r) = m.reply_to {
            assert!(chat.messages.contains_key(&r), "push: chat {} has no message {r} to reply to", m.chat_id);
        }
        let mut content = Map::new();
        if let Some(text) = &m.text {
            content.insert("text".into(), text.clone().into());
            let entities = m.entities.clone().unwrap_or_else(|| detect_entities(text));
            if !entities.is_empty() {
                content.insert("entities".into(), entities.into());
            }
        }
        if let Some((kind, file_id)) = &m.media {
            let media = self
                .media_json(*kind, file_id)
                .unwrap_or_else(|| panic!("push: unknown file {file_id} (register_file first)"));
            content.insert(kind.param().into(), media);
        }
        if let Some(caption) = &m.caption {
            content.insert("caption".into(), caption.clone().into());
            let entities = m.entities.clone().unwrap_or_else(|| detect_entities(caption));
            if !entities.is_empty() {
                content.insert("caption_entities".into(), entities.into());
            }
        }
        let from = self.user_json(m.from);
        self.store_message(NewMessage {
            chat_id: m.chat_id,
            from,
            from_bot: false,
            thread: m.thread_id,
            reply_to: m.reply_to,
            content,
        })
    }

    /// Queues an update of `kind` with the next `update_id`, unless `allowed_updates` filters it.
    fn push_update(&mut self, kind: &str, payload: Value) -> i64 {
        let id = self.next_update_id;
        self.next_update_id += 1;
        let allowed = match &self.webhook {
            Some(w) => w.allowed.clone(),
            None => self.poll_allowed.clone(),
        };
        if update_allowed(kind, allowed.as_deref()) {
            let mut body = Map::new();
            body.insert("update_id".into(), id.into());
            body.insert(kind.into(), payload);
            self.enqueue(Some(id), Value::Object(body));
        }
        id
    }

    fn enqueue(&mut self, id: Option<i64>, body: Value) {
        self.next_seq += 1;
        let seq = self.next_seq;
        self.pending.push_back(Queued { seq, id, delivered: false, body });
    }

    fn remember_confirmed(&mut self, body: Value) {
        self.confirmed.push_back(body);
        while self.confirmed.len() > CONFIRMED_KEPT {
            self.confirmed.pop_front();
        }
    }
}

/// Whether an update of `kind` is received under `allowed_updates`: an absent or empty list
/// means every kind but `chat_member`, `message_reaction` and `message_reaction_count`.
fn update_allowed(kind: &str, allowed: Option<&[String]>) -> bool {
    match allowed {
        Some(list) if !list.is_empty() => list.iter().any(|k| k == kind),
        _ => !matches!(kind, "chat_member" | "message_reaction" | "message_reaction_count"),
    }
}

/// The entities the server adds to a user's text: `/commands`, `@mentions` and URLs.
fn detect_entities(text: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut prev: Option<char> = None;
    let mut offset16 = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut k = 0;
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    while k < chars.len() {
        let (byte, c) = chars[k];
        let boundary = prev.is_none_or(|p| p.is_whitespace() || "([{,;".contains(p));
        let rest = &text[byte..];
        let mut len_chars = 0;
        let mut kind = "";
        if boundary && c == '/' {
            let n = rest[1..].chars().take_while(|&c| word(c)).count();
            if n > 0 {
                len_chars = 1 + n;
                let after: String = rest.chars().skip(len_chars).collect();
                if let Some(at) = after.strip_prefix('@') {
                    let m = at.chars().take_while(|&c| word(c)).count();
                    if m > 0 {
                        len_chars += 1 + m;
                    }
                }
                kind = "bot_command";
            }
        } else if boundary && c == '@' {
            let n = rest[1..].chars().take_while(|&c| word(c)).count();
            if (5..=32).contains(&n) {
                len_chars = 1 + n;
                kind = "mention";
            }
        } else if boundary && (rest.starts_with("https://") || rest.starts_with("http://")) {
            len_chars = rest.chars().take_while(|c| !c.is_whitespace()).count();
            kind = "url";
        }
        if len_chars > 0 {
            let s: String = rest.chars().take(len_chars).collect();
            let l16 = utf16_len(&s);
            out.push(json!({"type": kind, "offset": offset16, "length": l16}));
            offset16 += l16;
            prev = s.chars().last();
            k += len_chars;
            continue;
        }
        offset16 += c.len_utf16();
        prev = Some(c);
        k += 1;
    }
    out
}

fn guess_mime(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "pdf" => "application/pdf",
        "txt" | "md" => "text/plain",
        "json" => "application/json",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "mp3" => "audio/mpeg",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

// ---------------------------------------------------------------------------------------------
// Answers and errors
// ---------------------------------------------------------------------------------------------

/// A refusal, in the Bot API's error shape.
#[derive(Debug)]
struct ApiError {
    code: u16,
    description: String,
    parameters: Option<Value>,
}

impl ApiError {
    fn new(code: u16, description: impl Into<String>) -> ApiError {
        ApiError { code, description: description.into(), parameters: None }
    }

    fn body(&self) -> Value {
        let mut b = json!({"ok": false, "error_code": self.code, "description": self.description});
        if let Some(p) = &self.parameters {
            b["parameters"] = p.clone();
        }
        b
    }
}

/// 400 `Bad Request: <what>`.
fn bad(what: impl std::fmt::Display) -> ApiError {
    ApiError::new(400, format!("Bad Request: {what}"))
}

fn too_many(retry_after: Option<u64>) -> ApiError {
    match retry_after {
        Some(s) => ApiError {
            code: 429,
            description: format!("Too Many Requests: retry after {s}"),
            parameters: Some(json!({"retry_after": s})),
        },
        None => ApiError::new(429, "Too Many Requests"),
    }
}

const CONFLICT_POLL: &str =
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running";
const CONFLICT_WEBHOOK: &str =
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first";
const NOT_MODIFIED: &str = "message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message";
const QUERY_INVALID: &str = "query is too old and response timeout expired or query ID is invalid";

/// The body of a scripted failure.
fn scripted_error(s: &Scripted) -> ApiError {
    let mut e = match s.status {
        429 => return too_many(s.retry_after),
        400 => bad("scripted failure"),
        401 => ApiError::new(401, "Unauthorized"),
        403 => ApiError::new(403, "Forbidden: bot was blocked by the user"),
        404 => ApiError::new(404, "Not Found"),
        409 => ApiError::new(409, CONFLICT_POLL),
        500 => ApiError::new(500, "Internal Server Error"),
        502 => ApiError::new(502, "Bad Gateway"),
        503 => ApiError::new(503, "Service Unavailable"),
        504 => ApiError::new(504, "Gateway Timeout"),
        other => ApiError::new(other, format!("Error {other}")),
    };
    if let Some(r) = s.retry_after {
        e.parameters = Some(json!({"retry_after": r}));
    }
    e
}

type Answer = Result<Value, ApiError>;

/// `{"ok":true,"result":…}`.
fn ok(result: Value) -> Answer {
    Ok(json!({"ok": true, "result": result}))
}

fn ok_described(result: Value, description: &str) -> Answer {
    Ok(json!({"ok": true, "result": result, "description": description}))
}

/// What the HTTP layer does with a call.
enum Outcome {
    Json(u16, Value),
    /// 200 with a body that is not JSON.
    Garbage,
    /// Close the connection without answering.
    Drop,
    /// Never answer.
    Stall,
}

impl From<Answer> for Outcome {
    fn from(a: Answer) -> Outcome {
        match a {
            Ok(body) => Outcome::Json(200, body),
            Err(e) => Outcome::Json(e.code, e.body()),
        }
    }
}

fn json_response(status: u16, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Parameters: query string, JSON, urlencoded and multipart bodies
// ---------------------------------------------------------------------------------------------

/// The largest body taken (uploads over [`MAX_UPLOAD`] are refused with 413 afterwards).
const MAX_BODY: usize = 60 * 1024 * 1024;
const MAX_UPLOAD: usize = 50 * 1024 * 1024;
const MAX_DOWNLOAD: usize = 20 * 1024 * 1024;

struct Upload {
    file_name: String,
    bytes: Bytes,
}

#[derive(Default)]
struct Params {
    values: Map<String, Value>,
    uploads: HashMap<String, Upload>,
}

impl Params {
    fn parse(headers: &HeaderMap, query: Option<&str>, body: &[u8]) -> Result<Params, ApiError> {
        let mut p = Params::default();
        if let Some(q) = query {
            for (k, v) in url_decode_pairs(q) {
                p.values.insert(k, v.into());
            }
        }
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
        let mime = content_type.split(';').next().unwrap_or("").trim().to_string();
        if body.is_empty() {
            return Ok(p);
        }
        match mime.as_str() {
            "application/json" => {
                let v: Value = serde_json::from_slice(body).map_err(|_| bad("can't parse JSON object"))?;
                let Value::Object(o) = v else { return Err(bad("can't parse JSON object")) };
                p.values.extend(o);
            }
            "application/x-www-form-urlencoded" => {
                for (k, v) in url_decode_pairs(&String::from_utf8_lossy(body)) {
                    p.values.insert(k, v.into());
                }
            }
            "multipart/form-data" => {
                // The boundary is case-sensitive: take it from the header as sent.
                let header = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
                let boundary = header
                    .split(';')
                    .filter_map(|kv| kv.split_once('='))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
                    .map(|(_, v)| v.trim().trim_matches('"').to_string())
                    .ok_or_else(|| bad("can't parse multipart/form-data: no boundary"))?;
                let parts = parse_multipart(body, &boundary).ok_or_else(|| bad("can't parse multipart/form-data"))?;
                for part in parts {
                    match part.file_name {
                        Some(file_name) => {
                            p.uploads.insert(part.name, Upload { file_name, bytes: Bytes::from(part.data) });
                        }
                        None => {
                            p.values.insert(part.name, String::from_utf8_lossy(&part.data).into_owned().into());
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(p)
    }

    /// A present, non-null parameter.
    fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name).filter(|v| !v.is_null())
    }

    /// A string parameter (numbers are taken as their text).
    fn text(&self, name: &str) -> Option<String> {
        match self.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// An integer parameter, given as a JSON number or as text.
    fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => as_int(v).map(Some).ok_or_else(|| bad(format!("wrong parameter {name} in request"))),
        }
    }

    fn flag(&self, name: &str) -> bool {
        match self.get(name) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true") || s == "1",
            Some(Value::Number(n)) => n.as_i64().is_some_and(|n| n != 0),
            _ => false,
        }
    }

    /// An object or array parameter, given as JSON or as JSON-serialized text.
    fn json(&self, name: &str) -> Option<Result<Value, ()>> {
        Some(match self.get(name)? {
            Value::String(s) => serde_json::from_str(s).map_err(|_| ()),
            v @ (Value::Object(_) | Value::Array(_)) => Ok(v.clone()),
            _ => Err(()),
        })
    }

    fn to_json(&self) -> Value {
        let mut m = self.values.clone();
        for (k, u) in &self.uploads {
            m.insert(k.clone(), json!({"file_name": u.file_name, "len": u.bytes.len()}));
        }
        Value::Object(m)
    }
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
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

struct Part {
    name: String,
    file_name: Option<String>,
    data: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

/// The parts of a `multipart/form-data` body (RFC 7578), `None` when it is malformed.
fn parse_multipart(body: &[u8], boundary: &str) -> Option<Vec<Part>> {
    let delim = format!("--{boundary}").into_bytes();
    let next = [b"\r\n".as_slice(), &delim].concat();
    let mut pos = find(body, &delim, 0)? + delim.len();
    let mut parts = Vec::new();
    loop {
        if body.get(pos..)?.starts_with(b"--") {
            return Some(parts);
        }
        if !body.get(pos..)?.starts_with(b"\r\n") {
            return None;
        }
        pos += 2;
        let head_end = find(body, b"\r\n\r\n", pos)?;
        let head = std::str::from_utf8(&body[pos..head_end]).ok()?;
        let data_start = head_end + 4;
        let data_end = find(body, &next, data_start)?;
        let disposition = head
            .split("\r\n")
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case("content-disposition")))
            .map(|(_, v)| v)?;
        let param = |key: &str| {
            disposition.split(';').skip(1).find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k.trim().eq_ignore_ascii_case(key)).then(|| v.trim().trim_matches('"').to_string())
            })
        };
        parts.push(Part {
            name: param("name")?,
            file_name: param("filename"),
            data: body[data_start..data_end].to_vec(),
        });
        pos = data_end + next.len();
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP entry point
// ---------------------------------------------------------------------------------------------

async fn handle(State(twin): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = url_decode(uri.path());
    if let Some(rest) = path.strip_prefix("/file/bot") {
        return download(&twin, rest);
    }
    let Some((token, api_method)) = path.strip_prefix("/bot").and_then(|r| r.split_once('/')) else {
        return json_response(404, &ApiError::new(404, "Not Found").body());
    };
    let api_method = api_method.to_string();
    let params = Params::parse(&headers, uri.query(), &body);
    let logged = params.as_ref().map(Params::to_json).unwrap_or(Value::Null);
    let outcome = if token != twin.lock().token {
        Outcome::Json(401, ApiError::new(401, "Unauthorized").body())
    } else {
        match params {
            Ok(p) => dispatch(&twin, &api_method, &p).await,
            Err(e) => Outcome::from(Err(e)),
        }
    };
    let status = match &outcome {
        Outcome::Json(s, _) => *s,
        Outcome::Garbage => 200,
        Outcome::Drop | Outcome::Stall => 0,
    };
    twin.lock().calls.push(ApiCall { method: api_method, http_method: method.to_string(), status, params: logged });
    twin.bump();
    match outcome {
        Outcome::Json(status, body) => json_response(status, &body),
        Outcome::Garbage => Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(Body::from("{\"ok\":true,\"result\":[{\"update_id\":"))
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

/// Ends the connection's task without an HTTP answer: the connection is closed. Unwinding
/// without the panic hook keeps test output clean; tokio contains it to this connection.
fn drop_connection() -> ! {
    std::panic::resume_unwind(Box::new("telegram twin: connection dropped on purpose"))
}

async fn dispatch(twin: &Shared, method: &str, p: &Params) -> Outcome {
    let lower = method.to_ascii_lowercase();
    {
        let mut g = twin.lock();
        if let Some(i) = g.scripted.iter().position(|s| s.method == lower || s.method == "*") {
            let s = g.scripted.remove(i).expect("position found");
            if lower == "getupdates" {
                g.polls += 1;
            }
            return Outcome::from(Err(scripted_error(&s)));
        }
    }
    if lower == "getupdates" {
        return get_updates(twin, p).await;
    }
    let mut g = twin.lock();
    let answer = match lower.as_str() {
        "getme" => ok(json!({
            "id": g.bot_id, "is_bot": true, "first_name": g.first_name, "username": g.username,
            "can_join_groups": true, "can_read_all_group_messages": false, "supports_inline_queries": false,
            "can_connect_to_business": false, "has_main_web_app": false,
        })),
        "setwebhook" => set_webhook(&mut g, p),
        "deletewebhook" => delete_webhook(&mut g, p),
        "getwebhookinfo" => webhook_info(&g),
        "sendmessage" => send_message(&mut g, p),
        "sendphoto" => send_media(&mut g, p, MediaKind::Photo),
        "senddocument" => send_media(&mut g, p, MediaKind::Document),
        "sendvoice" => send_media(&mut g, p, MediaKind::Voice),
        "editmessagetext" => edit_message(&mut g, p, true),
        "editmessagereplymarkup" => edit_message(&mut g, p, false),
        "deletemessage" => delete_message(&mut g, p),
        "sendchataction" => send_chat_action(&mut g, p),
        "setmessagereaction" => set_reaction(&mut g, p),
        "answercallbackquery" => answer_callback(&mut g, p),
        "getfile" => get_file(&g, p),
        "getchat" => resolve_chat(&g, p).and_then(|id| ok(g.chats[&id].chat.to_json())),
        "setmycommands" => set_commands(&mut g, p),
        "getmycommands" => ok(g.commands.clone()),
        "deletemycommands" => {
            g.commands = json!([]);
            ok(true.into())
        }
        _ => Err(ApiError::new(404, "Not Found")),
    };
    Outcome::from(answer)
}

fn download(twin: &Shared, rest: &str) -> Response {
    let g = twin.lock();
    let Some((token, path)) = rest.split_once('/') else {
        return json_response(404, &ApiError::new(404, "Not Found").body());
    };
    if token != g.token {
        return json_response(401, &ApiError::new(401, "Unauthorized").body());
    }
    match g.files.values().find(|f| f.path == path) {
        Some(f) => Response::builder()
            .status(200)
            .header("content-type", "application/octet-stream")
            .body(Body::from(f.bytes.clone()))
            .unwrap_or_default(),
        None => json_response(404, &ApiError::new(404, "Not Found").body()),
    }
}

// ---------------------------------------------------------------------------------------------
// getUpdates: long polling, confirmation, conflicts and poll faults
// ---------------------------------------------------------------------------------------------

async fn get_updates(twin: &Shared, p: &Params) -> Outcome {
    let (offset, limit, timeout) = match (p.int("offset"), p.int("limit"), p.int("timeout")) {
        // A day bounds absurd timeouts so the deadline can't overflow.
        (Ok(o), Ok(l), Ok(t)) => (o, l.unwrap_or(100).clamp(1, 100) as usize, t.unwrap_or(0).clamp(0, 86_400) as u64),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Outcome::from(Err(e)),
    };
    let generation = {
        let mut g = twin.lock();
        g.polls += 1;
        if g.webhook.is_some() {
            return Outcome::from(Err(ApiError::new(409, CONFLICT_WEBHOOK)));
        }
        if g.drop_polls > 0 {
            g.drop_polls -= 1;
            return Outcome::Drop;
        }
        if g.stall_polls {
            return Outcome::Stall;
        }
        if let Some(Ok(Value::Array(kinds))) = p.json("allowed_updates") {
            g.poll_allowed = Some(kinds.iter().filter_map(|k| k.as_str().map(String::from)).collect());
        }
        if let Some(offset) = offset {
            confirm(&mut g, offset);
        }
        g.poll_generation += 1;
        g.poll_generation
    };
    // Tell a held older poll it has been superseded.
    twin.bump();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let mut rx = twin.changed.subscribe();
    loop {
        {
            let mut g = twin.lock();
            if twin.closed.load(Ordering::SeqCst) {
                return Outcome::Drop;
            }
            if g.poll_generation != generation {
                return Outcome::from(Err(ApiError::new(409, CONFLICT_POLL)));
            }
            if g.malformed_next {
                g.malformed_next = false;
                return Outcome::Garbage;
            }
            let mut batch: Vec<Value> = Vec::new();
            if g.duplicate_next {
                let skip = g.confirmed.len().saturating_sub(limit);
                batch.extend(g.confirmed.iter().skip(skip).cloned());
            }
            for q in g.pending.iter_mut() {
                if batch.len() >= limit {
                    break;
                }
                q.delivered = true;
                batch.push(q.body.clone());
            }
            if !batch.is_empty() || tokio::time::Instant::now() >= deadline {
                g.duplicate_next = false;
                return Outcome::from(ok(Value::Array(batch)));
            }
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return Outcome::Drop },
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// Forgets updates a getUpdates `offset` confirms.
fn confirm(g: &mut Inner, offset: i64) {
    if offset < 0 {
        let keep = offset.unsigned_abs() as usize;
        while g.pending.len() > keep {
            if let Some(q) = g.pending.pop_front() {
                g.remember_confirmed(q.body);
            }
        }
        return;
    }
    let mut kept = VecDeque::new();
    for q in std::mem::take(&mut g.pending) {
        let confirmed = match q.id {
            Some(id) => id < offset,
            None => q.delivered,
        };
        if confirmed {
            g.remember_confirmed(q.body);
        } else {
            kept.push_back(q);
        }
    }
    g.pending = kept;
    g.confirmed_offset = g.confirmed_offset.max(offset);
}

// ---------------------------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------------------------

fn allowed_list(p: &Params) -> Option<Vec<String>> {
    match p.json("allowed_updates") {
        Some(Ok(Value::Array(kinds))) => Some(kinds.iter().filter_map(|k| k.as_str().map(String::from)).collect()),
        _ => None,
    }
}

fn set_webhook(g: &mut Inner, p: &Params) -> Answer {
    let url = p.text("url").unwrap_or_default();
    if url.is_empty() {
        return delete_webhook(g, p);
    }
    check_webhook_url(&url)?;
    let secret = p.text("secret_token").filter(|s| !s.is_empty());
    if let Some(s) = &secret
        && (s.len() > 256 || !s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-'))
    {
        return Err(bad("secret token contains unallowed characters"));
    }
    let max_connections = p.int("max_connections")?.unwrap_or(40);
    if !(1..=100).contains(&max_connections) {
        return Err(bad("max_connections must be between 1 and 100"));
    }
    if p.flag("drop_pending_updates") {
        g.pending.clear();
    }
    let same = g.webhook.as_ref().is_some_and(|w| w.url == url && w.secret == secret);
    let allowed = allowed_list(p).or_else(|| g.webhook.as_ref().and_then(|w| w.allowed.clone()));
    g.webhook = Some(Webhook { url, secret, allowed, max_connections, last_error: None });
    ok_described(true.into(), if same { "Webhook is already set" } else { "Webhook was set" })
}

/// HTTPS on a documented port; the twin also takes plain HTTP to loopback, for tests.
fn check_webhook_url(url: &str) -> Result<(), ApiError> {
    let (scheme, rest) =
        url.split_once("://").ok_or_else(|| bad("bad webhook: An HTTPS URL must be provided for webhook"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let (host, port): (&str, Option<u16>) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, after)) => (&authority[..h.len() + 2], after.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (authority, None),
        },
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()),
            None => (authority, None),
        },
    };
    let loopback = matches!(host, "127.0.0.1" | "localhost" | "[::1]");
    match scheme.to_ascii_lowercase().as_str() {
        "https" => {
            if host.is_empty() {
                return Err(bad("bad webhook: Webhook URL is invalid"));
            }
            if !matches!(port.unwrap_or(443), 443 | 80 | 88 | 8443) {
                return Err(bad("bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443"));
            }
            Ok(())
        }
        "http" if loopback => Ok(()),
        _ => Err(bad("bad webhook: An HTTPS URL must be provided for webhook")),
    }
}

fn delete_webhook(g: &mut Inner, p: &Params) -> Answer {
    if p.flag("drop_pending_updates") {
        g.pending.clear();
    }
    let had = g.webhook.take().is_some();
    ok_described(true.into(), if had { "Webhook was deleted" } else { "Webhook is already deleted" })
}

fn webhook_info(g: &Inner) -> Answer {
    let mut info = json!({"url": "", "has_custom_certificate": false, "pending_update_count": g.pending.len()});
    if let Some(w) = &g.webhook {
        info["url"] = w.url.clone().into();
        info["max_connections"] = w.max_connections.into();
        if let Some(a) = &w.allowed {
            info["allowed_updates"] = json!(a);
        }
        if let Some((date, message)) = &w.last_error {
            info["last_error_date"] = (*date).into();
            info["last_error_message"] = message.clone().into();
        }
    }
    ok(info)
}

/// Posts pending updates to the webhook, one at a time and in order, while one is set.
async fn deliver_webhooks(twin: Shared) {
    let client = match reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build() {
        Ok(c) => c,
        Err(_) => return,
    };
    let mut rx = twin.changed.subscribe();
    loop {
        let job = {
            let g = twin.lock();
            match (&g.webhook, g.pending.front()) {
                (Some(w), Some(q)) => {
                    Some((w.url.clone(), w.secret.clone(), q.seq, q.id, q.body.clone(), g.webhook_retry))
                }
                _ => None,
            }
        };
        let Some((url, secret, seq, update_id, body, retry)) = job else {
            if rx.changed().await.is_err() || twin.closed.load(Ordering::SeqCst) {
                return;
            }
            continue;
        };
        let mut req = client.post(&url).header("content-type", "application/json").body(body.to_string());
        if let Some(s) = &secret {
            req = req.header("X-Telegram-Bot-Api-Secret-Token", s);
        }
        let result = req.send().await;
        let (status, error) = match &result {
            Ok(r) if r.status().is_success() => (Some(r.status().as_u16()), None),
            Ok(r) => (
                Some(r.status().as_u16()),
                Some(format!(
                    "Wrong response from the webhook: {} {}",
                    r.status().as_u16(),
                    r.status().canonical_reason().unwrap_or("")
                )),
            ),
            Err(e) if e.is_timeout() => (None, Some("Read timeout expired".to_string())),
            Err(_) => (None, Some("Connection refused".to_string())),
        };
        {
            let mut g = twin.lock();
            g.deliveries.push(Delivery { update_id, status, secret, body });
            match error {
                None => {
                    if g.pending.front().is_some_and(|q| q.seq == seq)
                        && let Some(q) = g.pending.pop_front()
                    {
                        g.remember_confirmed(q.body);
                    }
                }
                Some(message) => {
                    if let Some(w) = g.webhook.as_mut() {
                        w.last_error = Some((now_unix(), message));
                    }
                }
            }
        }
        if status.is_none_or(|s| !(200..300).contains(&s)) {
            tokio::time::sleep(retry).await;
        }
        if twin.closed.load(Ordering::SeqCst) {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sending
// ---------------------------------------------------------------------------------------------

/// The chat a `chat_id` parameter names, or why not.
fn resolve_chat(g: &Inner, p: &Params) -> Result<i64, ApiError> {
    let v = p.get("chat_id").ok_or_else(|| bad("chat_id is empty"))?;
    let id = match v {
        Value::String(s) if s.is_empty() => return Err(bad("chat_id is empty")),
        Value::String(s) if s.starts_with('@') => {
            let name = &s[1..];
            g.chats
                .values()
                .find(|c| {
                    c.chat.kind != ChatKind::Private
                        && c.chat.username.as_deref().is_some_and(|u| u.eq_ignore_ascii_case(name))
                })
                .map(|c| c.chat.id)
        }
        other => as_int(other),
    }
    .ok_or_else(|| bad("chat not found"))?;
    if let Some(new) = g.migrated.get(&id) {
        return Err(ApiError {
            code: 400,
            description: "Bad Request: group chat was upgraded to a supergroup chat".into(),
            parameters: Some(json!({"migrate_to_chat_id": new})),
        });
    }
    if !g.chats.contains_key(&id) {
        return Err(bad("chat not found"));
    }
    if g.blocked.contains(&id) {
        return Err(ApiError::new(403, "Forbidden: bot was blocked by the user"));
    }
    Ok(id)
}

/// Flood control: at most `rate_limit` successful sends per chat in any second.
fn check_rate(g: &mut Inner, chat_id: i64) -> Result<(), ApiError> {
    if g.rate_limit == 0 {
        return Ok(());
    }
    let now = Instant::now();
    let limit = g.rate_limit as usize;
    let times = g.send_times.entry(chat_id).or_default();
    while times.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
        times.pop_front();
    }
    if times.len() >= limit {
        let oldest = *times.front().expect("at least one send");
        let wait = Duration::from_secs(1).saturating_sub(now.duration_since(oldest));
        let secs = (wait.as_millis().div_ceil(1000) as u64).max(1);
        return Err(too_many(Some(secs)));
    }
    Ok(())
}

/// The topic a `message_thread_id` names in `chat_id`.
fn check_thread(g: &Inner, p: &Params, chat_id: i64) -> Result<Option<i64>, ApiError> {
    let Some(thread) = p.int("message_thread_id")? else { return Ok(None) };
    if g.chats[&chat_id].topics.contains_key(&thread) { Ok(Some(thread)) } else { Err(bad("message thread not found")) }
}

/// The message a send replies to (`reply_parameters`, or the older `reply_to_message_id`).
fn reply_target(g: &Inner, p: &Params, chat_id: i64) -> Result<Option<i64>, ApiError> {
    let (message_id, in_chat, allow) = match p.json("reply_parameters") {
        Some(Ok(Value::Object(r))) => {
            let id = r.get("message_id").and_then(as_int).ok_or_else(|| bad("message to be replied not found"))?;
            let in_chat = match r.get("chat_id") {
                None | Some(Value::Null) => chat_id,
                Some(c) => as_int(c).ok_or_else(|| bad("chat not found"))?,
            };
            let allow = r.get("allow_sending_without_reply").and_then(Value::as_bool).unwrap_or(false);
            (id, in_chat, allow)
        }
        Some(_) => return Err(bad("can't parse reply parameters JSON object")),
        None => match p.int("reply_to_message_id")? {
            Some(id) => (id, chat_id, p.flag("allow_sending_without_reply")),
            None => return Ok(None),
        },
    };
    let exists = g.chats.get(&in_chat).is_some_and(|c| c.messages.contains_key(&message_id));
    match (exists, allow) {
        (true, _) => Ok(Some(message_id)),
        (false, true) => Ok(None),
        (false, false) => Err(bad("message to be replied not found")),
    }
}

/// Text after `parse_mode` (or the `entities` given) and its entities.
fn parse_text(
    text: &str,
    mode: Option<&str>,
    given: Option<Result<Value, ()>>,
) -> Result<(String, Vec<Value>), ApiError> {
    let parsed = match mode.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") => {
            let entities = match given {
                Some(Ok(Value::Array(e))) => e,
                Some(_) => return Err(bad("can't parse entities JSON object")),
                None => Vec::new(),
            };
            return Ok((text.to_string(), entities));
        }
        Some("html") => parse_html(text),
        Some("markdownv2") => parse_markdown_v2(text),
        Some("markdown") => parse_markdown(text),
        Some(_) => return Err(bad("unsupported parse_mode")),
    };
    parsed.map_err(|e| bad(format!("can't parse entities: {e}")))
}

/// A checked `reply_markup`: `(markup, whether it is an inline keyboard)`.
fn check_markup(p: &Params) -> Result<Option<(Value, bool)>, ApiError> {
    let Some(parsed) = p.json("reply_markup") else { return Ok(None) };
    let invalid = || bad("can't parse reply keyboard markup JSON object");
    let markup = parsed.map_err(|_| invalid())?;
    let obj = markup.as_object().ok_or_else(invalid)?;
    let Some(keyboard) = obj.get("inline_keyboard") else {
        if obj.contains_key("keyboard") || obj.contains_key("remove_keyboard") || obj.contains_key("force_reply") {
            return Ok(Some((markup.clone(), false)));
        }
        return Err(invalid());
    };
    let not_rows = || bad("field \"inline_keyboard\" of the InlineKeyboardMarkup should be an Array of Arrays");
    for row in keyboard.as_array().ok_or_else(not_rows)? {
        for button in row.as_array().ok_or_else(not_rows)? {
            check_button(button)?;
        }
    }
    Ok(Some((markup.clone(), true)))
}

const BUTTON_FIELDS: &[&str] = &[
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
];

fn check_button(button: &Value) -> Result<(), ApiError> {
    let b = button
        .as_object()
        .ok_or_else(|| bad("can't parse inline keyboard button: InlineKeyboardButton must be an Object"))?;
    if !b.get("text").is_some_and(Value::is_string) {
        return Err(bad("can't parse inline keyboard button: Field \"text\" must be of type String"));
    }
    let used: Vec<&&str> = BUTTON_FIELDS.iter().filter(|f| b.get(**f).is_some_and(|v| !v.is_null())).collect();
    match used.len() {
        0 => return Err(bad("can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard")),
        1 => {}
        _ => return Err(bad("can't parse inline keyboard button: exactly one of the optional fields must be used")),
    }
    if let Some(data) = b.get("callback_data") {
        let len = data.as_str().map(str::len).unwrap_or(0);
        if !(1..=64).contains(&len) {
            return Err(bad("BUTTON_DATA_INVALID"));
        }
    }
    if let Some(url) = b.get("url")
        && url.as_str().is_none_or(str::is_empty)
    {
        return Err(bad("BUTTON_URL_INVALID"));
    }
    Ok(())
}

/// What every send checks before its content: the chat, flood control, the topic and the reply.
struct Target {
    chat_id: i64,
    thread: Option<i64>,
    reply_to: Option<i64>,
}

fn send_target(g: &mut Inner, p: &Params) -> Result<Target, ApiError> {
    let chat_id = resolve_chat(g, p)?;
    check_rate(g, chat_id)?;
    let explicit_thread = check_thread(g, p, chat_id)?;
    let reply_to = reply_target(g, p, chat_id)?;
    // A reply inside a topic stays in that topic.
    let thread = explicit_thread.or_else(|| {
        let replied = g.chats[&chat_id].messages.get(&reply_to?)?;
        replied.json.get("message_thread_id").and_then(Value::as_i64)
    });
    Ok(Target { chat_id, thread, reply_to })
}

fn send_message(g: &mut Inner, p: &Params) -> Answer {
    let target = send_target(g, p)?;
    let text = p.text("text").unwrap_or_default();
    let parse_mode = p.text("parse_mode");
    let (plain, entities) = parse_text(&text, parse_mode.as_deref(), p.json("entities"))?;
    if plain.trim().is_empty() {
        return Err(bad("message text is empty"));
    }
    if plain.chars().count() > 4096 {
        return Err(bad("message is too long"));
    }
    let markup = check_markup(p)?;
    let mut content = Map::new();
    content.insert("text".into(), plain.clone().into());
    if !entities.is_empty() {
        content.insert("entities".into(), entities.clone().into());
    }
    if let Some(Ok(lp)) = p.json("link_preview_options") {
        content.insert("link_preview_options".into(), lp);
    }
    let (message_id, json) = store_bot_message(g, &target, &markup, content);
    let out = Produced { method: "sendMessage", message_id, plain, entities, markup, upload: None, file_ref: None };
    record_sent(g, p, &target, out);
    ok(json)
}

fn store_bot_message(
    g: &mut Inner,
    t: &Target,
    markup: &Option<(Value, bool)>,
    mut content: Map<String, Value>,
) -> (i64, Value) {
    if let Some((m, true)) = markup {
        content.insert("reply_markup".into(), m.clone());
    }
    let from = g.bot_user();
    g.store_message(NewMessage {
        chat_id: t.chat_id,
        from,
        from_bot: true,
        thread: t.thread,
        reply_to: t.reply_to,
        content,
    })
}

/// An upload, or the `file_id`/URL given instead.
enum FileInput {
    Upload { name: String, bytes: Bytes },
    Existing(String),
    Url(String),
}

fn file_input(g: &Inner, p: &Params, kind: MediaKind) -> Result<FileInput, ApiError> {
    let name = kind.param();
    if let Some(u) = p.uploads.get(name) {
        return Ok(FileInput::Upload { name: u.file_name.clone(), bytes: u.bytes.clone() });
    }
    let Some(value) = p.text(name) else { return Err(bad(format!("there is no {name} in the request"))) };
    if let Some(part) = value.strip_prefix("attach://") {
        let u = p.uploads.get(part).ok_or_else(|| bad(format!("there is no {name} in the request")))?;
        return Ok(FileInput::Upload { name: u.file_name.clone(), bytes: u.bytes.clone() });
    }
    if value.starts_with("http://") || value.starts_with("https://") {
        return Ok(FileInput::Url(value));
    }
    if g.files.contains_key(&value) {
        return Ok(FileInput::Existing(value));
    }
    Err(bad("wrong file identifier/HTTP URL specified"))
}

fn send_media(g: &mut Inner, p: &Params, kind: MediaKind) -> Answer {
    let target = send_target(g, p)?;
    let input = file_input(g, p, kind)?;
    if let FileInput::Upload { bytes, .. } = &input {
        if bytes.is_empty() {
            return Err(bad("file must be non-empty"));
        }
        if bytes.len() > MAX_UPLOAD {
            return Err(ApiError::new(413, "Request Entity Too Large"));
        }
    }
    let caption = p.text("caption");
    let parse_mode = p.text("parse_mode");
    let (plain, entities) = match &caption {
        Some(c) => parse_text(c, parse_mode.as_deref(), p.json("caption_entities"))?,
        None => (String::new(), Vec::new()),
    };
    if plain.chars().count() > 1024 {
        return Err(bad("message caption is too long"));
    }
    let markup = check_markup(p)?;
    let (file_id, upload, file_ref) = match input {
        FileInput::Upload { name, bytes } => {
            let len = bytes.len();
            (g.register_file(bytes, &name), Some((len, name)), None)
        }
        FileInput::Existing(id) => (id.clone(), None, Some(id)),
        FileInput::Url(url) => {
            let name = url.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or("file").to_string();
            (g.register_file(Bytes::new(), &name), None, Some(url))
        }
    };
    let mut content = Map::new();
    content.insert(kind.param().into(), g.media_json(kind, &file_id).expect("file registered"));
    if caption.is_some() {
        content.insert("caption".into(), plain.clone().into());
        if !entities.is_empty() {
            content.insert("caption_entities".into(), entities.clone().into());
        }
    }
    let (message_id, json) = store_bot_message(g, &target, &markup, content);
    let method = match kind {
        MediaKind::Photo => "sendPhoto",
        MediaKind::Document => "sendDocument",
        MediaKind::Voice => "sendVoice",
    };
    record_sent(g, p, &target, Produced { method, message_id, plain, entities, markup, upload, file_ref });
    ok(json)
}

/// What a successful send produced, for [`record_sent`].
struct Produced {
    method: &'static str,
    message_id: i64,
    plain: String,
    entities: Vec<Value>,
    markup: Option<(Value, bool)>,
    /// `(length, file name)` of an upload.
    upload: Option<(usize, String)>,
    /// The `file_id` or URL given instead of an upload.
    file_ref: Option<String>,
}

fn record_sent(g: &mut Inner, p: &Params, t: &Target, out: Produced) {
    if g.rate_limit > 0 {
        g.send_times.entry(t.chat_id).or_default().push_back(Instant::now());
    }
    g.sent.push(Sent {
        method: out.method.into(),
        chat_id: t.chat_id,
        message_id: out.message_id,
        text: if out.method == "sendMessage" { p.text("text") } else { None },
        caption: p.text("caption"),
        plain: out.plain,
        entities: out.entities,
        parse_mode: p.text("parse_mode"),
        reply_to_message_id: t.reply_to,
        message_thread_id: t.thread,
        reply_markup: out.markup.map(|(m, _)| m),
        upload_len: out.upload.as_ref().map(|(l, _)| *l),
        upload_name: out.upload.map(|(_, n)| n),
        file_ref: out.file_ref,
        disable_notification: p.flag("disable_notification"),
        params: p.to_json(),
    });
}

// ---------------------------------------------------------------------------------------------
// Editing, deleting, actions, reactions, callbacks, files, commands
// ---------------------------------------------------------------------------------------------

fn edit_message(g: &mut Inner, p: &Params, with_text: bool) -> Answer {
    if p.get("inline_message_id").is_some() {
        return Err(bad("message to edit not found"));
    }
    let chat_id = resolve_chat(g, p)?;
    let message_id = p.int("message_id")?.ok_or_else(|| bad("message to edit not found"))?;
    let markup = check_markup(p)?;
    if markup.as_ref().is_some_and(|(_, inline)| !inline) {
        return Err(bad("inline keyboard expected"));
    }
    let new_markup = markup.map(|(m, _)| m);
    let text = p.text("text");
    let parse_mode = p.text("parse_mode");
    let parsed = if with_text {
        let (plain, entities) = parse_text(text.as_deref().unwrap_or(""), parse_mode.as_deref(), p.json("entities"))?;
        if plain.trim().is_empty() {
            return Err(bad("message text is empty"));
        }
        if plain.chars().count() > 4096 {
            return Err(bad("message is too long"));
        }
        Some((plain, entities))
    } else {
        None
    };
    let msg = g
        .chats
        .get_mut(&chat_id)
        .and_then(|c| c.messages.get_mut(&message_id))
        .ok_or_else(|| bad("message to edit not found"))?;
    if !msg.from_bot {
        return Err(bad("message can't be edited"));
    }
    if with_text && msg.text.is_none() {
        return Err(bad("there is no text in the message to edit"));
    }
    let same_text = parsed.as_ref().is_none_or(|(plain, entities)| {
        msg.text.as_deref() == Some(plain.as_str()) && msg.entities == Value::Array(entities.clone())
    });
    if same_text && msg.reply_markup == new_markup {
        return Err(bad(NOT_MODIFIED));
    }
    let obj = msg.json.as_object_mut().expect("messages are objects");
    if let Some((plain, entities)) = &parsed {
        obj.insert("text".into(), plain.clone().into());
        if entities.is_empty() {
            obj.remove("entities");
        } else {
            obj.insert("entities".into(), entities.clone().into());
        }
        msg.text = Some(plain.clone());
        msg.entities = Value::Array(entities.clone());
    }
    match &new_markup {
        Some(m) => obj.insert("reply_markup".into(), m.clone()),
        None => obj.remove("reply_markup"),
    };
    obj.insert("edit_date".into(), now_unix().into());
    msg.reply_markup = new_markup.clone();
    let json = msg.json.clone();
    g.edits.push(Edit {
        method: if with_text { "editMessageText" } else { "editMessageReplyMarkup" }.into(),
        chat_id,
        message_id,
        text,
        plain: parsed.map(|(p, _)| p),
        parse_mode,
        reply_markup: new_markup,
    });
    ok(json)
}

fn delete_message(g: &mut Inner, p: &Params) -> Answer {
    let chat_id = resolve_chat(g, p)?;
    let message_id = p.int("message_id")?.ok_or_else(|| bad("message identifier is not specified"))?;
    let chat = g.chats.get_mut(&chat_id).expect("resolved");
    if chat.messages.remove(&message_id).is_none() {
        return Err(bad("message to delete not found"));
    }
    g.deleted.push((chat_id, message_id));
    ok(true.into())
}

const CHAT_ACTIONS: &[&str] = &[
    "typing",
    "upload_photo",
    "record_video",
    "upload_video",
    "record_voice",
    "upload_voice",
    "upload_document",
    "choose_sticker",
    "find_location",
    "record_video_note",
    "upload_video_note",
];

fn send_chat_action(g: &mut Inner, p: &Params) -> Answer {
    let chat_id = resolve_chat(g, p)?;
    let action = p.text("action").unwrap_or_default();
    if !CHAT_ACTIONS.contains(&action.as_str()) {
        return Err(bad("wrong parameter action in request"));
    }
    let message_thread_id = check_thread(g, p, chat_id)?;
    g.actions.push(ChatAction { chat_id, action, message_thread_id });
    ok(true.into())
}

/// The emoji `ReactionTypeEmoji` allows, per the documentation.
const REACTION_EMOJI: &[&str] = &[
    "👍",
    "👎",
    "❤",
    "🔥",
    "🥰",
    "👏",
    "😁",
    "🤔",
    "🤯",
    "😱",
    "🤬",
    "😢",
    "🎉",
    "🤩",
    "🤮",
    "💩",
    "🙏",
    "👌",
    "🕊",
    "🤡",
    "🥱",
    "🥴",
    "😍",
    "🐳",
    "❤\u{200d}🔥",
    "🌚",
    "🌭",
    "💯",
    "🤣",
    "⚡",
    "🍌",
    "🏆",
    "💔",
    "🤨",
    "😐",
    "🍓",
    "🍾",
    "💋",
    "🖕",
    "😈",
    "😴",
    "😭",
    "🤓",
    "👻",
    "👨\u{200d}💻",
    "👀",
    "🎃",
    "🙈",
    "😇",
    "😨",
    "🤝",
    "✍",
    "🤗",
    "🫡",
    "🎅",
    "🎄",
    "☃",
    "💅",
    "🤪",
    "🗿",
    "🆒",
    "💘",
    "🙉",
    "🦄",
    "😘",
    "💊",
    "🙊",
    "😎",
    "👾",
    "🤷\u{200d}♂",
    "🤷",
    "🤷\u{200d}♀",
    "😡",
];

fn set_reaction(g: &mut Inner, p: &Params) -> Answer {
    let chat_id = resolve_chat(g, p)?;
    let message_id = p.int("message_id")?.ok_or_else(|| bad("message to react not found"))?;
    if !g.chats[&chat_id].messages.contains_key(&message_id) {
        return Err(bad("message to react not found"));
    }
    let list = match p.json("reaction") {
        None => Vec::new(),
        Some(Ok(Value::Array(l))) => l,
        Some(_) => return Err(bad("can't parse reaction types JSON object")),
    };
    if list.len() > 1 {
        return Err(bad("REACTIONS_TOO_MANY"));
    }
    let mut emojis = Vec::new();
    for r in &list {
        match r.get("type").and_then(Value::as_str) {
            Some("emoji") => {
                let e = r.get("emoji").and_then(Value::as_str).unwrap_or("");
                // Clients often send the emoji with a variation selector (U+FE0F); Telegram's
                // list is without it.
                let bare: String = e.chars().filter(|c| *c != '\u{fe0f}').collect();
                if !REACTION_EMOJI.contains(&bare.as_str()) {
                    return Err(bad("REACTION_INVALID"));
                }
                emojis.push(e.to_string());
            }
            Some("custom_emoji") => match r.get("custom_emoji_id").and_then(Value::as_str) {
                Some(id) if !id.is_empty() => emojis.push(format!("custom:{id}")),
                _ => return Err(bad("REACTION_INVALID")),
            },
            _ => return Err(bad("REACTION_INVALID")),
        }
    }
    g.reactions.push(Reaction { chat_id, message_id, emojis, is_big: p.flag("is_big") });
    ok(true.into())
}

fn answer_callback(g: &mut Inner, p: &Params) -> Answer {
    let id = p.text("callback_query_id").unwrap_or_default();
    if g.callbacks.get(&id) != Some(&false) {
        return Err(bad(QUERY_INVALID));
    }
    let text = p.text("text");
    if text.as_deref().is_some_and(|t| t.chars().count() > 200) {
        return Err(bad("MESSAGE_TOO_LONG"));
    }
    g.callbacks.insert(id.clone(), true);
    g.callback_answers.push(CallbackAnswer { callback_query_id: id, text, show_alert: p.flag("show_alert") });
    ok(true.into())
}

fn get_file(g: &Inner, p: &Params) -> Answer {
    let id = p.text("file_id").unwrap_or_default();
    let f = g.files.get(&id).ok_or_else(|| bad("invalid file_id"))?;
    if f.bytes.len() > MAX_DOWNLOAD {
        return Err(bad("file is too big"));
    }
    ok(json!({"file_id": id, "file_unique_id": f.unique_id, "file_size": f.bytes.len(), "file_path": f.path}))
}

fn set_commands(g: &mut Inner, p: &Params) -> Answer {
    let list = match p.json("commands") {
        Some(Ok(Value::Array(l))) => l,
        _ => return Err(bad("can't parse commands JSON object")),
    };
    if list.len() > 100 {
        return Err(bad("too many commands specified"));
    }
    for c in &list {
        let command = c.get("command").and_then(Value::as_str).unwrap_or("");
        let description = c.get("description").and_then(Value::as_str).unwrap_or("");
        let valid = (1..=32).contains(&command.len())
            && command.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(bad("BOT_COMMAND_INVALID"));
        }
        if !(1..=256).contains(&description.chars().count()) {
            return Err(bad("BOT_COMMAND_DESCRIPTION_INVALID"));
        }
    }
    g.commands = Value::Array(list);
    ok(true.into())
}

// ---------------------------------------------------------------------------------------------
// Formatting options: HTML
// ---------------------------------------------------------------------------------------------

/// The tags the HTML style supports.
const HTML_TAGS: &[&str] = &[
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "span",
    "tg-spoiler",
    "a",
    "code",
    "pre",
    "blockquote",
    "tg-emoji",
    "tg-time",
];

struct OpenTag {
    name: String,
    offset: usize,
    entity: Option<Map<String, Value>>,
    language: Option<String>,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

/// Parses `parse_mode=HTML` text into plain text and MessageEntity objects (UTF-16 offsets),
/// or the reason it can't, worded like the real server's (`Unsupported start tag "p" at byte
/// offset 3`, `Can't find end tag corresponding to start tag "b"`, `Unmatched end tag at byte
/// offset N, expected "</b>", found "</i>"`, …).
///
/// Only the documented tags, `&lt;` `&gt;` `&amp;` `&quot;` and numeric entities are accepted;
/// a `<` or `&` that starts neither is refused (a bare `>` is taken, as the real server does).
pub fn parse_html(src: &str) -> Result<(String, Vec<Value>), String> {
    let b = src.as_bytes();
    let mut text = String::new();
    let mut pos16 = 0usize;
    let mut open: Vec<OpenTag> = Vec::new();
    let mut entities: Vec<Value> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'<' if b.get(i + 1) == Some(&b'/') => {
                let start = i;
                let Some(top) = open.last() else { return Err(format!("Unexpected end tag at byte offset {start}")) };
                let mut j = i + 2;
                while j < b.len() && !is_space(b[j]) && b[j] != b'>' {
                    j += 1;
                }
                let name = src[i + 2..j].to_ascii_lowercase();
                while j < b.len() && is_space(b[j]) {
                    j += 1;
                }
                if j >= b.len() || b[j] != b'>' {
                    return Err(format!("Unclosed end tag at byte offset {start}"));
                }
                if name != top.name {
                    return Err(format!(
                        "Unmatched end tag at byte offset {start}, expected \"</{}>\", found \"</{name}>\"",
                        top.name
                    ));
                }
                let tag = open.pop().expect("checked above");
                close_tag(tag, pos16, open.last_mut(), &mut entities);
                i = j + 1;
            }
            b'<' => {
                let (tag, next) = open_tag(src, i, pos16)?;
                open.push(tag);
                i = next;
            }
            b'&' => {
                let (c, next) = html_entity(src, i)?;
                text.push(c);
                pos16 += c.len_utf16();
                i = next;
            }
            _ => {
                let c = src[i..].chars().next().expect("at a char boundary");
                text.push(c);
                pos16 += c.len_utf16();
                i += c.len_utf8();
            }
        }
    }
    if let Some(top) = open.last() {
        return Err(format!("Can't find end tag corresponding to start tag \"{}\"", top.name));
    }
    sort_entities(&mut entities);
    Ok((text, entities))
}

fn sort_entities(entities: &mut [Value]) {
    let key = |e: &Value| (e["offset"].as_u64().unwrap_or(0), std::cmp::Reverse(e["length"].as_u64().unwrap_or(0)));
    entities.sort_by_key(key);
}

fn entity_of(kind: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), kind.into());
    m
}

/// A start tag at byte `start`: the open tag and the byte after its `>`.
fn open_tag(src: &str, start: usize, offset16: usize) -> Result<(OpenTag, usize), String> {
    let b = src.as_bytes();
    let unclosed = || format!("Unclosed start tag at byte offset {start}");
    let mut j = start + 1;
    while j < b.len() && !is_space(b[j]) && b[j] != b'>' {
        j += 1;
    }
    if j >= b.len() {
        return Err(unclosed());
    }
    let name = src[start + 1..j].to_ascii_lowercase();
    if !HTML_TAGS.contains(&name.as_str()) {
        return Err(format!("Unsupported start tag \"{name}\" at byte offset {start}"));
    }
    let mut attrs: Vec<(String, String)> = Vec::new();
    loop {
        while j < b.len() && is_space(b[j]) {
            j += 1;
        }
        let Some(&c) = b.get(j) else { return Err(unclosed()) };
        if c == b'>' {
            j += 1;
            break;
        }
        let name_start = j;
        while j < b.len() && !is_space(b[j]) && b[j] != b'=' && b[j] != b'>' {
            j += 1;
        }
        let attr = src[name_start..j].to_ascii_lowercase();
        if attr.is_empty() {
            return Err(format!("Empty attribute name in the tag \"{name}\" at byte offset {start}"));
        }
        while j < b.len() && is_space(b[j]) {
            j += 1;
        }
        if b.get(j) != Some(&b'=') {
            if name == "blockquote" && attr == "expandable" {
                attrs.push((attr, String::new()));
                continue;
            }
            if j >= b.len() {
                return Err(unclosed());
            }
            return Err(format!(
                "Expected equal sign in declaration of an attribute of the tag \"{name}\" at byte offset {start}"
            ));
        }
        j += 1;
        while j < b.len() && is_space(b[j]) {
            j += 1;
        }
        let Some(&q) = b.get(j) else { return Err(unclosed()) };
        let raw = if q == b'"' || q == b'\'' {
            let value_start = j + 1;
            let mut k = value_start;
            while k < b.len() && b[k] != q {
                k += 1;
            }
            if k >= b.len() {
                return Err(unclosed());
            }
            j = k + 1;
            &src[value_start..k]
        } else {
            let value_start = j;
            while j < b.len() && !is_space(b[j]) && b[j] != b'>' {
                j += 1;
            }
            &src[value_start..j]
        };
        attrs.push((attr, decode_html_text(raw, start)?));
    }
    let attr = |k: &str| attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut language = None;
    let entity = match name.as_str() {
        "b" | "strong" => Some(entity_of("bold")),
        "i" | "em" => Some(entity_of("italic")),
        "u" | "ins" => Some(entity_of("underline")),
        "s" | "strike" | "del" => Some(entity_of("strikethrough")),
        "tg-spoiler" => Some(entity_of("spoiler")),
        "span" => {
            if attr("class").as_deref() != Some("tg-spoiler") {
                return Err(format!("Tag \"span\" must have class \"tg-spoiler\" at byte offset {start}"));
            }
            Some(entity_of("spoiler"))
        }
        "a" => attr("href").filter(|u| !u.is_empty()).map(|url| {
            let mut e = entity_of("text_link");
            e.insert("url".into(), url.into());
            e
        }),
        "code" => {
            language = attr("class").and_then(|c| c.strip_prefix("language-").map(String::from));
            Some(entity_of("code"))
        }
        "pre" => Some(entity_of("pre")),
        "blockquote" => {
            Some(entity_of(if attr("expandable").is_some() { "expandable_blockquote" } else { "blockquote" }))
        }
        "tg-emoji" => {
            let id = attr("emoji-id").filter(|id| !id.is_empty() && id.bytes().all(|c| c.is_ascii_digit()));
            let id = id.ok_or_else(|| format!("Custom emoji identifier must be non-empty at byte offset {start}"))?;
            let mut e = entity_of("custom_emoji");
            e.insert("custom_emoji_id".into(), id.into());
            Some(e)
        }
        "tg-time" => {
            let unix = attr("unix").and_then(|u| u.parse::<i64>().ok());
            let unix = unix.ok_or_else(|| {
                format!("Tag \"tg-time\" must have a valid attribute \"unix\" at byte offset {start}")
            })?;
            let mut e = entity_of("date_time");
            e.insert("unix_time".into(), unix.into());
            if let Some(f) = attr("format") {
                if !valid_time_format(&f) {
                    return Err(format!("Invalid date-time format \"{f}\" at byte offset {start}"));
                }
                e.insert("date_time_format".into(), f.into());
            }
            Some(e)
        }
        _ => None,
    };
    Ok((OpenTag { name, offset: offset16, entity, language }, j))
}

/// Whether a date-time format matches `r|w?[dD]?[tT]?`.
fn valid_time_format(f: &str) -> bool {
    if f == "r" {
        return true;
    }
    let mut rest = f;
    for set in ["w", "dD", "tT"] {
        if let Some(c) = rest.chars().next()
            && set.contains(c)
        {
            rest = &rest[1..];
        }
    }
    rest.is_empty()
}

fn close_tag(tag: OpenTag, end16: usize, parent: Option<&mut OpenTag>, out: &mut Vec<Value>) {
    // `<pre><code class="language-x">` is one pre entity with a language.
    if tag.name == "code"
        && let Some(parent) = parent
        && parent.name == "pre"
    {
        if parent.language.is_none() {
            parent.language = tag.language;
        }
        return;
    }
    let Some(mut e) = tag.entity else { return };
    let length = end16 - tag.offset;
    if length == 0 {
        return;
    }
    if tag.name == "pre"
        && let Some(lang) = tag.language
    {
        e.insert("language".into(), lang.into());
    }
    e.insert("offset".into(), tag.offset.into());
    e.insert("length".into(), length.into());
    out.push(Value::Object(e));
}

/// The character an HTML entity at byte `at` stands for and the byte after its `;`.
fn html_entity(src: &str, at: usize) -> Result<(char, usize), String> {
    let rest = &src[at + 1..];
    let Some(end) = rest.bytes().take(12).position(|c| c == b';') else {
        return Err(format!(
            "Character '&' at byte offset {at} is not a part of an HTML entity and must be replaced with &amp;"
        ));
    };
    let name = &rest[..end];
    let c = match name {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "quot" => Some('"'),
        n if n.starts_with("#x") || n.starts_with("#X") => {
            u32::from_str_radix(&n[2..], 16).ok().and_then(char::from_u32)
        }
        n if n.starts_with('#') => n[1..].parse::<u32>().ok().and_then(char::from_u32),
        _ => None,
    };
    match c {
        Some(c) if c != '\0' => Ok((c, at + 1 + end + 1)),
        _ => Err(format!("Unsupported HTML entity \"&{name};\" at byte offset {at}")),
    }
}

/// An attribute value with its entities decoded.
fn decode_html_text(raw: &str, tag_start: usize) -> Result<String, String> {
    let mut out = String::new();
    let mut i = 0;
    while i < raw.len() {
        if raw.as_bytes()[i] == b'&' {
            let (c, next) = html_entity(raw, i).map_err(|_| {
                format!("Unsupported HTML entity in an attribute of the tag at byte offset {tag_start}")
            })?;
            out.push(c);
            i = next;
        } else {
            let c = raw[i..].chars().next().expect("at a char boundary");
            out.push(c);
            i += c.len_utf8();
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Formatting options: MarkdownV2 and legacy Markdown
// ---------------------------------------------------------------------------------------------

const MD_V2_RESERVED: &str = "_*[]()~`>#+-=|{}.!";

struct MdOpen {
    kind: &'static str,
    offset: usize,
    byte: usize,
}

fn md_kind_name(kind: &str) -> &'static str {
    match kind {
        "bold" => "Bold",
        "italic" => "Italic",
        "underline" => "Underline",
        "strikethrough" => "Strikethrough",
        "spoiler" => "Spoiler",
        "code" => "Code",
        "pre" => "Pre",
        "custom_emoji" => "CustomEmoji",
        _ => "TextUrl",
    }
}

/// Parses `parse_mode=MarkdownV2` text: `*bold*`, `_italic_`, `__underline__`,
/// `~strikethrough~`, `||spoiler||`, `[text](url)`, `![emoji](tg://emoji?id=…)`, `` `code` ``,
/// ```` ```pre``` ````, `>` block quotes (`**>` … `||` expandable), with `\` escapes. Every
/// other use of `_*[]()~`>#+-=|{}.!` is refused: `Character '.' is reserved and must be escaped
/// with the preceding '\'`; an unclosed entity is `Can't find end of Bold entity at byte offset
/// N`.
pub fn parse_markdown_v2(src: &str) -> Result<(String, Vec<Value>), String> {
    let chars: Vec<(usize, char)> = src.char_indices().collect();
    let at = |k: usize| chars.get(k).map(|x| x.1);
    let mut text = String::new();
    let mut pos = 0usize;
    let mut open: Vec<MdOpen> = Vec::new();
    let mut entities: Vec<Value> = Vec::new();
    let mut quote: Option<(usize, bool)> = None;
    let mut quote_line_end = 0usize;
    let mut line_start = true;
    let mut k = 0;
    let push = |text: &mut String, pos: &mut usize, c: char| {
        text.push(c);
        *pos += c.len_utf16();
    };
    while k < chars.len() {
        let (byte, c) = chars[k];
        if line_start {
            line_start = false;
            let expandable = c == '*' && at(k + 1) == Some('*') && at(k + 2) == Some('>');
            if c == '>' || expandable {
                if quote.is_none() {
                    quote = Some((pos, expandable));
                }
                k += if expandable { 3 } else { 1 };
                continue;
            }
            if let Some((start, exp)) = quote.take() {
                emit(
                    &mut entities,
                    if exp { "expandable_blockquote" } else { "blockquote" },
                    start,
                    quote_line_end,
                    None,
                );
            }
        }
        match c {
            '\\' => match at(k + 1) {
                Some(n) if (1..=126).contains(&(n as u32)) => {
                    push(&mut text, &mut pos, n);
                    k += 2;
                }
                _ => {
                    push(&mut text, &mut pos, '\\');
                    k += 1;
                }
            },
            '\n' => {
                quote_line_end = pos;
                push(&mut text, &mut pos, '\n');
                line_start = true;
                k += 1;
            }
            '`' => {
                let fence = at(k + 1) == Some('`') && at(k + 2) == Some('`');
                let (kind, mut m) = if fence { ("pre", k + 3) } else { ("code", k + 1) };
                let mut language = None;
                if fence {
                    // The rest of the opening line, when the block goes on, names the language.
                    let line: String = chars[m..].iter().map(|x| x.1).take_while(|&c| c != '\n').collect();
                    if !line.contains('`') && chars[m..].iter().any(|x| x.1 == '\n') {
                        m += line.chars().count() + 1;
                        language = Some(line).filter(|l| !l.is_empty());
                    }
                }
                let start = pos;
                let mut closed = false;
                while m < chars.len() {
                    let ch = chars[m].1;
                    if ch == '\\' && matches!(at(m + 1), Some('`' | '\\')) {
                        push(&mut text, &mut pos, chars[m + 1].1);
                        m += 2;
                        continue;
                    }
                    if ch == '`' && (!fence || (at(m + 1) == Some('`') && at(m + 2) == Some('`'))) {
                        m += if fence { 3 } else { 1 };
                        closed = true;
                        break;
                    }
                    push(&mut text, &mut pos, ch);
                    m += 1;
                }
                if !closed {
                    return Err(format!("Can't find end of {} entity at byte offset {byte}", md_kind_name(kind)));
                }
                emit(&mut entities, kind, start, pos, language.map(|l| ("language", l.into())));
                k = m;
            }
            '*' | '_' | '~' | '|' => {
                let double = at(k + 1) == Some(c);
                let kind = match (c, double) {
                    ('*', _) => "bold",
                    ('_', true) => "underline",
                    ('_', false) => "italic",
                    ('~', _) => "strikethrough",
                    ('|', true) => "spoiler",
                    _ => return Err(reserved(c)),
                };
                let width = if matches!(kind, "underline" | "spoiler") { 2 } else { 1 };
                // `||` closing an expandable block quote at the end of its line.
                if kind == "spoiler"
                    && quote.is_some_and(|(_, exp)| exp)
                    && !open.iter().any(|o| o.kind == "spoiler")
                    && matches!(at(k + 2), None | Some('\n'))
                {
                    k += 2;
                    continue;
                }
                toggle(&mut open, &mut entities, kind, pos, byte)?;
                k += width;
            }
            '[' => {
                open.push(MdOpen { kind: "text_link", offset: pos, byte });
                k += 1;
            }
            '!' if at(k + 1) == Some('[') => {
                open.push(MdOpen { kind: "custom_emoji", offset: pos, byte });
                k += 2;
            }
            ']' if open.last().is_some_and(|o| matches!(o.kind, "text_link" | "custom_emoji")) => {
                let o = open.pop().expect("checked");
                if at(k + 1) != Some('(') {
                    return Err(format!("Can't find end of a URL at byte offset {}", o.byte));
                }
                let mut m = k + 2;
                let mut url = String::new();
                loop {
                    match at(m) {
                        None => return Err(format!("Can't find end of a URL at byte offset {}", o.byte)),
                        Some('\\') if matches!(at(m + 1), Some(')' | '\\')) => {
                            url.push(chars[m + 1].1);
                            m += 2;
                        }
                        Some(')') => break,
                        Some(ch) => {
                            url.push(ch);
                            m += 1;
                        }
                    }
                }
                k = m + 1;
                if o.kind == "custom_emoji" {
                    if let Some(id) = url.strip_prefix("tg://emoji?id=") {
                        emit(&mut entities, "custom_emoji", o.offset, pos, Some(("custom_emoji_id", id.into())));
                    } else if let Some(q) = url.strip_prefix("tg://time?") {
                        let unix =
                            q.split('&').find_map(|kv| kv.strip_prefix("unix=")).and_then(|u| u.parse::<i64>().ok());
                        let unix = unix.ok_or_else(|| format!("Invalid date-time URL at byte offset {}", o.byte))?;
                        emit(&mut entities, "date_time", o.offset, pos, Some(("unix_time", unix.into())));
                    } else {
                        return Err(format!(
                            "Custom emoji URL must have an emoji identifier at byte offset {}",
                            o.byte
                        ));
                    }
                } else if !url.is_empty() {
                    emit(&mut entities, "text_link", o.offset, pos, Some(("url", url.into())));
                }
            }
            c if MD_V2_RESERVED.contains(c) => return Err(reserved(c)),
            c => {
                push(&mut text, &mut pos, c);
                k += 1;
            }
        }
    }
    if let Some((start, exp)) = quote.take() {
        emit(&mut entities, if exp { "expandable_blockquote" } else { "blockquote" }, start, pos, None);
    }
    if let Some(o) = open.last() {
        return Err(format!("Can't find end of {} entity at byte offset {}", md_kind_name(o.kind), o.byte));
    }
    sort_entities(&mut entities);
    Ok((text, entities))
}

fn reserved(c: char) -> String {
    format!("Character '{c}' is reserved and must be escaped with the preceding '\\'")
}

/// Opens `kind`, or closes it when it is the innermost open entity.
fn toggle(
    open: &mut Vec<MdOpen>,
    out: &mut Vec<Value>,
    kind: &'static str,
    pos: usize,
    byte: usize,
) -> Result<(), String> {
    match open.iter().rposition(|o| o.kind == kind) {
        Some(i) if i == open.len() - 1 => {
            let o = open.pop().expect("checked");
            emit(out, kind, o.offset, pos, None);
            Ok(())
        }
        Some(_) => {
            let top = open.last().expect("non-empty");
            Err(format!("Can't find end of {} entity at byte offset {}", md_kind_name(top.kind), top.byte))
        }
        None => {
            open.push(MdOpen { kind, offset: pos, byte });
            Ok(())
        }
    }
}

fn emit(out: &mut Vec<Value>, kind: &str, start: usize, end: usize, extra: Option<(&str, Value)>) {
    if end <= start {
        return;
    }
    let mut e = entity_of(kind);
    e.insert("offset".into(), start.into());
    e.insert("length".into(), (end - start).into());
    if let Some((k, v)) = extra {
        e.insert(k.into(), v);
    }
    out.push(Value::Object(e));
}

/// Parses legacy `parse_mode=Markdown`: `*bold*`, `_italic_`, `[text](url)`, `` `code` ``,
/// ```` ```pre``` ````, no nesting, `\` escaping `_*`[` outside entities. An unclosed entity is
/// `Can't find end of the entity starting at byte offset N`.
pub fn parse_markdown(src: &str) -> Result<(String, Vec<Value>), String> {
    let chars: Vec<(usize, char)> = src.char_indices().collect();
    let at = |k: usize| chars.get(k).map(|x| x.1);
    let mut text = String::new();
    let mut pos = 0usize;
    let mut entities = Vec::new();
    let mut k = 0;
    let unclosed = |byte: usize| format!("Can't find end of the entity starting at byte offset {byte}");
    while k < chars.len() {
        let (byte, c) = chars[k];
        match c {
            '\\' if matches!(at(k + 1), Some('_' | '*' | '`' | '[')) => {
                let n = chars[k + 1].1;
                text.push(n);
                pos += n.len_utf16();
                k += 2;
            }
            '*' | '_' | '`' => {
                let fence = c == '`' && at(k + 1) == Some('`') && at(k + 2) == Some('`');
                let (kind, open_len) = match c {
                    '*' => ("bold", 1),
                    '_' => ("italic", 1),
                    _ if fence => ("pre", 3),
                    _ => ("code", 1),
                };
                let mut m = k + open_len;
                let mut language = None;
                if fence {
                    let line: String = chars[m..].iter().map(|x| x.1).take_while(|&c| c != '\n').collect();
                    if !line.contains('`') && chars[m..].iter().any(|x| x.1 == '\n') {
                        m += line.chars().count() + 1;
                        language = Some(line).filter(|l| !l.is_empty());
                    }
                }
                let start = pos;
                loop {
                    match at(m) {
                        None => return Err(unclosed(byte)),
                        Some(ch) if ch == c && (!fence || (at(m + 1) == Some('`') && at(m + 2) == Some('`'))) => break,
                        Some(ch) => {
                            text.push(ch);
                            pos += ch.len_utf16();
                            m += 1;
                        }
                    }
                }
                emit(&mut entities, kind, start, pos, language.map(|l| ("language", l.into())));
                k = m + open_len;
            }
            '[' => {
                let start = pos;
                let mut m = k + 1;
                while at(m).is_some_and(|ch| ch != ']') {
                    let ch = chars[m].1;
                    text.push(ch);
                    pos += ch.len_utf16();
                    m += 1;
                }
                if at(m) != Some(']') || at(m + 1) != Some('(') {
                    return Err(unclosed(byte));
                }
                m += 2;
                let mut url = String::new();
                while at(m).is_some_and(|ch| ch != ')') {
                    url.push(chars[m].1);
                    m += 1;
                }
                if at(m).is_none() {
                    return Err(unclosed(byte));
                }
                if !url.is_empty() {
                    emit(&mut entities, "text_link", start, pos, Some(("url", url.into())));
                }
                k = m + 1;
            }
            c => {
                text.push(c);
                pos += c.len_utf16();
                k += 1;
            }
        }
    }
    sort_entities(&mut entities);
    Ok((text, entities))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11";
    const SECS: Duration = Duration::from_secs(5);

    fn client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().expect("client")
    }

    /// POSTs `body` as JSON to `method`: `(status, body)`.
    async fn call(tg: &TelegramServer, method: &str, body: Value) -> (u16, Value) {
        let r = client().post(tg.method_url(method)).json(&body).send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.expect("a JSON body"))
    }

    async fn description(tg: &TelegramServer, method: &str, body: Value) -> String {
        let (status, b) = call(tg, method, body).await;
        assert_eq!(b["ok"], false, "{method} should fail: {b}");
        assert_eq!(b["error_code"], status, "{b}");
        b["description"].as_str().expect("a description").to_string()
    }

    fn ids(body: &Value) -> Vec<i64> {
        body["result"]
            .as_array()
            .expect("a result array")
            .iter()
            .map(|u| u["update_id"].as_i64().expect("id"))
            .collect()
    }

    /// `application/x-www-form-urlencoded` escaping of a value.
    fn percent_encode(v: &str) -> String {
        v.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    async fn twin() -> TelegramServer {
        let tg = TelegramServer::start(TOKEN).await;
        tg.add_private_chat(42, "Ada", Some("ada_l"));
        tg
    }

    #[tokio::test]
    async fn telegram_long_poll_answers_as_soon_as_an_update_arrives() {
        let tg = twin().await;
        let url = tg.method_url("getUpdates");
        let started = Instant::now();
        let poll = tokio::spawn(async move {
            client()
                .post(url)
                .json(&json!({"timeout": 10}))
                .send()
                .await
                .expect("poll")
                .json::<Value>()
                .await
                .expect("json")
        });
        tg.wait_polls(1, SECS).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (update_id, message_id) = tg.push_text(42, 42, "hi /start@clawline_test_bot");
        let body = tokio::time::timeout(SECS, poll).await.expect("answered before the timeout").expect("task");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(200) && waited < Duration::from_secs(5), "{waited:?}");
        assert_eq!(ids(&body), vec![update_id]);
        let m = &body["result"][0]["message"];
        assert_eq!(m["message_id"], message_id);
        assert_eq!(m["chat"], json!({"id": 42, "type": "private", "first_name": "Ada", "username": "ada_l"}));
        assert_eq!(m["from"]["id"], 42);
        assert_eq!(m["from"]["is_bot"], false);
        assert_eq!(m["entities"], json!([{"type": "bot_command", "offset": 3, "length": 24}]));
    }

    #[tokio::test]
    async fn telegram_long_poll_without_updates_answers_empty_after_its_timeout() {
        let tg = twin().await;
        let started = Instant::now();
        let (status, body) = call(&tg, "getUpdates", json!({"timeout": 1})).await;
        assert_eq!((status, body), (200, json!({"ok": true, "result": []})));
        assert!(started.elapsed() >= Duration::from_millis(950), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn telegram_offsets_confirm_updates() {
        let tg = twin().await;
        let a = tg.push_text(42, 42, "one").0;
        let b = tg.push_text(42, 42, "two").0;
        let c = tg.push_text(42, 42, "three").0;
        assert_eq!(ids(&call(&tg, "getUpdates", json!({})).await.1), vec![a, b, c]);
        // Not confirmed by receiving them.
        assert_eq!(ids(&call(&tg, "getUpdates", json!({})).await.1), vec![a, b, c]);
        assert_eq!(ids(&call(&tg, "getUpdates", json!({"offset": b})).await.1), vec![b, c]);
        assert_eq!(tg.confirmed_offset(), b);
        assert_eq!(tg.pending_updates().len(), 2);
        assert_eq!(ids(&call(&tg, "getUpdates", json!({"offset": b, "limit": 1})).await.1), vec![b]);
        assert_eq!(ids(&call(&tg, "getUpdates", json!({"offset": c + 1})).await.1), Vec::<i64>::new());
        assert!(tg.pending_updates().is_empty());
        // A negative offset keeps only the last updates.
        tg.push_text(42, 42, "four");
        let e = tg.push_text(42, 42, "five").0;
        assert_eq!(ids(&call(&tg, "getUpdates", json!({"offset": -1})).await.1), vec![e]);
        assert_eq!(tg.pending_updates().len(), 1);
        // Parameters in the query string, as text.
        let r = client().get(format!("{}?offset={}", tg.method_url("getUpdates"), e + 1)).send().await.expect("get");
        assert_eq!(ids(&r.json().await.expect("json")), Vec::<i64>::new());
        assert_eq!(tg.confirmed_offset(), e + 1);
    }

    #[tokio::test]
    async fn telegram_a_second_poll_terminates_the_held_one() {
        let tg = twin().await;
        let url = tg.method_url("getUpdates");
        let older = tokio::spawn(async move {
            let r = client().post(url).json(&json!({"timeout": 10})).send().await.expect("poll");
            (r.status().as_u16(), r.json::<Value>().await.expect("json"))
        });
        tg.wait_polls(1, SECS).await;
        let (status, newer) = call(&tg, "getUpdates", json!({"timeout": 0})).await;
        assert_eq!((status, newer), (200, json!({"ok": true, "result": []})));
        let (status, body) = tokio::time::timeout(SECS, older).await.expect("answered").expect("task");
        assert_eq!(status, 409);
        assert_eq!(body, json!({"ok": false, "error_code": 409, "description": CONFLICT_POLL}));
    }

    #[tokio::test]
    async fn telegram_webhook_blocks_polling_and_checks_its_url() {
        let tg = twin().await;
        let (_, set) = call(&tg, "setWebhook", json!({"url": "http://127.0.0.1:9/hook"})).await;
        assert_eq!(set, json!({"ok": true, "result": true, "description": "Webhook was set"}));
        assert_eq!(description(&tg, "getUpdates", json!({})).await, CONFLICT_WEBHOOK);
        let (_, del) = call(&tg, "deleteWebhook", json!({})).await;
        assert_eq!(del["description"], "Webhook was deleted");
        assert_eq!(call(&tg, "getUpdates", json!({})).await.0, 200);
        assert_eq!(
            description(&tg, "setWebhook", json!({"url": "http://example.com/hook"})).await,
            "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
        );
        assert_eq!(
            description(&tg, "setWebhook", json!({"url": "https://example.com:1234/hook"})).await,
            "Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443"
        );
        let (status, _) = call(&tg, "setWebhook", json!({"url": "http://[::1]:8080/hook"})).await;
        assert_eq!(status, 200, "loopback HTTP is taken for tests");
        call(&tg, "deleteWebhook", json!({})).await;
        let bad_secret = json!({"url": "https://example.com/hook", "secret_token": "not allowed!"});
        assert_eq!(
            description(&tg, "setWebhook", bad_secret).await,
            "Bad Request: secret token contains unallowed characters"
        );
    }

    #[tokio::test]
    async fn telegram_webhook_delivers_with_the_secret_header_and_retries() {
        type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;
        let seen: Seen = Arc::default();
        async fn hook(State(seen): State<Seen>, headers: HeaderMap, body: Bytes) -> Response {
            let secret = headers.get("x-telegram-bot-api-secret-token").and_then(|v| v.to_str().ok()).map(String::from);
            let mut s = seen.lock().expect("lock");
            s.push((secret, serde_json::from_slice(&body).unwrap_or(Value::Null)));
            let status = if s.len() == 1 { 500 } else { 200 };
            Response::builder().status(status).body(Body::empty()).expect("response")
        }
        let app = Router::new().route("/hook", axum::routing::post(hook)).with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let hook_url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });

        let tg = twin().await;
        tg.set_webhook_retry_delay(Duration::from_millis(50));
        let (status, _) = call(&tg, "setWebhook", json!({"url": hook_url, "secret_token": "s3cr3t_-X"})).await;
        assert_eq!(status, 200);
        let (update_id, _) = tg.push_text(42, 42, "via webhook");
        let d = tg.wait_deliveries(2, SECS).await;
        assert_eq!(d[0].status, Some(500));
        assert_eq!(d[1].status, Some(200));
        assert!(d.iter().all(|d| d.update_id == Some(update_id) && d.secret.as_deref() == Some("s3cr3t_-X")));
        {
            let s = seen.lock().expect("lock");
            assert_eq!(s.len(), 2);
            assert!(s.iter().all(|(secret, _)| secret.as_deref() == Some("s3cr3t_-X")));
            assert_eq!(s[1].1["update_id"], update_id);
            assert_eq!(s[1].1["message"]["text"], "via webhook");
        }
        assert!(tg.pending_updates().is_empty());
        let (_, info) = call(&tg, "getWebhookInfo", json!({})).await;
        assert_eq!(info["result"]["url"], hook_url);
        assert_eq!(info["result"]["pending_update_count"], 0);
        assert_eq!(info["result"]["last_error_message"], "Wrong response from the webhook: 500 Internal Server Error");

        // Without a secret there is no header.
        call(&tg, "setWebhook", json!({"url": hook_url})).await;
        tg.push_text(42, 42, "no secret");
        let d = tg.wait_deliveries(3, SECS).await;
        assert_eq!(d[2].status, Some(200));
        assert_eq!(d[2].secret, None);
        assert_eq!(seen.lock().expect("lock")[2].0, None);
    }

    #[tokio::test]
    async fn telegram_html_is_parsed_as_the_formatting_options_define() {
        let tg = twin().await;
        let html = concat!(
            "<b>bold</b> <i>it</i> <a href=\"https://x.y/?a=1&amp;b=2\">link</a> <code>c</code> ",
            "<pre><code class=\"language-rust\">fn</code></pre> <span class=\"tg-spoiler\">s</span> ",
            "<tg-spoiler>t</tg-spoiler> <blockquote expandable>q</blockquote> ",
            "<tg-emoji emoji-id=\"5368324170671202286\">👍</tg-emoji> 1 &lt; 2 &amp;&amp; 3 > 2 &#33;&#x41;&quot;"
        );
        let (status, body) = call(&tg, "sendMessage", json!({"chat_id": 42, "text": html, "parse_mode": "HTML"})).await;
        assert_eq!(status, 200, "{body}");
        let m = &body["result"];
        assert_eq!(m["text"], "bold it link c fn s t q 👍 1 < 2 && 3 > 2 !A\"");
        assert_eq!(m["from"]["is_bot"], true);
        let entities = m["entities"].as_array().expect("entities");
        let has = |e: Value| assert!(entities.contains(&e), "{e} not in {entities:?}");
        has(json!({"type": "bold", "offset": 0, "length": 4}));
        has(json!({"type": "text_link", "offset": 8, "length": 4, "url": "https://x.y/?a=1&b=2"}));
        has(json!({"type": "pre", "offset": 15, "length": 2, "language": "rust"}));
        has(json!({"type": "expandable_blockquote", "offset": 22, "length": 1}));
        has(json!({"type": "custom_emoji", "offset": 24, "length": 2, "custom_emoji_id": "5368324170671202286"}));
        assert!(!entities.iter().any(|e| e["type"] == "code" && e["offset"] == 15), "code inside pre is the pre");
        assert_eq!(tg.sent()[0].plain, m["text"].as_str().expect("text"));

        let refused = [
            ("<p>x</p>", "Unsupported start tag \"p\" at byte offset 0"),
            ("<b>x", "Can't find end tag corresponding to start tag \"b\""),
            ("<b><i>x</b></i>", "Unmatched end tag at byte offset 7, expected \"</i>\", found \"</b>\""),
            ("x</b>", "Unexpected end tag at byte offset 1"),
            ("1 < 2", "Unsupported start tag \"\" at byte offset 2"),
            ("<b", "Unclosed start tag at byte offset 0"),
            ("<span>x</span>", "Tag \"span\" must have class \"tg-spoiler\" at byte offset 0"),
            ("a & b", "Character '&' at byte offset 2 is not a part of an HTML entity and must be replaced with &amp;"),
            ("&nbsp;", "Unsupported HTML entity \"&nbsp;\" at byte offset 0"),
        ];
        for (text, why) in refused {
            let d = description(&tg, "sendMessage", json!({"chat_id": 42, "text": text, "parse_mode": "HTML"})).await;
            assert_eq!(d, format!("Bad Request: can't parse entities: {why}"), "for {text:?}");
        }
        // The length counts after the tags and entities.
        let long = format!("<b>{}</b>", "a".repeat(4095));
        let (status, _) =
            call(&tg, "sendMessage", json!({"chat_id": 42, "text": format!("{long}&amp;"), "parse_mode": "html"}))
                .await;
        assert_eq!(status, 200);
        let too_long = json!({"chat_id": 42, "text": format!("{long}&amp;&amp;"), "parse_mode": "HTML"});
        assert_eq!(description(&tg, "sendMessage", too_long).await, "Bad Request: message is too long");
        let empty = json!({"chat_id": 42, "text": "<b> </b>", "parse_mode": "HTML"});
        assert_eq!(description(&tg, "sendMessage", empty).await, "Bad Request: message text is empty");
        let bbcode = json!({"chat_id": 42, "text": "x", "parse_mode": "BBCode"});
        assert_eq!(description(&tg, "sendMessage", bbcode).await, "Bad Request: unsupported parse_mode");
        assert_eq!(tg.sent().len(), 2, "refused sends are not recorded");
    }

    #[tokio::test]
    async fn telegram_markdown_modes_are_parsed_and_refused_like_the_server() {
        let (plain, entities) =
            parse_markdown_v2("*bold* _it_ __u__ ||sp|| \\. [l](https://a.b/\\)) `c\\`o`").expect("valid");
        assert_eq!(plain, "bold it u sp . l c`o");
        assert!(entities.contains(&json!({"type": "bold", "offset": 0, "length": 4})));
        assert!(entities.contains(&json!({"type": "underline", "offset": 8, "length": 1})));
        assert!(entities.contains(&json!({"type": "text_link", "offset": 15, "length": 1, "url": "https://a.b/)"})));
        assert!(entities.contains(&json!({"type": "code", "offset": 17, "length": 3})));
        let (plain, entities) = parse_markdown_v2(">quoted\n>more\nafter").expect("quote");
        assert_eq!(plain, "quoted\nmore\nafter");
        assert_eq!(entities, vec![json!({"type": "blockquote", "offset": 0, "length": 11})]);
        assert_eq!(
            parse_markdown_v2("end."),
            Err("Character '.' is reserved and must be escaped with the preceding '\\'".into())
        );
        assert_eq!(parse_markdown_v2("a *open"), Err("Can't find end of Bold entity at byte offset 2".into()));
        assert_eq!(
            parse_markdown("*bold* and _open"),
            Err("Can't find end of the entity starting at byte offset 11".into())
        );
        assert_eq!(parse_markdown("*b* 1.5").map(|(t, _)| t), Ok("b 1.5".into()));

        let tg = twin().await;
        let d =
            description(&tg, "sendMessage", json!({"chat_id": 42, "text": "Done!", "parse_mode": "MarkdownV2"})).await;
        assert_eq!(
            d,
            "Bad Request: can't parse entities: Character '!' is reserved and must be escaped with the preceding '\\'"
        );
    }

    #[tokio::test]
    async fn telegram_rate_limits_and_scripted_failures_answer_like_the_server() {
        let tg = twin().await;
        tg.add_private_chat(43, "Bob", None);
        tg.set_chat_rate_limit(2);
        for _ in 0..2 {
            assert_eq!(call(&tg, "sendMessage", json!({"chat_id": 42, "text": "x"})).await.0, 200);
        }
        let (status, body) = call(&tg, "sendMessage", json!({"chat_id": 42, "text": "x"})).await;
        assert_eq!(status, 429);
        assert_eq!(
            body,
            json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1", "parameters": {"retry_after": 1}})
        );
        assert_eq!(call(&tg, "sendMessage", json!({"chat_id": 43, "text": "other chat"})).await.0, 200);
        tokio::time::sleep(Duration::from_millis(1050)).await;
        assert_eq!(call(&tg, "sendMessage", json!({"chat_id": 42, "text": "later"})).await.0, 200);
        assert_eq!(tg.sent().len(), 4);

        // Refused sends don't use up the chat's allowance.
        tg.set_chat_rate_limit(1);
        let empty = json!({"chat_id": 43, "text": " "});
        assert_eq!(description(&tg, "sendMessage", empty).await, "Bad Request: message text is empty");
        assert_eq!(call(&tg, "sendMessage", json!({"chat_id": 43, "text": "fits"})).await.0, 200);
        assert_eq!(call(&tg, "sendMessage", json!({"chat_id": 43, "text": "over"})).await.0, 429);

        tg.set_chat_rate_limit(0);
        tg.fail_next("sendMessage", 429, Some(7));
        tg.fail_next("SENDMESSAGE", 502, None);
        let (status, body) = call(&tg, "sendMessage", json!({"chat_id": 42, "text": "x"})).await;
        assert_eq!((status, body["parameters"]["retry_after"].as_u64()), (429, Some(7)));
        assert_eq!(body["description"], "Too Many Requests: retry after 7");
        let (status, body) = call(&tg, "sendMessage", json!({"chat_id": 42, "text": "x"})).await;
        assert_eq!((status, body), (502, json!({"ok": false, "error_code": 502, "description": "Bad Gateway"})));
        assert_eq!(call(&tg, "sendMessage", json!({"chat_id": 42, "text": "x"})).await.0, 200);
        let statuses: Vec<u16> = tg.requests().iter().map(|c| c.status).collect();
        assert_eq!(statuses, vec![200, 200, 429, 200, 200, 400, 200, 429, 429, 502, 200]);
    }

    #[tokio::test]
    async fn telegram_token_method_names_and_get_me() {
        let tg = twin().await;
        let r = client().get(format!("{}/bot123456:wrong/getMe", tg.api_root())).send().await.expect("get");
        assert_eq!(r.status().as_u16(), 401);
        assert_eq!(
            r.json::<Value>().await.expect("json"),
            json!({"ok": false, "error_code": 401, "description": "Unauthorized"})
        );
        let (status, me) = call(&tg, "GETME", json!({})).await;
        assert_eq!(status, 200);
        assert_eq!(me["result"]["id"], 123456);
        assert_eq!(me["result"]["is_bot"], true);
        assert_eq!(me["result"]["username"], "clawline_test_bot");
        tg.set_username("other_bot");
        assert_eq!(call(&tg, "getMe", json!({})).await.1["result"]["username"], "other_bot");
        let (status, body) = call(&tg, "sendTelepathy", json!({})).await;
        assert_eq!((status, body), (404, json!({"ok": false, "error_code": 404, "description": "Not Found"})));
    }

    #[tokio::test]
    async fn telegram_send_errors_use_the_real_descriptions() {
        let tg = twin().await;
        let send = |body: Value| description(&tg, "sendMessage", body);
        assert_eq!(send(json!({"chat_id": 999, "text": "x"})).await, "Bad Request: chat not found");
        assert_eq!(send(json!({"chat_id": "@news", "text": "x"})).await, "Bad Request: chat not found");
        assert_eq!(send(json!({"chat_id": 42, "text": ""})).await, "Bad Request: message text is empty");
        assert_eq!(send(json!({"chat_id": 42})).await, "Bad Request: message text is empty");
        assert_eq!(
            send(json!({"chat_id": 42, "text": "x", "reply_parameters": {"message_id": 999}})).await,
            "Bad Request: message to be replied not found"
        );
        assert_eq!(
            send(json!({"chat_id": 42, "text": "x", "message_thread_id": 5})).await,
            "Bad Request: message thread not found"
        );
        tg.add_channel(-1001, "News", "news");
        assert_eq!(
            call(&tg, "sendMessage", json!({"chat_id": "@news", "text": "x"})).await.1["result"]["chat"]["id"],
            -1001
        );

        let allowed = json!({"chat_id": 42, "text": "x", "reply_parameters": {"message_id": 999, "allow_sending_without_reply": true}});
        let (status, body) = call(&tg, "sendMessage", allowed).await;
        assert_eq!(status, 200);
        assert!(body["result"].get("reply_to_message").is_none());
        let (_, asked) = tg.push_text(42, 42, "question");
        let (_, body) = call(
            &tg,
            "sendMessage",
            json!({"chat_id": 42, "text": "answer", "reply_parameters": {"message_id": asked}}),
        )
        .await;
        assert_eq!(body["result"]["reply_to_message"]["text"], "question");
        assert_eq!(tg.sent().last().expect("sent").reply_to_message_id, Some(asked));
        assert!(body["result"]["message_id"].as_i64() > Some(asked), "ids increase per chat");

        tg.add_supergroup(-100123, "Forum", true);
        tg.add_topic(-100123, 7, "Ideas");
        let (_, body) =
            call(&tg, "sendMessage", json!({"chat_id": -100123, "text": "in topic", "message_thread_id": 7})).await;
        assert_eq!(body["result"]["message_thread_id"], 7);
        assert_eq!(body["result"]["is_topic_message"], true);
        assert_eq!(tg.sent().last().expect("sent").message_thread_id, Some(7));
        let wrong_topic = json!({"chat_id": -100123, "text": "x", "message_thread_id": 8});
        assert_eq!(send(wrong_topic).await, "Bad Request: message thread not found");

        tg.add_group(-55, "Old");
        tg.migrate_group(-55, -10055);
        let (status, body) = call(&tg, "sendMessage", json!({"chat_id": -55, "text": "x"})).await;
        assert_eq!(status, 400);
        assert_eq!(body["description"], "Bad Request: group chat was upgraded to a supergroup chat");
        assert_eq!(body["parameters"], json!({"migrate_to_chat_id": -10055}));
        assert_eq!(call(&tg, "sendMessage", json!({"chat_id": -10055, "text": "x"})).await.0, 200);

        let data_too_long = json!({"chat_id": 42, "text": "x",
            "reply_markup": {"inline_keyboard": [[{"text": "b", "callback_data": "d".repeat(65)}]]}});
        assert_eq!(send(data_too_long).await, "Bad Request: BUTTON_DATA_INVALID");
        let text_button = json!({"chat_id": 42, "text": "x", "reply_markup": {"inline_keyboard": [[{"text": "b"}]]}});
        assert_eq!(
            send(text_button).await,
            "Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
        );
        // Form bodies carry objects as JSON text.
        let keyboard = json!({"inline_keyboard": [[{"text": "Yes", "callback_data": "yes"}, {"text": "Site", "url": "https://a.b"}]]});
        let form = [("chat_id", "42".to_string()), ("text", "pick".into()), ("reply_markup", keyboard.to_string())];
        let encoded: Vec<String> = form.iter().map(|(k, v)| format!("{k}={}", percent_encode(v))).collect();
        let r = client()
            .post(tg.method_url("sendMessage"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encoded.join("&"))
            .send()
            .await
            .expect("form");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["result"]["reply_markup"], keyboard);
        assert_eq!(tg.sent().last().expect("sent").reply_markup, Some(keyboard));

        tg.block_bot(42);
        let (status, body) = call(&tg, "sendMessage", json!({"chat_id": 42, "text": "x"})).await;
        assert_eq!((status, body["description"].as_str()), (403, Some("Forbidden: bot was blocked by the user")));
    }

    #[tokio::test]
    async fn telegram_edits_refuse_unchanged_content() {
        let tg = twin().await;
        let keyboard = json!({"inline_keyboard": [[{"text": "Stop", "callback_data": "stop"}]]});
        let (_, body) = call(
            &tg,
            "sendMessage",
            json!({"chat_id": 42, "text": "<b>Thinking</b>", "parse_mode": "HTML", "reply_markup": keyboard}),
        )
        .await;
        let id = body["result"]["message_id"].clone();
        let same = json!({"chat_id": 42, "message_id": id, "text": "<b>Thinking</b>", "parse_mode": "HTML", "reply_markup": keyboard});
        assert_eq!(description(&tg, "editMessageText", same).await, format!("Bad Request: {NOT_MODIFIED}"));
        let (status, edited) =
            call(&tg, "editMessageText", json!({"chat_id": 42, "message_id": id, "text": "Done"})).await;
        assert_eq!(status, 200, "{edited}");
        assert_eq!(edited["result"]["text"], "Done");
        assert!(edited["result"].get("reply_markup").is_none() && edited["result"].get("entities").is_none());
        assert!(edited["result"]["edit_date"].is_i64());
        assert_eq!(tg.edits().len(), 1);
        assert_eq!(tg.edits()[0].plain.as_deref(), Some("Done"));
        assert_eq!(tg.message(42, id.as_i64().expect("id")).expect("stored")["text"], "Done");
        let missing = json!({"chat_id": 42, "message_id": 999, "text": "x"});
        assert_eq!(description(&tg, "editMessageText", missing).await, "Bad Request: message to edit not found");
        let (_, theirs) = tg.push_text(42, 42, "mine");
        let not_bot = json!({"chat_id": 42, "message_id": theirs, "text": "x"});
        assert_eq!(description(&tg, "editMessageText", not_bot).await, "Bad Request: message can't be edited");
    }

    /// A `multipart/form-data` body with text fields and one file part.
    fn multipart(fields: &[(&str, &str)], file: (&str, &str, &[u8])) -> (String, Vec<u8>) {
        let boundary = "TwInBoUnDaRy42";
        let mut body = Vec::new();
        for (k, v) in fields {
            body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").bytes());
        }
        let (name, file_name, bytes) = file;
        body.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").bytes(),
        );
        body.extend(bytes);
        body.extend(format!("\r\n--{boundary}--\r\n").bytes());
        (format!("multipart/form-data; boundary={boundary}"), body)
    }

    #[tokio::test]
    async fn telegram_uploads_become_files_to_get_and_download() {
        let tg = twin().await;
        let photo: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let (ct, body) = multipart(
            &[("chat_id", "42"), ("caption", "<b>cat</b>"), ("parse_mode", "HTML")],
            ("photo", "cat.jpg", &photo),
        );
        let r = client()
            .post(tg.method_url("sendPhoto"))
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .expect("upload");
        assert_eq!(r.status().as_u16(), 200);
        let m: Value = r.json().await.expect("json");
        assert_eq!(m["result"]["caption"], "cat");
        assert_eq!(m["result"]["caption_entities"], json!([{"type": "bold", "offset": 0, "length": 3}]));
        let s = tg.sent().pop().expect("sent");
        assert_eq!(
            (s.method.as_str(), s.upload_len, s.upload_name.as_deref()),
            ("sendPhoto", Some(1000), Some("cat.jpg"))
        );
        let file_id = m["result"]["photo"][0]["file_id"].clone();
        let (_, file) = call(&tg, "getFile", json!({"file_id": file_id})).await;
        assert_eq!(file["result"]["file_size"], 1000);
        let path = file["result"]["file_path"].as_str().expect("path");
        let url = format!("{}/file/bot{TOKEN}/{path}", tg.api_root());
        assert_eq!(
            client().get(&url).send().await.expect("download").bytes().await.expect("bytes").as_ref(),
            photo.as_slice()
        );
        let wrong = format!("{}/file/bot1:nope/{path}", tg.api_root());
        assert_eq!(client().get(&wrong).send().await.expect("download").status().as_u16(), 401);

        let long_caption = json!({"chat_id": 42, "photo": file_id, "caption": "c".repeat(1025)});
        assert_eq!(description(&tg, "sendPhoto", long_caption).await, "Bad Request: message caption is too long");
        let unknown = json!({"chat_id": 42, "document": "nope"});
        assert_eq!(
            description(&tg, "sendDocument", unknown).await,
            "Bad Request: wrong file identifier/HTTP URL specified"
        );
        assert_eq!(
            description(&tg, "sendVoice", json!({"chat_id": 42})).await,
            "Bad Request: there is no voice in the request"
        );
        let (status, _) =
            call(&tg, "sendDocument", json!({"chat_id": 42, "document": "https://example.com/r.pdf"})).await;
        assert_eq!(status, 200);
        assert_eq!(tg.sent().pop().expect("sent").file_ref.as_deref(), Some("https://example.com/r.pdf"));

        let voice = tg.register_file(b"OggS-voice", "note.oga");
        let (update_id, _) = tg.push_voice(42, 42, &voice);
        let (_, updates) = call(&tg, "getUpdates", json!({})).await;
        assert_eq!(updates["result"][0]["update_id"], update_id);
        assert_eq!(updates["result"][0]["message"]["voice"]["file_id"], voice);
        let (_, file) = call(&tg, "getFile", json!({"file_id": voice})).await;
        assert_eq!(file["result"]["file_size"], 10);
        assert_eq!(description(&tg, "getFile", json!({"file_id": "missing"})).await, "Bad Request: invalid file_id");
    }

    #[tokio::test]
    async fn telegram_poll_faults_misbehave_as_described() {
        let tg = twin().await;
        tg.drop_next_polls(1);
        assert!(client().post(tg.method_url("getUpdates")).json(&json!({})).send().await.is_err(), "no HTTP answer");
        assert_eq!(tg.requests().last().map(|c| c.status), Some(0));
        assert_eq!(call(&tg, "getUpdates", json!({})).await.0, 200);

        tg.malformed_next_poll();
        let r = client().post(tg.method_url("getUpdates")).json(&json!({})).send().await.expect("answered");
        assert_eq!(r.status().as_u16(), 200);
        assert!(serde_json::from_slice::<Value>(&r.bytes().await.expect("body")).is_err());

        let a = tg.push_text(42, 42, "a").0;
        let b = tg.push_text(42, 42, "b").0;
        assert_eq!(ids(&call(&tg, "getUpdates", json!({})).await.1), vec![a, b]);
        assert_eq!(ids(&call(&tg, "getUpdates", json!({"offset": b + 1})).await.1), Vec::<i64>::new());
        tg.duplicate_next_poll();
        assert_eq!(ids(&call(&tg, "getUpdates", json!({"offset": b + 1})).await.1), vec![a, b]);
        assert_eq!(ids(&call(&tg, "getUpdates", json!({"offset": b + 1})).await.1), Vec::<i64>::new());

        tg.stall_polls(true);
        let stalled = client()
            .post(tg.method_url("getUpdates"))
            .json(&json!({}))
            .timeout(Duration::from_millis(300))
            .send()
            .await;
        assert!(stalled.is_err_and(|e| e.is_timeout()));
        tg.stall_polls(false);
        assert_eq!(call(&tg, "getUpdates", json!({})).await.0, 200);
    }

    #[tokio::test]
    async fn telegram_actions_reactions_callbacks_and_deletes() {
        let tg = twin().await;
        assert_eq!(call(&tg, "sendChatAction", json!({"chat_id": 42, "action": "typing"})).await.1["result"], true);
        let dancing = json!({"chat_id": 42, "action": "dancing"});
        assert_eq!(description(&tg, "sendChatAction", dancing).await, "Bad Request: wrong parameter action in request");
        assert_eq!(
            tg.chat_actions(),
            vec![ChatAction { chat_id: 42, action: "typing".into(), message_thread_id: None }]
        );

        let (_, msg) = tg.push_text(42, 42, "react to me");
        let thumbs = json!({"chat_id": 42, "message_id": msg, "reaction": [{"type": "emoji", "emoji": "👍"}]});
        assert_eq!(call(&tg, "setMessageReaction", thumbs).await.0, 200);
        let two = json!({"chat_id": 42, "message_id": msg, "reaction": [{"type": "emoji", "emoji": "👍"}, {"type": "emoji", "emoji": "🔥"}]});
        assert_eq!(description(&tg, "setMessageReaction", two).await, "Bad Request: REACTIONS_TOO_MANY");
        let dino = json!({"chat_id": 42, "message_id": msg, "reaction": [{"type": "emoji", "emoji": "🦖"}]});
        assert_eq!(description(&tg, "setMessageReaction", dino).await, "Bad Request: REACTION_INVALID");
        assert_eq!(
            tg.reactions(),
            vec![Reaction { chat_id: 42, message_id: msg, emojis: vec!["👍".into()], is_big: false }]
        );

        let (_, sent) = call(
            &tg,
            "sendMessage",
            json!({"chat_id": 42, "text": "pick",
            "reply_markup": {"inline_keyboard": [[{"text": "Yes", "callback_data": "yes"}]]}}),
        )
        .await;
        let sent_id = sent["result"]["message_id"].as_i64().expect("id");
        let query = tg.push_callback_query(42, 42, sent_id, "yes");
        let (_, updates) = call(&tg, "getUpdates", json!({"allowed_updates": ["callback_query"]})).await;
        let cq = &updates["result"].as_array().expect("updates").last().expect("one")["callback_query"];
        assert_eq!((cq["id"].as_str(), cq["data"].as_str()), (Some(query.as_str()), Some("yes")));
        assert_eq!(cq["message"]["message_id"], sent_id);
        let answer = json!({"callback_query_id": query, "text": "ok"});
        assert_eq!(call(&tg, "answerCallbackQuery", answer.clone()).await.1["result"], true);
        assert_eq!(description(&tg, "answerCallbackQuery", answer).await, format!("Bad Request: {QUERY_INVALID}"));
        assert_eq!(tg.callback_answers().len(), 1);

        let del = json!({"chat_id": 42, "message_id": sent_id});
        assert_eq!(call(&tg, "deleteMessage", del.clone()).await.1["result"], true);
        assert_eq!(description(&tg, "deleteMessage", del).await, "Bad Request: message to delete not found");
        assert_eq!(tg.deleted(), vec![(42, sent_id)]);
    }

    #[tokio::test]
    async fn telegram_inbound_updates_look_like_the_servers() {
        let tg = twin().await;
        tg.set_username("clawline_bot");
        tg.add_supergroup(-100777, "Team", true);
        tg.add_topic(-100777, 3, "Build");
        tg.add_user(50, "Eve", None);
        let (_, in_topic) = tg.push_text_in_topic(-100777, 3, 42, "hey @clawline_bot");
        let m = tg.message(-100777, in_topic).expect("stored");
        assert_eq!((m["message_thread_id"].as_i64(), m["is_topic_message"].as_bool()), (Some(3), Some(true)));
        assert_eq!(m["reply_to_message"]["forum_topic_created"]["name"], "Build");
        assert_eq!(m["entities"], json!([{"type": "mention", "offset": 4, "length": 13}]));

        let text = "ping Eve now";
        let mention = tg.text_mention(text, "Eve", 50);
        let (_, with) = tg.push_with_entities(-100777, 42, text, vec![mention]);
        let e = &tg.message(-100777, with).expect("stored")["entities"][0];
        assert_eq!(
            (e["type"].as_str(), e["offset"].as_i64(), e["user"]["id"].as_i64()),
            (Some("text_mention"), Some(5), Some(50))
        );

        // A hostile update without an id is delivered, then confirmed by the next offset.
        tg.push_raw(json!({"message": {"text": "no id"}}));
        let (_, first) = call(&tg, "getUpdates", json!({})).await;
        let last = first["result"].as_array().expect("updates").len();
        assert_eq!(first["result"][last - 1], json!({"message": {"text": "no id"}}));
        let max_id =
            ids(&json!({"result": first["result"].as_array().expect("a")[..last - 1]})).into_iter().max().expect("ids");
        call(&tg, "getUpdates", json!({"offset": max_id + 1})).await;
        assert!(tg.pending_updates().is_empty());
        let id = tg.push_raw_with_id(json!({"edited_message": {"text": "x"}}));
        assert_eq!(tg.pending_updates(), vec![json!({"update_id": id, "edited_message": {"text": "x"}})]);

        // allowed_updates filters what is pushed afterwards.
        call(&tg, "getUpdates", json!({"offset": id + 1, "allowed_updates": ["callback_query"]})).await;
        tg.push_text(42, 42, "filtered out");
        assert!(tg.pending_updates().is_empty());
    }
}
