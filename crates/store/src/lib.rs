//! Persistent state of rportd (agents, tunnels, API users, settings) behind one interface.
//!
//! The server only talks to [`Store`]; [`SqliteStore`] is the single-server backend,
//! [`PostgresStore`] the one several servers share.

mod audit_query;
mod list_sql;
mod postgres;
mod records;
mod sqlite;
mod stored_tunnels;
mod tunnel_row;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use audit_query::{
    AuditField, AuditFilter, AuditMatch, AuditSort, RPORT_WORDS, RportWords, rport_words,
};
pub use list_sql::{ListMatch, ListSort};
pub use postgres::{POOL_SIZE as POSTGRES_POOL_SIZE, PostgresStore, PostgresUrl};
pub use records::UserGroupRecord;
pub use records::{
    AdminGuard, AgentAttributes, AgentClaim, AgentCredentialRecord, AgentOverridesRecord,
    AgentRecord, ApiTokenChange, ApiTokenRecord, AuditRecord, ClientGroupRecord, ClusterEvent,
    DEFAULT_PROJECT, NodeRecord, ProjectRecord, ProjectRemoval, SessionRecord, TunnelCounters,
    TunnelFilter, TunnelOptions, TunnelRecord, TunnelStatus, UserRecord, UserWrite,
};
pub use sqlite::SqliteStore;
pub use stored_tunnels::{
    StoredTunnelField, StoredTunnelFilter, StoredTunnelMatch, StoredTunnelRecord, StoredTunnelSort,
};

/// Any error of a backend, kept with its chain of causes.
pub type BackendError = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong in the store, in words that do not depend on the backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Something the operator can fix (a full disk, a read-only data dir, a database busy
    /// for too long): `reason` says which, for the operator.
    #[error("{reason}: {source}")]
    Unavailable {
        reason: String,
        #[source]
        source: BackendError,
    },
    /// A record with the same key exists already.
    #[error("{what} exists already")]
    Conflict { what: String },
    #[error("stored record {what} is damaged: {reason}")]
    Corrupt { what: String, reason: String },
    /// Refused at open: a newer rportd wrote this database.
    #[error("database schema version {found} is newer than this rportd understands ({known})")]
    SchemaTooNew { found: i64, known: i64 },
    /// Anything else, the backend's worker stopping included.
    #[error("database: {0}")]
    Backend(#[source] BackendError),
}

/// What the operator can do about `err` when the store is unavailable: the `reason` of
/// the first [`StoreError::Unavailable`] in its chain of causes.
pub fn unavailable_reason<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a str> {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(StoreError::Unavailable { reason, .. }) = err.downcast_ref::<StoreError>() {
            return Some(reason);
        }
        next = err.source();
    }
    None
}

/// The `[database]` section: which backend keeps rportd's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseSettings {
    /// One SQLite file; `None` means `rportd.db` in the data dir.
    Sqlite { path: Option<PathBuf> },
    /// A PostgreSQL database that several servers may share; `Debug` masks its password.
    Postgres { url: PostgresUrl },
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self::Sqlite { path: None }
    }
}

impl DatabaseSettings {
    /// The values of `db_type` there is a backend for.
    pub const DB_TYPES: &[&str] = &["sqlite", "postgres"];

    /// Where the state is, for messages that send the operator there.
    pub fn location(&self, data_dir: &Path) -> String {
        match self {
            Self::Sqlite { path } => sqlite_file(path.as_deref(), data_dir).display().to_string(),
            Self::Postgres { url } => url.masked(),
        }
    }
}

/// Opens the store the settings select, its schema brought up to date.
pub async fn open(
    settings: &DatabaseSettings,
    data_dir: &Path,
) -> Result<Arc<dyn Store>, StoreError> {
    match settings {
        DatabaseSettings::Sqlite { path } => {
            let path = sqlite_file(path.as_deref(), data_dir);
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path))
                .await
                .map_err(|err| StoreError::Backend(Box::new(err)))??;
            Ok(Arc::new(store))
        }
        DatabaseSettings::Postgres { url } => Ok(Arc::new(PostgresStore::open(url).await?)),
    }
}

/// The SQLite file: `db_name`, else `rportd.db` in the data dir.
fn sqlite_file(path: Option<&Path>, data_dir: &Path) -> PathBuf {
    path.map_or_else(|| default_db_path(data_dir), Path::to_owned)
}

/// The database file inside a data dir.
pub fn default_db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("rportd.db")
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Inserts or replaces an agent's record.
    async fn upsert_agent(&self, agent: &AgentRecord) -> Result<(), StoreError>;
    /// Records `agent` (its `owner_node` set) as connected through that node, unless
    /// another node whose lease runs holds its live session. Of several nodes claiming
    /// one agent at once, exactly one wins.
    async fn claim_agent(&self, agent: &AgentRecord) -> Result<AgentClaim, StoreError>;
    /// Marks the agent disconnected at `at` if node `node` holds its session; returns
    /// whether it did.
    async fn release_agent(
        &self,
        id: &str,
        node: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Marks disconnected every agent whose session node `node` held, or nobody holds (a
    /// node starting after a crash or stop); returns their ids. Other nodes' agents stay.
    async fn release_node_agents(
        &self,
        node: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError>;
    /// Marks disconnected every agent held by a node whose lease ran out; returns their ids.
    async fn release_dead_nodes_agents(&self, at: DateTime<Utc>)
    -> Result<Vec<String>, StoreError>;
    /// Notes when keepalives of agents' sessions last arrived, one batch in one write;
    /// a time never moves back. Ids without a record are skipped.
    async fn record_heartbeats(&self, beats: &[(String, DateTime<Utc>)]) -> Result<(), StoreError>;
    async fn get_agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError>;
    async fn list_agents(&self) -> Result<Vec<AgentRecord>, StoreError>;
    /// Returns whether a record was deleted.
    async fn delete_agent(&self, id: &str) -> Result<bool, StoreError>;
    /// Deletes disconnected agents gone since before `cutoff`; returns their ids.
    async fn purge_agents_disconnected_before(
        &self,
        cutoff: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError>;

    /// Fails with [`StoreError::Conflict`] when a tunnel with that id exists.
    async fn insert_tunnel(&self, tunnel: &TunnelRecord) -> Result<(), StoreError>;
    async fn get_tunnel(&self, id: &str) -> Result<Option<TunnelRecord>, StoreError>;
    /// Newest first.
    async fn list_tunnels(&self, filter: &TunnelFilter) -> Result<Vec<TunnelRecord>, StoreError>;
    /// Adds what a live tunnel carried since its last flush to its counters, and notes
    /// when it was last active (never moving that back in time, whoever writes);
    /// nothing else in its row changes. Returns whether it exists.
    async fn add_tunnel_counters(
        &self,
        id: &str,
        delta: TunnelCounters,
        last_active_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Replaces the options (the ACL, ...) of a tunnel; returns whether it exists.
    async fn set_tunnel_options(
        &self,
        id: &str,
        options: &TunnelOptions,
    ) -> Result<bool, StoreError>;
    /// A live tunnel's status (`pending` while its agent is away, `opened`), written only
    /// while node `node` holds it (or nobody does); an ended tunnel stays ended. Returns
    /// whether it was written.
    async fn set_tunnel_status(
        &self,
        id: &str,
        status: TunnelStatus,
        node: &str,
    ) -> Result<bool, StoreError>;
    /// Marks one tunnel ended, changing nothing else in its row (a damaged row stays as it
    /// was found, for the operator to look at). With `holder`, only while that node holds
    /// it (or nobody does): a node that lost a tunnel to another never ends it there.
    /// Returns whether it was written.
    async fn end_tunnel(
        &self,
        id: &str,
        at: DateTime<Utc>,
        status: TunnelStatus,
        reason: &str,
        holder: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// A live tunnel adopted by a node where its port was taken gets another one there;
    /// returns whether it exists.
    async fn set_tunnel_port(&self, id: &str, lport: u16) -> Result<bool, StoreError>;
    /// Node `node` takes over the live tunnels of agent `agent_id` (it holds the agent's
    /// session now); returns them.
    async fn adopt_tunnels(
        &self,
        agent_id: &str,
        node: &str,
    ) -> Result<Vec<TunnelRecord>, StoreError>;

    /// By key; `default` always exists.
    async fn list_projects(&self) -> Result<Vec<ProjectRecord>, StoreError>;
    /// Returns false when a project with that key exists already.
    async fn insert_project(&self, project: &ProjectRecord) -> Result<bool, StoreError>;
    /// Deletes the project and every user's role in it, in one transaction, unless a
    /// agent or a managed agent credential still belongs to it.
    async fn delete_project_if_empty(&self, key: &str) -> Result<ProjectRemoval, StoreError>;

    async fn insert_audit(&self, entry: &AuditRecord) -> Result<(), StoreError>;
    /// Newest first, with the number of entries matching the filter.
    async fn list_audit(&self, filter: &AuditFilter)
    -> Result<(Vec<AuditRecord>, u64), StoreError>;
    /// Saves a stored tunnel (RPort's tunnel template) of an agent; false, changing
    /// nothing, when the agent does not exist. Deleting the agent deletes its stored tunnels.
    async fn insert_stored_tunnel(&self, tunnel: &StoredTunnelRecord) -> Result<bool, StoreError>;
    /// Replaces all but the id, agent and creation time; false when there is none.
    async fn update_stored_tunnel(&self, tunnel: &StoredTunnelRecord) -> Result<bool, StoreError>;
    async fn get_stored_tunnel(
        &self,
        agent_id: &str,
        id: &str,
    ) -> Result<Option<StoredTunnelRecord>, StoreError>;
    /// Returns whether it existed.
    async fn delete_stored_tunnel(&self, agent_id: &str, id: &str) -> Result<bool, StoreError>;
    /// One agent's stored tunnels, filtered, sorted and paged, with the filter's total.
    async fn list_stored_tunnels(
        &self,
        agent_id: &str,
        filter: &StoredTunnelFilter,
    ) -> Result<(Vec<StoredTunnelRecord>, u64), StoreError>;

    /// Deletes entries older than `cutoff`; returns how many.
    async fn purge_audit_before(&self, cutoff: DateTime<Utc>) -> Result<usize, StoreError>;

    /// Remembers a token id as revoked until it would have expired anyway.
    async fn revoke_token(&self, jti: &str, expires_at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Revoked token ids not yet expired at `now` (expired ones are forgotten).
    async fn revoked_tokens(&self, now: DateTime<Utc>) -> Result<Vec<String>, StoreError>;

    /// Stores a new login session; returns the id the store gave it (`session.id` is
    /// ignored).
    async fn insert_session(&self, session: &SessionRecord) -> Result<i64, StoreError>;
    /// A user's sessions, least recently used first.
    async fn list_sessions(&self, username: &str) -> Result<Vec<SessionRecord>, StoreError>;
    /// Records a use of the session of token `jti`; returns whether it still exists.
    async fn touch_session(
        &self,
        jti: &str,
        at: DateTime<Utc>,
        user_agent: &str,
        ip_address: &str,
    ) -> Result<bool, StoreError>;
    /// Deletes one session of the user (`Some(id)`) or all of them; returns those deleted,
    /// so that their tokens can be revoked.
    async fn delete_sessions(
        &self,
        username: &str,
        id: Option<i64>,
    ) -> Result<Vec<SessionRecord>, StoreError>;
    /// Deletes sessions expired at `now`; returns how many.
    async fn purge_sessions(&self, now: DateTime<Utc>) -> Result<usize, StoreError>;

    /// The user's TOTP secret (base32), if it has one.
    async fn get_totp_secret(&self, username: &str) -> Result<Option<String>, StoreError>;
    /// Returns false, changing nothing, when the user has a secret already.
    async fn insert_totp_secret(
        &self,
        username: &str,
        secret: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Returns whether the user had one.
    async fn delete_totp_secret(&self, username: &str) -> Result<bool, StoreError>;

    async fn insert_api_token(&self, token: &ApiTokenRecord) -> Result<(), StoreError>;
    async fn get_api_token(&self, id: &str) -> Result<Option<ApiTokenRecord>, StoreError>;
    async fn list_api_tokens(&self, username: &str) -> Result<Vec<ApiTokenRecord>, StoreError>;
    /// Returns whether the user had that token.
    async fn delete_api_token(&self, username: &str, id: &str) -> Result<bool, StoreError>;
    async fn touch_api_token(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Sets a token's name, scope and expiry (its secret stays); returns whether the user
    /// had that token.
    async fn update_api_token(
        &self,
        username: &str,
        id: &str,
        change: &ApiTokenChange,
    ) -> Result<bool, StoreError>;

    /// With its roles.
    async fn get_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError>;
    /// Returns false, changing nothing, when the user name is taken.
    async fn insert_user(&self, user: &UserRecord) -> Result<bool, StoreError>;
    /// Replaces an existing user and all of its roles. With [`AdminGuard::KeepOne`] it
    /// refuses, in the same transaction, to take the last administrator's right away.
    async fn update_user(
        &self,
        user: &UserRecord,
        guard: AdminGuard,
    ) -> Result<UserWrite, StoreError>;
    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Deletes the user with its roles, API tokens, sessions and TOTP secret. With
    /// [`AdminGuard::KeepOne`] it refuses, in the same transaction, to delete the last administrator.
    async fn delete_user(&self, username: &str, guard: AdminGuard)
    -> Result<UserWrite, StoreError>;
    /// Gives a user another name, with its roles and API tokens, in one transaction:
    /// [`UserWrite::Taken`] when `to` exists, [`UserWrite::NotFound`] when `from` does not.
    async fn rename_user(&self, from: &str, to: &str) -> Result<UserWrite, StoreError>;

    /// Agent credentials rportd manages (not the configured ones), by id.
    async fn list_agent_credentials(&self) -> Result<Vec<AgentCredentialRecord>, StoreError>;
    /// Returns false, changing nothing, when the id is taken.
    async fn insert_agent_credential(
        &self,
        credential: &AgentCredentialRecord,
    ) -> Result<bool, StoreError>;
    /// Returns whether it existed.
    async fn delete_agent_credential(&self, id: &str) -> Result<bool, StoreError>;

    /// Stores `value` under `key` unless the key has a value already; returns the value
    /// stored in the end, so that of two servers generating a secret at once both use
    /// the same one.
    async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError>;

    /// Records that `node` is alive until `lease` from now by the store's clock, so that
    /// nodes never compare their own clocks.
    async fn renew_node(&self, node: &NodeRecord, lease: Duration) -> Result<(), StoreError>;
    /// Every node that ever renewed, by id, with whether its lease runs now.
    async fn list_nodes(&self) -> Result<Vec<NodeRecord>, StoreError>;
    /// An orderly stop: the node's lease ends now.
    async fn retire_node(&self, id: &str) -> Result<(), StoreError>;

    /// Appends an event for the other nodes; returns its number.
    async fn publish_event(&self, topic: &str, key: &str, origin: &str) -> Result<i64, StoreError>;
    /// Events numbered above `after`, oldest first, at most `limit`. Numbers increase but
    /// may have gaps, and one may become visible after a higher one (PostgreSQL commits
    /// out of order): readers look back a little.
    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<ClusterEvent>, StoreError>;
    /// The highest event number so far; 0 when there is none.
    async fn last_event_seq(&self) -> Result<i64, StoreError>;
    /// Deletes events older than `cutoff`; returns how many.
    async fn purge_events_before(&self, cutoff: DateTime<Utc>) -> Result<usize, StoreError>;

    /// User groups that were set (not those only named by a membership), by name.
    async fn list_user_groups(&self) -> Result<Vec<UserGroupRecord>, StoreError>;
    async fn get_user_group(&self, name: &str) -> Result<Option<UserGroupRecord>, StoreError>;
    /// Creates the group or replaces all of it, its projects included.
    async fn put_user_group(&self, group: &UserGroupRecord) -> Result<(), StoreError>;
    /// Deletes the group, its projects and every membership in it; returns whether any of
    /// them existed.
    async fn delete_user_group(&self, name: &str) -> Result<bool, StoreError>;
    /// Every membership as (user name, group name), by user then group. A membership may
    /// name a group that was never set; a user deleted leaves its groups.
    async fn list_user_group_members(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// Replaces the groups `username` belongs to.
    async fn set_user_groups(&self, username: &str, groups: &[String]) -> Result<(), StoreError>;
    /// The set groups `username` belongs to, by name.
    async fn user_groups_of(&self, username: &str) -> Result<Vec<UserGroupRecord>, StoreError>;
    /// Every client group, by id.
    async fn list_client_groups(&self) -> Result<Vec<ClientGroupRecord>, StoreError>;
    async fn get_client_group(&self, id: &str) -> Result<Option<ClientGroupRecord>, StoreError>;
    /// Creates the group, or replaces the one of that id in the same project; false (and
    /// nothing written) when the id belongs to a group of another project.
    async fn put_client_group(&self, group: &ClientGroupRecord) -> Result<bool, StoreError>;
    /// False when there was none.
    async fn delete_client_group(&self, id: &str) -> Result<bool, StoreError>;
    /// What the API set on agents; an agent's overrides go with the agent when it is
    /// deleted.
    async fn list_agent_overrides(&self) -> Result<Vec<AgentOverridesRecord>, StoreError>;
    /// Sets the tags and labels of a stored agent; false when no agent has that id.
    async fn set_agent_attributes(
        &self,
        agent_id: &str,
        attributes: &AgentAttributes,
    ) -> Result<bool, StoreError>;
    /// Sets RPort's `allowed_user_groups` of a stored agent; false when no agent has that id.
    async fn set_agent_allowed_user_groups(
        &self,
        agent_id: &str,
        groups: &[String],
    ) -> Result<bool, StoreError>;
}
