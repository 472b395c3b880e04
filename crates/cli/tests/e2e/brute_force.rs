//! End to end: failed logins get an address banned for a while, on the API and on the
//! agent listener, and the ban ends by itself.

use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn api_logins_are_banned_after_too_many_failures_and_recover() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            extra_api: "max_failed_login = 3\nban_time = 3\n".into(),
            ..Default::default()
        },
    );
    let wrong = basic(API_USER, "wrong");
    for attempt in 1..=2 {
        let (status, _) = server.request_as("GET", "/api/v1/status", &wrong);
        assert_eq!(status, 401, "attempt {attempt}");
    }
    let reply = server.call("GET", "/api/v1/login", &wrong, &[], None);
    assert_eq!(reply.status, 429, "{}", reply.body);
    assert_eq!(
        reply.body["errors"][0]["code"],
        "ERR_CODE_TOO_MANY_FAILED_LOGINS"
    );
    let retry: u64 = reply
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=3).contains(&retry), "{retry}");
    let banned_at = Instant::now();
    // While banned, even the right password is refused, and a forged X-Forwarded-For
    // (no trusted proxy configured) does not get around it.
    let right = server.auth_header.clone();
    assert_eq!(server.request_as("GET", "/api/v1/status", &right).0, 429);
    let forged = server.call(
        "GET",
        "/api/v1/status",
        &right,
        &[("X-Forwarded-For", "198.51.100.23")],
        None,
    );
    assert_eq!(forged.status, 429);
    // Bad tokens count too.
    let bearer = server.call("GET", "/api/v1/status", "Bearer not.a.token", &[], None);
    assert_eq!(bearer.status, 429);

    wait_for("the ban to end", Duration::from_secs(10), || {
        (server.request_as("GET", "/api/v1/status", &right).0 == 200).then_some(())
    });
    assert!(banned_at.elapsed() >= Duration::from_secs(2));
}

#[test]
fn agent_logins_are_banned_after_too_many_failures_and_recover() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            extra_server: "max_failed_login = 2\nban_time = 3\n".into(),
            ..Default::default()
        },
    );
    let (credential, _) = AGENT_AUTH.split_once(':').expect("id:password");
    let wrong_auth = format!("{credential}:wrong-password");
    let address = server.agent_address.to_string();
    let mut wrong = Rport::start(&[
        "--id",
        "intruder",
        "--fingerprint",
        &server.fingerprint,
        "--auth",
        &wrong_auth,
        "--data-dir",
        dir.path().join("intruder").to_str().expect("utf-8"),
        "--max-retry-interval",
        "1s",
        &address,
    ]);
    server
        .stderr
        .wait_for("banned_secs=3", Duration::from_secs(30));
    wrong.kill();

    // The right password for the same credential from the same address waits out the
    // ban, told how long by the server, and then gets in by itself.
    let good = Rport::attach(&server, "my-client-1", &dir.path().join("agent"));
    server.wait_connection_state("my-client-1", "connected", ATTACH);
    assert!(
        good.stderr.find("too many failed logins").is_some(),
        "the agent met the ban first: {:?}",
        good.stderr.all()
    );
}

/// The status of `GET /api/v1/status` with basic `auth`, sent from `from` (a loopback
/// address of its own).
fn status_from(server: &Rportd, from: [u8; 4], auth: &str) -> u16 {
    let request = format!(
        "GET /api/v1/status HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n",
        host = api_address(server)
    );
    send_from(server, from, request.as_bytes()).expect("status line")
}

fn api_address(server: &Rportd) -> std::net::SocketAddr {
    server
        .api
        .trim_start_matches("http://")
        .parse()
        .expect("api address")
}

/// Sends a whole HTTP/1.1 `request` from `from` (a loopback address of its own); the
/// status of the answer, or `None` when the server closed the connection without one
/// (as it may when it refuses a request before reading all of it).
fn send_from(server: &Rportd, from: [u8; 4], request: &[u8]) -> Option<u16> {
    use std::io::{Read, Write};
    let api = api_address(server);
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&std::net::SocketAddr::from((from, 0)).into())
        .expect("bind source");
    socket.connect(&api.into()).expect("connect");
    let mut stream: std::net::TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // A refused request may be cut off mid-send: what the server answered still counts.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
}

#[test]
fn guessing_one_users_password_from_many_addresses_gains_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            extra_api: "max_failed_login = 3\nban_time = 60\n".into(),
            ..Default::default()
        },
    );
    let wrong = basic(API_USER, "wrong");
    let statuses: Vec<u16> = (0..3)
        .map(|_| status_from(&server, [127, 0, 0, 2], &wrong))
        .collect();
    assert_eq!(statuses, [401, 401, 429]);
    // The user is under attack now: one more wrong guess from a fresh address bans it at once.
    assert_eq!(status_from(&server, [127, 0, 0, 3], &wrong), 429);
    assert_eq!(
        status_from(&server, [127, 0, 0, 3], &server.auth_header),
        429,
        "banned"
    );
    // Nobody can lock the user out: the right password works from an address not banned.
    assert_eq!(
        status_from(&server, [127, 0, 0, 4], &server.auth_header),
        200
    );
}

#[test]
fn trying_many_credential_ids_from_one_address_bans_the_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One failure per credential id bans that id from this address; ten in all (ten times
    // the limit) ban the address itself, whatever credential it tries next.
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            extra_server: "max_failed_login = 1\nban_time = 4\n".into(),
            ..Default::default()
        },
    );
    let address = server.agent_address.to_string();
    let mut intruders: Vec<Rport> = (0..10)
        .map(|n| {
            let auth = format!("guess-{n}:guess-password");
            Rport::start(&[
                "--id",
                &format!("intruder-{n}"),
                "--fingerprint",
                &server.fingerprint,
                "--auth",
                &auth,
                "--data-dir",
                dir.path()
                    .join(format!("intruder-{n}"))
                    .to_str()
                    .expect("utf-8"),
                &address,
            ])
        })
        .collect();
    wait_for("ten failed logins", ATTACH, || {
        (server
            .stderr
            .all()
            .iter()
            .filter(|l| l.contains("agent authentication failed"))
            .count()
            >= 10)
            .then_some(())
    });
    for intruder in &mut intruders {
        intruder.kill();
    }
    // A right credential never failed from here, yet the address gets no TLS until the ban
    // ends; then the agent gets in by itself.
    let started = Instant::now();
    let good = Rport::attach(&server, "my-client-1", &dir.path().join("agent"));
    server.wait_connection_state("my-client-1", "connected", ATTACH);
    assert!(
        good.stderr.find("TLS handshake").is_some(),
        "the agent met the address ban first: {:?}",
        good.stderr.all()
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

/// What a flood may cost the server at most, whatever it sends: rportd's resident memory
/// (buffers of requests in flight, the allocator's slack), its database and WAL (the WAL
/// grows to SQLite's 4 MiB checkpoint before it is reused), its log.
const RSS_SLACK: u64 = 32 * 1024 * 1024;
const DB_SLACK: u64 = 8 * 1024 * 1024;
const LOG_SLACK: u64 = 512 * 1024;
/// No log line, whatever a request carried, is longer than this.
const MAX_LOG_LINE: usize = 1024;
/// An audit entry's name of a failed login, however long the name sent.
const MAX_AUDIT_NAME: usize = 96;

/// Resident memory, database with WAL, and log output, in bytes.
#[derive(Debug, Clone, Copy)]
struct Footprint {
    rss: u64,
    db: u64,
    log: u64,
}

fn footprint(server: &Rportd) -> Footprint {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", server.pid())).expect("proc status");
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    let db = ["rportd.db", "rportd.db-wal"]
        .iter()
        .filter_map(|name| std::fs::metadata(server.data_dir().join(name)).ok())
        .map(|m| m.len())
        .sum();
    let log = server
        .stdout
        .all()
        .iter()
        .chain(server.stderr.all().iter())
        .map(|l| l.len() as u64 + 1)
        .sum();
    Footprint {
        rss: rss_kib * 1024,
        db,
        log,
    }
}

/// Asserts that the server grew by no more than the slack from `before`, and that no log
/// line is long; prints what it measured.
fn assert_flood_cost_bounded(server: &Rportd, what: &str, before: Footprint) {
    // What was logged and written is flushed within moments of the answers.
    std::thread::sleep(Duration::from_millis(500));
    let after = footprint(server);
    let grew = |a: u64, b: u64| a.saturating_sub(b);
    eprintln!(
        "{what}: rss {} -> {} KiB (+{} KiB), database+WAL {} -> {} KiB (+{} KiB), log +{} B",
        before.rss / 1024,
        after.rss / 1024,
        grew(after.rss, before.rss) / 1024,
        before.db / 1024,
        after.db / 1024,
        grew(after.db, before.db) / 1024,
        grew(after.log, before.log),
    );
    assert!(
        grew(after.log, before.log) <= LOG_SLACK,
        "{what}: the log grew by {} bytes",
        grew(after.log, before.log)
    );
    let longest = server
        .stderr
        .all()
        .into_iter()
        .max_by_key(String::len)
        .unwrap_or_default();
    assert!(
        longest.len() <= MAX_LOG_LINE,
        "{what}: a log line of {} bytes: {:.200}…",
        longest.len(),
        longest
    );
    assert!(
        grew(after.db, before.db) <= DB_SLACK,
        "{what}: the database grew by {} bytes",
        grew(after.db, before.db)
    );
    assert!(
        grew(after.rss, before.rss) <= RSS_SLACK,
        "{what}: rportd's memory grew by {} bytes",
        grew(after.rss, before.rss)
    );
}

/// A name or token of `len` bytes, distinct for each `(a, i)`.
fn huge(a: u8, i: usize, len: usize) -> String {
    let mut text = format!("{a}-{i}-");
    text.push_str(&"x".repeat(len - text.len()));
    text
}

#[test]
fn a_flood_of_huge_user_names_and_tokens_costs_the_server_next_to_nothing() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    // A limit above what any one address sends: every request that gets through to the
    // login check is a failure counted, audited and logged, none is cut short by a ban.
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            extra_api: "max_failed_login = 1000\nban_time = 600\n".into(),
            ..Default::default()
        },
    );
    let host = api_address(&server);
    let get = |auth: &str| {
        format!(
            "GET /api/v1/status HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
        )
        .into_bytes()
    };
    let json_login = |username: &str| {
        let body =
            serde_json::json!({"username": username, "password": "wrong-password"}).to_string();
        format!(
            "POST /api/v1/login HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    // The database, the log and the allocator warmed up by a few ordinary failures.
    for _ in 0..3 {
        let wrong = basic("nobody", "wrong-password");
        assert_eq!(send_from(&server, [127, 0, 0, 1], &get(&wrong)), Some(401));
    }
    let before = footprint(&server);

    // From each of 100 addresses: ten basic logins with a 300 KB user name (more than
    // the API reads of a request's headers), three with a 40 KB one and three JSON logins
    // with a 60 KB one (both within the limits, so they reach the login check), two
    // 300 KB and two 60 KB bearer tokens. 2,000 requests in all.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut failed_logins = 0;
    for a in 0..100u8 {
        let from = [127, 0, 0, 2 + a];
        for i in 0..10 {
            let status = send_from(&server, from, &get(&basic(&huge(a, i, 300_000), "pw")));
            assert!(matches!(status, None | Some(401 | 431)), "{status:?}");
            failed_logins += usize::from(status == Some(401));
        }
        for i in 0..3 {
            let status = send_from(&server, from, &get(&basic(&huge(a, i, 40_000), "pw")));
            assert_eq!(status, Some(401));
            let status = send_from(&server, from, &json_login(&huge(a, i, 60_000)));
            assert_eq!(status, Some(401));
            failed_logins += 2;
        }
        for i in 0..2 {
            let bearer = format!("Bearer {}", huge(a, i, 300_000));
            let status = send_from(&server, from, &get(&bearer));
            assert!(matches!(status, None | Some(401 | 431)), "{status:?}");
            let bearer = format!("Bearer {}", huge(a, i, 60_000));
            assert_eq!(send_from(&server, from, &get(&bearer)), Some(401));
        }
        assert!(Instant::now() < deadline, "the flood took too long");
    }
    assert_flood_cost_bounded(&server, "2,000 logins with huge names and tokens", before);

    // Each failure that reached the check is in the audit log, its name cut and marked;
    // the newest is the last JSON login.
    let (status, audit) = server.request(
        "GET",
        "/api/v1/auditlog?filter[action]=login&page[limit]=100",
    );
    assert_eq!(status, 200, "{audit}");
    assert!(
        audit["meta"]["count"].as_u64().unwrap_or(0) >= failed_logins as u64,
        "{} entries, {failed_logins} failed logins",
        audit["meta"]["count"]
    );
    let entries = audit["data"].as_array().expect("entries");
    for entry in entries {
        for field in ["username", "affected_id"] {
            let name = entry[field].as_str().unwrap_or_default();
            assert!(
                name.len() <= MAX_AUDIT_NAME,
                "{field} of {:.200}",
                entry.to_string()
            );
        }
    }
    let newest = entries.first().expect("an entry");
    assert_eq!(newest["result"], "failure");
    let name = newest["username"].as_str().unwrap_or_default();
    assert!(
        name.starts_with("99-2-xxx") && name.ends_with("bytes)") && name.contains("…(+"),
        "{name}"
    );
    assert!(
        server
            .stderr
            .find(&format!("user={name}"))
            .is_some_and(|line| line.contains("API login failed")),
        "the log names the cut name"
    );

    // A normal login still works, from a flooded address and from another.
    assert_eq!(
        status_from(&server, [127, 0, 0, 2], &server.auth_header),
        200
    );
    let (status, body) = server.request("GET", "/api/v1/login");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn agent_hellos_with_huge_credential_ids_cost_the_server_next_to_nothing() {
    use rport_protocol::{ControlMessage, RefuseCode};
    use rport_transport::{handshake, tls};

    let dir = tempfile::tempdir().expect("tempdir");
    // Ten failures per address, under the address limit (ten times this): every hello
    // is checked, counted, audited and logged.
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            extra_server: "max_failed_login = 100\nban_time = 600\n".into(),
            ..Default::default()
        },
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let pin = tls::ServerPin::Exact(server.fingerprint.parse().expect("fingerprint"));
    let (config, _) = tls::client_config(pin).expect("TLS config");
    let agent_address = server.agent_address;
    let hello_from = |from: [u8; 4], auth_id: String| {
        let config = config.clone();
        runtime.block_on(async move {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind(std::net::SocketAddr::from((from, 0)))
                .expect("bind source");
            let stream = socket.connect(agent_address).await.expect("connect");
            let name = rustls::pki_types::ServerName::try_from("rportd").expect("name");
            let mut tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await
                .expect("TLS");
            let hello = ControlMessage::Hello {
                client_id: "intruder".into(),
                auth_id,
                password: rport_protocol::Password::new("wrong-password"),
                info: Default::default(),
                keep_alive_secs: 30,
                remotes: Vec::new(),
            };
            handshake::agent_hello(&mut tls, &hello)
                .await
                .map(|(answer, _)| answer)
                .expect("an answer")
        })
    };
    for _ in 0..3 {
        hello_from([127, 0, 0, 1], "nobody".into());
    }
    let before = footprint(&server);

    // 500 hellos, ten from each of 50 addresses, each with its own 60 KB credential id
    // (the hello's limit is 64 KiB).
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut longest_answer = String::new();
    for a in 0..50u8 {
        for i in 0..10 {
            match hello_from([127, 0, 1, 2 + a], huge(a, i, 60_000)) {
                ControlMessage::Refused { code, message, .. } => {
                    assert_eq!(code, RefuseCode::AuthFailed, "{message:.200}");
                    if message.len() > longest_answer.len() {
                        longest_answer = message;
                    }
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(Instant::now() < deadline, "the flood took too long");
    }
    assert_flood_cost_bounded(&server, "500 agent hellos with huge credential ids", before);
    // The refusal names the credential cut too.
    assert!(
        longest_answer.len() <= 200,
        "an answer of {} bytes: {longest_answer:.200}…",
        longest_answer.len()
    );

    let (status, audit) = server.request(
        "GET",
        "/api/v1/auditlog?filter[action]=agent.login&page[limit]=100",
    );
    assert_eq!(status, 200, "{audit}");
    assert!(
        audit["meta"]["count"].as_u64().unwrap_or(0) >= 500,
        "{}",
        audit["meta"]
    );
    let entries = audit["data"].as_array().expect("entries");
    for entry in entries {
        let name = entry["username"].as_str().unwrap_or_default();
        assert!(name.len() <= MAX_AUDIT_NAME, "{:.200}", entry.to_string());
    }
    let name = entries[0]["username"].as_str().unwrap_or_default();
    assert!(
        name.starts_with("49-9-xxx") && name.contains("…(+"),
        "{name}"
    );

    // A real agent still gets in.
    let _agent = Rport::attach(&server, "my-client-1", &dir.path().join("agent"));
    server.wait_connection_state("my-client-1", "connected", ATTACH);
}
