//! `GET /api/v1/auditlog`: the audit log, newest first, filtered and paged; admins only.

use axum::Json;
use axum::extract::State as StateExtractor;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use rport_store::AuditFilter;
use serde_json::{Value, json};

use crate::domain::permissions::Role;

use crate::api::{ApiError, Authenticated, Params, State, time_json};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

fn time_param(params: &Params, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    match params.get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|err| {
                ApiError::bad_request(
                    "ERR_CODE_INVALID_REQUEST",
                    format!("Invalid {name}"),
                    format!("{name}={text:?} is not an RFC 3339 time such as 2026-11-26T12:00:00Z: {err}"),
                )
            }),
    }
}

/// Filters: `filter[since]`, `filter[until]` (RFC 3339), `filter[actor]`, `filter[action]`,
/// `filter[project]`; paging: `page[limit]` (default 50, at most 500), `page[offset]`.
pub async fn list(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    params: Params,
) -> Result<Response, ApiError> {
    let text = |name: &str| {
        params
            .get(name)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let filter = AuditFilter {
        since: time_param(&params, "filter[since]")?,
        until: time_param(&params, "filter[until]")?,
        actor: text("filter[actor]"),
        action: text("filter[action]"),
        project: text("filter[project]"),
        limit: params
            .number("page[limit]")?
            .unwrap_or(DEFAULT_LIMIT)
            .clamp(1, MAX_LIMIT),
        offset: params.number("page[offset]")?.unwrap_or(0),
    };
    // Server admins read everything; a project's admins read that project's entries.
    match &filter.project {
        Some(project) => user.require(project, Role::Admin, "reading the audit log"),
        None => user.require_server_admin(
            "reading the whole audit log (project admins add filter[project])",
        ),
    }
    .map_err(ApiError::forbidden)?;
    let (entries, count) = state
        .store
        .list_audit(&filter)
        .await
        .map_err(ApiError::internal)?;
    let data: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "id": e.id,
                "timestamp": time_json(Some(e.at)),
                "actor": e.actor,
                "actor_type": e.actor_type,
                "actor_ip": e.actor_ip,
                "action": e.action,
                "resource": e.resource,
                "project": e.project,
                "result": e.result,
                "detail": e.detail,
            })
        })
        .collect();
    Ok(Json(json!({"data": data, "meta": {"count": count}})).into_response())
}
