//! The SQLite store against a real file: records survive reopening, restarts mark agents
//! disconnected, purging and tunnel filters behave.

use chrono::{Duration, Utc};
use rport_protocol::SystemInfo;
use rport_store::{
    ApiTokenRecord, ClientRecord, ProjectRecord, SqliteStore, Store, TunnelCounters, TunnelFilter,
    TunnelOptions, TunnelRecord, UserRecord,
};

fn client(id: &str) -> ClientRecord {
    ClientRecord {
        id: id.into(),
        auth_id: "rport".into(),
        info: SystemInfo {
            hostname: format!("{id}.example"),
            tags: vec!["Linux".into(), "Office Berlin".into()],
            ..Default::default()
        },
        address: "127.0.0.1:4242".into(),
        connected: true,
        connected_at: Some(Utc::now()),
        disconnected_at: None,
        project: "default".into(),
    }
}

fn tunnel(id: &str, client_id: &str) -> TunnelRecord {
    TunnelRecord {
        id: id.into(),
        client_id: client_id.into(),
        name: String::new(),
        protocol: "tcp".into(),
        lhost: "0.0.0.0".into(),
        lport: 20001,
        lport_random: true,
        rhost: "127.0.0.1".into(),
        rport: 22,
        scheme: Some("ssh".into()),
        status: "opened".into(),
        created_by: "admin".into(),
        created_at: Utc::now(),
        closed_at: None,
        close_reason: None,
        options: TunnelOptions {
            acl: Some("127.0.0.1".into()),
            idle_timeout_minutes: 5,
            auto_close_secs: 0,
            check_port: true,
            ..Default::default()
        },
        counters: TunnelCounters {
            connections: 3,
            refused: 1,
            bytes_in: u64::MAX - 1,
            bytes_out: 42,
        },
        last_active_at: None,
        project: "berlin-office".into(),
        damage: None,
    }
}

#[tokio::test]
async fn clients_survive_reopen_and_restart_marks_them_disconnected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = rport_store::default_db_path(dir.path());
    {
        let store = SqliteStore::open(&path).expect("open");
        store.upsert_client(&client("a")).await.expect("upsert");
        store.upsert_client(&client("b")).await.expect("upsert");
    }
    let store = SqliteStore::open(&path).expect("reopen");
    let now = Utc::now();
    store.mark_all_disconnected(now).await.expect("mark");
    let clients = store.list_clients().await.expect("list");
    assert_eq!(clients.len(), 2);
    assert!(
        clients
            .iter()
            .all(|c| !c.connected && c.disconnected_at.is_some())
    );
    assert_eq!(clients[0].info.tags, vec!["Linux", "Office Berlin"]);
    assert_eq!(clients[0].info.hostname, "a.example");
}

#[tokio::test]
async fn purge_removes_only_long_gone_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("db")).expect("open");
    let mut old = client("old");
    old.connected = false;
    old.disconnected_at = Some(Utc::now() - Duration::hours(2));
    store.upsert_client(&old).await.expect("upsert");
    store.upsert_client(&client("live")).await.expect("upsert");
    let purged = store
        .purge_clients_disconnected_before(Utc::now() - Duration::hours(1))
        .await
        .expect("purge");
    assert_eq!(purged, vec!["old".to_owned()]);
    let left: Vec<String> = store
        .list_clients()
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(left, vec!["live".to_owned()]);
    assert!(!store.delete_client("old").await.expect("delete"));
    assert!(store.delete_client("live").await.expect("delete"));
}

#[tokio::test]
async fn tunnels_round_trip_and_close_on_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("db")).expect("open");
    let t1 = tunnel("t1", "a");
    store.insert_tunnel(&t1).await.expect("insert");
    store
        .insert_tunnel(&tunnel("t2", "b"))
        .await
        .expect("insert");
    assert!(store.insert_tunnel(&t1).await.is_err(), "ids are unique");
    let got = store.get_tunnel("t1").await.expect("get").expect("present");
    assert_eq!(got.options, t1.options);
    assert_eq!(got.project, "berlin-office");
    let in_project = TunnelFilter {
        project: Some("berlin-office".into()),
        ..Default::default()
    };
    assert_eq!(
        store.list_tunnels(&in_project).await.expect("list").len(),
        2
    );
    let elsewhere = TunnelFilter {
        project: Some("default".into()),
        ..Default::default()
    };
    assert!(
        store
            .list_tunnels(&elsewhere)
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(got.counters, t1.counters);
    assert_eq!(got.scheme.as_deref(), Some("ssh"));

    let mut pending = tunnel("t3", "b");
    pending.status = "pending".into();
    pending.last_active_at = Some(Utc::now());
    store.insert_tunnel(&pending).await.expect("insert");
    let live = TunnelFilter {
        open_only: true,
        ..Default::default()
    };
    assert_eq!(store.list_tunnels(&live).await.expect("list").len(), 3);
    let got = store.get_tunnel("t3").await.expect("get").expect("present");
    assert_eq!(
        got.last_active_at.map(|t| t.timestamp_millis()),
        pending.last_active_at.map(|t| t.timestamp_millis())
    );

    let only_a = TunnelFilter {
        client_id: Some("a".into()),
        ..Default::default()
    };
    assert_eq!(store.list_tunnels(&only_a).await.expect("list").len(), 1);

    let closed = store
        .close_all_open_tunnels(Utc::now(), "terminated", "server_shutdown")
        .await
        .expect("close");
    assert_eq!(closed, 3);
    let open = TunnelFilter {
        open_only: true,
        ..Default::default()
    };
    assert!(store.list_tunnels(&open).await.expect("list").is_empty());
    let got = store.get_tunnel("t2").await.expect("get").expect("present");
    assert_eq!(got.status, "terminated");
    assert_eq!(got.close_reason.as_deref(), Some("server_shutdown"));
}

/// A row that does not read comes back marked, with the rest of the list intact, and
/// ending it leaves what was found in place.
#[tokio::test]
async fn a_damaged_tunnel_row_is_marked_not_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let store = SqliteStore::open(&path).expect("open");
    let mut sound = tunnel("sound", "a");
    sound.status = "pending".into();
    store.insert_tunnel(&sound).await.expect("insert");
    for id in ["bad-options", "bad-port"] {
        store.insert_tunnel(&tunnel(id, "a")).await.expect("insert");
    }
    let raw = rusqlite::Connection::open(&path).expect("open raw");
    raw.execute(
        "UPDATE tunnels SET options = '{\"acl\": \"127.0.0.1' WHERE id = 'bad-options'",
        [],
    )
    .expect("damage options");
    raw.execute(
        "UPDATE tunnels SET lport = 'twenty', rport = 70000 WHERE id = 'bad-port'",
        [],
    )
    .expect("damage ports");

    let live = TunnelFilter {
        open_only: true,
        ..Default::default()
    };
    let listed = store.list_tunnels(&live).await.expect("list");
    assert_eq!(listed.len(), 3);
    let by_id = |id: &str| listed.iter().find(|t| t.id == id).expect("listed");
    assert_eq!(by_id("sound").damage, None);
    assert_eq!(by_id("sound").options, sound.options);
    let damage = by_id("bad-options").damage.clone().expect("damaged");
    assert!(damage.starts_with("options: "), "{damage}");
    let damage = by_id("bad-port").damage.clone().expect("damaged");
    assert!(
        damage.contains("lport") && damage.contains("rport"),
        "{damage}"
    );
    assert_eq!(by_id("bad-port").options, tunnel("x", "a").options);

    let at = Utc::now();
    assert!(
        store
            .end_tunnel("bad-options", at, "terminated", "corrupt_state")
            .await
            .expect("end")
    );
    assert!(
        !store
            .end_tunnel("no-such", at, "terminated", "corrupt_state")
            .await
            .expect("end")
    );
    let ended = store
        .get_tunnel("bad-options")
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(ended.status, "terminated");
    assert_eq!(ended.close_reason.as_deref(), Some("corrupt_state"));
    let options: String = raw
        .query_row(
            "SELECT options FROM tunnels WHERE id = 'bad-options'",
            [],
            |row| row.get(0),
        )
        .expect("options");
    assert_eq!(options, "{\"acl\": \"127.0.0.1", "the damaged text is kept");
}

#[tokio::test]
async fn users_and_settings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("db")).expect("open");
    let user = UserRecord {
        username: "admin".into(),
        password_hash: "$argon2id$v=19$secret-hash".into(),
        is_admin: true,
        created_at: Utc::now(),
        roles: Default::default(),
    };
    store.upsert_user(&user).await.expect("upsert");
    assert!(!format!("{user:?}").contains("secret-hash"));
    assert_eq!(
        store
            .get_user("admin")
            .await
            .expect("get")
            .map(|u| u.is_admin),
        Some(true)
    );
    assert_eq!(store.list_users().await.expect("list").len(), 1);
    assert!(store.delete_user("admin").await.expect("delete"));
    assert!(store.get_user("admin").await.expect("get").is_none());

    assert_eq!(store.get_setting("k").await.expect("get"), None);
    store.set_setting("k", "v1").await.expect("set");
    store.set_setting("k", "v2").await.expect("set");
    assert_eq!(
        store.get_setting("k").await.expect("get").as_deref(),
        Some("v2")
    );
}

#[test]
fn refuses_a_schema_from_the_future() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    drop(SqliteStore::open(&path).expect("open"));
    let conn = rusqlite::Connection::open(&path).expect("raw open");
    conn.pragma_update(None, "user_version", 99).expect("bump");
    drop(conn);
    let err = SqliteStore::open(&path).err().expect("must refuse");
    assert!(err.to_string().contains("newer"), "{err}");
}

/// A database written by the first schema keeps its tunnels when a newer rportd opens it.
#[tokio::test]
async fn a_version_1_database_is_upgraded_without_losing_tunnels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let conn = rusqlite::Connection::open(&path).expect("raw open");
    conn.execute_batch(
        "CREATE TABLE clients (id TEXT PRIMARY KEY, auth_id TEXT NOT NULL, info TEXT NOT NULL,
            address TEXT NOT NULL, connected INTEGER NOT NULL, connected_at INTEGER,
            disconnected_at INTEGER);
        CREATE TABLE tunnels (id TEXT PRIMARY KEY, client_id TEXT NOT NULL, name TEXT NOT NULL,
            protocol TEXT NOT NULL, lhost TEXT NOT NULL, lport INTEGER NOT NULL,
            lport_random INTEGER NOT NULL, rhost TEXT NOT NULL, rport INTEGER NOT NULL,
            scheme TEXT, status TEXT NOT NULL, created_by TEXT NOT NULL,
            created_at INTEGER NOT NULL, closed_at INTEGER, close_reason TEXT,
            options TEXT NOT NULL);
        CREATE TABLE users (username TEXT PRIMARY KEY, password_hash TEXT NOT NULL,
            is_admin INTEGER NOT NULL, created_at INTEGER NOT NULL);
        CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO tunnels VALUES ('old', 'a', '', 'tcp', '0.0.0.0', 20001, 0, '127.0.0.1', 22,
            'ssh', 'opened', 'admin', 1700000000000, NULL, NULL, '{}');
        PRAGMA user_version = 1;",
    )
    .expect("version 1 schema");
    drop(conn);
    let store = SqliteStore::open(&path).expect("upgrade");
    let old = store.get_tunnel("old").await.expect("get").expect("kept");
    assert_eq!(old.rport, 22);
    assert_eq!(old.counters, TunnelCounters::default());
    assert_eq!(old.options, TunnelOptions::default());
    assert_eq!(old.last_active_at, None);
    assert_eq!(old.project, "default");
}

#[tokio::test]
async fn projects_start_with_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("db")).expect("open");
    let keys = |list: Vec<ProjectRecord>| list.into_iter().map(|p| p.key).collect::<Vec<_>>();
    assert_eq!(
        keys(store.list_projects().await.expect("list")),
        ["default"]
    );
    let berlin = ProjectRecord {
        key: "berlin-office".into(),
        name: "Berlin office".into(),
        created_at: Utc::now(),
    };
    assert!(store.insert_project(&berlin).await.expect("insert"));
    assert!(
        !store.insert_project(&berlin).await.expect("insert"),
        "keys are unique"
    );
    assert_eq!(
        keys(store.list_projects().await.expect("list")),
        ["berlin-office", "default"]
    );
    assert!(store.delete_project("berlin-office").await.expect("delete"));
    assert!(!store.delete_project("berlin-office").await.expect("delete"));
}

#[tokio::test]
async fn user_roles_follow_their_user_and_project() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("db")).expect("open");
    store
        .insert_project(&ProjectRecord {
            key: "berlin".into(),
            name: "Berlin".into(),
            created_at: Utc::now(),
        })
        .await
        .expect("project");
    let mut alice = UserRecord {
        username: "alice".into(),
        password_hash: "$argon2id$v=19$hash".into(),
        is_admin: false,
        created_at: Utc::now(),
        roles: [
            ("default".to_owned(), "viewer".to_owned()),
            ("berlin".to_owned(), "tunnels".to_owned()),
        ]
        .into_iter()
        .collect(),
    };
    assert!(store.insert_user(&alice).await.expect("insert"));
    assert!(
        !store.insert_user(&alice).await.expect("insert again"),
        "name taken"
    );
    let got = store.get_user("alice").await.expect("get").expect("alice");
    assert_eq!(got.roles, alice.roles);
    assert_eq!(
        store.list_users().await.expect("list")[0].roles,
        alice.roles
    );

    // Replacing a user replaces its roles, not adds to them.
    alice.roles = [("berlin".to_owned(), "admin".to_owned())]
        .into_iter()
        .collect();
    store.upsert_user(&alice).await.expect("upsert");
    assert_eq!(
        store
            .get_user("alice")
            .await
            .expect("get")
            .expect("alice")
            .roles,
        alice.roles
    );

    // A deleted project takes its roles with it.
    assert!(
        store
            .delete_project("berlin")
            .await
            .expect("delete project")
    );
    assert!(
        store
            .get_user("alice")
            .await
            .expect("get")
            .expect("alice")
            .roles
            .is_empty()
    );

    // A deleted user takes its roles and API tokens with it; a new user of that name starts clean.
    alice.roles = [("default".to_owned(), "viewer".to_owned())]
        .into_iter()
        .collect();
    store.upsert_user(&alice).await.expect("upsert");
    store
        .insert_api_token(&ApiTokenRecord {
            id: "t1".into(),
            username: "alice".into(),
            name: "ci".into(),
            scope: "read".into(),
            project: None,
            hash: "00".into(),
            created_at: Utc::now(),
            expires_at: None,
            last_used_at: None,
        })
        .await
        .expect("token");
    assert!(store.delete_user("alice").await.expect("delete"));
    assert!(store.get_api_token("t1").await.expect("token").is_none());
    alice.roles.clear();
    assert!(store.insert_user(&alice).await.expect("insert"));
    assert!(
        store
            .get_user("alice")
            .await
            .expect("get")
            .expect("alice")
            .roles
            .is_empty()
    );
}
