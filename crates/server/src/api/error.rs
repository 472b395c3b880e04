//! API errors: a status and RPort's `{"errors":[{"code","title","detail"}]}` envelope.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An API error in RPort's envelope.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    title: String,
    detail: String,
    /// Seconds, for a `Retry-After` header.
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        title: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            title: title.into(),
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// 429 for a banned caller, with `Retry-After`.
    pub fn banned(remaining: std::time::Duration) -> Self {
        let secs = remaining.as_secs().max(1);
        let mut err = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "ERR_CODE_TOO_MANY_FAILED_LOGINS",
            "Too many failed logins",
            format!("too many failed logins from this address; try again in {secs} s"),
        );
        err.retry_after = Some(secs);
        err
    }

    pub fn bad_request(
        code: &'static str,
        title: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, title, detail)
    }

    pub fn internal(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        let err = err.into();
        tracing::error!("API internal error: {err}");
        if err.downcast_ref::<rport_store::StoreError>().is_some() {
            crate::metrics::store_error();
        }
        // The operator can fix these, so the caller is told which one it is.
        if let Some(reason) = rport_store::unavailable_reason(&*err) {
            return Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ERR_CODE_STORAGE_UNAVAILABLE",
                "Storage unavailable",
                format!("{reason}; nothing was changed. Try again once it is fixed"),
            );
        }
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_CODE_INTERNAL",
            "Internal error",
            "the server could not complete the request; see its log",
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "ERR_CODE_UNAUTHORIZED",
            "Unauthorized",
            "authentication failed: send HTTP basic credentials or a bearer token from /api/v1/login",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({"errors": [{"code": self.code, "title": self.title, "detail": self.detail}]});
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"rportd\""),
            );
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "ERR_CODE_FORBIDDEN",
            "Forbidden",
            detail,
        )
    }
}
