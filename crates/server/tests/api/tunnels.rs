//! API v1 tunnels: what `PUT /api/v1/clients/{id}/tunnels` refuses before it needs a live
//! agent (opening one is for the process-level tests), closing, ACLs and the listing.

use axum::http::Method;
use serde_json::json;

use crate::harness::{Setup, TestServer, admin};

#[tokio::test]
async fn a_tunnel_to_an_unknown_or_disconnected_client_is_404() {
    let server = TestServer::with(Setup::two_projects()).await;
    for client in ["nobody", "c1"] {
        let reply = server
            .request(
                Method::PUT,
                &format!("/api/v1/clients/{client}/tunnels?remote=22"),
                &admin(),
            )
            .await;
        reply.assert_error(404, "ERR_CODE_CLIENT_NOT_FOUND");
        assert!(reply.detail().contains("not connected"), "{}", reply.body);
    }
    // The refusal is in the audit log.
    let log = server
        .request(
            Method::GET,
            "/api/v1/auditlog?filter[action]=tunnel.create",
            &admin(),
        )
        .await;
    assert_eq!(log.count(), 2, "{}", log.body);
    assert_eq!(log.body["data"][0]["result"], "failure");
    assert_eq!(log.body["data"][0]["affected_id"], "c1");
    assert_eq!(log.body["data"][0]["client_id"], "c1");
    assert_eq!(log.body["data"][0]["action"], "failed");
}

#[tokio::test]
async fn bad_tunnel_specs_are_400_with_rports_codes() {
    let server = TestServer::with(Setup::two_projects()).await;
    let cases = [
        ("", "ERR_CODE_INVALID_REQUEST", "\"remote\" is required"),
        (
            "remote=",
            "ERR_CODE_INVALID_REQUEST",
            "\"remote\" is required",
        ),
        (
            "remote=0",
            "ERR_CODE_INVALID_REQUEST",
            "remote: invalid port",
        ),
        (
            "remote=70000",
            "ERR_CODE_INVALID_REQUEST",
            "remote: invalid port",
        ),
        ("remote=a:b:c:22", "ERR_CODE_INVALID_REQUEST", "remote:"),
        (
            "remote=22&local=example.com:2222",
            "ERR_CODE_INVALID_REQUEST",
            "local:",
        ),
        (
            "remote=22&protocol=sctp",
            "ERR_CODE_INVALID_REQUEST",
            "protocol:",
        ),
        (
            "remote=22&scheme=abcdefghijklmnop",
            "ERR_CODE_URI_SCHEME_LENGTH_EXCEED",
            "at most 15",
        ),
        (
            "remote=22&idle-timeout-minutes=-1",
            "ERR_CODE_INVALID_IDLE_TIMEOUT",
            "whole minutes",
        ),
        (
            "remote=22&idle-timeout-minutes=99999999",
            "ERR_CODE_INVALID_IDLE_TIMEOUT",
            "whole minutes",
        ),
        (
            "remote=22&idle-timeout-minutes=5&skip-idle-timeout=true",
            "ERR_CODE_INVALID_IDLE_TIMEOUT",
            "not both",
        ),
        (
            "remote=22&skip-idle-timeout=maybe",
            "ERR_CODE_INVALID_REQUEST",
            "not a boolean",
        ),
        (
            "remote=22&auto-close=soon",
            "ERR_CODE_INVALID_REQUEST",
            "auto-close",
        ),
        (
            "remote=22&auto-close=745h",
            "ERR_CODE_INVALID_REQUEST",
            "at most 744h",
        ),
        (
            "remote=22&acl=not-an-address",
            "ERR_CODE_INVALID_ACL",
            "acl:",
        ),
        // RPort's web UI sends an empty acl when it meant "only my address".
        ("remote=22&acl=", "ERR_CODE_INVALID_ACL", "acl is empty"),
        (
            "remote=22&check_port=yes",
            "ERR_CODE_INVALID_REQUEST",
            "not a boolean",
        ),
        (
            "remote=22&http_proxy=true",
            "ERR_CODE_INVALID_REQUEST",
            "needs scheme http or https",
        ),
        (
            "remote=80&http_proxy=true&protocol=udp",
            "ERR_CODE_INVALID_REQUEST",
            "needs protocol tcp",
        ),
        (
            "remote=80&host_header=example.com",
            "ERR_CODE_INVALID_REQUEST",
            "needs http_proxy=true",
        ),
        (
            "remote=80&http_proxy=true&auth_user=u",
            "ERR_CODE_INVALID_REQUEST",
            "go together",
        ),
        (
            "remote=80&http_proxy=true&auth_user=a:b&auth_password=p",
            "ERR_CODE_INVALID_REQUEST",
            "may not contain ':'",
        ),
        (
            "remote=80&http_proxy=true&host_header=a%20b",
            "ERR_CODE_INVALID_REQUEST",
            "not a host name",
        ),
    ];
    // Checked whether the client is connected or not, before anything is opened.
    for client in ["c1", "nobody"] {
        for (query, code, detail) in &cases {
            let path = format!("/api/v1/clients/{client}/tunnels?{query}");
            let reply = server.request(Method::PUT, &path, &admin()).await;
            reply.assert_error(400, code);
            assert!(reply.detail().contains(detail), "{path}: {}", reply.body);
        }
    }
}

#[tokio::test]
async fn closing_or_changing_a_tunnel_that_is_not_live_is_404() {
    let server = TestServer::with(Setup::two_projects()).await;
    for path in [
        "/api/v1/clients/c1/tunnels/t-old",
        "/api/v1/clients/c1/tunnels/nothing",
        "/api/v1/clients/nobody/tunnels/nothing",
    ] {
        server
            .request(Method::DELETE, path, &admin())
            .await
            .assert_error(404, "ERR_CODE_TUNNEL_NOT_FOUND");
        server
            .send_json(
                Method::PUT,
                &format!("{path}/acl"),
                &admin(),
                &json!({"acl": null}),
            )
            .await
            .assert_error(404, "ERR_CODE_TUNNEL_NOT_FOUND");
    }
    server
        .request(
            Method::DELETE,
            "/api/v1/clients/c1/tunnels/t-old?force=sure",
            &admin(),
        )
        .await
        .assert_error(400, "ERR_CODE_INVALID_REQUEST");
    server
        .send_json(
            Method::PUT,
            "/api/v1/clients/c1/tunnels/t-old/acl",
            &admin(),
            &json!({"acl": "999.1.1.1"}),
        )
        .await
        .assert_error(400, "ERR_CODE_INVALID_ACL");
    server
        .send_json(
            Method::PUT,
            "/api/v1/clients/c1/tunnels/t-old/acl",
            &admin(),
            &json!({"acl": "10.0.0.1", "more": 1}),
        )
        .await
        .assert_error(400, "ERR_CODE_INVALID_REQUEST");
}

#[tokio::test]
async fn tunnels_are_listed_live_by_default_and_past_ones_on_request() {
    let server = TestServer::with(Setup::two_projects()).await;
    let live = server
        .request(Method::GET, "/api/v1/tunnels", &admin())
        .await;
    assert_eq!(live.assert_data(200), &json!([]));
    assert_eq!(live.count(), 0);

    let closed = server
        .request(
            Method::GET,
            "/api/v1/tunnels?filter[status]=closed",
            &admin(),
        )
        .await;
    closed.assert_data(200);
    assert_eq!(closed.count(), 2, "{}", closed.body);
    let one = server
        .request(
            Method::GET,
            "/api/v1/tunnels?filter[status]=closed,terminated&filter[client_id]=c1",
            &admin(),
        )
        .await;
    assert_eq!(one.count(), 1, "{}", one.body);
    let tunnel = &one.body["data"][0];
    assert_eq!(
        (
            &tunnel["id"],
            &tunnel["status"],
            &tunnel["lport"],
            &tunnel["rport"],
            &tunnel["acl"]
        ),
        (
            &json!("t-old"),
            &json!("closed"),
            &json!("20001"),
            &json!("22"),
            &json!("192.0.2.1")
        )
    );
    assert_eq!(tunnel["auth_password"], serde_json::Value::Null);
    let paged = server
        .request(
            Method::GET,
            "/api/v1/tunnels?filter[status]=closed&page[limit]=1&page[offset]=1",
            &admin(),
        )
        .await;
    assert_eq!(
        (paged.count(), paged.body["data"].as_array().map(Vec::len)),
        (2, Some(1))
    );
    // A user sees the tunnels of its projects only.
    let vera = server.user("vera", json!({"berlin": "viewer"})).await;
    let seen = server
        .request(Method::GET, "/api/v1/tunnels?filter[status]=closed", &vera)
        .await;
    assert_eq!(seen.count(), 1, "{}", seen.body);
    assert_eq!(seen.body["data"][0]["id"], "t-berlin");
}
