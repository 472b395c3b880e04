//! `GET /api/v1/auditlog` in RPort's shape: server admins read all of it, a project's
//! admins that project's entries, everyone else their own; RPort's filters, sorts and
//! pages work, and anything else under them is a 400 naming it.

use axum::http::Method;
use serde_json::{Value, json};

use crate::harness::{ADMIN, PEER, Setup, TestServer, admin, basic, password_of};
use crate::rport_schema::assert_rport_schema;

/// RPort's `components/schemas/AuditLog.yaml`.
fn rport_audit_log_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "timestamp": {"type": "string"},
            "username": {"type": "string"},
            "remote_ip": {"type": "string"},
            "application": {"type": "string"},
            "action": {"type": "string"},
            "affected_id": {"type": "string"},
            "client_id": {"type": "string"},
            "client_hostname": {"type": "string"},
            "request": {"type": "string"},
            "response": {"type": "string"}
        }
    })
}

/// RPort's `paths/auditlog.yaml` 200 answer.
fn rport_listing_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "data": {"type": "array", "items": rport_audit_log_schema()},
            "meta": {"type": "object", "properties": {"count": {"type": "integer"}}}
        }
    })
}

fn words(listing: &Value) -> Vec<(String, String)> {
    listing["data"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| {
            (
                e["application"].as_str().unwrap_or_default().to_owned(),
                e["action"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[tokio::test]
async fn entries_read_in_rports_words_newest_first() {
    let server = TestServer::start().await;
    server.project("lab").await;
    server
        .request(Method::GET, "/api/v1/me", &basic(ADMIN, "wrong-password"))
        .await
        .assert_error(401, "ERR_CODE_UNAUTHORIZED");
    server
        .request(Method::DELETE, "/api/v1/projects/lab", &admin())
        .await;
    let log = server
        .request(Method::GET, "/api/v1/auditlog", &admin())
        .await;
    log.assert_data(200);
    assert_rport_schema(&log.body, &rport_listing_schema());
    assert_eq!(
        words(&log.body),
        pairs(&[
            ("project", "delete"),
            ("auth.api.session", "failed"),
            ("project", "create")
        ])
    );
    assert_eq!(log.count(), 3);
    let newest = &log.body["data"][0];
    assert_eq!(
        (
            &newest["username"],
            &newest["remote_ip"],
            &newest["affected_id"],
            &newest["project"],
            &newest["result"],
            &newest["rportd_action"],
            &newest["actor_type"],
        ),
        (
            &json!(ADMIN),
            &json!(PEER.ip().to_string()),
            &json!("lab"),
            &json!("lab"),
            &json!("success"),
            &json!("project.delete"),
            &json!("user"),
        )
    );
    assert_eq!(log.body["data"][1]["result"], "failure");

    let cases = [
        ("filter[application]=auth.api.session", vec!["login"]),
        (
            "filter[application]=PROJ*",
            vec!["project.delete", "project.create"],
        ),
        (
            "filter[action]=create,failed",
            vec!["login", "project.create"],
        ),
        ("filter[action]=login", vec!["login"]),
        (
            "filter[username]=adm*&filter[action]=delete",
            vec!["project.delete"],
        ),
        (
            "filter[affected_id%7Cusername]=lab",
            vec!["project.delete", "project.create"],
        ),
        (
            "filter[remote_ip]=127.0.0.1",
            vec!["project.delete", "login", "project.create"],
        ),
        ("filter[client_id]=c1", vec![]),
        (
            "filter[project]=lab",
            vec!["project.delete", "project.create"],
        ),
        (
            "sort=timestamp",
            vec!["project.create", "login", "project.delete"],
        ),
        (
            "sort=application&sort=-timestamp",
            vec!["login", "project.delete", "project.create"],
        ),
        ("page[limit]=1&page[offset]=2", vec!["project.create"]),
        ("filter[timestamp][gt]=2999-01-01", vec![]),
        ("filter[timestamp][lt]=2000-01-01%2000:00:00", vec![]),
        (
            "filter[timestamp][since]=2000-01-01T00:00:00Z&filter[timestamp][until]=2999-01-01",
            vec!["project.delete", "login", "project.create"],
        ),
        ("filter[since]=2999-01-01T00:00:00Z", vec![]),
    ];
    for (query, expected) in cases {
        let reply = server
            .request(Method::GET, &format!("/api/v1/auditlog?{query}"), &admin())
            .await;
        reply.assert_data(200);
        let got: Vec<&str> = reply.body["data"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|e| e["rportd_action"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(got, expected, "{query}");
        let total = if query.starts_with("page") {
            3
        } else {
            expected.len()
        };
        assert_eq!(reply.count() as usize, total, "{query}");
    }
}

#[tokio::test]
async fn rports_default_page_is_ten_and_unknown_options_are_400s_naming_them() {
    let server = TestServer::start().await;
    for i in 0..12 {
        server.project(&format!("p{i}")).await;
    }
    let reply = server
        .request(Method::GET, "/api/v1/auditlog", &admin())
        .await;
    assert_eq!(reply.assert_data(200).as_array().map(Vec::len), Some(10));
    assert_eq!(reply.count(), 12);
    let cases = [
        ("filter[colour]=red", "filter[colour]"),
        ("filter[timestamp][eq]=2021-10-28", "filter[timestamp][eq]"),
        ("sort=-colour", "colour"),
        ("page[size]=5", "page[size]"),
        ("page[limit]=101", "maximum is 100"),
        ("page[limit]=-1", "negative"),
        ("page[offset]=-1", "negative"),
        ("filter[timestamp][gt]=yesterday", "filter[timestamp][gt]"),
    ];
    for (query, named) in cases {
        let reply = server
            .request(Method::GET, &format!("/api/v1/auditlog?{query}"), &admin())
            .await;
        reply.assert_error(400, "ERR_CODE_INVALID_REQUEST");
        let text = reply.body.to_string();
        assert!(text.contains(named), "{query}: {text}");
    }
}

#[tokio::test]
async fn admins_read_all_project_admins_their_project_others_their_own() {
    let server = TestServer::with(Setup::two_projects()).await;
    server.project("lab").await;
    let paula = server
        .user("paula", json!({"lab": "admin", "default": "viewer"}))
        .await;
    // paula changes her own password: an entry of hers.
    let body =
        json!({"old_password": password_of("paula"), "new_password": "paula-new-password-2"});
    let reply = server
        .send_json(Method::PUT, "/api/v1/me", &paula, &body)
        .await;
    assert_eq!(reply.status.as_u16(), 204, "{}", reply.body);
    let paula = basic("paula", "paula-new-password-2");
    let own = server
        .request(Method::GET, "/api/v1/auditlog", &paula)
        .await;
    own.assert_data(200);
    assert_rport_schema(&own.body, &rport_listing_schema());
    assert_eq!(
        words(&own.body),
        pairs(&[("auth.user.me", "update"), ("auth.api.session", "create")])
    );
    // As in RPort, filtering by user name is for administrators.
    let reply = server
        .request(
            Method::GET,
            "/api/v1/auditlog?filter[username]=admin",
            &paula,
        )
        .await;
    reply.assert_error(403, "ERR_CODE_FORBIDDEN");
    server
        .request(
            Method::GET,
            "/api/v1/auditlog?filter[project]=default",
            &paula,
        )
        .await
        .assert_error(403, "ERR_CODE_FORBIDDEN");
    let reply = server
        .request(Method::GET, "/api/v1/auditlog?filter[project]=lab", &paula)
        .await;
    reply.assert_data(200);
    assert_eq!(words(&reply.body), pairs(&[("project", "create")]));
    let all = server
        .request(Method::GET, "/api/v1/auditlog?page[limit]=100", &admin())
        .await;
    assert!(all.count() >= 3, "{}", all.body);
}
