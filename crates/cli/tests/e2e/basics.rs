//! End to end: the basic story (agents attach and are listed, the API logs in, tunnels
//! carry data, the server restarts, crashes and stops) and its edges (wrong keys and
//! credentials, damaged records, bad config).

use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use crate::support::*;
use serde_json::Value;

#[test]
fn agent_attaches_and_is_listed_with_its_facts() {
    let dir = tempdir();
    let server = Rportd::start(dir.path());
    let _agent = Rport::attach(&server, "my-client-1", &dir.path().join("agent"));
    let client = server.wait_connection_state("my-client-1", "connected", ATTACH);

    assert_eq!(client["id"], "my-client-1");
    assert_eq!(client["name"], "My Test VM");
    assert_eq!(
        client["tags"],
        serde_json::json!(["Linux", "Office Berlin"])
    );
    assert_eq!(client["client_auth_id"], "agent1");
    for field in [
        "os",
        "os_arch",
        "os_kernel",
        "hostname",
        "version",
        "timezone",
        "address",
    ] {
        assert!(
            client[field].as_str().is_some_and(|v| !v.is_empty()),
            "field {field} should be reported: {client}"
        );
    }
    assert!(client["ipv4"].is_array() && client["ipv6"].is_array());
    assert_eq!(client["tunnels"], serde_json::json!([]));
    assert!(
        client["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:"))
    );

    // The list shows it too, with meta.count, and filters work on tags and wildcards.
    let (status, list) = server.request("GET", "/api/v1/clients");
    assert_eq!(status, 200);
    assert_eq!(list["meta"]["count"], 1);
    assert_eq!(list["data"][0]["id"], "my-client-1");
    let (_, filtered) = server.request(
        "GET",
        "/api/v1/clients?filter[tags]=*berlin*&fields[clients]=id,name",
    );
    assert_eq!(filtered["meta"]["count"], 1);
    assert_eq!(
        filtered["data"][0],
        serde_json::json!({"id": "my-client-1", "name": "My Test VM"})
    );
    let (_, none) = server.request("GET", "/api/v1/clients?filter[os_kernel]=windows");
    assert_eq!(none["meta"]["count"], 0);
    let (status, bad) = server.request("GET", "/api/v1/clients?filter[password]=x");
    assert_eq!(status, 400, "{bad}");
    assert!(bad["errors"][0]["code"].is_string());

    // Status reports it and the same fingerprint as the file.
    let (status, body) = server.request("GET", "/api/v1/status");
    assert_eq!(status, 200);
    assert_eq!(body["data"]["clients_connected"], 1);
    assert_eq!(body["data"]["clients_disconnected"], 0);
    let file = std::fs::read_to_string(server.data_dir().join("rportd-fingerprint.txt"))
        .expect("fingerprint file");
    assert_eq!(body["data"]["fingerprint"], file.trim());
    assert_eq!(body["data"]["fingerprint"], server.fingerprint.as_str());
    assert_eq!(
        body["data"]["used_ports"],
        serde_json::json!(["20000-60000"])
    );

    // A connected client cannot be deleted.
    let (status, body) = server.request("DELETE", "/api/v1/clients/my-client-1");
    assert_eq!(status, 400, "{body}");
}

#[test]
fn api_requires_credentials_and_issues_tokens() {
    let dir = tempdir();
    let server = Rportd::start(dir.path());
    let (status, body) = server.request_as("GET", "/api/v1/clients", "");
    assert_eq!(status, 401);
    assert_eq!(body["errors"][0]["code"], "ERR_CODE_UNAUTHORIZED");
    let (status, _) = server.request_as("GET", "/api/v1/clients", &basic(API_USER, "wrong"));
    assert_eq!(status, 401);

    let (status, login) = server.request("GET", "/api/v1/login");
    assert_eq!(status, 200, "{login}");
    let token = login["data"]["token"].as_str().expect("token").to_owned();
    let (status, _) = server.request_as("GET", "/api/v1/status", &format!("Bearer {token}"));
    assert_eq!(status, 200);
    let (status, _) = server.request_as("GET", "/api/v1/status", &format!("Bearer {token}x"));
    assert_eq!(status, 401);

    let (status, login) = server.post_json(
        "/api/v1/login",
        &serde_json::json!({"username": API_USER, "password": API_PASSWORD}),
    );
    assert_eq!(status, 200, "{login}");
    let (status, _) = server.post_json(
        "/api/v1/login",
        &serde_json::json!({"username": API_USER, "password": "no"}),
    );
    assert_eq!(status, 401);

    let (status, body) = server.request("GET", "/api/v1/nonexistent");
    assert_eq!(status, 404);
    assert!(body["errors"].is_array());
}

#[test]
fn wrong_fingerprint_is_refused_and_named() {
    let dir = tempdir();
    let server = Rportd::start(dir.path());
    let wrong = server
        .fingerprint
        .chars()
        .map(|c| {
            if c == ':' {
                c
            } else if c == '0' {
                '1'
            } else {
                '0'
            }
        })
        .collect::<String>();
    let address = server.agent_address.to_string();
    let data = dir.path().join("agent");
    let agent = Rport::start(&[
        "--id",
        "imposter",
        "--fingerprint",
        &wrong,
        "--auth",
        AGENT_AUTH,
        "--data-dir",
        data.to_str().expect("path"),
        &address,
    ]);
    let line = agent.stderr.wait_for("fingerprint mismatch", ATTACH);
    assert!(
        line.contains(&wrong) && line.contains(&server.fingerprint),
        "both values named: {line}"
    );
    assert!(server.client("imposter").is_none());

    // A prefix of the right fingerprint is not accepted either.
    let prefix = &server.fingerprint[..47];
    let agent = Rport::start(&[
        "--id",
        "x",
        "--fingerprint",
        prefix,
        "--auth",
        AGENT_AUTH,
        &address,
    ]);
    // Refused at start, before it connects: said on stderr (waited for, not slept on, so a
    // loaded machine does not fail it).
    agent.stderr.wait_for("fingerprint", ATTACH);
    assert!(server.client("x").is_none());
}

#[test]
fn wrong_password_is_refused_and_retried() {
    let dir = tempdir();
    let server = Rportd::start(dir.path());
    let address = server.agent_address.to_string();
    let data = dir.path().join("agent");
    let agent = Rport::start(&[
        "--id",
        "badpass",
        "--fingerprint",
        &server.fingerprint,
        "--auth",
        "agent1:wrong",
        "--max-retry-interval",
        "1s",
        "--data-dir",
        data.to_str().expect("path"),
        &address,
    ]);
    agent.stderr.wait_for("authentication failed", ATTACH);
    // It keeps trying (forever), each time refused.
    wait_for("a second attempt", ATTACH, || {
        (agent
            .stderr
            .all()
            .iter()
            .filter(|l| l.contains("authentication failed"))
            .count()
            >= 2)
            .then_some(())
    });
    assert!(server.client("badpass").is_none());
    server
        .stderr
        .wait_for("agent authentication failed", ATTACH);
}

#[test]
fn tunnel_carries_mebibytes_both_ways_on_fifty_connections_and_closes_on_delete() {
    let dir = tempdir();
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            used_ports: "41000-41999".into(),
            ..Default::default()
        },
    );
    let _agent = Rport::attach(&server, "my-client-1", &dir.path().join("agent"));
    server.wait_connection_state("my-client-1", "connected", ATTACH);
    let echo = echo_server();

    let tunnel = server.open_tunnel("my-client-1", &format!("remote={}", echo.port()));
    assert_eq!(tunnel["lport_random"], true);
    assert_eq!(tunnel["rhost"], "127.0.0.1");
    assert_eq!(tunnel["rport"], echo.port().to_string());
    assert_eq!(tunnel["protocol"], "tcp");
    assert_eq!(tunnel["client_id"], "my-client-1");
    assert!(tunnel["id"].as_str().is_some_and(|id| !id.is_empty()));
    let lport: u16 = tunnel["lport"]
        .as_str()
        .expect("lport")
        .parse()
        .expect("number");
    assert!(
        (41000..=41999).contains(&lport),
        "random port {lport} within used_ports"
    );

    let address = tunnel_address(&tunnel);
    echo_round_trip(address, 8 * 1024 * 1024 + 3, 0);
    let workers: Vec<_> = (0..50u64)
        .map(|i| {
            thread::spawn(move || echo_round_trip(address, 1024 * 1024 + i as usize * 997, i + 1))
        })
        .collect();
    for worker in workers {
        worker.join().expect("connection intact");
    }

    // The tunnel is listed, on the client and in /tunnels.
    let client = server.client("my-client-1").expect("client");
    assert_eq!(client["tunnels"][0]["id"], tunnel["id"]);
    let (_, tunnels) = server.request("GET", "/api/v1/tunnels");
    assert_eq!(tunnels["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(tunnels["data"][0]["client_id"], "my-client-1");

    let id = tunnel["id"].as_str().expect("id");
    let (status, _) = server.request(
        "DELETE",
        &format!("/api/v1/clients/my-client-1/tunnels/{id}"),
    );
    assert_eq!(status, 204);
    wait_for("the tunnel port to close", Duration::from_secs(5), || {
        TcpStream::connect(address).is_err().then_some(())
    });
    let (_, tunnels) = server.request("GET", "/api/v1/tunnels");
    assert_eq!(tunnels["data"], serde_json::json!([]));
    let (_, closed) = server.request("GET", "/api/v1/tunnels?filter[status]=closed");
    assert_eq!(closed["data"][0]["id"], tunnel["id"]);
    assert_eq!(closed["data"][0]["close_reason"], "deleted");
    let (status, _) = server.request(
        "DELETE",
        &format!("/api/v1/clients/my-client-1/tunnels/{id}"),
    );
    assert_eq!(status, 404);
}

#[test]
fn tunnel_requests_are_validated() {
    let dir = tempdir();
    // Two ports the kernel calls free, held until used so that no other test's server
    // takes them: the tunnel asks for the first, a squatter keeps the second.
    let asked = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = |l: &std::net::TcpListener| l.local_addr().expect("address").port();
    let (wanted, busy) = (port(&asked), port(&squatter));
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            used_ports: format!("{}-{}", wanted.min(busy), wanted.max(busy)),
            ..Default::default()
        },
    );
    let _agent = Rport::attach(&server, "c1", &dir.path().join("agent"));
    server.wait_connection_state("c1", "connected", ATTACH);

    let expect_error = |query: &str, status: u16, code: &str| {
        let (got, body) = server.request("PUT", &format!("/api/v1/clients/c1/tunnels?{query}"));
        assert_eq!(got, status, "{query}: {body}");
        assert_eq!(body["errors"][0]["code"], code, "{query}: {body}");
        body
    };
    expect_error("", 400, "ERR_CODE_INVALID_REQUEST");
    expect_error("remote=0", 400, "ERR_CODE_INVALID_REQUEST");
    expect_error("remote=99999", 400, "ERR_CODE_INVALID_REQUEST");
    expect_error("remote=22&local=80", 400, "ERR_CODE_INVALID_REQUEST");
    expect_error(
        "remote=22&scheme=abcdefghijklmnop",
        400,
        "ERR_CODE_URI_SCHEME_LENGTH_EXCEED",
    );
    expect_error("remote=22&http_proxy=true", 400, "ERR_CODE_INVALID_REQUEST");
    let (status, _) = server.request("PUT", "/api/v1/clients/nobody/tunnels?remote=22");
    assert_eq!(status, 404);

    // A given local port is used as asked; asking again for it is a conflict.
    drop(asked);
    let tunnel = server.open_tunnel(
        "c1",
        &format!("remote=22&check_port=0&local=127.0.0.1:{wanted}&name=ssh%20box"),
    );
    assert_eq!(tunnel["lport"], wanted.to_string());
    assert_eq!(tunnel["lhost"], "127.0.0.1");
    assert_eq!(tunnel["lport_random"], false);
    assert_eq!(tunnel["scheme"], "ssh");
    assert_eq!(tunnel["name"], "ssh box");
    expect_error(
        &format!("remote=23&check_port=0&local=127.0.0.1:{wanted}"),
        400,
        "ERR_CODE_TUNNEL_EXIST",
    );
    // A port another program holds is busy.
    let body = expect_error(
        &format!("remote=23&check_port=0&local=127.0.0.1:{busy}"),
        409,
        "ERR_CODE_LOCAL_PORT_IN_USE",
    );
    assert!(body.to_string().contains(&busy.to_string()), "{body}");
    drop(squatter);
}

#[test]
fn restart_keeps_agents_listed_and_they_come_back_by_themselves() {
    let dir = tempdir();
    let mut server = Rportd::start(dir.path());
    let port = server.agent_address.port();
    let agent = Rport::attach(&server, "my-client-1", &dir.path().join("agent"));
    server.wait_connection_state("my-client-1", "connected", ATTACH);
    let echo = echo_server();
    let tunnel = server.open_tunnel("my-client-1", &format!("remote={}", echo.port()));
    server.kill();
    assert!(
        agent.stderr.find("is shutting down").is_none(),
        "a crash says nothing"
    );

    // Back up with the agent's credential changed, so the agent cannot reconnect yet and the
    // restarted server's view of it can be observed.
    let refusing = ServerSettings {
        agent_port: port,
        agent_auth: "agent1:changed".into(),
        ..Default::default()
    };
    let mut server = Rportd::start_with(dir.path(), &refusing);
    let client = server.client("my-client-1").expect("known after restart");
    assert_eq!(client["connection_state"], "disconnected");
    assert!(client["disconnected_at"].is_string(), "{client}");
    assert_eq!(client["name"], "My Test VM", "facts survive the restart");
    // A crash is not the end of a tunnel: it holds its port again, waiting for its agent.
    assert_eq!(client["tunnels"][0]["id"], tunnel["id"]);
    assert_eq!(client["tunnels"][0]["status"], "pending");
    assert_eq!(client["tunnels"][0]["lport"], tunnel["lport"]);
    let (_, status) = server.request("GET", "/api/v1/status");
    assert_eq!(status["data"]["clients_disconnected"], 1);
    // A deliberate stop is: the tunnel ends with the server.
    assert!(server.terminate().success());

    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            agent_port: port,
            ..Default::default()
        },
    );
    server.wait_connection_state("my-client-1", "connected", ATTACH);
    let past = server
        .tunnel(tunnel["id"].as_str().expect("id"))
        .expect("kept");
    assert_eq!(past["status"], "terminated");
    assert_eq!(past["close_reason"], "server_shutdown");
}

/// The server's database, opened beside a stopped rportd to damage what it stored.
fn database(dir: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("server-data").join("rportd.db")).expect("open database")
}

/// A crash leaves tunnels live in the store, to be opened again on the next start. One
/// whose stored record no longer parses (its ACL, its options, its protocol) must not come
/// back open wider than it was: it ends as `corrupt_state`, its port stays shut, and the
/// log says which tunnel and what did not parse. Sound tunnels come back as before.
#[test]
fn a_live_tunnel_whose_stored_record_does_not_parse_stays_closed_after_a_crash() {
    let dir = tempdir();
    let mut server = Rportd::start(dir.path());
    let agent_port = server.agent_address.port();
    let _agent = Rport::attach(&server, "client-1", &dir.path().join("agent"));
    server.wait_connection_state("client-1", "connected", ATTACH);
    let echo = echo_server();
    let open = |acl: &str| {
        let tunnel = server.open_tunnel("client-1", &format!("remote={}&acl={acl}", echo.port()));
        tunnel["id"].as_str().expect("id").to_owned()
    };
    // The same target thrice needs three different ACLs; each lets this test in.
    let bad_acl = open("127.0.0.1");
    let bad_options = open("127.0.0.1,127.0.0.2");
    let bad_protocol = open("127.0.0.1,127.0.0.3");
    let sound = open("127.0.0.1,127.0.0.4");
    let ports: Vec<(String, std::net::SocketAddr)> =
        [&bad_acl, &bad_options, &bad_protocol, &sound]
            .iter()
            .map(|id| {
                let tunnel = server.tunnel(id).expect("listed");
                ((*id).clone(), tunnel_address(&tunnel))
            })
            .collect();
    server.kill();

    let db = database(dir.path());
    let damage = |sql: &str, id: &str| {
        assert_eq!(db.execute(sql, [id]).expect(sql), 1, "{sql}");
    };
    damage(
        "UPDATE tunnels SET options = json_set(options, '$.acl', '127.0.0.1,300.0.0.1') WHERE id = ?1",
        &bad_acl,
    );
    damage(
        "UPDATE tunnels SET options = substr(options, 1, 20) WHERE id = ?1",
        &bad_options,
    );
    damage(
        "UPDATE tunnels SET protocol = 'tcp-ish' WHERE id = ?1",
        &bad_protocol,
    );
    drop(db);

    let server = Rportd::start_on_agent_port(dir.path(), agent_port);
    for (id, what) in [
        (&bad_acl, "acl"),
        (&bad_options, "options"),
        (&bad_protocol, "protocol"),
    ] {
        let tunnel = server.tunnel(id).expect("kept");
        assert_eq!(tunnel["status"], "terminated", "{tunnel}");
        assert_eq!(tunnel["close_reason"], "corrupt_state", "{tunnel}");
        let line = server.stderr.wait_for(&format!("tunnel={id}"), ATTACH);
        assert!(
            line.contains("client-1") && line.contains("does not parse") && line.contains(what),
            "{line}"
        );
    }
    server.wait_connection_state("client-1", "connected", ATTACH);
    let restored = server.wait_tunnel_status(&sound, "opened", ATTACH);
    assert_eq!(restored["close_reason"], Value::Null, "{restored}");
    for (id, address) in &ports {
        if *id == sound {
            echo_round_trip(*address, 10_000, 1);
        } else {
            let refused = TcpStream::connect_timeout(address, Duration::from_secs(5));
            assert!(
                refused.is_err(),
                "the port {address} of damaged tunnel {id} accepts connections"
            );
        }
    }
}

/// Runs rportd on the configuration `Rportd` wrote into `dir`, expecting it to stop by
/// itself; one still running after 30 s is killed. Returns whether it exited on its own
/// with success, and what it wrote to stderr.
fn start_expecting_exit(dir: &std::path::Path) -> (Option<bool>, String) {
    let log = dir.join("rportd-start.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rportd"))
        .arg("-c")
        .arg(dir.join("rportd.conf"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn rportd");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let exited = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status.success());
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    (exited, std::fs::read_to_string(&log).unwrap_or_default())
}

/// A managed agent credential that does not parse must not be dropped, nor replaced by a
/// newly generated one saved over every stored credential (which locks all agents out):
/// rportd refuses to start, naming the record and the database file, and leaves it as is.
#[test]
fn damaged_agent_credentials_stop_the_start_and_are_left_as_they_are() {
    let dir = tempdir();
    let settings = ServerSettings {
        agent_auth: String::new(),
        ..Default::default()
    };
    let mut server = Rportd::start_with(dir.path(), &settings);
    server
        .stdout
        .wait_for("generated agent credential", Duration::from_secs(10));
    assert!(server.terminate().success());
    let db = database(dir.path());
    let read = || -> String {
        db.query_row(
            "SELECT quote(hash) || ' ' || quote(project) FROM agent_credentials WHERE id = 'rport'",
            [],
            |row| row.get(0),
        )
        .expect("stored credential")
    };
    let original = read();
    let hash: String = db
        .query_row(
            "SELECT hash FROM agent_credentials WHERE id = 'rport'",
            [],
            |row| row.get(0),
        )
        .expect("hash of rport");
    let db_path = dir.path().join("server-data").join("rportd.db");

    let truncated_hash = format!(
        "UPDATE agent_credentials SET hash = '{}' WHERE id = 'rport'",
        &hash[..hash.len() - 2]
    );
    let project_not_text = "UPDATE agent_credentials SET project = x'ff00' WHERE id = 'rport'";
    for damage in [truncated_hash.as_str(), project_not_text] {
        db.execute(damage, []).expect("damage");
        let damaged = read();
        let (exited, stderr) = start_expecting_exit(dir.path());
        assert_eq!(exited, Some(false), "rportd must refuse to start: {stderr}");
        assert!(
            stderr.contains("agent credential \"rport\"")
                && stderr.contains("agent_credentials")
                && stderr.contains(&db_path.display().to_string()),
            "{stderr}"
        );
        assert_eq!(
            read(),
            damaged,
            "the stored credentials are left as they were"
        );
        db.execute(
            "UPDATE agent_credentials SET hash = ?1, project = 'default' WHERE id = 'rport'",
            [&hash],
        )
        .expect("repair");
    }

    // Repaired, it starts as before, with no credential generated.
    assert_eq!(read(), original);
    let server = Rportd::start_with(dir.path(), &settings);
    assert!(server.stdout.find("generated agent credential").is_none());
    assert_eq!(read(), original);
}

#[test]
fn agent_without_id_creates_one_and_keeps_it() {
    let dir = tempdir();
    let server = Rportd::start(dir.path());
    let data = dir.path().join("agent");
    let address = server.agent_address.to_string();
    let args = [
        "--fingerprint",
        &server.fingerprint,
        "--auth",
        AGENT_AUTH,
        "--data-dir",
        data.to_str().expect("path"),
        &address,
    ];
    let mut agent = Rport::start(&args);
    let id = wait_for("a generated client id", ATTACH, || {
        std::fs::read_to_string(data.join("client-id")).ok()
    })
    .trim()
    .to_owned();
    server.wait_connection_state(&id, "connected", ATTACH);
    agent.kill();
    server.wait_connection_state(&id, "disconnected", ATTACH);
    let _agent = Rport::start(&args);
    server.wait_connection_state(&id, "connected", ATTACH);
    let (_, list) = server.request("GET", "/api/v1/clients");
    assert_eq!(
        list["meta"]["count"], 1,
        "same id, not a new client: {list}"
    );
}

#[test]
fn second_live_agent_with_the_same_id_is_refused() {
    let dir = tempdir();
    let server = Rportd::start(dir.path());
    let _first = Rport::attach(&server, "twin", &dir.path().join("a"));
    let first_address =
        server.wait_connection_state("twin", "connected", ATTACH)["address"].clone();
    let second = Rport::attach(&server, "twin", &dir.path().join("b"));
    second.stderr.wait_for("already connected", ATTACH);
    let client = server.client("twin").expect("client");
    assert_eq!(
        client["address"], first_address,
        "the first session is kept"
    );
}

#[test]
fn generated_admin_password_is_shown_once_and_works() {
    let dir = tempdir();
    let settings = ServerSettings {
        api_auth: None,
        agent_auth: String::new(),
        ..Default::default()
    };
    let mut server = Rportd::start_with(dir.path(), &settings);
    let line = server.stdout.wait_for("generated API user", ATTACH);
    let credential = line.rsplit(' ').next().expect("credential").to_owned();
    let (user, password) = credential.split_once(':').expect("user:password");
    assert_eq!(user, "admin");
    let (status, _) = server.request_as("GET", "/api/v1/status", &basic(user, password));
    assert_eq!(status, 200);
    // No agent credential configured: one is generated too, and agents can use it.
    let agent_line = server.stdout.wait_for("generated agent credential", ATTACH);
    let agent_credential = agent_line
        .rsplit(' ')
        .next()
        .expect("credential")
        .to_owned();
    server.terminate();

    let db = std::fs::read(server.data_dir().join("rportd.db")).unwrap_or_default();
    assert!(
        !contains(&db, password.as_bytes()),
        "password stored in clear"
    );

    let port = server.agent_address.port();
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            agent_port: port,
            ..settings
        },
    );
    thread::sleep(Duration::from_millis(300));
    assert!(
        server.stdout.find("generated").is_none(),
        "shown only on first start"
    );
    let (status, _) = server.request_as("GET", "/api/v1/status", &basic(user, password));
    assert_eq!(status, 200);
    let data = dir.path().join("agent");
    let address = server.agent_address.to_string();
    let _agent = Rport::start(&[
        "--id",
        "gen",
        "--fingerprint",
        &server.fingerprint,
        "--auth",
        &agent_credential,
        "--data-dir",
        data.to_str().expect("path"),
        &address,
    ]);
    let auth = basic(user, password);
    wait_for("agent with generated credential", ATTACH, || {
        let (status, body) = server.request_as("GET", "/api/v1/clients/gen", &auth);
        (status == 200 && body["data"]["connection_state"] == "connected").then_some(())
    });
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn bad_config_stops_the_start_naming_file_and_key() {
    let dir = tempdir();
    let path = dir.path().join("broken.conf");
    std::fs::write(
        &path,
        "[server]\naddress = \"127.0.0.1:0\"\nbogus_key = 1\n",
    )
    .expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_rportd"))
        .arg("-c")
        .arg(&path)
        .output()
        .expect("run rportd");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("broken.conf") && stderr.contains("bogus_key"),
        "{stderr}"
    );

    std::fs::write(&path, "[server]\nkeep_disconnected_clients = \"soon\"\n").expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_rportd"))
        .arg("-c")
        .arg(&path)
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("keep_disconnected_clients"), "{stderr}");
}

#[test]
fn disconnected_agent_can_be_deleted() {
    let dir = tempdir();
    let server = Rportd::start(dir.path());
    let mut agent = Rport::attach(&server, "gone", &dir.path().join("agent"));
    server.wait_connection_state("gone", "connected", ATTACH);
    agent.kill();
    let client: Value = server.wait_connection_state("gone", "disconnected", ATTACH);
    assert!(client["disconnected_at"].is_string());
    let (status, _) = server.request("DELETE", "/api/v1/clients/gone");
    assert_eq!(status, 204);
    assert!(server.client("gone").is_none());
    let (_, audit) = server.request("GET", "/api/v1/auditlog?filter[action]=client.delete");
    assert_eq!(audit["data"][0]["affected_id"], "gone", "{audit}");
    assert_eq!(audit["data"][0]["username"], API_USER);
}

#[test]
fn a_silent_link_is_noticed_on_both_sides_even_mid_transfer() {
    use std::io::{Read, Write};
    let dir = tempdir();
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            used_ports: "43000-43099".into(),
            ..Default::default()
        },
    );
    let proxy = FreezableProxy::start(server.agent_address);
    // keep_alive 5s, as attach_via sets it.
    let agent = Rport::attach_via(&server, "c1", &dir.path().join("agent"), proxy.address);
    server.wait_connection_state("c1", "connected", ATTACH);
    let echo = echo_server();
    let tunnel = server.open_tunnel("c1", &format!("remote={}", echo.port()));

    // Keep the tunnel busy: one connection streams data (and reads its echo) until it breaks.
    let busy = TcpStream::connect(tunnel_address(&tunnel)).expect("connect tunnel");
    busy.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let mut reader = busy.try_clone().expect("clone");
    let streamed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = std::sync::Arc::clone(&streamed);
    thread::spawn(move || {
        let mut writer = busy;
        let chunk = payload(64 * 1024, 7);
        // Bounded: at most 2 GiB or 60 s, whichever first.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        for _ in 0..32 * 1024 {
            if std::time::Instant::now() > deadline || writer.write_all(&chunk).is_err() {
                break;
            }
            counter.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
    });
    thread::spawn(move || {
        let mut buffer = vec![0u8; 64 * 1024];
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(_) => {}
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
    });
    wait_for(
        "data to flow through the tunnel",
        Duration::from_secs(20),
        || (streamed.load(std::sync::atomic::Ordering::Relaxed) > 4 * 1024 * 1024).then_some(()),
    );

    proxy.freeze();
    let frozen_at = std::time::Instant::now();
    // Server side: the session is dropped and the agent listed disconnected.
    server.wait_connection_state("c1", "disconnected", Duration::from_secs(30));
    let detected = frozen_at.elapsed();
    // Agent side: it gives up the dead session by itself and comes back over a new one.
    agent
        .stderr
        .wait_for("reconnecting", Duration::from_secs(30));
    server.wait_connection_state("c1", "connected", Duration::from_secs(30));
    let back = frozen_at.elapsed();
    // Its tunnel kept its port through the grace period and carries traffic again.
    let id = tunnel["id"].as_str().expect("id");
    server.wait_tunnel_status(id, "opened", Duration::from_secs(30));
    echo_round_trip(tunnel_address(&tunnel), 1024 * 1024, 8);
    eprintln!(
        "fault: link cut without FIN mid-transfer (keep_alive 5s): server noticed after {detected:?}, agent back after {back:?}, its tunnel carrying data again on the same port"
    );
}

#[test]
fn clients_list_sorts_pages_and_selects_fields() {
    let dir = tempdir();
    let server = Rportd::start(dir.path());
    let _agents: Vec<Rport> = ["bravo", "alpha", "charlie"]
        .iter()
        .map(|id| Rport::attach(&server, id, &dir.path().join(id)))
        .collect();
    for id in ["alpha", "bravo", "charlie"] {
        server.wait_connection_state(id, "connected", ATTACH);
    }
    let ids = |body: &Value| -> Vec<String> {
        body["data"]
            .as_array()
            .expect("list")
            .iter()
            .map(|c| c["id"].as_str().expect("id").to_owned())
            .collect()
    };
    let (status, body) = server.request("GET", "/api/v1/clients?sort=-id");
    assert_eq!(status, 200);
    assert_eq!(ids(&body), ["charlie", "bravo", "alpha"]);

    let (_, page) = server.request(
        "GET",
        "/api/v1/clients?sort=id&page[limit]=2&page[offset]=1",
    );
    assert_eq!(ids(&page), ["bravo", "charlie"]);
    assert_eq!(
        page["meta"]["count"], 3,
        "count is of all matches, not the page"
    );

    let (_, slim) = server.request(
        "GET",
        "/api/v1/clients?fields[clients]=id,hostname&filter[id]=al*",
    );
    let only = &slim["data"][0];
    assert_eq!(only["id"], "alpha");
    assert!(only["hostname"].as_str().is_some_and(|h| !h.is_empty()));
    assert_eq!(
        only.as_object().map(|o| o.len()),
        Some(2),
        "only the asked fields: {only}"
    );

    let (status, body) = server.request("GET", "/api/v1/clients?sort=shoe_size");
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["code"], "ERR_CODE_INVALID_SORT");
}

#[test]
fn an_agent_without_a_fingerprint_pins_the_first_key_and_refuses_another() {
    let dir = tempdir();
    let mut server = Rportd::start(dir.path());
    let agent_port = server.agent_address.port();
    let data = dir.path().join("agent");
    let agent = Rport::start(&[
        "--id",
        "tofu",
        "--auth",
        AGENT_AUTH,
        "--data-dir",
        data.to_str().expect("utf-8"),
        "--max-retry-interval",
        "1s",
        &server.agent_address.to_string(),
    ]);
    server.wait_connection_state("tofu", "connected", ATTACH);
    agent.stderr.wait_for("trusting", ATTACH);
    let pinned = std::fs::read_to_string(data.join("server-fingerprint")).expect("pinned");
    assert_eq!(pinned.trim(), server.fingerprint);
    server.kill();

    // Another server (another key) on the same address: refused, nothing sent to it.
    let other = tempdir();
    let impostor = Rportd::start_on_agent_port(other.path(), agent_port);
    assert_ne!(impostor.fingerprint, server.fingerprint);
    let line = agent.stderr.wait_for("fingerprint mismatch", ATTACH);
    assert!(line.contains(&impostor.fingerprint), "{line}");
    thread::sleep(Duration::from_secs(1));
    assert!(impostor.client("tofu").is_none());
}

#[test]
fn the_data_dir_and_its_keys_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir();
    let server = Rportd::start(dir.path());
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let data = server.data_dir();
    assert_eq!(mode(&data), 0o700, "data_dir");
    for key in ["rportd-key.pem", "tunnel-proxy-key.pem"] {
        assert_eq!(mode(&data.join(key)), 0o600, "{key}");
    }
}

#[test]
fn credentials_can_be_tied_to_one_client_id_each() {
    let dir = tempdir();
    let auth_file = dir.path().join("client-auth.json");
    std::fs::write(
        &auth_file,
        r#"{"dev-a": "password-of-a-1", "dev-b": "password-of-b-1"}"#,
    )
    .expect("auth file");
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            agent_auth: String::new(),
            extra_server: format!(
                "auth_file = {:?}\nauth_multiuse_creds = false\n",
                auth_file.display().to_string()
            ),
            ..Default::default()
        },
    );
    let start = |id: &str, auth: &str| {
        let data = dir.path().join(format!("agent-{id}-{auth}"));
        start_agent(&server, id, auth, &data)
    };
    let mut a = start("device-a", "dev-a:password-of-a-1");
    server.wait_connection_state("device-a", "connected", ATTACH);
    // Another device with a's credential: refused, naming who uses it.
    let b_with_a = start("device-b", "dev-a:password-of-a-1");
    b_with_a
        .stderr
        .wait_for("is used by client \"device-a\"", ATTACH);
    assert!(server.client("device-b").is_none());
    // a away: its id is still not for another credential.
    a.kill();
    server.wait_connection_state("device-a", "disconnected", ATTACH);
    let takeover = start("device-a", "dev-b:password-of-b-1");
    takeover
        .stderr
        .wait_for("belongs to another credential", ATTACH);
    assert_eq!(
        server.client("device-a").expect("listed")["connection_state"],
        "disconnected"
    );
    drop(server);

    // equate_clientauthid_clientid: the id must be the credential's.
    let other = tempdir();
    let server = Rportd::start_with(
        other.path(),
        &ServerSettings {
            agent_auth: String::new(),
            extra_server: format!(
                "auth_file = {:?}\nequate_clientauthid_clientid = true\n",
                auth_file.display().to_string()
            ),
            ..Default::default()
        },
    );
    let start = |id: &str, auth: &str| {
        start_agent(&server, id, auth, &other.path().join(format!("agent-{id}")))
    };
    let wrong = start("device-a", "dev-a:password-of-a-1");
    wrong.stderr.wait_for("must be its credential id", ATTACH);
    let _right = start("dev-a", "dev-a:password-of-a-1");
    server.wait_connection_state("dev-a", "connected", ATTACH);
}

#[test]
fn a_stopping_server_tells_its_agents() {
    let dir = tempdir();
    let mut server = Rportd::start(dir.path());
    let agent = Rport::attach(&server, "my-client-1", &dir.path().join("agent"));
    server.wait_connection_state("my-client-1", "connected", ATTACH);
    assert!(server.terminate().success());
    let line = agent.stderr.wait_for("is shutting down", ATTACH);
    assert!(line.contains(&server.agent_address.to_string()), "{line}");
    // It then waits at least the hinted moment before knocking again.
    let next = agent.stderr.wait_for("reconnecting in", ATTACH);
    let secs: f64 = next
        .rsplit("reconnecting in ")
        .next()
        .and_then(|rest| rest.trim().trim_end_matches('s').parse().ok())
        .expect("delay");
    assert!(secs >= 2.0, "{next}");
}
