//! The run loop: model call → tools → model call …, persisting each step as it completes.
//!
//! Every finished step is written before the next one starts: the assistant message after its
//! stream ends, each tool result as soon as its tool returns. A crash therefore loses at most
//! the step in flight, never a finished one, and never leaves half a record. The loop stops
//! when the model answers without tool calls, at `maxTurns` model calls, when the agent's daily
//! budget is spent (checked before every model call), when the tool-loop guard sees the same
//! call too often or too many failures in a row, at the run timeout, or on a provider error;
//! each ending is recorded in the transcript and reported as one final [`RunEvent`]. Every
//! model call, tool call and the run itself are reported to the [`Observer`] as they finish.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clawline_core::config::{BudgetSettings, LoopDetection};
use clawline_core::message::{AssistantMessage, ContentBlock, Message, StopReason, ToolResultMessage, Usage};
use clawline_core::transcript::NewRecord;
use clawline_observe::trace::{Attr, Span, SpanKind, TraceContext, now_unix_nanos};
use clawline_observe::{AuditRow, ModelCallRow, Record, RunRow, ToolCallRow, metrics};
use clawline_providers::{ModelRequest, Router, StreamEvent};
use clawline_store::{RunStatus, Store, UsageDelta};
use serde_json::json;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::events::RunEvent;
use crate::lanes::LaneGuard;
use crate::loop_guard::LoopGuard;
use crate::observer::Observer;
use crate::tools::{self, ToolContext};

const PREVIEW_CHARS: usize = 2000;

/// Everything one run needs.
pub(crate) struct RunParams {
    pub run_id: String,
    pub agent_id: String,
    /// Where the turn came from (`telegram`, `webchat`, `openai`, `cli`, …), for the numbers.
    pub channel: String,
    pub session_key: String,
    pub model_label: String,
    /// The routes (model × credential) each model call may take, primary first.
    pub router: Router,
    pub request: ModelRequest,
    pub tool_ctx: ToolContext,
    pub max_turns: u32,
    pub budget: BudgetSettings,
    pub loops: Option<LoopDetection>,
    pub observer: Arc<Observer>,
    /// This run's span, and the caller's span it continues (a request's `traceparent`).
    pub trace: TraceContext,
    pub trace_parent: Option<[u8; 8]>,
    pub timeout: Duration,
    pub store: Store,
    pub events: UnboundedSender<RunEvent>,
    pub lane: LaneGuard,
    /// Cancelled when someone aborts the run.
    pub cancel: CancellationToken,
}

/// What the loop accumulates; it outlives the loop future so a timeout keeps it.
#[derive(Default)]
struct State {
    text: String,
    need_separator: bool,
    partial: String,
    usage: Usage,
    model_calls: u32,
    tool_calls: u32,
    last_stop: Option<StopReason>,
    /// Whether the user was told that a fallback model answered.
    fallback_told: bool,
}

/// Who answered a model call (or failed to), for the numbers.
struct FinishedCall {
    provider: String,
    model: String,
    usage: Option<Usage>,
    /// `ok`, or the provider error class.
    outcome: &'static str,
}

enum Ending {
    Finished,
    MaxTurns,
    Failed { kind: String, message: String, hint: Option<String> },
}

fn now_ms() -> i64 {
    clawline_store::now_ms()
}

fn preview(text: &str) -> String {
    let (p, cut) = clawline_core::text::truncate_chars(text, PREVIEW_CHARS);
    if cut { format!("{p}…") } else { p.to_string() }
}

impl RunParams {
    fn emit(&self, e: RunEvent) {
        // A client that went away must not stop the run.
        let _ = self.events.send(e);
    }

    async fn persist(&self, records: Vec<NewRecord>, usage: Option<UsageDelta>) -> Result<(), Ending> {
        self.store.append(&self.session_key, records, usage).await.map(|_| ()).map_err(|e| Ending::Failed {
            kind: "store".into(),
            message: format!("could not save the run: {e}"),
            hint: Some("run `clawline doctor`".into()),
        })
    }

    async fn one_call(&mut self, state: &mut State) -> Result<AssistantMessage, Ending> {
        state.partial.clear();
        let events = self.events.clone();
        let mut on_event = |e: StreamEvent| match e {
            StreamEvent::TextDelta(d) if !d.is_empty() => {
                if state.need_separator {
                    state.need_separator = false;
                    state.text.push_str("\n\n");
                    let _ = events.send(RunEvent::Text { delta: "\n\n".into() });
                }
                state.text.push_str(&d);
                state.partial.push_str(&d);
                let _ = events.send(RunEvent::Text { delta: d });
            }
            StreamEvent::ThinkingDelta(d) => {
                let _ = events.send(RunEvent::Thinking { delta: d });
            }
            _ => {}
        };
        state.model_calls += 1;
        let (started, started_ms, start_ns) = (Instant::now(), now_ms(), now_unix_nanos());
        // The model call's own span; its id goes to the provider so the two traces join.
        let call_span = self.trace.child();
        if self.observer.tracing() || self.trace_parent.is_some() {
            self.request.traceparent = Some(call_span.header());
        }
        let result = self.router.stream(&self.request, &mut on_event).await;
        let call = match &result {
            Ok(a) => FinishedCall {
                provider: a.message.provider.clone(),
                model: a.message.model.clone(),
                usage: Some(a.message.usage),
                outcome: "ok",
            },
            Err(e) => {
                let (provider, model) = self.router.current().map_or_else(
                    || (String::new(), self.request.model.clone()),
                    |r| (r.model.provider.clone(), r.model.model.clone()),
                );
                FinishedCall { provider, model, usage: None, outcome: e.kind.as_str() }
            }
        };
        self.observe_call(&call, (started, started_ms, start_ns), call_span).await;
        match result {
            Ok(answer) => {
                // Saved with the message: a later timeout must not save this text again.
                state.partial.clear();
                if let Some(note) = answer.fallback
                    && !state.fallback_told
                {
                    state.fallback_told = true;
                    self.emit(RunEvent::Fallback {
                        notice: note.notice(),
                        selected: note.selected,
                        used: note.used,
                        reason: note.reason,
                    });
                }
                Ok(answer.message)
            }
            Err(err) => {
                if !state.partial.is_empty() {
                    let partial = self.partial_message(&state.partial, StopReason::Error, Some(err.to_string()));
                    self.persist(vec![NewRecord::Message(Message::Assistant(partial))], None).await?;
                }
                Err(Ending::Failed {
                    kind: err.kind.as_str().to_string(),
                    message: err.to_string(),
                    hint: err.hint().map(String::from),
                })
            }
        }
    }

    /// Reports one model call: metrics, the journal row, the charge against the budget, and
    /// its span when traces are exported.
    async fn observe_call(
        &self,
        call: &FinishedCall,
        (started, started_ms, start_ns): (Instant, i64, u64),
        span: TraceContext,
    ) {
        let elapsed = started.elapsed();
        let (provider, model, outcome) = (call.provider.as_str(), call.model.as_str(), call.outcome);
        let m = self.observer.metrics();
        let label = format!("{provider}/{model}");
        m.inc(&metrics::MODEL_CALLS, &[provider, model, outcome]);
        m.observe(&metrics::MODEL_LATENCY, &[provider, model], elapsed.as_secs_f64());
        if outcome != "ok" {
            m.inc(&metrics::ERRORS, &[outcome]);
        }
        let u = call.usage.unwrap_or_default();
        for (kind, n) in
            [("input", u.input), ("output", u.output), ("cache_read", u.cache_read), ("cache_write", u.cache_write)]
        {
            if n > 0 {
                m.add(&metrics::MODEL_TOKENS, &[&self.agent_id, &label, kind], n as f64);
            }
        }
        if u.cost.total > 0.0 {
            m.add(&metrics::MODEL_COST, &[&self.agent_id, &label], u.cost.total);
        }
        let tokens = u.input + u.output + u.cache_read + u.cache_write;
        self.observer.ledger().charge(&self.agent_id, tokens, u.cost.total, now_ms());
        if self.observer.tracing() {
            let mut attributes = vec![
                ("gen_ai.operation.name", Attr::Str("chat".into())),
                ("gen_ai.provider.name", Attr::Str(provider.to_string())),
                ("gen_ai.request.model", Attr::Str(self.request.model.clone())),
                ("gen_ai.response.model", Attr::Str(model.to_string())),
                ("clawline.run_id", Attr::Str(self.run_id.clone())),
            ];
            if let Some(u) = call.usage {
                attributes
                    .push(("gen_ai.usage.input_tokens", Attr::Int((u.input + u.cache_read + u.cache_write) as i64)));
                attributes.push(("gen_ai.usage.output_tokens", Attr::Int(u.output as i64)));
                attributes.push(("clawline.cost_usd", Attr::Double(u.cost.total)));
            }
            let error = (outcome != "ok").then(|| outcome.to_string());
            if let Some(kind) = &error {
                attributes.push(("error.type", Attr::Str(kind.clone())));
            }
            self.observer.span(Span {
                context: span,
                parent_span_id: Some(self.trace.span_id),
                name: format!("chat {model}"),
                kind: SpanKind::Client,
                start_unix_nanos: start_ns,
                end_unix_nanos: now_unix_nanos(),
                attributes,
                error,
            });
        }
        self.observer
            .record(Record::ModelCall(ModelCallRow {
                run_id: self.run_id.clone(),
                agent: self.agent_id.clone(),
                channel: self.channel.clone(),
                provider: provider.to_string(),
                model: model.to_string(),
                started_ms,
                duration_ms: elapsed.as_millis() as u64,
                input_tokens: u.input,
                output_tokens: u.output,
                cache_read_tokens: u.cache_read,
                cache_write_tokens: u.cache_write,
                cost_usd: u.cost.total,
                outcome: outcome.to_string(),
            }))
            .await;
    }

    /// An audit row for an `exec` call: every command the agent ran, or tried to.
    async fn audit_exec(&self, arguments: &serde_json::Value, outcome: &str) {
        let command = arguments.get("command").and_then(serde_json::Value::as_str).unwrap_or_default();
        let row = AuditRow::now(format!("agent:{}", self.agent_id), "tool.exec", command, outcome);
        self.observer.record(Record::Audit(row.detail(format!("run {}", self.run_id)))).await;
    }

    /// Reports one tool call.
    async fn observe_tool(&self, name: &str, started_ms: i64, elapsed: Duration, outcome: &str) {
        let m = self.observer.metrics();
        // The name came from the model: only known tools get their own series.
        let label = if tools::is_known(name) { name } else { "unknown" };
        if self.observer.tracing() {
            let end = now_unix_nanos();
            self.observer.span(Span {
                context: self.trace.child(),
                parent_span_id: Some(self.trace.span_id),
                name: format!("execute_tool {label}"),
                kind: SpanKind::Internal,
                start_unix_nanos: end.saturating_sub(elapsed.as_nanos() as u64),
                end_unix_nanos: end,
                attributes: vec![
                    ("gen_ai.operation.name", Attr::Str("execute_tool".into())),
                    ("gen_ai.tool.name", Attr::Str(label.to_string())),
                    ("clawline.outcome", Attr::Str(outcome.to_string())),
                    ("clawline.run_id", Attr::Str(self.run_id.clone())),
                ],
                error: (outcome == "error").then(|| "the tool reported an error".to_string()),
            });
        }
        m.inc(&metrics::TOOL_CALLS, &[label, outcome]);
        if outcome == "error" {
            m.inc(&metrics::ERRORS, &["tool"]);
        }
        self.observer
            .record(Record::ToolCall(ToolCallRow {
                run_id: self.run_id.clone(),
                agent: self.agent_id.clone(),
                tool: label.to_string(),
                started_ms,
                duration_ms: elapsed.as_millis() as u64,
                outcome: outcome.to_string(),
            }))
            .await;
    }

    fn partial_message(&self, text: &str, stop: StopReason, error: Option<String>) -> AssistantMessage {
        let (api, provider, model) = match self.router.current() {
            Some(r) => (r.client.settings().api.as_str().to_string(), r.model.provider.clone(), r.model.model.clone()),
            None => (String::new(), String::new(), self.request.model.clone()),
        };
        AssistantMessage {
            content: vec![ContentBlock::Text { text: text.to_string() }],
            api,
            provider,
            model,
            usage: Usage::default(),
            stop_reason: stop,
            timestamp: now_ms(),
            response_id: None,
            error_message: error,
        }
    }

    async fn run_loop(&mut self, state: &mut State) -> Result<Ending, Ending> {
        let mut guard = LoopGuard::new(self.loops);
        loop {
            if state.model_calls >= self.max_turns {
                return Ok(Ending::MaxTurns);
            }
            if let Err(over) = self.observer.check_budget(&self.agent_id, &self.budget, now_ms()).await {
                self.observer.metrics().inc(&metrics::BUDGET_STOPS, &[&self.agent_id, over.limit.as_str()]);
                return Ok(Ending::Failed { kind: "budget".into(), message: over.message(), hint: Some(over.hint()) });
            }
            let msg = self.one_call(state).await?;
            if !msg.text().is_empty() {
                state.need_separator = true;
            }
            state.usage.add(&msg.usage);
            state.last_stop = Some(msg.stop_reason);
            let usage = UsageDelta {
                input: msg.usage.input + msg.usage.cache_read + msg.usage.cache_write,
                output: msg.usage.output,
                total: msg.usage.total_tokens,
                cost_usd: msg.usage.cost.total,
                model: Some(self.model_label.clone()),
            };
            let calls: Vec<(String, String, serde_json::Value)> =
                msg.tool_calls().map(|(i, n, a)| (i.to_string(), n.to_string(), a.clone())).collect();
            let stop = msg.stop_reason;
            self.persist(vec![NewRecord::Message(Message::Assistant(msg.clone()))], Some(usage)).await?;
            self.request.messages.push(Message::Assistant(msg));
            if stop != StopReason::ToolUse || calls.is_empty() {
                // Calls the model made but did not hand over (e.g. cut off at the token limit) get
                // a result now, so the transcript never holds an unanswered call.
                for (id, name, _) in calls {
                    let text = "Not run: the answer was cut off before the call was complete.".to_string();
                    self.record_result(&id, &name, tools::ToolOutput::err(text)).await?;
                }
                return Ok(Ending::Finished);
            }
            for (i, (id, name, arguments)) in calls.iter().enumerate() {
                if let Err(stop) = guard.before(name, arguments) {
                    return self.stop_for_loop(&calls[i..], stop.message).await;
                }
                self.emit(RunEvent::ToolStart { id: id.clone(), name: name.clone(), arguments: arguments.clone() });
                let (started, started_ms) = (Instant::now(), now_ms());
                if name == "exec" {
                    // One row before it runs (an abort may cut it off), one when it ends.
                    self.audit_exec(arguments, "started").await;
                }
                let out = tools::call(name, arguments, &self.tool_ctx).await;
                state.tool_calls += 1;
                let is_error = out.is_error;
                self.observe_tool(name, started_ms, started.elapsed(), if is_error { "error" } else { "ok" }).await;
                if name == "exec" {
                    self.audit_exec(arguments, if is_error { "error" } else { "ok" }).await;
                }
                self.emit(RunEvent::ToolEnd {
                    id: id.clone(),
                    name: name.clone(),
                    is_error,
                    output: preview(&out.text),
                });
                self.record_result(id, name, out).await?;
                if let Err(stop) = guard.after(is_error) {
                    return self.stop_for_loop(&calls[i + 1..], stop.message).await;
                }
            }
        }
    }

    /// Ends the run for a tool loop: the calls not run get a result saying so (the transcript
    /// never holds an unanswered call), then the run stops with `message`.
    async fn stop_for_loop(
        &mut self,
        not_run: &[(String, String, serde_json::Value)],
        message: String,
    ) -> Result<Ending, Ending> {
        for (id, name, _) in not_run {
            self.observe_tool(name, now_ms(), Duration::ZERO, "not_run").await;
            self.record_result(id, name, tools::ToolOutput::err(format!("Not run: {message}"))).await?;
        }
        self.observer.metrics().inc(&metrics::BUDGET_STOPS, &[&self.agent_id, "tool_loop"]);
        Ok(Ending::Failed {
            kind: "tool_loop".into(),
            message,
            hint: Some("ask again with a different approach, or change tools.loopDetection".into()),
        })
    }

    async fn record_result(&mut self, id: &str, name: &str, out: tools::ToolOutput) -> Result<(), Ending> {
        let result = Message::ToolResult(ToolResultMessage {
            tool_call_id: id.to_string(),
            tool_name: name.to_string(),
            content: vec![ContentBlock::Text { text: out.text }],
            is_error: out.is_error,
            timestamp: now_ms(),
        });
        self.persist(vec![NewRecord::Message(result.clone())], None).await?;
        self.request.messages.push(result);
        Ok(())
    }
}

/// Records a run that failed before its first model call (the user message is already stored).
pub(crate) async fn fail_before_start(
    store: &Store,
    run_id: &str,
    session_key: &str,
    events: &UnboundedSender<RunEvent>,
    message: String,
) {
    let note = NewRecord::CustomMessage {
        custom_type: "run-failed".into(),
        content: message.clone(),
        details: Some(json!({"runId": run_id, "kind": "store"})),
    };
    let _ = store.append(session_key, vec![note], None).await;
    let _ = store.finish_run(run_id, RunStatus::Error, json!({"error": message, "kind": "store"})).await;
    tracing::error!(run_id, session = session_key, error = %message, "run failed before it started");
    let _ = events.send(RunEvent::Error {
        run_id: run_id.to_string(),
        kind: "store".into(),
        message,
        hint: Some("run `clawline doctor`".into()),
        text: String::new(),
    });
}

/// Runs to the end, records the outcome, and sends the final event.
pub(crate) async fn execute(mut p: RunParams) {
    let mut state = State::default();
    let (started_ms, start_ns) = (now_ms(), now_unix_nanos());
    p.observer.metrics().add(&metrics::RUNS_ACTIVE, &[], 1.0);
    let timeout = p.timeout;
    let cancel = p.cancel.clone();
    let outcome = tokio::select! {
        r = tokio::time::timeout(timeout, p.run_loop(&mut state)) => r.map_err(|_| "timeout"),
        () = cancel.cancelled() => Err("aborted"),
    };
    let ending = match outcome {
        Ok(Ok(e)) | Ok(Err(e)) => e,
        Err(why) => {
            let note = if why == "aborted" { "run aborted" } else { "run timed out" };
            if !state.partial.is_empty() {
                let partial = p.partial_message(&state.partial, StopReason::Aborted, Some(note.into()));
                let _ = p.persist(vec![NewRecord::Message(Message::Assistant(partial))], None).await;
            }
            if why == "aborted" {
                Ending::Failed { kind: "aborted".into(), message: "the run was aborted".into(), hint: None }
            } else {
                Ending::Failed {
                    kind: "timeout".into(),
                    message: format!("the run took longer than {} s and was stopped", timeout.as_secs()),
                    hint: Some("raise agents.defaults.timeoutSeconds, or ask for smaller steps".into()),
                }
            }
        }
    };
    let (status, event, note) = match ending {
        Ending::Finished => {
            let stop = state.last_stop.map_or("stop", StopReason::as_str).to_string();
            let result =
                json!({"text": state.text, "stopReason": stop, "usage": state.usage, "modelCalls": state.model_calls});
            let event = RunEvent::Done {
                run_id: p.run_id.clone(),
                text: state.text.clone(),
                stop_reason: stop,
                usage: state.usage,
                model_calls: state.model_calls,
            };
            (RunStatus::Ok, (event, result), None)
        }
        Ending::MaxTurns => {
            p.observer.metrics().inc(&metrics::BUDGET_STOPS, &[&p.agent_id, "max_turns"]);
            let message = format!("stopped after {} model calls (agents.defaults.maxTurns)", state.model_calls);
            let note =
                NewRecord::CustomMessage { custom_type: "max-turns".into(), content: message.clone(), details: None };
            let result = json!({"text": state.text, "error": message, "kind": "max_turns", "usage": state.usage});
            let event = RunEvent::Error {
                run_id: p.run_id.clone(),
                kind: "max_turns".into(),
                message,
                hint: Some("raise agents.defaults.maxTurns if the task really needs more steps".into()),
                text: state.text.clone(),
            };
            (RunStatus::Error, (event, result), Some(note))
        }
        Ending::Failed { kind, message, hint } => {
            let status = if kind == "timeout" || kind == "aborted" { RunStatus::Aborted } else { RunStatus::Error };
            let note = NewRecord::CustomMessage {
                custom_type: "run-failed".into(),
                content: message.clone(),
                details: Some(json!({"runId": p.run_id, "kind": kind})),
            };
            let result = json!({"text": state.text, "error": message, "kind": kind, "usage": state.usage});
            let event = RunEvent::Error { run_id: p.run_id.clone(), kind, message, hint, text: state.text.clone() };
            (status, (event, result), Some(note))
        }
    };
    if let Some(note) = note
        && let Err(e) = p.store.append(&p.session_key, vec![note], None).await
    {
        tracing::error!(run_id = %p.run_id, error = %e, "could not record how the run ended");
    }
    let (event, result) = event;
    let outcome = match &event {
        RunEvent::Error { kind, .. } => kind.clone(),
        _ => "ok".to_string(),
    };
    let m = p.observer.metrics();
    m.inc(&metrics::TURNS, &[&p.agent_id, &p.channel, &outcome]);
    if outcome != "ok" && outcome != "aborted" {
        // Model-call failures were counted per call; these are the run-level stops.
        m.inc(&metrics::ERRORS, &[&format!("run_{outcome}")]);
    }
    m.add(&metrics::RUNS_ACTIVE, &[], -1.0);
    if p.observer.tracing() {
        p.observer.span(Span {
            context: p.trace,
            parent_span_id: p.trace_parent,
            name: format!("invoke_agent {}", p.agent_id),
            kind: SpanKind::Server,
            start_unix_nanos: start_ns,
            end_unix_nanos: now_unix_nanos(),
            attributes: vec![
                ("gen_ai.operation.name", Attr::Str("invoke_agent".into())),
                ("gen_ai.agent.id", Attr::Str(p.agent_id.clone())),
                ("gen_ai.request.model", Attr::Str(p.model_label.clone())),
                (
                    "gen_ai.usage.input_tokens",
                    Attr::Int((state.usage.input + state.usage.cache_read + state.usage.cache_write) as i64),
                ),
                ("gen_ai.usage.output_tokens", Attr::Int(state.usage.output as i64)),
                ("clawline.run_id", Attr::Str(p.run_id.clone())),
                ("clawline.channel", Attr::Str(p.channel.clone())),
                ("clawline.outcome", Attr::Str(outcome.clone())),
                ("clawline.model_calls", Attr::Int(state.model_calls.into())),
                ("clawline.tool_calls", Attr::Int(state.tool_calls.into())),
            ],
            error: (outcome != "ok").then(|| outcome.clone()),
        });
    }
    p.observer
        .record(Record::Run(RunRow {
            run_id: p.run_id.clone(),
            agent: p.agent_id.clone(),
            session_key: p.session_key.clone(),
            channel: p.channel.clone(),
            model: p.model_label.clone(),
            started_ms,
            ended_ms: now_ms(),
            outcome,
            model_calls: state.model_calls,
            tool_calls: state.tool_calls,
            input_tokens: state.usage.input + state.usage.cache_read + state.usage.cache_write,
            output_tokens: state.usage.output,
            cost_usd: state.usage.cost.total,
        }))
        .await;
    if let Err(e) = p.store.finish_run(&p.run_id, status, result).await {
        tracing::error!(run_id = %p.run_id, error = %e, "could not record the run's status");
    }
    tracing::info!(
        run_id = %p.run_id,
        session = %p.session_key,
        status = status.as_str(),
        model_calls = state.model_calls,
        input_tokens = state.usage.input,
        output_tokens = state.usage.output,
        "run finished"
    );
    p.emit(event);
    drop(p.lane);
}
