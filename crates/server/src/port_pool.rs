//! Public ports for tunnels: which are free is known in-process, and a bind that still
//! fails (another program took the port) just moves on to the next candidate. No scan of
//! the system's sockets, which made RPort slow and flaky ("no ports available").

use std::collections::HashSet;
use std::io;
use std::sync::Mutex;

use rand::Rng;
use tokio::net::TcpListener;

use crate::port_ranges::PortRanges;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("local port {0} is not among the allowed ports (used_ports minus excluded_ports)")]
    NotAllowed(u16),
    #[error("local port {0} is already in use")]
    InUse(u16),
    #[error("no free port left among the allowed ports")]
    Exhausted,
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

    /// Gives a port back once its listener is closed.
    pub fn release(&self, port: u16) {
        if let Ok(mut taken) = self.taken.lock() {
            taken.remove(&port);
        }
    }

    /// Binds the given port, which must be allowed and free.
    pub async fn bind_port(&self, host: &str, port: u16) -> Result<TcpListener, PoolError> {
        if !self.allowed.contains(port) {
            return Err(PoolError::NotAllowed(port));
        }
        if !self.reserve(port) {
            return Err(PoolError::InUse(port));
        }
        match TcpListener::bind((host, port)).await {
            Ok(listener) => Ok(listener),
            Err(source) => {
                self.release(port);
                Err(if source.kind() == io::ErrorKind::AddrInUse {
                    PoolError::InUse(port)
                } else {
                    PoolError::Bind {
                        host: host.to_owned(),
                        port,
                        source,
                    }
                })
            }
        }
    }

    /// Binds a random free allowed port.
    pub async fn bind_random(&self, host: &str) -> Result<(TcpListener, u16), PoolError> {
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
            match self.bind_port(host, port).await {
                Ok(listener) => return Ok((listener, port)),
                Err(PoolError::InUse(_)) => continue,
                Err(other) => return Err(other),
            }
        }
        Err(PoolError::Exhausted)
    }
}
