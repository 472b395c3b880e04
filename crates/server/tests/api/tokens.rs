//! `/api/v1/me/tokens`: API tokens with a scope and maybe a project, shown once.

use axum::http::Method;
use serde_json::{Value, json};

use crate::harness::{Setup, TestServer, admin};

/// Makes an API token as `who`; returns its id and its `Authorization` value.
async fn make_token(server: &TestServer, who: &str, body: Value) -> (String, String) {
    let reply = server
        .send_json(Method::POST, "/api/v1/me/tokens", who, &body)
        .await;
    let data = reply.assert_data(200);
    let id = data["id"].as_str().expect("id").to_owned();
    let token = data["token"].as_str().expect("token shown once");
    (id, format!("Bearer {token}"))
}

#[tokio::test]
async fn a_read_scope_token_may_only_read() {
    let server = TestServer::with(Setup {
        clients: vec![("c1", "default")],
        ..Default::default()
    })
    .await;
    let (_, read) = make_token(&server, &admin(), json!({"name": "dash", "scope": "read"})).await;
    assert!(read.starts_with("Bearer ") && read.len() > 20, "{read}");
    let me = server.request(Method::GET, "/api/v1/me", &read).await;
    let data = me.assert_data(200);
    assert_eq!(
        (&data["api_token"], &data["scope"]),
        (&json!(true), &json!("read"))
    );
    for path in [
        "/api/v1/clients",
        "/api/v1/clients/c1",
        "/api/v1/users",
        "/api/v1/tunnels",
    ] {
        let reply = server.request(Method::GET, path, &read).await;
        assert_eq!(reply.status.as_u16(), 200, "{path}: {}", reply.body);
    }
    // Whatever it writes, and however harmless, is refused before the handler looks.
    for (method, path) in [
        (Method::POST, "/api/v1/projects"),
        (Method::DELETE, "/api/v1/clients/c1"),
        (Method::PUT, "/api/v1/clients/c1/tunnels?remote=22"),
        (Method::POST, "/api/v1/users"),
    ] {
        let reply = server
            .send_json(method.clone(), path, &read, &json!({"key": "lab"}))
            .await;
        reply.assert_error(403, "ERR_CODE_FORBIDDEN");
        assert!(
            reply.detail().contains("read scope"),
            "{method} {path}: {}",
            reply.body
        );
    }
    // v2 too, with a bearer token.
    let reply = server
        .send_json(
            Method::POST,
            "/api/v2/default/port_tunnel",
            &read,
            &json!({"device_uuid": "c1", "port": 22}),
        )
        .await;
    reply.assert_error(403, "ERR_CODE_FORBIDDEN");
    let listed = server
        .request(Method::GET, "/api/v2/default/port_tunnel", &read)
        .await;
    assert_eq!(listed.status.as_u16(), 200, "{}", listed.body);
    let clients = server
        .request(Method::GET, "/api/v1/clients", &admin())
        .await;
    assert_eq!(clients.count(), 1, "nothing was deleted");
}

#[tokio::test]
async fn tokens_make_no_tokens_and_bad_requests_are_refused() {
    let server = TestServer::start().await;
    let (_, full) = make_token(
        &server,
        &admin(),
        json!({"name": "ci", "scope": "read+write"}),
    )
    .await;
    let reply = server
        .send_json(
            Method::POST,
            "/api/v1/me/tokens",
            &full,
            &json!({"name": "x", "scope": "read"}),
        )
        .await;
    reply.assert_error(403, "ERR_CODE_FORBIDDEN");
    // Nor change a password.
    let reply = server
        .send_json(
            Method::PUT,
            "/api/v1/me",
            &full,
            &json!({"old_password": "a", "new_password": "b"}),
        )
        .await;
    reply.assert_error(403, "ERR_CODE_FORBIDDEN");
    for bad in [
        json!({"name": "x", "scope": "admin"}),
        json!({"name": "", "scope": "read"}),
        json!({"name": "x".repeat(250), "scope": "read"}),
        json!({"name": "x", "scope": "read", "expires_at": "2001-01-01T00:00:00Z"}),
        json!({"name": "x", "scope": "read", "project": "nowhere"}),
        json!({"name": "x", "scope": "read", "project": "Not A Key"}),
    ] {
        let reply = server
            .send_json(Method::POST, "/api/v1/me/tokens", &admin(), &bad)
            .await;
        reply.assert_error(400, "ERR_CODE_INVALID_REQUEST");
    }
    // A project the user has no role in: a token for it could do nothing.
    server.project("lab").await;
    let vera = server.user("vera", json!({})).await;
    let reply = server
        .send_json(
            Method::POST,
            "/api/v1/me/tokens",
            &vera,
            &json!({"name": "x", "scope": "read", "project": "lab"}),
        )
        .await;
    reply.assert_error(403, "ERR_CODE_FORBIDDEN");
}

#[tokio::test]
async fn tokens_are_listed_without_secrets_and_revoked_at_once() {
    let server = TestServer::start().await;
    server.project("lab").await;
    let (id, token) = make_token(
        &server,
        &admin(),
        json!({"name": "ci", "scope": "read+write", "project": "lab"}),
    )
    .await;
    make_token(&server, &admin(), json!({"name": "dash", "scope": "read"})).await;
    server
        .request(Method::GET, "/api/v1/projects", &token)
        .await
        .assert_data(200);
    let list = server
        .request(Method::GET, "/api/v1/me/tokens", &admin())
        .await;
    let listed = list.assert_data(200).as_array().expect("a list").clone();
    assert_eq!(listed.len(), 2);
    let text = list.body.to_string();
    let secret = token.rsplit_once('_').expect("<prefix>_<secret>").1;
    assert!(!text.contains(secret) && !text.contains("hash"), "{text}");
    let ci = listed.iter().find(|t| t["id"] == id.as_str()).expect("ci");
    assert_eq!(
        (&ci["scope"], &ci["project"]),
        (&json!("read+write"), &json!("lab"))
    );
    assert!(ci["last_used_at"].is_string(), "{ci}");

    // Another user sees only its own, and cannot delete someone else's.
    let vera = server.user("vera", json!({})).await;
    let theirs = server
        .request(Method::GET, "/api/v1/me/tokens", &vera)
        .await;
    assert_eq!(theirs.assert_data(200), &json!([]));
    let path = format!("/api/v1/me/tokens/{id}");
    server
        .request(Method::DELETE, &path, &vera)
        .await
        .assert_error(404, "ERR_CODE_TOKEN_NOT_FOUND");

    let reply = server.request(Method::DELETE, &path, &admin()).await;
    assert_eq!(reply.status.as_u16(), 204, "{}", reply.body);
    server
        .request(Method::GET, "/api/v1/projects", &token)
        .await
        .assert_error(401, "ERR_CODE_UNAUTHORIZED");
    server
        .request(Method::DELETE, &path, &admin())
        .await
        .assert_error(404, "ERR_CODE_TOKEN_NOT_FOUND");
}

#[tokio::test]
async fn a_project_token_sees_only_its_project_and_names_its_limit() {
    let server = TestServer::with(Setup {
        projects: vec!["berlin"],
        clients: vec![("c-default", "default"), ("c-berlin", "berlin")],
        ..Default::default()
    })
    .await;
    let (_, berlin) = make_token(
        &server,
        &admin(),
        json!({"name": "b", "scope": "read+write", "project": "berlin"}),
    )
    .await;
    let seen = server
        .request(Method::GET, "/api/v1/clients", &berlin)
        .await;
    assert_eq!(seen.count(), 1, "{}", seen.body);
    assert_eq!(seen.body["data"][0]["id"], "c-berlin");
    // The user may know the other client exists: the token's limit is named, not hidden.
    let reply = server
        .request(Method::GET, "/api/v1/clients/c-default", &berlin)
        .await;
    reply.assert_error(403, "ERR_CODE_FORBIDDEN");
    assert!(
        reply.detail().contains("limited to project \"berlin\""),
        "{}",
        reply.body
    );
    // Server-wide things need a token not limited to a project.
    let reply = server.request(Method::GET, "/api/v1/users", &berlin).await;
    reply.assert_error(403, "ERR_CODE_FORBIDDEN");
    assert!(
        reply.detail().contains("not limited to one project"),
        "{}",
        reply.body
    );
    let projects = server
        .request(Method::GET, "/api/v1/projects", &berlin)
        .await;
    let keys: Vec<&Value> = projects
        .assert_data(200)
        .as_array()
        .expect("a list")
        .iter()
        .map(|p| &p["key"])
        .collect();
    assert_eq!(keys, [&json!("berlin")]);
}
