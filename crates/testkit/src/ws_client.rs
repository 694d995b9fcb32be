//! A client of OpenClaw's gateway protocol v4, written from the protocol's description, for
//! tests of the gateway.
//!
//! It does what OpenClaw's clients do — waits for `connect.challenge`, sends `connect` (with an
//! Ed25519 device identity when asked, signing the v3 payload), matches responses to requests
//! by id, and keeps every event — and it can also misbehave on purpose (raw frames, wrong
//! signatures, replayed nonces) so negative paths can be tested. It depends on no clawline
//! crate, so it checks the gateway from the outside.

use std::collections::VecDeque;
use std::time::Duration;

use aws_lc_rs::digest;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// An Ed25519 device identity.
pub struct Device {
    key: Ed25519KeyPair,
}

impl Default for Device {
    fn default() -> Self {
        Self::generate()
    }
}

impl Device {
    pub fn generate() -> Device {
        Device { key: Ed25519KeyPair::generate().expect("generate an Ed25519 key") }
    }

    pub fn public_key_raw(&self) -> Vec<u8> {
        self.key.public_key().as_ref().to_vec()
    }

    /// Lowercase hex SHA-256 of the raw public key.
    pub fn id(&self) -> String {
        digest::digest(&digest::SHA256, &self.public_key_raw()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public_key_raw())
    }

    pub fn sign(&self, payload: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.key.sign(payload.as_bytes()).as_ref())
    }

    /// The `device` object of a connect request for `params`, signed over the v3 payload.
    pub fn proof(&self, params: &Value, nonce: &str, signed_at: i64) -> Value {
        let s = |p: &str| params.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
        let scopes: Vec<String> = params["scopes"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_default();
        let token = params
            .pointer("/auth/token")
            .or(params.pointer("/auth/deviceToken"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let role = params["role"].as_str().unwrap_or("operator");
        let payload = format!(
            "v3|{}|{}|{}|{role}|{}|{signed_at}|{token}|{nonce}|{}|{}",
            self.id(),
            s("/client/id"),
            s("/client/mode"),
            scopes.join(","),
            s("/client/platform").trim().to_ascii_lowercase(),
            s("/client/deviceFamily").trim().to_ascii_lowercase(),
        );
        json!({"id": self.id(), "publicKey": self.public_key(), "signature": self.sign(&payload), "signedAt": signed_at, "nonce": nonce})
    }
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub code: Option<u16>,
    pub reason: String,
}

/// A protocol client.
pub struct Client {
    ws: Ws,
    next_id: u64,
    /// Events received and not yet taken, in order.
    pub events: VecDeque<Value>,
    /// Every frame received, in order (for schema checks).
    pub frames: Vec<Value>,
    pub closed: Option<Closed>,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Connect params as OpenClaw's CLI sends them, for `scopes` and `token`.
pub fn cli_params(token: &str, scopes: &[&str]) -> Value {
    json!({
        "minProtocol": 4, "maxProtocol": 4,
        "client": {"id": "cli", "version": "test", "platform": "linux", "deviceFamily": "Linux", "mode": "cli"},
        "caps": [], "auth": {"token": token}, "role": "operator", "scopes": scopes,
    })
}

/// Connect params as OpenClaw's TUI sends them (it adds a device identity).
pub fn tui_params(token: &str, scopes: &[&str]) -> Value {
    json!({
        "minProtocol": 4, "maxProtocol": 4,
        "client": {"id": "openclaw-tui", "displayName": "openclaw-tui", "version": "test", "platform": "linux",
                   "deviceFamily": "Linux", "mode": "ui"},
        "caps": ["tool-events"], "auth": {"token": token}, "role": "operator", "scopes": scopes,
    })
}

impl Client {
    /// Opens the socket (with extra headers such as `Origin`) and reads `connect.challenge`.
    pub async fn open(url: &str, headers: &[(&str, &str)]) -> Result<(Client, Value), String> {
        let mut req = url.into_client_request().map_err(|e| e.to_string())?;
        for (k, v) in headers {
            req.headers_mut().insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?,
                v.parse().map_err(|e: axum::http::header::InvalidHeaderValue| e.to_string())?,
            );
        }
        let (ws, _) = tokio_tungstenite::connect_async(req).await.map_err(|e| e.to_string())?;
        let mut c = Client { ws, next_id: 0, events: VecDeque::new(), frames: Vec::new(), closed: None };
        let first = c.recv(Duration::from_secs(5)).await.ok_or("no frame after the upgrade")?;
        if first["event"] != "connect.challenge" {
            return Err(format!("expected connect.challenge first, got {first}"));
        }
        c.events.clear();
        Ok((c, first["payload"].clone()))
    }

    /// Opens, sends `connect` with `params` (signed by `device` when given) and returns the
    /// client and the connect response.
    pub async fn connect(
        url: &str,
        headers: &[(&str, &str)],
        mut params: Value,
        device: Option<&Device>,
    ) -> Result<(Client, Value), String> {
        let (mut c, challenge) = Self::open(url, headers).await?;
        if let Some(d) = device {
            let nonce = challenge["nonce"].as_str().unwrap_or_default().to_string();
            params["device"] = d.proof(&params, &nonce, now_ms());
        }
        let res = c.request("connect", params).await?;
        Ok((c, res))
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, text: impl Into<String>) -> Result<(), String> {
        self.ws.send(Message::Text(text.into().into())).await.map_err(|e| e.to_string())
    }

    /// Receives the next frame (answering pings), or `None` when the socket closed or nothing
    /// came within `wait`.
    pub async fn recv(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next()).await.ok()?;
            match msg {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap_or_else(|_| json!({"unparsed": t.to_string()}));
                    self.frames.push(v.clone());
                    if v["type"] == "event" {
                        self.events.push_back(v.clone());
                    }
                    return Some(v);
                }
                Some(Ok(Message::Close(frame))) => {
                    self.closed = Some(Closed {
                        code: frame.as_ref().map(|f| u16::from(f.code)),
                        reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    });
                    return None;
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => {
                    if self.closed.is_none() {
                        self.closed = Some(Closed { code: None, reason: String::new() });
                    }
                    return None;
                }
            }
        }
    }

    /// Sends a request and waits for its response (the whole `res` frame).
    pub async fn request(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = format!("{}:t", self.next_id);
        let mut frame = json!({"type": "req", "id": id, "method": method});
        if !params.is_null() {
            frame["params"] = params;
        }
        self.send_text(frame.to_string()).await?;
        self.response(&id, Duration::from_secs(60)).await
    }

    /// Waits for the response with `id`.
    pub async fn response(&mut self, id: &str, wait: Duration) -> Result<Value, String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                Some(v) if v["type"] == "res" && v["id"] == id => return Ok(v),
                Some(_) => continue,
                None => return Err(format!("no response to {id}; closed: {:?}", self.closed)),
            }
        }
    }

    /// Sends a request without waiting; returns its id.
    pub async fn send_request(&mut self, method: &str, params: Value) -> Result<String, String> {
        self.next_id += 1;
        let id = format!("{}:t", self.next_id);
        self.send_text(json!({"type": "req", "id": id, "method": method, "params": params}).to_string()).await?;
        Ok(id)
    }

    /// Takes the first queued or arriving event that `pred` accepts.
    pub async fn event(&mut self, wait: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(i) = self.events.iter().position(&pred) {
                return self.events.remove(i);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            self.recv(left).await?;
        }
    }

    /// Reads until the socket closes (or `wait` passes) and returns how it closed.
    pub async fn closed(&mut self, wait: Duration) -> Option<Closed> {
        let deadline = tokio::time::Instant::now() + wait;
        while self.closed.is_none() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let _ = self.recv(left).await;
        }
        self.closed.clone()
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
