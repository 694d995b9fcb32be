//! A twin of an IRC server (RFC 1459/2812 as the "Modern IRC Client Protocol" document
//! describes today's servers, with IRCv3 capability negotiation, SASL PLAIN, `server-time` and
//! `message-tags`) for tests of an IRC client, plus simulated people and services on the same
//! network. It must not talk to the internet, must not accept what a real server refuses, and
//! must not be lenient where real servers are strict; where the documents leave a choice it
//! follows what ngIRCd (the real server of the slow lane, `scripts/ngircd`) or the common
//! servers answer, and says so below.
//!
//! Start one with [`IrcServer::start`] (plain TCP on 127.0.0.1, random port), point the client
//! at [`IrcServer::host`]/[`IrcServer::port`], configure accounts and limits
//! ([`IrcServer::set_sasl_account`], [`IrcServer::set_nickserv`], [`IrcServer::set_flood`], …),
//! create simulated people with [`IrcServer::user`] ([`IrcUser::join`], [`IrcUser::privmsg`],
//! [`IrcUser::ctcp`], …) and inspect what the client did ([`IrcServer::received_by`],
//! [`IrcServer::wait_received`], [`IrcServer::registrations`], [`IrcServer::violations`], …).
//!
//! There is no TLS listener: testkit has no TLS server crate and no certificate generator among
//! its dependencies (rustls and tokio-rustls are in Cargo.lock only through reqwest, rcgen not at
//! all), so a `start_tls` would need a new dependency. Use the slow lane for TLS questions.
//!
//! # Wire
//!
//! - Lines end with CR LF; a bare LF is accepted (as the document asks of servers) but recorded
//!   as [`ViolationKind::BareLineFeed`]; empty lines are ignored. NUL or a lone CR inside a line
//!   drops the line ([`ViolationKind::ForbiddenByte`]). Bytes that are not UTF-8 are taken
//!   lossily and recorded ([`ViolationKind::InvalidUtf8`]).
//! - A line may be 512 bytes including CR LF, plus a tags section (`@…` and its space) of at
//!   most 4096 bytes. A longer line is a [`ViolationKind::LineTooLong`]: by default it is
//!   discarded and answered `417 <nick> :Input line was too long` (`ERR_INPUTTOOLONG`, what the
//!   Modern IRC document prefers); with [`IrcServer::set_overlong_disconnect`] the client is
//!   closed with `ERROR :Closing Link: 127.0.0.1 (Request too long)`, which is what ngIRCd does.
//! - A client must not send a source prefix (recorded, then ignored as servers do) nor tags
//!   before negotiating `message-tags` (recorded, answered `421`).
//! - Lines the twin sends are at most 510 bytes plus CR LF before tags: longer texts from
//!   simulated people are cut at a UTF-8 boundary, as a server relaying them would. Use
//!   [`IrcServer::send_raw_to_client`] to send anything else.
//! - Names are compared with `CASEMAPPING=ascii`. Nicks: 1–30 of letters, digits and
//!   ``[]{}\|^_`-``, not starting with a digit or `-`. Channels: `#` and 1–49 more bytes without
//!   space, comma or BEL.
//!
//! # Registration
//!
//! `NICK` and `USER <user> <mode> <unused> <realname>` (and `PASS` first when
//! [`IrcServer::set_password`] is set: a wrong or missing one is `464` and `ERROR`), with `CAP
//! LS [302]`/`CAP REQ` suspending registration until `CAP END`. Before registration only `CAP`,
//! `AUTHENTICATE`, `PASS`, `NICK`, `USER`, `PING`, `PONG` and `QUIT` are taken; anything else
//! is `451 * :You have not registered` ([`ViolationKind::NotRegistered`]). A taken nick is `433
//! <nick or *> <nick> :Nickname is already in use` and the NICK is ignored, so the client must
//! send another; an invalid one `432`, a missing one `431`. With
//! [`IrcServer::set_registration_ping`] the twin sends `PING :<token>` on connect and only
//! registers after the matching `PONG` (ngIRCd's `RequireAuthPing`). A client that has not
//! registered within [`IrcServer::set_registration_timeout`] (60 s) is closed. On success it
//! gets `001`–`004`, one `005` (`CASEMAPPING=ascii CHANTYPES=# PREFIX=(ov)@+ CHANMODES=b,k,l,imnt
//! NICKLEN=30 …`), `251` and the MOTD (`375`/`372`/`376`, or `422` when
//! [`IrcServer::set_motd`] is empty). Users are `nick!~user@127.0.0.1` (no ident).
//!
//! Capabilities: `message-tags`, `server-time` (every line to the client then starts with
//! `@time=YYYY-MM-DDThh:mm:ss.sssZ`) and, once a SASL account is configured, `sasl`
//! (`sasl=PLAIN` for `CAP LS 302`). `CAP REQ` is acknowledged or refused as a whole (`ACK`/`NAK`),
//! unknown subcommands are `410`.
//!
//! SASL (IRCv3 `sasl-3.1`): `AUTHENTICATE PLAIN` → `AUTHENTICATE +`; the client sends base64 of
//! `authzid\0authcid\0password` in chunks of 400 bytes (a 400-byte last chunk followed by
//! `AUTHENTICATE +`). Right credentials ([`IrcServer::set_sasl_account`]; an authzid must be
//! empty or equal the authcid) are `900 <nick> <nick>!<user>@<host> <account> :You are now
//! logged in as <account>` and `903`; wrong ones, bad base64 or a wrong shape `904`; another
//! mechanism `908 <nick> PLAIN :are available SASL mechanisms` then `904`; `AUTHENTICATE *` is
//! `906`; a chunk over 400 bytes `905`; a second success `907`. Finishing registration while an
//! exchange is in progress aborts it with `906`. AUTHENTICATE without the `sasl` capability or
//! after registration is answered `904` and recorded ([`ViolationKind::AuthenticateWithoutCap`],
//! [`ViolationKind::AuthenticateAfterRegistration`]). Every exchange is in
//! [`IrcServer::sasl_attempts`].
//!
//! # After registration
//!
//! - `JOIN <chans> [<keys>]` (and `JOIN 0`): the client gets its `JOIN`, `332`/`333` when there
//!   is a topic and `353`/`366`; the first member of a new channel is its operator and the
//!   channel starts `+nt`. Refusals: `473` (+i and not invited), `474` (banned), `475` (+k),
//!   `471` (+l), `405` (more than 50 channels), `403` (bad name). `PART`, `KICK` (`482` without
//!   operator status), `INVITE` (`341`, `442`, `443`, `482` on +i), `TOPIC` (`331`/`332`/`333`,
//!   `482` on +t), `NAMES`, `MODE` on channels (`i m n t k l b o v`) and on oneself (`221`),
//!   `WHO`, `WHOIS`, `ISON`, `AWAY`, `MOTD`, `PING`, `QUIT`; anything else is `421`.
//! - `PRIVMSG`/`NOTICE <targets> :<text>` to at most 4 comma-separated targets (`407` beyond):
//!   to a channel the client is not in while it is +n, to a +m channel without voice, or while
//!   banned, a PRIVMSG is `404 <nick> <chan> :Cannot send to channel` and a NOTICE is dropped
//!   silently (servers must not answer NOTICE with errors); an unknown nick or channel is `401
//!   <nick> <target> :No such nick/channel` (ngIRCd answers 401 for channels too), no text
//!   `412`, no target `411`. CTCP (`\x01…\x01`) is relayed untouched, in both directions.
//!   Everything the client sent is in [`IrcServer::privmsgs`], what reached a target in
//!   [`IrcServer::received_by`] (and [`IrcUser::received`]).
//! - Services: `NickServ` (`IDENTIFY [account] <password>` → a NOTICE and `900`; `GHOST` and
//!   `REGAIN <nick> [password]`, allowed when identified to that account or with its password,
//!   free a nick held by a simulated user or another connection, and REGAIN then renames the
//!   caller) with the accounts of [`IrcServer::set_nickserv`] (separate from the SASL accounts),
//!   and `ChanServ`, the source of [`IrcServer::kick`], [`IrcServer::channel_mode`] and
//!   [`IrcServer::set_topic`].
//!
//! # Keep-alive and flood control
//!
//! - After [`IrcServer::set_ping_interval`] (120 s) without a line from a registered client the
//!   twin sends `PING :<token>`; when nothing at all arrives within
//!   [`IrcServer::set_ping_timeout`] (20 s; ngIRCd's defaults) it closes the client with
//!   `ERROR :Closing Link: 127.0.0.1 (Ping timeout: <n> seconds)`. Like ngIRCd, any line counts
//!   as a sign of life; whether the PINGs were answered is in [`IrcServer::pings`].
//! - [`IrcServer::set_flood`]`(burst, per_line, disconnect)`: after registration each line
//!   costs a token, the bucket holds `burst` tokens and refills one per `per_line` (default 5 and
//!   500 ms). With `disconnect` false a line without a token waits until one is there (as
//!   ngIRCd's penalty delays replies; counted by [`IrcServer::throttled_lines`], not a
//!   violation); with `disconnect` true it closes the client with `ERROR :Closing Link:
//!   127.0.0.1 (Excess Flood)` ([`ViolationKind::Flood`]). A burst of 0 turns flood control off.
//!
//! # Faults
//!
//! - [`IrcServer::drop_clients`]: closes every client's TCP connection without an `ERROR`.
//! - [`IrcServer::close_clients`]: closes every client with `ERROR :Closing Link: … (<reason>)`.
//! - [`IrcServer::stall`]: while on, nothing is read or answered and nothing is sent (lines
//!   from simulated people are held), no PINGs or timeouts happen; sockets stay open. Turning it
//!   off sends what was held and restarts the keep-alive clocks.
//! - [`IrcServer::kick`]: ChanServ kicks a member from a channel.
//! - [`IrcServer::send_raw_to_client`]: exact bytes to every client (malformed, over-long or
//!   not UTF-8 lines, no line ending, …).
//! - [`IrcServer::duplicate_next_privmsg`]: the next PRIVMSG delivered to a client is sent twice
//!   with the same `server-time` stamp, as a bouncer replaying history would.
//! - [`IrcServer::replay_privmsg`]: a bouncer's playback of a private message said at a given
//!   time, stamped with that time.
//! - [`IrcServer::take_nick`]/[`IrcServer::release_nick`]: a simulated user holds a nick so the
//!   client collides with it, then quits so the client can take it back.
//!
//! # Simulated people and inspection
//!
//! An [`IrcUser`] joins, parts, talks (`PRIVMSG`, `NOTICE`, CTCP, ACTION), invites, kicks, sets
//! modes and topics, renames and quits; the clients see it as `nick!~nick@users.clawline.test`.
//! What a real server would refuse it (a message to a +n channel it is not in, a kick without
//! operator status) panics, since that is a mistake in the test. Connections are numbered from
//! 1 in the order they were accepted ([`Connection::id`]); every record names its connection.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

/// The server's name, the source of its numerics.
pub const SERVER_NAME: &str = "irc.clawline.test";
/// The network name advertised in `005` and `001`.
pub const NETWORK: &str = "ClawlineTest";
/// Longest line (including CR LF, excluding tags) a client may send.
pub const MAX_LINE: usize = 512;
/// Longest tags section (with its `@` and the following space) a client may send.
pub const MAX_TAGS: usize = 4096;
/// Longest nick.
pub const NICKLEN: usize = 30;

const VERSION: &str = "clawline-irc-twin-1";
const CHANNELLEN: usize = 50;
const TOPICLEN: usize = 390;
const KICKLEN: usize = 255;
const AWAYLEN: usize = 200;
const CHANLIMIT: usize = 50;
const TARGMAX: usize = 4;
const SASL_CHUNK: usize = 400;
const SASL_MAX: usize = 4096;
/// Bytes of one unterminated line held before it is treated as over-long and discarded.
const MAX_BUFFER: usize = 64 * 1024;
const SERVICES_HOST: &str = "services.clawline.test";
const USERS_HOST: &str = "users.clawline.test";

// ---------------------------------------------------------------------------------------------
// Public records
// ---------------------------------------------------------------------------------------------

/// A `PRIVMSG` or `NOTICE` the client sent (one per target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Privmsg {
    /// The connection it came from ([`Connection::id`]).
    pub conn: u64,
    /// The client's nick when it sent it.
    pub from: String,
    /// The target as the client wrote it (a nick or a channel).
    pub target: String,
    pub text: String,
    pub notice: bool,
    /// Whether it reached the target (false for `401`, `403`, `404` and dropped NOTICEs).
    pub delivered: bool,
}

impl Privmsg {
    /// The CTCP command (upper-cased) and its arguments when `text` is a CTCP message
    /// (`\x01COMMAND args\x01`; the closing `\x01` may be missing, as the CTCP draft allows).
    pub fn ctcp(&self) -> Option<(String, String)> {
        parse_ctcp(&self.text)
    }
}

/// A client that completed registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub conn: u64,
    pub nick: String,
    /// The `<user>` parameter of USER, as given (the twin shows it as `~user`).
    pub user: String,
    pub realname: String,
    /// The last `PASS` sent before registration.
    pub password: Option<String>,
    /// Capabilities enabled when registration completed.
    pub caps: Vec<String>,
    /// The account logged in by SASL before registration.
    pub account: Option<String>,
}

impl Registration {
    /// Whether SASL authentication succeeded before registration.
    pub fn sasl_ok(&self) -> bool {
        self.account.is_some()
    }
}

/// A successful `JOIN` of a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    pub conn: u64,
    pub nick: String,
    pub channel: String,
}

/// A TCP connection to the twin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub id: u64,
    pub peer: SocketAddr,
    pub open: bool,
    /// Why it was closed: `Quit: …`, `Ping timeout: …`, `Excess Flood`, `Request too long`,
    /// `Connection closed` (by the client), `Dropped` ([`IrcServer::drop_clients`]), ….
    pub close_reason: Option<String>,
}

/// What a client did wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationKind {
    /// A line longer than 512 bytes (including CR LF, excluding tags); `bytes` is its length
    /// as received (at least 64 KiB when it never ended).
    LineTooLong {
        bytes: usize,
    },
    /// A tags section longer than 4096 bytes.
    TagsTooLong {
        bytes: usize,
    },
    /// A line beyond the flood allowance in disconnect mode.
    Flood,
    InvalidUtf8,
    /// A line ended with LF alone.
    BareLineFeed,
    /// NUL or CR inside a line.
    ForbiddenByte,
    /// A line starting with a `:source` (clients must not send one).
    SourceFromClient,
    /// A command other than CAP/AUTHENTICATE/PASS/NICK/USER/PING/PONG/QUIT before registration.
    NotRegistered,
    /// A tags section without the `message-tags` capability.
    TagsWithoutCap,
    AuthenticateWithoutCap,
    AuthenticateAfterRegistration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub conn: u64,
    pub kind: ViolationKind,
    /// The offending line (lossy UTF-8, without its line ending, cut to 600 bytes).
    pub line: String,
}

/// A line as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientLine {
    pub conn: u64,
    /// The exact bytes, including the line ending.
    pub raw: Vec<u8>,
    /// Lossy UTF-8 without the line ending.
    pub text: String,
}

/// How a SASL exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslOutcome {
    /// `900` and `903`.
    Success,
    /// `904`.
    Failed,
    /// `908` and `904`.
    UnknownMechanism,
    /// `906` (`AUTHENTICATE *`, or registration finished during the exchange).
    Aborted,
    /// `905`.
    TooLong,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslAttempt {
    pub conn: u64,
    pub mechanism: String,
    /// The authentication identity the client sent (PLAIN), when it got that far.
    pub authcid: Option<String>,
    pub outcome: SaslOutcome,
}

/// A keep-alive PING the twin sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    pub conn: u64,
    pub token: String,
    /// Whether a `PONG` with this token came back.
    pub answered: bool,
}

// ---------------------------------------------------------------------------------------------
// Internal state
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Who {
    Client(u64),
    Sim(u64),
}

const NICKSERV: u64 = 1;
const CHANSERV: u64 = 2;

struct Flood {
    burst: u32,
    per_line: Duration,
    disconnect: bool,
}

struct Config {
    sasl: BTreeMap<String, (String, String)>,
    nickserv: BTreeMap<String, (String, String)>,
    password: Option<String>,
    ping_interval: Duration,
    ping_timeout: Duration,
    registration_timeout: Duration,
    registration_ping: bool,
    flood: Flood,
    overlong_disconnect: bool,
    motd: Vec<String>,
}

struct Sasl {
    mechanism: String,
    data: String,
}

struct Conn {
    peer: SocketAddr,
    tx: mpsc::UnboundedSender<Vec<u8>>,
    close_tx: mpsc::UnboundedSender<Option<Vec<u8>>>,
    kill: Arc<Notify>,
    nick: Option<String>,
    user: Option<String>,
    realname: String,
    pass: Option<String>,
    registered: bool,
    cap_suspended: bool,
    cap_version: u32,
    caps: BTreeSet<String>,
    sasl: Option<Sasl>,
    sasl_done: bool,
    account: Option<String>,
    away: Option<String>,
    umodes: BTreeSet<char>,
    reg_ping: Option<String>,
    connected: Instant,
    last_seen: Instant,
    ping: Option<Instant>,
    tokens: f64,
    refilled: Instant,
}

struct Sim {
    nick: String,
    user: String,
    host: String,
    service: bool,
}

#[derive(Clone, Copy, Default)]
struct Status {
    op: bool,
    voice: bool,
}

struct Channel {
    name: String,
    created: i64,
    topic: Option<(String, String, i64)>,
    modes: BTreeSet<char>,
    key: Option<String>,
    limit: Option<usize>,
    bans: Vec<String>,
    invited: BTreeSet<Who>,
    members: BTreeMap<Who, Status>,
    persistent: bool,
}

struct State {
    cfg: Config,
    conns: BTreeMap<u64, Conn>,
    sims: BTreeMap<u64, Sim>,
    channels: BTreeMap<String, Channel>,
    next_conn: u64,
    next_sim: u64,
    next_token: u64,
    stalled: bool,
    duplicate_next: bool,
    created: String,
    connections: Vec<Connection>,
    lines: Vec<ClientLine>,
    to_client: Vec<(u64, String)>,
    privmsgs: Vec<Privmsg>,
    violations: Vec<Violation>,
    registrations: Vec<Registration>,
    joins: Vec<Join>,
    sasl_attempts: Vec<SaslAttempt>,
    pings: Vec<Ping>,
    throttled: usize,
}

struct Shared {
    state: Mutex<State>,
    /// Bumped whenever timers or the stall switch change, so connection tasks re-evaluate.
    changed: watch::Sender<u64>,
    stall: watch::Sender<bool>,
    closed: AtomicBool,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }
}

fn fold(s: &str) -> String {
    s.to_ascii_lowercase()
}

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// `YYYY-MM-DDThh:mm:ss.sssZ` (UTC), the `server-time` format.
fn iso_time(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!("{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, d.subsec_millis())
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
}

fn parse_ctcp(text: &str) -> Option<(String, String)> {
    let body = text.strip_prefix('\x01')?;
    let body = body.strip_suffix('\x01').unwrap_or(body);
    let (cmd, args) = body.split_once(' ').unwrap_or((body, ""));
    if cmd.is_empty() {
        return None;
    }
    Some((cmd.to_ascii_uppercase(), args.to_string()))
}

fn valid_nick(n: &str) -> bool {
    let special = |c: char| "[]{}\\|^_`".contains(c);
    let mut chars = n.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || special(c) => {}
        _ => return false,
    }
    n.len() <= NICKLEN && chars.all(|c| c.is_ascii_alphanumeric() || special(c) || c == '-')
}

fn valid_channel(c: &str) -> bool {
    c.starts_with('#') && c.len() >= 2 && c.len() <= CHANNELLEN && !c.contains([' ', ',', '\x07'])
}

/// `*`/`?` glob match, case-insensitive (ascii).
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = fold(pattern).chars().collect();
    let t: Vec<char> = fold(text).chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// A parsed client line.
struct Message {
    tags: Option<String>,
    source: Option<String>,
    command: String,
    params: Vec<String>,
}

fn parse_message(line: &str) -> Option<Message> {
    let mut rest = line.trim_start_matches(' ');
    let mut tags = None;
    if let Some(r) = rest.strip_prefix('@') {
        let (t, r) = r.split_once(' ').unwrap_or((r, ""));
        tags = Some(t.to_string());
        rest = r.trim_start_matches(' ');
    }
    let mut source = None;
    if let Some(r) = rest.strip_prefix(':') {
        let (s, r) = r.split_once(' ').unwrap_or((r, ""));
        source = Some(s.to_string());
        rest = r.trim_start_matches(' ');
    }
    let (command, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if command.is_empty() {
        return None;
    }
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            break;
        }
        if let Some(trailing) = rest.strip_prefix(':') {
            params.push(trailing.to_string());
            break;
        }
        let (p, r) = rest.split_once(' ').unwrap_or((rest, ""));
        params.push(p.to_string());
        rest = r;
    }
    Some(Message { tags, source, command: command.to_ascii_uppercase(), params })
}

/// `:<source> <command> <params…>`, the last parameter prefixed with `:` when it needs one.
fn build(source: &str, command: &str, params: &[&str]) -> String {
    let mut s = format!(":{source} {command}");
    for (i, p) in params.iter().enumerate() {
        s.push(' ');
        if i + 1 == params.len() && (p.is_empty() || p.contains(' ') || p.starts_with(':')) {
            s.push(':');
        }
        s.push_str(p);
    }
    s
}

/// `:<source> <command> <middle…> :<trailing>`.
fn build_text(source: &str, command: &str, middle: &[&str], text: &str) -> String {
    let mut s = format!(":{source} {command}");
    for p in middle {
        s.push(' ');
        s.push_str(p);
    }
    s.push_str(" :");
    s.push_str(text);
    s
}

impl Channel {
    fn new(name: &str, persistent: bool) -> Channel {
        Channel {
            name: name.to_string(),
            created: now_unix(),
            topic: None,
            modes: ['n', 't'].into_iter().collect(),
            key: None,
            limit: None,
            bans: Vec::new(),
            invited: BTreeSet::new(),
            members: BTreeMap::new(),
            persistent,
        }
    }

    fn mode_string(&self) -> (String, Vec<String>) {
        let mut m: String = "+".to_string();
        m.extend(self.modes.iter());
        let mut args = Vec::new();
        if let Some(k) = &self.key {
            m.push('k');
            args.push(k.clone());
        }
        if let Some(l) = self.limit {
            m.push('l');
            args.push(l.to_string());
        }
        (m, args)
    }
}

enum Gate {
    Go,
    Wait(Duration),
}

impl State {
    fn new() -> State {
        let mut sims = BTreeMap::new();
        for (id, nick) in [(NICKSERV, "NickServ"), (CHANSERV, "ChanServ")] {
            sims.insert(id, Sim { nick: nick.into(), user: nick.into(), host: SERVICES_HOST.into(), service: true });
        }
        State {
            cfg: Config {
                sasl: BTreeMap::new(),
                nickserv: BTreeMap::new(),
                password: None,
                ping_interval: Duration::from_secs(120),
                ping_timeout: Duration::from_secs(20),
                registration_timeout: Duration::from_secs(60),
                registration_ping: false,
                flood: Flood { burst: 5, per_line: Duration::from_millis(500), disconnect: false },
                overlong_disconnect: false,
                motd: vec!["Welcome to the clawline IRC twin.".into()],
            },
            conns: BTreeMap::new(),
            sims,
            channels: BTreeMap::new(),
            next_conn: 1,
            next_sim: 10,
            next_token: 1,
            stalled: false,
            duplicate_next: false,
            created: iso_time(SystemTime::now()),
            connections: Vec::new(),
            lines: Vec::new(),
            to_client: Vec::new(),
            privmsgs: Vec::new(),
            violations: Vec::new(),
            registrations: Vec::new(),
            joins: Vec::new(),
            sasl_attempts: Vec::new(),
            pings: Vec::new(),
            throttled: 0,
        }
    }

    // --- Names ---------------------------------------------------------------------------

    fn nick_of(&self, who: Who) -> String {
        match who {
            Who::Client(id) => self.conns.get(&id).and_then(|c| c.nick.clone()).unwrap_or_else(|| "*".into()),
            Who::Sim(id) => self.sims.get(&id).map(|s| s.nick.clone()).unwrap_or_else(|| "*".into()),
        }
    }

    fn mask_of(&self, who: Who) -> String {
        match who {
            Who::Client(id) => match self.conns.get(&id) {
                Some(c) => {
                    format!("{}!{}@{}", c.nick.as_deref().unwrap_or("*"), c.user.as_deref().unwrap_or("*"), c.peer.ip())
                }
                None => "*".into(),
            },
            Who::Sim(id) => match self.sims.get(&id) {
                Some(s) => format!("{}!{}@{}", s.nick, s.user, s.host),
                None => "*".into(),
            },
        }
    }

    /// Who holds `nick` (registered or not).
    fn find_nick(&self, nick: &str) -> Option<Who> {
        let f = fold(nick);
        if let Some((id, _)) = self.conns.iter().find(|(_, c)| c.nick.as_deref().map(fold).as_deref() == Some(&f)) {
            return Some(Who::Client(*id));
        }
        self.sims.iter().find(|(_, s)| fold(&s.nick) == f).map(|(id, _)| Who::Sim(*id))
    }

    fn target_name(&self, id: u64) -> String {
        self.conns.get(&id).and_then(|c| c.nick.clone()).unwrap_or_else(|| "*".into())
    }

    // --- Output --------------------------------------------------------------------------

    fn send_to(&mut self, id: u64, line: String) {
        self.send_stamped(id, line, SystemTime::now());
    }

    /// Sends a line stamped `at` (when the client negotiated `server-time`).
    fn send_stamped(&mut self, id: u64, mut line: String, at: SystemTime) {
        let Some(c) = self.conns.get(&id) else { return };
        truncate_utf8(&mut line, MAX_LINE - 2);
        if c.caps.contains("server-time") {
            line = format!("@time={} {line}", iso_time(at));
        }
        let mut bytes = line.clone().into_bytes();
        bytes.extend_from_slice(b"\r\n");
        let _ = c.tx.send(bytes);
        self.to_client.push((id, line));
    }

    fn numeric(&mut self, id: u64, code: &str, middle: &[&str], text: &str) {
        let target = self.target_name(id);
        let mut params = vec![target.as_str()];
        params.extend_from_slice(middle);
        let line = build_text(SERVER_NAME, code, &params, text);
        self.send_to(id, line);
    }

    fn deliver(&mut self, who: Who, line: String) {
        if let Who::Client(id) = who {
            self.send_to(id, line);
        }
    }

    /// Sends `line` to every client in channel `key` except `except`.
    fn broadcast(&mut self, key: &str, line: &str, except: Option<Who>) {
        let members: Vec<Who> = match self.channels.get(key) {
            Some(ch) => ch.members.keys().copied().filter(|w| Some(*w) != except).collect(),
            None => return,
        };
        for w in members {
            self.deliver(w, line.to_string());
        }
    }

    /// Clients sharing a channel with `who` (not `who` itself).
    fn peers_of(&self, who: Who) -> BTreeSet<Who> {
        self.channels
            .values()
            .filter(|ch| ch.members.contains_key(&who))
            .flat_map(|ch| ch.members.keys().copied())
            .filter(|w| *w != who && matches!(w, Who::Client(_)))
            .collect()
    }

    fn violation(&mut self, id: u64, kind: ViolationKind, line: &str) {
        let mut line = line.to_string();
        truncate_utf8(&mut line, 600);
        self.violations.push(Violation { conn: id, kind, line });
    }

    fn token(&mut self) -> String {
        self.next_token += 1;
        format!("clawline-{}", self.next_token)
    }

    // --- Connections ---------------------------------------------------------------------

    fn open_conn(
        &mut self,
        peer: SocketAddr,
        tx: mpsc::UnboundedSender<Vec<u8>>,
        close_tx: mpsc::UnboundedSender<Option<Vec<u8>>>,
        kill: Arc<Notify>,
    ) -> u64 {
        let id = self.next_conn;
        self.next_conn += 1;
        let now = Instant::now();
        self.conns.insert(
            id,
            Conn {
                peer,
                tx,
                close_tx,
                kill,
                nick: None,
                user: None,
                realname: String::new(),
                pass: None,
                registered: false,
                cap_suspended: false,
                cap_version: 0,
                caps: BTreeSet::new(),
                sasl: None,
                sasl_done: false,
                account: None,
                away: None,
                umodes: BTreeSet::new(),
                reg_ping: None,
                connected: now,
                last_seen: now,
                ping: None,
                tokens: 0.0,
                refilled: now,
            },
        );
        self.connections.push(Connection { id, peer, open: true, close_reason: None });
        if self.cfg.registration_ping {
            let token = self.token();
            if let Some(c) = self.conns.get_mut(&id) {
                c.reg_ping = Some(token.clone());
            }
            self.send_to(id, format!("PING :{token}"));
        }
        id
    }

    /// Closes a connection: `ERROR :Closing Link: <ip> (<reason>)` first when `error`.
    fn close_conn(&mut self, id: u64, reason: &str, error: bool) {
        if !self.conns.contains_key(&id) {
            return;
        }
        let who = Who::Client(id);
        let registered = self.conns[&id].registered;
        if registered {
            let quit = build_text(&self.mask_of(who), "QUIT", &[], reason);
            for p in self.peers_of(who) {
                self.deliver(p, quit.clone());
            }
        }
        self.leave_all(who);
        let c = self.conns.remove(&id).expect("connection");
        let err = error.then(|| format!("ERROR :Closing Link: {} ({reason})\r\n", c.peer.ip()).into_bytes());
        if let Some(e) = &err {
            self.to_client.push((id, String::from_utf8_lossy(&e[..e.len() - 2]).into_owned()));
        }
        let _ = c.close_tx.send(err);
        c.kill.notify_one();
        if let Some(rec) = self.connections.iter_mut().find(|r| r.id == id) {
            rec.open = false;
            rec.close_reason = Some(reason.to_string());
        }
    }

    /// Removes `who` from every channel (no messages) and drops empty channels.
    fn leave_all(&mut self, who: Who) {
        for ch in self.channels.values_mut() {
            ch.members.remove(&who);
            ch.invited.remove(&who);
        }
        self.channels.retain(|_, ch| ch.persistent || !ch.members.is_empty());
    }

    fn seen(&mut self, id: u64) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.last_seen = Instant::now();
            c.ping = None;
        }
    }

    /// The next instant a keep-alive or registration timer of `id` fires.
    fn next_deadline(&self, id: u64) -> Option<Instant> {
        if self.stalled {
            return None;
        }
        let c = self.conns.get(&id)?;
        if !c.registered {
            return Some(c.connected + self.cfg.registration_timeout);
        }
        Some(match c.ping {
            Some(sent) => sent + self.cfg.ping_timeout,
            None => c.last_seen + self.cfg.ping_interval,
        })
    }

    /// Fires due timers of `id`; false when the connection is gone.
    fn timers(&mut self, id: u64) -> bool {
        if self.stalled {
            return true;
        }
        let now = Instant::now();
        let Some(c) = self.conns.get(&id) else { return false };
        if !c.registered {
            if now >= c.connected + self.cfg.registration_timeout {
                self.close_conn(id, "Registration timed out", true);
                return false;
            }
            return true;
        }
        match c.ping {
            Some(sent) if now >= sent + self.cfg.ping_timeout => {
                let secs = (now - c.last_seen).as_secs();
                self.close_conn(id, &format!("Ping timeout: {secs} seconds"), true);
                false
            }
            None if now >= c.last_seen + self.cfg.ping_interval => {
                let token = self.token();
                if let Some(c) = self.conns.get_mut(&id) {
                    c.ping = Some(now);
                }
                self.pings.push(Ping { conn: id, token: token.clone(), answered: false });
                self.send_to(id, format!("PING :{token}"));
                true
            }
            _ => true,
        }
    }

    fn refill(&mut self, id: u64) -> Option<&mut Conn> {
        let per_line = self.cfg.flood.per_line;
        let burst = f64::from(self.cfg.flood.burst);
        let c = self.conns.get_mut(&id)?;
        let now = Instant::now();
        if per_line > Duration::ZERO {
            c.tokens = (c.tokens + (now - c.refilled).as_secs_f64() / per_line.as_secs_f64()).min(burst);
        } else {
            c.tokens = burst;
        }
        c.refilled = now;
        Some(c)
    }

    /// Delay mode: how long the next line of `id` must wait for a token.
    fn flood_gate(&mut self, id: u64) -> Gate {
        if self.cfg.flood.burst == 0 || self.cfg.flood.disconnect {
            return Gate::Go;
        }
        let per_line = self.cfg.flood.per_line;
        match self.refill(id) {
            Some(c) if c.registered && c.tokens < 1.0 => {
                Gate::Wait(per_line.mul_f64((1.0 - c.tokens).max(0.0)).max(Duration::from_millis(1)))
            }
            _ => Gate::Go,
        }
    }

    // --- Lines from a client ---------------------------------------------------------------

    /// Handles one line (with its line ending); false when the connection is gone afterwards.
    fn handle_line(&mut self, id: u64, raw: Vec<u8>) -> bool {
        if !self.conns.contains_key(&id) {
            return false;
        }
        let mut body: &[u8] = &raw;
        let mut bare_lf = false;
        if let Some(b) = body.strip_suffix(b"\n") {
            body = b;
            match body.strip_suffix(b"\r") {
                Some(b) => body = b,
                None => bare_lf = true,
            }
        }
        let lossy = String::from_utf8_lossy(body).into_owned();
        self.lines.push(ClientLine { conn: id, raw: raw.clone(), text: lossy.clone() });
        if body.is_empty() {
            return true;
        }
        if bare_lf {
            self.violation(id, ViolationKind::BareLineFeed, &lossy);
        }
        if body.contains(&0) || body.contains(&b'\r') {
            self.violation(id, ViolationKind::ForbiddenByte, &lossy);
            return true;
        }
        let tags_len = if body.first() == Some(&b'@') {
            body.iter().position(|&b| b == b' ').map(|p| p + 1).unwrap_or(body.len())
        } else {
            0
        };
        let rest_len = body.len() - tags_len + 2;
        if rest_len > MAX_LINE || tags_len > MAX_TAGS {
            let kind = if rest_len > MAX_LINE {
                ViolationKind::LineTooLong { bytes: raw.len().max(rest_len) }
            } else {
                ViolationKind::TagsTooLong { bytes: tags_len }
            };
            return self.overlong(id, kind, &lossy);
        }
        let text = match String::from_utf8(body.to_vec()) {
            Ok(t) => t,
            Err(_) => {
                self.violation(id, ViolationKind::InvalidUtf8, &lossy);
                lossy
            }
        };
        if !self.spend_token(id, &text) {
            return false;
        }
        let Some(msg) = parse_message(&text) else { return true };
        if msg.source.is_some() {
            self.violation(id, ViolationKind::SourceFromClient, &text);
        }
        if msg.tags.is_some() && !self.conns[&id].caps.contains("message-tags") {
            self.violation(id, ViolationKind::TagsWithoutCap, &text);
            let first = text.split(' ').next().unwrap_or("").to_string();
            self.numeric(id, "421", &[&first], "Unknown command");
            return true;
        }
        self.dispatch(id, &msg, &text);
        self.conns.contains_key(&id)
    }

    /// An over-long line: `417`, or closing the client in disconnect mode.
    fn overlong(&mut self, id: u64, kind: ViolationKind, line: &str) -> bool {
        self.violation(id, kind, line);
        if self.cfg.overlong_disconnect {
            self.close_conn(id, "Request too long", true);
            return false;
        }
        self.numeric(id, "417", &[], "Input line was too long");
        true
    }

    /// Takes a flood token after registration; false when the client was closed for flooding.
    fn spend_token(&mut self, id: u64, line: &str) -> bool {
        if self.cfg.flood.burst == 0 {
            return true;
        }
        let disconnect = self.cfg.flood.disconnect;
        let Some(c) = self.refill(id) else { return false };
        if !c.registered {
            return true;
        }
        if c.tokens >= 1.0 {
            c.tokens -= 1.0;
            return true;
        }
        if !disconnect {
            c.tokens = (c.tokens - 1.0).max(-1.0);
            return true;
        }
        self.violation(id, ViolationKind::Flood, line);
        self.close_conn(id, "Excess Flood", true);
        false
    }

    fn dispatch(&mut self, id: u64, msg: &Message, text: &str) {
        let registered = self.conns[&id].registered;
        let p = &msg.params;
        let cmd = msg.command.as_str();
        match cmd {
            "CAP" => self.cmd_cap(id, p),
            "AUTHENTICATE" => self.cmd_authenticate(id, p),
            "PASS" => {
                if registered {
                    self.numeric(id, "462", &[], "You may not reregister");
                } else if let Some(pw) = p.first() {
                    self.conns.get_mut(&id).expect("conn").pass = Some(pw.clone());
                } else {
                    self.numeric(id, "461", &["PASS"], "Not enough parameters");
                }
            }
            "NICK" => self.cmd_nick(id, p),
            "USER" => self.cmd_user(id, p),
            "PING" => match p.first() {
                Some(tok) => {
                    let line = build(SERVER_NAME, "PONG", &[SERVER_NAME, tok]);
                    self.send_to(id, line);
                }
                None => self.numeric(id, "409", &[], "No origin specified"),
            },
            "PONG" => self.cmd_pong(id, p),
            "QUIT" => {
                let reason = p.first().cloned().unwrap_or_default();
                self.close_conn(id, &format!("Quit: {reason}"), true);
            }
            _ if !registered => {
                self.violation(id, ViolationKind::NotRegistered, text);
                self.numeric(id, "451", &[], "You have not registered");
            }
            "JOIN" => self.cmd_join(id, p),
            "PART" => self.cmd_part(id, p),
            "PRIVMSG" | "NOTICE" => self.cmd_privmsg(id, p, cmd == "NOTICE"),
            "KICK" => self.cmd_kick(id, p),
            "INVITE" => self.cmd_invite(id, p),
            "TOPIC" => self.cmd_topic(id, p),
            "NAMES" => match p.first() {
                Some(list) => {
                    for chan in list.split(',').map(str::to_string).collect::<Vec<_>>() {
                        self.send_names(id, &chan);
                    }
                }
                None => self.numeric(id, "366", &["*"], "End of /NAMES list"),
            },
            "MODE" => self.cmd_mode(id, p),
            "WHO" => self.cmd_who(id, p),
            "WHOIS" => self.cmd_whois(id, p),
            "ISON" => {
                let mut on = Vec::new();
                for n in p.iter().flat_map(|s| s.split(' ')) {
                    if let Some(w) = self.find_nick(n) {
                        on.push(self.nick_of(w));
                    }
                }
                self.numeric(id, "303", &[], &on.join(" "));
            }
            "AWAY" => {
                let msg = p.first().filter(|m| !m.is_empty()).map(|m| {
                    let mut m = m.clone();
                    truncate_utf8(&mut m, AWAYLEN);
                    m
                });
                let away = msg.is_some();
                self.conns.get_mut(&id).expect("conn").away = msg;
                if away {
                    self.numeric(id, "306", &[], "You have been marked as being away");
                } else {
                    self.numeric(id, "305", &[], "You are no longer marked as being away");
                }
            }
            "MOTD" => self.send_motd(id),
            _ => self.numeric(id, "421", &[&msg.command], "Unknown command"),
        }
    }

    // --- Registration ----------------------------------------------------------------------

    fn cmd_cap(&mut self, id: u64, p: &[String]) {
        let registered = self.conns[&id].registered;
        let who = self.target_name(id);
        let sub = p.first().map(|s| s.to_ascii_uppercase()).unwrap_or_default();
        let sasl = !self.cfg.sasl.is_empty();
        match sub.as_str() {
            "LS" => {
                let version = p.get(1).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
                let c = self.conns.get_mut(&id).expect("conn");
                if !registered {
                    c.cap_suspended = true;
                }
                c.cap_version = c.cap_version.max(version);
                let mut caps = vec!["message-tags".to_string(), "server-time".to_string()];
                if sasl {
                    caps.push(if version >= 302 { "sasl=PLAIN".into() } else { "sasl".into() });
                }
                let line = build(SERVER_NAME, "CAP", &[&who, "LS", &caps.join(" ")]);
                self.send_to(id, line);
            }
            "LIST" => {
                let caps: Vec<String> = self.conns[&id].caps.iter().cloned().collect();
                let line = build(SERVER_NAME, "CAP", &[&who, "LIST", &caps.join(" ")]);
                self.send_to(id, line);
            }
            "REQ" => {
                let Some(list) = p.get(1) else {
                    self.numeric(id, "410", &["REQ"], "Invalid CAP command");
                    return;
                };
                let wanted: Vec<&str> = list.split(' ').filter(|s| !s.is_empty()).collect();
                let known = |c: &str| c == "message-tags" || c == "server-time" || (sasl && c == "sasl");
                let ok = !wanted.is_empty() && wanted.iter().all(|c| known(c.trim_start_matches('-')));
                let c = self.conns.get_mut(&id).expect("conn");
                if !registered {
                    c.cap_suspended = true;
                }
                if ok {
                    for w in &wanted {
                        match w.strip_prefix('-') {
                            Some(off) => c.caps.remove(off),
                            None => c.caps.insert(w.to_string()),
                        };
                    }
                }
                let line = build(SERVER_NAME, "CAP", &[&who, if ok { "ACK" } else { "NAK" }, list.trim_end()]);
                self.send_to(id, line);
            }
            "END" => {
                if !registered {
                    self.conns.get_mut(&id).expect("conn").cap_suspended = false;
                    self.try_register(id);
                }
            }
            _ => {
                let sub = p.first().cloned().unwrap_or_default();
                self.numeric(id, "410", &[&sub], "Invalid CAP command");
            }
        }
    }

    fn cmd_authenticate(&mut self, id: u64, p: &[String]) {
        let Some(arg) = p.first().cloned() else {
            self.numeric(id, "461", &["AUTHENTICATE"], "Not enough parameters");
            return;
        };
        let line = format!("AUTHENTICATE {arg}");
        let c = &self.conns[&id];
        if !c.caps.contains("sasl") {
            self.violation(id, ViolationKind::AuthenticateWithoutCap, &line);
            self.numeric(id, "904", &[], "SASL authentication failed");
            return;
        }
        if c.sasl_done {
            self.numeric(id, "907", &[], "You have already authenticated using SASL");
            return;
        }
        if c.registered {
            self.violation(id, ViolationKind::AuthenticateAfterRegistration, &line);
            self.numeric(id, "904", &[], "SASL authentication failed");
            return;
        }
        let Some(mut sasl) = self.conns.get_mut(&id).expect("conn").sasl.take() else {
            // The initial message names the mechanism.
            if arg == "*" {
                self.numeric(id, "906", &[], "SASL authentication aborted");
                return;
            }
            if arg.eq_ignore_ascii_case("PLAIN") {
                self.conns.get_mut(&id).expect("conn").sasl =
                    Some(Sasl { mechanism: "PLAIN".into(), data: String::new() });
                self.send_to(id, "AUTHENTICATE +".into());
            } else {
                self.sasl_attempts.push(SaslAttempt {
                    conn: id,
                    mechanism: arg.clone(),
                    authcid: None,
                    outcome: SaslOutcome::UnknownMechanism,
                });
                self.numeric(id, "908", &["PLAIN"], "are available SASL mechanisms");
                self.numeric(id, "904", &[], "SASL authentication failed");
            }
            return;
        };
        let mechanism = sasl.mechanism.clone();
        let end = |s: &mut State, outcome: SaslOutcome, authcid: Option<String>| {
            s.sasl_attempts.push(SaslAttempt { conn: id, mechanism: mechanism.clone(), authcid, outcome });
        };
        if arg == "*" {
            end(self, SaslOutcome::Aborted, None);
            self.numeric(id, "906", &[], "SASL authentication aborted");
            return;
        }
        if arg.len() > SASL_CHUNK {
            end(self, SaslOutcome::TooLong, None);
            self.numeric(id, "905", &[], "SASL message too long");
            return;
        }
        if arg != "+" {
            sasl.data.push_str(&arg);
        }
        if sasl.data.len() > SASL_MAX {
            end(self, SaslOutcome::Failed, None);
            self.numeric(id, "904", &[], "SASL authentication failed");
            return;
        }
        if arg.len() == SASL_CHUNK {
            // More chunks follow (or `AUTHENTICATE +`).
            self.conns.get_mut(&id).expect("conn").sasl = Some(sasl);
            return;
        }
        let decoded = base64::engine::general_purpose::STANDARD.decode(sasl.data.as_bytes()).ok();
        let parts: Option<Vec<String>> =
            decoded.map(|d| d.split(|&b| b == 0).map(|s| String::from_utf8_lossy(s).into_owned()).collect::<Vec<_>>());
        let creds = parts.filter(|v| v.len() == 3);
        let Some(creds) = creds else {
            end(self, SaslOutcome::Failed, None);
            self.numeric(id, "904", &[], "SASL authentication failed");
            return;
        };
        let (authzid, authcid, password) = (&creds[0], &creds[1], &creds[2]);
        let account = self
            .cfg
            .sasl
            .get(&fold(authcid))
            .filter(|(_, pw)| pw == password)
            .filter(|_| authzid.is_empty() || fold(authzid) == fold(authcid))
            .map(|(name, _)| name.clone());
        match account {
            Some(account) => {
                end(self, SaslOutcome::Success, Some(authcid.clone()));
                let c = self.conns.get_mut(&id).expect("conn");
                c.account = Some(account.clone());
                c.sasl_done = true;
                let nick = self.target_name(id);
                let mask = self.mask_of(Who::Client(id));
                let mask = if nick == "*" { "*".to_string() } else { mask };
                self.numeric(id, "900", &[&mask, &account], &format!("You are now logged in as {account}"));
                self.numeric(id, "903", &[], "SASL authentication successful");
            }
            None => {
                end(self, SaslOutcome::Failed, Some(authcid.clone()));
                self.numeric(id, "904", &[], "SASL authentication failed");
            }
        }
    }

    fn cmd_nick(&mut self, id: u64, p: &[String]) {
        let Some(nick) = p.first().filter(|n| !n.is_empty()).cloned() else {
            self.numeric(id, "431", &[], "No nickname given");
            return;
        };
        if !valid_nick(&nick) {
            self.numeric(id, "432", &[&nick], "Erroneous nickname");
            return;
        }
        match self.find_nick(&nick) {
            Some(w) if w != Who::Client(id) => {
                self.numeric(id, "433", &[&nick], "Nickname is already in use");
                return;
            }
            _ => {}
        }
        let c = &self.conns[&id];
        if c.nick.as_deref() == Some(nick.as_str()) {
            return;
        }
        if !c.registered {
            self.conns.get_mut(&id).expect("conn").nick = Some(nick);
            self.try_register(id);
            return;
        }
        self.rename(Who::Client(id), &nick);
    }

    /// Changes the nick of a registered client or a simulated user and tells who can see it.
    fn rename(&mut self, who: Who, nick: &str) {
        let line = build(&self.mask_of(who), "NICK", &[nick]);
        let mut to: BTreeSet<Who> = self.peers_of(who);
        if matches!(who, Who::Client(_)) {
            to.insert(who);
        }
        match who {
            Who::Client(id) => self.conns.get_mut(&id).expect("conn").nick = Some(nick.to_string()),
            Who::Sim(id) => self.sims.get_mut(&id).expect("sim").nick = nick.to_string(),
        }
        for w in to {
            self.deliver(w, line.clone());
        }
    }

    fn cmd_user(&mut self, id: u64, p: &[String]) {
        if self.conns[&id].registered {
            self.numeric(id, "462", &[], "You may not reregister");
            return;
        }
        if p.len() < 4 || p[0].is_empty() {
            self.numeric(id, "461", &["USER"], "Not enough parameters");
            return;
        }
        let c = self.conns.get_mut(&id).expect("conn");
        c.user = Some(format!("~{}", p[0]));
        c.realname = p[3].clone();
        self.try_register(id);
    }

    fn cmd_pong(&mut self, id: u64, p: &[String]) {
        let Some(token) = p.last().cloned() else {
            self.numeric(id, "409", &[], "No origin specified");
            return;
        };
        if let Some(ping) = self.pings.iter_mut().rev().find(|r| r.conn == id && r.token == token) {
            ping.answered = true;
        }
        let c = self.conns.get_mut(&id).expect("conn");
        if c.reg_ping.as_deref() == Some(token.as_str()) {
            c.reg_ping = None;
            self.try_register(id);
        }
    }

    fn try_register(&mut self, id: u64) {
        let Some(c) = self.conns.get(&id) else { return };
        if c.registered || c.nick.is_none() || c.user.is_none() || c.cap_suspended || c.reg_ping.is_some() {
            return;
        }
        if let Some(pw) = &self.cfg.password
            && c.pass.as_deref() != Some(pw.as_str())
        {
            self.numeric(id, "464", &[], "Password incorrect");
            self.close_conn(id, "Bad Password", true);
            return;
        }
        if let Some(sasl) = &self.conns[&id].sasl {
            self.sasl_attempts.push(SaslAttempt {
                conn: id,
                mechanism: sasl.mechanism.clone(),
                authcid: None,
                outcome: SaslOutcome::Aborted,
            });
            self.numeric(id, "906", &[], "SASL authentication aborted");
        }
        let burst = f64::from(self.cfg.flood.burst);
        let c = self.conns.get_mut(&id).expect("conn");
        c.sasl = None;
        c.registered = true;
        c.tokens = burst;
        c.refilled = Instant::now();
        c.last_seen = Instant::now();
        let nick = c.nick.clone().expect("nick");
        let user = c.user.clone().expect("user");
        self.registrations.push(Registration {
            conn: id,
            nick: nick.clone(),
            user: user.trim_start_matches('~').to_string(),
            realname: c.realname.clone(),
            password: c.pass.clone(),
            caps: c.caps.iter().cloned().collect(),
            account: c.account.clone(),
        });
        let mask = self.mask_of(Who::Client(id));
        self.numeric(id, "001", &[], &format!("Welcome to the {NETWORK} IRC Network {mask}"));
        self.numeric(id, "002", &[], &format!("Your host is {SERVER_NAME}, running version {VERSION}"));
        let created = self.created.clone();
        self.numeric(id, "003", &[], &format!("This server was created {created}"));
        let myinfo = build(SERVER_NAME, "004", &[&nick, SERVER_NAME, VERSION, "iow", "biklmnotv", "bklov"]);
        self.send_to(id, myinfo);
        let isupport = [
            format!("AWAYLEN={AWAYLEN}"),
            "CASEMAPPING=ascii".into(),
            format!("CHANLIMIT=#:{CHANLIMIT}"),
            "CHANMODES=b,k,l,imnt".into(),
            format!("CHANNELLEN={CHANNELLEN}"),
            "CHANTYPES=#".into(),
            format!("KICKLEN={KICKLEN}"),
            "MODES=4".into(),
            format!("NETWORK={NETWORK}"),
            format!("NICKLEN={NICKLEN}"),
            "PREFIX=(ov)@+".into(),
            format!("TARGMAX=PRIVMSG:{TARGMAX},NOTICE:{TARGMAX}"),
            format!("TOPICLEN={TOPICLEN}"),
        ];
        let tokens: Vec<&str> = isupport.iter().map(String::as_str).collect();
        self.numeric(id, "005", &tokens, "are supported by this server");
        let users =
            self.conns.values().filter(|c| c.registered).count() + self.sims.values().filter(|s| !s.service).count();
        self.numeric(id, "251", &[], &format!("There are {users} users and 0 invisible on 1 servers"));
        self.send_motd(id);
    }

    fn send_motd(&mut self, id: u64) {
        let motd = self.cfg.motd.clone();
        if motd.is_empty() {
            self.numeric(id, "422", &[], "MOTD File is missing");
            return;
        }
        self.numeric(id, "375", &[], &format!("- {SERVER_NAME} Message of the day - "));
        for l in motd {
            self.numeric(id, "372", &[], &format!("- {l}"));
        }
        self.numeric(id, "376", &[], "End of /MOTD command.");
    }

    // --- Channels ----------------------------------------------------------------------------

    fn is_banned(&self, ch: &Channel, who: Who) -> bool {
        let mask = self.mask_of(who);
        ch.bans.iter().any(|b| glob(b, &mask))
    }

    fn cmd_join(&mut self, id: u64, p: &[String]) {
        let Some(list) = p.first().cloned() else {
            self.numeric(id, "461", &["JOIN"], "Not enough parameters");
            return;
        };
        let who = Who::Client(id);
        if list == "0" {
            let keys: Vec<String> =
                self.channels.iter().filter(|(_, c)| c.members.contains_key(&who)).map(|(k, _)| k.clone()).collect();
            for k in keys {
                self.part(who, &k, "");
            }
            return;
        }
        let keys: Vec<String> = p.get(1).map(|k| k.split(',').map(str::to_string).collect()).unwrap_or_default();
        for (i, name) in list.split(',').enumerate() {
            let given_key = keys.get(i).map(String::as_str);
            if !valid_channel(name) {
                self.numeric(id, "403", &[name], "No such channel");
                continue;
            }
            let key = fold(name);
            if self.channels.get(&key).is_some_and(|c| c.members.contains_key(&who)) {
                continue;
            }
            let joined = self.channels.values().filter(|c| c.members.contains_key(&who)).count();
            if joined >= CHANLIMIT {
                self.numeric(id, "405", &[name], "You have joined too many channels");
                continue;
            }
            if let Some(ch) = self.channels.get(&key) {
                let refusal = if self.is_banned(ch, who) {
                    Some(("474", "Cannot join channel (+b)"))
                } else if ch.modes.contains(&'i') && !ch.invited.contains(&who) {
                    Some(("473", "Cannot join channel (+i)"))
                } else if ch.key.as_deref().is_some_and(|k| Some(k) != given_key) {
                    Some(("475", "Cannot join channel (+k)"))
                } else if ch.limit.is_some_and(|l| ch.members.len() >= l) {
                    Some(("471", "Cannot join channel (+l)"))
                } else {
                    None
                };
                if let Some((code, text)) = refusal {
                    let name = ch.name.clone();
                    self.numeric(id, code, &[&name], text);
                    continue;
                }
            }
            self.join(who, name);
        }
    }

    /// Puts `who` into channel `name` (creating it, `who` then being its operator) and sends the
    /// JOIN, topic and names.
    fn join(&mut self, who: Who, name: &str) {
        let key = fold(name);
        let ch = self.channels.entry(key.clone()).or_insert_with(|| Channel::new(name, false));
        let first = ch.members.is_empty() && !ch.persistent;
        ch.members.insert(who, Status { op: first, voice: false });
        ch.invited.remove(&who);
        let chan_name = ch.name.clone();
        let line = build(&self.mask_of(who), "JOIN", &[&chan_name]);
        self.broadcast(&key, &line, None);
        if let Who::Client(id) = who {
            let nick = self.nick_of(who);
            self.joins.push(Join { conn: id, nick, channel: chan_name.clone() });
            if let Some((text, setter, at)) = self.channels[&key].topic.clone() {
                self.numeric(id, "332", &[&chan_name], &text);
                let line = build(SERVER_NAME, "333", &[&self.nick_of(who), &chan_name, &setter, &at.to_string()]);
                self.send_to(id, line);
            }
            self.send_names(id, &chan_name);
        }
    }

    fn send_names(&mut self, id: u64, name: &str) {
        let key = fold(name);
        let Some(ch) = self.channels.get(&key) else {
            self.numeric(id, "366", &[name], "End of /NAMES list");
            return;
        };
        let chan_name = ch.name.clone();
        let names: Vec<String> = ch
            .members
            .iter()
            .map(|(w, s)| {
                let prefix = if s.op {
                    "@"
                } else if s.voice {
                    "+"
                } else {
                    ""
                };
                format!("{prefix}{}", self.nick_of(*w))
            })
            .collect();
        // Split so that each 353 stays well within the line limit.
        let mut chunk = String::new();
        let mut chunks = Vec::new();
        for n in names {
            if chunk.len() + n.len() + 1 > 350 {
                chunks.push(std::mem::take(&mut chunk));
            }
            if !chunk.is_empty() {
                chunk.push(' ');
            }
            chunk.push_str(&n);
        }
        if !chunk.is_empty() {
            chunks.push(chunk);
        }
        for c in chunks {
            self.numeric(id, "353", &["=", &chan_name], &c);
        }
        self.numeric(id, "366", &[&chan_name], "End of /NAMES list");
    }

    fn part(&mut self, who: Who, key: &str, reason: &str) {
        let Some(ch) = self.channels.get(key) else { return };
        let name = ch.name.clone();
        let line = if reason.is_empty() {
            build(&self.mask_of(who), "PART", &[&name])
        } else {
            build_text(&self.mask_of(who), "PART", &[&name], reason)
        };
        self.broadcast(key, &line, None);
        let ch = self.channels.get_mut(key).expect("channel");
        ch.members.remove(&who);
        if ch.members.is_empty() && !ch.persistent {
            self.channels.remove(key);
        }
    }

    fn cmd_part(&mut self, id: u64, p: &[String]) {
        let Some(list) = p.first().cloned() else {
            self.numeric(id, "461", &["PART"], "Not enough parameters");
            return;
        };
        let reason = p.get(1).cloned().unwrap_or_default();
        for name in list.split(',') {
            let key = fold(name);
            match self.channels.get(&key) {
                None => self.numeric(id, "403", &[name], "No such channel"),
                Some(ch) if !ch.members.contains_key(&Who::Client(id)) => {
                    let name = ch.name.clone();
                    self.numeric(id, "442", &[&name], "You're not on that channel")
                }
                Some(_) => self.part(Who::Client(id), &key, &reason),
            }
        }
    }

    fn kick(&mut self, by: Who, key: &str, target: Who, reason: &str) {
        let name = self.channels[key].name.clone();
        let mut reason = reason.to_string();
        truncate_utf8(&mut reason, KICKLEN);
        let line = build_text(&self.mask_of(by), "KICK", &[&name, &self.nick_of(target)], &reason);
        self.broadcast(key, &line, None);
        let ch = self.channels.get_mut(key).expect("channel");
        ch.members.remove(&target);
        if ch.members.is_empty() && !ch.persistent {
            self.channels.remove(key);
        }
    }

    fn cmd_kick(&mut self, id: u64, p: &[String]) {
        if p.len() < 2 {
            self.numeric(id, "461", &["KICK"], "Not enough parameters");
            return;
        }
        let me = Who::Client(id);
        let key = fold(&p[0]);
        let Some(ch) = self.channels.get(&key) else {
            self.numeric(id, "403", &[&p[0]], "No such channel");
            return;
        };
        let name = ch.name.clone();
        let Some(status) = ch.members.get(&me).copied() else {
            self.numeric(id, "442", &[&name], "You're not on that channel");
            return;
        };
        if !status.op {
            self.numeric(id, "482", &[&name], "You're not channel operator");
            return;
        }
        let reason = p.get(2).cloned().unwrap_or_else(|| self.nick_of(me));
        for nick in p[1].split(',') {
            match self.find_nick(nick).filter(|w| self.channels[&key].members.contains_key(w)) {
                Some(w) => self.kick(me, &key, w, &reason),
                None => self.numeric(id, "441", &[nick, &name], "They aren't on that channel"),
            }
            if !self.channels.contains_key(&key) {
                break;
            }
        }
    }

    fn cmd_invite(&mut self, id: u64, p: &[String]) {
        if p.len() < 2 {
            self.numeric(id, "461", &["INVITE"], "Not enough parameters");
            return;
        }
        let me = Who::Client(id);
        let (nick, chan) = (&p[0], &p[1]);
        let Some(target) = self.find_nick(nick) else {
            self.numeric(id, "401", &[nick], "No such nick/channel");
            return;
        };
        let key = fold(chan);
        let Some(ch) = self.channels.get(&key) else {
            self.numeric(id, "403", &[chan], "No such channel");
            return;
        };
        let name = ch.name.clone();
        let Some(status) = ch.members.get(&me).copied() else {
            self.numeric(id, "442", &[&name], "You're not on that channel");
            return;
        };
        if ch.members.contains_key(&target) {
            let n = self.nick_of(target);
            self.numeric(id, "443", &[&n, &name], "is already on channel");
            return;
        }
        if ch.modes.contains(&'i') && !status.op {
            self.numeric(id, "482", &[&name], "You're not channel operator");
            return;
        }
        self.channels.get_mut(&key).expect("channel").invited.insert(target);
        let n = self.nick_of(target);
        let line = build(SERVER_NAME, "341", &[&self.nick_of(me), &n, &name]);
        self.send_to(id, line);
        let invite = build(&self.mask_of(me), "INVITE", &[&n, &name]);
        self.deliver(target, invite);
    }

    fn cmd_topic(&mut self, id: u64, p: &[String]) {
        let Some(chan) = p.first() else {
            self.numeric(id, "461", &["TOPIC"], "Not enough parameters");
            return;
        };
        let me = Who::Client(id);
        let key = fold(chan);
        let Some(ch) = self.channels.get(&key) else {
            self.numeric(id, "403", &[chan], "No such channel");
            return;
        };
        let name = ch.name.clone();
        let Some(status) = ch.members.get(&me).copied() else {
            self.numeric(id, "442", &[&name], "You're not on that channel");
            return;
        };
        let Some(text) = p.get(1) else {
            match ch.topic.clone() {
                Some((text, setter, at)) => {
                    self.numeric(id, "332", &[&name], &text);
                    let line = build(SERVER_NAME, "333", &[&self.nick_of(me), &name, &setter, &at.to_string()]);
                    self.send_to(id, line);
                }
                None => self.numeric(id, "331", &[&name], "No topic is set"),
            }
            return;
        };
        if ch.modes.contains(&'t') && !status.op {
            self.numeric(id, "482", &[&name], "You're not channel operator");
            return;
        }
        self.set_topic(me, &key, text);
    }

    fn set_topic(&mut self, by: Who, key: &str, text: &str) {
        let mut text = text.to_string();
        truncate_utf8(&mut text, TOPICLEN);
        let setter = self.nick_of(by);
        let ch = self.channels.get_mut(key).expect("channel");
        ch.topic = if text.is_empty() { None } else { Some((text.clone(), setter, now_unix())) };
        let name = ch.name.clone();
        let line = build_text(&self.mask_of(by), "TOPIC", &[&name], &text);
        self.broadcast(key, &line, None);
    }

    fn cmd_mode(&mut self, id: u64, p: &[String]) {
        let Some(target) = p.first() else {
            self.numeric(id, "461", &["MODE"], "Not enough parameters");
            return;
        };
        let me = Who::Client(id);
        if !target.starts_with('#') {
            if fold(target) != fold(&self.nick_of(me)) {
                let code = if self.find_nick(target).is_some() { "502" } else { "401" };
                let text = if code == "502" { "Can't change mode for other users" } else { "No such nick/channel" };
                if code == "502" {
                    self.numeric(id, code, &[], text);
                } else {
                    self.numeric(id, code, &[target], text);
                }
                return;
            }
            let Some(modes) = p.get(1) else {
                let m: String = self.conns[&id].umodes.iter().collect();
                self.numeric(id, "221", &[], &format!("+{m}"));
                return;
            };
            let mut sign = '+';
            let mut applied = String::new();
            let mut unknown = false;
            for c in modes.chars() {
                match c {
                    '+' | '-' => sign = c,
                    'i' | 'w' => {
                        let set = &mut self.conns.get_mut(&id).expect("conn").umodes;
                        let changed = if sign == '+' { set.insert(c) } else { set.remove(&c) };
                        if changed {
                            applied.push(sign);
                            applied.push(c);
                        }
                    }
                    _ => unknown = true,
                }
            }
            if !applied.is_empty() {
                let nick = self.nick_of(me);
                let line = build(&nick, "MODE", &[&nick, &applied]);
                self.send_to(id, line);
            }
            if unknown {
                self.numeric(id, "501", &[], "Unknown MODE flag");
            }
            return;
        }
        let key = fold(target);
        let Some(ch) = self.channels.get(&key) else {
            self.numeric(id, "403", &[target], "No such channel");
            return;
        };
        let name = ch.name.clone();
        let Some(modes) = p.get(1) else {
            let (m, args) = ch.mode_string();
            let created = ch.created.to_string();
            let mut params = vec![name.as_str(), m.as_str()];
            params.extend(args.iter().map(String::as_str));
            let me_nick = self.nick_of(me);
            let mut all = vec![me_nick.as_str()];
            all.extend(params);
            let line = build(SERVER_NAME, "324", &all);
            self.send_to(id, line);
            let line = build(SERVER_NAME, "329", &[&me_nick, &name, &created]);
            self.send_to(id, line);
            return;
        };
        let listing_bans = modes.trim_start_matches('+') == "b" && p.len() == 2;
        if listing_bans {
            let bans = ch.bans.clone();
            for b in bans {
                self.numeric(id, "367", &[&name, &b], "");
            }
            self.numeric(id, "368", &[&name], "End of channel ban list");
            return;
        }
        let is_op = ch.members.get(&me).is_some_and(|s| s.op);
        if !is_op {
            self.numeric(id, "482", &[&name], "You're not channel operator");
            return;
        }
        let args: Vec<String> = p[2..].to_vec();
        for (code, params, text) in self.change_modes(me, &key, modes, &args) {
            let params: Vec<&str> = params.iter().map(String::as_str).collect();
            self.numeric(id, code, &params, &text);
        }
    }

    /// Applies a channel mode string from `by` (permission already checked) and broadcasts the
    /// change; returns the error numerics for the actor.
    fn change_modes(
        &mut self,
        by: Who,
        key: &str,
        modes: &str,
        args: &[String],
    ) -> Vec<(&'static str, Vec<String>, String)> {
        let mut errors = Vec::new();
        let mut args = args.iter();
        let mut sign = '+';
        let mut out = String::new();
        let mut out_sign = ' ';
        let mut out_args: Vec<String> = Vec::new();
        let mut push = |out: &mut String, s: char, c: char| {
            if out_sign != s {
                out.push(s);
                out_sign = s;
            }
            out.push(c);
        };
        let name = self.channels[key].name.clone();
        for c in modes.chars() {
            match c {
                '+' | '-' => sign = c,
                'i' | 'm' | 'n' | 't' => {
                    let ch = self.channels.get_mut(key).expect("channel");
                    let changed = if sign == '+' { ch.modes.insert(c) } else { ch.modes.remove(&c) };
                    if changed {
                        push(&mut out, sign, c);
                    }
                }
                'k' => {
                    let arg = args.next().cloned();
                    let ch = self.channels.get_mut(key).expect("channel");
                    if sign == '+' {
                        if let Some(k) = arg.filter(|k| !k.is_empty() && !k.contains(' ')) {
                            ch.key = Some(k.clone());
                            push(&mut out, sign, c);
                            out_args.push(k);
                        }
                    } else if ch.key.take().is_some() {
                        push(&mut out, sign, c);
                        out_args.push("*".into());
                    }
                }
                'l' => {
                    let ch = self.channels.get_mut(key).expect("channel");
                    if sign == '+' {
                        if let Some(l) = args.next().and_then(|a| a.parse::<usize>().ok()).filter(|l| *l > 0) {
                            ch.limit = Some(l);
                            push(&mut out, sign, c);
                            out_args.push(l.to_string());
                        }
                    } else if ch.limit.take().is_some() {
                        push(&mut out, sign, c);
                    }
                }
                'b' => {
                    let Some(mask) = args.next().cloned() else { continue };
                    let mask = if mask.contains('!') || mask.contains('@') { mask } else { format!("{mask}!*@*") };
                    let ch = self.channels.get_mut(key).expect("channel");
                    let present = ch.bans.iter().any(|b| fold(b) == fold(&mask));
                    if sign == '+' && !present {
                        ch.bans.push(mask.clone());
                    } else if sign == '-' && present {
                        ch.bans.retain(|b| fold(b) != fold(&mask));
                    } else {
                        continue;
                    }
                    push(&mut out, sign, c);
                    out_args.push(mask);
                }
                'o' | 'v' => {
                    let Some(nick) = args.next().cloned() else { continue };
                    let target = self.find_nick(&nick).filter(|w| self.channels[key].members.contains_key(w));
                    let Some(target) = target else {
                        errors.push(("441", vec![nick, name.clone()], "They aren't on that channel".to_string()));
                        continue;
                    };
                    let shown = self.nick_of(target);
                    let st = self.channels.get_mut(key).expect("channel").members.get_mut(&target).expect("member");
                    let flag = if c == 'o' { &mut st.op } else { &mut st.voice };
                    if *flag != (sign == '+') {
                        *flag = sign == '+';
                        push(&mut out, sign, c);
                        out_args.push(shown);
                    }
                }
                _ => errors.push(("472", vec![c.to_string()], "is unknown mode char to me".to_string())),
            }
        }
        if !out.is_empty() {
            let mut params = vec![name.as_str(), out.as_str()];
            params.extend(out_args.iter().map(String::as_str));
            let line = build(&self.mask_of(by), "MODE", &params);
            self.broadcast(key, &line, None);
        }
        errors
    }

    fn cmd_who(&mut self, id: u64, p: &[String]) {
        let me_nick = self.nick_of(Who::Client(id));
        let Some(mask) = p.first().cloned() else {
            self.numeric(id, "315", &["*"], "End of WHO list");
            return;
        };
        let mut rows: Vec<(String, Who, Status)> = Vec::new();
        if mask.starts_with('#') {
            if let Some(ch) = self.channels.get(&fold(&mask)) {
                rows = ch.members.iter().map(|(w, s)| (ch.name.clone(), *w, *s)).collect();
            }
        } else if let Some(w) = self.find_nick(&mask) {
            rows.push(("*".into(), w, Status::default()));
        }
        for (chan, w, s) in rows {
            let (user, host, real, away) = match w {
                Who::Client(cid) => {
                    let c = &self.conns[&cid];
                    (c.user.clone().unwrap_or_default(), c.peer.ip().to_string(), c.realname.clone(), c.away.is_some())
                }
                Who::Sim(sid) => {
                    let s = &self.sims[&sid];
                    (s.user.clone(), s.host.clone(), s.nick.clone(), false)
                }
            };
            let mut flags = if away { "G".to_string() } else { "H".to_string() };
            if s.op {
                flags.push('@');
            } else if s.voice {
                flags.push('+');
            }
            let nick = self.nick_of(w);
            let line = build_text(
                SERVER_NAME,
                "352",
                &[&me_nick, &chan, &user, &host, SERVER_NAME, &nick, &flags],
                &format!("0 {real}"),
            );
            self.send_to(id, line);
        }
        self.numeric(id, "315", &[&mask], "End of WHO list");
    }

    fn cmd_whois(&mut self, id: u64, p: &[String]) {
        let Some(nick) = p.last().cloned() else {
            self.numeric(id, "431", &[], "No nickname given");
            return;
        };
        let Some(w) = self.find_nick(&nick) else {
            self.numeric(id, "401", &[&nick], "No such nick/channel");
            self.numeric(id, "318", &[&nick], "End of /WHOIS list");
            return;
        };
        let shown = self.nick_of(w);
        let (user, host, real, account) = match w {
            Who::Client(cid) => {
                let c = &self.conns[&cid];
                (c.user.clone().unwrap_or_default(), c.peer.ip().to_string(), c.realname.clone(), c.account.clone())
            }
            Who::Sim(sid) => {
                let s = &self.sims[&sid];
                (s.user.clone(), s.host.clone(), s.nick.clone(), None)
            }
        };
        self.numeric(id, "311", &[&shown, &user, &host, "*"], &real);
        let chans: Vec<String> = self
            .channels
            .values()
            .filter_map(|ch| {
                ch.members.get(&w).map(|s| {
                    format!(
                        "{}{}",
                        if s.op {
                            "@"
                        } else if s.voice {
                            "+"
                        } else {
                            ""
                        },
                        ch.name
                    )
                })
            })
            .collect();
        if !chans.is_empty() {
            self.numeric(id, "319", &[&shown], &chans.join(" "));
        }
        self.numeric(id, "312", &[&shown, SERVER_NAME], "clawline IRC twin");
        if let Some(a) = account {
            self.numeric(id, "330", &[&shown, &a], "is logged in as");
        }
        self.numeric(id, "318", &[&shown], "End of /WHOIS list");
    }

    // --- Messages --------------------------------------------------------------------------

    fn cmd_privmsg(&mut self, id: u64, p: &[String], notice: bool) {
        let command = if notice { "NOTICE" } else { "PRIVMSG" };
        let Some(targets) = p.first().filter(|t| !t.is_empty()).cloned() else {
            if !notice {
                self.numeric(id, "411", &[], &format!("No recipient given ({command})"));
            }
            return;
        };
        let Some(text) = p.get(1).filter(|t| !t.is_empty()).cloned() else {
            if !notice {
                self.numeric(id, "412", &[], "No text to send");
            }
            return;
        };
        let targets: Vec<&str> = targets.split(',').filter(|t| !t.is_empty()).collect();
        if targets.len() > TARGMAX {
            if !notice {
                self.numeric(id, "407", &[targets[0]], "Too many targets");
            }
            return;
        }
        let me = Who::Client(id);
        let from = self.nick_of(me);
        let mask = self.mask_of(me);
        for target in targets {
            let mut delivered = false;
            if target.starts_with('#') {
                let key = fold(target);
                match self.channels.get(&key) {
                    None => {
                        // 401 as ngIRCd and the ratbox family answer (not 403).
                        if !notice {
                            self.numeric(id, "401", &[target], "No such nick/channel");
                        }
                    }
                    Some(ch) => {
                        let status = ch.members.get(&me).copied();
                        let blocked = (status.is_none() && ch.modes.contains(&'n'))
                            || (ch.modes.contains(&'m') && !status.is_some_and(|s| s.op || s.voice))
                            || (!status.is_some_and(|s| s.op || s.voice) && self.is_banned(ch, me));
                        let name = ch.name.clone();
                        if blocked {
                            if !notice {
                                self.numeric(id, "404", &[&name], "Cannot send to channel");
                            }
                        } else {
                            let line = build_text(&mask, command, &[&name], &text);
                            self.broadcast(&key, &line, Some(me));
                            delivered = true;
                        }
                    }
                }
            } else {
                match self.find_nick(target) {
                    None => {
                        if !notice {
                            self.numeric(id, "401", &[target], "No such nick/channel");
                        }
                    }
                    Some(w) => {
                        let shown = self.nick_of(w);
                        let line = build_text(&mask, command, &[&shown], &text);
                        self.deliver(w, line);
                        delivered = true;
                        if let Who::Client(other) = w
                            && !notice
                            && let Some(away) = self.conns.get(&other).and_then(|c| c.away.clone())
                        {
                            self.numeric(id, "301", &[&shown], &away);
                        }
                    }
                }
            }
            self.privmsgs.push(Privmsg {
                conn: id,
                from: from.clone(),
                target: target.to_string(),
                text: text.clone(),
                notice,
                delivered,
            });
            if delivered && !notice && self.find_nick(target) == Some(Who::Sim(NICKSERV)) {
                self.nickserv(id, &text);
            }
        }
    }

    fn service_notice(&mut self, id: u64, service: u64, text: &str) {
        let mask = self.mask_of(Who::Sim(service));
        let nick = self.target_name(id);
        self.send_to(id, build_text(&mask, "NOTICE", &[&nick], text));
    }

    fn nickserv(&mut self, id: u64, text: &str) {
        let words: Vec<&str> = text.split_whitespace().collect();
        let cmd = words.first().map(|w| w.to_ascii_uppercase()).unwrap_or_default();
        let me_nick = self.nick_of(Who::Client(id));
        match cmd.as_str() {
            "IDENTIFY" if words.len() >= 2 => {
                let (account, password) =
                    if words.len() >= 3 { (words[1].to_string(), words[2]) } else { (me_nick.clone(), words[1]) };
                match self.cfg.nickserv.get(&fold(&account)).cloned() {
                    None => self.service_notice(id, NICKSERV, &format!("{account} is not a registered nickname.")),
                    Some((_, pw)) if pw != password => {
                        self.service_notice(id, NICKSERV, &format!("Invalid password for {account}."))
                    }
                    Some((name, _)) => {
                        self.conns.get_mut(&id).expect("conn").account = Some(name.clone());
                        self.service_notice(id, NICKSERV, &format!("You are now identified for {name}."));
                        let mask = self.mask_of(Who::Client(id));
                        self.numeric(id, "900", &[&mask, &name], &format!("You are now logged in as {name}"));
                    }
                }
            }
            "GHOST" | "REGAIN" | "RECOVER" if words.len() >= 2 => {
                let nick = words[1];
                let Some((name, pw)) = self.cfg.nickserv.get(&fold(nick)).cloned() else {
                    self.service_notice(id, NICKSERV, &format!("{nick} is not a registered nickname."));
                    return;
                };
                let identified = self.conns[&id].account.as_deref().map(fold) == Some(fold(&name));
                if !identified && words.get(2) != Some(&pw.as_str()) {
                    self.service_notice(id, NICKSERV, &format!("Invalid password for {name}."));
                    return;
                }
                match self.find_nick(nick) {
                    None => {}
                    Some(Who::Client(other)) if other == id => {
                        self.service_notice(id, NICKSERV, "You can't ghost yourself.");
                        return;
                    }
                    Some(Who::Client(other)) => {
                        self.close_conn(other, &format!("Killed (NickServ (GHOST command used by {me_nick}))"), true)
                    }
                    Some(Who::Sim(sid)) if self.sims[&sid].service => {
                        self.service_notice(id, NICKSERV, &format!("{nick} is a service."));
                        return;
                    }
                    Some(Who::Sim(sid)) => {
                        self.sim_quit(sid, &format!("Killed (NickServ (GHOST command used by {me_nick}))"))
                    }
                }
                if cmd == "GHOST" {
                    self.service_notice(id, NICKSERV, &format!("{nick} has been ghosted."));
                } else {
                    self.rename(Who::Client(id), &name);
                    self.service_notice(id, NICKSERV, &format!("You have regained the nickname {name}."));
                }
            }
            _ => self.service_notice(id, NICKSERV, &format!("Unknown command {cmd}. Try IDENTIFY, GHOST or REGAIN.")),
        }
    }

    fn sim_quit(&mut self, sid: u64, reason: &str) {
        let who = Who::Sim(sid);
        let line = build_text(&self.mask_of(who), "QUIT", &[], reason);
        for p in self.peers_of(who) {
            self.deliver(p, line.clone());
        }
        self.leave_all(who);
        self.sims.remove(&sid);
    }

    // --- Simulated people ------------------------------------------------------------------

    fn add_sim(&mut self, nick: &str) -> u64 {
        assert!(valid_nick(nick), "irc twin: {nick:?} is not a valid nick");
        if let Some(w) = self.find_nick(nick) {
            panic!("irc twin: nick {nick} is already in use by {w:?}");
        }
        let id = self.next_sim;
        self.next_sim += 1;
        self.sims
            .insert(id, Sim { nick: nick.into(), user: format!("~{nick}"), host: USERS_HOST.into(), service: false });
        id
    }

    fn sim(&self, id: u64) -> &Sim {
        self.sims.get(&id).unwrap_or_else(|| panic!("irc twin: the simulated user (id {id}) has quit"))
    }

    /// A message from a simulated user or service to a nick or channel, as a server would relay it.
    fn sim_message(&mut self, sid: u64, command: &str, target: &str, text: &str) {
        let who = Who::Sim(sid);
        let nick = self.sim(sid).nick.clone();
        let mask = self.mask_of(who);
        if target.starts_with('#') {
            let key = fold(target);
            let ch = self.channels.get(&key).unwrap_or_else(|| panic!("irc twin: no channel {target}"));
            let status = ch.members.get(&who).copied();
            assert!(
                status.is_some() || !ch.modes.contains(&'n'),
                "irc twin: {nick} is not in {target} (+n), a server would refuse the message"
            );
            assert!(
                !ch.modes.contains(&'m') || status.is_some_and(|s| s.op || s.voice),
                "irc twin: {target} is moderated and {nick} has no voice"
            );
            let name = ch.name.clone();
            let line = build_text(&mask, command, &[&name], text);
            let members: Vec<Who> = ch.members.keys().copied().filter(|w| *w != who).collect();
            for w in members {
                self.deliver_message(w, command, line.clone());
            }
        } else {
            let Some(w) = self.find_nick(target) else { panic!("irc twin: no such nick {target}") };
            let shown = self.nick_of(w);
            let line = build_text(&mask, command, &[&shown], text);
            self.deliver_message(w, command, line);
        }
    }

    fn deliver_message(&mut self, w: Who, command: &str, line: String) {
        if let Who::Client(id) = w {
            let twice = command == "PRIVMSG" && std::mem::take(&mut self.duplicate_next);
            // A replay carries the time the line was first said.
            let at = SystemTime::now();
            if twice {
                self.send_stamped(id, line.clone(), at);
            }
            self.send_stamped(id, line, at);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Connection tasks
// ---------------------------------------------------------------------------------------------

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else { continue };
        if shared.closed.load(Ordering::SeqCst) {
            return;
        }
        let task = tokio::spawn(serve_conn(shared.clone(), stream, peer));
        let mut tasks = shared.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }
}

async fn serve_conn(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let (close_tx, close_rx) = mpsc::unbounded_channel();
    let kill = Arc::new(Notify::new());
    let id = shared.lock().open_conn(peer, tx, close_tx, kill.clone());
    let writer = tokio::spawn(write_loop(wr, rx, close_rx, shared.stall.subscribe()));
    read_loop(&shared, id, &mut rd, &kill).await;
    shared.lock().close_conn(id, "Connection closed", false);
    let _ = writer.await;
    // Read what the client still sends for a moment, so the close is a FIN after our ERROR
    // rather than a reset that could discard it.
    let mut sink = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_millis(500);
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, rd.read(&mut sink)).await {
        if n == 0 {
            break;
        }
    }
}

async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    mut close_rx: mpsc::UnboundedReceiver<Option<Vec<u8>>>,
    mut stall: watch::Receiver<bool>,
) {
    loop {
        let stalled = *stall.borrow_and_update();
        tokio::select! {
            biased;
            close = close_rx.recv() => {
                if !stalled {
                    while let Ok(bytes) = rx.try_recv() {
                        if wr.write_all(&bytes).await.is_err() {
                            return;
                        }
                    }
                }
                if let Some(Some(err)) = close {
                    let _ = wr.write_all(&err).await;
                }
                let _ = wr.shutdown().await;
                return;
            }
            r = stall.changed() => {
                if r.is_err() {
                    return;
                }
            }
            item = rx.recv(), if !stalled => match item {
                Some(bytes) => {
                    if wr.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                None => return,
            },
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn read_loop(shared: &Shared, id: u64, rd: &mut OwnedReadHalf, kill: &Notify) {
    let mut buf: Vec<u8> = Vec::new();
    let mut discarding = false;
    let mut changed = shared.changed.subscribe();
    let mut chunk = vec![0u8; 8192];
    loop {
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            if discarding {
                discarding = false;
                continue;
            }
            // Hold while stalled, then wait for a flood token (delay mode).
            let mut counted = false;
            loop {
                let (stalled, gate) = {
                    let mut st = shared.lock();
                    if st.stalled { (true, Gate::Go) } else { (false, st.flood_gate(id)) }
                };
                let wait = match (stalled, gate) {
                    (true, _) => None,
                    (false, Gate::Go) => break,
                    (false, Gate::Wait(d)) => {
                        if !counted {
                            counted = true;
                            shared.lock().throttled += 1;
                        }
                        Some(d)
                    }
                };
                tokio::select! {
                    _ = kill.notified() => return,
                    _ = changed.changed() => {}
                    _ = sleep_until_opt(wait.map(|d| Instant::now() + d)) => {}
                }
            }
            if !shared.lock().handle_line(id, line) {
                return;
            }
        }
        if buf.len() > MAX_BUFFER {
            if !discarding {
                let text = String::from_utf8_lossy(&buf[..600.min(buf.len())]).into_owned();
                let alive = shared.lock().overlong(id, ViolationKind::LineTooLong { bytes: buf.len() }, &text);
                if !alive {
                    return;
                }
                discarding = true;
            }
            buf.clear();
        }
        let (deadline, stalled) = {
            let st = shared.lock();
            if !st.conns.contains_key(&id) {
                return;
            }
            (st.next_deadline(id), st.stalled)
        };
        tokio::select! {
            r = rd.read(&mut chunk), if !stalled => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    shared.lock().seen(id);
                }
            },
            _ = kill.notified() => return,
            _ = changed.changed() => {}
            _ = sleep_until_opt(deadline) => {
                if !shared.lock().timers(id) {
                    return;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server and its test-facing API
// ---------------------------------------------------------------------------------------------

/// A running twin. Dropping it closes every connection and stops listening.
pub struct IrcServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for IrcServer {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.accept.abort();
        {
            let mut st = self.shared.lock();
            for c in st.conns.values() {
                let _ = c.close_tx.send(None);
                c.kill.notify_one();
            }
            st.conns.clear();
        }
        for t in self.shared.tasks.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            t.abort();
        }
    }
}

impl IrcServer {
    /// Starts a twin listening with plain TCP on 127.0.0.1 at a random port.
    pub async fn start() -> IrcServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind irc twin");
        let addr = listener.local_addr().expect("local addr");
        let (changed, _) = watch::channel(0u64);
        let (stall, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new()),
            changed,
            stall,
            closed: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
        });
        let accept = tokio::spawn(accept_loop(shared.clone(), listener));
        IrcServer { addr, shared, accept }
    }

    /// `127.0.0.1`.
    pub fn host(&self) -> String {
        self.addr.ip().to_string()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// [`SERVER_NAME`], the source of the twin's numerics.
    pub fn server_name(&self) -> &'static str {
        SERVER_NAME
    }

    // --- Configuration -------------------------------------------------------------------

    /// Adds (or replaces) a SASL PLAIN account; from then on `sasl` is advertised.
    pub fn set_sasl_account(&self, user: &str, password: &str) {
        self.shared.lock().cfg.sasl.insert(fold(user), (user.to_string(), password.to_string()));
    }

    /// Adds (or replaces) a NickServ account: the registered nick `user` with its password.
    pub fn set_nickserv(&self, user: &str, password: &str) {
        self.shared.lock().cfg.nickserv.insert(fold(user), (user.to_string(), password.to_string()));
    }

    /// A server password (`PASS`) every client must send before registering; `None`: none.
    pub fn set_password(&self, password: Option<&str>) {
        self.shared.lock().cfg.password = password.map(String::from);
    }

    /// Idle time after which a registered client is sent a PING (120 s by default).
    pub fn set_ping_interval(&self, interval: Duration) {
        self.shared.lock().cfg.ping_interval = interval;
        self.shared.bump();
    }

    /// How long after a PING a silent client is closed with `Ping timeout` (20 s by default).
    pub fn set_ping_timeout(&self, timeout: Duration) {
        self.shared.lock().cfg.ping_timeout = timeout;
        self.shared.bump();
    }

    /// How long a connection may take to register (60 s by default).
    pub fn set_registration_timeout(&self, timeout: Duration) {
        self.shared.lock().cfg.registration_timeout = timeout;
        self.shared.bump();
    }

    /// Send `PING :<token>` on connect and register only after the matching PONG (for
    /// connections made afterwards).
    pub fn set_registration_ping(&self, on: bool) {
        self.shared.lock().cfg.registration_ping = on;
    }

    /// Flood control for registered clients: a bucket of `burst` lines refilled one per
    /// `per_line`; a line without a token waits (`disconnect` false) or closes the client with
    /// `Excess Flood` (`disconnect` true). `burst` 0 turns it off. Default: 5, 500 ms, delay.
    pub fn set_flood(&self, burst: u32, per_line: Duration, disconnect: bool) {
        let mut st = self.shared.lock();
        st.cfg.flood = Flood { burst, per_line, disconnect };
        let b = f64::from(burst);
        let now = Instant::now();
        for c in st.conns.values_mut() {
            c.tokens = b;
            c.refilled = now;
        }
        drop(st);
        self.shared.bump();
    }

    /// Over-long lines close the client (`ERROR … (Request too long)`, as ngIRCd does) instead
    /// of being answered `417`.
    pub fn set_overlong_disconnect(&self, on: bool) {
        self.shared.lock().cfg.overlong_disconnect = on;
    }

    /// The MOTD lines; empty: `422 MOTD File is missing`.
    pub fn set_motd(&self, lines: &[&str]) {
        self.shared.lock().cfg.motd = lines.iter().map(|l| l.to_string()).collect();
    }

    // --- Simulated people and channels ---------------------------------------------------

    /// A simulated person with this nick on the network (panics when the nick is taken).
    pub fn user(&self, nick: &str) -> IrcUser {
        let id = self.shared.lock().add_sim(nick);
        IrcUser { shared: self.shared.clone(), id }
    }

    /// Occupies `nick` with a simulated user in no channel, so the client collides with it.
    pub fn take_nick(&self, nick: &str) {
        self.shared.lock().add_sim(nick);
    }

    /// The simulated user holding `nick` quits (`Quit: released`), freeing the nick.
    pub fn release_nick(&self, nick: &str) {
        let mut st = self.shared.lock();
        match st.find_nick(nick) {
            Some(Who::Sim(id)) if !st.sims[&id].service => st.sim_quit(id, "Quit: released"),
            other => panic!("irc twin: {nick} is not held by a simulated user ({other:?})"),
        }
    }

    /// A persistent channel (kept while empty, like ngIRCd's predefined channels), `+nt`, with
    /// an optional topic set by ChanServ. Nothing happens when it exists.
    pub fn add_channel(&self, name: &str, topic: Option<&str>) {
        assert!(valid_channel(name), "irc twin: {name:?} is not a valid channel name");
        let mut st = self.shared.lock();
        let key = fold(name);
        if st.channels.contains_key(&key) {
            return;
        }
        let mut ch = Channel::new(name, true);
        if let Some(t) = topic {
            ch.topic = Some((t.to_string(), "ChanServ".into(), now_unix()));
        }
        st.channels.insert(key, ch);
    }

    /// ChanServ changes channel modes, e.g. `"+i"`, `"+b bad!*@*"`, `"+k secret"`, `"+o nick"`
    /// (the channel is created as with [`IrcServer::add_channel`] when missing).
    pub fn channel_mode(&self, chan: &str, modes: &str) {
        self.add_channel(chan, None);
        let mut parts = modes.split(' ');
        let modestr = parts.next().unwrap_or("").to_string();
        let args: Vec<String> = parts.map(str::to_string).collect();
        let mut st = self.shared.lock();
        let errors = st.change_modes(Who::Sim(CHANSERV), &fold(chan), &modestr, &args);
        assert!(errors.is_empty(), "irc twin: mode {modes} on {chan}: {errors:?}");
    }

    /// ChanServ sets the topic of an existing channel.
    pub fn set_topic(&self, chan: &str, topic: &str) {
        let mut st = self.shared.lock();
        let key = fold(chan);
        assert!(st.channels.contains_key(&key), "irc twin: no channel {chan}");
        st.set_topic(Who::Sim(CHANSERV), &key, topic);
    }

    /// Nicks in a channel, with `@`/`+` prefixes (empty when there is no such channel).
    pub fn members(&self, chan: &str) -> Vec<String> {
        let st = self.shared.lock();
        st.channels
            .get(&fold(chan))
            .map(|ch| {
                ch.members
                    .iter()
                    .map(|(w, s)| {
                        format!(
                            "{}{}",
                            if s.op {
                                "@"
                            } else if s.voice {
                                "+"
                            } else {
                                ""
                            },
                            st.nick_of(*w)
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    // --- Inspection ----------------------------------------------------------------------

    /// Every PRIVMSG and NOTICE the client sent, one per target, delivered or not.
    pub fn privmsgs(&self) -> Vec<Privmsg> {
        self.shared.lock().privmsgs.clone()
    }

    /// What reached `target` (a nick or a channel, case-insensitive) from clients.
    pub fn received_by(&self, target: &str) -> Vec<Privmsg> {
        let f = fold(target);
        self.shared.lock().privmsgs.iter().filter(|m| m.delivered && fold(&m.target) == f).cloned().collect()
    }

    /// Waits until `target` received at least `n` messages; panics with what the client sent.
    pub async fn wait_received(&self, target: &str, n: usize, timeout: Duration) -> Vec<Privmsg> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received_by(target);
            if got.len() >= n {
                return got;
            }
            if Instant::now() >= deadline {
                panic!(
                    "irc twin: expected {n} messages to {target} within {timeout:?}, got {got:#?}\nlines from clients: {:#?}",
                    self.lines_from_client().iter().map(|l| l.text.clone()).collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Every line clients sent, in order.
    pub fn lines_from_client(&self) -> Vec<ClientLine> {
        self.shared.lock().lines.clone()
    }

    /// Waits for a line from a client containing `needle`; panics on timeout.
    pub async fn wait_line_from_client(&self, needle: &str, timeout: Duration) -> ClientLine {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.lines_from_client().into_iter().find(|l| l.text.contains(needle)) {
                return l;
            }
            if Instant::now() >= deadline {
                panic!(
                    "irc twin: no line containing {needle:?} within {timeout:?}; lines: {:#?}",
                    self.lines_from_client().iter().map(|l| l.text.clone()).collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Every line the twin sent to clients (`(connection, line without CR LF)`), in order; raw
    /// bytes from [`IrcServer::send_raw_to_client`] are included lossily.
    pub fn lines_to_client(&self) -> Vec<(u64, String)> {
        self.shared.lock().to_client.clone()
    }

    pub fn violations(&self) -> Vec<Violation> {
        self.shared.lock().violations.clone()
    }

    pub fn registrations(&self) -> Vec<Registration> {
        self.shared.lock().registrations.clone()
    }

    /// Waits until at least `n` clients completed registration; panics on timeout.
    pub async fn wait_registered(&self, n: usize, timeout: Duration) -> Vec<Registration> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.registrations();
            if r.len() >= n {
                return r;
            }
            if Instant::now() >= deadline {
                panic!(
                    "irc twin: expected {n} registrations within {timeout:?}, got {r:#?}\nlines from clients: {:#?}",
                    self.lines_from_client().iter().map(|l| l.text.clone()).collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn joins(&self) -> Vec<Join> {
        self.shared.lock().joins.clone()
    }

    /// Waits until a client joined `chan`; panics on timeout.
    pub async fn wait_joined(&self, chan: &str, timeout: Duration) -> Join {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(j) = self.joins().into_iter().find(|j| fold(&j.channel) == fold(chan)) {
                return j;
            }
            if Instant::now() >= deadline {
                panic!(
                    "irc twin: no client joined {chan} within {timeout:?}; lines from clients: {:#?}",
                    self.lines_from_client().iter().map(|l| l.text.clone()).collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn connections(&self) -> Vec<Connection> {
        self.shared.lock().connections.clone()
    }

    /// Waits until at least `n` connections were made; panics on timeout.
    pub async fn wait_connections(&self, n: usize, timeout: Duration) -> Vec<Connection> {
        let deadline = Instant::now() + timeout;
        loop {
            let c = self.connections();
            if c.len() >= n {
                return c;
            }
            assert!(Instant::now() < deadline, "irc twin: expected {n} connections within {timeout:?}, got {c:#?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until connection `id` is closed; panics on timeout.
    pub async fn wait_closed(&self, id: u64, timeout: Duration) -> Connection {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self.connections().into_iter().find(|c| c.id == id && !c.open) {
                return c;
            }
            assert!(Instant::now() < deadline, "irc twin: connection {id} still open after {timeout:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The current nick of every connected client (registered or not), by connection id.
    pub fn client_nicks(&self) -> Vec<(u64, String)> {
        self.shared.lock().conns.iter().filter_map(|(id, c)| c.nick.clone().map(|n| (*id, n))).collect()
    }

    /// Waits until a connected client has `nick`; panics on timeout.
    pub async fn wait_nick(&self, nick: &str, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((id, _)) = self.client_nicks().into_iter().find(|(_, n)| fold(n) == fold(nick)) {
                return id;
            }
            assert!(
                Instant::now() < deadline,
                "irc twin: no client is {nick} after {timeout:?}; nicks: {:?}",
                self.client_nicks()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The account a connection is logged into (SASL or NickServ).
    pub fn account(&self, conn: u64) -> Option<String> {
        self.shared.lock().conns.get(&conn).and_then(|c| c.account.clone())
    }

    pub fn sasl_attempts(&self) -> Vec<SaslAttempt> {
        self.shared.lock().sasl_attempts.clone()
    }

    /// Keep-alive PINGs sent, and whether they were answered.
    pub fn pings(&self) -> Vec<Ping> {
        self.shared.lock().pings.clone()
    }

    /// Lines that had to wait for a flood token (delay mode).
    pub fn throttled_lines(&self) -> usize {
        self.shared.lock().throttled
    }

    // --- Faults --------------------------------------------------------------------------

    /// Closes every client connection without an `ERROR` line.
    pub fn drop_clients(&self) {
        let mut st = self.shared.lock();
        let ids: Vec<u64> = st.conns.keys().copied().collect();
        for id in ids {
            st.close_conn(id, "Dropped", false);
        }
    }

    /// Closes every client connection with `ERROR :Closing Link: <ip> (<reason>)`.
    pub fn close_clients(&self, reason: &str) {
        let mut st = self.shared.lock();
        let ids: Vec<u64> = st.conns.keys().copied().collect();
        for id in ids {
            st.close_conn(id, reason, true);
        }
    }

    /// While on, the twin reads, answers and sends nothing and runs no timers; the sockets stay
    /// open. Turning it off delivers what was held and restarts the keep-alive clocks.
    pub fn stall(&self, on: bool) {
        {
            let mut st = self.shared.lock();
            st.stalled = on;
            if !on {
                let now = Instant::now();
                for c in st.conns.values_mut() {
                    c.last_seen = now;
                    c.ping = None;
                    c.connected = now;
                }
            }
        }
        self.shared.stall.send_replace(on);
        self.shared.bump();
    }

    /// ChanServ kicks `nick` (the client or a simulated user) from `chan`.
    pub fn kick(&self, chan: &str, nick: &str, reason: &str) {
        let mut st = self.shared.lock();
        let key = fold(chan);
        let target = st
            .find_nick(nick)
            .filter(|w| st.channels.get(&key).is_some_and(|ch| ch.members.contains_key(w)))
            .unwrap_or_else(|| panic!("irc twin: {nick} is not in {chan}"));
        st.kick(Who::Sim(CHANSERV), &key, target, reason);
    }

    /// Writes `bytes` exactly as given (add `\r\n` yourself) to every connected client.
    /// A bouncer playing back a private message `from` said to the client at `at`: sent to every
    /// client as `:from!~from@users.clawline.test PRIVMSG <client nick> :text`, stamped `at` for
    /// clients that negotiated `server-time` (unstamped, it looks like a new line).
    pub fn replay_privmsg(&self, from: &str, text: &str, at: SystemTime) {
        let mut st = self.shared.lock();
        let ids: Vec<u64> = st.conns.keys().copied().collect();
        for id in ids {
            let nick = st.target_name(id);
            let line = build_text(&format!("{from}!~{from}@{USERS_HOST}"), "PRIVMSG", &[&nick], text);
            st.send_stamped(id, line, at);
        }
    }

    pub fn send_raw_to_client(&self, bytes: &[u8]) {
        let mut st = self.shared.lock();
        let ids: Vec<u64> = st.conns.keys().copied().collect();
        for id in ids {
            let _ = st.conns[&id].tx.send(bytes.to_vec());
            st.to_client.push((id, String::from_utf8_lossy(bytes).into_owned()));
        }
    }

    /// The next PRIVMSG delivered to a client is sent twice.
    pub fn duplicate_next_privmsg(&self) {
        self.shared.lock().duplicate_next = true;
    }
}

// ---------------------------------------------------------------------------------------------
// Simulated people
// ---------------------------------------------------------------------------------------------

/// A simulated person on the twin's network, created by [`IrcServer::user`]. Its actions reach
/// the clients as a server would relay them; what a real server would refuse (a message to a
/// +n channel it is not in, a kick without operator status, …) panics instead. Joins ignore
/// +i, +k, +l and bans. All methods panic once the user has quit.
#[derive(Clone)]
pub struct IrcUser {
    shared: Arc<Shared>,
    id: u64,
}

impl IrcUser {
    pub fn nick(&self) -> String {
        self.shared.lock().sim(self.id).nick.clone()
    }

    /// `nick!~nick@users.clawline.test` (the user part keeps the first nick).
    pub fn mask(&self) -> String {
        let st = self.shared.lock();
        st.sim(self.id);
        st.mask_of(Who::Sim(self.id))
    }

    /// Joins `chan`, creating it (`+nt`, this user its operator) when it does not exist.
    pub fn join(&self, chan: &str) {
        assert!(valid_channel(chan), "irc twin: {chan:?} is not a valid channel name");
        let mut st = self.shared.lock();
        st.sim(self.id);
        if st.channels.get(&fold(chan)).is_some_and(|c| c.members.contains_key(&Who::Sim(self.id))) {
            return;
        }
        st.join(Who::Sim(self.id), chan);
    }

    pub fn part(&self, chan: &str, reason: &str) {
        let mut st = self.shared.lock();
        st.sim(self.id);
        let key = fold(chan);
        assert!(
            st.channels.get(&key).is_some_and(|c| c.members.contains_key(&Who::Sim(self.id))),
            "irc twin: not in {chan}"
        );
        st.part(Who::Sim(self.id), &key, reason);
    }

    pub fn privmsg(&self, target: &str, text: &str) {
        self.shared.lock().sim_message(self.id, "PRIVMSG", target, text);
    }

    pub fn notice(&self, target: &str, text: &str) {
        self.shared.lock().sim_message(self.id, "NOTICE", target, text);
    }

    /// A CTCP query: `PRIVMSG <target> :\x01<command>\x01` (`command` may carry arguments,
    /// e.g. `"PING 1234"`).
    pub fn ctcp(&self, target: &str, command: &str) {
        self.privmsg(target, &format!("\x01{command}\x01"));
    }

    /// A CTCP reply: `NOTICE <target> :\x01<command> <args>\x01`.
    pub fn ctcp_reply(&self, target: &str, command: &str, args: &str) {
        self.notice(target, &format!("\x01{command} {args}\x01"));
    }

    /// `/me`: `PRIVMSG <target> :\x01ACTION <text>\x01`.
    pub fn action(&self, target: &str, text: &str) {
        self.ctcp(target, &format!("ACTION {text}"));
    }

    /// Invites `nick` into `chan` (this user must be in it; an operator on +i channels).
    pub fn invite(&self, nick: &str, chan: &str) {
        let mut st = self.shared.lock();
        let me = Who::Sim(self.id);
        let key = fold(chan);
        let status = st.channels.get(&key).and_then(|c| c.members.get(&me).copied());
        let status = status.unwrap_or_else(|| panic!("irc twin: {} is not in {chan}", st.sim(self.id).nick));
        assert!(status.op || !st.channels[&key].modes.contains(&'i'), "irc twin: {chan} is +i and not an operator");
        let target = st.find_nick(nick).unwrap_or_else(|| panic!("irc twin: no such nick {nick}"));
        st.channels.get_mut(&key).expect("channel").invited.insert(target);
        let name = st.channels[&key].name.clone();
        let line = build(&st.mask_of(me), "INVITE", &[&st.nick_of(target), &name]);
        st.deliver(target, line);
    }

    /// Kicks `nick` from `chan` (this user must be an operator there).
    pub fn kick(&self, chan: &str, nick: &str, reason: &str) {
        let mut st = self.shared.lock();
        let me = Who::Sim(self.id);
        let key = fold(chan);
        assert!(
            st.channels.get(&key).and_then(|c| c.members.get(&me)).is_some_and(|s| s.op),
            "irc twin: not an operator in {chan}"
        );
        let target = st
            .find_nick(nick)
            .filter(|w| st.channels[&key].members.contains_key(w))
            .unwrap_or_else(|| panic!("irc twin: {nick} is not in {chan}"));
        st.kick(me, &key, target, reason);
    }

    /// Changes channel modes as an operator, e.g. `"+m"`, `"+v nick"`, `"+b nick!*@*"`.
    pub fn mode(&self, chan: &str, modes: &str) {
        let mut st = self.shared.lock();
        let me = Who::Sim(self.id);
        let key = fold(chan);
        assert!(
            st.channels.get(&key).and_then(|c| c.members.get(&me)).is_some_and(|s| s.op),
            "irc twin: not an operator in {chan}"
        );
        let mut parts = modes.split(' ');
        let modestr = parts.next().unwrap_or("").to_string();
        let args: Vec<String> = parts.map(str::to_string).collect();
        let errors = st.change_modes(me, &key, &modestr, &args);
        assert!(errors.is_empty(), "irc twin: mode {modes} on {chan}: {errors:?}");
    }

    pub fn set_topic(&self, chan: &str, topic: &str) {
        let mut st = self.shared.lock();
        let me = Who::Sim(self.id);
        let key = fold(chan);
        let status = st.channels.get(&key).and_then(|c| c.members.get(&me).copied());
        let status = status.unwrap_or_else(|| panic!("irc twin: not in {chan}"));
        assert!(status.op || !st.channels[&key].modes.contains(&'t'), "irc twin: {chan} is +t and not an operator");
        st.set_topic(me, &key, topic);
    }

    /// Changes nick (panics when the new one is taken or invalid).
    pub fn rename(&self, nick: &str) {
        let mut st = self.shared.lock();
        st.sim(self.id);
        assert!(valid_nick(nick), "irc twin: {nick:?} is not a valid nick");
        if let Some(w) = st.find_nick(nick).filter(|w| *w != Who::Sim(self.id)) {
            panic!("irc twin: nick {nick} is already in use by {w:?}");
        }
        st.rename(Who::Sim(self.id), nick);
    }

    /// Leaves the network; the nick becomes free.
    pub fn quit(&self, reason: &str) {
        let mut st = self.shared.lock();
        st.sim(self.id);
        st.sim_quit(self.id, &format!("Quit: {reason}"));
    }

    /// PRIVMSGs and NOTICEs clients sent to this user (by its current nick).
    pub fn received(&self) -> Vec<Privmsg> {
        let nick = self.nick();
        let st = self.shared.lock();
        st.privmsgs.iter().filter(|m| m.delivered && fold(&m.target) == fold(&nick)).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader};

    const SECS: Duration = Duration::from_secs(5);

    /// A plain TCP IRC client for the tests: lines in, lines out, nothing clever.
    struct Client {
        rd: BufReader<OwnedReadHalf>,
        wr: OwnedWriteHalf,
        seen: Vec<String>,
    }

    impl Client {
        async fn connect(irc: &IrcServer) -> Client {
            let s = TcpStream::connect(irc.addr()).await.expect("connect to the twin");
            let (rd, wr) = s.into_split();
            Client { rd: BufReader::new(rd), wr, seen: Vec::new() }
        }

        /// Connects, registers as `nick` and reads up to the end of the MOTD.
        async fn register(irc: &IrcServer, nick: &str) -> Client {
            let mut c = Client::connect(irc).await;
            c.send(&format!("NICK {nick}")).await;
            c.send(&format!("USER {nick} 0 * :Test {nick}")).await;
            c.expect_code("376").await;
            c
        }

        async fn send(&mut self, line: &str) {
            self.send_raw(format!("{line}\r\n").as_bytes()).await;
        }

        async fn send_raw(&mut self, bytes: &[u8]) {
            self.wr.write_all(bytes).await.expect("write to the twin");
        }

        /// The next line as bytes (with its ending); `None` at EOF. Panics after 5 s.
        async fn raw_line(&mut self) -> Option<Vec<u8>> {
            let mut buf = Vec::new();
            let n = tokio::time::timeout(SECS, self.rd.read_until(b'\n', &mut buf))
                .await
                .unwrap_or_else(|_| panic!("no line within 5 s; seen: {:#?}", self.seen))
                .unwrap_or(0);
            (n > 0).then_some(buf)
        }

        async fn line(&mut self) -> Option<String> {
            let raw = self.raw_line().await?;
            let line = String::from_utf8_lossy(&raw).trim_end_matches(['\r', '\n']).to_string();
            self.seen.push(line.clone());
            Some(line)
        }

        /// Reads until a line satisfies `pred`; panics at EOF or after 5 s.
        async fn expect(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
            loop {
                match self.line().await {
                    Some(l) if pred(&l) => return l,
                    Some(_) => {}
                    None => panic!("EOF while waiting for {what}; seen: {:#?}", self.seen),
                }
            }
        }

        /// Reads until a numeric `code` from the server.
        async fn expect_code(&mut self, code: &str) -> String {
            let needle = format!(":{SERVER_NAME} {code} ");
            self.expect(code, |l| l.starts_with(&needle)).await
        }

        /// Reads everything up to EOF.
        async fn until_eof(&mut self) -> Vec<String> {
            let mut out = Vec::new();
            while let Some(l) = self.line().await {
                out.push(l);
            }
            out
        }

        /// Asserts that nothing arrives within `d`.
        async fn quiet_for(&mut self, d: Duration) {
            let mut buf = Vec::new();
            if let Ok(r) = tokio::time::timeout(d, self.rd.read_until(b'\n', &mut buf)).await {
                panic!("expected silence, got {:?} ({r:?})", String::from_utf8_lossy(&buf));
            }
        }
    }

    fn plain(authzid: &str, authcid: &str, password: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!("{authzid}\0{authcid}\0{password}"))
    }

    #[tokio::test]
    async fn irc_registration_sends_the_welcome_burst() {
        let irc = IrcServer::start().await;
        let mut c = Client::connect(&irc).await;
        c.send("NICK alice").await;
        c.send("USER alice 0 * :Alice Liddell").await;
        let welcome = c.expect_code("001").await;
        assert_eq!(
            welcome,
            format!(":{SERVER_NAME} 001 alice :Welcome to the {NETWORK} IRC Network alice!~alice@127.0.0.1")
        );
        c.expect_code("004").await;
        let isupport = c.expect_code("005").await;
        assert!(isupport.contains(" CASEMAPPING=ascii ") && isupport.contains(" NICKLEN=30 "), "{isupport}");
        assert!(isupport.ends_with(":are supported by this server"), "{isupport}");
        c.expect_code("375").await;
        c.expect_code("376").await;
        let regs = irc.wait_registered(1, SECS).await;
        assert_eq!(regs[0].nick, "alice");
        assert_eq!(regs[0].user, "alice");
        assert_eq!(regs[0].realname, "Alice Liddell");
        assert!(!regs[0].sasl_ok());
        assert!(irc.violations().is_empty(), "{:?}", irc.violations());
    }

    #[tokio::test]
    async fn irc_commands_before_registration_are_451_and_empty_motd_is_422() {
        let irc = IrcServer::start().await;
        irc.set_motd(&[]);
        let mut c = Client::connect(&irc).await;
        c.send("JOIN #early").await;
        assert_eq!(c.expect_code("451").await, format!(":{SERVER_NAME} 451 * :You have not registered"));
        c.send("NICK bob").await;
        c.send("PRIVMSG x :hi").await;
        assert_eq!(c.expect_code("451").await, format!(":{SERVER_NAME} 451 bob :You have not registered"));
        c.send("USER bob 0 * :Bob").await;
        c.expect_code("001").await;
        c.expect_code("422").await;
        let kinds: Vec<_> = irc.violations().iter().map(|v| v.kind).collect();
        assert_eq!(kinds, vec![ViolationKind::NotRegistered, ViolationKind::NotRegistered]);
    }

    #[tokio::test]
    async fn irc_taken_nick_is_433_until_released_then_nick_recovers() {
        let irc = IrcServer::start().await;
        irc.take_nick("clawbot");
        let mut c = Client::connect(&irc).await;
        c.send("NICK clawbot").await;
        c.send("USER clawbot 0 * :Claw").await;
        assert_eq!(c.expect_code("433").await, format!(":{SERVER_NAME} 433 * clawbot :Nickname is already in use"));
        // Nothing is registered until another nick is chosen.
        assert!(irc.registrations().is_empty());
        c.send("NICK clawbot_").await;
        c.expect_code("001").await;
        c.expect_code("376").await;
        // Case-insensitive collision after registration.
        c.send("NICK CLAWBOT").await;
        assert_eq!(
            c.expect_code("433").await,
            format!(":{SERVER_NAME} 433 clawbot_ CLAWBOT :Nickname is already in use")
        );
        irc.release_nick("clawbot");
        c.send("NICK clawbot").await;
        assert_eq!(c.expect("NICK", |l| l.contains(" NICK ")).await, ":clawbot_!~clawbot@127.0.0.1 NICK clawbot");
        irc.wait_nick("clawbot", SECS).await;
        c.send("NICK 9lives").await;
        assert!(c.expect_code("432").await.contains(" 9lives :Erroneous nickname"));
    }

    #[tokio::test]
    async fn irc_sasl_plain_success_logs_in_before_registration() {
        let irc = IrcServer::start().await;
        irc.set_sasl_account("claw", "s3cret");
        let mut c = Client::connect(&irc).await;
        c.send("CAP LS 302").await;
        c.send("NICK claw").await;
        c.send("USER claw 0 * :Claw").await;
        let ls = c.expect("CAP LS", |l| l.contains(" CAP ")).await;
        // CAP LS came before NICK, so the reply is addressed to `*`.
        assert_eq!(ls, format!(":{SERVER_NAME} CAP * LS :message-tags server-time sasl=PLAIN"));
        c.send("CAP REQ :sasl").await;
        assert_eq!(c.expect("ACK", |l| l.contains(" CAP ")).await, format!(":{SERVER_NAME} CAP claw ACK sasl"));
        c.send("AUTHENTICATE PLAIN").await;
        assert_eq!(c.expect("AUTHENTICATE +", |l| l.starts_with("AUTHENTICATE")).await, "AUTHENTICATE +");
        c.send(&format!("AUTHENTICATE {}", plain("", "claw", "s3cret"))).await;
        assert_eq!(
            c.expect_code("900").await,
            format!(":{SERVER_NAME} 900 claw claw!~claw@127.0.0.1 claw :You are now logged in as claw")
        );
        assert_eq!(c.expect_code("903").await, format!(":{SERVER_NAME} 903 claw :SASL authentication successful"));
        // Registration waits for CAP END.
        c.quiet_for(Duration::from_millis(200)).await;
        assert!(irc.registrations().is_empty());
        c.send("CAP END").await;
        c.expect_code("001").await;
        let reg = irc.wait_registered(1, SECS).await.remove(0);
        assert_eq!(reg.account.as_deref(), Some("claw"));
        assert!(reg.sasl_ok());
        assert_eq!(reg.caps, vec!["sasl".to_string()]);
        assert_eq!(irc.sasl_attempts()[0].outcome, SaslOutcome::Success);
        c.send("AUTHENTICATE PLAIN").await;
        c.expect_code("907").await;
    }

    #[tokio::test]
    async fn irc_sasl_failures_have_their_numerics() {
        let irc = IrcServer::start().await;
        irc.set_sasl_account("claw", "s3cret");
        let mut c = Client::connect(&irc).await;
        c.send("CAP REQ :sasl").await;
        c.expect("ACK", |l| l.contains(" CAP * ACK ")).await;
        // Another mechanism: 908 with the list, then 904.
        c.send("AUTHENTICATE SCRAM-SHA-256").await;
        assert_eq!(c.expect_code("908").await, format!(":{SERVER_NAME} 908 * PLAIN :are available SASL mechanisms"));
        c.expect_code("904").await;
        // Wrong password.
        c.send("AUTHENTICATE PLAIN").await;
        c.expect("+", |l| l == "AUTHENTICATE +").await;
        c.send(&format!("AUTHENTICATE {}", plain("claw", "claw", "wrong"))).await;
        assert_eq!(c.expect_code("904").await, format!(":{SERVER_NAME} 904 * :SASL authentication failed"));
        // Not base64.
        c.send("AUTHENTICATE PLAIN").await;
        c.expect("+", |l| l == "AUTHENTICATE +").await;
        c.send("AUTHENTICATE ***notbase64").await;
        c.expect_code("904").await;
        // Aborted.
        c.send("AUTHENTICATE PLAIN").await;
        c.expect("+", |l| l == "AUTHENTICATE +").await;
        c.send("AUTHENTICATE *").await;
        c.expect_code("906").await;
        // A chunk longer than 400 bytes.
        c.send("AUTHENTICATE PLAIN").await;
        c.expect("+", |l| l == "AUTHENTICATE +").await;
        c.send(&format!("AUTHENTICATE {}", "A".repeat(401))).await;
        c.expect_code("905").await;
        // Registration during an exchange aborts it.
        c.send("AUTHENTICATE PLAIN").await;
        c.expect("+", |l| l == "AUTHENTICATE +").await;
        c.send("NICK claw").await;
        c.send("USER claw 0 * :Claw").await;
        c.send("CAP END").await;
        c.expect_code("906").await;
        c.expect_code("001").await;
        let outcomes: Vec<_> = irc.sasl_attempts().iter().map(|a| a.outcome).collect();
        assert_eq!(
            outcomes,
            vec![
                SaslOutcome::UnknownMechanism,
                SaslOutcome::Failed,
                SaslOutcome::Failed,
                SaslOutcome::Aborted,
                SaslOutcome::TooLong,
                SaslOutcome::Aborted
            ]
        );
        assert!(!irc.registrations()[0].sasl_ok());
    }

    #[tokio::test]
    async fn irc_sasl_long_credentials_come_in_400_byte_chunks() {
        let irc = IrcServer::start().await;
        let password = "p".repeat(450);
        irc.set_sasl_account("claw", &password);
        let mut c = Client::connect(&irc).await;
        c.send("CAP REQ sasl").await;
        c.expect("ACK", |l| l.contains(" ACK ")).await;
        c.send("AUTHENTICATE PLAIN").await;
        c.expect("+", |l| l == "AUTHENTICATE +").await;
        let data = plain("", "claw", &password);
        assert!(data.len() > 400);
        let (first, rest) = data.split_at(400);
        c.send(&format!("AUTHENTICATE {first}")).await;
        c.quiet_for(Duration::from_millis(100)).await;
        c.send(&format!("AUTHENTICATE {rest}")).await;
        c.expect_code("903").await;
        // Without the capability AUTHENTICATE is refused.
        let mut d = Client::connect(&irc).await;
        d.send("AUTHENTICATE PLAIN").await;
        d.expect_code("904").await;
        assert!(irc.violations().iter().any(|v| v.kind == ViolationKind::AuthenticateWithoutCap));
    }

    #[tokio::test]
    async fn irc_ping_timeout_closes_a_silent_client() {
        let irc = IrcServer::start().await;
        irc.set_ping_interval(Duration::from_millis(150));
        irc.set_ping_timeout(Duration::from_millis(600));
        // One that answers stays.
        let mut good = Client::register(&irc, "good").await;
        for _ in 0..3 {
            let ping = good.expect("PING", |l| l.starts_with("PING ")).await;
            good.send(&ping.replacen("PING", "PONG", 1)).await;
        }
        assert!(irc.connections()[0].open);
        good.send("QUIT :done").await;
        good.until_eof().await;
        let mut bad = Client::register(&irc, "bad").await;
        bad.expect("PING", |l| l.starts_with("PING ")).await;
        let rest = bad.until_eof().await;
        let error = rest.last().expect("an ERROR before EOF");
        assert!(
            error.starts_with("ERROR :Closing Link: 127.0.0.1 (Ping timeout: ") && error.ends_with(" seconds)"),
            "{rest:?}"
        );
        let conns = irc.connections();
        assert!(conns[1].close_reason.as_deref().unwrap().starts_with("Ping timeout"), "{conns:?}");
        assert_eq!(conns[0].close_reason.as_deref(), Some("Quit: done"), "{conns:?}");
        let pings = irc.pings();
        assert!(pings.iter().any(|p| p.conn == 1 && p.answered), "{pings:?}");
        assert!(pings.iter().all(|p| p.conn != 2 || !p.answered), "{pings:?}");
    }

    #[tokio::test]
    async fn irc_registration_ping_must_be_answered() {
        let irc = IrcServer::start().await;
        irc.set_registration_ping(true);
        let mut c = Client::connect(&irc).await;
        let ping = c.expect("PING", |l| l.starts_with("PING :")).await;
        c.send("NICK early").await;
        c.send("USER early 0 * :Early").await;
        c.quiet_for(Duration::from_millis(200)).await;
        c.send(&ping.replacen("PING", "PONG", 1)).await;
        c.expect_code("001").await;
    }

    #[tokio::test]
    async fn irc_flood_disconnects_with_excess_flood() {
        let irc = IrcServer::start().await;
        irc.set_flood(3, Duration::from_secs(1), true);
        let friend = irc.user("friend");
        let mut c = Client::register(&irc, "flooder").await;
        for i in 0..6 {
            c.send(&format!("PRIVMSG friend :line {i}")).await;
        }
        let rest = c.until_eof().await;
        assert_eq!(rest.last().map(String::as_str), Some("ERROR :Closing Link: 127.0.0.1 (Excess Flood)"), "{rest:?}");
        assert_eq!(friend.received().len(), 3);
        let floods: Vec<_> = irc.violations().into_iter().filter(|v| v.kind == ViolationKind::Flood).collect();
        assert_eq!(floods.len(), 1);
        assert_eq!(floods[0].line, "PRIVMSG friend :line 3");
    }

    #[tokio::test]
    async fn irc_flood_in_delay_mode_paces_lines() {
        let irc = IrcServer::start().await;
        irc.set_flood(2, Duration::from_millis(200), false);
        irc.user("friend");
        let mut c = Client::register(&irc, "chatty").await;
        let start = Instant::now();
        for i in 0..5 {
            c.send(&format!("PRIVMSG friend :line {i}")).await;
        }
        irc.wait_received("friend", 5, SECS).await;
        assert!(start.elapsed() >= Duration::from_millis(550), "{:?}", start.elapsed());
        assert!((1..=3).contains(&irc.throttled_lines()), "{}", irc.throttled_lines());
        assert!(irc.violations().is_empty());
    }

    #[tokio::test]
    async fn irc_privmsg_to_a_channel_not_joined_is_404() {
        let irc = IrcServer::start().await;
        let carol = irc.user("carol");
        carol.join("#room");
        let mut c = Client::register(&irc, "bot").await;
        c.send("PRIVMSG #room :hello?").await;
        assert_eq!(c.expect_code("404").await, format!(":{SERVER_NAME} 404 bot #room :Cannot send to channel"));
        // A NOTICE is dropped without an answer.
        c.send("NOTICE #room :psst").await;
        c.send("PRIVMSG #nowhere :hello?").await;
        assert_eq!(c.expect_code("401").await, format!(":{SERVER_NAME} 401 bot #nowhere :No such nick/channel"));
        c.send("JOIN #room").await;
        assert_eq!(c.expect("JOIN", |l| l.contains(" JOIN ")).await, ":bot!~bot@127.0.0.1 JOIN #room");
        assert_eq!(c.expect_code("353").await, format!(":{SERVER_NAME} 353 bot = #room :bot @carol"));
        c.expect_code("366").await;
        c.send("PRIVMSG #room :hello!").await;
        let got = irc.wait_received("#room", 1, SECS).await;
        assert_eq!(got[0].text, "hello!");
        assert_eq!(got[0].from, "bot");
        let all = irc.privmsgs();
        assert_eq!(all.len(), 4);
        assert!(!all[0].delivered && !all[1].delivered && all[1].notice && !all[2].delivered);
        assert_eq!(irc.joins()[0].channel, "#room");
        carol.privmsg("#room", "welcome");
        assert_eq!(
            c.expect("PRIVMSG", |l| l.contains(" PRIVMSG ")).await,
            ":carol!~carol@users.clawline.test PRIVMSG #room :welcome"
        );
        assert_eq!(irc.members("#room"), vec!["bot".to_string(), "@carol".to_string()]);
    }

    #[tokio::test]
    async fn irc_ctcp_is_relayed_as_is_both_ways() {
        let irc = IrcServer::start().await;
        let dave = irc.user("dave");
        let mut c = Client::register(&irc, "bot").await;
        dave.ctcp("bot", "VERSION");
        assert_eq!(
            c.expect("CTCP", |l| l.contains("PRIVMSG")).await,
            ":dave!~dave@users.clawline.test PRIVMSG bot :\x01VERSION\x01"
        );
        c.send("NOTICE dave :\x01VERSION clawline 0.1\x01").await;
        dave.action("bot", "waves");
        assert_eq!(
            c.expect("ACTION", |l| l.contains("PRIVMSG")).await,
            ":dave!~dave@users.clawline.test PRIVMSG bot :\x01ACTION waves\x01"
        );
        c.send("PRIVMSG dave :\x01ACTION waves back\x01").await;
        let got = irc.wait_received("dave", 2, SECS).await;
        assert!(got[0].notice);
        assert_eq!(got[0].ctcp(), Some(("VERSION".to_string(), "clawline 0.1".to_string())));
        assert_eq!(got[1].text, "\x01ACTION waves back\x01");
        assert_eq!(got[1].ctcp(), Some(("ACTION".to_string(), "waves back".to_string())));
        assert_eq!(dave.received().len(), 2);
    }

    #[tokio::test]
    async fn irc_overlong_lines_are_417_or_a_disconnect() {
        let irc = IrcServer::start().await;
        irc.user("eve");
        let mut c = Client::register(&irc, "bot").await;
        // 510 bytes of message plus CR LF is the limit.
        let fits = format!("PRIVMSG eve :{}", "a".repeat(510 - "PRIVMSG eve :".len()));
        assert_eq!(fits.len(), 510);
        c.send(&fits).await;
        irc.wait_received("eve", 1, SECS).await;
        c.send(&format!("{fits}b")).await;
        assert_eq!(c.expect_code("417").await, format!(":{SERVER_NAME} 417 bot :Input line was too long"));
        assert_eq!(irc.violations()[0].kind, ViolationKind::LineTooLong { bytes: 513 });
        assert_eq!(irc.received_by("eve").len(), 1);
        // A line that never ends is cut off too.
        c.send_raw(&vec![b'x'; MAX_BUFFER + 10]).await;
        c.expect_code("417").await;
        c.send("\r\nPING :still-here").await;
        c.expect("PONG", |l| l.ends_with(" PONG irc.clawline.test still-here")).await;
        irc.set_overlong_disconnect(true);
        c.send(&format!("{fits}b")).await;
        let rest = c.until_eof().await;
        assert_eq!(rest.last().map(String::as_str), Some("ERROR :Closing Link: 127.0.0.1 (Request too long)"));
    }

    #[tokio::test]
    async fn irc_line_hygiene_is_recorded() {
        let irc = IrcServer::start().await;
        irc.set_flood(0, Duration::ZERO, false);
        irc.user("eve");
        let mut c = Client::register(&irc, "bot").await;
        c.send_raw(b"PRIVMSG eve :bare lf\n").await;
        c.send_raw(b"PRIVMSG eve :nul\0byte\r\n").await;
        c.send_raw(b"PRIVMSG eve :caf\xe9\r\n").await;
        c.send(":bot PRIVMSG eve :with source").await;
        c.send("@+typing=active PRIVMSG eve :tagged").await;
        assert!(c.expect_code("421").await.contains(" @+typing=active :Unknown command"));
        irc.wait_received("eve", 3, SECS).await;
        let kinds: Vec<_> = irc.violations().iter().map(|v| v.kind).collect();
        assert_eq!(
            kinds,
            vec![
                ViolationKind::BareLineFeed,
                ViolationKind::ForbiddenByte,
                ViolationKind::InvalidUtf8,
                ViolationKind::SourceFromClient,
                ViolationKind::TagsWithoutCap
            ]
        );
        assert_eq!(irc.received_by("eve")[1].text, "caf\u{fffd}");
        let raw = irc.lines_from_client();
        assert!(raw.iter().any(|l| l.raw == b"PRIVMSG eve :caf\xe9\r\n"));
    }

    #[tokio::test]
    async fn irc_server_time_and_message_tags() {
        let irc = IrcServer::start().await;
        let eve = irc.user("eve");
        let mut c = Client::connect(&irc).await;
        c.send("CAP LS").await;
        c.send("CAP REQ :server-time message-tags").await;
        c.send("NICK bot").await;
        c.send("USER bot 0 * :Bot").await;
        c.expect("ACK", |l| l.contains(" ACK ")).await;
        c.send("CAP REQ :server-time unknown-cap").await;
        assert!(c.expect("NAK", |l| l.contains(" NAK ")).await.ends_with("CAP bot NAK :server-time unknown-cap"));
        c.send("CAP END").await;
        let welcome = c.expect("001", |l| l.contains(" 001 ")).await;
        let (tags, rest) = welcome.split_once(' ').unwrap();
        assert!(
            tags.starts_with("@time=") && tags.ends_with('Z') && tags.len() == "@time=2024-01-01T00:00:00.000Z".len(),
            "{welcome}"
        );
        assert!(rest.starts_with(&format!(":{SERVER_NAME} 001 bot ")));
        c.send("@+draft/reply=1 PRIVMSG eve :tagged").await;
        irc.wait_received("eve", 1, SECS).await;
        eve.privmsg("bot", "hi");
        let l = c.expect("PRIVMSG", |l| l.contains(" PRIVMSG bot ")).await;
        assert!(l.starts_with("@time=") && l.ends_with(" :eve!~eve@users.clawline.test PRIVMSG bot :hi"), "{l}");
        assert!(irc.violations().is_empty(), "{:?}", irc.violations());
    }

    #[tokio::test]
    async fn irc_stall_holds_answers_until_released() {
        let irc = IrcServer::start().await;
        let friend = irc.user("friend");
        let mut c = Client::register(&irc, "bot").await;
        irc.stall(true);
        c.send("PING :one").await;
        friend.privmsg("bot", "held");
        c.quiet_for(Duration::from_millis(300)).await;
        assert!(irc.lines_from_client().iter().all(|l| !l.text.contains("one")));
        irc.stall(false);
        c.expect("held message", |l| l.ends_with("PRIVMSG bot :held")).await;
        c.expect("PONG", |l| l.ends_with("PONG irc.clawline.test one")).await;
    }

    #[tokio::test]
    async fn irc_drop_clients_closes_without_error_and_close_clients_with_one() {
        let irc = IrcServer::start().await;
        let mut a = Client::register(&irc, "alpha").await;
        irc.drop_clients();
        assert!(a.until_eof().await.is_empty());
        assert_eq!(irc.connections()[0].close_reason.as_deref(), Some("Dropped"));
        let mut b = Client::register(&irc, "alpha").await;
        irc.close_clients("Server shutting down");
        assert_eq!(b.until_eof().await, vec!["ERROR :Closing Link: 127.0.0.1 (Server shutting down)".to_string()]);
    }

    #[tokio::test]
    async fn irc_kick_invite_only_and_bans() {
        let irc = IrcServer::start().await;
        let op = irc.user("op");
        op.join("#ops");
        let mut c = Client::register(&irc, "bot").await;
        c.send("JOIN #ops").await;
        c.expect_code("366").await;
        irc.kick("#ops", "bot", "behave");
        assert_eq!(
            c.expect("KICK", |l| l.contains(" KICK ")).await,
            format!(":ChanServ!ChanServ@{SERVICES_HOST} KICK #ops bot :behave")
        );
        assert_eq!(irc.members("#ops"), vec!["@op".to_string()]);
        op.mode("#ops", "+i");
        c.send("JOIN #ops").await;
        assert_eq!(c.expect_code("473").await, format!(":{SERVER_NAME} 473 bot #ops :Cannot join channel (+i)"));
        op.invite("bot", "#ops");
        assert_eq!(c.expect("INVITE", |l| l.contains(" INVITE ")).await, ":op!~op@users.clawline.test INVITE bot #ops");
        c.send("JOIN #ops").await;
        c.expect_code("366").await;
        op.kick("#ops", "bot", "again");
        c.expect("KICK", |l| l.contains(" KICK #ops bot :again")).await;
        op.mode("#ops", "-i+b bot!*@*");
        c.send("JOIN #ops").await;
        assert_eq!(c.expect_code("474").await, format!(":{SERVER_NAME} 474 bot #ops :Cannot join channel (+b)"));
        // A channel the client creates makes it operator; kicking needs that status.
        c.send("JOIN #mine").await;
        assert!(c.expect_code("353").await.ends_with(":@bot"));
        op.join("#mine");
        c.send("KICK #mine op :out").await;
        c.expect("KICK", |l| l == ":bot!~bot@127.0.0.1 KICK #mine op :out").await;
        c.send("KICK #nothere op").await;
        c.expect_code("403").await;
    }

    #[tokio::test]
    async fn irc_duplicate_next_privmsg_and_raw_lines() {
        let irc = IrcServer::start().await;
        let friend = irc.user("friend");
        let mut c = Client::register(&irc, "bot").await;
        irc.duplicate_next_privmsg();
        friend.privmsg("bot", "once");
        friend.privmsg("bot", "twice?");
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(c.expect("PRIVMSG", |l| l.contains("PRIVMSG")).await);
        }
        assert!(got[0].ends_with(":once") && got[1].ends_with(":once") && got[2].ends_with(":twice?"), "{got:?}");
        irc.send_raw_to_client(b":friend!x@y PRIVMSG bot :\xff\xfe not utf-8\r\n");
        assert_eq!(c.raw_line().await.unwrap(), b":friend!x@y PRIVMSG bot :\xff\xfe not utf-8\r\n".to_vec());
    }

    #[tokio::test]
    async fn irc_nickserv_identify_and_regain() {
        let irc = IrcServer::start().await;
        irc.set_nickserv("clawbot", "hunter2");
        irc.take_nick("clawbot");
        let mut c = Client::connect(&irc).await;
        c.send("NICK clawbot").await;
        c.send("USER clawbot 0 * :Claw").await;
        c.expect_code("433").await;
        c.send("NICK clawbot_").await;
        c.expect_code("376").await;
        c.send("PRIVMSG NickServ :REGAIN clawbot wrong").await;
        assert!(c.expect("NOTICE", |l| l.contains("NOTICE")).await.ends_with(":Invalid password for clawbot."));
        c.send("PRIVMSG NickServ :REGAIN clawbot hunter2").await;
        c.expect("NICK", |l| l == ":clawbot_!~clawbot@127.0.0.1 NICK clawbot").await;
        c.expect("NOTICE", |l| l.ends_with(":You have regained the nickname clawbot.")).await;
        c.send("PRIVMSG NickServ :IDENTIFY hunter2").await;
        assert_eq!(
            c.expect("NOTICE", |l| l.contains("NOTICE")).await,
            format!(":NickServ!NickServ@{SERVICES_HOST} NOTICE clawbot :You are now identified for clawbot.")
        );
        c.expect_code("900").await;
        assert_eq!(irc.account(1).as_deref(), Some("clawbot"));
        assert_eq!(irc.received_by("NickServ").len(), 3);
    }

    #[tokio::test]
    async fn irc_server_password_is_required_when_set() {
        let irc = IrcServer::start().await;
        irc.set_password(Some("letmein"));
        let mut bad = Client::connect(&irc).await;
        bad.send("NICK bad").await;
        bad.send("USER bad 0 * :Bad").await;
        let rest = bad.until_eof().await;
        assert_eq!(
            rest,
            vec![
                format!(":{SERVER_NAME} 464 bad :Password incorrect"),
                "ERROR :Closing Link: 127.0.0.1 (Bad Password)".to_string()
            ]
        );
        let mut good = Client::connect(&irc).await;
        good.send("PASS letmein").await;
        good.send("NICK good").await;
        good.send("USER good 0 * :Good").await;
        good.expect_code("001").await;
        assert_eq!(irc.registrations()[0].password.as_deref(), Some("letmein"));
    }

    #[tokio::test]
    async fn irc_quit_and_topic() {
        let irc = IrcServer::start().await;
        irc.add_channel("#test", Some("the topic"));
        let mut c = Client::register(&irc, "bot").await;
        c.send("JOIN #test").await;
        assert_eq!(c.expect_code("332").await, format!(":{SERVER_NAME} 332 bot #test :the topic"));
        assert!(c.expect_code("333").await.starts_with(&format!(":{SERVER_NAME} 333 bot #test ChanServ ")));
        assert!(c.expect_code("353").await.ends_with(":bot"), "persistent channels give no operator status");
        c.send("TOPIC #test :new").await;
        c.expect_code("482").await;
        c.send("QUIT :bye now").await;
        assert_eq!(
            c.until_eof().await.last().map(String::as_str),
            Some("ERROR :Closing Link: 127.0.0.1 (Quit: bye now)")
        );
        let conn = irc.wait_closed(1, SECS).await;
        assert_eq!(conn.close_reason.as_deref(), Some("Quit: bye now"));
        assert!(irc.members("#test").is_empty());
    }

    #[tokio::test]
    async fn irc_channel_life_is_seen_by_members() {
        let irc = IrcServer::start().await;
        let frank = irc.user("frank");
        frank.join("#life");
        let mut c = Client::register(&irc, "bot").await;
        c.send("JOIN #life").await;
        c.expect_code("366").await;
        let grace = irc.user("grace");
        grace.join("#life");
        c.expect("JOIN", |l| l == ":grace!~grace@users.clawline.test JOIN #life").await;
        grace.rename("gracie");
        c.expect("NICK", |l| l == ":grace!~grace@users.clawline.test NICK gracie").await;
        grace.part("#life", "later");
        c.expect("PART", |l| l == ":gracie!~grace@users.clawline.test PART #life :later").await;
        frank.set_topic("#life", "news");
        c.expect("TOPIC", |l| l == ":frank!~frank@users.clawline.test TOPIC #life :news").await;
        frank.mode("#life", "+v bot");
        c.expect("MODE", |l| l == ":frank!~frank@users.clawline.test MODE #life +v bot").await;
        c.send("NICK botty").await;
        c.expect("NICK", |l| l == ":bot!~bot@127.0.0.1 NICK botty").await;
        c.send("WHO #life").await;
        let who = c.expect_code("352").await;
        assert_eq!(who, format!(":{SERVER_NAME} 352 botty #life ~bot 127.0.0.1 {SERVER_NAME} botty H+ :0 Test bot"));
        c.expect_code("315").await;
        c.send("WHOIS frank").await;
        assert!(c.expect_code("311").await.ends_with(" frank ~frank users.clawline.test * :frank"));
        assert!(c.expect_code("319").await.ends_with(":@#life"));
        c.expect_code("318").await;
        frank.quit("bye");
        c.expect("QUIT", |l| l == ":frank!~frank@users.clawline.test QUIT :Quit: bye").await;
        c.send("JOIN 0").await;
        c.expect("PART", |l| l == ":botty!~bot@127.0.0.1 PART #life").await;
        assert!(irc.members("#life").is_empty());
    }

    #[tokio::test]
    async fn irc_two_clients_talk_and_ghost() {
        let irc = IrcServer::start().await;
        irc.set_nickserv("owner", "pw");
        let mut a = Client::register(&irc, "owner").await;
        let mut b = Client::register(&irc, "other").await;
        b.send("PRIVMSG owner :hi there").await;
        a.expect("PRIVMSG", |l| l == ":other!~other@127.0.0.1 PRIVMSG owner :hi there").await;
        b.send("PRIVMSG NickServ :GHOST owner pw").await;
        let rest = a.until_eof().await;
        assert_eq!(
            rest.last().map(String::as_str),
            Some("ERROR :Closing Link: 127.0.0.1 (Killed (NickServ (GHOST command used by other)))")
        );
        b.expect("NOTICE", |l| l.ends_with(":owner has been ghosted.")).await;
        b.send("NICK owner").await;
        b.expect("NICK", |l| l == ":other!~other@127.0.0.1 NICK owner").await;
        assert_eq!(irc.received_by("owner").len(), 1);
    }

    #[test]
    fn irc_helpers() {
        assert_eq!(iso_time(UNIX_EPOCH + Duration::from_millis(1_709_251_199_123)), "2024-02-29T23:59:59.123Z");
        assert_eq!(iso_time(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert!(glob("bad!*@*", "BAD!~bad@127.0.0.1"));
        assert!(!glob("bad!*@*", "badder!~b@h"));
        assert!(glob("*!*@127.0.0.?", "x!y@127.0.0.1"));
        let m = parse_message("@a=b :src PRIVMSG #c  ::-) ok").unwrap();
        assert_eq!((m.tags.as_deref(), m.source.as_deref(), m.command.as_str()), (Some("a=b"), Some("src"), "PRIVMSG"));
        assert_eq!(m.params, vec!["#c".to_string(), ":-) ok".to_string()]);
        assert!(valid_nick("[claw]_bot-1") && !valid_nick("-x") && !valid_nick("1x") && !valid_nick(&"a".repeat(31)));
        assert_eq!(parse_ctcp("\x01PING 123"), Some(("PING".into(), "123".into())));
        assert_eq!(parse_ctcp("plain"), None);
    }
}
