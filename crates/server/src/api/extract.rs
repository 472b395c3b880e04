//! Extractors: who is calling (and how), from which address, with which query and body
//! (JSON, or a form where RPort's clients send one).

use std::marker::PhantomData;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, RawQuery, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;

use crate::auth::credentials::{Credentials, credentials};
use crate::domain::permissions::AuthUser;

use super::login::{check_basic, check_bearer, check_scope};
use super::{ApiError, AppState};

/// An authenticated API user: extracting it refuses the request with 401 otherwise.
pub struct Authenticated(pub AuthUser);

impl FromRequestParts<Arc<AppState>> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let ClientIp(ip) = ClientIp::from_request_parts(parts, state).await?;
        match credentials(&parts.headers) {
            Some(Credentials::Basic(user, password)) => {
                check_basic(state, ip, &user, &password).await
            }
            Some(Credentials::Bearer(token)) => check_bearer(state, ip, &token, parts).await,
            // The console's session cookie, only when no Authorization header is sent.
            None => match super::console::session_cookie(&parts.headers) {
                Some(token) => check_bearer(state, ip, &token, parts).await,
                None => Err(ApiError::unauthorized()),
            },
        }
        .and_then(|user| check_scope(user, &parts.method, parts.uri.path()))
        .map(Authenticated)
    }
}

/// A user authenticated by a bearer token only, as API v2 requires: scripts hold a
/// token, never a password.
pub struct BearerAuthenticated(pub AuthUser);

impl FromRequestParts<Arc<AppState>> for BearerAuthenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let ClientIp(ip) = ClientIp::from_request_parts(parts, state).await?;
        match credentials(&parts.headers) {
            Some(Credentials::Bearer(token)) => check_bearer(state, ip, &token, parts)
                .await
                .and_then(|user| check_scope(user, &parts.method, parts.uri.path()))
                .map(BearerAuthenticated),
            _ => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "ERR_CODE_UNAUTHORIZED",
                "Unauthorized",
                "API v2 takes a bearer token (Authorization: Bearer …) from /api/v1/login",
            )),
        }
    }
}

/// The address the request comes from, as [`crate::auth::client_ip`] decides it.
pub struct ClientIp(pub std::net::IpAddr);

impl FromRequestParts<Arc<AppState>> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip())
            .ok_or_else(|| ApiError::internal("request without peer address"))?;
        Ok(ClientIp(crate::auth::client_ip::client_ip(
            peer,
            &parts.headers,
            &state.config.api.trusted_proxies,
        )))
    }
}

/// Query parameters in order, decoded; a malformed query string is a 400 in our envelope.
pub struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A whole number parameter; absent or empty is `None`, anything else not a number a 400.
    pub fn number(&self, key: &str) -> Result<Option<usize>, ApiError> {
        match self.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|_| {
                ApiError::bad_request(
                    "ERR_CODE_INVALID_REQUEST",
                    format!("Invalid {key}"),
                    format!("{key}={text:?} is not a number"),
                )
            }),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let RawQuery(query) = RawQuery::from_request_parts(parts, state)
            .await
            .unwrap_or(RawQuery(None));
        let pairs =
            serde_urlencoded::from_str::<Vec<(String, String)>>(query.as_deref().unwrap_or(""))
                .map_err(|e| {
                    ApiError::bad_request(
                        "ERR_CODE_INVALID_REQUEST",
                        "Invalid query string",
                        e.to_string(),
                    )
                })?;
        Ok(Params(pairs))
    }
}

/// A type a request body is read into, with the shape to show a caller who sent
/// something else.
pub trait RequestBody: serde::de::DeserializeOwned {
    /// The expected JSON, as the 400 answer shows it, e.g. `{"key": "KEY"}`.
    const SHAPE: &'static str;
}

/// A JSON request body of type `T`. It is parsed when the handler asks for it
/// ([`JsonBody::parse`]), after the permission checks, so a caller who may not do
/// something hears 403 whatever the body holds.
pub struct JsonBody<T> {
    bytes: Bytes,
    shape: PhantomData<T>,
}

impl<T: RequestBody> JsonBody<T> {
    /// The body, or a 400 saying which shape was expected.
    pub fn parse(&self) -> Result<T, ApiError> {
        serde_json::from_slice(&self.bytes).map_err(|err| {
            ApiError::bad_request(
                "ERR_CODE_INVALID_REQUEST",
                "Invalid body",
                format!("expected {}: {err}", T::SHAPE),
            )
        })
    }
}

impl<S: Send + Sync, T> FromRequest<S> for JsonBody<T> {
    /// Axum's own (a body over the size limit): the router's middleware puts it in the
    /// error envelope like any other.
    type Rejection = axum::extract::rejection::BytesRejection;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state).await?;
        Ok(Self {
            bytes,
            shape: PhantomData,
        })
    }
}

/// A request body of type `T` sent as JSON or, when its `Content-Type` says
/// `application/x-www-form-urlencoded`, as a form (RPort's login page posts one). Both are
/// read into the same `T`, so the same fields, rules and bounds hold, and a field `T`
/// does not define is a 400 naming it either way. Lists and maps cannot be written in a
/// form: those fields need JSON. Parsed when the handler asks, as [`JsonBody`] is.
pub struct FormOrJsonBody<T> {
    bytes: Bytes,
    is_form: bool,
    shape: PhantomData<T>,
}

impl<T: RequestBody> FormOrJsonBody<T> {
    /// The body, or a 400 saying which shape was expected.
    pub fn parse(&self) -> Result<T, ApiError> {
        let parsed = if self.is_form {
            serde_urlencoded::from_bytes(&self.bytes).map_err(|err| err.to_string())
        } else {
            serde_json::from_slice(&self.bytes).map_err(|err| err.to_string())
        };
        parsed.map_err(|err| {
            let form = if self.is_form {
                " (as form fields)"
            } else {
                ""
            };
            ApiError::bad_request(
                "ERR_CODE_INVALID_REQUEST",
                "Invalid body",
                format!("expected {}{form}: {err}", T::SHAPE),
            )
        })
    }

    /// Nothing was sent.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl<S: Send + Sync, T> FromRequest<S> for FormOrJsonBody<T> {
    type Rejection = axum::extract::rejection::BytesRejection;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_form = request
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|mime| {
                mime.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        let bytes = Bytes::from_request(request, state).await?;
        Ok(Self {
            bytes,
            is_form,
            shape: PhantomData,
        })
    }
}
