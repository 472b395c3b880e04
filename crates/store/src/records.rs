//! The records the store keeps, independent of any backend.

use std::fmt;

use chrono::{DateTime, Utc};
use rport_protocol::SystemInfo;

/// An agent rportd has seen.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientRecord {
    pub id: String,
    /// The credential id it authenticated with.
    pub auth_id: String,
    /// The facts it last reported.
    pub info: SystemInfo,
    /// Its public ip:port as seen by the server.
    pub address: String,
    pub connected: bool,
    pub connected_at: Option<DateTime<Utc>>,
    pub disconnected_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TunnelRecord {
    pub id: String,
    pub client_id: String,
    pub name: String,
    pub protocol: String,
    pub lhost: String,
    pub lport: u16,
    pub lport_random: bool,
    pub rhost: String,
    pub rport: u16,
    pub scheme: Option<String>,
    /// `opened`, `closed` (by an operator) or `terminated` (by the system).
    pub status: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub close_reason: Option<String>,
    /// Options later issues add (ACL, idle timeout, ...), kept as JSON so adding one needs
    /// no migration.
    pub options: serde_json::Value,
}

#[derive(Debug, Clone, Default)]
pub struct TunnelFilter {
    pub client_id: Option<String>,
    pub open_only: bool,
    pub limit: Option<usize>,
}

#[derive(Clone, PartialEq)]
pub struct UserRecord {
    pub username: String,
    /// argon2 or bcrypt PHC string, never a password.
    pub password_hash: String,
    pub is_admin: bool,
    pub created_at: DateTime<Utc>,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("username", &self.username)
            .field("password_hash", &"<hidden>")
            .field("is_admin", &self.is_admin)
            .field("created_at", &self.created_at)
            .finish()
    }
}
