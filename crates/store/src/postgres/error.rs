//! PostgreSQL's errors said in the store's words: what the operator can fix (with the
//! database's `HOST:PORT`, never its password), a clash of keys, a clash of transactions
//! worth trying again, or anything else.

use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

use super::url::full_message;
use crate::StoreError;

/// What can go wrong inside the backend, before it is said in the store's words.
#[derive(Debug)]
pub(super) enum PgError {
    Postgres(tokio_postgres::Error),
    Pool(PoolError),
    /// Already in the store's words (a damaged record, a schema too new).
    Store(StoreError),
}

impl From<tokio_postgres::Error> for PgError {
    fn from(err: tokio_postgres::Error) -> Self {
        Self::Postgres(err)
    }
}

impl From<PoolError> for PgError {
    fn from(err: PoolError) -> Self {
        match err {
            PoolError::Backend(err) => Self::Postgres(err),
            other => Self::Pool(other),
        }
    }
}

impl From<StoreError> for PgError {
    fn from(err: StoreError) -> Self {
        Self::Store(err)
    }
}

/// The text of an error whose own `Display` leaves its causes out.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Said(String);

impl PgError {
    /// Two transactions got in each other's way (a serialization failure, a deadlock):
    /// PostgreSQL rolled this one back, and the same work may simply run again.
    pub(super) fn is_retryable(&self) -> bool {
        match self {
            Self::Postgres(err) => matches!(
                err.code(),
                Some(&SqlState::T_R_SERIALIZATION_FAILURE | &SqlState::T_R_DEADLOCK_DETECTED)
            ),
            _ => false,
        }
    }

    /// In the store's words; `endpoint` (`HOST:PORT`) and `database` name the database.
    pub(super) fn into_store_error(self, endpoint: &str, database: &str) -> StoreError {
        let err = match self {
            Self::Store(err) => return err,
            Self::Pool(err) => {
                let source = Box::new(Said(err.to_string()));
                return match err {
                    PoolError::Timeout(_) => StoreError::Unavailable {
                        reason: format!("PostgreSQL at {endpoint} is unreachable"),
                        source,
                    },
                    _ => StoreError::Backend(source),
                };
            }
            Self::Postgres(err) => err,
        };
        let unavailable = |reason: String| StoreError::Unavailable {
            reason,
            source: Box::new(Said(full_message(&err))),
        };
        let unreachable = || unavailable(format!("PostgreSQL at {endpoint} is unreachable"));
        let Some(code) = err.code() else {
            let io =
                std::iter::successors(Some(&err as &(dyn std::error::Error + 'static)), |err| {
                    err.source()
                })
                .any(|err| err.is::<std::io::Error>());
            // tokio-postgres tells these apart only by their words.
            return match err.to_string().as_str() {
                _ if err.is_closed() || io => unreachable(),
                "timeout waiting for server" => unreachable(),
                "error performing TLS handshake" => unavailable(format!(
                    "the TLS handshake with PostgreSQL at {endpoint} failed \
                     (its certificate is checked against the system's roots)"
                )),
                "authentication error" => unavailable(format!(
                    "PostgreSQL at {endpoint} refused rportd's user or password"
                )),
                _ => StoreError::Backend(Box::new(Said(full_message(&err)))),
            };
        };
        match code {
            &SqlState::UNIQUE_VIOLATION => StoreError::Conflict {
                what: format!("a record with the same {}", clashing_key(&err)),
            },
            &SqlState::INVALID_PASSWORD | &SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
                unavailable(format!(
                    "PostgreSQL at {endpoint} refused rportd's user or password"
                ))
            }
            &SqlState::INVALID_CATALOG_NAME => unavailable(format!(
                "PostgreSQL at {endpoint} has no database {database:?}"
            )),
            &SqlState::INSUFFICIENT_PRIVILEGE => unavailable(format!(
                "rportd's user may not do this in PostgreSQL at {endpoint}; \
                 it needs to own database {database:?}"
            )),
            &SqlState::DISK_FULL => unavailable(format!("PostgreSQL at {endpoint}: disk full")),
            &SqlState::READ_ONLY_SQL_TRANSACTION => unavailable(format!(
                "PostgreSQL at {endpoint} accepts no writes (is it a standby?)"
            )),
            &SqlState::TOO_MANY_CONNECTIONS => unavailable(format!(
                "PostgreSQL at {endpoint} has no connection left (max_connections)"
            )),
            &SqlState::ADMIN_SHUTDOWN
            | &SqlState::CRASH_SHUTDOWN
            | &SqlState::CANNOT_CONNECT_NOW => unreachable(),
            code if code.code().starts_with("08") => unreachable(),
            _ => StoreError::Backend(Box::new(Said(full_message(&err)))),
        }
    }
}

/// `table.column` of a unique violation, as SQLite names it (`tunnels.id`), from
/// PostgreSQL's detail `Key (id)=(t1) already exists.`
fn clashing_key(err: &tokio_postgres::Error) -> String {
    let Some(db) = err.as_db_error() else {
        return "key".to_owned();
    };
    let columns = db
        .detail()
        .and_then(|detail| detail.strip_prefix("Key ("))
        .and_then(|rest| rest.split_once(")="))
        .map(|(columns, _)| columns.to_owned());
    match (db.table(), columns) {
        (Some(table), Some(columns)) => format!("{table}.{columns}"),
        (None, Some(columns)) => columns,
        (_, None) => db.constraint().unwrap_or("key").to_owned(),
    }
}
