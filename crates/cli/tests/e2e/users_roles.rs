//! End to end: users in the store, their roles per project enforced the same way on API v1
//! and v2, `/api/v1/users`, `rportd user ...`, and RPort user files with bcrypt hashes.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;
use serde_json::{Value, json};

/// Creates a store user through the API as the bootstrap admin.
fn add_user(server: &Rportd, name: &str, roles: Value) {
    let reply = server.call(
        "POST",
        "/api/v1/users",
        &server.auth_header,
        &[],
        Some(&json!({"username": name, "password": password_of(name), "roles": roles})),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
}

fn password_of(name: &str) -> String {
    format!("{name}-long-password-1")
}

fn login(server: &Rportd, name: &str) -> String {
    let reply = server.call(
        "POST",
        "/api/v1/login",
        "",
        &[],
        Some(&json!({"username": name, "password": password_of(name)})),
    );
    assert_eq!(reply.status, 200, "{name}: {}", reply.body);
    format!(
        "Bearer {}",
        reply.body["data"]["token"].as_str().expect("token")
    )
}

/// Status and body of a request as `who`.
fn as_user(server: &Rportd, who: &str, method: &str, path: &str, body: Option<Value>) -> Reply {
    server.call(method, path, who, &[], body.as_ref())
}

#[test]
fn each_role_is_allowed_and_refused_where_it_should_be_on_both_faces() {
    let dir = tempdir();
    let (server, _default, _berlin) = fleet(dir.path());
    let echo = echo_server();
    add_user(&server, "vera", json!({"default": "viewer"}));
    add_user(
        &server,
        "otto",
        json!({"default": "tunnels", "berlin-office": "viewer"}),
    );
    add_user(&server, "paula", json!({"default": "admin"}));
    add_user(&server, "nobody", json!({}));
    let vera = login(&server, "vera");
    let otto = login(&server, "otto");
    let paula = login(&server, "paula");
    let nobody = login(&server, "nobody");
    let v1_open = |who: &str, client: &str| {
        as_user(
            &server,
            who,
            "PUT",
            &format!(
                "/api/v1/clients/{client}/tunnels?remote=127.0.0.1:{}&acl=127.0.0.1",
                echo.port()
            ),
            None,
        )
    };
    // Each v2 tunnel gets its own allowed_ip, so that none is a duplicate of another.
    let next_ip = std::cell::Cell::new(1u8);
    let v2_open = |who: &str, project: &str, device: &str| {
        next_ip.set(next_ip.get() + 1);
        let allowed = format!("127.0.0.{}", next_ip.get());
        as_user(
            &server,
            who,
            "POST",
            &format!("/api/v2/{project}/port_tunnel"),
            Some(json!({"device_uuid": device, "port": echo.port(), "allowed_ip": allowed})),
        )
    };
    let count = |who: &str, path: &str| {
        let reply = as_user(&server, who, "GET", path, None);
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        reply.body["meta"]["count"].as_u64().expect("count")
    };

    // viewer: reads its project, nothing else, changes nothing.
    assert_eq!(count(&vera, "/api/v1/clients"), 1);
    assert_eq!(
        as_user(&server, &vera, "GET", "/api/v1/clients/default-1", None).status,
        200
    );
    let hidden = as_user(&server, &vera, "GET", "/api/v1/clients/berlin-1", None);
    assert_eq!(
        (hidden.status, error_code(&hidden.body)),
        (404, "ERR_CODE_CLIENT_NOT_FOUND"),
        "a device of a project without a role is not revealed"
    );
    let refused = v1_open(&vera, "default-1");
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(
        error_detail(&refused.body),
        "opening tunnels in project \"default\" needs role tunnels or admin; user \"vera\" has role viewer there"
    );
    let refused = v2_open(&vera, "default", "default-1");
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(error_detail(&refused.body).contains("needs role tunnels or admin"));
    let list = as_user(&server, &vera, "GET", "/api/v2/default/port_tunnel", None);
    assert_eq!(list.status, 200, "{}", list.body);
    let other = as_user(
        &server,
        &vera,
        "GET",
        "/api/v2/berlin-office/port_tunnel",
        None,
    );
    assert_eq!(
        other.status, 403,
        "never a silent empty list: {}",
        other.body
    );
    assert_eq!(
        error_detail(&other.body),
        "user \"vera\" has no role in project \"berlin-office\""
    );
    for (method, path) in [
        ("DELETE", "/api/v1/clients/default-1"),
        ("GET", "/api/v1/users"),
        ("GET", "/api/v1/auditlog?filter[username]=admin"),
    ] {
        let reply = as_user(&server, &vera, method, path, None);
        assert_eq!(reply.status, 403, "{method} {path}: {}", reply.body);
        assert_eq!(error_code(&reply.body), "ERR_CODE_FORBIDDEN");
    }
    let reply = as_user(
        &server,
        &vera,
        "POST",
        "/api/v1/projects",
        Some(json!({"key": "x"})),
    );
    assert_eq!(reply.status, 403, "{}", reply.body);
    let projects = as_user(&server, &vera, "GET", "/api/v1/projects", None);
    assert_eq!(
        projects.body["data"],
        json!([{"key": "default", "name": "Default", "created_at": projects.body["data"][0]["created_at"], "clients": 1, "role": "viewer"}])
    );

    // What the process holds is for server admins only.
    let status = as_user(&server, &vera, "GET", "/api/v1/status", None);
    assert_eq!(status.status, 200, "{}", status.body);
    assert_eq!(status.body["data"]["runtime"], Value::Null);
    let (_, status) = server.request("GET", "/api/v1/status");
    assert!(
        status["data"]["runtime"]["tasks"].as_u64().is_some(),
        "{status}"
    );
    assert!(
        status["data"]["runtime"]["open_files"].as_u64().is_some(),
        "{status}"
    );

    // tunnels: opens and closes in its project on both faces; only reads where it is viewer.
    let opened = v1_open(&otto, "default-1");
    assert_eq!(opened.status, 200, "{}", opened.body);
    let v1_id = opened.body["data"]["id"].as_str().expect("id").to_owned();
    echo_round_trip(tunnel_address(&opened.body["data"]), 10_000, 1);
    let opened = v2_open(&otto, "default", "default-1");
    assert_eq!(opened.status, 201, "{}", opened.body);
    let v2_id = opened.body["port_tunnel_id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(v1_open(&otto, "berlin-1").status, 403);
    assert_eq!(v2_open(&otto, "berlin-office", "berlin-1").status, 403);
    assert_eq!(count(&otto, "/api/v1/clients"), 2);
    assert_eq!(
        count(&vera, "/api/v1/tunnels"),
        2,
        "viewers see the tunnels"
    );
    let closed = as_user(
        &server,
        &vera,
        "DELETE",
        &format!("/api/v2/default/port_tunnel/{v2_id}"),
        None,
    );
    assert_eq!(closed.status, 403, "{}", closed.body);
    let closed = as_user(
        &server,
        &otto,
        "DELETE",
        &format!("/api/v2/default/port_tunnel/{v2_id}"),
        None,
    );
    assert_eq!(closed.status, 204, "{}", closed.body);
    let closed = as_user(
        &server,
        &otto,
        "DELETE",
        &format!("/api/v1/clients/default-1/tunnels/{v1_id}"),
        None,
    );
    assert_eq!(closed.status, 204, "{}", closed.body);
    let reply = as_user(&server, &otto, "DELETE", "/api/v1/clients/default-1", None);
    assert!(
        error_detail(&reply.body).contains("needs role admin"),
        "{}",
        reply.body
    );

    // project admin: everything in its project, its part of the audit log; no users.
    let reply = as_user(&server, &paula, "DELETE", "/api/v1/clients/default-1", None);
    assert_eq!(
        (reply.status, error_code(&reply.body)),
        (400, "ERR_CODE_CLIENT_CONNECTED"),
        "allowed, but the client is connected: {}",
        reply.body
    );
    let audit = as_user(
        &server,
        &paula,
        "GET",
        "/api/v1/auditlog?filter[project]=default",
        None,
    );
    assert_eq!(audit.status, 200, "{}", audit.body);
    assert!(
        audit.body["data"]
            .as_array()
            .expect("entries")
            .iter()
            .any(|e| e["rportd_action"] == "tunnel.create" && e["username"] == "otto")
    );
    // Without filter[project], as in RPort, only one's own entries.
    let all = as_user(&server, &paula, "GET", "/api/v1/auditlog", None);
    assert_eq!(all.status, 200, "{}", all.body);
    assert!(
        all.body["data"]
            .as_array()
            .expect("entries")
            .iter()
            .all(|e| e["username"] == "paula"),
        "{}",
        all.body
    );
    assert_eq!(
        as_user(&server, &paula, "GET", "/api/v1/users", None).status,
        403
    );

    // no role at all: sees nothing and is told so where it asks for a project.
    assert_eq!(count(&nobody, "/api/v1/clients"), 0);
    let reply = as_user(&server, &nobody, "GET", "/api/v2/default/port_tunnel", None);
    assert_eq!(reply.status, 403);
    let reply = as_user(
        &server,
        &nobody,
        "GET",
        "/api/v2/no-such-project/port_tunnel",
        None,
    );
    assert_eq!(reply.status, 403, "does not learn which projects exist");
    let reply = as_user(
        &server,
        &server.bearer(),
        "GET",
        "/api/v2/no-such-project/port_tunnel",
        None,
    );
    assert_eq!(reply.status, 404, "an admin is told it does not exist");

    // API tokens never reach further than their user, and cut down further.
    let reply = as_user(
        &server,
        &otto,
        "POST",
        "/api/v1/me/tokens",
        Some(json!({"name": "t", "scope": "read+write", "project": "default"})),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let token = format!(
        "Bearer {}",
        reply.body["data"]["token"].as_str().expect("token")
    );
    assert_eq!(v2_open(&token, "default", "default-1").status, 201);
    let reply = as_user(
        &server,
        &token,
        "GET",
        "/api/v2/berlin-office/port_tunnel",
        None,
    );
    assert!(
        error_detail(&reply.body).contains("limited to project \"default\""),
        "{}",
        reply.body
    );

    // Roles change at once, for tokens already handed out; a deleted user is out at once.
    let reply = as_user(
        &server,
        &server.auth_header,
        "PUT",
        "/api/v1/users/vera",
        Some(json!({"roles": {"default": "tunnels"}})),
    );
    assert_eq!(reply.status, 204, "{}", reply.body);
    let (_, vera_now) = server.request("GET", "/api/v1/users/vera");
    assert_eq!(vera_now["data"]["roles"], json!({"default": "tunnels"}));
    assert_eq!(v2_open(&vera, "default", "default-1").status, 201);
    let reply = as_user(
        &server,
        &server.auth_header,
        "DELETE",
        "/api/v1/users/otto",
        None,
    );
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(
        as_user(&server, &otto, "GET", "/api/v1/clients", None).status,
        401
    );
    assert_eq!(
        as_user(&server, &token, "GET", "/api/v1/clients", None).status,
        401
    );

    // Every change to users is in the audit log with who made it.
    let (_, audit) = server.request("GET", "/api/v1/auditlog?filter[action]=user.delete");
    let entry = &audit["data"][0];
    assert_eq!(
        (
            &entry["username"],
            &entry["affected_id"],
            &entry["remote_ip"]
        ),
        (&json!(API_USER), &json!("otto"), &json!("127.0.0.1")),
        "{audit}"
    );
}

#[test]
fn users_api_checks_what_it_is_given_and_keeps_an_admin() {
    let dir = tempdir();
    let server = Rportd::start(dir.path());
    let post = |body: Value| {
        server.call(
            "POST",
            "/api/v1/users",
            &server.auth_header,
            &[],
            Some(&body),
        )
    };
    let bad = [
        (json!({"username": "a", "password": "short"}), "at least 14"),
        (
            json!({"username": "a b", "password": "long-enough-password"}),
            "user name",
        ),
        (
            json!({"username": "a", "password": "long-enough-password", "roles": {"nowhere": "viewer"}}),
            "no project \"nowhere\"",
        ),
        (
            json!({"username": "a", "password": "long-enough-password", "roles": {"default": "root"}}),
            "not one of viewer, tunnels, admin",
        ),
        (
            json!({"username": "a", "password": "long-enough-password", "groups": ["Bad/Group"]}),
            "user group name \"Bad/Group\"",
        ),
        (
            json!({"username": "a", "password": "long-enough-password", "totp_secret": "x"}),
            "unknown field",
        ),
    ];
    for (body, reason) in bad {
        let reply = post(body.clone());
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        assert!(
            error_detail(&reply.body).contains(reason),
            "{body}: {}",
            reply.body
        );
    }
    // RPort's shape: group "Administrators" makes an administrator.
    let reply = post(
        json!({"username": "root2", "password": "root2-long-password", "groups": ["Administrators"]}),
    );
    // RPort's answers: 201 without a body, 400 for a taken name.
    assert_eq!((reply.status, &reply.body), (201, &Value::Null));
    let (_, root2) = server.request("GET", "/api/v1/users/root2");
    assert_eq!(root2["data"]["admin"], true);
    assert_eq!(root2["data"]["groups"], json!(["Administrators"]));
    assert!(root2["data"].get("password").is_none());
    let again = post(json!({"username": "root2", "password": "root2-long-password"}));
    assert_eq!(
        (again.status, error_code(&again.body)),
        (400, "ERR_CODE_ALREADY_EXIST")
    );
    let taken = post(json!({"username": API_USER, "password": "another-long-password"}));
    assert_eq!(taken.status, 400, "the [api] auth user's name is taken");

    let (status, list) = server.request("GET", "/api/v1/users");
    assert_eq!(status, 200);
    let names: Vec<(&str, &str)> = list["data"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| {
            (
                u["username"].as_str().unwrap_or(""),
                u["source"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(names, [(API_USER, "config"), ("root2", "db")]);
    assert!(!list.to_string().contains("argon2"), "no hashes: {list}");
    let reply = server.call(
        "PUT",
        &format!("/api/v1/users/{API_USER}"),
        &server.auth_header,
        &[],
        Some(&json!({"admin": false})),
    );
    assert_eq!(
        (reply.status, error_code(&reply.body)),
        (409, "ERR_CODE_USER_READ_ONLY"),
        "{}",
        reply.body
    );
    let (status, _) = server.request("GET", "/api/v1/users/nobody");
    assert_eq!(status, 404);

    // A new password works at once and the old one stops at once.
    let root2_old = basic("root2", "root2-long-password");
    assert_eq!(server.request_as("GET", "/api/v1/users", &root2_old).0, 200);
    let (_, login) = server.request_as("GET", "/api/v1/login", &root2_old);
    let session = format!("Bearer {}", login["data"]["token"].as_str().expect("token"));
    assert_eq!(server.request_as("GET", "/api/v1/me", &session).0, 200);
    let reply = server.call(
        "PUT",
        "/api/v1/users/root2",
        &server.auth_header,
        &[],
        Some(&json!({"password": "root2-new-long-password"})),
    );
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(server.request_as("GET", "/api/v1/users", &root2_old).0, 401);
    let root2 = basic("root2", "root2-new-long-password");
    assert_eq!(server.request_as("GET", "/api/v1/users", &root2).0, 200);
    assert_eq!(
        server.request_as("GET", "/api/v1/me", &session).0,
        401,
        "a new password ends the sessions of the old one"
    );
    // A user deleted and made again under the same name does not get old sessions back.
    let (_, login) = server.request_as("GET", "/api/v1/login", &root2);
    let session = format!("Bearer {}", login["data"]["token"].as_str().expect("token"));
    assert_eq!(server.request("DELETE", "/api/v1/users/root2").0, 204);
    let again = post(json!({"username": "root2", "password": "root2-new-long-password"}));
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(server.request_as("GET", "/api/v1/me", &session).0, 401);
    drop(server);

    // Without [api] auth, the last administrator cannot be removed or demoted.
    let dir = tempdir();
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            api_auth: None,
            ..Default::default()
        },
    );
    let generated = server
        .stdout
        .wait_for("generated API user", Duration::from_secs(10));
    let password = generated
        .rsplit(':')
        .next()
        .expect("password")
        .trim()
        .to_owned();
    let admin = basic("admin", &password);
    let reply = server.call("DELETE", "/api/v1/users/admin", &admin, &[], None);
    assert_eq!(
        (reply.status, error_code(&reply.body)),
        (409, "ERR_CODE_LAST_ADMIN"),
        "{}",
        reply.body
    );
    let reply = server.call(
        "PUT",
        "/api/v1/users/admin",
        &admin,
        &[],
        Some(&json!({"admin": false})),
    );
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert_eq!(server.request_as("GET", "/api/v1/users", &admin).0, 200);
}

/// Runs `rportd -c CONFIG user ...`, feeding `stdin`.
fn user_command(config: &std::path::Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rportd"))
        .arg("-c")
        .arg(config)
        .arg("user")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rportd user");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let output = child.wait_with_output().expect("rportd user");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn rportd_user_manages_users_with_the_server_running_or_not() {
    let dir = tempdir();
    let config = write_server_config(dir.path(), &ServerSettings::default());
    // Before the server ever ran: a fresh data dir.
    let (ok, out, err) = user_command(
        &config,
        &[
            "add",
            "ops",
            "--role",
            "default=tunnels",
            "--password-stdin",
        ],
        "ops-long-password-1\n",
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("ops\tadmin=false\troles=default=tunnels\tsource=db"),
        "{out}"
    );
    let (ok, _, err) = user_command(&config, &["add", "bad", "--role", "default"], "");
    assert!(!ok && err.contains("PROJECT=ROLE"), "{err}");

    let server = Rportd::start(dir.path());
    let ops = basic("ops", &password_of("ops"));
    let (status, me) = server.request_as("GET", "/api/v1/me", &ops);
    assert_eq!(status, 200);
    assert_eq!(me["data"]["roles"], json!({"default": "tunnels"}));

    // While it runs: a generated password replaces the old one at once.
    let (ok, out, err) = user_command(&config, &["passwd", "ops"], "");
    assert!(ok, "{out}{err}");
    let new_password = out.rsplit(": ").next().expect("password").trim().to_owned();
    assert_eq!(new_password.len(), 20, "{out}");
    assert_eq!(server.request_as("GET", "/api/v1/me", &ops).0, 401);
    assert_eq!(
        server
            .request_as("GET", "/api/v1/me", &basic("ops", &new_password))
            .0,
        200
    );
    let (ok, out, _) = user_command(&config, &["list"], "");
    assert!(
        ok && out.contains(&format!("{API_USER}\tadmin=true\troles=-\tsource=config")),
        "{out}"
    );
    let (ok, _, err) = user_command(&config, &["delete", API_USER], "");
    assert!(!ok && err.contains("[api] auth"), "{err}");
    let (ok, out, err) = user_command(&config, &["delete", "ops"], "");
    assert!(ok, "{out}{err}");
    assert_eq!(
        server
            .request_as("GET", "/api/v1/me", &basic("ops", &new_password))
            .0,
        401
    );
    let (_, audit) = server.request("GET", "/api/v1/auditlog?filter[actor]=command-line");
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["rportd_action"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        actions,
        ["user.delete", "user.update", "user.create"],
        "{audit}"
    );
}

#[test]
fn an_rport_user_file_with_bcrypt_hashes_works_with_roles() {
    let dir = tempdir();
    let users = dir.path().join("api-users.json");
    let hash = |password: &str| bcrypt::hash(password, 4).expect("bcrypt");
    std::fs::write(
        &users,
        json!([
            {"username": "file-admin", "password": hash("file-admin-password"), "groups": ["Administrators"]},
            {"username": "file-viewer", "password": hash("file-viewer-password"), "roles": {"default": "viewer"}},
        ])
        .to_string(),
    )
    .expect("write users");
    let settings = ServerSettings {
        api_auth: None,
        extra_api: format!("auth_file = {:?}\n", users.display().to_string()),
        ..Default::default()
    };
    let server = Rportd::start_with(dir.path(), &settings);
    assert!(
        server.stdout.find("generated API user").is_none(),
        "users exist: no generated admin"
    );
    let admin = basic("file-admin", "file-admin-password");
    let viewer = basic("file-viewer", "file-viewer-password");
    assert_eq!(server.request_as("GET", "/api/v1/users", &admin).0, 200);
    assert_eq!(server.request_as("GET", "/api/v1/users", &viewer).0, 403);
    assert_eq!(server.request_as("GET", "/api/v1/clients", &viewer).0, 200);
    assert_eq!(
        server
            .request_as("GET", "/api/v1/clients", &basic("file-viewer", "wrong"))
            .0,
        401
    );
    let reply = server.call(
        "DELETE",
        "/api/v1/users/file-viewer",
        &admin,
        &[],
        Some(&json!({})),
    );
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert!(
        error_detail(&reply.body).contains("[api] auth_file"),
        "{}",
        reply.body
    );
    drop(server);

    // A password in clear is refused at start, naming the file, the key and the user.
    std::fs::write(
        &users,
        json!([{"username": "x", "password": "in-clear-password"}]).to_string(),
    )
    .expect("write users");
    let config = write_server_config(dir.path(), &settings);
    let output = Command::new(env!("CARGO_BIN_EXE_rportd"))
        .arg("-c")
        .arg(&config)
        .output()
        .expect("rportd");
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        err.contains("api.auth_file") && err.contains("user \"x\"") && err.contains("bcrypt"),
        "{err}"
    );
}

/// Sends SIGUSR1 to a process this test started.
fn send_usr1(pid: u32) {
    let sent = Command::new("kill")
        .args(["-USR1", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
}

#[test]
fn the_user_file_is_read_again_on_sigusr1_and_a_broken_one_changes_nothing() {
    let dir = tempdir();
    let users = dir.path().join("api-users.json");
    let hash = |password: &str| bcrypt::hash(password, 4).expect("bcrypt");
    let write = |entries: Value| std::fs::write(&users, entries.to_string()).expect("write");
    write(json!([
        {"username": "boss", "password": hash(&password_of("boss")), "groups": ["Administrators"]},
        {"username": "alice", "password": hash(&password_of("alice")), "roles": {"default": "viewer"}},
    ]));
    let settings = ServerSettings {
        api_auth: None,
        extra_api: format!("auth_file = {:?}\n", users.display().to_string()),
        ..Default::default()
    };
    let server = Rportd::start_with(dir.path(), &settings);
    let alice = basic("alice", &password_of("alice"));
    let alice_token = login(&server, "alice");
    assert_eq!(server.request_as("GET", "/api/v1/clients", &alice).0, 200);
    assert_eq!(
        server.request_as("GET", "/api/v1/clients", &alice_token).0,
        200
    );

    // alice leaves, bob comes, boss gets a new password.
    write(json!([
        {"username": "boss", "password": hash("boss-new-long-password"), "groups": ["Administrators"]},
        {"username": "bob", "password": hash(&password_of("bob")), "roles": {"default": "tunnels"}},
    ]));
    let bob = basic("bob", &password_of("bob"));
    assert_eq!(server.request_as("GET", "/api/v1/clients", &bob).0, 401);
    send_usr1(server.pid());
    wait_for("bob to be let in", Duration::from_secs(10), || {
        (server.request_as("GET", "/api/v1/clients", &bob).0 == 200).then_some(())
    });
    assert_eq!(server.request_as("GET", "/api/v1/clients", &alice).0, 401);
    assert_eq!(
        server.request_as("GET", "/api/v1/clients", &alice_token).0,
        401,
        "a removed user's login token ends with the user"
    );
    let old_boss = basic("boss", &password_of("boss"));
    let boss = basic("boss", "boss-new-long-password");
    assert_eq!(server.request_as("GET", "/api/v1/users", &old_boss).0, 401);
    let (status, listed) = server.request_as("GET", "/api/v1/users", &boss);
    assert_eq!(status, 200, "{listed}");
    let names: Vec<&str> = listed["data"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert_eq!(names, ["boss", "bob"], "{listed}");

    // A broken edit is refused and keeps the users read before.
    std::fs::write(&users, "[{\"username\": \"bob\", ").expect("write");
    send_usr1(server.pid());
    server
        .stderr
        .wait_for("auth_file not read again", Duration::from_secs(10));
    assert_eq!(server.request_as("GET", "/api/v1/clients", &bob).0, 200);
    assert_eq!(server.request_as("GET", "/api/v1/users", &boss).0, 200);

    let (status, audit) = server.request_as("GET", "/api/v1/auditlog", &boss);
    assert_eq!(status, 200, "{audit}");
    let reloads: Vec<(&str, &str)> = audit["data"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["rportd_action"] == "user.reload")
        .map(|e| {
            (
                e["result"].as_str().unwrap_or(""),
                e["detail"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(reloads.len(), 2, "{audit}");
    assert_eq!(reloads[0].0, "failure", "newest first: {audit}");
    assert_eq!(reloads[1].0, "success", "{audit}");
    assert!(
        reloads[1].1.contains("added [\"bob\"]")
            && reloads[1].1.contains("removed [\"alice\"]")
            && reloads[1].1.contains("changed [\"boss\"]"),
        "{audit}"
    );
    assert!(
        !audit.to_string().contains("$2"),
        "no hash in the audit log"
    );
    drop(server);

    // Without a users file the signal is answered with a warning, not the default (exit).
    let dir = tempdir();
    let server = Rportd::start(dir.path());
    send_usr1(server.pid());
    server
        .stderr
        .wait_for("no [api] auth_file", Duration::from_secs(10));
    assert_eq!(server.request("GET", "/api/v1/status").0, 200);
}
