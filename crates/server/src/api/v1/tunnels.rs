//! Tunnel endpoints: open one on a client, close it, list them.

use axum::extract::{Path, State as StateExtractor};
use axum::http::StatusCode;
use axum::response::Response;
use rport_protocol::ip_rules::Acl;
use rport_protocol::tunnel_spec::TunnelProtocol;
use rport_protocol::tunnel_spec::{self, DEFAULT_REMOTE_HOST};
use rport_store::TunnelFilter;
use serde_json::{Value, json};
use std::time::Duration;

use super::access::check_client_access;
use crate::api::list_options::{ListOptions, ListSpec, WHOLE_UNLESS_ASKED};
use crate::domain::permissions::Role;

use crate::api::{
    ApiError, Authenticated, ClientIp, JsonBody, Params, RequestBody, State, data, time_json,
};
use crate::domain::audit::{Actor, Event};
use crate::domain::secrets::Secret;
use crate::tunnels::port_pool::PoolError;
use crate::tunnels::{
    CheckError, MAX_AUTO_CLOSE, MAX_IDLE_TIMEOUT_MINUTES, ProxyRequest, TunnelError, TunnelInfo,
    TunnelRequest, scheme_for_port,
};

/// RPort's limit on `scheme`.
const MAX_SCHEME_LEN: usize = 15;

/// RPort's default idle timeout; the upper bounds are the tunnels' own.
const DEFAULT_IDLE_TIMEOUT_MINUTES: u32 = 5;

/// A tunnel in RPort's shape (ports as strings, `auto_close` in nanoseconds as Go
/// serialises a Duration) plus its lifecycle fields and counters.
/// The proxy's basic auth password is never shown (RPort returned it in clear).
pub fn tunnel_json(tunnel: &TunnelInfo, tunnel_url: &str) -> Value {
    let record = &tunnel.record;
    let auto_close_at = (record.options.auto_close_secs > 0).then(|| {
        record.created_at + chrono::Duration::seconds(record.options.auto_close_secs as i64)
    });
    json!({
        "id": record.id,
        "client_id": record.agent_id,
        "name": record.name,
        "protocol": record.protocol,
        "lhost": record.lhost,
        "lport": record.lport.to_string(),
        "lport_random": record.lport_random,
        "rhost": record.rhost,
        "rport": record.rport.to_string(),
        "scheme": record.scheme,
        "acl": record.options.acl,
        "idle_timeout_minutes": record.options.idle_timeout_minutes,
        "auto_close": record.options.auto_close_secs.saturating_mul(1_000_000_000),
        "auto_close_at": time_json(auto_close_at),
        "check_port": record.options.check_port,
        "http_proxy": record.options.http_proxy,
        "host_header": record.options.host_header.as_deref().unwrap_or_default(),
        "auth_user": record.options.auth_user.as_deref().unwrap_or_default(),
        "auth_password": Value::Null,
        "tunnel_url": tunnel_url,
        "owner": record.created_by,
        "created_by": record.created_by,
        "created_at": time_json(Some(record.created_at)),
        "status": record.status,
        "closed_at": time_json(record.closed_at),
        "close_reason": record.close_reason,
        "last_active_at": time_json(record.last_active_at),
        "active_connections": tunnel.active_connections,
        "connections": record.counters.connections,
        "connections_refused": record.counters.refused,
        "bytes_in": record.counters.bytes_in,
        "bytes_out": record.counters.bytes_out,
    })
}

/// Go's `strconv.ParseBool`, which RPort uses for boolean parameters.
fn parse_bool(name: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(ApiError::bad_request(
            "ERR_CODE_INVALID_REQUEST",
            format!("Invalid {name}"),
            format!("{name}={other:?} is not a boolean: use true or false"),
        )),
    }
}

/// `http_proxy`, `host_header`, `auth_user`, `auth_password`: checked together, as each
/// only means something with the others.
fn parse_http_proxy(
    params: &Params,
    scheme: Option<&str>,
    protocol: TunnelProtocol,
) -> Result<Option<ProxyRequest>, ApiError> {
    let given = |name: &str| params.get(name).filter(|v| !v.is_empty());
    let invalid = |detail: String| {
        ApiError::bad_request(
            "ERR_CODE_INVALID_REQUEST",
            "Invalid HTTP proxy options",
            detail,
        )
    };
    let enabled = match given("http_proxy") {
        None => false,
        Some(value) => parse_bool("http_proxy", value)?,
    };
    if !enabled {
        if let Some(name) = ["host_header", "auth_user", "auth_password"]
            .into_iter()
            .find(|name| given(name).is_some())
        {
            return Err(invalid(format!("{name} needs http_proxy=true")));
        }
        return Ok(None);
    }
    if !matches!(scheme, Some("http" | "https")) {
        return Err(invalid(format!(
            "http_proxy needs scheme http or https (the device's web server speaks one of them); got {}",
            scheme.map_or("none".to_owned(), |s| format!("{s:?}"))
        )));
    }
    if protocol != TunnelProtocol::Tcp {
        return Err(invalid("http_proxy needs protocol tcp".into()));
    }
    let host_header = given("host_header").map(str::to_owned);
    if let Some(host) = &host_header
        && (host.len() > 255
            || http::HeaderValue::from_str(host).is_err()
            || host.contains(['/', ' ']))
    {
        return Err(invalid(format!("host_header {host:?} is not a host name")));
    }
    let auth = match (given("auth_user"), given("auth_password")) {
        (None, None) => None,
        (Some(user), Some(password)) => {
            if user.contains(':') {
                return Err(invalid("auth_user may not contain ':'".into()));
            }
            Some((user.to_owned(), Secret::new(password)))
        }
        _ => return Err(invalid("auth_user and auth_password go together".into())),
    };
    Ok(Some(ProxyRequest { host_header, auth }))
}

fn invalid_acl(err: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("ERR_CODE_INVALID_ACL", "Invalid ACL", format!("acl: {err}"))
}

fn parse_idle_timeout(params: &Params) -> Result<u32, ApiError> {
    let minutes = params.get("idle-timeout-minutes").filter(|m| !m.is_empty());
    let skip = match params.get("skip-idle-timeout").filter(|s| !s.is_empty()) {
        Some(skip) => parse_bool("skip-idle-timeout", skip)?,
        None => false,
    };
    match (minutes, skip) {
        (Some(_), true) => Err(ApiError::bad_request(
            "ERR_CODE_INVALID_IDLE_TIMEOUT",
            "Conflicting idle timeout",
            "give either idle-timeout-minutes or skip-idle-timeout=true, not both",
        )),
        (None, true) => Ok(0),
        (None, false) => Ok(DEFAULT_IDLE_TIMEOUT_MINUTES),
        (Some(text), false) => match text.parse::<u32>() {
            Ok(minutes) if minutes <= MAX_IDLE_TIMEOUT_MINUTES => Ok(minutes),
            _ => Err(ApiError::bad_request(
                "ERR_CODE_INVALID_IDLE_TIMEOUT",
                "Invalid idle timeout",
                format!(
                    "idle-timeout-minutes={text:?}: expected whole minutes from 0 to {MAX_IDLE_TIMEOUT_MINUTES} (0 = never)"
                ),
            )),
        },
    }
}

fn parse_auto_close(params: &Params) -> Result<Option<Duration>, ApiError> {
    let Some(text) = params.get("auto-close").filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    match rport_protocol::duration::parse_duration(text) {
        Some(d) if d.is_zero() => Ok(None),
        Some(d) if d <= MAX_AUTO_CLOSE => Ok(Some(d)),
        _ => Err(ApiError::bad_request(
            "ERR_CODE_INVALID_REQUEST",
            "Invalid auto-close",
            format!(
                "auto-close={text:?}: expected a duration such as 20m, 1m30s or 1h, at most 744h"
            ),
        )),
    }
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
    ClientIp(ip): ClientIp,
    Path(agent_id): Path<String>,
    params: Params,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    check_client_access(&state, &user, &agent_id, Role::Tunnels, "opening tunnels")?;
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
        Some(local) => {
            Some(tunnel_spec::parse_local_endpoint(local).map_err(|e| invalid_spec("local", e))?)
        }
    };
    let protocol: TunnelProtocol = match params.get("protocol").filter(|p| !p.is_empty()) {
        None => TunnelProtocol::Tcp,
        Some(protocol) => protocol.parse().map_err(|e| invalid_spec("protocol", e))?,
    };
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
    let idle_timeout_minutes = parse_idle_timeout(&params)?;
    let auto_close = parse_auto_close(&params)?;
    // An `acl` that is present but empty is refused, not read as "no ACL": RPort's web UI
    // sends `acl=` when it could not learn the operator's address, meaning "only me", and
    // opening that tunnel to everyone would be the worst reading of it.
    let acl = match params.get("acl") {
        None => None,
        Some(acl) if acl.trim().is_empty() => {
            return Err(ApiError::bad_request(
                "ERR_CODE_INVALID_ACL",
                "Empty ACL",
                "acl is empty: give the addresses or networks allowed to connect, or leave \
                 acl out for a tunnel open to everyone",
            ));
        }
        Some(acl) => Some(Acl::parse(acl).map_err(invalid_acl)?),
    };
    let check_port = match params.get("check_port").filter(|c| !c.is_empty()) {
        None => true,
        Some(value) => parse_bool("check_port", value)?,
    };
    let effective_scheme = scheme
        .clone()
        .or_else(|| scheme_for_port(remote.port).map(str::to_owned));
    let http_proxy = parse_http_proxy(&params, effective_scheme.as_deref(), protocol)?;
    let request = TunnelRequest {
        agent_id: agent_id.clone(),
        local,
        remote,
        protocol,
        scheme,
        name: params.get("name").unwrap_or_default().to_owned(),
        created_by: user.username,
        acl,
        idle_timeout_minutes,
        auto_close,
        check_port,
        http_proxy,
    };
    let actor = Actor::user(&request.created_by, ip);
    let target = format!("{}:{}", request.remote.host, request.remote.port);
    let created = state.tunnels.create(request).await;
    audit_creation(&state, &actor, &agent_id, &target, &created).await;
    let host = crate::api::public_host(&state, &headers);
    created
        .map(|tunnel| {
            data(tunnel_json(
                &tunnel,
                &state.tunnels.tunnel_url(&tunnel.record, &host),
            ))
        })
        .map_err(creation_error)
}

/// Records a tunnel creation, made or refused, on either API face.
pub async fn audit_creation(
    state: &crate::api::AppState,
    actor: &Actor,
    agent_id: &str,
    target: &str,
    created: &Result<TunnelInfo, TunnelError>,
) {
    let event = match created {
        Ok(tunnel) => Event {
            action: "tunnel.create",
            resource: &tunnel.record.id,
            project: Some(&tunnel.record.project),
            success: true,
            detail: format!(
                "{}:{} -> client {agent_id} {target}",
                tunnel.record.lhost, tunnel.record.lport
            ),
        },
        Err(err) => Event {
            action: "tunnel.create",
            resource: agent_id,
            project: None,
            success: false,
            detail: format!("to {target}: {err}"),
        },
    };
    state.audit.record_for_client(actor, event, agent_id).await;
}

/// The API's answer when a tunnel could not be created, on both faces.
pub fn creation_error(err: TunnelError) -> ApiError {
    match err {
        TunnelError::AgentNotConnected(id) => ApiError::new(
            StatusCode::NOT_FOUND,
            "ERR_CODE_CLIENT_NOT_FOUND",
            "Client not found",
            format!("client {id:?} is unknown or not connected"),
        ),
        TunnelError::Port(PoolError::NotAllowed(port)) => ApiError::bad_request(
            "ERR_CODE_INVALID_REQUEST",
            "Local port not allowed",
            format!(
                "Local port {port} is not among allowed ports (used_ports minus excluded_ports)."
            ),
        ),
        TunnelError::Port(PoolError::InUse(port)) => ApiError::new(
            StatusCode::CONFLICT,
            "ERR_CODE_LOCAL_PORT_IN_USE",
            "Local port in use",
            format!("Local port {port} already in use."),
        ),
        TunnelError::Port(PoolError::Exhausted) => ApiError::new(
            StatusCode::CONFLICT,
            "ERR_CODE_NO_FREE_PORT",
            "No free port",
            "every allowed port (used_ports minus excluded_ports) is in use",
        ),
        TunnelError::Port(err @ PoolError::NotAnAddress(_)) => {
            ApiError::bad_request("ERR_CODE_INVALID_REQUEST", "Invalid local", err.to_string())
        }
        TunnelError::Port(err @ PoolError::Bind { .. }) => ApiError::new(
            StatusCode::CONFLICT,
            "ERR_CODE_UNABLE_TO_START_TUNNEL",
            "Unable to start tunnel",
            err.to_string(),
        ),
        TunnelError::Check(CheckError::NotAllowed(detail)) => ApiError::bad_request(
            "ERR_CODE_TUNNEL_NOT_ALLOWED",
            "Tunnel destination is not allowed by client configuration",
            detail,
        ),
        TunnelError::Check(CheckError::RemotePortNotOpen(detail)) => ApiError::bad_request(
            "ERR_CODE_REMOTE_PORT_NOT_OPEN",
            "Remote port not open",
            detail,
        ),
        TunnelError::Check(err @ CheckError::NoAnswer(_)) => ApiError::new(
            StatusCode::CONFLICT,
            "ERR_CODE_UNABLE_TO_START_TUNNEL",
            "Client did not answer",
            err.to_string(),
        ),
        TunnelError::Exists(id) => ApiError::bad_request(
            "ERR_CODE_TUNNEL_EXIST",
            "Tunnel already exists",
            format!("tunnel {id} of this client already uses this local port"),
        ),
        TunnelError::ToPortExists(id) => ApiError::bad_request(
            "ERR_CODE_TUNNEL_TO_PORT_EXIST",
            "Tunnel to this port already exists",
            format!(
                "tunnel {id} of this client already leads to this target with an overlapping protocol and the same ACL"
            ),
        ),
        err => ApiError::internal(err),
    }
}

/// `DELETE /api/v1/clients/{id}/tunnels/{tunnel_id}`
pub async fn delete(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    ClientIp(ip): ClientIp,
    Path((agent_id, tunnel_id)): Path<(String, String)>,
    params: Params,
) -> Result<StatusCode, ApiError> {
    check_client_access(&state, &user, &agent_id, Role::Tunnels, "closing tunnels")?;
    let force = match params.get("force").filter(|f| !f.is_empty()) {
        None => false,
        Some(force) => parse_bool("force", force)?,
    };
    match state.tunnels.close(&agent_id, &tunnel_id, force).await {
        Ok(()) => {
            audit_close(&state, &Actor::user(&user.username, ip), &tunnel_id).await;
            Ok(StatusCode::NO_CONTENT)
        }
        Err(TunnelError::Busy(count)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "ERR_CODE_TUNNEL_HAS_ACTIVE_CONNECTIONS",
            "Tunnel in use",
            format!("tunnel has {count} active connection(s); add force=true to close it anyway"),
        )),
        Err(TunnelError::NotFound(_)) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "ERR_CODE_TUNNEL_NOT_FOUND",
            "Tunnel not found",
            format!("client {agent_id:?} has no open tunnel {tunnel_id:?}"),
        )),
        Err(err) => Err(ApiError::internal(err)),
    }
}

/// `GET /api/v1/tunnels` takes these list options; RPort returns every tunnel, so paging
/// applies only when asked for.
const LIST: ListSpec = ListSpec {
    filters: &["client_id", "status"],
    sorts: &[],
    fields: None,
    page: Some(WHOLE_UNLESS_ASKED),
};

/// `GET /api/v1/tunnels`: open tunnels; `filter[status]=closed` (or any status) lists past
/// ones from the store; `filter[agent_id]` narrows to one client; `page[limit]` and
/// `page[offset]` page it (all by default, as RPort), with the total in `meta.count`.
pub async fn list(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    params: Params,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let mut options = ListOptions::parse(&params.0, &LIST)?;
    // `status` picks where tunnels are read from (below); the rest filter what was read.
    options.filters.retain(|f| f.columns != ["status"]);
    let host = crate::api::public_host(&state, &headers);
    // One plain id narrows the reading; anything else is matched after it.
    let client = params
        .get("filter[client_id]")
        .filter(|c| !c.is_empty() && !c.contains([',', '*', '(']));
    let tunnels = match params.get("filter[status]").filter(|s| !s.is_empty()) {
        None | Some("live") => state
            .tunnels
            .list_live(client, state.cluster.has_others())
            .await
            .map_err(ApiError::internal)?,
        Some(status) => {
            let wanted: Vec<&str> = status.split(',').map(str::trim).collect();
            let filter = TunnelFilter {
                agent_id: client.map(str::to_owned),
                ..Default::default()
            };
            state
                .tunnels
                .list_all(&filter)
                .await
                .map_err(ApiError::internal)?
                .into_iter()
                .filter(|t| wanted.contains(&t.record.status.as_str()))
                .collect()
        }
    };
    let visible: Vec<&TunnelInfo> = tunnels
        .iter()
        .filter(|t| user.reads(&t.record.project))
        .filter(|t| options.matches(|_| Some(json!(t.record.agent_id))))
        .collect();
    let count = visible.len();
    let page: Vec<Value> = options
        .page
        .of(visible)
        .iter()
        .map(|t| {
            let host = crate::api::host_of_tunnel(&state, &t.record, &host);
            tunnel_json(t, &state.tunnels.tunnel_url(&t.record, &host))
        })
        .collect();
    Ok(crate::api::listing(page, count))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclChange {
    acl: Option<String>,
}

impl RequestBody for AclChange {
    const SHAPE: &'static str = r#"{"acl": "ADDRESSES"} or {"acl": null}"#;
}

/// `PUT /api/v1/clients/{id}/tunnels/{tunnel_id}/acl` with `{"acl":"..."}` or
/// `{"acl":null}`: takes effect for the next connection.
pub async fn set_acl(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    ClientIp(ip): ClientIp,
    Path((agent_id, tunnel_id)): Path<(String, String)>,
    body: JsonBody<AclChange>,
) -> Result<StatusCode, ApiError> {
    check_client_access(
        &state,
        &user,
        &agent_id,
        Role::Tunnels,
        "changing tunnel ACLs",
    )?;
    let body = body.parse()?;
    let acl = match body.acl.as_deref().filter(|a| !a.trim().is_empty()) {
        None => None,
        Some(acl) => Some(Acl::parse(acl).map_err(invalid_acl)?),
    };
    let shown = acl
        .as_ref()
        .map_or_else(|| "none".to_owned(), ToString::to_string);
    match state.tunnels.set_acl(&agent_id, &tunnel_id, acl).await {
        Ok(()) => {
            let project = state.registry.project_of(&agent_id);
            let event = Event {
                action: "tunnel.acl",
                resource: &tunnel_id,
                project: project.as_deref(),
                success: true,
                detail: format!("acl {shown}"),
            };
            state
                .audit
                .record_for_client(&Actor::user(&user.username, ip), event, &agent_id)
                .await;
            Ok(StatusCode::NO_CONTENT)
        }
        Err(TunnelError::NotFound(_)) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "ERR_CODE_TUNNEL_NOT_FOUND",
            "Tunnel not found",
            format!("client {agent_id:?} has no live tunnel {tunnel_id:?}"),
        )),
        Err(err) => Err(ApiError::internal(err)),
    }
}

/// Records an operator closing a tunnel, on either API face.
pub async fn audit_close(state: &crate::api::AppState, actor: &Actor, tunnel_id: &str) {
    let (project, agent_id) = match state.tunnels.get(tunnel_id).await {
        Ok(Some(tunnel)) => (Some(tunnel.record.project), Some(tunnel.record.agent_id)),
        _ => (None, None),
    };
    let event = Event {
        action: "tunnel.close",
        resource: tunnel_id,
        project: project.as_deref(),
        success: true,
        detail: "deleted".to_owned(),
    };
    match agent_id {
        Some(agent_id) => state.audit.record_for_client(actor, event, &agent_id).await,
        None => state.audit.record(actor, event).await,
    }
}
