//! Test harness: real `rportd` and `rport` processes on loopback, an HTTP client for the
//! API, and an echo server as a tunnel target.

pub mod web;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const AGENT_AUTH: &str = "agent1:agent-pass-1";
pub const API_USER: &str = "admin";
pub const API_PASSWORD: &str = "admin-pass-1";

/// How long a test waits for an agent to attach, a state to change or a line to appear:
/// generous, since the machine may be busy, and only reached when something is wrong.
pub const ATTACH: Duration = Duration::from_secs(30);

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// The `code` of the first error in an API error envelope, or "".
pub fn error_code(body: &Value) -> &str {
    body["errors"][0]["code"].as_str().unwrap_or_default()
}

/// The `detail` of the first error in an API error envelope, or "".
pub fn error_detail(body: &Value) -> &str {
    body["errors"][0]["detail"].as_str().unwrap_or_default()
}

/// Polls `check` until it returns Some or `timeout` passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// A process's resident memory (VmRSS) in MiB; 0 once it is gone.
pub fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS:")
}

/// The most resident memory a process has had so far (VmHWM) in MiB; 0 once it is gone.
pub fn peak_rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmHWM:")
}

fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Lines a child writes to a pipe, collected by a thread.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn follow(self, pipe: impl Read + Send + 'static, echo_prefix: &'static str) {
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if std::env::var_os("E2E_VERBOSE").is_some() {
                    eprintln!("{echo_prefix}{line}");
                }
                if let Ok(mut lines) = self.0.lock() {
                    lines.push(line);
                }
            }
        });
    }

    pub fn all(&self) -> Vec<String> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn find(&self, needle: &str) -> Option<String> {
        self.all().into_iter().find(|line| line.contains(needle))
    }

    pub fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        wait_for(
            &format!("output line containing {needle:?}"),
            timeout,
            || self.find(needle),
        )
    }
}

/// Settings a test may change in the server's config file.
#[derive(Clone)]
pub struct ServerSettings {
    /// The address agents connect to (a test's own network namespace link, say).
    pub agent_host: String,
    pub agent_port: u16,
    pub agent_auth: String,
    pub used_ports: String,
    pub api_auth: Option<String>,
    pub extra_server: String,
    /// More `[api]` keys.
    pub extra_api: String,
    /// Whole sections after the others (`[database]`, `[cluster]`).
    pub extra_sections: String,
    pub log_level: String,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            agent_host: "127.0.0.1".into(),
            agent_port: 0,
            agent_auth: AGENT_AUTH.into(),
            used_ports: "20000-60000".into(),
            api_auth: Some(format!("{API_USER}:{API_PASSWORD}")),
            extra_server: String::new(),
            extra_api: String::new(),
            extra_sections: String::new(),
            log_level: "info".into(),
        }
    }
}

pub struct Rportd {
    child: Child,
    pub dir: PathBuf,
    pub api: String,
    pub agent_address: SocketAddr,
    pub fingerprint: String,
    pub stdout: Lines,
    pub stderr: Lines,
    http: ureq::Agent,
    pub auth_header: String,
}

/// The path of rport-cli's binary `name`: cargo hands it to rport-cli's own tests
/// (`own`); other packages' tests that borrow this harness (rportcli's) find it in the
/// same target directory as their own test binary, where `cargo test --workspace` or
/// `cargo build -p rport-cli` put it.
pub fn binary(name: &str, own: Option<&str>) -> String {
    if let Some(path) = own {
        return path.to_owned();
    }
    let test_binary = std::env::current_exe().expect("current test binary");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let profile_dir = test_binary
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build -p rport-cli --bins`",
        path.display()
    );
    path.display().to_string()
}

/// `program`, or `wrapper` running it (such as `unshare ... --` or `ip netns exec NAME`).
fn wrapped_command(wrapper: &[&str], program: &str) -> Command {
    match wrapper.split_first() {
        None => Command::new(program),
        Some((first, args)) => {
            let mut command = Command::new(first);
            command.args(args).arg(program);
            command
        }
    }
}

pub fn basic(user: &str, password: &str) -> String {
    use base64_lite::encode;
    format!("Basic {}", encode(format!("{user}:{password}").as_bytes()))
}

/// Enough base64 for a basic auth header, so tests need no extra crate.
mod base64_lite {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    pub fn encode(input: &[u8]) -> String {
        let mut out = String::new();
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

pub fn write_server_config(dir: &Path, settings: &ServerSettings) -> PathBuf {
    let api_auth = settings
        .api_auth
        .as_ref()
        .map(|auth| format!("auth = \"{auth}\"\n"))
        .unwrap_or_default();
    let agent_auth = if settings.agent_auth.is_empty() {
        String::new()
    } else {
        format!("auth = \"{}\"\n", settings.agent_auth)
    };
    let config = format!(
        r#"[server]
address = "{host}:{port}"
data_dir = "{data}"
{agent_auth}used_ports = ["{used}"]
excluded_ports = ["1-1024"]
{extra}
[api]
address = "127.0.0.1:0"
{api_auth}{extra_api}
[logging]
log_level = "{log_level}"
{extra_sections}
"#,
        host = settings.agent_host,
        port = settings.agent_port,
        data = dir.join("server-data").display(),
        used = settings.used_ports,
        extra = settings.extra_server,
        extra_api = settings.extra_api,
        log_level = settings.log_level,
        extra_sections = settings.extra_sections,
    );
    let path = dir.join("rportd.conf");
    std::fs::write(&path, config).expect("write config");
    path
}

impl Rportd {
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, &ServerSettings::default())
    }

    /// The default server on a given agent port: after a kill, the same server again, where
    /// its agents come back.
    pub fn start_on_agent_port(dir: &Path, agent_port: u16) -> Self {
        Self::start_with(
            dir,
            &ServerSettings {
                agent_port,
                ..Default::default()
            },
        )
    }

    pub fn start_with(dir: &Path, settings: &ServerSettings) -> Self {
        Self::start_wrapped(dir, settings, &[])
    }

    /// Like [`Rportd::start_with`], run through `wrapper` (a command and its arguments that
    /// end by running the rportd command line appended to them, like `unshare ... --`).
    pub fn start_wrapped(dir: &Path, settings: &ServerSettings, wrapper: &[&str]) -> Self {
        let config = write_server_config(dir, settings);
        let mut command = wrapped_command(
            wrapper,
            &binary("rportd", option_env!("CARGO_BIN_EXE_rportd")),
        );
        let mut child = command
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rportd");
        let stdout = Lines::default();
        let stderr = Lines::default();
        stdout
            .clone()
            .follow(child.stdout.take().expect("stdout"), "rportd| ");
        stderr
            .clone()
            .follow(child.stderr.take().expect("stderr"), "rportd! ");
        let timeout = Duration::from_secs(30);
        let api_line = stdout.wait_for("API listening on ", timeout);
        let api = api_line
            .split("API listening on ")
            .nth(1)
            .expect("api url")
            .trim()
            .to_owned();
        let agent_line = stdout.wait_for("agents connect to ", timeout);
        let agent_address: SocketAddr = agent_line
            .split("agents connect to ")
            .nth(1)
            .expect("agent address")
            .trim()
            .parse()
            .expect("agent address parses");
        let fingerprint = stdout
            .wait_for("rportd: fingerprint ", timeout)
            .split("fingerprint ")
            .nth(1)
            .expect("fingerprint")
            .trim()
            .to_owned();
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let auth_header = match &settings.api_auth {
            Some(auth) => {
                let (user, password) = auth.split_once(':').expect("user:password");
                basic(user, password)
            }
            None => String::new(),
        };
        Self {
            child,
            dir: dir.to_owned(),
            api,
            agent_address,
            fingerprint,
            stdout,
            stderr,
            http,
            auth_header,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("server-data")
    }

    /// Sends a request with the default credentials; returns status and JSON body (Null if none).
    pub fn request(&self, method: &str, path: &str) -> (u16, Value) {
        self.request_as(method, path, &self.auth_header.clone())
    }

    pub fn request_as(&self, method: &str, path: &str, authorization: &str) -> (u16, Value) {
        let url = format!("{}{}", self.api, path);
        let response = match method {
            "GET" => with_auth(self.http.get(&url), authorization).call(),
            "DELETE" => with_auth(self.http.delete(&url), authorization).call(),
            "PUT" => with_auth(self.http.put(&url), authorization).send_empty(),
            "POST" => with_auth(self.http.post(&url), authorization).send_empty(),
            other => panic!("unsupported method {other}"),
        };
        let response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let body = response.into_body().read_to_string().unwrap_or_default();
        let json = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {body}"))
        };
        (status, json)
    }

    pub fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let url = format!("{}{}", self.api, path);
        let response = self
            .http
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.into_body().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A request with a JSON body (`PUT .../acl`).
    pub fn send_json(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let url = format!("{}{}", self.api, path);
        let request = match method {
            "PUT" => self.http.put(&url),
            "POST" => self.http.post(&url),
            other => panic!("unsupported method {other}"),
        };
        let response = with_auth(request, &self.auth_header)
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.into_body().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Any request: method, path, `Authorization` value (empty for none), more headers and
    /// an optional JSON body. Returns status, JSON body (Null if none) and headers.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        authorization: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Reply {
        let url = format!("{}{}", self.api, path);
        let response = match (method, body) {
            ("GET", _) => {
                add_headers(with_auth(self.http.get(&url), authorization), headers).call()
            }
            ("DELETE", _) => {
                add_headers(with_auth(self.http.delete(&url), authorization), headers).call()
            }
            (method, body) => {
                let request = match method {
                    "PUT" => self.http.put(&url),
                    "POST" => self.http.post(&url),
                    other => panic!("unsupported method {other}"),
                };
                let request = add_headers(with_auth(request, authorization), headers)
                    .header("Content-Type", "application/json");
                match body {
                    Some(body) => request.send(body.to_string()),
                    None => request.send_empty(),
                }
            }
        };
        let response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.into_body().read_to_string().unwrap_or_default();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"))
        };
        Reply {
            status,
            body,
            headers,
        }
    }

    /// A bearer token for the default API user.
    pub fn bearer(&self) -> String {
        let (status, body) = self.request("GET", "/api/v1/login");
        assert_eq!(status, 200, "{body}");
        format!("Bearer {}", body["data"]["token"].as_str().expect("token"))
    }

    /// A tunnel by id from `GET /api/v1/tunnels?filter[status]=…` (live and past ones).
    pub fn tunnel(&self, id: &str) -> Option<Value> {
        let (status, body) = self.request(
            "GET",
            "/api/v1/tunnels?filter[status]=opened,pending,closed,terminated",
        );
        assert_eq!(status, 200, "{body}");
        body["data"]
            .as_array()
            .and_then(|list| list.iter().find(|t| t["id"] == id).cloned())
    }

    /// Waits until the tunnel `id` has `status`; returns it.
    pub fn wait_tunnel_status(&self, id: &str, status: &str, timeout: Duration) -> Value {
        wait_for(&format!("tunnel {id} {status}"), timeout, || {
            self.tunnel(id).filter(|t| t["status"] == status)
        })
    }

    pub fn client(&self, id: &str) -> Option<Value> {
        let (status, body) = self.request("GET", &format!("/api/v1/clients/{id}"));
        (status == 200).then(|| body["data"].clone())
    }

    pub fn wait_connection_state(&self, id: &str, state: &str, timeout: Duration) -> Value {
        wait_for(&format!("client {id} {state}"), timeout, || {
            self.client(id).filter(|c| c["connection_state"] == state)
        })
    }

    /// Opens a tunnel; returns the tunnel object.
    pub fn open_tunnel(&self, client: &str, query: &str) -> Value {
        let (status, body) =
            self.request("PUT", &format!("/api/v1/clients/{client}/tunnels?{query}"));
        assert_eq!(status, 200, "tunnel creation failed: {body}");
        body["data"].clone()
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        wait_for("rportd to exit", Duration::from_secs(20), || {
            self.child.try_wait().ok().flatten()
        })
    }
}

/// What [`Rportd::call`] got back.
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: ureq::http::HeaderMap,
}

fn add_headers<B>(
    mut request: ureq::RequestBuilder<B>,
    headers: &[(&str, &str)],
) -> ureq::RequestBuilder<B> {
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
}

fn with_auth<B>(request: ureq::RequestBuilder<B>, authorization: &str) -> ureq::RequestBuilder<B> {
    if authorization.is_empty() {
        request
    } else {
        request.header("Authorization", authorization)
    }
}

impl Drop for Rportd {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Rport {
    child: Child,
    pub stderr: Lines,
}

impl Rport {
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_wrapped(&[], args, env)
    }

    /// Runs rport under `wrapper` (such as `ip netns exec NAME`), which must exec it, so
    /// that the child's PID is rport's.
    pub fn start_wrapped(wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = wrapped_command(
            wrapper,
            &binary("rport", option_env!("CARGO_BIN_EXE_rport")),
        );
        command
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
            .env_remove("RPORT_AUTH")
            .env_remove("RPORT_FINGERPRINT");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn rport");
        let stderr = Lines::default();
        stderr
            .clone()
            .follow(child.stderr.take().expect("stderr"), "rport! ");
        Self { child, stderr }
    }

    /// The usual agent for `server`: id, tags, name, credentials and the pinned fingerprint.
    pub fn attach(server: &Rportd, id: &str, data_dir: &Path) -> Self {
        Self::attach_via(server, id, data_dir, server.agent_address)
    }

    /// Like [`Rport::attach`], but connecting to `address` (a proxy in front of the server).
    pub fn attach_via(server: &Rportd, id: &str, data_dir: &Path, address: SocketAddr) -> Self {
        Self::attach_with(server, id, data_dir, address, &[], &[])
    }

    /// Like [`Rport::attach_via`], with more flags before the server address and
    /// positional remotes after it.
    pub fn attach_with(
        server: &Rportd,
        id: &str,
        data_dir: &Path,
        address: SocketAddr,
        flags: &[&str],
        remotes: &[&str],
    ) -> Self {
        Self::attach_wrapped(server, id, data_dir, address, flags, remotes, &[])
    }

    /// Like [`Rport::attach_with`], run under `wrapper` (see [`Rport::start_wrapped`]).
    pub fn attach_wrapped(
        server: &Rportd,
        id: &str,
        data_dir: &Path,
        address: SocketAddr,
        flags: &[&str],
        remotes: &[&str],
        wrapper: &[&str],
    ) -> Self {
        let address = address.to_string();
        let mut args = flags.to_vec();
        args.extend_from_slice(&[
            "--id",
            id,
            "--fingerprint",
            &server.fingerprint,
            "--tag",
            "Linux",
            "--tag",
            "Office Berlin",
            "--name",
            "My Test VM",
            "--auth",
            AGENT_AUTH,
            "--data-dir",
            data_dir.to_str().expect("utf-8 path"),
            "--keep-alive",
            "5s",
            "--max-retry-interval",
            "2s",
            &address,
        ]);
        args.extend_from_slice(remotes);
        Self::start_wrapped(wrapper, &args, &[])
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Rport {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP echo server on 127.0.0.1:0, one thread per connection, with an accept queue as
/// deep as rportd's: a thousand connections opened at once must all reach it.
pub fn echo_server() -> SocketAddr {
    echo_server_at(std::net::Ipv4Addr::LOCALHOST)
}

/// [`echo_server`] on another local address (a test's own network namespace link, say).
pub fn echo_server_at(ip: std::net::Ipv4Addr) -> SocketAddr {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .expect("echo socket");
    socket
        .bind(&SocketAddr::from((ip, 0)).into())
        .expect("bind echo");
    socket.listen(4096).expect("listen");
    echo_on(socket.into())
}

/// A TCP echo server on a listener the test bound. An accept error (a connection reset
/// while queued) skips that connection; it never ends the server.
pub fn echo_on(listener: TcpListener) -> SocketAddr {
    let address = listener.local_addr().expect("echo addr");
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else {
                thread::sleep(Duration::from_millis(1));
                continue;
            };
            thread::spawn(move || {
                let Ok(mut reader) = stream.try_clone() else {
                    return;
                };
                let mut writer = stream;
                let _ = std::io::copy(&mut reader, &mut writer);
                let _ = writer.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    address
}

/// Deterministic bytes for a connection.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

/// Sends `len` bytes through `address` (an echo behind a tunnel), half-closes, reads the
/// echo to the end, and checks it by SHA-256.
pub fn echo_round_trip(address: SocketAddr, len: usize, seed: u64) {
    use sha2::{Digest, Sha256};
    let stream = TcpStream::connect(address).expect("connect to tunnel");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let data = payload(len, seed);
    let expected = Sha256::digest(&data);
    let mut writer = stream.try_clone().expect("clone");
    let sender = thread::spawn(move || {
        writer.write_all(&data).expect("write through tunnel");
        writer
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
    });
    let mut reader = stream;
    let mut received = Vec::with_capacity(len);
    reader.read_to_end(&mut received).expect("read echo");
    sender.join().expect("sender");
    assert_eq!(received.len(), len, "echoed length");
    assert_eq!(Sha256::digest(&received), expected, "echoed bytes differ");
}

/// The tunnel's public address as a client on this machine reaches it.
pub fn tunnel_address(tunnel: &Value) -> SocketAddr {
    let port: u16 = tunnel["lport"]
        .as_str()
        .expect("lport is a string")
        .parse()
        .expect("port");
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A TCP forwarder in front of the server that can simulate a pulled cable: after
/// `freeze`, the connections it carries so far go silent (no bytes, no FIN, no RST) while
/// new connections pass normally.
pub struct FreezableProxy {
    pub address: SocketAddr,
    accepted: Arc<AtomicU64>,
    frozen_below: Arc<AtomicU64>,
}

impl FreezableProxy {
    pub fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let address = listener.local_addr().expect("proxy addr");
        let accepted = Arc::new(AtomicU64::new(0));
        let frozen_below = Arc::new(AtomicU64::new(0));
        let (counter, frozen) = (Arc::clone(&accepted), Arc::clone(&frozen_below));
        thread::spawn(move || {
            for inbound in listener.incoming().map_while(Result::ok) {
                let generation = counter.fetch_add(1, Ordering::SeqCst);
                let Ok(outbound) = TcpStream::connect(target) else {
                    continue;
                };
                for (from, to) in [
                    (inbound.try_clone(), outbound.try_clone()),
                    (outbound.try_clone(), inbound.try_clone()),
                ] {
                    let (Ok(from), Ok(to)) = (from, to) else {
                        continue;
                    };
                    let frozen = Arc::clone(&frozen);
                    thread::spawn(move || {
                        forward_until_frozen(from, to, || {
                            generation < frozen.load(Ordering::SeqCst)
                        })
                    });
                }
            }
        });
        Self {
            address,
            accepted,
            frozen_below,
        }
    }

    /// Every connection accepted so far goes silent.
    pub fn freeze(&self) {
        self.frozen_below
            .store(self.accepted.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

fn forward_until_frozen(mut from: TcpStream, mut to: TcpStream, frozen: impl Fn() -> bool) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buffer = vec![0u8; 64 * 1024];
    // Bounded: a frozen connection is held open for a while, then dropped.
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if frozen() {
            thread::sleep(Duration::from_millis(50));
            continue;
        }
        match from.read(&mut buffer) {
            Ok(0) => {
                let _ = to.shutdown(std::net::Shutdown::Write);
                return;
            }
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    return;
                }
            }
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// An agent credential bound to project `berlin-office` by [`fleet`]'s auth file.
pub const BERLIN_AUTH: &str = "berlin-cred:berlin-pass-1";

/// A server whose auth file binds `agent1` to `default` and `berlin-cred` to
/// `berlin-office`, with an agent in each: `default-1` and `berlin-1`.
pub fn fleet(dir: &Path) -> (Rportd, Rport, Rport) {
    fleet_with(dir, "")
}

/// [`fleet`], with more `[server]` keys.
pub fn fleet_with(dir: &Path, extra_server: &str) -> (Rportd, Rport, Rport) {
    let auth_file = dir.join("client-auth.json");
    let (agent1, password1) = AGENT_AUTH.split_once(':').expect("id:password");
    let (berlin, berlin_password) = BERLIN_AUTH.split_once(':').expect("id:password");
    std::fs::write(
        &auth_file,
        json!({
            agent1: password1,
            berlin: {"password": berlin_password, "project": "berlin-office"},
        })
        .to_string(),
    )
    .expect("write auth file");
    let server = Rportd::start_with(
        dir,
        &ServerSettings {
            agent_auth: String::new(),
            extra_server: format!(
                "auth_file = {:?}\n{extra_server}",
                auth_file.display().to_string()
            ),
            ..Default::default()
        },
    );
    let default_agent = Rport::attach(&server, "default-1", &dir.join("agent-default"));
    let berlin_agent = start_agent(&server, "berlin-1", BERLIN_AUTH, &dir.join("agent-berlin"));
    server.wait_connection_state("default-1", "connected", Duration::from_secs(30));
    server.wait_connection_state("berlin-1", "connected", Duration::from_secs(30));
    (server, default_agent, berlin_agent)
}

pub fn start_agent(server: &Rportd, id: &str, auth: &str, data_dir: &Path) -> Rport {
    Rport::start(&[
        "--id",
        id,
        "--fingerprint",
        &server.fingerprint,
        "--auth",
        auth,
        "--data-dir",
        data_dir.to_str().expect("utf-8"),
        "--keep-alive",
        "5s",
        "--max-retry-interval",
        "2s",
        &server.agent_address.to_string(),
    ])
}

/// Taken by the tests that load the whole machine (a thousand connections at once,
/// thousands of stalled readers, floods of requests), so that in the one test binary they
/// run one at a time, as they did when each had a binary of its own: one's load must not
/// starve another's deadlines.
pub fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
