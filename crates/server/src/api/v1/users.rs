//! `/api/v1/users`: server-wide administrators list, create, change and delete users and
//! give them roles per project.

use std::collections::BTreeMap;

use axum::extract::{Path, State as StateExtractor};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{
    ApiError, Authenticated, ClientIp, JsonBody, RequestBody, State, data, time_json,
};
use crate::auth::users::{UserChange, UserError, UserView, Users};
use crate::domain::audit::{Actor, Event};
use crate::domain::names::ADMIN_GROUP;
use crate::domain::permissions::{AuthUser, Role};

pub fn roles_json(roles: &BTreeMap<String, Role>) -> Value {
    roles
        .iter()
        .map(|(project, role)| (project.clone(), json!(role.as_str())))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn user_json(user: &UserView) -> Value {
    json!({
        "username": user.username,
        "admin": user.is_admin,
        // RPort's shape: administrators are the users in group "Administrators".
        "groups": if user.is_admin { vec![ADMIN_GROUP] } else { Vec::new() },
        "roles": roles_json(&user.roles),
        "source": user.source.as_str(),
        "created_at": time_json(user.created_at),
    })
}

pub fn user_error(err: UserError) -> ApiError {
    let detail = err.to_string();
    match err {
        UserError::Invalid(_) => {
            ApiError::bad_request("ERR_CODE_INVALID_REQUEST", "Invalid user", detail)
        }
        UserError::Exists(_) => ApiError::new(
            StatusCode::CONFLICT,
            "ERR_CODE_ALREADY_EXIST",
            "User exists",
            detail,
        ),
        UserError::NotFound(_) => ApiError::new(
            StatusCode::NOT_FOUND,
            "ERR_CODE_USER_NOT_FOUND",
            "User not found",
            detail,
        ),
        UserError::ReadOnly { .. } => ApiError::new(
            StatusCode::CONFLICT,
            "ERR_CODE_USER_READ_ONLY",
            "User kept in the configuration",
            detail,
        ),
        UserError::LastAdmin(_) => ApiError::new(
            StatusCode::CONFLICT,
            "ERR_CODE_LAST_ADMIN",
            "Last administrator",
            detail,
        ),
        UserError::Store(err) => ApiError::internal(err),
    }
}

fn require_admin(user: &AuthUser) -> Result<(), ApiError> {
    user.require_server_admin("managing users")
        .map_err(ApiError::forbidden)
}

/// `admin` and RPort's `groups` say the same thing; together they must agree.
fn admin_flag(admin: Option<bool>, groups: Option<Vec<String>>) -> Result<Option<bool>, ApiError> {
    let from_groups = match groups {
        None => None,
        Some(groups) => {
            if let Some(other) = groups.iter().find(|g| *g != ADMIN_GROUP) {
                return Err(ApiError::bad_request(
                    "ERR_CODE_INVALID_REQUEST",
                    "Unknown group",
                    format!(
                        "group {other:?} means nothing here: only {ADMIN_GROUP:?} (a server-wide administrator); give project roles with \"roles\""
                    ),
                ));
            }
            Some(!groups.is_empty())
        }
    };
    match (admin, from_groups) {
        (Some(a), Some(g)) if a != g => Err(ApiError::bad_request(
            "ERR_CODE_INVALID_REQUEST",
            "Contradicting request",
            "\"admin\" and \"groups\" disagree",
        )),
        (a, g) => Ok(a.or(g)),
    }
}

fn describe_roles(roles: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = roles.iter().map(|(p, r)| format!("{p}={r}")).collect();
    format!("roles [{}]", parts.join(", "))
}

async fn audit(
    state: &crate::api::AppState,
    actor: &Actor,
    action: &'static str,
    name: &str,
    detail: String,
) {
    let event = Event {
        action,
        resource: name,
        project: None,
        success: true,
        detail,
    };
    state.audit.record(actor, event).await;
}

/// `GET /api/v1/users`
pub async fn list(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    params: crate::api::Params,
) -> Result<Response, ApiError> {
    use crate::api::list_options::{ListOptions, ListSpec, WHOLE_UNLESS_ASKED};
    // RPort takes no list options here; paging is ours, the rest is refused.
    const LIST: ListSpec = ListSpec {
        page: Some(WHOLE_UNLESS_ASKED),
        ..ListSpec::NONE
    };
    require_admin(&user)?;
    let options = ListOptions::parse(&params.0, &LIST)?;
    let users = Users::new(state.store.as_ref(), &state.config.api)
        .list()
        .await
        .map_err(ApiError::internal)?;
    let page = options.page.of(users);
    Ok(data(Value::Array(page.iter().map(user_json).collect())))
}

/// `GET /api/v1/users/{username}`
pub async fn get_one(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&user)?;
    Users::new(state.store.as_ref(), &state.config.api)
        .get(&name)
        .await
        .map_err(ApiError::internal)?
        .map(|u| data(user_json(&u)))
        .ok_or_else(|| user_error(UserError::NotFound(name)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    username: String,
    password: String,
    admin: Option<bool>,
    groups: Option<Vec<String>>,
    #[serde(default)]
    roles: BTreeMap<String, String>,
}

impl RequestBody for NewUser {
    const SHAPE: &'static str = r#"{"username", "password", "admin": BOOL, "roles": {"PROJECT": "viewer"|"tunnels"|"admin"}}"#;
}

/// `POST /api/v1/users` with `{"username", "password", "admin"?, "groups"?, "roles"?}`.
pub async fn create(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    ClientIp(ip): ClientIp,
    body: JsonBody<NewUser>,
) -> Result<Response, ApiError> {
    require_admin(&user)?;
    let body = body.parse()?;
    let is_admin = admin_flag(body.admin, body.groups)?.unwrap_or(false);
    let detail = format!("admin {is_admin}, {}", describe_roles(&body.roles));
    let created = Users::new(state.store.as_ref(), &state.config.api)
        .create(&body.username, &body.password, is_admin, body.roles)
        .await
        .map_err(user_error)?;
    tracing::info!(user = %created.username, by = %user.username, "API user created");
    audit(
        &state,
        &Actor::user(&user.username, ip),
        "user.create",
        &created.username,
        detail,
    )
    .await;
    Ok((StatusCode::CREATED, data(user_json(&created))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    password: Option<String>,
    admin: Option<bool>,
    groups: Option<Vec<String>>,
    roles: Option<BTreeMap<String, String>>,
}

impl RequestBody for UserUpdate {
    const SHAPE: &'static str =
        r#"any of {"password", "admin": BOOL, "roles": {"PROJECT": "viewer"|"tunnels"|"admin"}}"#;
}

/// `PUT /api/v1/users/{username}` with any of `{"password", "admin", "groups", "roles"}`;
/// `roles` replaces all of the user's roles.
pub async fn update(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    ClientIp(ip): ClientIp,
    Path(name): Path<String>,
    body: JsonBody<UserUpdate>,
) -> Result<Response, ApiError> {
    require_admin(&user)?;
    let body = body.parse()?;
    let is_admin = admin_flag(body.admin, body.groups)?;
    let mut changes = Vec::new();
    if body.password.is_some() {
        changes.push("password".to_owned());
    }
    if let Some(admin) = is_admin {
        changes.push(format!("admin {admin}"));
    }
    if let Some(roles) = &body.roles {
        changes.push(describe_roles(roles));
    }
    let change = UserChange {
        password: body.password,
        is_admin,
        roles: body.roles,
    };
    let updated = Users::new(state.store.as_ref(), &state.config.api)
        .update(&name, change)
        .await
        .map_err(user_error)?;
    tracing::info!(user = %name, by = %user.username, "API user changed");
    audit(
        &state,
        &Actor::user(&user.username, ip),
        "user.update",
        &name,
        changes.join(", "),
    )
    .await;
    Ok(data(user_json(&updated)))
}

/// `DELETE /api/v1/users/{username}`: its API tokens and login tokens stop working at once.
pub async fn delete(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    ClientIp(ip): ClientIp,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&user)?;
    Users::new(state.store.as_ref(), &state.config.api)
        .delete(&name)
        .await
        .map_err(user_error)?;
    tracing::info!(user = %name, by = %user.username, "API user deleted");
    audit(
        &state,
        &Actor::user(&user.username, ip),
        "user.delete",
        &name,
        String::new(),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
