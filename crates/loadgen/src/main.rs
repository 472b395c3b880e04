//! rport-loadgen: runs N real agent sessions (TLS 1.3, pinned key, each with its own id and
//! password) in one process against one rportd (falling back to the other nodes of a
//! cluster), for the scale benchmark (`bench/scale.py`).

mod fleet;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use rport_agent::config::parse_server;
use rport_agent::session::SessionCounters;
use rport_protocol::Fingerprint;
use tokio_util::sync::CancellationToken;

use crate::fleet::{FleetSpec, Naming};

#[derive(Debug, Parser)]
#[command(
    name = "rport-loadgen",
    version,
    about = "Runs many rport agent sessions in one process against one rportd",
    after_help = "Example:\n  rport-loadgen --count 10000 --write-auth-file auth.json\n  \
                  rport-loadgen --count 10000 --server 127.0.0.1:8080 --fingerprint FP --ramp 500"
)]
struct Args {
    /// rportd's agent address, HOST:PORT. Without it, only --write-auth-file is done.
    #[arg(long)]
    server: Option<String>,
    /// Another rportd agent address (HOST:PORT) each agent falls back to, as the agent's
    /// `--fallback-server`: the other nodes of a cluster. Repeat for several.
    #[arg(long = "fallback-server", value_name = "ADDR")]
    fallback_servers: Vec<String>,
    /// The server's key fingerprint as rportd prints it; every session pins it.
    #[arg(long, value_name = "FP")]
    fingerprint: Option<String>,
    /// How many agents to run.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Agent ids are this prefix and a zero-padded number from 1 (load-00001, ...); each id
    /// is also the agent's credential id.
    #[arg(long, default_value = "load-")]
    id_prefix: String,
    /// Digits of the number in the id.
    #[arg(long, default_value_t = 5)]
    id_digits: usize,
    /// Each agent's password is this prefix followed by its id (pw-load-00001, ...).
    #[arg(long, default_value = "pw-")]
    password_prefix: String,
    /// Sessions started per second at the start; 0 starts all at once.
    #[arg(long, default_value_t = 500)]
    ramp: u32,
    /// Write the fleet's credentials as an rportd `auth_file` (JSON id -> plain password).
    #[arg(long, value_name = "FILE")]
    write_auth_file: Option<PathBuf>,
    /// Keepalive each agent announces (2s .. 1h).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    keep_alive: Duration,
    /// Cap of each agent's reconnection backoff (delays are jittered below it).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    max_retry_interval: Duration,
    /// How often to print the status line.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    status_interval: Duration,
    /// A tag every agent reports; repeat for several.
    #[arg(long = "tag", value_name = "TAG", default_values_t = [String::from("loadgen")])]
    tags: Vec<String>,
    /// Log level of the agents' own messages (error, warn, info, debug, trace).
    #[arg(long, default_value = "warn")]
    log_level: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&args.log_level))
        .with_context(|| format!("--log-level {:?}", args.log_level))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();

    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    let naming = Naming {
        id_prefix: args.id_prefix.clone(),
        id_digits: args.id_digits,
        password_prefix: args.password_prefix.clone(),
    };
    if let Some(path) = &args.write_auth_file {
        fleet::write_auth_file(path, &naming, args.count)?;
        println!(
            "rport-loadgen: wrote {} credentials to {}",
            args.count,
            path.display()
        );
    }
    let Some(server) = &args.server else {
        if args.write_auth_file.is_none() {
            bail!("nothing to do: pass --server (and --fingerprint) or --write-auth-file");
        }
        return Ok(());
    };
    let server = parse_server(server).map_err(|reason| anyhow::anyhow!("--server: {reason}"))?;
    let fallback_servers = args
        .fallback_servers
        .iter()
        .map(|text| {
            parse_server(text)
                .map_err(|reason| anyhow::anyhow!("--fallback-server {text}: {reason}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let fingerprint: Fingerprint = args
        .fingerprint
        .as_deref()
        .context("--fingerprint is required with --server: the sessions pin the server key")?
        .trim()
        .parse()
        .map_err(|err| anyhow::anyhow!("--fingerprint: {err}"))?;
    if !(Duration::from_secs(2)..=Duration::from_secs(3600)).contains(&args.keep_alive) {
        bail!("--keep-alive must be between 2s and 1h");
    }

    match rport_transport::fd_limit::raise_nofile_limit() {
        Ok((soft, hard)) => {
            if soft < args.count as libc::rlim_t + 256 {
                eprintln!(
                    "rport-loadgen: warning: open-file limit {soft} (hard {hard}) is below {} agents plus margin",
                    args.count
                );
            }
        }
        Err(err) => eprintln!("rport-loadgen: warning: cannot raise the open-file limit: {err}"),
    }

    let spec = Arc::new(FleetSpec {
        server,
        fallback_servers,
        fingerprint,
        naming,
        count: args.count,
        ramp: args.ramp,
        keep_alive: args.keep_alive,
        max_retry_interval: args.max_retry_interval,
        tags: args.tags.clone(),
        facts: tokio::task::spawn_blocking(|| rport_agent::sysinfo::system("", &[]))
            .await
            .context("reading the device facts")?,
    });
    let counters = Arc::new(SessionCounters::default());
    let started = Arc::new(AtomicUsize::new(0));
    let shutdown = shutdown_on_signal();
    println!(
        "rport-loadgen: {} agents ({}..) -> {} (fallbacks: {}), ramp {}/s, keep_alive {:?}, max_retry_interval {:?}",
        spec.count,
        spec.naming.id(1),
        spec.server,
        spec.fallback_servers.len(),
        spec.ramp,
        spec.keep_alive,
        spec.max_retry_interval
    );
    tokio::spawn(Arc::clone(&spec).launch(
        Arc::clone(&counters),
        Arc::clone(&started),
        shutdown.clone(),
    ));

    let begin = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(args.status_interval.max(Duration::from_millis(100)));
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        println!(
            "rport-loadgen: t={:.1}s started={} connected={} sessions={} failed_attempts={}",
            begin.elapsed().as_secs_f64(),
            started.load(Ordering::Relaxed),
            counters.connected.load(Ordering::Relaxed),
            counters.sessions.load(Ordering::Relaxed),
            counters.failed_attempts.load(Ordering::Relaxed),
        );
    }

    // The agents stop on the same token; give their sessions a moment to close.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while counters.connected.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "rport-loadgen: stopped; {} sessions still open",
        counters.connected.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Cancelled on Ctrl-C or SIGTERM.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
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
        trigger.cancel();
    });
    token
}
