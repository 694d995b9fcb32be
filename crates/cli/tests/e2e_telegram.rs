//! The real binary with a Telegram account pointed at the Bot API twin: the pairing flow end
//! to end through the CLI, status through the CLI, and kill -9 with messages in flight.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use clawline_testkit::model_server::{Api, ModelServer, Reply};
use clawline_testkit::telegram_server::TelegramServer;
use common::*;

const BOT_TOKEN: &str = "123456789:AAEhBP0av28fWkDJT3w_T0mQ-h3kYhkkA0s";

fn channels(tg: &TelegramServer, extra: &str) -> String {
    format!(
        "channels: {{ telegram: {{ botToken: '{BOT_TOKEN}', apiRoot: '{}', pollTimeoutSeconds: 2, {extra} }} }},",
        tg.api_root()
    )
}

async fn twin() -> TelegramServer {
    let tg = TelegramServer::start(BOT_TOKEN).await;
    tg.set_username("claw_bot");
    tg
}

#[tokio::test]
async fn pairing_end_to_end_unknown_sender_gets_a_code_the_cli_approves_the_next_message_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let model = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    model.set_fallback(Reply::Echo);
    let tg = twin().await;
    tg.add_private_chat(555, "Pat", Some("pat"));
    write_config(dir.path(), &model, Api::OpenAi, &channels(&tg, ""));
    let gw = spawn(dir.path()).await;

    tg.push_text(555, 555, "hello?");
    let sent = tg.wait_sent(1, Duration::from_secs(15)).await;
    let text = &sent[0].plain;
    let code: String = text.split("pairing code is ").nth(1).expect(text).chars().take(8).collect();
    assert_eq!(code.len(), 8);
    assert!(model.requests().is_empty(), "the model never saw the stranger's message");

    let listed = cli(dir.path(), &["pairing", "list"]).await;
    assert!(stdout(&listed).contains(&code), "{}", stdout(&listed));
    let wrong = cli(dir.path(), &["pairing", "approve", "telegram", "AAAA2222"]).await;
    assert!(!wrong.status.success());
    assert!(stderr(&wrong).contains("pairing list"), "{}", stderr(&wrong));
    let ok = cli(dir.path(), &["pairing", "approve", "telegram", &code.to_lowercase(), "--notify"]).await;
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("owner"), "{}", stdout(&ok));
    let sent = tg.wait_sent(2, Duration::from_secs(15)).await;
    assert!(sent[1].plain.contains("approved"), "the running gateway delivered the CLI's note: {sent:?}");

    tg.push_text(555, 555, "what's new?");
    let sent = tg.wait_sent(3, Duration::from_secs(15)).await;
    assert_eq!(sent[2].plain, "echo: what's new?");

    // The twin records a send before the gateway has read the answer and counted it, so ask
    // again until the third reply is counted.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let v = loop {
        let status = cli(dir.path(), &["channels", "status", "--json", "--url", &gw.base_url]).await;
        assert!(status.status.success(), "{}", stderr(&status));
        let v: serde_json::Value = serde_json::from_str(&stdout(&status)).unwrap();
        if v["channelAccounts"]["telegram"][0]["outbound"] == 3 || std::time::Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let acct = &v["channelAccounts"]["telegram"][0];
    assert_eq!(acct["state"], "connected", "{v}");
    assert_eq!(acct["bot"], "@claw_bot");
    assert_eq!(acct["outbound"], 3);
    let human = cli(dir.path(), &["channels", "status", "--url", &gw.base_url]).await;
    assert!(stdout(&human).contains("telegram:default @claw_bot  connected"), "{}", stdout(&human));
}

#[tokio::test]
async fn kill_9_with_messages_in_flight_then_restart_loses_none_and_answers_none_twice() {
    let dir = tempfile::tempdir().unwrap();
    let model = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    model.set_fallback(Reply::slow("ok ", 4, Duration::from_millis(80)));
    let tg = twin().await;
    let chats: Vec<i64> = (0..6).map(|i| 7000 + i).collect();
    for c in &chats {
        tg.add_private_chat(*c, "User", None);
    }
    write_config(dir.path(), &model, Api::OpenAi, &channels(&tg, "dmPolicy: 'open', allowFrom: ['*']"));
    let mut gw = spawn(dir.path()).await;

    let mut asked = Vec::new();
    for round in 0..3 {
        for c in &chats {
            asked.push((*c, tg.push_text(*c, *c, &format!("message {round} from {c}")).1));
        }
    }
    // The six chats run side by side, so their replies go out together, about every 320 ms.
    // Kill between two such moments: the first round is answered, the second is streaming and
    // the third waits in its chats' lanes. (A kill in the millisecond between Telegram taking a
    // reply and the queue recording it would send that reply again: the Bot API has no
    // idempotency key. That window is documented, not tested.)
    tg.wait_sent(chats.len(), Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    gw.kill9();
    let before = tg.sent().len();
    assert!(before < asked.len(), "the kill came too late to test anything ({before} sent)");

    let _gw = spawn(dir.path()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut by_quote: HashMap<(i64, i64), usize> = HashMap::new();
        for s in tg.sent() {
            *by_quote.entry((s.chat_id, s.reply_to_message_id.unwrap_or(0))).or_default() += 1;
        }
        let doubled: Vec<_> = by_quote.iter().filter(|(_, n)| **n > 1).collect();
        assert!(doubled.is_empty(), "answered twice: {doubled:?}");
        if asked.iter().all(|m| by_quote.contains_key(m)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "unanswered after restart: {:?}",
            asked.iter().filter(|m| !by_quote.contains_key(m)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(tg.sent().len(), asked.len(), "exactly one reply per message");
    // The kill really cut runs off: they were recovered as interrupted and asked again.
    let db = rusqlite::Connection::open(dir.path().join("state").join("clawline.sqlite")).unwrap();
    let interrupted: i64 =
        db.query_row("SELECT count(*) FROM runs WHERE status = 'interrupted'", [], |r| r.get(0)).unwrap();
    let retried: i64 =
        db.query_row("SELECT count(*) FROM channel_inbound WHERE attempts > 1", [], |r| r.get(0)).unwrap();
    assert!(interrupted >= 1 && retried == interrupted, "interrupted runs {interrupted}, retried messages {retried}");
    let open: i64 = db
        .query_row("SELECT count(*) FROM channel_inbound WHERE state IN ('pending', 'running')", [], |r| r.get(0))
        .unwrap();
    assert_eq!(open, 0);
}

#[tokio::test]
async fn operators_see_and_approve_pairing_requests_over_the_protocol() {
    use clawline_testkit::ws_client::{Client, cli_params};
    let dir = tempfile::tempdir().unwrap();
    let model = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    model.set_fallback(Reply::Echo);
    let tg = twin().await;
    tg.add_private_chat(808, "Robin", Some("robin"));
    tg.add_private_chat(909, "Kim", None);
    write_config(dir.path(), &model, Api::OpenAi, &channels(&tg, ""));
    let gw = spawn(dir.path()).await;
    tg.push_text(808, 808, "let me in");
    tg.push_text(909, 909, "me too");
    tg.wait_sent(2, Duration::from_secs(15)).await;

    let url = gw.base_url.replace("http://", "ws://");
    let (mut read_only, res) = Client::connect(&url, &[], cli_params(TOKEN, &["operator.read"]), None).await.unwrap();
    assert_eq!(res["ok"], true, "{res}");
    let refused = read_only.request("channels.pairing.list", serde_json::json!({})).await.unwrap();
    assert_eq!(refused["ok"], false, "pairing needs operator.pairing: {refused}");
    let status = read_only.request("channels.status", serde_json::json!({"probe": true})).await.unwrap();
    let acct = &status["payload"]["channelAccounts"]["telegram"][0];
    assert_eq!(acct["connected"], true, "{status}");
    assert_eq!(acct["probe"]["ok"], true, "{status}");
    assert_eq!(acct["dmPolicy"], "pairing");
    assert!(!status.to_string().contains(BOT_TOKEN), "the token never leaves the gateway");

    let (mut op, _) = Client::connect(&url, &[], cli_params(TOKEN, &["operator.pairing"]), None).await.unwrap();
    let list = op.request("channels.pairing.list", serde_json::json!({"channel": "telegram"})).await.unwrap();
    let requests = list["payload"]["requests"].as_array().unwrap().clone();
    assert_eq!(requests.len(), 2, "{list}");
    assert_eq!(list["payload"]["commandOwnerConfigured"], false);
    assert_eq!(list["payload"]["limits"]["pendingPerAccount"], 3);
    let robin = requests.iter().find(|r| r["senderId"] == "808").unwrap();
    assert_eq!((robin["senderLabel"].as_str(), robin["metadata"]["username"].as_str()), (Some("Robin"), Some("robin")));
    let kim = requests.iter().find(|r| r["senderId"] == "909").unwrap();

    let approved = op
        .request(
            "channels.pairing.approve",
            serde_json::json!({"channel": "telegram", "accountId": "default", "requestId": robin["requestId"],
                               "notify": true, "bootstrapCommandOwner": true}),
        )
        .await
        .unwrap();
    assert_eq!(approved["payload"]["senderId"], "808", "{approved}");
    assert_eq!(approved["payload"]["notification"], "sent");
    assert_eq!(approved["payload"]["commandOwnerBootstrap"], "configured");
    let dismissed = op
        .request(
            "channels.pairing.dismiss",
            serde_json::json!({"channel": "telegram", "accountId": "default", "requestId": kim["requestId"]}),
        )
        .await
        .unwrap();
    assert_eq!(dismissed["payload"]["senderId"], "909", "{dismissed}");
    let again = op
        .request(
            "channels.pairing.approve",
            serde_json::json!({"channel": "telegram", "accountId": "default", "requestId": kim["requestId"]}),
        )
        .await
        .unwrap();
    assert_eq!(again["ok"], false, "a dismissed request cannot be approved: {again}");

    tg.wait_sent(3, Duration::from_secs(15)).await;
    tg.push_text(808, 808, "thanks");
    let sent = tg.wait_sent(4, Duration::from_secs(15)).await;
    assert_eq!(sent[3].plain, "echo: thanks");
}

#[tokio::test]
async fn a_photo_lands_in_the_workspace_and_a_media_line_in_the_answer_comes_back_as_a_photo() {
    let dir = tempfile::tempdir().unwrap();
    let model = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    // The echo repeats the user message, `MEDIA:` line included: the answer names the file.
    model.set_fallback(Reply::Echo);
    let tg = twin().await;
    tg.add_private_chat(1001, "Olive", None);
    write_config(dir.path(), &model, Api::OpenAi, &channels(&tg, "allowFrom: [1001],"));
    let _gw = spawn(dir.path()).await;

    let photo: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let file_id = tg.register_file(&photo, "photo.jpg");
    let (_, mid) = tg.push_photo(1001, 1001, &file_id, Some("what is this?"));
    let sent = tg.wait_sent(2, Duration::from_secs(20)).await;

    let asked = model.requests()[0].body.to_string();
    let rel =
        asked.split("MEDIA:").nth(1).expect("the agent is told where the file is").split(['\\', '"']).next().unwrap();
    assert!(rel.starts_with("inbox/") && rel.ends_with(&format!("1001_{mid}-0-photo.jpg")), "{rel}");
    assert_eq!(std::fs::read(dir.path().join("workspace").join(rel)).unwrap(), photo, "saved whole");

    assert_eq!(sent[0].method, "sendMessage");
    assert!(sent[0].plain.starts_with("echo: what is this?"), "{:?}", sent[0].plain);
    assert!(!sent[0].plain.contains("MEDIA:"), "the line became a file: {:?}", sent[0].plain);
    assert_eq!(sent[1].method, "sendPhoto");
    assert_eq!(sent[1].upload_len, Some(photo.len()));
}

#[tokio::test]
async fn a_bot_token_kept_in_the_encrypted_store_connects_and_a_missing_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    model.set_fallback(Reply::Echo);
    let tg = twin().await;
    tg.add_private_chat(1001, "Olive", None);
    let stored = format!(
        "channels: {{ telegram: {{ botToken: {{ source: 'store', id: 'telegram-bot' }}, apiRoot: '{}', \
         pollTimeoutSeconds: 2, allowFrom: [1001] }} }},",
        tg.api_root()
    );
    write_config(dir.path(), &model, Api::OpenAi, &stored);

    // Not stored yet: the config names the key and says how to fix it.
    let check = cli(dir.path(), &["config", "validate"]).await;
    assert!(!check.status.success());
    let err = stderr(&check) + &stdout(&check);
    assert!(err.contains("channels.telegram.botToken") && err.contains("no secret `telegram-bot` is stored"), "{err}");
    assert!(err.contains("clawline secrets set telegram-bot"), "{err}");

    let set = cli_env(dir.path(), &["secrets", "set", "telegram-bot", "--from-env", "TG"], &[("TG", BOT_TOKEN)]).await;
    assert!(set.status.success(), "{}", stderr(&set));
    assert!(!stdout(&set).contains(BOT_TOKEN) && !stderr(&set).contains(BOT_TOKEN));
    let listed = cli(dir.path(), &["secrets", "list"]).await;
    assert!(stdout(&listed).starts_with("telegram-bot"), "{}", stdout(&listed));
    assert!(!stdout(&listed).contains(BOT_TOKEN));
    for name in ["clawline.sqlite", "clawline.sqlite-wal"] {
        let Ok(db) = std::fs::read(dir.path().join("state").join(name)) else { continue };
        assert!(!db.windows(BOT_TOKEN.len()).any(|w| w == BOT_TOKEN.as_bytes()), "only ciphertext in {name}");
    }

    let _gw = spawn(dir.path()).await;
    tg.push_text(1001, 1001, "hello");
    let sent = tg.wait_sent(1, Duration::from_secs(20)).await;
    assert_eq!(sent[0].plain, "echo: hello", "the stored token reached Telegram");

    let rm = cli(dir.path(), &["secrets", "rm", "telegram-bot"]).await;
    assert!(rm.status.success(), "{}", stderr(&rm));
    let again = cli(dir.path(), &["secrets", "rm", "telegram-bot"]).await;
    assert!(!again.status.success() && stderr(&again).contains("secrets list"), "{}", stderr(&again));
}

/// With traces exported, a Telegram message is one trace: `process telegram` answers it, the
/// agent's run is its child, and every delivery attempt (a 429 first, then the send) is a
/// `send telegram` span under it, with the platform's message id on the one that landed.
#[cfg(feature = "otel")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_its_run_and_each_delivery_attempt_are_one_trace() {
    use clawline_testkit::otlp_server::OtlpServer;
    use serde_json::json;

    let otlp = OtlpServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let model = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    model.set_fallback(Reply::Echo);
    let tg = twin().await;
    tg.add_private_chat(1001, "Pat", Some("pat"));
    tg.fail_next("sendMessage", 429, Some(1));
    let extra = format!(
        "{} diagnostics: {{ otel: {{ enabled: true, endpoint: \"{}\", flushIntervalMs: 50, metrics: false }} }},",
        channels(&tg, "allowFrom: [1001],"),
        otlp.endpoint()
    );
    write_config(dir.path(), &model, Api::OpenAi, &extra);
    let _gw = spawn(dir.path()).await;

    tg.push_text(1001, 1001, "trace me");
    let sent = tg.wait_sent(1, Duration::from_secs(20)).await;
    assert_eq!(sent[0].plain, "echo: trace me");

    let process = otlp.wait_spans("process telegram", 1, Duration::from_secs(10)).await.remove(0);
    let turn = otlp.wait_spans("invoke_agent main", 1, Duration::from_secs(10)).await.remove(0);
    let sends = otlp.wait_spans("send telegram", 2, Duration::from_secs(10)).await;
    assert!(otlp.rejections().is_empty(), "{:?}", otlp.rejections());

    assert_eq!(process.parent_span_id, "", "the message starts the trace");
    assert_eq!(process.kind, 5, "consumer");
    assert_eq!(process.attr("messaging.system"), Some(&json!("telegram")));
    assert_eq!(process.attr("clawline.outcome"), Some(&json!("replied")));
    assert_eq!(
        (turn.trace_id.as_str(), turn.parent_span_id.as_str()),
        (process.trace_id.as_str(), process.span_id.as_str())
    );
    assert_eq!(turn.attr("clawline.channel"), Some(&json!("telegram")));
    for s in &sends {
        assert_eq!(
            (s.trace_id.as_str(), s.parent_span_id.as_str()),
            (process.trace_id.as_str(), process.span_id.as_str())
        );
        assert_eq!(s.kind, 4, "producer");
    }
    let (limited, landed) = (&sends[0], &sends[1]);
    assert_eq!(limited.attr("error.type"), Some(&json!("rate_limited")));
    assert_eq!((limited.status_code, limited.attr("clawline.delivery.attempt")), (2, Some(&json!(1))));
    assert_eq!(landed.status_code, 1);
    assert_eq!(landed.attr("clawline.delivery.attempt"), Some(&json!(2)));
    assert_eq!(landed.attr("messaging.message.id"), Some(&json!(sent[0].message_id.to_string())));
    assert!(landed.start_nanos >= turn.end_nanos, "the delivery follows the turn");
    // Attributes only: the random hex ids could hold any digits.
    let attrs = format!("{:?}", otlp.spans().iter().map(|s| (&s.attributes, &s.status_message)).collect::<Vec<_>>());
    assert!(
        !attrs.contains("trace me") && !attrs.contains("1001"),
        "message text or the person's id reached the spans"
    );
}
