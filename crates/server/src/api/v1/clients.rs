//! Agents as the API shows them, with RPort's JSON:API-like listing options:
//! `fields[clients]`, `filter[<field>]`, `sort`, `page[limit]`, `page[offset]`.

use std::cmp::Ordering;
use std::collections::HashMap;

use axum::extract::{Path, State as StateExtractor};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::access::{check_client_access, client_not_found};
use super::tunnels::tunnel_json;
use crate::domain::permissions::Role;

use crate::api::{ApiError, Authenticated, Params, State, data, time_json};
use crate::domain::registry::{AgentEntry, DeleteError};

/// Every field a client object has, in the order it is shown.
const FIELDS: &[&str] = &[
    "id",
    "name",
    "os",
    "os_arch",
    "os_family",
    "os_kernel",
    "os_full_name",
    "os_version",
    "cpu_model_name",
    "num_cpus",
    "mem_total",
    "timezone",
    "hostname",
    "ipv4",
    "ipv6",
    "tags",
    "version",
    "address",
    "client_auth_id",
    "project",
    "connection_state",
    "connected_at",
    "disconnected_at",
    "tunnels",
];

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

/// One field of a client; `tunnels` comes from the tunnel manager.
fn field(entry: &AgentEntry, name: &str) -> Option<Value> {
    let record = &entry.record;
    let info = &record.info;
    Some(match name {
        "id" => json!(record.id),
        "name" => json!(info.name),
        "os" => json!(info.os),
        "os_arch" => json!(info.os_arch),
        "os_family" => json!(info.os_family),
        "os_kernel" => json!(info.os_kernel),
        "os_full_name" => json!(info.os_full_name),
        "os_version" => json!(info.os_version),
        "cpu_model_name" => json!(info.cpu_model_name),
        "num_cpus" => json!(info.num_cpus),
        "mem_total" => json!(info.mem_total),
        "timezone" => json!(info.timezone),
        "hostname" => json!(info.hostname),
        "ipv4" => json!(info.ipv4),
        "ipv6" => json!(info.ipv6),
        "tags" => json!(info.tags),
        "version" => json!(info.version),
        "address" => json!(record.address),
        "client_auth_id" => json!(record.auth_id),
        "project" => json!(record.project),
        "connection_state" => json!(if entry.is_connected() {
            "connected"
        } else {
            "disconnected"
        }),
        "connected_at" => time_json(record.connected_at),
        "disconnected_at" => time_json(if entry.is_connected() {
            None
        } else {
            record.disconnected_at
        }),
        _ => return None,
    })
}

fn client_json(
    entry: &AgentEntry,
    fields: &[&str],
    tunnels: &HashMap<String, Vec<Value>>,
) -> Value {
    let mut object = Map::new();
    for &name in fields {
        let value = if name == "tunnels" {
            Value::Array(tunnels.get(&entry.record.id).cloned().unwrap_or_default())
        } else {
            field(entry, name).unwrap_or(Value::Null)
        };
        object.insert(name.to_owned(), value);
    }
    Value::Object(object)
}

/// Live tunnels as the API shows them, by client; `public_host` for their URLs.
async fn tunnels_by_client(
    state: &crate::api::AppState,
    public_host: &str,
) -> Result<HashMap<String, Vec<Value>>, ApiError> {
    let mut map: HashMap<String, Vec<Value>> = HashMap::new();
    let live = state
        .tunnels
        .list_live(None, state.cluster.has_others())
        .await
        .map_err(ApiError::internal)?;
    for tunnel in live {
        let host = crate::api::host_of_tunnel(state, &tunnel.record, public_host);
        let url = state.tunnels.tunnel_url(&tunnel.record, &host);
        map.entry(tunnel.record.agent_id.clone())
            .or_default()
            .push(tunnel_json(&tunnel, &url));
    }
    Ok(map)
}

fn invalid(code: &'static str, title: &str, detail: String) -> ApiError {
    ApiError::bad_request(code, title, detail)
}

/// `*` matches any run of characters; comparison ignores case.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.to_lowercase().chars().collect();
    let text: Vec<char> = text.to_lowercase().chars().collect();
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pattern.len() && pattern[p] != '*' && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

fn value_matches(value: &Value, pattern: &str) -> bool {
    match value {
        Value::Array(items) => items.iter().any(|item| value_matches(item, pattern)),
        Value::String(text) => wildcard_match(pattern, text),
        Value::Null => pattern.is_empty(),
        other => wildcard_match(pattern, &other.to_string()),
    }
}

fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.to_lowercase().cmp(&y.to_lowercase()),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (x, y) => x.to_string().cmp(&y.to_string()),
    }
}

struct Listing {
    fields: Vec<&'static str>,
    filters: Vec<(&'static str, Vec<String>)>,
    sort: Vec<(&'static str, bool)>,
    limit: usize,
    offset: usize,
}

fn known_field(name: &str) -> Option<&'static str> {
    FIELDS.iter().copied().find(|f| *f == name)
}

fn parse_listing(params: &Params) -> Result<Listing, ApiError> {
    let mut listing = Listing {
        fields: FIELDS.to_vec(),
        filters: Vec::new(),
        sort: vec![("name", false), ("id", false)],
        limit: DEFAULT_LIMIT,
        offset: 0,
    };
    for (key, value) in &params.0 {
        if key == "fields[clients]" {
            listing.fields = value
                .split(',')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(|f| {
                    known_field(f).ok_or_else(|| {
                        invalid(
                            "ERR_CODE_INVALID_FIELDS",
                            "Invalid fields",
                            format!("unknown field {f:?} in fields[clients]"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?;
        } else if let Some(name) = key
            .strip_prefix("filter[")
            .and_then(|k| k.strip_suffix(']'))
        {
            let name = known_field(name)
                .filter(|f| *f != "tunnels")
                .ok_or_else(|| {
                    invalid(
                        "ERR_CODE_UNSUPPORTED_FILTER",
                        "Invalid filter",
                        format!("cannot filter clients by {name:?}"),
                    )
                })?;
            let patterns = value.split(',').map(|v| v.trim().to_owned()).collect();
            listing.filters.push((name, patterns));
        } else if key == "sort" {
            listing.sort = value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    let (name, descending) = match s.strip_prefix('-') {
                        Some(rest) => (rest, true),
                        None => (s, false),
                    };
                    known_field(name)
                        .filter(|f| *f != "tunnels")
                        .map(|f| (f, descending))
                        .ok_or_else(|| {
                            invalid(
                                "ERR_CODE_INVALID_SORT",
                                "Invalid sort",
                                format!("cannot sort clients by {name:?}"),
                            )
                        })
                })
                .collect::<Result<_, _>>()?;
        } else if key == "page[limit]" {
            listing.limit = value
                .parse()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    invalid(
                        "ERR_CODE_INVALID_PAGE",
                        "Invalid page",
                        format!(
                            "page[limit] must be a number from 1 to {MAX_LIMIT}, got {value:?}"
                        ),
                    )
                })?;
        } else if key == "page[offset]" {
            listing.offset = value.parse().map_err(|_| {
                invalid(
                    "ERR_CODE_INVALID_PAGE",
                    "Invalid page",
                    format!("page[offset] must be a number, got {value:?}"),
                )
            })?;
        }
    }
    Ok(listing)
}

/// `GET /api/v1/clients`
pub async fn list(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    params: Params,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let listing = parse_listing(&params)?;
    let tunnels = if listing.fields.contains(&"tunnels") {
        tunnels_by_client(&state, &crate::api::public_host(&state, &headers)).await?
    } else {
        HashMap::new()
    };
    let (count, page) = state.registry.with_agents(|clients| {
        let mut matching: Vec<(&AgentEntry, Vec<Value>)> = clients
            .values()
            // Each caller sees the devices of the projects it has a role in.
            .filter(|entry| user.reads(&entry.record.project))
            .filter(|entry| {
                listing.filters.iter().all(|(name, patterns)| {
                    field(entry, name)
                        .is_some_and(|value| patterns.iter().any(|p| value_matches(&value, p)))
                })
            })
            .map(|entry| {
                let keys = listing
                    .sort
                    .iter()
                    .map(|(name, _)| field(entry, name).unwrap_or(Value::Null))
                    .collect();
                (entry, keys)
            })
            .collect();
        matching.sort_by(|(_, a), (_, b)| {
            listing
                .sort
                .iter()
                .zip(a.iter().zip(b.iter()))
                .map(|((_, descending), (x, y))| {
                    if *descending {
                        compare(y, x)
                    } else {
                        compare(x, y)
                    }
                })
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        });
        let count = matching.len();
        let page: Vec<Value> = matching
            .iter()
            .skip(listing.offset)
            .take(listing.limit)
            .map(|(entry, _)| client_json(entry, &listing.fields, &tunnels))
            .collect();
        (count, page)
    });
    Ok(axum::Json(json!({"data": page, "meta": {"count": count}})).into_response())
}

/// `GET /api/v1/clients/{id}`
pub async fn get_one(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    Path(id): Path<String>,
    params: Params,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    check_client_access(&state, &user, &id, Role::Viewer, "reading clients")?;
    let listing = parse_listing(&params)?;
    let tunnels = tunnels_by_client(&state, &crate::api::public_host(&state, &headers)).await?;
    state
        .registry
        .with_agents(|clients| {
            clients
                .get(&id)
                .map(|entry| client_json(entry, &listing.fields, &tunnels))
        })
        .map(data)
        .ok_or_else(|| client_not_found(&id))
}

/// `DELETE /api/v1/clients/{id}`: only disconnected agents can be forgotten.
pub async fn delete(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    crate::api::ClientIp(ip): crate::api::ClientIp,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_client_access(&state, &user, &id, Role::Admin, "deleting clients")?;
    match state.tunnels.delete_agent(&id).await {
        Ok(project) => {
            let event = crate::domain::audit::Event::success("client.delete", &id, Some(&project));
            state
                .audit
                .record_for_client(
                    &crate::domain::audit::Actor::user(&user.username, ip),
                    event,
                    &id,
                )
                .await;
            Ok(StatusCode::NO_CONTENT)
        }
        Err(DeleteError::NotFound) => Err(client_not_found(&id)),
        Err(DeleteError::Connected) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "ERR_CODE_CLIENT_CONNECTED",
            "Client is connected",
            format!("client {id:?} is connected; only disconnected clients can be deleted"),
        )),
        Err(DeleteError::Store(err)) => Err(ApiError::internal(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*berlin*", "Office Berlin"));
        assert!(wildcard_match("linux", "Linux"));
        assert!(!wildcard_match("linux", "Linux2"));
        assert!(wildcard_match("my-*-1", "my-client-1"));
        assert!(wildcard_match("*", ""));
        assert!(!wildcard_match("a*b", "ac"));
    }
}
