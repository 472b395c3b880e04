//! The gauges a scrape reads from the live state: clients by project, open tunnels,
//! bans, and in a cluster the other nodes alive. Nothing is counted twice: each is
//! computed from the registry, the tunnel manager and the ban lists when asked.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use crate::agents::listener::AgentBans;
use crate::api::AppState;
use crate::metrics::Gauges;
use crate::metrics::render::{Exposition, Kind};

/// Held by the metrics, which the state holds: the state weakly, so that a stopped server
/// is freed.
pub struct LiveGauges {
    pub state: Weak<AppState>,
    pub agent_bans: Arc<AgentBans>,
}

impl Gauges for LiveGauges {
    fn write(&self, out: &mut Exposition) {
        let Some(state) = self.state.upgrade() else {
            return;
        };
        clients(&state, out);
        tunnels(&state, out);
        bans(&state, &self.agent_bans, out);
        if matches!(
            state.config.database,
            rport_store::DatabaseSettings::Postgres { .. }
        ) {
            let me = state.cluster.node_id();
            let up = state
                .cluster
                .nodes()
                .iter()
                .filter(|node| node.alive && node.id != me)
                .count();
            out.single(
                "rportd_cluster_peers_up",
                Kind::Gauge,
                "Other nodes of the cluster whose lease ran when the node list was last read.",
                up,
            );
        }
    }
}

fn clients(state: &Arc<AppState>, out: &mut Exposition) {
    // (connected, disconnected) by project.
    let counts: BTreeMap<String, (u64, u64)> = state.registry.with_agents(|agents| {
        let mut counts = BTreeMap::new();
        for entry in agents.values() {
            let count: &mut (u64, u64) = counts.entry(entry.record.project.clone()).or_default();
            if entry.is_connected() {
                count.0 += 1;
            } else {
                count.1 += 1;
            }
        }
        counts
    });
    let name = "rportd_clients_connected";
    out.family(
        name,
        Kind::Gauge,
        "Clients (agents) connected now, through any node of the cluster, by project.",
    );
    for (project, (connected, _)) in &counts {
        out.sample(name, &[("project", project)], connected);
    }
    let name = "rportd_clients_disconnected";
    out.family(
        name,
        Kind::Gauge,
        "Clients (agents) known but not connected now, by project.",
    );
    for (project, (_, disconnected)) in &counts {
        out.sample(name, &[("project", project)], disconnected);
    }
}

fn tunnels(state: &Arc<AppState>, out: &mut Exposition) {
    let name = "rportd_tunnels_open";
    out.family(
        name,
        Kind::Gauge,
        "Tunnels holding their ports on this node now (waiting agents' included), by project and protocol.",
    );
    for ((project, protocol), open) in state.tunnels.open_by_project_and_protocol() {
        out.sample(name, &[("project", &project), ("protocol", protocol)], open);
    }
}

fn bans(state: &Arc<AppState>, agent_bans: &AgentBans, out: &mut Exposition) {
    let name = "rportd_bans_active";
    out.family(
        name,
        Kind::Gauge,
        "Keys (addresses, users, credentials) banned now for failed logins, by list: api, agents, tunnel_proxy.",
    );
    out.sample(name, &[("list", "api")], state.api_bans.active());
    out.sample(name, &[("list", "agents")], agent_bans.active());
    out.sample(
        name,
        &[("list", "tunnel_proxy")],
        state.tunnels.auth_bans().active(),
    );
}
