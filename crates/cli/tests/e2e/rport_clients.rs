//! End to end: what RPort's clients send over a real socket to a real `rportd`: its UI's
//! login form (`application/x-www-form-urlencoded`) and a script's `curl -u user:TOKEN`,
//! an API token as the password of HTTP basic auth.

use crate::rport_schema::assert_rport_schema;
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

/// RPort's `Tunnel` (components/schemas/Tunnel.yaml): ports are strings; `acl` is null
/// without one in RPort's Go code too.
fn rport_tunnel_schema() -> Value {
    json!({"type": "object", "properties": {
        "id": {"type": "string"},
        "client_id": {"type": "string"},
        "lhost": {"type": "string"},
        "lport": {"type": "string"},
        "rhost": {"type": "string"},
        "rport": {"type": "string"},
        "lport_random": {"type": "boolean"},
        "scheme": {"type": ["string", "null"]},
        "protocol": {"type": "string", "enum": ["tcp", "udp", "tcp+udp"]},
        "acl": {"type": ["string", "null"]},
        "http_proxy": {"type": "boolean"},
        "host_header": {"type": "string"},
        "tunnel_url": {"type": "string"},
    }})
}

/// The tunnel operations and agent credentials, which need a real agent, answer in RPort's
/// shapes: `PUT /clients/{id}/tunnels`, `GET /tunnels`, `PUT …/acl`, `DELETE …/tunnels/{tid}`,
/// `GET`/`POST`/`DELETE /clients-auth`, and `DELETE /clients/{id}` of a connected client.
#[test]
fn tunnels_and_agent_credentials_answer_in_rports_shapes() {
    let dir = tempdir();
    let server = Rportd::start(dir.path());
    let _agent = Rport::attach(&server, "c1", &dir.path().join("agent"));
    server.wait_connection_state("c1", "connected", ATTACH);
    let echo = echo_server();

    let tunnel = server.open_tunnel("c1", &format!("remote={}&acl=127.0.0.1", echo.port()));
    assert_rport_schema(&tunnel, &rport_tunnel_schema());
    let id = tunnel["id"].as_str().expect("tunnel id").to_owned();

    let (status, list) = server.request("GET", "/api/v1/tunnels");
    assert_eq!(status, 200, "{list}");
    assert_rport_schema(
        &list,
        &json!({"type": "object", "properties": {
            "data": {"type": "array", "items": rport_tunnel_schema()},
        }}),
    );

    let acl = format!("/api/v1/clients/c1/tunnels/{id}/acl");
    let (status, body) = server.send_json("PUT", &acl, &json!({"acl": "127.0.0.2"}));
    assert!(matches!(status, 200 | 204), "{status} {body}");

    // A connected client cannot be deleted (RPort: 400).
    let (status, body) = server.request("DELETE", "/api/v1/clients/c1");
    assert_eq!(status, 400, "{body}");

    let (status, body) = server.request("DELETE", &format!("/api/v1/clients/c1/tunnels/{id}"));
    assert_eq!(status, 204, "{body}");

    // Agent credentials managed through the API: a server without `[server] auth`.
    let dir = tempdir();
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            agent_auth: String::new(),
            ..Default::default()
        },
    );
    let (status, created) = server.send_json(
        "POST",
        "/api/v1/clients-auth",
        &json!({"id": "new-device", "password": "a-password-of-some-length"}),
    );
    assert!(matches!(status, 200 | 201 | 204), "{status} {created}");
    let client_auth = json!({"type": "object", "properties": {"id": {"type": "string"}}});
    let (status, list) = server.request("GET", "/api/v1/clients-auth?filter[id]=new-*");
    assert_eq!(status, 200, "{list}");
    assert_rport_schema(
        &list,
        &json!({"type": "object", "properties": {
            "data": {"type": "array", "items": client_auth},
        }}),
    );
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1), "{list}");
    let (status, one) = server.request("GET", "/api/v1/clients-auth/new-device");
    assert_eq!(status, 200, "{one}");
    assert_rport_schema(
        &one,
        &json!({"type": "object", "properties": {"data": client_auth}}),
    );
    let (status, body) = server.request("DELETE", "/api/v1/clients-auth/new-device");
    assert_eq!(status, 204, "{body}");
}
