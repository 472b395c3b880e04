//! `/api/v1/user-groups`: RPort's user groups, set and deleted by server admins, granting
//! their members roles in their projects and nothing beyond them.

use axum::http::Method;
use serde_json::{Value, json};

use crate::harness::{Setup, TestServer, admin, password_of};
use crate::rport_schema::assert_rport_schema;

/// RPort's `components/schemas/UserGroup.yaml`, the parts its UI reads.
fn user_group_schema() -> Value {
    let flags = json!({
        "tunnels": {"type": "boolean"}, "scripts": {"type": "boolean"},
        "commands": {"type": "boolean"}, "vault": {"type": "boolean"},
        "scheduler": {"type": "boolean"}, "monitoring": {"type": "boolean"},
        "uploads": {"type": "boolean"}, "auditlog": {"type": "boolean"},
    });
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "permissions": {"type": "object", "properties": flags},
            "tunnels_restricted": {"type": "object", "nullable": true},
            "commands_restricted": {"type": "object", "nullable": true},
        }
    })
}

#[tokio::test]
async fn groups_are_set_listed_and_deleted_as_rport_does() {
    let server = TestServer::start().await;
    let body = json!({
        "name": "ignored: the path names the group",
        "permissions": {"tunnels": true, "scripts": false, "vault": true},
        "tunnels_restricted": {"scheme": ["ssh"]},
    });
    let reply = server
        .send_json(Method::PUT, "/api/v1/user-groups/Editors", &admin(), &body)
        .await;
    let set = reply.assert_data(200).clone();
    assert_rport_schema(&set, &user_group_schema());
    assert_eq!(set["name"], "Editors");
    assert_eq!(set["permissions"]["tunnels"], true);
    assert_eq!(set["permissions"]["vault"], true);
    assert_eq!(set["permissions"]["auditlog"], false);
    assert_eq!(set["tunnels_restricted"], json!({"scheme": ["ssh"]}));
    assert_eq!(set["commands_restricted"], Value::Null);
    assert_eq!(
        set["projects"],
        json!(["default"]),
        "a new group: the default project"
    );

    let one = server
        .request(Method::GET, "/api/v1/user-groups/Editors", &admin())
        .await;
    assert_eq!(one.assert_data(200), &set);

    // As RPort: a group never set reads as one without permissions.
    let unset = server
        .request(Method::GET, "/api/v1/user-groups/Nobody", &admin())
        .await;
    let unset = unset.assert_data(200);
    assert_rport_schema(unset, &user_group_schema());
    assert_eq!(unset["permissions"]["tunnels"], false);
    assert_eq!(unset["projects"], json!([]));

    let list = server
        .request(Method::GET, "/api/v1/user-groups", &admin())
        .await;
    let list = list.assert_data(200).as_array().expect("array").clone();
    for group in &list {
        assert_rport_schema(group, &user_group_schema());
    }
    let names: Vec<&str> = list.iter().filter_map(|g| g["name"].as_str()).collect();
    assert_eq!(names, ["Administrators", "Editors"]);
    assert!(
        list[0]["permissions"]
            .as_object()
            .expect("object")
            .values()
            .all(|v| v == true),
        "{}",
        list[0]
    );

    // Without projects a PUT keeps the group's; permissions are replaced.
    let reply = server
        .send_json(
            Method::PUT,
            "/api/v1/user-groups/Editors",
            &admin(),
            &json!({"permissions": {"monitoring": true}}),
        )
        .await;
    let changed = reply.assert_data(200);
    assert_eq!(changed["permissions"]["tunnels"], false);
    assert_eq!(changed["permissions"]["monitoring"], true);
    assert_eq!(changed["tunnels_restricted"], Value::Null);
    assert_eq!(changed["projects"], json!(["default"]));

    let reply = server
        .call(Method::DELETE, "/api/v1/user-groups/Editors")
        .auth(&admin())
        .send()
        .await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    // As RPort: deleting one that does not exist is no error.
    let again = server
        .call(Method::DELETE, "/api/v1/user-groups/Editors")
        .auth(&admin())
        .send()
        .await;
    assert_eq!(again.status, 204, "{}", again.body);
    let list = server
        .request(Method::GET, "/api/v1/user-groups", &admin())
        .await;
    assert_eq!(list.assert_data(200).as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn bad_changes_are_refused_and_only_server_admins_may_manage() {
    let server = TestServer::start().await;
    let bad = [
        (
            "/api/v1/user-groups/Editors",
            json!({"permissions": {"root": true}}),
            "invalid permission \"root\"",
        ),
        (
            "/api/v1/user-groups/Editors",
            json!({"projects": ["nowhere"]}),
            "no project \"nowhere\"",
        ),
        (
            "/api/v1/user-groups/Editors",
            json!({"members": ["alice"]}),
            "unknown field",
        ),
        (
            "/api/v1/user-groups/Bad%2FName",
            json!({}),
            "user group name",
        ),
        (
            "/api/v1/user-groups/Administrators",
            json!({"permissions": {"tunnels": false}}),
            "cannot be changed",
        ),
    ];
    for (path, body, reason) in bad {
        let reply = server.send_json(Method::PUT, path, &admin(), &body).await;
        reply.assert_error(400, "ERR_CODE_INVALID_REQUEST");
        assert!(reply.detail().contains(reason), "{body}: {}", reply.body);
    }
    // Saving Administrators unchanged, as a web UI does, changes nothing and is no error.
    let all: serde_json::Map<String, Value> = [
        "tunnels",
        "scripts",
        "commands",
        "vault",
        "scheduler",
        "monitoring",
        "uploads",
        "auditlog",
    ]
    .iter()
    .map(|p| ((*p).to_owned(), json!(true)))
    .collect();
    server
        .send_json(
            Method::PUT,
            "/api/v1/user-groups/Administrators",
            &admin(),
            &json!({ "permissions": all }),
        )
        .await
        .assert_data(200);
    server
        .call(Method::DELETE, "/api/v1/user-groups/Administrators")
        .auth(&admin())
        .send()
        .await
        .assert_error(400, "ERR_CODE_INVALID_REQUEST");

    let bearer = server.user("viewer", json!({"default": "admin"})).await;
    for (method, path) in [
        (Method::GET, "/api/v1/user-groups"),
        (Method::GET, "/api/v1/user-groups/Editors"),
        (Method::PUT, "/api/v1/user-groups/Editors"),
        (Method::DELETE, "/api/v1/user-groups/Editors"),
    ] {
        server
            .call(method.clone(), path)
            .auth(&bearer)
            .json(&json!({"permissions": {"tunnels": true}}))
            .send()
            .await
            .assert_error(403, "ERR_CODE_FORBIDDEN");
    }
}

/// `/api/v1/me` of `user`: its roles as the server checks them.
async fn roles_of(server: &TestServer, user: &str) -> Value {
    let bearer = server.login(user, &password_of(user)).await;
    let me = server.request(Method::GET, "/api/v1/me", &bearer).await;
    me.assert_data(200)["roles"].clone()
}

#[tokio::test]
async fn members_get_their_groups_roles_in_the_groups_projects_only() {
    let server = TestServer::with(Setup::two_projects()).await;
    let body = json!({
        "username": "bob",
        "password": password_of("bob"),
        "groups": ["Editors"],
        "roles": {"default": "viewer"},
    });
    let created = server
        .send_json(Method::POST, "/api/v1/users", &admin(), &body)
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let bob = server
        .request(Method::GET, "/api/v1/users/bob", &admin())
        .await;
    assert_eq!(bob.assert_data(200)["groups"], json!(["Editors"]));
    // A group never set grants nothing.
    assert_eq!(roles_of(&server, "bob").await, json!({"default": "viewer"}));
    let bob = server.login("bob", &password_of("bob")).await;
    server
        .request(Method::GET, "/api/v1/clients/c2", &bob)
        .await
        .assert_error(404, "ERR_CODE_CLIENT_NOT_FOUND");

    server
        .send_json(
            Method::PUT,
            "/api/v1/user-groups/Editors",
            &admin(),
            &json!({"permissions": {"tunnels": true}, "projects": ["berlin"]}),
        )
        .await
        .assert_data(200);
    assert_eq!(
        roles_of(&server, "bob").await,
        json!({"default": "viewer", "berlin": "tunnels"}),
        "its own roles and its group's"
    );
    // At once, with the token bob already had: groups are read on every request.
    server
        .request(Method::GET, "/api/v1/clients/c2", &bob)
        .await
        .assert_data(200);
    // tunnels: past the permission check (the agent is not connected: 404), not 403.
    server
        .request(Method::PUT, "/api/v1/clients/c2/tunnels?remote=22", &bob)
        .await
        .assert_error(404, "ERR_CODE_CLIENT_NOT_FOUND");
    server
        .request(Method::PUT, "/api/v1/clients/c1/tunnels?remote=22", &bob)
        .await
        .assert_error(403, "ERR_CODE_FORBIDDEN");
    // Never more than tunnels: deleting a client needs admin.
    server
        .call(Method::DELETE, "/api/v1/clients/c2")
        .auth(&bob)
        .send()
        .await
        .assert_error(403, "ERR_CODE_FORBIDDEN");

    // A group without RPort's tunnels permission grants viewer.
    server
        .send_json(
            Method::PUT,
            "/api/v1/user-groups/Editors",
            &admin(),
            &json!({"permissions": {"commands": true, "auditlog": true}}),
        )
        .await
        .assert_data(200);
    assert_eq!(
        roles_of(&server, "bob").await,
        json!({"default": "viewer", "berlin": "viewer"})
    );

    // Users show their groups, Administrators first.
    let changed = server
        .send_json(
            Method::PUT,
            "/api/v1/users/bob",
            &admin(),
            &json!({"groups": ["Editors", "Administrators", "Auditors"]}),
        )
        .await;
    assert_eq!(changed.status, 204, "{}", changed.body);
    let bob_json = server
        .request(Method::GET, "/api/v1/users/bob", &admin())
        .await;
    let bob_json = bob_json.assert_data(200);
    assert_eq!(
        bob_json["groups"],
        json!(["Administrators", "Auditors", "Editors"])
    );
    assert_eq!(bob_json["admin"], true);
    let list = server.request(Method::GET, "/api/v1/users", &admin()).await;
    let listed = list.assert_data(200).as_array().expect("array").clone();
    let bob_listed = listed.iter().find(|u| u["username"] == "bob").expect("bob");
    assert_eq!(bob_listed["groups"], bob_json["groups"]);
    let groups = server
        .request(Method::GET, "/api/v1/user-groups", &admin())
        .await;
    let names: Vec<Value> = groups
        .assert_data(200)
        .as_array()
        .expect("array")
        .iter()
        .map(|g| g["name"].clone())
        .collect();
    assert_eq!(
        names,
        [json!("Administrators"), json!("Auditors"), json!("Editors")]
    );

    // Deleting the group takes bob out of it and its roles away.
    let changed = server
        .send_json(
            Method::PUT,
            "/api/v1/users/bob",
            &admin(),
            &json!({"groups": ["Editors"]}),
        )
        .await;
    assert_eq!(changed.status, 204, "{}", changed.body);
    server
        .call(Method::DELETE, "/api/v1/user-groups/Editors")
        .auth(&admin())
        .send()
        .await;
    assert_eq!(roles_of(&server, "bob").await, json!({"default": "viewer"}));
    let bob_json = server
        .request(Method::GET, "/api/v1/users/bob", &admin())
        .await;
    assert_eq!(bob_json.assert_data(200)["groups"], json!([]));
}

#[tokio::test]
async fn users_of_the_auth_file_belong_to_the_groups_it_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("users.json");
    let hash = bcrypt::hash(password_of("carol"), 4).expect("bcrypt");
    let users = json!([{"username": "carol", "password": hash, "groups": ["Editors"]}]);
    std::fs::write(&file, users.to_string()).expect("write users");
    let server = TestServer::with(Setup {
        api: format!("auth_file = {:?}\n", file.display().to_string()),
        ..Setup::two_projects()
    })
    .await;
    assert_eq!(
        roles_of(&server, "carol").await,
        json!({}),
        "Editors is not set"
    );
    server
        .send_json(
            Method::PUT,
            "/api/v1/user-groups/Editors",
            &admin(),
            &json!({"permissions": {"tunnels": true}, "projects": ["berlin"]}),
        )
        .await
        .assert_data(200);
    assert_eq!(
        roles_of(&server, "carol").await,
        json!({"berlin": "tunnels"})
    );
    let carol = server
        .request(Method::GET, "/api/v1/users/carol", &admin())
        .await;
    let carol = carol.assert_data(200);
    assert_eq!(
        (&carol["groups"], &carol["source"]),
        (&json!(["Editors"]), &json!("auth_file"))
    );
}
