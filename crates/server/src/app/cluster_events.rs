//! What this node does with the other nodes' events: reads changed agent records, hands
//! over tunnels of agents another node took, tells its live pages of their tunnels'
//! changes, refuses revoked tokens, counts failed logins, and reads agent credentials
//! again.

use std::sync::Arc;

use rport_store::ClusterEvent;
use tokio::sync::mpsc;

use crate::agents::listener::AgentListener;
use crate::api::AppState;
use crate::auth::bans::{BanList, FailureSink};
use crate::cluster::{Cluster, topic};
use crate::domain::registry::{AgentChanges, Refreshed};
use crate::tunnels::changes::{TunnelChanged, TunnelChanges};

/// Tells the other nodes of agent records and failed logins this node writes.
pub struct Publisher(pub Arc<Cluster>);

impl AgentChanges for Publisher {
    fn changed(&self, id: &str) {
        self.0.publish_later(topic::AGENT, id.to_owned());
    }
}

impl TunnelChanges for Publisher {
    fn changed(&self, change: &TunnelChanged) {
        // Only the other nodes' pages need it: alone, nothing is written.
        if self.0.has_others() {
            self.0.publish_later(topic::TUNNEL, change.to_key());
        }
    }
}

impl FailureSink for Publisher {
    fn failed(&self, list: &'static str, key: &str, count: u32) {
        self.0
            .publish_later(topic::LOGIN_FAILED, format!("{list} {count} {key}"));
    }
}

/// The ban lists of this node by the name their failures are published under.
pub fn ban_lists<'a>(
    state: &'a AppState,
    agents: &'a AgentListener,
) -> Vec<(&'static str, &'a BanList)> {
    let mut lists = vec![
        ("api", &state.api_bans),
        ("proxy", state.tunnels.auth_bans()),
    ];
    lists.extend(agents.bans.lists());
    lists
}

/// Applies events until the cluster's reader stops.
pub async fn apply(
    state: Arc<AppState>,
    agents: Arc<AgentListener>,
    mut events: mpsc::Receiver<ClusterEvent>,
) {
    while let Some(event) = events.recv().await {
        match event.topic.as_str() {
            topic::AGENT => match state.registry.refresh(&event.key).await {
                Ok(Refreshed::Lost) => state.tunnels.agent_moved(&event.key).await,
                Ok(Refreshed::Unchanged) => {}
                Err(err) => {
                    tracing::warn!(client = %event.key, "reading a client changed by another node: {err}")
                }
            },
            topic::TOKEN_REVOKED => state.auth.revoked_elsewhere(&event.key),
            topic::LOGIN_FAILED => {
                let mut parts = event.key.splitn(3, ' ');
                let (Some(list), Some(count), Some(key)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                let count = count.parse::<u32>().unwrap_or(1);
                if let Some((_, bans)) = ban_lists(&state, &agents)
                    .into_iter()
                    .find(|(n, _)| *n == list)
                {
                    bans.count_elsewhere(key, count);
                }
            }
            topic::CREDENTIAL => reload_credentials(&state).await,
            topic::TUNNEL => {
                if let Err(err) = state.tunnels.changed_elsewhere(&event.key) {
                    tracing::debug!("ignoring a tunnel change another node published: {err}");
                }
            }
            topic::RESYNC => resync(&state).await,
            other => tracing::debug!(
                topic = other,
                "ignoring a cluster event of an unknown topic"
            ),
        }
    }
}

async fn reload_credentials(state: &AppState) {
    match state.agent_auth.reload().await {
        Ok(gone) => {
            for id in gone {
                state.registry.disconnect_credential(&id);
            }
        }
        Err(err) => tracing::warn!("reading agent credentials again: {err}"),
    }
}

/// After an outage: everything kept in memory that other nodes may have changed.
async fn resync(state: &AppState) {
    match state.registry.resync().await {
        Ok(lost) => {
            for id in lost {
                state.tunnels.agent_moved(&id).await;
            }
        }
        Err(err) => tracing::warn!("reading the clients again: {err}"),
    }
    if let Err(err) = state.auth.reload_revoked().await {
        tracing::warn!("reading revoked tokens again: {err}");
    }
    reload_credentials(state).await;
}
