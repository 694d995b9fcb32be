//! The device authorization flow (RFC 8628): for GitHub Copilot, Qwen and Kimi, where the
//! user types a short code on another device instead of being redirected back, and MiniMax's
//! variant of it.
//!
//! [`DeviceFlow::start`] asks for a device code and a user code; [`DeviceFlow::poll`] asks the
//! token endpoint every `interval` seconds until the user approves, adding 5 s after each
//! `slow_down` (RFC 8628 §3.5), and stops at `expires_in`. Qwen also wants PKCE on top, which
//! `pkce: true` adds.
//!
//! MiniMax ([`DeviceDialect::MiniMaxUserCode`]) differs on the wire: the code request is
//! `response_type=code` with a PKCE challenge and a `state` the answer must echo; the answer's
//! `expired_in` is a deadline in epoch milliseconds and `interval` is in milliseconds; polls send
//! `grant_type=urn:ietf:params:oauth:grant-type:user_code` with the user code and the PKCE
//! verifier, and the token endpoint answers `{"status": "pending" | "success" | "error", …}`
//! (read by [`super::wire`]). This file must not log the device code or tokens.

use std::time::Duration;

use clawline_core::secret::SecretString;
use serde::Deserialize;
use serde_json::Value;

use super::pkce::{self, Pkce};
use super::wire::{BodyFormat, Grant, OAuthError, token_request};

/// One provider's device-flow client.
#[derive(Debug, Clone)]
pub struct DeviceFlow {
    pub provider: String,
    pub device_url: String,
    pub token_url: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub body: BodyFormat,
    /// Send a PKCE challenge with the device request and the verifier with the polls.
    pub pkce: bool,
    pub dialect: DeviceDialect,
}

/// Which device grant the provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceDialect {
    /// RFC 8628 as written.
    #[default]
    Rfc8628,
    /// MiniMax's user-code grant (always with PKCE and `state`).
    MiniMaxUserCode,
}

/// The grant type MiniMax polls with.
pub const USER_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:user_code";

/// The least time between MiniMax polls, whatever interval the portal names (it has been seen
/// naming intervals in milliseconds that would turn polling into a flood).
const MINIMAX_MIN_INTERVAL: Duration = Duration::from_secs(1);

/// What the user must do, and what the polls need.
#[derive(Debug, Clone)]
pub struct DeviceStart {
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub expires_in: Duration,
    pub interval: Duration,
    device_code: SecretString,
    pkce: Option<Pkce>,
}

#[derive(Deserialize)]
struct DeviceResponse {
    device_code: String,
    user_code: String,
    #[serde(alias = "verification_url")]
    verification_uri: String,
    #[serde(default)]
    verification_uri_complete: Option<String>,
    #[serde(default)]
    expires_in: Option<Value>,
    #[serde(default)]
    interval: Option<Value>,
}

#[derive(Deserialize)]
struct UserCodeResponse {
    user_code: String,
    verification_uri: String,
    /// Epoch milliseconds.
    expired_in: Option<Value>,
    /// Milliseconds.
    #[serde(default)]
    interval: Option<Value>,
    #[serde(default)]
    state: Option<String>,
}

fn seconds(v: Option<Value>, default: u64) -> u64 {
    v.and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))).unwrap_or(default)
}

impl DeviceFlow {
    /// Asks for a device code.
    pub async fn start(&self, http: &reqwest::Client) -> Result<DeviceStart, OAuthError> {
        let minimax = self.dialect == DeviceDialect::MiniMaxUserCode;
        let pkce = (self.pkce || minimax).then(pkce::generate);
        let state = minimax.then(pkce::random_state);
        let scope = self.scopes.join(" ");
        let mut params: Vec<(&str, &str)> = Vec::new();
        if minimax {
            params.push(("response_type", "code"));
        }
        params.push(("client_id", &self.client_id));
        params.push(("scope", &scope));
        if let Some(p) = &pkce {
            params.push(("code_challenge", &p.challenge));
            params.push(("code_challenge_method", "S256"));
        }
        if let Some(s) = &state {
            params.push(("state", s));
        }
        let builder = http.post(&self.device_url).header(reqwest::header::ACCEPT, "application/json");
        let builder = match self.body {
            BodyFormat::Form => builder
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(super::wire::form(&params)),
            BodyFormat::Json => {
                let obj: serde_json::Map<String, Value> =
                    params.iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect();
                builder.json(&obj)
            }
        };
        let provider = self.provider.clone();
        let resp = tokio::time::timeout(Duration::from_secs(30), builder.send())
            .await
            .map_err(|_| OAuthError::Timeout {
                provider: provider.clone(),
                hint: "the device endpoint did not answer",
            })?
            .map_err(|e| OAuthError::Network {
                provider: provider.clone(),
                message: format!("cannot reach {}: {e}", self.device_url),
            })?;
        let status = resp.status().as_u16();
        let text = crate::http_util::read_body_limited(resp, 64 * 1024).await.map_err(|_| OAuthError::Protocol {
            provider: provider.clone(),
            message: "unreadable device response".into(),
        })?;
        if !(200..300).contains(&status) {
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            return Err(OAuthError::Server {
                provider,
                status,
                error: v["error"].as_str().unwrap_or("error").to_string(),
                description: v["error_description"].as_str().map(String::from),
            });
        }
        if let Some(sent) = state {
            return self.user_code_start(&text, &sent, pkce);
        }
        let d: DeviceResponse = serde_json::from_str(&text).map_err(|_| OAuthError::Protocol {
            provider: provider.clone(),
            message: "the device endpoint's answer has no device_code/user_code/verification_uri".into(),
        })?;
        Ok(DeviceStart {
            user_code: d.user_code,
            verification_uri: d.verification_uri,
            verification_uri_complete: d.verification_uri_complete,
            expires_in: Duration::from_secs(seconds(d.expires_in, 900).max(1)),
            interval: Duration::from_secs(seconds(d.interval, 5)),
            device_code: SecretString::new(d.device_code),
            pkce,
        })
    }

    /// MiniMax's answer to the code request: the echoed `state` is checked before anything else.
    fn user_code_start(&self, text: &str, sent_state: &str, pkce: Option<Pkce>) -> Result<DeviceStart, OAuthError> {
        let provider = self.provider.clone();
        let d: UserCodeResponse = serde_json::from_str(text).map_err(|_| OAuthError::Protocol {
            provider: provider.clone(),
            message: "the code endpoint's answer has no user_code/verification_uri".into(),
        })?;
        if d.state.as_deref() != Some(sent_state) {
            return Err(OAuthError::StateMismatch { provider });
        }
        let number = |v: &Option<Value>| v.as_ref().and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()));
        let deadline_ms = number(&d.expired_in).filter(|d| *d > 0).ok_or_else(|| OAuthError::Protocol {
            provider: provider.clone(),
            message: "the code endpoint's answer has no expired_in deadline".into(),
        })?;
        let left = deadline_ms.saturating_sub(super::wire::now_ms()).max(1_000);
        let interval = number(&d.interval).filter(|i| *i > 0).map_or(MINIMAX_MIN_INTERVAL, |ms| {
            Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX).min(60_000))
        });
        Ok(DeviceStart {
            user_code: d.user_code.clone(),
            verification_uri: d.verification_uri,
            verification_uri_complete: None,
            expires_in: Duration::from_millis(u64::try_from(left).unwrap_or(1_000)),
            interval,
            device_code: SecretString::new(d.user_code),
            pkce,
        })
    }

    /// Polls until the user approves, denies, or the code expires.
    pub async fn poll(&self, http: &reqwest::Client, start: &DeviceStart) -> Result<Grant, OAuthError> {
        let deadline = tokio::time::Instant::now() + start.expires_in;
        let minimax = self.dialect == DeviceDialect::MiniMaxUserCode;
        let mut interval = start.interval;
        loop {
            tokio::time::sleep(interval).await;
            if tokio::time::Instant::now() >= deadline {
                return Err(OAuthError::Denied {
                    provider: self.provider.clone(),
                    reason: "the code expired before it was approved; run the login again".into(),
                });
            }
            let mut params: Vec<(&str, &str)> = if minimax {
                vec![
                    ("grant_type", USER_CODE_GRANT),
                    ("client_id", &self.client_id),
                    ("user_code", start.device_code.expose()),
                ]
            } else {
                vec![
                    ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                    ("device_code", start.device_code.expose()),
                    ("client_id", &self.client_id),
                ]
            };
            if let Some(p) = &start.pkce {
                params.push(("code_verifier", p.verifier.expose()));
            }
            match token_request(http, &self.provider, &self.token_url, self.body, &params, "device code").await? {
                Ok(grant) => return Ok(grant),
                Err((state, _)) if state == "slow_down" => interval += Duration::from_secs(5),
                Err(_) => {}
            }
            if minimax {
                interval = interval.max(MINIMAX_MIN_INTERVAL);
            }
        }
    }
}
