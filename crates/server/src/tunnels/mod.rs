//! On-demand tunnels: a public port on the server whose connections (or datagrams) are
//! carried through an agent's session to a target on the agent's side, and the rules that
//! open, keep and end them.

mod active;
mod agent_check;
pub mod changes;
pub mod http_proxy;
mod lifecycle;
mod limits;
mod persistence;
pub mod port_pool;

mod remotes;
mod stored;
mod tcp;
mod udp;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rport_protocol::ip_rules::Acl;
use rport_protocol::tunnel_spec::{DEFAULT_LOCAL_HOST, Endpoint, TunnelProtocol};
use rport_store::{
    Store, StoreError, TunnelCounters, TunnelFilter, TunnelOptions, TunnelRecord, TunnelStatus,
};
use tokio::task::JoinHandle;

pub use agent_check::CheckError;
use lifecycle::Verdict;
pub use lifecycle::{CloseReason, MAX_AUTO_CLOSE, MAX_IDLE_TIMEOUT_MINUTES};

use crate::domain::audit::{self, Actor, AuditLog};
use crate::domain::registry::{DeleteError, LiveSession, Registry};
use crate::domain::secrets::{Secret, hash_password};
use crate::tunnels::port_pool::{BoundPort, PoolError, PortPool};
use active::ActiveTunnel;
pub use limits::default_max_connections_total;
use limits::{ConnectionLimits, Full};
use persistence::flush_periodically;

/// Who created a tunnel that the agent's own configuration asked for.
pub const CREATED_BY_AGENT: &str = "client";

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

/// What an operator (or an agent's configuration) asks for.
#[derive(Debug, Clone)]
pub struct TunnelRequest {
    pub agent_id: String,
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
    pub auth_bans: crate::auth::bans::BanList,
    /// `[server] handshake_timeout`: public clients get as long as agents to finish TLS.
    pub handshake_timeout: std::time::Duration,
    /// `[api] read_header_timeout`: one bound on request headers for every HTTP surface.
    pub header_timeout: std::time::Duration,
    /// Where connections for other nodes' proxy tunnels go, once the peer channel is up.
    pub relay: std::sync::OnceLock<Arc<dyn http_proxy::ProxyRelay>>,
}

#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("client {0} not found or not connected")]
    AgentNotConnected(String),
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

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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
    /// What all tunnels carried together, for the metrics.
    totals: Arc<crate::metrics::TunnelTotals>,
    /// Those told when a tunnel opens, waits for its agent, closes or changes its ACL.
    watchers: changes::Watchers,
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
            totals: Arc::default(),
            watchers: changes::Watchers::default(),
        });
        let live = TunnelFilter {
            open_only: true,
            ..Default::default()
        };
        // Only this node's: another node's live tunnels carry traffic there. Those nobody
        // holds were saved before clusters existed, by a single server: this one.
        let node = manager.registry.node().to_owned();
        for record in manager.store.list_tunnels(&live).await? {
            if record
                .owner_node
                .as_deref()
                .is_none_or(|owner| owner == node)
            {
                manager.restore(record, false).await;
            }
        }
        tokio::spawn(flush_periodically(Arc::downgrade(&manager)));
        Ok(manager)
    }

    /// Records in the audit log that rportd itself ended a tunnel.
    async fn audit_end(&self, record: &TunnelRecord, reason: CloseReason, more: &str) {
        let event = audit::Event {
            action: "tunnel.close",
            resource: &record.id,
            project: Some(&record.project),
            success: true,
            detail: format!("{} (client {}){more}", reason.as_str(), record.agent_id),
        };
        self.audit
            .record_for_client(&Actor::system(), event, &record.agent_id)
            .await;
    }

    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ActiveTunnel>>> {
        lock(&self.active)
    }

    /// Hears every tunnel change from now on, this node's and (in a cluster) the others'.
    pub fn watch(&self) -> tokio::sync::broadcast::Receiver<changes::TunnelChanged> {
        self.watchers.watch()
    }

    /// Tells `others` of every tunnel change made here from now on.
    pub fn tell_others(&self, others: Arc<dyn changes::TunnelChanges>) {
        self.watchers.tell_others(others);
    }

    /// Another node changed a tunnel: this node's watchers hear it.
    pub fn changed_elsewhere(&self, key: &str) -> Result<(), String> {
        self.watchers.changed_elsewhere(key)
    }

    /// Tells the watchers of the live `tunnel` as it is now.
    fn tell(&self, tunnel: &ActiveTunnel) {
        let change = changes::TunnelChanged::of(&lock(&tunnel.record));
        self.watchers.changed_here(change);
    }

    /// The live tunnels of client `agent_id` in `project`.
    fn tunnels_of(&self, project: &str, agent_id: &str) -> Vec<Arc<ActiveTunnel>> {
        self.active()
            .values()
            .filter(|t| t.agent_id == agent_id && t.project == project)
            .cloned()
            .collect()
    }

    /// The live tunnels of client `agent_id` in the project the registry knows it in;
    /// none for an unknown id.
    fn tunnels_of_known(&self, agent_id: &str) -> Vec<Arc<ActiveTunnel>> {
        match self.registry.project_of(agent_id) {
            Some(project) => self.tunnels_of(&project, agent_id),
            None => Vec::new(),
        }
    }

    /// The project of a live tunnel made for `agent_id`, whether or not the registry
    /// still knows that id: an agent of another project may not register it meanwhile.
    pub fn project_holding(&self, agent_id: &str) -> Option<String> {
        self.active()
            .values()
            .find(|t| t.agent_id == agent_id)
            .map(|t| t.project.clone())
    }

    /// Checks with the agent, opens the public port and starts forwarding.
    pub async fn create(
        self: &Arc<Self>,
        request: TunnelRequest,
    ) -> Result<TunnelInfo, TunnelError> {
        let (session, project) = self
            .registry
            .session_and_project(&request.agent_id)
            .ok_or_else(|| TunnelError::AgentNotConnected(request.agent_id.clone()))?;
        if let Some(local) = &request.local {
            self.pool.check_allowed(local.port)?;
        }
        self.check_duplicates(&project, &request)?;
        // The agent checked its own remotes against its allow-list when it loaded them.
        if request.created_by != CREATED_BY_AGENT {
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
            agent_id: request.agent_id.clone(),
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
            owner_node: Some(self.registry.node().to_owned()),
            damage: None,
        };
        self.store.insert_tunnel(&record).await?;
        let tunnel = ActiveTunnel::new(record, request.acl, None);
        let info = tunnel.info();
        tracing::info!(
            tunnel = %info.record.id, client = %info.record.agent_id,
            "tunnel opened: {}:{}/{} -> {}:{}", info.record.lhost, info.record.lport,
            info.record.protocol, info.record.rhost, info.record.rport
        );
        self.launch(tunnel, bound).await;
        Ok(info)
    }

    fn check_duplicates(&self, project: &str, request: &TunnelRequest) -> Result<(), TunnelError> {
        let acl = request.acl.as_ref().map(ToString::to_string);
        for tunnel in self.tunnels_of(project, &request.agent_id) {
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
        tunnel.totals = Arc::clone(&self.totals);
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
        tokio::spawn(Arc::clone(self).watch_lifecycle(Arc::clone(&tunnel)));
        self.tell(&tunnel);
        tunnel
    }

    fn serve_ports(
        self: &Arc<Self>,
        tunnel: &Arc<ActiveTunnel>,
        tcp: Option<tokio::net::TcpListener>,
        udp: Option<tokio::net::UdpSocket>,
        lease: Arc<crate::tunnels::port_pool::PortLease>,
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
    async fn watch_lifecycle(self: Arc<Self>, tunnel: Arc<ActiveTunnel>) {
        loop {
            let now = Utc::now();
            let wake_at = match lifecycle::verdict(&tunnel.limits, &tunnel.activity(now), now) {
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
            if let Some(session) = self.registry.session_in(&tunnel.project, &tunnel.agent_id) {
                return Some(session);
            }
            if tokio::time::Instant::now() >= deadline || tunnel.cancel.is_cancelled() {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Live tunnels, optionally of one known client, oldest first.
    /// What all tunnels carried together, for the metrics.
    pub fn totals(&self) -> Arc<crate::metrics::TunnelTotals> {
        Arc::clone(&self.totals)
    }

    /// Tunnels holding their ports here, by project and protocol (`tcp`, `udp`,
    /// `tcp+udp`), for the metrics.
    pub fn open_by_project_and_protocol(&self) -> BTreeMap<(String, &'static str), u64> {
        let mut open = BTreeMap::new();
        for tunnel in self.active().values() {
            let key = (tunnel.project.clone(), tunnel.protocol.as_str());
            *open.entry(key).or_insert(0) += 1;
        }
        open
    }

    pub fn list_open(&self, agent_id: Option<&str>) -> Vec<TunnelInfo> {
        let tunnels = match agent_id {
            Some(id) => self.tunnels_of_known(id),
            None => self.active().values().cloned().collect(),
        };
        let mut list: Vec<TunnelInfo> = tunnels.iter().map(|t| t.info()).collect();
        list.sort_by(|a, b| {
            (a.record.created_at, &a.record.id).cmp(&(b.record.created_at, &b.record.id))
        });
        list
    }

    /// Live tunnels of every node of the cluster, optionally of one known client, oldest
    /// first: this node's with their current counters, the others' as last flushed to
    /// the store. With `others` false (no other node is alive) the store is not asked.
    pub async fn list_live(
        &self,
        agent_id: Option<&str>,
        others: bool,
    ) -> Result<Vec<TunnelInfo>, StoreError> {
        let mut list = self.list_open(agent_id);
        if !others {
            return Ok(list);
        }
        let project = agent_id.map(|id| self.registry.project_of(id));
        let filter = TunnelFilter {
            agent_id: agent_id.map(str::to_owned),
            open_only: true,
            ..Default::default()
        };
        let stored = self.store.list_tunnels(&filter).await?;
        let node = self.registry.node();
        list.extend(
            stored
                .into_iter()
                .filter(|r| r.owner_node.as_deref().is_some_and(|owner| owner != node))
                .filter(|r| {
                    project
                        .as_ref()
                        .is_none_or(|p| p.as_deref() == Some(&r.project))
                })
                .map(|record| TunnelInfo {
                    record,
                    active_connections: 0,
                }),
        );
        list.sort_by(|a, b| {
            (a.record.created_at, &a.record.id).cmp(&(b.record.created_at, &b.record.id))
        });
        Ok(list)
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
    fn find(&self, agent_id: &str, tunnel_id: &str) -> Result<Arc<ActiveTunnel>, TunnelError> {
        let project = self.registry.project_of(agent_id);
        self.active()
            .get(tunnel_id)
            .filter(|t| t.agent_id == agent_id && project.as_deref() == Some(&t.project))
            .cloned()
            .ok_or_else(|| TunnelError::NotFound(tunnel_id.to_owned()))
    }

    /// Replaces a live tunnel's ACL; connections from then on are checked against it.
    pub async fn set_acl(
        &self,
        agent_id: &str,
        tunnel_id: &str,
        acl: Option<Acl>,
    ) -> Result<(), TunnelError> {
        let tunnel = self.find(agent_id, tunnel_id)?;
        let options = {
            let mut record = lock(&tunnel.record);
            record.options.acl = acl.as_ref().map(ToString::to_string);
            record.options.clone()
        };
        *tunnel.acl.write().unwrap_or_else(|p| p.into_inner()) = acl.map(Arc::new);
        self.store.set_tunnel_options(tunnel_id, &options).await?;
        self.tell(&tunnel);
        Ok(())
    }

    /// Closes a tunnel of `agent_id` (an operator deleted it). Without `force`, a tunnel
    /// with TCP connections in progress is left alone.
    pub async fn close(
        &self,
        agent_id: &str,
        tunnel_id: &str,
        force: bool,
    ) -> Result<(), TunnelError> {
        let tunnel = match self.find(agent_id, tunnel_id) {
            Ok(tunnel) => tunnel,
            Err(err) => {
                return match self.close_unheld(agent_id, tunnel_id).await? {
                    true => Ok(()),
                    false => Err(err),
                };
            }
        };
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

    /// Ends a live tunnel of `agent_id` that no live node holds (its node died and its
    /// agent has not come back yet): nobody carries it, so the store is all there is to
    /// change. Returns whether there was one.
    async fn close_unheld(&self, agent_id: &str, tunnel_id: &str) -> Result<bool, StoreError> {
        let Some(record) = self.store.get_tunnel(tunnel_id).await? else {
            return Ok(false);
        };
        let project = self.registry.project_of(agent_id);
        if !record.is_live()
            || record.agent_id != agent_id
            || project.as_deref() != Some(&record.project)
        {
            return Ok(false);
        }
        if let Some(holder) = &record.owner_node {
            let nodes = self.store.list_nodes().await?;
            let alive = nodes.iter().any(|n| n.id == *holder && n.alive);
            if alive {
                return Ok(false);
            }
        }
        let reason = CloseReason::Deleted;
        let ended = self
            .store
            .end_tunnel(
                tunnel_id,
                Utc::now(),
                reason.status(),
                reason.as_str(),
                None,
            )
            .await?;
        if ended {
            tracing::info!(tunnel = %tunnel_id, client = %agent_id, holder = ?record.owner_node, "tunnel of a node that is gone ended in the store");
            let mut change = changes::TunnelChanged::of(&record);
            change.status = reason.status().as_str().to_owned();
            self.watchers.changed_here(change);
        }
        Ok(ended)
    }

    /// Stops the tunnel's servers and waits until its port is free.
    async fn stop_serving(&self, tunnel: &ActiveTunnel) {
        tunnel.cancel.cancel();
        if let Some(subdomain) = &lock(&tunnel.record).options.subdomain {
            lock(&self.proxy_routes).remove(subdomain);
        }
        let servers = std::mem::take(&mut *lock(&tunnel.servers));
        for server in servers {
            let _ = server.await;
        }
    }

    /// Stops the tunnel's servers, waits until its port is free and records the end.
    async fn finish(&self, tunnel: &ActiveTunnel, reason: CloseReason) {
        self.stop_serving(tunnel).await;
        let closed_at = Utc::now();
        {
            let mut record = lock(&tunnel.record);
            record.status = reason.status();
            record.closed_at = Some(closed_at);
            record.close_reason = Some(reason.as_str().to_owned());
        }
        let record = tunnel.snapshot();
        tracing::info!(tunnel = %record.id, client = %record.agent_id, "tunnel {}: {}", record.status, reason.as_str());
        self.save(tunnel).await;
        let ended = self
            .store
            .end_tunnel(
                &record.id,
                closed_at,
                record.status,
                reason.as_str(),
                Some(self.registry.node()),
            )
            .await;
        if let Err(err) = ended {
            tracing::error!(tunnel = %record.id, "saving closed tunnel: {err}");
        }
        self.watchers
            .changed_here(changes::TunnelChanged::of(&record));
        // An operator's delete is recorded by the API with the operator's name.
        if reason != CloseReason::Deleted {
            self.audit_end(&record, reason, "").await;
        }
    }

    /// The agent's session is up: its project's tunnels for its id carry traffic again,
    /// and the tunnels its configuration asks for are opened (those it no longer asks for
    /// end).
    pub async fn agent_attached(
        self: &Arc<Self>,
        project: &str,
        agent_id: &str,
        remotes: &[String],
    ) {
        self.adopt(agent_id).await;
        for tunnel in self.tunnels_of(project, agent_id) {
            tunnel.agent_back();
            tunnel.set_status(TunnelStatus::Opened);
            tunnel.changed.notify_one();
            self.save_status(&tunnel).await;
            self.tell(&tunnel);
        }
        self.open_agent_remotes(project, agent_id, remotes).await;
    }

    /// Takes over the agent's live tunnels that another node held (it died, or the agent
    /// left it): their ports open here.
    async fn adopt(self: &Arc<Self>, agent_id: &str) {
        let adopted = match self
            .store
            .adopt_tunnels(agent_id, self.registry.node())
            .await
        {
            Ok(adopted) => adopted,
            Err(err) => {
                tracing::error!(client = %agent_id, "taking over the client's tunnels: {err}");
                return;
            }
        };
        for record in adopted {
            if self.active().contains_key(&record.id) {
                continue;
            }
            tracing::info!(tunnel = %record.id, client = %agent_id, from = ?record.owner_node, "taking over tunnel from another node");
            self.restore(record, true).await;
        }
    }

    /// Another node holds the agent now: its tunnels here stop without being ended, for
    /// that node carries them on. What they carried so far is still counted.
    pub async fn agent_moved(&self, agent_id: &str) {
        let moved: Vec<Arc<ActiveTunnel>> = {
            let mut active = self.active();
            let ids: Vec<String> = active
                .values()
                .filter(|t| t.agent_id == agent_id)
                .map(|t| t.id())
                .collect();
            ids.iter().filter_map(|id| active.remove(id)).collect()
        };
        for tunnel in moved {
            self.stop_serving(&tunnel).await;
            self.save(&tunnel).await;
            tracing::info!(tunnel = %tunnel.id(), client = %agent_id, "tunnel handed over to the node that holds its client now");
        }
    }

    /// Forgets a disconnected client (an operator deleted it) and ends its tunnels: no
    /// agent registering the id later, of any project, picks them up. Returns its project.
    pub async fn delete_agent(&self, agent_id: &str) -> Result<String, DeleteError> {
        let project = self.registry.delete(agent_id).await?;
        self.end_tunnels_of(&project, agent_id, CloseReason::AgentDeleted)
            .await;
        Ok(project)
    }

    /// Forgets clients disconnected before `cutoff`, ending their tunnels; returns how
    /// many were forgotten.
    pub async fn purge_agents(&self, cutoff: DateTime<Utc>) -> usize {
        let purged = self.registry.purge_disconnected_before(cutoff).await;
        for client in &purged {
            self.end_tunnels_of(&client.project, &client.id, CloseReason::AgentPurged)
                .await;
        }
        purged.len()
    }

    async fn end_tunnels_of(&self, project: &str, agent_id: &str, reason: CloseReason) {
        for tunnel in self.tunnels_of(project, agent_id) {
            if self.active().remove(&tunnel.id()).is_some() {
                self.finish(&tunnel, reason).await;
            }
        }
    }

    /// The agent's session ended: its tunnels keep their ports for the grace period.
    pub async fn agent_gone(&self, project: &str, agent_id: &str) {
        for tunnel in self.tunnels_of(project, agent_id) {
            tunnel.agent_left();
            tunnel.set_status(TunnelStatus::Pending);
            tunnel.changed.notify_one();
            self.save_status(&tunnel).await;
            self.tell(&tunnel);
        }
    }

    /// Sends connections of the shared proxy port for other nodes' tunnels through
    /// `relay` from now on.
    pub fn relay_through(&self, relay: Arc<dyn http_proxy::ProxyRelay>) {
        let _ = self.proxy.relay.set(relay);
    }

    /// Wrong basic-auth passwords on proxy tunnels.
    pub fn auth_bans(&self) -> &crate::auth::bans::BanList {
        &self.proxy.auth_bans
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

    /// Server shutdown: every tunnel ends.
    pub async fn shutdown(&self) {
        let all: Vec<Arc<ActiveTunnel>> = self.active().drain().map(|(_, t)| t).collect();
        for tunnel in all {
            self.finish(&tunnel, CloseReason::ServerShutdown).await;
        }
    }
}
