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
    /// The media type of a success when it is not JSON.
    answers: Option<&'static str>,
}

fn op(summary: &'static str, auth: Auth) -> Operation {
    Operation {
        summary,
        auth,
        query: &[],
        body: None,
        answers: None,
    }
}

impl Operation {
    fn query(mut self, query: &'static [(&'static str, &'static str, &'static str)]) -> Self {
        self.query = query;
        self
    }

    /// A success answers `media_type` rather than JSON.
    fn answers(mut self, media_type: &'static str) -> Self {
        self.answers = Some(media_type);
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

/// `/login` and `/verify-2fa`.
const LOGIN_QUERY: &[(&str, &str, &str)] = &[
    ("token-lifetime", "integer", "seconds the token is valid"),
    (
        "cookie",
        "boolean",
        "true: set the token as the HttpOnly cookie rportd_session (SameSite=Strict, Secure over HTTPS) instead of returning it; the web console logs in so",
    ),
];

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
        "comma list of addresses and networks allowed to connect; left out: anyone; empty: refused",
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
    (
        "filter[username]",
        "string",
        "RPort's filters: comma list of values, * a wildcard",
    ),
    (
        "filter[application]",
        "string",
        "auth.user, client, client.tunnel, client.auth, ...",
    ),
    (
        "filter[action]",
        "string",
        "create, delete, update, success, failed (or rportd's own action name)",
    ),
    ("filter[remote_ip]", "string", "address of the caller"),
    ("filter[affected_id]", "string", "id of what was acted on"),
    ("filter[client_id]", "string", "the agent acted on"),
    ("filter[client_hostname]", "string", "the agent's host name"),
    (
        "filter[timestamp][gt]",
        "string",
        "after this time (2021-10-28 or RFC 3339)",
    ),
    ("filter[timestamp][lt]", "string", "before this time"),
    (
        "filter[timestamp][since]",
        "string",
        "at or after this time",
    ),
    (
        "filter[timestamp][until]",
        "string",
        "at or before this time",
    ),
    ("filter[since]", "string", "RFC 3339 time"),
    ("filter[until]", "string", "RFC 3339 time"),
    (
        "filter[actor]",
        "string",
        "rportd's name for filter[username]",
    ),
    ("filter[project]", "string", "project key"),
    (
        "sort",
        "string",
        "[-]timestamp, username, remote_ip, application, action, affected_id, client_id or client_hostname",
    ),
    (
        "page[limit]",
        "integer",
        "at most this many entries (default 10, at most 100)",
    ),
    PAGE[1],
];

const STORED_TUNNEL_QUERY: &[(&str, &str, &str)] = &[
    (
        "filter[name]",
        "string",
        "comma list of values, * a wildcard",
    ),
    (
        "filter[scheme]",
        "string",
        "comma list of values, * a wildcard",
    ),
    (
        "filter[remote_ip]",
        "string",
        "comma list of values, * a wildcard",
    ),
    (
        "filter[remote_port]",
        "string",
        "comma list of values, * a wildcard",
    ),
    (
        "sort",
        "string",
        "[-]created_at, name, scheme, remote_ip or remote_port",
    ),
    (
        "page[limit]",
        "integer",
        "at most this many entries (default 10, at most 100)",
    ),
    PAGE[1],
];

fn stored_tunnel_schema() -> Value {
    json!({
        "name": {"type": "string"},
        "scheme": {"type": "string", "nullable": true},
        "remote_ip": {"type": "string", "nullable": true},
        "remote_port": {"type": "integer", "nullable": true},
        "public_port": {"type": "integer", "nullable": true},
        "acl": {"type": "string", "nullable": true},
        "further_options": {"type": "object", "nullable": true},
    })
}

fn roles_schema() -> Value {
    json!({"type": "object", "additionalProperties": {"type": "string", "enum": ["viewer", "tunnels", "admin"]}})
}

/// Every route served, described. A route without an entry here fails the unit test below.
/// RPort's `ClientGroup` as a request body, and `project` (ours).
fn group_body() -> Value {
    let list = json!({"type": "array", "items": {"type": "string"}});
    json!({
        "id": {"type": "string"},
        "description": {"type": "string"},
        "project": {"type": "string"},
        "allowed_user_groups": list,
        "params": {
            "type": "object",
            "description": "lists of patterns (* wildcard) per field: client_id, name, os, \
                os_arch, os_family, os_kernel, hostname, ipv4, ipv6, version, address, \
                client_auth_id, connection_state; tag: a list or {\"and\"|\"or\": [..]}",
        },
    })
}

fn describe(method: &Method, path: &str) -> Option<Operation> {
    use Auth::{Any, Bearer};
    let string = json!({"type": "string"});
    Some(match (method.as_str(), path) {
        ("GET", "/api/v1/status") => op("Server status, fingerprint and counts", Any),
        ("GET", "/api/v1/login") => op("Log in with basic auth; returns a bearer token", Auth::None)
            .query(LOGIN_QUERY),
        ("POST", "/api/v1/login") => op(
            "Log in: basic auth, or a JSON or form body (new_password sets a new one); returns a bearer token",
            Auth::None,
        )
        .query(LOGIN_QUERY)
        .body(
            json!({"username": string, "password": string, "new_password": string}),
            &[],
        ),
        ("DELETE", "/api/v1/logout") => op(
            "Revoke the bearer token sent with the request (or the session cookie, which is cleared)",
            Bearer,
        ),
        ("GET", "/api/v1/me") => op("Who the caller is, its roles", Any),
        ("PUT", "/api/v1/me") => op(
            "Change the caller's own password (with old_password), name or two_fa_send_to",
            Any,
        )
        .body(
            json!({
                "password": string,
                "new_password": string,
                "old_password": string,
                "username": string,
                "two_fa_send_to": string,
            }),
            &[],
        ),
        ("GET", "/api/v1/me/tokens") => op("The caller's API tokens, without secrets", Any),
        ("POST", "/api/v1/me/tokens") => op("Make an API token (shown once)", Any).body(
            json!({
                "name": string,
                "scope": {"type": "string", "enum": ["read", "read+write", "clients-auth"]},
                "expires_at": {"type": "string", "format": "date-time"},
                "project": string,
            }),
            &["name", "scope"],
        ),
        ("DELETE", "/api/v1/me/tokens/{token_id}") => {
            op("Revoke an API token (RPort's prefix or rportd's id)", Any)
        }
        ("GET", "/api/v1/clients") => op("Agents: fields, filters, sort, paging", Any).query(&[
            ("fields[clients]", "string", "comma list of fields (default: all)"),
            (
                "filter[FIELD]",
                "string",
                "comma list of values (* wildcard), and(..) or or(..); FIELD may be a|b or *",
            ),
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
        ("GET", "/api/v1/auditlog") => op(
            "The audit log in RPort's shape (server admins; a project's admins with \
             filter[project]; others their own entries)",
            Any,
        )
        .query(AUDIT_QUERY),
        ("GET", "/api/v1/clients/{client_id}/stored-tunnels") => {
            op("An agent's stored tunnels", Any).query(STORED_TUNNEL_QUERY)
        }
        ("POST", "/api/v1/clients/{client_id}/stored-tunnels") => {
            op("Store a tunnel definition", Any).body(stored_tunnel_schema(), &[])
        }
        ("PUT", "/api/v1/clients/{client_id}/stored-tunnels/{stored_tunnel_id}") => {
            op("Replace a stored tunnel", Any).body(stored_tunnel_schema(), &[])
        }
        ("DELETE", "/api/v1/clients/{client_id}/stored-tunnels/{stored_tunnel_id}") => {
            op("Delete a stored tunnel", Any)
        }
        ("POST", "/api/v1/clients/{client_id}/stored-tunnels/{stored_tunnel_id}/start") => op(
            "Open a stored tunnel, as PUT /clients/{client_id}/tunnels with its definition",
            Any,
        ),
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
        ("GET", "/api/v1/client-groups") => op("Client groups of the caller's projects", Any)
            .query(&[
                ("fields[client_groups]", "string", "comma list of fields (default id,description)"),
                ("filter[id]", "string", "comma list of values (* wildcard)"),
                ("filter[description]", "string", "comma list of values (* wildcard)"),
                ("sort", "string", "id or description, - for descending"),
                PAGE[0],
                PAGE[1],
            ]),
        ("POST", "/api/v1/client-groups") => op("Create a client group (project admins)", Any)
            .body(group_body(), &["id"]),
        ("GET", "/api/v1/client-groups/{group_id}") => op("One client group", Any)
            .query(&[("fields[client_groups]", "string", "comma list of fields")]),
        ("PUT", "/api/v1/client-groups/{group_id}") => {
            op("Create or replace a client group (project admins)", Any)
                .body(group_body(), &["id"])
        }
        ("DELETE", "/api/v1/client-groups/{group_id}") => {
            op("Delete a client group (project admins)", Any)
        }
        ("GET", "/api/v1/client-tags") => op("Agents' tags, with the agents of each", Any)
            .query(&[
                ("fields[client_tags]", "string", "tag, client_ids"),
                PAGE[0],
                PAGE[1],
            ]),
        ("GET", "/api/v1/clients/{client_id}/attributes") => {
            op("An agent's tags and labels", Any)
        }
        ("PUT", "/api/v1/clients/{client_id}/attributes") => {
            op("Set an agent's tags and labels, over the agent's own", Any).body(
                json!({"tags": {"type": "array", "items": string},
                       "labels": {"type": "object", "additionalProperties": string}}),
                &[],
            )
        }
        ("POST", "/api/v1/clients/{client_id}/acl") => {
            op("Record an agent's allowed user groups (project admins)", Any).body(
                json!({"allowed_user_groups": {"type": "array", "items": string}}),
                &["allowed_user_groups"],
            )
        }
        ("GET", "/api/v1/clients-auth/{credential_id}") => {
            op("One agent credential, without its secret", Any)
        }
        ("GET", "/api/v1/users") => op("API users and their roles (server admins)", Any),
        ("POST", "/api/v1/users") => op("Create a user (server admins)", Any).body(
            json!({
                "username": string,
                "password": string,
                "admin": {"type": "boolean"},
                "groups": {"type": "array", "items": string, "description": "user groups; Administrators makes a server-wide administrator"},
                "roles": roles_schema(),
                "password_expired": {"type": "boolean"},
                "two_fa_send_to": string,
            }),
            &["username", "password"],
        ),
        ("GET", "/api/v1/users/{username}") => op("One user (server admins)", Any),
        ("PUT", "/api/v1/users/{username}") => op(
            "Change a user's name, password, admin flag, roles or RPort's fields (server admins)",
            Any,
        )
        .body(
            json!({
                "username": string,
                "password_expired": {"type": "boolean"},
                "two_fa_send_to": string,
                "password": string,
                "admin": {"type": "boolean"},
                "groups": {"type": "array", "items": string, "description": "user groups; Administrators makes a server-wide administrator"},
                "roles": roles_schema(),
            }),
            &[],
        ),
        ("DELETE", "/api/v1/users/{username}") => op("Delete a user (server admins)", Any),
        ("GET", "/api/v1/user-groups") => {
            op("User groups and what they grant (server admins)", Any)
        }
        ("GET", "/api/v1/user-groups/{name}") => op("One user group (server admins)", Any),
        ("PUT", "/api/v1/user-groups/{name}") => op(
            "Create or replace a user group: RPort's permissions (tunnels opens tunnels) in its projects (server admins)",
            Any,
        )
        .body(
            json!({
                "permissions": {"type": "object", "additionalProperties": {"type": "boolean"}},
                "tunnels_restricted": {"type": "object", "description": "accepted and kept, not enforced"},
                "commands_restricted": {"type": "object", "description": "accepted and kept, not enforced"},
                "projects": {"type": "array", "items": string},
            }),
            &[],
        ),
        ("DELETE", "/api/v1/user-groups/{name}") => {
            op("Delete a user group; its members leave it (server admins)", Any)
        }
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
        ("GET", "/api/v1/me/sessions") => op(
            "The caller's own login sessions; current marks the one the request came with",
            Any,
        ),
        ("DELETE", "/api/v1/me/sessions") => op(
            "End all of the caller's login sessions but the one the request came with",
            Any,
        ),
        ("DELETE", "/api/v1/me/sessions/{session_id}") => {
            op("End one of the caller's own login sessions", Any)
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
        .query(LOGIN_QUERY)
        .body(json!({"username": string, "token": string}), &["username", "token"]),
        ("GET", "/api/v1/openapi.json") => op("This document", Auth::None),
        ("GET", "/api/v1/auth/provider") => op(
            "How to log in: always RPort's built-in login (asked before login)",
            Auth::None,
        ),
        ("GET", "/api/v1/me/ip") => op("The caller's address as the server sees it", Any),
        ("GET" | "POST", "/api/v1/me/token") | ("PUT" | "DELETE", "/api/v1/me/token/{token_prefix}") => {
            op("Gone (410) as in RPort: use /api/v1/me/tokens", Any)
        }
        ("PUT", "/api/v1/me/tokens/{token_id}") => op(
            "Change an API token's name, scope or expiry (RPort's prefix or rportd's id)",
            Any,
        )
        .body(
            json!({
                "name": string,
                "scope": {"type": "string", "enum": ["read", "read+write", "clients-auth"]},
                "expires_at": {"type": "string", "format": "date-time", "nullable": true},
            }),
            &[],
        ),
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
        ("GET", "/metrics") => op(
            "Prometheus metrics in the text format 0.0.4 (docs/metrics.md)",
            Any,
        )
        .answers("text/plain"),
        ("GET", "/api/v1/events") => op(
            "Live changes as server-sent events (text/event-stream): ready, client {id, connected, project, ...}, tunnel {id, client_id, project, status}, resync; at most 8 streams per user (429) and 512 in all (503)",
            Any,
        ),
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
            Auth::Any => json!([{"basicAuth": []}, {"bearerAuth": []}, {"cookieAuth": []}]),
            Auth::Bearer => json!([{"bearerAuth": []}]),
        };
        let success = match operation.answers {
            Some(media_type) => json!({
                "description": "Success",
                "content": {media_type: {"schema": {"type": "string"}}},
            }),
            None => json!({"description": "Success"}),
        };
        let mut entry = json!({
            "summary": operation.summary,
            "parameters": parameters,
            "security": security,
            "responses": {
                "2XX": success,
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
                // The web console's session (POST /api/v1/login?cookie=true); writes
                // with it need an Origin or Sec-Fetch-Site: same-origin.
                "cookieAuth": {"type": "apiKey", "in": "cookie", "name": "rportd_session"},
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
