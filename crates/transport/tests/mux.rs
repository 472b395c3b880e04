//! The multiplexer over real loopback TCP: integrity, concurrency, flow control isolation,
//! keepalive and malformed input.

use std::time::Duration;

use bytes::Bytes;
use rport_transport::mux::{self, MuxConfig, MuxStream, Role};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (client.expect("connect"), server.expect("accept").0)
}

/// A server-role session and an agent-role session connected to each other; the agent
/// runs `serve` on every stream the server opens.
async fn session_pair<F, Fut>(keep_alive: Duration, serve: F) -> rport_transport::mux::MuxHandle
where
    F: Fn(MuxStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (a, b) = tcp_pair().await;
    let (server, _server_events, server_driver) = mux::start(
        a,
        Default::default(),
        MuxConfig::new(Role::Server, keep_alive),
    );
    let (_agent, mut agent_events, agent_driver) = mux::start(
        b,
        Default::default(),
        MuxConfig::new(Role::Agent, keep_alive),
    );
    tokio::spawn(server_driver.run());
    tokio::spawn(agent_driver.run());
    tokio::spawn(async move {
        while let Some(incoming) = agent_events.incoming.recv().await {
            tokio::spawn(serve(incoming.stream));
        }
    });
    server
}

/// Sends everything the stream carries back on it.
async fn echo(stream: MuxStream) {
    let (mut reader, mut writer) = stream.split();
    while let Ok(Some(chunk)) = reader.recv().await {
        if writer.send(chunk).await.is_err() {
            return;
        }
    }
    let _ = writer.finish().await;
}

/// The agent echoes every stream back.
async fn echo_pair(keep_alive: Duration) -> rport_transport::mux::MuxHandle {
    session_pair(keep_alive, echo).await
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn round_trip(handle: &rport_transport::mux::MuxHandle, len: usize, seed: u8) {
    let stream = handle.open_stream(Bytes::from_static(b"{}")).expect("open");
    let (mut reader, mut writer) = stream.split();
    let data = pattern(len, seed);
    let expected = Sha256::digest(&data);
    let send = async move {
        writer.send(Bytes::from(data)).await.expect("send");
        writer.finish().await.expect("finish");
    };
    let receive = async move {
        let mut hasher = Sha256::new();
        let mut total = 0;
        while let Some(chunk) = reader.recv().await.expect("recv") {
            total += chunk.len();
            hasher.update(&chunk);
        }
        (total, hasher.finalize())
    };
    let ((), (total, digest)) = tokio::join!(send, receive);
    assert_eq!(total, len);
    assert_eq!(digest, expected);
}

#[tokio::test]
async fn several_mebibytes_echo_intact() {
    let handle = echo_pair(Duration::from_secs(10)).await;
    round_trip(&handle, 8 * 1024 * 1024 + 17, 1).await;
}

#[tokio::test]
async fn fifty_concurrent_streams_stay_separate() {
    let handle = echo_pair(Duration::from_secs(10)).await;
    let mut tasks = Vec::new();
    for i in 0..50u8 {
        let handle = handle.clone();
        tasks.push(tokio::spawn(async move {
            round_trip(&handle, 300_000 + usize::from(i) * 1000, i).await;
        }));
    }
    for task in tasks {
        task.await.expect("stream task");
    }
}

#[tokio::test]
async fn a_stalled_reader_does_not_stall_another_stream() {
    let handle = echo_pair(Duration::from_secs(10)).await;
    // Fill one stream's window and never read its echo.
    let stalled = handle.open_stream(Bytes::new()).expect("open");
    let (_stalled_reader, mut stalled_writer) = stalled.split();
    let filler = tokio::spawn(async move {
        let _ = stalled_writer
            .send(Bytes::from(vec![0u8; 64 * 1024 * 1024]))
            .await;
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::time::timeout(
        Duration::from_secs(20),
        round_trip(&handle, 4 * 1024 * 1024, 9),
    )
    .await
    .expect("the other stream kept moving");
    assert!(
        !filler.is_finished(),
        "the stalled stream must be held back by its window"
    );
    filler.abort();
}

#[tokio::test]
async fn silent_peer_is_declared_dead_within_keepalive() {
    let (a, mut b) = tcp_pair().await;
    let (handle, _events, driver) = mux::start(
        a,
        Default::default(),
        MuxConfig::new(Role::Server, Duration::from_millis(600)),
    );
    // The peer reads (so writes never block) but never answers.
    tokio::spawn(async move {
        let mut sink = vec![0u8; 4096];
        while b.read(&mut sink).await.map(|n| n > 0).unwrap_or(false) {}
    });
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(5), driver.run())
        .await
        .expect("driver ends by itself");
    assert!(
        matches!(result, Err(mux::MuxError::KeepaliveTimeout(_))),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(handle.is_closed());
}

#[tokio::test]
async fn malformed_frame_closes_only_that_connection() {
    let (a, mut b) = tcp_pair().await;
    let (_handle, _events, driver) = mux::start(
        a,
        Default::default(),
        MuxConfig::new(Role::Server, Duration::from_secs(10)),
    );
    b.write_all(&[200, 0, 0, 0, 1, 0, 0, 0, 0])
        .await
        .expect("write");
    let result = tokio::time::timeout(Duration::from_secs(5), driver.run())
        .await
        .expect("driver ends");
    assert!(
        matches!(result, Err(mux::MuxError::Malformed(_))),
        "{result:?}"
    );
    // Another session is unaffected.
    let healthy = echo_pair(Duration::from_secs(10)).await;
    round_trip(&healthy, 1000, 3).await;
}

#[tokio::test]
async fn pipe_propagates_half_close() {
    let handle = echo_pair(Duration::from_secs(10)).await;
    let (mut client, server_side) = tcp_pair().await;
    let stream = handle.open_stream(Bytes::new()).expect("open");
    let piping = tokio::spawn(mux::pipe(stream, server_side));
    client
        .write_all(b"hello over the tunnel")
        .await
        .expect("write");
    client.shutdown().await.expect("half-close");
    let mut echoed = Vec::new();
    client.read_to_end(&mut echoed).await.expect("read to end");
    assert_eq!(echoed, b"hello over the tunnel");
    let (up, down) = piping.await.expect("join").expect("pipe");
    assert_eq!((up, down), (21, 21));
}

/// The agent reads every stream to the end, discarding it, then finishes its side:
/// traffic flows one way only.
async fn sink_pair(keep_alive: Duration) -> rport_transport::mux::MuxHandle {
    session_pair(keep_alive, |stream| async move {
        let (mut reader, mut writer) = stream.split();
        let _ = reader.copy_to(&mut tokio::io::sink()).await;
        let _ = writer.finish().await;
    })
    .await
}

/// Many streams writing small chunks one way fill the session's data queue while its write
/// buffer is at the high-water mark. A driver that emptied the buffer without gathering
/// again once stalled here for good: writers blocked on a full queue wake nobody, and with
/// nothing coming back nothing else woke the driver either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_writes_on_many_streams_never_stall() {
    // A long keepalive: its pings must not be what wakes a stalled driver.
    let handle = sink_pair(Duration::from_secs(600)).await;
    let mut tasks = Vec::new();
    for seed in 0..8u8 {
        let handle = handle.clone();
        tasks.push(tokio::spawn(async move {
            let stream = handle.open_stream(Bytes::from_static(b"{}")).expect("open");
            let (mut reader, mut writer) = stream.split();
            let chunk = Bytes::from(pattern(4096, seed));
            for _ in 0..4096 {
                writer.send(chunk.clone()).await.expect("send");
            }
            writer.finish().await.expect("finish");
            // The agent finishes after reading everything.
            assert_eq!(reader.recv().await.expect("recv"), None);
        }));
    }
    let all = async {
        for task in tasks {
            task.await.expect("stream task");
        }
    };
    // A liveness bound, not a speed check: this takes well under a second when it works.
    tokio::time::timeout(Duration::from_secs(30), all)
        .await
        .expect("8 x 16 MiB in small chunks moved without stalling");
}

/// Forwards `from` to `to`, holding every chunk for `delay`: half of a link with a long
/// round trip. Chunks wait side by side, so the delay does not limit throughput.
fn delay_one_way(
    from: tokio::net::tcp::OwnedReadHalf,
    to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (queue, mut due) =
        tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    tokio::spawn(async move {
        let mut from = from;
        let mut buf = vec![0u8; 256 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buf).await {
            if queue
                .send((tokio::time::Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
            {
                return;
            }
        }
    });
    tokio::spawn(async move {
        let mut to = to;
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
}

/// A TCP pair whose bytes take `delay` each way.
async fn delayed_tcp_pair(delay: Duration) -> (TcpStream, TcpStream) {
    let (near, relay_in) = tcp_pair().await;
    let (relay_out, far) = tcp_pair().await;
    let (in_read, in_write) = relay_in.into_split();
    let (out_read, out_write) = relay_out.into_split();
    delay_one_way(in_read, out_write, delay);
    delay_one_way(out_read, in_write, delay);
    (near, far)
}

/// Sends 24 MiB on each of two streams over a 10 ms round trip to a receiver whose
/// session may grow its windows by `growth` in total; returns the windows the two
/// streams ended with.
async fn windows_after_fast_transfer(growth: u64) -> Vec<u32> {
    let (a, b) = delayed_tcp_pair(Duration::from_millis(5)).await;
    let keep_alive = Duration::from_secs(10);
    let (sender, _sender_events, sender_driver) = mux::start(
        a,
        Default::default(),
        MuxConfig::new(Role::Server, keep_alive),
    );
    let mut receiver_config = MuxConfig::new(Role::Agent, keep_alive);
    receiver_config.session_window_growth = growth;
    let (_receiver, mut receiver_events, receiver_driver) =
        mux::start(b, Default::default(), receiver_config);
    tokio::spawn(sender_driver.run());
    tokio::spawn(receiver_driver.run());
    // Let a ping measure the round trip before the data starts.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut senders = Vec::new();
    for _ in 0..2 {
        let (reader, mut writer) = sender.open_stream(Bytes::new()).expect("open").split();
        senders.push(tokio::spawn(async move {
            let mut reader = reader;
            for _ in 0..24 {
                writer
                    .send(Bytes::from(vec![7u8; 1024 * 1024]))
                    .await
                    .expect("send");
            }
            writer.finish().await.expect("finish");
            // Ending before the receiver has finished too would reset the stream.
            assert_eq!(reader.recv().await.expect("recv"), None);
        }));
    }
    // Both streams are read at the same time and kept until both are read, so their
    // windows draw on the session's budget together.
    let mut receivers = Vec::new();
    for _ in 0..2 {
        let incoming = receiver_events
            .incoming
            .recv()
            .await
            .expect("incoming stream");
        receivers.push(tokio::spawn(async move {
            let (mut reader, writer) = incoming.stream.split();
            let mut total = 0;
            while let Some(chunk) = reader.recv().await.expect("recv") {
                total += chunk.len();
            }
            assert_eq!(total, 24 * 1024 * 1024);
            (reader, writer)
        }));
    }
    let mut windows = Vec::new();
    let mut streams = Vec::new();
    for task in receivers {
        let (reader, writer) = task.await.expect("receiver");
        windows.push(reader.window());
        streams.push(writer);
    }
    for writer in &mut streams {
        writer.finish().await.expect("finish");
    }
    for task in senders {
        task.await.expect("sender");
    }
    windows
}

/// Windows grow on a long round trip, but all streams of a session together grow by
/// no more than the session's budget: many fast readers that stall at once cannot make
/// a session buffer more than that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_growth_is_bounded_per_session() {
    let generous = tokio::time::timeout(
        Duration::from_secs(60),
        windows_after_fast_transfer(1 << 30),
    )
    .await
    .expect("transfer finished");
    assert!(
        generous.iter().any(|&window| window > 2 * 1024 * 1024),
        "windows should grow on a 10 ms round trip: {generous:?}"
    );
    let budget = 1024 * 1024;
    let bounded =
        tokio::time::timeout(Duration::from_secs(60), windows_after_fast_transfer(budget))
            .await
            .expect("transfer finished");
    let starting: u64 = 2 * 1024 * 1024;
    let total: u64 = bounded.iter().map(|&window| u64::from(window)).sum();
    assert!(
        total <= starting + budget,
        "two streams grew past the session budget: {bounded:?}"
    );
}

/// A stream's first DATA can reach the session's queue while its OPEN is still in the
/// command queue the driver looked at a moment earlier. The driver once dropped such data
/// as belonging to no stream: the request of a fresh connection vanished and the
/// connection hung. Many streams opened and written at once from several threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_right_after_open_is_never_lost() {
    let handle = echo_pair(Duration::from_secs(60)).await;
    // Bulk traffic keeps the driver busy in its data queue while streams open.
    let bulk = {
        let handle = handle.clone();
        tokio::spawn(async move { round_trip(&handle, 32 * 1024 * 1024, 1).await })
    };
    let mut tasks = Vec::new();
    for i in 0..2000u32 {
        let handle = handle.clone();
        tasks.push(tokio::spawn(async move {
            round_trip(&handle, 16 + (i as usize % 100), (i % 251) as u8).await;
        }));
    }
    let all = async {
        for task in tasks {
            task.await.expect("stream task");
        }
    };
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("every stream's data arrived");
    bulk.await.expect("bulk stream");
}

/// The protocol lets only the server open streams: an agent that opens one anyway (to
/// make the server dial somewhere) gets it reset, and the session carries on.
#[tokio::test]
async fn a_stream_an_agent_opens_is_refused_by_the_server() {
    let (a, b) = tcp_pair().await;
    let keep_alive = Duration::from_secs(10);
    let (server, mut server_events, server_driver) = mux::start(
        a,
        Default::default(),
        MuxConfig::new(Role::Server, keep_alive),
    );
    let (agent, mut agent_events, agent_driver) = mux::start(
        b,
        Default::default(),
        MuxConfig::new(Role::Agent, keep_alive),
    );
    tokio::spawn(server_driver.run());
    tokio::spawn(agent_driver.run());
    tokio::spawn(async move {
        while let Some(incoming) = agent_events.incoming.recv().await {
            let (mut reader, mut writer) = incoming.stream.split();
            while let Ok(Some(chunk)) = reader.recv().await {
                let _ = writer.send(chunk).await;
            }
            let _ = writer.finish().await;
        }
    });

    let rogue = agent
        .open_stream(Bytes::from_static(
            br#"{"tunnel_id":"x","host":"169.254.169.254","port":80}"#,
        ))
        .expect("the agent's side lets it try");
    let (mut reader, _writer) = rogue.split();
    let answer = tokio::time::timeout(Duration::from_secs(5), reader.recv())
        .await
        .expect("answered at once");
    match answer {
        Err(rport_transport::mux::StreamError::Reset(reason)) => {
            assert!(reason.contains("agents may not open streams"), "{reason}");
        }
        other => panic!("expected a reset, got {other:?}"),
    }
    assert!(
        server_events.incoming.try_recv().is_err(),
        "nothing reached the server's handlers"
    );
    // The session is still good for what the protocol allows.
    assert!(!server.is_closed() && !agent.is_closed());
    round_trip(&server, 64 * 1024, 3).await;
}

#[tokio::test]
async fn control_messages_are_bounded_in_size_and_in_number() {
    let (a, mut b) = tcp_pair().await;
    let config = MuxConfig {
        max_control_len: 1024,
        ..MuxConfig::new(Role::Server, Duration::from_secs(10))
    };
    let (_handle, mut events, driver) = mux::start(a, Default::default(), config);
    let driver = tokio::spawn(driver.run());
    let control = |payload: Vec<u8>| {
        let mut out = bytes::BytesMut::new();
        rport_protocol::Frame::Control {
            payload: payload.into(),
        }
        .encode(&mut out);
        out
    };
    // One over the size limit is dropped unread; the next one arrives.
    b.write_all(&control(vec![b'x'; 1025]))
        .await
        .expect("write");
    b.write_all(&control(b"small".to_vec()))
        .await
        .expect("write");
    let first = tokio::time::timeout(Duration::from_secs(5), events.control.recv())
        .await
        .expect("in time")
        .expect("a message");
    assert_eq!(&first[..], b"small");
    // A peer that sends more than the queue holds, with nobody handling them, breaks the
    // protocol: its session ends, with a reason.
    let mut flood = bytes::BytesMut::new();
    for _ in 0..=mux::CONTROL_QUEUE {
        flood.extend_from_slice(&control(b"{}".to_vec()));
    }
    let _ = b.write_all(&flood).await;
    let result = tokio::time::timeout(Duration::from_secs(5), driver)
        .await
        .expect("driver ends")
        .expect("join");
    assert!(
        matches!(&result, Err(mux::MuxError::Protocol(reason)) if reason.contains("control messages")),
        "{result:?}"
    );
}

/// What a peer that floods a session and reads nothing saw.
struct Flood {
    /// Bytes the session took before it stopped reading; `None` if it never did.
    taken: Option<usize>,
    /// The most the session held queued for the peer meanwhile.
    most_queued: usize,
    session: rport_transport::mux::MuxHandle,
    peer: TcpStream,
    /// The part of the last batch the session did not take: the rest of a frame, maybe.
    unsent: Bytes,
}

/// A peer that sends `frame(n)` for n = 0, 1, 2… and never reads, against a session of
/// `config`; the session's side drops every stream the peer opens, as an agent does with
/// one it cannot serve.
async fn flood_without_reading(
    config: MuxConfig,
    frame: impl Fn(u32) -> rport_protocol::Frame,
) -> Flood {
    // Far more than any bound: a session that kept reading would queue answers to it all.
    const LIMIT: usize = 64 * 1024 * 1024;
    let (a, mut peer) = tcp_pair().await;
    let (session, mut events, driver) = mux::start(a, Default::default(), config);
    tokio::spawn(driver.run());
    tokio::spawn(async move {
        while let Some(incoming) = events.incoming.recv().await {
            drop(incoming);
        }
    });
    let mut batch = bytes::BytesMut::new();
    let (mut taken, mut most_queued, mut n) = (0, 0, 0u32);
    while taken < LIMIT {
        batch.clear();
        while batch.len() < 64 * 1024 {
            frame(n).encode(&mut batch);
            n += 1;
        }
        let mut unsent = &batch[..];
        while !unsent.is_empty() {
            most_queued = most_queued.max(session.queued_bytes());
            // Nothing taken for a second: the session has stopped reading.
            let Ok(written) =
                tokio::time::timeout(Duration::from_secs(1), peer.write(unsent)).await
            else {
                return Flood {
                    taken: Some(taken),
                    most_queued: most_queued.max(session.queued_bytes()),
                    unsent: Bytes::copy_from_slice(unsent),
                    session,
                    peer,
                };
            };
            let written = written.expect("the session keeps the connection open");
            unsent = &unsent[written..];
            taken += written;
        }
    }
    Flood {
        taken: None,
        most_queued,
        session,
        peer,
        unsent: Bytes::new(),
    }
}

fn ping(n: u32) -> rport_protocol::Frame {
    rport_protocol::Frame::Ping {
        opaque: u64::from(n),
    }
}

/// The most a session may queue while its peer floods without reading: the pause point,
/// plus the answer to one frame, plus a RESET for each stream the session had accepted
/// (and its handler dropped) when it paused.
fn flood_bound(max_streams: usize) -> usize {
    mux::PAUSE_READING_AT + 1024 + max_streams * 64
}

async fn assert_flood_is_bounded(role: Role, frame: impl Fn(u32) -> rport_protocol::Frame) {
    let config = MuxConfig {
        max_streams: 256,
        ..MuxConfig::new(role, Duration::from_secs(60))
    };
    let flood = flood_without_reading(config, frame).await;
    eprintln!(
        "{role:?}: took {:?} bytes, queued at most {}",
        flood.taken, flood.most_queued
    );
    assert!(
        flood.taken.is_some(),
        "the session kept reading from a peer that reads nothing"
    );
    assert!(
        flood.most_queued <= flood_bound(256),
        "{} bytes queued for a peer that reads nothing",
        flood.most_queued
    );
    // Backpressure, not a fault: the session waits for the peer to read.
    assert!(!flood.session.is_closed());
}

#[tokio::test]
async fn a_server_session_stops_reading_a_peer_that_floods_pings_and_reads_nothing() {
    assert_flood_is_bounded(Role::Server, ping).await;
}

#[tokio::test]
async fn a_server_session_stops_reading_a_peer_that_floods_opens_and_reads_nothing() {
    // Each is answered with a RESET three times its size.
    assert_flood_is_bounded(Role::Server, |n| rport_protocol::Frame::Open {
        stream: 2 * n + 2,
        payload: Bytes::new(),
    })
    .await;
}

#[tokio::test]
async fn an_agent_session_stops_reading_a_peer_that_floods_pings_and_reads_nothing() {
    assert_flood_is_bounded(Role::Agent, ping).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_session_stops_reading_a_peer_that_floods_opens_and_reads_nothing() {
    assert_flood_is_bounded(Role::Agent, |n| rport_protocol::Frame::Open {
        stream: 2 * n + 1,
        payload: Bytes::from_static(b"not an open request"),
    })
    .await;
}

/// Once the peer reads again, the session reads on: the flood was held back, not refused.
#[tokio::test]
async fn a_session_paused_by_a_flood_carries_on_once_the_peer_reads() {
    let config = MuxConfig::new(Role::Server, Duration::from_secs(60));
    let flood = flood_without_reading(config, ping).await;
    assert!(flood.taken.is_some(), "the session kept reading");
    // The rest of the last frame goes out once the session reads again, which it does
    // once the peer reads. All the session sends here is PONGs and PINGs, which the
    // agent below takes as they come.
    let (mut from_session, mut to_session) = flood.peer.into_split();
    let mut already_read = bytes::BytesMut::new();
    let finish_frame = async {
        to_session.write_all(&flood.unsent).await.expect("write");
    };
    let read = async {
        while from_session
            .read_buf(&mut already_read)
            .await
            .expect("read")
            > 0
        {}
    };
    tokio::time::timeout(Duration::from_secs(30), async {
        tokio::select! {
            () = finish_frame => {}
            () = read => {}
        }
    })
    .await
    .expect("the session reads on once the peer does");
    let peer = from_session.reunite(to_session).expect("one socket");
    let server = flood.session;
    // The peer becomes a real agent: it reads the PONGs (and ignores them) and echoes.
    let (_agent, mut agent_events, agent_driver) = mux::start(
        peer,
        already_read,
        MuxConfig::new(Role::Agent, Duration::from_secs(60)),
    );
    tokio::spawn(agent_driver.run());
    tokio::spawn(async move {
        while let Some(incoming) = agent_events.incoming.recv().await {
            tokio::spawn(echo(incoming.stream));
        }
    });
    tokio::time::timeout(Duration::from_secs(30), round_trip(&server, 256 * 1024, 9))
        .await
        .expect("the session carries data again");
}

/// A peer that floods and never reads cannot keep its session alive by sending: once the
/// session stops reading it, the peer has taken nothing for a keepalive and is dropped.
#[tokio::test]
async fn a_flooding_peer_that_never_reads_is_dropped_after_the_keepalive() {
    let config = MuxConfig::new(Role::Server, Duration::from_secs(2));
    let flood = flood_without_reading(config, ping).await;
    assert!(flood.taken.is_some(), "the session kept reading");
    // The peer goes on writing (it is blocked), so only the keepalive can end this.
    tokio::time::timeout(Duration::from_secs(10), flood.session.closed())
        .await
        .expect("the session ends within the keepalive");
}

#[tokio::test]
async fn the_time_of_the_peers_last_keepalive_is_kept() {
    let before = std::time::SystemTime::now();
    let handle = echo_pair(Duration::from_millis(600)).await;
    // Each side pings at once and every keep_alive / 3; the answer is the heartbeat.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let first = loop {
        if let Some(at) = handle.last_heartbeat() {
            break at;
        }
        assert!(tokio::time::Instant::now() < deadline, "no heartbeat");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(first >= before - Duration::from_secs(1));
    loop {
        if handle.last_heartbeat().is_some_and(|at| at > first) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the heartbeat did not move"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
