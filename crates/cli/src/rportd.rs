//! rportd, the server: parse flags, load the configuration, set up logging, bind, run.

mod mimalloc_heap;
mod process;

// Tunnels allocate and free large buffers at a high rate; glibc's allocator returns them to
// the kernel and takes page faults to get them back, which cost more than the copying.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::Parser;
use rport_server::{Command, Listeners, Server, ServerArgs, ServerConfig, migrate, user_command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = ServerArgs::parse();
    let mut config = match &args.config {
        Some(path) => ServerConfig::load(path)?,
        None => ServerConfig::default_embedded(),
    };
    if let Some(dir) = args.data_dir {
        config.server.data_dir = dir;
    }
    if let Some(level) = args.log_level {
        config.logging.log_level = level;
    }
    match args.command {
        Some(Command::User(command)) => {
            let out = user_command::run(&config, command, std::io::stdin().lock()).await?;
            print!("{out}");
            return Ok(());
        }
        Some(Command::Migrate { from_sqlite }) => {
            print!("{}", migrate::run(&config, &from_sqlite).await?);
            return Ok(());
        }
        None => {}
    }
    process::init_logging(
        &config.logging.log_level,
        config.logging.log_file.as_deref(),
    )?;
    process::raise_open_file_limit();
    process::report_usage_on_signal();
    mimalloc_heap::return_free_memory_periodically();

    let listeners = Listeners::bind(&config).await?;
    let agents_address = listeners.agents.local_addr()?;
    let api_address = listeners
        .api
        .as_ref()
        .map(|api| api.local_addr())
        .transpose()?;
    let proxy_address = listeners
        .tunnel_proxy
        .as_ref()
        .map(|proxy| proxy.local_addr())
        .transpose()?
        .zip(config.server.tunnel_host.clone());
    let metrics_address = listeners
        .metrics
        .as_ref()
        .map(|metrics| metrics.local_addr())
        .transpose()?;
    let data_dir = config.server.data_dir.clone();
    let config_has_api_tls = config.api.tls.is_some();
    let server = Server::prepare(config)
        .await
        .with_context(|| format!("starting with data_dir {}", data_dir.display()))?;

    // Shown on stdout, once: these are the only copies of the generated passwords.
    for credential in &server.generated {
        let what = if credential.id == "admin" {
            "API user"
        } else {
            "agent credential"
        };
        println!(
            "rportd: generated {what} (shown only now): {}:{}",
            credential.id, credential.password
        );
    }
    #[cfg(unix)]
    server.reload_user_file_on_signal()?;
    println!("rportd: fingerprint {}", server.fingerprint());
    println!("rportd: agents connect to {agents_address}");
    match api_address {
        Some(address) => {
            let scheme = if config_has_api_tls { "https" } else { "http" };
            println!("rportd: API listening on {scheme}://{address}");
        }
        None => println!("rportd: API disabled"),
    }
    if let Some(address) = metrics_address {
        println!("rportd: metrics without authentication on http://{address}/metrics");
    }
    if let Some((address, host)) = proxy_address {
        println!("rportd: HTTP tunnels share https://*.{host} on {address}");
    }
    tracing::info!(fingerprint = %server.fingerprint(), "rportd {} started", env!("CARGO_PKG_VERSION"));

    server.run(listeners, process::shutdown_on_signal()).await?;
    Ok(())
}
