//! How a source address counts, for bans and for per-source connection limits: an IPv6
//! host usually has a whole /64 to itself, so every address of a /64 counts as one; IPv4
//! (and IPv4-mapped IPv6) addresses count alone.

use std::net::{IpAddr, Ipv6Addr};

/// The address `ip` counts as: itself, or for IPv6 its /64 (the host bits zeroed).
pub fn source_of(ip: IpAddr) -> IpAddr {
    match rport_protocol::ip_rules::canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

/// [`source_of`] as text, the form the ban table and the log use: `192.0.2.7` or
/// `2001:db8:1:2::/64`.
pub fn source_key(ip: IpAddr) -> String {
    match source_of(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn an_ipv6_64_counts_as_one_source_and_v4_mapped_as_v4() {
        assert_eq!(
            source_of(ip("2001:db8:1:2:aaaa::1")),
            source_of(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            source_of(ip("2001:db8:1:2:aaaa::1")),
            source_of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(source_of(ip("::ffff:127.0.0.2")), ip("127.0.0.2"));
    }

    #[test]
    fn the_key_shows_the_64_or_the_v4_address() {
        let key = |text: &str| source_key(ip(text));
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::7"));
        assert_eq!(key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
    }
}
