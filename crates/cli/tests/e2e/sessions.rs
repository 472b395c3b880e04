//! End to end: bearer tokens expire, `DELETE /api/v1/logout` revokes one at once and for
//! good, and `[api] max_token_lifetime` bounds what a login may ask for.

use std::time::Duration;

use crate::support::*;

fn token(server: &Rportd, query: &str) -> String {
    let (status, body) = server.request("GET", &format!("/api/v1/login{query}"));
    assert_eq!(status, 200, "{body}");
    format!("Bearer {}", body["data"]["token"].as_str().expect("token"))
}

#[test]
fn logout_revokes_a_token_at_once_and_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            extra_api: "max_token_lifetime = 2\n".into(),
            ..Default::default()
        },
    );
    let first = token(&server, "");
    let second = token(&server, "");
    assert_eq!(server.request_as("GET", "/api/v1/status", &first).0, 200);

    assert_eq!(server.request_as("DELETE", "/api/v1/logout", &first).0, 204);
    assert_eq!(server.request_as("GET", "/api/v1/status", &first).0, 401);
    assert_eq!(server.request_as("DELETE", "/api/v1/logout", &first).0, 401);
    assert_eq!(
        server.request_as("GET", "/api/v1/status", &second).0,
        200,
        "only that one"
    );
    // Basic auth has no session to end.
    assert_eq!(server.request("DELETE", "/api/v1/logout").0, 400);

    // Longer than max_token_lifetime (2 hours) is refused; shorter ones expire.
    let (status, body) = server.request("GET", "/api/v1/login?token-lifetime=7201");
    assert_eq!(status, 400, "{body}");
    let short = token(&server, "?token-lifetime=1");
    assert_eq!(server.request_as("GET", "/api/v1/status", &short).0, 200);
    wait_for("the short token to expire", Duration::from_secs(10), || {
        (server.request_as("GET", "/api/v1/status", &short).0 == 401).then_some(())
    });

    // The revocation is kept in the store.
    server.kill();
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            extra_api: "max_token_lifetime = 2\n".into(),
            ..Default::default()
        },
    );
    assert_eq!(server.request_as("GET", "/api/v1/status", &first).0, 401);
    assert_eq!(server.request_as("GET", "/api/v1/status", &second).0, 200);
}

#[test]
fn users_see_themselves_and_change_their_own_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            api_auth: None,
            ..Default::default()
        },
    );
    let line = server
        .stdout
        .wait_for("generated API user", Duration::from_secs(30));
    let credential = line.rsplit(' ').next().expect("credential").to_owned();
    let (user, password) = credential.split_once(':').expect("user:password");
    let old = basic(user, password);
    let (status, me) = server.request_as("GET", "/api/v1/me", &old);
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["data"]["username"], "admin");
    assert_eq!(me["data"]["admin"], true);

    let change = |body: serde_json::Value| {
        server
            .call("PUT", "/api/v1/me", &old, &[], Some(&body))
            .status
    };
    let new_password = "a-new-password-of-length";
    assert_eq!(
        change(serde_json::json!({"old_password": "wrong", "new_password": new_password})),
        403,
        "RPort's answer to a wrong old password"
    );
    assert_eq!(
        change(serde_json::json!({"old_password": password, "new_password": "short"})),
        400
    );
    assert_eq!(
        change(serde_json::json!({"old_password": password, "new_password": new_password})),
        204
    );
    assert_eq!(
        server.request_as("GET", "/api/v1/me", &old).0,
        401,
        "old password gone"
    );
    let new = basic(user, new_password);
    assert_eq!(server.request_as("GET", "/api/v1/me", &new).0, 200);
}

#[test]
fn the_configured_user_changes_its_password_in_the_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Rportd::start(dir.path());
    let reply = server.call(
        "PUT",
        "/api/v1/me",
        &server.auth_header,
        &[],
        Some(&serde_json::json!({"old_password": API_PASSWORD, "new_password": "another-long-password"})),
    );
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert_eq!(reply.body["errors"][0]["code"], "ERR_CODE_USER_READ_ONLY");
    assert!(reply.body.to_string().contains("[api] auth"));
}
