//! What the API sets on one agent: RPort's attributes (`GET/PUT
//! /api/v1/clients/{id}/attributes`: tags and labels, kept in the store and shown instead
//! of the agent's own, as RPort's attributes file replaces the config's) and its client
//! ACL (`POST /api/v1/clients/{id}/acl`: `allowed_user_groups`, recorded and shown; it
//! grants nothing beyond the caller's project roles).

use std::collections::BTreeMap;

use axum::extract::{Path, State as StateExtractor};
use axum::http::StatusCode;
use axum::response::Response;
use rport_protocol::control::{MAX_FACT_LEN, MAX_LABELS};
use rport_store::AgentAttributes;
use serde_json::json;

use super::access::{check_client_access, client_not_found};
use super::agent_view::AgentView;
use super::clients::column;
use crate::api::{ApiError, Authenticated, ClientIp, JsonBody, RequestBody, State, data};
use crate::domain::audit::{Actor, Event};
use crate::domain::permissions::Role;

/// The project of a known agent, or "not found".
fn project_of(state: &crate::api::AppState, id: &str) -> Result<String, ApiError> {
    state
        .registry
        .project_of(id)
        .ok_or_else(|| client_not_found(id))
}

/// `GET /api/v1/clients/{client_id}/attributes`: `{"data": {"tags", "labels"}}`.
pub async fn get(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_client_access(&state, &user, &id, Role::Viewer, "reading clients")?;
    project_of(&state, &id)?;
    let view = AgentView::load(&state).await?;
    state
        .registry
        .with_agents(|agents| {
            agents.get(&id).map(|entry| {
                json!({
                    "tags": column(entry, &view, "tags"),
                    "labels": column(entry, &view, "labels"),
                })
            })
        })
        .map(data)
        .ok_or_else(|| client_not_found(&id))
}

/// RPort's `ClientAttributes`; a field left out is emptied, as RPort replaces both.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributesBody {
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

impl RequestBody for AttributesBody {
    const SHAPE: &'static str = r#"{"tags": ["..."], "labels": {"key": "value"}}"#;
}

/// The bounds of what an agent may report hold for what the API sets too: at most
/// [`MAX_LABELS`] tags and as many labels, each string at most [`MAX_FACT_LEN`] bytes.
fn check_bounds(attributes: &AgentAttributes) -> Result<(), ApiError> {
    let strings = attributes
        .tags
        .iter()
        .chain(attributes.labels.keys())
        .chain(attributes.labels.values());
    let too_long = strings.clone().any(|text| text.len() > MAX_FACT_LEN);
    if attributes.tags.len() > MAX_LABELS || attributes.labels.len() > MAX_LABELS || too_long {
        return Err(ApiError::bad_request(
            "ERR_CODE_INVALID_REQUEST",
            "Attributes too large",
            format!(
                "at most {MAX_LABELS} tags and {MAX_LABELS} labels, each tag, key and value at \
                 most {MAX_FACT_LEN} bytes"
            ),
        ));
    }
    Ok(())
}

/// `PUT /api/v1/clients/{client_id}/attributes`: 200 `{"data": "ok"}`, as RPort.
pub async fn put(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    body: JsonBody<AttributesBody>,
) -> Result<Response, ApiError> {
    check_client_access(
        &state,
        &user,
        &id,
        Role::Tunnels,
        "changing client attributes",
    )?;
    let project = project_of(&state, &id)?;
    let body = body.parse()?;
    let attributes = AgentAttributes {
        tags: body.tags.unwrap_or_default(),
        labels: body.labels.unwrap_or_default(),
    };
    check_bounds(&attributes)?;
    if !state
        .store
        .set_agent_attributes(&id, &attributes)
        .await
        .map_err(ApiError::internal)?
    {
        return Err(client_not_found(&id));
    }
    let event = Event::success("client.attributes", &id, Some(&project));
    state
        .audit
        .record(&Actor::user(&user.username, ip), event)
        .await;
    Ok(data(json!("ok")))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclBody {
    allowed_user_groups: Vec<String>,
}

impl RequestBody for AclBody {
    const SHAPE: &'static str = r#"{"allowed_user_groups": ["..."]}"#;
}

/// `POST /api/v1/clients/{client_id}/acl`: 204; an admin of the agent's project only.
pub async fn set_acl(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    body: JsonBody<AclBody>,
) -> Result<StatusCode, ApiError> {
    check_client_access(&state, &user, &id, Role::Admin, "changing a client's ACL")?;
    let project = project_of(&state, &id)?;
    let mut groups = body.parse()?.allowed_user_groups;
    groups.sort();
    groups.dedup();
    if !state
        .store
        .set_agent_allowed_user_groups(&id, &groups)
        .await
        .map_err(ApiError::internal)?
    {
        return Err(client_not_found(&id));
    }
    let event = Event::success("client.acl", &id, Some(&project));
    state
        .audit
        .record(&Actor::user(&user.username, ip), event)
        .await;
    Ok(StatusCode::NO_CONTENT)
}
