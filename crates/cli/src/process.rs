//! What both binaries do around their work: set up logging, raise the open-file limit,
//! report their usage when asked (SIGUSR2), and wait for a signal to stop.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Raises the soft open-file limit to the hard one, and says what it is: with the usual
/// soft limit of 1024 a server stops accepting agents and connections long before its
/// hardware does.
pub fn raise_open_file_limit() {
    match rport_transport::fd_limit::raise_nofile_limit() {
        Ok((soft, _)) => tracing::debug!("open-file limit {soft}"),
        Err(err) => tracing::warn!("could not raise the open-file limit: {err}"),
    }
}

/// Logs at `level` (RUST_LOG, if set, takes precedence) to stderr or, when given, to `file`.
pub fn init_logging(level: &str, file: Option<&Path>) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .with_context(|| format!("log_level {level:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match file {
        Some(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening log_file {}", path.display()))?;
            builder
                .with_ansi(false)
                .with_writer(Mutex::new(file))
                .init();
        }
        None => {
            // Colours only for a person at a terminal, not for journald or a log collector.
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            builder.with_ansi(ansi).with_writer(std::io::stderr).init()
        }
    }
    Ok(())
}

/// Cancelled on Ctrl-C or SIGTERM.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        trigger.cancel();
    });
    token
}

/// On SIGUSR2, logs how many tasks and file descriptors the process holds: what an
/// operator (or a test) compares before and after a burst of traffic to see a leak.
pub fn report_usage_on_signal() {
    #[cfg(unix)]
    tokio::spawn(async {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut usr2) = signal(SignalKind::user_defined2()) else {
            return;
        };
        while usr2.recv().await.is_some() {
            let tasks = tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks();
            let files = rport_transport::fd_limit::open_files()
                .map_or_else(|| "unknown".to_owned(), |n| n.to_string());
            tracing::info!("usage: {tasks} tasks, {files} open files");
        }
    });
}
