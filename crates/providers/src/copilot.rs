//! GitHub Copilot's token exchange: the GitHub token a user signed in with (device flow, `GH_TOKEN`,
//! or VS Code's stored sign-in) is traded at `GET /copilot_internal/v2/token` for a short-lived
//! Copilot API token, which chat requests then carry as `Authorization: Bearer`.
//!
//! The answer is `{"token", "expires_at" (unix seconds), "refresh_in", "endpoints": {"api"}}`;
//! the token itself also names its API host (`proxy-ep=proxy.<plan>.githubcopilot.com`), used
//! when `endpoints.api` is absent. Tokens are cached per GitHub token (by SHA-256, never the
//! token) until a minute before they expire, and one exchange runs at a time.
//!
//! This file must not log either token.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use clawline_core::secret::SecretString;
use serde::Deserialize;

use crate::error::{ErrorKind, ProviderError};
use crate::http_util::{read_error_body, retry_after, scrub, transport_error};

/// GitHub's exchange endpoint.
pub const TOKEN_URL: &str = "https://api.github.com/copilot_internal/v2/token";

/// A Copilot API token and where to use it.
#[derive(Debug, Clone)]
pub struct CopilotToken {
    pub token: SecretString,
    pub expires_at_ms: i64,
    /// e.g. `https://api.individual.githubcopilot.com`.
    pub api_base: Option<String>,
}

#[derive(Deserialize)]
struct Exchange {
    token: String,
    #[serde(default)]
    expires_at: Option<i64>,
    #[serde(default)]
    endpoints: Option<Endpoints>,
}

#[derive(Deserialize)]
struct Endpoints {
    #[serde(default)]
    api: Option<String>,
}

type Cache = Mutex<HashMap<Vec<u8>, CopilotToken>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn exchange_lock() -> &'static tokio::sync::Mutex<()> {
    static LOCK: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| tokio::sync::Mutex::new(()))
}

/// The API base a token names in its `proxy-ep=` field (`proxy.x` → `https://api.x`).
pub fn api_base_from_token(token: &str) -> Option<String> {
    let ep = token.split(';').find_map(|part| part.trim().strip_prefix("proxy-ep="))?;
    let host = ep.trim().trim_start_matches("https://");
    let host = host.strip_prefix("proxy.").map_or_else(|| host.to_string(), |rest| format!("api.{rest}"));
    (!host.is_empty()).then(|| format!("https://{host}"))
}

fn cached(key: &[u8]) -> Option<CopilotToken> {
    let now = crate::client::now_ms();
    let map = cache().lock().unwrap_or_else(|p| p.into_inner());
    map.get(key).filter(|t| t.expires_at_ms > now + 60_000).cloned()
}

/// A Copilot token for `github_token`: cached, or exchanged at `url`.
pub async fn token_for(
    http: &reqwest::Client,
    provider: &str,
    github_token: &SecretString,
    url: &str,
) -> Result<CopilotToken, ProviderError> {
    let key = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, github_token.expose().as_bytes()).as_ref().to_vec();
    if let Some(t) = cached(&key) {
        return Ok(t);
    }
    let _one = exchange_lock().lock().await;
    if let Some(t) = cached(&key) {
        return Ok(t);
    }
    let gh = github_token.expose();
    let resp = tokio::time::timeout(
        Duration::from_secs(30),
        http.get(url)
            .header(reqwest::header::AUTHORIZATION, format!("token {gh}"))
            .header(reqwest::header::ACCEPT, "application/json")
            .header("Editor-Version", "vscode/1.96.0")
            .header("Editor-Plugin-Version", "copilot-chat/0.23.0")
            .send(),
    )
    .await
    .map_err(|_| ProviderError::new(ErrorKind::Timeout, provider, "the Copilot token exchange did not answer in 30 s"))?
    .map_err(|e| transport_error(provider, &e, Some(gh)))?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        let after = retry_after(resp.headers());
        let body = read_error_body(resp).await;
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(String::from))
            .unwrap_or_else(|| clawline_core::text::truncate_chars(body.trim(), 200).0.to_string());
        let (kind, what) = match status {
            401 => {
                (ErrorKind::Auth, "GitHub refused the token; sign in again with `clawline auth login github-copilot`")
            }
            403 | 404 => (ErrorKind::Auth, "this GitHub account has no Copilot access"),
            429 => (ErrorKind::RateLimited, "GitHub is rate limiting the token exchange"),
            s if s >= 500 => (ErrorKind::Server, "GitHub's token exchange failed"),
            _ => (ErrorKind::BadRequest, "the Copilot token exchange was refused"),
        };
        let mut err =
            ProviderError::new(kind, provider, scrub(&format!("{what} (HTTP {status}: {message})"), Some(gh)));
        err.status = Some(status);
        err.retry_after = after;
        return Err(err);
    }
    let body = crate::http_util::read_body_limited(resp, 64 * 1024)
        .await
        .map_err(|_| ProviderError::new(ErrorKind::Protocol, provider, "unreadable Copilot token response"))?;
    let x: Exchange = serde_json::from_str(&body).map_err(|_| {
        ProviderError::new(ErrorKind::Protocol, provider, "the Copilot token exchange answered without a token")
    })?;
    let api_base = x.endpoints.and_then(|e| e.api).filter(|a| !a.is_empty()).or_else(|| api_base_from_token(&x.token));
    let token = CopilotToken {
        expires_at_ms: x.expires_at.map_or(crate::client::now_ms() + 20 * 60_000, |s| s * 1000),
        token: SecretString::new(x.token),
        api_base: api_base.map(|a| a.trim_end_matches('/').to_string()),
    };
    cache().lock().unwrap_or_else(|p| p.into_inner()).insert(key, token.clone());
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_host_comes_from_the_token() {
        assert_eq!(
            api_base_from_token("tid=1;exp=2;proxy-ep=proxy.individual.githubcopilot.com;sku=x").as_deref(),
            Some("https://api.individual.githubcopilot.com")
        );
        assert_eq!(api_base_from_token("tid=1;proxy-ep=copilot.example").as_deref(), Some("https://copilot.example"));
        assert_eq!(api_base_from_token("tid=1;exp=2"), None);
    }
}
