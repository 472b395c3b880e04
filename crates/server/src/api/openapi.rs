//! `GET /api/v1/openapi.json`: an OpenAPI 3 document of both API faces, made from the
//! router's own route table (see [`super::routes`]) and the descriptions below.

use axum::Json;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// How a route authenticates.
#[derive(Clone, Copy)]
enum Auth {
    None,
    /// Basic auth or a bearer token.
    Any,
    /// A bearer token only (API v2, logout).
    Bearer,
}

/// A summary and how it authenticates, for every route served. A route without an entry
/// here fails the unit test below.
fn describe(method: &Method, path: &str) -> Option<(&'static str, Auth)> {
    use Auth::{Any, Bearer};
    Some(match (method.as_str(), path) {
        ("GET", "/api/v1/status") => ("Server status, fingerprint and counts", Any),
        ("GET" | "POST", "/api/v1/login") => (
            "Log in: basic auth or a JSON body; returns a bearer token",
            Auth::None,
        ),
        ("DELETE", "/api/v1/logout") => ("Revoke the bearer token sent with the request", Bearer),
        ("GET", "/api/v1/me") => ("Who the caller is", Any),
        ("PUT", "/api/v1/me") => ("Change the caller's own password", Any),
        ("GET", "/api/v1/me/tokens") => ("The caller's API tokens, without secrets", Any),
        ("POST", "/api/v1/me/tokens") => ("Make an API token (shown once)", Any),
        ("DELETE", "/api/v1/me/tokens/{token_id}") => ("Revoke an API token", Any),
        ("GET", "/api/v1/clients") => ("Agents: fields, filters, sort, paging", Any),
        ("GET", "/api/v1/clients/{client_id}") => ("One agent", Any),
        ("DELETE", "/api/v1/clients/{client_id}") => ("Forget a disconnected agent", Any),
        ("PUT", "/api/v1/clients/{client_id}/tunnels") => {
            ("Open a tunnel (query parameters as RPort's)", Any)
        }
        ("DELETE", "/api/v1/clients/{client_id}/tunnels/{tunnel_id}") => {
            ("Close a tunnel (force=true with open connections)", Any)
        }
        ("PUT", "/api/v1/clients/{client_id}/tunnels/{tunnel_id}/acl") => {
            ("Replace a tunnel's ACL", Any)
        }
        ("GET", "/api/v1/tunnels") => ("Live tunnels, or past ones with filter[status]", Any),
        ("GET", "/api/v1/projects") => ("Projects (fleets)", Any),
        ("POST", "/api/v1/projects") => ("Create a project", Any),
        ("DELETE", "/api/v1/projects/{project_key}") => ("Delete an empty project", Any),
        ("GET", "/api/v1/auditlog") => ("The audit log (admins)", Any),
        ("GET", "/api/v1/clients-auth") => ("Agent credentials, without secrets", Any),
        ("POST", "/api/v1/clients-auth") => ("Create an agent credential bound to a project", Any),
        ("DELETE", "/api/v1/clients-auth/{credential_id}") => (
            "Delete an agent credential (force=true disconnects its agents)",
            Any,
        ),
        ("GET", "/api/v1/users") => ("API users and their roles (server admins)", Any),
        ("POST", "/api/v1/users") => ("Create a user (server admins)", Any),
        ("GET", "/api/v1/users/{username}") => ("One user (server admins)", Any),
        ("PUT", "/api/v1/users/{username}") => (
            "Change a user's password, admin flag or roles (server admins)",
            Any,
        ),
        ("DELETE", "/api/v1/users/{username}") => ("Delete a user (server admins)", Any),
        ("GET", "/api/v1/openapi.json") => ("This document", Auth::None),
        ("GET", "/api/v2/{project_key}/port_tunnel") => {
            ("The project's port tunnels, newest first", Bearer)
        }
        ("POST", "/api/v2/{project_key}/port_tunnel") => ("Open a port tunnel to a device", Bearer),
        ("GET", "/api/v2/{project_key}/port_tunnel/{port_tunnel_id}") => {
            ("One port tunnel", Bearer)
        }
        ("DELETE", "/api/v2/{project_key}/port_tunnel/{port_tunnel_id}") => {
            ("Close a port tunnel", Bearer)
        }
        _ => return None,
    })
}

pub fn document() -> Value {
    let mut paths = Map::new();
    for (method, path) in super::routes().served {
        let (summary, auth) = describe(&method, path).unwrap_or(("(undocumented)", Auth::Any));
        let parameters: Vec<Value> = path
            .split('/')
            .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let security = match auth {
            Auth::None => json!([]),
            Auth::Any => json!([{"basicAuth": []}, {"bearerAuth": []}]),
            Auth::Bearer => json!([{"bearerAuth": []}]),
        };
        let operation = json!({
            "summary": summary,
            "parameters": parameters,
            "security": security,
            "responses": {
                "2XX": {"description": "Success"},
                "default": {
                    "description": "An error",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Errors"}}},
                },
            },
        });
        if let Value::Object(entry) = paths.entry(path.to_owned()).or_insert_with(|| json!({})) {
            entry.insert(method.as_str().to_ascii_lowercase(), operation);
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "rportd API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "basicAuth": {"type": "http", "scheme": "basic"},
                "bearerAuth": {"type": "http", "scheme": "bearer"},
            },
            "schemas": {
                "Errors": {
                    "type": "object",
                    "properties": {"errors": {"type": "array", "items": {
                        "type": "object",
                        "properties": {
                            "code": {"type": "string"},
                            "title": {"type": "string"},
                            "detail": {"type": "string"},
                        },
                    }}},
                },
            },
        },
    })
}

/// `GET /api/v1/openapi.json`
pub async fn serve() -> Response {
    Json(document()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Adding a route without describing it here fails this test.
    #[test]
    fn every_route_served_is_described() {
        let routes = super::super::routes().served;
        assert!(routes.len() >= 25, "{routes:?}");
        for (method, path) in &routes {
            assert!(
                describe(method, path).is_some(),
                "{method} {path} is served but not described in openapi.rs"
            );
        }
        let document = document();
        for (method, path) in &routes {
            let operation = &document["paths"][*path][method.as_str().to_ascii_lowercase()];
            assert!(operation["summary"].is_string(), "{method} {path} missing");
        }
        let parameters = &document["paths"]["/api/v2/{project_key}/port_tunnel/{port_tunnel_id}"]["delete"]
            ["parameters"];
        assert_eq!(parameters.as_array().map(Vec::len), Some(2));
    }
}
