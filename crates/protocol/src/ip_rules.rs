//! Address rules for tunnels: the server-side ACL of who may connect to a tunnel's public port, and the agent-side `tunnel_allowed` list of which targets it may connect to.
//!
//! Both are allow-lists, so every ambiguity here resolves to "no match": a rule that fails
//! to match refuses a connection, which is the safe way to be wrong.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// At most this many entries in an ACL: it arrives as user input over the API.
pub const ACL_MAX_ENTRIES: usize = 256;
/// At most this many bytes of ACL text, checked before any parsing work.
pub const ACL_MAX_LEN: usize = 8 * 1024;

/// Why a rule, an ACL or an allow-list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("no address given: expected an IP address or CIDR network")]
    Empty,
    #[error(
        "ACL entry {position} (counting from 1) is empty: check for a doubled or trailing comma"
    )]
    EmptyEntry { position: usize },
    #[error(
        "{0:?} is not an IP address or CIDR network (like 192.0.2.1, 10.0.0.0/8 or 2001:db8::/32)"
    )]
    NotAnAddress(String),
    #[error("the prefix of {entry:?} is too long: at most /{max} for this address family")]
    PrefixTooLong { entry: String, max: u8 },
    #[error(
        "{0:?} would allow access to everyone: omit `acl` to let anyone connect, or list the addresses that may"
    )]
    MatchAll(String),
    #[error(
        "together the entries cover every {family} address, so the ACL would let everyone in: omit `acl` to let anyone connect, or list only the addresses that may"
    )]
    CoversAll {
        /// `IPv4` or `IPv6`.
        family: &'static str,
    },
    #[error("the ACL has {count} entries, at most {max} are allowed")]
    TooManyEntries { count: usize, max: usize },
    #[error("the ACL is {len} bytes long, at most {max} are allowed")]
    TooLong { len: usize, max: usize },
    #[error("invalid port {0:?}: expected a number from 1 to 65535")]
    BadPort(String),
    #[error(
        "{0:?} names a host: rules list IP addresses or CIDR networks (a target given by name is checked against the address it resolves to)"
    )]
    Hostname(String),
    #[error(
        "{0:?} has a port but no address: write 127.0.0.1{0} for that port on this host, or 0.0.0.0/0{0} for that port anywhere"
    )]
    PortOnly(String),
    #[error("tunnel_allowed entry {index} (counting from 1) {entry:?}: {reason}")]
    InEntry {
        /// 1-based, as a person counts lines of a config file.
        index: usize,
        entry: String,
        reason: Box<RuleError>,
    },
}

/// The address as rules see it: an IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 address,
/// so a dual-stack listener's peers and IPv4 rules match, and `::ffff:10.0.0.1` cannot slip past a rule about 10.0.0.0/8.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        // Not `to_ipv4()`: that also turns the deprecated "compatible" form, including
        // `::1`, into IPv4 (0.0.0.1), which would make IPv6 loopback look like an IPv4 host.
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn max_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn mask_v4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_v6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// An IP network: an address and a prefix length. A bare address is /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    /// Host bits are always zero, so equal networks compare equal however they were written.
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Zeroes the host bits. A network inside the IPv4-mapped range (`::ffff:0:0/96` or
    /// narrower) becomes the IPv4 network it denotes, because [`canonical`] turns the
    /// addresses it is matched against into IPv4 too.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, RuleError> {
        let max = max_prefix(addr);
        if prefix > max {
            return Err(RuleError::PrefixTooLong {
                entry: format!("{addr}/{prefix}"),
                max,
            });
        }
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (addr, prefix),
            },
            _ => (addr, prefix),
        };
        let addr = match addr {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask_v4(prefix))),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask_v6(prefix))),
        };
        Ok(Self { addr, prefix })
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// An IPv6 network never contains an IPv4 address, even one wider than /96 such as
    /// `::/0`: IPv4-mapped peers are matched as IPv4, so they need an IPv4 rule.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & mask_v4(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask_v6(self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }

    pub fn is_match_all(&self) -> bool {
        self.prefix == 0
    }

    /// First and last address of the network, as numbers of its family.
    fn range(&self) -> (u128, u128) {
        match self.addr {
            IpAddr::V4(v4) => {
                let start = u32::from(v4);
                (u128::from(start), u128::from(start | !mask_v4(self.prefix)))
            }
            IpAddr::V6(v6) => {
                let start = u128::from(v6);
                (start, start | !mask_v6(self.prefix))
            }
        }
    }

    /// `0.0.0.0` or `::` as a single host: people write it meaning "everyone", although as
    /// a peer address it matches no one.
    fn is_unspecified_host(&self) -> bool {
        self.addr.is_unspecified() && self.prefix == max_prefix(self.addr)
    }
}

impl FromStr for IpNet {
    type Err = RuleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(RuleError::Empty);
        }
        let not_an_address = || RuleError::NotAnAddress(s.to_owned());
        let (addr_text, prefix) = match s.split_once('/') {
            None => (s, None),
            // Digits only: `u8::from_str` would also take "+8". Three digits is enough to
            // report "/999" as too long rather than as gibberish.
            Some((addr, prefix))
                if !prefix.is_empty()
                    && prefix.len() <= 3
                    && prefix.bytes().all(|b| b.is_ascii_digit()) =>
            {
                let prefix: u16 = prefix.parse().map_err(|_| not_an_address())?;
                (addr, Some(prefix))
            }
            Some(_) => return Err(not_an_address()),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| not_an_address())?;
        let max = max_prefix(addr);
        let prefix = prefix.unwrap_or(u16::from(max));
        // Checked here rather than left to `new` so the error quotes the text as written.
        match u8::try_from(prefix) {
            Ok(prefix) if prefix <= max => IpNet::new(addr, prefix),
            _ => Err(RuleError::PrefixTooLong {
                entry: s.to_owned(),
                max,
            }),
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix == max_prefix(self.addr) {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

/// A tunnel's ACL: who may connect to its public port. Never empty, never match-all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl(Vec<IpNet>);

impl Acl {
    /// A comma-separated list of addresses and networks. Duplicates (after zeroing host
    /// bits) are dropped, keeping the first.
    pub fn parse(text: &str) -> Result<Acl, RuleError> {
        if text.len() > ACL_MAX_LEN {
            return Err(RuleError::TooLong {
                len: text.len(),
                max: ACL_MAX_LEN,
            });
        }
        if text.trim().is_empty() {
            return Err(RuleError::Empty);
        }
        let count = text.split(',').count();
        if count > ACL_MAX_ENTRIES {
            return Err(RuleError::TooManyEntries {
                count,
                max: ACL_MAX_ENTRIES,
            });
        }
        let mut nets: Vec<IpNet> = Vec::with_capacity(count);
        for (i, entry) in text.split(',').enumerate() {
            let entry = entry.trim();
            if entry.is_empty() {
                return Err(RuleError::EmptyEntry { position: i + 1 });
            }
            let net: IpNet = entry.parse()?;
            // An ACL exists to restrict; one that lets everyone in is almost certainly a
            // mistake, and "no ACL" already says "everyone" honestly.
            if net.is_match_all() || net.is_unspecified_host() {
                return Err(RuleError::MatchAll(entry.to_owned()));
            }
            if !nets.contains(&net) {
                nets.push(net);
            }
        }
        // Entries that are each narrower than everyone can still add up to everyone
        // (`0.0.0.0/1,128.0.0.0/1`); the rule is about what the ACL lets in, not its spelling.
        if let Some(family) = covered_family(&nets) {
            return Err(RuleError::CoversAll { family });
        }
        Ok(Acl(nets))
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    pub fn entries(&self) -> &[IpNet] {
        &self.0
    }
}

impl fmt::Display for Acl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

/// The family (`IPv4` or `IPv6`) whose every peer address some net in `nets` contains.
///
/// Peers in the IPv4-mapped range `::ffff:0:0/96` are matched as IPv4 (see [`canonical`]),
/// so an IPv6 net can never let them in and they need no IPv6 coverage: IPv6 counts as
/// covered once everything outside that range is. IPv4-mapped networks written in an ACL
/// are IPv4 networks already (see [`IpNet::new`]).
fn covered_family(nets: &[IpNet]) -> Option<&'static str> {
    const V4_LAST: u128 = u32::MAX as u128;
    const MAPPED: (u128, u128) = (0xffff_u128 << 32, (0xffff_u128 << 32) | V4_LAST);
    let (mut v4, mut v6): (Vec<_>, Vec<_>) = (Vec::new(), vec![MAPPED]);
    for net in nets {
        match net.addr {
            IpAddr::V4(_) => v4.push(net.range()),
            IpAddr::V6(_) => v6.push(net.range()),
        }
    }
    if covers(&mut v4, V4_LAST) {
        Some("IPv4")
    } else if covers(&mut v6, u128::MAX) {
        Some("IPv6")
    } else {
        None
    }
}

/// Whether the inclusive `ranges` together contain every number from 0 to `last`.
fn covers(ranges: &mut [(u128, u128)], last: u128) -> bool {
    ranges.sort_unstable();
    // Everything below `next` is covered; sorted by start, a range that starts past it
    // leaves `next` uncovered for good.
    let mut next: u128 = 0;
    for &(start, end) in ranges.iter() {
        if start > next {
            return false;
        }
        if end >= last {
            return true;
        }
        next = next.max(end + 1);
    }
    false
}

/// One `tunnel_allowed` entry: a network, and optionally the one port allowed on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowRule {
    pub net: IpNet,
    pub port: Option<u16>,
}

fn parse_port(text: &str) -> Result<u16, RuleError> {
    let bad = || RuleError::BadPort(text.to_owned());
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad()),
        Ok(port) => Ok(port),
    }
}

/// Parses the address part of an entry, telling a host name apart from gibberish so the
/// message can say why names are not accepted.
fn parse_net(text: &str, entry: &str) -> Result<IpNet, RuleError> {
    text.parse::<IpNet>().map_err(|err| match err {
        RuleError::NotAnAddress(_) if looks_like_hostname(text) => {
            RuleError::Hostname(entry.to_owned())
        }
        // An empty address part (`:ssh`) is a malformed entry, not an empty one.
        RuleError::NotAnAddress(_) | RuleError::Empty => RuleError::NotAnAddress(entry.to_owned()),
        other => other,
    })
}

fn looks_like_hostname(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && text.bytes().any(|b| b.is_ascii_alphabetic())
}

impl FromStr for AllowRule {
    type Err = RuleError;

    /// `IP`, `CIDR`, `IP:PORT`, `CIDR:PORT` (IPv4), `[IPv6]:PORT`, `[IPv6-CIDR]:PORT`, or a
    /// bare IPv6 address or network (without a port).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(RuleError::Empty);
        }
        if let Some(inner_and_rest) = s.strip_prefix('[') {
            let Some((inner, rest)) = inner_and_rest.split_once(']') else {
                return Err(RuleError::NotAnAddress(s.to_owned()));
            };
            // Brackets exist to set an IPv6 address apart from a port; around anything
            // else they are a typo worth pointing out.
            if !inner.contains(':') {
                return Err(RuleError::NotAnAddress(s.to_owned()));
            }
            let net = parse_net(inner, s)?;
            let port = match rest {
                "" => None,
                _ => match rest.strip_prefix(':') {
                    Some(port) => Some(parse_port(port)?),
                    None => return Err(RuleError::NotAnAddress(s.to_owned())),
                },
            };
            return Ok(AllowRule { net, port });
        }
        // RPort reads `:22` as "port 22 on some default host"; which one is not obvious,
        // so it is refused in favour of saying it.
        if let Some(port) = s
            .strip_prefix(':')
            .filter(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
        {
            parse_port(port)?;
            return Err(RuleError::PortOnly(s.to_owned()));
        }
        match s.matches(':').count() {
            0 => Ok(AllowRule {
                net: parse_net(s, s)?,
                port: None,
            }),
            1 => match s.split_once(':') {
                Some((host, port)) => Ok(AllowRule {
                    net: parse_net(host, s)?,
                    port: Some(parse_port(port)?),
                }),
                None => Err(RuleError::NotAnAddress(s.to_owned())),
            },
            // Several colons without brackets: an IPv6 address, never address:port, so
            // `2001:db8::1:22` cannot mean two different things.
            _ => Ok(AllowRule {
                net: parse_net(s, s)?,
                port: None,
            }),
        }
    }
}

impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.port, self.net.addr()) {
            (None, _) => write!(f, "{}", self.net),
            (Some(port), IpAddr::V4(_)) => write!(f, "{}:{port}", self.net),
            (Some(port), IpAddr::V6(_)) => write!(f, "[{}]:{port}", self.net),
        }
    }
}

impl AllowRule {
    fn allows(&self, addr: SocketAddr) -> bool {
        self.net.contains(addr.ip()) && self.port.is_none_or(|port| port == addr.port())
    }
}

/// The agent's `tunnel_allowed` list: targets it may connect to. Empty = anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(Vec<AllowRule>);

impl AllowList {
    /// Entries are trimmed. An error is [`RuleError::InEntry`], whose `index` counts from 1.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowList, RuleError> {
        entries
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                let entry = entry.as_ref().trim();
                entry
                    .parse::<AllowRule>()
                    .map_err(|reason| RuleError::InEntry {
                        index: i + 1,
                        entry: entry.to_owned(),
                        reason: Box::new(reason),
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(AllowList)
    }

    /// Empty means everything is allowed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn allows(&self, addr: SocketAddr) -> bool {
        self.0.is_empty() || self.0.iter().any(|rule| rule.allows(addr))
    }

    pub fn rules(&self) -> &[AllowRule] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("valid net")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("valid ip")
    }

    fn sock(s: &str) -> SocketAddr {
        s.parse().expect("valid socket address")
    }

    fn rule(s: &str) -> AllowRule {
        s.parse().expect("valid rule")
    }

    fn acl(s: &str) -> Acl {
        Acl::parse(s).expect("valid acl")
    }

    #[test]
    fn ipnet_parses_each_form() {
        assert_eq!(net("1.2.3.4").addr(), ip("1.2.3.4"));
        assert_eq!(net("1.2.3.4").prefix(), 32);
        assert_eq!(net("10.0.0.0/8").prefix(), 8);
        assert_eq!(net("2001:db8::/32").addr(), ip("2001:db8::"));
        assert_eq!(net("2001:db8::/32").prefix(), 32);
        assert_eq!(net("::1").prefix(), 128);
        assert_eq!(net("0.0.0.0/0").prefix(), 0);
        assert!(net("::/0").is_match_all());
        assert!(!net("1.2.3.4").is_match_all());
    }

    #[test]
    fn ipnet_zeroes_host_bits() {
        assert_eq!(net("10.0.0.1/8"), net("10.0.0.0/8"));
        assert_eq!(net("10.0.0.1/8").to_string(), "10.0.0.0/8");
        assert_eq!(net("192.168.1.255/23").to_string(), "192.168.0.0/23");
        assert_eq!(net("2001:db8::1/32").to_string(), "2001:db8::/32");
        assert_eq!(net("255.255.255.255/0").to_string(), "0.0.0.0/0");
        assert_eq!(
            IpNet::new(ip("1.2.3.4"), 24).expect("valid").addr(),
            ip("1.2.3.0")
        );
    }

    #[test]
    fn ipnet_display() {
        assert_eq!(net("1.2.3.4").to_string(), "1.2.3.4");
        assert_eq!(net("::1").to_string(), "::1");
        assert_eq!(net("1.2.3.4/32").to_string(), "1.2.3.4");
        assert_eq!(net("::1/128").to_string(), "::1");
        assert_eq!(net("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(net("2001:db8::/32").to_string(), "2001:db8::/32");
    }

    #[test]
    fn ipnet_refuses_bad_input() {
        assert_eq!(
            "1.2.3.4/33".parse::<IpNet>(),
            Err(RuleError::PrefixTooLong {
                entry: "1.2.3.4/33".into(),
                max: 32
            })
        );
        assert_eq!(
            "::1/129".parse::<IpNet>(),
            Err(RuleError::PrefixTooLong {
                entry: "::1/129".into(),
                max: 128
            })
        );
        assert!(matches!(
            "1.2.3.4/999".parse::<IpNet>(),
            Err(RuleError::PrefixTooLong { .. })
        ));
        assert!(IpNet::new(ip("1.2.3.4"), 33).is_err());
        assert!(IpNet::new(ip("::"), 129).is_err());
        for bad in [
            "1.2.3",
            "1.2.3.4/",
            "1.2.3.4/+8",
            "1.2.3.4/-1",
            "1.2.3.4/8/8",
            "010.0.0.1",
            "fe80::1%eth0",
            " 1.2.3.4",
            "example.com",
        ] {
            assert_eq!(
                bad.parse::<IpNet>(),
                Err(RuleError::NotAnAddress(bad.into())),
                "{bad}"
            );
        }
        assert_eq!("".parse::<IpNet>(), Err(RuleError::Empty));
    }

    #[test]
    fn ipnet_mapped_v6_becomes_v4() {
        assert_eq!(net("::ffff:10.0.0.0/104"), net("10.0.0.0/8"));
        assert_eq!(net("::ffff:10.0.0.1"), net("10.0.0.1"));
        assert_eq!(net("::ffff:0:0/96"), net("0.0.0.0/0"));
        assert_eq!(net("::ffff:10.0.0.0/104").to_string(), "10.0.0.0/8");
        // Wider than /96 it is an IPv6 network like any other.
        assert_eq!(net("::ffff:0:0/95").to_string(), "::fffe:0:0/95");
    }

    #[test]
    fn canonical_only_unmaps_mapped_addresses() {
        assert_eq!(canonical(ip("::ffff:1.2.3.4")), ip("1.2.3.4"));
        assert_eq!(canonical(ip("1.2.3.4")), ip("1.2.3.4"));
        assert_eq!(canonical(ip("::1")), ip("::1"));
        assert_eq!(canonical(ip("::1.2.3.4")), ip("::1.2.3.4"));
        assert_eq!(canonical(ip("2001:db8::1")), ip("2001:db8::1"));
    }

    #[test]
    fn contains_on_v4_boundaries() {
        let n = net("10.0.0.0/8");
        assert!(n.contains(ip("10.0.0.0")));
        assert!(n.contains(ip("10.255.255.255")));
        assert!(!n.contains(ip("9.255.255.255")));
        assert!(!n.contains(ip("11.0.0.0")));

        let n = net("192.168.1.2/31");
        assert!(n.contains(ip("192.168.1.2")));
        assert!(n.contains(ip("192.168.1.3")));
        assert!(!n.contains(ip("192.168.1.1")));
        assert!(!n.contains(ip("192.168.1.4")));

        let n = net("192.168.1.2/32");
        assert!(n.contains(ip("192.168.1.2")));
        assert!(!n.contains(ip("192.168.1.3")));

        let n = net("128.0.0.0/1");
        assert!(n.contains(ip("128.0.0.0")));
        assert!(n.contains(ip("255.255.255.255")));
        assert!(!n.contains(ip("127.255.255.255")));
        let n = net("0.0.0.0/1");
        assert!(n.contains(ip("0.0.0.0")));
        assert!(n.contains(ip("127.255.255.255")));
        assert!(!n.contains(ip("128.0.0.0")));

        let n = net("0.0.0.0/0");
        assert!(n.contains(ip("0.0.0.0")));
        assert!(n.contains(ip("255.255.255.255")));
        assert!(!n.contains(ip("::1")));
    }

    #[test]
    fn contains_on_v6_boundaries() {
        let n = net("2001:db8::2/127");
        assert!(n.contains(ip("2001:db8::2")));
        assert!(n.contains(ip("2001:db8::3")));
        assert!(!n.contains(ip("2001:db8::1")));
        assert!(!n.contains(ip("2001:db8::4")));

        let n = net("2001:db8::2/128");
        assert!(n.contains(ip("2001:db8::2")));
        assert!(!n.contains(ip("2001:db8::3")));

        let n = net("8000::/1");
        assert!(n.contains(ip("8000::")));
        assert!(n.contains(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(!n.contains(ip("7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));

        let n = net("::/0");
        assert!(n.contains(ip("::")));
        assert!(n.contains(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        // Mapped peers are IPv4 as far as rules go.
        assert!(!n.contains(ip("::ffff:1.2.3.4")));
        assert!(!n.contains(ip("1.2.3.4")));
    }

    #[test]
    fn contains_matches_mapped_addresses_both_ways() {
        assert!(net("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
        assert!(!net("10.0.0.0/8").contains(ip("::ffff:11.1.2.3")));
        assert!(net("::ffff:10.0.0.0/104").contains(ip("10.1.2.3")));
        assert!(net("::ffff:10.0.0.0/104").contains(ip("::ffff:10.1.2.3")));
    }

    #[test]
    fn acl_parses_and_allows() {
        let a = acl("142.78.90.8,201.98.123.0/24,2001:db8::/32");
        assert_eq!(a.entries().len(), 3);
        assert!(a.allows(ip("142.78.90.8")));
        assert!(!a.allows(ip("142.78.90.9")));
        assert!(a.allows(ip("201.98.123.77")));
        assert!(!a.allows(ip("201.98.124.1")));
        assert!(a.allows(ip("2001:db8:1::5")));
        assert!(!a.allows(ip("2001:db9::1")));
        assert!(a.allows(ip("::ffff:201.98.123.1")));
    }

    #[test]
    fn acl_allows_mapped_peer() {
        let a = acl("127.0.0.2");
        assert!(a.allows(ip("::ffff:127.0.0.2")));
        assert!(a.allows(ip("127.0.0.2")));
        assert!(!a.allows(ip("::ffff:127.0.0.3")));
        let a = acl("::ffff:127.0.0.2");
        assert!(a.allows(ip("127.0.0.2")));
        assert_eq!(a.to_string(), "127.0.0.2");
    }

    #[test]
    fn acl_display_is_canonical_and_deduplicated() {
        let a = acl(" 10.0.0.1/8 , 1.2.3.4,10.0.0.0/8,\t2001:DB8::1/32 ,1.2.3.4/32");
        assert_eq!(a.to_string(), "10.0.0.0/8,1.2.3.4,2001:db8::/32");
        assert_eq!(acl(&a.to_string()), a);
    }

    #[test]
    fn acl_refuses_empty() {
        assert_eq!(Acl::parse(""), Err(RuleError::Empty));
        assert_eq!(Acl::parse("  "), Err(RuleError::Empty));
        assert_eq!(Acl::parse(","), Err(RuleError::EmptyEntry { position: 1 }));
        assert_eq!(
            Acl::parse("1.2.3.4,,5.6.7.8"),
            Err(RuleError::EmptyEntry { position: 2 })
        );
        assert_eq!(
            Acl::parse("1.2.3.4, "),
            Err(RuleError::EmptyEntry { position: 2 })
        );
        let msg = RuleError::EmptyEntry { position: 2 }.to_string();
        assert!(msg.contains("entry 2") && msg.contains("empty"), "{msg}");
    }

    #[test]
    fn acl_refuses_match_all() {
        for (text, entry) in [
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("::/0", "::/0"),
            ("0.0.0.0", "0.0.0.0"),
            ("::", "::"),
            ("0.0.0.0/32", "0.0.0.0/32"),
            ("::ffff:0.0.0.0", "::ffff:0.0.0.0"),
            ("1.2.3.4, 0.0.0.0/0", "0.0.0.0/0"),
            ("1.2.3.4,::/0", "::/0"),
            ("5.6.7.8/0", "5.6.7.8/0"),
        ] {
            assert_eq!(
                Acl::parse(text),
                Err(RuleError::MatchAll(entry.into())),
                "{text}"
            );
        }
        let msg = RuleError::MatchAll("0.0.0.0/0".into()).to_string();
        assert!(msg.contains("\"0.0.0.0/0\""), "{msg}");
        assert!(msg.contains("everyone"), "{msg}");
        assert!(msg.contains("omit `acl`"), "{msg}");
        // Not everyone: these stay allowed.
        assert!(Acl::parse("0.0.0.0/1").is_ok());
        assert!(Acl::parse("::1").is_ok());
    }

    fn covers_all(text: &str) -> Option<&'static str> {
        match Acl::parse(text) {
            Err(RuleError::CoversAll { family }) => Some(family),
            Ok(_) => None,
            Err(other) => panic!("{text}: {other}"),
        }
    }

    /// The networks that together hold every address of `addr`'s family but `addr`: for
    /// each prefix length, the sibling of the network containing `addr`.
    fn complement_of(addr: IpAddr) -> Vec<String> {
        let bits = u32::from(max_prefix(addr));
        let value = match addr {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => u128::from(v6),
        };
        (1..=bits)
            .map(|prefix| {
                let flipped = value ^ (1u128 << (bits - prefix));
                let ip = match addr {
                    IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(flipped as u32)),
                    IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(flipped)),
                };
                IpNet::new(ip, prefix as u8)
                    .expect("prefix in range")
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn acl_refuses_entries_that_together_cover_everyone() {
        for (text, family) in [
            ("0.0.0.0/1,128.0.0.0/1", "IPv4"),
            ("128.0.0.0/1, 0.0.0.0/1", "IPv4"),
            ("0.0.0.0/1,128.0.0.0/2,192.0.0.0/2", "IPv4"),
            ("10.0.0.1,0.0.0.0/1,128.0.0.0/1,2001:db8::1", "IPv4"),
            ("::/1,8000::/1", "IPv6"),
            ("::/1,8000::/2,c000::/2,10.0.0.1", "IPv6"),
            // Written as IPv4-mapped IPv6, these are the two IPv4 halves.
            ("::ffff:0.0.0.0/97,::ffff:128.0.0.0/97", "IPv4"),
            ("::ffff:0.0.0.0/97,128.0.0.0/1", "IPv4"),
        ] {
            assert_eq!(covers_all(text), Some(family), "{text}");
        }
        // The whole IPv4-mapped range alone is all of IPv4: refused as match-all.
        assert_eq!(
            Acl::parse("::ffff:0:0/96"),
            Err(RuleError::MatchAll("::ffff:0:0/96".into()))
        );
        let msg = RuleError::CoversAll { family: "IPv4" }.to_string();
        assert!(
            msg.contains("every IPv4 address") && msg.contains("omit `acl`"),
            "{msg}"
        );
    }

    #[test]
    fn acl_coverage_is_exact_to_one_address() {
        for addr in [
            "203.0.113.5",
            "0.0.0.0",
            "255.255.255.255",
            "2001:db8::5",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let addr = ip(addr);
            let rest = complement_of(addr).join(",");
            let acl = Acl::parse(&rest).unwrap_or_else(|err| panic!("{addr}: {err}"));
            assert!(!acl.allows(addr), "{addr}");
            // Adding the one missing address makes it everyone. 0.0.0.0 and :: as single
            // hosts are refused on their own, before coverage is looked at.
            if !addr.is_unspecified() {
                let family = if addr.is_ipv4() { "IPv4" } else { "IPv6" };
                assert_eq!(
                    covers_all(&format!("{rest},{addr}")),
                    Some(family),
                    "{addr}"
                );
            }
        }
    }

    /// IPv6 peers in `::ffff:0:0/96` are IPv4 peers, which IPv6 entries never match: IPv6
    /// entries covering everything else already let every IPv6 peer in.
    #[test]
    fn ipv6_coverage_does_not_need_the_mapped_range() {
        let rest = complement_of(ip("::ffff:0:0"))
            .into_iter()
            .take(96)
            .collect::<Vec<_>>();
        assert_eq!(rest.len(), 96);
        assert_eq!(covers_all(&rest.join(",")), Some("IPv6"));
        // Without ::fffe:0:0/96, the last of them, it is not everyone.
        assert_eq!(rest[95], "::fffe:0:0/96");
        assert_eq!(covers_all(&rest[..95].join(",")), None);
    }

    #[test]
    fn acl_errors_name_the_entry() {
        let err = Acl::parse("1.2.3.4, nonsense ,5.6.7.8").expect_err("bad entry");
        assert_eq!(err, RuleError::NotAnAddress("nonsense".into()));
        assert!(err.to_string().contains("\"nonsense\""), "{err}");
        let err = Acl::parse("1.2.3.4,10.0.0.0/40").expect_err("bad prefix");
        assert_eq!(
            err,
            RuleError::PrefixTooLong {
                entry: "10.0.0.0/40".into(),
                max: 32
            }
        );
        assert!(err.to_string().contains("\"10.0.0.0/40\""), "{err}");
        assert!(err.to_string().contains("/32"), "{err}");
    }

    #[test]
    fn acl_limits() {
        let at_limit: Vec<String> = (0..ACL_MAX_ENTRIES)
            .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
            .collect();
        assert_eq!(acl(&at_limit.join(",")).entries().len(), ACL_MAX_ENTRIES);

        let over: Vec<String> = (0..=ACL_MAX_ENTRIES)
            .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
            .collect();
        assert_eq!(
            Acl::parse(&over.join(",")),
            Err(RuleError::TooManyEntries {
                count: ACL_MAX_ENTRIES + 1,
                max: ACL_MAX_ENTRIES
            })
        );

        let long = format!("1.2.3.4{}", " ".repeat(ACL_MAX_LEN));
        assert_eq!(
            Acl::parse(&long),
            Err(RuleError::TooLong {
                len: ACL_MAX_LEN + 7,
                max: ACL_MAX_LEN
            })
        );
        let just_fits = format!("1.2.3.4{}", " ".repeat(ACL_MAX_LEN - 7));
        assert!(Acl::parse(&just_fits).is_ok());
    }

    #[test]
    fn allow_rule_parses_each_form() {
        assert_eq!(
            rule("10.0.0.1"),
            AllowRule {
                net: net("10.0.0.1"),
                port: None
            }
        );
        assert_eq!(
            rule("10.0.0.0/8"),
            AllowRule {
                net: net("10.0.0.0/8"),
                port: None
            }
        );
        assert_eq!(
            rule("10.0.0.1:22"),
            AllowRule {
                net: net("10.0.0.1"),
                port: Some(22)
            }
        );
        assert_eq!(
            rule("10.0.0.0/8:22"),
            AllowRule {
                net: net("10.0.0.0/8"),
                port: Some(22)
            }
        );
        assert_eq!(
            rule("[2001:db8::1]:22"),
            AllowRule {
                net: net("2001:db8::1"),
                port: Some(22)
            }
        );
        assert_eq!(
            rule("[2001:db8::/32]:22"),
            AllowRule {
                net: net("2001:db8::/32"),
                port: Some(22)
            }
        );
        assert_eq!(
            rule("[::1]"),
            AllowRule {
                net: net("::1"),
                port: None
            }
        );
        // Without brackets a trailing group is part of the address, never a port.
        assert_eq!(
            rule("2001:db8::1:22"),
            AllowRule {
                net: net("2001:db8::1:22"),
                port: None
            }
        );
        assert_eq!(
            rule("2001:db8::/32"),
            AllowRule {
                net: net("2001:db8::/32"),
                port: None
            }
        );
        assert_eq!(
            rule("::1"),
            AllowRule {
                net: net("::1"),
                port: None
            }
        );
        // Match-all is fine here: "port 22 anywhere".
        assert_eq!(
            rule("0.0.0.0/0:22"),
            AllowRule {
                net: net("0.0.0.0/0"),
                port: Some(22)
            }
        );
        assert_eq!(rule("[::/0]:22").net, net("::/0"));
        assert_eq!(rule("[::ffff:10.0.0.1]:22"), rule("10.0.0.1:22"));
    }

    #[test]
    fn allow_rule_display_round_trips() {
        for (text, shown) in [
            ("10.0.0.1", "10.0.0.1"),
            ("10.0.0.1/8", "10.0.0.0/8"),
            ("10.0.0.1:22", "10.0.0.1:22"),
            ("10.0.0.0/8:22", "10.0.0.0/8:22"),
            ("[2001:db8::1]:22", "[2001:db8::1]:22"),
            ("[2001:db8::/32]:22", "[2001:db8::/32]:22"),
            ("[::1]", "::1"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("0.0.0.0/0:22", "0.0.0.0/0:22"),
            ("[::ffff:10.0.0.1]:22", "10.0.0.1:22"),
            ("10.0.0.1:00022", "10.0.0.1:22"),
        ] {
            let r = rule(text);
            assert_eq!(r.to_string(), shown, "{text}");
            assert_eq!(rule(shown), r, "{text}");
        }
    }

    #[test]
    fn allow_rule_port_errors() {
        for (text, port) in [
            ("10.0.0.1:0", "0"),
            ("10.0.0.1:65536", "65536"),
            ("10.0.0.1:", ""),
            ("10.0.0.1:+22", "+22"),
            ("10.0.0.1:ssh", "ssh"),
            ("[::1]:0", "0"),
            ("[::1]:", ""),
            ("[::1]:22:33", "22:33"),
            ("10.0.0.1:000000022", "000000022"),
        ] {
            assert_eq!(
                text.parse::<AllowRule>(),
                Err(RuleError::BadPort(port.into())),
                "{text}"
            );
        }
        assert_eq!(rule("10.0.0.1:65535").port, Some(65535));
        assert_eq!(rule("10.0.0.1:1").port, Some(1));
    }

    #[test]
    fn allow_rule_refuses_hostnames() {
        for text in ["localhost", "example.com", "example.com:22", "my-host:22"] {
            let err = text.parse::<AllowRule>().expect_err(text);
            assert_eq!(err, RuleError::Hostname(text.into()));
            assert!(err.to_string().contains(&format!("{text:?}")), "{err}");
        }
    }

    #[test]
    fn allow_rule_refuses_port_only_with_a_suggestion() {
        let err = ":22".parse::<AllowRule>().expect_err("port only");
        assert_eq!(err, RuleError::PortOnly(":22".into()));
        let msg = err.to_string();
        assert!(msg.contains("127.0.0.1:22"), "{msg}");
        assert!(msg.contains("0.0.0.0/0:22"), "{msg}");
        assert_eq!(
            ":0".parse::<AllowRule>(),
            Err(RuleError::BadPort("0".into()))
        );
    }

    #[test]
    fn allow_rule_refuses_malformed() {
        for text in [
            "[10.0.0.1]:22",
            "[::1",
            "[::1]22",
            "10.0.0.1:22:33x",
            ":ssh",
            "1.2.3.4/8/8:22",
            "[::1%eth0]:22",
        ] {
            assert_eq!(
                text.parse::<AllowRule>(),
                Err(RuleError::NotAnAddress(text.into())),
                "{text}"
            );
        }
        assert_eq!("".parse::<AllowRule>(), Err(RuleError::Empty));
        assert!(matches!(
            "10.0.0.0/33:22".parse::<AllowRule>(),
            Err(RuleError::PrefixTooLong { .. })
        ));
    }

    #[test]
    fn allow_list_empty_allows_everything() {
        let list = AllowList::parse::<&str>(&[]).expect("empty list");
        assert!(list.is_empty());
        assert!(list.allows(sock("1.2.3.4:22")));
        assert!(list.allows(sock("[::1]:80")));
        assert_eq!(list, AllowList::default());
    }

    #[test]
    fn allow_list_port_rules() {
        let list = AllowList::parse(&["10.0.0.0/8:22", "192.168.1.5", "[2001:db8::/32]:443"])
            .expect("valid list");
        assert!(!list.is_empty());
        assert_eq!(list.rules().len(), 3);
        assert!(list.allows(sock("10.1.2.3:22")));
        assert!(!list.allows(sock("10.1.2.3:23")));
        assert!(!list.allows(sock("11.1.2.3:22")));
        assert!(list.allows(sock("192.168.1.5:1")));
        assert!(list.allows(sock("192.168.1.5:65535")));
        assert!(!list.allows(sock("192.168.1.6:22")));
        assert!(list.allows(sock("[2001:db8:5::1]:443")));
        assert!(!list.allows(sock("[2001:db8:5::1]:22")));
        assert!(!list.allows(sock("[2001:db9::1]:443")));

        let anywhere = AllowList::parse(&["0.0.0.0/0:22"]).expect("valid list");
        assert!(anywhere.allows(sock("8.8.8.8:22")));
        assert!(anywhere.allows(sock("[::ffff:8.8.8.8]:22")));
        assert!(!anywhere.allows(sock("8.8.8.8:80")));
        assert!(!anywhere.allows(sock("[2001:db8::1]:22")));
    }

    #[test]
    fn allow_list_matches_mapped_targets() {
        let list = AllowList::parse(&["10.0.0.0/8:22"]).expect("valid list");
        assert!(!list.allows(sock("[::ffff:192.168.1.1]:22")));
        assert!(list.allows(sock("[::ffff:10.1.2.3]:22")));
        assert!(!list.allows(sock("[::ffff:10.1.2.3]:23")));
    }

    #[test]
    fn allow_list_errors_name_index_and_entry() {
        let err = AllowList::parse(&["10.0.0.1", " example.com:22 "]).expect_err("hostname");
        assert_eq!(
            err,
            RuleError::InEntry {
                index: 2,
                entry: "example.com:22".into(),
                reason: Box::new(RuleError::Hostname("example.com:22".into())),
            }
        );
        let msg = err.to_string();
        assert!(msg.contains("entry 2"), "{msg}");
        assert!(msg.contains("counting from 1"), "{msg}");
        assert!(msg.contains("\"example.com:22\""), "{msg}");

        let err = AllowList::parse(&[":22"]).expect_err("port only");
        let msg = err.to_string();
        assert!(
            msg.contains("entry 1") && msg.contains("127.0.0.1:22"),
            "{msg}"
        );

        let err = AllowList::parse(&["10.0.0.1", ""]).expect_err("blank");
        assert!(matches!(
            err,
            RuleError::InEntry { index: 2, ref reason, .. } if **reason == RuleError::Empty
        ));
    }

    fn arb_net() -> impl Strategy<Value = IpNet> {
        prop_oneof![
            (any::<u32>(), 0u8..=32).prop_map(|(a, p)| {
                IpNet::new(IpAddr::V4(Ipv4Addr::from(a)), p).expect("prefix in range")
            }),
            (any::<u128>(), 0u8..=128).prop_map(|(a, p)| {
                IpNet::new(IpAddr::V6(Ipv6Addr::from(a)), p).expect("prefix in range")
            }),
        ]
    }

    proptest! {
        #[test]
        fn ipnet_display_round_trips(n in arb_net()) {
            prop_assert_eq!(n.to_string().parse::<IpNet>(), Ok(n));
        }

        #[test]
        fn allow_rule_display_round_trips_for_any(n in arb_net(), port in proptest::option::of(1u16..)) {
            let r = AllowRule { net: n, port };
            prop_assert_eq!(r.to_string().parse::<AllowRule>(), Ok(r));
        }

        #[test]
        fn ipnet_contains_its_own_address(n in arb_net()) {
            prop_assert!(n.contains(n.addr()));
        }

        #[test]
        fn ipnet_contains_agrees_with_host_bits(a in any::<u32>(), b in any::<u32>(), p in 0u8..=32) {
            let n = IpNet::new(IpAddr::V4(Ipv4Addr::from(a)), p).expect("prefix in range");
            let same_prefix = p == 0 || (a ^ b) >> (32 - u32::from(p)) == 0;
            prop_assert_eq!(n.contains(IpAddr::V4(Ipv4Addr::from(b))), same_prefix);
            let mapped = IpAddr::V6(Ipv4Addr::from(b).to_ipv6_mapped());
            prop_assert_eq!(n.contains(mapped), same_prefix);
        }

        /// Against a brute-force count over the 256 /8 blocks (every prefix here is /8 or
        /// wider, so a block is either inside a net or outside all of them).
        #[test]
        fn acl_coverage_agrees_with_counting_blocks(nets in proptest::collection::vec((any::<u8>(), 1u8..=8), 1..12)) {
            let text = nets
                .iter()
                .map(|(first, prefix)| format!("{first}.0.0.0/{prefix}"))
                .collect::<Vec<_>>()
                .join(",");
            let covered = (0u32..256).all(|block| {
                nets.iter().any(|&(first, prefix)| {
                    (u32::from(first) ^ block) >> (8 - u32::from(prefix)) == 0
                })
            });
            let refused = matches!(Acl::parse(&text), Err(RuleError::CoversAll { family: "IPv4" }));
            prop_assert_eq!(refused, covered, "{}", text);
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,40}") {
            let _ = s.parse::<IpNet>();
            let _ = s.parse::<AllowRule>();
            let _ = Acl::parse(&s);
        }
    }
}
