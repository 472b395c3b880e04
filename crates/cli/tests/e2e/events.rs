//! The console's live feed (`GET /api/v1/events`) against real processes: a tunnel's
//! opening, ACL change and closing reach the streams of its project's users, and no one
//! else's.

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

const WAIT: Duration = Duration::from_secs(15);

/// The events of one stream, each as (name, data), read on a thread of its own until the
/// stream ends; its `ready` is awaited before this returns.
pub(crate) fn subscribe(server: &Rportd, authorization: &str) -> mpsc::Receiver<(String, Value)> {
    let http = ureq::Agent::new_with_defaults();
    let response = http
        .get(format!("{}/api/v1/events", server.api))
        .header("Authorization", authorization)
        .call()
        .expect("the event stream opens");
    let (sender, events) = mpsc::channel();
    thread::spawn(move || {
        let reader = BufReader::new(response.into_body().into_reader());
        let mut name = String::new();
        for line in reader.lines() {
            let Ok(line) = line else { return };
            if let Some(event) = line.strip_prefix("event:") {
                name = event.trim().to_owned();
            } else if let Some(data) = line.strip_prefix("data:") {
                let data = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
                if sender.send((std::mem::take(&mut name), data)).is_err() {
                    return;
                }
            }
        }
    });
    let (first, _) = events.recv_timeout(WAIT).expect("ready");
    assert_eq!(first, "ready");
    events
}

/// The next `tunnel` event of `events` (client events are skipped).
pub(crate) fn next_tunnel_event(events: &mpsc::Receiver<(String, Value)>) -> Value {
    loop {
        let (name, data) = events.recv_timeout(WAIT).expect("a tunnel event");
        if name == "tunnel" {
            return data;
        }
    }
}

#[test]
fn tunnel_changes_reach_the_streams_of_their_project_only() {
    let dir = tempdir();
    let server = Rportd::start(dir.path());
    for (path, body) in [
        ("/api/v1/projects", json!({"key": "other"})),
        (
            "/api/v1/users",
            json!({"username": "olga", "password": "olga-long-password-1", "roles": {"other": "viewer"}}),
        ),
    ] {
        let created = server.call("POST", path, &server.auth_header, &[], Some(&body));
        assert_eq!(created.status, 201, "{path}: {}", created.body);
    }
    let _agent = Rport::attach(&server, "c1", &dir.path().join("agent"));
    server.wait_connection_state("c1", "connected", Duration::from_secs(30));

    let admin = subscribe(&server, &server.auth_header);
    let outsider = subscribe(&server, &basic("olga", "olga-long-password-1"));
    let echo = echo_server();
    let tunnel = server.open_tunnel("c1", &format!("remote={}", echo.port()));
    let id = tunnel["id"].as_str().expect("id").to_owned();
    let opened = next_tunnel_event(&admin);
    assert_eq!(
        opened,
        json!({"id": id, "client_id": "c1", "project": "default", "status": "opened"})
    );

    let (status, body) = server.send_json(
        "PUT",
        &format!("/api/v1/clients/c1/tunnels/{id}/acl"),
        &json!({"acl": "127.0.0.1"}),
    );
    assert!(status < 300, "{status} {body}");
    let changed = next_tunnel_event(&admin);
    assert_eq!(
        (&changed["id"], &changed["status"]),
        (&json!(id), &json!("opened"))
    );

    let (status, body) = server.request("DELETE", &format!("/api/v1/clients/c1/tunnels/{id}"));
    assert_eq!(status, 204, "{body}");
    let closed = next_tunnel_event(&admin);
    assert_eq!(
        (&closed["id"], &closed["status"]),
        (&json!(id), &json!("closed"))
    );

    // The same changes went to every stream at once; olga's project is another.
    while let Ok((name, data)) = outsider.recv_timeout(Duration::from_secs(2)) {
        assert_ne!(
            name, "tunnel",
            "olga heard of a tunnel of project default: {data}"
        );
        assert_ne!(
            name, "client",
            "olga heard of a client of project default: {data}"
        );
    }
}
