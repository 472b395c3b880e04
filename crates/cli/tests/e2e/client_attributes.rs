//! End to end: tags set through the API over a real agent's own (RPort's attributes), a
//! client group holding it by those tags, and both kept when the agent connects again.

use serde_json::json;

use crate::support::*;

fn ids(list: &serde_json::Value) -> Vec<String> {
    list["data"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|c| c["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn attributes_set_through_the_api_replace_the_agents_own_and_survive_a_reconnect() {
    let dir = tempdir();
    let server = Rportd::start(dir.path());
    let mut agent = Rport::attach(&server, "my-client-1", &dir.path().join("agent"));
    server.wait_connection_state("my-client-1", "connected", ATTACH);

    // The agent's own tags (Linux, Office Berlin), with RPort's and(...)/or(...).
    let (status, list) = server.request(
        "GET",
        "/api/v1/clients?filter[tags]=and(Linux,Office%20Berlin)",
    );
    assert_eq!(
        (status, ids(&list)),
        (200, vec!["my-client-1".to_owned()]),
        "{list}"
    );
    let (_, list) = server.request("GET", "/api/v1/clients?filter[tags]=and(Linux,Windows)");
    assert!(ids(&list).is_empty(), "{list}");
    let (_, list) = server.request("GET", "/api/v1/clients?filter[tags]=or(Windows,Linux)");
    assert_eq!(ids(&list), ["my-client-1"], "{list}");

    // A group by tag, then the tags replaced through the API.
    let group = json!({"id": "db-servers", "params": {"tag": {"and": ["db*"]}}});
    let (status, body) = server.send_json("POST", "/api/v1/client-groups", &group);
    assert_eq!(status, 201, "{body}");
    let attributes = json!({"tags": ["db-primary"], "labels": {"site": "fra1"}});
    let (status, body) =
        server.send_json("PUT", "/api/v1/clients/my-client-1/attributes", &attributes);
    assert_eq!((status, &body["data"]), (200, &json!("ok")), "{body}");

    let check = |why: &str| {
        let client = server.client("my-client-1").expect("listed");
        assert_eq!(client["tags"], json!(["db-primary"]), "{why}: {client}");
        assert_eq!(client["labels"], json!({"site": "fra1"}), "{why}: {client}");
        let (_, group) = server.request("GET", "/api/v1/client-groups/db-servers");
        assert_eq!(
            group["data"]["client_ids"],
            json!(["my-client-1"]),
            "{why}: {group}"
        );
        let (_, list) = server.request("GET", "/api/v1/clients?filter[groups]=db-servers");
        assert_eq!(ids(&list), ["my-client-1"], "{why}: {list}");
    };
    check("after the PUT");

    // A connected client cannot be deleted (400, as RPort).
    let (status, body) = server.request("DELETE", "/api/v1/clients/my-client-1");
    assert_eq!(
        (status, error_code(&body)),
        (400, "ERR_CODE_CLIENT_CONNECTED"),
        "{body}"
    );

    // The agent reports its own tags again on reconnecting; the API's stay.
    agent.kill();
    server.wait_connection_state("my-client-1", "disconnected", ATTACH);
    let _agent = Rport::attach(&server, "my-client-1", &dir.path().join("agent"));
    server.wait_connection_state("my-client-1", "connected", ATTACH);
    check("after a reconnect");
}
