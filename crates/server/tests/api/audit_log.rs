//! `GET /api/v1/auditlog`: server admins read all of it, a project's admins that
//! project's entries; what the API does appears in it.

use axum::http::Method;
use serde_json::{Value, json};

use crate::harness::{ADMIN, PEER, TestServer, admin, basic};

fn actions(listing: &Value) -> Vec<&str> {
    listing["data"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| e["action"].as_str().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn actions_appear_newest_first_with_who_and_from_where() {
    let server = TestServer::start().await;
    server.project("lab").await;
    server
        .request(Method::GET, "/api/v1/me", &basic(ADMIN, "wrong-password"))
        .await
        .assert_error(401, "ERR_CODE_UNAUTHORIZED");
    server
        .request(Method::DELETE, "/api/v1/projects/lab", &admin())
        .await;
    let log = server
        .request(Method::GET, "/api/v1/auditlog", &admin())
        .await;
    log.assert_data(200);
    assert_eq!(
        actions(&log.body),
        ["project.delete", "login", "project.create"]
    );
    assert_eq!(log.count(), 3);
    let newest = &log.body["data"][0];
    assert_eq!(
        (
            &newest["actor"],
            &newest["actor_ip"],
            &newest["resource"],
            &newest["project"],
            &newest["result"]
        ),
        (
            &json!(ADMIN),
            &json!(PEER.ip().to_string()),
            &json!("lab"),
            &json!("lab"),
            &json!("success")
        )
    );
    assert_eq!(log.body["data"][1]["result"], "failure");

    let cases = [
        ("filter[action]=login", vec!["login"]),
        (
            "filter[project]=lab",
            vec!["project.delete", "project.create"],
        ),
        ("page[limit]=1&page[offset]=2", vec!["project.create"]),
        ("filter[since]=2999-01-01T00:00:00Z", vec![]),
    ];
    for (query, expected) in cases {
        let reply = server
            .request(Method::GET, &format!("/api/v1/auditlog?{query}"), &admin())
            .await;
        reply.assert_data(200);
        assert_eq!(actions(&reply.body), expected, "{query}");
    }
}

#[tokio::test]
async fn only_admins_read_it_and_project_admins_only_their_project() {
    let server = TestServer::start().await;
    server.project("lab").await;
    let paula = server
        .user("paula", json!({"lab": "admin", "default": "viewer"}))
        .await;
    let reply = server
        .request(Method::GET, "/api/v1/auditlog", &paula)
        .await;
    reply.assert_error(403, "ERR_CODE_FORBIDDEN");
    assert!(reply.detail().contains("filter[project]"), "{}", reply.body);
    server
        .request(
            Method::GET,
            "/api/v1/auditlog?filter[project]=default",
            &paula,
        )
        .await
        .assert_error(403, "ERR_CODE_FORBIDDEN");
    let reply = server
        .request(Method::GET, "/api/v1/auditlog?filter[project]=lab", &paula)
        .await;
    reply.assert_data(200);
    assert_eq!(actions(&reply.body), ["project.create"]);
}
