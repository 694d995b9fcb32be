//! The exec approval broker: a command that needs the owner's yes waits here until someone
//! with the right to decide answers, the request expires, or the run is cancelled.
//!
//! A request carries the exact argv and cwd the tool will run. It is written to the store
//! before anyone is told about it (so a decision always finds it), announced on
//! [`Approvals::subscribe`] (the gateway turns that into `exec.approval.requested` for
//! operators; channels can turn it into buttons), and decided once ([`Approvals::resolve`]):
//! the first decision is kept, later ones are refused. The waiting tool then runs the argv it
//! asked about, never anything a decision carried. "Allow always" stores a grant for that
//! exact argv and cwd; [`Approvals::ask`] answers from it without asking again.
//!
//! It must not run anything itself and knows nothing about which commands need approval.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clawline_store::{Decided, ExecApprovalRow, Store};
use tokio::sync::{broadcast, oneshot};

/// A decision on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    AllowOnce,
    AllowAlways,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::AllowOnce => "allow-once",
            Decision::AllowAlways => "allow-always",
            Decision::Deny => "deny",
        }
    }

    pub fn parse(s: &str) -> Option<Decision> {
        match s {
            "allow-once" => Some(Decision::AllowOnce),
            "allow-always" => Some(Decision::AllowAlways),
            "deny" => Some(Decision::Deny),
            _ => None,
        }
    }
}

/// What happened to a request, as the waiting tool sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A standing grant covers this exact command; nobody was asked.
    Granted,
    /// Someone allowed it (once, or always).
    Allowed {
        id: String,
        always: bool,
        by: String,
    },
    Denied {
        id: String,
        by: String,
    },
    /// No decision in time.
    Expired {
        id: String,
        after: Duration,
    },
}

/// What the gateway and channels hear.
#[derive(Debug, Clone)]
pub enum ApprovalEvent {
    Requested(ExecApprovalRow),
    Resolved(ExecApprovalRow),
}

/// Why a decision was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("unknown approval id `{0}`")]
    Unknown(String),
    #[error("approval `{id}` is already {status}")]
    Closed { id: String, status: String },
    #[error("state store error: {0}")]
    Store(#[from] clawline_store::StoreError),
}

/// Who asks and about what.
#[derive(Debug, Clone)]
pub struct AskExec {
    pub agent_id: String,
    pub session_key: String,
    pub run_id: String,
    pub argv: Vec<String>,
    pub cwd: String,
}

/// The broker; one per runtime.
pub struct Approvals {
    store: Store,
    waiters: Mutex<HashMap<String, oneshot::Sender<(Decision, String)>>>,
    events: broadcast::Sender<ApprovalEvent>,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals").finish_non_exhaustive()
    }
}

/// Closes a request that is still pending when its waiter goes away (the run was cancelled).
struct CloseOnDrop {
    store: Store,
    id: Option<String>,
    events: broadcast::Sender<ApprovalEvent>,
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        let (store, events) = (self.store.clone(), self.events.clone());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if store.close_exec_approval(&id, "cancelled", "run ended").await.unwrap_or(false)
                    && let Ok(Some(row)) = store.exec_approval(&id).await
                {
                    let _ = events.send(ApprovalEvent::Resolved(row));
                }
            });
        }
    }
}

impl Approvals {
    pub fn new(store: Store) -> Arc<Approvals> {
        let (events, _) = broadcast::channel(256);
        Arc::new(Approvals { store, waiters: Mutex::new(HashMap::new()), events })
    }

    /// Requests and decisions as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<ApprovalEvent> {
        self.events.subscribe()
    }

    fn waiters(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<(Decision, String)>>> {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks for approval of `req` and waits up to `timeout` for a decision.
    pub async fn ask(&self, req: AskExec, timeout: Duration) -> Result<Outcome, clawline_store::StoreError> {
        if self.store.exec_grant_exists(&req.agent_id, &req.argv, &req.cwd).await? {
            return Ok(Outcome::Granted);
        }
        let now = clawline_store::now_ms();
        let row = ExecApprovalRow {
            id: uuid::Uuid::new_v4().to_string(),
            agent_id: req.agent_id,
            session_key: req.session_key,
            run_id: req.run_id,
            argv: req.argv,
            cwd: req.cwd,
            status: "pending".into(),
            decision: None,
            resolved_by: None,
            created_at: now,
            expires_at: now + timeout.as_millis() as i64,
            resolved_at: None,
        };
        let id = row.id.clone();
        let (tx, rx) = oneshot::channel();
        self.waiters().insert(id.clone(), tx);
        let mut guard = CloseOnDrop { store: self.store.clone(), id: Some(id.clone()), events: self.events.clone() };
        if let Err(e) = self.store.insert_exec_approval(row.clone()).await {
            self.waiters().remove(&id);
            guard.id = None;
            return Err(e);
        }
        tracing::info!(approval = %id, agent = %row.agent_id, session = %row.session_key, "exec approval requested");
        let _ = self.events.send(ApprovalEvent::Requested(row));
        let outcome = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok((decision, by))) => match decision {
                Decision::Deny => Outcome::Denied { id: id.clone(), by },
                d => Outcome::Allowed { id: id.clone(), always: d == Decision::AllowAlways, by },
            },
            // The sender went away without a decision: only a broker shutting down does that.
            Ok(Err(_)) | Err(_) => {
                self.waiters().remove(&id);
                let closed = self.store.close_exec_approval(&id, "expired", "no decision in time").await?;
                let row = self.store.exec_approval(&id).await?;
                match row {
                    // A decision landed between the timeout and the close: it stands.
                    Some(r) if !closed && r.status == "allowed" => Outcome::Allowed {
                        id: id.clone(),
                        always: r.decision.as_deref() == Some("allow-always"),
                        by: r.resolved_by.unwrap_or_default(),
                    },
                    Some(r) if !closed && r.status == "denied" => {
                        Outcome::Denied { id: id.clone(), by: r.resolved_by.unwrap_or_default() }
                    }
                    row => {
                        if let Some(r) = row.filter(|_| closed) {
                            let _ = self.events.send(ApprovalEvent::Resolved(r));
                        }
                        Outcome::Expired { id: id.clone(), after: timeout }
                    }
                }
            }
        };
        guard.id = None;
        Ok(outcome)
    }

    /// Takes a decision on request `id`, on behalf of `by`.
    pub async fn resolve(&self, id: &str, decision: Decision, by: &str) -> Result<ExecApprovalRow, ResolveError> {
        match self.store.decide_exec_approval(id, decision.as_str(), by).await? {
            Decided::Recorded(row) => {
                tracing::info!(approval = %id, decision = decision.as_str(), by, "exec approval decided");
                if let Some(tx) = self.waiters().remove(id) {
                    let _ = tx.send((decision, by.to_string()));
                }
                let _ = self.events.send(ApprovalEvent::Resolved(row.clone()));
                Ok(row)
            }
            Decided::AlreadyClosed(row) => Err(ResolveError::Closed { id: id.to_string(), status: row.status }),
            Decided::Unknown => Err(ResolveError::Unknown(id.to_string())),
        }
    }

    /// Requests waiting for a decision.
    pub async fn pending(&self) -> Result<Vec<ExecApprovalRow>, clawline_store::StoreError> {
        self.store.pending_exec_approvals().await
    }

    /// Closes what a previous process left pending; call once at start-up.
    pub async fn recover(&self) -> Result<usize, clawline_store::StoreError> {
        self.store.abandon_pending_exec_approvals().await
    }
}
