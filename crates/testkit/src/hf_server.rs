//! A twin of the Hugging Face Hub's file downloads: `GET /{owner}/{repo}/resolve/{revision}/{file}`.
//!
//! What it does, as the hub does:
//!
//! - Small files answer 200 with the bytes, an `ETag` and `X-Repo-Commit`.
//! - Large (LFS) files — [`HfServer::add`] with `lfs: true` — answer `302 Found` with
//!   `X-Linked-Etag: "<sha256>"`, `X-Linked-Size` and a `Location` on **another host name**
//!   (`localhost` instead of `127.0.0.1`, the same server), where `/lfs/<sha256>` serves the
//!   bytes; the token must not follow the redirect there (recorded, so tests can check).
//! - A gated repository refuses without `Authorization: Bearer <token>` (401, `X-Error-Code:
//!   GatedRepo`) and with a wrong one (403, `GatedRepo`); an unknown repository is 401
//!   `RepoNotFound`, an unknown revision 404 `RevisionNotFound`, an unknown file 404
//!   `EntryNotFound`, each with `{"error": "…"}`.
//! - [`HfServer::corrupt`] serves an LFS file's bytes altered (the hash no longer matches), and
//!   [`HfServer::cut_short`] ends its body early.
//!
//! Every request is recorded with its host and `Authorization` header.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;

/// A request the twin received.
#[derive(Debug, Clone)]
pub struct HfRequest {
    pub host: String,
    pub path: String,
    pub authorization: Option<String>,
}

#[derive(Clone)]
struct File {
    bytes: Vec<u8>,
    lfs: bool,
}

#[derive(Default)]
struct Inner {
    /// `(repo, revision, file)` → file.
    files: HashMap<(String, String, String), File>,
    /// Gated repositories and the token that opens them.
    gated: HashMap<String, String>,
    corrupt: bool,
    cut_short: bool,
    requests: Vec<HfRequest>,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(s: &Shared) -> MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running twin.
pub struct HfServer {
    addr: SocketAddr,
    inner: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HfServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    Response::builder()
        .status(status)
        .header("x-error-code", code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::json!({ "error": message }).to_string()))
        .unwrap_or_default()
}

impl HfServer {
    pub async fn start() -> HfServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind hf server");
        let addr = listener.local_addr().expect("local addr");
        let inner: Shared = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/lfs/{sha}", get(lfs))
            .route("/{owner}/{repo}/resolve/{revision}/{*file}", get(resolve))
            .with_state((inner.clone(), addr));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        HfServer { addr, inner, task }
    }

    /// `http://127.0.0.1:<port>`, what `HF_ENDPOINT` is set to.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `bytes` as `file` of `repo` (`owner/name`) at `revision`; `lfs` files redirect.
    pub fn add(&self, repo: &str, revision: &str, file: &str, bytes: Vec<u8>, lfs: bool) {
        lock(&self.inner).files.insert((repo.into(), revision.into(), file.into()), File { bytes, lfs });
    }

    /// Makes `repo` gated: only `token` may download it.
    pub fn gate(&self, repo: &str, token: &str) {
        lock(&self.inner).gated.insert(repo.into(), token.into());
    }

    /// Serves LFS bytes with one byte changed.
    pub fn corrupt(&self, on: bool) {
        lock(&self.inner).corrupt = on;
    }

    /// Serves only the first half of LFS bytes.
    pub fn cut_short(&self, on: bool) {
        lock(&self.inner).cut_short = on;
    }

    pub fn requests(&self) -> Vec<HfRequest> {
        lock(&self.inner).requests.clone()
    }
}

fn record(inner: &Shared, headers: &HeaderMap, path: String) {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(String::from);
    lock(inner).requests.push(HfRequest {
        host: h("host").unwrap_or_default(),
        path,
        authorization: h("authorization"),
    });
}

async fn resolve(
    State((inner, addr)): State<(Shared, SocketAddr)>,
    Path((owner, name, revision, file)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let repo = format!("{owner}/{name}");
    record(&inner, &headers, format!("/{repo}/resolve/{revision}/{file}"));
    let g = lock(&inner);
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if !g.files.keys().any(|(r, _, _)| *r == repo) {
        return refuse(StatusCode::UNAUTHORIZED, "RepoNotFound", "Repository not found");
    }
    if let Some(token) = g.gated.get(&repo) {
        match bearer {
            None => {
                return refuse(StatusCode::UNAUTHORIZED, "GatedRepo", "Access to this model is restricted; log in");
            }
            Some(t) if t != token => {
                return refuse(StatusCode::FORBIDDEN, "GatedRepo", "Access to this model is restricted");
            }
            Some(_) => {}
        }
    }
    if !g.files.keys().any(|(r, v, _)| *r == repo && *v == revision) {
        return refuse(StatusCode::NOT_FOUND, "RevisionNotFound", "Invalid rev id");
    }
    let Some(f) = g.files.get(&(repo.clone(), revision.clone(), file.clone())).cloned() else {
        return refuse(StatusCode::NOT_FOUND, "EntryNotFound", "Entry not found");
    };
    let sha = sha256_hex(&f.bytes);
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let builder = Response::builder().header("x-repo-commit", commit);
    if f.lfs {
        return builder
            .status(StatusCode::FOUND)
            .header("x-linked-etag", format!("\"{sha}\""))
            .header("x-linked-size", f.bytes.len().to_string())
            .header("location", format!("http://localhost:{}/lfs/{sha}", addr.port()))
            .body(Body::empty())
            .unwrap_or_default();
    }
    builder.status(StatusCode::OK).header("etag", format!("\"{sha}\"")).body(Body::from(f.bytes)).unwrap_or_default()
}

async fn lfs(State((inner, _)): State<(Shared, SocketAddr)>, Path(sha): Path<String>, headers: HeaderMap) -> Response {
    record(&inner, &headers, format!("/lfs/{sha}"));
    let g = lock(&inner);
    let Some(f) = g.files.values().find(|f| f.lfs && sha256_hex(&f.bytes) == sha) else {
        return Response::builder().status(StatusCode::NOT_FOUND).body(Body::from("NoSuchKey")).unwrap_or_default();
    };
    let mut bytes = f.bytes.clone();
    if g.corrupt
        && let Some(b) = bytes.first_mut()
    {
        *b ^= 0xff;
    }
    if g.cut_short {
        bytes.truncate(bytes.len() / 2);
    }
    Response::builder().status(StatusCode::OK).body(Body::from(bytes)).unwrap_or_default()
}
