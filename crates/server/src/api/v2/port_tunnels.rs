//! API v2, JFrog Connect's port-tunnel face: `/api/v2/{project_key}/port_tunnel`. The
//! tunnels are the same as v1's; this face speaks in projects, devices and one allowed IP.

use axum::Json;
use axum::extract::{Path, State as StateExtractor};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rport_protocol::ip_rules::Acl;
use rport_protocol::tunnel_spec::{DEFAULT_REMOTE_HOST, Endpoint, TunnelProtocol};
use rport_store::{TunnelFilter, TunnelStatus};
use serde_json::{Value, json};

use crate::api::v1::tunnels::{audit_close, audit_creation, creation_error};
use crate::domain::permissions::Role;

use crate::api::{
    ApiError, BearerAuthenticated, ClientIp, JsonBody, Params, RequestBody, State, time_json,
};
use crate::domain::audit::Actor;
use crate::domain::permissions::AuthUser;
use crate::tunnels::{TunnelError, TunnelInfo, TunnelRequest};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;
/// The idle timeout of tunnels opened through v2, as v1's default.
const IDLE_TIMEOUT_MINUTES: u32 = 5;

/// v2 names for the lifecycle states.
fn status_name(status: TunnelStatus) -> &'static str {
    match status {
        TunnelStatus::Pending => "Pending",
        TunnelStatus::Opened => "Opened",
        TunnelStatus::Closed => "Closed",
        TunnelStatus::Terminated => "Terminated",
    }
}

fn port_tunnel_json(tunnel: &TunnelInfo, server_address: &str) -> Value {
    let record = &tunnel.record;
    json!({
        "port_tunnel_id": record.id,
        "device_uuid": record.agent_id,
        "port": record.rport,
        "allowed_ip": record.options.acl,
        "server_address": server_address,
        "server_port": record.lport,
        "status": status_name(record.status),
        "created_at": time_json(Some(record.created_at)),
        "closed_at": time_json(record.closed_at),
        "close_reason": record.close_reason,
        "created_by": record.created_by,
    })
}

/// 403 with the reason for a caller without `needed` in the project (whether it exists or
/// not, so nobody learns of projects they have no role in); 404 for a project that does
/// not exist.
async fn require_project(
    state: &crate::api::AppState,
    user: &AuthUser,
    key: &str,
    needed: Role,
    doing: &str,
) -> Result<(), ApiError> {
    user.require(key, needed, doing)
        .map_err(ApiError::forbidden)?;
    let projects = state
        .store
        .list_projects()
        .await
        .map_err(ApiError::internal)?;
    if projects.iter().any(|p| p.key == key) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "ERR_CODE_PROJECT_NOT_FOUND",
            "Project not found",
            format!("no project {key:?}"),
        ))
    }
}

fn device_not_found(device: &str, project: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "ERR_CODE_DEVICE_NOT_FOUND",
        "Device not found",
        format!("project {project:?} has no device {device:?}"),
    )
}

fn tunnel_not_found(id: &str, project: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "ERR_CODE_TUNNEL_NOT_FOUND",
        "Port tunnel not found",
        format!("project {project:?} has no port tunnel {id:?}"),
    )
}

#[derive(serde::Deserialize)]
pub struct NewPortTunnel {
    device_uuid: String,
    port: u16,
    #[serde(default)]
    allowed_ip: Option<String>,
}

impl RequestBody for NewPortTunnel {
    const SHAPE: &'static str =
        r#"{"device_uuid": "ID", "port": 1-65535, "allowed_ip": "ADDRESS"}"#;
}

/// `POST /api/v2/{project_key}/port_tunnel` with `{"device_uuid", "port", "allowed_ip"}`.
pub async fn open(
    StateExtractor(state): State,
    BearerAuthenticated(user): BearerAuthenticated,
    ClientIp(caller): ClientIp,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: JsonBody<NewPortTunnel>,
) -> Result<Response, ApiError> {
    require_project(
        &state,
        &user,
        &project,
        Role::Tunnels,
        "opening port tunnels",
    )
    .await?;
    let body = body.parse()?;
    if body.port == 0 {
        return Err(ApiError::bad_request(
            "ERR_CODE_INVALID_REQUEST",
            "Invalid port",
            "port must be between 1 and 65535",
        ));
    }
    if state.registry.project_of(&body.device_uuid).as_deref() != Some(project.as_str()) {
        return Err(device_not_found(&body.device_uuid, &project));
    }
    // Without allowed_ip the port opens to the caller alone.
    let allowed = body.allowed_ip.unwrap_or_else(|| caller.to_string());
    let acl = Acl::parse(&allowed).map_err(|err| {
        ApiError::bad_request(
            "ERR_CODE_INVALID_ACL",
            "Invalid allowed_ip",
            format!("allowed_ip: {err}"),
        )
    })?;
    if acl.entries().len() != 1 {
        return Err(ApiError::bad_request(
            "ERR_CODE_INVALID_ACL",
            "Invalid allowed_ip",
            "allowed_ip is one address or network; for several use API v1's acl",
        ));
    }
    let request = TunnelRequest {
        agent_id: body.device_uuid.clone(),
        local: None,
        remote: Endpoint {
            host: DEFAULT_REMOTE_HOST.to_owned(),
            port: body.port,
        },
        protocol: TunnelProtocol::Tcp,
        scheme: None,
        name: String::new(),
        created_by: user.username,
        acl: Some(acl),
        idle_timeout_minutes: IDLE_TIMEOUT_MINUTES,
        auto_close: None,
        check_port: true,
        http_proxy: None,
    };
    let actor = Actor::user(&request.created_by, caller);
    let target = format!("{}:{}", request.remote.host, request.remote.port);
    let created = state.tunnels.create(request).await;
    audit_creation(&state, &actor, &body.device_uuid, &target, &created).await;
    let tunnel = created.map_err(|err| match err {
        TunnelError::AgentNotConnected(_) => ApiError::new(
            StatusCode::CONFLICT,
            "ERR_CODE_DEVICE_OFFLINE",
            "Device offline",
            format!("device {:?} is not connected", body.device_uuid),
        ),
        other => creation_error(other),
    })?;
    let answer = json!({
        "port_tunnel_id": tunnel.record.id,
        "server_address": crate::api::public_host(&state, &headers),
        "server_port": tunnel.record.lport,
    });
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// `GET /api/v2/{project_key}/port_tunnel`: the project's tunnels, open and past, newest
/// first, `limit` (default 50, at most 500) from `offset`; the total is in `X-Total-Count`.
pub async fn list(
    StateExtractor(state): State,
    BearerAuthenticated(user): BearerAuthenticated,
    Path(project): Path<String>,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    require_project(
        &state,
        &user,
        &project,
        Role::Viewer,
        "listing port tunnels",
    )
    .await?;
    // JFrog's `limit` and `offset` page this list; RPort's list options do not apply.
    crate::api::list_options::ListOptions::parse(
        &params.0,
        &crate::api::list_options::ListSpec::NONE,
    )?;
    let limit = params
        .number("limit")?
        .unwrap_or(DEFAULT_LIMIT)
        .clamp(1, MAX_LIMIT);
    let offset = params.number("offset")?.unwrap_or(0);
    let filter = TunnelFilter {
        project: Some(project),
        ..Default::default()
    };
    let all = state
        .tunnels
        .list_all(&filter)
        .await
        .map_err(ApiError::internal)?;
    let address = crate::api::public_host(&state, &headers);
    let page: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(|tunnel| port_tunnel_json(tunnel, &address))
        .collect();
    let mut response = Json(Value::Array(page)).into_response();
    response
        .headers_mut()
        .insert("x-total-count", HeaderValue::from(all.len()));
    Ok(response)
}

async fn tunnel_in_project(
    state: &crate::api::AppState,
    user: &AuthUser,
    project: &str,
    id: &str,
    needed: Role,
    doing: &str,
) -> Result<TunnelInfo, ApiError> {
    require_project(state, user, project, needed, doing).await?;
    state
        .tunnels
        .get(id)
        .await
        .map_err(ApiError::internal)?
        .filter(|tunnel| tunnel.record.project == project)
        .ok_or_else(|| tunnel_not_found(id, project))
}

/// `GET /api/v2/{project_key}/port_tunnel/{port_tunnel_id}`
pub async fn get_one(
    StateExtractor(state): State,
    BearerAuthenticated(user): BearerAuthenticated,
    Path((project, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tunnel = tunnel_in_project(
        &state,
        &user,
        &project,
        &id,
        Role::Viewer,
        "reading port tunnels",
    )
    .await?;
    Ok(Json(port_tunnel_json(
        &tunnel,
        &crate::api::public_host(&state, &headers),
    ))
    .into_response())
}

/// `DELETE /api/v2/{project_key}/port_tunnel/{port_tunnel_id}`: closes it (`Closed`),
/// open connections included.
pub async fn close(
    StateExtractor(state): State,
    BearerAuthenticated(user): BearerAuthenticated,
    ClientIp(ip): ClientIp,
    Path((project, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let tunnel = tunnel_in_project(
        &state,
        &user,
        &project,
        &id,
        Role::Tunnels,
        "closing port tunnels",
    )
    .await?;
    if !tunnel.record.is_live() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ERR_CODE_TUNNEL_CLOSED",
            "Port tunnel already closed",
            format!(
                "port tunnel {id:?} is {}",
                status_name(tunnel.record.status)
            ),
        ));
    }
    match state
        .tunnels
        .close(&tunnel.record.agent_id, &id, true)
        .await
    {
        Ok(()) => {
            audit_close(&state, &Actor::user(&user.username, ip), &id).await;
            Ok(StatusCode::NO_CONTENT)
        }
        Err(TunnelError::NotFound(_)) => Err(tunnel_not_found(&id, &project)),
        Err(err) => Err(ApiError::internal(err)),
    }
}
