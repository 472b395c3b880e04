//! `/api/v1/client-groups`: RPort's dynamic client groups. A group belongs to one
//! project and holds the agents of that project whose facts match its `params`, worked
//! out on every read; a caller sees a group only with a role in its project, and only
//! an admin of the project writes it. Groups grant no access: who may reach an agent is
//! decided by project roles alone.

use axum::extract::{Path, State as StateExtractor};
use axum::http::StatusCode;
use axum::response::Response;
use rport_store::{ClientGroupRecord, DEFAULT_PROJECT};
use serde_json::{Map, Value, json};

use super::agent_view::{AgentView, Group, GroupParams};
use crate::api::list_options::{ListOptions, ListSpec, RPORT_PAGE};
use crate::api::{ApiError, Authenticated, ClientIp, JsonBody, Params, RequestBody, State, data};
use crate::domain::audit::{Actor, Event};
use crate::domain::permissions::{AuthUser, Role};

const FIELDS: &[&str] = &[
    "id",
    "description",
    "params",
    "allowed_user_groups",
    "client_ids",
    "num_clients",
    "num_clients_connected",
    "project",
];

/// RPort lists only these unless `fields[client_groups]` asks for more.
const LIST_DEFAULT_FIELDS: &[&str] = &["id", "description"];

const LIST: ListSpec = ListSpec {
    filters: &["id", "description"],
    sorts: &["id", "description"],
    fields: Some(("client_groups", FIELDS)),
    page: Some(RPORT_PAGE),
};

/// One group: RPort reads only `fields[client_groups]`.
/// One group: RPort reads only `fields[client_groups]`.
const ONE: ListSpec = ListSpec {
    filters: &[],
    sorts: &[],
    fields: Some(("client_groups", FIELDS)),
    page: None,
};

/// RPort's limits on a group id.
const MAX_ID_LEN: usize = 30;

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "ERR_CODE_NOT_FOUND",
        "Client group not found",
        format!(
            "Client Group[id={:?}] not found.",
            crate::domain::bounded::bounded(id)
        ),
    )
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request("ERR_CODE_INVALID_REQUEST", "Invalid client group.", detail)
}

/// A group's members: (id, connected) of the agents of its project it holds.
fn members(state: &crate::api::AppState, view: &AgentView, group: &Group) -> Vec<(String, bool)> {
    let mut members: Vec<(String, bool)> = state.registry.with_agents(|agents| {
        agents
            .values()
            .filter(|entry| entry.record.project == group.record.project)
            .filter(|entry| group.params.holds(entry, &view.tags(entry)))
            .map(|entry| (entry.record.id.clone(), entry.is_connected()))
            .collect()
    });
    members.sort();
    members
}

fn group_json(group: &Group, members: &[(String, bool)], fields: &[&str]) -> Value {
    let mut object = Map::new();
    for &name in fields {
        let value = match name {
            "id" => json!(group.record.id),
            "description" => json!(group.record.description),
            // As stored: every RPort param, null where not given.
            "params" => serde_json::to_value(&group.params).unwrap_or(Value::Null),
            "allowed_user_groups" => json!(group.record.allowed_user_groups),
            "client_ids" => json!(members.iter().map(|(id, _)| id).collect::<Vec<_>>()),
            "num_clients" => json!(members.len()),
            "num_clients_connected" => json!(members.iter().filter(|(_, c)| *c).count()),
            "project" => json!(group.record.project),
            _ => continue,
        };
        object.insert(name.to_owned(), value);
    }
    Value::Object(object)
}

/// `GET /api/v1/client-groups`: the groups of the caller's projects; empty groups only
/// for the project's admins, as RPort shows them only to administrators.
pub async fn list(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    params: Params,
) -> Result<Response, ApiError> {
    let options = ListOptions::parse(&params.0, &LIST)?;
    let fields = options
        .fields
        .clone()
        .unwrap_or_else(|| LIST_DEFAULT_FIELDS.to_vec());
    let view = AgentView::load(&state).await?;
    let mut rows: Vec<(&Group, Vec<(String, bool)>)> = view
        .groups
        .iter()
        .filter(|g| user.reads(&g.record.project))
        .map(|g| (g, members(&state, &view, g)))
        .filter(|(g, members)| {
            !members.is_empty() || user.role_in(&g.record.project) == Some(Role::Admin)
        })
        .filter(|(g, _)| {
            options.matches(|name| match name {
                "id" => Some(json!(g.record.id)),
                "description" => Some(json!(g.record.description)),
                _ => None,
            })
        })
        .collect();
    // By id unless asked otherwise (the store lists them so).
    options.sort(&mut rows, |(g, _), name| match name {
        "id" => Some(json!(g.record.id)),
        "description" => Some(json!(g.record.description)),
        _ => None,
    });
    let count = rows.len();
    let page: Vec<Value> = options
        .page
        .of(rows)
        .iter()
        .map(|(g, members)| group_json(g, members, &fields))
        .collect();
    Ok(crate::api::listing(page, count))
}

/// `GET /api/v1/client-groups/{group_id}`
pub async fn get_one(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let options = ListOptions::parse_retrieve(&params.0, &ONE)?;
    let fields = options.fields.unwrap_or_else(|| FIELDS.to_vec());
    let view = AgentView::load(&state).await?;
    let group = view
        .groups
        .iter()
        .find(|g| g.record.id == id && user.reads(&g.record.project))
        .ok_or_else(|| not_found(&id))?;
    Ok(data(group_json(
        group,
        &members(&state, &view, group),
        &fields,
    )))
}

/// RPort's `ClientGroup` as a request body; other fields (`client_ids`, computed) are
/// ignored, as RPort does.
#[derive(serde::Deserialize)]
pub struct GroupBody {
    id: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    params: Value,
    #[serde(default)]
    allowed_user_groups: Option<Vec<String>>,
    /// Ours: the project the group belongs to; the default project when left out.
    #[serde(default)]
    project: Option<String>,
}

impl RequestBody for GroupBody {
    const SHAPE: &'static str = r#"{"id", "description"?, "params"?: {"client_id"?: [..], "name"?: [..], "tag"?: [..] | {"and"|"or": [..]}, ...}, "allowed_user_groups"?: [..], "project"?}"#;
}

impl GroupBody {
    /// The record to store, after RPort's checks on the id and the `tag` param.
    fn into_record(self) -> Result<(ClientGroupRecord, GroupParams), ApiError> {
        if self.id.trim().is_empty() {
            return Err(invalid("group ID cannot be empty"));
        }
        if self.id.len() > MAX_ID_LEN {
            return Err(invalid(format!(
                "invalid group ID: max length {MAX_ID_LEN}, got {}",
                self.id.len()
            )));
        }
        if !self
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | '_' | '-'))
        {
            return Err(invalid(format!(
                "invalid group ID {:?}: can contain only \"A-Za-z0-9_-*\"",
                self.id
            )));
        }
        let params = GroupParams::parse(&self.params).map_err(invalid)?;
        let record = ClientGroupRecord {
            id: self.id,
            project: self.project.unwrap_or_else(|| DEFAULT_PROJECT.to_owned()),
            description: self.description,
            params: serde_json::to_value(&params).unwrap_or(Value::Null),
            allowed_user_groups: self.allowed_user_groups.unwrap_or_default(),
        };
        Ok((record, params))
    }
}

fn require_admin(user: &AuthUser, project: &str, doing: &str) -> Result<(), ApiError> {
    user.require(project, Role::Admin, doing)
        .map_err(ApiError::forbidden)
}

fn taken(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "ERR_CODE_ALREADY_EXIST",
        "Client group exists",
        format!("a client group with id {id:?} already exists"),
    )
}

/// `POST /api/v1/client-groups`: 201 with no body, as RPort.
pub async fn create(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    ClientIp(ip): ClientIp,
    body: JsonBody<GroupBody>,
) -> Result<StatusCode, ApiError> {
    // The project is in the body; one that does not parse is checked as the default.
    let parsed = body.parse();
    let project = match &parsed {
        Ok(body) => body.project.as_deref().unwrap_or(DEFAULT_PROJECT),
        Err(_) => DEFAULT_PROJECT,
    };
    require_admin(&user, project, "creating client groups")?;
    let (record, _) = parsed?.into_record()?;
    if state
        .store
        .get_client_group(&record.id)
        .await
        .map_err(ApiError::internal)?
        .is_some()
    {
        return Err(taken(&record.id));
    }
    if !state
        .store
        .put_client_group(&record)
        .await
        .map_err(ApiError::internal)?
    {
        return Err(taken(&record.id));
    }
    let event = Event::success("clientgroup.create", &record.id, Some(&record.project));
    state
        .audit
        .record(&Actor::user(&user.username, ip), event)
        .await;
    Ok(StatusCode::CREATED)
}

/// `PUT /api/v1/client-groups/{group_id}`: creates or replaces; 204, as RPort.
pub async fn update(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    body: JsonBody<GroupBody>,
) -> Result<StatusCode, ApiError> {
    let existing = state
        .store
        .get_client_group(&id)
        .await
        .map_err(ApiError::internal)?;
    // The project of the group it replaces; a new one names its own.
    let parsed = body.parse();
    let project = match (&existing, &parsed) {
        (Some(group), _) if !user.sees(&group.project) => return Err(taken(&id)),
        (Some(group), _) => group.project.clone(),
        (None, Ok(body)) => body
            .project
            .clone()
            .unwrap_or_else(|| DEFAULT_PROJECT.to_owned()),
        (None, Err(_)) => DEFAULT_PROJECT.to_owned(),
    };
    require_admin(&user, &project, "changing client groups")?;
    let body = parsed?;
    if body.id != id {
        return Err(ApiError::bad_request(
            "ERR_CODE_INVALID_REQUEST",
            "\"group_id\" route param doesn't not match group ID from request body.",
            format!("the path names {id:?}, the body {:?}", body.id),
        ));
    }
    if body.project.as_deref().is_some_and(|p| p != project) {
        return Err(invalid(format!(
            "client group {id:?} belongs to project {project:?}; a group cannot move"
        )));
    }
    let (mut record, _) = body.into_record()?;
    record.project = project;
    if !state
        .store
        .put_client_group(&record)
        .await
        .map_err(ApiError::internal)?
    {
        return Err(taken(&id));
    }
    let event = Event::success("clientgroup.update", &record.id, Some(&record.project));
    state
        .audit
        .record(&Actor::user(&user.username, ip), event)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/client-groups/{group_id}`: 204.
pub async fn delete(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let group = state
        .store
        .get_client_group(&id)
        .await
        .map_err(ApiError::internal)?
        .filter(|g| user.sees(&g.project))
        .ok_or_else(|| not_found(&id))?;
    require_admin(&user, &group.project, "deleting client groups")?;
    state
        .store
        .delete_client_group(&id)
        .await
        .map_err(ApiError::internal)?;
    let event = Event::success("clientgroup.delete", &id, Some(&group.project));
    state
        .audit
        .record(&Actor::user(&user.username, ip), event)
        .await;
    Ok(StatusCode::NO_CONTENT)
}
