//! Managed agent credentials, generated settings, the audit log and API tokens.

use std::sync::Arc;

use chrono::Duration;
use rport_store::{
    ApiTokenRecord, AuditField, AuditFilter, AuditMatch, AuditRecord, AuditSort, Store,
};

use crate::fixtures::{credential, now};

pub async fn agent_credentials_are_inserted_listed_and_deleted(store: Arc<dyn Store>) {
    assert!(
        store
            .list_agent_credentials()
            .await
            .expect("list")
            .is_empty()
    );
    let b = credential("b", "berlin");
    let a = credential("a", "default");
    assert!(store.insert_agent_credential(&b).await.expect("insert"));
    assert!(store.insert_agent_credential(&a).await.expect("insert"));
    let mut other = credential("a", "paris");
    other.hash = "other".into();
    assert!(
        !store.insert_agent_credential(&other).await.expect("insert"),
        "ids are unique; the first stays"
    );
    assert_eq!(
        store.list_agent_credentials().await.expect("list"),
        [a, b.clone()]
    );
    assert!(!format!("{b:?}").contains("salt-of"));
    assert!(store.delete_agent_credential("a").await.expect("delete"));
    assert!(!store.delete_agent_credential("a").await.expect("delete"));
    assert_eq!(store.list_agent_credentials().await.expect("list"), [b]);
}

pub async fn a_generated_setting_is_inserted_once(store: Arc<dyn Store>) {
    assert_eq!(
        store
            .setting_or_insert("jwt_secret", "first")
            .await
            .expect("insert"),
        "first"
    );
    assert_eq!(
        store
            .setting_or_insert("jwt_secret", "second")
            .await
            .expect("kept"),
        "first"
    );
    assert_eq!(
        store
            .setting_or_insert("other", "second")
            .await
            .expect("insert"),
        "second"
    );
}

fn entry(actor: &str, action: &str, minutes_ago: i64) -> AuditRecord {
    AuditRecord {
        id: 0,
        at: now() - Duration::minutes(minutes_ago),
        actor: actor.into(),
        actor_type: "user".into(),
        actor_ip: Some("192.0.2.1".into()),
        action: action.into(),
        resource: "t1".into(),
        project: Some("default".into()),
        result: "success".into(),
        detail: String::new(),
        client_id: None,
        client_hostname: None,
    }
}

fn matching(fields: &[AuditField], values: &[&str]) -> AuditMatch {
    AuditMatch {
        fields: fields.to_vec(),
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    }
}

pub async fn audit_entries_filter_page_and_purge(store: Arc<dyn Store>) {
    let entries = [
        entry("alice", "login", 30),
        entry("bob", "tunnel.create", 20),
        entry("alice", "tunnel.close", 10),
    ];
    for e in &entries {
        store.insert_audit(e).await.expect("insert");
    }
    let all = AuditFilter {
        limit: 10,
        ..Default::default()
    };
    let (listed, total) = store.list_audit(&all).await.expect("list");
    assert_eq!(total, 3);
    let actions: Vec<&str> = listed.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["tunnel.close", "tunnel.create", "login"],
        "newest first"
    );
    assert!(listed.iter().all(|e| e.id != 0), "the store numbers them");
    let mut stored = listed[2].clone();
    stored.id = 0;
    assert_eq!(stored, entries[0]);

    let alice = AuditFilter {
        matches: vec![matching(&[AuditField::Username], &["alice"])],
        limit: 1,
        offset: 1,
        ..Default::default()
    };
    let (page, total) = store.list_audit(&alice).await.expect("list");
    assert_eq!(total, 2, "the total counts the filter, not the page");
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].action, "login");
    let recent = AuditFilter {
        since: Some(now() - Duration::minutes(15)),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(store.list_audit(&recent).await.expect("list").1, 1);
    rports_words_filter_and_sort_in_the_store(store.as_ref(), &entries).await;

    let purged = store
        .purge_audit_before(now() - Duration::minutes(15))
        .await
        .expect("purge");
    assert_eq!(purged, 2);
    assert_eq!(store.list_audit(&all).await.expect("list").1, 1);
}

/// RPort's filters and sorts, which read rportd's action names as RPort's application
/// and action, run in the database on both backends.
async fn rports_words_filter_and_sort_in_the_store(store: &dyn Store, entries: &[AuditRecord]) {
    let mut failed = entry("Carol", "tunnel.create", 5);
    failed.result = "failure".into();
    failed.actor_ip = None;
    failed.client_id = Some("agent-7".into());
    failed.client_hostname = Some("web_1%".into());
    store.insert_audit(&failed).await.expect("insert");
    let actors = |filter: AuditFilter| async move {
        let (list, total) = store.list_audit(&filter).await.expect("list");
        let actors: Vec<String> = list.iter().map(|e| e.actor.clone()).collect();
        assert_eq!(total as usize, actors.len(), "{filter:?}");
        actors
    };
    let with = |matches: Vec<AuditMatch>| AuditFilter {
        matches,
        limit: 10,
        ..Default::default()
    };
    let cases: Vec<(Vec<AuditMatch>, Vec<&str>)> = vec![
        (
            vec![matching(&[AuditField::Application], &["client.tunnel"])],
            vec!["Carol", "alice", "bob"],
        ),
        (
            vec![matching(&[AuditField::Action], &["create"])],
            vec!["bob", "alice"],
        ),
        (
            vec![matching(&[AuditField::Action], &["failed", "delete"])],
            vec!["Carol", "alice"],
        ),
        // rportd's own action names still match `action`.
        (
            vec![matching(&[AuditField::Action], &["tunnel.create"])],
            vec!["Carol", "bob"],
        ),
        (
            vec![
                matching(&[AuditField::Application], &["client.*"]),
                matching(&[AuditField::Action], &["create"]),
            ],
            vec!["bob"],
        ),
        (
            vec![matching(&[AuditField::Username], &["c*"])],
            vec!["Carol"],
        ),
        (
            vec![matching(&[AuditField::ClientHostname], &["*_1%"])],
            vec!["Carol"],
        ),
        (
            vec![matching(&[AuditField::ClientHostname], &["web*1x"])],
            vec![],
        ),
        (
            vec![matching(&[AuditField::RemoteIp], &[""])],
            vec!["Carol"],
        ),
        (
            vec![matching(
                &[AuditField::ClientId, AuditField::RemoteIp],
                &["agent-7", "192.0.2.1"],
            )],
            vec!["Carol", "alice", "bob", "alice"],
        ),
    ];
    for (matches, expected) in cases {
        let shown = format!("{matches:?}");
        assert_eq!(actors(with(matches)).await, expected, "{shown}");
    }
    let mut sorted = with(Vec::new());
    sorted.sort = vec![
        AuditSort {
            field: AuditField::Application,
            descending: false,
        },
        AuditSort {
            field: AuditField::Timestamp,
            descending: false,
        },
    ];
    // auth.api.session < client.tunnel; within client.tunnel oldest first.
    assert_eq!(actors(sorted).await, ["alice", "bob", "alice", "Carol"]);
    let strictly = AuditFilter {
        after: Some(entries[1].at),
        before: Some(failed.at),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(actors(strictly).await, ["alice"]);
    // The filters bind what they are given: a quote is just a character.
    let quoted = with(vec![matching(&[AuditField::Username], &["x' OR '1'='1"])]);
    assert!(actors(quoted).await.is_empty());
    let (list, _) = store
        .list_audit(&with(vec![matching(&[AuditField::ClientId], &["agent-7"])]))
        .await
        .expect("list");
    assert_eq!(
        list,
        [AuditRecord {
            id: list[0].id,
            ..failed.clone()
        }]
    );
    store
        .purge_audit_before(now())
        .await
        .expect("purge the extra entry");
    for e in entries {
        store.insert_audit(e).await.expect("insert again");
    }
}

fn token(id: &str, username: &str) -> ApiTokenRecord {
    ApiTokenRecord {
        id: id.into(),
        username: username.into(),
        name: format!("token {id}"),
        scope: "read+write".into(),
        project: Some("default".into()),
        hash: format!("hash-of-{id}"),
        created_at: now(),
        expires_at: Some(now() + Duration::days(1)),
        last_used_at: None,
    }
}

pub async fn api_tokens_belong_to_their_user(store: Arc<dyn Store>) {
    let t1 = token("t1", "alice");
    store.insert_api_token(&t1).await.expect("insert");
    store
        .insert_api_token(&token("t2", "bob"))
        .await
        .expect("insert");
    assert_eq!(
        store.get_api_token("t1").await.expect("get"),
        Some(t1.clone())
    );
    assert!(!format!("{t1:?}").contains("hash-of"));
    assert_eq!(store.list_api_tokens("alice").await.expect("list"), [t1]);
    let used = now();
    store.touch_api_token("t1", used).await.expect("touch");
    let got = store.get_api_token("t1").await.expect("get").expect("t1");
    assert_eq!(got.last_used_at, Some(used));
    assert!(
        !store.delete_api_token("bob", "t1").await.expect("delete"),
        "only its own user deletes it"
    );
    assert!(store.delete_api_token("alice", "t1").await.expect("delete"));
    assert!(store.get_api_token("t1").await.expect("get").is_none());
}

pub async fn revoked_tokens_are_forgotten_when_expired(store: Arc<dyn Store>) {
    let at = now();
    store
        .revoke_token("soon", at + Duration::minutes(1))
        .await
        .expect("revoke");
    store
        .revoke_token("later", at + Duration::hours(1))
        .await
        .expect("revoke");
    let mut revoked = store.revoked_tokens(at).await.expect("list");
    revoked.sort();
    assert_eq!(revoked, ["later", "soon"]);
    let revoked = store
        .revoked_tokens(at + Duration::minutes(2))
        .await
        .expect("list");
    assert_eq!(revoked, ["later"]);
}
