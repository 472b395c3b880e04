//! The sending end of the shared proxy port's relay: a connection for a proxy tunnel
//! another node holds goes to that node over the peer channel, its first bytes (the
//! ClientHello, read to learn the name) first, then everything both ways.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::Request;
use tokio::io::AsyncWriteExt;

use crate::api::peer_relay::PROXY_RELAY_PATH;
use crate::cluster::Cluster;
use crate::cluster::peer::{CLIENT_ADDRESS_HEADER, PeerClient, Upgrade};
use crate::tunnels::http_proxy::{Io, ProxyRelay};

pub struct PeerRelay {
    pub peers: Arc<PeerClient>,
    pub cluster: Arc<Cluster>,
}

#[async_trait::async_trait]
impl ProxyRelay for PeerRelay {
    async fn relay(&self, node: &str, mut io: Box<dyn Io>, first: Vec<u8>, peer: SocketAddr) {
        let Some(holder) = self.cluster.live_node(node).await else {
            tracing::debug!(node, %peer, "proxy connection for a tunnel of a node that is gone: closed");
            return;
        };
        let request = Request::post(PROXY_RELAY_PATH)
            .header(CLIENT_ADDRESS_HEADER, peer.ip().to_string())
            .body(());
        let Ok(request) = request else { return };
        let mut stream = match self.peers.upgrade(&holder, request).await {
            Ok(Upgrade::Stream(stream)) => stream,
            Ok(Upgrade::Refused(response)) => {
                tracing::warn!(node, status = %response.status(), "node refused a relayed proxy connection");
                return;
            }
            Err(err) => {
                tracing::warn!(node, "relaying a proxy connection: {err}");
                return;
            }
        };
        if stream.write_all(&first).await.is_err() {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut io, &mut stream).await;
    }
}
