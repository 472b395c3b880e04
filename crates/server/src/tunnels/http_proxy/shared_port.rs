//! The shared proxy port (`[server] tunnel_proxy_address`): one TLS port for all HTTP
//! proxy tunnels, each reached at its own subdomain of `tunnel_host`.

use crate::tunnels::{TunnelManager, lock};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio_util::sync::CancellationToken;

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
            tokio::spawn(Arc::clone(&self).route_proxy_connection(socket, peer));
        }
    }

    pub(super) async fn route_proxy_connection(
        self: Arc<Self>,
        socket: tokio::net::TcpStream,
        peer: SocketAddr,
    ) {
        let _ = socket.set_nodelay(true);
        crate::net::listen::cap_public_buffers(&socket);
        // One deadline for the whole handshake, however it is split up below.
        let deadline = tokio::time::Instant::now() + self.proxy.handshake_timeout;
        let acceptor =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), socket);
        let Ok(Ok(start)) = tokio::time::timeout_at(deadline, acceptor).await else {
            return;
        };
        let host = start
            .client_hello()
            .server_name()
            .map(|name| name.trim_end_matches('.').to_ascii_lowercase());
        let suffix = self.proxy.shared_host.as_ref().map(|h| format!(".{h}"));
        let tunnel = host
            .as_ref()
            .zip(suffix.as_ref())
            .and_then(|(host, suffix)| {
                let subdomain = host.strip_suffix(suffix.as_str())?;
                lock(&self.proxy_routes).get(subdomain).cloned()
            });
        let config = self.proxy.acceptor.config().clone();
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
            tunnel.refuse();
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
