//! Where runs report what they did: the metrics registry, the observability store and the
//! budget ledger, shared by every run of the process.
//!
//! The store (`<state>/observability.sqlite`) is opened on first use, off the async threads,
//! and the ledger is seeded from it then, so start-up pays nothing for it. If the file cannot
//! be opened, runs go on: metrics and budgets still work (budgets then count from zero for
//! this process), and the failure is logged once. Recording never blocks a run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clawline_observe::trace::{Span, SpanSink};
use clawline_observe::{Journal, Metrics, Record, metrics};
use tokio::sync::OnceCell;

use crate::budget::{self, Ledger};

/// The shared recorder.
pub struct Observer {
    metrics: Arc<Metrics>,
    path: Option<PathBuf>,
    journal: OnceCell<Option<Journal>>,
    ledger: Ledger,
    spans: std::sync::OnceLock<Arc<dyn SpanSink>>,
    scrub: std::sync::OnceLock<Scrubber>,
}

/// Replaces known secrets in text (the log redactor's list).
pub type Scrubber = Arc<dyn Fn(&str) -> String + Send + Sync>;

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Observer {
    /// Records into `path` (`None`: metrics and budgets only, nothing written).
    pub fn new(path: Option<PathBuf>) -> Self {
        Observer {
            metrics: Arc::new(Metrics::new()),
            path,
            journal: OnceCell::new(),
            ledger: Ledger::default(),
            spans: std::sync::OnceLock::new(),
            scrub: std::sync::OnceLock::new(),
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Sends finished spans to `sink` from now on (an OTLP exporter; set once, at start).
    pub fn set_span_sink(&self, sink: Arc<dyn SpanSink>) {
        let _ = self.spans.set(sink);
    }

    /// Audit rows pass through `scrub` from now on (set once, at start, with the log redactor).
    pub fn set_scrubber(&self, scrub: Scrubber) {
        let _ = self.scrub.set(scrub);
    }

    /// Whether spans are exported.
    pub fn tracing(&self) -> bool {
        self.spans.get().is_some()
    }

    /// Hands a finished span to the exporter, if there is one.
    pub fn span(&self, span: Span) {
        if let Some(sink) = self.spans.get() {
            sink.export(span);
        }
    }

    /// The store, opened (and the ledger seeded) on first call.
    pub async fn journal(&self) -> Option<&Journal> {
        self.journal
            .get_or_init(|| async {
                let path = self.path.clone()?;
                let since = budget::day_start_ms(clawline_store::now_ms());
                let opened = tokio::task::spawn_blocking(move || {
                    let journal = Journal::open(&path)?;
                    let spent = journal
                        .query(move |c| clawline_observe::usage::spent_by_agent(c, since))?
                        .unwrap_or_default();
                    Ok::<_, clawline_observe::ObserveError>((journal, spent))
                })
                .await;
                match opened {
                    Ok(Ok((journal, spent))) => {
                        self.ledger.seed(budget::day_of(since), &spent);
                        Some(journal)
                    }
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "observability store unavailable: runs are not journaled, budgets count from now");
                        None
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "observability store could not be opened");
                        None
                    }
                }
            })
            .await
            .as_ref()
    }

    /// Whether `agent` may make another model call: the ledger, seeded from the store first
    /// (so the first call after a restart already counts what the day spent before it).
    pub async fn check_budget(
        &self,
        agent: &str,
        budget: &clawline_core::config::BudgetSettings,
        now_ms: i64,
    ) -> Result<(), budget::Exceeded> {
        if budget.daily_tokens.is_some() || budget.daily_cost_usd.is_some() {
            self.journal().await;
        }
        self.ledger.check(agent, budget, now_ms)
    }

    /// Hands a row to the store (if it is open) and counts a drop.
    pub async fn record(&self, mut r: Record) {
        if let (Record::Audit(a), Some(scrub)) = (&mut r, self.scrub.get()) {
            // A command line or an error may hold a key the model or a user typed.
            a.target = scrub(&a.target);
            a.outcome = scrub(&a.outcome);
            a.detail = scrub(&a.detail);
        }
        if let Some(j) = self.journal().await
            && !j.record(r)
        {
            self.metrics.inc(&metrics::JOURNAL_DROPPED, &[]);
        }
    }

    /// Waits until every row handed over so far is written (shutdown, the CLI's exit, tests).
    pub async fn flush(&self) {
        let Some(j) = self.journal.get().and_then(|j| j.clone()) else { return };
        let _ = tokio::task::spawn_blocking(move || j.flush(Duration::from_secs(10))).await;
    }
}
