//! The IRC adapter against a real ngIRCd (the slow lane): `scripts/ngircd start` installs and
//! starts it on loopback. A raw client plays the person; clawline registers, joins, answers in
//! the channel and in private, and gets its nick back after a collision. Over TLS (ngIRCd's
//! GnuTLS, a certificate from the script's own authority) clawline connects only when told to
//! trust that authority with `caFile`.
//! `CLAWLINE_SKIP_NGIRCD=1` skips the lane on machines that cannot install ngIRCd.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clawline_channels::irc::IrcChannel;
use clawline_channels::{Ask, Backoff, Channel, Channels, ConnState, Progress, Reply, Responder};
use clawline_core::config::channels::Platform;
use clawline_core::config::{Config, LoadContext, load};
use clawline_store::Store;
use futures_util::future::BoxFuture;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Default, Clone)]
struct Echo {
    asks: Arc<Mutex<Vec<Ask>>>,
}

impl Responder for Echo {
    fn respond(&self, ask: Ask, _progress: Progress) -> BoxFuture<'static, Reply> {
        self.asks.lock().unwrap().push(ask.clone());
        let said = ask.text.rsplit(": ").next().unwrap_or_default().to_string();
        Box::pin(async move { Reply::Text(format!("re: {said}")) })
    }
}

/// `(host, port)` of a running ngIRCd, started by the project's script.
fn server() -> Option<(String, u16)> {
    server_env().map(|get| (get("IRC_HOST"), get("IRC_PORT").parse().expect("port")))
}

/// What `scripts/ngircd start` printed, as a lookup (`IRC_HOST`, `IRC_PORT`, `IRC_TLS_PORT`,
/// `IRC_CA_FILE`); `None` when the lane is skipped.
fn server_env() -> Option<impl Fn(&str) -> String> {
    if std::env::var_os("CLAWLINE_SKIP_NGIRCD").is_some() {
        eprintln!("CLAWLINE_SKIP_NGIRCD is set: skipping the real-ngIRCd lane");
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ngircd");
    let out = std::process::Command::new(script).arg("start").output().expect("run scripts/ngircd");
    assert!(out.status.success(), "scripts/ngircd start failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    Some(move |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| panic!("scripts/ngircd start printed no {k}: {text}"))
            .to_string()
    })
}

/// A person on IRC, speaking raw protocol.
struct Person {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Person {
    async fn connect(host: &str, port: u16, nick: &str) -> Person {
        let s = TcpStream::connect((host, port)).await.unwrap();
        let (r, w) = s.into_split();
        let mut p = Person { r: BufReader::new(r), w };
        p.send(&format!("NICK {nick}")).await;
        p.send(&format!("USER {nick} 0 * :{nick}")).await;
        p.until(" 001 ").await;
        p
    }

    async fn send(&mut self, line: &str) {
        self.w.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
    }

    /// Reads lines (answering PINGs) until one contains `needle`; returns it.
    async fn until(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout_at(deadline, self.r.read_line(&mut line))
                .await
                .unwrap_or_else(|_| panic!("never saw `{needle}`"))
                .unwrap();
            assert!(n > 0, "connection closed before `{needle}`");
            if let Some(rest) = line.strip_prefix("PING ") {
                self.send(&format!("PONG {}", rest.trim_end())).await;
            }
            if line.contains(needle) {
                return line;
            }
        }
    }
}

fn config(host: &str, port: u16, nick: &str) -> Config {
    config_with(host, port, nick, "tls: false")
}

fn config_with(host: &str, port: u16, nick: &str, extra: &str) -> Config {
    let text = format!(
        "{{ channels: {{ irc: {{ host: '{host}', port: {port}, nick: '{nick}', channels: ['#test'], {extra},
             dmPolicy: 'open', allowFrom: ['*'], groups: {{ '#test': {{ requireMention: true }} }} }} }} }}"
    );
    let env = |_: &str| None;
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| e.to_string());
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
    let Platform::Irc(settings) = &acct.platform else { panic!() };
    let irc: Arc<dyn Channel> =
        Arc::new(IrcChannel::new(&acct.account_id, settings).with_nick_recovery(Duration::from_secs(2)));
    let fast = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(1),
        max_after_fatal: Duration::from_secs(2),
    };
    let channels = Channels::with_adapters(cfg, store.clone(), vec![(irc, acct)]).with_backoff(fast);
    channels.start(Arc::new(echo.clone()));
    channels
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn answers_in_the_channel_when_addressed_and_in_private_and_recovers_its_nick() {
    let Some((host, port)) = server() else { return };
    let nick = format!("claw{}", std::process::id() % 10_000);
    // Someone holds our nick first: clawline must register under another and win it back.
    let mut squatter = Person::connect(&host, port, &nick).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    let cfg = config(&host, port, &nick);
    let echo = Echo::default();
    let channels = start(&cfg, &store, &echo);
    until("registration", || channels.status()[0].status.state == ConnState::Connected).await;
    assert_eq!(channels.status()[0].status.identity.as_deref(), Some(format!("{nick}_").as_str()));

    let who = format!("ada{}", std::process::id() % 10_000);
    let mut ada = Person::connect(&host, port, &who).await;
    ada.send("JOIN #test").await;
    ada.until(" 366 ").await;
    squatter.send("QUIT :bye").await;
    until("the nick back", || channels.status()[0].status.identity.as_deref() == Some(nick.as_str())).await;

    ada.send("PRIVMSG #test :just talking").await;
    ada.send(&format!("PRIVMSG #test :{nick}: ping?")).await;
    let got = ada.until("PRIVMSG #test :").await;
    assert!(got.contains(&format!(":{who}: re: ping?")), "{got}");
    ada.send(&format!("PRIVMSG {nick} :\x01VERSION\x01")).await;
    ada.send(&format!("PRIVMSG {nick} :hello in private")).await;
    let got = ada.until(&format!("PRIVMSG {who} :")).await;
    assert!(got.trim_end().ends_with(":re: hello in private"), "{got}");
    let asks = echo.asks.lock().unwrap().clone();
    assert_eq!(asks.len(), 2, "the unaddressed line and the CTCP were not answered: {asks:?}");
    // `#` cannot appear in a session key; it becomes `_` like every other such character.
    assert_eq!(asks[0].session_key, "agent:main:irc:group:_test");
    channels.stop().await;
}

#[tokio::test]
async fn over_tls_it_trusts_the_servers_authority_only_when_given_its_ca_file() {
    let Some(get) = server_env() else { return };
    let (host, port, ca) = (get("IRC_HOST"), get("IRC_TLS_PORT").parse::<u16>().expect("port"), get("IRC_CA_FILE"));
    let plain: u16 = get("IRC_PORT").parse().expect("port");
    let nick = format!("tls{}", std::process::id() % 10_000);

    // Without caFile the system's roots do not know the test authority: refused, and said so.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
    let untrusting = start(&config_with(&host, port, &nick, "tls: true"), &store, &Echo::default());
    until("a TLS error in status", || {
        untrusting.status()[0].status.last_error.as_deref().is_some_and(|e| e.contains("TLS with"))
    })
    .await;
    let error = untrusting.status()[0].status.last_error.clone().unwrap_or_default();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert_ne!(untrusting.status()[0].status.state, ConnState::Connected);
    untrusting.stop().await;

    // With it: registered over TLS, and a person on the plain port is answered.
    let store = Store::open(&dir.path().join("t.sqlite")).unwrap();
    let echo = Echo::default();
    let channels = start(&config_with(&host, port, &nick, &format!("tls: true, caFile: '{ca}'")), &store, &echo);
    until("registration over TLS", || channels.status()[0].status.state == ConnState::Connected).await;
    assert_eq!(channels.status()[0].status.mode, "tls");
    let who = format!("bo{}", std::process::id() % 10_000);
    let mut bo = Person::connect(&host, plain, &who).await;
    bo.send(&format!("PRIVMSG {nick} :over tls?")).await;
    let got = bo.until(&format!("PRIVMSG {who} :")).await;
    assert!(got.trim_end().ends_with(":re: over tls?"), "{got}");
    channels.stop().await;
}
