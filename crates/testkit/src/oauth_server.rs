//! A twin of an OAuth 2.0 authorization server: authorization code with PKCE, refresh tokens
//! and the device authorization grant.
//!
//! Start one per test with [`OAuthServer::start`] and an [`OAuthConfig`], point clawline's
//! OAuth settings at [`OAuthServer::authorize_url`], [`OAuthServer::token_url`] and
//! [`OAuthServer::device_authorization_url`], then inspect [`OAuthServer::requests`]. A test
//! "browser" fetches the authorization URL with redirects disabled and follows the `Location`
//! itself.
//!
//! What it enforces, with the error bodies of RFC 6749 §5.2 (`{"error", "error_description"}`):
//!
//! - `GET /authorize` (RFC 6749 §4.1.1, RFC 7636 §4.3): `client_id` must be the configured one
//!   and `redirect_uri` an `http://` loopback URI (`127.0.0.1`, `localhost`, `[::1]`, no
//!   fragment), exactly the registered one when one is configured; a failure there is answered
//!   with a 400 body, since the server must not redirect to an unverified URI (§4.1.2.1). The
//!   other checks redirect back with `?error=…&error_description=…&state=…`:
//!   `response_type=code` (else `unsupported_response_type`), a `state`, a `code_challenge` of
//!   43–128 unreserved characters with `code_challenge_method=S256` (`plain` or none is
//!   `invalid_request`), and a `scope` holding every required scope (else `invalid_scope`).
//!   Success is `302 Found` to `<redirect_uri>?code=…&state=…`; with
//!   [`OAuthConfig::deny_authorization`] it is `?error=access_denied&state=…` instead.
//! - `POST /token` takes `application/json` and `application/x-www-form-urlencoded` bodies
//!   (or only one of them, see [`BodyFormat`]); parameters must not repeat, empty ones count as
//!   absent, unknown ones (such as `state`) are ignored. A wrong `client_id` is
//!   `401 invalid_client`; an unknown `grant_type` is `unsupported_grant_type`.
//!   - `authorization_code`: the code is single use (a second use is `invalid_grant` and revokes
//!     the tokens issued from it, §4.1.2), expires after [`OAuthConfig::code_ttl`], and must be
//!     redeemed by the client and with the `redirect_uri` it was issued for;
//!     `BASE64URL(SHA256(code_verifier))` must equal the challenge (RFC 7636 §4.6).
//!   - `refresh_token`: an unknown, revoked ([`OAuthServer::revoke_refresh_tokens`]) or rotated
//!     out refresh token is `invalid_grant`. With rotation on, each refresh returns a new refresh
//!     token and invalidates the old one; presenting a rotated-out token again also revokes its
//!     successors (reuse detection, RFC 9700 §4.14.2) unless
//!     [`OAuthConfig::revoke_family_on_reuse`] is off. With rotation off the response carries no
//!     `refresh_token` and the old one stays valid. A `scope` wider than the grant is
//!     `invalid_scope`.
//!   - `urn:ietf:params:oauth:grant-type:device_code` (RFC 8628 §3.4–3.5):
//!     `authorization_pending` until [`OAuthServer::approve_device`], `access_denied` after
//!     [`OAuthServer::deny_device`], `slow_down` when polled sooner than the interval after the
//!     previous poll (the interval then grows by [`OAuthConfig::slow_down_step`] seconds, as the
//!     client must), `expired_token` after `expires_in`, `invalid_grant` once redeemed.
//! - `POST /device/code` (RFC 8628 §3.1–3.2): same body rules and client/scope checks as
//!   `/token`; answers `device_code`, `user_code` (`XXXX-XXXX`, matched case-insensitively and
//!   ignoring `-`), `verification_uri`, `verification_uri_complete`, `expires_in`, `interval`.
//! - `GET /userinfo` (RFC 6750): `Authorization: Bearer <access token>`; a missing, unknown,
//!   revoked or expired token is `401` with `WWW-Authenticate: Bearer` and `invalid_token`.
//!
//! Token responses carry `Cache-Control: no-store` (RFC 6749 §5.1). Other twins can check
//! tokens with [`OAuthServer::is_valid_access_token`] or a cloned [`AccessTokenValidator`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// The RFC 8628 grant type.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Which request bodies `POST /token` and `POST /device/code` accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyFormat {
    /// JSON and form bodies.
    #[default]
    Any,
    /// Only `application/json` (as Anthropic's server wants); forms are `invalid_request`.
    Json,
    /// Only `application/x-www-form-urlencoded` (as RFC 6749 defines); JSON is `invalid_request`.
    Form,
}

/// How the twin behaves. Build with [`OAuthConfig::new`] and the chained setters.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// The one client the server knows.
    pub client_id: String,
    /// Scopes every authorization / device request must ask for.
    pub required_scopes: Vec<String>,
    /// The registered redirect URI; `None` accepts any loopback one.
    pub redirect_uri: Option<String>,
    /// `expires_in` of access tokens, in seconds (0: expired at once).
    pub access_token_expires_in: u64,
    /// How long an authorization code can be redeemed.
    pub code_ttl: Duration,
    /// Issue a new refresh token on each refresh and invalidate the old one.
    pub rotate_refresh_tokens: bool,
    /// Presenting a rotated-out refresh token revokes the tokens that replaced it.
    pub revoke_family_on_reuse: bool,
    pub body_format: BodyFormat,
    /// Device polling interval in seconds (0: poll as fast as you like).
    pub device_interval: u64,
    /// `expires_in` of device codes, in seconds.
    pub device_expires_in: u64,
    /// Seconds added to a device code's interval after each `slow_down`.
    pub slow_down_step: u64,
    /// Waited before answering each `/token` request (to make concurrent refreshes overlap).
    pub token_delay: Duration,
    /// Answer authorization requests that pass validation with `error=access_denied`.
    pub deny_authorization: bool,
    /// What `/userinfo` answers.
    pub sub: String,
    pub email: String,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        OAuthConfig {
            client_id: "testkit-client".into(),
            required_scopes: Vec::new(),
            redirect_uri: None,
            access_token_expires_in: 3600,
            code_ttl: Duration::from_secs(60),
            rotate_refresh_tokens: true,
            revoke_family_on_reuse: true,
            body_format: BodyFormat::Any,
            device_interval: 1,
            device_expires_in: 600,
            slow_down_step: 5,
            token_delay: Duration::ZERO,
            deny_authorization: false,
            sub: "user-testkit".into(),
            email: "testkit@example.com".into(),
        }
    }
}

impl OAuthConfig {
    pub fn new(client_id: &str) -> Self {
        OAuthConfig { client_id: client_id.into(), ..OAuthConfig::default() }
    }

    pub fn scopes(mut self, scopes: &[&str]) -> Self {
        self.required_scopes = scopes.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn redirect_uri(mut self, uri: &str) -> Self {
        self.redirect_uri = Some(uri.into());
        self
    }

    pub fn expires_in(mut self, seconds: u64) -> Self {
        self.access_token_expires_in = seconds;
        self
    }

    pub fn code_ttl(mut self, ttl: Duration) -> Self {
        self.code_ttl = ttl;
        self
    }

    pub fn rotation(mut self, on: bool) -> Self {
        self.rotate_refresh_tokens = on;
        self
    }

    pub fn revoke_family_on_reuse(mut self, on: bool) -> Self {
        self.revoke_family_on_reuse = on;
        self
    }

    pub fn body_format(mut self, format: BodyFormat) -> Self {
        self.body_format = format;
        self
    }

    pub fn device_interval(mut self, seconds: u64) -> Self {
        self.device_interval = seconds;
        self
    }

    pub fn device_expires_in(mut self, seconds: u64) -> Self {
        self.device_expires_in = seconds;
        self
    }

    pub fn slow_down_step(mut self, seconds: u64) -> Self {
        self.slow_down_step = seconds;
        self
    }

    pub fn token_delay(mut self, delay: Duration) -> Self {
        self.token_delay = delay;
        self
    }

    pub fn deny_authorization(mut self, deny: bool) -> Self {
        self.deny_authorization = deny;
        self
    }

    pub fn user(mut self, sub: &str, email: &str) -> Self {
        self.sub = sub.into();
        self.email = email.into();
        self
    }
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// The `Content-Type` header as sent.
    pub content_type: Option<String>,
    /// Query parameters (GET) or body parameters (POST, form or JSON), in order; empty when the
    /// body could not be parsed.
    pub params: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
}

impl Recorded {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

struct CodeGrant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    scope: String,
    issued: Instant,
    used: bool,
}

struct AccessGrant {
    expires_at: Instant,
    revoked: bool,
    /// The authorization code the grant descends from.
    code: Option<String>,
}

#[derive(PartialEq, Eq)]
enum RefreshState {
    Active,
    Rotated(String),
    Revoked,
}

struct RefreshGrant {
    client_id: String,
    scope: String,
    state: RefreshState,
    code: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum DeviceStatus {
    Pending,
    Approved,
    Denied,
    Redeemed,
}

struct DeviceGrant {
    user_code: String,
    client_id: String,
    scope: String,
    expires_at: Instant,
    interval: u64,
    last_poll: Option<Instant>,
    status: DeviceStatus,
}

struct Inner {
    config: OAuthConfig,
    base: String,
    requests: Vec<Recorded>,
    codes: HashMap<String, CodeGrant>,
    access: HashMap<String, AccessGrant>,
    refresh: HashMap<String, RefreshGrant>,
    /// Keyed by device code.
    devices: HashMap<String, DeviceGrant>,
    /// User codes in issue order.
    user_codes: Vec<String>,
    refresh_calls: usize,
    counter: u64,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

/// Checks access tokens of one [`OAuthServer`]; cheap to clone into another twin's state.
#[derive(Clone)]
pub struct AccessTokenValidator {
    inner: Shared,
}

impl AccessTokenValidator {
    /// Whether `token` was issued by the server and is neither expired nor revoked.
    pub fn is_valid(&self, token: &str) -> bool {
        lock(&self.inner).access_valid(token)
    }
}

/// A running twin. Dropping it stops the server.
pub struct OAuthServer {
    addr: SocketAddr,
    inner: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OAuthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OAuthServer {
    /// Starts a server on 127.0.0.1 with a random port.
    pub async fn start(config: OAuthConfig) -> OAuthServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind oauth server");
        let addr = listener.local_addr().expect("local addr");
        let inner = Arc::new(Mutex::new(Inner {
            config,
            base: format!("http://{addr}"),
            requests: Vec::new(),
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            devices: HashMap::new(),
            user_codes: Vec::new(),
            refresh_calls: 0,
            counter: 0,
        }));
        let app = Router::new()
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/device/code", post(device_code))
            .route("/device", get(device_page))
            .route("/userinfo", get(userinfo))
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        OAuthServer { addr, inner, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn authorize_url(&self) -> String {
        format!("{}/authorize", self.base_url())
    }

    pub fn token_url(&self) -> String {
        format!("{}/token", self.base_url())
    }

    pub fn device_authorization_url(&self) -> String {
        format!("{}/device/code", self.base_url())
    }

    pub fn userinfo_url(&self) -> String {
        format!("{}/userinfo", self.base_url())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Every request received so far (including refused ones).
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// How many `grant_type=refresh_token` requests `/token` received (refused ones included).
    pub fn refresh_calls(&self) -> usize {
        self.lock().refresh_calls
    }

    /// Revokes every refresh token issued so far: using one is `invalid_grant` from now on.
    pub fn revoke_refresh_tokens(&self) {
        for grant in self.lock().refresh.values_mut() {
            grant.state = RefreshState::Revoked;
        }
    }

    /// Makes every access token issued so far expired.
    pub fn expire_access_tokens(&self) {
        let now = Instant::now();
        for grant in self.lock().access.values_mut() {
            grant.expires_at = now;
        }
    }

    /// Whether `token` was issued by this server and is neither expired nor revoked.
    pub fn is_valid_access_token(&self, token: &str) -> bool {
        self.lock().access_valid(token)
    }

    /// A handle checking this server's access tokens, for other twins.
    pub fn validator(&self) -> AccessTokenValidator {
        AccessTokenValidator { inner: self.inner.clone() }
    }

    /// Issues an access and a refresh token with the required scopes without any flow:
    /// `(access_token, refresh_token)`.
    pub fn issue_tokens(&self) -> (String, String) {
        let mut g = self.lock();
        let (client, scope) = (g.config.client_id.clone(), g.config.required_scopes.join(" "));
        let body = g.issue(&client, &scope, None, true);
        let s = |k: &str| body[k].as_str().unwrap_or_default().to_string();
        (s("access_token"), s("refresh_token"))
    }

    /// The user "approves" the device code showing `user_code`. False when it is unknown.
    pub fn approve_device(&self, user_code: &str) -> bool {
        self.set_device(user_code, DeviceStatus::Approved)
    }

    /// The user refuses the device code showing `user_code`. False when it is unknown.
    pub fn deny_device(&self, user_code: &str) -> bool {
        self.set_device(user_code, DeviceStatus::Denied)
    }

    fn set_device(&self, user_code: &str, status: DeviceStatus) -> bool {
        let wanted = normalize_user_code(user_code);
        let mut g = self.lock();
        match g.devices.values_mut().find(|d| normalize_user_code(&d.user_code) == wanted) {
            Some(d) if d.status == DeviceStatus::Pending => {
                d.status = status;
                true
            }
            _ => false,
        }
    }

    /// The user code of the latest device authorization request.
    pub fn last_user_code(&self) -> Option<String> {
        self.lock().user_codes.last().cloned()
    }

    /// Turns answering authorization requests with `error=access_denied` on or off.
    pub fn set_deny_authorization(&self, deny: bool) {
        self.lock().config.deny_authorization = deny;
    }

    /// Sets the delay before each `/token` answer.
    pub fn set_token_delay(&self, delay: Duration) {
        self.lock().config.token_delay = delay;
    }

    /// Changes any setting of the running server.
    pub fn update_config(&self, f: impl FnOnce(&mut OAuthConfig)) {
        f(&mut self.lock().config);
    }
}

impl Inner {
    fn access_valid(&self, token: &str) -> bool {
        self.access.get(token).is_some_and(|a| !a.revoked && Instant::now() < a.expires_at)
    }

    fn random_token(&mut self, prefix: &str) -> String {
        self.counter += 1;
        let mut bytes = [0u8; 24];
        // A failing RNG still leaves the counter to keep tokens unique.
        let _ = aws_lc_rs::rand::fill(&mut bytes);
        format!("{prefix}{}_{}", self.counter, URL_SAFE_NO_PAD.encode(bytes))
    }

    fn user_code(&mut self) -> String {
        const ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
        for _ in 0..16 {
            let mut bytes = [0u8; 8];
            let _ = aws_lc_rs::rand::fill(&mut bytes);
            let chars: String = bytes.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect();
            let code = format!("{}-{}", &chars[..4], &chars[4..]);
            if !self.user_codes.contains(&code) {
                return code;
            }
        }
        self.counter += 1;
        format!("BCDF-{:04}", self.counter % 10_000)
    }

    /// Issues an access token (and a refresh token when `with_refresh`); the token response body.
    fn issue(&mut self, client_id: &str, scope: &str, code: Option<String>, with_refresh: bool) -> Value {
        let access = self.random_token("at");
        let expires_in = self.config.access_token_expires_in;
        self.access
            .insert(access.clone(), AccessGrant { expires_at: later(expires_in), revoked: false, code: code.clone() });
        let mut body =
            json!({"access_token": access, "token_type": "Bearer", "expires_in": expires_in, "scope": scope});
        if with_refresh {
            let refresh = self.random_token("rt");
            self.refresh.insert(
                refresh.clone(),
                RefreshGrant { client_id: client_id.into(), scope: scope.into(), state: RefreshState::Active, code },
            );
            body["refresh_token"] = json!(refresh);
        }
        body
    }

    /// Revokes every token descending from an authorization code (RFC 6749 §4.1.2).
    fn revoke_from_code(&mut self, code: &str) {
        for a in self.access.values_mut().filter(|a| a.code.as_deref() == Some(code)) {
            a.revoked = true;
        }
        for r in self.refresh.values_mut().filter(|r| r.code.as_deref() == Some(code)) {
            r.state = RefreshState::Revoked;
        }
    }

    /// Revokes the refresh tokens that replaced `token`, following the rotation chain.
    fn revoke_successors(&mut self, token: &str) {
        let mut next = match self.refresh.get(token).map(|r| &r.state) {
            Some(RefreshState::Rotated(s)) => Some(s.clone()),
            _ => None,
        };
        while let Some(t) = next {
            next = match self.refresh.get_mut(&t) {
                Some(r) => match std::mem::replace(&mut r.state, RefreshState::Revoked) {
                    RefreshState::Rotated(s) => Some(s),
                    _ => None,
                },
                None => None,
            };
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Responses

fn json_response(status: u16, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .header("pragma", "no-cache")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

/// An RFC 6749 §5.2 error body.
fn oauth_error(status: u16, error: &str, description: &str) -> Response {
    json_response(status, &json!({"error": error, "error_description": description}))
}

fn invalid_request(description: &str) -> Response {
    oauth_error(400, "invalid_request", description)
}

fn invalid_grant(description: &str) -> Response {
    oauth_error(400, "invalid_grant", description)
}

fn invalid_client() -> Response {
    oauth_error(401, "invalid_client", "unknown client_id")
}

fn redirect(location: &str) -> Response {
    Response::builder()
        .status(302)
        .header("location", location)
        .header("cache-control", "no-store")
        .body(Body::empty())
        .unwrap_or_default()
}

/// `<redirect_uri>?k=v&…` (or `&k=v` when the URI already has a query).
fn redirect_with(redirect_uri: &str, params: &[(&str, Option<&str>)]) -> Response {
    let mut location = redirect_uri.to_string();
    let mut sep = if redirect_uri.contains('?') { '&' } else { '?' };
    for (k, v) in params {
        if let Some(v) = v {
            location.push(sep);
            location.push_str(k);
            location.push('=');
            location.push_str(&percent_encode(v));
            sep = '&';
        }
    }
    redirect(&location)
}

// ---------------------------------------------------------------------------------------------
// Parameters

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes one `application/x-www-form-urlencoded` name or value (`+` is a space).
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => out.push(b),
                    None => return Err(format!("malformed percent-encoding in {s:?}")),
                }
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("parameter {s:?} is not UTF-8"))
}

pub(crate) fn parse_form(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn parse_json(body: &[u8]) -> Result<Vec<(String, String)>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not valid JSON: {e}"))?;
    let Value::Object(map) = v else {
        return Err("JSON body must be an object".into());
    };
    Ok(map
        .into_iter()
        .filter_map(|(k, v)| match v {
            Value::Null => None,
            Value::String(s) => Some((k, s)),
            other => Some((k, other.to_string())),
        })
        .collect())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Json,
    Form,
}

/// Parses a POST body by its content type.
fn parse_body(content_type: Option<&str>, body: &[u8]) -> Result<(Kind, Vec<(String, String)>), String> {
    let media = content_type.unwrap_or_default().split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match media.as_str() {
        "application/json" => Ok((Kind::Json, parse_json(body)?)),
        "application/x-www-form-urlencoded" => {
            let text = std::str::from_utf8(body).map_err(|_| "form body is not UTF-8".to_string())?;
            Ok((Kind::Form, parse_form(text)?))
        }
        "" => Err("missing Content-Type: send application/x-www-form-urlencoded or application/json".into()),
        other => Err(format!(
            "unsupported Content-Type {other:?}: send application/x-www-form-urlencoded or application/json"
        )),
    }
}

/// Parameters with RFC 6749 §3.1 rules applied: no repeats, empty values count as absent.
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn new(raw: &[(String, String)]) -> Result<Params, String> {
        for (i, (k, _)) in raw.iter().enumerate() {
            if raw[..i].iter().any(|(other, _)| other == k) {
                return Err(format!("parameter {k} is included more than once"));
            }
        }
        Ok(Params(raw.iter().filter(|(_, v)| !v.is_empty()).cloned().collect()))
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

pub(crate) fn header_list(headers: &HeaderMap) -> Vec<(String, String)> {
    headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string())).collect()
}

pub(crate) fn content_type(headers: &HeaderMap) -> Option<String> {
    headers.get("content-type").and_then(|v| v.to_str().ok()).map(String::from)
}

fn record(inner: &mut Inner, method: &str, path: &str, headers: &HeaderMap, params: &[(String, String)]) {
    inner.requests.push(Recorded {
        method: method.into(),
        path: path.into(),
        content_type: content_type(headers),
        params: params.to_vec(),
        headers: header_list(headers),
    });
}

/// Whether every required scope is in the space-separated `scope`.
pub(crate) fn missing_scopes(required: &[String], scope: &str) -> Vec<String> {
    let got: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
    required.iter().filter(|r| !got.contains(&r.as_str())).cloned().collect()
}

/// An `http://` URI on 127.0.0.1, localhost or [::1], without a fragment or userinfo.
fn check_loopback(uri: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("redirect_uri {uri:?} {why}"));
    if !uri.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("http://")) {
        return bad("must be an http:// loopback URI");
    }
    let rest = &uri[7..];
    if rest.contains('#') {
        return bad("must not contain a fragment");
    }
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    if authority.contains('@') {
        return bad("must not contain userinfo");
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(r) => match r.find(']') {
            Some(close) => (&authority[..close + 2], &r[close + 1..]),
            None => return bad("has an unterminated IPv6 literal"),
        },
        None => match authority.rfind(':') {
            Some(i) => (&authority[..i], &authority[i..]),
            None => (authority, ""),
        },
    };
    if !["127.0.0.1", "localhost", "[::1]"].iter().any(|h| host.eq_ignore_ascii_case(h)) {
        return bad("must be on 127.0.0.1, localhost or [::1]");
    }
    if !port.is_empty() {
        let digits = &port[1..];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.parse::<u16>().is_err() {
            return bad("has an invalid port");
        }
    }
    Ok(())
}

/// RFC 7636 §4.1/§4.2: 43–128 characters of `[A-Za-z0-9-._~]`.
pub(crate) fn pkce_shaped(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

pub(crate) fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()))
}

/// `seconds` from now, saturating at about a century.
fn later(seconds: u64) -> Instant {
    let now = Instant::now();
    now.checked_add(Duration::from_secs(seconds)).unwrap_or(now + Duration::from_secs(3_000_000_000))
}

fn normalize_user_code(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

// ---------------------------------------------------------------------------------------------
// Handlers

async fn authorize(State(inner): State<Shared>, uri: Uri, headers: HeaderMap) -> Response {
    let raw = parse_form(uri.query().unwrap_or_default());
    let mut g = lock(&inner);
    record(&mut g, "GET", "/authorize", &headers, raw.as_deref().unwrap_or_default());
    let p = match raw.and_then(|r| Params::new(&r)) {
        Ok(p) => p,
        Err(e) => return invalid_request(&e),
    };
    // Errors before the redirect URI is verified are shown to the user, not redirected.
    match p.get("client_id") {
        None => return invalid_request("missing client_id"),
        Some(c) if c != g.config.client_id => return oauth_error(400, "invalid_client", "unknown client_id"),
        Some(_) => {}
    }
    let Some(redirect_uri) = p.get("redirect_uri") else {
        return invalid_request("missing redirect_uri");
    };
    if let Err(e) = check_loopback(redirect_uri) {
        return invalid_request(&e);
    }
    if let Some(registered) = &g.config.redirect_uri
        && registered != redirect_uri
    {
        return invalid_request(&format!("redirect_uri {redirect_uri:?} is not the registered {registered:?}"));
    }
    let state = p.get("state");
    let fail = |error: &str, description: &str| {
        redirect_with(
            redirect_uri,
            &[("error", Some(error)), ("error_description", Some(description)), ("state", state)],
        )
    };
    match p.get("response_type") {
        None => return fail("invalid_request", "missing response_type"),
        Some("code") => {}
        Some(other) => return fail("unsupported_response_type", &format!("response_type {other:?} is not supported")),
    }
    let Some(state) = state else {
        return fail("invalid_request", "missing state");
    };
    let Some(challenge) = p.get("code_challenge") else {
        return fail("invalid_request", "code_challenge required (PKCE, RFC 7636)");
    };
    match p.get("code_challenge_method") {
        Some("S256") => {}
        None => return fail("invalid_request", "code_challenge_method required: only S256 is supported"),
        Some(other) => {
            return fail(
                "invalid_request",
                &format!("code_challenge_method {other:?} refused: only S256 is supported"),
            );
        }
    }
    if !pkce_shaped(challenge) {
        return fail("invalid_request", "code_challenge must be 43-128 characters of [A-Za-z0-9-._~]");
    }
    let scope = p.get("scope").unwrap_or_default().to_string();
    let missing = missing_scopes(&g.config.required_scopes, &scope);
    if !missing.is_empty() {
        return fail("invalid_scope", &format!("missing required scope(s): {}", missing.join(" ")));
    }
    if g.config.deny_authorization {
        return fail("access_denied", "the user denied the request");
    }
    let code = g.random_token("code");
    let grant = CodeGrant {
        client_id: g.config.client_id.clone(),
        redirect_uri: redirect_uri.into(),
        challenge: challenge.into(),
        scope,
        issued: Instant::now(),
        used: false,
    };
    g.codes.insert(code.clone(), grant);
    redirect_with(redirect_uri, &[("code", Some(&code)), ("state", Some(state))])
}

/// Parses, records and checks a POST body; `Err` is the refusal.
#[allow(clippy::result_large_err)]
fn post_params(inner: &mut Inner, path: &str, headers: &HeaderMap, body: &[u8]) -> Result<Params, Response> {
    let parsed = parse_body(content_type(headers).as_deref(), body);
    let raw = parsed.as_ref().map(|(_, r)| r.as_slice()).unwrap_or_default();
    record(inner, "POST", path, headers, raw);
    if path == "/token" && raw.iter().any(|(k, v)| k == "grant_type" && v == "refresh_token") {
        inner.refresh_calls += 1;
    }
    let (kind, raw) = parsed.map_err(|e| invalid_request(&e))?;
    match (inner.config.body_format, kind) {
        (BodyFormat::Json, Kind::Form) => return Err(invalid_request("this server accepts only application/json")),
        (BodyFormat::Form, Kind::Json) => {
            return Err(invalid_request("this server accepts only application/x-www-form-urlencoded"));
        }
        _ => {}
    }
    let p = Params::new(&raw).map_err(|e| invalid_request(&e))?;
    match p.get("client_id") {
        None => Err(invalid_request("missing client_id")),
        Some(c) if c != inner.config.client_id => Err(invalid_client()),
        Some(_) => Ok(p),
    }
}

async fn token(State(inner): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let p = {
        let mut g = lock(&inner);
        post_params(&mut g, "/token", &headers, &body)
    };
    let delay = lock(&inner).config.token_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let p = match p {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let mut g = lock(&inner);
    let client_id = p.get("client_id").unwrap_or_default().to_string();
    match p.get("grant_type") {
        None => invalid_request("missing grant_type"),
        Some("authorization_code") => code_grant(&mut g, &p, &client_id),
        Some("refresh_token") => refresh_grant(&mut g, &p, &client_id),
        Some(DEVICE_CODE_GRANT) => device_grant(&mut g, &p, &client_id),
        Some(other) => oauth_error(400, "unsupported_grant_type", &format!("grant_type {other:?} is not supported")),
    }
}

fn code_grant(g: &mut Inner, p: &Params, client_id: &str) -> Response {
    let Some(code) = p.get("code") else {
        return invalid_request("missing code");
    };
    let Some(redirect_uri) = p.get("redirect_uri") else {
        return invalid_request("missing redirect_uri");
    };
    let Some(verifier) = p.get("code_verifier") else {
        return invalid_request("missing code_verifier (PKCE, RFC 7636)");
    };
    let ttl = g.config.code_ttl;
    let Some(grant) = g.codes.get_mut(code) else {
        return invalid_grant("authorization code is invalid");
    };
    if grant.used {
        g.revoke_from_code(code);
        return invalid_grant("authorization code has already been used");
    }
    grant.used = true;
    if grant.issued.elapsed() >= ttl {
        return invalid_grant("authorization code has expired");
    }
    if grant.client_id != client_id {
        return invalid_grant("authorization code was issued to another client");
    }
    if grant.redirect_uri != redirect_uri {
        return invalid_grant("redirect_uri does not match the one of the authorization request");
    }
    if !pkce_shaped(verifier) {
        return invalid_grant("code_verifier must be 43-128 characters of [A-Za-z0-9-._~]");
    }
    if s256(verifier) != grant.challenge {
        return invalid_grant("code_verifier does not match the code_challenge");
    }
    let scope = grant.scope.clone();
    let body = g.issue(client_id, &scope, Some(code.to_string()), true);
    json_response(200, &body)
}

fn refresh_grant(g: &mut Inner, p: &Params, client_id: &str) -> Response {
    let Some(token) = p.get("refresh_token") else {
        return invalid_request("missing refresh_token");
    };
    let Some(grant) = g.refresh.get(token) else {
        return invalid_grant("refresh token is invalid");
    };
    match grant.state {
        RefreshState::Active => {}
        RefreshState::Revoked => return invalid_grant("refresh token has been revoked"),
        RefreshState::Rotated(_) => {
            if g.config.revoke_family_on_reuse {
                g.revoke_successors(token);
            }
            return invalid_grant("refresh token has already been used");
        }
    }
    if grant.client_id != client_id {
        return invalid_grant("refresh token was issued to another client");
    }
    let scope = match p.get("scope") {
        Some(asked) => {
            let asked_list: Vec<String> = asked.split(' ').filter(|s| !s.is_empty()).map(String::from).collect();
            let wider = missing_scopes(&asked_list, &grant.scope);
            if !wider.is_empty() {
                return oauth_error(400, "invalid_scope", &format!("scope exceeds the grant: {}", wider.join(" ")));
            }
            asked.to_string()
        }
        None => grant.scope.clone(),
    };
    let code = grant.code.clone();
    let rotate = g.config.rotate_refresh_tokens;
    let body = g.issue(client_id, &scope, code, rotate);
    if rotate {
        let successor = body["refresh_token"].as_str().unwrap_or_default().to_string();
        if let Some(old) = g.refresh.get_mut(token) {
            old.state = RefreshState::Rotated(successor);
        }
    }
    json_response(200, &body)
}

fn device_grant(g: &mut Inner, p: &Params, client_id: &str) -> Response {
    let Some(device_code) = p.get("device_code") else {
        return invalid_request("missing device_code");
    };
    let step = g.config.slow_down_step;
    let Some(d) = g.devices.get_mut(device_code) else {
        return invalid_grant("device_code is invalid");
    };
    if d.client_id != client_id {
        return invalid_grant("device_code was issued to another client");
    }
    let now = Instant::now();
    if now >= d.expires_at {
        return oauth_error(400, "expired_token", "the device code has expired");
    }
    let last = d.last_poll.replace(now);
    if let Some(last) = last
        && now.duration_since(last) < Duration::from_secs(d.interval)
    {
        d.interval += step;
        let body = json!({"error": "slow_down", "error_description": format!("polled sooner than the {}-second interval", d.interval - step), "interval": d.interval});
        return json_response(400, &body);
    }
    match d.status {
        DeviceStatus::Pending => oauth_error(400, "authorization_pending", "the user has not approved the request yet"),
        DeviceStatus::Denied => oauth_error(400, "access_denied", "the user denied the request"),
        DeviceStatus::Redeemed => invalid_grant("device_code has already been used"),
        DeviceStatus::Approved => {
            d.status = DeviceStatus::Redeemed;
            let scope = d.scope.clone();
            let body = g.issue(client_id, &scope, None, true);
            json_response(200, &body)
        }
    }
}

async fn device_code(State(inner): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut g = lock(&inner);
    let p = match post_params(&mut g, "/device/code", &headers, &body) {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let scope = p.get("scope").unwrap_or_default().to_string();
    let missing = missing_scopes(&g.config.required_scopes, &scope);
    if !missing.is_empty() {
        return oauth_error(400, "invalid_scope", &format!("missing required scope(s): {}", missing.join(" ")));
    }
    let device_code = g.random_token("dc");
    let user_code = g.user_code();
    let (interval, expires_in) = (g.config.device_interval, g.config.device_expires_in);
    let grant = DeviceGrant {
        user_code: user_code.clone(),
        client_id: g.config.client_id.clone(),
        scope,
        expires_at: later(expires_in),
        interval,
        last_poll: None,
        status: DeviceStatus::Pending,
    };
    g.devices.insert(device_code.clone(), grant);
    g.user_codes.push(user_code.clone());
    let verification_uri = format!("{}/device", g.base);
    json_response(
        200,
        &json!({
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": verification_uri,
            "verification_uri_complete": format!("{verification_uri}?user_code={}", percent_encode(&user_code)),
            "expires_in": expires_in,
            "interval": interval,
        }),
    )
}

/// The verification page: the user "approves" through [`OAuthServer::approve_device`].
async fn device_page(State(inner): State<Shared>, uri: Uri, headers: HeaderMap) -> Response {
    let raw = parse_form(uri.query().unwrap_or_default()).unwrap_or_default();
    record(&mut lock(&inner), "GET", "/device", &headers, &raw);
    Response::builder()
        .header("content-type", "text/html; charset=utf-8")
        .body(Body::from("<!doctype html><title>testkit device login</title><p>Enter the code shown on your device."))
        .unwrap_or_default()
}

async fn userinfo(State(inner): State<Shared>, headers: HeaderMap) -> Response {
    let mut g = lock(&inner);
    record(&mut g, "GET", "/userinfo", &headers, &[]);
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let token = auth.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")).map(|(_, t)| t.trim());
    let refuse = |error: Option<&str>, description: &str| {
        let (challenge, body) = match error {
            Some(e) => (
                format!("Bearer realm=\"testkit\", error=\"{e}\", error_description=\"{description}\""),
                json!({"error": e, "error_description": description}),
            ),
            None => ("Bearer realm=\"testkit\"".to_string(), json!({"error_description": description})),
        };
        Response::builder()
            .status(401)
            .header("content-type", "application/json")
            .header("www-authenticate", challenge)
            .body(Body::from(body.to_string()))
            .unwrap_or_default()
    };
    match token {
        None | Some("") => refuse(None, "missing Authorization: Bearer"),
        Some(t) if !g.access.contains_key(t) => refuse(Some("invalid_token"), "the access token is invalid"),
        Some(t) if !g.access_valid(t) => refuse(Some("invalid_token"), "the access token expired or was revoked"),
        Some(_) => json_response(200, &json!({"sub": g.config.sub, "email": g.config.email})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REDIRECT: &str = "http://127.0.0.1:54545/callback";
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-testkit";

    fn client() -> reqwest::Client {
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
    }

    fn challenge(verifier: &str) -> String {
        URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()))
    }

    fn form(params: &[(&str, &str)]) -> String {
        params.iter().map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v))).collect::<Vec<_>>().join("&")
    }

    fn query_param(url: &str, name: &str) -> Option<String> {
        let query = url.split_once('?')?.1;
        parse_form(query).ok()?.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    async fn post_form(url: &str, params: &[(&str, &str)]) -> (u16, Value) {
        let resp = client()
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(params))
            .send()
            .await
            .expect("send");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn post_json(url: &str, body: Value) -> (u16, Value) {
        let resp = client().post(url).json(&body).send().await.expect("send");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    fn server_config() -> OAuthConfig {
        OAuthConfig::new("cli").scopes(&["user:profile", "user:inference"]).redirect_uri(REDIRECT)
    }

    /// Runs `/authorize` like a browser and returns the `Location`.
    async fn authorize_location(server: &OAuthServer, method: &str, challenge: &str) -> (u16, String) {
        let url = format!(
            "{}?{}",
            server.authorize_url(),
            form(&[
                ("response_type", "code"),
                ("client_id", "cli"),
                ("redirect_uri", REDIRECT),
                ("scope", "user:profile user:inference"),
                ("state", "st 1"),
                ("code_challenge", challenge),
                ("code_challenge_method", method),
            ])
        );
        let resp = client().get(url).send().await.expect("authorize");
        let location = resp.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        (resp.status().as_u16(), location)
    }

    async fn get_code(server: &OAuthServer) -> String {
        let (status, location) = authorize_location(server, "S256", &challenge(VERIFIER)).await;
        assert_eq!(status, 302);
        assert!(location.starts_with(REDIRECT), "{location}");
        assert_eq!(query_param(&location, "state").as_deref(), Some("st 1"));
        query_param(&location, "code").expect("code")
    }

    async fn redeem(server: &OAuthServer, code: &str, verifier: &str) -> (u16, Value) {
        post_json(
            &server.token_url(),
            json!({"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                "client_id": "cli", "code_verifier": verifier, "state": "st 1"}),
        )
        .await
    }

    #[tokio::test]
    async fn oauth_full_pkce_code_flow() {
        let server = OAuthServer::start(server_config()).await;
        let code = get_code(&server).await;
        let (status, body) = redeem(&server, &code, VERIFIER).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3600);
        assert_eq!(body["scope"], "user:profile user:inference");
        assert!(body["refresh_token"].is_string());
        let access = body["access_token"].as_str().expect("access token");
        assert!(server.is_valid_access_token(access));
        assert!(server.validator().is_valid(access));
        assert!(!server.is_valid_access_token("nope"));

        let resp = client().get(server.userinfo_url()).bearer_auth(access).send().await.expect("userinfo");
        assert_eq!(resp.status().as_u16(), 200);
        let info: Value = resp.json().await.expect("json");
        assert_eq!(info, json!({"sub": "user-testkit", "email": "testkit@example.com"}));

        server.expire_access_tokens();
        let resp = client().get(server.userinfo_url()).bearer_auth(access).send().await.expect("userinfo");
        assert_eq!(resp.status().as_u16(), 401);
        assert_eq!(resp.json::<Value>().await.expect("json")["error"], "invalid_token");

        let reqs = server.requests();
        let token_req = reqs.iter().find(|r| r.path == "/token").expect("token request");
        assert_eq!(token_req.content_type.as_deref(), Some("application/json"));
        assert_eq!(token_req.param("code_verifier"), Some(VERIFIER));
        assert_eq!(reqs[0].param("state"), Some("st 1"));
    }

    #[tokio::test]
    async fn oauth_form_body_and_format_requirement() {
        let server = OAuthServer::start(server_config().body_format(BodyFormat::Json)).await;
        let code = get_code(&server).await;
        let params = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("client_id", "cli"),
            ("code_verifier", VERIFIER),
        ];
        let (status, body) = post_form(&server.token_url(), &params).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")), "{body}");
        server.update_config(|c| c.body_format = BodyFormat::Any);
        let (status, body) = post_form(&server.token_url(), &params).await;
        assert_eq!(status, 200, "{body}");
    }

    #[tokio::test]
    async fn oauth_plain_challenge_and_bad_redirect_refused() {
        let server = OAuthServer::start(server_config()).await;
        let (status, location) = authorize_location(&server, "plain", VERIFIER).await;
        assert_eq!(status, 302);
        assert_eq!(query_param(&location, "error").as_deref(), Some("invalid_request"));
        assert_eq!(query_param(&location, "state").as_deref(), Some("st 1"));

        let url = format!(
            "{}?{}",
            server.authorize_url(),
            form(&[("response_type", "code"), ("client_id", "cli"), ("redirect_uri", "https://evil.example/cb")])
        );
        let resp = client().get(url).send().await.expect("authorize");
        assert_eq!(resp.status().as_u16(), 400);
        assert_eq!(resp.json::<Value>().await.expect("json")["error"], "invalid_request");

        server.set_deny_authorization(true);
        let (_, location) = authorize_location(&server, "S256", &challenge(VERIFIER)).await;
        assert_eq!(query_param(&location, "error").as_deref(), Some("access_denied"));
        assert_eq!(query_param(&location, "code"), None);
    }

    #[tokio::test]
    async fn oauth_wrong_verifier_refused() {
        let server = OAuthServer::start(server_config()).await;
        let code = get_code(&server).await;
        let other = "another-verifier-that-is-long-enough-0123456789";
        let (status, body) = redeem(&server, &code, other).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"], "invalid_grant");
        assert!(body["error_description"].as_str().unwrap_or_default().contains("code_verifier"), "{body}");
    }

    #[tokio::test]
    async fn oauth_code_reuse_refused_and_revokes() {
        let server = OAuthServer::start(server_config()).await;
        let code = get_code(&server).await;
        let (status, first) = redeem(&server, &code, VERIFIER).await;
        assert_eq!(status, 200);
        let (status, body) = redeem(&server, &code, VERIFIER).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
        assert!(!server.is_valid_access_token(first["access_token"].as_str().unwrap_or_default()));
    }

    #[tokio::test]
    async fn oauth_refresh_with_rotation() {
        let server = OAuthServer::start(server_config()).await;
        let (_, old_refresh) = server.issue_tokens();
        let refresh = |token: String| {
            let url = server.token_url();
            async move {
                post_form(&url, &[("grant_type", "refresh_token"), ("refresh_token", &token), ("client_id", "cli")])
                    .await
            }
        };
        let (status, body) = refresh(old_refresh.clone()).await;
        assert_eq!(status, 200, "{body}");
        let new_refresh = body["refresh_token"].as_str().expect("rotated").to_string();
        assert_ne!(new_refresh, old_refresh);
        assert!(server.is_valid_access_token(body["access_token"].as_str().unwrap_or_default()));

        let (status, body) = refresh(new_refresh.clone()).await;
        assert_eq!(status, 200, "{body}");
        let newest = body["refresh_token"].as_str().expect("rotated").to_string();

        // The rotated-out token is refused, and its reuse revokes the chain.
        let (status, body) = refresh(old_refresh).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
        let (_, body) = refresh(newest).await;
        assert_eq!(body["error"], "invalid_grant");
        assert_eq!(server.refresh_calls(), 4);
    }

    #[tokio::test]
    async fn oauth_refresh_without_rotation_keeps_token() {
        let server = OAuthServer::start(server_config().rotation(false)).await;
        let (_, rt) = server.issue_tokens();
        for _ in 0..2 {
            let (status, body) = post_json(
                &server.token_url(),
                json!({"grant_type": "refresh_token", "refresh_token": rt, "client_id": "cli"}),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            assert!(body.get("refresh_token").is_none());
        }
    }

    #[tokio::test]
    async fn oauth_revoked_refresh_is_invalid_grant() {
        let server = OAuthServer::start(server_config()).await;
        let (_, rt) = server.issue_tokens();
        server.revoke_refresh_tokens();
        let (status, body) = post_json(
            &server.token_url(),
            json!({"grant_type": "refresh_token", "refresh_token": rt, "client_id": "cli"}),
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(body["error"], "invalid_grant");
        let (status, body) = post_json(
            &server.token_url(),
            json!({"grant_type": "refresh_token", "refresh_token": rt, "client_id": "someone-else"}),
        )
        .await;
        assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
    }

    #[tokio::test]
    async fn oauth_device_flow_pending_then_approved() {
        let server = OAuthServer::start(server_config().device_interval(0)).await;
        let (status, dc) = post_form(
            &server.device_authorization_url(),
            &[("client_id", "cli"), ("scope", "user:profile user:inference")],
        )
        .await;
        assert_eq!(status, 200, "{dc}");
        assert_eq!(dc["interval"], 0);
        let user_code = dc["user_code"].as_str().expect("user code").to_string();
        assert_eq!(server.last_user_code().as_deref(), Some(user_code.as_str()));
        assert!(dc["verification_uri_complete"].as_str().unwrap_or_default().contains("user_code="));
        let device_code = dc["device_code"].as_str().expect("device code").to_string();
        let poll = || {
            let (url, code) = (server.token_url(), device_code.clone());
            async move {
                post_form(&url, &[("grant_type", DEVICE_CODE_GRANT), ("device_code", &code), ("client_id", "cli")])
                    .await
            }
        };
        let (status, body) = poll().await;
        assert_eq!((status, body["error"].as_str()), (400, Some("authorization_pending")));
        assert!(server.approve_device(&user_code.to_lowercase().replace('-', "")));
        let (status, body) = poll().await;
        assert_eq!(status, 200, "{body}");
        assert!(server.is_valid_access_token(body["access_token"].as_str().unwrap_or_default()));
        let (_, body) = poll().await;
        assert_eq!(body["error"], "invalid_grant");
    }

    #[tokio::test]
    async fn oauth_device_slow_down_denied_and_expired() {
        let server = OAuthServer::start(server_config().device_interval(1)).await;
        let scope = "user:profile user:inference";
        let (_, dc) = post_json(&server.device_authorization_url(), json!({"client_id": "cli", "scope": scope})).await;
        let device_code = dc["device_code"].as_str().unwrap_or_default().to_string();
        let poll = |code: String| {
            let url = server.token_url();
            async move {
                post_json(&url, json!({"grant_type": DEVICE_CODE_GRANT, "device_code": code, "client_id": "cli"})).await
            }
        };
        let (_, body) = poll(device_code.clone()).await;
        assert_eq!(body["error"], "authorization_pending");
        let (status, body) = poll(device_code.clone()).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("slow_down")));
        assert_eq!(body["interval"], 6);

        assert!(server.deny_device(dc["user_code"].as_str().unwrap_or_default()));
        server.update_config(|c| c.device_expires_in = 0);
        let (_, dc2) = post_json(&server.device_authorization_url(), json!({"client_id": "cli", "scope": scope})).await;
        let (_, body) = poll(dc2["device_code"].as_str().unwrap_or_default().to_string()).await;
        assert_eq!(body["error"], "expired_token");

        let fast = OAuthServer::start(server_config().device_interval(0)).await;
        let (_, dc3) = post_json(&fast.device_authorization_url(), json!({"client_id": "cli", "scope": scope})).await;
        assert!(fast.deny_device(dc3["user_code"].as_str().unwrap_or_default()));
        let (_, body) = post_json(
            &fast.token_url(),
            json!({"grant_type": DEVICE_CODE_GRANT, "device_code": dc3["device_code"], "client_id": "cli"}),
        )
        .await;
        assert_eq!(body["error"], "access_denied");
    }
}
