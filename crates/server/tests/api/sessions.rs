//! Login sessions: `/users/{user_id}/sessions`, and every token from `/login` refused
//! once its session is ended.

use axum::http::Method;
use serde_json::{Value, json};

use crate::harness::{ADMIN, ADMIN_PASSWORD, TestServer, admin, password_of};
use crate::rport_schema::assert_rport_schema;

/// RPort's `APISession` (components/schemas/APISession.yaml). RPort's code never sends
/// `token`, so it is optional here.
fn api_session_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "session_id": {"type": "number"},
            "token": {"type": "string", "x-optional": true},
            "expires_at": {"type": "string"},
            "last_access_at": {"type": "string"},
            "username": {"type": "string"},
            "user_agent": {"type": "string"},
            "ip_address": {"type": "string"},
        }
    })
}

async fn login_as(server: &TestServer, user: &str, user_agent: &str) -> String {
    let reply = server
        .call(Method::POST, "/api/v1/login")
        .header("user-agent", user_agent)
        .json(&json!({"username": user, "password": password_of(user)}))
        .send()
        .await;
    let token = reply.assert_data(200)["token"]
        .as_str()
        .expect("a token")
        .to_owned();
    format!("Bearer {token}")
}

#[tokio::test]
async fn admins_list_and_end_a_users_sessions_and_ended_tokens_are_refused() {
    let server = TestServer::start().await;
    let first = server.user("alice", json!({"default": "viewer"})).await;
    let second = login_as(&server, "alice", "rportcli/1.0").await;

    let reply = server
        .request(Method::GET, "/api/v1/users/alice/sessions", &admin())
        .await;
    let listed = reply.assert_data(200);
    assert_rport_schema(
        &reply.body,
        &json!({"type": "object", "properties": {
            "data": {"type": "array", "items": api_session_schema()}
        }}),
    );
    let sessions = listed.as_array().expect("a list");
    assert_eq!(sessions.len(), 2, "{listed}");
    assert!(sessions.iter().all(|s| s["username"] == "alice"));
    assert!(sessions.iter().all(|s| s["ip_address"] == "127.0.0.1"));
    let newest = &sessions[1];
    assert_eq!(
        newest["user_agent"], "rportcli/1.0",
        "least recently used first"
    );

    // Only server administrators may see or end them (RPort: 403).
    let reply = server
        .request(Method::GET, "/api/v1/users/alice/sessions", &first)
        .await;
    reply.assert_error(403, "ERR_CODE_FORBIDDEN");
    let reply = server
        .request(Method::DELETE, "/api/v1/users/alice/sessions", &first)
        .await;
    reply.assert_error(403, "ERR_CODE_FORBIDDEN");

    // Ending one: its token is refused at once, the other still works.
    let id = newest["session_id"].as_i64().expect("numeric id");
    let path = format!("/api/v1/users/alice/sessions/{id}");
    let reply = server.request(Method::DELETE, &path, &admin()).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    let reply = server.request(Method::GET, "/api/v1/me", &second).await;
    reply.assert_error(401, "ERR_CODE_UNAUTHORIZED");
    let reply = server.request(Method::GET, "/api/v1/me", &first).await;
    reply.assert_data(200);
    // One already gone is ended too (204, as in RPort); an id not a number is a 400.
    let reply = server.request(Method::DELETE, &path, &admin()).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    let reply = server
        .request(Method::DELETE, "/api/v1/users/alice/sessions/abc", &admin())
        .await;
    reply.assert_error(400, "ERR_CODE_INVALID_REQUEST");

    // Ending all.
    let reply = server
        .request(Method::DELETE, "/api/v1/users/alice/sessions", &admin())
        .await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    let reply = server.request(Method::GET, "/api/v1/me", &first).await;
    reply.assert_error(401, "ERR_CODE_UNAUTHORIZED");
    let reply = server
        .request(Method::GET, "/api/v1/users/alice/sessions", &admin())
        .await;
    assert_eq!(reply.assert_data(200), &json!([]));
    // A user nobody knows has no sessions (200, as in RPort).
    let reply = server
        .request(Method::GET, "/api/v1/users/nobody/sessions", &admin())
        .await;
    assert_eq!(reply.assert_data(200), &json!([]));
}

async fn session_count(server: &TestServer, user: &str) -> usize {
    let path = format!("/api/v1/users/{user}/sessions");
    let reply = server.request(Method::GET, &path, &admin()).await;
    reply.assert_data(200).as_array().expect("a list").len()
}

#[tokio::test]
async fn logout_ends_its_session() {
    let server = TestServer::start().await;
    let bearer = server.login(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(session_count(&server, ADMIN).await, 1);
    let reply = server
        .request(Method::DELETE, "/api/v1/logout", &bearer)
        .await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(session_count(&server, ADMIN).await, 0);
}

#[tokio::test]
async fn a_user_keeps_at_most_100_sessions_and_the_least_recently_used_ends() {
    let server = TestServer::start().await;
    let oldest = server.login(ADMIN, ADMIN_PASSWORD).await;
    for _ in 0..100 {
        server.login(ADMIN, ADMIN_PASSWORD).await;
    }
    let reply = server
        .request(Method::GET, "/api/v1/users/admin/sessions", &admin())
        .await;
    assert_eq!(reply.assert_data(200).as_array().expect("list").len(), 100);
    let reply = server.request(Method::GET, "/api/v1/me", &oldest).await;
    reply.assert_error(401, "ERR_CODE_UNAUTHORIZED");
}

/// `/me/sessions`: the console's "My sessions".
#[tokio::test]
async fn users_list_their_own_sessions_and_end_the_others_or_one() {
    let server = TestServer::start().await;
    let current = server.user("alice", json!({"default": "viewer"})).await;
    let laptop = login_as(&server, "alice", "laptop/1.0").await;
    let phone = login_as(&server, "alice", "phone/1.0").await;
    let bob = server.user("bob", json!({"default": "viewer"})).await;

    // Any user reads its own, the current one marked; nobody else's are listed.
    let reply = server
        .request(Method::GET, "/api/v1/me/sessions", &current)
        .await;
    let listed = reply.assert_data(200).as_array().expect("a list").clone();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed.iter().all(|s| s["username"] == "alice"));
    let marked: Vec<&Value> = listed.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(marked.len(), 1, "{listed:?}");
    let phone_id = listed
        .iter()
        .find(|s| s["user_agent"] == "phone/1.0")
        .and_then(|s| s["session_id"].as_i64())
        .expect("the phone's session");

    // Ending one: only that one; another user's id is not the caller's to end.
    let path = format!("/api/v1/me/sessions/{phone_id}");
    let reply = server.request(Method::DELETE, &path, &bob).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    server
        .request(Method::GET, "/api/v1/me", &phone)
        .await
        .assert_data(200);
    let reply = server.request(Method::DELETE, &path, &current).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    server
        .request(Method::GET, "/api/v1/me", &phone)
        .await
        .assert_error(401, "ERR_CODE_UNAUTHORIZED");
    server
        .request(Method::DELETE, "/api/v1/me/sessions/abc", &current)
        .await
        .assert_error(400, "ERR_CODE_INVALID_REQUEST");

    // Ending the others keeps the current one.
    let reply = server
        .request(Method::DELETE, "/api/v1/me/sessions", &current)
        .await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    server
        .request(Method::GET, "/api/v1/me", &laptop)
        .await
        .assert_error(401, "ERR_CODE_UNAUTHORIZED");
    let reply = server
        .request(Method::GET, "/api/v1/me/sessions", &current)
        .await;
    let left = reply.assert_data(200).as_array().expect("a list").clone();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["current"], true);
    assert_eq!(session_count(&server, "bob").await, 1, "bob's untouched");
}
