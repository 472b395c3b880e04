//! The JSON shapes every answer shares: the `data` envelope and how times are shown.

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// `{"data": value}`
pub fn data(value: serde_json::Value) -> Response {
    Json(json!({ "data": value })).into_response()
}

/// A page of a listing: `{"data": rows, "meta": {"count": all the rows that matched}}`.
pub fn listing(rows: impl serde::Serialize, count: impl serde::Serialize) -> Response {
    Json(json!({ "data": rows, "meta": { "count": count } })).into_response()
}

/// A time as every API answer shows it (RFC 3339, milliseconds, UTC), or null.
pub fn time_json(time: Option<chrono::DateTime<chrono::Utc>>) -> serde_json::Value {
    time.map_or(serde_json::Value::Null, |t| {
        json!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    })
}
