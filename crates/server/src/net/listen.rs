//! TCP listeners with an accept queue sized for bursts: thousands of agents reconnecting
//! after a restart, or a client opening a thousand tunneled connections at once. The
//! usual default of 128 overflows under such bursts, and the kernel then drops
//! handshakes that clients only retry seconds later, or never complete. And the accept
//! loop every listener of rportd shares, and the buffer caps of public tunnel sockets.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// Connections the kernel may queue before we accept them (capped by `somaxconn`).
const BACKLOG: u32 = 4096;

/// Binds `host:port` (an address or a name, resolved once) with [`BACKLOG`].
pub async fn bind(host: &str, port: u16) -> io::Result<TcpListener> {
    let mut last_error = None;
    for address in tokio::net::lookup_host((host, port)).await? {
        match bind_address(address) {
            Ok(listener) => return Ok(listener),
            Err(err) => last_error = Some(err),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("{host} has no address"),
        )
    }))
}

/// Binds `host:port` written as one string (`0.0.0.0:8080`, `[::1]:3000`, `name:80`).
pub async fn bind_str(address: &str) -> io::Result<TcpListener> {
    let (host, port) = address
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{address:?} is not HOST:PORT"),
            )
        })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    bind(host, port).await
}

/// Binds one address with [`BACKLOG`]; nothing to resolve.
pub fn bind_address(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // As every server does: a restart must not wait for old connections' TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(BACKLOG)
}

/// The next connection on `listener`, or `None` once `stop` is cancelled. Accept errors
/// (out of file descriptors and the like) are logged and retried after a short pause
/// instead of spinning; `what` names the listener in the log.
pub async fn accept(
    listener: &TcpListener,
    stop: &tokio_util::sync::CancellationToken,
    what: &str,
) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => return Some(accepted),
                Err(err) => {
                    tracing::warn!("accepting on {what}: {err}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Unsent bytes the kernel keeps for a public tunnel socket (`TCP_NOTSENT_LOWAT`): a
/// client that stops reading makes rportd's socket hold this much plus one segment, and
/// the rest waits in the stream's window (see docs/security.md).
pub const PUBLIC_NOTSENT_LOWAT: u32 = 64 * 1024;
/// `SO_SNDBUF` and `SO_RCVBUF` of a public tunnel socket, as asked of the kernel (it
/// doubles them for its own bookkeeping): 2 MiB a round trip keeps one stream at about
/// 100 MB/s to a client 20 ms away. It bounds what a client that withholds ACKs (or sends
/// while the device does not read) can make the socket hold.
pub const PUBLIC_SOCKET_BUFFER: usize = 1024 * 1024;

/// Caps what the kernel may buffer for an accepted public tunnel connection. Without
/// this, autotuning grows a socket's send buffer to `tcp_wmem`'s maximum (4 MiB or more)
/// for a client that never reads; a few thousand such clients fill the machine's TCP
/// memory, and every connection of the machine slows down. Fixed sizes also turn off
/// autotuning, so the cap holds for the connection's life. Best effort: a socket that
/// refuses an option still works, only uncapped.
pub fn cap_public_buffers(socket: &tokio::net::TcpStream) {
    let socket = socket2::SockRef::from(socket);
    let results = [
        socket.set_send_buffer_size(PUBLIC_SOCKET_BUFFER),
        socket.set_recv_buffer_size(PUBLIC_SOCKET_BUFFER),
        socket.set_tcp_notsent_lowat(PUBLIC_NOTSENT_LOWAT),
    ];
    if let Some(Err(err)) = results.into_iter().find(Result::is_err) {
        tracing::debug!("capping a public socket's buffers: {err}");
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn binds_addresses_names_and_ipv6() {
        let v4 = super::bind_str("127.0.0.1:0").await.expect("v4");
        assert!(v4.local_addr().expect("addr").is_ipv4());
        let name = super::bind("localhost", 0).await.expect("name");
        assert!(name.local_addr().expect("addr").ip().is_loopback());
        if let Ok(v6) = super::bind_str("[::1]:0").await {
            assert!(v6.local_addr().expect("addr").is_ipv6());
        }
        assert!(super::bind_str("no-port").await.is_err());
    }
}
