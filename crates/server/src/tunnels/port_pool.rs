//! Public ports for tunnels: which are free is known in-process, and a bind that still
//! fails (another program took the port) just moves on to the next candidate. No scan of
//! the system's sockets, which made RPort slow and flaky ("no ports available").

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use rand::Rng;
use rport_protocol::tunnel_spec::TunnelProtocol;
use tokio::net::{TcpListener, UdpSocket};

use crate::config::port_ranges::PortRanges;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("local port {0} is not among the allowed ports (used_ports minus excluded_ports)")]
    NotAllowed(u16),
    #[error("local port {0} is already in use")]
    InUse(u16),
    #[error("no free port left among the allowed ports")]
    Exhausted,
    #[error(
        "local host {0:?} is not an IP address: give one (0.0.0.0, 127.0.0.1, [::1]); rportd looks up no names for tunnels"
    )]
    NotAnAddress(String),
    #[error("binding {host}:{port}: {source}")]
    Bind {
        host: String,
        port: u16,
        source: io::Error,
    },
}

pub struct PortPool {
    allowed: PortRanges,
    taken: Mutex<HashSet<u16>>,
}

/// Random picks before falling back to a full pass over the allowed ports.
const RANDOM_ATTEMPTS: usize = 32;

impl PortPool {
    pub fn new(allowed: PortRanges) -> Self {
        Self {
            allowed,
            taken: Mutex::new(HashSet::new()),
        }
    }

    fn reserve(&self, port: u16) -> bool {
        self.taken
            .lock()
            .map(|mut taken| taken.insert(port))
            .unwrap_or(false)
    }

    /// Gives a port back once its sockets are closed (see [`PortLease`]).
    fn release(&self, port: u16) {
        if let Ok(mut taken) = self.taken.lock() {
            taken.remove(&port);
        }
    }

    /// Refuses a port outside the allowed ranges: checked before anything else is done
    /// for a tunnel, since it depends on nothing but the configuration.
    pub fn check_allowed(&self, port: u16) -> Result<(), PoolError> {
        if self.allowed.contains(port) {
            Ok(())
        } else {
            Err(PoolError::NotAllowed(port))
        }
    }

    /// Binds the given port, which must be allowed and free, for `protocol` (both
    /// sockets on the same port number for `tcp+udp`). `host` must be an IP address: it
    /// comes from API callers and agents, and a name would make rportd look it up.
    pub async fn bind_port(
        self: &Arc<Self>,
        host: &str,
        port: u16,
        protocol: TunnelProtocol,
    ) -> Result<BoundPort, PoolError> {
        let ip: IpAddr = host
            .parse()
            .map_err(|_| PoolError::NotAnAddress(host.to_owned()))?;
        let address = SocketAddr::new(ip, port);
        self.check_allowed(port)?;
        if !self.reserve(port) {
            return Err(PoolError::InUse(port));
        }
        let lease = PortLease {
            pool: Arc::clone(self),
            port,
        };
        let bind_error = |source: io::Error| {
            if source.kind() == io::ErrorKind::AddrInUse {
                PoolError::InUse(port)
            } else {
                PoolError::Bind {
                    host: host.to_owned(),
                    port,
                    source,
                }
            }
        };
        let tcp = match protocol.has_tcp() {
            true => Some(crate::net::listen::bind_address(address).map_err(bind_error)?),
            false => None,
        };
        let udp = match protocol.has_udp() {
            true => Some(UdpSocket::bind(address).await.map_err(bind_error)?),
            false => None,
        };
        Ok(BoundPort {
            tcp,
            udp,
            lease: Arc::new(lease),
        })
    }

    /// Binds a random free allowed port.
    pub async fn bind_random(
        self: &Arc<Self>,
        host: &str,
        protocol: TunnelProtocol,
    ) -> Result<BoundPort, PoolError> {
        let count = self.allowed.len();
        if count == 0 {
            return Err(PoolError::Exhausted);
        }
        let start = rand::rng().random_range(0..count);
        let random_picks = (0..RANDOM_ATTEMPTS).map(|_| rand::rng().random_range(0..count));
        let full_pass = (0..count).map(|i| (start + i) % count);
        for index in random_picks.chain(full_pass) {
            let Some(port) = self.allowed.nth(index) else {
                continue;
            };
            match self.bind_port(host, port, protocol).await {
                Ok(bound) => return Ok(bound),
                Err(PoolError::InUse(_)) => continue,
                Err(other) => return Err(other),
            }
        }
        Err(PoolError::Exhausted)
    }
}

/// The sockets of a tunnel's public port.
pub struct BoundPort {
    pub tcp: Option<TcpListener>,
    pub udp: Option<UdpSocket>,
    /// Shared by whatever serves the sockets; the port returns to the pool when the last
    /// holder drops it, which each does after closing its socket.
    pub lease: Arc<PortLease>,
}

/// A port taken from the pool until dropped.
pub struct PortLease {
    pool: Arc<PortPool>,
    port: u16,
}

impl PortLease {
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.pool.release(self.port);
    }
}
