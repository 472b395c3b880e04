//! The configuration file as TOML gives it: serde structs with RPort's key names, before
//! any check, and the reading of the file that names the line of a syntax error.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) api: RawApi,
    #[serde(default)]
    pub(super) logging: RawLogging,
    #[serde(default)]
    pub(super) database: RawDatabase,
    #[serde(default)]
    pub(super) cluster: RawCluster,
    #[serde(default)]
    pub(super) metrics: RawMetrics,
}

/// `[metrics]`: where Prometheus may scrape without authentication.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) address: Option<String>,
}

/// `[cluster]`: what one node of several sharing a database needs besides it.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub(super) peer_address: Option<String>,
}

/// `url` (PostgreSQL), or RPort's key names: `db_type`, `db_name` (for SQLite, the file),
/// and for PostgreSQL `db_host`, `db_user`, `db_password`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    pub(super) url: Option<String>,
    pub(super) db_type: Option<String>,
    pub(super) db_name: Option<PathBuf>,
    pub(super) db_host: Option<String>,
    pub(super) db_user: Option<String>,
    pub(super) db_password: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) address: Option<String>,
    pub(super) url: Option<OneOrMany>,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) auth: Option<String>,
    pub(super) auth_file: Option<PathBuf>,
    pub(super) used_ports: Option<Vec<PortEntry>>,
    pub(super) excluded_ports: Option<Vec<PortEntry>>,
    #[serde(alias = "cleanup_lost_clients")]
    pub(super) purge_disconnected_clients: Option<bool>,
    #[serde(alias = "keep_lost_clients")]
    pub(super) keep_disconnected_clients: Option<DurationValue>,
    #[serde(alias = "cleanup_clients_interval")]
    pub(super) purge_disconnected_clients_interval: Option<DurationValue>,
    #[serde(alias = "max_concurrent_ssh_handshakes")]
    pub(super) max_concurrent_handshakes: Option<usize>,
    pub(super) handshake_timeout: Option<DurationValue>,
    pub(super) max_connections_per_tunnel: Option<u32>,
    pub(super) max_connections_per_source: Option<u32>,
    pub(super) max_connections_per_agent: Option<u32>,
    pub(super) max_connections_total: Option<u32>,
    pub(super) tunnel_grace_period: Option<DurationValue>,
    pub(super) check_port_timeout: Option<DurationValue>,
    pub(super) tunnel_host: Option<String>,
    pub(super) max_failed_login: Option<u32>,
    pub(super) ban_time: Option<u64>,
    pub(super) tunnel_proxy_cert_file: Option<PathBuf>,
    pub(super) tunnel_proxy_key_file: Option<PathBuf>,
    pub(super) tunnel_proxy_address: Option<String>,
    pub(super) cert_file: Option<PathBuf>,
    pub(super) key_file: Option<PathBuf>,
    pub(super) allow_client_remotes: Option<bool>,
    pub(super) auth_multiuse_creds: Option<bool>,
    pub(super) equate_clientauthid_clientid: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
    pub(super) address: Option<String>,
    pub(super) auth: Option<String>,
    pub(super) auth_file: Option<PathBuf>,
    pub(super) jwt_secret: Option<String>,
    pub(super) trusted_proxies: Option<Vec<String>>,
    pub(super) max_failed_login: Option<u32>,
    pub(super) ban_time: Option<u64>,
    pub(super) audit_log_retention: Option<DurationValue>,
    pub(super) max_token_lifetime: Option<u64>,
    pub(super) cert_file: Option<PathBuf>,
    pub(super) key_file: Option<PathBuf>,
    pub(super) read_header_timeout: Option<DurationValue>,
    pub(super) doc_root: Option<PathBuf>,
    pub(super) totp_enabled: Option<bool>,
    pub(super) totp_login_session_ttl: Option<DurationValue>,
    pub(super) totp_account_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogging {
    pub(super) log_level: Option<String>,
    pub(super) log_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum PortEntry {
    Number(i64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum DurationValue {
    Number(i64),
    Text(String),
}

pub(super) fn parse_toml(text: &str, file: &str) -> Result<RawConfig, ConfigError> {
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

pub(super) fn syntax_error(file: &str, text: &str, err: &toml::de::Error) -> ConfigError {
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

pub(super) fn with_line(
    text: &str,
    span: Option<std::ops::Range<usize>>,
    reason: String,
) -> String {
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
