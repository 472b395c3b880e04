//! End to end: an agent that holds a valid credential but runs hostile code, speaking the
//! protocol through the transport library instead of `rport`. Whatever it sends, the
//! server does only what the protocol allows: it never dials an address for the agent,
//! never registers a second client from one session, ignores what it does not expect,
//! and keeps serving everyone else.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use crate::support::*;
use bytes::{Bytes, BytesMut};
use rport_protocol::{ControlMessage, Frame, OpenRequest, RefuseCode, StreamProtocol, SystemInfo};
use rport_transport::handshake;
use rport_transport::mux::{self, MuxConfig, MuxHandle, Role};
use rport_transport::tls::{self, ServerIdentity, ServerPin};
use serde_json::Value;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::Receiver;

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

type AgentTls = tokio_rustls::client::TlsStream<TcpStream>;

/// A connection that said hello and was welcomed, and the bytes read past the welcome.
async fn welcomed(
    server: SocketAddr,
    fingerprint: &str,
    hello: ControlMessage,
) -> (AgentTls, BytesMut) {
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
    (tls, leftover)
}

async fn connect(server: SocketAddr, fingerprint: &str, hello: ControlMessage) -> RawAgent {
    let (tls, leftover) = welcomed(server, fingerprint, hello).await;
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

/// Far more than any bound: a peer that kept reading would queue answers to all of it.
const FLOOD_LIMIT: usize = 64 * 1024 * 1024;

/// What a flooding session may cost a process (VmRSS) beyond what it held before, in MiB.
/// A session queues at most `mux::PAUSE_READING_AT` (1 MiB) for a peer that does not
/// read; the rest is its read buffer and allocator slack (3 to 6 MiB measured in all).
const FLOOD_RSS_MIB: f64 = 8.0;

/// What a flood of OPENs may cost an agent on top: the streams its session accepts before
/// it refuses them, at most `mux::MAX_STREAMS` (16,384) alive at once with their tasks,
/// about 3.4 KiB each (measured: a peak of 53 to 56 MiB over where it started).
const OPEN_FLOOD_STREAMS_MIB: f64 = 64.0;

/// The n-th frame of a flood.
type FrameMaker = fn(u32) -> Frame;

/// Sends `frame(n)`, n = 0, 1, 2…, in batches of 64 KiB and never reads, until the other
/// side stops taking them (a batch not taken within 2 s) or [`FLOOD_LIMIT`] bytes were
/// taken. Returns the bytes taken.
async fn flood_unread<W: AsyncWrite + Unpin>(io: &mut W, frame: FrameMaker) -> usize {
    let mut batch = BytesMut::new();
    let (mut taken, mut n) = (0, 0u32);
    while taken < FLOOD_LIMIT {
        batch.clear();
        while batch.len() < 64 * 1024 {
            frame(n).encode(&mut batch);
            n += 1;
        }
        let write = async {
            io.write_all(&batch).await?;
            io.flush().await
        };
        match tokio::time::timeout(Duration::from_secs(2), write).await {
            Ok(written) => written.expect("the peer keeps the connection open"),
            Err(_) => break,
        }
        taken += batch.len();
    }
    taken
}

fn ping(n: u32) -> Frame {
    Frame::Ping {
        opaque: u64::from(n),
    }
}

/// Streams an agent opens (even ids): the server answers each with a RESET three times
/// the OPEN's size.
fn agent_open(n: u32) -> Frame {
    Frame::Open {
        stream: 2 * n + 2,
        payload: Bytes::new(),
    }
}

/// Streams a server opens (odd ids) with nonsense for a target: the agent answers each
/// with a RESET.
fn server_open(n: u32) -> Frame {
    Frame::Open {
        stream: 2 * n + 1,
        payload: Bytes::from_static(b"nonsense"),
    }
}

/// Checks and reports what one flood cost the process `pid`, which holds `sessions`
/// flooding sessions now.
fn assert_flood_held_back(what: &str, taken: usize, before: f64, pid: u32, sessions: usize) {
    let during = rss_mib(pid);
    eprintln!(
        "{what}: {:.1} MiB taken; RSS {before:.1} MiB before, {during:.1} MiB during",
        taken as f64 / (1024.0 * 1024.0)
    );
    assert!(
        taken < FLOOD_LIMIT,
        "{what}: all {taken} bytes were read from a peer that reads nothing"
    );
    assert!(
        during <= before + FLOOD_RSS_MIB * sessions as f64,
        "{what}: RSS grew from {before:.1} to {during:.1} MiB"
    );
}

/// An agent with a valid credential sends PINGs, then (on a second session) OPENs, and
/// never reads the PONGs and RESETs. The server stops reading it instead of queueing
/// answers without end, and keeps carrying another agent's tunnel.
#[test]
fn an_agent_that_floods_and_never_reads_costs_the_server_a_bounded_amount_of_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Rportd::start(dir.path());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let echo = echo_server();
    let _good = Rport::attach(&server, "good-1", &dir.path().join("good"));
    server.wait_connection_state("good-1", "connected", ATTACH);
    let tunnel = tunnel_address(&server.open_tunnel("good-1", &format!("remote={}", echo.port())));
    echo_round_trip(tunnel, 1024 * 1024, 1);
    let before = rss_mib(server.pid());

    let mut floods = Vec::new();
    let kinds: [(&str, FrameMaker); 2] = [("flood-ping", ping), ("flood-open", agent_open)];
    for (sessions, (id, frame)) in (1..).zip(kinds) {
        let (mut tls, _) = runtime.block_on(welcomed(
            server.agent_address,
            &server.fingerprint,
            hello(id, &[]),
        ));
        let taken = runtime.block_on(flood_unread(&mut tls, frame));
        assert_flood_held_back(id, taken, before, server.pid(), sessions);
        // The held-back session costs the other agent nothing.
        echo_round_trip(tunnel, 1024 * 1024, sessions as u64);
        floods.push(tls);
    }
    runtime.block_on(async move { drop(floods) });
    for (id, _) in kinds {
        server.wait_connection_state(id, "disconnected", ATTACH);
    }
    echo_round_trip(tunnel, 1024 * 1024, 9);
    // The allocator keeps some of the freed pages (measured: 9 to 11 MiB here), but not
    // what a flood that was read on would have cost (hundreds of MiB).
    let after = rss_mib(server.pid());
    eprintln!("RSS after the floods ended: {after:.1} MiB");
    assert!(
        after <= before + FLOOD_RSS_MIB * kinds.len() as f64,
        "RSS stayed at {after:.1} MiB (from {before:.1}) after the floods ended"
    );
}

/// The other way round: a server (with the pinned key, so the agent trusts it) that sends
/// PINGs, then OPENs, and never reads. The agent stops reading it; its memory stays put.
#[test]
fn a_server_that_floods_and_never_reads_costs_the_agent_a_bounded_amount_of_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let identity = ServerIdentity::load_or_create(dir.path()).expect("server identity");
    let acceptor = tokio_rustls::TlsAcceptor::from(identity.server_config().expect("TLS config"));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let fingerprint = identity.fingerprint().to_string();
    let data_dir = dir.path().join("agent");
    let agent = Rport::start(&[
        "--id",
        "flooded",
        "--fingerprint",
        &fingerprint,
        "--auth",
        AGENT_AUTH,
        "--data-dir",
        data_dir.to_str().expect("utf-8"),
        "--max-retry-interval",
        "1s",
        &address,
    ]);
    // Each session: the agent's hello, a welcome, and then whatever the server likes.
    let session = || {
        runtime.block_on(async {
            let accept = async {
                let (socket, _) = listener.accept().await.expect("accept");
                let mut tls = acceptor.accept(socket).await.expect("TLS");
                let (hello, _) = handshake::read_hello(&mut tls).await.expect("hello");
                assert!(matches!(hello, ControlMessage::Hello { .. }), "{hello:?}");
                let welcome = ControlMessage::Welcome {
                    server_version: "hostile".into(),
                    keep_alive_secs: 30,
                };
                handshake::send_control(&mut tls, &welcome)
                    .await
                    .expect("welcome");
                tls
            };
            tokio::time::timeout(ATTACH, accept)
                .await
                .expect("the agent connects")
        })
    };
    let settle = || std::thread::sleep(Duration::from_secs(1));

    let mut quiet = session();
    settle();
    let before = rss_mib(agent.pid());
    // The peak, not a sample: the agent gives freed memory back every 2 s, so a sample
    // shows whatever that timing left, and the highest point of a flood comes and goes.
    let kinds: [(&str, FrameMaker, f64); 2] = [
        ("ping", ping, FLOOD_RSS_MIB),
        ("open", server_open, FLOOD_RSS_MIB + OPEN_FLOOD_STREAMS_MIB),
    ];
    for (what, frame, bound) in kinds {
        let taken = runtime.block_on(flood_unread(&mut quiet, frame));
        let peak = peak_rss_mib(agent.pid());
        eprintln!(
            "{what}: {:.1} MiB taken; RSS {before:.1} MiB before, at most {peak:.1} MiB during",
            taken as f64 / (1024.0 * 1024.0)
        );
        assert!(
            taken < FLOOD_LIMIT,
            "{what}: all {taken} bytes were read from a peer that reads nothing"
        );
        assert!(
            peak <= before + bound,
            "{what}: RSS reached {peak:.1} MiB from {before:.1}"
        );
        // Hang up; the agent comes back for more.
        runtime.block_on(async move { drop(quiet) });
        quiet = session();
    }
    // Given back within a few of the agent's 2 s trims.
    let mut after = rss_mib(agent.pid());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while after > before + FLOOD_RSS_MIB && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        after = rss_mib(agent.pid());
    }
    eprintln!("RSS after the floods ended: {after:.1} MiB");
    assert!(
        after <= before + FLOOD_RSS_MIB,
        "RSS stayed at {after:.1} MiB (from {before:.1}) 10 s after the floods ended"
    );
    runtime.block_on(async move { drop(quiet) });
}
