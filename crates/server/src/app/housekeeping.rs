//! Work rportd does on its own while it runs: pruning the audit log and expired login
//! sessions, forgetting agents gone too long, saving agents' heartbeats, and reading the
//! user file again when asked.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::api::AppState;
use crate::config::user_file::UserFile;
use crate::domain::audit::{Actor, AuditLog, Event};

/// Deletes audit log entries older than `[api] audit_log_retention`, hourly.
pub async fn audit_retention_loop(state: Arc<AppState>, shutdown: CancellationToken) {
    let retention = state.config.api.audit_log_retention;
    if retention.is_zero() {
        return;
    }
    let mut interval = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let keep = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        let cutoff = chrono::Utc::now()
            .checked_sub_signed(keep)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        match state.store.purge_audit_before(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("deleted {n} audit log entries older than {cutoff}"),
            Err(err) => {
                tracing::error!("pruning the audit log: {err}");
                crate::metrics::store_error();
            }
        }
    }
}

/// How often the keepalive times of the sessions held here go to the store. In between,
/// the API reads them from the sessions themselves; the store's copy serves the other
/// nodes of a cluster and survives a crash. At 10,000 agents this is one write of 1,000
/// rows every 30 ms for 0.3 s per interval, instead of a write per keepalive.
const HEARTBEAT_FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// Saves the agents' last keepalive times every [`HEARTBEAT_FLUSH_EVERY`], and once more
/// at shutdown.
pub async fn heartbeat_loop(state: Arc<AppState>, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(HEARTBEAT_FLUSH_EVERY);
    interval.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                state.registry.flush_heartbeats().await;
                return;
            }
            _ = interval.tick() => {}
        }
        let written = state.registry.flush_heartbeats().await;
        tracing::debug!("saved the heartbeats of {written} clients");
    }
}

/// How often expired login sessions are deleted.
const SESSION_PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Deletes expired login sessions, hourly (their tokens are refused by their expiry
/// anyway; this keeps the table to the live ones).
pub async fn session_purge_loop(state: Arc<AppState>, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(SESSION_PURGE_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        match state.store.purge_sessions(chrono::Utc::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!("deleted {n} expired login sessions"),
            Err(err) => {
                tracing::warn!("deleting expired login sessions: {err}");
                crate::metrics::store_error();
            }
        }
    }
}

/// Forgets agents gone longer than `keep_disconnected_clients`, when purging is on.
pub async fn purge_loop(state: Arc<AppState>, shutdown: CancellationToken) {
    let server = &state.config.server;
    if !server.purge_disconnected_clients {
        return;
    }
    let mut interval = tokio::time::interval(server.purge_disconnected_clients_interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let keep = chrono::Duration::from_std(server.keep_disconnected_clients)
            .unwrap_or(chrono::Duration::MAX);
        let cutoff = chrono::Utc::now()
            .checked_sub_signed(keep)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        let purged = state.tunnels.purge_agents(cutoff).await;
        if purged > 0 {
            tracing::info!("forgot {purged} clients disconnected since before {cutoff}");
        }
    }
}

/// Reads the users file again and says what changed, in the log and the audit log; a file
/// that does not parse changes nothing.
pub async fn reload_user_file(file: &UserFile, audit: &AuditLog) {
    let path = file.path().display().to_string();
    let (success, detail) = match file.reload() {
        Ok(reloaded) => {
            let detail = format!(
                "{} users; added {:?}, removed {:?}, changed {:?}",
                reloaded.users, reloaded.added, reloaded.removed, reloaded.changed
            );
            tracing::info!("[api] auth_file {path} read again: {detail}");
            (true, detail)
        }
        Err(reason) => {
            tracing::error!("[api] auth_file not read again, the users read before stay: {reason}");
            (false, reason)
        }
    };
    let event = Event {
        action: "user.reload",
        resource: &path,
        project: None,
        success,
        detail,
    };
    audit.record(&Actor::system(), event).await;
}
