//! The device authorization flow (RFC 8628): for GitHub Copilot, Qwen and Kimi, where the
//! user types a short code on another device instead of being redirected back.
//!
//! [`DeviceFlow::start`] asks for a device code and a user code; [`DeviceFlow::poll`] asks the
//! token endpoint every `interval` seconds until the user approves, adding 5 s after each
//! `slow_down` (RFC 8628 §3.5), and stops at `expires_in`. Qwen also wants PKCE on top, which
//! `pkce: true` adds. This file must not log the device code or tokens.

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
}

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

fn seconds(v: Option<Value>, default: u64) -> u64 {
    v.and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))).unwrap_or(default)
}

impl DeviceFlow {
    /// Asks for a device code.
    pub async fn start(&self, http: &reqwest::Client) -> Result<DeviceStart, OAuthError> {
        let pkce = self.pkce.then(pkce::generate);
        let scope = self.scopes.join(" ");
        let mut params: Vec<(&str, &str)> = vec![("client_id", &self.client_id), ("scope", &scope)];
        if let Some(p) = &pkce {
            params.push(("code_challenge", &p.challenge));
            params.push(("code_challenge_method", "S256"));
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

    /// Polls until the user approves, denies, or the code expires.
    pub async fn poll(&self, http: &reqwest::Client, start: &DeviceStart) -> Result<Grant, OAuthError> {
        let deadline = tokio::time::Instant::now() + start.expires_in;
        let mut interval = start.interval;
        loop {
            tokio::time::sleep(interval).await;
            if tokio::time::Instant::now() >= deadline {
                return Err(OAuthError::Denied {
                    provider: self.provider.clone(),
                    reason: "the code expired before it was approved; run the login again".into(),
                });
            }
            let mut params: Vec<(&str, &str)> = vec![
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", start.device_code.expose()),
                ("client_id", &self.client_id),
            ];
            if let Some(p) = &start.pkce {
                params.push(("code_verifier", p.verifier.expose()));
            }
            match token_request(http, &self.provider, &self.token_url, self.body, &params, "device code").await? {
                Ok(grant) => return Ok(grant),
                Err((state, _)) if state == "slow_down" => interval += Duration::from_secs(5),
                Err(_) => {}
            }
        }
    }
}
