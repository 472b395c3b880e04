//! The PostgreSQL URL of `[database] url`: checked once when the config is read, and shown
//! (in `Debug`, status and messages) only with its password masked.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};

/// Port PostgreSQL listens on unless the URL says otherwise.
pub const DEFAULT_PORT: u16 = 5432;

/// How long opening one connection may take before the database counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A peer that vanished without closing (a cut link) is noticed after about this idle
/// time plus a few probes, instead of the system's two hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);

/// A PostgreSQL URL (`postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=...`), parsed.
#[derive(Clone)]
pub struct PostgresUrl {
    text: String,
    // Boxed: settings are passed around by value, and a Config is large.
    config: Box<tokio_postgres::Config>,
}

impl PartialEq for PostgresUrl {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for PostgresUrl {}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl PostgresUrl {
    /// Checks a URL as the operator wrote it; the error says why it is refused, without
    /// repeating the URL (it may hold a password).
    pub fn parse(text: &str) -> Result<Self, String> {
        const EXAMPLE: &str = "postgres://USER:PASSWORD@HOST:5432/DATABASE";
        if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
            return Err(format!(
                "not a PostgreSQL URL; expected one like {EXAMPLE:?}"
            ));
        }
        let query = text.split_once('?').map_or("", |(_, query)| query);
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        };
        if let Some(mode) = param("sslmode")
            && !["disable", "prefer", "require"].contains(&mode)
        {
            return Err(format!(
                "sslmode {mode:?} is not supported; use disable, prefer or require \
                 (require checks the server's certificate against the system's roots)"
            ));
        }
        let mut config = tokio_postgres::Config::from_str(text)
            .map_err(|err| format!("not a valid PostgreSQL URL: {}", full_message(&err)))?;
        if config.get_hosts().is_empty() {
            return Err(format!("names no host; expected a URL like {EXAMPLE:?}"));
        }
        if config.get_user().is_none_or(str::is_empty) {
            return Err(format!("names no user; expected a URL like {EXAMPLE:?}"));
        }
        if param("sslmode").is_none() {
            // A password on the wire needs TLS unless the database is on this machine.
            let local = config.get_hosts().iter().all(is_local);
            config.ssl_mode(match local {
                true => SslMode::Disable,
                false => SslMode::Require,
            });
        }
        if param("connect_timeout").is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if param("keepalives_idle").is_none() {
            config.keepalives_idle(KEEPALIVE_IDLE);
        }
        if config.get_application_name().is_none() {
            config.application_name("rportd");
        }
        // The server's NOTICEs ("relation ... already exists, skipping" from the idempotent
        // migrations) would reach the log at info level on every start.
        if config.get_options().is_none() {
            config.options("-c client_min_messages=warning");
        }
        Ok(Self {
            text: text.to_owned(),
            config: Box::new(config),
        })
    }

    /// RPort's keys (`db_host` as `HOST` or `HOST:PORT`, `db_user`, `db_password`,
    /// `db_name`) as a URL.
    pub fn from_parts(
        host: &str,
        user: &str,
        password: Option<&str>,
        database: &str,
    ) -> Result<Self, String> {
        let host = match host.rsplit_once(':') {
            Some((name, _)) if !name.ends_with(']') && name.contains(':') => {
                // A bare IPv6 address: the last colon is part of it.
                format!("[{host}]:{DEFAULT_PORT}")
            }
            Some(_) => host.to_owned(),
            None => format!("{host}:{DEFAULT_PORT}"),
        };
        let password = password.map_or(String::new(), |p| format!(":{}", encode(p)));
        Self::parse(&format!(
            "postgres://{}{password}@{host}/{}",
            encode(user),
            encode(database)
        ))
    }

    /// The URL with its password replaced by `***`.
    pub fn masked(&self) -> String {
        let user = self.config.get_user().map_or(String::new(), encode);
        let password = match self.config.get_password() {
            Some(_) => ":***",
            None => "",
        };
        let mut sockets = Vec::new();
        let mut hosts = Vec::new();
        for (index, host) in self.config.get_hosts().iter().enumerate() {
            let port = self.port(index);
            match host {
                Host::Tcp(name) if name.contains(':') => hosts.push(format!("[{name}]:{port}")),
                Host::Tcp(name) => hosts.push(format!("{name}:{port}")),
                Host::Unix(path) => sockets.push(format!("host={}", encode(path.display()))),
            }
        }
        let database = self.config.get_dbname().map_or(String::new(), encode);
        let query = match sockets.is_empty() {
            true => String::new(),
            false => format!("?{}", sockets.join("&")),
        };
        format!(
            "postgres://{user}{password}@{}/{database}{query}",
            hosts.join(",")
        )
    }

    /// Where the database is, `HOST:PORT` (several joined by commas), for messages.
    pub fn endpoint(&self) -> String {
        let hosts = self.config.get_hosts().iter().enumerate();
        hosts
            .map(|(index, host)| match host {
                Host::Tcp(name) if name.contains(':') => format!("[{name}]:{}", self.port(index)),
                Host::Tcp(name) => format!("{name}:{}", self.port(index)),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether connections ask for TLS.
    pub fn uses_tls(&self) -> bool {
        self.config.get_ssl_mode() != SslMode::Disable
    }

    pub(crate) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The port of the `index`th host: one port for all, or one each.
    fn port(&self, index: usize) -> u16 {
        let ports = self.config.get_ports();
        match ports {
            [one] => *one,
            _ => ports.get(index).copied().unwrap_or(DEFAULT_PORT),
        }
    }
}

fn is_local(host: &Host) -> bool {
    match host {
        Host::Tcp(name) => {
            name == "localhost"
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Host::Unix(_) => true,
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn encode(text: impl fmt::Display) -> String {
    let mut encoded = String::new();
    for byte in text.to_string().bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                encoded.push(byte as char)
            }
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}

/// tokio-postgres's `Display` names only the kind of failure; this adds its causes.
pub(crate) fn full_message(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        let text = match cause.downcast_ref::<tokio_postgres::error::DbError>() {
            Some(db) => match db.detail() {
                Some(detail) => format!("{} ({detail})", db.message()),
                None => db.message().to_owned(),
            },
            None => cause.to_string(),
        };
        message = format!("{message}: {text}");
        next = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_masked_everywhere_it_is_shown() {
        let url =
            PostgresUrl::parse("postgres://rport:s3cret@db.example.com:5432/rport").expect("valid");
        assert_eq!(
            url.masked(),
            "postgres://rport:***@db.example.com:5432/rport"
        );
        assert_eq!(format!("{url:?}"), url.masked());
        assert_eq!(url.endpoint(), "db.example.com:5432");
        assert!(url.uses_tls(), "a remote database gets TLS by default");
    }

    #[test]
    fn a_local_database_goes_without_tls_unless_asked() {
        let local = PostgresUrl::parse("postgres://rport@127.0.0.1/rport").expect("valid");
        assert!(!local.uses_tls());
        assert_eq!(local.masked(), "postgres://rport@127.0.0.1:5432/rport");
        let asked = PostgresUrl::parse("postgres://rport:pw@localhost:6000/x?sslmode=require")
            .expect("valid");
        assert!(asked.uses_tls());
        let remote =
            PostgresUrl::parse("postgresql://rport:pw@db/x?sslmode=disable").expect("valid");
        assert!(!remote.uses_tls());
    }

    #[test]
    fn rport_keys_build_the_same_url() {
        let built = PostgresUrl::from_parts("db.example.com", "rport", Some("p@ss:w/rd"), "rport")
            .expect("valid");
        assert_eq!(built.config().get_password(), Some(&b"p@ss:w/rd"[..]));
        assert_eq!(built.endpoint(), "db.example.com:5432");
        assert_eq!(
            built.masked(),
            "postgres://rport:***@db.example.com:5432/rport"
        );
        let with_port =
            PostgresUrl::from_parts("10.0.0.5:6432", "rport", None, "state").expect("valid");
        assert_eq!(with_port.masked(), "postgres://rport@10.0.0.5:6432/state");
        let v6 = PostgresUrl::from_parts("::1", "rport", None, "state").expect("valid");
        assert_eq!(v6.endpoint(), "[::1]:5432");
    }

    #[test]
    fn bad_urls_are_refused_without_repeating_them() {
        for (text, reason) in [
            ("mysql://rport:s3cret@db/rport", "not a PostgreSQL URL"),
            (
                "postgres://rport:s3cret@db:port/rport",
                "not a valid PostgreSQL URL",
            ),
            ("postgres://rport:s3cret@/rport", "names no host"),
            ("postgres://db.example.com/rport", "names no user"),
            (
                "postgres://rport:s3cret@db/rport?sslmode=verify-full",
                "sslmode \"verify-full\" is not supported",
            ),
            (
                "postgres://rport:s3cret@db/rport?nonsense=1",
                "not a valid PostgreSQL URL",
            ),
        ] {
            let err = PostgresUrl::parse(text).expect_err(text);
            assert!(err.contains(reason), "{text}: {err}");
            assert!(!err.contains("s3cret"), "{text}: {err}");
        }
    }
}
