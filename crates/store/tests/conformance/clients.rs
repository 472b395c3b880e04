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

pub async fn heartbeats_are_batched_and_never_move_back(store: Arc<dyn Store>) {
    let mut a = client("a", "default");
    a.last_heartbeat_at = None;
    store.upsert_agent(&a).await.expect("upsert");
    store
        .upsert_agent(&client("b", "default"))
        .await
        .expect("upsert");
    let heartbeat_of = |id: &'static str| {
        let store = Arc::clone(&store);
        async move {
            store
                .get_agent(id)
                .await
                .expect("get")
                .expect("exists")
                .last_heartbeat_at
        }
    };
    assert_eq!(heartbeat_of("a").await, None);
    let later = now() + Duration::seconds(30);
    let earlier = now() - Duration::hours(1);
    store
        .record_heartbeats(&[
            ("a".into(), later),
            ("b".into(), earlier),
            ("unknown".into(), later),
        ])
        .await
        .expect("record a batch");
    assert_eq!(heartbeat_of("a").await, Some(later));
    assert!(
        heartbeat_of("b").await > Some(earlier),
        "an older heartbeat does not replace a newer one"
    );
    assert!(store.get_agent("unknown").await.expect("get").is_none());
    store.record_heartbeats(&[]).await.expect("an empty batch");

    // A new session's claim keeps the later of the stored and the claimed heartbeat.
    let mut again = client("a", "default");
    again.last_heartbeat_at = Some(now() - Duration::minutes(5));
    store.claim_agent(&again).await.expect("claim");
    assert_eq!(heartbeat_of("a").await, Some(later));
    again.last_heartbeat_at = Some(later + Duration::seconds(1));
    store.claim_agent(&again).await.expect("claim");
    assert_eq!(heartbeat_of("a").await, Some(later + Duration::seconds(1)));
}
