//! `/api/v1/users`: server-wide administrators list, create, change and delete users and
//! give them roles per project.

use std::collections::BTreeMap;

use axum::extract::{Path, State as StateExtractor};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{
    ApiError, Authenticated, ClientIp, FormOrJsonBody, JsonBody, RequestBody, State, data,
    time_json,
};
use crate::auth::user_groups::{UserGroups, split_groups};
use crate::auth::users::{RportUserFields, UserChange, UserError, UserView, Users};
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

/// `groups`: the user's user groups; administrators are those in "Administrators".
fn user_json(user: &UserView, groups: &[String]) -> Value {
    let admin_group = user.is_admin.then(|| ADMIN_GROUP.to_owned());
    let groups: Vec<String> = admin_group
        .into_iter()
        .chain(groups.iter().cloned())
        .collect();
    json!({
        "username": user.username,
        "admin": user.is_admin,
        "groups": groups,
        "roles": roles_json(&user.roles),
        "source": user.source.as_str(),
        "created_at": time_json(user.created_at),
        "password_expired": user.password_expired,
        "two_fa_send_to": user.two_fa_send_to,
    })
}

pub fn user_error(err: UserError) -> ApiError {
    let detail = err.to_string();
    match err {
        UserError::Invalid(_) => {
            ApiError::bad_request("ERR_CODE_INVALID_REQUEST", "Invalid user", detail)
        }
        // RPort answers 400 for a taken name.
        UserError::Exists(_) => ApiError::bad_request(
            "ERR_CODE_ALREADY_EXIST",
            "Another user with this username already exists",
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

/// `admin` and RPort's group `Administrators` say the same thing; together they must
/// agree. Returns the admin flag to set and the other groups to set, `None` for "keep".
fn admin_flag(
    admin: Option<bool>,
    groups: Option<Vec<String>>,
) -> Result<(Option<bool>, Option<Vec<String>>), ApiError> {
    let (from_groups, others) = match groups {
        None => (None, None),
        Some(groups) => {
            let (is_admin, others) = split_groups(groups).map_err(|reason| {
                ApiError::bad_request("ERR_CODE_INVALID_REQUEST", "Invalid group", reason)
            })?;
            (Some(is_admin), Some(others))
        }
    };
    match (admin, from_groups) {
        (Some(a), Some(g)) if a != g => Err(ApiError::bad_request(
            "ERR_CODE_INVALID_REQUEST",
            "Contradicting request",
            "\"admin\" and \"groups\" disagree",
        )),
        (a, g) => Ok((a.or(g), others)),
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

/// The user groups `username` belongs to, besides `Administrators`.
async fn groups_of(state: &crate::api::AppState, username: &str) -> Result<Vec<String>, ApiError> {
    let mut all = UserGroups::new(state.store.as_ref())
        .memberships(&state.config.api)
        .await
        .map_err(ApiError::internal)?;
    Ok(all.remove(username).unwrap_or_default())
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
    let groups = UserGroups::new(state.store.as_ref())
        .memberships(&state.config.api)
        .await
        .map_err(ApiError::internal)?;
    let page = options.page.of(users);
    let json = page.iter().map(|u| {
        let of_user = groups
            .get(&u.username)
            .map(Vec::as_slice)
            .unwrap_or_default();
        user_json(u, of_user)
    });
    Ok(data(Value::Array(json.collect())))
}

/// `GET /api/v1/users/{username}`
pub async fn get_one(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&user)?;
    let found = Users::new(state.store.as_ref(), &state.config.api)
        .get(&name)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| user_error(UserError::NotFound(name)))?;
    let groups = groups_of(&state, &found.username).await?;
    Ok(data(user_json(&found, &groups)))
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
    /// RPort's: the user must choose a new password at its first login.
    #[serde(default)]
    password_expired: bool,
    /// RPort's: where a second factor would be sent; kept, not used.
    #[serde(default)]
    two_fa_send_to: String,
}

impl RequestBody for NewUser {
    const SHAPE: &'static str = r#"{"username", "password", "admin": BOOL, "roles": {"PROJECT": "viewer"|"tunnels"|"admin"}, "password_expired": BOOL, "two_fa_send_to"}"#;
}

/// `POST /api/v1/users` with `{"username", "password", "admin"?, "groups"?, "roles"?,
/// "password_expired"?, "two_fa_send_to"?}` as JSON or a form: 201 without a body, as
/// RPort answers.
pub async fn create(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    ClientIp(ip): ClientIp,
    body: FormOrJsonBody<NewUser>,
) -> Result<StatusCode, ApiError> {
    require_admin(&user)?;
    let body = body.parse()?;
    let (is_admin, groups) = admin_flag(body.admin, body.groups)?;
    let is_admin = is_admin.unwrap_or(false);
    let groups = groups.unwrap_or_default();
    let detail = format!("admin {is_admin}, {}", describe_roles(&body.roles));
    let created = Users::new(state.store.as_ref(), &state.config.api)
        .create_with(
            &body.username,
            &body.password,
            is_admin,
            body.roles,
            RportUserFields {
                password_expired: body.password_expired,
                two_fa_send_to: body.two_fa_send_to,
            },
        )
        .await
        .map_err(user_error)?;
    UserGroups::new(state.store.as_ref())
        .set_members(&created.username, &groups)
        .await
        .map_err(ApiError::internal)?;
    tracing::info!(user = %created.username, by = %user.username, "API user created");
    audit(
        &state,
        &Actor::user(&user.username, ip),
        "user.create",
        &created.username,
        detail,
    )
    .await;
    Ok(StatusCode::CREATED)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    password: Option<String>,
    admin: Option<bool>,
    groups: Option<Vec<String>>,
    roles: Option<BTreeMap<String, String>>,
    /// RPort's rename; empty keeps the name.
    username: Option<String>,
    password_expired: Option<bool>,
    two_fa_send_to: Option<String>,
}

impl RequestBody for UserUpdate {
    const SHAPE: &'static str = r#"any of {"username", "password", "admin": BOOL, "roles": {"PROJECT": "viewer"|"tunnels"|"admin"}, "password_expired": BOOL, "two_fa_send_to"}"#;
}

/// `PUT /api/v1/users/{username}` with any of `{"username", "password", "admin",
/// "groups", "roles", "password_expired", "two_fa_send_to"}`; `roles` replaces all of the
/// user's roles, `username` renames. 204, as RPort answers; 400 when nothing changes.
pub async fn update(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    ClientIp(ip): ClientIp,
    Path(name): Path<String>,
    body: JsonBody<UserUpdate>,
) -> Result<StatusCode, ApiError> {
    require_admin(&user)?;
    let body = body.parse()?;
    let (is_admin, groups) = admin_flag(body.admin, body.groups)?;
    let mut changes = Vec::new();
    let new_name = body.username.filter(|name| !name.is_empty());
    if let Some(new_name) = new_name.as_ref().filter(|new_name| **new_name != name) {
        changes.push(format!("renamed to {new_name}"));
    }
    if body.password.is_some() {
        changes.push("password".to_owned());
    }
    if let Some(expired) = body.password_expired {
        changes.push(format!("password_expired {expired}"));
    }
    if body.two_fa_send_to.is_some() {
        changes.push("two_fa_send_to".to_owned());
    }
    if let Some(admin) = is_admin {
        changes.push(format!("admin {admin}"));
    }
    if let Some(roles) = &body.roles {
        changes.push(describe_roles(roles));
    }
    if let Some(groups) = &groups {
        changes.push(format!("groups [{}]", groups.join(", ")));
    }
    let change = UserChange {
        password: body.password,
        is_admin,
        roles: body.roles,
        username: new_name,
        password_expired: body.password_expired,
        two_fa_send_to: body.two_fa_send_to,
    };
    let renamed_to = change.username.clone();
    if change.is_empty(&name) {
        if groups.is_none() {
            return Err(ApiError::bad_request(
                "ERR_CODE_INVALID_REQUEST",
                "nothing to change",
                format!("expected {}", UserUpdate::SHAPE),
            ));
        }
    } else {
        Users::new(state.store.as_ref(), &state.config.api)
            .update(&name, change)
            .await
            .map_err(user_error)?;
    }
    if let Some(groups) = &groups {
        UserGroups::new(state.store.as_ref())
            .set_members(renamed_to.as_deref().unwrap_or(&name), groups)
            .await
            .map_err(ApiError::internal)?;
    }
    tracing::info!(user = %name, by = %user.username, "API user changed");
    audit(
        &state,
        &Actor::user(&user.username, ip),
        "user.update",
        &name,
        changes.join(", "),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
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
