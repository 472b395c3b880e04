//! Two nodes of a cluster in one process: two servers sharing one store object (SQLite:
//! one file is one node's, but one shared store object is a cluster's), each with its own
//! data dir, agent listener, peer listener and public host, and an agent on one of them.
//! The other node's API answers for that agent by forwarding over the peer channel.
//! Real processes and PostgreSQL are the end-to-end tests' (`crates/cli/tests`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine as _;
use clap::Parser as _;
use http_body_util::BodyExt as _;
use rport_store::{AgentClaim, AgentRecord, NodeRecord, SqliteStore, Store};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

const ADMIN: &str = "admin:admin-password-1";
const AGENT_AUTH: &str = "agent-1:agent-password-1";
/// Where the operator's requests come from: its address must reach the audit log of
/// the node that acts, through the forwarding.
const OPERATOR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)), 40000);

fn admin() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(ADMIN)
    )
}

struct Node {
    id: String,
    router: axum::Router,
    agent_address: SocketAddr,
    fingerprint: String,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Node {
    /// Starts node `id` on `store`; its tunnels take ports from `ports`, and its public
    /// host is `{id}.test`.
    async fn start(store: &Arc<dyn Store>, id: &str, ports: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).expect("data dir");
        // Its id, fixed so that the test can name it.
        std::fs::write(data_dir.join("node-id"), id).expect("node id");
        let peer = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("peer listener");
        let text = format!(
            r#"[server]
address = "127.0.0.1:0"
data_dir = {data:?}
auth = "{AGENT_AUTH}"
used_ports = ["{ports}"]
excluded_ports = ["1-1024"]
tunnel_host = "{id}.test"
[api]
address = "127.0.0.1:0"
auth = "{ADMIN}"
[cluster]
peer_address = "{peer}"
"#,
            data = data_dir.display().to_string(),
            peer = peer.local_addr().expect("peer address"),
        );
        let config = rport_server::ServerConfig::from_toml_str(&text, "node.conf")
            .expect("node config is valid");
        let server = rport_server::Server::with_store(config, Arc::clone(store))
            .await
            .expect("node builds");
        let agents = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("agent listener");
        let agent_address = agents.local_addr().expect("agent address");
        let router = server.router();
        let fingerprint = server.fingerprint().to_string();
        let stop = CancellationToken::new();
        let listeners = rport_server::Listeners {
            agents,
            api: None,
            tunnel_proxy: None,
            peer: Some(peer),
            metrics: None,
        };
        tokio::spawn(server.run(listeners, stop.clone()));
        Self {
            id: id.to_owned(),
            router,
            agent_address,
            fingerprint,
            stop,
            _dir: dir,
        }
    }

    /// Status and JSON answer of a request from [`OPERATOR`].
    async fn call(
        &self,
        method: Method,
        path: &str,
        auth: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, auth)
            .extension(ConnectInfo(OPERATOR));
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let response = self
            .router
            .clone()
            .oneshot(request.body(body).expect("request"))
            .await
            .expect("the router is infallible");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    /// `GET /api/v1/tunnels` of one agent, as the admin.
    async fn live_tunnels(&self, agent: &str) -> (StatusCode, Value) {
        let path = format!("/api/v1/tunnels?filter[client_id]={agent}");
        self.call(Method::GET, &path, &admin(), None).await
    }

    /// Waits (bounded) until `check` holds for this node's status as the admin sees it.
    async fn until_status(&self, what: &str, check: impl Fn(&Value) -> bool) {
        for _ in 0..100 {
            let (_, status) = self
                .call(Method::GET, "/api/v1/status", &admin(), None)
                .await;
            if check(&status["data"]) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("node {}: {what} did not happen within 10 s", self.id);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn shared_store(dir: &std::path::Path) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(&dir.join("cluster.db")).expect("store"))
}

/// An agent `id` connected to `node`, pinning its fingerprint; stops with `stop`.
async fn connect_agent(node: &Node, id: &str, dir: &std::path::Path, stop: &CancellationToken) {
    let args = rport_agent::cli::AgentArgs::parse_from([
        "rport".to_owned(),
        "--id".to_owned(),
        id.to_owned(),
        "--auth".to_owned(),
        AGENT_AUTH.to_owned(),
        "--fingerprint".to_owned(),
        node.fingerprint.clone(),
        "--data-dir".to_owned(),
        dir.display().to_string(),
        "--log-level".to_owned(),
        "error".to_owned(),
        node.agent_address.to_string(),
    ]);
    let config = rport_agent::config::load(&args, &|_| None).expect("agent config");
    tokio::spawn(rport_agent::session::Agent::new(config, id.to_owned()).run(stop.clone()));
    for _ in 0..100 {
        let (_, client) = node
            .call(
                Method::GET,
                &format!("/api/v1/clients/{id}"),
                &admin(),
                None,
            )
            .await;
        if client["data"]["connection_state"] == "connected" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("agent {id} did not connect to node {} within 10 s", node.id);
}

/// A TCP server on the device's side that echoes what it reads.
async fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("echo");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 || socket.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// Sends bytes through a tunnel's public port and reads them back.
async fn through(port: u16, message: &[u8]) -> Vec<u8> {
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the tunnel");
    socket.write_all(message).await.expect("write");
    let mut got = vec![0u8; message.len()];
    tokio::time::timeout(Duration::from_secs(10), socket.read_exact(&mut got))
        .await
        .expect("the echo within 10 s")
        .expect("read");
    got
}

fn port_of(value: &Value) -> u16 {
    match value {
        Value::String(text) => text.parse().expect("a port"),
        other => other
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .expect("a port"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_answers_for_an_agent_held_by_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = shared_store(dir.path());
    let stop_agents = CancellationToken::new();
    let b = Node::start(&store, "node-b", "23100-23149").await;
    let agent_dir = dir.path().join("agent");
    std::fs::create_dir_all(&agent_dir).expect("agent dir");
    connect_agent(&b, "dev-1", &agent_dir, &stop_agents).await;
    // Started after the agent connected, node A knows from the store that B holds it.
    let a = Node::start(&store, "node-a", "23150-23199").await;
    assert_eq!(a.fingerprint, b.fingerprint, "one identity for the cluster");
    let echo = echo_server().await;

    // v1: open through A; it opens on B and the answer names B.
    let (status, opened) = a
        .call(
            Method::PUT,
            &format!("/api/v1/clients/dev-1/tunnels?remote=127.0.0.1:{echo}"),
            &admin(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{opened}");
    let tunnel = &opened["data"];
    let tunnel_id = tunnel["id"].as_str().expect("id").to_owned();
    let port = port_of(&tunnel["lport"]);
    assert!(
        (23100..23150).contains(&port),
        "a port of B's pool: {tunnel}"
    );
    assert_eq!(through(port, b"across nodes").await, b"across nodes");

    // An HTTP proxy tunnel's URL names B's host.
    let web = echo_server().await;
    let (status, proxied) = a
        .call(
            Method::PUT,
            &format!(
                "/api/v1/clients/dev-1/tunnels?remote=127.0.0.1:{web}&scheme=http&http_proxy=true"
            ),
            &admin(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{proxied}");
    let url = proxied["data"]["tunnel_url"].as_str().expect("url");
    assert!(url.starts_with("https://node-b.test:"), "{proxied}");
    let proxied_id = proxied["data"]["id"].as_str().expect("id");
    let (status, answer) = a
        .call(
            Method::DELETE,
            &format!("/api/v1/clients/dev-1/tunnels/{proxied_id}"),
            &admin(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");

    // Its live tunnels read through A are B's.
    let (status, live) = a.live_tunnels("dev-1").await;
    assert_eq!(status, StatusCode::OK, "{live}");
    assert_eq!(live["data"][0]["id"], tunnel_id.as_str(), "{live}");

    // The ACL changes through A.
    let (status, answer) = a
        .call(
            Method::PUT,
            &format!("/api/v1/clients/dev-1/tunnels/{tunnel_id}/acl"),
            &admin(),
            Some(json!({"acl": "127.0.0.0/8"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    let (_, live) = b.live_tunnels("dev-1").await;
    assert_eq!(live["data"][0]["acl"], "127.0.0.0/8", "{live}");

    // It closes through A.
    let (status, answer) = a
        .call(
            Method::DELETE,
            &format!("/api/v1/clients/dev-1/tunnels/{tunnel_id}?force=true"),
            &admin(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    let (_, live) = b.live_tunnels("dev-1").await;
    assert_eq!(live["data"], json!([]), "{live}");

    // One audit entry per action, written by B with the operator's address.
    let (_, audit) = a
        .call(
            Method::GET,
            "/api/v1/auditlog?filter[action]=tunnel.create",
            &admin(),
            None,
        )
        .await;
    let entries = audit["data"].as_array().expect("entries");
    assert_eq!(entries.len(), 2, "one per tunnel opened: {audit}");
    assert_eq!(
        entries[0]["remote_ip"],
        OPERATOR.ip().to_string(),
        "{audit}"
    );

    // v2, with a bearer token from A (the JWT secret is the cluster's).
    let (status, login) = a.call(Method::GET, "/api/v1/login", &admin(), None).await;
    assert_eq!(status, StatusCode::OK, "{login}");
    let bearer = format!("Bearer {}", login["data"]["token"].as_str().expect("token"));
    let (status, opened) = a
        .call(
            Method::POST,
            "/api/v2/default/port_tunnel",
            &bearer,
            Some(json!({"device_uuid": "dev-1", "port": echo, "allowed_ip": "127.0.0.1"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    assert_eq!(opened["server_address"], "node-b.test", "{opened}");
    let port = port_of(&opened["server_port"]);
    assert_eq!(through(port, b"v2 across").await, b"v2 across");
    let id = opened["port_tunnel_id"].as_str().expect("id");
    let (status, answer) = a
        .call(
            Method::DELETE,
            &format!("/api/v2/default/port_tunnel/{id}"),
            &bearer,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");

    // A wrong password is refused by A itself, and never reaches B.
    let wrong = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("admin:wrong-password-1")
    );
    let (status, _) = a
        .call(
            Method::PUT,
            &format!("/api/v1/clients/dev-1/tunnels?remote=127.0.0.1:{echo}"),
            &wrong,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A stored tunnel saved through A starts with one call through A: it opens on B.
    let (status, stored) = a
        .call(
            Method::POST,
            "/api/v1/clients/dev-1/stored-tunnels",
            &admin(),
            Some(json!({"name": "echo", "remote_ip": "127.0.0.1", "remote_port": echo, "acl": "127.0.0.1"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    let stored_id = stored["data"]["id"].as_str().expect("id");
    let (status, started) = a
        .call(
            Method::POST,
            &format!("/api/v1/clients/dev-1/stored-tunnels/{stored_id}/start"),
            &admin(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{started}");
    let port = port_of(&started["data"]["lport"]);
    assert!(
        (23100..23150).contains(&port),
        "a port of B's pool: {started}"
    );
    assert_eq!(through(port, b"stored across").await, b"stored across");

    // Each node reaches the other, as its status says, and A's status counts the agent
    // B holds under B (the console's cluster page).
    a.until_status("reaching node-b", |status| {
        status["cluster"]["nodes"].as_array().is_some_and(|nodes| {
            nodes.iter().any(|n| {
                n["id"] == "node-b" && n["reachable"] == true && n["clients_connected"] == 1
            }) && nodes
                .iter()
                .any(|n| n["id"] == "node-a" && n["clients_connected"] == 0)
        })
    })
    .await;
    stop_agents.cancel();
}

/// Records a node `id` that is alive at `peer_address` (and runs nowhere).
async fn fake_node(store: &Arc<dyn Store>, id: &str, peer_address: &str) {
    let now = chrono::Utc::now();
    let node = NodeRecord {
        id: id.to_owned(),
        peer_address: peer_address.to_owned(),
        public_host: format!("{id}.test"),
        api_address: String::new(),
        started_at: now,
        lease_until: now,
        alive: true,
    };
    store
        .renew_node(&node, Duration::from_secs(600))
        .await
        .expect("lease");
}

/// Records node `node` as holding agent `agent`'s session.
async fn claim(store: &Arc<dyn Store>, node: &str, agent: &str) {
    let now = chrono::Utc::now();
    let record = AgentRecord {
        id: agent.to_owned(),
        auth_id: "agent-1".to_owned(),
        info: Default::default(),
        address: "192.0.2.1:1234".to_owned(),
        connected: true,
        connected_at: Some(now),
        disconnected_at: None,
        last_heartbeat_at: Some(now),
        project: "default".to_owned(),
        owner_node: Some(node.to_owned()),
    };
    let claim = store.claim_agent(&record).await.expect("claim");
    assert_eq!(claim, AgentClaim::Claimed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_cannot_be_reached_is_named_in_a_503_and_in_the_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = shared_store(dir.path());
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let nowhere = closed.local_addr().expect("address").to_string();
    drop(closed);
    fake_node(&store, "node-gone", &nowhere).await;
    claim(&store, "node-gone", "dev-9").await;
    let a = Node::start(&store, "node-a", "23200-23249").await;
    let (status, answer) = a
        .call(
            Method::PUT,
            "/api/v1/clients/dev-9/tunnels?remote=22",
            &admin(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["errors"][0]["code"], "ERR_CODE_NODE_UNREACHABLE");
    let detail = answer["errors"][0]["detail"].as_str().expect("detail");
    assert!(detail.contains("node node-gone"), "{detail}");
    a.until_status("node-gone unreachable", |status| {
        status["cluster"]["nodes"].as_array().is_some_and(|nodes| {
            nodes.iter().any(|n| {
                n["id"] == "node-gone" && n["reachable"] == false && n["last_error"].is_string()
            })
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_that_disagree_about_the_holder_never_pass_a_request_back_and_forth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = shared_store(dir.path());
    // B starts believing A holds dev-7; then the store says B does, and A starts
    // believing that: each would send the request to the other.
    fake_node(&store, "node-a", "127.0.0.1:1").await;
    claim(&store, "node-a", "dev-7").await;
    let b = Node::start(&store, "node-b", "23250-23274").await;
    store
        .retire_node("node-a")
        .await
        .expect("end the fake lease");
    claim(&store, "node-b", "dev-7").await;
    let a = Node::start(&store, "node-a", "23275-23299").await;
    // Both know each other alive, at their real peer addresses.
    b.until_status("node-a alive and reachable", |status| {
        status["cluster"]["nodes"].as_array().is_some_and(|nodes| {
            nodes
                .iter()
                .any(|n| n["id"] == "node-a" && n["alive"] == true && n["reachable"] == true)
        })
    })
    .await;
    let (status, answer) = tokio::time::timeout(
        Duration::from_secs(20),
        a.call(
            Method::PUT,
            "/api/v1/clients/dev-7/tunnels?remote=22",
            &admin(),
            None,
        ),
    )
    .await
    .expect("an answer, not a loop");
    // B was asked, did not ask A again, and answered as the node it is: no session.
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(
        answer["errors"][0]["code"], "ERR_CODE_CLIENT_NOT_FOUND",
        "{answer}"
    );
}
