use super::*;
use crate::domain::permissions::Role;

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
        !debug.contains("1234") && !debug.contains("foobaz") && !debug.contains("0123456789abcdef"),
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
    let err = parse("[api]\ntotp_login_session_ttl = \"0s\"\n").expect_err("no TOTP window");
    assert_eq!(err.key, "api.totp_login_session_ttl");
    let err = parse("[api]\ntotp_account_name = \" \"\n").expect_err("blank account name");
    assert_eq!(err.key, "api.totp_account_name");
    let totp = parse("[api]\ntotp_enabled = true\ntotp_login_session_ttl = \"2m\"\n")
        .expect("TOTP keys parse");
    assert!(totp.api.totp_enabled);
    assert_eq!(totp.api.totp_login_session_ttl, Duration::from_secs(120));
    assert_eq!(totp.api.totp_account_name, "RPort");

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
    let long = "n".repeat(crate::domain::names::MAX_USERNAME_LEN + 1);
    let err = parse(&format!("[api]\nauth = \"{long}:password\"\n")).expect_err("long user");
    assert_eq!(err.key, "api.auth");
    assert!(err.reason.contains("at most 64 bytes"), "{err}");
    let long = "c".repeat(crate::domain::bounded::MAX_CREDENTIAL_ID_LEN + 1);
    let err = parse(&format!("[server]\nauth = \"{long}:password\"\n")).expect_err("long id");
    assert_eq!(err.key, "server.auth");
    assert!(err.reason.contains("at most 200"), "{err}");
    let fits = "c".repeat(crate::domain::bounded::MAX_CREDENTIAL_ID_LEN);
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
         keep its state in; use one of: sqlite, postgres"
    );
}

#[test]
fn a_database_url_selects_postgresql_and_is_never_shown_with_its_password() {
    let config = parse("[database]\nurl = \"postgres://rport:s3cret@db.example.com:5432/rport\"\n")
        .expect("valid");
    let rport_store::DatabaseSettings::Postgres { url } = &config.database else {
        panic!("{:?}", config.database);
    };
    assert_eq!(url.endpoint(), "db.example.com:5432");
    let shown = "postgres://rport:***@db.example.com:5432/rport";
    assert_eq!(config.database.location(Path::new("/data")), shown);
    assert_eq!(
        format!("{:?}", config.database),
        format!("Postgres {{ url: {shown} }}")
    );
    assert!(!format!("{config:?}").contains("s3cret"));
}

#[test]
fn rport_keys_build_the_same_postgresql_url() {
    let from_keys = parse(
        r#"
        [database]
        db_type = "postgres"
        db_host = "db.example.com:5432"
        db_user = "rport"
        db_password = "s3cret"
        db_name = "rport"
        "#,
    )
    .expect("valid");
    let from_url = parse(
        "[database]\nurl = \"postgres://rport:s3cret@db.example.com:5432/rport\"\n\
         db_type = \"postgres\"\n",
    )
    .expect("valid");
    assert_eq!(from_keys.database, from_url.database);
    let local =
        parse("[database]\ndb_type = \"postgres\"\ndb_user = \"rport\"\ndb_name = \"state\"\n")
            .expect("valid");
    assert_eq!(
        local.database.location(Path::new("/data")),
        "postgres://rport@localhost:5432/state"
    );
}

#[test]
fn database_errors_name_the_key_and_never_the_password() {
    for (text, key, reason) in [
        (
            "url = \"postgres://rport:s3cret@db:port/rport\"",
            "database.url",
            "not a valid PostgreSQL URL: invalid connection string: invalid value for option `port`",
        ),
        (
            "url = \"mysql://rport:s3cret@db/rport\"",
            "database.url",
            "not a PostgreSQL URL; expected one like",
        ),
        (
            "url = \"postgres://rport:s3cret@db/rport?sslmode=verify-full\"",
            "database.url",
            "sslmode \"verify-full\" is not supported",
        ),
        (
            "url = \"postgres://rport:s3cret@db/rport\"\ndb_type = \"sqlite\"",
            "database.db_type",
            "\"sqlite\" does not go with `url`",
        ),
        (
            "url = \"postgres://rport:s3cret@db/rport\"\ndb_name = \"x\"",
            "database.db_name",
            "set either `url` or",
        ),
        (
            "db_password = \"s3cret\"",
            "database.db_password",
            "only PostgreSQL (db_type = \"postgres\") uses it",
        ),
        (
            "db_type = \"postgres\"\ndb_name = \"rport\"\ndb_password = \"s3cret\"",
            "database.db_user",
            "PostgreSQL needs the user",
        ),
        (
            "db_type = \"postgres\"\ndb_user = \"rport\"",
            "database.db_name",
            "PostgreSQL needs the name",
        ),
    ] {
        let err = parse(&format!("[database]\n{text}\n")).expect_err(text);
        assert_eq!(err.file, "test.conf");
        assert_eq!(err.key, key, "{text}");
        assert!(err.reason.contains(reason), "{text}: {}", err.reason);
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
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
        {"username": "ops", "password": hash, "roles": {"default": "tunnels"}, "groups": ["Editors", "Administrators"]},
    ]))
    .expect("valid");
    let users = config.api.auth_file.as_ref().expect("users").users();
    assert!(users[0].is_admin && users[0].roles.is_empty());
    assert!(users[1].is_admin, "Administrators is the admin flag");
    assert_eq!(users[1].groups, ["Editors"]);
    assert_eq!(users[1].roles.get("default"), Some(&Role::Tunnels));
    assert!(!format!("{config:?}").contains(&hash), "hashes never print");

    for (users, reason) in [
        (
            serde_json::json!([{"username": "a", "password": "plain"}]),
            "bcrypt",
        ),
        (
            serde_json::json!([{"username": "a", "password": hash, "groups": ["Bad/Group"]}]),
            "user group name \"Bad/Group\"",
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
    // So are a PostgreSQL url and the SQLite keys.
    let uncommented = uncommented.replace("url = \"postgres", "#url = \"postgres");
    // doc_root must name a directory that exists; the example's is a server's path.
    let uncommented = uncommented.replace("doc_root = \"/var/", "doc_root = \"/\" #");
    ServerConfig::from_toml_str(&uncommented, "rportd.example.conf (uncommented)")
        .expect("every documented key must be a real key with a valid example value");
}

#[test]
fn cluster_peer_address_is_host_and_a_fixed_port() {
    let config = parse("[cluster]\npeer_address = \"10.0.0.5:8443\"\n").expect("valid");
    assert_eq!(
        config.cluster.peer_address.as_deref(),
        Some("10.0.0.5:8443")
    );
    assert!(parse("").expect("empty").cluster.peer_address.is_none());
    for (bad, reason) in [
        ("10.0.0.5", "is not host:port"),
        (":8443", "is not host:port"),
        ("10.0.0.5:0", "port 0"),
    ] {
        let err = parse(&format!("[cluster]\npeer_address = {bad:?}\n")).expect_err(bad);
        assert_eq!(err.key, "cluster.peer_address", "{bad}");
        assert!(err.reason.contains(reason), "{bad}: {err}");
        assert!(err.to_string().contains("test.conf"), "{err}");
    }
}

#[test]
fn metrics_address_is_optional_host_and_port() {
    assert!(parse("").expect("empty").metrics.address.is_none());
    let empty = parse("[metrics]\naddress = \"\"\n").expect("empty address is off");
    assert!(empty.metrics.address.is_none());
    let config = parse("[metrics]\naddress = \"127.0.0.1:9090\"\n").expect("valid");
    assert_eq!(config.metrics.address.as_deref(), Some("127.0.0.1:9090"));
    for bad in ["9090", "127.0.0.1", "127.0.0.1:http"] {
        let err = parse(&format!("[metrics]\naddress = {bad:?}\n")).expect_err(bad);
        assert_eq!(err.key, "metrics.address", "{bad}");
        assert!(err.reason.contains("is not host:port"), "{bad}: {err}");
    }
    let err = parse("[metrics]\nport = 9090\n").expect_err("unknown key");
    assert!(err.to_string().contains("port"), "{err}");
}

#[test]
fn api_doc_root_must_be_a_directory_and_is_made_canonical() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-ui");
    let err = parse(&format!("[api]\ndoc_root = \"{}\"\n", missing.display()))
        .expect_err("missing directory");
    assert_eq!(
        (err.file.as_str(), err.key.as_str()),
        ("test.conf", "api.doc_root")
    );
    assert!(err.reason.contains("no-such-ui"), "{err}");
    let file = dir.path().join("index.html");
    std::fs::write(&file, "x").expect("file");
    let err = parse(&format!("[api]\ndoc_root = \"{}\"\n", file.display())).expect_err("a file");
    assert!(err.reason.contains("not a directory"), "{err}");
    let err = parse(&format!(
        "[api]\naddress = \"\"\ndoc_root = \"{}\"\n",
        dir.path().display()
    ))
    .expect_err("API off");
    assert!(err.reason.contains("set [api] address"), "{err}");

    let nested = dir.path().join("ui");
    std::fs::create_dir(&nested).expect("dir");
    let config = parse(&format!(
        "[api]\ndoc_root = \"{}/../ui\"\n",
        nested.display()
    ))
    .expect("a directory");
    let canonical = std::fs::canonicalize(&nested).expect("canonical");
    assert_eq!(config.api.doc_root, Some(canonical));
}
