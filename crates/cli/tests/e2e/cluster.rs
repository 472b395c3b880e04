//! End to end: several `rportd` nodes on one real, throwaway PostgreSQL, agents spread
//! over them. Any node answers for any agent and its tunnels carry bytes, a revoked token
//! is refused everywhere, failed logins count across nodes, a killed node's agents and
//! tunnels come back on the others, a PostgreSQL restart under traffic loses nothing, and
//! of two nodes admitting one agent id at once one wins.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rport_test_postgres::TempPostgres;
use serde_json::json;

use crate::support::web::{self, Web};
use crate::support::*;

/// The bound for a killed node's agents to be back elsewhere, tunnels carrying.
const FAILOVER_BOUND: Duration = Duration::from_secs(60);
/// The bound for a revoked token to be refused by every node.
const REVOCATION_BOUND: Duration = Duration::from_secs(2);

/// One PostgreSQL server for the tests that do not stop it; a database each.
fn shared_postgres() -> &'static TempPostgres {
    match TempPostgres::shared() {
        Ok(postgres) => postgres,
        Err(err) => panic!("the cluster tests need PostgreSQL: {err}"),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A node's settings: its own ports, public host `node{index}.test`, the shared database.
fn node_settings(index: usize, database: &str, extra_server: &str) -> ServerSettings {
    let first = 21_000 + index * 3_000;
    ServerSettings {
        used_ports: format!("{first}-{}", first + 2_999),
        extra_server: format!("url = \"http://node{index}.test:8080\"\n{extra_server}"),
        extra_sections: format!(
            "[database]\nurl = \"{database}\"\n\n[cluster]\npeer_address = \"127.0.0.1:{}\"\n",
            free_port()
        ),
        ..Default::default()
    }
}

struct Cluster {
    nodes: Vec<Rportd>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Cluster {
    fn start(count: usize, database: &str, extra_server: &str) -> Self {
        let dirs: Vec<_> = (0..count).map(|_| tempdir()).collect();
        let nodes = dirs
            .iter()
            .enumerate()
            .map(|(index, dir)| {
                Rportd::start_with(dir.path(), &node_settings(index, database, extra_server))
            })
            .collect();
        Self { nodes, _dirs: dirs }
    }

    /// An agent connected to node `home`, with every other node as a fallback.
    fn agent(&self, home: usize, id: &str, data_dir: &Path) -> Rport {
        let fallbacks: Vec<String> = (0..self.nodes.len())
            .filter(|&n| n != home)
            .map(|n| self.nodes[n].agent_address.to_string())
            .collect();
        let mut flags = Vec::new();
        for address in &fallbacks {
            flags.extend_from_slice(&["--fallback-server", address.as_str()]);
        }
        let home = &self.nodes[home];
        Rport::attach_with(home, id, data_dir, home.agent_address, &flags, &[])
    }
}

/// The port range of node `index` (see [`node_settings`]).
fn in_range_of(index: usize, port: u16) -> bool {
    let first = 21_000 + index * 3_000;
    (first..first + 3_000).contains(&usize::from(port))
}

#[test]
fn every_node_answers_for_every_agent_and_cross_node_tunnels_carry_bytes() {
    let database = shared_postgres()
        .create_unique_database("answers")
        .expect("database");
    let cluster = Cluster::start(3, &database, "");
    let dirs: Vec<_> = (0..3).map(|_| tempdir()).collect();
    let _agents: Vec<Rport> = (0..3)
        .map(|n| cluster.agent(n, &format!("agent-{n}"), dirs[n].path()))
        .collect();
    for node in &cluster.nodes {
        for n in 0..3 {
            node.wait_connection_state(&format!("agent-{n}"), "connected", ATTACH);
        }
    }
    let fingerprints: Vec<&str> = cluster
        .nodes
        .iter()
        .map(|n| n.fingerprint.as_str())
        .collect();
    assert!(
        fingerprints.iter().all(|f| *f == fingerprints[0]),
        "one identity: {fingerprints:?}"
    );
    // Lists are the same on every node.
    let ids = |node: &Rportd| -> Vec<String> {
        let (status, body) = node.request("GET", "/api/v1/clients?sort=id");
        assert_eq!(status, 200, "{body}");
        body["data"]
            .as_array()
            .expect("clients")
            .iter()
            .map(|c| format!("{}:{}", c["id"], c["connection_state"]))
            .collect()
    };
    let first = ids(&cluster.nodes[0]);
    assert_eq!(first.len(), 3);
    for node in &cluster.nodes[1..] {
        assert_eq!(ids(node), first);
    }

    // Node 0's live feed hears of tunnels whichever node holds them.
    let feed = crate::events::subscribe(&cluster.nodes[0], &cluster.nodes[0].auth_header);
    let mut elsewhere = Vec::new();
    let echo = echo_server();
    let bearers: Vec<String> = cluster.nodes.iter().map(Rportd::bearer).collect();
    for (via, node) in cluster.nodes.iter().enumerate() {
        for holder in (0..3).filter(|&h| h != via) {
            let agent = format!("agent-{holder}");
            // v1: the tunnel opens on the holder's node, from its pool.
            let tunnel = node.open_tunnel(&agent, &format!("remote={}", echo.port()));
            let address = tunnel_address(&tunnel);
            assert!(
                in_range_of(holder, address.port()),
                "via node {via}, agent on node {holder}: {tunnel}"
            );
            echo_round_trip(address, 300_000, (via * 10 + holder) as u64);
            // Deleted through the third node.
            let third = &cluster.nodes[3 - via - holder];
            let id = tunnel["id"].as_str().expect("id");
            if holder != 0 {
                elsewhere.push(id.to_owned());
            }
            let (status, body) = third.request(
                "DELETE",
                &format!("/api/v1/clients/{agent}/tunnels/{id}?force=true"),
            );
            assert_eq!(status, 204, "{body}");
            assert_eq!(
                third.tunnel(id).expect("listed")["status"],
                "closed",
                "one history"
            );
            assert!(
                std::net::TcpStream::connect(address).is_err(),
                "the port is closed on the holder"
            );

            // v2 names the holder's public host.
            let reply = node.call(
                "POST",
                "/api/v2/default/port_tunnel",
                &bearers[via],
                &[],
                Some(
                    &json!({"device_uuid": agent, "port": echo.port(), "allowed_ip": "127.0.0.1"}),
                ),
            );
            assert_eq!(reply.status, 201, "{}", reply.body);
            assert_eq!(reply.body["server_address"], format!("node{holder}.test"));
            let port = reply.body["server_port"].as_u64().expect("port") as u16;
            echo_round_trip(SocketAddr::from(([127, 0, 0, 1], port)), 100_000, 7);
            let id = reply.body["port_tunnel_id"].as_str().expect("id");
            let reply = node.call(
                "DELETE",
                &format!("/api/v2/default/port_tunnel/{id}"),
                &bearers[via],
                &[],
                None,
            );
            assert!(
                (200..300).contains(&reply.status),
                "{} {}",
                reply.status,
                reply.body
            );
        }
    }
    let mut heard = std::collections::HashSet::new();
    while elsewhere.iter().any(|id| {
        !heard.contains(&(id.clone(), "opened")) || !heard.contains(&(id.clone(), "closed"))
    }) {
        let event = crate::events::next_tunnel_event(&feed);
        let id = event["id"].as_str().unwrap_or_default().to_owned();
        match event["status"].as_str() {
            Some("opened") => heard.insert((id, "opened")),
            Some("closed") => heard.insert((id, "closed")),
            _ => false,
        };
    }
    eprintln!(
        "cluster: 3 nodes x 3 agents: 6 cross-node v1 and 6 v2 tunnels carried checksummed bytes and closed from a third node; node 0's event stream heard the {} v1 tunnels other nodes held open and close",
        elsewhere.len()
    );
}

#[test]
fn a_revoked_token_is_refused_by_every_node_and_bans_count_across_nodes() {
    let database = shared_postgres()
        .create_unique_database("tokens")
        .expect("database");
    let cluster = Cluster::start(3, &database, "");
    let token = cluster.nodes[0].bearer();
    for node in &cluster.nodes {
        assert_eq!(node.request_as("GET", "/api/v1/status", &token).0, 200);
    }
    assert_eq!(
        cluster.nodes[0]
            .request_as("DELETE", "/api/v1/logout", &token)
            .0,
        204
    );
    let revoked = Instant::now();
    for node in &cluster.nodes[1..] {
        wait_for("the revoked token refused", REVOCATION_BOUND, || {
            (node.request_as("GET", "/api/v1/status", &token).0 == 401).then_some(())
        });
    }
    eprintln!(
        "cluster: a revoked token was refused by every node {:?} after its revocation",
        revoked.elapsed()
    );

    // Sessions an administrator ends on one node are refused by the others as fast.
    let second = cluster.nodes[0].bearer();
    assert_eq!(
        cluster.nodes[2]
            .request_as("GET", "/api/v1/status", &second)
            .0,
        200
    );
    let admin = &cluster.nodes[1].auth_header;
    let path = format!("/api/v1/users/{API_USER}/sessions");
    assert_eq!(cluster.nodes[1].request_as("DELETE", &path, admin).0, 204);
    let ended = Instant::now();
    for node in [&cluster.nodes[0], &cluster.nodes[2]] {
        wait_for(
            "the ended session's token refused",
            REVOCATION_BOUND,
            || (node.request_as("GET", "/api/v1/status", &second).0 == 401).then_some(()),
        );
    }
    eprintln!(
        "cluster: a session ended by an admin was refused by every node {:?} after",
        ended.elapsed()
    );

    // Wrong passwords spread over the nodes add up to one ban, seen by every node.
    let wrong = basic(API_USER, "wrong-password");
    for attempt in 0..10 {
        let node = &cluster.nodes[attempt % 3];
        let status = node.request_as("GET", "/api/v1/status", &wrong).0;
        assert!(status == 401 || status == 429, "{status}");
        // The other nodes hear of each failure within a poll.
        thread::sleep(Duration::from_millis(400));
    }
    for node in &cluster.nodes {
        wait_for(
            "the address banned on every node",
            Duration::from_secs(5),
            || {
                (node
                    .request_as("GET", "/api/v1/status", &node.auth_header)
                    .0
                    == 429)
                    .then_some(())
            },
        );
    }
}

#[test]
fn a_killed_nodes_agents_and_tunnels_are_back_on_other_nodes_within_the_bound() {
    let _heavy = heavy();
    let database = shared_postgres()
        .create_unique_database("failover")
        .expect("database");
    let mut cluster = Cluster::start(3, &database, "");
    let dirs: Vec<_> = (0..4).map(|_| tempdir()).collect();
    let ids: Vec<String> = (0..4).map(|n| format!("moving-{n}")).collect();
    let _agents: Vec<Rport> = ids
        .iter()
        .zip(&dirs)
        .map(|(id, dir)| cluster.agent(0, id, dir.path()))
        .collect();
    let echo = echo_server();
    let mut tunnels = Vec::new();
    for id in &ids {
        cluster.nodes[1].wait_connection_state(id, "connected", ATTACH);
        let tunnel = cluster.nodes[1].open_tunnel(id, &format!("remote={}", echo.port()));
        echo_round_trip(tunnel_address(&tunnel), 50_000, 1);
        tunnels.push(tunnel["id"].as_str().expect("id").to_owned());
    }

    cluster.nodes[0].kill();
    let killed = Instant::now();
    let survivor = &cluster.nodes[1];
    for (id, tunnel) in ids.iter().zip(&tunnels) {
        let back = wait_for("the agent and its tunnel back", FAILOVER_BOUND, || {
            let client = survivor.client(id)?;
            if client["connection_state"] != "connected" {
                return None;
            }
            // Until its new node opens it, the store still shows the dead node's port.
            let tunnel = survivor.tunnel(tunnel)?;
            let port = tunnel_address(&tunnel).port();
            let moved = in_range_of(1, port) || in_range_of(2, port);
            (tunnel["status"] == "opened" && moved).then_some(tunnel)
        });
        let address = tunnel_address(&back);
        wait_for("bytes through the reopened tunnel", FAILOVER_BOUND, || {
            std::panic::catch_unwind(|| echo_round_trip(address, 50_000, 2)).ok()
        });
    }
    let took = killed.elapsed();
    assert!(took < FAILOVER_BOUND, "{took:?}");
    eprintln!(
        "cluster: SIGKILL of a node: its 4 agents and their tunnels carried data again on other nodes after {took:?}"
    );
    // The moved tunnels are in the audit log where their ports changed.
    let (status, body) = survivor.request("GET", "/api/v1/audit-log?filter[action]=tunnel.move");
    if status == 200 {
        eprintln!("cluster: tunnel.move audit entries: {}", body["data"]);
    }
}

#[test]
fn a_postgresql_restart_under_traffic_loses_nothing() {
    let _heavy = heavy();
    let mut postgres = TempPostgres::start().expect("PostgreSQL");
    let database = postgres.create_database("restart").expect("database");
    let cluster = Cluster::start(2, &database, "");
    let dir = tempdir();
    let _agent = cluster.agent(0, "steady", dir.path());
    let node = &cluster.nodes[1];
    node.wait_connection_state("steady", "connected", ATTACH);
    let echo = echo_server();
    let tunnel = node.open_tunnel("steady", &format!("remote={}", echo.port()));
    let address = tunnel_address(&tunnel);
    let create = |key: &str| {
        node.call(
            "POST",
            "/api/v1/projects",
            &node.auth_header,
            &[],
            Some(&json!({"key": key})),
        )
    };
    assert_eq!(create("before").status, 201);

    // Traffic all along: one round trip after another, each checked.
    let stop = Arc::new(AtomicBool::new(false));
    let trips = Arc::new(AtomicU64::new(0));
    let traffic = {
        let (stop, trips) = (Arc::clone(&stop), Arc::clone(&trips));
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                echo_round_trip(address, 20_000, trips.load(Ordering::Relaxed));
                trips.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    postgres.stop().expect("stop PostgreSQL");
    let before = trips.load(Ordering::Relaxed);
    let during = create("during");
    assert_eq!(during.status, 503, "{}", during.body);
    assert_eq!(error_code(&during.body), "ERR_CODE_STORAGE_UNAVAILABLE");
    thread::sleep(Duration::from_secs(2));
    assert!(
        trips.load(Ordering::Relaxed) > before,
        "the live tunnel carries traffic while the database is away"
    );
    postgres.start_again().expect("start PostgreSQL again");
    wait_for("writes working again", Duration::from_secs(30), || {
        (create("after").status == 201).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    traffic.join().expect("no round trip lost or corrupted");
    let (_, projects) = node.request("GET", "/api/v1/projects");
    let keys: Vec<&str> = projects["data"]
        .as_array()
        .expect("projects")
        .iter()
        .filter_map(|p| p["key"].as_str())
        .collect();
    assert_eq!(
        keys,
        ["after", "before", "default"],
        "acknowledged writes kept"
    );
    node.wait_connection_state("steady", "connected", ATTACH);
    echo_round_trip(address, 100_000, 9);
    eprintln!(
        "cluster: PostgreSQL restarted under traffic: {} round trips, none lost; 503 while away; writes back after",
        trips.load(Ordering::Relaxed)
    );
}

#[test]
fn of_two_nodes_admitting_one_agent_id_at_once_one_wins() {
    let database = shared_postgres()
        .create_unique_database("race")
        .expect("database");
    let cluster = Cluster::start(2, &database, "");
    let (one, two) = (tempdir(), tempdir());
    let nodes = &cluster.nodes;
    let first = Rport::attach(&nodes[0], "twin", one.path());
    let second = Rport::attach(&nodes[1], "twin", two.path());
    for node in nodes {
        node.wait_connection_state("twin", "connected", ATTACH);
    }
    // The loser is told that the other node holds the id, and keeps waiting its turn.
    let refused = wait_for("one agent refused", ATTACH, || {
        [(&first, 0), (&second, 1)]
            .into_iter()
            .find(|(agent, _)| agent.stderr.find("of this cluster").is_some())
            .map(|(_, index)| index)
    });
    let winner = [&first, &second][1 - refused];
    let loser = [&first, &second][refused];
    thread::sleep(Duration::from_secs(3));
    assert!(
        winner.stderr.find("connected to").is_some(),
        "the winner holds its session"
    );
    assert!(
        loser.stderr.find("connected to").is_none(),
        "the loser never got in while the winner held the id"
    );
    let address = |node: &Rportd| node.client("twin").expect("twin")["address"].clone();
    assert_eq!(
        address(&nodes[0]),
        address(&nodes[1]),
        "one session, seen alike"
    );
}

/// The shared proxy port of a node, from its start line.
fn shared_proxy_port(node: &Rportd) -> u16 {
    let line = node.stdout.wait_for("HTTP tunnels share", ATTACH);
    line.rsplit(':')
        .next()
        .and_then(|port| port.trim().parse().ok())
        .expect("shared proxy port")
}

#[test]
fn a_proxy_tunnel_answers_on_every_nodes_shared_port() {
    let database = shared_postgres()
        .create_unique_database("proxy")
        .expect("database");
    let cluster = Cluster::start(
        3,
        &database,
        "tunnel_host = \"cluster.test\"\ntunnel_proxy_address = \"127.0.0.1:0\"\n",
    );
    let dir = tempdir();
    let _agent = cluster.agent(1, "web-1", dir.path());
    cluster.nodes[0].wait_connection_state("web-1", "connected", ATTACH);
    let web = Web::new();
    let device = web.device_http("one");
    let tunnel = cluster.nodes[0].open_tunnel(
        "web-1",
        &format!(
            "remote={}&scheme=http&http_proxy=true&acl=127.0.0.1",
            device.port()
        ),
    );
    let url = tunnel["tunnel_url"].as_str().expect("url");
    let host = url
        .strip_prefix("https://")
        .and_then(|rest| rest.split(':').next())
        .expect("host")
        .to_owned();
    assert!(host.ends_with(".cluster.test"), "{url}");
    for node in &cluster.nodes {
        let shared = SocketAddr::from(([127, 0, 0, 1], shared_proxy_port(node)));
        let mut client = web.connect(shared, &host, None, any_tls()).expect("TLS");
        let got = web
            .send(&mut client, web::get(&host, "/hello", &[]))
            .expect("answer");
        assert_eq!((got.status, got.text()), (200, "hello from one".to_owned()));
    }
    eprintln!("cluster: one proxy tunnel answered through all 3 nodes' shared ports");
}

fn any_tls() -> Arc<rustls::ClientConfig> {
    web::client_tls(&[&rustls::version::TLS13, &rustls::version::TLS12])
}

#[test]
fn a_single_server_moves_to_postgresql_with_its_agents_tunnels_and_tokens() {
    let dir = tempdir();
    let agent_dir = tempdir();
    let mut single = Rportd::start_with(dir.path(), &ServerSettings::default());
    let agent_port = single.agent_address.port();
    let _agent = Rport::attach(&single, "mover", agent_dir.path());
    single.wait_connection_state("mover", "connected", ATTACH);
    let echo = echo_server();
    let tunnel = single.open_tunnel("mover", &format!("remote={}", echo.port()));
    let tunnel_id = tunnel["id"].as_str().expect("id").to_owned();
    let reply = single.call(
        "POST",
        "/api/v1/me/tokens",
        &single.auth_header,
        &[],
        Some(&json!({"name": "ci", "scope": "read"})),
    );
    assert!((200..300).contains(&reply.status), "{}", reply.body);
    let api_token = reply.body["data"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let fingerprint = single.fingerprint.clone();
    // A crash, so that the tunnel is still live in the copy (an orderly stop ends it).
    single.kill();

    let database = shared_postgres()
        .create_unique_database("moved")
        .expect("database");
    let settings = ServerSettings {
        agent_port,
        // The same pool as before, so that the live tunnel gets its port back.
        used_ports: ServerSettings::default().used_ports,
        ..node_settings(0, &database, "")
    };
    let config = write_server_config(dir.path(), &settings);
    let migrate = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_rportd"))
            .arg("-c")
            .arg(&config)
            .arg("migrate")
            .arg("--from-sqlite")
            .arg(dir.path().join("server-data"))
            .output()
            .expect("run rportd migrate")
    };
    let out = migrate();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("1 clients"), "{said}");
    let again = migrate();
    assert!(!again.status.success(), "a filled database is refused");
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    let moved = Rportd::start_with(dir.path(), &settings);
    assert_eq!(moved.fingerprint, fingerprint, "agents' pins still match");
    moved.wait_connection_state("mover", "connected", ATTACH);
    let back = moved.wait_tunnel_status(&tunnel_id, "opened", ATTACH);
    echo_round_trip(tunnel_address(&back), 100_000, 3);
    let bearer = format!("Bearer {api_token}");
    assert_eq!(moved.request_as("GET", "/api/v1/status", &bearer).0, 200);
    eprintln!(
        "cluster: a single SQLite server moved to PostgreSQL: same fingerprint, its agent, tunnel and API token work"
    );
}
