//! End to end: a real agent's facts reach RPort's client object — CPU, memory,
//! virtualization, labels from its attributes file, its settings as
//! `client_configuration` — and `last_heartbeat_at` follows its keepalives and survives a
//! restart of the server.

use std::time::Duration;

use crate::support::*;
use serde_json::{Value, json};

/// The first value of `key` in `/proc/cpuinfo`'s text.
fn cpuinfo_value(cpuinfo: &str, key: &str) -> String {
    cpuinfo
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default()
}

fn time(value: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().expect("a time")).expect("RFC 3339")
}

#[test]
fn a_real_agent_fills_rports_client_fields() {
    let dir = tempdir();
    let mut server = Rportd::start(dir.path());
    let port = server.agent_address.port();
    let attributes = dir.path().join("attributes.json");
    std::fs::write(
        &attributes,
        r#"{"tags": ["from-file"], "labels": {"city": "Cologne", "rack": "R7"}}"#,
    )
    .expect("write attributes");
    let config = dir.path().join("rport.conf");
    std::fs::write(
        &config,
        format!(
            "[client]\nlabels = {{ city = \"Berlin\" }}\nattributes_file_path = \"{}\"\n",
            attributes.display()
        ),
    )
    .expect("write config");
    let _agent = Rport::attach_with(
        &server,
        "facts-1",
        &dir.path().join("agent"),
        server.agent_address,
        &["-c", config.to_str().expect("utf-8 path")],
        &[],
    );
    let client = server.wait_connection_state("facts-1", "connected", ATTACH);

    // The attributes file replaces the configured tags and labels, as in RPort.
    assert_eq!(client["tags"], json!(["from-file"]));
    assert_eq!(client["labels"], json!({"city": "Cologne", "rack": "R7"}));
    assert!(
        client["num_cpus"].as_u64().is_some_and(|n| n >= 1),
        "{client}"
    );
    if cfg!(target_os = "linux") {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").expect("cpuinfo");
        let vendor = cpuinfo_value(&cpuinfo, "vendor_id");
        if !vendor.is_empty() {
            assert_eq!(client["cpu_vendor"], vendor.as_str());
            assert_eq!(
                client["cpu_family"],
                cpuinfo_value(&cpuinfo, "cpu family").as_str()
            );
            assert_eq!(
                client["cpu_model"],
                cpuinfo_value(&cpuinfo, "model").as_str()
            );
        }
        let meminfo = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
        let kib: u64 = cpuinfo_value(&meminfo, "MemTotal")
            .trim_end_matches("kB")
            .trim()
            .parse()
            .expect("MemTotal in kB");
        assert_eq!(client["mem_total"], kib * 1024);
        if std::path::Path::new("/.dockerenv").exists() {
            assert_eq!(
                (
                    &client["os_virtualization_system"],
                    &client["os_virtualization_role"]
                ),
                (&json!("DOCKER"), &json!("guest"))
            );
        }
    }
    for field in [
        "os_virtualization_system",
        "os_virtualization_role",
        "cpu_model_name",
    ] {
        assert!(client[field].is_string(), "{field}: {client}");
    }
    assert_eq!(client["allowed_user_groups"], json!([]));
    assert_eq!(client["updates_status"], Value::Null);
    assert_eq!(client["ext_ip_addresses"], Value::Null);

    let configuration = &client["client_configuration"];
    assert_eq!(
        configuration["client"]["server"],
        server.agent_address.to_string().as_str()
    );
    assert_eq!(configuration["client"]["id"], "facts-1");
    assert_eq!(
        configuration["connection"]["keep_alive"],
        json!(5_000_000_000u64),
        "--keep-alive 5s, in Go's nanoseconds"
    );
    let shown = configuration.to_string();
    let password = AGENT_AUTH.split_once(':').expect("id:password").1;
    assert!(!shown.contains(password), "no secret: {shown}");
    assert!(!shown.contains(server.fingerprint.as_str()), "{shown}");

    let facts_before = client.clone();
    // Keepalives (every 5 s / 3 with --keep-alive 5s) move the heartbeat past the connect.
    let connected_at = time(&client["connected_at"]);
    let beating = wait_for(
        "a heartbeat after the connect",
        Duration::from_secs(20),
        || {
            let client = server.client("facts-1")?;
            let heartbeat = time(&client["last_heartbeat_at"]);
            (heartbeat > connected_at).then_some(heartbeat)
        },
    );

    // An orderly stop writes the last heartbeats; a server that comes back (refusing the
    // agent's changed credential, so it stays away) shows them.
    assert!(server.terminate().success());
    let refusing = ServerSettings {
        agent_port: port,
        agent_auth: "agent1:changed".into(),
        ..Default::default()
    };
    let server = Rportd::start_with(dir.path(), &refusing);
    let client = server.client("facts-1").expect("known after restart");
    assert_eq!(client["connection_state"], "disconnected");
    let kept = time(&client["last_heartbeat_at"]);
    assert!(kept >= beating, "{kept} is older than {beating}");
    assert!(kept <= time(&client["disconnected_at"]), "{client}");
    assert_eq!(client["labels"], json!({"city": "Cologne", "rack": "R7"}));
    assert_eq!(client["cpu_vendor"], facts_before["cpu_vendor"]);
}
