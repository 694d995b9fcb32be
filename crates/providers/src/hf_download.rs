//! Downloading a local embedding model from the Hugging Face Hub once (`memory.search.model:
//! "hf:<owner>/<repo>[@<revision>]"`): `config.json`, `tokenizer.json` and `model.safetensors`
//! into a folder of the state directory.
//!
//! Each file is `GET {endpoint}/{repo}/resolve/{revision}/{file}`, with `Authorization: Bearer
//! <HF_TOKEN>` when a token is set. Large files answer with a redirect to a content host that
//! carries the file's SHA-256 in `X-Linked-Etag` and its size in `X-Linked-Size`; redirects are
//! followed here (at most [`MAX_REDIRECTS`]) so those headers are seen, and the token is not
//! sent to another host. A file is written to `<name>.part`, checked against the hash and size
//! when the hub gave them, and only then renamed into place, so an interrupted download is never
//! taken for a model; the folder is complete once all three files are there. The hub's refusals
//! (`X-Error-Code`: `RepoNotFound`, `RevisionNotFound`, `EntryNotFound`, `GatedRepo`) become
//! errors that say what to do.
//!
//! This file must not log the token.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clawline_core::config::memory::HfModel;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

/// The files a model folder needs.
pub const MODEL_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];
/// Redirects followed per file.
pub const MAX_REDIRECTS: usize = 5;
/// Files larger than this are refused (embedding models are far smaller).
pub const MAX_FILE_BYTES: u64 = 4 << 30;

/// Bytes of one file fetched so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadProgress {
    pub file: String,
    pub done: u64,
    pub total: Option<u64>,
}

/// Why a model could not be downloaded.
#[derive(Debug, thiserror::Error)]
pub enum HfError {
    #[error("{0}")]
    Refused(String),
    #[error("{url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{file}: {reason}")]
    Corrupt { file: String, reason: String },
}

impl HfError {
    fn io(path: &Path, source: std::io::Error) -> HfError {
        HfError::Io { path: path.to_path_buf(), source }
    }
}

/// Whether `dir` holds every file of a model.
pub fn is_complete(dir: &Path) -> bool {
    MODEL_FILES.iter().all(|f| dir.join(f).is_file())
}

/// Downloads the files of `model` missing from `dir` (none when it is complete).
pub async fn download_model(
    model: &HfModel,
    dir: &Path,
    progress: &(dyn Fn(DownloadProgress) + Sync),
) -> Result<(), HfError> {
    if is_complete(dir) {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| HfError::io(dir, e))?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("clawline/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| HfError::Http { url: model.endpoint.clone(), source: e })?;
    for file in MODEL_FILES {
        if !dir.join(file).is_file() {
            fetch(&http, model, file, dir, progress).await?;
        }
    }
    tracing::info!(repo = %model.repo, revision = %model.revision, dir = %dir.display(), "downloaded the embedding model");
    Ok(())
}

/// What the hub said about a file on the way to it.
#[derive(Default)]
struct Expected {
    sha256: Option<String>,
    size: Option<u64>,
}

async fn fetch(
    http: &reqwest::Client,
    model: &HfModel,
    file: &str,
    dir: &Path,
    progress: &(dyn Fn(DownloadProgress) + Sync),
) -> Result<(), HfError> {
    let first = format!("{}/{}/resolve/{}/{file}", model.endpoint.trim_end_matches('/'), model.repo, model.revision);
    let hub = reqwest::Url::parse(&first).map_err(|e| HfError::Refused(format!("{first}: {e}")))?;
    let mut url = hub.clone();
    let mut expected = Expected::default();
    let mut hops = 0;
    let response = loop {
        let mut req = http.get(url.clone());
        if let Some(token) = &model.token
            && url.host_str() == hub.host_str()
            && url.port_or_known_default() == hub.port_or_known_default()
        {
            req = req.bearer_auth(token.expose());
        }
        let resp = req.send().await.map_err(|e| HfError::Http { url: url.to_string(), source: e })?;
        let h = resp.headers();
        let header =
            |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(|v| v.trim().trim_matches('"').to_string());
        if let Some(tag) = header("x-linked-etag").filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            expected.sha256 = Some(tag.to_ascii_lowercase());
        }
        if let Some(size) = header("x-linked-size").and_then(|s| s.parse().ok()) {
            expected.size = Some(size);
        }
        if resp.status().is_redirection() {
            hops += 1;
            let location =
                header("location").ok_or_else(|| HfError::Refused(format!("{url}: a redirect without a Location")))?;
            if hops > MAX_REDIRECTS {
                return Err(HfError::Refused(format!("{first}: more than {MAX_REDIRECTS} redirects")));
            }
            url =
                url.join(&location).map_err(|e| HfError::Refused(format!("{url}: bad redirect `{location}`: {e}")))?;
            continue;
        }
        if !resp.status().is_success() {
            return Err(refusal(model, file, resp.status().as_u16(), header("x-error-code").as_deref()));
        }
        break resp;
    };
    let total = expected.size.or(response.content_length());
    if let Some(t) = total.filter(|t| *t > MAX_FILE_BYTES) {
        return Err(HfError::Corrupt {
            file: file.into(),
            reason: format!("{t} bytes is larger than any embedding model clawline runs"),
        });
    }
    let part = dir.join(format!("{file}.part"));
    let mut out = tokio::fs::File::create(&part).await.map_err(|e| HfError::io(&part, e))?;
    let mut hash = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut done: u64 = 0;
    let mut reported: u64 = 0;
    let mut body = response.bytes_stream();
    while let Some(piece) = body.next().await {
        let piece = piece.map_err(|e| HfError::Http { url: url.to_string(), source: e })?;
        done += piece.len() as u64;
        if done > MAX_FILE_BYTES {
            drop(out);
            let _ = tokio::fs::remove_file(&part).await;
            return Err(HfError::Corrupt { file: file.into(), reason: "the download grew past the size limit".into() });
        }
        hash.update(&piece);
        out.write_all(&piece).await.map_err(|e| HfError::io(&part, e))?;
        if done - reported >= 4 << 20 {
            reported = done;
            progress(DownloadProgress { file: file.into(), done, total });
        }
    }
    out.flush().await.map_err(|e| HfError::io(&part, e))?;
    out.sync_all().await.map_err(|e| HfError::io(&part, e))?;
    drop(out);
    let digest: String = hash.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let wrong = match (&expected.sha256, expected.size) {
        (Some(want), _) if *want != digest => Some(format!("SHA-256 {digest}, the hub says {want}")),
        (_, Some(size)) if size != done => Some(format!("{done} bytes, the hub says {size}")),
        _ => None,
    };
    if let Some(reason) = wrong {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(HfError::Corrupt {
            file: file.into(),
            reason: format!("the download is damaged ({reason}); try again"),
        });
    }
    let target = dir.join(file);
    tokio::fs::rename(&part, &target).await.map_err(|e| HfError::io(&target, e))?;
    progress(DownloadProgress { file: file.into(), done, total: Some(done) });
    Ok(())
}

/// The hub's refusal, as something to do.
fn refusal(model: &HfModel, file: &str, status: u16, code: Option<&str>) -> HfError {
    let repo = &model.repo;
    let what = match (status, code) {
        (_, Some("GatedRepo")) => format!(
            "{repo} is gated: accept its terms on the model's page, then set HF_TOKEN to a token of that account"
        ),
        (_, Some("RepoNotFound")) | (401, None) if model.token.is_none() => {
            format!("{repo} was not found (or is private: set HF_TOKEN); check the name in memory.search.model")
        }
        (_, Some("RepoNotFound")) => format!("{repo} was not found, or HF_TOKEN cannot read it"),
        (_, Some("RevisionNotFound")) => format!("{repo} has no revision `{}`", model.revision),
        (_, Some("EntryNotFound")) | (404, _) => format!(
            "{repo} has no {file}: clawline runs BERT-family models stored as safetensors with a tokenizer.json (e.g. sentence-transformers/all-MiniLM-L6-v2)"
        ),
        (401 | 403, _) => format!("the hub refused {repo} ({status}): check HF_TOKEN"),
        (429, _) => format!("the hub is rate limiting downloads of {repo}; try again in a minute"),
        _ => format!("the hub answered {status} for {repo}/{file}; try again later"),
    };
    HfError::Refused(what)
}
