//! Subscription usage: how much of a plan's quota is used and when it resets.
//!
//! Some providers publish the state of a subscription's rate-limit windows on an endpoint that
//! the signed-in credential can read. [`fetch`] asks one of them and returns a [`UsageReport`]:
//! one [`UsageWindow`] per quota ("5h", "7d", a model, "premium requests"), the plan name and a
//! remaining credit balance where the provider gives them.
//!
//! - [`UsageKind::ClaudeOAuth`]: `GET https://api.anthropic.com/api/oauth/usage` with the OAuth access
//!   token as `Bearer`, `anthropic-beta: oauth-2025-04-20` and `anthropic-version: 2023-06-01`;
//!   reads `five_hour`, `seven_day`, `seven_day_opus`, `seven_day_sonnet` (`utilization`,
//!   `resets_at`) and `extra_usage`. A token without the `user:profile` scope (a setup-token) gets
//!   a 403.
//! - [`UsageKind::Codex`]: `GET https://chatgpt.com/backend-api/wham/usage` with the ChatGPT access
//!   token as `Bearer` and `ChatGPT-Account-Id` when known; reads `rate_limit.primary_window` and
//!   `secondary_window` (`used_percent`, `limit_window_seconds`, `reset_at`), `plan_type` and
//!   `credits.balance`.
//! - [`UsageKind::GeminiCli`]: `POST https://cloudcode-pa.googleapis.com/v1internal:retrieveUserQuota`
//!   with the Google OAuth access token as `Bearer` and `{}` or `{"project": …}`; reads
//!   `buckets[]` (`modelId`, `remainingFraction`, `resetTime`).
//! - [`UsageKind::Copilot`]: `GET https://api.github.com/copilot_internal/user` with
//!   `Authorization: token <GitHub OAuth token>` and `X-Github-Api-Version: 2025-04-01`; reads
//!   `quota_snapshots.*` (`entitlement`, `remaining`, `percent_remaining`, `unlimited`),
//!   `quota_reset_date` and `copilot_plan`.
//! - [`UsageKind::MiniMax`]: `GET https://api.minimax.io/v1/api/openplatform/coding_plan/remains`
//!   (CN: `api.minimaxi.com`) with the Coding Plan key as `Bearer`; reads `base_resp.status_code`
//!   and the counts, percentages and end times of `model_remains[]`.
//! - [`UsageKind::Zai`]: `GET https://api.z.ai/api/monitor/usage/quota/limit` with the API key as
//!   `Bearer`; reads `success`, `code`, `data.limits[]` (`type`, `unit`, `number`, `percentage`,
//!   `nextResetTime`) and `data.planName`.
//!
//! None of these endpoints is documented by its provider; the shapes are the ones the providers'
//! own clients read, so every field is optional and a missing one is simply not reported. A body
//! that is not JSON, or whose fields have the wrong types, is a [`ErrorKind::Protocol`] error.
//! Two quirks: MiniMax's `current_interval_usage_count` is the number of requests *left*, not used,
//! and MiniMax and Z.AI report some failures (bad key, no plan) in an HTTP 200 body.
//!
//! Every call is bounded: 15 s in all, 64 KiB of body. The credential is sent only in its header;
//! it is never logged, and every message built from a response has it scrubbed out.

use std::time::Duration;

use clawline_core::secret::SecretString;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, USER_AGENT};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{ErrorKind, ProviderError};
use crate::http_util::{read_body_limited, read_error_body, retry_after, scrub, transport_error};

/// The whole call (connect, headers, body) must finish within this.
const TIMEOUT: Duration = Duration::from_secs(15);
/// Usage bodies are a few KiB; anything larger is refused.
const MAX_BODY: usize = 64 * 1024;

const ANTHROPIC_BETA: &str = "oauth-2025-04-20";
const ANTHROPIC_VERSION: &str = "2023-06-01";
const GITHUB_API_VERSION: &str = "2025-04-01";
/// Copilot's internal API is meant for editors; these are the headers its editor clients send.
const COPILOT_EDITOR_VERSION: &str = "vscode/1.107.0";
const COPILOT_PLUGIN_VERSION: &str = "copilot-chat/0.35.0";
const COPILOT_USER_AGENT: &str = "GitHubCopilotChat/0.35.0";
const CLAWLINE_USER_AGENT: &str = concat!("clawline/", env!("CARGO_PKG_VERSION"));

/// One quota window of a subscription.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct UsageWindow {
    /// What the window is: `"5h"`, `"7d"`, `"7d Opus"`, a model id, `"premium requests"`, …
    pub label: String,
    /// How much of the window is used, 0–100.
    pub used_percent: Option<f64>,
    /// Used amount, in the provider's unit (requests, prompts, USD for Claude's extra usage).
    pub used: Option<f64>,
    /// The window's allowance in the same unit as `used`.
    pub limit: Option<f64>,
    /// When the window resets, Unix milliseconds.
    pub resets_at_ms: Option<i64>,
}

impl UsageWindow {
    fn new(label: impl Into<String>) -> Self {
        UsageWindow { label: label.into(), used_percent: None, used: None, limit: None, resets_at_ms: None }
    }

    /// How much of the window is left, 0–100.
    pub fn remaining_percent(&self) -> Option<f64> {
        self.used_percent.map(|u| round2((100.0 - u).clamp(0.0, 100.0)))
    }
}

/// What a provider says about a subscription.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct UsageReport {
    pub provider: String,
    /// The plan's name as the provider spells it (`"pro"`, `"individual_pro"`, `"GLM Coding Max"`).
    pub plan: Option<String>,
    pub windows: Vec<UsageWindow>,
    /// Remaining credit balance, where the provider gives one (Codex `credits.balance`).
    pub credits: Option<f64>,
}

/// Which usage API to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageKind {
    ClaudeOAuth,
    Codex,
    GeminiCli,
    Copilot,
    MiniMax,
    Zai,
}

impl UsageKind {
    /// The request path of the kind's endpoint.
    pub fn path(self) -> &'static str {
        match self {
            UsageKind::ClaudeOAuth => "/api/oauth/usage",
            UsageKind::Codex => "/backend-api/wham/usage",
            UsageKind::GeminiCli => "/v1internal:retrieveUserQuota",
            UsageKind::Copilot => "/copilot_internal/user",
            UsageKind::MiniMax => "/v1/api/openplatform/coding_plan/remains",
            UsageKind::Zai => "/api/monitor/usage/quota/limit",
        }
    }

    /// The provider's own origin.
    pub fn default_origin(self) -> &'static str {
        match self {
            UsageKind::ClaudeOAuth => "https://api.anthropic.com",
            UsageKind::Codex => "https://chatgpt.com",
            UsageKind::GeminiCli => "https://cloudcode-pa.googleapis.com",
            UsageKind::Copilot => "https://api.github.com",
            UsageKind::MiniMax => "https://api.minimax.io",
            UsageKind::Zai => "https://api.z.ai",
        }
    }
}

/// A usage endpoint: the API to speak and where. `url` can point at a proxy or a test twin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageEndpoint {
    pub kind: UsageKind,
    pub url: String,
}

impl UsageEndpoint {
    /// The kind's path under `origin` (`https://host[:port]`, no trailing path).
    pub fn at(kind: UsageKind, origin: &str) -> Self {
        UsageEndpoint { kind, url: format!("{}{}", origin.trim_end_matches('/'), kind.path()) }
    }
}

/// The ChatGPT account id inside a Codex access token (a JWT claim), which Codex's usage
/// request names in `ChatGPT-Account-Id`.
pub fn codex_account_id(access_token: &str) -> Option<String> {
    use base64::Engine;
    let payload = access_token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims["https://api.openai.com/auth"]["chatgpt_account_id"].as_str().map(String::from)
}

/// The usage endpoint of a built-in provider, or `None` when it publishes none.
pub fn default_endpoint(provider_id: &str) -> Option<UsageEndpoint> {
    let (kind, origin) = match provider_id {
        "anthropic" => (UsageKind::ClaudeOAuth, UsageKind::ClaudeOAuth.default_origin()),
        "openai-codex" => (UsageKind::Codex, UsageKind::Codex.default_origin()),
        "google" | "google-gemini-cli" => (UsageKind::GeminiCli, UsageKind::GeminiCli.default_origin()),
        "github-copilot" => (UsageKind::Copilot, UsageKind::Copilot.default_origin()),
        "minimax" => (UsageKind::MiniMax, UsageKind::MiniMax.default_origin()),
        "minimax-cn" => (UsageKind::MiniMax, "https://api.minimaxi.com"),
        "zai" | "z.ai" | "z-ai" => (UsageKind::Zai, UsageKind::Zai.default_origin()),
        _ => return None,
    };
    Some(UsageEndpoint::at(kind, origin))
}

/// Asks `endpoint` how much of the subscription behind `credential` is used.
///
/// `account_id` is the ChatGPT account for [`UsageKind::Codex`] (`ChatGPT-Account-Id`) and the
/// Google Cloud project for [`UsageKind::GeminiCli`]; other kinds ignore it. `provider` names the
/// provider in the report and in errors.
pub async fn fetch(
    http: &reqwest::Client,
    provider: &str,
    endpoint: &UsageEndpoint,
    credential: &SecretString,
    account_id: Option<&str>,
) -> Result<UsageReport, ProviderError> {
    let key = credential.expose();
    if key.trim().is_empty() {
        return Err(ProviderError::new(ErrorKind::Config, provider, "no credential to read usage with; sign in first"));
    }
    match tokio::time::timeout(TIMEOUT, fetch_inner(http, provider, endpoint, key, account_id)).await {
        Ok(result) => result,
        Err(_) => Err(ProviderError::new(
            ErrorKind::Timeout,
            provider,
            format!("the usage endpoint did not answer within {} s", TIMEOUT.as_secs()),
        )),
    }
}

async fn fetch_inner(
    http: &reqwest::Client,
    provider: &str,
    endpoint: &UsageEndpoint,
    key: &str,
    account_id: Option<&str>,
) -> Result<UsageReport, ProviderError> {
    let request = build_request(http, provider, endpoint, key, account_id)?;
    let resp = request.send().await.map_err(|e| transport_error(provider, &e, Some(key)))?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        let after = retry_after(resp.headers());
        let body = read_error_body(resp).await;
        let mut err = http_error(provider, endpoint.kind, status, &body, key);
        err.retry_after = after;
        return Err(err);
    }
    let body = read_body_limited(resp, MAX_BODY).await.map_err(|e| match e {
        Some(e) => transport_error(provider, &e, Some(key)),
        None => ProviderError::new(
            ErrorKind::Protocol,
            provider,
            format!("the usage response is larger than {} KiB", MAX_BODY / 1024),
        ),
    })?;
    parse(endpoint.kind, provider, &body, key, crate::client::now_ms())
}

fn header_value(provider: &str, value: String) -> Result<HeaderValue, ProviderError> {
    let mut v = HeaderValue::from_str(&value).map_err(|_| {
        ProviderError::new(
            ErrorKind::Config,
            provider,
            "the credential contains characters that cannot be sent in a header",
        )
    })?;
    v.set_sensitive(true);
    Ok(v)
}

fn build_request(
    http: &reqwest::Client,
    provider: &str,
    endpoint: &UsageEndpoint,
    key: &str,
    account_id: Option<&str>,
) -> Result<reqwest::RequestBuilder, ProviderError> {
    let bearer = || header_value(provider, format!("Bearer {key}"));
    let account = account_id.map(str::trim).filter(|a| !a.is_empty());
    let json = HeaderValue::from_static("application/json");
    let builder = match endpoint.kind {
        UsageKind::ClaudeOAuth => http
            .get(&endpoint.url)
            .header(AUTHORIZATION, bearer()?)
            .header("anthropic-beta", ANTHROPIC_BETA)
            .header("anthropic-version", ANTHROPIC_VERSION)
            .header(USER_AGENT, CLAWLINE_USER_AGENT),
        UsageKind::Codex => {
            let mut b =
                http.get(&endpoint.url).header(AUTHORIZATION, bearer()?).header(USER_AGENT, CLAWLINE_USER_AGENT);
            if let Some(id) = account {
                let id = HeaderValue::from_str(id).map_err(|_| {
                    ProviderError::new(ErrorKind::Config, provider, "the ChatGPT account id cannot be sent in a header")
                })?;
                b = b.header("ChatGPT-Account-Id", id);
            }
            b
        }
        UsageKind::GeminiCli => {
            let body = match account {
                Some(project) => serde_json::json!({ "project": project }),
                None => serde_json::json!({}),
            };
            http.post(&endpoint.url)
                .header(AUTHORIZATION, bearer()?)
                .header(CONTENT_TYPE, json.clone())
                .header(USER_AGENT, CLAWLINE_USER_AGENT)
                .body(body.to_string())
        }
        UsageKind::Copilot => http
            .get(&endpoint.url)
            .header(AUTHORIZATION, header_value(provider, format!("token {key}"))?)
            .header("X-Github-Api-Version", GITHUB_API_VERSION)
            .header("Editor-Version", COPILOT_EDITOR_VERSION)
            .header("Editor-Plugin-Version", COPILOT_PLUGIN_VERSION)
            .header(USER_AGENT, COPILOT_USER_AGENT),
        UsageKind::MiniMax => http
            .get(&endpoint.url)
            .header(AUTHORIZATION, bearer()?)
            .header(CONTENT_TYPE, json.clone())
            .header(USER_AGENT, CLAWLINE_USER_AGENT),
        UsageKind::Zai => {
            http.get(&endpoint.url).header(AUTHORIZATION, bearer()?).header(USER_AGENT, CLAWLINE_USER_AGENT)
        }
    };
    Ok(builder.header(ACCEPT, json).timeout(TIMEOUT))
}

// ---------------------------------------------------------------------------------------------
// Errors

/// The provider's own words from an error body, if it has any.
fn error_text(body: &str) -> String {
    let from_json = serde_json::from_str::<Value>(body).ok().and_then(|v| {
        let s =
            |v: Option<&Value>| v.and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(String::from);
        s(v.pointer("/error/message"))
            .or_else(|| s(v.get("error")))
            .or_else(|| s(v.get("message")))
            .or_else(|| s(v.get("detail")))
            .or_else(|| s(v.pointer("/detail/message")))
            .or_else(|| s(v.get("msg")))
            .or_else(|| s(v.pointer("/base_resp/status_msg")))
            .or_else(|| s(v.get("error_description")))
    });
    from_json.unwrap_or_else(|| excerpt(body))
}

/// The start of a body on one line, for messages.
fn excerpt(body: &str) -> String {
    let flat = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let (shown, cut) = clawline_core::text::truncate_chars(&flat, 200);
    format!("{shown}{}", if cut { "…" } else { "" })
}

fn http_error(provider: &str, kind: UsageKind, status: u16, body: &str, key: &str) -> ProviderError {
    let said = error_text(body);
    let said = if said.is_empty() { String::new() } else { format!(": {said}") };
    let (error_kind, advice) = match status {
        401 => (ErrorKind::Auth, "the token was refused (expired or revoked); sign in again".to_string()),
        403 if said.to_lowercase().contains("scope") => (
            ErrorKind::Auth,
            match kind {
                UsageKind::ClaudeOAuth => {
                    "this token lacks the user:profile scope the usage endpoint needs (a setup-token \
                                           only has user:inference); sign in again with a full OAuth login"
                        .to_string()
                }
                _ => "this token lacks the scope the usage endpoint needs; sign in again".to_string(),
            },
        ),
        403 => (ErrorKind::Auth, "this token is not allowed to read usage; sign in again".to_string()),
        408 => (ErrorKind::Timeout, "the usage endpoint timed out".to_string()),
        429 => (ErrorKind::RateLimited, "the usage endpoint is rate limiting this account".to_string()),
        404 => (ErrorKind::BadRequest, "no usage endpoint at this URL".to_string()),
        s if s >= 500 => (ErrorKind::Server, "the usage endpoint failed".to_string()),
        _ => (ErrorKind::BadRequest, "the usage request was refused".to_string()),
    };
    ProviderError {
        kind: error_kind,
        provider: provider.to_string(),
        status: Some(status),
        message: scrub(&format!("HTTP {status}{said}; {advice}"), Some(key)),
        retry_after: None,
    }
}

fn protocol(provider: &str, message: String, key: &str) -> ProviderError {
    ProviderError::new(ErrorKind::Protocol, provider, scrub(&message, Some(key)))
}

/// A failure the provider reported inside an HTTP 200 body.
fn in_body_error(provider: &str, kind: ErrorKind, code: i64, message: &str, key: &str) -> ProviderError {
    let advice = match kind {
        ErrorKind::Auth => "; sign in again or check the key",
        ErrorKind::Billing => "; the plan is inactive or out of credit",
        _ => "",
    };
    let message = if message.is_empty() { "no message" } else { message };
    ProviderError::new(kind, provider, scrub(&format!("error {code}: {message}{advice}"), Some(key)))
}

// ---------------------------------------------------------------------------------------------
// Parsing

fn parse(kind: UsageKind, provider: &str, body: &str, key: &str, now_ms: i64) -> Result<UsageReport, ProviderError> {
    let value: Value = serde_json::from_str(body).map_err(|e| {
        protocol(provider, format!("the usage endpoint did not answer with JSON ({e}): {}", excerpt(body)), key)
    })?;
    if !value.is_object() {
        return Err(protocol(provider, format!("the usage response is not a JSON object: {}", excerpt(body)), key));
    }
    let shape =
        |e: serde_json::Error| protocol(provider, format!("the usage response has an unexpected shape: {e}"), key);
    let mut report = UsageReport { provider: provider.to_string(), plan: None, windows: Vec::new(), credits: None };
    match kind {
        UsageKind::ClaudeOAuth => claude(&mut report, serde_json::from_value(value).map_err(shape)?),
        UsageKind::Codex => codex(&mut report, serde_json::from_value(value).map_err(shape)?, now_ms),
        UsageKind::GeminiCli => gemini(&mut report, serde_json::from_value(value).map_err(shape)?),
        UsageKind::Copilot => copilot(&mut report, serde_json::from_value(value).map_err(shape)?),
        UsageKind::MiniMax => minimax(&mut report, serde_json::from_value(value).map_err(shape)?, key)?,
        UsageKind::Zai => zai(&mut report, serde_json::from_value(value).map_err(shape)?, key)?,
    }
    Ok(report)
}

/// A nested object; `null` is absent. (Serde would also read a struct from a JSON array.)
fn opt_obj<'de, D: serde::Deserializer<'de>, T: serde::de::DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    use serde::de::Error;
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => serde_json::from_value(v).map(Some).map_err(D::Error::custom),
        Some(other) => Err(D::Error::custom(format!("expected an object, got {}", excerpt(&other.to_string())))),
    }
}

/// A list of objects; `null` is absent.
fn opt_objs<'de, D: serde::Deserializer<'de>, T: serde::de::DeserializeOwned>(
    d: D,
) -> Result<Option<Vec<T>>, D::Error> {
    use serde::de::Error;
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                v @ Value::Object(_) => serde_json::from_value(v).map_err(D::Error::custom),
                other => Err(D::Error::custom(format!("expected an object, got {}", excerpt(&other.to_string())))),
            })
            .collect::<Result<Vec<T>, _>>()
            .map(Some),
        Some(other) => Err(D::Error::custom(format!("expected a list, got {}", excerpt(&other.to_string())))),
    }
}

/// A number that may arrive as a JSON number or a numeric string; `null` is absent.
fn opt_num<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    use serde::de::Error;
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64().filter(|f| f.is_finite())),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => {
            s.trim().parse::<f64>().map(Some).map_err(|_| D::Error::custom(format!("expected a number, got {s:?}")))
        }
        Some(other) => Err(D::Error::custom(format!("expected a number, got {other}"))),
    }
}

/// A point in time as epoch seconds or milliseconds (number or string) or an RFC 3339 / ISO date
/// string. An unreadable string is treated as absent.
fn opt_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64().and_then(epoch_ms)),
        Some(Value::String(s)) => Ok(parse_time(&s)),
        Some(other) => Err(D::Error::custom(format!("expected a timestamp, got {other}"))),
    }
}

/// Epoch seconds (below 10^12) or milliseconds, as milliseconds.
fn epoch_ms(v: f64) -> Option<i64> {
    if !v.is_finite() || v <= 0.0 {
        return None;
    }
    Some(if v < 1e12 { (v * 1000.0).round() as i64 } else { v.round() as i64 })
}

fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<f64>() {
        return epoch_ms(n);
    }
    parse_rfc3339_ms(s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD`, or `YYYY-MM-DD[T ]HH:MM:SS[.fff…][Z|±HH:MM|±HHMM]` (no zone: UTC), as Unix ms.
fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, to: usize| -> Option<i64> {
        let part = s.get(from..to)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok()).flatten()
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    if b.len() == 10 {
        return Some(days * 86_400_000);
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &s[start..i];
        if digits.is_empty() {
            return None;
        }
        let first3: String = digits.chars().chain("000".chars()).take(3).collect();
        millis = first3.parse::<i64>().ok()?;
    }
    let offset_secs = match &s[i..] {
        "" | "Z" | "z" => 0,
        zone => {
            let sign = match zone.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
            if digits.len() != 4 || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let (oh, om) = (digits[..2].parse::<i64>().ok()?, digits[2..].parse::<i64>().ok()?);
            sign * (oh * 3600 + om * 60)
        }
    };
    Some((days * 86_400 + h * 3600 + mi * 60 + sec - offset_secs) * 1000 + millis)
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// A used percentage as reported, bounded to 0–100.
fn pct(v: f64) -> f64 {
    round2(v.clamp(0.0, 100.0))
}

/// `"5h"`, `"7d"`, `"30m"` for a window length in seconds.
fn duration_label(secs: f64) -> Option<String> {
    if !secs.is_finite() || secs <= 0.0 {
        return None;
    }
    let s = secs.round() as i64;
    Some(if s % 86_400 == 0 {
        format!("{}d", s / 86_400)
    } else if s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    })
}

// --- Claude --------------------------------------------------------------------------------

#[derive(Deserialize)]
struct ClaudeUsage {
    #[serde(default, deserialize_with = "opt_obj")]
    five_hour: Option<ClaudeWindow>,
    #[serde(default, deserialize_with = "opt_obj")]
    seven_day: Option<ClaudeWindow>,
    #[serde(default, deserialize_with = "opt_obj")]
    seven_day_opus: Option<ClaudeWindow>,
    #[serde(default, deserialize_with = "opt_obj")]
    seven_day_sonnet: Option<ClaudeWindow>,
    #[serde(default, deserialize_with = "opt_obj")]
    extra_usage: Option<ClaudeExtra>,
}

#[derive(Deserialize)]
struct ClaudeWindow {
    #[serde(default, deserialize_with = "opt_num")]
    utilization: Option<f64>,
    #[serde(default, deserialize_with = "opt_time")]
    resets_at: Option<i64>,
}

#[derive(Deserialize)]
struct ClaudeExtra {
    #[serde(default)]
    is_enabled: Option<bool>,
    /// Cents.
    #[serde(default, deserialize_with = "opt_num")]
    monthly_limit: Option<f64>,
    /// Cents.
    #[serde(default, deserialize_with = "opt_num")]
    used_credits: Option<f64>,
    #[serde(default, deserialize_with = "opt_num")]
    utilization: Option<f64>,
}

fn claude(report: &mut UsageReport, u: ClaudeUsage) {
    let named =
        [("5h", u.five_hour), ("7d", u.seven_day), ("7d Opus", u.seven_day_opus), ("7d Sonnet", u.seven_day_sonnet)];
    for (label, w) in named {
        if let Some(w) = w {
            let mut window = UsageWindow::new(label);
            window.used_percent = w.utilization.map(pct);
            window.resets_at_ms = w.resets_at;
            report.windows.push(window);
        }
    }
    if let Some(extra) = u.extra_usage
        && extra.is_enabled == Some(true)
    {
        let mut window = UsageWindow::new("extra usage");
        window.used = extra.used_credits.map(|c| round2(c / 100.0));
        window.limit = extra.monthly_limit.filter(|l| *l > 0.0).map(|c| round2(c / 100.0));
        window.used_percent = extra.utilization.map(pct).or_else(|| match (window.used, window.limit) {
            (Some(used), Some(limit)) => Some(pct(used / limit * 100.0)),
            _ => None,
        });
        report.windows.push(window);
    }
}

// --- Codex ---------------------------------------------------------------------------------

#[derive(Deserialize)]
struct CodexUsage {
    #[serde(default)]
    plan_type: Option<String>,
    #[serde(default, deserialize_with = "opt_obj")]
    rate_limit: Option<CodexRateLimit>,
    #[serde(default, deserialize_with = "opt_obj")]
    credits: Option<CodexCredits>,
}

#[derive(Deserialize)]
struct CodexRateLimit {
    #[serde(default, deserialize_with = "opt_obj")]
    primary_window: Option<CodexWindow>,
    #[serde(default, deserialize_with = "opt_obj")]
    secondary_window: Option<CodexWindow>,
}

#[derive(Deserialize)]
struct CodexWindow {
    #[serde(default, deserialize_with = "opt_num")]
    used_percent: Option<f64>,
    #[serde(default, deserialize_with = "opt_num")]
    limit_window_seconds: Option<f64>,
    /// Unix seconds.
    #[serde(default, deserialize_with = "opt_time")]
    reset_at: Option<i64>,
    #[serde(default, deserialize_with = "opt_num")]
    reset_after_seconds: Option<f64>,
}

#[derive(Deserialize)]
struct CodexCredits {
    #[serde(default, deserialize_with = "opt_num")]
    balance: Option<f64>,
}

fn codex(report: &mut UsageReport, u: CodexUsage, now_ms: i64) {
    report.plan = u.plan_type.filter(|p| !p.is_empty());
    report.credits = u.credits.and_then(|c| c.balance);
    let Some(limits) = u.rate_limit else { return };
    for (fallback, w) in [("primary", limits.primary_window), ("secondary", limits.secondary_window)] {
        let Some(w) = w else { continue };
        let label = w.limit_window_seconds.and_then(duration_label).unwrap_or_else(|| fallback.to_string());
        let mut window = UsageWindow::new(label);
        window.used_percent = w.used_percent.map(pct);
        window.resets_at_ms = w.reset_at.or_else(|| {
            w.reset_after_seconds.filter(|s| s.is_finite() && *s >= 0.0).map(|s| now_ms + (s * 1000.0) as i64)
        });
        report.windows.push(window);
    }
}

// --- Gemini CLI (Code Assist) --------------------------------------------------------------

#[derive(Deserialize)]
struct GeminiQuota {
    #[serde(default, deserialize_with = "opt_objs")]
    buckets: Option<Vec<GeminiBucket>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeminiBucket {
    #[serde(default)]
    model_id: Option<String>,
    #[serde(default, deserialize_with = "opt_num")]
    remaining_fraction: Option<f64>,
    #[serde(default, deserialize_with = "opt_time")]
    reset_time: Option<i64>,
}

fn gemini(report: &mut UsageReport, q: GeminiQuota) {
    // One window per model: a model with several buckets (token types) shows its tightest one.
    let mut models: Vec<(String, Option<f64>, Option<i64>)> = Vec::new();
    for b in q.buckets.unwrap_or_default() {
        let model = b.model_id.filter(|m| !m.is_empty()).unwrap_or_else(|| "unknown".to_string());
        let fraction = b.remaining_fraction.map(|f| f.clamp(0.0, 1.0));
        match models.iter_mut().find(|(m, _, _)| *m == model) {
            Some(entry) => {
                let tighter = match (fraction, entry.1) {
                    (Some(f), Some(current)) => f < current,
                    (Some(_), None) => true,
                    _ => false,
                };
                if tighter {
                    entry.1 = fraction;
                    entry.2 = b.reset_time.or(entry.2);
                } else if entry.2.is_none() {
                    entry.2 = b.reset_time;
                }
            }
            None => models.push((model, fraction, b.reset_time)),
        }
    }
    for (model, fraction, reset) in models {
        let mut window = UsageWindow::new(model);
        window.used_percent = fraction.map(|f| pct((1.0 - f) * 100.0));
        window.resets_at_ms = reset;
        report.windows.push(window);
    }
}

// --- GitHub Copilot ------------------------------------------------------------------------

#[derive(Deserialize)]
struct CopilotUser {
    #[serde(default)]
    copilot_plan: Option<String>,
    #[serde(default, deserialize_with = "opt_obj")]
    quota_snapshots: Option<CopilotSnapshots>,
    #[serde(default, deserialize_with = "opt_time")]
    quota_reset_date_utc: Option<i64>,
    #[serde(default, deserialize_with = "opt_time")]
    quota_reset_date: Option<i64>,
}

#[derive(Deserialize)]
struct CopilotSnapshots {
    #[serde(default, deserialize_with = "opt_obj")]
    premium_interactions: Option<CopilotQuota>,
    #[serde(default, deserialize_with = "opt_obj")]
    chat: Option<CopilotQuota>,
    #[serde(default, deserialize_with = "opt_obj")]
    completions: Option<CopilotQuota>,
}

#[derive(Deserialize)]
struct CopilotQuota {
    #[serde(default, deserialize_with = "opt_num")]
    entitlement: Option<f64>,
    #[serde(default, deserialize_with = "opt_num")]
    remaining: Option<f64>,
    #[serde(default, deserialize_with = "opt_num")]
    percent_remaining: Option<f64>,
    #[serde(default)]
    unlimited: Option<bool>,
}

fn copilot(report: &mut UsageReport, u: CopilotUser) {
    report.plan = u.copilot_plan.filter(|p| !p.is_empty());
    let reset = u.quota_reset_date_utc.or(u.quota_reset_date);
    let Some(snapshots) = u.quota_snapshots else { return };
    let quotas = [
        ("premium requests", snapshots.premium_interactions),
        ("chat", snapshots.chat),
        ("completions", snapshots.completions),
    ];
    for (label, q) in quotas {
        // An unlimited quota has nothing to run out of.
        let Some(q) = q.filter(|q| q.unlimited != Some(true)) else { continue };
        let mut window = UsageWindow::new(label);
        window.limit = q.entitlement;
        window.used = match (q.entitlement, q.remaining) {
            (Some(total), Some(left)) => Some((total - left).max(0.0)),
            _ => None,
        };
        window.used_percent =
            q.percent_remaining.map(|p| pct(100.0 - p)).or_else(|| match (window.used, window.limit) {
                (Some(used), Some(limit)) if limit > 0.0 => Some(pct(used / limit * 100.0)),
                _ => None,
            });
        window.resets_at_ms = reset;
        report.windows.push(window);
    }
}

// --- MiniMax -------------------------------------------------------------------------------

#[derive(Deserialize)]
struct MiniMaxRemains {
    #[serde(default, deserialize_with = "opt_obj")]
    base_resp: Option<MiniMaxBaseResp>,
    #[serde(default, deserialize_with = "opt_objs")]
    model_remains: Option<Vec<MiniMaxModel>>,
    #[serde(default, deserialize_with = "opt_obj")]
    data: Option<MiniMaxData>,
    #[serde(default)]
    plan_name: Option<String>,
    #[serde(default)]
    current_subscribe_title: Option<String>,
}

#[derive(Deserialize)]
struct MiniMaxData {
    #[serde(default, deserialize_with = "opt_objs")]
    model_remains: Option<Vec<MiniMaxModel>>,
}

#[derive(Deserialize)]
struct MiniMaxBaseResp {
    #[serde(default, deserialize_with = "opt_num")]
    status_code: Option<f64>,
    #[serde(default)]
    status_msg: Option<String>,
}

#[derive(Deserialize)]
struct MiniMaxModel {
    #[serde(default)]
    model_name: Option<String>,
    #[serde(default)]
    current_subscribe_title: Option<String>,
    #[serde(default, deserialize_with = "opt_num")]
    current_interval_total_count: Option<f64>,
    /// Despite the name: requests *left* in the window.
    #[serde(default, deserialize_with = "opt_num")]
    current_interval_usage_count: Option<f64>,
    #[serde(default, deserialize_with = "opt_num")]
    current_interval_remaining_count: Option<f64>,
    #[serde(default, deserialize_with = "opt_num")]
    current_interval_remaining_percent: Option<f64>,
    #[serde(default, deserialize_with = "opt_time")]
    start_time: Option<i64>,
    #[serde(default, deserialize_with = "opt_time")]
    end_time: Option<i64>,
    #[serde(default, deserialize_with = "opt_num")]
    current_weekly_total_count: Option<f64>,
    /// Despite the name: requests *left* this week.
    #[serde(default, deserialize_with = "opt_num")]
    current_weekly_usage_count: Option<f64>,
    #[serde(default, deserialize_with = "opt_num")]
    current_weekly_remaining_percent: Option<f64>,
    #[serde(default, deserialize_with = "opt_num")]
    current_weekly_status: Option<f64>,
    #[serde(default, deserialize_with = "opt_time")]
    weekly_start_time: Option<i64>,
    #[serde(default, deserialize_with = "opt_time")]
    weekly_end_time: Option<i64>,
}

/// A MiniMax window from its total, what is left and the remaining percentage.
fn minimax_window(
    label: String,
    total: Option<f64>,
    left: Option<f64>,
    left_percent: Option<f64>,
    resets_at_ms: Option<i64>,
) -> Option<UsageWindow> {
    let mut window = UsageWindow::new(label);
    window.resets_at_ms = resets_at_ms;
    match (total.filter(|t| *t > 0.0), left) {
        (Some(total), Some(left)) => {
            let used = (total - left).clamp(0.0, total);
            window.used = Some(used);
            window.limit = Some(total);
            window.used_percent = Some(pct(used / total * 100.0));
        }
        _ => window.used_percent = Some(pct(100.0 - left_percent?)),
    }
    Some(window)
}

fn span_label(start: Option<i64>, end: Option<i64>, fallback: &str) -> String {
    match (start, end) {
        (Some(s), Some(e)) if e > s => duration_label(((e - s) as f64 / 1000.0).round()).unwrap_or(fallback.into()),
        _ => fallback.to_string(),
    }
}

fn minimax(report: &mut UsageReport, r: MiniMaxRemains, key: &str) -> Result<(), ProviderError> {
    if let Some(base) = &r.base_resp
        && let Some(code) = base.status_code
        && code != 0.0
    {
        let code = code as i64;
        let kind = match code {
            1004 | 2049 => ErrorKind::Auth,
            1002 | 1039 => ErrorKind::RateLimited,
            1008 => ErrorKind::Billing,
            1000 | 1001 | 1013 => ErrorKind::Server,
            _ => ErrorKind::BadRequest,
        };
        return Err(in_body_error(&report.provider, kind, code, base.status_msg.as_deref().unwrap_or("").trim(), key));
    }
    let models = r.model_remains.or(r.data.and_then(|d| d.model_remains)).unwrap_or_default();
    // Entries without a model name appear now and then; they are noise when named ones exist.
    let named = models.iter().any(|m| m.model_name.as_deref().is_some_and(|n| !n.is_empty()));
    let models: Vec<MiniMaxModel> =
        models.into_iter().filter(|m| !named || m.model_name.as_deref().is_some_and(|n| !n.is_empty())).collect();
    let primary = models
        .iter()
        .position(|m| m.model_name.as_deref().is_some_and(|n| n == "general" || n.starts_with("MiniMax-M")))
        .unwrap_or(0);
    report.plan = r.current_subscribe_title.or(r.plan_name).filter(|p| !p.is_empty());
    for (i, m) in models.into_iter().enumerate() {
        if report.plan.is_none() {
            report.plan = m.current_subscribe_title.clone().filter(|p| !p.is_empty());
        }
        let prefix = if i == primary { String::new() } else { format!("{} ", m.model_name.as_deref().unwrap_or("")) };
        let interval = span_label(m.start_time, m.end_time, "5h");
        let left = m.current_interval_remaining_count.or(m.current_interval_usage_count);
        report.windows.extend(minimax_window(
            format!("{prefix}{interval}"),
            m.current_interval_total_count,
            left,
            m.current_interval_remaining_percent,
            m.end_time,
        ));
        let weekly_counted =
            m.current_weekly_total_count.is_some_and(|t| t > 0.0) && m.current_weekly_usage_count.is_some();
        if weekly_counted || m.current_weekly_status != Some(0.0) {
            let week = span_label(m.weekly_start_time, m.weekly_end_time, "7d");
            report.windows.extend(minimax_window(
                format!("{prefix}{week}"),
                m.current_weekly_total_count,
                m.current_weekly_usage_count,
                m.current_weekly_remaining_percent,
                m.weekly_end_time,
            ));
        }
    }
    Ok(())
}

// --- Z.AI ----------------------------------------------------------------------------------

#[derive(Deserialize)]
struct ZaiQuota {
    #[serde(default)]
    success: Option<bool>,
    #[serde(default, deserialize_with = "opt_num")]
    code: Option<f64>,
    #[serde(default)]
    msg: Option<String>,
    #[serde(default, deserialize_with = "opt_obj")]
    data: Option<ZaiData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ZaiData {
    #[serde(default)]
    plan_name: Option<String>,
    #[serde(default)]
    plan: Option<String>,
    #[serde(default)]
    level: Option<String>,
    #[serde(default, deserialize_with = "opt_objs")]
    limits: Option<Vec<ZaiLimit>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ZaiLimit {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "opt_num")]
    unit: Option<f64>,
    #[serde(default, deserialize_with = "opt_num")]
    number: Option<f64>,
    #[serde(default, deserialize_with = "opt_num")]
    percentage: Option<f64>,
    /// The allowance (tool-call limits only).
    #[serde(default, deserialize_with = "opt_num")]
    usage: Option<f64>,
    /// Used so far (tool-call limits only).
    #[serde(default, deserialize_with = "opt_num")]
    current_value: Option<f64>,
    #[serde(default, deserialize_with = "opt_time")]
    next_reset_time: Option<i64>,
}

/// Z.AI window length: `unit` 1 = days, 3 = hours, 5 = months, 6 = weeks.
fn zai_duration(unit: Option<f64>, number: Option<f64>) -> Option<String> {
    let n = number.filter(|n| *n > 0.0 && n.fract() == 0.0)? as i64;
    let suffix = match unit? as i64 {
        1 => "d",
        3 => "h",
        5 => "mo",
        6 => "w",
        _ => return None,
    };
    Some(format!("{n}{suffix}"))
}

fn zai(report: &mut UsageReport, q: ZaiQuota, key: &str) -> Result<(), ProviderError> {
    let code = q.code.map(|c| c as i64);
    if q.success == Some(false) || code.is_some_and(|c| c != 200) {
        let code = code.unwrap_or(0);
        let kind = match code {
            401 | 1000..=1004 => ErrorKind::Auth,
            1113 => ErrorKind::Billing,
            429 | 1302 | 1303 | 1305 => ErrorKind::RateLimited,
            500..=599 => ErrorKind::Server,
            _ => ErrorKind::BadRequest,
        };
        return Err(in_body_error(&report.provider, kind, code, q.msg.as_deref().unwrap_or("").trim(), key));
    }
    let Some(data) = q.data else { return Ok(()) };
    report.plan = [data.plan_name, data.plan, data.level].into_iter().flatten().find(|p| !p.is_empty());
    for limit in data.limits.unwrap_or_default() {
        let duration = zai_duration(limit.unit, limit.number);
        let label = match (limit.kind.as_deref(), duration) {
            (Some("TOKENS_LIMIT"), Some(d)) => d,
            (Some("TOKENS_LIMIT"), None) => "tokens".to_string(),
            (Some("TIME_LIMIT"), Some(d)) => format!("tools {d}"),
            (Some("TIME_LIMIT"), None) => "tools".to_string(),
            (Some(other), Some(d)) => format!("{} {d}", other.to_lowercase()),
            (Some(other), None) => other.to_lowercase(),
            (None, Some(d)) => d,
            (None, None) => "limit".to_string(),
        };
        let mut window = UsageWindow::new(label);
        window.limit = limit.usage;
        window.used = limit.current_value;
        window.used_percent = limit.percentage.map(pct).or_else(|| match (limit.current_value, limit.usage) {
            (Some(used), Some(total)) if total > 0.0 => Some(pct(used / total * 100.0)),
            _ => None,
        });
        window.resets_at_ms = limit.next_reset_time;
        report.windows.push(window);
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn reads_the_chatgpt_account_from_a_codex_token() {
        use base64::Engine;
        let claims = r#"{"https://api.openai.com/auth":{"chatgpt_account_id":"acct-123"}}"#;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims);
        assert_eq!(codex_account_id(&format!("eyJhbGciOiJSUzI1NiJ9.{payload}.sig")).as_deref(), Some("acct-123"));
        assert_eq!(codex_account_id("sk-not-a-jwt"), None);
        assert_eq!(codex_account_id("a.!!!.c"), None);
    }

    use super::*;

    const KEY: &str = "sk-usage-secret-0123456789";
    const NOW: i64 = 1_767_000_000_000;

    fn ok(kind: UsageKind, body: &str) -> UsageReport {
        parse(kind, "p", body, KEY, NOW).unwrap_or_else(|e| panic!("{kind:?}: {e:?}"))
    }

    fn err(kind: UsageKind, body: &str) -> ProviderError {
        parse(kind, "p", body, KEY, NOW).expect_err("should fail")
    }

    fn labels(r: &UsageReport) -> Vec<&str> {
        r.windows.iter().map(|w| w.label.as_str()).collect()
    }

    #[test]
    fn reads_timestamps() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("2026-01-28T07:59:59.571404+00:00"), Some(1_769_587_199_571));
        assert_eq!(parse_time("2026-01-28T09:59:59.5+02:00"), Some(1_769_587_199_500));
        assert_eq!(parse_time("2026-01-28 07:59:59"), Some(1_769_587_199_000));
        assert_eq!(parse_time("2025-11-01"), Some(1_761_955_200_000));
        assert_eq!(parse_time("1767385852"), Some(1_767_385_852_000));
        assert_eq!(parse_time("1772615765983"), Some(1_772_615_765_983));
        assert_eq!(parse_time("next tuesday"), None);
        assert_eq!(parse_time("2026-13-01"), None);
        assert_eq!(duration_label(18000.0).as_deref(), Some("5h"));
        assert_eq!(duration_label(604800.0).as_deref(), Some("7d"));
        assert_eq!(duration_label(90.0).as_deref(), Some("90s"));
    }

    #[test]
    fn claude_partial_bodies() {
        let r = ok(
            UsageKind::ClaudeOAuth,
            r#"{"five_hour":{"utilization":24.0,"resets_at":"2026-01-02T19:59:59.600956+00:00"},
                "seven_day":{"utilization":36},"seven_day_opus":null,"seven_day_sonnet":{"resets_at":null},
                "iguana_necktie":null,"extra_usage":{"is_enabled":false,"monthly_limit":null}}"#,
        );
        assert_eq!(labels(&r), ["5h", "7d", "7d Sonnet"]);
        assert_eq!(r.windows[0].used_percent, Some(24.0));
        assert_eq!(r.windows[0].remaining_percent(), Some(76.0));
        assert_eq!(r.windows[0].resets_at_ms, Some(1_767_383_999_600));
        assert_eq!((r.windows[1].used_percent, r.windows[1].resets_at_ms), (Some(36.0), None));
        assert_eq!(r.windows[2].used_percent, None);
        assert!(ok(UsageKind::ClaudeOAuth, "{}").windows.is_empty());
        let extra = ok(
            UsageKind::ClaudeOAuth,
            r#"{"extra_usage":{"is_enabled":true,"used_credits":500,"monthly_limit":10000,"utilization":null}}"#,
        );
        let w = &extra.windows[0];
        assert_eq!(
            (w.label.as_str(), w.used, w.limit, w.used_percent),
            ("extra usage", Some(5.0), Some(100.0), Some(5.0))
        );
        assert_eq!(err(UsageKind::ClaudeOAuth, r#"{"five_hour":"full"}"#).kind, ErrorKind::Protocol);
    }

    #[test]
    fn codex_partial_bodies() {
        let r = ok(
            UsageKind::Codex,
            r#"{"plan_type":"plus","rate_limit":{"primary_window":{"used_percent":3,"limit_window_seconds":18000,
                "reset_at":1767385852},"secondary_window":{"used_percent":"9.5","reset_after_seconds":60}},
                "credits":{"has_credits":false,"balance":"12.50"}}"#,
        );
        assert_eq!(r.plan.as_deref(), Some("plus"));
        assert_eq!(r.credits, Some(12.5));
        assert_eq!(labels(&r), ["5h", "secondary"]);
        assert_eq!(r.windows[0].resets_at_ms, Some(1_767_385_852_000));
        assert_eq!((r.windows[1].used_percent, r.windows[1].resets_at_ms), (Some(9.5), Some(NOW + 60_000)));
        let bare = ok(UsageKind::Codex, r#"{"rate_limit":null,"credits":{"balance":null}}"#);
        assert_eq!((bare.plan, bare.credits, bare.windows.len()), (None, None, 0));
        assert_eq!(err(UsageKind::Codex, r#"{"credits":{"balance":"lots"}}"#).kind, ErrorKind::Protocol);
        assert_eq!(err(UsageKind::Codex, r#"{"rate_limit":[1]}"#).kind, ErrorKind::Protocol);
    }

    #[test]
    fn gemini_partial_bodies() {
        let r = ok(
            UsageKind::GeminiCli,
            r#"{"buckets":[{"modelId":"gemini-2.5-pro","tokenType":"REQUESTS","remainingFraction":0.75,
                "resetTime":"2025-10-22T16:01:15Z"},
                {"modelId":"gemini-2.5-pro","tokenType":"TOKENS","remainingFraction":0.5},
                {"modelId":"gemini-2.5-flash"},{"remainingFraction":1}]}"#,
        );
        assert_eq!(labels(&r), ["gemini-2.5-pro", "gemini-2.5-flash", "unknown"]);
        assert_eq!((r.windows[0].used_percent, r.windows[0].resets_at_ms), (Some(50.0), Some(1_761_148_875_000)));
        assert_eq!(r.windows[1].used_percent, None);
        assert_eq!(r.windows[2].used_percent, Some(0.0));
        assert!(ok(UsageKind::GeminiCli, "{}").windows.is_empty());
        assert_eq!(err(UsageKind::GeminiCli, r#"{"buckets":{"a":1}}"#).kind, ErrorKind::Protocol);
        assert_eq!(err(UsageKind::GeminiCli, r#"{"buckets":[[0.5]]}"#).kind, ErrorKind::Protocol);
        assert_eq!(err(UsageKind::GeminiCli, r#"{"buckets":[{"remainingFraction":true}]}"#).kind, ErrorKind::Protocol);
    }

    #[test]
    fn copilot_partial_bodies() {
        let r = ok(
            UsageKind::Copilot,
            r#"{"copilot_plan":"individual","quota_reset_date":"2025-11-01","quota_snapshots":{
                "premium_interactions":{"entitlement":300,"remaining":120,"percent_remaining":40.0,"unlimited":false},
                "chat":{"entitlement":0,"remaining":0,"percent_remaining":100,"unlimited":true},
                "completions":{"percent_remaining":90}}}"#,
        );
        assert_eq!(r.plan.as_deref(), Some("individual"));
        assert_eq!(labels(&r), ["premium requests", "completions"]);
        let p = &r.windows[0];
        assert_eq!((p.used_percent, p.used, p.limit), (Some(60.0), Some(180.0), Some(300.0)));
        assert_eq!(p.resets_at_ms, Some(1_761_955_200_000));
        assert_eq!((r.windows[1].used_percent, r.windows[1].used), (Some(10.0), None));
        assert!(ok(UsageKind::Copilot, r#"{"copilot_plan":"free"}"#).windows.is_empty());
        assert_eq!(err(UsageKind::Copilot, r#"{"quota_snapshots":[]}"#).kind, ErrorKind::Protocol);
    }

    #[test]
    fn minimax_counts_are_what_is_left() {
        let r = ok(
            UsageKind::MiniMax,
            r#"{"model_remains":[{"model_name":"MiniMax-M*","start_time":1767000000000,"end_time":1767018000000,
                "current_interval_total_count":1500,"current_interval_usage_count":1200,
                "current_weekly_total_count":15000,"current_weekly_usage_count":14000,"weekly_end_time":1767500000000},
                {"model_name":"video","current_interval_remaining_percent":80,"current_weekly_status":0},
                {"current_interval_total_count":0}],
                "base_resp":{"status_code":0,"status_msg":"success"}}"#,
        );
        assert_eq!(labels(&r), ["5h", "7d", "video 5h"]);
        let w = &r.windows[0];
        assert_eq!(
            (w.used, w.limit, w.used_percent, w.resets_at_ms),
            (Some(300.0), Some(1500.0), Some(20.0), Some(1_767_018_000_000))
        );
        assert_eq!((r.windows[1].used, r.windows[1].used_percent), (Some(1000.0), Some(6.67)));
        assert_eq!((r.windows[2].used, r.windows[2].used_percent), (None, Some(20.0)));
        assert!(ok(UsageKind::MiniMax, r#"{"base_resp":{"status_code":0}}"#).windows.is_empty());
        let bad = err(UsageKind::MiniMax, r#"{"base_resp":{"status_code":2049,"status_msg":"invalid api key"}}"#);
        assert_eq!(bad.kind, ErrorKind::Auth);
        assert!(bad.message.contains("invalid api key"), "{}", bad.message);
        let none = err(UsageKind::MiniMax, r#"{"base_resp":{"status_code":1008,"status_msg":"insufficient balance"}}"#);
        assert_eq!(none.kind, ErrorKind::Billing);
        assert_eq!(err(UsageKind::MiniMax, r#"{"model_remains":"none"}"#).kind, ErrorKind::Protocol);
    }

    #[test]
    fn zai_partial_bodies() {
        let r = ok(
            UsageKind::Zai,
            r#"{"code":200,"msg":"ok","success":true,"data":{"level":"lite","limits":[
                {"type":"TOKENS_LIMIT","unit":3,"number":5,"percentage":1,"nextResetTime":1771073738808},
                {"type":"TIME_LIMIT","unit":5,"number":1,"usage":100,"currentValue":28,"remaining":72,"percentage":28},
                {"type":"TOKENS_LIMIT","unit":6,"number":1}]}}"#,
        );
        assert_eq!(r.plan.as_deref(), Some("lite"));
        assert_eq!(labels(&r), ["5h", "tools 1mo", "1w"]);
        assert_eq!((r.windows[0].used_percent, r.windows[0].resets_at_ms), (Some(1.0), Some(1_771_073_738_808)));
        assert_eq!((r.windows[1].used, r.windows[1].limit), (Some(28.0), Some(100.0)));
        assert_eq!(r.windows[2].used_percent, None);
        let planned =
            ok(UsageKind::Zai, r#"{"success":true,"code":200,"data":{"planName":"GLM Coding Max","level":"max"}}"#);
        assert_eq!(planned.plan.as_deref(), Some("GLM Coding Max"));
        let expired = err(UsageKind::Zai, r#"{"code":401,"msg":"token expired or incorrect","success":false}"#);
        assert_eq!(expired.kind, ErrorKind::Auth);
        assert_eq!(err(UsageKind::Zai, r#"{"data":{"limits":{}}}"#).kind, ErrorKind::Protocol);
    }

    #[test]
    fn refuses_non_json_and_non_objects() {
        for kind in [
            UsageKind::ClaudeOAuth,
            UsageKind::Codex,
            UsageKind::GeminiCli,
            UsageKind::Copilot,
            UsageKind::MiniMax,
            UsageKind::Zai,
        ] {
            assert_eq!(err(kind, "<html>Just a moment…</html>").kind, ErrorKind::Protocol);
            assert_eq!(err(kind, "[1,2]").kind, ErrorKind::Protocol);
            assert_eq!(err(kind, "").kind, ErrorKind::Protocol);
        }
        let echoed = err(UsageKind::Codex, &format!("not json {KEY}"));
        assert!(!echoed.message.contains(KEY), "{}", echoed.message);
    }

    #[test]
    fn error_statuses_are_classified_and_scrubbed() {
        let e = http_error(
            "p",
            UsageKind::ClaudeOAuth,
            403,
            r#"{"type":"error","error":{"type":"permission_error",
            "message":"OAuth token does not meet scope requirement user:profile"}}"#,
            KEY,
        );
        assert_eq!((e.kind, e.status), (ErrorKind::Auth, Some(403)));
        assert!(e.message.contains("user:profile") && e.message.contains("sign in again"), "{}", e.message);
        let e = http_error("p", UsageKind::Codex, 401, &format!(r#"{{"detail":"bad token {KEY}"}}"#), KEY);
        assert_eq!(e.kind, ErrorKind::Auth);
        assert!(!e.message.contains(KEY) && e.message.contains("[redacted]"), "{}", e.message);
        assert_eq!(http_error("p", UsageKind::Zai, 429, "", KEY).kind, ErrorKind::RateLimited);
        assert_eq!(http_error("p", UsageKind::Zai, 502, "<html>", KEY).kind, ErrorKind::Server);
        assert_eq!(http_error("p", UsageKind::Zai, 404, "", KEY).kind, ErrorKind::BadRequest);
        let gh = http_error("p", UsageKind::Copilot, 401, r#"{"message":"Bad credentials"}"#, KEY);
        assert!(gh.message.contains("Bad credentials"), "{}", gh.message);
    }

    #[test]
    fn default_endpoints() {
        let url = |id: &str| default_endpoint(id).map(|e| (e.kind, e.url));
        assert_eq!(
            url("anthropic"),
            Some((UsageKind::ClaudeOAuth, "https://api.anthropic.com/api/oauth/usage".into()))
        );
        assert_eq!(url("openai-codex"), Some((UsageKind::Codex, "https://chatgpt.com/backend-api/wham/usage".into())));
        assert_eq!(
            url("google"),
            Some((UsageKind::GeminiCli, "https://cloudcode-pa.googleapis.com/v1internal:retrieveUserQuota".into()))
        );
        assert_eq!(
            url("github-copilot"),
            Some((UsageKind::Copilot, "https://api.github.com/copilot_internal/user".into()))
        );
        assert_eq!(
            url("minimax"),
            Some((UsageKind::MiniMax, "https://api.minimax.io/v1/api/openplatform/coding_plan/remains".into()))
        );
        assert_eq!(
            url("minimax-cn").map(|(_, u)| u),
            Some("https://api.minimaxi.com/v1/api/openplatform/coding_plan/remains".into())
        );
        assert_eq!(url("zai"), Some((UsageKind::Zai, "https://api.z.ai/api/monitor/usage/quota/limit".into())));
        assert_eq!(url("openai"), None);
        assert_eq!(url("ollama"), None);
    }
}
