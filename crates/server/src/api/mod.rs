//! The REST API: RPort-compatible `/api/v1` and JFrog Connect's `/api/v2`, JSON in
//! `{"data": ...}` envelopes and errors as `{"errors":[{"code","title","detail"}]}`.
//!
//! This module holds what every handler shares (the state, the router and its
//! middleware); handlers live in `v1/` and `v2/`, one module per resource.

pub mod console;
mod doc_root;
mod error;
pub mod events;
mod extract;
mod forward;
pub mod list_options;
mod login;
mod openapi;
pub mod peer_relay;
mod reply;
mod routes;
pub mod scrape;
pub mod v1;
pub mod v2;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rport_protocol::Fingerprint;
use rport_store::Store;

use crate::auth::agent_credentials::AgentAuthenticator;
use crate::auth::api_callers::ApiAuth;
use crate::auth::bans::BanList;
use crate::cluster::Cluster;
use crate::cluster::peer::PeerClient;
use crate::config::ServerConfig;
use crate::domain::audit::AuditLog;
use crate::domain::registry::Registry;
use crate::metrics::Metrics;
use crate::tunnels::TunnelManager;

pub use error::ApiError;
pub use extract::{
    Authenticated, BearerAuthenticated, ClientIp, FormOrJsonBody, JsonBody, Params, RequestBody,
};
pub use login::{check_login, failed_login};
pub use reply::{data, listing, time_json};
use routes::method_not_allowed;
pub use routes::routes;

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
    /// The nodes sharing the store, this one among them.
    pub cluster: Arc<Cluster>,
    /// Requests to the other nodes (`forward`).
    pub peers: Arc<PeerClient>,
    /// What `GET /metrics` reports; the request counting middleware adds to it.
    pub metrics: Arc<Metrics>,
    /// The console's live event streams (`/api/v1/events`).
    pub events: Arc<events::EventStreams>,
}

pub type State = axum::extract::State<Arc<AppState>>;

/// Request bodies are small JSON documents; anything bigger is refused early.
const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn router(state: Arc<AppState>) -> Router {
    routes()
        .router
        .route(
            peer_relay::PROXY_RELAY_PATH,
            axum::routing::post(peer_relay::proxy_relay),
        )
        .route("/", axum::routing::any(console::root))
        .route("/console", axum::routing::any(console::index))
        .route("/console/", axum::routing::any(console::index))
        .route("/console/{*path}", axum::routing::any(console::asset))
        .fallback(doc_root::serve)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(errors_in_the_envelope))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            refuse_cross_site,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            count_requests,
        ))
        .layer(axum::middleware::from_fn(console::security_headers))
        // For `forward`, whose middleware sits on single routes, below `with_state`.
        .layer(axum::Extension(Arc::clone(&state)))
        .with_state(state)
}

/// The route templates the metrics count requests by: every route of the table and the
/// peer relay's. Any other path counts as `other`, so the labels stay a fixed set.
pub fn route_templates() -> Vec<&'static str> {
    let mut templates: Vec<&'static str> =
        routes().served.into_iter().map(|(_, path)| path).collect();
    templates.push(peer_relay::PROXY_RELAY_PATH);
    templates.sort_unstable();
    templates.dedup();
    templates
}

/// Counts every request by its route's template (never the raw path) with its method,
/// status and duration, for `GET /metrics`.
async fn count_requests(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .cloned();
    let method = request.method().clone();
    let response = next.run(request).await;
    state.metrics.api.record(
        route.as_ref().map(|route| route.as_str()),
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
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
/// Behind a reverse proxy the browser's address is the proxy's: a trusted proxy's
/// `X-Forwarded-Host` (and `X-Forwarded-Proto`) say what it was. A browser cannot set
/// those headers on a cross-site request without a CORS preflight, which the API never
/// allows, so believing them from a trusted proxy lets no other site in.
/// A write authenticated by the console's session cookie alone must also show where it
/// comes from ([`console::cookie_write_refused`]).
async fn refuse_cross_site(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers();
    if console::cookie_write_refused(request.method(), headers) {
        return ApiError::forbidden(
            "a request that changes something with the session cookie must come from the console (Origin or Sec-Fetch-Site: same-origin)",
        )
        .into_response();
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let peer = request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip());
        let trusted = &state.config.api.trusted_proxies;
        let via_trusted_proxy = peer.is_some_and(|peer| {
            let peer = rport_protocol::ip_rules::canonical(peer);
            trusted.iter().any(|net| net.contains(peer))
        });
        let forwarded = |name: &str| {
            via_trusted_proxy
                .then(|| headers.get(name)?.to_str().ok())
                .flatten()
                .and_then(|value| value.split(',').next())
                .map(str::trim)
                .filter(|value| !value.is_empty())
        };
        let proxied_host = forwarded("x-forwarded-host");
        let host = proxied_host.or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()));
        let same_site = origin.to_str().ok().is_some_and(|origin| {
            origin_matches(
                origin,
                host,
                forwarded("x-forwarded-proto"),
                proxied_host.is_some(),
            )
        });
        if !same_site {
            return ApiError::forbidden(
                "cross-site request refused: its Origin is not this API's address",
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// Whether `origin` (`scheme://host[:port]`) is the address the request was sent to:
/// `host` (the `Host` header, or a trusted proxy's `X-Forwarded-Host`) and, when a
/// trusted proxy says it, `proto`. A proxy's host without a port (nginx's `$host`)
/// matches the origin's host name whatever its port.
fn origin_matches(origin: &str, host: Option<&str>, proto: Option<&str>, from_proxy: bool) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let Some(host) = host else {
        return false;
    };
    let authority = authority.trim_end_matches('/');
    if proto.is_some_and(|proto| !scheme.eq_ignore_ascii_case(proto)) {
        return false;
    }
    let has_port = |authority: &str| {
        authority
            .rsplit_once(':')
            .is_some_and(|(_, port)| !port.contains(']'))
    };
    if from_proxy && !has_port(host) {
        return crate::config::host_part(authority)
            .eq_ignore_ascii_case(&crate::config::host_part(host));
    }
    authority.eq_ignore_ascii_case(host)
}

/// The host users reach `tunnel`'s port at: its node's, when another node holds it.
pub fn host_of_tunnel(
    state: &AppState,
    tunnel: &rport_store::TunnelRecord,
    public_host: &str,
) -> String {
    tunnel
        .owner_node
        .as_deref()
        .and_then(|node| state.cluster.public_host_of(node))
        .unwrap_or_else(|| public_host.to_owned())
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
