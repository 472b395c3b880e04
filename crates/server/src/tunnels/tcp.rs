//! The TCP side of a tunnel's public port: accept, apply the ACL and the connection limits,
//! carry each connection through the agent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::{TcpListener, TcpStream};

use super::{ActiveTunnel, TunnelManager};
use crate::tunnels::port_pool::PortLease;

/// How long a connection arriving while the agent is away waits for it to come back.
const AGENT_WAIT: Duration = Duration::from_secs(5);

pub(super) async fn serve(
    manager: Arc<TunnelManager>,
    listener: TcpListener,
    tunnel: Arc<ActiveTunnel>,
    lease: Arc<PortLease>,
) {
    let open = Bytes::from(tunnel.open.to_json());
    while let Some((socket, peer)) =
        crate::net::listen::accept(&listener, &tunnel.cancel, "a tunnel port").await
    {
        if !tunnel.acl_allows(peer.ip()) {
            tunnel.refuse(crate::metrics::Refusal::Acl);
            tracing::debug!(tunnel = %tunnel.id(), %peer, "connection refused by the tunnel's ACL");
            continue; // dropping the socket closes it
        }
        if !tunnel.connection_opened(peer) {
            continue;
        }
        crate::net::listen::cap_public_buffers(&socket);
        if let Some(options) = tunnel.proxy.clone() {
            tokio::spawn(super::http_proxy::serve_tls(
                Arc::clone(&manager),
                Arc::clone(&tunnel),
                options,
                socket,
                peer,
                manager.proxy.acceptor.clone(),
            ));
            continue;
        }
        tokio::spawn(forward(
            Arc::clone(&manager),
            socket,
            peer,
            Arc::clone(&tunnel),
            open.clone(),
        ));
    }
    drop(listener);
    drop(lease);
}

/// Carries one accepted connection through the agent until both sides are done or the
/// tunnel closes.
async fn forward(
    manager: Arc<TunnelManager>,
    socket: TcpStream,
    peer: SocketAddr,
    tunnel: Arc<ActiveTunnel>,
    open: Bytes,
) {
    let _ = socket.set_nodelay(true);
    let Some(session) = manager.session_for(&tunnel, AGENT_WAIT).await else {
        tunnel.connection_closed(peer.ip(), 0, 0);
        return;
    };
    let stream = match session.handle.open_stream(open) {
        Ok(stream) => stream,
        Err(rport_transport::mux::MuxError::TooManyStreams(most)) => {
            let full = super::Full::Agent(most);
            tunnel.refuse(full.refusal());
            tunnel.warn_full(peer, full);
            tunnel.connection_closed(peer.ip(), 0, 0);
            return;
        }
        Err(err) => {
            tracing::debug!(tunnel = %tunnel.id(), "opening stream: {err}");
            tunnel.connection_closed(peer.ip(), 0, 0);
            return;
        }
    };
    let counters = stream.counter_handle();
    tokio::select! {
        result = rport_transport::mux::pipe(stream, socket) => {
            if let Err(err) = result {
                tracing::debug!(tunnel = %tunnel.id(), "tunnel connection ended: {err}");
            }
        }
        _ = tunnel.cancel.cancelled() => {}
    }
    let counted = counters.get();
    tunnel.connection_closed(peer.ip(), counted.bytes_sent, counted.bytes_received);
}
