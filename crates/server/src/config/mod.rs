//! rportd's configuration: TOML with RPort's key names, an embedded default, and validation
//! that names the file, the key and the reason for anything it refuses.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rport_protocol::ip_rules::IpNet;

use crate::domain::secrets::{Secret, StoredSecret};
use port_ranges::PortRanges;
use user_file::UserFile;

mod agent_auth_file;
pub mod port_ranges;
mod raw;
pub mod user_file;
mod validate;

use raw::parse_toml;
use validate::Validator;

/// Where the embedded default keeps its state, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./rportd-data";
pub const DEFAULT_AGENT_ADDRESS: &str = "0.0.0.0:8080";
pub const DEFAULT_API_ADDRESS: &str = "127.0.0.1:3000";
const EMBEDDED: &str = "<embedded default>";
/// Half of what an agent's tunnels may hold together: room for the device's other tunnels
/// even when one is flooded.
pub const DEFAULT_MAX_CONNECTIONS_PER_TUNNEL: u32 = 2048;
/// Each connection may pin about 384 KiB while its client does not read (see
/// docs/security.md), so this bounds one agent's share at about 1.5 GiB; the session's
/// own limit, 16,384 streams, would allow 6 GiB.
pub const DEFAULT_MAX_CONNECTIONS_PER_AGENT: u32 = 4096;
/// Off: many legitimate clients share one address (an office behind NAT), and one client
/// cycling through connections briefly holds its closing ones too (a test cycling 1,000 at
/// a time from one address was refused with a limit of 1,024). The per-tunnel limit still holds.
pub const DEFAULT_MAX_CONNECTIONS_PER_SOURCE: u32 = 0;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub server: ServerSection,
    pub api: ApiSection,
    pub logging: LoggingSection,
    /// `[database]`: where the state is kept; absent, SQLite in `data_dir`.
    pub database: rport_store::DatabaseSettings,
    pub cluster: ClusterSection,
    pub metrics: MetricsSection,
}

/// `[metrics]`: the Prometheus endpoint without authentication.
#[derive(Debug, Clone, Default)]
pub struct MetricsSection {
    /// `host:port` serving `GET /metrics` to anyone who reaches it, meant for a private
    /// network; `None` (absent or empty) serves it only on the API, with authentication.
    pub address: Option<String>,
}

/// `[cluster]`: this node's part in a cluster of nodes sharing one database.
#[derive(Debug, Clone, Default)]
pub struct ClusterSection {
    /// `host:port` where the other nodes reach this one's peer channel (and where it
    /// listens for them).
    pub peer_address: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ServerSection {
    /// Where agents connect, `host:port`.
    pub address: String,
    /// How agents reach the server from outside; only reported (`connect_url`).
    pub url: Vec<String>,
    pub data_dir: PathBuf,
    pub agent_auth: AgentAuth,
    /// As written, for `/api/v1/status`.
    pub used_ports: Vec<String>,
    pub excluded_ports: Vec<String>,
    /// `used_ports` minus `excluded_ports`.
    pub port_pool: PortRanges,
    pub purge_disconnected_clients: bool,
    pub keep_disconnected_clients: Duration,
    pub purge_disconnected_clients_interval: Duration,
    /// TLS handshakes in flight at once; the rest wait, so a reconnect storm after a
    /// restart cannot starve established sessions of CPU.
    pub max_concurrent_handshakes: usize,
    pub handshake_timeout: Duration,
    /// Connections one tunnel may hold open at once (0: no limit). All tunnels of an agent
    /// share its session's streams; this keeps one busy or abused tunnel from taking them all.
    pub max_connections_per_tunnel: u32,
    /// Connections one source address (an IPv6 /64 counts as one) may hold open to one
    /// tunnel at once (0: no limit).
    pub max_connections_per_source: u32,
    /// Connections all tunnels of one agent may hold open at once (1 to 16,384, the
    /// streams one session carries); bounds the memory one agent's clients can pin.
    pub max_connections_per_agent: u32,
    /// Connections all tunnels of the server may hold open at once (0: no limit); `None`
    /// when not configured, for the server to size from the machine's memory.
    pub max_connections_total: Option<u32>,
    /// How long a tunnel keeps its port while its agent is disconnected.
    pub tunnel_grace_period: Duration,
    /// How long the agent may take to reach a target when `check_port` is on.
    pub check_port_timeout: Duration,
    /// The host name users reach tunnel ports at (`server_address` in API v2).
    pub tunnel_host: Option<String>,
    /// Failed agent logins before a ban; 0 = no bans.
    pub max_failed_login: u32,
    pub ban_time: Duration,
    /// `tunnel_proxy_cert_file` and `tunnel_proxy_key_file`: the certificate HTTP proxy
    /// tunnels present; a self-signed one in `data_dir` when not given.
    pub tunnel_proxy_tls: Option<CertFiles>,
    /// One public port for every HTTP proxy tunnel, each at its own subdomain of
    /// `tunnel_host`.
    pub tunnel_proxy_address: Option<String>,
    /// `cert_file` and `key_file`: the certificate agents see instead of the generated
    /// one (agents pin its key, or check it against CA roots).
    pub tls: Option<CertFiles>,
    /// Whether tunnels an agent's own configuration asks for (`[client] remotes`) are
    /// opened; they listen on the server without an ACL.
    pub allow_client_remotes: bool,
    /// RPort's `auth_multiuse_creds`: several client ids may share a credential.
    pub auth_multiuse_creds: bool,
    /// RPort's `equate_clientauthid_clientid`: a client id must be its credential's id.
    pub equate_clientauthid_clientid: bool,
}

/// A PEM certificate chain and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `host:port`, `[v6]:port` or `host` -> the host.
pub fn host_part(authority: &str) -> String {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default().to_owned();
    }
    authority.split(':').next().unwrap_or_default().to_owned()
}

impl ServerSection {
    /// The host of the first `url`, unless it is empty or a wildcard address: the name
    /// users reach this server at, as far as the configuration knows it.
    pub fn url_host(&self) -> Option<String> {
        let authority = self.url.first()?.split_once("://")?.1.split('/').next()?;
        let host = host_part(authority);
        (!host.is_empty() && host != "0.0.0.0" && host != "::").then_some(host)
    }
}

/// How agents authenticate.
#[derive(Debug, Clone)]
pub enum AgentAuth {
    /// Nothing configured: rportd manages credentials itself (creating one on first start).
    None,
    /// `[server] auth = "id:password"`.
    Single { id: String, password: Secret },
    /// `[server] auth_file`: a JSON object mapping ids to passwords or bcrypt/argon2 hashes,
    /// or to `{"password": ..., "project": ...}` to bind the credential to a project.
    File {
        path: PathBuf,
        entries: BTreeMap<String, FileCredential>,
    },
}

/// One credential of an auth file.
#[derive(Debug, Clone)]
pub struct FileCredential {
    pub secret: StoredSecret,
    /// Agents using it belong to this project.
    pub project: String,
}

#[derive(Debug, Clone)]
pub struct ApiSection {
    /// `None` turns the API off.
    pub address: Option<String>,
    /// A single static user, `[api] auth = "user:password"`: the bootstrap administrator.
    pub auth: Option<(String, Secret)>,
    /// `[api] auth_file`: users kept in a JSON file (RPort's format), read at start and on
    /// SIGUSR1.
    pub auth_file: Option<Arc<UserFile>>,
    /// Signs tokens; generated and kept in the store when not configured, so tokens
    /// survive restarts.
    pub jwt_secret: Option<Secret>,
    /// Reverse proxies whose `X-Forwarded-For` is believed; nobody else's is.
    pub trusted_proxies: Vec<IpNet>,
    /// Failed logins from one address (or for one user) before a ban; 0 = no bans.
    pub max_failed_login: u32,
    pub ban_time: Duration,
    /// Audit log entries older than this are deleted; zero keeps them forever.
    pub audit_log_retention: Duration,
    /// The longest lifetime a login may ask for its token (RPort: hours, at most 2160).
    pub max_token_lifetime: Duration,
    /// `cert_file` and `key_file`: the API speaks HTTPS (TLS 1.2 and up) only.
    pub tls: Option<CertFiles>,
    /// A request's headers must arrive within this, on the API and on HTTP proxy tunnels;
    /// slower clients are disconnected.
    pub read_header_timeout: Duration,
    /// `[api] doc_root`: a web UI bundle served at `/` beside the API; canonical, so
    /// that every file served can be checked to lie inside it.
    pub doc_root: Option<PathBuf>,
    /// `totp_enabled`: a login needs a code from an authenticator app too (`/verify-2fa`),
    /// and basic auth with a password is refused.
    pub totp_enabled: bool,
    /// `totp_login_session_ttl`: how long after `/login` its code may be sent.
    pub totp_login_session_ttl: Duration,
    /// `totp_account_name`: the account name authenticator apps show (RPort's default
    /// `RPort`).
    pub totp_account_name: String,
}

#[derive(Debug, Clone)]
pub struct LoggingSection {
    pub log_level: String,
    pub log_file: Option<PathBuf>,
}

/// A configuration that cannot be used; says where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    /// Dotted key such as `server.used_ports`; empty for errors about the whole file.
    pub key: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "config {}: {}", self.file, self.reason)
        } else {
            write!(
                f,
                "config {}: key `{}`: {}",
                self.file, self.key, self.reason
            )
        }
    }
}

impl ServerConfig {
    /// What rportd runs on without `-c`.
    pub fn default_embedded() -> Self {
        match Self::from_toml_str("", EMBEDDED) {
            Ok(config) => config,
            // The empty document is valid by construction; a test keeps it so.
            Err(err) => panic!("embedded default configuration is invalid: {err}"),
        }
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
            file: file.clone(),
            key: String::new(),
            reason: format!("cannot read it: {err}"),
        })?;
        Self::from_toml_str(&text, &file)
    }

    /// Parses and validates a TOML document; `file` names it in errors.
    pub fn from_toml_str(text: &str, file: &str) -> Result<Self, ConfigError> {
        let raw = parse_toml(text, file)?;
        Validator { file }.validate(raw)
    }
}

#[cfg(test)]
mod tests;
