//! OAuth profiles refreshed against the testkit authorization server: before expiry, once
//! however many callers ask at the same time, stored encrypted, and a revoked refresh token
//! reported as "sign in again".

use std::sync::Arc;
use std::time::Duration;

use clawline_agent::oauth_refresh::{Freshness, RefreshError, Refresher, grant_json};
use clawline_core::secret::SecretString;
use clawline_providers::oauth::providers::RefreshEndpoint;
use clawline_providers::oauth::{BodyFormat, Grant, OAuthError};
use clawline_store::{AuthProfileRow, MasterKey, Store, random_hex};
use clawline_testkit::oauth_server::{OAuthConfig, OAuthServer};

fn row(expires_at: i64) -> AuthProfileRow {
    AuthProfileRow {
        agent_id: "*".into(),
        profile_id: "anthropic:me".into(),
        provider: "anthropic".into(),
        kind: "oauth".into(),
        label: None,
        expires_at: Some(expires_at),
        created_at: 0,
        updated_at: 0,
    }
}

async fn setup(server: &OAuthServer) -> (tempfile::TempDir, Store, Arc<MasterKey>, Refresher) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
    let key = Arc::new(MasterKey::from_hex(&random_hex(32)).unwrap());
    let token_url = server.token_url();
    let refresher = Refresher::new(
        store.clone(),
        key.clone(),
        Arc::new(reqwest::Client::new),
        Arc::new(move |provider: &str| {
            Some(RefreshEndpoint {
                provider: provider.to_string(),
                token_url: token_url.clone(),
                client_id: "testkit-client".into(),
                client_secret: None,
                body: BodyFormat::Form,
            })
        }),
    );
    (dir, store, key, refresher)
}

async fn store_grant(store: &Store, key: &MasterKey, access: &str, refresh: &str, expires_at: i64) {
    let grant = Grant {
        access_token: SecretString::new(access),
        refresh_token: Some(SecretString::new(refresh)),
        expires_at_ms: Some(expires_at),
        scope: None,
    };
    store
        .put_auth_profile(row(expires_at), &grant_json("anthropic", &grant, Some("testkit-client")), key)
        .await
        .unwrap();
}

#[tokio::test]
async fn refreshes_once_before_expiry_however_many_ask() {
    let server = OAuthServer::start(OAuthConfig::new("testkit-client").expires_in(3600)).await;
    let (_dir, store, key, refresher) = setup(&server).await;
    let (access, refresh) = server.issue_tokens();
    let soon = clawline_store::now_ms() + 60_000;
    store_grant(&store, &key, &access, &refresh, soon).await;

    // Far from expiry: nothing to do.
    store_grant(&store, &key, &access, &refresh, clawline_store::now_ms() + 3_600_000).await;
    assert_eq!(refresher.ensure_fresh("*", "anthropic:me").await.unwrap(), Freshness::StillGood);
    assert_eq!(server.refresh_calls(), 0);

    // Expiring within the margin, five callers at once: one refresh.
    store_grant(&store, &key, &access, &refresh, soon).await;
    server.set_token_delay(Duration::from_millis(200));
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let r = refresher.clone();
            tokio::spawn(async move { r.ensure_fresh("*", "anthropic:me").await.unwrap() })
        })
        .collect();
    let mut outcomes = Vec::new();
    for c in calls {
        outcomes.push(c.await.unwrap());
    }
    assert_eq!(outcomes.iter().filter(|o| **o == Freshness::Refreshed).count(), 1, "{outcomes:?}");
    assert_eq!(server.refresh_calls(), 1, "single-flight refresh");

    let (row, credential) = store.load_auth_profiles(&key).await.unwrap().remove(0);
    let stored: serde_json::Value = serde_json::from_str(credential.expose()).unwrap();
    let new_access = stored["access"].as_str().unwrap();
    assert_ne!(new_access, access);
    assert!(server.is_valid_access_token(new_access));
    assert_ne!(stored["refresh"].as_str().unwrap(), refresh, "the rotated refresh token is kept");
    assert!(row.expires_at.unwrap() > clawline_store::now_ms() + 3_000_000);

    // The sweep finds nothing due now.
    assert!(refresher.refresh_due().await.is_empty());
}

#[tokio::test]
async fn a_revoked_refresh_token_says_sign_in_again() {
    let server = OAuthServer::start(OAuthConfig::new("testkit-client")).await;
    let (_dir, store, key, refresher) = setup(&server).await;
    let (access, refresh) = server.issue_tokens();
    store_grant(&store, &key, &access, &refresh, clawline_store::now_ms() + 1_000).await;
    server.revoke_refresh_tokens();
    let due = refresher.refresh_due().await;
    assert_eq!(due.len(), 1);
    let err = due.into_iter().next().unwrap().1.unwrap_err();
    assert!(matches!(err, RefreshError::OAuth(OAuthError::InvalidGrant { .. })), "{err}");
    let text = err.to_string();
    assert!(text.contains("refresh token is no longer valid"), "{text}");
    assert!(text.contains("clawline auth login anthropic"), "{text}");
    assert!(!text.contains(&refresh), "no token in messages: {text}");
    // The profile stays, so it can be shown as expired.
    assert_eq!(store.list_auth_profiles().await.unwrap().len(), 1);
}
