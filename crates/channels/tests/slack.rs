//! The Slack adapter against the Slack twin: Socket Mode envelopes journaled before they are
//! acknowledged, DMs and channel mentions answered in threads, the duplicate app_mention +
//! message pair answered once, the socket's faults (drops, stalls, disconnect requests,
//! duplicates, malformed frames, 429s), a reply whose answer was lost found by its metadata
//! instead of posted twice, and the Events API's signature check.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clawline_channels::slack::SlackChannel;
use clawline_channels::{Ask, Backoff, Channel, Channels, ConnState, Progress, Reply, Responder};
use clawline_core::config::channels::Platform;
use clawline_core::config::{Config, LoadContext, load};
use clawline_store::Store;
use clawline_testkit::slack_server::{ChannelKind, Fail, SlackServer, slack_signature};
use futures_util::future::BoxFuture;

const BOT: &str = "xoxb-test-bot-token";
const APP: &str = "xapp-test-app-token";
const SECRET: &str = "slack-signing-secret";

#[derive(Default, Clone)]
struct Echo {
    asks: Arc<Mutex<Vec<Ask>>>,
}

impl Responder for Echo {
    fn respond(&self, ask: Ask, _progress: Progress) -> BoxFuture<'static, Reply> {
        self.asks.lock().unwrap().push(ask.clone());
        let said = ask.text.rsplit("> ").next().unwrap_or_default().to_string();
        Box::pin(async move { Reply::Text(format!("re: **{said}**")) })
    }
}

fn config(base: &str, extra: &str) -> Config {
    let text = format!(
        "{{ channels: {{ slack: {{ botToken: '{BOT}', appToken: '{APP}', signingSecret: '{SECRET}', baseUrl: '{base}/api',
             dmPolicy: 'open', allowFrom: ['*'], groups: {{ '*': {{ requireMention: true }} }}, {extra} }} }} }}"
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
    slack: SlackServer,
    store: Store,
    channels: Channels,
    echo: Echo,
    _dir: tempfile::TempDir,
}

async fn rig(extra: &str) -> Rig {
    let slack = SlackServer::start(BOT, APP, SECRET).await;
    slack.add_channel("C100", "general", ChannelKind::Public);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    let cfg = config(&slack.base_url(), extra);
    let acct = cfg.channels.accounts[0].clone();
    let Platform::Slack(settings) = &acct.platform else { panic!() };
    let adapter: Arc<dyn Channel> = Arc::new(
        SlackChannel::new(&acct.account_id, settings, reqwest::Client::new())
            .with_keepalive(Duration::from_millis(300)),
    );
    let fast = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        max_after_fatal: Duration::from_millis(500),
    };
    let channels = Channels::with_adapters(&cfg, store.clone(), vec![(adapter, acct)]).with_backoff(fast);
    let echo = Echo::default();
    channels.start(Arc::new(echo.clone()));
    Rig { slack, store, channels, echo, _dir: dir }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn dms_and_mentions_are_answered_once_in_threads_and_every_envelope_is_acked() {
    let r = rig("").await;
    until("the socket", || {
        r.slack.connections_opened() >= 1 && r.channels.status()[0].status.state == ConnState::Connected
    })
    .await;
    let im = r.slack.add_im("U1");
    r.slack.push_message(&im, "U1", "hello there", None);
    let posted = r.slack.wait_posted(1, Duration::from_secs(10)).await;
    assert_eq!(
        (posted[0].channel.as_str(), posted[0].text.as_str(), posted[0].thread_ts.as_deref()),
        (im.as_str(), "re: *hello there*", None)
    );

    r.slack.push_message("C100", "U1", "just chatting", None);
    let asked = r.slack.push_mention("C100", "U1", "deploy please", None);
    let posted = r.slack.wait_posted(2, Duration::from_secs(10)).await;
    assert_eq!(posted[1].channel, "C100");
    assert_eq!(posted[1].thread_ts.as_deref(), Some(asked.ts.as_str()), "channel replies go into the message's thread");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        r.slack.posted().len(),
        2,
        "the unaddressed message and the mention's twin message event got nothing more"
    );
    assert_eq!(r.echo.asks.lock().unwrap().len(), 2);
    let keys: Vec<String> = r.echo.asks.lock().unwrap().iter().map(|a| a.session_key.clone()).collect();
    assert_eq!(keys[1], "agent:main:slack:channel:c100");
    assert_eq!(r.slack.acks().len(), r.slack.envelopes_sent().len(), "every envelope acknowledged");
    assert_eq!(r.slack.pending_events(), 0);
    r.channels.stop().await;
}

#[tokio::test]
async fn socket_faults_lose_nothing_and_answer_once() {
    let r = rig("").await;
    until("the socket", || r.channels.status()[0].status.state == ConnState::Connected).await;
    let im = r.slack.add_im("U2");
    r.slack.drop_socket();
    r.slack.push_message(&im, "U2", "one", None);
    r.slack.wait_posted(1, Duration::from_secs(10)).await;
    r.slack.duplicate_next_envelope();
    r.slack.push_message(&im, "U2", "two", None);
    r.slack.wait_posted(2, Duration::from_secs(10)).await;
    r.slack.malformed_next_frame();
    r.slack.push_message(&im, "U2", "three", None);
    r.slack.send_disconnect("refresh_requested");
    r.slack.wait_posted(3, Duration::from_secs(20)).await;
    r.slack.fail_next("chat.postMessage", Fail::RateLimited(1));
    r.slack.push_message(&im, "U2", "four", None);
    r.slack.wait_posted(4, Duration::from_secs(10)).await;
    // A socket that stops delivering while its WebSocket still answers pings cannot be told
    // from a quiet workspace (Socket Mode has no application heartbeat); Slack redelivers what
    // was not acknowledged once it delivers again.
    r.slack.stall_socket(true);
    r.slack.push_message(&im, "U2", "five", None);
    tokio::time::sleep(Duration::from_millis(500)).await;
    r.slack.stall_socket(false);
    r.slack.wait_posted(5, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let texts: Vec<String> = r.slack.posted().iter().map(|p| p.text.clone()).collect();
    assert_eq!(texts, ["re: *one*", "re: *two*", "re: *three*", "re: *four*", "re: *five*"]);
    assert!(r.channels.status()[0].status.reconnects >= 2, "the drop and the disconnect request");
    until("connected again after the faults", || r.channels.status()[0].status.state == ConnState::Connected).await;
    r.channels.stop().await;
}

#[tokio::test]
async fn a_5xx_on_post_message_is_retried_and_the_reply_posted_once() {
    let r = rig("").await;
    until("the socket", || r.channels.status()[0].status.state == ConnState::Connected).await;
    let im = r.slack.add_im("U4");
    r.slack.fail_next("chat.postMessage", Fail::Status(500));
    r.slack.push_message(&im, "U4", "one", None);
    until("the reply recorded as sent", || r.channels.status()[0].status.outbound == 1).await;
    let s = r.channels.status()[0].status.clone();
    assert_eq!((s.outbound, s.send_failures, s.dead_letters), (1, 1, 0), "{s:?}");
    assert!(s.last_error.as_deref().is_some_and(|e| e.contains("fatal_error")), "{s:?}");
    // A later reply is a fence: nothing of the first one is posted again before it.
    r.slack.push_message(&im, "U4", "two", None);
    until("the second reply recorded as sent", || r.channels.status()[0].status.outbound == 2).await;
    let texts: Vec<String> = r.slack.posted().iter().map(|p| p.text.clone()).collect();
    assert_eq!(texts, ["re: *one*", "re: *two*"]);
    let statuses: Vec<u16> =
        r.slack.requests().iter().filter(|q| q.method == "chat.postMessage").map(|q| q.status).collect();
    assert_eq!(statuses, [500, 200, 200], "the refused call was retried once");
    assert_eq!(r.channels.status()[0].status.state, ConnState::Connected, "a failed post is not a broken socket");
    r.channels.stop().await;
}

#[tokio::test]
async fn the_events_api_checks_signatures_and_answers_the_url_challenge() {
    let r = rig("mode: 'http'").await;
    let path = r.channels.webhook_paths()[0].clone();
    assert_eq!(path, "/channels/slack/default/events");
    until("auth.test", || r.channels.status()[0].status.identity.is_some()).await;
    let now = (clawline_store::now_ms() / 1000).to_string();
    let sign = |body: &[u8], ts: &str, secret: &str| {
        let mut h = http::HeaderMap::new();
        h.insert("x-slack-request-timestamp", ts.parse().unwrap());
        h.insert("x-slack-signature", slack_signature(secret, ts, body).parse().unwrap());
        h
    };
    let challenge = br#"{"token":"t","challenge":"abc123","type":"url_verification"}"#;
    let reply = r.channels.webhook(&path, &sign(challenge, &now, SECRET), challenge).await.unwrap();
    assert_eq!((reply.status, reply.body.as_deref()), (200, Some("abc123")));
    let bot = r.slack.bot_user_id();
    let event = serde_json::json!({"type": "event_callback", "team_id": "T1", "event_id": "Ev1",
        "event": {"type": "message", "channel": "D9", "channel_type": "im", "user": "U3", "text": "via http", "ts": "1700000000.000100"}});
    let body = event.to_string().into_bytes();
    assert_eq!(r.channels.webhook(&path, &sign(&body, &now, "wrong-secret"), &body).await.unwrap().status, 401);
    let old = (clawline_store::now_ms() / 1000 - 600).to_string();
    assert_eq!(
        r.channels.webhook(&path, &sign(&body, &old, SECRET), &body).await.unwrap().status,
        401,
        "replays older than five minutes are refused"
    );
    assert_eq!(r.channels.webhook(&path, &sign(&body, &now, SECRET), &body).await.unwrap().status, 200);
    assert_eq!(
        r.channels.webhook(&path, &sign(&body, &now, SECRET), &body).await.unwrap().status,
        200,
        "a retry is acknowledged"
    );
    until("the asks", || !r.echo.asks.lock().unwrap().is_empty()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(r.echo.asks.lock().unwrap().len(), 1, "the retried event was answered once (bot {bot})");
    r.channels.stop().await;
}

/// The methods called after the first `chat.postMessage`, in order.
fn calls_after_first_post(slack: &SlackServer) -> Vec<String> {
    let calls: Vec<String> = slack.requests().iter().map(|q| q.method.clone()).collect();
    let first = calls.iter().position(|m| m == "chat.postMessage").expect("a post");
    calls[first..].iter().filter(|m| *m != "auth.test" && *m != "apps.connections.open").cloned().collect()
}

#[tokio::test]
async fn a_reply_whose_answer_was_cut_off_is_found_in_the_history_not_posted_twice() {
    let r = rig("").await;
    until("the socket", || r.channels.status()[0].status.state == ConnState::Connected).await;
    let im = r.slack.add_im("U7");
    // Slack takes the post, but the connection breaks before clawline reads the answer.
    r.slack.cut_next_answer("chat.postMessage");
    r.slack.push_message(&im, "U7", "one", None);
    until("the reply recorded as sent", || r.channels.status()[0].status.outbound == 1).await;
    let posted = r.slack.posted();
    assert_eq!(posted.len(), 1, "{posted:?}");
    let key = posted[0].metadata.as_ref().unwrap()["event_payload"]["key"].as_str().unwrap().to_string();
    assert_eq!(calls_after_first_post(&r.slack), ["chat.postMessage", "conversations.history"]);
    let lookup = r.slack.requests().into_iter().find(|q| q.method == "conversations.history").unwrap();
    assert_eq!(
        (lookup.params["channel"].as_str(), lookup.params["include_all_metadata"].as_bool()),
        (Some(im.as_str()), Some(true))
    );
    let row = r.store.outbound_with_prefix("slack", &key).await.unwrap().remove(0);
    assert_eq!(row.platform_message_id.as_deref(), Some(posted[0].ts.as_str()), "the found message is the reply");
    assert_eq!(row.sending_since, None);

    // The next reply is posted straight away: no lookup for a post that was answered.
    r.slack.push_message(&im, "U7", "two", None);
    until("the second reply", || r.channels.status()[0].status.outbound == 2).await;
    assert_eq!(calls_after_first_post(&r.slack), ["chat.postMessage", "conversations.history", "chat.postMessage"]);
    r.channels.stop().await;
}

#[tokio::test]
async fn a_cut_answer_in_a_thread_is_looked_for_in_the_thread() {
    let r = rig("").await;
    until("the socket", || r.channels.status()[0].status.state == ConnState::Connected).await;
    r.slack.cut_next_answer("chat.postMessage");
    let asked = r.slack.push_mention("C100", "U8", "status?", None);
    until("the reply recorded as sent", || r.channels.status()[0].status.outbound == 1).await;
    assert_eq!(r.slack.posted().len(), 1);
    let lookup = r.slack.requests().into_iter().find(|q| q.method == "conversations.replies").expect("a thread lookup");
    assert_eq!(lookup.params["ts"].as_str(), Some(asked.ts.as_str()));
    r.channels.stop().await;
}

#[tokio::test]
async fn without_history_access_a_cut_reply_is_posted_again_rather_than_lost() {
    let r = rig("").await;
    until("the socket", || r.channels.status()[0].status.state == ConnState::Connected).await;
    let im = r.slack.add_im("U9");
    r.slack.cut_next_answer("chat.postMessage");
    r.slack.fail_next("conversations.history", "missing_scope");
    r.slack.push_message(&im, "U9", "one", None);
    until("the reply recorded as sent", || r.channels.status()[0].status.outbound == 1).await;
    let texts: Vec<String> = r.slack.posted().iter().map(|p| p.text.clone()).collect();
    assert_eq!(texts, ["re: *one*", "re: *one*"], "at least once when Slack will not say");
    r.channels.stop().await;
}

#[tokio::test]
async fn a_lookup_that_fails_is_retried_before_anything_is_posted() {
    let r = rig("").await;
    until("the socket", || r.channels.status()[0].status.state == ConnState::Connected).await;
    let im = r.slack.add_im("U10");
    r.slack.cut_next_answer("chat.postMessage");
    r.slack.fail_next("conversations.history", Fail::Status(503));
    r.slack.push_message(&im, "U10", "one", None);
    until("the reply recorded as sent", || r.channels.status()[0].status.outbound == 1).await;
    assert_eq!(r.slack.posted().len(), 1);
    assert_eq!(
        calls_after_first_post(&r.slack),
        ["chat.postMessage", "conversations.history", "conversations.history"]
    );
    r.channels.stop().await;
}
