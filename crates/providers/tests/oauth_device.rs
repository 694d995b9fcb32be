//! Device-style sign-ins against the testkit servers: RFC 8628 (Copilot, Qwen, Kimi) against the
//! OAuth twin, and MiniMax's user-code grant against its portal twin — approval, denial, expiry,
//! a forged `state`, and MiniMax's refresh with a revoked token.

use std::sync::Arc;
use std::time::Duration;

use clawline_core::config::schema::OAuthFile;
use clawline_providers::oauth::device_flow::DeviceDialect;
use clawline_providers::oauth::providers::{SignIn, sign_in};
use clawline_providers::oauth::{BodyFormat, DeviceFlow, OAuthError};
use clawline_testkit::minimax_oauth_server::{MiniMaxPortal, USER_CODE_GRANT};
use clawline_testkit::oauth_server::{DEVICE_CODE_GRANT, OAuthConfig, OAuthServer};

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn rfc_flow(server: &OAuthServer, pkce: bool) -> DeviceFlow {
    DeviceFlow {
        provider: "qwen-portal".into(),
        device_url: server.device_authorization_url(),
        token_url: server.token_url(),
        client_id: "device-client".into(),
        scopes: vec!["model.completion".into()],
        body: BodyFormat::Form,
        pkce,
        dialect: DeviceDialect::Rfc8628,
    }
}

/// The MiniMax sign-in as the built-in table describes it, pointed at the twin.
fn minimax_flow(portal: &MiniMaxPortal) -> (DeviceFlow, clawline_providers::oauth::providers::RefreshEndpoint) {
    let overrides = OAuthFile {
        device_url: Some(portal.code_url()),
        token_url: Some(portal.token_url()),
        client_id: Some("mm-client".into()),
        ..Default::default()
    };
    let (s, refresh) = sign_in("minimax", &overrides, None, &|_| None).unwrap();
    let SignIn::Device(flow) = s else { panic!("minimax signs in with a user code") };
    (flow, refresh)
}

#[tokio::test]
async fn rfc8628_approval_with_pkce() {
    let server = OAuthServer::start(OAuthConfig::new("device-client").scopes(&["model.completion"])).await;
    let http = reqwest::Client::new();
    let flow = rfc_flow(&server, true);
    let mut start = flow.start(&http).await.unwrap();
    assert_eq!(Some(start.user_code.clone()), server.last_user_code());
    assert!(start.verification_uri.starts_with(&server.base_url()));
    assert_eq!(start.interval, Duration::from_secs(1), "the server's interval is kept");
    start.interval = Duration::ZERO;
    assert!(server.approve_device(&start.user_code));
    let grant = flow.poll(&http, &start).await.unwrap();
    assert!(server.is_valid_access_token(grant.access_token.expose()));
    assert!(grant.refresh_token.is_some() && grant.expires_at_ms.is_some());

    let reqs = server.requests();
    let device = reqs.iter().find(|r| r.path == "/device/code").unwrap();
    assert_eq!(device.param("code_challenge_method"), Some("S256"));
    let poll = reqs.iter().find(|r| r.path == "/token").unwrap();
    assert_eq!(poll.param("grant_type"), Some(DEVICE_CODE_GRANT));
    assert!(poll.param("code_verifier").is_some_and(|v| v.len() == 43));
    assert_eq!(poll.content_type.as_deref(), Some("application/x-www-form-urlencoded"));
}

#[tokio::test]
async fn rfc8628_denied_and_expired() {
    let server = OAuthServer::start(OAuthConfig::new("device-client").scopes(&["model.completion"])).await;
    let http = reqwest::Client::new();
    let flow = rfc_flow(&server, false);
    let mut start = flow.start(&http).await.unwrap();
    start.interval = Duration::ZERO;
    assert!(server.deny_device(&start.user_code));
    let err = flow.poll(&http, &start).await.unwrap_err();
    assert!(matches!(err, OAuthError::Denied { .. }), "{err}");

    // The code runs out before anyone approves it: the client stops without another request.
    let mut start = flow.start(&http).await.unwrap();
    start.expires_in = Duration::from_millis(50);
    start.interval = Duration::from_millis(100);
    let before = server.requests().len();
    let err = flow.poll(&http, &start).await.unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    assert_eq!(server.requests().len(), before);
}

#[tokio::test]
async fn minimax_user_code_sign_in() {
    let portal = Arc::new(MiniMaxPortal::start("mm-client", Duration::from_millis(200)).await);
    let http = reqwest::Client::new();
    let (flow, _) = minimax_flow(&portal);
    assert_eq!(flow.dialect, DeviceDialect::MiniMaxUserCode);
    let start = flow.start(&http).await.unwrap();
    assert_eq!(Some(start.user_code.clone()), portal.last_user_code());
    assert!(start.verification_uri.contains(&start.user_code));
    assert_eq!(start.interval, Duration::from_millis(200), "the interval is in milliseconds");
    assert!(start.expires_in > Duration::from_secs(590) && start.expires_in <= Duration::from_secs(600));

    // The user approves once the first poll has been answered `pending`.
    let approve = tokio::spawn({
        let (portal, user_code) = (portal.clone(), start.user_code.clone());
        async move {
            while !portal.requests().iter().any(|r| r.path == "/oauth/token") {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(portal.approve(&user_code));
        }
    });
    let grant = flow.poll(&http, &start).await.unwrap();
    approve.await.unwrap();
    assert!(portal.is_valid_access_token(grant.access_token.expose()));
    assert!(grant.refresh_token.is_some());
    let expires = grant.expires_at_ms.unwrap() - now_ms();
    assert!((3_590_000..=3_600_000).contains(&expires), "{expires}");
    assert_eq!(portal.early_polls(), 0, "the client keeps to the interval");

    let reqs = portal.requests();
    let code = &reqs[0];
    assert_eq!(code.path, "/oauth/code");
    assert_eq!(code.param("response_type"), Some("code"));
    assert_eq!(code.param("scope"), Some("group_id profile model.completion"));
    assert_eq!(code.param("code_challenge_method"), Some("S256"));
    assert!(code.param("state").is_some_and(|s| s.len() == 32));
    let polls: Vec<_> = reqs.iter().filter(|r| r.path == "/oauth/token").collect();
    assert!(polls.len() >= 2, "a pending answer, then the tokens");
    for p in polls {
        assert_eq!(p.param("grant_type"), Some(USER_CODE_GRANT));
        assert_eq!(p.param("user_code"), Some(start.user_code.as_str()));
        assert!(p.param("code_verifier").is_some_and(|v| v.len() == 43));
    }
}

#[tokio::test]
async fn minimax_refuses_a_forged_state_and_reports_denial() {
    let portal = MiniMaxPortal::start("mm-client", Duration::from_millis(10)).await;
    let http = reqwest::Client::new();
    let (flow, _) = minimax_flow(&portal);
    portal.forge_state(true);
    let err = flow.start(&http).await.unwrap_err();
    assert!(matches!(err, OAuthError::StateMismatch { .. }), "{err}");
    assert!(!portal.requests().iter().any(|r| r.path == "/oauth/token"), "nothing is polled for a forged answer");

    portal.forge_state(false);
    let start = flow.start(&http).await.unwrap();
    assert!(portal.deny(&start.user_code));
    let err = flow.poll(&http, &start).await.unwrap_err();
    let OAuthError::Denied { reason, .. } = &err else { panic!("{err}") };
    assert!(reason.contains("denied"), "the portal's message is kept: {err}");
}

#[tokio::test]
async fn minimax_code_that_runs_out() {
    let portal = MiniMaxPortal::start("mm-client", Duration::from_millis(10)).await;
    portal.code_ttl(Duration::from_millis(1));
    let http = reqwest::Client::new();
    let (flow, _) = minimax_flow(&portal);
    let start = flow.start(&http).await.unwrap();
    // A deadline already past still gets one poll's worth of time, and then a clear error.
    let err = flow.poll(&http, &start).await.unwrap_err();
    assert!(matches!(err, OAuthError::Denied { .. }), "{err}");
    assert!(err.to_string().contains("expired"), "{err}");
}

#[tokio::test]
async fn minimax_refresh_rotates_and_a_revoked_token_means_sign_in_again() {
    let portal = MiniMaxPortal::start("mm-client", Duration::from_millis(10)).await;
    let http = reqwest::Client::new();
    let (flow, refresh) = minimax_flow(&portal);
    assert_eq!(refresh.token_url, portal.token_url());
    let mut start = flow.start(&http).await.unwrap();
    start.interval = Duration::ZERO;
    assert!(portal.approve(&start.user_code));
    let first = flow.poll(&http, &start).await.unwrap();

    // Epoch-millisecond deadlines are read as such, not as seconds from now.
    portal.expiry_in_epoch_ms(true);
    let second = refresh.refresh(&http, first.refresh_token.as_ref().unwrap()).await.unwrap();
    assert!(portal.is_valid_access_token(second.access_token.expose()));
    assert_ne!(second.refresh_token.as_ref().unwrap().expose(), first.refresh_token.as_ref().unwrap().expose());
    let expires = second.expires_at_ms.unwrap() - now_ms();
    assert!((3_590_000..=3_600_000).contains(&expires), "{expires}");
    let req = portal.requests().into_iter().last().unwrap();
    assert_eq!(req.param("grant_type"), Some("refresh_token"));
    assert_eq!(req.param("client_id"), Some("mm-client"));

    // The rotated-out token, and later a revoked one, are refused with advice to sign in again.
    let err = refresh.refresh(&http, first.refresh_token.as_ref().unwrap()).await.unwrap_err();
    assert!(matches!(err, OAuthError::InvalidGrant { .. }), "{err}");
    portal.revoke_refresh_tokens();
    let err = refresh.refresh(&http, second.refresh_token.as_ref().unwrap()).await.unwrap_err();
    assert!(err.to_string().contains("clawline auth login minimax"), "{err}");
}
