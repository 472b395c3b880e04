//! Turns the raw file into typed sections, refusing anything unusable with the file, the
//! key and the reason.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rport_protocol::ip_rules::IpNet;

use super::port_ranges::PortRanges;
use super::raw::*;
use super::user_file::UserFile;
use super::*;
use crate::domain::secrets::Secret;
use rport_protocol::duration::parse_duration;

const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];

pub(super) struct Validator<'a> {
    pub(super) file: &'a str,
}

impl Validator<'_> {
    pub(super) fn error(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    pub(super) fn validate(&self, raw: RawConfig) -> Result<ServerConfig, ConfigError> {
        Ok(ServerConfig {
            server: self.server(raw.server)?,
            api: self.api(raw.api)?,
            logging: self.logging(raw.logging)?,
            database: self.database(raw.database)?,
            cluster: self.cluster(raw.cluster)?,
            metrics: self.metrics(raw.metrics)?,
        })
    }

    fn metrics(&self, raw: RawMetrics) -> Result<MetricsSection, ConfigError> {
        let address = match raw.address.filter(|a| !a.trim().is_empty()) {
            None => None,
            Some(address) => {
                self.check_address("metrics.address", &address)?;
                Some(address)
            }
        };
        Ok(MetricsSection { address })
    }

    fn cluster(&self, raw: RawCluster) -> Result<ClusterSection, ConfigError> {
        let key = "cluster.peer_address";
        let peer_address = match raw.peer_address.filter(|a| !a.trim().is_empty()) {
            None => None,
            Some(address) => {
                self.check_address(key, &address)?;
                if address.ends_with(":0") {
                    return Err(self.error(
                        key,
                        format!(
                            "{address:?}: port 0 cannot be given to the other nodes; choose a port"
                        ),
                    ));
                }
                Some(address)
            }
        };
        Ok(ClusterSection { peer_address })
    }

    fn database(&self, raw: RawDatabase) -> Result<rport_store::DatabaseSettings, ConfigError> {
        use rport_store::{DatabaseSettings, PostgresUrl};
        let postgres_keys = [
            ("database.db_host", raw.db_host.is_some()),
            ("database.db_user", raw.db_user.is_some()),
            ("database.db_password", raw.db_password.is_some()),
        ];
        let db_type = raw.db_type.as_deref();
        if let Some(url) = raw.url {
            if let Some(other) = db_type.filter(|t| *t != "postgres") {
                return Err(self.error(
                    "database.db_type",
                    format!("{other:?} does not go with `url`, a PostgreSQL database; remove one"),
                ));
            }
            let name = ("database.db_name", raw.db_name.is_some());
            let mut parts = postgres_keys.iter().chain([&name]);
            if let Some((key, _)) = parts.find(|(_, set)| *set) {
                return Err(self.error(
                    key,
                    "set either `url` or db_host, db_user, db_password and db_name, not both",
                ));
            }
            let url =
                PostgresUrl::parse(&url).map_err(|reason| self.error("database.url", reason))?;
            return Ok(DatabaseSettings::Postgres { url });
        }
        match db_type.unwrap_or("sqlite") {
            "sqlite" => {
                if let Some((key, _)) = postgres_keys.iter().find(|(_, set)| *set) {
                    return Err(self.error(key, "only PostgreSQL (db_type = \"postgres\") uses it"));
                }
                let path = raw.db_name.filter(|path| !path.as_os_str().is_empty());
                Ok(DatabaseSettings::Sqlite { path })
            }
            "postgres" => {
                let Some(user) = raw.db_user.filter(|user| !user.is_empty()) else {
                    return Err(self.error(
                        "database.db_user",
                        "PostgreSQL needs the user rportd connects as (or set `url`)",
                    ));
                };
                let database = raw.db_name.as_deref().and_then(std::path::Path::to_str);
                let Some(database) = database.filter(|name| !name.is_empty()) else {
                    return Err(self.error(
                        "database.db_name",
                        "PostgreSQL needs the name of rportd's database (or set `url`)",
                    ));
                };
                let host = raw.db_host.as_deref().unwrap_or("localhost");
                let url =
                    PostgresUrl::from_parts(host, &user, raw.db_password.as_deref(), database)
                        .map_err(|reason| self.error("database.db_host", reason))?;
                Ok(DatabaseSettings::Postgres { url })
            }
            other => Err(self.error(
                "database.db_type",
                format!(
                    "{other:?} is not a database rportd can keep its state in; use one of: {}",
                    DatabaseSettings::DB_TYPES.join(", ")
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
                if user.len() > crate::domain::names::MAX_USERNAME_LEN {
                    return Err(self.error(
                        "api.auth",
                        format!(
                            "the user name may be at most {} bytes",
                            crate::domain::names::MAX_USERNAME_LEN
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
        let doc_root = match raw.doc_root {
            None => None,
            Some(dir) if address.is_none() => {
                return Err(self.error(
                    "api.doc_root",
                    format!(
                        "{} would be served by the API, which is off: set [api] address",
                        dir.display()
                    ),
                ));
            }
            Some(dir) => Some(self.doc_root(&dir)?),
        };
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
                    crate::net::http_serve::HEADER_TIMEOUT,
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
            doc_root,
            totp_enabled: raw.totp_enabled.unwrap_or(false),
            totp_login_session_ttl: {
                let ttl = self.duration(
                    "api.totp_login_session_ttl",
                    raw.totp_login_session_ttl,
                    Duration::from_secs(600),
                )?;
                if !(Duration::from_secs(1)..=Duration::from_secs(24 * 3600)).contains(&ttl) {
                    return Err(
                        self.error("api.totp_login_session_ttl", "must be between 1s and 24h")
                    );
                }
                ttl
            },
            totp_account_name: match raw.totp_account_name {
                None => "RPort".to_owned(),
                Some(name) if name.trim().is_empty() || name.len() > 64 => {
                    return Err(self.error(
                        "api.totp_account_name",
                        "must be 1 to 64 characters, not blank",
                    ));
                }
                Some(name) => name,
            },
        })
    }

    /// `[api] doc_root`: an existing directory, made canonical.
    fn doc_root(&self, dir: &std::path::Path) -> Result<PathBuf, ConfigError> {
        let shown = dir.display();
        let canonical = std::fs::canonicalize(dir)
            .map_err(|err| self.error("api.doc_root", format!("{shown}: {err}")))?;
        if !canonical.is_dir() {
            return Err(self.error("api.doc_root", format!("{shown} is not a directory")));
        }
        Ok(canonical)
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
    pub(super) fn check_credential_id(&self, key: &str, id: &str) -> Result<(), ConfigError> {
        let max = crate::domain::bounded::MAX_CREDENTIAL_ID_LEN;
        if id.len() > max {
            return Err(self.error(
                key,
                format!(
                    "credential id {:?} is {} bytes; it may be at most {max}",
                    crate::domain::bounded::bounded(id),
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
