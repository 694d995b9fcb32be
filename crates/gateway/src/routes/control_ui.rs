//! Serving a built Control UI from a directory (`gateway.controlUi.root`), such as the one in
//! OpenClaw's npm package (`dist/control-ui`), so OpenClaw's browser UI can drive clawline.
//!
//! - `index.html` is read once at start and rewritten so it works from any deep link
//!   (`./assets/…` → `/assets/…`), with the base-path and terminal attributes the UI reads.
//! - Its Content-Security-Policy allows only this origin and the exact inline scripts of that
//!   index (by SHA-256), no `eval`, and connections to this gateway's own WebSocket.
//! - Other paths are files under the root, never outside it (no `..`, symlinks resolved and
//!   re-checked); precompressed `.br`/`.gz` siblings are used when the browser accepts them;
//!   unknown paths that want HTML get the index (a single-page app), the rest 404.
//! - `/control-ui-config.json` answers only with a valid Bearer (gateway or device token).
//!
//! This module serves files; it never writes and never executes anything it serves.

use std::path::{Component, Path, PathBuf};

use aws_lc_rs::digest;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use crate::error::ApiError;

/// A Control UI build ready to serve.
#[derive(Debug, Clone)]
pub struct ControlUi {
    root: PathBuf,
    index: String,
    csp: String,
}

/// The hashes (`'sha256-…'`) of the inline scripts in an HTML page.
fn inline_script_hashes(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let after = &rest[start..];
        let Some(open_end) = after.find('>') else { break };
        let tag = &after[..open_end];
        let body_start = open_end + 1;
        let Some(close) = after[body_start..].find("</script>") else { break };
        let body = &after[body_start..body_start + close];
        if !tag.contains(" src=") && !body.trim().is_empty() {
            let h = digest::digest(&digest::SHA256, body.as_bytes());
            out.push(format!("'sha256-{}'", STANDARD.encode(h.as_ref())));
        }
        rest = &after[body_start + close..];
    }
    out
}

/// Makes relative references absolute and adds the attributes the UI reads.
fn rewrite_index(html: &str) -> String {
    let mut out = html.replace("=\"./", "=\"/");
    if let Some(i) = out.find("<html") {
        let at = i + "<html".len();
        out.insert_str(at, " data-openclaw-control-ui-base-path=\"\" data-openclaw-terminal-enabled=\"false\"");
    }
    out
}

fn csp(hashes: &[String]) -> String {
    format!(
        "default-src 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'; form-action 'self'; \
         script-src 'self' {}; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; media-src 'self' data: blob:; \
         font-src 'self'; worker-src 'self'; manifest-src 'self'; connect-src 'self' data:",
        hashes.join(" ")
    )
}

fn mime(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "ttf" => "font/ttf",
        "wasm" => "application/wasm",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The file a request path names, relative to the root; `None` for anything that could leave it.
fn relative_path(request_path: &str) -> Option<PathBuf> {
    let path = request_path.split(['?', '#']).next().unwrap_or_default();
    // Deep links load relative assets from below the route (`/chat/main/assets/x.js`).
    let path = match path.find("/assets/") {
        Some(i) => &path[i + 1..],
        None => path.trim_start_matches('/'),
    };
    if path.contains('\\') || path.contains('\0') || path.contains('%') {
        return None;
    }
    let rel = PathBuf::from(path);
    if rel.components().all(|c| matches!(c, Component::Normal(_))) && rel.components().next().is_some() {
        Some(rel)
    } else {
        None
    }
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"))
}

fn accepts(headers: &HeaderMap, encoding: &str) -> bool {
    headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.split(',').any(|e| e.trim().split(';').next() == Some(encoding)))
}

impl ControlUi {
    /// Reads the build at `root`. Fails with a message naming what is missing.
    pub fn load(root: &Path) -> Result<ControlUi, String> {
        let root = root.canonicalize().map_err(|e| format!("gateway.controlUi.root {}: {e}", root.display()))?;
        let index_path = root.join("index.html");
        let html = std::fs::read_to_string(&index_path).map_err(|e| {
            format!("gateway.controlUi.root has no readable index.html ({}): {e}", index_path.display())
        })?;
        let hashes = inline_script_hashes(&html);
        Ok(ControlUi { csp: csp(&hashes), index: rewrite_index(&html), root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The index page.
    pub fn index(&self) -> Response {
        let mut resp = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], self.index.clone()).into_response();
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.csp) {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        resp
    }

    /// A file under the root, the index for page routes, or 404.
    pub async fn serve(&self, request_path: &str, headers: &HeaderMap) -> Response {
        let Some(rel) = relative_path(request_path) else {
            return if wants_html(headers) {
                self.index()
            } else {
                ApiError::not_found("no such file").into_response()
            };
        };
        if rel.as_os_str() == "index.html" {
            return self.index();
        }
        let full = self.root.join(&rel);
        let ext = rel.extension().and_then(|e| e.to_str()).unwrap_or_default();
        if matches!(ext, "br" | "gz") {
            return ApiError::not_found("no such file").into_response();
        }
        let mut candidates = Vec::new();
        if accepts(headers, "br") {
            candidates.push((with_suffix(&full, ".br"), Some("br")));
        }
        if accepts(headers, "gzip") {
            candidates.push((with_suffix(&full, ".gz"), Some("gzip")));
        }
        candidates.push((full.clone(), None));
        for (path, encoding) in candidates {
            // Symlinks must not lead outside the root.
            let Ok(real) = tokio::fs::canonicalize(&path).await else { continue };
            if !real.starts_with(&self.root) {
                continue;
            }
            let Ok(meta) = tokio::fs::metadata(&real).await else { continue };
            if !meta.is_file() {
                continue;
            }
            let Ok(bytes) = tokio::fs::read(&real).await else { continue };
            let immutable = rel.starts_with("assets");
            let mut resp = Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, mime(&full))
                .header(
                    header::CACHE_CONTROL,
                    if immutable { "public, max-age=31536000, immutable" } else { "no-cache" },
                )
                .header(header::VARY, "accept-encoding");
            if let Some(e) = encoding {
                resp = resp.header(header::CONTENT_ENCODING, e);
            }
            return resp.body(Body::from(bytes)).unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
        }
        if wants_html(headers) && rel.extension().is_none() {
            return self.index();
        }
        ApiError::not_found("no such file").into_response()
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// The UI's runtime settings (`/control-ui-config.json`).
pub fn config_json(assistant_name: &str, agent_id: &str) -> serde_json::Value {
    json!({
        "basePath": "",
        "assistantName": assistant_name,
        "assistantAgentId": agent_id,
        "serverVersion": env!("CARGO_PKG_VERSION"),
        "embedSandbox": "strict",
        "allowExternalEmbedUrls": false,
        "automaticallyFetchFavicons": false,
        "communityInvite": false,
        "terminalEnabled": false,
        "cliAgentsEnabled": false,
        "pluginAssetsRequireAuth": true,
        "pluginFrameGrants": [],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_root() {
        assert_eq!(relative_path("/assets/a.js"), Some(PathBuf::from("assets/a.js")));
        assert_eq!(relative_path("/chat/main/assets/a.js?v=1"), Some(PathBuf::from("assets/a.js")));
        assert_eq!(relative_path("/favicon.svg"), Some(PathBuf::from("favicon.svg")));
        for bad in ["/../etc/passwd", "/a/../../x", "/", "/%2e%2e/x", "/a\\b", "/assets/../../x"] {
            assert_eq!(relative_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn rewrites_the_index_and_hashes_inline_scripts() {
        let html = r#"<!doctype html><html lang="en"><head><script>let a = 1;</script><script type="module" src="./assets/x.js"></script><link href="./favicon.svg"></head></html>"#;
        let out = rewrite_index(html);
        assert!(out.contains(r#"src="/assets/x.js""#) && out.contains(r#"href="/favicon.svg""#));
        assert!(out.contains(
            r#"<html data-openclaw-control-ui-base-path="" data-openclaw-terminal-enabled="false" lang="en">"#
        ));
        let hashes = inline_script_hashes(html);
        assert_eq!(hashes.len(), 1, "only the inline script");
        let expected = STANDARD.encode(digest::digest(&digest::SHA256, b"let a = 1;").as_ref());
        assert_eq!(hashes[0], format!("'sha256-{expected}'"));
    }

    #[tokio::test]
    async fn serves_files_precompressed_and_the_app_shell() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("assets")).unwrap();
        std::fs::write(dir.path().join("index.html"), "<html><body>ui</body></html>").unwrap();
        std::fs::write(dir.path().join("assets/app.js"), "console.log(1)").unwrap();
        std::fs::write(dir.path().join("assets/app.js.br"), "BR").unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), "s").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), dir.path().join("link.txt")).unwrap();
        let ui = ControlUi::load(dir.path()).unwrap();

        let mut h = HeaderMap::new();
        let r = ui.serve("/assets/app.js", &h).await;
        assert_eq!(
            (r.status(), r.headers()[header::CONTENT_TYPE].to_str().unwrap()),
            (StatusCode::OK, "text/javascript; charset=utf-8")
        );
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip, br"));
        let r = ui.serve("/assets/app.js", &h).await;
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "br");
        assert_eq!(ui.serve("/assets/app.js.br", &h).await.status(), StatusCode::NOT_FOUND);
        assert_eq!(ui.serve("/link.txt", &h).await.status(), StatusCode::NOT_FOUND, "no way out through a symlink");
        assert_eq!(ui.serve("/missing.js", &h).await.status(), StatusCode::NOT_FOUND);
        h.insert(header::ACCEPT, HeaderValue::from_static("text/html"));
        let r = ui.serve("/chat/main", &h).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers().contains_key(header::CONTENT_SECURITY_POLICY));
    }
}
