//! Where a push comes from. Behind a reverse proxy the peer is the proxy, so a peer among the
//! trusted proxies is looked through: the client is the right-most `X-Forwarded-For` entry
//! that is not itself a trusted proxy (entries to its left were written by the client and
//! prove nothing). A peer that is not a trusted proxy is the client, whatever it claims.

use std::net::IpAddr;

use ipnet::IpNet;

/// The address a push is checked by.
pub fn client(peer: IpAddr, forwarded_for: Option<&str>, trusted_proxies: &[IpNet]) -> Option<IpAddr> {
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|n| n.contains(&canonical(*ip)));
    if !trusted(&peer) {
        return Some(peer);
    }
    let Some(header) = forwarded_for else { return Some(peer) };
    for entry in header.rsplit(',') {
        // A malformed entry is where the trusted chain ends: nothing to its left can be told.
        let ip: IpAddr = entry.trim().parse().ok()?;
        if !trusted(&ip) {
            return Some(ip);
        }
    }
    // Every hop a trusted proxy: the first of them is the client.
    header.split(',').next().and_then(|e| e.trim().parse().ok())
}

/// Whether `ip` may push; an empty list allows any.
pub fn allowed(ip: IpAddr, networks: &[IpNet]) -> bool {
    networks.is_empty() || networks.iter().any(|n| n.contains(&canonical(ip)))
}

/// An IPv4 address a dual-stack listener reports as `::ffff:a.b.c.d`, as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_peer_that_is_not_a_proxy_is_the_client_whatever_it_claims() {
        let proxies = nets(&["127.0.0.1/32"]);
        assert_eq!(client(ip("203.0.113.9"), Some("20.100.24.41"), &proxies), Some(ip("203.0.113.9")));
    }

    #[test]
    fn through_a_trusted_proxy_the_right_most_untrusted_entry_is_the_client() {
        let proxies = nets(&["127.0.0.1/32", "10.0.0.0/8"]);
        // The client wrote the first entry itself; the proxies appended the rest.
        let header = "20.100.24.41, 203.0.113.9, 10.1.2.3";
        assert_eq!(client(ip("127.0.0.1"), Some(header), &proxies), Some(ip("203.0.113.9")));
        assert_eq!(client(ip("127.0.0.1"), None, &proxies), Some(ip("127.0.0.1")));
        assert_eq!(client(ip("127.0.0.1"), Some("garbage, 10.1.2.3"), &proxies), None);
        assert_eq!(client(ip("::ffff:127.0.0.1"), Some("20.100.24.41"), &proxies), Some(ip("20.100.24.41")));
    }

    #[test]
    fn the_allow_list_takes_networks_and_mapped_addresses() {
        let altinn = nets(&["20.100.24.41/32", "20.100.48.118/31"]);
        assert!(allowed(ip("20.100.24.41"), &altinn));
        assert!(allowed(ip("20.100.48.119"), &altinn));
        assert!(allowed(ip("::ffff:20.100.48.118"), &altinn));
        assert!(!allowed(ip("20.100.48.120"), &altinn));
        assert!(allowed(ip("198.51.100.1"), &[]), "an empty list allows any");
    }
}
