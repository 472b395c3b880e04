//! SQLite backend: one file in the data dir, WAL journal, schema upgraded by numbered
//! migrations recorded in `PRAGMA user_version`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, TransactionBehavior, params};

use crate::list_sql::{PageQuery, SqlValue};
use crate::records::json_column;
use crate::stored_tunnels::STORED_TUNNEL_COLUMNS;
use crate::tunnel_row::{self, from_millis};
use crate::{
    AdminGuard, AgentAttributes, AgentClaim, AgentCredentialRecord, AgentOverridesRecord,
    AgentRecord, ApiTokenChange, ApiTokenRecord, AuditFilter, AuditRecord, BackendError,
    ClientGroupRecord, ClusterEvent, DEFAULT_PROJECT, NodeRecord, ProjectRecord, ProjectRemoval,
    SessionRecord, Store, StoreError, StoredTunnelFilter, StoredTunnelRecord, TunnelCounters,
    TunnelFilter, TunnelOptions, TunnelRecord, TunnelStatus, UserGroupRecord, UserRecord,
    UserWrite,
};

/// Each entry moves the schema one version up; never edit one that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: agents, tunnels, users, settings
    "CREATE TABLE clients (
        id TEXT PRIMARY KEY,
        auth_id TEXT NOT NULL,
        info TEXT NOT NULL,
        address TEXT NOT NULL,
        connected INTEGER NOT NULL,
        connected_at INTEGER,
        disconnected_at INTEGER
    );
    CREATE INDEX clients_disconnected_at ON clients(disconnected_at);
    CREATE TABLE tunnels (
        id TEXT PRIMARY KEY,
        client_id TEXT NOT NULL,
        name TEXT NOT NULL,
        protocol TEXT NOT NULL,
        lhost TEXT NOT NULL,
        lport INTEGER NOT NULL,
        lport_random INTEGER NOT NULL,
        rhost TEXT NOT NULL,
        rport INTEGER NOT NULL,
        scheme TEXT,
        status TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        closed_at INTEGER,
        close_reason TEXT,
        options TEXT NOT NULL
    );
    CREATE INDEX tunnels_client ON tunnels(client_id, created_at);
    CREATE INDEX tunnels_status ON tunnels(status);
    CREATE TABLE users (
        username TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        is_admin INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );",
    // 2: tunnel counters and idle time, kept so that a restart honours both
    "ALTER TABLE tunnels ADD COLUMN last_active_at INTEGER;
    ALTER TABLE tunnels ADD COLUMN connections INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tunnels ADD COLUMN connections_refused INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tunnels ADD COLUMN bytes_in INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tunnels ADD COLUMN bytes_out INTEGER NOT NULL DEFAULT 0;",
    // 3: projects (fleets); every agent and tunnel belongs to one
    "CREATE TABLE projects (
        key TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    INSERT INTO projects (key, name, created_at)
        VALUES ('default', 'Default', CAST(strftime('%s', 'now') AS INTEGER) * 1000);
    ALTER TABLE clients ADD COLUMN project TEXT NOT NULL DEFAULT 'default';
    ALTER TABLE tunnels ADD COLUMN project TEXT NOT NULL DEFAULT 'default';
    CREATE INDEX clients_project ON clients(project);
    CREATE INDEX tunnels_project ON tunnels(project, created_at);",
    // 4: audit log
    "CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        actor_type TEXT NOT NULL,
        actor_ip TEXT,
        action TEXT NOT NULL,
        resource TEXT NOT NULL,
        project TEXT,
        result TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX audit_log_at ON audit_log(at);",
    // 5: API tokens revoked before they expire (logout)
    "CREATE TABLE revoked_tokens (
        jti TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL
    );",
    // 6: API tokens (only their hashes)
    "CREATE TABLE api_tokens (
        id TEXT PRIMARY KEY,
        username TEXT NOT NULL,
        name TEXT NOT NULL,
        scope TEXT NOT NULL,
        project TEXT,
        hash TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        last_used_at INTEGER
    );
    CREATE INDEX api_tokens_user ON api_tokens(username);",
    // 7: roles of users per project
    "CREATE TABLE user_roles (
        username TEXT NOT NULL,
        project TEXT NOT NULL,
        role TEXT NOT NULL,
        PRIMARY KEY (username, project)
    );
    CREATE INDEX user_roles_project ON user_roles(project);",
    // 8: managed agent credentials, one row each (they were one JSON value in `settings`,
    // so that two changes at once could lose one); `move_agent_credentials` moves them
    "CREATE TABLE agent_credentials (
        id TEXT PRIMARY KEY,
        hash TEXT NOT NULL,
        project TEXT NOT NULL
    );
    CREATE INDEX agent_credentials_project ON agent_credentials(project);",
    // 9: clusters: which node holds each agent and live tunnel, the nodes with their
    // leases, and the events nodes tell each other
    "ALTER TABLE clients ADD COLUMN owner_node TEXT;
    ALTER TABLE tunnels ADD COLUMN owner_node TEXT;
    CREATE INDEX clients_owner_node ON clients(owner_node) WHERE connected = 1;
    CREATE INDEX tunnels_live_client ON tunnels(client_id) WHERE status IN ('opened', 'pending');
    CREATE TABLE cluster_nodes (
        id TEXT PRIMARY KEY,
        peer_address TEXT NOT NULL,
        public_host TEXT NOT NULL,
        api_address TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        lease_until INTEGER NOT NULL
    );
    CREATE TABLE cluster_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        topic TEXT NOT NULL,
        key TEXT NOT NULL,
        origin TEXT NOT NULL
    );
    CREATE INDEX cluster_events_at ON cluster_events(at);",
    // 10: RPort's user fields: an expired password must be changed at the next login;
    // where a second factor would be sent (kept, not used)
    "ALTER TABLE users ADD COLUMN password_expired INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE users ADD COLUMN two_fa_send_to TEXT NOT NULL DEFAULT '';",
    // 11: user groups (RPort's), the projects each reaches, and who belongs to which
    "CREATE TABLE user_groups (
        name TEXT PRIMARY KEY,
        permissions TEXT NOT NULL,
        tunnels_restricted TEXT,
        commands_restricted TEXT
    );
    CREATE TABLE user_group_projects (
        group_name TEXT NOT NULL,
        project TEXT NOT NULL,
        PRIMARY KEY (group_name, project)
    );
    CREATE INDEX user_group_projects_project ON user_group_projects(project);
    CREATE TABLE user_group_members (
        username TEXT NOT NULL,
        group_name TEXT NOT NULL,
        PRIMARY KEY (username, group_name)
    );
    CREATE INDEX user_group_members_group ON user_group_members(group_name);",
    // 12: client groups, and what the API sets on agents (tags, labels, allowed user groups)
    "CREATE TABLE client_groups (
        id TEXT PRIMARY KEY,
        project TEXT NOT NULL,
        description TEXT NOT NULL,
        params TEXT NOT NULL,
        allowed_user_groups TEXT NOT NULL
    );
    CREATE TABLE agent_overrides (
        agent_id TEXT PRIMARY KEY,
        attributes TEXT,
        allowed_user_groups TEXT
    );",
    // 13: when each agent's last keepalive arrived (RPort's `last_heartbeat_at`)
    "ALTER TABLE clients ADD COLUMN last_heartbeat_at INTEGER;",
    // 14: the audit log's agent (RPort's client_id, client_hostname); stored tunnels
    // (RPort's tunnel templates), gone with their agent
    "ALTER TABLE audit_log ADD COLUMN client_id TEXT;
    ALTER TABLE audit_log ADD COLUMN client_hostname TEXT;
    CREATE TABLE stored_tunnels (
        id TEXT PRIMARY KEY,
        client_id TEXT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
        created_at INTEGER NOT NULL,
        name TEXT NOT NULL,
        scheme TEXT,
        remote_ip TEXT,
        remote_port INTEGER,
        public_port INTEGER,
        acl TEXT,
        further_options TEXT
    );
    CREATE INDEX stored_tunnels_client ON stored_tunnels(client_id, created_at);",
    // 15: login sessions (one per token from /login, found by the token's id) and users'
    // TOTP secrets
    "CREATE TABLE api_sessions (
        session_id INTEGER PRIMARY KEY AUTOINCREMENT,
        jti TEXT NOT NULL UNIQUE,
        username TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        last_access_at INTEGER NOT NULL,
        user_agent TEXT NOT NULL,
        ip_address TEXT NOT NULL
    );
    CREATE INDEX api_sessions_user ON api_sessions(username);
    CREATE INDEX api_sessions_expires_at ON api_sessions(expires_at);
    CREATE TABLE totp_secrets (
        username TEXT PRIMARY KEY,
        secret TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );",
];

/// The schema version that gave agent credentials their own table.
const AGENT_CREDENTIALS_TABLE: usize = 8;
/// Where versions before it kept them.
const AGENT_CREDENTIALS_SETTING: &str = "agent_credentials";

/// SQLite's error, said in the store's words by its code: what the operator can fix, a
/// uniqueness clash, or anything else.
impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        classify(err, |err| Box::new(err))
    }
}

/// An error opening the database file, with its path.
#[derive(Debug, thiserror::Error)]
#[error("database {path}: {source}")]
struct AtPath {
    path: PathBuf,
    #[source]
    source: rusqlite::Error,
}

fn classify(
    err: rusqlite::Error,
    boxed: impl FnOnce(rusqlite::Error) -> BackendError,
) -> StoreError {
    let reason = match err.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => "the server's disk is full",
        Some(ErrorCode::ReadOnly) => "the server's data_dir is read-only",
        Some(ErrorCode::SystemIoFailure) => "the server cannot write to its data_dir",
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            "the database stayed locked by another process for too long"
        }
        Some(ErrorCode::CannotOpen) => "the server cannot open its database file",
        Some(ErrorCode::PermissionDenied) => "the server may not access its database file",
        Some(ErrorCode::ConstraintViolation)
            if err.sqlite_error().is_some_and(|e| {
                matches!(
                    e.extended_code,
                    rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                        | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                )
            }) =>
        {
            // "UNIQUE constraint failed: tunnels.id"
            let columns = match &err {
                rusqlite::Error::SqliteFailure(_, Some(message)) => message
                    .split_once(": ")
                    .map_or(message.as_str(), |(_, columns)| columns)
                    .to_owned(),
                _ => "key".to_owned(),
            };
            return StoreError::Conflict {
                what: format!("a record with the same {columns}"),
            };
        }
        _ => return StoreError::Backend(boxed(err)),
    };
    StoreError::Unavailable {
        reason: reason.to_owned(),
        source: boxed(err),
    }
}

pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |source| {
            let path = path.to_owned();
            classify(source, |source| Box::new(AtPath { path, source }))
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        // WAL + NORMAL: a crash loses at most the last transactions, never corrupts the file.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection off the async runtime.
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(|err| StoreError::Backend(Box::new(err)))?
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as i64;
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > known {
        return Err(StoreError::SchemaTooNew {
            found: version,
            known,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        if index + 1 == AGENT_CREDENTIALS_TABLE {
            move_agent_credentials(&tx)?;
        }
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
        tracing::info!("database schema migrated to version {}", index + 1);
    }
    Ok(())
}

/// Moves the managed agent credentials from their JSON value in `settings` (id ->
/// `{"hash", "project"}`, or id -> hash in the default project as version 1 saved them)
/// into their table. One that does not parse stops the migration, leaving it as it is:
/// dropped, it would lock its agents out.
fn move_agent_credentials(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Saved {
        Bound { hash: String, project: String },
        Hash(String),
    }
    let key = AGENT_CREDENTIALS_SETTING;
    let json: Option<String> = tx
        .query_row("SELECT value FROM settings WHERE key = ?1", [key], |row| {
            row.get(0)
        })
        .optional()?;
    let Some(json) = json else { return Ok(()) };
    let entries: BTreeMap<String, serde_json::Value> = serde_json::from_str(&json)
        .map_err(|err| corrupt(&format!("agent credentials (settings key {key})"), err))?;
    for (id, value) in entries {
        let (hash, project) = match serde_json::from_value(value) {
            Ok(Saved::Bound { hash, project }) => (hash, project),
            Ok(Saved::Hash(hash)) => (hash, DEFAULT_PROJECT.to_owned()),
            Err(_) => {
                return Err(corrupt(
                    &format!("agent credential {id:?} (settings key {key})"),
                    r#"expected {"hash": "sha256$SALT$DIGEST", "project": "KEY"}"#,
                ));
            }
        };
        tx.execute(
            "INSERT INTO agent_credentials (id, hash, project) VALUES (?1, ?2, ?3)",
            [&id, &hash, &project],
        )?;
    }
    tx.execute("DELETE FROM settings WHERE key = ?1", [key])?;
    Ok(())
}

pub(crate) fn millis(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

pub(crate) fn corrupt(what: &str, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what: what.to_owned(),
        reason: reason.to_string(),
    }
}

fn sqlite_value(value: &SqlValue) -> rusqlite::types::Value {
    match value {
        SqlValue::Text(text) => rusqlite::types::Value::Text(text.clone()),
        SqlValue::Int(n) => rusqlite::types::Value::Integer(*n),
    }
}

/// A page of a filtered list and the filter's total.
fn read_page<T>(
    conn: &Connection,
    query: &PageQuery,
    read: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<(Vec<T>, u64), StoreError> {
    let mut values: Vec<rusqlite::types::Value> = query.params.iter().map(sqlite_value).collect();
    let total: i64 = conn.query_row(
        &query.count_sql(),
        rusqlite::params_from_iter(values.iter()),
        |row| row.get(0),
    )?;
    values.extend(
        query
            .limit_and_offset()
            .map(rusqlite::types::Value::Integer),
    );
    let mut stmt = conn.prepare(&query.page_sql(|n| format!("?{n}")))?;
    let list = stmt
        .query_map(rusqlite::params_from_iter(values.iter()), read)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((list, u64::try_from(total).unwrap_or_default()))
}

fn stored_tunnel_from_row(row: &Row<'_>) -> rusqlite::Result<StoredTunnelRecord> {
    Ok(StoredTunnelRecord {
        id: row.get(0)?,
        agent_id: row.get(1)?,
        created_at: from_millis(Some(row.get(2)?)).unwrap_or_default(),
        name: row.get(3)?,
        scheme: row.get(4)?,
        remote_ip: row.get(5)?,
        remote_port: row.get(6)?,
        public_port: row.get(7)?,
        acl: row.get(8)?,
        further_options: row.get(9)?,
    })
}

fn agent_from_row(row: &Row<'_>) -> rusqlite::Result<(AgentRecord, String)> {
    let info: String = row.get("info")?;
    Ok((
        AgentRecord {
            id: row.get("id")?,
            auth_id: row.get("auth_id")?,
            info: Default::default(),
            address: row.get("address")?,
            connected: row.get("connected")?,
            connected_at: from_millis(row.get("connected_at")?),
            disconnected_at: from_millis(row.get("disconnected_at")?),
            last_heartbeat_at: from_millis(row.get("last_heartbeat_at")?),
            project: row.get("project")?,
            owner_node: row.get("owner_node")?,
        },
        info,
    ))
}

impl tunnel_row::Cells for Row<'_> {
    fn text(&self, column: &str) -> Result<Option<String>, String> {
        self.get(column).map_err(|err| err.to_string())
    }

    fn integer(&self, column: &str) -> Result<Option<i64>, String> {
        self.get(column).map_err(|err| err.to_string())
    }

    fn flag(&self, column: &str) -> Result<Option<bool>, String> {
        self.get(column).map_err(|err| err.to_string())
    }
}

fn tunnel_from_row(row: &Row<'_>) -> rusqlite::Result<TunnelRecord> {
    let id: String = row.get("id")?;
    Ok(tunnel_row::read(row, id))
}

fn api_token_from_row(row: &Row<'_>) -> rusqlite::Result<ApiTokenRecord> {
    Ok(ApiTokenRecord {
        id: row.get("id")?,
        username: row.get("username")?,
        name: row.get("name")?,
        scope: row.get("scope")?,
        project: row.get("project")?,
        hash: row.get("hash")?,
        created_at: from_millis(Some(row.get("created_at")?)).unwrap_or_default(),
        expires_at: from_millis(row.get("expires_at")?),
        last_used_at: from_millis(row.get("last_used_at")?),
    })
}

fn session_from_row(row: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        id: row.get("session_id")?,
        jti: row.get("jti")?,
        username: row.get("username")?,
        created_at: from_millis(Some(row.get("created_at")?)).unwrap_or_default(),
        expires_at: from_millis(Some(row.get("expires_at")?)).unwrap_or_default(),
        last_access_at: from_millis(Some(row.get("last_access_at")?)).unwrap_or_default(),
        user_agent: row.get("user_agent")?,
        ip_address: row.get("ip_address")?,
    })
}

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        username: row.get("username")?,
        password_hash: row.get("password_hash")?,
        is_admin: row.get("is_admin")?,
        created_at: from_millis(Some(row.get("created_at")?)).unwrap_or_default(),
        roles: BTreeMap::new(),
        password_expired: row.get("password_expired")?,
        two_fa_send_to: row.get("two_fa_send_to")?,
    })
}

/// Fills in the roles of users read from the `users` table.
fn with_roles(conn: &Connection, users: &mut [UserRecord]) -> Result<(), StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT project, role FROM user_roles WHERE username = ?1")?;
    for user in users {
        user.roles = stmt
            .query_map([&user.username], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<_, _>>()?;
    }
    Ok(())
}

/// A row of `user_groups` with its projects; `projects` is filled by [`with_projects`].
fn user_group_from_row(row: &Row<'_>) -> rusqlite::Result<(UserGroupRecord, String)> {
    Ok((
        UserGroupRecord {
            name: row.get("name")?,
            permissions: Vec::new(),
            tunnels_restricted: row.get("tunnels_restricted")?,
            commands_restricted: row.get("commands_restricted")?,
            projects: Vec::new(),
        },
        row.get("permissions")?,
    ))
}

fn read_user_groups(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<UserGroupRecord>, StoreError> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt
        .query_map(params, user_group_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut projects = conn.prepare_cached(
        "SELECT project FROM user_group_projects WHERE group_name = ?1 ORDER BY project",
    )?;
    let mut groups = Vec::with_capacity(rows.len());
    for (mut group, permissions) in rows {
        group.permissions = UserGroupRecord::parse_permissions(&group.name, &permissions)?;
        group.projects = projects
            .query_map([&group.name], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        groups.push(group);
    }
    Ok(groups)
}

fn write_user(tx: &rusqlite::Transaction<'_>, u: &UserRecord) -> Result<(), StoreError> {
    tx.execute(
        "INSERT OR REPLACE INTO users (username, password_hash, is_admin, created_at, \
         password_expired, two_fa_send_to) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            u.username,
            u.password_hash,
            u.is_admin,
            millis(u.created_at),
            u.password_expired,
            u.two_fa_send_to,
        ],
    )?;
    tx.execute("DELETE FROM user_roles WHERE username = ?1", [&u.username])?;
    for (project, role) in &u.roles {
        tx.execute(
            "INSERT INTO user_roles (username, project, role) VALUES (?1, ?2, ?3)",
            [&u.username, project, role],
        )?;
    }
    Ok(())
}

/// Whether a change that takes `username`'s administrator right away (`removes_admin`)
/// may go ahead: the user must exist and, with [`AdminGuard::KeepOne`], another
/// administrator must remain. Read inside the caller's transaction.
fn admin_guarded(
    tx: &rusqlite::Transaction<'_>,
    username: &str,
    guard: AdminGuard,
    removes_admin: bool,
) -> Result<UserWrite, StoreError> {
    let is_admin: Option<bool> = tx
        .query_row(
            "SELECT is_admin FROM users WHERE username = ?1",
            [username],
            |row| row.get(0),
        )
        .optional()?;
    let Some(is_admin) = is_admin else {
        return Ok(UserWrite::NotFound);
    };
    if is_admin && removes_admin && guard == AdminGuard::KeepOne {
        let others: i64 = tx.query_row(
            "SELECT COUNT(*) FROM users WHERE is_admin AND username != ?1",
            [username],
            |row| row.get(0),
        )?;
        if others == 0 {
            return Ok(UserWrite::LastAdmin);
        }
    }
    Ok(UserWrite::Done)
}

const TUNNEL_COLUMNS: &str = "id, client_id, name, protocol, lhost, lport, lport_random, rhost, rport, \
     scheme, status, created_by, created_at, closed_at, close_reason, options, last_active_at, \
     connections, connections_refused, bytes_in, bytes_out, project, owner_node";

fn insert_tunnel_row(conn: &Connection, t: &TunnelRecord) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO tunnels ({TUNNEL_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, \
         ?18, ?19, ?20, ?21, ?22, ?23)"
    );
    let options = serde_json::to_string(&t.options)
        .map_err(|err| corrupt(&format!("tunnel {} options", t.id), err))?;
    conn.execute(
        &sql,
        params![
            t.id,
            t.agent_id,
            t.name,
            t.protocol,
            t.lhost,
            t.lport,
            t.lport_random,
            t.rhost,
            t.rport,
            t.scheme,
            t.status.as_str(),
            t.created_by,
            millis(t.created_at),
            t.closed_at.map(millis),
            t.close_reason,
            options,
            t.last_active_at.map(millis),
            t.counters.connections as i64,
            t.counters.refused as i64,
            t.counters.bytes_in as i64,
            t.counters.bytes_out as i64,
            t.project,
            t.owner_node,
        ],
    )?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn upsert_agent(&self, agent: &AgentRecord) -> Result<(), StoreError> {
        let c = agent.clone();
        let info = serde_json::to_string(&c.info).map_err(|err| corrupt("agent facts", err))?;
        self.run(move |conn| {
            conn.execute(
                "INSERT OR REPLACE INTO clients \
                 (id, auth_id, info, address, connected, connected_at, disconnected_at, project, \
                 owner_node, last_heartbeat_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    c.id,
                    c.auth_id,
                    info,
                    c.address,
                    c.connected,
                    c.connected_at.map(millis),
                    c.disconnected_at.map(millis),
                    c.project,
                    c.owner_node,
                    c.last_heartbeat_at.map(millis),
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn claim_agent(&self, agent: &AgentRecord) -> Result<AgentClaim, StoreError> {
        let c = agent.clone();
        let info = serde_json::to_string(&c.info).map_err(|err| corrupt("agent facts", err))?;
        self.run(move |conn| {
            let now = millis(Utc::now());
            // One write transaction: SQLite serialises them, so of two claims one sees the
            // other's row.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let written = tx.execute(
                "INSERT INTO clients \
                 (id, auth_id, info, address, connected, connected_at, disconnected_at, project, \
                 owner_node, last_heartbeat_at) VALUES (?1, ?2, ?3, ?4, 1, ?5, NULL, ?6, ?7, ?9) \
                 ON CONFLICT (id) DO UPDATE SET auth_id = excluded.auth_id, info = excluded.info, \
                 address = excluded.address, connected = 1, connected_at = excluded.connected_at, \
                 disconnected_at = NULL, project = excluded.project, owner_node = excluded.owner_node, \
                 last_heartbeat_at = CASE WHEN clients.last_heartbeat_at IS NULL \
                     OR clients.last_heartbeat_at < excluded.last_heartbeat_at \
                     THEN excluded.last_heartbeat_at ELSE clients.last_heartbeat_at END \
                 WHERE clients.connected = 0 OR clients.owner_node IS NULL \
                 OR clients.owner_node = excluded.owner_node \
                 OR NOT EXISTS (SELECT 1 FROM cluster_nodes n \
                     WHERE n.id = clients.owner_node AND n.lease_until > ?8)",
                params![
                    c.id,
                    c.auth_id,
                    info,
                    c.address,
                    c.connected_at.map(millis),
                    c.project,
                    c.owner_node,
                    now,
                    c.last_heartbeat_at.map(millis),
                ],
            )?;
            let claim = if written > 0 {
                AgentClaim::Claimed
            } else {
                let holder: Option<String> = tx.query_row(
                    "SELECT owner_node FROM clients WHERE id = ?1",
                    [&c.id],
                    |row| row.get(0),
                )?;
                AgentClaim::HeldBy(holder.unwrap_or_default())
            };
            tx.commit()?;
            Ok(claim)
        })
        .await
    }

    async fn release_agent(
        &self,
        id: &str,
        node: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (id, node) = (id.to_owned(), node.to_owned());
        self.run(move |conn| {
            Ok(conn.execute(
                "UPDATE clients SET connected = 0, disconnected_at = ?3 \
                 WHERE id = ?1 AND connected = 1 AND (owner_node = ?2 OR owner_node IS NULL)",
                params![id, node, millis(at)],
            )? > 0)
        })
        .await
    }

    async fn release_node_agents(
        &self,
        node: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let node = node.to_owned();
        self.run(move |conn| {
            let mut stmt = conn.prepare(
                "UPDATE clients SET connected = 0, disconnected_at = ?2 \
                 WHERE connected = 1 AND (owner_node = ?1 OR owner_node IS NULL) RETURNING id",
            )?;
            let ids = stmt
                .query_map(params![node, millis(at)], |row| row.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ids)
        })
        .await
    }

    async fn release_dead_nodes_agents(
        &self,
        at: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        self.run(move |conn| {
            let now = millis(Utc::now());
            let mut stmt = conn.prepare(
                "UPDATE clients SET connected = 0, disconnected_at = ?1 \
                 WHERE connected = 1 AND owner_node IS NOT NULL \
                 AND NOT EXISTS (SELECT 1 FROM cluster_nodes n \
                     WHERE n.id = clients.owner_node AND n.lease_until > ?2) RETURNING id",
            )?;
            let ids = stmt
                .query_map(params![millis(at), now], |row| row.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ids)
        })
        .await
    }

    async fn record_heartbeats(&self, beats: &[(String, DateTime<Utc>)]) -> Result<(), StoreError> {
        if beats.is_empty() {
            return Ok(());
        }
        let beats = beats.to_vec();
        self.run(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare(
                    "UPDATE clients SET last_heartbeat_at = ?2 WHERE id = ?1 \
                     AND (last_heartbeat_at IS NULL OR last_heartbeat_at < ?2)",
                )?;
                for (id, at) in &beats {
                    stmt.execute(params![id, millis(*at)])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn get_agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        let id = id.to_owned();
        self.run(move |conn| {
            let row = conn
                .query_row("SELECT * FROM clients WHERE id = ?1", [&id], agent_from_row)
                .optional()?;
            row.map(|(mut record, info)| {
                record.info = serde_json::from_str(&info)
                    .map_err(|err| corrupt(&format!("client {}", record.id), err))?;
                Ok(record)
            })
            .transpose()
        })
        .await
    }

    async fn list_agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        self.run(|conn| {
            let mut stmt = conn.prepare("SELECT * FROM clients ORDER BY id")?;
            let rows = stmt.query_map([], agent_from_row)?;
            let mut list = Vec::new();
            for row in rows {
                let (mut record, info) = row?;
                record.info = serde_json::from_str(&info)
                    .map_err(|err| corrupt(&format!("client {}", record.id), err))?;
                list.push(record);
            }
            Ok(list)
        })
        .await
    }

    async fn delete_agent(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.run(move |conn| {
            let tx = conn.transaction()?;
            tx.execute("DELETE FROM agent_overrides WHERE agent_id = ?1", [&id])?;
            let deleted = tx.execute("DELETE FROM clients WHERE id = ?1", [&id])? > 0;
            tx.commit()?;
            Ok(deleted)
        })
        .await
    }

    async fn purge_agents_disconnected_before(
        &self,
        cutoff: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        self.run(move |conn| {
            let tx = conn.transaction()?;
            let ids = {
                let mut stmt = tx.prepare(
                    "DELETE FROM clients WHERE connected = 0 AND disconnected_at < ?1 RETURNING id",
                )?;
                stmt.query_map([millis(cutoff)], |row| row.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()?
            };
            tx.execute(
                "DELETE FROM agent_overrides WHERE agent_id NOT IN (SELECT id FROM clients)",
                [],
            )?;
            tx.commit()?;
            Ok(ids)
        })
        .await
    }

    async fn insert_tunnel(&self, tunnel: &TunnelRecord) -> Result<(), StoreError> {
        let t = tunnel.clone();
        self.run(move |conn| insert_tunnel_row(conn, &t)).await
    }

    async fn get_tunnel(&self, id: &str) -> Result<Option<TunnelRecord>, StoreError> {
        let id = id.to_owned();
        self.run(move |conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {TUNNEL_COLUMNS} FROM tunnels WHERE id = ?1"),
                    [id],
                    tunnel_from_row,
                )
                .optional()?)
        })
        .await
    }

    async fn list_tunnels(&self, filter: &TunnelFilter) -> Result<Vec<TunnelRecord>, StoreError> {
        let filter = filter.clone();
        self.run(move |conn| {
            let limit = filter.limit.map_or(-1, |l| l as i64);
            let mut stmt = conn.prepare(&format!(
                "SELECT {TUNNEL_COLUMNS} FROM tunnels \
                 WHERE (?1 IS NULL OR client_id = ?1) AND (?2 = 0 OR status IN ('opened', 'pending')) \
                 AND (?4 IS NULL OR project = ?4) AND (?5 IS NULL OR owner_node = ?5) \
                 AND (?6 IS NULL OR json_extract(options, '$.subdomain') = ?6) \
                 ORDER BY created_at DESC, id LIMIT ?3"
            ))?;
            let rows = stmt.query_map(
                params![
                    filter.agent_id,
                    filter.open_only,
                    limit,
                    filter.project,
                    filter.owner_node,
                    filter.subdomain
                ],
                tunnel_from_row,
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn add_tunnel_counters(
        &self,
        id: &str,
        delta: TunnelCounters,
        last_active_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.run(move |conn| {
            Ok(conn.execute(
                "UPDATE tunnels SET connections = connections + ?2, \
                 connections_refused = connections_refused + ?3, bytes_in = bytes_in + ?4, \
                 bytes_out = bytes_out + ?5, \
                 last_active_at = MAX(COALESCE(last_active_at, ?6), ?6) WHERE id = ?1",
                params![
                    id,
                    delta.connections as i64,
                    delta.refused as i64,
                    delta.bytes_in as i64,
                    delta.bytes_out as i64,
                    millis(last_active_at),
                ],
            )? > 0)
        })
        .await
    }

    async fn set_tunnel_options(
        &self,
        id: &str,
        options: &TunnelOptions,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let options = serde_json::to_string(options)
            .map_err(|err| corrupt(&format!("tunnel {id} options"), err))?;
        self.run(move |conn| {
            Ok(conn.execute(
                "UPDATE tunnels SET options = ?2 WHERE id = ?1",
                params![id, options],
            )? > 0)
        })
        .await
    }

    async fn set_tunnel_status(
        &self,
        id: &str,
        status: TunnelStatus,
        node: &str,
    ) -> Result<bool, StoreError> {
        let (id, node) = (id.to_owned(), node.to_owned());
        self.run(move |conn| {
            Ok(conn.execute(
                "UPDATE tunnels SET status = ?2 WHERE id = ?1 AND status IN ('opened', 'pending') \
                 AND (owner_node = ?3 OR owner_node IS NULL)",
                params![id, status.as_str(), node],
            )? > 0)
        })
        .await
    }

    async fn end_tunnel(
        &self,
        id: &str,
        at: DateTime<Utc>,
        status: TunnelStatus,
        reason: &str,
        holder: Option<&str>,
    ) -> Result<bool, StoreError> {
        let (id, reason, holder) = (id.to_owned(), reason.to_owned(), holder.map(str::to_owned));
        self.run(move |conn| {
            Ok(conn.execute(
                "UPDATE tunnels SET status = ?1, close_reason = ?2, closed_at = ?3 WHERE id = ?4 \
                 AND (?5 IS NULL OR owner_node = ?5 OR owner_node IS NULL)",
                params![status.as_str(), reason, millis(at), id, holder],
            )? > 0)
        })
        .await
    }

    async fn set_tunnel_port(&self, id: &str, lport: u16) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.run(move |conn| {
            Ok(conn.execute(
                "UPDATE tunnels SET lport = ?2, lport_random = 1 WHERE id = ?1",
                params![id, lport],
            )? > 0)
        })
        .await
    }

    async fn adopt_tunnels(
        &self,
        agent_id: &str,
        node: &str,
    ) -> Result<Vec<TunnelRecord>, StoreError> {
        let (agent_id, node) = (agent_id.to_owned(), node.to_owned());
        self.run(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "UPDATE tunnels SET owner_node = ?2 \
                 WHERE client_id = ?1 AND status IN ('opened', 'pending') \
                 RETURNING {TUNNEL_COLUMNS}"
            ))?;
            let rows = stmt.query_map(params![agent_id, node], tunnel_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn list_projects(&self) -> Result<Vec<ProjectRecord>, StoreError> {
        self.run(|conn| {
            let mut stmt =
                conn.prepare("SELECT key, name, created_at FROM projects ORDER BY key")?;
            let rows = stmt.query_map([], |row| {
                Ok(ProjectRecord {
                    key: row.get(0)?,
                    name: row.get(1)?,
                    created_at: from_millis(Some(row.get(2)?)).unwrap_or_default(),
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn insert_project(&self, project: &ProjectRecord) -> Result<bool, StoreError> {
        let p = project.clone();
        self.run(move |conn| {
            Ok(conn.execute(
                "INSERT OR IGNORE INTO projects (key, name, created_at) VALUES (?1, ?2, ?3)",
                params![p.key, p.name, millis(p.created_at)],
            )? == 1)
        })
        .await
    }

    async fn delete_project_if_empty(&self, key: &str) -> Result<ProjectRemoval, StoreError> {
        let key = key.to_owned();
        self.run(move |conn| {
            // Immediate: the write lock from the first read on, so another process (such
            // as `rportd user`) cannot add to the project between the check and the delete.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let count = |table: &str| -> rusqlite::Result<u64> {
                tx.query_row(
                    &format!("SELECT COUNT(*) FROM {table} WHERE project = ?1"),
                    [&key],
                    |row| row.get(0),
                )
            };
            let clients = count("clients")?;
            if clients > 0 {
                return Ok(ProjectRemoval::HasAgents(clients));
            }
            if count("agent_credentials")? > 0 {
                return Ok(ProjectRemoval::HasAgentCredentials);
            }
            if tx.execute("DELETE FROM projects WHERE key = ?1", [&key])? == 0 {
                return Ok(ProjectRemoval::NotFound);
            }
            tx.execute("DELETE FROM user_roles WHERE project = ?1", [&key])?;
            tx.execute("DELETE FROM client_groups WHERE project = ?1", [&key])?;
            tx.execute("DELETE FROM user_group_projects WHERE project = ?1", [&key])?;
            tx.commit()?;
            Ok(ProjectRemoval::Deleted)
        })
        .await
    }

    async fn insert_audit(&self, entry: &AuditRecord) -> Result<(), StoreError> {
        let e = entry.clone();
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO audit_log \
                 (at, actor, actor_type, actor_ip, action, resource, project, result, detail, \
                 client_id, client_hostname) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    millis(e.at),
                    e.actor,
                    e.actor_type,
                    e.actor_ip,
                    e.action,
                    e.resource,
                    e.project,
                    e.result,
                    e.detail,
                    e.client_id,
                    e.client_hostname,
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn list_audit(
        &self,
        filter: &AuditFilter,
    ) -> Result<(Vec<AuditRecord>, u64), StoreError> {
        let query = filter.to_sql(|n| format!("?{n}"));
        self.run(move |conn| {
            read_page(conn, &query, |row| {
                Ok(AuditRecord {
                    id: row.get(0)?,
                    at: from_millis(Some(row.get(1)?)).unwrap_or_default(),
                    actor: row.get(2)?,
                    actor_type: row.get(3)?,
                    actor_ip: row.get(4)?,
                    action: row.get(5)?,
                    resource: row.get(6)?,
                    project: row.get(7)?,
                    result: row.get(8)?,
                    detail: row.get(9)?,
                    client_id: row.get(10)?,
                    client_hostname: row.get(11)?,
                })
            })
        })
        .await
    }

    async fn insert_stored_tunnel(&self, tunnel: &StoredTunnelRecord) -> Result<bool, StoreError> {
        let t = tunnel.clone();
        self.run(move |conn| {
            // Only for an agent that exists, in one statement: no error to tell apart
            // when it was deleted a moment ago.
            let inserted = conn.execute(
                &format!(
                    "INSERT INTO stored_tunnels ({STORED_TUNNEL_COLUMNS}) \
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 \
                     WHERE EXISTS (SELECT 1 FROM clients WHERE id = ?2)"
                ),
                params![
                    t.id,
                    t.agent_id,
                    millis(t.created_at),
                    t.name,
                    t.scheme,
                    t.remote_ip,
                    t.remote_port,
                    t.public_port,
                    t.acl,
                    t.further_options,
                ],
            )?;
            Ok(inserted > 0)
        })
        .await
    }

    async fn update_stored_tunnel(&self, tunnel: &StoredTunnelRecord) -> Result<bool, StoreError> {
        let t = tunnel.clone();
        self.run(move |conn| {
            let updated = conn.execute(
                "UPDATE stored_tunnels SET name = ?3, scheme = ?4, remote_ip = ?5, \
                 remote_port = ?6, public_port = ?7, acl = ?8, further_options = ?9 \
                 WHERE client_id = ?1 AND id = ?2",
                params![
                    t.agent_id,
                    t.id,
                    t.name,
                    t.scheme,
                    t.remote_ip,
                    t.remote_port,
                    t.public_port,
                    t.acl,
                    t.further_options,
                ],
            )?;
            Ok(updated > 0)
        })
        .await
    }

    async fn get_stored_tunnel(
        &self,
        agent_id: &str,
        id: &str,
    ) -> Result<Option<StoredTunnelRecord>, StoreError> {
        let (agent_id, id) = (agent_id.to_owned(), id.to_owned());
        self.run(move |conn| {
            Ok(conn
                .query_row(
                    &format!(
                        "SELECT {STORED_TUNNEL_COLUMNS} FROM stored_tunnels \
                         WHERE client_id = ?1 AND id = ?2"
                    ),
                    [agent_id, id],
                    stored_tunnel_from_row,
                )
                .optional()?)
        })
        .await
    }

    async fn delete_stored_tunnel(&self, agent_id: &str, id: &str) -> Result<bool, StoreError> {
        let (agent_id, id) = (agent_id.to_owned(), id.to_owned());
        self.run(move |conn| {
            Ok(conn.execute(
                "DELETE FROM stored_tunnels WHERE client_id = ?1 AND id = ?2",
                [agent_id, id],
            )? > 0)
        })
        .await
    }

    async fn list_stored_tunnels(
        &self,
        agent_id: &str,
        filter: &StoredTunnelFilter,
    ) -> Result<(Vec<StoredTunnelRecord>, u64), StoreError> {
        let query = filter.to_sql(agent_id, |n| format!("?{n}"));
        self.run(move |conn| read_page(conn, &query, stored_tunnel_from_row))
            .await
    }

    async fn purge_audit_before(&self, cutoff: DateTime<Utc>) -> Result<usize, StoreError> {
        self.run(move |conn| {
            Ok(conn.execute("DELETE FROM audit_log WHERE at < ?1", [millis(cutoff)])?)
        })
        .await
    }

    async fn revoke_token(&self, jti: &str, expires_at: DateTime<Utc>) -> Result<(), StoreError> {
        let jti = jti.to_owned();
        self.run(move |conn| {
            conn.execute(
                "INSERT OR REPLACE INTO revoked_tokens (jti, expires_at) VALUES (?1, ?2)",
                params![jti, millis(expires_at)],
            )?;
            Ok(())
        })
        .await
    }

    async fn revoked_tokens(&self, now: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
        self.run(move |conn| {
            conn.execute(
                "DELETE FROM revoked_tokens WHERE expires_at <= ?1",
                [millis(now)],
            )?;
            let mut stmt = conn.prepare("SELECT jti FROM revoked_tokens")?;
            let rows = stmt.query_map([], |row| row.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .await
    }

    async fn insert_session(&self, session: &SessionRecord) -> Result<i64, StoreError> {
        let s = session.clone();
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO api_sessions (jti, username, created_at, expires_at, \
                 last_access_at, user_agent, ip_address) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    s.jti,
                    s.username,
                    millis(s.created_at),
                    millis(s.expires_at),
                    millis(s.last_access_at),
                    s.user_agent,
                    s.ip_address,
                ],
            )?;
            Ok(conn.last_insert_rowid())
        })
        .await
    }

    async fn list_sessions(&self, username: &str) -> Result<Vec<SessionRecord>, StoreError> {
        let username = username.to_owned();
        self.run(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT * FROM api_sessions WHERE username = ?1 \
                 ORDER BY last_access_at, session_id",
            )?;
            let rows = stmt.query_map([username], session_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn touch_session(
        &self,
        jti: &str,
        at: DateTime<Utc>,
        user_agent: &str,
        ip_address: &str,
    ) -> Result<bool, StoreError> {
        let (jti, user_agent, ip_address) =
            (jti.to_owned(), user_agent.to_owned(), ip_address.to_owned());
        self.run(move |conn| {
            Ok(conn.execute(
                "UPDATE api_sessions SET last_access_at = ?2, user_agent = ?3, ip_address = ?4 \
                 WHERE jti = ?1",
                params![jti, millis(at), user_agent, ip_address],
            )? == 1)
        })
        .await
    }

    async fn delete_sessions(
        &self,
        username: &str,
        id: Option<i64>,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let username = username.to_owned();
        self.run(move |conn| {
            let mut stmt = conn.prepare(
                "DELETE FROM api_sessions WHERE username = ?1 \
                 AND (?2 IS NULL OR session_id = ?2) RETURNING *",
            )?;
            let rows = stmt.query_map(params![username, id], session_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn purge_sessions(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        self.run(move |conn| {
            Ok(conn.execute(
                "DELETE FROM api_sessions WHERE expires_at <= ?1",
                [millis(now)],
            )?)
        })
        .await
    }

    async fn get_totp_secret(&self, username: &str) -> Result<Option<String>, StoreError> {
        let username = username.to_owned();
        self.run(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT secret FROM totp_secrets WHERE username = ?1",
                    [username],
                    |row| row.get(0),
                )
                .optional()?)
        })
        .await
    }

    async fn insert_totp_secret(
        &self,
        username: &str,
        secret: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (username, secret) = (username.to_owned(), secret.to_owned());
        self.run(move |conn| {
            Ok(conn.execute(
                "INSERT INTO totp_secrets (username, secret, created_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (username) DO NOTHING",
                params![username, secret, millis(at)],
            )? == 1)
        })
        .await
    }

    async fn delete_totp_secret(&self, username: &str) -> Result<bool, StoreError> {
        let username = username.to_owned();
        self.run(move |conn| {
            Ok(conn.execute("DELETE FROM totp_secrets WHERE username = ?1", [username])? == 1)
        })
        .await
    }

    async fn insert_api_token(&self, token: &ApiTokenRecord) -> Result<(), StoreError> {
        let t = token.clone();
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO api_tokens (id, username, name, scope, project, hash, created_at, \
                 expires_at, last_used_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    t.id,
                    t.username,
                    t.name,
                    t.scope,
                    t.project,
                    t.hash,
                    millis(t.created_at),
                    t.expires_at.map(millis),
                    t.last_used_at.map(millis),
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn get_api_token(&self, id: &str) -> Result<Option<ApiTokenRecord>, StoreError> {
        let id = id.to_owned();
        self.run(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT * FROM api_tokens WHERE id = ?1",
                    [id],
                    api_token_from_row,
                )
                .optional()?)
        })
        .await
    }

    async fn list_api_tokens(&self, username: &str) -> Result<Vec<ApiTokenRecord>, StoreError> {
        let username = username.to_owned();
        self.run(move |conn| {
            let mut stmt =
                conn.prepare("SELECT * FROM api_tokens WHERE username = ?1 ORDER BY created_at")?;
            let rows = stmt.query_map([username], api_token_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn delete_api_token(&self, username: &str, id: &str) -> Result<bool, StoreError> {
        let (username, id) = (username.to_owned(), id.to_owned());
        self.run(move |conn| {
            Ok(conn.execute(
                "DELETE FROM api_tokens WHERE username = ?1 AND id = ?2",
                [username, id],
            )? == 1)
        })
        .await
    }

    async fn update_api_token(
        &self,
        username: &str,
        id: &str,
        change: &ApiTokenChange,
    ) -> Result<bool, StoreError> {
        let (username, id, change) = (username.to_owned(), id.to_owned(), change.clone());
        self.run(move |conn| {
            let changed = conn.execute(
                "UPDATE api_tokens SET name = ?3, scope = ?4, expires_at = ?5 \
                 WHERE username = ?1 AND id = ?2",
                params![
                    username,
                    id,
                    change.name,
                    change.scope,
                    change.expires_at.map(millis)
                ],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    async fn touch_api_token(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.run(move |conn| {
            conn.execute(
                "UPDATE api_tokens SET last_used_at = ?2 WHERE id = ?1",
                params![id, millis(at)],
            )?;
            Ok(())
        })
        .await
    }

    async fn get_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let username = username.to_owned();
        self.run(move |conn| {
            let user = conn
                .query_row(
                    "SELECT * FROM users WHERE username = ?1",
                    [username],
                    user_from_row,
                )
                .optional()?;
            let mut users: Vec<UserRecord> = user.into_iter().collect();
            with_roles(conn, &mut users)?;
            Ok(users.pop())
        })
        .await
    }

    async fn update_user(
        &self,
        user: &UserRecord,
        guard: AdminGuard,
    ) -> Result<UserWrite, StoreError> {
        let u = user.clone();
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let outcome = admin_guarded(&tx, &u.username, guard, !u.is_admin)?;
            if outcome == UserWrite::Done {
                write_user(&tx, &u)?;
                tx.commit()?;
            }
            Ok(outcome)
        })
        .await
    }

    async fn insert_user(&self, user: &UserRecord) -> Result<bool, StoreError> {
        let u = user.clone();
        self.run(move |conn| {
            let tx = conn.transaction()?;
            let taken = tx
                .query_row(
                    "SELECT 1 FROM users WHERE username = ?1",
                    [&u.username],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if taken {
                return Ok(false);
            }
            write_user(&tx, &u)?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.run(|conn| {
            let mut stmt = conn.prepare("SELECT * FROM users ORDER BY username")?;
            let mut users = stmt
                .query_map([], user_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            drop(stmt);
            with_roles(conn, &mut users)?;
            Ok(users)
        })
        .await
    }

    async fn delete_user(
        &self,
        username: &str,
        guard: AdminGuard,
    ) -> Result<UserWrite, StoreError> {
        let username = username.to_owned();
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let outcome = admin_guarded(&tx, &username, guard, true)?;
            if outcome == UserWrite::Done {
                tx.execute("DELETE FROM users WHERE username = ?1", [&username])?;
                tx.execute("DELETE FROM user_roles WHERE username = ?1", [&username])?;
                tx.execute("DELETE FROM api_tokens WHERE username = ?1", [&username])?;
                tx.execute("DELETE FROM api_sessions WHERE username = ?1", [&username])?;
                tx.execute("DELETE FROM totp_secrets WHERE username = ?1", [&username])?;
                tx.execute(
                    "DELETE FROM user_group_members WHERE username = ?1",
                    [&username],
                )?;
                tx.commit()?;
            }
            Ok(outcome)
        })
        .await
    }

    async fn rename_user(&self, from: &str, to: &str) -> Result<UserWrite, StoreError> {
        let (from, to) = (from.to_owned(), to.to_owned());
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let exists = |name: &str| {
                tx.query_row(
                    "SELECT 1 FROM users WHERE username = ?1",
                    [name],
                    |_| Ok(()),
                )
                .optional()
                .map(|row| row.is_some())
            };
            if !exists(&from)? {
                return Ok(UserWrite::NotFound);
            }
            if exists(&to)? {
                return Ok(UserWrite::Taken);
            }
            // Login tokens of the old name end (their sessions with them); the rest moves.
            tx.execute("DELETE FROM api_sessions WHERE username = ?1", [&from])?;
            for table in [
                "users",
                "user_roles",
                "api_tokens",
                "user_group_members",
                "totp_secrets",
            ] {
                tx.execute(
                    &format!("UPDATE {table} SET username = ?2 WHERE username = ?1"),
                    [&from, &to],
                )?;
            }
            tx.commit()?;
            Ok(UserWrite::Done)
        })
        .await
    }

    async fn list_agent_credentials(&self) -> Result<Vec<AgentCredentialRecord>, StoreError> {
        self.run(|conn| {
            let mut stmt =
                conn.prepare("SELECT id, hash, project FROM agent_credentials ORDER BY id")?;
            let rows = stmt.query_map([], |row| {
                let id: String = row.get(0)?;
                // A column that does not read names its credential rather than failing as
                // a database error: the server refuses to start on it.
                let rest = (row.get(1), row.get(2));
                Ok((id, rest))
            })?;
            let mut list = Vec::new();
            for row in rows {
                match row? {
                    (id, (Ok(hash), Ok(project))) => {
                        list.push(AgentCredentialRecord { id, hash, project })
                    }
                    (id, (Err(err), _) | (_, Err(err))) => {
                        return Err(corrupt(
                            &format!("agent credential {id:?} (table agent_credentials)"),
                            err,
                        ));
                    }
                }
            }
            Ok(list)
        })
        .await
    }

    async fn insert_agent_credential(
        &self,
        credential: &AgentCredentialRecord,
    ) -> Result<bool, StoreError> {
        let c = credential.clone();
        self.run(move |conn| {
            Ok(conn.execute(
                "INSERT OR IGNORE INTO agent_credentials (id, hash, project) VALUES (?1, ?2, ?3)",
                [&c.id, &c.hash, &c.project],
            )? == 1)
        })
        .await
    }

    async fn delete_agent_credential(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.run(move |conn| {
            Ok(conn.execute("DELETE FROM agent_credentials WHERE id = ?1", [id])? == 1)
        })
        .await
    }

    async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.run(move |conn| {
            Ok(conn.query_row(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = value RETURNING value",
                [key, value],
                |row| row.get(0),
            )?)
        })
        .await
    }

    async fn renew_node(&self, node: &NodeRecord, lease: Duration) -> Result<(), StoreError> {
        let n = node.clone();
        let lease = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        self.run(move |conn| {
            let until = millis(Utc::now()).saturating_add(lease);
            conn.execute(
                "INSERT INTO cluster_nodes \
                 (id, peer_address, public_host, api_address, started_at, lease_until) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO UPDATE SET \
                 peer_address = excluded.peer_address, public_host = excluded.public_host, \
                 api_address = excluded.api_address, started_at = excluded.started_at, \
                 lease_until = excluded.lease_until",
                params![
                    n.id,
                    n.peer_address,
                    n.public_host,
                    n.api_address,
                    millis(n.started_at),
                    until
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn list_nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.run(|conn| {
            let now = millis(Utc::now());
            let mut stmt = conn.prepare(
                "SELECT id, peer_address, public_host, api_address, started_at, lease_until \
                 FROM cluster_nodes ORDER BY id",
            )?;
            let rows = stmt.query_map([], |row| {
                let lease_until: i64 = row.get(5)?;
                Ok(NodeRecord {
                    id: row.get(0)?,
                    peer_address: row.get(1)?,
                    public_host: row.get(2)?,
                    api_address: row.get(3)?,
                    started_at: from_millis(row.get(4)?).unwrap_or_default(),
                    lease_until: from_millis(Some(lease_until)).unwrap_or_default(),
                    alive: lease_until > now,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn retire_node(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.run(move |conn| {
            conn.execute(
                "UPDATE cluster_nodes SET lease_until = ?2 WHERE id = ?1",
                params![id, millis(Utc::now())],
            )?;
            Ok(())
        })
        .await
    }

    async fn publish_event(&self, topic: &str, key: &str, origin: &str) -> Result<i64, StoreError> {
        let (topic, key, origin) = (topic.to_owned(), key.to_owned(), origin.to_owned());
        self.run(move |conn| {
            Ok(conn.query_row(
                "INSERT INTO cluster_events (at, topic, key, origin) VALUES (?1, ?2, ?3, ?4) \
                 RETURNING seq",
                params![millis(Utc::now()), topic, key, origin],
                |row| row.get(0),
            )?)
        })
        .await
    }

    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<ClusterEvent>, StoreError> {
        self.run(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT seq, at, topic, key, origin FROM cluster_events WHERE seq > ?1 \
                 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after, limit], |row| {
                Ok(ClusterEvent {
                    seq: row.get(0)?,
                    at: from_millis(row.get(1)?).unwrap_or_default(),
                    topic: row.get(2)?,
                    key: row.get(3)?,
                    origin: row.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn last_event_seq(&self) -> Result<i64, StoreError> {
        self.run(|conn| {
            Ok(conn.query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM cluster_events",
                [],
                |row| row.get(0),
            )?)
        })
        .await
    }

    async fn purge_events_before(&self, cutoff: DateTime<Utc>) -> Result<usize, StoreError> {
        self.run(move |conn| {
            Ok(conn.execute("DELETE FROM cluster_events WHERE at < ?1", [millis(cutoff)])?)
        })
        .await
    }
    async fn list_user_groups(&self) -> Result<Vec<UserGroupRecord>, StoreError> {
        self.run(|conn| read_user_groups(conn, "SELECT * FROM user_groups ORDER BY name", []))
            .await
    }

    async fn get_user_group(&self, name: &str) -> Result<Option<UserGroupRecord>, StoreError> {
        let name = name.to_owned();
        self.run(move |conn| {
            let sql = "SELECT * FROM user_groups WHERE name = ?1";
            Ok(read_user_groups(conn, sql, [name])?.pop())
        })
        .await
    }

    async fn put_user_group(&self, group: &UserGroupRecord) -> Result<(), StoreError> {
        let g = group.clone();
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT OR REPLACE INTO user_groups \
                 (name, permissions, tunnels_restricted, commands_restricted) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    g.name,
                    g.permissions_text(),
                    g.tunnels_restricted,
                    g.commands_restricted
                ],
            )?;
            tx.execute(
                "DELETE FROM user_group_projects WHERE group_name = ?1",
                [&g.name],
            )?;
            for project in &g.projects {
                tx.execute(
                    "INSERT OR IGNORE INTO user_group_projects (group_name, project) \
                     VALUES (?1, ?2)",
                    [&g.name, project],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn delete_user_group(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut deleted = 0;
            for sql in [
                "DELETE FROM user_groups WHERE name = ?1",
                "DELETE FROM user_group_projects WHERE group_name = ?1",
                "DELETE FROM user_group_members WHERE group_name = ?1",
            ] {
                deleted += tx.execute(sql, [&name])?;
            }
            tx.commit()?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn list_user_group_members(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.run(|conn| {
            let mut stmt = conn.prepare(
                "SELECT username, group_name FROM user_group_members \
                 ORDER BY username, group_name",
            )?;
            let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn set_user_groups(&self, username: &str, groups: &[String]) -> Result<(), StoreError> {
        let (username, groups) = (username.to_owned(), groups.to_vec());
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "DELETE FROM user_group_members WHERE username = ?1",
                [&username],
            )?;
            for group in &groups {
                tx.execute(
                    "INSERT OR IGNORE INTO user_group_members (username, group_name) \
                     VALUES (?1, ?2)",
                    [&username, group],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn user_groups_of(&self, username: &str) -> Result<Vec<UserGroupRecord>, StoreError> {
        let username = username.to_owned();
        self.run(move |conn| {
            let sql = "SELECT g.* FROM user_groups g \
                       JOIN user_group_members m ON m.group_name = g.name \
                       WHERE m.username = ?1 ORDER BY g.name";
            read_user_groups(conn, sql, [username])
        })
        .await
    }

    async fn list_client_groups(&self) -> Result<Vec<ClientGroupRecord>, StoreError> {
        self.run(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {CLIENT_GROUP_COLUMNS} FROM client_groups ORDER BY id"
            ))?;
            let rows = stmt.query_map([], client_group_columns)?;
            rows.map(|row| client_group_from(row?))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
    }

    async fn get_client_group(&self, id: &str) -> Result<Option<ClientGroupRecord>, StoreError> {
        let id = id.to_owned();
        self.run(move |conn| {
            conn.query_row(
                &format!("SELECT {CLIENT_GROUP_COLUMNS} FROM client_groups WHERE id = ?1"),
                [id],
                client_group_columns,
            )
            .optional()?
            .map(client_group_from)
            .transpose()
        })
        .await
    }

    async fn put_client_group(&self, group: &ClientGroupRecord) -> Result<bool, StoreError> {
        let g = group.clone();
        let allowed = serde_json::to_string(&g.allowed_user_groups)
            .map_err(|err| corrupt("client group", err))?;
        self.run(move |conn| {
            Ok(conn.execute(
                "INSERT INTO client_groups (id, project, description, params, allowed_user_groups) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (id) DO UPDATE SET description = excluded.description, \
                 params = excluded.params, allowed_user_groups = excluded.allowed_user_groups \
                 WHERE client_groups.project = excluded.project",
                params![
                    g.id,
                    g.project,
                    g.description,
                    g.params.to_string(),
                    allowed
                ],
            )? == 1)
        })
        .await
    }

    async fn delete_client_group(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.run(move |conn| {
            Ok(conn.execute("DELETE FROM client_groups WHERE id = ?1", [id])? == 1)
        })
        .await
    }

    async fn list_agent_overrides(&self) -> Result<Vec<AgentOverridesRecord>, StoreError> {
        self.run(|conn| {
            let mut stmt = conn.prepare(
                "SELECT agent_id, attributes, allowed_user_groups FROM agent_overrides \
                 ORDER BY agent_id",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, Option<String>>(2)?,
                ))
            })?;
            rows.map(|row| {
                let (agent_id, attributes, allowed) = row?;
                agent_overrides_from(agent_id, attributes.as_deref(), allowed.as_deref())
            })
            .collect::<Result<Vec<_>, _>>()
        })
        .await
    }

    async fn set_agent_attributes(
        &self,
        agent_id: &str,
        attributes: &AgentAttributes,
    ) -> Result<bool, StoreError> {
        let text =
            serde_json::to_string(attributes).map_err(|err| corrupt("agent attributes", err))?;
        self.set_agent_override(agent_id, "attributes", text).await
    }

    async fn set_agent_allowed_user_groups(
        &self,
        agent_id: &str,
        groups: &[String],
    ) -> Result<bool, StoreError> {
        let text = serde_json::to_string(groups).map_err(|err| corrupt("agent ACL", err))?;
        self.set_agent_override(agent_id, "allowed_user_groups", text)
            .await
    }
}

const CLIENT_GROUP_COLUMNS: &str = "id, project, description, params, allowed_user_groups";

type ClientGroupColumns = (String, String, String, String, String);

fn client_group_columns(row: &Row<'_>) -> rusqlite::Result<ClientGroupColumns> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

/// A client group from its columns, the JSON ones parsed: shared with PostgreSQL.
pub(crate) fn client_group_from(
    (id, project, description, params, allowed): ClientGroupColumns,
) -> Result<ClientGroupRecord, StoreError> {
    let what = format!("client group {id:?} (table client_groups)");
    Ok(ClientGroupRecord {
        params: json_column(&what, Some(&params))?.unwrap_or_default(),
        allowed_user_groups: json_column(&what, Some(&allowed))?.unwrap_or_default(),
        id,
        project,
        description,
    })
}

/// An agent's overrides from its columns, the JSON ones parsed: shared with PostgreSQL.
pub(crate) fn agent_overrides_from(
    agent_id: String,
    attributes: Option<&str>,
    allowed: Option<&str>,
) -> Result<AgentOverridesRecord, StoreError> {
    let what = format!("agent {agent_id:?} (table agent_overrides)");
    Ok(AgentOverridesRecord {
        attributes: json_column(&what, attributes)?,
        allowed_user_groups: json_column(&what, allowed)?,
        agent_id,
    })
}

impl SqliteStore {
    /// Writes one column of an agent's overrides, if the agent is stored.
    async fn set_agent_override(
        &self,
        agent_id: &str,
        column: &'static str,
        text: String,
    ) -> Result<bool, StoreError> {
        let agent_id = agent_id.to_owned();
        self.run(move |conn| {
            Ok(conn.execute(
                &format!(
                    "INSERT INTO agent_overrides (agent_id, {column}) \
                     SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM clients WHERE id = ?1) \
                     ON CONFLICT (agent_id) DO UPDATE SET {column} = excluded.{column}"
                ),
                params![agent_id, text],
            )? == 1)
        })
        .await
    }
}
