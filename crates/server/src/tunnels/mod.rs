//! On-demand tunnels: a public port on the server whose connections (or datagrams) are
//! carried through an agent's session to a target on the agent's side, and the rules that
//! open, keep and end them.

mod agent_check;
mod http_proxy;
mod lifecycle;
pub mod proxy_request;
mod stored;
mod tcp;
mod udp;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rport_protocol::OpenRequest;
use rport_protocol::StreamProtocol;
use rport_protocol::ip_rules::Acl;
use rport_protocol::tunnel_spec::{self, DEFAULT_LOCAL_HOST, Endpoint, TunnelProtocol};
use rport_store::{
    Store, StoreError, TunnelCounters, TunnelFilter, TunnelOptions, TunnelRecord, TunnelStatus,
};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use agent_check::CheckError;
use lifecycle::{Activity, Limits, Verdict};
pub use lifecycle::{CloseReason, MAX_AUTO_CLOSE, MAX_IDLE_TIMEOUT_MINUTES};

use crate::audit::{self, Actor, ActorKind, AuditLog};
use crate::port_pool::{BoundPort, PoolError, PortPool};
use crate::registry::{DeleteError, LiveSession, Registry};
use crate::secrets::{Secret, hash_password};
use http_proxy::{BasicAuth, ProxyOptions};

/// Who created a tunnel that the agent's own configuration asked for.
pub const CREATED_BY_CLIENT: &str = "client";

/// How tunnels behave, from the server's configuration.
#[derive(Debug, Clone, Copy)]
pub struct TunnelSettings {
    /// How long a tunnel keeps its port while its agent is away.
    pub grace_period: Duration,
    /// How long the agent may take to connect to a target when `check_port` asks it to.
    pub check_port_timeout: Duration,
    /// Whether agents may have tunnels opened for their own `remotes`.
    pub allow_client_remotes: bool,
    /// Connections one tunnel may hold open at once; 0 for no limit.
    pub max_connections: u32,
    /// Connections one source address (an IPv6 /64) may hold open to one tunnel; 0 for no limit.
    pub max_connections_per_source: u32,
    /// Connections all tunnels together may hold open; 0 for no limit.
    pub max_connections_total: u32,
}

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
struct ConnectionLimits {
    per_tunnel: u32,
    /// Per source address, see `source_key`.
    per_source: u32,
    /// Open connections of every tunnel, shared by all of them, and their limit.
    total: Arc<AtomicU32>,
    per_server: u32,
}

/// Which limit turned a connection away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Full {
    Tunnel,
    Source,
    /// All tunnels of the agent together; the session's limit.
    Agent(usize),
    /// All tunnels of the server together.
    Server(u32),
}

/// The key a source is counted under: its address, or its /64 for IPv6, where one host
/// commonly holds a whole /64 (the same rule as bans).
fn source_key(ip: IpAddr) -> IpAddr {
    match rport_protocol::ip_rules::canonical(ip) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// Tunnels one agent's configuration may ask for.
const MAX_AGENT_REMOTES: usize = 64;

/// How often counters and idle times of live tunnels are written to the store.
const FLUSH_EVERY: Duration = Duration::from_secs(30);

/// What an operator (or an agent's configuration) asks for.
#[derive(Debug, Clone)]
pub struct TunnelRequest {
    pub client_id: String,
    /// Server side; `None` picks a random allowed port.
    pub local: Option<Endpoint>,
    pub remote: Endpoint,
    pub protocol: TunnelProtocol,
    pub scheme: Option<String>,
    pub name: String,
    pub created_by: String,
    pub acl: Option<Acl>,
    /// 0 = never idle-closed.
    pub idle_timeout_minutes: u32,
    pub auto_close: Option<Duration>,
    pub check_port: bool,
    /// Serve HTTPS on the public side and forward HTTP requests.
    pub http_proxy: Option<ProxyRequest>,
}

/// The HTTP proxy part of a [`TunnelRequest`].
#[derive(Debug, Clone, Default)]
pub struct ProxyRequest {
    pub host_header: Option<String>,
    /// Basic auth in front of the proxy: user and password.
    pub auth: Option<(String, Secret)>,
}

/// What HTTP proxy tunnels share: the certificate they present, the TLS client towards
/// devices, and the optional shared port.
pub struct ProxySetup {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub device_tls: Arc<rustls::ClientConfig>,
    /// `[server] tunnel_host` when `tunnel_proxy_address` gives every proxy tunnel a
    /// subdomain of it on one shared port.
    pub shared_host: Option<String>,
    /// The shared port once it is bound; 0 before.
    pub shared_port: AtomicU16,
    /// Wrong basic-auth passwords on proxy tunnels, per address: past `[api]
    /// max_failed_login` the address gets 429 for `ban_time`, as at the API.
    pub auth_bans: crate::bans::BanList,
    /// `[server] handshake_timeout`: public clients get as long as agents to finish TLS.
    pub handshake_timeout: std::time::Duration,
    /// `[api] read_header_timeout`: one bound on request headers for every HTTP surface.
    pub header_timeout: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("client {0} not found or not connected")]
    ClientNotConnected(String),
    #[error("tunnel {0} not found")]
    NotFound(String),
    #[error(transparent)]
    Port(#[from] PoolError),
    #[error("saving the tunnel: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Check(#[from] CheckError),
    /// Same client, same local side.
    #[error("tunnel {0} already uses this local port")]
    Exists(String),
    /// Same client, same target, overlapping protocol and the same ACL.
    #[error("tunnel {0} already leads to this target with the same protocol and ACL")]
    ToPortExists(String),
    #[error("tunnel has {0} active connection(s)")]
    Busy(u32),
}

/// A tunnel as shown to operators: its record plus what only the live tunnel knows.
#[derive(Debug, Clone)]
pub struct TunnelInfo {
    pub record: TunnelRecord,
    pub active_connections: u32,
}

/// A tunnel that holds its port.
struct ActiveTunnel {
    record: Mutex<TunnelRecord>,
    /// The tunnel's owner, which never changes: it reaches only the agent registered under
    /// this id in this project. Kept apart so the per-connection path takes no lock for it.
    client_id: String,
    project: String,
    /// Replaced live by `PUT .../acl`; read on every accepted connection.
    acl: RwLock<Option<Arc<Acl>>>,
    protocol: TunnelProtocol,
    open: OpenRequest,
    /// Set for HTTP proxy tunnels.
    proxy: Option<Arc<ProxyOptions>>,
    limits: Limits,
    /// Set by the manager from its settings before the tunnel serves.
    connection_limits: ConnectionLimits,
    cancel: CancellationToken,
    /// Tasks serving the sockets; awaited on close so the port is free when close returns.
    servers: Mutex<Vec<JoinHandle<()>>>,
    open_connections: AtomicU32,
    connections: AtomicU64,
    refused: AtomicU64,
    /// When the last "tunnel full" warning was logged.
    full_warned_ms: AtomicI64,
    /// Open connections per source (see `source_key`), while a per-source limit is set.
    sources: Mutex<HashMap<IpAddr, u32>>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    last_active_ms: AtomicI64,
    /// 0 while the agent is connected.
    agent_gone_since_ms: AtomicI64,
    /// Counters moved since the last write to the store.
    dirty: AtomicBool,
    /// The counters as the store last got them: a write adds only what came since, so
    /// it cannot undo another write to the row.
    flushed: Mutex<TunnelCounters>,
    /// Wakes the watcher when something it decides on changed.
    changed: Notify,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl ActiveTunnel {
    fn new(record: TunnelRecord, acl: Option<Acl>, agent_gone: Option<DateTime<Utc>>) -> Self {
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
            last_active_ms: AtomicI64::new(last_active.timestamp_millis()),
            agent_gone_since_ms: AtomicI64::new(agent_gone.map_or(0, |t| t.timestamp_millis())),
            dirty: AtomicBool::new(false),
            flushed: Mutex::new(counters),
            changed: Notify::new(),
            client_id: record.client_id.clone(),
            project: record.project.clone(),
            record: Mutex::new(record),
        }
    }

    fn id(&self) -> String {
        lock(&self.record).id.clone()
    }

    fn client_id(&self) -> &str {
        &self.client_id
    }

    fn snapshot(&self) -> TunnelRecord {
        let mut record = lock(&self.record).clone();
        record.counters = self.counters();
        record.last_active_at = Some(from_ms(self.last_active_ms.load(Ordering::Relaxed)));
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
    fn take_unflushed(&self) -> TunnelCounters {
        let mut flushed = lock(&self.flushed);
        let now = self.counters();
        let delta = now.since(*flushed);
        *flushed = now;
        delta
    }

    fn info(&self) -> TunnelInfo {
        TunnelInfo {
            record: self.snapshot(),
            active_connections: self.open_connections.load(Ordering::Relaxed),
        }
    }

    fn acl_allows(&self, ip: IpAddr) -> bool {
        let acl = self.acl.read().unwrap_or_else(|p| p.into_inner());
        acl.as_ref().is_none_or(|acl| acl.allows(ip))
    }

    fn refuse(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Says, at most once a minute per tunnel, that connections are being turned away for
    /// a limit: an operator should hear of it, a flood should not fill the log.
    fn warn_full(&self, peer: SocketAddr, full: Full) {
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
    fn connection_opened(&self, peer: SocketAddr) -> bool {
        match self.take_connection(peer.ip()) {
            Ok(()) => true,
            Err(full) => {
                self.refuse();
                self.warn_full(peer, full);
                false
            }
        }
    }

    fn take_connection(&self, peer: IpAddr) -> Result<(), Full> {
        let ConnectionLimits {
            per_tunnel,
            per_source,
            ref total,
            per_server,
        } = self.connection_limits;
        if per_source > 0 {
            let mut sources = lock(&self.sources);
            let count = sources.entry(source_key(peer)).or_insert(0);
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
        self.dirty.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn release_source(&self, peer: IpAddr) {
        if self.connection_limits.per_source == 0 {
            return;
        }
        let mut sources = lock(&self.sources);
        let key = source_key(peer);
        if let Some(count) = sources.get_mut(&key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                sources.remove(&key);
            }
        }
    }

    fn connection_closed(&self, peer: IpAddr, bytes_in: u64, bytes_out: u64) {
        self.release_source(peer);
        self.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
        self.touch();
        self.open_connections.fetch_sub(1, Ordering::Relaxed);
        self.connection_limits.total.fetch_sub(1, Ordering::Relaxed);
    }

    /// Marks the tunnel used now (a connection ended, a datagram passed).
    fn touch(&self) {
        self.last_active_ms
            .fetch_max(Utc::now().timestamp_millis(), Ordering::Relaxed);
        self.dirty.store(true, Ordering::Relaxed);
    }

    fn activity(&self) -> Activity {
        Activity {
            open_connections: self.open_connections.load(Ordering::Relaxed),
            last_active: from_ms(self.last_active_ms.load(Ordering::Relaxed)),
            agent_gone_since: match self.agent_gone_since_ms.load(Ordering::Relaxed) {
                0 => None,
                ms => Some(from_ms(ms)),
            },
        }
    }

    fn set_status(&self, status: TunnelStatus) {
        lock(&self.record).status = status;
    }
}

/// The scheme a target port usually speaks, so UIs and scripts can build links.
pub fn scheme_for_port(port: u16) -> Option<&'static str> {
    Some(match port {
        22 => "ssh",
        80 => "http",
        443 => "https",
        3389 => "rdp",
        5900 => "vnc",
        _ => return None,
    })
}

pub struct TunnelManager {
    registry: Arc<Registry>,
    store: Arc<dyn Store>,
    pool: Arc<PortPool>,
    settings: TunnelSettings,
    active: Mutex<HashMap<String, Arc<ActiveTunnel>>>,
    audit: Arc<AuditLog>,
    proxy: ProxySetup,
    /// Subdomain -> live proxy tunnel, for the shared proxy port.
    proxy_routes: Mutex<HashMap<String, Arc<ActiveTunnel>>>,
    /// Open connections of all tunnels, against `max_connections_total`.
    open_connections: Arc<AtomicU32>,
}

impl TunnelManager {
    /// Tunnels that were live when the previous run ended (it crashed or was killed) get
    /// their ports back and wait, as after a disconnect, for their agents to return.
    pub async fn start(
        registry: Arc<Registry>,
        store: Arc<dyn Store>,
        pool: PortPool,
        settings: TunnelSettings,
        audit: Arc<AuditLog>,
        proxy: ProxySetup,
    ) -> Result<Arc<Self>, StoreError> {
        let manager = Arc::new(Self {
            registry,
            store,
            pool: Arc::new(pool),
            settings,
            active: Mutex::new(HashMap::new()),
            audit,
            proxy,
            proxy_routes: Mutex::new(HashMap::new()),
            open_connections: Arc::new(AtomicU32::new(0)),
        });
        let live = TunnelFilter {
            open_only: true,
            ..Default::default()
        };
        for record in manager.store.list_tunnels(&live).await? {
            manager.restore(record).await;
        }
        tokio::spawn(flush_periodically(Arc::downgrade(&manager)));
        Ok(manager)
    }

    async fn restore(self: &Arc<Self>, mut record: TunnelRecord) {
        let (protocol, acl) = match stored::check(&record) {
            Ok(stored::Restorable { protocol, acl }) => (protocol, acl),
            Err(why) => {
                let why = format!("its stored record does not parse: {why}");
                return self
                    .end_unrestored(&record, CloseReason::CorruptState, &why)
                    .await;
            }
        };
        // Its client was forgotten while the tunnel was live (by a run that ended before
        // the tunnel did): nobody may pick the tunnel up under that id.
        if self.registry.project_of(&record.client_id).as_deref() != Some(&record.project) {
            let why = format!(
                "its client is no longer known in project {:?}",
                record.project
            );
            return self
                .end_unrestored(&record, CloseReason::ClientDeleted, &why)
                .await;
        }
        // Port 0: a proxy tunnel reached on the shared proxy port only.
        let bound = match record.lport {
            0 => Ok(None),
            port => self
                .pool
                .bind_port(&record.lhost, port, protocol)
                .await
                .map(Some),
        };
        match bound {
            Ok(bound) => {
                record.status = TunnelStatus::Pending;
                let tunnel = ActiveTunnel::new(record, acl, Some(Utc::now()));
                tracing::info!(tunnel = %tunnel.id(), client = %tunnel.client_id(), "tunnel restored, waiting for its agent");
                let tunnel = self.launch(tunnel, bound).await;
                self.save_status(&tunnel).await;
            }
            Err(err) => {
                let why = format!("its port cannot be bound again: {err}");
                self.end_unrestored(&record, CloseReason::PortUnavailable, &why)
                    .await;
            }
        }
    }

    /// Ends a live tunnel of the previous run that does not open again. Its row is kept as
    /// found but for its end, for the operator to look at: it may not parse.
    async fn end_unrestored(&self, record: &TunnelRecord, reason: CloseReason, why: &str) {
        tracing::error!(
            tunnel = %record.id, client = %record.client_id,
            "tunnel not restored: {why}; it ends as {}",
            reason.as_str()
        );
        let ended = self
            .store
            .end_tunnel(&record.id, Utc::now(), reason.status(), reason.as_str())
            .await;
        if let Err(err) = ended {
            tracing::error!(tunnel = %record.id, "saving tunnel: {err}");
        }
        self.audit_end(record, reason, &format!(": {why}")).await;
    }

    /// Records in the audit log that rportd itself ended a tunnel.
    async fn audit_end(&self, record: &TunnelRecord, reason: CloseReason, more: &str) {
        let event = audit::Event {
            action: "tunnel.close",
            resource: &record.id,
            project: Some(&record.project),
            success: true,
            detail: format!("{} (client {}){more}", reason.as_str(), record.client_id),
        };
        self.audit.record(&Actor::system(), event).await;
    }

    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ActiveTunnel>>> {
        lock(&self.active)
    }

    /// The live tunnels of client `client_id` in `project`.
    fn tunnels_of(&self, project: &str, client_id: &str) -> Vec<Arc<ActiveTunnel>> {
        self.active()
            .values()
            .filter(|t| t.client_id == client_id && t.project == project)
            .cloned()
            .collect()
    }

    /// The live tunnels of client `client_id` in the project the registry knows it in;
    /// none for an unknown id.
    fn tunnels_of_known(&self, client_id: &str) -> Vec<Arc<ActiveTunnel>> {
        match self.registry.project_of(client_id) {
            Some(project) => self.tunnels_of(&project, client_id),
            None => Vec::new(),
        }
    }

    /// The project of a live tunnel made for `client_id`, whether or not the registry
    /// still knows that id: an agent of another project may not register it meanwhile.
    pub fn project_holding(&self, client_id: &str) -> Option<String> {
        self.active()
            .values()
            .find(|t| t.client_id == client_id)
            .map(|t| t.project.clone())
    }

    /// Checks with the agent, opens the public port and starts forwarding.
    pub async fn create(
        self: &Arc<Self>,
        request: TunnelRequest,
    ) -> Result<TunnelInfo, TunnelError> {
        let (session, project) = self
            .registry
            .session_and_project(&request.client_id)
            .ok_or_else(|| TunnelError::ClientNotConnected(request.client_id.clone()))?;
        if let Some(local) = &request.local {
            self.pool.check_allowed(local.port)?;
        }
        self.check_duplicates(&project, &request)?;
        // The agent checked its own remotes against its allow-list when it loaded them.
        if request.created_by != CREATED_BY_CLIENT {
            let dial_timeout = (request.check_port && request.protocol.has_tcp())
                .then_some(self.settings.check_port_timeout);
            agent_check::check(&session, &request.remote, dial_timeout).await?;
        }
        // A web tunnel on the shared proxy port needs no port of its own, unless asked for.
        let shared_only = request.http_proxy.is_some()
            && self.proxy.shared_host.is_some()
            && request.local.is_none();
        let bound = match &request.local {
            _ if shared_only => None,
            Some(local) => Some(
                self.pool
                    .bind_port(&local.host, local.port, request.protocol)
                    .await?,
            ),
            None => Some(
                self.pool
                    .bind_random(DEFAULT_LOCAL_HOST, request.protocol)
                    .await?,
            ),
        };
        let (auth_user, auth_password_hash) =
            match request.http_proxy.as_ref().and_then(|p| p.auth.clone()) {
                None => (None, None),
                Some((user, password)) => {
                    let hash =
                        tokio::task::spawn_blocking(move || hash_password(password.expose()))
                            .await
                            .map_err(|err| StoreError::Backend(Box::new(err)))?;
                    (Some(user), Some(hash))
                }
            };
        let now = Utc::now();
        let record = TunnelRecord {
            id: uuid::Uuid::new_v4().to_string(),
            client_id: request.client_id.clone(),
            name: request.name,
            protocol: request.protocol.as_str().into(),
            lhost: request
                .local
                .as_ref()
                .map_or_else(|| DEFAULT_LOCAL_HOST.to_owned(), |l| l.host.clone()),
            lport: bound.as_ref().map_or(0, |b| b.lease.port()),
            lport_random: request.local.is_none() && !shared_only,
            rhost: request.remote.host.clone(),
            rport: request.remote.port,
            scheme: request
                .scheme
                .or_else(|| scheme_for_port(request.remote.port).map(str::to_owned)),
            status: TunnelStatus::Opened,
            created_by: request.created_by,
            created_at: now,
            closed_at: None,
            close_reason: None,
            options: TunnelOptions {
                acl: request.acl.as_ref().map(ToString::to_string),
                idle_timeout_minutes: request.idle_timeout_minutes,
                auto_close_secs: request.auto_close.map_or(0, |d| d.as_secs().max(1)),
                check_port: request.check_port,
                http_proxy: request.http_proxy.is_some(),
                host_header: request
                    .http_proxy
                    .as_ref()
                    .and_then(|p| p.host_header.clone()),
                auth_user,
                auth_password_hash,
                subdomain: (request.http_proxy.is_some() && self.proxy.shared_host.is_some())
                    .then(http_proxy::new_subdomain),
            },
            counters: TunnelCounters::default(),
            last_active_at: Some(now),
            project,
            damage: None,
        };
        self.store.insert_tunnel(&record).await?;
        let tunnel = ActiveTunnel::new(record, request.acl, None);
        let info = tunnel.info();
        tracing::info!(
            tunnel = %info.record.id, client = %info.record.client_id,
            "tunnel opened: {}:{}/{} -> {}:{}", info.record.lhost, info.record.lport,
            info.record.protocol, info.record.rhost, info.record.rport
        );
        self.launch(tunnel, bound).await;
        Ok(info)
    }

    fn check_duplicates(&self, project: &str, request: &TunnelRequest) -> Result<(), TunnelError> {
        let acl = request.acl.as_ref().map(ToString::to_string);
        for tunnel in self.tunnels_of(project, &request.client_id) {
            let record = lock(&tunnel.record);
            let protocol: TunnelProtocol = record.protocol.parse().unwrap_or_default();
            if let Some(local) = &request.local
                && local.port == record.lport
            {
                return Err(TunnelError::Exists(record.id.clone()));
            }
            if record.rhost == request.remote.host
                && record.rport == request.remote.port
                && protocol.overlaps(request.protocol)
                && record.options.acl == acl
            {
                return Err(TunnelError::ToPortExists(record.id.clone()));
            }
        }
        Ok(())
    }

    /// Registers the tunnel and starts its socket servers and its watcher.
    async fn launch(
        self: &Arc<Self>,
        mut tunnel: ActiveTunnel,
        bound: Option<BoundPort>,
    ) -> Arc<ActiveTunnel> {
        tunnel.limits.grace_period = self.settings.grace_period;
        tunnel.connection_limits = ConnectionLimits {
            per_tunnel: self.settings.max_connections,
            per_source: self.settings.max_connections_per_source,
            total: Arc::clone(&self.open_connections),
            per_server: self.settings.max_connections_total,
        };
        let tunnel = Arc::new(tunnel);
        self.active().insert(tunnel.id(), Arc::clone(&tunnel));
        if let Some(subdomain) = lock(&tunnel.record).options.subdomain.clone() {
            lock(&self.proxy_routes).insert(subdomain, Arc::clone(&tunnel));
        }
        let mut servers = Vec::new();
        if let Some(BoundPort { tcp, udp, lease }) = bound {
            self.serve_ports(&tunnel, tcp, udp, lease, &mut servers);
        }
        *lock(&tunnel.servers) = servers;
        tokio::spawn(Arc::clone(self).watch(Arc::clone(&tunnel)));
        tunnel
    }

    fn serve_ports(
        self: &Arc<Self>,
        tunnel: &Arc<ActiveTunnel>,
        tcp: Option<tokio::net::TcpListener>,
        udp: Option<tokio::net::UdpSocket>,
        lease: Arc<crate::port_pool::PortLease>,
        servers: &mut Vec<JoinHandle<()>>,
    ) {
        if let Some(listener) = tcp {
            servers.push(tokio::spawn(tcp::serve(
                Arc::clone(self),
                listener,
                Arc::clone(tunnel),
                Arc::clone(&lease),
            )));
        }
        if let Some(socket) = udp {
            servers.push(tokio::spawn(udp::serve(
                Arc::clone(self),
                socket,
                Arc::clone(tunnel),
                Arc::clone(&lease),
            )));
        }
        drop(lease);
    }

    /// Ends the tunnel when its lifecycle says so.
    async fn watch(self: Arc<Self>, tunnel: Arc<ActiveTunnel>) {
        loop {
            let now = Utc::now();
            let wake_at = match lifecycle::verdict(&tunnel.limits, &tunnel.activity(), now) {
                Verdict::End(reason) => {
                    let id = tunnel.id();
                    if self.active().remove(&id).is_some() {
                        self.finish(&tunnel, reason).await;
                    }
                    return;
                }
                Verdict::WakeAt(at) => at,
            };
            let sleep = async {
                match wake_at {
                    Some(at) => tokio::time::sleep((at - now).to_std().unwrap_or_default()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tunnel.cancel.cancelled() => return,
                _ = tunnel.changed.notified() => {}
                _ = sleep => {}
            }
        }
    }

    /// The live session of the tunnel's agent, waiting up to `wait` for it to come back
    /// during the grace period. Only an agent of the tunnel's own project is its agent.
    async fn session_for(&self, tunnel: &ActiveTunnel, wait: Duration) -> Option<LiveSession> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(session) = self.registry.session_in(&tunnel.project, &tunnel.client_id) {
                return Some(session);
            }
            if tokio::time::Instant::now() >= deadline || tunnel.cancel.is_cancelled() {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Live tunnels, optionally of one known client, oldest first.
    pub fn list_open(&self, client_id: Option<&str>) -> Vec<TunnelInfo> {
        let tunnels = match client_id {
            Some(id) => self.tunnels_of_known(id),
            None => self.active().values().cloned().collect(),
        };
        let mut list: Vec<TunnelInfo> = tunnels.iter().map(|t| t.info()).collect();
        list.sort_by(|a, b| {
            (a.record.created_at, &a.record.id).cmp(&(b.record.created_at, &b.record.id))
        });
        list
    }

    /// Past and live tunnels from the store, live ones with their current counters.
    pub async fn list_all(&self, filter: &TunnelFilter) -> Result<Vec<TunnelInfo>, StoreError> {
        let stored = self.store.list_tunnels(filter).await?;
        let active = self.active();
        Ok(stored
            .into_iter()
            .map(|record| match active.get(&record.id) {
                Some(tunnel) => tunnel.info(),
                None => TunnelInfo {
                    record,
                    active_connections: 0,
                },
            })
            .collect())
    }

    /// One tunnel, live (with current counters) or past.
    pub async fn get(&self, tunnel_id: &str) -> Result<Option<TunnelInfo>, StoreError> {
        let live = self.active().get(tunnel_id).map(|tunnel| tunnel.info());
        if live.is_some() {
            return Ok(live);
        }
        Ok(self
            .store
            .get_tunnel(tunnel_id)
            .await?
            .map(|record| TunnelInfo {
                record,
                active_connections: 0,
            }))
    }

    /// A live tunnel of a known client; the API checked the caller against that client's
    /// project, so a tunnel of the same id in another project is not found.
    fn find(&self, client_id: &str, tunnel_id: &str) -> Result<Arc<ActiveTunnel>, TunnelError> {
        let project = self.registry.project_of(client_id);
        self.active()
            .get(tunnel_id)
            .filter(|t| t.client_id == client_id && project.as_deref() == Some(&t.project))
            .cloned()
            .ok_or_else(|| TunnelError::NotFound(tunnel_id.to_owned()))
    }

    /// Replaces a live tunnel's ACL; connections from then on are checked against it.
    pub async fn set_acl(
        &self,
        client_id: &str,
        tunnel_id: &str,
        acl: Option<Acl>,
    ) -> Result<(), TunnelError> {
        let tunnel = self.find(client_id, tunnel_id)?;
        let options = {
            let mut record = lock(&tunnel.record);
            record.options.acl = acl.as_ref().map(ToString::to_string);
            record.options.clone()
        };
        *tunnel.acl.write().unwrap_or_else(|p| p.into_inner()) = acl.map(Arc::new);
        self.store.set_tunnel_options(tunnel_id, &options).await?;
        Ok(())
    }

    /// Closes a tunnel of `client_id` (an operator deleted it). Without `force`, a tunnel
    /// with TCP connections in progress is left alone.
    pub async fn close(
        &self,
        client_id: &str,
        tunnel_id: &str,
        force: bool,
    ) -> Result<(), TunnelError> {
        let tunnel = self.find(client_id, tunnel_id)?;
        let busy = tunnel.open_connections.load(Ordering::Relaxed);
        if busy > 0 && !force && tunnel.protocol != TunnelProtocol::Udp {
            return Err(TunnelError::Busy(busy));
        }
        if self.active().remove(tunnel_id).is_none() {
            return Err(TunnelError::NotFound(tunnel_id.to_owned()));
        }
        self.finish(&tunnel, CloseReason::Deleted).await;
        Ok(())
    }

    /// Stops the tunnel's servers, waits until its port is free and records the end.
    async fn finish(&self, tunnel: &ActiveTunnel, reason: CloseReason) {
        tunnel.cancel.cancel();
        if let Some(subdomain) = &lock(&tunnel.record).options.subdomain {
            lock(&self.proxy_routes).remove(subdomain);
        }
        let servers = std::mem::take(&mut *lock(&tunnel.servers));
        for server in servers {
            let _ = server.await;
        }
        let closed_at = Utc::now();
        {
            let mut record = lock(&tunnel.record);
            record.status = reason.status();
            record.closed_at = Some(closed_at);
            record.close_reason = Some(reason.as_str().to_owned());
        }
        let record = tunnel.snapshot();
        tracing::info!(tunnel = %record.id, client = %record.client_id, "tunnel {}: {}", record.status, reason.as_str());
        self.save(tunnel).await;
        let ended = self
            .store
            .end_tunnel(&record.id, closed_at, record.status, reason.as_str())
            .await;
        if let Err(err) = ended {
            tracing::error!(tunnel = %record.id, "saving closed tunnel: {err}");
        }
        // An operator's delete is recorded by the API with the operator's name.
        if reason != CloseReason::Deleted {
            self.audit_end(&record, reason, "").await;
        }
    }

    /// The agent's session is up: its project's tunnels for its id carry traffic again,
    /// and the tunnels its configuration asks for are opened (those it no longer asks for
    /// end).
    pub async fn client_attached(
        self: &Arc<Self>,
        project: &str,
        client_id: &str,
        remotes: &[String],
    ) {
        for tunnel in self.tunnels_of(project, client_id) {
            tunnel.agent_gone_since_ms.store(0, Ordering::Relaxed);
            tunnel.set_status(TunnelStatus::Opened);
            tunnel.changed.notify_one();
            self.save_status(&tunnel).await;
        }
        self.open_agent_remotes(project, client_id, remotes).await;
    }

    /// Forgets a disconnected client (an operator deleted it) and ends its tunnels: no
    /// agent registering the id later, of any project, picks them up. Returns its project.
    pub async fn delete_client(&self, client_id: &str) -> Result<String, DeleteError> {
        let project = self.registry.delete(client_id).await?;
        self.end_tunnels_of(&project, client_id, CloseReason::ClientDeleted)
            .await;
        Ok(project)
    }

    /// Forgets clients disconnected before `cutoff`, ending their tunnels; returns how
    /// many were forgotten.
    pub async fn purge_clients(&self, cutoff: DateTime<Utc>) -> usize {
        let purged = self.registry.purge_disconnected_before(cutoff).await;
        for client in &purged {
            self.end_tunnels_of(&client.project, &client.id, CloseReason::ClientPurged)
                .await;
        }
        purged.len()
    }

    async fn end_tunnels_of(&self, project: &str, client_id: &str, reason: CloseReason) {
        for tunnel in self.tunnels_of(project, client_id) {
            if self.active().remove(&tunnel.id()).is_some() {
                self.finish(&tunnel, reason).await;
            }
        }
    }

    /// The agent's session ended: its tunnels keep their ports for the grace period.
    pub async fn client_gone(&self, project: &str, client_id: &str) {
        let now = Utc::now().timestamp_millis();
        for tunnel in self.tunnels_of(project, client_id) {
            tunnel.agent_gone_since_ms.store(now, Ordering::Relaxed);
            tunnel.set_status(TunnelStatus::Pending);
            tunnel.changed.notify_one();
            self.save_status(&tunnel).await;
        }
    }

    async fn open_agent_remotes(
        self: &Arc<Self>,
        project: &str,
        client_id: &str,
        remotes: &[String],
    ) {
        let Some(session) = self.registry.session_in(project, client_id) else {
            return;
        };
        let mut wanted = Vec::new();
        for (index, remote) in remotes.iter().enumerate() {
            if !self.settings.allow_client_remotes {
                refuse_remote(
                    &session,
                    remote,
                    "this server opens no tunnels agents ask for themselves ([server] allow_client_remotes = false)",
                );
                continue;
            }
            if index >= MAX_AGENT_REMOTES {
                refuse_remote(
                    &session,
                    remote,
                    &format!("an agent may ask for at most {MAX_AGENT_REMOTES} tunnels"),
                );
                continue;
            }
            match tunnel_spec::parse_tunnel_spec(remote) {
                Ok(spec) => wanted.push((remote, spec)),
                Err(err) => refuse_remote(&session, remote, &err.to_string()),
            }
        }
        let existing: Vec<Arc<ActiveTunnel>> = self
            .tunnels_of(project, client_id)
            .into_iter()
            .filter(|t| lock(&t.record).created_by == CREATED_BY_CLIENT)
            .collect();
        let mut kept = Vec::new();
        for tunnel in existing {
            let record = lock(&tunnel.record).clone();
            let still_wanted = wanted.iter().position(|(_, spec)| {
                spec.remote.host == record.rhost
                    && spec.remote.port == record.rport
                    && spec.protocol.as_str() == record.protocol
                    && spec
                        .local
                        .as_ref()
                        .is_none_or(|l| l.port == record.lport && l.host == record.lhost)
            });
            match still_wanted {
                Some(index) => kept.push(wanted.remove(index)),
                None => {
                    if self.active().remove(&record.id).is_some() {
                        self.finish(&tunnel, CloseReason::ClientGone).await;
                    }
                }
            }
        }
        for (text, spec) in wanted {
            let request = TunnelRequest {
                client_id: client_id.to_owned(),
                local: spec.local,
                remote: spec.remote,
                protocol: spec.protocol,
                scheme: None,
                name: String::new(),
                created_by: CREATED_BY_CLIENT.to_owned(),
                acl: None,
                idle_timeout_minutes: 0,
                auto_close: None,
                check_port: false,
                http_proxy: None,
            };
            let agent = Actor {
                name: client_id.to_owned(),
                kind: ActorKind::Agent,
                ip: None,
            };
            match self.create(request).await {
                Ok(info) => {
                    let event = audit::Event {
                        action: "tunnel.create",
                        resource: &info.record.id,
                        project: Some(&info.record.project),
                        success: true,
                        detail: format!("agent's own tunnel {text}"),
                    };
                    self.audit.record(&agent, event).await;
                }
                Err(err) => {
                    tracing::warn!(client = %client_id, "agent's tunnel {text} not opened: {err}");
                    refuse_remote(&session, text, &err.to_string());
                }
            }
        }
    }

    /// Adds what the tunnel carried since the last write to its stored counters.
    async fn save(&self, tunnel: &ActiveTunnel) {
        tunnel.dirty.store(false, Ordering::Relaxed);
        let id = tunnel.id();
        let delta = tunnel.take_unflushed();
        let last_active = from_ms(tunnel.last_active_ms.load(Ordering::Relaxed));
        if let Err(err) = self
            .store
            .add_tunnel_counters(&id, delta, last_active)
            .await
        {
            tracing::error!(tunnel = %id, "saving tunnel: {err}");
            // Kept for the next flush.
            let mut flushed = lock(&tunnel.flushed);
            *flushed = flushed.since(delta);
            tunnel.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// Writes a live tunnel's status as it is in memory, and its counters.
    async fn save_status(&self, tunnel: &ActiveTunnel) {
        let (id, status) = {
            let record = lock(&tunnel.record);
            (record.id.clone(), record.status)
        };
        if let Err(err) = self.store.set_tunnel_status(&id, status).await {
            tracing::error!(tunnel = %id, "saving tunnel status: {err}");
        }
        self.save(tunnel).await;
    }

    /// Writes counters and idle times that moved; a crash loses at most one period.
    async fn flush(&self) {
        let dirty: Vec<Arc<ActiveTunnel>> = self
            .active()
            .values()
            .filter(|t| t.dirty.load(Ordering::Relaxed))
            .cloned()
            .collect();
        for tunnel in dirty {
            self.save(&tunnel).await;
        }
    }

    /// Where a browser reaches an HTTP proxy tunnel: its subdomain on the shared port, or
    /// its own port at `public_host`. Empty for other tunnels, as in RPort.
    pub fn tunnel_url(&self, record: &TunnelRecord, public_host: &str) -> String {
        if !record.options.http_proxy {
            return String::new();
        }
        let shared_port = self.proxy.shared_port.load(Ordering::Relaxed);
        match (&record.options.subdomain, &self.proxy.shared_host) {
            (Some(subdomain), Some(host)) if shared_port != 0 => match shared_port {
                443 => format!("https://{subdomain}.{host}"),
                port => format!("https://{subdomain}.{host}:{port}"),
            },
            _ if public_host.contains(':') => format!("https://[{public_host}]:{}", record.lport),
            _ => format!("https://{public_host}:{}", record.lport),
        }
    }

    /// Serves the shared proxy port until `shutdown`: each connection goes to the tunnel
    /// its TLS server name (SNI) names, if the tunnel's ACL lets the peer in.
    pub async fn serve_proxy_port(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) {
        if let Ok(address) = listener.local_addr() {
            self.proxy
                .shared_port
                .store(address.port(), Ordering::Relaxed);
        }
        while let Some((socket, peer)) =
            crate::listen::accept(&listener, &shutdown, "the tunnel proxy port").await
        {
            tokio::spawn(Arc::clone(&self).route_proxy_connection(socket, peer));
        }
    }

    async fn route_proxy_connection(
        self: Arc<Self>,
        socket: tokio::net::TcpStream,
        peer: SocketAddr,
    ) {
        let _ = socket.set_nodelay(true);
        crate::listen::cap_public_buffers(&socket);
        // One deadline for the whole handshake, however it is split up below.
        let deadline = tokio::time::Instant::now() + self.proxy.handshake_timeout;
        let acceptor =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), socket);
        let Ok(Ok(start)) = tokio::time::timeout_at(deadline, acceptor).await else {
            return;
        };
        let host = start
            .client_hello()
            .server_name()
            .map(|name| name.trim_end_matches('.').to_ascii_lowercase());
        let suffix = self.proxy.shared_host.as_ref().map(|h| format!(".{h}"));
        let tunnel = host
            .as_ref()
            .zip(suffix.as_ref())
            .and_then(|(host, suffix)| {
                let subdomain = host.strip_suffix(suffix.as_str())?;
                lock(&self.proxy_routes).get(subdomain).cloned()
            });
        let config = self.proxy.acceptor.config().clone();
        let Some(tunnel) = tunnel else {
            // Unknown names get a 404 over TLS, not a hint of which names exist.
            if let Ok(Ok(stream)) =
                tokio::time::timeout_at(deadline, start.into_stream(config)).await
            {
                http_proxy::serve_unknown_host(stream, self.proxy.header_timeout).await;
            }
            return;
        };
        if !tunnel.acl_allows(peer.ip()) {
            tunnel.refuse();
            tracing::debug!(tunnel = %tunnel.id(), %peer, "proxy connection refused by the tunnel's ACL");
            return;
        }
        let Some(options) = tunnel.proxy.clone() else {
            return;
        };
        if !tunnel.connection_opened(peer) {
            return;
        }
        match tokio::time::timeout_at(deadline, start.into_stream(config)).await {
            Ok(Ok(stream)) => {
                http_proxy::serve(self, tunnel, options, stream, peer, host).await;
            }
            _ => tunnel.connection_closed(peer.ip(), 0, 0),
        }
    }

    /// Server shutdown: every tunnel ends.
    pub async fn shutdown(&self) {
        let all: Vec<Arc<ActiveTunnel>> = self.active().drain().map(|(_, t)| t).collect();
        for tunnel in all {
            self.finish(&tunnel, CloseReason::ServerShutdown).await;
        }
    }
}

fn refuse_remote(session: &LiveSession, remote: &str, reason: &str) {
    let message = rport_protocol::ControlMessage::RemoteRefused {
        remote: remote.to_owned(),
        reason: reason.to_owned(),
    };
    let _ = session.handle.send_control(message.to_json().into());
}

async fn flush_periodically(manager: std::sync::Weak<TunnelManager>) {
    let mut interval = tokio::time::interval(FLUSH_EVERY);
    interval.tick().await;
    loop {
        interval.tick().await;
        let Some(manager) = manager.upgrade() else {
            return;
        };
        manager.flush().await;
    }
}

#[cfg(test)]
mod connection_limit_tests {
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

    #[test]
    fn an_ipv6_64_counts_as_one_source_and_v4_mapped_as_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(c));
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().expect("ip");
        assert_eq!(
            source_key(mapped),
            "127.0.0.2".parse::<IpAddr>().expect("ip")
        );
    }
}
