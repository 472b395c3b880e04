//! The route table: every endpoint and its handler, from which both the router and the
//! OpenAPI document are built.

use std::sync::Arc;

use axum::Router;
use axum::http::{Method, StatusCode};
use axum::routing::{MethodFilter, on};

use super::forward::{self, Owner};
use super::v1::{
    api_tokens, audit_log, client_attributes, client_groups, client_tags, clients, clients_auth,
    profile, projects, session, sessions, stored_tunnels, totp, tunnels, user_groups, users,
};
use super::v2::port_tunnels;
use super::{ApiError, AppState, openapi};

/// The router and the list of what it serves, built from one table: the OpenAPI document
/// is made from the same list, so no route is served without being documented.
pub struct Routes {
    pub(super) router: Router<Arc<AppState>>,
    pub served: Vec<(Method, &'static str)>,
}

impl Routes {
    fn add<H, T>(self, method: Method, path: &'static str, handler: H) -> Self
    where
        H: axum::handler::Handler<T, Arc<AppState>>,
        T: 'static,
    {
        self.add_with(method, path, handler, None)
    }

    /// A route that runs on the node holding the agent or tunnel `owner` names; another
    /// node forwards it there (`forward`).
    fn add_at_owner<H, T>(
        self,
        method: Method,
        path: &'static str,
        handler: H,
        owner: Owner,
    ) -> Self
    where
        H: axum::handler::Handler<T, Arc<AppState>>,
        T: 'static,
    {
        self.add_with(method, path, handler, Some(owner))
    }

    fn add_with<H, T>(
        mut self,
        method: Method,
        path: &'static str,
        handler: H,
        owner: Option<Owner>,
    ) -> Self
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
        let mut route = on(filter, handler);
        if let Some(owner) = owner {
            route = route.route_layer(axum::middleware::from_fn_with_state(
                owner,
                forward::to_owner,
            ));
        }
        self.router = self.router.route(path, route);
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
        .add_at_owner(
            Method::PUT,
            "/api/v1/clients/{client_id}/tunnels",
            tunnels::create,
            Owner::Agent,
        )
        .add_at_owner(
            Method::DELETE,
            "/api/v1/clients/{client_id}/tunnels/{tunnel_id}",
            tunnels::delete,
            Owner::Tunnel,
        )
        .add_at_owner(
            Method::PUT,
            "/api/v1/clients/{client_id}/tunnels/{tunnel_id}/acl",
            tunnels::set_acl,
            Owner::Tunnel,
        )
        .add_at_owner(
            Method::GET,
            "/api/v1/tunnels",
            tunnels::list,
            Owner::LiveTunnelsOfAgent,
        )
        .add(Method::GET, "/api/v1/projects", projects::list)
        .add(Method::POST, "/api/v1/projects", projects::create)
        .add(
            Method::DELETE,
            "/api/v1/projects/{project_key}",
            projects::delete,
        )
        .add(Method::GET, "/api/v1/auditlog", audit_log::list)
        // stored tunnels (RPort's tunnel templates); starting one runs where its agent is
        .add(
            Method::GET,
            "/api/v1/clients/{client_id}/stored-tunnels",
            stored_tunnels::list,
        )
        .add(
            Method::POST,
            "/api/v1/clients/{client_id}/stored-tunnels",
            stored_tunnels::create,
        )
        .add(
            Method::PUT,
            "/api/v1/clients/{client_id}/stored-tunnels/{stored_tunnel_id}",
            stored_tunnels::update,
        )
        .add(
            Method::DELETE,
            "/api/v1/clients/{client_id}/stored-tunnels/{stored_tunnel_id}",
            stored_tunnels::delete,
        )
        .add_at_owner(
            Method::POST,
            "/api/v1/clients/{client_id}/stored-tunnels/{stored_tunnel_id}/start",
            stored_tunnels::start,
            Owner::Agent,
        )
        .add(Method::GET, "/api/v1/clients-auth", clients_auth::list)
        .add(Method::POST, "/api/v1/clients-auth", clients_auth::create)
        .add(
            Method::DELETE,
            "/api/v1/clients-auth/{credential_id}",
            clients_auth::delete,
        )
        // Issue 17, lists and client groups: client groups, tags, attributes, ACL, one credential.
        .add(Method::GET, "/api/v1/client-groups", client_groups::list)
        .add(Method::POST, "/api/v1/client-groups", client_groups::create)
        .add(
            Method::GET,
            "/api/v1/client-groups/{group_id}",
            client_groups::get_one,
        )
        .add(
            Method::PUT,
            "/api/v1/client-groups/{group_id}",
            client_groups::update,
        )
        .add(
            Method::DELETE,
            "/api/v1/client-groups/{group_id}",
            client_groups::delete,
        )
        .add(Method::GET, "/api/v1/client-tags", client_tags::list)
        .add(
            Method::GET,
            "/api/v1/clients/{client_id}/attributes",
            client_attributes::get,
        )
        .add(
            Method::PUT,
            "/api/v1/clients/{client_id}/attributes",
            client_attributes::put,
        )
        .add(
            Method::POST,
            "/api/v1/clients/{client_id}/acl",
            client_attributes::set_acl,
        )
        .add(
            Method::GET,
            "/api/v1/clients-auth/{credential_id}",
            clients_auth::get_one,
        )
        .add(Method::GET, "/api/v1/users", users::list)
        .add(Method::POST, "/api/v1/users", users::create)
        .add(Method::GET, "/api/v1/users/{username}", users::get_one)
        .add(Method::PUT, "/api/v1/users/{username}", users::update)
        .add(Method::DELETE, "/api/v1/users/{username}", users::delete)
        .add(Method::GET, "/api/v1/user-groups", user_groups::list)
        .add(
            Method::GET,
            "/api/v1/user-groups/{name}",
            user_groups::get_one,
        )
        .add(
            Method::PUT,
            "/api/v1/user-groups/{name}",
            user_groups::update,
        )
        .add(
            Method::DELETE,
            "/api/v1/user-groups/{name}",
            user_groups::delete,
        )
        // Login sessions and the second factor (TOTP).
        .add(
            Method::GET,
            "/api/v1/users/{username}/sessions",
            sessions::list,
        )
        .add(
            Method::DELETE,
            "/api/v1/users/{username}/sessions",
            sessions::delete_all,
        )
        .add(
            Method::DELETE,
            "/api/v1/users/{username}/sessions/{session_id}",
            sessions::delete_one,
        )
        .add(
            Method::DELETE,
            "/api/v1/users/{username}/totp-secret",
            totp::delete_of_user,
        )
        // The caller's own login sessions (the console's "My sessions").
        .add(Method::GET, "/api/v1/me/sessions", sessions::list_own)
        .add(
            Method::DELETE,
            "/api/v1/me/sessions",
            sessions::delete_own_others,
        )
        .add(
            Method::DELETE,
            "/api/v1/me/sessions/{session_id}",
            sessions::delete_own_one,
        )
        .add(Method::GET, "/api/v1/me/totp-secret", totp::get_own)
        .add(Method::POST, "/api/v1/me/totp-secret", totp::create_own)
        .add(Method::DELETE, "/api/v1/me/totp-secret", totp::delete_own)
        .add(Method::POST, "/api/v1/verify-2fa", totp::verify)
        .add(Method::GET, "/api/v1/openapi.json", openapi::serve)
        // RPort's login page and profile extras (issue 17, auth).
        .add(Method::GET, "/api/v1/auth/provider", profile::auth_provider)
        .add(Method::GET, "/api/v1/me/ip", profile::my_ip)
        .add(Method::GET, "/api/v1/me/token", profile::single_token_gone)
        .add(Method::POST, "/api/v1/me/token", profile::single_token_gone)
        .add(
            Method::PUT,
            "/api/v1/me/token/{token_prefix}",
            profile::single_token_gone,
        )
        .add(
            Method::DELETE,
            "/api/v1/me/token/{token_prefix}",
            profile::single_token_gone,
        )
        .add(
            Method::PUT,
            "/api/v1/me/tokens/{token_id}",
            api_tokens::update,
        )
        .add(
            Method::GET,
            "/api/v2/{project_key}/port_tunnel",
            port_tunnels::list,
        )
        .add_at_owner(
            Method::POST,
            "/api/v2/{project_key}/port_tunnel",
            port_tunnels::open,
            Owner::DeviceInBody,
        )
        .add(
            Method::GET,
            "/api/v2/{project_key}/port_tunnel/{port_tunnel_id}",
            port_tunnels::get_one,
        )
        .add_at_owner(
            Method::DELETE,
            "/api/v2/{project_key}/port_tunnel/{port_tunnel_id}",
            port_tunnels::close,
            Owner::PortTunnel,
        )
        // Issue 18, metrics: Prometheus' text (docs/metrics.md).
        .add(Method::GET, "/metrics", super::scrape::metrics)
        // the web console's live updates
        .add(Method::GET, "/api/v1/events", crate::api::events::stream)
}

pub(super) async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "ERR_CODE_NOT_FOUND",
        "Not found",
        "no such API endpoint",
    )
}

pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "ERR_CODE_METHOD_NOT_ALLOWED",
        "Method not allowed",
        "this endpoint does not support that method",
    )
}
