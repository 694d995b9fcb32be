//! Turning one run's [`RunEvent`]s into the protocol's `agent` and `chat` event payloads.
//!
//! Per run there is one numbering (`seq`) shared by both streams, as OpenClaw's clients expect:
//! a `chat` event carries the `seq` of the `agent` event it mirrors. The `agent` stream is the
//! detailed one (`lifecycle`, `assistant`, `item`, `tool`, `usage`); the `chat` stream is what
//! chat views render (`delta` with the cumulative message, then exactly one of `final`,
//! `aborted`, `error`). Tool payloads (`agent` stream `tool`) are only for clients that declared
//! the `tool-events` capability. Pure: no I/O, no clock (callers pass `now`).

use clawline_agent::RunEvent;
use clawline_core::message::Usage;
use serde_json::{Value, json};

/// A payload to broadcast, and the client capability it needs, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// `agent` or `chat`.
    pub event: &'static str,
    pub payload: Value,
    pub needs_cap: Option<&'static str>,
}

/// How a run ended, as the protocol reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ending {
    /// `ok`, `error` or `aborted`.
    pub status: &'static str,
    pub text: String,
    pub stop_reason: String,
    pub error: Option<String>,
    pub error_kind: Option<String>,
    pub usage: Usage,
    pub ended_at: i64,
}

/// The translation state of one run.
#[derive(Debug, Clone)]
pub struct RunStream {
    pub run_id: String,
    pub session_key: String,
    pub agent_id: String,
    pub session_id: Option<String>,
    pub provider: String,
    pub model: String,
    pub started_at: i64,
    seq: u64,
    text: String,
    item: u32,
    tool_started: std::collections::HashMap<String, i64>,
}

/// The protocol's coarse error kinds, from ours.
fn chat_error_kind(kind: &str) -> &'static str {
    match kind {
        "timeout" => "timeout",
        "rate_limited" | "overloaded" => "rate_limit",
        "context_length" => "context_length",
        _ => "unknown",
    }
}

impl RunStream {
    pub fn new(run_id: &str, session_key: &str, agent_id: &str, model_label: &str, started_at: i64) -> Self {
        let (provider, model) = model_label.split_once('/').unwrap_or(("", model_label));
        RunStream {
            run_id: run_id.into(),
            session_key: session_key.into(),
            agent_id: agent_id.into(),
            session_id: None,
            provider: provider.into(),
            model: model.into(),
            started_at,
            seq: 0,
            text: String::new(),
            item: 1,
            tool_started: Default::default(),
        }
    }

    fn agent(&mut self, stream: &str, data: Value, now: i64) -> Outgoing {
        self.seq += 1;
        let mut payload = json!({
            "runId": self.run_id,
            "seq": self.seq,
            "stream": stream,
            "ts": now,
            "data": data,
            "sessionKey": self.session_key,
            "agentId": self.agent_id,
            "isHeartbeat": false,
        });
        if let Some(id) = &self.session_id {
            payload["sessionId"] = json!(id);
        }
        Outgoing { event: "agent", payload, needs_cap: None }
    }

    fn chat(&self, state: &str, extra: Value) -> Outgoing {
        let mut payload = json!({
            "runId": self.run_id,
            "sessionKey": self.session_key,
            "agentId": self.agent_id,
            "seq": self.seq,
            "state": state,
        });
        if let (Some(p), Value::Object(extra)) = (payload.as_object_mut(), extra) {
            p.extend(extra);
        }
        Outgoing { event: "chat", payload, needs_cap: None }
    }

    fn message(&self, now: i64) -> Value {
        json!({"role": "assistant", "content": [{"type": "text", "text": self.text}], "timestamp": now})
    }

    /// The text said so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The payloads for one run event. `Text` events should be merged by the caller when several
    /// are waiting (fewer, larger deltas), which this handles like any other delta.
    pub fn on_event(&mut self, event: &RunEvent, now: i64) -> Vec<Outgoing> {
        match event {
            RunEvent::Started { .. } => {
                let start = self.agent("lifecycle", json!({"phase": "start", "startedAt": self.started_at}), now);
                let model = self.agent(
                    "lifecycle",
                    json!({"phase": "model", "provider": self.provider, "model": self.model}),
                    now,
                );
                vec![start, model]
            }
            RunEvent::Text { delta } => {
                self.text.push_str(delta);
                let item_id = format!("{}:{}", self.run_id, self.item);
                let a = self.agent("assistant", json!({"text": self.text, "delta": delta, "itemId": item_id}), now);
                let c = self.chat("delta", json!({"deltaText": delta, "message": self.message(now)}));
                vec![a, c]
            }
            RunEvent::Fallback { selected, used, reason, .. } => {
                // The model changes for the rest of the run: say so the way a run announces its model.
                let (provider, model) = used.split_once('/').unwrap_or(("", used));
                self.provider = provider.into();
                self.model = model.into();
                vec![self.agent(
                    "lifecycle",
                    json!({
                        "phase": "model", "provider": self.provider, "model": self.model,
                        "fallback": {"selected": selected, "reason": reason},
                    }),
                    now,
                )]
            }
            RunEvent::Thinking { delta } => {
                vec![self.agent("thinking", json!({"delta": delta}), now)]
            }
            RunEvent::ToolStart { id, name, arguments } => {
                self.item += 1;
                self.tool_started.insert(id.clone(), now);
                let item = self.agent(
                    "item",
                    json!({
                        "itemId": format!("tool:{id}"), "toolCallId": id, "name": name, "kind": "tool",
                        "phase": "start", "title": name, "status": "running", "startedAt": now,
                    }),
                    now,
                );
                let mut tool = self.agent(
                    "tool",
                    json!({"phase": "start", "name": name, "toolCallId": id, "args": arguments}),
                    now,
                );
                tool.needs_cap = Some("tool-events");
                vec![item, tool]
            }
            RunEvent::ToolEnd { id, name, is_error, output } => {
                let started = self.tool_started.remove(id).unwrap_or(now);
                let status = if *is_error { "failed" } else { "completed" };
                let item = self.agent(
                    "item",
                    json!({
                        "itemId": format!("tool:{id}"), "toolCallId": id, "name": name, "kind": "tool",
                        "phase": "end", "title": name, "status": status, "startedAt": started, "endedAt": now,
                    }),
                    now,
                );
                let mut tool = self.agent(
                    "tool",
                    json!({
                        "phase": "result", "name": name, "toolCallId": id, "isError": is_error,
                        "result": {"content": [{"type": "text", "text": output}]},
                    }),
                    now,
                );
                tool.needs_cap = Some("tool-events");
                vec![item, tool]
            }
            RunEvent::Done { text, stop_reason, usage, .. } => {
                // The run's own text is the truth (deltas may have been merged or missed).
                self.text = text.clone();
                let usage_ev =
                    self.agent("usage", json!({"inputTokens": usage.input, "outputTokens": usage.output}), now);
                let end = self.agent(
                    "lifecycle",
                    json!({"phase": "end", "startedAt": self.started_at, "endedAt": now, "aborted": false, "stopReason": stop_reason}),
                    now,
                );
                let final_ = self.chat(
                    "final",
                    json!({"stopReason": stop_reason, "message": self.message(now), "usage": usage_json(usage)}),
                );
                vec![usage_ev, end, final_]
            }
            RunEvent::Error { kind, message, text, .. } => {
                self.text = text.clone();
                if kind == "aborted" {
                    let end = self.agent(
                        "lifecycle",
                        json!({"phase": "end", "startedAt": self.started_at, "endedAt": now, "aborted": true, "stopReason": "aborted"}),
                        now,
                    );
                    let mut extra = json!({"stopReason": "aborted"});
                    if !self.text.is_empty() {
                        extra["message"] = self.message(now);
                    }
                    vec![end, self.chat("aborted", extra)]
                } else {
                    let err = self.agent(
                        "lifecycle",
                        json!({"phase": "error", "startedAt": self.started_at, "endedAt": now, "error": message, "errorKind": kind}),
                        now,
                    );
                    let mut extra =
                        json!({"errorMessage": message, "errorKind": chat_error_kind(kind), "stopReason": "error"});
                    if !self.text.is_empty() {
                        extra["message"] = self.message(now);
                    }
                    vec![err, self.chat("error", extra)]
                }
            }
        }
    }
}

/// Usage in the protocol's field names.
pub fn usage_json(u: &Usage) -> Value {
    json!({
        "input": u.input, "output": u.output, "cacheRead": u.cache_read, "cacheWrite": u.cache_write,
        "total": u.total_tokens, "totalTokens": u.total_tokens, "cost": u.cost.total,
    })
}

/// The ending a final run event describes, if it is one.
pub fn ending(event: &RunEvent, now: i64) -> Option<Ending> {
    match event {
        RunEvent::Done { text, stop_reason, usage, .. } => Some(Ending {
            status: "ok",
            text: text.clone(),
            stop_reason: stop_reason.clone(),
            error: None,
            error_kind: None,
            usage: *usage,
            ended_at: now,
        }),
        RunEvent::Error { kind, message, text, .. } => Some(Ending {
            status: if kind == "aborted" { "aborted" } else { "error" },
            text: text.clone(),
            stop_reason: if kind == "aborted" { "aborted".into() } else { "error".into() },
            error: Some(message.clone()),
            error_kind: Some(kind.clone()),
            usage: Usage::default(),
            ended_at: now,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_with_a_tool_becomes_agent_and_chat_events() {
        let mut s = RunStream::new("r1", "agent:main:main", "main", "mock/m1", 100);
        let started = RunEvent::Started {
            run_id: "r1".into(),
            session_key: "agent:main:main".into(),
            agent_id: "main".into(),
            model: "mock/m1".into(),
        };
        let mut all = s.on_event(&started, 101);
        all.extend(s.on_event(&RunEvent::Text { delta: "Hel".into() }, 102));
        all.extend(s.on_event(&RunEvent::Text { delta: "lo".into() }, 103));
        all.extend(s.on_event(
            &RunEvent::ToolStart { id: "c1".into(), name: "ls".into(), arguments: json!({"path": "."}) },
            104,
        ));
        all.extend(s.on_event(
            &RunEvent::ToolEnd { id: "c1".into(), name: "ls".into(), is_error: false, output: "a.txt".into() },
            105,
        ));
        let done = RunEvent::Done {
            run_id: "r1".into(),
            text: "Hello".into(),
            stop_reason: "stop".into(),
            usage: Usage { input: 3, output: 2, total_tokens: 5, ..Default::default() },
            model_calls: 2,
        };
        all.extend(s.on_event(&done, 106));

        let agent_seqs: Vec<u64> =
            all.iter().filter(|o| o.event == "agent").map(|o| o.payload["seq"].as_u64().unwrap()).collect();
        assert_eq!(agent_seqs, (1..=agent_seqs.len() as u64).collect::<Vec<_>>(), "one numbering, in order");
        assert_eq!(all[0].payload["data"]["phase"], "start");
        assert_eq!(all[1].payload["data"], json!({"phase": "model", "provider": "mock", "model": "m1"}));
        let deltas: Vec<&Outgoing> = all.iter().filter(|o| o.payload["state"] == "delta").collect();
        assert_eq!(deltas[1].payload["message"]["content"][0]["text"], "Hello", "cumulative message");
        assert_eq!(deltas[1].payload["deltaText"], "lo");
        assert_eq!(deltas[1].payload["seq"], all[4].payload["seq"], "chat mirrors the agent seq");
        assert!(all.iter().any(|o| o.needs_cap == Some("tool-events") && o.payload["data"]["phase"] == "result"));
        let last = all.last().unwrap();
        assert_eq!(
            (last.event, &last.payload["state"], &last.payload["stopReason"]),
            ("chat", &json!("final"), &json!("stop"))
        );
        assert_eq!(ending(&done, 106).unwrap().status, "ok");
    }

    #[test]
    fn aborts_and_errors_end_the_chat_stream_precisely() {
        let mut s = RunStream::new("r2", "k", "main", "p/m", 0);
        s.on_event(&RunEvent::Text { delta: "par".into() }, 1);
        let aborted = RunEvent::Error {
            run_id: "r2".into(),
            kind: "aborted".into(),
            message: "the run was aborted".into(),
            hint: None,
            text: "par".into(),
        };
        let out = s.on_event(&aborted, 2);
        assert_eq!(out[1].payload["state"], "aborted");
        assert_eq!(out[1].payload["message"]["content"][0]["text"], "par");
        assert_eq!(ending(&aborted, 2).unwrap().status, "aborted");

        let mut s = RunStream::new("r3", "k", "main", "p/m", 0);
        let failed = RunEvent::Error {
            run_id: "r3".into(),
            kind: "rate_limited".into(),
            message: "slow down".into(),
            hint: None,
            text: String::new(),
        };
        let out = s.on_event(&failed, 1);
        assert_eq!(out[1].payload["state"], "error");
        assert_eq!(out[1].payload["errorKind"], "rate_limit");
        assert!(out[1].payload.get("message").is_none());
    }
}
