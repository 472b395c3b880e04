//! PostgreSQL backend, for several rportd nodes sharing one database: the same records
//! and rules as the SQLite backend, over a bounded pool of connections.
//!
//! The driver is tokio-postgres with the deadpool-postgres pool: async all the way (no
//! blocking thread per query), SQL checked when it runs, so building rportd needs no
//! database (as sqlx's compile-time checks would), and statements prepared once per
//! connection.

mod error;
mod rows;
mod schema;
mod url;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{
    Client, GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime,
};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use self::error::PgError;
use self::rows::{AGENT_COLUMNS, API_TOKEN_COLUMNS, SESSION_COLUMNS, TUNNEL_COLUMNS, USER_COLUMNS};
pub use self::url::PostgresUrl;
use crate::list_sql::{PageQuery, SqlValue};
use crate::sqlite::{agent_overrides_from, client_group_from, corrupt, millis};
use crate::stored_tunnels::STORED_TUNNEL_COLUMNS;
use crate::{
    AdminGuard, AgentAttributes, AgentClaim, AgentCredentialRecord, AgentOverridesRecord,
    AgentRecord, ApiTokenChange, ApiTokenRecord, AuditFilter, AuditRecord, ClientGroupRecord,
    ClusterEvent, NodeRecord, ProjectRecord, ProjectRemoval, SessionRecord, Store, StoreError,
    StoredTunnelFilter, StoredTunnelRecord, TunnelCounters, TunnelFilter, TunnelOptions,
    TunnelRecord, TunnelStatus, UserGroupRecord, UserRecord, UserWrite,
};

/// Connections one rportd holds at most. Each query holds one only while it runs, so 16
/// carry far more than 16 agents; PostgreSQL's default `max_connections` (100) leaves
/// room for five nodes and the operator's own tools.
pub const POOL_SIZE: usize = 16;
/// Connections for renewing the node's lease and reading the node list, beside the pool.
pub const LEASE_POOL_SIZE: usize = 1;
/// How long a query waits for a free connection before the database counts as unavailable.
const WAIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Opening a connection (after the URL's `connect_timeout`, 10 s unless set).
const CREATE_TIMEOUT: Duration = Duration::from_secs(15);
/// Checking an idle connection before it is handed out again.
const RECYCLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Runs of one piece of work that PostgreSQL rolled back for clashing with another
/// transaction (serialization failure, deadlock) before the error goes to the caller.
const ATTEMPTS: u32 = 5;
/// Now in milliseconds by PostgreSQL's clock: leases are compared with the store's clock
/// only, so that nodes never compare their own.
const NOW_MS: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

/// Runs `$body` with `$client`, a connection from the pool, again when [`PostgresStore::settle`]
/// says so; the body's `?` ends only the attempt. A macro rather than a function taking an
/// async closure, because the futures `async_trait` returns must be `Send`, which the
/// compiler cannot yet prove for an async closure over a borrowed connection.
macro_rules! with_client {
    ($store:expr, |$client:ident| $body:expr) => {
        with_client!($store, pool, |$client| $body)
    };
    ($store:expr, $pool:ident, |$client:ident| $body:expr) => {{
        let store: &PostgresStore = $store;
        let mut attempt = 1;
        loop {
            let outcome: Result<_, PgError> = async {
                let mut pooled = store.$pool.get().await?;
                #[allow(unused_mut)]
                let $client: &mut Client = &mut pooled;
                $body
            }
            .await;
            if let Some(result) = store.settle(outcome, &mut attempt).await {
                break result;
            }
        }
    }};
}

pub struct PostgresStore {
    pool: Pool,
    /// Connections kept for the node's lease alone ([`LEASE_POOL_SIZE`]): a burst of work
    /// (thousands of agents connecting at once) waiting for `pool` must never make the
    /// lease run out, or the other nodes would count this one dead while it lives.
    lease_pool: Pool,
    /// `HOST:PORT`, for messages that send the operator there.
    endpoint: String,
    database: String,
}

impl PostgresStore {
    /// Connects, and brings the schema up to date (or refuses a newer one).
    pub async fn open(url: &PostgresUrl) -> Result<Self, StoreError> {
        let manager = Manager::from_config(
            url.config().clone(),
            tls(url)?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let build = |manager, size| {
            Pool::builder(manager)
                .max_size(size)
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(WAIT_TIMEOUT))
                .create_timeout(Some(CREATE_TIMEOUT))
                .recycle_timeout(Some(RECYCLE_TIMEOUT))
                .build()
                .map_err(|err| StoreError::Backend(Box::new(err)))
        };
        let lease_manager = Manager::from_config(
            url.config().clone(),
            tls(url)?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let store = Self {
            pool: build(manager, POOL_SIZE)?,
            lease_pool: build(lease_manager, LEASE_POOL_SIZE)?,
            endpoint: url.endpoint(),
            database: url
                .config()
                .get_dbname()
                .or(url.config().get_user())
                .unwrap_or_default()
                .to_owned(),
        };
        with_client!(&store, |client| schema::migrate(client).await)?;
        Ok(store)
    }

    /// What one attempt of `with_client!` came to: the result for the caller, or `None`
    /// to run the work again, when PostgreSQL rolled it back for clashing with another
    /// transaction and attempts are left.
    async fn settle<T>(
        &self,
        outcome: Result<T, PgError>,
        attempt: &mut u32,
    ) -> Option<Result<T, StoreError>> {
        match outcome {
            Err(err) if err.is_retryable() && *attempt < ATTEMPTS => {
                tracing::debug!("PostgreSQL rolled back a transaction; trying again");
                tokio::time::sleep(Duration::from_millis(5 << *attempt)).await;
                *attempt += 1;
                None
            }
            outcome => {
                Some(outcome.map_err(|err| err.into_store_error(&self.endpoint, &self.database)))
            }
        }
    }
}

/// TLS for connections that ask for it (`sslmode`), checking the server's certificate
/// against the system's roots.
fn tls(url: &PostgresUrl) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    if url.uses_tls() {
        let found = rustls_native_certs::load_native_certs();
        for err in &found.errors {
            tracing::debug!("reading system CA certificates: {err}");
        }
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err(StoreError::Unavailable {
                reason: format!(
                    "this system has no CA certificates to check PostgreSQL at {} with \
                     (install ca-certificates, or set sslmode=disable on a trusted network)",
                    url.endpoint()
                ),
                source: "no system root certificates".into(),
            });
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| StoreError::Backend(Box::new(err)))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

type Params<'a> = [&'a (dyn ToSql + Sync)];

/// Statements are prepared once per connection and kept.
async fn execute(
    client: &impl GenericClient,
    sql: &str,
    params: &Params<'_>,
) -> Result<u64, PgError> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.execute(&statement, params).await?)
}

async fn query(
    client: &impl GenericClient,
    sql: &str,
    params: &Params<'_>,
) -> Result<Vec<Row>, PgError> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.query(&statement, params).await?)
}

async fn query_opt(
    client: &impl GenericClient,
    sql: &str,
    params: &Params<'_>,
) -> Result<Option<Row>, PgError> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.query_opt(&statement, params).await?)
}

async fn query_one(
    client: &impl GenericClient,
    sql: &str,
    params: &Params<'_>,
) -> Result<Row, PgError> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.query_one(&statement, params).await?)
}

/// A page of a filtered list and the filter's total. The statements are made per filter:
/// prepared unnamed, so that the statement cache does not grow with every combination a
/// caller sends.
async fn read_page<T>(
    client: &impl GenericClient,
    query: &PageQuery,
    read: fn(&Row) -> Result<T, PgError>,
) -> Result<(Vec<T>, u64), PgError> {
    let mut params: Vec<&(dyn ToSql + Sync)> = query.params.iter().map(pg_value).collect();
    let total: i64 = client
        .query_one(query.count_sql().as_str(), &params)
        .await?
        .try_get(0)?;
    let [limit, offset] = query.limit_and_offset();
    params.extend([&limit as &(dyn ToSql + Sync), &offset]);
    let rows = client
        .query(query.page_sql(|n| format!("${n}")).as_str(), &params)
        .await?;
    Ok((each(rows, read)?, u64::try_from(total).unwrap_or_default()))
}

fn pg_value(value: &SqlValue) -> &(dyn ToSql + Sync) {
    match value {
        SqlValue::Text(text) => text,
        SqlValue::Int(n) => n,
    }
}

fn each<T>(rows: Vec<Row>, read: fn(&Row) -> Result<T, PgError>) -> Result<Vec<T>, PgError> {
    rows.iter().map(read).collect()
}

/// The first column of each row: the ids a `RETURNING id` gave.
fn ids(rows: Vec<Row>) -> Result<Vec<String>, PgError> {
    rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
}

/// Fills in the roles of users read from the `users` table.
async fn with_roles(client: &impl GenericClient, users: &mut [UserRecord]) -> Result<(), PgError> {
    let names: Vec<&str> = users.iter().map(|u| u.username.as_str()).collect();
    let rows = query(
        client,
        "SELECT username, project, role FROM user_roles WHERE username = ANY($1)",
        &[&names],
    )
    .await?;
    let mut roles: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for row in rows {
        roles
            .entry(row.try_get("username")?)
            .or_default()
            .insert(row.try_get("project")?, row.try_get("role")?);
    }
    for user in users {
        user.roles = roles.remove(&user.username).unwrap_or_default();
    }
    Ok(())
}

/// Rows of `user_groups` (all columns) with their projects.
async fn read_user_groups(
    client: &impl GenericClient,
    rows: Vec<Row>,
) -> Result<Vec<UserGroupRecord>, PgError> {
    let mut groups = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = row.try_get("name")?;
        let permissions: String = row.try_get("permissions")?;
        let projects = query(
            client,
            "SELECT project FROM user_group_projects WHERE group_name = $1 ORDER BY project",
            &[&name],
        )
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<Vec<String>, _>>()?;
        groups.push(UserGroupRecord {
            permissions: UserGroupRecord::parse_permissions(&name, &permissions)?,
            tunnels_restricted: row.try_get("tunnels_restricted")?,
            commands_restricted: row.try_get("commands_restricted")?,
            projects,
            name,
        });
    }
    Ok(groups)
}

const USER_GROUP_COLUMNS: &str = "name, permissions, tunnels_restricted, commands_restricted";

async fn write_user(tx: &impl GenericClient, u: &UserRecord) -> Result<(), PgError> {
    execute(
        tx,
        "INSERT INTO users (username, password_hash, is_admin, created_at, password_expired, \
         two_fa_send_to) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (username) DO UPDATE SET \
         password_hash = EXCLUDED.password_hash, is_admin = EXCLUDED.is_admin, \
         created_at = EXCLUDED.created_at, password_expired = EXCLUDED.password_expired, \
         two_fa_send_to = EXCLUDED.two_fa_send_to",
        &[
            &u.username,
            &u.password_hash,
            &u.is_admin,
            &millis(u.created_at),
            &u.password_expired,
            &u.two_fa_send_to,
        ],
    )
    .await?;
    write_roles(tx, u).await
}

async fn write_roles(tx: &impl GenericClient, u: &UserRecord) -> Result<(), PgError> {
    execute(
        tx,
        "DELETE FROM user_roles WHERE username = $1",
        &[&u.username],
    )
    .await?;
    for (project, role) in &u.roles {
        execute(
            tx,
            "INSERT INTO user_roles (username, project, role) VALUES ($1, $2, $3)",
            &[&u.username, project, role],
        )
        .await?;
    }
    Ok(())
}

/// Takes the write lock on `users` that SQLite's immediate transactions take on the whole
/// file: changes to users wait for each other, so a check and its act see the same admins.
async fn lock_users(tx: &impl GenericClient) -> Result<(), PgError> {
    execute(tx, "LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE", &[]).await?;
    Ok(())
}

/// Whether a change that takes `username`'s administrator right away (`removes_admin`)
/// may go ahead: the user must exist and, with [`AdminGuard::KeepOne`], another
/// administrator must remain. Read inside the caller's transaction, after [`lock_users`].
async fn admin_guarded(
    tx: &impl GenericClient,
    username: &str,
    guard: AdminGuard,
    removes_admin: bool,
) -> Result<UserWrite, PgError> {
    let Some(row) = query_opt(
        tx,
        "SELECT is_admin FROM users WHERE username = $1",
        &[&username],
    )
    .await?
    else {
        return Ok(UserWrite::NotFound);
    };
    let is_admin: bool = row.try_get(0)?;
    if is_admin && removes_admin && guard == AdminGuard::KeepOne {
        let others: i64 = query_one(
            tx,
            "SELECT COUNT(*) FROM users WHERE is_admin AND username <> $1",
            &[&username],
        )
        .await?
        .try_get(0)?;
        if others == 0 {
            return Ok(UserWrite::LastAdmin);
        }
    }
    Ok(UserWrite::Done)
}

fn options_json(id: &str, options: &TunnelOptions) -> Result<String, StoreError> {
    serde_json::to_string(options).map_err(|err| corrupt(&format!("tunnel {id} options"), err))
}

#[async_trait]
impl Store for PostgresStore {
    async fn upsert_agent(&self, agent: &AgentRecord) -> Result<(), StoreError> {
        let c = agent;
        let info = serde_json::to_string(&c.info).map_err(|err| corrupt("agent facts", err))?;
        with_client!(self, |client| {
            execute(
                client,
                "INSERT INTO clients (id, auth_id, info, address, connected, connected_at, \
                 disconnected_at, project, owner_node, last_heartbeat_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (id) DO UPDATE SET \
                 auth_id = EXCLUDED.auth_id, info = EXCLUDED.info, address = EXCLUDED.address, \
                 connected = EXCLUDED.connected, connected_at = EXCLUDED.connected_at, \
                 disconnected_at = EXCLUDED.disconnected_at, project = EXCLUDED.project, \
                 owner_node = EXCLUDED.owner_node, last_heartbeat_at = EXCLUDED.last_heartbeat_at",
                &[
                    &c.id,
                    &c.auth_id,
                    &info,
                    &c.address,
                    &c.connected,
                    &c.connected_at.map(millis),
                    &c.disconnected_at.map(millis),
                    &c.project,
                    &c.owner_node,
                    &c.last_heartbeat_at.map(millis),
                ],
            )
            .await?;
            Ok(())
        })
    }

    async fn claim_agent(&self, agent: &AgentRecord) -> Result<AgentClaim, StoreError> {
        let c = agent;
        let info = serde_json::to_string(&c.info).map_err(|err| corrupt("agent facts", err))?;
        // Of claims at once, the first inserts or updates the row; the others wait for its
        // lock, then find it held by a live node, so their condition fails.
        let claim = format!(
            "INSERT INTO clients (id, auth_id, info, address, connected, connected_at, \
             disconnected_at, project, owner_node, last_heartbeat_at) \
             VALUES ($1, $2, $3, $4, TRUE, $5, NULL, $6, $7, $8) \
             ON CONFLICT (id) DO UPDATE SET auth_id = EXCLUDED.auth_id, info = EXCLUDED.info, \
             address = EXCLUDED.address, connected = TRUE, connected_at = EXCLUDED.connected_at, \
             disconnected_at = NULL, project = EXCLUDED.project, owner_node = EXCLUDED.owner_node, \
             last_heartbeat_at = GREATEST(EXCLUDED.last_heartbeat_at, clients.last_heartbeat_at) \
             WHERE NOT clients.connected OR clients.owner_node IS NULL \
             OR clients.owner_node = EXCLUDED.owner_node \
             OR NOT EXISTS (SELECT 1 FROM cluster_nodes n \
                 WHERE n.id = clients.owner_node AND n.lease_until > {NOW_MS})"
        );
        with_client!(self, |client| {
            let written = execute(
                client,
                &claim,
                &[
                    &c.id,
                    &c.auth_id,
                    &info,
                    &c.address,
                    &c.connected_at.map(millis),
                    &c.project,
                    &c.owner_node,
                    &c.last_heartbeat_at.map(millis),
                ],
            )
            .await?;
            if written > 0 {
                return Ok(AgentClaim::Claimed);
            }
            let holder: Option<String> = query_opt(
                client,
                "SELECT owner_node FROM clients WHERE id = $1",
                &[&c.id],
            )
            .await?
            .map(|row| row.try_get(0))
            .transpose()?
            .flatten();
            Ok(AgentClaim::HeldBy(holder.unwrap_or_default()))
        })
    }

    async fn release_agent(
        &self,
        id: &str,
        node: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        with_client!(self, |client| {
            Ok(execute(
                client,
                "UPDATE clients SET connected = FALSE, disconnected_at = $3 \
                 WHERE id = $1 AND connected AND (owner_node = $2 OR owner_node IS NULL)",
                &[&id, &node, &millis(at)],
            )
            .await?
                > 0)
        })
    }

    async fn release_node_agents(
        &self,
        node: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        with_client!(self, |client| {
            let rows = query(
                client,
                "UPDATE clients SET connected = FALSE, disconnected_at = $2 \
                 WHERE connected AND (owner_node = $1 OR owner_node IS NULL) RETURNING id",
                &[&node, &millis(at)],
            )
            .await?;
            ids(rows)
        })
    }

    async fn release_dead_nodes_agents(
        &self,
        at: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "UPDATE clients SET connected = FALSE, disconnected_at = $1 \
             WHERE connected AND owner_node IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM cluster_nodes n \
                 WHERE n.id = clients.owner_node AND n.lease_until > {NOW_MS}) RETURNING id"
        );
        with_client!(self, |client| {
            let rows = query(client, &sql, &[&millis(at)]).await?;
            ids(rows)
        })
    }

    async fn record_heartbeats(&self, beats: &[(String, DateTime<Utc>)]) -> Result<(), StoreError> {
        if beats.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = beats.iter().map(|(id, _)| id.as_str()).collect();
        let ats: Vec<i64> = beats.iter().map(|(_, at)| millis(*at)).collect();
        with_client!(self, |client| {
            execute(
                client,
                "UPDATE clients c SET last_heartbeat_at = b.at \
                 FROM unnest($1::text[], $2::bigint[]) AS b(id, at) \
                 WHERE c.id = b.id AND (c.last_heartbeat_at IS NULL OR c.last_heartbeat_at < b.at)",
                &[&ids, &ats],
            )
            .await?;
            Ok(())
        })
    }

    async fn get_agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        with_client!(self, |client| {
            query_opt(
                client,
                &format!("SELECT {AGENT_COLUMNS} FROM clients WHERE id = $1"),
                &[&id],
            )
            .await?
            .as_ref()
            .map(rows::agent)
            .transpose()
        })
    }

    async fn list_agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        with_client!(self, |client| {
            let sql = format!("SELECT {AGENT_COLUMNS} FROM clients ORDER BY id");
            let rows = query(client, &sql, &[]).await?;
            each(rows, rows::agent)
        })
    }

    async fn delete_agent(&self, id: &str) -> Result<bool, StoreError> {
        with_client!(self, |client| {
            let tx = client.transaction().await?;
            execute(
                &tx,
                "DELETE FROM agent_overrides WHERE agent_id = $1",
                &[&id],
            )
            .await?;
            let deleted = execute(&tx, "DELETE FROM clients WHERE id = $1", &[&id]).await? > 0;
            tx.commit().await?;
            Ok(deleted)
        })
    }

    async fn purge_agents_disconnected_before(
        &self,
        cutoff: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        with_client!(self, |client| {
            let rows = query(
                client,
                "DELETE FROM clients WHERE NOT connected AND disconnected_at < $1 RETURNING id",
                &[&millis(cutoff)],
            )
            .await?;
            execute(
                client,
                "DELETE FROM agent_overrides WHERE agent_id NOT IN (SELECT id FROM clients)",
                &[],
            )
            .await?;
            ids(rows)
        })
    }

    async fn insert_tunnel(&self, tunnel: &TunnelRecord) -> Result<(), StoreError> {
        let t = tunnel;
        let options = options_json(&t.id, &t.options)?;
        let sql = format!(
            "INSERT INTO tunnels ({TUNNEL_COLUMNS}, subdomain) VALUES ($1, $2, $3, $4, $5, $6, \
             $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)"
        );
        with_client!(self, |client| {
            execute(
                client,
                &sql,
                &[
                    &t.id,
                    &t.agent_id,
                    &t.name,
                    &t.protocol,
                    &t.lhost,
                    &i32::from(t.lport),
                    &t.lport_random,
                    &t.rhost,
                    &i32::from(t.rport),
                    &t.scheme,
                    &t.status.as_str(),
                    &t.created_by,
                    &millis(t.created_at),
                    &t.closed_at.map(millis),
                    &t.close_reason,
                    &options,
                    &t.last_active_at.map(millis),
                    &(t.counters.connections as i64),
                    &(t.counters.refused as i64),
                    &(t.counters.bytes_in as i64),
                    &(t.counters.bytes_out as i64),
                    &t.project,
                    &t.owner_node,
                    &t.options.subdomain,
                ],
            )
            .await?;
            Ok(())
        })
    }

    async fn get_tunnel(&self, id: &str) -> Result<Option<TunnelRecord>, StoreError> {
        let sql = format!("SELECT {TUNNEL_COLUMNS} FROM tunnels WHERE id = $1");
        with_client!(self, |client| {
            query_opt(client, &sql, &[&id])
                .await?
                .as_ref()
                .map(rows::tunnel)
                .transpose()
        })
    }

    async fn list_tunnels(&self, filter: &TunnelFilter) -> Result<Vec<TunnelRecord>, StoreError> {
        let sql = format!(
            "SELECT {TUNNEL_COLUMNS} FROM tunnels \
             WHERE ($1::TEXT IS NULL OR client_id = $1) \
             AND (NOT $2 OR status IN ('opened', 'pending')) \
             AND ($4::TEXT IS NULL OR project = $4) AND ($5::TEXT IS NULL OR owner_node = $5) \
             AND ($6::TEXT IS NULL OR subdomain = $6) \
             ORDER BY created_at DESC, id LIMIT $3"
        );
        let limit = filter.limit.map(|limit| limit as i64);
        with_client!(self, |client| {
            let rows = query(
                client,
                &sql,
                &[
                    &filter.agent_id,
                    &filter.open_only,
                    &limit,
                    &filter.project,
                    &filter.owner_node,
                    &filter.subdomain,
                ],
            )
            .await?;
            each(rows, rows::tunnel)
        })
    }

    async fn add_tunnel_counters(
        &self,
        id: &str,
        delta: TunnelCounters,
        last_active_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        with_client!(self, |client| {
            Ok(execute(
                client,
                "UPDATE tunnels SET connections = connections + $2, \
                 connections_refused = connections_refused + $3, bytes_in = bytes_in + $4, \
                 bytes_out = bytes_out + $5, \
                 last_active_at = GREATEST(COALESCE(last_active_at, $6), $6) WHERE id = $1",
                &[
                    &id,
                    &(delta.connections as i64),
                    &(delta.refused as i64),
                    &(delta.bytes_in as i64),
                    &(delta.bytes_out as i64),
                    &millis(last_active_at),
                ],
            )
            .await?
                > 0)
        })
    }

    async fn set_tunnel_options(
        &self,
        id: &str,
        options: &TunnelOptions,
    ) -> Result<bool, StoreError> {
        let subdomain = &options.subdomain;
        let options = options_json(id, options)?;
        with_client!(self, |client| {
            Ok(execute(
                client,
                "UPDATE tunnels SET options = $2, subdomain = $3 WHERE id = $1",
                &[&id, &options, subdomain],
            )
            .await?
                > 0)
        })
    }

    async fn set_tunnel_status(
        &self,
        id: &str,
        status: TunnelStatus,
        node: &str,
    ) -> Result<bool, StoreError> {
        with_client!(self, |client| {
            Ok(execute(
                client,
                "UPDATE tunnels SET status = $2 WHERE id = $1 AND status IN ('opened', 'pending') \
                 AND (owner_node = $3 OR owner_node IS NULL)",
                &[&id, &status.as_str(), &node],
            )
            .await?
                > 0)
        })
    }

    async fn end_tunnel(
        &self,
        id: &str,
        at: DateTime<Utc>,
        status: TunnelStatus,
        reason: &str,
        holder: Option<&str>,
    ) -> Result<bool, StoreError> {
        with_client!(self, |client| {
            Ok(execute(
                client,
                "UPDATE tunnels SET status = $1, close_reason = $2, closed_at = $3 WHERE id = $4 \
                 AND ($5::TEXT IS NULL OR owner_node = $5 OR owner_node IS NULL)",
                &[&status.as_str(), &reason, &millis(at), &id, &holder],
            )
            .await?
                > 0)
        })
    }

    async fn set_tunnel_port(&self, id: &str, lport: u16) -> Result<bool, StoreError> {
        with_client!(self, |client| {
            Ok(execute(
                client,
                "UPDATE tunnels SET lport = $2, lport_random = TRUE WHERE id = $1",
                &[&id, &i32::from(lport)],
            )
            .await?
                > 0)
        })
    }

    async fn adopt_tunnels(
        &self,
        agent_id: &str,
        node: &str,
    ) -> Result<Vec<TunnelRecord>, StoreError> {
        let sql = format!(
            "UPDATE tunnels SET owner_node = $2 \
             WHERE client_id = $1 AND status IN ('opened', 'pending') RETURNING {TUNNEL_COLUMNS}"
        );
        with_client!(self, |client| {
            let rows = query(client, &sql, &[&agent_id, &node]).await?;
            each(rows, rows::tunnel)
        })
    }

    async fn list_projects(&self) -> Result<Vec<ProjectRecord>, StoreError> {
        with_client!(self, |client| {
            let rows = query(
                client,
                "SELECT key, name, created_at FROM projects ORDER BY key",
                &[],
            )
            .await?;
            each(rows, rows::project)
        })
    }

    async fn insert_project(&self, project: &ProjectRecord) -> Result<bool, StoreError> {
        let p = project;
        with_client!(self, |client| {
            Ok(execute(
                client,
                "INSERT INTO projects (key, name, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO NOTHING",
                &[&p.key, &p.name, &millis(p.created_at)],
            )
            .await?
                == 1)
        })
    }

    async fn delete_project_if_empty(&self, key: &str) -> Result<ProjectRemoval, StoreError> {
        with_client!(self, |client| {
            let tx = client.transaction().await?;
            // Until commit, nobody adds an agent or a credential (to this project or any):
            // the counts below stay true until the project is gone.
            execute(
                &tx,
                "LOCK TABLE clients, agent_credentials IN SHARE MODE",
                &[],
            )
            .await?;
            let count = async |table: &str| -> Result<i64, PgError> {
                let sql = format!("SELECT COUNT(*) FROM {table} WHERE project = $1");
                Ok(query_one(&tx, &sql, &[&key]).await?.try_get(0)?)
            };
            let clients = count("clients").await?;
            if clients > 0 {
                return Ok(ProjectRemoval::HasAgents(clients as u64));
            }
            if count("agent_credentials").await? > 0 {
                return Ok(ProjectRemoval::HasAgentCredentials);
            }
            if execute(&tx, "DELETE FROM projects WHERE key = $1", &[&key]).await? == 0 {
                return Ok(ProjectRemoval::NotFound);
            }
            execute(&tx, "DELETE FROM user_roles WHERE project = $1", &[&key]).await?;
            execute(&tx, "DELETE FROM client_groups WHERE project = $1", &[&key]).await?;
            let sql = "DELETE FROM user_group_projects WHERE project = $1";
            execute(&tx, sql, &[&key]).await?;
            tx.commit().await?;
            Ok(ProjectRemoval::Deleted)
        })
    }

    async fn insert_audit(&self, entry: &AuditRecord) -> Result<(), StoreError> {
        let e = entry;
        with_client!(self, |client| {
            execute(
                client,
                "INSERT INTO audit_log \
                 (at, actor, actor_type, actor_ip, action, resource, project, result, detail, \
                 client_id, client_hostname) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                &[
                    &millis(e.at),
                    &e.actor,
                    &e.actor_type,
                    &e.actor_ip,
                    &e.action,
                    &e.resource,
                    &e.project,
                    &e.result,
                    &e.detail,
                    &e.client_id,
                    &e.client_hostname,
                ],
            )
            .await?;
            Ok(())
        })
    }

    async fn list_audit(
        &self,
        filter: &AuditFilter,
    ) -> Result<(Vec<AuditRecord>, u64), StoreError> {
        let query = filter.to_sql(|n| format!("${n}"));
        with_client!(self, |client| read_page(client, &query, rows::audit).await)
    }

    async fn insert_stored_tunnel(&self, tunnel: &StoredTunnelRecord) -> Result<bool, StoreError> {
        let t = tunnel;
        let sql = format!(
            "INSERT INTO stored_tunnels ({STORED_TUNNEL_COLUMNS}) \
             SELECT $1::TEXT, $2::TEXT, $3::BIGINT, $4::TEXT, $5::TEXT, $6::TEXT, \
             $7::BIGINT, $8::BIGINT, $9::TEXT, $10::TEXT \
             WHERE EXISTS (SELECT 1 FROM clients WHERE id = $2)"
        );
        with_client!(self, |client| {
            let inserted = execute(
                client,
                &sql,
                &[
                    &t.id,
                    &t.agent_id,
                    &millis(t.created_at),
                    &t.name,
                    &t.scheme,
                    &t.remote_ip,
                    &t.remote_port,
                    &t.public_port,
                    &t.acl,
                    &t.further_options,
                ],
            )
            .await?;
            Ok(inserted > 0)
        })
    }

    async fn update_stored_tunnel(&self, tunnel: &StoredTunnelRecord) -> Result<bool, StoreError> {
        let t = tunnel;
        with_client!(self, |client| {
            let updated = execute(
                client,
                "UPDATE stored_tunnels SET name = $3, scheme = $4, remote_ip = $5, \
                 remote_port = $6, public_port = $7, acl = $8, further_options = $9 \
                 WHERE client_id = $1 AND id = $2",
                &[
                    &t.agent_id,
                    &t.id,
                    &t.name,
                    &t.scheme,
                    &t.remote_ip,
                    &t.remote_port,
                    &t.public_port,
                    &t.acl,
                    &t.further_options,
                ],
            )
            .await?;
            Ok(updated > 0)
        })
    }

    async fn get_stored_tunnel(
        &self,
        agent_id: &str,
        id: &str,
    ) -> Result<Option<StoredTunnelRecord>, StoreError> {
        let sql = format!(
            "SELECT {STORED_TUNNEL_COLUMNS} FROM stored_tunnels WHERE client_id = $1 AND id = $2"
        );
        with_client!(self, |client| {
            query_opt(client, &sql, &[&agent_id, &id])
                .await?
                .as_ref()
                .map(rows::stored_tunnel)
                .transpose()
        })
    }

    async fn delete_stored_tunnel(&self, agent_id: &str, id: &str) -> Result<bool, StoreError> {
        with_client!(self, |client| {
            Ok(execute(
                client,
                "DELETE FROM stored_tunnels WHERE client_id = $1 AND id = $2",
                &[&agent_id, &id],
            )
            .await?
                > 0)
        })
    }

    async fn list_stored_tunnels(
        &self,
        agent_id: &str,
        filter: &StoredTunnelFilter,
    ) -> Result<(Vec<StoredTunnelRecord>, u64), StoreError> {
        let query = filter.to_sql(agent_id, |n| format!("${n}"));
        with_client!(self, |client| {
            read_page(client, &query, rows::stored_tunnel).await
        })
    }

    async fn purge_audit_before(&self, cutoff: DateTime<Utc>) -> Result<usize, StoreError> {
        with_client!(self, |client| {
            Ok(execute(
                client,
                "DELETE FROM audit_log WHERE at < $1",
                &[&millis(cutoff)],
            )
            .await? as usize)
        })
    }

    async fn revoke_token(&self, jti: &str, expires_at: DateTime<Utc>) -> Result<(), StoreError> {
        with_client!(self, |client| {
            execute(
                client,
                "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) \
                 ON CONFLICT (jti) DO UPDATE SET expires_at = EXCLUDED.expires_at",
                &[&jti, &millis(expires_at)],
            )
            .await?;
            Ok(())
        })
    }

    async fn revoked_tokens(&self, now: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
        with_client!(self, |client| {
            execute(
                client,
                "DELETE FROM revoked_tokens WHERE expires_at <= $1",
                &[&millis(now)],
            )
            .await?;
            let rows = query(client, "SELECT jti FROM revoked_tokens", &[]).await?;
            rows.iter()
                .map(|row| Ok(row.try_get(0)?))
                .collect::<Result<Vec<String>, PgError>>()
        })
    }

    async fn insert_session(&self, session: &SessionRecord) -> Result<i64, StoreError> {
        let s = session;
        with_client!(self, |client| {
            let row = query_one(
                client,
                "INSERT INTO api_sessions (jti, username, created_at, expires_at, \
                 last_access_at, user_agent, ip_address) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 RETURNING session_id",
                &[
                    &s.jti,
                    &s.username,
                    &millis(s.created_at),
                    &millis(s.expires_at),
                    &millis(s.last_access_at),
                    &s.user_agent,
                    &s.ip_address,
                ],
            )
            .await?;
            Ok(row.try_get(0)?)
        })
    }

    async fn list_sessions(&self, username: &str) -> Result<Vec<SessionRecord>, StoreError> {
        with_client!(self, |client| {
            let rows = query(
                client,
                &format!(
                    "SELECT {SESSION_COLUMNS} FROM api_sessions WHERE username = $1 \
                     ORDER BY last_access_at, session_id"
                ),
                &[&username],
            )
            .await?;
            each(rows, rows::session)
        })
    }

    async fn touch_session(
        &self,
        jti: &str,
        at: DateTime<Utc>,
        user_agent: &str,
        ip_address: &str,
    ) -> Result<bool, StoreError> {
        with_client!(self, |client| {
            Ok(execute(
                client,
                "UPDATE api_sessions SET last_access_at = $2, user_agent = $3, ip_address = $4 \
                 WHERE jti = $1",
                &[&jti, &millis(at), &user_agent, &ip_address],
            )
            .await?
                == 1)
        })
    }

    async fn delete_sessions(
        &self,
        username: &str,
        id: Option<i64>,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        with_client!(self, |client| {
            let rows = query(
                client,
                &format!(
                    "DELETE FROM api_sessions WHERE username = $1 \
                     AND ($2::BIGINT IS NULL OR session_id = $2) RETURNING {SESSION_COLUMNS}"
                ),
                &[&username, &id],
            )
            .await?;
            each(rows, rows::session)
        })
    }

    async fn purge_sessions(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        with_client!(self, |client| {
            let purged = execute(
                client,
                "DELETE FROM api_sessions WHERE expires_at <= $1",
                &[&millis(now)],
            )
            .await?;
            Ok(usize::try_from(purged).unwrap_or(usize::MAX))
        })
    }

    async fn get_totp_secret(&self, username: &str) -> Result<Option<String>, StoreError> {
        with_client!(self, |client| {
            let row = query_opt(
                client,
                "SELECT secret FROM totp_secrets WHERE username = $1",
                &[&username],
            )
            .await?;
            Ok(row.map(|row| row.try_get(0)).transpose()?)
        })
    }

    async fn insert_totp_secret(
        &self,
        username: &str,
        secret: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        with_client!(self, |client| {
            Ok(execute(
                client,
                "INSERT INTO totp_secrets (username, secret, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (username) DO NOTHING",
                &[&username, &secret, &millis(at)],
            )
            .await?
                == 1)
        })
    }

    async fn delete_totp_secret(&self, username: &str) -> Result<bool, StoreError> {
        with_client!(self, |client| {
            Ok(execute(
                client,
                "DELETE FROM totp_secrets WHERE username = $1",
                &[&username],
            )
            .await?
                == 1)
        })
    }

    async fn insert_api_token(&self, token: &ApiTokenRecord) -> Result<(), StoreError> {
        let t = token;
        with_client!(self, |client| {
            execute(
                client,
                "INSERT INTO api_tokens (id, username, name, scope, project, hash, created_at, \
                 expires_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &t.id,
                    &t.username,
                    &t.name,
                    &t.scope,
                    &t.project,
                    &t.hash,
                    &millis(t.created_at),
                    &t.expires_at.map(millis),
                    &t.last_used_at.map(millis),
                ],
            )
            .await?;
            Ok(())
        })
    }

    async fn get_api_token(&self, id: &str) -> Result<Option<ApiTokenRecord>, StoreError> {
        with_client!(self, |client| {
            query_opt(
                client,
                &format!("SELECT {API_TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"),
                &[&id],
            )
            .await?
            .as_ref()
            .map(rows::api_token)
            .transpose()
        })
    }

    async fn list_api_tokens(&self, username: &str) -> Result<Vec<ApiTokenRecord>, StoreError> {
        with_client!(self, |client| {
            let rows = query(
                client,
                &format!(
                    "SELECT {API_TOKEN_COLUMNS} FROM api_tokens WHERE username = $1 \
                     ORDER BY created_at"
                ),
                &[&username],
            )
            .await?;
            each(rows, rows::api_token)
        })
    }

    async fn delete_api_token(&self, username: &str, id: &str) -> Result<bool, StoreError> {
        with_client!(self, |client| {
            Ok(execute(
                client,
                "DELETE FROM api_tokens WHERE username = $1 AND id = $2",
                &[&username, &id],
            )
            .await?
                == 1)
        })
    }

    async fn update_api_token(
        &self,
        username: &str,
        id: &str,
        change: &ApiTokenChange,
    ) -> Result<bool, StoreError> {
        with_client!(self, |client| {
            Ok(execute(
                client,
                "UPDATE api_tokens SET name = $3, scope = $4, expires_at = $5 \
                 WHERE username = $1 AND id = $2",
                &[
                    &username,
                    &id,
                    &change.name,
                    &change.scope,
                    &change.expires_at.map(millis),
                ],
            )
            .await?
                == 1)
        })
    }

    async fn touch_api_token(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        with_client!(self, |client| {
            execute(
                client,
                "UPDATE api_tokens SET last_used_at = $2 WHERE id = $1",
                &[&id, &millis(at)],
            )
            .await?;
            Ok(())
        })
    }

    async fn get_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        with_client!(self, |client| {
            let row = query_opt(
                client,
                &format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1"),
                &[&username],
            )
            .await?;
            let mut users = row
                .as_ref()
                .map(rows::user)
                .transpose()?
                .into_iter()
                .collect::<Vec<_>>();
            with_roles(client, &mut users).await?;
            Ok(users.pop())
        })
    }

    async fn insert_user(&self, user: &UserRecord) -> Result<bool, StoreError> {
        let u = user;
        with_client!(self, |client| {
            let tx = client.transaction().await?;
            // Of two inserts of one name, the second waits for the first to commit and
            // then inserts nothing.
            let inserted = execute(
                &tx,
                "INSERT INTO users (username, password_hash, is_admin, created_at, \
                 password_expired, two_fa_send_to) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (username) DO NOTHING",
                &[
                    &u.username,
                    &u.password_hash,
                    &u.is_admin,
                    &millis(u.created_at),
                    &u.password_expired,
                    &u.two_fa_send_to,
                ],
            )
            .await?;
            if inserted == 0 {
                return Ok(false);
            }
            write_roles(&tx, u).await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    async fn update_user(
        &self,
        user: &UserRecord,
        guard: AdminGuard,
    ) -> Result<UserWrite, StoreError> {
        let u = user;
        with_client!(self, |client| {
            let tx = client.transaction().await?;
            lock_users(&tx).await?;
            let outcome = admin_guarded(&tx, &u.username, guard, !u.is_admin).await?;
            if outcome == UserWrite::Done {
                write_user(&tx, u).await?;
                tx.commit().await?;
            }
            Ok(outcome)
        })
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        with_client!(self, |client| {
            let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY username");
            let rows = query(client, &sql, &[]).await?;
            let mut users = each(rows, rows::user)?;
            with_roles(client, &mut users).await?;
            Ok(users)
        })
    }

    async fn delete_user(
        &self,
        username: &str,
        guard: AdminGuard,
    ) -> Result<UserWrite, StoreError> {
        with_client!(self, |client| {
            let tx = client.transaction().await?;
            lock_users(&tx).await?;
            let outcome = admin_guarded(&tx, username, guard, true).await?;
            if outcome == UserWrite::Done {
                let tables = [
                    "users",
                    "user_roles",
                    "api_tokens",
                    "user_group_members",
                    "api_sessions",
                    "totp_secrets",
                ];
                for table in tables {
                    let sql = format!("DELETE FROM {table} WHERE username = $1");
                    execute(&tx, &sql, &[&username]).await?;
                }
                tx.commit().await?;
            }
            Ok(outcome)
        })
    }

    async fn rename_user(&self, from: &str, to: &str) -> Result<UserWrite, StoreError> {
        with_client!(self, |client| {
            let tx = client.transaction().await?;
            lock_users(&tx).await?;
            let exists = "SELECT 1 FROM users WHERE username = $1";
            if query_opt(&tx, exists, &[&from]).await?.is_none() {
                return Ok(UserWrite::NotFound);
            }
            if query_opt(&tx, exists, &[&to]).await?.is_some() {
                return Ok(UserWrite::Taken);
            }
            // Login tokens of the old name end (their sessions with them); the rest moves.
            let sessions = "DELETE FROM api_sessions WHERE username = $1";
            execute(&tx, sessions, &[&from]).await?;
            let tables = [
                "users",
                "user_roles",
                "api_tokens",
                "user_group_members",
                "totp_secrets",
            ];
            for table in tables {
                let sql = format!("UPDATE {table} SET username = $2 WHERE username = $1");
                execute(&tx, &sql, &[&from, &to]).await?;
            }
            tx.commit().await?;
            Ok(UserWrite::Done)
        })
    }

    async fn list_agent_credentials(&self) -> Result<Vec<AgentCredentialRecord>, StoreError> {
        with_client!(self, |client| {
            let rows = query(
                client,
                "SELECT id, hash, project FROM agent_credentials ORDER BY id",
                &[],
            )
            .await?;
            each(rows, rows::agent_credential)
        })
    }

    async fn insert_agent_credential(
        &self,
        credential: &AgentCredentialRecord,
    ) -> Result<bool, StoreError> {
        let c = credential;
        with_client!(self, |client| {
            Ok(execute(
                client,
                "INSERT INTO agent_credentials (id, hash, project) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO NOTHING",
                &[&c.id, &c.hash, &c.project],
            )
            .await?
                == 1)
        })
    }

    async fn delete_agent_credential(&self, id: &str) -> Result<bool, StoreError> {
        with_client!(self, |client| {
            Ok(execute(
                client,
                "DELETE FROM agent_credentials WHERE id = $1",
                &[&id],
            )
            .await?
                == 1)
        })
    }

    async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        with_client!(self, |client| {
            // The no-op update makes RETURNING give the stored value when the key exists.
            Ok(query_one(
                client,
                "INSERT INTO settings (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = settings.value RETURNING value",
                &[&key, &value],
            )
            .await?
            .try_get(0)?)
        })
    }

    async fn renew_node(&self, node: &NodeRecord, lease: Duration) -> Result<(), StoreError> {
        let n = node;
        let lease = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let sql = format!(
            "INSERT INTO cluster_nodes \
             (id, peer_address, public_host, api_address, started_at, lease_until) \
             VALUES ($1, $2, $3, $4, $5, {NOW_MS} + $6) ON CONFLICT (id) DO UPDATE SET \
             peer_address = EXCLUDED.peer_address, public_host = EXCLUDED.public_host, \
             api_address = EXCLUDED.api_address, started_at = EXCLUDED.started_at, \
             lease_until = EXCLUDED.lease_until"
        );
        with_client!(self, lease_pool, |client| {
            execute(
                client,
                &sql,
                &[
                    &n.id,
                    &n.peer_address,
                    &n.public_host,
                    &n.api_address,
                    &millis(n.started_at),
                    &lease,
                ],
            )
            .await?;
            Ok(())
        })
    }

    async fn list_nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let sql = format!(
            "SELECT id, peer_address, public_host, api_address, started_at, lease_until, \
             lease_until > {NOW_MS} AS alive FROM cluster_nodes ORDER BY id"
        );
        with_client!(self, lease_pool, |client| {
            let rows = query(client, &sql, &[]).await?;
            each(rows, rows::node)
        })
    }

    async fn retire_node(&self, id: &str) -> Result<(), StoreError> {
        let sql = format!("UPDATE cluster_nodes SET lease_until = {NOW_MS} WHERE id = $1");
        with_client!(self, |client| {
            execute(client, &sql, &[&id]).await?;
            Ok(())
        })
    }

    async fn publish_event(&self, topic: &str, key: &str, origin: &str) -> Result<i64, StoreError> {
        let sql = format!(
            "INSERT INTO cluster_events (at, topic, key, origin) VALUES ({NOW_MS}, $1, $2, $3) \
             RETURNING seq"
        );
        with_client!(self, |client| {
            Ok(query_one(client, &sql, &[&topic, &key, &origin])
                .await?
                .try_get(0)?)
        })
    }

    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<ClusterEvent>, StoreError> {
        with_client!(self, |client| {
            let rows = query(
                client,
                "SELECT seq, at, topic, key, origin FROM cluster_events WHERE seq > $1 \
                 ORDER BY seq LIMIT $2",
                &[&after, &i64::from(limit)],
            )
            .await?;
            each(rows, rows::event)
        })
    }

    async fn last_event_seq(&self) -> Result<i64, StoreError> {
        with_client!(self, |client| {
            Ok(query_one(
                client,
                "SELECT COALESCE(MAX(seq), 0)::BIGINT FROM cluster_events",
                &[],
            )
            .await?
            .try_get(0)?)
        })
    }

    async fn purge_events_before(&self, cutoff: DateTime<Utc>) -> Result<usize, StoreError> {
        with_client!(self, |client| {
            Ok(execute(
                client,
                "DELETE FROM cluster_events WHERE at < $1",
                &[&millis(cutoff)],
            )
            .await? as usize)
        })
    }
    async fn list_user_groups(&self) -> Result<Vec<UserGroupRecord>, StoreError> {
        with_client!(self, |client| {
            let sql = format!("SELECT {USER_GROUP_COLUMNS} FROM user_groups ORDER BY name");
            let rows = query(client, &sql, &[]).await?;
            read_user_groups(client, rows).await
        })
    }

    async fn get_user_group(&self, name: &str) -> Result<Option<UserGroupRecord>, StoreError> {
        with_client!(self, |client| {
            let sql = format!("SELECT {USER_GROUP_COLUMNS} FROM user_groups WHERE name = $1");
            let rows = query(client, &sql, &[&name]).await?;
            Ok(read_user_groups(client, rows).await?.pop())
        })
    }

    async fn put_user_group(&self, group: &UserGroupRecord) -> Result<(), StoreError> {
        let g = group;
        with_client!(self, |client| {
            let tx = client.transaction().await?;
            // The upsert locks the group's row first, so two puts of one group do not
            // mix their projects.
            execute(
                &tx,
                "INSERT INTO user_groups (name, permissions, tunnels_restricted, \
                 commands_restricted) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE \
                 SET permissions = EXCLUDED.permissions, \
                 tunnels_restricted = EXCLUDED.tunnels_restricted, \
                 commands_restricted = EXCLUDED.commands_restricted",
                &[
                    &g.name,
                    &g.permissions_text(),
                    &g.tunnels_restricted,
                    &g.commands_restricted,
                ],
            )
            .await?;
            execute(
                &tx,
                "DELETE FROM user_group_projects WHERE group_name = $1",
                &[&g.name],
            )
            .await?;
            for project in &g.projects {
                execute(
                    &tx,
                    "INSERT INTO user_group_projects (group_name, project) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING",
                    &[&g.name, project],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    async fn delete_user_group(&self, name: &str) -> Result<bool, StoreError> {
        with_client!(self, |client| {
            let tx = client.transaction().await?;
            let mut deleted = 0;
            for sql in [
                "DELETE FROM user_groups WHERE name = $1",
                "DELETE FROM user_group_projects WHERE group_name = $1",
                "DELETE FROM user_group_members WHERE group_name = $1",
            ] {
                deleted += execute(&tx, sql, &[&name]).await?;
            }
            tx.commit().await?;
            Ok(deleted > 0)
        })
    }

    async fn list_user_group_members(&self) -> Result<Vec<(String, String)>, StoreError> {
        with_client!(self, |client| {
            let rows = query(
                client,
                "SELECT username, group_name FROM user_group_members \
                 ORDER BY username, group_name",
                &[],
            )
            .await?;
            rows.iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .collect()
        })
    }

    async fn set_user_groups(&self, username: &str, groups: &[String]) -> Result<(), StoreError> {
        with_client!(self, |client| {
            let tx = client.transaction().await?;
            execute(
                &tx,
                "DELETE FROM user_group_members WHERE username = $1",
                &[&username],
            )
            .await?;
            for group in groups {
                execute(
                    &tx,
                    "INSERT INTO user_group_members (username, group_name) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING",
                    &[&username, group],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    async fn user_groups_of(&self, username: &str) -> Result<Vec<UserGroupRecord>, StoreError> {
        with_client!(self, |client| {
            let rows = query(
                client,
                "SELECT g.name, g.permissions, g.tunnels_restricted, g.commands_restricted \
                 FROM user_groups g JOIN user_group_members m ON m.group_name = g.name \
                 WHERE m.username = $1 ORDER BY g.name",
                &[&username],
            )
            .await?;
            read_user_groups(client, rows).await
        })
    }

    async fn list_client_groups(&self) -> Result<Vec<ClientGroupRecord>, StoreError> {
        with_client!(self, |client| {
            let rows = query(
                client,
                "SELECT id, project, description, params, allowed_user_groups \
                 FROM client_groups ORDER BY id",
                &[],
            )
            .await?;
            each(rows, client_group)
        })
    }

    async fn get_client_group(&self, id: &str) -> Result<Option<ClientGroupRecord>, StoreError> {
        with_client!(self, |client| {
            query_opt(
                client,
                "SELECT id, project, description, params, allowed_user_groups \
                 FROM client_groups WHERE id = $1",
                &[&id],
            )
            .await?
            .as_ref()
            .map(client_group)
            .transpose()
        })
    }

    async fn put_client_group(&self, group: &ClientGroupRecord) -> Result<bool, StoreError> {
        let g = group;
        let allowed = serde_json::to_string(&g.allowed_user_groups)
            .map_err(|err| corrupt("client group", err))?;
        let params = g.params.to_string();
        with_client!(self, |client| {
            Ok(execute(
                client,
                "INSERT INTO client_groups (id, project, description, params, allowed_user_groups) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (id) DO UPDATE SET description = EXCLUDED.description, \
                 params = EXCLUDED.params, allowed_user_groups = EXCLUDED.allowed_user_groups \
                 WHERE client_groups.project = EXCLUDED.project",
                &[&g.id, &g.project, &g.description, &params, &allowed],
            )
            .await?
                == 1)
        })
    }

    async fn delete_client_group(&self, id: &str) -> Result<bool, StoreError> {
        with_client!(self, |client| {
            Ok(execute(client, "DELETE FROM client_groups WHERE id = $1", &[&id]).await? == 1)
        })
    }

    async fn list_agent_overrides(&self) -> Result<Vec<AgentOverridesRecord>, StoreError> {
        with_client!(self, |client| {
            let rows = query(
                client,
                "SELECT agent_id, attributes, allowed_user_groups FROM agent_overrides \
                 ORDER BY agent_id",
                &[],
            )
            .await?;
            each(rows, agent_overrides)
        })
    }

    async fn set_agent_attributes(
        &self,
        agent_id: &str,
        attributes: &AgentAttributes,
    ) -> Result<bool, StoreError> {
        let text =
            serde_json::to_string(attributes).map_err(|err| corrupt("agent attributes", err))?;
        with_client!(self, |client| {
            Ok(execute(
                client,
                "INSERT INTO agent_overrides (agent_id, attributes) \
                 SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM clients WHERE id = $1) \
                 ON CONFLICT (agent_id) DO UPDATE SET attributes = EXCLUDED.attributes",
                &[&agent_id, &text],
            )
            .await?
                == 1)
        })
    }

    async fn set_agent_allowed_user_groups(
        &self,
        agent_id: &str,
        groups: &[String],
    ) -> Result<bool, StoreError> {
        let text = serde_json::to_string(groups).map_err(|err| corrupt("agent ACL", err))?;
        with_client!(self, |client| {
            Ok(execute(
                client,
                "INSERT INTO agent_overrides (agent_id, allowed_user_groups) \
                 SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM clients WHERE id = $1) \
                 ON CONFLICT (agent_id) DO UPDATE SET \
                 allowed_user_groups = EXCLUDED.allowed_user_groups",
                &[&agent_id, &text],
            )
            .await?
                == 1)
        })
    }
}

fn client_group(row: &Row) -> Result<ClientGroupRecord, PgError> {
    Ok(client_group_from((
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?,
    ))?)
}

fn agent_overrides(row: &Row) -> Result<AgentOverridesRecord, PgError> {
    let attributes: Option<String> = row.try_get(1)?;
    let allowed: Option<String> = row.try_get(2)?;
    Ok(agent_overrides_from(
        row.try_get(0)?,
        attributes.as_deref(),
        allowed.as_deref(),
    )?)
}
