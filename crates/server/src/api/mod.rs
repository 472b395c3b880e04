//! The REST API: RPort-compatible `/api/v1`, JSON in `{"data": ...}` envelopes and errors as
//! `{"errors":[{"code","title","detail"}]}`.

mod api_tokens;
mod audit_log;
mod clients;
mod clients_auth;
mod openapi;
mod port_tunnels;
mod projects;
mod session;
mod tunnels;
mod users;

use std::sync::Arc;

use axum::extract::{FromRequestParts, RawQuery};
use axum::http::Method;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use axum::{Json, Router};
use base64::Engine;
use rport_protocol::Fingerprint;
use serde_json::json;

use crate::agent_auth::AgentAuthenticator;
use crate::api_auth::{ApiAuth, AuthUser};
use crate::audit::{Actor, AuditLog, Event};
use crate::bans::BanList;
use crate::config::ServerConfig;
use crate::registry::Registry;
use crate::tunnels::TunnelManager;
use rport_store::Store;

/// Everything a request handler may need.
pub struct AppState {
    pub config: ServerConfig,
    pub fingerprint: Fingerprint,
    pub registry: Arc<Registry>,
    pub tunnels: Arc<TunnelManager>,
    pub auth: ApiAuth,
    pub store: Arc<dyn Store>,
    pub agent_auth: Arc<AgentAuthenticator>,
    /// Failed API logins and the addresses banned for them.
    pub api_bans: BanList,
    pub audit: Arc<AuditLog>,
}

pub type State = axum::extract::State<Arc<AppState>>;

/// Request bodies are small JSON documents; anything bigger is refused early.
const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn router(state: Arc<AppState>) -> Router {
    routes()
        .router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(errors_in_the_envelope))
        .layer(axum::middleware::from_fn(refuse_cross_site))
        .with_state(state)
}

/// Errors axum produces itself before a handler runs (a body over the size limit, a
/// malformed path) come as plain text; callers get every error in the same JSON envelope.
async fn errors_in_the_envelope(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !status.is_client_error() && !status.is_server_error() || is_json {
        return response;
    }
    let detail = match axum::body::to_bytes(response.into_body(), 4096).await {
        Ok(text) if !text.is_empty() => String::from_utf8_lossy(&text).into_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "ERR_CODE_REQUEST_TOO_LARGE",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "ERR_CODE_UNSUPPORTED_MEDIA_TYPE",
        _ if status.is_server_error() => "ERR_CODE_INTERNAL",
        _ => "ERR_CODE_INVALID_REQUEST",
    };
    ApiError::new(
        status,
        code,
        status.canonical_reason().unwrap_or("Error"),
        detail,
    )
    .into_response()
}

/// Refuses requests a browser sends on behalf of another site. A browser that has cached
/// basic credentials for the API would attach them to a form another page submits; such a
/// request carries that page's `Origin`. Scripts (curl, SDKs) send no `Origin` and pass.
async fn refuse_cross_site(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers();
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let origin_host = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, rest)| rest.trim_end_matches('/'));
        if origin_host.is_none() || origin_host != host {
            return ApiError::forbidden(
                "cross-site request refused: its Origin is not this API's address",
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// The router and the list of what it serves, built from one table: the OpenAPI document
/// is made from the same list, so no route is served without being documented.
pub struct Routes {
    router: Router<Arc<AppState>>,
    pub served: Vec<(Method, &'static str)>,
}

impl Routes {
    fn add<H, T>(mut self, method: Method, path: &'static str, handler: H) -> Self
    where
        H: axum::handler::Handler<T, Arc<AppState>>,
        T: 'static,
    {
        let filter = match method {
            Method::GET => MethodFilter::GET,
            Method::POST => MethodFilter::POST,
            Method::PUT => MethodFilter::PUT,
            Method::DELETE => MethodFilter::DELETE,
            _ => MethodFilter::PATCH,
        };
        self.router = self.router.route(path, on(filter, handler));
        self.served.push((method, path));
        self
    }
}

pub fn routes() -> Routes {
    let routes = Routes {
        router: Router::new(),
        served: Vec::new(),
    };
    routes
        .add(Method::GET, "/api/v1/status", session::status)
        .add(Method::GET, "/api/v1/login", session::login)
        .add(Method::POST, "/api/v1/login", session::login)
        .add(Method::DELETE, "/api/v1/logout", session::logout)
        .add(Method::GET, "/api/v1/me", session::me)
        .add(Method::PUT, "/api/v1/me", session::change_own_password)
        .add(Method::GET, "/api/v1/me/tokens", api_tokens::list)
        .add(Method::POST, "/api/v1/me/tokens", api_tokens::create)
        .add(
            Method::DELETE,
            "/api/v1/me/tokens/{token_id}",
            api_tokens::delete,
        )
        .add(Method::GET, "/api/v1/clients", clients::list)
        .add(Method::GET, "/api/v1/clients/{client_id}", clients::get_one)
        .add(
            Method::DELETE,
            "/api/v1/clients/{client_id}",
            clients::delete,
        )
        .add(
            Method::PUT,
            "/api/v1/clients/{client_id}/tunnels",
            tunnels::create,
        )
        .add(
            Method::DELETE,
            "/api/v1/clients/{client_id}/tunnels/{tunnel_id}",
            tunnels::delete,
        )
        .add(
            Method::PUT,
            "/api/v1/clients/{client_id}/tunnels/{tunnel_id}/acl",
            tunnels::set_acl,
        )
        .add(Method::GET, "/api/v1/tunnels", tunnels::list)
        .add(Method::GET, "/api/v1/projects", projects::list)
        .add(Method::POST, "/api/v1/projects", projects::create)
        .add(
            Method::DELETE,
            "/api/v1/projects/{project_key}",
            projects::delete,
        )
        .add(Method::GET, "/api/v1/auditlog", audit_log::list)
        .add(Method::GET, "/api/v1/clients-auth", clients_auth::list)
        .add(Method::POST, "/api/v1/clients-auth", clients_auth::create)
        .add(
            Method::DELETE,
            "/api/v1/clients-auth/{credential_id}",
            clients_auth::delete,
        )
        .add(Method::GET, "/api/v1/users", users::list)
        .add(Method::POST, "/api/v1/users", users::create)
        .add(Method::GET, "/api/v1/users/{username}", users::get_one)
        .add(Method::PUT, "/api/v1/users/{username}", users::update)
        .add(Method::DELETE, "/api/v1/users/{username}", users::delete)
        .add(Method::GET, "/api/v1/openapi.json", openapi::serve)
        .add(
            Method::GET,
            "/api/v2/{project_key}/port_tunnel",
            port_tunnels::list,
        )
        .add(
            Method::POST,
            "/api/v2/{project_key}/port_tunnel",
            port_tunnels::open,
        )
        .add(
            Method::GET,
            "/api/v2/{project_key}/port_tunnel/{port_tunnel_id}",
            port_tunnels::get_one,
        )
        .add(
            Method::DELETE,
            "/api/v2/{project_key}/port_tunnel/{port_tunnel_id}",
            port_tunnels::close,
        )
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "ERR_CODE_NOT_FOUND",
        "Not found",
        "no such API endpoint",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "ERR_CODE_METHOD_NOT_ALLOWED",
        "Method not allowed",
        "this endpoint does not support that method",
    )
}

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

    fn unauthorized() -> Self {
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

/// `{"data": value}`
pub fn data(value: serde_json::Value) -> Response {
    Json(json!({ "data": value })).into_response()
}

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
                check_login(state, ip, &user, &password).await
            }
            Some(Credentials::Bearer(token)) => check_bearer(state, ip, &token).await,
            None => Err(ApiError::unauthorized()),
        }
        .and_then(|user| check_scope(user, &parts.method))
        .map(Authenticated)
    }
}

/// An API token of `read` scope may only read.
fn check_scope(user: AuthUser, method: &axum::http::Method) -> Result<AuthUser, ApiError> {
    if user.read_only && !matches!(*method, axum::http::Method::GET | axum::http::Method::HEAD) {
        return Err(ApiError::forbidden(
            "this API token has read scope: it may only read",
        ));
    }
    Ok(user)
}

impl ApiError {
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "ERR_CODE_FORBIDDEN",
            "Forbidden",
            detail,
        )
    }
}

/// Checks a password, counting failures against the caller's address and the user name:
/// past `[api] max_failed_login` the address is refused (429) for `ban_time`. Once a
/// user name has had that many failures, any further wrong password for it bans the
/// address it came from at once, so guessing from many addresses gains nothing; the
/// right password still works from an address that is not banned, so nobody can lock
/// a user out. The name reaches the ban table, the audit log and the log only in its
/// bounded form ([`crate::bounded`]).
pub async fn check_login(
    state: &AppState,
    ip: std::net::IpAddr,
    username: &str,
    password: &str,
) -> Result<AuthUser, ApiError> {
    let ip_key = format!("ip:{}", crate::bans::address_key(ip));
    if let Some(remaining) = state.api_bans.banned_for(&ip_key) {
        return Err(ApiError::banned(remaining));
    }
    if let Some(user) = state.auth.check_password(username, password).await {
        state.api_bans.record_success(&ip_key);
        return Ok(user);
    }
    let shown = crate::bounded::bounded(username);
    let user_key = format!("user:{shown}");
    state.api_bans.record_failure(&user_key);
    let user_under_attack = state.api_bans.failures(&user_key) >= state.api_bans.limit();
    let ban = if user_under_attack {
        state
            .api_bans
            .record_failures(&ip_key, state.api_bans.limit())
    } else {
        state.api_bans.record_failure(&ip_key)
    };
    let event = Event {
        action: "login",
        resource: &shown,
        project: None,
        success: false,
        detail: match ban {
            Some(ban) => format!("wrong password; address banned for {} s", ban.as_secs()),
            None => "wrong password".to_owned(),
        },
    };
    state.audit.record(&Actor::user(&shown, ip), event).await;
    match ban {
        Some(remaining) => {
            tracing::warn!(%ip, user = %shown, "API login failed; address banned for {}s", remaining.as_secs());
            Err(ApiError::banned(remaining))
        }
        None => {
            tracing::info!(%ip, user = %shown, "API login failed");
            Err(ApiError::unauthorized())
        }
    }
}

/// Checks a bearer token; invalid ones count as failed logins of the address. The token
/// itself is neither logged nor kept.
async fn check_bearer(
    state: &AppState,
    ip: std::net::IpAddr,
    token: &str,
) -> Result<AuthUser, ApiError> {
    let ip_key = format!("ip:{}", crate::bans::address_key(ip));
    if let Some(remaining) = state.api_bans.banned_for(&ip_key) {
        return Err(ApiError::banned(remaining));
    }
    if let Some(user) = state.auth.check_token(token).await {
        return Ok(user);
    }
    match state.api_bans.record_failure(&ip_key) {
        Some(remaining) => Err(ApiError::banned(remaining)),
        None => Err(ApiError::unauthorized()),
    }
}

/// What the `Authorization` header carries. Never shows a secret in `Debug`.
pub enum Credentials {
    Basic(String, String),
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic(user, _) => write!(f, "Basic({user}, ***)"),
            Credentials::Bearer(_) => f.write_str("Bearer(***)"),
        }
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
            Some(Credentials::Bearer(token)) => check_bearer(state, ip, &token)
                .await
                .and_then(|user| check_scope(user, &parts.method))
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

/// The address the request comes from, as [`crate::client_ip`] decides it.
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
        Ok(ClientIp(crate::client_ip::client_ip(
            peer,
            &parts.headers,
            &state.config.api.trusted_proxies,
        )))
    }
}

pub fn credentials(headers: &HeaderMap) -> Option<Credentials> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, password) = decoded.split_once(':')?;
        Some(Credentials::Basic(user.to_owned(), password.to_owned()))
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Credentials::Bearer(rest.trim().to_owned()))
    } else {
        None
    }
}

/// The host users reach tunnel ports at: `[server] tunnel_host`, else the host of the first
/// `[server] url`, else (when that is a wildcard address) the host this request was sent to.
pub fn public_host(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(host) = &state.config.server.tunnel_host {
        return host.clone();
    }
    state.config.server.url_host().unwrap_or_else(|| {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(crate::config::host_part)
            .unwrap_or_default()
    })
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

/// A JSON request body, or a 400 saying what was `expected`.
pub fn json_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    expected: &str,
) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|err| {
        ApiError::bad_request(
            "ERR_CODE_INVALID_REQUEST",
            "Invalid body",
            format!("expected {expected}: {err}"),
        )
    })
}

/// A time as every API answer shows it (RFC 3339, milliseconds, UTC), or null.
pub fn time_json(time: Option<chrono::DateTime<chrono::Utc>>) -> serde_json::Value {
    time.map_or(serde_json::Value::Null, |t| {
        json!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    })
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
