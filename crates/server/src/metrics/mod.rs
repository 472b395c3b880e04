//! rportd's Prometheus metrics: the counters the tunnels, the agent listener and the API
//! add to, and the text a scrape reads (`render`), with the gauges of the moment asked of
//! the live state at scrape time.
//!
//! Counters count since this process started and start at zero after a restart, as
//! Prometheus expects of counters (its `rate()` handles the reset). docs/metrics.md lists
//! every metric.

mod api_requests;
mod process;
pub mod render;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

pub use api_requests::ApiRequests;
use render::{Exposition, Kind};

/// Failed store calls, counted where the API turns them into errors and where the
/// housekeeping loops and the tunnels' flushes log them. One process-wide counter:
/// `ApiError::internal` is called from everywhere without the server's state at hand.
static STORE_ERRORS: AtomicU64 = AtomicU64::new(0);

/// Counts one failed store call.
pub fn store_error() {
    STORE_ERRORS.fetch_add(1, Ordering::Relaxed);
}

/// Why a connection to a tunnel port was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The source is not in the tunnel's ACL.
    Acl,
    /// `[server] max_connections_per_tunnel`.
    TunnelLimit,
    /// `[server] max_connections_per_source`.
    SourceLimit,
    /// `[server] max_connections_per_agent`.
    AgentLimit,
    /// `[server] max_connections_total`.
    ServerLimit,
}

impl Refusal {
    const ALL: [Self; 5] = [
        Self::Acl,
        Self::TunnelLimit,
        Self::SourceLimit,
        Self::AgentLimit,
        Self::ServerLimit,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Acl => "acl",
            Self::TunnelLimit => "tunnel_limit",
            Self::SourceLimit => "source_limit",
            Self::AgentLimit => "agent_limit",
            Self::ServerLimit => "server_limit",
        }
    }
}

/// What all tunnels carried together. Added to once per connection (opened, refused,
/// closed), never per chunk of data: the bytes of a connection come in when it closes.
#[derive(Default)]
pub struct TunnelTotals {
    connections: AtomicU64,
    refused: [AtomicU64; Refusal::ALL.len()],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl TunnelTotals {
    pub fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused(&self, why: Refusal) {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// `bytes_in` went from the connecting client towards the device, `bytes_out` back.
    pub fn connection_closed(&self, bytes_in: u64, bytes_out: u64) {
        if bytes_in > 0 {
            self.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        }
        if bytes_out > 0 {
            self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
        }
    }

    fn write(&self, out: &mut Exposition) {
        out.single(
            "rportd_tunnel_connections_total",
            Kind::Counter,
            "Connections (and UDP flows) tunnels accepted since rportd started.",
            self.connections.load(Ordering::Relaxed),
        );
        let name = "rportd_tunnel_connections_refused_total";
        out.family(
            name,
            Kind::Counter,
            "Connections to tunnel ports turned away since rportd started, by reason: acl, tunnel_limit, source_limit, agent_limit, server_limit.",
        );
        for why in Refusal::ALL {
            let count = self.refused[why as usize].load(Ordering::Relaxed);
            out.sample(name, &[("reason", why.label())], count);
        }
        let name = "rportd_tunnel_bytes_total";
        out.family(
            name,
            Kind::Counter,
            "Bytes tunnels carried since rportd started, counted when each connection ends: direction=\"in\" from the connecting client towards the device, \"out\" from the device back to the client.",
        );
        out.sample(
            name,
            &[("direction", "in")],
            self.bytes_in.load(Ordering::Relaxed),
        );
        out.sample(
            name,
            &[("direction", "out")],
            self.bytes_out.load(Ordering::Relaxed),
        );
    }
}

/// How an agent's login ended.
#[derive(Debug, Clone, Copy)]
pub enum Login {
    Success,
    /// A wrong credential.
    Failure,
    /// Refused unheard: its address or credential is banned.
    Banned,
}

impl Login {
    const ALL: [Self; 3] = [Self::Success, Self::Failure, Self::Banned];

    fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Banned => "banned",
        }
    }
}

/// The gauges of the moment, read from the live state when a scrape comes: clients,
/// open tunnels, bans, the cluster's peers. The server wires its parts in
/// ([`Metrics::read_gauges_from`]); `metrics` knows none of them.
pub trait Gauges: Send + Sync {
    fn write(&self, out: &mut Exposition);
}

/// Everything a scrape reports for this server.
pub struct Metrics {
    pub tunnels: Arc<TunnelTotals>,
    pub api: ApiRequests,
    logins: [AtomicU64; Login::ALL.len()],
    gauges: OnceLock<Box<dyn Gauges>>,
}

impl Metrics {
    /// `routes` are the API's route templates, counted one by one; others are "other".
    pub fn new(tunnels: Arc<TunnelTotals>, routes: impl IntoIterator<Item = &'static str>) -> Self {
        Self {
            tunnels,
            api: ApiRequests::new(routes),
            logins: Default::default(),
            gauges: OnceLock::new(),
        }
    }

    pub fn agent_login(&self, result: Login) {
        self.logins[result as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Where the gauges are read from; set once, when the server is wired.
    pub fn read_gauges_from(&self, gauges: Box<dyn Gauges>) {
        let _ = self.gauges.set(gauges);
    }

    /// The text of one scrape.
    pub fn render(&self) -> String {
        let mut out = Exposition::default();
        out.family(
            "rportd_build_info",
            Kind::Gauge,
            "Always 1; its label is the version of rportd running.",
        );
        out.sample(
            "rportd_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1,
        );
        if let Some(gauges) = self.gauges.get() {
            gauges.write(&mut out);
        }
        self.tunnels.write(&mut out);
        let name = "rportd_agent_logins_total";
        out.family(
            name,
            Kind::Counter,
            "Agent logins since rportd started, by result: success, failure (wrong credential), banned (refused for earlier failures).",
        );
        for result in Login::ALL {
            let count = self.logins[result as usize].load(Ordering::Relaxed);
            out.sample(name, &[("result", result.label())], count);
        }
        out.single(
            "rportd_store_errors_total",
            Kind::Counter,
            "Store (database) calls that failed since rportd started.",
            STORE_ERRORS.load(Ordering::Relaxed),
        );
        self.api.write(&mut out);
        process::write(&mut out);
        out.finish()
    }
}
