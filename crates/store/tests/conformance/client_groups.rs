//! Client groups and what the API sets on agents (tags, labels, allowed user groups).

use std::sync::Arc;

use rport_store::{AgentAttributes, ClientGroupRecord, Store};
use serde_json::json;

use crate::fixtures::client;

fn group(id: &str, project: &str) -> ClientGroupRecord {
    ClientGroupRecord {
        id: id.into(),
        project: project.into(),
        description: format!("group {id}"),
        params: json!({"tag": {"and": ["linux", "office*"]}, "os_kernel": ["linux"]}),
        allowed_user_groups: vec!["ops".into()],
    }
}

pub async fn client_groups_are_put_listed_and_deleted(store: Arc<dyn Store>) {
    assert!(store.list_client_groups().await.expect("list").is_empty());
    let berlin = group("berlin", "default");
    assert!(store.put_client_group(&berlin).await.expect("put"));
    assert!(
        store
            .put_client_group(&group("amsterdam", "paris"))
            .await
            .expect("put")
    );
    let ids: Vec<String> = store
        .list_client_groups()
        .await
        .expect("list")
        .into_iter()
        .map(|g| g.id)
        .collect();
    assert_eq!(ids, ["amsterdam", "berlin"], "by id");
    assert_eq!(
        store.get_client_group("berlin").await.expect("get"),
        Some(berlin.clone()),
        "the JSON comes back as it went in"
    );

    let mut changed = berlin.clone();
    changed.description = "changed".into();
    changed.allowed_user_groups = Vec::new();
    assert!(store.put_client_group(&changed).await.expect("put"));
    assert_eq!(
        store.get_client_group("berlin").await.expect("get"),
        Some(changed.clone())
    );

    // Another project cannot take over an id.
    let mut stolen = changed.clone();
    stolen.project = "paris".into();
    stolen.description = "stolen".into();
    assert!(!store.put_client_group(&stolen).await.expect("put"));
    assert_eq!(
        store.get_client_group("berlin").await.expect("get"),
        Some(changed)
    );

    assert!(store.delete_client_group("berlin").await.expect("delete"));
    assert!(!store.delete_client_group("berlin").await.expect("delete"));
    assert_eq!(store.get_client_group("berlin").await.expect("get"), None);
}

pub async fn agent_overrides_are_set_and_go_with_the_agent(store: Arc<dyn Store>) {
    let attributes = AgentAttributes {
        tags: vec!["Linux".into(), "Office Berlin".into()],
        labels: [("city".to_owned(), "Berlin".to_owned())].into(),
    };
    assert!(
        !store
            .set_agent_attributes("ghost", &attributes)
            .await
            .expect("set"),
        "no such agent"
    );
    assert!(store.list_agent_overrides().await.expect("list").is_empty());

    store
        .upsert_agent(&client("a1", "default"))
        .await
        .expect("upsert");
    assert!(
        store
            .set_agent_attributes("a1", &attributes)
            .await
            .expect("set")
    );
    let listed = store.list_agent_overrides().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].attributes, Some(attributes.clone()));
    assert_eq!(listed[0].allowed_user_groups, None, "not set yet");

    let groups = vec!["ops".to_owned()];
    assert!(
        store
            .set_agent_allowed_user_groups("a1", &groups)
            .await
            .expect("set")
    );
    // Reporting the agent again keeps what the API set.
    store
        .upsert_agent(&client("a1", "default"))
        .await
        .expect("upsert");
    let listed = store.list_agent_overrides().await.expect("list");
    assert_eq!(listed[0].attributes, Some(attributes), "one column each");
    assert_eq!(listed[0].allowed_user_groups, Some(groups));

    assert!(store.delete_agent("a1").await.expect("delete"));
    store
        .upsert_agent(&client("a1", "default"))
        .await
        .expect("upsert");
    assert!(
        store.list_agent_overrides().await.expect("list").is_empty(),
        "a deleted agent's overrides are gone"
    );
}

pub async fn a_deleted_projects_groups_go_with_it(store: Arc<dyn Store>) {
    store
        .insert_project(&crate::fixtures::project("paris"))
        .await
        .expect("insert");
    assert!(
        store
            .put_client_group(&group("in-paris", "paris"))
            .await
            .expect("put")
    );
    assert!(
        store
            .put_client_group(&group("kept", "default"))
            .await
            .expect("put")
    );
    assert_eq!(
        store
            .delete_project_if_empty("paris")
            .await
            .expect("delete"),
        rport_store::ProjectRemoval::Deleted
    );
    let ids: Vec<String> = store
        .list_client_groups()
        .await
        .expect("list")
        .into_iter()
        .map(|g| g.id)
        .collect();
    assert_eq!(
        ids,
        ["kept"],
        "a project made again with that key starts without groups"
    );
}
