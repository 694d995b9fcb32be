//! The runtime shared by all runs of one process, and how a turn starts.
//!
//! `start_turn` checks everything that can be checked up front (agent, model, API key, session
//! key) so a misconfiguration is refused before anything is stored. It then waits for the
//! session's lane, stores the user message together with the run (persist before acknowledge),
//! and spawns the run. The caller gets the run's events; if it goes away, the run still finishes
//! and is still recorded.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use clawline_core::config::{AgentSettings, Config, ProviderSettings, provider_key_var};
use clawline_core::message::{ContentBlock, Message, ToolResultMessage, UserContent, UserMessage};
use clawline_core::session_key::SessionKey;
use clawline_core::transcript::NewRecord;
use clawline_providers::{CooldownBook, ModelRequest, Route, Router};
use clawline_store::{BeginTurn, RunRow, Store, TurnStart as StoreTurnStart};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::auth_profiles::AuthProfile;
use crate::context;
use crate::error::TurnError;
use crate::events::RunEvent;
use crate::lanes::Lanes;
use crate::observer::Observer;
use crate::routes::CredentialTable;
use crate::run::{self, RunParams};
use crate::tools::{self, ToolContext};
use crate::workspace;

/// A request to run one turn.
#[derive(Debug, Clone, Default)]
pub struct TurnRequest {
    /// The agent; `None` means the default agent.
    pub agent_id: Option<String>,
    /// The session key as the client gave it (`main`, `work`, `agent:main:work`); `None` means main.
    pub session_key: Option<String>,
    pub message: String,
    /// A retry with the same key in the same session does not start a second run.
    pub idempotency_key: Option<String>,
    /// Earlier turns a stateless client sent along (OpenAI-style full histories).
    pub preamble: Vec<Message>,
    /// Extra instructions from the client (e.g. OpenAI `system` messages), added to the prompt.
    pub extra_system: Option<String>,
    /// The run's id; a new UUID when `None`. Protocol clients pick their own (OpenClaw uses the
    /// idempotency key), so they can wait on or abort the run by that name.
    pub run_id: Option<String>,
    /// How long to wait for a busy session; `None` waits as long as it takes. Past the wait the
    /// turn is refused with [`TurnError::Busy`] and nothing is stored.
    pub lane_wait: Option<Duration>,
    /// Where the turn came from, for metrics and `clawline usage`: the chat platform
    /// (`telegram`, …) or the entry point (`webchat`, `openai`, `responses`, `ws`, `hooks`,
    /// `api`, `cli`). `None` counts as `other`.
    pub channel: Option<String>,
    /// The caller's W3C `traceparent`: the run's span continues that trace (a malformed one
    /// is ignored and the run starts a trace of its own).
    pub traceparent: Option<String>,
}

/// A run that started.
#[derive(Debug)]
pub struct RunHandle {
    pub run_id: String,
    pub session_key: String,
    pub agent_id: String,
    /// `provider/model`.
    pub model: String,
    pub events: mpsc::UnboundedReceiver<RunEvent>,
}

/// What [`Runtime::start_turn`] did.
#[derive(Debug)]
pub enum TurnStart {
    Started(RunHandle),
    /// The idempotency key was used before in this session: here is that run.
    Duplicate(RunRow),
}

struct Inner {
    config: Arc<Config>,
    store: Store,
    lanes: Lanes,
    /// Runs in progress: run id → (session key, how to stop it).
    active: Mutex<HashMap<String, (String, CancellationToken)>>,
    providers: HashMap<String, Arc<ProviderSettings>>,
    /// Every provider's credentials; rebuilt when auth profiles change.
    credentials: RwLock<Arc<CredentialTable>>,
    /// Failures per profile and model, shared by every run.
    cooldowns: CooldownBook,
    workspaces: HashMap<String, PathBuf>,
    http: OnceLock<reqwest::Client>,
    memories: Arc<crate::memory::Memories>,
    observer: Arc<Observer>,
    approvals: Arc<crate::approvals::Approvals>,
}

/// Shared state for all runs. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

impl Runtime {
    /// Prepares the runtime: creates each agent's workspace (with starter files when new).
    pub fn new(config: Arc<Config>, store: Store) -> std::io::Result<Runtime> {
        let mut workspaces = HashMap::new();
        for agent in config.agents.values() {
            let (path, created) = workspace::ensure(&agent.workspace)?;
            if created {
                tracing::info!(agent = %agent.id, workspace = %path.display(), "created workspace");
            }
            workspaces.insert(agent.id.clone(), path);
        }
        let providers: HashMap<String, Arc<ProviderSettings>> =
            config.providers.iter().map(|(k, v)| (k.clone(), Arc::new(v.clone()))).collect();
        let credentials = RwLock::new(Arc::new(CredentialTable::build(&providers, &[])));
        let observer =
            Arc::new(Observer::new(Some(clawline_store::StatePaths::new(&config.state_dir).observability())));
        Ok(Runtime {
            inner: Arc::new(Inner {
                approvals: crate::approvals::Approvals::new(store.clone()),
                config,
                store,
                lanes: Lanes::default(),
                active: Mutex::new(HashMap::new()),
                providers,
                credentials,
                cooldowns: CooldownBook::default(),
                workspaces,
                http: OnceLock::new(),
                memories: Arc::default(),
                observer,
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The exec approval broker.
    pub fn approvals(&self) -> &Arc<crate::approvals::Approvals> {
        &self.inner.approvals
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn lanes(&self) -> &Lanes {
        &self.inner.lanes
    }

    /// Metrics, the observability store and the budget ledger.
    pub fn observer(&self) -> &Arc<Observer> {
        &self.inner.observer
    }

    /// Makes the stored auth profiles usable (called at start and whenever they change).
    pub fn set_auth_profiles(&self, profiles: &[AuthProfile]) {
        let table = Arc::new(CredentialTable::build(&self.inner.providers, profiles));
        *self.inner.credentials.write().unwrap_or_else(|p| p.into_inner()) = table;
    }

    fn credentials(&self) -> Arc<CredentialTable> {
        self.inner.credentials.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether every credential of `provider` is resting for `model` after failures.
    pub fn all_resting(&self, provider: &str, model: &str) -> bool {
        let now = std::time::Instant::now();
        let table = self.credentials();
        let mut creds = table.usable(provider, None).peekable();
        creds.peek().is_some() && creds.all(|c| self.inner.cooldowns.resting_until(&c.profile, model, now).is_some())
    }

    /// Failures per profile and model, for status displays.
    pub fn cooldowns(&self) -> &CooldownBook {
        &self.inner.cooldowns
    }

    /// The HTTP client for model calls, built on first use (it loads TLS roots, which takes time
    /// that start-up should not pay). The gateway's channels share it: one TLS root store and
    /// one connection pool per process.
    pub fn http_client(&self) -> reqwest::Client {
        self.http()
    }

    fn http(&self) -> reqwest::Client {
        self.inner
            .http
            .get_or_init(|| clawline_providers::build_http_client().unwrap_or_else(|_| reqwest::Client::new()))
            .clone()
    }

    /// Finishes what a crash interrupted: marks stale runs `interrupted` and gives tool calls that
    /// never returned an error result, so every session is consistent before new turns start.
    pub async fn recover(&self) -> Result<usize, clawline_store::StoreError> {
        let abandoned = self.inner.approvals.recover().await?;
        if abandoned > 0 {
            tracing::info!(count = abandoned, "closed exec approvals left pending by a previous process");
        }
        let runs = self.inner.store.recover_interrupted_runs().await?;
        for run in &runs {
            let Some((_, records)) = self.inner.store.session_with_transcript(&run.session_key).await? else {
                continue;
            };
            let messages: Vec<Message> = records.iter().filter_map(|r| r.message().cloned()).collect();
            let missing = context::unanswered_tail(&messages);
            if missing.is_empty() {
                continue;
            }
            let results = missing
                .into_iter()
                .map(|(id, name)| {
                    NewRecord::Message(Message::ToolResult(ToolResultMessage {
                        tool_call_id: id,
                        tool_name: name,
                        content: vec![ContentBlock::Text { text: context::INTERRUPTED_TOOL.into() }],
                        is_error: true,
                        timestamp: clawline_store::now_ms(),
                    }))
                })
                .collect();
            self.inner.store.append(&run.session_key, results, None).await?;
        }
        if !runs.is_empty() {
            tracing::warn!(count = runs.len(), "recovered runs interrupted by a previous crash");
        }
        Ok(runs.len())
    }

    fn agent(&self, id: Option<&str>) -> Result<&AgentSettings, TurnError> {
        let config = &self.inner.config;
        let id = id.unwrap_or(&config.default_agent);
        config.agent(id).ok_or_else(|| {
            TurnError::UnknownAgent(id.to_string(), config.agents.keys().cloned().collect::<Vec<_>>().join(", "))
        })
    }

    /// What the built-in tools may touch for `agent_id` (its workspace, the tool settings and
    /// its memory).
    pub async fn tool_context(&self, agent_id: &str) -> Option<ToolContext> {
        let agent = self.inner.config.agent(agent_id)?;
        let workspace = self.inner.workspaces.get(agent_id).cloned().unwrap_or_else(|| agent.workspace.clone());
        let memory = self.memory_access_off_runtime(agent_id, &workspace).await;
        Some(ToolContext { workspace, settings: self.inner.config.tools.clone(), memory, approvals: None })
    }

    /// [`Runtime::memory_access`] with the first opening of the index (file and schema work) on a
    /// blocking thread, for callers on the async runtime.
    pub async fn memory_access_off_runtime(
        &self,
        agent_id: &str,
        workspace: &std::path::Path,
    ) -> Option<crate::tools::MemoryAccess> {
        let (me, id, ws) = (self.clone(), agent_id.to_string(), workspace.to_path_buf());
        tokio::task::spawn_blocking(move || me.memory_access(&id, &ws)).await.ok().flatten()
    }

    /// The agent's memory index (opened on first use), unless memory is off or cannot open.
    pub fn memory_access(&self, agent_id: &str, workspace: &std::path::Path) -> Option<crate::tools::MemoryAccess> {
        if !self.inner.config.memory.enabled {
            return None;
        }
        match self.inner.memories.get(
            &self.inner.config,
            agent_id,
            workspace,
            || self.http().clone(),
            &self.inner.store,
        ) {
            Ok(index) => Some(crate::tools::MemoryAccess {
                agent_id: agent_id.to_string(),
                index,
                memories: self.inner.memories.clone(),
                current_session: None,
            }),
            Err(e) => {
                tracing::error!(agent = agent_id, error = %e, "the memory index cannot be opened; memory tools are off for this agent");
                None
            }
        }
    }

    /// Whether the provider `id` can be called: it exists and has a key (or is a local server
    /// that needs none). The error says what is missing.
    pub fn check_provider(&self, id: &str) -> Result<(), String> {
        if !self.inner.providers.contains_key(id) {
            return Err(format!("provider `{id}` is not configured"));
        }
        if self.credentials().usable(id, None).next().is_none() {
            return Err(format!(
                "no API key: set {} or models.providers.{id}.apiKey, or run `clawline auth add {id}`",
                provider_key_var(id)
            ));
        }
        Ok(())
    }

    /// Checks that `agent` can call its model (or one of its fallbacks); returns the routes
    /// its turn may take, primary first.
    pub fn check_model(&self, agent_id: Option<&str>) -> Result<Vec<Route>, TurnError> {
        let agent = self.agent(agent_id)?;
        let model = agent.model.as_ref().ok_or_else(|| TurnError::NoModel(agent.id.clone()))?;
        if !self.inner.providers.contains_key(&model.provider) {
            return Err(TurnError::NoModel(agent.id.clone()));
        }
        let routes = self.credentials().routes(agent, &self.http());
        if routes.is_empty() {
            return Err(TurnError::MissingKey {
                provider: model.provider.clone(),
                var: provider_key_var(&model.provider),
            });
        }
        Ok(routes)
    }

    /// Starts a turn (see the module docs).
    ///
    /// The work from the lane onward happens in a task of its own, so a caller that goes away
    /// at any point cannot leave a stored message without a run: before the message is stored,
    /// a departed caller means nothing is stored; after, the run goes on without it.
    pub async fn start_turn(&self, req: TurnRequest) -> Result<TurnStart, TurnError> {
        let agent = self.agent(req.agent_id.as_deref())?.clone();
        let routes = self.check_model(Some(&agent.id))?;
        let model = agent.model.clone().ok_or_else(|| TurnError::NoModel(agent.id.clone()))?;
        let key = match req.session_key.as_deref() {
            Some(raw) => SessionKey::from_client(&agent.id, raw)?,
            None => SessionKey::main(&agent.id),
        };
        if req.message.trim().is_empty() {
            return Err(TurnError::EmptyMessage);
        }
        let (reply, answer) = oneshot::channel();
        let turn = Turn { agent, routes, model, key, req };
        tokio::spawn(self.clone().drive(turn, reply));
        answer.await.unwrap_or_else(|_| Err(TurnError::Internal("the turn stopped before it started".into())))
    }

    async fn drive(self, turn: Turn, reply: oneshot::Sender<Result<TurnStart, TurnError>>) {
        let Turn { agent, routes, model, key, req } = turn;
        let workspace = self.inner.workspaces.get(&agent.id).cloned().unwrap_or_else(|| agent.workspace.clone());
        let lane = match req.lane_wait {
            None => self.inner.lanes.acquire(key.as_str()).await,
            Some(wait) => match tokio::time::timeout(wait, self.inner.lanes.acquire(key.as_str())).await {
                Ok(lane) => lane,
                Err(_) => {
                    let _ = reply.send(Err(TurnError::Busy));
                    return;
                }
            },
        };
        // Past this point the turn is stored and runs to the end whatever the caller does.
        if reply.is_closed() {
            // The caller left while waiting for the lane: nothing was acknowledged, nothing is stored.
            return;
        }
        let run_id = req.run_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let begin = self
            .inner
            .store
            .begin_turn(StoreTurnStart {
                run_id: run_id.clone(),
                session_key: key.to_string(),
                agent_id: agent.id.clone(),
                cwd: workspace.display().to_string(),
                idempotency_key: req.idempotency_key.clone(),
                preamble: req.preamble.into_iter().map(NewRecord::Message).collect(),
                user: Message::User(UserMessage {
                    content: UserContent::Text(req.message.clone()),
                    timestamp: clawline_store::now_ms(),
                    // OpenClaw's convention: the user message names its run, `<runId>:user`.
                    idempotency_key: Some(format!("{run_id}:user")),
                }),
            })
            .await;
        match begin {
            Err(e) => {
                let _ = reply.send(Err(e.into()));
                return;
            }
            Ok(BeginTurn::Duplicate(run)) => {
                let _ = reply.send(Ok(TurnStart::Duplicate(run)));
                return;
            }
            Ok(BeginTurn::Started { .. }) => {}
        }
        let cancel = CancellationToken::new();
        self.active().insert(run_id.clone(), (key.to_string(), cancel.clone()));
        let (tx, rx) = mpsc::unbounded_channel();
        let model_label = model.to_string();
        let _ = tx.send(RunEvent::Started {
            run_id: run_id.clone(),
            session_key: key.to_string(),
            agent_id: agent.id.clone(),
            model: model_label.clone(),
        });
        // From here on the turn is stored: it runs whether or not anyone is listening.
        let _ = reply.send(Ok(TurnStart::Started(RunHandle {
            run_id: run_id.clone(),
            session_key: key.to_string(),
            agent_id: agent.id.clone(),
            model: model_label.clone(),
            events: rx,
        })));

        let (session_id, records) = match self.inner.store.session_with_transcript(key.as_str()).await {
            Ok(found) => found.map(|(row, records)| (Some(row.session_id), records)).unwrap_or_default(),
            Err(e) => {
                run::fail_before_start(
                    &self.inner.store,
                    &run_id,
                    key.as_str(),
                    &tx,
                    format!("could not load the session: {e}"),
                )
                .await;
                self.active().remove(&run_id);
                return;
            }
        };
        let config = &self.inner.config;
        let mut memory = self.memory_access_off_runtime(&agent.id, &workspace).await;
        if let Some(m) = memory.as_mut() {
            // This conversation is in the context already; memory search shows the others.
            m.current_session = session_id;
        }
        let tool_specs = tools::specs(&config.tools, memory.is_some());
        let files = workspace::load_bootstrap(&workspace, agent.bootstrap_max_chars, agent.bootstrap_total_max_chars);
        let today = clawline_core::time::iso8601_from_ms(clawline_store::now_ms())[..10].to_string();
        let mut system = context::system_prompt(&agent, &workspace, &files, &tool_specs, &config.tools.exec, &today);
        if let Some(extra) = req.extra_system.filter(|s| !s.trim().is_empty()) {
            system.push_str("\n## Instructions from the client\n");
            system.push_str(&extra);
            system.push('\n');
        }
        // Model, prices, quirks and the token cap are filled in per route by the router.
        let request = ModelRequest {
            model: model.model.clone(),
            system,
            messages: context::history(&records),
            tools: tool_specs,
            max_tokens: routes.first().map_or(4096, |r| r.max_tokens),
            thinking_budget: None,
            ..Default::default()
        };
        let router = Router::new(routes, self.inner.cooldowns.clone(), Default::default());
        let incoming = req.traceparent.as_deref().and_then(clawline_observe::trace::TraceContext::parse);
        let (trace, trace_parent) = match incoming {
            Some(caller) => (caller.child(), Some(caller.span_id)),
            None => (clawline_observe::trace::TraceContext::root(true), None),
        };
        // Log lines logged during the run name its span (OTLP log export correlates them).
        let run = run::execute(RunParams {
            run_id: run_id.clone(),
            agent_id: agent.id.clone(),
            channel: req.channel.clone().unwrap_or_else(|| "other".into()),
            session_key: key.to_string(),
            model_label,
            router,
            request,
            tool_ctx: ToolContext {
                workspace,
                settings: config.tools.clone(),
                memory,
                approvals: Some(crate::tools::ApprovalScope {
                    broker: self.inner.approvals.clone(),
                    agent_id: agent.id.clone(),
                    session_key: key.to_string(),
                    run_id: run_id.clone(),
                }),
            },
            max_turns: agent.max_turns,
            budget: agent.budget,
            loops: config.tools.loop_detection,
            observer: self.inner.observer.clone(),
            trace,
            trace_parent,
            timeout: Duration::from_secs(agent.timeout_secs),
            store: self.inner.store.clone(),
            events: tx,
            lane,
            cancel,
        });
        clawline_observe::trace::in_span(trace, run).await;
        self.active().remove(&run_id);
    }

    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, CancellationToken)>> {
        self.inner.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops a run in progress: what it said so far is kept, the run ends `aborted`. Returns
    /// whether such a run was running.
    pub fn abort(&self, run_id: &str) -> bool {
        match self.active().get(run_id) {
            Some((_, token)) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// Stops every run of a session; returns their ids.
    pub fn abort_session(&self, session_key: &str) -> Vec<String> {
        let active = self.active();
        let mut ids: Vec<String> = active
            .iter()
            .filter(|(_, (key, _))| key == session_key)
            .map(|(id, (_, token))| {
                token.cancel();
                id.clone()
            })
            .collect();
        ids.sort();
        ids
    }

    /// Ids of the runs in progress for a session.
    pub fn active_runs(&self, session_key: &str) -> Vec<String> {
        let mut ids: Vec<String> =
            self.active().iter().filter(|(_, (key, _))| key == session_key).map(|(id, _)| id.clone()).collect();
        ids.sort();
        ids
    }
}

/// A turn that passed the up-front checks.
struct Turn {
    agent: AgentSettings,
    routes: Vec<Route>,
    model: clawline_core::config::ModelRef,
    key: SessionKey,
    req: TurnRequest,
}
