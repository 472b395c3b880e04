//! End to end: failed logins get an address banned for a while, on the API and on the
//! agent listener, and the ban ends by itself.

mod support;

use std::time::{Duration, Instant};

use support::*;

const ATTACH: Duration = Duration::from_secs(30);

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
    use std::io::{Read, Write};
    let api: std::net::SocketAddr = server
        .api
        .trim_start_matches("http://")
        .parse()
        .expect("api address");
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
    write!(
        stream,
        "GET /api/v1/status HTTP/1.1\r\nHost: {api}\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status line")
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
