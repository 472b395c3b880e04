//! Command-line flags of rport. They override the configuration file and the environment.

use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Default, Parser)]
#[command(
    name = "rport",
    version,
    about = "Remote access agent: connects out to rportd and carries the tunnels it opens",
    after_help = "Example: rport --id my-client-1 --fingerprint FP --tag Linux --auth user1:1234 rport.example.com:8080 2222:22"
)]
pub struct AgentArgs {
    /// TOML configuration file (`[client]`, `[connection]`, `[logging]`).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The server, `HOST:PORT` or a URL such as `http://rport.example.com:8080`.
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
    /// Another server of the same cluster, tried in order when the main one cannot be
    /// reached; repeat for several. Same forms as SERVER. Replaces the file's
    /// `fallback_servers`.
    #[arg(long = "fallback-server", value_name = "ADDR")]
    pub fallback_servers: Vec<String>,
    /// While on a fallback server, how often to check whether the main server answers
    /// again, e.g. `2m`.
    #[arg(long, value_name = "DURATION")]
    pub server_switchback_interval: Option<String>,
    /// Tunnels to open whenever connected, `[LHOST:]LPORT:[RHOST:]RPORT[/udp|/tcp+udp]`
    /// (e.g. `2222:22`, `9999:192.168.1.1:80`). Replace the file's `remotes`.
    #[arg(value_name = "REMOTE", requires = "server")]
    pub remotes: Vec<String>,
    /// Unique id of this device; generated once and kept in the data dir when not given.
    #[arg(long)]
    pub id: Option<String>,
    /// Human-readable name; defaults to the hostname.
    #[arg(long)]
    pub name: Option<String>,
    /// A tag to report; repeat for several. Replaces the file's tags.
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Credential `id:password` (also `RPORT_AUTH`).
    #[arg(long, value_name = "ID:PASSWORD")]
    pub auth: Option<String>,
    /// The server's key fingerprint as rportd prints it (also `RPORT_FINGERPRINT`).
    #[arg(long, value_name = "FP")]
    pub fingerprint: Option<String>,
    /// Instead of a fingerprint: check the server's certificate against the CA
    /// certificates in this PEM file (also `RPORT_CA_FILE`), by the server's host name.
    #[arg(long, value_name = "FILE", conflicts_with = "system_roots")]
    pub ca_file: Option<PathBuf>,
    /// Instead of a fingerprint: check the server's certificate against the operating
    /// system's CA certificates, by the server's host name.
    #[arg(long)]
    pub system_roots: bool,
    /// Where the agent keeps its id and pinned server key.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// How often each side proves it is alive, e.g. `30s`; a silent peer is dropped after it.
    #[arg(long, value_name = "DURATION")]
    pub keep_alive: Option<String>,
    /// Upper bound of the wait between reconnection attempts, e.g. `5m`.
    #[arg(long, value_name = "DURATION")]
    pub max_retry_interval: Option<String>,
    /// error, warn, info, debug or trace.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log to this file instead of stderr.
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}
