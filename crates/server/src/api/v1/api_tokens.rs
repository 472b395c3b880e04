//! API tokens of the calling user: `POST/GET /api/v1/me/tokens`,
//! `DELETE /api/v1/me/tokens/{id}`. The token is shown once; only a hash is kept.

use axum::extract::{Path, State as StateExtractor};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use rport_store::ApiTokenRecord;
use serde_json::{Value, json};

use crate::api::{
    ApiError, Authenticated, ClientIp, JsonBody, RequestBody, State, data, time_json,
};
use crate::domain::audit::{Actor, Event};
use crate::domain::names::check_project_key;

fn token_json(token: &ApiTokenRecord) -> Value {
    json!({
        "id": token.id,
        "name": token.name,
        "scope": token.scope,
        "project": token.project,
        "created_at": time_json(Some(token.created_at)),
        "expires_at": time_json(token.expires_at),
        "last_used_at": time_json(token.last_used_at),
    })
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request("ERR_CODE_INVALID_REQUEST", "Invalid token request", detail)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
    scope: String,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    project: Option<String>,
}

impl RequestBody for NewToken {
    const SHAPE: &'static str =
        r#"{"name", "scope": "read" or "read+write", "expires_at"?, "project"?}"#;
}

/// `POST /api/v1/me/tokens` with `{"name", "scope": "read"|"read+write", "expires_at"?,
/// "project"?}`: only with a password or a login's token, not with another API token.
pub async fn create(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    ClientIp(ip): ClientIp,
    body: JsonBody<NewToken>,
) -> Result<Response, ApiError> {
    if user.api_token {
        return Err(ApiError::forbidden(
            "API tokens cannot make API tokens; log in with your password",
        ));
    }
    let body = body.parse()?;
    if body.name.trim().is_empty() || body.name.len() > 200 {
        return Err(invalid("name must be 1 to 200 characters"));
    }
    let read_only = match body.scope.as_str() {
        "read" => true,
        "read+write" => false,
        other => {
            return Err(invalid(format!(
                "scope {other:?} is not \"read\" or \"read+write\""
            )));
        }
    };
    if body.expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(invalid("expires_at is in the past"));
    }
    if let Some(project) = &body.project {
        check_project_key(project).map_err(invalid)?;
        let projects = state
            .store
            .list_projects()
            .await
            .map_err(ApiError::internal)?;
        if !projects.iter().any(|p| &p.key == project) {
            return Err(invalid(format!("no project {project:?}")));
        }
        if !user.sees(project) {
            return Err(ApiError::forbidden(format!(
                "user {:?} has no role in project {project:?}; a token for it could do nothing",
                user.username
            )));
        }
    }
    let (record, token) = state
        .auth
        .create_api_token(
            &user,
            body.name.trim(),
            read_only,
            body.expires_at,
            body.project,
        )
        .await
        .map_err(ApiError::internal)?;
    let event = Event {
        action: "token.create",
        resource: &record.id,
        project: record.project.as_deref(),
        success: true,
        detail: format!("{} ({})", record.name, record.scope),
    };
    state
        .audit
        .record(&Actor::user(&user.username, ip), event)
        .await;
    let mut shown = token_json(&record);
    if let Value::Object(fields) = &mut shown {
        fields.insert("token".into(), json!(token));
    }
    Ok((StatusCode::CREATED, data(shown)).into_response())
}

/// `GET /api/v1/me/tokens`: without secrets.
pub async fn list(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
) -> Result<Response, ApiError> {
    let tokens = state
        .store
        .list_api_tokens(&user.username)
        .await
        .map_err(ApiError::internal)?;
    Ok(data(Value::Array(tokens.iter().map(token_json).collect())))
}

/// `DELETE /api/v1/me/tokens/{id}`: refused from then on.
pub async fn delete(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !state
        .store
        .delete_api_token(&user.username, &id)
        .await
        .map_err(ApiError::internal)?
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "ERR_CODE_TOKEN_NOT_FOUND",
            "Token not found",
            format!("you have no API token {id:?}"),
        ));
    }
    let event = Event::success("token.delete", &id, None);
    state
        .audit
        .record(&Actor::user(&user.username, ip), event)
        .await;
    Ok(StatusCode::NO_CONTENT)
}
