//! Every error comes in RPort's envelope, including those axum makes before a handler
//! runs; refused credentials say how to authenticate; bans say when to come back.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::harness::{ADMIN, PEER, Setup, TestServer, admin, basic};

#[tokio::test]
async fn an_unknown_path_is_404_in_the_envelope() {
    let server = TestServer::start().await;
    for path in [
        "/api/v1/nothing",
        "/console/nothing.js",
        "/api/v3/default/port_tunnel",
    ] {
        let reply = server.request(Method::GET, path, &admin()).await;
        reply.assert_error(404, "ERR_CODE_NOT_FOUND");
    }
}

#[tokio::test]
async fn a_path_parameter_that_is_not_utf8_is_400_in_the_envelope() {
    let server = TestServer::start().await;
    let reply = server
        .request(Method::GET, "/api/v1/clients/%FF", &admin())
        .await;
    reply.assert_error(400, "ERR_CODE_INVALID_REQUEST");
    assert!(reply.detail().contains("client_id"), "{}", reply.body);
}

#[tokio::test]
async fn a_wrong_method_is_405_in_the_envelope() {
    let server = TestServer::start().await;
    for (method, path) in [
        (Method::POST, "/api/v1/status"),
        (Method::DELETE, "/api/v1/clients"),
        (Method::PATCH, "/api/v1/users/someone"),
        (Method::PUT, "/api/v2/default/port_tunnel"),
    ] {
        let reply = server.request(method.clone(), path, &admin()).await;
        reply.assert_error(405, "ERR_CODE_METHOD_NOT_ALLOWED");
    }
}

#[tokio::test]
async fn a_malformed_body_is_400_showing_the_expected_shape() {
    let server = TestServer::start().await;
    let cases = [
        (
            "/api/v1/projects",
            "{not json",
            r#"{"key": "KEY", "name": "NAME"}"#,
        ),
        (
            "/api/v1/users",
            r#"{"username": "x"}"#,
            r#"{"username", "password", "admin": BOOL"#,
        ),
        (
            "/api/v1/clients-auth",
            r#"{"id": "x", "surprise": 1}"#,
            r#"{"id", "password"?, "project"?}"#,
        ),
        (
            "/api/v1/me/tokens",
            "[]",
            r#"{"name", "scope": "read", "read+write" or "clients-auth""#,
        ),
    ];
    for (path, body, shape) in cases {
        let reply = server
            .call(Method::POST, path)
            .auth(&admin())
            .raw_json(body)
            .send()
            .await;
        reply.assert_error(400, "ERR_CODE_INVALID_REQUEST");
        assert!(
            reply.detail().starts_with(&format!("expected {shape}")),
            "{path}: {}",
            reply.body
        );
    }
    // Nothing was created.
    let projects = server
        .request(Method::GET, "/api/v1/projects", &admin())
        .await;
    assert_eq!(projects.assert_data(200).as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_body_over_64_kib_is_413_in_the_envelope() {
    let server = TestServer::start().await;
    let huge = json!({"username": "x".repeat(100 * 1024), "password": "long-enough-password"});
    let reply = server
        .send_json(Method::POST, "/api/v1/users", &admin(), &huge)
        .await;
    reply.assert_error(413, "ERR_CODE_REQUEST_TOO_LARGE");
    // Just under the limit is read, and refused for what it says.
    let near = json!({"key": "x".repeat(60 * 1024)});
    let reply = server
        .send_json(Method::POST, "/api/v1/projects", &admin(), &near)
        .await;
    reply.assert_error(400, "ERR_CODE_INVALID_REQUEST");
}

#[tokio::test]
async fn a_bad_query_string_is_400_in_the_envelope() {
    let server = TestServer::start().await;
    let cases = [
        ("/api/v1/clients?page[limit]=-1", "ERR_CODE_INVALID_PAGE"),
        ("/api/v1/clients?page[limit]=many", "ERR_CODE_INVALID_PAGE"),
        ("/api/v1/clients?page[offset]=-1", "ERR_CODE_INVALID_PAGE"),
        ("/api/v1/clients?sort=colour", "ERR_CODE_INVALID_SORT"),
        (
            "/api/v1/clients?filter[colour]=red",
            "ERR_CODE_UNSUPPORTED_FILTER",
        ),
        (
            "/api/v1/clients?fields[clients]=id,colour",
            "ERR_CODE_INVALID_FIELDS",
        ),
        ("/api/v1/tunnels?page[limit]=ten", "ERR_CODE_INVALID_PAGE"),
        (
            "/api/v1/auditlog?page[offset]=x",
            "ERR_CODE_INVALID_REQUEST",
        ),
        (
            "/api/v1/auditlog?filter[since]=yesterday",
            "ERR_CODE_INVALID_REQUEST",
        ),
        (
            "/api/v1/login?token-lifetime=soon",
            "ERR_CODE_INVALID_REQUEST",
        ),
    ];
    for (path, code) in cases {
        let reply = server.request(Method::GET, path, &admin()).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            reply.body
        );
        reply.assert_error(400, code);
    }
    // Percent-encoding that is not UTF-8 is decoded lossily, as form decoding does: the
    // query string itself is never refused, its values are.
    let reply = server
        .request(
            Method::GET,
            "/api/v1/clients?filter[id]=%FF%FE&x&=y",
            &admin(),
        )
        .await;
    reply.assert_data(200);
    assert_eq!(reply.count(), 0);
}

#[tokio::test]
async fn a_cross_site_origin_is_refused_and_the_apis_own_passes() {
    let server = TestServer::start().await;
    let body = json!({"key": "lab"});
    let refused = server
        .call(Method::POST, "/api/v1/projects")
        .auth(&admin())
        .header("host", "rportd.example:3000")
        .header("origin", "https://evil.example")
        .json(&body)
        .send()
        .await;
    refused.assert_error(403, "ERR_CODE_FORBIDDEN");
    assert!(refused.detail().contains("cross-site"), "{}", refused.body);
    // An Origin without a Host to compare it with, or one that is not a URL, is refused too.
    let refused = server
        .call(Method::GET, "/api/v1/status")
        .auth(&admin())
        .header("origin", "null")
        .send()
        .await;
    refused.assert_error(403, "ERR_CODE_FORBIDDEN");
    let listed = server
        .request(Method::GET, "/api/v1/projects", &admin())
        .await;
    assert_eq!(listed.assert_data(200).as_array().map(Vec::len), Some(1));

    let own = server
        .call(Method::POST, "/api/v1/projects")
        .auth(&admin())
        .header("host", "rportd.example:3000")
        .header("origin", "http://rportd.example:3000/")
        .json(&body)
        .send()
        .await;
    assert_eq!(own.status, StatusCode::CREATED, "{}", own.body);
}

#[tokio::test]
async fn missing_or_wrong_credentials_are_401_with_www_authenticate() {
    let server = TestServer::start().await;
    for authorization in [
        String::new(),
        basic(ADMIN, "wrong-password"),
        basic("nobody", "whatever-password"),
        "Bearer not-a-token".to_owned(),
        "Digest username=admin".to_owned(),
    ] {
        let reply = server
            .request(Method::GET, "/api/v1/clients", &authorization)
            .await;
        reply.assert_error(401, "ERR_CODE_UNAUTHORIZED");
        assert_eq!(
            reply.header("www-authenticate"),
            "Basic realm=\"rportd\"",
            "{authorization:?}"
        );
    }
    // API v2 takes bearer tokens only, and says so.
    let reply = server
        .request(Method::GET, "/api/v2/default/port_tunnel", &admin())
        .await;
    reply.assert_error(401, "ERR_CODE_UNAUTHORIZED");
    assert!(reply.detail().contains("bearer token"), "{}", reply.body);
    assert!(reply.headers.contains_key("www-authenticate"));
}

#[tokio::test]
async fn too_many_failed_logins_ban_the_address_with_retry_after() {
    let server = TestServer::with(Setup {
        api: "max_failed_login = 3\nban_time = 60\n".into(),
        ..Default::default()
    })
    .await;
    let wrong = basic(ADMIN, "wrong-password");
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let reply = server.request(Method::GET, "/api/v1/status", &wrong).await;
        statuses.push(reply.status.as_u16());
    }
    assert_eq!(statuses, [401, 401, 429]);
    // Banned: even the right password is refused from this address, with a time to wait.
    let reply = server
        .request(Method::GET, "/api/v1/status", &admin())
        .await;
    reply.assert_error(429, "ERR_CODE_TOO_MANY_FAILED_LOGINS");
    let wait: u64 = reply
        .header("retry-after")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(!reply.headers.contains_key("www-authenticate"));
    // Another address is not banned and logs in.
    let elsewhere = std::net::SocketAddr::new([192, 0, 2, 7].into(), PEER.port());
    let reply = server
        .call(Method::GET, "/api/v1/status")
        .auth(&admin())
        .from(elsewhere)
        .send()
        .await;
    reply.assert_data(200);
    // A bad bearer token counts as a failure too.
    let other = std::net::SocketAddr::new([192, 0, 2, 8].into(), PEER.port());
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let reply = server
            .call(Method::GET, "/api/v1/me")
            .auth("Bearer forged")
            .from(other)
            .send()
            .await;
        statuses.push(reply.status.as_u16());
    }
    assert_eq!(statuses, [401, 401, 429, 429]);
}
