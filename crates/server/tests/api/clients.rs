//! `/api/v1/clients`: agents the store knew of before the server started (disconnected),
//! listed, read and deleted; another project's client does not exist for a user without
//! a role there.

use axum::http::Method;
use serde_json::{Value, json};

use crate::harness::{Setup, TestServer, admin};

fn fleet() -> Setup {
    Setup {
        projects: vec!["berlin"],
        clients: vec![
            ("alpha", "default"),
            ("beta", "default"),
            ("gamma", "berlin"),
        ],
        ..Default::default()
    }
}

fn ids(listing: &Value) -> Vec<&str> {
    listing["data"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|c| c["id"].as_str().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn clients_are_listed_filtered_sorted_and_paged() {
    let server = TestServer::with(fleet()).await;
    let all = server
        .request(Method::GET, "/api/v1/clients", &admin())
        .await;
    all.assert_data(200);
    assert_eq!(
        (all.count(), ids(&all.body)),
        (3, vec!["alpha", "beta", "gamma"])
    );
    let first = &all.body["data"][0];
    assert_eq!(
        (
            &first["project"],
            &first["connection_state"],
            &first["tunnels"]
        ),
        (&json!("default"), &json!("disconnected"), &json!([]))
    );
    assert!(first["disconnected_at"].is_string(), "{first}");

    let cases = [
        ("filter[project]=berlin", 1, vec!["gamma"]),
        ("filter[id]=*a,beta", 3, vec!["alpha", "beta", "gamma"]),
        ("filter[name]=B*", 1, vec!["beta"]),
        ("sort=-id", 3, vec!["gamma", "beta", "alpha"]),
        ("sort=-id&page[limit]=1&page[offset]=1", 3, vec!["beta"]),
        ("page[offset]=10", 3, vec![]),
        // RPort's web UI asks for a page of 0 names when it has no ids to name.
        ("page[limit]=0", 3, vec![]),
    ];
    for (query, count, expected) in cases {
        let reply = server
            .request(Method::GET, &format!("/api/v1/clients?{query}"), &admin())
            .await;
        reply.assert_data(200);
        assert_eq!(
            (reply.count(), ids(&reply.body)),
            (count, expected),
            "{query}"
        );
    }
    let reply = server
        .request(
            Method::GET,
            "/api/v1/clients?fields[clients]=id,project",
            &admin(),
        )
        .await;
    assert_eq!(
        reply.body["data"][2],
        json!({"id": "gamma", "project": "berlin"})
    );
}

#[tokio::test]
async fn one_client_is_read_and_an_unknown_one_is_404() {
    let server = TestServer::with(fleet()).await;
    let reply = server
        .request(Method::GET, "/api/v1/clients/gamma", &admin())
        .await;
    let data = reply.assert_data(200);
    assert_eq!(
        (&data["id"], &data["hostname"]),
        (&json!("gamma"), &json!("gamma"))
    );
    let reply = server
        .request(
            Method::GET,
            "/api/v1/clients/gamma?fields[clients]=name",
            &admin(),
        )
        .await;
    assert_eq!(reply.assert_data(200), &json!({"name": "gamma name"}));
    server
        .request(Method::GET, "/api/v1/clients/nobody", &admin())
        .await
        .assert_error(404, "ERR_CODE_CLIENT_NOT_FOUND");
    server
        .request(
            Method::GET,
            "/api/v1/clients/gamma?fields[clients]=colour",
            &admin(),
        )
        .await
        .assert_error(400, "ERR_CODE_INVALID_FIELDS");
}

#[tokio::test]
async fn a_disconnected_client_is_deleted_once() {
    let server = TestServer::with(fleet()).await;
    let reply = server
        .request(Method::DELETE, "/api/v1/clients/beta", &admin())
        .await;
    assert_eq!(reply.status.as_u16(), 204, "{}", reply.body);
    assert_eq!(reply.body, Value::Null);
    server
        .request(Method::GET, "/api/v1/clients/beta", &admin())
        .await
        .assert_error(404, "ERR_CODE_CLIENT_NOT_FOUND");
    server
        .request(Method::DELETE, "/api/v1/clients/beta", &admin())
        .await
        .assert_error(404, "ERR_CODE_CLIENT_NOT_FOUND");
    let all = server
        .request(Method::GET, "/api/v1/clients", &admin())
        .await;
    assert_eq!(ids(&all.body), ["alpha", "gamma"]);
}

#[tokio::test]
async fn another_projects_client_does_not_exist_for_a_user_without_a_role_there() {
    let server = TestServer::with(fleet()).await;
    let vera = server.user("vera", json!({"default": "admin"})).await;
    let all = server.request(Method::GET, "/api/v1/clients", &vera).await;
    assert_eq!((all.count(), ids(&all.body)), (2, vec!["alpha", "beta"]));
    let hidden = server
        .request(Method::GET, "/api/v1/clients?filter[project]=berlin", &vera)
        .await;
    assert_eq!(hidden.count(), 0);
    // Hidden exactly as a client that does not exist.
    for method in [Method::GET, Method::DELETE] {
        let reply = server
            .request(method.clone(), "/api/v1/clients/gamma", &vera)
            .await;
        reply.assert_error(404, "ERR_CODE_CLIENT_NOT_FOUND");
        let unknown = server
            .request(method, "/api/v1/clients/nobody", &vera)
            .await;
        assert_eq!(
            reply.detail().replace("gamma", "nobody"),
            unknown.detail(),
            "no hint that it exists"
        );
    }
    let still = server
        .request(Method::GET, "/api/v1/clients/gamma", &admin())
        .await;
    still.assert_data(200);
}
