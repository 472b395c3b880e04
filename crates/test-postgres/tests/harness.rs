//! The harness itself: a server that starts, serves its role's databases, keeps what was
//! committed across a stop and a kill, and leaves nothing behind when dropped.

use rport_test_postgres::TempPostgres;

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn count(url: &str) -> i64 {
    let client = connect(url).await.expect("connect");
    let row = client
        .query_one("SELECT COUNT(*) FROM kept", &[])
        .await
        .expect("count");
    row.try_get(0).expect("a count")
}

#[tokio::test]
async fn committed_rows_survive_a_stop_and_a_kill_and_drop_cleans_up() {
    let mut server = TempPostgres::start().expect("start PostgreSQL");
    let url = server.create_database("harness").expect("create database");
    assert!(url.starts_with("postgres://rport:"), "{url}");
    assert!(url.ends_with(&format!("@127.0.0.1:{}/harness", server.port())));
    let client = connect(&url).await.expect("connect as the test role");
    client
        .batch_execute("CREATE TABLE kept (n INT); INSERT INTO kept VALUES (1)")
        .await
        .expect("write");
    drop(client);

    server.stop().expect("stop");
    assert!(server.pid().is_none());
    assert!(connect(&url).await.is_err(), "stopped means unreachable");
    server.start_again().expect("start again");
    assert_eq!(count(&url).await, 1);

    let client = connect(&url).await.expect("connect");
    client
        .batch_execute("INSERT INTO kept VALUES (2)")
        .await
        .expect("write");
    drop(client);
    server.kill().expect("kill");
    server.start_again().expect("start after a kill");
    assert_eq!(count(&url).await, 2, "a commit survives SIGKILL");

    let pid = server.pid().expect("running");
    let process = std::path::PathBuf::from(format!("/proc/{pid}"));
    let dir = server.dir().to_owned();
    assert!(process.exists() && dir.exists());
    drop(server);
    assert!(!process.exists(), "the postmaster is gone");
    assert!(!dir.exists(), "its dir is gone");
}

#[tokio::test]
async fn the_shared_server_gives_each_test_its_own_database() {
    let server = TempPostgres::shared().expect("shared PostgreSQL");
    let a = server.create_unique_database("shared").expect("database");
    let b = server.create_unique_database("shared").expect("database");
    assert_ne!(a, b);
    for url in [&a, &b, &server.url()] {
        connect(url).await.expect("connect");
    }
    assert!(server.create_database("Bad-Name").is_err());
}
