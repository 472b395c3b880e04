//! What only the SQLite backend has: its file survives reopening, its schema migrates,
//! damaged rows read as damage, SQLite's errors are said in the store's words. The
//! contract all backends share is in `tests/conformance`.

#[path = "conformance/fixtures.rs"]
#[allow(dead_code)] // shared with the suite, which uses the rest
mod fixtures;

use fixtures::{client, credential, now, project, tunnel, user};
use rport_store::{
    AgentCredentialRecord, SqliteStore, Store, StoreError, TunnelCounters, TunnelFilter,
    TunnelOptions, TunnelStatus,
};

#[tokio::test]
async fn records_survive_reopen_and_restart_marks_agents_disconnected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = rport_store::default_db_path(dir.path());
    let admin = user("admin", true);
    {
        let store = SqliteStore::open(&path).expect("open");
        store
            .upsert_agent(&client("a", "default"))
            .await
            .expect("upsert");
        store
            .upsert_agent(&client("b", "default"))
            .await
            .expect("upsert");
        assert!(store.insert_user(&admin).await.expect("user"));
    }
    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(store.get_user("admin").await.expect("get"), Some(admin));
    let now = now();
    store
        .release_node_agents("node-1", now)
        .await
        .expect("release");
    let clients = store.list_agents().await.expect("list");
    assert_eq!(clients.len(), 2);
    assert!(
        clients
            .iter()
            .all(|c| !c.connected && c.disconnected_at.is_some())
    );
    assert_eq!(clients[0].info.tags, vec!["Linux", "Office Berlin"]);
    assert_eq!(clients[0].info.hostname, "a.example");
}

/// A row that does not read comes back marked, with the rest of the list intact, and
/// ending it leaves what was found in place.
#[tokio::test]
async fn a_damaged_tunnel_row_is_marked_not_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let store = SqliteStore::open(&path).expect("open");
    let mut sound = tunnel("sound", "a");
    sound.status = TunnelStatus::Pending;
    store.insert_tunnel(&sound).await.expect("insert");
    for id in ["bad-options", "bad-port", "bad-status"] {
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
    raw.execute(
        "UPDATE tunnels SET status = 'exploded' WHERE id = 'bad-status'",
        [],
    )
    .expect("damage status");
    let unknown = store
        .get_tunnel("bad-status")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        unknown.damage.as_deref(),
        Some("status: \"exploded\" is not a tunnel status")
    );
    assert!(!unknown.is_live(), "an unknown status reopens nothing");

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

    let at = now();
    assert!(
        store
            .end_tunnel(
                "bad-options",
                at,
                TunnelStatus::Terminated,
                "corrupt_state",
                None
            )
            .await
            .expect("end")
    );
    assert!(
        !store
            .end_tunnel(
                "no-such",
                at,
                TunnelStatus::Terminated,
                "corrupt_state",
                None
            )
            .await
            .expect("end")
    );
    let ended = store
        .get_tunnel("bad-options")
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(ended.status, TunnelStatus::Terminated);
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

/// A database of schema 7 with managed agent credentials in one JSON setting, in both of
/// the shapes that were saved.
fn version_7_with_credentials(path: &std::path::Path, json: &str) {
    drop(SqliteStore::open(path).expect("create"));
    let conn = rusqlite::Connection::open(path).expect("raw open");
    conn.execute_batch(
        "DROP TABLE agent_credentials; DROP TABLE cluster_nodes; DROP TABLE cluster_events;
        DROP TABLE client_groups; DROP TABLE agent_overrides;
        DROP INDEX clients_owner_node; DROP INDEX tunnels_live_client;
        ALTER TABLE clients DROP COLUMN owner_node; ALTER TABLE tunnels DROP COLUMN owner_node;
        ALTER TABLE users DROP COLUMN password_expired;
        ALTER TABLE users DROP COLUMN two_fa_send_to;
        DROP TABLE user_groups; DROP TABLE user_group_projects; DROP TABLE user_group_members;
        ALTER TABLE clients DROP COLUMN last_heartbeat_at;
        DROP TABLE stored_tunnels; ALTER TABLE audit_log DROP COLUMN client_id;
        ALTER TABLE audit_log DROP COLUMN client_hostname;
        DROP TABLE api_sessions; DROP TABLE totp_secrets;
        PRAGMA user_version = 7;",
    )
    .expect("back to version 7");
    conn.execute(
        "INSERT INTO settings (key, value) VALUES ('agent_credentials', ?1)",
        [json],
    )
    .expect("credentials setting");
}

#[tokio::test]
async fn agent_credentials_move_from_their_setting_into_their_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    version_7_with_credentials(
        &path,
        r#"{"new": {"hash": "sha256$aa$bb", "project": "berlin"}, "old": "sha256$cc$dd"}"#,
    );
    let store = SqliteStore::open(&path).expect("upgrade");
    let credential = |id: &str, hash: &str, project: &str| AgentCredentialRecord {
        hash: hash.into(),
        ..credential(id, project)
    };
    assert_eq!(
        store.list_agent_credentials().await.expect("list"),
        [
            credential("new", "sha256$aa$bb", "berlin"),
            credential("old", "sha256$cc$dd", "default"),
        ]
    );
    let conn = rusqlite::Connection::open(&path).expect("raw open");
    let left: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM settings WHERE key = 'agent_credentials'",
            [],
            |row| row.get(0),
        )
        .expect("count");
    assert_eq!(left, 0, "the setting is gone");
}

/// Dropped, a damaged credential would lock its agents out: the upgrade stops, naming it,
/// and leaves the database as it was.
#[test]
fn a_damaged_credential_setting_stops_the_upgrade_and_stays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    for (json, names) in [
        (
            r#"{"a": "sha256$aa$bb", "b": {"hash": 5}}"#,
            "agent credential \"b\" (settings key agent_credentials)",
        ),
        (
            r#"{"a": "sha256"#,
            "agent credentials (settings key agent_credentials)",
        ),
    ] {
        let _ = std::fs::remove_file(&path);
        version_7_with_credentials(&path, json);
        match SqliteStore::open(&path) {
            Err(StoreError::Corrupt { what, .. }) => assert_eq!(what, names),
            Err(other) => panic!("{json}: {other}"),
            Ok(_) => panic!("{json}: accepted"),
        }
        let conn = rusqlite::Connection::open(&path).expect("raw open");
        let (version, kept): (i64, String) = conn
            .query_row(
                "SELECT (SELECT user_version FROM pragma_user_version), value FROM settings \
                 WHERE key = 'agent_credentials'",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .expect("still there");
        assert_eq!((version, kept.as_str()), (7, json));
    }
}

/// A credential row whose columns do not read names itself instead of failing as a
/// database error.
#[tokio::test]
async fn a_damaged_credential_row_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let store = SqliteStore::open(&path).expect("open");
    let record = credential("rport", "default");
    assert!(
        store
            .insert_agent_credential(&record)
            .await
            .expect("insert")
    );
    let raw = rusqlite::Connection::open(&path).expect("raw open");
    raw.execute("UPDATE agent_credentials SET project = x'ff00'", [])
        .expect("damage");
    match store.list_agent_credentials().await {
        Err(StoreError::Corrupt { what, .. }) => {
            assert_eq!(what, "agent credential \"rport\" (table agent_credentials)")
        }
        other => panic!("{other:?}"),
    }
}

/// SQLite's errors come out by their code as the store's: a clash of keys as a conflict, a
/// database locked by another process past the busy timeout as unavailable, with words
/// for the operator.
#[tokio::test]
async fn sqlite_errors_are_said_in_the_stores_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let store = SqliteStore::open(&path).expect("open");
    store
        .insert_tunnel(&tunnel("t1", "a"))
        .await
        .expect("insert");
    match store.insert_tunnel(&tunnel("t1", "a")).await {
        Err(StoreError::Conflict { what }) => assert!(what.contains("tunnels.id"), "{what}"),
        other => panic!("{other:?}"),
    }

    let raw = rusqlite::Connection::open(&path).expect("raw open");
    raw.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    let project = project("p");
    let err = store.insert_project(&project).await.expect_err("locked");
    assert_eq!(
        rport_store::unavailable_reason(&err),
        Some("the database stayed locked by another process for too long")
    );
    assert!(err.to_string().contains("database is locked"), "{err}");
    raw.execute_batch("ROLLBACK").expect("unlock");
    assert!(store.insert_project(&project).await.expect("insert"));
}
