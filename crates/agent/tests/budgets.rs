//! Budgets that protect the user's wallet, on by default: the daily token and cost limits
//! (checked before each model call, kept across a restart), tool-loop detection, and what
//! each run leaves in the metrics and in `observability.sqlite`.

mod common;

use clawline_agent::RunEvent;
use clawline_core::message::{ContentBlock, Message};
use clawline_core::transcript::Record;
use clawline_observe::metrics;
use clawline_store::RunStatus;
use clawline_testkit::model_server::{Api, ModelServer, Reply};
use common::{KEY, config_with, final_event, runtime, runtime_for, turn};
use serde_json::json;

fn last_records(records: &[Record], n: usize) -> Vec<String> {
    records[records.len().saturating_sub(n)..]
        .iter()
        .map(|r| match r {
            Record::Message(m) => match &m.message {
                Message::ToolResult(t) => {
                    let text: String = t
                        .content
                        .iter()
                        .filter_map(|b| match b {
                            ContentBlock::Text { text } => Some(text.as_str()),
                            _ => None,
                        })
                        .collect();
                    format!("toolResult{}:{text}", if t.is_error { "!" } else { "" })
                }
                Message::Assistant(_) => "assistant".into(),
                Message::User(_) => "user".into(),
            },
            Record::CustomMessage(c) => format!("custom:{}", c.custom_type),
            _ => "other".into(),
        })
        .collect()
}

fn rows(state: &std::path::Path, sql: &str) -> i64 {
    let conn = clawline_observe::journal::open_read_only(&state.join("observability.sqlite")).expect("journal");
    conn.query_row(sql, [], |r| r.get(0)).expect(sql)
}

#[tokio::test]
async fn a_spent_daily_token_budget_stops_the_next_run_before_any_model_call_even_after_a_restart() {
    // The day is UTC's; a run across midnight would start a new one halfway through.
    const DAY: i64 = 24 * 3600 * 1000;
    let into_day = clawline_store::now_ms().rem_euclid(DAY);
    if into_day > DAY - 30_000 {
        tokio::time::sleep(std::time::Duration::from_millis((DAY - into_day + 1000) as u64)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    server.set_fallback(Reply::text("fine"));
    let rt = runtime(dir.path(), &server, Api::OpenAi, "budget: { dailyTokens: 1 }").await;

    let (_, events) = turn(&rt, None, "first").await;
    assert!(matches!(final_event(&events), RunEvent::Done { .. }), "{events:?}");
    assert_eq!(server.requests().len(), 1);

    let (handle, events) = turn(&rt, Some("other"), "second").await;
    let RunEvent::Error { kind, message, hint, .. } = final_event(&events) else { panic!("{events:?}") };
    assert_eq!(kind, "budget");
    assert!(message.starts_with("stopped: agent `main` has used "), "{message}");
    assert!(message.contains("its daily limit is 1 (budget.dailyTokens)"), "{message}");
    assert!(hint.as_deref().unwrap_or_default().contains("00:00 UTC"), "{hint:?}");
    assert_eq!(server.requests().len(), 1, "no model call was made");
    let (_, records) = rt.store().session_with_transcript(&handle.session_key).await.unwrap().unwrap();
    assert_eq!(last_records(&records, 2), ["user", "custom:run-failed"]);
    assert_eq!(rt.store().get_run(&handle.run_id).await.unwrap().unwrap().status, RunStatus::Error);
    let m = rt.observer().metrics();
    assert_eq!(m.value(&metrics::BUDGET_STOPS, &["main", "daily_tokens"]), Some(1.0));
    assert_eq!(m.value(&metrics::TURNS, &["main", "other", "budget"]), Some(1.0));
    assert_eq!(m.value(&metrics::RUNS_ACTIVE, &[]), Some(0.0));

    // A restart does not reset the day: the ledger starts from observability.sqlite.
    rt.observer().flush().await;
    drop(rt);
    let rt = runtime(dir.path(), &server, Api::OpenAi, "budget: { dailyTokens: 1 }").await;
    let (_, events) = turn(&rt, None, "after restart").await;
    assert!(matches!(final_event(&events), RunEvent::Error { kind, .. } if kind == "budget"), "{events:?}");
    assert_eq!(server.requests().len(), 1);

    // Raising the limit is all it takes; nothing was left broken.
    rt.observer().flush().await;
    drop(rt);
    let rt = runtime(dir.path(), &server, Api::OpenAi, "budget: { dailyTokens: 0 }").await;
    let (_, events) = turn(&rt, None, "no limit now").await;
    assert!(matches!(final_event(&events), RunEvent::Done { text, .. } if text == "fine"), "{events:?}");
}

#[tokio::test]
async fn a_spent_daily_cost_budget_stops_the_run_with_the_amounts() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::Anthropic, Some(KEY)).await;
    server.set_fallback(Reply::text("ok"));
    let rt = runtime(dir.path(), &server, Api::Anthropic, "budget: { dailyCostUsd: 0.000001, dailyTokens: 0 }").await;
    let (_, events) = turn(&rt, None, "one").await;
    assert!(matches!(final_event(&events), RunEvent::Done { .. }), "{events:?}");
    let (_, events) = turn(&rt, None, "two").await;
    let RunEvent::Error { kind, message, .. } = final_event(&events) else { panic!("{events:?}") };
    assert_eq!(kind, "budget");
    assert!(
        message.contains("has spent $0.00 today (UTC); its daily limit is $0.00 (budget.dailyCostUsd)"),
        "{message}"
    );
    assert_eq!(server.requests().len(), 1);
    assert_eq!(rt.observer().metrics().value(&metrics::BUDGET_STOPS, &["main", "daily_cost"]), Some(1.0));
}

#[tokio::test]
async fn the_same_call_a_fourth_time_stops_the_run_and_leaves_no_call_unanswered() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::Anthropic, Some(KEY)).await;
    server.set_fallback(Reply::tool("again", "read", json!({"path": "AGENTS.md"})));
    let rt = runtime(dir.path(), &server, Api::Anthropic, "maxTurns: 50").await;
    let (handle, events) = turn(&rt, None, "read it until you are sure").await;
    let RunEvent::Error { kind, message, .. } = final_event(&events) else { panic!("{events:?}") };
    assert_eq!(kind, "tool_loop");
    assert_eq!(
        message,
        "stopped: the model asked for `read` with the same arguments 4 times in this run \
         (tools.loopDetection.maxIdenticalCalls is 3)"
    );
    assert_eq!(server.requests().len(), 4, "three reads ran, the fourth was refused");
    let ran = events.iter().filter(|e| matches!(e, RunEvent::ToolEnd { .. })).count();
    assert_eq!(ran, 3);
    let (_, records) = rt.store().session_with_transcript(&handle.session_key).await.unwrap().unwrap();
    let tail = last_records(&records, 3);
    assert_eq!(tail[0], "assistant");
    assert!(tail[1].starts_with("toolResult!:Not run: stopped: the model asked for `read`"), "{tail:?}");
    assert_eq!(tail[2], "custom:run-failed");
    let m = rt.observer().metrics();
    assert_eq!(m.value(&metrics::TOOL_CALLS, &["read", "ok"]), Some(3.0));
    assert_eq!(m.value(&metrics::TOOL_CALLS, &["read", "not_run"]), Some(1.0));
    assert_eq!(m.value(&metrics::BUDGET_STOPS, &["main", "tool_loop"]), Some(1.0));

    // The strict twin accepts the next turn: the refused call got its result.
    server.push(Reply::text("ok, stopping"));
    let (_, events) = turn(&rt, None, "stop").await;
    assert!(matches!(final_event(&events), RunEvent::Done { .. }), "{events:?}");
}

#[tokio::test]
async fn failures_in_a_row_stop_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    for i in 0..20 {
        server.push(Reply::tool(&format!("c{i}"), "read", json!({"path": format!("missing-{i}.md")})));
    }
    let rt = runtime(dir.path(), &server, Api::OpenAi, "maxTurns: 50").await;
    let (_, events) = turn(&rt, None, "find the file").await;
    let RunEvent::Error { kind, message, .. } = final_event(&events) else { panic!("{events:?}") };
    assert_eq!(kind, "tool_loop");
    assert_eq!(message, "stopped: 8 tool calls failed in a row (tools.loopDetection.maxConsecutiveErrors)");
    assert_eq!(server.requests().len(), 8);
}

#[tokio::test]
async fn loop_detection_can_be_turned_off_and_max_turns_still_holds() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    server.set_fallback(Reply::tool("again", "ls", json!({})));
    let config = config_with(
        dir.path(),
        &server,
        Api::OpenAi,
        "maxTurns: 6",
        "tools: { loopDetection: { enabled: false } },",
        &[],
    );
    assert!(config.tools.loop_detection.is_none());
    let rt = runtime_for(dir.path(), config);
    let (_, events) = turn(&rt, None, "loop").await;
    assert!(matches!(final_event(&events), RunEvent::Error { kind, .. } if kind == "max_turns"), "{events:?}");
    assert_eq!(server.requests().len(), 6);
    assert_eq!(rt.observer().metrics().value(&metrics::BUDGET_STOPS, &["main", "max_turns"]), Some(1.0));
}

#[tokio::test]
async fn every_run_model_call_and_tool_call_is_journaled_without_content() {
    let dir = tempfile::tempdir().unwrap();
    let server = ModelServer::start(Api::OpenAi, Some(KEY)).await;
    server.push(Reply::tool("c1", "write", json!({"path": "secret-plans.md", "content": "launch at dawn"})));
    server.push(Reply::text("saved"));
    let rt = runtime(dir.path(), &server, Api::OpenAi, "").await;
    let (handle, events) = turn(&rt, None, "save my plans").await;
    assert!(matches!(final_event(&events), RunEvent::Done { .. }), "{events:?}");
    rt.observer().flush().await;
    let state = dir.path();
    assert_eq!(rows(state, "SELECT count(*) FROM runs WHERE outcome = 'ok' AND model_calls = 2 AND tool_calls = 1"), 1);
    assert_eq!(
        rows(state, "SELECT count(*) FROM model_calls WHERE outcome = 'ok' AND input_tokens > 0 AND cost_usd > 0"),
        2
    );
    assert_eq!(rows(state, "SELECT count(*) FROM tool_calls WHERE tool = 'write' AND outcome = 'ok'"), 1);
    let run_id: String = {
        let conn = clawline_observe::journal::open_read_only(&state.join("observability.sqlite")).unwrap();
        conn.query_row("SELECT run_id FROM runs", [], |r| r.get(0)).unwrap()
    };
    assert_eq!(run_id, handle.run_id);
    // Names, counts and timings only: neither the message, the arguments nor the answer.
    let bytes = std::fs::read(state.join("observability.sqlite")).unwrap();
    let wal = std::fs::read(state.join("observability.sqlite-wal")).unwrap_or_default();
    for needle in ["launch at dawn", "secret-plans", "save my plans", "saved"] {
        let found = |b: &[u8]| b.windows(needle.len()).any(|w| w == needle.as_bytes());
        assert!(!found(&bytes) && !found(&wal), "{needle} is in the observability store");
    }
    let m = rt.observer().metrics();
    assert_eq!(m.value(&metrics::TURNS, &["main", "other", "ok"]), Some(1.0));
    assert_eq!(m.value(&metrics::MODEL_CALLS, &["twin", "twin-model", "ok"]), Some(2.0));
    assert!(m.value(&metrics::MODEL_TOKENS, &["main", "twin/twin-model", "input"]).unwrap_or(0.0) > 0.0);
    assert!(m.value(&metrics::MODEL_COST, &["main", "twin/twin-model"]).unwrap_or(0.0) > 0.0);
}
