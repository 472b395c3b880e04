//! The agents rportd knows: their last reported facts, whether a session is live, and the
//! write-through to the store so that a restart forgets none of them.
//!
//! The API reads from this in-memory view (fast with tens of thousands of agents); every
//! change is also written to the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use chrono::{DateTime, Utc};
use rport_protocol::SystemInfo;
use rport_store::{AgentClaim, AgentRecord, Store, StoreError};
use rport_transport::mux::MuxHandle;

pub struct AgentEntry {
    pub record: AgentRecord,
    /// Its session when it is connected to this node.
    pub session: Option<LiveSession>,
}

impl AgentEntry {
    /// Connected to this node or, as the store says, to another node of the cluster.
    pub fn is_connected(&self) -> bool {
        self.session.is_some() || self.record.connected
    }

    /// When the agent was last heard: its session's last keepalive when it is connected
    /// here, else the last one written to the store, and at least the start of its session.
    pub fn last_heartbeat_at(&self) -> Option<DateTime<Utc>> {
        let live = self.live_heartbeat();
        [
            live,
            self.record.last_heartbeat_at,
            self.record.connected_at,
        ]
        .into_iter()
        .flatten()
        .max()
    }

    fn live_heartbeat(&self) -> Option<DateTime<Utc>> {
        let session = self.session.as_ref()?;
        session.handle.last_heartbeat().map(DateTime::<Utc>::from)
    }
}

/// At most this many heartbeats go to the store in one write.
const HEARTBEATS_PER_WRITE: usize = 1000;

/// A connected agent's session. The number tells sessions of the same id apart, so the
/// end of an old session can never mark a newer one disconnected.
#[derive(Clone)]
pub struct LiveSession {
    pub handle: MuxHandle,
    pub number: u64,
}

pub struct Registry {
    clients: RwLock<HashMap<String, AgentEntry>>,
    store: Arc<dyn Store>,
    next_session: AtomicU64,
    /// This node's id: the store records it as the holder of the agents connected here.
    node: String,
    /// Told of every change to an agent's record that this node writes.
    changes: OnceLock<Arc<dyn AgentChanges>>,
    /// Every change to the in-memory view, this node's or another's, for live pages.
    watchers: tokio::sync::broadcast::Sender<AgentChanged>,
}

/// An agent whose entry changed (connected, disconnected, new facts, forgotten), for
/// those watching the view; they read the entry again. `id` empty: many changed at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentChanged {
    pub id: String,
    /// The project it is (or was, when forgotten) in.
    pub project: String,
}

/// Changes a slow watcher may fall behind by before it hears that it lagged.
const WATCH_CAPACITY: usize = 1024;

/// Hears which agent records this node changed, so that the other nodes of a cluster
/// read them again.
pub trait AgentChanges: Send + Sync {
    fn changed(&self, id: &str);
}

/// Why an agent's session may not be held here.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("another node of this cluster ({0}) holds its live session")]
    HeldBy(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What reading an agent's record again found.
#[derive(Debug, PartialEq, Eq)]
pub enum Refreshed {
    /// Nothing this node must act on.
    Unchanged,
    /// Another node holds the agent now: this node's session and tunnels of it are stale.
    Lost,
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("client not found")]
    NotFound,
    #[error("client is connected")]
    Connected,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Registry {
    /// Loads known agents. Those this node held are disconnected until they come back;
    /// other nodes' agents stay as those nodes recorded them.
    pub async fn load(store: Arc<dyn Store>, node: &str) -> Result<Self, StoreError> {
        store.release_node_agents(node, Utc::now()).await?;
        let clients = store
            .list_agents()
            .await?
            .into_iter()
            .map(|record| {
                (
                    record.id.clone(),
                    AgentEntry {
                        record,
                        session: None,
                    },
                )
            })
            .collect();
        Ok(Self {
            clients: RwLock::new(clients),
            store,
            next_session: AtomicU64::new(1),
            node: node.to_owned(),
            changes: OnceLock::new(),
            watchers: tokio::sync::broadcast::channel(WATCH_CAPACITY).0,
        })
    }

    /// Tells `changes` of every agent record this node changes from now on.
    pub fn tell(&self, changes: Arc<dyn AgentChanges>) {
        let _ = self.changes.set(changes);
    }

    fn changed(&self, id: &str) {
        if let Some(changes) = self.changes.get() {
            changes.changed(id);
        }
    }

    /// Hears every change to the view from now on; a receiver that falls more than
    /// [`WATCH_CAPACITY`] changes behind gets `Lagged` and should read everything again.
    pub fn watch(&self) -> tokio::sync::broadcast::Receiver<AgentChanged> {
        self.watchers.subscribe()
    }

    fn tell_watchers(&self, id: &str, project: &str) {
        // Nobody watching is the usual case, not an error.
        let _ = self.watchers.send(AgentChanged {
            id: id.to_owned(),
            project: project.to_owned(),
        });
    }

    /// Reads every agent's record again (after this node was away from the store);
    /// returns the ids whose sessions here another node holds now.
    pub async fn resync(&self) -> Result<Vec<String>, StoreError> {
        let stored = self.store.list_agents().await?;
        let (lost, reassert) = self.absorb_all(stored, true);
        self.tell_watchers("", "");
        self.reassert(lost, reassert).await
    }

    /// Tells the store again of sessions held here that it shows as disconnected (a node
    /// that found this one's lease run out, say while the database stalled, marked them
    /// so); one another node holds meanwhile is closed here and added to `lost`.
    async fn reassert(
        &self,
        mut lost: Vec<String>,
        reassert: Vec<AgentRecord>,
    ) -> Result<Vec<String>, StoreError> {
        for record in reassert {
            match self.store.claim_agent(&record).await? {
                AgentClaim::Claimed => self.changed(&record.id),
                AgentClaim::HeldBy(node) => {
                    tracing::warn!(client = %record.id, "node {node} holds this client now; closing its session here");
                    if let Some(session) = self.session(&record.id) {
                        session.handle.close();
                    }
                    lost.push(record.id);
                }
            }
        }
        Ok(lost)
    }

    /// Takes every stored record into the view; returns the ids whose sessions here
    /// another node holds now, and the records of sessions here the store must be told
    /// of again: a node that found this one's lease run out during an outage marked them
    /// disconnected.
    /// With `whole`, `stored` is every record, and entries without one are forgotten.
    fn absorb_all(&self, stored: Vec<AgentRecord>, whole: bool) -> (Vec<String>, Vec<AgentRecord>) {
        let mut clients = self.write();
        let mut lost = Vec::new();
        if whole {
            let present: std::collections::HashSet<&str> =
                stored.iter().map(|r| r.id.as_str()).collect();
            clients.retain(|id, entry| entry.session.is_some() || present.contains(id.as_str()));
        }
        let mut reassert = Vec::new();
        for record in stored {
            let id = record.id.clone();
            let ours = record.connected && record.owner_node.as_deref() == Some(&self.node);
            match absorb(&mut clients, &self.node, record) {
                Refreshed::Lost => lost.push(id),
                Refreshed::Unchanged => {
                    if let Some(entry) = clients.get_mut(&id)
                        && entry.session.is_some()
                        && !ours
                    {
                        entry.record.connected = true;
                        entry.record.owner_node = Some(self.node.clone());
                        entry.record.disconnected_at = None;
                        reassert.push(entry.record.clone());
                    }
                }
            }
        }
        (lost, reassert)
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The node holding agent `id`'s live session when it is another one.
    pub fn held_elsewhere(&self, id: &str) -> Option<String> {
        self.with_agents(|clients| {
            let entry = clients.get(id)?;
            let owner = entry.record.owner_node.as_ref()?;
            (entry.session.is_none() && entry.record.connected && *owner != self.node)
                .then(|| owner.clone())
        })
    }

    /// Reads agent `id`'s record again after another node changed it.
    pub async fn refresh(&self, id: &str) -> Result<Refreshed, StoreError> {
        let Some(record) = self.store.get_agent(id).await? else {
            let forgotten = {
                let mut clients = self.write();
                match clients.get(id) {
                    Some(entry) if entry.session.is_none() => clients.remove(id),
                    _ => None,
                }
            };
            if let Some(entry) = forgotten {
                self.tell_watchers(id, &entry.record.project);
            }
            return Ok(Refreshed::Unchanged);
        };
        let project = record.project.clone();
        let (lost, reassert) = self.absorb_all(vec![record], false);
        self.tell_watchers(id, &project);
        let lost = self.reassert(lost, reassert).await?;
        Ok(if lost.is_empty() {
            Refreshed::Unchanged
        } else {
            Refreshed::Lost
        })
    }

    /// Records in the store that this node holds agent `id`'s session, unless another
    /// live node does; returns the record to [`Registry::attach`].
    pub async fn claim(
        &self,
        id: &str,
        auth_id: &str,
        project: &str,
        info: SystemInfo,
        address: String,
    ) -> Result<AgentRecord, ClaimError> {
        let now = Utc::now();
        let record = AgentRecord {
            id: id.to_owned(),
            auth_id: auth_id.to_owned(),
            info,
            address,
            connected: true,
            connected_at: Some(now),
            disconnected_at: None,
            // The hello is the first sign of life.
            last_heartbeat_at: Some(now),
            project: project.to_owned(),
            owner_node: Some(self.node.clone()),
        };
        match self.store.claim_agent(&record).await? {
            AgentClaim::Claimed => {
                self.changed(id);
                Ok(record)
            }
            AgentClaim::HeldBy(node) => Err(ClaimError::HeldBy(node)),
        }
    }

    /// Runs `f` over all entries under a read lock; keep `f` quick.
    pub fn with_agents<T>(&self, f: impl FnOnce(&HashMap<String, AgentEntry>) -> T) -> T {
        match self.clients.read() {
            Ok(clients) => f(&clients),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, AgentEntry>> {
        self.clients
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The project a known agent belongs to.
    pub fn project_of(&self, id: &str) -> Option<String> {
        self.with_agents(|clients| clients.get(id).map(|entry| entry.record.project.clone()))
    }

    pub fn session(&self, id: &str) -> Option<LiveSession> {
        self.with_agents(|clients| clients.get(id).and_then(|entry| entry.session.clone()))
    }

    /// The live session of agent `id` if it is in `project`. Whatever belongs to a project
    /// (its tunnels) reaches its agent through this, so an agent of another project that
    /// registers a forgotten id never gets it.
    pub fn session_in(&self, project: &str, id: &str) -> Option<LiveSession> {
        self.with_agents(|clients| {
            clients
                .get(id)
                .filter(|entry| entry.record.project == project)
                .and_then(|entry| entry.session.clone())
        })
    }

    /// The live session of agent `id` and the project it belongs to, read together.
    pub fn session_and_project(&self, id: &str) -> Option<(LiveSession, String)> {
        self.with_agents(|clients| {
            let entry = clients.get(id)?;
            Some((entry.session.clone()?, entry.record.project.clone()))
        })
    }

    /// (connected, disconnected), through any node of the cluster.
    pub fn counts(&self) -> (usize, usize) {
        self.with_agents(|clients| {
            let connected = clients.values().filter(|e| e.is_connected()).count();
            (connected, clients.len() - connected)
        })
    }

    /// Records a new live session for an agent [`Registry::claim`]ed, replacing (and
    /// closing) any previous one.
    pub fn attach(&self, record: AgentRecord, handle: MuxHandle) -> u64 {
        let number = self.next_session.fetch_add(1, Ordering::Relaxed);
        let (id, project) = (record.id.clone(), record.project.clone());
        let previous = {
            let mut clients = self.write();
            let session = Some(LiveSession { handle, number });
            let previous = clients.insert(record.id.clone(), AgentEntry { record, session });
            previous.and_then(|entry| entry.session)
        };
        self.tell_watchers(&id, &project);
        if let Some(old) = previous {
            old.handle.close();
        }
        number
    }

    /// Marks the agent disconnected if `number` is still its current session.
    /// Returns whether it did.
    pub async fn detach(&self, id: &str, number: u64) -> bool {
        let now = Utc::now();
        let detached = {
            let mut clients = self.write();
            match clients.get_mut(id) {
                Some(entry) if entry.session.as_ref().is_some_and(|s| s.number == number) => {
                    let heard = entry.live_heartbeat();
                    entry.session = None;
                    entry.record.connected = false;
                    entry.record.disconnected_at = Some(now);
                    let newer = heard.filter(|at| Some(*at) > entry.record.last_heartbeat_at);
                    if newer.is_some() {
                        entry.record.last_heartbeat_at = newer;
                    }
                    Some((newer, entry.record.project.clone()))
                }
                _ => None,
            }
        };
        let Some((heard, project)) = detached else {
            return false;
        };
        self.tell_watchers(id, &project);
        if let Some(at) = heard
            && let Err(err) = self.store.record_heartbeats(&[(id.to_owned(), at)]).await
        {
            tracing::error!(client = id, "saving the last heartbeat: {err}");
        }
        match self.store.release_agent(id, &self.node, now).await {
            Ok(_) => self.changed(id),
            Err(err) => tracing::error!(client = id, "saving disconnect: {err}"),
        }
        true
    }

    pub async fn update_info(&self, id: &str, number: u64, info: SystemInfo) {
        let record = {
            let mut clients = self.write();
            match clients.get_mut(id) {
                Some(entry) if entry.session.as_ref().is_some_and(|s| s.number == number) => {
                    if entry.record.info == info {
                        return;
                    }
                    entry.record.info = info;
                    entry.record.clone()
                }
                _ => return,
            }
        };
        self.tell_watchers(id, &record.project);
        // A claim, not a blind write: a node that lost the agent to another (its lease ran
        // out while the database was away) must not write over the new holder's record.
        match self.store.claim_agent(&record).await {
            Ok(AgentClaim::Claimed) => self.changed(id),
            Ok(AgentClaim::HeldBy(node)) => {
                tracing::warn!(
                    client = id,
                    "node {node} holds this client now; closing its session here"
                );
                if let Some(session) = self.session(id) {
                    session.handle.close();
                }
            }
            Err(err) => tracing::error!(client = id, "saving client facts: {err}"),
        }
    }

    /// Writes to the store the keepalives that arrived since the last write, for the
    /// sessions held here, in batches: one write per [`HEARTBEATS_PER_WRITE`] agents each
    /// time it is called, never one per keepalive. Returns how many it wrote.
    pub async fn flush_heartbeats(&self) -> usize {
        let beats: Vec<(String, DateTime<Utc>)> = {
            let mut clients = self.write();
            clients
                .values_mut()
                .filter_map(|entry| {
                    let heard = entry.live_heartbeat()?;
                    if Some(heard) <= entry.record.last_heartbeat_at {
                        return None;
                    }
                    entry.record.last_heartbeat_at = Some(heard);
                    Some((entry.record.id.clone(), heard))
                })
                .collect()
        };
        let mut written = 0;
        for batch in beats.chunks(HEARTBEATS_PER_WRITE) {
            match self.store.record_heartbeats(batch).await {
                Ok(()) => written += batch.len(),
                Err(err) => {
                    tracing::error!("saving agents' heartbeats: {err}");
                    break;
                }
            }
        }
        written
    }

    /// Forgets a disconnected agent; returns the project it was in. What belongs to it
    /// beyond its record (tunnels) is the caller's to end: see `TunnelManager::delete_agent`.
    pub async fn delete(&self, id: &str) -> Result<String, DeleteError> {
        let project = {
            let mut clients = self.write();
            match clients.get(id) {
                None => return Err(DeleteError::NotFound),
                Some(entry) if entry.is_connected() => return Err(DeleteError::Connected),
                Some(_) => clients.remove(id).map(|entry| entry.record.project),
            }
        };
        self.store.delete_agent(id).await?;
        self.changed(id);
        let project = project.unwrap_or_default();
        self.tell_watchers(id, &project);
        Ok(project)
    }

    /// Forgets agents disconnected before `cutoff`; returns the records forgotten (one
    /// that came back meanwhile is kept).
    pub async fn purge_disconnected_before(&self, cutoff: DateTime<Utc>) -> Vec<AgentRecord> {
        let ids = match self.store.purge_agents_disconnected_before(cutoff).await {
            Ok(ids) => ids,
            Err(err) => {
                tracing::error!("purging disconnected clients: {err}");
                return Vec::new();
            }
        };
        let mut clients = self.write();
        let mut forgotten = Vec::with_capacity(ids.len());
        for id in &ids {
            if clients.get(id).is_some_and(|entry| entry.session.is_none())
                && let Some(entry) = clients.remove(id)
            {
                forgotten.push(entry.record);
            }
        }
        drop(clients);
        for id in &ids {
            self.changed(id);
        }
        for record in &forgotten {
            self.tell_watchers(&record.id, &record.project);
        }
        forgotten
    }

    /// Known agents that logged in with credential `auth_id`, and how many are connected.
    pub fn using_credential(&self, auth_id: &str) -> (usize, usize) {
        self.with_agents(|clients| {
            let using = clients.values().filter(|e| e.record.auth_id == auth_id);
            using.fold((0, 0), |(known, connected), entry| {
                (known + 1, connected + usize::from(entry.session.is_some()))
            })
        })
    }

    /// Ends the sessions of agents logged in with credential `auth_id`.
    pub fn disconnect_credential(&self, auth_id: &str) {
        self.with_agents(|clients| {
            for entry in clients.values().filter(|e| e.record.auth_id == auth_id) {
                if let Some(session) = &entry.session {
                    session.handle.close();
                }
            }
        });
    }

    /// Sends `payload` as a control message to every live session.
    pub fn tell_all(&self, payload: &bytes::Bytes) {
        self.with_agents(|clients| {
            for session in clients.values().filter_map(|e| e.session.as_ref()) {
                let _ = session.handle.send_control(payload.clone());
            }
        });
    }

    /// Closes every live session (server shutdown).
    pub fn close_all(&self) {
        self.with_agents(|clients| {
            for entry in clients.values() {
                if let Some(session) = &entry.session {
                    session.handle.close();
                }
            }
        });
    }
}

/// Takes a record read from the store into the in-memory view; a session here whose
/// agent another node holds now is closed (it is stale: that node's claim came later).
fn absorb(clients: &mut HashMap<String, AgentEntry>, node: &str, record: AgentRecord) -> Refreshed {
    let lost = record.connected && record.owner_node.as_deref() != Some(node);
    match clients.get_mut(&record.id) {
        Some(entry) if entry.session.is_some() => {
            if !lost {
                return Refreshed::Unchanged;
            }
            if let Some(session) = entry.session.take() {
                session.handle.close();
            }
            entry.record = record;
            Refreshed::Lost
        }
        Some(entry) => {
            // Already held elsewhere by the same node: nothing here to hand over.
            let moved = !entry.record.connected || entry.record.owner_node != record.owner_node;
            entry.record = record;
            if lost && moved {
                Refreshed::Lost
            } else {
                Refreshed::Unchanged
            }
        }
        None => {
            clients.insert(
                record.id.clone(),
                AgentEntry {
                    record,
                    session: None,
                },
            );
            if lost {
                Refreshed::Lost
            } else {
                Refreshed::Unchanged
            }
        }
    }
}
