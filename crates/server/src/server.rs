//! Wires rportd together: data dir, store, identity, authentication, agent listener, API,
//! housekeeping, and an orderly shutdown.

use std::path::Path;
use std::sync::Arc;

use rport_protocol::Fingerprint;
use rport_transport::ServerIdentity;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::agent_auth::{AgentAuthenticator, GeneratedCredential};
use crate::agent_listener::AgentBans;
use crate::agent_listener::AgentListener;
use crate::api::{self, AppState};
use crate::api_auth::ApiAuth;
use crate::audit::{Actor, AuditLog, Event};
use crate::bans::BanList;
use crate::config::{ServerConfig, UserFile};
use crate::http_serve;
use crate::port_pool::PortPool;
use crate::registry::Registry;
use crate::tunnels::{ProxySetup, TunnelManager, TunnelSettings};
use crate::web_tls::{self, WebCert};
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
    /// Credentials created on this first start; the caller shows them once.
    pub generated: Vec<GeneratedCredential>,
}

/// The sockets a server listens on; bound separately so tests can use port 0.
pub struct Listeners {
    pub agents: TcpListener,
    pub api: Option<TcpListener>,
    /// `[server] tunnel_proxy_address`: the shared port of HTTP proxy tunnels.
    pub tunnel_proxy: Option<TcpListener>,
}

impl Listeners {
    pub async fn bind(config: &ServerConfig) -> Result<Self, StartError> {
        let bind = |what: &'static str, address: String| async move {
            crate::listen::bind_str(&address)
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
        })
    }
}

/// Creates the data dir, readable by rportd's user alone.
pub(crate) fn create_data_dir(path: &Path) -> Result<(), StartError> {
    let err = |source| StartError::DataDir {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(path).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

impl Server {
    pub async fn prepare(config: ServerConfig) -> Result<Self, StartError> {
        let data_dir = config.server.data_dir.clone();
        create_data_dir(&data_dir)?;
        let db = config.database.location(&data_dir);
        // A damaged record stops the start; the message names the file it is in.
        let damaged = |err| match err {
            rport_store::StoreError::Corrupt { what, reason } => StartError::Damaged {
                db: db.clone(),
                what,
                reason,
            },
            other => StartError::Store(other),
        };
        let store = rport_store::open(&config.database, &data_dir)
            .await
            .map_err(damaged)?;
        let identity = match &config.server.tls {
            None => ServerIdentity::load_or_create(&data_dir)?,
            Some(files) => {
                ServerIdentity::from_files(&files.cert, &files.key).map_err(|source| {
                    StartError::Certificate {
                        what: "[server] cert_file / key_file",
                        source,
                    }
                })?
            }
        };
        let fingerprint = identity.fingerprint();
        write_fingerprint(&data_dir, fingerprint)?;

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
        let registry = Arc::new(Registry::load(Arc::clone(&store)).await.map_err(damaged)?);
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

        let agent_auth = Arc::new(agent_auth);
        let agent_listener = Arc::new(AgentListener {
            acceptor: TlsAcceptor::from(identity.server_config()?),
            auth: Arc::clone(&agent_auth),
            registry: Arc::clone(&registry),
            tunnels: Arc::clone(&tunnels),
            handshakes: Arc::new(Semaphore::new(config.server.max_concurrent_handshakes)),
            handshake_timeout: config.server.handshake_timeout,
            bans: AgentBans::new(config.server.max_failed_login, config.server.ban_time),
            audit: Arc::clone(&audit),
            binding: crate::agent_listener::CredentialBinding {
                multiuse: config.server.auth_multiuse_creds,
                equal_ids: config.server.equate_clientauthid_clientid,
            },
            max_streams: config.server.max_connections_per_agent as usize,
        });
        let api_bans = BanList::new(config.api.max_failed_login, config.api.ban_time);
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
        });
        Ok(Self {
            state,
            agent_listener,
            api_tls,
            generated: admin_credential
                .into_iter()
                .chain(agent_credential)
                .collect(),
        })
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
        let purge = tokio::spawn(purge_loop(Arc::clone(&self.state), shutdown.clone()));
        let audit_retention = tokio::spawn(audit_retention_loop(
            Arc::clone(&self.state),
            shutdown.clone(),
        ));
        let api_connections = TaskTracker::new();
        let api = listeners.api.map(|listener| {
            tokio::spawn(http_serve::serve_api(
                listener,
                self.api_tls.clone(),
                api::router(Arc::clone(&self.state)),
                self.state.config.api.read_header_timeout,
                shutdown.clone(),
                api_connections.clone(),
            ))
        });
        let proxy = listeners.tunnel_proxy.map(|listener| {
            tokio::spawn(
                Arc::clone(&self.state.tunnels).serve_proxy_port(listener, shutdown.clone()),
            )
        });
        shutdown.cancelled().await;
        tracing::info!("shutting down");
        // Agents hear why their session ends, and wait a moment before knocking again.
        let going_away = rport_protocol::ControlMessage::GoingAway {
            retry_after_secs: 2,
        };
        self.state.registry.tell_all(&going_away.to_json().into());
        self.state.tunnels.shutdown().await;
        self.state.registry.close_all();
        let _ = agents.await;
        let _ = purge.await;
        let _ = audit_retention.await;
        if let Some(proxy) = proxy {
            let _ = proxy.await;
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
        auth_bans: crate::bans::BanList::new(config.api.max_failed_login, config.api.ban_time),
        handshake_timeout: server.handshake_timeout,
        header_timeout: config.api.read_header_timeout,
    })
}

fn write_fingerprint(data_dir: &Path, fingerprint: Fingerprint) -> Result<(), StartError> {
    let path = data_dir.join(FINGERPRINT_FILE);
    std::fs::write(&path, format!("{fingerprint}\n")).map_err(|source| StartError::DataDir {
        path: path.display().to_string(),
        source,
    })
}

/// Deletes audit log entries older than `[api] audit_log_retention`, hourly.
async fn audit_retention_loop(state: Arc<AppState>, shutdown: CancellationToken) {
    let retention = state.config.api.audit_log_retention;
    if retention.is_zero() {
        return;
    }
    let mut interval = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let keep = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        let cutoff = chrono::Utc::now()
            .checked_sub_signed(keep)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        match state.store.purge_audit_before(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("deleted {n} audit log entries older than {cutoff}"),
            Err(err) => tracing::error!("pruning the audit log: {err}"),
        }
    }
}

/// Forgets agents gone longer than `keep_disconnected_clients`, when purging is on.
async fn purge_loop(state: Arc<AppState>, shutdown: CancellationToken) {
    let server = &state.config.server;
    if !server.purge_disconnected_clients {
        return;
    }
    let mut interval = tokio::time::interval(server.purge_disconnected_clients_interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let keep = chrono::Duration::from_std(server.keep_disconnected_clients)
            .unwrap_or(chrono::Duration::MAX);
        let cutoff = chrono::Utc::now()
            .checked_sub_signed(keep)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        let purged = state.tunnels.purge_clients(cutoff).await;
        if purged > 0 {
            tracing::info!("forgot {purged} clients disconnected since before {cutoff}");
        }
    }
}

/// Reads the users file again and says what changed, in the log and the audit log; a file
/// that does not parse changes nothing.
pub async fn reload_user_file(file: &UserFile, audit: &AuditLog) {
    let path = file.path().display().to_string();
    let (success, detail) = match file.reload() {
        Ok(reloaded) => {
            let detail = format!(
                "{} users; added {:?}, removed {:?}, changed {:?}",
                reloaded.users, reloaded.added, reloaded.removed, reloaded.changed
            );
            tracing::info!("[api] auth_file {path} read again: {detail}");
            (true, detail)
        }
        Err(reason) => {
            tracing::error!("[api] auth_file not read again, the users read before stay: {reason}");
            (false, reason)
        }
    };
    let event = Event {
        action: "user.reload",
        resource: &path,
        project: None,
        success,
        detail,
    };
    audit.record(&Actor::system(), event).await;
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
