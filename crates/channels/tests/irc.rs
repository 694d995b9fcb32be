//! The IRC adapter against the IRC server twin: SASL PLAIN, channels and private messages,
//! line limits and flood control as a strict server enforces them, and the faults that make
//! bots go deaf (dropped connections, a stalled server, hostile bytes, a refused login), and
//! played-back lines told from new ones by `msgid` and `server-time`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clawline_channels::irc::IrcChannel;
use clawline_channels::{Ask, Backoff, Channel, Channels, ConnState, Progress, Reply, Responder};
use clawline_core::config::channels::Platform;
use clawline_core::config::{Config, LoadContext, load};
use clawline_store::Store;
use clawline_testkit::irc_server::IrcServer;
use futures_util::future::BoxFuture;

#[derive(Default, Clone)]
struct Echo {
    asks: Arc<Mutex<Vec<Ask>>>,
    long: Arc<Mutex<bool>>,
}

impl Responder for Echo {
    fn respond(&self, ask: Ask, _progress: Progress) -> BoxFuture<'static, Reply> {
        self.asks.lock().unwrap().push(ask.clone());
        let said = ask.text.rsplit(": ").next().unwrap_or_default().to_string();
        let long = *self.long.lock().unwrap();
        Box::pin(async move {
            if long {
                Reply::Text((0..120).map(|i| format!("word{i}")).collect::<Vec<_>>().join(" ").repeat(4))
            } else {
                Reply::Text(format!("re: {said}"))
            }
        })
    }
}

fn config(port: u16, extra: &str) -> Config {
    let text = format!(
        "{{ channels: {{ irc: {{ host: '127.0.0.1', port: {port}, tls: false, nick: 'claw', channels: ['#ops'],
             dmPolicy: 'open', allowFrom: ['*'], groups: {{ '#ops': {{ requireMention: true }} }}, {extra} }} }} }}"
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
    irc: IrcServer,
    channels: Channels,
    echo: Echo,
    _dir: tempfile::TempDir,
}

async fn rig(extra: &str) -> Rig {
    rig_with(extra, |_| {}).await
}

async fn rig_with(extra: &str, setup: impl FnOnce(&IrcServer)) -> Rig {
    let irc = IrcServer::start().await;
    setup(&irc);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    let cfg = config(irc.port(), extra);
    let acct = cfg.channels.accounts[0].clone();
    let Platform::Irc(settings) = &acct.platform else { panic!() };
    let adapter: Arc<dyn Channel> =
        Arc::new(IrcChannel::new(&acct.account_id, settings).with_keepalive(Duration::from_millis(1500)));
    let fast = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(300),
        max_after_fatal: Duration::from_millis(500),
    };
    let channels = Channels::with_adapters(&cfg, store, vec![(adapter, acct)]).with_backoff(fast);
    let echo = Echo::default();
    channels.start(Arc::new(echo.clone()));
    Rig { irc, channels, echo, _dir: dir }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sasl_login_then_answers_in_the_channel_and_in_private_within_the_rules() {
    let r = rig_with("sasl: { password: 'sasl-secret' }", |irc| irc.set_sasl_account("claw", "sasl-secret")).await;
    r.irc.wait_joined("#ops", Duration::from_secs(10)).await;
    let regs = r.irc.registrations();
    assert!(regs.iter().any(|g| g.sasl_ok()), "logged in with SASL PLAIN: {regs:?}");
    let ada = r.irc.user("ada");
    ada.join("#ops");
    ada.privmsg("#ops", "nobody asked claws");
    ada.privmsg("#ops", "claw: status?");
    let got = r.irc.wait_received("#ops", 1, Duration::from_secs(10)).await;
    assert_eq!(got[0].text, "ada: re: status?");
    ada.ctcp("claw", "VERSION");
    ada.privmsg("claw", "hello");
    let got = r.irc.wait_received("ada", 1, Duration::from_secs(10)).await;
    assert_eq!(got[0].text, "re: hello");
    assert_eq!(r.echo.asks.lock().unwrap().len(), 2, "only the two addressed messages were asked");
    assert!(r.irc.violations().is_empty(), "{:?}", r.irc.violations());
    r.channels.stop().await;
}

#[tokio::test]
async fn a_long_reply_is_split_into_valid_lines_paced_under_a_strict_flood_limit() {
    let r = rig_with("", |irc| irc.set_flood(5, Duration::from_millis(600), true)).await;
    r.irc.wait_joined("#ops", Duration::from_secs(10)).await;
    *r.echo.long.lock().unwrap() = true;
    let ada = r.irc.user("ada");
    ada.privmsg("claw", "tell me everything");
    let got = r.irc.wait_received("ada", 8, Duration::from_secs(30)).await;
    let joined: String = got.iter().map(|m| m.text.clone()).collect::<Vec<_>>().join(" ");
    assert!(joined.contains("word0") && joined.contains("word119"));
    assert!(
        r.irc.violations().is_empty(),
        "no over-long line, no flood: {:?} {:?}",
        r.irc.violations(),
        r.irc.connections()
    );
    assert_eq!(r.channels.status()[0].status.reconnects, 0, "never disconnected for flooding");
    r.channels.stop().await;
}

#[tokio::test]
async fn drops_stalls_and_hostile_bytes_are_survived_and_reported() {
    let r = rig("").await;
    r.irc.wait_joined("#ops", Duration::from_secs(10)).await;
    let ada = r.irc.user("ada");
    r.irc.send_raw_to_client(b":evil PRIVMSG claw :\xff\xfe not utf-8\r\n");
    r.irc.send_raw_to_client(&[b'x'; 20_000]);
    r.irc.send_raw_to_client(b"\r\n:ada!a@h PRIVMSG claw :after the junk\r\n");
    let got = r.irc.wait_received("ada", 1, Duration::from_secs(10)).await;
    assert_eq!(got[0].text, "re: after the junk");

    r.irc.drop_clients();
    until("reconnected", || {
        r.irc.connections().len() >= 2 && r.channels.status()[0].status.state == ConnState::Connected
    })
    .await;
    r.irc.wait_joined("#ops", Duration::from_secs(10)).await;
    ada.privmsg("claw", "still there?");
    let got = r.irc.wait_received("ada", 2, Duration::from_secs(10)).await;
    assert_eq!(got[1].text, "re: still there?");

    r.irc.stall(true);
    until("the stall noticed", || {
        r.channels.status()[0].status.last_error.as_deref().is_some_and(|e| e.contains("stalled"))
    })
    .await;
    r.irc.stall(false);
    until("connected again", || r.channels.status()[0].status.state == ConnState::Connected).await;
    r.channels.stop().await;
}

#[tokio::test]
async fn a_refused_sasl_login_is_a_failure_status_not_a_retry_storm() {
    let irc = IrcServer::start().await;
    irc.set_sasl_account("claw", "the-right-one");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    let cfg = config(irc.port(), "sasl: { password: 'wrong' }");
    let acct = cfg.channels.accounts[0].clone();
    let Platform::Irc(settings) = &acct.platform else { panic!() };
    let adapter: Arc<dyn Channel> = Arc::new(IrcChannel::new(&acct.account_id, settings));
    let slow = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(100),
        max_after_fatal: Duration::from_secs(30),
    };
    let channels = Channels::with_adapters(&cfg, store, vec![(adapter, acct)]).with_backoff(slow);
    channels.start(Arc::new(Echo::default()));
    until("the refusal", || channels.status()[0].status.state == ConnState::Failed).await;
    let s = channels.status()[0].status.clone();
    assert!(s.last_error.as_deref().unwrap().contains("SASL login failed"), "{s:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(irc.connections().len(), 1, "a fatal refusal waits long before trying again");
    channels.stop().await;
}

#[tokio::test]
async fn replays_are_recognized_by_msgid_or_server_time_and_unstamped_repeats_are_not() {
    let r = rig("").await;
    r.irc.wait_joined("#ops", Duration::from_secs(10)).await;
    let ada = r.irc.user("ada");
    let texts = |irc: &IrcServer| irc.received_by("ada").iter().map(|m| m.text.clone()).collect::<Vec<_>>();
    let regs = r.irc.registrations();
    assert!(regs[0].caps.contains(&"server-time".to_string()), "server-time asked for: {regs:?}");

    // The twin stamps lines (`server-time`); a line sent twice with one stamp is one message.
    r.irc.duplicate_next_privmsg();
    ada.privmsg("claw", "twice");
    ada.privmsg("claw", "fence");
    r.irc.wait_received("ada", 2, Duration::from_secs(10)).await;
    until("the replay counted", || r.channels.status()[0].status.duplicates == 1).await;
    assert_eq!(texts(&r.irc), ["re: twice", "re: fence"]);

    // An unstamped line without `msgid` cannot be told from a repeat: answered again, as
    // documented. With a `msgid` the repeat is recognized.
    let bare = b":ada!~ada@users.clawline.test PRIVMSG claw :bare\r\n";
    r.irc.send_raw_to_client(bare);
    r.irc.send_raw_to_client(bare);
    let tagged = b"@msgid=replayed-1 :ada!~ada@users.clawline.test PRIVMSG claw :tagged\r\n";
    r.irc.send_raw_to_client(tagged);
    r.irc.send_raw_to_client(tagged);
    ada.privmsg("claw", "fence two");
    r.irc.wait_received("ada", 6, Duration::from_secs(10)).await;
    until("the msgid replay counted", || r.channels.status()[0].status.duplicates == 2).await;
    assert_eq!(texts(&r.irc), ["re: twice", "re: fence", "re: bare", "re: bare", "re: tagged", "re: fence two"]);
    r.channels.stop().await;
}

#[tokio::test]
async fn a_bouncers_playback_is_not_answered_again_but_what_was_said_while_away_is() {
    use std::time::SystemTime;
    let irc = IrcServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    let start = |store: Store| {
        let cfg = config(irc.port(), "");
        let acct = cfg.channels.accounts[0].clone();
        let Platform::Irc(settings) = &acct.platform else { panic!() };
        let adapter: Arc<dyn Channel> = Arc::new(IrcChannel::new(&acct.account_id, settings));
        let channels = Channels::with_adapters(&cfg, store, vec![(adapter, acct)]);
        channels.start(Arc::new(Echo::default()));
        channels
    };
    let texts = |irc: &IrcServer| irc.received_by("ada").iter().map(|m| m.text.clone()).collect::<Vec<_>>();
    let channels = start(store.clone());
    irc.wait_joined("#ops", Duration::from_secs(10)).await;
    let ada = irc.user("ada");
    // On the first start, a buffer from before clawline ever listened is not answered.
    irc.replay_privmsg("ada", "from last week", SystemTime::now() - Duration::from_secs(7 * 86_400));
    ada.privmsg("claw", "live one");
    irc.wait_received("ada", 1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(texts(&irc), ["re: live one"]);
    // The stamp the server gave the live line, to play it back exactly.
    let stamped = irc.lines_to_client().into_iter().find(|(_, l)| l.ends_with("PRIVMSG claw :live one")).unwrap().1;
    let heard_live =
        humantime::parse_rfc3339(stamped.strip_prefix("@time=").unwrap().split(' ').next().unwrap()).unwrap();
    channels.stop().await;

    // Away: ada says something the bouncer keeps. Back: it plays back its whole buffer.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let said_while_away = SystemTime::now();
    let channels = start(store.clone());
    irc.wait_registered(2, Duration::from_secs(10)).await;
    irc.wait_joined("#ops", Duration::from_secs(10)).await;
    irc.replay_privmsg("ada", "from last week", SystemTime::now() - Duration::from_secs(7 * 86_400));
    irc.replay_privmsg("ada", "live one", heard_live);
    irc.replay_privmsg("ada", "said while away", said_while_away);
    ada.privmsg("claw", "after the restart");
    irc.wait_received("ada", 3, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(texts(&irc), ["re: live one", "re: said while away", "re: after the restart"]);
    channels.stop().await;
}
