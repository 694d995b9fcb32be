//! A twin of MiniMax's sign-in portal: the user-code grant with PKCE that MiniMax's coding plan
//! uses instead of RFC 8628, and its refresh.
//!
//! Start one with [`MiniMaxPortal::start`], point clawline's `models.providers.minimax.oauth`
//! `deviceUrl` at [`MiniMaxPortal::code_url`] and `tokenUrl` at [`MiniMaxPortal::token_url`],
//! let the "user" approve with [`MiniMaxPortal::approve`], then inspect
//! [`MiniMaxPortal::requests`].
//!
//! What it enforces (bodies must be `application/x-www-form-urlencoded`; a parameter may not
//! repeat; refusals are `{"status": "error", "base_resp": {"status_code", "status_msg"}}`,
//! HTTP 400 for a malformed request and 200 for a refused grant, as MiniMax answers):
//!
//! - `POST /oauth/code`: `response_type=code`, the configured `client_id`, a `scope` holding
//!   `group_id profile model.completion`, a `code_challenge` of 43–128 unreserved characters with
//!   `code_challenge_method=S256`, and a `state`. Answers `user_code`, `verification_uri`,
//!   `expired_in` (a deadline in epoch **milliseconds**), `interval` (**milliseconds**) and the
//!   `state` it was sent (or another one with [`MiniMaxPortal::forge_state`]).
//! - `POST /oauth/token` with `grant_type=urn:ietf:params:oauth:grant-type:user_code`: the client,
//!   a known `user_code`, and a `code_verifier` whose S256 is the challenge. `{"status":
//!   "pending"}` until approved, then `{"status": "success", "access_token", "refresh_token",
//!   "expired_in", "token_type", "resource_url"}` once; `error` after a denial, past the
//!   deadline, or when redeemed again. Polls sooner than `interval` after the previous one are
//!   counted ([`MiniMaxPortal::early_polls`]).
//! - `POST /oauth/token` with `grant_type=refresh_token`: an active refresh token of the client;
//!   each refresh rotates it. A revoked ([`MiniMaxPortal::revoke_refresh_tokens`]) or rotated-out
//!   one is `error`.
//!
//! `expired_in` of tokens is seconds from now by default; [`MiniMaxPortal::expiry_in_epoch_ms`]
//! switches to an epoch-milliseconds deadline, both of which MiniMax has been seen to send.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};

use crate::oauth_server::{Params, Recorded, content_type, header_list, missing_scopes, parse_form, pkce_shaped, s256};

/// The grant type of MiniMax's polls.
pub const USER_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:user_code";

/// The scopes MiniMax's coding-plan sign-in asks for.
pub const SCOPES: [&str; 3] = ["group_id", "profile", "model.completion"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Pending,
    Approved,
    Denied,
    Redeemed,
}

struct Code {
    client_id: String,
    challenge: String,
    deadline: Instant,
    last_poll: Option<Instant>,
    status: Status,
}

struct Inner {
    client_id: String,
    interval: Duration,
    code_ttl: Duration,
    token_expires_in: u64,
    epoch_ms_expiry: bool,
    forge_state: bool,
    requests: Vec<Recorded>,
    /// Keyed by user code.
    codes: HashMap<String, Code>,
    access: HashMap<String, Instant>,
    /// Refresh token → still usable.
    refresh: HashMap<String, bool>,
    early_polls: usize,
    counter: u64,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running portal twin. Dropping it stops the server.
pub struct MiniMaxPortal {
    addr: SocketAddr,
    inner: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MiniMaxPortal {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MiniMaxPortal {
    /// Starts a portal on 127.0.0.1 for `client_id`, asking clients to poll every `interval`.
    pub async fn start(client_id: &str, interval: Duration) -> MiniMaxPortal {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind minimax portal");
        let addr = listener.local_addr().expect("local addr");
        let inner = Arc::new(Mutex::new(Inner {
            client_id: client_id.into(),
            interval,
            code_ttl: Duration::from_secs(600),
            token_expires_in: 3600,
            epoch_ms_expiry: false,
            forge_state: false,
            requests: Vec::new(),
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            early_polls: 0,
            counter: 0,
        }));
        let app =
            Router::new().route("/oauth/code", post(code)).route("/oauth/token", post(token)).with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MiniMaxPortal { addr, inner, task }
    }

    pub fn code_url(&self) -> String {
        format!("http://{}/oauth/code", self.addr)
    }

    pub fn token_url(&self) -> String {
        format!("http://{}/oauth/token", self.addr)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Every request so far, refused ones included.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// The user approves the sign-in showing `user_code`. False when there is none pending.
    pub fn approve(&self, user_code: &str) -> bool {
        self.set(user_code, Status::Approved)
    }

    /// The user refuses it. False when there is none pending.
    pub fn deny(&self, user_code: &str) -> bool {
        self.set(user_code, Status::Denied)
    }

    fn set(&self, user_code: &str, status: Status) -> bool {
        match self.lock().codes.get_mut(user_code) {
            Some(c) if c.status == Status::Pending => {
                c.status = status;
                true
            }
            _ => false,
        }
    }

    /// The user code of the latest code request.
    pub fn last_user_code(&self) -> Option<String> {
        let g = self.lock();
        let mut codes: Vec<&String> = g.codes.keys().collect();
        codes.sort_by_key(|c| c.trim_start_matches("MM-").parse::<u64>().unwrap_or(0));
        codes.last().map(|c| c.to_string())
    }

    /// How many polls came sooner than the interval after the previous one.
    pub fn early_polls(&self) -> usize {
        self.lock().early_polls
    }

    /// Answer code requests with a `state` other than the one sent.
    pub fn forge_state(&self, on: bool) {
        self.lock().forge_state = on;
    }

    /// Code requests from now on expire after `ttl`.
    pub fn code_ttl(&self, ttl: Duration) {
        self.lock().code_ttl = ttl;
    }

    /// Tokens from now on carry `expired_in` as an epoch-milliseconds deadline.
    pub fn expiry_in_epoch_ms(&self, on: bool) {
        self.lock().epoch_ms_expiry = on;
    }

    /// Every refresh token issued so far stops working.
    pub fn revoke_refresh_tokens(&self) {
        for usable in self.lock().refresh.values_mut() {
            *usable = false;
        }
    }

    /// Whether `token` is an unexpired access token of this portal.
    pub fn is_valid_access_token(&self, token: &str) -> bool {
        self.lock().access.get(token).is_some_and(|t| Instant::now() < *t)
    }
}

impl Inner {
    fn token(&mut self, prefix: &str) -> String {
        self.counter += 1;
        let mut bytes = [0u8; 18];
        let _ = aws_lc_rs::rand::fill(&mut bytes);
        let tail: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("{prefix}{}-{tail}", self.counter)
    }

    /// A success body with fresh tokens.
    fn issue(&mut self) -> Value {
        let access = self.token("mm-at-");
        let refresh = self.token("mm-rt-");
        let ttl = self.token_expires_in;
        self.access.insert(access.clone(), Instant::now() + Duration::from_secs(ttl));
        self.refresh.insert(refresh.clone(), true);
        let expired_in = if self.epoch_ms_expiry { epoch_ms() + ttl as i64 * 1000 } else { ttl as i64 };
        json!({
            "status": "success",
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "Bearer",
            "expired_in": expired_in,
            "resource_url": "https://api.minimax.io/anthropic",
        })
    }
}

fn epoch_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn json_response(status: u16, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

/// MiniMax's refusal: `2013` is its "invalid parameters" code, `1004` "authentication failed".
fn refusal(http: u16, code: u32, message: &str) -> Response {
    json_response(http, &json!({"status": "error", "base_resp": {"status_code": code, "status_msg": message}}))
}

/// Records the request and parses its form body; the error is the refusal's message.
fn params(inner: &mut Inner, path: &str, headers: &HeaderMap, body: &Bytes) -> Result<Params, String> {
    let ct = content_type(headers);
    let form = ct.as_deref().unwrap_or_default().starts_with("application/x-www-form-urlencoded");
    let raw = std::str::from_utf8(body).map_err(|e| e.to_string()).and_then(parse_form);
    inner.requests.push(Recorded {
        method: "POST".into(),
        path: path.into(),
        content_type: ct.clone(),
        params: raw.clone().unwrap_or_default(),
        headers: header_list(headers),
    });
    if !form {
        return Err("send application/x-www-form-urlencoded".into());
    }
    raw.and_then(|r| Params::new(&r))
}

async fn code(State(inner): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut g = lock(&inner);
    let p = match params(&mut g, "/oauth/code", &headers, &body) {
        Ok(p) => p,
        Err(e) => return refusal(400, 2013, &e),
    };
    if p.get("response_type") != Some("code") {
        return refusal(400, 2013, "response_type must be code");
    }
    if p.get("client_id") != Some(g.client_id.as_str()) {
        return refusal(400, 1004, "unknown client_id");
    }
    let required: Vec<String> = SCOPES.iter().map(|s| s.to_string()).collect();
    let missing = missing_scopes(&required, p.get("scope").unwrap_or_default());
    if !missing.is_empty() {
        return refusal(400, 2013, &format!("scope must include {}", missing.join(" ")));
    }
    let Some(challenge) = p.get("code_challenge").filter(|c| pkce_shaped(c)) else {
        return refusal(400, 2013, "code_challenge must be 43-128 unreserved characters");
    };
    if p.get("code_challenge_method") != Some("S256") {
        return refusal(400, 2013, "code_challenge_method must be S256");
    }
    let Some(state) = p.get("state") else {
        return refusal(400, 2013, "missing state");
    };
    g.counter += 1;
    let user_code = format!("MM-{}", g.counter);
    let (ttl, interval, client_id) = (g.code_ttl, g.interval, g.client_id.clone());
    g.codes.insert(
        user_code.clone(),
        Code {
            client_id,
            challenge: challenge.to_string(),
            deadline: Instant::now() + ttl,
            last_poll: None,
            status: Status::Pending,
        },
    );
    let state = if g.forge_state { format!("{state}-forged") } else { state.to_string() };
    json_response(
        200,
        &json!({
            "user_code": user_code,
            "verification_uri": format!("https://platform.minimax.io/oauth-authorize?user_code={user_code}"),
            "expired_in": epoch_ms() + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
            "interval": i64::try_from(interval.as_millis()).unwrap_or(i64::MAX),
            "state": state,
        }),
    )
}

async fn token(State(inner): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut g = lock(&inner);
    let p = match params(&mut g, "/oauth/token", &headers, &body) {
        Ok(p) => p,
        Err(e) => return refusal(400, 2013, &e),
    };
    if p.get("client_id") != Some(g.client_id.as_str()) {
        return refusal(400, 1004, "unknown client_id");
    }
    match p.get("grant_type") {
        Some(USER_CODE_GRANT) => poll(&mut g, &p),
        Some("refresh_token") => {
            let Some(rt) = p.get("refresh_token") else {
                return refusal(400, 2013, "missing refresh_token");
            };
            match g.refresh.get_mut(rt) {
                Some(usable) if *usable => {
                    *usable = false;
                    json_response(200, &g.issue())
                }
                _ => refusal(200, 1004, "refresh token is invalid or revoked"),
            }
        }
        _ => refusal(400, 2013, "unsupported grant_type"),
    }
}

fn poll(g: &mut Inner, p: &Params) -> Response {
    let (Some(user_code), Some(verifier)) = (p.get("user_code"), p.get("code_verifier")) else {
        return refusal(400, 2013, "user_code and code_verifier are required");
    };
    let interval = g.interval;
    let Some(code) = g.codes.get_mut(user_code) else {
        return refusal(200, 2013, "unknown user_code");
    };
    let now = Instant::now();
    let early = code.last_poll.is_some_and(|last| now.duration_since(last) < interval);
    code.last_poll = Some(now);
    if code.client_id != p.get("client_id").unwrap_or_default() || s256(verifier) != code.challenge {
        return refusal(200, 1004, "code_verifier does not match the challenge");
    }
    let status = code.status;
    if now >= code.deadline {
        return refusal(200, 2013, "the user code expired");
    }
    if early {
        g.early_polls += 1;
    }
    match status {
        Status::Pending => json_response(200, &json!({"status": "pending"})),
        Status::Denied => refusal(200, 1004, "the user denied the authorization"),
        Status::Redeemed => refusal(200, 2013, "the user code was already redeemed"),
        Status::Approved => {
            if let Some(c) = g.codes.get_mut(user_code) {
                c.status = Status::Redeemed;
            }
            json_response(200, &g.issue())
        }
    }
}
