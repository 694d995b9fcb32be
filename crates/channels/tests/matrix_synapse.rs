//! The Matrix adapter against a real Synapse (the slow lane): `scripts/synapse start` installs
//! it into a venv under target/ and starts it on loopback. A person, made with Synapse's
//! shared-secret registration and speaking the client-server API over HTTP, invites clawline
//! into a DM and a room; clawline joins, answers the DM and the message that names it (as
//! `m.notice` replies to them), not the unaddressed one nor history, and after a restart
//! answers what came while it was down and nothing twice.
//! `CLAWLINE_SKIP_SYNAPSE=1` skips the lane on machines that cannot install Synapse.
//! This test never touches the twin (tests/matrix.rs covers faults), and registers fresh users
//! on every run so it can share a reused server with other runs.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clawline_channels::matrix::MatrixChannel;
use clawline_channels::{Ask, Backoff, Channel, Channels, ConnState, Progress, Reply, Responder};
use clawline_core::config::channels::Platform;
use clawline_core::config::{Config, LoadContext, load};
use clawline_store::Store;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};

/// Synapse's pace: how long to wait for anything it does, and how often to look.
const PATIENCE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);

#[derive(Default, Clone)]
struct Echo {
    asks: Arc<Mutex<Vec<Ask>>>,
}

impl Responder for Echo {
    fn respond(&self, ask: Ask, _progress: Progress) -> BoxFuture<'static, Reply> {
        self.asks.lock().unwrap().push(ask.clone());
        let said = ask.text.rsplit(": ").next().unwrap_or_default().to_string();
        Box::pin(async move { Reply::Text(format!("re: **{said}**")) })
    }
}

impl Echo {
    fn asks(&self) -> Vec<Ask> {
        self.asks.lock().unwrap().clone()
    }
}

/// `(homeserver URL, shared registration secret)` of a running Synapse, started by the
/// project's script.
fn server() -> Option<(String, String)> {
    if std::env::var_os("CLAWLINE_SKIP_SYNAPSE").is_some() {
        eprintln!("CLAWLINE_SKIP_SYNAPSE is set: skipping the real-Synapse lane");
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/synapse");
    let out = std::process::Command::new(script).arg("start").output().expect("run scripts/synapse");
    assert!(out.status.success(), "scripts/synapse start failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let get = |k: &str| text.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).map(str::to_string);
    Some((
        get("MATRIX_HOMESERVER").expect("MATRIX_HOMESERVER"),
        get("MATRIX_SHARED_SECRET").expect("MATRIX_SHARED_SECRET"),
    ))
}

/// Percent-encodes a path segment (room ids have `!` and `:`).
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A distinct suffix per run: the process id and the clock, so reruns against a reused
/// server (whose users persist) never collide.
fn run_tag() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{}t{:x}", std::process::id(), nanos)
}

/// Calls the homeserver and returns its JSON answer; panics on anything but a 2xx.
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Value {
    let mut req = http.request(method.clone(), url).timeout(Duration::from_secs(30));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = &body {
        req = req.json(b);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.is_success(), "{method} {url} → {status}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {url}: not JSON ({e}): {text}"))
}

/// Makes a user with the shared-secret admin API; returns the full user id.
async fn register(http: &reqwest::Client, base: &str, secret: &str, localpart: &str, password: &str) -> String {
    let url = format!("{base}/_synapse/admin/v1/register");
    let nonce = call(http, reqwest::Method::GET, &url, None, None).await["nonce"].as_str().unwrap().to_string();
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let signed = format!("{nonce}\0{localpart}\0{password}\0notadmin");
    let mac = hex(aws_lc_rs::hmac::sign(&key, signed.as_bytes()).as_ref());
    let body = json!({"nonce": nonce, "username": localpart, "password": password, "admin": false, "mac": mac});
    let answer = call(http, reqwest::Method::POST, &url, None, Some(body)).await;
    answer["user_id"].as_str().unwrap().to_string()
}

/// A person on Matrix, logged in, speaking the client-server API.
struct Person {
    http: reqwest::Client,
    base: String,
    token: String,
    txn: AtomicU64,
}

impl Person {
    async fn login(http: &reqwest::Client, base: &str, user: &str, password: &str) -> Person {
        let body = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password});
        let answer =
            call(http, reqwest::Method::POST, &format!("{base}/_matrix/client/v3/login"), None, Some(body)).await;
        Person {
            http: http.clone(),
            base: base.to_string(),
            token: answer["access_token"].as_str().unwrap().to_string(),
            txn: AtomicU64::new(0),
        }
    }

    async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/_matrix/client/v3{path}", self.base);
        call(&self.http, method, &url, Some(&self.token), body).await
    }

    /// Creates a room inviting `who`; a DM (`is_direct`) or a plain private room.
    async fn create_room(&self, direct: bool, who: &str) -> String {
        let body = if direct {
            json!({"is_direct": true, "invite": [who], "preset": "trusted_private_chat"})
        } else {
            json!({"invite": [who], "preset": "private_chat", "name": "clawline slow lane"})
        };
        let answer = self.api(reqwest::Method::POST, "/createRoom", Some(body)).await;
        answer["room_id"].as_str().unwrap().to_string()
    }

    /// Sends a text message; returns its event id.
    async fn say(&self, room: &str, text: &str) -> String {
        let txn = format!("{}-{}", run_tag(), self.txn.fetch_add(1, Ordering::Relaxed));
        let path = format!("/rooms/{}/send/m.room.message/{}", seg(room), seg(&txn));
        let answer = self.api(reqwest::Method::PUT, &path, Some(json!({"msgtype": "m.text", "body": text}))).await;
        answer["event_id"].as_str().unwrap().to_string()
    }

    /// `who`'s membership in `room` as the room's state says (`None` before any).
    async fn membership(&self, room: &str, who: &str) -> Option<String> {
        let url = format!("{}/_matrix/client/v3/rooms/{}/state/m.room.member/{}", self.base, seg(room), seg(who));
        let resp = self.http.get(url).bearer_auth(&self.token).timeout(Duration::from_secs(30)).send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let state: Value = resp.json().await.ok()?;
        state["membership"].as_str().map(str::to_string)
    }

    /// The room's messages by `sender`, oldest first (the latest 100 of the room).
    async fn messages_by(&self, room: &str, sender: &str) -> Vec<Value> {
        let path = format!("/rooms/{}/messages?dir=b&limit=100", seg(room));
        let answer = self.api(reqwest::Method::GET, &path, None).await;
        let mut out: Vec<Value> = answer["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "m.room.message" && e["sender"] == sender)
            .cloned()
            .collect();
        out.reverse();
        out
    }

    /// Waits until `sender` has at least `n` messages in `room`; returns them, oldest first.
    async fn wait_messages_by(&self, room: &str, sender: &str, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let got = self.messages_by(room, sender).await;
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {n} messages by {sender} in {room}; have {got:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

fn config(base: &str, bot: &str, bot_password: &str, person: &str) -> Config {
    let text = format!(
        "{{ channels: {{ matrix: {{ homeserver: '{base}', userId: '{bot}', password: '{bot_password}',
             allowFrom: ['{person}'], groups: {{ '*': {{ requireMention: true }} }} }} }} }}"
    );
    let env = |_: &str| None;
    let read = |_: &Path| Err("no files".to_string());
    let ctx = LoadContext {
        file_label: "t.json",
        config_dir: Path::new("/tmp"),
        state_dir: Path::new("/tmp/s"),
        env: &env,
        presets: &[],
        read_file: &read,
        stored: None,
    };
    load(&text, &ctx).unwrap_or_else(|e| panic!("{e:?}")).config
}

fn start(cfg: &Config, store: &Store, echo: &Echo) -> Channels {
    let acct = cfg.channels.accounts[0].clone();
    let Platform::Matrix(settings) = &acct.platform else { panic!() };
    let mx: Arc<dyn Channel> = Arc::new(MatrixChannel::new(&acct.account_id, settings, reqwest::Client::new()));
    let fast = Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(2),
        max_after_fatal: Duration::from_secs(5),
    };
    let channels = Channels::with_adapters(cfg, store.clone(), vec![(mx, acct)]).with_backoff(fast);
    channels.start(Arc::new(echo.clone()));
    channels
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Asserts one bot reply: an `m.notice` saying `body` in plain text and `html` in HTML,
/// replying to the event `to`.
fn assert_reply(reply: &Value, body: &str, html: &str, to: &str) {
    let c = &reply["content"];
    assert_eq!(c["msgtype"], "m.notice", "{reply}");
    assert_eq!(c["body"], body, "{reply}");
    assert_eq!(c["format"], "org.matrix.custom.html", "{reply}");
    assert!(c["formatted_body"].as_str().unwrap_or_default().contains(html), "{reply}");
    assert_eq!(c["m.relates_to"]["m.in_reply_to"]["event_id"], to, "{reply}");
}

#[tokio::test]
async fn answers_dms_and_mentions_in_rooms_not_history_and_resumes_after_a_restart() {
    let Some((base, secret)) = server() else { return };
    let http = reqwest::Client::new();
    let tag = run_tag();
    let bot_local = format!("claw{tag}");
    let person_local = format!("ada{tag}");
    let bot = register(&http, &base, &secret, &bot_local, "bot-pass-1").await;
    let who = register(&http, &base, &secret, &person_local, "ada-pass-1").await;
    let ada = Person::login(&http, &base, &person_local, "ada-pass-1").await;

    let dm = ada.create_room(true, &bot).await;
    let room = ada.create_room(false, &bot).await;
    ada.say(&dm, "an old message from before clawline").await;
    ada.say(&room, &format!("{bot_local}: an old question from before clawline")).await;

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    let cfg = config(&base, &bot, "bot-pass-1", &who);
    let echo = Echo::default();
    let channels = start(&cfg, &store, &echo);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !(ada.membership(&dm, &bot).await.as_deref() == Some("join")
        && ada.membership(&room, &bot).await.as_deref() == Some("join"))
    {
        let s = &channels.status()[0].status;
        assert!(tokio::time::Instant::now() < deadline, "clawline never joined both rooms: {s:?}");
        tokio::time::sleep(POLL).await;
    }
    until("the first sync", || channels.status()[0].status.state == ConnState::Connected).await;
    assert_eq!(channels.status()[0].status.identity.as_deref(), Some(bot.as_str()));

    // A DM is answered, replying to the message.
    let question = ada.say(&dm, "hello <there>").await;
    let replies = ada.wait_messages_by(&dm, &bot, 1).await;
    assert_reply(&replies[0], "re: hello <there>", "re: <b>hello &lt;there&gt;</b>", &question);

    // In the room, only the message naming the bot is answered.
    ada.say(&room, "just talking among ourselves").await;
    let addressed = ada.say(&room, &format!("{bot_local}: are you there?")).await;
    let replies = ada.wait_messages_by(&room, &bot, 1).await;
    assert_reply(&replies[0], "re: are you there?", "<b>are you there?</b>", &addressed);
    ada.say(&room, "more talk, nobody named").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(ada.messages_by(&room, &bot).await.len(), 1, "unaddressed room messages are not answered");
    assert_eq!(ada.messages_by(&dm, &bot).await.len(), 1, "history is not answered");
    let asks = echo.asks();
    assert_eq!(asks.len(), 2, "only the DM and the mention were asked: {asks:?}");
    assert_eq!(asks[0].session_key, "agent:main:main", "the DM is direct: {asks:?}");
    assert_eq!(asks[0].text, "hello <there>");
    assert!(asks[1].session_key.starts_with("agent:main:matrix:group:"), "the room is a group: {asks:?}");
    assert!(asks[1].text.ends_with(&format!("{bot_local}: are you there?")), "{asks:?}");
    channels.stop().await;

    // While clawline is down the person writes; a restart on the same store answers that and
    // asks nothing again. Which rooms are DMs comes back from the server (`m.direct`).
    let missed = ada.say(&dm, "sent while clawline was down").await;
    let echo2 = Echo::default();
    let again = start(&cfg, &store, &echo2);
    let replies = ada.wait_messages_by(&dm, &bot, 2).await;
    assert_reply(&replies[1], "re: sent while clawline was down", "<b>sent while clawline was down</b>", &missed);
    let later = ada.say(&room, &format!("{bot_local}: still there?")).await;
    let replies = ada.wait_messages_by(&room, &bot, 2).await;
    assert_reply(&replies[1], "re: still there?", "<b>still there?</b>", &later);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(ada.messages_by(&dm, &bot).await.len(), 2, "nothing in the DM was answered twice");
    assert_eq!(ada.messages_by(&room, &bot).await.len(), 2, "nothing in the room was answered twice");
    let asks = echo2.asks();
    assert_eq!(asks.len(), 2, "only what came after the first run was asked: {asks:?}");
    assert_eq!(
        (asks[0].session_key.as_str(), asks[0].text.as_str()),
        ("agent:main:main", "sent while clawline was down")
    );
    assert!(asks[1].session_key.starts_with("agent:main:matrix:group:"), "{asks:?}");
    again.stop().await;
}
