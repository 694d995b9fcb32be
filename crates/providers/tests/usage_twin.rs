//! Subscription usage (`clawline_providers::usage`) against the testkit usage twin, over real
//! HTTP on loopback: each of the six endpoints with its auth header and parsed windows, then
//! every classified failure and the credential never showing up in an error.

use clawline_core::secret::SecretString;
use clawline_providers::usage::{self, UsageEndpoint, UsageKind, UsageReport, UsageWindow};
use clawline_providers::{ErrorKind, ProviderError};
use clawline_testkit::usage_server::{Fault, UsageApi, UsageServer};
use serde_json::json;

const TOKEN: &str = "oat01-usage-twin-secret-0123456789";

const KINDS: [(UsageKind, UsageApi); 6] = [
    (UsageKind::ClaudeOAuth, UsageApi::Claude),
    (UsageKind::Codex, UsageApi::Codex),
    (UsageKind::GeminiCli, UsageApi::Gemini),
    (UsageKind::Copilot, UsageApi::Copilot),
    (UsageKind::MiniMax, UsageApi::MiniMax),
    (UsageKind::Zai, UsageApi::Zai),
];

fn endpoint(server: &UsageServer, kind: UsageKind) -> UsageEndpoint {
    UsageEndpoint::at(kind, &server.base_url())
}

async fn fetch_with(
    server: &UsageServer,
    kind: UsageKind,
    token: &str,
    account: Option<&str>,
) -> Result<UsageReport, ProviderError> {
    let http = reqwest::Client::new();
    usage::fetch(&http, "p", &endpoint(server, kind), &SecretString::new(token), account).await
}

async fn fetch_ok(server: &UsageServer, kind: UsageKind, account: Option<&str>) -> UsageReport {
    fetch_with(server, kind, TOKEN, account).await.unwrap_or_else(|e| panic!("{kind:?}: {e:?}"))
}

fn window<'a>(report: &'a UsageReport, label: &str) -> &'a UsageWindow {
    report.windows.iter().find(|w| w.label == label).unwrap_or_else(|| panic!("no {label:?} in {report:?}"))
}

fn labels(report: &UsageReport) -> Vec<&str> {
    report.windows.iter().map(|w| w.label.as_str()).collect()
}

fn assert_no_token(e: &ProviderError) {
    for text in [e.message.clone(), e.to_string(), format!("{e:?}")] {
        assert!(!text.contains(TOKEN), "credential leaked: {text}");
    }
}

#[tokio::test]
async fn claude_oauth_usage_windows_and_headers() {
    let server = UsageServer::start(TOKEN).await;
    let report = fetch_ok(&server, UsageKind::ClaudeOAuth, Some("ignored")).await;
    assert_eq!(report.provider, "p");
    assert_eq!(labels(&report), ["5h", "7d", "7d Opus", "7d Sonnet"]);
    let five = window(&report, "5h");
    assert_eq!((five.used_percent, five.remaining_percent()), (Some(61.0), Some(39.0)));
    assert_eq!(five.resets_at_ms, Some(1_769_587_199_571));
    assert_eq!(window(&report, "7d").used_percent, Some(22.0));
    assert_eq!(window(&report, "7d").resets_at_ms, Some(1_770_112_799_571));
    assert_eq!(window(&report, "7d Opus").used_percent, Some(4.0));
    assert_eq!((report.plan, report.credits), (None, None));

    let req = &server.requests()[0];
    assert_eq!((req.method.as_str(), req.path.as_str()), ("GET", "/api/oauth/usage"));
    assert_eq!(req.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
    assert_eq!(req.header("anthropic-beta"), Some("oauth-2025-04-20"));
    assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(req.header("accept"), Some("application/json"));
}

#[tokio::test]
async fn codex_windows_plan_credits_and_account_header() {
    let server = UsageServer::start(TOKEN).await;
    let report = fetch_ok(&server, UsageKind::Codex, Some("acct-1234")).await;
    assert_eq!(report.plan.as_deref(), Some("pro"));
    assert_eq!(report.credits, Some(37.5));
    assert_eq!(labels(&report), ["5h", "7d"]);
    assert_eq!(window(&report, "5h").used_percent, Some(3.0));
    assert_eq!(window(&report, "5h").resets_at_ms, Some(1_767_385_852_000));
    assert_eq!(window(&report, "7d").used_percent, Some(9.0));
    assert_eq!(window(&report, "7d").resets_at_ms, Some(1_767_859_444_000));

    fetch_ok(&server, UsageKind::Codex, None).await;
    let reqs = server.requests();
    assert_eq!(reqs[0].path, "/backend-api/wham/usage");
    assert_eq!(reqs[0].header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
    assert_eq!(reqs[0].header("chatgpt-account-id"), Some("acct-1234"));
    assert_eq!(reqs[1].header("chatgpt-account-id"), None);
}

#[tokio::test]
async fn gemini_buckets_per_model_and_project_body() {
    let server = UsageServer::start(TOKEN).await;
    let report = fetch_ok(&server, UsageKind::GeminiCli, Some("my-project-42")).await;
    assert_eq!(labels(&report), ["gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite"]);
    assert_eq!(window(&report, "gemini-2.5-pro").used_percent, Some(25.0));
    assert_eq!(window(&report, "gemini-2.5-flash").used_percent, Some(10.0));
    assert_eq!(window(&report, "gemini-2.5-flash-lite").remaining_percent(), Some(100.0));
    assert_eq!(window(&report, "gemini-2.5-pro").resets_at_ms, Some(1_761_148_875_000));

    fetch_ok(&server, UsageKind::GeminiCli, None).await;
    let reqs = server.requests();
    assert_eq!((reqs[0].method.as_str(), reqs[0].path.as_str()), ("POST", "/v1internal:retrieveUserQuota"));
    assert_eq!(reqs[0].header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
    assert_eq!(reqs[0].header("content-type"), Some("application/json"));
    assert_eq!(reqs[0].json(), json!({"project": "my-project-42"}));
    assert_eq!(reqs[1].json(), json!({}));
}

#[tokio::test]
async fn copilot_quota_snapshots_plan_and_token_header() {
    let server = UsageServer::start(TOKEN).await;
    let report = fetch_ok(&server, UsageKind::Copilot, None).await;
    assert_eq!(report.plan.as_deref(), Some("individual_pro"));
    // Chat and completions are unlimited on this plan: nothing to run out of.
    assert_eq!(labels(&report), ["premium requests"]);
    let premium = window(&report, "premium requests");
    assert_eq!((premium.used_percent, premium.used, premium.limit), (Some(17.5), Some(263.0), Some(1500.0)));
    assert_eq!(premium.resets_at_ms, Some(1_761_955_200_000));

    let req = &server.requests()[0];
    assert_eq!(req.path, "/copilot_internal/user");
    assert_eq!(req.header("authorization"), Some(format!("token {TOKEN}").as_str()));
    assert_eq!(req.header("x-github-api-version"), Some("2025-04-01"));
    assert!(req.header("user-agent").is_some_and(|ua| !ua.is_empty()));
}

#[tokio::test]
async fn minimax_remaining_counts_and_bearer() {
    let server = UsageServer::start(TOKEN).await;
    let report = fetch_ok(&server, UsageKind::MiniMax, None).await;
    assert_eq!(labels(&report), ["5h", "7d"]);
    // `current_interval_usage_count` is what is left: 1245 of 1500 left is 255 used.
    let five = window(&report, "5h");
    assert_eq!((five.used, five.limit, five.used_percent), (Some(255.0), Some(1500.0), Some(17.0)));
    assert_eq!(five.resets_at_ms, Some(1_767_018_000_000));
    let week = window(&report, "7d");
    assert_eq!((week.used, week.limit, week.used_percent), (Some(470.0), Some(15000.0), Some(3.13)));
    assert_eq!(week.resets_at_ms, Some(1_767_571_200_000));

    let req = &server.requests()[0];
    assert_eq!(req.path, "/v1/api/openplatform/coding_plan/remains");
    assert_eq!(req.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
}

#[tokio::test]
async fn zai_limits_plan_and_bearer() {
    let server = UsageServer::start(TOKEN).await;
    let report = fetch_ok(&server, UsageKind::Zai, None).await;
    assert_eq!(report.plan.as_deref(), Some("pro"));
    assert_eq!(labels(&report), ["5h", "tools 1mo"]);
    assert_eq!(window(&report, "5h").used_percent, Some(12.0));
    assert_eq!(window(&report, "5h").resets_at_ms, Some(1_771_073_738_808));
    let tools = window(&report, "tools 1mo");
    assert_eq!((tools.used, tools.limit, tools.used_percent), (Some(280.0), Some(1000.0), Some(28.0)));

    server.set_body(UsageApi::Zai, json!({"code": 200, "success": true, "data": {"planName": "GLM Coding Max"}}));
    let planned = fetch_ok(&server, UsageKind::Zai, None).await;
    assert_eq!((planned.plan.as_deref(), planned.windows.len()), (Some("GLM Coding Max"), 0));

    let req = &server.requests()[0];
    assert_eq!(req.path, "/api/monitor/usage/quota/limit");
    assert_eq!(req.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
}

#[tokio::test]
async fn a_wrong_token_is_auth_on_every_endpoint() {
    let server = UsageServer::start(TOKEN).await;
    // MiniMax and Z.AI refuse a bad key inside an HTTP 200 body; the others with a 401.
    for (kind, _) in KINDS {
        let e = fetch_with(&server, kind, "not-the-token", None).await.expect_err("wrong token");
        assert_eq!(e.kind, ErrorKind::Auth, "{kind:?}: {e:?}");
        assert!(e.message.contains("sign in again"), "{kind:?}: {}", e.message);
    }
}

#[tokio::test]
async fn unauthorized_is_auth_with_sign_in_advice() {
    let server = UsageServer::start(TOKEN).await;
    server.set_fault(Some(Fault::Unauthorized));
    for (kind, _) in KINDS {
        let e = fetch_with(&server, kind, TOKEN, None).await.expect_err("401");
        assert_eq!((e.kind, e.status), (ErrorKind::Auth, Some(401)), "{kind:?}: {e:?}");
        assert!(e.message.contains("sign in again"), "{kind:?}: {}", e.message);
        assert_no_token(&e);
    }
    let gh = fetch_with(&server, UsageKind::Copilot, TOKEN, None).await.unwrap_err();
    assert!(gh.message.contains("Bad credentials"), "{}", gh.message);
}

#[tokio::test]
async fn anthropic_403_names_the_missing_scope() {
    let server = UsageServer::start(TOKEN).await;
    server.set_fault(Some(Fault::Forbidden));
    let e = fetch_with(&server, UsageKind::ClaudeOAuth, TOKEN, None).await.unwrap_err();
    assert_eq!((e.kind, e.status), (ErrorKind::Auth, Some(403)));
    assert!(e.message.contains("scope requirement user:profile"), "{}", e.message);
    assert!(e.message.contains("sign in again"), "{}", e.message);
    let other = fetch_with(&server, UsageKind::Copilot, TOKEN, None).await.unwrap_err();
    assert_eq!((other.kind, other.status), (ErrorKind::Auth, Some(403)));
}

#[tokio::test]
async fn rate_limited_carries_retry_after() {
    let server = UsageServer::start(TOKEN).await;
    server.set_fault(Some(Fault::RateLimited { retry_after: "42".into() }));
    for (kind, _) in KINDS {
        let e = fetch_with(&server, kind, TOKEN, None).await.expect_err("429");
        assert_eq!((e.kind, e.status), (ErrorKind::RateLimited, Some(429)), "{kind:?}");
        assert_eq!(e.retry_after, Some(std::time::Duration::from_secs(42)), "{kind:?}");
    }
}

#[tokio::test]
async fn server_error_is_server() {
    let server = UsageServer::start(TOKEN).await;
    server.set_fault(Some(Fault::ServerError));
    for (kind, _) in KINDS {
        let e = fetch_with(&server, kind, TOKEN, None).await.expect_err("500");
        assert_eq!((e.kind, e.status), (ErrorKind::Server, Some(500)), "{kind:?}");
        assert!(e.kind.is_transient());
    }
}

#[tokio::test]
async fn malformed_bodies_are_protocol() {
    let server = UsageServer::start(TOKEN).await;
    server.set_fault(Some(Fault::Garbage));
    for (kind, _) in KINDS {
        let e = fetch_with(&server, kind, TOKEN, None).await.expect_err("html");
        assert_eq!(e.kind, ErrorKind::Protocol, "{kind:?}: {e:?}");
        assert!(e.message.contains("not answer with JSON"), "{}", e.message);
    }
    server.set_fault(Some(Fault::Oversized));
    let big = fetch_with(&server, UsageKind::Codex, TOKEN, None).await.unwrap_err();
    assert_eq!(big.kind, ErrorKind::Protocol);
    assert!(big.message.contains("64 KiB"), "{}", big.message);

    server.set_fault(None);
    server.set_body(UsageApi::Claude, json!({"five_hour": "61%"}));
    server.set_body(UsageApi::Codex, json!({"rate_limit": {"primary_window": [3, 18000]}}));
    server.set_body(UsageApi::Gemini, json!({"buckets": "none"}));
    server.set_body(UsageApi::Copilot, json!({"quota_snapshots": {"premium_interactions": {"percent_remaining": {}}}}));
    server.set_body(UsageApi::MiniMax, json!({"model_remains": [{"current_interval_total_count": true}]}));
    server.set_body(UsageApi::Zai, json!({"code": 200, "success": true, "data": {"limits": "5h"}}));
    for (kind, _) in KINDS {
        let e = fetch_with(&server, kind, TOKEN, None).await.expect_err("wrong shape");
        assert_eq!(e.kind, ErrorKind::Protocol, "{kind:?}: {e:?}");
        assert!(e.message.contains("unexpected shape"), "{kind:?}: {}", e.message);
    }
}

#[tokio::test]
async fn partial_bodies_are_tolerated() {
    let server = UsageServer::start(TOKEN).await;
    for (_, api) in KINDS {
        server.set_body(api, json!({}));
    }
    for (kind, _) in KINDS {
        let report = fetch_ok(&server, kind, None).await;
        assert!(report.windows.is_empty() && report.plan.is_none() && report.credits.is_none(), "{kind:?}");
    }
    server.set_body(
        UsageApi::Codex,
        json!({"plan_type": "plus", "rate_limit": {"primary_window": {"used_percent": 50}}}),
    );
    let codex = fetch_ok(&server, UsageKind::Codex, None).await;
    assert_eq!(codex.plan.as_deref(), Some("plus"));
    assert_eq!(labels(&codex), ["primary"]);
    assert_eq!((codex.windows[0].used_percent, codex.windows[0].resets_at_ms), (Some(50.0), None));
}

#[tokio::test]
async fn errors_reported_in_the_body_are_classified() {
    let server = UsageServer::start(TOKEN).await;
    server.set_body(
        UsageApi::MiniMax,
        json!({"base_resp": {"status_code": 1008, "status_msg": "insufficient balance"}, "model_remains": []}),
    );
    let e = fetch_with(&server, UsageKind::MiniMax, TOKEN, None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Billing);
    assert!(e.message.contains("insufficient balance"), "{}", e.message);
    server.set_body(UsageApi::Zai, json!({"code": 1305, "msg": "too many requests", "success": false}));
    let e = fetch_with(&server, UsageKind::Zai, TOKEN, None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::RateLimited);
}

#[tokio::test]
async fn the_credential_never_leaks() {
    let server = UsageServer::start(TOKEN).await;
    // A server that echoes the key it was given, in an error and in a success body.
    let echo = json!({"error": {"message": format!("Incorrect token provided: {TOKEN}")}, "detail": TOKEN});
    server.set_fault(Some(Fault::Raw { status: 401, body: echo.to_string() }));
    for (kind, _) in KINDS {
        let e = fetch_with(&server, kind, TOKEN, None).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Auth);
        assert!(e.message.contains("[redacted]"), "{}", e.message);
        assert_no_token(&e);
    }
    server.set_fault(Some(Fault::Raw { status: 200, body: format!("<p>token {TOKEN} is not welcome</p>") }));
    for (kind, _) in KINDS {
        assert_no_token(&fetch_with(&server, kind, TOKEN, None).await.unwrap_err());
    }
    server.set_fault(None);
    server.set_body(
        UsageApi::MiniMax,
        json!({"base_resp": {"status_code": 2049, "status_msg": format!("bad key {TOKEN}")}}),
    );
    assert_no_token(&fetch_with(&server, UsageKind::MiniMax, TOKEN, None).await.unwrap_err());

    // Nothing listens here: a transport error must not carry the key either.
    let dead = UsageEndpoint { kind: UsageKind::Codex, url: "http://127.0.0.1:9/backend-api/wham/usage".into() };
    let e = usage::fetch(&reqwest::Client::new(), "p", &dead, &SecretString::new(TOKEN), None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Network);
    assert_no_token(&e);

    // A credential that cannot go in a header is refused before anything is sent.
    let bad = format!("{TOKEN}\nX-Injected: 1");
    let e = fetch_with(&server, UsageKind::Zai, &bad, None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config);
    assert_no_token(&e);
    let e = fetch_with(&server, UsageKind::Zai, "  ", None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config);
}

#[tokio::test]
async fn default_endpoints_have_the_twin_paths() {
    for (provider, api) in [
        ("anthropic", UsageApi::Claude),
        ("openai-codex", UsageApi::Codex),
        ("google", UsageApi::Gemini),
        ("github-copilot", UsageApi::Copilot),
        ("minimax", UsageApi::MiniMax),
        ("zai", UsageApi::Zai),
    ] {
        let e = usage::default_endpoint(provider).expect(provider);
        assert!(e.url.starts_with("https://") && e.url.ends_with(api.path()), "{provider}: {}", e.url);
        assert_eq!(e.kind.path(), api.path());
    }
    assert!(usage::default_endpoint("openrouter").is_none());
}
