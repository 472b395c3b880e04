//! `[api] doc_root` over a real socket: the raw request paths a browser or an attacker
//! sends (no client-side normalising of `..`) reach the server as they are.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::*;

/// Status line and body of a raw `GET path` to the API's address.
fn raw_get(server: &Rportd, path: &str) -> (String, String) {
    let address = server.api.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).expect("connect to the API");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    let status = answer.lines().next().unwrap_or_default().to_owned();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn the_web_ui_is_served_beside_the_api_and_nothing_outside_it() {
    let dir = tempdir();
    let root = dir.path().join("ui");
    std::fs::create_dir_all(root.join("assets")).expect("dirs");
    std::fs::write(root.join("index.html"), "<title>the ui</title>").expect("index");
    std::fs::write(root.join("assets/app.js"), "let ui = 1;").expect("asset");
    std::fs::write(dir.path().join("secret.txt"), "outside the root").expect("secret");
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("leak.txt"))
        .expect("symlink");
    let settings = ServerSettings {
        extra_api: format!("doc_root = {:?}\n", root.display().to_string()),
        ..Default::default()
    };
    let server_dir = dir.path().join("server");
    std::fs::create_dir_all(&server_dir).expect("server dir");
    let server = Rportd::start_with(&server_dir, &settings);

    let (status, body) = raw_get(&server, "/");
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(body, "<title>the ui</title>");
    let (status, body) = raw_get(&server, "/assets/app.js");
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(body, "let ui = 1;");
    let (status, body) = raw_get(&server, "/inventory/some-client");
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(
        body, "<title>the ui</title>",
        "the UI's routes get index.html"
    );

    for path in [
        "/../secret.txt",
        "/assets/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/assets/%2E%2E/%2e%2e/secret.txt",
        "/leak.txt",
        "/assets/",
    ] {
        let (status, body) = raw_get(&server, path);
        assert!(
            status.contains(" 404 ") || status.contains(" 400 "),
            "{path}: {status}"
        );
        assert!(!body.contains("outside the root"), "{path}: {body}");
    }

    // The API keeps its paths.
    let (status, body) = server.request("GET", "/api/v1/status");
    assert_eq!(status, 200, "{body}");
}
