//! `/api/v1/clients/{client_id}/stored-tunnels`: saved tunnel definitions of one client
//! (RPort's tunnel templates), and `.../{id}/start`, which opens one with one call.
//!
//! Listing takes RPort's options (read by `list_options`, run in the store):
//! `filter[name|scheme|remote_ip|remote_port]=v1,v2` (`*` a wildcard, `and(...)`,
//! `or(...)`, `filter[*]`), `sort=[-]created_at|name|scheme|remote_ip|remote_port`,
//! `page[limit]` (default 10, at most 100), `page[offset]`. Reading needs a role in the client's
//! project; saving, changing, deleting and starting need `tunnels`, as opening does.

use std::net::IpAddr;

use axum::extract::{Path, State as StateExtractor};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use rport_protocol::ip_rules::Acl;
use rport_store::{StoredTunnelField, StoredTunnelFilter, StoredTunnelRecord};
use serde::Deserialize;
use serde_json::{Value, json};

use super::access::{check_client_access, client_not_found};
use super::store_list::{self, invalid};
use crate::api::list_options::ListSpec;
use crate::api::{
    ApiError, AppState, Authenticated, ClientIp, JsonBody, Params, RequestBody, State, data,
    time_json,
};
use crate::domain::audit::{Actor, Event};
use crate::domain::permissions::{AuthUser, Role};

/// Bounds on what one stored tunnel keeps; RPort has none.
const MAX_NAME_LEN: usize = 200;
const MAX_SCHEME_LEN: usize = 15;
const MAX_REMOTE_IP_LEN: usize = 255;
const MAX_FURTHER_OPTIONS_LEN: usize = 8 * 1024;

/// RPort's list options of stored tunnels (`server/clients/storedtunnels`).
const LIST: ListSpec = ListSpec {
    filters: &["name", "scheme", "remote_ip", "remote_port"],
    sorts: &["created_at", "name", "scheme", "remote_ip", "remote_port"],
    fields: None,
    page: Some(store_list::TEN_UNLESS_ASKED),
};

/// The store field of a column `LIST` names.
fn store_field(name: &str) -> Option<StoredTunnelField> {
    Some(match name {
        "created_at" => StoredTunnelField::CreatedAt,
        "name" => StoredTunnelField::Name,
        "scheme" => StoredTunnelField::Scheme,
        "remote_ip" => StoredTunnelField::RemoteIp,
        "remote_port" => StoredTunnelField::RemotePort,
        _ => return None,
    })
}

/// RPort's list options for stored tunnels; pure.
fn parse_list(params: &Params) -> Result<StoredTunnelFilter, ApiError> {
    let (options, page) = store_list::parse(params, &LIST)?;
    Ok(StoredTunnelFilter {
        matches: store_list::matches(&options.filters, store_field)?,
        sort: store_list::sorts(&options.sorts, store_field)?,
        limit: page.limit,
        offset: page.offset,
    })
}

/// RPort's `StoredTunnel` body. `id` and `created_at` are read-only: accepted, ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredTunnelBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    scheme: Option<String>,
    #[serde(default)]
    remote_ip: Option<String>,
    #[serde(default)]
    remote_port: Option<i64>,
    #[serde(default)]
    public_port: Option<i64>,
    #[serde(default)]
    acl: Option<String>,
    #[serde(default)]
    further_options: Option<Value>,
    #[serde(default, rename = "id")]
    _id: Option<Value>,
    #[serde(default, rename = "created_at")]
    _created_at: Option<Value>,
}

impl RequestBody for StoredTunnelBody {
    const SHAPE: &'static str = r#"{"name": "NAME", "scheme": "ssh", "remote_ip": "127.0.0.1", "remote_port": 22, "public_port": 20022, "acl": "10.0.0.0/8", "further_options": {}}"#;
}

fn bad_field(field: &str, why: impl Into<String>) -> ApiError {
    invalid(format!("Invalid {field}"), why)
}

fn port_field(field: &str, port: Option<i64>) -> Result<Option<i64>, ApiError> {
    match port {
        Some(p) if !(1..=65535).contains(&p) => Err(bad_field(
            field,
            format!("{field} must be a port from 1 to 65535, not {p}"),
        )),
        other => Ok(other),
    }
}

fn text_field(field: &str, text: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    match text {
        Some(t) if t.chars().count() > max => Err(bad_field(
            field,
            format!("{field} is at most {max} characters"),
        )),
        other => Ok(other),
    }
}

/// Checks a body into a record (without id, agent and creation time).
fn record_from(body: StoredTunnelBody) -> Result<StoredTunnelRecord, ApiError> {
    let scheme = match text_field("scheme", body.scheme, MAX_SCHEME_LEN) {
        Err(_) => {
            return Err(ApiError::bad_request(
                "ERR_CODE_URI_SCHEME_LENGTH_EXCEED",
                "Scheme too long",
                format!("scheme may be at most {MAX_SCHEME_LEN} characters"),
            ));
        }
        Ok(s) => s,
    };
    let acl = body.acl.filter(|a| !a.trim().is_empty());
    if let Some(acl) = &acl {
        Acl::parse(acl).map_err(|err| {
            ApiError::bad_request("ERR_CODE_INVALID_ACL", "Invalid ACL", err.to_string())
        })?;
    }
    let further_options = match body.further_options {
        None | Some(Value::Null) => None,
        Some(options @ Value::Object(_)) => {
            let text = options.to_string();
            if text.len() > MAX_FURTHER_OPTIONS_LEN {
                return Err(bad_field(
                    "further_options",
                    format!("further_options is at most {MAX_FURTHER_OPTIONS_LEN} bytes of JSON"),
                ));
            }
            Some(text)
        }
        Some(_) => {
            return Err(bad_field(
                "further_options",
                "further_options is a JSON object",
            ));
        }
    };
    Ok(StoredTunnelRecord {
        id: String::new(),
        agent_id: String::new(),
        created_at: Utc::now(),
        name: text_field("name", body.name, MAX_NAME_LEN)?.unwrap_or_default(),
        scheme,
        remote_ip: text_field("remote_ip", body.remote_ip, MAX_REMOTE_IP_LEN)?,
        remote_port: port_field("remote_port", body.remote_port)?,
        public_port: port_field("public_port", body.public_port)?,
        acl,
        further_options,
    })
}

fn stored_json(t: &StoredTunnelRecord) -> Value {
    let further_options = t
        .further_options
        .as_deref()
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .unwrap_or(Value::Null);
    json!({
        "id": t.id,
        "created_at": time_json(Some(t.created_at)),
        "name": t.name,
        "scheme": t.scheme,
        "remote_ip": t.remote_ip,
        "remote_port": t.remote_port,
        "public_port": t.public_port,
        "acl": t.acl,
        "further_options": further_options,
    })
}

fn stored_not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "ERR_CODE_NOT_FOUND",
        "Stored tunnel not found",
        format!("cannot find stored tunnel by id {id:?}"),
    )
}

/// The client must exist and the caller have `needed` in its project.
fn check_client(
    state: &AppState,
    user: &AuthUser,
    agent_id: &str,
    needed: Role,
    doing: &str,
) -> Result<(), ApiError> {
    if state.registry.project_of(agent_id).is_none() {
        return Err(client_not_found(agent_id));
    }
    check_client_access(state, user, agent_id, needed, doing)
}

async fn audit(
    state: &AppState,
    user: &AuthUser,
    ip: IpAddr,
    action: &'static str,
    agent_id: &str,
    id: &str,
) {
    let project = state.registry.project_of(agent_id);
    let event = Event::success(action, id, project.as_deref());
    state
        .audit
        .record_for_client(&Actor::user(&user.username, ip), event, agent_id)
        .await;
}

/// `GET /api/v1/clients/{client_id}/stored-tunnels`
pub async fn list(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    Path(agent_id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    check_client(
        &state,
        &user,
        &agent_id,
        Role::Viewer,
        "reading stored tunnels",
    )?;
    let filter = parse_list(&params)?;
    let (list, count) = state
        .store
        .list_stored_tunnels(&agent_id, &filter)
        .await
        .map_err(ApiError::internal)?;
    let data: Vec<Value> = list.iter().map(stored_json).collect();
    Ok(crate::api::listing(data, count))
}

/// `POST /api/v1/clients/{client_id}/stored-tunnels`: 200 with the saved tunnel, as
/// RPort's code answers (its document says 201).
pub async fn create(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    ClientIp(ip): ClientIp,
    Path(agent_id): Path<String>,
    body: JsonBody<StoredTunnelBody>,
) -> Result<Response, ApiError> {
    check_client(&state, &user, &agent_id, Role::Tunnels, "saving tunnels")?;
    let mut record = record_from(body.parse()?)?;
    record.id = uuid::Uuid::new_v4().to_string();
    record.agent_id = agent_id.clone();
    // Milliseconds, as the store keeps it, so that the answer is what a listing shows.
    record.created_at =
        chrono::DateTime::from_timestamp_millis(record.created_at.timestamp_millis())
            .unwrap_or(record.created_at);
    let saved = state
        .store
        .insert_stored_tunnel(&record)
        .await
        .map_err(ApiError::internal)?;
    if !saved {
        return Err(client_not_found(&agent_id));
    }
    audit(
        &state,
        &user,
        ip,
        "storedtunnel.create",
        &agent_id,
        &record.id,
    )
    .await;
    Ok(data(stored_json(&record)))
}

/// `PUT /api/v1/clients/{client_id}/stored-tunnels/{stored_tunnel_id}`: replaces all of
/// it (RPort has no partial update).
pub async fn update(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    ClientIp(ip): ClientIp,
    Path((agent_id, id)): Path<(String, String)>,
    body: JsonBody<StoredTunnelBody>,
) -> Result<Response, ApiError> {
    check_client(
        &state,
        &user,
        &agent_id,
        Role::Tunnels,
        "changing stored tunnels",
    )?;
    let mut record = record_from(body.parse()?)?;
    record.id = id.clone();
    record.agent_id = agent_id.clone();
    let store = &state.store;
    if !store
        .update_stored_tunnel(&record)
        .await
        .map_err(ApiError::internal)?
    {
        return Err(stored_not_found(&id));
    }
    let saved = store
        .get_stored_tunnel(&agent_id, &id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| stored_not_found(&id))?;
    audit(&state, &user, ip, "storedtunnel.update", &agent_id, &id).await;
    Ok(data(stored_json(&saved)))
}

/// `DELETE /api/v1/clients/{client_id}/stored-tunnels/{stored_tunnel_id}`
pub async fn delete(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    ClientIp(ip): ClientIp,
    Path((agent_id, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    check_client(
        &state,
        &user,
        &agent_id,
        Role::Tunnels,
        "deleting stored tunnels",
    )?;
    if !state
        .store
        .delete_stored_tunnel(&agent_id, &id)
        .await
        .map_err(ApiError::internal)?
    {
        return Err(stored_not_found(&id));
    }
    audit(&state, &user, ip, "storedtunnel.delete", &agent_id, &id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The keys of `further_options` that `start` passes on, each as the query parameter of
/// `PUT /clients/{id}/tunnels` it names (RPort's UI spells some with underscores).
const FURTHER_OPTIONS: [(&str, &str); 12] = [
    ("protocol", "protocol"),
    ("idle-timeout-minutes", "idle-timeout-minutes"),
    ("idle_timeout_minutes", "idle-timeout-minutes"),
    ("skip-idle-timeout", "skip-idle-timeout"),
    ("skip_idle_timeout", "skip-idle-timeout"),
    ("auto-close", "auto-close"),
    ("auto_close", "auto-close"),
    ("check_port", "check_port"),
    ("http_proxy", "http_proxy"),
    ("host_header", "host_header"),
    ("auth_user", "auth_user"),
    ("auth_password", "auth_password"),
];

/// The query of `PUT /clients/{id}/tunnels` that opens what `stored` defines; pure.
fn open_params(stored: &StoredTunnelRecord) -> Result<Params, ApiError> {
    let port = stored.remote_port.ok_or_else(|| {
        invalid(
            "Stored tunnel has no remote_port",
            format!("stored tunnel {:?} names no remote_port to open", stored.id),
        )
    })?;
    let remote = match stored.remote_ip.as_deref().filter(|ip| !ip.is_empty()) {
        Some(ip) => format!("{ip}:{port}"),
        None => port.to_string(),
    };
    let mut pairs = vec![("remote".to_owned(), remote)];
    let optional = [
        ("local", stored.public_port.map(|p| p.to_string())),
        ("scheme", stored.scheme.clone()),
        ("acl", stored.acl.clone()),
        (
            "name",
            Some(stored.name.clone()).filter(|name| !name.is_empty()),
        ),
    ];
    for (key, value) in optional {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            pairs.push((key.to_owned(), value));
        }
    }
    let options: serde_json::Map<String, Value> = stored
        .further_options
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    for (key, param) in FURTHER_OPTIONS {
        let value = match options.get(key) {
            None | Some(Value::Null) => continue,
            Some(Value::String(text)) => text.clone(),
            Some(Value::Bool(b)) => b.to_string(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => {
                return Err(bad_field(
                    "further_options",
                    format!("further_options.{key} is a string, number or boolean"),
                ));
            }
        };
        pairs.push((param.to_owned(), value));
    }
    Ok(Params(pairs))
}

/// `POST /api/v1/clients/{client_id}/stored-tunnels/{stored_tunnel_id}/start`: opens the
/// stored tunnel as `PUT /clients/{client_id}/tunnels` with its definition would (the
/// same handler, checks, answer and audit entry), on the node holding the agent.
pub async fn start(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    ClientIp(ip): ClientIp,
    Path((agent_id, id)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    check_client(&state, &user, &agent_id, Role::Tunnels, "opening tunnels")?;
    let stored = state
        .store
        .get_stored_tunnel(&agent_id, &id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| stored_not_found(&id))?;
    let params = open_params(&stored)?;
    super::tunnels::create(
        StateExtractor(state),
        Authenticated(user),
        ClientIp(ip),
        Path(agent_id),
        params,
        headers,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(query: &str) -> Params {
        Params(serde_urlencoded::from_str(query).expect("a query"))
    }

    #[test]
    fn rports_list_options_read_into_a_filter() {
        let filter = parse_list(&params(
            "filter[scheme]=http,https&filter[name|remote_ip]=web*&sort=-name&page[limit]=5&page[offset]=2",
        ))
        .expect("valid");
        assert_eq!(filter.matches.len(), 2);
        assert_eq!(
            filter.matches[1].fields,
            [StoredTunnelField::Name, StoredTunnelField::RemoteIp]
        );
        assert_eq!((filter.limit, filter.offset), (5, 2));
        assert_eq!(parse_list(&params("")).expect("valid").limit, 10);
        let every = parse_list(&params("filter[*]=and(web*,443)")).expect("valid");
        assert_eq!(every.matches.len(), 2, "one match per and() value");
        assert_eq!(every.matches[0].fields.len(), 4, "every filterable column");
        for bad in [
            "filter[created_at]=x",
            "filter[acl]=x",
            "sort=acl",
            "page[limit]=101",
            "page[size]=1",
        ] {
            assert!(parse_list(&params(bad)).is_err(), "{bad}");
        }
    }

    fn stored(further_options: Option<&str>) -> StoredTunnelRecord {
        StoredTunnelRecord {
            id: "s1".into(),
            agent_id: "a1".into(),
            created_at: Utc::now(),
            name: "box".into(),
            scheme: Some("ssh".into()),
            remote_ip: Some("192.168.1.2".into()),
            remote_port: Some(22),
            public_port: Some(20022),
            acl: Some("10.0.0.0/8".into()),
            further_options: further_options.map(str::to_owned),
        }
    }

    #[test]
    fn a_stored_tunnel_opens_with_the_query_put_tunnels_takes() {
        let opened = open_params(&stored(Some(
            r#"{"idle_timeout_minutes": 30, "http_proxy": false, "auto-close": "1h", "colour": "red"}"#,
        )))
        .expect("valid");
        let expected: Vec<(String, String)> = [
            ("remote", "192.168.1.2:22"),
            ("local", "20022"),
            ("scheme", "ssh"),
            ("acl", "10.0.0.0/8"),
            ("name", "box"),
            ("idle-timeout-minutes", "30"),
            ("auto-close", "1h"),
            ("http_proxy", "false"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(opened.0, expected);
        let mut bare = stored(None);
        bare.remote_ip = None;
        bare.public_port = None;
        assert_eq!(open_params(&bare).expect("valid").0[0].1, "22");
        bare.remote_port = None;
        assert!(open_params(&bare).is_err());
        assert!(open_params(&stored(Some(r#"{"protocol": ["tcp"]}"#))).is_err());
    }
}
