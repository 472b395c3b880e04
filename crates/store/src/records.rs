//! The records the store keeps, independent of any backend.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use rport_protocol::SystemInfo;
use serde::{Deserialize, Serialize};

/// An agent rportd has seen.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
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
    /// When a keepalive of its session last arrived, as last written: at connect, at
    /// disconnect, and in between at the bounded rate of `Store::record_heartbeats`.
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// The project its credential binds it to; the agent cannot choose it.
    pub project: String,
    /// The node of a cluster that holds (or last held) its session.
    pub owner_node: Option<String>,
}

/// How a node's claim on an agent's session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentClaim {
    /// The agent is now connected through the claiming node.
    Claimed,
    /// Another node, whose lease runs, holds its live session.
    HeldBy(String),
}

/// One rportd process of a cluster sharing the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Stable across restarts of the same node (kept in its data dir).
    pub id: String,
    /// Where other nodes reach its peer channel (`host:port`).
    pub peer_address: String,
    /// The host its tunnels are reached at.
    pub public_host: String,
    /// Its API address, for operators.
    pub api_address: String,
    pub started_at: DateTime<Utc>,
    /// Until when it counts as alive unless it renews; set by the store. Ignored on renew.
    pub lease_until: DateTime<Utc>,
    /// Whether its lease was running when it was read, by the store's clock. Ignored on
    /// renew.
    pub alive: bool,
}

/// A change one node tells the others about: what changed (`topic`) and which record
/// (`key`). Events carry no secrets; nodes read the record itself when they need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterEvent {
    /// Assigned by the store, increasing; ignored on publish.
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub topic: String,
    pub key: String,
    /// The node that published it.
    pub origin: String,
}

/// The project every agent and tunnel belongs to unless its credential says otherwise.
pub const DEFAULT_PROJECT: &str = "default";

/// A project (fleet): a named set of agents.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectRecord {
    pub key: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TunnelRecord {
    pub id: String,
    pub agent_id: String,
    pub name: String,
    pub protocol: String,
    pub lhost: String,
    pub lport: u16,
    pub lport_random: bool,
    pub rhost: String,
    pub rport: u16,
    pub scheme: Option<String>,
    pub status: TunnelStatus,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub close_reason: Option<String>,
    pub options: TunnelOptions,
    pub counters: TunnelCounters,
    /// When a connection last ended or a datagram last passed; idle time counts from here.
    pub last_active_at: Option<DateTime<Utc>>,
    /// Its agent's project when it was created.
    pub project: String,
    /// The node of a cluster holding its port, and so carrying its traffic.
    pub owner_node: Option<String>,
    /// Set by the store when part of the stored row did not read (a column of the wrong
    /// type, options that are not JSON): what did not, column by column. The fields it
    /// names hold defaults, so such a record must not be trusted to open anything.
    pub damage: Option<String>,
}

impl TunnelRecord {
    /// Still holding (or about to hold again) its port.
    pub fn is_live(&self) -> bool {
        matches!(self.status, TunnelStatus::Opened | TunnelStatus::Pending)
    }
}

/// Where a tunnel is in its life; the API shows these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TunnelStatus {
    /// Holding its port, waiting for its agent.
    Pending,
    Opened,
    /// Ended by an operator.
    Closed,
    /// Ended by the system.
    Terminated,
}

impl TunnelStatus {
    pub const ALL: [Self; 4] = [Self::Pending, Self::Opened, Self::Closed, Self::Terminated];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Opened => "opened",
            Self::Closed => "closed",
            Self::Terminated => "terminated",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

impl fmt::Display for TunnelStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the operator set on a tunnel. Stored as JSON, so that adding an option needs no
/// migration; unknown fields are ignored and missing ones take their defaults.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TunnelOptions {
    /// Comma list of addresses and networks allowed to connect; `None` = anyone.
    pub acl: Option<String>,
    /// 0 = never idle-closed.
    pub idle_timeout_minutes: u32,
    /// Closed this long after creation, busy or not; 0 = no limit.
    pub auto_close_secs: u64,
    pub check_port: bool,
    /// The public side speaks HTTPS and forwards HTTP requests (RPort's `http_proxy`).
    pub http_proxy: bool,
    /// The `Host` the target gets.
    pub host_header: Option<String>,
    /// HTTP basic auth in front of the proxy: the user, and an argon2 hash of the password.
    pub auth_user: Option<String>,
    pub auth_password_hash: Option<String>,
    /// The tunnel's own subdomain of `tunnel_host` on the shared proxy port.
    pub subdomain: Option<String>,
}

impl fmt::Debug for TunnelOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelOptions")
            .field("acl", &self.acl)
            .field("idle_timeout_minutes", &self.idle_timeout_minutes)
            .field("auto_close_secs", &self.auto_close_secs)
            .field("check_port", &self.check_port)
            .field("http_proxy", &self.http_proxy)
            .field("host_header", &self.host_header)
            .field("auth_user", &self.auth_user)
            .field(
                "auth_password_hash",
                &self.auth_password_hash.as_ref().map(|_| "<hidden>"),
            )
            .field("subdomain", &self.subdomain)
            .finish()
    }
}

/// What a tunnel has carried, for operators and for the audit of who used what.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelCounters {
    /// Connections (TCP) or remote sources (UDP) accepted.
    pub connections: u64,
    /// Connections or datagrams refused by the ACL.
    pub refused: u64,
    /// Bytes from the public side to the target.
    pub bytes_in: u64,
    /// Bytes from the target to the public side.
    pub bytes_out: u64,
}

impl TunnelCounters {
    /// What was counted since `earlier`, a reading of the same counters.
    pub fn since(self, earlier: Self) -> Self {
        Self {
            connections: self.connections.wrapping_sub(earlier.connections),
            refused: self.refused.wrapping_sub(earlier.refused),
            bytes_in: self.bytes_in.wrapping_sub(earlier.bytes_in),
            bytes_out: self.bytes_out.wrapping_sub(earlier.bytes_out),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct TunnelFilter {
    pub agent_id: Option<String>,
    pub project: Option<String>,
    pub open_only: bool,
    /// Only tunnels held by this node.
    pub owner_node: Option<String>,
    /// Only the HTTP proxy tunnel at this subdomain of the shared proxy port.
    pub subdomain: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Clone, PartialEq)]
pub struct UserRecord {
    pub username: String,
    /// argon2 or bcrypt PHC string, never a password.
    pub password_hash: String,
    /// A server-wide administrator: every project, users and projects themselves.
    pub is_admin: bool,
    pub created_at: DateTime<Utc>,
    /// Project key -> role name (`admin`, `tunnels`, `viewer`); the server gives them meaning.
    pub roles: BTreeMap<String, String>,
    /// RPort's `password_expired`: the user must choose a new password before anything else.
    pub password_expired: bool,
    /// RPort's `two_fa_send_to` (an e-mail address or a Pushover key), kept as given.
    pub two_fa_send_to: String,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("username", &self.username)
            .field("password_hash", &"<hidden>")
            .field("is_admin", &self.is_admin)
            .field("created_at", &self.created_at)
            .field("roles", &self.roles)
            .field("password_expired", &self.password_expired)
            .finish_non_exhaustive()
    }
}

/// Whether a change to users must leave the server an administrator in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminGuard {
    /// Refuse to remove the last one (no administrator is configured elsewhere).
    KeepOne,
    /// Another one exists outside the store (the configuration).
    None,
}

/// How a change to a user ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserWrite {
    Done,
    NotFound,
    /// Refused: it would have removed the last administrator.
    LastAdmin,
    /// Refused: the new name of a renamed user is taken.
    Taken,
}

/// How deleting a project ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectRemoval {
    Deleted,
    NotFound,
    /// Refused: this many agents belong to it.
    HasAgents(u64),
    /// Refused: managed agent credentials bind agents to it.
    HasAgentCredentials,
}

/// An agent credential rportd manages: only a hash of its secret is kept.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentCredentialRecord {
    pub id: String,
    /// The server's encoding of a salted hash; the store does not read it.
    pub hash: String,
    /// The project its agents belong to.
    pub project: String,
}

impl fmt::Debug for AgentCredentialRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentCredentialRecord")
            .field("id", &self.id)
            .field("hash", &"<hidden>")
            .field("project", &self.project)
            .finish()
    }
}

/// One entry of the audit log: who did what to what, from where, and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// Assigned by the store; ignored on insert.
    pub id: i64,
    pub at: DateTime<Utc>,
    /// A user name, a credential id, or `system`.
    pub actor: String,
    /// `user`, `token`, `agent` or `system`.
    pub actor_type: String,
    pub actor_ip: Option<String>,
    /// `login`, `tunnel.create`, `tunnel.close`, `project.create`, ...
    pub action: String,
    /// What it acted on: a tunnel id, a project key, an agent id.
    pub resource: String,
    pub project: Option<String>,
    /// `success` or `failure`.
    pub result: String,
    pub detail: String,
    /// The agent the action concerned, with its host name when it was recorded.
    pub client_id: Option<String>,
    pub client_hostname: Option<String>,
}

/// An API token: only a hash of its secret is kept.
#[derive(Clone, PartialEq)]
pub struct ApiTokenRecord {
    pub id: String,
    pub username: String,
    pub name: String,
    /// `read`, `read+write` or `clients-auth`.
    pub scope: String,
    /// Limits the token to one project.
    pub project: Option<String>,
    /// SHA-256 of the secret part, hex.
    pub hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// What [`crate::Store::update_api_token`] sets on a token: all three, as given.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiTokenChange {
    pub name: String,
    pub scope: String,
    pub expires_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for ApiTokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiTokenRecord")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("name", &self.name)
            .field("scope", &self.scope)
            .field("project", &self.project)
            .field("hash", &"<hidden>")
            .finish()
    }
}

/// A user group (RPort's name): a named bundle of rights that API users belong to. The
/// store keeps what was set; the server gives it meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserGroupRecord {
    pub name: String,
    /// RPort's permission names the group has (those set true), sorted.
    pub permissions: Vec<String>,
    /// RPort's `tunnels_restricted`, JSON text as given; `None` when not set.
    pub tunnels_restricted: Option<String>,
    /// RPort's `commands_restricted`, JSON text as given; `None` when not set.
    pub commands_restricted: Option<String>,
    /// The projects whose agents the group's members reach, sorted; a project deleted
    /// leaves every group.
    pub projects: Vec<String>,
}

impl UserGroupRecord {
    /// The `permissions` column: a JSON array of names.
    pub(crate) fn permissions_text(&self) -> String {
        serde_json::Value::from(self.permissions.clone()).to_string()
    }

    /// Reads the `permissions` column; text that is not an array of names is damage,
    /// named with its group.
    pub(crate) fn parse_permissions(
        name: &str,
        text: &str,
    ) -> Result<Vec<String>, crate::StoreError> {
        serde_json::from_str(text).map_err(|err| crate::StoreError::Corrupt {
            what: format!("user group {name:?} (table user_groups, column permissions)"),
            reason: err.to_string(),
        })
    }
}

/// A client group (RPort's `/client-groups`): the agents of one project whose facts match
/// `params`, worked out when asked, never stored as a list.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientGroupRecord {
    /// Unique across projects.
    pub id: String,
    /// Only agents of this project can belong to it.
    pub project: String,
    pub description: String,
    /// RPort's `ClientParams` JSON, kept as the API received it.
    pub params: serde_json::Value,
    pub allowed_user_groups: Vec<String>,
}

/// What the API set on an agent, over what the agent reports: tags and labels (RPort's
/// client attributes; when set they replace the agent's own, as RPort's attributes file
/// does) and the user groups of RPort's client ACL.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentOverridesRecord {
    pub agent_id: String,
    /// `None`: the agent's own tags and labels apply.
    pub attributes: Option<AgentAttributes>,
    /// `None`: never set.
    pub allowed_user_groups: Option<Vec<String>>,
}

/// Tags and labels set through the API.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentAttributes {
    pub tags: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// JSON text columns of the two records above, read the same way by both backends: a
/// column that does not parse is damage, named.
pub(crate) fn json_column<T: serde::de::DeserializeOwned>(
    what: &str,
    text: Option<&str>,
) -> Result<Option<T>, crate::StoreError> {
    text.map(|text| {
        serde_json::from_str(text).map_err(|err| crate::StoreError::Corrupt {
            what: what.to_owned(),
            reason: err.to_string(),
        })
    })
    .transpose()
}

/// A login session: one token from `/api/v1/login` (or `/api/v1/verify-2fa`), found by the
/// token's id. The token itself is never kept.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    /// Given by the store on insert (RPort's numeric `session_id`).
    pub id: i64,
    /// The token's `jti`.
    pub jti: String,
    pub username: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub last_access_at: DateTime<Utc>,
    /// The `User-Agent` and address of the last use.
    pub user_agent: String,
    pub ip_address: String,
}
