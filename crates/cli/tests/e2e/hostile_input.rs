//! End to end: what hostile clients try against a real rportd: handshakes that never
//! finish, slowloris API clients, forged X-Forwarded-For, paths and queries crafted as ids,
//! and fishing for secrets in every answer and log line.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::{Value, json};

/// Waits until the peer closes `stream` (EOF or reset); returns how long that took, or
/// `None` if it stayed open for `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut buffer = [0u8; 4096];
    while start.elapsed() < limit {
        if read_shows_closed(stream, &mut buffer) {
            return Some(start.elapsed());
        }
    }
    None
}

/// One read from a socket with a read timeout: whether it shows the peer closed the
/// connection (end of stream, or an error other than the timeout).
fn read_shows_closed(stream: &mut impl Read, buffer: &mut [u8]) -> bool {
    match stream.read(buffer) {
        Ok(n) => n == 0,
        Err(err) => !matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn a_handshake_that_never_completes_is_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            extra_server: "handshake_timeout = \"1s\"\n".into(),
            ..Default::default()
        },
    );
    // Connects and says nothing at all.
    let mut silent = TcpStream::connect(server.agent_address).expect("connect");
    let took = closed_within(&mut silent, Duration::from_secs(15)).expect("dropped");
    assert!(took < Duration::from_secs(10), "{took:?}");
    eprintln!(
        "fault: silent client on the agent port (handshake_timeout 1s) dropped after {took:?}"
    );
    // Starts TLS with a few bytes of a ClientHello and stops.
    let mut stalled = TcpStream::connect(server.agent_address).expect("connect");
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .expect("partial hello");
    assert!(closed_within(&mut stalled, Duration::from_secs(15)).is_some());
    // Meanwhile real agents are not held up.
    let _agent = Rport::attach(&server, "after-stall", &dir.path().join("agent"));
    server.wait_connection_state("after-stall", "connected", ATTACH);
}

/// A client that connects and says nothing, and one that sends the start of a TLS
/// ClientHello and stops: both must be dropped within about `limit`.
fn assert_stalled_handshakes_dropped(what: &str, address: SocketAddr, limit: Duration) {
    let start = Instant::now();
    let mut silent = TcpStream::connect(address).expect("connect");
    let mut stalled = TcpStream::connect(address).expect("connect");
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .expect("partial hello");
    for (how, stream) in [
        ("silent", &mut silent),
        ("half a ClientHello", &mut stalled),
    ] {
        closed_within(stream, Duration::from_secs(15))
            .unwrap_or_else(|| panic!("{what}: a {how} client was never dropped"));
        let took = start.elapsed();
        assert!(took < limit, "{what}: {how} client held for {took:?}");
        eprintln!("fault: {how} TLS client on {what} dropped after {took:?}");
    }
}

#[test]
fn slow_tls_clients_are_dropped_on_the_api_and_the_proxy() {
    // The API over TLS: the handshake is bounded by read_header_timeout.
    let api_dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = web::self_signed_pem(&["localhost"]);
    let cert_path = api_dir.path().join("api-cert.pem");
    let key_path = api_dir.path().join("api-key.pem");
    std::fs::write(&cert_path, cert).expect("cert");
    std::fs::write(&key_path, key).expect("key");
    let tls_api = Rportd::start_with(
        api_dir.path(),
        &ServerSettings {
            extra_api: format!(
                "cert_file = {:?}\nkey_file = {:?}\nread_header_timeout = \"1s\"\n",
                cert_path.display().to_string(),
                key_path.display().to_string()
            ),
            extra_server: "handshake_timeout = \"1s\"\ntunnel_host = \"tunnels.example.com\"\ntunnel_proxy_address = \"127.0.0.1:0\"\n".into(),
            ..Default::default()
        },
    );
    let api: SocketAddr = tls_api
        .api
        .trim_start_matches("https://")
        .parse()
        .expect("address");
    let shared: SocketAddr = tls_api
        .stdout
        .wait_for("HTTP tunnels share", ATTACH)
        .rsplit(" on ")
        .next()
        .and_then(|address| address.trim().parse().ok())
        .expect("the shared proxy port");

    // A web tunnel on a port of its own, bounded by [server] handshake_timeout and, for
    // its request headers, [api] read_header_timeout.
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            extra_server: "handshake_timeout = \"1s\"\n".into(),
            extra_api: "read_header_timeout = \"1s\"\n".into(),
            ..Default::default()
        },
    );
    let _agent = Rport::attach(&server, "dev-1", &dir.path().join("agent"));
    server.wait_connection_state("dev-1", "connected", ATTACH);
    let web = web::Web::new();
    let device = web.device_http("router");
    let tunnel = server.open_tunnel(
        "dev-1",
        &format!(
            "remote={}&scheme=http&http_proxy=true&acl=127.0.0.1",
            device.port()
        ),
    );
    let tunnel_port = tunnel_address(&tunnel);

    // Run side by side: each waits for its own timeout.
    let limit = Duration::from_secs(5);
    std::thread::scope(|scope| {
        scope.spawn(|| assert_stalled_handshakes_dropped("the API", api, limit));
        scope.spawn(|| assert_stalled_handshakes_dropped("the shared proxy port", shared, limit));
        scope
            .spawn(|| assert_stalled_handshakes_dropped("a web tunnel's port", tunnel_port, limit));
    });

    // Through TLS, then request headers one byte at a time: cut off like an API client.
    let socket = TcpStream::connect(tunnel_port).expect("connect");
    socket
        .set_write_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    socket
        .set_read_timeout(Some(Duration::from_millis(10)))
        .expect("timeout");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = rustls::ClientConnection::new(web::client_tls(&[&rustls::version::TLS13]), name)
        .expect("TLS client");
    let mut slow = rustls::StreamOwned::new(tls, socket);
    let took = trickle_headers(&mut slow).expect("the slow proxy client was cut off");
    assert!(took < limit, "{took:?}");
    eprintln!(
        "fault: slowloris client of a web tunnel (read_header_timeout 1s) cut off after {took:?}"
    );

    // Meanwhile real clients get through on each.
    let tls = web::client_tls(&[&rustls::version::TLS13]);
    let mut client = web
        .connect(api, "localhost", None, tls.clone())
        .expect("TLS to the API");
    let got = web
        .send(
            &mut client,
            web::get(
                "localhost",
                "/api/v1/status",
                &[("authorization", &tls_api.auth_header)],
            ),
        )
        .expect("status");
    assert_eq!(got.status, 200, "{}", got.text());
    let mut client = web
        .connect(tunnel_port, "localhost", None, tls.clone())
        .expect("TLS to the tunnel");
    let got = web
        .send(&mut client, web::get("localhost", "/hello", &[]))
        .expect("through the tunnel");
    assert_eq!(got.status, 200, "{}", got.text());
    let mut client = web
        .connect(shared, "nobody.tunnels.example.com", None, tls)
        .expect("TLS to the shared port");
    let got = web
        .send(
            &mut client,
            web::get("nobody.tunnels.example.com", "/", &[]),
        )
        .expect("unknown host");
    assert_eq!(got.status, 404, "{}", got.text());
}

/// Sends the start of a request, then one more header byte every 300 ms: never a whole
/// request. Returns how long until the server cut the connection (at most 15 s). The
/// socket under `stream` needs short read and write timeouts.
fn trickle_headers(stream: &mut (impl Read + Write)) -> Option<Duration> {
    let start = Instant::now();
    stream
        .write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n")
        .ok()?;
    let _ = stream.flush();
    while start.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(300));
        if stream
            .write_all(b"X")
            .and_then(|()| stream.flush())
            .is_err()
        {
            return Some(start.elapsed());
        }
        let mut probe = [0u8; 512];
        if read_shows_closed(stream, &mut probe) {
            return Some(start.elapsed());
        }
    }
    None
}

#[test]
fn a_slowloris_api_client_is_cut_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            extra_api: "read_header_timeout = \"1s\"\n".into(),
            ..Default::default()
        },
    );
    let address = server.api.trim_start_matches("http://").to_owned();
    let mut slow = TcpStream::connect(&address).expect("connect");
    slow.set_write_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    slow.set_read_timeout(Some(Duration::from_millis(10)))
        .expect("timeout");
    let cut_off = trickle_headers(&mut slow);
    let took = cut_off.expect("the slow client was cut off");
    assert!(took < Duration::from_secs(10), "{took:?}");
    eprintln!("fault: slowloris API client (read_header_timeout 1s) cut off after {took:?}");
    // Well-behaved callers are served all along.
    assert_eq!(server.request("GET", "/api/v1/status").0, 200);
}

#[test]
fn a_forged_x_forwarded_for_changes_nothing_without_trusted_proxies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            extra_api: "max_failed_login = 3\nban_time = 60\n".into(),
            ..Default::default()
        },
    );
    let wrong = basic(API_USER, "wrong-password");
    let mut statuses = Vec::new();
    for n in 0..4 {
        let forged = format!("203.0.113.{n}");
        let reply = server.call(
            "GET",
            "/api/v1/status",
            &wrong,
            &[("X-Forwarded-For", forged.as_str())],
            None,
        );
        statuses.push(reply.status);
    }
    // A new forged address each time does not escape the ban on the real one.
    assert_eq!(statuses, [401, 401, 429, 429]);
    drop(server);

    // The audit log names the peer, not the header (a fresh server: this address is banned),
    // and so does the ACL API v2 gives a tunnel by default.

    let dir = tempfile::tempdir().expect("tempdir");
    let server = Rportd::start(dir.path());
    let reply = server.call(
        "GET",
        "/api/v1/status",
        &wrong,
        &[("X-Forwarded-For", "198.51.100.77")],
        None,
    );
    assert_eq!(reply.status, 401);
    let (status, audit) = server.request("GET", "/api/v1/auditlog?filter[action]=login");
    assert_eq!(status, 200, "{audit}");
    let entry = &audit["data"][0];
    assert_eq!(entry["result"], "failure");
    assert_eq!(
        entry["remote_ip"], "127.0.0.1",
        "the peer, not the header: {entry}"
    );
    let _agent = Rport::attach(&server, "client-1", &dir.path().join("agent"));
    server.wait_connection_state("client-1", "connected", ATTACH);
    let echo = echo_server();
    let reply = server.call(
        "POST",
        "/api/v2/default/port_tunnel",
        &server.bearer(),
        &[("X-Forwarded-For", "198.51.100.77")],
        Some(&json!({"device_uuid": "client-1", "port": echo.port()})),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let id = reply.body["port_tunnel_id"].as_str().expect("id");
    assert_eq!(server.tunnel(id).expect("listed")["acl"], "127.0.0.1");
}

#[test]
fn ids_crafted_as_paths_or_queries_are_just_not_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Rportd::start(dir.path());
    let _agent = Rport::attach(&server, "client-1", &dir.path().join("agent"));
    server.wait_connection_state("client-1", "connected", ATTACH);
    let long = "a".repeat(10_000);
    let crafted = [
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "client-1%00",
        "%27%20OR%20%271%27%3D%271",
        "client-1%22%3B%20DROP%20TABLE%20clients%3B--",
        "%E2%80%AE1-tneilc",
        long.as_str(),
    ];
    for id in crafted {
        for (method, path) in [
            ("GET", format!("/api/v1/clients/{id}")),
            ("DELETE", format!("/api/v1/clients/{id}")),
            ("PUT", format!("/api/v1/clients/{id}/tunnels?remote=22")),
            ("DELETE", format!("/api/v1/clients/client-1/tunnels/{id}")),
            ("GET", format!("/api/v1/users/{id}")),
            ("DELETE", format!("/api/v1/projects/{id}")),
            ("GET", format!("/api/v2/{id}/port_tunnel")),
            ("DELETE", format!("/api/v2/default/port_tunnel/{id}")),
            ("DELETE", format!("/api/v1/clients-auth/{id}")),
        ] {
            let reply = server.call(method, &path, &server.auth_header, &[], None);
            assert!(
                (400..500).contains(&reply.status),
                "{method} {}: {} {}",
                &path[..path.len().min(80)],
                reply.status,
                reply.body
            );
            assert!(
                reply.body["errors"][0]["code"].is_string(),
                "{method} {}: not the error envelope: {}",
                &path[..path.len().min(80)],
                reply.body
            );
        }
    }
    // Filters are patterns on values, never code: no match, no error, the table intact.
    for filter in ["*' OR 1=1 --", "%", "client-1\" OR \"\"=\"", "[a-z]*"] {
        let query = format!(
            "/api/v1/clients?filter[id]={}",
            filter
                .bytes()
                .map(|b| format!("%{b:02X}"))
                .collect::<String>()
        );
        let (status, body) = server.request("GET", &query);
        assert_eq!(status, 200, "{filter}: {body}");
        assert_eq!(body["meta"]["count"], 0, "{filter}: {body}");
    }
    let (_, all) = server.request("GET", "/api/v1/clients");
    assert_eq!(all["meta"]["count"], 1, "{all}");
}

#[test]
fn secrets_appear_in_no_answer_and_no_log_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let jwt_secret = "jwt-secret-value-0123456789";
    // Debug logging on both sides: secrets must stay out even there.
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            extra_api: format!("jwt_secret = \"{jwt_secret}\"\n"),
            log_level: "debug".into(),
            ..Default::default()
        },
    );
    let agent = Rport::start_with_env(
        &[
            "--id",
            "client-1",
            "--fingerprint",
            &server.fingerprint,
            "--auth",
            AGENT_AUTH,
            "--data-dir",
            dir.path().join("agent").to_str().expect("utf-8"),
            "--log-level",
            "debug",
            &server.agent_address.to_string(),
        ],
        &[],
    );
    server.wait_connection_state("client-1", "connected", ATTACH);
    let agent_password = AGENT_AUTH.split_once(':').expect("id:password").1;
    let user_password = "user-password-0123456789";
    let proxy_password = "proxy-password-0123456789";
    let reply = server.call(
        "POST",
        "/api/v1/users",
        &server.auth_header,
        &[],
        Some(&json!({"username": "ops", "password": user_password, "admin": true})),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let reply = server.call(
        "POST",
        "/api/v1/me/tokens",
        &basic("ops", user_password),
        &[],
        Some(&json!({"name": "ci", "scope": "read+write"})),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let api_token = reply.body["data"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let token_secret = api_token.rsplit('_').next().expect("secret").to_owned();
    let bearer = server.bearer();
    let jwt = bearer.trim_start_matches("Bearer ").to_owned();
    let echo = echo_server();
    let tunnel = server.open_tunnel(
        "client-1",
        &format!(
            "remote={}&scheme=http&http_proxy=true&auth_user=op&auth_password={proxy_password}",
            echo.port()
        ),
    );
    assert_eq!(tunnel["auth_password"], Value::Null);
    // Answers of every reading endpoint, by every kind of credential.
    let mut answers = String::new();
    for auth in [
        server.auth_header.clone(),
        bearer.clone(),
        format!("Bearer {api_token}"),
        // As RPort's scripts send it: the API token as the basic auth password.
        basic("ops", &api_token),
    ] {
        for path in [
            "/api/v1/status",
            "/api/v1/me",
            "/api/v1/me/tokens",
            "/api/v1/clients?fields[clients]=id,name,tunnels,client_auth_id,address",
            "/api/v1/clients/client-1",
            "/api/v1/tunnels",
            "/api/v1/users",
            "/api/v1/projects",
            "/api/v1/clients-auth",
            "/api/v1/auditlog?page[limit]=100",
            "/api/v2/default/port_tunnel",
        ] {
            if path.starts_with("/api/v2") && !auth.starts_with("Bearer") {
                continue; // API v2 takes bearer tokens only
            }
            let reply = server.call("GET", path, &auth, &[], None);
            assert_eq!(reply.status, 200, "{path}: {}", reply.body);
            answers.push_str(&reply.body.to_string());
        }
    }
    // Logged out and failed logins leave traces too: they must not carry the secrets.
    let _ = server.call("GET", "/api/v1/status", &basic("ops", "not-it"), &[], None);
    let _ = server.call("DELETE", "/api/v1/logout", &bearer, &[], None);
    std::thread::sleep(Duration::from_millis(500));
    let logs = format!(
        "{}\n{}\n{}",
        server.stdout.all().join("\n"),
        server.stderr.all().join("\n"),
        agent.stderr.all().join("\n")
    );
    let (_, api_password) = (API_USER, API_PASSWORD);
    for (what, secret) in [
        ("[api] auth password", api_password),
        ("agent password", agent_password),
        ("user password", user_password),
        ("proxy password", proxy_password),
        ("API token secret", token_secret.as_str()),
        ("login token", jwt.as_str()),
        ("jwt_secret", jwt_secret),
    ] {
        assert!(!answers.contains(secret), "{what} in an API answer");
        assert!(!logs.contains(secret), "{what} in a log line");
    }
    assert!(
        !answers.contains("$argon2"),
        "no password hash in an answer"
    );
}

#[test]
fn another_sites_page_cannot_use_a_browsers_cached_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Rportd::start(dir.path());
    let host = server.api.trim_start_matches("http://").to_owned();
    let body = json!({"username": "evil", "password": "evil-long-password-1", "admin": true});
    // A form another page makes the browser post, with the credentials it cached.
    let reply = server.call(
        "POST",
        "/api/v1/users",
        &server.auth_header,
        &[("Origin", "https://evil.example")],
        Some(&body),
    );
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(
        reply.body["errors"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("cross-site")),
        "{}",
        reply.body
    );
    let (status, _) = server.request("GET", "/api/v1/users/evil");
    assert_eq!(status, 404, "nothing was created");
    // The API's own origin (a UI served with it) and scripts without Origin pass.
    let own = format!("http://{host}");
    let reply = server.call(
        "POST",
        "/api/v1/users",
        &server.auth_header,
        &[("Origin", own.as_str())],
        Some(&body),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
}

#[test]
fn the_agent_port_speaks_tls_1_3_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Rportd::start(dir.path());
    let web = web::Web::new();
    let old = web.connect(
        server.agent_address,
        "rportd",
        None,
        web::client_tls(&[&rustls::version::TLS12]),
    );
    assert!(old.is_err(), "TLS 1.2 is refused");
    // The same client with TLS 1.3 gets through the handshake (and then finds no HTTP).
    let tls13 = std::sync::Arc::new({
        let mut config = (*web::client_tls(&[&rustls::version::TLS13])).clone();
        config.alpn_protocols = vec![b"rport/1".to_vec()];
        config
    });
    let handshake = web.rt.block_on(async {
        let socket = tokio::net::TcpStream::connect(server.agent_address)
            .await
            .expect("connect");
        let name = rustls::pki_types::ServerName::try_from("rportd").expect("name");
        tokio_rustls::TlsConnector::from(tls13)
            .connect(name, socket)
            .await
    });
    assert!(handshake.is_ok(), "{:?}", handshake.err());
}

#[test]
fn a_request_body_over_the_limit_is_refused_in_the_envelope() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Rportd::start(dir.path());
    let huge = json!({"username": "x".repeat(100 * 1024), "password": "long-enough-password"});
    let reply = server.call(
        "POST",
        "/api/v1/users",
        &server.auth_header,
        &[],
        Some(&huge),
    );
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!(
        reply.body["errors"][0]["code"],
        "ERR_CODE_REQUEST_TOO_LARGE"
    );
    assert!(reply.body["errors"][0]["detail"].is_string());
}

#[test]
fn silent_clients_hold_only_a_few_handshake_slots_and_only_for_a_while() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            extra_server: "max_concurrent_handshakes = 2\nhandshake_timeout = \"2s\"\n".into(),
            ..Default::default()
        },
    );
    // More silent connections than there are slots, all at once.
    let silent: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(server.agent_address).expect("connect"))
        .collect();
    let started = Instant::now();
    let _agent = Rport::attach(&server, "patient", &dir.path().join("agent"));
    server.wait_connection_state("patient", "connected", ATTACH);
    let took = started.elapsed();
    eprintln!(
        "fault: 8 silent clients against 2 handshake slots (timeout 2s): a real agent got in after {took:?}"
    );
    assert!(took < Duration::from_secs(15), "{took:?}");
    drop(silent);
}

#[test]
fn an_oversized_hello_is_refused_from_its_header() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            extra_server: "handshake_timeout = \"30s\"\n".into(),
            ..Default::default()
        },
    );
    let web = web::Web::new();
    let tls = std::sync::Arc::new({
        let mut config = (*web::client_tls(&[&rustls::version::TLS13])).clone();
        config.alpn_protocols = vec![b"rport/1".to_vec()];
        config
    });
    let took = web.rt.block_on(async {
        let socket = tokio::net::TcpStream::connect(server.agent_address)
            .await
            .expect("connect");
        let name = rustls::pki_types::ServerName::try_from("rportd").expect("name");
        let mut stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, socket)
            .await
            .expect("TLS");
        // The preface, then a control frame header announcing 16 MiB of hello.
        let mut head = b"RPORT\x00\x00\x01".to_vec();
        head.push(8);
        head.extend_from_slice(&0u32.to_be_bytes());
        head.extend_from_slice(&(16u32 << 20).to_be_bytes());
        stream.write_all(&head).await.expect("write");
        stream.write_all(&[b'{'; 1024]).await.expect("write");
        let started = Instant::now();
        let mut buffer = [0u8; 1024];
        loop {
            match tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buffer)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
                Ok(Ok(_)) => continue,
                Err(_) => panic!("still open after 20 s"),
            }
        }
    });
    assert!(
        took < Duration::from_secs(5),
        "closed from the header, not the timeout: {took:?}"
    );
}
