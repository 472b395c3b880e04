//! HTTP proxy tunnels: rportd ends TLS on the public side and forwards each request
//! through the agent to the device's web server (plain HTTP, or HTTPS without checking the
//! device's certificate), with an optional `Host` rewrite and HTTP basic auth in front.
//! WebSocket upgrades and streamed bodies pass through untouched.
//!
//! Each public connection gets its own connection to the device, opened at its first
//! request and used for the requests that follow, so keep-alive works end to end.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rand::Rng;
use rustls::pki_types::ServerName;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;

pub mod request;
mod shared_port;

pub use shared_port::Arrival;

/// A connection's two directions, whatever carries it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Carries a proxy connection to the node of the cluster that holds its tunnel.
#[async_trait::async_trait]
pub trait ProxyRelay: Send + Sync {
    /// Sends `first` (what was read of the connection so far) and then everything else
    /// both ways between `io` and node `node`'s shared proxy port, as if `peer` had
    /// connected there.
    async fn relay(&self, node: &str, io: Box<dyn Io>, first: Vec<u8>, peer: SocketAddr);
}

use super::{ActiveTunnel, TunnelManager};
use crate::domain::secrets::verify_password;
use crate::net::http_serve::{self, Stop};
use request::DeviceRequestRules;

/// How long a request waits for an agent that is away (grace period) to come back.
const AGENT_WAIT: Duration = Duration::from_secs(5);
/// Bytes buffered between the device connection's HTTP client and its tunnel stream.
const DEVICE_BUFFER: usize = 256 * 1024;
/// How long a verified basic-auth password is remembered, so browsers sending it with
/// every request do not pay an argon2 hash each time.
const VERIFIED_TTL: Duration = Duration::from_secs(300);

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// What a proxy tunnel does with requests; fixed when the tunnel is made.
pub(super) struct ProxyOptions {
    /// The device speaks HTTPS.
    pub target_tls: bool,
    pub host_header: Option<HeaderValue>,
    pub auth: Option<BasicAuth>,
    /// The name to send in SNI to the device.
    pub device_name: ServerName<'static>,
}

pub(super) struct BasicAuth {
    user: String,
    hash: String,
    /// Process-local key for the cache of verified passwords.
    cache_key: [u8; 32],
    verified: Mutex<HashMap<[u8; 32], std::time::Instant>>,
}

impl BasicAuth {
    pub fn new(user: String, hash: String) -> Self {
        Self {
            user,
            hash,
            cache_key: rand::rng().random(),
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the request's `Authorization` carries this user and password.
    async fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(crate::auth::credentials::Credentials::Basic(user, password)) =
            crate::auth::credentials::credentials(headers)
        else {
            return false;
        };
        if user != self.user {
            return false;
        }
        let digest: [u8; 32] = Sha256::new()
            .chain_update(self.cache_key)
            .chain_update(password.as_bytes())
            .finalize()
            .into();
        if let Ok(verified) = self.verified.lock()
            && verified
                .get(&digest)
                .is_some_and(|at| at.elapsed() < VERIFIED_TTL)
        {
            return true;
        }
        let hash = self.hash.clone();
        let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .unwrap_or(false);
        if ok && let Ok(mut verified) = self.verified.lock() {
            verified.retain(|_, at| at.elapsed() < VERIFIED_TTL);
            verified.insert(digest, std::time::Instant::now());
        }
        ok
    }
}

/// One public connection of a proxy tunnel.
struct Connection {
    manager: Arc<TunnelManager>,
    tunnel: Arc<ActiveTunnel>,
    options: Arc<ProxyOptions>,
    peer: SocketAddr,
    /// On the shared port: the host name this connection was routed by; requests for any
    /// other host get 404, never another tunnel.
    routed_host: Option<String>,
    device: tokio::sync::Mutex<Option<SendRequest<Incoming>>>,
    /// Byte counters of the tunnel streams this connection used.
    counters: Mutex<Vec<rport_transport::mux::CounterHandle>>,
}

/// TLS on an accepted public connection, then [`serve`].
pub(super) async fn serve_tls(
    manager: Arc<TunnelManager>,
    tunnel: Arc<ActiveTunnel>,
    options: Arc<ProxyOptions>,
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
) {
    let timeout = manager.proxy.handshake_timeout;
    match http_serve::accept_tls(&acceptor, socket, peer, timeout).await {
        Some(stream) => serve(manager, tunnel, options, stream, peer, None).await,
        None => tunnel.connection_closed(peer.ip(), 0, 0),
    }
}

/// Serves HTTP on a public connection (TLS already done) until it ends or the tunnel
/// closes; counts it as one connection of the tunnel.
pub(super) async fn serve<I>(
    manager: Arc<TunnelManager>,
    tunnel: Arc<ActiveTunnel>,
    options: Arc<ProxyOptions>,
    io: I,
    peer: SocketAddr,
    routed_host: Option<String>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let cancel: CancellationToken = tunnel.cancel.clone();
    let header_timeout = manager.proxy.header_timeout;
    let connection = Arc::new(Connection {
        manager,
        tunnel: Arc::clone(&tunnel),
        options,
        peer,
        routed_host,
        device: tokio::sync::Mutex::new(None),
        counters: Mutex::new(Vec::new()),
    });
    let handler = Arc::clone(&connection);
    let service = hyper::service::service_fn(move |request| {
        let connection = Arc::clone(&handler);
        async move { Ok::<_, std::convert::Infallible>(connection.handle(request).await) }
    });
    http_serve::serve_connection(
        io,
        service,
        &cancel,
        Stop::Abort,
        header_timeout,
        http_serve::PROXY_MAX_HEAD,
    )
    .await;
    let (sent, received) = connection
        .counters
        .lock()
        .map(|counters| {
            counters.iter().fold((0, 0), |(s, r), c| {
                let counted = c.get();
                (s + counted.bytes_sent, r + counted.bytes_received)
            })
        })
        .unwrap_or_default();
    tunnel.connection_closed(peer.ip(), sent, received);
}

/// Answers every request on `io` with 404 "unknown host": a name that routes to no tunnel.
pub(super) async fn serve_unknown_host<I>(io: I, header_timeout: Duration)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(|_request| async {
        Ok::<_, std::convert::Infallible>(plain(StatusCode::NOT_FOUND, "unknown host"))
    });
    let never = CancellationToken::new();
    http_serve::serve_connection(
        io,
        service,
        &never,
        Stop::Abort,
        header_timeout,
        http_serve::PROXY_MAX_HEAD,
    )
    .await;
}

fn plain(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(format!("{text}\n")))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn too_many_failures(remaining: Duration) -> Response<ProxyBody> {
    let secs = remaining.as_secs().max(1);
    let mut response = plain(
        StatusCode::TOO_MANY_REQUESTS,
        &format!("too many failed logins from this address; try again in {secs} s"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

impl Connection {
    async fn handle(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        let (mut parts, body) = request.into_parts();
        if let Some(routed) = &self.routed_host
            && request::request_host(&parts.headers, &parts.uri).as_deref() != Some(routed.as_str())
        {
            return plain(StatusCode::NOT_FOUND, "unknown host");
        }
        if let Some(auth) = &self.options.auth {
            let bans = &self.manager.proxy.auth_bans;
            let key = format!(
                "proxy:{}",
                crate::domain::source::source_key(self.peer.ip())
            );
            if let Some(remaining) = bans.banned_for(&key) {
                return too_many_failures(remaining);
            }
            if !auth.allows(&parts.headers).await {
                // Only a wrong password counts, not a browser's first request without one.
                if parts.headers.contains_key(header::AUTHORIZATION)
                    && let Some(remaining) = bans.record_failure(&key)
                {
                    tracing::warn!(tunnel = %self.tunnel.id(), peer = %self.peer, "proxy basic auth failed too often; address banned for {}s", remaining.as_secs());
                    return too_many_failures(remaining);
                }
                let mut response = plain(StatusCode::UNAUTHORIZED, "authentication required");
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"rport tunnel\""),
                );
                return response;
            }
            bans.record_success(&key);
        }
        let rules = DeviceRequestRules {
            host_header: self.options.host_header.as_ref(),
            drop_authorization: self.options.auth.is_some(),
            peer: self.peer.ip(),
        };
        let upgrade = match request::for_device(&mut parts, rules) {
            Ok(upgrade) => upgrade,
            Err(err) => return plain(StatusCode::BAD_REQUEST, &err.to_string()),
        };
        let mut request = Request::from_parts(parts, body);
        let public_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));

        let mut device = self.device.lock().await;
        let reusable = match device.take() {
            Some(mut sender) => sender.ready().await.is_ok().then_some(sender),
            None => None,
        };
        let mut sender = match reusable {
            Some(sender) => sender,
            None => match self.connect_device().await {
                Ok(sender) => sender,
                Err(reason) => {
                    tracing::debug!(tunnel = %self.tunnel.id(), "proxy: {reason}");
                    return plain(StatusCode::BAD_GATEWAY, &reason);
                }
            },
        };
        let mut response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(err) => {
                tracing::debug!(tunnel = %self.tunnel.id(), "proxy: device request failed: {err}");
                return plain(
                    StatusCode::BAD_GATEWAY,
                    &format!("the device's web server did not answer: {err}"),
                );
            }
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            // This device connection now belongs to the upgraded protocol.
            if let Some(public_upgrade) = public_upgrade {
                let device_upgrade = hyper::upgrade::on(&mut response);
                let cancel = self.tunnel.cancel.clone();
                tokio::spawn(async move {
                    let (Ok(public), Ok(device)) = tokio::join!(public_upgrade, device_upgrade)
                    else {
                        return;
                    };
                    let mut public = TokioIo::new(public);
                    let mut device = TokioIo::new(device);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut public, &mut device) => {}
                        _ = cancel.cancelled() => {}
                    }
                });
            }
        } else {
            *device = Some(sender);
            request::for_client(response.headers_mut());
        }
        response.map(BodyExt::boxed)
    }

    /// A new HTTP connection to the device through a tunnel stream.
    async fn connect_device(&self) -> Result<SendRequest<Incoming>, String> {
        let session = self
            .manager
            .session_for(&self.tunnel, AGENT_WAIT)
            .await
            .ok_or("the device's agent is not connected")?;
        let stream = session
            .handle
            .open_stream(Bytes::from(self.tunnel.open.to_json()))
            .map_err(|err| format!("opening a stream to the agent: {err}"))?;
        if let Ok(mut counters) = self.counters.lock() {
            counters.push(stream.counter_handle());
        }
        let (near, far) = tokio::io::duplex(DEVICE_BUFFER);
        tokio::spawn(async move {
            let _ = rport_transport::mux::pipe(stream, far).await;
        });
        let builder = hyper::client::conn::http1::Builder::new();
        let fail = |err: hyper::Error| format!("talking HTTP to the device: {err}");
        if self.options.target_tls {
            let connector = TlsConnector::from(Arc::clone(&self.manager.proxy.device_tls));
            let tls = connector
                .connect(self.options.device_name.clone(), near)
                .await
                .map_err(|err| format!("TLS to the device failed: {err}"))?;
            let (sender, connection) = builder.handshake(TokioIo::new(tls)).await.map_err(fail)?;
            tokio::spawn(connection.with_upgrades());
            Ok(sender)
        } else {
            let (sender, connection) = builder.handshake(TokioIo::new(near)).await.map_err(fail)?;
            tokio::spawn(connection.with_upgrades());
            Ok(sender)
        }
    }
}

/// A fresh subdomain label: 16 lower-case letters and digits.
pub(super) fn new_subdomain() -> String {
    crate::domain::secrets::random_string(b"abcdefghijklmnopqrstuvwxyz0123456789", 16)
}

/// The name to send in SNI: the `Host` override or the target, when it is a name.
pub(super) fn device_name(host_header: Option<&str>, target: &str) -> ServerName<'static> {
    let host = host_header
        .map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name))
        .unwrap_or(target);
    ServerName::try_from(host.to_owned())
        .or_else(|_| ServerName::try_from(target.to_owned()))
        .unwrap_or(ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains_are_dns_labels() {
        let label = new_subdomain();
        assert_eq!(label.len(), 16);
        assert!(
            label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert_ne!(label, new_subdomain());
    }
}
