//! The channel layer with the Telegram adapter against the Bot API twin: pairing, groups,
//! topics, formatting, and the faults that make other gateways go deaf or answer twice
//! (dropped and stalled polls, malformed answers, redeliveries, 429s and 5xx, restarts).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clawline_channels::telegram::TelegramChannel;
use clawline_channels::{Ask, Backoff, Channel, Channels, ConnState, Media, Progress, Reply, Responder};
use clawline_core::config::channels::Platform;
use clawline_core::config::{Config, LoadContext, load};
use clawline_store::Store;
use clawline_testkit::telegram_server::TelegramServer;
use futures_util::future::BoxFuture;

const TOKEN: &str = "123456789:AAEhBP0av28fWkDJT3w_T0mQ-h3kYhkkA0s";
const OWNER: i64 = 1001;
const STRANGER: i64 = 2002;

/// An answer written piece by piece, one piece every so often.
type Stream = (Vec<String>, Duration);

/// Answers "re: <text>", counting every ask by its idempotency key.
/// With `stream` set, it writes that answer instead, piece by piece, reporting progress.
#[derive(Default, Clone)]
struct Echo {
    asks: Arc<Mutex<Vec<Ask>>>,
    delay: Arc<Mutex<Duration>>,
    stream: Arc<Mutex<Option<Stream>>>,
    /// With `reply` set, it answers that.
    reply: Arc<Mutex<Option<Reply>>>,
}

impl Responder for Echo {
    fn respond(&self, ask: Ask, progress: Progress) -> BoxFuture<'static, Reply> {
        self.asks.lock().unwrap().push(ask.clone());
        let delay = *self.delay.lock().unwrap();
        let stream = self.stream.lock().unwrap().clone();
        let fixed = self.reply.lock().unwrap().clone();
        Box::pin(async move {
            if let Some(r) = fixed {
                return r;
            }
            if let Some((pieces, every)) = stream {
                for p in &pieces {
                    progress.push(p);
                    tokio::time::sleep(every).await;
                }
                return Reply::Text(pieces.concat());
            }
            tokio::time::sleep(delay).await;
            let said = ask.text.rsplit(": ").next().unwrap_or_default().to_string();
            Reply::Text(format!("re: **{said}**"))
        })
    }
}

fn config(root: &str, extra: &str) -> Config {
    let allow = if extra.contains("allowFrom") { String::new() } else { format!("allowFrom: [{OWNER}],") };
    let text = format!(
        "{{ channels: {{ telegram: {{ botToken: '{TOKEN}', apiRoot: '{root}', pollTimeoutSeconds: 1, {allow} {extra} }} }} }}"
    );
    let env = |_: &str| None;
    let read = |_: &Path| Err("no files".to_string());
    let ctx = LoadContext {
        file_label: "test.json",
        config_dir: Path::new("/tmp"),
        state_dir: Path::new("/tmp/state"),
        env: &env,
        presets: &[],
        read_file: &read,
        stored: None,
    };
    load(&text, &ctx).unwrap_or_else(|e| panic!("{e:?}")).config
}

struct Rig {
    tg: TelegramServer,
    store: Store,
    channels: Channels,
    echo: Echo,
    _dir: tempfile::TempDir,
}

fn fast() -> Backoff {
    Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        max_after_fatal: Duration::from_millis(500),
    }
}

fn build(cfg: &Config, store: &Store) -> Channels {
    let acct = cfg.channels.accounts[0].clone();
    let Platform::Telegram(settings) = &acct.platform else { panic!("{acct:?}") };
    let tg: Arc<dyn Channel> = Arc::new(
        TelegramChannel::new(&acct.account_id, settings, reqwest::Client::new())
            .with_stall_margin(Duration::from_millis(700)),
    );
    Channels::with_adapters(cfg, store.clone(), vec![(tg, acct)]).with_backoff(fast())
}

async fn rig(extra: &str) -> Rig {
    let tg = TelegramServer::start(TOKEN).await;
    tg.set_username("claw_bot");
    tg.add_private_chat(OWNER, "Olive", Some("olive"));
    tg.add_private_chat(STRANGER, "Sam", None);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    let cfg = config(&tg.api_root(), extra);
    let channels = build(&cfg, &store);
    let echo = Echo::default();
    channels.start(Arc::new(echo.clone()));
    Rig { tg, store, channels, echo, _dir: dir }
}

/// Replies grouped by the message they quote.
fn replies_by_quote(tg: &TelegramServer) -> HashMap<i64, usize> {
    let mut out = HashMap::new();
    for s in tg.sent() {
        if let Some(r) = s.reply_to_message_id {
            *out.entry(r).or_default() += 1;
        }
    }
    out
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_allowed_dm_is_answered_once_in_html_quoting_it() {
    let r = rig("").await;
    let (_, mid) = r.tg.push_text(OWNER, OWNER, "hello <world> & co");
    let sent = r.tg.wait_sent(1, Duration::from_secs(10)).await;
    assert_eq!(sent[0].chat_id, OWNER);
    assert_eq!(sent[0].parse_mode.as_deref(), Some("HTML"));
    assert_eq!(sent[0].plain, "re: hello <world> & co");
    assert!(sent[0].text.as_deref().unwrap().contains("<b>hello &lt;world&gt; &amp; co</b>"), "{sent:?}");
    assert_eq!(sent[0].reply_to_message_id, Some(mid));
    assert!(r.tg.chat_actions().iter().any(|a| a.chat_id == OWNER), "typing shown while answering");
    let asks = r.echo.asks.lock().unwrap().clone();
    assert_eq!(asks.len(), 1);
    assert_eq!(asks[0].session_key, "agent:main:main", "DMs share the main session by default");
    assert_eq!(asks[0].agent_id, "main");
    // The twin records the send before the gateway has read the answer and counted it.
    until("the reply recorded as sent", || r.channels.status()[0].status.outbound == 1).await;
    let status = r.channels.status();
    assert_eq!(status[0].status.state, ConnState::Connected);
    assert_eq!(status[0].status.identity.as_deref(), Some("@claw_bot"));
    assert_eq!((status[0].status.inbound, status[0].status.outbound), (1, 1));
    r.channels.stop().await;
}

#[tokio::test]
async fn a_stranger_gets_one_code_and_is_answered_after_approval() {
    let r = rig("").await;
    r.tg.push_text(STRANGER, STRANGER, "hi, who are you?");
    let sent = r.tg.wait_sent(1, Duration::from_secs(10)).await;
    let code = r.store.channel_pairing_requests(Some("telegram")).await.unwrap()[0].code.clone();
    assert!(sent[0].plain.contains(&code), "{}", sent[0].plain);
    assert!(sent[0].plain.contains("clawline pairing approve telegram"));
    // Asking again does not send another code.
    r.tg.push_text(STRANGER, STRANGER, "hello??");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(r.tg.sent().len(), 1);
    assert!(r.echo.asks.lock().unwrap().is_empty(), "the agent never saw a stranger's message");

    let approved =
        clawline_channels::pairing::approve(&r.store, "telegram", &code, None, true, true).await.unwrap().unwrap();
    assert!(approved.entry.owner, "the first approval bootstraps the owner");
    let sent = r.tg.wait_sent(2, Duration::from_secs(10)).await;
    assert_eq!(sent[1].chat_id, STRANGER);
    assert!(sent[1].plain.contains("approved"));
    r.tg.push_text(STRANGER, STRANGER, "now?");
    let sent = r.tg.wait_sent(3, Duration::from_secs(10)).await;
    assert_eq!(sent[2].plain, "re: now?");
    r.channels.stop().await;
}

#[tokio::test]
async fn groups_answer_only_when_listed_and_mentioned_and_topics_keep_their_thread() {
    let r = rig("groups: { '-100500': { requireMention: true } }, mentionPatterns: ['\\\\bclaw\\\\b']").await;
    r.tg.add_supergroup(-100500, "Team", true);
    r.tg.add_topic(-100500, 77, "Ops");
    r.tg.add_supergroup(-100600, "Elsewhere", false);
    r.tg.push_text(-100600, OWNER, "@claw_bot hello from an unlisted group");
    r.tg.push_text(-100500, OWNER, "just chatting");
    r.tg.push_text_in_topic(-100500, 77, OWNER, "@claw_bot status please");
    let sent = r.tg.wait_sent(1, Duration::from_secs(10)).await;
    assert_eq!((sent[0].chat_id, sent[0].message_thread_id), (-100500, Some(77)));
    assert_eq!(sent[0].plain, "re: @claw_bot status please");
    r.tg.push_text(-100500, OWNER, "hey Claw, ping");
    let sent = r.tg.wait_sent(2, Duration::from_secs(10)).await;
    assert_eq!(sent[1].plain, "re: hey Claw, ping");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(r.tg.sent().len(), 2, "the unlisted group and the unaddressed message got nothing");
    let journal = r.store.recent_inbound("telegram", "default", 10).await.unwrap();
    let states: Vec<_> = journal.iter().rev().map(|j| j.state).collect();
    use clawline_store::InboundState::*;
    assert_eq!(states, [Dropped, Context, Answered, Answered], "unlisted group dropped, unaddressed kept as context");
    let keys: Vec<String> = r.echo.asks.lock().unwrap().iter().map(|a| a.session_key.clone()).collect();
    assert_eq!(keys, ["agent:main:telegram:group:-100500:topic:77", "agent:main:telegram:group:-100500"]);
    let asked = r.echo.asks.lock().unwrap()[0].text.clone();
    assert!(asked.starts_with("Olive (@olive): "), "group messages say who spoke: {asked}");
    // The unaddressed message was kept as context: the next answer in the same chat (not the
    // topic) sees it, once.
    let asked = r.echo.asks.lock().unwrap()[1].text.clone();
    assert_eq!(
        asked,
        "[Earlier in this chat, not addressed to you:]\nOlive (@olive): just chatting\n[Now, to you:]\nOlive (@olive): hey Claw, ping"
    );
    r.tg.push_text(-100500, OWNER, "claw again");
    r.tg.wait_sent(3, Duration::from_secs(10)).await;
    assert_eq!(r.echo.asks.lock().unwrap()[2].text, "Olive (@olive): claw again", "context is shown once");
    r.channels.stop().await;
}

#[tokio::test]
async fn dropped_malformed_and_duplicated_polls_lose_nothing_and_answer_once() {
    let r = rig("").await;
    r.tg.wait_polls(1, Duration::from_secs(5)).await;
    r.tg.drop_next_polls(2);
    r.tg.push_text(OWNER, OWNER, "one");
    r.tg.wait_sent(1, Duration::from_secs(10)).await;
    r.tg.malformed_next_poll();
    r.tg.push_text(OWNER, OWNER, "two");
    r.tg.wait_sent(2, Duration::from_secs(10)).await;
    r.tg.duplicate_next_poll();
    r.tg.push_text(OWNER, OWNER, "three");
    r.tg.wait_sent(3, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let by_quote = replies_by_quote(&r.tg);
    assert_eq!(by_quote.len(), 3);
    assert!(by_quote.values().all(|n| *n == 1), "{by_quote:?}");
    let s = &r.channels.status()[0].status;
    assert!(s.reconnects >= 2, "{s:?}");
    assert_eq!(s.state, ConnState::Connected);
    assert!(s.duplicates >= 1 || s.inbound == 3, "{s:?}");
    r.channels.stop().await;
}

#[tokio::test]
async fn a_stalled_open_poll_is_replaced_and_status_says_so() {
    let r = rig("").await;
    r.tg.wait_polls(1, Duration::from_secs(5)).await;
    r.tg.stall_polls(true);
    until("the watchdog to notice", || {
        r.channels.status()[0].status.last_error.as_deref().is_some_and(|e| e.contains("stalled"))
    })
    .await;
    assert_ne!(
        r.channels.status()[0].status.state,
        ConnState::Connected,
        "a stalled connection is not reported healthy"
    );
    r.tg.stall_polls(false);
    r.tg.push_text(OWNER, OWNER, "are you there?");
    let sent = r.tg.wait_sent(1, Duration::from_secs(10)).await;
    assert_eq!(sent[0].plain, "re: are you there?");
    until("connected again", || r.channels.status()[0].status.state == ConnState::Connected).await;
    r.channels.stop().await;
}

#[tokio::test]
async fn rate_limits_and_server_errors_delay_replies_but_never_drop_or_double_them() {
    let r = rig("textChunkLimit: 200").await;
    r.tg.fail_next("sendMessage", 429, Some(1));
    r.tg.fail_next("sendMessage", 502, None);
    let long = (0..30).map(|i| format!("word{i}")).collect::<Vec<_>>().join(" ").repeat(3);
    r.tg.push_text(OWNER, OWNER, &long);
    let pieces = (format!("re: **{long}**").len() / 200) + 1;
    let sent = r.tg.wait_sent(pieces, Duration::from_secs(20)).await;
    let joined: String = sent.iter().map(|s| s.plain.clone()).collect::<Vec<_>>().join(" ");
    assert!(joined.contains("word0") && joined.contains("word29"));
    assert!(sent.iter().all(|s| s.plain.chars().count() <= 200));
    assert_eq!(sent.iter().filter(|s| s.reply_to_message_id.is_some()).count(), 1, "only the first piece quotes");
    let statuses: Vec<u16> = r.tg.requests().iter().filter(|c| c.method == "sendMessage").map(|c| c.status).collect();
    assert_eq!(&statuses[..2], &[429, 502]);
    let s = &r.channels.status()[0].status;
    assert_eq!((s.send_failures, s.dead_letters), (2, 0));
    r.channels.stop().await;
}

#[tokio::test]
async fn a_chat_that_blocked_the_bot_goes_to_the_dead_letters_and_others_carry_on() {
    let r = rig("allowFrom: ['*'], dmPolicy: 'open'").await;
    r.tg.block_bot(STRANGER);
    r.tg.push_text(STRANGER, STRANGER, "bye");
    r.tg.push_text(OWNER, OWNER, "still here");
    let sent = r.tg.wait_sent(1, Duration::from_secs(10)).await;
    assert_eq!(sent[0].chat_id, OWNER);
    until("the dead letter", || r.channels.status()[0].status.dead_letters == 1).await;
    let dead = r.store.dead_outbound(Some("telegram"), None, 10).await.unwrap();
    assert!(dead[0].last_error.as_deref().unwrap().contains("403"), "{dead:?}");
    r.channels.stop().await;
}

#[tokio::test]
async fn a_restart_resumes_open_messages_without_replaying_answered_ones() {
    let tg = TelegramServer::start(TOKEN).await;
    tg.set_username("claw_bot");
    tg.add_private_chat(OWNER, "Olive", None);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    let cfg = config(&tg.api_root(), "");

    // First life: answers slowly; stopped after "first" is answered and while "second" is being written.
    let slow = Echo::default();
    let first = build(&cfg, &store);
    first.start(Arc::new(slow.clone()));
    tg.push_text(OWNER, OWNER, "first");
    tg.wait_sent(1, Duration::from_secs(10)).await;
    *slow.delay.lock().unwrap() = Duration::from_secs(30);
    tg.push_text(OWNER, OWNER, "second");
    until("the second ask", || slow.asks.lock().unwrap().len() == 2).await;
    first.stop().await;

    // Second life: the journal holds "second" as running; it is asked again with the same key.
    let echo = Echo::default();
    let second = build(&cfg, &store);
    second.start(Arc::new(echo.clone()));
    let sent = tg.wait_sent(2, Duration::from_secs(10)).await;
    assert_eq!(sent[1].plain, "re: second");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(tg.sent().len(), 2, "nothing answered twice");
    let asks = echo.asks.lock().unwrap().clone();
    assert_eq!(asks.len(), 1, "\"first\" was not replayed: {asks:?}");
    assert_eq!(asks[0].idempotency_key, slow.asks.lock().unwrap()[1].idempotency_key);
    second.stop().await;
}

#[tokio::test]
async fn webhook_mode_checks_the_secret_and_journals_before_answering() {
    let r = rig("webhookUrl: 'https://bot.example/tg', webhookSecret: 'hook_secret-1'").await;
    let path = r.channels.webhook_paths()[0].clone();
    assert_eq!(path, "/channels/telegram/default/webhook");
    until("setWebhook and getMe", || r.channels.status()[0].status.identity.is_some()).await;
    let update = serde_json::json!({"update_id": 900, "message": {"message_id": 5, "date": 1,
        "chat": {"id": OWNER, "type": "private"}, "from": {"id": OWNER, "first_name": "Olive"}, "text": "via hook"}});
    let body = serde_json::to_vec(&update).unwrap();
    let mut headers = http::HeaderMap::new();
    assert_eq!(r.channels.webhook(&path, &headers, &body).await.map(|w| w.status), Some(401));
    headers.insert("x-telegram-bot-api-secret-token", "wrong".parse().unwrap());
    assert_eq!(r.channels.webhook(&path, &headers, &body).await.map(|w| w.status), Some(401));
    headers.insert("x-telegram-bot-api-secret-token", "hook_secret-1".parse().unwrap());
    assert_eq!(r.channels.webhook(&path, &headers, &body).await.map(|w| w.status), Some(200));
    assert_eq!(
        r.channels.webhook(&path, &headers, &body).await.map(|w| w.status),
        Some(200),
        "a retry is acknowledged"
    );
    assert_eq!(r.channels.webhook(&path, &headers, b"{not json").await.map(|w| w.status), Some(400));
    let sent = r.tg.wait_sent(1, Duration::from_secs(10)).await;
    assert_eq!(sent[0].plain, "re: via hook");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(r.tg.sent().len(), 1, "the redelivered update was answered once");
    assert_eq!(r.channels.status()[0].status.mode, "webhook");
    r.channels.stop().await;
}

#[tokio::test]
async fn a_long_answer_streams_into_one_draft_that_becomes_the_reply() {
    let r = rig("").await;
    let pieces: Vec<String> = (0..10).map(|i| format!("Sentence number {i} of a long answer, still going. ")).collect();
    let answer = pieces.concat();
    *r.echo.stream.lock().unwrap() = Some((pieces, Duration::from_millis(400)));
    let (_, mid) = r.tg.push_text(OWNER, OWNER, "tell me a lot");
    until("the final edit", || r.tg.edits().iter().any(|e| e.plain.as_deref() == Some(answer.trim_end()))).await;
    // Give a duplicate send the time it would need to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = r.tg.sent();
    assert_eq!(sent.len(), 1, "one message: the draft, edited into the answer: {sent:?}");
    assert_eq!(sent[0].reply_to_message_id, Some(mid));
    assert!(sent[0].plain.ends_with('…') && sent[0].plain.chars().count() >= 200, "{:?}", sent[0].plain);
    let edits = r.tg.edits();
    assert!(edits.iter().all(|e| e.message_id == sent[0].message_id && e.chat_id == OWNER), "{edits:?}");
    assert!(edits.len() >= 2, "at least one growing preview before the answer: {edits:?}");
    let previews = &edits[..edits.len() - 1];
    assert!(previews.iter().all(|e| e.plain.as_deref().is_some_and(|p| p.ends_with('…'))), "{previews:?}");
    assert_eq!(edits.last().unwrap().parse_mode.as_deref(), Some("HTML"));
    assert_eq!(
        r.tg.message(OWNER, sent[0].message_id).unwrap()["text"].as_str(),
        Some(answer.trim_end()),
        "the chat holds the whole answer"
    );

    // A short answer never makes a draft: one plain send, no edits.
    *r.echo.stream.lock().unwrap() = Some((vec!["Short ".into(), "one.".into()], Duration::from_millis(100)));
    let before = r.tg.edits().len();
    r.tg.push_text(OWNER, OWNER, "and briefly?");
    let sent = r.tg.wait_sent(2, Duration::from_secs(10)).await;
    assert_eq!(sent[1].plain, "Short one.");
    assert_eq!(r.tg.edits().len(), before);
    r.channels.stop().await;
}

#[tokio::test]
async fn streaming_off_sends_the_answer_once_without_a_draft() {
    let r = rig("streaming: 'off',").await;
    let pieces: Vec<String> =
        (0..6).map(|i| format!("Part {i} of an answer long enough to be previewed otherwise. ")).collect();
    let answer = pieces.concat();
    *r.echo.stream.lock().unwrap() = Some((pieces, Duration::from_millis(100)));
    r.tg.push_text(OWNER, OWNER, "go");
    let sent = r.tg.wait_sent(1, Duration::from_secs(10)).await;
    assert_eq!(sent[0].plain, answer.trim_end());
    assert!(r.tg.edits().is_empty());
    r.channels.stop().await;
}

#[tokio::test]
async fn a_pressed_inline_button_is_acknowledged_and_answered_as_a_message() {
    let r = rig("").await;
    // A message of the bot's with buttons (as an approval prompt would be).
    let url = format!("{}/bot{TOKEN}/sendMessage", r.tg.api_root());
    let keyboard = serde_json::json!({"inline_keyboard": [[{"text": "Yes", "callback_data": "approve:7"},
                                                           {"text": "No", "callback_data": "deny:7"}]]});
    let sent: serde_json::Value = reqwest::Client::new()
        .post(url)
        .json(&serde_json::json!({"chat_id": OWNER, "text": "Run it?", "reply_markup": keyboard}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let prompt = sent["result"]["message_id"].as_i64().unwrap();
    let query = r.tg.push_callback_query(OWNER, OWNER, prompt, "approve:7");
    until("the answer to the press", || r.tg.sent().len() == 2).await;
    let asks = r.echo.asks.lock().unwrap().clone();
    assert_eq!(asks.len(), 1);
    assert_eq!(asks[0].text, "[pressed the button \"Yes\" (data: approve:7)]");
    assert_eq!(asks[0].session_key, "agent:main:main");
    let reply = &r.tg.sent()[1];
    assert_eq!(reply.reply_to_message_id, Some(prompt), "the answer quotes the prompt");
    until("the callback answer", || r.tg.callback_answers().iter().any(|a| a.callback_query_id == query)).await;

    // The same press delivered again is not answered twice.
    r.tg.duplicate_next_poll();
    r.tg.push_text(OWNER, OWNER, "after");
    r.tg.wait_sent(3, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(r.echo.asks.lock().unwrap().len(), 2, "the press once, then the text");
    assert_eq!(r.tg.sent().len(), 3);
    r.channels.stop().await;
}

#[tokio::test]
async fn photos_and_documents_are_downloaded_for_the_agent_within_the_size_limit() {
    let r = rig("mediaMaxMb: 1,").await;
    let photo = vec![0xffu8, 0xd8, 0xff, 0xe0, 1, 2, 3];
    let id = r.tg.register_file(&photo, "photo.jpg");
    r.tg.push_photo(OWNER, OWNER, &id, Some("what is this?"));
    r.tg.wait_sent(1, Duration::from_secs(10)).await;
    let ask = r.echo.asks.lock().unwrap()[0].clone();
    assert_eq!(ask.text, "what is this?", "the file is handed over, not described");
    assert_eq!(ask.files.len(), 1);
    assert_eq!((ask.files[0].kind.as_str(), ask.files[0].bytes.as_slice()), ("photo", photo.as_slice()));
    assert!(r.tg.requests().iter().any(|c| c.method == "getFile"));

    // Over mediaMaxMb: not downloaded, and the agent is told why.
    let big = r.tg.register_file(&vec![7u8; 1024 * 1024 + 1], "big.pdf");
    r.tg.push_document(OWNER, OWNER, &big, None);
    r.tg.wait_sent(2, Duration::from_secs(10)).await;
    let ask = r.echo.asks.lock().unwrap()[1].clone();
    assert!(ask.files.is_empty());
    assert!(
        ask.text.contains("could not be downloaded: it is larger than the 1 MB limit (mediaMaxMb)"),
        "{}",
        ask.text
    );
    r.channels.stop().await;
}

#[tokio::test]
async fn files_in_an_answer_are_uploaded_after_its_text() {
    let r = rig("").await;
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("chart.png");
    std::fs::write(&chart, vec![0x89u8; 2048]).unwrap();
    let media = vec![
        Media { kind: "photo".into(), path: Some(chart.display().to_string()), url: None, name: "chart.png".into() },
        Media {
            kind: "document".into(),
            path: None,
            url: Some("https://files.test/r.pdf".into()),
            name: "r.pdf".into(),
        },
        Media { kind: "document".into(), path: Some("/nonexistent/x.txt".into()), url: None, name: "x.txt".into() },
    ];
    *r.echo.reply.lock().unwrap() = Some(Reply::WithMedia("Here is the chart.".into(), media));
    let (_, mid) = r.tg.push_text(OWNER, OWNER, "chart please");
    let sent = r.tg.wait_sent(3, Duration::from_secs(10)).await;
    assert_eq!((sent[0].method.as_str(), sent[0].plain.as_str()), ("sendMessage", "Here is the chart."));
    assert_eq!(sent[0].reply_to_message_id, Some(mid));
    assert_eq!(sent[1].method, "sendPhoto");
    assert_eq!((sent[1].upload_len, sent[1].upload_name.as_deref()), (Some(2048), Some("chart.png")));
    assert_eq!(sent[2].method, "sendDocument");
    assert_eq!(sent[2].file_ref.as_deref(), Some("https://files.test/r.pdf"));
    // The missing file cannot be sent and is a dead letter, not a retry loop.
    until("the dead letter", || r.channels.status()[0].status.dead_letters == 1).await;
    assert_eq!(r.tg.sent().len(), 3);
    r.channels.stop().await;
}

#[tokio::test]
async fn an_account_stops_starts_and_logs_out_without_losing_or_repeating() {
    let r = rig("").await;
    r.tg.push_text(OWNER, OWNER, "one");
    r.tg.wait_sent(1, Duration::from_secs(10)).await;
    assert!(r.channels.stop_account("telegram", None).await.unwrap());
    assert!(!r.channels.stop_account("telegram", Some("default")).await.unwrap(), "already stopped");
    assert_eq!(r.channels.status()[0].status.state, ConnState::Stopped);
    r.tg.push_text(OWNER, OWNER, "two, while stopped");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(r.tg.sent().len(), 1, "a stopped account neither reads nor answers");
    assert!(r.channels.start_account("telegram", None).unwrap());
    assert!(!r.channels.start_account("telegram", None).unwrap(), "already running");
    let sent = r.tg.wait_sent(2, Duration::from_secs(10)).await;
    assert_eq!(sent[1].plain, "re: two, while stopped");

    r.channels.logout_account("telegram", None).await.unwrap();
    assert_eq!(r.store.channel_cursor("telegram", "default").await.unwrap(), None, "the offset is forgotten");
    r.channels.start_account("telegram", None).unwrap();
    r.tg.push_text(OWNER, OWNER, "three");
    let sent = r.tg.wait_sent(3, Duration::from_secs(10)).await;
    assert_eq!(sent[2].plain, "re: three");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(r.tg.sent().len(), 3, "nothing answered again after the logout");
    assert!(matches!(r.channels.stop_account("slack", None).await, Err(clawline_channels::ControlError::Unknown(_))));
    r.channels.stop().await;
}
