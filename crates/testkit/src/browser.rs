//! A small headless-Chromium driver over the Chrome DevTools Protocol.
//!
//! Launches Debian's `chromium` (or `$CHROMIUM`) headless with a fresh profile and remote
//! debugging on a random port, attaches to one page, and offers navigate / evaluate / wait-for.
//! Console messages and uncaught exceptions are collected so a failing test can show them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// A running headless browser attached to one page.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    out: mpsc::UnboundedSender<String>,
    pending: Pending,
    next_id: AtomicU64,
    session: String,
    console: Arc<Mutex<Vec<String>>>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The browser binary: `$CHROMIUM`, else the first of the usual names found on `PATH`.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for name in ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

impl Browser {
    /// Starts the browser and opens a blank page.
    pub async fn launch() -> Result<Browser, String> {
        let bin = find_chromium().ok_or(
            "no Chromium found: install Debian's `chromium` package (apt-get install chromium) or set CHROMIUM=/path/to/chrome",
        )?;
        let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
        let child = Command::new(&bin)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                "--disable-extensions",
                "--no-first-run",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start {}: {e}", bin.display()))?;
        // Chromium writes "<port>\n<browser ws path>" here once it listens.
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let ws_url = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break format!("ws://127.0.0.1:{port}{path}");
                }
            }
            if Instant::now() > deadline {
                return Err("Chromium did not open its DevTools port in 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (ws, _) =
            tokio_tungstenite::connect_async(ws_url.as_str()).await.map_err(|e| format!("connect DevTools: {e}"))?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(text) = out_rx.recv().await {
                if sink.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let console = Arc::new(Mutex::new(Vec::new()));
        {
            let pending = pending.clone();
            let console = console.clone();
            tokio::spawn(async move {
                while let Some(Ok(msg)) = stream.next().await {
                    let Message::Text(text) = msg else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
                    if let Some(id) = v.get("id").and_then(Value::as_u64) {
                        if let Some(tx) = pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id) {
                            let _ = tx.send(v);
                        }
                    } else if v["method"] == "Runtime.consoleAPICalled" {
                        let args: Vec<String> = v["params"]["args"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|a| a["value"].to_string())
                            .collect();
                        console.lock().unwrap_or_else(|p| p.into_inner()).push(format!(
                            "console.{}: {}",
                            v["params"]["type"],
                            args.join(" ")
                        ));
                    } else if v["method"] == "Runtime.exceptionThrown" {
                        console
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(format!("exception: {}", v["params"]["exceptionDetails"]));
                    }
                }
            });
        }
        let mut browser = Browser {
            child,
            _profile: profile,
            out,
            pending,
            next_id: AtomicU64::new(1),
            session: String::new(),
            console,
        };
        let target = browser.call("Target.createTarget", json!({"url": "about:blank"}), false).await?;
        let target_id = target["targetId"].as_str().ok_or("no targetId")?.to_string();
        let attached =
            browser.call("Target.attachToTarget", json!({"targetId": target_id, "flatten": true}), false).await?;
        browser.session = attached["sessionId"].as_str().ok_or("no sessionId")?.to_string();
        browser.call("Page.enable", json!({}), true).await?;
        browser.call("Runtime.enable", json!({}), true).await?;
        Ok(browser)
    }

    /// Sends one DevTools command and returns its `result`.
    pub async fn call(&self, method: &str, params: Value, on_page: bool) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({"id": id, "method": method, "params": params});
        if on_page {
            msg["sessionId"] = json!(self.session);
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id, tx);
        self.out.send(msg.to_string()).map_err(|_| "DevTools connection closed")?;
        let reply = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .map_err(|_| format!("{method}: no answer in 30 s"))?
            .map_err(|_| format!("{method}: connection closed"))?;
        if let Some(err) = reply.get("error") {
            return Err(format!("{method}: {err}"));
        }
        Ok(reply["result"].clone())
    }

    /// Opens `url` and waits until the document has loaded.
    pub async fn goto(&self, url: &str) -> Result<(), String> {
        let r = self.call("Page.navigate", json!({"url": url}), true).await?;
        if let Some(e) = r.get("errorText").and_then(Value::as_str) {
            return Err(format!("navigate {url}: {e}"));
        }
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'", Duration::from_secs(15))
            .await?;
        Ok(())
    }

    /// Evaluates JavaScript in the page (promises are awaited) and returns its value.
    pub async fn eval(&self, expression: &str) -> Result<Value, String> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
                true,
            )
            .await?;
        if let Some(ex) = r.get("exceptionDetails") {
            return Err(format!("script threw: {ex}"));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Polls `expression` until it is truthy; returns its value.
    pub async fn wait_for(&self, expression: &str, timeout: Duration) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.eval(expression).await.unwrap_or(Value::Null);
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return Ok(v);
            }
            if Instant::now() > deadline {
                return Err(format!("timed out waiting for `{expression}`; console: {:?}", self.console()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Types text into the focused element, as a keyboard would.
    pub async fn type_text(&self, text: &str) -> Result<(), String> {
        self.call("Input.insertText", json!({"text": text}), true).await.map(|_| ())
    }

    /// Presses and releases Enter in the focused element.
    pub async fn press_enter(&self) -> Result<(), String> {
        for kind in ["keyDown", "keyUp"] {
            let mut params = json!({"type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13});
            if kind == "keyDown" {
                params["text"] = json!("\r");
            }
            self.call("Input.dispatchKeyEvent", params, true).await?;
        }
        Ok(())
    }

    /// A PNG of the page as it is now.
    pub async fn screenshot(&self) -> Result<Vec<u8>, String> {
        use base64::Engine;
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}), true).await?;
        let data = r["data"].as_str().ok_or("no screenshot data")?;
        base64::engine::general_purpose::STANDARD.decode(data).map_err(|e| e.to_string())
    }

    /// The visible text of the page, including text inside shadow roots (web components), one
    /// run of text per entry.
    pub async fn visible_text(&self) -> Result<Vec<String>, String> {
        let v = self
            .eval(
                "(() => { const out = []; const walk = (n) => { \
                   if (n.nodeType === 3) { const t = n.textContent.trim(); if (t) out.push(t); return; } \
                   if (n.nodeType === 1) { const s = getComputedStyle(n); if (s.display === 'none' || s.visibility === 'hidden') return; \
                     if (n.tagName === 'SCRIPT' || n.tagName === 'STYLE') return; if (n.shadowRoot) walk(n.shadowRoot); } \
                   else if (n.nodeType !== 11) return; \
                   for (const c of n.childNodes) walk(c); }; walk(document.body); return out; })()",
            )
            .await?;
        Ok(serde_json::from_value(v).unwrap_or_default())
    }

    /// Focuses the first element matching `selector`, searching inside shadow roots too.
    /// Returns whether one was found.
    pub async fn focus_deep(&self, selector: &str) -> Result<bool, String> {
        let sel = serde_json::to_string(selector).unwrap_or_default();
        let v = self
            .eval(&format!(
                "(() => {{ const find = (root) => {{ const el = root.querySelector({sel}); if (el) return el; \
                   for (const n of root.querySelectorAll('*')) if (n.shadowRoot) {{ const r = find(n.shadowRoot); if (r) return r; }} \
                   return null; }}; const el = find(document); if (!el) return false; el.focus(); return true; }})()"
            ))
            .await?;
        Ok(v == Value::Bool(true))
    }

    /// Console output and uncaught exceptions seen so far.
    pub fn console(&self) -> Vec<String> {
        self.console.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
