//! Server status and login.

use axum::extract::State as StateExtractor;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::api::{
    ApiError, Authenticated, FormOrJsonBody, JsonBody, Params, RequestBody, State, data,
};
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
        // Credentials rportd manages itself can be changed through the API; those of
        // the configuration cannot.
        "clients_auth_mode": if matches!(server.agent_auth, AgentAuth::None) { "Read Write" } else { "Read Only" },
        "used_ports": server.used_ports,
        "excluded_ports": server.excluded_ports,
        "password_min_length": crate::auth::users::MIN_PASSWORD_LEN,
        // The HTTPS proxy for tunnels is always there (a self-signed certificate when
        // none is configured).
        "tunnel_proxy_enabled": true,
        "tunnel_host": server.tunnel_host.clone().unwrap_or_default(),
        // Not offered (yet): no second factor, no pre-authenticating proxy header, no
        // Caddy, no monitoring.
        "two_fa_enabled": state.config.api.totp_enabled,
        "two_fa_delivery_method": if state.config.api.totp_enabled { "totp_authenticator_app" } else { "" },
        "auth_header": false,
        "caddy_integration_enabled": false,
        "monitoring_enabled": false,
        "runtime": runtime,
        "cluster": cluster_json(&state, is_admin),
    }))
}

/// Agents connected through each node, by node id: those with a session here, and
/// those the store says another node holds.
fn agents_held(state: &crate::api::AppState) -> std::collections::HashMap<String, usize> {
    let this = state.cluster.node_id();
    let mut held = std::collections::HashMap::new();
    state.registry.with_agents(|agents| {
        for entry in agents.values() {
            let holder = match (&entry.session, &entry.record.owner_node) {
                (Some(_), _) => this,
                (None, Some(node)) if entry.record.connected => node.as_str(),
                (None, _) => continue,
            };
            *held.entry(holder.to_owned()).or_insert(0) += 1;
        }
    });
    held
}

/// This node's id and, for server admins (addresses and errors are the network's
/// insides), every node of the cluster: whether its lease runs, when it last renewed it,
/// how many agents it holds, and whether this node reaches it over the peer channel
/// (`null` until it has tried).
fn cluster_json(state: &crate::api::AppState, is_admin: bool) -> serde_json::Value {
    let this = state.cluster.node_id();
    let held = if is_admin {
        agents_held(state)
    } else {
        Default::default()
    };
    let lease = chrono::Duration::from_std(crate::cluster::LEASE).unwrap_or_default();
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
                    "started_at": crate::api::time_json(Some(node.started_at)),
                    // The lease runs for `LEASE` from a renewal.
                    "last_seen": crate::api::time_json(Some(node.lease_until - lease)),
                    "clients_connected": held.get(&node.id).copied().unwrap_or(0),
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
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    username: String,
    password: String,
    /// RPort's: sets a new password once the current one is checked (how a user whose
    /// password has expired gets in again).
    #[serde(default)]
    new_password: Option<String>,
}

impl RequestBody for LoginBody {
    const SHAPE: &'static str = r#"{"username", "password", "new_password"?}"#;
}

/// `GET|POST /api/v1/login`: basic auth, or a `{"username","password","new_password"?}`
/// body as JSON or a form (RPort's login page posts one); returns a bearer token.
/// `token-lifetime` (seconds) sets its lifetime. With `cookie=true` (the console) the
/// token goes into the `HttpOnly` session cookie instead of the body.
pub async fn login(
    StateExtractor(state): State,
    crate::api::ClientIp(ip): crate::api::ClientIp,
    cookie: crate::api::console::CookieMode,
    params: Params,
    headers: HeaderMap,
    body: FormOrJsonBody<LoginBody>,
) -> Result<Response, ApiError> {
    let (username, password, new_password) = match credentials(&headers) {
        Some(Credentials::Basic(user, password)) => (user, password, None),
        _ if !body.is_empty() => {
            let parsed = body.parse()?;
            (parsed.username, parsed.password, parsed.new_password)
        }
        _ => return Err(ApiError::unauthorized()),
    };
    let mut user = crate::api::check_login(&state, ip, &username, &password).await?;
    if let Some(new_password) = new_password.filter(|p| !p.is_empty()) {
        set_own_password(&state, ip, &user.username, new_password, Some(false)).await?;
        user.password_expired = false;
    }
    if user.password_expired {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "ERR_CODE_PASSWORD_EXPIRED",
            "password has expired, please change your password",
            "send the current password with a new_password to POST /api/v1/login",
        ));
    }
    let event = crate::domain::audit::Event::success("login", &user.username, None);
    state
        .audit
        .record(
            &crate::domain::audit::Actor::user(&user.username, ip),
            event,
        )
        .await;
    let lifetime = super::sessions::token_lifetime(&state, &params, &cookie)?;
    let used = crate::auth::api_callers::SessionUse {
        user_agent: super::sessions::user_agent(&headers),
        ip,
    };
    if state.config.api.totp_enabled {
        return super::totp::second_factor_due(&state, &user, lifetime, &used).await;
    }
    let scope = crate::auth::api_callers::TokenScope::Full;
    let token = super::sessions::open(&state, &user, lifetime, scope, &used).await?;
    Ok(cookie.reply(token, lifetime))
}

/// `DELETE /api/v1/logout`: revokes the bearer token the request carries (or the
/// console's session cookie), at once and for good (also across restarts); the cookie
/// is cleared.
pub async fn logout(
    StateExtractor(state): State,
    crate::api::ClientIp(ip): crate::api::ClientIp,
    cookie: crate::api::console::CookieMode,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = match credentials(&headers) {
        Some(Credentials::Bearer(token)) => Some(token),
        Some(Credentials::Basic(..)) => None,
        None => crate::api::console::session_cookie(&headers),
    };
    let Some(token) = token else {
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
    let mut response = StatusCode::NO_CONTENT.into_response();
    cookie.clear(&mut response);
    Ok(response)
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

/// `PUT /api/v1/me`, RPort's fields: each one empty or left out keeps what is there.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileChange {
    #[serde(default, alias = "new_password")]
    password: Option<String>,
    #[serde(default)]
    old_password: Option<String>,
    /// A new user name for the caller.
    #[serde(default)]
    username: Option<String>,
    /// Kept, not used: rportd sends no second factor.
    #[serde(default)]
    two_fa_send_to: Option<String>,
}

impl RequestBody for ProfileChange {
    const SHAPE: &'static str = r#"any of {"password" (or "new_password") with "old_password", "username", "two_fa_send_to"}"#;
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|value| !value.is_empty())
}

/// Sets `username`'s password (and `password_expired`), checked against the rules,
/// and records it in the audit log.
async fn set_own_password(
    state: &crate::api::AppState,
    ip: std::net::IpAddr,
    username: &str,
    password: String,
    password_expired: Option<bool>,
) -> Result<(), ApiError> {
    if let Err(err) = check_password(&password) {
        return Err(ApiError::bad_request(
            "ERR_CODE_PASSWORD_TOO_SHORT",
            "Your password is too short",
            err.to_string(),
        ));
    }
    let change = UserChange {
        password: Some(password),
        password_expired,
        ..Default::default()
    };
    Users::new(state.store.as_ref(), &state.config.api)
        .update(username, change)
        .await
        .map_err(super::users::user_error)?;
    let event = crate::domain::audit::Event::success("user.password", username, None);
    state
        .audit
        .record(&crate::domain::audit::Actor::user(username, ip), event)
        .await;
    Ok(())
}

/// `PUT /api/v1/me` with any of RPort's `{"password" (alias "new_password"),
/// "old_password", "username", "two_fa_send_to"}`: 204. A new password needs the old one
/// (403 without it or with a wrong one, as RPort answers), so a stolen session token
/// cannot lock the user out. Users kept in the store only; `[api] auth` and
/// `[api] auth_file` are changed in the configuration.
pub async fn change_own_password(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    crate::api::ClientIp(ip): crate::api::ClientIp,
    body: JsonBody<ProfileChange>,
) -> Result<StatusCode, ApiError> {
    let body = body.parse()?;
    if user.api_token {
        return Err(ApiError::forbidden("API tokens cannot change the profile"));
    }
    let password = non_empty(body.password);
    let username = non_empty(body.username).filter(|name| *name != user.username);
    let two_fa_send_to = non_empty(body.two_fa_send_to);
    if password.is_none() && username.is_none() && two_fa_send_to.is_none() {
        return Err(ApiError::bad_request(
            "ERR_CODE_INVALID_REQUEST",
            "nothing to change",
            format!("expected {}", ProfileChange::SHAPE),
        ));
    }
    if let Some(password) = password {
        let Some(old_password) = non_empty(body.old_password) else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "ERR_CODE_FORBIDDEN",
                "Missing old password.",
                "a new password needs the current one in old_password",
            ));
        };
        // Counted as a failed login, so guessing it through here gets the address banned.
        if let Err(err) = crate::api::check_login(&state, ip, &user.username, &old_password).await {
            return Err(match err.status() {
                StatusCode::UNAUTHORIZED => ApiError::new(
                    StatusCode::FORBIDDEN,
                    "ERR_CODE_FORBIDDEN",
                    "Incorrect old password.",
                    "old_password is not the current password",
                ),
                _ => err,
            });
        }
        set_own_password(&state, ip, &user.username, password, None).await?;
    }
    if username.is_some() || two_fa_send_to.is_some() {
        let renamed_to = username.clone();
        let change = UserChange {
            username,
            two_fa_send_to,
            ..Default::default()
        };
        Users::new(state.store.as_ref(), &state.config.api)
            .update(&user.username, change)
            .await
            .map_err(super::users::user_error)?;
        let detail = match &renamed_to {
            Some(name) => format!("renamed to {name}"),
            None => "two_fa_send_to".to_owned(),
        };
        let event = crate::domain::audit::Event {
            action: "user.update",
            resource: &user.username,
            project: None,
            success: true,
            detail,
        };
        state
            .audit
            .record(
                &crate::domain::audit::Actor::user(&user.username, ip),
                event,
            )
            .await;
    }
    Ok(StatusCode::NO_CONTENT)
}
