//! The console's audit log and administration pages in a real browser
//! (crates/cli/tests/console/admin_pages.py), against a real rportd that keeps agent
//! credentials in its database, so that the console can make them. Same browser and venv
//! as the console's own test (`console`), skipped the same way without them.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::console::{browser_ready, chromium, python, workspace};
use crate::support::*;

/// The whole browser run, a bound only: it takes some 20 s.
const RUN_LIMIT: Duration = Duration::from_secs(240);

#[test]
fn the_audit_log_and_administration_pages_work_in_a_browser() {
    if !browser_ready() {
        return;
    }
    let dir = tempdir();
    // No `auth` for agents: credentials live in the database and the API manages them.
    let settings = ServerSettings {
        agent_auth: String::new(),
        ..Default::default()
    };
    let server = Rportd::start_with(dir.path(), &settings);
    let screenshots = std::env::var_os("CONSOLE_SCREENSHOTS").map(|folder| {
        let folder = PathBuf::from(folder);
        if folder.is_absolute() {
            folder
        } else {
            workspace().join(folder)
        }
    });
    let mut command = Command::new(python());
    command
        .arg(workspace().join("crates/cli/tests/console/admin_pages.py"))
        .env("CONSOLE_URL", &server.api)
        .env("CONSOLE_ADMIN", format!("{API_USER}:{API_PASSWORD}"))
        .env("CHROMIUM", chromium())
        .env_remove("CONSOLE_SCREENSHOTS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(folder) = &screenshots {
        command.env("CONSOLE_SCREENSHOTS", folder);
    }
    let mut browser = command.spawn().expect("start the browser script");
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
                passed |= line == "CONSOLE_ADMIN_OK";
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
