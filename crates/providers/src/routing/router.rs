//! [`Router`]: one model call over an ordered list of routes (model × credential), with key
//! rotation, cooldowns and model fallback.
//!
//! Routes are tried in order: every credential of the primary model, then every credential of
//! each fallback model. What happens after a failure is decided by its class
//! ([`Verdict`](super::cooldown::Verdict)):
//!
//! - a rate limit moves straight to the next key (never hammering the same one);
//! - an auth or billing failure benches the key and moves on;
//! - overload, 5xx, timeout or an unreachable server skips the rest of that model's keys and
//!   moves to the next model (ECONNREFUSED from a local server falls back too);
//! - a context-length, bad-request or malformed-stream failure stops: another model would not
//!   make the request valid, and nothing is benched.
//!
//! Resting routes are skipped, so a cooled-down primary never blocks its fallbacks. When a whole
//! pass fails with transient errors, the pass is repeated (at most `RetryPolicy::max_retries`
//! times) after a short backoff or the provider's `Retry-After`; when every route is resting,
//! the one back soonest is tried. Nothing is retried once output has reached the caller.
//!
//! This file must not know about sessions, channels or the agent: it gets a request and
//! returns a message, plus a note when a fallback answered.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use clawline_core::config::ModelRef;
use clawline_core::config::schema::{ModelCompat, ModelCost};
use clawline_core::message::AssistantMessage;

use super::cooldown::{CooldownBook, Verdict};
use crate::client::{ModelClient, RetryPolicy};
use crate::error::ProviderError;
use crate::types::{ModelRequest, StreamEvent};

/// One way to make the call: a model reached through one credential.
#[derive(Debug, Clone)]
pub struct Route {
    pub model: ModelRef,
    /// The credential's profile id, e.g. `openai:env` or `anthropic:work`.
    pub profile: String,
    /// A client for the provider with this credential. Its own retries are turned off: the
    /// router decides what to try next.
    pub client: ModelClient,
    pub cost: ModelCost,
    pub compat: ModelCompat,
    pub max_tokens: u32,
}

impl Route {
    pub fn new(model: ModelRef, profile: impl Into<String>, client: ModelClient) -> Route {
        Route {
            model,
            profile: profile.into(),
            client: client.with_retry(RetryPolicy { max_retries: 0, ..RetryPolicy::default() }),
            cost: ModelCost::default(),
            compat: ModelCompat::default(),
            max_tokens: 4096,
        }
    }
}

/// Said when the answer came from another model than the one selected.
#[derive(Debug, Clone, PartialEq)]
pub struct FallbackNote {
    /// The selected model, `provider/model`.
    pub selected: String,
    /// The model that answered.
    pub used: String,
    /// Why the selected model did not answer, in words.
    pub reason: String,
}

impl FallbackNote {
    /// The line shown to the user.
    pub fn notice(&self) -> String {
        format!("↪ answered by {} ({} unavailable: {})", self.used, self.selected, self.reason)
    }
}

/// A successful call.
#[derive(Debug, Clone)]
pub struct Answer {
    pub message: AssistantMessage,
    /// Index of the route that answered.
    pub route: usize,
    pub fallback: Option<FallbackNote>,
}

/// Routes for one agent's model selection, sharing a cooldown book with every other router.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<Route>,
    book: CooldownBook,
    policy: RetryPolicy,
    /// The route of the call in flight (or the last one).
    current: Arc<AtomicUsize>,
}

impl Router {
    /// `routes` must not be empty; the first one's model is the selected model.
    pub fn new(routes: Vec<Route>, book: CooldownBook, policy: RetryPolicy) -> Router {
        Router { routes, book, policy, current: Arc::new(AtomicUsize::new(0)) }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route of the call in flight, or of the last call (the primary before any call).
    /// `None` only when the router has no routes.
    pub fn current(&self) -> Option<&Route> {
        self.routes.get(self.current.load(Ordering::Relaxed)).or(self.routes.first())
    }

    /// The request as `route` sends it.
    fn request_for(route: &Route, base: &ModelRequest) -> ModelRequest {
        ModelRequest {
            model: route.model.model.clone(),
            cost: route.cost,
            compat: route.compat.clone(),
            max_tokens: route.max_tokens,
            ..base.clone()
        }
    }

    /// Makes the call, moving along the routes as failures require. `base.model`, `cost`,
    /// `compat` and `max_tokens` are replaced by each route's own.
    pub async fn stream(
        &self,
        base: &ModelRequest,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<Answer, ProviderError> {
        let Some(first) = self.routes.first() else {
            return Err(ProviderError::new(crate::ErrorKind::Config, "router", "no model is configured"));
        };
        let selected = first.model.clone();
        let mut first_failure: Option<String> = None;
        let mut failures: Vec<String> = Vec::new();
        let mut last_err: Option<ProviderError> = None;
        let mut round = 0u32;
        loop {
            let now = Instant::now();
            let mut order: Vec<usize> = (0..self.routes.len())
                .filter(|&i| {
                    let r = &self.routes[i];
                    self.book.resting_until(&r.profile, &r.model.model, now).is_none()
                })
                .collect();
            if order.is_empty() {
                // Everything is resting: try the route that is back soonest rather than nothing.
                let soonest = (0..self.routes.len()).min_by_key(|&i| {
                    let r = &self.routes[i];
                    self.book.resting_until(&r.profile, &r.model.model, now)
                });
                order.extend(soonest);
            }
            let mut down_models: Vec<&ModelRef> = Vec::new();
            for i in order {
                let route = &self.routes[i];
                if down_models.contains(&&route.model) {
                    continue;
                }
                self.current.store(i, Ordering::Relaxed);
                let req = Self::request_for(route, base);
                let mut produced = false;
                let mut sink = |e: StreamEvent| {
                    produced = true;
                    on_event(e)
                };
                match route.client.stream(&req, &mut sink).await {
                    Ok(message) => {
                        self.book.record_success(&route.profile, &route.model.model);
                        let fallback = (route.model != selected).then(|| FallbackNote {
                            selected: selected.to_string(),
                            used: route.model.to_string(),
                            reason: first_failure.clone().unwrap_or_else(|| "resting after earlier failures".into()),
                        });
                        if let Some(note) = &fallback {
                            tracing::warn!(selected = %note.selected, used = %note.used, reason = %note.reason, "fallback model answered");
                        }
                        return Ok(Answer { message, route: i, fallback });
                    }
                    Err(err) if produced => {
                        self.book.record_failure(&route.profile, &route.model.model, &err, Instant::now());
                        return Err(err);
                    }
                    Err(err) => {
                        let verdict =
                            self.book.record_failure(&route.profile, &route.model.model, &err, Instant::now());
                        tracing::warn!(
                            model = %route.model,
                            profile = %route.profile,
                            kind = err.kind.as_str(),
                            status = err.status,
                            "model call failed; trying the next route"
                        );
                        let brief = format!("{} via {}: {}", route.model, route.profile, err.message);
                        if first_failure.is_none() && route.model == selected {
                            first_failure = Some(err.kind.as_str().replace('_', " "));
                        }
                        failures.push(brief);
                        match verdict {
                            Verdict::Stop => return Err(err),
                            Verdict::ModelDown => down_models.push(&route.model),
                            Verdict::RotateKey | Verdict::KeyDown | Verdict::Skip => {}
                        }
                        last_err = Some(err);
                    }
                }
            }
            let Some(err) = last_err.take() else {
                return Err(ProviderError::new(crate::ErrorKind::Config, "router", "no route could be tried"));
            };
            if !err.kind.is_transient() || round >= self.policy.max_retries {
                return Err(summarize(err, &failures, round + 1));
            }
            let now = Instant::now();
            let soonest = self
                .routes
                .iter()
                .filter_map(|r| self.book.resting_until(&r.profile, &r.model.model, now))
                .min()
                .map(|u| u - now);
            let backoff = self.policy.delay(round, &err);
            let wait = soonest.map_or(backoff, |s| s.min(backoff));
            tracing::info!(wait_ms = wait.as_millis() as u64, round = round + 1, "every route failed; trying again");
            tokio::time::sleep(wait).await;
            round += 1;
            last_err = Some(err);
        }
    }
}

/// The last error, with every attempt listed when there was more than one.
fn summarize(mut err: ProviderError, failures: &[String], passes: u32) -> ProviderError {
    if failures.len() > 1 {
        let mut shown: Vec<&str> = Vec::new();
        for f in failures {
            if !shown.contains(&f.as_str()) {
                shown.push(f);
            }
        }
        let extra = if shown.len() > 6 { format!(" (and {} more)", shown.len() - 6) } else { String::new() };
        shown.truncate(6);
        err.message = format!(
            "{} attempts over {passes} pass{} failed: {}{extra}",
            failures.len(),
            if passes == 1 { "" } else { "es" },
            shown.join("; ")
        );
    }
    err
}
