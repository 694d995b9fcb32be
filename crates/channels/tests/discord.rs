//! The Discord adapter against the Gateway + REST twin: Identify with the message-content
//! intent, heartbeats, DMs and guild mentions answered with mentions disabled, nonces that make
//! a resend harmless, and the faults that leave other bots deaf: dropped sockets, zombied
//! connections (no heartbeat ACK), op 7 and op 9, duplicated dispatches, REST 429s and 5xx,
//! and a bad token.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clawline_channels::discord::DiscordChannel;
use clawline_channels::{Ask, Backoff, Channel, Channels, ConnState, Media, Progress, Reply, Responder};
use clawline_core::config::channels::Platform;
use clawline_core::config::{Config, LoadContext, load};
use clawline_store::Store;
use clawline_testkit::discord_server::{DiscordServer, Fault, Inbound};
use futures_util::future::BoxFuture;

const TOKEN: &str = "MTE4MDAwMDAwMDAwMDAwMDAwMQ.GabcDe.fake-signature-part-for-tests";

#[derive(Default, Clone)]
struct Echo {
    asks: Arc<Mutex<Vec<Ask>>>,
    /// With `reply` set, it answers that.
    reply: Arc<Mutex<Option<Reply>>>,
}

impl Responder for Echo {
    fn respond(&self, ask: Ask, _progress: Progress) -> BoxFuture<'static, Reply> {
        self.asks.lock().unwrap().push(ask.clone());
        if let Some(r) = self.reply.lock().unwrap().clone() {
            return Box::pin(async move { r });
        }
        let said = ask.text.rsplit("> ").next().unwrap_or_default().rsplit(": ").next().unwrap_or_default().to_string();
        Box::pin(async move { Reply::Text(format!("re: {said} @everyone")) })
    }
}

fn config_groups(api: &str, token: &str, groups: &str) -> Config {
    let text = format!(
        "{{ channels: {{ discord: {{ token: '{token}', baseUrl: '{api}', dmPolicy: 'open', allowFrom: ['*'],
             groups: {{ {groups} }} }} }} }}"
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

struct Rig {
    dc: DiscordServer,
    channels: Channels,
    echo: Echo,
    _dir: tempfile::TempDir,
}

async fn rig_with(token: &str) -> Rig {
    rig_groups(token, "'*': { requireMention: true }").await
}

async fn rig_groups(token: &str, groups: &str) -> Rig {
    let dc = DiscordServer::start(TOKEN).await;
    dc.set_heartbeat_interval(Duration::from_millis(300));
    dc.add_guild(500, "guild");
    dc.add_channel(500, 600, "general");
    dc.add_user(700, "ada");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    let cfg = config_groups(&dc.api_url(), token, groups);
    let acct = cfg.channels.accounts[0].clone();
    let Platform::Discord(settings) = &acct.platform else { panic!() };
    let adapter: Arc<dyn Channel> = Arc::new(DiscordChannel::new(&acct.account_id, settings, reqwest::Client::new()));
    let fast = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        max_after_fatal: Duration::from_secs(30),
    };
    let channels = Channels::with_adapters(&cfg, store, vec![(adapter, acct)]).with_backoff(fast);
    let echo = Echo::default();
    channels.start(Arc::new(echo.clone()));
    Rig { dc, channels, echo, _dir: dir }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn dms_and_guild_mentions_are_answered_once_with_mentions_disabled() {
    let r = rig_with(TOKEN).await;
    r.dc.wait_ready(Duration::from_secs(10)).await;
    let ident = r.dc.identifies();
    assert_eq!(ident[0].intents.unwrap_or(0) & (1 << 15), 1 << 15, "the message-content intent is asked for");
    let (dm, asked) = r.dc.push_dm(700, "hello");
    let sent = r.dc.wait_sent(1, Duration::from_secs(10)).await;
    assert_eq!((sent[0].channel_id, sent[0].reply_to), (dm, Some(asked)));
    assert!(sent[0].content.starts_with("re: hello @\u{200b}everyone"), "{:?}", sent[0].content);
    assert_eq!(sent[0].allowed_mentions.as_ref().unwrap()["parse"], serde_json::json!([]));
    assert!(sent[0].enforce_nonce && sent[0].nonce.is_some());

    r.dc.push_guild_message(600, 700, "just chatting", false, &[]);
    r.dc.push_guild_message(600, 700, "help me", true, &[]);
    let sent = r.dc.wait_sent(2, Duration::from_secs(10)).await;
    assert_eq!(sent[1].channel_id, 600);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(r.dc.sent().len(), 2, "the unaddressed guild message got nothing");
    let keys: Vec<String> = r.echo.asks.lock().unwrap().iter().map(|a| a.session_key.clone()).collect();
    assert_eq!(keys[1], "agent:main:discord:channel:600");
    until("heartbeats at the interval Hello named", || r.dc.heartbeats().len() >= 2).await;
    r.channels.stop().await;
}

#[tokio::test]
async fn gateway_faults_resume_without_losing_or_doubling() {
    let r = rig_with(TOKEN).await;
    r.dc.wait_ready(Duration::from_secs(10)).await;
    r.dc.drop_connection();
    r.dc.push_dm(700, "one");
    r.dc.wait_sent(1, Duration::from_secs(10)).await;
    r.dc.zombify_connections();
    r.dc.push_dm(700, "two");
    r.dc.wait_sent(2, Duration::from_secs(10)).await;
    r.dc.send_reconnect();
    r.dc.push_dm(700, "three");
    r.dc.wait_sent(3, Duration::from_secs(10)).await;
    r.dc.duplicate_next_dispatch();
    r.dc.push_dm(700, "four");
    r.dc.wait_sent(4, Duration::from_secs(10)).await;
    // A session Discord will not resume starts over with Identify; what was said in between
    // is read back through REST (see messages_from_while_no_session_could_be_resumed_…).
    let before = r.dc.identifies().len();
    r.dc.invalidate_session(false);
    until("a fresh Identify", || r.dc.identifies().len() > before).await;
    r.dc.wait_ready(Duration::from_secs(10)).await;
    r.dc.push_dm(700, "five");
    r.dc.wait_sent(5, Duration::from_secs(20)).await;
    r.dc.fail_next("*", Fault::RateLimited(0.3));
    r.dc.fail_next("*", Fault::Status(502));
    r.dc.push_dm(700, "six");
    r.dc.wait_sent(6, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let texts: Vec<String> =
        r.dc.sent()
            .iter()
            .filter(|s| !s.deduped)
            .map(|s| s.content.split(' ').nth(1).unwrap_or_default().to_string())
            .collect();
    assert_eq!(texts, ["one", "two", "three", "four", "five", "six"]);
    assert!(!r.dc.resumes().is_empty(), "reconnects resumed the session");
    let s = &r.channels.status()[0].status;
    assert!(s.last_error.is_some() && s.reconnects >= 3, "{s:?}");
    assert_eq!(s.state, ConnState::Connected);
    r.channels.stop().await;
}

#[tokio::test]
async fn a_refused_token_is_a_failure_with_the_fix_not_a_retry_storm() {
    let r = rig_with("MTIz.bad.token").await;
    until("the refusal", || r.channels.status()[0].status.state == ConnState::Failed).await;
    let e = r.channels.status()[0].status.last_error.clone().unwrap();
    assert!(e.contains("channels.discord.token"), "{e}");
    r.channels.stop().await;
}

/// The words answered, in order, without the nonce-deduplicated resends.
fn answers(dc: &DiscordServer) -> Vec<String> {
    dc.sent()
        .iter()
        .filter(|s| !s.deduped)
        .map(|s| s.content.split(' ').nth(1).unwrap_or_default().to_string())
        .collect()
}

/// The statuses the twin answered Create Message with, in order.
fn create_statuses(dc: &DiscordServer) -> Vec<u16> {
    dc.requests().iter().filter(|q| q.route.as_deref() == Some("create_message")).map(|q| q.status).collect()
}

#[tokio::test]
async fn a_429_on_message_create_is_waited_out_and_the_reply_sent_once() {
    let r = rig_with(TOKEN).await;
    r.dc.wait_ready(Duration::from_secs(10)).await;
    r.dc.fail_next("create_message", Fault::RateLimited(0.3));
    r.dc.push_dm(700, "one");
    until("the reply recorded as sent", || r.channels.status()[0].status.outbound == 1).await;
    let s = r.channels.status()[0].status.clone();
    assert_eq!((s.outbound, s.send_failures, s.dead_letters), (1, 1, 0), "{s:?}");
    assert!(s.last_error.as_deref().is_some_and(|e| e.contains("rate limited")), "{s:?}");
    // A later reply is a fence: nothing of the first one is sent again before it.
    r.dc.push_dm(700, "two");
    until("the second reply recorded as sent", || r.channels.status()[0].status.outbound == 2).await;
    assert_eq!(answers(&r.dc), ["one", "two"]);
    assert_eq!(create_statuses(&r.dc), [429, 200, 200], "the refused call was retried once");
    assert_eq!(r.channels.status()[0].status.send_failures, 1);
    r.channels.stop().await;
}

#[tokio::test]
async fn a_5xx_on_message_create_is_retried_and_the_reply_sent_once() {
    let r = rig_with(TOKEN).await;
    r.dc.wait_ready(Duration::from_secs(10)).await;
    r.dc.fail_next("create_message", Fault::Status(500));
    r.dc.push_dm(700, "one");
    until("the reply recorded as sent", || r.channels.status()[0].status.outbound == 1).await;
    let s = r.channels.status()[0].status.clone();
    assert_eq!((s.outbound, s.send_failures, s.dead_letters), (1, 1, 0), "{s:?}");
    assert!(s.last_error.as_deref().is_some_and(|e| e.contains("500")), "{s:?}");
    r.dc.push_dm(700, "two");
    until("the second reply recorded as sent", || r.channels.status()[0].status.outbound == 2).await;
    assert_eq!(answers(&r.dc), ["one", "two"]);
    assert_eq!(create_statuses(&r.dc), [500, 200, 200], "the refused call was retried once");
    r.channels.stop().await;
}

#[tokio::test]
async fn a_garbled_gateway_frame_breaks_nothing_and_later_messages_are_answered_once() {
    let r = rig_with(TOKEN).await;
    r.dc.wait_ready(Duration::from_secs(10)).await;
    r.dc.push_dm(700, "one");
    until("the first reply", || answers(&r.dc) == ["one"]).await;
    r.dc.malformed_next_frame();
    r.dc.push_dm(700, "garbled");
    r.dc.push_dm(700, "two");
    r.dc.push_dm(700, "three");
    until("the replies after the garbled frame", || {
        let a = answers(&r.dc);
        a.contains(&"two".to_string()) && a.contains(&"three".to_string())
    })
    .await;
    r.dc.push_dm(700, "four");
    until("the fence reply", || answers(&r.dc).contains(&"four".to_string())).await;
    let a = answers(&r.dc);
    for word in ["one", "two", "three", "four"] {
        assert_eq!(a.iter().filter(|w| *w == word).count(), 1, "{word} answered once: {a:?}");
    }
    let beats = r.dc.heartbeats().len();
    until("heartbeats acknowledged after the garbled frame", || r.dc.heartbeats().iter().skip(beats).any(|h| h.acked))
        .await;
    until("connected", || r.channels.status()[0].status.state == ConnState::Connected).await;
    r.channels.stop().await;
}

#[tokio::test]
async fn a_garbled_dispatch_is_recovered_by_resuming_not_lost() {
    let r = rig_with(TOKEN).await;
    r.dc.wait_ready(Duration::from_secs(10)).await;
    r.dc.malformed_next_frame();
    r.dc.push_dm(700, "garbled");
    r.dc.push_dm(700, "after");
    until("both answered", || {
        let a = answers(&r.dc);
        a.contains(&"garbled".to_string()) && a.contains(&"after".to_string())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = answers(&r.dc);
    for word in ["garbled", "after"] {
        assert_eq!(a.iter().filter(|w| *w == word).count(), 1, "{word} answered once: {a:?}");
    }
    until("connected again", || r.channels.status()[0].status.state == ConnState::Connected).await;
    let s = r.channels.status()[0].status.clone();
    assert!(s.reconnects >= 1, "the garbled frame cost one resume: {s:?}");
    r.channels.stop().await;
}

#[tokio::test]
async fn attachments_are_downloaded_for_the_agent_and_files_in_answers_uploaded() {
    let r = rig_with(TOKEN).await;
    r.dc.wait_ready(Duration::from_secs(10)).await;
    let dm = r.dc.add_dm_channel(700);
    let picture: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
    r.dc.push_message(Inbound {
        channel_id: dm,
        author_id: 700,
        content: "look".into(),
        attachments: vec![("cat.png".into(), picture.clone())],
        ..Inbound::default()
    });
    r.dc.wait_sent(1, Duration::from_secs(10)).await;
    let ask = r.echo.asks.lock().unwrap()[0].clone();
    assert_eq!(ask.text, "look");
    assert_eq!(ask.files.len(), 1);
    assert_eq!((ask.files[0].name.as_deref(), ask.files[0].bytes.as_slice()), (Some("cat.png"), picture.as_slice()));

    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("chart.png");
    std::fs::write(&chart, vec![1u8; 2048]).unwrap();
    let media = vec![
        Media { kind: "photo".into(), path: Some(chart.display().to_string()), url: None, name: "chart.png".into() },
        Media {
            kind: "document".into(),
            path: None,
            url: Some("https://files.test/r.pdf".into()),
            name: "r.pdf".into(),
        },
    ];
    *r.echo.reply.lock().unwrap() = Some(Reply::WithMedia("Here it is.".into(), media));
    r.dc.push_dm(700, "chart please");
    let sent = r.dc.wait_sent(4, Duration::from_secs(10)).await;
    assert_eq!(sent[1].content, "Here it is.");
    assert_eq!(sent[2].files, [("chart.png".to_string(), 2048)], "{:?}", sent[2]);
    assert!(sent[2].content.is_empty());
    assert_eq!(sent[3].content, "https://files.test/r.pdf", "a URL goes as a link");
    let nonces: std::collections::HashSet<_> = sent.iter().map(|m| m.nonce.clone()).collect();
    assert_eq!(nonces.len(), 4, "each piece has its own nonce");
    r.channels.stop().await;
}

#[tokio::test]
async fn a_thread_is_its_own_conversation_under_its_channels_rules() {
    // Only channel 600 is listed, and there no mention is needed: its threads inherit that.
    let r = rig_groups(TOKEN, "'600': { requireMention: false }").await;
    r.dc.add_thread(500, 600, 650);
    r.dc.wait_ready(Duration::from_secs(10)).await;
    r.dc.add_thread(500, 600, 651);
    r.dc.push_thread_message(650, 700, "from the thread known at start", false, &[]);
    let sent = r.dc.wait_sent(1, Duration::from_secs(10)).await;
    assert_eq!(sent[0].channel_id, 650, "the answer stays in the thread");
    r.dc.push_thread_message(651, 700, "from a thread made later", false, &[]);
    let sent = r.dc.wait_sent(2, Duration::from_secs(10)).await;
    assert_eq!(sent[1].channel_id, 651);
    let keys: Vec<String> = r.echo.asks.lock().unwrap().iter().map(|a| a.session_key.clone()).collect();
    assert_eq!(keys, ["agent:main:discord:channel:650", "agent:main:discord:channel:651"], "one session per thread");
    // A new process resumes the session (no GUILD_CREATE comes): the thread is looked up.
    r.channels.stop().await;
    let store = Store::open(&r._dir.path().join("s.sqlite")).unwrap();
    let cfg = config_groups(&r.dc.api_url(), TOKEN, "'600': { requireMention: false }");
    let acct = cfg.channels.accounts[0].clone();
    let Platform::Discord(settings) = &acct.platform else { panic!() };
    let adapter: Arc<dyn Channel> = Arc::new(DiscordChannel::new(&acct.account_id, settings, reqwest::Client::new()));
    let channels = Channels::with_adapters(&cfg, store, vec![(adapter, acct)]);
    channels.start(Arc::new(r.echo.clone()));
    until("resumed", || !r.dc.resumes().is_empty()).await;
    r.dc.push_thread_message(650, 700, "after the restart", false, &[]);
    let sent = r.dc.wait_sent(3, Duration::from_secs(10)).await;
    assert_eq!(sent[2].channel_id, 650);
    assert!(r.dc.requests().iter().any(|q| q.path.ends_with("/channels/650")), "looked up once resumed");
    // A channel that is not listed stays closed, threads or not.
    r.dc.add_channel(500, 610, "random");
    r.dc.add_thread(500, 610, 660);
    r.dc.push_thread_message(660, 700, "@bot anyone?", true, &[]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(r.dc.sent().len(), 3);
    channels.stop().await;
}

#[tokio::test]
async fn messages_from_while_no_session_could_be_resumed_are_read_back_once() {
    let r = rig_with(TOKEN).await;
    r.dc.set_resume_window(Duration::from_millis(200));
    r.dc.wait_ready(Duration::from_secs(10)).await;
    let (dm, _) = r.dc.push_dm(700, "one");
    r.dc.wait_sent(1, Duration::from_secs(10)).await;
    // Down longer than Discord keeps a session: the messages meanwhile are not replayed by the
    // Gateway, so only reading the channel back finds them.
    r.channels.stop_account("discord", None).await.unwrap();
    r.dc.push_dm(700, "two");
    r.dc.push_dm(700, "three");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let identifies = r.dc.identifies().len();
    r.channels.start_account("discord", None).unwrap();
    until("answers to the missed messages", || answers(&r.dc).len() == 3).await;
    assert!(r.dc.identifies().len() > identifies, "a fresh session, not a resume");
    assert!(
        r.dc.requests()
            .iter()
            .any(|q| q.route.as_deref() == Some("get_channel_messages") && q.path.contains(&dm.to_string())),
        "the DM was read back"
    );
    r.dc.push_dm(700, "four");
    until("the next message", || answers(&r.dc).len() == 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(answers(&r.dc), ["one", "two", "three", "four"], "each once, in order");
    r.channels.stop().await;
}
