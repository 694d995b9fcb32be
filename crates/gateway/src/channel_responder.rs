//! How the channel layer's messages reach the agent: a turn in the conversation's session,
//! named by the message's idempotency key, and the run's final text back.
//!
//! Asking again with the same key finds the run started before instead of starting another
//! (the store's idempotency key): a finished run gives its stored answer, a run a restart cut
//! off says so, so the channel layer can try again under a new key. The answer's text is
//! reported as it streams, for previews; files that came with the message are saved in the
//! workspace first, and files the answer names are attached (`channel_files.rs`). This file
//! knows nothing of any platform.

use std::time::Duration;

use clawline_agent::{RunEvent, Runtime, TurnRequest, TurnStart};
use clawline_channels::{Ask, Progress, Reply, Responder};
use clawline_store::{RunRow, RunStatus};
use futures_util::future::BoxFuture;

/// Answers channel messages with the agent runtime.
#[derive(Clone)]
pub struct AgentResponder {
    runtime: Runtime,
}

impl AgentResponder {
    pub fn new(runtime: Runtime) -> AgentResponder {
        AgentResponder { runtime }
    }
}

fn from_row(row: &RunRow) -> Option<Reply> {
    let result = row.result.as_ref();
    let text = || result.and_then(|r| r.get("text")).and_then(|t| t.as_str()).unwrap_or_default().to_string();
    match row.status {
        RunStatus::Running => None,
        RunStatus::Ok => Some(Reply::Text(text())),
        RunStatus::Interrupted => Some(Reply::Interrupted),
        RunStatus::Aborted => Some(Reply::Silent),
        RunStatus::Error => {
            let message = result.and_then(|r| r.get("error")).and_then(|e| e.as_str()).unwrap_or("the run failed");
            Some(Reply::Failed(message.to_string()))
        }
    }
}

impl Responder for AgentResponder {
    fn respond(&self, ask: Ask, progress: Progress) -> BoxFuture<'static, Reply> {
        let runtime = self.runtime.clone();
        Box::pin(async move {
            let workspace = runtime.config().agent(&ask.agent_id).map(|a| a.workspace.clone());
            let mut message = ask.text;
            if let (Some(ws), false) = (&workspace, ask.files.is_empty()) {
                for line in crate::channel_files::save_inbound(ws, ask.files, clawline_store::now_ms()).await {
                    if !message.is_empty() {
                        message.push('\n');
                    }
                    message.push_str(&line);
                }
            }
            let with_files = |reply: Reply| match (reply, &workspace) {
                (Reply::Text(t), Some(ws)) => crate::channel_files::answer(ws, t),
                (other, _) => other,
            };
            let req = TurnRequest {
                channel: Some(ask.channel),
                agent_id: Some(ask.agent_id),
                session_key: Some(ask.session_key),
                message,
                idempotency_key: Some(ask.idempotency_key),
                traceparent: ask.traceparent,
                ..Default::default()
            };
            match runtime.start_turn(req).await {
                Ok(TurnStart::Started(mut run)) => {
                    while let Some(event) = run.events.recv().await {
                        match event {
                            RunEvent::Text { delta } => progress.push(&delta),
                            RunEvent::Done { text, .. } => return with_files(Reply::Text(text)),
                            RunEvent::Error { message, hint, .. } => {
                                let line = match hint {
                                    Some(h) => format!("{message} ({h})"),
                                    None => message,
                                };
                                return Reply::Failed(line);
                            }
                            _ => {}
                        }
                    }
                    // The run's task ended without an ending: only a shutdown does that.
                    Reply::Interrupted
                }
                Ok(TurnStart::Duplicate(row)) => {
                    let mut row = row;
                    loop {
                        if let Some(reply) = from_row(&row) {
                            return with_files(reply);
                        }
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        match runtime.store().get_run(&row.run_id).await {
                            Ok(Some(r)) => row = r,
                            Ok(None) | Err(_) => return Reply::Interrupted,
                        }
                    }
                }
                Err(e) => Reply::Failed(e.to_string()),
            }
        })
    }
}
