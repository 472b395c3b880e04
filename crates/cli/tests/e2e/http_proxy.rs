//! End to end: HTTP proxy tunnels to web servers on a device (plain HTTP and HTTPS with a
//! self-signed certificate) reached with a real HTTPS client: status, headers, bodies,
//! Host rewrite, large streamed bodies, WebSocket, basic auth, ACL; subdomain routing of
//! several tunnels on one port; the API over HTTPS; agents checking a configured server
//! certificate against a CA.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::support::web::{Web, get, request};
use crate::support::*;
use bytes::Bytes;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn any_tls() -> std::sync::Arc<rustls::ClientConfig> {
    web::client_tls(&[&rustls::version::TLS13, &rustls::version::TLS12])
}

fn server_with_agent(dir: &std::path::Path, settings: &ServerSettings) -> (Rportd, Rport) {
    let server = Rportd::start_with(dir, settings);
    let agent = Rport::attach(&server, "dev-1", &dir.join("agent"));
    server.wait_connection_state("dev-1", "connected", ATTACH);
    (server, agent)
}

#[test]
fn a_web_server_on_the_device_through_the_proxy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _agent) = server_with_agent(dir.path(), &ServerSettings::default());
    let web = Web::new();
    let device = web.device_http("router");
    let tunnel = server.open_tunnel(
        "dev-1",
        &format!(
            "remote={}&scheme=http&http_proxy=true&host_header=router.local&auth_user=op&auth_password=proxy-pass-1&acl=127.0.0.1",
            device.port()
        ),
    );
    assert_eq!(tunnel["http_proxy"], true);
    assert_eq!(tunnel["host_header"], "router.local");
    assert_eq!(tunnel["auth_user"], "op");
    assert_eq!(tunnel["auth_password"], Value::Null, "never shown");
    let address = tunnel_address(&tunnel);
    assert_eq!(
        tunnel["tunnel_url"],
        format!("https://127.0.0.1:{}", address.port())
    );
    let public_host = format!("127.0.0.1:{}", address.port());
    let auth = basic("op", "proxy-pass-1");

    let mut client = web
        .connect(address, "localhost", None, any_tls())
        .expect("TLS to the proxy");
    // Basic auth is required and checked.
    let got = web
        .send(&mut client, get(&public_host, "/hello", &[]))
        .expect("answer");
    assert_eq!(got.status, 401);
    assert!(got.header("www-authenticate").starts_with("Basic"));
    let wrong = basic("op", "proxy-pass-2");
    let got = web
        .send(
            &mut client,
            get(&public_host, "/hello", &[("authorization", &wrong)]),
        )
        .expect("answer");
    assert_eq!(got.status, 401);

    // Status, headers and body; the Host rewritten; the password kept from the device; a
    // client's own X-Forwarded-For replaced by the address the proxy saw.
    let got = web
        .send(
            &mut client,
            get(
                &public_host,
                "/hello",
                &[("authorization", &auth), ("x-forwarded-for", "203.0.113.9")],
            ),
        )
        .expect("answer");
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.text(), "hello from router");
    assert_eq!(got.header("x-device"), "router");
    assert_eq!(got.header("x-seen-host"), "router.local");
    assert_eq!(got.header("x-seen-auth"), "no");
    assert_eq!(got.header("x-seen-xff"), "127.0.0.1");
    assert_eq!(got.header("x-seen-proto"), "https");
    let got = web
        .send(
            &mut client,
            get(&public_host, "/missing", &[("authorization", &auth)]),
        )
        .expect("same connection, next request");
    assert_eq!(got.status, 404, "the device's own status passes through");

    // A large streamed body, both ways.
    let len: u64 = 48 * 1024 * 1024;
    let got = web
        .send(
            &mut client,
            get(
                &public_host,
                &format!("/big?bytes={len}"),
                &[("authorization", &auth)],
            ),
        )
        .expect("big body");
    assert_eq!(got.status, 200);
    assert_eq!(got.body.len() as u64, len);
    assert_eq!(Sha256::digest(&got.body).to_vec(), web::big_digest(len));
    let upload = Bytes::from(payload(8 * 1024 * 1024, 5));
    let got = web
        .send(
            &mut client,
            request(
                "POST",
                &public_host,
                "/echo",
                &[("authorization", &auth)],
                upload.clone(),
            ),
        )
        .expect("echo");
    assert_eq!(got.status, 200);
    assert_eq!(Sha256::digest(&got.body), Sha256::digest(&upload));

    // WebSocket through the proxy.
    let ws_client = web
        .connect(address, "localhost", None, any_tls())
        .expect("second connection");
    let echoed = web
        .websocket_echo(
            ws_client,
            get(
                &public_host,
                "/ws",
                &[
                    ("authorization", &auth),
                    ("connection", "Upgrade"),
                    ("upgrade", "websocket"),
                    ("sec-websocket-version", "13"),
                    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ],
            ),
            "hello over websocket",
        )
        .expect("websocket echo");
    assert_eq!(echoed, "hello over websocket");

    // Counters are added when a connection ends.
    drop(client);

    // The ACL applies to the real peer address.
    let refused = web.connect(
        address,
        "localhost",
        Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))),
        any_tls(),
    );
    assert!(refused.is_err(), "outside the ACL: no TLS, no HTTP");
    let id = tunnel["id"].as_str().expect("id");
    let seen = wait_for("counters", ATTACH, || {
        let t = server.tunnel(id)?;
        (t["connections_refused"].as_u64() >= Some(1) && t["bytes_out"].as_u64() > Some(len))
            .then_some(t)
    });
    assert!(seen["connections"].as_u64() >= Some(2), "{seen}");
}

#[test]
fn an_https_device_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _agent) = server_with_agent(dir.path(), &ServerSettings::default());
    let web = Web::new();
    let device = web.device_https("camera");
    let tunnel = server.open_tunnel(
        "dev-1",
        &format!("remote={}&scheme=https&http_proxy=true", device.port()),
    );
    let address = tunnel_address(&tunnel);
    let host = format!("127.0.0.1:{}", address.port());
    // Only TLS 1.2 on the public side works too.
    let mut client = web
        .connect(
            address,
            "localhost",
            None,
            web::client_tls(&[&rustls::version::TLS12]),
        )
        .expect("TLS 1.2 to the proxy");
    let got = web
        .send(&mut client, get(&host, "/hello", &[]))
        .expect("answer");
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.text(), "hello from camera");
    assert_eq!(
        got.header("x-seen-host"),
        host,
        "without host_header the Host passes"
    );
}

#[test]
fn proxy_options_are_checked_with_clear_reasons() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _agent) = server_with_agent(dir.path(), &ServerSettings::default());
    let echo = echo_server();
    for (query, reason) in [
        ("http_proxy=true&scheme=ssh", "needs scheme http or https"),
        ("http_proxy=true", "needs scheme http or https"),
        (
            "http_proxy=true&scheme=http&protocol=udp",
            "needs protocol tcp",
        ),
        ("host_header=x.local", "host_header needs http_proxy=true"),
        ("http_proxy=true&scheme=http&auth_user=a", "go together"),
        ("http_proxy=maybe&scheme=http", "http_proxy"),
    ] {
        let (status, body) = server.request(
            "PUT",
            &format!(
                "/api/v1/clients/dev-1/tunnels?remote={}&{query}",
                echo.port()
            ),
        );
        assert_eq!(status, 400, "{query}: {body}");
        assert!(error_detail(&body).contains(reason), "{query}: {body}");
    }
    // A port that usually speaks HTTP needs no scheme.
    let (status, body) = server.request(
        "PUT",
        "/api/v1/clients/dev-1/tunnels?remote=80&http_proxy=true&check_port=0",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["scheme"], "http");
}

#[test]
fn one_port_serves_every_proxy_tunnel_by_subdomain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = ServerSettings {
        extra_server:
            "tunnel_host = \"tunnels.example.com\"\ntunnel_proxy_address = \"127.0.0.1:0\"\n".into(),
        ..Default::default()
    };
    let (mut server, _agent) = server_with_agent(dir.path(), &settings);
    let web = Web::new();
    let one = web.device_http("one");
    let two = web.device_http("two");
    let open = |device: SocketAddr, acl: &str| {
        server.open_tunnel(
            "dev-1",
            &format!(
                "remote={}&scheme=http&http_proxy=true&acl={acl}",
                device.port()
            ),
        )
    };
    let first = open(one, "127.0.0.1");
    let second = open(two, "127.0.0.1,127.0.0.3");
    let url = |tunnel: &Value| -> (String, u16) {
        let url = tunnel["tunnel_url"].as_str().expect("url").to_owned();
        let rest = url.strip_prefix("https://").expect("https");
        let (host, port) = rest.rsplit_once(':').expect("port");
        (host.to_owned(), port.parse().expect("port"))
    };
    let (host_one, port) = url(&first);
    let (host_two, port_two) = url(&second);
    assert_eq!(port, port_two, "one port for both");
    assert_eq!(first["lport"], "0", "no port of its own: {first}");
    assert!(host_one.ends_with(".tunnels.example.com") && host_one != host_two);
    let shared = SocketAddr::from(([127, 0, 0, 1], port));
    let fetch = |sni: &str, host: &str, from: Option<IpAddr>| -> Result<web::Got, String> {
        let mut client = web.connect(shared, sni, from, any_tls())?;
        web.send(&mut client, get(host, "/hello", &[]))
    };
    let got = fetch(&host_one, &host_one, None).expect("first");
    assert_eq!((got.status, got.text()), (200, "hello from one".to_owned()));
    let got = fetch(&host_two, &format!("{host_two}:{port}"), None).expect("second");
    assert_eq!((got.status, got.text()), (200, "hello from two".to_owned()));
    // A Host naming another tunnel than the TLS name is refused, never served by it.
    let got = fetch(&host_one, &host_two, None).expect("answer");
    assert_eq!(got.status, 404);
    let got = fetch(
        "nothing.tunnels.example.com",
        "nothing.tunnels.example.com",
        None,
    )
    .expect("answer");
    assert_eq!(got.status, 404);
    // Each tunnel's ACL, by the real peer address.
    let from3 = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));
    assert!(fetch(&host_one, &host_one, from3).is_err());
    assert_eq!(
        fetch(&host_two, &host_two, from3).expect("allowed").status,
        200
    );
    // Closing a tunnel frees its name.
    let id = first["id"].as_str().expect("id");
    let (status, _) = server.request(
        "DELETE",
        &format!("/api/v1/clients/dev-1/tunnels/{id}?force=true"),
    );
    assert_eq!(status, 204);
    assert_eq!(
        fetch(&host_one, &host_one, None).expect("answer").status,
        404
    );

    // After a crash the live tunnel keeps its name (and its password hash, ACL, ...).
    let agent_port = server.agent_address.port();
    server.kill();
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            agent_port,
            ..settings
        },
    );
    server.wait_connection_state("dev-1", "connected", ATTACH);
    let id = second["id"].as_str().expect("id");
    let back = server.wait_tunnel_status(id, "opened", ATTACH);
    let (host, port) = url(&back);
    assert_eq!(host, host_two, "same subdomain");
    let mut client = web
        .connect(
            SocketAddr::from(([127, 0, 0, 1], port)),
            &host,
            None,
            any_tls(),
        )
        .expect("TLS after restart");
    let got = web
        .send(&mut client, get(&host, "/hello", &[]))
        .expect("answer");
    assert_eq!((got.status, got.text()), (200, "hello from two".to_owned()));
}

#[test]
fn the_api_speaks_https_when_given_a_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = web::self_signed_pem(&["localhost"]);
    let cert_path = dir.path().join("api-cert.pem");
    let key_path = dir.path().join("api-key.pem");
    std::fs::write(&cert_path, cert).expect("cert");
    std::fs::write(&key_path, key).expect("key");
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            extra_api: format!(
                "cert_file = {:?}\nkey_file = {:?}\n",
                cert_path.display().to_string(),
                key_path.display().to_string()
            ),
            ..Default::default()
        },
    );
    assert!(server.api.starts_with("https://"), "{}", server.api);
    let address: SocketAddr = server
        .api
        .trim_start_matches("https://")
        .parse()
        .expect("address");
    let web = Web::new();
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let mut client = web
            .connect(address, "localhost", None, web::client_tls(versions))
            .expect("TLS to the API");
        let got = web
            .send(
                &mut client,
                get(
                    "localhost",
                    "/api/v1/status",
                    &[("authorization", &server.auth_header)],
                ),
            )
            .expect("status");
        assert_eq!(got.status, 200, "{}", got.text());
        let body: Value = serde_json::from_slice(&got.body).expect("json");
        assert!(body["data"]["fingerprint"].is_string());
    }
    // Plain HTTP gets nothing useful from a TLS port.
    let mut plain = std::net::TcpStream::connect(address).expect("connect");
    use std::io::{Read, Write};
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    plain
        .write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));

    // A key that does not belong to the certificate stops the start, naming the keys.
    let (_, other_key) = web::self_signed_pem(&["localhost"]);
    std::fs::write(&key_path, other_key).expect("key");
    let config = dir.path().join("rportd.conf");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_rportd"))
        .arg("-c")
        .arg(&config)
        .output()
        .expect("rportd");
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("cert_file") && err.contains("api-key.pem"),
        "{err}"
    );
}

#[test]
fn agents_check_a_configured_certificate_against_their_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, chain, key) = web::ca_signed_pem(&["localhost"]);
    let (other_ca, _, _) = web::ca_signed_pem(&["localhost"]);
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    };
    let (cert_path, key_path) = (write("server.pem", &chain), write("server-key.pem", &key));
    let (ca_path, other_ca_path) = (write("ca.pem", &ca), write("other-ca.pem", &other_ca));
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            extra_server: format!("cert_file = {cert_path:?}\nkey_file = {key_path:?}\n"),
            ..Default::default()
        },
    );
    let address = format!("localhost:{}", server.agent_address.port());
    let start = |id: &str, trust: &[&str]| {
        let data = dir.path().join(id);
        let mut args = vec![
            "--id",
            id,
            "--auth",
            AGENT_AUTH,
            "--data-dir",
            data.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(trust);
        args.extend_from_slice(&["--max-retry-interval", "1s", &address]);
        Rport::start(&args)
    };
    // Checked against the right CA, by the name it connects to.
    let _trusting = start("by-ca", &["--ca-file", &ca_path]);
    server.wait_connection_state("by-ca", "connected", ATTACH);
    // Pinning the configured certificate's key works as with a generated one.
    let _pinning = start("by-pin", &["--fingerprint", &server.fingerprint]);
    server.wait_connection_state("by-pin", "connected", ATTACH);
    // The operating system's roots, as an agent on a device sees them (SSL_CERT_FILE is
    // where rustls-native-certs, like OpenSSL, looks first).
    let data = dir.path().join("by-system");
    let _system = Rport::start_with_env(
        &[
            "--id",
            "by-system",
            "--auth",
            AGENT_AUTH,
            "--data-dir",
            data.to_str().expect("utf-8"),
            "--system-roots",
            "--max-retry-interval",
            "1s",
            &address,
        ],
        &[("SSL_CERT_FILE", ca_path.as_str())],
    );
    server.wait_connection_state("by-system", "connected", ATTACH);
    // Another CA's agent never gets to log in.
    let mut refused = start("by-other-ca", &["--ca-file", &other_ca_path]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(server.client("by-other-ca").is_none(), "never connected");
    assert!(refused.is_running(), "it keeps trying, as agents do");
    refused.kill();
    // Pinning and a CA together is a contradiction, refused at start.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_rport"))
        .args([
            "--auth",
            AGENT_AUTH,
            "--fingerprint",
            &server.fingerprint,
            "--ca-file",
            &ca_path,
            &address,
        ])
        .output()
        .expect("rport");
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("not both"), "{err}");
}

#[test]
fn guessing_a_proxy_password_gets_the_address_banned_for_a_while() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = ServerSettings {
        extra_api: "max_failed_login = 3\nban_time = 2\n".into(),
        ..Default::default()
    };
    let (server, _agent) = server_with_agent(dir.path(), &settings);
    let web = Web::new();
    let device = web.device_http("nas");
    let tunnel = server.open_tunnel(
        "dev-1",
        &format!(
            "remote={}&scheme=http&http_proxy=true&auth_user=op&auth_password=proxy-pass-1",
            device.port()
        ),
    );
    let address = tunnel_address(&tunnel);
    let host = format!("127.0.0.1:{}", address.port());
    let mut client = web
        .connect(address, "localhost", None, any_tls())
        .expect("TLS");
    let mut ask = |password: &str| {
        let auth = basic("op", password);
        web.send(
            &mut client,
            get(&host, "/hello", &[("authorization", &auth)]),
        )
        .expect("answer")
    };
    let statuses: Vec<u16> = (0..3).map(|_| ask("guess").status).collect();
    assert_eq!(statuses, [401, 401, 429]);
    let banned = ask("proxy-pass-1");
    assert_eq!(banned.status, 429, "even the right password while banned");
    assert!(banned.header("retry-after").parse::<u64>().is_ok());
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(ask("proxy-pass-1").status, 200, "back after ban_time");
}
