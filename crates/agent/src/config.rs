//! rport's settings: built-in defaults, then the TOML file, then the environment
//! (`RPORT_AUTH`, `RPORT_FINGERPRINT`), then flags. Errors say where the bad value came from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rport_protocol::duration::parse_duration;
use rport_protocol::ip_rules::AllowList;
use rport_protocol::tunnel_spec;
use rport_protocol::{Fingerprint, Password};
use serde::Deserialize;

use crate::cli::AgentArgs;

pub const DEFAULT_DATA_DIR: &str = "./rport-data";
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_RETRY_INTERVAL: Duration = Duration::from_secs(300);
pub const DEFAULT_SERVER_SWITCHBACK_INTERVAL: Duration = Duration::from_secs(120);
/// Below this, checking for the main server would be a busy loop of connects.
const MIN_SERVER_SWITCHBACK_INTERVAL: Duration = Duration::from_secs(1);
const KEEP_ALIVE_RANGE: (Duration, Duration) = (Duration::from_secs(2), Duration::from_secs(3600));
/// Port assumed when the server is given as a bare host.
const DEFAULT_SERVER_PORT: u16 = 8080;
/// File in the data dir that keeps a generated client id.
const CLIENT_ID_FILE: &str = "client-id";

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub server: ServerAddress,
    /// Other servers of the same cluster, tried in this order after `server`.
    pub fallback_servers: Vec<ServerAddress>,
    /// While on a fallback, how often to check whether `server` answers again.
    pub server_switchback_interval: Duration,
    /// `None`: use (or create) the id kept in `data_dir`.
    pub id: Option<String>,
    /// Empty: report the hostname.
    pub name: String,
    pub tags: Vec<String>,
    /// Key/value metadata reported with the facts (`[client] labels`).
    pub labels: BTreeMap<String, String>,
    /// `[client] attributes_file_path`: a JSON file `{"tags": [...], "labels": {...}}`
    /// whose tags and labels, when it reads, replace the configured ones (as in RPort).
    pub attributes_file: Option<PathBuf>,
    pub auth: Credential,
    /// `None`: trust the server's key on first use and pin it in `data_dir`, unless
    /// `ca` says to check the server's certificate chain instead.
    pub fingerprint: Option<Fingerprint>,
    pub ca: Option<CaSource>,
    pub data_dir: PathBuf,
    pub keep_alive: Duration,
    pub max_retry_interval: Duration,
    pub log_level: String,
    pub log_file: Option<PathBuf>,
    /// Tunnels the server opens whenever this agent connects, as written.
    pub remotes: Vec<String>,
    /// Targets the server may have this agent connect to; empty = anything reachable.
    pub tunnel_allowed: AllowList,
}

/// Whose CA certificates vouch for the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaSource {
    /// `[client] ca_file`: CA certificates in a PEM file.
    File(PathBuf),
    /// `[client] system_roots`: the operating system's CA certificates.
    System,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddress {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone)]
pub struct Credential {
    pub id: String,
    pub password: Password,
}

/// A setting that cannot be used, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {reason}")]
pub struct AgentConfigError {
    /// `config FILE: key `client.auth``, `flag --auth` or `environment RPORT_AUTH`.
    pub origin: String,
    pub reason: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    client: RawClient,
    #[serde(default)]
    connection: RawConnection,
    #[serde(default)]
    logging: RawLogging,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawClient {
    server: Option<String>,
    fallback_servers: Option<Vec<String>>,
    server_switchback_interval: Option<String>,
    id: Option<String>,
    name: Option<String>,
    tags: Option<Vec<String>>,
    labels: Option<BTreeMap<String, String>>,
    attributes_file_path: Option<PathBuf>,
    auth: Option<String>,
    fingerprint: Option<String>,
    ca_file: Option<PathBuf>,
    system_roots: Option<bool>,
    data_dir: Option<PathBuf>,
    remotes: Option<Vec<String>>,
    tunnel_allowed: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConnection {
    keep_alive: Option<String>,
    max_retry_interval: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLogging {
    log_level: Option<String>,
    log_file: Option<PathBuf>,
}

/// A value together with where it came from, for error messages.
struct Sourced<T> {
    value: T,
    origin: String,
}

/// Later layers win: file, then environment, then flags.
fn pick<T>(layers: [Option<Sourced<T>>; 3]) -> Option<Sourced<T>> {
    layers.into_iter().flatten().last()
}

fn from_file<T>(file: &Option<String>, key: &str, value: Option<T>) -> Option<Sourced<T>> {
    let file = file.as_deref()?;
    value.map(|value| Sourced {
        value,
        origin: format!("config {file}: key `{key}`"),
    })
}

fn from_env(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<Sourced<String>> {
    env(name).filter(|v| !v.is_empty()).map(|value| Sourced {
        value,
        origin: format!("environment {name}"),
    })
}

fn from_flag<T>(flag: &str, value: Option<T>) -> Option<Sourced<T>> {
    value.map(|value| Sourced {
        value,
        origin: format!("flag --{flag}"),
    })
}

fn invalid(origin: &str, reason: impl Into<String>) -> AgentConfigError {
    AgentConfigError {
        origin: origin.to_owned(),
        reason: reason.into(),
    }
}

/// Builds the configuration from flags, the file they name and the environment.
pub fn load(
    args: &AgentArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AgentConfig, AgentConfigError> {
    let (raw, file) = match &args.config {
        None => (RawFile::default(), None),
        Some(path) => (read_file(path)?, Some(path.display().to_string())),
    };
    let RawFile {
        client,
        connection,
        logging,
    } = raw;

    let server = pick([
        from_file(&file, "client.server", client.server),
        None,
        from_flag("server", args.server.clone()),
    ])
    .ok_or_else(|| {
        invalid(
            "rport",
            "no server given: pass HOST:PORT or set [client] server in the config file",
        )
    })?;
    let server = parse_server(&server.value).map_err(|reason| invalid(&server.origin, reason))?;
    let flag_fallbacks = (!args.fallback_servers.is_empty()).then(|| args.fallback_servers.clone());
    let fallback_servers = match pick([
        from_file(&file, "client.fallback_servers", client.fallback_servers),
        None,
        from_flag("fallback-server", flag_fallbacks),
    ]) {
        None => Vec::new(),
        Some(list) => {
            parse_fallbacks(&server, &list.value).map_err(|reason| invalid(&list.origin, reason))?
        }
    };

    let auth = pick([
        from_file(&file, "client.auth", client.auth),
        from_env(env, "RPORT_AUTH"),
        from_flag("auth", args.auth.clone()),
    ])
    .ok_or_else(|| {
        invalid(
            "rport",
            "no credential given: pass --auth ID:PASSWORD, set RPORT_AUTH or [client] auth",
        )
    })?;
    let auth = parse_credential(&auth.value).map_err(|reason| invalid(&auth.origin, reason))?;

    let fingerprint = match pick([
        from_file(&file, "client.fingerprint", client.fingerprint),
        from_env(env, "RPORT_FINGERPRINT"),
        from_flag("fingerprint", args.fingerprint.clone()),
    ]) {
        None => None,
        Some(fp) if fp.value.trim().is_empty() => None,
        Some(fp) => Some(fp.value.trim().parse::<Fingerprint>().map_err(|err| {
            invalid(
                &fp.origin,
                format!(
                    "{err}; copy it exactly as rportd prints it or from rportd-fingerprint.txt"
                ),
            )
        })?),
    };

    let ca_file = pick([
        from_file(&file, "client.ca_file", client.ca_file),
        from_env(env, "RPORT_CA_FILE").map(|v| Sourced {
            value: PathBuf::from(v.value),
            origin: v.origin,
        }),
        from_flag("ca-file", args.ca_file.clone()),
    ]);
    let system_roots = args.system_roots || client.system_roots.unwrap_or(false);
    let ca = match (ca_file, system_roots) {
        (Some(file), false) => Some(CaSource::File(file.value)),
        (None, true) => Some(CaSource::System),
        (None, false) => None,
        (Some(file), true) => {
            return Err(invalid(
                &file.origin,
                "set either ca_file or system_roots, not both",
            ));
        }
    };
    if ca.is_some() && fingerprint.is_some() {
        return Err(invalid(
            "client.fingerprint",
            "set either a fingerprint (pin the server's key) or ca_file / system_roots (check its certificate chain), not both",
        ));
    }

    let id = match pick([
        from_file(&file, "client.id", client.id),
        None,
        from_flag("id", args.id.clone()),
    ]) {
        None => None,
        Some(id) => Some(check_id(&id.value).map_err(|reason| invalid(&id.origin, reason))?),
    };

    let flag_tags = (!args.tags.is_empty()).then(|| args.tags.clone());
    let tags = pick([
        from_file(&file, "client.tags", client.tags),
        None,
        from_flag("tag", flag_tags),
    ])
    .map(|t| t.value)
    .unwrap_or_default();

    let labels = client.labels.unwrap_or_default();
    check_labels(&labels)
        .map_err(|reason| invalid(&config_origin(&file, "client.labels"), reason))?;

    let duration =
        |layer: Option<Sourced<String>>, default: Duration| -> Result<Duration, AgentConfigError> {
            match layer {
                None => Ok(default),
                Some(d) => parse_duration(&d.value).ok_or_else(|| {
                    invalid(
                        &d.origin,
                        format!(
                            "{:?} is not a duration such as \"30s\", \"5m\" or \"1h\"",
                            d.value
                        ),
                    )
                }),
            }
        };
    let keep_alive_layer = pick([
        from_file(&file, "connection.keep_alive", connection.keep_alive),
        None,
        from_flag("keep-alive", args.keep_alive.clone()),
    ]);
    let keep_alive_origin = keep_alive_layer
        .as_ref()
        .map(|l| l.origin.clone())
        .unwrap_or_default();
    let keep_alive = duration(keep_alive_layer, DEFAULT_KEEP_ALIVE)?;
    if keep_alive < KEEP_ALIVE_RANGE.0 || keep_alive > KEEP_ALIVE_RANGE.1 {
        return Err(invalid(
            &keep_alive_origin,
            "keep_alive must be between 2s and 1h",
        ));
    }
    let max_retry_interval = duration(
        pick([
            from_file(
                &file,
                "connection.max_retry_interval",
                connection.max_retry_interval,
            ),
            None,
            from_flag("max-retry-interval", args.max_retry_interval.clone()),
        ]),
        DEFAULT_MAX_RETRY_INTERVAL,
    )?;

    let switchback_layer = pick([
        from_file(
            &file,
            "client.server_switchback_interval",
            client.server_switchback_interval,
        ),
        None,
        from_flag(
            "server-switchback-interval",
            args.server_switchback_interval.clone(),
        ),
    ]);
    let switchback_origin = switchback_layer
        .as_ref()
        .map(|l| l.origin.clone())
        .unwrap_or_default();
    let server_switchback_interval =
        duration(switchback_layer, DEFAULT_SERVER_SWITCHBACK_INTERVAL)?;
    if server_switchback_interval < MIN_SERVER_SWITCHBACK_INTERVAL {
        return Err(invalid(
            &switchback_origin,
            "server_switchback_interval must be at least 1s",
        ));
    }

    let log_level = pick([
        from_file(&file, "logging.log_level", logging.log_level),
        None,
        from_flag("log-level", args.log_level.clone()),
    ]);
    let log_level = match log_level {
        None => "info".to_owned(),
        Some(level) => {
            let value = level.value.to_ascii_lowercase();
            if !["error", "warn", "info", "debug", "trace"].contains(&value.as_str()) {
                return Err(invalid(
                    &level.origin,
                    format!("{value:?} is not one of error, warn, info, debug, trace"),
                ));
            }
            value
        }
    };

    let tunnel_allowed = match client.tunnel_allowed {
        None => AllowList::default(),
        Some(entries) => AllowList::parse(&entries).map_err(|err| {
            invalid(
                &config_origin(&file, "client.tunnel_allowed"),
                err.to_string(),
            )
        })?,
    };
    let flag_remotes = (!args.remotes.is_empty()).then(|| args.remotes.clone());
    let remotes = pick([
        from_file(&file, "client.remotes", client.remotes),
        None,
        from_flag("remote (positional)", flag_remotes),
    ]);
    let (remotes, remotes_origin) =
        remotes.map_or((Vec::new(), String::new()), |r| (r.value, r.origin));
    for remote in &remotes {
        check_remote(remote, &tunnel_allowed).map_err(|reason| invalid(&remotes_origin, reason))?;
    }

    Ok(AgentConfig {
        server,
        fallback_servers,
        server_switchback_interval,
        id,
        name: pick([
            from_file(&file, "client.name", client.name),
            None,
            from_flag("name", args.name.clone()),
        ])
        .map(|n| n.value)
        .unwrap_or_default(),
        tags,
        labels,
        attributes_file: client.attributes_file_path,
        auth,
        fingerprint,
        ca,
        data_dir: args
            .data_dir
            .clone()
            .or(client.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        keep_alive,
        max_retry_interval,
        log_level,
        log_file: args.log_file.clone().or(logging.log_file),
        remotes,
        tunnel_allowed,
    })
}

fn config_origin(file: &Option<String>, key: &str) -> String {
    match file {
        Some(file) => format!("config {file}: key `{key}`"),
        None => format!("key `{key}`"),
    }
}

/// A remote must parse, and one whose target is an address must be allowed by
/// `tunnel_allowed` (a name is checked when it is resolved, at connect time).
fn check_remote(remote: &str, allowed: &AllowList) -> Result<(), String> {
    let spec = tunnel_spec::parse_tunnel_spec(remote)
        .map_err(|err| format!("remote {remote:?}: {err}"))?;
    if let Ok(ip) = spec.remote.host.parse::<std::net::IpAddr>()
        && !allowed.allows(std::net::SocketAddr::new(ip, spec.remote.port))
    {
        return Err(format!(
            "remote {remote:?}: target {} is not allowed by client.tunnel_allowed",
            spec.remote
        ));
    }
    Ok(())
}

fn read_file(path: &Path) -> Result<RawFile, AgentConfigError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|err| invalid(&format!("config {shown}"), format!("cannot read it: {err}")))?;
    let deserializer = toml::de::Deserializer::parse(&text).map_err(|err| {
        invalid(
            &format!("config {shown}"),
            format!("not valid TOML: {}", err.message().trim()),
        )
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let key = err.path().to_string();
        invalid(
            &format!("config {shown}: key `{key}`"),
            err.into_inner().message().to_owned(),
        )
    })
}

/// `host:port`, `[v6]:port`, a bare host, or a URL (`http://host:port/path`).
pub fn parse_server(text: &str) -> Result<ServerAddress, String> {
    let text = text.trim();
    let (scheme, rest) = match text.split_once("://") {
        Some((scheme, rest)) => (Some(scheme.to_ascii_lowercase()), rest),
        None => (None, text),
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let default_port = match scheme.as_deref() {
        None => DEFAULT_SERVER_PORT,
        Some("http" | "ws") => 80,
        Some("https" | "wss") => 443,
        Some(other) => return Err(format!("unsupported scheme {other:?} in server {text:?}")),
    };
    let bad = || format!("{text:?} is not HOST:PORT or a URL like http://rport.example.com:8080");
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().map_err(|_| bad())?,
            None if after.is_empty() => default_port,
            None => return Err(bad()),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().map_err(|_| bad())?),
            None => (authority, default_port),
        }
    };
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok(ServerAddress {
        host: host.to_owned(),
        port,
    })
}

/// Each entry in the grammar of the main server's address. An entry repeating the main
/// server or an earlier one is refused: the agent would leave a server for itself.
fn parse_fallbacks(main: &ServerAddress, list: &[String]) -> Result<Vec<ServerAddress>, String> {
    let mut parsed: Vec<ServerAddress> = Vec::with_capacity(list.len());
    for entry in list {
        let address = parse_server(entry)?;
        if address == *main {
            return Err(format!(
                "fallback server {entry:?} is the main server; list only the other servers"
            ));
        }
        if parsed.contains(&address) {
            return Err(format!("fallback server {entry:?} is listed twice"));
        }
        parsed.push(address);
    }
    Ok(parsed)
}

/// Labels within what a server keeps of them, so that none is cut or dropped silently.
fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    use rport_protocol::control::{MAX_FACT_LEN, MAX_LABELS};
    if labels.len() > MAX_LABELS {
        return Err(format!("at most {MAX_LABELS} labels, got {}", labels.len()));
    }
    match labels.iter().find(|(key, value)| {
        key.is_empty() || key.len() > MAX_FACT_LEN || value.len() > MAX_FACT_LEN
    }) {
        Some((key, _)) => Err(format!(
            "label {key:?}: keys must be 1 to {MAX_FACT_LEN} bytes and values at most {MAX_FACT_LEN}"
        )),
        None => Ok(()),
    }
}

/// The password is never repeated in the reason.
fn parse_credential(text: &str) -> Result<Credential, String> {
    match text.split_once(':') {
        Some((id, password)) if !id.is_empty() && !password.is_empty() => Ok(Credential {
            id: id.to_owned(),
            password: Password::new(password),
        }),
        _ => Err("must have the form ID:PASSWORD with both parts non-empty".to_owned()),
    }
}

fn check_id(id: &str) -> Result<String, String> {
    let id = id.trim();
    if id.is_empty() || id.len() > 128 {
        return Err("the client id must be 1 to 128 characters".to_owned());
    }
    if id.chars().any(|c| c.is_control() || c == '/') {
        return Err(format!(
            "the client id {id:?} must not contain '/' or control characters"
        ));
    }
    Ok(id.to_owned())
}

/// The id kept in `data_dir`, created (random, once) when there is none: copies of a disk
/// image made before the first start each get their own.
pub fn load_or_create_client_id(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join(CLIENT_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            return Err(std::io::Error::new(
                err.kind(),
                format!("reading {}: {err}", path.display()),
            ));
        }
    }
    std::fs::create_dir_all(data_dir).map_err(|err| {
        std::io::Error::new(
            err.kind(),
            format!("creating {}: {err}", data_dir.display()),
        )
    })?;
    let id = uuid::Uuid::new_v4().to_string();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{id}\n"))?;
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "3e:7b:b2:45:86:b3:b4:b0:b3:51:86:4c:3d:a8:04:6c:09:d0:1b:c4:46:64:ae:91:7c:d3:0a:0d:be:46:84:1a";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn args(list: &[&str]) -> AgentArgs {
        use clap::Parser;
        AgentArgs::parse_from(std::iter::once("rport").chain(list.iter().copied()))
    }

    #[test]
    fn the_seed_command_line_works() {
        let a = args(&[
            "--id",
            "my-client-1",
            "--fingerprint",
            FP,
            "--tag",
            "Linux",
            "--tag",
            "Office Berlin",
            "--name",
            "My Test VM",
            "--auth",
            "user1:1234",
            "rport.example.com:8080",
        ]);
        let config = load(&a, &no_env).expect("valid");
        assert_eq!(config.server.to_string(), "rport.example.com:8080");
        assert_eq!(config.id.as_deref(), Some("my-client-1"));
        assert_eq!(config.tags, vec!["Linux", "Office Berlin"]);
        assert_eq!(config.auth.id, "user1");
        assert_eq!(
            config.fingerprint.map(|f| f.to_string()).as_deref(),
            Some(FP)
        );
        assert!(!format!("{config:?}").contains("1234"));
    }

    #[test]
    fn flags_beat_environment_beats_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("rport.conf");
        std::fs::write(
            &file,
            "[client]\nserver = \"http://file.example:9000\"\nauth = \"file:pw\"\nid = \"from-file\"\ntags = [\"a\"]\n\
             [connection]\nkeep_alive = \"30s\"\nmax_retry_interval = \"1m\"\n",
        )
        .expect("write");
        let path = file.display().to_string();
        let from_file = load(&args(&["-c", &path]), &no_env).expect("valid");
        assert_eq!(from_file.server.to_string(), "file.example:9000");
        assert_eq!(from_file.auth.id, "file");
        assert_eq!(from_file.keep_alive, Duration::from_secs(30));
        assert_eq!(from_file.max_retry_interval, Duration::from_secs(60));

        let env = |name: &str| (name == "RPORT_AUTH").then(|| "env:pw".to_owned());
        assert_eq!(
            load(&args(&["-c", &path]), &env).expect("valid").auth.id,
            "env"
        );
        let flagged = load(
            &args(&["-c", &path, "--auth", "flag:pw", "--tag", "b", "--id", "x"]),
            &env,
        )
        .expect("valid");
        assert_eq!(flagged.auth.id, "flag");
        assert_eq!(flagged.tags, vec!["b"]);
        assert_eq!(flagged.id.as_deref(), Some("x"));
    }

    #[test]
    fn labels_and_the_attributes_file_come_from_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("rport.conf");
        std::fs::write(
            &file,
            "[client]\nserver = \"h:1\"\nauth = \"a:b\"\nattributes_file_path = \"/etc/rport/attributes.json\"\n\
             [client.labels]\ncity = \"Berlin\"\n\"rack id\" = \"R7\"\n",
        )
        .expect("write");
        let path = file.display().to_string();
        let config = load(&args(&["-c", &path]), &no_env).expect("valid");
        assert_eq!(
            config.labels.get("city").map(String::as_str),
            Some("Berlin")
        );
        assert_eq!(config.labels.get("rack id").map(String::as_str), Some("R7"));
        assert_eq!(
            config.attributes_file.as_deref(),
            Some(Path::new("/etc/rport/attributes.json"))
        );

        std::fs::write(
            &file,
            format!(
                "[client]\nserver = \"h:1\"\nauth = \"a:b\"\nlabels = {{ k = \"{}\" }}\n",
                "v".repeat(300)
            ),
        )
        .expect("write");
        let err = load(&args(&["-c", &path]), &no_env).expect_err("label too long");
        assert!(err.origin.ends_with("key `client.labels`"), "{err}");
    }

    #[test]
    fn errors_say_where_the_value_came_from() {
        let err = load(&args(&["--auth", "nopassword", "h:1"]), &no_env).expect_err("bad auth");
        assert_eq!(err.origin, "flag --auth");
        let env = |name: &str| (name == "RPORT_FINGERPRINT").then(|| "ab:cd".to_owned());
        let err = load(&args(&["--auth", "a:b", "h:1"]), &env).expect_err("bad fp");
        assert_eq!(err.origin, "environment RPORT_FINGERPRINT");
        let err = load(&args(&["--auth", "a:b"]), &no_env).expect_err("no server");
        assert!(err.reason.contains("no server"), "{err}");

        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("rport.conf");
        std::fs::write(&file, "[client]\nsever = \"x\"\n").expect("write");
        let err =
            load(&args(&["-c", &file.display().to_string()]), &no_env).expect_err("unknown key");
        assert!(err.origin.ends_with("key `client.sever`"), "{err}");
    }

    fn listed(config: &AgentConfig) -> Vec<String> {
        config
            .fallback_servers
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn fallback_servers_come_from_the_file_or_the_flags() {
        let plain = load(&args(&["--auth", "a:b", "main:1"]), &no_env).expect("valid");
        assert!(plain.fallback_servers.is_empty());
        assert_eq!(
            plain.server_switchback_interval,
            Duration::from_secs(120),
            "RPort's default"
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("rport.conf");
        std::fs::write(
            &file,
            "[client]\nserver = \"main:1\"\nauth = \"a:b\"\n\
             fallback_servers = [\"second:2\", \"http://third.example:3/\"]\n\
             server_switchback_interval = \"30s\"\n",
        )
        .expect("write");
        let path = file.display().to_string();
        let from_file = load(&args(&["-c", &path]), &no_env).expect("valid");
        assert_eq!(listed(&from_file), ["second:2", "third.example:3"]);
        assert_eq!(
            from_file.server_switchback_interval,
            Duration::from_secs(30)
        );

        let flagged = load(
            &args(&[
                "-c",
                &path,
                "--fallback-server",
                "[::1]:4",
                "--fallback-server",
                "fifth:5",
                "--server-switchback-interval",
                "2s",
            ]),
            &no_env,
        )
        .expect("valid");
        assert_eq!(
            listed(&flagged),
            ["[::1]:4", "fifth:5"],
            "flags replace the file's list"
        );
        assert_eq!(flagged.server_switchback_interval, Duration::from_secs(2));
    }

    #[test]
    fn bad_fallback_settings_name_the_file_and_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("rport.conf");
        let path = file.display().to_string();
        let load_with = |client: &str| {
            std::fs::write(
                &file,
                format!("[client]\nserver = \"main:1\"\nauth = \"a:b\"\n{client}\n"),
            )
            .expect("write");
            load(&args(&["-c", &path]), &no_env).expect_err("refused")
        };
        let key = |name: &str| format!("config {path}: key `client.{name}`");

        let err = load_with("fallback_servers = [\"second:port\"]");
        assert_eq!(err.origin, key("fallback_servers"));
        assert!(err.reason.contains("second:port"), "{err}");
        let err = load_with("fallback_servers = [\"main:1\"]");
        assert_eq!(err.origin, key("fallback_servers"));
        assert!(err.reason.contains("is the main server"), "{err}");
        let err = load_with("fallback_servers = [\"b:2\", \"b:2\"]");
        assert!(err.reason.contains("listed twice"), "{err}");
        let err = load_with("fallback_servers = \"b:2\"");
        assert_eq!(err.origin, key("fallback_servers"), "not a list: {err}");
        let err = load_with("server_switchback_interval = \"soon\"");
        assert_eq!(err.origin, key("server_switchback_interval"));
        assert!(err.reason.contains("not a duration"), "{err}");
        let err = load_with("server_switchback_interval = \"0\"");
        assert_eq!(err.origin, key("server_switchback_interval"));
        assert!(err.reason.contains("at least 1s"), "{err}");

        let err = load(
            &args(&["--auth", "a:b", "--fallback-server", "ftp://x:1", "main:1"]),
            &no_env,
        )
        .expect_err("bad flag");
        assert_eq!(err.origin, "flag --fallback-server");
    }

    #[test]
    fn server_forms() {
        let parsed = |t: &str| parse_server(t).map(|s| s.to_string());
        assert_eq!(parsed("127.0.0.1:8080").as_deref(), Ok("127.0.0.1:8080"));
        assert_eq!(
            parsed("http://rport.example.com:8080/").as_deref(),
            Ok("rport.example.com:8080")
        );
        assert_eq!(
            parsed("https://rport.example.com").as_deref(),
            Ok("rport.example.com:443")
        );
        assert_eq!(parsed("[::1]:9000").as_deref(), Ok("[::1]:9000"));
        assert_eq!(
            parsed("rport.example.com").as_deref(),
            Ok("rport.example.com:8080")
        );
        assert!(parse_server("host:port").is_err());
        assert!(parse_server("ftp://x:1").is_err());
    }

    #[test]
    fn generated_id_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let first = load_or_create_client_id(&data).expect("create");
        assert_eq!(load_or_create_client_id(&data).expect("reload"), first);
        let other = tempfile::tempdir().expect("tempdir");
        assert_ne!(
            load_or_create_client_id(other.path()).expect("create"),
            first
        );
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rport.example.conf");
        let text = std::fs::read_to_string(&path).expect("read");
        let dir = tempfile::tempdir().expect("tempdir");
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
            .collect::<String>()
            .replace("5e:0c:...:9a", FP);
        let file = dir.path().join("rport.conf");
        std::fs::write(&file, uncommented).expect("write");
        let config = load(&args(&["-c", &file.display().to_string()]), &no_env).expect("valid");
        assert_eq!(config.server.to_string(), "rport.example.com:8080");
        assert_eq!(config.tags, vec!["Linux", "Office Berlin"]);
        assert_eq!(config.keep_alive, DEFAULT_KEEP_ALIVE);
        assert_eq!(config.remotes.len(), 3);
        assert_eq!(config.tunnel_allowed.rules().len(), 5);
        assert_eq!(config.fallback_servers.len(), 2);
        assert_eq!(
            config.server_switchback_interval,
            DEFAULT_SERVER_SWITCHBACK_INTERVAL
        );
        load(&args(&["-c", &path.display().to_string()]), &no_env).expect("as shipped");
    }
}
