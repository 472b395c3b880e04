//! SQLite backend: one file in the data dir, WAL journal, schema upgraded by numbered
//! migrations recorded in `PRAGMA user_version`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, TransactionBehavior, params};

use crate::tunnel_row::{self, from_millis};
use crate::{
    AdminGuard, AgentClaim, AgentCredentialRecord, AgentRecord, ApiTokenRecord, AuditFilter,
    AuditRecord, BackendError, ClusterEvent, DEFAULT_PROJECT, NodeRecord, ProjectRecord,
    ProjectRemoval, SessionRecord, Store, StoreError, TunnelCounters, TunnelFilter, TunnelOptions,
    TunnelRecord, TunnelStatus, UserRecord, UserWrite,
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
    // 10: login sessions (one per token from /login, found by the token's id) and users'
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

fn write_user(tx: &rusqlite::Transaction<'_>, u: &UserRecord) -> Result<(), StoreError> {
    tx.execute(
        "INSERT OR REPLACE INTO users (username, password_hash, is_admin, created_at) \
         VALUES (?1, ?2, ?3, ?4)",
        params![
            u.username,
            u.password_hash,
            u.is_admin,
            millis(u.created_at)
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
                 owner_node) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
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
                 owner_node) VALUES (?1, ?2, ?3, ?4, 1, ?5, NULL, ?6, ?7) \
                 ON CONFLICT (id) DO UPDATE SET auth_id = excluded.auth_id, info = excluded.info, \
                 address = excluded.address, connected = 1, connected_at = excluded.connected_at, \
                 disconnected_at = NULL, project = excluded.project, owner_node = excluded.owner_node \
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
        self.run(move |conn| Ok(conn.execute("DELETE FROM clients WHERE id = ?1", [id])? > 0))
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
                 (at, actor, actor_type, actor_ip, action, resource, project, result, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
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
        let f = filter.clone();
        self.run(move |conn| {
            const WHERE: &str = "WHERE (?1 IS NULL OR at >= ?1) AND (?2 IS NULL OR at <= ?2) \
                 AND (?3 IS NULL OR actor = ?3) AND (?4 IS NULL OR action = ?4) \
                 AND (?5 IS NULL OR project = ?5)";
            let since = f.since.map(millis);
            let until = f.until.map(millis);
            let total: i64 = conn.query_row(
                &format!("SELECT COUNT(*) FROM audit_log {WHERE}"),
                params![since, until, f.actor, f.action, f.project],
                |row| row.get(0),
            )?;
            let mut stmt = conn.prepare(&format!(
                "SELECT id, at, actor, actor_type, actor_ip, action, resource, project, result, \
                 detail FROM audit_log {WHERE} ORDER BY at DESC, id DESC LIMIT ?6 OFFSET ?7"
            ))?;
            let rows = stmt.query_map(
                params![
                    since,
                    until,
                    f.actor,
                    f.action,
                    f.project,
                    f.limit as i64,
                    f.offset as i64
                ],
                |row| {
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
                    })
                },
            )?;
            let list = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((list, total as u64))
        })
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
                tx.commit()?;
            }
            Ok(outcome)
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
}
