//! End to end: every tunnel parameter and error code, the agent's allow-list and its own
//! tunnels, UDP, and tunnels that outlive agent disconnects and server crashes.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::{Value, json};

/// A server with one connected agent, `client-1`.
fn server_with_agent(dir: &std::path::Path, extra_server: &str) -> (Rportd, Rport) {
    let server = Rportd::start_with(
        dir,
        &ServerSettings {
            extra_server: extra_server.into(),
            ..Default::default()
        },
    );
    let agent = Rport::attach(&server, "client-1", &dir.join("agent"));
    server.wait_connection_state("client-1", "connected", ATTACH);
    (server, agent)
}

fn put_tunnel(server: &Rportd, query: &str) -> (u16, Value) {
    server.request("PUT", &format!("/api/v1/clients/client-1/tunnels?{query}"))
}

fn id(tunnel: &Value) -> String {
    tunnel["id"].as_str().expect("tunnel id").to_owned()
}

fn port(tunnel: &Value) -> u16 {
    tunnel_address(tunnel).port()
}

/// Connects from `source` (any 127.0.0.0/8 address on Linux) and checks an echo round
/// trip; returns whether the tunnel carried it.
fn echo_from(source: IpAddr, target: SocketAddr) -> bool {
    let Some(mut stream) = connect_from(source, target) else {
        return false;
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    if stream.write_all(b"ping through the tunnel").is_err() {
        return false;
    }
    let mut answer = [0u8; 23];
    stream.read_exact(&mut answer).is_ok() && &answer == b"ping through the tunnel"
}

/// A connection to `target` from the local address `source`.
fn connect_from(source: IpAddr, target: SocketAddr) -> Option<TcpStream> {
    let socket = match source {
        IpAddr::V4(_) => socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None),
        IpAddr::V6(_) => socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None),
    }
    .expect("socket");
    socket
        .bind(&SocketAddr::new(source, 0).into())
        .expect("bind source");
    socket.connect(&target.into()).ok()?;
    Some(socket.into())
}

const V4_ALLOWED: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
const V4_OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3));

#[test]
fn acl_admits_listed_sources_only_and_changes_live() {
    let dir = tempdir();
    let (server, _agent) = server_with_agent(dir.path(), "");
    let echo = echo_server();

    for bad in [
        "0.0.0.0/0",
        "::/0",
        "10.0.0.1,0.0.0.0",
        "not-an-address",
        "10.0.0.0/33",
    ] {
        let (status, body) = put_tunnel(&server, &format!("remote={}&acl={bad}", echo.port()));
        assert_eq!(status, 400, "acl={bad}: {body}");
        assert_eq!(
            error_code(&body),
            "ERR_CODE_INVALID_ACL",
            "acl={bad}: {body}"
        );
    }

    let tunnel = server.open_tunnel(
        "client-1",
        &format!(
            "remote={}&acl=127.0.0.2,201.98.123.0/24,2001:db8::/32",
            echo.port()
        ),
    );
    assert_eq!(tunnel["acl"], "127.0.0.2,201.98.123.0/24,2001:db8::/32");
    let address = tunnel_address(&tunnel);
    assert!(echo_from(V4_ALLOWED, address), "127.0.0.2 is listed");
    assert!(!echo_from(V4_OTHER, address), "127.0.0.3 is not");
    // Counted once the connection has ended: 23 bytes each way.
    let listed = wait_for(
        "the connection's bytes counted",
        Duration::from_secs(10),
        || {
            server
                .tunnel(&id(&tunnel))
                .filter(|t| t["bytes_in"] == 23 && t["bytes_out"] == 23)
        },
    );
    assert_eq!(listed["connections_refused"], 1, "{listed}");
    assert_eq!(listed["connections"], 1, "{listed}");
    assert_eq!(listed["active_connections"], 0, "{listed}");

    // Changed live: now only 127.0.0.3.
    let acl_path = format!("/api/v1/clients/client-1/tunnels/{}/acl", id(&tunnel));
    let (status, body) = server.send_json("PUT", &acl_path, &json!({"acl": "127.0.0.3"}));
    assert_eq!(status, 204, "{body}");
    assert!(echo_from(V4_OTHER, address));
    assert!(!echo_from(V4_ALLOWED, address));
    let (status, body) = server.send_json("PUT", &acl_path, &json!({"acl": "0.0.0.0/0"}));
    assert_eq!((status, error_code(&body)), (400, "ERR_CODE_INVALID_ACL"));
    // Removed: anyone.
    let (status, _) = server.send_json("PUT", &acl_path, &json!({"acl": null}));
    assert_eq!(status, 204);
    assert!(echo_from(V4_ALLOWED, address));
    assert_eq!(
        server.tunnel(&id(&tunnel)).expect("listed")["acl"],
        Value::Null
    );
    // Both changes are in the audit log, newest first.
    let (_, audit) = server.request("GET", "/api/v1/auditlog?filter[action]=tunnel.acl");
    let details: Vec<&str> = audit["data"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["detail"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(details, ["acl none", "acl 127.0.0.3"], "{audit}");
}

/// A free port among the test server's used_ports on `::1`.
/// Entries that are each narrower than everyone can add up to everyone; that is refused
/// like `0.0.0.0/0` on every path that sets an ACL.
#[test]
fn acls_that_together_let_everyone_in_are_refused_on_every_path() {
    let dir = tempdir();
    let (server, _agent) = server_with_agent(dir.path(), "");
    let echo = echo_server();
    let everyone = [
        "0.0.0.0/1,128.0.0.0/1",
        "0.0.0.0/2,64.0.0.0/2,128.0.0.0/1,2001:db8::1",
        "::/1,8000::/1",
        "::ffff:0.0.0.0/97,::ffff:128.0.0.0/97",
    ];
    for acl in everyone {
        let query = format!("remote={}&acl={}", echo.port(), acl.replace('/', "%2F"));
        let (status, body) = put_tunnel(&server, &query);
        assert_eq!(
            (status, error_code(&body)),
            (400, "ERR_CODE_INVALID_ACL"),
            "acl={acl}: {body}"
        );
        let detail = body["errors"][0]["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("cover every"), "{detail}");
    }
    let (_, open) = server.request("GET", "/api/v1/tunnels");
    assert_eq!(open["data"], json!([]), "no tunnel was opened");

    let tunnel = server.open_tunnel("client-1", &format!("remote={}&acl=0.0.0.0/1", echo.port()));
    let acl_path = format!("/api/v1/clients/client-1/tunnels/{}/acl", id(&tunnel));
    for acl in everyone {
        let (status, body) = server.send_json("PUT", &acl_path, &json!({ "acl": acl }));
        assert_eq!(
            (status, error_code(&body)),
            (400, "ERR_CODE_INVALID_ACL"),
            "acl={acl}: {body}"
        );
    }
    assert_eq!(
        server.tunnel(&id(&tunnel)).expect("listed")["acl"],
        "0.0.0.0/1"
    );

    // API v2 takes one entry: the IPv4-mapped range as a whole is all of IPv4.
    let bearer = server.bearer();
    for allowed_ip in ["::ffff:0:0/96", "0.0.0.0/0"] {
        let reply = server.call(
            "POST",
            "/api/v2/default/port_tunnel",
            &bearer,
            &[],
            Some(
                &json!({"device_uuid": "client-1", "port": echo.port(), "allowed_ip": allowed_ip}),
            ),
        );
        assert_eq!(
            (reply.status, error_code(&reply.body)),
            (400, "ERR_CODE_INVALID_ACL"),
            "allowed_ip={allowed_ip}: {}",
            reply.body
        );
    }
}

/// `local` is bound by rportd, which looks up no names it is sent: a name is refused
/// before anything is resolved or bound.
#[test]
fn the_servers_side_of_a_tunnel_takes_addresses_not_names() {
    let dir = tempdir();
    let (server, _agent) = server_with_agent(dir.path(), "");
    let echo = echo_server();
    // A name the machine resolves itself, so that a regression looks up nothing outside;
    // and a port that was free, since before the fix it got bound.
    let port = wait_for("a free port among used_ports", ATTACH, || {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        (20000..=60000).contains(&port).then_some(port)
    });
    let local = format!("localhost:{port}");
    let (status, body) = put_tunnel(&server, &format!("remote={}&local={local}", echo.port()));
    assert_eq!(
        (status, error_code(&body)),
        (400, "ERR_CODE_INVALID_REQUEST"),
        "local={local}: {body}"
    );
    let detail = body["errors"][0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("localhost") && detail.contains("IP address"),
        "{detail}"
    );
    let (_, open) = server.request("GET", "/api/v1/tunnels");
    assert_eq!(open["data"], json!([]), "no tunnel was opened");
}

fn free_v6_port() -> u16 {
    wait_for("a free IPv6 port", Duration::from_secs(5), || {
        let listener = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).ok()?;
        let port = listener.local_addr().ok()?.port();
        (20000..=60000).contains(&port).then_some(port)
    })
}

#[test]
fn acl_applies_to_ipv6_sources() {
    let dir = tempdir();
    let (server, _agent) = server_with_agent(dir.path(), "");
    let echo = echo_server();
    let loopback6 = IpAddr::V6(Ipv6Addr::LOCALHOST);

    let allowed = server.open_tunnel(
        "client-1",
        &format!(
            "local=[::1]:{}&remote={}&acl=::1",
            free_v6_port(),
            echo.port()
        ),
    );
    assert_eq!(allowed["lhost"], "::1");
    let address = SocketAddr::new(loopback6, port(&allowed));
    assert!(echo_from(loopback6, address));

    let refused = server.open_tunnel(
        "client-1",
        &format!(
            "local=[::1]:{}&remote={}&acl=2001:db8::/32&check_port=0",
            free_v6_port(),
            echo.port()
        ),
    );
    let address = SocketAddr::new(loopback6, port(&refused));
    assert!(!echo_from(loopback6, address));
}

#[test]
fn parameters_are_validated_with_rport_error_codes() {
    let dir = tempdir();
    let (server, _agent) = server_with_agent(dir.path(), "");
    let echo = echo_server();
    let remote = format!("remote={}", echo.port());

    let cases: &[(&str, u16, &str)] = &[
        (
            "idle-timeout-minutes=10081",
            400,
            "ERR_CODE_INVALID_IDLE_TIMEOUT",
        ),
        (
            "idle-timeout-minutes=-1",
            400,
            "ERR_CODE_INVALID_IDLE_TIMEOUT",
        ),
        (
            "idle-timeout-minutes=5&skip-idle-timeout=true",
            400,
            "ERR_CODE_INVALID_IDLE_TIMEOUT",
        ),
        ("skip-idle-timeout=maybe", 400, "ERR_CODE_INVALID_REQUEST"),
        ("auto-close=745h", 400, "ERR_CODE_INVALID_REQUEST"),
        ("auto-close=soon", 400, "ERR_CODE_INVALID_REQUEST"),
        ("check_port=perhaps", 400, "ERR_CODE_INVALID_REQUEST"),
        ("protocol=sctp", 400, "ERR_CODE_INVALID_REQUEST"),
        (
            "scheme=sixteen-chars-xx",
            400,
            "ERR_CODE_URI_SCHEME_LENGTH_EXCEED",
        ),
        ("local=80", 400, "ERR_CODE_INVALID_REQUEST"),
    ];
    for (query, status, code) in cases {
        let (got, body) = put_tunnel(&server, &format!("{remote}&{query}"));
        assert_eq!(
            (got, error_code(&body)),
            (*status, *code),
            "{query}: {body}"
        );
    }
    let (_, body) = put_tunnel(&server, &format!("{remote}&local=80"));
    assert!(
        body["errors"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("80")),
        "{body}"
    );

    // Defaults, and each parameter returned.
    let plain = server.open_tunnel("client-1", &format!("{remote}&name=db"));
    assert_eq!(plain["idle_timeout_minutes"], 5);
    assert_eq!(plain["auto_close"], 0);
    assert_eq!(plain["check_port"], true);
    assert_eq!(plain["name"], "db");
    assert_eq!(plain["status"], "opened");
    assert_eq!(plain["created_by"], "admin");
    let custom = server.open_tunnel(
        "client-1",
        &format!("{remote}&skip-idle-timeout=1&auto-close=1h30m&acl=10.0.0.0/8&scheme=custom"),
    );
    assert_eq!(custom["idle_timeout_minutes"], 0);
    assert_eq!(custom["auto_close"], 5_400_000_000_000u64);
    assert_eq!(custom["scheme"], "custom");

    // The scheme follows well-known target ports when not given.
    let ssh = server.open_tunnel("client-1", "remote=22&check_port=0");
    assert_eq!(ssh["scheme"], "ssh");
    let rdp = server.open_tunnel("client-1", "remote=3389&check_port=0");
    assert_eq!(rdp["scheme"], "rdp");

    // The list pages when asked, with the total.
    let (_, page) = server.request("GET", "/api/v1/tunnels?page[limit]=2&page[offset]=1");
    assert_eq!(page["data"].as_array().map(Vec::len), Some(2), "{page}");
    assert_eq!(page["meta"]["count"], 4, "{page}");
    let (_, all) = server.request("GET", "/api/v1/tunnels");
    assert_eq!(all["data"].as_array().map(Vec::len), Some(4));

    // Duplicates.
    let (status, body) = put_tunnel(&server, "remote=22&check_port=0");
    assert_eq!(
        (status, error_code(&body)),
        (400, "ERR_CODE_TUNNEL_TO_PORT_EXIST"),
        "{body}"
    );
    let (status, body) = put_tunnel(
        &server,
        &format!("remote=23&check_port=0&local={}", port(&ssh)),
    );
    assert_eq!(
        (status, error_code(&body)),
        (400, "ERR_CODE_TUNNEL_EXIST"),
        "{body}"
    );
    // The same target with another ACL is another tunnel.
    server.open_tunnel("client-1", "remote=22&check_port=0&acl=127.0.0.2");
}

#[test]
fn check_port_refuses_a_closed_target_and_leaves_nothing_open() {
    let dir = tempdir();
    let (server, _agent) = server_with_agent(dir.path(), "");
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let (status, body) = put_tunnel(&server, &format!("remote={closed}"));
    assert_eq!(
        (status, error_code(&body)),
        (400, "ERR_CODE_REMOTE_PORT_NOT_OPEN"),
        "{body}"
    );
    let (_, live) = server.request("GET", "/api/v1/tunnels");
    assert_eq!(live["data"], json!([]));
    let (_, all) = server.request(
        "GET",
        "/api/v1/tunnels?filter[status]=opened,closed,terminated",
    );
    assert_eq!(all["data"], json!([]), "nothing recorded either");

    let unchecked = server.open_tunnel("client-1", &format!("remote={closed}&check_port=0"));
    assert_eq!(unchecked["check_port"], false);
}

#[test]
fn auto_close_ends_a_busy_tunnel_and_idle_time_counts_from_the_last_connection() {
    let dir = tempdir();
    let (server, _agent) = server_with_agent(dir.path(), "");
    let echo = echo_server();
    // Held past the first idle minute: its end, not the tunnel's creation, starts the
    // idle time (nothing but the watcher's own timer wakes it then).
    let long_source = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 4));
    let long = server.open_tunnel(
        "client-1",
        &format!(
            "remote={}&idle-timeout-minutes=1&acl={long_source}",
            echo.port()
        ),
    );
    let mut long_held = connect_from(long_source, tunnel_address(&long)).expect("connect");
    let mut echoed = [0u8; 5];
    long_held.write_all(b"hello").expect("write");
    long_held.read_exact(&mut echoed).expect("echo");

    let started = Instant::now();
    let limited = server.open_tunnel("client-1", &format!("remote={}&auto-close=3s", echo.port()));
    let idle = server.open_tunnel(
        "client-1",
        &format!(
            "remote={}&idle-timeout-minutes=1&acl=127.0.0.2",
            echo.port()
        ),
    );
    let never = server.open_tunnel(
        "client-1",
        &format!(
            "remote={}&skip-idle-timeout=true&acl=127.0.0.3",
            echo.port()
        ),
    );
    // A connection held open does not keep an auto-closing tunnel alive.
    let mut held = TcpStream::connect(tunnel_address(&limited)).expect("connect");
    held.write_all(b"x").expect("write");
    let closed = server.wait_tunnel_status(&id(&limited), "terminated", Duration::from_secs(15));
    assert_eq!(closed["close_reason"], "auto_close");
    assert!(started.elapsed() >= Duration::from_secs(3));
    held.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut rest = Vec::new();
    let _ = held.read_to_end(&mut rest);
    assert!(
        TcpStream::connect(tunnel_address(&limited)).is_err(),
        "port closed"
    );

    // One use, then quiet: closed a minute after the use, not before.
    assert!(echo_from(V4_ALLOWED, tunnel_address(&idle)));
    let used = Instant::now();
    let closed = server.wait_tunnel_status(&id(&idle), "terminated", Duration::from_secs(120));
    assert_eq!(closed["close_reason"], "idle_timeout");
    assert!(
        used.elapsed() >= Duration::from_secs(59),
        "closed {:?} after the use: {closed}",
        used.elapsed()
    );
    assert_eq!(
        server.tunnel(&id(&never)).expect("listed")["status"],
        "opened"
    );

    // The long connection, a minute old now, is still use; the minute counts from its end.
    assert_eq!(
        server.tunnel(&id(&long)).expect("listed")["status"],
        "opened"
    );
    long_held.write_all(b"still").expect("write");
    long_held.read_exact(&mut echoed).expect("echo");
    assert_eq!(&echoed, b"still");
    drop(long_held);
    let ended = Instant::now();
    let closed = server.wait_tunnel_status(&id(&long), "terminated", Duration::from_secs(90));
    assert_eq!(closed["close_reason"], "idle_timeout");
    assert!(
        ended.elapsed() >= Duration::from_secs(59),
        "closed {:?} after the connection ended: {closed}",
        ended.elapsed()
    );
}

#[test]
fn delete_with_open_connections_needs_force() {
    let dir = tempdir();
    let (server, _agent) = server_with_agent(dir.path(), "");
    let echo = echo_server();
    let tunnel = server.open_tunnel("client-1", &format!("remote={}", echo.port()));
    let path = format!("/api/v1/clients/client-1/tunnels/{}", id(&tunnel));
    let mut open = TcpStream::connect(tunnel_address(&tunnel)).expect("connect");
    open.write_all(b"hello").expect("write");
    let mut echoed = [0u8; 5];
    open.read_exact(&mut echoed).expect("echo");

    let (status, body) = server.request("DELETE", &path);
    assert_eq!(status, 409, "{body}");
    assert!(
        body["errors"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("1 active connection")),
        "{body}"
    );
    let (status, _) = server.request("DELETE", &format!("{path}?force=true"));
    assert_eq!(status, 204);
    open.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut rest = Vec::new();
    assert!(
        matches!(open.read_to_end(&mut rest), Ok(0) | Err(_)),
        "connection closed"
    );
    let closed = server.tunnel(&id(&tunnel)).expect("kept");
    assert_eq!(
        (closed["status"].as_str(), closed["close_reason"].as_str()),
        (Some("closed"), Some("deleted"))
    );
}

/// A UDP echo server on 127.0.0.1:0.
fn udp_echo_server() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let address = socket.local_addr().expect("addr");
    thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok((len, peer)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..len], peer);
        }
    });
    address
}

/// Sends datagrams of many sizes one at a time and checks each echo's size and bytes.
fn udp_round_trips(target: SocketAddr, seed: u64) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = vec![0u8; 65536];
    let sizes = [0usize, 1, 2, 100, 1400, 1500, 9000, 32768, 65000, 65507];
    for (n, &size) in sizes.iter().cycle().take(60).enumerate() {
        let datagram = payload(size, seed + n as u64);
        // Retry a few times: UDP may drop, the content must never be wrong.
        let mut answered = false;
        for _ in 0..5 {
            socket.send_to(&datagram, target).expect("send");
            if let Ok(len) = socket.recv(&mut buf) {
                assert_eq!(&buf[..len], &datagram[..], "datagram {n} of {size} bytes");
                answered = true;
                break;
            }
        }
        assert!(answered, "datagram {n} of {size} bytes never came back");
    }
}

#[test]
fn udp_datagrams_keep_their_boundaries_and_content() {
    let dir = tempdir();
    let (server, _agent) = server_with_agent(dir.path(), "");
    let echo = udp_echo_server();
    let tunnel = server.open_tunnel("client-1", &format!("remote={}&protocol=udp", echo.port()));
    assert_eq!(tunnel["protocol"], "udp");
    let address = tunnel_address(&tunnel);
    let workers: Vec<_> = (0..3u64)
        .map(|seed| thread::spawn(move || udp_round_trips(address, seed * 1000)))
        .collect();
    for worker in workers {
        worker.join().expect("datagrams intact");
    }
    let listed = server.tunnel(&id(&tunnel)).expect("listed");
    assert_eq!(listed["connections"], 3, "one flow per source: {listed}");

    // The ACL drops datagrams from other sources.
    let acl_path = format!("/api/v1/clients/client-1/tunnels/{}/acl", id(&tunnel));
    let (status, _) = server.send_json("PUT", &acl_path, &json!({"acl": "127.0.0.2"}));
    assert_eq!(status, 204);
    let outsider = UdpSocket::bind("127.0.0.3:0").expect("bind");
    outsider
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    outsider.send_to(b"let me in", address).expect("send");
    let mut buf = [0u8; 64];
    assert!(outsider.recv(&mut buf).is_err(), "dropped");
    let insider = UdpSocket::bind("127.0.0.2:0").expect("bind");
    insider
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    insider.send_to(b"hello", address).expect("send");
    let len = insider.recv(&mut buf).expect("echo");
    assert_eq!(&buf[..len], b"hello");
    assert!(
        server.tunnel(&id(&tunnel)).expect("listed")["connections_refused"].as_u64() >= Some(1)
    );
}

#[test]
fn tcp_and_udp_share_one_port_number() {
    let dir = tempdir();
    let (server, _agent) = server_with_agent(dir.path(), "");
    // A TCP and a UDP echo on the same port number, so one remote serves both.
    let (tcp_echo, udp) = wait_for(
        "a port free for TCP and UDP",
        Duration::from_secs(5),
        || {
            let udp = UdpSocket::bind("127.0.0.1:0").ok()?;
            let port = udp.local_addr().ok()?.port();
            let tcp = TcpListener::bind(("127.0.0.1", port)).ok()?;
            Some((echo_on(tcp), udp))
        },
    );
    thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok((len, peer)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(&buf[..len], peer);
        }
    });
    let tunnel = server.open_tunnel(
        "client-1",
        &format!("remote={}&protocol=tcp%2Budp", tcp_echo.port()),
    );
    assert_eq!(tunnel["protocol"], "tcp+udp");
    let address = tunnel_address(&tunnel);
    echo_round_trip(address, 100_000, 7);
    udp_round_trips(address, 7);
}

fn write_agent_config(dir: &std::path::Path, body: &str) -> String {
    let path = dir.join("rport.conf");
    std::fs::write(&path, body).expect("write agent config");
    path.to_str().expect("utf-8").to_owned()
}

/// Agent `client-1`, connected, whose `tunnel_allowed` is only 127.0.0.1:`port`.
fn attach_allowing_only(server: &Rportd, dir: &std::path::Path, port: u16) -> Rport {
    let config = write_agent_config(
        dir,
        &format!("[client]\ntunnel_allowed = [\"127.0.0.1:{port}\"]\n"),
    );
    let agent = Rport::attach_with(
        server,
        "client-1",
        &dir.join("agent"),
        server.agent_address,
        &["-c", &config],
        &[],
    );
    server.wait_connection_state("client-1", "connected", ATTACH);
    agent
}

#[test]
fn the_agents_allow_list_is_asked_and_enforced() {
    let dir = tempdir();
    let server = Rportd::start(dir.path());
    let echo = echo_server();
    let other = echo_server();
    let _agent = attach_allowing_only(&server, dir.path(), echo.port());

    let allowed = server.open_tunnel("client-1", &format!("remote={}", echo.port()));
    echo_round_trip(tunnel_address(&allowed), 10_000, 1);
    // A name is resolved by the agent and the address checked.
    let by_name = server.open_tunnel(
        "client-1",
        &format!("remote=localhost:{}&acl=127.0.0.2", echo.port()),
    );
    assert!(echo_from(V4_ALLOWED, tunnel_address(&by_name)));

    for remote in [
        format!("{}", other.port()),
        format!("127.0.0.2:{}", echo.port()),
        format!("localhost:{}", other.port()),
    ] {
        for check in ["1", "0"] {
            let (status, body) =
                put_tunnel(&server, &format!("remote={remote}&check_port={check}"));
            assert_eq!(status, 400, "remote={remote}: {body}");
            assert_eq!(
                body["errors"][0]["title"],
                "Tunnel destination is not allowed by client configuration",
                "{body}"
            );
        }
    }
}

/// A `tunnels` user must not learn through refusals how the device resolves names: the
/// API says the target is not allowed and where that is set, the agent's log says why.
#[test]
fn a_refusal_does_not_tell_how_the_device_resolves_names() {
    let dir = tempdir();
    let server = Rportd::start(dir.path());
    let echo = echo_server();
    let other = echo_server();
    let agent = attach_allowing_only(&server, dir.path(), echo.port());

    for check in ["1", "0"] {
        let remote = format!("localhost:{}", other.port());
        let (status, body) = put_tunnel(&server, &format!("remote={remote}&check_port={check}"));
        assert_eq!(
            (status, error_code(&body)),
            (400, "ERR_CODE_TUNNEL_NOT_ALLOWED"),
            "{body}"
        );
        let detail = body["errors"][0]["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(&remote) && detail.contains("tunnel_allowed"),
            "{detail}"
        );
        assert!(
            !detail.contains("127.0.0.1")
                && !detail.contains("::1")
                && !detail.contains("resolves"),
            "the detail tells how the device resolved the name: {detail}"
        );
    }
    let logged = agent
        .stderr
        .wait_for(&format!("resolves to 127.0.0.1:{}", other.port()), ATTACH);
    assert!(logged.contains("tunnel_allowed"), "{logged}");
}

#[test]
fn a_disallowed_remote_in_the_agents_config_stops_it() {
    let dir = tempdir();
    let config = write_agent_config(
        dir.path(),
        "[client]\nserver = \"127.0.0.1:1\"\nauth = \"a:b\"\ntunnel_allowed = [\"10.0.0.0/8\"]\nremotes = [\"2222:127.0.0.1:22\"]\n",
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_rport"))
        .args(["-c", &config])
        .output()
        .expect("run rport");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("client.remotes") && stderr.contains("tunnel_allowed"),
        "{stderr}"
    );

    let config = write_agent_config(
        dir.path(),
        "[client]\nserver = \"127.0.0.1:1\"\nauth = \"a:b\"\ntunnel_allowed = [\"example.com\"]\n",
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_rport"))
        .args(["-c", &config])
        .output()
        .expect("run rport");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("client.tunnel_allowed") && stderr.contains("example.com"),
        "{stderr}"
    );
}

#[test]
fn the_agents_own_tunnels_open_when_it_connects() {
    let dir = tempdir();
    let server = Rportd::start(dir.path());
    let echo = echo_server();
    let udp_echo = udp_echo_server();
    let remote_tcp = format!("{}", echo.port());
    let remote_udp = format!("127.0.0.1:{}/udp", udp_echo.port());
    let _agent = Rport::attach_with(
        &server,
        "client-1",
        &dir.path().join("agent"),
        server.agent_address,
        &[],
        &[&remote_tcp, &remote_udp],
    );
    server.wait_connection_state("client-1", "connected", ATTACH);
    let tunnels = wait_for("the agent's tunnels", Duration::from_secs(10), || {
        let client = server.client("client-1")?;
        let list = client["tunnels"].as_array()?.clone();
        (list.len() == 2).then_some(list)
    });
    for tunnel in &tunnels {
        assert_eq!(tunnel["created_by"], "client");
        assert_eq!(tunnel["idle_timeout_minutes"], 0);
        assert_eq!(tunnel["status"], "opened");
    }
    let tcp = tunnels
        .iter()
        .find(|t| t["protocol"] == "tcp")
        .expect("tcp");
    echo_round_trip(tunnel_address(tcp), 50_000, 3);
    let udp = tunnels
        .iter()
        .find(|t| t["protocol"] == "udp")
        .expect("udp");
    udp_round_trips(tunnel_address(udp), 3);
}

#[test]
fn a_server_may_refuse_the_tunnels_agents_ask_for() {
    let dir = tempdir();
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            extra_server: "allow_client_remotes = false\n".into(),
            ..Default::default()
        },
    );
    let echo = echo_server();
    let remote = format!("{}", echo.port());
    let agent = Rport::attach_with(
        &server,
        "client-1",
        &dir.path().join("agent"),
        server.agent_address,
        &[],
        &[&remote],
    );
    server.wait_connection_state("client-1", "connected", ATTACH);
    let line = agent.stderr.wait_for("allow_client_remotes", ATTACH);
    assert!(
        line.contains(&remote),
        "the agent is told which one and why: {line}"
    );
    let (_, tunnels) = server.request("GET", "/api/v1/tunnels");
    assert_eq!(tunnels["meta"]["count"], 0, "{tunnels}");
    // Operators' tunnels to it still work.
    let tunnel = server.open_tunnel("client-1", &format!("remote={}", echo.port()));
    echo_round_trip(tunnel_address(&tunnel), 10_000, 1);
}

#[test]
fn a_tunnel_survives_its_agent_restarting_within_the_grace_period() {
    let dir = tempdir();
    let (server, mut agent) = server_with_agent(dir.path(), "");
    let echo = echo_server();
    let tunnel = server.open_tunnel("client-1", &format!("remote={}", echo.port()));
    let address = tunnel_address(&tunnel);
    echo_round_trip(address, 10_000, 1);

    agent.kill();
    server.wait_connection_state("client-1", "disconnected", ATTACH);
    assert_eq!(
        server.tunnel(&id(&tunnel)).expect("kept")["status"],
        "pending"
    );
    // The port stays bound; a connection made now waits for the agent.
    let waiting = thread::spawn(move || echo_round_trip(address, 10_000, 2));
    let _agent = Rport::attach(&server, "client-1", &dir.path().join("agent"));
    waiting
        .join()
        .expect("the waiting connection was carried once the agent was back");
    server.wait_tunnel_status(&id(&tunnel), "opened", ATTACH);
    echo_round_trip(address, 10_000, 3);
}

#[test]
fn an_agent_away_longer_than_the_grace_period_loses_its_tunnels() {
    let dir = tempdir();
    let (server, mut agent) = server_with_agent(dir.path(), "tunnel_grace_period = \"2s\"\n");
    let echo = echo_server();
    let tunnel = server.open_tunnel("client-1", &format!("remote={}", echo.port()));
    agent.kill();
    let ended = server.wait_tunnel_status(&id(&tunnel), "terminated", ATTACH);
    assert_eq!(ended["close_reason"], "client_gone");
    assert!(
        TcpStream::connect(tunnel_address(&tunnel)).is_err(),
        "port closed"
    );
}

#[test]
fn after_a_crash_tunnels_come_back_on_the_same_port() {
    let dir = tempdir();
    let mut server = Rportd::start(dir.path());
    let agent_port = server.agent_address.port();
    let _agent = Rport::attach(&server, "client-1", &dir.path().join("agent"));
    server.wait_connection_state("client-1", "connected", ATTACH);
    let echo = echo_server();
    let tunnel = server.open_tunnel(
        "client-1",
        &format!(
            "remote={}&idle-timeout-minutes=30&auto-close=2h",
            echo.port()
        ),
    );
    echo_round_trip(tunnel_address(&tunnel), 100_000, 1);
    server.kill();

    let server = Rportd::start_on_agent_port(dir.path(), agent_port);
    server.wait_connection_state("client-1", "connected", ATTACH);
    let back = server.wait_tunnel_status(&id(&tunnel), "opened", ATTACH);
    assert_eq!(back["lport"], tunnel["lport"]);
    assert_eq!(
        back["auto_close_at"], tunnel["auto_close_at"],
        "auto-close is not reset"
    );
    assert_eq!(back["idle_timeout_minutes"], 30);
    echo_round_trip(tunnel_address(&tunnel), 100_000, 2);
}

/// A thousand connections opened in quick batches, each writing at once and waiting for
/// its echo, three times over. A race in the multiplexer once dropped the first bytes of
/// a few of them (their DATA overtook their OPEN inside the server), and those hung.
#[test]
fn a_thousand_connections_opened_at_once_are_all_carried() {
    let _heavy = heavy();
    let dir = tempdir();
    let (server, _agent) = server_with_agent(dir.path(), "");
    let echo = echo_server();
    let tunnel = server.open_tunnel("client-1", &format!("remote={}", echo.port()));
    let address = tunnel_address(&tunnel);
    for round in 0..3 {
        let mut held = Vec::new();
        for batch in 0..10 {
            let mut streams: Vec<TcpStream> = (0..100)
                .map(|_| TcpStream::connect(address).expect("connect"))
                .collect();
            for stream in &mut streams {
                stream.write_all(b"hello?").expect("write");
            }
            for (n, stream) in streams.iter_mut().enumerate() {
                stream
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .expect("timeout");
                let mut answer = [0u8; 6];
                stream.read_exact(&mut answer).unwrap_or_else(|err| {
                    panic!("round {round}, batch {batch}, connection {n}: no echo: {err}")
                });
                assert_eq!(&answer, b"hello?");
            }
            held.extend(streams);
        }
        drop(held);
    }
}

/// Opens a connection through the tunnel and checks an echo round trip on it; the stream
/// stays open for the caller.
fn held_echo(target: SocketAddr) -> Option<TcpStream> {
    held_echo_from(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), target)
}

/// [`held_echo`] from `source` (any 127.0.0.0/8 address on Linux).
fn held_echo_from(source: IpAddr, target: SocketAddr) -> Option<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    socket.bind(&SocketAddr::new(source, 0).into()).ok()?;
    socket.connect(&target.into()).ok()?;
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(b"held").ok()?;
    let mut answer = [0u8; 4];
    stream.read_exact(&mut answer).ok()?;
    (&answer == b"held").then_some(stream)
}

/// Waits until the API lists `count` open connections on the tunnel.
fn wait_active_connections(server: &Rportd, tunnel_id: &str, count: u64) {
    wait_for(
        "the open connections counted",
        Duration::from_secs(10),
        || {
            server
                .tunnel(tunnel_id)
                .filter(|t| t["active_connections"] == count)
        },
    );
}

#[test]
fn an_agent_holds_at_most_max_connections_per_agent_over_all_its_tunnels() {
    let dir = tempdir();
    let (server, _agent) = server_with_agent(dir.path(), "max_connections_per_agent = 3\n");
    let first = server.open_tunnel("client-1", &format!("remote={}", echo_server().port()));
    let second = server.open_tunnel("client-1", &format!("remote={}", echo_server().port()));
    let mut held: Vec<TcpStream> = (0..2)
        .map(|i| held_echo(tunnel_address(&first)).unwrap_or_else(|| panic!("first, {i}")))
        .collect();
    held.push(held_echo(tunnel_address(&second)).expect("the second tunnel's first"));
    assert!(
        held_echo(tunnel_address(&second)).is_none(),
        "a fourth on the agent is turned away"
    );
    let listed = wait_for("the refusal counted", Duration::from_secs(10), || {
        server
            .tunnel(&id(&second))
            .filter(|t| t["connections_refused"] == 1)
    });
    assert_eq!(listed["active_connections"], 1, "{listed}");
    server
        .stderr
        .wait_for("max_connections_per_agent = 3", Duration::from_secs(10));

    // A place freed on one tunnel is a place on another.
    drop(held.remove(0));
    wait_active_connections(&server, &id(&first), 1);
    wait_for("the stream released", Duration::from_secs(10), || {
        held_echo(tunnel_address(&second))
    });
}

/// The limit over every tunnel of the server, whichever agent they go to; by default it is
/// sized to the machine's memory, and the log says to what.
#[test]
fn the_server_holds_at_most_max_connections_total_over_all_agents() {
    let dir = tempdir();
    let (server, _agent) = server_with_agent(dir.path(), "max_connections_total = 3\n");
    let _other = Rport::attach(&server, "client-2", &dir.path().join("agent-2"));
    server.wait_connection_state("client-2", "connected", ATTACH);
    let first = server.open_tunnel("client-1", &format!("remote={}", echo_server().port()));
    let second = server.open_tunnel("client-2", &format!("remote={}", echo_server().port()));
    let mut held: Vec<TcpStream> = (0..2)
        .map(|i| held_echo(tunnel_address(&first)).unwrap_or_else(|| panic!("first, {i}")))
        .collect();
    held.push(held_echo(tunnel_address(&second)).expect("the other agent's first"));
    assert!(
        held_echo(tunnel_address(&second)).is_none(),
        "a fourth on the server is turned away"
    );
    let listed = wait_for("the refusal counted", Duration::from_secs(10), || {
        server
            .tunnel(&id(&second))
            .filter(|t| t["connections_refused"] == 1)
    });
    assert_eq!(listed["active_connections"], 1, "{listed}");
    assert_eq!(listed["connections"], 1, "{listed}");
    server
        .stderr
        .wait_for("max_connections_total = 3", Duration::from_secs(10));

    // A place freed on one agent's tunnel is a place on the other's.
    drop(held.remove(0));
    wait_active_connections(&server, &id(&first), 1);
    held.push(held_echo(tunnel_address(&second)).expect("room again"));

    let dir = tempdir();
    let sized = Rportd::start(dir.path());
    let said = sized
        .stderr
        .wait_for("sized to this machine's memory", Duration::from_secs(10));
    assert!(said.contains("max_connections_total"), "{said}");
}

#[test]
fn a_tunnel_holds_at_most_its_connection_limits_and_says_so() {
    let dir = tempdir();
    let (server, _agent) = server_with_agent(dir.path(), "max_connections_per_tunnel = 3\n");
    let echo = echo_server();
    let tunnel = server.open_tunnel("client-1", &format!("remote={}", echo.port()));
    let address = tunnel_address(&tunnel);
    let mut held: Vec<TcpStream> = (0..3)
        .map(|i| held_echo(address).unwrap_or_else(|| panic!("connection {i} carried")))
        .collect();
    assert!(held_echo(address).is_none(), "a fourth is turned away");
    let listed = wait_for("the refusal counted", Duration::from_secs(10), || {
        server
            .tunnel(&id(&tunnel))
            .filter(|t| t["connections_refused"] == 1)
    });
    assert_eq!(listed["active_connections"], 3, "{listed}");
    assert_eq!(listed["connections"], 3, "{listed}");
    server
        .stderr
        .wait_for("max_connections_per_tunnel", Duration::from_secs(10));

    // A place freed is a place to take.
    drop(held.pop());
    wait_active_connections(&server, &id(&tunnel), 2);
    held.push(held_echo(address).expect("carried once there is room"));

    // One source may hold only max_connections_per_source of them.
    let dir = tempdir();
    let (server, _agent) = server_with_agent(
        dir.path(),
        "max_connections_per_tunnel = 3\nmax_connections_per_source = 2\n",
    );
    let tunnel = server.open_tunnel("client-1", &format!("remote={}", echo.port()));
    let address = tunnel_address(&tunnel);
    let source = |last: u8| IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, last));
    let mut first: Vec<TcpStream> = (0..2)
        .map(|i| held_echo_from(source(2), address).unwrap_or_else(|| panic!("from .2, {i}")))
        .collect();
    assert!(
        held_echo_from(source(2), address).is_none(),
        "a third from .2"
    );
    server
        .stderr
        .wait_for("max_connections_per_source", Duration::from_secs(10));
    let other = held_echo_from(source(3), address).expect("another source gets in");
    assert!(
        held_echo_from(source(4), address).is_none(),
        "the tunnel is full: 3"
    );
    drop(first.pop());
    wait_active_connections(&server, &id(&tunnel), 2);
    let fourth = held_echo_from(source(4), address).expect("room again");
    let listed = server.tunnel(&id(&tunnel)).expect("listed");
    assert_eq!(listed["connections_refused"], 2, "{listed}");
    drop((first, other, fourth));

    // The default leaves far more room: 2048 per tunnel, none per source.
    let dir = tempdir();
    let (server, _agent) = server_with_agent(dir.path(), "");
    let tunnel = server.open_tunnel("client-1", &format!("remote={}", echo.port()));
    let address = tunnel_address(&tunnel);
    let many: Vec<TcpStream> = (0..50)
        .map(|i| held_echo(address).unwrap_or_else(|| panic!("connection {i} carried")))
        .collect();
    assert_eq!(many.len(), 50);
}

#[test]
fn a_stored_tunnel_opens_with_one_call_and_carries_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _agent) = server_with_agent(dir.path(), "");
    let echo = echo_server();
    let definition = json!({
        "name": "echo",
        "scheme": "ssh",
        "remote_ip": "127.0.0.1",
        "remote_port": echo.port(),
        "acl": "127.0.0.1",
        "further_options": {"idle_timeout_minutes": 7, "auto-close": "1h"}
    });
    let reply = server.call(
        "POST",
        "/api/v1/clients/client-1/stored-tunnels",
        &server.auth_header,
        &[],
        Some(&definition),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let stored_id = reply.body["data"]["id"].as_str().expect("id").to_owned();
    // Stored is not open.
    let (_, live) = server.request("GET", "/api/v1/tunnels");
    assert_eq!(live["data"].as_array().map(Vec::len), Some(0), "{live}");

    let (status, started) = server.request(
        "POST",
        &format!("/api/v1/clients/client-1/stored-tunnels/{stored_id}/start"),
    );
    assert_eq!(status, 200, "{started}");
    let tunnel = &started["data"];
    assert_eq!(
        (
            &tunnel["name"],
            &tunnel["scheme"],
            &tunnel["rport"],
            &tunnel["acl"],
            &tunnel["idle_timeout_minutes"]
        ),
        (
            &json!("echo"),
            &json!("ssh"),
            &json!(echo.port().to_string()),
            &json!("127.0.0.1"),
            &json!(7)
        ),
        "{tunnel}"
    );
    echo_round_trip(tunnel_address(tunnel), 256 * 1024, 17);
    // Starting again opens a second tunnel to the same target, as a second PUT would
    // (refused with RPort's code, since the ACL and target are the same).
    let (status, again) = server.request(
        "POST",
        &format!("/api/v1/clients/client-1/stored-tunnels/{stored_id}/start"),
    );
    assert_eq!(status, 400, "{again}");
    assert_eq!(
        again["errors"][0]["code"], "ERR_CODE_TUNNEL_TO_PORT_EXIST",
        "{again}"
    );
    let (status, _) = server.request(
        "DELETE",
        &format!("/api/v1/clients/client-1/tunnels/{}", id(tunnel)),
    );
    assert_eq!(status, 204);
}
