//! End to end: faults a real deployment meets, with the numbers docs/reliability.md
//! records (printed as `fault: ...` lines; run with `--nocapture` to see them): a thousand
//! concurrent connections with checksums and nothing leaked afterwards, a stalled reader
//! beside a busy tunnel, two thousand stalled readers pinning bounded memory, rportd killed mid-transfer with its database and audit log intact.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

/// The server's live tasks, from the status a server admin sees.
fn server_tasks(server: &Rportd) -> u64 {
    let (status, body) = server.request("GET", "/api/v1/status");
    assert_eq!(status, 200, "{body}");
    body["data"]["runtime"]["tasks"].as_u64().expect("tasks")
}

/// The agent's live tasks: SIGUSR2 makes it log them.
fn agent_tasks(agent: &Rport) -> u64 {
    let reports = || -> Vec<String> {
        agent
            .stderr
            .all()
            .into_iter()
            .filter(|line| line.contains("usage: "))
            .collect()
    };
    let before = reports().len();
    let sent = std::process::Command::new("kill")
        .args(["-USR2", &agent.pid().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let line = wait_for("the agent's usage report", ATTACH, || {
        reports().get(before).cloned()
    });
    line.split("usage: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no task count in {line:?}"))
}

fn threads(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn server_with_agent(dir: &std::path::Path) -> (Rportd, Rport) {
    let server = Rportd::start(dir);
    let agent = Rport::attach(&server, "c1", &dir.join("agent"));
    server.wait_connection_state("c1", "connected", ATTACH);
    (server, agent)
}

#[test]
fn a_thousand_concurrent_connections_lose_nothing_and_leak_nothing() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, agent) = server_with_agent(dir.path());
    let echo = echo_server();
    let tunnel = server.open_tunnel("c1", &format!("remote={}", echo.port()));
    let address = tunnel_address(&tunnel);
    let id = tunnel["id"].as_str().expect("id").to_owned();
    // Warm up (first connection sets up lazily created state), then take the baseline.
    echo_round_trip(address, 1024, 0);
    thread::sleep(Duration::from_millis(500));
    let (server_fds, agent_fds) = (open_fds(server.pid()), open_fds(agent.pid()));
    let (server_threads, agent_threads) = (threads(server.pid()), threads(agent.pid()));
    let (server_baseline, agent_baseline) = (server_tasks(&server), agent_tasks(&agent));

    const CONNECTIONS: usize = 1000;
    const BYTES: usize = 256 * 1024;
    let started = Instant::now();
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|n| {
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || echo_round_trip(address, BYTES, n as u64 + 1))
                .expect("spawn")
        })
        .collect();
    let failed = workers
        .into_iter()
        .map(|worker| worker.join())
        .filter(Result::is_err)
        .count();
    let took = started.elapsed();
    assert_eq!(failed, 0, "connections whose echo was lost or corrupted");
    let stats = server.tunnel(&id).expect("tunnel");
    eprintln!(
        "fault: {CONNECTIONS} concurrent connections x {BYTES} bytes each way: 0 lost, 0 corrupted, {took:?}; tunnel counted {} connections",
        stats["connections"]
    );

    // Afterwards every connection's descriptors and tasks are gone again.
    let settled = wait_for("descriptors back to the baseline", ATTACH, || {
        let now = (open_fds(server.pid()), open_fds(agent.pid()));
        let active = server.tunnel(&id)?["active_connections"].as_u64()?;
        (now.0 <= server_fds + 2 && now.1 <= agent_fds + 2 && active == 0).then_some(now)
    });
    // Threads too, once the runtime's blocking helpers (store writes, facts) have been idle
    // for their 10 s keep-alive and ended.
    wait_for("threads back to the baseline", ATTACH, || {
        (threads(server.pid()) <= server_threads && threads(agent.pid()) <= agent_threads)
            .then_some(())
    });
    // Tasks too; the server's may differ by the API's own keep-alive connections.
    let tasks = wait_for("tasks back to the baseline", ATTACH, || {
        let now = (server_tasks(&server), agent_tasks(&agent));
        (now.0 <= server_baseline + 2 && now.1 <= agent_baseline).then_some(now)
    });
    eprintln!(
        "fault: descriptors before/after: rportd {server_fds}/{}, rport {agent_fds}/{}; tasks before/after: rportd {server_baseline}/{}, rport {agent_baseline}/{}; threads unchanged",
        settled.0, settled.1, tasks.0, tasks.1
    );
}

/// A target that accepts connections and never reads from them.
fn never_reading_target() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().map_while(Result::ok) {
            held.push(stream); // kept open, never read
        }
    });
    address
}

#[test]
fn a_stalled_reader_neither_slows_another_tunnel_nor_grows_memory() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, agent) = server_with_agent(dir.path());
    let stalled = server.open_tunnel("c1", &format!("remote={}", never_reading_target().port()));
    let echo = echo_server();
    let busy = server.open_tunnel("c1", &format!("remote={}", echo.port()));

    // Pushes into the stalled tunnel until nothing more is taken (its windows and socket
    // buffers are full), for at most 20 s.
    let pushed = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&pushed);
    let stalled_address = tunnel_address(&stalled);
    let writer = thread::spawn(move || {
        let mut stream = TcpStream::connect(stalled_address).expect("connect stalled");
        stream
            .set_write_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let chunk = vec![7u8; 64 * 1024];
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            match stream.write(&chunk) {
                Ok(n) => {
                    counter.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(_) => break, // the write timed out: everything is full
            }
        }
        stream
    });
    let stalled_stream = writer.join().expect("writer");
    let stuck = pushed.load(Ordering::Relaxed);

    // Meanwhile the other tunnel of the same agent moves 64 MiB intact.
    let started = Instant::now();
    echo_round_trip(tunnel_address(&busy), 64 * 1024 * 1024, 9);
    let took = started.elapsed();
    let (server_rss, agent_rss) = (rss_mib(server.pid()), rss_mib(agent.pid()));
    eprintln!(
        "fault: stalled reader holds {:.1} MiB in flight; the other tunnel moved 64 MiB each way in {took:?}; RSS rportd {server_rss:.1} MiB, rport {agent_rss:.1} MiB",
        stuck as f64 / (1024.0 * 1024.0)
    );
    // Bounded: a stalled stream holds at most its window (64 MiB at most, per the
    // protocol), not everything the client sends.
    assert!(
        stuck < 160 * 1024 * 1024,
        "{stuck} bytes taken for a reader that never reads"
    );
    assert!(
        server_rss < 256.0 && agent_rss < 256.0,
        "{server_rss} / {agent_rss} MiB"
    );
    drop(stalled_stream);
}

/// A device-side server: writes `len` bytes to every connection it accepts and never reads.
/// Its sockets have a small send buffer, so what the tunnel does not take waits in this
/// process rather than in the kernel, and the kernel's TCP memory shows the tunnel's part.
struct SendingTarget {
    address: SocketAddr,
    written: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl SendingTarget {
    fn start(len: usize, deadline: Instant) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let address = listener.local_addr().expect("address");
        let written = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (counter, stopped) = (Arc::clone(&written), Arc::clone(&stop));
        thread::spawn(move || {
            let chunk = vec![5u8; 64 * 1024];
            let mut connections: Vec<(TcpStream, usize)> = Vec::new();
            while !stopped.load(Ordering::Relaxed) && Instant::now() < deadline {
                let mut progressed = false;
                while let Ok((stream, _)) = listener.accept() {
                    let _ = socket2::SockRef::from(&stream).set_send_buffer_size(16 * 1024);
                    let _ = stream.set_nonblocking(true);
                    connections.push((stream, len));
                    progressed = true;
                }
                for (stream, left) in connections.iter_mut().filter(|(_, left)| *left > 0) {
                    match stream.write(&chunk[..chunk.len().min(*left)]) {
                        Ok(n) => {
                            *left -= n;
                            counter.fetch_add(n as u64, Ordering::Relaxed);
                            progressed = true;
                        }
                        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => *left = 0,
                    }
                }
                if !progressed {
                    thread::sleep(Duration::from_millis(5));
                }
            }
        });
        Self {
            address,
            written,
            stop,
        }
    }
}

impl Drop for SendingTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The kernel's TCP memory, all sockets of the machine: `/proc/net/sockstat`'s pages.
fn kernel_tcp_mib() -> f64 {
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    let pages = sockstat
        .lines()
        .find(|line| line.starts_with("TCP:"))
        .and_then(|line| line.split_whitespace().skip_while(|w| *w != "mem").nth(1))
        .and_then(|pages| pages.parse::<f64>().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}

/// One TCP socket of this machine, from the kernel's socket tables.
struct TcpSocket {
    local_port: u16,
    established: bool,
    /// Bytes queued to send (unsent or unacknowledged).
    send_queue: u64,
    /// Bytes received and not yet read.
    receive_queue: u64,
    inode: String,
}

/// Every TCP socket of this machine (IPv4 and IPv6), from `/proc/net/tcp{,6}`.
fn tcp_sockets() -> Vec<TcpSocket> {
    let hex = |text: &str| u64::from_str_radix(text, 16).ok();
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .flat_map(|table| {
            let table = std::fs::read_to_string(table).unwrap_or_default();
            let rows: Vec<TcpSocket> = table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let (send, receive) = fields.get(4)?.split_once(':')?;
                    Some(TcpSocket {
                        local_port: u16::try_from(hex(fields.get(1)?.rsplit(':').next()?)?).ok()?,
                        established: *fields.get(3)? == "01",
                        send_queue: hex(send)?,
                        receive_queue: hex(receive)?,
                        inode: (*fields.get(9)?).to_owned(),
                    })
                })
                .collect();
            rows
        })
        .collect()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Bytes queued in the TCP sockets a process holds (to send, and received but not read),
/// found by the socket inodes of its open files.
fn socket_queues_mib(pid: u32) -> f64 {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let link = std::fs::read_link(entry.path()).ok()?;
            let link = link.to_str()?;
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    mib(tcp_sockets()
        .iter()
        .filter(|socket| inodes.contains(&socket.inode))
        .map(|socket| socket.send_queue + socket.receive_queue)
        .sum())
}

/// Bytes queued to send (unsent or unacknowledged) on the established sockets whose local
/// port is `port`: on a tunnel port, rportd's sockets to its public clients.
fn send_queue_mib(port: u16) -> f64 {
    mib(tcp_sockets()
        .iter()
        .filter(|socket| socket.established && socket.local_port == port)
        .map(|socket| socket.send_queue)
        .sum())
}

#[test]
fn two_thousand_stalled_readers_pin_bounded_memory_and_release_it() {
    let _heavy = heavy();
    // The test holds both ends of every connection (clients and device), rportd and the
    // agent one each.
    if let Ok((soft, _)) = rport_transport::fd_limit::raise_nofile_limit() {
        assert!(
            soft >= 6000,
            "needs 6000 file descriptors, the limit is {soft}"
        );
    }
    const READERS: usize = 2000;
    const SENT: usize = 1024 * 1024;
    let deadline = Instant::now() + Duration::from_secs(240);
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, agent) = server_with_agent(dir.path());
    let target = SendingTarget::start(SENT, deadline);
    let stalled = server.open_tunnel("c1", &format!("remote={}", target.address.port()));
    let stalled_address = tunnel_address(&stalled);
    let echo = echo_server();
    let busy = server.open_tunnel("c1", &format!("remote={}", echo.port()));
    echo_round_trip(tunnel_address(&busy), 1024, 0);
    thread::sleep(Duration::from_millis(500));
    let (rss_before, kernel_before) = (rss_mib(server.pid()), kernel_tcp_mib());

    // Clients that never read. Their receive buffers are small: they stand for machines
    // elsewhere, whose buffers are not this machine's memory.
    let clients: Vec<TcpStream> = (0..READERS)
        .map_while(|_| {
            let socket =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
            socket.set_recv_buffer_size(16 * 1024).ok()?;
            socket
                .connect_timeout(&stalled_address.into(), Duration::from_secs(10))
                .ok()?;
            (Instant::now() < deadline).then(|| socket.into())
        })
        .collect();
    assert_eq!(clients.len(), READERS, "clients connected");

    // The device writes until the tunnel takes nothing more (or everything).
    let mut last = (0, Instant::now());
    while Instant::now() < deadline {
        let written = target.written.load(Ordering::Relaxed);
        if written == (READERS * SENT) as u64 || last.1.elapsed() > Duration::from_secs(5) {
            break;
        }
        if written != last.0 {
            last = (written, Instant::now());
        }
        thread::sleep(Duration::from_millis(200));
    }
    let taken = target.written.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0);
    let (rss, kernel) = (rss_mib(server.pid()), kernel_tcp_mib());
    let queued = send_queue_mib(stalled_address.port());

    // Another tunnel of the same agent still carries 8 MiB both ways.
    let started = Instant::now();
    let busy_address = tunnel_address(&busy);
    let echoed = thread::spawn(move || echo_round_trip(busy_address, 8 * 1024 * 1024, 3));
    let echo_ok = echoed.join().is_ok();
    let took = started.elapsed();
    eprintln!(
        "fault: {READERS} stalled readers, the device sending {} MiB to each: {taken:.0} MiB taken; rportd RSS {rss_before:.0} -> {rss:.0} MiB, its send queues {queued:.0} MiB; kernel TCP memory (whole machine) +{:.0} MiB; 8 MiB echo through another tunnel: {} in {took:?}",
        SENT / (1024 * 1024),
        kernel - kernel_before,
        if echo_ok { "intact" } else { "FAILED" },
    );
    assert!(echo_ok, "the other tunnel's echo failed");
    // docs/security.md: per stalled connection at most the stream window (256 KiB) in
    // rportd and TCP_NOTSENT_LOWAT plus a segment (128 KiB) in its socket; per session
    // the windows' growth budget (128 MiB) on top.
    let readers = READERS as f64;
    assert!(
        rss - rss_before < readers * 0.25 + 128.0 + 64.0,
        "rportd RSS grew by {:.0} MiB",
        rss - rss_before
    );
    assert!(
        queued < readers * 0.125,
        "rportd's public sockets hold {queued:.0} MiB"
    );
    // The whole machine: rportd's sockets plus the agent's receive buffers towards the
    // device and the test's own small buffers (and whatever else runs meanwhile).
    assert!(
        kernel - kernel_before < readers * 0.375,
        "kernel TCP memory grew by {:.0} MiB",
        kernel - kernel_before
    );

    // Released when the clients go: rportd's memory, and what the sockets of rportd and the
    // agent still hold. (The machine's TCP memory is reported, not asserted: the tests that
    // run beside this one use it too.)
    drop(clients);
    drop(target);
    let wait = Instant::now() + Duration::from_secs(60);
    let (rss, held) = loop {
        let rss = rss_mib(server.pid());
        let held = socket_queues_mib(server.pid()) + socket_queues_mib(agent.pid());
        if rss - rss_before < 64.0 && held < 1.0 {
            break (rss, held);
        }
        if Instant::now() >= wait {
            let id = stalled["id"].as_str().unwrap_or_default();
            let active = server.tunnel(id).map(|t| t["active_connections"].clone());
            panic!(
                "60 s after the clients closed: rportd RSS {rss_before:.0} -> {rss:.0} MiB, the sockets of rportd and the agent still hold {held:.1} MiB; the tunnel's active connections: {active:?}"
            );
        }
        thread::sleep(Duration::from_millis(200));
    };
    eprintln!(
        "fault: after the clients closed: rportd RSS {rss:.0} MiB, its and the agent's sockets hold {held:.1} MiB, kernel TCP memory (whole machine) +{:.0} MiB",
        kernel_tcp_mib() - kernel_before
    );
    drop(agent); // kept running to the end
}

#[test]
fn rportd_killed_mid_transfer_loses_no_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Rportd::start(dir.path());
    let agent_port = server.agent_address.port();
    let _agent = Rport::attach(&server, "c1", &dir.path().join("agent"));
    server.wait_connection_state("c1", "connected", ATTACH);
    let echo = echo_server();
    let tunnel = server.open_tunnel(
        "c1",
        &format!("remote={}&idle-timeout-minutes=30", echo.port()),
    );
    let id = tunnel["id"].as_str().expect("id").to_owned();
    let (_, audit_before) = server.request("GET", "/api/v1/auditlog?page[limit]=100");
    let entries_before = audit_before["meta"]["count"].as_u64().expect("count");

    // A transfer in flight when the process dies.
    let mut stream = TcpStream::connect(tunnel_address(&tunnel)).expect("connect");
    let chunk = payload(1024 * 1024, 3);
    stream.write_all(&chunk).expect("write");
    let mut echoed = vec![0u8; 4096];
    stream.read_exact(&mut echoed).expect("echo started");
    let killed_at = Instant::now();
    server.kill();

    // The database is whole: SQLite's own check, with the WAL the kill left behind.
    let db = server.data_dir().join("rportd.db");
    let conn = rusqlite::Connection::open(&db).expect("open the database");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity check");
    assert_eq!(check, "ok");
    drop(conn);

    let server = Rportd::start_on_agent_port(dir.path(), agent_port);
    server.wait_connection_state("c1", "connected", ATTACH);
    let back = server.wait_tunnel_status(&id, "opened", ATTACH);
    let recovered = killed_at.elapsed();
    assert_eq!(back["lport"], tunnel["lport"]);
    echo_round_trip(tunnel_address(&tunnel), 1024 * 1024, 4);
    let (_, audit_after) = server.request("GET", "/api/v1/auditlog?page[limit]=100");
    let entries_after = audit_after["meta"]["count"].as_u64().expect("count");
    assert!(
        entries_after >= entries_before,
        "audit log kept: {entries_before} -> {entries_after}"
    );
    let first_before =
        &audit_before["data"][audit_before["data"].as_array().map_or(0, Vec::len) - 1];
    assert!(
        audit_after["data"]
            .as_array()
            .expect("entries")
            .iter()
            .any(|e| e == first_before),
        "the oldest entry is still there"
    );
    eprintln!(
        "fault: rportd SIGKILLed mid-transfer: integrity_check ok, {entries_before} audit entries kept, agent and tunnel back (same port) {recovered:?} after the kill"
    );
}

/// Runs `script` in the mount namespace of process `pid`.
fn in_namespace_of(pid: u32, script: &str) -> std::process::ExitStatus {
    std::process::Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-m", "--", "sh", "-c", script])
        .status()
        .expect("nsenter")
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(1) == Some("0"))
}

/// Mounts a small tmpfs on the data dir in a mount namespace of rportd's own (nothing
/// outside the test sees it), then runs rportd there.
const ON_SMALL_DISK: &str =
    "mkdir -p \"$0\" && mount -t tmpfs -o size=16m tmpfs \"$0\" && exec \"$@\"";
const ON_READ_ONLY_DISK: &str =
    "mkdir -p \"$0\" && mount -t tmpfs -o size=16m,ro tmpfs \"$0\" && exec \"$@\"";

#[test]
fn a_full_disk_gives_clear_errors_loses_nothing_and_recovers() {
    if !is_root() {
        // CI runs as root; a mount namespace needs it.
        eprintln!("fault: full disk not tried: needs root for a mount namespace");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server-data");
    let data_text = data.to_str().expect("utf-8").to_owned();
    let server = Rportd::start_wrapped(
        dir.path(),
        &ServerSettings::default(),
        &[
            "unshare",
            "-m",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            ON_SMALL_DISK,
            &data_text,
        ],
    );
    let create = |key: &str| {
        server.call(
            "POST",
            "/api/v1/projects",
            &server.auth_header,
            &[],
            Some(&serde_json::json!({"key": key})),
        )
    };
    assert_eq!(create("before").status, 201);

    // Fill the disk to the last byte.
    in_namespace_of(
        server.pid(),
        &format!("cat /dev/zero > {data_text}/filler 2>/dev/null; sync"),
    );
    let started = Instant::now();
    let full = create("while-full");
    assert_eq!(full.status, 503, "{}", full.body);
    assert_eq!(
        full.body["errors"][0]["code"],
        "ERR_CODE_STORAGE_UNAVAILABLE"
    );
    assert!(
        full.body["errors"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("disk is full")),
        "{}",
        full.body
    );
    // Still up, still reading.
    let (status, projects) = server.request("GET", "/api/v1/projects");
    assert_eq!(status, 200);
    assert!(projects.to_string().contains("\"before\""));
    assert!(server.stderr.find("database or disk is full").is_some());

    // Space returns: writes work again, without a restart.
    in_namespace_of(server.pid(), &format!("rm -f {data_text}/filler"));
    let after = create("after");
    assert_eq!(after.status, 201, "{}", after.body);
    let (_, projects) = server.request("GET", "/api/v1/projects");
    let keys: Vec<&str> = projects["data"]
        .as_array()
        .expect("projects")
        .iter()
        .filter_map(|p| p["key"].as_str())
        .collect();
    assert_eq!(
        keys,
        ["after", "before", "default"],
        "nothing lost, nothing half-written"
    );
    eprintln!(
        "fault: disk full: 503 ERR_CODE_STORAGE_UNAVAILABLE (\"disk is full\"), reads served, no crash; writes back {:?} after space returned, without a restart",
        started.elapsed()
    );
}

#[test]
fn a_read_only_data_dir_stops_the_start_with_its_path() {
    if !is_root() {
        eprintln!("fault: read-only data_dir not tried: needs root for a mount namespace");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server-data");
    let config = write_server_config(dir.path(), &ServerSettings::default());
    let output = std::process::Command::new("unshare")
        .args([
            "-m",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            ON_READ_ONLY_DISK,
        ])
        .arg(&data)
        .arg(env!("CARGO_BIN_EXE_rportd"))
        .arg("-c")
        .arg(&config)
        .output()
        .expect("rportd");
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{err}");
    assert!(
        err.contains(data.to_str().expect("utf-8")) && err.to_lowercase().contains("read-only"),
        "names the directory and why: {err}"
    );
    eprintln!(
        "fault: read-only data_dir: start refused, exit non-zero: {}",
        err.lines()
            .find(|l| l.contains("Read-only"))
            .unwrap_or_default()
            .trim()
    );
}

/// A network namespace of the test's own, joined to the host by a veth pair with a /30 of
/// 10.231.0.0/16: an agent inside it reaches rportd over that link only, and taking the
/// host's end down cuts it the way a pulled cable does (no FIN, no RST). Removed on drop.
struct LinkedNamespace {
    name: String,
    host_end: String,
    host_ip: std::net::Ipv4Addr,
}

impl LinkedNamespace {
    fn create() -> Self {
        // Unique per process, so parallel runs of the suite do not collide.
        let index = std::process::id() % 16_000;
        let base = index * 4;
        let octets = |last: u32| {
            std::net::Ipv4Addr::new(10, 231, (base >> 8) as u8, ((base & 0xff) + last) as u8)
        };
        let (host_ip, ns_ip) = (octets(1), octets(2));
        let name = format!("rport-test-{index}");
        let host_end = format!("rph{index}");
        let ns_end = format!("rpn{index}");
        let namespace = Self {
            name: name.clone(),
            host_end: host_end.clone(),
            host_ip,
        };
        let host_cidr = format!("{host_ip}/30");
        let ns_cidr = format!("{ns_ip}/30");
        for command in [
            vec!["ip", "netns", "add", &name],
            vec![
                "ip", "link", "add", &host_end, "type", "veth", "peer", "name", &ns_end,
            ],
            vec!["ip", "link", "set", &ns_end, "netns", &name],
            vec!["ip", "addr", "add", &host_cidr, "dev", &host_end],
            vec!["ip", "link", "set", &host_end, "up"],
            vec![
                "ip", "netns", "exec", &name, "ip", "addr", "add", &ns_cidr, "dev", &ns_end,
            ],
            vec![
                "ip", "netns", "exec", &name, "ip", "link", "set", &ns_end, "up",
            ],
            vec![
                "ip", "netns", "exec", &name, "ip", "link", "set", "lo", "up",
            ],
        ] {
            run(&command);
        }
        namespace
    }

    fn set_link(&self, up: bool) {
        run(&[
            "ip",
            "link",
            "set",
            &self.host_end,
            if up { "up" } else { "down" },
        ]);
    }

    fn wrapper(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.name]
    }
}

impl Drop for LinkedNamespace {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and so the pair.
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.host_end])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn run(command: &[&str]) {
    let output = std::process::Command::new(command[0])
        .args(&command[1..])
        .output()
        .unwrap_or_else(|err| panic!("{}: {err} (CI installs iproute2)", command.join(" ")));
    assert!(
        output.status.success(),
        "{}: {}",
        command.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn an_agent_whose_network_link_goes_down_is_noticed_and_comes_back() {
    if !is_root() {
        // CI runs as root; creating a network namespace and a veth pair needs it.
        eprintln!("fault: veth link down not tried: needs root for a network namespace");
        return;
    }
    let namespace = LinkedNamespace::create();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            agent_host: namespace.host_ip.to_string(),
            ..Default::default()
        },
    );
    // keep_alive 5s and retries at most 2 s apart, as attach_wrapped sets them.
    let agent = Rport::attach_wrapped(
        &server,
        "c1",
        &dir.path().join("agent"),
        server.agent_address,
        &[],
        &[],
        &namespace.wrapper(),
    );
    server.wait_connection_state("c1", "connected", ATTACH);
    // The target sits on the host's end of the link: the agent reaches it over the veth.
    let echo = echo_server_at(namespace.host_ip);
    let tunnel = server.open_tunnel("c1", &format!("remote={echo}"));
    let address = tunnel_address(&tunnel);
    echo_round_trip(address, 1024 * 1024, 1);

    namespace.set_link(false);
    let cut_at = Instant::now();
    server.wait_connection_state("c1", "disconnected", ATTACH);
    let detected = cut_at.elapsed();
    // The tunnel waits for its agent (grace period) rather than ending.
    let id = tunnel["id"].as_str().expect("id").to_owned();
    server.wait_tunnel_status(&id, "pending", ATTACH);
    agent.stderr.wait_for("reconnecting", ATTACH);

    namespace.set_link(true);
    let restored_at = Instant::now();
    server.wait_connection_state("c1", "connected", ATTACH);
    let back = restored_at.elapsed();
    server.wait_tunnel_status(&id, "opened", ATTACH);
    echo_round_trip(address, 1024 * 1024, 2);
    eprintln!(
        "fault: veth link down in a network namespace (keep_alive 5s): server noticed after {detected:?}; link up again: agent back after {back:?}, its tunnel carrying 1 MiB intact on the same port"
    );
}
