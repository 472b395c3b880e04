//! Login sessions and TOTP secrets.

use std::sync::Arc;

use chrono::Duration;
use rport_store::{AdminGuard, SessionRecord, Store, UserWrite};

use crate::fixtures::{now, user};

fn session(jti: &str, username: &str, minutes: i64) -> SessionRecord {
    let at = now();
    SessionRecord {
        id: 0,
        jti: jti.to_owned(),
        username: username.to_owned(),
        created_at: at,
        expires_at: at + Duration::minutes(minutes),
        last_access_at: at,
        user_agent: "curl/8".to_owned(),
        ip_address: "127.0.0.1".to_owned(),
    }
}

pub async fn sessions_are_listed_touched_deleted_and_purged(store: Arc<dyn Store>) {
    let first = store
        .insert_session(&session("j1", "alice", 10))
        .await
        .expect("insert");
    let second = store
        .insert_session(&session("j2", "alice", 60))
        .await
        .expect("insert");
    store
        .insert_session(&session("j3", "bob", 10))
        .await
        .expect("insert");
    assert_ne!(first, second, "each session has its own id");
    assert!(
        store
            .insert_session(&session("j1", "alice", 10))
            .await
            .is_err(),
        "a token id is one session"
    );

    // Least recently used first: touching j1 puts it last.
    let later = now() + Duration::seconds(5);
    assert!(
        store
            .touch_session("j1", later, "browser", "10.0.0.1")
            .await
            .expect("touch")
    );
    assert!(
        !store
            .touch_session("gone", later, "browser", "10.0.0.1")
            .await
            .expect("touch"),
        "a missing session says so"
    );
    let listed = store.list_sessions("alice").await.expect("list");
    let ids: Vec<i64> = listed.iter().map(|s| s.id).collect();
    assert_eq!(ids, [second, first]);
    let touched = &listed[1];
    assert_eq!(touched.jti, "j1");
    assert_eq!(touched.user_agent, "browser");
    assert_eq!(touched.ip_address, "10.0.0.1");
    assert_eq!(
        touched.last_access_at.timestamp_millis(),
        later.timestamp_millis()
    );

    // Deleting one is limited to its user; deleting all returns them.
    assert!(
        store
            .delete_sessions("bob", Some(first))
            .await
            .expect("delete")
            .is_empty()
    );
    let deleted = store
        .delete_sessions("alice", Some(first))
        .await
        .expect("delete");
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].jti, "j1");
    let deleted = store.delete_sessions("alice", None).await.expect("delete");
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].jti, "j2");
    assert!(store.list_sessions("alice").await.expect("list").is_empty());

    // Expired sessions go; others stay.
    store
        .insert_session(&session("j4", "bob", 120))
        .await
        .expect("insert");
    let purged = store
        .purge_sessions(now() + Duration::minutes(30))
        .await
        .expect("purge");
    assert_eq!(purged, 1);
    let left: Vec<String> = store
        .list_sessions("bob")
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.jti)
        .collect();
    assert_eq!(left, ["j4"]);
}

pub async fn a_totp_secret_is_set_once_and_goes_with_its_user(store: Arc<dyn Store>) {
    assert!(
        store
            .insert_user(&user("alice", false))
            .await
            .expect("user")
    );
    assert_eq!(store.get_totp_secret("alice").await.expect("get"), None);
    assert!(
        store
            .insert_totp_secret("alice", "JBSWY3DPEHPK3PXP", now())
            .await
            .expect("insert")
    );
    assert!(
        !store
            .insert_totp_secret("alice", "OTHER", now())
            .await
            .expect("insert"),
        "a second secret does not replace the first"
    );
    assert_eq!(
        store
            .get_totp_secret("alice")
            .await
            .expect("get")
            .as_deref(),
        Some("JBSWY3DPEHPK3PXP")
    );
    assert!(store.delete_totp_secret("alice").await.expect("delete"));
    assert!(!store.delete_totp_secret("alice").await.expect("delete"));
    assert!(
        store
            .insert_totp_secret("alice", "SECOND", now())
            .await
            .expect("insert")
    );
    store
        .insert_session(&session("j1", "alice", 10))
        .await
        .expect("session");
    assert_eq!(
        store
            .delete_user("alice", AdminGuard::KeepOne)
            .await
            .expect("delete"),
        UserWrite::Done
    );
    assert_eq!(store.get_totp_secret("alice").await.expect("get"), None);
    assert!(store.list_sessions("alice").await.expect("list").is_empty());
}
