//! Persistent state of rportd (agents, tunnels, API users, settings) behind one interface.
//!
//! The server only talks to [`Store`]; [`SqliteStore`] is the single-server backend. A
//! PostgreSQL backend for several servers can implement the same trait later.

mod records;
mod sqlite;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use records::{
    ApiTokenRecord, AuditFilter, AuditRecord, ClientRecord, DEFAULT_PROJECT, ProjectRecord,
    TunnelCounters, TunnelFilter, TunnelOptions, TunnelRecord, UserRecord,
};
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database schema version {found} is newer than this rportd understands ({known})")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("stored record {what} is damaged: {reason}")]
    Corrupt { what: String, reason: String },
    #[error("database worker stopped: {0}")]
    Worker(String),
}

/// The database file inside a data dir.
pub fn default_db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("rportd.db")
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Inserts or replaces an agent's record.
    async fn upsert_client(&self, client: &ClientRecord) -> Result<(), StoreError>;
    async fn mark_client_disconnected(&self, id: &str, at: DateTime<Utc>)
    -> Result<(), StoreError>;
    /// Every connected agent becomes disconnected at `at` (server start after a crash or stop).
    async fn mark_all_disconnected(&self, at: DateTime<Utc>) -> Result<(), StoreError>;
    async fn list_clients(&self) -> Result<Vec<ClientRecord>, StoreError>;
    /// Returns whether a record was deleted.
    async fn delete_client(&self, id: &str) -> Result<bool, StoreError>;
    /// Deletes disconnected agents gone since before `cutoff`; returns their ids.
    async fn purge_clients_disconnected_before(
        &self,
        cutoff: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError>;

    async fn insert_tunnel(&self, tunnel: &TunnelRecord) -> Result<(), StoreError>;
    async fn update_tunnel(&self, tunnel: &TunnelRecord) -> Result<(), StoreError>;
    async fn get_tunnel(&self, id: &str) -> Result<Option<TunnelRecord>, StoreError>;
    /// Newest first.
    async fn list_tunnels(&self, filter: &TunnelFilter) -> Result<Vec<TunnelRecord>, StoreError>;
    /// Marks every live (`opened` or `pending`) tunnel as ended; returns how many.
    async fn close_all_open_tunnels(
        &self,
        at: DateTime<Utc>,
        status: &str,
        reason: &str,
    ) -> Result<usize, StoreError>;

    /// Marks one tunnel ended, changing nothing else in its row (a damaged row stays as it
    /// was found, for the operator to look at); returns whether it exists.
    async fn end_tunnel(
        &self,
        id: &str,
        at: DateTime<Utc>,
        status: &str,
        reason: &str,
    ) -> Result<bool, StoreError>;

    /// By key; `default` always exists.
    async fn list_projects(&self) -> Result<Vec<ProjectRecord>, StoreError>;
    /// Returns false when a project with that key exists already.
    async fn insert_project(&self, project: &ProjectRecord) -> Result<bool, StoreError>;
    /// Deletes the project and every user's role in it.
    async fn delete_project(&self, key: &str) -> Result<bool, StoreError>;

    async fn insert_audit(&self, entry: &AuditRecord) -> Result<(), StoreError>;
    /// Newest first, with the number of entries matching the filter.
    async fn list_audit(&self, filter: &AuditFilter)
    -> Result<(Vec<AuditRecord>, u64), StoreError>;
    /// Deletes entries older than `cutoff`; returns how many.
    async fn purge_audit_before(&self, cutoff: DateTime<Utc>) -> Result<usize, StoreError>;

    /// Remembers a token id as revoked until it would have expired anyway.
    async fn revoke_token(&self, jti: &str, expires_at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Revoked token ids not yet expired at `now` (expired ones are forgotten).
    async fn revoked_tokens(&self, now: DateTime<Utc>) -> Result<Vec<String>, StoreError>;

    async fn insert_api_token(&self, token: &ApiTokenRecord) -> Result<(), StoreError>;
    async fn get_api_token(&self, id: &str) -> Result<Option<ApiTokenRecord>, StoreError>;
    async fn list_api_tokens(&self, username: &str) -> Result<Vec<ApiTokenRecord>, StoreError>;
    /// Returns whether the user had that token.
    async fn delete_api_token(&self, username: &str, id: &str) -> Result<bool, StoreError>;
    async fn touch_api_token(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// With its roles.
    async fn get_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError>;
    /// Inserts or replaces a user and all of its roles.
    async fn upsert_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    /// Returns false, changing nothing, when the user name is taken.
    async fn insert_user(&self, user: &UserRecord) -> Result<bool, StoreError>;
    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Deletes the user with its roles and API tokens; returns whether it existed.
    async fn delete_user(&self, username: &str) -> Result<bool, StoreError>;

    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError>;
    async fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError>;
}
