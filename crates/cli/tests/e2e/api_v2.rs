//! End to end: projects, and API v2's port tunnels (JFrog Connect's shape) on the same
//! tunnels as v1.

use std::net::TcpStream;
use std::time::Duration;

use crate::support::*;
use serde_json::{Value, json};

#[test]
fn agents_belong_to_their_credentials_project() {
    let dir = tempdir();
    let (server, _default, mut berlin) = fleet(dir.path());
    assert_eq!(
        server.client("default-1").expect("listed")["project"],
        "default"
    );
    assert_eq!(
        server.client("berlin-1").expect("listed")["project"],
        "berlin-office"
    );
    let (_, only_berlin) = server.request("GET", "/api/v1/clients?filter[project]=berlin-office");
    assert_eq!(only_berlin["meta"]["count"], 1, "{only_berlin}");

    let (status, projects) = server.request("GET", "/api/v1/projects");
    assert_eq!(status, 200);
    let listed: Vec<(String, u64)> = projects["data"]
        .as_array()
        .expect("list")
        .iter()
        .map(|p| {
            (
                p["key"].as_str().unwrap_or_default().to_owned(),
                p["clients"].as_u64().unwrap_or(9),
            )
        })
        .collect();
    assert_eq!(listed, [("berlin-office".into(), 1), ("default".into(), 1)]);

    // Creating, refusing duplicates and bad keys, deleting only what is empty.
    let reply = server.call(
        "POST",
        "/api/v1/projects",
        &server.auth_header,
        &[],
        Some(&json!({"key": "lab", "name": "Lab"})),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["data"]["name"], "Lab");
    let again = server.call(
        "POST",
        "/api/v1/projects",
        &server.auth_header,
        &[],
        Some(&json!({"key": "lab"})),
    );
    assert_eq!(
        (again.status, error_code(&again.body)),
        (409, "ERR_CODE_ALREADY_EXIST")
    );
    let bad = server.call(
        "POST",
        "/api/v1/projects",
        &server.auth_header,
        &[],
        Some(&json!({"key": "Not OK"})),
    );
    assert_eq!(bad.status, 400);
    let (status, body) = server.request("DELETE", "/api/v1/projects/berlin-office");
    assert_eq!(
        (status, error_code(&body)),
        (409, "ERR_CODE_PROJECT_NOT_EMPTY"),
        "{body}"
    );
    let (status, _) = server.request("DELETE", "/api/v1/projects/default");
    assert_eq!(status, 400);
    let (status, _) = server.request("DELETE", "/api/v1/projects/lab");
    assert_eq!(status, 204);
    let (status, _) = server.request("DELETE", "/api/v1/projects/lab");
    assert_eq!(status, 404);

    // A credential of another project cannot take over a device id.
    berlin.kill();
    server.wait_connection_state("berlin-1", "disconnected", ATTACH);
    let impostor = start_agent(
        &server,
        "berlin-1",
        AGENT_AUTH,
        &dir.path().join("impostor"),
    );
    impostor
        .stderr
        .wait_for("belongs to another project", Duration::from_secs(20));
    assert_eq!(
        server.client("berlin-1").expect("listed")["connection_state"],
        "disconnected"
    );
}

/// How a forgotten device is forgotten: through the API, or by the purge of clients
/// disconnected too long.
enum Forget {
    Delete,
    Purge,
}

/// A device of project `berlin-office` has a tunnel and goes away; while the tunnel waits
/// for it, the device is forgotten. Then an agent of project `default` registers the same
/// id: it is welcomed (the id is free), but the berlin tunnel must have ended with its
/// device and must never carry anything to the newcomer.
fn a_forgotten_devices_tunnel_is_not_taken_over(forget: Forget) {
    let dir = tempdir();
    let purge = match forget {
        Forget::Delete => "",
        // Shorter than the grace period, as the hole's second way in.
        Forget::Purge => {
            "keep_disconnected_clients = \"2s\"\npurge_disconnected_clients_interval = \"1s\"\n"
        }
    };
    let (server, _default, mut berlin) = fleet_with(
        dir.path(),
        &format!("tunnel_grace_period = \"10m\"\n{purge}"),
    );
    let echo = echo_server();
    let tunnel = server.open_tunnel("berlin-1", &format!("remote={}", echo.port()));
    let tunnel_id = tunnel["id"].as_str().expect("tunnel id").to_owned();
    let public = tunnel_address(&tunnel);
    echo_round_trip(public, 64 * 1024, 1);

    berlin.kill();
    server.wait_tunnel_status(&tunnel_id, "pending", ATTACH);
    let reason = match forget {
        Forget::Delete => {
            let (status, body) = server.request("DELETE", "/api/v1/clients/berlin-1");
            assert_eq!(status, 204, "{body}");
            "client_deleted"
        }
        Forget::Purge => {
            wait_for("berlin-1 purged", ATTACH, || {
                server.client("berlin-1").is_none().then_some(())
            });
            "client_purged"
        }
    };
    let ended = server.wait_tunnel_status(&tunnel_id, "terminated", ATTACH);
    assert_eq!(ended["close_reason"], reason, "{ended}");
    assert!(TcpStream::connect(public).is_err(), "the port is freed");

    let mut newcomer = start_agent(
        &server,
        "berlin-1",
        AGENT_AUTH,
        &dir.path().join("newcomer"),
    );
    let welcomed = server.wait_connection_state("berlin-1", "connected", ATTACH);
    assert_eq!(welcomed["project"], "default");
    assert!(TcpStream::connect(public).is_err(), "no port came back");
    let after = server
        .tunnel(&tunnel_id)
        .expect("the ended tunnel is still listed");
    assert_eq!(
        (
            &after["status"],
            &after["close_reason"],
            &after["connections"]
        ),
        (&json!("terminated"), &json!(reason), &json!(1)),
        "the berlin tunnel stays ended and carried nothing more: {after}"
    );
    let (_, live) = server.request("GET", "/api/v1/tunnels?filter[client_id]=berlin-1");
    assert_eq!(live["data"], json!([]), "{live}");
    newcomer.kill();
}

#[test]
fn deleting_a_device_ends_its_tunnels_and_another_project_cannot_take_them() {
    a_forgotten_devices_tunnel_is_not_taken_over(Forget::Delete);
}

#[test]
fn purging_a_device_ends_its_tunnels_and_another_project_cannot_take_them() {
    a_forgotten_devices_tunnel_is_not_taken_over(Forget::Purge);
}

/// A live tunnel whose client record is gone when rportd starts (forgotten by a run that
/// died before it ended the tunnel) is not bound again, so no agent registering that id
/// picks it up.
#[test]
fn a_tunnel_whose_client_is_gone_after_a_crash_does_not_come_back() {
    let dir = tempdir();
    let mut server = Rportd::start(dir.path());
    let agent_port = server.agent_address.port();
    let mut agent = Rport::attach(&server, "client-1", &dir.path().join("agent"));
    server.wait_connection_state("client-1", "connected", ATTACH);
    let echo = echo_server();
    let tunnel = server.open_tunnel("client-1", &format!("remote={}", echo.port()));
    let tunnel_id = tunnel["id"].as_str().expect("tunnel id").to_owned();
    agent.kill();
    server.kill();

    let db = server.data_dir().join("rportd.db");
    let conn = rusqlite::Connection::open(&db).expect("open the database");
    let removed = conn
        .execute("DELETE FROM clients WHERE id = 'client-1'", [])
        .expect("delete the client row");
    assert_eq!(removed, 1);
    drop(conn);

    let server = Rportd::start_on_agent_port(dir.path(), agent_port);
    let ended = server.wait_tunnel_status(&tunnel_id, "terminated", ATTACH);
    assert_eq!(ended["close_reason"], "client_deleted", "{ended}");
    let _newcomer = Rport::attach(&server, "client-1", &dir.path().join("newcomer"));
    server.wait_connection_state("client-1", "connected", ATTACH);
    assert!(
        TcpStream::connect(tunnel_address(&tunnel)).is_err(),
        "the port was not bound again"
    );
    assert_eq!(
        server.tunnel(&tunnel_id).expect("listed")["status"],
        "terminated"
    );
}

#[test]
fn v2_opens_lists_and_closes_port_tunnels_on_the_same_tunnels_as_v1() {
    let dir = tempdir();
    let (server, _default, _berlin) = fleet(dir.path());
    let echo = echo_server();
    let bearer = server.bearer();
    let path = "/api/v2/berlin-office/port_tunnel";

    // The seed's request shape.
    let reply = server.call(
        "POST",
        path,
        &bearer,
        &[],
        Some(&json!({"device_uuid": "berlin-1", "port": echo.port(), "allowed_ip": "127.0.0.1"})),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let id = reply.body["port_tunnel_id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let server_port = reply.body["server_port"].as_u64().expect("port") as u16;
    assert_eq!(
        reply.body["server_address"], "127.0.0.1",
        "the host of the request"
    );
    echo_round_trip(
        std::net::SocketAddr::from(([127, 0, 0, 1], server_port)),
        100_000,
        1,
    );

    // v1 sees the same tunnel.
    let v1 = server.tunnel(&id).expect("on v1 too");
    assert_eq!(v1["client_id"], "berlin-1");
    assert_eq!(v1["acl"], "127.0.0.1");

    // Without allowed_ip: the caller's own address, whatever X-Forwarded-For claims
    // (no trusted proxy is configured).
    let other_echo = echo_server();
    let reply = server.call(
        "POST",
        path,
        &bearer,
        &[("X-Forwarded-For", "203.0.113.9")],
        Some(&json!({"device_uuid": "berlin-1", "port": other_echo.port()})),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let caller_only = reply.body["port_tunnel_id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(
        server.tunnel(&caller_only).expect("listed")["acl"],
        "127.0.0.1"
    );

    // A device of another project, or none at all: the same 404, revealing nothing.
    for device in ["default-1", "no-such-device"] {
        let reply = server.call(
            "POST",
            path,
            &bearer,
            &[],
            Some(&json!({"device_uuid": device, "port": echo.port()})),
        );
        assert_eq!(
            (reply.status, error_code(&reply.body)),
            (404, "ERR_CODE_DEVICE_NOT_FOUND"),
            "{device}"
        );
    }
    let reply = server.call("GET", "/api/v2/nowhere/port_tunnel", &bearer, &[], None);
    assert_eq!(
        (reply.status, error_code(&reply.body)),
        (404, "ERR_CODE_PROJECT_NOT_FOUND")
    );
    // Bearer tokens only.
    let reply = server.call("GET", path, &server.auth_header, &[], None);
    assert_eq!(reply.status, 401);
    assert!(
        reply.body["errors"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("Bearer"))
    );
    let reply = server.call("POST", path, &bearer, &[], Some(&json!({"port": 22})));
    assert_eq!(
        (reply.status, error_code(&reply.body)),
        (400, "ERR_CODE_INVALID_REQUEST")
    );
    let reply = server.call(
        "POST",
        path,
        &bearer,
        &[],
        Some(&json!({"device_uuid": "berlin-1", "port": echo.port(), "allowed_ip": "0.0.0.0/0"})),
    );
    assert_eq!(
        (reply.status, error_code(&reply.body)),
        (400, "ERR_CODE_INVALID_ACL")
    );

    // A tunnel made on v1 shows on v2.
    let from_v1 = server.open_tunnel("berlin-1", &format!("remote={}&acl=127.0.0.2", echo.port()));
    let reply = server.call("GET", path, &bearer, &[], None);
    assert_eq!(reply.status, 200);
    let list = reply.body.as_array().expect("a list").clone();
    assert_eq!(
        reply
            .headers
            .get("x-total-count")
            .and_then(|v| v.to_str().ok()),
        Some("3")
    );
    assert_eq!(list[0]["port_tunnel_id"], from_v1["id"], "newest first");
    assert_eq!(list[2]["port_tunnel_id"], id.as_str());
    for tunnel in &list {
        assert_eq!(tunnel["status"], "Opened");
        assert_eq!(tunnel["device_uuid"], "berlin-1");
        assert_eq!(tunnel["created_by"], "admin");
    }
    let page = server.call(
        "GET",
        &format!("{path}?limit=1&offset=1"),
        &bearer,
        &[],
        None,
    );
    assert_eq!(page.body.as_array().map(Vec::len), Some(1));
    assert_eq!(page.body[0]["port_tunnel_id"], caller_only.as_str());
    // Other projects do not see it.
    let reply = server.call("GET", "/api/v2/default/port_tunnel", &bearer, &[], None);
    assert_eq!(reply.body, json!([]));
    let reply = server.call(
        "GET",
        &format!("/api/v2/default/port_tunnel/{id}"),
        &bearer,
        &[],
        None,
    );
    assert_eq!(reply.status, 404);

    // Close: Closed on both faces, and the port is gone.
    let one = format!("{path}/{id}");
    let reply = server.call("DELETE", &one, &bearer, &[], None);
    assert_eq!(reply.status, 204, "{}", reply.body);
    let reply = server.call("GET", &one, &bearer, &[], None);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["status"], "Closed");
    assert!(reply.body["closed_at"].is_string());
    assert_eq!(server.tunnel(&id).expect("v1")["status"], "closed");
    assert!(std::net::TcpStream::connect(("127.0.0.1", server_port)).is_err());
    let reply = server.call("DELETE", &one, &bearer, &[], None);
    assert_eq!(reply.status, 409);
}

#[test]
fn x_forwarded_for_is_believed_from_a_trusted_proxy_only() {
    let dir = tempdir();
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            extra_api: "trusted_proxies = [\"127.0.0.1\"]\n".into(),
            ..Default::default()
        },
    );
    let _agent = Rport::attach(&server, "default-1", &dir.path().join("agent"));
    server.wait_connection_state("default-1", "connected", ATTACH);
    let echo = echo_server();
    let reply = server.call(
        "POST",
        "/api/v2/default/port_tunnel",
        &server.bearer(),
        &[("X-Forwarded-For", "203.0.113.9, 198.51.100.7")],
        Some(&json!({"device_uuid": "default-1", "port": echo.port()})),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let id = reply.body["port_tunnel_id"].as_str().expect("id");
    // The proxy (127.0.0.1, trusted) appended 198.51.100.7; what came before is the
    // client's own claim and is not believed.
    assert_eq!(server.tunnel(id).expect("listed")["acl"], "198.51.100.7");
}

fn make_token(server: &Rportd, body: Value) -> (String, String) {
    let reply = server.call(
        "POST",
        "/api/v1/me/tokens",
        &server.auth_header,
        &[],
        Some(&body),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let token = reply.body["data"]["token"]
        .as_str()
        .expect("token shown once");
    (
        reply.body["data"]["id"].as_str().expect("id").to_owned(),
        format!("Bearer {token}"),
    )
}

#[test]
fn api_tokens_have_a_scope_a_project_and_can_be_revoked() {
    let dir = tempdir();
    let (server, _default, _berlin) = fleet(dir.path());
    let echo = echo_server();
    let open = |token: &str, project: &str, device: &str| {
        server
            .call(
                "POST",
                &format!("/api/v2/{project}/port_tunnel"),
                token,
                &[],
                Some(
                    &json!({"device_uuid": device, "port": echo.port(), "allowed_ip": "127.0.0.7"}),
                ),
            )
            .status
    };

    let (full_id, full) = make_token(&server, json!({"name": "ci", "scope": "read+write"}));
    assert!(full.starts_with("Bearer ") && full.contains('_'), "{full}");
    assert_eq!(server.request_as("GET", "/api/v1/clients", &full).0, 200);
    assert_eq!(open(&full, "default", "default-1"), 201);

    let (_, read) = make_token(&server, json!({"name": "dashboard", "scope": "read"}));
    assert_eq!(server.request_as("GET", "/api/v1/clients", &read).0, 200);
    let (status, body) = server.request_as(
        "PUT",
        &format!(
            "/api/v1/clients/default-1/tunnels?remote={}&acl=127.0.0.8",
            echo.port()
        ),
        &read,
    );
    assert_eq!(
        (status, error_code(&body)),
        (403, "ERR_CODE_FORBIDDEN"),
        "{body}"
    );
    assert_eq!(open(&read, "default", "default-1"), 403);

    let (_, berlin) = make_token(
        &server,
        json!({"name": "berlin", "scope": "read+write", "project": "berlin-office"}),
    );
    assert_eq!(open(&berlin, "berlin-office", "berlin-1"), 201);
    // It sees only its project's devices.
    let (_, seen) = server.request_as("GET", "/api/v1/clients", &berlin);
    assert_eq!(seen["meta"]["count"], 1, "{seen}");
    assert_eq!(seen["data"][0]["id"], "berlin-1");
    // The user may know the device exists, so the token's limit is named, not hidden.
    let (status, body) = server.request_as("GET", "/api/v1/clients/default-1", &berlin);
    assert_eq!(status, 403, "{body}");
    assert!(
        error_detail(&body).contains("limited to project \"berlin-office\""),
        "{body}"
    );
    assert_eq!(open(&berlin, "default", "default-1"), 403);
    let (status, _) = server.request_as(
        "PUT",
        &format!(
            "/api/v1/clients/default-1/tunnels?remote={}&acl=127.0.0.9",
            echo.port()
        ),
        &berlin,
    );
    assert_eq!(status, 403);

    // Tokens make no tokens; bad requests are refused.
    let reply = server.call(
        "POST",
        "/api/v1/me/tokens",
        &full,
        &[],
        Some(&json!({"name": "x", "scope": "read"})),
    );
    assert_eq!(reply.status, 403);
    for bad in [
        json!({"name": "x", "scope": "admin"}),
        json!({"name": "", "scope": "read"}),
        json!({"name": "x", "scope": "read", "expires_at": "2001-01-01T00:00:00Z"}),
        json!({"name": "x", "scope": "read", "project": "nowhere"}),
    ] {
        let reply = server.call(
            "POST",
            "/api/v1/me/tokens",
            &server.auth_header,
            &[],
            Some(&bad),
        );
        assert_eq!(reply.status, 400, "{bad}: {}", reply.body);
    }

    // Listed without secrets, with last use; revoked at once.
    let (status, list) = server.request("GET", "/api/v1/me/tokens");
    assert_eq!(status, 200);
    let listed = list["data"].as_array().expect("list");
    assert_eq!(listed.len(), 3);
    let text = list.to_string();
    let secret = full.rsplit_once('_').expect("<prefix>_<secret>").1;
    assert!(!text.contains(secret) && !text.contains("hash"), "{text}");
    let ci = listed
        .iter()
        .find(|t| t["id"] == full_id.as_str())
        .expect("ci");
    assert!(ci["last_used_at"].is_string(), "{ci}");
    let (status, _) = server.request("DELETE", &format!("/api/v1/me/tokens/{full_id}"));
    assert_eq!(status, 204);
    assert_eq!(server.request_as("GET", "/api/v1/clients", &full).0, 401);
    let (status, _) = server.request("DELETE", &format!("/api/v1/me/tokens/{full_id}"));
    assert_eq!(status, 404);

    // A token that expires works until then and not a moment after.
    let expires_at = chrono::Utc::now() + chrono::Duration::seconds(2);
    let (_, expiring) = make_token(
        &server,
        json!({"name": "short", "scope": "read", "expires_at": expires_at.to_rfc3339()}),
    );
    assert_eq!(
        server.request_as("GET", "/api/v1/clients", &expiring).0,
        200
    );
    wait_for("the token to expire", Duration::from_secs(10), || {
        (chrono::Utc::now() > expires_at).then_some(())
    });
    assert_eq!(
        server.request_as("GET", "/api/v1/clients", &expiring).0,
        401
    );
}

#[test]
fn the_openapi_document_covers_both_faces() {
    let dir = tempdir();
    let server = Rportd::start(dir.path());
    let reply = server.call("GET", "/api/v1/openapi.json", "", &[], None);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["openapi"], "3.0.3");
    let paths = &reply.body["paths"];
    assert!(paths["/api/v2/{project_key}/port_tunnel"]["post"]["summary"].is_string());
    assert!(paths["/api/v1/clients/{client_id}/tunnels"]["put"]["summary"].is_string());
    assert_eq!(
        paths["/api/v2/{project_key}/port_tunnel"]["post"]["security"],
        json!([{"bearerAuth": []}])
    );
}

#[test]
fn agent_credentials_are_made_per_project_through_the_api() {
    let dir = tempdir();
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            agent_auth: String::new(),
            ..Default::default()
        },
    );
    let post =
        |who: &str, body: Value| server.call("POST", "/api/v1/clients-auth", who, &[], Some(&body));
    let reply = server.call(
        "POST",
        "/api/v1/projects",
        &server.auth_header,
        &[],
        Some(&json!({"key": "lab"})),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);

    // Without a password one is generated and shown this once.
    let reply = post(
        &server.auth_header,
        json!({"id": "lab-cred", "project": "lab"}),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let password = reply.body["data"]["password"]
        .as_str()
        .expect("generated password")
        .to_owned();
    let again = post(
        &server.auth_header,
        json!({"id": "lab-cred", "project": "lab"}),
    );
    assert_eq!(
        (again.status, error_code(&again.body)),
        (409, "ERR_CODE_ALREADY_EXIST")
    );
    let short = post(&server.auth_header, json!({"id": "x", "password": "short"}));
    assert_eq!(short.status, 400, "{}", short.body);
    let nowhere = post(
        &server.auth_header,
        json!({"id": "x", "project": "nowhere"}),
    );
    assert_eq!(nowhere.status, 400, "{}", nowhere.body);

    // An agent using it belongs to the project; no secret is ever listed.
    let mut agent = start_agent(
        &server,
        "lab-1",
        &format!("lab-cred:{password}"),
        &dir.path().join("agent"),
    );
    server.wait_connection_state("lab-1", "connected", Duration::from_secs(30));
    assert_eq!(server.client("lab-1").expect("listed")["project"], "lab");
    let (status, list) = server.request("GET", "/api/v1/clients-auth");
    assert_eq!(status, 200);
    assert!(!list.to_string().contains(&password), "{list}");
    let lab = list["data"]
        .as_array()
        .expect("credentials")
        .iter()
        .find(|c| c["id"] == "lab-cred")
        .expect("listed")
        .clone();
    assert_eq!(
        (&lab["project"], &lab["clients_connected"], &lab["source"]),
        (&json!("lab"), &json!(1), &json!("db"))
    );
    let (status, body) = server.request("DELETE", "/api/v1/projects/lab");
    assert_eq!(status, 409, "a project with credentials stays: {body}");

    // Only a project's admins make its credentials.
    let reply = server.call(
        "POST",
        "/api/v1/users",
        &server.auth_header,
        &[],
        Some(&json!({"username": "ops", "password": "ops-long-password-1", "roles": {"default": "admin", "lab": "tunnels"}})),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let ops = basic("ops", "ops-long-password-1");
    let refused = post(&ops, json!({"id": "lab-2", "project": "lab"}));
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(post(&ops, json!({"id": "default-2"})).status, 201);
    let refused = server.call("DELETE", "/api/v1/clients-auth/lab-cred", &ops, &[], None);
    assert_eq!(refused.status, 403, "{}", refused.body);

    // Deleting one in use needs force, which disconnects its agents for good.
    let (status, body) = server.request("DELETE", "/api/v1/clients-auth/lab-cred");
    assert_eq!(
        (status, error_code(&body)),
        (409, "ERR_CODE_CLIENT_AUTH_HAS_CLIENT"),
        "{body}"
    );
    let (status, body) = server.request("DELETE", "/api/v1/clients-auth/lab-cred?force=true");
    assert_eq!(status, 204, "{body}");
    server.wait_connection_state("lab-1", "disconnected", Duration::from_secs(30));
    wait_for(
        "the agent's next login refused",
        Duration::from_secs(30),
        || {
            let (_, audit) = server.request(
                "GET",
                "/api/v1/auditlog?filter[action]=agent.login&filter[actor]=lab-cred",
            );
            (audit["data"][0]["result"] == "failure").then_some(())
        },
    );
    assert_eq!(
        server.client("lab-1").expect("listed")["connection_state"],
        "disconnected"
    );
    let (_, audit) = server.request("GET", "/api/v1/auditlog?filter[action]=clientauth.delete");
    assert_eq!(audit["data"][0]["affected_id"], "lab-cred", "{audit}");
    assert_eq!(audit["data"][0]["project"], "lab", "{audit}");
    agent.kill();
    let (status, _) = server.request("DELETE", "/api/v1/clients-auth/lab-cred");
    assert_eq!(status, 404);
}

#[test]
fn configured_agent_credentials_are_read_only() {
    let dir = tempdir();
    let (server, _default, _berlin) = fleet(dir.path());
    let (status, list) = server.request("GET", "/api/v1/clients-auth");
    assert_eq!(status, 200);
    assert_eq!(list["meta"]["count"], 2, "{list}");
    assert_eq!(list["data"][0]["source"], "config");
    let reply = server.call(
        "POST",
        "/api/v1/clients-auth",
        &server.auth_header,
        &[],
        Some(&json!({"id": "new-one"})),
    );
    assert_eq!(
        (reply.status, error_code(&reply.body)),
        (409, "ERR_CODE_CLIENT_AUTH_RO"),
        "{}",
        reply.body
    );
}
