//! Runs started through the protocol: their events fanned out to connections, their outcome
//! kept for `agent.wait` and the second answer of `agent`.
//!
//! A run started by `chat.send` or `agent` gets a pump task: it reads the run's events, merges
//! text deltas that arrive within [`TEXT_EVERY`] of each other, broadcasts `agent`/`chat` events, and records the ending
//! here. Endings are kept for the last [`KEEP_FINISHED`] runs; older ones are read back from the
//! store's run table, which is the durable record.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use clawline_agent::{RunEvent, RunHandle};
use tokio::sync::watch;

use crate::protocol::frame::Event;
use crate::run_events::{Ending, RunStream, ending};
use crate::state::AppState;

/// How many finished runs are remembered in memory.
pub const KEEP_FINISHED: usize = 1000;

/// A run the tracker knows.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub run_id: String,
    pub session_key: String,
    pub agent_id: String,
    pub model: String,
    pub started_at: i64,
}

struct Entry {
    info: RunInfo,
    done: watch::Sender<Option<Arc<Ending>>>,
}

#[derive(Default)]
struct Inner {
    runs: HashMap<String, Entry>,
    finished: VecDeque<String>,
}

/// Runs in progress and recently finished.
#[derive(Default)]
pub struct RunTracker {
    inner: Mutex<Inner>,
}

impl RunTracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn start(&self, info: RunInfo) {
        let (done, _) = watch::channel(None);
        self.lock().runs.insert(info.run_id.clone(), Entry { info, done });
    }

    pub fn finish(&self, run_id: &str, ending: Ending) {
        let mut inner = self.lock();
        if let Some(e) = inner.runs.get(run_id) {
            e.done.send_replace(Some(Arc::new(ending)));
            inner.finished.push_back(run_id.to_string());
        }
        while inner.finished.len() > KEEP_FINISHED {
            if let Some(old) = inner.finished.pop_front() {
                inner.runs.remove(&old);
            }
        }
    }

    pub fn info(&self, run_id: &str) -> Option<RunInfo> {
        self.lock().runs.get(run_id).map(|e| e.info.clone())
    }

    /// A receiver that holds the ending once the run has one.
    pub fn watch(&self, run_id: &str) -> Option<watch::Receiver<Option<Arc<Ending>>>> {
        self.lock().runs.get(run_id).map(|e| e.done.subscribe())
    }
}

/// Waits for a run's ending, up to `timeout`. `None` on timeout.
pub async fn wait_for(
    mut rx: watch::Receiver<Option<Arc<Ending>>>,
    timeout: std::time::Duration,
) -> Option<Arc<Ending>> {
    let wait = async {
        loop {
            if let Some(e) = rx.borrow_and_update().clone() {
                return Some(e);
            }
            if rx.changed().await.is_err() {
                return rx.borrow().clone();
            }
        }
    };
    tokio::time::timeout(timeout, wait).await.ok().flatten()
}

/// Text deltas of one run are sent at most this often (the ones in between are merged).
pub const TEXT_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// A tracked run whose events are not flowing yet (see [`track`]).
pub struct Tracked {
    state: Arc<AppState>,
    handle: RunHandle,
    pub info: RunInfo,
}

/// How long after the answer reaches the socket the run's events may follow it.
///
/// OpenClaw's TUI treats an answer and a run's final event that arrive in the same read as a
/// run that never finishes (it learns the run id only after it has handled the whole read).
/// A run on a fast local model can finish in a millisecond; this gap keeps its events in a
/// later read even when the client is slow to read. It delays only events, never the run,
/// and only those produced within the gap: a model that takes longer than this to answer
/// sees no delay at all.
pub const EVENTS_AFTER_ANSWER: std::time::Duration = std::time::Duration::from_millis(100);

impl Tracked {
    /// Starts fanning out the run's events once `answered` resolves (the answer that names the
    /// run is on the socket) and [`EVENTS_AFTER_ANSWER`] has passed. The run itself is already
    /// going; its events wait in its channel until then.
    pub fn start(self, answered: Option<tokio::sync::oneshot::Receiver<()>>) {
        let started_at = self.info.started_at;
        tokio::spawn(async move {
            if let Some(rx) = answered {
                // A closed connection resolves it too; the events still go to everyone else.
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), rx).await;
                tokio::time::sleep(EVENTS_AFTER_ANSWER).await;
            }
            pump(self.state, self.handle, started_at).await;
        });
    }
}

/// Starts tracking `handle`. Its events start flowing when [`Tracked::start`] is called: the
/// caller answers the request first, so a client always learns the run id before the run's
/// first event (OpenClaw's clients ignore events of runs they do not know yet).
pub fn track(state: &Arc<AppState>, handle: RunHandle) -> Tracked {
    let info = RunInfo {
        run_id: handle.run_id.clone(),
        session_key: handle.session_key.clone(),
        agent_id: handle.agent_id.clone(),
        model: handle.model.clone(),
        started_at: clawline_store::now_ms(),
    };
    state.runs.start(info.clone());
    Tracked { state: state.clone(), handle, info }
}

async fn pump(state: Arc<AppState>, mut handle: RunHandle, started_at: i64) {
    let mut stream = RunStream::new(&handle.run_id, &handle.session_key, &handle.agent_id, &handle.model, started_at);
    if let Ok(Some(row)) = state.runtime.store().get_session(&handle.session_key).await {
        stream.session_id = Some(row.session_id);
    }
    let mut finished = false;
    let mut last_text: Option<tokio::time::Instant> = None;
    while let Some(first) = handle.events.recv().await {
        let mut batch = vec![first];
        // Text deltas go out at most every TEXT_EVERY: a model streaming one token per event
        // would otherwise cost every watching client one frame per token. The first delta
        // goes at once; any other kind of event ends the wait, so nothing else is delayed.
        if let (RunEvent::Text { .. }, Some(last)) = (&batch[0], last_text) {
            let due = last + TEXT_EVERY;
            while let Ok(Some(next)) = tokio::time::timeout_at(due, handle.events.recv()).await {
                let more_text = matches!(next, RunEvent::Text { .. });
                batch.push(next);
                if !more_text {
                    break;
                }
            }
        }
        while let Ok(next) = handle.events.try_recv() {
            batch.push(next);
        }
        if batch.iter().any(|e| matches!(e, RunEvent::Text { .. })) {
            last_text = Some(tokio::time::Instant::now());
        }
        for event in merge_text(batch) {
            let now = clawline_store::now_ms();
            for out in stream.on_event(&event, now) {
                let frame = Event::new(out.event, &out.payload);
                state.hub.broadcast(&frame, |c| out.needs_cap.is_none_or(|cap| c.has_cap(cap)));
            }
            if let Some(end) = ending(&event, now) {
                state.runs.finish(&handle.run_id, end);
                finished = true;
            }
        }
    }
    if !finished {
        // The run's task went away without a final event (it panicked): report that.
        let now = clawline_store::now_ms();
        let event = RunEvent::Error {
            run_id: handle.run_id.clone(),
            kind: "internal".into(),
            message: "the run stopped unexpectedly".into(),
            hint: None,
            text: stream.text().to_string(),
        };
        for out in stream.on_event(&event, now) {
            state.hub.broadcast(&Event::new(out.event, &out.payload), |_| true);
        }
        if let Some(end) = ending(&event, now) {
            state.runs.finish(&handle.run_id, end);
        }
    }
}

/// Joins consecutive text deltas.
fn merge_text(batch: Vec<RunEvent>) -> Vec<RunEvent> {
    let mut out: Vec<RunEvent> = Vec::with_capacity(batch.len());
    for e in batch {
        if let (Some(RunEvent::Text { delta: acc }), RunEvent::Text { delta }) = (out.last_mut(), &e) {
            acc.push_str(delta);
            continue;
        }
        out.push(e);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawline_core::message::Usage;

    #[test]
    fn merges_only_adjacent_text() {
        let merged = merge_text(vec![
            RunEvent::Text { delta: "a".into() },
            RunEvent::Text { delta: "b".into() },
            RunEvent::Thinking { delta: "t".into() },
            RunEvent::Text { delta: "c".into() },
        ]);
        assert_eq!(merged.len(), 3);
        assert_eq!(merged[0], RunEvent::Text { delta: "ab".into() });
    }

    #[tokio::test]
    async fn waiters_see_the_ending_and_old_runs_are_forgotten() {
        let t = RunTracker::default();
        let info = |id: &str| RunInfo {
            run_id: id.into(),
            session_key: "k".into(),
            agent_id: "main".into(),
            model: "p/m".into(),
            started_at: 0,
        };
        t.start(info("r1"));
        let rx = t.watch("r1").unwrap();
        assert!(wait_for(rx.clone(), std::time::Duration::from_millis(20)).await.is_none());
        let end = Ending {
            status: "ok",
            text: "hi".into(),
            stop_reason: "stop".into(),
            error: None,
            error_kind: None,
            usage: Usage::default(),
            ended_at: 1,
        };
        t.finish("r1", end);
        assert_eq!(wait_for(rx, std::time::Duration::from_secs(1)).await.unwrap().text, "hi");
        for i in 0..KEEP_FINISHED + 1 {
            let id = format!("x{i}");
            t.start(info(&id));
            t.finish(
                &id,
                Ending {
                    status: "ok",
                    text: String::new(),
                    stop_reason: "stop".into(),
                    error: None,
                    error_kind: None,
                    usage: Usage::default(),
                    ended_at: 1,
                },
            );
        }
        assert!(t.info("r1").is_none());
    }
}
