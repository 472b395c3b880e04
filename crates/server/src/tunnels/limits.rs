//! How many connections tunnels may hold: per tunnel, per source, per agent and in all,
//! and the default total sized to the machine's memory.

use std::sync::Arc;
use std::sync::atomic::AtomicU32;

/// What a connection that stalls can pin, in rportd's memory and its socket, at most: a
/// stream's first window (256 KiB) and the socket's unsent bytes (128 KiB). See
/// docs/security.md.
pub const CONNECTION_PIN_BYTES: u64 = 384 * 1024;

/// The default of `[server] max_connections_total`: as many connections as can pin a
/// quarter of the machine's memory (`total_memory` bytes), at least 1,024 and at most
/// 65,536, so that the defaults cannot exhaust the machine.
pub fn default_max_connections_total(total_memory: u64) -> u32 {
    let fits = total_memory / 4 / CONNECTION_PIN_BYTES;
    u32::try_from(fits.clamp(1024, 65_536)).unwrap_or(65_536)
}

/// How many connections a tunnel holds at once; 0 for no limit.
#[derive(Debug, Clone, Default)]
pub(super) struct ConnectionLimits {
    pub(super) per_tunnel: u32,
    /// Per source address, see [`source_of`].
    pub(super) per_source: u32,
    /// Open connections of every tunnel, shared by all of them, and their limit.
    pub(super) total: Arc<AtomicU32>,
    pub(super) per_server: u32,
}

/// Which limit turned a connection away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Full {
    Tunnel,
    Source,
    /// All tunnels of the agent together; the session's limit.
    Agent(usize),
    /// All tunnels of the server together.
    Server(u32),
}

impl Full {
    /// The reason the metrics count the refusal under.
    pub(super) fn refusal(self) -> crate::metrics::Refusal {
        use crate::metrics::Refusal;
        match self {
            Self::Tunnel => Refusal::TunnelLimit,
            Self::Source => Refusal::SourceLimit,
            Self::Agent(_) => Refusal::AgentLimit,
            Self::Server(_) => Refusal::ServerLimit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_total_fits_a_quarter_of_memory() {
        const GIB: u64 = 1 << 30;
        // 24 GiB: 6 GiB / 384 KiB.
        assert_eq!(default_max_connections_total(24 * GIB), 16_384);
        let small = default_max_connections_total(2 * GIB);
        assert_eq!(small, 1365);
        assert!(u64::from(small) * CONNECTION_PIN_BYTES <= 2 * GIB / 4);
        assert_eq!(default_max_connections_total(256 << 20), 1024, "a floor");
        assert_eq!(default_max_connections_total(1 << 50), 65_536, "a ceiling");
    }
}
