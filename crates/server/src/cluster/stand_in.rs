//! A minimal `Cluster` (replaced by the real one): this node renews its lease in the
//! store and keeps the list of nodes, read again at every renewal.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rport_store::{NodeRecord, Store, StoreError};
use tokio_util::sync::CancellationToken;

/// How long a node counts as alive without renewing.
const LEASE: Duration = Duration::from_secs(10);
const RENEW_EVERY: Duration = Duration::from_secs(2);

pub struct Cluster {
    me: NodeRecord,
    store: Arc<dyn Store>,
    nodes: RwLock<Vec<NodeRecord>>,
}

impl Cluster {
    /// Records this node's lease and reads the list of nodes.
    pub async fn join(store: Arc<dyn Store>, me: NodeRecord) -> Result<Arc<Self>, StoreError> {
        let cluster = Arc::new(Self {
            me,
            store,
            nodes: RwLock::new(Vec::new()),
        });
        cluster.renew().await?;
        Ok(cluster)
    }

    /// Renews the lease and the list until `shutdown`, then ends the lease.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(RENEW_EVERY) => {}
            }
            if let Err(err) = self.renew().await {
                tracing::warn!("renewing this node's lease: {err}");
            }
        }
        if let Err(err) = self.store.retire_node(&self.me.id).await {
            tracing::warn!("ending this node's lease: {err}");
        }
    }

    async fn renew(&self) -> Result<(), StoreError> {
        self.store.renew_node(&self.me, LEASE).await?;
        let nodes = self.store.list_nodes().await?;
        *self.nodes.write().unwrap_or_else(|p| p.into_inner()) = nodes;
        Ok(())
    }

    pub fn node_id(&self) -> &str {
        &self.me.id
    }

    /// A node of the list as last read, alive flag included.
    pub fn node(&self, id: &str) -> Option<NodeRecord> {
        self.nodes().into_iter().find(|node| node.id == id)
    }

    pub fn nodes(&self) -> Vec<NodeRecord> {
        self.nodes.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
