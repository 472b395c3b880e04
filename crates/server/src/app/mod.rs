//! Wires rportd together: data dir, store, identity, authentication, agent listener, API,
//! housekeeping, and an orderly shutdown.

pub mod cli;
mod cluster_events;
pub(crate) mod data_dir;
mod gauges;
mod housekeeping;
mod identity;
pub mod migrate;
mod proxy_relay;
pub mod user_command;

use std::path::Path;
use std::sync::Arc;

use rport_protocol::Fingerprint;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::agents::listener::AgentBans;
use crate::agents::listener::AgentListener;
use crate::api::{self, AppState};
use crate::auth::agent_credentials::{AgentAuthenticator, GeneratedCredential};
use crate::auth::api_callers::ApiAuth;
use crate::auth::bans::BanList;
use crate::cluster::Cluster;
use crate::cluster::peer::{self, PeerClient, PeerServer};
use crate::config::ServerConfig;
use crate::domain::audit::AuditLog;
use crate::domain::registry::Registry;
use crate::metrics::Metrics;
use crate::net::http_serve;
use crate::net::web_tls::{self, WebCert};
use crate::tunnels::port_pool::PortPool;
use crate::tunnels::{ProxySetup, TunnelManager, TunnelSettings};
use data_dir::{create_data_dir, write_fingerprint};
use housekeeping::{
    audit_retention_loop, heartbeat_loop, purge_loop, reload_user_file, session_purge_loop,
};
use rport_store::Store;
use tokio_util::task::TaskTracker;

/// Name of the file in `data_dir` holding the fingerprint agents pin.
pub const FINGERPRINT_FILE: &str = "rportd-fingerprint.txt";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data_dir {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("store: {0}")]
    Store(#[from] rport_store::StoreError),
    #[error(
        "database {db}: {what} does not parse ({reason}). rportd does not start on it rather than guess: restore {db} from a backup, or correct or delete that record and start again"
    )]
    Damaged {
        db: String,
        what: String,
        reason: String,
    },
    #[error("server identity: {0}")]
    Identity(#[from] rport_transport::tls::TlsError),
    #[error("{what}: {source}")]
    Certificate {
        what: &'static str,
        source: rport_transport::tls::TlsError,
    },
    #[error("binding {what} on {address}: {source}")]
    Bind {
        what: &'static str,
        address: String,
        source: std::io::Error,
    },
}

/// A prepared server: state loaded, not yet listening.
pub struct Server {
    state: Arc<AppState>,
    agent_listener: Arc<AgentListener>,
    /// Set when the API speaks HTTPS.
    api_tls: Option<TlsAcceptor>,
    /// Serves the other nodes on `Listeners::peer`.
    peer_server: PeerServer,
    /// Credentials created on this first start; the caller shows them once.
    pub generated: Vec<GeneratedCredential>,
}

/// The sockets a server listens on; bound separately so tests can use port 0.
pub struct Listeners {
    pub agents: TcpListener,
    pub api: Option<TcpListener>,
    /// `[server] tunnel_proxy_address`: the shared port of HTTP proxy tunnels.
    pub tunnel_proxy: Option<TcpListener>,
    /// `[cluster] peer_address` (or its default, see `cluster::peer::peer_address`): the
    /// channel the other nodes of a cluster use.
    pub peer: Option<TcpListener>,
    /// `[metrics] address`: `GET /metrics` without authentication.
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    pub async fn bind(config: &ServerConfig) -> Result<Self, StartError> {
        let bind = |what: &'static str, address: String| async move {
            crate::net::listen::bind_str(&address)
                .await
                .map_err(|source| StartError::Bind {
                    what,
                    address,
                    source,
                })
        };
        Ok(Self {
            agents: bind(
                "the agent listener ([server] address)",
                config.server.address.clone(),
            )
            .await?,
            api: match &config.api.address {
                Some(address) => Some(bind("the API ([api] address)", address.clone()).await?),
                None => None,
            },
            tunnel_proxy: match &config.server.tunnel_proxy_address {
                Some(address) => Some(
                    bind(
                        "the tunnel proxy ([server] tunnel_proxy_address)",
                        address.clone(),
                    )
                    .await?,
                ),
                None => None,
            },
            peer: match peer::peer_address(config) {
                Some(address) => {
                    Some(bind("the peer channel ([cluster] peer_address)", address.listen).await?)
                }
                None => None,
            },
            metrics: match &config.metrics.address {
                Some(address) => {
                    Some(bind("the metrics ([metrics] address)", address.clone()).await?)
                }
                None => None,
            },
        })
    }
}

impl Server {
    /// Creates the data dir, opens the store the configuration names (`[database]`), and
    /// loads the state.
    pub async fn prepare(config: ServerConfig) -> Result<Self, StartError> {
        create_data_dir(&config.server.data_dir)?;
        let store = rport_store::open(&config.database, &config.server.data_dir)
            .await
            .map_err(|err| damaged(&config, err))?;
        Self::load(config, store).await
    }

    /// Loads the state from `store` and prepares every part, binding nothing: in-process
    /// tests build a server this way and call its [`Server::router`] directly.
    pub async fn with_store(
        config: ServerConfig,
        store: Arc<dyn Store>,
    ) -> Result<Self, StartError> {
        create_data_dir(&config.server.data_dir)?;
        Self::load(config, store).await
    }

    /// Everything after the data dir exists and the store is open.
    async fn load(config: ServerConfig, store: Arc<dyn Store>) -> Result<Self, StartError> {
        let data_dir = config.server.data_dir.clone();
        let damaged = |err| damaged(&config, err);
        let identity = identity::load(&config, &*store).await?;
        let fingerprint = identity.fingerprint();
        write_fingerprint(&data_dir, fingerprint)?;
        let node_id = data_dir::node_id(&data_dir)?;

        let (agent_auth, agent_credential) =
            AgentAuthenticator::load(&config.server.agent_auth, &store)
                .await
                .map_err(damaged)?;
        for project in agent_auth.projects() {
            let record = rport_store::ProjectRecord {
                name: project.clone(),
                key: project,
                created_at: chrono::Utc::now(),
            };
            store.insert_project(&record).await?;
        }
        let (api_auth, admin_credential) = ApiAuth::load(&config.api, Arc::clone(&store)).await?;
        let registry = Arc::new(
            Registry::load(Arc::clone(&store), &node_id)
                .await
                .map_err(damaged)?,
        );
        let peer_address = peer::peer_address(&config);
        let me = node_record(&config, &node_id, peer_address.as_ref());
        if let Some(address) = &peer_address {
            tracing::info!(
                "node {node_id}: the other nodes of this cluster reach this one at {} ([cluster] peer_address)",
                address.advertised
            );
        }
        let cluster = Cluster::join(Arc::clone(&store), me).await?;
        let peers = Arc::new(PeerClient::new(&identity)?);
        let peer_server = PeerServer::new(&identity, &node_id)?;
        let pool = PortPool::new(config.server.port_pool.clone());
        let settings = TunnelSettings {
            grace_period: config.server.tunnel_grace_period,
            check_port_timeout: config.server.check_port_timeout,
            allow_client_remotes: config.server.allow_client_remotes,
            max_connections: config.server.max_connections_per_tunnel,
            max_connections_per_source: config.server.max_connections_per_source,
            max_connections_total: config.server.max_connections_total.unwrap_or_else(|| {
                let total = crate::tunnels::default_max_connections_total(total_memory());
                tracing::info!(
                    "tunnels hold at most {total} connections at once, sized to this machine's memory ([server] max_connections_total)"
                );
                total
            }),
        };
        let audit = Arc::new(AuditLog::new(Arc::clone(&store)));
        let tunnels = TunnelManager::start(
            Arc::clone(&registry),
            Arc::clone(&store),
            pool,
            settings,
            Arc::clone(&audit),
            proxy_setup(&config, &data_dir)?,
        )
        .await
        .map_err(damaged)?;
        let api_tls = match &config.api.tls {
            None => None,
            Some(files) => {
                let what = "[api] cert_file / key_file";
                let cert = WebCert::load(&files.cert, &files.key)
                    .map_err(|source| StartError::Certificate { what, source })?;
                let config = cert
                    .server_config()
                    .map_err(|source| StartError::Certificate { what, source })?;
                Some(TlsAcceptor::from(config))
            }
        };

        let metrics = Arc::new(Metrics::new(tunnels.totals(), api::route_templates()));
        let agent_auth = Arc::new(agent_auth);
        let agent_listener = Arc::new(AgentListener {
            acceptor: TlsAcceptor::from(identity.server_config()?),
            auth: Arc::clone(&agent_auth),
            registry: Arc::clone(&registry),
            tunnels: Arc::clone(&tunnels),
            handshakes: Arc::new(Semaphore::new(config.server.max_concurrent_handshakes)),
            handshake_timeout: config.server.handshake_timeout,
            bans: Arc::new(AgentBans::new(
                config.server.max_failed_login,
                config.server.ban_time,
            )),
            audit: Arc::clone(&audit),
            binding: crate::agents::listener::CredentialBinding {
                multiuse: config.server.auth_multiuse_creds,
                equal_ids: config.server.equate_clientauthid_clientid,
            },
            max_streams: config.server.max_connections_per_agent as usize,
            metrics: Arc::clone(&metrics),
        });
        let api_bans = BanList::new(config.api.max_failed_login, config.api.ban_time);
        let publisher = Arc::new(cluster_events::Publisher(Arc::clone(&cluster)));
        registry.tell(Arc::clone(&publisher) as _);
        tunnels.tell_others(Arc::clone(&publisher) as _);
        tunnels.relay_through(Arc::new(proxy_relay::PeerRelay {
            peers: Arc::clone(&peers),
            cluster: Arc::clone(&cluster),
        }));
        let state = Arc::new(AppState {
            config,
            fingerprint,
            registry,
            tunnels,
            auth: api_auth,
            store,
            agent_auth,
            api_bans,
            audit,
            cluster,
            peers,
            metrics,
            events: Default::default(),
        });
        state.metrics.read_gauges_from(Box::new(gauges::LiveGauges {
            state: Arc::downgrade(&state),
            agent_bans: Arc::clone(&agent_listener.bans),
        }));
        for (name, bans) in cluster_events::ban_lists(&state, &agent_listener) {
            bans.share(name, Arc::clone(&publisher) as _);
        }
        Ok(Self {
            state,
            agent_listener,
            api_tls,
            peer_server,
            generated: admin_credential
                .into_iter()
                .chain(agent_credential)
                .collect(),
        })
    }

    /// The API as a router, for serving or for calling in-process. Requests must carry
    /// the peer's address as `axum::extract::ConnectInfo<SocketAddr>`.
    pub fn router(&self) -> axum::Router {
        api::router(Arc::clone(&self.state))
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.state.fingerprint
    }

    /// Reads `[api] auth_file` again on every SIGUSR1, as RPort does. Installed with or
    /// without a file, so that the signal never ends the process.
    #[cfg(unix)]
    pub fn reload_user_file_on_signal(&self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut usr1 = signal(SignalKind::user_defined1())?;
        let file = self.state.config.api.auth_file.clone();
        let audit = Arc::clone(&self.state.audit);
        tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                match &file {
                    Some(file) => reload_user_file(file, &audit).await,
                    None => tracing::warn!("SIGUSR1: there is no [api] auth_file to read again"),
                }
            }
        });
        Ok(())
    }

    /// Serves until `shutdown` is cancelled, then closes tunnels and sessions.
    pub async fn run(
        self,
        listeners: Listeners,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let agents =
            tokio::spawn(Arc::clone(&self.agent_listener).run(listeners.agents, shutdown.clone()));
        let (events_in, events_out) = tokio::sync::mpsc::channel(crate::cluster::QUEUE);
        let cluster =
            tokio::spawn(Arc::clone(&self.state.cluster).run(events_in, shutdown.clone()));
        tokio::spawn(cluster_events::apply(
            Arc::clone(&self.state),
            Arc::clone(&self.agent_listener),
            events_out,
        ));
        let purge = tokio::spawn(purge_loop(Arc::clone(&self.state), shutdown.clone()));
        let heartbeats = tokio::spawn(heartbeat_loop(Arc::clone(&self.state), shutdown.clone()));
        tokio::spawn(session_purge_loop(
            Arc::clone(&self.state),
            shutdown.clone(),
        ));
        let audit_retention = tokio::spawn(audit_retention_loop(
            Arc::clone(&self.state),
            shutdown.clone(),
        ));
        let api_connections = TaskTracker::new();
        let api = listeners.api.map(|listener| {
            tokio::spawn(http_serve::serve_api(
                listener,
                self.api_tls.clone(),
                self.router(),
                self.state.config.api.read_header_timeout,
                shutdown.clone(),
                api_connections.clone(),
            ))
        });
        let metrics = listeners.metrics.map(|listener| {
            let metrics = Arc::clone(&self.state.metrics);
            let router = axum::Router::new().route(
                "/metrics",
                axum::routing::get(move || async move { api::scrape::text_of(&metrics) }),
            );
            tokio::spawn(http_serve::serve_api(
                listener,
                None,
                router,
                self.state.config.api.read_header_timeout,
                shutdown.clone(),
                api_connections.clone(),
            ))
        });
        let peer_connections = TaskTracker::new();
        let peer = listeners.peer.map(|listener| {
            tokio::spawn(self.peer_server.serve(
                listener,
                api::router(Arc::clone(&self.state)),
                shutdown.clone(),
                peer_connections.clone(),
            ))
        });
        let watch = tokio::spawn(
            Arc::clone(&self.state.peers).watch(Arc::clone(&self.state.cluster), shutdown.clone()),
        );
        let proxy = listeners.tunnel_proxy.map(|listener| {
            tokio::spawn(
                Arc::clone(&self.state.tunnels).serve_proxy_port(listener, shutdown.clone()),
            )
        });
        shutdown.cancelled().await;
        tracing::info!("shutting down");
        self.state.events.close();
        // Agents hear why their session ends, and wait a moment before knocking again.
        let going_away = rport_protocol::ControlMessage::GoingAway {
            retry_after_secs: 2,
        };
        self.state.registry.tell_all(&going_away.to_json().into());
        self.state.tunnels.shutdown().await;
        self.state.registry.close_all();
        let _ = agents.await;
        // After the sessions closed (their agents released): the lease ends last.
        let _ = cluster.await;
        let _ = purge.await;
        let _ = heartbeats.await;
        let _ = audit_retention.await;
        if let Some(proxy) = proxy {
            let _ = proxy.await;
        }
        let _ = watch.await;
        if let Some(peer) = peer {
            let _ = peer.await;
            peer_connections.close();
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(5), peer_connections.wait())
                    .await;
        }
        if let Some(metrics) = metrics {
            let _ = metrics.await;
        }
        if let Some(api) = api {
            let _ = api.await;
            // In-flight requests get a moment; keep-alive connections must not hold us up.
            api_connections.close();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), api_connections.wait())
                .await;
        }
        Ok(())
    }
}

/// This node as it announces itself to the others.
fn node_record(
    config: &ServerConfig,
    id: &str,
    peer_address: Option<&peer::PeerAddress>,
) -> rport_store::NodeRecord {
    let now = chrono::Utc::now();
    let server = &config.server;
    rport_store::NodeRecord {
        id: id.to_owned(),
        peer_address: peer_address
            .map(|address| address.advertised.clone())
            .unwrap_or_default(),
        public_host: server
            .tunnel_host
            .clone()
            .or_else(|| server.url_host())
            .unwrap_or_default(),
        api_address: config.api.address.clone().unwrap_or_default(),
        started_at: now,
        lease_until: now,
        alive: true,
    }
}

/// A damaged record stops the start; the message names the database it is in.
fn damaged(config: &ServerConfig, err: rport_store::StoreError) -> StartError {
    match err {
        rport_store::StoreError::Corrupt { what, reason } => StartError::Damaged {
            db: config.database.location(&config.server.data_dir),
            what,
            reason,
        },
        other => StartError::Store(other),
    }
}

/// The certificate HTTP proxy tunnels present (configured, or self-signed for the names
/// they are reached at) and the TLS client towards devices.
fn proxy_setup(config: &ServerConfig, data_dir: &Path) -> Result<ProxySetup, StartError> {
    let what = "[server] tunnel_proxy_cert_file / tunnel_proxy_key_file";
    let server = &config.server;
    let cert = match &server.tunnel_proxy_tls {
        Some(files) => WebCert::load(&files.cert, &files.key),
        None => {
            let mut names = Vec::new();
            if let Some(host) = &server.tunnel_host {
                names.push(host.clone());
                names.push(format!("*.{host}"));
            }
            names.extend(server.url_host());
            names.push("localhost".to_owned());
            names.dedup();
            WebCert::self_signed(data_dir, "tunnel-proxy", &names)
        }
    }
    .map_err(|source| StartError::Certificate { what, source })?;
    let tls = cert
        .server_config()
        .map_err(|source| StartError::Certificate { what, source })?;
    let device_tls = web_tls::device_client_config().map_err(|source| StartError::Certificate {
        what: "TLS towards devices",
        source,
    })?;
    Ok(ProxySetup {
        acceptor: TlsAcceptor::from(tls),
        device_tls,
        shared_host: server
            .tunnel_proxy_address
            .as_ref()
            .and(server.tunnel_host.clone()),
        shared_port: std::sync::atomic::AtomicU16::new(0),
        auth_bans: crate::auth::bans::BanList::new(
            config.api.max_failed_login,
            config.api.ban_time,
        ),
        handshake_timeout: server.handshake_timeout,
        header_timeout: config.api.read_header_timeout,
        relay: std::sync::OnceLock::new(),
    })
}

/// The machine's memory in bytes, from `/proc/meminfo`; 4 GiB where it cannot be read.
fn total_memory() -> u64 {
    const ASSUMED: u64 = 4 << 30;
    let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") else {
        return ASSUMED;
    };
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(ASSUMED, |kib| kib * 1024)
}
