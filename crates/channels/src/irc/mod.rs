//! IRC: one connection to one network, over TLS by default; SASL PLAIN (IRCv3) or NickServ;
//! channels and private messages; flood control; reconnect with nick recovery.
//!
//! A connection registers (CAP/SASL, PASS, NICK, USER; a taken nick gets `_` appended and the
//! configured one is asked for again every minute), identifies to NickServ, joins its channels,
//! then reads lines. Every line from the server is progress; when the server is quiet for the
//! keepalive interval a PING is sent, so a silent-but-open socket shows up as a stall and the
//! supervisor replaces it. Lines go out through one writer that paces them (a burst, then one
//! per 700 ms) so the server never disconnects us for flooding, and a send returns only once
//! its lines are written. Plain IRC has no history: what is said while disconnected is not
//! seen. A server or bouncer that offers `server-time` gets it asked for, and its played-back
//! buffer is told from new lines by the stamps (`replay.rs`).

pub mod api;
pub mod config;
pub mod inbound;
pub mod outbound;
pub mod replay;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use clawline_core::config::channels::{DeliverySettings, IrcSettings};
use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use self::api::{Message, fold, line, parse};
use crate::channel::{Capabilities, Channel, ConnectionError, SendError, Sent};
use crate::link::Link;
use crate::message::{OutboundBody, Target};

use crate::tls::Io;

/// What one connection knows about the server's `server-time` stamps.
struct Stamps {
    /// Stamped messages older than this (Unix ms) are played back, not new; `None` when the
    /// server does not stamp.
    since: Option<i64>,
    /// The newest stamp journaled (the next connection's watermark).
    newest: i64,
}

/// A line to write and who to tell once it is on the socket.
type Outgoing = (String, oneshot::Sender<bool>);

/// One IRC account.
pub struct IrcChannel {
    account_id: String,
    settings: IrcSettings,
    /// The TLS configuration trusting `caFile` as well, built on the first TLS connect (it
    /// loads the system's roots too), then kept; unused without a `caFile`.
    own_roots: std::sync::OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
    /// The live connection's writer, once registered.
    writer: Mutex<Option<mpsc::Sender<Outgoing>>>,
    /// The nick the server knows us by now.
    nick: Mutex<String>,
    keepalive: Duration,
    flood: (u32, Duration),
    nick_recovery: Duration,
    counter: AtomicU64,
}

fn transient(e: impl std::fmt::Display) -> ConnectionError {
    ConnectionError::Transient(e.to_string())
}

impl IrcChannel {
    pub fn new(account_id: &str, settings: &IrcSettings) -> IrcChannel {
        IrcChannel {
            account_id: account_id.to_string(),
            settings: settings.clone(),
            own_roots: std::sync::OnceLock::new(),
            writer: Mutex::new(None),
            nick: Mutex::new(settings.nick.clone()),
            keepalive: config::KEEPALIVE,
            flood: (config::FLOOD_BURST, config::FLOOD_INTERVAL),
            nick_recovery: config::NICK_RECOVERY_EVERY,
            counter: AtomicU64::new(0),
        }
    }

    /// Changes the quiet time before a client PING (tests shorten it); a stall is two of them.
    pub fn with_keepalive(mut self, keepalive: Duration) -> IrcChannel {
        self.keepalive = keepalive;
        self
    }

    /// Changes how often a replaced nick asks for the configured one again.
    pub fn with_nick_recovery(mut self, every: Duration) -> IrcChannel {
        self.nick_recovery = every;
        self
    }

    /// Changes the flood control (burst, then one line per interval).
    pub fn with_flood(mut self, burst: u32, interval: Duration) -> IrcChannel {
        self.flood = (burst, interval);
        self
    }

    fn current_nick(&self) -> String {
        self.nick.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_nick(&self, nick: &str) {
        *self.nick.lock().unwrap_or_else(|p| p.into_inner()) = nick.to_string();
    }

    fn set_writer(&self, w: Option<mpsc::Sender<Outgoing>>) {
        *self.writer.lock().unwrap_or_else(|p| p.into_inner()) = w;
    }

    fn unique(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", clawline_store::now_ms())
    }

    async fn open(&self) -> Result<Box<dyn Io>, ConnectionError> {
        let s = &self.settings;
        let tcp =
            tokio::time::timeout(Duration::from_secs(15), tokio::net::TcpStream::connect((s.host.as_str(), s.port)))
                .await
                .map_err(|_| transient(format!("connecting to {}:{} timed out", s.host, s.port)))?
                .map_err(|e| transient(format!("cannot connect to {}:{}: {e}", s.host, s.port)))?;
        let _ = tcp.set_nodelay(true);
        if !s.tls {
            return Ok(Box::new(tcp));
        }
        let own_roots =
            s.ca_pem.as_deref().map(|pem| self.own_roots.get_or_init(|| crate::tls::config_with_roots(pem)));
        let wrapped = match own_roots {
            None => crate::tls::wrap(tcp, &s.host).await,
            // A caFile that cannot be used will not get better by retrying.
            Some(Err(e)) => return Err(ConnectionError::Fatal(e.clone())),
            Some(Ok(config)) => crate::tls::wrap_with(tcp, &s.host, config.clone()).await,
        };
        wrapped.map_err(|e| {
            if e.starts_with("TLS setup") || e.contains("is not a host name") {
                ConnectionError::Fatal(e)
            } else {
                transient(e)
            }
        })
    }

    /// Runs one connection: registration, then the read loop.
    async fn run(&self, link: &Link) -> Result<(), ConnectionError> {
        let stream = self.open().await?;
        let (mut reader, writer) = tokio::io::split(stream);
        // Control lines (PONG, PING, NICK, JOIN) go ahead of messages, so a long reply being
        // paced out never delays the keepalive that proves the connection alive.
        let (tx, rx) = mpsc::channel::<Outgoing>(256);
        let (data_tx, data_rx) = mpsc::channel::<Outgoing>(256);
        let pacer = tokio::spawn(write_paced(writer, rx, data_rx, self.flood));
        let result = async {
            let mut lines = LineReader::default();
            let caps = self.register(&mut reader, &mut lines, &tx).await?;
            let mut stamps = self.stamps(link, &caps).await?;
            link.health().progress();
            link.health().set_identity(self.current_nick());
            if let Some((service, password)) = &self.settings.nickserv {
                let identify = format!("IDENTIFY {}", password.expose());
                send_line(&tx, "PRIVMSG", &[service, &identify]).await?;
            }
            for c in &self.settings.channels {
                let (name, key) = c.split_once(' ').map_or((c.as_str(), None), |(n, k)| (n, Some(k)));
                match key {
                    Some(k) => send_line(&tx, "JOIN", &[name, k]).await?,
                    None => send_line(&tx, "JOIN", &[name]).await?,
                }
            }
            self.set_writer(Some(data_tx.clone()));
            self.read_loop(link, &mut reader, &mut lines, &tx, &mut stamps).await
        }
        .await;
        self.set_writer(None);
        pacer.abort();
        result
    }

    async fn register(
        &self,
        reader: &mut (impl AsyncRead + Unpin),
        lines: &mut LineReader,
        tx: &mpsc::Sender<Outgoing>,
    ) -> Result<Vec<String>, ConnectionError> {
        let s = &self.settings;
        // Capability negotiation: a server without it answers 421 and registers as usual.
        send_line(tx, "CAP", &["LS", "302"]).await?;
        let mut offered: Vec<String> = Vec::new();
        let mut pending_reqs = 0usize;
        let mut acked: Vec<String> = Vec::new();
        if let Some(p) = &s.server_password {
            send_line(tx, "PASS", &[p.expose()]).await?;
        }
        let mut nick = s.nick.clone();
        self.set_nick(&nick);
        send_line(tx, "NICK", &[&nick]).await?;
        send_line(tx, "USER", &[&s.username, "0", "*", &s.realname]).await?;
        let deadline = Instant::now() + config::REGISTER_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = match tokio::time::timeout(left, lines.next(reader)).await {
                Err(_) => return Err(transient("the server did not finish registration within 30 s")),
                Ok(Err(e)) => return Err(transient(format!("the connection broke while registering: {e}"))),
                Ok(Ok(None)) => return Err(transient("the server closed the connection while registering")),
                Ok(Ok(Some(m))) => m,
            };
            match m.command.as_str() {
                "PING" => send_line(tx, "PONG", &[m.param(0).unwrap_or_default()]).await?,
                "CAP" => {
                    let sub = m.param(1).unwrap_or_default().to_ascii_uppercase();
                    let caps = m.params.last().map(String::as_str).unwrap_or_default();
                    let listed = || caps.split(' ').filter(|c| !c.is_empty()).map(|c| c.split('=').next().unwrap_or(c));
                    match sub.as_str() {
                        "LS" => {
                            offered.extend(listed().map(str::to_string));
                            // `CAP * LS * :…` says more lines follow.
                            if m.param(2) == Some("*") {
                                continue;
                            }
                            let wanted: Vec<&str> = config::WANTED_CAPS
                                .iter()
                                .copied()
                                .filter(|w| offered.iter().any(|o| o == w))
                                .collect();
                            if !wanted.is_empty() {
                                send_line(tx, "CAP", &["REQ", &wanted.join(" ")]).await?;
                                pending_reqs += 1;
                            }
                            if s.sasl.is_some() {
                                if !offered.iter().any(|o| o == "sasl") {
                                    return Err(ConnectionError::Fatal(format!(
                                        "{} does not offer SASL, which channels.irc.sasl asks for",
                                        s.host
                                    )));
                                }
                                send_line(tx, "CAP", &["REQ", "sasl"]).await?;
                                pending_reqs += 1;
                            }
                            if pending_reqs == 0 {
                                send_line(tx, "CAP", &["END"]).await?;
                            }
                        }
                        "ACK" | "NAK" => {
                            pending_reqs = pending_reqs.saturating_sub(1);
                            let sasl = listed().any(|c| c == "sasl");
                            if sub == "ACK" {
                                acked.extend(listed().map(str::to_string));
                            }
                            match (sub.as_str(), sasl) {
                                ("NAK", true) => {
                                    return Err(ConnectionError::Fatal(format!(
                                        "{} refused the SASL capability",
                                        s.host
                                    )));
                                }
                                ("ACK", true) => send_line(tx, "AUTHENTICATE", &["PLAIN"]).await?,
                                // Without SASL in flight, the last answer ends negotiation.
                                _ if pending_reqs == 0 && !acked.iter().any(|c| c == "sasl") => {
                                    send_line(tx, "CAP", &["END"]).await?
                                }
                                _ => {}
                            }
                        }
                        _ => {}
                    }
                }
                "AUTHENTICATE" if m.param(0) == Some("+") => {
                    if let Some((user, pass)) = &s.sasl {
                        let blob = format!("{user}\0{user}\0{}", pass.expose());
                        let encoded = base64::engine::general_purpose::STANDARD.encode(blob.as_bytes());
                        // Payloads longer than 400 bytes go in 400-byte pieces (IRCv3 SASL).
                        for piece in encoded.as_bytes().chunks(400) {
                            send_line(tx, "AUTHENTICATE", &[std::str::from_utf8(piece).unwrap_or("+")]).await?;
                        }
                        if encoded.len() % 400 == 0 {
                            send_line(tx, "AUTHENTICATE", &["+"]).await?;
                        }
                    }
                }
                "903" => send_line(tx, "CAP", &["END"]).await?,
                "904" | "905" | "906" | "908" => {
                    return Err(ConnectionError::Fatal(format!(
                        "SASL login failed ({} {}); check channels.irc.sasl",
                        m.command,
                        m.params.last().cloned().unwrap_or_default()
                    )));
                }
                "433" | "436" => {
                    nick = config::next_nick(&nick);
                    self.set_nick(&nick);
                    send_line(tx, "NICK", &[&nick]).await?;
                }
                "432" => {
                    return Err(ConnectionError::Fatal(format!("the server refused the nick `{nick}` as invalid")));
                }
                "464" => return Err(ConnectionError::Fatal("the server refused the password (464)".into())),
                "465" => return Err(ConnectionError::Fatal("this client is banned from the server (465)".into())),
                "001" => {
                    if let Some(n) = m.param(0) {
                        self.set_nick(n);
                    }
                    return Ok(acked);
                }
                "ERROR" => return Err(transient(format!("the server said: {}", m.params.join(" ")))),
                _ => {}
            }
        }
    }

    async fn read_loop(
        &self,
        link: &Link,
        reader: &mut (impl AsyncRead + Unpin),
        lines: &mut LineReader,
        tx: &mpsc::Sender<Outgoing>,
        stamps: &mut Stamps,
    ) -> Result<(), ConnectionError> {
        let mut last_heard = Instant::now();
        let mut pinged = false;
        let mut recovery = tokio::time::interval(self.nick_recovery);
        recovery.tick().await;
        loop {
            let quiet_for = self.keepalive.saturating_sub(last_heard.elapsed());
            tokio::select! {
                read = lines.next(reader) => {
                    let m = match read {
                        Ok(Some(m)) => m,
                        Ok(None) => return Err(transient("the server closed the connection")),
                        Err(e) => return Err(transient(format!("the connection broke: {e}"))),
                    };
                    last_heard = Instant::now();
                    pinged = false;
                    link.health().progress();
                    self.handle(link, &m, tx, stamps).await?;
                }
                _ = tokio::time::sleep(quiet_for), if !pinged => {
                    // Quiet: ask the server for a sign of life; the watchdog judges the answer.
                    send_line(tx, "PING", &[&format!("clawline-{}", self.counter.fetch_add(1, Ordering::Relaxed))]).await?;
                    pinged = true;
                }
                _ = recovery.tick() => {
                    if fold(&self.current_nick()) != fold(&self.settings.nick) {
                        send_line(tx, "NICK", &[&self.settings.nick]).await?;
                    }
                }
            }
        }
    }

    /// The replay watermark of a connection whose server stamps lines: the stored one, or on
    /// the first start ever the local clock, stored at once.
    async fn stamps(&self, link: &Link, caps: &[String]) -> Result<Stamps, ConnectionError> {
        if !caps.iter().any(|c| c == "server-time") {
            return Ok(Stamps { since: None, newest: 0 });
        }
        let stored = link.cursor().await.map_err(|e| transient(format!("could not read the journal cursor: {e}")))?;
        let since = match replay::watermark(stored.as_deref()) {
            Some(w) => w,
            None => {
                let now = clawline_store::now_ms();
                link.accept(Vec::new(), Some(replay::cursor(now)))
                    .await
                    .map_err(|e| transient(format!("could not store the journal cursor: {e}")))?;
                now
            }
        };
        Ok(Stamps { since: Some(since), newest: since })
    }

    async fn handle(
        &self,
        link: &Link,
        m: &Message,
        tx: &mpsc::Sender<Outgoing>,
        stamps: &mut Stamps,
    ) -> Result<(), ConnectionError> {
        match m.command.as_str() {
            "PING" => send_line(tx, "PONG", &[m.param(0).unwrap_or_default()]).await?,
            "NICK" => {
                if m.nick().is_some_and(|n| fold(n) == fold(&self.current_nick()))
                    && let Some(new) = m.param(0)
                {
                    self.set_nick(new);
                    link.health().set_identity(new.to_string());
                }
            }
            "PRIVMSG" => {
                let own = self.current_nick();
                let mut unique = || self.unique();
                if let Some(msg) = inbound::to_inbound(m, &self.account_id, &own, &mut unique) {
                    let at = stamps.since.and(replay::server_time_ms(m));
                    if let Some(since) = stamps.since
                        && replay::is_replayed(at, since)
                    {
                        tracing::debug!(account = %self.account_id, peer = %msg.peer_id, "a line played back from before clawline last listened; not answered");
                        return Ok(());
                    }
                    let cursor = at.filter(|t| *t > stamps.newest).map(|t| {
                        stamps.newest = t;
                        replay::cursor(t)
                    });
                    link.accept(vec![msg], cursor)
                        .await
                        .map_err(|e| transient(format!("could not journal a message: {e}")))?;
                }
            }
            "KICK" if m.param(1).is_some_and(|n| fold(n) == fold(&self.current_nick())) => {
                tracing::warn!(
                    channel = m.param(0).unwrap_or_default(),
                    by = m.nick().unwrap_or_default(),
                    reason = m.param(2).unwrap_or_default(),
                    "kicked from an IRC channel"
                );
            }
            "ERROR" => return Err(transient(format!("the server closed the link: {}", m.params.join(" ")))),
            _ => {}
        }
        Ok(())
    }
}

async fn send_line(tx: &mpsc::Sender<Outgoing>, command: &str, params: &[&str]) -> Result<(), ConnectionError> {
    let l = line(command, params).map_err(|e| transient(format!("{command}: {e}")))?;
    let (ack, _done) = oneshot::channel();
    tx.send((l, ack)).await.map_err(|_| transient("the connection's writer stopped"))
}

/// Writes queued lines, a burst and then one per interval, acknowledging each once written;
/// control lines first.
async fn write_paced(
    mut w: impl AsyncWrite + Unpin,
    mut control: mpsc::Receiver<Outgoing>,
    mut data: mpsc::Receiver<Outgoing>,
    (burst, interval): (u32, Duration),
) {
    let mut tokens = f64::from(burst.max(1));
    let mut last = Instant::now();
    loop {
        let next = tokio::select! {
            biased;
            c = control.recv() => c,
            d = data.recv() => d,
        };
        let Some((l, ack)) = next else { return };
        let now = Instant::now();
        tokens = (tokens + now.duration_since(last).as_secs_f64() / interval.as_secs_f64().max(1e-3))
            .min(f64::from(burst.max(1)));
        last = now;
        if tokens < 1.0 {
            tokio::time::sleep(interval.mul_f64(1.0 - tokens)).await;
            tokens = 1.0;
            last = Instant::now();
        }
        tokens -= 1.0;
        let ok = w.write_all(l.as_bytes()).await.is_ok() && w.flush().await.is_ok();
        let _ = ack.send(ok);
        if !ok {
            return;
        }
    }
}

/// Reads lines of at most [`config::MAX_READ_LINE`] bytes; longer ones are skipped, invalid
/// UTF-8 is replaced, lines that do not parse are dropped.
#[derive(Default)]
struct LineReader {
    buf: Vec<u8>,
    skipping: bool,
}

impl LineReader {
    async fn next(&mut self, r: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Option<Message>> {
        loop {
            while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let raw: Vec<u8> = self.buf.drain(..=pos).collect();
                if std::mem::take(&mut self.skipping) {
                    continue;
                }
                let text = String::from_utf8_lossy(&raw);
                if let Some(m) = parse(&text) {
                    return Ok(Some(m));
                }
            }
            if self.buf.len() > config::MAX_READ_LINE {
                self.buf.clear();
                self.skipping = true;
            }
            let mut chunk = [0u8; 4096];
            let n = r.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

impl Channel for IrcChannel {
    fn channel(&self) -> &'static str {
        "irc"
    }

    fn account_id(&self) -> &str {
        &self.account_id
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    fn stall_after(&self) -> Duration {
        self.keepalive * 2
    }

    fn mode(&self) -> &'static str {
        if self.settings.tls { "tls" } else { "plain" }
    }

    fn connect<'a>(&'a self, link: &'a Link) -> BoxFuture<'a, Result<(), ConnectionError>> {
        Box::pin(self.run(link))
    }

    fn prepare(&self, markdown: &str, delivery: &DeliverySettings) -> Vec<OutboundBody> {
        outbound::prepare(markdown, delivery)
    }

    fn send<'a>(
        &'a self,
        target: &'a Target,
        body: &'a OutboundBody,
        _key: &'a str,
    ) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(async move {
            let Some(tx) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
                return Err(SendError::Transient("not connected to the IRC server".into()));
            };
            for text in outbound::lines_for(target, body) {
                let l = line("PRIVMSG", &[&target.peer_id, &text]).map_err(|e| SendError::Permanent(e.to_string()))?;
                let (ack, done) = oneshot::channel();
                tx.send((l, ack)).await.map_err(|_| SendError::Transient("the connection closed".into()))?;
                if !done.await.unwrap_or(false) {
                    return Err(SendError::Transient("the connection closed while sending".into()));
                }
            }
            Ok(Sent { message_id: self.unique() })
        })
    }

    fn typing<'a>(&'a self, _target: &'a Target) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async { Ok(()) })
    }

    fn edit<'a>(&'a self, _t: &'a Target, _id: &'a str, _b: &'a OutboundBody) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async { Err(SendError::Permanent("IRC messages cannot be edited".into())) })
    }

    fn react<'a>(&'a self, _t: &'a Target, _id: &'a str, _e: &'a str) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async { Err(SendError::Permanent("IRC has no reactions".into())) })
    }

    fn probe(&self) -> BoxFuture<'_, Result<serde_json::Value, SendError>> {
        Box::pin(async move {
            let connected = self.writer.lock().unwrap_or_else(|p| p.into_inner()).is_some();
            if !connected {
                return Err(SendError::Transient(format!("not connected to {}", self.settings.host)));
            }
            Ok(
                serde_json::json!({"nick": self.current_nick(), "server": self.settings.host, "port": self.settings.port,
                                  "tls": self.settings.tls, "channels": self.settings.channels.iter().map(|c| c.split(' ').next().unwrap_or_default()).collect::<Vec<_>>()}),
            )
        })
    }

    fn pace(&self, _target: &Target) -> (Duration, u32) {
        // The connection's writer paces every line; nothing more per chat.
        (Duration::ZERO, 1)
    }
}
