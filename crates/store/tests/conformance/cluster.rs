//! What nodes of a cluster share: leases, who holds each agent and live tunnel, and the
//! events they tell each other. Leases are by the store's clock, so a check makes a node
//! dead by renewing it with a lease of nothing.

use std::sync::Arc;
use std::time::Duration;

use rport_store::{AgentClaim, Store, TunnelFilter, TunnelStatus};
use tokio::task::JoinSet;

use crate::fixtures::{client, node, now, tunnel};

const LEASE: Duration = Duration::from_secs(30);

/// Renews `id` with a lease that has run out by the time the call returns.
async fn dead(store: &Arc<dyn Store>, id: &str) {
    store
        .renew_node(&node(id), Duration::ZERO)
        .await
        .expect("renew");
    tokio::time::sleep(Duration::from_millis(5)).await;
}

fn held_by(id: &str, owner: &str) -> rport_store::AgentRecord {
    let mut agent = client(id, "default");
    agent.owner_node = Some(owner.into());
    agent
}

pub async fn nodes_renew_and_expire_by_the_store_clock(store: Arc<dyn Store>) {
    assert!(store.list_nodes().await.expect("list").is_empty());
    store.renew_node(&node("n1"), LEASE).await.expect("renew");
    dead(&store, "n2").await;
    let nodes = store.list_nodes().await.expect("list");
    assert_eq!(
        nodes
            .iter()
            .map(|n| (n.id.as_str(), n.alive))
            .collect::<Vec<_>>(),
        [("n1", true), ("n2", false)]
    );
    assert_eq!(nodes[0].peer_address, "n1.example:8443");
    assert_eq!(nodes[0].public_host, "n1.example");
    assert!(nodes[0].lease_until > now());
    store.retire_node("n1").await.expect("retire");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let nodes = store.list_nodes().await.expect("list");
    assert!(
        nodes.iter().all(|n| !n.alive),
        "a retired node is not alive"
    );
}

pub async fn an_agent_is_held_by_one_live_node(store: Arc<dyn Store>) {
    store.renew_node(&node("n1"), LEASE).await.expect("renew");
    store.renew_node(&node("n2"), LEASE).await.expect("renew");
    let claim = store.claim_agent(&held_by("a", "n1")).await.expect("claim");
    assert_eq!(claim, AgentClaim::Claimed, "a new agent");
    let claim = store.claim_agent(&held_by("a", "n2")).await.expect("claim");
    assert_eq!(
        claim,
        AgentClaim::HeldBy("n1".into()),
        "n1 holds it and lives"
    );
    let claim = store.claim_agent(&held_by("a", "n1")).await.expect("claim");
    assert_eq!(claim, AgentClaim::Claimed, "its holder may claim it again");

    assert!(
        !store
            .release_agent("a", "n2", now())
            .await
            .expect("release"),
        "only the holder releases it"
    );
    assert!(
        store
            .get_agent("a")
            .await
            .expect("get")
            .expect("a")
            .connected
    );
    assert!(
        store
            .release_agent("a", "n1", now())
            .await
            .expect("release")
    );
    let claim = store.claim_agent(&held_by("a", "n2")).await.expect("claim");
    assert_eq!(claim, AgentClaim::Claimed, "released, anyone may take it");
    let got = store.get_agent("a").await.expect("get").expect("a");
    assert!(got.connected);
    assert_eq!(got.owner_node.as_deref(), Some("n2"));
    assert_eq!(got.disconnected_at, None);

    dead(&store, "n2").await;
    let claim = store.claim_agent(&held_by("a", "n1")).await.expect("claim");
    assert_eq!(claim, AgentClaim::Claimed, "its holder's lease ran out");
    assert!(store.get_agent("nobody").await.expect("get").is_none());
}

pub async fn a_starting_node_releases_only_its_own_agents(store: Arc<dyn Store>) {
    store.renew_node(&node("n1"), LEASE).await.expect("renew");
    store.renew_node(&node("n2"), LEASE).await.expect("renew");
    for (id, owner) in [("a", "n1"), ("b", "n2"), ("c", "n3")] {
        store.claim_agent(&held_by(id, owner)).await.expect("claim");
    }
    let at = now();
    let released = store.release_node_agents("n1", at).await.expect("release");
    assert_eq!(released, ["a"]);
    let agents = store.list_agents().await.expect("list");
    let connected: Vec<_> = agents
        .iter()
        .filter(|a| a.connected)
        .map(|a| a.id.as_str())
        .collect();
    assert_eq!(
        connected,
        ["b", "c"],
        "another node's agents stay connected"
    );

    dead(&store, "n2").await;
    let mut released = store.release_dead_nodes_agents(now()).await.expect("sweep");
    released.sort();
    assert_eq!(released, ["b", "c"], "n2's lease ran out, n3 never renewed");
    assert!(
        store
            .release_dead_nodes_agents(now())
            .await
            .expect("sweep")
            .is_empty()
    );
}

pub async fn of_nodes_claiming_one_agent_at_once_one_wins(store: Arc<dyn Store>) {
    for round in 0..10 {
        let id = format!("agent-{round}");
        let mut tasks = JoinSet::new();
        for n in 0..4 {
            let node_id = format!("n{n}");
            store
                .renew_node(&node(&node_id), LEASE)
                .await
                .expect("renew");
            let store = Arc::clone(&store);
            let agent = held_by(&id, &node_id);
            tasks.spawn(async move { store.claim_agent(&agent).await.expect("claim") });
        }
        let claims = tasks.join_all().await;
        let won = claims.iter().filter(|c| **c == AgentClaim::Claimed).count();
        assert_eq!(won, 1, "round {round}: {claims:?}");
        let holder = store
            .get_agent(&id)
            .await
            .expect("get")
            .expect("agent")
            .owner_node;
        for claim in &claims {
            if let AgentClaim::HeldBy(by) = claim {
                assert_eq!(Some(by), holder.as_ref(), "losers name the winner");
            }
        }
    }
}

pub async fn a_node_adopts_an_agents_live_tunnels(store: Arc<dyn Store>) {
    let mut live = tunnel("t1", "a");
    live.owner_node = Some("n1".into());
    store.insert_tunnel(&live).await.expect("insert");
    let mut ended = tunnel("t2", "a");
    ended.id = "t2".into();
    ended.status = TunnelStatus::Closed;
    ended.closed_at = Some(now());
    store.insert_tunnel(&ended).await.expect("insert");
    store
        .insert_tunnel(&tunnel("t3", "b"))
        .await
        .expect("insert");

    let mine = TunnelFilter {
        open_only: true,
        owner_node: Some("n1".into()),
        ..Default::default()
    };
    let listed = store.list_tunnels(&mine).await.expect("list");
    assert_eq!(
        listed.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["t1"]
    );

    let mut proxy = tunnel("t4", "b");
    proxy.options.http_proxy = true;
    proxy.options.subdomain = Some("k3x9".into());
    store.insert_tunnel(&proxy).await.expect("insert");
    let at_subdomain = |subdomain: &str| TunnelFilter {
        open_only: true,
        subdomain: Some(subdomain.into()),
        ..Default::default()
    };
    let found = store
        .list_tunnels(&at_subdomain("k3x9"))
        .await
        .expect("list");
    assert_eq!(
        found.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["t4"]
    );
    assert!(
        store
            .list_tunnels(&at_subdomain("nope"))
            .await
            .expect("list")
            .is_empty()
    );

    let adopted = store.adopt_tunnels("a", "n2").await.expect("adopt");
    assert_eq!(adopted.len(), 1, "only the live one");
    assert_eq!(adopted[0].id, "t1");
    assert_eq!(adopted[0].owner_node.as_deref(), Some("n2"));
    assert_eq!(adopted[0].options, live.options);
    assert!(store.list_tunnels(&mine).await.expect("list").is_empty());

    assert!(store.set_tunnel_port("t1", 20002).await.expect("port"));
    assert!(!store.set_tunnel_port("none", 20002).await.expect("port"));
    let got = store.get_tunnel("t1").await.expect("get").expect("t1");
    assert_eq!((got.lport, got.lport_random), (20002, true));

    let at = now();
    assert!(
        !store
            .set_tunnel_status("t1", TunnelStatus::Pending, "n1")
            .await
            .expect("status"),
        "the node that lost it writes nothing"
    );
    assert!(
        !store
            .end_tunnel(
                "t1",
                at,
                TunnelStatus::Terminated,
                "client_gone",
                Some("n1")
            )
            .await
            .expect("end"),
        "the node that lost it never ends it"
    );
    let got = store.get_tunnel("t1").await.expect("get").expect("t1");
    assert_eq!(got.status, TunnelStatus::Opened);
    assert!(
        store
            .end_tunnel("t1", at, TunnelStatus::Closed, "deleted", None)
            .await
            .expect("end"),
        "without a holder named, anyone ends it"
    );
}

pub async fn events_are_numbered_read_after_and_purged(store: Arc<dyn Store>) {
    assert_eq!(store.last_event_seq().await.expect("last"), 0);
    let first = store
        .publish_event("agent", "a", "n1")
        .await
        .expect("publish");
    let second = store
        .publish_event("token.revoked", "jti-1", "n2")
        .await
        .expect("publish");
    assert!(second > first);
    assert_eq!(store.last_event_seq().await.expect("last"), second);
    let all = store.events_after(0, 10).await.expect("read");
    assert_eq!(all.len(), 2);
    assert_eq!(
        (
            all[1].seq,
            all[1].topic.as_str(),
            all[1].key.as_str(),
            all[1].origin.as_str()
        ),
        (second, "token.revoked", "jti-1", "n2")
    );
    let later = store.events_after(first, 10).await.expect("read");
    assert_eq!(later.len(), 1);
    assert_eq!(
        store.events_after(first - 1, 1).await.expect("read").len(),
        1,
        "limit"
    );

    let purged = store
        .purge_events_before(now() + chrono::Duration::seconds(1))
        .await
        .expect("purge");
    assert_eq!(purged, 2);
    assert!(store.events_after(0, 10).await.expect("read").is_empty());
    let third = store
        .publish_event("agent", "b", "n1")
        .await
        .expect("publish");
    assert!(third > second, "numbers are never reused");
}
