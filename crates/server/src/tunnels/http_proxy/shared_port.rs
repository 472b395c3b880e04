//! The shared proxy port (`[server] tunnel_proxy_address`): one TLS port for all HTTP
//! proxy tunnels, each reached at its own subdomain of `tunnel_host`. In a cluster, a
//! connection for a tunnel another node holds is relayed there whole, TLS and all: this
//! node reads only the ClientHello's server name, and that node ends TLS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::tunnels::{TunnelManager, lock};

/// Bytes of a ClientHello read at most before giving up on it: far more than any real
/// one (a few hundred bytes to a few kilobytes), so that a slow trickle cannot pin more.
pub const MAX_CLIENT_HELLO: usize = 64 * 1024;

/// Where a proxy connection came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Straight from the public side.
    Public,
    /// Relayed by another node of the cluster: never relayed on again.
    Relayed,
}

/// What the first bytes of a proxy connection said.
struct Hello {
    accepted: rustls::server::Accepted,
    /// Every byte read so far, for a relay to send on.
    bytes: Vec<u8>,
}

impl TunnelManager {
    /// Serves the shared proxy port until `shutdown`: each connection goes to the tunnel
    /// its TLS server name (SNI) names, if the tunnel's ACL lets the peer in.
    pub async fn serve_proxy_port(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) {
        if let Ok(address) = listener.local_addr() {
            self.proxy
                .shared_port
                .store(address.port(), Ordering::Relaxed);
        }
        while let Some((socket, peer)) =
            crate::net::listen::accept(&listener, &shutdown, "the tunnel proxy port").await
        {
            let _ = socket.set_nodelay(true);
            crate::net::listen::cap_public_buffers(&socket);
            tokio::spawn(Arc::clone(&self).route_proxy_connection(socket, peer, Arrival::Public));
        }
    }

    /// Routes one connection of the shared proxy port by the server name of its
    /// ClientHello: to a tunnel of this node, to the node holding the tunnel, or to a 404.
    pub async fn route_proxy_connection<S>(
        self: Arc<Self>,
        mut socket: S,
        peer: SocketAddr,
        arrival: Arrival,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // One deadline for the whole handshake, however it is split up below.
        let deadline = Instant::now() + self.proxy.handshake_timeout;
        let Some(hello) = read_client_hello(&mut socket, deadline).await else {
            return;
        };
        let Hello { accepted, bytes } = hello;
        let host = accepted
            .client_hello()
            .server_name()
            .map(|name| name.trim_end_matches('.').to_ascii_lowercase());
        let suffix = self.proxy.shared_host.as_ref().map(|h| format!(".{h}"));
        let subdomain = host
            .as_ref()
            .zip(suffix.as_ref())
            .and_then(|(host, suffix)| host.strip_suffix(suffix.as_str()).map(str::to_owned));
        let tunnel = subdomain
            .as_ref()
            .and_then(|subdomain| lock(&self.proxy_routes).get(subdomain).cloned());
        if tunnel.is_none()
            && arrival == Arrival::Public
            && let Some(subdomain) = &subdomain
            && let Some(relay) = self.proxy.relay.get()
            && let Some(node) = self.proxy_holder(subdomain).await
        {
            relay.relay(&node, Box::new(socket), bytes, peer).await;
            return;
        }
        let config = self.proxy.acceptor.config().clone();
        let start = tokio_rustls::StartHandshake::from_parts(accepted, socket);
        let Some(tunnel) = tunnel else {
            // Unknown names get a 404 over TLS, not a hint of which names exist.
            if let Ok(Ok(stream)) =
                tokio::time::timeout_at(deadline, start.into_stream(config)).await
            {
                super::serve_unknown_host(stream, self.proxy.header_timeout).await;
            }
            return;
        };
        if !tunnel.acl_allows(peer.ip()) {
            tunnel.refuse(crate::metrics::Refusal::Acl);
            tracing::debug!(tunnel = %tunnel.id(), %peer, "proxy connection refused by the tunnel's ACL");
            return;
        }
        let Some(options) = tunnel.proxy.clone() else {
            return;
        };
        if !tunnel.connection_opened(peer) {
            return;
        }
        match tokio::time::timeout_at(deadline, start.into_stream(config)).await {
            Ok(Ok(stream)) => {
                super::serve(self, tunnel, options, stream, peer, host).await;
            }
            _ => tunnel.connection_closed(peer.ip(), 0, 0),
        }
    }
}

impl TunnelManager {
    /// The other node holding the live proxy tunnel at `subdomain`, from the store.
    async fn proxy_holder(&self, subdomain: &str) -> Option<String> {
        let filter = rport_store::TunnelFilter {
            open_only: true,
            subdomain: Some(subdomain.to_owned()),
            limit: Some(1),
            ..Default::default()
        };
        let found = match self.store.list_tunnels(&filter).await {
            Ok(found) => found,
            Err(err) => {
                tracing::warn!(subdomain, "looking up a proxy tunnel's node: {err}");
                return None;
            }
        };
        let node = found.into_iter().next()?.owner_node?;
        (node != self.registry.node()).then_some(node)
    }
}

/// Reads until the ClientHello is whole, keeping every byte read.
async fn read_client_hello<S: AsyncRead + Unpin>(
    socket: &mut S,
    deadline: Instant,
) -> Option<Hello> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if bytes.len() >= MAX_CLIENT_HELLO {
            return None;
        }
        let n = tokio::time::timeout_at(deadline, socket.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        bytes.extend_from_slice(&buf[..n]);
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            acceptor.read_tls(&mut chunk).ok()?;
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => return Some(Hello { accepted, bytes }),
            Ok(None) => {}
            Err(_) => return None,
        }
    }
}
