//! Serving HTTP/1.1 on accepted connections, plain or TLS: bounded TLS handshakes and
//! header reads (a slow client cannot hold a connection open for ever), upgrades, and a
//! graceful end. Used by the API and by the tunnel proxy.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

/// The longest a TLS handshake on the API may take; `[api] read_header_timeout` can make
/// it shorter.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A request's headers must have arrived within this, unless configured otherwise.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request line and headers the API reads; past it hyper answers 431 and
/// closes the connection. An API request carries at most a token or basic credentials
/// (under 1 KiB), so this leaves room for proxies' headers and bounds what a name or a
/// token can be before any handler sees it.
pub const API_MAX_HEAD: usize = 64 * 1024;
/// The same for HTTP proxy tunnels: hyper's default (about 408 KiB), as a device's web
/// application may expect large cookies.
pub const PROXY_MAX_HEAD: usize = 8192 + 4096 * 100;

/// How a connection ends when `stop` is cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Requests in flight finish; then the connection closes (server shutdown).
    Graceful,
    /// The connection is dropped at once (its tunnel was closed).
    Abort,
}

/// Serves one connection until it ends or `stop` is cancelled. A request whose headers
/// take longer than `header_timeout` (a slowloris client) ends the connection, and so does
/// a keep-alive connection idle that long; one whose request line and headers exceed
/// `max_head` bytes is answered 431 and the connection closed.
pub async fn serve_connection<I, S, B>(
    io: I,
    service: S,
    stop: &CancellationToken,
    how: Stop,
    header_timeout: Duration,
    max_head: usize,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<hyper::Request<Incoming>, Response = hyper::Response<B>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(max_head)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stop.cancelled() => match how {
            Stop::Abort => return,
            Stop::Graceful => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        },
    };
    if let Err(err) = result {
        tracing::debug!("HTTP connection ended: {err}");
    }
}

/// TLS handshake within `timeout`; `None` (logged) when it fails. Without the bound a
/// client that connects and says nothing would hold a descriptor and a task for ever.
pub async fn accept_tls<I>(
    acceptor: &TlsAcceptor,
    io: I,
    peer: SocketAddr,
    timeout: Duration,
) -> Option<tokio_rustls::server::TlsStream<I>>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(timeout, acceptor.accept(io)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(err)) => {
            tracing::debug!(%peer, "TLS handshake failed: {err}");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// Serves the API router on `listener`, over TLS when `tls` is given, until `shutdown`.
/// Connections are spawned on `connections`, so the caller can wait for them to finish.
pub async fn serve_api(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: axum::Router,
    header_timeout: Duration,
    shutdown: CancellationToken,
    connections: TaskTracker,
) {
    while let Some((socket, peer)) =
        crate::net::listen::accept(&listener, &shutdown, "the API").await
    {
        let _ = socket.set_nodelay(true);
        let router = router.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let service =
                hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                    // What `into_make_service_with_connect_info` would add: handlers read the
                    // peer address from it.
                    request.extensions_mut().insert(ConnectInfo(peer));
                    let mut router = router.clone();
                    async move { router.call(request.map(axum::body::Body::new)).await }
                });
            match tls {
                None => {
                    serve_connection(
                        socket,
                        service,
                        &shutdown,
                        Stop::Graceful,
                        header_timeout,
                        API_MAX_HEAD,
                    )
                    .await;
                }
                Some(acceptor) => {
                    let handshake_timeout = header_timeout.min(HANDSHAKE_TIMEOUT);
                    if let Some(stream) =
                        accept_tls(&acceptor, socket, peer, handshake_timeout).await
                    {
                        serve_connection(
                            stream,
                            service,
                            &shutdown,
                            Stop::Graceful,
                            header_timeout,
                            API_MAX_HEAD,
                        )
                        .await;
                    }
                }
            }
        });
    }
}
