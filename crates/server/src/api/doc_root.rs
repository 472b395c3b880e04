//! `[api] doc_root` (RPort's key): serves a web UI bundle such as openrport-ui from a
//! directory at `/`, beside the API, whose routes come first. Only files inside the
//! directory are served, symlinks followed only while they stay inside; a directory
//! serves its `index.html` and is never listed. As RPort, an unknown path under one of
//! the UI's own routes (`/dashboard`, `/tunnels`, ...) answers with the root
//! `index.html`, so that the single-page app's history mode works on reload.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::State as StateExtractor;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, State, routes};

/// The first path segments of openrport-ui's routes: RPort answers a missing file under
/// them with `index.html` (its `vueHistoryPaths`).
const UI_ROUTES: [&str; 8] = [
    "dashboard",
    "auth",
    "tunnels",
    "inventory",
    "documentation",
    "commands",
    "scripts",
    "settings",
];

/// The longest request path looked up on disk, in bytes.
const MAX_PATH_LEN: usize = 1024;

/// The router's fallback: a file of the web UI where `[api] doc_root` is set and the
/// path is not the API's; otherwise the API's "not found".
pub async fn serve(
    StateExtractor(state): State,
    method: Method,
    uri: Uri,
) -> Result<Response, ApiError> {
    let path = uri.path();
    let Some(root) = state.config.api.doc_root.as_deref() else {
        return Err(routes::not_found().await);
    };
    if path == "/api" || path.starts_with("/api/") {
        return Err(routes::not_found().await);
    }
    if method != Method::GET && method != Method::HEAD {
        return Err(routes::method_not_allowed().await);
    }
    let file = match file_for(root, path).await {
        Some(file) => file,
        None if under_ui_route(path) => match file_for(root, "/").await {
            Some(index) => index,
            None => return Err(routes::not_found().await),
        },
        None => return Err(routes::not_found().await),
    };
    let opened = tokio::fs::File::open(&file)
        .await
        .map_err(|_| not_readable())?;
    let length = opened.metadata().await.map_err(|_| not_readable())?.len();
    // Streamed: a bundle's large files cost a buffer per request, not their size.
    let body = match method == Method::HEAD {
        true => Body::empty(),
        false => Body::from_stream(tokio_util::io::ReaderStream::new(opened)),
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&file)),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

fn not_readable() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "ERR_CODE_NOT_FOUND",
        "Not found",
        "that file cannot be read",
    )
}

/// As RPort, by prefix: `/dashboard` and `/dashboards/x` alike.
fn under_ui_route(path: &str) -> bool {
    let path = path.strip_prefix('/').unwrap_or(path);
    UI_ROUTES.iter().any(|route| path.starts_with(route))
}

/// The file `request_path` names inside `root` (canonical), or `None`: a path that does
/// not decode, names `.` or `..`, leaves the root through a symlink, or names nothing
/// but a directory without `index.html`.
async fn file_for(root: &Path, request_path: &str) -> Option<PathBuf> {
    if request_path.len() > MAX_PATH_LEN {
        return None;
    }
    let decoded = percent_decode(request_path)?;
    let mut candidate = root.to_path_buf();
    for segment in decoded.split('/').filter(|s| !s.is_empty()) {
        if segment == "." || segment == ".." || segment.contains(['\\', '\0']) {
            return None;
        }
        candidate.push(segment);
    }
    let mut resolved = tokio::fs::canonicalize(&candidate).await.ok()?;
    if !resolved.starts_with(root) {
        return None;
    }
    if tokio::fs::metadata(&resolved).await.ok()?.is_dir() {
        resolved = tokio::fs::canonicalize(resolved.join("index.html"))
            .await
            .ok()?;
        if !resolved.starts_with(root) {
            return None;
        }
    }
    tokio::fs::metadata(&resolved)
        .await
        .ok()?
        .is_file()
        .then_some(resolved)
}

/// `%XX` decoded; `None` for a malformed escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// By extension, for what web UI bundles hold; anything else is plain bytes.
pub(super) fn content_type(file: &Path) -> &'static str {
    let extension = file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match extension.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "txt" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "eot" => "application/vnd.ms-fontobject",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_decode_and_bad_ones_do_not() {
        assert_eq!(percent_decode("/a%20b/%2e%2E").as_deref(), Some("/a b/.."));
        assert_eq!(percent_decode("/a%2"), None);
        assert_eq!(percent_decode("/a%zz"), None);
        assert_eq!(percent_decode("/%ff"), None, "not UTF-8");
    }

    #[test]
    fn ui_routes_are_first_segments() {
        assert!(under_ui_route("/dashboard"));
        assert!(under_ui_route("/tunnels/abc"));
        assert!(under_ui_route("/dashboards"), "a prefix, as RPort");
        assert!(!under_ui_route("/assets/app.js"));
    }
}
