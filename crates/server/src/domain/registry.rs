//! The agents rportd knows: their last reported facts, whether a session is live, and the
//! write-through to the store so that a restart forgets none of them.
//!
//! The API reads from this in-memory view (fast with tens of thousands of agents); every
//! change is also written to the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use rport_protocol::SystemInfo;
use rport_store::{AgentRecord, Store, StoreError};
use rport_transport::mux::MuxHandle;

pub struct AgentEntry {
    pub record: AgentRecord,
    pub session: Option<LiveSession>,
}

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
    /// Loads known agents; all are disconnected until they come back.
    pub async fn load(store: Arc<dyn Store>) -> Result<Self, StoreError> {
        store.mark_all_disconnected(Utc::now()).await?;
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
        })
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

    /// (connected, disconnected)
    pub fn counts(&self) -> (usize, usize) {
        self.with_agents(|clients| {
            let connected = clients.values().filter(|e| e.session.is_some()).count();
            (connected, clients.len() - connected)
        })
    }

    /// Records a new live session for an agent, replacing (and closing) any previous one.
    pub async fn attach(
        &self,
        id: &str,
        auth_id: &str,
        project: &str,
        info: SystemInfo,
        address: String,
        handle: MuxHandle,
    ) -> u64 {
        let number = self.next_session.fetch_add(1, Ordering::Relaxed);
        let record = AgentRecord {
            id: id.to_owned(),
            auth_id: auth_id.to_owned(),
            info,
            address,
            connected: true,
            connected_at: Some(Utc::now()),
            disconnected_at: None,
            project: project.to_owned(),
        };
        let previous = {
            let mut clients = self.write();
            let session = Some(LiveSession { handle, number });
            let previous = clients.insert(
                id.to_owned(),
                AgentEntry {
                    record: record.clone(),
                    session,
                },
            );
            previous.and_then(|entry| entry.session)
        };
        if let Some(old) = previous {
            old.handle.close();
        }
        if let Err(err) = self.store.upsert_agent(&record).await {
            tracing::error!(client = id, "saving client: {err}");
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
                    entry.session = None;
                    entry.record.connected = false;
                    entry.record.disconnected_at = Some(now);
                    true
                }
                _ => false,
            }
        };
        if detached && let Err(err) = self.store.mark_agent_disconnected(id, now).await {
            tracing::error!(client = id, "saving disconnect: {err}");
        }
        detached
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
        if let Err(err) = self.store.upsert_agent(&record).await {
            tracing::error!(client = id, "saving client facts: {err}");
        }
    }

    /// Forgets a disconnected agent; returns the project it was in. What belongs to it
    /// beyond its record (tunnels) is the caller's to end: see `TunnelManager::delete_agent`.
    pub async fn delete(&self, id: &str) -> Result<String, DeleteError> {
        let project = {
            let mut clients = self.write();
            match clients.get(id) {
                None => return Err(DeleteError::NotFound),
                Some(entry) if entry.session.is_some() => return Err(DeleteError::Connected),
                Some(_) => clients.remove(id).map(|entry| entry.record.project),
            }
        };
        self.store.delete_agent(id).await?;
        Ok(project.unwrap_or_default())
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
