//! The address a request comes from: the TCP peer, unless the peer is a configured trusted
//! proxy; then the nearest address in `X-Forwarded-For` that is not a trusted proxy.
//! Nothing else is believed, so a client cannot pick its own address for ACLs, bans or
//! the audit log.

use std::net::IpAddr;

use axum::http::HeaderMap;
use rport_protocol::ip_rules::{IpNet, canonical};

pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut nearest = canonical(peer);
    if !is_trusted(nearest) {
        return nearest;
    }
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect();
    // Each proxy appends the address it received the request from: read from the right
    // and stop at the first hop no trusted proxy vouches for.
    for entry in forwarded.iter().rev() {
        let Ok(ip) = entry.trim().parse::<IpAddr>() else {
            // Garbage from an untrusted hop: the last trusted hop's view is all we know.
            return nearest;
        };
        nearest = canonical(ip);
        if !is_trusted(nearest) {
            return nearest;
        }
    }
    nearest
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                "x-forwarded-for",
                HeaderValue::from_str(value).expect("value"),
            );
        }
        headers
    }

    fn trusted() -> Vec<IpNet> {
        vec!["10.0.0.0/8".parse().expect("net")]
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let headers = forwarded(&["1.2.3.4"]);
        assert_eq!(
            client_ip(ip("203.0.113.9"), &headers, &trusted()),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip(ip("203.0.113.9"), &headers, &[]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn a_trusted_proxy_names_the_client() {
        let headers = forwarded(&["198.51.100.7"]);
        assert_eq!(
            client_ip(ip("10.1.1.1"), &headers, &trusted()),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn a_client_cannot_prepend_its_own_choice() {
        // The client sent "X-Forwarded-For: 1.2.3.4"; the proxy appended the real peer.
        let headers = forwarded(&["1.2.3.4, 198.51.100.7"]);
        assert_eq!(
            client_ip(ip("10.1.1.1"), &headers, &trusted()),
            ip("198.51.100.7")
        );
        let split = forwarded(&["1.2.3.4", "198.51.100.7"]);
        assert_eq!(
            client_ip(ip("10.1.1.1"), &split, &trusted()),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn chains_of_trusted_proxies_are_walked() {
        let headers = forwarded(&["198.51.100.7, 10.2.2.2"]);
        assert_eq!(
            client_ip(ip("10.1.1.1"), &headers, &trusted()),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn garbage_or_nothing_leaves_the_last_trusted_hop() {
        assert_eq!(
            client_ip(ip("10.1.1.1"), &forwarded(&["not-an-ip"]), &trusted()),
            ip("10.1.1.1")
        );
        assert_eq!(
            client_ip(ip("10.1.1.1"), &HeaderMap::new(), &trusted()),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn mapped_addresses_are_plain_ipv4() {
        assert_eq!(
            client_ip(ip("::ffff:203.0.113.9"), &HeaderMap::new(), &trusted()),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip(
                ip("::ffff:10.1.1.1"),
                &forwarded(&["198.51.100.7"]),
                &trusted()
            ),
            ip("198.51.100.7")
        );
    }
}
