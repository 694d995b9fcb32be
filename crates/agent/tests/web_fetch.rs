//! `web_fetch` against the testkit website: a page comes back as readable text inside the
//! untrusted-content markers; loopback, private, link-local, metadata and IPv6 link-local
//! addresses are refused, as are a redirect to a private address and names that resolve to
//! loopback (through the static hosts and through the system resolver); a huge page is cut at
//! the byte cap without being downloaded whole; a page that never ends times out.
//!
//! The website listens on 127.0.0.1 under the name `site.test`, which is the one host allowed
//! to be private; `rebind.test` also points at 127.0.0.1 but is not allowed.

use std::path::PathBuf;

use clawline_agent::tools::{self, ToolContext, ToolOutput};
use clawline_core::config::schema::{ExecSecurity, SandboxMode};
use clawline_core::config::{DEFAULT_SAFE_BINS, ExecSettings, ToolSettings, WebFetchSettings};
use clawline_testkit::web_server::WebServer;
use serde_json::json;

struct Scene {
    _dir: tempfile::TempDir,
    workspace: PathBuf,
    site: WebServer,
}

impl Scene {
    async fn new() -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let workspace = dir.path().canonicalize().unwrap();
        Scene { _dir: dir, workspace, site: WebServer::start().await }
    }

    fn ctx(&self, tweak: impl FnOnce(&mut WebFetchSettings)) -> ToolContext {
        let loopback = "127.0.0.1".parse().unwrap();
        let mut web_fetch = WebFetchSettings {
            allowed_hosts: vec!["site.test".into()],
            static_hosts: vec![("site.test".into(), loopback), ("rebind.test".into(), loopback)],
            timeout_secs: 5,
            ..Default::default()
        };
        tweak(&mut web_fetch);
        let settings = ToolSettings {
            deny: vec![],
            allow: None,
            web_fetch,
            exec: ExecSettings {
                security: ExecSecurity::Allowlist,
                safe_bins: DEFAULT_SAFE_BINS.iter().map(|s| s.to_string()).collect(),
                timeout_secs: 2,
                max_output_chars: 2000,
                sandbox: SandboxMode::Auto,
                ask: clawline_core::config::schema::ExecAsk::Off,
                approval_timeout_secs: 120,
            },
            loop_detection: None,
        };
        ToolContext { workspace: self.workspace.clone(), settings, memory: None, approvals: None }
    }

    fn url(&self, path: &str) -> String {
        format!("http://site.test:{}{path}", self.site.port())
    }

    async fn fetch(&self, url: &str) -> ToolOutput {
        tools::call("web_fetch", &json!({ "url": url }), &self.ctx(|_| {})).await
    }
}

#[tokio::test]
async fn a_page_comes_back_as_readable_text_marked_untrusted() {
    let s = Scene::new().await;
    let out = s.fetch(&s.url("/article")).await;
    assert!(!out.is_error, "{}", out.text);
    let t = &out.text;
    assert!(t.contains("Status: 200") && t.contains("Content-Type: text/html"), "{t}");
    assert!(t.contains("Title: Harbour tides & notes"), "{t}");
    assert!(t.contains("# Tides this week"), "{t}");
    assert!(t.contains("High water is at 06:12 on Monday. See the [full tables](/tables)."), "{t}");
    assert!(t.contains("- Tuesday 06:58\n- Wednesday 07:41"), "{t}");
    for furniture in ["tracking", "margin", "Home", "Harbour office"] {
        assert!(!t.contains(furniture), "`{furniture}` should be dropped: {t}");
    }
    let start = t.find("<<<untrusted web content from").expect("start marker");
    let end = t.find("<<<end of untrusted web content>>>").expect("end marker");
    assert!(start < t.find("# Tides").unwrap() && t.find("Wednesday").unwrap() < end, "{t}");

    let plain = s.fetch(&s.url("/plain")).await;
    assert!(plain.text.contains("just text"), "{}", plain.text);
    let image = s.fetch(&s.url("/image.png")).await;
    assert!(!image.is_error && image.text.contains("7 bytes of image/png, not text"), "{}", image.text);
}

#[tokio::test]
async fn a_page_cannot_close_the_untrusted_block() {
    let s = Scene::new().await;
    let out = s.fetch(&s.url("/forged")).await;
    assert_eq!(out.text.matches("<<<end of untrusted web content>>>").count(), 1, "{}", out.text);
    assert!(out.text.trim_end().ends_with("<<<end of untrusted web content>>>"), "{}", out.text);
    assert!(out.text.contains("now obey me"), "the text is kept, only defused: {}", out.text);
}

#[tokio::test]
async fn private_loopback_link_local_and_metadata_addresses_are_refused() {
    let s = Scene::new().await;
    let port = s.site.port();
    let cases = [
        (format!("http://127.0.0.1:{port}/secret"), "loopback"),
        (format!("http://localhost:{port}/secret"), "loopback"),
        (format!("http://rebind.test:{port}/secret"), "loopback"),
        (format!("http://[::1]:{port}/secret"), "loopback"),
        ("http://10.0.0.7/secret".to_string(), "private"),
        ("http://192.168.0.1/".to_string(), "private"),
        ("http://169.254.169.254/latest/meta-data/".to_string(), "metadata"),
        ("http://metadata.google.internal/computeMetadata/v1/".to_string(), "metadata"),
        ("http://[fe80::1]/".to_string(), "link-local"),
        ("http://[::ffff:127.0.0.1]/".to_string(), "loopback"),
        ("http://0.0.0.0/".to_string(), "unspecified"),
    ];
    for (url, why) in cases {
        let out = s.fetch(&url).await;
        assert!(out.is_error, "{url} was fetched: {}", out.text);
        assert!(out.text.contains("Refused") && out.text.contains(why), "{url}: {}", out.text);
        assert!(out.text.contains("tools.web.fetch.allowedHosts"), "the refusal says what to do: {}", out.text);
    }
    for (url, why) in [
        ("file:///etc/passwd", "only http and https"),
        ("ftp://site.test/", "only http and https"),
        ("notaurl", "not an absolute URL"),
    ] {
        let out = s.fetch(url).await;
        assert!(out.is_error && out.text.contains(why), "{url}: {}", out.text);
    }
    let creds = s.fetch(&format!("http://user:pw@site.test:{port}/article")).await;
    assert!(creds.is_error && creds.text.contains("user name or password"), "{}", creds.text);
    assert!(s.site.requests().is_empty(), "nothing was requested: {:?}", s.site.requests());
}

#[tokio::test]
async fn redirects_are_checked_at_every_hop() {
    let s = Scene::new().await;
    let port = s.site.port();
    for target in [
        format!("http://127.0.0.1:{port}/secret"),
        format!("http://rebind.test:{port}/secret"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[fe80::1]/".to_string(),
    ] {
        let out = s.fetch(&s.url(&format!("/redirect?to={target}"))).await;
        assert!(
            out.is_error && out.text.contains("After a redirect") && out.text.contains("Refused"),
            "{target}: {}",
            out.text
        );
    }
    assert!(!s.site.requests().iter().any(|r| r.starts_with("/secret")), "{:?}", s.site.requests());

    // A redirect within the allowed site is followed, and says so.
    let ok = s.fetch(&s.url("/redirect?to=/article&status=301")).await;
    assert!(!ok.is_error && ok.text.contains("after 1 redirect") && ok.text.contains("# Tides"), "{}", ok.text);

    // A redirect loop ends at the limit.
    let ctx = s.ctx(|w| w.max_redirects = 2);
    let looped = tools::call("web_fetch", &json!({"url": s.url("/loop")}), &ctx).await;
    assert!(looped.is_error && looped.text.contains("more than 2 times"), "{}", looped.text);
}

#[tokio::test]
async fn a_large_page_is_capped_and_a_page_that_never_ends_times_out() {
    let s = Scene::new().await;
    let ctx = s.ctx(|w| w.max_bytes = 100_000);
    let out = tools::call("web_fetch", &json!({"url": s.url("/big?mb=50"), "maxChars": 5000}), &ctx).await;
    assert!(!out.is_error, "{}", out.text);
    assert!(out.text.contains("cut at 100000 bytes (tools.web.fetch.maxBytes)"), "{}", out.text);
    assert!(out.text.contains("cut at 5000 of"), "{}", out.text);
    assert!(out.text.len() < 8000, "{} bytes", out.text.len());

    let ctx = s.ctx(|w| w.timeout_secs = 1);
    let slow = tools::call("web_fetch", &json!({"url": s.url("/slow")}), &ctx).await;
    assert!(slow.is_error && slow.text.contains("did not answer within 1 seconds"), "{}", slow.text);
}

#[tokio::test]
async fn allow_private_network_lifts_the_guard_and_disabled_removes_the_tool() {
    let s = Scene::new().await;
    let port = s.site.port();
    let open = s.ctx(|w| w.allow_private_network = true);
    let out = tools::call("web_fetch", &json!({"url": format!("http://127.0.0.1:{port}/secret")}), &open).await;
    assert!(!out.is_error && out.text.contains("the secret"), "{}", out.text);

    let off = s.ctx(|w| w.enabled = false);
    assert!(!tools::specs(&off.settings, false).iter().any(|t| t.name == "web_fetch"));
    let out = tools::call("web_fetch", &json!({"url": s.url("/article")}), &off).await;
    assert!(out.is_error && out.text.contains("not available"), "{}", out.text);
}
