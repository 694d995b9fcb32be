//! Keeping OAuth profiles signed in: access tokens are refreshed before they expire, one
//! refresh per profile at a time, and the new tokens are stored (encrypted) before they are used.
//!
//! [`Refresher::ensure_fresh`] takes the profile's lock, re-reads the profile (another caller
//! may just have refreshed it), and refreshes only when the access token expires within
//! [`REFRESH_MARGIN`]. A refresh token the provider no longer accepts is reported as
//! [`OAuthError::InvalidGrant`], whose message tells the user to sign in again; the stored
//! profile is kept so `clawline auth list` and `doctor` can show it as expired.
//!
//! This file must not log tokens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clawline_core::secret::SecretString;
use clawline_providers::oauth::providers::RefreshEndpoint;
use clawline_providers::oauth::{Grant, OAuthError};
use clawline_store::{AuthProfileRow, MasterKey, Store};
use serde_json::{Value, json};

/// Tokens expiring sooner than this are refreshed.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Finds where `provider`'s refresh tokens are traded.
pub type EndpointFor = Arc<dyn Fn(&str) -> Option<RefreshEndpoint> + Send + Sync>;

/// What [`Refresher::ensure_fresh`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    /// Not an OAuth profile, or not close to expiry.
    StillGood,
    /// New tokens were stored.
    Refreshed,
}

/// Why a profile could not be refreshed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    #[error("auth profile {0}: {1}")]
    Profile(String, String),
    #[error(transparent)]
    Store(#[from] clawline_store::StoreError),
}

/// One lock per (agent, profile), so each profile is refreshed by one caller at a time.
type ProfileLocks = Arc<Mutex<HashMap<(String, String), Arc<tokio::sync::Mutex<()>>>>>;

/// Refreshes OAuth profiles. Cheap to clone.
#[derive(Clone)]
pub struct Refresher {
    store: Store,
    key: Arc<MasterKey>,
    /// Built on first use: loading TLS roots costs start-up time most runs never need.
    http: Arc<std::sync::OnceLock<reqwest::Client>>,
    make_http: Arc<dyn Fn() -> reqwest::Client + Send + Sync>,
    endpoint_for: EndpointFor,
    locks: ProfileLocks,
}

/// The stored credential JSON for a grant.
pub fn grant_json(provider: &str, grant: &Grant, client_id: Option<&str>) -> SecretString {
    let mut v = json!({"type": "oauth", "provider": provider, "access": grant.access_token.expose()});
    if let Some(r) = &grant.refresh_token {
        v["refresh"] = json!(r.expose());
    }
    if let Some(e) = grant.expires_at_ms {
        v["expires"] = json!(e);
    }
    if let Some(c) = client_id {
        v["clientId"] = json!(c);
    }
    SecretString::new(v.to_string())
}

impl Refresher {
    /// `make_http` builds the HTTP client the first time a refresh is due.
    pub fn new(
        store: Store,
        key: Arc<MasterKey>,
        make_http: Arc<dyn Fn() -> reqwest::Client + Send + Sync>,
        endpoint_for: EndpointFor,
    ) -> Refresher {
        Refresher {
            store,
            key,
            http: Arc::new(std::sync::OnceLock::new()),
            make_http,
            endpoint_for,
            locks: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(|| (self.make_http)())
    }

    fn lock_for(&self, agent_id: &str, profile_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((agent_id.to_string(), profile_id.to_string())).or_default().clone()
    }

    async fn current(
        &self,
        agent_id: &str,
        profile_id: &str,
    ) -> Result<Option<(AuthProfileRow, SecretString)>, RefreshError> {
        Ok(self
            .store
            .load_auth_profiles(&self.key)
            .await?
            .into_iter()
            .find(|(r, _)| r.agent_id == agent_id && r.profile_id == profile_id))
    }

    /// Refreshes the profile when its access token expires within [`REFRESH_MARGIN`].
    pub async fn ensure_fresh(&self, agent_id: &str, profile_id: &str) -> Result<Freshness, RefreshError> {
        let lock = self.lock_for(agent_id, profile_id);
        let _held = lock.lock().await;
        let Some((row, credential)) = self.current(agent_id, profile_id).await? else {
            return Err(RefreshError::Profile(profile_id.into(), "not stored".into()));
        };
        if row.kind != "oauth" {
            return Ok(Freshness::StillGood);
        }
        let now = clawline_store::now_ms();
        if row.expires_at.is_none_or(|e| e > now + REFRESH_MARGIN.as_millis() as i64) {
            return Ok(Freshness::StillGood);
        }
        let stored: Value = serde_json::from_str(credential.expose())
            .map_err(|_| RefreshError::Profile(profile_id.into(), "the stored credential is not valid JSON".into()))?;
        let Some(refresh) = stored["refresh"].as_str().filter(|r| !r.is_empty()) else {
            return Err(RefreshError::Profile(
                profile_id.into(),
                format!(
                    "it expires and has no refresh token; sign in again with `clawline auth login {}`",
                    row.provider
                ),
            ));
        };
        let endpoint = (self.endpoint_for)(&row.provider).ok_or_else(|| {
            RefreshError::Profile(
                profile_id.into(),
                format!("clawline does not know how to refresh `{}` tokens", row.provider),
            )
        })?;
        let grant = endpoint.refresh(self.http(), &SecretString::new(refresh.to_string())).await?;
        let client_id = stored["clientId"].as_str().map(String::from).unwrap_or(endpoint.client_id.clone());
        let meta = AuthProfileRow { expires_at: grant.expires_at_ms, ..row.clone() };
        self.store.put_auth_profile(meta, &grant_json(&row.provider, &grant, Some(&client_id)), &self.key).await?;
        tracing::info!(profile = %profile_id, "refreshed the OAuth access token");
        Ok(Freshness::Refreshed)
    }

    /// Refreshes every OAuth profile that is due; returns what happened to each one it tried.
    pub async fn refresh_due(&self) -> Vec<(String, Result<Freshness, RefreshError>)> {
        let Ok(rows) = self.store.list_auth_profiles().await else { return Vec::new() };
        let due_before = clawline_store::now_ms() + REFRESH_MARGIN.as_millis() as i64;
        let mut out = Vec::new();
        for row in rows.into_iter().filter(|r| r.kind == "oauth" && r.expires_at.is_some_and(|e| e <= due_before)) {
            let result = self.ensure_fresh(&row.agent_id, &row.profile_id).await;
            if let Err(e) = &result {
                tracing::warn!(profile = %row.profile_id, error = %e, "could not refresh an OAuth profile");
            }
            out.push((row.profile_id, result));
        }
        out
    }
}
