//! `/api/v1/clients-auth`: agent credentials per project, made and deleted by the
//! project's admins; secrets shown once; configured ones read-only.

use axum::http::Method;
use serde_json::{Value, json};

use crate::harness::{Setup, TestServer, admin};

async fn post(server: &TestServer, who: &str, body: Value) -> crate::harness::Reply {
    server
        .send_json(Method::POST, "/api/v1/clients-auth", who, &body)
        .await
}

#[tokio::test]
async fn credentials_are_made_per_project_listed_without_secrets_and_deleted() {
    let server = TestServer::start().await;
    server.project("lab").await;
    let reply = post(
        &server,
        &admin(),
        json!({"id": "lab-cred", "project": "lab"}),
    )
    .await;
    let data = reply.assert_data(201).clone();
    let password = data["password"]
        .as_str()
        .expect("generated password")
        .to_owned();
    assert!(password.len() >= 24, "{data}");
    assert_eq!(
        (&data["project"], &data["source"], &data["clients"]),
        (&json!("lab"), &json!("db"), &json!(0))
    );
    post(
        &server,
        &admin(),
        json!({"id": "lab-cred", "project": "lab"}),
    )
    .await
    .assert_error(409, "ERR_CODE_ALREADY_EXIST");
    // A given password is not shown back; the project defaults to "default".
    let reply = post(
        &server,
        &admin(),
        json!({"id": "mine", "password": "twelve-chars"}),
    )
    .await;
    let data = reply.assert_data(201);
    assert!(data.get("password").is_none(), "{data}");
    assert_eq!(data["project"], "default");
    for (bad, reason) in [
        (json!({"id": "x", "password": "short"}), "at least 12"),
        (json!({"id": "x", "project": "nowhere"}), "no project"),
        (json!({"id": "a:b"}), "without ':'"),
        (json!({"id": ""}), "1 to"),
        (json!({"id": "x".repeat(1000)}), "1 to"),
    ] {
        let reply = post(&server, &admin(), bad.clone()).await;
        reply.assert_error(400, "ERR_CODE_INVALID_REQUEST");
        assert!(reply.detail().contains(reason), "{bad}: {}", reply.body);
    }

    let list = server
        .request(Method::GET, "/api/v1/clients-auth", &admin())
        .await;
    list.assert_data(200);
    assert!(
        !list.body.to_string().contains(&password),
        "no secret listed"
    );
    let ids: Vec<&str> = list.body["data"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert!(
        ids.contains(&"lab-cred") && ids.contains(&"mine"),
        "{ids:?}"
    );
    assert_eq!(list.count(), ids.len() as u64);

    let reply = server
        .request(Method::DELETE, "/api/v1/clients-auth/lab-cred", &admin())
        .await;
    assert_eq!(reply.status.as_u16(), 204, "{}", reply.body);
    server
        .request(Method::DELETE, "/api/v1/clients-auth/lab-cred", &admin())
        .await
        .assert_error(404, "ERR_CODE_CLIENT_AUTH_NOT_FOUND");
}

#[tokio::test]
async fn only_a_projects_admins_make_and_delete_its_credentials() {
    let server = TestServer::start().await;
    server.project("lab").await;
    server.project("secret").await;
    post(
        &server,
        &admin(),
        json!({"id": "lab-cred", "project": "lab"}),
    )
    .await
    .assert_data(201);
    post(
        &server,
        &admin(),
        json!({"id": "secret-cred", "project": "secret"}),
    )
    .await
    .assert_data(201);
    let ops = server
        .user("ops", json!({"default": "admin", "lab": "tunnels"}))
        .await;
    let reply = post(&server, &ops, json!({"id": "lab-2", "project": "lab"})).await;
    reply.assert_error(403, "ERR_CODE_FORBIDDEN");
    assert!(
        reply.detail().contains("needs role admin"),
        "{}",
        reply.body
    );
    post(&server, &ops, json!({"id": "default-2"}))
        .await
        .assert_data(201);
    server
        .request(Method::DELETE, "/api/v1/clients-auth/lab-cred", &ops)
        .await
        .assert_error(403, "ERR_CODE_FORBIDDEN");
    // A credential of a project without a role does not exist for the caller.
    server
        .request(Method::DELETE, "/api/v1/clients-auth/secret-cred", &ops)
        .await
        .assert_error(404, "ERR_CODE_CLIENT_AUTH_NOT_FOUND");
    let list = server
        .request(Method::GET, "/api/v1/clients-auth", &ops)
        .await;
    let projects: Vec<&Value> = list.body["data"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|c| &c["project"])
        .collect();
    assert!(!projects.contains(&&json!("secret")), "{}", list.body);
    assert!(projects.contains(&&json!("lab")), "{}", list.body);
}

#[tokio::test]
async fn a_configured_agent_credential_is_read_only() {
    let server = TestServer::with(Setup {
        server: "auth = \"agent-1:agent-password-1\"\n".into(),
        ..Default::default()
    })
    .await;
    let list = server
        .request(Method::GET, "/api/v1/clients-auth", &admin())
        .await;
    list.assert_data(200);
    assert_eq!(list.count(), 1, "{}", list.body);
    assert_eq!(
        (&list.body["data"][0]["id"], &list.body["data"][0]["source"]),
        (&json!("agent-1"), &json!("config"))
    );
    post(&server, &admin(), json!({"id": "more"}))
        .await
        .assert_error(409, "ERR_CODE_CLIENT_AUTH_SINGLE");
    server
        .request(Method::DELETE, "/api/v1/clients-auth/agent-1", &admin())
        .await
        .assert_error(409, "ERR_CODE_CLIENT_AUTH_SINGLE");
}
