//! The peer channel's one endpoint besides forwarded API requests: a connection of
//! another node's shared proxy port, relayed whole to this node, which holds its tunnel.
//! Only the peer listener answers it; on the public API it does not exist.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::Request;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::routes::not_found;
use crate::cluster::peer::{FromPeer, accept_upgrade};
use crate::tunnels::http_proxy::Arrival;

/// Where the relay is asked for on the peer channel; not in the API's route table, so
/// not in its OpenAPI document either.
pub const PROXY_RELAY_PATH: &str = "/_peer/relay/proxy";

pub async fn proxy_relay(
    State(state): State<Arc<AppState>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    mut request: Request<Body>,
) -> Response {
    if request.extensions().get::<FromPeer>().is_none() {
        return not_found().await.into_response();
    }
    let Some((switching, pending)) = accept_upgrade(&mut request) else {
        return not_found().await.into_response();
    };
    let tunnels = Arc::clone(&state.tunnels);
    tokio::spawn(async move {
        match pending.ready().await {
            Ok(stream) => {
                tunnels
                    .route_proxy_connection(stream, client, Arrival::Relayed)
                    .await
            }
            Err(err) => {
                tracing::debug!(%client, "a relayed proxy connection ended before it began: {err}")
            }
        }
    });
    switching
}
