//! PostgreSQL rows read into the store's records, with the same rules as SQLite's: a
//! tunnel column that does not read is damage noted on the record, not a failed query.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::error::PgError;
use super::url::full_message;
use crate::sqlite::corrupt;
use crate::tunnel_row::{self, from_millis};
use crate::{
    AgentCredentialRecord, AgentRecord, ApiTokenRecord, AuditRecord, ClusterEvent, NodeRecord,
    ProjectRecord, SessionRecord, StoredTunnelRecord, TunnelRecord, UserRecord,
};

// Queries name their columns, never `*`: a statement prepared by a node running while
// another migrates would fail once a column is added ("cached plan must not change
// result type").

/// The columns [`agent`] reads.
pub(super) const AGENT_COLUMNS: &str = "id, auth_id, info, address, connected, connected_at, \
     disconnected_at, project, owner_node, last_heartbeat_at";
/// The columns [`api_token`] reads.
pub(super) const API_TOKEN_COLUMNS: &str =
    "id, username, name, scope, project, hash, created_at, expires_at, last_used_at";
/// The columns [`session`] reads.
pub(super) const SESSION_COLUMNS: &str = "session_id, jti, username, created_at, expires_at, \
     last_access_at, user_agent, ip_address";
/// The columns [`user`] reads.
pub(super) const USER_COLUMNS: &str =
    "username, password_hash, is_admin, created_at, password_expired, two_fa_send_to";
/// The columns [`tunnel`] reads, in the order inserts write them.
pub(super) const TUNNEL_COLUMNS: &str = "id, client_id, name, protocol, lhost, lport, \
     lport_random, rhost, rport, scheme, status, created_by, created_at, closed_at, \
     close_reason, options, last_active_at, connections, connections_refused, bytes_in, \
     bytes_out, project, owner_node";

/// A time column that must have a value.
fn required_time(row: &Row, column: &str) -> Result<DateTime<Utc>, PgError> {
    Ok(from_millis(Some(row.try_get(column)?)).unwrap_or_default())
}

fn optional_time(row: &Row, column: &str) -> Result<Option<DateTime<Utc>>, PgError> {
    Ok(from_millis(row.try_get(column)?))
}

/// An agent; facts that are not JSON make the record corrupt, as in SQLite.
pub(super) fn agent(row: &Row) -> Result<AgentRecord, PgError> {
    let id: String = row.try_get("id")?;
    let info: String = row.try_get("info")?;
    let info = serde_json::from_str(&info).map_err(|err| corrupt(&format!("client {id}"), err))?;
    Ok(AgentRecord {
        auth_id: row.try_get("auth_id")?,
        info,
        address: row.try_get("address")?,
        connected: row.try_get("connected")?,
        connected_at: optional_time(row, "connected_at")?,
        disconnected_at: optional_time(row, "disconnected_at")?,
        last_heartbeat_at: optional_time(row, "last_heartbeat_at")?,
        project: row.try_get("project")?,
        owner_node: row.try_get("owner_node")?,
        id,
    })
}

impl tunnel_row::Cells for Row {
    fn text(&self, column: &str) -> Result<Option<String>, String> {
        self.try_get(column).map_err(|err| full_message(&err))
    }

    /// INTEGER (ports) and BIGINT (times, counters) columns alike.
    fn integer(&self, column: &str) -> Result<Option<i64>, String> {
        self.try_get::<_, Option<i64>>(column).or_else(|err| {
            self.try_get::<_, Option<i32>>(column)
                .map(|value| value.map(i64::from))
                .map_err(|_| full_message(&err))
        })
    }

    fn flag(&self, column: &str) -> Result<Option<bool>, String> {
        self.try_get(column).map_err(|err| full_message(&err))
    }
}

pub(super) fn tunnel(row: &Row) -> Result<TunnelRecord, PgError> {
    let id: String = row.try_get("id")?;
    Ok(tunnel_row::read(row, id))
}

pub(super) fn project(row: &Row) -> Result<ProjectRecord, PgError> {
    Ok(ProjectRecord {
        key: row.try_get("key")?,
        name: row.try_get("name")?,
        created_at: required_time(row, "created_at")?,
    })
}

pub(super) fn audit(row: &Row) -> Result<AuditRecord, PgError> {
    Ok(AuditRecord {
        id: row.try_get("id")?,
        at: required_time(row, "at")?,
        actor: row.try_get("actor")?,
        actor_type: row.try_get("actor_type")?,
        actor_ip: row.try_get("actor_ip")?,
        action: row.try_get("action")?,
        resource: row.try_get("resource")?,
        project: row.try_get("project")?,
        result: row.try_get("result")?,
        detail: row.try_get("detail")?,
        client_id: row.try_get("client_id")?,
        client_hostname: row.try_get("client_hostname")?,
    })
}

pub(super) fn stored_tunnel(row: &Row) -> Result<StoredTunnelRecord, PgError> {
    Ok(StoredTunnelRecord {
        id: row.try_get("id")?,
        agent_id: row.try_get("client_id")?,
        created_at: required_time(row, "created_at")?,
        name: row.try_get("name")?,
        scheme: row.try_get("scheme")?,
        remote_ip: row.try_get("remote_ip")?,
        remote_port: row.try_get("remote_port")?,
        public_port: row.try_get("public_port")?,
        acl: row.try_get("acl")?,
        further_options: row.try_get("further_options")?,
    })
}

pub(super) fn api_token(row: &Row) -> Result<ApiTokenRecord, PgError> {
    Ok(ApiTokenRecord {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        name: row.try_get("name")?,
        scope: row.try_get("scope")?,
        project: row.try_get("project")?,
        hash: row.try_get("hash")?,
        created_at: required_time(row, "created_at")?,
        expires_at: optional_time(row, "expires_at")?,
        last_used_at: optional_time(row, "last_used_at")?,
    })
}

pub(super) fn session(row: &Row) -> Result<SessionRecord, PgError> {
    Ok(SessionRecord {
        id: row.try_get("session_id")?,
        jti: row.try_get("jti")?,
        username: row.try_get("username")?,
        created_at: required_time(row, "created_at")?,
        expires_at: required_time(row, "expires_at")?,
        last_access_at: required_time(row, "last_access_at")?,
        user_agent: row.try_get("user_agent")?,
        ip_address: row.try_get("ip_address")?,
    })
}

/// A user without roles; the caller adds them.
pub(super) fn user(row: &Row) -> Result<UserRecord, PgError> {
    Ok(UserRecord {
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        is_admin: row.try_get("is_admin")?,
        created_at: required_time(row, "created_at")?,
        roles: BTreeMap::new(),
        password_expired: row.try_get("password_expired")?,
        two_fa_send_to: row.try_get("two_fa_send_to")?,
    })
}

/// A column that does not read names its credential rather than failing as a database
/// error: the server refuses to start on it.
pub(super) fn agent_credential(row: &Row) -> Result<AgentCredentialRecord, PgError> {
    let id: String = row.try_get("id")?;
    let damaged = |err: tokio_postgres::Error| {
        corrupt(
            &format!("agent credential {id:?} (table agent_credentials)"),
            full_message(&err),
        )
    };
    let hash = row.try_get("hash").map_err(damaged)?;
    let project = row.try_get("project").map_err(damaged)?;
    Ok(AgentCredentialRecord { id, hash, project })
}

/// A node, with `alive` worked out by the query (`lease_until > now` by the store's clock).
pub(super) fn node(row: &Row) -> Result<NodeRecord, PgError> {
    Ok(NodeRecord {
        id: row.try_get("id")?,
        peer_address: row.try_get("peer_address")?,
        public_host: row.try_get("public_host")?,
        api_address: row.try_get("api_address")?,
        started_at: required_time(row, "started_at")?,
        lease_until: required_time(row, "lease_until")?,
        alive: row.try_get("alive")?,
    })
}

pub(super) fn event(row: &Row) -> Result<ClusterEvent, PgError> {
    Ok(ClusterEvent {
        seq: row.try_get("seq")?,
        at: required_time(row, "at")?,
        topic: row.try_get("topic")?,
        key: row.try_get("key")?,
        origin: row.try_get("origin")?,
    })
}
