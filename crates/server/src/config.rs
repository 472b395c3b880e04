//! rportd's configuration: TOML with RPort's key names, an embedded default, and validation
//! that names the file, the key and the reason for anything it refuses.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::port_ranges::PortRanges;
pub use crate::secrets::{Secret, StoredSecret};
pub use crate::user_file::{FileUser, UserFile};
use rport_protocol::ip_rules::IpNet;

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

/// User names travel in HTTP basic auth and URLs: no `:`, no `/`, nothing invisible.
pub fn check_username(name: &str) -> Result<(), String> {
    let valid = (1..=crate::bounded::MAX_USERNAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "user name {name:?} must be 1 to 64 letters, digits, '.', '_', '-' or '@'"
        ))
    }
}

/// The group that makes a user of an RPort user file a server-wide administrator.
pub const ADMIN_GROUP: &str = "Administrators";

/// Project keys end up in URLs (`/api/v2/{project_key}/...`): short, lower case, plain.
pub fn check_project_key(key: &str) -> Result<(), String> {
    let valid = (1..=63).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && key
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(format!(
            "project key {key:?} must be 1 to 63 lower-case letters, digits, '-' or '_', starting with a letter or digit"
        ))
    }
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    logging: RawLogging,
    #[serde(default)]
    database: RawDatabase,
}

/// RPort's key names: `db_type`, and `db_name` (for SQLite, the file).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    db_type: Option<String>,
    db_name: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    address: Option<String>,
    url: Option<OneOrMany>,
    data_dir: Option<PathBuf>,
    auth: Option<String>,
    auth_file: Option<PathBuf>,
    used_ports: Option<Vec<PortEntry>>,
    excluded_ports: Option<Vec<PortEntry>>,
    #[serde(alias = "cleanup_lost_clients")]
    purge_disconnected_clients: Option<bool>,
    #[serde(alias = "keep_lost_clients")]
    keep_disconnected_clients: Option<DurationValue>,
    #[serde(alias = "cleanup_clients_interval")]
    purge_disconnected_clients_interval: Option<DurationValue>,
    #[serde(alias = "max_concurrent_ssh_handshakes")]
    max_concurrent_handshakes: Option<usize>,
    handshake_timeout: Option<DurationValue>,
    max_connections_per_tunnel: Option<u32>,
    max_connections_per_source: Option<u32>,
    max_connections_per_agent: Option<u32>,
    max_connections_total: Option<u32>,
    tunnel_grace_period: Option<DurationValue>,
    check_port_timeout: Option<DurationValue>,
    tunnel_host: Option<String>,
    max_failed_login: Option<u32>,
    ban_time: Option<u64>,
    tunnel_proxy_cert_file: Option<PathBuf>,
    tunnel_proxy_key_file: Option<PathBuf>,
    tunnel_proxy_address: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    allow_client_remotes: Option<bool>,
    auth_multiuse_creds: Option<bool>,
    equate_clientauthid_clientid: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawApi {
    address: Option<String>,
    auth: Option<String>,
    auth_file: Option<PathBuf>,
    jwt_secret: Option<String>,
    trusted_proxies: Option<Vec<String>>,
    max_failed_login: Option<u32>,
    ban_time: Option<u64>,
    audit_log_retention: Option<DurationValue>,
    max_token_lifetime: Option<u64>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    read_header_timeout: Option<DurationValue>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLogging {
    log_level: Option<String>,
    log_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PortEntry {
    Number(i64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DurationValue {
    Number(i64),
    Text(String),
}

const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];

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

fn parse_toml(text: &str, file: &str) -> Result<RawConfig, ConfigError> {
    let deserializer =
        toml::de::Deserializer::parse(text).map_err(|err| syntax_error(file, text, &err))?;
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = inner.message().to_owned();
        let key = match message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split_once('`'))
        {
            Some((field, _)) if path == "." => field.to_owned(),
            _ => path,
        };
        let reason = match message.starts_with("unknown field") {
            true => format!("unknown key ({message})"),
            false => message,
        };
        ConfigError {
            file: file.to_owned(),
            key,
            reason: with_line(text, inner.span(), reason),
        }
    })
}

fn syntax_error(file: &str, text: &str, err: &toml::de::Error) -> ConfigError {
    ConfigError {
        file: file.to_owned(),
        key: String::new(),
        reason: with_line(
            text,
            err.span(),
            format!("not valid TOML: {}", err.message().trim()),
        ),
    }
}

fn with_line(text: &str, span: Option<std::ops::Range<usize>>, reason: String) -> String {
    match span {
        Some(span) => {
            let line = text
                .get(..span.start)
                .map_or(0, |before| before.matches('\n').count())
                + 1;
            format!("{reason} (line {line})")
        }
        None => reason,
    }
}

struct Validator<'a> {
    file: &'a str,
}

impl Validator<'_> {
    fn error(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    fn validate(&self, raw: RawConfig) -> Result<ServerConfig, ConfigError> {
        Ok(ServerConfig {
            server: self.server(raw.server)?,
            api: self.api(raw.api)?,
            logging: self.logging(raw.logging)?,
            database: self.database(raw.database)?,
        })
    }

    fn database(&self, raw: RawDatabase) -> Result<rport_store::DatabaseSettings, ConfigError> {
        let path = raw.db_name.filter(|path| !path.as_os_str().is_empty());
        match raw.db_type.as_deref().unwrap_or("sqlite") {
            "sqlite" => Ok(rport_store::DatabaseSettings::Sqlite { path }),
            other => Err(self.error(
                "database.db_type",
                format!(
                    "{other:?} is not a database rportd can keep its state in; use one of: {}",
                    rport_store::DatabaseSettings::DB_TYPES.join(", ")
                ),
            )),
        }
    }

    fn server(&self, raw: RawServer) -> Result<ServerSection, ConfigError> {
        let address = raw
            .address
            .unwrap_or_else(|| DEFAULT_AGENT_ADDRESS.to_owned());
        self.check_address("server.address", &address)?;
        let url = match raw.url {
            None => Vec::new(),
            Some(OneOrMany::One(url)) => vec![url],
            Some(OneOrMany::Many(urls)) => urls,
        };
        let url = match url.is_empty() {
            true => vec![format!("http://{address}")],
            false => url,
        };
        if let Some(bad) = url.iter().find(|u| !u.contains("://")) {
            return Err(self.error(
                "server.url",
                format!("{bad:?} is not a URL like \"http://rport.example.com:8080\""),
            ));
        }
        let agent_auth = match (raw.auth, raw.auth_file) {
            (Some(_), Some(_)) => {
                return Err(self.error(
                    "server.auth_file",
                    "set either `auth` or `auth_file`, not both",
                ));
            }
            (Some(auth), None) => {
                let (id, password) = self.credential("server.auth", &auth, "id:password")?;
                self.check_credential_id("server.auth", &id)?;
                AgentAuth::Single {
                    id,
                    password: Secret::new(password),
                }
            }
            (None, Some(path)) => self.auth_file(path)?,
            (None, None) => AgentAuth::None,
        };
        let used_ports = self.port_entries("server.used_ports", raw.used_ports, "20000-30000")?;
        let excluded_ports =
            self.port_entries("server.excluded_ports", raw.excluded_ports, "1-1024")?;
        let used = PortRanges::parse(&used_ports)
            .map_err(|e| self.error("server.used_ports", e.to_string()))?;
        let excluded = PortRanges::parse(&excluded_ports)
            .map_err(|e| self.error("server.excluded_ports", e.to_string()))?;
        let port_pool = used.subtract(&excluded);
        if port_pool.is_empty() {
            return Err(self.error(
                "server.used_ports",
                "no port is left for tunnels once excluded_ports are taken out",
            ));
        }
        let keep_set = raw.keep_disconnected_clients.is_some();
        let keep_disconnected_clients = self.duration(
            "server.keep_disconnected_clients",
            raw.keep_disconnected_clients,
            Duration::from_secs(3600),
        )?;
        let purge_disconnected_clients_interval = self.duration(
            "server.purge_disconnected_clients_interval",
            raw.purge_disconnected_clients_interval,
            Duration::from_secs(60),
        )?;
        if purge_disconnected_clients_interval < Duration::from_secs(1) {
            return Err(self.error(
                "server.purge_disconnected_clients_interval",
                "must be at least 1s",
            ));
        }
        let max_concurrent_handshakes = raw.max_concurrent_handshakes.unwrap_or(64);
        if max_concurrent_handshakes == 0 {
            return Err(self.error("server.max_concurrent_handshakes", "must be at least 1"));
        }
        let handshake_timeout = self.duration(
            "server.handshake_timeout",
            raw.handshake_timeout,
            Duration::from_secs(10),
        )?;
        if !(Duration::from_secs(1)..=Duration::from_secs(300)).contains(&handshake_timeout) {
            return Err(self.error("server.handshake_timeout", "must be between 1s and 5m"));
        }
        let max_connections_per_agent = raw
            .max_connections_per_agent
            .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_AGENT);
        let most = rport_transport::mux::MAX_STREAMS;
        if !(1..=most).contains(&(max_connections_per_agent as usize)) {
            return Err(self.error(
                "server.max_connections_per_agent",
                format!("must be between 1 and {most} (the streams one agent session carries)"),
            ));
        }
        let tunnel_grace_period = self.duration(
            "server.tunnel_grace_period",
            raw.tunnel_grace_period,
            Duration::from_secs(120),
        )?;
        if tunnel_grace_period > Duration::from_secs(7 * 24 * 3600) {
            return Err(self.error("server.tunnel_grace_period", "must be at most 168h"));
        }
        let check_port_timeout = self.duration(
            "server.check_port_timeout",
            raw.check_port_timeout,
            Duration::from_secs(2),
        )?;
        if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&check_port_timeout) {
            return Err(self.error("server.check_port_timeout", "must be between 100ms and 1m"));
        }
        let tunnel_host = match raw.tunnel_host.filter(|h| !h.trim().is_empty()) {
            None => None,
            Some(host) => {
                let host = host.trim().to_ascii_lowercase();
                let valid = host.split('.').all(|label| {
                    (1..=63).contains(&label.len())
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
                if !valid {
                    return Err(
                        self.error("server.tunnel_host", format!("{host:?} is not a host name"))
                    );
                }
                Some(host)
            }
        };
        Ok(ServerSection {
            address,
            url,
            data_dir: raw
                .data_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            agent_auth,
            used_ports,
            excluded_ports,
            port_pool,
            // Setting how long to keep gone agents implies forgetting them after that.
            purge_disconnected_clients: raw.purge_disconnected_clients.unwrap_or(keep_set),
            keep_disconnected_clients,
            purge_disconnected_clients_interval,
            max_concurrent_handshakes,
            handshake_timeout,
            max_connections_per_tunnel: raw
                .max_connections_per_tunnel
                .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_TUNNEL),
            max_connections_per_source: raw
                .max_connections_per_source
                .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_SOURCE),
            max_connections_per_agent,
            max_connections_total: raw.max_connections_total,
            tunnel_grace_period,
            check_port_timeout,
            allow_client_remotes: raw.allow_client_remotes.unwrap_or(true),
            auth_multiuse_creds: raw.auth_multiuse_creds.unwrap_or(true),
            equate_clientauthid_clientid: raw.equate_clientauthid_clientid.unwrap_or(false),
            tls: self.cert_files(
                ("server.cert_file", raw.cert_file),
                ("server.key_file", raw.key_file),
            )?,
            tunnel_proxy_tls: self.cert_files(
                ("server.tunnel_proxy_cert_file", raw.tunnel_proxy_cert_file),
                ("server.tunnel_proxy_key_file", raw.tunnel_proxy_key_file),
            )?,
            tunnel_proxy_address: match raw.tunnel_proxy_address.filter(|a| !a.trim().is_empty()) {
                None => None,
                Some(address) => {
                    self.check_address("server.tunnel_proxy_address", &address)?;
                    if tunnel_host.is_none() {
                        return Err(self.error(
                            "server.tunnel_proxy_address",
                            "needs server.tunnel_host: proxy tunnels get subdomains of it",
                        ));
                    }
                    Some(address)
                }
            },
            tunnel_host,
            max_failed_login: raw.max_failed_login.unwrap_or(5),
            ban_time: self.ban_time("server.ban_time", raw.ban_time, 3600)?,
        })
    }

    fn api(&self, raw: RawApi) -> Result<ApiSection, ConfigError> {
        let address = match raw.address {
            None => Some(DEFAULT_API_ADDRESS.to_owned()),
            Some(address) if address.trim().is_empty() => None,
            Some(address) => {
                self.check_address("api.address", &address)?;
                Some(address)
            }
        };
        let auth = match raw.auth {
            None => None,
            Some(auth) => {
                let (user, password) = self.credential("api.auth", &auth, "user:password")?;
                if user.len() > crate::bounded::MAX_USERNAME_LEN {
                    return Err(self.error(
                        "api.auth",
                        format!(
                            "the user name may be at most {} bytes",
                            crate::bounded::MAX_USERNAME_LEN
                        ),
                    ));
                }
                Some((user, Secret::new(password)))
            }
        };
        let auth_file = match raw.auth_file {
            None => None,
            Some(path) => Some(Arc::new(
                UserFile::read(&path).map_err(|reason| self.error("api.auth_file", reason))?,
            )),
        };
        let jwt_secret = match raw.jwt_secret {
            None => None,
            Some(secret) if secret.is_empty() => None,
            Some(secret) if secret.len() < 16 => {
                return Err(self.error(
                    "api.jwt_secret",
                    "too short to sign tokens safely; use at least 16 characters",
                ));
            }
            Some(secret) => Some(Secret::new(secret)),
        };
        let mut trusted_proxies = Vec::new();
        for entry in raw.trusted_proxies.unwrap_or_default() {
            let net = entry.trim().parse::<IpNet>().map_err(|err| {
                self.error("api.trusted_proxies", format!("entry {entry:?}: {err}"))
            })?;
            trusted_proxies.push(net);
        }
        Ok(ApiSection {
            address,
            auth,
            auth_file,
            jwt_secret,
            trusted_proxies,
            max_failed_login: raw.max_failed_login.unwrap_or(10),
            ban_time: self.ban_time("api.ban_time", raw.ban_time, 600)?,
            max_token_lifetime: match raw.max_token_lifetime {
                None => Duration::from_secs(2160 * 3600),
                Some(hours @ 1..=2160) => Duration::from_secs(hours * 3600),
                Some(_) => {
                    return Err(self.error(
                        "api.max_token_lifetime",
                        "must be a number of hours from 1 to 2160",
                    ));
                }
            },
            tls: self.cert_files(
                ("api.cert_file", raw.cert_file),
                ("api.key_file", raw.key_file),
            )?,
            read_header_timeout: {
                let timeout = self.duration(
                    "api.read_header_timeout",
                    raw.read_header_timeout,
                    crate::http_serve::HEADER_TIMEOUT,
                )?;
                if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&timeout) {
                    return Err(self.error("api.read_header_timeout", "must be between 1s and 10m"));
                }
                timeout
            },
            audit_log_retention: self.duration(
                "api.audit_log_retention",
                raw.audit_log_retention,
                Duration::from_secs(90 * 24 * 3600),
            )?,
        })
    }

    fn logging(&self, raw: RawLogging) -> Result<LoggingSection, ConfigError> {
        let log_level = raw
            .log_level
            .unwrap_or_else(|| "info".to_owned())
            .to_ascii_lowercase();
        if !LOG_LEVELS.contains(&log_level.as_str()) {
            return Err(self.error(
                "logging.log_level",
                format!("{log_level:?} is not one of {}", LOG_LEVELS.join(", ")),
            ));
        }
        Ok(LoggingSection {
            log_level,
            log_file: raw.log_file.filter(|path| !path.as_os_str().is_empty()),
        })
    }

    /// A certificate and key named together, or neither.
    fn cert_files(
        &self,
        (cert_key, cert): (&str, Option<PathBuf>),
        (key_key, key): (&str, Option<PathBuf>),
    ) -> Result<Option<CertFiles>, ConfigError> {
        match (cert, key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Ok(Some(CertFiles { cert, key })),
            (Some(_), None) => Err(self.error(key_key, format!("is needed with {cert_key}"))),
            (None, Some(_)) => Err(self.error(cert_key, format!("is needed with {key_key}"))),
        }
    }

    fn check_address(&self, key: &str, address: &str) -> Result<(), ConfigError> {
        let valid = address
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if valid {
            Ok(())
        } else {
            Err(self.error(
                key,
                format!("{address:?} is not host:port, e.g. \"0.0.0.0:8080\""),
            ))
        }
    }

    /// Splits `"id:password"`; the reason never repeats the value, which holds a secret.
    fn credential(
        &self,
        key: &str,
        value: &str,
        form: &str,
    ) -> Result<(String, String), ConfigError> {
        match value.split_once(':') {
            Some((id, password)) if !id.is_empty() && !password.is_empty() => {
                Ok((id.to_owned(), password.to_owned()))
            }
            _ => Err(self.error(
                key,
                format!("must have the form \"{form}\" with both parts non-empty"),
            )),
        }
    }

    /// Agents present the id in every hello: one longer than any valid id is refused
    /// before it is looked up, so a configured one must not be.
    fn check_credential_id(&self, key: &str, id: &str) -> Result<(), ConfigError> {
        let max = crate::bounded::MAX_CREDENTIAL_ID_LEN;
        if id.len() > max {
            return Err(self.error(
                key,
                format!(
                    "credential id {:?} is {} bytes; it may be at most {max}",
                    crate::bounded::bounded(id),
                    id.len()
                ),
            ));
        }
        Ok(())
    }

    /// RPort's `ban_time`: whole seconds, at most a week.
    fn ban_time(
        &self,
        key: &str,
        value: Option<u64>,
        default: u64,
    ) -> Result<Duration, ConfigError> {
        let secs = value.unwrap_or(default);
        if secs == 0 || secs > 7 * 24 * 3600 {
            return Err(self.error(key, "must be between 1 and 604800 seconds"));
        }
        Ok(Duration::from_secs(secs))
    }

    fn auth_file(&self, path: PathBuf) -> Result<AgentAuth, ConfigError> {
        let key = "server.auth_file";
        let shown = path.display();
        let text = std::fs::read_to_string(&path)
            .map_err(|err| self.error(key, format!("cannot read {shown}: {err}")))?;
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Entry {
            Password(String),
            Bound {
                password: String,
                #[serde(default)]
                project: Option<String>,
            },
        }
        let map: BTreeMap<String, Entry> = serde_json::from_str(&text).map_err(|err| {
            self.error(
                key,
                format!(
                    "{shown} is not a JSON object of id -> password or hash, or id -> {{\"password\", \"project\"}}: {err}"
                ),
            )
        })?;
        let mut entries = BTreeMap::new();
        for (id, value) in map {
            if id.is_empty() || id.contains(':') {
                return Err(self.error(
                    key,
                    format!("{shown}: credential id {id:?} must be non-empty and without ':'"),
                ));
            }
            self.check_credential_id(key, &id)?;
            let (password, project) = match value {
                Entry::Password(password) => (password, None),
                Entry::Bound { password, project } => (password, project),
            };
            let secret = StoredSecret::from_config(&password).map_err(|reason| {
                self.error(key, format!("{shown}: credential {id:?}: {reason}"))
            })?;
            let project = project.unwrap_or_else(|| rport_store::DEFAULT_PROJECT.to_owned());
            check_project_key(&project).map_err(|reason| {
                self.error(key, format!("{shown}: credential {id:?}: {reason}"))
            })?;
            entries.insert(id, FileCredential { secret, project });
        }
        if entries.is_empty() {
            return Err(self.error(key, format!("{shown} holds no credentials")));
        }
        Ok(AgentAuth::File { path, entries })
    }

    fn port_entries(
        &self,
        key: &str,
        raw: Option<Vec<PortEntry>>,
        default: &str,
    ) -> Result<Vec<String>, ConfigError> {
        let Some(raw) = raw else {
            return Ok(vec![default.to_owned()]);
        };
        raw.into_iter()
            .map(|entry| match entry {
                PortEntry::Text(text) => Ok(text.trim().to_owned()),
                PortEntry::Number(n) if (1..=65535).contains(&n) => Ok(n.to_string()),
                PortEntry::Number(n) => {
                    Err(self.error(key, format!("{n} is not a port from 1 to 65535")))
                }
            })
            .collect()
    }

    fn duration(
        &self,
        key: &str,
        raw: Option<DurationValue>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match raw {
            None => Ok(default),
            Some(DurationValue::Number(0)) => Ok(Duration::ZERO),
            Some(DurationValue::Number(n)) => Err(self.error(
                key,
                format!("{n} has no unit; write a duration such as \"{n}s\", \"5m\" or \"1h\""),
            )),
            Some(DurationValue::Text(text)) => parse_duration(&text).ok_or_else(|| {
                self.error(
                    key,
                    format!("{text:?} is not a duration such as \"30s\", \"5m\", \"1h30m\""),
                )
            }),
        }
    }
}

/// Go-style durations (`"90s"`, `"1h30m"`, `"0"`), as RPort's configuration uses.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text == "0" {
        return Some(Duration::ZERO);
    }
    if text.is_empty() || text.starts_with('-') {
        return None;
    }
    humantime::parse_duration(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::permissions::Role;

    fn parse(text: &str) -> Result<ServerConfig, ConfigError> {
        ServerConfig::from_toml_str(text, "test.conf")
    }

    #[test]
    fn embedded_default_matches_the_documented_one() {
        let config = ServerConfig::default_embedded();
        assert_eq!(config.server.address, "0.0.0.0:8080");
        assert_eq!(config.api.address.as_deref(), Some("127.0.0.1:3000"));
        assert_eq!(config.server.data_dir, PathBuf::from("./rportd-data"));
        assert!(matches!(config.server.agent_auth, AgentAuth::None));
        assert!(config.api.auth.is_none());
        assert_eq!(config.server.used_ports, vec!["20000-30000"]);
        assert_eq!(config.server.excluded_ports, vec!["1-1024"]);
        assert_eq!(config.server.port_pool.len(), 10001);
        assert_eq!(config.server.url, vec!["http://0.0.0.0:8080"]);
        assert_eq!(config.database, rport_store::DatabaseSettings::default());
    }

    #[test]
    fn reads_rport_keys() {
        let config = parse(
            r#"
            [server]
            address = "127.0.0.1:9000"
            url = ["https://rport.example.com:9000"]
            data_dir = "/tmp/x"
            auth = "clientAuth1:1234"
            used_ports = ["20000-20010", 30000]
            excluded_ports = ["20005"]
            keep_disconnected_clients = "2h30m"
            [api]
            address = "127.0.0.1:4000"
            auth = "admin:foobaz"
            jwt_secret = "0123456789abcdef0123"
            [logging]
            log_level = "debug"
            log_file = "/tmp/rportd.log"
            [database]
            db_type = "sqlite"
            db_name = "/tmp/x/state.db"
            "#,
        )
        .expect("valid");
        assert_eq!(
            config.database,
            rport_store::DatabaseSettings::Sqlite {
                path: Some("/tmp/x/state.db".into())
            }
        );
        assert!(
            matches!(&config.server.agent_auth, AgentAuth::Single { id, password }
            if id == "clientAuth1" && password.expose() == "1234")
        );
        assert_eq!(config.server.port_pool.len(), 11);
        assert!(!config.server.port_pool.contains(20005));
        assert_eq!(
            config.server.keep_disconnected_clients,
            Duration::from_secs(9000)
        );
        assert!(config.server.purge_disconnected_clients);
        assert_eq!(
            config.api.auth.as_ref().map(|(u, _)| u.as_str()),
            Some("admin")
        );
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("1234")
                && !debug.contains("foobaz")
                && !debug.contains("0123456789abcdef"),
            "{debug}"
        );
    }

    #[test]
    fn errors_name_file_key_and_reason() {
        let err = parse("[api]\njwt_secret = \"short\"\n").expect_err("weak jwt_secret");
        assert_eq!(err.key, "api.jwt_secret");
        assert!(err.reason.contains("16 characters"), "{err}");
        assert!(
            !err.to_string().contains("short\""),
            "the secret is not echoed: {err}"
        );
        let err = parse("[api]\ncert_file = \"/x.pem\"\n").expect_err("cert without key");
        assert_eq!(err.key, "api.key_file");
        let err = parse("[server]\ntunnel_proxy_address = \"127.0.0.1:0\"\n")
            .expect_err("shared proxy port without tunnel_host");
        assert_eq!(err.key, "server.tunnel_proxy_address");
        let err = parse("[api]\nread_header_timeout = \"0s\"\n").expect_err("no header timeout");
        assert_eq!(err.key, "api.read_header_timeout");

        let err = parse("[server]\nadress = \"1\"\n").expect_err("unknown key");
        assert_eq!(err.key, "server.adress");
        assert!(
            err.to_string()
                .starts_with("config test.conf: key `server.adress`: unknown key"),
            "{err}"
        );

        let err = parse("[server]\nused_ports = [\"30-20\"]\n").expect_err("bad range");
        assert_eq!(err.key, "server.used_ports");

        let err = parse("[server]\nused_ports = [\"100-200\"]\nexcluded_ports = [\"1-1024\"]\n")
            .expect_err("empty pool");
        assert!(err.reason.contains("no port is left"), "{err}");

        let err = parse("[server]\nkeep_disconnected_clients = 5\n").expect_err("no unit");
        assert_eq!(err.key, "server.keep_disconnected_clients");

        let err = parse("[server]\naddress = 8080\n").expect_err("wrong type");
        assert_eq!(err.key, "server.address");

        let err = parse("[api]\nauth = \"adminsecretpw\"\n").expect_err("no colon");
        assert_eq!(err.key, "api.auth");
        assert!(!err.to_string().contains("adminsecretpw"), "{err}");

        // Names longer than any valid one are refused unlooked-up at login, so none may
        // be configured.
        let long = "n".repeat(crate::bounded::MAX_USERNAME_LEN + 1);
        let err = parse(&format!("[api]\nauth = \"{long}:password\"\n")).expect_err("long user");
        assert_eq!(err.key, "api.auth");
        assert!(err.reason.contains("at most 64 bytes"), "{err}");
        let long = "c".repeat(crate::bounded::MAX_CREDENTIAL_ID_LEN + 1);
        let err = parse(&format!("[server]\nauth = \"{long}:password\"\n")).expect_err("long id");
        assert_eq!(err.key, "server.auth");
        assert!(err.reason.contains("at most 200"), "{err}");
        let fits = "c".repeat(crate::bounded::MAX_CREDENTIAL_ID_LEN);
        assert!(parse(&format!("[server]\nauth = \"{fits}:password\"\n")).is_ok());

        let err = parse("[server\n").expect_err("syntax");
        assert!(err.reason.contains("not valid TOML"), "{err}");

        let err = parse("[logging]\nlog_level = \"loud\"\n").expect_err("level");
        assert_eq!(err.key, "logging.log_level");

        let err = parse("[server]\nmax_connections_per_agent = 0\n").expect_err("no connections");
        assert_eq!(err.key, "server.max_connections_per_agent");
        assert!(err.reason.contains("between 1 and 16384"), "{err}");
        let err = parse("[server]\nmax_connections_per_agent = 16385\n").expect_err("too many");
        assert_eq!(err.key, "server.max_connections_per_agent");

        let err = parse("[surver]\n").expect_err("unknown section");
        assert_eq!(err.key, "surver");

        let err = parse("[database]\ndb_type = \"mysql\"\n").expect_err("no such backend");
        assert_eq!(
            err.to_string(),
            "config test.conf: key `database.db_type`: \"mysql\" is not a database rportd can \
             keep its state in; use one of: sqlite"
        );
    }

    #[test]
    fn api_auth_file_reads_rport_user_files_and_refuses_what_would_mislead() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users.json");
        let hash = bcrypt::hash("s3cret-password", 4).expect("bcrypt");
        let load = |users: serde_json::Value| {
            std::fs::write(&path, users.to_string()).expect("write");
            parse(&format!(
                "[api]\nauth_file = {:?}\n",
                path.display().to_string()
            ))
        };
        let config = load(serde_json::json!([
            {"username": "admin", "password": hash, "groups": ["Administrators"]},
            {"username": "ops", "password": hash, "roles": {"default": "tunnels"}},
        ]))
        .expect("valid");
        let users = config.api.auth_file.as_ref().expect("users").users();
        assert!(users[0].is_admin && users[0].roles.is_empty());
        assert!(!users[1].is_admin);
        assert_eq!(users[1].roles.get("default"), Some(&Role::Tunnels));
        assert!(!format!("{config:?}").contains(&hash), "hashes never print");

        for (users, reason) in [
            (
                serde_json::json!([{"username": "a", "password": "plain"}]),
                "bcrypt",
            ),
            (
                serde_json::json!([{"username": "a", "password": hash, "groups": ["Users"]}]),
                "group \"Users\"",
            ),
            (
                serde_json::json!([{"username": "a", "password": hash, "roles": {"default": "root"}}]),
                "role \"root\"",
            ),
            (
                serde_json::json!([{"username": "a:b", "password": hash}]),
                "user name",
            ),
            (
                serde_json::json!([{"username": "a", "password": hash}, {"username": "a", "password": hash}]),
                "listed twice",
            ),
            (serde_json::json!({"a": "b"}), "JSON array"),
        ] {
            let err = load(users.clone()).expect_err("refused");
            assert_eq!(err.key, "api.auth_file", "{users}");
            assert!(err.reason.contains(reason), "{users}: {}", err.reason);
        }
    }

    #[test]
    fn auth_file_takes_plain_and_hashed_passwords() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("auth.json");
        let hash = bcrypt::hash("s3cret", 4).expect("bcrypt");
        std::fs::write(
            &path,
            serde_json::json!({
                "a": "1234",
                "b": hash,
                "c": {"password": "5678", "project": "berlin-office"}
            })
            .to_string(),
        )
        .expect("write");
        let config = parse(&format!(
            "[server]\nauth_file = {:?}\n",
            path.display().to_string()
        ))
        .expect("valid");
        let AgentAuth::File { entries, .. } = &config.server.agent_auth else {
            panic!("expected auth_file");
        };
        assert!(entries["a"].secret.verify("1234"));
        assert!(entries["b"].secret.verify("s3cret"));
        assert_eq!(entries["a"].project, "default");
        assert!(entries["c"].secret.verify("5678"));
        assert_eq!(entries["c"].project, "berlin-office");

        std::fs::write(&path, r#"{"d": {"password": "x", "project": "Bad Key"}}"#).expect("write");
        let err = parse(&format!(
            "[server]\nauth_file = {:?}\n",
            path.display().to_string()
        ))
        .expect_err("bad project key");
        assert!(err.reason.contains("Bad Key"), "{err}");

        std::fs::write(&path, "[1,2]").expect("write");
        let err = parse(&format!(
            "[server]\nauth_file = {:?}\n",
            path.display().to_string()
        ))
        .expect_err("bad file");
        assert_eq!(err.key, "server.auth_file");
        let both = format!(
            "[server]\nauth = \"a:b\"\nauth_file = {:?}\n",
            path.display().to_string()
        );
        assert!(parse(&both).is_err());
    }

    #[test]
    fn durations_like_go() {
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn deprecated_rport_aliases_still_work() {
        let config =
            parse("[server]\nkeep_lost_clients = \"10m\"\ncleanup_clients_interval = \"5s\"\n")
                .expect("valid");
        assert_eq!(
            config.server.keep_disconnected_clients,
            Duration::from_secs(600)
        );
        assert_eq!(
            config.server.purge_disconnected_clients_interval,
            Duration::from_secs(5)
        );
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rportd.example.conf");
        let config = ServerConfig::load(&path).expect("rportd.example.conf must load");
        assert_eq!(config.server.address, DEFAULT_AGENT_ADDRESS);
        let text = std::fs::read_to_string(&path).expect("read");
        let uncommented: String = text
            .lines()
            .map(|line| {
                line.trim_start()
                    .strip_prefix('#')
                    .filter(|rest| {
                        rest.starts_with(|c: char| c.is_ascii_lowercase()) && rest.contains(" = ")
                    })
                    .unwrap_or(line)
            })
            .map(|line| format!("{line}\n"))
            .collect();
        // auth and auth_file are alternatives; the example shows both.
        let uncommented = uncommented.replace("auth_file = ", "#auth_file = ");
        ServerConfig::from_toml_str(&uncommented, "rportd.example.conf (uncommented)")
            .expect("every documented key must be a real key with a valid example value");
    }
}
