//! Agents as the API shows them, with RPort's JSON:API-like listing options
//! (`fields[clients]`, `filter[...]`, `sort`, `page[...]`, parsed by `list_options`).

use std::collections::HashMap;

use axum::extract::{Path, State as StateExtractor};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::access::{check_client_access, client_not_found};
use super::agent_view::AgentView;
use super::tunnels::tunnel_json;
use crate::domain::permissions::Role;

use crate::api::list_options::{ListOptions, ListSpec, RPORT_PAGE};
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
    "labels",
    "version",
    "address",
    "client_auth_id",
    "project",
    "connection_state",
    "connected_at",
    "disconnected_at",
    "allowed_user_groups",
    "groups",
    "tunnels",
    "last_heartbeat_at",
    "cpu_family",
    "cpu_model",
    "cpu_vendor",
    "os_virtualization_system",
    "os_virtualization_role",
    "labels",
    "allowed_user_groups",
    "updates_status",
    "ext_ip_addresses",
    // RPort's name for `ext_ip_addresses` in `fields[clients]`; shown under the other.
    "ip_addresses",
    "client_configuration",
];

/// What `filter[...]` takes: RPort's filterable fields, and every field we show except
/// `tunnels`. A field an agent does not report matches only an empty value.
const FILTERS: &[&str] = &[
    "id",
    "name",
    "os",
    "os_arch",
    "os_family",
    "os_kernel",
    "os_full_name",
    "os_version",
    "os_virtualization_system",
    "os_virtualization_role",
    "cpu_family",
    "cpu_model",
    "cpu_model_name",
    "cpu_vendor",
    "num_cpus",
    "mem_total",
    "timezone",
    "hostname",
    "ipv4",
    "ipv6",
    "tags",
    "labels",
    "version",
    "address",
    "client_auth_id",
    "allowed_user_groups",
    "groups",
    "connection_state",
    "project",
    "connected_at",
    "disconnected_at",
];

/// What `sort` takes: RPort's (`id`, `name`, `os`, `hostname`, `version`) and the other
/// single-valued fields.
const SORTS: &[&str] = &[
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
    "version",
    "address",
    "client_auth_id",
    "project",
    "connection_state",
    "connected_at",
    "disconnected_at",
];

const LIST: ListSpec = ListSpec {
    filters: FILTERS,
    sorts: SORTS,
    fields: Some(("clients", FIELDS)),
    page: Some(RPORT_PAGE),
};

/// `GET /api/v1/clients/{id}` reads only `fields[clients]`, as RPort.
const ONE: ListSpec = ListSpec {
    filters: &[],
    sorts: &[],
    fields: Some(("clients", FIELDS)),
    page: None,
};

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
        "last_heartbeat_at" => time_json(entry.last_heartbeat_at()),
        "cpu_family" => json!(info.cpu_family),
        "cpu_model" => json!(info.cpu_model),
        "cpu_vendor" => json!(info.cpu_vendor),
        "os_virtualization_system" => json!(info.os_virtualization_system),
        "os_virtualization_role" => json!(info.os_virtualization_role),
        "labels" => json!(info.labels),
        // No user groups yet: only administrators and project roles reach a client.
        "allowed_user_groups" => json!([]),
        // The agent reports no updates, and looks up no external addresses (RPort's
        // `ip_api_url`): RPort shows both as null until they are known.
        "updates_status" | "ext_ip_addresses" | "ip_addresses" => Value::Null,
        "client_configuration" => super::client_object::client_configuration(record),
        _ => return None,
    })
}

fn client_json(
    entry: &AgentEntry,
    view: &AgentView,
    fields: &[&str],
    tunnels: &HashMap<String, Vec<Value>>,
) -> Value {
    let mut object = Map::new();
    for &name in fields {
        let value = if name == "tunnels" {
            Value::Array(tunnels.get(&entry.record.id).cloned().unwrap_or_default())
        } else {
            column(entry, view, name).unwrap_or(Value::Null)
        };
        let key = if name == "ip_addresses" {
            "ext_ip_addresses"
        } else {
            name
        };
        object.insert(key.to_owned(), value);
    }
    Value::Object(object)
}

/// A client's column: the store's view over what the agent reports.
pub(super) fn column(entry: &AgentEntry, view: &AgentView, name: &str) -> Option<Value> {
    view.column(entry, name, |name| field(entry, name))
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

/// `GET /api/v1/clients`
pub async fn list(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    params: Params,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let options = ListOptions::parse(&params.0, &LIST)?;
    let fields = options.fields.clone().unwrap_or_else(|| FIELDS.to_vec());
    let tunnels = if fields.contains(&"tunnels") {
        tunnels_by_client(&state, &crate::api::public_host(&state, &headers)).await?
    } else {
        HashMap::new()
    };
    let view = AgentView::load(&state).await?;
    let (count, page) = state.registry.with_agents(|clients| {
        let mut matching: Vec<&AgentEntry> = clients
            .values()
            // Each caller sees the devices of the projects it has a role in.
            .filter(|entry| user.reads(&entry.record.project))
            .filter(|entry| options.matches(|name| column(entry, &view, name)))
            .collect();
        // By name, then id, unless asked otherwise.
        matching.sort_by(|a, b| {
            (a.record.info.name.to_lowercase(), &a.record.id)
                .cmp(&(b.record.info.name.to_lowercase(), &b.record.id))
        });
        options.sort(&mut matching, |entry, name| column(entry, &view, name));
        let count = matching.len();
        let page: Vec<Value> = options
            .page
            .of(matching)
            .into_iter()
            .map(|entry| client_json(entry, &view, &fields, &tunnels))
            .collect();
        (count, page)
    });
    Ok(crate::api::listing(page, count))
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
    let options = ListOptions::parse_retrieve(&params.0, &ONE)?;
    let fields = options.fields.unwrap_or_else(|| FIELDS.to_vec());
    let tunnels = tunnels_by_client(&state, &crate::api::public_host(&state, &headers)).await?;
    let view = AgentView::load(&state).await?;
    state
        .registry
        .with_agents(|clients| {
            clients
                .get(&id)
                .map(|entry| client_json(entry, &view, &fields, &tunnels))
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
        // 400, as RPort ("Client is active, should be disconnected").
        Err(DeleteError::Connected) => Err(ApiError::bad_request(
            "ERR_CODE_CLIENT_CONNECTED",
            "Client is active, should be disconnected",
            format!("client {id:?} is connected; only disconnected clients can be deleted"),
        )),
        Err(DeleteError::Store(err)) => Err(ApiError::internal(err)),
    }
}
