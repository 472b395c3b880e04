//! Checking a caller's password or token against the users, the bans and the audit log.

use crate::domain::audit::{Actor, Event};
use crate::domain::bounded::bounded;
use crate::domain::permissions::AuthUser;
use crate::domain::source::source_key;

use super::{ApiError, AppState};

/// What an API token's scope allows, as RPort decides it: `read` only GET requests
/// outside `/ws`, `clients-auth` only paths about agent credentials.
pub(super) fn check_scope(
    user: AuthUser,
    method: &axum::http::Method,
    path: &str,
) -> Result<AuthUser, ApiError> {
    let reads = matches!(*method, axum::http::Method::GET | axum::http::Method::HEAD);
    if user.read_only && (!reads || path.contains("/ws")) {
        return Err(ApiError::forbidden(
            "this API token has read scope: it may only read",
        ));
    }
    if user.clients_auth_only && !path.contains("clients-auth") {
        return Err(ApiError::forbidden(
            "this API token has clients-auth scope: it may only manage agent credentials (/api/v1/clients-auth)",
        ));
    }
    Ok(user)
}

/// RPort's answer to a user whose password has expired: only `POST /api/v1/login` with
/// a `new_password` lets it in again.
pub(super) fn refuse_expired(user: AuthUser) -> Result<AuthUser, ApiError> {
    if user.password_expired {
        return Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "ERR_CODE_PASSWORD_EXPIRED",
            "password has expired, please change your password",
            "log in with POST /api/v1/login and a new_password to set a new one",
        ));
    }
    Ok(user)
}

/// The ban table's key for `ip`, or 429 while that address is banned.
fn unbanned_address(state: &AppState, ip: std::net::IpAddr) -> Result<String, ApiError> {
    let ip_key = format!("ip:{}", source_key(ip));
    match state.api_bans.banned_for(&ip_key) {
        Some(remaining) => Err(ApiError::banned(remaining)),
        None => Ok(ip_key),
    }
}

/// HTTP basic auth: the password may be one of the user's API tokens (as RPort's
/// scripts send them, `-u user:TOKEN`); otherwise it is checked as a password, a wrong
/// one counting towards a ban, unless `[api] totp_enabled` turns passwords off here.
pub(super) async fn check_basic(
    state: &AppState,
    ip: std::net::IpAddr,
    username: &str,
    password: &str,
) -> Result<AuthUser, ApiError> {
    unbanned_address(state, ip)?;
    let by_token = state.auth.check_api_token_of(username, password).await;
    if let Some(user) = by_token.map_err(ApiError::internal)? {
        return Ok(user);
    }
    basic_auth_allowed(state)?;
    check_login(state, ip, username, password)
        .await
        .and_then(refuse_expired)
}

/// Checks a password, counting failures against the caller's address and the user name:
/// past `[api] max_failed_login` the address is refused (429) for `ban_time`. Once a
/// user name has had that many failures, any further wrong password for it bans the
/// address it came from at once, so guessing from many addresses gains nothing; the
/// right password still works from an address that is not banned, so nobody can lock
/// a user out. The name reaches the ban table, the audit log and the log only in its
/// bounded form ([`crate::domain::bounded`]).
pub async fn check_login(
    state: &AppState,
    ip: std::net::IpAddr,
    username: &str,
    password: &str,
) -> Result<AuthUser, ApiError> {
    let ip_key = unbanned_address(state, ip)?;
    // A store that does not answer is the server's trouble, not a wrong password.
    let checked = state.auth.check_password(username, password).await;
    if let Some(user) = checked.map_err(ApiError::internal)? {
        state.api_bans.record_success(&ip_key);
        return Ok(user);
    }
    Err(failed_login(state, ip, username, "wrong password").await)
}

/// Counts a failed login (a wrong password, or a wrong second-factor code: `what`) of
/// `username` from `ip` as [`check_login`] describes, and says so in the audit log and
/// the log; returns the answer to give (401, or 429 once banned).
pub async fn failed_login(
    state: &AppState,
    ip: std::net::IpAddr,
    username: &str,
    what: &str,
) -> ApiError {
    let ip_key = format!("ip:{}", source_key(ip));
    let shown = bounded(username);
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
            Some(ban) => format!("{what}; address banned for {} s", ban.as_secs()),
            None => what.to_owned(),
        },
    };
    state.audit.record(&Actor::user(&shown, ip), event).await;
    match ban {
        Some(remaining) => {
            tracing::warn!(%ip, user = %shown, "API login failed ({what}); address banned for {}s", remaining.as_secs());
            ApiError::banned(remaining)
        }
        None => {
            tracing::info!(%ip, user = %shown, "API login failed ({what})");
            ApiError::unauthorized()
        }
    }
}

/// Checks a bearer token; invalid ones count as failed logins of the address. The token
/// itself is neither logged nor kept. A token whose scope does not cover this request (a
/// second-factor token anywhere but `/verify-2fa`) is refused without counting.
pub(super) async fn check_bearer(
    state: &AppState,
    ip: std::net::IpAddr,
    token: &str,
    request: &axum::http::request::Parts,
) -> Result<AuthUser, ApiError> {
    let ip_key = unbanned_address(state, ip)?;
    let user_agent = request
        .headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let used = crate::auth::api_callers::SessionUse { user_agent, ip };
    let checked = state.auth.check_token(token, &used).await;
    if let Some((user, scope)) = checked.map_err(ApiError::internal)? {
        if !scope.allows(request.method.as_str(), request.uri.path()) {
            return Err(ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "ERR_CODE_UNAUTHORIZED",
                "Unauthorized",
                "this token is for the second factor only: POST /api/v1/verify-2fa first",
            ));
        }
        return Ok(user);
    }
    match state.api_bans.record_failure(&ip_key) {
        Some(remaining) => Err(ApiError::banned(remaining)),
        None => Err(ApiError::unauthorized()),
    }
}

/// With `[api] totp_enabled`, a password alone must not open the API: basic auth is
/// refused unchecked (RPort's rule; bearer and API tokens still work).
pub(super) fn basic_auth_allowed(state: &AppState) -> Result<(), ApiError> {
    if state.config.api.totp_enabled {
        return Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "ERR_CODE_UNAUTHORIZED",
            "Unauthorized",
            "basic auth with a password is off while [api] totp_enabled is on: \
             log in at /api/v1/login and send the bearer token",
        ));
    }
    Ok(())
}
