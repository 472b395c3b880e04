//! `/api/v1/clients/{client_id}/stored-tunnels`: RPort's saved tunnel definitions, with
//! its list options, answers and error codes; starting one answers as opening it would.

use axum::http::Method;
use serde_json::{Value, json};

use crate::harness::{Setup, TestServer, admin};
use crate::rport_schema::assert_rport_schema;

/// RPort's `components/schemas/StoredTunnel.yaml`.
fn rport_stored_tunnel_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "created_at": {"type": "string"},
            "name": {"type": "string"},
            "remote_ip": {"type": "string", "nullable": true},
            "remote_port": {"type": "integer", "nullable": true},
            "public_port": {"type": "integer", "nullable": true},
            "scheme": {"type": "string", "nullable": true},
            "acl": {"type": "string", "nullable": true},
            "further_options": {"type": "object", "nullable": true}
        }
    })
}

const BASE: &str = "/api/v1/clients/c1/stored-tunnels";

async fn store_one(server: &TestServer, body: Value) -> Value {
    let reply = server.send_json(Method::POST, BASE, &admin(), &body).await;
    let saved = reply.assert_data(200).clone();
    assert_rport_schema(&saved, &rport_stored_tunnel_schema());
    saved
}

fn names(reply: &Value) -> Vec<&str> {
    reply["data"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|t| t["name"].as_str().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn stored_tunnels_are_saved_listed_changed_and_deleted() {
    let server = TestServer::with(Setup::two_projects()).await;
    let ssh = store_one(
        &server,
        json!({
            "name": "ssh", "scheme": "ssh", "remote_ip": "127.0.0.1", "remote_port": 22,
            "acl": "10.0.0.0/8", "further_options": {"idle_timeout_minutes": 30},
            "id": "ignored", "created_at": "ignored"
        }),
    )
    .await;
    assert_ne!(ssh["id"], "ignored");
    assert_eq!(ssh["further_options"], json!({"idle_timeout_minutes": 30}));
    // The listing is oldest first and times are kept to the millisecond: two made in the
    // same one would come in the order of their random ids.
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    store_one(
        &server,
        json!({"name": "web", "scheme": "https", "remote_port": 443, "public_port": 20443}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    store_one(
        &server,
        json!({"name": "rdp", "scheme": "rdp", "remote_port": 3389}),
    )
    .await;

    let listing = server.request(Method::GET, BASE, &admin()).await;
    listing.assert_data(200);
    assert_rport_schema(
        &listing.body,
        &json!({
            "type": "object",
            "properties": {
                "data": {"type": "array", "items": rport_stored_tunnel_schema()},
                "meta": {"type": "object", "properties": {"count": {"type": "integer"}}}
            }
        }),
    );
    assert_eq!(names(&listing.body), ["ssh", "web", "rdp"], "oldest first");
    assert_eq!(listing.body["data"][0], ssh);
    let cases = [
        ("filter[scheme]=https,rdp", vec!["web", "rdp"], 2),
        ("filter[name]=S*", vec!["ssh"], 1),
        ("filter[remote_port]=22", vec!["ssh"], 1),
        ("filter[remote_ip]=", vec!["web", "rdp"], 2),
        ("sort=-remote_port", vec!["rdp", "web", "ssh"], 3),
        ("sort=name&page[limit]=1&page[offset]=1", vec!["ssh"], 3),
        // RPort's `*` column and `and(...)`: every value matched by some column.
        ("filter[*]=and(ssh,22)", vec!["ssh"], 1),
        ("filter[*]=and(https,3389)", vec![], 0),
        ("filter[name|scheme]=or(rdp,ftp)", vec!["rdp"], 1),
    ];
    for (query, expected, count) in cases {
        let reply = server
            .request(Method::GET, &format!("{BASE}?{query}"), &admin())
            .await;
        reply.assert_data(200);
        assert_eq!(names(&reply.body), expected, "{query}");
        assert_eq!(reply.count(), count, "{query}");
    }
    for query in [
        "filter[acl]=x",
        "sort=acl",
        "page[limit]=101",
        "page[size]=2",
        "page[limit]=-1",
        "filter[name][gt]=a",
    ] {
        let reply = server
            .request(Method::GET, &format!("{BASE}?{query}"), &admin())
            .await;
        reply.assert_error(400, "ERR_CODE_INVALID_REQUEST");
    }

    let id = ssh["id"].as_str().expect("id");
    let reply = server
        .send_json(
            Method::PUT,
            &format!("{BASE}/{id}"),
            &admin(),
            &json!({"name": "ssh 2", "scheme": "ssh", "remote_port": 2222}),
        )
        .await;
    let changed = reply.assert_data(200).clone();
    assert_rport_schema(&changed, &rport_stored_tunnel_schema());
    assert_eq!(
        (
            &changed["id"],
            &changed["created_at"],
            &changed["name"],
            &changed["acl"]
        ),
        (
            &ssh["id"],
            &ssh["created_at"],
            &json!("ssh 2"),
            &Value::Null
        ),
        "all of it replaced but its id and creation time"
    );
    server
        .send_json(
            Method::PUT,
            &format!("{BASE}/nope"),
            &admin(),
            &json!({"name": "x"}),
        )
        .await
        .assert_error(404, "ERR_CODE_NOT_FOUND");
    let reply = server
        .request(Method::DELETE, &format!("{BASE}/{id}"), &admin())
        .await;
    assert_eq!(reply.status.as_u16(), 204, "{}", reply.body);
    server
        .request(Method::DELETE, &format!("{BASE}/{id}"), &admin())
        .await
        .assert_error(404, "ERR_CODE_NOT_FOUND");
    assert_eq!(server.request(Method::GET, BASE, &admin()).await.count(), 2);

    // Each change is in the audit log, with the client.
    let log = server
        .request(
            Method::GET,
            "/api/v1/auditlog?filter[application]=client.tunnel.stored&filter[client_id]=c1",
            &admin(),
        )
        .await;
    assert_eq!(log.count(), 5, "{}", log.body);

    // Gone with their client.
    let reply = server
        .request(Method::DELETE, "/api/v1/clients/c1", &admin())
        .await;
    assert_eq!(reply.status.as_u16(), 204, "{}", reply.body);
    server
        .request(Method::GET, BASE, &admin())
        .await
        .assert_error(404, "ERR_CODE_CLIENT_NOT_FOUND");
}

#[tokio::test]
async fn bad_bodies_and_unknown_clients_get_rports_codes() {
    let server = TestServer::with(Setup::two_projects()).await;
    let cases = [
        (
            json!({"name": "x", "colour": "red"}),
            "ERR_CODE_INVALID_REQUEST",
        ),
        (
            json!({"name": "x", "remote_port": 70000}),
            "ERR_CODE_INVALID_REQUEST",
        ),
        (
            json!({"name": "x", "scheme": "a-very-long-scheme"}),
            "ERR_CODE_URI_SCHEME_LENGTH_EXCEED",
        ),
        (
            json!({"name": "x", "acl": "0.0.0.0"}),
            "ERR_CODE_INVALID_ACL",
        ),
        (
            json!({"name": "x", "further_options": [1]}),
            "ERR_CODE_INVALID_REQUEST",
        ),
    ];
    for (body, code) in cases {
        server
            .send_json(Method::POST, BASE, &admin(), &body)
            .await
            .assert_error(400, code);
    }
    server
        .send_json(
            Method::POST,
            "/api/v1/clients/nope/stored-tunnels",
            &admin(),
            &json!({"name": "x"}),
        )
        .await
        .assert_error(404, "ERR_CODE_CLIENT_NOT_FOUND");
    server
        .request(Method::GET, "/api/v1/clients/nope/stored-tunnels", &admin())
        .await
        .assert_error(404, "ERR_CODE_CLIENT_NOT_FOUND");
}

#[tokio::test]
async fn viewers_read_tunnels_role_writes_and_other_projects_do_not_exist() {
    let server = TestServer::with(Setup::two_projects()).await;
    let saved = store_one(&server, json!({"name": "ssh", "remote_port": 22})).await;
    let id = saved["id"].as_str().expect("id");
    let vic = server.user("vic", json!({"default": "viewer"})).await;
    let tom = server.user("tom", json!({"default": "tunnels"})).await;
    server
        .request(Method::GET, BASE, &vic)
        .await
        .assert_data(200);
    server
        .send_json(Method::POST, BASE, &vic, &json!({"name": "x"}))
        .await
        .assert_error(403, "ERR_CODE_FORBIDDEN");
    server
        .request(Method::DELETE, &format!("{BASE}/{id}"), &vic)
        .await
        .assert_error(403, "ERR_CODE_FORBIDDEN");
    server
        .request(Method::POST, &format!("{BASE}/{id}/start"), &vic)
        .await
        .assert_error(403, "ERR_CODE_FORBIDDEN");
    server
        .send_json(Method::POST, BASE, &tom, &json!({"name": "x"}))
        .await
        .assert_data(200);
    server
        .request(Method::GET, "/api/v1/clients/c2/stored-tunnels", &tom)
        .await
        .assert_error(404, "ERR_CODE_CLIENT_NOT_FOUND");
}

#[tokio::test]
async fn starting_answers_as_opening_would() {
    let server = TestServer::with(Setup::two_projects()).await;
    let saved = store_one(&server, json!({"name": "ssh", "remote_port": 22})).await;
    let id = saved["id"].as_str().expect("id");
    // c1 is disconnected: the same answer as PUT /clients/c1/tunnels.
    let opened = server
        .request(
            Method::PUT,
            "/api/v1/clients/c1/tunnels?remote=22",
            &admin(),
        )
        .await;
    let started = server
        .request(Method::POST, &format!("{BASE}/{id}/start"), &admin())
        .await;
    started.assert_error(404, "ERR_CODE_CLIENT_NOT_FOUND");
    assert_eq!(started.body, opened.body);
    server
        .request(Method::POST, &format!("{BASE}/nope/start"), &admin())
        .await
        .assert_error(404, "ERR_CODE_NOT_FOUND");
    let bare = store_one(&server, json!({"name": "no port"})).await;
    server
        .request(
            Method::POST,
            &format!("{BASE}/{}/start", bare["id"].as_str().expect("id")),
            &admin(),
        )
        .await
        .assert_error(400, "ERR_CODE_INVALID_REQUEST");
}
