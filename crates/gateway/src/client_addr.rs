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
    // The right-most address that is not one of our proxies is the client: first from
    // `Forwarded` (RFC 7239), else `X-Forwarded-For`, else `X-Real-IP`.
    let values = |name: &str| -> Vec<String> {
        headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(String::from).collect()
    };
    let forwarded: Vec<IpAddr> = values("forwarded").iter().flat_map(|v| forwarded_for(v)).collect();
    let xff: Vec<IpAddr> = values("x-forwarded-for")
        .iter()
        .flat_map(|v| v.split(',').map(str::trim).filter_map(parse_ip).collect::<Vec<_>>())
        .collect();
    let real: Vec<IpAddr> = values("x-real-ip").iter().filter_map(|v| parse_ip(v.trim())).collect();
    let chain = if !forwarded.is_empty() {
        forwarded
    } else if !xff.is_empty() {
        xff
    } else {
        real
    };
    let ip = chain.into_iter().rev().find(|ip| !trusted.contains(ip))?;
    Some(ClientAddr { ip, local: false })
}

/// An address as proxies write it: bare, `[v6]`, or either with a port.
fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    // `1.2.3.4:port` (a bare v6 address has several colons and parsed above).
    s.rsplit_once(':').and_then(|(host, _)| host.parse::<std::net::Ipv4Addr>().ok()).map(IpAddr::V4)
}

/// The `for=` addresses of a `Forwarded` header value, in order (obfuscated or `unknown`
/// nodes are skipped).
fn forwarded_for(value: &str) -> Vec<IpAddr> {
    value
        .split(',')
        .flat_map(|element| element.split(';'))
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            k.trim().eq_ignore_ascii_case("for").then(|| parse_ip(v.trim())).flatten()
        })
        .collect()
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

    #[test]
    fn reads_forwarded_and_x_real_ip() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let client = |h: &HeaderMap| resolve(lo, h, &[lo]).map(|c| c.ip.to_string());
        let mut h = HeaderMap::new();
        h.insert(
            "forwarded",
            HeaderValue::from_static("for=192.0.2.60;proto=http;by=203.0.113.43, for=\"[2001:db8::1]:4711\""),
        );
        assert_eq!(client(&h).as_deref(), Some("2001:db8::1"));
        let mut h = HeaderMap::new();
        h.insert("forwarded", HeaderValue::from_static("For=\"192.0.2.7:8080\", for=127.0.0.1"));
        assert_eq!(client(&h).as_deref(), Some("192.0.2.7"), "the proxy itself is skipped");
        let mut h = HeaderMap::new();
        h.insert("forwarded", HeaderValue::from_static("for=unknown"));
        assert_eq!(client(&h), None);
        let mut h = HeaderMap::new();
        h.insert("x-real-ip", HeaderValue::from_static("198.51.100.4"));
        assert_eq!(client(&h).as_deref(), Some("198.51.100.4"));
    }
}
