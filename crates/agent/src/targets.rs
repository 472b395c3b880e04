//! Streams the server opens, connected to their targets on the device's side — but only
//! to targets the agent's own `tunnel_allowed` list permits, checked against the address
//! actually connected to.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rport_protocol::datagram::{self, DatagramDecoder};
use rport_protocol::ip_rules::AllowList;
use rport_protocol::tunnel_spec::Endpoint;
use rport_protocol::{CheckAnswer, CheckOutcome, CheckRequest, OpenRequest, StreamProtocol};
use rport_transport::mux::{self, IncomingStream, MuxStream};
use tokio::net::{TcpStream, UdpSocket};

const TARGET_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a check stream waits for the server to end it after answering.
const CHECK_LINGER: Duration = Duration::from_secs(10);
/// A UDP target's socket is closed after this long without a datagram either way.
const UDP_IDLE: Duration = Duration::from_secs(60);

/// Why a target is not used. The text is for the agent's log: it can say how the device
/// resolved a name, which the server must not pass on to whoever asked for the tunnel (a
/// user allowed to open tunnels would otherwise look names up through the device). What
/// the server is told is [`Refusal::for_server`].
#[derive(Debug)]
enum Refusal {
    NotAllowed(String),
    NotReachable(String),
}

/// What the server hears when `tunnel_allowed` refuses a target, however the name resolved.
const NOT_ALLOWED_ANSWER: &str =
    "the target is not in the device's tunnel_allowed ([client] tunnel_allowed in rport.conf)";

impl Refusal {
    /// The whole reason, for this agent's log.
    fn detail(&self) -> &str {
        match self {
            Self::NotAllowed(detail) | Self::NotReachable(detail) => detail,
        }
    }

    fn for_server(&self) -> &str {
        match self {
            Self::NotAllowed(_) => NOT_ALLOWED_ANSWER,
            Self::NotReachable(message) => message,
        }
    }
}

/// Serves one stream the server opened: a check, a TCP connection or a UDP flow.
pub async fn serve_stream(incoming: IncomingStream, allowed: Arc<AllowList>) {
    let request = match OpenRequest::from_json(&incoming.open) {
        Ok(request) => request,
        Err(err) => {
            incoming
                .stream
                .reset(&format!("malformed open request: {err}"));
            return;
        }
    };
    if let Some(check) = request.check {
        answer_check(incoming.stream, &request, check, &allowed).await;
        return;
    }
    let target = match resolve_allowed(&request, &allowed).await {
        Ok(target) => target,
        Err(refusal) => {
            tracing::warn!(tunnel = %request.tunnel_id, "stream refused: {}", refusal.detail());
            incoming.stream.reset(refusal.for_server());
            return;
        }
    };
    match request.protocol {
        StreamProtocol::Tcp => carry_tcp(incoming.stream, target, &request.tunnel_id).await,
        StreamProtocol::Udp => carry_udp(incoming.stream, target, &request.tunnel_id).await,
    }
}

/// The target as the server named it, never as it resolved.
fn requested(request: &OpenRequest) -> Endpoint {
    Endpoint {
        host: request.host.clone(),
        port: request.port,
    }
}

/// Resolves the target once and returns the first resolved address the allow-list
/// permits. That very address is then connected to, so a DNS answer cannot change
/// between the check and the connection.
async fn resolve_allowed(
    request: &OpenRequest,
    allowed: &AllowList,
) -> Result<SocketAddr, Refusal> {
    let resolved = tokio::net::lookup_host((request.host.as_str(), request.port))
        .await
        .map(Iterator::collect);
    choose_target(&requested(request), resolved, allowed)
}

/// The decision of [`resolve_allowed`], given the resolver's answer.
fn choose_target(
    target: &Endpoint,
    resolved: std::io::Result<Vec<SocketAddr>>,
    allowed: &AllowList,
) -> Result<SocketAddr, Refusal> {
    let resolved = match resolved {
        Ok(resolved) if !resolved.is_empty() => resolved,
        failed => {
            let why = match failed {
                Err(err) => format!("resolving {}: {err}", target.host),
                Ok(_) => format!("{} has no address", target.host),
            };
            // With an allow-list, a name that does not resolve is not allowed either;
            // saying "not reachable" would tell the asker which names exist here.
            return Err(match allowed.is_empty() {
                true => Refusal::NotReachable(why),
                false => Refusal::NotAllowed(format!("{why}, so tunnel_allowed cannot allow it")),
            });
        }
    };
    resolved
        .iter()
        .copied()
        .find(|addr| allowed.allows(*addr))
        .ok_or_else(|| {
            let shown: Vec<String> = resolved.iter().map(ToString::to_string).collect();
            Refusal::NotAllowed(format!(
                "{target} resolves to {}, which tunnel_allowed does not include",
                shown.join(", ")
            ))
        })
}

async fn answer_check(
    stream: MuxStream,
    request: &OpenRequest,
    check: CheckRequest,
    allowed: &AllowList,
) {
    let target = requested(request);
    let answer = match resolve_allowed(request, allowed).await {
        Err(refusal) => {
            tracing::warn!("tunnel check for {target} refused: {}", refusal.detail());
            CheckAnswer {
                outcome: match refusal {
                    Refusal::NotAllowed(_) => CheckOutcome::NotAllowed,
                    Refusal::NotReachable(_) => CheckOutcome::NotReachable,
                },
                message: refusal.for_server().to_owned(),
            }
        }
        Ok(address) => match check.dial_timeout_ms {
            None => CheckAnswer {
                outcome: CheckOutcome::Ok,
                message: target.to_string(),
            },
            Some(ms) => {
                let timeout = Duration::from_millis(ms);
                // Messages name the target as asked for: the address a name resolved to
                // stays in this log.
                let (outcome, message) =
                    match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
                        Ok(Ok(_)) => (CheckOutcome::Ok, target.to_string()),
                        Ok(Err(err)) => (
                            CheckOutcome::NotReachable,
                            format!("connecting to {target}: {err}"),
                        ),
                        Err(_) => (
                            CheckOutcome::NotReachable,
                            format!("connecting to {target}: no answer within {timeout:?}"),
                        ),
                    };
                if outcome != CheckOutcome::Ok {
                    tracing::info!("tunnel check: {message} (at {address})");
                }
                CheckAnswer { outcome, message }
            }
        },
    };
    let (mut reader, mut writer) = stream.split();
    if writer.send(Bytes::from(answer.to_json())).await.is_ok() {
        let _ = writer.finish().await;
    }
    // The server sends nothing but its end; waiting for it ends the stream cleanly, where
    // dropping an unfinished reader would reset it and could overtake the answer.
    let _ = tokio::time::timeout(CHECK_LINGER, async {
        while let Ok(Some(_)) = reader.recv().await {}
    })
    .await;
}

async fn carry_tcp(stream: MuxStream, target: SocketAddr, tunnel_id: &str) {
    let socket =
        match tokio::time::timeout(TARGET_CONNECT_TIMEOUT, TcpStream::connect(target)).await {
            Ok(Ok(socket)) => socket,
            Ok(Err(err)) => {
                tracing::debug!(tunnel = %tunnel_id, "connecting to {target}: {err}");
                stream.reset(&format!("connecting to {target}: {err}"));
                return;
            }
            Err(_) => {
                stream.reset(&format!("connecting to {target} timed out"));
                return;
            }
        };
    let _ = socket.set_nodelay(true);
    if let Err(err) = mux::pipe(stream, socket).await {
        tracing::debug!(tunnel = %tunnel_id, "stream ended: {err}");
    }
}

/// One remote source's datagrams: to the target from a socket of its own, and the
/// target's answers back, until the server ends the stream or both sides fall silent.
async fn carry_udp(stream: MuxStream, target: SocketAddr, tunnel_id: &str) {
    let bind: SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = match UdpSocket::bind(bind).await {
        Ok(socket) => socket,
        Err(err) => {
            stream.reset(&format!("opening a UDP socket: {err}"));
            return;
        }
    };
    if let Err(err) = socket.connect(target).await {
        stream.reset(&format!("UDP to {target}: {err}"));
        return;
    }
    let (mut reader, mut writer) = stream.split();
    let mut decoder = DatagramDecoder::default();
    let mut buf = vec![0u8; datagram::MAX_DATAGRAM];
    loop {
        tokio::select! {
            chunk = reader.recv() => match chunk {
                Ok(Some(chunk)) => {
                    decoder.push(&chunk);
                    while let Some(datagram) = decoder.next_datagram() {
                        // A refused or lost datagram is UDP's normal life, not an error.
                        let _ = socket.send(&datagram).await;
                    }
                }
                Ok(None) | Err(_) => break,
            },
            received = socket.recv(&mut buf) => {
                let Ok(len) = received else { continue };
                let mut framed = BytesMut::new();
                if datagram::encode(&buf[..len], &mut framed).is_ok()
                    && writer.send(framed.freeze()).await.is_err()
                {
                    break;
                }
            }
            _ = tokio::time::sleep(UDP_IDLE) => {
                tracing::debug!(tunnel = %tunnel_id, "UDP flow to {target} idle; closing its socket");
                break;
            }
        }
    }
    let _ = writer.finish().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(host: &str, port: u16) -> OpenRequest {
        OpenRequest {
            tunnel_id: "t".into(),
            host: host.into(),
            port,
            protocol: StreamProtocol::Tcp,
            check: None,
        }
    }

    fn allow(entries: &[&str]) -> AllowList {
        AllowList::parse(entries).expect("valid allow-list")
    }

    #[tokio::test]
    async fn an_empty_list_allows_anything() {
        let target = resolve_allowed(&request("192.0.2.7", 443), &AllowList::default()).await;
        assert_eq!(target.ok(), Some("192.0.2.7:443".parse().expect("addr")));
    }

    #[tokio::test]
    async fn addresses_and_ports_are_checked() {
        let list = allow(&["127.0.0.1:22", "10.0.0.0/8"]);
        assert!(
            resolve_allowed(&request("127.0.0.1", 22), &list)
                .await
                .is_ok()
        );
        assert!(
            resolve_allowed(&request("10.9.8.7", 5432), &list)
                .await
                .is_ok()
        );
        for (host, port) in [("127.0.0.1", 23), ("127.0.0.2", 22), ("192.168.1.1", 22)] {
            assert!(
                matches!(
                    resolve_allowed(&request(host, port), &list).await,
                    Err(Refusal::NotAllowed(_))
                ),
                "{host}:{port}"
            );
        }
    }

    /// An IPv4 address written as IPv6 is the same address to the rules.
    #[tokio::test]
    async fn ipv4_mapped_ipv6_cannot_slip_past() {
        let list = allow(&["10.0.0.0/8:22"]);
        assert!(matches!(
            resolve_allowed(&request("::ffff:192.168.1.1", 22), &list).await,
            Err(Refusal::NotAllowed(_))
        ));
        assert!(
            resolve_allowed(&request("::ffff:10.1.2.3", 22), &list)
                .await
                .is_ok()
        );
    }

    fn endpoint(host: &str, port: u16) -> Endpoint {
        Endpoint {
            host: host.into(),
            port,
        }
    }

    /// How a name resolved goes to the agent's log, never to the server.
    #[test]
    fn a_refusal_tells_the_server_nothing_of_how_names_resolved() {
        let list = allow(&["10.0.0.0/8:22"]);
        let target = endpoint("db.example", 22);
        let resolved = vec!["192.0.2.9:22".parse().expect("addr")];
        let refusal = choose_target(&target, Ok(resolved), &list).expect_err("not allowed");
        let Refusal::NotAllowed(detail) = &refusal else {
            panic!("{refusal:?}");
        };
        assert!(detail.contains("192.0.2.9"), "{detail}");
        assert_eq!(refusal.for_server(), NOT_ALLOWED_ANSWER);
        assert!(!refusal.for_server().contains("192.0.2.9"));

        // Whether the name exists is not told either: with an allow-list, a name that
        // does not resolve is simply not allowed.
        let failed = Err(std::io::Error::other("no such name"));
        let refusal = choose_target(&target, failed, &list).expect_err("not allowed");
        assert!(
            matches!(&refusal, Refusal::NotAllowed(d) if d.contains("no such name")),
            "{refusal:?}"
        );
        assert_eq!(refusal.for_server(), NOT_ALLOWED_ANSWER);
        let refusal = choose_target(&target, Ok(Vec::new()), &list).expect_err("no address");
        assert_eq!(refusal.for_server(), NOT_ALLOWED_ANSWER);

        // Without an allow-list anything may be reached, so the reason is worth passing on.
        let failed = Err(std::io::Error::other("no such name"));
        let refusal =
            choose_target(&target, failed, &AllowList::default()).expect_err("not reachable");
        assert!(
            matches!(&refusal, Refusal::NotReachable(m) if m.contains("no such name")),
            "{refusal:?}"
        );
        assert!(refusal.for_server().contains("no such name"));
    }

    /// A name is allowed only through the address it resolves to, and that address is
    /// the one returned for connecting.
    #[tokio::test]
    async fn names_are_checked_by_their_resolved_address() {
        let list = allow(&["127.0.0.1:8080"]);
        let target = resolve_allowed(&request("localhost", 8080), &list).await;
        assert_eq!(target.ok(), Some("127.0.0.1:8080".parse().expect("addr")));
        assert!(matches!(
            resolve_allowed(&request("localhost", 8081), &list).await,
            Err(Refusal::NotAllowed(_))
        ));
    }
}
