//! Projects, and the rule that only an empty one is deleted.

use std::sync::Arc;

use rport_store::{ProjectRemoval, Store};

use crate::fixtures::{client, credential, project, user};

fn keys(list: Vec<rport_store::ProjectRecord>) -> Vec<String> {
    list.into_iter().map(|p| p.key).collect()
}

pub async fn projects_start_with_default_and_keys_are_unique(store: Arc<dyn Store>) {
    assert_eq!(
        keys(store.list_projects().await.expect("list")),
        ["default"]
    );
    let berlin = project("berlin");
    assert!(store.insert_project(&berlin).await.expect("insert"));
    let mut again = project("berlin");
    again.name = "Other".into();
    assert!(!store.insert_project(&again).await.expect("insert"));
    let listed = store.list_projects().await.expect("list");
    assert_eq!(listed[0], berlin, "by key, the first one kept");
    assert_eq!(keys(listed), ["berlin", "default"]);
}

pub async fn only_an_empty_project_is_deleted_with_its_roles(store: Arc<dyn Store>) {
    for key in ["berlin", "paris"] {
        store.insert_project(&project(key)).await.expect("insert");
    }
    assert_eq!(
        store
            .delete_project_if_empty("nowhere")
            .await
            .expect("delete"),
        ProjectRemoval::NotFound
    );

    store
        .upsert_agent(&client("c1", "berlin"))
        .await
        .expect("client");
    store
        .upsert_agent(&client("c2", "berlin"))
        .await
        .expect("client");
    assert_eq!(
        store
            .delete_project_if_empty("berlin")
            .await
            .expect("delete"),
        ProjectRemoval::HasAgents(2)
    );
    store
        .insert_agent_credential(&credential("paris-agents", "paris"))
        .await
        .expect("credential");
    assert_eq!(
        store
            .delete_project_if_empty("paris")
            .await
            .expect("delete"),
        ProjectRemoval::HasAgentCredentials
    );
    assert_eq!(
        keys(store.list_projects().await.expect("list")),
        ["berlin", "default", "paris"]
    );

    let mut alice = user("alice", false);
    alice.roles = [
        ("berlin".to_owned(), "tunnels".to_owned()),
        ("default".to_owned(), "viewer".to_owned()),
    ]
    .into_iter()
    .collect();
    assert!(store.insert_user(&alice).await.expect("user"));
    for id in ["c1", "c2"] {
        store.delete_agent(id).await.expect("delete client");
    }
    assert_eq!(
        store
            .delete_project_if_empty("berlin")
            .await
            .expect("delete"),
        ProjectRemoval::Deleted
    );
    assert_eq!(
        store
            .delete_project_if_empty("berlin")
            .await
            .expect("delete"),
        ProjectRemoval::NotFound
    );
    let roles = store
        .get_user("alice")
        .await
        .expect("get")
        .expect("alice")
        .roles;
    assert_eq!(
        roles.keys().collect::<Vec<_>>(),
        ["default"],
        "the deleted project's roles went with it"
    );
}
