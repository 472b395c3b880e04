//! Two-factor logins with TOTP, as RPort has them under `[api] totp_enabled`: the second
//! step of `/login`, `/verify-2fa`, the caller's own secret at `/me/totp-secret`, and an
//! administrator's reset at `/users/{user_id}/totp-secret`.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State as StateExtractor};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use crate::api::{ApiError, AppState, Authenticated, ClientIp, Params, State, data};
use crate::auth::api_callers::{SessionUse, TokenScope};
use crate::auth::credentials::{Credentials, credentials};
use crate::auth::qr_png::qr_png;
use crate::auth::totp::TotpSecret;
use crate::domain::audit::{Actor, Event};
use crate::domain::permissions::AuthUser;

use super::sessions::{self, user_agent};

/// RPort's `two_fa.delivery_method` for TOTP.
const DELIVERY_METHOD: &str = "totp_authenticator_app";

/// The answer to a right password while TOTP is on: a token good only for `/verify-2fa`
/// (and, for a user without a secret yet, for creating one), and whether the user has a
/// secret (`totp_key_status`).
pub async fn second_factor_due(
    state: &AppState,
    user: &AuthUser,
    lifetime: Duration,
    used: &SessionUse<'_>,
) -> Result<Response, ApiError> {
    let has_secret = stored_secret(state, &user.username).await?.is_some();
    let scope = if has_secret {
        TokenScope::SecondFactor
    } else {
        TokenScope::SecondFactorAndTotpSetup
    };
    let token = sessions::open(state, user, lifetime, scope, used).await?;
    Ok(data(json!({
        "token": token,
        "two_fa": {
            "send_to": "",
            "delivery_method": DELIVERY_METHOD,
            "totp_key_status": if has_secret { "exists" } else { "pending" },
        },
    })))
}

fn totp_disabled() -> ApiError {
    ApiError::bad_request(
        "ERR_CODE_TOTP_DISABLED",
        "TotP is disabled",
        "time-based one-time passwords are off: set [api] totp_enabled = true",
    )
}

fn require_totp(state: &AppState) -> Result<(), ApiError> {
    if state.config.api.totp_enabled {
        Ok(())
    } else {
        Err(totp_disabled())
    }
}

/// The user's secret; a stored one that is not base32 is damage the operator must see.
async fn stored_secret(state: &AppState, username: &str) -> Result<Option<TotpSecret>, ApiError> {
    let Some(text) = state
        .store
        .get_totp_secret(username)
        .await
        .map_err(ApiError::internal)?
    else {
        return Ok(None);
    };
    TotpSecret::from_base32(&text).map(Some).ok_or_else(|| {
        ApiError::internal(format!(
            "the stored TOTP secret of user {:?} is not base32",
            crate::domain::bounded::bounded(username)
        ))
    })
}

fn no_secret() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "ERR_CODE_NOT_FOUND",
        "time based one time secret key should be generated for this user",
        "POST /api/v1/me/totp-secret makes one",
    )
}

/// RPort's `TotP`: the secret and its QR code, a base64 PNG. Not in a `data` envelope,
/// as in RPort.
fn secret_reply(state: &AppState, username: &str, secret: &TotpSecret) -> Response {
    let url = secret.otpauth_url(username, &state.config.api.totp_account_name);
    let qr = qr_png(&url)
        .map(|png| base64::engine::general_purpose::STANDARD.encode(png))
        .unwrap_or_default();
    axum::Json(json!({ "secret": secret.base32(), "qr": qr })).into_response()
}

fn refuse_api_tokens(user: &AuthUser) -> Result<(), ApiError> {
    if user.api_token {
        return Err(ApiError::forbidden(
            "API tokens cannot read or change the second factor",
        ));
    }
    Ok(())
}

/// `GET /api/v1/me/totp-secret`
pub async fn get_own(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
) -> Result<Response, ApiError> {
    require_totp(&state)?;
    refuse_api_tokens(&user)?;
    let secret = stored_secret(&state, &user.username)
        .await?
        .ok_or_else(no_secret)?;
    Ok(secret_reply(&state, &user.username, &secret))
}

/// `POST /api/v1/me/totp-secret`: makes the caller's secret, once (409 when it has one).
pub async fn create_own(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    ClientIp(ip): ClientIp,
) -> Result<Response, ApiError> {
    require_totp(&state)?;
    refuse_api_tokens(&user)?;
    let secret = TotpSecret::generate();
    let created = state
        .store
        .insert_totp_secret(&user.username, secret.base32(), chrono::Utc::now())
        .await
        .map_err(ApiError::internal)?;
    if !created {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ERR_CODE_ALREADY_EXIST",
            "cannot create new totP secret when another one already exists",
            "delete it first (DELETE /api/v1/me/totp-secret, or an administrator's \
             DELETE /api/v1/users/{user_id}/totp-secret)",
        ));
    }
    audit(
        &state,
        &user.username,
        ip,
        "user.totp.create",
        &user.username,
    )
    .await;
    Ok(secret_reply(&state, &user.username, &secret))
}

/// `DELETE /api/v1/me/totp-secret`
pub async fn delete_own(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    ClientIp(ip): ClientIp,
) -> Result<StatusCode, ApiError> {
    require_totp(&state)?;
    refuse_api_tokens(&user)?;
    state
        .store
        .delete_totp_secret(&user.username)
        .await
        .map_err(ApiError::internal)?;
    audit(
        &state,
        &user.username,
        ip,
        "user.totp.delete",
        &user.username,
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/users/{user_id}/totp-secret`: an administrator resets a user's secret.
pub async fn delete_of_user(
    StateExtractor(state): State,
    Authenticated(caller): Authenticated,
    ClientIp(ip): ClientIp,
    Path(username): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller
        .require_server_admin("resetting a user's second factor")
        .map_err(ApiError::forbidden)?;
    require_totp(&state)?;
    let known = crate::auth::users::Users::new(state.store.as_ref(), &state.config.api)
        .get(&username)
        .await
        .map_err(ApiError::internal)?
        .is_some();
    if !known {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "ERR_CODE_USER_NOT_FOUND",
            "user not found",
            format!("no user {:?}", crate::domain::bounded::bounded(&username)),
        ));
    }
    state
        .store
        .delete_totp_secret(&username)
        .await
        .map_err(ApiError::internal)?;
    audit(&state, &caller.username, ip, "user.totp.delete", &username).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn audit(
    state: &AppState,
    actor: &str,
    ip: std::net::IpAddr,
    action: &'static str,
    user: &str,
) {
    let event = Event {
        action,
        resource: user,
        project: None,
        success: true,
        detail: String::new(),
    };
    state.audit.record(&Actor::user(actor, ip), event).await;
}

#[derive(Deserialize)]
struct VerifyBody {
    #[serde(default)]
    username: String,
    #[serde(default)]
    token: String,
}

/// `POST /api/v1/verify-2fa` with `{"username", "token"}` and the bearer token `/login`
/// gave: checks the code from the authenticator app and answers a full token (its
/// lifetime from `token-lifetime`, as `/login`). The second-factor token is ended by
/// its first right code. A wrong code counts as a failed login.
pub async fn verify(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    ClientIp(ip): ClientIp,
    cookie: crate::api::console::CookieMode,
    params: Params,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !state.config.api.totp_enabled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ERR_CODE_2FA_DISABLED",
            "2fa is disabled",
            "set [api] totp_enabled = true to log in with a second factor",
        ));
    }
    let parsed: VerifyBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "ERR_CODE_INVALID_REQUEST",
            "Invalid request",
            format!("expected JSON {{\"username\": ..., \"token\": ...}}: {e}"),
        )
    })?;
    let missing = |what: &str| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "ERR_CODE_UNAUTHORIZED",
            format!("{what} is required"),
            format!("the body's {what:?} is empty"),
        )
    };
    if parsed.username.is_empty() {
        return Err(missing("username"));
    }
    if parsed.token.is_empty() {
        return Err(missing("token"));
    }
    // The extractor let only a second-factor token through to here.
    let Some(Credentials::Bearer(bearer)) = credentials(&headers) else {
        return Err(ApiError::unauthorized());
    };
    let issued_at = state
        .auth
        .second_factor_issued_at(&bearer)
        .ok_or_else(ApiError::unauthorized)?;
    let now = chrono::Utc::now().timestamp();
    let ttl = state.config.api.totp_login_session_ttl.as_secs() as i64;
    if now > issued_at.saturating_add(ttl) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "ERR_CODE_UNAUTHORIZED",
            "login request expired",
            format!(
                "the code must come within [api] totp_login_session_ttl ({ttl} s) of /login: log in again"
            ),
        ));
    }
    let secret = stored_secret(&state, &user.username)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "ERR_CODE_TOTP_SECRET_MISSING",
                "time based one time secret key should be generated for this user",
                "POST /api/v1/me/totp-secret with this token first",
            )
        })?;
    if !secret.verify(parsed.token.trim(), now.max(0) as u64) {
        return Err(crate::api::failed_login(&state, ip, &user.username, "wrong TOTP code").await);
    }
    let lifetime = sessions::token_lifetime(&state, &params, &cookie)?;
    let used = SessionUse {
        user_agent: user_agent(&headers),
        ip,
    };
    let token = sessions::open(&state, &user, lifetime, TokenScope::Full, &used).await?;
    // The second-factor token has served: it ends on every node.
    if let Some((_, jti)) = state
        .auth
        .revoke(&bearer)
        .await
        .map_err(ApiError::internal)?
    {
        state
            .cluster
            .publish(crate::cluster::topic::TOKEN_REVOKED, &jti)
            .await;
    }
    let event = Event::success("login.2fa", &user.username, None);
    state
        .audit
        .record(&Actor::user(&user.username, ip), event)
        .await;
    Ok(cookie.reply(token, lifetime))
}
