//! The loopback redirect listener (RFC 8252 §7.3): a tiny HTTP/1.1 server on 127.0.0.1 that
//! waits for the browser to come back with `?code=…&state=…`.
//!
//! It answers only `GET <path>`; anything else gets 404 and the wait goes on (browsers ask for
//! `/favicon.ico`). Requests are read up to 8 KiB with a 10 s limit each, so a stray client
//! cannot hold the listener. The page tells the user to return to the terminal. This file must
//! not print the code.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::code_flow::parse_pasted;
use super::wire::OAuthError;

const MAX_REQUEST: usize = 8 * 1024;

async fn respond(stream: &mut tokio::net::TcpStream, status: &str, body: &str) {
    let page = format!(
        "<!doctype html><meta charset=utf-8><title>clawline</title><body style=\"font-family:sans-serif\"><p>{body}</p>"
    );
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\ncache-control: no-store\r\n\r\n",
        page.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(page.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The request target of one HTTP request, or `None` when it is not a readable GET.
async fn read_target(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await.ok()?.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() >= MAX_REQUEST {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let line = head.lines().next()?;
    let mut parts = line.split_whitespace();
    (parts.next()? == "GET").then(|| parts.next().map(String::from)).flatten()
}

/// Waits on `listener` for the redirect to `path` and returns the code, after checking the state.
pub async fn wait_for_code(
    provider: &str,
    listener: TcpListener,
    path: &str,
    expected_state: &str,
    timeout: Duration,
) -> Result<String, OAuthError> {
    let wait = async {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            let Some(target) = read_target(&mut stream).await else { continue };
            let (p, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
            if p != path {
                respond(&mut stream, "404 Not Found", "Not found.").await;
                continue;
            }
            let result = parse_pasted(provider, &format!("?{query}"), expected_state);
            match &result {
                Ok(_) => {
                    respond(&mut stream, "200 OK", "Signed in. You can close this tab and go back to the terminal.")
                        .await
                }
                Err(e) => respond(&mut stream, "400 Bad Request", &format!("Sign-in failed: {e}")).await,
            }
            return result;
        }
    };
    tokio::time::timeout(timeout, wait).await.map_err(|_| OAuthError::Timeout {
        provider: provider.into(),
        hint: "no browser came back; run again with --paste to paste the address instead",
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn takes_the_code_from_the_redirect_and_ignores_other_paths() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let wait = tokio::spawn(wait_for_code("p", listener, "/callback", "st", Duration::from_secs(5)));
        let http = reqwest::Client::new();
        let r = http.get(format!("http://{addr}/favicon.ico")).send().await.unwrap();
        assert_eq!(r.status(), 404);
        let r = http.get(format!("http://{addr}/callback?code=c0de&state=st")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("Signed in"));
        assert_eq!(wait.await.unwrap().unwrap(), "c0de");
    }

    #[tokio::test]
    async fn a_wrong_state_fails_and_silence_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let wait = tokio::spawn(wait_for_code("p", listener, "/cb", "st", Duration::from_secs(5)));
        let r = reqwest::get(format!("http://{addr}/cb?code=c&state=evil")).await.unwrap();
        assert_eq!(r.status(), 400);
        assert!(matches!(wait.await.unwrap(), Err(OAuthError::StateMismatch { .. })));

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let e = wait_for_code("p", listener, "/cb", "st", Duration::from_millis(50)).await.unwrap_err();
        assert!(e.to_string().contains("--paste"), "{e}");
    }
}
