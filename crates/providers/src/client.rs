//! [`ModelClient`]: one provider, its wire API, and the retry policy around it.
//!
//! A call that fails before producing any output with a transient error (rate limit,
//! overload, 5xx, timeout, connection failure) is retried a bounded number of times, waiting
//! for the provider's `Retry-After` when it sent one (capped) or an exponential backoff with
//! jitter otherwise. Once output has reached the caller the call is never repeated, so the user
//! never sees text twice.

use std::sync::Arc;
use std::time::Duration;

use clawline_core::config::schema::ModelCost;
use clawline_core::config::{ApiKind, ProviderSettings};
use clawline_core::message::{AssistantMessage, Usage};

use crate::error::{ErrorKind, ProviderError};
use crate::types::DiscoveredModel;
use crate::types::{ModelRequest, StreamEvent};
use crate::{anthropic_messages, bedrock, google_generative_ai, ollama, openai_completions, openai_responses};

/// How transient failures are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff; doubles each retry.
    pub base_delay: Duration,
    /// No single wait is longer than this, whatever `Retry-After` says.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_retries: 2, base_delay: Duration::from_millis(500), max_delay: Duration::from_secs(30) }
    }
}

impl RetryPolicy {
    pub(crate) fn delay(&self, attempt: u32, err: &ProviderError) -> Duration {
        if let Some(after) = err.retry_after {
            return after.min(self.max_delay);
        }
        let exp = self.base_delay.saturating_mul(1u32 << attempt.min(16));
        // Up to 25% jitter so that many clients do not retry in lockstep.
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let jitter = exp.mul_f64(f64::from(nanos % 1000) / 4000.0);
        (exp + jitter).min(self.max_delay)
    }
}

/// A client for one configured provider.
#[derive(Clone)]
pub struct ModelClient {
    settings: Arc<ProviderSettings>,
    http: reqwest::Client,
    retry: RetryPolicy,
}

impl std::fmt::Debug for ModelClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelClient").field("provider", &self.settings.id).field("api", &self.settings.api).finish()
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Fills `usage.cost` from prices in USD per million tokens.
pub(crate) fn price(usage: &mut Usage, cost: &ModelCost) {
    let per = |tokens: u64, price: f64| tokens as f64 * price / 1_000_000.0;
    usage.cost.input = per(usage.input, cost.input);
    usage.cost.output = per(usage.output, cost.output);
    usage.cost.cache_read = per(usage.cache_read, cost.cache_read);
    usage.cost.cache_write = per(usage.cache_write, cost.cache_write);
    usage.cost.total = usage.cost.input + usage.cost.output + usage.cost.cache_read + usage.cost.cache_write;
}

impl ModelClient {
    pub fn new(settings: Arc<ProviderSettings>, http: reqwest::Client) -> Self {
        ModelClient { settings, http, retry: RetryPolicy::default() }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn settings(&self) -> &ProviderSettings {
        &self.settings
    }

    /// Streams one answer: `on_event` sees output as it arrives; the finished message is returned.
    /// Dropping the future cancels the call (the connection is closed).
    pub async fn stream(
        &self,
        req: &ModelRequest,
        on_event: &mut (dyn FnMut(StreamEvent) + Send),
    ) -> Result<AssistantMessage, ProviderError> {
        let exchanged = self.exchanged().await?;
        let settings: &ProviderSettings = exchanged.as_ref().unwrap_or(&self.settings);
        let mut attempt = 0;
        loop {
            let mut produced = false;
            let mut sink = |e: StreamEvent| {
                produced = true;
                on_event(e)
            };
            let result = match settings.api {
                ApiKind::OpenAiCompletions => openai_completions::call(&self.http, settings, req, &mut sink).await,
                ApiKind::OpenAiResponses => openai_responses::call(&self.http, settings, req, &mut sink).await,
                ApiKind::AnthropicMessages => anthropic_messages::call(&self.http, settings, req, &mut sink).await,
                ApiKind::GoogleGenerativeAi => google_generative_ai::call(&self.http, settings, req, &mut sink).await,
                ApiKind::BedrockConverseStream => bedrock::call(&self.http, settings, req, &mut sink).await,
                ApiKind::Ollama => ollama::call(&self.http, settings, req, &mut sink).await,
            };
            match result {
                Err(err) if !produced && err.kind.is_transient() && attempt < self.retry.max_retries => {
                    let wait = self.retry.delay(attempt, &err);
                    tracing::warn!(
                        provider = %self.settings.id,
                        kind = err.kind.as_str(),
                        status = err.status,
                        attempt = attempt + 1,
                        wait_ms = wait.as_millis() as u64,
                        "model call failed; retrying"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(mut err) => {
                    if attempt > 0 {
                        err.message = format!("{} (after {} attempts)", err.message, attempt + 1);
                    }
                    if err.kind == ErrorKind::Auth && self.settings.api_key.is_none() {
                        err.message.push_str(if self.settings.aws.is_some() {
                            "; check the AWS credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) and region"
                        } else {
                            "; no API key is configured for this provider"
                        });
                    }
                    return Err(err);
                }
                Ok(msg) => return Ok(msg),
            }
        }
    }
}

impl ModelClient {
    /// For providers whose key is traded for a short-lived token first (GitHub Copilot): the
    /// settings with that token and its API host. `None` for everyone else.
    async fn exchanged(&self) -> Result<Option<ProviderSettings>, ProviderError> {
        let Some(url) = &self.settings.token_exchange else { return Ok(None) };
        let Some(gh) = self.settings.api_key.as_ref() else {
            return Err(ProviderError::new(
                ErrorKind::Config,
                &self.settings.id,
                "no GitHub token: run `clawline auth login github-copilot` or export COPILOT_GITHUB_TOKEN",
            ));
        };
        let t = crate::copilot::token_for(&self.http, &self.settings.id, gh, url).await?;
        let mut s = (*self.settings).clone();
        s.api_key = Some(t.token);
        s.bearer = true;
        s.token_exchange = None;
        if let Some(base) = t.api_base {
            s.base_url = base;
        }
        Ok(Some(s))
    }

    /// Asks the provider which models it serves, where its API can say (Ollama's `/api/tags`,
    /// Bedrock's `ListFoundationModels`, `GET /models` of OpenAI-compatible servers).
    /// `Ok(None)`: this API has no discovery.
    pub async fn discover(&self) -> Result<Option<Vec<DiscoveredModel>>, ProviderError> {
        if let Some(settings) = self.exchanged().await? {
            return ModelClient::new(Arc::new(settings), self.http.clone()).discover_direct().await;
        }
        self.discover_direct().await
    }

    async fn discover_direct(&self) -> Result<Option<Vec<DiscoveredModel>>, ProviderError> {
        match self.settings.api {
            ApiKind::OpenAiCompletions | ApiKind::OpenAiResponses => {
                openai_completions::discover(&self.http, &self.settings).await.map(Some)
            }
            ApiKind::Ollama => ollama::discover(&self.http, &self.settings).await.map(Some),
            ApiKind::BedrockConverseStream => bedrock::discover(&self.http, &self.settings).await.map(Some),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_usage() {
        let mut u = Usage {
            input: 1_000_000,
            output: 500_000,
            cache_read: 0,
            cache_write: 0,
            total_tokens: 0,
            cost: Default::default(),
        };
        price(&mut u, &ModelCost { input: 3.0, output: 15.0, cache_read: 0.3, cache_write: 3.75 });
        assert_eq!(u.cost.input, 3.0);
        assert_eq!(u.cost.output, 7.5);
        assert_eq!(u.cost.total, 10.5);
    }

    #[test]
    fn backoff_honours_retry_after_and_caps() {
        let p = RetryPolicy::default();
        let mut e = ProviderError::new(ErrorKind::RateLimited, "p", "x");
        e.retry_after = Some(Duration::from_secs(3));
        assert_eq!(p.delay(0, &e), Duration::from_secs(3));
        e.retry_after = Some(Duration::from_secs(3600));
        assert_eq!(p.delay(0, &e), Duration::from_secs(30));
        e.retry_after = None;
        let d = p.delay(1, &e);
        assert!(d >= Duration::from_secs(1) && d <= Duration::from_millis(1250), "{d:?}");
    }
}
