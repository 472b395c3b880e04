//! `/api/v1/projects`: server admins create and delete them; only an empty one goes.

use axum::http::Method;
use serde_json::{Value, json};

use crate::harness::{Setup, TestServer, admin};

fn keys(listing: &Value) -> Vec<(&str, u64, &str)> {
    listing
        .as_array()
        .expect("a list")
        .iter()
        .map(|p| {
            (
                p["key"].as_str().unwrap_or_default(),
                p["clients"].as_u64().unwrap_or(99),
                p["role"].as_str().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn projects_are_created_once_and_deleted_only_when_empty() {
    let server = TestServer::with(Setup {
        projects: vec!["berlin"],
        clients: vec![("c1", "berlin")],
        ..Default::default()
    })
    .await;
    let reply = server
        .send_json(
            Method::POST,
            "/api/v1/projects",
            &admin(),
            &json!({"key": "lab", "name": "Lab"}),
        )
        .await;
    let data = reply.assert_data(201);
    assert_eq!(
        (&data["key"], &data["name"], &data["clients"], &data["role"]),
        (&json!("lab"), &json!("Lab"), &json!(0), &json!("admin"))
    );
    server
        .send_json(
            Method::POST,
            "/api/v1/projects",
            &admin(),
            &json!({"key": "lab"}),
        )
        .await
        .assert_error(409, "ERR_CODE_ALREADY_EXIST");
    for bad in ["Not OK", "", "a/b"] {
        server
            .send_json(
                Method::POST,
                "/api/v1/projects",
                &admin(),
                &json!({"key": bad}),
            )
            .await
            .assert_error(400, "ERR_CODE_INVALID_REQUEST");
    }
    // Without a name, the key is the name.
    let reply = server
        .send_json(
            Method::POST,
            "/api/v1/projects",
            &admin(),
            &json!({"key": "plain", "name": " "}),
        )
        .await;
    assert_eq!(reply.assert_data(201)["name"], "plain");

    let list = server
        .request(Method::GET, "/api/v1/projects", &admin())
        .await;
    assert_eq!(
        keys(list.assert_data(200)),
        [
            ("berlin", 1, "admin"),
            ("default", 0, "admin"),
            ("lab", 0, "admin"),
            ("plain", 0, "admin")
        ]
    );

    let reply = server
        .request(Method::DELETE, "/api/v1/projects/berlin", &admin())
        .await;
    reply.assert_error(409, "ERR_CODE_PROJECT_NOT_EMPTY");
    assert!(reply.detail().contains("1 client(s)"), "{}", reply.body);
    server
        .request(Method::DELETE, "/api/v1/projects/default", &admin())
        .await
        .assert_error(400, "ERR_CODE_INVALID_REQUEST");
    let reply = server
        .request(Method::DELETE, "/api/v1/projects/lab", &admin())
        .await;
    assert_eq!(reply.status.as_u16(), 204, "{}", reply.body);
    server
        .request(Method::DELETE, "/api/v1/projects/lab", &admin())
        .await
        .assert_error(404, "ERR_CODE_PROJECT_NOT_FOUND");

    // Once its client is deleted, the project can go.
    let reply = server
        .request(Method::DELETE, "/api/v1/clients/c1", &admin())
        .await;
    assert_eq!(reply.status.as_u16(), 204, "{}", reply.body);
    let reply = server
        .request(Method::DELETE, "/api/v1/projects/berlin", &admin())
        .await;
    assert_eq!(reply.status.as_u16(), 204, "{}", reply.body);
}

#[tokio::test]
async fn a_project_with_agent_credentials_stays() {
    let server = TestServer::start().await;
    server.project("lab").await;
    server
        .send_json(
            Method::POST,
            "/api/v1/clients-auth",
            &admin(),
            &json!({"id": "lab-cred", "project": "lab"}),
        )
        .await
        .assert_data(201);
    let reply = server
        .request(Method::DELETE, "/api/v1/projects/lab", &admin())
        .await;
    reply.assert_error(409, "ERR_CODE_PROJECT_NOT_EMPTY");
    assert!(
        reply.detail().contains("agent credentials"),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn users_see_the_projects_they_have_a_role_in_and_change_none() {
    let server = TestServer::with(Setup {
        projects: vec!["berlin", "paris"],
        ..Default::default()
    })
    .await;
    let otto = server
        .user("otto", json!({"berlin": "tunnels", "paris": "admin"}))
        .await;
    let list = server.request(Method::GET, "/api/v1/projects", &otto).await;
    assert_eq!(
        keys(list.assert_data(200)),
        [("berlin", 0, "tunnels"), ("paris", 0, "admin")]
    );
    // Even a project's admin is not a server-wide one.
    let reply = server
        .send_json(
            Method::POST,
            "/api/v1/projects",
            &otto,
            &json!({"key": "lab"}),
        )
        .await;
    reply.assert_error(403, "ERR_CODE_FORBIDDEN");
    assert!(
        reply.detail().contains("creating projects"),
        "{}",
        reply.body
    );
    server
        .request(Method::DELETE, "/api/v1/projects/paris", &otto)
        .await
        .assert_error(403, "ERR_CODE_FORBIDDEN");
}
