//! On-demand tunnels: a public port on the server whose connections are carried through an
//! agent's session to a target on the agent's side.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::Utc;
use rport_protocol::OpenRequest;
use rport_protocol::tunnel_spec::{DEFAULT_LOCAL_HOST, Endpoint};
use rport_store::{Store, StoreError, TunnelFilter, TunnelRecord};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::port_pool::{PoolError, PortPool};
use crate::registry::Registry;

/// What an operator asks for.
#[derive(Debug, Clone)]
pub struct TunnelRequest {
    pub client_id: String,
    /// Server side; `None` picks a random allowed port.
    pub local: Option<Endpoint>,
    pub remote: Endpoint,
    pub scheme: Option<String>,
    pub name: String,
    pub created_by: String,
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
}

/// A tunnel whose port is open.
pub struct ActiveTunnel {
    record: Mutex<TunnelRecord>,
    cancel: CancellationToken,
    open_connections: AtomicU32,
    connections_total: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl ActiveTunnel {
    pub fn record(&self) -> TunnelRecord {
        let mut record = match self.record.lock() {
            Ok(record) => record.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if let serde_json::Value::Object(options) = &mut record.options {
            options.insert(
                "connections".into(),
                self.connections_total.load(Ordering::Relaxed).into(),
            );
            options.insert(
                "active_connections".into(),
                self.open_connections.load(Ordering::Relaxed).into(),
            );
            options.insert(
                "bytes_in".into(),
                self.bytes_in.load(Ordering::Relaxed).into(),
            );
            options.insert(
                "bytes_out".into(),
                self.bytes_out.load(Ordering::Relaxed).into(),
            );
        }
        record
    }
}

pub struct TunnelManager {
    registry: Arc<Registry>,
    store: Arc<dyn Store>,
    pool: PortPool,
    active: Mutex<HashMap<String, Arc<ActiveTunnel>>>,
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

impl TunnelManager {
    /// Tunnels left open by a previous run are marked terminated: their ports died with it.
    pub async fn new(
        registry: Arc<Registry>,
        store: Arc<dyn Store>,
        pool: PortPool,
    ) -> Result<Self, StoreError> {
        store
            .close_all_open_tunnels(Utc::now(), "terminated", "server_shutdown")
            .await?;
        Ok(Self {
            registry,
            store,
            pool,
            active: Mutex::new(HashMap::new()),
        })
    }

    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ActiveTunnel>>> {
        self.active
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens the public port and starts forwarding.
    pub async fn create(
        self: &Arc<Self>,
        request: TunnelRequest,
    ) -> Result<TunnelRecord, TunnelError> {
        if self.registry.session(&request.client_id).is_none() {
            return Err(TunnelError::ClientNotConnected(request.client_id));
        }
        let (listener, lhost, lport, lport_random) = match &request.local {
            Some(local) => (
                self.pool.bind_port(&local.host, local.port).await?,
                local.host.clone(),
                local.port,
                false,
            ),
            None => {
                let (listener, port) = self.pool.bind_random(DEFAULT_LOCAL_HOST).await?;
                (listener, DEFAULT_LOCAL_HOST.to_owned(), port, true)
            }
        };
        let scheme = request
            .scheme
            .clone()
            .or_else(|| scheme_for_port(request.remote.port).map(str::to_owned));
        let record = TunnelRecord {
            id: uuid::Uuid::new_v4().to_string(),
            client_id: request.client_id.clone(),
            name: request.name,
            protocol: "tcp".into(),
            lhost,
            lport,
            lport_random,
            rhost: request.remote.host.clone(),
            rport: request.remote.port,
            scheme,
            status: "opened".into(),
            created_by: request.created_by,
            created_at: Utc::now(),
            closed_at: None,
            close_reason: None,
            options: serde_json::json!({}),
        };
        if let Err(err) = self.store.insert_tunnel(&record).await {
            self.pool.release(lport);
            return Err(err.into());
        }
        let tunnel = Arc::new(ActiveTunnel {
            record: Mutex::new(record.clone()),
            cancel: CancellationToken::new(),
            open_connections: AtomicU32::new(0),
            connections_total: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
        });
        self.active().insert(record.id.clone(), Arc::clone(&tunnel));
        let open = OpenRequest {
            tunnel_id: record.id.clone(),
            host: request.remote.host,
            port: request.remote.port,
            protocol: Default::default(),
        };
        tokio::spawn(Arc::clone(self).serve(listener, tunnel, Bytes::from(open.to_json())));
        tracing::info!(
            tunnel = %record.id, client = %record.client_id,
            "tunnel opened: {}:{} -> {}:{}", record.lhost, record.lport, record.rhost, record.rport
        );
        Ok(record)
    }

    async fn serve(self: Arc<Self>, listener: TcpListener, tunnel: Arc<ActiveTunnel>, open: Bytes) {
        let client_id = tunnel.record().client_id;
        loop {
            let accepted = tokio::select! {
                _ = tunnel.cancel.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let socket = match accepted {
                Ok((socket, _peer)) => socket,
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(client = %client_id, "accepting on tunnel port: {err}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(session) = self.registry.session(&client_id) else {
                continue; // dropping the socket refuses the connection
            };
            match session.handle.open_stream(open.clone()) {
                Ok(stream) => {
                    tokio::spawn(forward(socket, stream, Arc::clone(&tunnel)));
                }
                Err(err) => tracing::debug!(client = %client_id, "opening stream: {err}"),
            }
        }
        drop(listener);
        self.pool.release(tunnel.record().lport);
    }

    /// Open tunnels, optionally of one client.
    pub fn list_open(&self, client_id: Option<&str>) -> Vec<TunnelRecord> {
        let mut list: Vec<TunnelRecord> = self
            .active()
            .values()
            .map(|tunnel| tunnel.record())
            .filter(|record| client_id.is_none_or(|id| record.client_id == id))
            .collect();
        list.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        list
    }

    /// Past and open tunnels from the store.
    pub async fn list_all(&self, filter: &TunnelFilter) -> Result<Vec<TunnelRecord>, StoreError> {
        self.store.list_tunnels(filter).await
    }

    /// Closes a tunnel of `client_id` (an operator deleted it).
    pub async fn close(&self, client_id: &str, tunnel_id: &str) -> Result<(), TunnelError> {
        let tunnel = {
            let mut active = self.active();
            match active.get(tunnel_id) {
                Some(t) if t.record().client_id == client_id => active.remove(tunnel_id),
                _ => None,
            }
        };
        let tunnel = tunnel.ok_or_else(|| TunnelError::NotFound(tunnel_id.to_owned()))?;
        self.finish(&tunnel, "closed", "deleted").await;
        Ok(())
    }

    async fn finish(&self, tunnel: &ActiveTunnel, status: &str, reason: &str) {
        tunnel.cancel.cancel();
        if let Ok(mut record) = tunnel.record.lock() {
            record.status = status.to_owned();
            record.closed_at = Some(Utc::now());
            record.close_reason = Some(reason.to_owned());
        }
        let record = tunnel.record();
        tracing::info!(tunnel = %record.id, client = %record.client_id, "tunnel {status}: {reason}");
        if let Err(err) = self.store.update_tunnel(&record).await {
            tracing::error!(tunnel = %record.id, "saving closed tunnel: {err}");
        }
    }

    /// The agent's session ended: its tunnels cannot carry anything any more.
    pub async fn client_gone(&self, client_id: &str) {
        self.finish_where(|record| record.client_id == client_id, "client_gone")
            .await;
    }

    /// Server shutdown: every tunnel ends.
    pub async fn shutdown(&self) {
        self.finish_where(|_| true, "server_shutdown").await;
    }

    async fn finish_where(&self, matches: impl Fn(&TunnelRecord) -> bool, reason: &str) {
        let ended: Vec<Arc<ActiveTunnel>> = {
            let mut active = self.active();
            let ids: Vec<String> = active
                .iter()
                .filter(|(_, t)| matches(&t.record()))
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| active.remove(id)).collect()
        };
        for tunnel in ended {
            self.finish(&tunnel, "terminated", reason).await;
        }
    }
}

/// Carries one accepted connection through the agent until both sides are done or the
/// tunnel closes.
async fn forward(socket: TcpStream, stream: rport_transport::MuxStream, tunnel: Arc<ActiveTunnel>) {
    let _ = socket.set_nodelay(true);
    tunnel.open_connections.fetch_add(1, Ordering::Relaxed);
    tunnel.connections_total.fetch_add(1, Ordering::Relaxed);
    let counters = stream.counter_handle();
    tokio::select! {
        result = rport_transport::pipe(stream, socket) => {
            if let Err(err) = result {
                tracing::debug!("tunnel connection ended: {err}");
            }
        }
        _ = tunnel.cancel.cancelled() => {}
    }
    let counted = counters.get();
    tunnel
        .bytes_in
        .fetch_add(counted.bytes_sent, Ordering::Relaxed);
    tunnel
        .bytes_out
        .fetch_add(counted.bytes_received, Ordering::Relaxed);
    tunnel.open_connections.fetch_sub(1, Ordering::Relaxed);
}
