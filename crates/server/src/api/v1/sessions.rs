//! Login sessions: opening one per token a login gives (at most [`MAX_SESSIONS_PER_USER`]
//! per user), ending them on every node, and RPort's `/api/v1/users/{user_id}/sessions`
//! for administrators.

use std::time::Duration;

use axum::extract::{Path, State as StateExtractor};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use rport_store::SessionRecord;
use serde_json::{Value, json};

use crate::api::{ApiError, AppState, Authenticated, ClientIp, Params, State, data, time_json};
use crate::auth::api_callers::{SessionUse, TokenScope};
use crate::domain::audit::{Actor, Event};
use crate::domain::permissions::AuthUser;

/// Sessions one user keeps at most: a new login beyond it ends the least recently used
/// one, so a script that logs in on every run cannot fill the store.
pub const MAX_SESSIONS_PER_USER: usize = 100;

/// A login token's lifetime when `token-lifetime` does not say (RPort's).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(600);

/// A console login's lifetime (`cookie=true`) when `token-lifetime` does not say: a
/// working day, so that the console does not send its user back to the login page every
/// ten minutes. Logging out, or ending the session elsewhere, ends it at once.
const CONSOLE_TOKEN_LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// The lifetime `token-lifetime` (seconds) asks for a login's token: 0 or absent is the
/// default (a console's, `cookie.wanted`, is longer), more than `[api] max_token_lifetime`
/// is refused.
pub fn token_lifetime(
    state: &AppState,
    params: &Params,
    cookie: &crate::api::console::CookieMode,
) -> Result<Duration, ApiError> {
    let default = if cookie.wanted {
        CONSOLE_TOKEN_LIFETIME
    } else {
        DEFAULT_TOKEN_LIFETIME
    };
    Ok(match params.get("token-lifetime") {
        None | Some("") => default.min(state.config.api.max_token_lifetime),
        Some(text) => {
            let seconds: u64 = text.parse().map_err(|_| {
                ApiError::bad_request(
                    "ERR_CODE_INVALID_REQUEST",
                    "Invalid token-lifetime",
                    format!("token-lifetime must be a number of seconds, got {text:?}"),
                )
            })?;
            let lifetime = if seconds == 0 {
                default.min(state.config.api.max_token_lifetime)
            } else {
                Duration::from_secs(seconds)
            };
            let max = state.config.api.max_token_lifetime;
            if lifetime > max {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "ERR_CODE_INVALID_REQUEST",
                    "Invalid token-lifetime",
                    format!("token-lifetime may be at most {} seconds", max.as_secs()),
                ));
            }
            lifetime
        }
    })
}

/// The `User-Agent` a request came with, or empty.
pub fn user_agent(headers: &HeaderMap) -> &str {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Opens a session for `user` and returns its token, ending the user's least recently
/// used sessions beyond [`MAX_SESSIONS_PER_USER`].
pub async fn open(
    state: &AppState,
    user: &AuthUser,
    lifetime: Duration,
    scope: TokenScope,
    used: &SessionUse<'_>,
) -> Result<String, ApiError> {
    let (token, opened) = state
        .auth
        .open_session(user, lifetime, scope, used)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(ApiError::unauthorized)?;
    let sessions = state
        .store
        .list_sessions(&user.username)
        .await
        .map_err(ApiError::internal)?;
    let surplus = sessions.len().saturating_sub(MAX_SESSIONS_PER_USER);
    let mut ended = Vec::new();
    for old in sessions.iter().filter(|s| s.id != opened.id).take(surplus) {
        let deleted = state
            .store
            .delete_sessions(&user.username, Some(old.id))
            .await
            .map_err(ApiError::internal)?;
        ended.extend(deleted);
    }
    end(state, &ended).await?;
    Ok(token)
}

/// Revokes the tokens of sessions deleted from the store, here and on every other node.
pub async fn end(state: &AppState, sessions: &[SessionRecord]) -> Result<(), ApiError> {
    let revoked = state
        .auth
        .revoke_sessions(sessions)
        .await
        .map_err(ApiError::internal)?;
    for jti in revoked {
        state
            .cluster
            .publish(crate::cluster::topic::TOKEN_REVOKED, &jti)
            .await;
    }
    Ok(())
}

/// RPort's `APISession`.
fn session_json(session: &SessionRecord) -> Value {
    json!({
        "session_id": session.id,
        "expires_at": time_json(Some(session.expires_at)),
        "last_access_at": time_json(Some(session.last_access_at)),
        "username": session.username,
        "user_agent": session.user_agent,
        "ip_address": session.ip_address,
    })
}

/// The user's sessions that have not expired, least recently used first.
async fn live_sessions(state: &AppState, username: &str) -> Result<Vec<SessionRecord>, ApiError> {
    let mut sessions = state
        .store
        .list_sessions(username)
        .await
        .map_err(ApiError::internal)?;
    let now = chrono::Utc::now();
    sessions.retain(|s| s.expires_at > now);
    Ok(sessions)
}

fn require_admin(user: &AuthUser) -> Result<(), ApiError> {
    user.require_server_admin("managing users' sessions")
        .map_err(ApiError::forbidden)
}

/// `GET /api/v1/users/{user_id}/sessions`: the user's sessions, least recently used
/// first (an unknown user has none, as in RPort).
pub async fn list(
    StateExtractor(state): State,
    Authenticated(caller): Authenticated,
    Path(username): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let sessions = live_sessions(&state, &username).await?;
    Ok(data(Value::Array(
        sessions.iter().map(session_json).collect(),
    )))
}

/// `DELETE /api/v1/users/{user_id}/sessions`: ends all of the user's sessions.
pub async fn delete_all(
    StateExtractor(state): State,
    Authenticated(caller): Authenticated,
    ClientIp(ip): ClientIp,
    Path(username): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&caller)?;
    delete(&state, &caller, ip, &username, None).await
}

/// `DELETE /api/v1/users/{user_id}/sessions/{session_id}`: ends one session; one that
/// does not exist is already ended (204, as in RPort).
pub async fn delete_one(
    StateExtractor(state): State,
    Authenticated(caller): Authenticated,
    ClientIp(ip): ClientIp,
    Path((username, session_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    require_admin(&caller)?;
    let id = session_number(&session_id)?;
    delete(&state, &caller, ip, &username, Some(id)).await
}

/// A session's id from a path: RPort's are numbers.
fn session_number(text: &str) -> Result<i64, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad_request(
            "ERR_CODE_INVALID_REQUEST",
            "Invalid session ID",
            format!("session_id must be a number, got {text:?}"),
        )
    })
}

async fn delete(
    state: &AppState,
    caller: &AuthUser,
    ip: std::net::IpAddr,
    username: &str,
    id: Option<i64>,
) -> Result<StatusCode, ApiError> {
    let deleted = state
        .store
        .delete_sessions(username, id)
        .await
        .map_err(ApiError::internal)?;
    end(state, &deleted).await?;
    let (action, detail) = match id {
        Some(id) => ("user.session.delete", format!("session {id}")),
        None => (
            "user.sessions.delete",
            format!("{} sessions", deleted.len()),
        ),
    };
    let event = Event {
        action,
        resource: username,
        project: None,
        success: true,
        detail,
    };
    state
        .audit
        .record(&Actor::user(&caller.username, ip), event)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's own sessions, for the console's "My sessions": RPort's `APISession` with
/// `current` marking the one the request came with.
fn own_session_json(session: &SessionRecord, caller: &AuthUser) -> Value {
    let mut shown = session_json(session);
    if let Value::Object(fields) = &mut shown {
        fields.insert("current".into(), json!(is_current(session, caller)));
    }
    shown
}

/// Whether the request came with this session's token.
fn is_current(session: &SessionRecord, caller: &AuthUser) -> bool {
    caller.login_session.as_deref() == Some(session.jti.as_str())
}

/// `GET /api/v1/me/sessions`: the caller's live login sessions, least recently used
/// first, the current one marked; any user may read its own.
pub async fn list_own(
    StateExtractor(state): State,
    Authenticated(caller): Authenticated,
) -> Result<Response, ApiError> {
    let sessions = live_sessions(&state, &caller.username).await?;
    let listed = sessions.iter().map(|s| own_session_json(s, &caller));
    Ok(data(Value::Array(listed.collect())))
}

/// `DELETE /api/v1/me/sessions`: ends all of the caller's sessions but the one the request
/// came with ("log out everywhere else").
pub async fn delete_own_others(
    StateExtractor(state): State,
    Authenticated(caller): Authenticated,
    ClientIp(ip): ClientIp,
) -> Result<StatusCode, ApiError> {
    let sessions = live_sessions(&state, &caller.username).await?;
    let mut ended = Vec::new();
    for other in sessions.iter().filter(|s| !is_current(s, &caller)) {
        let deleted = state
            .store
            .delete_sessions(&caller.username, Some(other.id))
            .await
            .map_err(ApiError::internal)?;
        ended.extend(deleted);
    }
    end(&state, &ended).await?;
    let event = Event {
        action: "user.sessions.delete",
        resource: &caller.username,
        project: None,
        success: true,
        detail: format!("{} other sessions", ended.len()),
    };
    state
        .audit
        .record(&Actor::user(&caller.username, ip), event)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/me/sessions/{session_id}`: ends one of the caller's own sessions (the
/// current one too: that is a logout); one that does not exist is already ended (204).
pub async fn delete_own_one(
    StateExtractor(state): State,
    Authenticated(caller): Authenticated,
    ClientIp(ip): ClientIp,
    Path(session_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = session_number(&session_id)?;
    let username = caller.username.clone();
    delete(&state, &caller, ip, &username, Some(id)).await
}
