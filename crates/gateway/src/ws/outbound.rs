//! What a connection sends, in order, and the task that writes it.
//!
//! Responses and events from many tasks go into one queue per connection; a single writer task
//! drains it, numbering events with the connection's `seq` as it writes them (so the numbers
//! are in wire order however the producers raced). The queue is unbounded in count but bounded
//! in bytes (`policy.maxBufferedBytes`): a client that stops reading is disconnected instead of
//! growing our memory, and pushing to a closed or overflowing queue is a cheap no-op.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{Sink, SinkExt};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::protocol::frame::Event;

/// One item for the writer.
#[derive(Debug)]
enum Out {
    /// A response (already rendered).
    Text(String, usize),
    /// A response, and who to tell once it has been written to the socket.
    TextNotify(String, usize, oneshot::Sender<()>),
    /// An event; gets the next `seq` when written.
    Event(Event, usize),
    /// An event without `seq` (`connect.challenge`).
    Unsequenced(Event, usize),
    /// A liveness ping.
    Ping,
    /// Send a close frame and stop.
    Close(u16, String),
}

struct Shared {
    queued: AtomicUsize,
    limit: usize,
    closed: AtomicBool,
    overflow: Notify,
}

/// The sending side of a connection's queue. Cheap to clone.
#[derive(Clone)]
pub struct Outbound {
    tx: mpsc::UnboundedSender<Out>,
    shared: Arc<Shared>,
}

/// The writer's end.
pub struct Writer {
    rx: mpsc::UnboundedReceiver<Out>,
    shared: Arc<Shared>,
}

/// A queue holding at most `limit` bytes.
pub fn queue(limit: usize) -> (Outbound, Writer) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        queued: AtomicUsize::new(0),
        limit,
        closed: AtomicBool::new(false),
        overflow: Notify::new(),
    });
    (Outbound { tx, shared: shared.clone() }, Writer { rx, shared })
}

impl Outbound {
    fn push(&self, out: Out, len: usize) -> bool {
        if self.shared.closed.load(Ordering::Acquire) {
            return false;
        }
        let before = self.shared.queued.fetch_add(len, Ordering::AcqRel);
        if before + len > self.shared.limit {
            self.shared.queued.fetch_sub(len, Ordering::AcqRel);
            self.shared.closed.store(true, Ordering::Release);
            self.shared.overflow.notify_one();
            return false;
        }
        self.tx.send(out).is_ok()
    }

    /// Queues a rendered response.
    pub fn text(&self, text: String) -> bool {
        let len = text.len();
        self.push(Out::Text(text, len), len)
    }

    /// Queues a rendered response; the receiver resolves once it has been written.
    pub fn text_notify(&self, text: String) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let len = text.len();
        self.push(Out::TextNotify(text, len, tx), len);
        rx
    }

    /// Queues an event (numbered when written).
    pub fn event(&self, event: Event) -> bool {
        let len = event.approx_len();
        self.push(Out::Event(event, len), len)
    }

    /// Queues an event without a sequence number.
    pub fn unsequenced(&self, event: Event) -> bool {
        let len = event.approx_len();
        self.push(Out::Unsequenced(event, len), len)
    }

    /// Queues a ping. Returns whether it was queued.
    pub fn ping(&self) -> bool {
        self.push(Out::Ping, 16)
    }

    /// Queues a close frame; nothing queued after it is sent.
    pub fn close(&self, code: u16, reason: &str) {
        if !self.shared.closed.swap(true, Ordering::AcqRel) {
            // Close reasons are limited to 123 bytes by the protocol.
            let reason = clawline_core::text::truncate_bytes(reason, 120).0.to_string();
            let _ = self.tx.send(Out::Close(code, reason));
        }
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire) || self.tx.is_closed()
    }
}

fn close_message(code: u16, reason: String) -> Message {
    Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.into() }))
}

impl Writer {
    /// Writes until the queue ends, a close is written, the client overflows its buffer, or a
    /// write fails. Returns the close code sent, if any.
    pub async fn run<S>(mut self, mut sink: S) -> Option<u16>
    where
        S: Sink<Message> + Unpin,
    {
        let mut seq: u64 = 0;
        loop {
            let next = tokio::select! {
                biased;
                () = self.shared.overflow.notified() => None,
                item = self.rx.recv() => Some(item),
            };
            let item = match next {
                None => {
                    let msg = close_message(1008, "slow consumer".into());
                    let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(msg)).await;
                    return Some(1008);
                }
                Some(None) => return None,
                Some(Some(item)) => item,
            };
            let mut notify = None;
            let (msg, len, close) = match item {
                Out::Text(t, len) => (Message::Text(t.into()), len, None),
                Out::TextNotify(t, len, tx) => {
                    notify = Some(tx);
                    (Message::Text(t.into()), len, None)
                }
                Out::Event(e, len) => {
                    seq += 1;
                    (Message::Text(e.render(Some(seq)).into()), len, None)
                }
                Out::Unsequenced(e, len) => (Message::Text(e.render(None).into()), len, None),
                Out::Ping => (Message::Ping(Default::default()), 16, None),
                Out::Close(code, reason) => (close_message(code, reason), 0, Some(code)),
            };
            let sent = tokio::select! {
                biased;
                () = self.shared.overflow.notified() => false,
                r = sink.send(msg) => r.is_ok(),
            };
            self.shared.queued.fetch_sub(len, Ordering::AcqRel);
            if let Some(tx) = notify {
                let _ = tx.send(());
            }
            if close.is_some() {
                let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
                return close;
            }
            if !sent {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Mutex;

    /// A sink that records what it is given.
    fn recorder() -> (impl Sink<Message, Error = ()> + Unpin, Arc<Mutex<Vec<Message>>>) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        let sink = futures_util::sink::unfold((), move |(), m: Message| {
            let g = g.clone();
            async move {
                g.lock().unwrap().push(m);
                Ok::<_, ()>(())
            }
        });
        (Box::pin(sink), got)
    }

    #[tokio::test]
    async fn numbers_events_in_write_order_and_stops_at_close() {
        let (out, writer) = queue(1 << 20);
        out.unsequenced(Event::new("connect.challenge", &json!({})));
        out.text("r1".into());
        out.event(Event::new("tick", &json!({"ts": 1})));
        out.event(Event::new("tick", &json!({"ts": 2})));
        out.close(1000, "bye");
        assert!(!out.text("late".into()), "nothing is queued after a close");
        let (sink, got) = recorder();
        let code = writer.run(sink).await;
        assert_eq!(code, Some(1000));
        let texts = got.lock().unwrap().clone();
        assert_eq!(texts.len(), 5);
        let seqs: Vec<Option<u64>> = texts[..4]
            .iter()
            .map(|m| match m {
                Message::Text(t) => serde_json::from_str::<serde_json::Value>(t).ok().and_then(|v| v["seq"].as_u64()),
                _ => None,
            })
            .collect();
        assert_eq!(seqs, [None, None, Some(1), Some(2)]);
        assert!(matches!(&texts[4], Message::Close(Some(f)) if u16::from(f.code) == 1000));
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_is_cut_off() {
        let (out, writer) = queue(100);
        assert!(out.text("x".repeat(60)));
        assert!(!out.text("y".repeat(60)), "over the byte limit");
        assert!(out.is_closed());
        let (sink, got) = recorder();
        assert_eq!(writer.run(sink).await, Some(1008));
        let last = got.lock().unwrap().last().cloned();
        assert!(matches!(last, Some(Message::Close(Some(f))) if u16::from(f.code) == 1008));
    }
}
