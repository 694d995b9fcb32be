//! `clawline agent --message …`: one turn, through the running gateway or in this process.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clawline_agent::{Runtime, TurnRequest, TurnStart};
use clawline_core::config::schema::LogLevel;
use serde_json::{Value, json};

use crate::cli::AgentArgs;
use crate::client;
use crate::logging::{self, Redactor};
use crate::setup::{self, Paths};

/// Prints events as they come and remembers the outcome.
struct Printer {
    json: bool,
    started: Value,
    text_open: bool,
    outcome: Option<Value>,
}

impl Printer {
    fn new(json: bool) -> Self {
        Printer { json, started: Value::Null, text_open: false, outcome: None }
    }

    fn event(&mut self, name: &str, data: Value) {
        let mut out = std::io::stdout().lock();
        match name {
            "started" => self.started = data,
            "text" if !self.json => {
                let _ = write!(out, "{}", data["delta"].as_str().unwrap_or_default());
                let _ = out.flush();
                self.text_open = true;
            }
            "tool_start" if !self.json => {
                eprintln!(
                    "{}⚙ {} {}",
                    if self.text_open { "\n" } else { "" },
                    data["name"].as_str().unwrap_or("?"),
                    data["arguments"]
                );
                self.text_open = false;
            }
            "tool_end" if !self.json => {
                let output = data["output"].as_str().unwrap_or_default();
                let first = output.lines().next().unwrap_or_default();
                eprintln!("  {} {first}", if data["isError"] == true { "✗" } else { "↳" });
            }
            "done" | "error" => self.outcome = Some(data),
            _ => {}
        }
    }

    /// Prints the result; returns the exit code.
    fn finish(self) -> ExitCode {
        let Some(outcome) = self.outcome else {
            eprintln!("error: the run ended without a result");
            return ExitCode::FAILURE;
        };
        let failed = outcome["type"] == "error";
        if self.json {
            let mut v = json!({
                "runId": outcome["runId"],
                "status": if failed { "error" } else { "ok" },
                "sessionKey": self.started["sessionKey"],
                "agentId": self.started["agentId"],
                "model": self.started["model"],
                "text": outcome["text"],
            });
            if failed {
                v["error"] = json!({"kind": outcome["kind"], "message": outcome["message"], "hint": outcome["hint"]});
            } else {
                v["stopReason"] = outcome["stopReason"].clone();
                v["usage"] = outcome["usage"].clone();
            }
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        } else {
            if self.text_open {
                println!();
            } else if !failed && self.started.is_null() {
                // A replayed (duplicate) turn has no streamed text: print the stored answer.
                println!("{}", outcome["text"].as_str().unwrap_or_default());
            }
            if failed {
                eprintln!("error: {}", outcome["message"].as_str().unwrap_or("the run failed"));
                if let Some(hint) = outcome["hint"].as_str() {
                    eprintln!("hint: {hint}");
                }
            }
        }
        if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

pub async fn run(paths: &Paths, args: AgentArgs) -> Result<ExitCode> {
    let explicit_url = args.url.clone().or_else(|| env("CLAWLINE_GATEWAY_URL"));
    if !args.local {
        let (text, _) = setup::config_text(paths)?;
        let port = setup::load_text(paths, &text)
            .map(|l| l.config.gateway.port)
            .unwrap_or(clawline_core::config::DEFAULT_PORT);
        let base = explicit_url
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{port}"))
            .trim_end_matches('/')
            .to_string();
        if client::probe(&base).await {
            return via_gateway(paths, &args, &base).await;
        }
        if explicit_url.is_some() {
            return Err(anyhow!("no clawline gateway answers at {base}"));
        }
        eprintln!("note: no gateway answers at {base}; running the agent in this process");
    }
    local(paths, &args).await
}

async fn via_gateway(paths: &Paths, args: &AgentArgs, base: &str) -> Result<ExitCode> {
    let token = match args.token.clone().or_else(|| env("CLAWLINE_GATEWAY_TOKEN")) {
        Some(t) => t,
        None => {
            let (assembled, _) = setup::assemble(paths)?;
            setup::gateway_token(&assembled.config, &assembled.store, &assembled.key, false)
                .await?
                .map(|(t, _)| t.expose().to_string())
                .ok_or_else(|| anyhow!("no gateway token is known here: pass --token or set CLAWLINE_GATEWAY_TOKEN"))?
        }
    };
    let body = json!({
        "message": args.message,
        "sessionKey": args.session_key,
        "agentId": args.agent,
        "idempotencyKey": format!("cli-{}", uuid::Uuid::new_v4()),
    });
    let mut printer = Printer::new(args.json);
    client::chat(base, &token, &body, |name, data| printer.event(name, data)).await?;
    Ok(printer.finish())
}

async fn local(paths: &Paths, args: &AgentArgs) -> Result<ExitCode> {
    setup::init_state(paths)?;
    let _run_lock = clawline_store::RunLock::acquire(&paths.state).map_err(|e| match e {
        clawline_store::StoreError::Busy(_) => anyhow!(
            "a clawline gateway is running with this state directory ({}); send the message through it (leave out --local, and pass --url if it is not on the configured port)",
            paths.state.root.display()
        ),
        other => other.into(),
    })?;
    let (assembled, warnings) = setup::assemble(paths)?;
    let redactor = Redactor::default();
    redactor.add(setup::secrets_of(&assembled.config));
    logging::init(
        LogLevel::Warn,
        Some((assembled.config.logging.level, assembled.config.logging.dir.clone())),
        redactor.clone(),
    );
    for w in warnings {
        tracing::warn!("{w}");
    }
    let runtime = Runtime::new(assembled.config.clone(), assembled.store.clone())?;
    setup::apply_auth_profiles(&assembled.store, &assembled.key, &runtime, &redactor).await?;
    let req = TurnRequest {
        agent_id: args.agent.clone(),
        session_key: args.session_key.clone(),
        message: args.message.clone(),
        idempotency_key: None,
        channel: Some("cli".into()),
        ..Default::default()
    };
    let mut printer = Printer::new(args.json);
    match runtime.start_turn(req).await.map_err(|e| anyhow!("{e}"))? {
        TurnStart::Started(mut handle) => {
            while let Some(event) = handle.events.recv().await {
                let value = serde_json::to_value(&event).unwrap_or_default();
                let name = event.name();
                printer.event(name, value);
            }
        }
        TurnStart::Duplicate(_) => return Err(anyhow!("this turn already ran")),
    }
    // The run's observability rows are queued; they reach the file before the process ends.
    runtime.observer().flush().await;
    Ok(printer.finish())
}
