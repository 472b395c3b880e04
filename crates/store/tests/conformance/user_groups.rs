//! User groups: what was set comes back, memberships, and what deleting a group, a user
//! or a project takes with it.

use std::sync::Arc;

use rport_store::{AdminGuard, ProjectRemoval, Store, UserGroupRecord, UserWrite};

use crate::fixtures::{project, user};

fn group(name: &str, projects: &[&str]) -> UserGroupRecord {
    UserGroupRecord {
        name: name.to_owned(),
        permissions: vec!["auditlog".to_owned(), "tunnels".to_owned()],
        tunnels_restricted: Some(r#"{"scheme":["ssh"]}"#.to_owned()),
        commands_restricted: None,
        projects: projects.iter().map(|p| (*p).to_owned()).collect(),
    }
}

pub async fn user_groups_round_trip_and_replace(store: Arc<dyn Store>) {
    store
        .insert_project(&project("berlin"))
        .await
        .expect("project");
    assert_eq!(store.get_user_group("Editors").await.expect("get"), None);
    let editors = group("Editors", &["berlin", "default"]);
    store.put_user_group(&editors).await.expect("put");
    assert_eq!(
        store.get_user_group("Editors").await.expect("get"),
        Some(editors.clone())
    );
    assert_eq!(
        store.get_user_group("editors").await.expect("get"),
        None,
        "names are exact"
    );

    // A put replaces all of it, projects included.
    let replaced = UserGroupRecord {
        name: "Editors".into(),
        permissions: Vec::new(),
        tunnels_restricted: None,
        commands_restricted: Some(r#"{"allow":["^ls"]}"#.into()),
        projects: vec!["berlin".into()],
    };
    store.put_user_group(&replaced).await.expect("put again");
    store
        .put_user_group(&group("Auditors", &[]))
        .await
        .expect("put");
    assert_eq!(
        store.list_user_groups().await.expect("list"),
        [group("Auditors", &[]), replaced.clone()],
        "by name"
    );

    // Deleting the project takes it out of every group.
    assert_eq!(
        store
            .delete_project_if_empty("berlin")
            .await
            .expect("delete"),
        ProjectRemoval::Deleted
    );
    let left = store
        .get_user_group("Editors")
        .await
        .expect("get")
        .expect("kept");
    assert!(left.projects.is_empty(), "{left:?}");
}

pub async fn memberships_follow_users_and_groups(store: Arc<dyn Store>) {
    store
        .put_user_group(&group("Editors", &["default"]))
        .await
        .expect("put");
    store.insert_user(&user("root", true)).await.expect("root");
    store
        .insert_user(&user("alice", false))
        .await
        .expect("alice");
    let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    store
        .set_user_groups("alice", &names(&["Editors", "Never-set"]))
        .await
        .expect("set");
    store
        .set_user_groups("bob", &names(&["Editors"]))
        .await
        .expect("set");
    assert_eq!(
        store.list_user_group_members().await.expect("members"),
        [
            ("alice".to_owned(), "Editors".to_owned()),
            ("alice".to_owned(), "Never-set".to_owned()),
            ("bob".to_owned(), "Editors".to_owned()),
        ]
    );
    let of_alice = store.user_groups_of("alice").await.expect("of alice");
    assert_eq!(
        of_alice,
        [group("Editors", &["default"])],
        "only set groups"
    );

    // Setting replaces, not adds.
    store
        .set_user_groups("alice", &names(&["Never-set"]))
        .await
        .expect("set");
    assert!(
        store
            .user_groups_of("alice")
            .await
            .expect("of alice")
            .is_empty()
    );

    // A deleted user leaves its groups.
    assert_eq!(
        store
            .delete_user("alice", AdminGuard::KeepOne)
            .await
            .expect("delete"),
        UserWrite::Done
    );
    assert_eq!(
        store.list_user_group_members().await.expect("members"),
        [("bob".to_owned(), "Editors".to_owned())]
    );

    // A deleted group takes its memberships; one only named by a membership counts too.
    assert!(store.delete_user_group("Editors").await.expect("delete"));
    assert_eq!(store.get_user_group("Editors").await.expect("get"), None);
    assert!(
        store
            .list_user_group_members()
            .await
            .expect("members")
            .is_empty()
    );
    assert!(!store.delete_user_group("Editors").await.expect("again"));
    store
        .set_user_groups("bob", &names(&["Only-named"]))
        .await
        .expect("set");
    assert!(
        store
            .delete_user_group("Only-named")
            .await
            .expect("delete named")
    );
}
