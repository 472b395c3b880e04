//! `GET /api/v1/auditlog`: the audit log, newest first, filtered and paged; admins only.

use axum::Json;
use axum::extract::State as StateExtractor;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use rport_store::AuditFilter;
use serde_json::{Value, json};

use super::{ApiError, Authenticated, Params, State};

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

fn number_param(params: &Params, name: &str, default: usize) -> Result<usize, ApiError> {
    match params.get(name).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(text) => text.parse().map_err(|_| {
            ApiError::bad_request(
                "ERR_CODE_INVALID_REQUEST",
                format!("Invalid {name}"),
                format!("{name}={text:?} is not a number"),
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
    if !user.is_admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "ERR_CODE_FORBIDDEN",
            "Forbidden",
            "only administrators may read the audit log",
        ));
    }
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
        limit: number_param(&params, "page[limit]", DEFAULT_LIMIT)?.clamp(1, MAX_LIMIT),
        offset: number_param(&params, "page[offset]", 0)?,
    };
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
                "timestamp": e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
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
