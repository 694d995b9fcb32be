//! Shared setup for agent tests: a runtime wired to a testkit model server.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use clawline_agent::{RunEvent, RunHandle, Runtime, TurnRequest, TurnStart};
use clawline_core::config::{Config, LoadContext, load};
use clawline_store::Store;
use clawline_testkit::model_server::{Api, ModelServer};

pub const KEY: &str = "sk-agent-test-123456";

/// `main_entry` is the body of `agents.entries.main` (e.g. `maxTurns: 3`).
pub fn config(state: &Path, server: &ModelServer, api: Api, main_entry: &str) -> Config {
    let api_name = match api {
        Api::OpenAi => "openai-completions",
        Api::Anthropic => "anthropic-messages",
    };
    let text = format!(
        r#"{{
          models: {{ providers: {{ twin: {{ baseUrl: "{}", api: "{api_name}", apiKey: "${{TWIN_KEY}}",
                     models: [{{ id: "twin-model", cost: {{ input: 1, output: 2 }} }}] }} }} }},
          agents: {{ defaults: {{ model: "twin/twin-model" }}, entries: {{ main: {{ {main_entry} }} }} }},
        }}"#,
        server.base_url()
    );
    let env = |k: &str| (k == "TWIN_KEY").then(|| KEY.to_string());
    let read = |_: &Path| Err("no files".to_string());
    let ctx = LoadContext {
        file_label: "test.json",
        config_dir: state,
        state_dir: state,
        env: &env,
        read_file: &read,
        presets: clawline_providers::catalog::PRESETS,
    };
    load(&text, &ctx).unwrap_or_else(|e| panic!("{e}")).config
}

pub async fn runtime(state: &Path, server: &ModelServer, api: Api, main_entry: &str) -> Runtime {
    let store = Store::open(&state.join("state").join("clawline.sqlite")).unwrap();
    Runtime::new(Arc::new(config(state, server, api, main_entry)), store).unwrap()
}

pub async fn turn(rt: &Runtime, session: Option<&str>, message: &str) -> (RunHandle, Vec<RunEvent>) {
    let started = rt
        .start_turn(TurnRequest {
            session_key: session.map(String::from),
            message: message.into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("turn refused: {e}"));
    let TurnStart::Started(mut handle) = started else { panic!("unexpected duplicate") };
    let mut events = Vec::new();
    while let Some(e) = handle.events.recv().await {
        events.push(e);
    }
    (handle, events)
}

pub fn final_event(events: &[RunEvent]) -> &RunEvent {
    events.last().expect("a run ends with an event")
}
