//! Agents the server has seen.

use std::sync::Arc;

use chrono::Duration;
use rport_store::Store;

use crate::fixtures::{client, now};

pub async fn agents_are_upserted_listed_and_deleted(store: Arc<dyn Store>) {
    assert!(store.list_agents().await.expect("list").is_empty());
    let mut a = client("a", "default");
    store.upsert_agent(&a).await.expect("upsert");
    store
        .upsert_agent(&client("b", "berlin"))
        .await
        .expect("upsert");
    a.address = "192.0.2.7:5000".into();
    a.info.hostname = "renamed.example".into();
    store.upsert_agent(&a).await.expect("upsert replaces");
    let mut listed = store.list_agents().await.expect("list");
    listed.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0], a, "every field as given, the facts included");
    assert_eq!(listed[1].project, "berlin");
    assert!(store.delete_agent("a").await.expect("delete"));
    assert!(!store.delete_agent("a").await.expect("delete again"));
    assert_eq!(store.list_agents().await.expect("list").len(), 1);
}

pub async fn disconnecting_and_purging_agents(store: Arc<dyn Store>) {
    for id in ["a", "b", "c"] {
        store
            .upsert_agent(&client(id, "default"))
            .await
            .expect("upsert");
    }
    let gone_at = now() - Duration::hours(2);
    store
        .release_agent("a", "node-1", gone_at)
        .await
        .expect("disconnect a");
    let purged = store
        .purge_agents_disconnected_before(now() - Duration::hours(1))
        .await
        .expect("purge");
    assert_eq!(purged, ["a"], "only the one gone before the cutoff");

    let at = now();
    store
        .release_node_agents("node-1", at)
        .await
        .expect("release all");
    let listed = store.list_agents().await.expect("list");
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|c| !c.connected && c.disconnected_at == Some(at))
    );
    let kept = store
        .purge_agents_disconnected_before(at)
        .await
        .expect("purge");
    assert!(kept.is_empty(), "the cutoff itself is not before");
}
