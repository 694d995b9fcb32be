//! `clawline gateway`: start everything and serve until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use clawline_agent::Runtime;
use clawline_gateway::{AppState, ConfigCheck, ConfigFile, ControlUi, Credentials, WsLimits};

use crate::cli::GatewayArgs;
use crate::logging::{self, Redactor};
use crate::setup::{self, Paths};

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// A positive number of milliseconds from the first of `names` that is set.
fn env_ms(names: &[&str]) -> Option<u64> {
    names.iter().find_map(|n| std::env::var(n).ok()).and_then(|v| v.trim().parse::<u64>().ok()).filter(|ms| *ms > 0)
}

pub async fn run(paths: &Paths, args: GatewayArgs) -> Result<ExitCode> {
    let created = setup::init_state(paths)?;
    if created {
        println!("Created {} (commented; edit it or use `clawline config set`).", paths.config_file.display());
    }
    let _run_lock = clawline_store::RunLock::acquire(&paths.state)?;
    let (assembled, warnings) = setup::assemble(paths)?;
    let config = assembled.config.clone();
    let redactor = Redactor::default();
    redactor.add(setup::secrets_of(&config));
    logging::init(
        config.logging.console_level,
        Some((config.logging.level, config.logging.dir.clone())),
        redactor.clone(),
    );
    crate::crash::install(&paths.state.root, &paths.config_file, redactor.clone());
    for report in crate::crash::unseen(&paths.state.root) {
        tracing::warn!(report = %report.display(), "clawline crashed since the last start");
        println!("clawline crashed since the last start; the report is {}", report.display());
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let (token, generated) = setup::gateway_token(&config, &assembled.store, &assembled.key, true)
        .await?
        .ok_or_else(|| anyhow!("no gateway token could be set up"))?;
    redactor.add([token.expose().to_string()]);

    let runtime =
        Runtime::new(config.clone(), assembled.store.clone()).context("cannot prepare the agent workspaces")?;
    let spans = start_trace_export(&config, &runtime);
    let scrubber = redactor.clone();
    runtime.observer().set_scrubber(Arc::new(move |s: &str| scrubber.scrub(s)));
    runtime.recover().await.context("cannot recover runs interrupted by a previous crash")?;
    let refresher = setup::oauth_refresher(&config, &assembled.store, setup::master_key(paths)?);
    refresher.refresh_due().await;
    let profiles = setup::apply_auth_profiles(&assembled.store, &assembled.key, &runtime, &redactor)
        .await
        .context("cannot load the stored auth profiles")?;
    if profiles > 0 {
        tracing::info!(profiles, "loaded auth profiles");
    }
    spawn_profile_reloader(assembled.store.clone(), setup::master_key(paths)?, runtime.clone(), redactor.clone());
    tokio::spawn(async move {
        // OAuth access tokens are refreshed ahead of expiry; the reloader above then picks up
        // the new tokens, as it does for `clawline auth` changes.
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            refresher.refresh_due().await;
        }
    });

    let port = args.port.unwrap_or(config.gateway.port);
    let addr = SocketAddr::new(config.gateway.bind_host, port);
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow!("{addr} is already in use: another clawline gateway may be running (`clawline doctor` checks), or pick another port with --port")
        } else {
            anyhow!("cannot listen on {addr}: {e}")
        }
    })?;
    let bound = listener.local_addr()?;
    let shown = if bound.ip().is_unspecified() { SocketAddr::from(([127, 0, 0, 1], bound.port())) } else { bound };
    let base = format!("http://{shown}");

    let credentials =
        Credentials { mode: config.gateway.auth_mode, token: token.clone(), password: config.gateway.password.clone() };
    let check_paths = paths.clone();
    let check: ConfigCheck = Arc::new(move |text: &str| match setup::load_text(&check_paths, text) {
        Ok(loaded) => Ok(loaded.warnings.iter().map(|w| w.to_string()).collect()),
        Err(errors) => Err(errors.0.iter().map(|e| e.to_string()).collect()),
    });
    let mut limits = WsLimits::default();
    if let Some(ms) = env_ms(&["CLAWLINE_HANDSHAKE_TIMEOUT_MS", "OPENCLAW_HANDSHAKE_TIMEOUT_MS"]) {
        limits.handshake_timeout_ms = ms;
    }
    if let Some(ms) = env_ms(&["CLAWLINE_TICK_INTERVAL_MS"]) {
        limits.tick_interval_ms = ms;
    }
    let mut state = AppState::new(runtime.clone(), credentials, bound.port())
        .with_config_file(ConfigFile { path: paths.config_file.clone(), check })
        .with_ws_limits(limits);
    if let Some(root) = &config.gateway.control_ui_root {
        let ui = ControlUi::load(root).map_err(|e| anyhow!("{e} (set in {})", paths.config_file.display()))?;
        tracing::info!(root = %ui.root().display(), "serving the Control UI at / (the built-in web chat is at /webchat)");
        state = state.with_control_ui(ui);
    }
    let channels = if config.channels.accounts.is_empty() {
        None
    } else {
        let http = || Ok(runtime.http_client());
        let built = clawline_channels::Channels::build(&config, assembled.store.clone(), http)
            .map_err(|e| anyhow!("{e} (set in {})", paths.config_file.display()))?;
        if let Some(sink) = &spans {
            built.set_span_sink(sink.clone());
        }
        state = state.with_channels(built.clone());
        Some(built)
    };
    for id in &config.channels.unsupported {
        tracing::warn!(channel = %id, "channels.{id} is configured, but this build cannot connect it yet; ignored");
    }
    let state = Arc::new(state);
    if let Some(ch) = &channels {
        ch.start(Arc::new(clawline_gateway::AgentResponder::new(runtime.clone())));
    }

    if generated {
        println!("Generated the gateway token (stored encrypted; `clawline token` prints it again):");
        println!("  {}", token.expose());
        println!("Web chat: {base}/#token={}", token.expose());
    } else if config.gateway.control_ui_enabled {
        println!("Web chat: {base}/ (the page asks for the token; `clawline token` prints it)");
    }
    if !config.gateway.bind_host.is_loopback() {
        tracing::warn!(addr = %bound, "the gateway listens beyond this machine; anyone who can reach it needs only the token");
    }
    match config.default_agent().model.as_ref() {
        Some(m) => tracing::info!(agent = %config.default_agent, model = %m, "agent model"),
        None => tracing::warn!(
            "no model configured: set agents.defaults.model, or export a provider key (ANTHROPIC_API_KEY, OPENAI_API_KEY, GEMINI_API_KEY, … — `clawline models list --all` lists them), then restart"
        ),
    }
    println!("clawline gateway listening on {base}");
    tracing::info!(addr = %bound, state_dir = %paths.state.root.display(), "gateway ready");
    report_sandbox(&config.tools.exec);
    // Debug builds only: lets the end-to-end tests see a real crash and its report.
    if cfg!(debug_assertions) && std::env::var("CLAWLINE_TEST_PANIC").is_ok_and(|v| v == "after-ready") {
        panic!("a panic asked for by CLAWLINE_TEST_PANIC; the token {} must not reach the report", token.expose());
    }

    clawline_gateway::serve(state, listener, shutdown_signal()).await.context("the server failed")?;
    if let Some(ch) = &channels {
        ch.stop().await;
    }
    runtime.observer().flush().await;
    tracing::info!("gateway stopped");
    Ok(ExitCode::SUCCESS)
}

/// Starts the OpenTelemetry exporters `diagnostics.otel` asks for (those this build has), and
/// returns the span sink so the channel layer's deliveries join the same traces.
fn start_trace_export(
    config: &clawline_core::config::Config,
    runtime: &Runtime,
) -> Option<Arc<dyn clawline_observe::trace::SpanSink>> {
    let o = config.otel.as_ref()?;
    let mut log_sinks: Vec<Arc<dyn clawline_observe::otlp_logs::LogSink>> = Vec::new();
    if o.logs_stdout {
        log_sinks.push(Arc::new(clawline_observe::otlp_logs::StdoutLogs::start(o.service_name.clone())));
    }
    let spans = export_over_http(o, runtime, &mut log_sinks);
    crate::log_export::install(log_sinks);
    spans
}

#[cfg(feature = "otel")]
fn export_over_http(
    o: &clawline_core::config::OtelSettings,
    runtime: &Runtime,
    log_sinks: &mut Vec<Arc<dyn clawline_observe::otlp_logs::LogSink>>,
) -> Option<Arc<dyn clawline_observe::trace::SpanSink>> {
    use clawline_observe::otlp_batch::Destination;
    let to = |url: &String| Destination {
        url: url.clone(),
        headers: o.headers.clone(),
        flush_interval: std::time::Duration::from_millis(o.flush_interval_ms),
    };
    let mut spans: Option<Arc<dyn clawline_observe::trace::SpanSink>> = None;
    if let Some(url) = &o.traces_url {
        let exporter = clawline_observe::otlp::Exporter::start(
            to(url),
            o.service_name.clone(),
            o.sample_rate,
            runtime.http_client(),
        );
        runtime.observer().set_span_sink(exporter.clone());
        spans = Some(exporter);
        tracing::info!(%url, "exporting traces over OTLP/HTTP");
    }
    if let Some(url) = &o.metrics_url {
        let metrics = runtime.observer().metrics().clone();
        clawline_observe::otlp_metrics::start(to(url), o.service_name.clone(), metrics, runtime.http_client());
        tracing::info!(%url, "exporting metrics over OTLP/HTTP");
    }
    if let Some(url) = &o.logs_url {
        let logs =
            clawline_observe::otlp_logs::LogExporter::start(to(url), o.service_name.clone(), runtime.http_client());
        log_sinks.push(Arc::new(logs));
        tracing::info!(%url, "exporting logs over OTLP/HTTP");
    }
    spans
}

#[cfg(not(feature = "otel"))]
fn export_over_http(
    o: &clawline_core::config::OtelSettings,
    _runtime: &Runtime,
    _log_sinks: &mut Vec<Arc<dyn clawline_observe::otlp_logs::LogSink>>,
) -> Option<Arc<dyn clawline_observe::trace::SpanSink>> {
    if o.traces_url.is_some() || o.metrics_url.is_some() || o.logs_url.is_some() {
        tracing::warn!(
            "diagnostics.otel is on, but this clawline was built without OTLP/HTTP export; \
             rebuild with `cargo build --release --features otel`"
        );
    }
    None
}

/// Picks up profiles that `clawline auth add|remove` changed while the gateway runs (checked
/// every 5 s with one cheap query).
fn spawn_profile_reloader(
    store: clawline_store::Store,
    key: clawline_store::MasterKey,
    runtime: Runtime,
    redactor: Redactor,
) {
    tokio::spawn(async move {
        let mut seen = store.auth_profiles_stamp().await.ok();
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Ok(now) = store.auth_profiles_stamp().await else { continue };
            if seen == Some(now) {
                continue;
            }
            seen = Some(now);
            match setup::apply_auth_profiles(&store, &key, &runtime, &redactor).await {
                Ok(n) => tracing::info!(profiles = n, "auth profiles changed; reloaded"),
                Err(e) => tracing::warn!(error = %e, "could not reload the auth profiles"),
            }
        }
    });
}

/// Logs, once and after the gateway is ready (the probe forks), how contained `exec` commands are.
fn report_sandbox(exec: &clawline_core::config::ExecSettings) {
    use clawline_core::config::schema::{ExecSecurity, SandboxMode};
    if exec.security == ExecSecurity::Deny {
        return;
    }
    let mode = exec.sandbox;
    tokio::task::spawn_blocking(move || {
        let status = clawline_agent::tools::sandbox::status();
        match mode {
            SandboxMode::Off => {
                tracing::warn!("tools.exec.sandbox is \"off\": exec commands run without the kernel sandbox")
            }
            _ if status.complete() => tracing::info!(sandbox = %status, "exec commands run sandboxed"),
            SandboxMode::Require => {
                tracing::warn!(sandbox = %status, "the kernel sandbox is incomplete and tools.exec.sandbox is \"require\": exec refuses every command (`clawline doctor` says how to fix it)")
            }
            SandboxMode::Auto => {
                tracing::warn!(sandbox = %status, "the kernel sandbox is incomplete: exec commands are not fully contained (`clawline doctor` says how to fix it)")
            }
        }
    });
}
