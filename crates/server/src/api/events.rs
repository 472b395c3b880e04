//! `GET /api/v1/events`: live changes as server-sent events, for the console's pages:
//! `client` when an agent connects, disconnects, reports new facts or is forgotten, and
//! `tunnel` when a tunnel opens, waits for its agent, closes or changes its ACL (on this
//! node or another of the cluster); `resync` when the stream fell behind and the page
//! should read everything again. Each caller hears only of its projects' agents and
//! tunnels.
//!
//! Bounds: the registry's and the tunnels' broadcast channels hold 1024 changes each (a
//! slower stream gets `resync`), at most [`MAX_STREAMS_PER_USER`] streams per user and
//! [`MAX_STREAMS`] in all (429 and 503 beyond), a keep-alive comment every
//! [`KEEP_ALIVE`], and the stream ends when its session token stops being valid (logout,
//! expiry; checked at each keep-alive) or the server shuts down.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State as StateExtractor;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::auth::credentials::{Credentials, credentials};
use crate::domain::permissions::AuthUser;
use crate::domain::registry::AgentChanged;
use crate::tunnels::changes::TunnelChanged;

use super::{ApiError, AppState, Authenticated, State};

/// Event streams one user may hold open at once (tabs, windows).
pub const MAX_STREAMS_PER_USER: usize = 8;
/// Event streams open at once on this node.
pub const MAX_STREAMS: usize = 512;
/// How often a stream sends a comment to keep proxies from closing it, and checks its
/// session is still valid.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The open streams, counted per user, and the signal that ends them all at shutdown.
#[derive(Default)]
pub struct EventStreams {
    open: Mutex<HashMap<String, usize>>,
    closing: CancellationToken,
}

impl EventStreams {
    /// Ends every stream (server shutdown).
    pub fn close(&self) {
        self.closing.cancel();
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts one more stream of `username`, or says why not.
    fn admit(self: &Arc<Self>, username: &str) -> Result<Slot, ApiError> {
        let mut open = self.counts();
        let total: usize = open.values().sum();
        if total >= MAX_STREAMS {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ERR_CODE_TOO_MANY_STREAMS",
                "Too many event streams",
                format!("this server serves at most {MAX_STREAMS} event streams at once"),
            ));
        }
        let mine = open.entry(username.to_owned()).or_default();
        if *mine >= MAX_STREAMS_PER_USER {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "ERR_CODE_TOO_MANY_STREAMS",
                "Too many event streams",
                format!(
                    "a user may hold at most {MAX_STREAMS_PER_USER} event streams open; close a console tab"
                ),
            ));
        }
        *mine += 1;
        Ok(Slot {
            streams: Arc::clone(self),
            username: username.to_owned(),
        })
    }
}

/// One counted stream; dropping it (the stream ended) frees its place.
struct Slot {
    streams: Arc<EventStreams>,
    username: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.streams.counts();
        if let Some(count) = open.get_mut(&self.username) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.username);
            }
        }
    }
}

/// What one stream carries along.
struct Watch {
    state: Arc<AppState>,
    user: AuthUser,
    /// The session token it came with (bearer or cookie), checked at each keep-alive;
    /// `None` for basic auth, which has no session to end.
    token: Option<String>,
    user_agent: String,
    ip: std::net::IpAddr,
    changes: tokio::sync::broadcast::Receiver<AgentChanged>,
    tunnel_changes: tokio::sync::broadcast::Receiver<TunnelChanged>,
    ticker: tokio::time::Interval,
    greeted: bool,
    _slot: Slot,
}

/// `GET /api/v1/events`
pub async fn stream(
    StateExtractor(state): State,
    Authenticated(user): Authenticated,
    super::ClientIp(ip): super::ClientIp,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let slot = state.events.admit(&user.username)?;
    let token = match credentials(&headers) {
        Some(Credentials::Bearer(token)) => Some(token),
        Some(Credentials::Basic(..)) => None,
        None => super::console::session_cookie(&headers),
    };
    let start = tokio::time::Instant::now() + KEEP_ALIVE;
    let watch = Watch {
        changes: state.registry.watch(),
        tunnel_changes: state.tunnels.watch(),
        state,
        user,
        token,
        user_agent: super::v1::sessions::user_agent(&headers).to_owned(),
        ip,
        ticker: tokio::time::interval_at(start, KEEP_ALIVE),
        greeted: false,
        _slot: slot,
    };
    let events = futures_util::stream::unfold(watch, |mut watch| async move {
        let event = next_event(&mut watch).await?;
        Some((Ok::<Event, Infallible>(event), watch))
    });
    let mut response = Sse::new(events).into_response();
    // Proxies such as nginx would otherwise hold the events back in a buffer.
    response.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    Ok(response)
}

/// The stream's next event, or `None` when it ends.
async fn next_event(watch: &mut Watch) -> Option<Event> {
    if !watch.greeted {
        watch.greeted = true;
        // Sent once subscribed: a page reads the list after this, so that no change
        // falls between its read and the stream.
        return Some(Event::default().event("ready").data("{}"));
    }
    loop {
        let closing = watch.state.events.closing.clone();
        tokio::select! {
            _ = closing.cancelled() => return None,
            _ = watch.ticker.tick() => {
                if !session_still_valid(watch).await {
                    return None;
                }
                return Some(Event::default().comment("keep-alive"));
            }
            change = watch.changes.recv() => match change {
                Ok(change) if change.id.is_empty() => return Some(resync()),
                Ok(change) => {
                    if let Some(event) = client_event(watch, &change) {
                        return Some(event);
                    }
                }
                Err(RecvError::Lagged(_)) => return Some(resync()),
                Err(RecvError::Closed) => return None,
            },
            change = watch.tunnel_changes.recv() => match change {
                Ok(change) => {
                    if watch.user.reads(&change.project) {
                        return Some(tunnel_event(&change));
                    }
                }
                Err(RecvError::Lagged(_)) => return Some(resync()),
                Err(RecvError::Closed) => return None,
            },
        }
    }
}

fn resync() -> Event {
    Event::default().event("resync").data("{}")
}

/// The `client` event for `change`, if the caller may see that agent.
fn client_event(watch: &Watch, change: &AgentChanged) -> Option<Event> {
    let user = &watch.user;
    let current = watch.state.registry.with_agents(|agents| {
        let entry = agents.get(&change.id)?;
        Some((
            entry.record.project.clone(),
            json!({
                "id": entry.record.id,
                "connected": entry.is_connected(),
                "project": entry.record.project,
                "name": entry.record.info.name,
                "address": entry.record.address,
                "connected_at": super::time_json(entry.record.connected_at),
                "disconnected_at": super::time_json(entry.record.disconnected_at),
                "last_heartbeat_at": super::time_json(entry.last_heartbeat_at()),
            }),
        ))
    });
    let (project, data) = match current {
        Some(found) => found,
        None => (
            change.project.clone(),
            json!({"id": change.id, "project": change.project, "connected": false, "deleted": true}),
        ),
    };
    if !user.reads(&project) || !user.reads(&change.project) {
        return None;
    }
    Some(Event::default().event("client").data(data.to_string()))
}

/// The `tunnel` event for `change` (the caller may see its project).
fn tunnel_event(change: &TunnelChanged) -> Event {
    let data = json!({
        "id": change.id,
        "client_id": change.client_id,
        "project": change.project,
        "status": change.status,
    });
    Event::default().event("tunnel").data(data.to_string())
}

/// Whether the stream's session is still open (not logged out, not expired, its user
/// still there). A store that does not answer ends nothing.
async fn session_still_valid(watch: &Watch) -> bool {
    let Some(token) = &watch.token else {
        return true;
    };
    let used = crate::auth::api_callers::SessionUse {
        user_agent: &watch.user_agent,
        ip: watch.ip,
    };
    !matches!(watch.state.auth.check_token(token, &used).await, Ok(None))
}
