//! The posting loop every OTLP/HTTP signal shares (feature `otel`): a bounded queue, batches
//! of up to [`BATCH`] items or whatever one flush interval gathered, one `POST` each.
//!
//! It must never hold up the code that hands it an item: a full queue drops the item and
//! counts it (with one warning), a failed post is logged and its batch dropped, never retried
//! in a loop. What a batch looks like on the wire is the signal's business (`encode`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

/// Items per request at most.
pub const BATCH: usize = 512;

/// Where a signal is posted.
#[derive(Debug, Clone)]
pub struct Destination {
    /// The full URL (`<endpoint>/v1/<signal>`, or the signal's own endpoint as given).
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub flush_interval: Duration,
}

/// The handle items are pushed through: cheap, non-blocking.
pub(crate) struct Batcher<T> {
    tx: mpsc::Sender<T>,
    dropped: Arc<AtomicU64>,
    /// `spans`, `log records`: for the one warning.
    what: &'static str,
}

impl<T: Send + 'static> Batcher<T> {
    /// Starts the posting task on the current Tokio runtime.
    pub fn start(
        to: Destination,
        http: reqwest::Client,
        what: &'static str,
        encode: impl Fn(&[T]) -> Value + Send + 'static,
    ) -> Batcher<T> {
        let (tx, rx) = mpsc::channel(4 * BATCH);
        tokio::spawn(run(to, http, what, encode, rx));
        Batcher { tx, dropped: Arc::default(), what }
    }

    pub fn push(&self, item: T) {
        if self.tx.try_send(item).is_err() && self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!("the OpenTelemetry exporter fell behind; {} are being dropped", self.what);
        }
    }

    /// Items dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

pub(crate) async fn post(to: &Destination, http: &reqwest::Client, what: &str, body: Value, items: usize) {
    let mut req = http.post(&to.url).json(&body).timeout(Duration::from_secs(10));
    for (k, v) in &to.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => {
            let status = r.status();
            let text: String = r.text().await.unwrap_or_default().chars().take(300).collect();
            tracing::warn!(url = %to.url, %status, body = %text, items, "the collector refused {what}");
        }
        Err(e) => tracing::warn!(url = %to.url, error = %e, items, "could not export {what}"),
    }
}

async fn run<T>(
    to: Destination,
    http: reqwest::Client,
    what: &'static str,
    encode: impl Fn(&[T]) -> Value,
    mut rx: mpsc::Receiver<T>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut tick = tokio::time::interval(to.flush_interval.max(Duration::from_millis(10)));
    loop {
        let full = tokio::select! {
            item = rx.recv() => match item {
                Some(i) => {
                    batch.push(i);
                    batch.len() >= BATCH
                }
                None => break,
            },
            _ = tick.tick() => !batch.is_empty(),
        };
        if full {
            post(&to, &http, what, encode(&batch), batch.len()).await;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        post(&to, &http, what, encode(&batch), batch.len()).await;
    }
}
