//! What only the PostgreSQL backend has: it rides out a restart of the server, nodes
//! starting at once migrate the schema once, damaged rows read as damage, PostgreSQL's
//! errors are said in the store's words without the password. The contract all backends
//! share is in `tests/conformance`.

#[path = "conformance/fixtures.rs"]
#[allow(dead_code)] // shared with the suite, which uses the rest
mod fixtures;

use std::sync::Arc;

use fixtures::{client, now, project, tunnel};
use rport_store::{PostgresStore, PostgresUrl, Store, StoreError, TunnelFilter, TunnelStatus};
use rport_test_postgres::TempPostgres;

fn shared() -> &'static TempPostgres {
    TempPostgres::shared().expect("PostgreSQL for tests")
}

fn parse(url: &str) -> PostgresUrl {
    PostgresUrl::parse(url).expect("the harness's URL")
}

async fn open(url: &str) -> PostgresStore {
    PostgresStore::open(&parse(url))
        .await
        .expect("open PostgreSQL")
}

/// A connection of the test's own, to change rows behind the store's back.
async fn raw(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("raw connect");
    tokio::spawn(connection);
    client
}

/// The password in a harness URL, which no error may repeat.
fn password(url: &str) -> String {
    let after_user = url.split_once("rport:").expect("a password").1;
    after_user.split_once('@').expect("a host").0.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_rides_out_a_postgresql_restart() {
    let mut server = TempPostgres::start().expect("PostgreSQL of its own");
    let url = server.url();
    let store = open(&url).await;
    let before = tunnel("before", "a");
    store.insert_tunnel(&before).await.expect("insert");

    server.stop().expect("stop PostgreSQL");
    let err = store
        .insert_project(&project("during"))
        .await
        .expect_err("PostgreSQL is down");
    let expected = format!("PostgreSQL at 127.0.0.1:{} is unreachable", server.port());
    assert_eq!(
        rport_store::unavailable_reason(&err),
        Some(expected.as_str())
    );
    assert!(
        !format!("{err} {err:?}").contains(&password(&url)),
        "{err:?}"
    );

    server.start_again().expect("start PostgreSQL again");
    assert!(
        store
            .insert_project(&project("after"))
            .await
            .expect("the pool connects again")
    );
    assert_eq!(store.get_tunnel("before").await.expect("get"), Some(before));
    let keys: Vec<String> = store
        .list_projects()
        .await
        .expect("list")
        .into_iter()
        .map(|p| p.key)
        .collect();
    assert_eq!(
        keys,
        ["after", "default"],
        "the write during the outage did not happen"
    );
}

/// Nodes that start at once on an empty database: the advisory lock lets one migrate and
/// the others find the work done.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_starting_at_once_migrate_once() {
    let url = shared().create_unique_database("racing").expect("database");
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let url = url.clone();
        opening.spawn(async move { PostgresStore::open(&parse(&url)).await.map(|_| ()) });
    }
    for opened in opening.join_all().await {
        opened.expect("every node opens");
    }
    let rows = raw(&url)
        .await
        .query("SELECT version FROM schema_version", &[])
        .await
        .expect("version");
    assert_eq!(rows.len(), 1);
    // The newest version, whatever it is: every migration ran once, on one node.
    let version: i64 = rows[0].get(0);
    assert!(version >= 1, "{version}");
}

#[tokio::test]
async fn refuses_a_schema_from_the_future() {
    let url = shared().create_unique_database("future").expect("database");
    drop(open(&url).await);
    raw(&url)
        .await
        .execute("UPDATE schema_version SET version = 99", &[])
        .await
        .expect("bump");
    match PostgresStore::open(&parse(&url)).await {
        Err(StoreError::SchemaTooNew { found: 99, known }) if known < 99 => {}
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("a newer schema must be refused"),
    }
}

/// A row that does not read comes back marked, with the rest of the list intact, and
/// ending it leaves what was found in place.
#[tokio::test]
async fn a_damaged_tunnel_row_is_marked_not_fatal() {
    let url = shared().create_unique_database("damage").expect("database");
    let store = open(&url).await;
    let mut sound = tunnel("sound", "a");
    sound.status = TunnelStatus::Pending;
    store.insert_tunnel(&sound).await.expect("insert");
    for id in ["bad-options", "bad-port", "bad-status"] {
        store.insert_tunnel(&tunnel(id, "a")).await.expect("insert");
    }
    let raw = raw(&url).await;
    raw.batch_execute(
        "UPDATE tunnels SET options = '{\"acl\": \"127.0.0.1' WHERE id = 'bad-options';
         UPDATE tunnels SET lport = -1, rport = 70000 WHERE id = 'bad-port';
         UPDATE tunnels SET status = 'exploded' WHERE id = 'bad-status';",
    )
    .await
    .expect("damage");
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
    assert_eq!(
        damage,
        "lport: -1 is not a port; rport: 70000 is not a port"
    );
    let by_subdomain = TunnelFilter {
        open_only: true,
        subdomain: Some("k3x9".into()),
        ..Default::default()
    };
    assert!(
        store
            .list_tunnels(&by_subdomain)
            .await
            .expect("options that do not parse fail no lookup by subdomain")
            .is_empty()
    );

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
    let ended = store
        .get_tunnel("bad-options")
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(ended.status, TunnelStatus::Terminated);
    let options: String = raw
        .query_one("SELECT options FROM tunnels WHERE id = 'bad-options'", &[])
        .await
        .expect("options")
        .get(0);
    assert_eq!(options, "{\"acl\": \"127.0.0.1", "the damaged text is kept");
}

/// Facts that are not JSON make an agent's record corrupt, naming it, as in SQLite.
#[tokio::test]
async fn an_agent_with_damaged_facts_is_named() {
    let url = shared().create_unique_database("facts").expect("database");
    let store = open(&url).await;
    store
        .upsert_agent(&client("a1", "default"))
        .await
        .expect("upsert");
    raw(&url)
        .await
        .execute("UPDATE clients SET info = '{' WHERE id = 'a1'", &[])
        .await
        .expect("damage");
    match store.list_agents().await {
        Err(StoreError::Corrupt { what, .. }) => assert_eq!(what, "client a1"),
        other => panic!("{other:?}"),
    }
}

/// A clash of keys is a conflict naming the key; TLS the server does not offer, a wrong
/// password, a missing database and a server that is not there are the operator's to
/// fix, said without the password.
#[tokio::test]
async fn postgresql_errors_are_said_in_the_stores_words() {
    let server = shared();
    let url = server.create_unique_database("words").expect("database");
    let store: Arc<dyn Store> = Arc::new(open(&url).await);
    store
        .insert_tunnel(&tunnel("t1", "a"))
        .await
        .expect("insert");
    match store.insert_tunnel(&tunnel("t1", "a")).await {
        Err(StoreError::Conflict { what }) => {
            assert_eq!(what, "a record with the same tunnels.id")
        }
        other => panic!("{other:?}"),
    }

    let secret = password(&url);
    let endpoint = format!("127.0.0.1:{}", server.port());
    let wrong_password = url.replace(&secret, "not-the-password");
    let missing_database = format!("{}/no_such_database", url.rsplit_once('/').expect("db").0);
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let port = listener.local_addr().expect("address").port();
        drop(listener);
        format!("postgres://rport:{secret}@127.0.0.1:{port}/rport")
    };
    let tls_refused = format!("{url}?sslmode=require");
    for (url, reason) in [
        (
            tls_refused,
            format!(
                "the TLS handshake with PostgreSQL at {endpoint} failed \
                 (its certificate is checked against the system's roots)"
            ),
        ),
        (
            wrong_password,
            format!("PostgreSQL at {endpoint} refused rportd's user or password"),
        ),
        (
            missing_database,
            format!("PostgreSQL at {endpoint} has no database \"no_such_database\""),
        ),
        (
            closed_port.clone(),
            format!(
                "PostgreSQL at {} is unreachable",
                closed_port
                    .rsplit_once('@')
                    .expect("host")
                    .1
                    .trim_end_matches("/rport")
            ),
        ),
    ] {
        let err = match PostgresStore::open(&parse(&url)).await {
            Err(err) => err,
            Ok(_) => panic!("{reason}: opened"),
        };
        assert_eq!(rport_store::unavailable_reason(&err), Some(reason.as_str()));
        let said = format!("{err} {err:?}");
        assert!(!said.contains(&secret), "{said}");
        assert!(!said.contains("not-the-password"), "{said}");
    }
}
