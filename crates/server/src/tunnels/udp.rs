//! The UDP side of a tunnel's public port: each remote source gets its own stream to the
//! agent (and so its own socket there); datagrams from sources outside the ACL are dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rport_protocol::StreamProtocol;
use rport_protocol::datagram::{self, DatagramDecoder};
use rport_transport::mux::MuxStream;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{ActiveTunnel, TunnelManager};
use crate::tunnels::port_pool::PortLease;

/// A source silent this long is forgotten (the agent closes its socket for it as well).
pub const FLOW_IDLE: Duration = Duration::from_secs(60);

/// Datagrams waiting for the agent's stream per source; more are dropped, as a congested
/// network would.
const FLOW_QUEUE: usize = 256;

/// Sources served at once per tunnel. UDP source addresses are easily forged, so without
/// a bound a flood from made-up sources would open a stream (and an agent socket) each.
const MAX_FLOWS: usize = 1024;

struct Flow {
    to_agent: mpsc::Sender<Bytes>,
    last_used: Instant,
}

pub(super) async fn serve(
    manager: Arc<TunnelManager>,
    socket: UdpSocket,
    tunnel: Arc<ActiveTunnel>,
    lease: Arc<PortLease>,
) {
    let socket = Arc::new(socket);
    let mut open = tunnel.open.clone();
    open.protocol = StreamProtocol::Udp;
    let open = Bytes::from(open.to_json());
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut running = JoinSet::new();
    let mut sweep = tokio::time::interval(FLOW_IDLE / 4);
    let mut buf = vec![0u8; datagram::MAX_DATAGRAM];
    loop {
        let received = tokio::select! {
            _ = tunnel.cancel.cancelled() => break,
            _ = sweep.tick() => {
                flows.retain(|_, flow| flow.last_used.elapsed() < FLOW_IDLE && !flow.to_agent.is_closed());
                while running.try_join_next().is_some() {}
                continue;
            }
            received = socket.recv_from(&mut buf) => received,
        };
        let (len, peer) = match received {
            Ok(received) => received,
            Err(err) => {
                tracing::debug!(tunnel = %tunnel.id(), "receiving on tunnel port: {err}");
                continue;
            }
        };
        if !tunnel.acl_allows(peer.ip()) {
            tunnel.refuse(crate::metrics::Refusal::Acl);
            continue;
        }
        tunnel.touch();
        let datagram = Bytes::copy_from_slice(&buf[..len]);
        if let Some(flow) = flows.get_mut(&peer)
            && !flow.to_agent.is_closed()
        {
            flow.last_used = Instant::now();
            let _ = flow.to_agent.try_send(datagram);
            continue;
        }
        if flows.len() >= MAX_FLOWS {
            flows.retain(|_, flow| {
                flow.last_used.elapsed() < FLOW_IDLE && !flow.to_agent.is_closed()
            });
            if flows.len() >= MAX_FLOWS {
                continue;
            }
        }
        // A datagram cannot wait for an agent that is away: it is dropped.
        let Some(session) = manager.session_for(&tunnel, Duration::ZERO).await else {
            continue;
        };
        let stream = match session.handle.open_stream(open.clone()) {
            Ok(stream) => stream,
            Err(err) => {
                tracing::debug!(tunnel = %tunnel.id(), "opening UDP stream: {err}");
                continue;
            }
        };
        tunnel.connections.fetch_add(1, Ordering::Relaxed);
        tunnel.totals.connection_opened();
        let (to_agent, queued) = mpsc::channel(FLOW_QUEUE);
        let _ = to_agent.try_send(datagram);
        flows.insert(
            peer,
            Flow {
                to_agent,
                last_used: Instant::now(),
            },
        );
        running.spawn(carry_flow(
            stream,
            queued,
            Arc::clone(&socket),
            peer,
            Arc::clone(&tunnel),
        ));
    }
    drop(flows);
    // The flows share the socket: the port is free only once they have all stopped.
    running.shutdown().await;
    drop(socket);
    drop(lease);
}

/// Datagrams of one source to the agent and the agent's answers back to that source.
async fn carry_flow(
    stream: MuxStream,
    mut queued: mpsc::Receiver<Bytes>,
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
    tunnel: Arc<ActiveTunnel>,
) {
    let (mut reader, mut writer) = stream.split();
    // This flow's bytes, for the metrics' totals when it ends: uncontended, unlike a
    // counter all tunnels share would be on every datagram.
    let (sent, received) = (AtomicU64::new(0), AtomicU64::new(0));
    let to_agent = async {
        while let Some(datagram) = queued.recv().await {
            let mut framed = BytesMut::new();
            if datagram::encode(&datagram, &mut framed).is_err() {
                continue;
            }
            tunnel
                .bytes_in
                .fetch_add(datagram.len() as u64, Ordering::Relaxed);
            sent.fetch_add(datagram.len() as u64, Ordering::Relaxed);
            if writer.send(framed.freeze()).await.is_err() {
                return;
            }
        }
        let _ = writer.finish().await;
    };
    let from_agent = async {
        let mut decoder = DatagramDecoder::default();
        while let Ok(Some(chunk)) = reader.recv().await {
            decoder.push(&chunk);
            while let Some(datagram) = decoder.next_datagram() {
                tunnel
                    .bytes_out
                    .fetch_add(datagram.len() as u64, Ordering::Relaxed);
                received.fetch_add(datagram.len() as u64, Ordering::Relaxed);
                tunnel.touch();
                if let Err(err) = socket.send_to(&datagram, peer).await {
                    tracing::debug!(tunnel = %tunnel.id(), %peer, "sending datagram: {err}");
                }
            }
        }
    };
    tokio::select! {
        _ = async { tokio::join!(to_agent, from_agent) } => {}
        _ = tunnel.cancel.cancelled() => {}
    }
    tunnel
        .totals
        .connection_closed(sent.into_inner(), received.into_inner());
}
