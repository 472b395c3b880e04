//! The web console in a real browser: headless Chromium driven by Playwright
//! (crates/cli/tests/console/browser.py) against a real rportd, with an agent started
//! while the devices page is open. Needs Debian's `chromium` and a Python venv with
//! `playwright` (`.ci/console-deps` makes both); without them the test is skipped, and
//! fails under `CI=true`.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

/// The whole browser run, a bound only: it takes some 20 s.
const RUN_LIMIT: Duration = Duration::from_secs(240);
const AGENT_ID: &str = "console-demo-1";
const VIEWER: &str = "vera";
const VIEWER_PASSWORD: &str = "vera-long-password-1";

pub(crate) fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv's python: `CONSOLE_PYTHON`, else `console-venv` in the target folder.
pub(crate) fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("CONSOLE_PYTHON") {
        return python.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    target.join("console-venv/bin/python")
}

pub(crate) fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Whether the browser and Playwright are there; says how to get them when not.
pub(crate) fn browser_ready() -> bool {
    let python = python();
    let playwright = python.exists()
        && Command::new(&python)
            .args(["-c", "import playwright.sync_api"])
            .status()
            .is_ok_and(|status| status.success());
    if chromium().exists() && playwright {
        return true;
    }
    let message = format!(
        "the console's browser test needs {} (apt-get install chromium) and {} with playwright \
         (python3 -m venv DIR && DIR/bin/pip install playwright); `bash .ci/console-deps` makes both",
        chromium().display(),
        python.display()
    );
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("{message}");
    }
    eprintln!("SKIPPED: {message}");
    false
}

#[test]
fn the_console_in_a_browser_logs_in_shows_agents_live_and_opens_tunnels() {
    if !browser_ready() {
        return;
    }
    let dir = tempdir();
    let settings = ServerSettings {
        extra_api: "max_failed_login = 3\nban_time = 60\n".into(),
        ..Default::default()
    };
    let server = Rportd::start_with(dir.path(), &settings);
    let created = server.call(
        "POST",
        "/api/v1/users",
        &server.auth_header,
        &[],
        Some(&json!({"username": VIEWER, "password": VIEWER_PASSWORD, "roles": {"default": "viewer"}})),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let echo = echo_server();
    let mut agent = None;
    run_browser_script(
        "browser.py",
        &server,
        &[
            ("CONSOLE_VIEWER", format!("{VIEWER}:{VIEWER_PASSWORD}")),
            ("CONSOLE_AGENT_ID", AGENT_ID.to_owned()),
            ("CONSOLE_ECHO", echo.to_string()),
        ],
        "CONSOLE_OK",
        |line, to_script| {
            if line == "START_AGENT" {
                agent = Some(Rport::attach(&server, AGENT_ID, &dir.path().join("agent")));
                writeln!(to_script, "AGENT_STARTED").expect("answer the script");
                to_script.flush().expect("flush");
            }
        },
    );
    drop(agent);
}

/// Runs one of the console's Playwright scripts (`crates/cli/tests/console/SCRIPT`) against
/// `server`, logged in as the `[api] auth` admin, with `env` besides. It passes when the
/// script prints `ok_line` and exits 0 within [`RUN_LIMIT`]; `on_line` sees every line the
/// script prints and may answer on its stdin. With `CONSOLE_SCREENSHOTS=FOLDER` (relative
/// to the workspace) the script writes its screenshots there.
pub(crate) fn run_browser_script(
    script: &str,
    server: &Rportd,
    env: &[(&str, String)],
    ok_line: &str,
    mut on_line: impl FnMut(&str, &mut ChildStdin),
) {
    let mut command = Command::new(python());
    command
        .arg(workspace().join("crates/cli/tests/console").join(script))
        .env("CONSOLE_URL", &server.api)
        .env("CONSOLE_ADMIN", format!("{API_USER}:{API_PASSWORD}"))
        .env("CHROMIUM", chromium())
        .env_remove("CONSOLE_SCREENSHOTS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    if let Some(folder) = std::env::var_os("CONSOLE_SCREENSHOTS") {
        command.env("CONSOLE_SCREENSHOTS", workspace().join(folder));
    }
    let mut browser = command.spawn().expect("start the browser script");
    let mut to_script = browser.stdin.take().expect("stdin");
    let (lines_in, lines) = mpsc::channel();
    let stdout = browser.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_in.send(line).is_err() {
                break;
            }
        }
    });
    let stderr_pipe = browser.stderr.take().expect("stderr");
    // Read to the end by a thread, so that a chatty script never blocks on a full pipe.
    let stderr = std::thread::spawn(move || {
        BufReader::new(stderr_pipe)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });

    let started = Instant::now();
    let mut output = Vec::new();
    let mut passed = false;
    while started.elapsed() < RUN_LIMIT {
        match lines.recv_timeout(Duration::from_secs(5)) {
            Ok(line) => {
                eprintln!("browser| {line}");
                on_line(&line, &mut to_script);
                passed |= line == ok_line;
                output.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if matches!(browser.try_wait(), Ok(Some(_))) {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if browser.try_wait().ok().flatten().is_none() {
        let _ = browser.kill();
    }
    let status = browser.wait().expect("the script ends");
    let stderr = stderr.join().unwrap_or_default();
    assert!(
        passed && status.success(),
        "the browser test failed ({status}):\n{}\n{}",
        output.join("\n"),
        stderr.join("\n")
    );
}
