//! End to end: the audit log records logins, tunnels and project changes with actor,
//! actor type and address, and can be filtered and paged.

use crate::support::*;
use serde_json::{Value, json};

fn entries(server: &Rportd, query: &str) -> (Vec<Value>, u64) {
    let (status, body) = server.request("GET", &format!("/api/v1/auditlog{query}"));
    assert_eq!(status, 200, "{body}");
    (
        body["data"].as_array().expect("list").clone(),
        body["meta"]["count"].as_u64().expect("count"),
    )
}

fn find<'a>(list: &'a [Value], action: &str, result: &str) -> Option<&'a Value> {
    list.iter()
        .find(|e| e["rportd_action"] == action && e["result"] == result)
}

#[test]
fn audit_log_records_who_did_what_from_where() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Rportd::start(dir.path());
    let _agent = Rport::attach(&server, "client-1", &dir.path().join("agent"));
    server.wait_connection_state("client-1", "connected", ATTACH);
    let echo = echo_server();

    // A failed and a successful login.
    let (status, _) = server.request_as("GET", "/api/v1/login", &basic(API_USER, "wrong"));
    assert_eq!(status, 401);
    server.bearer();
    // A tunnel opened and deleted, one closed by the system, a project made.
    let tunnel = server.open_tunnel("client-1", &format!("remote={}", echo.port()));
    let id = tunnel["id"].as_str().expect("id");
    let (status, _) = server.request("DELETE", &format!("/api/v1/clients/client-1/tunnels/{id}"));
    assert_eq!(status, 204);
    let short = server.open_tunnel(
        "client-1",
        &format!("remote={}&auto-close=1s&acl=127.0.0.2", echo.port()),
    );
    server.wait_tunnel_status(short["id"].as_str().expect("id"), "terminated", ATTACH);
    let reply = server.call(
        "POST",
        "/api/v1/projects",
        &server.auth_header,
        &[],
        Some(&json!({"key": "lab"})),
    );
    assert_eq!(reply.status, 201);

    let (list, count) = entries(&server, "?page[limit]=100");
    assert_eq!(count as usize, list.len());
    let failed = find(&list, "login", "failure").expect("failed login");
    assert_eq!(failed["username"], API_USER);
    assert_eq!(failed["actor_type"], "user");
    assert_eq!(failed["remote_ip"], "127.0.0.1");
    assert!(find(&list, "login", "success").is_some());
    let agent = find(&list, "agent.login", "success").expect("agent login");
    assert_eq!(agent["username"], "agent1");
    assert_eq!(agent["actor_type"], "agent");
    assert_eq!(agent["affected_id"], "client-1");
    let created = list
        .iter()
        .find(|e| e["rportd_action"] == "tunnel.create" && e["affected_id"] == id)
        .expect("tunnel created");
    assert_eq!(created["username"], API_USER);
    assert_eq!(created["remote_ip"], "127.0.0.1");
    assert_eq!(created["project"], "default");
    let deleted = list
        .iter()
        .find(|e| e["rportd_action"] == "tunnel.close" && e["affected_id"] == id)
        .expect("tunnel deleted");
    assert_eq!(deleted["username"], API_USER);
    let expired = list
        .iter()
        .find(|e| e["rportd_action"] == "tunnel.close" && e["affected_id"] == short["id"])
        .expect("tunnel closed by the system");
    assert_eq!(expired["actor_type"], "system");
    assert!(
        expired["detail"]
            .as_str()
            .is_some_and(|d| d.contains("auto_close"))
    );
    assert!(find(&list, "project.create", "success").is_some());
    // Newest first.
    assert_eq!(list[0]["rportd_action"], "project.create");
    // Never a password.
    let text = serde_json::to_string(&list).expect("json");
    assert!(!text.contains(API_PASSWORD));

    // Filters and paging.
    let (creates, count) = entries(&server, "?filter[action]=tunnel.create");
    assert_eq!((creates.len(), count), (2, 2));
    let (page, count) = entries(&server, "?page[limit]=1&page[offset]=1");
    assert_eq!(page.len(), 1);
    assert_eq!(page[0], list[1]);
    assert_eq!(count as usize, list.len());
    let (agents, _) = entries(&server, "?filter[actor]=agent1");
    assert!(agents.iter().all(|e| e["username"] == "agent1"));
    let (future, count) = entries(&server, "?filter[since]=2999-01-01T00:00:00Z");
    assert_eq!((future.len(), count), (0, 0));
    let (status, body) = server.request("GET", "/api/v1/auditlog?filter[since]=yesterday");
    assert_eq!(status, 400, "{body}");

    // Tokens, users and projects: each change with its actor and address, never a secret.
    let reply = server.call(
        "POST",
        "/api/v1/me/tokens",
        &server.auth_header,
        &[],
        Some(&json!({"name": "ci", "scope": "read"})),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let token_id = reply.body["data"]["id"].as_str().expect("id").to_owned();
    let token = reply.body["data"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let (status, _) = server.request("DELETE", &format!("/api/v1/me/tokens/{token_id}"));
    assert_eq!(status, 204);
    let reply = server.call(
        "POST",
        "/api/v1/users",
        &server.auth_header,
        &[],
        Some(&json!({"username": "ops", "password": "ops-long-password-1", "roles": {"lab": "viewer"}})),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let reply = server.call(
        "PUT",
        "/api/v1/users/ops",
        &server.auth_header,
        &[],
        Some(&json!({"password": "ops-long-password-2"})),
    );
    assert_eq!(reply.status, 204, "{}", reply.body);
    let (status, _) = server.request("DELETE", "/api/v1/users/ops");
    assert_eq!(status, 204);
    let (status, _) = server.request("DELETE", "/api/v1/projects/lab");
    assert_eq!(status, 204);
    let (list, _) = entries(&server, "?page[limit]=6");
    let seen: Vec<(&str, &str)> = list
        .iter()
        .map(|e| {
            (
                e["rportd_action"].as_str().unwrap_or(""),
                e["affected_id"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("project.delete", "lab"),
            ("user.delete", "ops"),
            ("user.update", "ops"),
            ("user.create", "ops"),
            ("token.delete", token_id.as_str()),
            ("token.create", token_id.as_str()),
        ]
    );
    for entry in &list {
        assert_eq!(
            (
                &entry["username"],
                &entry["actor_type"],
                &entry["remote_ip"]
            ),
            (&json!(API_USER), &json!("user"), &json!("127.0.0.1")),
            "{entry}"
        );
    }
    assert_eq!(list[2]["detail"], "password");
    let text = serde_json::to_string(&list).expect("json");
    assert!(!text.contains("ops-long-password") && !text.contains(&token));
}
