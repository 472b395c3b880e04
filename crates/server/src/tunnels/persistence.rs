//! Tunnels in the store: restored at start, their counters flushed while they run, and
//! their end recorded.

use super::lifecycle::CloseReason;
use super::{ActiveTunnel, TunnelManager, lock, stored};
use chrono::Utc;
use rport_store::{TunnelRecord, TunnelStatus};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How often counters and idle times of live tunnels are written to the store.
const FLUSH_EVERY: Duration = Duration::from_secs(30);

impl TunnelManager {
    /// Opens a live tunnel of the store here again: at start one this node held, or one
    /// it takes over with its agent (`adopted`), which gets another port where its own is
    /// taken here.
    pub(super) async fn restore(self: &Arc<Self>, mut record: TunnelRecord, adopted: bool) {
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
        if self.registry.project_of(&record.agent_id).as_deref() != Some(&record.project) {
            let why = format!(
                "its client is no longer known in project {:?}",
                record.project
            );
            return self
                .end_unrestored(&record, CloseReason::AgentDeleted, &why)
                .await;
        }
        // Port 0: a proxy tunnel reached on the shared proxy port only.
        let mut bound = match record.lport {
            0 => Ok(None),
            port => self
                .pool
                .bind_port(&record.lhost, port, protocol)
                .await
                .map(Some),
        };
        if adopted && let Err(err) = &bound {
            let old = record.lport;
            bound = self.move_port(&mut record, protocol, err).await.map(Some);
            if bound.is_ok() {
                let detail = format!(
                    "port_changed (client {}): port {old} is not free on node {}, now {}",
                    record.agent_id,
                    self.registry.node(),
                    record.lport
                );
                let event = crate::domain::audit::Event {
                    action: "tunnel.move",
                    resource: &record.id,
                    project: Some(&record.project),
                    success: true,
                    detail,
                };
                self.audit
                    .record_for_client(
                        &crate::domain::audit::Actor::system(),
                        event,
                        &record.agent_id,
                    )
                    .await;
            }
        }
        match bound {
            Ok(bound) => {
                record.status = TunnelStatus::Pending;
                let tunnel = ActiveTunnel::new(record, acl, Some(Utc::now()));
                tracing::info!(tunnel = %tunnel.id(), client = %tunnel.agent_id(), "tunnel restored, waiting for its agent");
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

    /// Binds a random port of this node's pool for an adopted tunnel whose port is taken
    /// here, and records it.
    async fn move_port(
        &self,
        record: &mut TunnelRecord,
        protocol: rport_protocol::tunnel_spec::TunnelProtocol,
        why: &super::PoolError,
    ) -> Result<super::BoundPort, super::PoolError> {
        let bound = self.pool.bind_random(&record.lhost, protocol).await?;
        let port = bound.lease.port();
        tracing::warn!(
            tunnel = %record.id, client = %record.agent_id,
            "port {} is not free on this node ({why}); the tunnel moves to port {port}", record.lport
        );
        record.lport = port;
        record.lport_random = true;
        if let Err(err) = self.store.set_tunnel_port(&record.id, port).await {
            tracing::error!(tunnel = %record.id, "saving the tunnel's new port: {err}");
        }
        Ok(bound)
    }

    /// Ends a live tunnel of the previous run that does not open again. Its row is kept as
    /// found but for its end, for the operator to look at: it may not parse.
    pub(super) async fn end_unrestored(
        &self,
        record: &TunnelRecord,
        reason: CloseReason,
        why: &str,
    ) {
        tracing::error!(
            tunnel = %record.id, client = %record.agent_id,
            "tunnel not restored: {why}; it ends as {}",
            reason.as_str()
        );
        let ended = self
            .store
            .end_tunnel(
                &record.id,
                Utc::now(),
                reason.status(),
                reason.as_str(),
                Some(self.registry.node()),
            )
            .await;
        if let Err(err) = ended {
            tracing::error!(tunnel = %record.id, "saving tunnel: {err}");
        }
        self.audit_end(record, reason, &format!(": {why}")).await;
    }

    /// Adds what the tunnel carried since the last write to its stored counters.
    pub(super) async fn save(&self, tunnel: &ActiveTunnel) {
        tunnel.dirty.store(false, Ordering::Relaxed);
        let id = tunnel.id();
        let delta = tunnel.take_unflushed();
        let last_active = tunnel.last_active();
        if let Err(err) = self
            .store
            .add_tunnel_counters(&id, delta, last_active)
            .await
        {
            tracing::error!(tunnel = %id, "saving tunnel: {err}");
            crate::metrics::store_error();
            // Kept for the next flush.
            let mut flushed = lock(&tunnel.flushed);
            *flushed = flushed.since(delta);
            tunnel.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// Writes a live tunnel's status as it is in memory, and its counters.
    pub(super) async fn save_status(&self, tunnel: &ActiveTunnel) {
        let (id, status) = {
            let record = lock(&tunnel.record);
            (record.id.clone(), record.status)
        };
        if let Err(err) = self
            .store
            .set_tunnel_status(&id, status, self.registry.node())
            .await
        {
            tracing::error!(tunnel = %id, "saving tunnel status: {err}");
            crate::metrics::store_error();
        }
        self.save(tunnel).await;
    }

    /// Writes counters and idle times that moved; a crash loses at most one period.
    pub(super) async fn flush(&self) {
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
}

pub(super) async fn flush_periodically(manager: std::sync::Weak<TunnelManager>) {
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
