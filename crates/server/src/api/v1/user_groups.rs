//! `/api/v1/user-groups`: server-wide administrators list, set and delete RPort's user
//! groups, which grant their members roles in their projects (`auth::user_groups`).

use std::collections::BTreeMap;

use axum::extract::{Path, State as StateExtractor};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::api::{ApiError, Authenticated, ClientIp, JsonBody, RequestBody, State, data};
use crate::auth::user_groups::{GroupChange, GroupError, GroupView, UserGroups};
use crate::domain::audit::{Actor, Event};
use crate::domain::permissions::{AuthUser, GROUP_PERMISSIONS};

/// RPort's shape: every permission with a boolean, the restrictions or null; plus
/// rportd's `projects`.
fn group_json(group: &GroupView) -> Value {
    let permissions: Map<String, Value> = GROUP_PERMISSIONS
        .iter()
        .map(|p| ((*p).to_owned(), json!(group.permissions.contains(*p))))
        .collect();
    let restriction = |text: &Option<String>| {
        text.as_deref()
            .and_then(|t| serde_json::from_str::<Value>(t).ok())
            .unwrap_or(Value::Null)
    };
    let mut value = json!({
        "name": group.name,
        "permissions": permissions,
        "tunnels_restricted": restriction(&group.tunnels_restricted),
        "commands_restricted": restriction(&group.commands_restricted),
    });
    if let (Some(projects), Some(object)) = (&group.projects, value.as_object_mut()) {
        object.insert("projects".into(), json!(projects));
    }
    value
}

fn group_error(err: GroupError) -> ApiError {
    let detail = err.to_string();
    match err {
        GroupError::Invalid(_) => {
            ApiError::bad_request("ERR_CODE_INVALID_REQUEST", "Invalid user group", detail)
        }
        GroupError::Administrators => {
            ApiError::bad_request("ERR_CODE_INVALID_REQUEST", "Administrators group", detail)
        }
        GroupError::Store(err) => ApiError::internal(err),
    }
}

fn require_admin(user: &AuthUser) -> Result<(), ApiError> {
    user.require_server_admin("managing user groups")
        .map_err(ApiError::forbidden)
}

/// `GET /api/v1/user-groups`
pub async fn list(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
) -> Result<Response, ApiError> {
    require_admin(&user)?;
    let groups = UserGroups::new(state.store.as_ref())
        .list(&state.config.api)
        .await
        .map_err(ApiError::internal)?;
    Ok(data(Value::Array(groups.iter().map(group_json).collect())))
}

/// `GET /api/v1/user-groups/{name}`: a group never set answers as one without
/// permissions, as RPort's does.
pub async fn get_one(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&user)?;
    let group = UserGroups::new(state.store.as_ref())
        .get(&name)
        .await
        .map_err(group_error)?;
    Ok(data(group_json(&group)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupBody {
    /// RPort's group has it read-only; the path names the group.
    #[serde(default, rename = "name")]
    _name: Option<String>,
    #[serde(default)]
    permissions: Option<BTreeMap<String, bool>>,
    #[serde(default)]
    tunnels_restricted: Option<Map<String, Value>>,
    #[serde(default)]
    commands_restricted: Option<Map<String, Value>>,
    #[serde(default)]
    projects: Option<Vec<String>>,
}

impl RequestBody for GroupBody {
    const SHAPE: &'static str = r#"{"permissions": {"tunnels": BOOL, ...}, "tunnels_restricted": {...}, "commands_restricted": {...}, "projects": ["PROJECT"]}"#;
}

/// `PUT /api/v1/user-groups/{name}`: creates or replaces the group; without `projects`
/// it keeps the group's projects (the default project for a new group).
pub async fn update(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    ClientIp(ip): ClientIp,
    Path(name): Path<String>,
    body: JsonBody<GroupBody>,
) -> Result<Response, ApiError> {
    require_admin(&user)?;
    let body = body.parse()?;
    let change = GroupChange {
        permissions: body.permissions.unwrap_or_default(),
        tunnels_restricted: body
            .tunnels_restricted
            .map(|r| Value::Object(r).to_string()),
        commands_restricted: body
            .commands_restricted
            .map(|r| Value::Object(r).to_string()),
        projects: body.projects,
    };
    let group = UserGroups::new(state.store.as_ref())
        .put(&name, change)
        .await
        .map_err(group_error)?;
    let granted: Vec<&str> = group.permissions.iter().map(String::as_str).collect();
    let detail = format!(
        "permissions [{}], projects [{}]",
        granted.join(", "),
        group.projects.as_deref().unwrap_or_default().join(", ")
    );
    tracing::info!(group = %name, by = %user.username, "user group set");
    let event = Event {
        action: "user_group.update",
        resource: &name,
        project: None,
        success: true,
        detail,
    };
    state
        .audit
        .record(&Actor::user(&user.username, ip), event)
        .await;
    Ok(data(group_json(&group)))
}

/// `DELETE /api/v1/user-groups/{name}`: its members leave it; one that never existed is
/// no error, as in RPort.
pub async fn delete(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    ClientIp(ip): ClientIp,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&user)?;
    UserGroups::new(state.store.as_ref())
        .delete(&name)
        .await
        .map_err(group_error)?;
    tracing::info!(group = %name, by = %user.username, "user group deleted");
    let event = Event {
        action: "user_group.delete",
        resource: &name,
        project: None,
        success: true,
        detail: String::new(),
    };
    state
        .audit
        .record(&Actor::user(&user.username, ip), event)
        .await;
    Ok(StatusCode::NO_CONTENT)
}
