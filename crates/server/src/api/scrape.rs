//! `GET /metrics`: the Prometheus text of this server, for any authenticated caller (a
//! read-scope API token is enough). `[metrics] address` serves the same text without
//! authentication (see `app`).

use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::{Authenticated, State};
use crate::metrics::Metrics;
use crate::metrics::render::CONTENT_TYPE;

/// `GET /metrics`
pub async fn metrics(
    axum::extract::State(state): State,
    Authenticated(_caller): Authenticated,
) -> Response {
    text_of(&state.metrics)
}

/// One scrape's answer.
pub fn text_of(metrics: &Metrics) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.render()).into_response()
}
