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
    config_with(state, server, api, main_entry, "", &[])
}

/// [`config`] with `top` spliced in at the top level and more environment variables.
pub fn config_with(
    state: &Path,
    server: &ModelServer,
    api: Api,
    main_entry: &str,
    top: &str,
    env: &[(&str, &str)],
) -> Config {
    let api_name = match api {
        Api::OpenAi => "openai-completions",
        Api::Anthropic => "anthropic-messages",
    };
    let text = format!(
        r#"{{
          models: {{ providers: {{ twin: {{ baseUrl: "{}", api: "{api_name}", apiKey: "${{TWIN_KEY}}",
                     models: [{{ id: "twin-model", cost: {{ input: 1, output: 2 }} }}] }} }} }},
          agents: {{ defaults: {{ model: "twin/twin-model" }}, entries: {{ main: {{ {main_entry} }} }} }},
          {top}
        }}"#,
        server.base_url()
    );
    let extra: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let env = move |k: &str| {
        if k == "TWIN_KEY" {
            return Some(KEY.to_string());
        }
        extra.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    };
    let read = |_: &Path| Err("no files".to_string());
    let ctx = LoadContext {
        file_label: "test.json",
        config_dir: state,
        state_dir: state,
        env: &env,
        read_file: &read,
        stored: None,
        presets: clawline_providers::catalog::PRESETS,
    };
    load(&text, &ctx).unwrap_or_else(|e| panic!("{e}")).config
}

pub async fn runtime(state: &Path, server: &ModelServer, api: Api, main_entry: &str) -> Runtime {
    runtime_for(state, config(state, server, api, main_entry))
}

pub fn runtime_for(state: &Path, config: Config) -> Runtime {
    let store = Store::open(&state.join("state").join("clawline.sqlite")).unwrap();
    Runtime::new(Arc::new(config), store).unwrap()
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
