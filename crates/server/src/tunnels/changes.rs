//! Who hears that a tunnel changed (opened, waiting for its agent, closed, its ACL
//! replaced): the live pages of this node, and through [`TunnelChanges`] the other nodes of
//! a cluster, whose pages hear it too. What it carried is not a change: pages read counters
//! when they load.

use std::sync::{Arc, OnceLock};

use rport_store::TunnelRecord;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// One tunnel that changed, as those watching hear it; they read the tunnel again for
/// anything more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelChanged {
    pub id: String,
    pub client_id: String,
    /// The project of its agent: who may hear of it.
    pub project: String,
    pub status: String,
}

/// Changes a slow watcher may fall behind by before it hears that it lagged.
const WATCH_CAPACITY: usize = 1024;

/// Longest key another node's event may carry for a tunnel change; longer ones are
/// dropped unread (ids and project names are far shorter).
const MAX_KEY_LEN: usize = 4096;

/// Hears which tunnels this node changed, so that the other nodes' pages hear it too.
pub trait TunnelChanges: Send + Sync {
    fn changed(&self, change: &TunnelChanged);
}

/// This node's watchers (a broadcast of [`WATCH_CAPACITY`] changes) and, once the server
/// is wired, the other nodes.
pub struct Watchers {
    local: broadcast::Sender<TunnelChanged>,
    others: OnceLock<Arc<dyn TunnelChanges>>,
}

impl Default for Watchers {
    fn default() -> Self {
        Self {
            local: broadcast::channel(WATCH_CAPACITY).0,
            others: OnceLock::new(),
        }
    }
}

impl Watchers {
    pub fn watch(&self) -> broadcast::Receiver<TunnelChanged> {
        self.local.subscribe()
    }

    pub fn tell_others(&self, others: Arc<dyn TunnelChanges>) {
        let _ = self.others.set(others);
    }

    /// A change made here: this node's watchers and the other nodes hear it.
    pub fn changed_here(&self, change: TunnelChanged) {
        if let Some(others) = self.others.get() {
            others.changed(&change);
        }
        // Nobody watching is the usual case, not an error.
        let _ = self.local.send(change);
    }

    /// A change another node made and published as [`TunnelChanged::to_key`].
    pub fn changed_elsewhere(&self, key: &str) -> Result<(), String> {
        let change = TunnelChanged::from_key(key)?;
        let _ = self.local.send(change);
        Ok(())
    }
}

impl TunnelChanged {
    /// `record` as it is now.
    pub fn of(record: &TunnelRecord) -> Self {
        Self {
            id: record.id.clone(),
            client_id: record.agent_id.clone(),
            project: record.project.clone(),
            status: record.status.as_str().to_owned(),
        }
    }

    /// The key of the cluster event that carries it.
    pub fn to_key(&self) -> String {
        // Four strings always serialize; the default is never used.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_key(key: &str) -> Result<Self, String> {
        if key.len() > MAX_KEY_LEN {
            return Err(format!("{} bytes, at most {MAX_KEY_LEN}", key.len()));
        }
        serde_json::from_str(key).map_err(|err| err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_travels_as_its_key_and_bad_keys_are_refused() {
        let change = TunnelChanged {
            id: "t1".into(),
            client_id: "c 1".into(),
            project: "default".into(),
            status: "closed".into(),
        };
        assert_eq!(TunnelChanged::from_key(&change.to_key()), Ok(change));
        assert!(TunnelChanged::from_key("t1 c1").is_err());
        assert!(TunnelChanged::from_key(&"x".repeat(MAX_KEY_LEN + 1)).is_err());
    }

    #[tokio::test]
    async fn watchers_hear_changes_made_here_and_elsewhere() {
        let watchers = Watchers::default();
        let mut watch = watchers.watch();
        let change = TunnelChanged {
            id: "t1".into(),
            client_id: "c1".into(),
            project: "p".into(),
            status: "opened".into(),
        };
        watchers.changed_here(change.clone());
        assert_eq!(watch.recv().await.ok(), Some(change.clone()));
        watchers
            .changed_elsewhere(&change.to_key())
            .expect("a well-formed key");
        assert_eq!(watch.recv().await.ok(), Some(change));
    }
}
