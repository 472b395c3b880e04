//! End to end: an agent that holds a valid credential but runs hostile code, speaking the
//! protocol through the transport library instead of `rport`. Whatever it sends, the
//! server does only what the protocol allows: it never dials an address for the agent,
//! never registers a second client from one session, ignores what it does not expect,
//! and keeps serving everyone else.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use bytes::Bytes;
use rport_protocol::{ControlMessage, OpenRequest, RefuseCode, StreamProtocol, SystemInfo};
use rport_transport::handshake;
use rport_transport::mux::{self, MuxConfig, MuxHandle, Role};
use rport_transport::tls::{self, ServerPin};
use serde_json::Value;
use support::*;
use tokio::net::TcpStream;
use tokio::sync::mpsc::Receiver;

const ATTACH: Duration = Duration::from_secs(30);

fn facts(name: &str) -> SystemInfo {
    SystemInfo {
        name: name.to_owned(),
        hostname: "hostile".to_owned(),
        os_kernel: "linux".to_owned(),
        ..Default::default()
    }
}

/// A session as a hostile agent holds it: the raw multiplexer, and what the server says.
struct RawAgent {
    handle: MuxHandle,
    control: Receiver<Bytes>,
    _driver: tokio::task::JoinHandle<()>,
}

async fn connect(server: SocketAddr, fingerprint: &str, hello: ControlMessage) -> RawAgent {
    let pin = ServerPin::Exact(fingerprint.parse().expect("fingerprint"));
    let (config, _seen) = tls::client_config(pin).expect("TLS config");
    let socket = TcpStream::connect(server).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("rportd").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, socket)
        .await
        .expect("TLS");
    let (answer, leftover) = handshake::agent_hello(&mut tls, &hello)
        .await
        .expect("hello answered");
    assert!(
        matches!(answer, ControlMessage::Welcome { .. }),
        "{answer:?}"
    );
    let (handle, events, driver) = mux::start(
        tls,
        leftover,
        MuxConfig::new(Role::Agent, Duration::from_secs(30)),
    );
    let driver = tokio::spawn(async move {
        let _ = driver.run().await;
    });
    RawAgent {
        handle,
        control: events.control,
        _driver: driver,
    }
}

fn hello(client_id: &str, remotes: &[&str]) -> ControlMessage {
    let (auth_id, password) = AGENT_AUTH.split_once(':').expect("id:password");
    ControlMessage::Hello {
        client_id: client_id.to_owned(),
        auth_id: auth_id.to_owned(),
        password: rport_protocol::Password::new(password),
        info: facts("hostile"),
        keep_alive_secs: 30,
        remotes: remotes.iter().map(|r| (*r).to_owned()).collect(),
    }
}

fn client_ids(server: &Rportd) -> Vec<String> {
    let (status, body) = server.request("GET", "/api/v1/clients");
    assert_eq!(status, 200, "{body}");
    body["data"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["id"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn whatever_an_agent_says_the_server_does_only_what_the_protocol_allows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Rportd::start(dir.path());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // A listener on the server's machine the agent would love the server to dial.
    let bait = TcpListener::bind("127.0.0.1:0").expect("bait");
    bait.set_nonblocking(true).expect("nonblocking");
    let bait_address = bait.local_addr().expect("address");

    let mut agent = runtime.block_on(connect(
        server.agent_address,
        &server.fingerprint,
        hello("hostile-1", &[]),
    ));
    server.wait_connection_state("hostile-1", "connected", ATTACH);

    // Everything a server never expects from an agent, and some garbage.
    let huge = ControlMessage::InfoUpdate {
        info: SystemInfo {
            name: "x".repeat(200 * 1024),
            ..facts("huge")
        },
    };
    let unexpected: Vec<Bytes> = vec![
        Bytes::from_static(b"not json at all"),
        Bytes::from_static(b"{\"type\":\"make_coffee\",\"strength\":11}"),
        Bytes::from_static(b"{\"type\":\"info_update\",\"info\":{\"num_cpus\":\"many\"}}"),
        hello("someone-else", &["127.0.0.1:22"]).to_json().into(),
        ControlMessage::Welcome {
            server_version: "9.9".into(),
            keep_alive_secs: 1,
        }
        .to_json()
        .into(),
        ControlMessage::Refused {
            code: RefuseCode::AuthFailed,
            message: "you are refused".into(),
            retry_after_secs: None,
        }
        .to_json()
        .into(),
        ControlMessage::GoingAway {
            retry_after_secs: 1,
        }
        .to_json()
        .into(),
        ControlMessage::RemoteRefused {
            remote: "x".into(),
            reason: "y".into(),
        }
        .to_json()
        .into(),
        huge.to_json().into(),
    ];
    for payload in unexpected {
        agent.handle.send_control(payload).expect("sent");
    }
    // A first facts update is taken; one right after it is not (agents send one a
    // minute at most).
    for name in ["updated-1", "updated-2"] {
        let update = ControlMessage::InfoUpdate { info: facts(name) };
        agent
            .handle
            .send_control(update.to_json().into())
            .expect("sent");
    }
    let client = wait_for("the first facts update", ATTACH, || {
        server
            .client("hostile-1")
            .filter(|c| c["name"] == "updated-1")
    });
    assert_eq!(client["connection_state"], "connected", "{client}");

    // A stream the agent opens towards the server, naming a target: reset, and nothing
    // is dialed.
    let open = OpenRequest {
        tunnel_id: "made-up".into(),
        host: "127.0.0.1".into(),
        port: bait_address.port(),
        protocol: StreamProtocol::Tcp,
        check: None,
    };
    let read = runtime.block_on(async {
        let stream = agent
            .handle
            .open_stream(serde_json::to_vec(&open).expect("json").into())
            .expect("open");
        let (mut reader, mut writer) = stream.split();
        let _ = writer
            .send(Bytes::from_static(b"GET / HTTP/1.0\r\n\r\n"))
            .await;
        tokio::time::timeout(Duration::from_secs(10), reader.recv()).await
    });
    assert!(
        matches!(read, Ok(Err(_)) | Ok(Ok(None))),
        "the stream should be refused: {read:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        bait.accept().is_err(),
        "the server dialed an address an agent named"
    );

    // The session is still up, the hello sent mid-session registered nobody, and neither
    // the oversized nor the too-early facts were taken.
    let client = server.wait_connection_state("hostile-1", "connected", ATTACH);
    assert_eq!(client["name"], "updated-1", "{client}");
    assert_eq!(client_ids(&server), vec!["hostile-1".to_owned()]);
    assert!(
        runtime.block_on(agent.handle.probe(Duration::from_secs(5))),
        "the server still answers this agent"
    );
    // What the server said back: nothing but pings (no control message at all).
    assert!(agent.control.try_recv().is_err());

    // Tunnels an agent asks for in its hello: a port outside the server's range, a port
    // reserved for the system, a bind address that is not the server's, and nonsense.
    // Each is refused with a reason; nothing is bound.
    let mut second = runtime.block_on(connect(
        server.agent_address,
        &server.fingerprint,
        hello(
            "hostile-2",
            &[
                "127.0.0.1:80:127.0.0.1:22",
                "0.0.0.0:19999:127.0.0.1:22",
                "203.0.113.9:30000:127.0.0.1:22",
                "../../etc/passwd",
            ],
        ),
    ));
    let refusals: Vec<(String, String)> = runtime.block_on(async {
        let mut refusals = Vec::new();
        while refusals.len() < 4 {
            let payload = tokio::time::timeout(ATTACH, second.control.recv())
                .await
                .expect("a refusal in time")
                .expect("session open");
            if let Ok(ControlMessage::RemoteRefused { remote, reason }) =
                ControlMessage::from_json(&payload)
            {
                refusals.push((remote, reason));
            }
        }
        refusals
    });
    for (remote, reason) in &refusals {
        eprintln!("refused {remote}: {reason}");
        assert!(!reason.is_empty());
    }
    let client = server.client("hostile-2").expect("listed");
    assert_eq!(
        client["tunnels"],
        Value::Array(vec![]),
        "nothing opened: {client}"
    );

    // And a well-behaved agent attaches and tunnels as usual.
    let _good = Rport::attach(&server, "good-1", &dir.path().join("good"));
    server.wait_connection_state("good-1", "connected", ATTACH);
    assert_eq!(server.request("GET", "/api/v1/status").0, 200);
}
