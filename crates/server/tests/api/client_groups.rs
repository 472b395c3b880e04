//! RPort's list grammar on every list, client groups, client tags, client attributes and
//! the client ACL: shapes quoted from RPort's schema, status and error codes, and that a
//! tenant sees nothing of another project through any of them.

use axum::http::Method;
use serde_json::{Value, json};

use crate::harness::{Setup, TestServer, admin};
use crate::rport_schema::assert_rport_schema;

/// `alpha` (Linux, Office Berlin), `beta` (Linux), `gamma` (Windows) in `default`;
/// `delta` (Linux, Office Berlin) in `berlin`.
async fn fleet() -> TestServer {
    let server = TestServer::with(Setup {
        projects: vec!["berlin"],
        clients: vec![
            ("alpha", "default"),
            ("beta", "default"),
            ("gamma", "default"),
            ("delta", "berlin"),
        ],
        ..Default::default()
    })
    .await;
    for (id, tags) in [
        ("alpha", json!(["Linux", "Office Berlin"])),
        ("beta", json!(["Linux"])),
        ("gamma", json!(["Windows"])),
        ("delta", json!(["Linux", "Office Berlin"])),
    ] {
        let body = json!({"tags": tags, "labels": {"city": "Berlin", "rack": id}});
        let reply = server
            .send_json(
                Method::PUT,
                &format!("/api/v1/clients/{id}/attributes"),
                &admin(),
                &body,
            )
            .await;
        assert_eq!(reply.assert_data(200), &json!("ok"));
    }
    server
}

fn ids(listing: &Value) -> Vec<&str> {
    listing["data"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|c| c["id"].as_str().unwrap_or_default())
        .collect()
}

async fn list_ids(server: &TestServer, query: &str, auth: &str) -> Vec<String> {
    let query = query.replace(' ', "%20").replace('|', "%7C");
    let reply = server
        .request(Method::GET, &format!("/api/v1/clients?{query}"), auth)
        .await;
    reply.assert_data(200);
    ids(&reply.body).into_iter().map(str::to_owned).collect()
}

#[tokio::test]
async fn the_whole_filter_grammar_on_clients() {
    let server = fleet().await;
    let cases: &[(&str, &[&str])] = &[
        // and(...): every value matched; or(...): any.
        ("filter[tags]=and(Linux,Office Berlin)", &["alpha", "delta"]),
        (
            "filter[tags]=or(Windows,Linux)",
            &["alpha", "beta", "delta", "gamma"],
        ),
        (
            "filter[tags]=Windows,linux",
            &["alpha", "beta", "delta", "gamma"],
        ),
        ("filter[tags]=*berlin", &["alpha", "delta"]),
        // Several fields, every field.
        (
            "filter[id|tags]=gamma,Office*",
            &["alpha", "delta", "gamma"],
        ),
        ("filter[*]=beta", &["beta"]),
        ("filter[*]=rack: g*", &["gamma"]),
        ("filter[labels]=rack: alpha", &["alpha"]),
        // Filters combine with AND.
        ("filter[tags]=Linux&filter[project]=berlin", &["delta"]),
        ("filter[tags]=Linux&filter[id]=a*,d*", &["alpha", "delta"]),
    ];
    for (query, expected) in cases {
        assert_eq!(
            list_ids(&server, query, &admin()).await,
            *expected,
            "{query}"
        );
    }
    let reply = server
        .request(
            Method::GET,
            "/api/v1/clients?fields[clients]=id,tags,labels,allowed_user_groups,groups&filter[id]=alpha",
            &admin(),
        )
        .await;
    let client = &reply.assert_data(200)[0];
    // RPort's Client.yaml, the fields this area serves.
    assert_rport_schema(
        client,
        &json!({"type": "object", "properties": {
            "id": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "labels": {"type": "object"},
            "allowed_user_groups": {"type": "array", "items": {"type": "string"}},
            "groups": {"type": "array", "items": {"type": "string"}},
        }}),
    );
    assert_eq!(client["labels"], json!({"city": "Berlin", "rack": "alpha"}));
}

#[tokio::test]
async fn what_a_list_does_not_understand_is_a_400_naming_it() {
    let server = fleet().await;
    let cases = [
        (
            "/api/v1/clients?filter[colour]=red",
            "ERR_CODE_UNSUPPORTED_FILTER",
            "colour",
        ),
        (
            "/api/v1/clients?filter[id%7Ccolour]=x",
            "ERR_CODE_UNSUPPORTED_FILTER",
            "colour",
        ),
        (
            "/api/v1/clients?filter[name][gt]=x",
            "ERR_CODE_UNSUPPORTED_FILTER",
            "[gt]",
        ),
        (
            "/api/v1/clients?page[number]=2",
            "ERR_CODE_INVALID_PAGE",
            "page[number]",
        ),
        (
            "/api/v1/clients?page[limit]=-1",
            "ERR_CODE_INVALID_PAGE",
            "negative",
        ),
        (
            "/api/v1/clients?page[limit]=501",
            "ERR_CODE_INVALID_PAGE",
            "500",
        ),
        (
            "/api/v1/clients-auth?filter[project]=x",
            "ERR_CODE_UNSUPPORTED_FILTER",
            "project",
        ),
        (
            "/api/v1/clients-auth?sort=id",
            "ERR_CODE_INVALID_SORT",
            "id",
        ),
        (
            "/api/v1/clients-auth?page[limit]=x",
            "ERR_CODE_INVALID_PAGE",
            "x",
        ),
        (
            "/api/v1/tunnels?filter[colour]=x",
            "ERR_CODE_UNSUPPORTED_FILTER",
            "colour",
        ),
        ("/api/v1/tunnels?sort=id", "ERR_CODE_INVALID_SORT", "id"),
        (
            "/api/v1/users?filter[username]=x",
            "ERR_CODE_UNSUPPORTED_FILTER",
            "username",
        ),
        (
            "/api/v1/users?sort=username",
            "ERR_CODE_INVALID_SORT",
            "username",
        ),
        (
            "/api/v1/projects?filter[key]=x",
            "ERR_CODE_UNSUPPORTED_FILTER",
            "key",
        ),
        (
            "/api/v1/client-groups?filter[params]=x",
            "ERR_CODE_UNSUPPORTED_FILTER",
            "params",
        ),
        (
            "/api/v1/client-groups?fields[clients]=id",
            "ERR_CODE_INVALID_FIELDS",
            "clients",
        ),
        (
            "/api/v1/client-tags?filter[tag]=x",
            "ERR_CODE_UNSUPPORTED_FILTER",
            "tag",
        ),
        (
            "/api/v1/client-tags?sort=tag",
            "ERR_CODE_INVALID_SORT",
            "tag",
        ),
    ];
    for (path, code, named) in cases {
        let reply = server.request(Method::GET, path, &admin()).await;
        reply.assert_error(400, code);
        assert!(reply.detail().contains(named), "{path}: {}", reply.body);
    }
    // v2 pages with JFrog's limit and offset; RPort's options are refused there.
    let bearer = server
        .login(crate::harness::ADMIN, crate::harness::ADMIN_PASSWORD)
        .await;
    let reply = server
        .request(Method::GET, "/api/v2/default/port_tunnel?sort=id", &bearer)
        .await;
    reply.assert_error(400, "ERR_CODE_INVALID_SORT");
    let reply = server
        .request(Method::GET, "/api/v2/default/port_tunnel?limit=1", &bearer)
        .await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.body);
}

#[tokio::test]
async fn clients_auth_filters_by_id_and_pages_and_shows_one() {
    let server = TestServer::start().await;
    for id in ["berlin-agents", "paris-agents", "rome-agents"] {
        let reply = server
            .send_json(
                Method::POST,
                "/api/v1/clients-auth",
                &admin(),
                &json!({"id": id}),
            )
            .await;
        reply.assert_data(201);
    }
    let reply = server
        .request(
            Method::GET,
            "/api/v1/clients-auth?filter[id]=*is*,rome*",
            &admin(),
        )
        .await;
    reply.assert_data(200);
    assert_eq!(
        (reply.count(), ids(&reply.body)),
        (2, vec!["paris-agents", "rome-agents"])
    );
    let all = server
        .request(Method::GET, "/api/v1/clients-auth", &admin())
        .await;
    all.assert_data(200);
    let reply = server
        .request(
            Method::GET,
            "/api/v1/clients-auth?page[limit]=1&page[offset]=1",
            &admin(),
        )
        .await;
    reply.assert_data(200);
    assert_eq!(
        (reply.count(), ids(&reply.body)),
        (all.count(), vec![ids(&all.body)[1]])
    );

    let reply = server
        .request(Method::GET, "/api/v1/clients-auth/rome-agents", &admin())
        .await;
    let one = reply.assert_data(200);
    // RPort's ClientAuth.yaml; rportd never shows the password.
    assert_rport_schema(
        one,
        &json!({"type": "object", "properties": {"id": {"type": "string"}}}),
    );
    assert!(one.get("password").is_none(), "{one}");
    server
        .request(Method::GET, "/api/v1/clients-auth/nobody", &admin())
        .await
        .assert_error(404, "ERR_CODE_CLIENT_AUTH_NOT_FOUND");
}

/// RPort's ClientGroup.yaml.
fn group_schema() -> Value {
    let strings = json!({"type": "array", "items": {"type": "string"}, "nullable": true});
    json!({"type": "object", "properties": {
        "id": {"type": "string"},
        "description": {"type": "string"},
        "client_ids": {"type": "array", "items": {"type": "string"}},
        "params": {"type": "object", "properties": {
            "client_id": strings, "name": strings, "os": strings, "os_arch": strings,
            "os_family": strings, "os_kernel": strings, "hostname": strings,
            "ipv4": strings, "ipv6": strings,
            "tag": {"type": ["array", "object"], "nullable": true},
            "version": strings, "address": strings, "client_auth_id": strings,
        }},
        "allowed_user_groups": {"type": "array", "items": {"type": "string"}},
    }})
}

#[tokio::test]
async fn client_groups_are_dynamic_and_stay_in_their_project() {
    let server = fleet().await;
    let group = json!({
        "id": "berlin-linux",
        "description": "Linux in the Berlin office",
        "params": {"tag": {"and": ["linux", "office*"]}},
        "allowed_user_groups": ["ops"],
    });
    let reply = server
        .send_json(Method::POST, "/api/v1/client-groups", &admin(), &group)
        .await;
    assert_eq!(reply.status.as_u16(), 201, "{}", reply.body);
    server
        .send_json(Method::POST, "/api/v1/client-groups", &admin(), &group)
        .await
        .assert_error(409, "ERR_CODE_ALREADY_EXIST");

    let reply = server
        .request(Method::GET, "/api/v1/client-groups/berlin-linux", &admin())
        .await;
    let shown = reply.assert_data(200);
    assert_rport_schema(shown, &group_schema());
    // delta matches too, but belongs to project berlin: never a member of a default group.
    assert_eq!(shown["client_ids"], json!(["alpha"]));
    assert_eq!(shown["num_clients"], json!(1));

    // filter[groups] on /clients.
    assert_eq!(
        list_ids(&server, "filter[groups]=berlin-linux", &admin()).await,
        ["alpha"]
    );
    // The same in project berlin.
    let mut in_berlin = group.clone();
    in_berlin["id"] = json!("berlin-linux-b");
    in_berlin["project"] = json!("berlin");
    server
        .send_json(Method::POST, "/api/v1/client-groups", &admin(), &in_berlin)
        .await;
    assert_eq!(
        list_ids(&server, "filter[groups]=berlin-linux*", &admin()).await,
        ["alpha", "delta"]
    );

    // The list: id and description unless fields ask for more; sort, filter, page.
    let reply = server
        .request(Method::GET, "/api/v1/client-groups?sort=-id", &admin())
        .await;
    reply.assert_data(200);
    assert_eq!(reply.count(), 2);
    assert_eq!(
        reply.body["data"][0],
        json!({"id": "berlin-linux-b", "description": "Linux in the Berlin office"})
    );
    let reply = server
        .request(
            Method::GET,
            "/api/v1/client-groups?fields[client_groups]=id,client_ids&filter[id]=*-b",
            &admin(),
        )
        .await;
    assert_eq!(
        reply.assert_data(200),
        &json!([{"id": "berlin-linux-b", "client_ids": ["delta"]}])
    );

    // PUT replaces (204); the id in the body must be the path's.
    let mut changed = group.clone();
    changed["params"] = json!({"tag": ["windows"], "client_id": ["g*"]});
    let reply = server
        .send_json(
            Method::PUT,
            "/api/v1/client-groups/berlin-linux",
            &admin(),
            &changed,
        )
        .await;
    assert_eq!(reply.status.as_u16(), 204, "{}", reply.body);
    assert_eq!(
        list_ids(&server, "filter[groups]=berlin-linux", &admin()).await,
        ["gamma"]
    );
    server
        .send_json(
            Method::PUT,
            "/api/v1/client-groups/other",
            &admin(),
            &changed,
        )
        .await
        .assert_error(400, "ERR_CODE_INVALID_REQUEST");

    // RPort's checks on the id and the tag rule.
    for bad in [
        json!({"id": ""}),
        json!({"id": "has space"}),
        json!({"id": "x".repeat(31)}),
        json!({"id": "ok", "params": {"tag": {"xor": ["a"]}}}),
        json!({"id": "ok", "params": {"tag": []}}),
        json!({"id": "ok", "params": {"name": "not a list"}}),
    ] {
        server
            .send_json(Method::POST, "/api/v1/client-groups", &admin(), &bad)
            .await
            .assert_error(400, "ERR_CODE_INVALID_REQUEST");
    }

    let reply = server
        .request(
            Method::DELETE,
            "/api/v1/client-groups/berlin-linux",
            &admin(),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 204, "{}", reply.body);
    server
        .request(Method::GET, "/api/v1/client-groups/berlin-linux", &admin())
        .await
        .assert_error(404, "ERR_CODE_NOT_FOUND");
}

#[tokio::test]
async fn a_tenant_sees_no_other_project_through_groups_tags_or_attributes() {
    let server = fleet().await;
    server
        .send_json(
            Method::POST,
            "/api/v1/client-groups",
            &admin(),
            &json!({"id": "everything", "project": "berlin", "params": {"client_id": ["*"]}}),
        )
        .await;
    server
        .send_json(
            Method::POST,
            "/api/v1/client-groups",
            &admin(),
            &json!({"id": "all-default", "params": {"client_id": ["*"]}}),
        )
        .await;
    let viewer = server.user("vera", json!({"default": "viewer"})).await;

    let reply = server
        .request(
            Method::GET,
            "/api/v1/client-groups?fields[client_groups]=id,client_ids",
            &viewer,
        )
        .await;
    assert_eq!(
        reply.assert_data(200),
        &json!([{"id": "all-default", "client_ids": ["alpha", "beta", "gamma"]}])
    );
    server
        .request(Method::GET, "/api/v1/client-groups/everything", &viewer)
        .await
        .assert_error(404, "ERR_CODE_NOT_FOUND");
    assert!(
        list_ids(&server, "filter[groups]=everything", &viewer)
            .await
            .is_empty()
    );

    // Writes are for the project's admins.
    server
        .send_json(
            Method::POST,
            "/api/v1/client-groups",
            &viewer,
            &json!({"id": "mine"}),
        )
        .await
        .assert_error(403, "ERR_CODE_FORBIDDEN");
    server
        .request(Method::DELETE, "/api/v1/client-groups/all-default", &viewer)
        .await
        .assert_error(403, "ERR_CODE_FORBIDDEN");
    server
        .request(Method::DELETE, "/api/v1/client-groups/everything", &viewer)
        .await
        .assert_error(404, "ERR_CODE_NOT_FOUND");

    // Tags of its own project only (RPort's ClientTag.yaml).
    let reply = server
        .request(Method::GET, "/api/v1/client-tags", &viewer)
        .await;
    let tags = reply.assert_data(200);
    for tag in tags.as_array().expect("a list") {
        assert_rport_schema(
            tag,
            &json!({"type": "object", "properties": {
                "tag": {"type": "string"},
                "client_ids": {"type": "array", "items": {"type": "string"}},
            }}),
        );
    }
    assert_eq!(
        tags,
        &json!([
            {"tag": "Linux", "client_ids": ["alpha", "beta"]},
            {"tag": "Office Berlin", "client_ids": ["alpha"]},
            {"tag": "Windows", "client_ids": ["gamma"]},
        ])
    );
    assert_eq!(reply.count(), 3);
    let reply = server
        .request(
            Method::GET,
            "/api/v1/client-tags?fields[client_tags]=tag&page[limit]=1&page[offset]=2",
            &admin(),
        )
        .await;
    assert_eq!(reply.assert_data(200), &json!([{"tag": "Windows"}]));

    // Attributes: another project's client does not exist; a viewer reads but never writes.
    server
        .request(Method::GET, "/api/v1/clients/delta/attributes", &viewer)
        .await
        .assert_error(404, "ERR_CODE_CLIENT_NOT_FOUND");
    let reply = server
        .request(Method::GET, "/api/v1/clients/alpha/attributes", &viewer)
        .await;
    // RPort's ClientAttributes.yaml, in the data envelope RPort's code adds.
    assert_rport_schema(
        reply.assert_data(200),
        &json!({"type": "object", "properties": {
            "tags": {"type": "array", "items": {"type": "string"}},
            "labels": {"type": "object"},
        }}),
    );
    server
        .send_json(
            Method::PUT,
            "/api/v1/clients/alpha/attributes",
            &viewer,
            &json!({"tags": []}),
        )
        .await
        .assert_error(403, "ERR_CODE_FORBIDDEN");
}

#[tokio::test]
async fn attributes_and_acl_are_kept_and_shown_with_the_client() {
    let server = fleet().await;
    let reply = server
        .request(Method::GET, "/api/v1/clients/beta/attributes", &admin())
        .await;
    assert_eq!(
        reply.assert_data(200),
        &json!({"tags": ["Linux"], "labels": {"city": "Berlin", "rack": "beta"}})
    );
    // The bounds of what an agent reports hold here too.
    let too_many: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
    for body in [
        json!({"tags": too_many}),
        json!({"labels": {"k": "v".repeat(257)}}),
    ] {
        server
            .send_json(
                Method::PUT,
                "/api/v1/clients/beta/attributes",
                &admin(),
                &body,
            )
            .await
            .assert_error(400, "ERR_CODE_INVALID_REQUEST");
    }
    // A field left out is emptied, as RPort replaces the whole attributes.
    server
        .send_json(
            Method::PUT,
            "/api/v1/clients/beta/attributes",
            &admin(),
            &json!({"tags": ["db"]}),
        )
        .await
        .assert_data(200);
    let reply = server
        .request(Method::GET, "/api/v1/clients/beta", &admin())
        .await;
    let client = reply.assert_data(200);
    assert_eq!(
        (&client["tags"], &client["labels"]),
        (&json!(["db"]), &json!({}))
    );
    server
        .send_json(
            Method::PUT,
            "/api/v1/clients/beta/attributes",
            &admin(),
            &json!({"tags": "not a list"}),
        )
        .await
        .assert_error(400, "ERR_CODE_INVALID_REQUEST");
    server
        .send_json(
            Method::PUT,
            "/api/v1/clients/nobody/attributes",
            &admin(),
            &json!({"tags": []}),
        )
        .await
        .assert_error(404, "ERR_CODE_CLIENT_NOT_FOUND");

    // The ACL: 204, shown with the client, filterable; admins of the project only.
    let reply = server
        .send_json(
            Method::POST,
            "/api/v1/clients/beta/acl",
            &admin(),
            &json!({"allowed_user_groups": ["ops", "dev", "ops"]}),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 204, "{}", reply.body);
    let reply = server
        .request(
            Method::GET,
            "/api/v1/clients/beta?fields[clients]=id,allowed_user_groups",
            &admin(),
        )
        .await;
    assert_eq!(
        reply.assert_data(200),
        &json!({"id": "beta", "allowed_user_groups": ["dev", "ops"]})
    );
    assert_eq!(
        list_ids(&server, "filter[allowed_user_groups]=ops", &admin()).await,
        ["beta"]
    );
    let tunnels_user = server.user("tom", json!({"default": "tunnels"})).await;
    server
        .send_json(
            Method::POST,
            "/api/v1/clients/beta/acl",
            &tunnels_user,
            &json!({"allowed_user_groups": []}),
        )
        .await
        .assert_error(403, "ERR_CODE_FORBIDDEN");
    server
        .send_json(
            Method::POST,
            "/api/v1/clients/delta/acl",
            &server.user("bob", json!({"default": "admin"})).await,
            &json!({"allowed_user_groups": []}),
        )
        .await
        .assert_error(404, "ERR_CODE_CLIENT_NOT_FOUND");
    // Deleting the client takes what the API set on it.
    let reply = server
        .request(Method::DELETE, "/api/v1/clients/beta", &admin())
        .await;
    assert_eq!(reply.status.as_u16(), 204, "{}", reply.body);
    server
        .request(Method::GET, "/api/v1/clients/beta/attributes", &admin())
        .await
        .assert_error(404, "ERR_CODE_CLIENT_NOT_FOUND");
}
