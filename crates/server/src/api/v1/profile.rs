//! What RPort's UI and scripts ask before and around a login: which login to use
//! (`/auth/provider`), the caller's address as the server sees it (`/me/ip`), and the
//! answer RPort gives for its retired single-token endpoint (`/me/token`).

use axum::extract::State as StateExtractor;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use crate::api::{ApiError, Authenticated, ClientIp, State, data};

/// RPort's name for the login it has built in (as opposed to its Plus OAuth providers).
const BUILT_IN_PROVIDER: &str = "built-in";

/// `GET /api/v1/auth/provider`, asked before login, so without authentication: rportd
/// has only the built-in login (user and password, then a bearer token).
pub async fn auth_provider(StateExtractor(state): State) -> Response {
    let hours = state.config.api.max_token_lifetime.as_secs() / 3600;
    data(json!({
        "auth_provider": BUILT_IN_PROVIDER,
        "settings_uri": "",
        "device_settings_uri": "",
        "max_token_lifetime": hours,
    }))
}

/// `GET /api/v1/me/ip`: the caller's address, `X-Forwarded-For` believed only from
/// `[api] trusted_proxies` (RPort believes anyone's).
pub async fn my_ip(Authenticated(_): Authenticated, ClientIp(ip): ClientIp) -> Response {
    data(json!({ "ip": ip.to_string() }))
}

/// `/api/v1/me/token` (GET, POST) and `/api/v1/me/token/{prefix}` (PUT, DELETE): RPort
/// replaced its one token per user by `/me/tokens` and answers 410 here.
pub async fn single_token_gone(Authenticated(_): Authenticated) -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "ERR_CODE_GONE",
        "use new token management on /me/tokens",
        "this endpoint was replaced by /api/v1/me/tokens",
    )
}
