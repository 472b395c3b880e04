//! API v2 port tunnels: bearer tokens only, scoped by the project in the path, JFrog
//! Connect's shapes. Opening one needs a live agent: that is the process-level tests'.

use axum::http::Method;
use serde_json::json;

use crate::harness::{ADMIN, ADMIN_PASSWORD, Setup, TestServer};

#[tokio::test]
async fn a_project_lists_its_own_tunnels_with_a_total() {
    let server = TestServer::with(Setup::two_projects()).await;
    let bearer = server.login(ADMIN, ADMIN_PASSWORD).await;
    let reply = server
        .request(Method::GET, "/api/v2/default/port_tunnel", &bearer)
        .await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.body);
    assert_eq!(reply.header("x-total-count"), "1");
    assert_eq!(
        reply.body,
        json!([{
            "port_tunnel_id": "t-old", "device_uuid": "c1", "port": 22,
            "allowed_ip": "192.0.2.1", "server_address": "127.0.0.1", "server_port": 20001,
            "status": "Closed", "created_at": reply.body[0]["created_at"],
            "closed_at": reply.body[0]["closed_at"], "close_reason": "deleted",
            "created_by": ADMIN,
        }])
    );
    let empty = server
        .request(
            Method::GET,
            "/api/v2/default/port_tunnel?offset=1&limit=0",
            &bearer,
        )
        .await;
    assert_eq!(
        (empty.header("x-total-count"), &empty.body),
        ("1", &json!([]))
    );
    server
        .request(
            Method::GET,
            "/api/v2/default/port_tunnel?limit=ten",
            &bearer,
        )
        .await
        .assert_error(400, "ERR_CODE_INVALID_REQUEST");
    server
        .request(Method::GET, "/api/v2/nowhere/port_tunnel", &bearer)
        .await
        .assert_error(404, "ERR_CODE_PROJECT_NOT_FOUND");
}

#[tokio::test]
async fn a_tunnel_is_found_only_under_its_own_project() {
    let server = TestServer::with(Setup::two_projects()).await;
    let bearer = server.login(ADMIN, ADMIN_PASSWORD).await;
    let reply = server
        .request(Method::GET, "/api/v2/berlin/port_tunnel/t-berlin", &bearer)
        .await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.body);
    assert_eq!(
        (&reply.body["port_tunnel_id"], &reply.body["status"]),
        (&json!("t-berlin"), &json!("Closed"))
    );
    for path in [
        "/api/v2/default/port_tunnel/t-berlin",
        "/api/v2/berlin/port_tunnel/nothing",
    ] {
        server
            .request(Method::GET, path, &bearer)
            .await
            .assert_error(404, "ERR_CODE_TUNNEL_NOT_FOUND");
        server
            .request(Method::DELETE, path, &bearer)
            .await
            .assert_error(404, "ERR_CODE_TUNNEL_NOT_FOUND");
    }
    // A closed one stays closed.
    server
        .request(
            Method::DELETE,
            "/api/v2/berlin/port_tunnel/t-berlin",
            &bearer,
        )
        .await
        .assert_error(409, "ERR_CODE_TUNNEL_CLOSED");
}

#[tokio::test]
async fn opening_refuses_bad_bodies_and_devices_elsewhere_or_offline() {
    let server = TestServer::with(Setup::two_projects()).await;
    let bearer = server.login(ADMIN, ADMIN_PASSWORD).await;
    let open = |project: &'static str, body: serde_json::Value| {
        let server = &server;
        let bearer = bearer.clone();
        async move {
            server
                .send_json(
                    Method::POST,
                    &format!("/api/v2/{project}/port_tunnel"),
                    &bearer,
                    &body,
                )
                .await
        }
    };
    for bad in [
        json!({"port": 22}),
        json!({"device_uuid": "c1", "port": 70000}),
        json!({"device_uuid": "c1", "port": "22"}),
        json!([]),
    ] {
        let reply = open("default", bad.clone()).await;
        reply.assert_error(400, "ERR_CODE_INVALID_REQUEST");
        assert!(
            reply.detail().starts_with("expected {\"device_uuid\""),
            "{bad}: {}",
            reply.body
        );
    }
    open("default", json!({"device_uuid": "c1", "port": 0}))
        .await
        .assert_error(400, "ERR_CODE_INVALID_REQUEST");
    for (project, device) in [("default", "c2"), ("default", "nobody"), ("berlin", "c1")] {
        open(project, json!({"device_uuid": device, "port": 22}))
            .await
            .assert_error(404, "ERR_CODE_DEVICE_NOT_FOUND");
    }
    for allowed in ["not-an-ip", "10.0.0.1,10.0.0.2"] {
        open(
            "default",
            json!({"device_uuid": "c1", "port": 22, "allowed_ip": allowed}),
        )
        .await
        .assert_error(400, "ERR_CODE_INVALID_ACL");
    }
    open("default", json!({"device_uuid": "c1", "port": 22}))
        .await
        .assert_error(409, "ERR_CODE_DEVICE_OFFLINE");
    open("nowhere", json!({"device_uuid": "c1", "port": 22}))
        .await
        .assert_error(404, "ERR_CODE_PROJECT_NOT_FOUND");
}

#[tokio::test]
async fn a_user_without_a_role_hears_403_whether_the_project_exists_or_not() {
    let server = TestServer::with(Setup::two_projects()).await;
    let vera = server.user("vera", json!({"default": "viewer"})).await;
    for project in ["berlin", "nowhere"] {
        let reply = server
            .request(
                Method::GET,
                &format!("/api/v2/{project}/port_tunnel"),
                &vera,
            )
            .await;
        reply.assert_error(403, "ERR_CODE_FORBIDDEN");
        assert!(
            reply.detail().contains("has no role in project"),
            "{}",
            reply.body
        );
    }
    // A viewer reads but opens and closes nothing; refused before the body is read.
    let reply = server
        .request(Method::GET, "/api/v2/default/port_tunnel/t-old", &vera)
        .await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.body);
    let reply = server
        .call(Method::POST, "/api/v2/default/port_tunnel")
        .auth(&vera)
        .raw_json("{not json")
        .send()
        .await;
    reply.assert_error(403, "ERR_CODE_FORBIDDEN");
    assert!(
        reply.detail().contains("needs role tunnels or admin"),
        "{}",
        reply.body
    );
    server
        .request(Method::DELETE, "/api/v2/default/port_tunnel/t-old", &vera)
        .await
        .assert_error(403, "ERR_CODE_FORBIDDEN");
}
