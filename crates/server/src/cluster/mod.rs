//! This node's place in a cluster of rportd nodes sharing one database: its lease, the
//! other nodes as the store lists them, and the events nodes tell each other.
//!
//! Nothing here is consensus of our own: the database decides. A node is alive while
//! its lease (renewed every [`RENEW_EVERY`], by the database's clock) runs; an agent is
//! held by the node that claimed it in the database while that node is alive. A single
//! rportd on SQLite is a cluster of one and runs the same code.

pub mod events;
pub mod peer;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use rport_store::{ClusterEvent, NodeRecord, Store, StoreError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use events::Cursor;

/// How long a node counts as alive after its last renewal. A killed node's agents are
/// accepted elsewhere this long after its last renewal at most.
pub const LEASE: Duration = Duration::from_secs(10);
/// How often a node renews its lease and reads the node list.
pub const RENEW_EVERY: Duration = Duration::from_secs(2);
/// How often a node reads the events of the others: a revoked token is refused
/// everywhere this long after its revocation, plus one read.
pub const POLL_EVERY: Duration = Duration::from_millis(250);
/// Events read in one go at most.
const BATCH: u32 = 1000;
/// How long events are kept in the store: a node away longer reads everything again
/// instead (see [`topic::RESYNC`]).
const EVENTS_KEPT: chrono::Duration = chrono::Duration::minutes(10);
/// Events waiting to be applied at most; the reader waits while it is full.
pub const QUEUE: usize = 4096;

/// What an event is about; its key names the record.
pub mod topic {
    /// An agent's record changed (connected, disconnected, facts, deleted): key = its id.
    pub const AGENT: &str = "agent";
    /// A session token was revoked (logout): key = its id (`jti`).
    pub const TOKEN_REVOKED: &str = "token.revoked";
    /// A failed login counted against a ban list: key = `LIST COUNT KEY`.
    pub const LOGIN_FAILED: &str = "login.failed";
    /// An agent credential was added or removed: key = its id.
    pub const CREDENTIAL: &str = "credential";
    /// A tunnel opened, waits for its agent, closed or changed its ACL: key = the change
    /// as JSON (`tunnels::changes::TunnelChanged`). Published only while other nodes live.
    pub const TUNNEL: &str = "tunnel";
    /// Not published: this node was away from the store (or behind its events) and must
    /// read what it keeps in memory again.
    pub const RESYNC: &str = "resync";
}

pub struct Cluster {
    me: NodeRecord,
    store: Arc<dyn Store>,
    /// The node list as last read.
    nodes: RwLock<Vec<NodeRecord>>,
}

impl Cluster {
    /// Enters the cluster: renews this node's lease once, so that other nodes know it.
    pub async fn join(store: Arc<dyn Store>, me: NodeRecord) -> Result<Arc<Self>, StoreError> {
        store.renew_node(&me, LEASE).await?;
        let nodes = store.list_nodes().await?;
        Ok(Arc::new(Self {
            me,
            store,
            nodes: RwLock::new(nodes),
        }))
    }

    pub fn node_id(&self) -> &str {
        &self.me.id
    }

    /// Node `id` as last read, with whether its lease ran then.
    pub fn node(&self, id: &str) -> Option<NodeRecord> {
        self.read_nodes(|nodes| nodes.iter().find(|n| n.id == id).cloned())
    }

    /// Node `id` if its lease runs: from the list as last read, or, when that does not
    /// show it alive (it started since), from the store.
    pub async fn live_node(&self, id: &str) -> Option<NodeRecord> {
        if let Some(node) = self.node(id).filter(|n| n.alive) {
            return Some(node);
        }
        let nodes = match self.store.list_nodes().await {
            Ok(nodes) => nodes,
            Err(err) => {
                tracing::warn!(node = id, "reading the cluster's nodes: {err}");
                return None;
            }
        };
        let found = nodes.iter().find(|n| n.id == id && n.alive).cloned();
        *self.nodes.write().unwrap_or_else(|p| p.into_inner()) = nodes;
        found
    }

    /// Whether another node's lease ran when the node list was last read.
    pub fn has_others(&self) -> bool {
        self.read_nodes(|nodes| nodes.iter().any(|n| n.alive && n.id != self.me.id))
    }

    /// The host node `id`'s tunnels are reached at, when it is another node that said.
    pub fn public_host_of(&self, id: &str) -> Option<String> {
        if id == self.me.id {
            return None;
        }
        self.node(id)
            .map(|n| n.public_host)
            .filter(|h| !h.is_empty())
    }

    /// Every node as last read, by id.
    pub fn nodes(&self) -> Vec<NodeRecord> {
        self.read_nodes(|nodes| nodes.clone())
    }

    fn read_nodes<T>(&self, f: impl FnOnce(&Vec<NodeRecord>) -> T) -> T {
        match self.nodes.read() {
            Ok(nodes) => f(&nodes),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    /// Tells the other nodes that something changed. A failure is logged, not returned:
    /// the change itself is in the store, and nodes read everything again after an
    /// outage.
    pub async fn publish(&self, topic: &str, key: &str) {
        if let Err(err) = self.store.publish_event(topic, key, &self.me.id).await {
            tracing::warn!(topic, key, "telling the other nodes: {err}");
        }
    }

    /// Publishes from code that cannot wait (a ban list, a lock held).
    pub fn publish_later(self: &Arc<Self>, topic: &'static str, key: String) {
        let cluster = Arc::clone(self);
        tokio::spawn(async move { cluster.publish(topic, &key).await });
    }

    /// Runs until `shutdown`: renews the lease, reads the node list, marks the agents of
    /// dead nodes disconnected, and hands the other nodes' events to `deliver`.
    pub async fn run(
        self: Arc<Self>,
        deliver: mpsc::Sender<ClusterEvent>,
        shutdown: CancellationToken,
    ) {
        let mut cursor = None;
        let mut renew = tokio::time::interval(RENEW_EVERY);
        let mut poll = tokio::time::interval(POLL_EVERY);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut store_ok = true;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = renew.tick() => {
                    let ok = self.renew(&deliver).await;
                    if ok && !store_ok {
                        tracing::info!("the database answers again: reading the cluster's state anew");
                        cursor = None;
                    }
                    store_ok = ok;
                }
                _ = poll.tick() => {
                    if !self.poll(&mut cursor, &deliver).await {
                        cursor = None;
                    }
                }
            }
        }
        if let Err(err) = self.store.retire_node(&self.me.id).await {
            tracing::warn!("ending this node's lease: {err}");
        }
    }

    /// Renews the lease and the node list, and sweeps dead nodes' agents; returns whether
    /// the store answered.
    async fn renew(&self, deliver: &mpsc::Sender<ClusterEvent>) -> bool {
        if let Err(err) = self.store.renew_node(&self.me, LEASE).await {
            tracing::error!(
                "renewing this node's lease: {err}; its agents stay connected here, and other nodes take them over if this lasts past the lease ({LEASE:?})"
            );
            return false;
        }
        match self.store.list_nodes().await {
            Ok(nodes) => {
                let mut known = self.nodes.write().unwrap_or_else(|p| p.into_inner());
                for node in &nodes {
                    let before = known.iter().find(|n| n.id == node.id).map(|n| n.alive);
                    if before != Some(node.alive) && node.id != self.me.id {
                        if node.alive {
                            tracing::info!(node = %node.id, peer = %node.peer_address, "cluster node is alive");
                        } else {
                            tracing::warn!(node = %node.id, "cluster node's lease ran out: it is gone");
                        }
                    }
                }
                *known = nodes;
            }
            Err(err) => tracing::warn!("reading the cluster's nodes: {err}"),
        }
        match self.store.release_dead_nodes_agents(Utc::now()).await {
            Ok(released) => {
                for id in released {
                    // This node's registry learns it here; the others from the event.
                    self.publish(topic::AGENT, &id).await;
                    let _ = deliver.send(local_event(topic::AGENT, &id)).await;
                }
            }
            Err(err) => tracing::warn!("releasing the agents of dead nodes: {err}"),
        }
        if let Err(err) = self
            .store
            .purge_events_before(Utc::now() - EVENTS_KEPT)
            .await
        {
            tracing::warn!("purging old cluster events: {err}");
        }
        true
    }

    /// Reads and delivers new events; returns false when the store did not answer, so
    /// that the next read starts anew.
    async fn poll(
        &self,
        cursor: &mut Option<Cursor>,
        deliver: &mpsc::Sender<ClusterEvent>,
    ) -> bool {
        let current = match cursor {
            Some(current) => current,
            None => {
                let last = match self.store.last_event_seq().await {
                    Ok(last) => last,
                    Err(_) => return false,
                };
                // Whatever happened while the cursor was away is read from the records.
                let _ = deliver.send(local_event(topic::RESYNC, "")).await;
                cursor.insert(Cursor::after(last))
            }
        };
        loop {
            let batch = match self.store.events_after(current.read_after(), BATCH).await {
                Ok(batch) => batch,
                Err(err) => {
                    tracing::debug!("reading cluster events: {err}");
                    return false;
                }
            };
            let full = batch.len() == BATCH as usize;
            for event in current.accept(batch, Instant::now()) {
                if event.origin != self.me.id && deliver.send(event).await.is_err() {
                    return true;
                }
            }
            if !full {
                return true;
            }
        }
    }
}

fn local_event(topic: &str, key: &str) -> ClusterEvent {
    ClusterEvent {
        seq: 0,
        at: Utc::now(),
        topic: topic.to_owned(),
        key: key.to_owned(),
        origin: String::new(),
    }
}
