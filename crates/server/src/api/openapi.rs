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

/// One operation: what it does, how it authenticates, its query parameters and its JSON
/// request body.
struct Operation {
    summary: &'static str,
    auth: Auth,
    /// Name, JSON schema type, description.
    query: &'static [(&'static str, &'static str, &'static str)],
    /// Its schema, and whether a body must be sent.
    body: Option<(Value, bool)>,
}

fn op(summary: &'static str, auth: Auth) -> Operation {
    Operation {
        summary,
        auth,
        query: &[],
        body: None,
    }
}

impl Operation {
    fn query(mut self, query: &'static [(&'static str, &'static str, &'static str)]) -> Self {
        self.query = query;
        self
    }

    /// A JSON object body: `(name, schema)` properties, of which `required` must be present.
    fn body(mut self, properties: Value, required: &[&str]) -> Self {
        let mut schema = json!({
            "type": "object",
            "properties": properties,
            "additionalProperties": false,
        });
        if let (false, Value::Object(fields)) = (required.is_empty(), &mut schema) {
            // OpenAPI 3.0 refuses an empty `required` list.
            fields.insert("required".into(), json!(required));
        }
        self.body = Some((schema, !required.is_empty()));
        self
    }
}

const PAGE: [(&str, &str, &str); 2] = [
    ("page[limit]", "integer", "at most this many entries"),
    ("page[offset]", "integer", "skip this many entries"),
];

const TUNNEL_QUERY: &[(&str, &str, &str)] = &[
    (
        "remote",
        "string",
        "target as seen from the agent: PORT, HOST:PORT (required)",
    ),
    (
        "local",
        "string",
        "server port or HOST:PORT; random from the pool when absent",
    ),
    ("protocol", "string", "tcp (default), udp or tcp+udp"),
    ("name", "string", "free text"),
    (
        "scheme",
        "string",
        "ssh, rdp, http, ... (at most 15 characters)",
    ),
    (
        "acl",
        "string",
        "comma list of addresses and networks allowed to connect",
    ),
    (
        "idle-timeout-minutes",
        "integer",
        "0 to 10080; 0 = never; default 5",
    ),
    ("skip-idle-timeout", "boolean", "never close for idleness"),
    (
        "auto-close",
        "string",
        "close after this Go duration (e.g. 30m), at most 744h",
    ),
    (
        "check_port",
        "string",
        "0 skips checking that the target accepts connections",
    ),
];

const AUDIT_QUERY: &[(&str, &str, &str)] = &[
    ("filter[since]", "string", "RFC 3339 time"),
    ("filter[until]", "string", "RFC 3339 time"),
    (
        "filter[actor]",
        "string",
        "user name, credential id or system",
    ),
    (
        "filter[action]",
        "string",
        "login, tunnel.create, user.delete, ...",
    ),
    ("filter[project]", "string", "project key"),
    PAGE[0],
    PAGE[1],
];

fn roles_schema() -> Value {
    json!({"type": "object", "additionalProperties": {"type": "string", "enum": ["viewer", "tunnels", "admin"]}})
}

/// Every route served, described. A route without an entry here fails the unit test below.
fn describe(method: &Method, path: &str) -> Option<Operation> {
    use Auth::{Any, Bearer};
    let string = json!({"type": "string"});
    Some(match (method.as_str(), path) {
        ("GET", "/api/v1/status") => op("Server status, fingerprint and counts", Any),
        ("GET", "/api/v1/login") => op("Log in with basic auth; returns a bearer token", Auth::None)
            .query(&[("token-lifetime", "integer", "seconds the token is valid")]),
        ("POST", "/api/v1/login") => op(
            "Log in: basic auth or a JSON body; returns a bearer token",
            Auth::None,
        )
        .query(&[("token-lifetime", "integer", "seconds the token is valid")])
        .body(json!({"username": string, "password": string}), &[]),
        ("DELETE", "/api/v1/logout") => op("Revoke the bearer token sent with the request", Bearer),
        ("GET", "/api/v1/me") => op("Who the caller is, its roles", Any),
        ("PUT", "/api/v1/me") => op("Change the caller's own password", Any).body(
            json!({"old_password": string, "new_password": string}),
            &["old_password", "new_password"],
        ),
        ("GET", "/api/v1/me/tokens") => op("The caller's API tokens, without secrets", Any),
        ("POST", "/api/v1/me/tokens") => op("Make an API token (shown once)", Any).body(
            json!({
                "name": string,
                "scope": {"type": "string", "enum": ["read", "read+write"]},
                "expires_at": {"type": "string", "format": "date-time"},
                "project": string,
            }),
            &["name", "scope"],
        ),
        ("DELETE", "/api/v1/me/tokens/{token_id}") => op("Revoke an API token", Any),
        ("GET", "/api/v1/clients") => op("Agents: fields, filters, sort, paging", Any).query(&[
            ("fields[clients]", "string", "comma list of fields (default id,name,hostname)"),
            ("sort", "string", "comma list of fields, - for descending"),
            PAGE[0],
            PAGE[1],
        ]),
        ("GET", "/api/v1/clients/{client_id}") => op("One agent", Any)
            .query(&[("fields[clients]", "string", "comma list of fields")]),
        ("DELETE", "/api/v1/clients/{client_id}") => op("Forget a disconnected agent", Any),
        ("PUT", "/api/v1/clients/{client_id}/tunnels") => {
            op("Open a tunnel (query parameters as RPort's)", Any).query(TUNNEL_QUERY)
        }
        ("DELETE", "/api/v1/clients/{client_id}/tunnels/{tunnel_id}") => {
            op("Close a tunnel (force=true with open connections)", Any)
                .query(&[("force", "boolean", "close even with open connections")])
        }
        ("PUT", "/api/v1/clients/{client_id}/tunnels/{tunnel_id}/acl") => {
            op("Replace a tunnel's ACL", Any).body(
                json!({"acl": {"type": "string", "nullable": true}}),
                &["acl"],
            )
        }
        ("GET", "/api/v1/tunnels") => op("Live tunnels, or past ones with filter[status]", Any)
            .query(&[
                ("filter[status]", "string", "live (default), or a comma list of statuses"),
                ("filter[client_id]", "string", "one agent's tunnels"),
                PAGE[0],
                PAGE[1],
            ]),
        ("GET", "/api/v1/projects") => op("Projects the caller has a role in", Any),
        ("POST", "/api/v1/projects") => op("Create a project (server admins)", Any)
            .body(json!({"key": string, "name": string}), &["key"]),
        ("DELETE", "/api/v1/projects/{project_key}") => {
            op("Delete an empty project (server admins)", Any)
        }
        ("GET", "/api/v1/auditlog") => {
            op("The audit log (server admins, or a project's admins)", Any).query(AUDIT_QUERY)
        }
        ("GET", "/api/v1/clients-auth") => op("Agent credentials, without secrets", Any),
        ("POST", "/api/v1/clients-auth") => {
            op("Create an agent credential bound to a project", Any).body(
                json!({"id": string, "password": string, "project": string}),
                &["id"],
            )
        }
        ("DELETE", "/api/v1/clients-auth/{credential_id}") => op(
            "Delete an agent credential (force=true disconnects its agents)",
            Any,
        )
        .query(&[("force", "boolean", "delete even while agents use it")]),
        ("GET", "/api/v1/users") => op("API users and their roles (server admins)", Any),
        ("POST", "/api/v1/users") => op("Create a user (server admins)", Any).body(
            json!({
                "username": string,
                "password": string,
                "admin": {"type": "boolean"},
                "groups": {"type": "array", "items": {"type": "string", "enum": ["Administrators"]}},
                "roles": roles_schema(),
            }),
            &["username", "password"],
        ),
        ("GET", "/api/v1/users/{username}") => op("One user (server admins)", Any),
        ("PUT", "/api/v1/users/{username}") => op(
            "Change a user's password, admin flag or roles (server admins)",
            Any,
        )
        .body(
            json!({
                "password": string,
                "admin": {"type": "boolean"},
                "groups": {"type": "array", "items": {"type": "string", "enum": ["Administrators"]}},
                "roles": roles_schema(),
            }),
            &[],
        ),
        ("DELETE", "/api/v1/users/{username}") => op("Delete a user (server admins)", Any),
        // Login sessions and the second factor (TOTP).
        ("GET", "/api/v1/users/{username}/sessions") => {
            op("The user's login sessions (server admins)", Any)
        }
        ("DELETE", "/api/v1/users/{username}/sessions") => {
            op("End all of the user's login sessions (server admins)", Any)
        }
        ("DELETE", "/api/v1/users/{username}/sessions/{session_id}") => {
            op("End one login session (server admins)", Any)
        }
        ("DELETE", "/api/v1/users/{username}/totp-secret") => {
            op("Reset the user's TOTP secret (server admins)", Any)
        }
        ("GET", "/api/v1/me/totp-secret") => op("The caller's TOTP secret and its QR code", Any),
        ("POST", "/api/v1/me/totp-secret") => op(
            "Make the caller's TOTP secret, once; returns it and its QR code (base64 PNG)",
            Any,
        ),
        ("DELETE", "/api/v1/me/totp-secret") => op("Delete the caller's TOTP secret", Any),
        ("POST", "/api/v1/verify-2fa") => op(
            "Second login step: the code of the authenticator app, with the token /login gave; returns a full token",
            Bearer,
        )
        .query(&[("token-lifetime", "integer", "seconds the token is valid")])
        .body(json!({"username": string, "token": string}), &["username", "token"]),
        ("GET", "/api/v1/openapi.json") => op("This document", Auth::None),
        ("GET", "/api/v2/{project_key}/port_tunnel") => {
            op("The project's port tunnels, newest first", Bearer).query(&[
                ("limit", "integer", "at most this many (default 50, at most 500)"),
                ("offset", "integer", "skip this many"),
            ])
        }
        ("POST", "/api/v2/{project_key}/port_tunnel") => {
            op("Open a port tunnel to a device", Bearer).body(
                json!({
                    "device_uuid": string,
                    "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                    "allowed_ip": string,
                }),
                &["device_uuid", "port"],
            )
        }
        ("GET", "/api/v2/{project_key}/port_tunnel/{port_tunnel_id}") => {
            op("One port tunnel", Bearer)
        }
        ("DELETE", "/api/v2/{project_key}/port_tunnel/{port_tunnel_id}") => {
            op("Close a port tunnel", Bearer)
        }
        _ => return None,
    })
}

pub fn document() -> Value {
    let mut paths = Map::new();
    for (method, path) in super::routes().served {
        let operation = describe(&method, path).unwrap_or(op("(undocumented)", Auth::Any));
        let mut parameters: Vec<Value> = path
            .split('/')
            .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        parameters.extend(operation.query.iter().map(|(name, kind, description)| {
            json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": kind}})
        }));
        let security = match operation.auth {
            Auth::None => json!([]),
            Auth::Any => json!([{"basicAuth": []}, {"bearerAuth": []}]),
            Auth::Bearer => json!([{"bearerAuth": []}]),
        };
        let mut entry = json!({
            "summary": operation.summary,
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
        if let (Some((schema, required)), Value::Object(fields)) = (operation.body, &mut entry) {
            fields.insert(
                "requestBody".into(),
                json!({"required": required, "content": {"application/json": {"schema": schema}}}),
            );
        }
        if let Value::Object(methods) = paths.entry(path.to_owned()).or_insert_with(|| json!({})) {
            methods.insert(method.as_str().to_ascii_lowercase(), entry);
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
        let open = &document["paths"]["/api/v2/{project_key}/port_tunnel"]["post"];
        assert_eq!(
            open["requestBody"]["content"]["application/json"]["schema"]["required"],
            json!(["device_uuid", "port"])
        );
        let tunnel = &document["paths"]["/api/v1/clients/{client_id}/tunnels"]["put"];
        assert!(tunnel["parameters"].as_array().is_some_and(|p| {
            p.iter()
                .any(|p| p["name"] == "remote" && p["in"] == "query")
        }));
        // OpenAPI 3.0 allows no empty `required` list; checked by openapi-spec-validator.
        assert!(!document.to_string().contains("\"required\":[]"));
    }
}
