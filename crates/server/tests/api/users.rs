//! `/api/v1/users`: server admins manage store users; users from the configuration are
//! read-only here; the last administrator stays.

use axum::http::Method;
use serde_json::{Value, json};

use crate::harness::{ADMIN, Setup, TestServer, admin, basic};

#[tokio::test]
async fn create_checks_what_it_is_given() {
    let server = TestServer::start().await;
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
            json!({"username": "a", "password": "long-enough-password", "admin": false, "groups": ["Administrators"]}),
            "disagree",
        ),
        (
            json!({"username": "a", "password": "long-enough-password", "totp_secret": "x"}),
            "unknown field",
        ),
    ];
    for (body, reason) in bad {
        let reply = server
            .send_json(Method::POST, "/api/v1/users", &admin(), &body)
            .await;
        reply.assert_error(400, "ERR_CODE_INVALID_REQUEST");
        assert!(reply.detail().contains(reason), "{body}: {}", reply.body);
    }
    let list = server.request(Method::GET, "/api/v1/users", &admin()).await;
    assert_eq!(list.assert_data(200).as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn users_are_created_listed_changed_and_deleted() {
    let server = TestServer::start().await;
    let body = json!({"username": "root2", "password": "root2-long-password", "groups": ["Administrators"]});
    let reply = server
        .send_json(Method::POST, "/api/v1/users", &admin(), &body)
        .await;
    // RPort's answer: 201 without a body.
    assert_eq!((reply.status.as_u16(), &reply.body), (201, &Value::Null));
    let reply = server
        .request(Method::GET, "/api/v1/users/root2", &admin())
        .await;
    let data = reply.assert_data(200);
    assert_eq!(
        (
            &data["username"],
            &data["admin"],
            &data["groups"],
            &data["source"]
        ),
        (
            &json!("root2"),
            &json!(true),
            &json!(["Administrators"]),
            &json!("db")
        )
    );
    assert!(
        data.get("password").is_none() && data["created_at"].is_string(),
        "{data}"
    );
    server
        .send_json(Method::POST, "/api/v1/users", &admin(), &body)
        .await
        .assert_error(400, "ERR_CODE_ALREADY_EXIST");
    // The [api] auth user's name is taken.
    server
        .send_json(
            Method::POST,
            "/api/v1/users",
            &admin(),
            &json!({"username": ADMIN, "password": "another-long-password"}),
        )
        .await
        .assert_error(400, "ERR_CODE_ALREADY_EXIST");

    let list = server.request(Method::GET, "/api/v1/users", &admin()).await;
    let names: Vec<(&Value, &Value)> = list
        .assert_data(200)
        .as_array()
        .expect("users")
        .iter()
        .map(|u| (&u["username"], &u["source"]))
        .collect();
    assert_eq!(
        names,
        [
            (&json!(ADMIN), &json!("config")),
            (&json!("root2"), &json!("db"))
        ]
    );
    assert!(!list.body.to_string().contains("argon2"), "no hashes");
    let one = server
        .request(Method::GET, "/api/v1/users/root2", &admin())
        .await;
    assert_eq!(one.assert_data(200)["username"], "root2");
    server
        .request(Method::GET, "/api/v1/users/nobody", &admin())
        .await
        .assert_error(404, "ERR_CODE_USER_NOT_FOUND");

    // A new password works at once, and ends the sessions of the old one.
    let old = basic("root2", "root2-long-password");
    let session = server.login("root2", "root2-long-password").await;
    let reply = server
        .send_json(
            Method::PUT,
            "/api/v1/users/root2",
            &admin(),
            &json!({"password": "root2-new-long-password", "admin": false, "roles": {"default": "viewer"}}),
        )
        .await;
    assert_eq!((reply.status.as_u16(), &reply.body), (204, &Value::Null));
    let reply = server
        .request(Method::GET, "/api/v1/users/root2", &admin())
        .await;
    let data = reply.assert_data(200);
    assert_eq!(
        (&data["admin"], &data["roles"]),
        (&json!(false), &json!({"default": "viewer"}))
    );
    server
        .request(Method::GET, "/api/v1/me", &old)
        .await
        .assert_error(401, "ERR_CODE_UNAUTHORIZED");
    server
        .request(Method::GET, "/api/v1/me", &session)
        .await
        .assert_error(401, "ERR_CODE_UNAUTHORIZED");
    let new = basic("root2", "root2-new-long-password");
    server
        .request(Method::GET, "/api/v1/me", &new)
        .await
        .assert_data(200);
    // Not an administrator any more.
    server
        .request(Method::GET, "/api/v1/users", &new)
        .await
        .assert_error(403, "ERR_CODE_FORBIDDEN");
    server
        .send_json(
            Method::PUT,
            "/api/v1/users/root2",
            &admin(),
            &json!({"password": "short"}),
        )
        .await
        .assert_error(400, "ERR_CODE_INVALID_REQUEST");
    server
        .send_json(
            Method::PUT,
            "/api/v1/users/ghost",
            &admin(),
            &json!({"admin": true}),
        )
        .await
        .assert_error(404, "ERR_CODE_USER_NOT_FOUND");

    let reply = server
        .request(Method::DELETE, "/api/v1/users/root2", &admin())
        .await;
    assert_eq!(reply.status.as_u16(), 204, "{}", reply.body);
    server
        .request(Method::GET, "/api/v1/me", &new)
        .await
        .assert_error(401, "ERR_CODE_UNAUTHORIZED");
    server
        .request(Method::DELETE, "/api/v1/users/root2", &admin())
        .await
        .assert_error(404, "ERR_CODE_USER_NOT_FOUND");
}

#[tokio::test]
async fn the_configured_user_is_read_only_here() {
    let server = TestServer::start().await;
    let path = format!("/api/v1/users/{ADMIN}");
    let reply = server
        .send_json(Method::PUT, &path, &admin(), &json!({"admin": false}))
        .await;
    reply.assert_error(409, "ERR_CODE_USER_READ_ONLY");
    assert!(reply.detail().contains("[api] auth"), "{}", reply.body);
    server
        .request(Method::DELETE, &path, &admin())
        .await
        .assert_error(409, "ERR_CODE_USER_READ_ONLY");
    server
        .request(Method::GET, "/api/v1/me", &admin())
        .await
        .assert_data(200);
}

#[tokio::test]
async fn the_last_administrator_is_neither_deleted_nor_demoted() {
    let server = TestServer::with(Setup {
        api_auth: None,
        ..Default::default()
    })
    .await;
    let password = server
        .generated_admin_password
        .clone()
        .expect("an admin generated without [api] auth");
    let first = basic(ADMIN, &password);
    server
        .request(Method::DELETE, "/api/v1/users/admin", &first)
        .await
        .assert_error(409, "ERR_CODE_LAST_ADMIN");
    server
        .send_json(
            Method::PUT,
            "/api/v1/users/admin",
            &first,
            &json!({"admin": false}),
        )
        .await
        .assert_error(409, "ERR_CODE_LAST_ADMIN");
    server
        .send_json(
            Method::PUT,
            "/api/v1/users/admin",
            &first,
            &json!({"groups": []}),
        )
        .await
        .assert_error(409, "ERR_CODE_LAST_ADMIN");
    server
        .request(Method::GET, "/api/v1/users", &first)
        .await
        .assert_data(200);

    // With a second administrator, the first may go.
    let body = json!({"username": "second", "password": "second-long-password", "admin": true});
    let created = server
        .send_json(Method::POST, "/api/v1/users", &first, &body)
        .await;
    assert_eq!(created.status.as_u16(), 201, "{}", created.body);
    let reply = server
        .request(Method::DELETE, "/api/v1/users/admin", &first)
        .await;
    assert_eq!(reply.status.as_u16(), 204, "{}", reply.body);
    let second = basic("second", "second-long-password");
    server
        .request(Method::DELETE, "/api/v1/users/second", &second)
        .await
        .assert_error(409, "ERR_CODE_LAST_ADMIN");
}

#[tokio::test]
async fn only_server_admins_manage_users() {
    let server = TestServer::start().await;
    let project_admin = server.user("paula", json!({"default": "admin"})).await;
    for (method, path) in [
        (Method::GET, "/api/v1/users"),
        (Method::GET, "/api/v1/users/paula"),
        (Method::POST, "/api/v1/users"),
        (Method::PUT, "/api/v1/users/paula"),
        (Method::DELETE, "/api/v1/users/paula"),
    ] {
        // Refused before the body is read: whatever it holds, the answer is 403.
        let reply = server
            .call(method.clone(), path)
            .auth(&project_admin)
            .raw_json("{not json")
            .send()
            .await;
        reply.assert_error(403, "ERR_CODE_FORBIDDEN");
        assert!(
            reply.detail().contains("needs a server-wide administrator"),
            "{method} {path}: {}",
            reply.body
        );
    }
}
