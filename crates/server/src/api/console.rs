//! The web console: its files, built into the binary, served at `/` and `/console/`;
//! the security headers of every answer; and the browser's session cookie, which
//! `/login?cookie=true` sets and the API then takes as it takes a bearer token.

use std::sync::{Arc, LazyLock};

use axum::body::Body;
use axum::extract::{FromRequestParts, Path as PathExtractor};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::{ApiError, AppState, State, doc_root, routes};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "rportd_session";

/// Scripts, styles and connections only from this origin, no frames, no plugins: a
/// value that slipped into the page as markup could still not run.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'self'";

/// The console's files by their path under `/console/`. A file added to
/// `crates/server/console/` needs its line here (a test says so).
const FILES: &[(&str, &[u8])] = &[
    ("index.html", include_bytes!("../../console/index.html")),
    ("app.js", include_bytes!("../../console/app.js")),
    ("lib.js", include_bytes!("../../console/lib.js")),
    ("style.css", include_bytes!("../../console/style.css")),
    (
        "pages/login.js",
        include_bytes!("../../console/pages/login.js"),
    ),
    (
        "pages/devices.js",
        include_bytes!("../../console/pages/devices.js"),
    ),
    (
        "pages/device.js",
        include_bytes!("../../console/pages/device.js"),
    ),
    (
        "pages/tunnels.js",
        include_bytes!("../../console/pages/tunnels.js"),
    ),
    (
        "pages/audit.js",
        include_bytes!("../../console/pages/audit.js"),
    ),
    (
        "pages/admin.js",
        include_bytes!("../../console/pages/admin.js"),
    ),
    (
        "pages/admin/common.js",
        include_bytes!("../../console/pages/admin/common.js"),
    ),
    (
        "pages/admin/users.js",
        include_bytes!("../../console/pages/admin/users.js"),
    ),
    (
        "pages/admin/projects.js",
        include_bytes!("../../console/pages/admin/projects.js"),
    ),
    (
        "pages/admin/credentials.js",
        include_bytes!("../../console/pages/admin/credentials.js"),
    ),
    (
        "pages/admin/tokens.js",
        include_bytes!("../../console/pages/admin/tokens.js"),
    ),
    (
        "pages/admin/sessions.js",
        include_bytes!("../../console/pages/admin/sessions.js"),
    ),
    (
        "pages/admin/cluster.js",
        include_bytes!("../../console/pages/admin/cluster.js"),
    ),
];

/// Each file's `ETag`: browsers ask again every time (`no-cache`) and get a 304 while
/// the binary is the same.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|(_, bytes)| {
            let digest = Sha256::digest(bytes);
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            format!("\"{hex}\"")
        })
        .collect()
});

/// Paths of the console's files, for the test that every file is served.
pub fn served_files() -> impl Iterator<Item = &'static str> {
    FILES.iter().map(|(path, _)| *path)
}

/// `/`: the console, unless `[api] doc_root` serves a web UI there (the console then
/// stays at `/console/`).
pub async fn root(
    state: State,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if state.config.api.doc_root.is_some() {
        return doc_root::serve(state, method, uri).await;
    }
    file("index.html", &method, &headers).await
}

/// `/console` and `/console/`: the console's page.
pub async fn index(method: Method, headers: HeaderMap) -> Result<Response, ApiError> {
    file("index.html", &method, &headers).await
}

/// `/console/{*path}`: one of the console's files; anything else is a 404.
pub async fn asset(
    PathExtractor(path): PathExtractor<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    file(&path, &method, &headers).await
}

async fn file(path: &str, method: &Method, headers: &HeaderMap) -> Result<Response, ApiError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(routes::method_not_allowed().await);
    }
    let Some(index) = FILES.iter().position(|(name, _)| *name == path) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "ERR_CODE_NOT_FOUND",
            "Not found",
            "no such file in the console",
        ));
    };
    let (name, bytes) = FILES[index];
    let etag = &ETAGS[index];
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag));
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else if method == Method::HEAD {
        let mut head = Body::empty().into_response();
        head.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        head
    } else {
        Body::from(bytes).into_response()
    };
    let answer = response.headers_mut();
    let kind = doc_root::content_type(std::path::Path::new(name));
    answer.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    answer.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        answer.insert(header::ETAG, value);
    }
    answer.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    Ok(response)
}

/// Adds to every answer the headers that keep browsers from framing it, guessing its
/// type or leaking its address; the API's own answers (JSON, the console) also get the
/// content security policy. A web UI from `[api] doc_root` brings its own policy.
/// A script's request in a browser (`Sec-Fetch-Mode` other than `navigate`) gets its 401
/// without `WWW-Authenticate`: the browser would otherwise hold the request behind its
/// own password dialog instead of letting the console show its login page.
pub async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let is_api = request.uri().path().starts_with("/api/");
    let from_script = request
        .headers()
        .get("sec-fetch-mode")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|mode| mode != "navigate");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if from_script {
        headers.remove(header::WWW_AUTHENTICATE);
    }
    let defaults = [
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in defaults {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    if is_api {
        headers
            .entry(header::CONTENT_SECURITY_POLICY)
            .or_insert(HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    }
    response
}

/// The session token in the request's `rportd_session` cookie.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, token)| token.trim().to_owned())
        .filter(|token| !token.is_empty())
}

/// Whether a login asked for the session as a cookie (`?cookie=true`), and whether the
/// browser reached the API over HTTPS (then the cookie is `Secure`): the API's own TLS,
/// or a trusted proxy's `X-Forwarded-Proto: https`.
pub struct CookieMode {
    pub wanted: bool,
    secure: bool,
}

impl FromRequestParts<Arc<AppState>> for CookieMode {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let wanted = parts.uri.query().is_some_and(|query| {
            query
                .split('&')
                .any(|pair| matches!(pair, "cookie=true" | "cookie=1"))
        });
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| rport_protocol::ip_rules::canonical(info.0.ip()));
        let via_trusted_proxy = peer.is_some_and(|peer| {
            let trusted = &state.config.api.trusted_proxies;
            trusted.iter().any(|net| net.contains(peer))
        });
        let proxied_https = via_trusted_proxy
            && parts
                .headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
        let secure = state.config.api.tls.is_some() || proxied_https;
        Ok(Self { wanted, secure })
    }
}

impl CookieMode {
    /// The answer to a login that opened session `token`: the token in the body, or in
    /// cookie mode only in an `HttpOnly` cookie that scripts cannot read.
    pub fn reply(&self, token: String, lifetime: std::time::Duration) -> Response {
        if !self.wanted {
            return super::data(serde_json::json!({ "token": token, "two_fa": null }));
        }
        let mut response =
            super::data(serde_json::json!({ "token": null, "two_fa": null, "cookie": true }));
        let cookie = format!(
            "{SESSION_COOKIE}={token}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
            lifetime.as_secs(),
            if self.secure { "; Secure" } else { "" }
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        response
    }

    /// Tells the browser to forget the session cookie.
    pub fn clear(&self, response: &mut Response) {
        let cookie = format!(
            "{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
            if self.secure { "; Secure" } else { "" }
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
}

/// The rule against cross-site request forgery for the cookie: a request that changes
/// something (not GET/HEAD/OPTIONS), authenticated by the cookie alone, must show it
/// comes from the console: an `Origin` (which [`super::refuse_cross_site`] has matched
/// against the API's address) or `Sec-Fetch-Site: same-origin`. Forms and scripts of
/// other sites cannot meet it; requests with an `Authorization` header do not use the
/// cookie and are not concerned.
pub fn cookie_write_refused(method: &Method, headers: &HeaderMap) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return false;
    }
    if headers.contains_key(header::AUTHORIZATION) || session_cookie(headers).is_none() {
        return false;
    }
    let same_origin_fetch = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| site == "same-origin");
    !headers.contains_key(header::ORIGIN) && !same_origin_fetch
}
