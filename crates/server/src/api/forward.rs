//! Any node answers for any agent. A request that must run where the agent's session is
//! (opening a tunnel, reading its live tunnels) or where the tunnel's port is (closing
//! it, changing its ACL) is sent to that node over the peer channel, and that node's
//! answer is returned as it is: its handler runs, its public host is in the answer, its
//! audit entry is the only one.
//!
//! It is a middleware on the routes the route table marks (`Routes::add_at_owner`, each
//! with a [`Owner`] saying where the agent or tunnel is named), not a call in each
//! handler: the handlers stay those of a single server, and one table says which
//! routes run at the owner. For a request it forwards, it authenticates the caller first
//! (so that nobody unknown makes nodes talk, or learns which node holds what) and checks
//! that the caller may know of the resource's project; every other request, and every
//! request that came over the peer channel (never forwarded again, so two nodes that
//! disagree cannot pass it back and forth), goes to the handler here.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rport_store::NodeRecord;

use super::{
    ApiError, AppState, Authenticated, BearerAuthenticated, ClientIp, MAX_BODY_BYTES, Params,
};
use crate::cluster::peer::{CLIENT_ADDRESS_HEADER, FromPeer, NODE_HEADER, PeerError};
use crate::domain::permissions::AuthUser;

/// Where a route names what decides the node that must answer it.
#[derive(Debug, Clone, Copy)]
pub enum Owner {
    /// v1: the agent of path parameter `client_id` (its session's node).
    Agent,
    /// v1: the tunnel of path parameter `tunnel_id`, of the agent `client_id` (the node
    /// holding its port).
    Tunnel,
    /// v1 `GET /tunnels`: live tunnels of the agent `filter[client_id]`; listing anything
    /// else runs here.
    LiveTunnelsOfAgent,
    /// v2: the device of the JSON body's `device_uuid`.
    DeviceInBody,
    /// v2: the tunnel of path parameter `port_tunnel_id`, in project `project_key`.
    PortTunnel,
}

impl Owner {
    /// API v2 takes bearer tokens only.
    fn is_v2(self) -> bool {
        matches!(self, Self::DeviceInBody | Self::PortTunnel)
    }
}

/// The node that must answer, when it is another one, and the project of what it is
/// asked about.
struct Elsewhere {
    node: String,
    project: Option<String>,
}

/// The middleware (`axum::middleware::from_fn_with_state`, the state being the route's
/// [`Owner`]). Needs the [`AppState`] as a request extension (`api::router` adds it).
pub async fn to_owner(State(owner): State<Owner>, request: Request, next: Next) -> Response {
    if request.extensions().get::<FromPeer>().is_some() {
        return next.run(request).await;
    }
    let Some(state) = request.extensions().get::<Arc<AppState>>().cloned() else {
        return ApiError::internal("forwarding: the router has no state").into_response();
    };
    let (mut parts, mut body) = request.into_parts();
    // v2 creation names its device in the body; the rest never read the body unless the
    // request goes elsewhere.
    let mut seen = Bytes::new();
    if matches!(owner, Owner::DeviceInBody) {
        seen = match read_bounded(body).await {
            Ok(bytes) => bytes,
            Err(answer) => return answer,
        };
        body = Body::from(seen.clone());
    }
    let Some(elsewhere) = locate(&state, owner, &mut parts, &seen).await else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    let user = match caller(&state, owner, &mut parts).await {
        Ok(user) => user,
        Err(err) => return err.into_response(),
    };
    let may_know = elsewhere.project.as_deref().is_none_or(|p| user.sees(p));
    let node = match may_know {
        true => state.cluster.live_node(&elsewhere.node).await,
        false => None,
    };
    let Some(node) = node else {
        // Its node is gone (its agents come back elsewhere), or the caller may not know
        // of it: this node's handler gives the answer any node would.
        return next.run(Request::from_parts(parts, body)).await;
    };
    match read_bounded(body).await {
        Ok(bytes) => forward(&state, &node, parts, bytes).await,
        Err(answer) => answer,
    }
}

/// The body, at most the API's limit; past it the API's answer to a large body.
async fn read_bounded(body: Body) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "ERR_CODE_REQUEST_TOO_LARGE",
                "Payload Too Large",
                format!("request bodies are at most {MAX_BODY_BYTES} bytes"),
            )
            .into_response()
        })
}

/// Who calls, as the handler would find out (and with the same answer when it fails).
async fn caller(
    state: &Arc<AppState>,
    owner: Owner,
    parts: &mut Parts,
) -> Result<AuthUser, ApiError> {
    if owner.is_v2() {
        BearerAuthenticated::from_request_parts(parts, state)
            .await
            .map(|BearerAuthenticated(user)| user)
    } else {
        Authenticated::from_request_parts(parts, state)
            .await
            .map(|Authenticated(user)| user)
    }
}

/// The node that must answer the request, when it is another live one by this node's
/// knowledge.
async fn locate(
    state: &AppState,
    owner: Owner,
    parts: &mut Parts,
    body: &Bytes,
) -> Option<Elsewhere> {
    let agent_elsewhere = |agent: &str| {
        state.registry.held_elsewhere(agent).map(|node| Elsewhere {
            node,
            project: state.registry.project_of(agent),
        })
    };
    match owner {
        Owner::Agent => agent_elsewhere(&path_param(parts, "client_id").await?),
        Owner::LiveTunnelsOfAgent => {
            let Params(params) = Params::from_request_parts(parts, &()).await.ok()?;
            let get = |key: &str| {
                params
                    .iter()
                    .rev()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.as_str())
                    .filter(|v| !v.is_empty())
            };
            if !matches!(get("filter[status]"), None | Some("live")) {
                return None;
            }
            agent_elsewhere(get("filter[client_id]")?)
        }
        Owner::DeviceInBody => {
            let body: serde_json::Value = serde_json::from_slice(body).ok()?;
            agent_elsewhere(body.get("device_uuid")?.as_str()?)
        }
        Owner::Tunnel => {
            let agent = path_param(parts, "client_id").await?;
            let tunnel = path_param(parts, "tunnel_id").await?;
            tunnel_elsewhere(state, &tunnel, |record| record.agent_id == agent).await
        }
        Owner::PortTunnel => {
            let project = path_param(parts, "project_key").await?;
            let tunnel = path_param(parts, "port_tunnel_id").await?;
            tunnel_elsewhere(state, &tunnel, |record| record.project == project).await
        }
    }
}

/// The node holding live tunnel `id`'s port, when it is another one and the tunnel
/// `belongs` where the request says.
async fn tunnel_elsewhere(
    state: &AppState,
    id: &str,
    belongs: impl Fn(&rport_store::TunnelRecord) -> bool,
) -> Option<Elsewhere> {
    // A store error is the handler's to report.
    let tunnel = state.tunnels.get(id).await.ok()??;
    let record = tunnel.record;
    let node = record.owner_node.clone()?;
    let elsewhere = record.is_live() && node != state.registry.node() && belongs(&record);
    elsewhere.then_some(Elsewhere {
        node,
        project: Some(record.project),
    })
}

async fn path_param(parts: &mut Parts, name: &str) -> Option<String> {
    let params = RawPathParams::from_request_parts(parts, &()).await.ok()?;
    params
        .iter()
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// Headers that belong to one connection, not to the request or answer.
const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::CONTENT_LENGTH,
    header::PROXY_AUTHORIZATION,
    // The body is read whole before it is sent on.
    header::EXPECT,
];

/// Sends the request to `node` as the original client made it (the client's address,
/// as this node decided it, in the header only the peer listener believes) and returns
/// its answer.
async fn forward(
    state: &Arc<AppState>,
    node: &NodeRecord,
    mut parts: Parts,
    body: Bytes,
) -> Response {
    let client = match ClientIp::from_request_parts(&mut parts, state).await {
        Ok(ClientIp(ip)) => ip,
        Err(err) => return err.into_response(),
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut request = axum::http::Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = match path.parse() {
        Ok(uri) => uri,
        Err(err) => return ApiError::internal(format!("forwarding {path}: {err}")).into_response(),
    };
    let headers = request.headers_mut();
    for (name, value) in &parts.headers {
        let ours = name == CLIENT_ADDRESS_HEADER || name == NODE_HEADER;
        if !ours && !HOP_BY_HOP.contains(name) && name != "x-forwarded-for" && name != "keep-alive"
        {
            headers.append(name.clone(), value.clone());
        }
    }
    if let Ok(value) = HeaderValue::from_str(&client.to_string()) {
        headers.insert(CLIENT_ADDRESS_HEADER, value);
    }
    tracing::debug!(node = %node.id, method = %parts.method, "forwarding {path} to the node that holds it");
    match state.peers.request(node, request).await {
        Ok(answer) => {
            let (mut answer_parts, body) = answer.into_parts();
            for name in HOP_BY_HOP {
                answer_parts.headers.remove(name);
            }
            answer_parts.headers.remove("keep-alive");
            answer_parts.headers.remove(NODE_HEADER);
            Response::from_parts(answer_parts, Body::from(body))
        }
        Err(err) => unreachable_node(node, &err).into_response(),
    }
}

/// The answer when the node that must answer cannot be asked.
fn unreachable_node(node: &NodeRecord, err: &PeerError) -> ApiError {
    if err.may_have_acted() {
        return ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "ERR_CODE_NODE_NO_ANSWER",
            "Cluster node did not answer",
            format!(
                "node {} of this cluster holds this; it was asked and did not answer ({err}), so it may or may not have done it: look before trying again",
                node.id
            ),
        );
    }
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "ERR_CODE_NODE_UNREACHABLE",
        "Cluster node unreachable",
        format!(
            "node {} of this cluster holds this, and this node cannot reach it at {}: {err}. Nothing was done; try again, or ask node {} directly",
            node.id, node.peer_address, node.id
        ),
    )
}
