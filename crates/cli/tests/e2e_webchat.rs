//! End to end: the web chat as a channel of the real binary. A posted message is stored before
//! it is acknowledged and answered once (a repeated post is a no-op), the answer streams to
//! the page as a draft that becomes the reply, bad posts get precise errors, and a kill -9 in
//! the middle of an answer is followed by exactly one answer after the restart.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clawline_testkit::model_server::{Api, ModelServer, Reply};
use clawline_testkit::sse_client;
use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};

async fn post(base: &str, id: &str, text: &str) -> (u16, Value) {
    let resp = http()
        .post(format!("{base}/api/webchat/messages"))
        .bearer_auth(TOKEN)
        .json(&json!({"id": id, "text": text}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Reads the page's event stream in the background; the events seen so far.
async fn listen(base: &str) -> Arc<Mutex<String>> {
    let resp = http().get(format!("{base}/api/webchat/events")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let body = Arc::new(Mutex::new(String::new()));
    let sink = body.clone();
    tokio::spawn(async move {
        let mut stream = resp.bytes_stream();
        while let Some(Ok(chunk)) = stream.next().await {
            sink.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk));
        }
    });
    body
}

fn events(body: &Mutex<String>) -> Vec<(String, Value)> {
    sse_client::parse(&body.lock().unwrap())
        .into_iter()
        .filter_map(|e| Some((e.event?, serde_json::from_str(&e.data).ok()?)))
        .collect()
}

async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn assistant_texts(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .filter(|r| r["type"] == "message" && r["message"]["role"] == "assistant")
        .map(|r| {
            let c = &r["message"]["content"];
            match c.as_str() {
                Some(s) => s.to_string(),
                None => c.as_array().into_iter().flatten().filter_map(|b| b["text"].as_str()).collect(),
            }
        })
        .collect()
}

#[tokio::test]
async fn a_posted_message_is_kept_answered_once_and_streamed_as_a_draft() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    write_config(dir.path(), &server, Api::OpenAi, "");
    server.push(Reply::Chunks {
        chunks: ["Hello ", "from ", "the ", "web ", "chat."].iter().map(|s| s.to_string()).collect(),
        delay: Duration::from_millis(150),
    });
    let gw = spawn(dir.path()).await;
    let page = listen(&gw.base_url).await;
    let ready = until("ready", || events(&page).into_iter().find(|(n, _)| n == "ready")).await;
    assert_eq!(ready.1, json!({"sessionKey": "agent:main:main", "agentId": "main"}));

    let (status, body) = post(&gw.base_url, "m-1", "Say hello").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["duplicate"], false);
    assert_eq!(body["sessionKey"], "agent:main:main");

    let final_text = until("the finished answer", || {
        events(&page).into_iter().find_map(|(n, ev)| {
            ((n == "edit" || n == "message") && ev["draft"] == false).then(|| ev["text"].as_str().unwrap().to_string())
        })
    })
    .await;
    assert_eq!(final_text, "Hello from the web chat.");
    let seen = events(&page);
    let drafts: Vec<&str> =
        seen.iter().filter(|(_, ev)| ev["draft"] == true).map(|(_, ev)| ev["text"].as_str().unwrap()).collect();
    assert!(drafts.len() >= 2, "the answer grew in place: {seen:?}");
    assert!(drafts.iter().all(|d| "Hello from the web chat.".starts_with(d) && !d.ends_with('…')), "{drafts:?}");
    let ids: std::collections::HashSet<&str> =
        seen.iter().filter(|(n, _)| n == "message" || n == "edit").map(|(_, ev)| ev["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1, "one bubble, edited: {seen:?}");
    assert!(seen.iter().any(|(n, _)| n == "typing"));

    // The same post again (a retry after a network error) is recognized and not answered again.
    let (status, body) = post(&gw.base_url, "m-1", "Say hello").await;
    assert_eq!((status, body["duplicate"].clone()), (202, json!(true)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.requests().len(), 1, "one model call for one message");
    let recs = records(&gw.base_url, "main").await;
    assert_eq!(assistant_texts(&recs), ["Hello from the web chat."]);

    // Bad posts get precise errors and change nothing.
    let (status, body) = post(&gw.base_url, "m-2", "   ").await;
    assert_eq!((status, body["error"]["message"].as_str()), (400, Some("the message is empty")));
    let (status, body) = post(&gw.base_url, "no spaces allowed", "hi").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("message id"), "{body}");
    let resp = http().post(format!("{}/api/webchat/messages", gw.base_url)).json(&json!({"id": "x", "text": "hi"}));
    assert_eq!(resp.send().await.unwrap().status(), 401, "the token is needed");
    let resp = http().get(format!("{}/api/webchat/events", gw.base_url)).send().await.unwrap();
    assert_eq!(resp.status(), 401);

    // Status shows the page's channel like any other.
    let status: Value = http()
        .get(format!("{}/api/channels", gw.base_url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let wc = &status["channelAccounts"]["webchat"][0];
    assert_eq!(wc["connected"], true, "{status}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn kill_9_mid_answer_then_one_answer_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    write_config(dir.path(), &server, Api::OpenAi, "");
    server.push(Reply::slow("word ", 200, Duration::from_millis(50)));
    server.push(Reply::text("Answered after the restart."));
    let mut gw = spawn(dir.path()).await;

    let (status, _) = post(&gw.base_url, "k-1", "Write something long").await;
    assert_eq!(status, 202, "acknowledged = stored");
    until("the model call", || (!server.requests().is_empty()).then_some(())).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.kill9();

    let gw2 = spawn(dir.path()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let texts = loop {
        let texts = assistant_texts(&records(&gw2.base_url, "main").await);
        if texts.iter().any(|t| t == "Answered after the restart.") {
            break texts;
        }
        assert!(tokio::time::Instant::now() < deadline, "no answer after the restart: {texts:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(texts, ["Answered after the restart."], "answered once; the cut-off run left no reply");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(server.requests().len(), 2, "one retry, no more");
    let recs = records(&gw2.base_url, "main").await;
    assert_eq!(assistant_texts(&recs).len(), 1);
}
