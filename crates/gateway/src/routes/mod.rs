//! Request handlers, one file per surface.

pub mod api;
pub mod control_ui;
pub mod hooks;
pub mod metrics;
pub mod openai;
pub mod probes;
pub mod responses;
pub mod tools;
pub mod ui;
pub mod webchat;

use futures_util::Stream;
use tokio::sync::mpsc::UnboundedReceiver;

/// Turns a receiver into a stream (ends when the sender side is gone).
pub(crate) fn receiver_stream<T: Send + 'static>(rx: UnboundedReceiver<T>) -> impl Stream<Item = T> + Send {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}
