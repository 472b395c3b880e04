//! rport, the agent: parse flags, load the configuration, set up logging, connect forever.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod agent_heap;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod mimalloc_heap;
mod process;

// Elsewhere than on glibc (musl's allocator is slow with tunnel buffers), mimalloc, nudged
// to give back what traffic freed (mimalloc_heap).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use rport_agent::cli::AgentArgs;
use rport_agent::config;
use rport_agent::session::Agent;

fn main() -> anyhow::Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    agent_heap::configure();
    // One thread: an agent's traffic all goes through one session whose encryption runs on
    // one task anyway, and a second worker only added wake-ups between threads (measured:
    // 17 instead of 21 us of tunnel CPU per request; throughput the same within noise).
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let args = AgentArgs::parse();
    let config = config::load(&args, &|name| std::env::var(name).ok())?;
    process::init_logging(&config.log_level, config.log_file.as_deref())?;
    process::raise_open_file_limit();
    process::report_usage_on_signal();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    agent_heap::return_free_memory_periodically();
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    mimalloc_heap::return_free_memory_periodically();
    let client_id = match &config.id {
        Some(id) => id.clone(),
        None => config::load_or_create_client_id(&config.data_dir)?,
    };
    tracing::info!(client = %client_id, "rport {} starting, server {}", env!("CARGO_PKG_VERSION"), config.server);
    if !config.fallback_servers.is_empty() {
        let fallbacks: Vec<String> = config
            .fallback_servers
            .iter()
            .map(|s| s.to_string())
            .collect();
        tracing::info!(
            "fallback servers, in order: {}; while on one, the main server is checked every {:?}",
            fallbacks.join(", "),
            config.server_switchback_interval
        );
    }
    Agent::new(config, client_id)
        .run(process::shutdown_on_signal())
        .await;
    Ok(())
}
