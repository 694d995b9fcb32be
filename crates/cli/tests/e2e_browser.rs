//! The web chat in headless Chromium: type, send, watch the answer stream in, reload and see
//! the history. Needs Debian's `chromium` (`scripts/test` installs it); set
//! CLAWLINE_SKIP_BROWSER=1 to skip on a machine without it.

mod common;

use std::time::Duration;

use clawline_testkit::browser::Browser;
use clawline_testkit::model_server::{Api, ModelServer, Reply};
use common::*;

/// JavaScript that is true when the element is actually displayed (not just lacking `hidden`).
fn shown(id: &str) -> String {
    format!("(getComputedStyle(document.getElementById('{id}')).display !== 'none')")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_in_the_browser() {
    if std::env::var_os("CLAWLINE_SKIP_BROWSER").is_some() {
        eprintln!("skipped: CLAWLINE_SKIP_BROWSER is set");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    write_config(dir.path(), &server, Api::OpenAi, "");
    server.push(Reply::Chunks {
        chunks: ["Hello ", "from ", "the ", "streaming ", "model."].iter().map(|s| s.to_string()).collect(),
        delay: Duration::from_millis(150),
    });
    let gw = spawn(dir.path()).await;
    let browser = Browser::launch().await.unwrap_or_else(|e| panic!("{e}"));

    browser.goto(&format!("{}/#token={TOKEN}", gw.base_url)).await.unwrap();
    browser
        .wait_for(&format!("{} && !{}", shown("composer"), shown("token-form")), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(browser.eval("location.hash").await.unwrap(), "", "the token is removed from the address bar");

    // Record every state of the answer bubble, to see it stream.
    browser
        .eval(
            "window.__snaps = []; new MutationObserver(() => { const b = document.querySelector('.msg.assistant'); \
             if (b) window.__snaps.push(b.textContent); }).observe(document.getElementById('messages'), \
             {subtree: true, childList: true, characterData: true}); true",
        )
        .await
        .unwrap();
    browser.eval("document.getElementById('input').focus()").await.unwrap();
    browser.type_text("Say hello").await.unwrap();
    browser.eval("document.getElementById('send').click()").await.unwrap();

    let done = browser
        .wait_for("(() => { const b = document.querySelector('.msg.assistant[data-state=done]'); return b && b.textContent; })()", Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(done, "Hello from the streaming model.");
    let snaps: Vec<String> = serde_json::from_value(browser.eval("window.__snaps").await.unwrap()).unwrap();
    let partial = snaps.iter().filter(|s| !s.is_empty() && s.len() < "Hello from the streaming model.".len()).count();
    assert!(partial >= 2, "the answer should appear piece by piece, saw {snaps:?}");
    assert_eq!(browser.eval("document.querySelector('.msg.user').textContent").await.unwrap(), "Say hello");

    // Reload: the conversation comes back from the server.
    browser.goto(&format!("{}/", gw.base_url)).await.unwrap();
    let history = browser
        .wait_for(
            "Array.from(document.querySelectorAll('.msg')).map(m => m.textContent).join('|')",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(history, "Say hello|Hello from the streaming model.");

    // A wrong token brings back the token form with the reason.
    browser.eval("sessionStorage.setItem('clawline.token', 'wrong-token-wrong-token'); true").await.unwrap();
    browser.goto(&format!("{}/", gw.base_url)).await.unwrap();
    let reason = browser
        .wait_for(
            &format!(
                "{} && !{} && document.getElementById('token-error').textContent",
                shown("token-form"),
                shown("composer")
            ),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(reason, "The token was not accepted.");
    let exceptions: Vec<String> = browser.console().into_iter().filter(|l| l.starts_with("exception")).collect();
    assert!(exceptions.is_empty(), "{exceptions:?}");
}
