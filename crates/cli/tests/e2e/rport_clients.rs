//! End to end: what RPort's clients send over a real socket to a real `rportd`: its UI's
//! login form (`application/x-www-form-urlencoded`) and a script's `curl -u user:TOKEN`,
//! an API token as the password of HTTP basic auth.

use crate::support::*;
use serde_json::{Value, json};

/// Posts a form as a browser does; returns status and JSON body.
fn post_form(server: &Rportd, path: &str, form: &str) -> (u16, Value) {
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = http
        .post(&format!("{}{path}", server.api))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(form)
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn rports_login_form_and_api_tokens_as_basic_auth_passwords() {
    let dir = tempdir();
    let server = Rportd::start(dir.path());

    let (status, body) = post_form(
        &server,
        "/api/v1/login",
        &format!("username={API_USER}&password={API_PASSWORD}"),
    );
    assert_eq!(status, 200, "{body}");
    let bearer = format!("Bearer {}", body["data"]["token"].as_str().expect("token"));
    let (status, body) = post_form(
        &server,
        "/api/v1/login",
        &format!("username={API_USER}&password=wrong-password"),
    );
    assert_eq!(status, 401, "{body}");

    let reply = server.call(
        "POST",
        "/api/v1/me/tokens",
        &bearer,
        &[],
        Some(&json!({"name": "script", "scope": "read"})),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let token = reply.body["data"]["token"]
        .as_str()
        .expect("token")
        .to_owned();

    // `curl -u admin:TOKEN`: reads, and nothing else with a read token.
    let as_script = basic(API_USER, &token);
    let (status, me) = server.request_as("GET", "/api/v1/me", &as_script);
    assert_eq!(
        (status, &me["data"]["username"]),
        (200, &json!(API_USER)),
        "{me}"
    );
    let (status, body) = server.request_as("POST", "/api/v1/projects", &as_script);
    assert_eq!(status, 403, "{body}");
    // With another user's name, or a changed secret, it is no login.
    let (status, _) = server.request_as("GET", "/api/v1/me", &basic("someone", &token));
    assert_eq!(status, 401);
    let (status, _) =
        server.request_as("GET", "/api/v1/me", &basic(API_USER, &format!("{token}x")));
    assert_eq!(status, 401);
    // The secret never reaches the server's log.
    let secret = token
        .rsplit_once('_')
        .expect("<prefix>_<secret>")
        .1
        .to_owned();
    let log = server.stdout.all().join("\n") + &server.stderr.all().join("\n");
    assert!(!log.contains(&secret), "the token was logged");
}
