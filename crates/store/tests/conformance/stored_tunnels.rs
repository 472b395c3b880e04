//! Stored tunnels: saved per agent, filtered, sorted and paged with RPort's options, and
//! gone with their agent.

use std::sync::Arc;

use chrono::Duration;
use rport_store::{
    Store, StoredTunnelField, StoredTunnelFilter, StoredTunnelMatch, StoredTunnelRecord,
    StoredTunnelSort,
};

use crate::fixtures::{client, now};

fn stored(id: &str, agent_id: &str, name: &str, port: i64, minutes_ago: i64) -> StoredTunnelRecord {
    StoredTunnelRecord {
        id: id.into(),
        agent_id: agent_id.into(),
        created_at: now() - Duration::minutes(minutes_ago),
        name: name.into(),
        scheme: Some("ssh".into()),
        remote_ip: Some("127.0.0.1".into()),
        remote_port: Some(port),
        public_port: None,
        acl: Some("10.0.0.0/8".into()),
        further_options: Some(r#"{"idle-timeout-minutes":"30"}"#.into()),
    }
}

fn page(matches: Vec<StoredTunnelMatch>, sort: Vec<StoredTunnelSort>) -> StoredTunnelFilter {
    StoredTunnelFilter {
        matches,
        sort,
        limit: 10,
        offset: 0,
    }
}

pub async fn stored_tunnels_are_kept_per_agent_and_go_with_it(store: Arc<dyn Store>) {
    store
        .upsert_agent(&client("a1", "default"))
        .await
        .expect("agent");
    store
        .upsert_agent(&client("a2", "default"))
        .await
        .expect("agent");
    let ssh = stored("s1", "a1", "SSH box", 22, 30);
    let web = stored("s2", "a1", "web", 80, 20);
    let other = stored("s3", "a2", "other", 22, 10);
    for t in [&ssh, &web, &other] {
        assert!(store.insert_stored_tunnel(t).await.expect("insert"));
    }
    assert!(
        !store
            .insert_stored_tunnel(&stored("s4", "nobody", "x", 1, 0))
            .await
            .expect("insert for a missing agent"),
        "only for an agent that exists"
    );
    let ids =
        |list: Vec<StoredTunnelRecord>| -> Vec<String> { list.into_iter().map(|t| t.id).collect() };
    let (all, total) = store
        .list_stored_tunnels("a1", &page(vec![], vec![]))
        .await
        .expect("list");
    assert_eq!(total, 2);
    assert_eq!(all, [ssh.clone(), web.clone()], "oldest first, as stored");
    let cases = [
        (
            vec![StoredTunnelMatch {
                fields: vec![StoredTunnelField::RemotePort],
                values: vec!["80".into(), "443".into()],
            }],
            vec![],
            vec!["s2"],
        ),
        (
            vec![StoredTunnelMatch {
                fields: vec![StoredTunnelField::Name],
                values: vec!["ssh*".into()],
            }],
            vec![],
            vec!["s1"],
        ),
        (
            vec![],
            vec![StoredTunnelSort {
                field: StoredTunnelField::RemotePort,
                descending: true,
            }],
            vec!["s2", "s1"],
        ),
    ];
    for (matches, sort, expected) in cases {
        let (list, total) = store
            .list_stored_tunnels("a1", &page(matches, sort))
            .await
            .expect("list");
        assert_eq!(total as usize, expected.len());
        assert_eq!(ids(list), expected);
    }
    let second = StoredTunnelFilter {
        limit: 1,
        offset: 1,
        ..page(vec![], vec![])
    };
    let (list, total) = store
        .list_stored_tunnels("a1", &second)
        .await
        .expect("list");
    assert_eq!((ids(list), total), (vec!["s2".to_owned()], 2));

    let mut changed = web.clone();
    changed.name = "web server".into();
    changed.public_port = Some(8080);
    changed.acl = None;
    changed.created_at = now() + Duration::days(1);
    assert!(store.update_stored_tunnel(&changed).await.expect("update"));
    let read = store
        .get_stored_tunnel("a1", "s2")
        .await
        .expect("get")
        .expect("there");
    assert_eq!(
        read,
        StoredTunnelRecord {
            created_at: web.created_at,
            ..changed.clone()
        },
        "all but its creation time change"
    );
    let mut elsewhere = changed.clone();
    elsewhere.agent_id = "a2".into();
    assert!(
        !store
            .update_stored_tunnel(&elsewhere)
            .await
            .expect("update")
    );
    assert!(
        store
            .get_stored_tunnel("a2", "s2")
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        !store
            .delete_stored_tunnel("a2", "s1")
            .await
            .expect("delete")
    );
    assert!(
        store
            .delete_stored_tunnel("a1", "s1")
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_stored_tunnel("a1", "s1")
            .await
            .expect("delete")
    );

    assert!(store.delete_agent("a1").await.expect("delete agent"));
    let (list, total) = store
        .list_stored_tunnels("a1", &page(vec![], vec![]))
        .await
        .expect("list");
    assert!(list.is_empty() && total == 0, "gone with the agent");
    let (list, _) = store
        .list_stored_tunnels("a2", &page(vec![], vec![]))
        .await
        .expect("list");
    assert_eq!(list, [other]);
}
