//! `GET /metrics`: the Prometheus text of this server, for a server administrator (a
//! read-scope API token is enough). `[metrics] address` serves the same text without
//! authentication (see `app`).

use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::{ApiError, Authenticated, State};
use crate::metrics::Metrics;
use crate::metrics::render::CONTENT_TYPE;

/// `GET /metrics`. Server administrators only: the labels name every project and count
/// its devices and tunnels, which a user of one project must not learn about another.
pub async fn metrics(
    axum::extract::State(state): State,
    Authenticated(caller): Authenticated,
) -> Result<Response, ApiError> {
    caller
        .require_server_admin("reading /metrics (its labels name every project)")
        .map_err(ApiError::forbidden)?;
    Ok(text_of(&state.metrics))
}

/// One scrape's answer.
pub fn text_of(metrics: &Metrics) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.render()).into_response()
}
