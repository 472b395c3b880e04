//! Projects (fleets): list, create, delete an empty one. Every agent belongs to the
//! project its credential is bound to; `default` always exists.

use axum::extract::{Path, State as StateExtractor};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use rport_store::{DEFAULT_PROJECT, ProjectRecord, ProjectRemoval};
use serde_json::{Value, json};

use crate::api::{
    ApiError, Authenticated, ClientIp, JsonBody, RequestBody, State, data, time_json,
};
use crate::domain::audit::{Actor, Event};
use crate::domain::names::check_project_key;
use crate::domain::permissions::Role;

/// `role` is the caller's role in it.
fn project_json(project: &ProjectRecord, clients: usize, role: Option<Role>) -> Value {
    json!({
        "key": project.key,
        "name": project.name,
        "created_at": time_json(Some(project.created_at)),
        "clients": clients,
        "role": role.map(Role::as_str),
    })
}

fn clients_in(state: &crate::api::AppState, key: &str) -> usize {
    state.registry.with_agents(|clients| {
        clients
            .values()
            .filter(|entry| entry.record.project == key)
            .count()
    })
}

/// `GET /api/v1/projects`: the projects the caller has a role in (all, for admins).
pub async fn list(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    params: crate::api::Params,
) -> Result<Response, ApiError> {
    use crate::api::list_options::{ListOptions, ListSpec, WHOLE_UNLESS_ASKED};
    // Paging only; any filter or sort is refused.
    const LIST: ListSpec = ListSpec {
        page: Some(WHOLE_UNLESS_ASKED),
        ..ListSpec::NONE
    };
    let options = ListOptions::parse(&params.0, &LIST)?;
    let projects = state
        .store
        .list_projects()
        .await
        .map_err(ApiError::internal)?;
    let visible: Vec<Value> = projects
        .iter()
        .filter_map(|p| {
            let role = user.role_in(&p.key)?;
            Some(project_json(p, clients_in(&state, &p.key), Some(role)))
        })
        .collect();
    Ok(data(Value::Array(options.page.of(visible))))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    key: String,
    #[serde(default)]
    name: Option<String>,
}

impl RequestBody for NewProject {
    const SHAPE: &'static str = r#"{"key": "KEY", "name": "NAME"}"#;
}

/// `POST /api/v1/projects` with `{"key": "berlin-office", "name": "Berlin office"}`.
pub async fn create(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    ClientIp(ip): ClientIp,
    body: JsonBody<NewProject>,
) -> Result<Response, ApiError> {
    user.require_server_admin("creating projects")
        .map_err(ApiError::forbidden)?;
    let body = body.parse()?;
    check_project_key(&body.key).map_err(|reason| {
        ApiError::bad_request("ERR_CODE_INVALID_REQUEST", "Invalid project key", reason)
    })?;
    let project = ProjectRecord {
        name: body
            .name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| body.key.clone()),
        key: body.key,
        created_at: Utc::now(),
    };
    if !state
        .store
        .insert_project(&project)
        .await
        .map_err(ApiError::internal)?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ERR_CODE_ALREADY_EXIST",
            "Project exists",
            format!("project {:?} exists already", project.key),
        ));
    }
    tracing::info!(project = %project.key, "project created");
    let event = Event {
        action: "project.create",
        resource: &project.key,
        project: Some(&project.key),
        success: true,
        detail: project.name.clone(),
    };
    state
        .audit
        .record(&Actor::user(&user.username, ip), event)
        .await;
    let role = user.role_in(&project.key);
    Ok((StatusCode::CREATED, data(project_json(&project, 0, role))).into_response())
}

/// `DELETE /api/v1/projects/{key}`: only an empty project, never `default`.
pub async fn delete(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    user.require_server_admin("deleting projects")
        .map_err(ApiError::forbidden)?;
    if key == DEFAULT_PROJECT {
        return Err(ApiError::bad_request(
            "ERR_CODE_INVALID_REQUEST",
            "Project cannot be deleted",
            "project \"default\" always exists",
        ));
    }
    let has_clients = |clients| {
        ApiError::new(
            StatusCode::CONFLICT,
            "ERR_CODE_PROJECT_NOT_EMPTY",
            "Project not empty",
            format!("project {key:?} has {clients} client(s); delete them first"),
        )
    };
    let in_use = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "ERR_CODE_PROJECT_NOT_EMPTY",
            "Project in use",
            format!("agent credentials are bound to project {key:?}; delete them first"),
        )
    };
    let clients = clients_in(&state, &key);
    if clients > 0 {
        return Err(has_clients(clients as u64));
    }
    if state.agent_auth.projects().contains(&key) {
        return Err(in_use());
    }
    // Checked again with the delete, in one transaction: a client or credential added
    // meanwhile keeps the project.
    match state
        .store
        .delete_project_if_empty(&key)
        .await
        .map_err(ApiError::internal)?
    {
        ProjectRemoval::Deleted => {}
        ProjectRemoval::HasAgents(clients) => return Err(has_clients(clients)),
        ProjectRemoval::HasAgentCredentials => return Err(in_use()),
        ProjectRemoval::NotFound => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "ERR_CODE_PROJECT_NOT_FOUND",
                "Project not found",
                format!("no project {key:?}"),
            ));
        }
    }
    tracing::info!(project = %key, "project deleted");
    let event = Event::success("project.delete", &key, Some(&key));
    state
        .audit
        .record(&Actor::user(&user.username, ip), event)
        .await;
    Ok(StatusCode::NO_CONTENT)
}
