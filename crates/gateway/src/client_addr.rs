//! Who is calling: the TCP peer, or — behind a proxy listed in `gateway.trustedProxies` — the
//! client address that proxy reports.
//!
//! Proxy headers (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`) from a peer that is not a trusted
//! proxy are refused outright: otherwise a reverse proxy on this machine would make every
//! remote client look like loopback (exempt from lockouts, eligible for silent device
//! approval). A client is "local" only when it is a loopback peer that sent no proxy headers.

use std::net::IpAddr;

use axum::http::HeaderMap;

/// The caller, as the rest of the gateway should treat it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    pub ip: IpAddr,
    /// On this machine and connected directly.
    pub local: bool,
}

/// OpenClaw's wording for the refusal.
pub const PROXY_REFUSAL: &str = "Proxy client attribution is required. Configure gateway.trustedProxies narrowly and make the proxy overwrite or safely rebuild forwarded client headers.";

fn has_proxy_headers(headers: &HeaderMap) -> bool {
    headers.keys().any(|k| {
        let k = k.as_str();
        k == "forwarded" || k == "x-real-ip" || k.starts_with("x-forwarded-")
    })
}

/// The caller, or `None` when proxy headers came from someone who is not a trusted proxy (or a
/// trusted proxy named no usable client).
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> Option<ClientAddr> {
    if !has_proxy_headers(headers) {
        return Some(ClientAddr { ip: peer, local: peer.is_loopback() });
    }
    if !trusted.contains(&peer) {
        return None;
    }
    // The right-most address that is not one of our proxies is the client.
    let chain: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .collect();
    let ip = chain.into_iter().rev().find(|ip| !trusted.contains(ip))?;
    Some(ClientAddr { ip, local: false })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn believes_only_trusted_proxies() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(resolve(lo, &h, &[]), Some(ClientAddr { ip: lo, local: true }));
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9, 10.0.0.1"));
        assert_eq!(resolve(lo, &h, &[]), None, "an untrusted proxy on this machine is refused");
        let trusted = [lo, "10.0.0.1".parse().unwrap()];
        assert_eq!(resolve(lo, &h, &trusted), Some(ClientAddr { ip: "203.0.113.9".parse().unwrap(), local: false }));
        let mut only_proxy = HeaderMap::new();
        only_proxy.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert_eq!(resolve(lo, &only_proxy, &trusted), None, "no client address given");
    }
}
