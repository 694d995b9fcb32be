//! Checks every request passes before a handler sees it, and headers every response gets.
//!
//! Order: Host (on loopback binds only loopback names are accepted, which defeats DNS
//! rebinding), Origin (browsers may call only from the same origin or an allowed one), then
//! the Bearer token for API paths, with the failed-attempt limiter in front of it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::client_addr::{self, ClientAddr};
use crate::error::ApiError;
use crate::state::AppState;

fn needs_auth(path: &str) -> bool {
    ["/v1", "/api", "/tools", "/metrics"]
        .iter()
        .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
}

fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    host.rsplit_once(':').map_or(host, |(h, p)| if p.chars().all(|c| c.is_ascii_digit()) { h } else { host })
}

fn host_allowed(state: &AppState, headers: &HeaderMap) -> bool {
    if !state.runtime.config().gateway.bind_host.is_loopback() {
        return true;
    }
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else { return true };
    matches!(host_name(host), "127.0.0.1" | "localhost" | "::1")
}

fn origin_allowed(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else { return true };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    if origin == format!("http://{host}") || origin == format!("https://{host}") {
        return true;
    }
    state.runtime.config().gateway.allowed_origins.iter().any(|o| o == "*" || o == origin)
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn secure(mut resp: Response, html: bool) -> Response {
    let h = resp.headers_mut();
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    if html && !h.contains_key("content-security-policy") {
        h.insert(
            "content-security-policy",
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
        );
    }
    if html {
        h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/health" | "/readyz" | "/ready")
}

/// The middleware.
pub async fn guard(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let client = match client_addr::resolve(peer.ip(), req.headers(), &state.runtime.config().gateway.trusted_proxies) {
        Some(c) => c,
        None if is_probe(req.uri().path()) => ClientAddr { ip: peer.ip(), local: false },
        None => {
            tracing::warn!(peer = %peer.ip(), path = req.uri().path(), "refused a request with proxy headers from an untrusted peer");
            let e = ApiError::new(StatusCode::FORBIDDEN, "proxy_attribution_required", client_addr::PROXY_REFUSAL);
            return secure(e.into_response(), false);
        }
    };
    req.extensions_mut().insert(client);
    let headers = req.headers();
    let html = matches!(req.uri().path(), "/" | "/webchat");
    if !host_allowed(&state, headers) {
        let e =
            ApiError::new(StatusCode::MISDIRECTED_REQUEST, "forbidden", "this gateway only answers to localhost names")
                .code("host_not_allowed");
        return secure(e.into_response(), false);
    }
    // WebSocket upgrades check the origin in the handshake, where the refusal can be a protocol
    // error the client understands.
    if !crate::ws::is_upgrade(headers) && !origin_allowed(&state, headers) {
        let e = ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this browser origin is not allowed; add it to gateway.controlUi.allowedOrigins",
        )
        .code("origin_not_allowed");
        return secure(e.into_response(), false);
    }
    if needs_auth(req.uri().path()) {
        let ip = client.ip;
        let key = crate::auth::LimitKey::http(ip);
        if let Err(wait) = state.limiter.check(&key) {
            return secure(ApiError::auth_locked_out(wait).into_response(), false);
        }
        match bearer(headers) {
            Some(t) if state.credentials.accepts(t) => state.limiter.success(&key),
            _ => {
                state.limiter.failure(&key);
                tracing::info!(client = %ip, path = req.uri().path(), "rejected request with a missing or wrong token");
                return secure(ApiError::unauthorized().into_response(), false);
            }
        }
    }
    secure(next.run(req).await, html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_and_bearer() {
        assert_eq!(host_name("127.0.0.1:18789"), "127.0.0.1");
        assert_eq!(host_name("[::1]:18789"), "::1");
        assert_eq!(host_name("localhost"), "localhost");
        assert_eq!(host_name("evil.example:80"), "evil.example");
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer  abc "));
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        assert!(needs_auth("/v1/models") && needs_auth("/api/chat") && needs_auth("/tools/invoke"));
        assert!(!needs_auth("/healthz") && !needs_auth("/") && !needs_auth("/toolsx") && !needs_auth("/hooks/agent"));
    }
}
