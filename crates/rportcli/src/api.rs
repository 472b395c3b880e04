//! rportd's REST API over HTTP(S): one request at a time, errors turned into what the
//! operator should do about them.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use crate::config::{Credentials, Secret};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "cannot reach rportd at {url}: {reason}. Check the server URL (`rportcli init -s`, \
         RPORT_SERVER_URL) and that rportd runs and listens there"
    )]
    Unreachable { url: String, reason: String },
    #[error(
        "rportd at {url} refused the credentials from {from}: check RPORT_USER/RPORT_PASSWORD \
         (or RPORT_API_USER/RPORT_API_TOKEN), or run `rportcli init` again (a saved token \
         expires)"
    )]
    Unauthorized { url: String, from: String },
    #[error("{title}: {detail}{hint}")]
    Refused {
        status: u16,
        code: String,
        title: String,
        detail: String,
        hint: String,
    },
    #[error("rportd at {url} answered {path} with something that is not rportd's JSON: {reason}")]
    Unexpected {
        url: String,
        path: String,
        reason: String,
    },
    #[error("TLS setup: {0}")]
    Tls(String),
}

impl ApiError {
    /// rportd's error code (`ERR_CODE_...`) when rportd refused the request.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Refused { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            Self::Unauthorized { .. } => Some(401),
            _ => None,
        }
    }
}

/// What to do about one of rportd's error codes, appended to its own words.
fn hint_for(code: &str) -> &'static str {
    match code {
        "ERR_CODE_CLIENT_NOT_FOUND" => {
            " (the agent is unknown or not connected: see `rportcli client list`, and check \
             that rport runs on the device and reaches the server)"
        }
        "ERR_CODE_DEVICE_OFFLINE" | "ERR_CODE_CLIENT_NOT_CONNECTED" => {
            " (the agent is not connected: check that rport runs on the device)"
        }
        "ERR_CODE_DEVICE_NOT_FOUND" => " (check the device id and --project)",
        "ERR_CODE_REMOTE_PORT_NOT_OPEN" => {
            " (nothing listens on that port on the device: start the service there, or check \
             -r)"
        }
        "ERR_CODE_TUNNEL_NOT_ALLOWED" => {
            " (the agent's `tunnel_allowed` setting forbids this target: change it in rport's \
             config on the device)"
        }
        "ERR_CODE_TUNNEL_HAS_ACTIVE_CONNECTIONS" => " (use -f to delete it anyway)",
        "ERR_CODE_LOCAL_PORT_IN_USE" | "ERR_CODE_TUNNEL_EXIST" => {
            " (leave out -l to get a free port, or choose another)"
        }
        "ERR_CODE_TUNNEL_TO_PORT_EXIST" => {
            " (a tunnel to this target with this ACL is open: see `rportcli tunnel list`)"
        }
        "ERR_CODE_NO_FREE_PORT" => " (close tunnels you no longer need, or widen used_ports)",
        "ERR_CODE_INVALID_ACL" => " (-a takes addresses and networks, e.g. 203.0.113.7,10.0.0.0/8)",
        "ERR_CODE_FORBIDDEN" => " (your user lacks the role for this: ask an administrator)",
        "ERR_CODE_PROJECT_NOT_FOUND" => " (check --project: `rportcli me` shows your roles)",
        "ERR_CODE_TOO_MANY_FAILED_LOGINS" => " (wait, then check the user and password)",
        "ERR_CODE_TUNNEL_NOT_FOUND" => " (see `rportcli tunnel list`)",
        _ => "",
    }
}

/// A client of one rportd API.
pub struct ApiClient {
    base_url: String,
    agent: ureq::Agent,
    authorization: Option<Secret>,
    credentials_source: String,
    verbose: bool,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("base_url", &self.base_url)
            .field("credentials_source", &self.credentials_source)
            .finish_non_exhaustive()
    }
}

/// The `Authorization` header value for credentials.
pub fn authorization(credentials: &Credentials) -> Secret {
    match credentials {
        Credentials::Basic { user, password } => {
            let pair = format!("{user}:{}", password.expose());
            Secret::new(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ))
        }
        Credentials::Bearer(token) => Secret::new(format!("Bearer {}", token.expose())),
    }
}

fn tls_config(base_url: &str) -> Result<ureq::tls::TlsConfig, ApiError> {
    let builder = ureq::tls::TlsConfig::builder().provider(ureq::tls::TlsProvider::Rustls);
    if !base_url.starts_with("https:") {
        return Ok(builder.build());
    }
    // The system's roots: rportd behind a public certificate or the operator's own CA.
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        return Err(ApiError::Tls(format!(
            "no trusted root certificates found on this system ({} errors)",
            found.errors.len()
        )));
    }
    let roots: Vec<ureq::tls::Certificate<'static>> = found
        .certs
        .iter()
        .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    Ok(builder
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
        .build())
}

impl ApiClient {
    /// `base_url` is the API's address without a path (`https://rport.example.com`).
    pub fn new(
        base_url: &str,
        credentials: Option<&Credentials>,
        credentials_source: &str,
        timeout: Option<Duration>,
        verbose: bool,
    ) -> Result<Self, ApiError> {
        let base_url = base_url.trim_end_matches('/').to_owned();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(timeout)
            .timeout_connect(Some(timeout.unwrap_or(Duration::from_secs(15))))
            .tls_config(tls_config(&base_url)?)
            .build()
            .into();
        Ok(Self {
            base_url,
            agent,
            authorization: credentials.map(authorization),
            credentials_source: credentials_source.to_owned(),
            verbose,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The same server with other credentials (the token a login answered).
    pub fn with_credentials(&self, credentials: &Credentials, source: &str) -> Self {
        Self {
            base_url: self.base_url.clone(),
            agent: self.agent.clone(),
            authorization: Some(authorization(credentials)),
            credentials_source: source.to_owned(),
            verbose: self.verbose,
        }
    }

    pub fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, ApiError> {
        self.send("GET", path, query, None)
    }

    pub fn put(&self, path: &str, query: &[(&str, String)]) -> Result<Value, ApiError> {
        self.send("PUT", path, query, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        self.send("POST", path, &[], Some(body))
    }

    pub fn delete(&self, path: &str, query: &[(&str, String)]) -> Result<Value, ApiError> {
        self.send("DELETE", path, query, None)
    }

    /// One request; the JSON answer (Null for an empty one) or the error in rportd's words.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let url = format!("{}{path}", self.base_url);
        if self.verbose {
            // Never the Authorization header: only what was asked.
            eprintln!("rportcli: {method} {url} {query:?}");
        }
        let unreachable = |err: ureq::Error| ApiError::Unreachable {
            url: self.base_url.clone(),
            reason: err.to_string(),
        };
        macro_rules! prepared {
            ($builder:expr) => {{
                let mut builder = $builder;
                for (key, value) in query {
                    builder = builder.query(*key, value);
                }
                if let Some(auth) = &self.authorization {
                    builder = builder.header("Authorization", auth.expose());
                }
                builder.header("Accept", "application/json")
            }};
        }
        let response = match method {
            "GET" => prepared!(self.agent.get(&url)).call(),
            "DELETE" => prepared!(self.agent.delete(&url)).call(),
            "PUT" => prepared!(self.agent.put(&url)).send_empty(),
            _ => {
                let request = prepared!(self.agent.post(&url));
                match body {
                    Some(body) => request
                        .header("Content-Type", "application/json")
                        .send(body.to_string()),
                    None => request.send_empty(),
                }
            }
        }
        .map_err(unreachable)?;
        let status = response.status().as_u16();
        let text = response
            .into_body()
            .read_to_string()
            .map_err(|err| ApiError::Unexpected {
                url: self.base_url.clone(),
                path: path.to_owned(),
                reason: err.to_string(),
            })?;
        if self.verbose {
            eprintln!("rportcli: -> {status}");
        }
        let json = if text.trim().is_empty() {
            Value::Null
        } else {
            match serde_json::from_str(&text) {
                Ok(json) => json,
                Err(err) => {
                    return Err(ApiError::Unexpected {
                        url: self.base_url.clone(),
                        path: path.to_owned(),
                        reason: format!("status {status}, {err}"),
                    });
                }
            }
        };
        if (200..300).contains(&status) {
            return Ok(json);
        }
        if status == 401 {
            return Err(ApiError::Unauthorized {
                url: self.base_url.clone(),
                from: self.credentials_source.clone(),
            });
        }
        let first = &json["errors"][0];
        let text_of = |key: &str| first[key].as_str().unwrap_or_default().to_owned();
        let code = text_of("code");
        let title = Some(text_of("title"))
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| format!("rportd answered {status}"));
        let detail = Some(text_of("detail"))
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| format!("{method} {path}"));
        Err(ApiError::Refused {
            status,
            hint: hint_for(&code).to_owned(),
            code,
            title,
            detail,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_server_is_named() {
        // A port nobody listens on: bind, learn it, close.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        drop(listener);
        let url = format!("http://{address}");
        let client = ApiClient::new(&url, None, "test", Some(Duration::from_secs(5)), false)
            .expect("client");
        let err = client.get("/api/v1/status", &[]).expect_err("refused");
        assert!(err.to_string().contains(&url), "{err}");
    }
}
