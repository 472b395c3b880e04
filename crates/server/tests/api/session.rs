//! `login`, `logout`, `me` and `status`.

use axum::http::Method;
use serde_json::json;

use crate::harness::{ADMIN, ADMIN_PASSWORD, Setup, TestServer, admin, basic, password_of};

#[tokio::test]
async fn login_takes_basic_auth_or_a_json_body_and_gives_a_bearer_token() {
    let server = TestServer::start().await;
    let reply = server.request(Method::GET, "/api/v1/login", &admin()).await;
    let data = reply.assert_data(200);
    assert!(
        data["token"].as_str().is_some_and(|t| !t.is_empty()),
        "{data}"
    );
    assert_eq!(data["two_fa"], serde_json::Value::Null);

    let bearer = server.login(ADMIN, ADMIN_PASSWORD).await;
    let me = server.request(Method::GET, "/api/v1/me", &bearer).await;
    assert_eq!(me.assert_data(200)["username"], ADMIN);

    // Neither credentials nor a body; a body of the wrong shape; a wrong password.
    let reply = server.request(Method::POST, "/api/v1/login", "").await;
    reply.assert_error(401, "ERR_CODE_UNAUTHORIZED");
    let reply = server
        .call(Method::POST, "/api/v1/login")
        .raw_json(r#"{"user": "admin"}"#)
        .send()
        .await;
    reply.assert_error(400, "ERR_CODE_INVALID_REQUEST");
    assert!(reply.detail().contains("\"username\""), "{}", reply.body);
    let reply = server
        .call(Method::POST, "/api/v1/login")
        .json(&json!({"username": ADMIN, "password": "wrong-password"}))
        .send()
        .await;
    reply.assert_error(401, "ERR_CODE_UNAUTHORIZED");
}

#[tokio::test]
async fn token_lifetime_is_bounded_by_max_token_lifetime() {
    let server = TestServer::with(Setup {
        api: "max_token_lifetime = 2\n".into(),
        ..Default::default()
    })
    .await;
    // max_token_lifetime is in hours.
    let reply = server
        .request(Method::GET, "/api/v1/login?token-lifetime=7201", &admin())
        .await;
    reply.assert_error(400, "ERR_CODE_INVALID_REQUEST");
    assert!(
        reply.detail().contains("at most 7200 seconds"),
        "{}",
        reply.body
    );
    for fine in ["7200", "0", ""] {
        let reply = server
            .request(
                Method::GET,
                &format!("/api/v1/login?token-lifetime={fine}"),
                &admin(),
            )
            .await;
        reply.assert_data(200);
    }
}

#[tokio::test]
async fn logout_revokes_the_token_it_carries_and_only_that_one() {
    let server = TestServer::start().await;
    let first = server.login(ADMIN, ADMIN_PASSWORD).await;
    let second = server.login(ADMIN, ADMIN_PASSWORD).await;
    let reply = server
        .request(Method::DELETE, "/api/v1/logout", &first)
        .await;
    assert_eq!(reply.status.as_u16(), 204, "{}", reply.body);
    assert_eq!(reply.body, serde_json::Value::Null);
    server
        .request(Method::GET, "/api/v1/status", &first)
        .await
        .assert_error(401, "ERR_CODE_UNAUTHORIZED");
    server
        .request(Method::DELETE, "/api/v1/logout", &first)
        .await
        .assert_error(401, "ERR_CODE_UNAUTHORIZED");
    server
        .request(Method::GET, "/api/v1/status", &second)
        .await
        .assert_data(200);
    // Basic auth has no session to end.
    server
        .request(Method::DELETE, "/api/v1/logout", &admin())
        .await
        .assert_error(400, "ERR_CODE_INVALID_REQUEST");
}

#[tokio::test]
async fn me_says_who_is_calling_and_how() {
    let server = TestServer::start().await;
    let me = server.request(Method::GET, "/api/v1/me", &admin()).await;
    assert_eq!(
        me.assert_data(200),
        &json!({
            "username": ADMIN, "admin": true, "roles": {}, "api_token": false,
            "scope": "read+write", "project": null,
        })
    );
    server.project("lab").await;
    let vera = server.user("vera", json!({"lab": "viewer"})).await;
    let me = server.request(Method::GET, "/api/v1/me", &vera).await;
    let data = me.assert_data(200);
    assert_eq!(data["username"], "vera");
    assert_eq!(data["admin"], false);
    assert_eq!(data["roles"], json!({"lab": "viewer"}));
}

#[tokio::test]
async fn status_shows_the_server_and_the_process_only_to_admins() {
    let server = TestServer::with(Setup {
        clients: vec![("c1", "default"), ("c2", "default")],
        ..Default::default()
    })
    .await;
    let reply = server
        .request(Method::GET, "/api/v1/status", &admin())
        .await;
    let data = reply.assert_data(200);
    assert_eq!(data["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(data["clients_connected"], 0);
    assert_eq!(data["clients_disconnected"], 2);
    assert_eq!(data["clients_auth_source"], "DB");
    assert_eq!(data["users_auth_source"], "Static Credentials");
    assert_eq!(data["used_ports"], json!(["20000-20100"]));
    assert!(data["fingerprint"].as_str().is_some_and(|f| !f.is_empty()));
    assert!(data["runtime"]["tasks"].is_u64(), "{data}");
    // A single server is a cluster of one: itself, always reachable.
    let node_id = data["cluster"]["node_id"].as_str().expect("node id");
    let nodes = data["cluster"]["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 1, "{data}");
    assert_eq!(nodes[0]["id"], node_id);
    assert_eq!(nodes[0]["this_node"], true);
    assert_eq!(nodes[0]["alive"], true);
    assert_eq!(nodes[0]["reachable"], true);
    // The console's cluster page: when it last renewed its lease, and what it holds.
    assert!(nodes[0]["last_seen"].is_string(), "{data}");
    assert!(nodes[0]["started_at"].is_string(), "{data}");
    assert_eq!(nodes[0]["clients_connected"], 0, "{data}");

    let nobody = server.user("nobody", json!({})).await;
    let reply = server.request(Method::GET, "/api/v1/status", &nobody).await;
    let data = reply.assert_data(200);
    assert_eq!(data["runtime"], serde_json::Value::Null);
    assert_eq!(data["cluster"]["node_id"], node_id);
    assert_eq!(data["cluster"]["nodes"], serde_json::Value::Null);
}

#[tokio::test]
async fn the_peer_channels_client_address_header_means_nothing_on_the_public_api() {
    let server = TestServer::start().await;
    let reply = server
        .call(Method::GET, "/api/v1/me")
        .auth(&admin())
        .header("x-rport-peer-client", "203.0.113.9")
        .send()
        .await;
    reply.assert_data(200);
    // A failed login is audited with the address it came from: the TCP peer's.
    let reply = server
        .call(Method::GET, "/api/v1/login")
        .auth(&basic(ADMIN, "wrong-password-1"))
        .header("x-rport-peer-client", "203.0.113.9")
        .send()
        .await;
    reply.assert_error(401, "ERR_CODE_UNAUTHORIZED");
    let reply = server
        .request(
            Method::GET,
            "/api/v1/auditlog?filter[action]=login",
            &admin(),
        )
        .await;
    let entries = reply.assert_data(200).as_array().expect("entries").clone();
    assert!(!entries.is_empty(), "{}", reply.body);
    for entry in entries {
        assert_eq!(entry["remote_ip"], "127.0.0.1", "{entry}");
    }
}

#[tokio::test]
async fn users_change_their_own_password_with_the_old_one() {
    let server = TestServer::start().await;
    server.user("vera", json!({})).await;
    let old = basic("vera", &password_of("vera"));
    let change = |old_password: &str, new_password: &str| {
        let body = json!({"old_password": old_password, "new_password": new_password});
        let old = old.clone();
        let server = &server;
        async move {
            server
                .send_json(Method::PUT, "/api/v1/me", &old, &body)
                .await
        }
    };
    let new_password = "a-new-password-of-length";
    // RPort's answer to a wrong old password: 403.
    change("wrong", new_password)
        .await
        .assert_error(403, "ERR_CODE_FORBIDDEN");
    change(&password_of("vera"), "short")
        .await
        .assert_error(400, "ERR_CODE_PASSWORD_TOO_SHORT");
    let reply = change(&password_of("vera"), new_password).await;
    assert_eq!(reply.status.as_u16(), 204, "{}", reply.body);
    server
        .request(Method::GET, "/api/v1/me", &old)
        .await
        .assert_error(401, "ERR_CODE_UNAUTHORIZED");
    server
        .request(Method::GET, "/api/v1/me", &basic("vera", new_password))
        .await
        .assert_data(200);

    // The configured user is changed in the configuration, not here.
    let reply = server
        .send_json(
            Method::PUT,
            "/api/v1/me",
            &admin(),
            &json!({"old_password": ADMIN_PASSWORD, "new_password": "another-long-password"}),
        )
        .await;
    reply.assert_error(409, "ERR_CODE_USER_READ_ONLY");
    assert!(reply.detail().contains("[api] auth"), "{}", reply.body);
}
