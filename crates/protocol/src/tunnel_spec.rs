//! RPort's tunnel address grammar: `PORT`, `HOST:PORT` and `[IPv6]:PORT` for each side,
//! and the combined `[LHOST:]LPORT:[RHOST:]RPORT` form that agents use for their own tunnels.
//!
//! "Local" is the server's listening side, "remote" the target the agent connects to.

use std::fmt;

/// A host and port on one side of a tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parses the server's side of a tunnel: `PORT`, `IP:PORT` or `[V6]:PORT`, on
/// [`DEFAULT_LOCAL_HOST`] when no address is given. A name is refused: the server would
/// have to look it up, and the text comes from API callers and agents.
pub fn parse_local_endpoint(input: &str) -> Result<Endpoint, SpecError> {
    require_ip(parse_endpoint(input, DEFAULT_LOCAL_HOST)?)
}

fn require_ip(endpoint: Endpoint) -> Result<Endpoint, SpecError> {
    match endpoint.host.parse::<std::net::IpAddr>() {
        Ok(_) => Ok(endpoint),
        Err(_) => Err(SpecError::LocalName(endpoint.host)),
    }
}

/// The host an unqualified remote port refers to: the agent's own loopback.
pub const DEFAULT_REMOTE_HOST: &str = "127.0.0.1";
/// The host an unqualified local port listens on: every interface of the server.
pub const DEFAULT_LOCAL_HOST: &str = "0.0.0.0";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("empty address")]
    Empty,
    #[error("invalid port {0:?}: expected a number from 1 to 65535")]
    BadPort(String),
    #[error("invalid host {0:?}")]
    BadHost(String),
    #[error("too many ':'-separated parts in {0:?} (IPv6 addresses go in brackets: [::1]:22)")]
    TooManyParts(String),
    #[error(
        "{0:?} is a name: the server's side takes an IP address (0.0.0.0, 127.0.0.1, [::1]) and a port, since the server looks up no names it is sent"
    )]
    LocalName(String),
    #[error("unknown protocol {0:?}: expected tcp, udp or tcp+udp")]
    BadProtocol(String),
}

/// Parses one side: `PORT`, `HOST:PORT` or `[V6]:PORT`, filling in `default_host`.
pub fn parse_endpoint(input: &str, default_host: &str) -> Result<Endpoint, SpecError> {
    let parts = split_parts(input)?;
    match parts.as_slice() {
        [port] => Ok(Endpoint {
            host: default_host.to_owned(),
            port: parse_port(port)?,
        }),
        [host, port] => Ok(Endpoint {
            host: parse_host(host)?,
            port: parse_port(port)?,
        }),
        _ => Err(SpecError::TooManyParts(input.to_owned())),
    }
}

/// What a tunnel forwards: TCP connections, UDP datagrams, or both on the same port number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TunnelProtocol {
    #[default]
    Tcp,
    Udp,
    TcpUdp,
}

impl TunnelProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::TcpUdp => "tcp+udp",
        }
    }

    pub fn has_tcp(self) -> bool {
        matches!(self, Self::Tcp | Self::TcpUdp)
    }

    pub fn has_udp(self) -> bool {
        matches!(self, Self::Udp | Self::TcpUdp)
    }

    /// Whether two tunnels would both use TCP or both use UDP.
    pub fn overlaps(self, other: Self) -> bool {
        (self.has_tcp() && other.has_tcp()) || (self.has_udp() && other.has_udp())
    }
}

impl fmt::Display for TunnelProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TunnelProtocol {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<Self, SpecError> {
        match text {
            "tcp" => Ok(Self::Tcp),
            "udp" => Ok(Self::Udp),
            "tcp+udp" => Ok(Self::TcpUdp),
            other => Err(SpecError::BadProtocol(other.to_owned())),
        }
    }
}

/// A tunnel as written in an agent's config or command line:
/// `[LHOST:]LPORT:[RHOST:]RPORT[/PROTOCOL]`, or only `[RHOST:]RPORT[/PROTOCOL]` for a
/// random server port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelSpec {
    pub local: Option<Endpoint>,
    pub remote: Endpoint,
    pub protocol: TunnelProtocol,
}

/// Parses the combined form from the right, as RPort does: the first port is the remote
/// port, the next one the local port; hosts attach to the port on their right.
pub fn parse_tunnel_spec(input: &str) -> Result<TunnelSpec, SpecError> {
    let (input, protocol) = match input.trim().rsplit_once('/') {
        // A '/' inside brackets belongs to an address, not to a protocol suffix.
        Some((spec, suffix)) if !suffix.contains(']') => (spec, suffix.parse()?),
        _ => (input, TunnelProtocol::Tcp),
    };
    let parts = split_parts(input)?;
    let (local, remote) = match parts.as_slice() {
        [rport] => (None, (None, *rport)),
        [a, b] if is_port(a) => (Some((None, *a)), (None, *b)),
        [rhost, rport] => (None, (Some(*rhost), *rport)),
        [lport, rhost, rport] if is_port(lport) => (Some((None, *lport)), (Some(*rhost), *rport)),
        [lhost, lport, rport] => (Some((Some(*lhost), *lport)), (None, *rport)),
        [lhost, lport, rhost, rport] => (Some((Some(*lhost), *lport)), (Some(*rhost), *rport)),
        _ => return Err(SpecError::TooManyParts(input.to_owned())),
    };
    let build =
        |(host, port): (Option<&str>, &str), default: &str| -> Result<Endpoint, SpecError> {
            Ok(Endpoint {
                host: match host {
                    Some(h) => parse_host(h)?,
                    None => default.to_owned(),
                },
                port: parse_port(port)?,
            })
        };
    Ok(TunnelSpec {
        local: local
            .map(|l| build(l, DEFAULT_LOCAL_HOST).and_then(require_ip))
            .transpose()?,
        remote: build(remote, DEFAULT_REMOTE_HOST)?,
        protocol,
    })
}

fn is_port(part: &str) -> bool {
    !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit())
}

/// Splits on `:` outside brackets, so `[::1]:22` is two parts.
fn split_parts(input: &str) -> Result<Vec<&str>, SpecError> {
    let input = input.trim();
    if input.is_empty() {
        return Err(SpecError::Empty);
    }
    let mut parts = Vec::new();
    let mut start = 0;
    let mut depth = 0u32;
    for (i, c) in input.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => {
                parts.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&input[start..]);
    if parts.len() > 4 {
        return Err(SpecError::TooManyParts(input.to_owned()));
    }
    Ok(parts)
}

fn parse_port(part: &str) -> Result<u16, SpecError> {
    match part.parse::<u16>() {
        Ok(port) if port > 0 && is_port(part) => Ok(port),
        _ => Err(SpecError::BadPort(part.to_owned())),
    }
}

/// Accepts IP literals (IPv6 only in brackets) and DNS names.
fn parse_host(part: &str) -> Result<String, SpecError> {
    let bad = || SpecError::BadHost(part.to_owned());
    if let Some(inner) = part.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or_else(bad)?;
        return inner
            .parse::<std::net::Ipv6Addr>()
            .map(|ip| ip.to_string())
            .map_err(|_| bad());
    }
    if part.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(part.to_owned());
    }
    let valid_name = !part.is_empty()
        && part.len() <= 253
        && part.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid_name {
        Ok(part.to_owned())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(host: &str, port: u16) -> Endpoint {
        Endpoint {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn one_side_forms() {
        assert_eq!(
            parse_endpoint("3389", "127.0.0.1"),
            Ok(ep("127.0.0.1", 3389))
        );
        assert_eq!(parse_endpoint("0.0.0.0:22", "x"), Ok(ep("0.0.0.0", 22)));
        assert_eq!(
            parse_endpoint("192.168.178.1:80", "x"),
            Ok(ep("192.168.178.1", 80))
        );
        assert_eq!(parse_endpoint("[::1]:22", "x"), Ok(ep("::1", 22)));
        assert_eq!(
            parse_endpoint("router.lan:443", "x"),
            Ok(ep("router.lan", 443))
        );
    }

    #[test]
    fn one_side_errors() {
        assert_eq!(parse_endpoint("", "x"), Err(SpecError::Empty));
        assert!(matches!(
            parse_endpoint("0", "x"),
            Err(SpecError::BadPort(_))
        ));
        assert!(matches!(
            parse_endpoint("65536", "x"),
            Err(SpecError::BadPort(_))
        ));
        assert!(matches!(
            parse_endpoint("+22", "x"),
            Err(SpecError::BadPort(_))
        ));
        assert!(matches!(
            parse_endpoint("::1:22", "x"),
            Err(SpecError::TooManyParts(_))
        ));
        assert!(matches!(
            parse_endpoint("a b:22", "x"),
            Err(SpecError::BadHost(_))
        ));
        assert!(matches!(
            parse_endpoint("[1.2.3.4]:22", "x"),
            Err(SpecError::BadHost(_))
        ));
        assert!(matches!(
            parse_endpoint("h:p:22", "x"),
            Err(SpecError::TooManyParts(_))
        ));
    }

    #[test]
    fn combined_forms_parse_from_the_right() {
        assert_eq!(
            parse_tunnel_spec("2222:22"),
            Ok(TunnelSpec {
                local: Some(ep("0.0.0.0", 2222)),
                remote: ep("127.0.0.1", 22),
                protocol: TunnelProtocol::Tcp,
            })
        );
        assert_eq!(
            parse_tunnel_spec("9999:192.168.1.1:80"),
            Ok(TunnelSpec {
                local: Some(ep("0.0.0.0", 9999)),
                remote: ep("192.168.1.1", 80),
                protocol: TunnelProtocol::Tcp,
            })
        );
        assert_eq!(
            parse_tunnel_spec("3389"),
            Ok(TunnelSpec {
                local: None,
                remote: ep("127.0.0.1", 3389),
                protocol: TunnelProtocol::Tcp,
            })
        );
        assert_eq!(
            parse_tunnel_spec("192.168.178.1:80"),
            Ok(TunnelSpec {
                local: None,
                remote: ep("192.168.178.1", 80),
                protocol: TunnelProtocol::Tcp,
            })
        );
        assert_eq!(
            parse_tunnel_spec("127.0.0.1:3390:[::1]:3389"),
            Ok(TunnelSpec {
                local: Some(ep("127.0.0.1", 3390)),
                remote: ep("::1", 3389),
                protocol: TunnelProtocol::Tcp,
            })
        );
    }

    /// The server's side is bound by the server, which looks up no names it is sent.
    #[test]
    fn the_local_side_takes_addresses_only() {
        assert_eq!(parse_local_endpoint("2222"), Ok(ep("0.0.0.0", 2222)));
        assert_eq!(
            parse_local_endpoint("127.0.0.1:2222"),
            Ok(ep("127.0.0.1", 2222))
        );
        assert_eq!(parse_local_endpoint("[::1]:2222"), Ok(ep("::1", 2222)));
        for (input, host) in [
            ("evil.invalid:21006", "evil.invalid"),
            ("localhost:2222", "localhost"),
            // A name by the grammar of names, not an address: Rust refuses leading zeros.
            ("010.0.0.1:2222", "010.0.0.1"),
        ] {
            assert_eq!(
                parse_local_endpoint(input),
                Err(SpecError::LocalName(host.into())),
                "{input}"
            );
            let spec = format!("{input}:22");
            assert_eq!(
                parse_tunnel_spec(&spec),
                Err(SpecError::LocalName(host.into())),
                "{spec}"
            );
        }
        let message = SpecError::LocalName("localhost".into()).to_string();
        assert!(message.contains("IP address"), "{message}");
        // The agent's side may still be a name: the agent resolves it, checked against
        // its own tunnel_allowed.
        assert_eq!(
            parse_tunnel_spec("127.0.0.1:2222:router.lan:22").map(|s| s.remote),
            Ok(ep("router.lan", 22))
        );
    }

    #[test]
    fn protocol_suffix() {
        let spec = parse_tunnel_spec("5353:53/udp").expect("udp");
        assert_eq!(spec.protocol, TunnelProtocol::Udp);
        assert_eq!(spec.remote, ep("127.0.0.1", 53));
        let spec = parse_tunnel_spec("[::1]:53/tcp+udp").expect("tcp+udp");
        assert_eq!(spec.protocol, TunnelProtocol::TcpUdp);
        assert_eq!(spec.remote, ep("::1", 53));
        assert_eq!(
            parse_tunnel_spec("53/sctp"),
            Err(SpecError::BadProtocol("sctp".into()))
        );
        assert!(TunnelProtocol::TcpUdp.overlaps(TunnelProtocol::Udp));
        assert!(!TunnelProtocol::Tcp.overlaps(TunnelProtocol::Udp));
    }
}
