//! `/api/v1/clients-auth`: the agent credentials rportd manages, each bound to a project.
//! Secrets are shown once, when rportd generates them, and never listed.

use axum::extract::{Path, State as StateExtractor};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rport_store::DEFAULT_PROJECT;
use serde_json::{Value, json};

use crate::api::list_options::{ListOptions, ListSpec, RPORT_PAGE};
use crate::api::{
    ApiError, Authenticated, ClientIp, FormOrJsonBody, Params, RequestBody, State, data,
};
use crate::auth::agent_credentials::{CredentialError, CredentialView};
use crate::domain::audit::{Actor, Event};
use crate::domain::permissions::Role;
use crate::domain::secrets::random_secret;

/// Agent passwords the API accepts; generated ones are longer.
const MIN_PASSWORD_LEN: usize = 12;

fn credential_json(state: &crate::api::AppState, credential: &CredentialView) -> Value {
    let (clients, connected) = state.registry.using_credential(&credential.id);
    json!({
        "id": credential.id,
        "project": credential.project,
        "clients": clients,
        "clients_connected": connected,
        "source": if credential.configured { "config" } else { "db" },
    })
}

fn credential_error(err: CredentialError) -> ApiError {
    let detail = err.to_string();
    match err {
        CredentialError::Single => ApiError::new(
            StatusCode::CONFLICT,
            "ERR_CODE_CLIENT_AUTH_SINGLE",
            "Agent credential in the configuration",
            detail,
        ),
        CredentialError::ReadOnly => ApiError::new(
            StatusCode::CONFLICT,
            "ERR_CODE_CLIENT_AUTH_RO",
            "Agent credentials read only",
            detail,
        ),
        CredentialError::Exists(_) => ApiError::new(
            StatusCode::CONFLICT,
            "ERR_CODE_ALREADY_EXIST",
            "Agent credential exists",
            detail,
        ),
        CredentialError::NotFound(_) => not_found(detail),
        CredentialError::Store(err) => ApiError::internal(err),
    }
}

fn not_found(detail: String) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "ERR_CODE_CLIENT_AUTH_NOT_FOUND",
        "Agent credential not found",
        detail,
    )
}

/// RPort filters credentials by `id` and pages them; it sorts them by nothing.
const LIST: ListSpec = ListSpec {
    filters: &["id"],
    sorts: &[],
    fields: None,
    page: Some(RPORT_PAGE),
};

/// `GET /api/v1/clients-auth`: the credentials of the projects the caller has a role in.
pub async fn list(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    params: Params,
) -> Result<Response, ApiError> {
    let options = ListOptions::parse(&params.0, &LIST)?;
    let visible: Vec<CredentialView> = state
        .agent_auth
        .list()
        .into_iter()
        .filter(|c| user.reads(&c.project))
        .filter(|c| options.matches(|_| Some(json!(c.id))))
        .collect();
    let count = visible.len();
    let page: Vec<Value> = options
        .page
        .of(visible)
        .iter()
        .map(|c| credential_json(&state, c))
        .collect();
    Ok(crate::api::listing(page, count))
}

/// `GET /api/v1/clients-auth/{id}`: one credential of a project the caller has a role
/// in, without its secret (RPort shows the password).
pub async fn get_one(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state
        .agent_auth
        .list()
        .iter()
        .find(|c| c.id == id && user.reads(&c.project))
        .map(|c| data(credential_json(&state, c)))
        .ok_or_else(|| not_found(format!("Client Auth with ID {id:?} not found")))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCredential {
    id: String,
    password: Option<String>,
    project: Option<String>,
}

impl RequestBody for NewCredential {
    const SHAPE: &'static str = r#"{"id", "password"?, "project"?}"#;
}

/// `POST /api/v1/clients-auth` with `{"id", "password"?, "project"?}`: without a password
/// rportd generates one and returns it, this once.
pub async fn create(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    ClientIp(ip): ClientIp,
    body: FormOrJsonBody<NewCredential>,
) -> Result<Response, ApiError> {
    let body = body.parse()?;
    let project = body.project.unwrap_or_else(|| DEFAULT_PROJECT.to_owned());
    user.require(&project, Role::Admin, "creating agent credentials")
        .map_err(ApiError::forbidden)?;
    let invalid = |detail: String| {
        ApiError::bad_request(
            "ERR_CODE_INVALID_REQUEST",
            "Invalid agent credential",
            detail,
        )
    };
    let max = crate::domain::bounded::MAX_CREDENTIAL_ID_LEN;
    let id_ok = (1..=max).contains(&body.id.len())
        && body.id.chars().all(|c| c.is_ascii_graphic() && c != ':');
    if !id_ok {
        return Err(invalid(format!(
            "id {:?} must be 1 to {max} visible characters without ':'",
            crate::domain::bounded::bounded(&body.id)
        )));
    }
    if body
        .password
        .as_ref()
        .is_some_and(|p| p.chars().count() < MIN_PASSWORD_LEN)
    {
        return Err(invalid(format!(
            "the password needs at least {MIN_PASSWORD_LEN} characters; leave it out to have one generated"
        )));
    }
    let projects = state
        .store
        .list_projects()
        .await
        .map_err(ApiError::internal)?;
    if !projects.iter().any(|p| p.key == project) {
        return Err(invalid(format!("no project {project:?}")));
    }
    let generated = body.password.is_none().then(|| random_secret(24));
    let password = body
        .password
        .or_else(|| generated.clone())
        .unwrap_or_default();
    state
        .agent_auth
        .add(&body.id, &password, &project)
        .await
        .map_err(credential_error)?;
    state
        .cluster
        .publish(crate::cluster::topic::CREDENTIAL, &body.id)
        .await;
    tracing::info!(credential = %body.id, %project, by = %user.username, "agent credential created");
    let event = Event::success("clientauth.create", &body.id, Some(&project));
    state
        .audit
        .record(&Actor::user(&user.username, ip), event)
        .await;
    let view = CredentialView {
        id: body.id,
        project,
        configured: false,
    };
    let mut shown = credential_json(&state, &view);
    if let (Some(password), Value::Object(fields)) = (generated, &mut shown) {
        fields.insert("password".into(), json!(password));
    }
    Ok((StatusCode::CREATED, crate::api::data(shown)).into_response())
}

/// `DELETE /api/v1/clients-auth/{id}`: refused while agents are connected with it, unless
/// `force=true`, which also disconnects them.
pub async fn delete(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    params: Params,
) -> Result<StatusCode, ApiError> {
    let missing = || not_found(format!("no agent credential {id:?}"));
    let project = state.agent_auth.project_of(&id).ok_or_else(missing)?;
    if !user.sees(&project) {
        return Err(missing());
    }
    user.require(&project, Role::Admin, "deleting agent credentials")
        .map_err(ApiError::forbidden)?;
    let force = matches!(params.get("force"), Some("true" | "1"));
    let (_, connected) = state.registry.using_credential(&id);
    if connected > 0 && !force {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ERR_CODE_CLIENT_AUTH_HAS_CLIENT",
            "Agent credential in use",
            format!(
                "{connected} connected agent(s) use credential {id:?}; add force=true to delete it and disconnect them"
            ),
        ));
    }
    state
        .agent_auth
        .remove(&id)
        .await
        .map_err(credential_error)?;
    if force {
        state.registry.disconnect_credential(&id);
    }
    state
        .cluster
        .publish(crate::cluster::topic::CREDENTIAL, &id)
        .await;
    tracing::info!(credential = %id, %project, by = %user.username, "agent credential deleted");
    let event = Event {
        action: "clientauth.delete",
        resource: &id,
        project: Some(&project),
        success: true,
        detail: if connected > 0 {
            format!("{connected} agent(s) disconnected")
        } else {
            String::new()
        },
    };
    state
        .audit
        .record(&Actor::user(&user.username, ip), event)
        .await;
    Ok(StatusCode::NO_CONTENT)
}
