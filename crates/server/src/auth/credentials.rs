//! The credentials an HTTP request carries in its `Authorization` header: basic or
//! bearer. Shared by the API and the tunnels' HTTP basic auth.

use base64::Engine;
use http::{HeaderMap, header};

/// What the `Authorization` header carries. Never shows a secret in `Debug`.
pub enum Credentials {
    Basic(String, String),
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic(user, _) => write!(f, "Basic({user}, ***)"),
            Credentials::Bearer(_) => f.write_str("Bearer(***)"),
        }
    }
}

/// The credentials in `headers`, if they hold a well-formed basic or bearer value.
pub fn credentials(headers: &HeaderMap) -> Option<Credentials> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, password) = decoded.split_once(':')?;
        Some(Credentials::Basic(user.to_owned(), password.to_owned()))
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Credentials::Bearer(rest.trim().to_owned()))
    } else {
        None
    }
}
