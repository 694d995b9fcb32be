//! Auth profiles as the runtime uses them: the credential shapes stored by `clawline auth`,
//! parsed from their (decrypted) JSON, and loaded from the store.
//!
//! Shapes follow OpenClaw's credentials: `{"type":"api_key","key"}`, `{"type":"token","token",
//! "expires"?}`, `{"type":"oauth","access","refresh"?,"expires"?}` and, for Bedrock,
//! `{"type":"aws-sdk","accessKeyId","secretAccessKey","sessionToken"?,"region"}`. A profile
//! that does not parse is skipped with a warning naming it, never with its content.
//!
//! This file must not log or return a credential's value.

use clawline_core::config::AwsCredentials;
use clawline_core::secret::SecretString;
use clawline_store::{ALL_AGENTS, AuthProfileRow, MasterKey, Store, StoreError};
use serde::Deserialize;

/// What kind of secret an auth profile holds (OpenClaw's `type`). The order is the order in
/// which a provider's stored profiles are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProfileKind {
    OAuth,
    Token,
    ApiKey,
    AwsSdk,
}

impl ProfileKind {
    pub const ALL: [ProfileKind; 4] =
        [ProfileKind::OAuth, ProfileKind::Token, ProfileKind::ApiKey, ProfileKind::AwsSdk];

    pub fn as_str(self) -> &'static str {
        match self {
            ProfileKind::OAuth => "oauth",
            ProfileKind::Token => "token",
            ProfileKind::ApiKey => "api_key",
            ProfileKind::AwsSdk => "aws-sdk",
        }
    }

    /// Accepts `api_key`/`api-key`, `token`, `oauth`, `aws-sdk`/`aws_sdk`.
    pub fn parse(s: &str) -> Option<ProfileKind> {
        let s = s.replace('_', "-");
        Self::ALL.into_iter().find(|k| k.as_str().replace('_', "-") == s)
    }
}

/// A stored auth profile, decrypted.
#[derive(Debug, Clone)]
pub struct AuthProfile {
    /// `<provider>:<name>`.
    pub id: String,
    pub provider: String,
    pub kind: ProfileKind,
    /// Only this agent uses it (`None`: every agent).
    pub agent: Option<String>,
    /// The bearer secret (API key, token or OAuth access token); `None` for `aws-sdk`.
    pub secret: Option<SecretString>,
    /// For `aws-sdk` profiles.
    pub aws: Option<AwsCredentials>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access: Option<String>,
    #[serde(default)]
    access_key_id: Option<String>,
    #[serde(default)]
    secret_access_key: Option<String>,
    #[serde(default)]
    session_token: Option<String>,
    #[serde(default)]
    region: Option<String>,
}

/// Why a stored profile cannot be used. Never contains the credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("auth profile {profile}: {reason}")]
pub struct ProfileError {
    pub profile: String,
    pub reason: String,
}

impl AuthProfile {
    /// Builds a profile from its row and decrypted credential JSON.
    pub fn from_stored(row: &AuthProfileRow, credential: &SecretString) -> Result<AuthProfile, ProfileError> {
        let fail = |reason: &str| ProfileError { profile: row.profile_id.clone(), reason: reason.to_string() };
        let kind = ProfileKind::parse(&row.kind).ok_or_else(|| fail("unknown kind"))?;
        let stored: Stored =
            serde_json::from_str(credential.expose()).map_err(|_| fail("the stored credential is not valid JSON"))?;
        let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty()).map(SecretString::new);
        let (secret, aws) = match kind {
            ProfileKind::ApiKey => (Some(nonempty(stored.key).ok_or_else(|| fail("no key"))?), None),
            ProfileKind::Token => (Some(nonempty(stored.token).ok_or_else(|| fail("no token"))?), None),
            ProfileKind::OAuth => (Some(nonempty(stored.access).ok_or_else(|| fail("no access token"))?), None),
            ProfileKind::AwsSdk => {
                let aws = AwsCredentials {
                    access_key_id: stored
                        .access_key_id
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| fail("no accessKeyId"))?,
                    secret_access_key: nonempty(stored.secret_access_key).ok_or_else(|| fail("no secretAccessKey"))?,
                    session_token: nonempty(stored.session_token),
                    region: stored.region.filter(|s| !s.is_empty()).ok_or_else(|| fail("no region"))?,
                };
                (None, Some(aws))
            }
        };
        Ok(AuthProfile {
            id: row.profile_id.clone(),
            provider: row.provider.clone(),
            kind,
            agent: (row.agent_id != ALL_AGENTS).then(|| row.agent_id.clone()),
            secret,
            aws,
        })
    }
}

/// Loads every usable stored profile; unusable ones are skipped with a warning.
pub async fn load(store: &Store, key: &MasterKey) -> Result<Vec<AuthProfile>, StoreError> {
    let rows = store.load_auth_profiles(key).await?;
    let mut out = Vec::with_capacity(rows.len());
    for (row, credential) in rows {
        match AuthProfile::from_stored(&row, &credential) {
            Ok(p) => out.push(p),
            Err(e) => tracing::warn!(error = %e, "skipping an auth profile"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, agent: &str) -> AuthProfileRow {
        AuthProfileRow {
            agent_id: agent.into(),
            profile_id: "p:x".into(),
            provider: "p".into(),
            kind: kind.into(),
            label: None,
            expires_at: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn parses_each_kind_and_never_echoes_the_secret() {
        let p =
            AuthProfile::from_stored(&row("api_key", "*"), &SecretString::new(r#"{"type":"api_key","key":"sk-1"}"#))
                .unwrap();
        assert_eq!((p.kind, p.agent.as_deref(), p.secret.unwrap().expose()), (ProfileKind::ApiKey, None, "sk-1"));
        let p =
            AuthProfile::from_stored(&row("oauth", "main"), &SecretString::new(r#"{"access":"at","refresh":"rt"}"#))
                .unwrap();
        assert_eq!((p.kind, p.agent.as_deref()), (ProfileKind::OAuth, Some("main")));
        let p = AuthProfile::from_stored(
            &row("aws-sdk", "*"),
            &SecretString::new(r#"{"accessKeyId":"AKID","secretAccessKey":"s","region":"us-east-1"}"#),
        )
        .unwrap();
        assert_eq!(p.aws.unwrap().region, "us-east-1");
        let e = AuthProfile::from_stored(&row("token", "*"), &SecretString::new(r#"{"key":"sk-wrong-field"}"#))
            .unwrap_err();
        assert_eq!(e.to_string(), "auth profile p:x: no token");
        let e = AuthProfile::from_stored(&row("api_key", "*"), &SecretString::new("sk-not-json")).unwrap_err();
        assert!(!e.to_string().contains("sk-not-json"));
        assert_eq!(ProfileKind::parse("api-key"), Some(ProfileKind::ApiKey));
        assert_eq!(ProfileKind::parse("aws_sdk"), Some(ProfileKind::AwsSdk));
    }
}
