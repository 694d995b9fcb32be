//! The Matrix adapter against the client-server API twin: password login, invites, DMs and
//! rooms, threads, pairing, history never answered, faults (dropped, malformed, duplicated and
//! stalled syncs, 429s, an expired token), restarts, and encrypted rooms reported.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clawline_channels::matrix::MatrixChannel;
use clawline_channels::{Ask, Backoff, Channel, Channels, ConnState, Media, Progress, Reply, Responder};
use clawline_core::config::channels::Platform;
use clawline_core::config::{Config, LoadContext, load};
use clawline_store::Store;
use clawline_testkit::matrix_server::MatrixServer;
use futures_util::future::BoxFuture;

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
        let said = ask.text.rsplit(": ").next().unwrap_or_default().to_string();
        Box::pin(async move { Reply::Text(format!("re: **{said}**")) })
    }
}

struct Rig {
    hs: MatrixServer,
    bot: String,
    ada: String,
    store: Store,
    cfg: Config,
    _dir: tempfile::TempDir,
}

fn config(base: &str, bot: &str, ada: &str, extra: &str) -> Config {
    let text = format!(
        "{{ channels: {{ matrix: {{ homeserver: '{base}', userId: '{bot}', password: 'bot-pass', allowFrom: ['{ada}'], {extra} }} }} }}"
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

async fn rig(extra: &str) -> Rig {
    let hs = MatrixServer::start("example.org").await;
    let bot = hs.register_user("claw", "bot-pass");
    let ada = hs.register_user("ada", "ada-pass");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    let cfg = config(&hs.base_url(), &bot, &ada, extra);
    Rig { hs, bot, ada, store, cfg, _dir: dir }
}

fn start(r: &Rig, echo: &Echo) -> Channels {
    let acct = r.cfg.channels.accounts[0].clone();
    let Platform::Matrix(settings) = &acct.platform else { panic!() };
    let mx: Arc<dyn Channel> = Arc::new(
        MatrixChannel::new(&acct.account_id, settings, reqwest::Client::new())
            .with_sync_timing(Duration::from_millis(500), Duration::from_millis(700)),
    );
    let fast = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        max_after_fatal: Duration::from_millis(500),
    };
    let channels = Channels::with_adapters(&r.cfg, r.store.clone(), vec![(mx, acct)]).with_backoff(fast);
    channels.start(Arc::new(echo.clone()));
    channels
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn dms_and_rooms_are_answered_as_notices_in_their_threads_and_history_is_not() {
    let r = rig("groups: { '*': { requireMention: true } }, groupPolicy: 'allowlist'").await;
    let dm = r.hs.create_room(&r.ada, true);
    r.hs.invite(&dm, &r.ada, &r.bot);
    let room = r.hs.create_room(&r.ada, false);
    r.hs.invite(&room, &r.ada, &r.bot);
    let echo = Echo::default();
    let channels = start(&r, &echo);
    until("both invites accepted", || {
        r.hs.membership(&dm, &r.bot).as_deref() == Some("join")
            && r.hs.membership(&room, &r.bot).as_deref() == Some("join")
    })
    .await;
    until("the first sync", || channels.status()[0].status.state == ConnState::Connected).await;
    assert_eq!(channels.status()[0].status.identity.as_deref(), Some(r.bot.as_str()));

    let question = r.hs.send_text(&dm, &r.ada, "hello <b>");
    let sent = r.hs.wait_sent_by(&r.bot, 1, Duration::from_secs(10)).await;
    assert_eq!((sent[0].room_id.as_str(), sent[0].msgtype()), (dm.as_str(), Some("m.notice")));
    assert_eq!(sent[0].body(), Some("re: hello <b>"));
    assert!(
        sent[0].content["formatted_body"].as_str().unwrap().contains("<b>hello &lt;b&gt;</b>"),
        "{:?}",
        sent[0].content
    );
    assert_eq!(sent[0].relates_to().unwrap()["m.in_reply_to"]["event_id"], question.as_str());
    assert!(sent[0].problems.is_empty(), "{:?}", sent[0].problems);

    r.hs.send_text(&room, &r.ada, "talking among ourselves");
    let root = r.hs.send_text(&room, &r.ada, "a thread starts here");
    r.hs.send_in_thread(&room, &r.ada, &root, "claw, can you help?");
    let sent = r.hs.wait_sent_by(&r.bot, 2, Duration::from_secs(10)).await;
    assert_eq!(sent[1].room_id, room);
    assert_eq!(sent[1].relates_to().unwrap()["rel_type"], "m.thread");
    assert_eq!(sent[1].relates_to().unwrap()["event_id"], root.as_str());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(r.hs.sent_by(&r.bot).len(), 2, "unaddressed room messages were not answered");
    let keys: Vec<String> = echo.asks.lock().unwrap().iter().map(|a| a.session_key.clone()).collect();
    assert_eq!(keys[0], "agent:main:main");
    assert!(keys[1].starts_with("agent:main:matrix:group:_") && keys[1].contains(":thread:_"), "{keys:?}");
    assert!(r.hs.typing().iter().any(|t| t.user_id == r.bot && t.typing), "typing shown");
    channels.stop().await;
}

#[tokio::test]
async fn the_first_start_skips_history_and_restarts_resume_from_the_stored_token() {
    let r = rig("").await;
    let dm = r.hs.create_room(&r.ada, true);
    r.hs.invite(&dm, &r.ada, &r.bot);
    r.hs.send_text(&dm, &r.ada, "an old message from before clawline");
    let echo = Echo::default();
    let first = start(&r, &echo);
    until("the first sync", || first.status()[0].status.state == ConnState::Connected).await;
    r.hs.send_text(&dm, &r.ada, "one");
    r.hs.wait_sent_by(&r.bot, 1, Duration::from_secs(10)).await;
    first.stop().await;
    r.hs.send_text(&dm, &r.ada, "two, while clawline was down");
    let second = start(&r, &echo);
    let sent = r.hs.wait_sent_by(&r.bot, 2, Duration::from_secs(10)).await;
    assert_eq!(sent[1].body(), Some("re: two, while clawline was down"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked: Vec<String> = echo.asks.lock().unwrap().iter().map(|a| a.text.clone()).collect();
    assert_eq!(asked, ["one", "two, while clawline was down"], "history and answered messages are not asked again");
    second.stop().await;
}

#[tokio::test]
async fn broken_syncs_rate_limits_and_an_expired_login_lose_nothing_and_answer_once() {
    let r = rig("").await;
    let dm = r.hs.create_room(&r.ada, true);
    r.hs.invite(&dm, &r.ada, &r.bot);
    let echo = Echo::default();
    let channels = start(&r, &echo);
    until("the first sync", || channels.status()[0].status.state == ConnState::Connected).await;
    r.hs.drop_next_syncs(2);
    r.hs.send_text(&dm, &r.ada, "one");
    r.hs.wait_sent_by(&r.bot, 1, Duration::from_secs(10)).await;
    r.hs.malformed_next_sync();
    r.hs.send_text(&dm, &r.ada, "two");
    r.hs.wait_sent_by(&r.bot, 2, Duration::from_secs(10)).await;
    r.hs.duplicate_next_sync();
    r.hs.send_text(&dm, &r.ada, "three");
    r.hs.wait_sent_by(&r.bot, 3, Duration::from_secs(10)).await;
    r.hs.fail_next("send", 429, "M_LIMIT_EXCEEDED", Some(300));
    r.hs.send_text(&dm, &r.ada, "four");
    r.hs.wait_sent_by(&r.bot, 4, Duration::from_secs(10)).await;
    // The login's token expires: clawline logs in again and carries on. None of the faults
    // above cost the session, so the later second login is the refused token's doing.
    let logins = |hs: &MatrixServer| hs.requests().iter().filter(|c| c.endpoint == "login").count();
    assert_eq!(logins(&r.hs), 1, "the faults before the refused token did not log in again");
    r.hs.fail_next("sync", 401, "M_UNKNOWN_TOKEN", None);
    r.hs.send_text(&dm, &r.ada, "five");
    r.hs.wait_sent_by(&r.bot, 5, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bodies: Vec<String> = r.hs.sent_by(&r.bot).iter().filter_map(|e| e.body().map(str::to_string)).collect();
    assert_eq!(bodies, ["re: one", "re: two", "re: three", "re: four", "re: five"]);
    let s = &channels.status()[0].status;
    assert!(s.reconnects >= 3, "{s:?}");
    assert_eq!(s.state, ConnState::Connected);
    assert_eq!(logins(&r.hs), 2, "logged in again after the token was refused");
    let calls = r.hs.requests();
    let refused = calls.iter().position(|c| c.endpoint == "sync" && c.status == 401).expect("the refused sync");
    let relogin = calls.iter().rposition(|c| c.endpoint == "login").expect("the second login");
    assert!(refused < relogin, "the second login followed the refusal");
    assert!(
        calls[relogin + 1..].iter().any(|c| c.endpoint == "send" && c.status == 200),
        "the fifth reply went out on the new login"
    );
    channels.stop().await;
}

#[tokio::test]
async fn a_5xx_on_send_is_retried_with_the_same_transaction_and_answered_once() {
    let r = rig("").await;
    let dm = r.hs.create_room(&r.ada, true);
    r.hs.invite(&dm, &r.ada, &r.bot);
    let echo = Echo::default();
    let channels = start(&r, &echo);
    until("connected", || channels.status()[0].status.state == ConnState::Connected).await;
    r.hs.fail_next("send", 500, "M_UNKNOWN", None);
    r.hs.send_text(&dm, &r.ada, "one");
    until("the reply recorded as sent", || channels.status()[0].status.outbound == 1).await;
    let s = channels.status()[0].status.clone();
    assert_eq!((s.outbound, s.send_failures, s.dead_letters), (1, 1, 0), "{s:?}");
    assert!(s.last_error.as_deref().is_some_and(|e| e.contains("500")), "{s:?}");
    // A later reply is a fence: nothing of the first one is sent again before it.
    r.hs.send_text(&dm, &r.ada, "two");
    until("the second reply recorded as sent", || channels.status()[0].status.outbound == 2).await;
    let bodies: Vec<String> = r.hs.sent_by(&r.bot).iter().filter_map(|e| e.body().map(str::to_string)).collect();
    assert_eq!(bodies, ["re: one", "re: two"]);
    let sends: Vec<(u16, String)> =
        r.hs.requests().iter().filter(|c| c.endpoint == "send").map(|c| (c.status, c.path.clone())).collect();
    assert_eq!(sends.iter().map(|s| s.0).collect::<Vec<_>>(), [500, 200, 200], "the refused send was retried once");
    assert_eq!(sends[0].1, sends[1].1, "the retry reused the transaction id");
    channels.stop().await;
}

#[tokio::test]
async fn a_stalled_sync_is_replaced_and_encrypted_rooms_are_reported_not_answered() {
    let r = rig("").await;
    let dm = r.hs.create_room(&r.ada, true);
    r.hs.invite(&dm, &r.ada, &r.bot);
    let secret = r.hs.create_room(&r.ada, true);
    r.hs.invite(&secret, &r.ada, &r.bot);
    r.hs.set_encrypted(&secret);
    let echo = Echo::default();
    let channels = start(&r, &echo);
    // Connected is set before the first sync has answered; a stall before that answer would
    // make the next sync the first one, which skips what is already in the rooms.
    until("the first sync", || {
        channels.status()[0].status.state == ConnState::Connected
            && r.hs.requests().iter().any(|c| c.endpoint == "sync" && c.status == 200)
    })
    .await;
    r.hs.send_encrypted(&secret, &r.ada);
    r.hs.stall_sync(true);
    until("the watchdog", || channels.status()[0].status.last_error.as_deref().is_some_and(|e| e.contains("stalled")))
        .await;
    r.hs.stall_sync(false);
    r.hs.send_text(&dm, &r.ada, "back?");
    let sent = r.hs.wait_sent_by(&r.bot, 1, Duration::from_secs(10)).await;
    assert_eq!(sent[0].body(), Some("re: back?"));
    assert_eq!(echo.asks.lock().unwrap().len(), 1, "the encrypted message was not answered");
    let probe = channels.probe().await;
    assert!(probe[0].ok, "{probe:?}");
    assert_eq!(probe[0].info.as_ref().unwrap()["encryptedRoomsNotSupported"], serde_json::json!([secret]));
    channels.stop().await;
}

#[tokio::test]
async fn replies_use_the_queue_key_as_transaction_id_so_a_resend_is_the_same_event() {
    let r = rig("").await;
    let dm = r.hs.create_room(&r.ada, true);
    r.hs.invite(&dm, &r.ada, &r.bot);
    let echo = Echo::default();
    let channels = start(&r, &echo);
    until("connected", || channels.status()[0].status.state == ConnState::Connected).await;
    r.hs.send_text(&dm, &r.ada, "once");
    let sent = r.hs.wait_sent_by(&r.bot, 1, Duration::from_secs(10)).await;
    let txn = sent[0].txn_id.clone().unwrap();
    assert!(txn.ends_with("#1:0"), "the transaction id is the queue row's key: {txn}");
    channels.stop().await;

    // The row in the queue carries that key: a resend after a crash (the homeserver took the
    // event, the queue had not recorded it) repeats the same transaction, which the homeserver
    // answers with the same event instead of a second one.
    let row = r.store.outbound_with_prefix("matrix", "").await.unwrap().remove(0);
    assert_eq!(row.idempotency_key, txn);
    assert_eq!(r.hs.sent_by(&r.bot).len(), 1);
}

#[tokio::test]
async fn files_are_downloaded_with_the_token_and_answers_upload_theirs() {
    let r = rig("").await;
    let dm = r.hs.create_room(&r.ada, true);
    r.hs.invite(&dm, &r.ada, &r.bot);
    let echo = Echo::default();
    let channels = start(&r, &echo);
    until("joined and synced", || {
        r.hs.membership(&dm, &r.bot).as_deref() == Some("join")
            && channels.status()[0].status.state == ConnState::Connected
    })
    .await;
    let picture: Vec<u8> = (0..4000u32).map(|i| (i % 241) as u8).collect();
    let mxc = r.hs.add_media(&picture, "image/png", Some("cat.png"));
    r.hs.send_message(
        &dm,
        &r.ada,
        serde_json::json!({"msgtype": "m.image", "body": "cat.png", "url": mxc,
                           "info": {"mimetype": "image/png", "size": picture.len()}}),
    );
    r.hs.wait_sent_by(&r.bot, 1, Duration::from_secs(10)).await;
    let ask = echo.asks.lock().unwrap()[0].clone();
    assert_eq!(ask.files.len(), 1, "{ask:?}");
    assert_eq!((ask.files[0].kind.as_str(), ask.files[0].bytes.as_slice()), ("image", picture.as_slice()));

    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.pdf");
    std::fs::write(&report, vec![7u8; 3000]).unwrap();
    let media = vec![Media {
        kind: "document".into(),
        path: Some(report.display().to_string()),
        url: None,
        name: "report.pdf".into(),
    }];
    *echo.reply.lock().unwrap() = Some(Reply::WithMedia("Attached.".into(), media));
    let asked = r.hs.send_text(&dm, &r.ada, "the report?");
    let sent = r.hs.wait_sent_by(&r.bot, 3, Duration::from_secs(10)).await;
    let file = &sent.last().unwrap().content;
    assert_eq!(file["msgtype"], "m.file", "{file}");
    assert_eq!((file["body"].as_str(), file["info"]["size"].as_u64()), (Some("report.pdf"), Some(3000)));
    assert_eq!(file["info"]["mimetype"], "application/pdf");
    let uploaded = r.hs.media(file["url"].as_str().unwrap()).expect("the file is in the media repository");
    assert_eq!((uploaded.bytes.len(), uploaded.uploader.as_deref()), (3000, Some(r.bot.as_str())));
    assert_eq!(
        file["m.relates_to"]["m.in_reply_to"]["event_id"],
        serde_json::json!(null),
        "only the first piece quotes"
    );
    let text = &sent[sent.len() - 2].content;
    assert_eq!(
        (text["body"].as_str(), text["m.relates_to"]["m.in_reply_to"]["event_id"].as_str()),
        (Some("Attached."), Some(asked.as_str()))
    );
    channels.stop().await;
}
