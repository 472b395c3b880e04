//! The permission matrix: a user with role viewer, tunnels or admin in project `alpha`,
//! against a representative endpoint of each resource, on `alpha`'s things and on those of
//! project `beta`, where it has no role. Things of `beta` do not exist for it (404) or are
//! refused (403) where the path names the project.

use axum::http::Method;
use serde_json::{Value, json};

use crate::harness::{Setup, TestServer, admin};

const ROLES: [&str; 3] = ["viewer", "tunnels", "admin"];

/// A request and the status each role gets, in the order of [`ROLES`]. `{who}` in the
/// path or body is the role's name, so that what one role creates does not clash.
struct Case {
    method: Method,
    path: &'static str,
    body: Option<Value>,
    expected: [u16; 3],
}

fn case(method: Method, path: &'static str, body: Option<Value>, expected: [u16; 3]) -> Case {
    Case {
        method,
        path,
        body,
        expected,
    }
}

fn cases() -> Vec<Case> {
    use Method as M;
    let open = |device: &str| Some(json!({"device_uuid": device, "port": 22}));
    vec![
        // clients
        case(M::GET, "/api/v1/clients/a1", None, [200, 200, 200]),
        case(M::GET, "/api/v1/clients/b1", None, [404, 404, 404]),
        case(M::DELETE, "/api/v1/clients/b1", None, [404, 404, 404]),
        // v1 tunnels (the agents are not connected: 404 once the role is enough)
        case(
            M::PUT,
            "/api/v1/clients/a1/tunnels?remote=22",
            None,
            [403, 404, 404],
        ),
        case(
            M::PUT,
            "/api/v1/clients/b1/tunnels?remote=22",
            None,
            [404, 404, 404],
        ),
        case(
            M::DELETE,
            "/api/v1/clients/a1/tunnels/ta",
            None,
            [403, 404, 404],
        ),
        case(
            M::DELETE,
            "/api/v1/clients/b1/tunnels/tb",
            None,
            [404, 404, 404],
        ),
        case(
            M::PUT,
            "/api/v1/clients/b1/tunnels/tb/acl",
            Some(json!({"acl": null})),
            [404, 404, 404],
        ),
        // v2 port tunnels (bearer tokens)
        case(M::GET, "/api/v2/alpha/port_tunnel", None, [200, 200, 200]),
        case(M::GET, "/api/v2/beta/port_tunnel", None, [403, 403, 403]),
        case(
            M::GET,
            "/api/v2/alpha/port_tunnel/ta",
            None,
            [200, 200, 200],
        ),
        case(M::GET, "/api/v2/beta/port_tunnel/tb", None, [403, 403, 403]),
        case(
            M::POST,
            "/api/v2/alpha/port_tunnel",
            open("a1"),
            [403, 409, 409],
        ),
        case(
            M::POST,
            "/api/v2/beta/port_tunnel",
            open("b1"),
            [403, 403, 403],
        ),
        case(
            M::POST,
            "/api/v2/alpha/port_tunnel",
            open("b1"),
            [403, 404, 404],
        ),
        case(
            M::DELETE,
            "/api/v2/alpha/port_tunnel/ta",
            None,
            [403, 409, 409],
        ),
        case(
            M::DELETE,
            "/api/v2/beta/port_tunnel/tb",
            None,
            [403, 403, 403],
        ),
        // projects: server admins only
        case(M::GET, "/api/v1/projects", None, [200, 200, 200]),
        case(
            M::POST,
            "/api/v1/projects",
            Some(json!({"key": "new-{who}"})),
            [403, 403, 403],
        ),
        case(M::DELETE, "/api/v1/projects/beta", None, [403, 403, 403]),
        // agent credentials
        case(M::GET, "/api/v1/clients-auth", None, [200, 200, 200]),
        case(
            M::POST,
            "/api/v1/clients-auth",
            Some(json!({"id": "alpha-{who}", "project": "alpha"})),
            [403, 403, 201],
        ),
        case(
            M::POST,
            "/api/v1/clients-auth",
            Some(json!({"id": "beta-{who}", "project": "beta"})),
            [403, 403, 403],
        ),
        case(
            M::DELETE,
            "/api/v1/clients-auth/beta-cred",
            None,
            [404, 404, 404],
        ),
        case(
            M::DELETE,
            "/api/v1/clients-auth/alpha-cred",
            None,
            [403, 403, 204],
        ),
        // audit log
        // as in RPort, anyone reads their own entries
        case(M::GET, "/api/v1/auditlog", None, [200, 200, 200]),
        case(
            M::GET,
            "/api/v1/auditlog?filter[project]=alpha",
            None,
            [403, 403, 200],
        ),
        case(
            M::GET,
            "/api/v1/auditlog?filter[project]=beta",
            None,
            [403, 403, 403],
        ),
        // users: server admins only
        case(M::GET, "/api/v1/users", None, [403, 403, 403]),
        case(
            M::DELETE,
            "/api/v1/users/viewer-user",
            None,
            [403, 403, 403],
        ),
        // API tokens: only for a project with a role in it
        case(
            M::POST,
            "/api/v1/me/tokens",
            Some(json!({"name": "t", "scope": "read", "project": "alpha"})),
            [200, 200, 200],
        ),
        case(
            M::POST,
            "/api/v1/me/tokens",
            Some(json!({"name": "t", "scope": "read", "project": "beta"})),
            [403, 403, 403],
        ),
        // Last, as it deletes: a client of alpha.
        case(M::DELETE, "/api/v1/clients/a2", None, [403, 403, 204]),
    ]
}

#[tokio::test]
async fn each_role_in_one_project_against_each_resource_of_both() {
    let server = TestServer::with(Setup {
        projects: vec!["alpha", "beta"],
        clients: vec![("a1", "alpha"), ("a2", "alpha"), ("b1", "beta")],
        closed_tunnels: vec![("ta", "a1", "alpha"), ("tb", "b1", "beta")],
        ..Default::default()
    })
    .await;
    for (id, project) in [("alpha-cred", "alpha"), ("beta-cred", "beta")] {
        server
            .send_json(
                Method::POST,
                "/api/v1/clients-auth",
                &admin(),
                &json!({"id": id, "project": project}),
            )
            .await
            .assert_data(201);
    }
    let mut failures = Vec::new();
    for (index, role) in ROLES.iter().enumerate() {
        let bearer = server
            .user(&format!("{role}-user"), json!({ "alpha": role }))
            .await;
        for case in cases() {
            let path = case.path.replace("{who}", role);
            let mut call = server.call(case.method.clone(), &path).auth(&bearer);
            if let Some(body) = &case.body {
                call = call.raw_json(body.to_string().replace("{who}", role));
            }
            let reply = call.send().await;
            let expected = case.expected[index];
            if reply.status.as_u16() != expected {
                failures.push(format!(
                    "{role}: {} {path}: expected {expected}, got {} {}",
                    case.method, reply.status, reply.body
                ));
            } else if expected >= 400 {
                assert!(
                    reply.code().starts_with("ERR_CODE_"),
                    "{path}: {}",
                    reply.body
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
