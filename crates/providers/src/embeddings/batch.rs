//! Embedding many texts through a provider's asynchronous batch API (`memory.search.remote.batch`),
//! for large indexing runs: OpenAI's and Voyage's files + batches ([`super::batch_files`]) and
//! Gemini's `asyncBatchEmbedContent` ([`super::batch_gemini`]).
//!
//! The texts are split into jobs ([`BatchSettings::max_texts_per_job`]), each job into requests
//! of [`TEXTS_PER_REQUEST`] texts. Jobs run one after another: submitted, polled every
//! [`BatchSettings::poll_interval`] until they end, their results read and matched back to the
//! texts by the ids clawline gave them (the providers do not keep order). A job that does not end
//! within [`BatchSettings::timeout`] is cancelled. Texts a job could not embed (expired, failed
//! requests) come back as `None`, so the caller embeds just those directly; an error means
//! nothing usable came back.
//!
//! Each poll and each transfer is one HTTP exchange with the client's timeout; a transient
//! failure of a poll (rate limit, 5xx, network) is waited out until the job's deadline. This
//! file must not log texts or keys.

use std::time::{Duration, Instant};

use super::{EmbeddingApi, EmbeddingClient, EmbeddingSettings, retryable};
use crate::error::{ErrorKind, ProviderError};

/// Texts per request inside a job (well under every provider's per-request token limits).
pub const TEXTS_PER_REQUEST: usize = 128;

/// How batch jobs are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    pub poll_interval: Duration,
    /// A job still running after this long is cancelled.
    pub timeout: Duration,
    /// Texts per job (OpenAI allows 50,000 inputs per embeddings batch; the answer of a job is
    /// read into memory, so jobs are kept smaller).
    pub max_texts_per_job: usize,
}

impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings {
            poll_interval: Duration::from_secs(5),
            timeout: Duration::from_secs(3600),
            max_texts_per_job: 4096,
        }
    }
}

/// Where a job stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Running(String),
    /// Done: results can be read (some may be missing).
    Ended,
    /// Failed as a whole, with the provider's reason.
    Failed(String),
}

/// Progress of a batch run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchProgress {
    pub jobs_done: usize,
    pub jobs: usize,
    pub texts_done: usize,
    pub texts: usize,
}

pub(super) fn protocol(s: &EmbeddingSettings, message: impl Into<String>) -> ProviderError {
    ProviderError::new(ErrorKind::Protocol, &s.provider, message)
}

/// `custom_id` of request `r` of job `j`.
pub(super) fn request_id(job: usize, request: usize) -> String {
    format!("clawline-{job}-{request}")
}

/// The request index in a `custom_id` of job `job`.
pub(super) fn request_index(job: usize, id: &str) -> Option<usize> {
    id.strip_prefix(&format!("clawline-{job}-"))?.parse().ok()
}

impl EmbeddingClient {
    /// Whether this endpoint has a batch API clawline speaks.
    pub fn supports_batch(&self) -> bool {
        matches!(self.settings.api, EmbeddingApi::OpenAi | EmbeddingApi::Voyage | EmbeddingApi::Gemini)
    }

    /// Embeds `texts` as documents through batch jobs: one entry per text, `None` for those no
    /// job embedded.
    pub async fn embed_batched(
        &self,
        texts: &[String],
        settings: &BatchSettings,
        progress: &(dyn Fn(BatchProgress) + Sync),
    ) -> Result<Vec<Option<Vec<f32>>>, ProviderError> {
        let s = &self.settings;
        if !self.supports_batch() {
            return Err(ProviderError::new(ErrorKind::BadRequest, &s.provider, "this API has no batch mode"));
        }
        let per_job = settings.max_texts_per_job.max(1);
        let jobs = texts.len().div_ceil(per_job);
        let mut out: Vec<Option<Vec<f32>>> = Vec::with_capacity(texts.len());
        for (j, job_texts) in texts.chunks(per_job).enumerate() {
            progress(BatchProgress { jobs_done: j, jobs, texts_done: out.len(), texts: texts.len() });
            let got = self.run_job(j, job_texts, settings).await?;
            if got.len() != job_texts.len() {
                return Err(protocol(
                    s,
                    format!("a batch answered {} results for {} texts", got.len(), job_texts.len()),
                ));
            }
            out.extend(got);
        }
        progress(BatchProgress { jobs_done: jobs, jobs, texts_done: out.len(), texts: texts.len() });
        Ok(out)
    }

    async fn run_job(
        &self,
        job: usize,
        texts: &[String],
        settings: &BatchSettings,
    ) -> Result<Vec<Option<Vec<f32>>>, ProviderError> {
        let s = &self.settings;
        let gemini = s.api == EmbeddingApi::Gemini;
        let id = if gemini {
            super::batch_gemini::submit(&self.http, s, job, texts).await?
        } else {
            super::batch_files::submit(&self.http, s, job, texts).await?
        };
        tracing::info!(provider = %s.provider, batch = %id, texts = texts.len(), "embedding batch submitted");
        let deadline = Instant::now() + settings.timeout;
        let mut last = String::new();
        loop {
            let state = if gemini {
                super::batch_gemini::poll(&self.http, s, &id).await
            } else {
                super::batch_files::poll(&self.http, s, &id).await
            };
            match state {
                Ok(JobState::Ended) => break,
                Ok(JobState::Failed(why)) => {
                    return Err(ProviderError::new(
                        ErrorKind::BadRequest,
                        &s.provider,
                        format!("batch {id} failed: {why}"),
                    ));
                }
                Ok(JobState::Running(status)) => {
                    if status != last {
                        tracing::info!(provider = %s.provider, batch = %id, status = %status, "embedding batch");
                        last = status;
                    }
                }
                Err(e) if retryable(&e) => {
                    tracing::debug!(provider = %s.provider, batch = %id, error = %e, "polling the batch failed; trying again");
                }
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                let cancelled = if gemini {
                    super::batch_gemini::cancel(&self.http, s, &id).await
                } else {
                    super::batch_files::cancel(&self.http, s, &id).await
                };
                if let Err(e) = cancelled {
                    tracing::warn!(provider = %s.provider, batch = %id, error = %e, "cancelling the batch failed");
                }
                return Err(ProviderError::new(
                    ErrorKind::Timeout,
                    &s.provider,
                    format!("batch {id} did not finish in {} min and was cancelled", settings.timeout.as_secs() / 60),
                ));
            }
            tokio::time::sleep(settings.poll_interval).await;
        }
        if gemini {
            super::batch_gemini::results(&self.http, s, &id, job, texts.len()).await
        } else {
            super::batch_files::results(&self.http, s, &id, job, texts.len()).await
        }
    }
}

/// Sends one exchange of a batch run: the endpoint's extra headers added, bounded by the
/// client's timeout, an error status classified.
pub(super) async fn exchange(
    s: &EmbeddingSettings,
    mut builder: reqwest::RequestBuilder,
    what: &str,
) -> Result<reqwest::Response, ProviderError> {
    let key = s.api_key.as_ref().map(|k| k.expose());
    for (name, value) in &s.headers {
        builder = builder.header(name, value);
    }
    let resp = tokio::time::timeout(s.timeout, builder.send())
        .await
        .map_err(|_| {
            ProviderError::new(
                ErrorKind::Timeout,
                &s.provider,
                format!("{what}: no answer in {} s", s.timeout.as_secs()),
            )
        })?
        .map_err(|e| crate::http_util::transport_error(&s.provider, &e, key))?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        let after = crate::http_util::retry_after(resp.headers());
        let text = crate::http_util::read_error_body(resp).await;
        let mut err = super::classify(&s.provider, status, &text, key);
        err.message = format!("{what}: {}", err.message);
        err.retry_after = after;
        return Err(err);
    }
    Ok(resp)
}

/// The JSON answer of an exchange (at most 16 MiB).
pub(super) async fn json_answer(
    s: &EmbeddingSettings,
    resp: reqwest::Response,
    what: &str,
) -> Result<serde_json::Value, ProviderError> {
    let key = s.api_key.as_ref().map(|k| k.expose());
    let text = tokio::time::timeout(s.timeout, crate::http_util::read_body_limited(resp, 16 << 20))
        .await
        .map_err(|_| ProviderError::new(ErrorKind::Timeout, &s.provider, format!("{what}: the answer stalled")))?
        .map_err(|e| match e {
            Some(e) => crate::http_util::transport_error(&s.provider, &e, key),
            None => protocol(s, format!("{what}: the answer is over 16 MiB")),
        })?;
    serde_json::from_str(&text).map_err(|e| protocol(s, format!("{what}: the answer is not JSON: {e}")))
}

/// Splits bytes arriving in pieces into lines, holding only the unfinished one; each line is
/// scanned for its end once, however many pieces it came in.
#[derive(Default)]
pub(super) struct Lines {
    buf: Vec<u8>,
    scanned: usize,
}

impl Lines {
    /// The lines `piece` completes (without their `\n`).
    pub(super) fn push(&mut self, piece: &[u8]) -> Vec<Vec<u8>> {
        self.buf.extend_from_slice(piece);
        let mut out = Vec::new();
        while let Some(pos) = self.buf[self.scanned..].iter().position(|b| *b == b'\n') {
            let end = self.scanned + pos;
            out.push(self.buf[..end].to_vec());
            self.buf.drain(..=end);
            self.scanned = 0;
        }
        self.scanned = self.buf.len();
        out
    }

    /// Bytes of the unfinished line.
    pub(super) fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The last line, if the body did not end with `\n`.
    pub(super) fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Calls `f` with each non-empty line of a JSONL body as it arrives (a line may be a few MB;
/// the body as a whole is never held). Each silence is bounded by the client's timeout.
pub(super) async fn for_each_line(
    s: &EmbeddingSettings,
    resp: reqwest::Response,
    mut f: impl FnMut(&str) -> Result<(), ProviderError>,
) -> Result<(), ProviderError> {
    use futures_util::StreamExt;
    const MAX_LINE: usize = 256 << 20;
    let key = s.api_key.as_ref().map(|k| k.expose());
    let mut stream = resp.bytes_stream();
    let mut lines = Lines::default();
    let mut line = |bytes: &[u8]| -> Result<(), ProviderError> {
        let text = std::str::from_utf8(bytes).map_err(|_| protocol(s, "a batch result line is not UTF-8"))?;
        if text.trim().is_empty() { Ok(()) } else { f(text.trim()) }
    };
    loop {
        let next = tokio::time::timeout(s.timeout, stream.next())
            .await
            .map_err(|_| ProviderError::new(ErrorKind::Timeout, &s.provider, "the batch results stalled"))?;
        let Some(piece) = next else { break };
        let piece = piece.map_err(|e| crate::http_util::transport_error(&s.provider, &e, key))?;
        for l in lines.push(&piece) {
            line(&l)?;
        }
        if lines.pending() > MAX_LINE {
            return Err(protocol(s, "a batch result line is over 256 MiB"));
        }
    }
    line(&lines.finish())
}

/// An error a batch API put in a JSON value (`{"message"}`, `{"code", "message"}`, a string).
pub(super) fn reason(v: &serde_json::Value) -> Option<String> {
    v["message"].as_str().or_else(|| v.as_str()).map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// However a body is cut into pieces, the lines are those of the whole body.
        #[test]
        fn lines_do_not_depend_on_how_the_body_arrives(
            body in proptest::collection::vec(proptest::prop_oneof![proptest::prelude::Just(b'\n'), 0u8..=255], 0..400),
            cuts in proptest::collection::vec(0usize..400, 0..12),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(body.len())).collect();
            cuts.sort_unstable();
            let mut lines = Lines::default();
            let mut got: Vec<Vec<u8>> = Vec::new();
            let mut at = 0;
            for c in cuts.into_iter().chain([body.len()]) {
                got.extend(lines.push(&body[at..c]));
                at = c;
            }
            let last = lines.finish();
            let mut want: Vec<Vec<u8>> = body.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
            let tail = want.pop().unwrap_or_default();
            proptest::prop_assert_eq!(got, want);
            proptest::prop_assert_eq!(last, tail);
        }
    }

    #[test]
    fn request_ids_round_trip_within_their_job() {
        assert_eq!(request_index(3, &request_id(3, 17)), Some(17));
        assert_eq!(request_index(2, &request_id(3, 17)), None);
        assert_eq!(request_index(3, "clawline-3-x"), None);
        assert_eq!(request_index(3, "other"), None);
    }
}
