//! The channel between the nodes of a cluster: HTTP/1.1 over mutual TLS 1.3. Every node
//! presents the cluster's identity (the key pair the store holds, or the files of
//! `[server] cert_file`/`key_file`) and accepts only a peer whose certificate carries the
//! same public key and who proves it holds the key, so the channel is authenticated and
//! encrypted with what the database holds and needs no secret of its own. Whoever holds
//! the key pair is a node.
//!
//! [`PeerServer`] serves a router (the API, for requests another node forwards) on the
//! peer listener, and believes [`CLIENT_ADDRESS_HEADER`] there only. [`PeerClient`] sends
//! requests to other nodes over a few kept-alive connections per node, and opens raw byte
//! streams (HTTP Upgrade) for relays.
//!
//! Bounds, each a constant below: [`MAX_INBOUND_CONNECTIONS`] connections served at once,
//! each with [`HANDSHAKE_TIMEOUT`] for its TLS handshake and [`HEADER_TIMEOUT`] for each
//! request's head, which may be [`MAX_HEAD`] bytes (bodies are the served router's to
//! bound: the API takes 64 KiB); towards each node [`MAX_CONNECTIONS_PER_PEER`] request
//! connections, [`MAX_IDLE_PER_PEER`] of them kept idle for at most [`IDLE_FOR`], each
//! request's body at most [`MAX_REQUEST_BODY`] bytes and its answer's
//! [`MAX_RESPONSE_BODY`], [`CONNECT_TIMEOUT`] to connect and [`REQUEST_TIMEOUT`] for the
//! whole exchange. Upgraded streams are not counted: their callers bound them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::header::{CONNECTION, CONTENT_TYPE, HOST, UPGRADE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rport_store::NodeRecord;
use rport_transport::tls::{ServerIdentity, TlsError};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

use super::Cluster;
use crate::config::ServerConfig;
use crate::domain::bounded::bounded_to;
use crate::net::http_serve::{Stop, accept_tls, serve_connection};

/// ALPN id: an agent that dials the peer port, or a node that dials an agent port, fails
/// in the handshake instead of talking past the other end.
pub const ALPN: &[u8] = b"rport-peer/1";
/// The peer port when `[cluster] peer_address` is not set and the store is shared.
pub const DEFAULT_PORT: u16 = 8443;

/// The address of the client a forwarded request came from, as the forwarding node
/// decided it (`auth::client_ip`). Believed on the peer listener only; the public API
/// never reads it.
pub const CLIENT_ADDRESS_HEADER: &str = "x-rport-peer-client";
/// The id of the node a request is meant for: a node that is not it answers 421, so an
/// address that leads elsewhere (a load balancer in front of all nodes) is noticed.
pub const NODE_HEADER: &str = "x-rport-peer-node";
/// Answers `{"node": ID}`: how nodes tell whether they reach each other.
pub const PING_PATH: &str = "/_peer/ping";
/// The `Upgrade` protocol of the raw streams.
pub const UPGRADE_PROTOCOL: &str = "rport-relay";

/// Connections the peer listener serves at once; more are closed at once.
pub const MAX_INBOUND_CONNECTIONS: usize = 256;
/// The longest an incoming TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A request's head must have arrived within this; a kept-alive connection idle this
/// long is closed.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request line and headers read, as the API's.
pub const MAX_HEAD: usize = crate::net::http_serve::API_MAX_HEAD;
/// Request connections open towards one node at once; a request finding them all busy
/// waits up to [`CONNECT_TIMEOUT`] for one.
pub const MAX_CONNECTIONS_PER_PEER: usize = 64;
/// Idle connections kept per node for the next requests.
pub const MAX_IDLE_PER_PEER: usize = 8;
/// An idle connection is not used after this: the other end closes it after
/// [`HEADER_TIMEOUT`], and a request must not race that.
pub const IDLE_FOR: Duration = Duration::from_secs(20);
/// TCP connect and TLS handshake towards a node.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One request from sending to the last byte of its answer, connecting included. Longer
/// than anything the API does for one request (a tunnel's port check included).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request body sent: the API's own limit is 64 KiB.
pub const MAX_REQUEST_BODY: usize = 1024 * 1024;
/// The largest answer read (one agent's live tunnels, as JSON).
pub const MAX_RESPONSE_BODY: usize = 16 * 1024 * 1024;
/// How often a node checks that it reaches the others.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);

/// Where this node's peer channel listens and what the other nodes are told to dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddress {
    pub listen: String,
    pub advertised: String,
}

/// `[cluster] peer_address`, or where it is absent and the store is shared, the host of
/// `[server] address` with [`DEFAULT_PORT`]. A SQLite store holds one node, so without
/// the key it has no peer channel. A wildcard host (`0.0.0.0`, `::`) listens on every
/// interface and is advertised as this machine's first address that is not loopback.
pub fn peer_address(config: &ServerConfig) -> Option<PeerAddress> {
    let listen = match &config.cluster.peer_address {
        Some(address) => address.clone(),
        None if matches!(
            config.database,
            rport_store::DatabaseSettings::Sqlite { .. }
        ) =>
        {
            return None;
        }
        None => {
            let host = config
                .server
                .address
                .rsplit_once(':')
                .map_or("0.0.0.0", |(host, _)| host);
            format!("{host}:{DEFAULT_PORT}")
        }
    };
    let (host, port) = listen.rsplit_once(':')?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let wildcard = bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified());
    let advertised = if wildcard {
        match this_machine_address() {
            Some(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
            Some(ip) => format!("{ip}:{port}"),
            None => {
                tracing::warn!(
                    "the peer channel listens on {listen}, but this machine has no address other nodes could dial; set [cluster] peer_address"
                );
                format!("127.0.0.1:{port}")
            }
        }
    } else {
        listen.clone()
    };
    Some(PeerAddress { listen, advertised })
}

/// The first IPv4 address that is neither loopback nor link-local, else such an IPv6 one.
fn this_machine_address() -> Option<IpAddr> {
    let addresses: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|interface| !interface.is_loopback())
        .map(|interface| interface.ip())
        .filter(|ip| match ip {
            IpAddr::V4(ip) => !ip.is_link_local() && !ip.is_unspecified(),
            IpAddr::V6(ip) => !ip.is_unicast_link_local() && !ip.is_unspecified(),
        })
        .collect();
    addresses
        .iter()
        .find(|ip| ip.is_ipv4())
        .or(addresses.first())
        .copied()
}

/// Put in the extensions of every request that came over the peer channel: the API
/// never forwards such a request again, so two nodes that disagree about who holds an
/// agent cannot pass a request back and forth.
#[derive(Debug, Clone, Copy)]
pub struct FromPeer;

/// The server end: TLS that accepts only the cluster's key, and the requests' preparation.
pub struct PeerServer {
    acceptor: TlsAcceptor,
    node_id: Arc<str>,
}

impl PeerServer {
    pub fn new(identity: &ServerIdentity, node_id: &str) -> Result<Self, TlsError> {
        Ok(Self {
            acceptor: TlsAcceptor::from(identity.peer_server_config(ALPN)?),
            node_id: node_id.into(),
        })
    }

    /// Serves `router` to the other nodes until `shutdown`; connections are spawned on
    /// `connections`, so the caller can wait for them.
    pub async fn serve(
        self,
        listener: TcpListener,
        router: axum::Router,
        shutdown: CancellationToken,
        connections: TaskTracker,
    ) {
        let permits = Arc::new(Semaphore::new(MAX_INBOUND_CONNECTIONS));
        while let Some((socket, peer)) =
            crate::net::listen::accept(&listener, &shutdown, "the peer channel").await
        {
            let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                tracing::debug!(%peer, "peer channel: {MAX_INBOUND_CONNECTIONS} connections open already; closing a new one");
                continue;
            };
            let _ = socket.set_nodelay(true);
            let acceptor = self.acceptor.clone();
            let node_id = Arc::clone(&self.node_id);
            let router = router.clone();
            let shutdown = shutdown.clone();
            connections.spawn(async move {
                let _permit = permit;
                let Some(stream) = accept_tls(&acceptor, socket, peer, HANDSHAKE_TIMEOUT).await
                else {
                    return;
                };
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let answer = answer(
                        request.map(Body::new),
                        peer,
                        Arc::clone(&node_id),
                        router.clone(),
                    );
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                serve_connection(
                    stream,
                    service,
                    &shutdown,
                    Stop::Graceful,
                    HEADER_TIMEOUT,
                    MAX_HEAD,
                )
                .await;
            });
        }
    }
}

/// One request from another node: refused if meant for another node, answered here if
/// it is a ping, else given to the router as if it came from the original client.
async fn answer(
    mut request: Request<Body>,
    tcp_peer: SocketAddr,
    node_id: Arc<str>,
    mut router: axum::Router,
) -> axum::response::Response {
    if let Some(target) = request.headers().get(NODE_HEADER)
        && target.as_bytes() != node_id.as_bytes()
    {
        let target = String::from_utf8_lossy(target.as_bytes()).into_owned();
        let detail = format!(
            "this is node {node_id}, not {}: the peer address leads to another node",
            bounded_to(&target, 256)
        );
        return envelope(
            StatusCode::MISDIRECTED_REQUEST,
            "ERR_CODE_MISDIRECTED",
            "Misdirected request",
            &detail,
            &node_id,
        );
    }
    if request.uri().path() == PING_PATH {
        let body = serde_json::json!({ "node": &*node_id }).to_string();
        return json_response(StatusCode::OK, body, &node_id);
    }
    let client = request
        .headers_mut()
        .remove(CLIENT_ADDRESS_HEADER)
        .and_then(|value| value.to_str().ok()?.trim().parse::<IpAddr>().ok());
    let address = client.map_or(tcp_peer, |ip| SocketAddr::new(ip, 0));
    request.extensions_mut().insert(ConnectInfo(address));
    request.extensions_mut().insert(FromPeer);
    match router.call(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// An error in the API's envelope, for what the peer channel answers itself.
fn envelope(
    status: StatusCode,
    code: &str,
    title: &str,
    detail: &str,
    node_id: &str,
) -> axum::response::Response {
    let body = serde_json::json!({"errors": [{"code": code, "title": title, "detail": detail}]});
    json_response(status, body.to_string(), node_id)
}

fn json_response(status: StatusCode, body: String, node_id: &str) -> axum::response::Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(id) = HeaderValue::from_str(node_id) {
        headers.insert(NODE_HEADER, id);
    }
    response
}

/// In a handler of the peer router: when the request asks for [`UPGRADE_PROTOCOL`], the
/// `101` answer to return and the stream, ready once that answer is sent.
pub fn accept_upgrade(
    request: &mut Request<Body>,
) -> Option<(axum::response::Response, PendingStream)> {
    let asked = request.headers().get(UPGRADE).is_some_and(|value| {
        value
            .as_bytes()
            .eq_ignore_ascii_case(UPGRADE_PROTOCOL.as_bytes())
    });
    if !asked {
        return None;
    }
    let pending = PendingStream(hyper::upgrade::on(request));
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("upgrade"));
    response
        .headers_mut()
        .insert(UPGRADE, HeaderValue::from_static(UPGRADE_PROTOCOL));
    Some((response, pending))
}

/// A raw byte stream to or from another node, over the peer channel's TLS.
pub type PeerStream = TokioIo<hyper::upgrade::Upgraded>;

/// The server's side of an upgrade, until its `101` is sent.
pub struct PendingStream(hyper::upgrade::OnUpgrade);
impl PendingStream {
    pub async fn ready(self) -> Result<PeerStream, PeerError> {
        self.0
            .await
            .map(TokioIo::new)
            .map_err(|err| PeerError::NoAnswer(err.to_string()))
    }
}

/// What an upgrade request came to.
pub enum Upgrade {
    /// The other node switched: bytes flow both ways.
    Stream(PeerStream),
    /// It answered something else (an error), read whole.
    Refused(Response<Bytes>),
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error(
        "it has no peer address (it runs without a peer listener: set [cluster] peer_address there)"
    )]
    NoAddress,
    /// Nothing was sent: connecting, the TLS handshake (another key), or HTTP failed.
    #[error("cannot reach it: {0}")]
    Unreachable(String),
    /// The request was sent, and no whole answer came: it may have been carried out.
    #[error("no answer from it: {0}")]
    NoAnswer(String),
    /// The address leads to another node.
    #[error("its peer address leads elsewhere: {0}")]
    Misdirected(String),
    #[error(
        "all {MAX_CONNECTIONS_PER_PEER} connections to it are busy for {} s",
        CONNECT_TIMEOUT.as_secs()
    )]
    Busy,
    #[error("request body over {MAX_REQUEST_BODY} bytes")]
    RequestTooLarge,
    #[error("its answer is over {MAX_RESPONSE_BODY} bytes")]
    ResponseTooLarge,
}

impl PeerError {
    /// Whether the request may have been carried out by the other node.
    pub fn may_have_acted(&self) -> bool {
        matches!(self, Self::NoAnswer(_))
    }

    /// Whether it says something about reaching the other node (not about one request).
    fn counts_for_reachability(&self) -> bool {
        matches!(
            self,
            Self::NoAddress | Self::Unreachable(_) | Self::NoAnswer(_) | Self::Misdirected(_)
        )
    }
}

/// Whether this node reaches another, as the last exchange with it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reachability {
    pub reachable: bool,
    /// When the last exchange went the other way.
    pub since: DateTime<Utc>,
    /// The last failure, kept after the node is reachable again.
    pub last_error: Option<String>,
}

/// The client end: connections to the other nodes, kept alive and bounded, and what they
/// found about reaching each.
pub struct PeerClient {
    connector: TlsConnector,
    peers: Mutex<HashMap<String, Arc<Peer>>>,
}

/// What this node keeps for one other node.
struct Peer {
    connections: Arc<Semaphore>,
    idle: Mutex<Vec<IdleConnection>>,
    reach: Mutex<Option<Reachability>>,
}

struct Connection {
    sender: SendRequest<Full<Bytes>>,
    /// A request connection's place among [`MAX_CONNECTIONS_PER_PEER`], given back when
    /// the connection is dropped.
    _permit: Option<OwnedSemaphorePermit>,
}

struct IdleConnection {
    connection: Connection,
    since: Instant,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl PeerClient {
    pub fn new(identity: &ServerIdentity) -> Result<Self, TlsError> {
        Ok(Self {
            connector: TlsConnector::from(identity.peer_client_config(ALPN)?),
            peers: Mutex::new(HashMap::new()),
        })
    }

    /// Sends `request` (origin-form URI: path and query) to `node` and reads its whole
    /// answer. A kept-alive connection is used when there is one.
    pub async fn request(
        &self,
        node: &NodeRecord,
        request: Request<Bytes>,
    ) -> Result<Response<Bytes>, PeerError> {
        if request.body().len() > MAX_REQUEST_BODY {
            return Err(PeerError::RequestTooLarge);
        }
        let peer = self.peer(&node.id);
        peer.timed(node, self.exchange(&peer, node, request)).await
    }

    /// Asks `node` to turn a new connection into a raw byte stream ([`UPGRADE_PROTOCOL`]),
    /// answered by a handler of its peer router that calls [`accept_upgrade`].
    pub async fn upgrade(
        &self,
        node: &NodeRecord,
        request: Request<()>,
    ) -> Result<Upgrade, PeerError> {
        let peer = self.peer(&node.id);
        let attempt = async {
            let mut connection = self.connect(node, None).await?;
            let mut request = outgoing(node, request.map(|()| Bytes::new()));
            let headers = request.headers_mut();
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(UPGRADE, HeaderValue::from_static(UPGRADE_PROTOCOL));
            let response = connection
                .sender
                .send_request(request)
                .await
                .map_err(|err| sending_failed(&err))?;
            if response.status() != StatusCode::SWITCHING_PROTOCOLS {
                return read_whole(response).await.map(Upgrade::Refused);
            }
            let upgraded = hyper::upgrade::on(response)
                .await
                .map_err(|err| PeerError::NoAnswer(err.to_string()))?;
            Ok(Upgrade::Stream(TokioIo::new(upgraded)))
        };
        peer.timed(node, attempt).await
    }

    /// Whether `node` answers, and that it is that node; remembered for
    /// [`PeerClient::reachability`].
    pub async fn ping(&self, node: &NodeRecord) -> Result<(), PeerError> {
        let request = Request::get(PING_PATH)
            .body(Bytes::new())
            .map_err(|err| PeerError::Unreachable(err.to_string()))?;
        let response = self.request(node, request).await?;
        if response.status() == StatusCode::OK {
            Ok(())
        } else {
            let peer = self.peer(&node.id);
            let err = PeerError::Unreachable(format!("its ping answered {}", response.status()));
            peer.note(node, Some(&err));
            Err(err)
        }
    }

    /// What the exchanges with node `id` found; `None` before the first.
    pub fn reachability(&self, id: &str) -> Option<Reachability> {
        let peer = lock(&self.peers).get(id).cloned()?;
        lock(&peer.reach).clone()
    }

    /// Pings every other live node every [`PROBE_EVERY`] until `shutdown`, so that the
    /// log and `/api/v1/status` say which ones this node cannot reach before a request
    /// needs them. Forgets nodes that left the list.
    pub async fn watch(self: Arc<Self>, cluster: Arc<Cluster>, shutdown: CancellationToken) {
        loop {
            let nodes = cluster.nodes();
            let others: Vec<&NodeRecord> = nodes
                .iter()
                .filter(|node| node.alive && node.id != cluster.node_id())
                .collect();
            let pings = others.iter().map(|node| async {
                // The outcome is remembered and logged where it changes.
                let _ = self.ping(node).await;
            });
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = futures_util::future::join_all(pings) => {}
            }
            lock(&self.peers).retain(|id, _| nodes.iter().any(|node| node.id == *id));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(PROBE_EVERY) => {}
            }
        }
    }

    fn peer(&self, id: &str) -> Arc<Peer> {
        let mut peers = lock(&self.peers);
        Arc::clone(peers.entry(id.to_owned()).or_insert_with(|| {
            Arc::new(Peer {
                connections: Arc::new(Semaphore::new(MAX_CONNECTIONS_PER_PEER)),
                idle: Mutex::new(Vec::new()),
                reach: Mutex::new(None),
            })
        }))
    }

    async fn exchange(
        &self,
        peer: &Peer,
        node: &NodeRecord,
        request: Request<Bytes>,
    ) -> Result<Response<Bytes>, PeerError> {
        let mut request = outgoing(node, request);
        while let Some(mut idle) = peer.take_idle() {
            match idle.connection.sender.try_send_request(request).await {
                Ok(response) => return peer.finish(idle.connection, response).await,
                Err(mut err) => match err.take_message() {
                    // The connection closed before the request left: try the next one.
                    Some(unsent) => request = unsent,
                    None => return Err(sending_failed(err.error())),
                },
            }
        }
        let permit = tokio::time::timeout(
            CONNECT_TIMEOUT,
            Arc::clone(&peer.connections).acquire_owned(),
        )
        .await
        .map_err(|_| PeerError::Busy)?
        .map_err(|_| PeerError::Busy)?;
        let mut connection = self.connect(node, Some(permit)).await?;
        match connection.sender.send_request(request).await {
            Ok(response) => peer.finish(connection, response).await,
            Err(err) => Err(sending_failed(&err)),
        }
    }

    async fn connect(
        &self,
        node: &NodeRecord,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<Connection, PeerError> {
        if node.peer_address.is_empty() {
            return Err(PeerError::NoAddress);
        }
        let handshake = async {
            let tcp = TcpStream::connect(&node.peer_address)
                .await
                .map_err(|err| format!("connecting to {}: {err}", node.peer_address))?;
            let _ = tcp.set_nodelay(true);
            let tls = self
                .connector
                .connect(rport_transport::tls::server_name(), tcp)
                .await
                .map_err(|err| format!("TLS with {}: {err}", node.peer_address))?;
            hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|err| err.to_string())
        };
        let (sender, connection) = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
            .await
            .map_err(|_| {
                PeerError::Unreachable(format!(
                    "{}: no connection within {} s",
                    node.peer_address,
                    CONNECT_TIMEOUT.as_secs()
                ))
            })?
            .map_err(PeerError::Unreachable)?;
        tokio::spawn(async move {
            if let Err(err) = connection.with_upgrades().await {
                tracing::debug!("peer connection ended: {err}");
            }
        });
        Ok(Connection {
            sender,
            _permit: permit,
        })
    }
}

impl Peer {
    /// Runs one exchange with the node within [`REQUEST_TIMEOUT`], and remembers what it
    /// found.
    async fn timed<T>(
        &self,
        node: &NodeRecord,
        exchange: impl Future<Output = Result<T, PeerError>>,
    ) -> Result<T, PeerError> {
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(PeerError::NoAnswer(format!(
                    "no answer within {} s",
                    REQUEST_TIMEOUT.as_secs()
                )))
            });
        self.note(node, outcome.as_ref().err());
        outcome
    }

    /// The most recently used idle connection that may still be open.
    fn take_idle(&self) -> Option<IdleConnection> {
        let mut idle = lock(&self.idle);
        while let Some(candidate) = idle.pop() {
            if candidate.since.elapsed() < IDLE_FOR && !candidate.connection.sender.is_closed() {
                return Some(candidate);
            }
        }
        None
    }

    /// Reads the answer whole, then keeps the connection for the next request.
    async fn finish(
        &self,
        connection: Connection,
        response: Response<Incoming>,
    ) -> Result<Response<Bytes>, PeerError> {
        let response = read_whole(response).await?;
        if response.status() == StatusCode::MISDIRECTED_REQUEST
            && response.headers().contains_key(NODE_HEADER)
        {
            let text = String::from_utf8_lossy(response.body());
            return Err(PeerError::Misdirected(bounded_to(&text, 512).into_owned()));
        }
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE_PER_PEER && !connection.sender.is_closed() {
            idle.push(IdleConnection {
                connection,
                since: Instant::now(),
            });
        }
        Ok(response)
    }

    /// Remembers what an exchange found, and logs where that changes.
    fn note(&self, node: &NodeRecord, error: Option<&PeerError>) {
        if error.is_some_and(|err| !err.counts_for_reachability()) {
            return;
        }
        let now = Utc::now();
        let mut reach = lock(&self.reach);
        let was = reach.as_ref().map(|r| r.reachable);
        let last_error = reach.as_ref().and_then(|r| r.last_error.clone());
        match error {
            None => {
                if was == Some(false) {
                    tracing::info!(
                        "node {} of this cluster is reachable again at {}",
                        node.id,
                        node.peer_address
                    );
                }
                if was != Some(true) {
                    *reach = Some(Reachability {
                        reachable: true,
                        since: now,
                        last_error,
                    });
                }
            }
            Some(err) => {
                let text = err.to_string();
                if was != Some(false) {
                    tracing::warn!(
                        "this node cannot reach node {} of this cluster at {}: {text}; requests for its agents answer 503 until it can",
                        node.id,
                        node.peer_address
                    );
                }
                let since = match reach.as_ref() {
                    Some(r) if !r.reachable => r.since,
                    _ => now,
                };
                *reach = Some(Reachability {
                    reachable: false,
                    since,
                    last_error: Some(text),
                });
            }
        }
    }
}

/// The request as it goes out: meant for `node`, with a `Host`.
fn outgoing(node: &NodeRecord, request: Request<Bytes>) -> Request<Full<Bytes>> {
    let mut request = request.map(Full::new);
    let headers = request.headers_mut();
    if let Ok(id) = HeaderValue::from_str(&node.id) {
        headers.insert(NODE_HEADER, id);
    }
    if !headers.contains_key(HOST)
        && let Ok(host) = HeaderValue::from_str(&node.peer_address)
    {
        headers.insert(HOST, host);
    }
    request
}

/// A request that failed on a connection: refused in the TLS handshake (the other end
/// judges this node's certificate after this end thinks it is through) means nothing was
/// carried out; anything else may have been.
fn sending_failed(err: &hyper::Error) -> PeerError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if cause.downcast_ref::<rustls::Error>().is_some() {
            return PeerError::Unreachable(format!("TLS: {cause}"));
        }
        source = cause.source();
    }
    PeerError::NoAnswer(err.to_string())
}

async fn read_whole(response: Response<Incoming>) -> Result<Response<Bytes>, PeerError> {
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_RESPONSE_BODY)
        .collect()
        .await
        .map_err(|err| {
            if err.is::<http_body_util::LengthLimitError>() {
                PeerError::ResponseTooLarge
            } else {
                PeerError::NoAnswer(err.to_string())
            }
        })?
        .to_bytes();
    Ok(Response::from_parts(parts, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use rport_transport::tls::IdentityPem;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn identity() -> ServerIdentity {
        ServerIdentity::from_pem(&IdentityPem::generate().expect("generate"), "test")
            .expect("identity")
    }

    fn node(id: &str, address: SocketAddr) -> NodeRecord {
        NodeRecord {
            id: id.to_owned(),
            peer_address: address.to_string(),
            public_host: format!("{id}.example"),
            api_address: String::new(),
            started_at: Utc::now(),
            lease_until: Utc::now(),
            alive: true,
        }
    }

    /// Says where the request came from, as the router sees it.
    async fn whoami(request: Request<Body>) -> String {
        let address = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip().to_string())
            .unwrap_or_default();
        let from_peer = request.extensions().get::<FromPeer>().is_some();
        let header = request.headers().contains_key(CLIENT_ADDRESS_HEADER);
        format!("{address} from_peer={from_peer} header_left={header}")
    }

    async fn echo_relay(mut request: Request<Body>) -> axum::response::Response {
        let Some((response, pending)) = accept_upgrade(&mut request) else {
            return envelope(StatusCode::BAD_REQUEST, "ERR", "No upgrade", "upgrade", "x");
        };
        tokio::spawn(async move {
            if let Ok(mut stream) = pending.ready().await {
                let mut buf = vec![0u8; 1024];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        response
    }

    /// A peer server with `identity` as node `id`, serving the test routes.
    async fn serve(identity: &ServerIdentity, id: &str) -> (SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let router = axum::Router::new()
            .route("/whoami", get(whoami))
            .route("/relay", get(echo_relay));
        let stop = CancellationToken::new();
        let server = PeerServer::new(identity, id).expect("server");
        tokio::spawn(server.serve(listener, router, stop.clone(), TaskTracker::new()));
        (address, stop)
    }

    fn get_request(path: &str) -> Request<Bytes> {
        Request::get(path).body(Bytes::new()).expect("request")
    }

    #[tokio::test]
    async fn a_node_with_the_same_key_is_served_and_its_client_address_believed() {
        let shared = identity();
        let (address, _stop) = serve(&shared, "b").await;
        let client = PeerClient::new(&shared).expect("client");
        let b = node("b", address);
        let mut request = get_request("/whoami");
        request.headers_mut().insert(
            CLIENT_ADDRESS_HEADER,
            HeaderValue::from_static("203.0.113.7"),
        );
        let answer = client.request(&b, request).await.expect("answer");
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(
            answer.body(),
            "203.0.113.7 from_peer=true header_left=false"
        );
        // Without the header, the TCP peer.
        let answer = client
            .request(&b, get_request("/whoami"))
            .await
            .expect("answer");
        assert_eq!(answer.body(), "127.0.0.1 from_peer=true header_left=false");
        // Both went over one kept-alive connection.
        assert_eq!(lock(&client.peer("b").idle).len(), 1);
        client.ping(&b).await.expect("ping");
        let reach = client.reachability("b").expect("known");
        assert!(reach.reachable && reach.last_error.is_none(), "{reach:?}");
    }

    #[tokio::test]
    async fn a_node_with_another_key_is_refused_both_ways() {
        let (ours, theirs) = (identity(), identity());
        let (address, _stop) = serve(&ours, "b").await;
        let impostor = PeerClient::new(&theirs).expect("client");
        let err = impostor
            .request(&node("b", address), get_request("/whoami"))
            .await
            .expect_err("another key");
        assert!(matches!(err, PeerError::Unreachable(_)), "{err}");
        assert!(!err.may_have_acted(), "{err}");
        let reach = impostor.reachability("b").expect("known");
        assert!(!reach.reachable, "{reach:?}");
        assert!(reach.last_error.is_some_and(|e| e.contains("TLS")));

        let (address, _stop) = serve(&theirs, "c").await;
        let err = PeerClient::new(&ours)
            .expect("client")
            .request(&node("c", address), get_request("/whoami"))
            .await
            .expect_err("another key");
        assert!(matches!(err, PeerError::Unreachable(_)), "{err}");
    }

    #[tokio::test]
    async fn an_address_that_leads_to_another_node_is_noticed() {
        let shared = identity();
        let (address, _stop) = serve(&shared, "b").await;
        let client = PeerClient::new(&shared).expect("client");
        let err = client
            .request(&node("c", address), get_request("/whoami"))
            .await
            .expect_err("misdirected");
        assert!(matches!(err, PeerError::Misdirected(_)), "{err}");
        assert!(err.to_string().contains("this is node b, not c"), "{err}");
    }

    #[tokio::test]
    async fn a_node_that_does_not_listen_is_unreachable_and_said_so_once() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        drop(listener);
        let client = PeerClient::new(&identity()).expect("client");
        let gone = node("gone", address);
        for _ in 0..2 {
            let err = client.ping(&gone).await.expect_err("nobody listens");
            assert!(matches!(err, PeerError::Unreachable(_)), "{err}");
        }
        let reach = client.reachability("gone").expect("known");
        assert!(!reach.reachable);
        let mut no_address = gone.clone();
        no_address.peer_address.clear();
        let err = client.ping(&no_address).await.expect_err("no address");
        assert!(matches!(err, PeerError::NoAddress), "{err}");
    }

    #[tokio::test]
    async fn an_upgraded_stream_carries_bytes_both_ways() {
        let shared = identity();
        let (address, _stop) = serve(&shared, "b").await;
        let client = PeerClient::new(&shared).expect("client");
        let request = Request::get("/relay").body(()).expect("request");
        let Upgrade::Stream(mut stream) = client
            .upgrade(&node("b", address), request)
            .await
            .expect("upgrade")
        else {
            panic!("refused");
        };
        stream.write_all(b"through the relay").await.expect("write");
        let mut got = [0u8; 17];
        stream.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"through the relay");

        let request = Request::get("/whoami").body(()).expect("request");
        let Upgrade::Refused(answer) = client
            .upgrade(&node("b", address), request)
            .await
            .expect("answer")
        else {
            panic!("a plain route cannot upgrade");
        };
        assert_eq!(answer.status(), StatusCode::OK);
    }

    #[test]
    fn the_peer_address_defaults_to_none_on_sqlite_and_a_wildcard_is_advertised_as_this_machine() {
        let parse = |text: &str| ServerConfig::from_toml_str(text, "t.conf").expect("config");
        assert_eq!(peer_address(&parse("")), None);
        let explicit = peer_address(&parse("[cluster]\npeer_address = \"10.1.2.3:9000\"\n"));
        assert_eq!(
            explicit,
            Some(PeerAddress {
                listen: "10.1.2.3:9000".into(),
                advertised: "10.1.2.3:9000".into()
            })
        );
        let wildcard =
            peer_address(&parse("[cluster]\npeer_address = \"0.0.0.0:9000\"\n")).expect("some");
        assert_eq!(wildcard.listen, "0.0.0.0:9000");
        assert!(wildcard.advertised.ends_with(":9000"), "{wildcard:?}");
        assert!(!wildcard.advertised.starts_with("0.0.0.0"), "{wildcard:?}");
    }
}
