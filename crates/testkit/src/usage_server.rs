//! A twin of the subscription usage endpoints: Anthropic OAuth usage, ChatGPT/Codex `wham/usage`,
//! Gemini Code Assist `retrieveUserQuota`, GitHub `copilot_internal/user`, MiniMax Coding Plan
//! `remains` and Z.AI `quota/limit`, all on one server.
//!
//! Start one with [`UsageServer::start`] and the token it accepts, point a usage endpoint at
//! [`UsageServer::url`] (or [`UsageServer::base_url`] + the real path), then inspect
//! [`UsageServer::requests`].
//!
//! Each endpoint checks the request the way its service does, with that service's error bodies:
//!
//! - `GET /api/oauth/usage`: `Authorization: Bearer <token>` and an `anthropic-beta` list that
//!   includes `oauth-2025-04-20` (without it Anthropic refuses OAuth with a 401).
//! - `GET /backend-api/wham/usage`: `Authorization: Bearer <token>`.
//! - `POST /v1internal:retrieveUserQuota`: `Authorization: Bearer <token>` and a JSON object body
//!   whose optional `project` is a string.
//! - `GET /copilot_internal/user`: `Authorization: token <token>` (only the scheme the editors
//!   send), a `User-Agent` (GitHub refuses requests without one) and, when sent, a supported
//!   `X-GitHub-Api-Version`.
//! - `GET /v1/api/openplatform/coding_plan/remains`: `Authorization: Bearer <token>`; a wrong key
//!   is an HTTP 200 with `base_resp.status_code` 2049, as MiniMax answers.
//! - `GET /api/monitor/usage/quota/limit`: `Authorization: Bearer <token>`; a wrong key is an
//!   HTTP 200 with `{"code": 401, "success": false}`, as Z.AI answers.
//!
//! Accepted requests get a realistic body with fixed values ([`UsageServer::default_body`]),
//! replaceable per endpoint with [`UsageServer::set_body`]. [`UsageServer::set_fault`] makes every
//! endpoint answer a [`Fault`] instead: 401, 403 (Anthropic's missing `user:profile` scope), 429
//! with `Retry-After`, 500, an HTML page, a body over 64 KiB, or any status and body.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use serde_json::{Value, json};

/// One of the usage endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsageApi {
    Claude,
    Codex,
    Gemini,
    Copilot,
    MiniMax,
    Zai,
}

impl UsageApi {
    pub const ALL: [UsageApi; 6] =
        [UsageApi::Claude, UsageApi::Codex, UsageApi::Gemini, UsageApi::Copilot, UsageApi::MiniMax, UsageApi::Zai];

    /// The request path, as on the real service.
    pub fn path(self) -> &'static str {
        match self {
            UsageApi::Claude => "/api/oauth/usage",
            UsageApi::Codex => "/backend-api/wham/usage",
            UsageApi::Gemini => "/v1internal:retrieveUserQuota",
            UsageApi::Copilot => "/copilot_internal/user",
            UsageApi::MiniMax => "/v1/api/openplatform/coding_plan/remains",
            UsageApi::Zai => "/api/monitor/usage/quota/limit",
        }
    }

    fn from_path(path: &str) -> Option<UsageApi> {
        UsageApi::ALL.into_iter().find(|a| a.path() == path)
    }

    fn method(self) -> Method {
        match self {
            UsageApi::Gemini => Method::POST,
            _ => Method::GET,
        }
    }
}

/// What every endpoint answers instead of its usage body while set.
#[derive(Debug, Clone)]
pub enum Fault {
    /// 401 with the service's "bad token" body.
    Unauthorized,
    /// 403 with the service's "not allowed" body (Anthropic: the token lacks `user:profile`).
    Forbidden,
    /// 429 with the service's rate-limit body and this `Retry-After` value.
    RateLimited { retry_after: String },
    /// 500 with the service's internal-error body.
    ServerError,
    /// 200 with an HTML page (a proxy's or Cloudflare's challenge page).
    Garbage,
    /// 200 with a valid JSON body larger than 64 KiB.
    Oversized,
    /// Exactly this status and body (`application/json`).
    Raw { status: u16, body: String },
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct UsageRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl UsageRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

struct Inner {
    token: String,
    fault: Option<Fault>,
    bodies: HashMap<UsageApi, Value>,
    requests: Vec<UsageRequest>,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(inner: &Shared) -> std::sync::MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running twin. Dropping it stops the server.
pub struct UsageServer {
    addr: SocketAddr,
    inner: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for UsageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl UsageServer {
    /// Starts a server on 127.0.0.1 with a random port that accepts `token` on every endpoint.
    pub async fn start(token: &str) -> UsageServer {
        let inner = Arc::new(Mutex::new(Inner {
            token: token.into(),
            fault: None,
            bodies: HashMap::new(),
            requests: Vec::new(),
        }));
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind usage twin");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        UsageServer { addr, inner, task }
    }

    /// `http://127.0.0.1:<port>`: the origin under which every endpoint has its real path.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The full URL of one endpoint.
    pub fn url(&self, api: UsageApi) -> String {
        format!("{}{}", self.base_url(), api.path())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far (including refused ones).
    pub fn requests(&self) -> Vec<UsageRequest> {
        lock(&self.inner).requests.clone()
    }

    /// Makes every endpoint answer `fault` (`None`: answer normally again).
    pub fn set_fault(&self, fault: Option<Fault>) {
        lock(&self.inner).fault = fault;
    }

    /// Replaces the usage body `api` answers to an accepted request.
    pub fn set_body(&self, api: UsageApi, body: Value) {
        lock(&self.inner).bodies.insert(api, body);
    }

    /// The usage body each endpoint answers by default, shaped like the real service's.
    pub fn default_body(api: UsageApi) -> Value {
        match api {
            UsageApi::Claude => json!({
                "five_hour": {"utilization": 61.0, "resets_at": "2026-01-28T07:59:59.571404+00:00"},
                "seven_day": {"utilization": 22.0, "resets_at": "2026-02-03T09:59:59.571468+00:00"},
                "seven_day_oauth_apps": null,
                "seven_day_opus": {"utilization": 4.0, "resets_at": "2026-02-03T09:59:59.571468+00:00"},
                "seven_day_sonnet": {"utilization": 1.0, "resets_at": "2026-02-03T09:59:59.571468+00:00"},
                "iguana_necktie": null,
                "extra_usage": {"is_enabled": false, "monthly_limit": null, "used_credits": null, "utilization": null}
            }),
            UsageApi::Codex => json!({
                "plan_type": "pro",
                "rate_limit": {
                    "allowed": true,
                    "limit_reached": false,
                    "primary_window": {
                        "used_percent": 3, "limit_window_seconds": 18000, "reset_after_seconds": 15858,
                        "reset_at": 1767385852
                    },
                    "secondary_window": {
                        "used_percent": 9, "limit_window_seconds": 604800, "reset_after_seconds": 489450,
                        "reset_at": 1767859444
                    }
                },
                "code_review_rate_limit": {
                    "allowed": true,
                    "limit_reached": false,
                    "primary_window": {
                        "used_percent": 0, "limit_window_seconds": 604800, "reset_after_seconds": 604800,
                        "reset_at": 1767974794
                    },
                    "secondary_window": null
                },
                "credits": {
                    "has_credits": true, "unlimited": false, "balance": "37.5",
                    "approx_local_messages": [0, 0], "approx_cloud_messages": [0, 0]
                }
            }),
            UsageApi::Gemini => json!({
                "buckets": [
                    {"modelId": "gemini-2.5-pro", "tokenType": "REQUESTS", "remainingFraction": 0.75,
                     "resetTime": "2025-10-22T16:01:15Z"},
                    {"modelId": "gemini-2.5-flash", "tokenType": "REQUESTS", "remainingFraction": 0.9,
                     "resetTime": "2025-10-22T16:01:15Z"},
                    {"modelId": "gemini-2.5-flash-lite", "tokenType": "REQUESTS", "remainingFraction": 1,
                     "resetTime": "2025-10-22T16:01:15Z"}
                ]
            }),
            UsageApi::Copilot => {
                let unlimited = |id: &str| {
                    json!({
                        "entitlement": 0, "overage_count": 0, "overage_permitted": false, "percent_remaining": 100.0,
                        "quota_id": id, "quota_remaining": 0.0, "remaining": 0, "unlimited": true,
                        "timestamp_utc": "2025-10-14T09:30:00.000Z"
                    })
                };
                json!({
                    "login": "octocat",
                    "access_type_sku": "plus_monthly_subscriber_quota",
                    "analytics_tracking_id": "0123456789abcdef0123456789abcdef",
                    "assigned_date": "2025-01-01T00:00:00-08:00",
                    "can_signup_for_limited": false,
                    "chat_enabled": true,
                    "copilot_plan": "individual_pro",
                    "organization_login_list": [],
                    "organization_list": [],
                    "endpoints": {
                        "api": "https://api.individual.githubcopilot.com",
                        "origin-tracker": "https://origin-tracker.individual.githubcopilot.com",
                        "proxy": "https://proxy.individual.githubcopilot.com",
                        "telemetry": "https://telemetry.individual.githubcopilot.com"
                    },
                    "quota_reset_date": "2025-11-01",
                    "quota_reset_date_utc": "2025-11-01T00:00:00.000Z",
                    "quota_snapshots": {
                        "chat": unlimited("chat"),
                        "completions": unlimited("completions"),
                        "premium_interactions": {
                            "entitlement": 1500, "overage_count": 0, "overage_permitted": true,
                            "percent_remaining": 82.5, "quota_id": "premium_interactions", "quota_remaining": 1237.5,
                            "remaining": 1237, "unlimited": false, "timestamp_utc": "2025-10-14T09:30:00.000Z"
                        }
                    }
                })
            }
            UsageApi::MiniMax => json!({
                "model_remains": [{
                    "model_name": "MiniMax-M2",
                    "start_time": 1767000000000_i64,
                    "end_time": 1767018000000_i64,
                    "remains_time": 9000000,
                    "current_interval_total_count": 1500,
                    "current_interval_usage_count": 1245,
                    "weekly_start_time": 1766966400000_i64,
                    "weekly_end_time": 1767571200000_i64,
                    "current_weekly_total_count": 15000,
                    "current_weekly_usage_count": 14530
                }],
                "base_resp": {"status_code": 0, "status_msg": "success"}
            }),
            UsageApi::Zai => json!({
                "code": 200,
                "msg": "Operation successful",
                "data": {
                    "limits": [
                        {"type": "TOKENS_LIMIT", "unit": 3, "number": 5, "percentage": 12,
                         "nextResetTime": 1771073738808_i64},
                        {"type": "TIME_LIMIT", "unit": 5, "number": 1, "usage": 1000, "currentValue": 280,
                         "remaining": 720, "percentage": 28, "nextResetTime": 1772615765983_i64,
                         "usageDetails": [{"modelCode": "search-prime", "usage": 200},
                                          {"modelCode": "web-reader", "usage": 80}]}
                    ],
                    "level": "pro"
                },
                "success": true
            }),
        }
    }
}

fn json_response(status: u16, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

/// The service's error body for `status`.
fn error_body(api: UsageApi, status: u16) -> Value {
    match api {
        UsageApi::Claude => {
            let (kind, message) = match status {
                401 => ("authentication_error", "Invalid bearer token"),
                403 => ("permission_error", "OAuth token does not meet scope requirement user:profile"),
                429 => ("rate_limit_error", "Rate limited. Please try again later."),
                _ => ("api_error", "Internal server error"),
            };
            json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_testkit"})
        }
        UsageApi::Codex => {
            let detail = match status {
                401 => "Could not parse your authentication token. Please try signing in again.",
                403 => "You do not have access to this workspace.",
                429 => "Too many requests. Please slow down.",
                _ => "Internal server error",
            };
            json!({ "detail": detail })
        }
        UsageApi::Gemini => {
            let (state, message) = match status {
                401 => (
                    "UNAUTHENTICATED",
                    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or \
                     other valid authentication credential.",
                ),
                403 => ("PERMISSION_DENIED", "The caller does not have permission"),
                429 => ("RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Quota requests'."),
                _ => ("INTERNAL", "Internal error encountered."),
            };
            json!({"error": {"code": status, "message": message, "status": state}})
        }
        UsageApi::Copilot => {
            let message = match status {
                401 => "Bad credentials",
                403 => "Resource not accessible by integration",
                429 => "API rate limit exceeded",
                _ => "Server Error",
            };
            let docs = "https://docs.github.com/rest";
            json!({"message": message, "documentation_url": docs, "status": status.to_string()})
        }
        UsageApi::MiniMax => {
            let (code, message) = match status {
                401 | 403 => (1004, "login fail: Please carry the API secret key in the 'Authorization' field"),
                429 => (1002, "rate limit exceeded"),
                _ => (1013, "internal service error"),
            };
            json!({"base_resp": {"status_code": code, "status_msg": message}})
        }
        UsageApi::Zai => {
            let message = match status {
                401 => "token expired or incorrect",
                403 => "no permission",
                429 => "Too many requests",
                _ => "system error",
            };
            json!({"code": status, "msg": message, "success": false})
        }
    }
}

fn fault_response(api: UsageApi, fault: &Fault) -> Response {
    match fault {
        Fault::Unauthorized => json_response(401, &error_body(api, 401)),
        Fault::Forbidden => json_response(403, &error_body(api, 403)),
        Fault::RateLimited { retry_after } => {
            let mut resp = json_response(429, &error_body(api, 429));
            if let Ok(v) = retry_after.parse() {
                resp.headers_mut().insert("retry-after", v);
            }
            resp
        }
        Fault::ServerError => json_response(500, &error_body(api, 500)),
        Fault::Garbage => Response::builder()
            .status(200)
            .header("content-type", "text/html; charset=UTF-8")
            .body(Body::from(
                "<!DOCTYPE html><html><head><title>Just a moment...</title></head>\
                 <body><p>Checking your browser before accessing the site.</p></body></html>",
            ))
            .unwrap_or_default(),
        Fault::Oversized => json_response(200, &json!({ "padding": "x".repeat(70 * 1024) })),
        Fault::Raw { status, body } => Response::builder()
            .status(*status)
            .header("content-type", "application/json")
            .body(Body::from(body.clone()))
            .unwrap_or_default(),
    }
}

/// Checks a request the way the service does. `Err` is the refusal to send.
// The refusal is the HTTP response itself; it is built once per refused request.
#[allow(clippy::result_large_err)]
fn check(api: UsageApi, token: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), Response> {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let auth = h("authorization");
    let bearer_ok = auth.and_then(|v| v.strip_prefix("Bearer ")) == Some(token);
    match api {
        UsageApi::Claude => {
            let beta = h("anthropic-beta").unwrap_or("");
            if !beta.split(',').any(|b| b.trim() == "oauth-2025-04-20") {
                return Err(json_response(
                    401,
                    &json!({"type": "error", "error": {"type": "authentication_error",
                        "message": "OAuth authentication is currently not supported."}, "request_id": "req_testkit"}),
                ));
            }
            if !bearer_ok {
                return Err(json_response(401, &error_body(api, 401)));
            }
        }
        UsageApi::Codex => {
            if !bearer_ok {
                return Err(json_response(401, &error_body(api, 401)));
            }
        }
        UsageApi::Gemini => {
            if !bearer_ok {
                return Err(json_response(401, &error_body(api, 401)));
            }
            let parsed: Option<Value> = serde_json::from_slice(body).ok();
            let valid = match &parsed {
                Some(Value::Object(o)) => o.get("project").is_none_or(Value::is_string),
                _ => false,
            };
            if !valid {
                return Err(json_response(
                    400,
                    &json!({"error": {"code": 400, "message": "Invalid JSON payload received.",
                        "status": "INVALID_ARGUMENT"}}),
                ));
            }
        }
        UsageApi::Copilot => {
            if h("user-agent").is_none_or(str::is_empty) {
                return Err(json_response(
                    403,
                    &json!({"message": "Request forbidden by administrative rules. Please make sure your request \
                        has a User-Agent header."}),
                ));
            }
            if let Some(version) = h("x-github-api-version")
                && !matches!(version, "2022-11-28" | "2025-04-01")
            {
                return Err(json_response(
                    400,
                    &json!({"message": format!("Unsupported 'X-GitHub-Api-Version' header: {version}"),
                        "documentation_url": "https://docs.github.com/rest/about-the-rest-api/api-versions"}),
                ));
            }
            if auth.and_then(|v| v.strip_prefix("token ")) != Some(token) {
                return Err(json_response(401, &error_body(api, 401)));
            }
        }
        UsageApi::MiniMax => {
            if !bearer_ok {
                return Err(json_response(
                    200,
                    &json!({"base_resp": {"status_code": 2049, "status_msg": "invalid api key"}}),
                ));
            }
        }
        UsageApi::Zai => {
            if !bearer_ok {
                return Err(json_response(200, &error_body(api, 401)));
            }
        }
    }
    Ok(())
}

async fn handle(State(inner): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let recorded = UsageRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let (token, fault, custom) = {
        let mut g = lock(&inner);
        g.requests.push(recorded);
        let api = UsageApi::from_path(uri.path());
        (g.token.clone(), g.fault.clone(), api.and_then(|a| g.bodies.get(&a).cloned()))
    };
    let Some(api) = UsageApi::from_path(uri.path()) else {
        return json_response(404, &json!({"message": "Not Found"}));
    };
    if method != api.method() {
        return json_response(405, &json!({"message": format!("{method} is not allowed here")}));
    }
    if let Some(fault) = fault {
        return fault_response(api, &fault);
    }
    if let Err(refusal) = check(api, &token, &headers, &body) {
        return refusal;
    }
    json_response(200, &custom.unwrap_or_else(|| UsageServer::default_body(api)))
}
