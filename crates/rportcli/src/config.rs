//! Where rportcli's server and credentials come from: the file `rportcli init` writes and
//! the environment variables that override it, read as realvnc-labs/rportcli reads them.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Overrides the config file's path.
pub const CONFIG_PATH_ENV: &str = "CONFIG_PATH";
/// The config file under the home directory.
pub const DEFAULT_CONFIG_PATH: &str = ".config/rportcli/config.json";
pub const API_URL_ENV: &str = "RPORT_API_URL";
pub const SERVER_URL_ENV: &str = "RPORT_SERVER_URL";
pub const API_USER_ENV: &str = "RPORT_API_USER";
pub const USER_ENV: &str = "RPORT_USER";
pub const API_PASSWORD_ENV: &str = "RPORT_API_PASSWORD";
pub const PASSWORD_ENV: &str = "RPORT_PASSWORD";
pub const API_TOKEN_ENV: &str = "RPORT_API_TOKEN";
/// The lifetime `init` asks for its token, in seconds.
pub const SESSION_VALIDITY_ENV: &str = "SESSION_VALIDITY_SECONDS";
/// rportcli's default token lifetime: 20 days.
pub const DEFAULT_TOKEN_LIFETIME_SECONDS: u64 = 20 * 24 * 60 * 60;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no rportd server URL: run `rportcli init -s URL -l USER` or set RPORT_SERVER_URL \
         (RPORT_API_URL); with RPORT_API_TOKEN the config file is not read"
    )]
    NoServerUrl,
    #[error(
        "no credentials: run `rportcli init -s URL -l USER` or set RPORT_USER and \
         RPORT_PASSWORD (or RPORT_API_USER and RPORT_API_TOKEN)"
    )]
    NoCredentials,
    #[error("RPORT_API_TOKEN needs RPORT_API_USER (or RPORT_USER): an API token belongs to a user")]
    TokenWithoutUser,
    #[error(
        "both a password (RPORT_PASSWORD/RPORT_API_PASSWORD) and RPORT_API_TOKEN are set: \
         unset one of them"
    )]
    PasswordAndToken,
    #[error(
        "cannot run `rportcli init` while RPORT_API_TOKEN is set: unset it and use a password instead"
    )]
    InitWithApiToken,
    #[error("cannot find the home directory for the config file: set HOME or CONFIG_PATH")]
    NoHome,
    #[error("config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
}

/// A password or token: shown as `***` by Debug so it never reaches a log by accident.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What `config.json` holds: the server and the token `init` got, as rportcli writes it.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ConfigFile {
    #[serde(default)]
    pub server: String,
    #[serde(default, with = "secret_text")]
    pub token: Secret,
}

mod secret_text {
    use super::Secret;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(secret: &Secret, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(secret.expose())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        String::deserialize(deserializer).map(Secret::new)
    }
}

/// How requests prove who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// HTTP basic auth: a user with a password or an API token.
    Basic { user: String, password: Secret },
    /// The token `init` saved.
    Bearer(Secret),
}

/// The server and credentials a command uses.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server_url: String,
    pub credentials: Credentials,
    /// Where the settings came from, for error messages (never a secret).
    pub source: &'static str,
}

/// The first of `names` set to a non-empty value.
fn first_env(env: &dyn Fn(&str) -> Option<String>, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|name| env(name).filter(|value| !value.is_empty()))
}

/// The server URL from the environment (RPORT_API_URL, then RPORT_SERVER_URL).
pub fn env_server_url(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    first_env(env, &[API_URL_ENV, SERVER_URL_ENV])
}

/// The user from the environment (RPORT_API_USER, then RPORT_USER).
pub fn env_user(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    first_env(env, &[API_USER_ENV, USER_ENV])
}

/// The password from the environment (RPORT_API_PASSWORD, then RPORT_PASSWORD).
pub fn env_password(env: &dyn Fn(&str) -> Option<String>) -> Option<Secret> {
    first_env(env, &[API_PASSWORD_ENV, PASSWORD_ENV]).map(Secret::new)
}

pub fn env_api_token(env: &dyn Fn(&str) -> Option<String>) -> Option<Secret> {
    first_env(env, &[API_TOKEN_ENV]).map(Secret::new)
}

/// The process environment as [`Settings::resolve`] reads it.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Settings {
    /// rportcli's rules: with RPORT_API_TOKEN only the environment counts (basic auth with
    /// the user and the token); otherwise a user and password from the environment win
    /// over the file's token, and the environment's URL over the file's.
    pub fn resolve(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let user = env_user(env);
        let password = env_password(env);
        if let Some(token) = env_api_token(env) {
            if password.is_some() {
                return Err(ConfigError::PasswordAndToken);
            }
            let user = user.ok_or(ConfigError::TokenWithoutUser)?;
            let server_url = env_server_url(env).ok_or(ConfigError::NoServerUrl)?;
            return Ok(Self {
                server_url,
                credentials: Credentials::Basic {
                    user,
                    password: token,
                },
                source: "RPORT_API_USER and RPORT_API_TOKEN",
            });
        }
        let file = load_file(&config_path(env)?)?;
        let server_url = env_server_url(env)
            .or_else(|| file.as_ref().map(|f| f.server.clone()))
            .filter(|url| !url.is_empty())
            .ok_or(ConfigError::NoServerUrl)?;
        if let (Some(user), Some(password)) = (user, password) {
            return Ok(Self {
                server_url,
                credentials: Credentials::Basic { user, password },
                source: "RPORT_USER and RPORT_PASSWORD",
            });
        }
        match file {
            Some(file) if !file.token.is_empty() => Ok(Self {
                server_url,
                credentials: Credentials::Bearer(file.token),
                source: "the token saved by `rportcli init`",
            }),
            _ => Err(ConfigError::NoCredentials),
        }
    }
}

/// CONFIG_PATH, or `~/.config/rportcli/config.json`.
pub fn config_path(env: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf, ConfigError> {
    if let Some(path) = first_env(env, &[CONFIG_PATH_ENV]) {
        return Ok(PathBuf::from(path));
    }
    let home = first_env(env, &["HOME"]).ok_or(ConfigError::NoHome)?;
    Ok(Path::new(&home).join(DEFAULT_CONFIG_PATH))
}

/// The config file, or None when there is none.
pub fn load_file(path: &Path) -> Result<Option<ConfigFile>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(ConfigError::File {
                path: path.to_owned(),
                reason: err.to_string(),
            });
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|err| ConfigError::File {
            path: path.to_owned(),
            reason: format!("not rportcli's JSON ({err}); run `rportcli init` to write it again"),
        })
}

/// Writes the file readable by its owner only (0600), replacing any old one whole.
pub fn save_file(path: &Path, file: &ConfigFile) -> Result<(), ConfigError> {
    use std::os::unix::fs::OpenOptionsExt;
    let failed = |reason: String| ConfigError::File {
        path: path.to_owned(),
        reason,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string()))?;
    }
    let text = serde_json::to_string(file).map_err(|e| failed(e.to_string()))?;
    let temporary = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&temporary);
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(|e| failed(e.to_string()))?;
    out.write_all(text.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.sync_all())
        .map_err(|e| failed(e.to_string()))?;
    std::fs::rename(&temporary, path).map_err(|e| failed(e.to_string()))
}

/// Removes the file (`init -d`); no file is no error.
pub fn delete_file(path: &Path) -> Result<(), ConfigError> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(ConfigError::File {
            path: path.to_owned(),
            reason: err.to_string(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn secrets_are_masked_in_debug() {
        let settings = Settings {
            server_url: "http://x".into(),
            credentials: Credentials::Basic {
                user: "admin".into(),
                password: Secret::new("hunter2"),
            },
            source: "test",
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
    }

    #[test]
    fn environment_overrides_the_file_and_token_ignores_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        save_file(
            &path,
            &ConfigFile {
                server: "http://file".into(),
                token: Secret::new("file-token"),
            },
        )
        .expect("save");
        let path_text = path.display().to_string();
        let from_file = Settings::resolve(&env_of(&[("CONFIG_PATH", &path_text)])).expect("file");
        assert_eq!(from_file.server_url, "http://file");
        assert_eq!(
            from_file.credentials,
            Credentials::Bearer(Secret::new("file-token"))
        );
        let overridden = Settings::resolve(&env_of(&[
            ("CONFIG_PATH", &path_text),
            ("RPORT_SERVER_URL", "http://env"),
            ("RPORT_USER", "u"),
            ("RPORT_PASSWORD", "p"),
        ]))
        .expect("env");
        assert_eq!(overridden.server_url, "http://env");
        assert!(matches!(overridden.credentials, Credentials::Basic { .. }));
        let token_only = Settings::resolve(&env_of(&[
            ("CONFIG_PATH", &path_text),
            ("RPORT_API_TOKEN", "t"),
            ("RPORT_API_USER", "u"),
        ]));
        assert!(matches!(token_only, Err(ConfigError::NoServerUrl)));
    }

    #[test]
    fn the_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/config.json");
        save_file(&path, &ConfigFile::default()).expect("save");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
