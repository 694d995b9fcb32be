//! A load run through one channel: 1,000 inbound messages across 100 Telegram chats, through
//! the real binary, the Bot API twin and a zero-latency model twin. Every message must be
//! answered exactly once; the figures (time to the last reply, messages per second, the
//! gateway's resident and peak memory) are printed for the README, never asserted.
//!
//! Telegram's own limits set the pace: clawline sends at most about one message a second to
//! a chat after a burst of three, so ten messages per chat take several seconds whatever the
//! gateway's speed. Each chat has its own session (`session.dmScope: "per-channel-peer"`, as
//! a bot shared by many people would be set up); with the default `main` scope every DM is one
//! conversation and its turns run one after another. `cargo test -p clawline --test load_telegram -- --nocapture` shows the figures.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clawline_testkit::model_server::{Api, ModelServer, Reply};
use clawline_testkit::telegram_server::TelegramServer;
use common::*;

const BOT_TOKEN: &str = "123456789:AAEhBP0av28fWkDJT3w_T0mQ-h3kYhkkA0s";
const CHATS: i64 = 100;
const PER_CHAT: usize = 10;

fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test]
async fn a_thousand_messages_across_a_hundred_chats_are_all_answered_once() {
    let dir = tempfile::tempdir().unwrap();
    let model = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    model.set_fallback(Reply::Echo);
    let tg = TelegramServer::start(BOT_TOKEN).await;
    tg.set_username("claw_bot");
    for c in 0..CHATS {
        tg.add_private_chat(10_000 + c, "User", None);
    }
    let extra = format!(
        "channels: {{ telegram: {{ botToken: '{BOT_TOKEN}', apiRoot: '{}', pollTimeoutSeconds: 5, dmPolicy: 'open', allowFrom: ['*'] }} }},
         session: {{ dmScope: 'per-channel-peer' }},",
        tg.api_root()
    );
    write_config(dir.path(), &model, Api::OpenAi, &extra);
    let gw = spawn(dir.path()).await;
    let (idle_rss, _) = memory_kib(gw.pid());

    let started = Instant::now();
    let mut asked = Vec::new();
    for round in 0..PER_CHAT {
        for c in 0..CHATS {
            let chat = 10_000 + c;
            asked.push((chat, tg.push_text(chat, chat, &format!("message {round} in {chat}")).1));
        }
    }
    let total = asked.len();
    let mut peak_rss = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let sent = tg.sent();
        peak_rss = peak_rss.max(memory_kib(gw.pid()).0);
        if sent.len() >= total {
            break;
        }
        assert!(Instant::now() < deadline, "only {} of {total} answered", sent.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = tg.sent();
    let mut by_quote: HashMap<(i64, i64), usize> = HashMap::new();
    for s in &sent {
        *by_quote.entry((s.chat_id, s.reply_to_message_id.unwrap_or(0))).or_default() += 1;
    }
    assert_eq!(sent.len(), total, "exactly one reply per message");
    assert!(asked.iter().all(|k| by_quote.get(k) == Some(&1)), "every message answered once");
    assert!(sent.iter().all(|s| s.plain.starts_with("echo: message ")), "replies are the model's answers");
    let (rss, hwm) = memory_kib(gw.pid());
    eprintln!(
        "load_telegram: {total} messages in {CHATS} chats answered in {:.2} s ({:.0} messages/s); \
         gateway RSS idle {} KiB, during {} KiB, after {} KiB, peak {} KiB; {} model calls",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        idle_rss,
        peak_rss,
        rss,
        hwm,
        model.requests().len()
    );
}
