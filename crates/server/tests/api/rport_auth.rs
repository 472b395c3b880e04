//! Logging in, the caller's profile, API tokens and users as RPort's clients meet them
//! (its UI's login form, `curl -u user:TOKEN`, rportcli): status codes, error codes and
//! answers checked against RPort's published schema.

use std::net::SocketAddr;

use axum::http::Method;
use serde_json::{Value, json};

use crate::harness::{ADMIN, Setup, TestServer, admin, basic, password_of};
use crate::rport_schema::assert_rport_schema;

/// `LoginResponse` (components/schemas/LoginResponse.yaml), wrapped in `data`.
fn login_response_schema() -> Value {
    json!({"type": "object", "properties": {"data": {"type": "object", "properties": {
        "token": {"type": "string"},
        "two_fa": {"type": "object", "nullable": true},
    }}}})
}

/// `APIToken` (components/schemas/APIToken.yaml).
fn api_token_schema() -> Value {
    json!({"type": "object", "properties": {
        "prefix": {"type": "string"},
        "name": {"type": "string"},
        "token": {"type": "string"},
        "created_at": {"type": "string"},
        "expires_at": {"type": "string", "nullable": true},
        "scope": {"enum": ["read", "read+write", "clients-auth"]},
    }})
}

/// `GET /me/tokens` items (paths/me_token.yaml, get).
fn listed_token_schema() -> Value {
    json!({"type": "object", "properties": {
        "prefix": {"type": "string"},
        "name": {"type": "string"},
        "created_at": {"type": "string"},
        "expires_at": {"type": "string", "nullable": true},
        "scope": {"enum": ["read", "read+write", "clients-auth"]},
    }})
}

/// What RPort's `GET /users` fills in of `UserGet` (server/api_handler_users.go).
fn user_schema() -> Value {
    json!({"type": "object", "properties": {
        "username": {"type": "string"},
        "groups": {"type": "array", "items": {"type": "string"}},
        "two_fa_send_to": {"type": "string"},
        "password_expired": {"type": "boolean"},
    }})
}

/// The status of a request without a body.
async fn status_of(server: &TestServer, method: Method, path: &str, authorization: &str) -> u16 {
    server
        .request(method, path, authorization)
        .await
        .status
        .as_u16()
}

async fn create_user(server: &TestServer, body: Value) {
    let reply = server
        .send_json(Method::POST, "/api/v1/users", &admin(), &body)
        .await;
    assert_eq!(reply.status.as_u16(), 201, "{}", reply.body);
    assert_eq!(reply.body, Value::Null, "RPort answers 201 without a body");
}

#[tokio::test]
async fn login_takes_rports_login_form_and_names_unknown_fields() {
    let server = TestServer::start().await;
    let reply = server
        .call(Method::POST, "/api/v1/login")
        .form(&[("username", ADMIN), ("password", "admin-password-1")])
        .send()
        .await;
    reply.assert_data(200);
    assert_rport_schema(&reply.body, &login_response_schema());
    assert_eq!(reply.body["data"]["two_fa"], Value::Null);

    let wrong = server
        .call(Method::POST, "/api/v1/login")
        .form(&[("username", ADMIN), ("password", "not-it")])
        .send()
        .await;
    wrong.assert_error(401, "ERR_CODE_UNAUTHORIZED");

    for call in [
        server.call(Method::POST, "/api/v1/login").form(&[
            ("username", ADMIN),
            ("password", "admin-password-1"),
            ("remember", "1"),
        ]),
        server
            .call(Method::POST, "/api/v1/login")
            .json(&json!({"username": ADMIN, "password": "admin-password-1", "remember": true})),
    ] {
        let reply = call.send().await;
        reply.assert_error(400, "ERR_CODE_INVALID_REQUEST");
        assert!(reply.detail().contains("remember"), "{}", reply.body);
    }
    let missing = server
        .call(Method::POST, "/api/v1/login")
        .form(&[("username", ADMIN)])
        .send()
        .await;
    missing.assert_error(400, "ERR_CODE_INVALID_REQUEST");
    assert!(missing.detail().contains("password"), "{}", missing.body);
}

#[tokio::test]
async fn users_and_clients_auth_take_forms_too() {
    let server = TestServer::start().await;
    let password = password_of("dora");
    let reply = server
        .call(Method::POST, "/api/v1/users")
        .auth(&admin())
        .form(&[
            ("username", "dora"),
            ("password", &password),
            ("two_fa_send_to", "dora@example.com"),
        ])
        .send()
        .await;
    assert_eq!(reply.status.as_u16(), 201, "{}", reply.body);
    server.login("dora", &password).await;

    // A taken name is RPort's 400 with ERR_CODE_ALREADY_EXIST, by form or JSON.
    let again = server
        .call(Method::POST, "/api/v1/users")
        .auth(&admin())
        .form(&[("username", "dora"), ("password", &password)])
        .send()
        .await;
    again.assert_error(400, "ERR_CODE_ALREADY_EXIST");
    let again = server
        .send_json(
            Method::POST,
            "/api/v1/users",
            &admin(),
            &json!({"username": "dora", "password": password}),
        )
        .await;
    again.assert_error(400, "ERR_CODE_ALREADY_EXIST");

    let unknown = server
        .call(Method::POST, "/api/v1/users")
        .auth(&admin())
        .form(&[
            ("username", "eve"),
            ("password", &password),
            ("shell", "/bin/sh"),
        ])
        .send()
        .await;
    unknown.assert_error(400, "ERR_CODE_INVALID_REQUEST");
    assert!(unknown.detail().contains("shell"), "{}", unknown.body);

    let credential = server
        .call(Method::POST, "/api/v1/clients-auth")
        .auth(&admin())
        .form(&[("id", "lab-agent"), ("password", "lab-agent-password")])
        .send()
        .await;
    assert_eq!(credential.status.as_u16(), 201, "{}", credential.body);
    let listed = server
        .request(Method::GET, "/api/v1/clients-auth", &admin())
        .await;
    let ids: Vec<&str> = listed
        .assert_data(200)
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert!(ids.contains(&"lab-agent"), "{ids:?}");
}

#[tokio::test]
async fn put_me_takes_rports_fields() {
    let server = TestServer::start().await;
    let old = password_of("fred");
    create_user(&server, json!({"username": "fred", "password": old})).await;
    let fred = server.login("fred", &old).await;

    let missing_old = server
        .send_json(
            Method::PUT,
            "/api/v1/me",
            &fred,
            &json!({"password": "a-new-long-password"}),
        )
        .await;
    assert_eq!(missing_old.status.as_u16(), 403, "{}", missing_old.body);
    assert_eq!(
        missing_old.body["errors"][0]["title"],
        "Missing old password."
    );
    let wrong_old = server
        .send_json(
            Method::PUT,
            "/api/v1/me",
            &fred,
            &json!({"old_password": "not-the-password", "password": "a-new-long-password"}),
        )
        .await;
    wrong_old.assert_error(403, "ERR_CODE_FORBIDDEN");
    assert_eq!(
        wrong_old.body["errors"][0]["title"],
        "Incorrect old password."
    );

    let changed = server
        .send_json(
            Method::PUT,
            "/api/v1/me",
            &fred,
            &json!({"old_password": old, "password": "a-new-long-password"}),
        )
        .await;
    assert_eq!(changed.status.as_u16(), 204, "{}", changed.body);
    assert_eq!(changed.body, Value::Null);
    let fred = server.login("fred", "a-new-long-password").await;

    // rportd's earlier name for the new password still works.
    let alias = server
        .send_json(
            Method::PUT,
            "/api/v1/me",
            &fred,
            &json!({"old_password": "a-new-long-password", "new_password": "another-long-password"}),
        )
        .await;
    assert_eq!(alias.status.as_u16(), 204, "{}", alias.body);
    let fred = server.login("fred", "another-long-password").await;

    let send_to = server
        .send_json(
            Method::PUT,
            "/api/v1/me",
            &fred,
            &json!({"two_fa_send_to": "fred@example.com"}),
        )
        .await;
    assert_eq!(send_to.status.as_u16(), 204, "{}", send_to.body);
    let shown = server
        .request(Method::GET, "/api/v1/users/fred", &admin())
        .await;
    assert_eq!(shown.assert_data(200)["two_fa_send_to"], "fred@example.com");

    let nothing = server
        .send_json(Method::PUT, "/api/v1/me", &fred, &json!({}))
        .await;
    nothing.assert_error(400, "ERR_CODE_INVALID_REQUEST");
    let unknown = server
        .send_json(
            Method::PUT,
            "/api/v1/me",
            &fred,
            &json!({"shell": "/bin/sh"}),
        )
        .await;
    unknown.assert_error(400, "ERR_CODE_INVALID_REQUEST");
    assert!(unknown.detail().contains("shell"), "{}", unknown.body);
}

/// Makes a token as `who` with RPort's body; returns it whole and its prefix.
async fn rport_token(server: &TestServer, who: &str, scope: &str) -> (String, String) {
    let reply = server
        .send_json(
            Method::POST,
            "/api/v1/me/tokens",
            who,
            &json!({"name": format!("{scope} token"), "scope": scope}),
        )
        .await;
    let data = reply.assert_data(200);
    assert_rport_schema(data, &api_token_schema());
    let token = data["token"].as_str().expect("token").to_owned();
    let prefix = data["prefix"].as_str().expect("prefix").to_owned();
    let (head, secret) = token.split_once('_').expect("<prefix>_<secret>");
    assert_eq!(head, prefix);
    assert!(
        prefix.len() == 8 && prefix.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{prefix}"
    );
    assert!(!secret.is_empty());
    (token, prefix)
}

#[tokio::test]
async fn api_tokens_work_as_the_basic_auth_password_with_rports_scopes() {
    let server = TestServer::with(Setup {
        clients: vec![("c1", "default")],
        ..Default::default()
    })
    .await;
    let (token, prefix) = rport_token(&server, &admin(), "read+write").await;
    for authorization in [basic(ADMIN, &token), format!("Bearer {token}")] {
        let me = server
            .request(Method::GET, "/api/v1/me", &authorization)
            .await;
        assert_eq!(me.assert_data(200)["username"], ADMIN);
    }
    // Another user's name with it is no login.
    create_user(
        &server,
        json!({"username": "gil", "password": password_of("gil")}),
    )
    .await;
    let other = server
        .request(Method::GET, "/api/v1/me", &basic("gil", &token))
        .await;
    other.assert_error(401, "ERR_CODE_UNAUTHORIZED");

    let listed = server
        .request(Method::GET, "/api/v1/me/tokens", &admin())
        .await;
    let tokens = listed.assert_data(200).as_array().expect("a list").clone();
    assert_eq!(tokens.len(), 1);
    assert_rport_schema(&tokens[0], &listed_token_schema());
    assert!(
        tokens[0].get("token").is_none(),
        "never listed: {}",
        listed.body
    );

    // read: GET only.
    let (read, _) = rport_token(&server, &admin(), "read").await;
    let read = basic(ADMIN, &read);
    assert_eq!(
        status_of(&server, Method::GET, "/api/v1/clients", &read).await,
        200
    );
    server
        .send_json(
            Method::POST,
            "/api/v1/projects",
            &read,
            &json!({"key": "lab"}),
        )
        .await
        .assert_error(403, "ERR_CODE_FORBIDDEN");

    // clients-auth: only agent credentials, and only administrators make one.
    let (clients_auth, _) = rport_token(&server, &admin(), "clients-auth").await;
    let clients_auth = basic(ADMIN, &clients_auth);
    assert_eq!(
        status_of(&server, Method::GET, "/api/v1/clients-auth", &clients_auth).await,
        200
    );
    let created = server
        .send_json(
            Method::POST,
            "/api/v1/clients-auth",
            &clients_auth,
            &json!({"id": "ci-agent", "password": "ci-agent-password"}),
        )
        .await;
    assert_eq!(created.status.as_u16(), 201, "{}", created.body);
    let refused = server
        .request(Method::GET, "/api/v1/clients", &clients_auth)
        .await;
    refused.assert_error(403, "ERR_CODE_FORBIDDEN");
    assert!(
        refused.detail().contains("clients-auth"),
        "{}",
        refused.body
    );
    let gil = server.login("gil", &password_of("gil")).await;
    let not_admin = server
        .send_json(
            Method::POST,
            "/api/v1/me/tokens",
            &gil,
            &json!({"name": "x", "scope": "clients-auth"}),
        )
        .await;
    not_admin.assert_error(400, "ERR_CODE_INVALID_REQUEST");

    // PUT by prefix: name, scope and expiry change, the secret stays.
    let expires_at = (chrono::Utc::now() + chrono::Duration::days(7))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let path = format!("/api/v1/me/tokens/{prefix}");
    let changed = server
        .send_json(
            Method::PUT,
            &path,
            &admin(),
            &json!({"name": "renamed", "scope": "read", "expires_at": expires_at}),
        )
        .await;
    let data = changed.assert_data(200);
    assert_rport_schema(
        data,
        &json!({"type": "object", "properties": {
            "prefix": {"type": "string"}, "expires_at": {"type": "string"},
        }}),
    );
    assert_eq!(
        (&data["name"], &data["scope"]),
        (&json!("renamed"), &json!("read"))
    );
    let token_auth = basic(ADMIN, &token);
    assert_eq!(
        status_of(&server, Method::GET, "/api/v1/me", &token_auth).await,
        200
    );
    server
        .send_json(
            Method::POST,
            "/api/v1/projects",
            &token_auth,
            &json!({"key": "lab"}),
        )
        .await
        .assert_error(403, "ERR_CODE_FORBIDDEN");
    server
        .send_json(
            Method::PUT,
            "/api/v1/me/tokens/nothere1",
            &admin(),
            &json!({"name": "x"}),
        )
        .await
        .assert_error(404, "ERR_CODE_TOKEN_NOT_FOUND");

    let deleted = server.request(Method::DELETE, &path, &admin()).await;
    assert_eq!(deleted.status.as_u16(), 204, "{}", deleted.body);
    server
        .request(Method::GET, "/api/v1/me", &token_auth)
        .await
        .assert_error(401, "ERR_CODE_UNAUTHORIZED");
}

#[tokio::test]
async fn the_single_token_endpoint_is_gone_as_in_rport() {
    let server = TestServer::start().await;
    for (method, path) in [
        (Method::GET, "/api/v1/me/token"),
        (Method::POST, "/api/v1/me/token"),
        (Method::PUT, "/api/v1/me/token/abcd1234"),
        (Method::DELETE, "/api/v1/me/token/abcd1234"),
    ] {
        let reply = server.request(method.clone(), path, &admin()).await;
        reply.assert_error(410, "ERR_CODE_GONE");
        assert_eq!(
            reply.body["errors"][0]["title"], "use new token management on /me/tokens",
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn an_expired_password_must_be_replaced_at_login() {
    let server = TestServer::start().await;
    let old = password_of("hana");
    create_user(
        &server,
        json!({"username": "hana", "password": old, "password_expired": true}),
    )
    .await;
    let users = server.request(Method::GET, "/api/v1/users", &admin()).await;
    let listed = users.assert_data(200).as_array().expect("list").clone();
    for user in &listed {
        assert_rport_schema(user, &user_schema());
    }
    let hana = listed
        .iter()
        .find(|u| u["username"] == "hana")
        .expect("hana");
    assert_eq!(hana["password_expired"], true);

    let login = server
        .call(Method::POST, "/api/v1/login")
        .json(&json!({"username": "hana", "password": old}))
        .send()
        .await;
    login.assert_error(401, "ERR_CODE_PASSWORD_EXPIRED");
    server
        .request(Method::GET, "/api/v1/me", &basic("hana", &old))
        .await
        .assert_error(401, "ERR_CODE_PASSWORD_EXPIRED");

    let renewed = server
        .call(Method::POST, "/api/v1/login")
        .form(&[
            ("username", "hana"),
            ("password", &old),
            ("new_password", "hana-renewed-password"),
        ])
        .send()
        .await;
    renewed.assert_data(200);
    assert_rport_schema(&renewed.body, &login_response_schema());
    let session = format!(
        "Bearer {}",
        renewed.body["data"]["token"].as_str().expect("token")
    );
    assert_eq!(
        status_of(&server, Method::GET, "/api/v1/me", &session).await,
        200
    );
    let shown = server
        .request(Method::GET, "/api/v1/users/hana", &admin())
        .await;
    assert_eq!(shown.assert_data(200)["password_expired"], false);

    // An administrator expiring it again ends the session at once.
    let expire = server
        .send_json(
            Method::PUT,
            "/api/v1/users/hana",
            &admin(),
            &json!({"password_expired": true}),
        )
        .await;
    assert_eq!(expire.status.as_u16(), 204, "{}", expire.body);
    server
        .request(Method::GET, "/api/v1/me", &session)
        .await
        .assert_error(401, "ERR_CODE_UNAUTHORIZED");
}

#[tokio::test]
async fn put_users_renames_and_answers_204() {
    let server = TestServer::start().await;
    create_user(
        &server,
        json!({"username": "ivan", "password": password_of("ivan")}),
    )
    .await;
    create_user(
        &server,
        json!({"username": "jo", "password": password_of("jo")}),
    )
    .await;
    let renamed = server
        .send_json(
            Method::PUT,
            "/api/v1/users/ivan",
            &admin(),
            &json!({"username": "ivana", "two_fa_send_to": "ivana@example.com"}),
        )
        .await;
    assert_eq!(renamed.status.as_u16(), 204, "{}", renamed.body);
    assert_eq!(renamed.body, Value::Null);
    server
        .request(Method::GET, "/api/v1/users/ivan", &admin())
        .await
        .assert_error(404, "ERR_CODE_USER_NOT_FOUND");
    let shown = server
        .request(Method::GET, "/api/v1/users/ivana", &admin())
        .await;
    assert_eq!(
        shown.assert_data(200)["two_fa_send_to"],
        "ivana@example.com"
    );
    server.login("ivana", &password_of("ivan")).await;

    server
        .send_json(
            Method::PUT,
            "/api/v1/users/ivana",
            &admin(),
            &json!({"username": "jo"}),
        )
        .await
        .assert_error(400, "ERR_CODE_ALREADY_EXIST");
    server
        .send_json(Method::PUT, "/api/v1/users/ivana", &admin(), &json!({}))
        .await
        .assert_error(400, "ERR_CODE_INVALID_REQUEST");
}

#[tokio::test]
async fn status_tells_rports_ui_what_rportd_offers() {
    let server = TestServer::start().await;
    let reply = server
        .request(Method::GET, "/api/v1/status", &admin())
        .await;
    reply.assert_data(200);
    assert_rport_schema(
        &reply.body,
        &json!({"type": "object", "properties": {"data": {"type": "object", "properties": {
            "version": {"type": "string"},
            "clients_connected": {"type": "integer"},
            "clients_disconnected": {"type": "integer"},
            "clients_auth_source": {"enum": ["Static Credentials", "File", "DB"]},
            "clients_auth_mode": {"enum": ["Read Only", "Read Write"]},
            "fingerprint": {"type": "string"},
            "connect_url": {"type": "array", "items": {"type": "string"}},
            "users_auth_source": {"enum": ["Static Credentials", "File", "DB"]},
            "two_fa_enabled": {"type": "boolean"},
            "two_fa_delivery_method": {"type": "string"},
            "tunnel_proxy_enabled": {"type": "boolean"},
            "used_ports": {"type": "array", "items": {"type": "string"}},
            "excluded_ports": {"type": "array", "items": {"type": "string"}},
            "password_min_length": {"type": "integer"},
        }}}}),
    );
    let data = &reply.body["data"];
    assert_eq!(
        (
            &data["clients_auth_mode"],
            &data["two_fa_enabled"],
            &data["password_min_length"]
        ),
        (&json!("Read Write"), &json!(false), &json!(14))
    );
}

#[tokio::test]
async fn auth_provider_answers_before_login() {
    let server = TestServer::start().await;
    let reply = server
        .request(Method::GET, "/api/v1/auth/provider", "")
        .await;
    reply.assert_data(200);
    assert_rport_schema(
        &reply.body,
        &json!({"type": "object", "properties": {"data": {"type": "object", "properties": {
            "auth_provider": {"type": "string"},
        }}}}),
    );
    assert_eq!(reply.body["data"]["auth_provider"], "built-in");
    assert!(
        reply.body["data"]["max_token_lifetime"].is_u64(),
        "{}",
        reply.body
    );
}

const PROXY: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)),
    40001,
);
const STRANGER: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 9)),
    40002,
);

fn behind_proxy() -> Setup {
    Setup {
        api: "trusted_proxies = [\"127.0.0.1\"]\n".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn me_ip_is_the_callers_address_with_trusted_proxies_only() {
    let server = TestServer::with(behind_proxy()).await;
    let ip_schema = json!({"type": "object", "properties": {"data": {"type": "object",
        "properties": {"ip": {"type": "string"}}}}});
    let proxied = server
        .call(Method::GET, "/api/v1/me/ip")
        .auth(&admin())
        .header("x-forwarded-for", "198.51.100.7")
        .from(PROXY)
        .send()
        .await;
    proxied.assert_data(200);
    assert_rport_schema(&proxied.body, &ip_schema);
    assert_eq!(proxied.body["data"]["ip"], "198.51.100.7");
    let forged = server
        .call(Method::GET, "/api/v1/me/ip")
        .auth(&admin())
        .header("x-forwarded-for", "198.51.100.7")
        .from(STRANGER)
        .send()
        .await;
    assert_eq!(forged.assert_data(200)["ip"], "192.0.2.9");
}

#[tokio::test]
async fn the_cross_site_check_believes_forwarded_host_from_trusted_proxies_only() {
    let server = TestServer::with(behind_proxy()).await;
    let send = |peer: SocketAddr, proto: &'static str| {
        server
            .call(Method::PUT, "/api/v1/me")
            .auth(&admin())
            .header("host", "127.0.0.1:3000")
            .header("origin", "https://rport.example.com")
            .header("x-forwarded-host", "rport.example.com")
            .header("x-forwarded-proto", proto)
            .json(&json!({}))
            .from(peer)
            .send()
    };
    // Past the check, the handler answers: nothing to change.
    send(PROXY, "https")
        .await
        .assert_error(400, "ERR_CODE_INVALID_REQUEST");
    for refused in [send(PROXY, "http").await, send(STRANGER, "https").await] {
        refused.assert_error(403, "ERR_CODE_FORBIDDEN");
        assert!(refused.detail().contains("cross-site"), "{}", refused.body);
    }
}
