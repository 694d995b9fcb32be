//! The batch API OpenAI defines and Voyage copies: a JSONL file of requests uploaded to
//! `POST {base}/files` (multipart, `purpose=batch`), a job made from it with `POST
//! {base}/batches`, polled with `GET {base}/batches/{id}`, and its answers read as JSONL from
//! `GET {base}/files/{output_file_id}/content`. `Authorization: Bearer <key>` on each.
//!
//! The dialects differ:
//!
//! - OpenAI: each line is `{"custom_id", "method": "POST", "url": "/v1/embeddings", "body":
//!   {"model", "input", "dimensions"?}}`; the job is `{"input_file_id", "endpoint":
//!   "/v1/embeddings", "completion_window": "24h", "metadata"}`. The uploaded file and the
//!   results are deleted afterwards (`DELETE {base}/files/{id}`): they hold the memory's text.
//! - Voyage: each line is `{"custom_id", "body": {"input"}}`; the model and `input_type`
//!   (`document`) go once in the job's `request_params`, with `completion_window: "12h"`.
//!
//! Status `completed`, `expired` or `cancelled` ends a job (the last two with what was done),
//! `failed` fails it with the first of its `errors`. Result lines are
//! `{"custom_id", "response": {"status_code", "body": {"data": [{"index", "embedding"}]}},
//! "error"}` in any order; a line with another status or an error leaves its texts `None`.

use serde_json::{Value, json};

use super::batch::{
    JobState, TEXTS_PER_REQUEST, exchange, for_each_line, json_answer, protocol, reason, request_id, request_index,
};
use super::{EmbeddingApi, EmbeddingSettings, floats};
use crate::error::ProviderError;

/// OpenAI's limit on an uploaded batch file.
const MAX_FILE_BYTES: usize = 200 << 20;

fn base(s: &EmbeddingSettings) -> &str {
    s.base_url.trim_end_matches('/')
}

fn authed(s: &EmbeddingSettings, b: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match &s.api_key {
        Some(k) => b.bearer_auth(k.expose()),
        None => b,
    }
}

/// The request lines of job `job`.
fn jsonl(s: &EmbeddingSettings, job: usize, texts: &[String]) -> String {
    let voyage = s.api == EmbeddingApi::Voyage;
    let mut out = String::new();
    for (r, chunk) in texts.chunks(TEXTS_PER_REQUEST).enumerate() {
        let line = if voyage {
            json!({"custom_id": request_id(job, r), "body": {"input": chunk}})
        } else {
            let mut body = json!({"model": s.model, "input": chunk});
            if let Some(d) = s.dimensions {
                body["dimensions"] = json!(d);
            }
            json!({"custom_id": request_id(job, r), "method": "POST", "url": "/v1/embeddings", "body": body})
        };
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

/// A multipart body with the `purpose` field and the file; `(content type, body)`.
fn multipart(data: &str) -> (String, Vec<u8>) {
    let mut random = [0u8; 12];
    // A fixed boundary would still be unambiguous (JSONL cannot hold a bare CRLF), but a random
    // one is what the format expects.
    let _ = aws_lc_rs::rand::fill(&mut random);
    let boundary: String = format!("clawline-{}", random.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let mut body = Vec::with_capacity(data.len() + 512);
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n").as_bytes(),
    );
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"clawline-memory.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(data.as_bytes());
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Uploads the requests and starts the job; its id.
pub(super) async fn submit(
    http: &reqwest::Client,
    s: &EmbeddingSettings,
    job: usize,
    texts: &[String],
) -> Result<String, ProviderError> {
    let data = jsonl(s, job, texts);
    if data.len() > MAX_FILE_BYTES {
        return Err(protocol(s, format!("a batch file of {} MB is over the 200 MB limit", data.len() >> 20)));
    }
    let (content_type, body) = multipart(&data);
    let url = format!("{}/files", base(s));
    let upload = authed(s, http.post(&url)).header("content-type", content_type).body(body);
    let file =
        json_answer(s, exchange(s, upload, "uploading the batch file").await?, "uploading the batch file").await?;
    let file_id = file["id"].as_str().ok_or_else(|| protocol(s, "the uploaded file has no `id`"))?.to_string();
    let voyage = s.api == EmbeddingApi::Voyage;
    let mut create = json!({
        "input_file_id": file_id,
        "endpoint": "/v1/embeddings",
        "completion_window": if voyage { "12h" } else { "24h" },
        "metadata": {"source": "clawline-memory"},
    });
    if voyage {
        create["request_params"] = json!({"model": s.model, "input_type": "document"});
        if let Some(d) = s.dimensions {
            create["request_params"]["output_dimension"] = json!(d);
        }
    }
    let url = format!("{}/batches", base(s));
    let started = json_answer(
        s,
        exchange(s, authed(s, http.post(&url)).json(&create), "starting the batch").await?,
        "starting the batch",
    )
    .await?;
    started["id"].as_str().map(String::from).ok_or_else(|| protocol(s, "the batch has no `id`"))
}

async fn batch(http: &reqwest::Client, s: &EmbeddingSettings, id: &str) -> Result<Value, ProviderError> {
    let url = format!("{}/batches/{id}", base(s));
    json_answer(s, exchange(s, authed(s, http.get(&url)), "reading the batch").await?, "reading the batch").await
}

/// Where job `id` stands.
pub(super) async fn poll(http: &reqwest::Client, s: &EmbeddingSettings, id: &str) -> Result<JobState, ProviderError> {
    let b = batch(http, s, id).await?;
    let status = b["status"].as_str().ok_or_else(|| protocol(s, "the batch has no `status`"))?;
    Ok(match status {
        "completed" | "expired" | "cancelled" => JobState::Ended,
        "failed" => JobState::Failed(
            b["errors"]["data"].as_array().and_then(|e| e.first()).and_then(reason).unwrap_or_else(|| "failed".into()),
        ),
        other => {
            let counts = &b["request_counts"];
            match (counts["completed"].as_u64(), counts["total"].as_u64()) {
                (Some(done), Some(total)) if total > 0 => JobState::Running(format!("{other} {done}/{total}")),
                _ => JobState::Running(other.to_string()),
            }
        }
    })
}

/// Asks the provider to stop job `id`.
pub(super) async fn cancel(http: &reqwest::Client, s: &EmbeddingSettings, id: &str) -> Result<(), ProviderError> {
    let url = format!("{}/batches/{id}/cancel", base(s));
    exchange(s, authed(s, http.post(&url)), "cancelling the batch").await.map(|_| ())
}

/// Puts the vectors of one result line of job `job` in their places in `out`. A failed request
/// leaves its places empty; a line clawline cannot place is an error.
fn result_line(
    s: &EmbeddingSettings,
    job: usize,
    line: &str,
    out: &mut [Option<Vec<f32>>],
) -> Result<(), ProviderError> {
    let v: Value =
        serde_json::from_str(line).map_err(|e| protocol(s, format!("a batch result line is not JSON: {e}")))?;
    let Some(r) = v["custom_id"].as_str().and_then(|c| request_index(job, c)) else {
        return Err(protocol(s, "a batch result line has a custom_id clawline did not send"));
    };
    if v["response"]["status_code"].as_u64() != Some(200) {
        return Ok(()); // Failed request: its texts are embedded directly.
    }
    let data = v["response"]["body"]["data"].as_array().ok_or_else(|| protocol(s, "a batch result has no `data`"))?;
    for (pos, item) in data.iter().enumerate() {
        let i = item["index"].as_u64().map_or(pos, |i| i as usize);
        let at = r.checked_mul(TEXTS_PER_REQUEST).and_then(|b| b.checked_add(i));
        match at.filter(|at| i < TEXTS_PER_REQUEST && *at < out.len()) {
            Some(at) => out[at] = Some(floats(&s.provider, &item["embedding"])?),
            None => return Err(protocol(s, format!("a batch result has index {i} outside its request"))),
        }
    }
    Ok(())
}

/// The vectors of an ended job of `count` texts, by position.
pub(super) async fn results(
    http: &reqwest::Client,
    s: &EmbeddingSettings,
    id: &str,
    job: usize,
    count: usize,
) -> Result<Vec<Option<Vec<f32>>>, ProviderError> {
    let b = batch(http, s, id).await?;
    let mut out: Vec<Option<Vec<f32>>> = vec![None; count];
    if let Some(output) = b["output_file_id"].as_str().filter(|f| !f.is_empty()) {
        let url = format!("{}/files/{output}/content", base(s));
        let resp = exchange(s, authed(s, http.get(&url)), "reading the batch results").await?;
        for_each_line(s, resp, |line| result_line(s, job, line, &mut out)).await?;
    }
    if s.api == EmbeddingApi::OpenAi {
        for file in [&b["input_file_id"], &b["output_file_id"], &b["error_file_id"]] {
            if let Some(f) = file.as_str().filter(|f| !f.is_empty()) {
                let url = format!("{}/files/{f}", base(s));
                if let Err(e) = exchange(s, authed(s, http.delete(&url)), "deleting a batch file").await {
                    tracing::warn!(provider = %s.provider, file = f, error = %e, "could not delete a batch file");
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(api: EmbeddingApi) -> EmbeddingSettings {
        EmbeddingSettings {
            provider: "p".into(),
            api,
            base_url: "http://x/v1".into(),
            api_key: None,
            model: "m".into(),
            dimensions: Some(8),
            headers: Vec::new(),
            timeout: std::time::Duration::from_secs(1),
            retries: 0,
        }
    }

    #[test]
    fn lines_follow_each_dialect() {
        let texts: Vec<String> = (0..TEXTS_PER_REQUEST + 1).map(|i| format!("t{i}")).collect();
        let openai: Vec<Value> = jsonl(&settings(EmbeddingApi::OpenAi), 2, &texts)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(openai.len(), 2);
        assert_eq!(openai[1]["custom_id"], "clawline-2-1");
        assert_eq!((openai[0]["method"].as_str(), openai[0]["url"].as_str()), (Some("POST"), Some("/v1/embeddings")));
        assert_eq!(openai[0]["body"]["input"].as_array().unwrap().len(), TEXTS_PER_REQUEST);
        assert_eq!(
            (openai[1]["body"]["model"].as_str(), openai[1]["body"]["dimensions"].as_u64()),
            (Some("m"), Some(8))
        );
        let voyage: Vec<Value> = jsonl(&settings(EmbeddingApi::Voyage), 0, &texts)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(voyage[0].as_object().unwrap().keys().collect::<Vec<_>>(), ["body", "custom_id"]);
        assert_eq!(voyage[1]["body"], json!({"input": ["t128"]}));
    }

    #[test]
    fn result_lines_are_placed_or_refused() {
        let s = settings(EmbeddingApi::OpenAi);
        let mut out = vec![None; TEXTS_PER_REQUEST + 2];
        let line = json!({"custom_id": "clawline-0-1", "response": {"status_code": 200, "body": {"data": [{"index": 1, "embedding": [0.5]}]}}});
        result_line(&s, 0, &line.to_string(), &mut out).unwrap();
        assert_eq!(out[TEXTS_PER_REQUEST + 1], Some(vec![0.5]));
        let far = json!({"custom_id": "clawline-0-1", "response": {"status_code": 200, "body": {"data": [{"index": 5, "embedding": [0.5]}]}}});
        assert!(result_line(&s, 0, &far.to_string(), &mut out).is_err());
        let failed = json!({"custom_id": "clawline-0-0", "response": {"status_code": 500}});
        result_line(&s, 0, &failed.to_string(), &mut out).unwrap();
        assert!(out[0].is_none());
        assert!(result_line(&s, 0, r#"{"custom_id": "someone-else"}"#, &mut out).is_err());
    }

    proptest::proptest! {
        /// Whatever a result line holds, it is placed or refused, never a panic.
        #[test]
        fn hostile_result_lines_never_panic(line in "\\PC{0,200}", id in 0usize..1000, index in proptest::num::i64::ANY) {
            let s = settings(EmbeddingApi::OpenAi);
            let mut out = vec![None; 10];
            let _ = result_line(&s, 0, &line, &mut out);
            let shaped = json!({"custom_id": format!("clawline-0-{id}"), "response": {"status_code": 200, "body": {"data": [{"index": index, "embedding": [1.0]}]}}});
            let _ = result_line(&s, 0, &shaped.to_string(), &mut out);
        }
    }

    #[test]
    fn multipart_holds_the_purpose_and_the_file() {
        let (ct, body) = multipart("{\"a\":1}\n");
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.contains("name=\"purpose\"\r\n\r\nbatch\r\n"));
        assert!(
            text.contains(
                "filename=\"clawline-memory.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n{\"a\":1}\n\r\n"
            )
        );
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
    }
}
