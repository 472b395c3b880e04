//! Two-factor logins with TOTP (`[api] totp_enabled`): `/login`'s second-factor token,
//! `/me/totp-secret`, `/verify-2fa` and an administrator's reset. Codes are computed here
//! from the secret, as an authenticator app would.

use axum::http::Method;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha1::Sha1;

use crate::harness::{ADMIN, ADMIN_PASSWORD, Setup, TestServer, admin};
use crate::rport_schema::assert_rport_schema;

/// RFC 6238 with RPort's settings: HMAC-SHA1, 30 s, 6 digits.
pub(crate) fn code(secret: &str, unix_time: u64) -> String {
    let key = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .expect("the secret is base32");
    let mut mac = Hmac::<Sha1>::new_from_slice(&key).expect("any key length");
    mac.update(&(unix_time / 30).to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    format!("{:06}", binary % 1_000_000)
}

fn now() -> u64 {
    chrono::Utc::now().timestamp() as u64
}

/// RPort's `LoginResponse` (components/schemas/LoginResponse.yaml) in its envelope.
fn login_response_schema() -> Value {
    json!({"type": "object", "properties": {"data": {
        "type": "object",
        "properties": {
            "token": {"type": "string"},
            "two_fa": {
                "type": "object",
                "nullable": true,
                "properties": {
                    "send_to": {"type": "string"},
                    "delivery_method": {
                        "type": "string",
                        "enum": ["email", "pushover", "totp_authenticator_app"]
                    },
                    "totp_key_status": {"type": "string", "enum": ["pending", "exists"]},
                }
            }
        }
    }}})
}

/// RPort's `TotP` (components/schemas/TotP.yaml): not in a `data` envelope.
fn totp_schema() -> Value {
    json!({"type": "object", "properties": {
        "secret": {"type": "string"},
        "qr": {"type": "string"},
    }})
}

fn totp_server(api: &str) -> Setup {
    Setup {
        api: format!("totp_enabled = true\n{api}"),
        ..Default::default()
    }
}

/// `/login` as the `[api] auth` admin: the second-factor token and `totp_key_status`.
async fn first_step(server: &TestServer) -> (String, String) {
    let reply = server
        .call(Method::POST, "/api/v1/login")
        .json(&json!({"username": ADMIN, "password": ADMIN_PASSWORD}))
        .send()
        .await;
    let data = reply.assert_data(200).clone();
    assert_rport_schema(&reply.body, &login_response_schema());
    assert_eq!(data["two_fa"]["delivery_method"], "totp_authenticator_app");
    let token = format!("Bearer {}", data["token"].as_str().expect("token"));
    let status = data["two_fa"]["totp_key_status"]
        .as_str()
        .expect("status")
        .to_owned();
    (token, status)
}

async fn verify(server: &TestServer, bearer: &str, code: &str) -> crate::harness::Reply {
    server
        .send_json(
            Method::POST,
            "/api/v1/verify-2fa",
            bearer,
            &json!({"username": ADMIN, "token": code}),
        )
        .await
}

#[tokio::test]
async fn a_totp_login_takes_the_code_of_the_users_secret() {
    let server = TestServer::with(totp_server("")).await;
    let (pending, status) = first_step(&server).await;
    assert_eq!(status, "pending", "no secret yet");

    // The second-factor token opens nothing else; a password alone opens nothing.
    let reply = server.request(Method::GET, "/api/v1/me", &pending).await;
    reply.assert_error(401, "ERR_CODE_UNAUTHORIZED");
    let reply = server.request(Method::GET, "/api/v1/me", &admin()).await;
    reply.assert_error(401, "ERR_CODE_UNAUTHORIZED");
    assert!(reply.detail().contains("totp_enabled"), "{}", reply.body);
    // Without a secret, a code cannot be checked (RPort: 409).
    let reply = verify(&server, &pending, "123456").await;
    reply.assert_error(409, "ERR_CODE_TOTP_SECRET_MISSING");

    // It may create the secret once.
    let reply = server
        .request(Method::POST, "/api/v1/me/totp-secret", &pending)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_rport_schema(&reply.body, &totp_schema());
    let secret = reply.body["secret"].as_str().expect("secret").to_owned();
    let png = base64::engine::general_purpose::STANDARD
        .decode(reply.body["qr"].as_str().expect("qr"))
        .expect("the QR code is base64");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let reply = server
        .request(Method::POST, "/api/v1/me/totp-secret", &pending)
        .await;
    reply.assert_error(409, "ERR_CODE_ALREADY_EXIST");

    // A wrong code, a missing one, then the right one.
    let wrong = if code(&secret, now()) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let reply = verify(&server, &pending, wrong).await;
    reply.assert_error(401, "ERR_CODE_UNAUTHORIZED");
    let reply = verify(&server, &pending, "").await;
    reply.assert_error(401, "ERR_CODE_UNAUTHORIZED");
    let reply = verify(&server, &pending, &code(&secret, now())).await;
    let data = reply.assert_data(200);
    assert_rport_schema(&reply.body, &login_response_schema());
    assert_eq!(data["two_fa"], Value::Null);
    let full = format!("Bearer {}", data["token"].as_str().expect("token"));
    let me = server.request(Method::GET, "/api/v1/me", &full).await;
    assert_eq!(me.assert_data(200)["username"], ADMIN);
    // The second-factor token served once; the full one is no second-factor token.
    let reply = verify(&server, &pending, &code(&secret, now())).await;
    reply.assert_error(401, "ERR_CODE_UNAUTHORIZED");
    let reply = verify(&server, &full, &code(&secret, now())).await;
    reply.assert_error(401, "ERR_CODE_UNAUTHORIZED");

    // The secret can be read again with a full token.
    let reply = server
        .request(Method::GET, "/api/v1/me/totp-secret", &full)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["secret"], secret.as_str());

    // Next login: the secret exists, so the token cannot make another.
    let (pending, status) = first_step(&server).await;
    assert_eq!(status, "exists");
    let reply = server
        .request(Method::POST, "/api/v1/me/totp-secret", &pending)
        .await;
    reply.assert_error(401, "ERR_CODE_UNAUTHORIZED");

    // An administrator's reset: the next login is pending again.
    let reply = server
        .request(Method::DELETE, "/api/v1/users/admin/totp-secret", &full)
        .await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    let reply = server
        .request(Method::DELETE, "/api/v1/users/nobody/totp-secret", &full)
        .await;
    reply.assert_error(404, "ERR_CODE_USER_NOT_FOUND");
    let (_, status) = first_step(&server).await;
    assert_eq!(status, "pending");
    let reply = server
        .request(Method::GET, "/api/v1/me/totp-secret", &full)
        .await;
    reply.assert_error(404, "ERR_CODE_NOT_FOUND");
}

#[tokio::test]
async fn wrong_codes_count_as_failed_logins() {
    let server = TestServer::with(totp_server("max_failed_login = 3\n")).await;
    let (pending, _) = first_step(&server).await;
    let reply = server
        .request(Method::POST, "/api/v1/me/totp-secret", &pending)
        .await;
    let secret = reply.body["secret"].as_str().expect("secret").to_owned();
    let right = code(&secret, now());
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(verify(&server, &pending, wrong).await.status.as_u16());
    }
    assert_eq!(statuses, [401, 401, 429]);
    let reply = verify(&server, &pending, &right).await;
    reply.assert_error(429, "ERR_CODE_TOO_MANY_FAILED_LOGINS");
}

#[tokio::test]
async fn the_code_must_come_within_the_login_session_ttl() {
    let server = TestServer::with(totp_server("totp_login_session_ttl = \"1s\"\n")).await;
    let (pending, _) = first_step(&server).await;
    let reply = server
        .request(Method::POST, "/api/v1/me/totp-secret", &pending)
        .await;
    let secret = reply.body["secret"].as_str().expect("secret").to_owned();
    // Token times are whole seconds: past 2 s the 1 s window has closed whatever the
    // rounding.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let reply = verify(&server, &pending, &code(&secret, now())).await;
    reply.assert_error(401, "ERR_CODE_UNAUTHORIZED");
    assert!(reply.body.to_string().contains("expired"), "{}", reply.body);
}

#[tokio::test]
async fn without_totp_the_endpoints_say_it_is_off() {
    let server = TestServer::start().await;
    let reply = server
        .request(Method::GET, "/api/v1/me/totp-secret", &admin())
        .await;
    reply.assert_error(400, "ERR_CODE_TOTP_DISABLED");
    let reply = server
        .request(Method::POST, "/api/v1/me/totp-secret", &admin())
        .await;
    reply.assert_error(400, "ERR_CODE_TOTP_DISABLED");
    let reply = server
        .request(Method::DELETE, "/api/v1/users/admin/totp-secret", &admin())
        .await;
    reply.assert_error(400, "ERR_CODE_TOTP_DISABLED");
    // Basic auth works as before, and /login's two_fa is null.
    let reply = server.request(Method::GET, "/api/v1/login", &admin()).await;
    assert_eq!(reply.assert_data(200)["two_fa"], Value::Null);
    assert_rport_schema(&reply.body, &login_response_schema());
}
