//! Streams the server opens, connected to their targets on the device's side — but only
//! to targets the agent's own `tunnel_allowed` list permits, checked against the address
//! actually connected to.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rport_protocol::datagram::{self, DatagramDecoder};
use rport_protocol::ip_rules::AllowList;
use rport_protocol::{CheckAnswer, CheckOutcome, CheckRequest, OpenRequest, StreamProtocol};
use rport_transport::mux::{self, IncomingStream, MuxStream};
use tokio::net::{TcpStream, UdpSocket};

const TARGET_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a check stream waits for the server to end it after answering.
const CHECK_LINGER: Duration = Duration::from_secs(10);
/// A UDP target's socket is closed after this long without a datagram either way.
const UDP_IDLE: Duration = Duration::from_secs(60);

/// Why a target is not used.
#[derive(Debug)]
enum Refusal {
    NotAllowed(String),
    NotReachable(String),
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
            tracing::warn!(tunnel = %request.tunnel_id, "stream refused: {refusal:?}");
            incoming.stream.reset(&format!("{refusal:?}"));
            return;
        }
    };
    match request.protocol {
        StreamProtocol::Tcp => carry_tcp(incoming.stream, target, &request.tunnel_id).await,
        StreamProtocol::Udp => carry_udp(incoming.stream, target, &request.tunnel_id).await,
    }
}

/// Resolves the target once and returns the first resolved address the allow-list
/// permits. That very address is then connected to, so a DNS answer cannot change
/// between the check and the connection.
async fn resolve_allowed(
    request: &OpenRequest,
    allowed: &AllowList,
) -> Result<SocketAddr, Refusal> {
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((request.host.as_str(), request.port))
        .await
        .map_err(|err| Refusal::NotReachable(format!("resolving {}: {err}", request.host)))?
        .collect();
    if resolved.is_empty() {
        return Err(Refusal::NotReachable(format!(
            "{} has no address",
            request.host
        )));
    }
    resolved
        .iter()
        .copied()
        .find(|addr| allowed.allows(*addr))
        .ok_or_else(|| {
            let shown: Vec<String> = resolved.iter().map(ToString::to_string).collect();
            Refusal::NotAllowed(format!(
                "{}:{} resolves to {}, which tunnel_allowed does not include",
                request.host,
                request.port,
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
    let answer = match resolve_allowed(request, allowed).await {
        Err(Refusal::NotAllowed(message)) => CheckAnswer {
            outcome: CheckOutcome::NotAllowed,
            message,
        },
        Err(Refusal::NotReachable(message)) => CheckAnswer {
            outcome: CheckOutcome::NotReachable,
            message,
        },
        Ok(target) => match check.dial_timeout_ms {
            None => CheckAnswer {
                outcome: CheckOutcome::Ok,
                message: target.to_string(),
            },
            Some(ms) => {
                let timeout = Duration::from_millis(ms);
                match tokio::time::timeout(timeout, TcpStream::connect(target)).await {
                    Ok(Ok(_)) => CheckAnswer {
                        outcome: CheckOutcome::Ok,
                        message: target.to_string(),
                    },
                    Ok(Err(err)) => CheckAnswer {
                        outcome: CheckOutcome::NotReachable,
                        message: format!("connecting to {target}: {err}"),
                    },
                    Err(_) => CheckAnswer {
                        outcome: CheckOutcome::NotReachable,
                        message: format!("connecting to {target}: no answer within {timeout:?}"),
                    },
                }
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
