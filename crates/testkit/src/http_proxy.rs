//! A forwarding HTTP proxy for tests that check clawline honours `HTTP_PROXY`/`NO_PROXY`.
//!
//! It takes absolute-form requests (`POST http://host:port/path HTTP/1.1`, RFC 9112 §3.2.2),
//! records the target, forwards the request (never through another proxy), and streams the
//! answer back with `connection: close`, so event streams pass through as they arrive.
//! `CONNECT` (HTTPS tunnels) is answered 501: tests use plain-HTTP twins.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MAX_HEAD: usize = 64 * 1024;

/// A running proxy. Dropping it stops it.
pub struct HttpProxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HttpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpProxy {
    pub async fn start() -> HttpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("local addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        let record = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, http.clone(), record.clone()));
            }
        });
        HttpProxy { addr, seen, task }
    }

    /// The value for `HTTP_PROXY`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `METHOD target` of every request received, in order.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

async fn serve(mut stream: TcpStream, http: reqwest::Client, seen: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split_whitespace();
    let (method, target) = (first.next().unwrap_or_default().to_string(), first.next().unwrap_or_default().to_string());
    seen.lock().unwrap_or_else(|p| p.into_inner()).push(format!("{method} {target}"));
    if method == "CONNECT" || !target.starts_with("http://") {
        let _ =
            stream.write_all(b"HTTP/1.1 501 Not Implemented\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
        return;
    }
    let mut headers = Vec::new();
    let mut length = 0usize;
    for line in lines.filter(|l| !l.is_empty()) {
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_string(), v.trim().to_string());
            if k.eq_ignore_ascii_case("content-length") {
                length = v.parse().unwrap_or(0);
            }
            let hop = ["host", "connection", "proxy-connection", "proxy-authorization", "content-length"];
            if !hop.iter().any(|h| k.eq_ignore_ascii_case(h)) {
                headers.push((k, v));
            }
        }
    }
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let Ok(m) = reqwest::Method::from_bytes(method.as_bytes()) else { return };
    let mut req = http.request(m, &target).body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let Ok(resp) = req.send().await else {
        let _ = stream.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
        return;
    };
    let mut out = format!("HTTP/1.1 {}\r\n", resp.status());
    for (k, v) in resp.headers() {
        if ["content-length", "transfer-encoding", "connection"].contains(&k.as_str()) {
            continue;
        }
        out.push_str(&format!("{}: {}\r\n", k, v.to_str().unwrap_or_default()));
    }
    out.push_str("connection: close\r\n\r\n");
    if stream.write_all(out.as_bytes()).await.is_err() {
        return;
    }
    let mut body = resp.bytes_stream();
    while let Some(Ok(bytes)) = body.next().await {
        if stream.write_all(&bytes).await.is_err() {
            return;
        }
    }
    let _ = stream.shutdown().await;
}
