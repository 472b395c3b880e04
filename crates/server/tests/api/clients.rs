//! `/api/v1/clients`: agents the store knew of before the server started (disconnected),
//! listed, read and deleted; another project's client does not exist for a user without
//! a role there.

use axum::http::Method;
use serde_json::{Value, json};

use crate::harness::{Setup, TestServer, admin, agent};
use crate::rport_schema::assert_rport_schema;

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

/// RPort's `Client` (`components/schemas/Client.yaml`, with `UpdatesStatus.yaml`,
/// `ExtIPAddresses.yaml` and `ClientConfiguration.yaml`), nullable where RPort's own code
/// answers null (its Go pointers, nil maps and slices).
fn rport_client_schema() -> Value {
    let updates_status = json!({
        "type": "object",
        "nullable": true,
        "properties": {
            "refreshed": {"type": "string"},
            "updates_available": {"type": "integer"},
            "security_updates_available": {"type": "integer"},
            "updates_summaries": {"type": "array"},
            "reboot_pending": {"type": "boolean"},
            "error": {"type": "string"},
            "hint": {"type": "string"}
        }
    });
    let ext_ip_addresses = json!({
        "type": "object",
        "nullable": true,
        "properties": {
            "ipv4": {"type": "string"},
            "ipv6": {"type": "string"},
            "updated_at": {"type": "string"},
            "errors": {"type": "string", "x-optional": true}
        }
    });
    let strings = json!({"type": "array", "items": {"type": "string"}});
    json!({
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "os": {"type": "string"},
            "os_full_name": {"type": "string"},
            "os_version": {"type": "string"},
            "os_arch": {"type": "string"},
            "os_family": {"type": "string"},
            "os_kernel": {"type": "string"},
            "os_virtualization_system": {"type": "string"},
            "os_virtualization_role": {"type": "string"},
            "hostname": {"type": "string"},
            "cpu_family": {"type": "string"},
            "cpu_model": {"type": "string"},
            "cpu_vendor": {"type": "string"},
            "cpu_model_name": {"type": "string"},
            "num_cpus": {"type": "integer"},
            "mem_total": {"type": "number"},
            "timezone": {"type": "string"},
            "ipv4": strings,
            "ipv6": strings,
            "tags": strings,
            "labels": {"type": "object", "nullable": true},
            "version": {"type": "string"},
            "address": {"type": "string"},
            "tunnels": {"type": "array"},
            "connection_state": {"type": "string", "enum": ["connected", "disconnected"]},
            "disconnected_at": {"type": "string", "nullable": true},
            "last_heartbeat_at": {"type": "string", "nullable": true},
            "client_auth_id": {"type": "string"},
            "allowed_user_groups": {"type": "array", "items": {"type": "string"}, "nullable": true},
            "updates_status": updates_status,
            "ext_ip_addresses": ext_ip_addresses,
            "client_configuration": {"type": "object", "nullable": true}
        }
    })
}

/// What RPort's UI reads of `client_configuration` (the Go `clientconfig.Config`).
fn rport_client_configuration_schema() -> Value {
    let enabled = json!({"type": "object", "properties": {"enabled": {"type": "boolean"}}});
    json!({
        "type": "object",
        "properties": {
            "client": {
                "type": "object",
                "properties": {
                    "server": {"type": "string"},
                    "fallback_servers": {"type": "array", "items": {"type": "string"}},
                    "server_switchback_interval": {"type": "integer"},
                    "id": {"type": "string"},
                    "name": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "labels": {"type": "object"},
                    "remotes": {"type": "array", "items": {"type": "string"}},
                    "tunnel_allowed": {"type": "array", "items": {"type": "string"}},
                    "data_dir": {"type": "string"},
                    "auth": {"type": "string"},
                    "auth_pass": {"type": "string"}
                }
            },
            "connection": {
                "type": "object",
                "properties": {
                    "keep_alive": {"type": "integer"},
                    "max_retry_interval": {"type": "integer"}
                }
            },
            "logging": {"type": "object"},
            "remote_commands": enabled,
            "remote_scripts": enabled,
            "monitoring": enabled,
            "file_reception": enabled,
            "interpreter_aliases": {"type": "object"}
        }
    })
}

/// An agent that reported everything rportd's agent reports.
fn reporting_agent() -> rport_store::AgentRecord {
    let mut record = agent("delta", "default");
    let info = &mut record.info;
    info.cpu_family = "6".into();
    info.cpu_model = "85".into();
    info.cpu_vendor = "GenuineIntel".into();
    info.cpu_model_name = "Intel(R) Xeon(R) Silver 4110 CPU @ 2.10GHz".into();
    info.num_cpus = 8;
    info.mem_total = 16_712_757_248;
    info.os_virtualization_system = "KVM".into();
    info.os_virtualization_role = "guest".into();
    info.tags = vec!["Linux".into()];
    info.labels.insert("city".into(), "Berlin".into());
    info.settings = Some(rport_protocol::AgentSettings {
        server: "rportd.example.com:8080".into(),
        fallback_servers: vec!["rportd2.example.com:8080".into()],
        server_switchback_interval_secs: 120,
        data_dir: "/var/lib/rport".into(),
        tunnel_allowed: vec!["127.0.0.1:22".into()],
        remotes: vec!["2222:22".into()],
        keep_alive_secs: 60,
        max_retry_interval_secs: 300,
        log_level: "debug".into(),
        auth_id: "default-credential".into(),
        ..Default::default()
    });
    record
}

#[tokio::test]
async fn a_client_carries_rports_fields() {
    let server = TestServer::with(Setup {
        clients: vec![("old-agent", "default")],
        agent_records: vec![reporting_agent()],
        ..Default::default()
    })
    .await;
    let reply = server
        .request(Method::GET, "/api/v1/clients/delta", &admin())
        .await;
    let client = reply.assert_data(200);
    assert_rport_schema(client, &rport_client_schema());
    assert_rport_schema(
        &client["client_configuration"],
        &rport_client_configuration_schema(),
    );
    let expected = json!({
        "cpu_family": "6",
        "cpu_model": "85",
        "cpu_vendor": "GenuineIntel",
        "num_cpus": 8,
        "mem_total": 16_712_757_248u64,
        "os_virtualization_system": "KVM",
        "os_virtualization_role": "guest",
        "labels": {"city": "Berlin"},
        "allowed_user_groups": [],
        "updates_status": null,
        "ext_ip_addresses": null,
    });
    for (key, value) in expected.as_object().expect("an object") {
        assert_eq!(&client[key], value, "{key}");
    }
    let configuration = &client["client_configuration"];
    assert_eq!(configuration["client"]["server"], "rportd.example.com:8080");
    assert_eq!(configuration["client"]["labels"], json!({"city": "Berlin"}));
    assert_eq!(
        configuration["connection"]["keep_alive"],
        json!(60_000_000_000u64),
        "a Go duration, in nanoseconds"
    );
    assert_eq!(configuration["client"]["auth_pass"], "", "never a secret");
    assert_eq!(configuration["client"]["auth_user"], "default-credential");
    assert_eq!(configuration["remote_commands"]["enabled"], false);

    // Disconnected: the last heartbeat the store kept, before the disconnect.
    let heartbeat = client["last_heartbeat_at"].as_str().expect("a time");
    let disconnected = client["disconnected_at"].as_str().expect("a time");
    let parse = |text: &str| chrono::DateTime::parse_from_rfc3339(text).expect("RFC 3339");
    assert!(parse(heartbeat) < parse(disconnected), "{client}");

    // An agent that reports none of the new facts still fits RPort's schema.
    let old = server
        .request(Method::GET, "/api/v1/clients/old-agent", &admin())
        .await;
    let old = old.assert_data(200);
    assert_rport_schema(old, &rport_client_schema());
    assert_eq!(
        (
            &old["labels"],
            &old["client_configuration"],
            &old["cpu_vendor"]
        ),
        (&json!({}), &Value::Null, &json!(""))
    );

    // RPort's field names select them, `ip_addresses` included.
    let reply = server
        .request(
            Method::GET,
            "/api/v1/clients/delta?fields[clients]=id,labels,last_heartbeat_at,ip_addresses",
            &admin(),
        )
        .await;
    let picked = reply.assert_data(200);
    let mut keys: Vec<&str> = picked
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["ext_ip_addresses", "id", "labels", "last_heartbeat_at"]
    );
}
