//! API users and their roles, and the rule that keeps an administrator.

use std::sync::Arc;

use rport_store::{AdminGuard, ApiTokenChange, ApiTokenRecord, Store, UserWrite};

use crate::fixtures::{now, project, user};

pub async fn users_round_trip_with_their_roles(store: Arc<dyn Store>) {
    store
        .insert_project(&project("berlin"))
        .await
        .expect("project");
    let mut alice = user("alice", false);
    alice.roles = [
        ("default".to_owned(), "viewer".to_owned()),
        ("berlin".to_owned(), "tunnels".to_owned()),
    ]
    .into_iter()
    .collect();
    assert!(store.insert_user(&alice).await.expect("insert"));
    let mut other = user("alice", true);
    other.password_hash = "other".into();
    assert!(
        !store.insert_user(&other).await.expect("insert again"),
        "name taken"
    );
    assert_eq!(
        store.get_user("alice").await.expect("get"),
        Some(alice.clone())
    );
    assert!(!format!("{alice:?}").contains("secret-hash"));

    // Updating replaces the roles, not adds to them.
    alice.roles = [("berlin".to_owned(), "admin".to_owned())]
        .into_iter()
        .collect();
    alice.password_hash = "$argon2id$v=19$new".into();
    assert_eq!(
        store
            .update_user(&alice, AdminGuard::KeepOne)
            .await
            .expect("update"),
        UserWrite::Done
    );
    assert_eq!(
        store.get_user("alice").await.expect("get"),
        Some(alice.clone())
    );
    assert!(store.insert_user(&user("bob", true)).await.expect("insert"));
    let names: Vec<String> = store
        .list_users()
        .await
        .expect("list")
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["alice", "bob"], "by name");
    assert_eq!(store.list_users().await.expect("list")[0], alice);

    assert_eq!(
        store
            .update_user(&user("nobody", false), AdminGuard::None)
            .await
            .expect("update"),
        UserWrite::NotFound,
        "updating never creates"
    );
    assert!(store.get_user("nobody").await.expect("get").is_none());
}

fn token(id: &str, username: &str) -> ApiTokenRecord {
    ApiTokenRecord {
        id: id.into(),
        username: username.into(),
        name: "ci".into(),
        scope: "read".into(),
        project: None,
        hash: "00".into(),
        created_at: now(),
        expires_at: None,
        last_used_at: None,
    }
}

pub async fn deleting_a_user_takes_its_roles_and_tokens(store: Arc<dyn Store>) {
    let mut alice = user("alice", false);
    alice.roles = [("default".to_owned(), "viewer".to_owned())]
        .into_iter()
        .collect();
    assert!(store.insert_user(&alice).await.expect("insert"));
    store
        .insert_api_token(&token("t1", "alice"))
        .await
        .expect("token");
    assert_eq!(
        store
            .delete_user("alice", AdminGuard::KeepOne)
            .await
            .expect("delete"),
        UserWrite::Done
    );
    assert_eq!(
        store
            .delete_user("alice", AdminGuard::KeepOne)
            .await
            .expect("delete"),
        UserWrite::NotFound
    );
    assert!(store.get_api_token("t1").await.expect("token").is_none());
    // A new user of that name starts clean.
    assert!(
        store
            .insert_user(&user("alice", false))
            .await
            .expect("insert")
    );
    let again = store.get_user("alice").await.expect("get").expect("alice");
    assert!(again.roles.is_empty());
    assert!(
        store
            .list_api_tokens("alice")
            .await
            .expect("tokens")
            .is_empty()
    );
}

pub async fn the_last_administrator_is_kept(store: Arc<dyn Store>) {
    for (name, admin) in [("root", true), ("second", true), ("viewer", false)] {
        assert!(store.insert_user(&user(name, admin)).await.expect("insert"));
    }
    assert_eq!(
        store
            .delete_user("second", AdminGuard::KeepOne)
            .await
            .expect("delete"),
        UserWrite::Done
    );
    assert_eq!(
        store
            .delete_user("root", AdminGuard::KeepOne)
            .await
            .expect("delete"),
        UserWrite::LastAdmin
    );
    let demoted = user("root", false);
    assert_eq!(
        store
            .update_user(&demoted, AdminGuard::KeepOne)
            .await
            .expect("update"),
        UserWrite::LastAdmin
    );
    let root = store.get_user("root").await.expect("get").expect("kept");
    assert!(root.is_admin, "refused changes change nothing");
    // Other changes to the last administrator, and changes to other users, go ahead.
    let mut renamed_hash = user("root", true);
    renamed_hash.password_hash = "$argon2id$v=19$new".into();
    assert_eq!(
        store
            .update_user(&renamed_hash, AdminGuard::KeepOne)
            .await
            .expect("update"),
        UserWrite::Done
    );
    assert_eq!(
        store
            .delete_user("viewer", AdminGuard::KeepOne)
            .await
            .expect("delete"),
        UserWrite::Done
    );
    // With an administrator outside the store (the configuration), the guard is off.
    assert_eq!(
        store
            .update_user(&demoted, AdminGuard::None)
            .await
            .expect("update"),
        UserWrite::Done
    );
    assert!(
        store
            .insert_user(&user("admin2", true))
            .await
            .expect("insert")
    );
    assert_eq!(
        store
            .delete_user("admin2", AdminGuard::None)
            .await
            .expect("delete"),
        UserWrite::Done
    );
}

pub async fn rport_user_fields_round_trip(store: Arc<dyn Store>) {
    let mut carol = user("carol", false);
    carol.password_expired = true;
    carol.two_fa_send_to = "carol@example.com".into();
    assert!(store.insert_user(&carol).await.expect("insert"));
    assert_eq!(
        store.get_user("carol").await.expect("get"),
        Some(carol.clone())
    );
    carol.password_expired = false;
    carol.two_fa_send_to = String::new();
    assert_eq!(
        store
            .update_user(&carol, AdminGuard::None)
            .await
            .expect("update"),
        UserWrite::Done
    );
    assert_eq!(store.list_users().await.expect("list"), [carol]);
}

pub async fn renaming_a_user_takes_its_roles_and_tokens(store: Arc<dyn Store>) {
    let mut alice = user("alice", true);
    alice.roles = [("default".to_owned(), "viewer".to_owned())]
        .into_iter()
        .collect();
    assert!(store.insert_user(&alice).await.expect("insert"));
    assert!(
        store
            .insert_user(&user("bob", false))
            .await
            .expect("insert")
    );
    store
        .insert_api_token(&token("t1", "alice"))
        .await
        .expect("token");
    assert_eq!(
        store.rename_user("alice", "bob").await.expect("rename"),
        UserWrite::Taken,
        "a taken name"
    );
    assert_eq!(
        store.rename_user("nobody", "zed").await.expect("rename"),
        UserWrite::NotFound
    );
    assert_eq!(
        store.rename_user("alice", "alicia").await.expect("rename"),
        UserWrite::Done
    );
    assert!(store.get_user("alice").await.expect("get").is_none());
    let alicia = store
        .get_user("alicia")
        .await
        .expect("get")
        .expect("alicia");
    assert_eq!(
        (alicia.is_admin, alicia.roles, alicia.password_hash),
        (true, alice.roles, alice.password_hash)
    );
    let tokens = store.list_api_tokens("alicia").await.expect("tokens");
    assert_eq!(tokens.len(), 1);
    assert_eq!(
        store
            .get_api_token("t1")
            .await
            .expect("get")
            .map(|t| t.username),
        Some("alicia".to_owned())
    );
}

pub async fn an_api_token_changes_name_scope_and_expiry_only(store: Arc<dyn Store>) {
    assert!(
        store
            .insert_user(&user("alice", false))
            .await
            .expect("insert")
    );
    let original = token("t1", "alice");
    store.insert_api_token(&original).await.expect("token");
    let expires_at = Some(now() + chrono::Duration::days(3));
    let change = ApiTokenChange {
        name: "deploy".into(),
        scope: "clients-auth".into(),
        expires_at,
    };
    assert!(
        !store
            .update_api_token("bob", "t1", &change)
            .await
            .expect("update"),
        "not bob's token"
    );
    assert!(
        !store
            .update_api_token("alice", "t2", &change)
            .await
            .expect("update"),
        "no such token"
    );
    assert!(
        store
            .update_api_token("alice", "t1", &change)
            .await
            .expect("update")
    );
    let stored = store.get_api_token("t1").await.expect("get").expect("t1");
    assert_eq!(
        (
            stored.name.as_str(),
            stored.scope.as_str(),
            stored.expires_at
        ),
        ("deploy", "clients-auth", expires_at)
    );
    assert_eq!(
        (stored.hash, stored.created_at, stored.username),
        (original.hash, original.created_at, original.username)
    );
}
