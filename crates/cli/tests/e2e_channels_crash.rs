//! kill -9 with messages in flight, then a restart, for Discord, Slack, Matrix and IRC: the
//! real binary with one account pointed at each platform's twin. (Telegram's drill is in
//! e2e_telegram.rs, web chat's in e2e_webchat.rs.)
//!
//! Every drill is the same: six people each send three messages at once; the model answers
//! each one slowly, naming the question; the gateway is killed just after its first reply went
//! out, while the second round is being answered; a new process on the same state dir must
//! answer every question exactly once.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use clawline_testkit::discord_server::DiscordServer;
use clawline_testkit::irc_server::IrcServer;
use clawline_testkit::matrix_server::MatrixServer;
use clawline_testkit::model_server::{Api, ModelServer, Reply};
use clawline_testkit::slack_server::SlackServer;
use common::*;

const PEOPLE: usize = 6;
const ROUNDS: usize = 3;
/// Every account is open to anyone, one session per person, replies sent whole.
const OPEN: &str = "dmPolicy: 'open', allowFrom: ['*'], streaming: 'off'";

fn question(round: usize, person: usize) -> String {
    format!("question r{round} p{person}")
}

/// Waits until every channel account of the gateway says it is connected.
async fn until_connected(base: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let v: serde_json::Value =
            http().get(format!("{base}/api/channels")).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
        let states: Vec<&serde_json::Value> = v["channelAccounts"]
            .as_object()
            .map(|m| m.values().filter_map(|a| a.as_array()).flatten().map(|a| &a["state"]).collect())
            .unwrap_or_default();
        if !states.is_empty() && states.iter().all(|s| *s == "connected") {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "accounts never connected: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The drill. `ready()` waits until the platform side is set for the people to speak (the
/// gateway's account is already connected); `push(round, person, text)` sends a message to
/// the gateway as that person; `replies()` lists the texts of the replies the platform has
/// received from it (a message the platform deduplicated by its idempotency key counts once).
async fn drill(
    channels: &str,
    ready: impl AsyncFn(),
    push: impl Fn(usize, usize, &str),
    replies: impl Fn() -> Vec<String>,
) {
    let dir = tempfile::tempdir().unwrap();
    let model = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    model.set_fallback(Reply::SlowEcho(Duration::from_millis(120)));
    let config = format!("session: {{ dmScope: 'per-channel-peer' }}, channels: {{ {channels} }},");
    write_config(dir.path(), &model, Api::OpenAi, &config);
    let mut gw = spawn(dir.path()).await;
    until_connected(&gw.base_url).await;
    ready().await;

    let mut asked = Vec::new();
    for round in 0..ROUNDS {
        for person in 0..PEOPLE {
            let q = question(round, person);
            push(round, person, &q);
            asked.push(q);
        }
    }
    // The people's sessions run side by side, so a round's replies are ready together, about
    // every 360 ms. Kill 150 ms after the first reply arrives: the rest of the first round is
    // going out (IRC paces its lines) and the second is streaming from the model.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while replies().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "first round never answered: {:?}", replies());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    gw.kill9();
    let before = replies().len();
    assert!(before < asked.len(), "the kill came too late to test anything ({before} sent)");

    let _gw = spawn(dir.path()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut answers: HashMap<&str, usize> = HashMap::new();
        for r in replies() {
            if let Some(q) = asked.iter().find(|q| r == format!("echo: {q}")) {
                *answers.entry(q.as_str()).or_default() += 1;
            }
        }
        let doubled: Vec<_> = answers.iter().filter(|(_, n)| **n > 1).collect();
        assert!(doubled.is_empty(), "answered twice: {doubled:?}");
        if asked.iter().all(|q| answers.contains_key(q.as_str())) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "unanswered after restart: {:?}",
            asked.iter().filter(|q| !answers.contains_key(q.as_str())).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(replies().len(), asked.len(), "exactly one reply per message: {:?}", replies());
    journal_is_settled(dir.path());
}

/// The kill cut runs off (recovered as interrupted and asked again) and nothing is left open.
fn journal_is_settled(dir: &Path) {
    let db = rusqlite::Connection::open(dir.join("state").join("clawline.sqlite")).unwrap();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    let interrupted = count("SELECT count(*) FROM runs WHERE status = 'interrupted'");
    let retried = count("SELECT count(*) FROM channel_inbound WHERE attempts > 1");
    assert!(interrupted >= 1 && retried == interrupted, "interrupted runs {interrupted}, retried messages {retried}");
    assert_eq!(count("SELECT count(*) FROM channel_inbound WHERE state IN ('pending', 'running')"), 0);
    assert_eq!(count("SELECT count(*) FROM channel_inbound"), (PEOPLE * ROUNDS) as i64, "every message journaled once");
}

#[tokio::test]
async fn discord_kill_9_with_messages_in_flight_loses_none_and_answers_none_twice() {
    const TOKEN_DC: &str = "MTE4MDAwMDAwMDAwMDAwMDAwMQ.GabcDe.fake-signature-part-for-e2e";
    let dc = DiscordServer::start(TOKEN_DC).await;
    for p in 0..PEOPLE {
        dc.add_user(700 + p as u64, &format!("person{p}"));
    }
    let channels = format!("discord: {{ token: '{TOKEN_DC}', baseUrl: '{}', {OPEN} }}", dc.api_url());
    drill(
        &channels,
        async || {},
        |_, p, text| {
            dc.push_dm(700 + p as u64, text);
        },
        // A resend carrying the same nonce is answered with the earlier message, not a new one.
        || dc.sent().into_iter().filter(|s| !s.deduped).map(|s| s.content).collect(),
    )
    .await;
}

#[tokio::test]
async fn slack_kill_9_with_messages_in_flight_loses_none_and_answers_none_twice() {
    let sl = SlackServer::start("xoxb-e2e-crash", "xapp-e2e-crash", "signing-secret").await;
    let ims: Vec<String> = (0..PEOPLE).map(|p| sl.add_im(&format!("U0CRASH{p}"))).collect();
    let channels = format!(
        "slack: {{ botToken: 'xoxb-e2e-crash', appToken: 'xapp-e2e-crash', baseUrl: '{}/api', {OPEN} }}",
        sl.base_url()
    );
    drill(
        &channels,
        async || {},
        |_, p, text| {
            sl.push_message(&ims[p], &format!("U0CRASH{p}"), text, None);
        },
        || sl.posted().into_iter().map(|p| p.text).collect(),
    )
    .await;
}

#[tokio::test]
async fn matrix_kill_9_with_messages_in_flight_loses_none_and_answers_none_twice() {
    let hs = MatrixServer::start("example.org").await;
    let bot = hs.register_user("claw", "bot-pass");
    let people: Vec<(String, String)> = (0..PEOPLE)
        .map(|p| {
            let who = hs.register_user(&format!("person{p}"), "pass");
            let room = hs.create_room(&who, true);
            hs.invite(&room, &who, &bot);
            (who, room)
        })
        .collect();
    let channels = format!(
        "matrix: {{ homeserver: '{}', userId: '{bot}', accessToken: '{}', {OPEN} }}",
        hs.base_url(),
        hs.token_for(&bot)
    );
    drill(
        &channels,
        // Events of the account's first sync are history and never answered, so the people
        // speak only once every invite is accepted.
        async || {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while !people.iter().all(|(_, room)| hs.membership(room, &bot).as_deref() == Some("join")) {
                assert!(tokio::time::Instant::now() < deadline, "invites never accepted");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        },
        |_, p, text| {
            let (who, room) = &people[p];
            hs.send_text(room, who, text);
        },
        || {
            // A resend under the same transaction id gives back the event sent before.
            let mut seen = std::collections::HashSet::new();
            hs.sent_by(&bot)
                .into_iter()
                .filter(|e| e.event_type == "m.room.message" && seen.insert(e.event_id.clone()))
                .filter_map(|e| e.body().map(str::to_string))
                .collect()
        },
    )
    .await;
}

#[tokio::test]
async fn irc_kill_9_with_messages_in_flight_loses_none_and_answers_none_twice() {
    let irc = IrcServer::start().await;
    let people: Vec<_> = (0..PEOPLE).map(|p| irc.user(&format!("person{p}"))).collect();
    let channels = format!("irc: {{ host: '127.0.0.1', port: {}, tls: false, nick: 'claw', {OPEN} }}", irc.port());
    drill(
        &channels,
        async || {},
        |_, p, text| people[p].privmsg("claw", text),
        || {
            (0..PEOPLE)
                .flat_map(|p| irc.received_by(&format!("person{p}")))
                .filter(|m| m.delivered && !m.notice)
                .map(|m| m.text)
                .collect()
        },
    )
    .await;
}
