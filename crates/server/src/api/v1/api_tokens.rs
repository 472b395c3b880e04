//! API tokens of the calling user: `POST/GET /api/v1/me/tokens`,
//! `PUT/DELETE /api/v1/me/tokens/{prefix}`. The token is shown once; only a hash is kept.
//! RPort calls a token's id its prefix (the part before `_`); both names are shown.

use axum::extract::{Path, State as StateExtractor};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use rport_store::{ApiTokenChange, ApiTokenRecord};
use serde_json::{Value, json};

use crate::api::{
    ApiError, Authenticated, ClientIp, JsonBody, RequestBody, State, data, time_json,
};
use crate::auth::api_callers::TOKEN_SCOPES;
use crate::domain::audit::{Actor, Event};
use crate::domain::names::check_project_key;

fn token_json(token: &ApiTokenRecord) -> Value {
    json!({
        "id": token.id,
        "prefix": token.id,
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
        r#"{"name", "scope": "read", "read+write" or "clients-auth", "expires_at"?, "project"?}"#;
}

/// RPort's longest token name is one character shorter.
const MAX_NAME_LEN: usize = 250;

fn checked_name(name: &str) -> Result<&str, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.len() >= MAX_NAME_LEN {
        return Err(invalid(format!(
            "name must be 1 to {} characters",
            MAX_NAME_LEN - 1
        )));
    }
    Ok(name)
}

/// One of RPort's scopes; `clients-auth` only for server-wide administrators, as in RPort.
fn checked_scope<'a>(
    user: &crate::domain::permissions::AuthUser,
    scope: &'a str,
) -> Result<&'a str, ApiError> {
    if !TOKEN_SCOPES.contains(&scope) {
        return Err(invalid(format!(
            "scope {scope:?} is not one of {}",
            TOKEN_SCOPES.join(", ")
        )));
    }
    if scope == "clients-auth" && !user.is_admin {
        return Err(invalid(
            "only server-wide administrators (group Administrators) may make a token of scope clients-auth",
        ));
    }
    Ok(scope)
}

/// `POST /api/v1/me/tokens` with `{"name", "scope": "read"|"read+write"|"clients-auth",
/// "expires_at"?, "project"?}`: only with a password or a login's token, not with another
/// API token. 200 with the token, as RPort answers.
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
    let name = checked_name(&body.name)?;
    let scope = checked_scope(&user, &body.scope)?;
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
        .create_api_token(&user, name, scope, body.expires_at, body.project.clone())
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
    Ok(data(shown))
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

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenChange {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
    /// RPort's document lists it in the body too; the path says which token.
    #[serde(default)]
    prefix: Option<String>,
}

impl RequestBody for TokenChange {
    const SHAPE: &'static str = r#"any of {"name", "scope", "expires_at"}"#;
}

fn token_not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "ERR_CODE_TOKEN_NOT_FOUND",
        "Token not found",
        format!("you have no API token {id:?}"),
    )
}

/// `PUT /api/v1/me/tokens/{prefix}` with any of `{"name", "scope", "expires_at"}`: what
/// is left out (or an empty name) stays as it was. The secret stays too. Not with an API
/// token, which could otherwise widen its own scope.
pub async fn update(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    body: JsonBody<TokenChange>,
) -> Result<Response, ApiError> {
    if user.api_token {
        return Err(ApiError::forbidden(
            "API tokens cannot change API tokens; log in with your password",
        ));
    }
    let body = body.parse()?;
    if body.prefix.as_ref().is_some_and(|prefix| *prefix != id) {
        return Err(invalid("prefix in the body is not the one in the path"));
    }
    let current = state
        .store
        .get_api_token(&id)
        .await
        .map_err(ApiError::internal)?
        .filter(|token| token.username == user.username)
        .ok_or_else(|| token_not_found(&id))?;
    let name = match body.name.as_deref().filter(|name| !name.is_empty()) {
        Some(name) => checked_name(name)?.to_owned(),
        None => current.name.clone(),
    };
    let scope = match body.scope.as_deref() {
        Some(scope) => checked_scope(&user, scope)?.to_owned(),
        None => current.scope.clone(),
    };
    if body.expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(invalid("expires_at is in the past"));
    }
    let change = ApiTokenChange {
        name,
        scope,
        expires_at: body.expires_at.or(current.expires_at),
    };
    if !state
        .store
        .update_api_token(&user.username, &id, &change)
        .await
        .map_err(ApiError::internal)?
    {
        return Err(token_not_found(&id));
    }
    let event = Event {
        action: "token.update",
        resource: &id,
        project: current.project.as_deref(),
        success: true,
        detail: format!("{} ({})", change.name, change.scope),
    };
    state
        .audit
        .record(&Actor::user(&user.username, ip), event)
        .await;
    let updated = ApiTokenRecord {
        name: change.name,
        scope: change.scope,
        expires_at: change.expires_at,
        ..current
    };
    Ok(data(token_json(&updated)))
}

/// `DELETE /api/v1/me/tokens/{prefix}`: refused from then on.
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
        return Err(token_not_found(&id));
    }
    let event = Event::success("token.delete", &id, None);
    state
        .audit
        .record(&Actor::user(&user.username, ip), event)
        .await;
    Ok(StatusCode::NO_CONTENT)
}
