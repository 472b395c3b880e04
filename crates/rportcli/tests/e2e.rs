//! End to end: the `rportcli` binary against a real `rportd` and `rport` on loopback, with
//! a private `sshd` as the device's ssh server for `-b` and `rportcli ssh`.

#[path = "../../cli/tests/e2e/support/mod.rs"]
#[allow(dead_code)]
mod support;

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{
    API_PASSWORD, API_USER, ATTACH, Rport, Rportd, echo_round_trip, echo_server, wait_for,
};

const AGENT: &str = "dev-1";
/// The name `Rport::attach` gives its agent.
const AGENT_NAME: &str = "My Test VM";

/// A server with one connected agent.
fn server_with_agent(dir: &Path) -> (Rportd, Rport) {
    let server = Rportd::start(dir);
    let agent = Rport::attach(&server, AGENT, &dir.join("agent"));
    server.wait_connection_state(AGENT, "connected", ATTACH);
    (server, agent)
}

/// rportcli with a clean environment: no RPORT_* from the machine, HOME and CONFIG_PATH
/// in the test's directory, and `env` on top.
fn rportcli_command(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rportcli"));
    for (key, _) in std::env::vars() {
        if key.starts_with("RPORT") || key == "CONFIG_PATH" || key == "COLUMNS" {
            command.env_remove(key);
        }
    }
    command
        .env("HOME", dir)
        .env("CONFIG_PATH", dir.join("rportcli.json"))
        .args(args)
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    fn failed(self) -> Self {
        assert_ne!(self.code, 0, "expected a failure; stdout: {}", self.stdout);
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }
}

fn finished(output: Output) -> Run {
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn rportcli(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    finished(
        rportcli_command(dir, env, args)
            .output()
            .expect("run rportcli"),
    )
}

/// The environment that logs in with the test server's admin password.
fn password_env(server: &Rportd) -> [(&'static str, String); 3] {
    [
        ("RPORT_SERVER_URL", server.api.clone()),
        ("RPORT_USER", API_USER.to_owned()),
        ("RPORT_PASSWORD", API_PASSWORD.to_owned()),
    ]
}

fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// A loopback port nobody listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

fn live_tunnels(server: &Rportd) -> Vec<Value> {
    let (status, body) = server.request("GET", "/api/v1/tunnels");
    assert_eq!(status, 200, "{body}");
    body["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t["status"] == "opened" || t["status"] == "pending")
        .collect()
}

#[test]
fn init_saves_a_private_token_and_the_environment_overrides_it() {
    let dir = support::tempdir();
    let (server, _agent) = server_with_agent(dir.path());
    let config = dir.path().join("rportcli.json");

    let run = rportcli(
        dir.path(),
        &[],
        &[
            "init",
            "-s",
            &server.api,
            "-l",
            API_USER,
            "-p",
            API_PASSWORD,
        ],
    )
    .ok();
    assert!(!run.stdout.contains(API_PASSWORD) && !run.stderr.contains(API_PASSWORD));
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&config).expect("config written"))
            .expect("config is JSON");
    assert_eq!(saved["server"], server.api.as_str());
    assert!(
        saved["token"].as_str().is_some_and(|t| !t.is_empty()),
        "{saved}"
    );
    assert!(!saved.to_string().contains(API_PASSWORD));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "config mode {mode:o}");
    }

    // The saved token alone is enough.
    let me = rportcli(dir.path(), &[], &["me", "-o", "json"]).ok().json();
    assert_eq!(me["username"], API_USER);

    // A wrong password: init fails and says what to check; nothing echoes it.
    let wrong = rportcli(
        dir.path(),
        &[],
        &[
            "init",
            "-s",
            &server.api,
            "-l",
            API_USER,
            "-p",
            "not-the-password",
        ],
    )
    .failed();
    assert!(
        wrong.stderr.contains("RPORT_USER/RPORT_PASSWORD"),
        "{}",
        wrong.stderr
    );
    assert!(wrong.stderr.contains("rportcli init"), "{}", wrong.stderr);
    assert!(
        !wrong.stderr.contains("not-the-password"),
        "{}",
        wrong.stderr
    );

    // Without -p and without a terminal to ask on: a clear refusal.
    let no_password = rportcli(
        dir.path(),
        &[],
        &["init", "-s", &server.api, "-l", API_USER],
    )
    .failed();
    assert!(no_password.stderr.contains("-p"), "{}", no_password.stderr);

    // The environment's user and password win over the file; a wrong one is refused.
    std::fs::remove_file(&config).expect("remove config");
    let env = password_env(&server);
    let me = rportcli(dir.path(), &as_refs(&env), &["me", "-o", "json"])
        .ok()
        .json();
    assert_eq!(me["username"], API_USER);
    let refused = rportcli(
        dir.path(),
        &[
            ("RPORT_SERVER_URL", &server.api),
            ("RPORT_USER", API_USER),
            ("RPORT_PASSWORD", "wrong-password"),
        ],
        &["client", "list"],
    )
    .failed();
    assert!(
        refused.stderr.contains("RPORT_USER/RPORT_PASSWORD"),
        "{}",
        refused.stderr
    );

    // RPORT_API_TOKEN: an API token with its user, the file ignored.
    let reply = server.call(
        "POST",
        "/api/v1/me/tokens",
        &server.auth_header,
        &[],
        Some(&json!({"name": "rportcli-test", "scope": "read+write"})),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let token = reply.body["data"]["token"].as_str().expect("token");
    let me = rportcli(
        dir.path(),
        &[
            ("RPORT_SERVER_URL", &server.api),
            ("RPORT_API_USER", API_USER),
            ("RPORT_API_TOKEN", token),
        ],
        &["me", "-o", "json"],
    )
    .ok()
    .json();
    assert_eq!(me["username"], API_USER);

    // No settings at all: what to run.
    let nothing = rportcli(dir.path(), &[], &["client", "list"]).failed();
    assert!(
        nothing.stderr.contains("rportcli init"),
        "{}",
        nothing.stderr
    );

    // An unreachable server is named.
    let nowhere = format!("http://127.0.0.1:{}", closed_port());
    let unreachable = rportcli(
        dir.path(),
        &[
            ("RPORT_SERVER_URL", &nowhere),
            ("RPORT_USER", API_USER),
            ("RPORT_PASSWORD", API_PASSWORD),
        ],
        &["status"],
    )
    .failed();
    assert!(
        unreachable.stderr.contains(&nowhere),
        "{}",
        unreachable.stderr
    );
}

#[test]
fn clients_are_listed_and_shown_as_human_json_and_yaml() {
    let dir = support::tempdir();
    let (server, _agent) = server_with_agent(dir.path());
    let env = password_env(&server);
    let env = as_refs(&env);

    let list = rportcli(dir.path(), &env, &["client", "list", "-o", "json"])
        .ok()
        .json();
    assert_eq!(list[0]["id"], AGENT, "{list}");

    let yaml = rportcli(dir.path(), &env, &["client", "list", "-o", "yaml"])
        .ok()
        .stdout;
    assert!(
        yaml.lines()
            .any(|l| l.trim_start_matches("- ").trim() == format!("id: {AGENT}")),
        "{yaml}"
    );

    let mut wide = env.clone();
    wide.push(("COLUMNS", "200"));
    let human = rportcli(dir.path(), &wide, &["client", "list"]).ok().stdout;
    let header = human.lines().next().expect("header");
    for column in [
        "ID",
        "NAME",
        "TUNNELS",
        "REMOTE ADDRESS",
        "HOSTNAME",
        "OS_KERNEL",
        "S",
    ] {
        assert!(header.contains(column), "{human}");
    }
    assert!(
        human.contains(AGENT) && human.contains(AGENT_NAME),
        "{human}"
    );

    let mut narrow = env.clone();
    narrow.push(("COLUMNS", "40"));
    let fitted = rportcli(dir.path(), &narrow, &["client", "list"])
        .ok()
        .stdout;
    for line in fitted.lines() {
        assert!(
            line.chars().count() <= 40,
            "{line:?} is wider than 40:\n{fitted}"
        );
    }

    for args in [
        vec!["client", "get", AGENT, "-o", "json"],
        vec!["client", "get", "-c", AGENT, "-o", "json"],
        vec!["client", "get", "-n", AGENT_NAME, "-o", "json"],
    ] {
        let agent = rportcli(dir.path(), &env, &args).ok().json();
        assert_eq!(agent["id"], AGENT, "{args:?}: {agent}");
    }
    let shown = rportcli(dir.path(), &wide, &["client", "get", "-c", AGENT])
        .ok()
        .stdout;
    assert!(shown.starts_with(&format!("Client [{AGENT}]")), "{shown}");

    let unknown = rportcli(dir.path(), &env, &["client", "get", "-c", "no-such-agent"]).failed();
    assert!(
        unknown.stderr.contains("no-such-agent"),
        "{}",
        unknown.stderr
    );
    let unknown = rportcli(dir.path(), &env, &["client", "get", "-n", "nobody"]).failed();
    assert!(
        unknown.stderr.contains("unknown client"),
        "{}",
        unknown.stderr
    );

    let status = rportcli(dir.path(), &env, &["status", "-o", "json"])
        .ok()
        .json();
    assert!(status["version"].is_string(), "{status}");
    let bad_format = rportcli(dir.path(), &env, &["status", "-o", "xml"]).failed();
    assert!(
        bad_format.stderr.contains("unknown format"),
        "{}",
        bad_format.stderr
    );
    rportcli(dir.path(), &[], &["version"]).ok();
}

#[test]
fn tunnels_are_created_listed_and_deleted() {
    let dir = support::tempdir();
    let (server, _agent) = server_with_agent(dir.path());
    let env = password_env(&server);
    let env = as_refs(&env);
    let echo = echo_server();
    let remote = echo.to_string();

    let created = rportcli(
        dir.path(),
        &env,
        &["tunnel", "create", "-c", AGENT, "-r", &remote, "-o", "json"],
    )
    .ok()
    .json();
    let id = created["id"].as_str().expect("tunnel id").to_owned();
    // No -a: the caller's own address.
    assert_eq!(created["acl"], "127.0.0.1", "{created}");
    assert_eq!(created["client_id"], AGENT);
    echo_round_trip(support::tunnel_address(&created), 4096, 7);

    let listed = rportcli(dir.path(), &env, &["tunnel", "list", "-o", "json"])
        .ok()
        .json();
    assert!(
        listed
            .as_array()
            .expect("array")
            .iter()
            .any(|t| t["id"] == id.as_str() && t["client_id"] == AGENT),
        "{listed}"
    );
    let mut wide = env.clone();
    wide.push(("COLUMNS", "250"));
    let human = rportcli(dir.path(), &wide, &["tunnel", "list", "-c", AGENT])
        .ok()
        .stdout;
    assert!(
        human.starts_with("Tunnels\n") && human.contains("CLIENT_ID"),
        "{human}"
    );

    // By name, with -a, and -t for the tunnel id as issue #18 writes it.
    let second = rportcli(
        dir.path(),
        &env,
        &[
            "tunnel",
            "create",
            "-n",
            AGENT_NAME,
            "-r",
            &remote,
            "-a",
            "127.0.0.0/8",
            "-o",
            "yaml",
        ],
    )
    .ok()
    .stdout;
    let second_id = second
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .expect("yaml id")
        .trim_matches('"')
        .to_owned();
    rportcli(
        dir.path(),
        &env,
        &["tunnel", "delete", "-c", AGENT, "-t", &second_id],
    )
    .ok();
    let deleted = rportcli(
        dir.path(),
        &env,
        &[
            "tunnel", "delete", "-c", AGENT, "--tunnel", &id, "-f", "-o", "json",
        ],
    )
    .ok()
    .json();
    assert_eq!(deleted["status"], "Tunnel successfully deleted");
    assert!(live_tunnels(&server).is_empty());

    // What went wrong, in words that say what to do.
    let offline = rportcli(
        dir.path(),
        &env,
        &["tunnel", "create", "-c", "no-such-agent", "-r", "22"],
    )
    .failed();
    assert!(
        offline.stderr.contains("not connected"),
        "{}",
        offline.stderr
    );
    let closed = format!("127.0.0.1:{}", closed_port());
    let not_open = rportcli(
        dir.path(),
        &env,
        &["tunnel", "create", "-c", AGENT, "-r", &closed, "-p"],
    )
    .failed();
    assert!(
        not_open.stderr.contains("nothing listens"),
        "{}",
        not_open.stderr
    );
    let gone = rportcli(
        dir.path(),
        &env,
        &["tunnel", "delete", "-c", AGENT, "-t", "999999"],
    )
    .failed();
    assert!(
        gone.stderr.contains("999999") || gone.stderr.contains("not found"),
        "{}",
        gone.stderr
    );
    let no_remote = rportcli(dir.path(), &env, &["tunnel", "create", "-c", AGENT]).failed();
    assert!(no_remote.stderr.contains("-r"), "{}", no_remote.stderr);
}

#[test]
fn projects_filter_agents_and_port_tunnels_use_api_v2() {
    let dir = support::tempdir();
    let (server, _default, _berlin) = support::fleet(dir.path());
    let env = password_env(&server);
    let env = as_refs(&env);

    let berlin = rportcli(
        dir.path(),
        &env,
        &["client", "list", "--project", "berlin-office", "-o", "json"],
    )
    .ok()
    .json();
    let ids: Vec<&str> = berlin
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    assert_eq!(ids, ["berlin-1"], "{berlin}");

    let echo = echo_server();
    let port = echo.port().to_string();
    let created = rportcli(
        dir.path(),
        &env,
        &[
            "port-tunnel",
            "create",
            "--project",
            "berlin-office",
            "-c",
            "berlin-1",
            "-r",
            &port,
            "-o",
            "json",
        ],
    )
    .ok()
    .json();
    let id = created["port_tunnel_id"]
        .as_str()
        .expect("port_tunnel_id")
        .to_owned();
    let server_port = created["server_port"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| created["server_port"].to_string());
    echo_round_trip(
        SocketAddr::from(([127, 0, 0, 1], server_port.parse().expect("server port"))),
        1024,
        3,
    );
    let listed = rportcli(
        dir.path(),
        &env,
        &[
            "port-tunnel",
            "list",
            "--project",
            "berlin-office",
            "-o",
            "json",
        ],
    )
    .ok()
    .json();
    assert!(
        listed
            .as_array()
            .expect("array")
            .iter()
            .any(|t| t["port_tunnel_id"] == id.as_str()),
        "{listed}"
    );
    rportcli(
        dir.path(),
        &env,
        &["port-tunnel", "delete", "--project", "berlin-office", &id],
    )
    .ok();
    let closed = rportcli(
        dir.path(),
        &env,
        &[
            "port-tunnel",
            "get",
            "--project",
            "berlin-office",
            &id,
            "-o",
            "json",
        ],
    )
    .ok()
    .json();
    assert_eq!(closed["status"], "Closed", "{closed}");

    let elsewhere = rportcli(
        dir.path(),
        &env,
        &[
            "port-tunnel",
            "create",
            "--project",
            "berlin-office",
            "-c",
            "default-1",
            "-r",
            &port,
        ],
    )
    .failed();
    assert!(
        elsewhere.stderr.contains("--project"),
        "{}",
        elsewhere.stderr
    );
    let without = rportcli(dir.path(), &env, &["port-tunnel", "list"]).failed();
    assert!(without.stderr.contains("--project"), "{}", without.stderr);
}

/// A private sshd on loopback: its own host key, config and authorized key; the test
/// logs in as the user running it.
struct Sshd {
    child: Child,
    port: u16,
    key: PathBuf,
    user: String,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// sshd and ssh, or None to skip where they are missing (never under CI).
fn ssh_tools() -> Option<(PathBuf, PathBuf)> {
    let sshd = PathBuf::from("/usr/sbin/sshd");
    let ssh = ["/usr/bin/ssh", "/bin/ssh"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    match (sshd.exists(), ssh) {
        (true, Some(ssh)) => Some((sshd, ssh)),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "sshd or ssh is missing: install openssh-server and openssh-client (.ci/test does)"
            );
            eprintln!(
                "skipped: sshd or ssh missing (apt-get install openssh-server openssh-client)"
            );
            None
        }
    }
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("run ssh-keygen");
    assert!(status.success(), "ssh-keygen failed");
}

fn start_sshd(dir: &Path, sshd: &Path) -> Sshd {
    let dir = dir.join("sshd");
    std::fs::create_dir_all(&dir).expect("sshd dir");
    keygen(&dir.join("host_key"));
    keygen(&dir.join("user_key"));
    std::fs::copy(dir.join("user_key.pub"), dir.join("authorized_keys")).expect("authorized_keys");
    let user = String::from_utf8(
        Command::new("id")
            .arg("-un")
            .output()
            .expect("id -un")
            .stdout,
    )
    .expect("utf-8")
    .trim()
    .to_owned();
    // Debian's sshd wants its privilege separation directory even for a private instance.
    let _ = std::fs::create_dir_all("/run/sshd");
    let port = closed_port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\nPidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\nUsePAM no\nStrictModes no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\nLogLevel VERBOSE\n",
            dir = dir.display()
        ),
    )
    .expect("sshd_config");
    let child = Command::new(sshd)
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(if std::env::var_os("E2E_VERBOSE").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .expect("start sshd");
    let sshd = Sshd {
        child,
        port,
        key: dir.join("user_key"),
        user,
    };
    wait_for("sshd to answer", Duration::from_secs(20), || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut banner = [0u8; 4];
        stream.read_exact(&mut banner).ok()?;
        (&banner == b"SSH-").then_some(())
    });
    sshd
}

/// ssh's options for the private sshd, as -b's one string or as separate words.
fn ssh_options(sshd: &Sshd) -> Vec<String> {
    [
        "-i",
        &sshd.key.display().to_string(),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "LogLevel=ERROR",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn launch_ssh_runs_ssh_through_the_tunnel_and_deletes_it() {
    let Some((sshd_path, _ssh)) = ssh_tools() else {
        return;
    };
    let dir = support::tempdir();
    let (server, _agent) = server_with_agent(dir.path());
    let sshd = start_sshd(dir.path(), &sshd_path);
    let env = password_env(&server);
    let env = as_refs(&env);
    let remote = format!("127.0.0.1:{}", sshd.port);
    let mut words = vec!["-l".to_string(), sshd.user.clone()];
    words.extend(ssh_options(&sshd));
    words.push("echo hello-through-tunnel".into());
    let launch = words.join(" ");

    let run = rportcli(
        dir.path(),
        &env,
        &[
            "tunnel", "create", "-c", AGENT, "-r", &remote, "-b", &launch,
        ],
    )
    .ok();
    assert!(
        run.stdout.contains("hello-through-tunnel"),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stdout.contains("Tunnel successfully deleted"),
        "{}",
        run.stdout
    );
    assert!(
        live_tunnels(&server).is_empty(),
        "{:?}",
        live_tunnels(&server)
    );

    // -b with -p is refused before any tunnel exists.
    let refused = rportcli(
        dir.path(),
        &env,
        &[
            "tunnel", "create", "-c", AGENT, "-r", &remote, "-b", "-p 22",
        ],
    )
    .failed();
    assert!(refused.stderr.contains("-p"), "{}", refused.stderr);
    assert!(live_tunnels(&server).is_empty());
}

#[test]
fn ssh_command_opens_a_tunnel_for_itself_and_closes_it_however_ssh_ends() {
    let Some((sshd_path, _ssh)) = ssh_tools() else {
        return;
    };
    let dir = support::tempdir();
    let (server, _agent) = server_with_agent(dir.path());
    let sshd = start_sshd(dir.path(), &sshd_path);
    let env = password_env(&server);
    let env = as_refs(&env);
    let remote = format!("127.0.0.1:{}", sshd.port);
    let target = format!("{}@{AGENT}", sshd.user);

    // USER@ID, a command, and its output.
    let mut args: Vec<String> = ["ssh", "-r", &remote, &target]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(ssh_options(&sshd));
    args.push("echo hello-through-tunnel".into());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = rportcli(dir.path(), &env, &argv).ok();
    assert_eq!(
        run.stdout.trim(),
        "hello-through-tunnel",
        "stderr: {}",
        run.stderr
    );
    assert!(live_tunnels(&server).is_empty());

    // By name with -l; ssh's exit code comes back.
    let mut args: Vec<String> = ["ssh", "-r", &remote, AGENT_NAME, "-l", &sshd.user]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(ssh_options(&sshd));
    args.push("exit 3".into());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = rportcli(dir.path(), &env, &argv);
    assert_eq!(
        run.code, 3,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    assert!(live_tunnels(&server).is_empty());

    // Interrupted while ssh runs: the tunnel still goes.
    let mut args: Vec<String> = ["ssh", "-r", &remote, &target]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(ssh_options(&sshd));
    args.push("sleep 60".into());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = rportcli_command(dir.path(), &env, &argv)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rportcli ssh");
    wait_for("the ssh tunnel", ATTACH, || {
        (!live_tunnels(&server).is_empty()).then_some(())
    });
    // ssh is logged in once the remote sleep runs; before that SIGINT still ends it.
    std::thread::sleep(Duration::from_millis(500));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let started = Instant::now();
    let exit = wait_for("rportcli to exit", Duration::from_secs(30), || {
        child.try_wait().ok().flatten()
    });
    assert!(!exit.success(), "an interrupted ssh is no success");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        live_tunnels(&server).is_empty(),
        "{:?}",
        live_tunnels(&server)
    );

    // An unknown agent: nothing opened.
    let unknown = rportcli(dir.path(), &env, &["ssh", "nobody-here"]).failed();
    assert!(
        unknown.stderr.contains("unknown client"),
        "{}",
        unknown.stderr
    );
}
