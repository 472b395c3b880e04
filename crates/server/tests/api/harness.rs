//! Builds a whole server on a tempdir without binding anything, and calls its router
//! in-process: requests with a peer address, answers as status, headers and JSON.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use base64::Engine as _;
use http_body_util::BodyExt as _;
use rport_store::{AgentRecord, ProjectRecord, SqliteStore, Store};
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// The `[api] auth` user every server has unless a test asks for none.
pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin-password-1";
/// The address requests come from unless a test says otherwise.
pub const PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000);

/// What a test server is built from.
pub struct Setup {
    /// `[api] auth`: `None` leaves the server to generate an `admin` in the store.
    pub api_auth: Option<String>,
    /// More `[server]` keys.
    pub server: String,
    /// More `[api]` keys.
    pub api: String,
    /// Projects to create in the store before the server starts (`default` always exists).
    pub projects: Vec<&'static str>,
    /// Agents the store knows of before the server starts: `(id, project)`, disconnected.
    pub clients: Vec<(&'static str, &'static str)>,
    /// Tunnels of an earlier run, closed: `(id, client, project)`.
    pub closed_tunnels: Vec<(&'static str, &'static str, &'static str)>,
    /// Agents the store knows of before the server starts, with facts of their own.
    pub agent_records: Vec<AgentRecord>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            api_auth: Some(format!("{ADMIN}:{ADMIN_PASSWORD}")),
            server: String::new(),
            api: String::new(),
            projects: Vec::new(),
            clients: Vec::new(),
            closed_tunnels: Vec::new(),
            agent_records: Vec::new(),
        }
    }
}

impl Setup {
    /// Project `berlin` beside `default`, a disconnected client in each (`c1` in
    /// `default`, `c2` in `berlin`) and a closed tunnel of each (`t-old`, `t-berlin`).
    pub fn two_projects() -> Self {
        Self {
            projects: vec!["berlin"],
            clients: vec![("c1", "default"), ("c2", "berlin")],
            closed_tunnels: vec![("t-old", "c1", "default"), ("t-berlin", "c2", "berlin")],
            ..Default::default()
        }
    }
}

pub struct TestServer {
    router: axum::Router,
    /// The `admin` password the server generated when `[api] auth` was left out.
    pub generated_admin_password: Option<String>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// A server with the `[api] auth` admin and nothing else.
    pub async fn start() -> Self {
        Self::with(Setup::default()).await
    }

    pub async fn with(setup: Setup) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let api_auth = setup
            .api_auth
            .map(|auth| format!("auth = \"{auth}\"\n"))
            .unwrap_or_default();
        let text = format!(
            r#"[server]
address = "127.0.0.1:0"
data_dir = "{data}"
used_ports = ["20000-20100"]
excluded_ports = ["1-1024"]
{server}
[api]
address = "127.0.0.1:0"
{api_auth}{api}
"#,
            data = data_dir.display(),
            server = setup.server,
            api = setup.api,
        );
        let config = rport_server::ServerConfig::from_toml_str(&text, "test.conf")
            .expect("test config is valid");
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&rport_store::default_db_path(&data_dir)).expect("open store"),
        );
        for key in setup.projects {
            let project = ProjectRecord {
                key: key.to_owned(),
                name: key.to_owned(),
                created_at: chrono::Utc::now(),
            };
            store.insert_project(&project).await.expect("seed project");
        }
        for (id, project) in setup.clients {
            store
                .upsert_agent(&agent(id, project))
                .await
                .expect("seed client");
        }
        for record in &setup.agent_records {
            store.upsert_agent(record).await.expect("seed client");
        }
        for (id, client, project) in setup.closed_tunnels {
            store
                .insert_tunnel(&closed_tunnel(id, client, project))
                .await
                .expect("seed tunnel");
        }
        let server = rport_server::Server::with_store(config, store)
            .await
            .expect("server builds");
        let generated_admin_password = server
            .generated
            .iter()
            .find(|credential| credential.id == ADMIN)
            .map(|credential| credential.password.clone());
        Self {
            router: server.router(),
            generated_admin_password,
            _dir: dir,
        }
    }

    /// A request to send with [`Call::send`].
    pub fn call(&self, method: Method, path: &str) -> Call<'_> {
        Call {
            server: self,
            request: Request::builder().method(method).uri(path),
            body: Body::empty(),
            peer: PEER,
        }
    }

    /// Status and answer of a request as `authorization` (a whole header value).
    pub async fn request(&self, method: Method, path: &str, authorization: &str) -> Reply {
        self.call(method, path).auth(authorization).send().await
    }

    /// The same with a JSON body.
    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        authorization: &str,
        body: &Value,
    ) -> Reply {
        self.call(method, path)
            .auth(authorization)
            .json(body)
            .send()
            .await
    }

    /// A bearer token for `user` from `POST /api/v1/login`, as an `Authorization` value.
    pub async fn login(&self, user: &str, password: &str) -> String {
        let reply = self
            .call(Method::POST, "/api/v1/login")
            .json(&json!({"username": user, "password": password}))
            .send()
            .await;
        assert_eq!(reply.status, StatusCode::OK, "login {user}: {}", reply.body);
        let token = reply.body["data"]["token"].as_str().expect("token");
        format!("Bearer {token}")
    }

    /// Creates a store user through the API as the `[api] auth` admin and logs it in.
    pub async fn user(&self, name: &str, roles: Value) -> String {
        let reply = self
            .send_json(
                Method::POST,
                "/api/v1/users",
                &admin(),
                &json!({"username": name, "password": password_of(name), "roles": roles}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{name}: {}", reply.body);
        self.login(name, &password_of(name)).await
    }

    /// Creates a project through the API as the `[api] auth` admin.
    pub async fn project(&self, key: &str) {
        let reply = self
            .send_json(
                Method::POST,
                "/api/v1/projects",
                &admin(),
                &json!({ "key": key }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{key}: {}", reply.body);
    }
}

pub struct Call<'a> {
    server: &'a TestServer,
    request: axum::http::request::Builder,
    body: Body,
    peer: SocketAddr,
}

impl Call<'_> {
    /// `Authorization`, unless empty.
    pub fn auth(self, authorization: &str) -> Self {
        if authorization.is_empty() {
            return self;
        }
        self.header(header::AUTHORIZATION.as_str(), authorization)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.request = self.request.header(name, value);
        self
    }

    pub fn json(self, body: &Value) -> Self {
        self.raw_json(body.to_string())
    }

    /// A body sent as JSON whatever it holds.
    pub fn raw_json(mut self, body: impl Into<Body>) -> Self {
        self.request = self
            .request
            .header(header::CONTENT_TYPE, "application/json");
        self.body = body.into();
        self
    }

    /// A body sent as `application/x-www-form-urlencoded`, as a browser's form posts it.
    pub fn form(mut self, fields: &[(&str, &str)]) -> Self {
        self.request = self
            .request
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        self.body = serde_urlencoded::to_string(fields)
            .expect("fields encode")
            .into();
        self
    }

    pub fn from(mut self, peer: SocketAddr) -> Self {
        self.peer = peer;
        self
    }

    /// The answer as it comes, its body not read: for streams (`/api/v1/events`).
    pub async fn open(self) -> axum::response::Response {
        let request = self
            .request
            .extension(ConnectInfo(self.peer))
            .body(self.body)
            .expect("a valid request");
        self.server
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible")
    }

    pub async fn send(self) -> Reply {
        let request = self
            .request
            .extension(ConnectInfo(self.peer))
            .body(self.body)
            .expect("a valid request");
        let response = self
            .server
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("read the body")
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }
}

/// An answer: status, headers and the body as JSON (a JSON string if it was not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["errors"][0]["code"].as_str().unwrap_or_default()
    }

    pub fn detail(&self) -> &str {
        self.body["errors"][0]["detail"]
            .as_str()
            .unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// Asserts `status` and the error envelope with `code`, a title and a detail.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status.as_u16(), self.code()),
            (status, code),
            "{}",
            self.body
        );
        let errors = self.body["errors"].as_array().expect("an errors array");
        assert_eq!(errors.len(), 1, "{}", self.body);
        let error = errors[0].as_object().expect("an error object");
        let mut keys: Vec<&str> = error.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["code", "detail", "title"], "{}", self.body);
        assert!(
            !self.detail().is_empty() && error["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{}",
            self.body
        );
        assert_eq!(self.header("content-type"), "application/json");
    }

    /// Asserts `status` and a `{"data": ...}` answer; returns the data.
    #[track_caller]
    pub fn assert_data(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        assert!(
            self.body.get("data").is_some() && self.body.get("errors").is_none(),
            "not a data envelope: {}",
            self.body
        );
        &self.body["data"]
    }

    /// `meta.count` of a listing.
    pub fn count(&self) -> u64 {
        self.body["meta"]["count"].as_u64().expect("meta.count")
    }
}

/// A disconnected agent as the store holds it.
pub fn agent(id: &str, project: &str) -> AgentRecord {
    let now = chrono::Utc::now();
    AgentRecord {
        id: id.to_owned(),
        auth_id: format!("{project}-credential"),
        info: rport_protocol::SystemInfo {
            name: format!("{id} name"),
            hostname: id.to_owned(),
            ..Default::default()
        },
        address: "192.0.2.10:51000".to_owned(),
        connected: false,
        connected_at: Some(now - chrono::Duration::minutes(5)),
        disconnected_at: Some(now),
        last_heartbeat_at: Some(now - chrono::Duration::seconds(20)),
        project: project.to_owned(),
        owner_node: None,
    }
}

pub fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// The `[api] auth` admin's basic credentials.
pub fn admin() -> String {
    basic(ADMIN, ADMIN_PASSWORD)
}

/// The password [`TestServer::user`] gives a user.
pub fn password_of(name: &str) -> String {
    format!("{name}-long-password-1")
}

/// A tunnel of an earlier run that an operator closed, as the store holds it.
pub fn closed_tunnel(id: &str, agent_id: &str, project: &str) -> rport_store::TunnelRecord {
    let now = chrono::Utc::now();
    rport_store::TunnelRecord {
        id: id.to_owned(),
        agent_id: agent_id.to_owned(),
        name: String::new(),
        protocol: "tcp".to_owned(),
        lhost: "0.0.0.0".to_owned(),
        lport: 20001,
        lport_random: true,
        rhost: "127.0.0.1".to_owned(),
        rport: 22,
        scheme: None,
        status: rport_store::TunnelStatus::Closed,
        created_by: ADMIN.to_owned(),
        created_at: now - chrono::Duration::minutes(10),
        closed_at: Some(now),
        close_reason: Some("deleted".to_owned()),
        options: rport_store::TunnelOptions {
            acl: Some("192.0.2.1".to_owned()),
            ..Default::default()
        },
        counters: Default::default(),
        last_active_at: None,
        project: project.to_owned(),
        owner_node: None,
        damage: None,
    }
}
