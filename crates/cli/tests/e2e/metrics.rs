//! Prometheus metrics of a real rportd: traffic through a real tunnel, a refusal by ACL
//! and a failed agent login show in `GET /metrics` (with a read-scope token) and on
//! `[metrics] address` (without authentication), and `promtool` accepts the text.

use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;

use crate::support::{
    ATTACH, Rport, Rportd, ServerSettings, echo_round_trip, echo_server, start_agent, tempdir,
    tunnel_address, wait_for,
};

/// The value of the sample written exactly as `series` (name and labels), if present.
fn value_of(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.parse().ok()
    })
}

/// Status and body of a GET, whatever the status.
fn get(url: &str, authorization: &str) -> (u16, String) {
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut request = http.get(url);
    if !authorization.is_empty() {
        request = request.header("Authorization", authorization);
    }
    let response = request.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .read_to_string()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (status, body)
}

/// Runs `promtool check metrics` on `text`. Without promtool the check is skipped, but
/// not on CI (`CI=true`), where .ci/test installs it (Debian's `prometheus`).
fn promtool_check(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("promtool is needed on CI (Debian package prometheus): {err}")
        }
        Err(err) => {
            eprintln!("promtool not run ({err}); install Debian's prometheus package");
            return;
        }
    };
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn metrics_count_tunnel_traffic_refusals_and_agent_logins() {
    let dir = tempdir();
    let server = Rportd::start_with(
        dir.path(),
        &ServerSettings {
            extra_sections: "[metrics]\naddress = \"127.0.0.1:0\"\n".into(),
            ..Default::default()
        },
    );
    let open_metrics = server
        .stdout
        .wait_for("metrics without authentication on ", ATTACH)
        .split("metrics without authentication on ")
        .nth(1)
        .expect("metrics url")
        .trim()
        .to_owned();
    let _agent = Rport::attach(&server, "client-1", &dir.path().join("agent"));
    server.wait_connection_state("client-1", "connected", ATTACH);

    let echo = echo_server();
    let open = server.open_tunnel("client-1", &format!("remote={}&acl=127.0.0.1", echo.port()));
    let closed_to_us =
        server.open_tunnel("client-1", &format!("remote={}&acl=192.0.2.1", echo.port()));

    // Known bytes through the open tunnel, twice; one connection the ACL refuses.
    echo_round_trip(tunnel_address(&open), 100_000, 1);
    echo_round_trip(tunnel_address(&open), 23_456, 2);
    if let Ok(mut refused) = TcpStream::connect(tunnel_address(&closed_to_us)) {
        use std::io::Read;
        let _ = refused.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = refused.read(&mut [0u8; 1]);
    }

    // A device with a wrong password.
    let mut impostor = start_agent(
        &server,
        "impostor-1",
        "agent1:not-the-password",
        &dir.path().join("impostor"),
    );

    let (status, body) = server.send_json(
        "POST",
        "/api/v1/me/tokens",
        &json!({"name": "prometheus", "scope": "read"}),
    );
    assert_eq!(status, 200, "{body}");
    let token = format!(
        "Bearer {}",
        body["data"]["token"].as_str().expect("token shown once")
    );
    let scrape_url = format!("{}/metrics", server.api);
    let (status, _) = get(&scrape_url, "");
    assert_eq!(status, 401, "no credentials, no metrics on the API");

    let text = wait_for("the counters to settle", ATTACH, || {
        let (status, text) = get(&scrape_url, &token);
        assert_eq!(status, 200, "{text}");
        let settled = value_of(&text, r#"rportd_tunnel_bytes_total{direction="in"}"#)
            == Some(123_456.0)
            && value_of(&text, r#"rportd_tunnel_bytes_total{direction="out"}"#) == Some(123_456.0)
            && value_of(&text, r#"rportd_agent_logins_total{result="failure"}"#)
                .is_some_and(|failures| failures >= 1.0);
        settled.then_some(text)
    });
    impostor.kill();

    assert_eq!(
        value_of(&text, "rportd_tunnel_connections_total"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value_of(
            &text,
            r#"rportd_tunnel_connections_refused_total{reason="acl"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value_of(
            &text,
            r#"rportd_tunnels_open{project="default",protocol="tcp"}"#
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value_of(&text, r#"rportd_clients_connected{project="default"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value_of(&text, r#"rportd_agent_logins_total{result="success"}"#),
        Some(1.0),
        "{text}"
    );
    assert!(
        value_of(&text, "process_resident_memory_bytes").is_some_and(|rss| rss > 1e6),
        "{text}"
    );
    assert!(
        value_of(
            &text,
            r#"rportd_api_requests_total{route="/api/v1/clients/{client_id}/tunnels",method="PUT",status="200"}"#
        ) == Some(2.0),
        "{text}"
    );
    promtool_check(&text);

    // The private listener needs no credentials and says the same.
    let (status, open_text) = get(&open_metrics, "");
    assert_eq!(status, 200, "{open_text}");
    assert_eq!(
        value_of(&open_text, r#"rportd_tunnel_bytes_total{direction="in"}"#),
        Some(123_456.0),
        "{open_text}"
    );
    promtool_check(&open_text);
}
