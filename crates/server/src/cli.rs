//! Command-line flags of rportd.

use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "rportd",
    version,
    about = "Remote access server: agents connect out to it, operators open tunnels through its API"
)]
pub struct ServerArgs {
    /// TOML configuration file; without it rportd runs on its embedded default.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Overrides `[server] data_dir`.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Overrides `[logging] log_level` (error, warn, info, debug, trace).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
}
