//! Which network addresses the agent's web tools may reach: the SSRF guard.
//!
//! A URL the model chose must not become a way into the machine or the network behind it, so
//! loopback, private, link-local (cloud metadata lives at 169.254.169.254), carrier-grade NAT,
//! multicast, reserved and IPv6 unique-local addresses are refused, including IPv4 addresses
//! wrapped in IPv6 (mapped, NAT64, 6to4). The check runs on the addresses a name resolves to,
//! inside the HTTP client's resolver, so the address checked is the address connected to: a
//! name that answers "public" once and "loopback" the next time (DNS rebinding) gains nothing.
//!
//! This module decides; it must not do I/O other than the name lookup itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Why an address or name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// What `addr` is, when the guard refuses it; `None` for a public unicast address.
pub fn classify(addr: IpAddr) -> Option<&'static str> {
    match addr {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "an unspecified address",
        (127, _, _) => "a loopback address",
        (10, _, _) | (192, 168, _) => "a private address",
        (172, 16..=31, _) => "a private address",
        (169, 254, 169) if ip == Ipv4Addr::new(169, 254, 169, 254) => "the cloud metadata address",
        (169, 254, _) => "a link-local address",
        (100, 64..=127, _) => "a carrier-grade NAT address",
        (192, 0, 0) | (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "a reserved address",
        (198, 18..=19, _) => "a benchmarking address",
        (224..=239, _, _) => "a multicast address",
        (240..=255, _, _) => "a reserved address",
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("an unspecified address");
    }
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    let s = ip.segments();
    // IPv4 inside IPv6: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d), NAT64 (64:ff9b::/96).
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return classify_v4(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8));
    }
    // 6to4 (2002::/16) carries an IPv4 address in its next 32 bits.
    if s[0] == 0x2002
        && let Some(why) = classify_v4(Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8))
    {
        return Some(why);
    }
    Some(match s[0] {
        0xfe80..=0xfebf => "a link-local address",
        0xfec0..=0xfeff => "a site-local address",
        0xfc00..=0xfdff => "a unique-local (private) address",
        0xff00..=0xffff => "a multicast address",
        0x2001 if s[1] == 0x0db8 => "a documentation address",
        0x0100 if s[1..4] == [0, 0, 0] => "a discard address",
        _ => return None,
    })
}

/// Host names refused whatever they resolve to.
const METADATA_NAMES: &[&str] = &["metadata.google.internal", "metadata", "instance-data"];

/// The policy one fetch runs under.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Every address is allowed (`tools.web.fetch.allowPrivateNetwork`).
    pub allow_all: bool,
    /// Host names or IP literals (lowercase) allowed even when they are, or resolve to, private addresses.
    pub allowed_hosts: Vec<String>,
    /// Names answered without DNS, like `/etc/hosts` entries; their addresses are checked like any other.
    pub static_hosts: Vec<(String, IpAddr)>,
}

impl Policy {
    fn host_allowed(&self, host: &str) -> bool {
        self.allow_all || self.allowed_hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    /// Checks a URL's host before any connection: names of metadata services and IP literals
    /// (which no resolver sees) are decided here.
    pub fn check_host(&self, host: &str) -> Result<(), Refused> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if self.host_allowed(bare) || self.host_allowed(host) {
            return Ok(());
        }
        let lower = bare.trim_end_matches('.').to_ascii_lowercase();
        if METADATA_NAMES.contains(&lower.as_str()) {
            return Err(Refused(format!("`{host}` is a cloud metadata service")));
        }
        if let Ok(ip) = bare.parse::<IpAddr>()
            && let Some(why) = classify(ip)
        {
            return Err(Refused(format!("{ip} is {why}")));
        }
        Ok(())
    }

    /// Resolves `host` and refuses it when any address it has is not public.
    pub async fn resolve(&self, host: &str) -> Result<Vec<SocketAddr>, Refused> {
        self.check_host(host)?;
        let addrs: Vec<SocketAddr> = match self.static_hosts.iter().find(|(n, _)| n.eq_ignore_ascii_case(host)) {
            Some((_, ip)) => vec![SocketAddr::new(*ip, 0)],
            None => tokio::net::lookup_host((host, 0))
                .await
                .map_err(|e| Refused(format!("`{host}` could not be resolved: {e}")))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(Refused(format!("`{host}` has no addresses")));
        }
        if !self.host_allowed(host) {
            // One bad address refuses the name: a client trying them in turn would reach it.
            for a in &addrs {
                if let Some(why) = classify(a.ip()) {
                    return Err(Refused(format!("`{host}` resolves to {}, {why}", a.ip())));
                }
            }
        }
        Ok(addrs)
    }
}

/// The guard as the HTTP client's resolver.
#[derive(Debug, Clone)]
pub struct GuardedResolver(pub Arc<Policy>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = policy.resolve(&host).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The refusal somewhere in an error's chain, if the guard caused it.
pub fn refusal_in<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut cur: Option<&'a (dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<Refused>() {
            return Some(r);
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> bool {
        classify(s.parse().unwrap()).is_some()
    }

    #[test]
    fn private_and_special_addresses_are_refused() {
        for a in [
            "127.0.0.1",
            "127.255.0.9",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "::127.0.0.1",
        ] {
            assert!(refused(a), "{a} should be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for a in ["1.1.1.1", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "2002:808:808::"] {
            assert!(!refused(a), "{a} should pass");
        }
    }

    #[test]
    fn metadata_names_and_literals_are_refused_before_resolving() {
        let p = Policy::default();
        assert!(p.check_host("metadata.google.internal").is_err());
        assert!(p.check_host("METADATA.google.internal.").is_err());
        assert!(p.check_host("[::1]").is_err());
        assert!(p.check_host("169.254.169.254").is_err());
        assert!(p.check_host("example.com").is_ok());
        let allowed = Policy { allowed_hosts: vec!["192.168.1.10".into()], ..Default::default() };
        assert!(allowed.check_host("192.168.1.10").is_ok());
        assert!(allowed.check_host("192.168.1.11").is_err());
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused() {
        let p =
            Policy { static_hosts: vec![("rebind.test".into(), "127.0.0.1".parse().unwrap())], ..Default::default() };
        let err = p.resolve("rebind.test").await.unwrap_err();
        assert!(err.0.contains("loopback"), "{err}");
        // `localhost` through the system resolver.
        assert!(Policy::default().resolve("localhost").await.is_err());
    }
}
