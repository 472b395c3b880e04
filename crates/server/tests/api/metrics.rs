//! `GET /metrics`: Prometheus' text for a server administrator, counting the API's own
//! requests by route template.

use axum::http::Method;
use serde_json::json;

use crate::harness::{Setup, TestServer, admin};

/// The value of the sample written exactly as `series` (name and labels), if present.
fn value_of(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.parse().ok()
    })
}

#[tokio::test]
async fn metrics_need_authentication_and_count_requests_by_route_template() {
    let server = TestServer::with(Setup::two_projects()).await;

    let anonymous = server.request(Method::GET, "/metrics", "").await;
    anonymous.assert_error(401, "ERR_CODE_UNAUTHORIZED");

    let reply = server
        .send_json(
            Method::POST,
            "/api/v1/me/tokens",
            &admin(),
            &json!({"name": "prometheus", "scope": "read"}),
        )
        .await;
    let token = reply.assert_data(200)["token"]
        .as_str()
        .expect("token shown once")
        .to_owned();
    let bearer = format!("Bearer {token}");

    // Known traffic: three reads of one client each by its own id, one of an unknown
    // client, and a path no route has.
    for id in ["c1", "c1", "c2"] {
        let path = format!("/api/v1/clients/{id}");
        let reply = server.request(Method::GET, &path, &admin()).await;
        assert_eq!(reply.status.as_u16(), 200, "{path}: {}", reply.body);
    }
    let missing = server
        .request(Method::GET, "/api/v1/clients/nobody", &admin())
        .await;
    assert_eq!(missing.status.as_u16(), 404, "{}", missing.body);
    server
        .request(Method::GET, "/api/v1/no-such-thing/12345", &admin())
        .await;

    let reply = server.request(Method::GET, "/metrics", &bearer).await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.body);
    assert!(
        reply
            .header("content-type")
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        reply.headers
    );
    let text = reply.body.as_str().expect("the text format").to_owned();

    let clients = r#"rportd_api_requests_total{route="/api/v1/clients/{client_id}",method="GET""#;
    assert_eq!(
        value_of(&text, &format!(r#"{clients},status="200"}}"#)),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value_of(&text, &format!(r#"{clients},status="404"}}"#)),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value_of(
            &text,
            r#"rportd_api_request_duration_seconds_count{route="/api/v1/clients/{client_id}"}"#
        ),
        Some(4.0),
        "{text}"
    );
    assert!(
        text.contains(r#"rportd_api_requests_total{route="other",method="GET",status="#),
        "{text}"
    );
    // Raw paths never become labels.
    assert!(!text.contains("/api/v1/clients/c1"), "{text}");
    assert!(!text.contains("12345"), "{text}");
    // The 401 above was counted under /metrics's own template.
    assert_eq!(
        value_of(
            &text,
            r#"rportd_api_requests_total{route="/metrics",method="GET",status="401"}"#
        ),
        Some(1.0),
        "{text}"
    );

    // Gauges come from the state: the two seeded clients are known, not connected.
    for project in ["default", "berlin"] {
        assert_eq!(
            value_of(
                &text,
                &format!(r#"rportd_clients_disconnected{{project="{project}"}}"#)
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            value_of(
                &text,
                &format!(r#"rportd_clients_connected{{project="{project}"}}"#)
            ),
            Some(0.0),
            "{text}"
        );
    }
    for family in [
        "# TYPE rportd_tunnel_bytes_total counter",
        "# TYPE rportd_api_request_duration_seconds histogram",
        "# TYPE rportd_bans_active gauge",
        "# TYPE rportd_store_errors_total counter",
        "# TYPE rportd_agent_logins_total counter",
        "# TYPE rportd_tunnels_open gauge",
        "rportd_build_info{version=",
    ] {
        assert!(text.contains(family), "{family} in {text}");
    }

    // Basic auth with a password works too, as for any read.
    let basic = server.request(Method::GET, "/metrics", &admin()).await;
    assert_eq!(basic.status.as_u16(), 200, "{}", basic.body);

    // The labels name every project: even a project's own admin may not read them.
    let berlin_admin = server.user("bruno", json!({"berlin": "admin"})).await;
    let refused = server.request(Method::GET, "/metrics", &berlin_admin).await;
    refused.assert_error(403, "ERR_CODE_FORBIDDEN");
    let body = refused.body.to_string();
    assert!(body.contains("server-wide administrator"), "{body}");
    assert!(!body.contains("default"), "{body}");
}

#[tokio::test]
async fn metrics_are_in_the_openapi_document_as_text() {
    let server = TestServer::start().await;
    let document = server
        .request(Method::GET, "/api/v1/openapi.json", "")
        .await
        .body;
    let get = &document["paths"]["/metrics"]["get"];
    assert!(
        get["responses"]["2XX"]["content"]["text/plain"].is_object(),
        "{get}"
    );
    assert_ne!(get["security"], json!([]), "{get}");
}
