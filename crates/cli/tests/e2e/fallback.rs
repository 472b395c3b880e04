//! End to end: an agent with fallback servers moves to the next rportd when its server
//! dies or says it is going away, and goes back to the main server once it answers again.
//! Two independent rportd processes (each its own SQLite data dir) stand in for the nodes
//! of a cluster: the same agent credential, and the same key pair, so one pin fits both.

use std::path::Path;
use std::time::Duration;

use crate::support::*;

/// How long an agent may take to be on another server after its own died: it notices at
/// once (the kernel closes a killed process's sockets), waits one backoff of at most 2 s
/// (`--max-retry-interval` in the harness), then tries the servers of a round with no wait
/// in between. Generous for a busy machine; only reached when something is wrong.
const FAIL_OVER: Duration = Duration::from_secs(20);

/// `id`'s connection state as `server`'s `GET /api/v1/clients` lists it, or "" when that
/// server does not know the agent.
fn listed_state(server: &Rportd, id: &str) -> String {
    let (status, body) = server.request("GET", "/api/v1/clients");
    assert_eq!(status, 200, "{body}");
    body["data"]
        .as_array()
        .and_then(|agents| agents.iter().find(|agent| agent["id"] == id))
        .and_then(|agent| agent["connection_state"].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn wait_listed(server: &Rportd, id: &str, state: &str, timeout: Duration) {
    wait_for(
        &format!("{id} listed as {state} by {}", server.api),
        timeout,
        || (listed_state(server, id) == state).then_some(()),
    );
}

/// A second rportd in `dir` with the same key pair as `first`, so that an agent pinning
/// `first`'s fingerprint accepts it too (a cluster shares one identity).
fn second_node(first: &Rportd, dir: &Path) -> Rportd {
    let data = dir.join("server-data");
    std::fs::create_dir_all(&data).expect("data dir");
    for file in ["rportd-key.pem", "rportd-cert.pem"] {
        std::fs::copy(first.data_dir().join(file), data.join(file)).expect("copy key pair");
    }
    let second = Rportd::start(dir);
    assert_eq!(second.fingerprint, first.fingerprint, "one identity");
    second
}

/// An agent whose main server is `main` and whose one fallback is `fallback`.
fn agent_with_fallback(main: &Rportd, fallback: &Rportd, id: &str, dir: &Path) -> Rport {
    let fallback_address = fallback.agent_address.to_string();
    Rport::attach_with(
        main,
        id,
        &dir.join("agent"),
        main.agent_address,
        &[
            "--fallback-server",
            &fallback_address,
            "--server-switchback-interval",
            "2s",
        ],
        &[],
    )
}

#[test]
fn an_agent_fails_over_when_its_server_dies_and_switches_back_when_it_returns() {
    let (dir_a, dir_b, agent_dir) = (tempdir(), tempdir(), tempdir());
    let mut main = Rportd::start(dir_a.path());
    let main_port = main.agent_address.port();
    let fallback = second_node(&main, dir_b.path());
    let agent = agent_with_fallback(&main, &fallback, "fo-1", agent_dir.path());
    wait_listed(&main, "fo-1", "connected", ATTACH);
    assert_eq!(
        listed_state(&fallback, "fo-1"),
        "",
        "only on its main server"
    );

    // The main node dies without a word.
    main.kill();
    wait_listed(&fallback, "fo-1", "connected", FAIL_OVER);
    agent
        .stderr
        .wait_for("connected to fallback server 1", ATTACH);

    // The main node comes back: within a switchback interval or so, the agent leaves the
    // fallback in order and is on the main node again.
    let main = Rportd::start_on_agent_port(dir_a.path(), main_port);
    wait_listed(&main, "fo-1", "connected", ATTACH);
    wait_listed(&fallback, "fo-1", "disconnected", ATTACH);
    let why = agent.stderr.wait_for("answers again", ATTACH);
    assert!(why.contains(&main.agent_address.to_string()), "{why}");
    assert!(
        agent
            .stderr
            .all()
            .iter()
            .filter(|line| line.contains("connected to main server"))
            .count()
            >= 2,
        "{:?}",
        agent.stderr.all()
    );
}

#[test]
fn a_server_going_away_sends_its_agents_to_the_next_server() {
    let (dir_a, dir_b, agent_dir) = (tempdir(), tempdir(), tempdir());
    let mut main = Rportd::start(dir_a.path());
    let fallback = second_node(&main, dir_b.path());
    let agent = agent_with_fallback(&main, &fallback, "fo-2", agent_dir.path());
    wait_listed(&main, "fo-2", "connected", ATTACH);

    assert!(main.terminate().success());
    agent.stderr.wait_for("is shutting down", ATTACH);
    // The next try goes to the fallback first, not to the server that is going away.
    let next = agent.stderr.wait_for("reconnecting in", ATTACH);
    assert!(next.contains("next: fallback server 1"), "{next}");
    wait_listed(&fallback, "fo-2", "connected", FAIL_OVER);
}

#[test]
fn a_fallback_with_another_key_is_refused() {
    let (dir_a, dir_b, agent_dir) = (tempdir(), tempdir(), tempdir());
    let mut main = Rportd::start(dir_a.path());
    // Its own key pair: not a node of the main server's cluster.
    let stranger = Rportd::start(dir_b.path());
    assert_ne!(stranger.fingerprint, main.fingerprint);
    let agent = agent_with_fallback(&main, &stranger, "fo-3", agent_dir.path());
    wait_listed(&main, "fo-3", "connected", ATTACH);

    main.kill();
    let refused = agent.stderr.wait_for("fingerprint mismatch", FAIL_OVER);
    assert!(refused.contains("fallback server 1"), "{refused}");
    // It keeps trying its rounds (main, then the fallback) and never talks to the stranger.
    wait_for("a second round", ATTACH, || {
        let mismatches = agent
            .stderr
            .all()
            .iter()
            .filter(|line| line.contains("fingerprint mismatch"))
            .count();
        (mismatches >= 2).then_some(())
    });
    assert_eq!(listed_state(&stranger, "fo-3"), "");
    assert!(
        stranger.stdout.find("fo-3").is_none() && stranger.stderr.find("fo-3").is_none(),
        "nothing reached the stranger"
    );
}
