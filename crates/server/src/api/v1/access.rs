//! Which clients a caller may see and act on: a client outside the caller's projects does
//! not exist for them.

use axum::http::StatusCode;

use crate::api::{ApiError, AppState};
use crate::domain::permissions::{AuthUser, Role};

pub(super) fn client_not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "ERR_CODE_CLIENT_NOT_FOUND",
        "Client not found",
        format!("client with id {id:?} not found"),
    )
}

/// Checks the caller's role in the project of client `id`. A client of a project the user
/// has no role in is "not found", as if it did not exist; one the user may know of but not
/// act on gets 403 with the reason. Unknown clients pass: the handler says "not found".
pub(super) fn check_client_access(
    state: &AppState,
    user: &AuthUser,
    id: &str,
    needed: Role,
    doing: &str,
) -> Result<(), ApiError> {
    match state.registry.project_of(id) {
        None => Ok(()),
        Some(project) if !user.sees(&project) => Err(client_not_found(id)),
        Some(project) => user
            .require(&project, needed, doing)
            .map_err(ApiError::forbidden),
    }
}
