//! Tunnels: whole records go in once; afterwards each change touches only its own part
//! of the row, so no two writers undo each other.

use std::sync::Arc;

use chrono::Duration;
use rport_store::{Store, StoreError, TunnelCounters, TunnelFilter, TunnelOptions, TunnelStatus};

use crate::fixtures::{now, tunnel};

pub async fn tunnels_round_trip_and_filter(store: Arc<dyn Store>) {
    let mut t1 = tunnel("t1", "a");
    t1.created_at = now() - Duration::seconds(30);
    t1.last_active_at = Some(now());
    store.insert_tunnel(&t1).await.expect("insert");
    let mut t2 = tunnel("t2", "b");
    t2.status = TunnelStatus::Pending;
    t2.project = "default".into();
    store.insert_tunnel(&t2).await.expect("insert");
    let mut t3 = tunnel("t3", "b");
    t3.created_at = now() + Duration::seconds(30);
    t3.status = TunnelStatus::Closed;
    t3.closed_at = Some(now());
    t3.close_reason = Some("deleted".into());
    store.insert_tunnel(&t3).await.expect("insert");

    let got = store.get_tunnel("t1").await.expect("get").expect("present");
    assert_eq!(got, t1, "every field as given");
    assert!(store.get_tunnel("none").await.expect("get").is_none());

    let ids = |filter: TunnelFilter| {
        let store = Arc::clone(&store);
        async move {
            let listed = store.list_tunnels(&filter).await.expect("list");
            listed.into_iter().map(|t| t.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        ids(TunnelFilter::default()).await,
        ["t3", "t2", "t1"],
        "newest first"
    );
    let live = TunnelFilter {
        open_only: true,
        ..Default::default()
    };
    assert_eq!(ids(live).await, ["t2", "t1"], "opened and pending are live");
    let of_b = TunnelFilter {
        agent_id: Some("b".into()),
        ..Default::default()
    };
    assert_eq!(ids(of_b).await, ["t3", "t2"]);
    let in_default = TunnelFilter {
        project: Some("default".into()),
        ..Default::default()
    };
    assert_eq!(ids(in_default).await, ["t2"]);
    let first = TunnelFilter {
        limit: Some(1),
        ..Default::default()
    };
    assert_eq!(ids(first).await, ["t3"]);
}

pub async fn a_tunnel_id_is_unique(store: Arc<dyn Store>) {
    store
        .insert_tunnel(&tunnel("t1", "a"))
        .await
        .expect("insert");
    let again = store.insert_tunnel(&tunnel("t1", "b")).await;
    assert!(
        matches!(again, Err(StoreError::Conflict { .. })),
        "{again:?}"
    );
    let kept = store.get_tunnel("t1").await.expect("get").expect("kept");
    assert_eq!(kept.agent_id, "a");
}

pub async fn counter_deltas_add_up_and_change_nothing_else(store: Arc<dyn Store>) {
    let mut t = tunnel("t1", "a");
    t.counters = TunnelCounters::default();
    store.insert_tunnel(&t).await.expect("insert");
    let delta = TunnelCounters {
        connections: 2,
        refused: 1,
        bytes_in: 1000,
        bytes_out: 5,
    };
    let at = now();
    assert!(
        store
            .add_tunnel_counters("t1", delta, at)
            .await
            .expect("add")
    );
    assert!(
        store
            .add_tunnel_counters("t1", delta, at)
            .await
            .expect("add")
    );
    let got = store.get_tunnel("t1").await.expect("get").expect("present");
    assert_eq!(
        got.counters,
        TunnelCounters {
            connections: 4,
            refused: 2,
            bytes_in: 2000,
            bytes_out: 10,
        }
    );
    assert_eq!(got.last_active_at, Some(at));
    let mut expected = t.clone();
    expected.counters = got.counters;
    expected.last_active_at = got.last_active_at;
    assert_eq!(got, expected, "nothing else changed");

    // A flush that comes late does not move the last activity back.
    let earlier = at - chrono::Duration::seconds(60);
    store
        .add_tunnel_counters("t1", TunnelCounters::default(), earlier)
        .await
        .expect("add");
    let got = store.get_tunnel("t1").await.expect("get").expect("present");
    assert_eq!(got.last_active_at, Some(at), "last activity kept");

    // Counters are full u64s.
    let mut big = tunnel("big", "a");
    big.counters = TunnelCounters {
        bytes_in: u64::MAX - 10,
        ..Default::default()
    };
    store.insert_tunnel(&big).await.expect("insert");
    let more = TunnelCounters {
        bytes_in: 9,
        ..Default::default()
    };
    store
        .add_tunnel_counters("big", more, at)
        .await
        .expect("add");
    let got = store
        .get_tunnel("big")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(got.counters.bytes_in, u64::MAX - 1);
}

pub async fn options_status_and_end_change_only_themselves(store: Arc<dyn Store>) {
    let t = tunnel("t1", "a");
    store.insert_tunnel(&t).await.expect("insert");
    let options = TunnelOptions {
        acl: Some("192.0.2.0/24".into()),
        auth_user: Some("web".into()),
        auth_password_hash: Some("$argon2id$hash".into()),
        ..t.options.clone()
    };
    // An ACL change and a counters flush, in either order, keep each other.
    let delta = TunnelCounters {
        connections: 1,
        ..Default::default()
    };
    store
        .add_tunnel_counters("t1", delta, now())
        .await
        .expect("add");
    assert!(
        store
            .set_tunnel_options("t1", &options)
            .await
            .expect("options")
    );
    store
        .add_tunnel_counters("t1", delta, now())
        .await
        .expect("add");
    let got = store.get_tunnel("t1").await.expect("get").expect("present");
    assert_eq!(got.options, options);
    assert_eq!(got.counters.connections, t.counters.connections + 2);

    assert!(
        store
            .set_tunnel_status("t1", TunnelStatus::Pending, "node-1")
            .await
            .expect("status")
    );
    let got = store.get_tunnel("t1").await.expect("get").expect("present");
    assert_eq!(got.status, TunnelStatus::Pending);
    assert_eq!(got.options, options);

    let at = now();
    assert!(
        store
            .end_tunnel(
                "t1",
                at,
                TunnelStatus::Terminated,
                "server_shutdown",
                Some("node-1")
            )
            .await
            .expect("end")
    );
    let got = store.get_tunnel("t1").await.expect("get").expect("present");
    assert_eq!(got.status, TunnelStatus::Terminated);
    assert_eq!(got.closed_at, Some(at));
    assert_eq!(got.close_reason.as_deref(), Some("server_shutdown"));
    assert_eq!(got.options, options);
    assert_eq!(got.counters.connections, t.counters.connections + 2);
    assert!(!got.is_live());
    assert!(
        !store
            .set_tunnel_status("t1", TunnelStatus::Opened, "node-1")
            .await
            .expect("status"),
        "an ended tunnel stays ended"
    );
    let got = store.get_tunnel("t1").await.expect("get").expect("present");
    assert_eq!(got.status, TunnelStatus::Terminated);
}

pub async fn changes_to_a_missing_tunnel_report_it(store: Arc<dyn Store>) {
    let at = now();
    let none = "no-such";
    assert!(
        !store
            .add_tunnel_counters(none, TunnelCounters::default(), at)
            .await
            .expect("add")
    );
    assert!(
        !store
            .set_tunnel_options(none, &TunnelOptions::default())
            .await
            .expect("options")
    );
    assert!(
        !store
            .set_tunnel_status(none, TunnelStatus::Opened, "node-1")
            .await
            .expect("status")
    );
    assert!(
        !store
            .end_tunnel(none, at, TunnelStatus::Closed, "deleted", None)
            .await
            .expect("end")
    );
    assert!(store.get_tunnel(none).await.expect("get").is_none());
}
