//! rport, the agent: parse flags, load the configuration, set up logging, connect forever.

mod process;

// Tunnels allocate and free large buffers at a high rate; glibc's allocator returns them to
// the kernel and takes page faults to get them back, which cost more than the copying.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use rport_agent::cli::AgentArgs;
use rport_agent::config;
use rport_agent::session::Agent;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = AgentArgs::parse();
    let config = config::load(&args, &|name| std::env::var(name).ok())?;
    process::init_logging(&config.log_level, config.log_file.as_deref())?;
    process::raise_open_file_limit();
    process::report_usage_on_signal();
    let client_id = match &config.id {
        Some(id) => id.clone(),
        None => config::load_or_create_client_id(&config.data_dir)?,
    };
    tracing::info!(client = %client_id, "rport {} starting, server {}", env!("CARGO_PKG_VERSION"), config.server);
    Agent::new(config, client_id)
        .run(process::shutdown_on_signal())
        .await;
    Ok(())
}
