//! Tunnel endpoints: open one on a client, close it, list them.

use axum::extract::{Path, State as StateExtractor};
use axum::http::StatusCode;
use axum::response::Response;
use rport_protocol::tunnel_spec::{self, DEFAULT_LOCAL_HOST, DEFAULT_REMOTE_HOST};
use rport_store::{TunnelFilter, TunnelRecord};
use serde_json::{Value, json};

use super::{ApiError, Authenticated, Params, State, data};
use crate::port_pool::PoolError;
use crate::tunnels::{TunnelError, TunnelRequest};

/// RPort's limit on `scheme`.
const MAX_SCHEME_LEN: usize = 15;

/// RPort's tunnel parameters that later features implement. Until then they are refused
/// rather than ignored: silently dropping `acl` would expose a port the caller meant to
/// restrict.
const NOT_YET_SUPPORTED: &[&str] = &[
    "acl",
    "idle-timeout-minutes",
    "skip-idle-timeout",
    "auto-close",
    "http_proxy",
    "host_header",
    "auth_user",
    "auth_password",
];

/// A tunnel in RPort's shape (ports as strings) plus its lifecycle fields.
pub fn tunnel_json(tunnel: &TunnelRecord) -> Value {
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or(Value::Null, |t| {
            json!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        })
    };
    let mut object = json!({
        "id": tunnel.id,
        "client_id": tunnel.client_id,
        "name": tunnel.name,
        "protocol": tunnel.protocol,
        "lhost": tunnel.lhost,
        "lport": tunnel.lport.to_string(),
        "lport_random": tunnel.lport_random,
        "rhost": tunnel.rhost,
        "rport": tunnel.rport.to_string(),
        "scheme": tunnel.scheme,
        "owner": tunnel.created_by,
        "created_by": tunnel.created_by,
        "created_at": time(Some(tunnel.created_at)),
        "status": tunnel.status,
        "closed_at": time(tunnel.closed_at),
        "close_reason": tunnel.close_reason,
    });
    if let (Value::Object(target), Value::Object(options)) = (&mut object, &tunnel.options) {
        for (key, value) in options {
            target.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    object
}

fn invalid_spec(which: &str, err: tunnel_spec::SpecError) -> ApiError {
    ApiError::bad_request(
        "ERR_CODE_INVALID_REQUEST",
        format!("Invalid {which}"),
        format!("{which}: {err}"),
    )
}

/// `PUT /api/v1/clients/{id}/tunnels?remote=[HOST:]PORT[&local=[HOST:]PORT][&scheme=][&name=]`
pub async fn create(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    Path(client_id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    if let Some(name) = NOT_YET_SUPPORTED
        .iter()
        .find(|name| params.get(name).is_some())
    {
        return Err(ApiError::bad_request(
            "ERR_CODE_INVALID_REQUEST",
            "Unsupported parameter",
            format!("tunnel parameter {name:?} is not supported by this server version yet"),
        ));
    }
    let remote = params.get("remote").filter(|r| !r.is_empty()).ok_or_else(|| {
        ApiError::bad_request(
            "ERR_CODE_INVALID_REQUEST",
            "Missing remote",
            "query parameter \"remote\" is required: the target port (or host:port) on the client",
        )
    })?;
    let remote = tunnel_spec::parse_endpoint(remote, DEFAULT_REMOTE_HOST)
        .map_err(|e| invalid_spec("remote", e))?;
    let local = match params.get("local").filter(|l| !l.is_empty()) {
        None => None,
        Some(local) => Some(
            tunnel_spec::parse_endpoint(local, DEFAULT_LOCAL_HOST)
                .map_err(|e| invalid_spec("local", e))?,
        ),
    };
    match params.get("protocol").unwrap_or("tcp") {
        "tcp" | "" => {}
        other => {
            return Err(ApiError::bad_request(
                "ERR_CODE_INVALID_REQUEST",
                "Unsupported protocol",
                format!("protocol {other:?} is not supported by this server version yet; use tcp"),
            ));
        }
    }
    let scheme = params
        .get("scheme")
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    if scheme
        .as_ref()
        .is_some_and(|s| s.chars().count() > MAX_SCHEME_LEN)
    {
        return Err(ApiError::bad_request(
            "ERR_CODE_URI_SCHEME_LENGTH_EXCEED",
            "Scheme too long",
            format!("scheme may be at most {MAX_SCHEME_LEN} characters"),
        ));
    }
    let request = TunnelRequest {
        client_id: client_id.clone(),
        local,
        remote,
        scheme,
        name: params.get("name").unwrap_or_default().to_owned(),
        created_by: user.username,
    };
    match state.tunnels.create(request).await {
        Ok(record) => Ok(data(tunnel_json(&record))),
        Err(TunnelError::ClientNotConnected(id)) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "ERR_CODE_CLIENT_NOT_FOUND",
            "Client not found",
            format!("client {id:?} is unknown or not connected"),
        )),
        Err(TunnelError::Port(PoolError::NotAllowed(port))) => Err(ApiError::bad_request(
            "ERR_CODE_INVALID_REQUEST",
            "Local port not allowed",
            format!(
                "Local port {port} is not among allowed ports (used_ports minus excluded_ports)."
            ),
        )),
        Err(TunnelError::Port(PoolError::InUse(port))) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "ERR_CODE_LOCAL_PORT_IN_USE",
            "Local port in use",
            format!("Local port {port} already in use."),
        )),
        Err(TunnelError::Port(PoolError::Exhausted)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "ERR_CODE_NO_FREE_PORT",
            "No free port",
            "every allowed port (used_ports minus excluded_ports) is in use",
        )),
        Err(TunnelError::Port(err @ PoolError::Bind { .. })) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "ERR_CODE_UNABLE_TO_START_TUNNEL",
            "Unable to start tunnel",
            err.to_string(),
        )),
        Err(err) => Err(ApiError::internal(err)),
    }
}

/// `DELETE /api/v1/clients/{id}/tunnels/{tunnel_id}`
pub async fn delete(
    StateExtractor(state): State,
    _user: Authenticated,
    Path((client_id, tunnel_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    match state.tunnels.close(&client_id, &tunnel_id).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(TunnelError::NotFound(_)) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "ERR_CODE_TUNNEL_NOT_FOUND",
            "Tunnel not found",
            format!("client {client_id:?} has no open tunnel {tunnel_id:?}"),
        )),
        Err(err) => Err(ApiError::internal(err)),
    }
}

/// `GET /api/v1/tunnels`: open tunnels; `filter[status]=closed` (or any status) lists past
/// ones from the store; `filter[client_id]` narrows to one client.
pub async fn list(
    StateExtractor(state): State,
    _user: Authenticated,
    params: Params,
) -> Result<Response, ApiError> {
    let client = params.get("filter[client_id]").filter(|c| !c.is_empty());
    let tunnels = match params.get("filter[status]").filter(|s| !s.is_empty()) {
        None | Some("opened") => state.tunnels.list_open(client),
        Some(status) => {
            let wanted: Vec<&str> = status.split(',').map(str::trim).collect();
            let filter = TunnelFilter {
                client_id: client.map(str::to_owned),
                ..Default::default()
            };
            state
                .tunnels
                .list_all(&filter)
                .await
                .map_err(ApiError::internal)?
                .into_iter()
                .filter(|t| wanted.contains(&t.status.as_str()))
                .collect()
        }
    };
    Ok(data(Value::Array(
        tunnels.iter().map(tunnel_json).collect(),
    )))
}
