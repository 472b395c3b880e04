//! The command line: realvnc-labs/rportcli's commands, flags and short names, plus
//! `ssh`, `port-tunnel` and `--project`.

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "rportcli",
    version,
    about = "rportcli: manage rportd's agents and tunnels from the command line",
    after_help = "Environment: RPORT_SERVER_URL (RPORT_API_URL), RPORT_USER (RPORT_API_USER), \
                  RPORT_PASSWORD (RPORT_API_PASSWORD), RPORT_API_TOKEN, CONFIG_PATH, \
                  SESSION_VALIDITY_SECONDS. See docs/rportcli.md."
)]
pub struct Cli {
    /// Print each request (never credentials) on stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// With `-o json`, pretty-print.
    #[arg(short = 'j', long = "json-pretty", global = true)]
    pub json_pretty: bool,
    /// Output format: json, yaml or human.
    #[arg(short = 'o', long = "output", global = true, default_value = "human")]
    pub output: String,
    /// Request timeout: seconds (10 or 10s), minutes (1m) or hours (2h); none by default.
    #[arg(long, global = true)]
    pub timeout: Option<String>,
    /// The project (rportd's tenant) to list agents of, and the one port-tunnel uses.
    #[arg(long, global = true, env = "RPORT_PROJECT")]
    pub project: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in to rportd and save the server and a token in the config file.
    Init(InitArgs),
    /// Agents ("clients" in RPort's API).
    #[command(subcommand)]
    Client(ClientCommand),
    /// Tunnels of connected agents.
    #[command(subcommand)]
    Tunnel(TunnelCommand),
    /// Show the current user.
    Me,
    /// Print rportcli's version.
    Version,
    /// Show the server's status.
    Status,
    /// Open a tunnel to the agent's ssh port for your own address, run ssh through it, and
    /// close it when ssh ends.
    Ssh(SshArgs),
    /// JFrog Connect-style port tunnels of one project (API v2; needs --project).
    #[command(subcommand, name = "port-tunnel")]
    PortTunnel(PortTunnelCommand),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Server address of rportd's API, e.g. https://rport.example.com.
    #[arg(short = 's', long = "api_url", visible_alias = "server")]
    pub api_url: Option<String>,
    /// User to log in as.
    #[arg(short = 'l', long = "api_user", visible_alias = "login")]
    pub api_user: Option<String>,
    /// Password (asked without echo when left out on a terminal).
    #[arg(short = 'p', long = "api_password", visible_alias = "password")]
    pub api_password: Option<String>,
    /// Ask nothing: fail when a value is missing.
    #[arg(short = 'q', long = "no-prompt")]
    pub no_prompt: bool,
    /// Log out: end the saved token's session and delete the config file.
    #[arg(short = 'd', long = "delete")]
    pub delete: bool,
    /// RPort Plus's OAuth login (rportd has none).
    #[arg(long)]
    pub oauth: bool,
}

#[derive(Debug, Args)]
pub struct Paging {
    /// Number of agents to fetch.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Offset for the fetch.
    #[arg(long, default_value_t = 0)]
    pub offset: u32,
    /// Search agents by key=value (wildcards *); repeat to combine with AND.
    #[arg(long = "search")]
    pub search: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// List connected and disconnected agents.
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one agent, by id or name.
    Get {
        /// The agent's id.
        id: Option<String>,
        /// The agent's id (as a flag).
        #[arg(short = 'c', long = "client", conflicts_with = "id")]
        client: Option<String>,
        /// The agent's name.
        #[arg(short = 'n', long = "name")]
        name: Option<String>,
        /// Also show its tunnels and update status.
        #[arg(short = 'a', long = "all")]
        all: bool,
    },
}

#[derive(Debug, Args)]
pub struct ClientChoice {
    /// The agent's id.
    #[arg(short = 'c', long = "client")]
    pub client: Option<String>,
    /// The agent's name, when no id is given.
    #[arg(short = 'n', long = "name")]
    pub name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TunnelCommand {
    /// List the live tunnels.
    List {
        #[command(flatten)]
        choice: ClientChoice,
        #[command(flatten)]
        paging: Paging,
    },
    /// Create a tunnel.
    Create(Box<CreateArgs>),
    /// Delete a tunnel.
    Delete {
        #[command(flatten)]
        choice: ClientChoice,
        /// The tunnel's id.
        #[arg(short = 'u', long = "tunnel", short_alias = 't')]
        tunnel: String,
        /// Delete it even with connections open.
        #[arg(short = 'f', long = "force")]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub choice: ClientChoice,
    /// The server's port (or ADDRESS:PORT) to open; a free one when left out.
    #[arg(short = 'l', long = "local")]
    pub local: Option<String>,
    /// The target from the agent's side: PORT or HOST:PORT; a well-known scheme's port when
    /// left out.
    #[arg(short = 'r', long = "remote")]
    pub remote: Option<String>,
    /// URI scheme: ssh, rdp, vnc, http, https...
    #[arg(short = 's', long = "scheme")]
    pub scheme: Option<String>,
    /// Addresses and networks allowed to use the tunnel; your own address when left out.
    #[arg(short = 'a', long = "acl")]
    pub acl: Option<String>,
    /// Check that the target port is open on the device before creating.
    #[arg(short = 'p', long = "checkp")]
    pub check_port: bool,
    /// Start ssh through the tunnel with these arguments, and delete the tunnel when ssh
    /// ends, e.g. -b "-l root".
    #[arg(short = 'b', long = "launch-ssh", allow_hyphen_values = true)]
    pub launch_ssh: Option<String>,
    /// Open the tunnel with the system's default application for its scheme.
    #[arg(short = 'e', long = "launch-uri")]
    pub launch_uri: bool,
    /// Start an RDP client (not supported here).
    #[arg(short = 'd', long = "launch-rdp")]
    pub launch_rdp: bool,
    /// Username for the RDP session.
    #[arg(short = 'u', long = "rdp-user")]
    pub rdp_user: Option<String>,
    #[arg(long = "rdp-width", default_value_t = 1024)]
    pub rdp_width: u32,
    #[arg(long = "rdp-height", default_value_t = 768)]
    pub rdp_height: u32,
    /// No idle timeout.
    #[arg(short = 'k', long = "skip-idle-timeout")]
    pub skip_idle_timeout: bool,
    /// Close the tunnel after this many idle minutes.
    #[arg(short = 'm', long = "idle-timeout-minutes")]
    pub idle_timeout_minutes: Option<u32>,
    /// Serve the tunnel through rportd's HTTPS proxy (scheme http or https).
    #[arg(long = "http-proxy")]
    pub http_proxy: bool,
    /// Ask nothing (accepted for rportcli's scripts; rportcli asks nothing here anyway).
    #[arg(short = 'q', long = "no-prompt")]
    pub no_prompt: bool,
    /// tcp, udp or tcp+udp.
    #[arg(long = "protocol")]
    pub protocol: Option<String>,
    /// Close the tunnel after this long whatever happens (e.g. 30m, 2h).
    #[arg(long = "auto-close")]
    pub auto_close: Option<String>,
    /// A name for the tunnel.
    #[arg(long = "tunnel-name")]
    pub tunnel_name: Option<String>,
}

#[derive(Debug, Args)]
pub struct SshArgs {
    /// The target port on the device (PORT or HOST:PORT).
    #[arg(short = 'r', long = "remote", default_value = "22")]
    pub remote: String,
    /// Who may use the tunnel; your own address (from /api/v1/me/ip) when left out.
    #[arg(short = 'a', long = "acl")]
    pub acl: Option<String>,
    /// [USER@]NAME_OR_ID of the agent.
    pub target: String,
    /// Passed to ssh after the host (options, then a command).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ssh_args: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum PortTunnelCommand {
    /// The project's port tunnels, open and past.
    List {
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long, default_value_t = 0)]
        offset: u32,
    },
    /// Open a port tunnel to a device's port.
    Create {
        /// The device's id (device_uuid).
        #[arg(short = 'c', long = "device")]
        device: String,
        /// The port on the device.
        #[arg(short = 'r', long = "port")]
        port: u16,
        /// The one address or network allowed; your own when left out.
        #[arg(short = 'a', long = "allowed-ip")]
        allowed_ip: Option<String>,
    },
    /// Show one port tunnel.
    Get { id: String },
    /// Close a port tunnel.
    Delete { id: String },
}

/// Options that take a value, before `ssh`'s target: the global ones and ssh's own.
const OPTIONS_WITH_VALUES: &[&str] = &[
    "-o",
    "--output",
    "--timeout",
    "--project",
    "-r",
    "--remote",
    "-a",
    "--acl",
];

/// Everything after `rportcli ssh`'s target belongs to ssh, even what looks like
/// rportcli's own flags (`-o StrictHostKeyChecking=no`, `-v`): a `--` goes in after it.
pub fn ssh_arguments_apart(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let texts: Vec<Option<&str>> = args.iter().map(|a| a.to_str()).collect();
    let mut index = 1;
    let mut in_ssh = false;
    while index < texts.len() {
        let Some(text) = texts[index] else {
            return args;
        };
        if text == "--" {
            return args;
        }
        if text.starts_with('-') {
            index += if OPTIONS_WITH_VALUES.contains(&text) {
                2
            } else {
                1
            };
            continue;
        }
        if !in_ssh {
            if text != "ssh" {
                return args;
            }
            in_ssh = true;
            index += 1;
            continue;
        }
        // The target.
        let mut apart = args;
        apart.insert(index + 1, "--".into());
        return apart;
    }
    args
}

/// The command line, with [`ssh_arguments_apart`] applied.
pub fn parse() -> Cli {
    use clap::Parser;
    Cli::parse_from(ssh_arguments_apart(std::env::args_os().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apart(line: &str) -> Vec<String> {
        ssh_arguments_apart(line.split(' ').map(Into::into).collect())
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn ssh_options_after_the_target_stay_ssh_options() {
        assert_eq!(
            apart("rportcli -o json ssh -r 2222 root@dev -o X=y -v ls"),
            "rportcli -o json ssh -r 2222 root@dev -- -o X=y -v ls"
                .split(' ')
                .collect::<Vec<_>>()
        );
        assert_eq!(
            apart("rportcli tunnel list -o json"),
            ["rportcli", "tunnel", "list", "-o", "json"]
        );
        assert_eq!(apart("rportcli ssh"), ["rportcli", "ssh"]);
    }
}
