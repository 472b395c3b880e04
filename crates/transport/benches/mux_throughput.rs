//! Stream multiplexer throughput over a real loopback TCP connection, with and without
//! TLS, for one stream and for four at once. Compare "tls" with "tcp" to see what the
//! encryption costs, and either with a raw socket copy to see what the mux costs.
//! `cargo bench -p rport-transport`.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use divan::counter::BytesCount;
use rport_transport::mux::{self, MuxConfig, MuxHandle, Role};
use rport_transport::read_coalescing::ReadCoalescing;
use rport_transport::tls::ServerPin;
use rport_transport::tls::{self, ServerIdentity};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

fn main() {
    divan::main();
}

/// Bytes moved per iteration.
const TRANSFER: usize = 32 * 1024 * 1024;
const CHUNK: usize = 128 * 1024;

struct Session {
    runtime: Runtime,
    server: MuxHandle,
}

/// A server and an agent session on loopback; the agent discards what each stream sends.
fn session(encrypted: bool) -> Session {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let server = runtime.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let keep_alive = Duration::from_secs(60);
        let (server_socket, agent_socket) = tokio::join!(
            async { listener.accept().await.expect("accept").0 },
            async { TcpStream::connect(address).await.expect("connect") }
        );
        let _ = server_socket.set_nodelay(true);
        let _ = agent_socket.set_nodelay(true);
        let (server, mut agent_events) = if encrypted {
            let dir = tempfile::tempdir().expect("tempdir");
            let identity = ServerIdentity::load_or_create(dir.path()).expect("identity");
            let pin = ServerPin::Exact(identity.fingerprint());
            let acceptor = tokio_rustls::TlsAcceptor::from(identity.server_config().expect("cfg"));
            let (client_config, _) = tls::client_config(pin).expect("client config");
            let connector = tokio_rustls::TlsConnector::from(client_config);
            let (server_tls, agent_tls) = tokio::join!(
                acceptor.accept(ReadCoalescing::new(server_socket)),
                connector.connect(tls::server_name(), ReadCoalescing::new(agent_socket))
            );
            let mut server_tls = server_tls.expect("server tls");
            let mut agent_tls = agent_tls.expect("agent tls");
            server_tls
                .get_mut()
                .1
                .set_buffer_limit(Some(tls::SEND_BUFFER_LIMIT));
            agent_tls
                .get_mut()
                .1
                .set_buffer_limit(Some(tls::SEND_BUFFER_LIMIT));
            start_pair(server_tls, agent_tls, keep_alive)
        } else {
            start_pair(server_socket, agent_socket, keep_alive)
        };
        tokio::spawn(async move {
            while let Some(incoming) = agent_events.incoming.recv().await {
                tokio::spawn(async move {
                    let (mut reader, mut writer) = incoming.stream.split();
                    let mut sink = tokio::io::sink();
                    let _ = reader.copy_to(&mut sink).await;
                    let _ = writer.finish().await;
                });
            }
        });
        server
    });
    Session { runtime, server }
}

fn start_pair<S, A>(server_io: S, agent_io: A, keep_alive: Duration) -> (MuxHandle, mux::MuxEvents)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (server, _server_events, server_driver) = mux::start(
        server_io,
        BytesMut::new(),
        MuxConfig::new(Role::Server, keep_alive),
    );
    let (_agent, agent_events, agent_driver) = mux::start(
        agent_io,
        BytesMut::new(),
        MuxConfig::new(Role::Agent, keep_alive),
    );
    tokio::spawn(server_driver.run());
    tokio::spawn(agent_driver.run());
    (server, agent_events)
}

/// Sends TRANSFER bytes, split over `streams` streams, and waits until all are delivered.
async fn transfer(server: &MuxHandle, streams: usize) {
    let chunk = Bytes::from(vec![0x42u8; CHUNK]);
    let per_stream = TRANSFER / streams;
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let stream = server.open_stream(Bytes::new()).expect("open");
        let chunk = chunk.clone();
        tasks.push(tokio::spawn(async move {
            let (mut reader, mut writer) = stream.split();
            let mut sent = 0;
            while sent < per_stream {
                writer.send(chunk.clone()).await.expect("send");
                sent += chunk.len();
            }
            writer.finish().await.expect("finish");
            // The agent finishes after it has read everything: delivery is complete.
            while reader.recv().await.expect("recv").is_some() {}
        }));
    }
    for task in tasks {
        task.await.expect("stream task");
    }
}

fn bench_transfer(bencher: divan::Bencher, encrypted: bool, streams: usize) {
    let session = session(encrypted);
    bencher
        .counter(BytesCount::new(TRANSFER))
        .bench_local(|| session.runtime.block_on(transfer(&session.server, streams)));
}

#[divan::bench(args = [1, 4], sample_count = 10, sample_size = 1)]
fn tcp(bencher: divan::Bencher, streams: usize) {
    bench_transfer(bencher, false, streams);
}

#[divan::bench(args = [1, 4], sample_count = 10, sample_size = 1)]
fn tls(bencher: divan::Bencher, streams: usize) {
    bench_transfer(bencher, true, streams);
}

/// The ceiling: the same bytes through a plain socket, no mux. (Timed until the kernel
/// took the bytes, so it is off by a socket buffer, a few percent of TRANSFER.)
#[divan::bench(sample_count = 10, sample_size = 1)]
fn raw_socket(bencher: divan::Bencher) {
    let runtime = Runtime::new().expect("runtime");
    let (mut client, _sink) = runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let sink = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; CHUNK];
            while let Ok(1..) = socket.read(&mut buf).await {}
        });
        (TcpStream::connect(address).await.expect("connect"), sink)
    });
    let chunk = Arc::new(vec![0x42u8; CHUNK]);
    bencher.counter(BytesCount::new(TRANSFER)).bench_local(|| {
        runtime.block_on(async {
            let mut sent = 0;
            while sent < TRANSFER {
                client.write_all(&chunk).await.expect("write");
                sent += chunk.len();
            }
        })
    });
}
