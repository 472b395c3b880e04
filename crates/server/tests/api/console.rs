//! The web console from the API's side: its files and their headers, the session
//! cookie (login, use, logout, TOTP), the rule against cross-site writes with it, and
//! the event stream's first event, bounds and project filter.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};

use crate::harness::{ADMIN, ADMIN_PASSWORD, Setup, TestServer, admin};

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

#[tokio::test]
async fn the_console_files_are_served_with_types_caching_and_security_headers() {
    let server = TestServer::start().await;
    for (path, kind) in [
        ("/", "text/html; charset=utf-8"),
        ("/console/", "text/html; charset=utf-8"),
        ("/console/app.js", "text/javascript; charset=utf-8"),
        (
            "/console/pages/devices.js",
            "text/javascript; charset=utf-8",
        ),
        ("/console/style.css", "text/css; charset=utf-8"),
    ] {
        let reply = server.call(Method::GET, path).send().await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("content-type"), kind, "{path}");
        assert_eq!(reply.header("cache-control"), "no-cache", "{path}");
        assert_eq!(reply.header("content-security-policy"), CSP, "{path}");
        assert_eq!(reply.header("x-frame-options"), "DENY", "{path}");
        assert_eq!(reply.header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(reply.header("referrer-policy"), "no-referrer", "{path}");
        let etag = reply.header("etag").to_owned();
        assert!(etag.starts_with('"'), "{path}: {etag}");
        let again = server
            .call(Method::GET, path)
            .header("if-none-match", &etag)
            .send()
            .await;
        assert_eq!(again.status, 304, "{path}");
    }
    for path in [
        "/console/nothing.js",
        "/console/../Cargo.toml",
        "/console/pages",
    ] {
        let reply = server.call(Method::GET, path).send().await;
        reply.assert_error(404, "ERR_CODE_NOT_FOUND");
    }
    let api = server.request(Method::GET, "/api/v1/me", &admin()).await;
    assert_eq!(api.header("content-security-policy"), CSP);
    assert_eq!(api.header("x-frame-options"), "DENY");
}

#[test]
fn every_file_of_the_console_folder_is_served() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
    let mut on_disk = Vec::new();
    let mut folders = vec![root.clone()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("read the console folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                folders.push(path);
            } else {
                let relative = path.strip_prefix(&root).expect("inside");
                on_disk.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let served: Vec<&str> = rport_server::console_files().collect();
    for file in &on_disk {
        assert!(
            served.contains(&file.as_str()),
            "crates/server/console/{file} is not in api/console.rs FILES"
        );
    }
}

#[tokio::test]
async fn with_a_doc_root_slash_is_the_web_ui_and_the_console_stays_at_console() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("index.html"), "<title>the ui</title>").expect("index");
    let root = dir.path().canonicalize().expect("canonical");
    let server = TestServer::with(Setup {
        api: format!("doc_root = {:?}\n", root.display().to_string()),
        ..Default::default()
    })
    .await;
    let reply = server.call(Method::GET, "/").send().await;
    assert_eq!(reply.body, json!("<title>the ui</title>"));
    let reply = server.call(Method::GET, "/console/").send().await;
    assert!(
        reply
            .body
            .as_str()
            .is_some_and(|p| p.contains("/console/app.js"))
    );
}

/// The `Set-Cookie` value and the session token in it.
fn session_cookie(reply: &crate::harness::Reply) -> (String, String) {
    let cookie = reply.header("set-cookie").to_owned();
    let token = cookie
        .strip_prefix("rportd_session=")
        .and_then(|rest| rest.split(';').next())
        .expect("a rportd_session cookie")
        .to_owned();
    (cookie, token)
}

async fn cookie_login(server: &TestServer, user: &str, password: &str) -> (String, String) {
    let reply = server
        .call(Method::POST, "/api/v1/login?cookie=true")
        .json(&json!({"username": user, "password": password}))
        .send()
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.body["data"]["token"],
        Value::Null,
        "no token in the body"
    );
    session_cookie(&reply)
}

#[tokio::test]
async fn a_cookie_login_sets_an_httponly_strict_cookie_the_api_takes_and_logout_ends() {
    let server = TestServer::start().await;
    let (cookie, token) = cookie_login(&server, ADMIN, ADMIN_PASSWORD).await;
    assert!(cookie.contains("; Path=/"), "{cookie}");
    assert!(cookie.contains("; HttpOnly"), "{cookie}");
    assert!(cookie.contains("; SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    // A working day, not the ten minutes of a script's login.
    assert!(cookie.contains("; Max-Age=28800;"), "{cookie}");
    let jar = format!("rportd_session={token}");
    let me = server
        .call(Method::GET, "/api/v1/me")
        .header("cookie", &jar)
        .send()
        .await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["data"]["username"], ADMIN);
    // Bearer wins over the cookie.
    let wrong = server
        .call(Method::GET, "/api/v1/me")
        .header("cookie", &jar)
        .auth("Bearer not-a-token")
        .send()
        .await;
    assert_eq!(wrong.status, 401);

    let logout = server
        .call(Method::DELETE, "/api/v1/logout")
        .header("cookie", &jar)
        .header("origin", "http://localhost")
        .header("host", "localhost")
        .send()
        .await;
    assert_eq!(logout.status, 204, "{}", logout.body);
    assert!(logout.header("set-cookie").contains("Max-Age=0"));
    let after = server
        .call(Method::GET, "/api/v1/me")
        .header("cookie", &jar)
        .header("sec-fetch-mode", "cors")
        .send()
        .await;
    assert_eq!(after.status, 401);
    // No password dialog in the browser over the console's login page.
    assert_eq!(after.header("www-authenticate"), "");
    let scripted = server.call(Method::GET, "/api/v1/me").send().await;
    assert!(scripted.header("www-authenticate").starts_with("Basic"));
}

#[tokio::test]
async fn the_cookie_is_secure_behind_a_trusted_https_proxy() {
    let server = TestServer::with(Setup {
        api: "trusted_proxies = [\"127.0.0.1\"]\n".into(),
        ..Default::default()
    })
    .await;
    let reply = server
        .call(Method::POST, "/api/v1/login?cookie=true")
        .header("x-forwarded-proto", "https")
        .json(&json!({"username": ADMIN, "password": ADMIN_PASSWORD}))
        .send()
        .await;
    assert!(
        reply.header("set-cookie").contains("; Secure"),
        "{:?}",
        reply.headers
    );
}

#[tokio::test]
async fn a_write_with_the_cookie_alone_needs_an_origin_or_sec_fetch_site() {
    let server = TestServer::start().await;
    let (_, token) = cookie_login(&server, ADMIN, ADMIN_PASSWORD).await;
    let jar = format!("rportd_session={token}");
    let project = |key: &str| json!({ "key": key });
    // No Origin, no Sec-Fetch-Site: what a form of another site or a stray tool sends.
    let refused = server
        .call(Method::POST, "/api/v1/projects")
        .header("cookie", &jar)
        .json(&project("p1"))
        .send()
        .await;
    refused.assert_error(403, "ERR_CODE_FORBIDDEN");
    // Another site's Origin.
    let refused = server
        .call(Method::POST, "/api/v1/projects")
        .header("cookie", &jar)
        .header("host", "rportd.example.com")
        .header("origin", "https://evil.example.net")
        .json(&project("p2"))
        .send()
        .await;
    refused.assert_error(403, "ERR_CODE_FORBIDDEN");
    let cross_site = server
        .call(Method::POST, "/api/v1/projects")
        .header("cookie", &jar)
        .header("sec-fetch-site", "cross-site")
        .json(&project("p3"))
        .send()
        .await;
    cross_site.assert_error(403, "ERR_CODE_FORBIDDEN");
    // The console's own requests.
    let same = server
        .call(Method::POST, "/api/v1/projects")
        .header("cookie", &jar)
        .header("host", "rportd.example.com")
        .header("origin", "http://rportd.example.com")
        .json(&project("p4"))
        .send()
        .await;
    assert_eq!(same.status, 201, "{}", same.body);
    let same = server
        .call(Method::POST, "/api/v1/projects")
        .header("cookie", &jar)
        .header("sec-fetch-site", "same-origin")
        .json(&project("p5"))
        .send()
        .await;
    assert_eq!(same.status, 201, "{}", same.body);
    // Reads need neither; a bearer token needs neither.
    let read = server
        .call(Method::GET, "/api/v1/projects")
        .header("cookie", &jar)
        .send()
        .await;
    assert_eq!(read.status, 200);
    let scripted = server
        .send_json(Method::POST, "/api/v1/projects", &admin(), &project("p6"))
        .await;
    assert_eq!(scripted.status, 201, "{}", scripted.body);
}

#[tokio::test]
async fn with_totp_the_second_step_sets_the_cookie() {
    let server = TestServer::with(Setup {
        api: "totp_enabled = true\n".into(),
        ..Default::default()
    })
    .await;
    let first = server
        .call(Method::POST, "/api/v1/login?cookie=true")
        .json(&json!({"username": ADMIN, "password": ADMIN_PASSWORD}))
        .send()
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(first.body["data"]["two_fa"].is_object(), "{}", first.body);
    assert_eq!(first.header("set-cookie"), "", "no session before the code");
    let second_factor = format!(
        "Bearer {}",
        first.body["data"]["token"].as_str().expect("2fa token")
    );
    let secret = server
        .call(Method::POST, "/api/v1/me/totp-secret")
        .auth(&second_factor)
        .send()
        .await;
    assert_eq!(secret.status, 200, "{}", secret.body);
    let key = secret.body["data"]["secret"]
        .as_str()
        .or_else(|| secret.body["secret"].as_str())
        .expect("secret")
        .to_owned();
    let code = crate::totp::code(&key, chrono::Utc::now().timestamp() as u64);
    let verified = server
        .call(Method::POST, "/api/v1/verify-2fa?cookie=true")
        .auth(&second_factor)
        .json(&json!({"username": ADMIN, "token": code}))
        .send()
        .await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    assert_eq!(verified.body["data"]["token"], Value::Null);
    let (_, token) = session_cookie(&verified);
    let me = server
        .call(Method::GET, "/api/v1/me")
        .header("cookie", &format!("rportd_session={token}"))
        .send()
        .await;
    assert_eq!(me.status, 200, "{}", me.body);
}

/// The next server-sent event of `body` (its text up to the blank line), skipping
/// comments; `None` after `wait` without one.
async fn next_event(body: &mut axum::body::Body, wait: Duration) -> Option<String> {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .ok()??;
        let Ok(frame) = frame else { return None };
        if let Some(data) = frame.data_ref() {
            text.push_str(&String::from_utf8_lossy(data));
        }
        while let Some((event, rest)) = text.split_once("\n\n") {
            let event = event.to_owned();
            text = rest.to_owned();
            if event.lines().any(|line| line.starts_with("event:")) {
                return Some(event);
            }
        }
    }
}

#[tokio::test]
async fn the_event_stream_says_ready_and_tells_each_caller_only_of_its_projects() {
    let server = TestServer::with(Setup::two_projects()).await;
    let viewer = server.user("vera", json!({"default": "viewer"})).await;
    let response = server
        .call(Method::GET, "/api/v1/events")
        .auth(&viewer)
        .open()
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "{:?}",
        response.headers()
    );
    let mut body = response.into_body();
    let ready = next_event(&mut body, Duration::from_secs(5)).await;
    assert!(ready.is_some_and(|e| e.contains("event: ready")));
    // c2 (berlin) is forgotten first: vera must not hear of it; then c1 (default).
    for id in ["c2", "c1"] {
        let reply = server
            .request(Method::DELETE, &format!("/api/v1/clients/{id}"), &admin())
            .await;
        assert_eq!(reply.status, 204, "{id}: {}", reply.body);
    }
    let event = next_event(&mut body, Duration::from_secs(5))
        .await
        .expect("an event for c1");
    assert!(event.contains("event: client"), "{event}");
    assert!(event.contains("\"id\":\"c1\""), "{event}");
    assert!(!event.contains("c2"), "{event}");
}

#[tokio::test]
async fn event_streams_are_bounded_per_user_and_refused_without_login() {
    let server = TestServer::start().await;
    let refused = server.call(Method::GET, "/api/v1/events").send().await;
    refused.assert_error(401, "ERR_CODE_UNAUTHORIZED");
    let token = server.login(ADMIN, ADMIN_PASSWORD).await;
    let mut open = Vec::new();
    for _ in 0..rport_server::MAX_EVENT_STREAMS_PER_USER {
        let response = server
            .call(Method::GET, "/api/v1/events")
            .auth(&token)
            .open()
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        open.push(response);
    }
    let beyond = server
        .call(Method::GET, "/api/v1/events")
        .auth(&token)
        .send()
        .await;
    beyond.assert_error(429, "ERR_CODE_TOO_MANY_STREAMS");
    // A stream that ends frees its place.
    drop(open.pop());
    let again = server
        .call(Method::GET, "/api/v1/events")
        .auth(&token)
        .open()
        .await;
    assert_eq!(again.status(), StatusCode::OK);
}
