//! A tunnel that holds its port: its record, its counters and limits, and the checks every
//! accepted connection passes.

use super::http_proxy::{BasicAuth, ProxyOptions};
use super::lifecycle::{Activity, Limits};
use super::{ConnectionLimits, Full, TunnelInfo, http_proxy, lock};
use crate::domain::source::source_of;
use crate::metrics::{Refusal, TunnelTotals};
use chrono::{DateTime, Utc};
use rport_protocol::OpenRequest;
use rport_protocol::StreamProtocol;
use rport_protocol::ip_rules::Acl;
use rport_protocol::tunnel_spec::TunnelProtocol;
use rport_store::{TunnelCounters, TunnelRecord, TunnelStatus};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A tunnel that holds its port.
pub(super) struct ActiveTunnel {
    pub(super) record: Mutex<TunnelRecord>,
    /// The tunnel's owner, which never changes: it reaches only the agent registered under
    /// this id in this project. Kept apart so the per-connection path takes no lock for it.
    pub(super) agent_id: String,
    pub(super) project: String,
    /// Replaced live by `PUT .../acl`; read on every accepted connection.
    pub(super) acl: RwLock<Option<Arc<Acl>>>,
    pub(super) protocol: TunnelProtocol,
    pub(super) open: OpenRequest,
    /// Set for HTTP proxy tunnels.
    pub(super) proxy: Option<Arc<ProxyOptions>>,
    pub(super) limits: Limits,
    /// Set by the manager from its settings before the tunnel serves.
    pub(super) connection_limits: ConnectionLimits,
    pub(super) cancel: CancellationToken,
    /// Tasks serving the sockets; awaited on close so the port is free when close returns.
    pub(super) servers: Mutex<Vec<JoinHandle<()>>>,
    pub(super) open_connections: AtomicU32,
    pub(super) connections: AtomicU64,
    pub(super) refused: AtomicU64,
    /// When the last "tunnel full" warning was logged.
    pub(super) full_warned_ms: AtomicI64,
    /// Open connections per source (see [`source_of`]), while a per-source limit is set.
    pub(super) sources: Mutex<HashMap<IpAddr, u32>>,
    pub(super) bytes_in: AtomicU64,
    pub(super) bytes_out: AtomicU64,
    /// When the tunnel was last used and when its agent left, on the monotonic clock
    /// (see [`Steady`]); the API and the store get them as wall times.
    steady: Steady,
    /// Counters moved since the last write to the store.
    pub(super) dirty: AtomicBool,
    /// The counters as the store last got them: a write adds only what came since, so
    /// it cannot undo another write to the row.
    pub(super) flushed: Mutex<TunnelCounters>,
    /// Wakes the watcher when something it decides on changed.
    pub(super) changed: Notify,
    /// What all tunnels carried together, for the metrics; the manager's, set on launch.
    pub(super) totals: Arc<TunnelTotals>,
}

impl ActiveTunnel {
    pub(super) fn new(
        record: TunnelRecord,
        acl: Option<Acl>,
        agent_gone: Option<DateTime<Utc>>,
    ) -> Self {
        let protocol = record.protocol.parse().unwrap_or_default();
        let limits = Limits {
            idle_timeout: match record.options.idle_timeout_minutes {
                0 => None,
                minutes => Some(Duration::from_secs(u64::from(minutes) * 60)),
            },
            auto_close_at: match record.options.auto_close_secs {
                0 => None,
                secs => chrono::Duration::try_seconds(secs as i64)
                    .and_then(|d| record.created_at.checked_add_signed(d)),
            },
            grace_period: Duration::ZERO, // set by the manager
        };
        let open = OpenRequest {
            tunnel_id: record.id.clone(),
            host: record.rhost.clone(),
            port: record.rport,
            protocol: StreamProtocol::Tcp,
            check: None,
        };
        let last_active = record.last_active_at.unwrap_or(record.created_at);
        let counters = record.counters;
        let options = &record.options;
        let proxy = options.http_proxy.then(|| {
            Arc::new(ProxyOptions {
                target_tls: record.scheme.as_deref() == Some("https"),
                host_header: options
                    .host_header
                    .as_deref()
                    .and_then(|h| http::HeaderValue::from_str(h).ok()),
                auth: match (&options.auth_user, &options.auth_password_hash) {
                    (Some(user), Some(hash)) => Some(BasicAuth::new(user.clone(), hash.clone())),
                    _ => None,
                },
                device_name: http_proxy::device_name(options.host_header.as_deref(), &record.rhost),
            })
        });
        Self {
            proxy,
            acl: RwLock::new(acl.map(Arc::new)),
            protocol,
            open,
            limits,
            connection_limits: ConnectionLimits::default(),
            cancel: CancellationToken::new(),
            servers: Mutex::new(Vec::new()),
            open_connections: AtomicU32::new(0),
            connections: AtomicU64::new(counters.connections),
            refused: AtomicU64::new(counters.refused),
            full_warned_ms: AtomicI64::new(0),
            sources: Mutex::new(HashMap::new()),
            bytes_in: AtomicU64::new(counters.bytes_in),
            bytes_out: AtomicU64::new(counters.bytes_out),
            steady: Steady::new(Utc::now(), last_active, agent_gone),
            dirty: AtomicBool::new(false),
            flushed: Mutex::new(counters),
            changed: Notify::new(),
            totals: Arc::default(),
            agent_id: record.agent_id.clone(),
            project: record.project.clone(),
            record: Mutex::new(record),
        }
    }

    pub(super) fn id(&self) -> String {
        lock(&self.record).id.clone()
    }

    pub(super) fn agent_id(&self) -> &str {
        &self.agent_id
    }

    pub(super) fn snapshot(&self) -> TunnelRecord {
        let mut record = lock(&self.record).clone();
        record.counters = self.counters();
        record.last_active_at = Some(self.last_active());
        record
    }

    fn counters(&self) -> TunnelCounters {
        TunnelCounters {
            connections: self.connections.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
        }
    }

    /// What the counters gained since the last write, counted as written from now on.
    pub(super) fn take_unflushed(&self) -> TunnelCounters {
        let mut flushed = lock(&self.flushed);
        let now = self.counters();
        let delta = now.since(*flushed);
        *flushed = now;
        delta
    }

    pub(super) fn info(&self) -> TunnelInfo {
        TunnelInfo {
            record: self.snapshot(),
            active_connections: self.open_connections.load(Ordering::Relaxed),
        }
    }

    pub(super) fn acl_allows(&self, ip: IpAddr) -> bool {
        let acl = self.acl.read().unwrap_or_else(|p| p.into_inner());
        acl.as_ref().is_none_or(|acl| acl.allows(ip))
    }

    pub(super) fn refuse(&self, why: Refusal) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.totals.refused(why);
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Says, at most once a minute per tunnel, that connections are being turned away for
    /// a limit: an operator should hear of it, a flood should not fill the log.
    pub(super) fn warn_full(&self, peer: SocketAddr, full: Full) {
        let now = Utc::now().timestamp_millis();
        let last = self.full_warned_ms.load(Ordering::Relaxed);
        if now - last < 60_000
            || self
                .full_warned_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        match full {
            Full::Tunnel => tracing::warn!(
                tunnel = %self.id(),
                %peer,
                "connection refused: the tunnel holds [server] max_connections_per_tunnel = {} connections",
                self.open_connections.load(Ordering::Relaxed)
            ),
            Full::Source => tracing::warn!(
                tunnel = %self.id(),
                %peer,
                "connection refused: this source holds [server] max_connections_per_source connections to the tunnel"
            ),
            Full::Agent(most) => tracing::warn!(
                tunnel = %self.id(),
                %peer,
                "connection refused: the agent's tunnels hold [server] max_connections_per_agent = {most} connections"
            ),
            Full::Server(most) => tracing::warn!(
                tunnel = %self.id(),
                %peer,
                "connection refused: all tunnels together hold [server] max_connections_total = {most} connections"
            ),
        }
    }

    /// Counts a new connection from `peer`, unless it would pass one of the tunnel's
    /// connection limits; one turned away is counted as refused, said in the log (see
    /// `warn_full`) and must be dropped.
    // Connections do not wake the watcher: it re-reads these counters when it wakes, and
    // it never sleeps past the soonest moment they could matter (see `lifecycle`).
    pub(super) fn connection_opened(&self, peer: SocketAddr) -> bool {
        match self.take_connection(peer.ip()) {
            Ok(()) => true,
            Err(full) => {
                self.refuse(full.refusal());
                self.warn_full(peer, full);
                false
            }
        }
    }

    pub(super) fn take_connection(&self, peer: IpAddr) -> Result<(), Full> {
        let ConnectionLimits {
            per_tunnel,
            per_source,
            ref total,
            per_server,
        } = self.connection_limits;
        if per_source > 0 {
            let mut sources = lock(&self.sources);
            let count = sources.entry(source_of(peer)).or_insert(0);
            if *count >= per_source {
                return Err(Full::Source);
            }
            *count += 1;
        }
        let taken =
            self.open_connections
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |open| {
                    (per_tunnel == 0 || open < per_tunnel).then_some(open + 1)
                });
        if taken.is_err() {
            self.release_source(peer);
            return Err(Full::Tunnel);
        }
        let taken = total.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |open| {
            (per_server == 0 || open < per_server).then_some(open + 1)
        });
        if taken.is_err() {
            self.open_connections.fetch_sub(1, Ordering::Relaxed);
            self.release_source(peer);
            return Err(Full::Server(per_server));
        }
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.totals.connection_opened();
        self.dirty.store(true, Ordering::Relaxed);
        Ok(())
    }

    pub(super) fn release_source(&self, peer: IpAddr) {
        if self.connection_limits.per_source == 0 {
            return;
        }
        let mut sources = lock(&self.sources);
        let key = source_of(peer);
        if let Some(count) = sources.get_mut(&key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                sources.remove(&key);
            }
        }
    }

    pub(super) fn connection_closed(&self, peer: IpAddr, bytes_in: u64, bytes_out: u64) {
        self.release_source(peer);
        self.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
        self.totals.connection_closed(bytes_in, bytes_out);
        self.touch();
        // Release: whoever sees the connection gone also sees the use just marked.
        self.open_connections.fetch_sub(1, Ordering::Release);
        self.connection_limits.total.fetch_sub(1, Ordering::Relaxed);
    }

    /// Marks the tunnel used now (a connection ended, a datagram passed).
    pub(super) fn touch(&self) {
        self.steady.used();
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// When the tunnel was last used, as a wall time.
    pub(super) fn last_active(&self) -> DateTime<Utc> {
        self.steady.last_used(Utc::now())
    }

    /// The agent's session ended: the grace period starts now.
    pub(super) fn agent_left(&self) {
        self.steady.agent_left();
    }

    pub(super) fn agent_back(&self) {
        self.steady.agent_back();
    }

    /// What the tunnel is doing, its moments told as wall times relative to `now`.
    pub(super) fn activity(&self, now: DateTime<Utc>) -> Activity {
        // Acquire, and before the last use: see `connection_closed`.
        let open_connections = self.open_connections.load(Ordering::Acquire);
        Activity {
            open_connections,
            last_active: self.steady.last_used(now),
            agent_gone_since: self.steady.agent_gone_since(now),
        }
    }

    pub(super) fn set_status(&self, status: TunnelStatus) {
        lock(&self.record).status = status;
    }
}

/// The moments a tunnel's lifecycle decides on (its last use, its agent leaving), kept as
/// milliseconds on the monotonic clock since the tunnel started here. Idle time and the
/// grace period are lengths of time: a step of the wall clock (NTP setting a clock that
/// booted wrong, an operator's `date -s`) must neither end every idle tunnel at once nor
/// keep them open for the length of the step.
struct Steady {
    start: tokio::time::Instant,
    last_used: AtomicI64,
    /// [`Steady::NONE`] while the agent is connected.
    agent_gone: AtomicI64,
}

impl Steady {
    const NONE: i64 = i64::MIN;

    /// Starts the clock at `now`, with what happened before (a tunnel restored after a
    /// restart) placed before the start by its wall-clock distance.
    fn new(
        now: DateTime<Utc>,
        last_used: DateTime<Utc>,
        agent_gone: Option<DateTime<Utc>>,
    ) -> Self {
        let before_start = |at: DateTime<Utc>| -(now - at).num_milliseconds().max(0);
        Self {
            start: tokio::time::Instant::now(),
            last_used: AtomicI64::new(before_start(last_used)),
            agent_gone: AtomicI64::new(agent_gone.map_or(Self::NONE, before_start)),
        }
    }

    fn now(&self) -> i64 {
        i64::try_from(self.start.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    fn used(&self) {
        self.last_used.fetch_max(self.now(), Ordering::Relaxed);
    }

    fn agent_left(&self) {
        self.agent_gone.store(self.now(), Ordering::Relaxed);
    }

    fn agent_back(&self) {
        self.agent_gone.store(Self::NONE, Ordering::Relaxed);
    }

    /// `moment` as a wall time: as long before `now` as it is before the monotonic now.
    fn as_wall(&self, moment: i64, now: DateTime<Utc>) -> DateTime<Utc> {
        let ago = chrono::Duration::milliseconds(self.now().saturating_sub(moment).max(0));
        now.checked_sub_signed(ago)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    fn last_used(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.as_wall(self.last_used.load(Ordering::Relaxed), now)
    }

    fn agent_gone_since(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.agent_gone.load(Ordering::Relaxed) {
            Self::NONE => None,
            moment => Some(self.as_wall(moment, now)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Steady;
    use chrono::{DateTime, Utc};
    use std::time::Duration;

    /// Wall times in seconds from an arbitrary start.
    fn wall(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("in range")
    }

    #[tokio::test(start_paused = true)]
    async fn moments_are_measured_on_the_monotonic_clock() {
        let steady = Steady::new(wall(0), wall(-10), None);
        assert_eq!(steady.agent_gone_since(wall(0)), None);
        // Ten seconds before the start, whatever the wall clock says now.
        assert_eq!(steady.last_used(wall(0)), wall(-10));
        assert_eq!(steady.last_used(wall(3600)), wall(3590));

        tokio::time::advance(Duration::from_secs(5)).await;
        steady.used();
        tokio::time::advance(Duration::from_secs(2)).await;
        steady.agent_left();
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(steady.last_used(wall(100)), wall(97));
        assert_eq!(steady.agent_gone_since(wall(100)), Some(wall(99)));
        steady.agent_back();
        assert_eq!(steady.agent_gone_since(wall(100)), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_restored_moment_in_the_future_counts_as_now() {
        // A clock set back since the store was written: never idle for a negative time.
        let steady = Steady::new(wall(0), wall(3600), Some(wall(0)));
        assert_eq!(steady.last_used(wall(0)), wall(0));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(steady.last_used(wall(0)), wall(-30));
        assert_eq!(steady.agent_gone_since(wall(0)), Some(wall(-30)));
    }
}
