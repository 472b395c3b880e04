//! `[api] doc_root`: a web UI bundle served at `/` beside the API: files with their
//! content types, `index.html` for the UI's own routes, nothing outside the directory,
//! no listings, and the API first.

use axum::http::Method;
use serde_json::Value;

use crate::harness::{Setup, TestServer, admin};

/// A bundle like openrport-ui's, beside a secret file outside it and a symlink out.
fn bundle() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("ui");
    std::fs::create_dir_all(root.join("assets/empty")).expect("dirs");
    std::fs::write(root.join("index.html"), "<!doctype html><title>ui</title>").expect("index");
    std::fs::write(root.join("assets/app.js"), "console.log(1)").expect("js");
    std::fs::write(root.join("assets/app.css"), "body{}").expect("css");
    std::fs::write(dir.path().join("secret.txt"), "outside").expect("secret");
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("leak.txt"))
            .expect("symlink out");
        std::os::unix::fs::symlink(dir.path(), root.join("up")).expect("dir symlink out");
        std::os::unix::fs::symlink(root.join("assets/app.js"), root.join("inside.js"))
            .expect("symlink in");
    }
    (dir, root)
}

async fn server_for(root: &std::path::Path) -> TestServer {
    TestServer::with(Setup {
        api: format!("doc_root = \"{}\"\n", root.display()),
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn files_are_served_with_their_types_and_ui_routes_get_index_html() {
    let (_dir, root) = bundle();
    let server = server_for(&root).await;
    let index = "<!doctype html><title>ui</title>";
    for (path, body, content_type) in [
        ("/", index, "text/html; charset=utf-8"),
        ("/index.html", index, "text/html; charset=utf-8"),
        (
            "/assets/app.js",
            "console.log(1)",
            "text/javascript; charset=utf-8",
        ),
        ("/assets/app.css", "body{}", "text/css; charset=utf-8"),
        (
            "/assets/%61pp.js",
            "console.log(1)",
            "text/javascript; charset=utf-8",
        ),
        // As RPort: the single-page app's history routes answer with index.html.
        ("/dashboard", index, "text/html; charset=utf-8"),
        ("/tunnels/some/deep/link", index, "text/html; charset=utf-8"),
    ] {
        let reply = server.call(Method::GET, path).send().await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        assert_eq!(reply.body, Value::String(body.into()), "{path}");
        assert_eq!(reply.header("content-type"), content_type, "{path}");
        assert_eq!(reply.header("x-content-type-options"), "nosniff", "{path}");
    }
    #[cfg(unix)]
    {
        let inside = server.call(Method::GET, "/inside.js").send().await;
        assert_eq!(inside.status, 200, "a symlink inside the root is followed");
    }
    let head = server.call(Method::HEAD, "/assets/app.js").send().await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), "14");
    assert_eq!(head.body, Value::Null);

    // Anything else is the API's JSON "not found"; other methods are refused.
    server
        .call(Method::GET, "/nothing-here.js")
        .send()
        .await
        .assert_error(404, "ERR_CODE_NOT_FOUND");
    server
        .call(Method::POST, "/assets/app.js")
        .send()
        .await
        .assert_error(405, "ERR_CODE_METHOD_NOT_ALLOWED");

    // The API keeps its paths, its unknown ones included.
    let status = server.request(Method::GET, "/api/v1/users", &admin()).await;
    status.assert_data(200);
    server
        .call(Method::GET, "/api/v1/dashboard")
        .send()
        .await
        .assert_error(404, "ERR_CODE_NOT_FOUND");
}

#[tokio::test]
async fn nothing_outside_the_root_and_no_listings() {
    let (_dir, root) = bundle();
    let server = server_for(&root).await;
    let refused = [
        "/../secret.txt",
        "/assets/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/assets/%2e%2e/%2e%2e/secret.txt",
        "/..%5csecret.txt",
        "/assets/empty",
        "/assets/empty/",
        "/assets/",
        "/leak.txt",
        "/up/secret.txt",
        "/%00",
        "/%zz",
    ];
    for path in refused {
        let reply = server.call(Method::GET, path).send().await;
        assert_eq!(reply.status, 404, "{path}: {}", reply.body);
        assert!(
            !reply.body.to_string().contains("outside"),
            "{path}: {}",
            reply.body
        );
    }
}

#[tokio::test]
async fn without_doc_root_slash_is_the_console() {
    let server = TestServer::start().await;
    let reply = server.call(Method::GET, "/").send().await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .body
            .as_str()
            .is_some_and(|page| page.contains("/console/app.js"))
    );
    server
        .call(Method::GET, "/elsewhere")
        .send()
        .await
        .assert_error(404, "ERR_CODE_NOT_FOUND");
}
