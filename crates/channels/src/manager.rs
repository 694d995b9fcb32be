//! The channel layer as the gateway sees it: build every configured account, start their
//! connections, the dispatcher and the delivery workers, answer status, probes and webhooks,
//! and stop it all.
//!
//! `Channels::build` only constructs (no network), so a gateway with channels starts as fast
//! as one without; connections begin in `start`. Nothing here knows what a platform's wire
//! format looks like; that is each adapter's folder.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use clawline_core::config::Config;
use clawline_core::config::channels::ChannelAccount;
use clawline_store::Store;
use serde::Serialize;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::channel::Channel;
use crate::dispatch::Dispatcher;
use crate::gate::Gate;
use crate::health::{AccountStatus, Health};
use crate::link::Link;
use crate::responder::Responder;
use crate::supervisor::{Backoff, supervise};
use crate::webchat::WebChatChannel;

/// One configured account with everything that works on it.
pub(crate) struct Account {
    pub channel: Arc<dyn Channel>,
    pub settings: ChannelAccount,
    pub gate: Gate,
    pub health: Arc<Health>,
    pub link: Link,
    pub delivery_wake: Notify,
    /// The connection and delivery worker while the account runs.
    running: Mutex<Option<(CancellationToken, Vec<JoinHandle<()>>)>>,
}

impl Account {
    pub fn wake_delivery(&self) {
        self.delivery_wake.notify_one();
    }
}

/// A status line with the queue figures that need the store.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelReport {
    #[serde(flatten)]
    pub status: AccountStatus,
    pub capabilities: crate::channel::Capabilities,
}

/// What a probe found for one account.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeReport {
    pub channel: String,
    pub account_id: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why a start, stop or logout of one account was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("no channel account `{0}` is configured")]
    Unknown(String),
    #[error("channel `{0}` has several accounts; name one (accountId)")]
    Ambiguous(String),
    #[error("the channels are not running yet")]
    NotStarted,
    #[error("the store failed: {0}")]
    Store(String),
}

/// Why the channel layer could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("channel `{0}` is configured but this build has no adapter for it (enable the cargo feature)")]
    NotBuilt(String),
    #[error("cannot set up the HTTP client for channels: {0}")]
    Http(String),
}

struct Inner {
    store: Store,
    accounts: BTreeMap<(String, String), Arc<Account>>,
    webhooks: HashMap<String, (String, String)>,
    wake_rx: Mutex<Option<mpsc::UnboundedReceiver<i64>>>,
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    default_agent: String,
    bindings: Vec<clawline_core::config::channels::Binding>,
    routing: clawline_core::config::channels::SessionRouting,
    backoff: Backoff,
    webchat: Option<Arc<WebChatChannel>>,
    spans: crate::spans::Spans,
}

/// Every configured channel account. Cheap to clone.
#[derive(Clone)]
pub struct Channels {
    inner: Arc<Inner>,
}

impl Channels {
    /// Builds the adapters for the config's accounts (no network yet). `http` is called once,
    /// and only when an account talks to a platform over HTTP (the web chat alone needs none).
    pub fn build(
        config: &Config,
        store: Store,
        http: impl FnOnce() -> Result<reqwest::Client, String>,
    ) -> Result<Channels, BuildError> {
        let mut adapters: Vec<(Arc<dyn Channel>, ChannelAccount)> = Vec::new();
        let mut webchat = None;
        let mut http = Some(http);
        let mut client: Option<reqwest::Client> = None;
        for acct in &config.channels.accounts {
            if matches!(acct.platform, clawline_core::config::channels::Platform::WebChat) {
                let wc = Arc::new(WebChatChannel::new(&acct.account_id));
                webchat = Some(wc.clone());
                adapters.push((wc, acct.clone()));
                continue;
            }
            if let Some(make) = http.take() {
                client = Some(make().map_err(BuildError::Http)?);
            }
            let c = client.clone().ok_or_else(|| BuildError::Http("it could not be made".into()))?;
            adapters.push((adapter_for(acct, c)?, acct.clone()));
        }
        let mut channels = Self::with_adapters(config, store, adapters);
        if let Some(inner) = Arc::get_mut(&mut channels.inner) {
            inner.webchat = webchat;
        }
        Ok(channels)
    }

    /// The web chat's account, when the page is on.
    pub fn webchat(&self) -> Option<Arc<WebChatChannel>> {
        self.inner.webchat.clone()
    }

    /// The agent and session a message lands in (what the dispatcher will use).
    pub fn route(&self, msg: &crate::message::InboundMessage) -> (String, String) {
        let conv = msg.conversation();
        let agent = clawline_core::routing::agent_for(&self.inner.bindings, &self.inner.default_agent, &conv);
        let key = clawline_core::routing::session_key(agent, &self.inner.routing, &conv).to_string();
        (agent.to_string(), key)
    }

    /// Builds from ready adapters (tests hand in their own).
    pub fn with_adapters(config: &Config, store: Store, adapters: Vec<(Arc<dyn Channel>, ChannelAccount)>) -> Channels {
        let (wake_tx, wake_rx) = mpsc::unbounded_channel();
        let mut accounts = BTreeMap::new();
        let mut webhooks = HashMap::new();
        for (channel, settings) in adapters {
            let key = (settings.channel.clone(), settings.account_id.clone());
            let health =
                Arc::new(Health::new(&settings.channel, &settings.account_id, settings.name.clone(), channel.mode()));
            let link =
                Link::new(store.clone(), &settings.channel, &settings.account_id, health.clone(), wake_tx.clone());
            if let Some(path) = channel.webhook_path() {
                webhooks.insert(path.to_string(), key.clone());
            }
            let gate = Gate::new(settings.access.clone());
            accounts.insert(
                key,
                Arc::new(Account {
                    channel,
                    settings,
                    gate,
                    health,
                    link,
                    delivery_wake: Notify::new(),
                    running: Mutex::new(None),
                }),
            );
        }
        Channels {
            inner: Arc::new(Inner {
                store,
                accounts,
                webhooks,
                wake_rx: Mutex::new(Some(wake_rx)),
                stop: CancellationToken::new(),
                tasks: Mutex::new(Vec::new()),
                default_agent: config.default_agent.clone(),
                bindings: config.channels.bindings.clone(),
                routing: config.channels.session.clone(),
                backoff: Backoff::default(),
                webchat: None,
                spans: Default::default(),
            }),
        }
    }

    /// Replaces the reconnect backoff (before `start`; tests shorten it).
    pub fn with_backoff(mut self, backoff: Backoff) -> Channels {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.backoff = backoff;
        }
        self
    }

    /// Exports a span per answered message and per delivery attempt to `sink` (before `start`).
    pub fn set_span_sink(&self, sink: Arc<dyn clawline_observe::trace::SpanSink>) {
        self.inner.spans.set(sink);
    }

    pub fn is_empty(&self) -> bool {
        self.inner.accounts.is_empty()
    }

    /// Starts the dispatcher (which first resumes what the journal holds open), every account's
    /// delivery worker, and every connection. Calling it twice does nothing the second time.
    pub fn start(&self, responder: Arc<dyn Responder>) {
        let Some(wake_rx) = self.inner.wake_rx.lock().unwrap_or_else(|p| p.into_inner()).take() else { return };
        let i = &self.inner;
        let accounts: HashMap<_, _> = i.accounts.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let dispatcher = Arc::new(Dispatcher::new(
            i.store.clone(),
            accounts,
            responder,
            i.default_agent.clone(),
            i.bindings.clone(),
            i.routing.clone(),
            i.spans.clone(),
        ));
        i.tasks.lock().unwrap_or_else(|p| p.into_inner()).push(tokio::spawn(dispatcher.run(wake_rx)));
        for account in i.accounts.values() {
            self.run_account(account);
        }
    }

    /// Starts one account's connection and delivery worker (nothing when it runs already).
    fn run_account(&self, account: &Arc<Account>) -> bool {
        let mut running = account.running.lock().unwrap_or_else(|p| p.into_inner());
        if running.is_some() || self.inner.stop.is_cancelled() {
            return false;
        }
        let stop = self.inner.stop.child_token();
        let handles = vec![
            tokio::spawn(crate::delivery::deliver(
                account.clone(),
                self.inner.store.clone(),
                self.inner.spans.clone(),
                stop.clone(),
            )),
            tokio::spawn(supervise(account.channel.clone(), account.link.clone(), self.inner.backoff, stop.clone())),
        ];
        *running = Some((stop, handles));
        tracing::info!(
            channel = account.channel.channel(),
            account = account.channel.account_id(),
            mode = account.channel.mode(),
            "channel starting"
        );
        true
    }

    /// Stops one account's connection and delivery (its journal and queue stay; messages
    /// journaled meanwhile are answered, and the replies wait until it starts again).
    async fn halt_account(account: &Account) -> bool {
        let Some((stop, handles)) = account.running.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return false;
        };
        stop.cancel();
        for h in handles {
            let _ = h.await;
        }
        account.health.stopped();
        true
    }

    fn account(&self, channel: &str, account_id: Option<&str>) -> Result<Arc<Account>, ControlError> {
        let mut of_channel = self.inner.accounts.values().filter(|a| a.settings.channel == channel);
        let found = match account_id {
            Some(id) => of_channel.find(|a| a.settings.account_id == id),
            None => {
                let all: Vec<_> = of_channel.collect();
                match all.len() {
                    0 => None,
                    1 => Some(all[0]),
                    _ => return Err(ControlError::Ambiguous(channel.to_string())),
                }
            }
        };
        found.cloned().ok_or_else(|| ControlError::Unknown(format!("{channel}:{}", account_id.unwrap_or("default"))))
    }

    /// `channels.start`: connects an account that was stopped. Whether it was stopped.
    pub fn start_account(&self, channel: &str, account_id: Option<&str>) -> Result<bool, ControlError> {
        let account = self.account(channel, account_id)?;
        if self.inner.wake_rx.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
            return Err(ControlError::NotStarted);
        }
        Ok(self.run_account(&account))
    }

    /// `channels.stop`: disconnects an account until it is started again (or the gateway
    /// restarts). Whether it was running.
    pub async fn stop_account(&self, channel: &str, account_id: Option<&str>) -> Result<bool, ControlError> {
        let account = self.account(channel, account_id)?;
        Ok(Self::halt_account(&account).await)
    }

    /// `channels.logout`: stops the account and forgets its platform session (the stored
    /// cursor: Telegram's offset, Discord's resumable session, Matrix's sync token, and any login
    /// the adapter holds), so the next start begins afresh. The journal and queue stay.
    pub async fn logout_account(&self, channel: &str, account_id: Option<&str>) -> Result<(), ControlError> {
        let account = self.account(channel, account_id)?;
        Self::halt_account(&account).await;
        self.inner
            .store
            .clear_channel_cursor(&account.settings.channel, &account.settings.account_id)
            .await
            .map_err(|e| ControlError::Store(e.to_string()))?;
        account.channel.forget_session();
        Ok(())
    }

    /// Stops connections and workers (messages in flight stay in the journal and the queue).
    pub async fn stop(&self) {
        self.inner.stop.cancel();
        for account in self.inner.accounts.values() {
            Self::halt_account(account).await;
        }
        let tasks: Vec<_> = std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
    }

    /// What is true about every account now.
    pub fn status(&self) -> Vec<ChannelReport> {
        self.inner
            .accounts
            .values()
            .map(|a| ChannelReport { status: a.health.snapshot(), capabilities: a.channel.capabilities() })
            .collect()
    }

    /// Asks every account's platform who we are (credentials and reachability).
    pub async fn probe(&self) -> Vec<ProbeReport> {
        let mut out = Vec::new();
        for a in self.inner.accounts.values() {
            let (channel, account_id) = (a.settings.channel.clone(), a.settings.account_id.clone());
            match a.channel.probe().await {
                Ok(info) => out.push(ProbeReport { channel, account_id, ok: true, info: Some(info), error: None }),
                Err(e) => {
                    out.push(ProbeReport { channel, account_id, ok: false, info: None, error: Some(e.to_string()) })
                }
            }
        }
        out
    }

    /// Local paths that take webhooks.
    pub fn webhook_paths(&self) -> Vec<String> {
        self.inner.webhooks.keys().cloned().collect()
    }

    /// Handles a webhook request on `path`; `None` when no account serves it.
    pub async fn webhook(
        &self,
        path: &str,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Option<crate::channel::WebhookReply> {
        let key = self.inner.webhooks.get(path)?;
        let account = self.inner.accounts.get(key)?;
        let fut = account.channel.webhook(&account.link, headers, body)?;
        Some(fut.await)
    }
}

#[allow(unused_variables, unreachable_patterns)]
fn adapter_for(acct: &ChannelAccount, http: reqwest::Client) -> Result<Arc<dyn Channel>, BuildError> {
    use clawline_core::config::channels::Platform;
    match &acct.platform {
        #[cfg(feature = "telegram")]
        Platform::Telegram(t) => Ok(Arc::new(crate::telegram::TelegramChannel::new(&acct.account_id, t, http))),
        #[cfg(feature = "irc")]
        Platform::Irc(i) => Ok(Arc::new(crate::irc::IrcChannel::new(&acct.account_id, i))),
        #[cfg(feature = "matrix")]
        Platform::Matrix(m) => Ok(Arc::new(crate::matrix::MatrixChannel::new(&acct.account_id, m, http))),
        #[cfg(feature = "discord")]
        Platform::Discord(d) => Ok(Arc::new(crate::discord::DiscordChannel::new(&acct.account_id, d, http))),
        #[cfg(feature = "slack")]
        Platform::Slack(k) => Ok(Arc::new(crate::slack::SlackChannel::new(&acct.account_id, k, http))),
        _ => Err(BuildError::NotBuilt(acct.channel.clone())),
    }
}
