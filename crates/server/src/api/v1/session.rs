//! Server status and login.

use axum::body::Bytes;
use axum::extract::State as StateExtractor;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use crate::api::{ApiError, Authenticated, JsonBody, Params, RequestBody, State, data};
use crate::auth::credentials::{Credentials, credentials};
use crate::auth::users::{UserChange, Users, check_password};
use crate::config::AgentAuth;

/// `GET /api/v1/status`
pub async fn status(StateExtractor(state): State, Authenticated(user): Authenticated) -> Response {
    let (connected, disconnected) = state.registry.counts();
    let server = &state.config.server;
    let clients_auth_source = match server.agent_auth {
        AgentAuth::Single { .. } => "Static Credentials",
        AgentAuth::File { .. } => "File",
        AgentAuth::None => "DB",
    };
    // What the process holds, for server admins: a leak shows as numbers that keep growing.
    let runtime = user
        .require_server_admin("reading the process's usage")
        .is_ok()
        .then(|| {
            json!({
                "tasks": tokio::runtime::Handle::current().metrics().num_alive_tasks(),
                "open_files": rport_transport::fd_limit::open_files(),
            })
        });
    let is_admin = user
        .require_server_admin("reading the cluster's nodes")
        .is_ok();
    data(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "fingerprint": state.fingerprint.to_string(),
        "connect_url": server.url,
        "clients_connected": connected,
        "clients_disconnected": disconnected,
        "clients_auth_source": clients_auth_source,
        "users_auth_source": if state.config.api.auth.is_some() { "Static Credentials" } else { "DB" },
        "used_ports": server.used_ports,
        "excluded_ports": server.excluded_ports,
        "runtime": runtime,
        "cluster": cluster_json(&state, is_admin),
    }))
}

/// This node's id and, for server admins (addresses and errors are the network's
/// insides), every node of the cluster: whether its lease runs and whether this node
/// reaches it over the peer channel (`null` until it has tried).
fn cluster_json(state: &crate::api::AppState, is_admin: bool) -> serde_json::Value {
    let this = state.cluster.node_id();
    let nodes = is_admin.then(|| {
        state
            .cluster
            .nodes()
            .iter()
            .map(|node| {
                let reach = state.peers.reachability(&node.id);
                let this_node = node.id == this;
                json!({
                    "id": node.id,
                    "this_node": this_node,
                    "peer_address": node.peer_address,
                    "public_host": node.public_host,
                    "api_address": node.api_address,
                    "alive": node.alive,
                    "reachable": if this_node { Some(true) } else { reach.as_ref().map(|r| r.reachable) },
                    "reachable_since": crate::api::time_json(reach.as_ref().map(|r| r.since)),
                    "last_error": reach.and_then(|r| r.last_error),
                })
            })
            .collect::<Vec<_>>()
    });
    json!({ "node_id": this, "nodes": nodes })
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

/// `GET|POST /api/v1/login`: basic auth or a JSON `{"username","password"}` body, returns a
/// bearer token. `token-lifetime` (seconds) sets its lifetime.
pub async fn login(
    StateExtractor(state): State,
    crate::api::ClientIp(ip): crate::api::ClientIp,
    params: Params,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (username, password) = match credentials(&headers) {
        Some(Credentials::Basic(user, password)) => (user, password),
        _ if !body.is_empty() => {
            let parsed: LoginBody = serde_json::from_slice(&body).map_err(|e| {
                ApiError::bad_request(
                    "ERR_CODE_INVALID_REQUEST",
                    "Invalid login request",
                    format!("expected JSON {{\"username\": ..., \"password\": ...}}: {e}"),
                )
            })?;
            (parsed.username, parsed.password)
        }
        _ => return Err(ApiError::unauthorized()),
    };
    let user = crate::api::check_login(&state, ip, &username, &password).await?;
    let event = crate::domain::audit::Event::success("login", &user.username, None);
    state
        .audit
        .record(
            &crate::domain::audit::Actor::user(&user.username, ip),
            event,
        )
        .await;
    let lifetime = super::sessions::token_lifetime(&state, &params)?;
    let used = crate::auth::api_callers::SessionUse {
        user_agent: super::sessions::user_agent(&headers),
        ip,
    };
    if state.config.api.totp_enabled {
        return super::totp::second_factor_due(&state, &user, lifetime, &used).await;
    }
    let scope = crate::auth::api_callers::TokenScope::Full;
    let token = super::sessions::open(&state, &user, lifetime, scope, &used).await?;
    Ok(data(json!({ "token": token, "two_fa": null })))
}

/// `DELETE /api/v1/logout`: revokes the bearer token the request carries, at once and
/// for good (also across restarts).
pub async fn logout(
    StateExtractor(state): State,
    crate::api::ClientIp(ip): crate::api::ClientIp,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let Some(Credentials::Bearer(token)) = credentials(&headers) else {
        return Err(ApiError::bad_request(
            "ERR_CODE_INVALID_REQUEST",
            "Nothing to log out",
            "logout revokes the bearer token sent with it; basic auth has no session",
        ));
    };
    let Some((username, jti)) = state
        .auth
        .revoke(&token)
        .await
        .map_err(ApiError::internal)?
    else {
        return Err(ApiError::unauthorized());
    };
    state
        .cluster
        .publish(crate::cluster::topic::TOKEN_REVOKED, &jti)
        .await;
    let event = crate::domain::audit::Event::success("logout", &username, None);
    state
        .audit
        .record(&crate::domain::audit::Actor::user(&username, ip), event)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/me`: who the caller is, what it may do and how it authenticated.
pub async fn me(Authenticated(user): Authenticated) -> Response {
    data(json!({
        "username": user.username,
        "admin": user.is_admin,
        "roles": super::users::roles_json(&user.roles),
        "api_token": user.api_token,
        "scope": if user.read_only { "read" } else { "read+write" },
        "project": user.project,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    old_password: String,
    new_password: String,
}

impl RequestBody for PasswordChange {
    const SHAPE: &'static str = r#"{"old_password", "new_password"}"#;
}

/// `PUT /api/v1/me` with `{"old_password", "new_password"}`: changes the caller's own
/// password (users kept in the store; `[api] auth` is changed in the configuration).
pub async fn change_own_password(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    crate::api::ClientIp(ip): crate::api::ClientIp,
    body: JsonBody<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    let body = body.parse()?;
    if user.api_token {
        return Err(ApiError::forbidden("API tokens cannot change passwords"));
    }
    if let Err(err) = check_password(&body.new_password) {
        return Err(ApiError::bad_request(
            "ERR_CODE_PASSWORD_TOO_SHORT",
            "Password too short",
            err.to_string(),
        ));
    }
    // The old password is asked for again, so a stolen session token cannot lock out the user.
    crate::api::check_login(&state, ip, &user.username, &body.old_password).await?;
    let change = UserChange {
        password: Some(body.new_password),
        ..Default::default()
    };
    Users::new(state.store.as_ref(), &state.config.api)
        .update(&user.username, change)
        .await
        .map_err(super::users::user_error)?;
    let event = crate::domain::audit::Event::success("user.password", &user.username, None);
    state
        .audit
        .record(
            &crate::domain::audit::Actor::user(&user.username, ip),
            event,
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}
